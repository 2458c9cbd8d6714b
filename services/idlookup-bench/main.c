/* idlookup-bench: the load generator for idlookupd.  It pre-encodes every
 * request envelope, then keeps -c requests in flight on nng req0 contexts
 * spread over --sockets sockets.  Each context is a small state machine
 * driven by its aio callback (SEND -> RECV -> record -> next SEND): in the
 * closed loop a reply starts the context's next request at once; in the open
 * loop (--rate) one scheduler thread hands each request to a free context
 * when it is due.  It reports throughput, status codes and the latency
 * distribution.
 *
 * Requests run on nng's own threads, with no thread per request of ours:
 * a thread per in-flight request cost the bench about twice the daemon's
 * CPU per request, mostly in context switches, and capped what it measured.
 *
 * The pure parts (flags, mix, schedule, bodies, reply scanning, reports) are
 * in bench_lib.c; this file owns the contexts, the clock and the sockets.
 */
#include "bench_lib.h"
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
/* How long an open-loop run may overrun its duration to send requests that
 * were due before its end. */
#define OPEN_LOOP_GRACE_NS 1000000000u
/* Waits that have no event to end them (a sleep until a far due time, a
 * wait for a free context) wake this often to notice a stop request. */
#define STOP_POLL_NS 100000000u

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
    int method;
    uint64_t id;
    uint64_t due_ns;
    uint64_t sent_ns;
    bool counted;
    /* Counted requests only (after warmup); read by main once the phase is
     * over. */
    idl_hist *hist;
    idl_hist *mhist[IDL_BENCH_NMETHODS]; /* a mix of methods: each one's latency */
    uint64_t outcomes[IDL_BENCH_NOUTCOMES];
    uint64_t per_method[IDL_BENCH_NMETHODS];
    uint64_t per_method_ok[IDL_BENCH_NMETHODS];
    uint64_t inner[IDL_STATUS_COUNT];
    uint64_t counted_n;
    uint64_t last_done_ns;
    /* All requests, warmup included, for the progress line. */
    atomic_uint_fast64_t done;
    atomic_uint_fast64_t failed;
    struct conn *next_free; /* open loop: link on the free list */
} conn;

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
    /* The lock guards the rest; it is taken when a context stops or goes
     * back to the free list, never around a request. */
    pthread_mutex_t lock;
    pthread_cond_t changed; /* idle, free or sched_done changed (CLOCK_MONOTONIC) */
    unsigned idle;          /* contexts with no request in flight that will start none */
    conn *free;             /* open loop: contexts waiting for the scheduler */
    bool sched_done;        /* open loop: the scheduler hands out no more requests */
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
        uint64_t now = now_ns();
        if (now >= t || stop_requested) return;
        struct timespec ts = ts_of(t - now > STOP_POLL_NS ? now + STOP_POLL_NS : t);
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

/* Claims the next request: false when the phase is over.  Writes when it is
 * due (*due_ns) and whether it counts.  Called by the closed loop's contexts
 * at once, and by the open loop's single scheduler. */
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

/* Counts one finished request (inner: its Batch codes, or NULL; replied:
 * whether a reply came back to be timed). */
static void record(conn *c, int outcome, const uint64_t *inner, bool replied, uint64_t done)
{
    atomic_fetch_add_explicit(&c->done, 1, memory_order_relaxed);
    if (outcome != IDL_OK) atomic_fetch_add_explicit(&c->failed, 1, memory_order_relaxed);
    if (!c->counted) return;
    c->counted_n++;
    c->outcomes[outcome]++;
    c->per_method[c->method]++;
    c->per_method_ok[c->method] += outcome == IDL_OK;
    if (inner)
        for (int k = 0; k < IDL_STATUS_COUNT; k++)
            c->inner[k] += inner[k];
    /* Transport failures have no reply to time; they show in the codes. */
    if (replied) {
        uint64_t lat = idl_bench_latency_ns(c->ph->open_loop, c->due_ns, c->sent_ns, done);
        idl_hist_record(c->hist, (lat + 500) / 1000);
        if (c->mhist[c->method]) idl_hist_record(c->mhist[c->method], (lat + 500) / 1000);
    }
    c->last_done_ns = done;
}

/* Sends the request claimed in c->due_ns / c->counted: a template of a
 * method picked by the mix, with a fresh id.  Returns 0 once it is handed to
 * nng, after which c belongs to its callback and the caller must not touch
 * it; or IDL_RESOURCE_EXHAUSTED when no message could be built (nothing was
 * sent, c is still the caller's). */
static int start_request(conn *c)
{
    phase *ph = c->ph;
    c->method = idl_bench_mix_pick(&ph->mix, rng_next(&c->rng));
    const tmpl_set *set = &ph->sets[c->method];
    const request_tmpl *t = &set->t[rng_next(&c->rng) % set->n];
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
    c->sent_ns = now_ns();
    nng_ctx_send(c->ctx, c->aio);
    return 0;
}

/* A context with nothing more to do: counted idle, and in the open loop put
 * back on the free list for the scheduler.  The last thing a callback does,
 * since the scheduler may start c's next request right after the unlock. */
static void conn_idle(conn *c)
{
    phase *ph = c->ph;
    pthread_mutex_lock(&ph->lock);
    if (ph->open_loop) {
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
    if (c->ph->open_loop) {
        conn_idle(c);
        return;
    }
    while (next_request(c->ph, &c->due_ns, &c->counted)) {
        if (start_request(c) == 0) return;
        record(c, IDL_BENCH_TRANSPORT_ERROR, NULL, false, now_ns());
    }
    conn_idle(c);
}

/* The aio callback: the send or the recv of c's request has finished. */
static void conn_cb(void *arg)
{
    conn *c = arg;
    uint64_t done = now_ns();
    int r = nng_aio_result(c->aio);
    uint64_t inner[IDL_STATUS_COUNT];
    bool is_batch = c->method == IDL_BENCH_BATCH;
    bool replied = false;
    int outcome;
    if (!c->receiving && r == 0) {
        c->receiving = true;
        nng_aio_set_timeout(c->aio, c->ph->timeout_ms);
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
        uint64_t now = now_ns();
        if (stop_requested || (ph->end_ns && now > ph->end_ns + OPEN_LOOP_GRACE_NS)) break;
        struct timespec ts = ts_of(now + STOP_POLL_NS);
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
    while (next_request(ph, &due, &counted)) {
        sleep_until(due);
        if (stop_requested) break;
        conn *c = take_free(ph);
        if (!c) break;
        c->due_ns = due;
        c->counted = counted;
        if (start_request(c) != 0) {
            record(c, IDL_BENCH_TRANSPORT_ERROR, NULL, false, now_ns());
            conn_idle(c);
        }
    }
    pthread_mutex_lock(&ph->lock);
    ph->sched_done = true;
    pthread_cond_broadcast(&ph->changed);
    pthread_mutex_unlock(&ph->lock);
    return NULL;
}

static void progress_line(const phase *ph, conn *cs, unsigned n, uint64_t now, bool tty,
                          uint64_t *prev_done, uint64_t *prev_ns)
{
    uint64_t done = 0, failed = 0;
    for (unsigned i = 0; i < n; i++) {
        done += atomic_load_explicit(&cs[i].done, memory_order_relaxed);
        failed += atomic_load_explicit(&cs[i].failed, memory_order_relaxed);
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

/* Whether every context is idle for good; called with ph->lock held. */
static bool phase_over(const phase *ph, unsigned n)
{
    return ph->idle == n && (!ph->open_loop || ph->sched_done);
}

/* Runs one phase with o's load shape on the sockets and fills *res
 * (res->latency_us is the caller's histogram, reset here).  When the phase
 * mixes methods and mhist is not NULL, each mixed method's latency goes to
 * the caller's mhist[method] too (res->method_latency_us).  Returns 0 or a
 * status. */
static int run_phase(phase *ph, const idl_bench_opts *o, const nng_socket *socks,
                     bool show_progress, idl_bench_result *res, idl_hist *hist,
                     idl_hist *const *mhist)
{
    int mixed = 0;
    for (int m = 0; m < IDL_BENCH_NMETHODS; m++)
        mixed += ph->mix.weight[m] > 0;
    if (mixed < 2) mhist = NULL;
    int rc = IDL_RESOURCE_EXHAUSTED;
    unsigned n = o->concurrency;
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
        c->rng = o->seed * 1000003u + i * UINT64_C(0x632be59bd9b4e019) + ph->number;
        atomic_init(&c->done, 0);
        atomic_init(&c->failed, 0);
        int e = nng_ctx_open(&c->ctx, socks[i % o->sockets]);
        if (e == 0) c->ctx_open = true;
        if (e == 0) e = nng_aio_alloc(&c->aio, conn_cb, c);
        if (e) {
            fprintf(stderr, "idlookup-bench: cannot open request context %u of %u: %s\n", i + 1, n,
                    nng_strerror(e));
            goto fail;
        }
        nng_aio_set_timeout(c->aio, ph->timeout_ms);
        if (idl_hist_new(&c->hist)) {
            fprintf(stderr, "idlookup-bench: out of memory for %u contexts\n", n);
            goto fail;
        }
        for (int m = 0; mhist && m < IDL_BENCH_NMETHODS; m++) {
            if (ph->mix.weight[m] && idl_hist_new(&c->mhist[m])) {
                fprintf(stderr, "idlookup-bench: out of memory for %u contexts\n", n);
                goto fail;
            }
        }
    }

    /* In the open loop, a short lead so that the scheduler is up before
     * request 0 is due. */
    ph->t0_ns = now_ns() + (ph->open_loop ? 20000000u : 0);
    ph->mstart_ns = ph->t0_ns + (uint64_t)(o->warmup_s * 1e9);
    ph->end_ns = o->duration_s > 0 ? ph->mstart_ns + (uint64_t)(o->duration_s * 1e9) : 0;
    ph->limit = o->requests;
    atomic_init(&ph->next, 0);
    atomic_init(&ph->claimed, 0);
    ph->idle = 0;
    ph->free = NULL;
    ph->sched_done = false;

    if (ph->open_loop) {
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
    uint64_t prev_done = 0, prev_ns = ph->t0_ns, last_print = ph->t0_ns;
    bool tty = isatty(STDERR_FILENO);
    bool printed = false;
    pthread_mutex_lock(&ph->lock);
    while (!phase_over(ph, n)) {
        struct timespec ts = ts_of(now_ns() + 50000000u);
        pthread_cond_timedwait(&ph->changed, &ph->lock, &ts);
        uint64_t now = now_ns();
        /* Short runs stay quiet: the line appears after 2 s, once a second. */
        if (show_progress && now >= ph->t0_ns + 2000000000u && now - last_print >= 1000000000u) {
            pthread_mutex_unlock(&ph->lock);
            progress_line(ph, cs, n, now, tty, &prev_done, &prev_ns);
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
        if (!ph->mix.weight[m]) continue;
        idl_hist_reset(mhist[m]);
        res->method_latency_us[m] = mhist[m];
    }
    uint64_t last = ph->mstart_ns;
    for (unsigned i = 0; i < n; i++) {
        conn *c = &cs[i];
        res->requests += c->counted_n;
        for (int k = 0; k < IDL_BENCH_NOUTCOMES; k++)
            res->outcomes[k] += c->outcomes[k];
        for (int m = 0; m < IDL_BENCH_NMETHODS; m++) {
            res->per_method[m] += c->per_method[m];
            res->per_method_ok[m] += c->per_method_ok[m];
        }
        for (int k = 0; k < IDL_STATUS_COUNT; k++)
            res->inner[k] += c->inner[k];
        idl_hist_merge(hist, c->hist);
        for (int m = 0; m < IDL_BENCH_NMETHODS; m++)
            if (c->mhist[m]) idl_hist_merge(mhist[m], c->mhist[m]);
        if (c->last_done_ns > last) last = c->last_done_ns;
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
            idl_hist_free(c->hist);
            for (int m = 0; m < IDL_BENCH_NMETHODS; m++)
                idl_hist_free(c->mhist[m]);
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
static int build_set(const idl_bench_opts *o, const idl_bench_pool *pool, int m, tmpl_set *set)
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
    tmpl_set sets[IDL_BENCH_NMETHODS] = {{0}}, health_sets[IDL_BENCH_NMETHODS] = {{0}};

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

    if (!(socks = calloc(o.sockets, sizeof(*socks)))) goto out;
    for (; nsocks < o.sockets; nsocks++) {
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
        phase bp = {.name = "baseline",
                    .number = 1,
                    .sets = health_sets,
                    .mix = health_only,
                    .open_loop = false,
                    .timeout_ms = o.timeout_ms};
        if (run_phase(&bp, &o, socks, show_progress, &base_res, base_hist, NULL)) goto out;
    }
    phase wp = {.name = o.method_label ? o.method_label : "mix",
                .number = 2,
                .sets = sets,
                .mix = o.mix,
                .open_loop = o.rate > 0,
                .rate = o.rate,
                .timeout_ms = o.timeout_ms};
    if (run_phase(&wp, &o, socks, show_progress, &work_res, work_hist, method_hist)) goto out;

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
