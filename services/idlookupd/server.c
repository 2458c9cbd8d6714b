/* The request pipeline and the threads that serve it.
 *
 * The daemon speaks nng's SP protocols itself (rep0 over TCP and IPC: an
 * 8-byte handshake, then length-prefixed frames whose first words are the
 * request's backtrace), so any nng req0 client talks to it unchanged.  It
 * does not use libnng on this side because nng 1.5 takes one process-wide
 * mutex for every aio operation and hands each message from its poller
 * thread to a task thread: under Search load 2.9 futex calls and 1.2-1.5
 * context switches per request, all inside libnng (docs/PERFORMANCE.md).
 *
 * Run to completion: --workers threads (one per core by default) wait on one
 * epoll set in which every connection is armed one-shot.  The thread that
 * gets a connection's event reads what is there (at most READ_CHUNK), takes
 * the whole frames out, re-arms it (so another thread can read the next
 * frames meanwhile), then handles its frames and writes their replies itself:
 * no hand-off and no wakeup of another thread on the read path.  Methods
 * that write or may run long (OptOut, Disclosures, Upsert, Stats, Batch) go
 * to a small pool of slow threads at a lower CPU priority, so a Batch of a
 * hundred lookups or a write waiting for fsync or the cluster's stream never
 * holds a thread single lookups need.
 *
 * A reply that cannot be written at once waits in its connection's output
 * buffer and goes out on EPOLLOUT.  The checks run in the contract's order:
 * decode, method, key, scope, rate, deadline, body.
 */
#include "server.h"
#include "call.h"
#include "changes.h"
#include "hkey.h"
#include "status.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define SP_PROTO_REQ0 0x30
#define SP_PROTO_REP0 0x31
#define SP_MAX_HOPS 8           /* nng's default TTL: backtrace words a request may carry */
#define READ_CHUNK 16384        /* read per event: the rest is left to the next event */
#define OUT_HARD_CAP (4u << 20) /* unsent bytes beyond which a connection is not read */
#define SLOW_NICE 5             /* the slow pool's CPU priority below the request threads */

/* ---- connections ----
 *
 * Guards against clients that misbehave:
 * - backpressure: a connection with --max-pending-replies replies (or
 *   OUT_HARD_CAP bytes) waiting to be taken is not read until it takes some,
 *   so a client that pipelines and never reads holds a buffer, never a
 *   thread;
 * - a send timeout: a connection that has taken nothing of its waiting
 *   replies for --send-timeout-ms is closed;
 * - an idle timeout: a connection with nothing outstanding that has
 *   delivered no whole request for --idle-timeout-ms is closed, also one
 *   stuck in the middle of a frame.  nng's dialers reconnect.
 * A connection is freed when the epoll registration and every thread
 * working on its requests have let it go (refs): its descriptor is closed
 * only then, so a late reply can never reach a new connection that reused
 * the number. */

typedef struct conn {
    int fd;  /* the read side's epoll registration */
    int wfd; /* a dup of fd: the write side's own registration */
    bool ipc;
    atomic_int refs;
    /* Read side: touched only by the thread holding the one-shot event. */
    unsigned char hs[8];
    size_t hs_got;
    unsigned char *rbuf; /* a partial frame carried to the next read */
    size_t rlen, rcap;
    /* Guarded by lock. */
    pthread_mutex_t lock;
    bool dead;          /* closed or being closed: replies are dropped */
    bool paused;        /* not to be read: too many replies waiting */
    bool parked;        /* the read side is disarmed and nobody holds it (paused) */
    bool w_armed;       /* the write side waits for EPOLLOUT */
    unsigned char *out; /* unsent bytes out[out_off..out_len) */
    size_t out_off, out_len, out_cap;
    uint64_t sent_total, queued_total; /* bytes handed to the kernel / queued, ever */
    uint64_t *ends;                    /* queued_total at the end of each waiting reply, FIFO */
    size_t ends_head, ends_n, ends_cap;
    uint32_t inflight;         /* requests taken whose reply is not queued yet */
    uint64_t last_req_us;      /* when it connected or delivered its last whole request */
    uint64_t last_progress_us; /* when it connected or last took reply bytes */
    struct conn *prev, *next;  /* the pool's list, under pool->conns_lock */
    uint64_t *seen;            /* in the graveyard: each request thread's qstate then */
} conn;

struct idld_worker {
    idld_state *st;
    struct idld_pool *pool;
    msgpack_zone zone;
    idl_buf body;
    idl_buf reply;
    idld_scratch *scratch;
    idl_qlog_entry log;
    /* The key ring this worker's request uses (a hazard pointer): a ring
     * retired by SIGHUP is freed once no worker holds it. */
    _Atomic(idl_keyring *) ring;
    /* Request threads: the frames of the event being served, and their
     * replies, written together. */
    idl_buf frames;
    idl_buf out;
    unsigned nreplies;
    pthread_t th;
    bool started;
    /* Quiescence: (loops << 1) | waiting.  A connection let go is freed
     * once every request thread has finished the loop it was in then, or
     * was waiting in epoll: no event taken before may still point to it. */
    atomic_ulong qstate;
};

/* A request for the slow pool: a copy of its frame. */
typedef struct slow_job {
    conn *c;
    uint64_t t0;
    size_t hdr_len, len;
    struct slow_job *next;
    unsigned char data[]; /* backtrace words, then the request */
} slow_job;

struct idld_pool {
    idld_state *st;
    idld_pool_opts o;
    int lfd;            /* the listening socket */
    int ep;             /* the epoll set */
    int stopfd;         /* eventfd: wakes every thread for good when stopping */
    char ipc_path[108]; /* unlinked at stop */
    size_t n, nslow;
    idld_worker *workers; /* n request threads, then nslow slow threads */
    pthread_mutex_t conns_lock;
    conn *conns;
    conn *grave; /* let go, not yet freed (under conns_lock) */
    pthread_mutex_t slow_lock;
    pthread_cond_t slow_wake;
    slow_job *slow_head, *slow_tail;
    pthread_t sweeper;
    bool sweeper_running;
    pthread_cond_t sweep_wake; /* with slow_lock */
    bool stopping;             /* guarded by slow_lock */
    atomic_bool closing;       /* threads leave their loops */
    /* Quiesce (SIGTERM): once stopped is set, no request is handled any
     * more; active counts the handlers still running. */
    atomic_bool stopped;
    atomic_uint active;
};

static void conn_free(conn *c)
{
    close(c->fd);
    if (c->wfd >= 0) close(c->wfd);
    pthread_mutex_destroy(&c->lock);
    free(c->rbuf);
    free(c->out);
    free(c->ends);
    free(c->seen);
    free(c);
}

/* Drops a reference; the last one moves c to the graveyard.  Its memory and
 * its descriptors stay until no request thread can hold an event taken
 * before (see qstate): a descriptor closed earlier could be reused by a new
 * connection that a stale event would then read or write. */
static void conn_unref(idld_pool *p, conn *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1) return;
    c->seen = malloc(p->n * sizeof *c->seen);
    pthread_mutex_lock(&p->conns_lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    for (size_t i = 0; c->seen && i < p->n; i++)
        c->seen[i] = atomic_load(&p->workers[i].qstate);
    c->prev = NULL;
    c->next = p->grave;
    p->grave = c;
    pthread_mutex_unlock(&p->conns_lock);
}

/* Frees the graveyard's connections that no event can point to any more
 * (all, with every request thread joined). */
static void grave_sweep(idld_pool *p, bool all)
{
    pthread_mutex_lock(&p->conns_lock);
    for (conn **pp = &p->grave; *pp;) {
        conn *c = *pp;
        bool safe = all || c->seen;
        for (size_t i = 0; safe && !all && i < p->n; i++) {
            unsigned long now = atomic_load(&p->workers[i].qstate);
            safe = now != c->seen[i] || (c->seen[i] & 1);
        }
        /* Out of memory for the snapshot: kept until the pool stops. */
        if (safe) {
            *pp = c->next;
            conn_free(c);
        } else {
            pp = &c->next;
        }
    }
    pthread_mutex_unlock(&p->conns_lock);
}

/* Each connection has two one-shot registrations: its descriptor for reading
 * and a dup of it for writing (events on the dup carry the pointer with its
 * low bit set).  Only the thread holding the read event re-arms the read
 * side, so no two threads ever read one connection; the write side is armed
 * by whoever queues a reply the kernel did not take, and re-armed by the
 * thread that gets its EPOLLOUT. */
#define WRITE_TAG ((uintptr_t)1)

/* Re-arms the read side (lock held; the caller holds the read event or it
 * is parked), or parks it while the connection is paused. */
static void arm_read(idld_pool *p, conn *c)
{
    if (c->dead) return;
    if (c->paused) {
        c->parked = true;
        return;
    }
    c->parked = false;
    struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data.ptr = c};
    epoll_ctl(p->ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* Arms the write side for EPOLLOUT if replies wait and it is not armed
 * (lock held). */
static void arm_write(idld_pool *p, conn *c)
{
    if (c->dead || c->w_armed || c->out_off == c->out_len) return;
    struct epoll_event e = {.events = EPOLLOUT | EPOLLONESHOT,
                            .data.ptr = (void *)((uintptr_t)c | WRITE_TAG)};
    if (epoll_ctl(p->ep, EPOLL_CTL_MOD, c->wfd, &e) == 0) c->w_armed = true;
}

/* Marks c dead and takes it out of the epoll set (lock held).  True the
 * first time: the caller then drops the registration's reference, after
 * unlocking. */
static bool conn_kill(idld_pool *p, conn *c)
{
    if (c->dead) return false;
    c->dead = true;
    epoll_ctl(p->ep, EPOLL_CTL_DEL, c->fd, NULL);
    epoll_ctl(p->ep, EPOLL_CTL_DEL, c->wfd, NULL);
    shutdown(c->fd, SHUT_RDWR);
    return true;
}

/* Whether c must stop being read: too many replies or bytes waiting. */
static bool over_cap(const idld_pool *p, const conn *c)
{
    return (p->o.max_pending && c->ends_n >= p->o.max_pending) ||
           c->out_len - c->out_off >= OUT_HARD_CAP;
}

/* Writes what waits in c's output buffer (lock held): 0, or -1 when the
 * connection failed. */
static int conn_flush(idld_pool *p, conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w =
            send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (w <= 0) return -1;
        c->out_off += (size_t)w;
        c->sent_total += (uint64_t)w;
        c->last_progress_us = idld_mono_us();
    }
    while (c->ends_n && c->ends[c->ends_head] <= c->sent_total) {
        c->ends_head++;
        c->ends_n--;
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        c->ends_head = 0;
    } else if (c->out_off > c->out_cap / 2) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    if (c->ends_head > 0 && c->ends_head >= c->ends_cap / 2) {
        memmove(c->ends, c->ends + c->ends_head, c->ends_n * sizeof *c->ends);
        c->ends_head = 0;
    }
    if (c->paused && !over_cap(p, c)) c->paused = false;
    return 0;
}

/* Queues n replies (bytes data[0..len), whole frames ending at the offsets
 * in ends) on c and writes what the kernel takes at once; retired requests
 * (the n, and any dropped) are no longer in flight.  Replies for a dead
 * connection are dropped. */
static void conn_reply(idld_pool *p, conn *c, const unsigned char *data, size_t len,
                       const size_t *ends, unsigned n, unsigned retired)
{
    bool unreg = false;
    pthread_mutex_lock(&c->lock);
    if (c->inflight >= retired)
        c->inflight -= retired;
    else
        c->inflight = 0;
    if (c->dead || len == 0) goto out;
    size_t off = 0;
    if (c->out_off == c->out_len) {
        /* Nothing waits: straight to the kernel, the common case. */
        while (off < len) {
            ssize_t w = send(c->fd, data + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            if (w <= 0) {
                unreg = conn_kill(p, c);
                goto out;
            }
            off += (size_t)w;
            c->sent_total += (uint64_t)w;
        }
        c->last_progress_us = idld_mono_us();
    }
    if (off < len) {
        size_t need = c->out_len + (len - off);
        if (need > c->out_cap) {
            size_t cap = c->out_cap ? c->out_cap : 16384;
            while (cap < need)
                cap *= 2;
            unsigned char *nb = realloc(c->out, cap);
            if (!nb) {
                /* Out of memory for the replies: the client's waits expire. */
                unreg = conn_kill(p, c);
                goto out;
            }
            c->out = nb;
            c->out_cap = cap;
        }
        if (c->ends_head + c->ends_n + n > c->ends_cap) {
            size_t cap = c->ends_cap ? c->ends_cap : 64;
            while (cap < c->ends_head + c->ends_n + n)
                cap *= 2;
            uint64_t *ne = realloc(c->ends, cap * sizeof *ne);
            if (!ne) {
                unreg = conn_kill(p, c);
                goto out;
            }
            c->ends = ne;
            c->ends_cap = cap;
        }
        memcpy(c->out + c->out_len, data + off, len - off);
        c->out_len += len - off;
        uint64_t base = c->queued_total;
        for (unsigned i = 0; i < n; i++)
            if (base + ends[i] > c->sent_total)
                c->ends[c->ends_head + c->ends_n++] = base + ends[i];
        if (over_cap(p, c)) c->paused = true;
        arm_write(p, c);
    }
out:
    c->queued_total += len;
    pthread_mutex_unlock(&c->lock);
    if (unreg) conn_unref(p, c);
}

/* ---- the request path ---- */

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

/* The methods that run on the slow pool: they write (and may wait for an
 * fsync or the cluster's stream), or cost a millisecond and more (Batch,
 * Stats' counts). */
static bool is_slow(const idld_method *m)
{
    switch (m->id) {
    case IDL_METHOD_BATCH:
    case IDL_METHOD_OPTOUT:
    case IDL_METHOD_DISCLOSURES:
    case IDL_METHOD_UPSERT:
    case IDL_METHOD_STATS:
        return true;
    default:
        return false;
    }
}

/* Handles one request message received at t0 and leaves the reply in
 * w->reply.  With defer, a slow method is not handled: it returns false
 * having done nothing but decode. */
static bool handle(idld_worker *w, const void *data, size_t len, uint64_t t0, bool defer)
{
    idld_state *st = w->st;
    msgpack_zone_clear(&w->zone);
    idld_call c = {.st = st, .scratch = w->scratch, .log = &w->log};
    idl_request req;
    int code = idl_wire_decode_request(data, len, &w->zone, &req, c.msg);
    const idld_method *m = NULL;
    if (code == 0) m = idld_method_find(req.method, req.method_len);
    if (defer && m && is_slow(m)) return false;

    idl_qlog_entry *log = &w->log;
    idld_log_begin(st, log);
    char rid[32];
    idl_qlog_request_id(log->time_us, log->seq, rid);
    idl_buf_reset(&w->body);
    idl_buf_reset(&w->reply);
    msgpack_packer bpk;
    idl_buf_packer(&w->body, &bpk);
    c.pk = &bpk;
    bool rate_meta = false;
    uint32_t remaining = 0;
    idl_keyring *kr = NULL;
    if (code == 0) {
        idld_log_method(log, req.method, req.method_len);
        for (char *p = log->method; *p; p++)
            if ((unsigned char)*p < 0x20) *p = '?';
        if (!m)
            code = idld_fail(&c, IDL_UNIMPLEMENTED, "method", "unknown method '%s'", log->method);
    } else if (req.has_id && req.method) {
        idld_log_method(log, req.method, req.method_len);
    }
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
    return true;
}

/* ---- framing ---- */

/* Appends the reply in w->reply to request frame hdr[0..hl) to w->out. */
static int frame_reply(idld_worker *w, bool ipc, const unsigned char *hdr, size_t hl)
{
    unsigned char pre[9];
    size_t pl = 0;
    if (ipc) pre[pl++] = 1; /* nng's IPC: a message-type byte before the length */
    idl_be64_put(pre + pl, hl + w->reply.len);
    pl += 8;
    idl_buf_write(&w->out, (const char *)pre, pl);
    idl_buf_write(&w->out, (const char *)hdr, hl);
    idl_buf_write(&w->out, w->reply.data, w->reply.len);
    return w->out.failed || w->reply.failed ? -1 : 0;
}

/* The backtrace words at the head of a request (rep0): up to and including
 * the first with the high bit set.  0: the frame is garbage (the peer is
 * dropped, as nng does); -1: too many hops (the request is dropped). */
static int backtrace_len(const unsigned char *f, size_t len, size_t *hl)
{
    size_t off = 0;
    for (int hops = 0; hops <= SP_MAX_HOPS; hops++) {
        if (len - off < 4) return 0;
        bool last = f[off] & 0x80;
        off += 4;
        if (last) {
            *hl = off;
            return 1;
        }
    }
    return -1;
}

/* ---- the slow pool ---- */

static void slow_push(idld_pool *p, slow_job *j)
{
    pthread_mutex_lock(&p->slow_lock);
    j->next = NULL;
    if (p->slow_tail)
        p->slow_tail->next = j;
    else
        p->slow_head = j;
    p->slow_tail = j;
    pthread_cond_signal(&p->slow_wake);
    pthread_mutex_unlock(&p->slow_lock);
}

static void *slow_main(void *arg)
{
    idld_worker *w = arg;
    idld_pool *p = w->pool;
    pthread_setname_np(pthread_self(), "idl:slow");
    /* Raising one's own nice value needs no privilege. */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), SLOW_NICE);
    for (;;) {
        pthread_mutex_lock(&p->slow_lock);
        while (!p->slow_head && !p->stopping)
            pthread_cond_wait(&p->slow_wake, &p->slow_lock);
        slow_job *j = p->slow_head;
        if (!j) {
            pthread_mutex_unlock(&p->slow_lock);
            break;
        }
        p->slow_head = j->next;
        if (!p->slow_head) p->slow_tail = NULL;
        pthread_mutex_unlock(&p->slow_lock);
        atomic_fetch_add(&p->active, 1);
        size_t end = 0;
        idl_buf_reset(&w->out);
        if (!atomic_load(&p->stopped)) {
            handle(w, j->data + j->hdr_len, j->len - j->hdr_len, j->t0, false);
            if (frame_reply(w, j->c->ipc, j->data, j->hdr_len) == 0) end = w->out.len;
        }
        atomic_fetch_sub(&p->active, 1);
        conn_reply(p, j->c, (const unsigned char *)w->out.data, end, &end, end ? 1 : 0, 1);
        conn_unref(p, j->c);
        free(j);
    }
    return NULL;
}

/* ---- request threads ---- */

#define MAX_BATCH_REPLIES 64

/* Serves the whole frames in w->frames (each a u64 length, then the
 * bytes), read from c at t0, and writes their replies. */
static void serve_frames(idld_worker *w, conn *c, uint64_t t0)
{
    idld_pool *p = w->pool;
    size_t ends[MAX_BATCH_REPLIES];
    unsigned n = 0, done = 0;
    idl_buf_reset(&w->out);
    const unsigned char *f = (const unsigned char *)w->frames.data;
    size_t off = 0;
    while (off < w->frames.len) {
        size_t len = (size_t)idl_be64_get(f + off);
        const unsigned char *fr = f + off + 8;
        off += 8 + len;
        size_t hl = 0;
        int bt = backtrace_len(fr, len, &hl);
        if (bt == 0) {
            pthread_mutex_lock(&c->lock);
            bool unreg = conn_kill(p, c);
            pthread_mutex_unlock(&c->lock);
            if (unreg) conn_unref(p, c);
        }
        if (bt <= 0 || atomic_load(&p->stopped)) {
            done++;
            continue;
        }
        atomic_fetch_add(&p->active, 1);
        if (atomic_load(&p->stopped)) {
            atomic_fetch_sub(&p->active, 1);
            done++;
            continue;
        }
        bool handled = handle(w, fr + hl, len - hl, t0, true);
        atomic_fetch_sub(&p->active, 1);
        if (!handled) {
            slow_job *j = malloc(sizeof *j + len);
            if (!j) {
                done++;
                continue;
            }
            j->c = c;
            j->t0 = t0;
            j->hdr_len = hl;
            j->len = len;
            memcpy(j->data, fr, len);
            atomic_fetch_add(&c->refs, 1);
            slow_push(p, j);
            continue;
        }
        if (frame_reply(w, c->ipc, fr, hl) != 0) {
            /* Out of memory for a reply: dropped, the client's wait expires. */
            idl_buf_reset(&w->out);
            done += n + 1;
            n = 0;
            continue;
        }
        ends[n++] = w->out.len;
        if (n == MAX_BATCH_REPLIES) {
            conn_reply(p, c, (const unsigned char *)w->out.data, w->out.len, ends, n, n);
            idl_buf_reset(&w->out);
            n = 0;
        }
    }
    if (n || done)
        conn_reply(p, c, (const unsigned char *)w->out.data, w->out.len, ends, n, n + done);
}

/* Reads what c has (the thread holds its one-shot event), moving whole
 * frames to w->frames; returns how many, or -1 when the connection is to be
 * closed (peer gone, handshake or frame refused). */
static int conn_read(idld_pool *p, idld_worker *w, conn *c)
{
    unsigned char buf[READ_CHUNK];
    ssize_t got;
    for (;;) {
        got = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (got < 0 && errno == EINTR) continue;
        break;
    }
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (got <= 0) return -1;
    size_t off = 0, n = (size_t)got;
    if (c->hs_got < 8) {
        size_t k = 8 - c->hs_got < n ? 8 - c->hs_got : n;
        memcpy(c->hs + c->hs_got, buf, k);
        c->hs_got += k;
        off = k;
        if (c->hs_got < 8) return 0;
        /* nng's checks: the SP magic, a req0 peer, reserved bytes zero. */
        if (c->hs[0] != 0 || c->hs[1] != 'S' || c->hs[2] != 'P' || c->hs[3] != 0 || c->hs[4] != 0 ||
            c->hs[5] != SP_PROTO_REQ0 || c->hs[6] != 0 || c->hs[7] != 0)
            return -1;
    }
    if (off == n) return 0; /* the handshake alone */
    /* Append to the carried partial frame, then take whole frames out. */
    size_t need = c->rlen + (n - off);
    if (need > c->rcap) {
        size_t cap = c->rcap ? c->rcap : 4096;
        while (cap < need)
            cap *= 2;
        unsigned char *nb = realloc(c->rbuf, cap);
        if (!nb) return -1;
        c->rbuf = nb;
        c->rcap = cap;
    }
    memcpy(c->rbuf + c->rlen, buf + off, n - off);
    c->rlen += n - off;
    size_t pre = c->ipc ? 9 : 8, pos = 0;
    int frames = 0;
    while (c->rlen - pos >= pre) {
        const unsigned char *h = c->rbuf + pos;
        if (c->ipc && h[0] != 1) return -1;
        uint64_t len = idl_be64_get(h + pre - 8);
        /* API.md section 1: larger requests are refused by dropping the
         * connection, as nng's recv-size-max does. */
        if (len > IDL_WIRE_MAX_MSG) return -1;
        if (c->rlen - pos - pre < len) break;
        unsigned char lb[8];
        idl_be64_put(lb, len);
        idl_buf_write(&w->frames, (const char *)lb, 8);
        idl_buf_write(&w->frames, (const char *)h + pre, (size_t)len);
        pos += pre + (size_t)len;
        frames++;
    }
    if (w->frames.failed) return -1;
    if (pos) {
        memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
        c->rlen -= pos;
    }
    if (c->rcap > 65536 + 16 && c->rlen < 4096) {
        /* A big frame passed: give its buffer back. */
        unsigned char *nb = realloc(c->rbuf, 4096);
        if (nb) {
            c->rbuf = nb;
            c->rcap = 4096;
        }
    }
    return frames;
}

static void accept_all(idld_pool *p)
{
    for (;;) {
        int fd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            break; /* EAGAIN, or out of descriptors: the next event retries */
        }
        conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->wfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (c->wfd < 0) {
            free(c);
            close(fd);
            continue;
        }
        c->ipc = p->ipc_path[0] != 0;
        if (!c->ipc) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        pthread_mutex_init(&c->lock, NULL);
        atomic_init(&c->refs, 1); /* the registration */
        c->last_req_us = c->last_progress_us = idld_mono_us();
        unsigned char hs[8] = {0, 'S', 'P', 0, 0, SP_PROTO_REP0, 0, 0};
        /* A fresh socket's buffer takes 8 bytes. */
        if (send(fd, hs, sizeof hs, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)sizeof hs) {
            pthread_mutex_destroy(&c->lock);
            close(c->wfd);
            free(c);
            close(fd);
            continue;
        }
        pthread_mutex_lock(&p->conns_lock);
        c->next = p->conns;
        if (p->conns) p->conns->prev = c;
        p->conns = c;
        pthread_mutex_unlock(&p->conns_lock);
        pthread_mutex_lock(&c->lock);
        struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data.ptr = c};
        /* The write side starts registered but disarmed. */
        struct epoll_event we = {.events = EPOLLONESHOT,
                                 .data.ptr = (void *)((uintptr_t)c | WRITE_TAG)};
        if (epoll_ctl(p->ep, EPOLL_CTL_ADD, c->wfd, &we) == 0 &&
            epoll_ctl(p->ep, EPOLL_CTL_ADD, fd, &e) == 0) {
            pthread_mutex_unlock(&c->lock);
        } else {
            epoll_ctl(p->ep, EPOLL_CTL_DEL, c->wfd, NULL);
            c->dead = true;
            pthread_mutex_unlock(&c->lock);
            conn_unref(p, c);
        }
    }
    struct epoll_event e = {.events = EPOLLIN | EPOLLONESHOT, .data.ptr = NULL};
    epoll_ctl(p->ep, EPOLL_CTL_MOD, p->lfd, &e);
}

/* A read event of c, which this thread now holds. */
static void conn_event(idld_worker *w, conn *c, uint32_t ev)
{
    idld_pool *p = w->pool;
    uint64_t t0 = idld_mono_us();
    int frames = 0;
    bool kill = (ev & EPOLLERR) != 0;
    idl_buf_reset(&w->frames);
    /* A stale event (taken before another thread let c go) finds it dead:
     * c is still allocated (see conn_unref) but holds nothing to serve. */
    pthread_mutex_lock(&c->lock);
    bool dead = c->dead;
    /* Held until the frames read below are served: a connection let go
     * meanwhile still has every request it delivered handled and logged
     * (their replies are dropped). */
    if (!dead) atomic_fetch_add(&c->refs, 1);
    pthread_mutex_unlock(&c->lock);
    if (dead) return;
    if (!kill) {
        frames = conn_read(p, w, c);
        if (frames < 0) kill = true;
    }
    pthread_mutex_lock(&c->lock);
    if (frames > 0) {
        c->inflight += (uint32_t)frames;
        c->last_req_us = t0;
    }
    bool unreg = false;
    if (kill)
        unreg = conn_kill(p, c);
    else
        arm_read(p, c);
    pthread_mutex_unlock(&c->lock);
    if (unreg) conn_unref(p, c);
    if (frames > 0) serve_frames(w, c, t0);
    conn_unref(p, c);
}

/* A write event of c: writes what waits, and lets a paused connection be
 * read again once it has taken enough. */
static void conn_write_event(idld_pool *p, conn *c, uint32_t ev)
{
    pthread_mutex_lock(&c->lock);
    c->w_armed = false;
    bool unreg = false;
    if ((ev & EPOLLERR) || conn_flush(p, c) != 0) {
        unreg = conn_kill(p, c);
    } else {
        arm_write(p, c);
        if (c->parked && !c->paused) arm_read(p, c);
    }
    pthread_mutex_unlock(&c->lock);
    if (unreg) conn_unref(p, c);
}

static void *worker_main(void *arg)
{
    idld_worker *w = arg;
    idld_pool *p = w->pool;
    pthread_setname_np(pthread_self(), "idl:req");
    struct epoll_event evs[8];
    unsigned long loops = 0;
    while (!atomic_load(&p->closing)) {
        atomic_store(&w->qstate, (loops << 1) | 1);
        int n = epoll_wait(p->ep, evs, 8, -1);
        atomic_store(&w->qstate, ++loops << 1);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL)
                accept_all(p);
            else if (evs[i].data.ptr == (void *)p)
                return NULL; /* stopfd */
            else if ((uintptr_t)evs[i].data.ptr & WRITE_TAG)
                conn_write_event(p, (conn *)((uintptr_t)evs[i].data.ptr & ~WRITE_TAG),
                                 evs[i].events);
            else
                conn_event(w, evs[i].data.ptr, evs[i].events);
        }
    }
    return NULL;
}

/* Closes connections past the send or idle timeout (see "connections"):
 * shut down here, freed by the thread that gets their hang-up. */
static void *sweeper_main(void *arg)
{
    idld_pool *p = arg;
    uint32_t every = 100; /* the graveyard's pace */
    if (p->o.idle_ms && p->o.idle_ms / 4 < every) every = p->o.idle_ms / 4;
    if (p->o.send_timeout_ms && p->o.send_timeout_ms / 4 < every) every = p->o.send_timeout_ms / 4;
    if (every < 20) every = 20;
    pthread_setname_np(pthread_self(), "idl:sweep");
    pthread_mutex_lock(&p->slow_lock);
    while (!p->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)every * 1000000u;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&p->sweep_wake, &p->slow_lock, &ts);
        if (p->stopping) break;
        pthread_mutex_unlock(&p->slow_lock);
        grave_sweep(p, false);
        pthread_mutex_lock(&p->conns_lock);
        for (conn *c = p->conns; c; c = c->next) {
            pthread_mutex_lock(&c->lock);
            /* Read under c's lock: its times are never after it. */
            uint64_t now = idld_mono_us();
            bool waiting = c->out_off < c->out_len;
            bool stuck = p->o.send_timeout_ms && waiting &&
                         now - c->last_progress_us >= (uint64_t)p->o.send_timeout_ms * 1000u;
            bool idle = p->o.idle_ms && !waiting && c->inflight == 0 &&
                        now - c->last_req_us >= (uint64_t)p->o.idle_ms * 1000u;
            if (!c->dead && (stuck || idle)) shutdown(c->fd, SHUT_RDWR);
            pthread_mutex_unlock(&c->lock);
        }
        pthread_mutex_unlock(&p->conns_lock);
        pthread_mutex_lock(&p->slow_lock);
    }
    pthread_mutex_unlock(&p->slow_lock);
    return NULL;
}

/* Opens the listening socket for url: tcp://HOST:PORT (HOST a name, an
 * address, [v6], or * for every interface) or ipc:///PATH. */
static int listen_on(idld_pool *p, const char *url, char err[IDL_ERR_MAX])
{
    int fd = -1;
    if (strncmp(url, "ipc://", 6) == 0) {
        const char *path = url + 6;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (!*path || strlen(path) >= sizeof sa.sun_path) {
            snprintf(err, IDL_ERR_MAX, "cannot listen on %s: the path is empty or too long", url);
            return IDL_INVALID_ARGUMENT;
        }
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) goto sys_fail;
        /* A socket file nobody answers on is left from a previous run. */
        struct stat sb;
        if (stat(path, &sb) == 0 && S_ISSOCK(sb.st_mode)) {
            int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) != 0 &&
                errno == ECONNREFUSED)
                unlink(path);
            if (probe >= 0) close(probe);
        }
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) goto sys_fail;
        snprintf(p->ipc_path, sizeof p->ipc_path, "%s", path);
    } else if (strncmp(url, "tcp://", 6) == 0) {
        char host[256];
        const char *hp = url + 6, *colon = strrchr(hp, ':');
        if (!colon || (size_t)(colon - hp) >= sizeof host || !colon[1]) {
            snprintf(err, IDL_ERR_MAX, "cannot listen on %s: expected tcp://HOST:PORT", url);
            return IDL_INVALID_ARGUMENT;
        }
        memcpy(host, hp, (size_t)(colon - hp));
        host[colon - hp] = 0;
        char *h = host;
        size_t hl = strlen(h);
        if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
            h[hl - 1] = 0;
            h++;
        }
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
        int g = getaddrinfo(strcmp(h, "*") == 0 || !*h ? NULL : h, colon + 1, &hints, &ai);
        if (g != 0) {
            snprintf(err, IDL_ERR_MAX, "cannot listen on %s: %s", url, gai_strerror(g));
            return IDL_INVALID_ARGUMENT;
        }
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        int b = fd >= 0 ? bind(fd, ai->ai_addr, ai->ai_addrlen) : -1;
        freeaddrinfo(ai);
        if (b != 0) goto sys_fail;
    } else {
        snprintf(err, IDL_ERR_MAX, "cannot listen on %s: use tcp://HOST:PORT or ipc:///PATH", url);
        return IDL_INVALID_ARGUMENT;
    }
    if (listen(fd, 1024) != 0) goto sys_fail;
    p->lfd = fd;
    return IDL_OK;
sys_fail:
    snprintf(err, IDL_ERR_MAX, "cannot listen on %s: %s", url, strerror(errno));
    if (fd >= 0) close(fd);
    return IDL_UNAVAILABLE;
}

static int worker_init(idld_worker *w, idld_pool *p)
{
    w->st = p->st;
    w->pool = p;
    w->scratch = idld_scratch_new();
    if (!w->scratch) return -1;
    if (!msgpack_zone_init(&w->zone, 4096)) {
        idld_scratch_free(w->scratch);
        w->scratch = NULL;
        return -1;
    }
    return 0;
}

int idld_pool_start(idld_pool **out, idld_state *st, const char *url, const idld_pool_opts *o,
                    char err[IDL_ERR_MAX])
{
    int rc = IDL_UNAVAILABLE;
    idld_pool *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, IDL_ERR_MAX, "out of memory");
        return IDL_INTERNAL;
    }
    p->st = st;
    p->o = *o;
    p->lfd = p->ep = p->stopfd = -1;
    pthread_mutex_init(&p->conns_lock, NULL);
    pthread_mutex_init(&p->slow_lock, NULL);
    pthread_cond_init(&p->slow_wake, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->sweep_wake, &ca);
    pthread_condattr_destroy(&ca);
    p->n = o->workers ? o->workers : 1;
    p->nslow = o->slow_workers ? o->slow_workers : 1;
    p->workers = calloc(p->n + p->nslow, sizeof(*p->workers));
    if (!p->workers) {
        snprintf(err, IDL_ERR_MAX, "out of memory");
        rc = IDL_INTERNAL;
        goto fail;
    }
    for (size_t i = 0; i < p->n + p->nslow; i++)
        if (worker_init(&p->workers[i], p) != 0) {
            snprintf(err, IDL_ERR_MAX, "cannot set up worker %zu: out of memory", i);
            rc = IDL_INTERNAL;
            goto fail;
        }
    if ((rc = listen_on(p, url, err)) != IDL_OK) goto fail;
    rc = IDL_UNAVAILABLE;
    p->ep = epoll_create1(EPOLL_CLOEXEC);
    p->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->ep < 0 || p->stopfd < 0) {
        snprintf(err, IDL_ERR_MAX, "cannot create the epoll set: %s", strerror(errno));
        goto fail;
    }
    struct epoll_event le = {.events = EPOLLIN | EPOLLONESHOT, .data.ptr = NULL};
    struct epoll_event se = {.events = EPOLLIN, .data.ptr = p};
    if (epoll_ctl(p->ep, EPOLL_CTL_ADD, p->lfd, &le) != 0 ||
        epoll_ctl(p->ep, EPOLL_CTL_ADD, p->stopfd, &se) != 0) {
        snprintf(err, IDL_ERR_MAX, "cannot watch the listening socket: %s", strerror(errno));
        goto fail;
    }
    for (size_t i = 0; i < p->n + p->nslow; i++) {
        idld_worker *w = &p->workers[i];
        if (pthread_create(&w->th, NULL, i < p->n ? worker_main : slow_main, w) != 0) {
            snprintf(err, IDL_ERR_MAX, "cannot start thread %zu", i);
            goto fail;
        }
        w->started = true;
    }
    if (pthread_create(&p->sweeper, NULL, sweeper_main, p) != 0) {
        snprintf(err, IDL_ERR_MAX, "cannot start the connection sweeper");
        goto fail;
    }
    p->sweeper_running = true;
    *out = p;
    return IDL_OK;
fail:
    idld_pool_stop(p);
    return rc;
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
    for (size_t i = 0; p && i < p->n + p->nslow; i++)
        if (atomic_load(&p->workers[i].ring) == kr) return true;
    return false;
}

void idld_pool_stop(idld_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->slow_lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->slow_wake);
    pthread_cond_signal(&p->sweep_wake);
    pthread_mutex_unlock(&p->slow_lock);
    if (p->sweeper_running) pthread_join(p->sweeper, NULL);
    atomic_store(&p->stopped, true);
    atomic_store(&p->closing, true);
    if (p->stopfd >= 0) {
        /* Level-triggered and never read: it wakes every thread in turn. */
        uint64_t one = 1;
        ssize_t wr = write(p->stopfd, &one, sizeof one);
        (void)wr; /* a fresh eventfd takes it */
    }
    for (size_t i = 0; p->workers && i < p->n + p->nslow; i++)
        if (p->workers[i].started) pthread_join(p->workers[i].th, NULL);
    if (p->lfd >= 0) close(p->lfd);
    if (p->ipc_path[0]) unlink(p->ipc_path);
    /* Every thread is gone: what is left holds only its registration. */
    for (conn *c = p->conns, *next; c; c = next) {
        next = c->next;
        conn_free(c);
    }
    grave_sweep(p, true);
    for (slow_job *j = p->slow_head, *next; j; j = next) {
        next = j->next;
        free(j);
    }
    if (p->ep >= 0) close(p->ep);
    if (p->stopfd >= 0) close(p->stopfd);
    for (size_t i = 0; p->workers && i < p->n + p->nslow; i++) {
        idld_worker *w = &p->workers[i];
        if (w->scratch) {
            idld_scratch_free(w->scratch);
            msgpack_zone_destroy(&w->zone);
        }
        idl_buf_free(&w->body);
        idl_buf_free(&w->reply);
        idl_buf_free(&w->frames);
        idl_buf_free(&w->out);
    }
    free(p->workers);
    pthread_mutex_destroy(&p->conns_lock);
    pthread_mutex_destroy(&p->slow_lock);
    pthread_cond_destroy(&p->slow_wake);
    pthread_cond_destroy(&p->sweep_wake);
    free(p);
}
