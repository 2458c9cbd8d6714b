/* The change stream (see changes.h). */
#include "changes.h"
#include "natsconn.h"
#include "status.h"
#include "wire.h"

#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define APPLIED_KEY "c:applied_seq"
#define PUBLISH_WAIT_MS 15000 /* longer than a RAFT leader election (8.6 s seen) */
/* After the acknowledgement, the wait for this node's own applier.  Losing
 * the stream's leader makes the applier subscribe again, and each consumer
 * asked for during the election fails after the JetStream context's 2 s
 * wait (natsconn.c): under AddressSanitizer the applier resumed after more
 * than 10 s in 2 of 11 runs of the leader-kill test. */
#define APPLY_WAIT_MS 20000
/* A write that arrives while the node moves to another NATS server (its own
 * was lost: CLUSTER.md §7) waits for the move instead of being refused; with
 * NATS gone altogether it is refused after this. */
#define RECONNECT_GRACE_MS 2000
#define PURGE_QUEUE 256

/* A request thread waiting for its change to be applied here. */
typedef struct waiter {
    uint64_t ctr;
    bool done;
    int rc;
    uint32_t newly;
    idl_upsert_result *res; /* n results for an upsert, else NULL */
    size_t n;
    /* Its own, so the applier wakes only the write it applied: one shared
     * condition woke all 32 slow threads per message, and the futex
     * traffic capped a node at ~640 opt-outs/s. */
    pthread_cond_t cond;
    struct waiter *next;
} waiter;

struct idl_changes {
    idl_store *s;
    idl_natsconn *conn;
    char node[IDL_NATS_NODE_MAX];
    uint64_t origin;
    _Atomic uint64_t ctr;
    _Atomic uint64_t applied, stream_seq, target;
    atomic_bool ready, have_target, stopping;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock; /* guards waiters, purges, kv */
    waiter *waiters;
    uint64_t purges[PURGE_QUEUE];
    size_t npurges;
    kvStore *kv;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- encoding ---- */

static void pack_head(msgpack_packer *pk, const char *kind, uint64_t origin, uint64_t ctr)
{
    msgpack_pack_array(pk, 5);
    msgpack_pack_uint8(pk, 1);
    idl_wire_pack_cstr(pk, kind);
    msgpack_pack_uint64(pk, origin);
    msgpack_pack_uint64(pk, ctr);
}

int idl_changes_encode_upsert(const idl_record *recs, size_t n, uint64_t origin, uint64_t ctr,
                              char **out, size_t *len)
{
    idl_buf b = {0}, rb = {0};
    msgpack_packer pk, rpk;
    idl_buf_packer(&b, &pk);
    pack_head(&pk, "u", origin, ctr);
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++) {
        idl_buf_reset(&rb);
        idl_buf_packer(&rb, &rpk);
        idl_record_pack(&rpk, &recs[i]);
        msgpack_pack_bin(&pk, rb.len);
        msgpack_pack_bin_body(&pk, rb.data, rb.len);
    }
    idl_buf_free(&rb);
    if (b.failed || rb.failed) {
        idl_buf_free(&b);
        return IDL_INTERNAL;
    }
    *out = b.data;
    *len = b.len;
    return IDL_OK;
}

static int encode_suppress(const uint64_t *pids, size_t npids, const idl_hkey *keys, size_t nkeys,
                           uint64_t origin, uint64_t ctr, idl_buf *b)
{
    msgpack_packer pk;
    idl_buf_packer(b, &pk);
    pack_head(&pk, "s", origin, ctr);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_array(&pk, npids);
    for (size_t i = 0; i < npids; i++)
        msgpack_pack_uint64(&pk, pids[i]);
    msgpack_pack_array(&pk, nkeys);
    for (size_t i = 0; i < nkeys; i++) {
        msgpack_pack_bin(&pk, 16);
        msgpack_pack_bin_body(&pk, keys[i].b, 16);
    }
    return b->failed ? IDL_INTERNAL : IDL_OK;
}

/* ---- applying ---- */

static waiter *take_waiter(idl_changes *c, uint64_t origin, uint64_t ctr)
{
    if (origin != c->origin) return NULL;
    for (waiter *w = c->waiters; w; w = w->next)
        if (w->ctr == ctr && !w->done) return w;
    return NULL;
}

/* Applies one message at seq; the stamp records seq in the same batch.
 * IDL_OK also for a message that cannot be decoded (it is skipped, and its
 * sequence recorded, on every node alike); an error only when the store
 * cannot be written (the message is then retried). */
static int apply_one(idl_changes *c, uint64_t seq, const char *data, size_t len)
{
    uint8_t sv[8];
    idl_be64_put(sv, seq);
    idl_store_stamp stamp = {APPLIED_KEY, strlen(APPLIED_KEY), sv, 8};
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    idl_record *recs = NULL;
    idl_upsert_result *res = NULL;
    uint64_t *pids = NULL;
    idl_hkey *keys = NULL;
    int rc = IDL_OK, outcome = IDL_OK;
    uint32_t newly = 0;
    size_t nres = 0;
    bool applied = false;
    const msgpack_object *a = NULL;
    if (msgpack_unpack_next(&up, data, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        up.data.type == MSGPACK_OBJECT_ARRAY && up.data.via.array.size == 5)
        a = up.data.via.array.ptr;
    if (a && a[1].type == MSGPACK_OBJECT_STR && a[1].via.str.size == 1) {
        char kind = a[1].via.str.ptr[0];
        const msgpack_object *body = &a[4];
        if (kind == 'u' && body->type == MSGPACK_OBJECT_ARRAY) {
            size_t n = body->via.array.size;
            recs = malloc((n ? n : 1) * sizeof(*recs));
            res = malloc((n ? n : 1) * sizeof(*res));
            if (!recs || !res) {
                rc = IDL_INTERNAL;
                goto out;
            }
            size_t k = 0;
            for (size_t i = 0; i < n; i++) {
                const msgpack_object *o = &body->via.array.ptr[i];
                if (o->type == MSGPACK_OBJECT_BIN &&
                    idl_record_unpack(o->via.bin.ptr, o->via.bin.size, &recs[k]) == IDL_OK)
                    k++;
            }
            rc = idl_store_upsert_stamped(c->s, recs, k, res, false, &stamp);
            nres = k;
            applied = true;
        } else if (kind == 's' && body->type == MSGPACK_OBJECT_ARRAY && body->via.array.size == 2 &&
                   body->via.array.ptr[0].type == MSGPACK_OBJECT_ARRAY &&
                   body->via.array.ptr[1].type == MSGPACK_OBJECT_ARRAY) {
            const msgpack_object *po = &body->via.array.ptr[0], *ko = &body->via.array.ptr[1];
            size_t np = po->via.array.size, nk = ko->via.array.size, kk = 0;
            pids = malloc((np ? np : 1) * sizeof(*pids));
            keys = malloc((nk ? nk : 1) * sizeof(*keys));
            if (!pids || !keys) {
                rc = IDL_INTERNAL;
                goto out;
            }
            for (size_t i = 0; i < np; i++)
                pids[i] = po->via.array.ptr[i].via.u64;
            for (size_t i = 0; i < nk; i++) {
                const msgpack_object *o = &ko->via.array.ptr[i];
                if (o->type == MSGPACK_OBJECT_BIN && o->via.bin.size == 16)
                    memcpy(keys[kk++].b, o->via.bin.ptr, 16);
            }
            rc = idl_store_suppress_stamped(c->s, pids, np, keys, kk, &newly, &stamp);
            applied = true;
        } else if (kind == 'p' && body->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            rc = idl_store_purge_child_stamped(c->s, body->via.u64, &stamp);
            applied = true;
        }
    }
    if (!applied) {
        fprintf(stderr, "idl_changes: message %" PRIu64 " is not a change; skipped\n", seq);
        idl_store_batch *b = idl_store_batch_new(c->s);
        if (!b) {
            rc = IDL_INTERNAL;
            goto out;
        }
        idl_store_batch_put(b, IDL_CF_META, APPLIED_KEY, strlen(APPLIED_KEY), sv, 8);
        rc = idl_store_batch_commit(c->s, b, false);
        idl_store_batch_free(b);
        outcome = IDL_INTERNAL;
    }
    if (rc) goto out;
    pthread_mutex_lock(&c->lock);
    atomic_store(&c->applied, seq);
    waiter *w = a ? take_waiter(c, a[2].via.u64, a[3].via.u64) : NULL;
    if (w) {
        w->rc = outcome;
        w->newly = newly;
        if (w->res && res) memcpy(w->res, res, (nres < w->n ? nres : w->n) * sizeof(*res));
        w->done = true;
        pthread_cond_signal(&w->cond);
    }
    pthread_mutex_unlock(&c->lock);
out:
    msgpack_unpacked_destroy(&up);
    free(recs);
    free(res);
    free(pids);
    free(keys);
    return rc;
}

/* Catching up (an ingest, a node far behind), upserts from other writers
 * are applied several messages to a WriteBatch: one commit, one stamp of
 * the last message's sequence, instead of one per message of 256 records. */
#define BATCH_MSGS 16
#define BATCH_RECORDS 4096

/* The records of m when it is an upsert nobody here waits for (another
 * node's or an ingest's), appended to *recs; false when it is anything else
 * (then nothing is appended). */
static bool take_foreign_upsert(idl_changes *c, natsMsg *m, idl_record **recs, size_t *n,
                                size_t *cap)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    bool ok = false;
    if (msgpack_unpack_next(&up, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), NULL) !=
            MSGPACK_UNPACK_SUCCESS ||
        up.data.type != MSGPACK_OBJECT_ARRAY || up.data.via.array.size != 5)
        goto out;
    const msgpack_object *a = up.data.via.array.ptr;
    if (a[1].type != MSGPACK_OBJECT_STR || a[1].via.str.size != 1 || a[1].via.str.ptr[0] != 'u' ||
        a[2].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[2].via.u64 == c->origin ||
        a[4].type != MSGPACK_OBJECT_ARRAY)
        goto out;
    const msgpack_object *body = &a[4];
    size_t want = *n + body->via.array.size;
    if (want > *cap) {
        size_t nc = *cap ? *cap : 1024;
        while (nc < want)
            nc *= 2;
        idl_record *r = realloc(*recs, nc * sizeof(**recs));
        if (!r) goto out;
        *recs = r;
        *cap = nc;
    }
    size_t k = *n;
    for (size_t i = 0; i < body->via.array.size; i++) {
        const msgpack_object *o = &body->via.array.ptr[i];
        if (o->type == MSGPACK_OBJECT_BIN &&
            idl_record_unpack(o->via.bin.ptr, o->via.bin.size, &(*recs)[k]) == IDL_OK)
            k++;
    }
    *n = k;
    ok = true;
out:
    msgpack_unpacked_destroy(&up);
    return ok;
}

/* Applies m (at seq, the next one) and, when it is a foreign upsert, the
 * foreign upserts that follow it already delivered, in one batch stamped
 * with the last one's sequence (CLUSTER.md §2: the stamp lands with the
 * batch's last part; earlier parts are upserts, idempotent to apply again
 * after a crash).  A message that ends the run is left in *held for the
 * caller.  Returns what apply_one would. */
static int apply_run(idl_changes *c, natsSubscription *sub, natsMsg *m, uint64_t seq,
                     natsMsg **held)
{
    idl_record *recs = NULL;
    size_t n = 0, cap = 0;
    if (!take_foreign_upsert(c, m, &recs, &n, &cap)) {
        free(recs);
        return apply_one(c, seq, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
    }
    uint64_t last = seq;
    for (int k = 1; k < BATCH_MSGS && n < BATCH_RECORDS; k++) {
        int pending = 0;
        if (natsSubscription_GetPending(sub, &pending, NULL) != NATS_OK || pending <= 0) break;
        natsMsg *next = NULL;
        if (natsSubscription_NextMsg(&next, sub, 10) != NATS_OK) break;
        jsMsgMetaData *meta = NULL;
        uint64_t nseq = 0, npend = 0;
        if (natsMsg_GetMetaData(&meta, next) == NATS_OK) {
            nseq = meta->Sequence.Stream;
            npend = meta->NumPending;
            jsMsgMetaData_Destroy(meta);
        }
        if (nseq + npend > atomic_load(&c->stream_seq)) atomic_store(&c->stream_seq, nseq + npend);
        if (nseq != last + 1 || !take_foreign_upsert(c, next, &recs, &n, &cap)) {
            *held = next;
            break;
        }
        last = nseq;
        natsMsg_Destroy(next);
    }
    uint8_t sv[8];
    idl_be64_put(sv, last);
    idl_store_stamp stamp = {APPLIED_KEY, strlen(APPLIED_KEY), sv, 8};
    int rc = idl_store_upsert_stamped(c->s, recs, n, NULL, false, &stamp);
    free(recs);
    if (rc) return rc;
    /* Foreign upserts only: no write of this node waits for them. */
    atomic_store(&c->applied, last);
    return IDL_OK;
}

static natsSubscription *subscribe_from(idl_changes *c, uint64_t start, natsStatus *st)
{
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Ordered = true;
    so.Config.DeliverPolicy = start > 1 ? js_DeliverByStartSequence : js_DeliverAll;
    if (start > 1) so.Config.OptStartSeq = start;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    *st = js_SubscribeSync(&sub, idl_natsconn_js(c->conn), IDL_NATS_CHANGES_SUBJECT, NULL, &so,
                           &jerr);
    if (*st != NATS_OK) return NULL;
    natsSubscription_SetPendingLimits(sub, -1, -1);
    return sub;
}

static void publish_purges(idl_changes *c)
{
    uint64_t q[PURGE_QUEUE];
    pthread_mutex_lock(&c->lock);
    size_t n = c->npurges;
    memcpy(q, c->purges, n * sizeof(*q));
    c->npurges = 0;
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < n; i++) {
        idl_buf b = {0};
        msgpack_packer pk;
        idl_buf_packer(&b, &pk);
        pack_head(&pk, "p", c->origin, atomic_fetch_add(&c->ctr, 1));
        msgpack_pack_uint64(&pk, q[i]);
        int y, m, d;
        idl_today(&y, &m, &d);
        /* One purge per person and day in the stream, however many nodes
         * and reads find the child. */
        char id[64];
        snprintf(id, sizeof id, "purge-%016" PRIx64 "-%04d%02d%02d", q[i], y, m, d);
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = id;
        po.MaxWait = PUBLISH_WAIT_MS;
        natsMsg *msg = NULL;
        if (!b.failed &&
            natsMsg_Create(&msg, IDL_NATS_CHANGES_SUBJECT, NULL, b.data, (int)b.len) == NATS_OK) {
            jsPubAck *ack = NULL;
            js_PublishMsg(&ack, idl_natsconn_js(c->conn), msg, &po, NULL);
            jsPubAck_Destroy(ack);
        }
        natsMsg_Destroy(msg);
        idl_buf_free(&b);
    }
}

static void *applier(void *arg)
{
    idl_changes *c = arg;
    pthread_setname_np(pthread_self(), "idl:changes");
    natsSubscription *sub = NULL;
    natsMsg *held = NULL; /* received, not applied yet (it ended a batch) */
    bool ensured = false;
    uint64_t last_progress = mono_ms(), last_info = 0;
    char err[IDL_ERR_MAX];
    while (!atomic_load(&c->stopping)) {
        if (!ensured) {
            if (idl_natsconn_ensure(c->conn, err) == IDL_OK) {
                ensured = true;
            } else {
                sleep_ms(100);
                continue;
            }
        }
        if (!atomic_load(&c->have_target)) {
            uint64_t last = 0;
            if (idl_natsconn_last_seq(c->conn, IDL_NATS_CHANGES_STREAM, &last) != IDL_OK) {
                sleep_ms(100);
                continue;
            }
            atomic_store(&c->target, last);
            atomic_store(&c->stream_seq, last);
            atomic_store(&c->have_target, true);
        }
        if (atomic_load(&c->applied) >= atomic_load(&c->target)) atomic_store(&c->ready, true);
        if (!sub) {
            uint64_t t_sub = mono_ms();
            natsStatus sst = NATS_OK;
            sub = subscribe_from(c, atomic_load(&c->applied) + 1, &sst);
            if (sub)
                fprintf(stderr, "idl_changes: following the change stream after sequence %" PRIu64
                                " (subscribed in %" PRIu64 " ms)\n",
                        atomic_load(&c->applied), mono_ms() - t_sub);
            else
                fprintf(stderr,
                        "idl_changes: cannot follow the change stream after sequence %" PRIu64
                        " (%s after %" PRIu64 " ms)\n",
                        atomic_load(&c->applied), natsStatus_GetText(sst), mono_ms() - t_sub);
            if (!sub) {
                sleep_ms(100);
                continue;
            }
            last_progress = mono_ms();
        }
        publish_purges(c);
        natsMsg *m = held;
        held = NULL;
        natsStatus s = m ? NATS_OK : natsSubscription_NextMsg(&m, sub, 100);
        if (s == NATS_OK) {
            jsMsgMetaData *meta = NULL;
            if (natsMsg_GetMetaData(&meta, m) != NATS_OK) {
                natsMsg_Destroy(m);
                continue;
            }
            uint64_t seq = meta->Sequence.Stream, pending = meta->NumPending;
            jsMsgMetaData_Destroy(meta);
            uint64_t applied = atomic_load(&c->applied);
            if (seq + pending > atomic_load(&c->stream_seq))
                atomic_store(&c->stream_seq, seq + pending);
            if (seq > applied + 1) {
                /* A gap: start again right after what is applied. */
                natsMsg_Destroy(held);
                held = NULL;
                natsSubscription_Destroy(sub);
                sub = NULL;
            } else if (seq == applied + 1) {
                if (apply_run(c, sub, m, seq, &held)) {
                    fprintf(stderr, "idl_changes: cannot apply %" PRIu64 "; retrying\n", seq);
                    natsMsg_Destroy(held);
                    held = NULL;
                    natsSubscription_Destroy(sub);
                    sub = NULL;
                    sleep_ms(500);
                }
                last_progress = mono_ms();
            }
            natsMsg_Destroy(m);
            continue;
        }
        uint64_t now = mono_ms();
        if (s != NATS_TIMEOUT) {
            natsSubscription_Destroy(sub);
            sub = NULL;
            sleep_ms(100);
            continue;
        }
        if (now - last_info >= 500 && idl_natsconn_connected(c->conn)) {
            last_info = now;
            uint64_t last = 0;
            if (idl_natsconn_last_seq(c->conn, IDL_NATS_CHANGES_STREAM, &last) == IDL_OK) {
                atomic_store(&c->stream_seq, last);
                /* The consumer fell silent with messages left (a server
                 * lost, NATS restarted): subscribe again. */
                if (last > atomic_load(&c->applied) && now - last_progress > 1000) {
                    natsSubscription_Destroy(sub);
                    sub = NULL;
                }
            }
        }
    }
    natsMsg_Destroy(held);
    natsSubscription_Destroy(sub);
    return NULL;
}

int idl_changes_open(idl_changes **out, idl_store *s, const char *urls, const char *node,
                     char err[IDL_ERR_MAX])
{
    if (!idl_natsconn_node_valid(node)) {
        snprintf(err, IDL_ERR_MAX, "--node: '%s' is not a node name ([a-z0-9-]{1,32})", node);
        return IDL_INVALID_ARGUMENT;
    }
    idl_changes *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, IDL_ERR_MAX, "out of memory");
        return IDL_INTERNAL;
    }
    c->s = s;
    snprintf(c->node, sizeof c->node, "%s", node);
    randombytes_buf(&c->origin, sizeof c->origin);
    pthread_mutex_init(&c->lock, NULL);
    uint64_t applied;
    int rc = idl_store_meta_u64(s, APPLIED_KEY, &applied);
    if (rc) {
        snprintf(err, IDL_ERR_MAX, "cannot read the applied sequence of the change stream");
        goto fail;
    }
    atomic_store(&c->applied, applied);
    char name[64];
    snprintf(name, sizeof name, "idlookupd-%s", node);
    rc = idl_natsconn_open(&c->conn, urls, name, false, err);
    if (rc) goto fail;
    if (pthread_create(&c->thread, NULL, applier, c) != 0) {
        snprintf(err, IDL_ERR_MAX, "cannot start the change applier thread");
        rc = IDL_INTERNAL;
        goto fail;
    }
    c->thread_started = true;
    *out = c;
    return IDL_OK;
fail:
    idl_changes_close(c);
    return rc;
}

void idl_changes_close(idl_changes *c)
{
    if (!c) return;
    atomic_store(&c->stopping, true);
    if (c->thread_started) pthread_join(c->thread, NULL);
    if (c->kv) kvStore_Destroy(c->kv);
    idl_natsconn_close(c->conn);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

bool idl_changes_ready(idl_changes *c)
{
    return atomic_load(&c->ready);
}

void idl_changes_status_get(idl_changes *c, idl_changes_status *st)
{
    st->applied_seq = atomic_load(&c->applied);
    st->stream_seq = atomic_load(&c->stream_seq);
    if (st->stream_seq < st->applied_seq) st->stream_seq = st->applied_seq;
    st->connected = idl_natsconn_connected(c->conn);
    st->ready = atomic_load(&c->ready);
}

/* Between two tries of a JetStream request that found no leader: false
 * once the node has been disconnected longer than the grace, or the
 * request began PUBLISH_WAIT_MS ago; else it pauses 50 ms and says go on. */
static bool election_wait(idl_changes *c, uint64_t t0)
{
    if (!idl_natsconn_wait_connected(c->conn, RECONNECT_GRACE_MS) ||
        mono_ms() - t0 >= PUBLISH_WAIT_MS)
        return false;
    sleep_ms(50);
    return true;
}

/* Publishes body (ctr already in it) and waits until it is applied here. */
static int publish_and_wait(idl_changes *c, waiter *w, const char *data, size_t len)
{
    if (!idl_natsconn_wait_connected(c->conn, RECONNECT_GRACE_MS)) return IDL_UNAVAILABLE;
    char id[80];
    snprintf(id, sizeof id, "%s-%016" PRIx64 "-%" PRIu64, c->node, c->origin, w->ctr);
    pthread_cond_init(&w->cond, NULL);
    pthread_mutex_lock(&c->lock);
    w->next = c->waiters;
    c->waiters = w;
    pthread_mutex_unlock(&c->lock);
    int rc = IDL_UNAVAILABLE;
    natsMsg *msg = NULL;
    if (natsMsg_Create(&msg, IDL_NATS_CHANGES_SUBJECT, NULL, data, (int)len) != NATS_OK) {
        rc = IDL_INTERNAL;
        goto out;
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = id;
    po.MaxWait = 1000;
    jsPubAck *ack = NULL;
    jsErrCode jerr = 0;
    natsStatus s;
    uint64_t t0 = mono_ms();
    /* While connected, a JetStream that does not answer is electing a
     * leader (a server was lost, CLUSTER.md §7): the write waits for it,
     * resent with the same id, which JetStream drops if an earlier send
     * was stored after all.  Disconnected for longer than the grace, it
     * fails. */
    while ((s = js_PublishMsg(&ack, idl_natsconn_js(c->conn), msg, &po, &jerr)) != NATS_OK) {
        if (!election_wait(c, t0)) break;
    }
    if (s != NATS_OK) goto out;
    jsPubAck_Destroy(ack);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += APPLY_WAIT_MS / 1000;
    pthread_mutex_lock(&c->lock);
    while (!w->done) {
        if (pthread_cond_timedwait(&w->cond, &c->lock, &dl) != 0) break;
    }
    rc = w->done ? w->rc : IDL_UNAVAILABLE;
    pthread_mutex_unlock(&c->lock);
out:
    natsMsg_Destroy(msg);
    pthread_mutex_lock(&c->lock);
    for (waiter **p = &c->waiters; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            break;
        }
    pthread_mutex_unlock(&c->lock);
    pthread_cond_destroy(&w->cond); /* unlinked: the applier cannot reach it now */
    return rc;
}

/* One Upsert is one message: a request is at most 64 KiB (API.md), so its
 * records stay far below NATS's 1 MiB max_payload. */
int idl_changes_upsert(idl_changes *c, const idl_record *recs, size_t n, idl_upsert_result *res)
{
    waiter w = {.ctr = atomic_fetch_add(&c->ctr, 1), .res = res, .n = n};
    char *data = NULL;
    size_t len = 0;
    int rc = idl_changes_encode_upsert(recs, n, c->origin, w.ctr, &data, &len);
    if (rc) return rc;
    rc = publish_and_wait(c, &w, data, len);
    free(data);
    return rc;
}

int idl_changes_suppress(idl_changes *c, const uint64_t *pids, size_t npids, const idl_hkey *keys,
                         size_t nkeys, uint32_t *newly)
{
    waiter w = {.ctr = atomic_fetch_add(&c->ctr, 1)};
    idl_buf b = {0};
    int rc = encode_suppress(pids, npids, keys, nkeys, c->origin, w.ctr, &b);
    if (rc == IDL_OK) rc = publish_and_wait(c, &w, b.data, b.len);
    if (rc == IDL_OK) *newly = w.newly;
    idl_buf_free(&b);
    return rc;
}

void idl_changes_purge_child(idl_changes *c, uint64_t pid)
{
    pthread_mutex_lock(&c->lock);
    bool dup = false;
    for (size_t i = 0; i < c->npurges && !dup; i++)
        dup = c->purges[i] == pid;
    if (!dup && c->npurges < PURGE_QUEUE) c->purges[c->npurges++] = pid;
    pthread_mutex_unlock(&c->lock);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sets one mark, created only if absent.  The value is this call's token,
 * so that a create whose reply was lost (a leader election) and is then
 * found set is known for ours, not someone else's.  While the bucket's
 * stream has no leader, it waits like a change does (PUBLISH_WAIT_MS).
 * Returns 0 (set by us), 1 (set before by someone else) or IDL_UNAVAILABLE. */
static int mark_one(idl_changes *c, kvStore *kv, const char *key, const char *token)
{
    uint64_t t0 = mono_ms();
    for (;;) {
        uint64_t rev = 0;
        if (kvStore_Create(&rev, kv, key, token, (int)strlen(token)) == NATS_OK) return 0;
        kvEntry *e = NULL;
        natsStatus s = kvStore_Get(&e, kv, key);
        if (s == NATS_OK) {
            const char *v = kvEntry_ValueString(e);
            bool ours = v && strcmp(v, token) == 0;
            kvEntry_Destroy(e);
            return ours ? 0 : 1;
        }
        /* Not found: the create failed for another reason than the mark,
         * so both are tried again until the bucket answers. */
        if (!election_wait(c, t0)) return IDL_UNAVAILABLE;
    }
}

int idl_changes_mark_disclosures(idl_changes *c, const uint64_t *given, size_t n, unsigned year,
                                 bool *was_set)
{
    *was_set = false;
    if (!idl_natsconn_wait_connected(c->conn, RECONNECT_GRACE_MS)) return IDL_UNAVAILABLE;
    pthread_mutex_lock(&c->lock);
    if (!c->kv &&
        js_KeyValue(&c->kv, idl_natsconn_js(c->conn), IDL_NATS_DISCLOSURES_BUCKET) != NATS_OK)
        c->kv = NULL;
    kvStore *kv = c->kv;
    pthread_mutex_unlock(&c->lock);
    if (!kv) return IDL_UNAVAILABLE;
    uint64_t *pids = malloc((n ? n : 1) * sizeof(*pids));
    if (!pids) return IDL_INTERNAL;
    if (n) memcpy(pids, given, n * sizeof(*pids));
    /* Sorted, so two requests over overlapping persons take the marks in
     * the same order and at most one of them can win. */
    qsort(pids, n, sizeof(*pids), cmp_u64);
    char token[80];
    snprintf(token, sizeof token, "%s-%016" PRIx64 "-%" PRIu64, c->node, c->origin,
             atomic_fetch_add(&c->ctr, 1));
    int rc = IDL_OK;
    size_t made = 0;
    for (; made < n; made++) {
        if (made && pids[made] == pids[made - 1]) continue;
        char key[48];
        snprintf(key, sizeof key, "p_%016" PRIx64 ".%u", pids[made], year);
        int r = mark_one(c, kv, key, token);
        if (r == 0) continue;
        if (r == 1)
            *was_set = true;
        else
            rc = IDL_UNAVAILABLE;
        break;
    }
    if (*was_set || rc) {
        /* All or none: take back the marks this call made. */
        for (size_t i = 0; i < made; i++) {
            if (i && pids[i] == pids[i - 1]) continue;
            char key[48];
            snprintf(key, sizeof key, "p_%016" PRIx64 ".%u", pids[i], year);
            kvStore_Purge(kv, key, NULL);
        }
    }
    free(pids);
    return rc;
}

/* ---- publisher only ---- */

/* Messages in flight at most.  Each is kept (its bytes) until it and every
 * earlier one are acknowledged, so a lost one can be sent again in order. */
#define PUB_WINDOW 64
/* An acknowledgement not back after this is taken as lost (nats.c would
 * otherwise wait forever: a message whose ack is dropped with a stale
 * connection stays pending, and the ingest stalled and failed). */
#define PUB_ACK_WAIT_MS 5000
#define PUB_ATTEMPTS 6
#define PUB_RECORDS 256
#define PUB_ID_FMT "ingest-%016" PRIx64 "-%" PRIu64 "-%u"

enum { PS_FLIGHT, PS_ACKED, PS_FAILED };

typedef struct {
    char *data;
    size_t len;
    uint64_t ctr;
    unsigned gen; /* send attempt: part of the message id */
    uint64_t sent_ms; /* when this attempt was sent (monotonic) */
    int state;
    natsStatus st;
    jsErrCode code;
    char text[160];
} pub_msg;

struct idl_changes_pub {
    idl_natsconn *conn;
    jsCtx *js; /* with the async-publish acknowledgement handler */
    uint64_t origin;
    int64_t max_payload;
    pthread_mutex_t lock; /* guards win, head, next */
    pthread_cond_t cond;
    pub_msg win[PUB_WINDOW]; /* messages head..next-1 at [ctr % PUB_WINDOW] */
    uint64_t head, next;
    unsigned attempts; /* resends in a row without the head moving */
    uint64_t resent;
};

static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    (void)pa;
    idl_changes_pub *p = closure;
    const char *id = NULL;
    uint64_t origin = 0, ctr = 0;
    unsigned gen = 0;
    if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) != NATS_OK || !id ||
        sscanf(id, PUB_ID_FMT, &origin, &ctr, &gen) != 3) {
        natsMsg_Destroy(msg); /* the handler owns it (a resend uses our copy) */
        return;
    }
    pthread_mutex_lock(&p->lock);
    pub_msg *m = &p->win[ctr % PUB_WINDOW];
    /* A late answer to an earlier attempt counts for nothing. */
    if (ctr >= p->head && ctr < p->next && m->ctr == ctr && m->gen == gen &&
        m->state == PS_FLIGHT) {
        if (pae) {
            m->state = PS_FAILED;
            m->st = pae->Err;
            m->code = pae->ErrCode;
            snprintf(m->text, sizeof m->text, "%s",
                     pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err));
        } else {
            m->state = PS_ACKED;
        }
        pthread_cond_broadcast(&p->cond);
    }
    pthread_mutex_unlock(&p->lock);
    natsMsg_Destroy(msg);
}

int idl_changes_pub_open(idl_changes_pub **out, const char *urls, char err[IDL_ERR_MAX])
{
    idl_changes_pub *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, IDL_ERR_MAX, "out of memory");
        return IDL_INTERNAL;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    randombytes_buf(&p->origin, sizeof p->origin);
    int rc = idl_natsconn_open(&p->conn, urls, "idlookup-ingest", true, err);
    if (rc == IDL_OK) rc = idl_natsconn_ensure(p->conn, err);
    if (rc) goto fail;
    p->max_payload = natsConnection_GetMaxPayload(idl_natsconn_nc(p->conn));
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = PUB_ACK_WAIT_MS;
    /* The window below bounds what is in flight; the library's own limit
     * stays out of the way. */
    jo.PublishAsync.MaxPending = 0;
    jo.PublishAsync.AckHandler = on_pub_ack;
    jo.PublishAsync.AckHandlerClosure = p;
    if (natsConnection_JetStream(&p->js, idl_natsconn_nc(p->conn), &jo) != NATS_OK) {
        snprintf(err, IDL_ERR_MAX, "nats: cannot create a JetStream context");
        rc = IDL_INTERNAL;
        goto fail;
    }
    *out = p;
    return IDL_OK;
fail:
    idl_changes_pub_close(p);
    return rc;
}

/* Sends m (lock not held: the acknowledgement handler takes it). */
static int pub_send(idl_changes_pub *p, pub_msg *m, char err[IDL_ERR_MAX])
{
    char id[96];
    snprintf(id, sizeof id, PUB_ID_FMT, p->origin, m->ctr, m->gen);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = id;
    po.MaxWait = PUB_ACK_WAIT_MS; /* then the handler hears NATS_TIMEOUT */
    natsMsg *msg = NULL;
    m->sent_ms = mono_ms();
    natsStatus s = natsMsg_Create(&msg, IDL_NATS_CHANGES_SUBJECT, NULL, m->data, (int)m->len);
    if (s == NATS_OK) s = js_PublishMsgAsync(p->js, &msg, &po);
    natsMsg_Destroy(msg); /* NULL when the library took it */
    if (s == NATS_OK) return IDL_OK;
    snprintf(err, IDL_ERR_MAX, "nats: message %" PRIu64 " (%zu bytes) could not be sent: %s",
             m->ctr, m->len, natsStatus_GetText(s));
    return IDL_UNAVAILABLE;
}

static bool retryable(const pub_msg *m)
{
    /* JetStream answered with an error (a full stream, a message over its
     * limits): sending again gives the same answer.  No answer at all, or
     * no stream leader yet, is worth another try. */
    return m->code == 0 || m->st == NATS_NO_RESPONDERS;
}

/* With the lock held: frees the acknowledged prefix; when a message failed,
 * waits for the rest of the window to settle and sends again, in order,
 * every message from the first failed one on (those after it that were
 * stored are applied twice, which an upsert allows, so the stream's order
 * stays the file's order).  Waits while the window is full (all of it
 * when drain).  IDL_OK, or the cause in err. */
static int pub_settle(idl_changes_pub *p, bool drain, char err[IDL_ERR_MAX])
{
    for (;;) {
        while (p->head < p->next && p->win[p->head % PUB_WINDOW].state == PS_ACKED) {
            pub_msg *m = &p->win[p->head % PUB_WINDOW];
            free(m->data);
            m->data = NULL;
            p->head++;
            p->attempts = 0;
        }
        bool failed = false, flying = false;
        for (uint64_t c = p->head; c < p->next; c++) {
            int st = p->win[c % PUB_WINDOW].state;
            failed |= st == PS_FAILED;
            flying |= st == PS_FLIGHT;
        }
        if (!failed && !flying) return IDL_OK;
        if (!failed && !drain && p->next - p->head < PUB_WINDOW) return IDL_OK;
        if (failed && !flying) {
            pub_msg *f = NULL;
            for (uint64_t c = p->head; c < p->next && !f; c++)
                if (p->win[c % PUB_WINDOW].state == PS_FAILED) f = &p->win[c % PUB_WINDOW];
            if (!retryable(f)) {
                snprintf(err, IDL_ERR_MAX,
                         "JetStream refused message %" PRIu64 " (%zu bytes): %s (error %d)", f->ctr,
                         f->len, f->text, (int)f->code);
                return IDL_UNAVAILABLE;
            }
            /* "No responders" (a stream whose leader is not elected yet,
             * a cluster that lost its quorum) comes back at once: the
             * attempts are spaced as if it had timed out, or all six were
             * spent in a few milliseconds of an election. */
            uint64_t due = f->sent_ms + PUB_ACK_WAIT_MS, now = mono_ms();
            if (now < due) {
                struct timespec dl;
                clock_gettime(CLOCK_REALTIME, &dl);
                uint64_t ns = (uint64_t)dl.tv_nsec + (due - now) * 1000000ull;
                dl.tv_sec += (time_t)(ns / 1000000000ull);
                dl.tv_nsec = (long)(ns % 1000000000ull);
                pthread_cond_timedwait(&p->cond, &p->lock, &dl);
                continue;
            }
            if (++p->attempts > PUB_ATTEMPTS) {
                snprintf(err, IDL_ERR_MAX,
                         "no acknowledgement from JetStream for message %" PRIu64
                         " after %d attempts %d s apart: %s",
                         f->ctr, PUB_ATTEMPTS, PUB_ACK_WAIT_MS / 1000, f->text);
                return IDL_UNAVAILABLE;
            }
            fprintf(stderr,
                    "idlookup ingest: message %" PRIu64 " not acknowledged (%s); sending "
                    "it and the %" PRIu64 " after it again\n",
                    f->ctr, f->text, p->next - 1 - f->ctr);
            for (uint64_t c = f->ctr; c < p->next; c++) {
                pub_msg *m = &p->win[c % PUB_WINDOW];
                m->gen++;
                m->state = PS_FLIGHT;
                p->resent++;
            }
            for (uint64_t c = f->ctr; c < p->next; c++) {
                pub_msg *m = &p->win[c % PUB_WINDOW];
                pthread_mutex_unlock(&p->lock);
                int rc = pub_send(p, m, err);
                pthread_mutex_lock(&p->lock);
                if (rc) return rc;
            }
            continue;
        }
        /* The library times each message out after PUB_ACK_WAIT_MS; this
         * deadline only guards against an answer that never comes. */
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 2 * PUB_ACK_WAIT_MS / 1000;
        if (pthread_cond_timedwait(&p->cond, &p->lock, &dl) != 0) {
            for (uint64_t c = p->head; c < p->next; c++) {
                pub_msg *m = &p->win[c % PUB_WINDOW];
                if (m->state != PS_FLIGHT) continue;
                m->state = PS_FAILED;
                m->st = NATS_TIMEOUT;
                m->code = 0;
                snprintf(m->text, sizeof m->text, "no answer");
            }
        }
    }
}

static int pub_one(idl_changes_pub *p, char *data, size_t len, char err[IDL_ERR_MAX])
{
    pthread_mutex_lock(&p->lock);
    int rc = pub_settle(p, false, err);
    if (rc) {
        pthread_mutex_unlock(&p->lock);
        free(data);
        return rc;
    }
    pub_msg *m = &p->win[p->next % PUB_WINDOW];
    *m = (pub_msg){.data = data, .len = len, .ctr = p->next, .state = PS_FLIGHT};
    p->next++;
    pthread_mutex_unlock(&p->lock);
    return pub_send(p, m, err);
}

int idl_changes_pub_upsert(idl_changes_pub *p, const idl_record *recs, size_t n,
                           char err[IDL_ERR_MAX])
{
    /* Room for the message's head and a record's framing. */
    size_t limit = p->max_payload > 4096 ? (size_t)p->max_payload - 1024 : 3072;
    size_t i = 0;
    while (i < n) {
        size_t k = n - i < PUB_RECORDS ? n - i : PUB_RECORDS;
        for (;;) {
            char *data = NULL;
            size_t len = 0;
            int rc = idl_changes_encode_upsert(recs + i, k, p->origin, p->next, &data, &len);
            if (rc) {
                snprintf(err, IDL_ERR_MAX, "out of memory");
                return rc;
            }
            if (len <= limit) {
                rc = pub_one(p, data, len, err);
                if (rc) return rc;
                break;
            }
            free(data);
            if (k == 1) {
                snprintf(err, IDL_ERR_MAX,
                         "record %s is %zu bytes packed, more than a NATS message holds "
                         "(max_payload %" PRId64 " bytes)",
                         recs[i].source_id, len, p->max_payload);
                return IDL_INVALID_ARGUMENT;
            }
            k = (k + 1) / 2;
        }
        i += k;
    }
    return IDL_OK;
}

int idl_changes_pub_wait(idl_changes_pub *p, char err[IDL_ERR_MAX])
{
    pthread_mutex_lock(&p->lock);
    int rc = pub_settle(p, true, err);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

void idl_changes_pub_close(idl_changes_pub *p)
{
    if (!p) return;
    jsCtx_Destroy(p->js);
    idl_natsconn_close(p->conn);
    for (int i = 0; i < PUB_WINDOW; i++)
        free(p->win[i].data);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p);
}
