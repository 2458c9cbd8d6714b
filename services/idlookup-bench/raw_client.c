/* The raw client (see raw_client.h): SP over TCP from our own epoll loops.
 *
 * Why not nng here: with nng every reply crossed from its poller thread to a
 * taskq thread and on to our callback, a wakeup per reply; the bench spent
 * most of its CPU in the kernel switching threads, and more per request the
 * slower the replies (they batched less).  Here one thread reads many
 * replies with one recv and writes the requests they free with one send, as
 * wrk does, so a request costs about the same whatever the method.
 *
 * A request slot is FREE, QUEUED (claimed, waiting for its connection to be
 * up or its write buffer to have room) or SENT (in the write buffer or on
 * the wire).  Its SP request id is its index plus a generation bumped at
 * every use, so a late reply to a request that already timed out is told
 * apart and dropped, as nng's req0 drops it.
 */
#include "raw_client.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Slot index bits of the SP request id (-c is at most 10,000); the rest of
 * its 31 bits is the generation. */
#define SLOT_BITS 14
#define SLOT_MASK ((UINT32_C(1) << SLOT_BITS) - 1)
#define GEN_MASK ((UINT32_C(1) << (31 - SLOT_BITS)) - 1)
#define NO_SLOT UINT32_MAX
/* The read buffer starts big enough for many replies per recv and grows for
 * a reply that does not fit, up to the largest reply accepted (the daemon
 * caps its own far below). */
#define RBUF_INIT (256u * 1024u)
#define RBUF_CAP (64u * 1024u * 1024u)
/* Redial a closed connection after 10 ms, doubling up to 500 ms: what the
 * nng path sets as NNG_OPT_RECONNMINT / RECONNMAXT. */
#define REDIAL_MIN_NS 10000000u
#define REDIAL_MAX_NS 500000000u
#define MAX_EVENTS 64

enum { SLOT_FREE, SLOT_QUEUED, SLOT_SENT };
enum { CONN_DOWN, CONN_CONNECTING, CONN_UP };

typedef struct {
    int state;
    uint32_t gen;
    uint32_t prev, next; /* the free list (next only) or the send queue */
    uint64_t deadline_ns;
    uint64_t env_id; /* the envelope's id, checked in the reply */
    const bench_tmpl *t;
    bench_req req;
} slot;

typedef struct rthread rthread;

typedef struct {
    rthread *th;
    unsigned index; /* among all connections: goes into envelope ids */
    const struct addrinfo *addr;
    int fd;
    int state;
    bool hello_ok; /* the peer's greeting was read and is rep0 */
    bool want_out; /* EPOLLOUT is asked for: the last send was partial */
    uint64_t redial_ns, backoff_ns;
    uint64_t dial_ns; /* when the connect started */
    unsigned char *wbuf, *rbuf;
    size_t wcap, wlen, wpos, rcap, rlen;
    slot *slots;
    uint32_t nslots;
    uint32_t free_head;
    uint32_t q_head, q_tail;
} rconn;

struct rthread {
    bench_phase *ph;
    unsigned k, nthreads;
    rconn *conns;
    unsigned nconns;
    int epfd;
    uint64_t rng;
    uint64_t next_i;  /* open loop: this thread's next schedule index */
    bool claims_over; /* no request will be claimed any more */
    unsigned nslots;  /* slots of all its connections */
    unsigned busy;    /* slots not FREE */
    unsigned rr;      /* open loop: where the search for a free slot starts */
    bench_tally tally;
    pthread_t tid;
    bool started;
    atomic_bool finished;
};

static void set_events(rconn *c, bool out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0u), .data.ptr = c};
    epoll_ctl(c->th->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = out;
}

static void queue_push(rconn *c, uint32_t i)
{
    slot *s = &c->slots[i];
    s->next = NO_SLOT;
    s->prev = c->q_tail;
    if (c->q_tail != NO_SLOT)
        c->slots[c->q_tail].next = i;
    else
        c->q_head = i;
    c->q_tail = i;
}

static void queue_remove(rconn *c, uint32_t i)
{
    slot *s = &c->slots[i];
    if (s->prev != NO_SLOT)
        c->slots[s->prev].next = s->next;
    else
        c->q_head = s->next;
    if (s->next != NO_SLOT)
        c->slots[s->next].prev = s->prev;
    else
        c->q_tail = s->prev;
}

static void flush(rconn *c, uint64_t now);

/* Moves queued requests into the write buffer while the connection is up
 * and there is room; each gets its send time and its deadline now. */
static void pump(rconn *c, uint64_t now)
{
    if (c->state != CONN_UP) return;
    while (c->q_head != NO_SLOT) {
        uint32_t i = c->q_head;
        slot *s = &c->slots[i];
        size_t need = IDL_BENCH_SP_REQ_HEAD + s->t->len;
        if (c->wcap - c->wlen < need && c->wpos > 0) {
            memmove(c->wbuf, c->wbuf + c->wpos, c->wlen - c->wpos);
            c->wlen -= c->wpos;
            c->wpos = 0;
        }
        /* Full of requests that timed out unsent: wait for the socket. */
        if (c->wcap - c->wlen < need) return;
        queue_remove(c, i);
        unsigned char *p = c->wbuf + c->wlen;
        idl_bench_sp_req_head(p, s->gen << SLOT_BITS | i, s->t->len);
        memcpy(p + IDL_BENCH_SP_REQ_HEAD, s->t->env, s->t->len);
        idl_bench_put_id(p + IDL_BENCH_SP_REQ_HEAD, s->t->id_off, s->env_id);
        c->wlen += need;
        s->state = SLOT_SENT;
        s->req.sent_ns = now;
        s->deadline_ns = now + (uint64_t)c->th->ph->timeout_ms * 1000000u;
    }
}

/* Starts the request claimed in *r on free slot i of c: a template of a
 * method picked by the mix, a fresh generation, queued for sending. */
static void start_request(rconn *c, uint32_t i, uint64_t due, bool counted, uint64_t now)
{
    rthread *th = c->th;
    const bench_phase *ph = th->ph;
    slot *s = &c->slots[i];
    s->req.method = idl_bench_mix_pick(&ph->mix, bench_rng_next(&th->rng));
    const bench_tmpl_set *set = &ph->sets[s->req.method];
    s->t = &set->t[bench_rng_next(&th->rng) % set->n];
    s->gen = (s->gen + 1) & GEN_MASK;
    s->env_id = (uint64_t)ph->number << 56 | (uint64_t)(c->index + 1) << 32 |
                (uint64_t)(s->gen << SLOT_BITS | i);
    s->req.due_ns = due;
    s->req.sent_ns = now;
    s->req.counted = counted;
    s->state = SLOT_QUEUED;
    s->deadline_ns = now + (uint64_t)ph->timeout_ms * 1000000u;
    th->busy++;
    queue_push(c, i);
    pump(c, now);
}

/* Frees slot i; in the closed loop the slot claims its next request at once
 * (until the phase is over). */
static void finish_slot(rconn *c, uint32_t i, uint64_t now)
{
    rthread *th = c->th;
    slot *s = &c->slots[i];
    s->state = SLOT_FREE;
    th->busy--;
    if (!th->ph->open_loop && !th->claims_over) {
        uint64_t due;
        bool counted;
        if (bench_next_request(th->ph, &due, &counted)) {
            start_request(c, i, due, counted, now);
            return;
        }
        th->claims_over = true;
    }
    s->next = c->free_head;
    c->free_head = i;
}

static void fail_slot(rconn *c, uint32_t i, int outcome, uint64_t now)
{
    bench_tally_record(&c->th->tally, c->th->ph, &c->slots[i].req, outcome, NULL, false, now);
    finish_slot(c, i, now);
}

/* The connection broke (closed by the peer, a socket error, bytes that are
 * no SP): the requests on the wire are lost and count as transport errors;
 * queued ones wait for the redial. */
static void conn_down(rconn *c, uint64_t now)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->state = CONN_DOWN;
    c->want_out = false;
    c->hello_ok = false;
    c->wlen = c->wpos = c->rlen = 0;
    c->redial_ns = now + c->backoff_ns;
    c->backoff_ns = c->backoff_ns * 2 > REDIAL_MAX_NS ? REDIAL_MAX_NS : c->backoff_ns * 2;
    for (uint32_t i = 0; i < c->nslots; i++)
        if (c->slots[i].state == SLOT_SENT) fail_slot(c, i, IDL_BENCH_TRANSPORT_ERROR, now);
}

/* Starts a nonblocking connect; our greeting waits in the write buffer. */
static void dial(rconn *c, uint64_t now)
{
    const struct addrinfo *a = c->addr;
    int one = 1;
    c->fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) goto fail;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) goto fail;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(c->th->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) goto fail;
    c->state = CONN_CONNECTING;
    c->dial_ns = now;
    c->want_out = true;
    idl_bench_sp_hello(IDL_BENCH_SP_REQ0, c->wbuf);
    c->wlen = IDL_BENCH_SP_HELLO;
    c->wpos = 0;
    return;

fail:
    conn_down(c, now);
}

/* Writes what the buffer holds with as few sends as the socket allows. */
static void flush(rconn *c, uint64_t now)
{
    while (c->state == CONN_UP && c->wpos < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->wpos, c->wlen - c->wpos, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->wpos += (size_t)n;
            if (c->wpos == c->wlen) {
                c->wpos = c->wlen = 0;
                /* Room again: requests that waited for it go out too. */
                pump(c, now);
            }
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out) set_events(c, true);
            return;
        }
        conn_down(c, now);
        return;
    }
    if (c->state == CONN_UP && c->want_out) set_events(c, false);
}

/* One reply: its slot by the SP id, its outcome from the envelope. */
static void on_reply(rconn *c, uint32_t id, const unsigned char *body, size_t len, uint64_t now)
{
    uint32_t i = id & SLOT_MASK;
    slot *s = i < c->nslots ? &c->slots[i] : NULL;
    /* A late reply to a request that timed out, or an id we never sent:
     * nothing waits for it. */
    if (!s || s->state != SLOT_SENT || s->gen != (id >> SLOT_BITS)) return;
    uint64_t inner[IDL_STATUS_COUNT];
    bool is_batch = s->req.method == IDL_BENCH_BATCH;
    uint64_t got_id;
    int code, outcome;
    if (is_batch) memset(inner, 0, sizeof(inner));
    if (idl_bench_scan_reply(body, len, &got_id, &code, is_batch ? inner : NULL) ||
        got_id != s->env_id)
        outcome = IDL_BENCH_BAD_REPLY;
    else
        outcome = code;
    bench_tally_record(&c->th->tally, c->th->ph, &s->req, outcome,
                       is_batch && outcome != IDL_BENCH_BAD_REPLY ? inner : NULL, true, now);
    finish_slot(c, i, now);
}

/* Reads what the socket holds and handles every whole reply in it. */
static void drain(rconn *c, uint64_t now)
{
    for (;;) {
        size_t room = c->rcap - c->rlen;
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, room, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) {
            conn_down(c, now);
            return;
        }
        c->rlen += (size_t)n;
        size_t pos = 0;
        if (!c->hello_ok) {
            if (c->rlen < IDL_BENCH_SP_HELLO) continue;
            if (idl_bench_sp_check_hello(c->rbuf, IDL_BENCH_SP_REP0)) {
                conn_down(c, now);
                return;
            }
            c->hello_ok = true;
            c->backoff_ns = REDIAL_MIN_NS;
            pos = IDL_BENCH_SP_HELLO;
        }
        size_t frame = 0;
        for (;;) {
            uint32_t id;
            const unsigned char *body;
            size_t blen;
            int r = idl_bench_sp_split(c->rbuf + pos, c->rlen - pos, RBUF_CAP, &frame, &id, &body,
                                       &blen);
            if (r == IDL_INVALID_ARGUMENT) {
                conn_down(c, now);
                return;
            }
            if (r) break;
            on_reply(c, id, body, blen, now);
            /* The reply may have freed room for queued requests; they are
             * written once the reads are done. */
            pos += frame;
        }
        memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
        c->rlen -= pos;
        if (frame > c->rcap) {
            /* A reply bigger than the buffer: grow it once for this size
             * (bounded by RBUF_CAP in idl_bench_sp_split). */
            size_t cap = c->rcap;
            while (cap < frame)
                cap *= 2;
            unsigned char *nb = realloc(c->rbuf, cap);
            if (!nb) {
                conn_down(c, now);
                return;
            }
            c->rbuf = nb;
            c->rcap = cap;
        } else if ((size_t)n < room) {
            return; /* the socket is empty; epoll says when more comes */
        }
    }
}

/* The connect finished (or failed): the connection is up, and the greeting
 * and whatever was queued go out. */
static void connected(rconn *c, uint64_t now)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        conn_down(c, now);
        return;
    }
    c->state = CONN_UP;
    pump(c, now);
    flush(c, now);
}

/* Open loop: hands every request due by now to a free slot, preferring
 * connections that are up.  When none is free the request waits, and the
 * wait counts in its latency (it is timed from the due time). */
static void dispatch_due(rthread *th, uint64_t now)
{
    bench_phase *ph = th->ph;
    while (!th->claims_over) {
        if (bench_stop_requested) {
            th->claims_over = true;
            return;
        }
        uint64_t due = idl_bench_sched_ns(ph->t0_ns, th->next_i, ph->rate);
        if (due > now) return;
        rconn *c = NULL;
        for (int pass = 0; pass < 2 && !c; pass++) {
            for (unsigned j = 0; j < th->nconns; j++) {
                rconn *cand = &th->conns[(th->rr + j) % th->nconns];
                if (cand->free_head != NO_SLOT && (pass || cand->state == CONN_UP)) {
                    c = cand;
                    break;
                }
            }
        }
        /* All busy: past the grace the backlog is given up, as reported
         * unsent; until then it waits for a slot. */
        if (!c) {
            if (ph->end_ns && now > ph->end_ns + BENCH_OPEN_LOOP_GRACE_NS) th->claims_over = true;
            return;
        }
        bool counted;
        if (!bench_claim_due(ph, due, now, &counted)) {
            th->claims_over = true;
            return;
        }
        th->next_i += th->nthreads;
        th->rr = (unsigned)(c - th->conns) + 1;
        uint32_t i = c->free_head;
        c->free_head = c->slots[i].next;
        start_request(c, i, due, counted, now);
    }
}

/* Fails requests past their deadline, and redials connections whose wait
 * is over. */
static void sweep(rthread *th, uint64_t now)
{
    for (unsigned j = 0; j < th->nconns; j++) {
        rconn *c = &th->conns[j];
        for (uint32_t i = 0; i < c->nslots; i++) {
            slot *s = &c->slots[i];
            if (s->state == SLOT_FREE || s->deadline_ns > now) continue;
            if (s->state == SLOT_QUEUED) queue_remove(c, i);
            fail_slot(c, i, IDL_BENCH_TIMEOUT, now);
        }
        /* A connect nobody answers (a dropped SYN) is given up after the
         * request timeout and tried again. */
        if (c->state == CONN_CONNECTING &&
            now - c->dial_ns > (uint64_t)th->ph->timeout_ms * 1000000u)
            conn_down(c, now);
        if (c->state == CONN_DOWN && now >= c->redial_ns) dial(c, now);
    }
}

static void *thread_main(void *arg)
{
    rthread *th = arg;
    bench_phase *ph = th->ph;
    struct epoll_event evs[MAX_EVENTS];
    /* The default 50 us timer slack would make open-loop sends late by up
     * to that much, and their latency counts from the due time. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    uint64_t now = bench_now_ns();
    uint64_t scan_every = (uint64_t)ph->timeout_ms * 100000u; /* a tenth of the timeout */
    if (scan_every < 1000000u) scan_every = 1000000u;
    if (scan_every > 20000000u) scan_every = 20000000u;
    uint64_t next_sweep = now + scan_every;
    for (unsigned j = 0; j < th->nconns; j++)
        dial(&th->conns[j], now);
    if (!ph->open_loop) {
        /* Each slot claims its first request here; its replies claim the
         * later ones. */
        for (unsigned j = 0; j < th->nconns && !th->claims_over; j++) {
            rconn *c = &th->conns[j];
            while (c->free_head != NO_SLOT && !th->claims_over) {
                uint32_t i = c->free_head;
                c->free_head = c->slots[i].next;
                th->busy++; /* finish_slot claims the next request for it */
                finish_slot(c, i, now);
            }
        }
    }
    for (;;) {
        now = bench_now_ns();
        if (ph->open_loop) dispatch_due(th, now);
        if (bench_stop_requested && !ph->open_loop) th->claims_over = true;
        for (unsigned j = 0; j < th->nconns; j++)
            if (th->conns[j].wpos < th->conns[j].wlen && !th->conns[j].want_out)
                flush(&th->conns[j], now);
        if (th->claims_over && th->busy == 0) break;

        uint64_t wake = next_sweep;
        if (now + BENCH_STOP_POLL_NS < wake) wake = now + BENCH_STOP_POLL_NS;
        /* The next due time matters only while a slot is free to take it. */
        if (ph->open_loop && !th->claims_over && th->busy < th->nslots) {
            uint64_t due = idl_bench_sched_ns(ph->t0_ns, th->next_i, ph->rate);
            if (due < wake) wake = due;
        }
        uint64_t wait = wake > now ? wake - now : 0;
        struct timespec ts = {(time_t)(wait / 1000000000u), (long)(wait % 1000000000u)};
        int n = epoll_pwait2(th->epfd, evs, MAX_EVENTS, &ts, NULL);
        now = bench_now_ns();
        for (int e = 0; e < n; e++) {
            rconn *c = evs[e].data.ptr;
            uint32_t ev = evs[e].events;
            if (c->state == CONN_DOWN) continue;
            if (c->state == CONN_CONNECTING) {
                connected(c, now);
                if (c->state != CONN_UP) continue;
            }
            if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) drain(c, now);
            if (c->state == CONN_UP && (ev & EPOLLOUT)) flush(c, now);
        }
        if (now >= next_sweep) {
            sweep(th, now);
            next_sweep = now + scan_every;
        }
    }
    for (unsigned j = 0; j < th->nconns; j++) {
        rconn *c = &th->conns[j];
        if (c->fd >= 0) close(c->fd);
        c->fd = -1;
    }
    atomic_store(&th->finished, true);
    return NULL;
}

int bench_raw_run_phase(bench_phase *ph, const idl_bench_opts *o, bool show_progress,
                        idl_bench_result *res, idl_hist *hist, idl_hist *const *mhist)
{
    int mixed = 0;
    for (int m = 0; m < IDL_BENCH_NMETHODS; m++)
        mixed += ph->mix.weight[m] > 0;
    if (mixed < 2) mhist = NULL;
    int rc = IDL_RESOURCE_EXHAUSTED;
    unsigned nconn = o->sockets, nth = o->threads, nurl = 0;
    struct addrinfo **addrs = NULL;
    rconn *conns = calloc(nconn, sizeof(*conns));
    rthread *ths = calloc(nth, sizeof(*ths));
    if (!conns || !ths) goto fail;
    for (unsigned t = 0; t < nth; t++)
        ths[t].epfd = -1;
    for (unsigned j = 0; j < nconn; j++)
        conns[j].fd = -1;
    for (const char *p = o->url; *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : p + strlen(p))
        nurl++;
    if (!(addrs = calloc(nurl, sizeof(*addrs)))) goto fail;

    /* Every URL resolved once, before the clock starts. */
    unsigned u = 0;
    for (const char *p = o->url, *end; *p; p = *end ? end + 1 : end, u++) {
        end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        char host[256], port[32];
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
        int e = idl_bench_tcp_addr(p, (size_t)(end - p), host, sizeof host, port, sizeof port);
        if (e == 0) e = getaddrinfo(host, port, &hints, &addrs[u]);
        if (e) {
            fprintf(stderr, "idlookup-bench: --url: cannot resolve %.*s\n", (int)(end - p), p);
            rc = IDL_UNAVAILABLE;
            goto fail;
        }
    }

    /* The largest request decides the write buffer: every slot of a
     * connection may have one in it at once. */
    size_t max_req = 0;
    for (int m = 0; m < IDL_BENCH_NMETHODS; m++)
        for (size_t i = 0; ph->mix.weight[m] && i < ph->sets[m].n; i++)
            if (ph->sets[m].t[i].len > max_req) max_req = ph->sets[m].t[i].len;

    /* Thread t owns a run of the connections; connection j dials URL
     * j % URLs and holds its share of -c. */
    for (unsigned t = 0; t < nth; t++) {
        rthread *th = &ths[t];
        unsigned from = (unsigned)((uint64_t)t * nconn / nth);
        unsigned to = (unsigned)((uint64_t)(t + 1) * nconn / nth);
        th->ph = ph;
        th->k = t;
        th->nthreads = nth;
        th->next_i = t;
        th->conns = conns + from;
        th->nconns = to - from;
        th->rng = o->seed * 1000003u + t * UINT64_C(0x632be59bd9b4e019) + ph->number;
        atomic_init(&th->finished, false);
        if (bench_tally_init(&th->tally, ph, mhist != NULL)) goto fail;
        if ((th->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) goto fail;
        for (unsigned j = from; j < to; j++) {
            rconn *c = &conns[j];
            c->index = j;
            c->th = th;
            c->addr = addrs[j % nurl];
            c->backoff_ns = REDIAL_MIN_NS;
            c->nslots = o->concurrency / nconn + (j < o->concurrency % nconn);
            th->nslots += c->nslots;
            c->wcap = IDL_BENCH_SP_HELLO + (size_t)c->nslots * (IDL_BENCH_SP_REQ_HEAD + max_req);
            c->rcap = RBUF_INIT;
            c->free_head = c->q_head = c->q_tail = NO_SLOT;
            if (!(c->wbuf = malloc(c->wcap)) || !(c->rbuf = malloc(c->rcap)) ||
                !(c->slots = calloc(c->nslots, sizeof(*c->slots))))
                goto fail;
            for (uint32_t i = c->nslots; i-- > 0;) {
                c->slots[i].next = c->free_head;
                c->free_head = i;
            }
        }
    }

    /* A short lead so that every thread is up before request 0 is due. */
    bench_phase_start(ph, o, ph->open_loop ? 20000000u : 0);
    for (unsigned t = 0; t < nth; t++) {
        int e = pthread_create(&ths[t].tid, NULL, thread_main, &ths[t]);
        if (e) {
            fprintf(stderr, "idlookup-bench: cannot start a client thread: %s\n", strerror(e));
            bench_stop_requested = 1; /* the started ones wind down */
            break;
        }
        ths[t].started = true;
    }

    /* Watch the threads; they stop on their own (duration, -n or a signal). */
    uint64_t prev_done = 0, prev_ns = ph->t0_ns, last_print = ph->t0_ns;
    bool tty = isatty(STDERR_FILENO), printed = false;
    for (;;) {
        bool all = true;
        for (unsigned t = 0; t < nth; t++)
            all = all && (!ths[t].started || atomic_load(&ths[t].finished));
        if (all) break;
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
        uint64_t now = bench_now_ns();
        /* Short runs stay quiet: the line appears after 2 s, once a second. */
        if (show_progress && now >= ph->t0_ns + 2000000000u && now - last_print >= 1000000000u) {
            uint64_t done = 0, failed = 0;
            for (unsigned t = 0; t < nth; t++) {
                done += atomic_load_explicit(&ths[t].tally.done, memory_order_relaxed);
                failed += atomic_load_explicit(&ths[t].tally.failed, memory_order_relaxed);
            }
            bench_progress_line(ph, done, failed, now, tty, &prev_done, &prev_ns);
            last_print = now;
            printed = true;
        }
    }
    if (printed && tty) fprintf(stderr, "\r\033[K");
    bool all_started = true;
    for (unsigned t = 0; t < nth; t++) {
        if (ths[t].started) pthread_join(ths[t].tid, NULL);
        all_started = all_started && ths[t].started;
    }
    if (!all_started) goto fail;

    memset(res, 0, sizeof(*res));
    idl_hist_reset(hist);
    for (int m = 0; mhist && m < IDL_BENCH_NMETHODS; m++) {
        if (!ph->mix.weight[m]) continue;
        idl_hist_reset(mhist[m]);
        res->method_latency_us[m] = mhist[m];
    }
    uint64_t last = ph->mstart_ns;
    for (unsigned t = 0; t < nth; t++)
        bench_tally_merge(&ths[t].tally, res, hist, mhist, &last);
    res->latency_us = hist;
    bench_result_finish(ph, res, last);
    rc = 0;

fail:
    if (rc == IDL_RESOURCE_EXHAUSTED) fprintf(stderr, "idlookup-bench: out of memory\n");
    for (unsigned j = 0; conns && j < nconn; j++) {
        if (conns[j].fd >= 0) close(conns[j].fd);
        free(conns[j].wbuf);
        free(conns[j].rbuf);
        free(conns[j].slots);
    }
    free(conns);
    for (unsigned t = 0; ths && t < nth; t++) {
        if (ths[t].epfd >= 0) close(ths[t].epfd);
        bench_tally_free(&ths[t].tally);
    }
    free(ths);
    for (unsigned i = 0; addrs && i < nurl; i++)
        if (addrs[i]) freeaddrinfo(addrs[i]);
    free(addrs);
    return rc;
}
