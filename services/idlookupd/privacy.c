/* Privacy methods: OptOut (suppression) and Disclosures (California "Shine
 * the Light": which customers received a person in a year). */
#include "server.h"
#include "changes.h"
#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const id_fields[10] = {"email", "phone", "first_name", "last_name", "street",
                                          "unit",  "city",  "state",      "zip",       "ip"};

/* Resolves person_id or an identifier set into person ids, every holder
 * however many (*pids malloc'd, the caller frees it, NULL on failure).  With
 * a person_id, an unknown id is NOT_FOUND. */
static int resolve(idld_call *c, const idl_field *f, idld_query *q, bool *by_id, uint64_t **pids,
                   size_t *n)
{
    const msgpack_object *pidf = f[10].val;
    *by_id = pidf != NULL;
    *pids = NULL;
    if (pidf) {
        for (int i = 0; i < 10; i++)
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
    int rc = idld_query_parse(c, f, 10, q);
    if (rc) return rc;
    return idld_query_all(c, q, pids, n);
}

static void init_fields(idl_field *f)
{
    for (int i = 0; i < 10; i++)
        f[i] = (idl_field){id_fields[i], IDL_FT_STR, NULL};
    f[10] = (idl_field){"person_id", IDL_FT_STR, NULL};
    f[11] = (idl_field){"year", IDL_FT_UINT, NULL};
}

int idld_optout(idld_call *c)
{
    idl_field f[12];
    init_fields(f);
    if (idl_wire_fields(c->body, f, 11, c->msg, c->field)) return IDL_INVALID_ARGUMENT;
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

/* 'd' ':' pid(8) year(2): a person's disclosure request in a year. */
#define DISCLOSURE_MARK_LEN 12

typedef struct {
    char customer[IDL_QLOG_FIELD_MAX];
    uint64_t count, first, last;
} recipient;

static int cmp_recipient(const void *a, const void *b)
{
    return strcmp(((const recipient *)a)->customer, ((const recipient *)b)->customer);
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
    idl_field f[12];
    init_fields(f);
    if (idl_wire_fields(c->body, f, 12, c->msg, c->field)) return IDL_INVALID_ARGUMENT;
    if (!f[11].val)
        return idld_fail(c, IDL_INVALID_ARGUMENT, "year", "missing required field 'year'");
    uint64_t year = idl_wire_uint(f[11].val);
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
    uint64_t lo_t = year_start_us((unsigned)year), hi_t = year_start_us((unsigned)year + 1);
    recipient *rs = NULL;
    size_t nr = 0, cap = 0;
    uint8_t *marks = NULL;
    for (size_t i = 0; i < n; i++) {
        uint8_t lo[16], hi[16];
        idl_be64_put(lo, pids[i]);
        idl_be64_put(lo + 8, lo_t);
        idl_be64_put(hi, pids[i]);
        idl_be64_put(hi + 8, hi_t);
        idl_store_iter *it;
        if (idl_store_iter_open(c->st->store, IDL_CF_LOGP, lo, 16, hi, 16, &it)) {
            rc = idld_fail(c, IDL_UNAVAILABLE, NULL, "the store cannot be read");
            goto fail;
        }
        for (; idl_store_iter_valid(it); idl_store_iter_next(it)) {
            size_t kl, vl;
            const char *k = idl_store_iter_key(it, &kl), *v = idl_store_iter_value(it, &vl);
            if (kl != 24) continue;
            uint64_t t = idl_be64_get((const uint8_t *)k + 8);
            char cust[IDL_QLOG_FIELD_MAX];
            size_t cl = vl < sizeof cust - 1 ? vl : sizeof cust - 1;
            memcpy(cust, v, cl);
            cust[cl] = 0;
            size_t j;
            for (j = 0; j < nr; j++)
                if (strcmp(rs[j].customer, cust) == 0) break;
            if (j == nr) {
                if (nr == cap) {
                    cap = cap ? cap * 2 : 8;
                    recipient *nrs = realloc(rs, cap * sizeof(*rs));
                    if (!nrs) {
                        idl_store_iter_close(it);
                        rc = idld_fail(c, IDL_INTERNAL, NULL, "out of memory");
                        goto fail;
                    }
                    rs = nrs;
                }
                memcpy(rs[nr].customer, cust, cl + 1);
                rs[nr].count = 0;
                rs[nr].first = t;
                rs[nr].last = t;
                nr++;
            }
            rs[j].count++;
            if (t < rs[j].first) rs[j].first = t;
            if (t > rs[j].last) rs[j].last = t;
        }
        idl_store_iter_close(it);
    }
    /* One request per person per calendar year of asking, whoever asks.
     * Every matched person's mark is checked, and all are set in one write
     * only now that the answer is ready: a request that matches someone who
     * already asked is refused and uses up nobody else's request. */
    marks = malloc((n ? n : 1) * DISCLOSURE_MARK_LEN);
    if (!marks) {
        rc = idld_fail(c, IDL_INTERNAL, NULL, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t *k = marks + i * DISCLOSURE_MARK_LEN;
        k[0] = 'd';
        k[1] = ':';
        idl_be64_put(k + 2, pids[i]);
        k[10] = (uint8_t)(this_year >> 8);
        k[11] = (uint8_t)this_year;
    }
    bool was = false;
    if (c->st->changes) {
        /* Cluster mode: the marks live in a JetStream key-value bucket with
         * create-only writes, so two nodes asked at once cannot both win. */
        if (n && idl_changes_mark_disclosures(c->st->changes, pids, n, this_year, &was)) {
            rc = idld_fail(c, IDL_UNAVAILABLE, NULL,
                           "the cluster's disclosure marks cannot be reached");
            goto fail;
        }
    } else if (n && idl_store_mark_all_once(c->st->store, marks, DISCLOSURE_MARK_LEN, n, &was)) {
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
    if (nr > 1) qsort(rs, nr, sizeof(*rs), cmp_recipient);
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
