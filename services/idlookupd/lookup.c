/* The single lookup methods: Search (research), Validate and Verify (Batch,
 * which runs them, is batch.c).
 *
 * Every path goes through visible(): a person hidden by an opt-out is skipped
 * exactly as if absent, a person who is a child today is skipped and purged,
 * and identifiers hidden by an opt-out never match and are never rendered. */
#include "lookup.h"
#include "call.h"
#include "changes.h"
#include "query.h"
#include "status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Search's "matched" bits: one per identifier field, in the table's order. */
enum {
#define MATCH_BIT(id, name, member, check, raw_max, key) M_##id = 1 << IDLD_ID_##id,
    IDLD_IDENT_LIST(MATCH_BIT)
#undef MATCH_BIT
};

typedef struct {
    int y, m, d;
} day;

/* Loads pid into r and sets *shown when a customer may see it.  A person the
 * store cannot read fails the call (UNAVAILABLE, message set): taking it for
 * absent would answer "nobody" for someone who is there. */
static int visible(idld_call *c, uint64_t pid, idl_record *r, const day *t, bool *shown)
{
    *shown = false;
    /* The suppression mirror is in memory: checked first, a suppressed
     * person costs no read. */
    if (idl_store_person_suppressed(c->st->store, pid)) return IDL_OK;
    int rc = idl_store_get(c->st->store, pid, r);
    if (rc == IDL_NOT_FOUND) return IDL_OK; /* deleted since the probe */
    if (rc) return idld_fail(c, IDL_UNAVAILABLE, NULL, "the store cannot be read");
    if (idl_record_is_child(r, t->y, t->m, t->d)) {
        /* DATA.md §2: found at query time (clock moved, bad data): purged. */
        if (c->st->changes)
            idl_changes_purge_child(c->st->changes, pid); /* queued: a read never waits on NATS */
        else
            idl_store_purge_child(c->st->store, pid);
        return IDL_OK;
    }
    *shown = true;
    return IDL_OK;
}

static bool key_hidden(idld_call *c, const idl_hkey *k)
{
    return idl_store_key_suppressed(c->st->store, k);
}

static bool addr_hidden(idld_call *c, const idl_address *a)
{
    idl_hkey k;
    if (a->zip[0]) {
        idl_hkey_addr(&k, a->street, a->zip);
        if (key_hidden(c, &k)) return true;
    }
    if (a->city[0] && a->state[0]) {
        idl_hkey_addrcs(&k, a->street, a->city, a->state);
        if (key_hidden(c, &k)) return true;
    }
    return false;
}

/* Probes k and appends to cand.  A suppressed identifier finds nobody, at
 * the cost of a probe that finds nobody (API.md §5: not even the time a
 * reply takes tells an opted-out identifier from a never-stored one). */
static int probe_into(idld_call *c, const idl_hkey *k, size_t *nc)
{
    if (key_hidden(c, k)) {
        if (idl_store_probe_absent(c->st->store, k))
            return idld_fail(c, IDL_UNAVAILABLE, NULL, "the store cannot be read");
        return IDL_OK;
    }
    size_t n = 0;
    size_t room = IDLD_MAX_CANDIDATES - *nc;
    if (room == 0) return IDL_OK;
    int rc = idl_store_probe(c->st->store, k, c->scratch->cand + *nc, room, &n, NULL);
    if (rc) return idld_fail(c, IDL_UNAVAILABLE, NULL, "the store cannot be read");
    *nc += n;
    return IDL_OK;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static size_t uniq(uint64_t *v, size_t n)
{
    if (n < 2) return n;
    qsort(v, n, sizeof *v, cmp_u64);
    size_t o = 1;
    for (size_t i = 1; i < n; i++)
        if (v[i] != v[o - 1]) v[o++] = v[i];
    return o;
}

/* An address of r that is not hidden and agrees with every given part. */
static bool has_addr(idld_call *c, const idl_record *r, const char *street, const char *unit,
                     const char *city, const char *state, const char *zip)
{
    for (int i = 0; i < r->n_addrs; i++) {
        const idl_address *a = &r->addrs[i];
        if (idld_addr_agrees(a, street, unit, city, state, zip) && !addr_hidden(c, a)) return true;
    }
    return false;
}

static idl_line_type phone_type(const idl_rec_phone *p)
{
    return p->plan_type != IDL_LINE_UNKNOWN ? p->plan_type : p->rec_type;
}

static void pack_addr(msgpack_packer *pk, const idl_address *a)
{
    msgpack_pack_map(pk, 5);
    idl_wire_pack_cstr(pk, "street");
    idl_wire_pack_cstr(pk, a->street);
    idl_wire_pack_cstr(pk, "unit");
    idl_wire_pack_cstr(pk, a->unit[0] ? a->unit : NULL);
    idl_wire_pack_cstr(pk, "city");
    idl_wire_pack_cstr(pk, a->city[0] ? a->city : NULL);
    idl_wire_pack_cstr(pk, "state");
    idl_wire_pack_cstr(pk, a->state[0] ? a->state : NULL);
    idl_wire_pack_cstr(pk, "zip");
    idl_wire_pack_cstr(pk, a->zip[0] ? a->zip : NULL);
}

static void render_person(idld_call *c, const idl_record *r, uint64_t pid, double score,
                          uint32_t matched, const day *t)
{
    msgpack_packer *pk = c->pk;
    char id[19];
    idl_person_id_format(pid, id);
    msgpack_pack_map(pk, 11);
    idl_wire_pack_cstr(pk, "id");
    idl_wire_pack_cstr(pk, id);
    idl_wire_pack_cstr(pk, "first_name");
    idl_wire_pack_cstr(pk, r->first_name);
    idl_wire_pack_cstr(pk, "middle_name");
    idl_wire_pack_cstr(pk, r->middle_name[0] ? r->middle_name : NULL);
    idl_wire_pack_cstr(pk, "last_name");
    idl_wire_pack_cstr(pk, r->last_name);
    idl_wire_pack_cstr(pk, "age");
    int age = idl_record_age(r, t->y, t->m, t->d);
    if (age < 0)
        msgpack_pack_nil(pk);
    else
        msgpack_pack_uint32(pk, (uint32_t)age);

    /* Hidden identifiers are left out of every person, also of a person who
     * shares them with someone who opted out (a household phone). */
    bool keep_e[IDL_REC_MAX_EMAILS], keep_p[IDL_REC_MAX_PHONES], keep_a[IDL_REC_MAX_ADDRS],
        keep_i[IDL_REC_MAX_IPS];
    int ne = 0, np = 0, na = 0, ni = 0;
    idl_hkey k;
    for (int i = 0; i < r->n_emails; i++) {
        idl_hkey_make(&k, "email", r->emails[i]);
        ne += keep_e[i] = !key_hidden(c, &k);
    }
    for (int i = 0; i < r->n_phones; i++) {
        idl_hkey_make(&k, "phone", r->phones[i].number);
        np += keep_p[i] = !key_hidden(c, &k);
    }
    for (int i = 0; i < r->n_addrs; i++)
        na += keep_a[i] = !addr_hidden(c, &r->addrs[i]);
    for (int i = 0; i < r->n_ips; i++) {
        idl_hkey_make(&k, "ip", r->ips[i]);
        ni += keep_i[i] = !key_hidden(c, &k);
    }
    idl_wire_pack_cstr(pk, "emails");
    msgpack_pack_array(pk, (size_t)ne);
    for (int i = 0; i < r->n_emails; i++)
        if (keep_e[i]) idl_wire_pack_cstr(pk, r->emails[i]);
    idl_wire_pack_cstr(pk, "phones");
    msgpack_pack_array(pk, (size_t)np);
    for (int i = 0; i < r->n_phones; i++) {
        if (!keep_p[i]) continue;
        msgpack_pack_map(pk, 2);
        idl_wire_pack_cstr(pk, "number");
        idl_wire_pack_cstr(pk, r->phones[i].number);
        idl_wire_pack_cstr(pk, "line_type");
        idl_wire_pack_cstr(pk, idl_line_type_name(phone_type(&r->phones[i])));
    }
    idl_wire_pack_cstr(pk, "addresses");
    msgpack_pack_array(pk, (size_t)na);
    for (int i = 0; i < r->n_addrs; i++)
        if (keep_a[i]) pack_addr(pk, &r->addrs[i]);
    idl_wire_pack_cstr(pk, "ips");
    msgpack_pack_array(pk, (size_t)ni);
    for (int i = 0; i < r->n_ips; i++)
        if (keep_i[i]) idl_wire_pack_cstr(pk, r->ips[i]);
    idl_wire_pack_cstr(pk, "score");
    msgpack_pack_double(pk, score);
    idl_wire_pack_cstr(pk, "matched");
    int nm = __builtin_popcount(matched);
    msgpack_pack_array(pk, (size_t)nm);
    for (int b = 0; b < IDLD_IDENT_COUNT; b++)
        if (matched & (1u << b)) idl_wire_pack_cstr(pk, idld_ident_names[b]);
}

/* ---- Search ---- */

static int cmp_hit(const void *a, const void *b)
{
    const struct idld_hit *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->pid < y->pid ? -1 : x->pid > y->pid;
}

int idld_search(idld_call *c)
{
    enum { F_LIMIT = IDLD_IDENT_COUNT, F_MIN_SCORE, F_COUNT };
    idl_field f[F_COUNT];
    idld_ident_fields(f);
    f[F_LIMIT] = (idl_field){"limit", IDL_FT_UINT, NULL};
    f[F_MIN_SCORE] = (idl_field){"min_score", IDL_FT_NUMBER, NULL};
    if (idl_wire_fields(c->body, f, F_COUNT, c->msg, c->field)) return IDL_INVALID_ARGUMENT;
    uint64_t limit = 10;
    double min_score = 0;
    if (f[F_LIMIT].val) {
        limit = idl_wire_uint(f[F_LIMIT].val);
        if (limit < 1 || limit > 100)
            return idld_fail(c, IDL_INVALID_ARGUMENT, "limit", "field 'limit' must be 1..100");
    }
    if (f[F_MIN_SCORE].val) {
        min_score = idl_wire_number(f[F_MIN_SCORE].val);
        if (!(min_score >= 0 && min_score <= 1))
            return idld_fail(c, IDL_INVALID_ARGUMENT, "min_score",
                             "field 'min_score' must be 0..1");
    }
    idld_query q;
    int rc = idld_query_parse(c, f, IDLD_IDENT_COUNT, &q);
    if (rc) return rc;
    bool g_addr = q.has_street && (q.has_zip || (q.has_city && q.has_state));
    int groups = q.has_email + q.has_phone + q.has_ip + g_addr + q.has_name;

    /* Candidates: the union of every group's index entries.  A suppressed
     * identifier matches nobody, also where it reaches a person through
     * another identifier (a shared household phone). */
    size_t nc = 0;
    idl_hkey k;
    bool use_email = false, use_phone = false, use_ip = false;
    if (q.has_email) {
        idl_hkey_make(&k, "email", q.email);
        use_email = !key_hidden(c, &k);
        if ((rc = probe_into(c, &k, &nc))) return rc;
    }
    if (q.has_phone) {
        idl_hkey_make(&k, "phone", q.phone);
        use_phone = !key_hidden(c, &k);
        if ((rc = probe_into(c, &k, &nc))) return rc;
    }
    if (q.has_ip) {
        idl_hkey_make(&k, "ip", q.ip);
        use_ip = !key_hidden(c, &k);
        if ((rc = probe_into(c, &k, &nc))) return rc;
    }
    if (g_addr) {
        if (q.has_zip)
            idl_hkey_addr(&k, q.street, q.zip);
        else
            idl_hkey_addrcs(&k, q.street, q.city, q.state);
        if ((rc = probe_into(c, &k, &nc))) return rc;
    }
    if (q.has_name) {
        const char *gr[16];
        size_t ng = idl_nick_groups(q.first, gr, 16);
        for (size_t g = 0; g < ng; g++) {
            idl_hkey_name(&k, q.last, gr[g]);
            if ((rc = probe_into(c, &k, &nc))) return rc;
        }
    }
    nc = uniq(c->scratch->cand, nc);

    day t;
    idl_today(&t.y, &t.m, &t.d);
    size_t nh = 0, cached = 0;
    idld_scratch *sc = c->scratch;
    for (size_t i = 0; i < nc; i++) {
        if (c->deadline_mono_us && idld_mono_us() > c->deadline_mono_us)
            return idld_fail(c, IDL_DEADLINE_EXCEEDED, NULL,
                             "the deadline passed during the search");
        idl_record *r = cached < IDLD_CACHED_RECORDS ? &sc->recs[cached] : &sc->tmp;
        bool shown;
        if ((rc = visible(c, sc->cand[i], r, &t, &shown))) return rc;
        if (!shown) continue;
        uint32_t m = 0;
        double w = 0;
        if (use_email && idld_has_email(r, q.email)) m |= M_EMAIL, w += 1;
        if (use_phone && idld_has_phone(r, q.phone)) m |= M_PHONE, w += 1;
        if (use_ip && idld_has_ip(r, q.ip)) m |= M_IP, w += 1;
        if (g_addr &&
            has_addr(c, r, q.street, q.has_unit ? q.unit : NULL, q.has_city ? q.city : NULL,
                     q.has_state ? q.state : NULL, q.has_zip ? q.zip : NULL)) {
            m |= M_STREET | (q.has_unit ? M_UNIT : 0) | (q.has_city ? M_CITY : 0) |
                 (q.has_state ? M_STATE : 0) | (q.has_zip ? M_ZIP : 0);
            w += 1;
        }
        if (q.has_name && strcmp(r->norm_last, q.last) == 0 &&
            idl_nick_match(q.first, r->norm_first)) {
            m |= M_FIRST | M_LAST;
            w += strcmp(r->norm_first, q.first) == 0 ? 1.0 : 0.9;
        }
        if (!g_addr && (q.has_city || q.has_state || q.has_zip || q.has_street)) {
            /* Without an address group, city/state/zip narrow the search. */
            if (!has_addr(c, r, q.has_street ? q.street : NULL, q.has_unit ? q.unit : NULL,
                          q.has_city ? q.city : NULL, q.has_state ? q.state : NULL,
                          q.has_zip ? q.zip : NULL))
                continue;
            m |= (q.has_street ? M_STREET : 0) | (q.has_unit ? M_UNIT : 0) |
                 (q.has_city ? M_CITY : 0) | (q.has_state ? M_STATE : 0) | (q.has_zip ? M_ZIP : 0);
        }
        if (w <= 0) continue; /* reached only through a hidden identifier */
        double score = w / groups;
        if (score < min_score) continue;
        sc->hits[nh] = (struct idld_hit){sc->cand[i], score, m, r == &sc->tmp ? -1 : (int)cached};
        if (r != &sc->tmp) cached++;
        nh++;
    }
    qsort(sc->hits, nh, sizeof sc->hits[0], cmp_hit);
    size_t shown = nh < limit ? nh : (size_t)limit;
    msgpack_pack_map(c->pk, 2);
    idl_wire_pack_cstr(c->pk, "persons");
    msgpack_pack_array(c->pk, shown);
    for (size_t i = 0; i < shown; i++) {
        struct idld_hit *h = &sc->hits[i];
        const idl_record *r = h->slot >= 0 ? &sc->recs[h->slot] : NULL;
        if (!r) {
            if (idl_store_get(c->st->store, h->pid, &sc->tmp) != IDL_OK)
                return idld_fail(c, IDL_UNAVAILABLE, NULL, "the store cannot be read");
            r = &sc->tmp;
        }
        render_person(c, r, h->pid, h->score, h->matched, &t);
        if (c->log && c->log->n_pids < IDL_QLOG_MAX_PIDS) c->log->pids[c->log->n_pids++] = h->pid;
    }
    if (c->log) c->log->n_persons = (uint32_t)shown;
    idl_wire_pack_cstr(c->pk, "total");
    msgpack_pack_uint64(c->pk, nh);
    return IDL_OK;
}

/* ---- Validate ---- */

/* Sets *any when a visible person holds key k (and, for addresses, the
 * unit).  Returns 0, or UNAVAILABLE (message set) when the store cannot be
 * read: "unknown" is an answer, and must not stand in for "unreadable". */
static int known(idld_call *c, const idl_hkey *k, const idl_address *addr, idl_line_type *rec_type,
                 const char *phone, bool *anyp)
{
    *anyp = false;
    if (key_hidden(c, k)) {
        /* As probe_into: a suppressed key costs what an absent one costs. */
        if (idl_store_probe_absent(c->st->store, k))
            return idld_fail(c, IDL_UNAVAILABLE, NULL, "the store cannot be read");
        return IDL_OK;
    }
    size_t n = 0;
    uint64_t *cand = c->scratch->probe;
    if (idl_store_probe(c->st->store, k, cand, 64, &n, NULL))
        return idld_fail(c, IDL_UNAVAILABLE, NULL, "the store cannot be read");
    day t;
    idl_today(&t.y, &t.m, &t.d);
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        idl_record *r = &c->scratch->tmp;
        bool shown;
        int rc = visible(c, cand[i], r, &t, &shown);
        if (rc) return rc;
        if (!shown) continue;
        if (addr && !has_addr(c, r, addr->street, addr->unit[0] ? addr->unit : NULL,
                              addr->city[0] ? addr->city : NULL,
                              addr->state[0] ? addr->state : NULL, addr->zip[0] ? addr->zip : NULL))
            continue;
        if (phone && rec_type) {
            for (int p = 0; p < r->n_phones; p++)
                if (strcmp(r->phones[p].number, phone) == 0 &&
                    r->phones[p].rec_type != IDL_LINE_UNKNOWN && *rec_type == IDL_LINE_UNKNOWN)
                    *rec_type = r->phones[p].rec_type;
        }
        any = true;
        if (!rec_type) break;
    }
    *anyp = any;
    return IDL_OK;
}

static void pack_kv_bool(msgpack_packer *pk, const char *k, bool v)
{
    idl_wire_pack_cstr(pk, k);
    if (v)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

int idld_validate(idld_call *c)
{
    idl_field f[3] = {
        {"email", IDL_FT_STR, NULL}, {"phone", IDL_FT_STR, NULL}, {"address", IDL_FT_MAP, NULL}};
    if (idl_wire_fields(c->body, f, 3, c->msg, c->field)) return IDL_INVALID_ARGUMENT;
    if (!f[0].val && !f[1].val && !f[2].val)
        return idld_fail(c, IDL_INVALID_ARGUMENT, NULL,
                         "give at least one of 'email', 'phone', 'address'");
    /* Parse the address parts before packing anything, so a malformed
     * address fails the call cleanly. */
    char parts[5][IDL_NORM_STREET_MAX];
    const char *pp[5] = {NULL, NULL, NULL, NULL, NULL};
    if (f[2].val) {
        idl_field af[5] = {{"street", IDL_FT_STR, NULL},
                           {"unit", IDL_FT_STR, NULL},
                           {"city", IDL_FT_STR, NULL},
                           {"state", IDL_FT_STR, NULL},
                           {"zip", IDL_FT_STR, NULL}};
        char m2[IDL_ERR_MAX], fld[64] = "";
        if (idl_wire_fields(f[2].val, af, 5, m2, fld))
            return idld_fail(c, IDL_INVALID_ARGUMENT, "address", "field 'address': %s", m2);
        for (int i = 0; i < 5; i++) {
            if (!af[i].val) continue;
            if (idl_wire_str(af[i].val, parts[i], sizeof parts[i]))
                return idld_fail(c, IDL_INVALID_ARGUMENT, "address",
                                 "field 'address.%s' is too long", af[i].name);
            pp[i] = parts[i];
        }
    }
    char raw[512];
    int rc;
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, (f[0].val != NULL) + (f[1].val != NULL) + (f[2].val != NULL));
    if (f[0].val) {
        char norm[IDL_NORM_EMAIL_MAX];
        const char *why = "too long";
        bool ok = idl_wire_str(f[0].val, raw, sizeof raw) == IDL_OK &&
                  idl_norm_email(raw, strlen(raw), norm, &why) == IDL_OK;
        idld_fingerprint(c, "email", ok ? norm : raw);
        idl_hkey k;
        bool kn = false;
        if (ok) {
            idl_hkey_make(&k, "email", norm);
            if ((rc = known(c, &k, NULL, NULL, NULL, &kn))) return rc;
        }
        idl_wire_pack_cstr(pk, "email");
        msgpack_pack_map(pk, 4);
        pack_kv_bool(pk, "valid", ok);
        idl_wire_pack_cstr(pk, "normalized");
        idl_wire_pack_cstr(pk, ok ? norm : NULL);
        idl_wire_pack_cstr(pk, "reason");
        idl_wire_pack_cstr(pk, ok ? NULL : why);
        pack_kv_bool(pk, "known", kn);
    }
    if (f[1].val) {
        char norm[IDL_NORM_PHONE_MAX], country[3] = "";
        const char *why = "too long";
        idl_line_type plan = IDL_LINE_UNKNOWN, rec = IDL_LINE_UNKNOWN;
        bool ok = idl_wire_str(f[1].val, raw, sizeof raw) == IDL_OK &&
                  idl_norm_phone(raw, strlen(raw), norm, &plan, country, &why) == IDL_OK;
        idld_fingerprint(c, "phone", ok ? norm : raw);
        bool kn = false;
        if (ok) {
            idl_hkey k;
            idl_hkey_make(&k, "phone", norm);
            if ((rc = known(c, &k, NULL, &rec, norm, &kn))) return rc;
        }
        idl_wire_pack_cstr(pk, "phone");
        msgpack_pack_map(pk, 6);
        pack_kv_bool(pk, "valid", ok);
        idl_wire_pack_cstr(pk, "normalized");
        idl_wire_pack_cstr(pk, ok ? norm : NULL);
        idl_wire_pack_cstr(pk, "reason");
        idl_wire_pack_cstr(pk, ok ? NULL : why);
        pack_kv_bool(pk, "known", kn);
        idl_wire_pack_cstr(pk, "country");
        idl_wire_pack_cstr(pk, ok && country[0] ? country : NULL);
        idl_wire_pack_cstr(pk, "line_type");
        idl_wire_pack_cstr(pk, idl_line_type_name(!ok                        ? IDL_LINE_UNKNOWN
                                                  : plan != IDL_LINE_UNKNOWN ? plan
                                                                             : rec));
    }
    if (f[2].val) {
        idl_address a;
        const char *why = NULL;
        bool ok = idl_norm_address(pp[0], pp[1], pp[2], pp[3], pp[4], &a, &why) == IDL_OK;
        const char *names[5] = {"street", "unit", "city", "state", "zip"};
        const char *norm[5] = {a.street, a.unit, a.city, a.state, a.zip};
        for (int i = 0; i < 5; i++)
            if (pp[i]) idld_fingerprint(c, names[i], ok ? norm[i] : pp[i]);
        bool kn = false;
        if (ok) {
            idl_hkey k;
            if (a.zip[0])
                idl_hkey_addr(&k, a.street, a.zip);
            else
                idl_hkey_addrcs(&k, a.street, a.city, a.state);
            if ((rc = known(c, &k, &a, NULL, NULL, &kn))) return rc;
        }
        idl_wire_pack_cstr(pk, "address");
        msgpack_pack_map(pk, 4);
        pack_kv_bool(pk, "valid", ok);
        idl_wire_pack_cstr(pk, "normalized");
        if (ok)
            pack_addr(pk, &a);
        else
            msgpack_pack_nil(pk);
        idl_wire_pack_cstr(pk, "reason");
        idl_wire_pack_cstr(pk, ok ? NULL : why);
        pack_kv_bool(pk, "known", kn);
    }
    return IDL_OK;
}

/* ---- Verify ---- */

enum { G_NAME, G_EMAIL, G_PHONE, G_ADDR, G_DOB, G_COUNT };
static const char *const group_names[G_COUNT] = {"name", "email", "phone", "address", "dob"};

typedef struct {
    idld_call *c;
    const idld_query *q;
    bool g_addr, has_dob;
    int dy, dm, dd;
    const day *t;
    bool hidden[G_COUNT];
    bool any_holder[G_COUNT];
    int best_n;
    bool best_name;
    uint64_t best_pid;
    bool best_m[G_COUNT];
    bool best_has_dob;
} verify_state;

/* Scores one candidate against the supplied groups and keeps the best:
 * most groups, then a matching name, then the lowest id.  Returns 0, or the
 * failure of a read (message set). */
static int verify_consider(verify_state *v, uint64_t pid)
{
    idld_call *c = v->c;
    const idld_query *q = v->q;
    idl_record *r = &c->scratch->tmp;
    bool shown;
    int rc = visible(c, pid, r, v->t, &shown);
    if (rc || !shown) return rc;
    bool m[G_COUNT] = {false};
    m[G_NAME] = idl_name_match(q->first, r->norm_first, true) &&
                idl_name_match(q->last, r->norm_last, false);
    m[G_EMAIL] = q->has_email && !v->hidden[G_EMAIL] && idld_has_email(r, q->email);
    m[G_PHONE] = q->has_phone && !v->hidden[G_PHONE] && idld_has_phone(r, q->phone);
    m[G_ADDR] = v->g_addr && has_addr(c, r, q->street, q->has_unit ? q->unit : NULL,
                                      q->has_city ? q->city : NULL, q->has_state ? q->state : NULL,
                                      q->has_zip ? q->zip : NULL);
    m[G_DOB] = v->has_dob && r->dob_y == v->dy && r->dob_m == v->dm && r->dob_d == v->dd;
    for (int g = G_EMAIL; g <= G_ADDR; g++)
        v->any_holder[g] |= m[g];
    int cnt = 0;
    for (int g = 0; g < G_COUNT; g++)
        cnt += m[g];
    /* Someone who matches no supplied group is not a match at all (and must
     * not answer for, say, a date of birth). */
    if (cnt == 0) return IDL_OK;
    bool better = cnt > v->best_n || (cnt == v->best_n && m[G_NAME] && !v->best_name) ||
                  (cnt == v->best_n && m[G_NAME] == v->best_name && pid < v->best_pid);
    if (better) {
        v->best_n = cnt;
        v->best_name = m[G_NAME];
        v->best_pid = pid;
        memcpy(v->best_m, m, sizeof m);
        v->best_has_dob = r->dob_y != 0;
    }
    return IDL_OK;
}

int idld_verify(idld_call *c)
{
    idl_field f[10] = {{"first_name", IDL_FT_STR, NULL}, {"last_name", IDL_FT_STR, NULL},
                       {"email", IDL_FT_STR, NULL},      {"phone", IDL_FT_STR, NULL},
                       {"street", IDL_FT_STR, NULL},     {"unit", IDL_FT_STR, NULL},
                       {"city", IDL_FT_STR, NULL},       {"state", IDL_FT_STR, NULL},
                       {"zip", IDL_FT_STR, NULL},        {"dob", IDL_FT_STR, NULL}};
    if (idl_wire_fields(c->body, f, 10, c->msg, c->field)) return IDL_INVALID_ARGUMENT;
    if (!f[0].val)
        return idld_fail(c, IDL_INVALID_ARGUMENT, "first_name",
                         "missing required field 'first_name'");
    if (!f[1].val)
        return idld_fail(c, IDL_INVALID_ARGUMENT, "last_name",
                         "missing required field 'last_name'");
    int dy = 0, dm = 0, dd = 0;
    if (f[9].val) {
        if (idl_parse_date(f[9].val->via.str.ptr, f[9].val->via.str.size, &dy, &dm, &dd))
            return idld_fail(c, IDL_INVALID_ARGUMENT, "dob",
                             "field 'dob' must be a date YYYY-MM-DD");
        char dob[16];
        snprintf(dob, sizeof dob, "%04d-%02d-%02d", dy, dm, dd);
        idld_fingerprint(c, "dob", dob);
    }
    /* The identifier fields share Search's parser (and its fingerprints);
     * the name alone is always enough for it, so the rule below is Verify's. */
    idld_query q;
    int rc = idld_query_parse(c, f, 9, &q);
    if (rc) return rc;
    bool g_addr = q.has_street && (q.has_zip || (q.has_city && q.has_state));
    if (q.has_street && !g_addr)
        return idld_fail(c, IDL_INVALID_ARGUMENT, "street",
                         "field 'street' needs 'zip' (or 'city' and 'state')");
    if (!q.has_street && (q.has_city || q.has_state || q.has_zip || q.has_unit))
        return idld_fail(c, IDL_INVALID_ARGUMENT,
                         q.has_zip    ? "zip"
                         : q.has_city ? "city"
                                      : "state",
                         "address parts need 'street'");
    bool supplied[G_COUNT] = {true, q.has_email, q.has_phone, g_addr, f[9].val != NULL};
    if (!supplied[G_EMAIL] && !supplied[G_PHONE] && !supplied[G_ADDR] && !supplied[G_DOB])
        return idld_fail(
            c, IDL_INVALID_ARGUMENT, NULL,
            "give at least one of 'email', 'phone', 'street' with 'zip' (or 'city' and "
            "'state'), 'dob' besides the name");

    size_t nc = 0;
    idl_hkey k[G_COUNT];
    bool any_holder[G_COUNT] = {false}, hidden[G_COUNT] = {false};
    size_t cut[G_COUNT + 1] = {0};
    if (q.has_email) {
        idl_hkey_make(&k[G_EMAIL], "email", q.email);
        hidden[G_EMAIL] = key_hidden(c, &k[G_EMAIL]);
        if ((rc = probe_into(c, &k[G_EMAIL], &nc))) return rc;
    }
    cut[G_EMAIL] = nc;
    if (q.has_phone) {
        idl_hkey_make(&k[G_PHONE], "phone", q.phone);
        hidden[G_PHONE] = key_hidden(c, &k[G_PHONE]);
        if ((rc = probe_into(c, &k[G_PHONE], &nc))) return rc;
    }
    cut[G_PHONE] = nc;
    if (g_addr) {
        if (q.has_zip)
            idl_hkey_addr(&k[G_ADDR], q.street, q.zip);
        else
            idl_hkey_addrcs(&k[G_ADDR], q.street, q.city, q.state);
        if ((rc = probe_into(c, &k[G_ADDR], &nc))) return rc;
    }
    size_t nid = uniq(c->scratch->cand, nc);

    day t;
    idl_today(&t.y, &t.m, &t.d);
    verify_state v = {.c = c,
                      .q = &q,
                      .g_addr = g_addr,
                      .dy = dy,
                      .dm = dm,
                      .dd = dd,
                      .has_dob = supplied[G_DOB],
                      .t = &t,
                      .best_n = -1};
    memcpy(v.hidden, hidden, sizeof hidden);
    for (size_t i = 0; i < nid; i++)
        if ((rc = verify_consider(&v, c->scratch->cand[i]))) return rc;
    for (int g = G_EMAIL; g <= G_ADDR; g++)
        any_holder[g] = v.any_holder[g];

    /* Everyone holding a supplied email, phone or address is already
     * considered; anyone else can match at most the name and the dob.  So
     * the name probes (which fan out for common names) run only when they
     * could still change the pick. */
    int bound = 1 + supplied[G_DOB];
    if (v.best_n <= bound) {
        /* Names: exact and nickname matches, then the keys that find one
         * typo in either name (the other name exact), then everyone born
         * that day (which finds a typo in both). */
        const char *gr[16];
        size_t ng = idl_nick_groups(q.first, gr, 16);
        char fi[8], li[8];
        idl_initial(q.first, fi);
        idl_initial(q.last, li);
        idl_hkey nk;
        nc = nid;
        for (size_t g = 0; g < ng; g++) {
            idl_hkey_name(&nk, q.last, gr[g]);
            if ((rc = probe_into(c, &nk, &nc))) return rc;
            idl_hkey_pair(&nk, "fgl", gr[g], li);
            if ((rc = probe_into(c, &nk, &nc))) return rc;
        }
        idl_hkey_pair(&nk, "lnf", q.last, fi);
        if ((rc = probe_into(c, &nk, &nc))) return rc;
        if (supplied[G_DOB]) {
            char dob[16];
            snprintf(dob, sizeof dob, "%04d-%02d-%02d", dy, dm, dd);
            idl_hkey_pair(&nk, "dob", dob, "");
            if ((rc = probe_into(c, &nk, &nc))) return rc;
        }
        size_t nn = uniq(c->scratch->cand + nid, nc - nid);
        for (size_t i = nid; i < nid + nn; i++) {
            uint64_t pid = c->scratch->cand[i];
            if (bsearch(&pid, c->scratch->cand, nid, sizeof pid, cmp_u64))
                continue; /* already considered */
            /* At the bound, a newcomer can only win a tie on a lower id. */
            if (v.best_n == bound && v.best_name && pid > v.best_pid) continue;
            if ((rc = verify_consider(&v, pid))) return rc;
        }
    }
    int best_n = v.best_n;
    bool best_m[G_COUNT];
    memcpy(best_m, v.best_m, sizeof best_m);
    bool best_has_dob = v.best_has_dob;
    bool picked = best_n >= 0;
    /* Identifiers held by nobody visible among the candidates may still be
     * held by someone: the candidates include every holder, so any_holder is
     * exact for email, phone and address. */
    const char *check[G_COUNT];
    int matched = 0, total = 0;
    for (int g = 0; g < G_COUNT; g++) {
        if (!supplied[g]) continue;
        total++;
        bool m = picked && best_m[g];
        matched += m;
        if (m)
            check[g] = "match";
        else if (g == G_NAME)
            check[g] = picked ? "no_match" : "not_found";
        else if (g == G_DOB)
            check[g] = picked && best_has_dob ? "no_match" : "not_found";
        else
            check[g] = any_holder[g] ? "no_match" : "not_found";
    }
    bool name_ok = picked && best_m[G_NAME];
    int others = total - 1, others_matched = matched - (name_ok ? 1 : 0);
    const char *verdict = !name_ok || others_matched == 0 ? "not_verified"
                          : others_matched == others      ? "verified"
                                                          : "partial";
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 3);
    idl_wire_pack_cstr(pk, "verdict");
    idl_wire_pack_cstr(pk, verdict);
    idl_wire_pack_cstr(pk, "score");
    msgpack_pack_uint32(pk, (uint32_t)lround(100.0 * matched / total));
    idl_wire_pack_cstr(pk, "checks");
    msgpack_pack_map(pk, (size_t)total);
    for (int g = 0; g < G_COUNT; g++) {
        if (!supplied[g]) continue;
        idl_wire_pack_cstr(pk, group_names[g]);
        idl_wire_pack_cstr(pk, check[g]);
    }
    (void)cut;
    return IDL_OK;
}
