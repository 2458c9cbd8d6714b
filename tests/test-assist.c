/* The Batch helpers (services/idlookupd/assist.c): every part runs exactly
 * once, on the caller alone without a pool, and idle helpers take parts of
 * a job; jobs from several callers at once all complete. */
#include "assist.h"
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#define PARTS 8

typedef struct {
    idld_scratch *own;
    atomic_int runs[PARTS];
    atomic_int on_helper; /* parts run with a scratch other than own */
    int sleep_us;
} job_arg;

static void count_part(void *arg, size_t p, idld_scratch *sc)
{
    job_arg *j = arg;
    atomic_fetch_add(&j->runs[p], 1);
    if (sc != j->own) atomic_fetch_add(&j->on_helper, 1);
    if (j->sleep_us) usleep(j->sleep_us);
}

static void job_init(job_arg *j, idld_scratch *own, int sleep_us)
{
    j->own = own;
    for (int i = 0; i < PARTS; i++)
        atomic_init(&j->runs[i], 0);
    atomic_init(&j->on_helper, 0);
    j->sleep_us = sleep_us;
}

static void check_once(job_arg *j)
{
    for (int i = 0; i < PARTS; i++)
        CHECKM(atomic_load(&j->runs[i]) == 1, "part %d ran %d times", i, atomic_load(&j->runs[i]));
}

/* No pool: the caller runs every part. */
static void no_helpers_runs_on_caller(void)
{
    idld_assist *a = NULL;
    CHECK_INT(idld_assist_new(&a, 0), 0);
    CHECK(a == NULL);
    idld_scratch *own = idld_scratch_new();
    job_arg j;
    job_init(&j, own, 0);
    idld_assist_run(a, count_part, &j, PARTS, own);
    check_once(&j);
    CHECK_INT(atomic_load(&j.on_helper), 0);
    idld_scratch_free(own);
}

/* An idle pool takes some of a job's parts.  Each part sleeps 50 ms, so
 * the caller alone would need 400 ms: time enough for a woken helper. */
static void idle_helpers_take_parts(void)
{
    idld_assist *a = NULL;
    CHECK_INT(idld_assist_new(&a, 2), 0);
    idld_scratch *own = idld_scratch_new();
    job_arg j;
    job_init(&j, own, 50000);
    idld_assist_run(a, count_part, &j, PARTS, own);
    check_once(&j);
    CHECKM(atomic_load(&j.on_helper) > 0, "no part ran on a helper");
    /* A one-part job is never queued: it runs on the caller. */
    job_arg k;
    job_init(&k, own, 0);
    idld_assist_run(a, count_part, &k, 1, own);
    CHECK_INT(atomic_load(&k.runs[0]), 1);
    CHECK_INT(atomic_load(&k.on_helper), 0);
    idld_scratch_free(own);
    idld_assist_free(a);
}

typedef struct {
    idld_assist *a;
    job_arg j;
    idld_scratch *own;
} caller;

static void *run_caller(void *arg)
{
    caller *c = arg;
    for (int round = 0; round < 50; round++) {
        job_init(&c->j, c->own, 100);
        idld_assist_run(c->a, count_part, &c->j, PARTS, c->own);
        for (int i = 0; i < PARTS; i++)
            if (atomic_load(&c->j.runs[i]) != 1) return (void *)1;
    }
    return NULL;
}

/* Four callers run 50 jobs each through one pool of two helpers: every job
 * returns with each of its parts run once (a job left in the queue, or
 * freed while a helper held it, shows up here or under ASan). */
static void concurrent_jobs_complete(void)
{
    idld_assist *a = NULL;
    CHECK_INT(idld_assist_new(&a, 2), 0);
    caller c[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        c[i].a = a;
        c[i].own = idld_scratch_new();
        CHECK_INT(pthread_create(&t[i], NULL, run_caller, &c[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        void *ret = NULL;
        pthread_join(t[i], &ret);
        CHECKM(ret == NULL, "caller %d saw a part run other than once", i);
        idld_scratch_free(c[i].own);
    }
    idld_assist_free(a);
}

int main(void)
{
    RUN(no_helpers_runs_on_caller);
    RUN(idle_helpers_take_parts);
    RUN(concurrent_jobs_complete);
    return test_summary();
}
