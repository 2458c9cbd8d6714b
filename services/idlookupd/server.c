/* The request pipeline and the nng worker pool.
 *
 * A fixed pool of rep0 contexts, each a small state machine driven by its aio
 * callback (RECV -> handle -> SEND -> RECV).  Handling runs on nng's callback
 * threads, so requests are served concurrently on every core; a worker owns
 * its buffers and scratch, so steady-state requests allocate almost nothing.
 * The checks run in the contract's order: decode, method, key, scope, rate,
 * deadline, body.
 */
#include "assist.h"
#include "pool.h"
#include "server.h"
#include "changes.h"
#include "status.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const idld_method idld_methods[] = {
    {"grpc.health.v1.Health/Check", 0, false, false, idld_health},
    {"idlookup.v1.Meta/Describe", 0, false, false, idld_describe},
    {"idlookup.v1.Lookup/Search", IDL_SCOPE_LOOKUP, true, true, idld_search},
    {"idlookup.v1.Lookup/Validate", IDL_SCOPE_LOOKUP, true, true, idld_validate},
    {"idlookup.v1.Lookup/Verify", IDL_SCOPE_LOOKUP, true, true, idld_verify},
    {"idlookup.v1.Lookup/Batch", IDL_SCOPE_LOOKUP, false, true, idld_batch},
    {"idlookup.v1.Privacy/OptOut", IDL_SCOPE_PRIVACY, true, false, idld_optout},
    {"idlookup.v1.Privacy/Disclosures", IDL_SCOPE_PRIVACY, true, false, idld_disclosures},
    {"idlookup.v1.Admin/Upsert", IDL_SCOPE_ADMIN, true, false, idld_upsert},
    {"idlookup.v1.Admin/Stats", IDL_SCOPE_ADMIN, true, false, idld_stats},
};
const size_t idld_method_count = sizeof idld_methods / sizeof idld_methods[0];

const idld_method *idld_method_find(const char *name, size_t len)
{
    for (size_t i = 0; i < idld_method_count; i++)
        if (strlen(idld_methods[i].name) == len && memcmp(idld_methods[i].name, name, len) == 0)
            return &idld_methods[i];
    return NULL;
}

uint64_t idld_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static const char *const scope_word[5] = {"", "lookup", "privacy", "", "admin"};

/* ---- Batch ---- */

static const char *const batch_allowed[3] = {
    "idlookup.v1.Lookup/Search", "idlookup.v1.Lookup/Validate", "idlookup.v1.Lookup/Verify"};

static void pack_result(msgpack_packer *pk, int code, const char *msg, const idl_buf *body)
{
    msgpack_pack_map(pk, 3);
    idl_wire_pack_cstr(pk, "code");
    msgpack_pack_int(pk, code);
    idl_wire_pack_cstr(pk, "message");
    idl_wire_pack_cstr(pk, code ? msg : NULL);
    idl_wire_pack_cstr(pk, "body");
    if (code == 0 && body)
        msgpack_pack_str_body(pk, body->data, body->len);
    else
        msgpack_pack_nil(pk);
}

idld_scratch *idld_scratch_new(void)
{
    return calloc(1, sizeof(idld_scratch));
}

void idld_scratch_free(idld_scratch *sc)
{
    if (!sc) return;
    idl_buf_free(&sc->inner);
    for (int i = 0; i < IDLD_BATCH_PARTS; i++)
        idl_buf_free(&sc->parts[i]);
    free(sc);
}

/* What Batch decided for one call before the calls run: tokens are taken in
 * call order, so which calls a nearly empty bucket refuses does not depend on
 * how the parts are scheduled. */
typedef struct {
    const idld_method *m;       /* NULL: the call is malformed (its part says why) */
    const msgpack_object *body; /* the call's body, may be NULL */
    bool limited;               /* no token left for it */
    uint32_t retry_ms;
} batch_pre;

typedef struct {
    idld_call *c; /* the Batch call: shared read-only by the parts */
    const msgpack_object *calls;
    uint32_t n, per_part;
    batch_pre pre[100];
    _Atomic uint32_t persons;
} batch_run;

/* Structure checks of one call: its method entry, or NULL with ic->msg set. */
static const idld_method *batch_method(idld_call *ic, const msgpack_object *call,
                                       const msgpack_object **body, idl_qlog_entry *log)
{
    idl_field cf[2] = {{"method", IDL_FT_STR, NULL}, {"body", IDL_FT_MAP, NULL}};
    *body = NULL;
    if (call->type != MSGPACK_OBJECT_MAP) {
        idld_fail(ic, IDL_INVALID_ARGUMENT, "calls", "each call must be a map");
        return NULL;
    }
    if (idl_wire_fields(call, cf, 2, ic->msg, ic->field)) return NULL;
    if (!cf[0].val) {
        idld_fail(ic, IDL_INVALID_ARGUMENT, "method", "missing required field 'method'");
        return NULL;
    }
    if (log) {
        uint32_t ml = cf[0].val->via.str.size;
        if (ml >= sizeof log->method) ml = sizeof log->method - 1;
        memcpy(log->method, cf[0].val->via.str.ptr, ml);
        log->method[ml] = '\0';
    }
    bool allowed = false;
    for (int a = 0; a < 3; a++)
        allowed |= idl_wire_str_eq(cf[0].val, batch_allowed[a]);
    const idld_method *m =
        allowed ? idld_method_find(cf[0].val->via.str.ptr, cf[0].val->via.str.size) : NULL;
    if (!m)
        idld_fail(ic, IDL_INVALID_ARGUMENT, "method",
                  "only Lookup/Search, Lookup/Validate and Lookup/Verify may be called inside "
                  "Batch");
    *body = cf[1].val;
    return m;
}

static void copy_field(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Runs the calls of one part with the executing thread's scratch sc, packing
 * their results into the Batch worker's parts[part], so they can be joined
 * in call order afterwards. */
static void batch_part(void *arg, size_t part, idld_scratch *sc)
{
    batch_run *br = arg;
    idld_call *c = br->c;
    idl_buf *out = &c->scratch->parts[part];
    idl_buf_reset(out);
    msgpack_packer opk;
    idl_buf_packer(out, &opk);
    idl_qlog_entry *log = &sc->log;
    uint32_t lo = (uint32_t)part * br->per_part;
    uint32_t hi = lo + br->per_part < br->n ? lo + br->per_part : br->n;
    uint32_t persons = 0;
    for (uint32_t i = lo; i < hi; i++) {
        const batch_pre *pre = &br->pre[i];
        idld_call ic = {.st = c->st,
                        .key = c->key,
                        .kinfo = c->kinfo,
                        .scratch = sc,
                        .deadline_mono_us = c->deadline_mono_us,
                        .log = log};
        uint64_t t0 = idld_mono_us();
        memset(log, 0, offsetof(idl_qlog_entry, pids));
        log->n_pids = log->n_fps = 0;
        if (c->st->qlog) idl_qlog_next_id(c->st->qlog, &log->time_us, &log->seq);
        copy_field(log->customer, sizeof log->customer, c->kinfo->customer);
        copy_field(log->key_id, sizeof log->key_id, c->kinfo->id);
        idl_buf_reset(&sc->inner);
        msgpack_packer ipk;
        idl_buf_packer(&sc->inner, &ipk);
        ic.pk = &ipk;
        int code;
        if (!pre->m) {
            /* Run the checks again, for the message and the logged method
             * (rare: a valid call is not parsed twice). */
            const msgpack_object *body;
            batch_method(&ic, &br->calls[i], &body, log);
            code = IDL_INVALID_ARGUMENT;
        } else {
            copy_field(log->method, sizeof log->method, pre->m->name);
            if (pre->limited) {
                code = idld_fail(&ic, IDL_RESOURCE_EXHAUSTED, NULL,
                                 "rate limit of %u requests/s exceeded; retry in %u ms",
                                 c->kinfo->rate, pre->retry_ms);
            } else if (c->deadline_mono_us && idld_mono_us() >= c->deadline_mono_us) {
                code = idld_fail(&ic, IDL_DEADLINE_EXCEEDED, NULL, "the deadline has passed");
            } else {
                ic.body = pre->body;
                code = pre->m->fn(&ic);
                if (code == 0 && sc->inner.failed)
                    code = idld_fail(&ic, IDL_INTERNAL, NULL, "out of memory");
            }
        }
        pack_result(&opk, code, ic.msg, &sc->inner);
        log->code = code;
        log->latency_us = (uint32_t)(idld_mono_us() - t0);
        persons += log->n_persons;
        if (code != 0) log->n_persons = log->n_pids = 0;
        atomic_fetch_add(&c->st->by_code[code], 1);
        if (c->st->qlog && c->st->log_queries) idl_qlog_append(c->st->qlog, log);
    }
    atomic_fetch_add(&br->persons, persons);
}

int idld_batch(idld_call *c)
{
    idl_field f[1] = {{"calls", IDL_FT_ARRAY, NULL}};
    if (idl_wire_fields(c->body, f, 1, c->msg, c->field)) return IDL_INVALID_ARGUMENT;
    if (!f[0].val)
        return idld_fail(c, IDL_INVALID_ARGUMENT, "calls", "missing required field 'calls'");
    uint32_t n = f[0].val->via.array.size;
    if (n < 1 || n > 100)
        return idld_fail(c, IDL_INVALID_ARGUMENT, "calls", "field 'calls' must hold 1..100 calls");
    batch_run *br = malloc(sizeof(*br));
    if (!br) return idld_fail(c, IDL_INTERNAL, NULL, "out of memory");
    br->c = c;
    br->calls = f[0].val->via.array.ptr;
    br->n = n;
    atomic_init(&br->persons, 0);
    for (uint32_t i = 0; i < n; i++) {
        idld_call probe = {.st = c->st};
        batch_pre *pre = &br->pre[i];
        pre->m = batch_method(&probe, &br->calls[i], &pre->body, NULL);
        uint32_t remaining = 0;
        pre->limited = pre->m && idl_key_take(c->key, idld_mono_us(), &remaining, &pre->retry_ms);
    }
    /* Parts of at least 12 calls: smaller ones cost more in hand-offs than
     * a second core gives back. */
    uint32_t parts = (n + 11) / 12;
    if (parts > IDLD_BATCH_PARTS) parts = IDLD_BATCH_PARTS;
    br->per_part = (n + parts - 1) / parts;
    parts = (n + br->per_part - 1) / br->per_part;
    idld_assist_run(c->st->assist, batch_part, br, parts, c->scratch);

    msgpack_pack_map(c->pk, 1);
    idl_wire_pack_cstr(c->pk, "results");
    msgpack_pack_array(c->pk, n);
    bool failed = false;
    for (uint32_t p = 0; p < parts; p++) {
        failed |= c->scratch->parts[p].failed;
        msgpack_pack_str_body(c->pk, c->scratch->parts[p].data, c->scratch->parts[p].len);
    }
    if (c->log) c->log->n_persons = atomic_load(&br->persons);
    free(br);
    if (failed) return idld_fail(c, IDL_INTERNAL, NULL, "out of memory building the reply");
    return IDL_OK;
}

/* ---- the pipeline ---- */

typedef enum { W_RECV, W_SEND } wstate;

struct idld_worker {
    idld_state *st;
    nng_ctx ctx;
    nng_aio *aio;
    wstate state;
    msgpack_zone zone;
    idl_buf body;
    idl_buf reply;
    idld_scratch *scratch;
    idl_qlog_entry log;
};

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
static void handle(idld_worker *w, const void *data, size_t len)
{
    idld_state *st = w->st;
    uint64_t t0 = idld_mono_us();
    idl_qlog_entry *log = &w->log;
    memset(log, 0, offsetof(idl_qlog_entry, pids));
    log->n_pids = log->n_fps = 0;
    if (st->qlog) idl_qlog_next_id(st->qlog, &log->time_us, &log->seq);
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
        snprintf(
            log->method, sizeof log->method, "%.*s",
            (int)(req.method_len < sizeof log->method ? req.method_len : sizeof log->method - 1),
            req.method);
        for (char *p = log->method; *p; p++)
            if ((unsigned char)*p < 0x20) *p = '?';
        m = idld_method_find(req.method, req.method_len);
        if (!m)
            code = idld_fail(&c, IDL_UNIMPLEMENTED, "method", "unknown method '%s'", log->method);
    } else if (req.has_id && req.method) {
        snprintf(
            log->method, sizeof log->method, "%.*s",
            (int)(req.method_len < sizeof log->method ? req.method_len : sizeof log->method - 1),
            req.method);
    }
    if (code == 0 && m->scope) {
        kr = atomic_load(&st->keys);
        if (!req.auth) {
            code = idld_fail(&c, IDL_UNAUTHENTICATED, "authorization",
                             "missing API key: send meta authorization \"Bearer <key>\"");
        } else if (idl_auth_check(kr, req.auth, req.auth_len, &c.key) != IDL_OK) {
            code = idld_fail(&c, IDL_UNAUTHENTICATED, "authorization",
                             "the API key is malformed, unknown or revoked");
        } else {
            c.kinfo = idl_key_get_info(c.key);
            snprintf(log->customer, sizeof log->customer, "%s", c.kinfo->customer);
            snprintf(log->key_id, sizeof log->key_id, "%s", c.kinfo->id);
            if (!(c.kinfo->scopes & m->scope)) {
                code = idld_fail(&c, IDL_PERMISSION_DENIED, NULL,
                                 "this key lacks the '%s' scope that %s needs",
                                 scope_word[m->scope], m->name);
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
                 * its inner calls took theirs. */
                rate_meta = true;
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
    if (code == 0 && atomic_load(&st->draining) && m->fn != idld_health)
        code = idld_fail(&c, IDL_UNAVAILABLE, NULL, "the service is shutting down");
    if (code == 0 && st->changes && m->fn != idld_health && !idl_changes_ready(st->changes))
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
    if (code != 0) log->n_persons = log->n_pids = 0;
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

    atomic_fetch_add(&st->by_code[code], 1);
    log->code = code;
    log->latency_us = (uint32_t)(idld_mono_us() - t0);
    if (st->qlog && st->log_queries) idl_qlog_append(st->qlog, log);
}

static void worker_cb(void *arg)
{
    idld_worker *w = arg;
    int rv = nng_aio_result(w->aio);
    if (w->state == W_SEND) {
        if (rv != 0) nng_msg_free(nng_aio_get_msg(w->aio));
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) return;
        w->state = W_RECV;
        nng_ctx_recv(w->ctx, w->aio);
        return;
    }
    if (rv != 0) {
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) return;
        nng_ctx_recv(w->ctx, w->aio);
        return;
    }
    nng_msg *msg = nng_aio_get_msg(w->aio);
    handle(w, nng_msg_body(msg), nng_msg_len(msg));
    nng_msg_clear(msg);
    if (w->reply.failed || nng_msg_append(msg, w->reply.data, w->reply.len) != 0) {
        /* Out of memory for the reply: drop it; the client's wait expires. */
        nng_msg_free(msg);
        nng_ctx_recv(w->ctx, w->aio);
        return;
    }
    w->state = W_SEND;
    nng_aio_set_msg(w->aio, msg);
    nng_ctx_send(w->ctx, w->aio);
}

struct idld_pool {
    nng_socket sock;
    size_t n;
    idld_worker *workers;
};

int idld_pool_start(idld_pool **out, idld_state *st, const char *url, size_t nworkers,
                    char err[256])
{
    idld_pool *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, 256, "out of memory");
        return IDL_INTERNAL;
    }
    int rv;
    if ((rv = nng_rep0_open(&p->sock)) != 0) {
        snprintf(err, 256, "cannot open the rep0 socket: %s", nng_strerror(rv));
        free(p);
        return IDL_INTERNAL;
    }
    /* API.md §1: up to 65,536 bytes served; the transport drops larger ones. */
    nng_socket_set_size(p->sock, NNG_OPT_RECVMAXSZ, IDL_WIRE_MAX_MSG);
    p->workers = calloc(nworkers, sizeof(*p->workers));
    if (!p->workers) {
        snprintf(err, 256, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < nworkers; i++) {
        idld_worker *w = &p->workers[i];
        w->st = st;
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
    for (size_t i = 0; i < p->n; i++) {
        p->workers[i].state = W_RECV;
        nng_ctx_recv(p->workers[i].ctx, p->workers[i].aio);
    }
    *out = p;
    return IDL_OK;
fail:
    idld_pool_stop(p);
    return IDL_UNAVAILABLE;
}

void idld_pool_stop(idld_pool *p)
{
    if (!p) return;
    nng_close(p->sock);
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
    free(p);
}
