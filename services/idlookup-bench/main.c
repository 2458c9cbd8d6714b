/* idlookup-bench: the load generator for idlookupd.  It pre-encodes every
 * request envelope, keeps -c requests in flight over --sockets connections
 * (closed loop), or sends request i at t0 + i/--rate (open loop, latency
 * from the due time), and reports throughput, status codes and the latency
 * distribution.
 *
 * Two clients carry the requests:
 *  - raw (raw_client.c, the default for tcp:// URLs): SP over TCP spoken by
 *    --threads epoll loops of our own, wrk-style: all due requests of a
 *    connection go out in one send, replies come in big reads and only
 *    their id and code are read.  No nng, no lock and no allocation per
 *    request.
 *  - nng (this file; --client nng, and any URL that is not tcp://): nng
 *    req0 contexts, each a small state machine driven by its aio callback
 *    (SEND -> RECV -> record -> next SEND); in the open loop one scheduler
 *    thread hands each request to a free context when it is due.
 *
 * Why two: with nng every reply crossed from its poller thread to a taskq
 * thread, a wakeup per reply; the bench spent most of its CPU in the kernel
 * switching threads, more per request the slower the replies (a Search cost
 * it twice a Health).  nng stays for the other transports and to compare.
 *
 * The pure parts (flags, mix, schedule, bodies, reply scanning, SP framing,
 * reports) are in bench_lib.c; what both clients share while a phase runs
 * (claims, tallies) in bench_run.c; this file owns the nng contexts, the
 * templates and the flow of a run.
 */
#include "bench_lib.h"
#include "bench_run.h"
#include "raw_client.h"
#include "client.h"
#include "hist.h"
#include "status.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

/* How many distinct bodies to pre-encode per method: enough that the server
 * sees varied keys (and no cache of a handful), few enough to build in well
 * under a second.  Batch bodies are ~100 times bigger, so fewer of them. */
#define TEMPLATES_PER_METHOD 4096
#define BATCH_TEMPLATES 256
/* Requests above this size may be refused by the transport (API.md 1). */
#define MAX_SAFE_REQUEST 65000

typedef struct phase phase;

/* One request context: an nng req0 context, its aio, and the request in
 * flight.  Its callback never runs concurrently with itself, and the
 * scheduler touches it only while it is on the free list, when no operation
 * is pending; so its counters need no lock. */
typedef struct conn {
    phase *ph;
    unsigned index;
    nng_ctx ctx;
    bool ctx_open;
    nng_aio *aio;
    /* Owned between requests, else NULL: the last reply, cleared and
     * refilled with the next request so that steady state allocates
     * nothing of ours. */
    nng_msg *msg;
    bool receiving; /* the pending operation is the recv, not the send */
    uint64_t seq;
    uint64_t rng;
    /* The request in flight. */
    uint64_t id;
    bench_req req;
    /* Written only by this context's callback (or by the scheduler while
     * the context is free); read by main once the phase is over. */
    bench_tally tally;
    struct conn *next_free; /* open loop: link on the free list */
} conn;

struct phase {
    bench_phase b;
    /* The lock guards the rest; it is taken when a context stops or goes
     * back to the free list, never around a request. */
    pthread_mutex_t lock;
    pthread_cond_t changed; /* idle, free or sched_done changed (CLOCK_MONOTONIC) */
    unsigned idle;          /* contexts with no request in flight that will start none */
    conn *free;             /* open loop: contexts waiting for the scheduler */
    bool sched_done;        /* open loop: the scheduler hands out no more requests */
};

static void on_signal(int sig)
{
    (void)sig;
    bench_stop_requested = 1;
}

static struct timespec ts_of(uint64_t t)
{
    struct timespec ts = {(time_t)(t / 1000000000u), (long)(t % 1000000000u)};
    return ts;
}

/* Sleeps until the monotonic clock reads t, waking now and then to notice a
 * stop request (a slow --rate can put the next request seconds ahead). */
static void sleep_until(uint64_t t)
{
    for (;;) {
        uint64_t now = bench_now_ns();
        if (now >= t || bench_stop_requested) return;
        struct timespec ts = ts_of(t - now > BENCH_STOP_POLL_NS ? now + BENCH_STOP_POLL_NS : t);
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    }
}

/* Sends the request claimed in c->req (due_ns, counted): a template of a
 * method picked by the mix, with a fresh id.  Returns 0 once it is handed to
 * nng, after which c belongs to its callback and the caller must not touch
 * it; or IDL_RESOURCE_EXHAUSTED when no message could be built (nothing was
 * sent, c is still the caller's). */
static int start_request(conn *c)
{
    const bench_phase *ph = &c->ph->b;
    c->req.method = idl_bench_mix_pick(&ph->mix, bench_rng_next(&c->rng));
    const bench_tmpl_set *set = &ph->sets[c->req.method];
    const bench_tmpl *t = &set->t[bench_rng_next(&c->rng) % set->n];
    c->id = (uint64_t)ph->number << 56 | (uint64_t)(c->index + 1) << 36 |
            (++c->seq & ((UINT64_C(1) << 36) - 1));
    if (!c->msg && nng_msg_alloc(&c->msg, 0) != 0) {
        c->msg = NULL;
        return IDL_RESOURCE_EXHAUSTED;
    }
    nng_msg_clear(c->msg);
    if (nng_msg_append(c->msg, t->env, t->len) != 0) return IDL_RESOURCE_EXHAUSTED;
    idl_bench_put_id(nng_msg_body(c->msg), t->id_off, c->id);
    nng_aio_set_msg(c->aio, c->msg);
    c->msg = NULL; /* nng's from the send on, unless the send fails */
    c->receiving = false;
    c->req.sent_ns = bench_now_ns();
    nng_ctx_send(c->ctx, c->aio);
    return 0;
}

static void record(conn *c, int outcome, const uint64_t *inner, bool replied, uint64_t done)
{
    bench_tally_record(&c->tally, &c->ph->b, &c->req, outcome, inner, replied, done);
}

/* A context with nothing more to do: counted idle, and in the open loop put
 * back on the free list for the scheduler.  The last thing a callback does,
 * since the scheduler may start c's next request right after the unlock. */
static void conn_idle(conn *c)
{
    phase *ph = c->ph;
    pthread_mutex_lock(&ph->lock);
    if (ph->b.open_loop) {
        c->next_free = ph->free;
        ph->free = c;
    }
    ph->idle++;
    pthread_cond_broadcast(&ph->changed);
    pthread_mutex_unlock(&ph->lock);
}

/* After a request: the closed loop claims and sends the next one at once
 * (until the phase is over); the open loop waits for the scheduler. */
static void conn_next(conn *c)
{
    if (c->ph->b.open_loop) {
        conn_idle(c);
        return;
    }
    while (bench_next_request(&c->ph->b, &c->req.due_ns, &c->req.counted)) {
        if (start_request(c) == 0) return;
        record(c, IDL_BENCH_TRANSPORT_ERROR, NULL, false, bench_now_ns());
    }
    conn_idle(c);
}

/* The aio callback: the send or the recv of c's request has finished. */
static void conn_cb(void *arg)
{
    conn *c = arg;
    uint64_t done = bench_now_ns();
    int r = nng_aio_result(c->aio);
    uint64_t inner[IDL_STATUS_COUNT];
    bool is_batch = c->req.method == IDL_BENCH_BATCH;
    bool replied = false;
    int outcome;
    if (!c->receiving && r == 0) {
        c->receiving = true;
        nng_aio_set_timeout(c->aio, c->ph->b.timeout_ms);
        nng_ctx_recv(c->ctx, c->aio);
        return;
    }
    if (!c->receiving) {
        /* Never sent (no connection within --timeout-ms): nng gives the
         * message back. */
        c->msg = nng_aio_get_msg(c->aio);
        nng_aio_set_msg(c->aio, NULL);
        outcome = r == NNG_ETIMEDOUT ? IDL_BENCH_TIMEOUT : IDL_BENCH_TRANSPORT_ERROR;
    } else if (r == 0) {
        nng_msg *rep = nng_aio_get_msg(c->aio);
        nng_aio_set_msg(c->aio, NULL);
        uint64_t got_id;
        int code;
        if (is_batch) memset(inner, 0, sizeof(inner));
        if (idl_bench_scan_reply(nng_msg_body(rep), nng_msg_len(rep), &got_id, &code,
                                 is_batch ? inner : NULL) ||
            got_id != c->id)
            outcome = IDL_BENCH_BAD_REPLY;
        else
            outcome = code;
        c->msg = rep;
        replied = true;
    } else {
        outcome = r == NNG_ETIMEDOUT ? IDL_BENCH_TIMEOUT : IDL_BENCH_TRANSPORT_ERROR;
    }
    record(c, outcome, replied && is_batch ? inner : NULL, replied, done);
    conn_next(c);
}

/* Open loop: waits for a free context and takes it off the list.  NULL when
 * the run is stopped, or over and past its grace, while none came free. */
static conn *take_free(phase *ph)
{
    conn *c = NULL;
    pthread_mutex_lock(&ph->lock);
    while (!(c = ph->free)) {
        uint64_t now = bench_now_ns();
        if (bench_stop_requested || (ph->b.end_ns && now > ph->b.end_ns + BENCH_OPEN_LOOP_GRACE_NS))
            break;
        struct timespec ts = ts_of(now + BENCH_STOP_POLL_NS);
        pthread_cond_timedwait(&ph->changed, &ph->lock, &ts);
    }
    if (c) {
        ph->free = c->next_free;
        ph->idle--;
    }
    pthread_mutex_unlock(&ph->lock);
    return c;
}

/* The open loop's scheduler: request i is due at t0 + i/rate and goes to the
 * first free context then.  When all are busy it waits for one, and that
 * wait counts in the request's latency (it is timed from the due time), as
 * a client that cannot send on time would feel it. */
static void *scheduler_main(void *arg)
{
    phase *ph = arg;
    uint64_t due;
    bool counted;
    /* The default 50 us timer slack would make every send late by up to
     * that much, and the latency counts from the due time. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    while (bench_next_request(&ph->b, &due, &counted)) {
        sleep_until(due);
        if (bench_stop_requested) break;
        conn *c = take_free(ph);
        if (!c) break;
        c->req.due_ns = due;
        c->req.counted = counted;
        if (start_request(c) != 0) {
            record(c, IDL_BENCH_TRANSPORT_ERROR, NULL, false, bench_now_ns());
            conn_idle(c);
        }
    }
    pthread_mutex_lock(&ph->lock);
    ph->sched_done = true;
    pthread_cond_broadcast(&ph->changed);
    pthread_mutex_unlock(&ph->lock);
    return NULL;
}

/* Whether every context is idle for good; called with ph->lock held. */
static bool phase_over(const phase *ph, unsigned n)
{
    return ph->idle == n && (!ph->b.open_loop || ph->sched_done);
}

/* Runs one phase with o's load shape on nng contexts over the sockets and
 * fills *res (res->latency_us is the caller's histogram, reset here).  When
 * the phase mixes methods and mhist is not NULL, each mixed method's latency
 * goes to the caller's mhist[method] too (res->method_latency_us).  Returns
 * 0 or a status. */
static int run_phase_nng(bench_phase *bph, const idl_bench_opts *o, const nng_socket *socks,
                         bool show_progress, idl_bench_result *res, idl_hist *hist,
                         idl_hist *const *mhist)
{
    int mixed = 0;
    for (int m = 0; m < IDL_BENCH_NMETHODS; m++)
        mixed += bph->mix.weight[m] > 0;
    if (mixed < 2) mhist = NULL;
    int rc = IDL_RESOURCE_EXHAUSTED;
    unsigned n = o->concurrency;
    phase phs = {.b = *bph}, *ph = &phs;
    conn *cs = calloc(n, sizeof(*cs));
    pthread_condattr_t cattr;
    bool lock_ok = false, cond_ok = false, sched_started = false;
    pthread_t sched;
    if (!cs) {
        fprintf(stderr, "idlookup-bench: out of memory for %u contexts\n", n);
        goto fail;
    }
    if (pthread_mutex_init(&ph->lock, NULL)) goto fail;
    lock_ok = true;
    if (pthread_condattr_init(&cattr)) goto fail;
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
    cond_ok = pthread_cond_init(&ph->changed, &cattr) == 0;
    pthread_condattr_destroy(&cattr);
    if (!cond_ok) goto fail;
    for (unsigned i = 0; i < n; i++) {
        conn *c = &cs[i];
        c->index = i;
        c->ph = ph;
        c->rng = o->seed * 1000003u + i * UINT64_C(0x632be59bd9b4e019) + ph->b.number;
        if (bench_tally_init(&c->tally, &ph->b, mhist != NULL)) {
            fprintf(stderr, "idlookup-bench: out of memory for %u contexts\n", n);
            goto fail;
        }
        int e = nng_ctx_open(&c->ctx, socks[i % o->sockets]);
        if (e == 0) c->ctx_open = true;
        if (e == 0) e = nng_aio_alloc(&c->aio, conn_cb, c);
        if (e) {
            fprintf(stderr, "idlookup-bench: cannot open request context %u of %u: %s\n", i + 1, n,
                    nng_strerror(e));
            goto fail;
        }
        nng_aio_set_timeout(c->aio, ph->b.timeout_ms);
    }

    /* In the open loop, a short lead so that the scheduler is up before
     * request 0 is due. */
    bench_phase_start(&ph->b, o, ph->b.open_loop ? 20000000u : 0);
    ph->idle = 0;
    ph->free = NULL;
    ph->sched_done = false;

    if (ph->b.open_loop) {
        for (unsigned i = n; i-- > 0;) {
            cs[i].next_free = ph->free;
            ph->free = &cs[i];
        }
        ph->idle = n;
        int e = pthread_create(&sched, NULL, scheduler_main, ph);
        if (e) {
            fprintf(stderr, "idlookup-bench: cannot start the scheduler: %s\n", strerror(e));
            goto fail;
        }
        sched_started = true;
    } else {
        /* Each context claims its first request here; its callback claims
         * every later one. */
        for (unsigned i = 0; i < n; i++)
            conn_next(&cs[i]);
    }

    /* Watch the contexts; they stop on their own (duration, -n or a signal). */
    uint64_t prev_done = 0, prev_ns = ph->b.t0_ns, last_print = ph->b.t0_ns;
    bool tty = isatty(STDERR_FILENO);
    bool printed = false;
    pthread_mutex_lock(&ph->lock);
    while (!phase_over(ph, n)) {
        struct timespec ts = ts_of(bench_now_ns() + 50000000u);
        pthread_cond_timedwait(&ph->changed, &ph->lock, &ts);
        uint64_t now = bench_now_ns();
        /* Short runs stay quiet: the line appears after 2 s, once a second. */
        if (show_progress && now >= ph->b.t0_ns + 2000000000u && now - last_print >= 1000000000u) {
            pthread_mutex_unlock(&ph->lock);
            uint64_t done = 0, failed = 0;
            for (unsigned i = 0; i < n; i++) {
                done += atomic_load_explicit(&cs[i].tally.done, memory_order_relaxed);
                failed += atomic_load_explicit(&cs[i].tally.failed, memory_order_relaxed);
            }
            bench_progress_line(&ph->b, done, failed, now, tty, &prev_done, &prev_ns);
            last_print = now;
            printed = true;
            pthread_mutex_lock(&ph->lock);
        }
    }
    pthread_mutex_unlock(&ph->lock);
    if (printed && tty) fprintf(stderr, "\r\033[K");
    if (sched_started) pthread_join(sched, NULL);
    /* The last callbacks may still be returning from conn_idle. */
    for (unsigned i = 0; i < n; i++)
        nng_aio_stop(cs[i].aio);

    memset(res, 0, sizeof(*res));
    idl_hist_reset(hist);
    for (int m = 0; mhist && m < IDL_BENCH_NMETHODS; m++) {
        if (!ph->b.mix.weight[m]) continue;
        idl_hist_reset(mhist[m]);
        res->method_latency_us[m] = mhist[m];
    }
    uint64_t last = ph->b.mstart_ns;
    for (unsigned i = 0; i < n; i++)
        bench_tally_merge(&cs[i].tally, res, hist, mhist, &last);
    res->latency_us = hist;
    bench_result_finish(&ph->b, res, last);
    rc = 0;

fail:
    /* A setup failure gets here before the first request, a finished run
     * after the last callback: either way no operation is pending. */
    if (cs) {
        for (unsigned i = 0; i < n; i++) {
            conn *c = &cs[i];
            if (c->aio) nng_aio_free(c->aio);
            if (c->ctx_open) nng_ctx_close(c->ctx);
            if (c->msg) nng_msg_free(c->msg);
            bench_tally_free(&c->tally);
        }
    }
    free(cs);
    if (cond_ok) pthread_cond_destroy(&ph->changed);
    if (lock_ok) pthread_mutex_destroy(&ph->lock);
    return rc;
}

/* Opens one req0 socket dialing url, set up as the client library sets up
 * its own.  The dial does not block: a daemon that is not up yet is reached
 * when it comes up, and until then requests time out.  Returns 0,
 * IDL_INVALID_ARGUMENT for a URL nng refuses, or IDL_UNAVAILABLE. */
static int open_socket(nng_socket *out, const char *url)
{
    nng_socket s;
    if (nng_req0_open(&s) != 0) return IDL_UNAVAILABLE;
    /* Never resend: a resent request would be counted once but served
     * twice, and its latency would hide the loss. */
    nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_socket_set_ms(s, NNG_OPT_RECONNMINT, 10);
    nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, 500);
    nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 0);
    /* A comma-separated list dials every node of a cluster: the socket
     * spreads requests over them (the flag parser checked each URL). */
    char one[1024];
    for (const char *p = url, *end; *p; p = *end ? end + 1 : end) {
        end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        size_t len = (size_t)(end - p);
        int e = len && len < sizeof one ? 0 : NNG_EADDRINVAL;
        if (e == 0) {
            memcpy(one, p, len);
            one[len] = 0;
            e = nng_dial(s, one, NULL, NNG_FLAG_NONBLOCK);
        }
        if (e != 0) {
            nng_close(s);
            return e == NNG_EADDRINVAL || e == NNG_ENOTSUP ? IDL_INVALID_ARGUMENT : IDL_UNAVAILABLE;
        }
    }
    *out = s;
    return 0;
}

static void free_sets(bench_tmpl_set *sets)
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
static int build_set(const idl_bench_opts *o, const idl_bench_pool *pool, int m,
                     bench_tmpl_set *set)
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
        bench_tmpl *t = &set->t[i];
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
    char err[IDL_ERR_MAX];
    int exit_code = 1;
    idl_bench_pool *pool = NULL;
    nng_socket *socks = NULL;
    unsigned nsocks = 0;
    idl_hist *work_hist = NULL, *base_hist = NULL, *method_hist[IDL_BENCH_NMETHODS] = {0};
    bench_tmpl_set sets[IDL_BENCH_NMETHODS] = {{0}}, health_sets[IDL_BENCH_NMETHODS] = {{0}};

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
        if (o.mix.weight[m] && build_set(&o, pool, m, &sets[m])) goto out;
    if (o.baseline && build_set(&o, NULL, IDL_BENCH_HEALTH, &health_sets[IDL_BENCH_HEALTH]))
        goto out;

    bool raw = o.client == IDL_BENCH_CLIENT_RAW;
    if (!raw && !(socks = calloc(o.sockets, sizeof(*socks)))) goto out;
    for (; !raw && nsocks < o.sockets; nsocks++) {
        int rc = open_socket(&socks[nsocks], o.url);
        if (rc) {
            fprintf(stderr, "idlookup-bench: --url: cannot open %s: %s\n", o.url,
                    idl_status_name(rc));
            exit_code = rc == IDL_INVALID_ARGUMENT ? 2 : 1;
            goto out;
        }
    }
    if (idl_hist_new(&work_hist) || idl_hist_new(&base_hist)) goto out;
    for (int m = 0; m < IDL_BENCH_NMETHODS; m++)
        if (o.mix.weight[m] && idl_hist_new(&method_hist[m])) goto out;

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
        bench_phase bp = {.name = "baseline",
                          .number = 1,
                          .sets = health_sets,
                          .mix = health_only,
                          .open_loop = false,
                          .timeout_ms = o.timeout_ms};
        if (raw ? bench_raw_run_phase(&bp, &o, show_progress, &base_res, base_hist, NULL)
                : run_phase_nng(&bp, &o, socks, show_progress, &base_res, base_hist, NULL))
            goto out;
    }
    bench_phase wp = {.name = o.method_label ? o.method_label : "mix",
                      .number = 2,
                      .sets = sets,
                      .mix = o.mix,
                      .open_loop = o.rate > 0,
                      .rate = o.rate,
                      .timeout_ms = o.timeout_ms};
    if (raw ? bench_raw_run_phase(&wp, &o, show_progress, &work_res, work_hist, method_hist)
            : run_phase_nng(&wp, &o, socks, show_progress, &work_res, work_hist, method_hist))
        goto out;

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
    for (unsigned i = 0; i < nsocks; i++)
        nng_close(socks[i]);
    free(socks);
    free_sets(sets);
    free_sets(health_sets);
    idl_hist_free(work_hist);
    idl_hist_free(base_hist);
    for (int m = 0; m < IDL_BENCH_NMETHODS; m++)
        idl_hist_free(method_hist[m]);
    idl_bench_pool_free(pool);
    return exit_code;
}
