/* The request pipeline and the nng worker pool.
 *
 * A fixed pool of rep0 contexts, each a small state machine driven by its aio
 * callback (RECV -> handle -> SEND -> RECV).  Handling runs on nng's callback
 * threads, so requests are served concurrently on every core; a worker owns
 * its buffers and scratch, so steady-state requests allocate almost nothing.
 * The checks run in the contract's order: decode, method, key, scope, rate,
 * deadline, body.
 */
#include "server.h"
#include "call.h"
#include "changes.h"
#include "status.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum { W_RECV, W_SEND } wstate;

/* ---- connections (nng pipes) ----
 *
 * nng's rep0 hands a context's reply to its connection only when the
 * connection's previous reply has gone out; until then the context waits.
 * So a client that pipelines requests and never reads its replies parks one
 * worker per request, and with all of them parked nobody else is served.
 * Three guards:
 * - a send timeout: a reply still waiting after it is dropped, and its
 *   worker goes back to receiving;
 * - a cap on the replies waiting for one connection to take them: a request
 *   arriving on a connection with cap replies waiting that has taken none
 *   for 100 ms (or with half the pool waiting, whatever it takes) is logged
 *   (RESOURCE_EXHAUSTED) and dropped without a reply, so one connection
 *   parks about cap workers and the rest serve everyone else.  Replies
 *   waiting and progress, not requests outstanding: a client that reads
 *   keeps replies moving however many requests it has in flight (the bench
 *   runs 16 contexts and more on one connection, and under load a dozen of
 *   their replies queue), while one that does not read stops taking any.
 *   Dropping rather than closing the
 *   connection: in nng 1.5.2, closing a pipe while its transport is between
 *   two reads of a frame (a client streaming requests) can leave the pipe's
 *   teardown waiting forever on its receive; the reaper thread then stalls,
 *   no closed connection is freed again and nng_close never returns (seen
 *   in testing: rep0_pipe_stop -> nni_aio_stop(aio_recv)).  The cap is per
 *   connection: pool / cap connections that do not read still park every
 *   worker, each for at most the send timeout;
 * - an idle timeout: nng 1.5 has no timeout on a partial frame (the TCP
 *   transport bounds only its 10 s handshake), so a connection holding one
 *   would be held forever.  The closest honest measure: a connection with
 *   nothing outstanding that has delivered no whole request for idle_ms is
 *   closed.  This also closes idle clients; nng's dialers reconnect.  (A
 *   connection trickling a frame byte by byte is exposed to the teardown
 *   hang above; one that has stopped sending is not.) */

#define PIPE_SHARDS 16

typedef struct pipe_ent {
    uint32_t id;
    uint32_t inflight; /* received, reply not yet handed to the connection */
    uint32_t pending;  /* of those, replies waiting for the connection to take them */
    uint64_t sent_us;  /* when it connected or last took a reply */
    uint64_t last_us;  /* when it connected or its last whole request was taken */
    bool closed;       /* the idle sweep closed it (the entry stays until REM_POST) */
    struct pipe_ent *next;
} pipe_ent;

typedef struct {
    pthread_mutex_t lock;
    pipe_ent *head;
} pipe_shard;

typedef struct {
    pipe_shard shard[PIPE_SHARDS];
} pipe_table;

static pipe_shard *shard_of(pipe_table *t, uint32_t id)
{
    return &t->shard[id % PIPE_SHARDS];
}

static pipe_ent **find_ent(pipe_shard *sh, uint32_t id)
{
    pipe_ent **pp = &sh->head;
    while (*pp && (*pp)->id != id)
        pp = &(*pp)->next;
    return pp;
}

/* nng's pipe events: an entry from before the connection delivers anything
 * (ADD_PRE runs before rep0 starts reading it) until it is gone. */
static void pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    pipe_table *t = arg;
    uint32_t id = (uint32_t)nng_pipe_id(p);
    pipe_shard *sh = shard_of(t, id);
    if (ev == NNG_PIPE_EV_ADD_PRE) {
        pipe_ent *e = calloc(1, sizeof *e);
        if (!e) return; /* unguarded, but served */
        e->id = id;
        e->last_us = e->sent_us = idld_mono_us();
        pthread_mutex_lock(&sh->lock);
        e->next = sh->head;
        sh->head = e;
        pthread_mutex_unlock(&sh->lock);
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        pthread_mutex_lock(&sh->lock);
        pipe_ent **pp = find_ent(sh, id);
        pipe_ent *e = *pp;
        if (e) *pp = e->next;
        pthread_mutex_unlock(&sh->lock);
        free(e);
    }
}

/* A connection with replies waiting that has taken none for this long is
 * not reading.  A reader under load (16 contexts on one connection, two
 * busy cores) queues a dozen replies but takes one every few ms. */
#define PIPE_STALL_US 100000u

/* A request arrived on connection id: counts it, and says whether to drop
 * it (then it is not counted): cap replies are waiting and the connection
 * has taken none for PIPE_STALL_US, or hard_cap are waiting whatever it
 * takes (a client reconnecting faster than the stall shows). */
static bool pipe_take(pipe_table *t, uint32_t id, uint32_t cap, uint32_t hard_cap)
{
    pipe_shard *sh = shard_of(t, id);
    bool over = false;
    pthread_mutex_lock(&sh->lock);
    pipe_ent *e = *find_ent(sh, id);
    if (e) {
        uint64_t now = idld_mono_us();
        e->last_us = now;
        if (cap && e->pending >= cap &&
            (e->pending >= hard_cap || now - e->sent_us >= PIPE_STALL_US))
            over = true;
        else
            e->inflight++;
    }
    pthread_mutex_unlock(&sh->lock);
    return over;
}

/* A reply for connection id is being handed to it. */
static void pipe_sending(pipe_table *t, uint32_t id)
{
    pipe_shard *sh = shard_of(t, id);
    pthread_mutex_lock(&sh->lock);
    pipe_ent *e = *find_ent(sh, id);
    if (e) e->pending++;
    pthread_mutex_unlock(&sh->lock);
}

/* A request's reply was handed over (taken) or dropped (sent: after
 * pipe_sending), or its connection is gone. */
static void pipe_done(pipe_table *t, uint32_t id, bool sent, bool taken)
{
    pipe_shard *sh = shard_of(t, id);
    pthread_mutex_lock(&sh->lock);
    pipe_ent *e = *find_ent(sh, id);
    if (e && e->inflight) e->inflight--;
    if (e && sent && e->pending) e->pending--;
    if (e && taken) e->sent_us = idld_mono_us();
    pthread_mutex_unlock(&sh->lock);
}

struct idld_worker {
    idld_state *st;
    struct idld_pool *pool;
    uint32_t pipe_id; /* the connection of the request being served; 0: none */
    nng_ctx ctx;
    nng_aio *aio;
    wstate state;
    msgpack_zone zone;
    idl_buf body;
    idl_buf reply;
    idld_scratch *scratch;
    idl_qlog_entry log;
    /* The key ring this worker's request uses (a hazard pointer): a ring
     * retired by SIGHUP is freed once no worker holds it. */
    _Atomic(idl_keyring *) ring;
};

/* Publishes the current key ring as in use by w and returns it.  The second
 * load closes the race with a reload: a ring swapped out between the load
 * and the publication is not used, so one a reaper saw unpublished after the
 * swap is never picked up again. */
static idl_keyring *ring_enter(idld_worker *w)
{
    idl_keyring *kr;
    do {
        kr = atomic_load(&w->st->keys);
        atomic_store(&w->ring, kr);
    } while (atomic_load(&w->st->keys) != kr);
    return kr;
}

static void pack_meta(msgpack_packer *pk, const char *rid, const idl_key_info *ki, bool rate,
                      uint32_t remaining)
{
    idl_wire_pack_cstr(pk, "meta");
    msgpack_pack_map(pk, rate ? 3 : 1);
    idl_wire_pack_cstr(pk, "request-id");
    idl_wire_pack_cstr(pk, rid);
    if (rate) {
        char a[16], b[16];
        snprintf(a, sizeof a, "%u", ki->rate);
        snprintf(b, sizeof b, "%u", remaining);
        idl_wire_pack_cstr(pk, "ratelimit-limit");
        idl_wire_pack_cstr(pk, a);
        idl_wire_pack_cstr(pk, "ratelimit-remaining");
        idl_wire_pack_cstr(pk, b);
    }
}

/* Handles one request message and leaves the reply in w->reply. */
static void handle(idld_worker *w, const void *data, size_t len, bool shed)
{
    idld_state *st = w->st;
    uint64_t t0 = idld_mono_us();
    idl_qlog_entry *log = &w->log;
    idld_log_begin(st, log);
    char rid[32];
    idl_qlog_request_id(log->time_us, log->seq, rid);

    msgpack_zone_clear(&w->zone);
    idl_buf_reset(&w->body);
    idl_buf_reset(&w->reply);
    msgpack_packer bpk;
    idl_buf_packer(&w->body, &bpk);
    idld_call c = {.st = st, .pk = &bpk, .scratch = w->scratch, .log = log};
    idl_request req;
    int code = idl_wire_decode_request(data, len, &w->zone, &req, c.msg);
    const idld_method *m = NULL;
    bool rate_meta = false;
    uint32_t remaining = 0;
    idl_keyring *kr = NULL;
    if (code == 0) {
        idld_log_method(log, req.method, req.method_len);
        for (char *p = log->method; *p; p++)
            if ((unsigned char)*p < 0x20) *p = '?';
        m = idld_method_find(req.method, req.method_len);
        if (!m)
            code = idld_fail(&c, IDL_UNIMPLEMENTED, "method", "unknown method '%s'", log->method);
    } else if (req.has_id && req.method) {
        idld_log_method(log, req.method, req.method_len);
    }
    /* Over the connection's cap: logged (it reached the service) but not
     * answered (see "connections" above). */
    if (code == 0 && shed)
        code = idld_fail(&c, IDL_RESOURCE_EXHAUSTED, NULL,
                         "too many requests outstanding on this connection");
    if (code == 0 && m->scope) {
        kr = ring_enter(w);
        if (!req.auth) {
            code = idld_fail(&c, IDL_UNAUTHENTICATED, "authorization",
                             "missing API key: send meta authorization \"Bearer <key>\"");
        } else if (idl_auth_check(kr, req.auth, req.auth_len, &c.key) != IDL_OK) {
            code = idld_fail(&c, IDL_UNAUTHENTICATED, "authorization",
                             "the API key is malformed, unknown or revoked");
        } else {
            c.kinfo = idl_key_get_info(c.key);
            idld_log_key(log, c.kinfo);
            if (!(c.kinfo->scopes & m->scope)) {
                code = idld_fail(&c, IDL_PERMISSION_DENIED, NULL,
                                 "this key lacks the '%s' scope that %s needs",
                                 idl_auth_scope_name(m->scope), m->name);
            } else if (m->takes_token) {
                uint32_t retry = 0;
                rate_meta = true;
                if (idl_key_take(c.key, t0, &remaining, &retry)) {
                    c.retry_after_ms = retry;
                    code = idld_fail(&c, IDL_RESOURCE_EXHAUSTED, NULL,
                                     "rate limit of %u requests/s exceeded; retry in %u ms",
                                     c.kinfo->rate, retry);
                }
            } else {
                /* Batch takes no token itself: what is left is read after
                 * its inner calls took theirs.  But on a bucket already
                 * empty it is refused whole, as one log entry: otherwise a
                 * limited key writes 101 entries per Batch for nothing. */
                uint32_t retry = 0;
                rate_meta = true;
                if (idl_key_has_token(c.key, t0, &retry)) {
                    c.retry_after_ms = retry;
                    code = idld_fail(&c, IDL_RESOURCE_EXHAUSTED, NULL,
                                     "rate limit of %u requests/s exceeded; retry in %u ms",
                                     c.kinfo->rate, retry);
                }
            }
        }
    }
    /* A deadline beyond a year is no deadline (and cannot overflow). */
    if (code == 0 && req.has_timeout && req.timeout_ms <= 366ull * 86400u * 1000u) {
        uint64_t deadline = t0 + req.timeout_ms * 1000u;
        if (req.timeout_ms == 0 || idld_mono_us() >= deadline)
            code = idld_fail(&c, IDL_DEADLINE_EXCEEDED, NULL,
                             "the deadline (timeout_ms %llu) passed before work started",
                             (unsigned long long)req.timeout_ms);
        else
            c.deadline_mono_us = deadline;
    }
    if (code == 0 && atomic_load(&st->draining) && m->id != IDL_METHOD_HEALTH)
        code = idld_fail(&c, IDL_UNAVAILABLE, NULL, "the service is shutting down");
    if (code == 0 && st->changes && m->id != IDL_METHOD_HEALTH && !idl_changes_ready(st->changes))
        code = idld_fail(&c, IDL_UNAVAILABLE, NULL,
                         "the node is catching up with the cluster's changes");
    if (code == 0 && req.body_not_map)
        code = idld_fail(&c, IDL_INVALID_ARGUMENT, "body", "field 'body' must be a map");
    if (code == 0) {
        c.body = req.body;
        code = m->fn(&c);
        if (code == 0 && w->body.failed)
            code = idld_fail(&c, IDL_INTERNAL, NULL, "out of memory building the reply");
        if (code == 0 && m->reads && c.deadline_mono_us && idld_mono_us() > c.deadline_mono_us)
            code =
                idld_fail(&c, IDL_DEADLINE_EXCEEDED, NULL, "the deadline passed during the call");
    }
    if (rate_meta && m && !m->takes_token) idl_key_peek(c.key, idld_mono_us(), &remaining);

    msgpack_packer rpk;
    idl_buf_packer(&w->reply, &rpk);
    bool details = code == IDL_RESOURCE_EXHAUSTED ? c.retry_after_ms > 0 : c.field[0] != 0;
    msgpack_pack_map(&rpk, 3 + (code == 0) + (code != 0) + (code != 0 && details));
    idl_wire_pack_cstr(&rpk, "id");
    msgpack_pack_uint64(&rpk, req.has_id ? req.id : 0);
    idl_wire_pack_cstr(&rpk, "code");
    msgpack_pack_int(&rpk, code);
    if (code != 0) {
        idl_wire_pack_cstr(&rpk, "message");
        idl_wire_pack_cstr(&rpk, c.msg[0] ? c.msg : idl_status_name(code));
        if (details) {
            idl_wire_pack_cstr(&rpk, "details");
            msgpack_pack_map(&rpk, 1);
            if (code == IDL_RESOURCE_EXHAUSTED && c.retry_after_ms) {
                idl_wire_pack_cstr(&rpk, "retry_after_ms");
                msgpack_pack_uint32(&rpk, c.retry_after_ms);
            } else {
                idl_wire_pack_cstr(&rpk, "field");
                idl_wire_pack_cstr(&rpk, c.field);
            }
        }
    }
    if (code == 0) {
        idl_wire_pack_cstr(&rpk, "body");
        msgpack_pack_str_body(&rpk, w->body.data, w->body.len);
    }
    pack_meta(&rpk, rid, c.kinfo, rate_meta && c.kinfo, remaining);

    idld_log_end(st, log, code, t0);
    /* Nothing of the ring is used past here (the log entry holds copies). */
    if (kr) atomic_store(&w->ring, NULL);
}

struct idld_pool {
    nng_socket sock;
    size_t n;
    idld_worker *workers;
    idld_pool_opts o;
    pipe_table pipes;
    pthread_t sweeper;
    bool sweeper_running;
    pthread_mutex_t sweep_lock;
    pthread_cond_t sweep_wake;
    bool stopping; /* guarded by sweep_lock */
    /* Quiesce (SIGTERM): once stopped is set, no request is handled any
     * more; active counts the handlers still running. */
    atomic_bool stopped;
    atomic_uint active;
};

static void worker_recv(idld_worker *w)
{
    w->state = W_RECV;
    nng_aio_set_timeout(w->aio, NNG_DURATION_INFINITE);
    nng_ctx_recv(w->ctx, w->aio);
}

static void worker_cb(void *arg)
{
    idld_worker *w = arg;
    idld_pool *p = w->pool;
    int rv = nng_aio_result(w->aio);
    if (w->state == W_SEND) {
        /* Sent, timed out (dropped: see "connections" above) or closed. */
        if (rv != 0) nng_msg_free(nng_aio_get_msg(w->aio));
        pipe_done(&p->pipes, w->pipe_id, true, rv == 0);
        w->pipe_id = 0;
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) return;
        worker_recv(w);
        return;
    }
    if (rv != 0) {
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) return;
        worker_recv(w);
        return;
    }
    nng_msg *msg = nng_aio_get_msg(w->aio);
    /* Counted before the check, so quiesce sees either the count or the
     * flag: no handler starts after it returns. */
    atomic_fetch_add(&p->active, 1);
    if (atomic_load(&p->stopped)) {
        /* The log and the store may be closed: drop it, and this worker
         * receives no more. */
        atomic_fetch_sub(&p->active, 1);
        nng_msg_free(msg);
        return;
    }
    nng_pipe pipe = nng_msg_get_pipe(msg);
    uint32_t pid = (uint32_t)nng_pipe_id(pipe);
    uint32_t hard =
        (uint32_t)(p->n / 2) > p->o.max_pending ? (uint32_t)(p->n / 2) : p->o.max_pending;
    bool shed = pipe_take(&p->pipes, pid, p->o.max_pending, hard);
    handle(w, nng_msg_body(msg), nng_msg_len(msg), shed);
    atomic_fetch_sub(&p->active, 1);
    if (shed) {
        nng_msg_free(msg);
        worker_recv(w);
        return;
    }
    nng_msg_clear(msg);
    if (w->reply.failed || nng_msg_append(msg, w->reply.data, w->reply.len) != 0) {
        /* Out of memory for the reply: drop it; the client's wait expires. */
        nng_msg_free(msg);
        pipe_done(&p->pipes, pid, false, false);
        worker_recv(w);
        return;
    }
    w->state = W_SEND;
    w->pipe_id = pid;
    pipe_sending(&p->pipes, pid);
    nng_aio_set_msg(w->aio, msg);
    nng_aio_set_timeout(w->aio, p->o.send_timeout_ms ? (nng_duration)p->o.send_timeout_ms
                                                     : NNG_DURATION_INFINITE);
    nng_ctx_send(w->ctx, w->aio);
}

/* Closes connections idle for o.idle_ms, within a quarter of it (see
 * "connections" above). */
static void *sweeper_main(void *arg)
{
    idld_pool *p = arg;
    uint32_t every = p->o.idle_ms / 4;
    if (every < 50) every = 50;
    if (every > 1000) every = 1000;
    pthread_setname_np(pthread_self(), "idl:idle");
    pthread_mutex_lock(&p->sweep_lock);
    while (!p->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)every * 1000000u;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&p->sweep_wake, &p->sweep_lock, &ts);
        if (p->stopping) break;
        pthread_mutex_unlock(&p->sweep_lock);
        uint64_t now = idld_mono_us();
        for (int i = 0; i < PIPE_SHARDS; i++) {
            /* Closed outside the shard lock: closing runs nng's pipe code. */
            uint32_t idle[64];
            size_t n = 0;
            pipe_shard *sh = &p->pipes.shard[i];
            pthread_mutex_lock(&sh->lock);
            for (pipe_ent *e = sh->head; e && n < 64; e = e->next)
                if (!e->closed && e->inflight == 0 &&
                    now - e->last_us >= (uint64_t)p->o.idle_ms * 1000u) {
                    e->closed = true;
                    idle[n++] = e->id;
                }
            pthread_mutex_unlock(&sh->lock);
            for (size_t k = 0; k < n; k++) {
                nng_pipe np = {.id = idle[k]};
                nng_pipe_close(np);
            }
        }
        pthread_mutex_lock(&p->sweep_lock);
    }
    pthread_mutex_unlock(&p->sweep_lock);
    return NULL;
}

int idld_pool_start(idld_pool **out, idld_state *st, const char *url, const idld_pool_opts *o,
                    char err[IDL_ERR_MAX])
{
    idld_pool *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, 256, "out of memory");
        return IDL_INTERNAL;
    }
    p->o = *o;
    for (int i = 0; i < PIPE_SHARDS; i++)
        pthread_mutex_init(&p->pipes.shard[i].lock, NULL);
    pthread_mutex_init(&p->sweep_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->sweep_wake, &ca);
    pthread_condattr_destroy(&ca);
    int rv;
    if ((rv = nng_rep0_open(&p->sock)) != 0) {
        snprintf(err, 256, "cannot open the rep0 socket: %s", nng_strerror(rv));
        goto fail;
    }
    /* API.md §1: up to 65,536 bytes served; the transport drops larger ones. */
    nng_socket_set_size(p->sock, NNG_OPT_RECVMAXSZ, IDL_WIRE_MAX_MSG);
    if (nng_pipe_notify(p->sock, NNG_PIPE_EV_ADD_PRE, pipe_event, &p->pipes) != 0 ||
        nng_pipe_notify(p->sock, NNG_PIPE_EV_REM_POST, pipe_event, &p->pipes) != 0) {
        snprintf(err, 256, "cannot watch connections");
        goto fail;
    }
    p->workers = calloc(o->workers, sizeof(*p->workers));
    if (!p->workers) {
        snprintf(err, 256, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < o->workers; i++) {
        idld_worker *w = &p->workers[i];
        w->st = st;
        w->pool = p;
        w->scratch = idld_scratch_new();
        if (!w->scratch || !msgpack_zone_init(&w->zone, 4096) ||
            nng_aio_alloc(&w->aio, worker_cb, w) != 0 || nng_ctx_open(&w->ctx, p->sock) != 0) {
            snprintf(err, 256, "cannot set up worker %zu", i);
            p->n = i + 1;
            goto fail;
        }
        p->n = i + 1;
    }
    if ((rv = nng_listen(p->sock, url, NULL, 0)) != 0) {
        snprintf(err, 256, "cannot listen on %s: %s", url, nng_strerror(rv));
        goto fail;
    }
    if (o->idle_ms) {
        if (pthread_create(&p->sweeper, NULL, sweeper_main, p) != 0) {
            snprintf(err, 256, "cannot start the idle-connection thread");
            goto fail;
        }
        p->sweeper_running = true;
    }
    for (size_t i = 0; i < p->n; i++)
        worker_recv(&p->workers[i]);
    *out = p;
    return IDL_OK;
fail:
    idld_pool_stop(p);
    return IDL_UNAVAILABLE;
}

void idld_pool_quiesce(idld_pool *p)
{
    if (!p) return;
    atomic_store(&p->stopped, true);
    while (atomic_load(&p->active) > 0) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

bool idld_pool_ring_in_use(const idld_pool *p, const idl_keyring *kr)
{
    for (size_t i = 0; p && i < p->n; i++)
        if (atomic_load(&p->workers[i].ring) == kr) return true;
    return false;
}

void idld_pool_stop(idld_pool *p)
{
    if (!p) return;
    if (p->sweeper_running) {
        pthread_mutex_lock(&p->sweep_lock);
        p->stopping = true;
        pthread_cond_signal(&p->sweep_wake);
        pthread_mutex_unlock(&p->sweep_lock);
        pthread_join(p->sweeper, NULL);
    }
    if (nng_socket_id(p->sock) > 0) nng_close(p->sock);
    for (size_t i = 0; i < p->n; i++) {
        idld_worker *w = &p->workers[i];
        if (w->aio) {
            nng_aio_stop(w->aio);
            nng_aio_free(w->aio);
        }
        if (w->scratch) {
            idld_scratch_free(w->scratch);
            msgpack_zone_destroy(&w->zone);
        }
        idl_buf_free(&w->body);
        idl_buf_free(&w->reply);
    }
    free(p->workers);
    /* nng_close ran every pipe's REM_POST, but free what is left anyway. */
    for (int i = 0; i < PIPE_SHARDS; i++) {
        for (pipe_ent *e = p->pipes.shard[i].head, *next; e; e = next) {
            next = e->next;
            free(e);
        }
        pthread_mutex_destroy(&p->pipes.shard[i].lock);
    }
    pthread_mutex_destroy(&p->sweep_lock);
    pthread_cond_destroy(&p->sweep_wake);
    free(p);
}
