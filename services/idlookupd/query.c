/* Identifier sets shared by Search, OptOut and Disclosures: parsing with the
 * "enough to search on" rule, and finding every person holding all of them. */
#include "query.h"
#include "call.h"
#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int idld_query_parse(idld_call *c, const idl_field *fields, size_t n, idld_query *q)
{
    memset(q, 0, sizeof(*q));
    char raw[512];
    const char *why = NULL;
    const msgpack_object *o;
    int rc;
    if ((o = fget(fields, n, "email"))) {
        if ((rc = take_str(c, o, "email", raw, sizeof raw))) return rc;
        int bad = idl_norm_email(raw, strlen(raw), q->email, &why);
        idld_fingerprint(c, "email", bad ? raw : q->email);
        if (bad)
            return idld_fail(c, IDL_INVALID_ARGUMENT, "email",
                             "field 'email' is not a valid email: %s", why);
        q->has_email = true;
    }
    if ((o = fget(fields, n, "phone"))) {
        if ((rc = take_str(c, o, "phone", raw, sizeof raw))) return rc;
        idl_line_type t;
        int bad = idl_norm_phone(raw, strlen(raw), q->phone, &t, NULL, &why);
        idld_fingerprint(c, "phone", bad ? raw : q->phone);
        if (bad)
            return idld_fail(c, IDL_INVALID_ARGUMENT, "phone",
                             "field 'phone' is not a valid phone number: %s", why);
        q->has_phone = true;
    }
    if ((o = fget(fields, n, "ip"))) {
        if ((rc = take_str(c, o, "ip", raw, sizeof raw))) return rc;
        int bad = idl_norm_ip(raw, strlen(raw), q->ip, &why);
        idld_fingerprint(c, "ip", bad ? raw : q->ip);
        if (bad)
            return idld_fail(c, IDL_INVALID_ARGUMENT, "ip",
                             "field 'ip' is not a valid IP address: %s", why);
        q->has_ip = true;
    }
    const msgpack_object *first = fget(fields, n, "first_name"),
                         *last = fget(fields, n, "last_name");
    if (first) {
        if ((rc = take_str(c, first, "first_name", raw, sizeof raw))) return rc;
        int bad = idl_norm_name(raw, strlen(raw), q->first, &why);
        idld_fingerprint(c, "first_name", bad ? raw : q->first);
        if (bad)
            return idld_fail(c, IDL_INVALID_ARGUMENT, "first_name", "field 'first_name': %s", why);
    }
    if (last) {
        if ((rc = take_str(c, last, "last_name", raw, sizeof raw))) return rc;
        int bad = idl_norm_name(raw, strlen(raw), q->last, &why);
        idld_fingerprint(c, "last_name", bad ? raw : q->last);
        if (bad)
            return idld_fail(c, IDL_INVALID_ARGUMENT, "last_name", "field 'last_name': %s", why);
    }
    q->has_name = first && last;
    if ((o = fget(fields, n, "city"))) {
        if ((rc = take_str(c, o, "city", raw, sizeof raw))) return rc;
        int bad = idl_norm_city(raw, q->city, &why);
        idld_fingerprint(c, "city", bad ? raw : q->city);
        if (bad) return idld_fail(c, IDL_INVALID_ARGUMENT, "city", "field 'city': %s", why);
        q->has_city = true;
    }
    if ((o = fget(fields, n, "state"))) {
        if ((rc = take_str(c, o, "state", raw, sizeof raw))) return rc;
        int bad = idl_norm_state(raw, q->state, &why);
        idld_fingerprint(c, "state", bad ? raw : q->state);
        if (bad) return idld_fail(c, IDL_INVALID_ARGUMENT, "state", "field 'state': %s", why);
        q->has_state = true;
    }
    if ((o = fget(fields, n, "zip"))) {
        if ((rc = take_str(c, o, "zip", raw, sizeof raw))) return rc;
        int bad = idl_norm_zip(raw, q->zip, &why);
        idld_fingerprint(c, "zip", bad ? raw : q->zip);
        if (bad) return idld_fail(c, IDL_INVALID_ARGUMENT, "zip", "field 'zip': %s", why);
        q->has_zip = true;
    }
    const msgpack_object *street = fget(fields, n, "street"), *unit = fget(fields, n, "unit");
    if (street || unit) {
        char ustr[128] = "";
        if (unit && (rc = take_str(c, unit, "unit", ustr, sizeof ustr))) return rc;
        if (!street)
            return idld_fail(c, IDL_INVALID_ARGUMENT, "unit", "field 'unit' needs 'street'");
        if ((rc = take_str(c, street, "street", raw, sizeof raw))) return rc;
        int bad = idl_norm_street(raw, unit ? ustr : NULL, q->street, q->unit, &why);
        idld_fingerprint(c, "street", bad ? raw : q->street);
        if (unit) idld_fingerprint(c, "unit", bad ? ustr : q->unit);
        if (bad) return idld_fail(c, IDL_INVALID_ARGUMENT, "street", "field 'street': %s", why);
        q->has_street = true;
        q->has_unit = q->unit[0] != 0;
    }
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
    if (q->has_email && n < max) idl_hkey_make(&keys[n++], "email", q->email);
    if (q->has_phone && n < max) idl_hkey_make(&keys[n++], "phone", q->phone);
    if (q->has_ip && n < max) idl_hkey_make(&keys[n++], "ip", q->ip);
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
