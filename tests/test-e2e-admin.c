/* End-to-end tests of the admin surface against a real idlookupd:
 * Admin/Upsert and Admin/Stats (API.md section 4), the children rule
 * (DATA.md section 2), durability across a SIGKILL, and `idlookup ingest`
 * (API.md section 6) with its effect on the daemon's store after a restart. */
#include "e2e.h"
#include "e2echeck.h"
#include "shape.h"
#include "status.h"
#include "testutil.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define SEARCH "idlookup.v1.Lookup/Search"
#define VALIDATE "idlookup.v1.Lookup/Validate"
#define VERIFY "idlookup.v1.Lookup/Verify"
#define UPSERT "idlookup.v1.Admin/Upsert"
#define STATS "idlookup.v1.Admin/Stats"
#define OPTOUT "idlookup.v1.Privacy/OptOut"

static e2e_env E;
static shape_schema *S;
static long long persons_expected; /* visible persons we have put in the store */
static uint64_t started_us;

/* ---- helpers ---- */

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#define callf(key, method, ...) e2e_callf(&E, key, method, __VA_ARGS__)
#define ok_shape(r, method, what) check_ok_shape(S, r, method, what)

static long long getu(const idl_reply *r, const char *path)
{
    return r ? e2e_uint(e2e_path(&r->body, path)) : -1;
}

/* The search is OK; returns its total (-1 on error). */
static long long search_total(const char *json)
{
    idl_reply *r = e2e_call(&E, E.lookup_key, SEARCH, json);
    long long t = -1;
    if (ok_shape(r, SEARCH, json)) t = getu(r, "total");
    idl_reply_free(r);
    return t;
}

static void expect_found(const char *json, const char *sid)
{
    idl_reply *r = e2e_call(&E, E.lookup_key, SEARCH, json);
    if (ok_shape(r, SEARCH, json)) {
        char pid[19];
        snprintf(pid, sizeof pid, "%s", e2e_pid(sid));
        CHECKM(getu(r, "total") == 1 && e2e_str_is(e2e_path(&r->body, "persons.0.id"), pid),
               "Search %s: want %s (%s) alone: %s", json, sid, pid, e2e_json(&r->body));
    }
    idl_reply_free(r);
}

static void expect_absent(const char *json)
{
    long long t = search_total(json);
    CHECKM(t == 0, "Search %s: want nobody, total %lld", json, t);
}

static bool known(const char *json, const char *field)
{
    idl_reply *r = e2e_call(&E, E.lookup_key, VALIDATE, json);
    bool k = false;
    if (ok_shape(r, VALIDATE, json)) {
        char path[32];
        snprintf(path, sizeof path, "%s.known", field);
        const msgpack_object *o = e2e_path(&r->body, path);
        k = o && o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
    }
    idl_reply_free(r);
    return k;
}

static idl_reply *stats(void)
{
    idl_reply *r = e2e_call(&E, E.admin_key, STATS, "{}");
    ok_shape(r, STATS, "Stats");
    return r;
}

/* A requests counter by code name (0 when absent). */
static long long req_count(const idl_reply *r, const char *name)
{
    const msgpack_object *m = r ? e2e_get(&r->body, "requests") : NULL;
    const msgpack_object *v = e2e_get(m, name);
    return v ? e2e_uint(v) : 0;
}

static bool date_shift(int years_back, int days, char out[16])
{
    time_t t = time(NULL) + (time_t)days * 86400;
    struct tm tm;
    gmtime_r(&t, &tm);
    int y = tm.tm_year + 1900 - years_back, m = tm.tm_mon + 1, d = tm.tm_mday;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (m == 2 && d == 29 && !leap) return false;
    snprintf(out, 16, "%04u-%02u-%02u", (unsigned)y % 10000u, (unsigned)m % 100u,
             (unsigned)d % 100u);
    return true;
}

/* dob of someone whose 13th birthday is tomorrow (a child) and today (not). */
static char child_dob[16], teen_dob[16];
static bool have_boundary;

/* An IndexReason list holds index with a reason containing word (NULL: any). */
static bool has_index(const msgpack_object *list, long long index, const char *word)
{
    for (uint32_t i = 0; list && list->type == MSGPACK_OBJECT_ARRAY && i < list->via.array.size;
         i++) {
        const msgpack_object *e = &list->via.array.ptr[i];
        if (e2e_uint(e2e_get(e, "index")) != index) continue;
        const msgpack_object *why = e2e_get(e, "reason");
        if (!why || why->type != MSGPACK_OBJECT_STR || why->via.str.size == 0) continue;
        char buf[512];
        snprintf(buf, sizeof buf, "%.*s", (int)why->via.str.size, why->via.str.ptr);
        if (!word || strstr(buf, word)) return true;
    }
    return false;
}

/* ---- Upsert ---- */

static void upsert_counts(void)
{
    idl_reply *r = callf(
        E.admin_key, UPSERT,
        "{\"records\":["
        /* 0: one invalid email, dropped and warned */
        "{\"source_id\":\"a-1\",\"first_name\":\"Quentin\",\"last_name\":\"Adams\","
        "\"emails\":[\"q.adams@example.com\",\"not-an-email\"],\"phones\":[\"(212) 555-0123\"]},"
        /* 1: an unknown field, not stored and warned */
        "{\"source_id\":\"a-2\",\"first_name\":\"Rita\",\"last_name\":\"Baker\",\"nickname\":"
        "\"Ri\","
        "\"dob\":\"1990-04-04\",\"emails\":[\"rita.baker@example.com\"],\"phones\":[\"+1 718 555 "
        "0145\"],"
        "\"addresses\":[{\"street\":\"50 West Road\",\"city\":\"Dover\",\"state\":\"Delaware\","
        "\"zip\":\"19901\"}],\"ips\":[\"198.51.100.2\"]},"
        /* 2: under 13 by dob */
        "{\"source_id\":\"a-kid\",\"first_name\":\"Timothy\",\"last_name\":\"Child\",\"dob\":\"%"
        "s\","
        "\"emails\":[\"tim.child@example.com\"]},"
        /* 3: minor flag */
        "{\"source_id\":\"a-minor\",\"first_name\":\"Mia\",\"last_name\":\"Minor\",\"minor\":true,"
        "\"dob\":\"1950-01-01\",\"emails\":[\"mia.minor@example.com\"]},"
        /* 4..7: invalid */
        "{\"first_name\":\"No\",\"last_name\":\"Source\",\"emails\":[\"nosource@example.com\"]},"
        "{\"source_id\":\"a-nolast\",\"first_name\":\"No\",\"emails\":[\"nolast@example.com\"]},"
        "{\"source_id\":\"a-baddob\",\"first_name\":\"Bad\",\"last_name\":\"Date\",\"dob\":\"1990-"
        "02-30\","
        "\"emails\":[\"baddob@example.com\"]},"
        "42,"
        /* 8: 13 today: stored */
        "{\"source_id\":\"a-13\",\"first_name\":\"Tess\",\"last_name\":\"Thirteen\",\"dob\":\"%s\","
        "\"emails\":[\"tess.thirteen@example.com\"]},"
        /* 9: an invalid phone */
        "{\"source_id\":\"a-3\",\"first_name\":\"Uma\",\"last_name\":\"Clark\",\"phones\":[\"123\","
        "\"+1 415 555 0177\"]}"
        "]}",
        have_boundary ? child_dob : "2020-01-01", have_boundary ? teen_dob : "1990-01-01");
    if (ok_shape(r, UPSERT, "mixed records")) {
        CHECKM(getu(r, "stored") == 4, "stored %lld, want 4: %s", getu(r, "stored"),
               e2e_json(&r->body));
        CHECKM(getu(r, "updated") == 0, "updated %lld, want 0", getu(r, "updated"));
        CHECKM(getu(r, "rejected_child") == 2, "rejected_child %lld, want 2",
               getu(r, "rejected_child"));
        CHECKM(getu(r, "suppressed") == 0, "suppressed %lld, want 0", getu(r, "suppressed"));
        CHECKM(getu(r, "dropped_identifiers") == 2, "dropped_identifiers %lld, want 2",
               getu(r, "dropped_identifiers"));
        const msgpack_object *inv = e2e_get(&r->body, "invalid"),
                             *w = e2e_get(&r->body, "warnings");
        CHECKM(inv && inv->type == MSGPACK_OBJECT_ARRAY && inv->via.array.size == 4,
               "4 invalid records: %s", e2e_json(inv));
        CHECKM(has_index(inv, 4, "source_id"), "invalid[4] names source_id: %s", e2e_json(inv));
        CHECKM(has_index(inv, 5, "last_name"), "invalid[5] names last_name: %s", e2e_json(inv));
        CHECKM(has_index(inv, 6, "dob"), "invalid[6] names dob: %s", e2e_json(inv));
        CHECKM(has_index(inv, 7, NULL), "invalid[7] (not a map): %s", e2e_json(inv));
        for (long long i = 0; i < 4; i++)
            CHECKM(!has_index(inv, i, NULL) && !has_index(inv, 8, NULL) && !has_index(inv, 9, NULL),
                   "children and good records are not invalid: %s", e2e_json(inv));
        CHECKM(has_index(w, 0, "email"), "warning for index 0's email: %s", e2e_json(w));
        CHECKM(has_index(w, 1, "nickname"), "warning for index 1's unknown field: %s", e2e_json(w));
        CHECKM(has_index(w, 9, "phone"), "warning for index 9's phone: %s", e2e_json(w));
        CHECKM(!has_index(w, 8, NULL) && !has_index(w, 2, NULL), "no warning for clean records: %s",
               e2e_json(w));
    }
    idl_reply_free(r);
    persons_expected += 4;
    /* visible to the next request */
    expect_found("{\"email\":\"q.adams@example.com\"}", "a-1");
    expect_found("{\"phone\":\"212-555-0123\"}", "a-1");
    expect_found("{\"first_name\":\"Rita\",\"last_name\":\"Baker\"}", "a-2");
    expect_found("{\"email\":\"tess.thirteen@example.com\"}", "a-13");
    expect_found("{\"phone\":\"4155550177\"}", "a-3");
    /* children and invalid records are nowhere */
    expect_absent("{\"email\":\"tim.child@example.com\"}");
    expect_absent("{\"first_name\":\"Timothy\",\"last_name\":\"Child\"}");
    expect_absent("{\"email\":\"mia.minor@example.com\"}");
    expect_absent("{\"first_name\":\"Mia\",\"last_name\":\"Minor\"}");
    expect_absent("{\"email\":\"nosource@example.com\"}");
    expect_absent("{\"email\":\"nolast@example.com\"}");
    expect_absent("{\"email\":\"baddob@example.com\"}");
    CHECKM(!known("{\"email\":\"tim.child@example.com\"}", "email"),
           "a child's email is not known");
    /* the unknown field was not stored; the dropped email is gone */
    idl_reply *s = e2e_call(&E, E.lookup_key, SEARCH, "{\"email\":\"rita.baker@example.com\"}");
    if (ok_shape(s, SEARCH, "Rita")) {
        const msgpack_object *p = e2e_path(&s->body, "persons.0");
        CHECKM(p && p->via.map.size == 11 && !e2e_get(p, "nickname"), "no unknown field: %s",
               e2e_json(p));
    }
    idl_reply_free(s);
    s = e2e_call(&E, E.lookup_key, SEARCH, "{\"email\":\"q.adams@example.com\"}");
    if (ok_shape(s, SEARCH, "Quentin")) {
        const msgpack_object *em = e2e_path(&s->body, "persons.0.emails");
        CHECKM(em && em->via.array.size == 1 &&
                   e2e_str_is(&em->via.array.ptr[0], "q.adams@example.com"),
               "only the valid email: %s", e2e_json(em));
    }
    idl_reply_free(s);
}

static void upsert_update(void)
{
    idl_reply *r =
        callf(E.admin_key, UPSERT,
              "{\"records\":["
              "{\"source_id\":\"a-1\",\"first_name\":\"Quentin\",\"last_name\":\"Adams\","
              "\"emails\":[\"q.adams@newmail.example.com\"]},"
              "{\"source_id\":\"a-4\",\"first_name\":\"Vera\",\"last_name\":\"Dunn\","
              "\"emails\":[\"vera.dunn@example.com\"]}]}");
    if (ok_shape(r, UPSERT, "update + new")) {
        CHECKM(getu(r, "stored") == 1 && getu(r, "updated") == 1,
               "stored 1 and updated 1 (disjoint): %s", e2e_json(&r->body));
        CHECKM(getu(r, "rejected_child") == 0 && getu(r, "dropped_identifiers") == 0 &&
                   e2e_get(&r->body, "invalid")->via.array.size == 0 &&
                   e2e_get(&r->body, "warnings")->via.array.size == 0,
               "nothing else: %s", e2e_json(&r->body));
    }
    idl_reply_free(r);
    persons_expected += 1;
    /* the update replaced the record: old identifiers are gone */
    expect_found("{\"email\":\"q.adams@newmail.example.com\"}", "a-1");
    expect_absent("{\"email\":\"q.adams@example.com\"}");
    expect_absent("{\"phone\":\"212-555-0123\"}");
    CHECKM(!known("{\"email\":\"q.adams@example.com\"}", "email"),
           "the replaced email is not known");
    expect_found("{\"email\":\"vera.dunn@example.com\"}", "a-4");
    /* the same record again is an update, not a new person */
    r = callf(E.admin_key, UPSERT,
              "{\"records\":[{\"source_id\":\"a-4\",\"first_name\":\"Vera\",\"last_name\":\"Dunn\","
              "\"emails\":[\"vera.dunn@example.com\"]}]}");
    if (ok_shape(r, UPSERT, "same again"))
        CHECKM(getu(r, "stored") == 0 && getu(r, "updated") == 1, "re-sent: %s",
               e2e_json(&r->body));
    idl_reply_free(r);
    long long t = search_total("{\"first_name\":\"Vera\",\"last_name\":\"Dunn\"}");
    CHECKM(t == 1, "one Vera Dunn after a re-send, total %lld", t);
}

static void upsert_child_update(void)
{
    idl_reply *s1 = stats();
    idl_reply *r = callf(
        E.admin_key, UPSERT,
        "{\"records\":[{\"source_id\":\"a-2\",\"first_name\":\"Rita\",\"last_name\":\"Baker\","
        "\"dob\":\"%s\",\"emails\":[\"rita.baker@example.com\"],\"phones\":[\"+1 718 555 0145\"],"
        "\"addresses\":[{\"street\":\"50 West Road\",\"city\":\"Dover\",\"state\":\"Delaware\","
        "\"zip\":\"19901\"}],\"ips\":[\"198.51.100.2\"]}]}",
        have_boundary ? child_dob : "2020-02-02");
    if (ok_shape(r, UPSERT, "a-2 becomes a child"))
        CHECKM(getu(r, "rejected_child") == 1 && getu(r, "stored") == 0 && getu(r, "updated") == 0,
               "a child counts only in rejected_child: %s", e2e_json(&r->body));
    idl_reply_free(r);
    persons_expected -= 1;
    /* gone by every identifier */
    expect_absent("{\"email\":\"rita.baker@example.com\"}");
    expect_absent("{\"phone\":\"(718) 555-0145\"}");
    expect_absent("{\"street\":\"50 West Rd\",\"zip\":\"19901\"}");
    expect_absent("{\"street\":\"50 West Road\",\"city\":\"Dover\",\"state\":\"DE\"}");
    expect_absent("{\"ip\":\"198.51.100.2\"}");
    expect_absent("{\"first_name\":\"Rita\",\"last_name\":\"Baker\"}");
    CHECKM(!known("{\"email\":\"rita.baker@example.com\"}", "email"), "purged email not known");
    CHECKM(!known("{\"phone\":\"+17185550145\"}", "phone"), "purged phone not known");
    CHECKM(!known("{\"address\":{\"street\":\"50 West Road\",\"zip\":\"19901\"}}", "address"),
           "purged address not known");
    idl_reply *v = e2e_call(&E, E.lookup_key, VERIFY,
                            "{\"first_name\":\"Rita\",\"last_name\":\"Baker\",\"email\":"
                            "\"rita.baker@example.com\",\"dob\":\"1990-04-04\"}");
    if (ok_shape(v, VERIFY, "purged person"))
        CHECKM(e2e_str_is(e2e_path(&v->body, "checks.name"), "not_found") &&
                   e2e_str_is(e2e_path(&v->body, "checks.email"), "not_found") &&
                   e2e_str_is(e2e_path(&v->body, "checks.dob"), "not_found") &&
                   e2e_str_is(e2e_get(&v->body, "verdict"), "not_verified"),
               "Verify of a purged person: %s", e2e_json(&v->body));
    idl_reply_free(v);
    idl_reply *s2 = stats();
    CHECKM(getu(s2, "children_purged") == getu(s1, "children_purged") + 1,
           "children_purged %lld -> %lld", getu(s1, "children_purged"),
           getu(s2, "children_purged"));
    CHECKM(getu(s2, "persons") == getu(s1, "persons") - 1, "persons %lld -> %lld",
           getu(s1, "persons"), getu(s2, "persons"));
    /* minor: true on an update purges too */
    r = callf(E.admin_key, UPSERT,
              "{\"records\":[{\"source_id\":\"a-3\",\"first_name\":\"Uma\",\"last_name\":\"Clark\","
              "\"minor\":true,\"phones\":[\"+1 415 555 0177\"]}]}");
    if (ok_shape(r, UPSERT, "a-3 flagged minor"))
        CHECKM(getu(r, "rejected_child") == 1 && getu(r, "stored") == 0 && getu(r, "updated") == 0,
               "minor update: %s", e2e_json(&r->body));
    idl_reply_free(r);
    persons_expected -= 1;
    expect_absent("{\"phone\":\"4155550177\"}");
    expect_absent("{\"first_name\":\"Uma\",\"last_name\":\"Clark\"}");
    idl_reply *s3 = stats();
    CHECKM(getu(s3, "children_purged") == getu(s1, "children_purged") + 2,
           "children_purged after two purges: %lld -> %lld", getu(s1, "children_purged"),
           getu(s3, "children_purged"));
    CHECKM(getu(s3, "persons") == persons_expected, "persons %lld, want %lld", getu(s3, "persons"),
           persons_expected);
    /* a new child is rejected, not purged */
    r = callf(
        E.admin_key, UPSERT,
        "{\"records\":[{\"source_id\":\"a-kid2\",\"first_name\":\"Zoe\",\"last_name\":\"Small\","
        "\"minor\":true}]}");
    if (ok_shape(r, UPSERT, "new child"))
        CHECKM(getu(r, "rejected_child") == 1 && getu(r, "stored") == 0, "new child: %s",
               e2e_json(&r->body));
    idl_reply_free(r);
    idl_reply *s4 = stats();
    CHECKM(getu(s4, "children_purged") == getu(s3, "children_purged"),
           "a child never stored is not purged: %lld -> %lld", getu(s3, "children_purged"),
           getu(s4, "children_purged"));
    idl_reply_free(s1);
    idl_reply_free(s2);
    idl_reply_free(s3);
    idl_reply_free(s4);
}

static void upsert_limits(void)
{
    idl_reply *r = callf(E.admin_key, UPSERT, "{\"records\":[]}");
    expect_err(r, IDL_INVALID_ARGUMENT, "records", "Upsert of 0 records");
    idl_reply_free(r);
    r = callf(E.admin_key, UPSERT, "{}");
    expect_err(r, IDL_INVALID_ARGUMENT, "records", "Upsert without records");
    idl_reply_free(r);
    r = callf(E.admin_key, UPSERT, "{\"records\":{\"source_id\":\"x\"}}");
    expect_err(r, IDL_INVALID_ARGUMENT, "records", "Upsert with records as a map");
    idl_reply_free(r);
    r = callf(E.admin_key, UPSERT,
              "{\"records\":[{\"source_id\":\"a-x\",\"first_name\":\"A\",\"last_name\":\"B\"}],"
              "\"mode\":1}");
    expect_err(r, IDL_INVALID_ARGUMENT, "mode", "Upsert with an unknown body field");
    idl_reply_free(r);
    expect_absent("{\"first_name\":\"A\",\"last_name\":\"B\"}");
    for (int n = 1000; n <= 1001; n++) {
        size_t cap = (size_t)n * 96 + 64, off = 0;
        char *json = malloc(cap);
        off += (size_t)snprintf(json + off, cap - off, "{\"records\":[");
        for (int i = 0; i < n; i++)
            off += (size_t)snprintf(
                json + off, cap - off,
                "%s{\"source_id\":\"b%d-%d\",\"first_name\":\"Bulk\",\"last_name\":\"L%d\"}",
                i ? "," : "", n, i, n);
        snprintf(json + off, cap - off, "]}");
        r = e2e_call(&E, E.admin_key, UPSERT, json);
        if (n == 1000) {
            if (ok_shape(r, UPSERT, "1000 records"))
                CHECKM(getu(r, "stored") == 1000, "1000 stored: %lld", getu(r, "stored"));
            persons_expected += 1000;
        } else {
            expect_err(r, IDL_INVALID_ARGUMENT, "records", "Upsert of 1001 records");
        }
        idl_reply_free(r);
        free(json);
    }
    long long t = search_total("{\"first_name\":\"Bulk\",\"last_name\":\"L1001\"}");
    CHECKM(t == 0, "nothing of the refused 1001 stored: %lld", t);
    t = search_total("{\"first_name\":\"Bulk\",\"last_name\":\"L1000\",\"limit\":100}");
    CHECKM(t == 1000, "all of the 1000 stored: %lld", t);
    /* the admin scope is needed */
    r = callf(E.lookup_key, UPSERT,
              "{\"records\":[{\"source_id\":\"a-y\",\"first_name\":\"A\",\"last_name\":\"B\"}]}");
    CHECKM(r && r->code == IDL_PERMISSION_DENIED, "Upsert with a lookup key: %d", r ? r->code : -1);
    idl_reply_free(r);
}

/* ---- Stats ---- */

static void stats_fields(void)
{
    idl_reply *s1 = stats();
    uint64_t t1 = mono_us();
    CHECKM(getu(s1, "persons") == persons_expected, "persons %lld, want %lld", getu(s1, "persons"),
           persons_expected);
    CHECKM(getu(s1, "suppressed") == 0, "suppressed %lld", getu(s1, "suppressed"));
    long long up1 = getu(s1, "uptime_s");
    CHECKM(up1 >= 0 && (uint64_t)up1 <= (t1 - started_us) / 1000000u + 1,
           "uptime_s %lld within the %llu s since the start", up1,
           (unsigned long long)((t1 - started_us) / 1000000u));
    /* requests by code name, queries_logged */
    idl_reply *a = e2e_call(&E, E.lookup_key, SEARCH, "{\"email\":\"vera.dunn@example.com\"}");
    idl_reply *b = e2e_call(&E, E.lookup_key, SEARCH, "{}");
    idl_reply *c = e2e_call(&E, E.lookup_key, STATS, "{}");
    idl_reply *d = e2e_call(&E, NULL, STATS, "{}");
    idl_reply *p = e2e_call(&E, E.privacy_key, STATS, "{}");
    CHECKM(a && a->code == 0, "a Search: %d", a ? a->code : -1);
    CHECKM(b && b->code == IDL_INVALID_ARGUMENT, "an empty Search: %d", b ? b->code : -1);
    CHECKM(c && c->code == IDL_PERMISSION_DENIED, "Stats with a lookup key: %d (%s)",
           c ? c->code : -1, msg_of(c));
    CHECKM(p && p->code == IDL_PERMISSION_DENIED, "Stats with a privacy key: %d", p ? p->code : -1);
    CHECKM(d && d->code == IDL_UNAUTHENTICATED, "Stats without a key: %d", d ? d->code : -1);
    idl_reply *s2 = stats();
    CHECKM(req_count(s2, "OK") == req_count(s1, "OK") + 2, "requests.OK %lld -> %lld, want +2",
           req_count(s1, "OK"), req_count(s2, "OK"));
    CHECKM(req_count(s2, "INVALID_ARGUMENT") == req_count(s1, "INVALID_ARGUMENT") + 1,
           "requests.INVALID_ARGUMENT %lld -> %lld", req_count(s1, "INVALID_ARGUMENT"),
           req_count(s2, "INVALID_ARGUMENT"));
    CHECKM(req_count(s2, "PERMISSION_DENIED") == req_count(s1, "PERMISSION_DENIED") + 2,
           "requests.PERMISSION_DENIED %lld -> %lld", req_count(s1, "PERMISSION_DENIED"),
           req_count(s2, "PERMISSION_DENIED"));
    CHECKM(req_count(s2, "UNAUTHENTICATED") == req_count(s1, "UNAUTHENTICATED") + 1,
           "requests.UNAUTHENTICATED %lld -> %lld", req_count(s1, "UNAUTHENTICATED"),
           req_count(s2, "UNAUTHENTICATED"));
    const msgpack_object *rq = e2e_get(&s2->body, "requests");
    for (uint32_t i = 0; rq && rq->type == MSGPACK_OBJECT_MAP && i < rq->via.map.size; i++) {
        char name[64] = "";
        const msgpack_object *k = &rq->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR)
            snprintf(name, sizeof name, "%.*s", (int)k->via.str.size, k->via.str.ptr);
        int code = -1;
        CHECKM(idl_status_parse(name, &code) == 0, "requests keyed by code name: '%s'", name);
    }
    /* Stats 1, the two Searches, the three refused Stats */
    CHECKM(getu(s2, "queries_logged") == getu(s1, "queries_logged") + 6,
           "queries_logged %lld -> %lld, want +6", getu(s1, "queries_logged"),
           getu(s2, "queries_logged"));
    idl_reply_free(a);
    idl_reply_free(b);
    idl_reply_free(c);
    idl_reply_free(d);
    idl_reply_free(p);
    /* uptime grows */
    usleep(1100 * 1000);
    idl_reply *s3 = stats();
    CHECKM(getu(s3, "uptime_s") >= up1 + 1, "uptime_s %lld -> %lld after 1.1 s", up1,
           getu(s3, "uptime_s"));
    /* persons counts visible persons: an opt-out moves one to suppressed */
    char body[64];
    snprintf(body, sizeof body, "{\"person_id\":\"%s\"}", e2e_pid("a-4"));
    idl_reply *o = e2e_call(&E, E.privacy_key, OPTOUT, body);
    CHECKM(o && o->code == 0 && getu(o, "suppressed") == 1, "OptOut a-4: %d %s", o ? o->code : -1,
           o ? e2e_json(&o->body) : "");
    idl_reply_free(o);
    persons_expected -= 1;
    idl_reply *s4 = stats();
    CHECKM(getu(s4, "persons") == getu(s3, "persons") - 1 &&
               getu(s4, "persons") == persons_expected,
           "persons after an opt-out: %lld -> %lld (want %lld)", getu(s3, "persons"),
           getu(s4, "persons"), persons_expected);
    CHECKM(getu(s4, "suppressed") == getu(s3, "suppressed") + 1, "suppressed %lld -> %lld",
           getu(s3, "suppressed"), getu(s4, "suppressed"));
    /* a re-sent opted-out person counts as updated and suppressed, and stays hidden */
    idl_reply *u1 =
        callf(E.admin_key, UPSERT,
              "{\"records\":[{\"source_id\":\"a-4\",\"first_name\":\"Vera\",\"last_name\":"
              "\"Dunn\",\"emails\":[\"vera.dunn@example.com\"]}]}");
    if (ok_shape(u1, UPSERT, "re-sent opted-out person"))
        CHECKM(getu(u1, "updated") == 1 && getu(u1, "suppressed") == 1 && getu(u1, "stored") == 0,
               "re-sent opted-out person: %s", e2e_json(&u1->body));
    idl_reply_free(u1);
    expect_absent("{\"email\":\"vera.dunn@example.com\"}");
    idl_reply *s5 = stats();
    CHECKM(getu(s5, "persons") == getu(s4, "persons") &&
               getu(s5, "suppressed") == getu(s4, "suppressed"),
           "a re-sent suppressed person changes no count: %s", s5 ? e2e_json(&s5->body) : "-");
    idl_reply_free(s5);
    idl_reply_free(s1);
    idl_reply_free(s2);
    idl_reply_free(s3);
    idl_reply_free(s4);
    /* an unknown field in Stats' body */
    idl_reply *u = e2e_call(&E, E.admin_key, STATS, "{\"verbose\":true}");
    expect_err(u, IDL_INVALID_ARGUMENT, "verbose", "Stats with an unknown field");
    idl_reply_free(u);
}

/* ---- durability ---- */

static void upsert_survives_kill9(void)
{
    idl_reply *r =
        callf(E.admin_key, UPSERT,
              "{\"records\":[{\"source_id\":\"a-dur\",\"first_name\":\"Walt\",\"last_name\":"
              "\"Durable\",\"emails\":[\"walt.durable@example.com\"],\"phones\":"
              "[\"+1 312 555 0166\"]}]}");
    bool acked = ok_shape(r, UPSERT, "before SIGKILL") && getu(r, "stored") == 1;
    CHECKM(acked, "acknowledged: %s", r ? e2e_json(&r->body) : "-");
    idl_reply_free(r);
    e2e_kill9(&E); /* right after the reply */
    if (acked) persons_expected += 1;
    e2e_start(&E, NULL);
    expect_found("{\"email\":\"walt.durable@example.com\"}", "a-dur");
    expect_found("{\"phone\":\"312-555-0166\"}", "a-dur");
    expect_found("{\"email\":\"q.adams@newmail.example.com\"}", "a-1");
    expect_absent("{\"email\":\"vera.dunn@example.com\"}"); /* the opt-out survives too */
    idl_reply *s = stats();
    CHECKM(getu(s, "persons") == persons_expected, "persons after restart %lld, want %lld",
           getu(s, "persons"), persons_expected);
    CHECKM(getu(s, "children_purged") == 2, "children_purged after restart %lld, want 2",
           getu(s, "children_purged"));
    CHECKM(getu(s, "uptime_s") <= 5, "uptime restarts: %lld", getu(s, "uptime_s"));
    idl_reply_free(s);
}

/* ---- ingest ---- */

/* Parses the CLI's JSON summary; returns the value of key or -1. */
static long long summary_get(const char *out, const char *key)
{
    idl_buf b = {0};
    char msg[IDL_ERR_MAX];
    if (!out || idl_json_to_msgpack(out, strlen(out), &b, msg)) return -1;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    long long v = -1;
    size_t off = 0;
    if (msgpack_unpack_next(&u, b.data, b.len, &off) == MSGPACK_UNPACK_SUCCESS)
        v = e2e_uint(e2e_get(&u.data, key));
    msgpack_unpacked_destroy(&u);
    idl_buf_free(&b);
    return v;
}

/* stderr has a line naming this line number of file. */
static bool names_line(const char *err, const char *file, int line)
{
    char a[64], b[32];
    snprintf(a, sizeof a, "%s:%d:", file, line);
    snprintf(b, sizeof b, "line %d", line);
    if (!err) return false;
    const char *p = err;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char buf[1024];
        snprintf(buf, sizeof buf, "%.*s", (int)(len < sizeof buf - 1 ? len : sizeof buf - 1), p);
        if (strstr(buf, a) || (strstr(buf, file) && strstr(buf, b))) return true;
        p += len + (nl ? 1 : 0);
    }
    return false;
}

static void ingest_cli(void)
{
    int st = e2e_stop(&E);
    CHECKM(st == 0, "SIGTERM: exit %d", st);
    char ndjson[4096];
    snprintf(
        ndjson, sizeof ndjson,
        /* 1 */
        "{\"source_id\":\"i-1\",\"first_name\":\"Ivy\",\"last_name\":\"Ingest\","
        "\"emails\":[\"ivy@example.com\",\"bad@\"],\"phones\":[\"(917) 555-0101\"]}\n"
        /* 2 */ "{\"source_id\":\"i-2\",\"first_name\":\"Ian\",\"last_name\":\"Ingest\","
        "\"emails\":[\"ian@example.com\"]}\n"
        /* 3 */ "{not json\n"
        /* 4 */ "{\"source_id\":\"i-1\",\"first_name\":\"Ivy\",\"last_name\":\"Ingest\","
        "\"emails\":[\"ivy.new@example.com\"]}\n"
        /* 5 */ "[1,2,3]\n"
        /* 6 */ "{\"source_id\":\"i-kid\",\"first_name\":\"Kay\",\"last_name\":\"Ingest\","
        "\"minor\":true,\"emails\":[\"kay@example.com\"]}\n"
        /* 7 */ "{\"first_name\":\"No\",\"last_name\":\"Source\",\"emails\":[\"ns@example.com\"]}\n"
        /* 8 */ "{\"source_id\":\"i-kid2\",\"first_name\":\"Kim\",\"last_name\":\"Ingest\","
        "\"dob\":\"%s\",\"emails\":[\"kim@example.com\"]}\n"
        /* 9 */ "{\"source_id\":\"a-1\",\"first_name\":\"Quentin\",\"last_name\":\"Adams\","
        "\"emails\":[\"q.adams@ingest.example.com\"]}\n"
        /* 10: opted out by person id: updated and still suppressed */
        "{\"source_id\":\"a-4\",\"first_name\":\"Vera\",\"last_name\":\"Dunn\","
        "\"emails\":[\"vera.dunn@example.com\",\"vera.new@example.com\"]}\n",
        have_boundary ? child_dob : "2021-03-03");
    char path[400];
    snprintf(path, sizeof path, "%s", e2e_write_file(&E, "ingest.ndjson", ndjson));
    const char *args[] = {"ingest", "--data", E.data, path, NULL};
    char *out = NULL, *err = NULL;
    int rc = e2e_cli(args, NULL, &out, &err);
    CHECKM(rc == 0, "ingest exit %d; stderr: %s", rc, err ? err : "");
    struct {
        const char *key;
        long long want;
    } counts[] = {{"read", 10},
                  {"stored", 2},
                  {"updated", 3},
                  {"rejected_child", 2},
                  {"suppressed", 1},
                  {"invalid", 3},
                  {"dropped_identifiers", 1}};
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
        long long v = summary_get(out, counts[i].key);
        CHECKM(v == counts[i].want, "ingest summary %s = %lld, want %lld (stdout: %s)",
               counts[i].key, v, counts[i].want, out ? out : "");
    }
    const char *base = "ingest.ndjson";
    CHECKM(names_line(err, base, 3), "stderr names line 3 (not JSON): %s", err ? err : "");
    CHECKM(names_line(err, base, 5), "stderr names line 5 (an array): %s", err ? err : "");
    CHECKM(names_line(err, base, 7), "stderr names line 7 (no source_id): %s", err ? err : "");
    CHECKM(!names_line(err, base, 2) && !names_line(err, base, 4) && !names_line(err, base, 9),
           "good lines are not reported: %s", err ? err : "");
    free(out);
    free(err);
    persons_expected += 2; /* i-1, i-2; a-1 updated; a-4 stays suppressed */
    /* the daemon sees the load */
    e2e_start(&E, NULL);
    expect_found("{\"email\":\"ivy.new@example.com\"}", "i-1");
    expect_absent("{\"email\":\"ivy@example.com\"}");
    expect_absent("{\"phone\":\"917-555-0101\"}");
    expect_found("{\"first_name\":\"Ian\",\"last_name\":\"Ingest\"}", "i-2");
    expect_absent("{\"email\":\"kay@example.com\"}");
    expect_absent("{\"email\":\"kim@example.com\"}");
    expect_absent("{\"email\":\"ns@example.com\"}");
    expect_found("{\"email\":\"q.adams@ingest.example.com\"}", "a-1");
    expect_absent("{\"email\":\"q.adams@newmail.example.com\"}");
    expect_absent("{\"email\":\"vera.new@example.com\"}");
    expect_absent("{\"first_name\":\"Vera\",\"last_name\":\"Dunn\"}");
    idl_reply *s = stats();
    CHECKM(getu(s, "persons") == persons_expected, "persons after ingest %lld, want %lld",
           getu(s, "persons"), persons_expected);
    CHECKM(getu(s, "suppressed") == 1, "suppressed after ingest %lld, want 1",
           getu(s, "suppressed"));
    idl_reply_free(s);

    /* while the daemon holds the store: exit 1, the lock named, nothing harmed */
    const char *f2 = e2e_write_file(&E, "more.ndjson",
                                    "{\"source_id\":\"i-3\",\"first_name\":\"Ida\",\"last_name\":"
                                    "\"Ingest\",\"emails\":[\"ida@example.com\"]}\n");
    char p2[400];
    snprintf(p2, sizeof p2, "%s", f2);
    const char *args2[] = {"ingest", "--data", E.data, p2, NULL};
    out = err = NULL;
    rc = e2e_cli(args2, NULL, &out, &err);
    CHECKM(rc == 1, "ingest into a held store: exit %d", rc);
    CHECKM(err && strcasestr(err, "lock"), "stderr names the locked store: %s", err ? err : "");
    CHECKM(err && strchr(err, '\n') == strrchr(err, '\n') && err[0] && err[strlen(err) - 1] == '\n',
           "one line on stderr: %s", err ? err : "");
    CHECKM(!out || summary_get(out, "read") < 0, "no summary on failure: %s", out ? out : "");
    free(out);
    free(err);
    expect_absent("{\"email\":\"ida@example.com\"}");
    expect_found("{\"first_name\":\"Ian\",\"last_name\":\"Ingest\"}", "i-2");

    /* a missing file: exit 1 naming it; no --data: exit 2 */
    char missing[400];
    snprintf(missing, sizeof missing, "%s/no-such-file.ndjson", E.dir);
    const char *args3[] = {"ingest", "--data", E.data, missing, NULL};
    out = err = NULL;
    rc = e2e_cli(args3, NULL, &out, &err);
    CHECKM(rc == 1, "ingest of a missing file: exit %d", rc);
    CHECKM(err && strstr(err, "no-such-file.ndjson"), "stderr names the missing file: %s",
           err ? err : "");
    free(out);
    free(err);
    const char *args4[] = {"ingest", p2, NULL};
    out = err = NULL;
    rc = e2e_cli(args4, NULL, &out, &err);
    CHECKM(rc == 2, "ingest without --data: exit %d", rc);
    CHECKM(err && strstr(err, "--data"), "stderr names --data: %s", err ? err : "");
    free(out);
    free(err);
    /* a stopped daemon: the missing file leaves the store as it was */
    st = e2e_stop(&E);
    CHECKM(st == 0, "SIGTERM: exit %d", st);
    const char *args5[] = {"ingest", "--data", E.data, p2, missing, NULL};
    out = err = NULL;
    rc = e2e_cli(args5, NULL, &out, &err);
    CHECKM(rc == 1, "ingest with one missing file of two: exit %d", rc);
    free(out);
    free(err);
    e2e_start(&E, NULL);
    expect_absent("{\"email\":\"ida@example.com\"}");
    expect_found("{\"email\":\"ivy.new@example.com\"}", "i-1");
}

int main(void)
{
    char err[256];
    const char *schema = getenv("IDL_SCHEMA");
    if (!schema || shape_load(schema, &S, err)) {
        fprintf(stderr, "cannot load the schema (IDL_SCHEMA=%s): %s\n", schema ? schema : "", err);
        return 99;
    }
    have_boundary = date_shift(13, 1, child_dob) && date_shift(13, 0, teen_dob);
    e2e_init(&E);
    started_us = mono_us();
    e2e_start(&E, NULL);
    idl_reply *s0 = stats();
    CHECKM(getu(s0, "persons") == 0 && getu(s0, "suppressed") == 0 &&
               getu(s0, "children_purged") == 0 && getu(s0, "queries_logged") >= 0,
           "a new store: %s", s0 ? e2e_json(&s0->body) : "-");
    idl_reply_free(s0);
    RUN(upsert_counts);
    RUN(upsert_update);
    RUN(upsert_child_update);
    RUN(upsert_limits);
    RUN(stats_fields);
    RUN(upsert_survives_kill9);
    RUN(ingest_cli);
    int st = e2e_stop(&E);
    CHECKM(st == 0, "the daemon exits 0 on SIGTERM, got %d", st);
    e2e_cleanup(&E);
    shape_free(S);
    return test_summary();
}
