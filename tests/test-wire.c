/* The wire codec: request envelopes built by the client encoder decode back
 * exactly (every msgpack integer width of the id included); a corpus of
 * malformed messages (truncations at every offset, wrong types, depth, huge
 * declared lengths, object counts, size) each gets INVALID_ARGUMENT with a
 * sentence and the documented id echo; body field parsing; idl_buf. */
#include "client.h"
#include "status.h"
#include "testmp.h"
#include "testutil.h"
#include "wire.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define BYTES(lit) lit, sizeof(lit) - 1

/* A message the reply can carry: non-empty, printable, more than one word. */
static bool is_sentence(const char *m)
{
    size_t n = strnlen(m, IDL_ERR_MAX);
    if (n == 0 || n >= IDL_ERR_MAX) return false;
    bool space = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)m[i];
        if (c < 0x20 || c == 0x7f) return false;
        space |= c == ' ';
    }
    return space;
}

/* ---- building messages ---- */

static void b_raw(builder *b, const void *p, size_t n)
{
    msgpack_sbuffer_write(&b->sb, p, n);
}

static void b_free(builder *b)
{
    msgpack_sbuffer_destroy(&b->sb);
}

/* Result of one decode, with the zone already released. */
typedef struct {
    int rc;
    bool has_id;
    uint64_t id;
    char msg[IDL_ERR_MAX];
} outcome;

static outcome decode(const void *buf, size_t len)
{
    outcome o;
    msgpack_zone z;
    msgpack_zone_init(&z, 1024);
    idl_request req;
    memset(&req, 0x5a, sizeof req);
    memset(o.msg, 0, sizeof o.msg);
    o.rc = idl_wire_decode_request(buf, len, &z, &req, o.msg);
    o.has_id = req.has_id;
    o.id = req.id;
    msgpack_zone_destroy(&z);
    return o;
}

/* Checks an expected failure: the code, a sentence, the id echo, and that
 * the sentence mentions `word` (when given). */
static void expect_invalid(const void *buf, size_t len, bool has_id, uint64_t id, const char *word,
                           const char *what)
{
    outcome o = decode(buf, len);
    int before = test_failures_;
    CHECK_INT(o.rc, IDL_INVALID_ARGUMENT);
    CHECK(is_sentence(o.msg));
    CHECK_INT(o.has_id, has_id);
    CHECK_INT(o.id, has_id ? id : 0);
    if (word) CHECK(strstr(o.msg, word) != NULL);
    if (test_failures_ != before) fprintf(stderr, "  case: %s (msg \"%s\")\n", what, o.msg);
}

/* {"id": <raw id bytes>, "method": "m"} */
static void env_with_raw_id(builder *b, const void *idbytes, size_t n)
{
    b_init(b);
    msgpack_pack_map(&b->pk, 2);
    b_str(b, "id");
    b_raw(b, idbytes, n);
    b_str(b, "method");
    b_str(b, "m");
}

/* ---- round trips ---- */

static void round_trip_from_client_encoder(void)
{
    builder body;
    b_init(&body);
    msgpack_pack_map(&body.pk, 2);
    b_str(&body, "email");
    b_str(&body, "jane@example.com");
    b_str(&body, "limit");
    msgpack_pack_uint8(&body.pk, 5);

    const uint64_t ids[] = {
        0,         1, 127, 128, 255, 256, 65535, 65536, 4294967295u, 4294967296u, UINT64_MAX - 1,
        UINT64_MAX};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        void *enc = NULL;
        size_t len = 0;
        CHECK_INT(idl_request_encode(ids[i], "idlookup.v1.Lookup/Search", "KEY123", 250,
                                     body.sb.data, body.sb.size, &enc, &len),
                  IDL_OK);
        msgpack_zone z;
        msgpack_zone_init(&z, 1024);
        idl_request req;
        char msg[IDL_ERR_MAX] = "";
        CHECK_INT(idl_wire_decode_request(enc, len, &z, &req, msg), IDL_OK);
        CHECK(req.has_id);
        CHECK(req.id == ids[i]);
        CHECK(req.method_len == strlen("idlookup.v1.Lookup/Search") &&
              memcmp(req.method, "idlookup.v1.Lookup/Search", req.method_len) == 0);
        CHECK(req.auth_len == strlen("Bearer KEY123") &&
              memcmp(req.auth, "Bearer KEY123", req.auth_len) == 0);
        CHECK(req.has_timeout);
        CHECK_INT(req.timeout_ms, 250);
        CHECK(req.body != NULL);
        if (req.body) {
            CHECK_INT(req.body->type, MSGPACK_OBJECT_MAP);
            CHECK_INT(req.body->via.map.size, 2);
            CHECK(idl_wire_str_eq(&req.body->via.map.ptr[0].key, "email"));
            CHECK(idl_wire_str_eq(&req.body->via.map.ptr[0].val, "jane@example.com"));
            CHECK_INT(idl_wire_uint(&req.body->via.map.ptr[1].val), 5);
        }
        msgpack_zone_destroy(&z);
        free(enc);
    }
    b_free(&body);

    /* No key, no timeout, no body: nothing invented. */
    void *enc = NULL;
    size_t len = 0;
    CHECK_INT(idl_request_encode(9, "grpc.health.v1.Health/Check", NULL, -1, NULL, 0, &enc, &len),
              IDL_OK);
    msgpack_zone z;
    msgpack_zone_init(&z, 1024);
    idl_request req;
    char msg[IDL_ERR_MAX] = "";
    CHECK_INT(idl_wire_decode_request(enc, len, &z, &req, msg), IDL_OK);
    CHECK(req.has_id && req.id == 9);
    CHECK(req.auth == NULL && req.auth_len == 0);
    CHECK(!req.has_timeout);
    CHECK(req.body == NULL ||
          (req.body->type == MSGPACK_OBJECT_MAP && req.body->via.map.size == 0));
    msgpack_zone_destroy(&z);
    free(enc);

    /* timeout_ms 0 is present and 0 ("already expired"), not absent. */
    CHECK_INT(idl_request_encode(10, "m", "k", 0, NULL, 0, &enc, &len), IDL_OK);
    msgpack_zone_init(&z, 1024);
    CHECK_INT(idl_wire_decode_request(enc, len, &z, &req, msg), IDL_OK);
    CHECK(req.has_timeout);
    CHECK_INT(req.timeout_ms, 0);
    msgpack_zone_destroy(&z);
    free(enc);
}

static void id_in_every_integer_width(void)
{
    static const struct {
        unsigned char bytes[9];
        size_t n;
        uint64_t want;
    } ok[] = {
        {{0x00}, 1, 0},
        {{0x7f}, 1, 127},
        {{0xcc, 0xff}, 2, 255},
        {{0xcd, 0x01, 0x00}, 3, 256},
        {{0xcd, 0xff, 0xff}, 3, 65535},
        {{0xce, 0x00, 0x01, 0x00, 0x00}, 5, 65536},
        {{0xce, 0xff, 0xff, 0xff, 0xff}, 5, 4294967295u},
        {{0xcf, 0, 0, 0, 1, 0, 0, 0, 0}, 9, 4294967296u},
        {{0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, UINT64_MAX},
        {{0xcf, 0, 0, 0, 0, 0, 0, 0, 0}, 9, 0},
        /* signed encodings of non-negative values */
        {{0xd0, 0x00}, 2, 0},
        {{0xd0, 0x7f}, 2, 127},
        {{0xd1, 0x7f, 0xff}, 3, 32767},
        {{0xd1, 0x00, 0x05}, 3, 5},
        {{0xd2, 0x7f, 0xff, 0xff, 0xff}, 5, 2147483647},
        {{0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, (uint64_t)INT64_MAX},
        {{0xd3, 0, 0, 0, 0, 0, 0, 0, 42}, 9, 42},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        builder b;
        env_with_raw_id(&b, ok[i].bytes, ok[i].n);
        outcome o = decode(b.sb.data, b.sb.size);
        CHECK_INT(o.rc, IDL_OK);
        CHECK(o.has_id);
        CHECK(o.id == ok[i].want);
        if (o.rc != IDL_OK || o.id != ok[i].want) fprintf(stderr, "  id case %zu: %s\n", i, o.msg);
        b_free(&b);
    }
    /* Negative ids, and ids of other types: not decodable, no id. */
    static const struct {
        unsigned char bytes[9];
        size_t n;
    } bad[] = {
        {{0xff}, 1},                                                 /* -1 */
        {{0xe0}, 1},                                                 /* -32 */
        {{0xd0, 0x80}, 2},                                           /* -128 */
        {{0xd1, 0xff, 0xfe}, 3},                                     /* -2 */
        {{0xd2, 0x80, 0, 0, 0}, 5},                                  /* INT32_MIN */
        {{0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9}, /* -1 */
        {{0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0}, 9},                   /* 1.0 */
        {{0xca, 0x3f, 0x80, 0, 0}, 5},                               /* 1.0f */
        {{0xa1, '1'}, 2},                                            /* "1" */
        {{0xc0}, 1},                                                 /* nil */
        {{0xc3}, 1},                                                 /* true */
        {{0x91, 0x01}, 2},                                           /* [1] */
        {{0xc4, 0x01, 0x01}, 3},                                     /* bin */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        builder b;
        env_with_raw_id(&b, bad[i].bytes, bad[i].n);
        expect_invalid(b.sb.data, b.sb.size, false, 0, "'id'", "bad id");
        b_free(&b);
    }
    /* Missing id entirely. */
    builder b;
    b_init(&b);
    msgpack_pack_map(&b.pk, 1);
    b_str(&b, "method");
    b_str(&b, "m");
    expect_invalid(b.sb.data, b.sb.size, false, 0, "'id'", "missing id");
    b_free(&b);
}

static void meta_timeout_body_fields(void)
{
    builder b;
    /* meta with several keys; authorization is picked, others ignored;
     * unknown envelope keys are ignored too. */
    b_init(&b);
    msgpack_pack_map(&b.pk, 5);
    b_str(&b, "x-extra");
    msgpack_pack_array(&b.pk, 0);
    b_str(&b, "id");
    msgpack_pack_uint16(&b.pk, 300);
    b_str(&b, "meta");
    msgpack_pack_map(&b.pk, 2);
    b_str(&b, "x-trace");
    b_str(&b, "abc");
    b_str(&b, "authorization");
    b_str(&b, "Bearer idl_k1_secret");
    b_str(&b, "method");
    b_str(&b, "idlookup.v1.Admin/Stats");
    b_str(&b, "timeout_ms");
    msgpack_pack_uint32(&b.pk, 70000);
    {
        msgpack_zone z;
        msgpack_zone_init(&z, 1024);
        idl_request req;
        char msg[IDL_ERR_MAX];
        CHECK_INT(idl_wire_decode_request(b.sb.data, b.sb.size, &z, &req, msg), IDL_OK);
        CHECK(req.id == 300 && req.has_id);
        CHECK(req.auth_len == 20 && memcmp(req.auth, "Bearer idl_k1_secret", 20) == 0);
        CHECK(req.has_timeout && req.timeout_ms == 70000);
        CHECK(req.body == NULL);
        msgpack_zone_destroy(&z);
    }
    b_free(&b);

    /* nil meta, nil timeout and nil body are absent. */
    b_init(&b);
    msgpack_pack_map(&b.pk, 5);
    b_str(&b, "id");
    msgpack_pack_uint8(&b.pk, 1);
    b_str(&b, "method");
    b_str(&b, "m");
    b_str(&b, "meta");
    msgpack_pack_nil(&b.pk);
    b_str(&b, "timeout_ms");
    msgpack_pack_nil(&b.pk);
    b_str(&b, "body");
    msgpack_pack_nil(&b.pk);
    {
        msgpack_zone z;
        msgpack_zone_init(&z, 1024);
        idl_request req;
        char msg[IDL_ERR_MAX];
        CHECK_INT(idl_wire_decode_request(b.sb.data, b.sb.size, &z, &req, msg), IDL_OK);
        CHECK(req.auth == NULL && !req.has_timeout && req.body == NULL);
        msgpack_zone_destroy(&z);
    }
    b_free(&b);

    /* Wrong types: the id is known, so it is echoed. */
    struct {
        const char *key;
        int kind; /* what to pack as the value */
        const char *word;
    } cases[] = {
        {"method", 0, "'method'"},    /* int */
        {"method", 1, "'method'"},    /* array */
        {"meta", 2, "'meta'"},        /* str */
        {"meta", 3, "'meta'"},        /* map with an int value */
        {"meta", 4, "'meta'"},        /* map with an int key */
        {"timeout_ms", 5, "timeout"}, /* negative */
        {"timeout_ms", 6, "timeout"}, /* float */
        {"timeout_ms", 2, "timeout"}, /* str */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        b_init(&b);
        bool is_method = strcmp(cases[i].key, "method") == 0;
        msgpack_pack_map(&b.pk, is_method ? 2 : 3);
        b_str(&b, "id");
        msgpack_pack_uint64(&b.pk, 77);
        if (!is_method) {
            b_str(&b, "method");
            b_str(&b, "m");
        }
        b_str(&b, cases[i].key);
        switch (cases[i].kind) {
        case 0:
            msgpack_pack_int(&b.pk, 5);
            break;
        case 1:
            msgpack_pack_array(&b.pk, 1);
            msgpack_pack_int(&b.pk, 1);
            break;
        case 2:
            b_str(&b, "x");
            break;
        case 3:
            msgpack_pack_map(&b.pk, 1);
            b_str(&b, "authorization");
            msgpack_pack_int(&b.pk, 5);
            break;
        case 4:
            msgpack_pack_map(&b.pk, 1);
            msgpack_pack_int(&b.pk, 5);
            b_str(&b, "x");
            break;
        case 5:
            msgpack_pack_int(&b.pk, -1);
            break;
        case 6:
            msgpack_pack_double(&b.pk, 1.5);
            break;
        }
        expect_invalid(b.sb.data, b.sb.size, true, 77, cases[i].word, cases[i].key);
        b_free(&b);
    }

    /* A body that is not a map decodes: the contract checks the body last
     * (after method, key, scope, rate and deadline), so the decoder only
     * flags it. */
    for (int kind = 0; kind < 3; kind++) {
        b_init(&b);
        msgpack_pack_map(&b.pk, 3);
        b_str(&b, "id");
        msgpack_pack_uint64(&b.pk, 78);
        b_str(&b, "method");
        b_str(&b, "m");
        b_str(&b, "body");
        if (kind == 0)
            msgpack_pack_int(&b.pk, 5);
        else if (kind == 1)
            b_str(&b, "x");
        else {
            msgpack_pack_array(&b.pk, 1);
            msgpack_pack_int(&b.pk, 1);
        }
        msgpack_zone z;
        msgpack_zone_init(&z, 1024);
        idl_request req;
        char msg[IDL_ERR_MAX];
        CHECK_INT(idl_wire_decode_request(b.sb.data, b.sb.size, &z, &req, msg), IDL_OK);
        CHECK(req.body_not_map && req.body == NULL && req.id == 78);
        msgpack_zone_destroy(&z);
        b_free(&b);
    }

    /* "missing method" keeps the id. */
    b_init(&b);
    msgpack_pack_map(&b.pk, 1);
    b_str(&b, "id");
    msgpack_pack_uint64(&b.pk, UINT64_MAX);
    expect_invalid(b.sb.data, b.sb.size, true, UINT64_MAX, "method", "missing method");
    b_free(&b);
}

static void not_a_map(void)
{
    static const struct {
        const char *bytes;
        size_t n;
        const char *what;
    } cases[] = {
        {BYTES("\x92\xa2id\x01"), "array"},
        {BYTES("\xa2id"), "str"},
        {BYTES("\x05"), "fixint"},
        {BYTES("\xcf\0\0\0\0\0\0\0\x05"), "uint64"},
        {BYTES("\xc0"), "nil"},
        {BYTES("\xc3"), "true"},
        {BYTES("\xcb\x3f\xf0\0\0\0\0\0\0"), "float"},
        {BYTES("\xc4\x02id"), "bin"},
        {BYTES("\x90"), "empty array"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_invalid(cases[i].bytes, cases[i].n, false, 0, NULL, cases[i].what);
    /* An empty map is a map without an id. */
    expect_invalid("\x80", 1, false, 0, "'id'", "empty map");
}

static void empty_and_truncated_everywhere(void)
{
    expect_invalid("", 0, false, 0, NULL, "empty");
    expect_invalid(NULL, 0, false, 0, NULL, "empty NULL");

    builder body;
    b_init(&body);
    msgpack_pack_map(&body.pk, 3);
    b_str(&body, "email");
    b_str(&body, "a-rather-long-address-for-str8@example.com");
    b_str(&body, "limit");
    msgpack_pack_uint64(&body.pk, 100000);
    b_str(&body, "min_score");
    msgpack_pack_double(&body.pk, 0.25);
    void *enc = NULL;
    size_t len = 0;
    CHECK_INT(idl_request_encode(123456789, "idlookup.v1.Lookup/Search", "KEY", 1000, body.sb.data,
                                 body.sb.size, &enc, &len),
              IDL_OK);
    CHECK(decode(enc, len).rc == IDL_OK);
    int failures_before = test_failures_;
    for (size_t cut = 0; cut < len; cut++) {
        /* A fresh copy of exactly `cut` bytes, so ASan sees any overread. */
        char *p = malloc(cut ? cut : 1);
        memcpy(p, enc, cut);
        outcome o = decode(p, cut);
        CHECK_INT(o.rc, IDL_INVALID_ARGUMENT);
        CHECK(is_sentence(o.msg));
        CHECK(!o.has_id && o.id == 0);
        free(p);
        if (test_failures_ != failures_before) {
            fprintf(stderr, "  truncated at %zu of %zu: \"%s\"\n", cut, len, o.msg);
            break;
        }
    }
    free(enc);
    b_free(&body);
}

/* An envelope whose body holds `levels` nested containers (arrays or maps). */
static void nested_body(builder *b, int levels, bool maps)
{
    b_init(b);
    msgpack_pack_map(&b->pk, 3);
    b_str(b, "id");
    msgpack_pack_uint8(&b->pk, 8);
    b_str(b, "method");
    b_str(b, "m");
    b_str(b, "body");
    msgpack_pack_map(&b->pk, 1);
    b_str(b, "k");
    for (int i = 0; i < levels; i++) {
        if (maps) {
            msgpack_pack_map(&b->pk, 1);
            b_str(b, "k");
        } else {
            msgpack_pack_array(&b->pk, 1);
        }
    }
    msgpack_pack_nil(&b->pk);
}

static void deep_nesting(void)
{
    builder b;
    /* Root map + body map + 14 = 16 levels: the limit, accepted. */
    for (int maps = 0; maps < 2; maps++) {
        nested_body(&b, IDL_WIRE_MAX_DEPTH - 2, maps);
        CHECK_INT(decode(b.sb.data, b.sb.size).rc, IDL_OK);
        b_free(&b);
        nested_body(&b, IDL_WIRE_MAX_DEPTH - 1, maps);
        outcome o = decode(b.sb.data, b.sb.size);
        CHECK_INT(o.rc, IDL_INVALID_ARGUMENT);
        CHECK(strstr(o.msg, "deep") || strstr(o.msg, "depth"));
        b_free(&b);
        nested_body(&b, 20, maps);
        o = decode(b.sb.data, b.sb.size);
        CHECK_INT(o.rc, IDL_INVALID_ARGUMENT);
        CHECK(is_sentence(o.msg));
        CHECK(strstr(o.msg, "deep") || strstr(o.msg, "depth"));
        CHECK(!o.has_id);
        b_free(&b);
    }
    /* 20 nested arrays as the whole message. */
    unsigned char deep[21];
    memset(deep, 0x91, 20);
    deep[20] = 0xc0;
    outcome o = decode(deep, sizeof deep);
    CHECK_INT(o.rc, IDL_INVALID_ARGUMENT);
    CHECK(strstr(o.msg, "deep") || strstr(o.msg, "depth"));
    /* A deep structure far past any stack: 60000 nested arrays. */
    size_t n = 60000;
    unsigned char *very = malloc(n + 1);
    memset(very, 0x91, n);
    very[n] = 0xc0;
    o = decode(very, n + 1);
    CHECK_INT(o.rc, IDL_INVALID_ARGUMENT);
    CHECK(strstr(o.msg, "deep") || strstr(o.msg, "depth"));
    free(very);
}

/* Messages declaring 4 GiB (or 4 G entries) with a few bytes following. */
static int run_huge_declared_lengths(void)
{
    static const struct {
        const char *bytes;
        size_t n;
    } cases[] = {
        {BYTES("\xdb\xff\xff\xff\xff"
               "abc")}, /* str32 */
        {BYTES("\xc6\xff\xff\xff\xff"
               "abc")},                              /* bin32 */
        {BYTES("\xdd\xff\xff\xff\xff\x01\x02\x03")}, /* array32 */
        {BYTES("\xdf\xff\xff\xff\xff\xa1k\x01")},    /* map32 */
        {BYTES("\xc9\xff\xff\xff\xff\x01"
               "ab")}, /* ext32 */
        {BYTES("\xda\xff\xff"
               "ab")},                   /* str16 */
        {BYTES("\xdc\xff\xff\x01")},     /* array16 */
        {BYTES("\xde\xff\xff\x01\x01")}, /* map16 */
        {BYTES("\xd9\xff"
               "a")}, /* str8 */
        {BYTES("\xc7\xff\x01"
               "a")}, /* ext8 */
        {BYTES("\xd8\x01"
               "abc")}, /* fixext16, short */
        /* inside a well-formed envelope prefix */
        {BYTES("\x83\xa2id\x01\xa6method\xa1m\xa4"
               "body\xdd\xff\xff\xff\xff\x80")},
        {BYTES("\x83\xa2id\x01\xa6method\xa1m\xa4"
               "body\x81\xa1k\xdb\xff\xff\xff\xff")},
        {BYTES("\x83\xa2id\x01\xa6method\xdb\xff\xff\xff\xff"
               "m\xa4"
               "body\x80")},
        {BYTES("\x83\xa2id\x01\xa6method\xa1m\xa4"
               "body\x81\xa1k\xc6\xff\xff\xff\xff")},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        outcome o = decode(cases[i].bytes, cases[i].n);
        if (o.rc != IDL_INVALID_ARGUMENT || !is_sentence(o.msg) || o.has_id) {
            fprintf(stderr, "  huge case %zu: rc %d msg \"%s\"\n", i, o.rc, o.msg);
            bad++;
        }
    }
    return bad;
}

static void huge_declared_lengths(void)
{
    /* In the parent first, so a failure shows its case. */
    CHECK_INT(run_huge_declared_lengths(), 0);
#ifndef UNDER_ASAN
    /* Again in a child whose address space is capped near its current size:
     * any allocation sized from a declared length would fail there. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        long pages = 0, page = sysconf(_SC_PAGESIZE);
        FILE *f = fopen("/proc/self/statm", "r");
        if (f) {
            if (fscanf(f, "%ld", &pages) != 1) pages = 0;
            fclose(f);
        }
        rlim_t cap = (rlim_t)pages * (rlim_t)page + ((rlim_t)64 << 20);
        struct rlimit rl = {cap, cap};
        if (pages == 0 || setrlimit(RLIMIT_AS, &rl) != 0) _exit(90);
        _exit(run_huge_declared_lengths() ? 1 : 0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st));
    CHECK_INT(WEXITSTATUS(st), 0);
#endif
}

static void c1_trailing_and_size(void)
{
    outcome o = decode("\xc1", 1);
    CHECK_INT(o.rc, IDL_INVALID_ARGUMENT);
    CHECK(strstr(o.msg, "0xc1") != NULL);
    CHECK(!o.has_id);
    /* 0xc1 as a value inside a valid-looking envelope. */
    expect_invalid(BYTES("\x82\xa2id\x01\xa6method\xc1"), false, 0, "0xc1", "c1 value");
    /* Trailing bytes after a complete envelope. */
    void *enc = NULL;
    size_t len = 0;
    CHECK_INT(idl_request_encode(5, "m", "k", -1, NULL, 0, &enc, &len), IDL_OK);
    unsigned char *more = malloc(len + 3);
    memcpy(more, enc, len);
    memcpy(more + len, "\x01\x02\x03", 3);
    expect_invalid(more, len + 1, false, 0, "trailing", "1 trailing byte");
    expect_invalid(more, len + 3, false, 0, "trailing", "3 trailing bytes");
    /* Two envelopes back to back are not one. */
    unsigned char *two = malloc(2 * len);
    memcpy(two, enc, len);
    memcpy(two + len, enc, len);
    expect_invalid(two, 2 * len, false, 0, "trailing", "two envelopes");
    free(two);
    free(more);
    free(enc);

    /* Exactly 65536 bytes is served; 65537 is refused, naming the limit. */
    for (size_t target = IDL_WIRE_MAX_MSG; target <= IDL_WIRE_MAX_MSG + 1; target++) {
        /* {"id":1,"method":"m","body":{"s": str32}} */
        const char head[] = "\x83\xa2id\x01\xa6method\xa1m\xa4"
                            "body\x81\xa1s\xdb";
        size_t hl = sizeof head - 1;
        size_t sl = target - hl - 4;
        unsigned char *msg = malloc(target);
        memcpy(msg, head, hl);
        msg[hl] = (unsigned char)(sl >> 24);
        msg[hl + 1] = (unsigned char)(sl >> 16);
        msg[hl + 2] = (unsigned char)(sl >> 8);
        msg[hl + 3] = (unsigned char)sl;
        memset(msg + hl + 4, 'x', sl);
        o = decode(msg, target);
        if (target == IDL_WIRE_MAX_MSG) {
            CHECK_INT(o.rc, IDL_OK);
        } else {
            CHECK_INT(o.rc, IDL_INVALID_ARGUMENT);
            CHECK(is_sentence(o.msg));
            CHECK(strstr(o.msg, "65536") != NULL);
            CHECK(!o.has_id);
        }
        free(msg);
    }
}

/* {"id":1,"method":"m","body":{"a":[nil x n]}} */
static outcome objects_case(size_t n)
{
    builder b;
    b_init(&b);
    msgpack_pack_map(&b.pk, 3);
    b_str(&b, "id");
    msgpack_pack_uint8(&b.pk, 1);
    b_str(&b, "method");
    b_str(&b, "m");
    b_str(&b, "body");
    msgpack_pack_map(&b.pk, 1);
    b_str(&b, "a");
    msgpack_pack_array(&b.pk, n);
    for (size_t i = 0; i < n; i++)
        msgpack_pack_nil(&b.pk);
    outcome o = decode(b.sb.data, b.sb.size);
    b_free(&b);
    return o;
}

static void too_many_objects(void)
{
    /* API.md §1: any request up to 65,000 bytes is served, however many
     * objects it packs (each takes at least a byte). */
    size_t n = 65000 - 40;
    CHECK_INT(objects_case(n).rc, IDL_OK);
    /* The object cap itself, with a caller's own limits. */
    builder nb;
    b_init(&nb);
    msgpack_pack_array(&nb.pk, 100);
    for (int i = 0; i < 100; i++)
        msgpack_pack_nil(&nb.pk);
    char m[IDL_ERR_MAX];
    CHECK_INT(idl_wire_check_limits(nb.sb.data, nb.sb.size, 1 << 20, 101, m), IDL_OK);
    CHECK_INT(idl_wire_check_limits(nb.sb.data, nb.sb.size, 1 << 20, 100, m), IDL_INVALID_ARGUMENT);
    CHECK(is_sentence(m));
    CHECK(strstr(m, "objects") != NULL);
    b_free(&nb);
    /* Many small maps: 18,000 objects in 18 KB are served too. */
    builder b;
    b_init(&b);
    msgpack_pack_map(&b.pk, 3);
    b_str(&b, "id");
    msgpack_pack_uint8(&b.pk, 1);
    b_str(&b, "method");
    b_str(&b, "m");
    b_str(&b, "body");
    msgpack_pack_map(&b.pk, 1);
    b_str(&b, "a");
    msgpack_pack_array(&b.pk, 6000);
    for (int i = 0; i < 6000; i++) {
        msgpack_pack_map(&b.pk, 1);
        msgpack_pack_nil(&b.pk);
        msgpack_pack_nil(&b.pk);
    }
    outcome o = decode(b.sb.data, b.sb.size);
    CHECK_INT(o.rc, IDL_OK);
    b_free(&b);
}

static void every_type_passes_the_check(void)
{
    builder b;
    b_init(&b);
    msgpack_pack_map(&b.pk, 3);
    b_str(&b, "id");
    msgpack_pack_uint8(&b.pk, 3);
    b_str(&b, "method");
    b_str(&b, "m");
    b_str(&b, "body");
    msgpack_pack_map(&b.pk, 1);
    b_str(&b, "all");
    msgpack_pack_array(&b.pk, 14);
    msgpack_pack_nil(&b.pk);
    msgpack_pack_true(&b.pk);
    msgpack_pack_int64(&b.pk, INT64_MIN);
    msgpack_pack_uint64(&b.pk, UINT64_MAX);
    msgpack_pack_float(&b.pk, 1.5f);
    msgpack_pack_double(&b.pk, -2.25);
    msgpack_pack_bin(&b.pk, 3);
    msgpack_pack_bin_body(&b.pk, "abc", 3);
    msgpack_pack_ext(&b.pk, 1, 5);
    msgpack_pack_ext_body(&b.pk, "\x01", 1);
    msgpack_pack_ext(&b.pk, 16, 5);
    msgpack_pack_ext_body(&b.pk, "0123456789abcdef", 16);
    msgpack_pack_ext(&b.pk, 3, 7);
    msgpack_pack_ext_body(&b.pk, "abc", 3);
    msgpack_pack_ext(&b.pk, 300, 7);
    char big[300];
    memset(big, 'e', sizeof big);
    msgpack_pack_ext_body(&b.pk, big, sizeof big);
    msgpack_pack_str(&b.pk, 40);
    msgpack_pack_str_body(&b.pk, big, 40);
    msgpack_pack_str(&b.pk, 300);
    msgpack_pack_str_body(&b.pk, big, 300);
    msgpack_pack_map(&b.pk, 0);
    char msg[IDL_ERR_MAX];
    CHECK_INT(idl_wire_check(b.sb.data, b.sb.size, msg), IDL_OK);
    msgpack_zone z;
    msgpack_zone_init(&z, 1024);
    idl_request req;
    CHECK_INT(idl_wire_decode_request(b.sb.data, b.sb.size, &z, &req, msg), IDL_OK);
    CHECK(req.body && req.body->type == MSGPACK_OBJECT_MAP);
    if (req.body && req.body->type == MSGPACK_OBJECT_MAP && req.body->via.map.size == 1) {
        const msgpack_object *all = &req.body->via.map.ptr[0].val;
        CHECK_INT(all->type, MSGPACK_OBJECT_ARRAY);
        CHECK_INT(all->via.array.size, 14);
        CHECK_INT(all->via.array.ptr[2].type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
        CHECK(all->via.array.ptr[3].via.u64 == UINT64_MAX);
        CHECK_INT(all->via.array.ptr[12].via.str.size, 300);
    }
    msgpack_zone_destroy(&z);
    b_free(&b);
}

/* ---- body fields ---- */

typedef struct {
    msgpack_sbuffer sb;
    msgpack_zone z;
    msgpack_object obj;
} parsed;

static void parse_built(builder *b, parsed *p)
{
    msgpack_zone_init(&p->z, 1024);
    size_t off = 0;
    p->sb = b->sb;
    CHECK(msgpack_unpack(p->sb.data, p->sb.size, &off, &p->z, &p->obj) == MSGPACK_UNPACK_SUCCESS);
}

static void parsed_free(parsed *p)
{
    msgpack_zone_destroy(&p->z);
    msgpack_sbuffer_destroy(&p->sb);
}

enum { F_EMAIL, F_LIMIT, F_SCORE, F_ADDR, F_CALLS, F_FLAG, F_PERSON, F_N };

static void fields_table(idl_field f[F_N])
{
    f[F_EMAIL] = (idl_field){"email", IDL_FT_STR, NULL};
    f[F_LIMIT] = (idl_field){"limit", IDL_FT_UINT, NULL};
    f[F_SCORE] = (idl_field){"min_score", IDL_FT_NUMBER, NULL};
    f[F_ADDR] = (idl_field){"address", IDL_FT_MAP, NULL};
    f[F_CALLS] = (idl_field){"calls", IDL_FT_ARRAY, NULL};
    f[F_FLAG] = (idl_field){"flag", IDL_FT_BOOL, NULL};
    f[F_PERSON] = (idl_field){"who", IDL_FT_STR_OR_MAP, NULL};
}

/* Runs idl_wire_fields over a body built by `fill` (a map of `pairs`). */
typedef void (*filler)(builder *b);

static int run_fields(filler fill, idl_field f[F_N], char msg[IDL_ERR_MAX], char field[64],
                      parsed *p)
{
    builder b;
    b_init(&b);
    fill(&b);
    parse_built(&b, p);
    fields_table(f);
    for (int i = 0; i < F_N; i++)
        f[i].val = (const msgpack_object *)&f; /* must be reset to NULL */
    memset(msg, 0, IDL_ERR_MAX);
    memset(field, 0, 64);
    return idl_wire_fields(&p->obj, f, F_N, msg, field);
}

static void fill_all_ok(builder *b)
{
    msgpack_pack_map(&b->pk, 7);
    b_str(b, "who");
    msgpack_pack_map(&b->pk, 0);
    b_str(b, "email");
    b_str(b, "a@b.c");
    b_str(b, "limit");
    msgpack_pack_uint64(&b->pk, 10);
    b_str(b, "min_score");
    msgpack_pack_float(&b->pk, 0.5f);
    b_str(b, "address");
    msgpack_pack_map(&b->pk, 0);
    b_str(b, "calls");
    msgpack_pack_array(&b->pk, 0);
    b_str(b, "flag");
    msgpack_pack_false(&b->pk);
}

static void fill_some_nil(builder *b)
{
    msgpack_pack_map(&b->pk, 2);
    b_str(b, "email");
    msgpack_pack_nil(&b->pk);
    b_str(b, "limit");
    msgpack_pack_int8(&b->pk, 3); /* a signed encoding of a non-negative value */
}

static void fill_unknown(builder *b)
{
    msgpack_pack_map(&b->pk, 2);
    b_str(b, "email");
    b_str(b, "a@b.c");
    b_str(b, "emial");
    b_str(b, "a@b.c");
}

static void fill_unknown_ctl(builder *b)
{
    msgpack_pack_map(&b->pk, 1);
    b_str(b, "ev\x1b[2Jil\n");
    msgpack_pack_nil(&b->pk);
}

static void fill_dup(builder *b)
{
    msgpack_pack_map(&b->pk, 2);
    b_str(b, "email");
    b_str(b, "a@b.c");
    b_str(b, "email");
    b_str(b, "x@y.z");
}

static void fill_dup_nil_last(builder *b)
{
    msgpack_pack_map(&b->pk, 2);
    b_str(b, "email");
    b_str(b, "a@b.c");
    b_str(b, "email");
    msgpack_pack_nil(&b->pk);
}

static void fill_dup_nil_first(builder *b)
{
    msgpack_pack_map(&b->pk, 2);
    b_str(b, "email");
    msgpack_pack_nil(&b->pk);
    b_str(b, "email");
    b_str(b, "x@y.z");
}

static void fill_int_key(builder *b)
{
    msgpack_pack_map(&b->pk, 1);
    msgpack_pack_int(&b->pk, 1);
    b_str(b, "x");
}

static void fill_neg_limit(builder *b)
{
    msgpack_pack_map(&b->pk, 1);
    b_str(b, "limit");
    msgpack_pack_int(&b->pk, -1);
}

static void fill_str_limit(builder *b)
{
    msgpack_pack_map(&b->pk, 1);
    b_str(b, "limit");
    b_str(b, "10");
}

static void fill_str_score(builder *b)
{
    msgpack_pack_map(&b->pk, 1);
    b_str(b, "min_score");
    b_str(b, "0.5");
}

static void fill_neg_score(builder *b)
{
    msgpack_pack_map(&b->pk, 1);
    b_str(b, "min_score");
    msgpack_pack_int(&b->pk, -2);
}

static void fill_array_who(builder *b)
{
    msgpack_pack_map(&b->pk, 1);
    b_str(b, "who");
    msgpack_pack_array(&b->pk, 0);
}

static void fill_int_email(builder *b)
{
    msgpack_pack_map(&b->pk, 1);
    b_str(b, "email");
    msgpack_pack_int(&b->pk, 7);
}

static void fill_bool_as_int(builder *b)
{
    msgpack_pack_map(&b->pk, 1);
    b_str(b, "flag");
    msgpack_pack_int(&b->pk, 1);
}

static void fill_not_map(builder *b)
{
    msgpack_pack_array(&b->pk, 1);
    msgpack_pack_nil(&b->pk);
}

static void body_fields(void)
{
    idl_field f[F_N];
    char msg[IDL_ERR_MAX], field[64];
    parsed p;

    CHECK_INT(run_fields(fill_all_ok, f, msg, field, &p), IDL_OK);
    for (int i = 0; i < F_N; i++)
        CHECK(f[i].val != NULL);
    CHECK(idl_wire_str_eq(f[F_EMAIL].val, "a@b.c"));
    CHECK_INT(idl_wire_uint(f[F_LIMIT].val), 10);
    CHECK(idl_wire_number(f[F_SCORE].val) == 0.5);
    CHECK_INT(f[F_PERSON].val->type, MSGPACK_OBJECT_MAP);
    parsed_free(&p);

    /* nil = absent; absent fields are NULL (reset from garbage). */
    CHECK_INT(run_fields(fill_some_nil, f, msg, field, &p), IDL_OK);
    CHECK(f[F_EMAIL].val == NULL);
    CHECK(f[F_LIMIT].val != NULL && idl_wire_uint(f[F_LIMIT].val) == 3);
    CHECK(f[F_ADDR].val == NULL && f[F_CALLS].val == NULL && f[F_PERSON].val == NULL);
    parsed_free(&p);

    /* Unknown field: named in the message and in field_out. */
    CHECK_INT(run_fields(fill_unknown, f, msg, field, &p), IDL_INVALID_ARGUMENT);
    CHECK(strstr(msg, "'emial'") != NULL);
    CHECK(is_sentence(msg));
    CHECK_STR(field, "emial");
    parsed_free(&p);

    /* A hostile key cannot put control characters into the message. */
    CHECK_INT(run_fields(fill_unknown_ctl, f, msg, field, &p), IDL_INVALID_ARGUMENT);
    CHECK(is_sentence(msg));
    CHECK(strchr(msg, '\x1b') == NULL && strchr(msg, '\n') == NULL);
    CHECK(strchr(field, '\x1b') == NULL && strchr(field, '\n') == NULL && field[0]);
    parsed_free(&p);

    /* Duplicates, whichever the order of nil and value. */
    CHECK_INT(run_fields(fill_dup, f, msg, field, &p), IDL_INVALID_ARGUMENT);
    CHECK(strstr(msg, "'email'") && strstr(msg, "twice"));
    CHECK_STR(field, "email");
    parsed_free(&p);
    CHECK_INT(run_fields(fill_dup_nil_last, f, msg, field, &p), IDL_INVALID_ARGUMENT);
    CHECK_STR(field, "email");
    parsed_free(&p);
    CHECK_INT(run_fields(fill_dup_nil_first, f, msg, field, &p), IDL_INVALID_ARGUMENT);
    CHECK_STR(field, "email");
    parsed_free(&p);

    /* Non-string keys. */
    CHECK_INT(run_fields(fill_int_key, f, msg, field, &p), IDL_INVALID_ARGUMENT);
    CHECK(is_sentence(msg) && strstr(msg, "key"));
    CHECK(field[0] != 0);
    parsed_free(&p);

    /* Wrong types name the field and the type wanted. */
    static const struct {
        filler fill;
        const char *field, *word;
    } wrong[] = {
        {fill_neg_limit, "limit", "non-negative integer"},
        {fill_str_limit, "limit", "non-negative integer"},
        {fill_str_score, "min_score", "number"},
        {fill_array_who, "who", "string or a map"},
        {fill_int_email, "email", "string"},
        {fill_bool_as_int, "flag", "boolean"},
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        CHECK_INT(run_fields(wrong[i].fill, f, msg, field, &p), IDL_INVALID_ARGUMENT);
        char quoted[80];
        snprintf(quoted, sizeof quoted, "'%s'", wrong[i].field);
        CHECK(strstr(msg, quoted) != NULL);
        CHECK(strstr(msg, wrong[i].word) != NULL);
        CHECK_STR(field, wrong[i].field);
        parsed_free(&p);
    }
    /* A negative number is a number. */
    CHECK_INT(run_fields(fill_neg_score, f, msg, field, &p), IDL_OK);
    CHECK(f[F_SCORE].val && idl_wire_number(f[F_SCORE].val) == -2.0);
    parsed_free(&p);

    /* A body that is not a map, and a NULL body. */
    CHECK_INT(run_fields(fill_not_map, f, msg, field, &p), IDL_INVALID_ARGUMENT);
    CHECK_STR(field, "body");
    parsed_free(&p);
    fields_table(f);
    CHECK_INT(idl_wire_fields(NULL, f, F_N, msg, NULL), IDL_OK);
    for (int i = 0; i < F_N; i++)
        CHECK(f[i].val == NULL);
    /* field_out may be NULL on failure too. */
    builder b;
    b_init(&b);
    fill_unknown(&b);
    parse_built(&b, &p);
    fields_table(f);
    CHECK_INT(idl_wire_fields(&p.obj, f, F_N, msg, NULL), IDL_INVALID_ARGUMENT);
    parsed_free(&p);
}

static void string_and_number_helpers(void)
{
    msgpack_object s = {.type = MSGPACK_OBJECT_STR};
    s.via.str.ptr = "hello";
    s.via.str.size = 5;
    char buf[6];
    CHECK_INT(idl_wire_str(&s, buf, sizeof buf), IDL_OK);
    CHECK_STR(buf, "hello");
    CHECK_INT(idl_wire_str(&s, buf, 5), IDL_INVALID_ARGUMENT); /* no room for the NUL */
    CHECK(idl_wire_str_eq(&s, "hello"));
    CHECK(!idl_wire_str_eq(&s, "hell"));
    CHECK(!idl_wire_str_eq(&s, "hello!"));
    msgpack_object i = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER};
    i.via.u64 = UINT64_MAX;
    CHECK(idl_wire_uint(&i) == UINT64_MAX);
    CHECK(!idl_wire_str_eq(&i, "hello"));
    CHECK_INT(idl_wire_str(&i, buf, sizeof buf), IDL_INVALID_ARGUMENT);
    msgpack_object n = {.type = MSGPACK_OBJECT_NEGATIVE_INTEGER};
    n.via.i64 = -7;
    CHECK(idl_wire_number(&n) == -7.0);
    CHECK(idl_wire_uint(&n) == 0);
    msgpack_object d = {.type = MSGPACK_OBJECT_FLOAT64};
    d.via.f64 = 0.125;
    CHECK(idl_wire_number(&d) == 0.125);

    /* An empty str as msgpack-c decodes it (its pointer may be NULL). */
    msgpack_zone z;
    msgpack_zone_init(&z, 64);
    msgpack_object e;
    size_t off = 0;
    CHECK(msgpack_unpack("\xa0", 1, &off, &z, &e) == MSGPACK_UNPACK_SUCCESS);
    char ebuf[4] = "xyz";
    CHECK_INT(idl_wire_str(&e, ebuf, sizeof ebuf), IDL_OK);
    CHECK_STR(ebuf, "");
    CHECK(idl_wire_str_eq(&e, ""));
    CHECK(!idl_wire_str_eq(&e, "a"));
    msgpack_zone_destroy(&z);

    /* pack_cstr: NULL is nil, strings are str. */
    idl_buf b = {0};
    msgpack_packer pk;
    idl_buf_packer(&b, &pk);
    idl_wire_pack_cstr(&pk, NULL);
    idl_wire_pack_cstr(&pk, "ab");
    idl_wire_pack_str(&pk, "xyz", 2);
    CHECK_INT(b.len, 1 + 3 + 3);
    CHECK(b.len == 7 && memcmp(b.data,
                               "\xc0\xa2"
                               "ab\xa2xy",
                               7) == 0);
    idl_buf_free(&b);
}

static void buf_growth_and_fixed_overflow(void)
{
    idl_buf b = {0};
    CHECK_INT(idl_buf_write(&b, "x", 1), 0);
    CHECK(b.data != NULL && b.len == 1 && b.cap >= 1);
    char big[5000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 7);
    CHECK_INT(idl_buf_write(&b, big, sizeof big), 0);
    CHECK_INT(b.len, 5001);
    CHECK(b.cap >= 5001);
    CHECK(b.data[0] == 'x' && memcmp(b.data + 1, big, sizeof big) == 0);
    for (int i = 0; i < 1000; i++)
        CHECK_INT(idl_buf_write(&b, big, 100), 0);
    CHECK_INT(b.len, 5001 + 100000);
    CHECK(memcmp(b.data + 5001 + 99900, big, 100) == 0);
    CHECK(!b.failed);
    size_t cap = b.cap;
    char *data = b.data;
    idl_buf_reset(&b);
    CHECK_INT(b.len, 0);
    CHECK(b.cap == cap && b.data == data); /* reused, not freed */
    /* A packer writes through it. */
    msgpack_packer pk;
    idl_buf_packer(&b, &pk);
    msgpack_pack_map(&pk, 1);
    idl_wire_pack_cstr(&pk, "k");
    msgpack_pack_uint64(&pk, UINT64_MAX);
    CHECK(b.len == 12 && memcmp(b.data, "\x81\xa1k\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 12) == 0);
    idl_buf_free(&b);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
    idl_buf_free(&b); /* twice is fine */

    /* Fixed buffers never reallocate: overflow sets failed, keeps what fit. */
    char mem[8];
    idl_buf f = {.data = mem, .cap = sizeof mem, .fixed = true};
    CHECK_INT(idl_buf_write(&f, "abcde", 5), 0);
    CHECK_INT(idl_buf_write(&f, "fgh", 3), 0); /* exactly full */
    CHECK_INT(f.len, 8);
    CHECK(!f.failed);
    CHECK(idl_buf_write(&f, "i", 1) != 0);
    CHECK(f.failed);
    CHECK(f.data == mem && f.cap == 8 && f.len == 8);
    CHECK(memcmp(mem, "abcdefgh", 8) == 0);
    idl_buf_reset(&f);
    CHECK(!f.failed && f.len == 0 && f.data == mem);
    CHECK_INT(idl_buf_write(&f, "0123", 4), 0);
    CHECK(idl_buf_write(&f, "456789", 6) != 0); /* too big: nothing partial */
    CHECK(f.failed && f.len == 4);
    CHECK(idl_buf_write(&f, "x", 1) != 0); /* failure is sticky until reset */
    CHECK(f.len == 4);
    /* Through a packer. */
    idl_buf_reset(&f);
    idl_buf_packer(&f, &pk);
    idl_wire_pack_cstr(&pk, "a string longer than eight bytes");
    CHECK(f.failed);
    CHECK(f.data == mem);
}

/* ---- UTF-8 escaping (API.md §2) ---- */

/* An independent reference: decodes by bit patterns, then refuses overlongs,
 * surrogates and code points above U+10FFFF.  The length of the well-formed
 * sequence at s, or 0. */
static size_t ref_seq(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp;
    if (s[0] < 0x80) return 1;
    if ((s[0] & 0xe0) == 0xc0)
        len = 2, cp = s[0] & 0x1f;
    else if ((s[0] & 0xf0) == 0xe0)
        len = 3, cp = s[0] & 0x0f;
    else if ((s[0] & 0xf8) == 0xf0)
        len = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (n < len) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[k] & 0x3f);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return 0;
    return len;
}

static bool ref_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = ref_seq(s + i, n - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

/* Undoes the escaping of a string that had no backslash. */
static size_t unescape(const char *s, size_t n, unsigned char *out)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 3 < n && s[i + 1] == 'x') {
            unsigned v = 0;
            sscanf(s + i + 2, "%2X", &v);
            out[j++] = (unsigned char)v;
            i += 3;
        } else {
            out[j++] = (unsigned char)s[i];
        }
    }
    return j;
}

static void expect_escape(int line, const char *in, size_t len, const char *want)
{
    char out[256];
    size_t used = idl_wire_utf8_escape(in, len, out, sizeof out);
    expect_at(__FILE__, line, used == len && strcmp(out, want) == 0,
              "escape: got \"%s\" (%zu of %zu bytes), want \"%s\"", out, used, len, want);
    expect_at(__FILE__, line, idl_wire_utf8_valid(out, strlen(out)), "escaped output not UTF-8");
    expect_at(__FILE__, line,
              idl_wire_utf8_valid(in, len) == (strlen(want) == len && memcmp(in, want, len) == 0),
              "idl_wire_utf8_valid disagrees with the escaping");
    /* The packer sends the same text. */
    builder b;
    b_init(&b);
    idl_wire_pack_str(&b.pk, in, len);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    bool ok = msgpack_unpack_next(&up, b.sb.data, b.sb.size, NULL) == MSGPACK_UNPACK_SUCCESS &&
              str_is(&up.data, want);
    expect_at(__FILE__, line, ok, "idl_wire_pack_str does not pack \"%s\"", want);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&b.sb);
}
#define ESC(in, want) expect_escape(__LINE__, BYTES(in), want)

static void utf8_escape_cases(void)
{
    /* Well-formed text passes unchanged, at every sequence length and at
     * the edges of the ranges. */
    ESC("", "");
    ESC("plain ascii ~!", "plain ascii ~!");
    ESC("caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e");
    ESC("\xc2\x80\xdf\xbf", "\xc2\x80\xdf\xbf");                 /* U+0080, U+07FF */
    ESC("\xe0\xa0\x80\xed\x9f\xbf", "\xe0\xa0\x80\xed\x9f\xbf"); /* U+0800, U+D7FF */
    ESC("\xee\x80\x80\xef\xbf\xbd", "\xee\x80\x80\xef\xbf\xbd"); /* U+E000, U+FFFD */
    ESC("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf"); /* U+10000, max */
    ESC("a\\xC3b", "a\\xC3b"); /* a literal backslash is text, not escaped */
    /* Overlongs: every byte escaped. */
    ESC("\xc0\x80", "\\xC0\\x80");
    ESC("\xc1\xbf", "\\xC1\\xBF");
    ESC("\xe0\x80\x80", "\\xE0\\x80\\x80");
    ESC("\xe0\x9f\xbf", "\\xE0\\x9F\\xBF");
    ESC("\xf0\x80\x80\x80", "\\xF0\\x80\\x80\\x80");
    ESC("\xf0\x8f\xbf\xbf", "\\xF0\\x8F\\xBF\\xBF");
    /* Surrogates. */
    ESC("\xed\xa0\x80", "\\xED\\xA0\\x80");
    ESC("\xed\xbf\xbf", "\\xED\\xBF\\xBF");
    /* Truncated sequences, at the end and before other text. */
    ESC("a\xc3", "a\\xC3");
    ESC("\xe2\x82", "\\xE2\\x82");
    ESC("\xf0\x9f\x98", "\\xF0\\x9F\\x98");
    ESC("\xe2\x82x\xc3\xa9", "\\xE2\\x82x\xc3\xa9");
    ESC("\xc3\xc3\xa9", "\\xC3\xc3\xa9"); /* the next byte starts afresh */
    /* Above U+10FFFF, and bytes that never occur in UTF-8. */
    ESC("\xf4\x90\x80\x80", "\\xF4\\x90\\x80\\x80");
    ESC("\xf5\x80\x80\x80", "\\xF5\\x80\\x80\\x80");
    ESC("\xf8\x88\x80\x80\x80", "\\xF8\\x88\\x80\\x80\\x80");
    ESC("\xfe\xff", "\\xFE\\xFF");
    /* Stray continuation bytes. */
    ESC("\x80", "\\x80");
    ESC("x\xbfy", "x\\xBFy");
    /* A NUL inside an explicit length is a valid character. */
    {
        char out[8];
        CHECK_INT(idl_wire_utf8_escape("a\0b", 3, out, sizeof out), 3);
        CHECK(memcmp(out, "a\0b", 4) == 0);
    }
}

/* A short output never cuts a character or an escape. */
static void utf8_escape_bounds(void)
{
    char out[8];
    CHECK_INT(idl_wire_utf8_escape("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 8, out, 6), 4);
    CHECK_STR(out, "\xc3\xa9\xc3\xa9");
    CHECK_INT(idl_wire_utf8_escape("ab\xff", 3, out, 6), 2);
    CHECK_STR(out, "ab");
    CHECK_INT(idl_wire_utf8_escape("ab\xff", 3, out, 7), 3);
    CHECK_STR(out, "ab\\xFF");
    CHECK_INT(idl_wire_utf8_escape("abc", 3, out, 1), 0);
    CHECK_STR(out, "");
}

/* Every 1- and 2-byte string, every 3-byte string led by E0..EF, and 4-byte
 * strings led by F0..F7 over all second bytes: validity agrees with the
 * reference, the escaping is valid UTF-8 and undoes back to the input. */
static void utf8_escape_exhaustive(void)
{
    unsigned char in[4], back[16];
    char out[32];
    static const unsigned char tail[] = {0x00, 0x41, 0x7f, 0x80, 0x8f,
                                         0x90, 0xa0, 0xbf, 0xc0, 0xff};
    size_t bad = 0, checked = 0;
    for (uint32_t v = 0; v < (1u << 24); v++) {
        size_t n;
        if (v < 0x10000) {
            in[0] = (unsigned char)(v >> 8), in[1] = (unsigned char)v;
            n = 2;
        } else {
            in[0] = (unsigned char)(0xe0 + ((v >> 16) & 0x0f)), in[1] = (unsigned char)(v >> 8);
            in[2] = (unsigned char)v;
            n = 3;
            if (v >= 0x100000) continue; /* 16 leads x 65536 done */
        }
        for (size_t len = 1; len <= n; len++) {
            if (len == 1 && n == 3) continue;
            checked++;
            bool want = ref_valid(in, len);
            if (idl_wire_utf8_valid((const char *)in, len) != want) bad++;
            if (memchr(in, '\\', len) || memchr(in, 0, len)) continue; /* out is a C string */
            idl_wire_utf8_escape((const char *)in, len, out, sizeof out);
            size_t m = unescape(out, strlen(out), back);
            if (!idl_wire_utf8_valid(out, strlen(out)) || m != len || memcmp(back, in, len) != 0)
                bad++;
        }
    }
    for (unsigned lead = 0xf0; lead <= 0xf7; lead++)
        for (unsigned b1 = 0; b1 < 256; b1++)
            for (size_t t2 = 0; t2 < sizeof tail; t2++)
                for (size_t t3 = 0; t3 < sizeof tail; t3++) {
                    in[0] = (unsigned char)lead, in[1] = (unsigned char)b1;
                    in[2] = tail[t2], in[3] = tail[t3];
                    checked++;
                    if (idl_wire_utf8_valid((const char *)in, 4) != ref_valid(in, 4)) bad++;
                }
    CHECKM(bad == 0, "%zu of %zu strings disagree with the reference", bad, checked);
}

/* An unknown body field is named escaped in the message and details.field:
 * malformed bytes and control characters as \xHH, good UTF-8 as is. */
static void unknown_field_escaped(void)
{
    static const struct {
        const char *key;
        size_t len;
        const char *shown;
    } cases[] = {
        {BYTES("na\xc3\xafve"), "na\xc3\xafve"},
        {BYTES("a\xc3(b"), "a\\xC3(b"},
        {BYTES("\xed\xa0\x80"), "\\xED\\xA0\\x80"},
        {BYTES("tab\there\x7f"), "tab\\x09here\\x7F"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        builder b;
        b_init(&b);
        msgpack_pack_map(&b.pk, 1);
        msgpack_pack_str(&b.pk, cases[i].len);
        msgpack_pack_str_body(&b.pk, cases[i].key, cases[i].len);
        msgpack_pack_nil(&b.pk);
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        CHECK(msgpack_unpack_next(&up, b.sb.data, b.sb.size, NULL) == MSGPACK_UNPACK_SUCCESS);
        idl_field f[1] = {{"email", IDL_FT_STR, NULL}};
        char msg[IDL_ERR_MAX], field[64], want[IDL_ERR_MAX];
        CHECK_INT(idl_wire_fields(&up.data, f, 1, msg, field), IDL_INVALID_ARGUMENT);
        snprintf(want, sizeof want, "unknown field '%s'", cases[i].shown);
        CHECK_STR(msg, want);
        CHECK_STR(field, cases[i].shown);
        msgpack_unpacked_destroy(&up);
        msgpack_sbuffer_destroy(&b.sb);
    }
    /* A long hostile name is cut at 60 characters, never inside an escape,
     * and marked as cut. */
    char key[100];
    memset(key, 0xff, sizeof key);
    builder b;
    b_init(&b);
    msgpack_pack_map(&b.pk, 1);
    msgpack_pack_str(&b.pk, sizeof key);
    msgpack_pack_str_body(&b.pk, key, sizeof key);
    msgpack_pack_nil(&b.pk);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    CHECK(msgpack_unpack_next(&up, b.sb.data, b.sb.size, NULL) == MSGPACK_UNPACK_SUCCESS);
    idl_field f[1] = {{"email", IDL_FT_STR, NULL}};
    char msg[IDL_ERR_MAX], field[64];
    CHECK_INT(idl_wire_fields(&up.data, f, 1, msg, field), IDL_INVALID_ARGUMENT);
    CHECK_INT(strlen(field), 15 * 4 + 2);
    CHECK(strncmp(field, "\\xFF\\xFF", 8) == 0 && strcmp(field + 60, "..") == 0);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&b.sb);
}

int main(void)
{
    RUN(round_trip_from_client_encoder);
    RUN(id_in_every_integer_width);
    RUN(meta_timeout_body_fields);
    RUN(not_a_map);
    RUN(empty_and_truncated_everywhere);
    RUN(deep_nesting);
    RUN(huge_declared_lengths);
    RUN(c1_trailing_and_size);
    RUN(too_many_objects);
    RUN(every_type_passes_the_check);
    RUN(body_fields);
    RUN(string_and_number_helpers);
    RUN(buf_growth_and_fixed_overflow);
    RUN(utf8_escape_cases);
    RUN(utf8_escape_bounds);
    RUN(utf8_escape_exhaustive);
    RUN(unknown_field_escaped);
    return test_summary();
}
