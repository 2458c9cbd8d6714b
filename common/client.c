/* Client library (see client.h): one req0 socket, a pool of (context, aio)
 * pairs so concurrent calls neither share a context nor allocate one per call. */
#include "client.h"
#include "status.h"
#include "wire.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    nng_ctx ctx;
    nng_aio *aio;
    struct slot *next;
} slot;

struct idl_client {
    nng_socket sock;
    char *key;
    _Atomic uint64_t next_id;
    pthread_mutex_t lock; /* guards the free list only, never held across I/O */
    slot *free_slots;
};

typedef struct {
    idl_reply pub;
    msgpack_zone zone;
    char *bytes;
    char *message;
    char *request_id;
} reply_impl;

int idl_client_open(idl_client **out, const char *url, const char *key)
{
    idl_client *c = calloc(1, sizeof(*c));
    if (!c) return IDL_INTERNAL;
    int rc = IDL_UNAVAILABLE;
    pthread_mutex_init(&c->lock, NULL);
    if (nng_req0_open(&c->sock) != 0) goto fail_nosock;
    /* A request must not be sent twice behind the caller's back: Upsert and
     * OptOut are not idempotent in their counts. */
    nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_socket_set_ms(c->sock, NNG_OPT_RECONNMINT, 10);
    nng_socket_set_ms(c->sock, NNG_OPT_RECONNMAXT, 500);
    nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, 0);
    /* A comma-separated list dials every node (CLUSTER.md): the req socket
     * spreads requests over the connections, and a request whose
     * connection drops is sent again on another one. */
    char one[1024];
    int ndial = 0;
    for (const char *p = url ? url : "", *end; *p; p = *end ? end + 1 : end) {
        end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        size_t len = (size_t)(end - p);
        if (len == 0) continue;
        if (len >= sizeof one) {
            rc = IDL_INVALID_ARGUMENT;
            goto fail;
        }
        memcpy(one, p, len);
        one[len] = 0;
        int nrc = nng_dial(c->sock, one, NULL, NNG_FLAG_NONBLOCK);
        if (nrc != 0) {
            rc = (nrc == NNG_EADDRINVAL || nrc == NNG_ENOTSUP) ? IDL_INVALID_ARGUMENT
                                                               : IDL_UNAVAILABLE;
            goto fail;
        }
        ndial++;
    }
    if (ndial == 0) {
        rc = IDL_INVALID_ARGUMENT;
        goto fail;
    }
    if (key && !(c->key = strdup(key))) {
        rc = IDL_INTERNAL;
        goto fail;
    }
    atomic_init(&c->next_id, 1);
    *out = c;
    return IDL_OK;
fail:
    nng_close(c->sock);
fail_nosock:
    pthread_mutex_destroy(&c->lock);
    free(c);
    return rc;
}

void idl_client_close(idl_client *c)
{
    if (!c) return;
    for (slot *s = c->free_slots, *n; s; s = n) {
        n = s->next;
        nng_aio_free(s->aio);
        nng_ctx_close(s->ctx);
        free(s);
    }
    nng_close(c->sock);
    pthread_mutex_destroy(&c->lock);
    free(c->key);
    free(c);
}

static slot *slot_get(idl_client *c)
{
    pthread_mutex_lock(&c->lock);
    slot *s = c->free_slots;
    if (s) c->free_slots = s->next;
    pthread_mutex_unlock(&c->lock);
    if (s) return s;
    s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    if (nng_ctx_open(&s->ctx, c->sock) != 0) {
        free(s);
        return NULL;
    }
    if (nng_aio_alloc(&s->aio, NULL, NULL) != 0) {
        nng_ctx_close(s->ctx);
        free(s);
        return NULL;
    }
    return s;
}

static void slot_put(idl_client *c, slot *s)
{
    pthread_mutex_lock(&c->lock);
    s->next = c->free_slots;
    c->free_slots = s;
    pthread_mutex_unlock(&c->lock);
}

int idl_client_call_raw(idl_client *c, const void *req, size_t req_len, int wait_ms, void **rep,
                        size_t *rep_len)
{
    slot *s = slot_get(c);
    if (!s) return IDL_INTERNAL;
    int rc = IDL_UNAVAILABLE;
    nng_msg *msg = NULL;
    if (nng_msg_alloc(&msg, req_len) != 0) {
        rc = IDL_INTERNAL;
        goto done;
    }
    memcpy(nng_msg_body(msg), req, req_len);
    nng_aio_set_timeout(s->aio, wait_ms < 0 ? NNG_DURATION_INFINITE : wait_ms);
    nng_aio_set_msg(s->aio, msg);
    nng_ctx_send(s->ctx, s->aio);
    nng_aio_wait(s->aio);
    if (nng_aio_result(s->aio) != 0) {
        nng_msg_free(msg);
        rc = nng_aio_result(s->aio) == NNG_ETIMEDOUT ? IDL_DEADLINE_EXCEEDED : IDL_UNAVAILABLE;
        goto done;
    }
    nng_ctx_recv(s->ctx, s->aio);
    nng_aio_wait(s->aio);
    if (nng_aio_result(s->aio) != 0) {
        rc = nng_aio_result(s->aio) == NNG_ETIMEDOUT ? IDL_DEADLINE_EXCEEDED : IDL_UNAVAILABLE;
        goto done;
    }
    msg = nng_aio_get_msg(s->aio);
    size_t n = nng_msg_len(msg);
    void *buf = malloc(n ? n : 1);
    if (!buf) {
        nng_msg_free(msg);
        rc = IDL_INTERNAL;
        goto done;
    }
    memcpy(buf, nng_msg_body(msg), n);
    nng_msg_free(msg);
    *rep = buf;
    *rep_len = n;
    rc = IDL_OK;
done:
    slot_put(c, s);
    return rc;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

int idl_request_encode(uint64_t id, const char *method, const char *key, int timeout_ms,
                       const void *body, size_t body_len, void **out, size_t *out_len)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4 + (timeout_ms >= 0));
    pack_str(&pk, "id");
    /* Always 9 bytes (0xcf + 8), so tools may patch the id in place. */
    unsigned char idb[9] = {0xcf};
    for (int i = 0; i < 8; i++)
        idb[1 + i] = (unsigned char)(id >> (56 - 8 * i));
    msgpack_sbuffer_write(&sb, (const char *)idb, sizeof idb);
    pack_str(&pk, "method");
    pack_str(&pk, method);
    pack_str(&pk, "meta");
    if (key) {
        msgpack_pack_map(&pk, 1);
        pack_str(&pk, "authorization");
        size_t kl = strlen(key);
        msgpack_pack_str(&pk, 7 + kl);
        msgpack_pack_str_body(&pk, "Bearer ", 7);
        msgpack_pack_str_body(&pk, key, kl);
    } else {
        msgpack_pack_map(&pk, 0);
    }
    if (timeout_ms >= 0) {
        pack_str(&pk, "timeout_ms");
        msgpack_pack_uint64(&pk, (uint64_t)timeout_ms);
    }
    pack_str(&pk, "body");
    if (body && body_len)
        msgpack_sbuffer_write(&sb, body, body_len);
    else
        msgpack_pack_map(&pk, 0);
    if (!sb.data) {
        msgpack_sbuffer_destroy(&sb);
        return IDL_INTERNAL;
    }
    *out_len = sb.size;
    *out = msgpack_sbuffer_release(&sb);
    return IDL_OK;
}

static char *dup_str(const msgpack_object *o)
{
    if (o->type != MSGPACK_OBJECT_STR) return NULL;
    char *s = malloc(o->via.str.size + 1);
    if (s) {
        if (o->via.str.size) memcpy(s, o->via.str.ptr, o->via.str.size);
        s[o->via.str.size] = 0;
    }
    return s;
}

static bool key_eq(const msgpack_object *k, const char *s)
{
    size_t n = strlen(s);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, s, n) == 0;
}

int idl_reply_decode(const void *buf, size_t len, idl_reply **out)
{
    reply_impl *r = calloc(1, sizeof(*r));
    if (!r) return IDL_INTERNAL;
    if (!msgpack_zone_init(&r->zone, 2048)) {
        free(r);
        return IDL_INTERNAL;
    }
    int rc = IDL_INTERNAL;
    r->bytes = malloc(len ? len : 1);
    if (!r->bytes) goto fail;
    memcpy(r->bytes, buf, len);
    /* Declared lengths in a reply come from the network: checked against
     * the bytes present before msgpack-c allocates for them. */
    char msg[IDL_ERR_MAX];
    if (idl_wire_check_limits(r->bytes, len, (size_t)1 << 30, len, msg) != IDL_OK) goto fail;
    size_t off = 0;
    if (msgpack_unpack(r->bytes, len, &off, &r->zone, &r->pub.root) != MSGPACK_UNPACK_SUCCESS ||
        r->pub.root.type != MSGPACK_OBJECT_MAP)
        goto fail;
    r->pub.body.type = MSGPACK_OBJECT_NIL;
    r->pub.details.type = MSGPACK_OBJECT_NIL;
    r->pub.meta.type = MSGPACK_OBJECT_NIL;
    bool have_code = false;
    const msgpack_object_map *m = &r->pub.root.via.map;
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
        if (key_eq(k, "id") && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            r->pub.id = v->via.u64;
        } else if (key_eq(k, "code") && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            r->pub.code = (int)v->via.u64;
            have_code = true;
        } else if (key_eq(k, "message") && !r->message) {
            /* The first wins, as for request-id: a repeated key must not
             * leak the copy of the first. */
            r->message = dup_str(v);
        } else if (key_eq(k, "body")) {
            r->pub.body = *v;
        } else if (key_eq(k, "details")) {
            r->pub.details = *v;
        } else if (key_eq(k, "meta")) {
            r->pub.meta = *v;
            if (v->type == MSGPACK_OBJECT_MAP)
                for (uint32_t j = 0; j < v->via.map.size; j++)
                    if (key_eq(&v->via.map.ptr[j].key, "request-id") && !r->request_id)
                        r->request_id = dup_str(&v->via.map.ptr[j].val);
        }
    }
    if (!have_code) goto fail;
    r->pub.message = r->message;
    r->pub.request_id = r->request_id;
    *out = &r->pub;
    return IDL_OK;
fail:
    idl_reply_free(&r->pub);
    return rc;
}

void idl_reply_free(idl_reply *pub)
{
    if (!pub) return;
    reply_impl *r = (reply_impl *)pub;
    msgpack_zone_destroy(&r->zone);
    free(r->bytes);
    free(r->message);
    free(r->request_id);
    free(r);
}

int idl_client_call(idl_client *c, const char *method, const void *body, size_t len, int timeout_ms,
                    int wait_ms, idl_reply **out)
{
    void *req = NULL, *rep = NULL;
    size_t req_len = 0, rep_len = 0;
    uint64_t id = atomic_fetch_add(&c->next_id, 1);
    int rc = idl_request_encode(id, method, c->key, timeout_ms, body, len, &req, &req_len);
    if (rc) return rc;
    rc = idl_client_call_raw(c, req, req_len, wait_ms, &rep, &rep_len);
    free(req);
    if (rc) return rc;
    rc = idl_reply_decode(rep, rep_len, out);
    free(rep);
    return rc;
}
