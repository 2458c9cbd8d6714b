/* Identifier sets shared by Search, OptOut and Disclosures: the identifier
 * table with its normalizers bound, parsing with the "enough to search on"
 * rule, and finding every person holding all of them. */
#include "query.h"
#include "call.h"
#include "status.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Each row's normalizer, in one shape: raw (NUL-terminated) into out, or
 * non-zero with *why.  Street and unit are normalized together (by
 * parse_address), so they have none. */
typedef int (*norm_fn)(const char *raw, char *out, const char **why);

static int norm_email(const char *raw, char *out, const char **why)
{
    return idl_norm_email(raw, strlen(raw), out, why);
}

static int norm_phone(const char *raw, char *out, const char **why)
{
    idl_line_type t;
    return idl_norm_phone(raw, strlen(raw), out, &t, NULL, why);
}

static int norm_ip(const char *raw, char *out, const char **why)
{
    return idl_norm_ip(raw, strlen(raw), out, why);
}

static int norm_name(const char *raw, char *out, const char **why)
{
    return idl_norm_name(raw, strlen(raw), out, why);
}

/* The normalizer column of the table, bound here: each row's normalizer and
 * what a good value is, for the message naming a bad one (NULL: the
 * normalizer's reason alone). */
#define NORM_EMAIL norm_email, "a valid email"
#define NORM_PHONE norm_phone, "a valid phone number"
#define NORM_IP norm_ip, "a valid IP address"
#define NORM_FIRST norm_name, NULL
#define NORM_LAST norm_name, NULL
#define NORM_STREET NULL, NULL
#define NORM_UNIT NULL, NULL
#define NORM_CITY idl_norm_city, NULL
#define NORM_STATE idl_norm_state, NULL
#define NORM_ZIP idl_norm_zip, NULL

typedef struct {
    const char *name;
    size_t value, has; /* offsets into idld_query */
    int check;
    size_t raw_max;
    const char *key;
    norm_fn norm;
    const char *must_be;
} ident;

#define ROW(id, name, member, check, raw_max, key)                                                 \
    [IDLD_ID_##id] = {name,                                                                        \
                      offsetof(idld_query, member),                                                \
                      offsetof(idld_query, has_##member),                                          \
                      check,                                                                       \
                      raw_max,                                                                     \
                      key,                                                                         \
                      NORM_##id},
static const ident idents[IDLD_IDENT_COUNT] = {IDLD_IDENT_LIST(ROW)};
#undef ROW

const char *const idld_ident_names[IDLD_IDENT_COUNT] = {
#define NAME(id, name, member, check, raw_max, key) [IDLD_ID_##id] = name,
    IDLD_IDENT_LIST(NAME)
#undef NAME
};

void idld_ident_fields(idl_field *f)
{
    for (int i = 0; i < IDLD_IDENT_COUNT; i++)
        f[i] = (idl_field){idents[i].name, IDL_FT_STR, NULL};
}

static const msgpack_object *fget(const idl_field *f, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(f[i].name, name) == 0) return f[i].val;
    return NULL;
}

/* Copies a str field into a bounded buffer, failing with a message naming it. */
static int take_str(idld_call *c, const msgpack_object *o, const char *name, char *buf, size_t sz)
{
    if (idl_wire_str(o, buf, sz) != IDL_OK)
        return idld_fail(c, IDL_INVALID_ARGUMENT, name,
                         "field '%s' is too long (at most %zu bytes)", name, sz - 1);
    return IDL_OK;
}

/* Row d's normalized value in q, and whether it was given. */
static const char *value_of(const idld_query *q, const ident *d)
{
    return (const char *)q + d->value;
}

static bool given(const idld_query *q, const ident *d)
{
    return *(const bool *)((const char *)q + d->has);
}

/* One field on its own: taken, normalized, fingerprinted (the normalized
 * value, or the raw one when it is bad). */
static int parse_one(idld_call *c, const msgpack_object *o, const ident *d, idld_query *q)
{
    char raw[512];
    const char *why = NULL;
    int rc = take_str(c, o, d->name, raw, d->raw_max);
    if (rc) return rc;
    char *out = (char *)q + d->value;
    int bad = d->norm(raw, out, &why);
    idld_fingerprint(c, d->name, bad ? raw : out);
    if (bad && d->must_be)
        return idld_fail(c, IDL_INVALID_ARGUMENT, d->name, "field '%s' is not %s: %s", d->name,
                         d->must_be, why);
    if (bad) return idld_fail(c, IDL_INVALID_ARGUMENT, d->name, "field '%s': %s", d->name, why);
    *(bool *)((char *)q + d->has) = true;
    return IDL_OK;
}

/* Street and unit, normalized together: a unit needs a street. */
static int parse_address(idld_call *c, const msgpack_object *street, const msgpack_object *unit,
                         idld_query *q)
{
    const ident *ds = &idents[IDLD_ID_STREET], *du = &idents[IDLD_ID_UNIT];
    char raw[512], ustr[128] = "";
    const char *why = NULL;
    int rc;
    if (unit && (rc = take_str(c, unit, du->name, ustr, du->raw_max))) return rc;
    if (!street) return idld_fail(c, IDL_INVALID_ARGUMENT, "unit", "field 'unit' needs 'street'");
    if ((rc = take_str(c, street, ds->name, raw, ds->raw_max))) return rc;
    int bad = idl_norm_street(raw, unit ? ustr : NULL, q->street, q->unit, &why);
    idld_fingerprint(c, "street", bad ? raw : q->street);
    if (unit) idld_fingerprint(c, "unit", bad ? ustr : q->unit);
    if (bad) return idld_fail(c, IDL_INVALID_ARGUMENT, "street", "field 'street': %s", why);
    q->has_street = true;
    q->has_unit = q->unit[0] != 0;
    return IDL_OK;
}

int idld_query_parse(idld_call *c, const idl_field *fields, size_t n, idld_query *q)
{
    memset(q, 0, sizeof(*q));
    const msgpack_object *val[IDLD_IDENT_COUNT];
    for (int i = 0; i < IDLD_IDENT_COUNT; i++)
        val[i] = fget(fields, n, idents[i].name);
    for (int check = 0; check < IDLD_IDENT_COUNT; check++) {
        for (int i = 0; i < IDLD_IDENT_COUNT; i++) {
            if (idents[i].check != check) continue;
            int rc = IDL_OK;
            if (i == IDLD_ID_STREET) {
                if (val[IDLD_ID_STREET] || val[IDLD_ID_UNIT])
                    rc = parse_address(c, val[IDLD_ID_STREET], val[IDLD_ID_UNIT], q);
            } else if (idents[i].norm && val[i]) {
                rc = parse_one(c, val[i], &idents[i], q);
            }
            if (rc) return rc;
        }
    }
    q->has_name = q->has_first && q->has_last;
    bool addr = q->has_street && (q->has_zip || (q->has_city && q->has_state));
    if (!(q->has_email || q->has_phone || q->has_ip || addr || q->has_name))
        return idld_fail(c, IDL_INVALID_ARGUMENT, NULL,
                         "not enough to search on: give email, phone, ip, street with zip (or with "
                         "city and state), or first_name with last_name");
    return IDL_OK;
}

size_t idld_query_keys(const idld_query *q, idl_hkey *keys, size_t max)
{
    size_t n = 0;
    for (int i = 0; i < IDLD_IDENT_COUNT; i++)
        if (idents[i].key && given(q, &idents[i]) && n < max)
            idl_hkey_make(&keys[n++], idents[i].key, value_of(q, &idents[i]));
    if (q->has_street && q->has_zip && n < max) idl_hkey_addr(&keys[n++], q->street, q->zip);
    if (q->has_street && q->has_city && q->has_state && n < max)
        idl_hkey_addrcs(&keys[n++], q->street, q->city, q->state);
    return n;
}

bool idld_has_email(const idl_record *r, const char *email)
{
    for (int i = 0; i < r->n_emails; i++)
        if (strcmp(r->emails[i], email) == 0) return true;
    return false;
}

bool idld_has_phone(const idl_record *r, const char *e164)
{
    for (int i = 0; i < r->n_phones; i++)
        if (strcmp(r->phones[i].number, e164) == 0) return true;
    return false;
}

bool idld_has_ip(const idl_record *r, const char *ip)
{
    for (int i = 0; i < r->n_ips; i++)
        if (strcmp(r->ips[i], ip) == 0) return true;
    return false;
}

bool idld_addr_agrees(const idl_address *a, const char *street, const char *unit, const char *city,
                      const char *state, const char *zip)
{
    return (!street || strcmp(a->street, street) == 0) && (!unit || strcmp(a->unit, unit) == 0) &&
           (!city || strcmp(a->city, city) == 0) && (!state || strcmp(a->state, state) == 0) &&
           (!zip || strcmp(a->zip, zip) == 0);
}

/* Every given group at once, names exactly (OptOut and Disclosures act on
 * precisely the persons named, never on nickname or typo matches). */
static bool holds_all(const idl_record *r, const idld_query *q)
{
    if ((q->has_email && !idld_has_email(r, q->email)) ||
        (q->has_phone && !idld_has_phone(r, q->phone)) || (q->has_ip && !idld_has_ip(r, q->ip)))
        return false;
    if (q->has_name && (strcmp(r->norm_first, q->first) || strcmp(r->norm_last, q->last)))
        return false;
    if (q->has_street || q->has_city || q->has_state || q->has_zip) {
        for (int i = 0; i < r->n_addrs; i++)
            if (idld_addr_agrees(&r->addrs[i], q->has_street ? q->street : NULL,
                                 q->has_unit ? q->unit : NULL, q->has_city ? q->city : NULL,
                                 q->has_state ? q->state : NULL, q->has_zip ? q->zip : NULL))
                return true;
        return false;
    }
    return true;
}

int idld_query_all(idld_call *c, const idld_query *q, uint64_t **pids, size_t *n)
{
    /* One probe on the most selective identifier gives the candidates (all
     * of them: no cap on the privacy path); each is then checked against
     * every group. */
    idl_hkey k;
    if (q->has_email)
        idl_hkey_make(&k, "email", q->email);
    else if (q->has_phone)
        idl_hkey_make(&k, "phone", q->phone);
    else if (q->has_ip)
        idl_hkey_make(&k, "ip", q->ip);
    else if (q->has_street && q->has_zip)
        idl_hkey_addr(&k, q->street, q->zip);
    else if (q->has_street && q->has_city && q->has_state)
        idl_hkey_addrcs(&k, q->street, q->city, q->state);
    else
        idl_hkey_name(&k, q->last, q->first);
    size_t nc = 0;
    uint64_t *cand = NULL;
    int rc = idl_store_probe_all(c->st->store, &k, &cand, &nc);
    if (rc) return idld_fail(c, IDL_UNAVAILABLE, NULL, "the store cannot be read");
    size_t out = 0;
    for (size_t i = 0; i < nc; i++) {
        int g = idl_store_get(c->st->store, cand[i], &c->scratch->tmp);
        if (g == IDL_NOT_FOUND) continue; /* filed, then deleted: a merge not folded yet */
        if (g != IDL_OK) {
            free(cand);
            return idld_fail(c, IDL_UNAVAILABLE, NULL, "the store cannot be read");
        }
        /* Kept in place: out never passes i. */
        if (holds_all(&c->scratch->tmp, q)) cand[out++] = cand[i];
    }
    *pids = cand;
    *n = out;
    return IDL_OK;
}
