/* idlookup-clusterlag: how long an opt-out taken by one cluster node takes
 * to be applied by another, under a steady opt-out load (the README's apply
 * lag figure, CLUSTER.md §2).
 *
 *   idlookup-clusterlag --a URL --b URL --key KEY --emails FILE
 *                       [--rate R] [--seconds S] [--probes-every MS]
 *
 * Load: R opt-outs a second in total through node A (open loop, 32 threads,
 * so that the load does not wait on the write latency it measures), by
 * emails from the first part of FILE (one email per line).  Probes: every
 * MS (default 100) one more opt-out through A by an email from the last 10%
 * of FILE, then Search on B for it every 2 ms until it is hidden; the lag is
 * from A's OK to the first Search on B that no longer finds it.  Prints the
 * load achieved and the lag's p50, p99 and max in milliseconds.
 * Exit 0 when every call was OK, 1 when one was not, 2 for bad usage.
 */
#include "args.h"
#include "client.h"
#include "json.h"
#include "status.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOADERS 32

static const char *url_a, *url_b, *key;
static char **emails;
static size_t n_emails, n_load;
static double rate = 1000, seconds = 30;
static uint64_t t_start, t_end;
static _Atomic size_t next_load;
static _Atomic uint64_t sent, failed;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void sleep_until(uint64_t t)
{
    uint64_t n = now_us();
    if (t <= n) return;
    struct timespec ts = {(time_t)((t - n) / 1000000u), (long)((t - n) % 1000000u) * 1000L};
    nanosleep(&ts, NULL);
}

/* Calls method with {"email": e}; returns the code, or -1 on transport
 * failure; *total gets Search's total when asked. */
static int call_email(idl_client *c, const char *method, const char *e, long long *total)
{
    char json[512];
    snprintf(json, sizeof json, "{\"email\": \"%s\"}", e);
    idl_buf body = {0};
    char msg[IDL_ERR_MAX];
    if (idl_json_to_msgpack(json, strlen(json), &body, msg)) return -1;
    idl_reply *r = NULL;
    int rc = idl_client_call(c, method, body.data, body.len, -1, 20000, &r);
    idl_buf_free(&body);
    if (rc) return -1;
    int code = r->code;
    if (total && code == 0) {
        *total = -1;
        const msgpack_object *b = &r->body;
        for (uint32_t i = 0; b->type == MSGPACK_OBJECT_MAP && i < b->via.map.size; i++)
            if (idl_wire_str_eq(&b->via.map.ptr[i].key, "total"))
                *total = (long long)b->via.map.ptr[i].val.via.u64;
    }
    idl_reply_free(r);
    return code;
}

static void *loader(void *arg)
{
    idl_client *c = NULL;
    if (idl_client_open(&c, url_a, key)) return NULL;
    /* Thread i sends requests i, i + LOADERS, ... at their due times. */
    for (uint64_t i = (uint64_t)(uintptr_t)arg;; i += LOADERS) {
        uint64_t due = t_start + (uint64_t)((double)i * 1e6 / rate);
        if (due >= t_end) break;
        sleep_until(due);
        size_t k = atomic_fetch_add(&next_load, 1) % n_load;
        if (call_email(c, "idlookup.v1.Privacy/OptOut", emails[k], NULL) != 0)
            atomic_fetch_add(&failed, 1);
        atomic_fetch_add(&sent, 1);
    }
    idl_client_close(c);
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum { F_A, F_B, F_KEY, F_EMAILS, F_RATE, F_SECONDS, F_EVERY, F_HELP };

static const idl_args_flag flags[] = {
    {"a", 0, "URL", "the node that takes the opt-outs", F_A},
    {"b", 0, "URL", "the node probed until it hides each one", F_B},
    {"key", 0, "KEY", "API key with the privacy and lookup scopes", F_KEY},
    {"emails", 0, "FILE", "one email per line: the load's, then the probes' (last 10%)", F_EMAILS},
    {"rate", 0, "R", "opt-outs per second in total through --a (default 1000)", F_RATE},
    {"seconds", 0, "S", "how long the load runs (default 30)", F_SECONDS},
    {"probes-every", 0, "MS", "one probe every MS milliseconds (default 100)", F_EVERY},
    {"help", 'h', NULL, "this text", F_HELP},
};

static const idl_args_spec spec = {
    .prog = "idlookup-clusterlag",
    .head = "usage: idlookup-clusterlag --a URL --b URL --key KEY --emails FILE\n"
            "                           [--rate R] [--seconds S] [--probes-every MS]\n"
            "How long an opt-out taken by node A takes to be applied by node B, under a\n"
            "steady opt-out load.  Exit 0 when every call was OK, 1 when one was not, 2 for\n"
            "bad usage.\n\n",
    .flags = flags,
    .nflags = sizeof flags / sizeof flags[0],
    .indent = 2,
    .column = 22,
};

/* A positive number for a flag's value, or a usage error naming the flag. */
static bool positive(const char *flag, const char *v, double *out)
{
    char *end = NULL;
    double d = strtod(v, &end);
    if (!*v || *end || !(d > 0)) {
        fprintf(stderr, "idlookup-clusterlag: --%s: expected a positive number, got \"%s\"\n", flag,
                v);
        return false;
    }
    *out = d;
    return true;
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    double every_ms = 100;
    idl_args args;
    const idl_args_flag *fl;
    const char *v;
    idl_args_start(&args, &spec, argc, argv);
    while (idl_args_next(&args, &fl, &v)) {
        switch (fl->id) {
        case F_A:
            url_a = v;
            break;
        case F_B:
            url_b = v;
            break;
        case F_KEY:
            key = v;
            break;
        case F_EMAILS:
            file = v;
            break;
        case F_RATE:
            if (!positive(fl->name, v, &rate)) return IDL_ARGS_EXIT_USAGE;
            break;
        case F_SECONDS:
            if (!positive(fl->name, v, &seconds)) return IDL_ARGS_EXIT_USAGE;
            break;
        case F_EVERY:
            if (!positive(fl->name, v, &every_ms)) return IDL_ARGS_EXIT_USAGE;
            break;
        case F_HELP:
            idl_args_usage(&spec, stdout);
            return 0;
        }
    }
    if (args.status) return idl_args_fail(&spec, stderr, args.err);
    if (!url_a || !url_b || !key || !file)
        return idl_args_fail(&spec, stderr, "--a, --b, --key and --emails are required");
    FILE *f = fopen(file, "r");
    if (!f) {
        perror(file);
        return 2;
    }
    size_t cap = 0;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        if (n_emails == cap)
            emails = realloc(emails, (cap = cap ? cap * 2 : 1024) * sizeof(*emails));
        emails[n_emails++] = strdup(line);
    }
    fclose(f);
    size_t n_probe = n_emails / 10;
    n_load = n_emails - n_probe;
    size_t probes_max = (size_t)(seconds * 1000 / every_ms) + 1;
    if (n_probe < probes_max || n_load == 0) {
        fprintf(stderr, "idlookup-clusterlag: %zu emails is too few for %zu probes\n", n_emails,
                probes_max);
        return 2;
    }
    idl_client *ca = NULL, *cb = NULL;
    if (idl_client_open(&ca, url_a, key) || idl_client_open(&cb, url_b, key)) return 1;
    t_start = now_us() + 100000;
    t_end = t_start + (uint64_t)(seconds * 1e6);
    pthread_t th[LOADERS];
    for (uintptr_t i = 0; i < LOADERS; i++)
        pthread_create(&th[i], NULL, loader, (void *)i);
    double *lag = calloc(probes_max, sizeof(*lag));
    size_t nlag = 0, probe_fail = 0;
    for (size_t p = 0; p < probes_max; p++) {
        uint64_t due = t_start + (uint64_t)((double)p * every_ms * 1000);
        if (due >= t_end) break;
        sleep_until(due);
        const char *e = emails[n_load + p];
        long long total = -1;
        if (call_email(cb, "idlookup.v1.Lookup/Search", e, &total) != 0 || total < 1) {
            probe_fail++; /* not on record on B (or hidden already): not a probe */
            continue;
        }
        if (call_email(ca, "idlookup.v1.Privacy/OptOut", e, NULL) != 0) {
            probe_fail++;
            continue;
        }
        uint64_t acked = now_us();
        for (;;) {
            if (call_email(cb, "idlookup.v1.Lookup/Search", e, &total) == 0 && total == 0) break;
            if (now_us() - acked > 10000000u) break;
            sleep_until(now_us() + 2000);
        }
        lag[nlag++] = (double)(now_us() - acked) / 1000.0;
    }
    for (int i = 0; i < LOADERS; i++)
        pthread_join(th[i], NULL);
    double secs = (double)(now_us() - t_start) / 1e6;
    qsort(lag, nlag, sizeof(*lag), cmp_d);
    printf("load: %llu opt-outs through A in %.1f s (%.0f/s), %llu failed\n",
           (unsigned long long)atomic_load(&sent), secs, (double)atomic_load(&sent) / secs,
           (unsigned long long)atomic_load(&failed));
    if (nlag)
        printf("apply lag A->B over %zu probes (%zu skipped): p50 %.1f ms, p99 %.1f ms, max %.1f "
               "ms\n",
               nlag, probe_fail, lag[nlag / 2], lag[(size_t)((double)(nlag - 1) * 0.99)],
               lag[nlag - 1]);
    free(lag);
    idl_client_close(ca);
    idl_client_close(cb);
    return atomic_load(&failed) || probe_fail > nlag / 10 ? 1 : 0;
}
