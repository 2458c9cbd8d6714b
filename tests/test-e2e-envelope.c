/* End to end over the real daemon: the envelope, every status code the
 * pipeline gives, keys (scopes, rates, revocation on SIGHUP), request ids,
 * draining on SIGTERM, and a flood of malformed messages from several threads
 * after which the daemon still answers Health. */
#include "e2e.h"
#include "shape.h"
#include "status.h"
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HEALTH "grpc.health.v1.Health/Check"
#define SEARCH "idlookup.v1.Lookup/Search"
#define STATS "idlookup.v1.Admin/Stats"
#define OPTOUT "idlookup.v1.Privacy/OptOut"

static e2e_env env;
static shape_schema *schema;

static int code_of(idl_reply *r)
{
    return r ? r->code : -1;
}

static void check_reply_shape(idl_reply *r)
{
    char err[512] = "";
    CHECK(r && shape_check_envelope(schema, "reply", &r->root, err) == 0);
    if (err[0]) fprintf(stderr, "reply shape: %s\n", err);
}

static void health_and_describe(void)
{
    idl_reply *r = e2e_call(&env, NULL, HEALTH, "{}");
    CHECK_INT(code_of(r), 0);
    CHECK(e2e_str_is(e2e_get(&r->body, "status"), "SERVING"));
    check_reply_shape(r);
    idl_reply_free(r);
    r = e2e_call(&env, NULL, HEALTH, "{\"service\": \"idlookup.v1.Lookup\"}");
    CHECK_INT(code_of(r), 0);
    idl_reply_free(r);
    r = e2e_call(&env, NULL, HEALTH, "{\"service\": \"nope.v1.Nope\"}");
    CHECK_INT(code_of(r), IDL_NOT_FOUND);
    CHECK(r && r->message && strlen(r->message) > 0);
    idl_reply_free(r);
    r = e2e_call(&env, NULL, HEALTH, "{\"servce\": \"\"}");
    CHECK_INT(code_of(r), IDL_INVALID_ARGUMENT);
    CHECK(r && r->message && strstr(r->message, "servce"));
    CHECK(r && e2e_str_is(e2e_path(&r->details, "field"), "servce"));
    idl_reply_free(r);

    r = e2e_call(&env, NULL, "idlookup.v1.Meta/Describe", "{}");
    CHECK_INT(code_of(r), 0);
    char err[512] = "";
    CHECK(r && shape_check_response(schema, "idlookup.v1.Meta/Describe", &r->body, err) == 0);
    if (err[0]) fprintf(stderr, "describe: %s\n", err);
    const msgpack_object *m = e2e_get(&r->body, "methods");
    CHECK(m && m->type == MSGPACK_OBJECT_ARRAY && m->via.array.size == 10);
    /* Every method the schema lists is served with the scope it documents. */
    for (size_t i = 0; m && i < shape_method_count(schema); i++) {
        const char *name, *scope;
        shape_method_at(schema, i, &name, &scope);
        bool found = false;
        for (uint32_t j = 0; j < m->via.array.size; j++) {
            const msgpack_object *e = &m->via.array.ptr[j];
            if (!e2e_str_is(e2e_get(e, "name"), name)) continue;
            found = true;
            const msgpack_object *sc = e2e_get(e, "scope");
            CHECK(scope ? e2e_str_is(sc, scope) : (sc && sc->type == MSGPACK_OBJECT_NIL));
        }
        CHECK(found);
    }
    idl_reply_free(r);
}

static void undecodable_inputs(void)
{
    struct {
        const char *bytes;
        size_t len;
    } cases[] = {
        {"\xc1", 1},             /* never-used byte */
        {"\x93\x01\x02\x03", 4}, /* array, not a map */
        {"\xa3"
         "abc",
         4},                         /* str */
        {"\x81\xa2id", 4},           /* truncated map */
        {"\xdf\xff\xff\xff\xff", 5}, /* map32 declaring 4G entries */
        {"\xdb\xff\xff\xff\xff"
         "ab",
         7},                                  /* str32 declaring 4 GiB */
        {"\x82\xa2id\x01\xa6method\x01", 13}, /* method not a str; id readable */
        {"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        void *rep = NULL;
        size_t rl = 0;
        CHECK(idl_client_call_raw(env.c, cases[i].bytes, cases[i].len, 5000, &rep, &rl) == 0);
        idl_reply *r = NULL;
        CHECK(rep && idl_reply_decode(rep, rl, &r) == 0);
        free(rep);
        CHECK_INT(code_of(r), IDL_INVALID_ARGUMENT);
        CHECK(r && r->message && *r->message);
        CHECK(r && r->request_id && *r->request_id);
        if (i != 6)
            CHECK(r && r->id == 0);
        else
            CHECK(r && r->id == 1);
        idl_reply_free(r);
    }
    /* Deep nesting in the body. */
    char deep[200];
    size_t n = 0;
    const char *head = "\x83\xa2id\x05\xa6method\xbbgrpc.health.v1.Health/Check\xa4"
                       "body\x81\xa1x";
    memcpy(deep, head, strlen(head));
    n = strlen(head);
    for (int i = 0; i < 40; i++)
        deep[n++] = (char)0x91;
    deep[n++] = 0x01;
    void *rep = NULL;
    size_t rl = 0;
    idl_reply *r = NULL;
    CHECK(idl_client_call_raw(env.c, deep, n, 5000, &rep, &rl) == 0);
    CHECK(rep && idl_reply_decode(rep, rl, &r) == 0);
    CHECK_INT(code_of(r), IDL_INVALID_ARGUMENT);
    CHECK(r && r->message && strstr(r->message, "deeper"));
    free(rep);
    idl_reply_free(r);
}

static void keys_scopes_and_codes(void)
{
    idl_reply *r = e2e_call(&env, NULL, SEARCH, "{\"email\": \"a@b.com\"}");
    CHECK_INT(code_of(r), IDL_UNAUTHENTICATED);
    check_reply_shape(r);
    idl_reply_free(r);
    r = e2e_call(&env, "idl_k000000000000_nope", SEARCH, "{\"email\": \"a@b.com\"}");
    CHECK_INT(code_of(r), IDL_UNAUTHENTICATED);
    idl_reply_free(r);
    r = e2e_call(&env, env.lookup_key, STATS, "{}");
    CHECK_INT(code_of(r), IDL_PERMISSION_DENIED);
    CHECK(r && r->message && strstr(r->message, "admin"));
    idl_reply_free(r);
    r = e2e_call(&env, env.lookup_key, OPTOUT, "{\"person_id\": \"p_0000000000000000\"}");
    CHECK_INT(code_of(r), IDL_PERMISSION_DENIED);
    idl_reply_free(r);
    r = e2e_call(&env, env.admin_key, STATS, "{}");
    CHECK_INT(code_of(r), 0);
    idl_reply_free(r);
    r = e2e_call(&env, env.lookup_key, "idlookup.v1.Lookup/Nope", "{}");
    CHECK_INT(code_of(r), IDL_UNIMPLEMENTED);
    idl_reply_free(r);
    /* Deadline: 0 is already expired; a generous one is fine. */
    r = e2e_call_t(&env, env.lookup_key, SEARCH, "{\"email\": \"a@b.com\"}", 0);
    CHECK_INT(code_of(r), IDL_DEADLINE_EXCEEDED);
    idl_reply_free(r);
    r = e2e_call_t(&env, env.lookup_key, SEARCH, "{\"email\": \"a@b.com\"}", 5000);
    CHECK_INT(code_of(r), 0);
    idl_reply_free(r);
    /* Body errors come last and name the field. */
    r = e2e_call(&env, env.lookup_key, SEARCH, "{\"email\": 5}");
    CHECK_INT(code_of(r), IDL_INVALID_ARGUMENT);
    CHECK(r && r->message && strstr(r->message, "email"));
    idl_reply_free(r);
}

/* A body that is not a map is a body error: checked last, after method and
 * key (API.md §2's order). */
static int raw_code(const char *method, const char *key, const char *body, size_t blen)
{
    void *req = NULL, *rep = NULL;
    size_t rl = 0, ql = 0;
    idl_request_encode(9, method, key, -1, body, blen, &req, &ql);
    int code = -1;
    if (idl_client_call_raw(env.c, req, ql, 5000, &rep, &rl) == 0) {
        idl_reply *r = NULL;
        if (idl_reply_decode(rep, rl, &r) == 0) {
            code = r->code;
            if (code == IDL_INVALID_ARGUMENT) CHECK(r->message && strstr(r->message, "body"));
        }
        idl_reply_free(r);
        free(rep);
    }
    free(req);
    return code;
}

static void body_not_a_map_is_checked_last(void)
{
    CHECK_INT(raw_code("idlookup.v1.Lookup/Nope", env.lookup_key, "\x91\x01", 2),
              IDL_UNIMPLEMENTED);
    CHECK_INT(raw_code(SEARCH, NULL, "\x91\x01", 2), IDL_UNAUTHENTICATED);
    CHECK_INT(raw_code(STATS, env.lookup_key, "\xa1x", 2), IDL_PERMISSION_DENIED);
    CHECK_INT(raw_code(SEARCH, env.lookup_key, "\x05", 1), IDL_INVALID_ARGUMENT);
    CHECK_INT(raw_code(HEALTH, NULL, "\xa1x", 2), IDL_INVALID_ARGUMENT);
}

/* A huge timeout_ms is a far deadline, not an overflow into the past. */
static void huge_timeout_is_served(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    idl_wire_pack_cstr(&pk, "id");
    msgpack_pack_uint64(&pk, 5);
    idl_wire_pack_cstr(&pk, "method");
    idl_wire_pack_cstr(&pk, HEALTH);
    idl_wire_pack_cstr(&pk, "timeout_ms");
    msgpack_pack_uint64(&pk, UINT64_MAX);
    void *rep = NULL;
    size_t rl = 0;
    idl_reply *r = NULL;
    CHECK(idl_client_call_raw(env.c, sb.data, sb.size, 5000, &rep, &rl) == 0);
    CHECK(rep && idl_reply_decode(rep, rl, &r) == 0);
    CHECK_INT(code_of(r), 0);
    idl_reply_free(r);
    free(rep);
    msgpack_sbuffer_destroy(&sb);
}

static void rate_limit(void)
{
    /* The slow key has rate 2: burst 2, then RESOURCE_EXHAUSTED with a
     * retry hint, and the meta counts down. */
    idl_reply *r1 = e2e_call(&env, env.slow_key, SEARCH, "{\"email\": \"a@b.com\"}");
    idl_reply *r2 = e2e_call(&env, env.slow_key, SEARCH, "{\"email\": \"a@b.com\"}");
    idl_reply *r3 = e2e_call(&env, env.slow_key, SEARCH, "{\"email\": \"a@b.com\"}");
    CHECK_INT(code_of(r1), 0);
    CHECK_INT(code_of(r2), 0);
    CHECK_INT(code_of(r3), IDL_RESOURCE_EXHAUSTED);
    CHECK(r1 && e2e_str_is(e2e_get(&r1->meta, "ratelimit-limit"), "2"));
    CHECK(r1 && e2e_str_is(e2e_get(&r1->meta, "ratelimit-remaining"), "1"));
    CHECK(r2 && e2e_str_is(e2e_get(&r2->meta, "ratelimit-remaining"), "0"));
    long long retry = r3 ? e2e_uint(e2e_get(&r3->details, "retry_after_ms")) : -1;
    CHECK(retry > 0 && retry <= 500);
    idl_reply_free(r1);
    idl_reply_free(r2);
    idl_reply_free(r3);
    usleep(600 * 1000);
    idl_reply *r4 = e2e_call(&env, env.slow_key, SEARCH, "{\"email\": \"a@b.com\"}");
    CHECK_INT(code_of(r4), 0);
    idl_reply_free(r4);
}

static void request_ids_unique(void)
{
    enum { N = 300 };
    static char ids[N][40];
    for (int i = 0; i < N; i++) {
        idl_reply *r = e2e_call(&env, i % 2 ? env.lookup_key : NULL, i % 3 ? HEALTH : SEARCH,
                                i % 3 ? "{}" : "{\"email\": \"x@y.com\"}");
        CHECK(r && r->request_id);
        snprintf(ids[i], sizeof ids[i], "%s", r && r->request_id ? r->request_id : "");
        idl_reply_free(r);
    }
    int dups = 0;
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            dups += strcmp(ids[i], ids[j]) == 0;
    CHECK_INT(dups, 0);
}

static void keys_reload_on_sighup(void)
{
    const char *add[] = {"keys",    "add",      "--file", env.keys, "--customer",
                         "late-co", "--scopes", "lookup", NULL};
    char *out = NULL;
    CHECK_INT(e2e_cli(add, NULL, &out, NULL), 0);
    char key[128] = "";
    if (out) {
        sscanf(out, "%127s", key);
        free(out);
    }
    idl_reply *r = e2e_call(&env, key, SEARCH, "{\"email\": \"a@b.com\"}");
    CHECK_INT(code_of(r), IDL_UNAUTHENTICATED); /* not loaded yet */
    idl_reply_free(r);
    kill(env.pid, SIGHUP);
    usleep(300 * 1000);
    r = e2e_call(&env, key, SEARCH, "{\"email\": \"a@b.com\"}");
    CHECK_INT(code_of(r), 0);
    idl_reply_free(r);
    /* Revoke: honoured after the next SIGHUP. */
    char id[32] = "";
    sscanf(key, "idl_%13[^_]", id);
    const char *rev[] = {"keys", "revoke", "--file", env.keys, id, NULL};
    CHECK_INT(e2e_cli(rev, NULL, NULL, NULL), 0);
    kill(env.pid, SIGHUP);
    usleep(300 * 1000);
    r = e2e_call(&env, key, SEARCH, "{\"email\": \"a@b.com\"}");
    CHECK_INT(code_of(r), IDL_UNAUTHENTICATED);
    idl_reply_free(r);
    const char *list[] = {"keys", "list", "--file", env.keys, NULL};
    CHECK_INT(e2e_cli(list, NULL, &out, NULL), 0);
    CHECK(out && strstr(out, "late-co") && strstr(out, "revoked"));
    free(out);
}

/* ---- flood of malformed messages ---- */

static uint64_t rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static _Atomic int flood_replies, flood_bad;

static void *flood(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg;
    idl_client *c;
    if (idl_client_open(&c, env.url, env.lookup_key)) return NULL;
    void *good = NULL;
    size_t good_len = 0;
    idl_request_encode(1, SEARCH, env.lookup_key, -1,
                       "\x81\xa5"
                       "email\xa5"
                       "a@b.c",
                       13, &good, &good_len);
    unsigned char buf[512];
    for (int i = 0; i < 1000; i++) {
        size_t len;
        uint64_t kind = rng(&seed) % 4;
        if (kind == 0) { /* random bytes */
            len = 1 + rng(&seed) % 200;
            for (size_t j = 0; j < len; j++)
                buf[j] = (unsigned char)rng(&seed);
        } else if (kind == 1) { /* truncated valid request */
            len = rng(&seed) % good_len;
            memcpy(buf, good, len);
        } else if (kind == 2) { /* one flipped byte */
            len = good_len;
            memcpy(buf, good, len);
            buf[rng(&seed) % len] ^= (unsigned char)(1 + rng(&seed) % 255);
        } else { /* huge declared lengths and nesting */
            static const unsigned char hdr[] = {0xdd, 0xde, 0xdf, 0xdb, 0xc6, 0x9f, 0x8f};
            len = 1 + rng(&seed) % 100;
            for (size_t j = 0; j < len; j++)
                buf[j] = j % 5 == 4 ? 0xff : hdr[rng(&seed) % sizeof hdr];
        }
        void *rep = NULL;
        size_t rl = 0;
        if (idl_client_call_raw(c, buf, len, 5000, &rep, &rl) == 0) {
            idl_reply *r = NULL;
            if (idl_reply_decode(rep, rl, &r) == 0)
                flood_replies++;
            else
                flood_bad++;
            idl_reply_free(r);
            free(rep);
        } else {
            flood_bad++;
        }
    }
    free(good);
    idl_client_close(c);
    return NULL;
}

static void malformed_flood_then_health(void)
{
    pthread_t th[4];
    for (uintptr_t i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, flood, (void *)(i + 1));
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECK_INT(flood_replies, 4000);
    CHECK_INT(flood_bad, 0);
    idl_reply *r = e2e_call(&env, NULL, HEALTH, "{}");
    CHECK_INT(code_of(r), 0);
    CHECK(r && e2e_str_is(e2e_get(&r->body, "status"), "SERVING"));
    idl_reply_free(r);
}

static void drain_on_sigterm(void)
{
    /* Restart with a long drain window to observe it. */
    CHECK_INT(e2e_stop(&env), 0);
    const char *extra[] = {"--drain-ms", "1500", NULL};
    e2e_start(&env, extra);
    kill(env.pid, SIGTERM);
    usleep(300 * 1000);
    idl_reply *r = e2e_call(&env, NULL, HEALTH, "{}");
    CHECK_INT(code_of(r), 0);
    CHECK(r && e2e_str_is(e2e_get(&r->body, "status"), "NOT_SERVING"));
    idl_reply_free(r);
    r = e2e_call(&env, env.lookup_key, SEARCH, "{\"email\": \"a@b.com\"}");
    CHECK_INT(code_of(r), IDL_UNAVAILABLE);
    idl_reply_free(r);
    CHECK_INT(e2e_stop(&env), 0); /* it exits 0 by itself after draining */
}

int main(void)
{
    char err[256];
    if (shape_load(getenv("IDL_SCHEMA"), &schema, err)) {
        fprintf(stderr, "schema: %s\n", err);
        return 99;
    }
    e2e_init(&env);
    e2e_start(&env, NULL);
    RUN(health_and_describe);
    RUN(undecodable_inputs);
    RUN(keys_scopes_and_codes);
    RUN(body_not_a_map_is_checked_last);
    RUN(huge_timeout_is_served);
    RUN(rate_limit);
    RUN(request_ids_unique);
    RUN(keys_reload_on_sighup);
    RUN(malformed_flood_then_health);
    RUN(drain_on_sigterm);
    e2e_cleanup(&env);
    shape_free(schema);
    return test_summary();
}
