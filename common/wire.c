/* Envelope codec over msgpack-c, with the limits checked first (see wire.h). */
#include "wire.h"
#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- structural check, before msgpack-c allocates ---- */

typedef struct {
    const uint8_t *p;
    size_t len;
    size_t pos;
    size_t objects;
    size_t max_objects;
    char *err;
} checker;

static int need(checker *c, size_t n)
{
    if (c->len - c->pos < n) {
        snprintf(c->err, IDL_ERR_MAX, "truncated msgpack: %zu bytes declared, %zu left", n,
                 c->len - c->pos);
        return IDL_INVALID_ARGUMENT;
    }
    return IDL_OK;
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static int check_value(checker *c, int depth);

static int check_children(checker *c, uint64_t n, int per, int depth)
{
    if (depth >= IDL_WIRE_MAX_DEPTH) {
        snprintf(c->err, IDL_ERR_MAX, "msgpack nested deeper than %d levels", IDL_WIRE_MAX_DEPTH);
        return IDL_INVALID_ARGUMENT;
    }
    /* Every element takes at least one byte, so a count larger than what is
     * left is a lie we refuse before anyone allocates for it. */
    if (n > (c->len - c->pos) / (uint64_t)per) {
        snprintf(c->err, IDL_ERR_MAX,
                 "msgpack container declares %llu entries but only %zu bytes follow",
                 (unsigned long long)n, c->len - c->pos);
        return IDL_INVALID_ARGUMENT;
    }
    c->objects += n * (uint64_t)per;
    if (c->objects > c->max_objects) {
        snprintf(c->err, IDL_ERR_MAX, "msgpack message has more than %zu objects", c->max_objects);
        return IDL_INVALID_ARGUMENT;
    }
    for (uint64_t i = 0; i < n * (uint64_t)per; i++) {
        int rc = check_value(c, depth + 1);
        if (rc) return rc;
    }
    return IDL_OK;
}

static int skip_sized(checker *c, int lenbytes, int extra)
{
    int rc = need(c, (size_t)lenbytes);
    if (rc) return rc;
    uint64_t n = be(c->p + c->pos, lenbytes);
    c->pos += (size_t)lenbytes;
    if (n + (uint64_t)extra > c->len - c->pos)
        return need(c, (size_t)(n + (uint64_t)extra > SIZE_MAX / 2 ? SIZE_MAX / 2 : n + extra));
    c->pos += (size_t)n + (size_t)extra;
    return IDL_OK;
}

static int check_value(checker *c, int depth)
{
    int rc = need(c, 1);
    if (rc) return rc;
    uint8_t b = c->p[c->pos++];
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) return IDL_OK;
    if ((b & 0xf0) == 0x80) return check_children(c, b & 0x0f, 2, depth);
    if ((b & 0xf0) == 0x90) return check_children(c, b & 0x0f, 1, depth);
    if ((b & 0xe0) == 0xa0) {
        rc = need(c, b & 0x1f);
        if (!rc) c->pos += b & 0x1f;
        return rc;
    }
    switch (b) {
    case 0xc4:
        return skip_sized(c, 1, 0);
    case 0xc5:
        return skip_sized(c, 2, 0);
    case 0xc6:
        return skip_sized(c, 4, 0);
    case 0xc7:
        return skip_sized(c, 1, 1);
    case 0xc8:
        return skip_sized(c, 2, 1);
    case 0xc9:
        return skip_sized(c, 4, 1);
    case 0xca:
        rc = need(c, 4);
        if (!rc) c->pos += 4;
        return rc;
    case 0xcb:
        rc = need(c, 8);
        if (!rc) c->pos += 8;
        return rc;
    case 0xcc:
    case 0xd0:
        rc = need(c, 1);
        if (!rc) c->pos += 1;
        return rc;
    case 0xcd:
    case 0xd1:
        rc = need(c, 2);
        if (!rc) c->pos += 2;
        return rc;
    case 0xce:
    case 0xd2:
        rc = need(c, 4);
        if (!rc) c->pos += 4;
        return rc;
    case 0xcf:
    case 0xd3:
        rc = need(c, 8);
        if (!rc) c->pos += 8;
        return rc;
    case 0xd4:
        rc = need(c, 2);
        if (!rc) c->pos += 2;
        return rc;
    case 0xd5:
        rc = need(c, 3);
        if (!rc) c->pos += 3;
        return rc;
    case 0xd6:
        rc = need(c, 5);
        if (!rc) c->pos += 5;
        return rc;
    case 0xd7:
        rc = need(c, 9);
        if (!rc) c->pos += 9;
        return rc;
    case 0xd8:
        rc = need(c, 17);
        if (!rc) c->pos += 17;
        return rc;
    case 0xd9:
        return skip_sized(c, 1, 0);
    case 0xda:
        return skip_sized(c, 2, 0);
    case 0xdb:
        return skip_sized(c, 4, 0);
    case 0xdc:
    case 0xdd:
    case 0xde:
    case 0xdf: {
        int lb = (b == 0xdc || b == 0xde) ? 2 : 4;
        rc = need(c, (size_t)lb);
        if (rc) return rc;
        uint64_t n = be(c->p + c->pos, lb);
        c->pos += (size_t)lb;
        return check_children(c, n, b >= 0xde ? 2 : 1, depth);
    }
    default:
        snprintf(c->err, IDL_ERR_MAX, "not msgpack: byte 0x%02x at offset %zu", b, c->pos - 1);
        return IDL_INVALID_ARGUMENT;
    }
}

int idl_wire_check(const void *buf, size_t len, char err[IDL_ERR_MAX])
{
    return idl_wire_check_limits(buf, len, IDL_WIRE_MAX_MSG, IDL_WIRE_MAX_OBJECTS, err);
}

int idl_wire_check_limits(const void *buf, size_t len, size_t max_len, size_t max_objects,
                          char err[IDL_ERR_MAX])
{
    if (len == 0) {
        snprintf(err, IDL_ERR_MAX, "empty message: expected one msgpack map");
        return IDL_INVALID_ARGUMENT;
    }
    if (len > max_len) {
        snprintf(err, IDL_ERR_MAX, "message of %zu bytes exceeds the %zu byte limit", len, max_len);
        return IDL_INVALID_ARGUMENT;
    }
    checker c = {
        .p = buf, .len = len, .pos = 0, .objects = 1, .max_objects = max_objects, .err = err};
    int rc = check_value(&c, 0);
    if (rc) return rc;
    if (c.pos != len) {
        snprintf(err, IDL_ERR_MAX, "%zu trailing bytes after the msgpack message", len - c.pos);
        return IDL_INVALID_ARGUMENT;
    }
    return IDL_OK;
}

/* ---- envelope ---- */

bool idl_wire_str_eq(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    /* msgpack-c may decode an empty str with a NULL pointer. */
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           (n == 0 || memcmp(o->via.str.ptr, s, n) == 0);
}

static bool key_is(const msgpack_object *k, const char *s)
{
    return idl_wire_str_eq(k, s);
}

int idl_wire_decode_request(const void *buf, size_t len, msgpack_zone *zone, idl_request *req,
                            char err[IDL_ERR_MAX])
{
    memset(req, 0, sizeof(*req));
    int rc = idl_wire_check(buf, len, err);
    if (rc) return rc;
    msgpack_object root;
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack(buf, len, &off, zone, &root);
    if (ur != MSGPACK_UNPACK_SUCCESS) {
        snprintf(err, IDL_ERR_MAX, "undecodable msgpack message");
        return IDL_INVALID_ARGUMENT;
    }
    if (root.type != MSGPACK_OBJECT_MAP) {
        snprintf(err, IDL_ERR_MAX, "the message must be a msgpack map, not another type");
        return IDL_INVALID_ARGUMENT;
    }
    const msgpack_object_map *m = &root.via.map;
    const msgpack_object *method = NULL, *meta = NULL, *timeout = NULL, *body = NULL;
    bool id_bad = false;
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
        if (key_is(k, "id")) {
            if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
                req->id = v->via.u64;
                req->has_id = true;
            } else {
                id_bad = true;
            }
        } else if (key_is(k, "method")) {
            method = v;
        } else if (key_is(k, "meta")) {
            meta = v;
        } else if (key_is(k, "timeout_ms")) {
            timeout = v;
        } else if (key_is(k, "body")) {
            body = v;
        }
    }
    if (!req->has_id) {
        req->id = 0;
        snprintf(err, IDL_ERR_MAX,
                 id_bad ? "field 'id' must be a non-negative integer"
                        : "missing required field 'id'");
        return IDL_INVALID_ARGUMENT;
    }
    if (!method) {
        snprintf(err, IDL_ERR_MAX, "missing required field 'method'");
        return IDL_INVALID_ARGUMENT;
    }
    if (method->type != MSGPACK_OBJECT_STR) {
        snprintf(err, IDL_ERR_MAX, "field 'method' must be a string");
        return IDL_INVALID_ARGUMENT;
    }
    req->method = method->via.str.ptr;
    req->method_len = method->via.str.size;
    if (meta && meta->type != MSGPACK_OBJECT_NIL) {
        if (meta->type != MSGPACK_OBJECT_MAP) {
            snprintf(err, IDL_ERR_MAX, "field 'meta' must be a map of strings");
            return IDL_INVALID_ARGUMENT;
        }
        for (uint32_t i = 0; i < meta->via.map.size; i++) {
            const msgpack_object *k = &meta->via.map.ptr[i].key, *v = &meta->via.map.ptr[i].val;
            if (k->type != MSGPACK_OBJECT_STR || v->type != MSGPACK_OBJECT_STR) {
                snprintf(err, IDL_ERR_MAX, "field 'meta' must be a map of strings");
                return IDL_INVALID_ARGUMENT;
            }
            if (key_is(k, "authorization")) {
                req->auth = v->via.str.ptr;
                req->auth_len = v->via.str.size;
            }
        }
    }
    if (timeout && timeout->type != MSGPACK_OBJECT_NIL) {
        if (timeout->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
            snprintf(err, IDL_ERR_MAX, "field 'timeout_ms' must be a non-negative integer");
            return IDL_INVALID_ARGUMENT;
        }
        req->has_timeout = true;
        req->timeout_ms = timeout->via.u64;
    }
    if (body && body->type != MSGPACK_OBJECT_NIL) {
        if (body->type != MSGPACK_OBJECT_MAP)
            req->body_not_map = true;
        else
            req->body = body;
    }
    return IDL_OK;
}

/* ---- body fields ---- */

static const char *type_word(idl_field_type t)
{
    switch (t) {
    case IDL_FT_STR:
        return "a string";
    case IDL_FT_UINT:
        return "a non-negative integer";
    case IDL_FT_NUMBER:
        return "a number";
    case IDL_FT_MAP:
        return "a map";
    case IDL_FT_ARRAY:
        return "an array";
    case IDL_FT_BOOL:
        return "a boolean";
    case IDL_FT_STR_OR_MAP:
        return "a string or a map";
    }
    return "?";
}

static bool type_ok(const msgpack_object *v, idl_field_type t)
{
    switch (t) {
    case IDL_FT_STR:
        return v->type == MSGPACK_OBJECT_STR;
    case IDL_FT_UINT:
        return v->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
    case IDL_FT_NUMBER:
        return v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
               v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER || v->type == MSGPACK_OBJECT_FLOAT32 ||
               v->type == MSGPACK_OBJECT_FLOAT64;
    case IDL_FT_MAP:
        return v->type == MSGPACK_OBJECT_MAP;
    case IDL_FT_ARRAY:
        return v->type == MSGPACK_OBJECT_ARRAY;
    case IDL_FT_BOOL:
        return v->type == MSGPACK_OBJECT_BOOLEAN;
    case IDL_FT_STR_OR_MAP:
        return v->type == MSGPACK_OBJECT_STR || v->type == MSGPACK_OBJECT_MAP;
    }
    return false;
}

/* ---- UTF-8 ---- */

/* The length of the well-formed UTF-8 sequence at s (n > 0 bytes left), or 0
 * when s[0] starts none.  The second byte's range excludes overlongs
 * (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code points above
 * U+10FFFF (F4 90..BF), as in Unicode's table of well-formed sequences. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t len;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t k = 2; k < len; k++)
        if ((s[k] & 0xc0) != 0x80) return 0;
    return len;
}

bool idl_wire_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(p + i, len - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

static const char hex_digit[] = "0123456789ABCDEF";

/* The escaping behind idl_wire_utf8_escape; ctrl also escapes the C0
 * controls and DEL (for names shown in messages and logs). */
static size_t utf8_escape(const char *s, size_t len, char *out, size_t outsz, bool ctrl)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, j = 0;
    while (i < len) {
        size_t k = utf8_seq(p + i, len - i);
        bool esc = k == 0 || (ctrl && (p[i] < 0x20 || p[i] == 0x7f));
        size_t w = esc ? 4 : k;
        if (outsz - j <= w) break;
        if (esc) {
            out[j++] = '\\';
            out[j++] = 'x';
            out[j++] = hex_digit[p[i] >> 4];
            out[j++] = hex_digit[p[i] & 15];
            i++;
        } else {
            memcpy(out + j, p + i, k);
            j += k;
            i += k;
        }
    }
    out[j] = 0;
    return i;
}

size_t idl_wire_utf8_escape(const char *s, size_t len, char *out, size_t outsz)
{
    return utf8_escape(s, len, out, outsz, false);
}

/* Field names in messages are printed escaped, control characters included,
 * so a hostile key can neither smuggle control characters into logs or
 * terminals nor make the reply invalid UTF-8; at most 60 characters. */
static void safe_name(const char *p, size_t n, char out[64])
{
    if (utf8_escape(p, n, out, 61, true) < n) strcat(out, "..");
}

int idl_wire_fields(const msgpack_object *body, idl_field *fields, size_t n, char err[IDL_ERR_MAX],
                    char field_out[64])
{
    for (size_t f = 0; f < n; f++)
        fields[f].val = NULL;
    if (!body || body->type == MSGPACK_OBJECT_NIL) return IDL_OK;
    if (body->type != MSGPACK_OBJECT_MAP) {
        snprintf(err, IDL_ERR_MAX, "the body must be a map");
        if (field_out) strcpy(field_out, "body");
        return IDL_INVALID_ARGUMENT;
    }
    /* Seen-bits, not val, catch a duplicate whose first copy was nil. */
    uint64_t seen = 0;
    for (uint32_t i = 0; i < body->via.map.size; i++) {
        const msgpack_object *k = &body->via.map.ptr[i].key, *v = &body->via.map.ptr[i].val;
        char name[64];
        if (k->type != MSGPACK_OBJECT_STR) {
            snprintf(err, IDL_ERR_MAX, "body keys must be strings");
            if (field_out) strcpy(field_out, "body");
            return IDL_INVALID_ARGUMENT;
        }
        size_t f;
        for (f = 0; f < n; f++)
            if (key_is(k, fields[f].name)) break;
        if (f == n) {
            safe_name(k->via.str.ptr, k->via.str.size, name);
            snprintf(err, IDL_ERR_MAX, "unknown field '%s'", name);
            if (field_out) strcpy(field_out, name);
            return IDL_INVALID_ARGUMENT;
        }
        if (f < 64 && (seen & (1ull << f))) {
            snprintf(err, IDL_ERR_MAX, "field '%s' given twice", fields[f].name);
            if (field_out) snprintf(field_out, 64, "%s", fields[f].name);
            return IDL_INVALID_ARGUMENT;
        }
        if (f < 64) seen |= 1ull << f;
        if (v->type == MSGPACK_OBJECT_NIL) continue;
        if (!type_ok(v, fields[f].type)) {
            snprintf(err, IDL_ERR_MAX, "field '%s' must be %s", fields[f].name,
                     type_word(fields[f].type));
            if (field_out) snprintf(field_out, 64, "%s", fields[f].name);
            return IDL_INVALID_ARGUMENT;
        }
        fields[f].val = v;
    }
    return IDL_OK;
}

int idl_wire_str(const msgpack_object *o, char *buf, size_t bufsz)
{
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= bufsz) return IDL_INVALID_ARGUMENT;
    if (o->via.str.size) memcpy(buf, o->via.str.ptr, o->via.str.size);
    buf[o->via.str.size] = 0;
    return IDL_OK;
}

uint64_t idl_wire_uint(const msgpack_object *o)
{
    return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? o->via.u64 : 0;
}

double idl_wire_number(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return (double)o->via.u64;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return (double)o->via.i64;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return o->via.f64;
    default:
        return 0;
    }
}

/* The length of the ASCII run at p, eight bytes at a time: nearly every
 * string a reply carries is ASCII, and a call per byte was a visible share
 * of a Search. */
static size_t ascii_run(const unsigned char *p, size_t len)
{
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull) break;
    }
    while (i < len && p[i] < 0x80)
        i++;
    return i;
}

void idl_wire_pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t a = ascii_run(p + i, len - i);
        n += a;
        i += a;
        if (i >= len) break;
        size_t k = utf8_seq(p + i, len - i);
        n += k ? k : 4;
        i += k ? k : 1;
    }
    msgpack_pack_str(pk, n);
    if (n == len) {
        msgpack_pack_str_body(pk, s, len);
        return;
    }
    /* Runs of well-formed text as they are, each bad byte as "\xHH". */
    size_t run = 0;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(p + i, len - i);
        if (k) {
            i += k;
            continue;
        }
        char esc[4] = {'\\', 'x', hex_digit[p[i] >> 4], hex_digit[p[i] & 15]};
        if (i > run) msgpack_pack_str_body(pk, s + run, i - run);
        msgpack_pack_str_body(pk, esc, sizeof esc);
        run = ++i;
    }
    if (len > run) msgpack_pack_str_body(pk, s + run, len - run);
}

void idl_wire_pack_cstr(msgpack_packer *pk, const char *s)
{
    if (!s)
        msgpack_pack_nil(pk);
    else
        idl_wire_pack_str(pk, s, strlen(s));
}

/* ---- growing buffer ---- */

void idl_buf_reset(idl_buf *b)
{
    b->len = 0;
    b->failed = false;
}

void idl_buf_free(idl_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int idl_buf_write(void *data, const char *buf, size_t len)
{
    idl_buf *b = data;
    if (b->failed) return -1;
    if (len == 0) return 0;
    if (b->cap - b->len < len) {
        if (b->fixed) {
            b->failed = true;
            return -1;
        }
        size_t cap = b->cap ? b->cap : 1024;
        while (cap - b->len < len)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) {
            b->failed = true;
            return -1;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, buf, len);
    b->len += len;
    return 0;
}

void idl_buf_packer(idl_buf *b, msgpack_packer *pk)
{
    msgpack_packer_init(pk, b, idl_buf_write);
}
