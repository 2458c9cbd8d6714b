/* The query log (see qlog.h). */
#include "qlog.h"
#include "methods.h"
#include "status.h"
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHARDS 8
#define CTR_LOGGED "c:queries_logged"

typedef struct {
    pthread_mutex_t lock;
    idl_buf buf; /* packed entries: [time_us, seq, ...] arrays back to back */
    uint32_t count;
} shard;

struct idl_qlog {
    idl_store *s;
    unsigned char secret[crypto_shorthash_KEYBYTES];
    unsigned flush_ms;
    unsigned retention_days;
    shard shards[SHARDS];
    _Atomic uint64_t seq;
    _Atomic uint64_t pending;
    _Atomic uint64_t logged;
    _Atomic unsigned shard_rr;
    _Atomic bool dropping; /* entries were dropped since the last good flush */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock; /* guards the fields below */
    pthread_cond_t wake, done;
    uint64_t requested, completed; /* flush generations */
    bool stopping;
    int last_rc;
    atomic_bool outbox;   /* cluster mode: entries also go to the outbox */
    uint64_t outbox_next; /* the next outbox number (flusher thread only) */
};

static uint64_t realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int load_secret(const char *path, unsigned char *key, char err[IDL_ERR_MAX])
{
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        char hex[2 * crypto_shorthash_KEYBYTES + 2];
        ssize_t n = read(fd, hex, sizeof hex);
        close(fd);
        size_t bin_len = 0;
        if (n < 2 * crypto_shorthash_KEYBYTES ||
            sodium_hex2bin(key, crypto_shorthash_KEYBYTES, hex, 2 * crypto_shorthash_KEYBYTES, NULL,
                           &bin_len, NULL) != 0 ||
            bin_len != crypto_shorthash_KEYBYTES) {
            snprintf(err, IDL_ERR_MAX, "%s: not a fingerprint key (32 hex digits expected)", path);
            return IDL_INVALID_ARGUMENT;
        }
        return IDL_OK;
    }
    if (errno != ENOENT) {
        snprintf(err, IDL_ERR_MAX, "%s: %s", path, strerror(errno));
        return IDL_INTERNAL;
    }
    crypto_shorthash_keygen(key);
    char hex[2 * crypto_shorthash_KEYBYTES + 2];
    sodium_bin2hex(hex, sizeof hex - 1, key, crypto_shorthash_KEYBYTES);
    strcat(hex, "\n");
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || write(fd, hex, strlen(hex)) != (ssize_t)strlen(hex) || fsync(fd) != 0) {
        snprintf(err, IDL_ERR_MAX, "%s: cannot write the fingerprint key: %s", path,
                 strerror(errno));
        if (fd >= 0) close(fd);
        return IDL_INTERNAL;
    }
    close(fd);
    return IDL_OK;
}

/* ---- entry encoding ----
 * value: [customer, key_id, method, code, latency_us, n_persons, [pids], [fps]] */

static void pack_entry_value(msgpack_packer *pk, const idl_qlog_entry *e)
{
    msgpack_pack_array(pk, 8);
    idl_wire_pack_cstr(pk, e->customer);
    idl_wire_pack_cstr(pk, e->key_id);
    idl_wire_pack_cstr(pk, e->method);
    msgpack_pack_int(pk, e->code);
    msgpack_pack_uint32(pk, e->latency_us);
    msgpack_pack_uint32(pk, e->n_persons);
    msgpack_pack_array(pk, e->n_pids);
    for (uint32_t i = 0; i < e->n_pids; i++)
        msgpack_pack_uint64(pk, e->pids[i]);
    msgpack_pack_array(pk, e->n_fps);
    for (uint32_t i = 0; i < e->n_fps; i++)
        msgpack_pack_uint64(pk, e->fps[i]);
}

static void copy_str(const msgpack_object *o, char *out, size_t outsz)
{
    out[0] = 0;
    if (o->type == MSGPACK_OBJECT_STR) {
        size_t n = o->via.str.size < outsz - 1 ? o->via.str.size : outsz - 1;
        if (n) memcpy(out, o->via.str.ptr, n);
        out[n] = 0;
    }
}

int idl_qlog_decode(const char *k, size_t kl, const char *v, size_t vl, idl_qlog_entry *e)
{
    if (kl != 16) return IDL_DATA_LOSS;
    e->time_us = idl_be64_get((const uint8_t *)k);
    e->seq = idl_be64_get((const uint8_t *)k + 8);
    char msg[IDL_ERR_MAX];
    if (idl_wire_check_limits(v, vl, (size_t)1 << 20, vl, msg) != IDL_OK)
        return IDL_DATA_LOSS; /* declared lengths are checked before msgpack-c allocates */
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    int rc = IDL_DATA_LOSS;
    if (msgpack_unpack_next(&up, v, vl, NULL) != MSGPACK_UNPACK_SUCCESS) goto out;
    const msgpack_object *o = &up.data;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 8) goto out;
    const msgpack_object *a = o->via.array.ptr;
    copy_str(&a[0], e->customer, sizeof e->customer);
    copy_str(&a[1], e->key_id, sizeof e->key_id);
    copy_str(&a[2], e->method, sizeof e->method);
    e->code = a[3].type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int)a[3].via.u64 : -1;
    e->latency_us = (uint32_t)a[4].via.u64;
    e->n_persons = (uint32_t)a[5].via.u64;
    if (a[6].type != MSGPACK_OBJECT_ARRAY || a[7].type != MSGPACK_OBJECT_ARRAY) goto out;
    e->n_pids = a[6].via.array.size < IDL_QLOG_MAX_PIDS ? a[6].via.array.size : IDL_QLOG_MAX_PIDS;
    for (uint32_t i = 0; i < e->n_pids; i++)
        e->pids[i] = a[6].via.array.ptr[i].via.u64;
    e->n_fps = a[7].via.array.size < IDL_QLOG_MAX_FPS ? a[7].via.array.size : IDL_QLOG_MAX_FPS;
    for (uint32_t i = 0; i < e->n_fps; i++)
        e->fps[i] = a[7].via.array.ptr[i].via.u64;
    rc = IDL_OK;
out:
    msgpack_unpacked_destroy(&up);
    return rc;
}

/* ---- appending ---- */

void idl_qlog_next_id(idl_qlog *q, uint64_t *time_us, uint64_t *seq)
{
    *time_us = realtime_us();
    *seq = atomic_fetch_add(&q->seq, 1);
}

void idl_qlog_request_id(uint64_t time_us, uint64_t seq, char out[32])
{
    /* "%016llx-%08llx" by hand: snprintf was a visible share of a Search. */
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, time_us >>= 4)
        out[i] = hex[time_us & 15];
    out[16] = '-';
    for (int i = 24; i >= 17; i--, seq >>= 4)
        out[i] = hex[seq & 15];
    out[25] = 0;
}

uint64_t idl_qlog_fingerprint(const idl_qlog *q, const char *kind, const char *value)
{
    unsigned char h[crypto_shorthash_BYTES];
    char buf[512];
    int n = snprintf(buf, sizeof buf, "%s:%s", kind, value);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
    crypto_shorthash(h, (const unsigned char *)buf, (unsigned long long)n, q->secret);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | h[i];
    return v;
}

void idl_qlog_append(idl_qlog *q, const idl_qlog_entry *e)
{
    /* Entries are packed before taking the lock, so the critical section is
     * a memcpy. */
    char tmp[4096];
    idl_buf scratch = {.data = tmp, .cap = sizeof tmp, .fixed = true};
    msgpack_packer pk;
    idl_buf_packer(&scratch, &pk);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint64(&pk, e->time_us);
    msgpack_pack_uint64(&pk, e->seq);
    pack_entry_value(&pk, e);
    if (scratch.failed) return; /* cannot happen: an entry is bounded well under 4 KiB */
    unsigned i = atomic_fetch_add(&q->shard_rr, 1) % SHARDS;
    shard *sh = &q->shards[i];
    pthread_mutex_lock(&sh->lock);
    idl_buf_write(&sh->buf, scratch.data, scratch.len);
    sh->count++;
    pthread_mutex_unlock(&sh->lock);
    atomic_fetch_add(&q->pending, 1);
}

/* Cluster mode's outbox: a flush's entries gathered into messages for the
 * query-log stream, each one META record committed with the log itself. */
typedef struct {
    idl_store_batch *b;
    idl_buf body; /* the current message's entries, without its array header */
    uint32_t n;
    uint64_t *next; /* the next outbox number */
} outbox_acc;

static void outbox_emit(outbox_acc *o)
{
    if (!o->n) return;
    idl_buf m = {0};
    msgpack_packer pk;
    idl_buf_packer(&m, &pk);
    msgpack_pack_array(&pk, o->n);
    idl_buf_write(&m, o->body.data, o->body.len);
    uint8_t k[sizeof IDL_QLOG_OUTBOX_PREFIX - 1 + 8];
    memcpy(k, IDL_QLOG_OUTBOX_PREFIX, sizeof IDL_QLOG_OUTBOX_PREFIX - 1);
    idl_be64_put(k + sizeof IDL_QLOG_OUTBOX_PREFIX - 1, (*o->next)++);
    if (!m.failed && !o->body.failed)
        idl_store_batch_put(o->b, IDL_CF_META, k, sizeof k, m.data, m.len);
    idl_buf_free(&m);
    idl_buf_reset(&o->body);
    o->n = 0;
}

static void outbox_add(outbox_acc *o, const uint8_t key[16], const char *v, size_t vl)
{
    if (o->n >= IDL_QLOG_OUTBOX_ENTRIES || o->body.len + 16 + vl + 8 > IDL_QLOG_OUTBOX_BYTES)
        outbox_emit(o);
    msgpack_packer pk;
    idl_buf_packer(&o->body, &pk);
    msgpack_pack_bin(&pk, 16 + vl);
    msgpack_pack_bin_body(&pk, key, 16);
    msgpack_pack_bin_body(&pk, v, vl);
    o->n++;
}

/* Writes one packed shard buffer to the batch. */
static uint64_t batch_entries(idl_store_batch *b, const char *data, size_t len, outbox_acc *outbox)
{
    uint64_t n = 0;
    size_t off = 0;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    char tmp[4096];
    while (off < len && msgpack_unpack_next(&up, data, len, &off) == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *o = &up.data;
        if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 3) continue;
        uint8_t key[16];
        idl_be64_put(key, o->via.array.ptr[0].via.u64);
        idl_be64_put(key + 8, o->via.array.ptr[1].via.u64);
        const msgpack_object *val = &o->via.array.ptr[2];
        idl_buf vb = {.data = tmp, .cap = sizeof tmp, .fixed = true};
        msgpack_packer pk;
        idl_buf_packer(&vb, &pk);
        msgpack_pack_object(&pk, *val);
        if (vb.failed) continue;
        idl_store_batch_put(b, IDL_CF_LOG, key, 16, vb.data, vb.len);
        /* The same entry, for qlogstream.h to publish, committed with the
         * log itself: it cannot be logged and never published. */
        if (outbox) outbox_add(outbox, key, vb.data, vb.len);
        n++;
        /* Disclosures need "who received this person": only Search returns
         * persons, and each returned id gets a (pid, time, seq) -> customer
         * record in its own column family so the lookup is a prefix scan. */
        const msgpack_object *a = val->via.array.ptr;
        if (val->via.array.size == 8 && a[2].type == MSGPACK_OBJECT_STR &&
            idl_method_logged(a[2].via.str.ptr, a[2].via.str.size) && a[3].via.u64 == 0 &&
            a[6].type == MSGPACK_OBJECT_ARRAY && a[0].type == MSGPACK_OBJECT_STR) {
            for (uint32_t i = 0; i < a[6].via.array.size; i++) {
                uint8_t pk24[24];
                idl_be64_put(pk24, a[6].via.array.ptr[i].via.u64);
                memcpy(pk24 + 8, key, 16);
                idl_store_batch_put(b, IDL_CF_LOGP, pk24, 24, a[0].via.str.ptr, a[0].via.str.size);
            }
        }
    }
    msgpack_unpacked_destroy(&up);
    return n;
}

/* Entries kept in memory while the store refuses writes (a full disk); past
 * this many bytes per shard, the oldest unwritten ones are dropped. */
#define HELD_MAX ((size_t)64 << 20)

/* Puts entries a failed commit took back into their shard, ahead of what
 * arrived meanwhile (order does not matter: keys carry time and sequence). */
static void give_back(idl_qlog *q, shard *sh, idl_buf *taken, uint32_t count)
{
    pthread_mutex_lock(&sh->lock);
    if (taken->len + sh->buf.len > HELD_MAX) {
        /* Keep the newest: the buffer's own entries. */
        pthread_mutex_unlock(&sh->lock);
        atomic_fetch_sub(&q->pending, count);
        if (!atomic_exchange(&q->dropping, true))
            fprintf(stderr, "idlookupd: the query log cannot be written and its buffer is "
                            "full: entries are being lost\n");
        return;
    }
    if (sh->buf.len) idl_buf_write(taken, sh->buf.data, sh->buf.len);
    idl_buf_free(&sh->buf);
    sh->buf = *taken;
    *taken = (idl_buf){0};
    sh->count += count;
    pthread_mutex_unlock(&sh->lock);
}

static int flush_once(idl_qlog *q)
{
    idl_store_batch *b = idl_store_batch_new(q->s);
    if (!b) return IDL_INTERNAL;
    uint64_t n = 0;
    idl_buf taken[SHARDS];
    uint32_t counts[SHARDS];
    /* A failed commit writes no outbox record: its numbers are given back
     * with its entries, so the numbers stay dense. */
    uint64_t outbox_first = q->outbox_next;
    outbox_acc ob = {.b = b, .next = &q->outbox_next};
    bool outbox = atomic_load(&q->outbox);
    for (int i = 0; i < SHARDS; i++) {
        shard *sh = &q->shards[i];
        taken[i] = (idl_buf){0};
        pthread_mutex_lock(&sh->lock);
        counts[i] = sh->count;
        if (sh->count) {
            taken[i] = sh->buf;
            sh->buf = (idl_buf){0};
            sh->count = 0;
        }
        pthread_mutex_unlock(&sh->lock);
        if (taken[i].len) n += batch_entries(b, taken[i].data, taken[i].len, outbox ? &ob : NULL);
    }
    if (outbox) outbox_emit(&ob);
    idl_buf_free(&ob.body);
    int rc = IDL_OK;
    if (n) {
        uint64_t total = atomic_load(&q->logged) + n;
        uint8_t v[8];
        idl_be64_put(v, total);
        idl_store_batch_put(b, IDL_CF_META, CTR_LOGGED, strlen(CTR_LOGGED), v, 8);
        if (outbox) {
            uint8_t ov[8];
            idl_be64_put(ov, q->outbox_next);
            idl_store_batch_put(b, IDL_CF_META, IDL_QLOG_OUTBOX_NEXT, strlen(IDL_QLOG_OUTBOX_NEXT),
                                ov, 8);
        }
        rc = idl_store_batch_commit(q->s, b, false);
        if (rc == IDL_OK) {
            atomic_store(&q->logged, total);
            atomic_fetch_sub(&q->pending, n);
            atomic_store(&q->dropping, false);
        }
    }
    if (rc) q->outbox_next = outbox_first;
    for (int i = 0; i < SHARDS; i++) {
        /* Not written (the store refuses writes, e.g. on a full disk): kept
         * for the next flush rather than lost. */
        if (rc && taken[i].len) give_back(q, &q->shards[i], &taken[i], counts[i]);
        idl_buf_free(&taken[i]);
    }
    idl_store_batch_free(b);
    return rc;
}

void idl_qlog_file_remote(idl_store_batch *b, const idl_qlog_entry *e, uint64_t tag)
{
    if (e->code != 0 || !idl_method_logged(e->method, strlen(e->method))) return;
    for (uint32_t i = 0; i < e->n_pids; i++) {
        uint8_t k[24];
        idl_be64_put(k, e->pids[i]);
        idl_be64_put(k + 8, e->time_us);
        idl_be64_put(k + 16, e->seq ^ tag);
        idl_store_batch_put(b, IDL_CF_LOGP, k, 24, e->customer, strlen(e->customer));
    }
}

int idl_qlog_delete_before(idl_store *s, uint64_t cutoff_us, uint64_t *deleted)
{
    uint8_t hi[16] = {0};
    idl_be64_put(hi, cutoff_us);
    idl_store_iter *it;
    int rc = idl_store_iter_open(s, IDL_CF_LOG, NULL, 0, hi, 16, &it);
    if (rc) return rc;
    idl_store_batch *b = idl_store_batch_new(s);
    uint64_t n = 0;
    idl_qlog_entry *e = malloc(sizeof(*e));
    if (!b || !e) {
        rc = IDL_INTERNAL;
        goto out;
    }
    for (; idl_store_iter_valid(it); idl_store_iter_next(it)) {
        size_t kl, vl;
        const char *k = idl_store_iter_key(it, &kl), *v = idl_store_iter_value(it, &vl);
        n++;
        if (idl_qlog_decode(k, kl, v, vl, e) != IDL_OK) continue;
        for (uint32_t i = 0; i < e->n_pids; i++) {
            uint8_t pk[24];
            idl_be64_put(pk, e->pids[i]);
            memcpy(pk + 8, k, 16);
            idl_store_batch_delete(b, IDL_CF_LOGP, pk, 24);
        }
    }
    /* A scan stopped by a damaged block would leave logp records of the
     * unread entries behind, pointing at deleted ones: delete nothing. */
    if ((rc = idl_store_iter_status(it))) goto out;
    uint8_t lo[16] = {0};
    idl_store_batch_delete_range(b, IDL_CF_LOG, lo, 16, hi, 16);
    rc = idl_store_batch_commit(s, b, false);
    if (rc == IDL_OK && deleted) *deleted = n;
out:
    free(e);
    idl_store_batch_free(b);
    idl_store_iter_close(it);
    return rc;
}

static void apply_retention(idl_qlog *q)
{
    if (!q->retention_days) return;
    uint64_t now = realtime_us(), span = (uint64_t)q->retention_days * 86400u * 1000000u;
    if (span >= now) return; /* a retention longer than the epoch keeps everything */
    int rc = idl_qlog_delete_before(q->s, now - span, NULL);
    /* Retention is retried hourly; an operator must hear that it fails. */
    if (rc)
        fprintf(stderr, "idlookupd: query-log retention failed (%s); the log keeps old entries\n",
                idl_status_name(rc));
}

static void *flusher(void *arg)
{
    idl_qlog *q = arg;
    /* Named so that top and perf tell the log's cost apart. */
    pthread_setname_np(pthread_self(), "idl:qlog");
    uint64_t last_retention = realtime_us();
    pthread_mutex_lock(&q->lock);
    for (;;) {
        uint64_t target = q->requested;
        bool stop = q->stopping;
        if (target == q->completed && !stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)q->flush_ms * 1000000u;
            ts.tv_sec += (time_t)(ns / 1000000000u);
            ts.tv_nsec = (long)(ns % 1000000000u);
            pthread_cond_timedwait(&q->wake, &q->lock, &ts);
            target = q->requested;
            stop = q->stopping;
        }
        pthread_mutex_unlock(&q->lock);
        int rc = flush_once(q);
        if (realtime_us() - last_retention > 3600u * 1000000u) {
            apply_retention(q);
            last_retention = realtime_us();
        }
        pthread_mutex_lock(&q->lock);
        q->last_rc = rc;
        if (target > q->completed) q->completed = target;
        pthread_cond_broadcast(&q->done);
        if (stop) break;
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

int idl_qlog_open(idl_qlog **out, idl_store *s, const char *secret_path, unsigned flush_ms,
                  unsigned retention_days, char err[IDL_ERR_MAX])
{
    if (sodium_init() < 0) {
        snprintf(err, IDL_ERR_MAX, "libsodium failed to initialize");
        return IDL_INTERNAL;
    }
    idl_qlog *q = calloc(1, sizeof(*q));
    if (!q) {
        snprintf(err, IDL_ERR_MAX, "out of memory");
        return IDL_INTERNAL;
    }
    q->s = s;
    q->flush_ms = flush_ms < 1 ? 1 : flush_ms > 1000 ? 1000 : flush_ms;
    q->retention_days = retention_days;
    for (int i = 0; i < SHARDS; i++)
        pthread_mutex_init(&q->shards[i].lock, NULL);
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->wake, NULL);
    pthread_cond_init(&q->done, NULL);
    int rc = load_secret(secret_path, q->secret, err);
    if (rc) goto fail;
    uint64_t logged;
    if ((rc = idl_store_meta_u64(s, CTR_LOGGED, &logged))) {
        snprintf(err, IDL_ERR_MAX, "cannot read the query log's counter");
        goto fail;
    }
    atomic_store(&q->logged, logged);
    apply_retention(q);
    if (pthread_create(&q->thread, NULL, flusher, q) != 0) {
        snprintf(err, IDL_ERR_MAX, "cannot start the query-log flusher thread");
        rc = IDL_INTERNAL;
        goto fail;
    }
    q->thread_started = true;
    *out = q;
    return IDL_OK;
fail:
    idl_qlog_close(q);
    return rc;
}

int idl_qlog_flush(idl_qlog *q)
{
    pthread_mutex_lock(&q->lock);
    uint64_t target = ++q->requested;
    pthread_cond_signal(&q->wake);
    while (q->completed < target && q->thread_started)
        pthread_cond_wait(&q->done, &q->lock);
    int rc = q->last_rc;
    pthread_mutex_unlock(&q->lock);
    return rc;
}

int idl_qlog_set_outbox(idl_qlog *q, bool on)
{
    /* The outbox's numbers are the stream's message ids: read as 0 after a
     * failed read, they would repeat ids JetStream drops as duplicates. */
    int rc = idl_store_meta_u64(q->s, IDL_QLOG_OUTBOX_NEXT, &q->outbox_next);
    if (rc) return rc;
    atomic_store(&q->outbox, on);
    return IDL_OK;
}

uint64_t idl_qlog_count(idl_qlog *q)
{
    return atomic_load(&q->logged) + atomic_load(&q->pending);
}

void idl_qlog_close(idl_qlog *q)
{
    if (!q) return;
    if (q->thread_started) {
        pthread_mutex_lock(&q->lock);
        q->stopping = true;
        q->requested++;
        pthread_cond_signal(&q->wake);
        pthread_mutex_unlock(&q->lock);
        pthread_join(q->thread, NULL);
    }
    for (int i = 0; i < SHARDS; i++) {
        idl_buf_free(&q->shards[i].buf);
        pthread_mutex_destroy(&q->shards[i].lock);
    }
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->wake);
    pthread_cond_destroy(&q->done);
    sodium_memzero(q->secret, sizeof q->secret);
    free(q);
}

/* ---- reading the log ---- */

struct idl_qlog_scan {
    idl_store_iter *it;
    uint64_t undecodable;
};

int idl_qlog_scan_open(idl_store *s, uint64_t from_us, uint64_t to_us, idl_qlog_scan **out)
{
    idl_qlog_scan *sc = calloc(1, sizeof(*sc));
    if (!sc) return IDL_INTERNAL;
    /* 8-byte bounds select whole microseconds: a 16-byte key sorts after its
     * own 8-byte prefix. */
    uint8_t lo[8], hi[8];
    idl_be64_put(lo, from_us);
    idl_be64_put(hi, to_us);
    int rc = idl_store_iter_open(s, IDL_CF_LOG, from_us ? lo : NULL, 8,
                                 to_us != UINT64_MAX ? hi : NULL, 8, &sc->it);
    if (rc) {
        free(sc);
        return rc;
    }
    *out = sc;
    return IDL_OK;
}

int idl_qlog_scan_next(idl_qlog_scan *sc, idl_qlog_entry *e, bool *got)
{
    for (; idl_store_iter_valid(sc->it); idl_store_iter_next(sc->it)) {
        size_t kl, vl;
        const char *k = idl_store_iter_key(sc->it, &kl);
        const char *v = idl_store_iter_value(sc->it, &vl);
        if (idl_qlog_decode(k, kl, v, vl, e) != IDL_OK) {
            sc->undecodable++;
            continue;
        }
        idl_store_iter_next(sc->it);
        *got = true;
        return IDL_OK;
    }
    /* An iterator stopped by a damaged block looks like the end of the log:
     * part of the log must not pass for the whole. */
    int rc = idl_store_iter_status(sc->it);
    if (rc) return rc;
    *got = false;
    return IDL_OK;
}

uint64_t idl_qlog_scan_undecodable(const idl_qlog_scan *sc)
{
    return sc->undecodable;
}

void idl_qlog_scan_close(idl_qlog_scan *sc)
{
    if (!sc) return;
    idl_store_iter_close(sc->it);
    free(sc);
}

static int cmp_recipient(const void *a, const void *b)
{
    return strcmp(((const idl_qlog_recipient *)a)->customer,
                  ((const idl_qlog_recipient *)b)->customer);
}

/* Adds one logp record (customer, t) to the list; IDL_INTERNAL when out of
 * memory. */
static int recipient_add(idl_qlog_recipient **rs, size_t *nr, size_t *cap, const char *v, size_t vl,
                         uint64_t t)
{
    char cust[IDL_QLOG_FIELD_MAX];
    size_t cl = vl < sizeof cust - 1 ? vl : sizeof cust - 1;
    memcpy(cust, v, cl);
    cust[cl] = 0;
    size_t j;
    for (j = 0; j < *nr; j++)
        if (strcmp((*rs)[j].customer, cust) == 0) break;
    if (j == *nr) {
        if (*nr == *cap) {
            size_t ncap = *cap ? *cap * 2 : 8;
            idl_qlog_recipient *nrs = realloc(*rs, ncap * sizeof(*nrs));
            if (!nrs) return IDL_INTERNAL;
            *rs = nrs;
            *cap = ncap;
        }
        memcpy((*rs)[j].customer, cust, cl + 1);
        (*rs)[j].count = 0;
        (*rs)[j].first = t;
        (*rs)[j].last = t;
        (*nr)++;
    }
    idl_qlog_recipient *r = &(*rs)[j];
    r->count++;
    if (t < r->first) r->first = t;
    if (t > r->last) r->last = t;
    return IDL_OK;
}

int idl_qlog_recipients(idl_store *s, const uint64_t *pids, size_t n, uint64_t from_us,
                        uint64_t to_us, idl_qlog_recipient **out, size_t *nout)
{
    idl_qlog_recipient *rs = NULL;
    size_t nr = 0, cap = 0;
    int rc = IDL_OK;
    for (size_t i = 0; i < n; i++) {
        uint8_t lo[16], hi[16];
        idl_be64_put(lo, pids[i]);
        idl_be64_put(lo + 8, from_us);
        idl_be64_put(hi, pids[i]);
        idl_be64_put(hi + 8, to_us);
        idl_store_iter *it;
        if ((rc = idl_store_iter_open(s, IDL_CF_LOGP, lo, 16, hi, 16, &it))) goto fail;
        for (; idl_store_iter_valid(it); idl_store_iter_next(it)) {
            size_t kl, vl;
            const char *k = idl_store_iter_key(it, &kl), *v = idl_store_iter_value(it, &vl);
            if (kl != 24) continue;
            uint64_t t = idl_be64_get((const uint8_t *)k + 8);
            if ((rc = recipient_add(&rs, &nr, &cap, v, vl, t))) break;
        }
        /* A scan stopped by a damaged block would under-report who
         * received the person: no answer rather than a short one. */
        if (!rc) rc = idl_store_iter_status(it);
        idl_store_iter_close(it);
        if (rc) goto fail;
    }
    if (nr > 1) qsort(rs, nr, sizeof(*rs), cmp_recipient);
    *out = rs;
    *nout = nr;
    return IDL_OK;
fail:
    free(rs);
    return rc;
}

void idl_qlog_disclosure_mark(uint64_t pid, unsigned year, uint8_t out[IDL_QLOG_MARK_LEN])
{
    out[0] = 'd';
    out[1] = ':';
    idl_be64_put(out + 2, pid);
    out[10] = (uint8_t)(year >> 8);
    out[11] = (uint8_t)year;
}
