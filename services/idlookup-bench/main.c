/* idlookup-bench: the load generator for idlookupd.  It pre-encodes every
 * request envelope, then runs worker threads that each keep one blocking call
 * in flight (closed loop) or send on a fixed schedule (open loop, --rate), and
 * reports throughput, status codes and the latency distribution.
 *
 * The pure parts (flags, mix, schedule, bodies, reply scanning, reports) are
 * in bench_lib.c; this file owns the threads, the clock and the sockets.
 */
#include "bench_lib.h"
#include "client.h"
#include "hist.h"
#include "status.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How many distinct bodies to pre-encode per method: enough that the server
 * sees varied keys (and no cache of a handful), few enough to build in well
 * under a second.  Batch bodies are ~100 times bigger, so fewer of them. */
#define TEMPLATES_PER_METHOD 4096
#define BATCH_TEMPLATES 256
/* Requests above this size may be refused by the transport (API.md 1). */
#define MAX_SAFE_REQUEST 65000
/* Worker threads only call the client and count; a small stack lets
 * thousands of them run. */
#define WORKER_STACK (256 * 1024)
/* How long an open-loop run may overrun its duration to send requests that
 * were due before its end. */
#define OPEN_LOOP_GRACE_NS 1000000000u

/* One pre-encoded request: the whole envelope, with its id at id_off. */
typedef struct {
    unsigned char *env;
    size_t len;
    size_t id_off;
} request_tmpl;

typedef struct {
    request_tmpl *t;
    size_t n;
} tmpl_set;

typedef struct phase phase;

typedef struct {
    pthread_t thread;
    bool started, joined;
    unsigned index;
    idl_client *client;
    phase *ph;
    unsigned char *buf; /* the request being sent: a template with its id */
    uint64_t rng;
    /* Counted requests only (after warmup); read by main after join. */
    idl_hist *hist;
    uint64_t outcomes[IDL_BENCH_NOUTCOMES];
    uint64_t per_method[IDL_BENCH_NMETHODS];
    uint64_t per_method_ok[IDL_BENCH_NMETHODS];
    uint64_t inner[IDL_STATUS_COUNT];
    uint64_t counted;
    uint64_t last_done_ns;
    /* All requests, warmup included, for the progress line. */
    atomic_uint_fast64_t done;
    atomic_uint_fast64_t failed;
} worker;

struct phase {
    const char *name;
    unsigned number;      /* goes into the request ids, so phases never share one */
    const tmpl_set *sets; /* [IDL_BENCH_NMETHODS] */
    idl_bench_mix mix;
    bool open_loop;
    double rate;
    int timeout_ms;
    uint64_t t0_ns;               /* start; request i of the open loop is due at t0 + i/rate */
    uint64_t mstart_ns;           /* end of warmup: from here on requests count */
    uint64_t end_ns;              /* 0 with -n */
    uint64_t limit;               /* counted requests to send with -n, else 0 */
    atomic_uint_fast64_t next;    /* open loop: the next request index */
    atomic_uint_fast64_t claimed; /* -n: counted requests handed out */
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Sleeps until the monotonic clock reads t, waking every 100 ms to notice a
 * stop request (a slow --rate can hand a worker a slot seconds ahead). */
static void sleep_until(uint64_t t)
{
    for (;;) {
        uint64_t now = now_ns();
        if (now >= t || stop_requested) return;
        uint64_t target = t - now > 100000000u ? now + 100000000u : t;
        struct timespec ts = {(time_t)(target / 1000000000u), (long)(target % 1000000000u)};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    }
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Claims the next request for this worker: false when the phase is over.
 * Writes when it is due (*due_ns) and whether it counts. */
static bool next_request(phase *ph, uint64_t *due_ns, bool *counted)
{
    if (stop_requested) return false;
    uint64_t due;
    if (ph->open_loop) {
        uint64_t i = atomic_fetch_add_explicit(&ph->next, 1, memory_order_relaxed);
        due = idl_bench_sched_ns(ph->t0_ns, i, ph->rate);
        /* A backlog left when the run is over (the service or -c could not
         * keep up with --rate) drains for OPEN_LOOP_GRACE at most; what is
         * still unsent then is reported as such, not waited for. */
        if (ph->end_ns && due < ph->end_ns && now_ns() > ph->end_ns + OPEN_LOOP_GRACE_NS)
            return false;
    } else {
        due = now_ns();
    }
    if (ph->end_ns && due >= ph->end_ns) return false;
    *counted = due >= ph->mstart_ns;
    if (*counted && ph->limit &&
        atomic_fetch_add_explicit(&ph->claimed, 1, memory_order_relaxed) >= ph->limit)
        return false;
    *due_ns = due;
    return true;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    phase *ph = w->ph;
    uint64_t seq = 0;
    uint64_t id_base = (uint64_t)ph->number << 56 | (uint64_t)(w->index + 1) << 36;
    uint64_t due;
    bool counted;
    while (next_request(ph, &due, &counted)) {
        if (ph->open_loop) sleep_until(due);
        int m = idl_bench_mix_pick(&ph->mix, rng_next(&w->rng));
        const tmpl_set *set = &ph->sets[m];
        const request_tmpl *t = &set->t[rng_next(&w->rng) % set->n];
        uint64_t id = id_base | (++seq & ((UINT64_C(1) << 36) - 1));
        memcpy(w->buf, t->env, t->len);
        idl_bench_put_id(w->buf, t->id_off, id);

        void *rep = NULL;
        size_t rep_len = 0;
        uint64_t sent = now_ns();
        int rc = idl_client_call_raw(w->client, w->buf, t->len, ph->timeout_ms, &rep, &rep_len);
        uint64_t done = now_ns();

        int outcome;
        uint64_t inner[IDL_STATUS_COUNT] = {0};
        if (rc == 0) {
            uint64_t got_id;
            int code;
            if (idl_bench_scan_reply(rep, rep_len, &got_id, &code,
                                     m == IDL_BENCH_BATCH ? inner : NULL) ||
                got_id != id)
                outcome = IDL_BENCH_BAD_REPLY;
            else
                outcome = code;
            free(rep);
        } else if (rc == IDL_DEADLINE_EXCEEDED) {
            outcome = IDL_BENCH_TIMEOUT;
        } else if (rc == IDL_INTERNAL) {
            outcome = IDL_BENCH_BAD_REPLY;
        } else {
            outcome = IDL_BENCH_TRANSPORT_ERROR;
        }

        atomic_fetch_add_explicit(&w->done, 1, memory_order_relaxed);
        if (outcome != IDL_OK) atomic_fetch_add_explicit(&w->failed, 1, memory_order_relaxed);
        if (!counted) continue;
        w->counted++;
        w->outcomes[outcome]++;
        w->per_method[m]++;
        w->per_method_ok[m] += outcome == IDL_OK;
        for (int c = 0; c < IDL_STATUS_COUNT; c++)
            w->inner[c] += inner[c];
        /* Transport failures have no reply to time; they show in the codes. */
        if (rc == 0) {
            uint64_t lat = idl_bench_latency_ns(ph->open_loop, due, sent, done);
            idl_hist_record(w->hist, (lat + 500) / 1000);
        }
        w->last_done_ns = done;
    }
    return NULL;
}

static void progress_line(const phase *ph, worker *ws, unsigned n, uint64_t now, bool tty,
                          uint64_t *prev_done, uint64_t *prev_ns)
{
    uint64_t done = 0, failed = 0;
    for (unsigned i = 0; i < n; i++) {
        done += atomic_load_explicit(&ws[i].done, memory_order_relaxed);
        failed += atomic_load_explicit(&ws[i].failed, memory_order_relaxed);
    }
    double dt = (double)(now - *prev_ns) / 1e9;
    double rps = dt > 0 ? (double)(done - *prev_done) / dt : 0;
    double elapsed = (double)(now - ph->t0_ns) / 1e9;
    /* On a terminal the line is rewritten in place; in a log, one per second. */
    fprintf(stderr, "%s%s %s %5.0fs  %llu requests  %.0f req/s  %llu errors   %s", tty ? "\r" : "",
            ph->name, now < ph->mstart_ns ? "warmup" : "run   ", elapsed, (unsigned long long)done,
            rps, (unsigned long long)failed, tty ? "" : "\n");
    fflush(stderr);
    *prev_done = done;
    *prev_ns = now;
}

/* Runs one phase with o's load shape and fills *res (res->latency_us is
 * the caller's histogram, reset here).  Returns 0 or a status. */
static int run_phase(phase *ph, const idl_bench_opts *o, idl_client **clients, size_t max_len,
                     bool show_progress, idl_bench_result *res, idl_hist *hist)
{
    int rc = IDL_RESOURCE_EXHAUSTED, start_err = 0;
    unsigned n = o->concurrency;
    worker *ws = calloc(n, sizeof(*ws));
    pthread_attr_t attr;
    bool attr_ok = false;
    if (!ws) goto fail;
    for (unsigned i = 0; i < n; i++) {
        ws[i].index = i;
        ws[i].ph = ph;
        ws[i].client = clients[i % o->sockets];
        ws[i].rng = o->seed * 1000003u + i * UINT64_C(0x632be59bd9b4e019) + ph->number;
        atomic_init(&ws[i].done, 0);
        atomic_init(&ws[i].failed, 0);
        if (!(ws[i].buf = malloc(max_len)) || idl_hist_new(&ws[i].hist)) goto fail;
    }
    if (pthread_attr_init(&attr)) goto fail;
    attr_ok = true;
    pthread_attr_setstacksize(&attr, WORKER_STACK);

    /* A short lead so that every thread is up before request 0 is due. */
    ph->t0_ns = now_ns() + (ph->open_loop ? 20000000u : 0);
    ph->mstart_ns = ph->t0_ns + (uint64_t)(o->warmup_s * 1e9);
    ph->end_ns = o->duration_s > 0 ? ph->mstart_ns + (uint64_t)(o->duration_s * 1e9) : 0;
    ph->limit = o->requests;
    atomic_init(&ph->next, 0);
    atomic_init(&ph->claimed, 0);

    for (unsigned i = 0; i < n; i++) {
        int e = pthread_create(&ws[i].thread, &attr, worker_main, &ws[i]);
        if (e) {
            fprintf(stderr, "idlookup-bench: cannot start worker %u of %u: %s\n", i + 1, n,
                    strerror(e));
            /* The workers already running stop at their next request. */
            stop_requested = 1;
            start_err = IDL_RESOURCE_EXHAUSTED;
            break;
        }
        ws[i].started = true;
    }

    /* Watch the workers; they end on their own (duration, -n or a signal). */
    uint64_t prev_done = 0, prev_ns = ph->t0_ns, last_print = ph->t0_ns;
    bool tty = isatty(STDERR_FILENO);
    bool printed = false;
    for (;;) {
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
        unsigned running = 0;
        for (unsigned i = 0; i < n; i++) {
            if (!ws[i].started || ws[i].joined) continue;
            if (pthread_tryjoin_np(ws[i].thread, NULL) == EBUSY)
                running++;
            else
                ws[i].joined = true;
        }
        if (running == 0) break;
        uint64_t now = now_ns();
        /* Short runs stay quiet: the line appears after 2 s, once a second. */
        if (show_progress && now >= ph->t0_ns + 2000000000u && now - last_print >= 1000000000u) {
            progress_line(ph, ws, n, now, tty, &prev_done, &prev_ns);
            last_print = now;
            printed = true;
        }
    }
    if (printed && tty) fprintf(stderr, "\r\033[K");

    memset(res, 0, sizeof(*res));
    idl_hist_reset(hist);
    uint64_t last = ph->mstart_ns;
    for (unsigned i = 0; i < n; i++) {
        worker *w = &ws[i];
        res->requests += w->counted;
        for (int c = 0; c < IDL_BENCH_NOUTCOMES; c++)
            res->outcomes[c] += w->outcomes[c];
        for (int m = 0; m < IDL_BENCH_NMETHODS; m++) {
            res->per_method[m] += w->per_method[m];
            res->per_method_ok[m] += w->per_method_ok[m];
        }
        for (int c = 0; c < IDL_STATUS_COUNT; c++)
            res->inner[c] += w->inner[c];
        idl_hist_merge(hist, w->hist);
        if (w->last_done_ns > last) last = w->last_done_ns;
    }
    /* The measured window runs from the end of warmup to the last counted
     * reply, so the tail of in-flight requests is inside it. */
    res->duration_s = (double)(last - ph->mstart_ns) / 1e9;
    res->latency_us = hist;
    res->interrupted = stop_requested;
    if (ph->open_loop && ph->end_ns && !stop_requested) {
        uint64_t due = idl_bench_due_before(ph->t0_ns, ph->rate, ph->end_ns) -
                       idl_bench_due_before(ph->t0_ns, ph->rate, ph->mstart_ns);
        res->unsent = due > res->requests ? due - res->requests : 0;
    }
    rc = start_err;

fail:
    /* On the way through from a finished run, rc is start_err (already said). */
    if (rc && !start_err) fprintf(stderr, "idlookup-bench: out of memory for %u workers\n", n);
    if (attr_ok) pthread_attr_destroy(&attr);
    if (ws) {
        for (unsigned i = 0; i < n; i++) {
            free(ws[i].buf);
            idl_hist_free(ws[i].hist);
        }
    }
    free(ws);
    return rc;
}

static void free_sets(tmpl_set *sets)
{
    for (int m = 0; m < IDL_BENCH_NMETHODS; m++) {
        for (size_t i = 0; i < sets[m].n; i++)
            free(sets[m].t[i].env);
        free(sets[m].t);
        sets[m].t = NULL;
        sets[m].n = 0;
    }
}

/* Pre-encodes the envelopes of method m: bodies from the pool, wrapped by the
 * client library's encoder with the id marker, whose offset is then found so
 * the load loop only patches 8 bytes per request. */
static int build_set(const idl_bench_opts *o, const idl_bench_pool *pool, int m, tmpl_set *set,
                     size_t *max_len)
{
    size_t count = 1;
    if (m == IDL_BENCH_BATCH)
        count = idl_bench_pool_size(pool) < BATCH_TEMPLATES ? idl_bench_pool_size(pool)
                                                            : BATCH_TEMPLATES;
    else if (m != IDL_BENCH_HEALTH)
        count = idl_bench_pool_size(pool) < TEMPLATES_PER_METHOD ? idl_bench_pool_size(pool)
                                                                 : TEMPLATES_PER_METHOD;
    if (count == 0) count = 1;
    idl_bench_body *bodies = NULL;
    int rc = idl_bench_bodies(pool, m, count, o->miss_ratio, o->batch_size, o->search_by, o->seed,
                              &bodies);
    if (rc) {
        fprintf(stderr, "idlookup-bench: cannot build %s requests: %s\n", idl_bench_method_name(m),
                idl_status_name(rc));
        return rc;
    }
    if (!(set->t = calloc(count, sizeof(*set->t)))) {
        rc = IDL_RESOURCE_EXHAUSTED;
        goto fail;
    }
    for (size_t i = 0; i < count; i++) {
        request_tmpl *t = &set->t[i];
        void *env = NULL;
        size_t len = 0;
        rc = idl_request_encode(IDL_BENCH_ID_MARKER, idl_bench_method_wire(m), o->key,
                                o->deadline_ms, bodies[i].data, bodies[i].len, &env, &len);
        if (rc) {
            fprintf(stderr, "idlookup-bench: cannot encode a %s request: %s\n",
                    idl_bench_method_name(m), idl_status_name(rc));
            goto fail;
        }
        t->env = env;
        t->len = len;
        set->n++;
        if ((rc = idl_bench_find_id(env, len, IDL_BENCH_ID_MARKER, &t->id_off))) {
            fprintf(stderr,
                    "idlookup-bench: the encoded %s envelope does not hold its id as "
                    "msgpack uint64\n",
                    idl_bench_method_name(m));
            goto fail;
        }
        if (len > *max_len) *max_len = len;
        if (len > MAX_SAFE_REQUEST)
            fprintf(stderr,
                    "idlookup-bench: warning: a %s request is %zu bytes, above the "
                    "65,000 the service always serves\n",
                    idl_bench_method_name(m), len);
    }
    idl_bench_bodies_free(bodies, count);
    return 0;

fail:
    idl_bench_bodies_free(bodies, count);
    return rc;
}

int main(int argc, char **argv)
{
    idl_bench_opts o;
    char err[256];
    int exit_code = 1;
    idl_bench_pool *pool = NULL;
    idl_client **clients = NULL;
    idl_hist *work_hist = NULL, *base_hist = NULL;
    tmpl_set sets[IDL_BENCH_NMETHODS] = {{0}}, health_sets[IDL_BENCH_NMETHODS] = {{0}};
    size_t max_len = 0;

    if (idl_bench_parse_args(argc, argv, &o, err, sizeof(err))) {
        fprintf(stderr, "idlookup-bench: %s\n", err);
        return 2;
    }
    if (o.help) {
        idl_bench_usage(stdout);
        return 0;
    }

    if (o.data) {
        size_t skipped = 0;
        if (idl_bench_pool_load(o.data, &pool, &skipped, err, sizeof(err))) {
            fprintf(stderr, "idlookup-bench: %s\n", err);
            goto out;
        }
        if (skipped)
            fprintf(stderr, "idlookup-bench: %s: skipped %zu lines without a usable person\n",
                    o.data, skipped);
        if (idl_bench_pool_fits(pool, &o, err, sizeof(err))) {
            fprintf(stderr, "idlookup-bench: %s\n", err);
            goto out;
        }
    }
    for (int m = 0; m < IDL_BENCH_NMETHODS; m++)
        if (o.mix.weight[m] && build_set(&o, pool, m, &sets[m], &max_len)) goto out;
    if (o.baseline &&
        build_set(&o, NULL, IDL_BENCH_HEALTH, &health_sets[IDL_BENCH_HEALTH], &max_len))
        goto out;

    if (!(clients = calloc(o.sockets, sizeof(*clients)))) goto out;
    for (unsigned i = 0; i < o.sockets; i++) {
        int rc = idl_client_open(&clients[i], o.url, o.key);
        if (rc) {
            fprintf(stderr, "idlookup-bench: --url: cannot open %s: %s\n", o.url,
                    idl_status_name(rc));
            exit_code = rc == IDL_INVALID_ARGUMENT ? 2 : 1;
            goto out;
        }
    }
    if (idl_hist_new(&work_hist) || idl_hist_new(&base_hist)) goto out;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    bool show_progress = o.progress || isatty(STDERR_FILENO);
    idl_bench_result base_res, work_res;
    if (o.baseline) {
        /* The ceiling is measured closed-loop: at a fixed --rate it would just
         * echo the rate back. */
        idl_bench_mix health_only = {{0}, 1};
        health_only.weight[IDL_BENCH_HEALTH] = 1;
        phase bp = {.name = "baseline",
                    .number = 1,
                    .sets = health_sets,
                    .mix = health_only,
                    .open_loop = false,
                    .timeout_ms = o.timeout_ms};
        if (run_phase(&bp, &o, clients, max_len, show_progress, &base_res, base_hist)) goto out;
    }
    phase wp = {.name = o.method_label ? o.method_label : "mix",
                .number = 2,
                .sets = sets,
                .mix = o.mix,
                .open_loop = o.rate > 0,
                .rate = o.rate,
                .timeout_ms = o.timeout_ms};
    if (run_phase(&wp, &o, clients, max_len, show_progress, &work_res, work_hist)) goto out;

    int rc = o.json ? idl_bench_report_json(&o, &work_res, o.baseline ? &base_res : NULL, stdout)
                    : idl_bench_report_text(&o, &work_res, o.baseline ? &base_res : NULL, stdout);
    if (rc) {
        fprintf(stderr, "idlookup-bench: cannot write the report: %s\n", strerror(errno));
        goto out;
    }
    if (work_res.requests == 0) {
        fprintf(stderr, "idlookup-bench: no request was counted\n");
        goto out;
    }
    if (idl_bench_error_share(&work_res) > o.max_errors) {
        fprintf(stderr, "idlookup-bench: %.3f%% of requests failed, more than --max-errors %g\n",
                100 * idl_bench_error_share(&work_res), o.max_errors);
        goto out;
    }
    exit_code = 0;

out:
    if (clients)
        for (unsigned i = 0; i < o.sockets; i++)
            idl_client_close(clients[i]);
    free(clients);
    free_sets(sets);
    free_sets(health_sets);
    idl_hist_free(work_hist);
    idl_hist_free(base_hist);
    idl_bench_pool_free(pool);
    return exit_code;
}
