/* Record parsing, validation and the store's serialization (see record.h). */
#include "record.h"
#include "status.h"
#include "wire.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- dates ---- */

static bool leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int idl_parse_date(const char *s, size_t len, int *y, int *m, int *d)
{
    if (len != 10 || s[4] != '-' || s[7] != '-') return IDL_INVALID_ARGUMENT;
    int v[3] = {0, 0, 0};
    const int pos[3] = {0, 5, 8}, n[3] = {4, 2, 2};
    for (int f = 0; f < 3; f++)
        for (int i = 0; i < n[f]; i++) {
            char c = s[pos[f] + i];
            if (c < '0' || c > '9') return IDL_INVALID_ARGUMENT;
            v[f] = v[f] * 10 + (c - '0');
        }
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (v[0] < 1800 || v[1] < 1 || v[1] > 12 || v[2] < 1) return IDL_INVALID_ARGUMENT;
    int md = mdays[v[1] - 1] + (v[1] == 2 && leap(v[0]));
    if (v[2] > md) return IDL_INVALID_ARGUMENT;
    *y = v[0];
    *m = v[1];
    *d = v[2];
    return IDL_OK;
}

void idl_today(int *y, int *m, int *d)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    *y = tm.tm_year + 1900;
    *m = tm.tm_mon + 1;
    *d = tm.tm_mday;
}

int idl_record_age(const idl_record *r, int y, int m, int d)
{
    if (!r->dob_y) return -1;
    int age = y - r->dob_y;
    if (m < r->dob_m || (m == r->dob_m && d < r->dob_d)) age--;
    return age;
}

bool idl_record_is_child(const idl_record *r, int y, int m, int d)
{
    if (r->minor) return true;
    int age = idl_record_age(r, y, m, d);
    return age >= 0 && age < 13;
}

/* ---- parsing ---- */

static void warnf(idl_record_warn_fn warn, void *ctx, const char *fmt, const char *a, const char *b)
{
    if (!warn) return;
    char buf[256];
    snprintf(buf, sizeof buf, fmt, a, b);
    warn(ctx, buf);
}

/* True when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates). */
static bool utf8_ok(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n || (len == 2 && c < 0xc2)) return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80) return false;
        if (len == 3 && ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] >= 0xa0)))
            return false;
        if (len == 4 &&
            ((c == 0xf0 && s[i + 1] < 0x90) || c > 0xf4 || (c == 0xf4 && s[i + 1] >= 0x90)))
            return false;
        i += len;
    }
    return true;
}

/* Copies a display string: trimmed, valid UTF-8, no control characters,
 * bounded.  Display strings go back out as msgpack str, which must be UTF-8. */
static int copy_display(const msgpack_object *o, char *out, size_t outsz)
{
    const char *p = o->via.str.ptr;
    size_t n = o->via.str.size;
    while (n && (*p == ' ' || *p == '\t'))
        p++, n--;
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (n == 0 || n >= outsz) return IDL_INVALID_ARGUMENT;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f) return IDL_INVALID_ARGUMENT;
    if (!utf8_ok((const unsigned char *)p, n)) return IDL_INVALID_ARGUMENT;
    memcpy(out, p, n);
    out[n] = 0;
    return IDL_OK;
}

static int cstr(const msgpack_object *o, char *buf, size_t bufsz)
{
    return idl_wire_str(o, buf, bufsz);
}

static void parse_emails(const msgpack_object *a, idl_record *r, idl_record_warn_fn warn, void *ctx)
{
    for (uint32_t i = 0; i < a->via.array.size; i++) {
        const msgpack_object *e = &a->via.array.ptr[i];
        char out[IDL_NORM_EMAIL_MAX];
        const char *why = "not a string";
        if (e->type == MSGPACK_OBJECT_STR &&
            idl_norm_email(e->via.str.ptr, e->via.str.size, out, &why) == IDL_OK) {
            bool dup = false;
            for (int k = 0; k < r->n_emails; k++)
                dup |= strcmp(r->emails[k], out) == 0;
            if (dup) continue;
            if (r->n_emails < IDL_REC_MAX_EMAILS) {
                memcpy(r->emails[r->n_emails++], out, sizeof out);
                continue;
            }
            why = "more emails than a record may hold (8)";
        }
        r->dropped++;
        warnf(warn, ctx, "emails: dropped an invalid email (%s)%s", why, "");
    }
}

static void parse_phones(const msgpack_object *a, idl_record *r, idl_record_warn_fn warn, void *ctx)
{
    for (uint32_t i = 0; i < a->via.array.size; i++) {
        const msgpack_object *e = &a->via.array.ptr[i], *num = NULL, *lt = NULL;
        const char *why = "not a string or a {number, line_type} map";
        idl_line_type rec_type = IDL_LINE_UNKNOWN;
        if (e->type == MSGPACK_OBJECT_STR) {
            num = e;
        } else if (e->type == MSGPACK_OBJECT_MAP) {
            for (uint32_t k = 0; k < e->via.map.size; k++) {
                const msgpack_object *key = &e->via.map.ptr[k].key;
                if (idl_wire_str_eq(key, "number"))
                    num = &e->via.map.ptr[k].val;
                else if (idl_wire_str_eq(key, "line_type"))
                    lt = &e->via.map.ptr[k].val;
            }
            if (num && num->type != MSGPACK_OBJECT_STR) num = NULL;
            if (lt && lt->type == MSGPACK_OBJECT_STR) {
                char t[16];
                if (cstr(lt, t, sizeof t) != IDL_OK || idl_line_type_parse(t, &rec_type) != IDL_OK)
                    warnf(warn, ctx, "phones: unknown line_type ignored%s%s", "", "");
            }
        }
        if (num) {
            idl_rec_phone p = {.rec_type = rec_type};
            if (idl_norm_phone(num->via.str.ptr, num->via.str.size, p.number, &p.plan_type, NULL,
                               &why) == IDL_OK) {
                bool dup = false;
                for (int k = 0; k < r->n_phones; k++)
                    dup |= strcmp(r->phones[k].number, p.number) == 0;
                if (dup) continue;
                if (r->n_phones < IDL_REC_MAX_PHONES) {
                    r->phones[r->n_phones++] = p;
                    continue;
                }
                why = "more phones than a record may hold (8)";
            }
        }
        r->dropped++;
        warnf(warn, ctx, "phones: dropped an invalid phone (%s)%s", why, "");
    }
}

/* Field by field: the bytes after each string's end are not defined. */
static bool same_address(const idl_address *a, const idl_address *b)
{
    return strcmp(a->street, b->street) == 0 && strcmp(a->unit, b->unit) == 0 &&
           strcmp(a->city, b->city) == 0 && strcmp(a->state, b->state) == 0 &&
           strcmp(a->zip, b->zip) == 0;
}

static void parse_addrs(const msgpack_object *a, idl_record *r, idl_record_warn_fn warn, void *ctx)
{
    for (uint32_t i = 0; i < a->via.array.size; i++) {
        const msgpack_object *e = &a->via.array.ptr[i];
        const char *why = "not a map";
        if (e->type == MSGPACK_OBJECT_MAP) {
            char part[5][IDL_NORM_STREET_MAX];
            const char *ptr[5] = {NULL, NULL, NULL, NULL, NULL};
            static const char *const names[5] = {"street", "unit", "city", "state", "zip"};
            why = NULL;
            for (uint32_t k = 0; k < e->via.map.size && !why; k++) {
                const msgpack_object *key = &e->via.map.ptr[k].key, *v = &e->via.map.ptr[k].val;
                int f;
                for (f = 0; f < 5; f++)
                    if (idl_wire_str_eq(key, names[f])) break;
                if (f == 5) {
                    why = "unknown address field";
                } else if (v->type == MSGPACK_OBJECT_NIL) {
                    continue;
                } else if (cstr(v, part[f], sizeof part[f]) != IDL_OK) {
                    why = "address parts must be strings of reasonable length";
                } else {
                    ptr[f] = part[f];
                }
            }
            idl_address ad;
            if (!why &&
                idl_norm_address(ptr[0], ptr[1], ptr[2], ptr[3], ptr[4], &ad, &why) == IDL_OK) {
                bool dup = false;
                for (int k = 0; k < r->n_addrs; k++)
                    dup |= same_address(&r->addrs[k], &ad);
                if (dup) continue;
                if (r->n_addrs < IDL_REC_MAX_ADDRS) {
                    r->addrs[r->n_addrs++] = ad;
                    continue;
                }
                why = "more addresses than a record may hold (4)";
            }
        }
        r->dropped++;
        warnf(warn, ctx, "addresses: dropped an invalid address (%s)%s", why, "");
    }
}

static void parse_ips(const msgpack_object *a, idl_record *r, idl_record_warn_fn warn, void *ctx)
{
    for (uint32_t i = 0; i < a->via.array.size; i++) {
        const msgpack_object *e = &a->via.array.ptr[i];
        char out[IDL_NORM_IP_MAX];
        const char *why = "not a string";
        if (e->type == MSGPACK_OBJECT_STR &&
            idl_norm_ip(e->via.str.ptr, e->via.str.size, out, &why) == IDL_OK) {
            bool dup = false;
            for (int k = 0; k < r->n_ips; k++)
                dup |= strcmp(r->ips[k], out) == 0;
            if (dup) continue;
            if (r->n_ips < IDL_REC_MAX_IPS) {
                memcpy(r->ips[r->n_ips++], out, sizeof out);
                continue;
            }
            why = "more ips than a record may hold (8)";
        }
        r->dropped++;
        warnf(warn, ctx, "ips: dropped an invalid ip (%s)%s", why, "");
    }
}

enum {
    F_SOURCE,
    F_FIRST,
    F_MIDDLE,
    F_LAST,
    F_DOB,
    F_EMAILS,
    F_PHONES,
    F_ADDRS,
    F_IPS,
    F_MINOR,
    F_N
};

int idl_record_parse(const msgpack_object *o, idl_record *r, idl_record_warn_fn warn, void *ctx,
                     char err[IDL_ERR_MAX])
{
    static const char *const names[F_N] = {"source_id", "first_name", "middle_name", "last_name",
                                           "dob",       "emails",     "phones",      "addresses",
                                           "ips",       "minor"};
    const msgpack_object *f[F_N] = {0};
    memset(r, 0, offsetof(idl_record, emails));
    r->n_emails = r->n_phones = r->n_addrs = r->n_ips = 0;
    r->dropped = 0;
    if (o->type != MSGPACK_OBJECT_MAP) {
        snprintf(err, IDL_ERR_MAX, "a record must be an object");
        return IDL_INVALID_ARGUMENT;
    }
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        int j;
        for (j = 0; j < F_N; j++)
            if (idl_wire_str_eq(k, names[j])) break;
        if (j == F_N) {
            char nm[64] = "?";
            /* Escaped: the warning goes back out in Upsert's reply, which
             * must be UTF-8 whatever the key's bytes (API.md §2). */
            if (k->type == MSGPACK_OBJECT_STR)
                idl_wire_utf8_escape(k->via.str.ptr, k->via.str.size, nm, 61);
            for (char *c = nm; *c; c++)
                if ((unsigned char)*c < 0x20) *c = '?';
            warnf(warn, ctx, "unknown field '%s' ignored (not stored)%s", nm, "");
            continue;
        }
        if (o->via.map.ptr[i].val.type != MSGPACK_OBJECT_NIL) f[j] = &o->via.map.ptr[i].val;
    }
    static const msgpack_object_type want[F_N] = {
        MSGPACK_OBJECT_STR,   MSGPACK_OBJECT_STR,    MSGPACK_OBJECT_STR,   MSGPACK_OBJECT_STR,
        MSGPACK_OBJECT_STR,   MSGPACK_OBJECT_ARRAY,  MSGPACK_OBJECT_ARRAY, MSGPACK_OBJECT_ARRAY,
        MSGPACK_OBJECT_ARRAY, MSGPACK_OBJECT_BOOLEAN};
    for (int j = 0; j < F_N; j++) {
        if (f[j] && f[j]->type != want[j]) {
            snprintf(err, IDL_ERR_MAX, "field '%s' must be %s", names[j],
                     want[j] == MSGPACK_OBJECT_STR     ? "a string"
                     : want[j] == MSGPACK_OBJECT_ARRAY ? "an array"
                                                       : "a boolean");
            return IDL_INVALID_ARGUMENT;
        }
    }
    const char *why = NULL;
    if (!f[F_SOURCE] || copy_display(f[F_SOURCE], r->source_id, sizeof r->source_id)) {
        snprintf(err, IDL_ERR_MAX,
                 "field 'source_id' is required (a non-empty string up to %d bytes)",
                 IDL_REC_SOURCE_MAX - 1);
        return IDL_INVALID_ARGUMENT;
    }
    if (!f[F_FIRST] || copy_display(f[F_FIRST], r->first_name, sizeof r->first_name) ||
        idl_norm_name(r->first_name, strlen(r->first_name), r->norm_first, &why)) {
        snprintf(err, IDL_ERR_MAX, "field 'first_name' is required (a non-empty name)");
        return IDL_INVALID_ARGUMENT;
    }
    if (!f[F_LAST] || copy_display(f[F_LAST], r->last_name, sizeof r->last_name) ||
        idl_norm_name(r->last_name, strlen(r->last_name), r->norm_last, &why)) {
        snprintf(err, IDL_ERR_MAX, "field 'last_name' is required (a non-empty name)");
        return IDL_INVALID_ARGUMENT;
    }
    bool blank_middle = true;
    for (uint32_t i = 0; f[F_MIDDLE] && i < f[F_MIDDLE]->via.str.size; i++)
        blank_middle &= f[F_MIDDLE]->via.str.ptr[i] == ' ' || f[F_MIDDLE]->via.str.ptr[i] == '\t';
    /* A blank middle name is no middle name. */
    if (!blank_middle && copy_display(f[F_MIDDLE], r->middle_name, sizeof r->middle_name)) {
        r->middle_name[0] = 0;
        snprintf(err, IDL_ERR_MAX,
                 "field 'middle_name' must be valid UTF-8 text of at most %zu bytes",
                 sizeof r->middle_name - 1);
        return IDL_INVALID_ARGUMENT;
    }
    if (f[F_DOB]) {
        if (idl_parse_date(f[F_DOB]->via.str.ptr, f[F_DOB]->via.str.size, &r->dob_y, &r->dob_m,
                           &r->dob_d)) {
            snprintf(err, IDL_ERR_MAX, "field 'dob' must be a calendar date YYYY-MM-DD");
            return IDL_INVALID_ARGUMENT;
        }
        int y, m, d;
        idl_today(&y, &m, &d);
        if (r->dob_y > y || (r->dob_y == y && (r->dob_m > m || (r->dob_m == m && r->dob_d > d)))) {
            snprintf(err, IDL_ERR_MAX, "field 'dob' is in the future");
            return IDL_INVALID_ARGUMENT;
        }
    }
    r->minor = f[F_MINOR] && f[F_MINOR]->via.boolean;
    if (f[F_EMAILS]) parse_emails(f[F_EMAILS], r, warn, ctx);
    if (f[F_PHONES]) parse_phones(f[F_PHONES], r, warn, ctx);
    if (f[F_ADDRS]) parse_addrs(f[F_ADDRS], r, warn, ctx);
    if (f[F_IPS]) parse_ips(f[F_IPS], r, warn, ctx);
    return IDL_OK;
}

/* ---- store format ----
 * A msgpack array: [1, source_id, first, middle|nil, last, norm_first, norm_last,
 * dob_y, dob_m, dob_d, minor, [emails], [[number, rec_type, plan_type]],
 * [[street, unit, city, state, zip]], [ips]].  Version 1 leads so the format
 * can grow. */

/* The store keeps its bytes as they are: idl_wire_pack_cstr would escape
 * malformed UTF-8 (for replies) and so change what reads back, and an
 * escaped string may no longer fit the fixed field it came from. */
static void pack_s(msgpack_packer *pk, const char *s)
{
    if (!s) {
        msgpack_pack_nil(pk);
        return;
    }
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void idl_record_pack(msgpack_packer *pk, const idl_record *r)
{
    msgpack_pack_array(pk, 15);
    msgpack_pack_uint8(pk, 1);
    pack_s(pk, r->source_id);
    pack_s(pk, r->first_name);
    pack_s(pk, r->middle_name[0] ? r->middle_name : NULL);
    pack_s(pk, r->last_name);
    pack_s(pk, r->norm_first);
    pack_s(pk, r->norm_last);
    msgpack_pack_int(pk, r->dob_y);
    msgpack_pack_int(pk, r->dob_m);
    msgpack_pack_int(pk, r->dob_d);
    if (r->minor)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    msgpack_pack_array(pk, (size_t)r->n_emails);
    for (int i = 0; i < r->n_emails; i++)
        pack_s(pk, r->emails[i]);
    msgpack_pack_array(pk, (size_t)r->n_phones);
    for (int i = 0; i < r->n_phones; i++) {
        msgpack_pack_array(pk, 3);
        pack_s(pk, r->phones[i].number);
        msgpack_pack_int(pk, (int)r->phones[i].rec_type);
        msgpack_pack_int(pk, (int)r->phones[i].plan_type);
    }
    msgpack_pack_array(pk, (size_t)r->n_addrs);
    for (int i = 0; i < r->n_addrs; i++) {
        const idl_address *a = &r->addrs[i];
        msgpack_pack_array(pk, 5);
        pack_s(pk, a->street);
        pack_s(pk, a->unit);
        pack_s(pk, a->city);
        pack_s(pk, a->state);
        pack_s(pk, a->zip);
    }
    msgpack_pack_array(pk, (size_t)r->n_ips);
    for (int i = 0; i < r->n_ips; i++)
        pack_s(pk, r->ips[i]);
}

/* A minimal reader for our own format: no allocation on the read path. */
typedef struct {
    const uint8_t *p, *end;
    bool bad;
} rd;

static uint64_t rd_be(rd *c, int n)
{
    if (c->end - c->p < n) {
        c->bad = true;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | *c->p++;
    return v;
}

static uint32_t rd_array(rd *c)
{
    if (c->p >= c->end) {
        c->bad = true;
        return 0;
    }
    uint8_t b = *c->p++;
    if ((b & 0xf0) == 0x90) return b & 0x0f;
    if (b == 0xdc) return (uint32_t)rd_be(c, 2);
    if (b == 0xdd) return (uint32_t)rd_be(c, 4);
    c->bad = true;
    return 0;
}

static int64_t rd_int(rd *c)
{
    if (c->p >= c->end) {
        c->bad = true;
        return 0;
    }
    uint8_t b = *c->p++;
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return (int8_t)b;
    switch (b) {
    case 0xcc:
        return (int64_t)rd_be(c, 1);
    case 0xcd:
        return (int64_t)rd_be(c, 2);
    case 0xce:
        return (int64_t)rd_be(c, 4);
    case 0xcf:
        return (int64_t)rd_be(c, 8);
    case 0xd0:
        return (int8_t)rd_be(c, 1);
    case 0xd1:
        return (int16_t)rd_be(c, 2);
    case 0xd2:
        return (int32_t)rd_be(c, 4);
    case 0xd3:
        return (int64_t)rd_be(c, 8);
    case 0xc2:
        return 0;
    case 0xc3:
        return 1;
    }
    c->bad = true;
    return 0;
}

/* Reads a str (or nil -> "") into out. */
static void rd_str(rd *c, char *out, size_t outsz)
{
    out[0] = 0;
    if (c->p >= c->end) {
        c->bad = true;
        return;
    }
    uint8_t b = *c->p++;
    size_t n;
    if (b == 0xc0) return;
    if ((b & 0xe0) == 0xa0)
        n = b & 0x1f;
    else if (b == 0xd9)
        n = (size_t)rd_be(c, 1);
    else if (b == 0xda)
        n = (size_t)rd_be(c, 2);
    else if (b == 0xdb)
        n = (size_t)rd_be(c, 4);
    else {
        c->bad = true;
        return;
    }
    if (c->bad || (size_t)(c->end - c->p) < n || n >= outsz) {
        c->bad = true;
        return;
    }
    memcpy(out, c->p, n);
    out[n] = 0;
    c->p += n;
}

int idl_record_renormalize(idl_record *r, bool *changed)
{
    bool ch = false;
    int n = 0;
    for (int i = 0; i < r->n_emails; i++) {
        char out[IDL_NORM_EMAIL_MAX];
        const char *why;
        if (idl_norm_email(r->emails[i], strlen(r->emails[i]), out, &why) != IDL_OK) {
            ch = true; /* invalid under today's rules: dropped, as ingest would */
            continue;
        }
        bool dup = false;
        for (int k = 0; k < n; k++)
            dup |= strcmp(r->emails[k], out) == 0;
        ch |= dup || strcmp(out, r->emails[i]) != 0;
        if (!dup) memcpy(r->emails[n++], out, sizeof out);
    }
    r->n_emails = n;
    n = 0;
    for (int i = 0; i < r->n_addrs; i++) {
        const idl_address *a = &r->addrs[i];
        idl_address ad;
        const char *why;
        if (idl_norm_address(a->street, a->unit[0] ? a->unit : NULL, a->city[0] ? a->city : NULL,
                             a->state[0] ? a->state : NULL, a->zip[0] ? a->zip : NULL, &ad,
                             &why) != IDL_OK) {
            ch = true;
            continue;
        }
        bool dup = false;
        for (int k = 0; k < n; k++)
            dup |= same_address(&r->addrs[k], &ad);
        ch |= dup || !same_address(&ad, a);
        if (!dup) r->addrs[n++] = ad;
    }
    r->n_addrs = n;
    *changed = ch;
    return IDL_OK;
}

int idl_record_unpack(const void *buf, size_t len, idl_record *r)
{
    rd c = {.p = buf, .end = (const uint8_t *)buf + len};
    if (rd_array(&c) != 15 || rd_int(&c) != 1) return IDL_DATA_LOSS;
    rd_str(&c, r->source_id, sizeof r->source_id);
    rd_str(&c, r->first_name, sizeof r->first_name);
    rd_str(&c, r->middle_name, sizeof r->middle_name);
    rd_str(&c, r->last_name, sizeof r->last_name);
    rd_str(&c, r->norm_first, sizeof r->norm_first);
    rd_str(&c, r->norm_last, sizeof r->norm_last);
    r->dob_y = (int)rd_int(&c);
    r->dob_m = (int)rd_int(&c);
    r->dob_d = (int)rd_int(&c);
    r->minor = rd_int(&c) != 0;
    r->dropped = 0;
    uint32_t n = rd_array(&c);
    if (n > IDL_REC_MAX_EMAILS) return IDL_DATA_LOSS;
    r->n_emails = (int)n;
    for (uint32_t i = 0; i < n; i++)
        rd_str(&c, r->emails[i], sizeof r->emails[i]);
    n = rd_array(&c);
    if (n > IDL_REC_MAX_PHONES) return IDL_DATA_LOSS;
    r->n_phones = (int)n;
    for (uint32_t i = 0; i < n; i++) {
        if (rd_array(&c) != 3) return IDL_DATA_LOSS;
        rd_str(&c, r->phones[i].number, sizeof r->phones[i].number);
        r->phones[i].rec_type = (idl_line_type)rd_int(&c);
        r->phones[i].plan_type = (idl_line_type)rd_int(&c);
    }
    n = rd_array(&c);
    if (n > IDL_REC_MAX_ADDRS) return IDL_DATA_LOSS;
    r->n_addrs = (int)n;
    for (uint32_t i = 0; i < n; i++) {
        idl_address *a = &r->addrs[i];
        if (rd_array(&c) != 5) return IDL_DATA_LOSS;
        rd_str(&c, a->street, sizeof a->street);
        rd_str(&c, a->unit, sizeof a->unit);
        rd_str(&c, a->city, sizeof a->city);
        rd_str(&c, a->state, sizeof a->state);
        rd_str(&c, a->zip, sizeof a->zip);
    }
    n = rd_array(&c);
    if (n > IDL_REC_MAX_IPS) return IDL_DATA_LOSS;
    r->n_ips = (int)n;
    for (uint32_t i = 0; i < n; i++)
        rd_str(&c, r->ips[i], sizeof r->ips[i]);
    return c.bad ? IDL_DATA_LOSS : IDL_OK;
}
