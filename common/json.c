/* JSON <-> msgpack conversion (see json.h). */
#include "json.h"
#include "status.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void idl_json_pack(msgpack_packer *pk, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        msgpack_pack_map(pk, json_object_size(v));
        const char *k;
        json_t *val;
        json_object_foreach((json_t *)v, k, val)
        {
            idl_wire_pack_cstr(pk, k);
            idl_json_pack(pk, val);
        }
        break;
    }
    case JSON_ARRAY: {
        msgpack_pack_array(pk, json_array_size(v));
        size_t i;
        json_t *val;
        json_array_foreach(v, i, val) idl_json_pack(pk, val);
        break;
    }
    case JSON_STRING:
        idl_wire_pack_str(pk, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER: {
        json_int_t n = json_integer_value(v);
        if (n >= 0)
            msgpack_pack_uint64(pk, (uint64_t)n);
        else
            msgpack_pack_int64(pk, n);
        break;
    }
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(v));
        break;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        break;
    case JSON_NULL:
        msgpack_pack_nil(pk);
        break;
    }
}

int idl_json_to_msgpack(const char *text, size_t len, idl_buf *out, char err[IDL_ERR_MAX])
{
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!root) {
        snprintf(err, IDL_ERR_MAX, "invalid JSON at line %d column %d: %s", je.line, je.column,
                 je.text);
        return IDL_INVALID_ARGUMENT;
    }
    msgpack_packer pk;
    idl_buf_packer(out, &pk);
    idl_json_pack(&pk, root);
    json_decref(root);
    if (out->failed) {
        snprintf(err, IDL_ERR_MAX, "out of memory");
        return IDL_INTERNAL;
    }
    return IDL_OK;
}

/* Length of the well-formed UTF-8 sequence at s[i], or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t i)
{
    unsigned char c = s[i];
    size_t len = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || i + len > n || (len == 2 && c < 0xc2) || c > 0xf4) return 0;
    for (size_t k = 1; k < len; k++)
        if ((s[i + k] & 0xc0) != 0x80) return 0;
    if ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] >= 0xa0) ||
        (c == 0xf0 && s[i + 1] < 0x90) || (c == 0xf4 && s[i + 1] >= 0x90))
        return 0;
    return len;
}

void idl_json_print_str(FILE *f, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            /* JSON text is UTF-8: a malformed byte becomes U+FFFD rather
             * than making the whole document unreadable. */
            size_t n = utf8_seq(u, len, i);
            if (n) {
                fwrite(s + i, 1, n, f);
                i += n - 1;
            } else {
                fputs("\xef\xbf\xbd", f);
            }
            continue;
        }
        switch (c) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        default:
            if (c < 0x20)
                fprintf(f, "\\u%04x", c);
            else
                fputc(c, f);
        }
    }
    fputc('"', f);
}

static void indent(FILE *f, bool pretty, int depth)
{
    if (!pretty) return;
    fputc('\n', f);
    for (int i = 0; i < depth; i++)
        fputs("  ", f);
}

static void print_value(FILE *f, const msgpack_object *o, bool pretty, int depth)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        fputs("null", f);
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        fputs(o->via.boolean ? "true" : "false", f);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        fprintf(f, "%" PRIu64, o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        fprintf(f, "%" PRId64, o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (isfinite(o->via.f64)) {
            char buf[48];
            snprintf(buf, sizeof buf, "%.17g", o->via.f64);
            /* Keep floats recognizable as floats to JSON readers. */
            if (!strpbrk(buf, ".eE")) strcat(buf, ".0");
            /* Prefer the shortest form that reads back the same value. */
            for (int p = 1; p <= 17; p++) {
                char s[32];
                snprintf(s, sizeof s, "%.*g", p, o->via.f64);
                if (strtod(s, NULL) == o->via.f64) {
                    snprintf(buf, sizeof buf, "%s%s", s, strpbrk(s, ".eE") ? "" : ".0");
                    break;
                }
            }
            fputs(buf, f);
        } else {
            fputs("null", f);
        }
        break;
    case MSGPACK_OBJECT_STR:
        idl_json_print_str(f, o->via.str.ptr, o->via.str.size);
        break;
    case MSGPACK_OBJECT_BIN:
        fputc('"', f);
        for (uint32_t i = 0; i < o->via.bin.size; i++)
            fprintf(f, "%02x", (unsigned char)o->via.bin.ptr[i]);
        fputc('"', f);
        break;
    case MSGPACK_OBJECT_EXT:
        fputs("null", f);
        break;
    case MSGPACK_OBJECT_ARRAY:
        if (o->via.array.size == 0) {
            fputs("[]", f);
            break;
        }
        fputc('[', f);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i) fputc(',', f);
            indent(f, pretty, depth + 1);
            print_value(f, &o->via.array.ptr[i], pretty, depth + 1);
        }
        indent(f, pretty, depth);
        fputc(']', f);
        break;
    case MSGPACK_OBJECT_MAP:
        if (o->via.map.size == 0) {
            fputs("{}", f);
            break;
        }
        fputc('{', f);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            if (i) fputc(',', f);
            indent(f, pretty, depth + 1);
            if (k->type == MSGPACK_OBJECT_STR) {
                idl_json_print_str(f, k->via.str.ptr, k->via.str.size);
            } else {
                /* JSON keys are strings; render other key types as text. */
                char *tmp = NULL;
                size_t tl = 0;
                FILE *m = open_memstream(&tmp, &tl);
                if (m) {
                    print_value(m, k, false, 0);
                    fclose(m);
                    idl_json_print_str(f, tmp, tl);
                    free(tmp);
                }
            }
            fputs(pretty ? ": " : ":", f);
            print_value(f, &o->via.map.ptr[i].val, pretty, depth + 1);
        }
        indent(f, pretty, depth);
        fputc('}', f);
        break;
    }
}

void idl_json_print(FILE *f, const msgpack_object *o, bool pretty)
{
    print_value(f, o, pretty, 0);
}
