/* End to end over the real daemon: the privacy promises of API.md §4 (OptOut,
 * Disclosures), §5 (suppression is never observable) and DATA.md §2 (children)
 * and §4 (suppression).
 *
 * Every "absent" check is paired with a check, made earlier on the same
 * daemon, that the same query did find the person before the event that must
 * hide them; and indistinguishability is checked by comparing whole reply
 * bodies with those for identifiers that were never stored.
 */
#include "e2e.h"
#include "shape.h"
#include "status.h"
#include "testutil.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEARCH "idlookup.v1.Lookup/Search"
#define VALIDATE "idlookup.v1.Lookup/Validate"
#define VERIFY "idlookup.v1.Lookup/Verify"
#define BATCH "idlookup.v1.Lookup/Batch"
#define OPTOUT "idlookup.v1.Privacy/OptOut"
#define DISCLOSURES "idlookup.v1.Privacy/Disclosures"
#define UPSERT "idlookup.v1.Admin/Upsert"
#define STATS "idlookup.v1.Admin/Stats"

static e2e_env E;
static shape_schema *schema;

/* ---- small helpers ---- */

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d) abort();
    return d;
}

/* Calls method and checks the reply's code; returns the reply (caller frees;
 * NULL only on a transport failure, which is also reported). */
static idl_reply *call_at(int line, const char *key, const char *method, const char *json, int want)
{
    idl_reply *r = e2e_call(&E, key, method, json);
    expect_at(__FILE__, line, r != NULL, "%s %s: no reply", method, json);
    if (!r) return NULL;
    expect_at(__FILE__, line, r->code == want, "%s %s: code %d (%s), want %d", method, json,
              r->code, r->message ? r->message : "", want);
    if (r->code == 0 && schema) {
        char err[512] = "";
        expect_at(__FILE__, line, shape_check_response(schema, method, &r->body, err) == 0,
                  "%s %s: reply body does not fit the schema: %s", method, json, err);
    }
    return r;
}
#define CALL(key, method, json, want) call_at(__LINE__, (key), (method), (json), (want))

/* Search total (-1 when the call failed); checks persons is as long as total
 * when total <= 10. */
static long long search_total_at(int line, const char *key, const char *json)
{
    idl_reply *r = call_at(line, key, SEARCH, json, 0);
    long long t = -1;
    if (r && r->code == 0) {
        t = e2e_uint(e2e_get(&r->body, "total"));
        const msgpack_object *p = e2e_get(&r->body, "persons");
        expect_at(__FILE__, line,
                  p && p->type == MSGPACK_OBJECT_ARRAY && (t > 10 || p->via.array.size == t),
                  "Search %s: persons does not agree with total: %s", json, e2e_json(&r->body));
    }
    idl_reply_free(r);
    return t;
}
#define SEARCH_TOTAL(key, json) search_total_at(__LINE__, (key), (json))

/* The first person's id of a Search ("" when none). */
static void search_first_id(const char *key, const char *json, char out[32])
{
    out[0] = 0;
    idl_reply *r = e2e_call(&E, key, SEARCH, json);
    if (r && r->code == 0) {
        const msgpack_object *id = e2e_path(&r->body, "persons.0.id");
        if (id && id->type == MSGPACK_OBJECT_STR && id->via.str.size < 32) {
            memcpy(out, id->via.str.ptr, id->via.str.size);
            out[id->via.str.size] = 0;
        }
    }
    idl_reply_free(r);
}

/* The msgpack bytes of an object (repacked: integer widths become minimal,
 * which is all the normalization there is). */
static char *packed(const msgpack_object *o, size_t *n)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *o);
    *n = sb.size;
    return sb.data;
}

static bool same_obj(const msgpack_object *a, const msgpack_object *b)
{
    size_t na, nb;
    char *pa = packed(a, &na), *pb = packed(b, &nb);
    bool same = na == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return same;
}

/* s with every occurrence of from replaced by to (malloc'd). */
static char *replace_all(const char *s, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to), n = 0;
    for (const char *p = s; (p = strstr(p, from)); p += fl)
        n++;
    char *out = malloc(strlen(s) + n * (tl > fl ? tl - fl : 0) + 1), *o = out;
    if (!out) abort();
    for (const char *p = s, *q;; p = q + fl) {
        q = strstr(p, from);
        if (!q) {
            strcpy(o, p);
            break;
        }
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, to, tl);
        o += tl;
    }
    return out;
}

/* Calls method with json_hidden and json_never (same key) and checks that
 * both are OK and that the bodies are identical, after replacing in the
 * never-stored reply every occurrence of each subst[i][0] by subst[i][1]
 * (normalized values echoed by Validate). */
static void same_reply_at(int line, const char *key, const char *method, const char *json_hidden,
                          const char *json_never, const char *const (*subst)[2], size_t nsubst)
{
    idl_reply *h = call_at(line, key, method, json_hidden, 0);
    idl_reply *n = call_at(line, key, method, json_never, 0);
    if (h && n && h->code == 0 && n->code == 0) {
        if (nsubst == 0) {
            bool same = same_obj(&h->body, &n->body);
            char *hj = xstrdup(e2e_json(&h->body));
            expect_at(__FILE__, line, same,
                      "%s: a suppressed person is observable:\n  %s\n    -> %s\n  %s\n    -> %s",
                      method, json_hidden, hj, json_never, e2e_json(&n->body));
            free(hj);
        } else {
            char *hj = xstrdup(e2e_json(&h->body));
            char *want = xstrdup(e2e_json(&n->body));
            for (size_t i = 0; i < nsubst; i++) {
                char *w2 = replace_all(want, subst[i][0], subst[i][1]);
                free(want);
                want = w2;
            }
            expect_at(__FILE__, line, strcmp(hj, want) == 0,
                      "%s: a suppressed person is observable:\n  %s\n    -> %s\n  want (from %s)\n "
                      "   -> %s",
                      method, json_hidden, hj, json_never, want);
            free(hj);
            free(want);
        }
    }
    idl_reply_free(h);
    idl_reply_free(n);
}
#define SAME_REPLY(key, method, hidden, never)                                                     \
    same_reply_at(__LINE__, (key), (method), (hidden), (never), NULL, 0)
#define SAME_REPLY_SUBST(key, method, hidden, never, subst)                                        \
    same_reply_at(__LINE__, (key), (method), (hidden), (never), (subst),                           \
                  sizeof(subst) / sizeof((subst)[0]))

/* A str field at path, or "" (static buffer per call site is not needed:
 * callers compare at once). */
static bool str_at_is(const msgpack_object *root, const char *path, const char *want)
{
    return e2e_str_is(e2e_path(root, path), want);
}

static bool bool_at(const msgpack_object *root, const char *path, bool *out)
{
    const msgpack_object *o = e2e_path(root, path);
    if (!o || o->type != MSGPACK_OBJECT_BOOLEAN) return false;
    *out = o->via.boolean;
    return true;
}

/* Validate's known for one field ("email"/"phone"/"address"), -1 on failure. */
static int known_at(int line, const char *key, const char *field, const char *json)
{
    idl_reply *r = call_at(line, key, VALIDATE, json, 0);
    int k = -1;
    char path[64];
    snprintf(path, sizeof path, "%s.known", field);
    bool b;
    if (r && r->code == 0 && bool_at(&r->body, path, &b)) k = b;
    idl_reply_free(r);
    return k;
}
#define KNOWN(key, field, json) known_at(__LINE__, (key), (field), (json))

/* Verify's check for one group ("" on failure; static buffer). */
static const char *verify_check_at(int line, const char *key, const char *group, const char *json)
{
    static char out[32];
    out[0] = 0;
    idl_reply *r = call_at(line, key, VERIFY, json, 0);
    char path[64];
    snprintf(path, sizeof path, "checks.%s", group);
    const msgpack_object *o = r ? e2e_path(&r->body, path) : NULL;
    if (o && o->type == MSGPACK_OBJECT_STR && o->via.str.size < sizeof out) {
        memcpy(out, o->via.str.ptr, o->via.str.size);
        out[o->via.str.size] = 0;
    }
    idl_reply_free(r);
    return out;
}
#define VERIFY_CHECK(key, group, json) verify_check_at(__LINE__, (key), (group), (json))

/* Upserts records (a JSON array's inside) with the admin key and checks the
 * reply's counts. */
static void upsert_at(int line, const char *records, long long stored, long long updated,
                      long long child, long long supp)
{
    size_t len = strlen(records) + 32;
    char *json = malloc(len);
    snprintf(json, len, "{\"records\": [%s]}", records);
    idl_reply *r = call_at(line, E.admin_key, UPSERT, json, 0);
    if (r && r->code == 0) {
        long long s = e2e_uint(e2e_get(&r->body, "stored")),
                  u = e2e_uint(e2e_get(&r->body, "updated")),
                  c = e2e_uint(e2e_get(&r->body, "rejected_child")),
                  p = e2e_uint(e2e_get(&r->body, "suppressed"));
        expect_at(__FILE__, line, s == stored && u == updated && c == child && p == supp,
                  "Upsert: stored/updated/rejected_child/suppressed = %lld/%lld/%lld/%lld, want "
                  "%lld/%lld/%lld/%lld (%s)",
                  s, u, c, p, stored, updated, child, supp, e2e_json(&r->body));
        const msgpack_object *inv = e2e_get(&r->body, "invalid");
        expect_at(__FILE__, line,
                  inv && inv->type == MSGPACK_OBJECT_ARRAY && inv->via.array.size == 0,
                  "Upsert: records reported invalid: %s", e2e_json(inv));
    }
    idl_reply_free(r);
    free(json);
}
#define UPSERT_EXPECT(records, stored, updated, child, supp)                                       \
    upsert_at(__LINE__, (records), (stored), (updated), (child), (supp))

/* OptOut with the privacy key; returns suppressed or -1. */
static long long optout_at(int line, const char *json, int want_code)
{
    idl_reply *r = call_at(line, E.privacy_key, OPTOUT, json, want_code);
    long long n = r && r->code == 0 ? e2e_uint(e2e_get(&r->body, "suppressed")) : -1;
    idl_reply_free(r);
    return n;
}
#define OPTOUT_N(json) optout_at(__LINE__, (json), 0)

typedef struct {
    long long persons, suppressed, children_purged, queries_logged;
} stats;

static stats get_stats(void)
{
    stats s = {-1, -1, -1, -1};
    idl_reply *r = e2e_call(&E, E.admin_key, STATS, "{}");
    if (r && r->code == 0) {
        s.persons = e2e_uint(e2e_get(&r->body, "persons"));
        s.suppressed = e2e_uint(e2e_get(&r->body, "suppressed"));
        s.children_purged = e2e_uint(e2e_get(&r->body, "children_purged"));
        s.queries_logged = e2e_uint(e2e_get(&r->body, "queries_logged"));
    }
    idl_reply_free(r);
    return s;
}

/* ---- the people ---- */

/* Opal opts out; Otto shares her household phone (802) 555-0142. Her first
 * phone carries a line type on record (voip) that the number plan does not
 * give, so a Validate that leaked her record would say "voip". */
#define OPAL                                                                                       \
    "{\"source_id\": \"pv-opal\", \"first_name\": \"Opaline\", \"last_name\": \"Quillfeather\", "  \
    "\"dob\": \"1980-05-17\", \"emails\": [\"Opaline.Quill@Example.org\", "                        \
    "\"oq1980@example.net\"], "                                                                    \
    "\"phones\": [{\"number\": \"(802) 555-0142\", \"line_type\": \"voip\"}, \"802-555-0143\"], "  \
    "\"addresses\": [{\"street\": \"742 Evergreen Terrace\", \"unit\": \"Apt 4\", \"city\": "      \
    "\"Brattleboro\", \"state\": \"VT\", \"zip\": \"05301\"}], \"ips\": [\"198.51.100.23\"]}"
#define OTTO                                                                                       \
    "{\"source_id\": \"pv-otto\", \"first_name\": \"Ottokar\", \"last_name\": \"Quillfeather\", "  \
    "\"dob\": \"1978-11-02\", \"emails\": [\"ottokar.q@example.org\"], "                           \
    "\"phones\": [\"(802) 555-0142\", \"802-555-0144\"], \"addresses\": [{\"street\": \"12 Maple " \
    "Street\", \"city\": \"Brattleboro\", \"state\": \"VT\", \"zip\": \"05301\"}], "               \
    "\"ips\": [\"198.51.100.24\", \"198.51.100.23\"]}"

/* Pairs of (Opal's identifier query, the same kind of query for values never
 * stored). */
static const char *const search_pairs[][2] = {
    {"{\"email\": \"Opaline.Quill@Example.org\"}", "{\"email\": \"nobody.here@example.org\"}"},
    {"{\"email\": \"  OPALINE.QUILL@example.ORG \"}", "{\"email\": \"nobody.here@example.org\"}"},
    {"{\"email\": \"oq1980@example.net\"}", "{\"email\": \"zz1980@example.net\"}"},
    {"{\"phone\": \"(802) 555-0142\"}", "{\"phone\": \"(802) 555-0199\"}"},
    {"{\"phone\": \"+1 802 555 0143\"}", "{\"phone\": \"+1 802 555 0198\"}"},
    {"{\"ip\": \"198.51.100.23\"}", "{\"ip\": \"198.51.100.99\"}"},
    {"{\"street\": \"742 Evergreen Terrace\", \"zip\": \"05301\"}",
     "{\"street\": \"744 Evergreen Terrace\", \"zip\": \"05301\"}"},
    {"{\"street\": \"742 Evergreen Terrace\", \"unit\": \"Apt 4\", \"zip\": \"05301\"}",
     "{\"street\": \"744 Evergreen Terrace\", \"unit\": \"Apt 4\", \"zip\": \"05301\"}"},
    {"{\"street\": \"742 Evergreen Terrace\", \"city\": \"Brattleboro\", \"state\": \"VT\"}",
     "{\"street\": \"744 Evergreen Terrace\", \"city\": \"Brattleboro\", \"state\": \"VT\"}"},
    {"{\"first_name\": \"Opaline\", \"last_name\": \"Quillfeather\"}",
     "{\"first_name\": \"Neverina\", \"last_name\": \"Nobodyson\"}"},
    {"{\"first_name\": \"Opaline\", \"last_name\": \"Quillfeather\", \"state\": \"VT\"}",
     "{\"first_name\": \"Neverina\", \"last_name\": \"Nobodyson\", \"state\": \"VT\"}"},
    {"{\"email\": \"oq1980@example.net\", \"phone\": \"802-555-0143\", \"first_name\": "
     "\"Opaline\", "
     "\"last_name\": \"Quillfeather\"}",
     "{\"email\": \"zz1980@example.net\", \"phone\": \"802-555-0198\", \"first_name\": "
     "\"Neverina\", "
     "\"last_name\": \"Nobodyson\"}"},
};

/* Every kind of lookup finds Opal (and Otto) before the opt-out: the later
 * "absent" checks are only meaningful if these pass. */
static void opal_visible_before(void)
{
    const char *keys[2] = {E.lookup_key, E.all_key};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < sizeof search_pairs / sizeof search_pairs[0]; i++) {
            /* The household phone finds Otto too. */
            char id[32];
            search_first_id(keys[k], search_pairs[i][0], id);
            long long t = SEARCH_TOTAL(keys[k], search_pairs[i][0]);
            EXPECT(t >= 1 && (t == 2 || strcmp(id, e2e_pid("pv-opal")) == 0),
                   "before the opt-out, Search %s finds Opal (total %lld)", search_pairs[i][0], t);
        }
        EXPECT(KNOWN(keys[k], "email", "{\"email\": \"oq1980@example.net\"}") == 1, "email known");
        EXPECT(KNOWN(keys[k], "address",
                     "{\"address\": {\"street\": \"742 Evergreen Terrace\", \"unit\": \"Apt 4\", "
                     "\"zip\": \"05301\"}}") == 1,
               "address known");
        idl_reply *r = CALL(keys[k], VALIDATE, "{\"phone\": \"(802) 555-0142\"}", 0);
        bool kn = false;
        EXPECT(r && bool_at(&r->body, "phone.known", &kn) && kn, "phone known before");
        EXPECT(r && str_at_is(&r->body, "phone.line_type", "voip"),
               "before the opt-out the household phone's line type on record shows: %s",
               r ? e2e_json(&r->body) : "");
        idl_reply_free(r);
        EXPECT(strcmp(VERIFY_CHECK(keys[k], "email",
                                   "{\"first_name\": \"Opaline\", \"last_name\": \"Quillfeather\", "
                                   "\"email\": \"oq1980@example.net\"}"),
                      "match") == 0,
               "Verify email match before");
        /* Otto holds the household phone too. */
        r = CALL(keys[k], SEARCH, "{\"email\": \"ottokar.q@example.org\"}", 0);
        EXPECT(r && strstr(e2e_json(&r->body), "+18025550142") &&
                   strstr(e2e_json(&r->body), "198.51.100.23"),
               "Otto's phones and ips hold the shared ones: %s", r ? e2e_json(&r->body) : "");
        idl_reply_free(r);
    }
}

/* Opal is absent from every lookup, for every customer, exactly as if never
 * stored. */
static void opal_absent(const char *when)
{
    const char *keys[2] = {E.lookup_key, E.all_key};
    static const char *const email_norm[][2] = {
        {"nobody.here@example.org", "opaline.quill@example.org"}};
    static const char *const phone_norm[][2] = {{"+18025550199", "+18025550142"}};
    static const char *const phone2_norm[][2] = {{"+18025550198", "+18025550143"}};
    static const char *const addr_norm[][2] = {{"744 EVERGREEN TER", "742 EVERGREEN TER"}};
    static const char *const all_norm[][2] = {
        {"nobody.here@example.org", "opaline.quill@example.org"},
        {"+18025550199", "+18025550142"},
        {"744 EVERGREEN TER", "742 EVERGREEN TER"}};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < sizeof search_pairs / sizeof search_pairs[0]; i++) {
            long long t = SEARCH_TOTAL(keys[k], search_pairs[i][0]);
            EXPECT(t == 0, "%s: Search %s finds %lld persons, want 0", when, search_pairs[i][0], t);
            SAME_REPLY(keys[k], SEARCH, search_pairs[i][0], search_pairs[i][1]);
        }
        /* Validate: known false, and the rest of the body as for a never-stored value. */
        EXPECT(KNOWN(keys[k], "email", "{\"email\": \"Opaline.Quill@Example.org\"}") == 0, "%s",
               when);
        EXPECT(KNOWN(keys[k], "email", "{\"email\": \"oq1980@example.net\"}") == 0, "%s", when);
        EXPECT(KNOWN(keys[k], "phone", "{\"phone\": \"(802) 555-0142\"}") == 0, "%s", when);
        EXPECT(KNOWN(keys[k], "phone", "{\"phone\": \"802-555-0143\"}") == 0, "%s", when);
        EXPECT(KNOWN(keys[k], "address",
                     "{\"address\": {\"street\": \"742 Evergreen Terrace\", \"unit\": \"Apt 4\", "
                     "\"city\": \"Brattleboro\", \"state\": \"VT\", \"zip\": \"05301\"}}") == 0,
               "%s", when);
        EXPECT(
            KNOWN(
                keys[k], "address",
                "{\"address\": {\"street\": \"742 Evergreen Terrace\", \"city\": \"Brattleboro\", "
                "\"state\": \"VT\"}}") == 0,
            "%s", when);
        SAME_REPLY_SUBST(keys[k], VALIDATE, "{\"email\": \"Opaline.Quill@Example.org\"}",
                         "{\"email\": \"nobody.here@example.org\"}", email_norm);
        SAME_REPLY_SUBST(keys[k], VALIDATE, "{\"phone\": \"(802) 555-0142\"}",
                         "{\"phone\": \"(802) 555-0199\"}", phone_norm);
        SAME_REPLY_SUBST(keys[k], VALIDATE, "{\"phone\": \"802-555-0143\"}",
                         "{\"phone\": \"802-555-0198\"}", phone2_norm);
        SAME_REPLY_SUBST(
            keys[k], VALIDATE,
            "{\"address\": {\"street\": \"742 Evergreen Terrace\", \"unit\": \"Apt 4\", "
            "\"zip\": \"05301\"}}",
            "{\"address\": {\"street\": \"744 Evergreen Terrace\", \"unit\": \"Apt 4\", "
            "\"zip\": \"05301\"}}",
            addr_norm);
        SAME_REPLY_SUBST(
            keys[k], VALIDATE,
            "{\"email\": \"Opaline.Quill@Example.org\", \"phone\": \"(802) 555-0142\", "
            "\"address\": {\"street\": \"742 Evergreen Terrace\", \"city\": "
            "\"Brattleboro\", \"state\": \"VT\", \"zip\": \"05301\"}}",
            "{\"email\": \"nobody.here@example.org\", \"phone\": \"(802) 555-0199\", "
            "\"address\": {\"street\": \"744 Evergreen Terrace\", \"city\": "
            "\"Brattleboro\", \"state\": \"VT\", \"zip\": \"05301\"}}",
            all_norm);
        /* Verify: not_found for her email; every field as for an unknown person. */
        const char *c =
            VERIFY_CHECK(keys[k], "email",
                         "{\"first_name\": \"Opaline\", \"last_name\": \"Quillfeather\", "
                         "\"email\": \"oq1980@example.net\"}");
        EXPECT(strcmp(c, "not_found") == 0, "%s: Verify email check %s, want not_found", when, c);
        c = VERIFY_CHECK(keys[k], "email",
                         "{\"first_name\": \"Opaline\", \"last_name\": \"Quillfeather\", "
                         "\"email\": \"Opaline.Quill@Example.org\"}");
        EXPECT(strcmp(c, "not_found") == 0, "%s: Verify email check %s, want not_found", when, c);
        /* Names are never suppressed and Verify may pick another person by
         * the name (Otto shares her last name and initial), so the name is
         * kept and only her identifiers and dob are swapped for others. */
        SAME_REPLY(
            keys[k], VERIFY,
            "{\"first_name\": \"Opaline\", \"last_name\": \"Quillfeather\", \"email\": "
            "\"oq1980@example.net\", \"phone\": \"802-555-0143\", \"street\": \"742 Evergreen "
            "Terrace\", \"zip\": \"05301\", \"dob\": \"1980-05-17\"}",
            "{\"first_name\": \"Opaline\", \"last_name\": \"Quillfeather\", \"email\": "
            "\"zz1980@example.net\", \"phone\": \"802-555-0198\", \"street\": \"744 Evergreen "
            "Terrace\", \"zip\": \"05301\", \"dob\": \"1980-05-18\"}");
        SAME_REPLY(keys[k], VERIFY,
                   "{\"first_name\": \"Opaline\", \"last_name\": \"Quillfeather\", \"dob\": "
                   "\"1980-05-17\"}",
                   "{\"first_name\": \"Opaline\", \"last_name\": \"Quillfeather\", \"dob\": "
                   "\"1980-05-18\"}");
        /* Her identifiers under an unknown person's name: as for values
         * never stored. */
        SAME_REPLY(
            keys[k], VERIFY,
            "{\"first_name\": \"Neverina\", \"last_name\": \"Nobodyson\", \"email\": "
            "\"oq1980@example.net\", \"phone\": \"802-555-0143\", \"street\": \"742 Evergreen "
            "Terrace\", \"zip\": \"05301\", \"dob\": \"1980-05-17\"}",
            "{\"first_name\": \"Neverina\", \"last_name\": \"Nobodyson\", \"email\": "
            "\"zz1980@example.net\", \"phone\": \"802-555-0198\", \"street\": \"744 Evergreen "
            "Terrace\", \"zip\": \"05301\", \"dob\": \"1980-05-17\"}");
        SAME_REPLY(keys[k], VERIFY,
                   "{\"first_name\": \"Opaline\", \"last_name\": \"Quillfeather\", \"phone\": "
                   "\"(802) 555-0142\"}",
                   "{\"first_name\": \"Opaline\", \"last_name\": \"Quillfeather\", \"phone\": "
                   "\"(802) 555-0199\"}");
        /* Batch: each inner call as for a never-stored value. */
        SAME_REPLY_SUBST(
            keys[k], BATCH,
            "{\"calls\": [{\"method\": \"" SEARCH
            "\", \"body\": {\"email\": \"Opaline.Quill@Example.org\"}}, "
            "{\"method\": \"" SEARCH "\", \"body\": {\"phone\": \"(802) 555-0142\"}}, "
            "{\"method\": \"" SEARCH
            "\", \"body\": {\"first_name\": \"Opaline\", \"last_name\": \"Quillfeather\"}}, "
            "{\"method\": \"" VALIDATE "\", \"body\": {\"email\": \"Opaline.Quill@Example.org\"}}, "
            "{\"method\": \"" VERIFY "\", \"body\": {\"first_name\": \"Opaline\", \"last_name\": "
            "\"Quillfeather\", \"email\": \"Opaline.Quill@Example.org\"}}]}",
            "{\"calls\": [{\"method\": \"" SEARCH
            "\", \"body\": {\"email\": \"nobody.here@example.org\"}}, "
            "{\"method\": \"" SEARCH "\", \"body\": {\"phone\": \"(802) 555-0199\"}}, "
            "{\"method\": \"" SEARCH
            "\", \"body\": {\"first_name\": \"Neverina\", \"last_name\": \"Nobodyson\"}}, "
            "{\"method\": \"" VALIDATE "\", \"body\": {\"email\": \"nobody.here@example.org\"}}, "
            "{\"method\": \"" VERIFY "\", \"body\": {\"first_name\": \"Opaline\", \"last_name\": "
            "\"Quillfeather\", \"email\": \"nobody.here@example.org\"}}]}",
            email_norm);
    }
}

/* Otto is still found, without the household phone; the phone matches
 * nothing for him either (API.md: a suppressed identifier never matches). */
static void otto_household(const char *when)
{
    const char *keys[2] = {E.lookup_key, E.all_key};
    for (int k = 0; k < 2; k++) {
        idl_reply *r = CALL(keys[k], SEARCH, "{\"email\": \"ottokar.q@example.org\"}", 0);
        const msgpack_object *phones = r ? e2e_path(&r->body, "persons.0.phones") : NULL;
        EXPECT(r && e2e_uint(e2e_get(&r->body, "total")) == 1, "%s: Otto is found by his email",
               when);
        EXPECT(phones && phones->type == MSGPACK_OBJECT_ARRAY && phones->via.array.size == 1 &&
                   str_at_is(phones, "0.number", "+18025550144"),
               "%s: Otto's phones must leave out the household phone: %s", when, e2e_json(phones));
        const msgpack_object *ips = r ? e2e_path(&r->body, "persons.0.ips") : NULL;
        EXPECT(ips && ips->type == MSGPACK_OBJECT_ARRAY && ips->via.array.size == 1 &&
                   str_at_is(ips, "0", "198.51.100.24"),
               "%s: Otto's ips must leave out the shared one: %s", when, e2e_json(ips));
        idl_reply_free(r);
        EXPECT(SEARCH_TOTAL(keys[k], "{\"phone\": \"(802) 555-0142\"}") == 0,
               "%s: Search by the household phone returns nobody", when);
        EXPECT(SEARCH_TOTAL(keys[k], "{\"ip\": \"198.51.100.23\"}") == 0,
               "%s: Search by the shared ip returns nobody", when);
        SAME_REPLY(keys[k], SEARCH,
                   "{\"email\": \"ottokar.q@example.org\", \"ip\": \"198.51.100.23\"}",
                   "{\"email\": \"ottokar.q@example.org\", \"ip\": \"198.51.100.99\"}");
        /* Giving the hidden phone next to Otto's email is as if it were never stored. */
        SAME_REPLY(keys[k], SEARCH,
                   "{\"email\": \"ottokar.q@example.org\", \"phone\": \"(802) 555-0142\"}",
                   "{\"email\": \"ottokar.q@example.org\", \"phone\": \"(802) 555-0199\"}");
        SAME_REPLY(keys[k], SEARCH,
                   "{\"first_name\": \"Ottokar\", \"last_name\": \"Quillfeather\", \"phone\": "
                   "\"(802) 555-0142\"}",
                   "{\"first_name\": \"Ottokar\", \"last_name\": \"Quillfeather\", \"phone\": "
                   "\"(802) 555-0199\"}");
        SAME_REPLY(keys[k], VERIFY,
                   "{\"first_name\": \"Ottokar\", \"last_name\": \"Quillfeather\", \"email\": "
                   "\"ottokar.q@example.org\", \"phone\": \"(802) 555-0142\"}",
                   "{\"first_name\": \"Ottokar\", \"last_name\": \"Quillfeather\", \"email\": "
                   "\"ottokar.q@example.org\", \"phone\": \"(802) 555-0199\"}");
        /* Otto's own phone and address are untouched. */
        EXPECT(SEARCH_TOTAL(keys[k], "{\"phone\": \"802-555-0144\"}") == 1,
               "%s: Otto by his own phone", when);
        EXPECT(KNOWN(keys[k], "phone", "{\"phone\": \"802-555-0144\"}") == 1, "%s", when);
    }
}

static void optout_person_and_household(void)
{
    UPSERT_EXPECT(OPAL "," OTTO, 2, 0, 0, 0);
    opal_visible_before();
    stats s0 = get_stats();
    char opal_id[19];
    snprintf(opal_id, sizeof opal_id, "%s", e2e_pid("pv-opal"));
    char json[128];
    snprintf(json, sizeof json, "{\"person_id\": \"%s\"}", opal_id);
    /* The privacy scope is needed: lookup and admin keys are refused. */
    idl_reply *r = CALL(E.lookup_key, OPTOUT, json, IDL_PERMISSION_DENIED);
    idl_reply_free(r);
    r = CALL(E.admin_key, OPTOUT, json, IDL_PERMISSION_DENIED);
    idl_reply_free(r);
    EXPECT(SEARCH_TOTAL(E.lookup_key, "{\"email\": \"oq1980@example.net\"}") == 1,
           "a refused OptOut hides nobody");
    CHECK_INT(OPTOUT_N(json), 1);
    stats s1 = get_stats();
    CHECK_INT(s1.persons, s0.persons - 1);
    CHECK_INT(s1.suppressed, s0.suppressed + 1);
    opal_absent("after OptOut by person_id");
    otto_household("after Opal's opt-out");
    /* Twice: OK with 0, and nothing changes. */
    CHECK_INT(OPTOUT_N(json), 0);
    CHECK_INT(OPTOUT_N("{\"email\": \"oq1980@example.net\"}"), 0);
    stats s2 = get_stats();
    CHECK_INT(s2.persons, s1.persons);
    CHECK_INT(s2.suppressed, s1.suppressed);
}

/* OptOut by each kind of identifier set. */
static void optout_by_identifiers(void)
{
    UPSERT_EXPECT(
        "{\"source_id\": \"pv-ema\", \"first_name\": \"Emmaline\", \"last_name\": \"Ledbetter\", "
        "\"emails\": [\"ema.ledbetter@example.org\"], \"phones\": [\"802-555-0151\"]},"
        "{\"source_id\": \"pv-phil\", \"first_name\": \"Philo\", \"last_name\": \"Tarrant\", "
        "\"emails\": [\"philo.t@example.org\"], \"phones\": [\"802-555-0152\"]},"
        "{\"source_id\": \"pv-stre\", \"first_name\": \"Sterling\", \"last_name\": \"Ashgrove\", "
        "\"emails\": [\"sterling.a@example.org\"], \"addresses\": [{\"street\": \"9 Larkspur "
        "Lane\", "
        "\"city\": \"Putney\", \"state\": \"VT\", \"zip\": \"05346\"}]},"
        "{\"source_id\": \"pv-ipo\", \"first_name\": \"Ipolita\", \"last_name\": \"Marchbank\", "
        "\"emails\": [\"ipolita.m@example.org\"], \"ips\": [\"203.0.113.45\"]},"
        "{\"source_id\": \"pv-mar1\", \"first_name\": \"Marisol\", \"last_name\": \"Brightwater\", "
        "\"emails\": [\"marisol.vt@example.org\"], \"addresses\": [{\"street\": \"5 Elm St\", "
        "\"city\": \"Putney\", \"state\": \"VT\", \"zip\": \"05346\"}]},"
        "{\"source_id\": \"pv-mar2\", \"first_name\": \"Marisol\", \"last_name\": \"Brightwater\", "
        "\"emails\": [\"marisol.nh@example.org\"], \"addresses\": [{\"street\": \"5 Elm St\", "
        "\"city\": \"Keene\", \"state\": \"NH\", \"zip\": \"03431\"}]}",
        6, 0, 0, 0);
    const char *probes[] = {
        "{\"phone\": \"802-555-0151\"}",           "{\"email\": \"philo.t@example.org\"}",
        "{\"email\": \"sterling.a@example.org\"}", "{\"email\": \"ipolita.m@example.org\"}",
        "{\"email\": \"marisol.vt@example.org\"}", "{\"email\": \"marisol.nh@example.org\"}"};
    for (size_t i = 0; i < 6; i++)
        EXPECT(SEARCH_TOTAL(E.lookup_key, probes[i]) == 1, "before: %s", probes[i]);
    EXPECT(SEARCH_TOTAL(E.lookup_key,
                        "{\"first_name\": \"Marisol\", \"last_name\": \"Brightwater\"}") == 2,
           "both Marisols before");
    stats s0 = get_stats();

    CHECK_INT(OPTOUT_N("{\"email\": \" Ema.Ledbetter@EXAMPLE.org\"}"), 1);
    CHECK_INT(OPTOUT_N("{\"phone\": \"(802) 555-0152\"}"), 1);
    CHECK_INT(OPTOUT_N("{\"street\": \"9 Larkspur Lane\", \"zip\": \"05346\"}"), 1);
    CHECK_INT(OPTOUT_N("{\"ip\": \"203.0.113.45\"}"), 1);
    CHECK_INT(
        OPTOUT_N(
            "{\"first_name\": \"Marisol\", \"last_name\": \"Brightwater\", \"state\": \"VT\"}"),
        1);
    /* Each is now absent by another identifier they held, for both customers. */
    const char *keys[2] = {E.lookup_key, E.all_key};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < 5; i++)
            EXPECT(SEARCH_TOTAL(keys[k], probes[i]) == 0, "after the opt-out: %s", probes[i]);
        EXPECT(SEARCH_TOTAL(keys[k], "{\"email\": \"ema.ledbetter@example.org\"}") == 0,
               "Ema by email");
        EXPECT(SEARCH_TOTAL(keys[k], "{\"first_name\": \"Philo\", \"last_name\": \"Tarrant\"}") ==
                   0,
               "Philo by name");
        EXPECT(SEARCH_TOTAL(
                   keys[k],
                   "{\"street\": \"9 Larkspur Lane\", \"city\": \"Putney\", \"state\": \"VT\"}") ==
                   0,
               "Sterling by street+city+state");
        EXPECT(KNOWN(keys[k], "phone", "{\"phone\": \"802-555-0151\"}") == 0,
               "Ema's phone not known");
        EXPECT(strcmp(VERIFY_CHECK(keys[k], "email",
                                   "{\"first_name\": \"Ipolita\", \"last_name\": \"Marchbank\", "
                                   "\"email\": \"ipolita.m@example.org\"}"),
                      "not_found") == 0,
               "Verify Ipolita's email not_found");
        /* The Marisol in NH did not opt out. */
        EXPECT(SEARCH_TOTAL(keys[k], probes[5]) == 1, "the other Marisol stays");
        char id[32];
        search_first_id(keys[k], "{\"first_name\": \"Marisol\", \"last_name\": \"Brightwater\"}",
                        id);
        CHECK_STR(id, e2e_pid("pv-mar2"));
        EXPECT(SEARCH_TOTAL(keys[k],
                            "{\"first_name\": \"Marisol\", \"last_name\": \"Brightwater\"}") == 1,
               "one Marisol left");
    }
    stats s1 = get_stats();
    CHECK_INT(s1.persons, s0.persons - 5);
    CHECK_INT(s1.suppressed, s0.suppressed + 5);

    /* Unknown and malformed person ids. */
    char json[128];
    snprintf(json, sizeof json, "{\"person_id\": \"%s\"}", e2e_pid("pv-nobody-ever"));
    CHECK_INT(optout_at(__LINE__, json, IDL_NOT_FOUND), -1);
    CHECK_INT(optout_at(__LINE__, "{\"person_id\": \"p_xyz\"}", IDL_INVALID_ARGUMENT), -1);
    CHECK_INT(optout_at(__LINE__, "{\"person_id\": \"q_0123456789abcdef\"}", IDL_INVALID_ARGUMENT),
              -1);
    /* Twice by identifiers: OK with 0. */
    CHECK_INT(OPTOUT_N("{\"phone\": \"802-555-0152\"}"), 0);

    /* Identifiers nobody holds yet: OK with 0, and a record that arrives later
     * with them stays hidden (the Upsert reply counts it as suppressed). */
    CHECK_INT(OPTOUT_N("{\"email\": \"future.person@example.org\"}"), 0);
    CHECK_INT(OPTOUT_N("{\"phone\": \"802-555-0159\"}"), 0);
    stats s2 = get_stats();
    CHECK_INT(s2.persons, s1.persons);
    CHECK_INT(s2.suppressed, s1.suppressed);
    UPSERT_EXPECT(
        "{\"source_id\": \"pv-future\", \"first_name\": \"Futura\", \"last_name\": \"Penhallow\", "
        "\"emails\": [\"future.person@example.org\", \"futura.p@example.org\"], "
        "\"ips\": [\"203.0.113.46\"]},"
        "{\"source_id\": \"pv-future2\", \"first_name\": \"Fortunato\", \"last_name\": "
        "\"Penhallow\", "
        "\"emails\": [\"fortunato.p@example.org\"], \"phones\": [\"+1 (802) 555-0159\"]}",
        2, 0, 0, 2);
    for (int k = 0; k < 2; k++) {
        EXPECT(SEARCH_TOTAL(keys[k], "{\"email\": \"futura.p@example.org\"}") == 0,
               "later record hidden");
        EXPECT(SEARCH_TOTAL(keys[k], "{\"ip\": \"203.0.113.46\"}") == 0, "later record hidden");
        EXPECT(SEARCH_TOTAL(keys[k],
                            "{\"first_name\": \"Futura\", \"last_name\": \"Penhallow\"}") == 0,
               "later record hidden by name");
        EXPECT(SEARCH_TOTAL(keys[k], "{\"email\": \"fortunato.p@example.org\"}") == 0,
               "later record hidden");
        EXPECT(KNOWN(keys[k], "email", "{\"email\": \"future.person@example.org\"}") == 0,
               "not known");
    }
    stats s3 = get_stats();
    CHECK_INT(s3.persons, s2.persons);
    CHECK_INT(s3.suppressed, s2.suppressed + 2);
}

/* Restarts (clean and kill -9) and re-ingest: the opt-out stays. */
static void optout_survives(void)
{
    /* A clean restart. */
    CHECK_INT(e2e_stop(&E), 0);
    e2e_start(&E, NULL);
    opal_absent("after a clean restart");
    otto_household("after a clean restart");
    EXPECT(SEARCH_TOTAL(E.lookup_key, "{\"email\": \"ema.ledbetter@example.org\"}") == 0,
           "Ema after restart");
    EXPECT(SEARCH_TOTAL(E.lookup_key, "{\"email\": \"futura.p@example.org\"}") == 0,
           "Futura after restart");

    /* kill -9 right after the OptOut reply. */
    UPSERT_EXPECT(
        "{\"source_id\": \"pv-kip\", \"first_name\": \"Kipling\", \"last_name\": \"Ormsby\", "
        "\"emails\": [\"kip.ormsby@example.org\"], \"phones\": [\"802-555-0153\"]}",
        1, 0, 0, 0);
    EXPECT(SEARCH_TOTAL(E.lookup_key, "{\"phone\": \"802-555-0153\"}") == 1, "Kip before");
    CHECK_INT(OPTOUT_N("{\"email\": \"kip.ormsby@example.org\"}"), 1);
    e2e_kill9(&E);
    e2e_start(&E, NULL);
    const char *keys[2] = {E.lookup_key, E.all_key};
    for (int k = 0; k < 2; k++) {
        EXPECT(SEARCH_TOTAL(keys[k], "{\"phone\": \"802-555-0153\"}") == 0, "Kip after kill -9");
        EXPECT(SEARCH_TOTAL(keys[k], "{\"email\": \"kip.ormsby@example.org\"}") == 0,
               "Kip after kill -9");
        EXPECT(SEARCH_TOTAL(keys[k], "{\"first_name\": \"Kipling\", \"last_name\": \"Ormsby\"}") ==
                   0,
               "Kip after kill -9");
    }
    CHECK_INT(OPTOUT_N("{\"email\": \"kip.ormsby@example.org\"}"), 0);

    /* Re-ingest of the same record over the wire: updated and suppressed. */
    stats s0 = get_stats();
    UPSERT_EXPECT(OPAL, 0, 1, 0, 1);
    /* A new record carrying her email: stored as suppressed. */
    UPSERT_EXPECT("{\"source_id\": \"pv-opal2\", \"first_name\": \"Opaline\", \"last_name\": "
                  "\"Quillfeather\", "
                  "\"emails\": [\"OPALINE.QUILL@example.org\", \"opal.again@example.com\"], "
                  "\"phones\": [\"802-555-0154\"]}",
                  1, 0, 0, 1);
    stats s1 = get_stats();
    CHECK_INT(s1.persons, s0.persons);
    CHECK_INT(s1.suppressed, s0.suppressed + 1);
    opal_absent("after re-sending her records");
    for (int k = 0; k < 2; k++) {
        EXPECT(SEARCH_TOTAL(keys[k], "{\"email\": \"opal.again@example.com\"}") == 0,
               "new record hidden");
        EXPECT(SEARCH_TOTAL(keys[k], "{\"phone\": \"802-555-0154\"}") == 0, "new record hidden");
    }

    /* Bulk ingest into the stopped store. */
    CHECK_INT(e2e_stop(&E), 0);
    const char *file =
        e2e_write_file(&E, "reingest.ndjson",
                       OPAL "\n"
                            "{\"source_id\": \"pv-opal3\", \"first_name\": \"Opal\", "
                            "\"last_name\": \"Quillfeather\", \"phones\": [\"+18025550143\"], "
                            "\"emails\": [\"opal.third@example.com\"]}\n");
    char path[400];
    snprintf(path, sizeof path, "%s", file);
    const char *args[] = {"ingest", "--data", E.data, path, NULL};
    char *out = NULL, *err = NULL;
    int st = e2e_cli(args, NULL, &out, &err);
    CHECK_INT(st, 0);
    json_error_t je;
    json_t *sum = json_loads(out ? out : "", 0, &je);
    EXPECT(sum != NULL, "ingest summary is not one JSON object: %s / %s", out, err);
    if (sum) {
        CHECK_INT(json_integer_value(json_object_get(sum, "read")), 2);
        CHECK_INT(json_integer_value(json_object_get(sum, "updated")), 1);
        CHECK_INT(json_integer_value(json_object_get(sum, "stored")), 1);
        CHECK_INT(json_integer_value(json_object_get(sum, "suppressed")), 2);
        json_decref(sum);
    }
    free(out);
    free(err);
    e2e_start(&E, NULL);
    opal_absent("after a bulk ingest of her record");
    for (int k = 0; k < 2; k++) {
        EXPECT(SEARCH_TOTAL(keys[k], "{\"email\": \"opal.third@example.com\"}") == 0,
               "ingested record hidden");
        EXPECT(SEARCH_TOTAL(keys[k],
                            "{\"first_name\": \"Opal\", \"last_name\": \"Quillfeather\"}") == 0,
               "ingested record hidden by name");
    }
    stats s2 = get_stats();
    CHECK_INT(s2.persons, s1.persons);
    CHECK_INT(s2.suppressed, s1.suppressed + 1);
}

/* ---- children ---- */

static void date_shift(int years_back, int extra_days, char out[16])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    tm.tm_year -= years_back;
    if (tm.tm_mon == 1 && tm.tm_mday == 29)
        tm.tm_mday = 28; /* today is Feb 29: that year has none */
    tm.tm_mday += extra_days;
    tm.tm_hour = 12;
    time_t t = timegm(&tm); /* normalizes the day overflow */
    gmtime_r(&t, &tm);
    strftime(out, 16, "%Y-%m-%d", &tm);
}

/* A person that must be absent from every lookup method. */
static void child_absent(int line, const char *first, const char *last, const char *email,
                         const char *phone)
{
    const char *keys[2] = {E.lookup_key, E.all_key};
    char q[512];
    for (int k = 0; k < 2; k++) {
        snprintf(q, sizeof q, "{\"email\": \"%s\"}", email);
        expect_at(__FILE__, line, search_total_at(line, keys[k], q) == 0, "child found by %s", q);
        expect_at(__FILE__, line, known_at(line, keys[k], "email", q) == 0, "child's email known");
        snprintf(q, sizeof q, "{\"first_name\": \"%s\", \"last_name\": \"%s\"}", first, last);
        expect_at(__FILE__, line, search_total_at(line, keys[k], q) == 0, "child found by %s", q);
        if (phone) {
            snprintf(q, sizeof q, "{\"phone\": \"%s\"}", phone);
            expect_at(__FILE__, line, search_total_at(line, keys[k], q) == 0, "child found by %s",
                      q);
            expect_at(__FILE__, line, known_at(line, keys[k], "phone", q) == 0,
                      "child's phone known");
        }
        snprintf(q, sizeof q, "{\"first_name\": \"%s\", \"last_name\": \"%s\", \"email\": \"%s\"}",
                 first, last, email);
        const char *c = verify_check_at(line, keys[k], "email", q);
        expect_at(__FILE__, line, strcmp(c, "not_found") == 0, "Verify child email: %s", c);
        c = verify_check_at(line, keys[k], "name", q);
        expect_at(__FILE__, line, strcmp(c, "not_found") == 0, "Verify child name: %s", c);
    }
}

static void children(void)
{
    char dob8[16], dob13[16], dob13short[16], rec[1024];
    date_shift(8, 0, dob8);
    date_shift(13, 0, dob13);
    date_shift(13, 1, dob13short);
    stats s0 = get_stats();

    snprintf(
        rec, sizeof rec,
        "{\"source_id\": \"pv-kid1\", \"first_name\": \"Kidwell\", \"last_name\": \"Sparrowhawk\", "
        "\"dob\": \"%s\", \"emails\": [\"kid1.sparrow@example.org\"], \"phones\": "
        "[\"802-555-0161\"], "
        "\"ips\": [\"203.0.113.61\"], \"addresses\": [{\"street\": \"33 Birch Road\", \"city\": "
        "\"Putney\", \"state\": \"VT\", \"zip\": \"05346\"}]}",
        dob8);
    UPSERT_EXPECT(rec, 0, 0, 1, 0);
    child_absent(__LINE__, "Kidwell", "Sparrowhawk", "kid1.sparrow@example.org", "802-555-0161");
    const char *keys[2] = {E.lookup_key, E.all_key};
    for (int k = 0; k < 2; k++) {
        EXPECT(SEARCH_TOTAL(keys[k], "{\"ip\": \"203.0.113.61\"}") == 0, "child by ip");
        EXPECT(SEARCH_TOTAL(keys[k], "{\"street\": \"33 Birch Road\", \"zip\": \"05346\"}") == 0,
               "child by address");
        EXPECT(KNOWN(keys[k], "address",
                     "{\"address\": {\"street\": \"33 Birch Road\", \"zip\": \"05346\"}}") == 0,
               "child's address known");
    }

    UPSERT_EXPECT(
        "{\"source_id\": \"pv-kid2\", \"first_name\": \"Minerva\", \"last_name\": \"Sparrowhawk\", "
        "\"dob\": \"1990-01-01\", \"minor\": true, \"emails\": [\"minerva.s@example.org\"], "
        "\"phones\": [\"802-555-0162\"]}",
        0, 0, 1, 0);
    child_absent(__LINE__, "Minerva", "Sparrowhawk", "minerva.s@example.org", "802-555-0162");

    /* On the 13th birthday they are 13; one day short they are 12. */
    snprintf(rec, sizeof rec,
             "{\"source_id\": \"pv-teen13\", \"first_name\": \"Thirza\", \"last_name\": "
             "\"Birthwhistle\", "
             "\"dob\": \"%s\", \"emails\": [\"thirza.b@example.org\"]}",
             dob13);
    UPSERT_EXPECT(rec, 1, 0, 0, 0);
    idl_reply *r = CALL(E.lookup_key, SEARCH, "{\"email\": \"thirza.b@example.org\"}", 0);
    EXPECT(r && e2e_uint(e2e_path(&r->body, "persons.0.age")) == 13, "13 today (dob %s): %s", dob13,
           r ? e2e_json(&r->body) : "");
    idl_reply_free(r);
    EXPECT(KNOWN(E.all_key, "email", "{\"email\": \"thirza.b@example.org\"}") == 1,
           "13-year-old known");
    snprintf(
        rec, sizeof rec,
        "{\"source_id\": \"pv-teen12\", \"first_name\": \"Twelvia\", \"last_name\": "
        "\"Almostwood\", "
        "\"dob\": \"%s\", \"emails\": [\"twelvia.a@example.org\"], \"phones\": [\"802-555-0163\"]}",
        dob13short);
    UPSERT_EXPECT(rec, 0, 0, 1, 0);
    child_absent(__LINE__, "Twelvia", "Almostwood", "twelvia.a@example.org", "802-555-0163");

    /* A stored adult whose dob is updated to make them 8: deleted. */
    UPSERT_EXPECT(
        "{\"source_id\": \"pv-grow\", \"first_name\": \"Benedikt\", \"last_name\": \"Youngblood\", "
        "\"dob\": \"1985-02-02\", \"emails\": [\"benedikt.y@example.org\"], \"phones\": "
        "[\"802-555-0164\"]}",
        1, 0, 0, 0);
    EXPECT(SEARCH_TOTAL(E.lookup_key, "{\"email\": \"benedikt.y@example.org\"}") == 1,
           "adult stored");
    EXPECT(KNOWN(E.lookup_key, "phone", "{\"phone\": \"802-555-0164\"}") == 1,
           "adult's phone known");
    stats s1 = get_stats();
    CHECK_INT(s1.persons, s0.persons + 2); /* Thirza and Benedikt */
    snprintf(
        rec, sizeof rec,
        "{\"source_id\": \"pv-grow\", \"first_name\": \"Benedikt\", \"last_name\": \"Youngblood\", "
        "\"dob\": \"%s\", \"emails\": [\"benedikt.y@example.org\"], \"phones\": "
        "[\"802-555-0164\"]}",
        dob8);
    UPSERT_EXPECT(rec, 0, 0, 1, 0);
    child_absent(__LINE__, "Benedikt", "Youngblood", "benedikt.y@example.org", "802-555-0164");
    stats s2 = get_stats();
    CHECK_INT(s2.children_purged, s1.children_purged + 1);
    CHECK_INT(s2.persons, s1.persons - 1);
    CHECK_INT(s2.suppressed, s1.suppressed);
    /* Rejected children never counted as purged. */
    CHECK_INT(s1.children_purged, s0.children_purged);
    /* Purged for good: still gone after a restart. */
    CHECK_INT(e2e_stop(&E), 0);
    e2e_start(&E, NULL);
    EXPECT(SEARCH_TOTAL(E.lookup_key, "{\"email\": \"benedikt.y@example.org\"}") == 0,
           "purged after restart");
    EXPECT(SEARCH_TOTAL(E.lookup_key,
                        "{\"first_name\": \"Benedikt\", \"last_name\": \"Youngblood\"}") == 0,
           "purged after restart");
    stats s3 = get_stats();
    CHECK_INT(s3.children_purged, s2.children_purged);
    CHECK_INT(s3.persons, s2.persons);
}

/* ---- disclosures ---- */

/* Parses "YYYY-MM-DDTHH:MM:SSZ" (exactly) into seconds; -1 when malformed. */
static long long rfc3339_utc(const msgpack_object *o)
{
    if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size != 20) return -1;
    char s[21];
    memcpy(s, o->via.str.ptr, 20);
    s[20] = 0;
    static const char pat[] = "dddd-dd-ddTdd:dd:ddZ";
    for (int i = 0; i < 20; i++)
        if (pat[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != pat[i]) return -1;
    struct tm tm = {0};
    if (!strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm)) return -1;
    return (long long)timegm(&tm);
}

/* The recipient entry for customer in a Disclosures body (NULL when absent). */
static const msgpack_object *recipient(const msgpack_object *body, const char *customer)
{
    const msgpack_object *rs = e2e_get(body, "recipients");
    if (!rs || rs->type != MSGPACK_OBJECT_ARRAY) return NULL;
    for (uint32_t i = 0; i < rs->via.array.size; i++)
        if (e2e_str_is(e2e_get(&rs->via.array.ptr[i], "customer"), customer))
            return &rs->via.array.ptr[i];
    return NULL;
}

static void expect_recipient(int line, const msgpack_object *body, const char *customer,
                             long long count, long long t0, long long t1)
{
    const msgpack_object *rc = recipient(body, customer);
    expect_at(__FILE__, line, rc != NULL, "Disclosures lists no %s: %s", customer, e2e_json(body));
    if (!rc) return;
    long long n = e2e_uint(e2e_get(rc, "disclosures"));
    expect_at(__FILE__, line, n == count, "%s: %lld disclosures, want %lld", customer, n, count);
    long long first = rfc3339_utc(e2e_get(rc, "first")), last = rfc3339_utc(e2e_get(rc, "last"));
    expect_at(__FILE__, line, first >= 0 && last >= 0, "%s: first/last are not RFC 3339 UTC: %s",
              customer, e2e_json(rc));
    expect_at(__FILE__, line, first >= t0 && first <= last && last <= t1,
              "%s: first %lld / last %lld outside the test's window [%lld, %lld]", customer, first,
              last, t0, t1);
    if (count == 1)
        expect_at(__FILE__, line, first == last, "%s: one disclosure, first != last", customer);
}

static void disclosures(void)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    int year = tm.tm_year + 1900;
    UPSERT_EXPECT(
        "{\"source_id\": \"pv-dina\", \"first_name\": \"Dinah\", \"last_name\": \"Rosecrans\", "
        "\"emails\": [\"dinah.r@example.org\"], \"phones\": [\"802-555-0171\"]},"
        "{\"source_id\": \"pv-dora\", \"first_name\": \"Dorota\", \"last_name\": \"Fenwick\", "
        "\"emails\": [\"dorota.f@example.org\"]},"
        "{\"source_id\": \"pv-dex\", \"first_name\": \"Dexter\", \"last_name\": \"Hollingworth\", "
        "\"emails\": [\"dexter.h@example.org\"]},"
        "{\"source_id\": \"pv-dsup\", \"first_name\": \"Desmond\", \"last_name\": \"Suppleton\", "
        "\"emails\": [\"desmond.s@example.org\"]}",
        4, 0, 0, 0);
    long long t0 = (long long)time(NULL);
    /* lookup-co: 2 Searches by email, 1 by name, 1 inside Batch = 4. */
    EXPECT(SEARCH_TOTAL(E.lookup_key, "{\"email\": \"dinah.r@example.org\"}") == 1, "Dinah");
    EXPECT(SEARCH_TOTAL(E.lookup_key, "{\"email\": \"DINAH.R@example.org\"}") == 1, "Dinah");
    EXPECT(SEARCH_TOTAL(E.lookup_key,
                        "{\"first_name\": \"Dinah\", \"last_name\": \"Rosecrans\"}") == 1,
           "Dinah");
    idl_reply *r =
        CALL(E.lookup_key, BATCH,
             "{\"calls\": [{\"method\": \"" SEARCH "\", \"body\": {\"phone\": \"802-555-0171\"}}, "
             "{\"method\": \"" VALIDATE "\", \"body\": {\"email\": \"dinah.r@example.org\"}}, "
             "{\"method\": \"" VERIFY "\", \"body\": {\"first_name\": \"Dinah\", \"last_name\": "
             "\"Rosecrans\", \"email\": \"dinah.r@example.org\"}}]}",
             0);
    EXPECT(r && e2e_uint(e2e_path(&r->body, "results.0.body.total")) == 1,
           "Batch Search finds Dinah");
    idl_reply_free(r);
    /* Calls that do not count: Validate, Verify, and Searches not returning her. */
    EXPECT(KNOWN(E.lookup_key, "email", "{\"email\": \"dinah.r@example.org\"}") == 1, "Validate");
    EXPECT(
        strcmp(VERIFY_CHECK(E.all_key, "email",
                            "{\"first_name\": \"Dinah\", \"last_name\": \"Rosecrans\", \"email\": "
                            "\"dinah.r@example.org\"}"),
               "match") == 0,
        "Verify");
    EXPECT(SEARCH_TOTAL(E.lookup_key, "{\"email\": \"dorota.f@example.org\"}") == 1, "Dorota");
    EXPECT(SEARCH_TOTAL(E.all_key, "{\"email\": \"nobody.at.all@example.org\"}") == 0, "nobody");
    /* all-co: 1 Search. */
    EXPECT(SEARCH_TOTAL(E.all_key, "{\"phone\": \"(802) 555-0171\"}") == 1, "Dinah");
    /* Other persons. */
    EXPECT(SEARCH_TOTAL(E.lookup_key, "{\"email\": \"dexter.h@example.org\"}") == 1, "Dexter");
    EXPECT(SEARCH_TOTAL(E.lookup_key, "{\"email\": \"desmond.s@example.org\"}") == 1, "Desmond");
    EXPECT(SEARCH_TOTAL(E.all_key, "{\"email\": \"desmond.s@example.org\"}") == 1, "Desmond");
    EXPECT(SEARCH_TOTAL(E.all_key, "{\"email\": \"desmond.s@example.org\"}") == 1, "Desmond");
    /* time() reads the kernel's coarse clock, which may be a tick behind
     * the daemon's CLOCK_REALTIME across a second's boundary. */
    long long t1 = (long long)time(NULL) + 1;

    char json[256];
    char dina[19];
    snprintf(dina, sizeof dina, "%s", e2e_pid("pv-dina"));
    snprintf(json, sizeof json, "{\"person_id\": \"%s\", \"year\": %d}", dina, year);
    r = CALL(E.lookup_key, DISCLOSURES, json, IDL_PERMISSION_DENIED);
    idl_reply_free(r);
    r = CALL(E.privacy_key, DISCLOSURES, json, 0);
    if (r && r->code == 0) {
        CHECK_INT(e2e_uint(e2e_get(&r->body, "year")), year);
        const msgpack_object *rs = e2e_get(&r->body, "recipients");
        EXPECT(rs && rs->type == MSGPACK_OBJECT_ARRAY && rs->via.array.size == 2,
               "Dinah went to exactly two customers: %s", e2e_json(&r->body));
        expect_recipient(__LINE__, &r->body, "lookup-co", 4, t0, t1);
        expect_recipient(__LINE__, &r->body, "all-co", 1, t0, t1);
    }
    idl_reply_free(r);
    /* Once per person per year, whoever asks. */
    r = CALL(E.privacy_key, DISCLOSURES, json, IDL_RESOURCE_EXHAUSTED);
    idl_reply_free(r);
    r = CALL(E.all_key, DISCLOSURES, json, IDL_RESOURCE_EXHAUSTED);
    idl_reply_free(r);
    snprintf(json, sizeof json, "{\"email\": \"dinah.r@example.org\", \"year\": %d}", year);
    r = CALL(E.privacy_key, DISCLOSURES, json, IDL_RESOURCE_EXHAUSTED);
    idl_reply_free(r);

    /* By identifiers: like person_id, and it uses up the same yearly request. */
    snprintf(json, sizeof json, "{\"email\": \" Dorota.F@Example.org\", \"year\": %d}", year);
    r = CALL(E.privacy_key, DISCLOSURES, json, 0);
    if (r && r->code == 0) {
        const msgpack_object *rs = e2e_get(&r->body, "recipients");
        EXPECT(rs && rs->type == MSGPACK_OBJECT_ARRAY && rs->via.array.size == 1, "Dorota: %s",
               e2e_json(&r->body));
        expect_recipient(__LINE__, &r->body, "lookup-co", 1, t0, t1);
    }
    idl_reply_free(r);
    snprintf(json, sizeof json, "{\"person_id\": \"%s\", \"year\": %d}", e2e_pid("pv-dora"), year);
    r = CALL(E.privacy_key, DISCLOSURES, json, IDL_RESOURCE_EXHAUSTED);
    idl_reply_free(r);

    /* Missing year; another year has no recipients. */
    snprintf(json, sizeof json, "{\"person_id\": \"%s\"}", e2e_pid("pv-dex"));
    r = CALL(E.privacy_key, DISCLOSURES, json, IDL_INVALID_ARGUMENT);
    idl_reply_free(r);
    snprintf(json, sizeof json, "{\"person_id\": \"%s\", \"year\": %d}", e2e_pid("pv-dex"),
             year - 1);
    r = CALL(E.privacy_key, DISCLOSURES, json, 0);
    if (r && r->code == 0) {
        CHECK_INT(e2e_uint(e2e_get(&r->body, "year")), year - 1);
        const msgpack_object *rs = e2e_get(&r->body, "recipients");
        EXPECT(rs && rs->type == MSGPACK_OBJECT_ARRAY && rs->via.array.size == 0,
               "no recipients in another year: %s", e2e_json(&r->body));
    }
    idl_reply_free(r);

    /* Unknown person. */
    snprintf(json, sizeof json, "{\"person_id\": \"%s\", \"year\": %d}", e2e_pid("pv-nobody-ever"),
             year);
    r = CALL(E.privacy_key, DISCLOSURES, json, IDL_NOT_FOUND);
    idl_reply_free(r);

    /* A suppressed person. */
    char dsup[19];
    snprintf(dsup, sizeof dsup, "%s", e2e_pid("pv-dsup"));
    snprintf(json, sizeof json, "{\"person_id\": \"%s\"}", dsup);
    CHECK_INT(OPTOUT_N(json), 1);
    EXPECT(SEARCH_TOTAL(E.lookup_key, "{\"email\": \"desmond.s@example.org\"}") == 0,
           "Desmond hidden");
    snprintf(json, sizeof json, "{\"person_id\": \"%s\", \"year\": %d}", dsup, year);
    r = CALL(E.privacy_key, DISCLOSURES, json, 0);
    if (r && r->code == 0) {
        const msgpack_object *rs = e2e_get(&r->body, "recipients");
        EXPECT(rs && rs->type == MSGPACK_OBJECT_ARRAY && rs->via.array.size == 2, "Desmond: %s",
               e2e_json(&r->body));
        expect_recipient(__LINE__, &r->body, "lookup-co", 1, t0, t1);
        expect_recipient(__LINE__, &r->body, "all-co", 2, t0, t1);
    }
    idl_reply_free(r);

    /* Still used up after a restart. */
    CHECK_INT(e2e_stop(&E), 0);
    e2e_start(&E, NULL);
    snprintf(json, sizeof json, "{\"person_id\": \"%s\", \"year\": %d}", dina, year);
    r = CALL(E.privacy_key, DISCLOSURES, json, IDL_RESOURCE_EXHAUSTED);
    idl_reply_free(r);
    snprintf(json, sizeof json, "{\"person_id\": \"%s\", \"year\": %d}", dsup, year);
    r = CALL(E.privacy_key, DISCLOSURES, json, IDL_RESOURCE_EXHAUSTED);
    idl_reply_free(r);
}

/* ---- review findings (issue 14) ---- */

/* 1a: an identifier opted out before anyone held it reaches a person later;
 * every other identifier that person brings joins the suppressed set, so a
 * second source with the same name and phone stays hidden too. */
static void later_identifiers_suppressed(void)
{
    EXPECT(OPTOUT_N("{\"email\": \"lena.later@example.org\"}") == 0, "nobody holds it yet");
    UPSERT_EXPECT("{\"source_id\": \"pv-lena-a\", \"first_name\": \"Lenora\", \"last_name\": "
                  "\"Latterby\", \"emails\": [\"lena.later@example.org\"], \"phones\": "
                  "[\"802-555-0191\"], \"ips\": [\"198.51.100.91\"]}",
                  1, 0, 0, 1);
    UPSERT_EXPECT("{\"source_id\": \"pv-lena-b\", \"first_name\": \"Lenora\", \"last_name\": "
                  "\"Latterby\", \"phones\": [\"(802) 555-0191\"]}",
                  1, 0, 0, 1);
    const char *keys[2] = {E.lookup_key, E.all_key};
    for (int k = 0; k < 2; k++) {
        EXPECT(SEARCH_TOTAL(keys[k], "{\"phone\": \"802-555-0191\"}") == 0, "found by the phone");
        EXPECT(SEARCH_TOTAL(keys[k], "{\"ip\": \"198.51.100.91\"}") == 0, "found by the ip");
        EXPECT(SEARCH_TOTAL(keys[k], "{\"first_name\": \"Lenora\", \"last_name\": \"Latterby\"}") ==
                   0,
               "found by the name");
        EXPECT(KNOWN(keys[k], "phone", "{\"phone\": \"802-555-0191\"}") == 0, "phone known");
        EXPECT(strcmp(VERIFY_CHECK(keys[k], "phone",
                                   "{\"first_name\": \"Lenora\", \"last_name\": \"Latterby\", "
                                   "\"phone\": \"802-555-0191\"}"),
                      "not_found") == 0,
               "Verify sees the phone");
    }

    /* 1b: opted out by person_id; the same source comes back with a new
     * email, and a second source brings that email. */
    UPSERT_EXPECT("{\"source_id\": \"pv-mika\", \"first_name\": \"Mikaela\", \"last_name\": "
                  "\"Morrowind\", \"emails\": [\"mika.m@example.org\"]}",
                  1, 0, 0, 0);
    EXPECT(SEARCH_TOTAL(E.lookup_key, "{\"email\": \"mika.m@example.org\"}") == 1, "before");
    char json[128];
    snprintf(json, sizeof json, "{\"person_id\": \"%s\"}", e2e_pid("pv-mika"));
    EXPECT(OPTOUT_N(json) == 1, "opt-out by person_id");
    UPSERT_EXPECT("{\"source_id\": \"pv-mika\", \"first_name\": \"Mikaela\", \"last_name\": "
                  "\"Morrowind\", \"emails\": [\"mika.new@example.org\"], \"phones\": "
                  "[\"802-555-0192\"]}",
                  0, 1, 0, 1);
    UPSERT_EXPECT("{\"source_id\": \"pv-mika-crm\", \"first_name\": \"Mika\", \"last_name\": "
                  "\"Morrow\", \"emails\": [\"Mika.New@Example.org\"]}",
                  1, 0, 0, 1);
    for (int k = 0; k < 2; k++) {
        EXPECT(SEARCH_TOTAL(keys[k], "{\"email\": \"mika.new@example.org\"}") == 0,
               "found by the new email");
        EXPECT(SEARCH_TOTAL(keys[k], "{\"phone\": \"802-555-0192\"}") == 0,
               "found by the new phone");
        EXPECT(KNOWN(keys[k], "email", "{\"email\": \"mika.new@example.org\"}") == 0,
               "new email known");
    }
    /* Both in one Upsert: the second record sees what the first brought. */
    EXPECT(OPTOUT_N("{\"email\": \"nell.same@example.org\"}") == 0, "nobody holds it yet");
    UPSERT_EXPECT("{\"source_id\": \"pv-nell-a\", \"first_name\": \"Nell\", \"last_name\": "
                  "\"Samebatch\", \"emails\": [\"nell.same@example.org\"], \"phones\": "
                  "[\"802-555-0193\"]},"
                  "{\"source_id\": \"pv-nell-b\", \"first_name\": \"Nell\", \"last_name\": "
                  "\"Samebatch\", \"phones\": [\"802-555-0193\"]}",
                  2, 0, 0, 2);
    EXPECT(SEARCH_TOTAL(E.lookup_key, "{\"phone\": \"802-555-0193\"}") == 0, "same batch");
    /* The set survives a restart. */
    EXPECT(e2e_stop(&E) == 0, "clean stop");
    e2e_start(&E, NULL);
    EXPECT(SEARCH_TOTAL(E.lookup_key, "{\"phone\": \"802-555-0191\"}") == 0, "after restart");
    EXPECT(SEARCH_TOTAL(E.lookup_key, "{\"email\": \"mika.new@example.org\"}") == 0,
           "after restart");
}

/* 2: opt-out and Disclosures reach every holder, however many. */
#define MANY_HOLDERS 1000
#define MANY_PER_UPSERT 250 /* keeps each request under the 65,000-byte limit */
static void optout_many_holders(void)
{
    size_t cap = 64 + MANY_PER_UPSERT * 160;
    char *recs = malloc(cap);
    if (!recs) abort();
    for (int from = 0; from < MANY_HOLDERS; from += MANY_PER_UPSERT) {
        size_t len = 0;
        for (int i = from; i < from + MANY_PER_UPSERT; i++)
            len += (size_t)snprintf(recs + len, cap - len,
                                    "%s{\"source_id\": \"pv-many-%d\", \"first_name\": \"Manny\", "
                                    "\"last_name\": \"Holder%d\", \"emails\": "
                                    "[\"many%d@example.org\"], \"ips\": [\"203.0.113.200\"]}",
                                    i > from ? "," : "", i, i, i);
        UPSERT_EXPECT(recs, MANY_PER_UPSERT, 0, 0, 0);
    }
    free(recs);
    EXPECT(SEARCH_TOTAL(E.lookup_key, "{\"email\": \"many999@example.org\"}") == 1, "before");
    long long n = OPTOUT_N("{\"ip\": \"203.0.113.200\"}");
    EXPECT(n == MANY_HOLDERS, "suppressed %lld of %d holders", n, MANY_HOLDERS);
    int found = 0;
    for (int i = 0; i < MANY_HOLDERS; i++) {
        char q[64];
        snprintf(q, sizeof q, "{\"email\": \"many%d@example.org\"}", i);
        if (SEARCH_TOTAL(E.lookup_key, q) != 0) found++;
    }
    EXPECT(found == 0, "%d holders still found by email", found);
    EXPECT(OPTOUT_N("{\"ip\": \"203.0.113.200\"}") == 0, "second opt-out");
    /* Disclosures resolves the same holders: every one of them is marked. */
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char json[128];
    snprintf(json, sizeof json, "{\"ip\": \"203.0.113.200\", \"year\": %d}", tm.tm_year + 1900);
    idl_reply *r = CALL(E.privacy_key, DISCLOSURES, json, 0);
    idl_reply_free(r);
    snprintf(json, sizeof json, "{\"person_id\": \"%s\", \"year\": %d}", e2e_pid("pv-many-999"),
             tm.tm_year + 1900);
    r = CALL(E.privacy_key, DISCLOSURES, json, IDL_RESOURCE_EXHAUSTED);
    idl_reply_free(r);
}

/* 5: a request that matches a person who already asked is refused, and uses
 * up nobody else's yearly request.  Run twice, with the first asker once the
 * lower and once the higher person id, since a request's persons are taken
 * in id order. */
static void shared_phone_round(const char *tag, const char *phone, bool first_asks_first)
{
    char rec[512], sa[32], sb[32];
    snprintf(sa, sizeof sa, "pv-%s-a", tag);
    snprintf(sb, sizeof sb, "pv-%s-b", tag);
    snprintf(rec, sizeof rec,
             "{\"source_id\": \"%s\", \"first_name\": \"Shayla\", \"last_name\": \"Sharewood\", "
             "\"phones\": [\"%s\"]},"
             "{\"source_id\": \"%s\", \"first_name\": \"Sherwin\", \"last_name\": \"Sharewood\", "
             "\"phones\": [\"%s\"]}",
             sa, phone, sb, phone);
    UPSERT_EXPECT(rec, 2, 0, 0, 0);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    int year = tm.tm_year + 1900;
    const char *asker = first_asks_first ? sa : sb, *other = first_asks_first ? sb : sa;
    char json[128];
    snprintf(json, sizeof json, "{\"person_id\": \"%s\", \"year\": %d}", e2e_pid(asker), year);
    idl_reply *r = CALL(E.privacy_key, DISCLOSURES, json, 0);
    idl_reply_free(r);
    snprintf(json, sizeof json, "{\"phone\": \"%s\", \"year\": %d}", phone, year);
    r = CALL(E.privacy_key, DISCLOSURES, json, IDL_RESOURCE_EXHAUSTED);
    idl_reply_free(r);
    snprintf(json, sizeof json, "{\"person_id\": \"%s\", \"year\": %d}", e2e_pid(other), year);
    r = CALL(E.privacy_key, DISCLOSURES, json, 0);
    idl_reply_free(r);
    r = CALL(E.privacy_key, DISCLOSURES, json, IDL_RESOURCE_EXHAUSTED);
    idl_reply_free(r);
}

/* Whether pv-TAG-a's person id sorts before pv-TAG-b's. */
static bool a_is_lower(const char *tag)
{
    char a[32], b[32], sid[32];
    snprintf(sid, sizeof sid, "pv-%s-a", tag);
    snprintf(a, sizeof a, "%s", e2e_pid(sid)); /* e2e_pid's buffer is static */
    snprintf(sid, sizeof sid, "pv-%s-b", tag);
    snprintf(b, sizeof b, "%s", e2e_pid(sid));
    return strcmp(a, b) < 0;
}

static void disclosures_shared_phone(void)
{
    shared_phone_round("sh1", "802-555-0181", a_is_lower("sh1"));
    shared_phone_round("sh2", "802-555-0182", !a_is_lower("sh2"));
}

/* 3: whatever address Search returned, an opt-out by exactly that works
 * (normalizers are idempotent; tests/test-norm-idem.c checks them alone). */
static void optout_by_returned_address(void)
{
    static const char *const streets[][2] = {
        {"1 Market St Bldg #3 Ste 200", NULL},
        {"9742 Evergreen Terrace", "Apartment 4"},
        {"123 north east Main Street", NULL},
        {"39.2 Road", NULL},
        {"P.O. Box 123", NULL},
        {"Rural Route 3 Box 98D", NULL},
        {"12 Avenue B #5", "Unit 7"},
        {"400 South Highway 9 Suite 10", NULL},
    };
    for (size_t i = 0; i < sizeof streets / sizeof streets[0]; i++) {
        char rec[768], unit[128] = "";
        if (streets[i][1]) snprintf(unit, sizeof unit, "\"unit\": \"%s\", ", streets[i][1]);
        snprintf(rec, sizeof rec,
                 "{\"source_id\": \"pv-addr-%zu\", \"first_name\": \"Ada\", \"last_name\": "
                 "\"Roundtrip%zu\", \"emails\": [\"ada.rt%zu@example.org\"], \"addresses\": "
                 "[{\"street\": \"%s\", %s\"city\": \"Brattleboro\", \"state\": \"VT\", "
                 "\"zip\": \"05301\"}]}",
                 i, i, i, streets[i][0], unit);
        UPSERT_EXPECT(rec, 1, 0, 0, 0);
        char q[256];
        snprintf(q, sizeof q, "{\"email\": \"ada.rt%zu@example.org\"}", i);
        idl_reply *r = CALL(E.lookup_key, SEARCH, q, 0);
        const msgpack_object *st = r ? e2e_path(&r->body, "persons.0.addresses.0.street") : NULL;
        const msgpack_object *un = r ? e2e_path(&r->body, "persons.0.addresses.0.unit") : NULL;
        EXPECT(st && st->type == MSGPACK_OBJECT_STR, "%s: no street returned", streets[i][0]);
        if (st && st->type == MSGPACK_OBJECT_STR) {
            char body[512];
            if (un && un->type == MSGPACK_OBJECT_STR)
                snprintf(body, sizeof body,
                         "{\"street\": \"%.*s\", \"unit\": \"%.*s\", \"zip\": \"05301\"}",
                         (int)st->via.str.size, st->via.str.ptr, (int)un->via.str.size,
                         un->via.str.ptr);
            else
                snprintf(body, sizeof body, "{\"street\": \"%.*s\", \"zip\": \"05301\"}",
                         (int)st->via.str.size, st->via.str.ptr);
            EXPECT(SEARCH_TOTAL(E.lookup_key, body) >= 1, "%s: Search by what it returned (%s)",
                   streets[i][0], body);
            EXPECT(OPTOUT_N(body) == 1, "%s: opt-out by what Search returned (%s)", streets[i][0],
                   body);
            EXPECT(SEARCH_TOTAL(E.lookup_key, q) == 0, "%s: still found after the opt-out",
                   streets[i][0]);
        }
        idl_reply_free(r);
    }
}

/* How many files under dir hold needle: plain files by their bytes, and
 * SST files also by their decoded contents (their blocks are compressed,
 * so a plain grep could miss a record that is still there).  The names go
 * to out. */
static int files_holding(const char *dir, const char *needle, char *out, size_t outsz)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && { grep -rlaF -- '%s' . 2>/dev/null; "
             "for f in *.sst; do [ -e \"$f\" ] || continue; "
             "sst_dump --file=\"$f\" --command=scan --output_hex 2>/dev/null | "
             "grep -qiF -- \"$(printf '%%s' '%s' | od -An -tx1 | tr -d ' \\n')\" && echo \"$f\"; "
             "done; }",
             dir, needle, needle);
    FILE *p = popen(cmd, "r");
    if (!p) abort();
    size_t n = fread(out, 1, outsz - 1, p);
    out[n] = 0;
    pclose(p);
    int lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += out[i] == '\n';
    return lines;
}

static bool have_sst_dump(void)
{
    return system("command -v sst_dump >/dev/null 2>&1") == 0;
}

/* Stores an adult, checks its bytes are on disk (in the WAL, or after a
 * restart in an SST), turns it into a child and checks that no file of the
 * data directory holds any of its identifiers any more. */
static void erase_round(const char *sid, const char *email, const char *last, const char *phone,
                        const char *e164, bool via_sst)
{
    char dob8[16], rec[1024], files[4096];
    date_shift(8, 0, dob8);
    snprintf(rec, sizeof rec,
             "{\"source_id\": \"%s\", \"first_name\": \"Zebulon\", \"last_name\": \"%s\", "
             "\"dob\": \"1990-01-01\", \"emails\": [\"%s\"], \"phones\": [\"%s\"]}",
             sid, last, email, phone);
    UPSERT_EXPECT(rec, 1, 0, 0, 0);
    if (via_sst) {
        EXPECT(e2e_stop(&E) == 0, "clean stop");
        e2e_start(&E, NULL);
    }
    EXPECT(files_holding(E.data, email, files, sizeof files) > 0,
           "%s: the record is not on disk before the purge, so the check proves nothing",
           via_sst ? "SST" : "WAL");
    snprintf(rec, sizeof rec,
             "{\"source_id\": \"%s\", \"first_name\": \"Zebulon\", \"last_name\": \"%s\", "
             "\"dob\": \"%s\", \"emails\": [\"%s\"], \"phones\": [\"%s\"]}",
             sid, last, dob8, email, phone);
    UPSERT_EXPECT(rec, 0, 0, 1, 0);
    const char *needles[3] = {email, last, e164};
    for (int i = 0; i < 3; i++)
        EXPECT(files_holding(E.data, needles[i], files, sizeof files) == 0,
               "after the purge, '%s' is still in: %s", needles[i], files);
    EXPECT(e2e_stop(&E) == 0, "clean stop");
    for (int i = 0; i < 3; i++)
        EXPECT(files_holding(E.data, needles[i], files, sizeof files) == 0,
               "after a clean stop, '%s' is still in: %s", needles[i], files);
    e2e_start(&E, NULL);
}

/* 6: a purged child leaves no byte of its record in the data directory. */
static void purged_child_erased(void)
{
    if (!have_sst_dump()) {
        /* scripts/setup.sh --test installs it (rocksdb-tools). */
        EXPECT(false, "sst_dump (Debian's rocksdb-tools) is needed to read SST files");
        return;
    }
    erase_round("pv-erase-wal", "zebulon.quartzwhistle@example.org", "Quartzwhistle",
                "802-555-0177", "+18025550177", false);
    erase_round("pv-erase-sst", "zeb.brindlecombe@example.org", "Brindlecombe", "802-555-0178",
                "+18025550178", true);
}

int main(void)
{
    char err[256];
    if (shape_load(getenv("IDL_SCHEMA"), &schema, err)) {
        fprintf(stderr, "cannot load the schema: %s\n", err);
        return 99;
    }
    e2e_init(&E);
    e2e_start(&E, NULL);
    RUN(optout_person_and_household);
    RUN(optout_by_identifiers);
    RUN(optout_survives);
    RUN(children);
    RUN(disclosures);
    RUN(later_identifiers_suppressed);
    RUN(optout_many_holders);
    RUN(disclosures_shared_phone);
    RUN(purged_child_erased);
    RUN(optout_by_returned_address);
    e2e_cleanup(&E);
    shape_free(schema);
    return test_summary();
}
