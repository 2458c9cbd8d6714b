/* The shape checker against schemas/api.json: correct messages pass, and each kind of
 * deviation fails with an error naming its path.  Also pins the method list, the scopes
 * and the status codes of the schema to API.md and to the status table.
 * Usage: test-shape SCHEMA_PATH (or IDL_SCHEMA in the environment).
 */
#include "shape.h"
#include "status.h"
#include "testutil.h"

#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#define SEARCH "idlookup.v1.Lookup/Search"

static shape_schema *schema;
static const char *schema_path;
static char last_err[600];
/* Set by the one case that needs float32 on the wire; jansson has no float width. */
static bool reals_as_float32;

static void pack_json(msgpack_packer *pk, const json_t *v)
{
    const char *key;
    const json_t *item;
    size_t i;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        msgpack_pack_map(pk, json_object_size(v));
        json_object_foreach((json_t *)v, key, item)
        {
            msgpack_pack_str_with_body(pk, key, strlen(key));
            pack_json(pk, item);
        }
        break;
    case JSON_ARRAY:
        msgpack_pack_array(pk, json_array_size(v));
        json_array_foreach(v, i, item)
        {
            pack_json(pk, item);
        }
        break;
    case JSON_STRING:
        msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        /* As our packers do: non-negative values as unsigned, so they decode as uint. */
        if (json_integer_value(v) >= 0)
            msgpack_pack_uint64(pk, (uint64_t)json_integer_value(v));
        else
            msgpack_pack_int64(pk, json_integer_value(v));
        break;
    case JSON_REAL:
        if (reals_as_float32)
            msgpack_pack_float(pk, (float)json_real_value(v));
        else
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

/* Parses JSON written with ' for " (so the cases stay readable); aborts on a typo in a
 * test, which is a bug of the test and not a result. */
static json_t *js(const char *text)
{
    char *copy = strdup(text);
    json_error_t jerr;
    for (char *p = copy; *p; p++)
        if (*p == '\'') *p = '"';
    json_t *v = json_loads(copy, 0, &jerr);
    if (!v) {
        fprintf(stderr, "bad test JSON at %d: %s\n%s\n", jerr.column, jerr.text, copy);
        abort();
    }
    free(copy);
    return v;
}

typedef int (*check_fn)(const shape_schema *, const char *, const msgpack_object *, char *);

/* Packs raw msgpack bytes back into an object and runs fn on it; NULL when the check
 * passes, else the error (prefixed with the code when it is not INVALID_ARGUMENT). */
static const char *check_bytes(check_fn fn, const char *name, const char *data, size_t len)
{
    msgpack_zone zone;
    msgpack_object obj;
    size_t off = 0;
    msgpack_zone_init(&zone, 2048);
    if (msgpack_unpack(data, len, &off, &zone, &obj) != MSGPACK_UNPACK_SUCCESS) {
        snprintf(last_err, sizeof last_err, "test bug: unpack failed");
        msgpack_zone_destroy(&zone);
        return last_err;
    }
    char err[512] = "";
    int rc = fn(schema, name, &obj, err);
    msgpack_zone_destroy(&zone);
    if (rc == 0) return NULL;
    if (rc == IDL_INVALID_ARGUMENT)
        snprintf(last_err, sizeof last_err, "%s", err);
    else
        snprintf(last_err, sizeof last_err, "rc %d: %s", rc, err);
    return last_err;
}

/* Packs v (the reference is consumed) and checks it. */
static const char *check_json(check_fn fn, const char *name, json_t *v)
{
    msgpack_sbuffer buf;
    msgpack_packer pk;
    msgpack_sbuffer_init(&buf);
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    pack_json(&pk, v);
    json_decref(v);
    const char *r = check_bytes(fn, name, buf.data, buf.size);
    msgpack_sbuffer_destroy(&buf);
    return r;
}

static const char *resp(const char *method, const char *text)
{
    return check_json(shape_check_response, method, js(text));
}

static const char *req(const char *method, const char *text)
{
    return check_json(shape_check_request, method, js(text));
}

static json_t *good_search_response(void)
{
    return js("{'persons': ["
              "  {'id': 'p_0123456789abcdef', 'first_name': 'JANE', 'middle_name': 'Q',"
              "   'last_name': 'DOE', 'age': 41, 'emails': ['janedoe@gmail.com'],"
              "   'phones': [{'number': '+14155552671', 'line_type': 'mobile'},"
              "              {'number': '+12125550100', 'line_type': 'landline'}],"
              "   'addresses': [{'street': '123 N MAIN ST', 'unit': 'APT 4', 'city': 'SPRINGFIELD',"
              "                  'state': 'IL', 'zip': '62701'}],"
              "   'ips': ['203.0.113.7'], 'score': 1.0, 'matched': ['email', 'last_name']},"
              "  {'id': 'p_fedcba9876543210', 'first_name': 'JOHN', 'middle_name': null,"
              "   'last_name': 'DOE', 'age': null, 'emails': [], 'phones': [],"
              "   'addresses': [{'street': '123 N MAIN ST', 'unit': null, 'city': null,"
              "                  'state': null, 'zip': null}],"
              "   'ips': [], 'score': 0.25, 'matched': ['last_name']}],"
              " 'total': 2}");
}

static json_t *person0(json_t *search_response)
{
    return json_array_get(json_object_get(search_response, "persons"), 0);
}

static void methods_and_scopes_match_api(void)
{
    static const char *const want[][2] = {
        {"grpc.health.v1.Health/Check", NULL},     {"idlookup.v1.Meta/Describe", NULL},
        {"idlookup.v1.Lookup/Search", "lookup"},   {"idlookup.v1.Lookup/Validate", "lookup"},
        {"idlookup.v1.Lookup/Verify", "lookup"},   {"idlookup.v1.Lookup/Batch", "lookup"},
        {"idlookup.v1.Privacy/OptOut", "privacy"}, {"idlookup.v1.Privacy/Disclosures", "privacy"},
        {"idlookup.v1.Admin/Upsert", "admin"},     {"idlookup.v1.Admin/Stats", "admin"},
    };
    size_t n = sizeof want / sizeof want[0];
    CHECK_INT(shape_method_count(schema), n);
    for (size_t i = 0; i < n; i++) {
        const char *name = NULL, *scope = "unset";
        CHECK_INT(shape_method_at(schema, i, &name, &scope), 0);
        CHECK_STR(name, want[i][0]);
        CHECK_STR(scope, want[i][1]);
    }
    const char *name, *scope;
    CHECK_INT(shape_method_at(schema, n, &name, &scope), IDL_NOT_FOUND);
}

static void codes_agree_with_status_table(void)
{
    static const int want[] = {0, 3, 4, 5, 7, 8, 12, 13, 14, 16};
    CHECK_INT(shape_code_count(schema), sizeof want / sizeof want[0]);
    for (size_t i = 0; i < shape_code_count(schema); i++) {
        int code = -1;
        const char *name = NULL;
        CHECK_INT(shape_code_at(schema, i, &code, &name), 0);
        CHECK_INT(code, want[i]);
        CHECK_STR(name, idl_status_name(code));
    }
}

static void search_response_passes(void)
{
    CHECK_STR(check_json(shape_check_response, SEARCH, good_search_response()), NULL);
    CHECK_STR(resp(SEARCH, "{'persons': [], 'total': 0}"), NULL);
    json_t *r = good_search_response();
    json_t *p = json_incref(person0(r));
    json_decref(r);
    CHECK_STR(check_json(shape_check_type, "Person", p), NULL);
}

static void search_response_deviations_fail(void)
{
    json_t *r = good_search_response();
    json_object_del(person0(r), "matched");
    CHECK_STR(check_json(shape_check_response, SEARCH, r),
              "persons[0].matched: missing required field");

    r = good_search_response();
    json_object_set_new(person0(r), "ssn", json_string("078-05-1120"));
    CHECK_STR(check_json(shape_check_response, SEARCH, r), "persons[0].ssn: undocumented field");

    r = good_search_response();
    json_object_set_new(r, "total", json_string("2"));
    CHECK_STR(check_json(shape_check_response, SEARCH, r), "total: expected uint, got str");

    r = good_search_response();
    json_object_set_new(r, "total", json_integer(-1));
    CHECK_STR(check_json(shape_check_response, SEARCH, r),
              "total: expected uint, got negative int");

    r = good_search_response();
    json_object_set_new(json_array_get(json_object_get(person0(r), "phones"), 1), "line_type",
                        json_string("cell"));
    CHECK_STR(check_json(shape_check_response, SEARCH, r),
              "persons[0].phones[1].line_type: 'cell' not in enum");

    r = good_search_response();
    json_object_set_new(person0(r), "first_name", json_null());
    CHECK_STR(check_json(shape_check_response, SEARCH, r),
              "persons[0].first_name: expected str, got nil");

    r = good_search_response();
    json_object_set_new(person0(r), "age", json_string("41"));
    CHECK_STR(check_json(shape_check_response, SEARCH, r),
              "persons[0].age: expected uint|nil, got str");

    r = good_search_response();
    json_object_set_new(json_array_get(json_object_get(person0(r), "addresses"), 0), "street",
                        json_null());
    CHECK_STR(check_json(shape_check_response, SEARCH, r),
              "persons[0].addresses[0].street: expected str, got nil");

    r = good_search_response();
    json_array_append_new(json_object_get(person0(r), "emails"), json_integer(5));
    CHECK_STR(check_json(shape_check_response, SEARCH, r),
              "persons[0].emails[1]: expected str, got uint");

    r = good_search_response();
    json_object_set_new(r, "persons", json_object());
    CHECK_STR(check_json(shape_check_response, SEARCH, r),
              "persons: expected array<Person>, got map");

    CHECK_STR(resp(SEARCH, "['persons']"),
              "body: expected map (idlookup.v1.Lookup/Search), got array");
}

static void score_must_be_float64_in_range(void)
{
    json_t *r = good_search_response();
    json_object_set_new(person0(r), "score", json_integer(1));
    CHECK_STR(check_json(shape_check_response, SEARCH, r),
              "persons[0].score: expected float, got uint");

    r = good_search_response();
    json_object_set_new(person0(r), "score", json_real(1.5));
    CHECK_STR(check_json(shape_check_response, SEARCH, r),
              "persons[0].score: 1.5 out of range [0, 1]");

    reals_as_float32 = true;
    CHECK_STR(check_json(shape_check_response, SEARCH, good_search_response()),
              "persons[0].score: expected float, got float32");
    reals_as_float32 = false;
}

static void search_request_limits(void)
{
    CHECK_STR(req(SEARCH, "{'email': 'a@b.co', 'limit': 100, 'min_score': 0.5}"), NULL);
    CHECK_STR(req(SEARCH, "{}"), NULL); /* "enough to search on" is the service's rule */
    CHECK_STR(req(SEARCH, "{'email': 'a@b.co', 'limit': 0}"), "limit: 0 out of range [1, 100]");
    CHECK_STR(req(SEARCH, "{'email': 'a@b.co', 'limit': 101}"), "limit: 101 out of range [1, 100]");
    CHECK_STR(req(SEARCH, "{'email': 'a@b.co', 'dob': '1984-03-07'}"), "dob: undocumented field");
}

static void validate_and_verify(void)
{
    const char *validate = "idlookup.v1.Lookup/Validate", *verify = "idlookup.v1.Lookup/Verify";
    CHECK_STR(req(validate, "{'email': 'x', 'address': {'street': '1 Main St', 'zip': '62701'}}"),
              NULL);
    CHECK_STR(req(validate, "{'address': {'zip': '62701'}}"),
              "address.street: missing required field");
    CHECK_STR(resp(validate, "{'email': {'valid': true, 'normalized': 'a@b.co', 'reason': null,"
                             " 'known': false}}"),
              NULL);
    CHECK_STR(resp(validate, "{'address': {'valid': false, 'normalized': null, 'reason': 'no ZIP',"
                             " 'known': false},"
                             " 'phone': {'valid': true, 'normalized': '+14155552671',"
                             " 'reason': null, 'known': true, 'country': 'US',"
                             " 'line_type': 'toll_free'}}"),
              NULL);
    CHECK_STR(resp(validate, "{'phone': {'valid': true, 'normalized': '+14155552671',"
                             " 'reason': null, 'known': true, 'country': 'US'}}"),
              "phone.line_type: missing required field");
    CHECK_STR(resp(validate, "{'address': {'valid': true, 'normalized': {'street': '1 MAIN ST'},"
                             " 'reason': null, 'known': false}}"),
              "address.normalized.unit: missing required field");

    CHECK_STR(req(verify, "{'first_name': 'Bob', 'last_name': 'Doe', 'dob': '1984-03-07'}"), NULL);
    CHECK_STR(req(verify, "{'first_name': 'Bob', 'dob': '1984-03-07'}"),
              "last_name: missing required field");
    CHECK_STR(resp(verify,
                   "{'verdict': 'partial', 'score': 60,"
                   " 'checks': {'name': 'match', 'email': 'no_match', 'dob': 'not_found'}}"),
              NULL);
    CHECK_STR(resp(verify, "{'verdict': 'maybe', 'score': 60, 'checks': {}}"),
              "verdict: 'maybe' not in enum");
    CHECK_STR(resp(verify, "{'verdict': 'partial', 'score': 101, 'checks': {}}"),
              "score: 101 out of range [0, 100]");
    CHECK_STR(resp(verify, "{'verdict': 'partial', 'score': 60, 'checks': {'name': 'yes'}}"),
              "checks.name: 'yes' not in enum");
    CHECK_STR(resp(verify, "{'verdict': 'partial', 'score': 60, 'checks': {'ssn': 'match'}}"),
              "checks.ssn: key not allowed here");
}

static void batch_upsert_and_admin(void)
{
    const char *batch = "idlookup.v1.Lookup/Batch", *upsert = "idlookup.v1.Admin/Upsert";
    CHECK_STR(req(batch, "{'calls': [{'method': 'idlookup.v1.Lookup/Search',"
                         " 'body': {'email': 'a@b.co'}}, {'method': 'x'}]}"),
              NULL);
    CHECK_STR(req(batch, "{'calls': []}"), "calls: length 0 out of range [1, 100]");
    CHECK_STR(resp(batch, "{'results': [{'code': 0, 'message': null, 'body': {'persons': []}},"
                          " {'code': 8, 'message': 'over the rate', 'body': null}]}"),
              NULL);
    CHECK_STR(resp(batch, "{'results': [{'code': 0, 'body': {}}]}"),
              "results[0].message: missing required field");

    CHECK_STR(req(upsert, "{'records': [{'source_id': 'crm-1', 'first_name': 'Jane',"
                          " 'last_name': 'Doe', 'middle_name': null, 'dob': '1984-03-07',"
                          " 'emails': ['Jane.Doe@Example.com'],"
                          " 'phones': ['(415) 555-2671', {'number': '+1 212 555 0100',"
                          "            'line_type': 'landline'}],"
                          " 'addresses': [{'street': '123 north Main Street', 'zip': '62701'}],"
                          " 'ips': ['203.0.113.7'], 'minor': false}]}"),
              NULL);
    CHECK_STR(req(upsert, "{'records': [{'source_id': 'a', 'first_name': 'J', 'last_name': 'D',"
                          " 'phones': [7]}]}"),
              "records[0].phones[0]: expected str|RecordPhone, got uint");
    CHECK_STR(req(upsert, "{'records': [{'source_id': 'a', 'first_name': 'J', 'last_name': 'D',"
                          " 'phones': ['1', {'number': '2', 'line_type': 'cell'}]}]}"),
              "records[0].phones[1].line_type: 'cell' not in enum");
    CHECK_STR(resp(upsert, "{'stored': 1, 'updated': 0, 'rejected_child': 0, 'suppressed': 0,"
                           " 'dropped_identifiers': 1, 'invalid': [],"
                           " 'warnings': [{'index': 0, 'reason': 'phones[1] is not valid'}]}"),
              NULL);

    CHECK_STR(resp("idlookup.v1.Admin/Stats",
                   "{'persons': 3, 'suppressed': 1, 'children_purged': 0, 'queries_logged': 9,"
                   " 'uptime_s': 5, 'requests': {'OK': 7, 'INVALID_ARGUMENT': 2}}"),
              NULL);
    CHECK_STR(resp("idlookup.v1.Admin/Stats",
                   "{'persons': 3, 'suppressed': 1, 'children_purged': 0, 'queries_logged': 9,"
                   " 'uptime_s': 5, 'requests': {'OK': 'seven'}}"),
              "requests.OK: expected uint, got str");
    CHECK_STR(resp("grpc.health.v1.Health/Check", "{'status': 'SERVING'}"), NULL);
    CHECK_STR(resp("idlookup.v1.Privacy/Disclosures",
                   "{'year': 2025, 'recipients': [{'customer': 'acme', 'disclosures': 2,"
                   " 'first': '2025-01-02T03:04:05Z', 'last': '2025-02-03T04:05:06Z'}]}"),
              NULL);
    CHECK_STR(req("idlookup.v1.Privacy/Disclosures", "{'person_id': 'p_0123456789abcdef'}"),
              "year: missing required field");
}

/* What Describe will serve is built from the schema file itself; it must match the
 * schema's own description of Describe. */
static void describe_built_from_schema_conforms(void)
{
    json_t *root = json_load_file(schema_path, 0, NULL);
    CHECK(root != NULL);
    if (!root) return;
    json_t *methods = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(root, "methods"), i, m)
    {
        json_array_append(methods, m); /* each already is {name, scope, request, response} */
    }
    json_t *describe = json_pack("{s:s, s:o}", "version", "1", "methods", methods);
    CHECK_STR(check_json(shape_check_response, "idlookup.v1.Meta/Describe", describe), NULL);
    json_decref(root);
}

static void envelope_and_wire_details(void)
{
    CHECK_STR(check_json(shape_check_envelope, "reply",
                         js("{'id': 7, 'code': 0, 'body': {}, 'meta': {'request-id': 'r1',"
                            " 'ratelimit-limit': '10', 'ratelimit-remaining': '9'}}")),
              NULL);
    CHECK_STR(check_json(shape_check_envelope, "reply",
                         js("{'id': 7, 'code': 3, 'message': 'email: bad',"
                            " 'meta': {'request-id': 'r1', 'x-debug': '1'}}")),
              "meta.x-debug: key not allowed here");
    CHECK_STR(check_json(shape_check_envelope, "request",
                         js("{'id': 1, 'method': 'grpc.health.v1.Health/Check'}")),
              NULL);
    CHECK_STR(check_json(shape_check_envelope, "request", js("{'method': 'x'}")),
              "id: missing required field");

    /* A key given twice is not an exact shape, though msgpack allows it. */
    msgpack_sbuffer buf;
    msgpack_packer pk;
    msgpack_sbuffer_init(&buf);
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    for (int k = 0; k < 2; k++) {
        msgpack_pack_str_with_body(&pk, "status", 6);
        msgpack_pack_str_with_body(&pk, "SERVING", 7);
    }
    CHECK_STR(check_bytes(shape_check_response, "grpc.health.v1.Health/Check", buf.data, buf.size),
              "status: field given twice");
    msgpack_sbuffer_destroy(&buf);

    json_t *bad_utf8 = json_pack("{s:o}", "status", json_stringn_nocheck("SERV\xff", 5));
    CHECK_STR(check_json(shape_check_response, "grpc.health.v1.Health/Check", bad_utf8),
              "status: str is not valid UTF-8");

    /* Unknown names are a different failure than a bad shape. */
    CHECK(strncmp(resp("idlookup.v1.Lookup/Nope", "{}"), "rc 5: ", 6) == 0);
    CHECK(strncmp(check_json(shape_check_type, "Nope", js("{}")), "rc 5: ", 6) == 0);
}

/* The loader refuses a schema that breaks the format, naming the place. */
static const char *load_text(const char *text)
{
    static char err[256];
    char path[] = "/tmp/test-shape-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return "test bug: mkstemp";
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    shape_schema *s = NULL;
    int rc = shape_load(path, &s, err);
    unlink(path);
    shape_free(s);
    if (rc == 0) return NULL;
    return rc == IDL_INVALID_ARGUMENT ? err : "unexpected status";
}

static void loader_is_strict(void)
{
    const char *head = "{\"version\": \"1\", \"envelope\": {\"request\": {}, \"reply\": {}},"
                       " \"codes\": [{\"code\": 0, \"name\": \"OK\", \"when\": \"ok\"}],";
    char text[1024];
    snprintf(text, sizeof text,
             "%s \"types\": {}, \"methods\": [{\"name\": \"a/B\", \"scope\": null,"
             " \"request\": {}, \"response\": {}}]}",
             head);
    CHECK_STR(load_text(text), NULL);
    snprintf(text, sizeof text,
             "%s \"types\": {\"T\": {\"x\": {\"type\": \"Uint\", \"required\": true,"
             " \"meaning\": \"m\"}}}, \"methods\": []}",
             head);
    CHECK_STR(load_text(text), "types.T.x: unknown type name 'Uint'");
    snprintf(text, sizeof text,
             "%s \"types\": {\"T\": {\"x\": {\"type\": \"str\", \"required\": true,"
             " \"meaning\": \"m\", \"optional\": true}}}, \"methods\": []}",
             head);
    CHECK_STR(load_text(text), "types.T.x: unknown spec key \"optional\"");
    snprintf(text, sizeof text,
             "%s \"types\": {\"T\": {\"x\": {\"type\": \"array<str\", \"required\": true,"
             " \"meaning\": \"m\"}}}, \"methods\": []}",
             head);
    CHECK_STR(load_text(text), "types.T.x: type 'array<str': expected '>' at offset 9");
    snprintf(text, sizeof text,
             "%s \"types\": {\"T\": {\"x\": {\"type\": \"uint\", \"required\": true,"
             " \"meaning\": \"m\", \"range\": [5, 1]}}}, \"methods\": []}",
             head);
    CHECK_STR(load_text(text), "types.T.x: range has lo > hi");
    snprintf(text, sizeof text,
             "%s \"types\": {\"T\": {\"x\": {\"type\": \"nil\", \"required\": true,"
             " \"meaning\": \"m\"}}}, \"methods\": []}",
             head);
    CHECK_STR(load_text(text), "types.T.x: type 'nil': nil outside a union at offset 3");

    shape_schema *s = NULL;
    char err[256];
    CHECK_INT(shape_load("/nonexistent/api.json", &s, err), IDL_NOT_FOUND);
    CHECK(s == NULL);
}

int main(int argc, char **argv)
{
    char err[256];
    schema_path = argc > 1 ? argv[1] : getenv("IDL_SCHEMA");
    if (!schema_path) {
        fprintf(stderr, "usage: test-shape SCHEMA_PATH (or set IDL_SCHEMA)\n");
        return 2;
    }
    if (shape_load(schema_path, &schema, err) != 0) {
        fprintf(stderr, "cannot load schema: %s\n", err);
        return 1;
    }
    RUN(methods_and_scopes_match_api);
    RUN(codes_agree_with_status_table);
    RUN(search_response_passes);
    RUN(search_response_deviations_fail);
    RUN(score_must_be_float64_in_range);
    RUN(search_request_limits);
    RUN(validate_and_verify);
    RUN(batch_upsert_and_admin);
    RUN(describe_built_from_schema_conforms);
    RUN(envelope_and_wire_details);
    RUN(loader_is_strict);
    shape_free(schema);
    return test_summary();
}
