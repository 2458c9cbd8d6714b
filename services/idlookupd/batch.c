/* Lookup/Batch: up to 100 Search, Validate and Verify calls in one request,
 * split into parts that the assist helpers run next to the calling thread.
 * Each inner call is checked, rate-limited, logged and answered like a
 * request of its own; the results come back in call order. */
#include "batch.h"
#include "assist.h"
#include "call.h"
#include "status.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

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
    if (log) idld_log_method(log, cf[0].val->via.str.ptr, cf[0].val->via.str.size);
    const idld_method *m = idld_method_find(cf[0].val->via.str.ptr, cf[0].val->via.str.size);
    if (m && !m->in_batch) m = NULL;
    if (!m)
        idld_fail(ic, IDL_INVALID_ARGUMENT, "method",
                  "only Lookup/Search, Lookup/Validate and Lookup/Verify may be called inside "
                  "Batch");
    *body = cf[1].val;
    return m;
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
        idld_log_begin(c->st, log);
        idld_log_key(log, c->kinfo);
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
            idld_log_method(log, pre->m->name, strlen(pre->m->name));
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
        persons += log->n_persons;
        idld_log_end(c->st, log, code, t0);
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
