/* Privacy methods: OptOut (suppression) and Disclosures (California "Shine
 * the Light": which customers received a person in a year). */
#include "privacy.h"
#include "call.h"
#include "changes.h"
#include "query.h"
#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The fields of both methods: the identifier table's, then these. */
enum { F_PERSON_ID = IDLD_IDENT_COUNT, F_YEAR, F_COUNT };

/* Resolves person_id or an identifier set into person ids, every holder
 * however many (*pids malloc'd, the caller frees it, NULL on failure).  With
 * a person_id, an unknown id is NOT_FOUND. */
static int resolve(idld_call *c, const idl_field *f, idld_query *q, bool *by_id, uint64_t **pids,
                   size_t *n)
{
    const msgpack_object *pidf = f[F_PERSON_ID].val;
    *by_id = pidf != NULL;
    *pids = NULL;
    if (pidf) {
        for (int i = 0; i < IDLD_IDENT_COUNT; i++)
            if (f[i].val)
                return idld_fail(c, IDL_INVALID_ARGUMENT, f[i].name,
                                 "give either 'person_id' or identifiers, not both ('%s')",
                                 f[i].name);
        uint64_t pid;
        if (idl_person_id_parse(pidf->via.str.ptr, pidf->via.str.size, &pid))
            return idld_fail(c, IDL_INVALID_ARGUMENT, "person_id",
                             "field 'person_id' must look like p_ followed by 16 hex digits");
        char idtxt[19];
        idl_person_id_format(pid, idtxt);
        idld_fingerprint(c, "person_id", idtxt);
        int g = idl_store_get(c->st->store, pid, &c->scratch->tmp);
        if (g == IDL_NOT_FOUND)
            return idld_fail(c, IDL_NOT_FOUND, "person_id", "no person with that person_id");
        if (g != IDL_OK) return idld_fail(c, IDL_UNAVAILABLE, NULL, "the store cannot be read");
        *pids = malloc(sizeof(**pids));
        if (!*pids) return idld_fail(c, IDL_INTERNAL, NULL, "out of memory");
        (*pids)[0] = pid;
        *n = 1;
        memset(q, 0, sizeof(*q));
        return IDL_OK;
    }
    int rc = idld_query_parse(c, f, IDLD_IDENT_COUNT, q);
    if (rc) return rc;
    return idld_query_all(c, q, pids, n);
}

static void init_fields(idl_field *f)
{
    idld_ident_fields(f);
    f[F_PERSON_ID] = (idl_field){"person_id", IDL_FT_STR, NULL};
    f[F_YEAR] = (idl_field){"year", IDL_FT_UINT, NULL};
}

int idld_optout(idld_call *c)
{
    idl_field f[F_COUNT];
    init_fields(f);
    if (idl_wire_fields(c->body, f, F_YEAR, c->msg, c->field)) return IDL_INVALID_ARGUMENT;
    idld_query q;
    bool by_id;
    uint64_t *pids = NULL;
    size_t n = 0;
    int rc = resolve(c, f, &q, &by_id, &pids, &n);
    if (rc) return rc;
    idl_hkey keys[8];
    size_t nk = by_id ? 0 : idld_query_keys(&q, keys, 8);
    uint32_t newly = 0;
    if (c->st->changes) {
        /* Cluster mode: through the change stream, answered once applied
         * here (CLUSTER.md §2). */
        rc = idl_changes_suppress(c->st->changes, pids, n, keys, nk, &newly);
        free(pids);
        if (rc)
            return idld_fail(c, IDL_UNAVAILABLE, NULL,
                             "the cluster's change stream cannot be reached");
    } else {
        rc = idl_store_suppress(c->st->store, pids, n, keys, nk, &newly);
        free(pids);
        if (rc) return idld_fail(c, IDL_UNAVAILABLE, NULL, "the store cannot be written");
    }
    msgpack_pack_map(c->pk, 1);
    idl_wire_pack_cstr(c->pk, "suppressed");
    msgpack_pack_uint32(c->pk, newly);
    return IDL_OK;
}

static void rfc3339(uint64_t us, char out[32])
{
    time_t t = (time_t)(us / 1000000u);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static uint64_t year_start_us(unsigned year)
{
    struct tm tm = {.tm_year = (int)year - 1900, .tm_mon = 0, .tm_mday = 1};
    return (uint64_t)timegm(&tm) * 1000000u;
}

int idld_disclosures(idld_call *c)
{
    idl_field f[F_COUNT];
    init_fields(f);
    if (idl_wire_fields(c->body, f, F_COUNT, c->msg, c->field)) return IDL_INVALID_ARGUMENT;
    if (!f[F_YEAR].val)
        return idld_fail(c, IDL_INVALID_ARGUMENT, "year", "missing required field 'year'");
    uint64_t year = idl_wire_uint(f[F_YEAR].val);
    if (year < 1970 || year > 9999)
        return idld_fail(c, IDL_INVALID_ARGUMENT, "year", "field 'year' must be 1970..9999");
    idld_query q;
    bool by_id;
    uint64_t *pids = NULL;
    size_t n = 0;
    /* Disclosures works for suppressed persons too (API.md): opting out does
     * not take away the right to know who received one's data. */
    int rc = resolve(c, f, &q, &by_id, &pids, &n);
    if (rc) return rc;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    unsigned this_year = (unsigned)tm.tm_year + 1900;
    /* Searches answered up to now count, even those still in the log's
     * buffers. */
    if (c->st->qlog) idl_qlog_flush(c->st->qlog);
    idl_qlog_recipient *rs = NULL;
    size_t nr = 0;
    uint8_t *marks = NULL;
    rc = idl_qlog_recipients(c->st->store, pids, n, year_start_us((unsigned)year),
                             year_start_us((unsigned)year + 1), &rs, &nr);
    if (rc == IDL_INTERNAL) {
        rc = idld_fail(c, IDL_INTERNAL, NULL, "out of memory");
        goto fail;
    }
    /* A scan stopped by a damaged block would under-report who received
     * the person: no answer rather than a short one. */
    if (rc) {
        rc = idld_fail(c, IDL_UNAVAILABLE, NULL, "the store cannot be read");
        goto fail;
    }
    /* One request per person per calendar year of asking, whoever asks.
     * Every matched person's mark is checked, and all are set in one write
     * only now that the answer is ready: a request that matches someone who
     * already asked is refused and uses up nobody else's request, and a
     * store that cannot be read uses up none. */
    marks = malloc((n ? n : 1) * IDL_QLOG_MARK_LEN);
    if (!marks) {
        rc = idld_fail(c, IDL_INTERNAL, NULL, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++)
        idl_qlog_disclosure_mark(pids[i], this_year, marks + i * IDL_QLOG_MARK_LEN);
    bool was = false;
    if (c->st->changes) {
        /* Cluster mode: the marks live in a JetStream key-value bucket with
         * create-only writes, so two nodes asked at once cannot both win. */
        if (n && idl_changes_mark_disclosures(c->st->changes, pids, n, this_year, &was)) {
            rc = idld_fail(c, IDL_UNAVAILABLE, NULL,
                           "the cluster's disclosure marks cannot be reached");
            goto fail;
        }
    } else if (n && idl_store_mark_all_once(c->st->store, marks, IDL_QLOG_MARK_LEN, n, &was)) {
        rc = idld_fail(c, IDL_UNAVAILABLE, NULL, "the store cannot be written");
        goto fail;
    }
    if (was) {
        rc = idld_fail(c, IDL_RESOURCE_EXHAUSTED, NULL,
                       "the disclosure request for this person was already made in %u", this_year);
        goto fail;
    }
    free(marks);
    free(pids);
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 2);
    idl_wire_pack_cstr(pk, "year");
    msgpack_pack_uint64(pk, year);
    idl_wire_pack_cstr(pk, "recipients");
    msgpack_pack_array(pk, nr);
    for (size_t i = 0; i < nr; i++) {
        char a[32], b[32];
        rfc3339(rs[i].first, a);
        rfc3339(rs[i].last, b);
        msgpack_pack_map(pk, 4);
        idl_wire_pack_cstr(pk, "customer");
        idl_wire_pack_cstr(pk, rs[i].customer);
        idl_wire_pack_cstr(pk, "disclosures");
        msgpack_pack_uint64(pk, rs[i].count);
        idl_wire_pack_cstr(pk, "first");
        idl_wire_pack_cstr(pk, a);
        idl_wire_pack_cstr(pk, "last");
        idl_wire_pack_cstr(pk, b);
    }
    free(rs);
    return IDL_OK;
fail:
    free(marks);
    free(rs);
    free(pids);
    return rc;
}
