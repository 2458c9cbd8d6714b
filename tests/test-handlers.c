/* The daemon's Search and Verify handlers called directly, without a socket:
 * a real store in a mkdtemp directory, records upserted through
 * idl_store_upsert, an idld_call built by hand, and the packed body decoded
 * and checked against API.md §4 (Search's score is the share of supplied
 * groups a person matches, a nickname counting 0.9; Verify's verdict, score
 * and per-group checks). */
#include "call.h"
#include "json.h"
#include "lookup.h"
#include "record.h"
#include "status.h"
#include "store.h"
#include "testmp.h"
#include "testutil.h"
#include "wire.h"

#include <ftw.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* A store in a temp directory, the daemon state over it and one scratch. */
typedef struct {
    char dir[64];
    idl_store *store;
    idld_state st;
    idld_scratch *scratch;
} env;

static bool env_open(env *e)
{
    memset(e, 0, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/idl-test-handlers-XXXXXX");
    if (!mkdtemp(e->dir)) {
        CHECK(false);
        return false;
    }
    char err[256] = "";
    int rc = idl_store_open(&e->store, e->dir, NULL, err);
    CHECK_INT(rc, IDL_OK);
    if (rc) fprintf(stderr, "  open %s: %s\n", e->dir, err);
    e->st.store = e->store;
    e->scratch = idld_scratch_new();
    CHECK(e->scratch != NULL);
    return rc == IDL_OK && e->scratch;
}

static void env_close(env *e)
{
    idld_scratch_free(e->scratch);
    idl_store_close(e->store);
    nftw(e->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* JSON text as a msgpack object in z (the Upsert and request path's
 * parser); buf holds the bytes the object points into. */
static bool from_json(const char *json, idl_buf *buf, msgpack_zone *z, msgpack_object *o)
{
    char msg[IDL_ERR_MAX];
    size_t off = 0;
    bool ok = idl_json_to_msgpack(json, strlen(json), buf, msg) == IDL_OK &&
              msgpack_unpack(buf->data, buf->len, &off, z, o) == MSGPACK_UNPACK_SUCCESS;
    EXPECT(ok, "bad test JSON: %s", json);
    return ok;
}

/* Parses and upserts one record. */
static void put(env *e, const char *json)
{
    idl_buf buf = {0};
    msgpack_zone z;
    msgpack_zone_init(&z, 1024);
    msgpack_object o;
    static idl_record r;
    char reason[256] = "";
    if (from_json(json, &buf, &z, &o)) {
        int rc = idl_record_parse(&o, &r, NULL, NULL, reason);
        EXPECT(rc == IDL_OK, "record refused (%s): %s", reason, json);
        idl_upsert_result res;
        if (rc == IDL_OK) CHECK_INT(idl_store_upsert(e->store, &r, 1, &res, false), IDL_OK);
    }
    msgpack_zone_destroy(&z);
    idl_buf_free(&buf);
}

/* The reply of one handler call: its status and its decoded body. */
typedef struct {
    int code;
    char msg[IDL_ERR_MAX];
    idl_buf in, out;
    msgpack_zone z;
    msgpack_object body;
} reply;

static void call(env *e, idld_handler fn, const char *json, reply *r)
{
    memset(r, 0, sizeof *r);
    msgpack_zone_init(&r->z, 4096);
    msgpack_object req;
    r->code = -1;
    if (!from_json(json, &r->in, &r->z, &req)) return;
    msgpack_packer pk;
    idl_buf_packer(&r->out, &pk);
    idld_call c = {.st = &e->st, .body = &req, .pk = &pk, .scratch = e->scratch};
    r->code = fn(&c);
    snprintf(r->msg, sizeof r->msg, "%s", c.msg);
    size_t off = 0;
    if (r->code == IDL_OK)
        CHECK(msgpack_unpack(r->out.data, r->out.len, &off, &r->z, &r->body) ==
              MSGPACK_UNPACK_SUCCESS);
}

static void reply_free(reply *r)
{
    msgpack_zone_destroy(&r->z);
    idl_buf_free(&r->in);
    idl_buf_free(&r->out);
}

/* Two people called Robert Doe and one Jane Roe, all adults. */
static void three_people(env *e)
{
    put(e, "{\"source_id\": \"a\", \"first_name\": \"Robert\", \"last_name\": \"Doe\","
           " \"dob\": \"1980-05-05\", \"emails\": [\"rob@example.com\"],"
           " \"phones\": [\"+1 212 555 0101\"],"
           " \"addresses\": [{\"street\": \"12 Main Street\", \"city\": \"Springfield\","
           " \"state\": \"IL\", \"zip\": \"62701\"}]}");
    put(e, "{\"source_id\": \"b\", \"first_name\": \"Robert\", \"last_name\": \"Doe\","
           " \"dob\": \"1975-01-02\", \"emails\": [\"bobby@example.org\"]}");
    put(e, "{\"source_id\": \"c\", \"first_name\": \"Jane\", \"last_name\": \"Roe\","
           " \"dob\": \"1990-03-04\", \"emails\": [\"jane@example.net\"],"
           " \"phones\": [\"+1 212 555 0199\"]}");
}

/* The i-th person of a Search body. */
static const msgpack_object *person(const reply *r, uint32_t i)
{
    const msgpack_object *ps = get(&r->body, "persons");
    if (!ps || ps->type != MSGPACK_OBJECT_ARRAY || i >= ps->via.array.size) return NULL;
    return &ps->via.array.ptr[i];
}

static double score_of(const msgpack_object *p)
{
    const msgpack_object *s = get(p, "score");
    return s && s->type == MSGPACK_OBJECT_FLOAT64 ? s->via.f64 : -1;
}

/* Whether p's "matched" is exactly the comma-separated list want, in order. */
static bool matched_is(const msgpack_object *p, const char *want)
{
    const msgpack_object *m = get(p, "matched");
    if (!m || m->type != MSGPACK_OBJECT_ARRAY) return false;
    char got[256] = "";
    for (uint32_t i = 0; i < m->via.array.size; i++) {
        const msgpack_object *s = &m->via.array.ptr[i];
        if (s->type != MSGPACK_OBJECT_STR) return false;
        size_t used = strlen(got);
        snprintf(got + used, sizeof got - used, "%s%.*s", i ? "," : "", (int)s->via.str.size,
                 s->via.str.ptr);
    }
    EXPECT(strcmp(got, want) == 0, "matched: got %s, want %s", got, want);
    return strcmp(got, want) == 0;
}

static uint64_t total_of(const reply *r)
{
    const msgpack_object *t = get(&r->body, "total");
    return t && t->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? t->via.u64 : UINT64_MAX;
}

static uint32_t persons_of(const reply *r)
{
    const msgpack_object *ps = get(&r->body, "persons");
    return ps && ps->type == MSGPACK_OBJECT_ARRAY ? ps->via.array.size : UINT32_MAX;
}

/* ---- Search ---- */

/* Two groups supplied (email, name): the person holding both scores 1, the
 * namesake holding only the name 0.5, best first; total counts both. */
static void search_scores_share_of_groups(void)
{
    env e;
    if (!env_open(&e)) return;
    three_people(&e);
    reply r;
    call(&e, idld_search,
         "{\"email\": \" Rob@Example.com \", \"first_name\": \"robert\", \"last_name\": \"DOE\"}",
         &r);
    CHECK_INT(r.code, IDL_OK);
    CHECK_INT(total_of(&r), 2);
    CHECK_INT(persons_of(&r), 2);
    const msgpack_object *p0 = person(&r, 0), *p1 = person(&r, 1);
    CHECK(fabs(score_of(p0) - 1.0) < 1e-9);
    CHECK(matched_is(p0, "email,first_name,last_name"));
    CHECK(str_is(get(p0, "first_name"), "Robert"));
    CHECK(fabs(score_of(p1) - 0.5) < 1e-9);
    CHECK(matched_is(p1, "first_name,last_name"));
    reply_free(&r);
    env_close(&e);
}

/* A nickname matches the name group at 0.9; an exact first name at 1. */
static void search_nickname_scores_less(void)
{
    env e;
    if (!env_open(&e)) return;
    three_people(&e);
    reply r;
    call(&e, idld_search, "{\"first_name\": \"Bob\", \"last_name\": \"Doe\"}", &r);
    CHECK_INT(r.code, IDL_OK);
    CHECK_INT(total_of(&r), 2);
    for (uint32_t i = 0; i < 2; i++) {
        CHECK(fabs(score_of(person(&r, i)) - 0.9) < 1e-9);
        CHECK(matched_is(person(&r, i), "first_name,last_name"));
    }
    reply_free(&r);
    call(&e, idld_search, "{\"first_name\": \"Robert\", \"last_name\": \"Doe\"}", &r);
    CHECK_INT(r.code, IDL_OK);
    CHECK(fabs(score_of(person(&r, 0)) - 1.0) < 1e-9);
    reply_free(&r);
    env_close(&e);
}

/* A Search that must succeed with total and persons as given. */
static void search_counts(env *e, int line, const char *body, uint64_t total, uint32_t persons)
{
    reply r;
    call(e, idld_search, body, &r);
    expect_at(__FILE__, line, r.code == IDL_OK, "Search failed: %d %s", r.code, r.msg);
    expect_at(__FILE__, line, total_of(&r) == total, "total: got %llu, want %llu",
              (unsigned long long)total_of(&r), (unsigned long long)total);
    expect_at(__FILE__, line, persons_of(&r) == persons, "persons: got %u, want %u", persons_of(&r),
              persons);
    reply_free(&r);
}

/* Three groups (phone, address, name): matching all three is 1, the
 * address group reports every part given; min_score leaves out the rest
 * and total counts only what is at or above it; limit cuts the list but
 * not the total. */
static void search_min_score_and_limit(void)
{
    env e;
    if (!env_open(&e)) return;
    three_people(&e);
    reply r;
    const char *q = "{\"phone\": \"(212) 555-0101\", \"street\": \"12 main st\", \"zip\": "
                    "\"62701\", \"first_name\": \"Robert\", \"last_name\": \"Doe\"%s}";
    char body[256];
    snprintf(body, sizeof body, q, "");
    call(&e, idld_search, body, &r);
    CHECK_INT(r.code, IDL_OK);
    CHECK_INT(total_of(&r), 2);
    CHECK(fabs(score_of(person(&r, 0)) - 1.0) < 1e-9);
    CHECK(matched_is(person(&r, 0), "phone,first_name,last_name,street,zip"));
    CHECK(fabs(score_of(person(&r, 1)) - 1.0 / 3) < 1e-9);
    reply_free(&r);

    snprintf(body, sizeof body, q, ", \"min_score\": 0.5");
    search_counts(&e, __LINE__, body, 1, 1);
    snprintf(body, sizeof body, q, ", \"limit\": 1");
    search_counts(&e, __LINE__, body, 2, 1);
    env_close(&e);
}

/* Not enough to search on is INVALID_ARGUMENT, before any lookup. */
static void search_needs_a_group(void)
{
    env e;
    if (!env_open(&e)) return;
    reply r;
    call(&e, idld_search, "{\"first_name\": \"Robert\", \"zip\": \"62701\"}", &r);
    CHECK_INT(r.code, IDL_INVALID_ARGUMENT);
    CHECK(strstr(r.msg, "not enough to search on") != NULL);
    reply_free(&r);
    env_close(&e);
}

/* ---- Verify ---- */

/* verdict, score and the checks map of a Verify body ("name=match,..." in
 * the reply's order). */
static void expect_verify(int line, const reply *r, const char *verdict, unsigned score,
                          const char *checks)
{
    expect_at(__FILE__, line, r->code == IDL_OK, "Verify failed: %d %s", r->code, r->msg);
    if (r->code != IDL_OK) return;
    const msgpack_object *v = get(&r->body, "verdict"), *s = get(&r->body, "score"),
                         *c = get(&r->body, "checks");
    expect_at(__FILE__, line, str_is(v, verdict), "verdict: want %s", verdict);
    expect_at(
        __FILE__, line, s && s->type == MSGPACK_OBJECT_POSITIVE_INTEGER && s->via.u64 == score,
        "score: got %lld, want %u",
        s && s->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (long long)s->via.u64 : -1LL, score);
    char got[256] = "";
    for (uint32_t i = 0; c && c->type == MSGPACK_OBJECT_MAP && i < c->via.map.size; i++) {
        const msgpack_object *k = &c->via.map.ptr[i].key, *val = &c->via.map.ptr[i].val;
        size_t used = strlen(got);
        snprintf(got + used, sizeof got - used, "%s%.*s=%.*s", i ? "," : "", (int)k->via.str.size,
                 k->via.str.ptr, (int)val->via.str.size, val->via.str.ptr);
    }
    expect_at(__FILE__, line, strcmp(got, checks) == 0, "checks: got %s, want %s", got, checks);
}

static void verify(env *e, int line, const char *body, const char *verdict, unsigned score,
                   const char *checks)
{
    reply r;
    call(e, idld_verify, body, &r);
    expect_verify(line, &r, verdict, score, checks);
    reply_free(&r);
}

static void verify_verdicts(void)
{
    env e;
    if (!env_open(&e)) return;
    three_people(&e);
    /* Every group matches the person the email picks. */
    verify(&e, __LINE__,
           "{\"first_name\": \"Robert\", \"last_name\": \"Doe\", \"email\": \"rob@example.com\","
           " \"street\": \"12 Main St\", \"zip\": \"62701\"}",
           "verified", 100, "name=match,email=match,address=match");
    /* A nickname (Bob for Robert) still matches the name. */
    verify(&e, __LINE__,
           "{\"first_name\": \"Bob\", \"last_name\": \"Doe\", \"email\": \"rob@example.com\"}",
           "verified", 100, "name=match,email=match");
    /* A phone nobody holds: partial, 2 of 3. */
    verify(&e, __LINE__,
           "{\"first_name\": \"Robert\", \"last_name\": \"Doe\", \"email\": \"rob@example.com\","
           " \"phone\": \"+1 212 555 0142\"}",
           "partial", 67, "name=match,email=match,phone=not_found");
    /* Jane's phone with Robert's name: both known, not together. */
    verify(&e, __LINE__,
           "{\"first_name\": \"Robert\", \"last_name\": \"Doe\", \"email\": \"rob@example.com\","
           " \"phone\": \"+1 212 555 0199\"}",
           "partial", 67, "name=match,email=match,phone=no_match");
    /* The email picks Robert, whose name is not Alice: not verified. */
    verify(&e, __LINE__,
           "{\"first_name\": \"Alice\", \"last_name\": \"Smith\", \"email\": \"rob@example.com\"}",
           "not_verified", 50, "name=no_match,email=match");
    /* The name alone matches: not verified (no other group matches). */
    verify(
        &e, __LINE__,
        "{\"first_name\": \"Robert\", \"last_name\": \"Doe\", \"email\": \"nobody@example.com\"}",
        "not_verified", 50, "name=match,email=not_found");
    /* Nobody at all. */
    verify(&e, __LINE__,
           "{\"first_name\": \"Zed\", \"last_name\": \"Nobody\", \"email\": \"zed@example.com\"}",
           "not_verified", 0, "name=not_found,email=not_found");
    /* dob against the picked person only: same date, another date. */
    verify(&e, __LINE__,
           "{\"first_name\": \"Jane\", \"last_name\": \"Roe\", \"dob\": \"1990-03-04\"}",
           "verified", 100, "name=match,dob=match");
    verify(&e, __LINE__,
           "{\"first_name\": \"Jane\", \"last_name\": \"Roe\", \"dob\": \"1991-03-04\"}",
           "not_verified", 50, "name=match,dob=no_match");
    env_close(&e);
}

/* Verify's own rule: an address part without a street is refused. */
static void verify_needs_street(void)
{
    env e;
    if (!env_open(&e)) return;
    reply r;
    call(&e, idld_verify,
         "{\"first_name\": \"Robert\", \"last_name\": \"Doe\", \"zip\": \"62701\"}", &r);
    CHECK_INT(r.code, IDL_INVALID_ARGUMENT);
    CHECK(strstr(r.msg, "address parts need 'street'") != NULL);
    reply_free(&r);
    env_close(&e);
}

int main(void)
{
    RUN(search_scores_share_of_groups);
    RUN(search_nickname_scores_less);
    RUN(search_min_score_and_limit);
    RUN(search_needs_a_group);
    RUN(verify_verdicts);
    RUN(verify_needs_street);
    return test_summary();
}
