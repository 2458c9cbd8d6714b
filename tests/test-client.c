/* The client library's pure half: idl_request_encode's exact layout (id as
 * 0xcf + 8 bytes, method, meta.authorization, optional timeout_ms, the body
 * bytes as given) and idl_reply_decode of hand-built replies, of replies
 * without a code, of truncated and garbage bytes. */
#include "client.h"
#include "status.h"
#include "testmp.h"
#include "testutil.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define BYTES(lit) lit, sizeof(lit) - 1

/* ---- encoding ---- */

static void encode_layout(void)
{
    static const char body[] = "\x82\xa5"
                               "email\xb0"
                               "jane@example.com\xa5limit\x05";
    void *out = NULL;
    size_t len = 0;
    CHECK_INT(idl_request_encode(0x0102030405060708ull, "idlookup.v1.Lookup/Search", "KEY", 250,
                                 BYTES(body), &out, &len),
              IDL_OK);
    const unsigned char *p = out;
    /* A map of five, the id first, always 0xcf + 8 big-endian bytes. */
    CHECK(len > 13);
    CHECK(memcmp(p, "\x85\xa2id\xcf\x01\x02\x03\x04\x05\x06\x07\x08", 13) == 0);
    /* The body's bytes close the message, exactly as given. */
    CHECK(len >= sizeof body - 1 &&
          memcmp(p + len - (sizeof body - 1), body, sizeof body - 1) == 0);
    CHECK(memcmp(p + len - (sizeof body - 1) - 5,
                 "\xa4"
                 "body",
                 5) == 0);
    msgpack_zone z;
    msgpack_zone_init(&z, 1024);
    msgpack_object o;
    size_t off = 0;
    CHECK(msgpack_unpack(out, len, &off, &z, &o) == MSGPACK_UNPACK_SUCCESS);
    CHECK_INT(off, len);
    CHECK(o.type == MSGPACK_OBJECT_MAP && o.via.map.size == 5);
    const msgpack_object *v = get(&o, "id");
    CHECK(v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 == 0x0102030405060708ull);
    CHECK(str_is(get(&o, "method"), "idlookup.v1.Lookup/Search"));
    const msgpack_object *meta = get(&o, "meta");
    CHECK(meta && meta->type == MSGPACK_OBJECT_MAP && meta->via.map.size == 1);
    CHECK(str_is(get(meta, "authorization"), "Bearer KEY"));
    v = get(&o, "timeout_ms");
    CHECK(v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 == 250);
    v = get(&o, "body");
    CHECK(v && v->type == MSGPACK_OBJECT_MAP && v->via.map.size == 2);
    CHECK(str_is(get(v, "email"), "jane@example.com"));
    msgpack_zone_destroy(&z);
    free(out);

    /* No timeout (< 0): four keys, none named timeout_ms; no key: meta {};
     * no body: {}. */
    CHECK_INT(idl_request_encode(0, "grpc.health.v1.Health/Check", NULL, -1, NULL, 0, &out, &len),
              IDL_OK);
    p = out;
    CHECK(memcmp(p, "\x84\xa2id\xcf\0\0\0\0\0\0\0\0", 13) == 0);
    CHECK(memcmp(p + len - 6,
                 "\xa4"
                 "body\x80",
                 6) == 0);
    msgpack_zone_init(&z, 1024);
    off = 0;
    CHECK(msgpack_unpack(out, len, &off, &z, &o) == MSGPACK_UNPACK_SUCCESS);
    CHECK(o.type == MSGPACK_OBJECT_MAP && o.via.map.size == 4);
    CHECK(get(&o, "timeout_ms") == NULL);
    meta = get(&o, "meta");
    CHECK(meta && meta->type == MSGPACK_OBJECT_MAP && meta->via.map.size == 0);
    v = get(&o, "body");
    CHECK(v && v->type == MSGPACK_OBJECT_MAP && v->via.map.size == 0);
    msgpack_zone_destroy(&z);
    free(out);

    /* timeout 0 is sent (an already expired deadline); a body pointer with
     * length 0 is an empty body; the largest id. */
    CHECK_INT(idl_request_encode(UINT64_MAX, "m", "k", 0, body, 0, &out, &len), IDL_OK);
    p = out;
    CHECK(memcmp(p, "\x85\xa2id\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 13) == 0);
    msgpack_zone_init(&z, 1024);
    off = 0;
    CHECK(msgpack_unpack(out, len, &off, &z, &o) == MSGPACK_UNPACK_SUCCESS);
    v = get(&o, "timeout_ms");
    CHECK(v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 == 0);
    v = get(&o, "body");
    CHECK(v && v->type == MSGPACK_OBJECT_MAP && v->via.map.size == 0);
    CHECK(str_is(get(get(&o, "meta"), "authorization"), "Bearer k"));
    msgpack_zone_destroy(&z);
    free(out);

    /* A long key and method use the wider str headers. */
    char key[300], method[100];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = 0;
    memset(method, 'm', sizeof method - 1);
    method[sizeof method - 1] = 0;
    CHECK_INT(idl_request_encode(7, method, key, 1 << 30, NULL, 0, &out, &len), IDL_OK);
    msgpack_zone_init(&z, 1024);
    off = 0;
    CHECK(msgpack_unpack(out, len, &off, &z, &o) == MSGPACK_UNPACK_SUCCESS);
    CHECK(str_is(get(&o, "method"), method));
    v = get(get(&o, "meta"), "authorization");
    CHECK(v && v->type == MSGPACK_OBJECT_STR && v->via.str.size == 7 + strlen(key) &&
          memcmp(v->via.str.ptr, "Bearer ", 7) == 0 &&
          memcmp(v->via.str.ptr + 7, key, strlen(key)) == 0);
    v = get(&o, "timeout_ms");
    CHECK(v && v->via.u64 == (uint64_t)1 << 30);
    msgpack_zone_destroy(&z);
    free(out);

    /* Bytes that are not a map are embedded as given too (the server judges). */
    CHECK_INT(idl_request_encode(8, "m", NULL, -1, BYTES("\x93\x01\x02\x03"), &out, &len), IDL_OK);
    p = out;
    CHECK(memcmp(p + len - 4, "\x93\x01\x02\x03", 4) == 0);
    free(out);
}

/* ---- decoding ---- */

static void ok_reply(builder *b)
{
    b_init(b);
    msgpack_pack_map(&b->pk, 4);
    b_str(b, "id");
    msgpack_pack_uint64(&b->pk, 7);
    b_str(b, "code");
    msgpack_pack_uint8(&b->pk, 0);
    b_str(b, "body");
    msgpack_pack_map(&b->pk, 2);
    b_str(b, "persons");
    msgpack_pack_array(&b->pk, 0);
    b_str(b, "total");
    msgpack_pack_uint8(&b->pk, 0);
    b_str(b, "meta");
    msgpack_pack_map(&b->pk, 3);
    b_str(b, "ratelimit-limit");
    b_str(b, "10");
    b_str(b, "request-id");
    b_str(b, "0123456789abcdef-00000001");
    b_str(b, "ratelimit-remaining");
    b_str(b, "9");
}

static void decode_ok_reply(void)
{
    builder b;
    ok_reply(&b);
    idl_reply *r = NULL;
    CHECK_INT(idl_reply_decode(b.sb.data, b.sb.size, &r), IDL_OK);
    /* The bytes were copied: scribbling over ours changes nothing. */
    memset(b.sb.data, 0xc1, b.sb.size);
    msgpack_sbuffer_destroy(&b.sb);
    CHECK(r != NULL);
    if (!r) return;
    CHECK(r->id == 7);
    CHECK_INT(r->code, 0);
    CHECK(r->message == NULL);
    CHECK_STR(r->request_id, "0123456789abcdef-00000001");
    CHECK_INT(r->body.type, MSGPACK_OBJECT_MAP);
    CHECK_INT(r->body.via.map.size, 2);
    const msgpack_object *total = get(&r->body, "total");
    CHECK(total && total->type == MSGPACK_OBJECT_POSITIVE_INTEGER && total->via.u64 == 0);
    const msgpack_object *persons = get(&r->body, "persons");
    CHECK(persons && persons->type == MSGPACK_OBJECT_ARRAY && persons->via.array.size == 0);
    CHECK_INT(r->details.type, MSGPACK_OBJECT_NIL);
    CHECK_INT(r->meta.type, MSGPACK_OBJECT_MAP);
    CHECK(str_is(get(&r->meta, "ratelimit-remaining"), "9"));
    CHECK_INT(r->root.type, MSGPACK_OBJECT_MAP);
    CHECK_INT(r->root.via.map.size, 4);
    idl_reply_free(r);
    idl_reply_free(NULL);
}

static void decode_error_reply(void)
{
    builder b;
    b_init(&b);
    msgpack_pack_map(&b.pk, 6);
    b_str(&b, "id");
    msgpack_pack_uint64(&b.pk, UINT64_MAX);
    b_str(&b, "code");
    msgpack_pack_uint8(&b.pk, 8);
    b_str(&b, "message");
    b_str(&b, "rate limit exceeded: retry after 250 ms");
    b_str(&b, "details");
    msgpack_pack_map(&b.pk, 2);
    b_str(&b, "retry_after_ms");
    msgpack_pack_uint16(&b.pk, 250);
    b_str(&b, "field");
    b_str(&b, "email");
    b_str(&b, "meta");
    msgpack_pack_map(&b.pk, 1);
    b_str(&b, "request-id");
    b_str(&b, "ffffffffffffffff-00000002");
    b_str(&b, "x-unknown");
    msgpack_pack_array(&b.pk, 0);
    idl_reply *r = NULL;
    CHECK_INT(idl_reply_decode(b.sb.data, b.sb.size, &r), IDL_OK);
    msgpack_sbuffer_destroy(&b.sb);
    if (!r) return;
    CHECK(r->id == UINT64_MAX);
    CHECK_INT(r->code, IDL_RESOURCE_EXHAUSTED);
    CHECK_STR(r->message, "rate limit exceeded: retry after 250 ms");
    CHECK_STR(r->request_id, "ffffffffffffffff-00000002");
    CHECK_INT(r->body.type, MSGPACK_OBJECT_NIL);
    CHECK_INT(r->details.type, MSGPACK_OBJECT_MAP);
    const msgpack_object *ra = get(&r->details, "retry_after_ms");
    CHECK(ra && ra->type == MSGPACK_OBJECT_POSITIVE_INTEGER && ra->via.u64 == 250);
    CHECK(str_is(get(&r->details, "field"), "email"));
    idl_reply_free(r);

    /* The reply to an undecodable request: id 0, code 3, no meta. */
    b_init(&b);
    msgpack_pack_map(&b.pk, 3);
    b_str(&b, "id");
    msgpack_pack_uint8(&b.pk, 0);
    b_str(&b, "code");
    msgpack_pack_uint8(&b.pk, 3);
    b_str(&b, "message");
    b_str(&b, "the message must be a msgpack map");
    r = NULL;
    CHECK_INT(idl_reply_decode(b.sb.data, b.sb.size, &r), IDL_OK);
    msgpack_sbuffer_destroy(&b.sb);
    if (r) {
        CHECK(r->id == 0);
        CHECK_INT(r->code, 3);
        CHECK(r->request_id == NULL);
        CHECK_INT(r->meta.type, MSGPACK_OBJECT_NIL);
        idl_reply_free(r);
    }

    /* Empty strings are strings (msgpack-c may decode them with a NULL
     * pointer). */
    b_init(&b);
    msgpack_pack_map(&b.pk, 3);
    b_str(&b, "code");
    msgpack_pack_uint8(&b.pk, 2);
    b_str(&b, "message");
    b_str(&b, "");
    b_str(&b, "meta");
    msgpack_pack_map(&b.pk, 1);
    b_str(&b, "request-id");
    b_str(&b, "");
    r = NULL;
    CHECK_INT(idl_reply_decode(b.sb.data, b.sb.size, &r), IDL_OK);
    msgpack_sbuffer_destroy(&b.sb);
    if (r) {
        CHECK_STR(r->message, "");
        CHECK_STR(r->request_id, "");
        idl_reply_free(r);
    }

    /* Fields of the wrong type are left out rather than misread. */
    b_init(&b);
    msgpack_pack_map(&b.pk, 4);
    b_str(&b, "code");
    msgpack_pack_uint8(&b.pk, 5);
    b_str(&b, "message");
    msgpack_pack_int(&b.pk, 12);
    b_str(&b, "meta");
    msgpack_pack_map(&b.pk, 1);
    b_str(&b, "request-id");
    msgpack_pack_int(&b.pk, 12);
    b_str(&b, "id");
    b_str(&b, "7");
    r = NULL;
    CHECK_INT(idl_reply_decode(b.sb.data, b.sb.size, &r), IDL_OK);
    msgpack_sbuffer_destroy(&b.sb);
    if (r) {
        CHECK_INT(r->code, 5);
        CHECK(r->message == NULL);
        CHECK(r->request_id == NULL);
        CHECK(r->id == 0);
        idl_reply_free(r);
    }
}

static void reject(const void *buf, size_t len, const char *what)
{
    idl_reply *r = (idl_reply *)&r;
    int rc = idl_reply_decode(buf, len, &r);
    CHECK(rc != IDL_OK);
    CHECK(r == (idl_reply *)&r); /* not written on failure */
    if (rc == IDL_OK) {
        fprintf(stderr, "  accepted: %s\n", what);
        idl_reply_free(r);
    }
}

static void decode_rejects(void)
{
    /* No code, or a code that is not an unsigned integer. */
    builder b;
    b_init(&b);
    msgpack_pack_map(&b.pk, 2);
    b_str(&b, "id");
    msgpack_pack_uint8(&b.pk, 1);
    b_str(&b, "body");
    msgpack_pack_map(&b.pk, 0);
    reject(b.sb.data, b.sb.size, "no code");
    msgpack_sbuffer_destroy(&b.sb);
    b_init(&b);
    msgpack_pack_map(&b.pk, 2);
    b_str(&b, "id");
    msgpack_pack_uint8(&b.pk, 1);
    b_str(&b, "code");
    b_str(&b, "OK");
    reject(b.sb.data, b.sb.size, "string code");
    msgpack_sbuffer_destroy(&b.sb);
    b_init(&b);
    msgpack_pack_map(&b.pk, 1);
    b_str(&b, "code");
    msgpack_pack_int(&b.pk, -3);
    reject(b.sb.data, b.sb.size, "negative code");
    msgpack_sbuffer_destroy(&b.sb);

    /* Garbage. */
    reject("", 0, "empty");
    reject("\xc1", 1, "0xc1");
    reject(BYTES("\x93\x01\x02\x03"), "array");
    reject(BYTES("\xa4"
                 "code"),
           "str");
    reject(BYTES("\x05"), "int");
    reject(BYTES("\xc0"), "nil");
    reject(BYTES("\x80"), "empty map");
    reject(BYTES("\x81\xa4"
                 "code\x00\x00"),
           "trailing byte");
    reject(BYTES("\x81\xa4"
                 "code\x00\x81\xa4"
                 "code\x00"),
           "two replies");

    /* Every strict prefix of a good reply. */
    ok_reply(&b);
    int before = test_failures_;
    for (size_t cut = 0; cut < b.sb.size; cut++) {
        char *p = malloc(cut ? cut : 1);
        memcpy(p, b.sb.data, cut);
        reject(p, cut, "prefix");
        free(p);
        if (test_failures_ != before) {
            fprintf(stderr, "  prefix of %zu bytes accepted\n", cut);
            break;
        }
    }
    /* Byte flips: accepted or refused, never a crash. */
    for (size_t i = 0; i < b.sb.size; i++) {
        for (int v = 0; v < 256; v += 5) {
            char *p = malloc(b.sb.size);
            memcpy(p, b.sb.data, b.sb.size);
            p[i] = (char)v;
            idl_reply *r = NULL;
            if (idl_reply_decode(p, b.sb.size, &r) == IDL_OK) {
                CHECK(r != NULL);
                idl_reply_free(r);
            }
            free(p);
        }
    }
    msgpack_sbuffer_destroy(&b.sb);
}

/* A reply is a peer's bytes: a few bytes declaring 4 G entries must be
 * refused without acting on the declared size. */
static void decode_huge_declared_lengths(void)
{
    static const struct {
        const char *bytes;
        size_t n;
    } cases[] = {
        {BYTES("\xdf\xff\xff\xff\xff\xa4"
               "code\x00")},
        {BYTES("\xdd\xff\xff\xff\xff\x01")},
        {BYTES("\x82\xa4"
               "code\x00\xa4"
               "body\xdf\xff\xff\xff\xff")},
        {BYTES("\x82\xa4"
               "code\x00\xa7message\xdb\xff\xff\xff\xff"
               "abc")},
    };
    /* In a child, so that an abort (a sanitizer's allocation limit) is a
     * failed check here rather than a lost test run. */
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        cap_address_space();
        int bad = 0;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            idl_reply *r = NULL;
            if (idl_reply_decode(cases[i].bytes, cases[i].n, &r) == IDL_OK) {
                idl_reply_free(r);
                bad++;
            }
        }
        _exit(bad);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st));
    CHECK_INT(WIFEXITED(st) ? WEXITSTATUS(st) : -1, 0);
}

static void client_open_close(void)
{
    /* Opening needs no server (the dial is non-blocking); a bad URL is an
     * argument error. */
    idl_client *c = NULL;
    CHECK_INT(idl_client_open(&c, "tcp://127.0.0.1:1", "k"), IDL_OK);
    idl_client_close(c);
    c = (idl_client *)&c;
    CHECK_INT(idl_client_open(&c, "nonsense://x", NULL), IDL_INVALID_ARGUMENT);
    CHECK(c == (idl_client *)&c);
    idl_client_close(NULL);
    /* A call with nobody listening times out locally. */
    CHECK_INT(idl_client_open(&c, "tcp://127.0.0.1:1", NULL), IDL_OK);
    idl_reply *r = NULL;
    int rc = idl_client_call(c, "grpc.health.v1.Health/Check", NULL, 0, -1, 100, &r);
    CHECK(rc == IDL_DEADLINE_EXCEEDED || rc == IDL_UNAVAILABLE);
    CHECK(r == NULL);
    idl_client_close(c);
    /* A comma-separated list dials each URL; one bad URL fails it all. */
    CHECK_INT(idl_client_open(&c, "tcp://127.0.0.1:1,tcp://127.0.0.1:2", NULL), IDL_OK);
    idl_client_close(c);
    CHECK_INT(idl_client_open(&c, "tcp://127.0.0.1:1,,tcp://127.0.0.1:2,", NULL), IDL_OK);
    idl_client_close(c);
    c = (idl_client *)&c;
    CHECK_INT(idl_client_open(&c, "tcp://127.0.0.1:1,nonsense://x", NULL), IDL_INVALID_ARGUMENT);
    CHECK_INT(idl_client_open(&c, ",", NULL), IDL_INVALID_ARGUMENT);
    CHECK_INT(idl_client_open(&c, "", NULL), IDL_INVALID_ARGUMENT);
    CHECK(c == (idl_client *)&c);
}

int main(void)
{
    RUN(encode_layout);
    RUN(decode_ok_reply);
    RUN(decode_error_reply);
    RUN(decode_rejects);
    RUN(decode_huge_declared_lengths);
    RUN(client_open_close);
    return test_summary();
}
