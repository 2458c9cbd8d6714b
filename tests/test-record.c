/* Person records: parsing and normalization of the DATA.md example field by
 * field, required fields and wrong types, dates, unknown fields and dropped
 * identifiers reported through the warning callback, duplicates and limits
 * per kind, the age and child rules around the 13th birthday, and the store
 * format (pack/unpack round trip; truncated or garbage bytes are DATA_LOSS). */
#include "json.h"
#include "record.h"
#include "status.h"
#include "testutil.h"
#include "wire.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- helpers ---- */

typedef struct {
    int n;
    char text[64][256];
} warnings;

static void collect(void *ctx, const char *reason)
{
    warnings *w = ctx;
    if (w->n < 64) snprintf(w->text[w->n], sizeof w->text[0], "%s", reason);
    w->n++;
}

static int count_warnings_with(const warnings *w, const char *word)
{
    int n = 0;
    for (int i = 0; i < w->n && i < 64; i++)
        n += strstr(w->text[i], word) != NULL;
    return n;
}

/* Parses one record given as JSON text. */
static int parse_json(const char *json, idl_record *r, warnings *w, char reason[IDL_ERR_MAX])
{
    idl_buf buf = {0};
    char msg[IDL_ERR_MAX];
    int rc = idl_json_to_msgpack(json, strlen(json), &buf, msg);
    if (rc != IDL_OK) {
        fprintf(stderr, "  bad test JSON: %s\n", msg);
        idl_buf_free(&buf);
        return -1;
    }
    msgpack_zone z;
    msgpack_zone_init(&z, 1024);
    msgpack_object o;
    size_t off = 0;
    CHECK(msgpack_unpack(buf.data, buf.len, &off, &z, &o) == MSGPACK_UNPACK_SUCCESS);
    if (w) memset(w, 0, sizeof *w);
    memset(reason, 0, 256);
    memset(r, 0x5a, sizeof *r); /* parse must not depend on a clean struct */
    rc = idl_record_parse(&o, r, w ? collect : NULL, w, reason);
    msgpack_zone_destroy(&z);
    idl_buf_free(&buf);
    return rc;
}

static bool utf8_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80             ? 0
                : (*p & 0xe0) == 0xc0 ? 1
                : (*p & 0xf0) == 0xe0 ? 2
                : (*p & 0xf8) == 0xf0 ? 3
                                      : -1;
        if (n < 0 || (n == 1 && *p < 0xc2)) return false;
        uint32_t cp = n == 0 ? *p : n == 1 ? (*p & 0x1fu) : n == 2 ? (*p & 0x0fu) : (*p & 0x07u);
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (p[i] & 0x3fu);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        p += n + 1;
    }
    return true;
}

/* (y, m, d) moved by `days`. */
static void add_days(int *y, int *m, int *d, int days)
{
    struct tm tm = {.tm_year = *y - 1900, .tm_mon = *m - 1, .tm_mday = *d + days, .tm_hour = 12};
    time_t t = timegm(&tm);
    gmtime_r(&t, &tm);
    *y = tm.tm_year + 1900;
    *m = tm.tm_mon + 1;
    *d = tm.tm_mday;
}

static const char example[] =
    "{ \"source_id\": \"crm-000123\","
    "  \"first_name\": \"Jane\", \"middle_name\": \"Q\", \"last_name\": \"Doe\","
    "  \"dob\": \"1984-03-07\","
    "  \"emails\": [\"Jane.Doe@Example.com\"],"
    "  \"phones\": [\"(415) 555-2671\", {\"number\": \"+1 212 555 0100\", \"line_type\": "
    "\"landline\"}],"
    "  \"addresses\": [{\"street\": \"123 north Main Street Apartment 4\", \"city\": "
    "\"Springfield\", \"state\": \"Illinois\", \"zip\": \"62701-1234\"}],"
    "  \"ips\": [\"203.0.113.7\"],"
    "  \"minor\": false }";

/* ---- parsing ---- */

static void data_md_example(void)
{
    idl_record r;
    warnings w;
    char reason[IDL_ERR_MAX];
    CHECK_INT(parse_json(example, &r, &w, reason), IDL_OK);
    CHECK_INT(w.n, 0);
    CHECK_STR(r.source_id, "crm-000123");
    CHECK_STR(r.first_name, "Jane");
    CHECK_STR(r.middle_name, "Q");
    CHECK_STR(r.last_name, "Doe");
    CHECK_STR(r.norm_first, "jane");
    CHECK_STR(r.norm_last, "doe");
    CHECK(r.dob_y == 1984 && r.dob_m == 3 && r.dob_d == 7);
    CHECK(!r.minor);
    CHECK_INT(r.n_emails, 1);
    CHECK_STR(r.emails[0], "jane.doe@example.com");
    CHECK_INT(r.n_phones, 2);
    CHECK_STR(r.phones[0].number, "+14155552671");
    CHECK_INT(r.phones[0].rec_type, IDL_LINE_UNKNOWN);
    CHECK_STR(r.phones[1].number, "+12125550100");
    CHECK_INT(r.phones[1].rec_type, IDL_LINE_LANDLINE);
    /* The plan type is the normalizer's verdict for the same number. */
    for (int i = 0; i < 2; i++) {
        char num[IDL_NORM_PHONE_MAX], cc[3];
        idl_line_type plan = IDL_LINE_PREMIUM;
        const char *why;
        CHECK_INT(
            idl_norm_phone(r.phones[i].number, strlen(r.phones[i].number), num, &plan, cc, &why),
            IDL_OK);
        CHECK_INT(r.phones[i].plan_type, plan);
    }
    CHECK_INT(r.n_addrs, 1);
    CHECK_STR(r.addrs[0].street, "123 N MAIN ST");
    CHECK_STR(r.addrs[0].unit, "APT 4");
    CHECK_STR(r.addrs[0].city, "SPRINGFIELD");
    CHECK_STR(r.addrs[0].state, "IL");
    CHECK_STR(r.addrs[0].zip, "62701");
    CHECK_INT(r.n_ips, 1);
    CHECK_STR(r.ips[0], "203.0.113.7");
    CHECK_INT(r.dropped, 0);

    /* The same record without a warning callback. */
    CHECK_INT(parse_json(example, &r, NULL, reason), IDL_OK);
    CHECK_INT(r.n_phones, 2);
}

static void normalization_in_records(void)
{
    idl_record r;
    warnings w;
    char reason[IDL_ERR_MAX];
    CHECK_INT(parse_json("{\"source_id\": \"  s-1\\t\", \"first_name\": \"  Zo\xc3\xab \","
                         " \"last_name\": \"O'Brien-Smith\","
                         " \"emails\": [\" Jane.Doe+x@GoogleMail.com \", \"JANEDOE@gmail.com\","
                         " \"j.a.n.e.doe+spam@gmail.com\", \"Other@Example.COM\"],"
                         " \"phones\": [{\"number\": \"800-555-0100\", \"line_type\": \"mobile\"},"
                         " \"+44 20 7946 0958\"],"
                         " \"ips\": [\"2001:DB8:0:0::1\"]}",
                         &r, &w, reason),
              IDL_OK);
    CHECK_STR(r.source_id, "s-1");
    CHECK_STR(r.first_name, "Zo\xc3\xab");
    CHECK_STR(r.norm_first, "zoe");
    CHECK_STR(r.norm_last, "o'brien-smith");
    CHECK_STR(r.middle_name, "");
    CHECK_INT(r.dob_y, 0);
    CHECK_INT(r.n_emails, 2);
    CHECK_STR(r.emails[0], "janedoe@gmail.com");
    CHECK_STR(r.emails[1], "other@example.com");
    CHECK_INT(r.dropped, 0);
    CHECK_INT(w.n, 0);
    CHECK_INT(r.n_phones, 2);
    CHECK_STR(r.phones[0].number, "+18005550100");
    CHECK_INT(r.phones[0].rec_type, IDL_LINE_MOBILE); /* as the source said */
    CHECK_INT(r.phones[0].plan_type, IDL_LINE_TOLL_FREE);
    CHECK_STR(r.phones[1].number, "+442079460958");
    CHECK_INT(r.phones[1].rec_type, IDL_LINE_UNKNOWN);
    CHECK_INT(r.phones[1].plan_type, IDL_LINE_LANDLINE);
    CHECK_INT(r.n_ips, 1);
    CHECK_STR(r.ips[0], "2001:db8::1");
    CHECK_INT(r.n_addrs, 0);
}

static void middle_name_optional(void)
{
    idl_record r;
    char reason[IDL_ERR_MAX];
    static const char *const cases[] = {
        "{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \"B\"}",
        "{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \"B\", \"middle_name\": "
        "null}",
        "{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \"B\", \"middle_name\": "
        "\"\"}",
        "{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \"B\", \"middle_name\": \"  "
        "\"}",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_INT(parse_json(cases[i], &r, NULL, reason), IDL_OK);
        CHECK_STR(r.middle_name, "");
    }
    CHECK_INT(parse_json("{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \"B\","
                         " \"middle_name\": \" Quincy \"}",
                         &r, NULL, reason),
              IDL_OK);
    CHECK_STR(r.middle_name, "Quincy");
    /* Longer than the field holds: refused, naming the field. */
    char big[400];
    memset(big, 'm', 200);
    big[200] = 0;
    char json[600];
    snprintf(json, sizeof json,
             "{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \"B\","
             " \"middle_name\": \"%s\"}",
             big);
    CHECK_INT(parse_json(json, &r, NULL, reason), IDL_INVALID_ARGUMENT);
    CHECK(strstr(reason, "middle_name") != NULL);
}

/* A name is displayed and returned in msgpack str, which must be UTF-8. */
static void middle_name_must_be_utf8(void)
{
    idl_record r;
    warnings w;
    char reason[IDL_ERR_MAX];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    idl_wire_pack_cstr(&pk, "source_id");
    idl_wire_pack_cstr(&pk, "s");
    idl_wire_pack_cstr(&pk, "first_name");
    idl_wire_pack_cstr(&pk, "Ann");
    idl_wire_pack_cstr(&pk, "last_name");
    idl_wire_pack_cstr(&pk, "Lee");
    idl_wire_pack_cstr(&pk, "middle_name");
    /* Raw bytes: idl_wire_pack_cstr would escape them into valid text. */
    msgpack_pack_str(&pk, 3);
    msgpack_pack_str_body(&pk, "Q\xff\xc3", 3);
    msgpack_zone z;
    msgpack_zone_init(&z, 1024);
    msgpack_object o;
    size_t off = 0;
    CHECK(msgpack_unpack(sb.data, sb.size, &off, &z, &o) == MSGPACK_UNPACK_SUCCESS);
    memset(&w, 0, sizeof w);
    int rc = idl_record_parse(&o, &r, collect, &w, reason);
    /* Either the record is refused naming the field, or it is kept with a
     * middle name that is valid UTF-8 (dropped with a warning). */
    if (rc == IDL_OK) {
        CHECK(utf8_ok(r.middle_name));
    } else {
        CHECK_INT(rc, IDL_INVALID_ARGUMENT);
        CHECK(strstr(reason, "middle_name") != NULL);
    }
    msgpack_zone_destroy(&z);
    msgpack_sbuffer_destroy(&sb);
}

static void dates(void)
{
    idl_record r;
    char reason[IDL_ERR_MAX], json[512];
    int y, m, d;
    idl_today(&y, &m, &d);
    int ty = y, tm = m, td = d;
    add_days(&ty, &tm, &td, 1);
    char tomorrow[32], next_year[32], today[32];
    snprintf(tomorrow, sizeof tomorrow, "%04d-%02d-%02d", ty, tm, td);
    snprintf(next_year, sizeof next_year, "%04d-01-01", y + 1);
    snprintf(today, sizeof today, "%04d-%02d-%02d", y, m, d);
    const char *bad[] = {"2023-02-29",  "2024-13-01", "2024-00-10", "2024-04-31", "2024-01-00",
                         "1900-02-29",  "84-03-07",   "1984/03/07", "1984-3-7",   "1984-03-07T00",
                         "19840307",    "",           "abcd-ef-gh", "1984-03-0a", "1799-12-31",
                         " 1984-03-07", tomorrow,     next_year,    "9999-12-31"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(json, sizeof json,
                 "{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \"B\","
                 " \"dob\": \"%s\"}",
                 bad[i]);
        CHECK_INT(parse_json(json, &r, NULL, reason), IDL_INVALID_ARGUMENT);
        CHECK(strstr(reason, "'dob'") != NULL);
        if (!strstr(reason, "'dob'"))
            fprintf(stderr, "  dob \"%s\": reason \"%s\"\n", bad[i], reason);
    }
    const char *good[] = {"2024-02-29", "2000-02-29", "1800-01-01", "1984-12-31", today};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(json, sizeof json,
                 "{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \"B\","
                 " \"dob\": \"%s\"}",
                 good[i]);
        CHECK_INT(parse_json(json, &r, NULL, reason), IDL_OK);
        char back[48];
        snprintf(back, sizeof back, "%04d-%02d-%02d", r.dob_y, r.dob_m, r.dob_d);
        CHECK_STR(back, good[i]);
    }
    /* idl_parse_date alone. */
    int py = 7, pm = 7, pd = 7;
    CHECK_INT(idl_parse_date("2024-02-30", 10, &py, &pm, &pd), IDL_INVALID_ARGUMENT);
    CHECK(py == 7 && pm == 7 && pd == 7); /* untouched on failure */
    CHECK_INT(idl_parse_date("2024-02-29xyz", 10, &py, &pm, &pd), IDL_OK);
    CHECK(py == 2024 && pm == 2 && pd == 29);
    CHECK_INT(idl_parse_date("2024-02-2", 9, &py, &pm, &pd), IDL_INVALID_ARGUMENT);
}

static void required_fields(void)
{
    idl_record r;
    char reason[IDL_ERR_MAX];
    static const struct {
        const char *json, *field;
    } cases[] = {
        {"{\"first_name\": \"A\", \"last_name\": \"B\"}", "'source_id'"},
        {"{\"source_id\": \"\", \"first_name\": \"A\", \"last_name\": \"B\"}", "'source_id'"},
        {"{\"source_id\": \"   \", \"first_name\": \"A\", \"last_name\": \"B\"}", "'source_id'"},
        {"{\"source_id\": null, \"first_name\": \"A\", \"last_name\": \"B\"}", "'source_id'"},
        {"{\"source_id\": \"a\\nb\", \"first_name\": \"A\", \"last_name\": \"B\"}", "'source_id'"},
        {"{\"source_id\": \"s\", \"last_name\": \"B\"}", "'first_name'"},
        {"{\"source_id\": \"s\", \"first_name\": \"\", \"last_name\": \"B\"}", "'first_name'"},
        {"{\"source_id\": \"s\", \"first_name\": \"!!!\", \"last_name\": \"B\"}", "'first_name'"},
        {"{\"source_id\": \"s\", \"first_name\": \"A\"}", "'last_name'"},
        {"{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \" \"}", "'last_name'"},
        {"{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": null}", "'last_name'"},
        {"{}", "'source_id'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_INT(parse_json(cases[i].json, &r, NULL, reason), IDL_INVALID_ARGUMENT);
        CHECK(strstr(reason, cases[i].field) != NULL);
        if (!strstr(reason, cases[i].field))
            fprintf(stderr, "  case %zu: reason \"%s\"\n", i, reason);
    }
    /* source_id: up to 127 bytes. */
    char sid[200], json[400];
    memset(sid, 'x', 127);
    sid[127] = 0;
    snprintf(json, sizeof json,
             "{\"source_id\": \"%s\", \"first_name\": \"A\", \"last_name\": \"B\"}", sid);
    CHECK_INT(parse_json(json, &r, NULL, reason), IDL_OK);
    CHECK_INT(strlen(r.source_id), 127);
    memset(sid, 'x', 128);
    sid[128] = 0;
    snprintf(json, sizeof json,
             "{\"source_id\": \"%s\", \"first_name\": \"A\", \"last_name\": \"B\"}", sid);
    CHECK_INT(parse_json(json, &r, NULL, reason), IDL_INVALID_ARGUMENT);
    CHECK(strstr(reason, "'source_id'") != NULL);
}

static void wrong_types(void)
{
    idl_record r;
    char reason[IDL_ERR_MAX];
    static const struct {
        const char *extra, *field, *type;
    } cases[] = {
        {"\"emails\": \"a@b.com\"", "'emails'", "array"},
        {"\"phones\": {}", "'phones'", "array"},
        {"\"addresses\": {\"street\": \"1 Main St\"}", "'addresses'", "array"},
        {"\"ips\": 5", "'ips'", "array"},
        {"\"minor\": \"yes\"", "'minor'", "boolean"},
        {"\"minor\": 0", "'minor'", "boolean"},
        {"\"dob\": 19840307", "'dob'", "string"},
        {"\"middle_name\": [\"Q\"]", "'middle_name'", "string"},
        {"\"first_name\": 5", "'first_name'", "string"},
        {"\"source_id\": 123", "'source_id'", "string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[512];
        /* The wrong-typed key comes last, so it overrides the good one. */
        snprintf(json, sizeof json,
                 "{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \"B\", %s}",
                 cases[i].extra);
        CHECK_INT(parse_json(json, &r, NULL, reason), IDL_INVALID_ARGUMENT);
        CHECK(strstr(reason, cases[i].field) != NULL);
        CHECK(strstr(reason, cases[i].type) != NULL);
        if (!strstr(reason, cases[i].field))
            fprintf(stderr, "  case %zu: reason \"%s\"\n", i, reason);
    }
    /* Not a map at all. */
    static const char *const roots[] = {"[]", "\"record\"", "5", "null"};
    for (size_t i = 0; i < 4; i++) {
        CHECK_INT(parse_json(roots[i], &r, NULL, reason), IDL_INVALID_ARGUMENT);
        CHECK(reason[0] != 0);
    }
    /* minor: true parses (whether it is stored is the store's business). */
    CHECK_INT(parse_json("{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \"B\","
                         " \"minor\": true}",
                         &r, NULL, reason),
              IDL_OK);
    CHECK(r.minor);
}

static void unknown_fields_warn(void)
{
    idl_record r;
    warnings w;
    char reason[IDL_ERR_MAX];
    CHECK_INT(
        parse_json("{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \"B\","
                   " \"nickname\": \"Al\", \"ssn\": \"000-00-0000\", \"extra\": {\"x\": [1]}}",
                   &r, &w, reason),
        IDL_OK);
    CHECK_INT(w.n, 3);
    CHECK_INT(count_warnings_with(&w, "'nickname'"), 1);
    CHECK_INT(count_warnings_with(&w, "'ssn'"), 1);
    CHECK_INT(count_warnings_with(&w, "'extra'"), 1);
    CHECK_INT(r.dropped, 0); /* fields are not identifiers */
    /* A hostile field name does not carry control characters into the text. */
    CHECK_INT(parse_json("{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \"B\","
                         " \"bad\\u001b[31mkey\\n\": 1}",
                         &r, &w, reason),
              IDL_OK);
    CHECK_INT(w.n, 1);
    CHECK(strchr(w.text[0], '\x1b') == NULL && strchr(w.text[0], '\n') == NULL);

    /* A field name that is not UTF-8 is quoted escaped, so the warning
     * (which Upsert sends back) is valid UTF-8 (API.md §2). */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    idl_wire_pack_cstr(&pk, "source_id");
    idl_wire_pack_cstr(&pk, "s");
    idl_wire_pack_cstr(&pk, "first_name");
    idl_wire_pack_cstr(&pk, "Ann");
    idl_wire_pack_cstr(&pk, "last_name");
    idl_wire_pack_cstr(&pk, "Lee");
    msgpack_pack_str(&pk, 5);
    msgpack_pack_str_body(&pk, "k\xc3(\xed\xa0", 5);
    msgpack_pack_nil(&pk);
    msgpack_zone z;
    msgpack_zone_init(&z, 1024);
    msgpack_object o;
    size_t off = 0;
    CHECK(msgpack_unpack(sb.data, sb.size, &off, &z, &o) == MSGPACK_UNPACK_SUCCESS);
    memset(&w, 0, sizeof w);
    CHECK_INT(idl_record_parse(&o, &r, collect, &w, reason), IDL_OK);
    CHECK_INT(w.n, 1);
    CHECK_STR(w.text[0], "unknown field 'k\\xC3(\\xED\\xA0' ignored (not stored)");
    CHECK(utf8_ok(w.text[0]));
    msgpack_zone_destroy(&z);
    msgpack_sbuffer_destroy(&sb);
}

static void invalid_identifiers_dropped(void)
{
    idl_record r;
    warnings w;
    char reason[IDL_ERR_MAX];
    CHECK_INT(parse_json("{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \"B\","
                         " \"emails\": [\"not-an-email\", \"ok@example.com\", 5, \"a@b\"],"
                         " \"phones\": [\"123\", {\"number\": \"+1 212 555 0100\", \"line_type\":"
                         " \"landline\"}, {\"line_type\": \"mobile\"}, [\"+12125550100\"],"
                         " {\"number\": 2125550100}],"
                         " \"addresses\": [{\"street\": \"Main St\", \"zip\": \"62701\"},"
                         " {\"street\": \"1 Main St\", \"zip\": \"123\"}, \"1 Main St\","
                         " {\"street\": \"1 Main St\", \"zip\": \"62701\", \"country\": \"US\"},"
                         " {\"street\": \"1 Main St\", \"state\": \"Atlantis\", \"city\": \"X\"},"
                         " {\"street\": \"9 Elm St\", \"zip\": \"97477\"}],"
                         " \"ips\": [\"999.1.1.1\", \"10.0.0.1\", \"\"]}",
                         &r, &w, reason),
              IDL_OK);
    CHECK_INT(r.n_emails, 1);
    CHECK_STR(r.emails[0], "ok@example.com");
    CHECK_INT(r.n_phones, 1);
    CHECK_STR(r.phones[0].number, "+12125550100");
    CHECK_INT(r.n_addrs, 1);
    CHECK_STR(r.addrs[0].street, "9 ELM ST");
    CHECK_INT(r.n_ips, 1);
    CHECK_STR(r.ips[0], "10.0.0.1");
    /* 3 emails + 4 phones + 5 addresses + 2 ips */
    CHECK_INT(r.dropped, 14);
    CHECK_INT(w.n, 14);
    CHECK_INT(count_warnings_with(&w, "email"), 3);
    CHECK_INT(count_warnings_with(&w, "phone"), 4);
    CHECK_INT(count_warnings_with(&w, "addresses"), 5);
    CHECK_INT(count_warnings_with(&w, "ips"), 2);

    /* An unknown line_type keeps the phone, warns, and records no type. */
    CHECK_INT(
        parse_json("{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \"B\","
                   " \"phones\": [{\"number\": \"+1 212 555 0100\", \"line_type\": \"cell\"}]}",
                   &r, &w, reason),
        IDL_OK);
    CHECK_INT(r.n_phones, 1);
    CHECK_INT(r.phones[0].rec_type, IDL_LINE_UNKNOWN);
    CHECK_INT(r.dropped, 0);
    CHECK_INT(w.n, 1);
    CHECK_INT(count_warnings_with(&w, "line_type"), 1);
}

/* Empty strings where identifiers go are dropped (msgpack-c may decode an
 * empty str with a NULL pointer: nothing may copy from it). */
static void empty_strings(void)
{
    idl_record r;
    warnings w;
    char reason[IDL_ERR_MAX];
    CHECK_INT(parse_json(
                  "{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \"B\","
                  " \"middle_name\": \"\", \"emails\": [\"\"], \"ips\": [\"\"],"
                  " \"phones\": [\"\", {\"number\": \"+1 212 555 0100\", \"line_type\": \"\"}],"
                  " \"addresses\": [{\"street\": \"1 Main St\", \"unit\": \"\", \"city\": \"\","
                  " \"state\": \"\", \"zip\": \"62701\"}, {\"street\": \"\", \"zip\": \"62701\"}]}",
                  &r, &w, reason),
              IDL_OK);
    CHECK_STR(r.middle_name, "");
    CHECK_INT(r.n_emails, 0);
    CHECK_INT(r.n_ips, 0);
    CHECK_INT(r.n_phones, 1);
    CHECK_INT(r.phones[0].rec_type, IDL_LINE_UNKNOWN);
    CHECK_INT(r.n_addrs, 1);
    CHECK_STR(r.addrs[0].street, "1 MAIN ST");
    CHECK_STR(r.addrs[0].unit, "");
    CHECK_STR(r.addrs[0].zip, "62701");
    CHECK_INT(r.dropped, 4); /* email, ip, phone, address */
}

static void duplicates_collapse(void)
{
    idl_record r;
    warnings w;
    char reason[IDL_ERR_MAX];
    CHECK_INT(parse_json("{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \"B\","
                         " \"emails\": [\"a@example.com\", \"A@Example.com \", \"a@example.com\"],"
                         " \"phones\": [\"(415) 555-2671\", \"+14155552671\", \"415.555.2671\"],"
                         " \"ips\": [\"2001:db8::1\", \"2001:DB8:0::1\"],"
                         " \"addresses\": [{\"street\": \"1 Main Street\", \"zip\": \"62701\"},"
                         " {\"street\": \"1 MAIN ST\", \"zip\": \"62701-0000\"}]}",
                         &r, &w, reason),
              IDL_OK);
    CHECK_INT(r.n_emails, 1);
    CHECK_INT(r.n_phones, 1);
    CHECK_INT(r.n_ips, 1);
    CHECK_INT(r.n_addrs, 1);
    CHECK_INT(r.dropped, 0);
    CHECK_INT(w.n, 0);
}

/* An address equal to an earlier one after normalization collapses even
 * when a different address was normalized in between. */
static void duplicate_address_after_another(void)
{
    idl_record r;
    warnings w;
    char reason[IDL_ERR_MAX];
    CHECK_INT(parse_json("{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \"B\","
                         " \"addresses\": ["
                         "{\"street\": \"1 Main St\", \"zip\": \"62701\"},"
                         "{\"street\": \"98765 North Martin Luther King Junior Boulevard"
                         " Suite 1200\", \"city\": \"Los Angeles\", \"state\": \"California\","
                         " \"zip\": \"90001\"},"
                         "{\"street\": \"1 Main Street\", \"zip\": \"62701\"}]}",
                         &r, &w, reason),
              IDL_OK);
    CHECK_INT(r.n_addrs, 2);
    CHECK_INT(r.dropped, 0);
}

static void limits_per_kind(void)
{
    char json[8192];
    size_t n = (size_t)snprintf(
        json, sizeof json, "{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \"B\",");
    n += (size_t)snprintf(json + n, sizeof json - n, " \"emails\": [");
    for (int i = 0; i < 10; i++)
        n += (size_t)snprintf(json + n, sizeof json - n, "%s\"user%d@example.com\"", i ? "," : "",
                              i);
    n += (size_t)snprintf(json + n, sizeof json - n, "], \"phones\": [");
    for (int i = 0; i < 10; i++)
        n +=
            (size_t)snprintf(json + n, sizeof json - n, "%s\"+1 212 555 01%02d\"", i ? "," : "", i);
    n += (size_t)snprintf(json + n, sizeof json - n, "], \"addresses\": [");
    for (int i = 0; i < 6; i++)
        n += (size_t)snprintf(json + n, sizeof json - n,
                              "%s{\"street\": \"%d Main St\", \"zip\": \"62701\"}", i ? "," : "",
                              i + 1);
    n += (size_t)snprintf(json + n, sizeof json - n, "], \"ips\": [");
    for (int i = 0; i < 10; i++)
        n += (size_t)snprintf(json + n, sizeof json - n, "%s\"10.0.0.%d\"", i ? "," : "", i + 1);
    snprintf(json + n, sizeof json - n, "]}");
    idl_record r;
    warnings w;
    char reason[IDL_ERR_MAX];
    CHECK_INT(parse_json(json, &r, &w, reason), IDL_OK);
    CHECK_INT(r.n_emails, IDL_REC_MAX_EMAILS);
    CHECK_INT(r.n_phones, IDL_REC_MAX_PHONES);
    CHECK_INT(r.n_addrs, IDL_REC_MAX_ADDRS);
    CHECK_INT(r.n_ips, IDL_REC_MAX_IPS);
    /* The first ones are kept, in order. */
    CHECK_STR(r.emails[0], "user0@example.com");
    CHECK_STR(r.emails[7], "user7@example.com");
    CHECK_STR(r.phones[7].number, "+12125550107");
    CHECK_STR(r.addrs[3].street, "4 MAIN ST");
    CHECK_STR(r.ips[7], "10.0.0.8");
    CHECK_INT(r.dropped, 2 + 2 + 2 + 2);
    CHECK_INT(w.n, 8);
    CHECK_INT(count_warnings_with(&w, "more"), 8);
}

/* ---- age and children ---- */

static void age_and_children(void)
{
    idl_record r;
    memset(&r, 0, sizeof r);
    CHECK_INT(idl_record_age(&r, 2024, 1, 1), -1);
    CHECK(!idl_record_is_child(&r, 2024, 1, 1));
    r.dob_y = 2010, r.dob_m = 6, r.dob_d = 15;
    CHECK_INT(idl_record_age(&r, 2023, 6, 15), 13); /* the 13th birthday */
    CHECK(!idl_record_is_child(&r, 2023, 6, 15));
    CHECK_INT(idl_record_age(&r, 2023, 6, 14), 12); /* the day before */
    CHECK(idl_record_is_child(&r, 2023, 6, 14));
    CHECK(idl_record_is_child(&r, 2023, 5, 31));
    CHECK(!idl_record_is_child(&r, 2023, 7, 1));
    CHECK_INT(idl_record_age(&r, 2010, 6, 15), 0);
    CHECK(idl_record_is_child(&r, 2010, 6, 15));
    CHECK_INT(idl_record_age(&r, 2024, 1, 1), 13);
    /* Born on Feb 29: a common year's Feb 28 is still before the birthday,
     * Mar 1 is after it. */
    r.dob_y = 2008, r.dob_m = 2, r.dob_d = 29;
    CHECK_INT(idl_record_age(&r, 2021, 2, 28), 12);
    CHECK(idl_record_is_child(&r, 2021, 2, 28));
    CHECK_INT(idl_record_age(&r, 2021, 3, 1), 13);
    CHECK(!idl_record_is_child(&r, 2021, 3, 1));
    r.dob_y = 2000;
    CHECK_INT(idl_record_age(&r, 2016, 2, 29), 16);
    CHECK_INT(idl_record_age(&r, 2016, 2, 28), 15);
    /* minor: true makes a child at any age. */
    r.dob_y = 1950, r.dob_m = 1, r.dob_d = 1;
    r.minor = true;
    CHECK(idl_record_is_child(&r, 2024, 1, 1));
    r.dob_y = 0;
    CHECK(idl_record_is_child(&r, 2024, 1, 1));
}

static void child_relative_to_today(void)
{
    int y, m, d;
    idl_today(&y, &m, &d);
    if (m == 2 && d == 29) {
        printf("     (today is Feb 29: no birthday 13 years ago)\n");
        return;
    }
    idl_record r;
    char reason[IDL_ERR_MAX], json[256];
    snprintf(json, sizeof json,
             "{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \"B\","
             " \"dob\": \"%04d-%02d-%02d\"}",
             y - 13, m, d);
    CHECK_INT(parse_json(json, &r, NULL, reason), IDL_OK);
    CHECK_INT(idl_record_age(&r, y, m, d), 13);
    CHECK(!idl_record_is_child(&r, y, m, d));
    int cy = y - 13, cm = m, cd = d;
    add_days(&cy, &cm, &cd, 1); /* turns 13 tomorrow */
    snprintf(json, sizeof json,
             "{\"source_id\": \"s\", \"first_name\": \"A\", \"last_name\": \"B\","
             " \"dob\": \"%04d-%02d-%02d\"}",
             cy, cm, cd);
    CHECK_INT(parse_json(json, &r, NULL, reason), IDL_OK);
    CHECK_INT(idl_record_age(&r, y, m, d), 12);
    CHECK(idl_record_is_child(&r, y, m, d));
    /* idl_today is a real date. */
    char today[32];
    snprintf(today, sizeof today, "%04d-%02d-%02d", y, m, d);
    int py, pm, pd;
    CHECK_INT(idl_parse_date(today, 10, &py, &pm, &pd), IDL_OK);
    CHECK(y >= 2024);
}

/* ---- store format ---- */

static void records_equal(const idl_record *a, const idl_record *b)
{
    CHECK_STR(a->source_id, b->source_id);
    CHECK_STR(a->first_name, b->first_name);
    CHECK_STR(a->middle_name, b->middle_name);
    CHECK_STR(a->last_name, b->last_name);
    CHECK_STR(a->norm_first, b->norm_first);
    CHECK_STR(a->norm_last, b->norm_last);
    CHECK(a->dob_y == b->dob_y && a->dob_m == b->dob_m && a->dob_d == b->dob_d);
    CHECK(a->minor == b->minor);
    CHECK_INT(a->n_emails, b->n_emails);
    CHECK_INT(a->n_phones, b->n_phones);
    CHECK_INT(a->n_addrs, b->n_addrs);
    CHECK_INT(a->n_ips, b->n_ips);
    for (int i = 0; i < a->n_emails && i < b->n_emails; i++)
        CHECK_STR(a->emails[i], b->emails[i]);
    for (int i = 0; i < a->n_phones && i < b->n_phones; i++) {
        CHECK_STR(a->phones[i].number, b->phones[i].number);
        CHECK_INT(a->phones[i].rec_type, b->phones[i].rec_type);
        CHECK_INT(a->phones[i].plan_type, b->phones[i].plan_type);
    }
    for (int i = 0; i < a->n_addrs && i < b->n_addrs; i++) {
        CHECK_STR(a->addrs[i].street, b->addrs[i].street);
        CHECK_STR(a->addrs[i].unit, b->addrs[i].unit);
        CHECK_STR(a->addrs[i].city, b->addrs[i].city);
        CHECK_STR(a->addrs[i].state, b->addrs[i].state);
        CHECK_STR(a->addrs[i].zip, b->addrs[i].zip);
    }
    for (int i = 0; i < a->n_ips && i < b->n_ips; i++)
        CHECK_STR(a->ips[i], b->ips[i]);
}

static void pack(const idl_record *r, idl_buf *b)
{
    msgpack_packer pk;
    idl_buf_packer(b, &pk);
    idl_record_pack(&pk, r);
    CHECK(!b->failed);
}

static void pack_unpack_round_trip(void)
{
    idl_record r, back;
    char reason[IDL_ERR_MAX];
    CHECK_INT(parse_json(example, &r, NULL, reason), IDL_OK);
    idl_buf b = {0};
    pack(&r, &b);
    memset(&back, 0x5a, sizeof back);
    CHECK_INT(idl_record_unpack(b.data, b.len, &back), IDL_OK);
    records_equal(&r, &back);
    CHECK_INT(back.dropped, 0);
    idl_buf_free(&b);

    /* Minimal: no middle, no dob, minor, no identifiers. */
    CHECK_INT(parse_json("{\"source_id\": \"m\", \"first_name\": \"Al\", \"last_name\": \"Bo\","
                         " \"minor\": true}",
                         &r, NULL, reason),
              IDL_OK);
    pack(&r, &b);
    memset(&back, 0x5a, sizeof back);
    CHECK_INT(idl_record_unpack(b.data, b.len, &back), IDL_OK);
    records_equal(&r, &back);
    idl_buf_free(&b);

    /* Full: every kind at its maximum, long values (str8/str16 widths). */
    char json[16384];
    size_t n = (size_t)snprintf(json, sizeof json,
                                "{\"source_id\": \"%0127d\", \"first_name\": \"%0100d\","
                                " \"middle_name\": \"M\xc3\xa9lanie\", \"last_name\": \"Zz\","
                                " \"dob\": \"1800-01-01\", \"emails\": [",
                                7, 8);
    for (int i = 0; i < 8; i++)
        // A local part has at most 64 octets (RFC 5321), so the length is in
        // the domain: 64 + 1 + 189 = 254 octets, the longest valid address.
        n += (size_t)snprintf(json + n, sizeof json - n, "%s\"%064d@%063d.%063d.%057d.com\"",
                              i ? "," : "", i, 1, 2, 3);
    n += (size_t)snprintf(json + n, sizeof json - n, "], \"phones\": [");
    for (int i = 0; i < 8; i++)
        n += (size_t)snprintf(json + n, sizeof json - n,
                              "%s{\"number\": \"+1 900 555 01%02d\", \"line_type\": \"voip\"}",
                              i ? "," : "", i);
    n += (size_t)snprintf(json + n, sizeof json - n, "], \"addresses\": [");
    for (int i = 0; i < 4; i++)
        n += (size_t)snprintf(json + n, sizeof json - n,
                              "%s{\"street\": \"%d West Avenue of the Americas Suite %d\","
                              " \"city\": \"New York\", \"state\": \"NY\", \"zip\": \"10001\"}",
                              i ? "," : "", 1000 + i, i + 1);
    n += (size_t)snprintf(json + n, sizeof json - n, "], \"ips\": [");
    for (int i = 0; i < 8; i++)
        n += (size_t)snprintf(json + n, sizeof json - n, "%s\"2001:db8:%x::ffff:1\"", i ? "," : "",
                              i + 1);
    snprintf(json + n, sizeof json - n, "]}");
    CHECK_INT(parse_json(json, &r, NULL, reason), IDL_OK);
    CHECK(r.n_emails == 8 && r.n_phones == 8 && r.n_addrs == 4 && r.n_ips == 8);
    pack(&r, &b);
    memset(&back, 0x5a, sizeof back);
    CHECK_INT(idl_record_unpack(b.data, b.len, &back), IDL_OK);
    records_equal(&r, &back);
    CHECK_INT(back.phones[3].rec_type, IDL_LINE_VOIP);
    CHECK_INT(back.phones[3].plan_type, IDL_LINE_PREMIUM);

    /* Every strict prefix is DATA_LOSS (each in an exact-size copy). */
    int before = test_failures_;
    for (size_t cut = 0; cut < b.len; cut++) {
        char *p = malloc(cut ? cut : 1);
        memcpy(p, b.data, cut);
        CHECK_INT(idl_record_unpack(p, cut, &back), IDL_DATA_LOSS);
        free(p);
        if (test_failures_ != before) {
            fprintf(stderr, "  prefix of %zu bytes of %zu accepted\n", cut, b.len);
            break;
        }
    }
    idl_buf_free(&b);
}

static bool bounded(const char *s, size_t cap)
{
    return strnlen(s, cap) < cap;
}

static void unpack_garbage(void)
{
    idl_record r;
    static const struct {
        const char *bytes;
        size_t n;
    } cases[] = {
        {"", 0},
        {"\xc0", 1},
        {"\x80", 1},
        {"\x9f", 1},
        {"\x9e\x01", 2}, /* 14 elements */
        {"\x9f\x02", 2}, /* version 2 */
        {"\x9f\x01\xdb\xff\xff\xff\xff"
         "a",
         8}, /* a 4 GiB str */
        {"\xdd\xff\xff\xff\xff", 5},
        {"\xdc\x00\x0f\x01", 4},
        {"\x9f\x01\xa1s\xa1"
         "a\xc0\xa1"
         "b\xa1"
         "a\xa1"
         "b\x00\x00\x00\xc2\x99",
         19},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *p = malloc(cases[i].n ? cases[i].n : 1);
        memcpy(p, cases[i].bytes, cases[i].n);
        CHECK_INT(idl_record_unpack(p, cases[i].n, &r), IDL_DATA_LOSS);
        free(p);
    }
    /* More identifiers than a record holds. */
    idl_record full;
    char reason[IDL_ERR_MAX];
    CHECK_INT(parse_json(example, &full, NULL, reason), IDL_OK);
    full.n_emails = 0;
    full.n_phones = 0;
    full.n_addrs = 0;
    full.n_ips = 0;
    idl_buf b = {0};
    pack(&full, &b);
    /* The last four bytes are the four empty arrays (0x90); make each 9. */
    CHECK(b.len > 4 && memcmp(b.data + b.len - 4, "\x90\x90\x90\x90", 4) == 0);
    for (int k = 1; k <= 4; k++) {
        char *p = malloc(b.len);
        memcpy(p, b.data, b.len);
        p[b.len - (size_t)k] = (char)0x99;
        CHECK_INT(idl_record_unpack(p, b.len, &r), IDL_DATA_LOSS);
        free(p);
    }
    idl_buf_free(&b);

    /* Byte flips and random bytes: OK or DATA_LOSS, never a crash, and
     * strings always terminated inside their buffers. */
    CHECK_INT(parse_json(example, &full, NULL, reason), IDL_OK);
    pack(&full, &b);
    int bad = 0;
    for (size_t i = 0; i < b.len; i++) {
        for (int v = 0; v < 256; v += 17) {
            char *p = malloc(b.len);
            memcpy(p, b.data, b.len);
            p[i] = (char)v;
            int rc = idl_record_unpack(p, b.len, &r);
            if (rc != IDL_OK && rc != IDL_DATA_LOSS) bad++;
            if (rc == IDL_OK) {
                bad += !bounded(r.source_id, sizeof r.source_id) ||
                       !bounded(r.first_name, sizeof r.first_name) || r.n_emails < 0 ||
                       r.n_emails > IDL_REC_MAX_EMAILS || r.n_phones > IDL_REC_MAX_PHONES ||
                       r.n_addrs > IDL_REC_MAX_ADDRS || r.n_ips > IDL_REC_MAX_IPS;
            }
            free(p);
        }
    }
    idl_buf_free(&b);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 20000; i++) {
        unsigned char p[64];
        size_t n = (size_t)(i % 64);
        for (size_t k = 0; k < n; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            p[k] = (unsigned char)x;
        }
        if (n) p[0] = 0x9f; /* get past the first check more often */
        if (n > 1) p[1] = 0x01;
        unsigned char *h = malloc(n ? n : 1);
        memcpy(h, p, n);
        int rc = idl_record_unpack(h, n, &r);
        bad += rc != IDL_OK && rc != IDL_DATA_LOSS;
        free(h);
    }
    CHECK_INT(bad, 0);
}

int main(void)
{
    RUN(data_md_example);
    RUN(normalization_in_records);
    RUN(middle_name_optional);
    RUN(middle_name_must_be_utf8);
    RUN(dates);
    RUN(required_fields);
    RUN(wrong_types);
    RUN(unknown_fields_warn);
    RUN(invalid_identifiers_dropped);
    RUN(empty_strings);
    RUN(duplicates_collapse);
    RUN(duplicate_address_after_another);
    RUN(limits_per_kind);
    RUN(age_and_children);
    RUN(child_relative_to_today);
    RUN(pack_unpack_round_trip);
    RUN(unpack_garbage);
    return test_summary();
}
