/* Admin methods: Upsert (records in over the wire) and Stats; and the
 * key-less Health and Describe. */
#include "admin.h"
#include "call.h"
#include "changes.h"
#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UPSERT_MAX 1000

typedef struct {
    msgpack_packer *pk; /* warnings are packed into a side buffer */
    uint32_t index;
    uint32_t count;
} warn_ctx;

static void on_warning(void *ctx, const char *reason)
{
    warn_ctx *w = ctx;
    msgpack_pack_map(w->pk, 2);
    idl_wire_pack_cstr(w->pk, "index");
    msgpack_pack_uint32(w->pk, w->index);
    idl_wire_pack_cstr(w->pk, "reason");
    idl_wire_pack_cstr(w->pk, reason);
    w->count++;
}

int idld_upsert(idld_call *c)
{
    idl_field f[1] = {{"records", IDL_FT_ARRAY, NULL}};
    if (idl_wire_fields(c->body, f, 1, c->msg, c->field)) return IDL_INVALID_ARGUMENT;
    if (!f[0].val)
        return idld_fail(c, IDL_INVALID_ARGUMENT, "records", "missing required field 'records'");
    uint32_t n = f[0].val->via.array.size;
    if (n < 1 || n > UPSERT_MAX)
        return idld_fail(c, IDL_INVALID_ARGUMENT, "records",
                         "field 'records' must hold 1..%d records", UPSERT_MAX);
    idl_record *recs = malloc(n * sizeof(*recs));
    uint32_t *orig = malloc(n * sizeof(*orig));
    idl_upsert_result *res = malloc(n * sizeof(*res));
    idl_buf wbuf = {0}, ibuf = {0};
    int rc = IDL_INTERNAL;
    if (!recs || !orig || !res) {
        idld_fail(c, IDL_INTERNAL, NULL, "out of memory");
        goto out;
    }
    msgpack_packer wpk, ipk;
    idl_buf_packer(&wbuf, &wpk);
    idl_buf_packer(&ibuf, &ipk);
    warn_ctx w = {.pk = &wpk};
    uint32_t nvalid = 0, ninvalid = 0, dropped = 0;
    for (uint32_t i = 0; i < n; i++) {
        char reason[IDL_ERR_MAX];
        w.index = i;
        if (idl_record_parse(&f[0].val->via.array.ptr[i], &recs[nvalid], on_warning, &w, reason)) {
            msgpack_pack_map(&ipk, 2);
            idl_wire_pack_cstr(&ipk, "index");
            msgpack_pack_uint32(&ipk, i);
            idl_wire_pack_cstr(&ipk, "reason");
            idl_wire_pack_cstr(&ipk, reason);
            ninvalid++;
            continue;
        }
        dropped += recs[nvalid].dropped;
        orig[nvalid++] = i;
    }
    if (wbuf.failed || ibuf.failed) {
        idld_fail(c, IDL_INTERNAL, NULL, "out of memory");
        goto out;
    }
    if (nvalid && c->st->changes) {
        if (idl_changes_upsert(c->st->changes, recs, nvalid, res)) {
            idld_fail(c, IDL_UNAVAILABLE, NULL, "the cluster's change stream cannot be reached");
            rc = IDL_UNAVAILABLE;
            goto out;
        }
    } else if (nvalid && idl_store_upsert(c->st->store, recs, nvalid, res, false)) {
        idld_fail(c, IDL_UNAVAILABLE, NULL, "the store cannot be written");
        rc = IDL_UNAVAILABLE;
        goto out;
    }
    uint32_t stored = 0, updated = 0, child = 0, supp = 0;
    for (uint32_t i = 0; i < nvalid; i++) {
        stored += res[i].outcome == IDL_UP_STORED;
        updated += res[i].outcome == IDL_UP_UPDATED;
        child += res[i].outcome == IDL_UP_CHILD;
        supp += res[i].suppressed;
    }
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 7);
    idl_wire_pack_cstr(pk, "stored");
    msgpack_pack_uint32(pk, stored);
    idl_wire_pack_cstr(pk, "updated");
    msgpack_pack_uint32(pk, updated);
    idl_wire_pack_cstr(pk, "rejected_child");
    msgpack_pack_uint32(pk, child);
    idl_wire_pack_cstr(pk, "suppressed");
    msgpack_pack_uint32(pk, supp);
    idl_wire_pack_cstr(pk, "dropped_identifiers");
    msgpack_pack_uint32(pk, dropped);
    idl_wire_pack_cstr(pk, "invalid");
    msgpack_pack_array(pk, ninvalid);
    msgpack_pack_str_body(pk, ibuf.data, ibuf.len); /* pre-packed entries, appended raw */
    idl_wire_pack_cstr(pk, "warnings");
    msgpack_pack_array(pk, w.count);
    msgpack_pack_str_body(pk, wbuf.data, wbuf.len);
    rc = IDL_OK;
out:
    idl_buf_free(&wbuf);
    idl_buf_free(&ibuf);
    free(res);
    free(orig);
    free(recs);
    return rc;
}

int idld_stats(idld_call *c)
{
    idl_field f[1] = {{"_", IDL_FT_STR, NULL}};
    if (idl_wire_fields(c->body, f, 0, c->msg, c->field)) return IDL_INVALID_ARGUMENT;
    idl_store_counts sc;
    idl_store_counts_get(c->st->store, &sc);
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, c->st->changes ? 7 : 6);
    idl_wire_pack_cstr(pk, "persons");
    msgpack_pack_uint64(pk, sc.persons);
    idl_wire_pack_cstr(pk, "suppressed");
    msgpack_pack_uint64(pk, sc.suppressed);
    idl_wire_pack_cstr(pk, "children_purged");
    msgpack_pack_uint64(pk, sc.children_purged);
    idl_wire_pack_cstr(pk, "queries_logged");
    msgpack_pack_uint64(pk, c->st->qlog ? idl_qlog_count(c->st->qlog) : 0);
    idl_wire_pack_cstr(pk, "uptime_s");
    msgpack_pack_uint64(pk, (idld_mono_us() - c->st->start_mono_us) / 1000000u);
    idl_wire_pack_cstr(pk, "requests");
    size_t nz = 0;
    uint64_t counts[IDL_STATUS_COUNT];
    for (int i = 0; i < IDL_STATUS_COUNT; i++)
        nz += (counts[i] = atomic_load(&c->st->by_code[i])) != 0;
    msgpack_pack_map(pk, nz);
    for (int i = 0; i < IDL_STATUS_COUNT; i++) {
        if (!counts[i]) continue;
        idl_wire_pack_cstr(pk, idl_status_name(i));
        msgpack_pack_uint64(pk, counts[i]);
    }
    if (c->st->changes) {
        idl_changes_status cs;
        idl_changes_status_get(c->st->changes, &cs);
        idl_wire_pack_cstr(pk, "cluster");
        msgpack_pack_map(pk, 5);
        idl_wire_pack_cstr(pk, "node");
        idl_wire_pack_cstr(pk, c->st->node);
        idl_wire_pack_cstr(pk, "applied_seq");
        msgpack_pack_uint64(pk, cs.applied_seq);
        idl_wire_pack_cstr(pk, "stream_seq");
        msgpack_pack_uint64(pk, cs.stream_seq);
        idl_wire_pack_cstr(pk, "lag");
        msgpack_pack_uint64(pk, cs.stream_seq - cs.applied_seq);
        idl_wire_pack_cstr(pk, "nats");
        idl_wire_pack_cstr(pk, cs.connected ? "connected" : "disconnected");
    }
    return IDL_OK;
}

static const char *const services[] = {"",
                                       "grpc.health.v1.Health",
                                       "idlookup.v1.Meta",
                                       "idlookup.v1.Lookup",
                                       "idlookup.v1.Privacy",
                                       "idlookup.v1.Admin"};

int idld_health(idld_call *c)
{
    idl_field f[1] = {{"service", IDL_FT_STR, NULL}};
    if (idl_wire_fields(c->body, f, 1, c->msg, c->field)) return IDL_INVALID_ARGUMENT;
    size_t i = 0;
    if (f[0].val) {
        for (i = 0; i < sizeof services / sizeof *services; i++)
            if (idl_wire_str_eq(f[0].val, services[i])) break;
        if (i == sizeof services / sizeof *services)
            return idld_fail(c, IDL_NOT_FOUND, "service", "unknown service name");
    }
    /* A cluster node serves only once caught up with the change stream
     * (CLUSTER.md §5). */
    bool serving =
        !atomic_load(&c->st->draining) && (!c->st->changes || idl_changes_ready(c->st->changes));
    /* Privacy and Admin write (OptOut, Disclosures marks, Upsert): while the
     * store refuses writes (disk below the floor, a failed write not yet
     * resumed) they are not served, though lookups are. */
    if (serving && (strcmp(services[i], "idlookup.v1.Privacy") == 0 ||
                    strcmp(services[i], "idlookup.v1.Admin") == 0))
        serving = idl_store_writable(c->st->store);
    msgpack_pack_map(c->pk, 1);
    idl_wire_pack_cstr(c->pk, "status");
    idl_wire_pack_cstr(c->pk, serving ? "SERVING" : "NOT_SERVING");
    return IDL_OK;
}

int idld_describe(idld_call *c)
{
    idl_field f[1] = {{"_", IDL_FT_STR, NULL}};
    if (idl_wire_fields(c->body, f, 0, c->msg, c->field)) return IDL_INVALID_ARGUMENT;
    msgpack_pack_str_body(c->pk, c->st->describe_body, c->st->describe_len);
    return IDL_OK;
}
