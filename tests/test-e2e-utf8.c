/* End to end over the real daemon: every string in every reply is valid UTF-8
 * (API.md §2), also when the request put malformed UTF-8 where a reply
 * quotes it: the method name, body field names (also inside an address and
 * a Batch call), the str values of every method's fields (taken from
 * schemas/api.json), meta keys and values, Batch inner method names, and
 * Upsert records (fields, names, identifiers).  Each reply is decoded as a
 * strict client would, checking every str (keys included) with a validator
 * of its own; where a message quotes the bad bytes, they must appear as
 * \xHH. */
#include "e2e.h"
#include "status.h"
#include "testutil.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define SEARCH "idlookup.v1.Lookup/Search"
#define BATCH "idlookup.v1.Lookup/Batch"
#define UPSERT "idlookup.v1.Admin/Upsert"

static e2e_env env;
static msgpack_zone zone;
static uint64_t next_id = 1;

/* Malformed UTF-8 of every kind: truncated, stray continuation, overlong,
 * surrogate, above U+10FFFF, never-used bytes. */
static const char *const bad[] = {
    "a\xc3", "\x80x", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff\xfe", "ok\xe2\x82",
};
#define NBAD (sizeof bad / sizeof bad[0])

/* ---- a strict decoder's view ---- */

/* True when s[0..n) is well-formed UTF-8: decoded by bit patterns, then
 * overlongs, surrogates and code points above U+10FFFF refused. */
static bool utf8_strict(const unsigned char *s, size_t n)
{
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    for (size_t i = 0; i < n;) {
        size_t len;
        uint32_t cp;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        if ((s[i] & 0xe0) == 0xc0)
            len = 2, cp = s[i] & 0x1f;
        else if ((s[i] & 0xf0) == 0xe0)
            len = 3, cp = s[i] & 0x0f;
        else if ((s[i] & 0xf8) == 0xf0)
            len = 4, cp = s[i] & 0x07;
        else
            return false;
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min_cp[len] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return false;
        i += len;
    }
    return true;
}

/* Every str in o (map keys included); counts them, names the first bad one. */
static bool all_utf8(const msgpack_object *o, size_t *nstr, char *where, size_t wsz)
{
    switch (o->type) {
    case MSGPACK_OBJECT_STR:
        ++*nstr;
        if (utf8_strict((const unsigned char *)o->via.str.ptr, o->via.str.size)) return true;
        snprintf(where, wsz, "str of %u bytes: %.*s", o->via.str.size, (int)o->via.str.size,
                 o->via.str.ptr);
        return false;
    case MSGPACK_OBJECT_ARRAY:
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if (!all_utf8(&o->via.array.ptr[i], nstr, where, wsz)) return false;
        return true;
    case MSGPACK_OBJECT_MAP:
        for (uint32_t i = 0; i < o->via.map.size; i++)
            if (!all_utf8(&o->via.map.ptr[i].key, nstr, where, wsz) ||
                !all_utf8(&o->via.map.ptr[i].val, nstr, where, wsz))
                return false;
        return true;
    case MSGPACK_OBJECT_BIN:
        snprintf(where, wsz, "a bin object where the API has only str");
        return false;
    default:
        return true;
    }
}

static bool str_has(const msgpack_object *o, const char *needle)
{
    if (!o || o->type != MSGPACK_OBJECT_STR) return false;
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= o->via.str.size; i++)
        if (memcmp(o->via.str.ptr + i, needle, n) == 0) return true;
    return false;
}

/* Sends a built request; returns the decoded reply root (valid until the
 * next call) after checking every str in it, or NULL. */
static const msgpack_object *exchange(const char *what, const msgpack_sbuffer *sb)
{
    void *rep = NULL;
    size_t rl = 0;
    static msgpack_object root;
    if (idl_client_call_raw(env.c, sb->data, sb->size, 10000, &rep, &rl) != 0) {
        CHECKM(false, "%s: no reply", what);
        return NULL;
    }
    msgpack_zone_clear(&zone);
    static char *keep; /* the objects point into the bytes */
    free(keep);
    keep = rep;
    size_t off = 0;
    if (msgpack_unpack(rep, rl, &off, &zone, &root) != MSGPACK_UNPACK_SUCCESS ||
        root.type != MSGPACK_OBJECT_MAP) {
        CHECKM(false, "%s: reply does not decode", what);
        return NULL;
    }
    size_t nstr = 0;
    char where[256] = "";
    CHECKM(all_utf8(&root, &nstr, where, sizeof where), "%s: reply not UTF-8: %s", what, where);
    CHECKM(nstr >= 3, "%s: a reply has at least 3 strs, saw %zu", what, nstr);
    return &root;
}

/* ---- building requests with raw bytes ---- */

typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} req;

static void raw_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/* Starts {id, method, meta: {authorization[, mk: mv]}, body: ...}; the
 * caller packs the body next. */
static void begin(req *r, const char *method, const char *key, const char *mk, const char *mv)
{
    msgpack_sbuffer_init(&r->sb);
    msgpack_packer_init(&r->pk, &r->sb, msgpack_sbuffer_write);
    msgpack_pack_map(&r->pk, 4);
    raw_str(&r->pk, "id");
    msgpack_pack_uint64(&r->pk, next_id++);
    raw_str(&r->pk, "method");
    raw_str(&r->pk, method);
    raw_str(&r->pk, "meta");
    msgpack_pack_map(&r->pk, key && mk ? 2 : key || mk ? 1 : 0);
    if (key) {
        char auth[160];
        snprintf(auth, sizeof auth, "Bearer %s", key);
        raw_str(&r->pk, "authorization");
        raw_str(&r->pk, auth);
    }
    if (mk) {
        raw_str(&r->pk, mk);
        raw_str(&r->pk, mv);
    }
    raw_str(&r->pk, "body");
}

static int code(const msgpack_object *root)
{
    const msgpack_object *c = e2e_get(root, "code");
    return c && c->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int)c->via.u64 : -1;
}

/* Sends r; checks the code when want >= 0 and, when quote is set, that the
 * message quotes it. */
static const msgpack_object *send_req(req *r, const char *what, int want, const char *quote)
{
    const msgpack_object *root = exchange(what, &r->sb);
    msgpack_sbuffer_destroy(&r->sb);
    if (!root) return NULL;
    if (want >= 0) CHECKM(code(root) == want, "%s: code %d, want %d", what, code(root), want);
    if (quote)
        CHECKM(str_has(e2e_get(root, "message"), quote), "%s: message %s does not quote %s", what,
               e2e_json(e2e_get(root, "message")), quote);
    return root;
}

/* ---- cases ---- */

static void bad_method_names(void)
{
    static const struct {
        const char *method, *shown;
    } cases[] = {
        {"idlookup.v1.Lookup/Se\xc3"
         "arch",
         "Se\\xC3arch"},
        {"\xff\xfe", "\\xFF\\xFE"},
        {"x\xed\xa0\x80y", "x\\xED\\xA0\\x80y"},
        {"idlookup.v1.Lookup/Search\xf4\x90\x80\x80", "Search\\xF4\\x90\\x80\\x80"},
        {"\xc0\xaf..", "\\xC0\\xAF.."},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        req r;
        begin(&r, cases[i].method, env.all_key, NULL, NULL);
        msgpack_pack_map(&r.pk, 0);
        send_req(&r, "bad method", IDL_UNIMPLEMENTED, cases[i].shown);
    }
    /* A long valid name is cut where the log's copy ends: the reply must not
     * end in half a character. */
    char longname[400] = "idlookup.v1.";
    for (int i = 0; i < 120; i++)
        strcat(longname, "\xc3\xa9");
    req r;
    begin(&r, longname, env.all_key, NULL, NULL);
    msgpack_pack_map(&r.pk, 0);
    send_req(&r, "long method name", IDL_UNIMPLEMENTED, NULL);
}

/* The request fields of every method, from the schema: name and type. */
typedef struct {
    char method[64];
    char names[16][32];
    bool is_str[16];
    int n;
} method_fields;

static int load_methods(method_fields *out, int max)
{
    json_error_t je;
    json_t *root = json_load_file(getenv("IDL_SCHEMA"), 0, &je);
    if (!root) {
        fprintf(stderr, "schema: %s\n", je.text);
        return 0;
    }
    json_t *ms = json_object_get(root, "methods");
    int n = 0;
    for (size_t i = 0; i < json_array_size(ms) && n < max; i++) {
        json_t *m = json_array_get(ms, i);
        method_fields *f = &out[n++];
        memset(f, 0, sizeof *f);
        snprintf(f->method, sizeof f->method, "%s", json_string_value(json_object_get(m, "name")));
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(m, "request"), k, v)
        {
            if (f->n == 16) break;
            snprintf(f->names[f->n], sizeof f->names[0], "%s", k);
            f->is_str[f->n] = strncmp(json_string_value(json_object_get(v, "type")), "str", 3) == 0;
            f->n++;
        }
    }
    json_decref(root);
    return n;
}

static method_fields ms[16];
static int n_ms;

static void unknown_field_names(void)
{
    int n = n_ms;
    for (int i = 0; i < n; i++) {
        req r;
        begin(&r, ms[i].method, env.all_key, NULL, NULL);
        msgpack_pack_map(&r.pk, 1);
        raw_str(&r.pk, "fi\xc3"
                       "eld\xff");
        raw_str(&r.pk, "x");
        char what[128];
        snprintf(what, sizeof what, "%.60s: unknown field", ms[i].method);
        const msgpack_object *root = send_req(&r, what, IDL_INVALID_ARGUMENT, "fi\\xC3eld\\xFF");
        CHECKM(root && e2e_str_is(e2e_path(root, "details.field"), "fi\\xC3eld\\xFF"),
               "%s: details %s", what, root ? e2e_json(e2e_get(root, "details")) : "-");
    }
    /* Inside Validate's address map. */
    req r;
    begin(&r, "idlookup.v1.Lookup/Validate", env.all_key, NULL, NULL);
    msgpack_pack_map(&r.pk, 1);
    raw_str(&r.pk, "address");
    msgpack_pack_map(&r.pk, 2);
    raw_str(&r.pk, "street");
    raw_str(&r.pk, "1 Main St");
    raw_str(&r.pk, "z\xedp");
    raw_str(&r.pk, "10001");
    send_req(&r, "Validate: unknown address field", IDL_INVALID_ARGUMENT, "z\\xEDp");
}

/* Every str field of every method with every kind of bad value, alone and
 * next to a good email (so the handler gets past "enough to search on"). */
static void bad_values(void)
{
    int n = n_ms;
    for (int i = 0; i < n; i++)
        for (int f = 0; f < ms[i].n; f++) {
            if (!ms[i].is_str[f]) continue;
            bool has_email = false;
            for (int g = 0; g < ms[i].n; g++)
                has_email |= strcmp(ms[i].names[g], "email") == 0;
            for (size_t b = 0; b < NBAD; b++)
                for (int with_email = 0;
                     with_email < 1 + (has_email && strcmp(ms[i].names[f], "email") != 0);
                     with_email++) {
                    req r;
                    begin(&r, ms[i].method, env.all_key, NULL, NULL);
                    msgpack_pack_map(&r.pk, 1 + with_email);
                    raw_str(&r.pk, ms[i].names[f]);
                    raw_str(&r.pk, bad[b]);
                    if (with_email) {
                        raw_str(&r.pk, "email");
                        raw_str(&r.pk, "jane@example.com");
                    }
                    char what[160];
                    snprintf(what, sizeof what, "%.60s: bad %.31s (#%zu)", ms[i].method,
                             ms[i].names[f], b);
                    send_req(&r, what, -1, NULL);
                }
        }
    /* Validate's address parts, as a map and as one string. */
    static const char *const parts[] = {"street", "unit", "city", "state", "zip"};
    for (size_t p = 0; p < 5; p++)
        for (size_t b = 0; b < NBAD; b++) {
            req r;
            begin(&r, "idlookup.v1.Lookup/Validate", env.all_key, NULL, NULL);
            msgpack_pack_map(&r.pk, 1);
            raw_str(&r.pk, "address");
            msgpack_pack_map(&r.pk, p == 0 ? 2 : 3);
            raw_str(&r.pk, "street");
            raw_str(&r.pk, p == 0 ? bad[b] : "1 Main St");
            raw_str(&r.pk, "zip");
            raw_str(&r.pk, p == 4 ? bad[b] : "10001");
            if (p != 0) {
                raw_str(&r.pk, parts[p]);
                raw_str(&r.pk, bad[b]);
            }
            send_req(&r, "Validate: bad address part", -1, NULL);
        }
    for (size_t b = 0; b < NBAD; b++) {
        req r;
        begin(&r, "idlookup.v1.Lookup/Validate", env.all_key, NULL, NULL);
        msgpack_pack_map(&r.pk, 1);
        raw_str(&r.pk, "address");
        raw_str(&r.pk, bad[b]);
        send_req(&r, "Validate: bad address string", -1, NULL);
    }
}

static void bad_meta(void)
{
    for (size_t b = 0; b < NBAD; b++) {
        req r;
        begin(&r, SEARCH, env.all_key, bad[b], bad[b]);
        msgpack_pack_map(&r.pk, 1);
        raw_str(&r.pk, "email");
        raw_str(&r.pk, "jane@example.com");
        send_req(&r, "bad meta key and value", IDL_OK, NULL);
        /* A malformed key. */
        char key[160];
        snprintf(key, sizeof key, "%s%s", env.all_key, bad[b]);
        begin(&r, SEARCH, key, NULL, NULL);
        msgpack_pack_map(&r.pk, 0);
        send_req(&r, "bad authorization", IDL_UNAUTHENTICATED, NULL);
        /* An authorization of bad bytes only. */
        begin(&r, SEARCH, NULL, "authorization", bad[b]);
        msgpack_pack_map(&r.pk, 0);
        send_req(&r, "bad authorization", IDL_UNAUTHENTICATED, NULL);
    }
}

static void batch_inner(void)
{
    req r;
    begin(&r, BATCH, env.all_key, NULL, NULL);
    msgpack_pack_map(&r.pk, 1);
    raw_str(&r.pk, "calls");
    msgpack_pack_array(&r.pk, 5);
    /* 0: bad method name */
    msgpack_pack_map(&r.pk, 2);
    raw_str(&r.pk, "method");
    raw_str(&r.pk, "idlookup.v1.Lookup/Se\xc3"
                   "arch");
    raw_str(&r.pk, "body");
    msgpack_pack_map(&r.pk, 0);
    /* 1: bad field name in the call */
    msgpack_pack_map(&r.pk, 2);
    raw_str(&r.pk, "meth\xffod");
    raw_str(&r.pk, SEARCH);
    raw_str(&r.pk, "body");
    msgpack_pack_map(&r.pk, 0);
    /* 2: bad field name in the body */
    msgpack_pack_map(&r.pk, 2);
    raw_str(&r.pk, "method");
    raw_str(&r.pk, SEARCH);
    raw_str(&r.pk, "body");
    msgpack_pack_map(&r.pk, 1);
    raw_str(&r.pk, "em\xc0\xafil");
    raw_str(&r.pk, "a@b.co");
    /* 3: bad values */
    msgpack_pack_map(&r.pk, 2);
    raw_str(&r.pk, "method");
    raw_str(&r.pk, "idlookup.v1.Lookup/Verify");
    raw_str(&r.pk, "body");
    msgpack_pack_map(&r.pk, 3);
    raw_str(&r.pk, "first_name");
    raw_str(&r.pk, "J\xc3");
    raw_str(&r.pk, "last_name");
    raw_str(&r.pk, "\xed\xa0\x80");
    raw_str(&r.pk, "email");
    raw_str(&r.pk, "\xff@example.com");
    /* 4: a good call */
    msgpack_pack_map(&r.pk, 2);
    raw_str(&r.pk, "method");
    raw_str(&r.pk, SEARCH);
    raw_str(&r.pk, "body");
    msgpack_pack_map(&r.pk, 1);
    raw_str(&r.pk, "email");
    raw_str(&r.pk, "jane@example.com");
    const msgpack_object *root = send_req(&r, "Batch with bad inner calls", IDL_OK, NULL);
    const msgpack_object *res = root ? e2e_path(root, "body.results") : NULL;
    CHECKM(res && res->type == MSGPACK_OBJECT_ARRAY && res->via.array.size == 5, "results: %s",
           root ? e2e_json(root) : "-");
    if (res && res->type == MSGPACK_OBJECT_ARRAY && res->via.array.size == 5) {
        CHECK(str_has(e2e_get(&res->via.array.ptr[1], "message"), "meth\\xFFod"));
        CHECK(str_has(e2e_get(&res->via.array.ptr[2], "message"), "em\\xC0\\xAFil"));
        CHECK(e2e_uint(e2e_get(&res->via.array.ptr[4], "code")) == 0);
    }
}

static void upsert_records(void)
{
    req r;
    begin(&r, UPSERT, env.all_key, NULL, NULL);
    msgpack_pack_map(&r.pk, 1);
    raw_str(&r.pk, "records");
    msgpack_pack_array(&r.pk, 4);
    /* 0: a good record with bad identifiers and an unknown field of bad bytes */
    msgpack_pack_map(&r.pk, 9);
    raw_str(&r.pk, "source_id");
    raw_str(&r.pk, "utf8-0");
    raw_str(&r.pk, "first_name");
    raw_str(&r.pk, "Jane");
    raw_str(&r.pk, "last_name");
    raw_str(&r.pk, "Doe");
    raw_str(&r.pk, "nick\xc3"
                   "name");
    raw_str(&r.pk, "\xff");
    raw_str(&r.pk, "emails");
    msgpack_pack_array(&r.pk, 2);
    raw_str(&r.pk, "j\xc3@example.com");
    raw_str(&r.pk, "jane@example.com");
    raw_str(&r.pk, "phones");
    msgpack_pack_array(&r.pk, 2);
    raw_str(&r.pk, "\xed\xa0\x80 415 555 2671");
    msgpack_pack_map(&r.pk, 2);
    raw_str(&r.pk, "number");
    raw_str(&r.pk, "(415) 555-2671");
    raw_str(&r.pk, "line_type");
    raw_str(&r.pk, "mob\xffile");
    raw_str(&r.pk, "addresses");
    msgpack_pack_array(&r.pk, 2);
    msgpack_pack_map(&r.pk, 2);
    raw_str(&r.pk, "street");
    raw_str(&r.pk, "1 Main\xc0\xaf St");
    raw_str(&r.pk, "zip");
    raw_str(&r.pk, "10001");
    msgpack_pack_map(&r.pk, 2);
    raw_str(&r.pk, "stre\xf4\x90\x80\x80t");
    raw_str(&r.pk, "1 Main St");
    raw_str(&r.pk, "zip");
    raw_str(&r.pk, "10001");
    raw_str(&r.pk, "ips");
    msgpack_pack_array(&r.pk, 1);
    raw_str(&r.pk, "1.2.3.4\xff");
    raw_str(&r.pk, "dob");
    raw_str(&r.pk, "1990-01-0\xc3");
    /* 1..3: a bad source_id, first_name, middle_name */
    for (int k = 0; k < 3; k++) {
        msgpack_pack_map(&r.pk, 4);
        raw_str(&r.pk, "source_id");
        raw_str(&r.pk, k == 0 ? "utf8-\xc3" : "utf8-x");
        raw_str(&r.pk, "first_name");
        raw_str(&r.pk, k == 1 ? "J\xe2\x82" : "Jane");
        raw_str(&r.pk, "last_name");
        raw_str(&r.pk, "Doe");
        raw_str(&r.pk, "middle_name");
        raw_str(&r.pk, k == 2 ? "\x80Q" : "Q");
    }
    const msgpack_object *root = send_req(&r, "Upsert with bad bytes", -1, NULL);
    if (root && code(root) == 0) {
        const msgpack_object *w = e2e_path(root, "body.warnings");
        bool quoted = false;
        for (uint32_t i = 0; w && w->type == MSGPACK_OBJECT_ARRAY && i < w->via.array.size; i++)
            quoted |= str_has(e2e_get(&w->via.array.ptr[i], "reason"), "nick\\xC3name");
        CHECKM(quoted, "the unknown field is quoted escaped: %s", e2e_json(w));
    }
    /* The stored record reads back as valid UTF-8 too. */
    begin(&r, SEARCH, env.all_key, NULL, NULL);
    msgpack_pack_map(&r.pk, 1);
    raw_str(&r.pk, "email");
    raw_str(&r.pk, "jane@example.com");
    send_req(&r, "Search after Upsert", IDL_OK, NULL);
}

int main(void)
{
    n_ms = load_methods(ms, 16);
    if (n_ms < 10) {
        fprintf(stderr, "schema: expected 10 methods, found %d\n", n_ms);
        return 99;
    }
    msgpack_zone_init(&zone, 4096);
    e2e_init(&env);
    e2e_start(&env, NULL);
    RUN(bad_method_names);
    RUN(unknown_field_names);
    RUN(bad_values);
    RUN(bad_meta);
    RUN(batch_inner);
    RUN(upsert_records);
    e2e_cleanup(&env);
    msgpack_zone_destroy(&zone);
    return test_summary();
}
