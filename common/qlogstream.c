/* The query-log stream (see qlogstream.h). */
#include "qlogstream.h"
#include "natsconn.h"
#include "status.h"
#include "wire.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CURSOR_KEY "c:qlog_seq"
#define OUTBOX_LEN (sizeof IDL_QLOG_OUTBOX_PREFIX - 1)
#define PUBLISH_ROUND 16 /* messages per round (each up to 2,000 entries) */

struct idl_qlogstream {
    idl_store *s;
    idl_natsconn *conn;
    char node[IDL_NATS_NODE_MAX];
    char subject[64];
    uint64_t node_tag; /* mixed into remote logp keys: two nodes' entries never collide */
    uint64_t cursor;
    /* The outbox number the next batch starts from at the earliest: the
     * scan for the oldest entry seeks here instead of walking over the
     * deletes of every batch already sent (worker thread only). */
    uint64_t outbox_from;
    atomic_bool stopping;
    pthread_t thread;
    bool thread_started;
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

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

uint64_t idl_qlogstream_outbox_count(idl_store *s)
{
    const char *lo = IDL_QLOG_OUTBOX_PREFIX, hi[] = "qo;";
    idl_store_iter *it;
    uint64_t n = 0;
    if (idl_store_iter_open(s, IDL_CF_META, lo, OUTBOX_LEN, hi, 3, &it)) return 0;
    for (; idl_store_iter_valid(it); idl_store_iter_next(it))
        n++;
    idl_store_iter_close(it);
    return n;
}

static void outbox_key(uint8_t k[OUTBOX_LEN + 8], uint64_t n)
{
    memcpy(k, IDL_QLOG_OUTBOX_PREFIX, OUTBOX_LEN);
    idl_be64_put(k + OUTBOX_LEN, n);
}

/* Publishes up to PUBLISH_ROUND outbox messages, oldest first, each under
 * the id "<node>-<number>" (a message never changes once the log wrote it,
 * so a resend keeps its id and JetStream drops it), and deletes those
 * acknowledged.  Returns how many were published. */
static size_t publish_round(idl_qlogstream *q)
{
    uint8_t from[OUTBOX_LEN + 8];
    outbox_key(from, q->outbox_from);
    idl_store_iter *it;
    if (idl_store_iter_open(q->s, IDL_CF_META, from, sizeof from, "qo;", 3, &it)) return 0;
    idl_store_batch *b = idl_store_batch_new(q->s);
    size_t n = 0;
    uint64_t start = q->outbox_from;
    for (; b && n < PUBLISH_ROUND && idl_store_iter_valid(it); idl_store_iter_next(it)) {
        size_t kl, vl;
        const char *k = idl_store_iter_key(it, &kl), *v = idl_store_iter_value(it, &vl);
        if (kl != OUTBOX_LEN + 8) continue;
        uint64_t num = idl_be64_get((const uint8_t *)k + OUTBOX_LEN);
        char id[IDL_NATS_NODE_MAX + 24];
        snprintf(id, sizeof id, "%s-%" PRIu64, q->node, num);
        natsMsg *msg = NULL;
        jsPubAck *ack = NULL;
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = id;
        po.MaxWait = 5000;
        bool ok = natsMsg_Create(&msg, q->subject, NULL, v, (int)vl) == NATS_OK &&
                  js_PublishMsg(&ack, idl_natsconn_js(q->conn), msg, &po, NULL) == NATS_OK;
        jsPubAck_Destroy(ack);
        natsMsg_Destroy(msg);
        if (!ok) break;
        idl_store_batch_delete(b, IDL_CF_META, k, kl);
        q->outbox_from = num + 1;
        n++;
    }
    idl_store_iter_close(it);
    /* Deleted only once acknowledged; if the delete fails they are sent
     * again (same ids) from the start. */
    if (n && idl_store_batch_commit(q->s, b, false) != IDL_OK) {
        q->outbox_from = start;
        n = 0;
    }
    idl_store_batch_free(b);
    return n;
}

/* Calls fn for each entry of a stream message (an array of entries, each
 * its 16-byte log key then its stored value). */
static int each_entry(const char *data, int len, idl_qlog_entry *e,
                      int (*fn)(void *ctx, const idl_qlog_entry *e), void *ctx)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    int rc = 0;
    if (msgpack_unpack_next(&up, data, (size_t)len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        up.data.type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < up.data.via.array.size && rc == 0; i++) {
            const msgpack_object *o = &up.data.via.array.ptr[i];
            if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size < 16) continue;
            if (idl_qlog_decode(o->via.bin.ptr, 16, o->via.bin.ptr + 16, o->via.bin.size - 16, e) ==
                IDL_OK)
                rc = fn(ctx, e);
        }
    }
    msgpack_unpacked_destroy(&up);
    return rc;
}

static natsSubscription *subscribe_from(idl_qlogstream *q, uint64_t start)
{
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Ordered = true;
    so.Config.DeliverPolicy = start > 1 ? js_DeliverByStartSequence : js_DeliverAll;
    if (start > 1) so.Config.OptStartSeq = start;
    natsSubscription *sub = NULL;
    if (js_SubscribeSync(&sub, idl_natsconn_js(q->conn), IDL_NATS_QLOG_PREFIX "*", NULL, &so,
                         NULL) != NATS_OK)
        return NULL;
    natsSubscription_SetPendingLimits(sub, -1, -1);
    return sub;
}

typedef struct {
    idl_store_batch *b;
    uint64_t tag;
} remote_ctx;

static int file_one(void *ctx, const idl_qlog_entry *e)
{
    remote_ctx *r = ctx;
    idl_qlog_file_remote(r->b, e, r->tag);
    return 0;
}

/* Files a remote node's Search entries' persons into the batch (logp). */
static void file_remote(idl_qlogstream *q, idl_store_batch *b, const char *subj, const char *data,
                        int len, idl_qlog_entry *e)
{
    const char *node = subj + strlen(IDL_NATS_QLOG_PREFIX);
    if (strcmp(node, q->node) == 0) return; /* our own are in logp already */
    remote_ctx r = {b, fnv(node) & 0xffffffff00000000ull};
    each_entry(data, len, e, file_one, &r);
}

static void *worker(void *arg)
{
    idl_qlogstream *q = arg;
    pthread_setname_np(pthread_self(), "idl:qlogstream");
    natsSubscription *sub = NULL;
    bool ensured = false;
    uint64_t last_pub = 0, last_progress = mono_ms(), last_info = 0;
    idl_qlog_entry *e = malloc(sizeof(*e));
    char err[IDL_ERR_MAX];
    while (e && !atomic_load(&q->stopping)) {
        if (!idl_natsconn_connected(q->conn)) {
            sleep_ms(100);
            continue;
        }
        if (!ensured) {
            if (idl_natsconn_ensure(q->conn, err) != IDL_OK) {
                sleep_ms(100);
                continue;
            }
            ensured = true;
        }
        uint64_t now = mono_ms();
        if (now - last_pub >= 50) {
            /* Drain the outbox while there is a backlog. */
            while (publish_round(q) > 0 && !atomic_load(&q->stopping))
                ;
            last_pub = mono_ms();
        }
        if (!sub) {
            sub = subscribe_from(q, q->cursor + 1);
            if (!sub) {
                sleep_ms(100);
                continue;
            }
            last_progress = mono_ms();
        }
        idl_store_batch *b = idl_store_batch_new(q->s);
        if (!b) break;
        uint64_t cur = q->cursor;
        bool reset = false;
        for (int i = 0; i < 512; i++) {
            natsMsg *m = NULL;
            natsStatus s = natsSubscription_NextMsg(&m, sub, i == 0 ? 50 : 1);
            if (s != NATS_OK) {
                if (s != NATS_TIMEOUT) reset = true;
                break;
            }
            jsMsgMetaData *meta = NULL;
            if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
                uint64_t seq = meta->Sequence.Stream;
                jsMsgMetaData_Destroy(meta);
                if (seq > cur) {
                    file_remote(q, b, natsMsg_GetSubject(m), natsMsg_GetData(m),
                                natsMsg_GetDataLength(m), e);
                    cur = seq;
                }
            }
            natsMsg_Destroy(m);
        }
        if (cur > q->cursor) {
            uint8_t v[8];
            idl_be64_put(v, cur);
            idl_store_batch_put(b, IDL_CF_META, CURSOR_KEY, strlen(CURSOR_KEY), v, 8);
            if (idl_store_batch_commit(q->s, b, false) == IDL_OK) {
                q->cursor = cur;
                last_progress = mono_ms();
            } else {
                reset = true; /* read them again */
            }
        }
        idl_store_batch_free(b);
        now = mono_ms();
        if (!reset && now - last_info >= 1000) {
            last_info = now;
            uint64_t last = 0;
            if (idl_natsconn_last_seq(q->conn, IDL_NATS_QLOG_STREAM, &last) == IDL_OK &&
                last > q->cursor && now - last_progress > 1000)
                reset = true; /* the consumer fell silent with messages left */
        }
        if (reset) {
            natsSubscription_Destroy(sub);
            sub = NULL;
        }
    }
    natsSubscription_Destroy(sub);
    free(e);
    return NULL;
}

int idl_qlogstream_open(idl_qlogstream **out, idl_store *s, const char *urls, const char *node,
                        char err[IDL_ERR_MAX])
{
    if (!idl_natsconn_node_valid(node)) {
        snprintf(err, IDL_ERR_MAX, "--node: '%s' is not a node name ([a-z0-9-]{1,32})", node);
        return IDL_INVALID_ARGUMENT;
    }
    idl_qlogstream *q = calloc(1, sizeof(*q));
    if (!q) {
        snprintf(err, IDL_ERR_MAX, "out of memory");
        return IDL_INTERNAL;
    }
    q->s = s;
    snprintf(q->node, sizeof q->node, "%s", node);
    snprintf(q->subject, sizeof q->subject, "%s%s", IDL_NATS_QLOG_PREFIX, node);
    int rc = idl_store_meta_u64(s, CURSOR_KEY, &q->cursor);
    if (rc) {
        snprintf(err, IDL_ERR_MAX, "cannot read the query-log stream's cursor");
        goto fail;
    }
    char name[64];
    snprintf(name, sizeof name, "idlookupd-%s-qlog", node);
    rc = idl_natsconn_open(&q->conn, urls, name, false, err);
    if (rc) goto fail;
    if (pthread_create(&q->thread, NULL, worker, q) != 0) {
        snprintf(err, IDL_ERR_MAX, "cannot start the query-log stream thread");
        rc = IDL_INTERNAL;
        goto fail;
    }
    q->thread_started = true;
    *out = q;
    return IDL_OK;
fail:
    idl_qlogstream_close(q);
    return rc;
}

void idl_qlogstream_close(idl_qlogstream *q)
{
    if (!q) return;
    atomic_store(&q->stopping, true);
    if (q->thread_started) pthread_join(q->thread, NULL);
    idl_natsconn_close(q->conn);
    free(q);
}

typedef struct {
    idl_qlogstream_fn fn;
    void *ctx;
    const char *node;
} read_ctx;

static int read_one(void *ctx, const idl_qlog_entry *e)
{
    read_ctx *r = ctx;
    return r->fn(r->ctx, r->node, e);
}

int idl_qlogstream_read(const char *urls, idl_qlogstream_fn fn, void *ctx, char err[IDL_ERR_MAX])
{
    idl_natsconn *conn = NULL;
    natsSubscription *sub = NULL;
    idl_qlog_entry *e = malloc(sizeof(*e));
    int rc = idl_natsconn_open(&conn, urls, "idlookup-analytics", true, err);
    if (rc) goto out;
    if (!e) {
        rc = IDL_INTERNAL;
        goto out;
    }
    uint64_t last = 0;
    rc = idl_natsconn_last_seq(conn, IDL_NATS_QLOG_STREAM, &last);
    if (rc) {
        snprintf(err, IDL_ERR_MAX, "nats: stream %s cannot be read", IDL_NATS_QLOG_STREAM);
        goto out;
    }
    if (last == 0) goto out;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverAll;
    if (js_SubscribeSync(&sub, idl_natsconn_js(conn), IDL_NATS_QLOG_PREFIX "*", NULL, &so, NULL) !=
        NATS_OK) {
        snprintf(err, IDL_ERR_MAX, "nats: cannot subscribe to %s", IDL_NATS_QLOG_STREAM);
        rc = IDL_UNAVAILABLE;
        goto out;
    }
    natsSubscription_SetPendingLimits(sub, -1, -1);
    for (uint64_t seq = 0; seq < last;) {
        natsMsg *m = NULL;
        natsStatus s = natsSubscription_NextMsg(&m, sub, 10000);
        if (s != NATS_OK) {
            snprintf(err, IDL_ERR_MAX, "nats: reading %s: %s", IDL_NATS_QLOG_STREAM,
                     natsStatus_GetText(s));
            rc = IDL_UNAVAILABLE;
            goto out;
        }
        jsMsgMetaData *meta = NULL;
        if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
            seq = meta->Sequence.Stream;
            jsMsgMetaData_Destroy(meta);
        }
        read_ctx rc_ctx = {fn, ctx, natsMsg_GetSubject(m) + strlen(IDL_NATS_QLOG_PREFIX)};
        rc = each_entry(natsMsg_GetData(m), natsMsg_GetDataLength(m), e, read_one, &rc_ctx);
        natsMsg_Destroy(m);
        if (rc) goto out;
    }
out:
    natsSubscription_Destroy(sub);
    idl_natsconn_close(conn);
    free(e);
    return rc;
}
