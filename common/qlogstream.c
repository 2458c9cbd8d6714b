/* The query-log stream (see qlogstream.h). */
#include "qlogstream.h"
#include "natsconn.h"
#include "status.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CURSOR_KEY "c:qlog_seq"
#define OUTBOX_LEN (sizeof IDL_QLOG_OUTBOX_PREFIX - 1)
#define PUBLISH_ROUND 1000

struct idl_qlogstream {
    idl_store *s;
    idl_natsconn *conn;
    jsCtx *js; /* async publishing, with the error handler below */
    char node[IDL_NATS_NODE_MAX];
    char subject[64];
    uint64_t node_tag; /* mixed into remote logp keys: two nodes' entries never collide */
    uint64_t cursor;
    _Atomic uint64_t pub_errors;
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

static void on_pub_error(jsCtx *js, jsPubAckErr *pae, void *closure)
{
    idl_qlogstream *q = closure;
    atomic_fetch_add(&q->pub_errors, 1);
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

/* Publishes up to PUBLISH_ROUND outbox entries and deletes them once all
 * are acknowledged.  Returns how many were published. */
static size_t publish_round(idl_qlogstream *q)
{
    const char *lo = IDL_QLOG_OUTBOX_PREFIX, hi[] = "qo;";
    idl_store_iter *it;
    if (idl_store_iter_open(q->s, IDL_CF_META, lo, OUTBOX_LEN, hi, 3, &it)) return 0;
    idl_store_batch *b = idl_store_batch_new(q->s);
    size_t n = 0;
    bool ok = b != NULL;
    atomic_store(&q->pub_errors, 0);
    char buf[8192];
    for (; ok && n < PUBLISH_ROUND && idl_store_iter_valid(it); idl_store_iter_next(it)) {
        size_t kl, vl;
        const char *k = idl_store_iter_key(it, &kl), *v = idl_store_iter_value(it, &vl);
        if (kl != OUTBOX_LEN + 16 || 16 + vl > sizeof buf) {
            idl_store_batch_delete(b, IDL_CF_META, k, kl); /* not an entry: drop it */
            continue;
        }
        memcpy(buf, k + OUTBOX_LEN, 16);
        memcpy(buf + 16, v, vl);
        char id[IDL_NATS_NODE_MAX + 40];
        snprintf(id, sizeof id, "%s-%016" PRIx64 "%016" PRIx64, q->node,
                 idl_be64_get((const uint8_t *)k + OUTBOX_LEN),
                 idl_be64_get((const uint8_t *)k + OUTBOX_LEN + 8));
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = id;
        natsMsg *msg = NULL;
        if (natsMsg_Create(&msg, q->subject, NULL, buf, (int)(16 + vl)) != NATS_OK ||
            js_PublishMsgAsync(q->js, &msg, &po) != NATS_OK)
            ok = false;
        natsMsg_Destroy(msg);
        idl_store_batch_delete(b, IDL_CF_META, k, kl);
        n++;
    }
    idl_store_iter_close(it);
    if (n) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = 5000;
        if (js_PublishAsyncComplete(q->js, &po) != NATS_OK) ok = false;
        if (atomic_load(&q->pub_errors)) ok = false;
        /* Only a round acknowledged whole leaves the outbox; a partial one
         * is sent again, and the message ids drop what already arrived. */
        if (ok && idl_store_batch_commit(q->s, b, false) != IDL_OK) ok = false;
    }
    idl_store_batch_free(b);
    return ok ? n : 0;
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

/* Files a remote Search entry's persons into the batch (logp). */
static void file_remote(idl_qlogstream *q, idl_store_batch *b, const char *subj, const char *data,
                        int len, idl_qlog_entry *e)
{
    const char *node = subj + strlen(IDL_NATS_QLOG_PREFIX);
    if (strcmp(node, q->node) == 0 || len < 16) return; /* our own are in logp already */
    if (idl_qlog_decode(data, 16, data + 16, (size_t)len - 16, e) != IDL_OK) return;
    if (strcmp(e->method, IDL_QLOG_SEARCH_METHOD) != 0 || e->code != 0) return;
    uint64_t tag = fnv(node) & 0xffffffff00000000ull;
    for (uint32_t i = 0; i < e->n_pids; i++) {
        uint8_t k[24];
        idl_be64_put(k, e->pids[i]);
        idl_be64_put(k + 8, e->time_us);
        idl_be64_put(k + 16, e->seq ^ tag);
        idl_store_batch_put(b, IDL_CF_LOGP, k, 24, e->customer, strlen(e->customer));
    }
}

static void *worker(void *arg)
{
    idl_qlogstream *q = arg;
    pthread_setname_np(pthread_self(), "idl:qlogstream");
    natsSubscription *sub = NULL;
    bool ensured = false;
    uint64_t last_pub = 0, last_progress = mono_ms(), last_info = 0;
    idl_qlog_entry *e = malloc(sizeof(*e));
    char err[256];
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
            while (publish_round(q) == PUBLISH_ROUND && !atomic_load(&q->stopping))
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
                        char err[256])
{
    if (!idl_natsconn_node_valid(node)) {
        snprintf(err, 256, "--node: '%s' is not a node name ([a-z0-9-]{1,32})", node);
        return IDL_INVALID_ARGUMENT;
    }
    idl_qlogstream *q = calloc(1, sizeof(*q));
    if (!q) {
        snprintf(err, 256, "out of memory");
        return IDL_INTERNAL;
    }
    q->s = s;
    snprintf(q->node, sizeof q->node, "%s", node);
    snprintf(q->subject, sizeof q->subject, "%s%s", IDL_NATS_QLOG_PREFIX, node);
    char *v = NULL;
    size_t vl = 0;
    if (idl_store_raw_get(s, IDL_CF_META, CURSOR_KEY, strlen(CURSOR_KEY), &v, &vl) == IDL_OK) {
        if (vl == 8) q->cursor = idl_be64_get((const uint8_t *)v);
        free(v);
    }
    char name[64];
    snprintf(name, sizeof name, "idlookupd-%s-qlog", node);
    int rc = idl_natsconn_open(&q->conn, urls, name, false, err);
    if (rc) goto fail;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 5000;
    jo.PublishAsync.MaxPending = 4000;
    jo.PublishAsync.ErrHandler = on_pub_error;
    jo.PublishAsync.ErrHandlerClosure = q;
    if (natsConnection_JetStream(&q->js, idl_natsconn_nc(q->conn), &jo) != NATS_OK) {
        snprintf(err, 256, "nats: cannot create a JetStream context");
        rc = IDL_INTERNAL;
        goto fail;
    }
    if (pthread_create(&q->thread, NULL, worker, q) != 0) {
        snprintf(err, 256, "cannot start the query-log stream thread");
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
    jsCtx_Destroy(q->js);
    idl_natsconn_close(q->conn);
    free(q);
}

int idl_qlogstream_read(const char *urls, idl_qlogstream_fn fn, void *ctx, char err[256])
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
        snprintf(err, 256, "nats: stream %s cannot be read", IDL_NATS_QLOG_STREAM);
        goto out;
    }
    if (last == 0) goto out;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverAll;
    if (js_SubscribeSync(&sub, idl_natsconn_js(conn), IDL_NATS_QLOG_PREFIX "*", NULL, &so, NULL) !=
        NATS_OK) {
        snprintf(err, 256, "nats: cannot subscribe to %s", IDL_NATS_QLOG_STREAM);
        rc = IDL_UNAVAILABLE;
        goto out;
    }
    natsSubscription_SetPendingLimits(sub, -1, -1);
    for (uint64_t seq = 0; seq < last;) {
        natsMsg *m = NULL;
        natsStatus s = natsSubscription_NextMsg(&m, sub, 10000);
        if (s != NATS_OK) {
            snprintf(err, 256, "nats: reading %s: %s", IDL_NATS_QLOG_STREAM, natsStatus_GetText(s));
            rc = IDL_UNAVAILABLE;
            goto out;
        }
        jsMsgMetaData *meta = NULL;
        if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
            seq = meta->Sequence.Stream;
            jsMsgMetaData_Destroy(meta);
        }
        const char *data = natsMsg_GetData(m);
        int len = natsMsg_GetDataLength(m);
        const char *node = natsMsg_GetSubject(m) + strlen(IDL_NATS_QLOG_PREFIX);
        if (len >= 16 && idl_qlog_decode(data, 16, data + 16, (size_t)len - 16, e) == IDL_OK)
            rc = fn(ctx, node, e);
        natsMsg_Destroy(m);
        if (rc) goto out;
    }
out:
    natsSubscription_Destroy(sub);
    idl_natsconn_close(conn);
    free(e);
    return rc;
}
