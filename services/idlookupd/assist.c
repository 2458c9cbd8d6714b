/* Helper threads for a request's independent parts (see assist.h).
 *
 * One mutex guards a short queue of jobs; parts are claimed with an atomic
 * counter, so the lock is taken a few times per job, not per part.  A job
 * lives on its caller's stack: it leaves the queue under the lock, and the
 * caller returns only when no helper still holds it. */
#include "assist.h"
#include "status.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

typedef struct job {
    idld_assist_fn fn;
    void *arg;
    size_t nparts;
    atomic_size_t next; /* the next unclaimed part */
    size_t users;       /* helpers working on it; under the lock */
    struct job *qnext;
} job;

struct idld_assist {
    pthread_mutex_t lock;
    pthread_cond_t work; /* a job was queued, or stop */
    pthread_cond_t left; /* a helper left a job */
    job *head;
    bool stop;
    size_t n, cap; /* helpers started, helpers asked for */
    pthread_t *threads;
    idld_scratch **scratch;
};

/* Runs parts of j until none is left to claim. */
static void drain(job *j, idld_scratch *scratch)
{
    for (;;) {
        size_t p = atomic_fetch_add(&j->next, 1);
        if (p >= j->nparts) return;
        j->fn(j->arg, p, scratch);
    }
}

static void unlink_job(idld_assist *a, job *j)
{
    for (job **pp = &a->head; *pp; pp = &(*pp)->qnext) {
        if (*pp == j) {
            *pp = j->qnext;
            return;
        }
    }
}

typedef struct {
    idld_assist *a;
    size_t index;
} helper_arg;

static void *helper_main(void *arg)
{
    idld_assist *a = ((helper_arg *)arg)->a;
    idld_scratch *scratch = a->scratch[((helper_arg *)arg)->index];
    free(arg);
    /* Named so that top and perf tell Batch's share apart. */
    pthread_setname_np(pthread_self(), "idl:batch");
    pthread_mutex_lock(&a->lock);
    for (;;) {
        while (!a->stop && !a->head)
            pthread_cond_wait(&a->work, &a->lock);
        if (a->stop) break;
        job *j = a->head;
        j->users++;
        pthread_mutex_unlock(&a->lock);
        drain(j, scratch);
        pthread_mutex_lock(&a->lock);
        /* Every part is claimed: no one else needs to find this job. */
        unlink_job(a, j);
        j->users--;
        pthread_cond_broadcast(&a->left);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

int idld_assist_new(idld_assist **out, size_t nthreads)
{
    *out = NULL;
    if (nthreads == 0) return IDL_OK;
    idld_assist *a = calloc(1, sizeof(*a));
    if (!a) return IDL_INTERNAL;
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->work, NULL);
    pthread_cond_init(&a->left, NULL);
    a->cap = nthreads;
    a->threads = calloc(nthreads, sizeof(*a->threads));
    a->scratch = calloc(nthreads, sizeof(*a->scratch));
    if (!a->threads || !a->scratch) goto fail;
    for (size_t i = 0; i < nthreads; i++) {
        helper_arg *ha = malloc(sizeof(*ha));
        if (!ha || !(a->scratch[i] = idld_scratch_new())) {
            free(ha);
            goto fail;
        }
        ha->a = a;
        ha->index = i;
        if (pthread_create(&a->threads[i], NULL, helper_main, ha) != 0) {
            free(ha);
            goto fail;
        }
        a->n = i + 1;
    }
    *out = a;
    return IDL_OK;
fail:
    idld_assist_free(a);
    return IDL_INTERNAL;
}

void idld_assist_free(idld_assist *a)
{
    if (!a) return;
    pthread_mutex_lock(&a->lock);
    a->stop = true;
    pthread_cond_broadcast(&a->work);
    pthread_mutex_unlock(&a->lock);
    for (size_t i = 0; i < a->n; i++)
        pthread_join(a->threads[i], NULL);
    for (size_t i = 0; a->scratch && i < a->cap; i++)
        idld_scratch_free(a->scratch[i]);
    free(a->scratch);
    free(a->threads);
    pthread_cond_destroy(&a->work);
    pthread_cond_destroy(&a->left);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

void idld_assist_run(idld_assist *a, idld_assist_fn fn, void *arg, size_t nparts, idld_scratch *own)
{
    job j = {.fn = fn, .arg = arg, .nparts = nparts};
    atomic_init(&j.next, 0);
    if (a && nparts > 1) {
        pthread_mutex_lock(&a->lock);
        /* First come, first helped: the oldest batch finishes first. */
        job **tail = &a->head;
        while (*tail)
            tail = &(*tail)->qnext;
        j.qnext = NULL;
        *tail = &j;
        pthread_cond_broadcast(&a->work);
        pthread_mutex_unlock(&a->lock);
    }
    drain(&j, own);
    if (a && nparts > 1) {
        pthread_mutex_lock(&a->lock);
        unlink_job(a, &j);
        while (j.users > 0)
            pthread_cond_wait(&a->left, &a->lock);
        pthread_mutex_unlock(&a->lock);
    }
}
