/* JSON at the edges: text to msgpack (escapes, UTF-8, the integer range,
 * floats, literals, nesting) checked value by value after unpacking; parse
 * errors with line and column; msgpack printed as JSON, exactly, for every
 * msgpack type, with floats that read back to the same double. */
#include "json.h"
#include "status.h"
#include "testutil.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BYTES(lit) lit, sizeof(lit) - 1

/* Converts text and unpacks the result; the zone and buffer are the caller's
 * to release with conv_free. */
typedef struct {
    idl_buf buf;
    msgpack_zone z;
    msgpack_object o;
    int rc;
    char msg[IDL_ERR_MAX];
} conv;

static void conv_text(conv *c, const char *text, size_t len)
{
    memset(c, 0, sizeof *c);
    msgpack_zone_init(&c->z, 1024);
    c->rc = idl_json_to_msgpack(text, len, &c->buf, c->msg);
    c->o.type = MSGPACK_OBJECT_NIL;
    if (c->rc == IDL_OK) {
        size_t off = 0;
        CHECK(msgpack_unpack(c->buf.data, c->buf.len, &off, &c->z, &c->o) ==
              MSGPACK_UNPACK_SUCCESS);
        CHECK_INT(off, c->buf.len);
    }
}

static void conv_free(conv *c)
{
    idl_buf_free(&c->buf);
    msgpack_zone_destroy(&c->z);
}

static const msgpack_object *get(const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (idl_wire_str_eq(&map->via.map.ptr[i].key, key)) return &map->via.map.ptr[i].val;
    return NULL;
}

static bool str_is(const msgpack_object *o, const char *s, size_t n)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           memcmp(o->via.str.ptr, s, n) == 0;
}

/* Prints o with idl_json_print into a malloc'd string. */
static char *print(const msgpack_object *o, bool pretty)
{
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    idl_json_print(f, o, pretty);
    fclose(f);
    return out;
}

/* Packs with `fill`, unpacks, prints. */
typedef void (*filler)(msgpack_packer *pk);

static char *print_packed(filler fill, bool pretty)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    fill(&pk);
    msgpack_zone z;
    msgpack_zone_init(&z, 1024);
    msgpack_object o;
    size_t off = 0;
    char *out = NULL;
    if (msgpack_unpack(sb.data, sb.size, &off, &z, &o) == MSGPACK_UNPACK_SUCCESS)
        out = print(&o, pretty);
    msgpack_zone_destroy(&z);
    msgpack_sbuffer_destroy(&sb);
    return out;
}

static void objects_strings_literals(void)
{
    const char text[] = "{\"s\": \"q\\\"b\\\\s\\/n\\nt\\tr\\ru\\u0001\\u00e9\\ud83d\\ude00\","
                        " \"raw\": \"caf\xc3\xa9 \xe2\x82\xac\","
                        " \"nul\": \"a\\u0000b\","
                        " \"t\": true, \"f\": false, \"z\": null,"
                        " \"arr\": [1, [2, {}], [], \"x\"],"
                        " \"obj\": {\"inner\": {\"deep\": [null]}},"
                        " \"empty\": \"\"}";
    conv c;
    conv_text(&c, text, strlen(text));
    CHECK_INT(c.rc, IDL_OK);
    CHECK_INT(c.o.type, MSGPACK_OBJECT_MAP);
    CHECK_INT(c.o.via.map.size, 9);
    CHECK(str_is(get(&c.o, "s"), BYTES("q\"b\\s/n\nt\tr\ru\x01\xc3\xa9\xf0\x9f\x98\x80")));
    CHECK(str_is(get(&c.o, "raw"), BYTES("caf\xc3\xa9 \xe2\x82\xac")));
    CHECK(str_is(get(&c.o, "nul"), "a\0b", 3));
    CHECK(str_is(get(&c.o, "empty"), "", 0));
    const msgpack_object *v = get(&c.o, "t");
    CHECK(v && v->type == MSGPACK_OBJECT_BOOLEAN && v->via.boolean);
    v = get(&c.o, "f");
    CHECK(v && v->type == MSGPACK_OBJECT_BOOLEAN && !v->via.boolean);
    v = get(&c.o, "z");
    CHECK(v && v->type == MSGPACK_OBJECT_NIL);
    v = get(&c.o, "arr");
    CHECK(v && v->type == MSGPACK_OBJECT_ARRAY && v->via.array.size == 4);
    if (v && v->type == MSGPACK_OBJECT_ARRAY && v->via.array.size == 4) {
        const msgpack_object *a = v->via.array.ptr;
        CHECK(a[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[0].via.u64 == 1);
        CHECK(a[1].type == MSGPACK_OBJECT_ARRAY && a[1].via.array.size == 2);
        CHECK(a[1].via.array.ptr[1].type == MSGPACK_OBJECT_MAP &&
              a[1].via.array.ptr[1].via.map.size == 0);
        CHECK(a[2].type == MSGPACK_OBJECT_ARRAY && a[2].via.array.size == 0);
        CHECK(str_is(&a[3], "x", 1));
    }
    v = get(&c.o, "obj");
    v = v ? get(v, "inner") : NULL;
    v = v ? get(v, "deep") : NULL;
    CHECK(v && v->type == MSGPACK_OBJECT_ARRAY && v->via.array.size == 1 &&
          v->via.array.ptr[0].type == MSGPACK_OBJECT_NIL);
    conv_free(&c);

    /* A scalar root is fine (bodies are checked to be maps elsewhere). */
    conv_text(&c, BYTES("\"just a string\""));
    CHECK_INT(c.rc, IDL_OK);
    CHECK(str_is(&c.o, BYTES("just a string")));
    conv_free(&c);

    /* Two conversions append to the same buffer. */
    idl_buf out = {0};
    char msg[IDL_ERR_MAX];
    CHECK_INT(idl_json_to_msgpack(BYTES("[1]"), &out, msg), IDL_OK);
    CHECK_INT(idl_json_to_msgpack(BYTES("{}"), &out, msg), IDL_OK);
    CHECK(out.len == 3 && memcmp(out.data, "\x91\x01\x80", 3) == 0);
    idl_buf_free(&out);

    /* len bounds the text: what follows is not read. */
    conv_text(&c, "[true] trailing garbage", 6);
    CHECK_INT(c.rc, IDL_OK);
    CHECK(c.o.type == MSGPACK_OBJECT_ARRAY && c.o.via.array.size == 1);
    conv_free(&c);
}

static void integers_and_floats(void)
{
    const char text[] = "[0, 1, -1, -32, -33, 127, 128, 255, 256, 65536, -129,"
                        " 9007199254740993, -9007199254740993,"
                        " 9223372036854775807, -9223372036854775808,"
                        " 1.5, -0.0, 1e-7, 2.5e300, 0.1, 3.0]";
    conv c;
    conv_text(&c, text, strlen(text));
    CHECK_INT(c.rc, IDL_OK);
    CHECK(c.o.type == MSGPACK_OBJECT_ARRAY && c.o.via.array.size == 21);
    if (c.o.type == MSGPACK_OBJECT_ARRAY && c.o.via.array.size == 21) {
        const msgpack_object *a = c.o.via.array.ptr;
        const uint64_t pos[] = {0, 1};
        for (int i = 0; i < 2; i++)
            CHECK(a[i].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[i].via.u64 == pos[i]);
        CHECK(a[2].type == MSGPACK_OBJECT_NEGATIVE_INTEGER && a[2].via.i64 == -1);
        CHECK(a[3].type == MSGPACK_OBJECT_NEGATIVE_INTEGER && a[3].via.i64 == -32);
        CHECK(a[4].type == MSGPACK_OBJECT_NEGATIVE_INTEGER && a[4].via.i64 == -33);
        CHECK(a[5].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[5].via.u64 == 127);
        CHECK(a[6].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[6].via.u64 == 128);
        CHECK(a[7].via.u64 == 255 && a[8].via.u64 == 256 && a[9].via.u64 == 65536);
        CHECK(a[10].type == MSGPACK_OBJECT_NEGATIVE_INTEGER && a[10].via.i64 == -129);
        CHECK(a[11].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
              a[11].via.u64 == 9007199254740993ull);
        CHECK(a[12].type == MSGPACK_OBJECT_NEGATIVE_INTEGER &&
              a[12].via.i64 == -9007199254740993ll);
        CHECK(a[13].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[13].via.u64 == INT64_MAX);
        CHECK(a[14].type == MSGPACK_OBJECT_NEGATIVE_INTEGER && a[14].via.i64 == INT64_MIN);
        CHECK(a[15].type == MSGPACK_OBJECT_FLOAT64 && a[15].via.f64 == 1.5);
        CHECK(a[16].type == MSGPACK_OBJECT_FLOAT64 && a[16].via.f64 == 0.0 &&
              signbit(a[16].via.f64));
        CHECK(a[17].type == MSGPACK_OBJECT_FLOAT64 && a[17].via.f64 == 1e-7);
        CHECK(a[18].type == MSGPACK_OBJECT_FLOAT64 && a[18].via.f64 == 2.5e300);
        CHECK(a[19].type == MSGPACK_OBJECT_FLOAT64 && a[19].via.f64 == 0.1);
        /* 3.0 stays a float: a JSON real is never turned into an integer. */
        CHECK(a[20].type == MSGPACK_OBJECT_FLOAT64 && a[20].via.f64 == 3.0);
    }
    conv_free(&c);
    /* Non-negative integers are packed unsigned, in the smallest width. */
    idl_buf out = {0};
    char msg[IDL_ERR_MAX];
    CHECK_INT(idl_json_to_msgpack(BYTES("[5, 200, 9223372036854775807, -5]"), &out, msg), IDL_OK);
    CHECK(out.len == 1 + 1 + 2 + 9 + 1);
    CHECK(memcmp(out.data, "\x94\x05\xcc\xc8\xcf\x7f\xff\xff\xff\xff\xff\xff\xff\xfb", 14) == 0);
    idl_buf_free(&out);
}

static void invalid_json_names_line_and_column(void)
{
    static const struct {
        const char *text;
        const char *where; /* expected "line L column C" fragment, or NULL */
    } cases[] = {
        {"{\n  \"a\": 1,\n  \"b\": }", "line 3"},
        {"[1, 2", "line 1"},
        {"", "line"},
        {"   ", "line"},
        {"{\"a\" 1}", "line 1"},
        {"{} x", "line 1"},
        {"[1,]", "line 1"},
        {"{'a': 1}", "line 1"},
        {"[\"unterminated]", "line 1"},
        {"[\"bad escape \\q\"]", "line 1"},
        {"[\"\xff\xfe invalid utf-8\"]", "line 1"},
        {"[NaN]", "line 1"},
        {"[1e999]", "line 1"},
        {"\n\n\n   @", "line 4"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        idl_buf out = {0};
        char msg[IDL_ERR_MAX] = "";
        int rc = idl_json_to_msgpack(cases[i].text, strlen(cases[i].text), &out, msg);
        CHECK_INT(rc, IDL_INVALID_ARGUMENT);
        CHECK(strstr(msg, cases[i].where) != NULL);
        CHECK(strstr(msg, "column") != NULL);
        CHECK_INT(out.len, 0);
        if (rc != IDL_INVALID_ARGUMENT || !strstr(msg, cases[i].where))
            fprintf(stderr, "  case %zu: \"%s\"\n", i, msg);
        idl_buf_free(&out);
    }
    /* The column is the one jansson reports for the offending token. */
    idl_buf out = {0};
    char msg[IDL_ERR_MAX] = "";
    CHECK_INT(idl_json_to_msgpack(BYTES("{\"a\": tru}"), &out, msg), IDL_INVALID_ARGUMENT);
    json_error_t err;
    json_t *j = json_loads("{\"a\": tru}", 0, &err);
    CHECK(j == NULL);
    char want[64];
    snprintf(want, sizeof want, "line %d column %d", err.line, err.column);
    CHECK(strstr(msg, want) != NULL);
    idl_buf_free(&out);
}

static void fill_scalars(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 9);
    msgpack_pack_nil(pk);
    msgpack_pack_true(pk);
    msgpack_pack_false(pk);
    msgpack_pack_uint64(pk, UINT64_MAX);
    msgpack_pack_int64(pk, INT64_MIN);
    msgpack_pack_int(pk, -1);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_int8(pk, 7); /* a signed width for a non-negative value */
    msgpack_pack_uint64(pk, (uint64_t)INT64_MAX + 1);
}

static void fill_floats(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 12);
    msgpack_pack_double(pk, 1.5);
    msgpack_pack_double(pk, 1.0);
    msgpack_pack_double(pk, 0.1);
    msgpack_pack_double(pk, -2.0);
    msgpack_pack_double(pk, -0.0);
    msgpack_pack_double(pk, 1e300);
    msgpack_pack_double(pk, 0.30000000000000004);
    msgpack_pack_double(pk, NAN);
    msgpack_pack_double(pk, INFINITY);
    msgpack_pack_double(pk, -INFINITY);
    msgpack_pack_float(pk, 0.5f);
    msgpack_pack_double(pk, 5e-324);
}

static void fill_strings(msgpack_packer *pk)
{
    static const char s[] = "q\"b\\s/\n\r\t\x01\x08\x0c\x1f\x7f caf\xc3\xa9 \xf0\x9f\x98\x80";
    msgpack_pack_array(pk, 3);
    msgpack_pack_str(pk, sizeof s - 1);
    msgpack_pack_str_body(pk, s, sizeof s - 1);
    msgpack_pack_str(pk, 3);
    msgpack_pack_str_body(pk, "a\0b", 3);
    msgpack_pack_str(pk, 0);
}

static void fill_bin_ext(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3);
    msgpack_pack_bin(pk, 4);
    msgpack_pack_bin_body(pk, "\x00\x01\xab\xff", 4);
    msgpack_pack_ext(pk, 1, 3);
    msgpack_pack_ext_body(pk, "x", 1);
    msgpack_pack_bin(pk, 0);
}

static void fill_odd_keys(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 4);
    msgpack_pack_int(pk, 1);
    msgpack_pack_str(pk, 1);
    msgpack_pack_str_body(pk, "x", 1);
    msgpack_pack_int(pk, -2);
    msgpack_pack_nil(pk);
    msgpack_pack_nil(pk);
    msgpack_pack_true(pk);
    msgpack_pack_str(pk, 3);
    msgpack_pack_str_body(pk, "k\"\n", 3);
    msgpack_pack_array(pk, 0);
}

static void fill_nested(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 3);
    msgpack_pack_str(pk, 1);
    msgpack_pack_str_body(pk, "a", 1);
    msgpack_pack_int(pk, 1);
    msgpack_pack_str(pk, 1);
    msgpack_pack_str_body(pk, "b", 1);
    msgpack_pack_array(pk, 2);
    msgpack_pack_true(pk);
    msgpack_pack_map(pk, 1);
    msgpack_pack_str(pk, 1);
    msgpack_pack_str_body(pk, "c", 1);
    msgpack_pack_nil(pk);
    msgpack_pack_str(pk, 1);
    msgpack_pack_str_body(pk, "d", 1);
    msgpack_pack_map(pk, 0);
}

static void print_every_type(void)
{
    char *s = print_packed(fill_scalars, false);
    CHECK_STR(s, "[null,true,false,18446744073709551615,-9223372036854775808,-1,0,7,"
                 "9223372036854775808]");
    free(s);

    s = print_packed(fill_floats, false);
    CHECK_STR(s, "[1.5,1.0,0.1,-2.0,-0.0,1e+300,0.30000000000000004,null,null,null,0.5,"
                 "5e-324]");
    free(s);

    s = print_packed(fill_strings, false);
    CHECK_STR(s, "[\"q\\\"b\\\\s/\\n\\r\\t\\u0001\\u0008\\u000c\\u001f\x7f caf\xc3\xa9 "
                 "\xf0\x9f\x98\x80\",\"a\\u0000b\",\"\"]");
    /* ... and that text is JSON that reads back to the same bytes. */
    json_error_t err;
    json_t *j = s ? json_loads(s, JSON_ALLOW_NUL, &err) : NULL;
    CHECK(j != NULL);
    if (j) {
        static const char want[] = "q\"b\\s/\n\r\t\x01\x08\x0c\x1f\x7f caf\xc3\xa9 "
                                   "\xf0\x9f\x98\x80";
        json_t *e0 = json_array_get(j, 0), *e1 = json_array_get(j, 1);
        CHECK(json_string_length(e0) == sizeof want - 1 &&
              memcmp(json_string_value(e0), want, sizeof want - 1) == 0);
        CHECK(json_string_length(e1) == 3 && memcmp(json_string_value(e1), "a\0b", 3) == 0);
        json_decref(j);
    }
    free(s);

    s = print_packed(fill_bin_ext, false);
    CHECK_STR(s, "[\"0001abff\",null,\"\"]");
    free(s);

    s = print_packed(fill_odd_keys, false);
    CHECK_STR(s, "{\"1\":\"x\",\"-2\":null,\"null\":true,\"k\\\"\\n\":[]}");
    free(s);

    /* idl_json_print_str alone. */
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    idl_json_print_str(f, "tab\there", 8);
    idl_json_print_str(f, "", 0);
    fclose(f);
    CHECK_STR(out, "\"tab\\there\"\"\"");
    free(out);
}

static void float_formatting_round_trips(void)
{
    /* Shortest text that reads back the same double, always recognizable as a
     * float. */
    static const double vals[] = {0.0,
                                  1.0,
                                  -1.0,
                                  0.5,
                                  0.1,
                                  1.0 / 3,
                                  2.0 / 3,
                                  100.0,
                                  1e21,
                                  1e22,
                                  123.456,
                                  6.02e23,
                                  1e-10,
                                  DBL_MAX,
                                  DBL_MIN,
                                  -DBL_MAX,
                                  5e-324,
                                  M_PI,
                                  0.1 + 0.2,
                                  9007199254740993.0,
                                  12345678901234567890.0,
                                  0.000123,
                                  4.35,
                                  0.9999999999999999};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        msgpack_object o = {.type = MSGPACK_OBJECT_FLOAT64};
        o.via.f64 = vals[i];
        char *s = print(&o, false);
        CHECK(s && strpbrk(s, ".eE") != NULL);
        CHECK(s && strtod(s, NULL) == vals[i]);
        /* JSON grammar: no leading '+', no bare '.', no "inf". */
        CHECK(s && s[0] != '+' && s[0] != '.' && !strstr(s, "inf") && !strstr(s, "nan"));
        json_error_t err;
        json_t *j = s ? json_loads(s, JSON_DECODE_ANY, &err) : NULL;
        CHECK(j && json_is_real(j) && json_real_value(j) == vals[i]);
        if (!j || strtod(s, NULL) != vals[i])
            fprintf(stderr, "  %.17g printed as %s\n", vals[i], s ? s : "(null)");
        json_decref(j);
        free(s);
    }
    /* A pseudo-random sweep. */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int bad = 0;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double d;
        memcpy(&d, &x, sizeof d);
        if (!isfinite(d)) continue;
        msgpack_object o = {.type = MSGPACK_OBJECT_FLOAT64};
        o.via.f64 = d;
        char *s = print(&o, false);
        if (!s || strtod(s, NULL) != d || !strpbrk(s, ".eE")) bad++;
        free(s);
    }
    CHECK_INT(bad, 0);
    /* Shortest: 0.1 is "0.1", not "0.10000000000000001". */
    msgpack_object o = {.type = MSGPACK_OBJECT_FLOAT64};
    o.via.f64 = 0.1;
    char *s = print(&o, false);
    CHECK_STR(s, "0.1");
    free(s);
}

static void pretty_printing_exact(void)
{
    char *s = print_packed(fill_nested, true);
    CHECK_STR(s, "{\n"
                 "  \"a\": 1,\n"
                 "  \"b\": [\n"
                 "    true,\n"
                 "    {\n"
                 "      \"c\": null\n"
                 "    }\n"
                 "  ],\n"
                 "  \"d\": {}\n"
                 "}");
    free(s);
    s = print_packed(fill_nested, false);
    CHECK_STR(s, "{\"a\":1,\"b\":[true,{\"c\":null}],\"d\":{}}");
    free(s);
}

static void json_msgpack_json_round_trip(void)
{
    const char text[] = "{\"id\":18,\"list\":[-5,0.25,\"\\u00e9\\n\",null,false,{}],"
                        "\"big\":9223372036854775807,\"s\":\"a\\u0000b\"}";
    conv c;
    conv_text(&c, text, strlen(text));
    CHECK_INT(c.rc, IDL_OK);
    char *s = print(&c.o, false);
    json_error_t err;
    json_t *a = json_loads(text, JSON_ALLOW_NUL, &err);
    json_t *b = s ? json_loads(s, JSON_ALLOW_NUL, &err) : NULL;
    CHECK(a && b && json_equal(a, b));
    json_decref(a);
    json_decref(b);
    free(s);
    /* Pretty output parses to the same value as well. */
    s = print(&c.o, true);
    a = json_loads(text, JSON_ALLOW_NUL, &err);
    b = s ? json_loads(s, JSON_ALLOW_NUL, &err) : NULL;
    CHECK(a && b && json_equal(a, b));
    json_decref(a);
    json_decref(b);
    free(s);
    conv_free(&c);
}

static void fill_bad_utf8(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3);
    msgpack_pack_str(pk, 5);
    msgpack_pack_str_body(pk, "ab\xff\xfe!", 5);
    msgpack_pack_str(pk, 2);
    msgpack_pack_str_body(pk, "x\xc3", 2); /* a truncated sequence */
    msgpack_pack_str(pk, 4);
    msgpack_pack_str_body(pk, "\xed\xa0\x80!", 4); /* an encoded surrogate */
}

/* Whatever bytes a msgpack str holds, the printed text is JSON (RFC 8259
 * text is UTF-8): the CLI promises one JSON document on stdout. */
static void print_invalid_utf8_is_still_json(void)
{
    char *s = print_packed(fill_bad_utf8, false);
    json_error_t err;
    json_t *j = s ? json_loads(s, 0, &err) : NULL;
    CHECK(j != NULL);
    if (!j) fprintf(stderr, "  printed text is not JSON: %s\n", err.text);
    json_decref(j);
    free(s);
}

int main(void)
{
    RUN(objects_strings_literals);
    RUN(integers_and_floats);
    RUN(invalid_json_names_line_and_column);
    RUN(print_every_type);
    RUN(float_formatting_round_trips);
    RUN(pretty_printing_exact);
    RUN(json_msgpack_json_round_trip);
    RUN(print_invalid_utf8_is_still_json);
    return test_summary();
}
