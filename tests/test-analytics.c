/* The analytics job's pure part (services/idlookup/analytics_lib.c): synthetic
 * log entries in, groups, percentiles, the de-identification threshold and the
 * JSON/CSV/NDJSON text out, checked exactly (JSON through jansson). */
#include "analytics_lib.h"
#include "testutil.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define DAY IDL_AN_US_PER_DAY
/* 2024-05-01T00:00:00Z */
#define D1 (19844ull * DAY)
#define D2 (D1 + DAY)

static const char *M_SEARCH = "idlookup.v1.Lookup/Search";
static const char *M_VERIFY = "idlookup.v1.Lookup/Verify";

/* Fills e; the fingerprint list ends at the first 0 after n_fps values
 * (pass them as uint64_t). */
static void entry(idl_qlog_entry *e, uint64_t time_us, const char *customer, const char *method,
                  int code, uint32_t latency_us, uint32_t n_persons, uint32_t n_fps, ...)
{
    memset(e, 0, sizeof(*e));
    e->time_us = time_us;
    e->seq = 7;
    snprintf(e->customer, sizeof e->customer, "%s", customer);
    snprintf(e->key_id, sizeof e->key_id, "%s", customer[0] ? "k_test" : "");
    snprintf(e->method, sizeof e->method, "%s", method);
    e->code = code;
    e->latency_us = latency_us;
    e->n_persons = n_persons;
    va_list ap;
    va_start(ap, n_fps);
    for (uint32_t i = 0; i < n_fps; i++)
        e->fps[i] = va_arg(ap, uint64_t);
    va_end(ap);
    e->n_fps = n_fps;
}

static void add(idl_an *a, const idl_qlog_entry *e)
{
    CHECK(idl_an_add(a, e) == IDL_OK);
}

/* Runs a writer into memory; the caller frees the text. */
static char *capture(int (*fn)(FILE *, const idl_an_report *), const idl_an_report *r)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f != NULL);
    CHECK(fn(f, r) == IDL_OK);
    fclose(f);
    return buf;
}

static const idl_an_group *find(const idl_an_report *r, const char *customer, const char *method,
                                const char *day)
{
    for (size_t i = 0; i < r->n_groups; i++)
        if (strcmp(r->groups[i].customer, customer) == 0 &&
            strcmp(r->groups[i].method, method) == 0 && strcmp(r->groups[i].day, day) == 0)
            return &r->groups[i];
    return NULL;
}

/* Several customers, methods and days, fed out of order. */
static idl_an *mixed_log(void)
{
    idl_an *a = NULL;
    CHECK(idl_an_new(&a) == IDL_OK);
    idl_qlog_entry e;
    /* acme Search on day 2: 4 requests, 2 hits, one NOT_FOUND, one INVALID_ARGUMENT */
    entry(&e, D2 + 5, "acme", M_SEARCH, 0, 100, 1, 2, (uint64_t)11, (uint64_t)12);
    add(a, &e);
    entry(&e, D2 + 6, "acme", M_SEARCH, 5, 300, 0, 1, (uint64_t)11);
    add(a, &e);
    entry(&e, D2 + 7, "acme", M_SEARCH, 3, 200, 0, 0);
    add(a, &e);
    entry(&e, D2 + DAY - 1, "acme", M_SEARCH, 0, 400, 3, 1, (uint64_t)13);
    add(a, &e);
    /* acme Search on day 1: 1 request */
    entry(&e, D1 + 1, "acme", M_SEARCH, 0, 50, 0, 1, (uint64_t)99);
    add(a, &e);
    /* acme Verify on day 1 */
    entry(&e, D1 + 2, "acme", M_VERIFY, 0, 70, 1, 1, (uint64_t)99);
    add(a, &e);
    /* beta Search on day 1, two RESOURCE_EXHAUSTED */
    entry(&e, D1 + 3, "beta", M_SEARCH, 8, 10, 0, 1, (uint64_t)5);
    add(a, &e);
    entry(&e, D1 + 4, "beta", M_SEARCH, 8, 20, 0, 1, (uint64_t)5);
    add(a, &e);
    /* no valid key: customer "" with UNAUTHENTICATED on day 1 */
    entry(&e, D1 + 5, "", M_SEARCH, 16, 5, 0, 1, (uint64_t)77);
    add(a, &e);
    return a;
}

static void groups_counts_and_order(void)
{
    idl_an *a = mixed_log();
    idl_an_report *r = NULL;
    CHECK(idl_an_count(a) == 9);
    CHECK(idl_an_report_build(a, false, 0, &r) == IDL_OK);
    CHECK_INT(r->n_groups, 5);
    CHECK_INT(r->total_requests, 9);
    CHECK_INT(r->suppressed_groups, 0);
    /* sorted by day, then customer ("" first), then method */
    const char *want[5][3] = {{"2024-05-01", "", M_SEARCH},
                              {"2024-05-01", "acme", M_SEARCH},
                              {"2024-05-01", "acme", M_VERIFY},
                              {"2024-05-01", "beta", M_SEARCH},
                              {"2024-05-02", "acme", M_SEARCH}};
    for (size_t i = 0; i < 5 && i < r->n_groups; i++) {
        CHECK_STR(r->groups[i].day, want[i][0]);
        CHECK_STR(r->groups[i].customer, want[i][1]);
        CHECK_STR(r->groups[i].method, want[i][2]);
    }
    const idl_an_group *g = find(r, "acme", M_SEARCH, "2024-05-02");
    CHECK(g != NULL);
    if (g) {
        CHECK_INT(g->requests, 4);
        CHECK_INT(g->errors[IDL_OK], 2);
        CHECK_INT(g->errors[IDL_NOT_FOUND], 1);
        CHECK_INT(g->errors[IDL_INVALID_ARGUMENT], 1);
        CHECK_INT(g->errors[IDL_INTERNAL], 0);
        CHECK_INT(g->hits, 2);
        CHECK(g->hit_rate == 0.5);
        CHECK_INT(g->distinct_fingerprints, 3); /* 11, 12, 13 */
        /* latencies 100 200 300 400: p50 rank 2, p95 and p99 rank 4 */
        CHECK_INT(g->p50_us, 200);
        CHECK_INT(g->p95_us, 400);
        CHECK_INT(g->p99_us, 400);
    }
    g = find(r, "beta", M_SEARCH, "2024-05-01");
    CHECK(g && g->errors[IDL_RESOURCE_EXHAUSTED] == 2 && g->hit_rate == 0.0 &&
          g->distinct_fingerprints == 1);
    g = find(r, "", M_SEARCH, "2024-05-01");
    CHECK(g && g->requests == 1 && g->errors[IDL_UNAUTHENTICATED] == 1);
    g = find(r, "acme", M_VERIFY, "2024-05-01");
    CHECK(g && g->hit_rate == 1.0 && g->p50_us == 70 && g->p99_us == 70);
    idl_an_report_free(r);
    idl_an_free(a);
}

static void percentiles_nearest_rank(void)
{
    uint32_t v[100];
    for (int i = 0; i < 100; i++)
        v[i] = (uint32_t)(i + 1);
    CHECK_INT(idl_an_percentile(v, 100, 50), 50);
    CHECK_INT(idl_an_percentile(v, 100, 95), 95);
    CHECK_INT(idl_an_percentile(v, 100, 99), 99);
    CHECK_INT(idl_an_percentile(v, 100, 100), 100);
    CHECK_INT(idl_an_percentile(v, 1, 50), 1);
    CHECK_INT(idl_an_percentile(v, 1, 99), 1);
    /* n = 20: ranks ceil(10) = 10, ceil(19) = 19, ceil(19.8) = 20 */
    CHECK_INT(idl_an_percentile(v, 20, 50), 10);
    CHECK_INT(idl_an_percentile(v, 20, 95), 19);
    CHECK_INT(idl_an_percentile(v, 20, 99), 20);
    /* n = 3: ranks ceil(1.5) = 2, ceil(2.85) = 3 */
    CHECK_INT(idl_an_percentile(v, 3, 50), 2);
    CHECK_INT(idl_an_percentile(v, 3, 95), 3);
    /* n = 201: ranks ceil(100.5) = 101, ceil(190.95) = 191, ceil(198.99) = 199 */
    uint32_t w[201];
    for (int i = 0; i < 201; i++)
        w[i] = (uint32_t)(i * 10);
    CHECK_INT(idl_an_percentile(w, 201, 50), 1000);
    CHECK_INT(idl_an_percentile(w, 201, 95), 1900);
    CHECK_INT(idl_an_percentile(w, 201, 99), 1980);

    /* Through the aggregator, fed in a scrambled order with duplicates. */
    idl_an *a = NULL;
    idl_an_report *r = NULL;
    CHECK(idl_an_new(&a) == IDL_OK);
    idl_qlog_entry e;
    for (uint32_t i = 0; i < 1000; i++) {
        uint32_t lat = (i * 7919u) % 1000u + 1; /* a permutation of 1..1000 */
        entry(&e, D1 + i, "c", M_SEARCH, 0, lat, 1, 0);
        add(a, &e);
    }
    entry(&e, D1, "c", M_SEARCH, 0, 4000000000u, 1, 0); /* 1001 values now */
    add(a, &e);
    CHECK(idl_an_report_build(a, false, 0, &r) == IDL_OK);
    CHECK_INT(r->n_groups, 1);
    if (r->n_groups == 1) {
        /* ranks ceil(500.5) = 501, ceil(950.95) = 951, ceil(990.99) = 991 */
        CHECK_INT(r->groups[0].p50_us, 501);
        CHECK_INT(r->groups[0].p95_us, 951);
        CHECK_INT(r->groups[0].p99_us, 991);
    }
    idl_an_report_free(r);
    idl_an_free(a);
}

static void distinct_fingerprints_exact(void)
{
    idl_an *a = NULL;
    idl_an_report *r = NULL;
    CHECK(idl_an_new(&a) == IDL_OK);
    idl_qlog_entry e;
    /* duplicates inside one entry and across entries; 0 is a value like any other */
    entry(&e, D1, "c", M_SEARCH, 0, 1, 0, 4, (uint64_t)1, (uint64_t)1, (uint64_t)0, (uint64_t)2);
    add(a, &e);
    entry(&e, D1, "c", M_SEARCH, 0, 1, 0, 3, (uint64_t)2, (uint64_t)0, UINT64_MAX);
    add(a, &e);
    /* many distinct values, to make the set grow several times; every one twice */
    for (uint64_t i = 0; i < 20000; i++) {
        entry(&e, D1 + 1, "c", M_SEARCH, 0, 1, 0, 2, 1000 + i, 1000 + (i ^ 1));
        add(a, &e);
    }
    /* another group must not share the set */
    entry(&e, D2, "c", M_SEARCH, 0, 1, 0, 2, (uint64_t)1, (uint64_t)2);
    add(a, &e);
    CHECK(idl_an_report_build(a, false, 0, &r) == IDL_OK);
    CHECK_INT(r->n_groups, 2);
    if (r->n_groups == 2) {
        CHECK_INT(r->groups[0].distinct_fingerprints, 4 + 20000); /* 0, 1, 2, MAX + 1000.. */
        CHECK_INT(r->groups[0].requests, 20002);
        CHECK_INT(r->groups[1].distinct_fingerprints, 2);
    }
    idl_an_report_free(r);
    idl_an_free(a);
}

/* One group of 4 distinct subjects (6 requests), one of 5 (5 requests). */
static idl_an *threshold_log(void)
{
    idl_an *a = NULL;
    CHECK(idl_an_new(&a) == IDL_OK);
    idl_qlog_entry e;
    for (uint64_t i = 0; i < 6; i++) {
        entry(&e, D1 + i, "small", M_SEARCH, 0, 10, 1, 1, 100 + i % 4);
        add(a, &e);
    }
    for (uint64_t i = 0; i < 5; i++) {
        entry(&e, D1 + i, "large", M_SEARCH, 0, 10, 1, 1, 200 + i);
        add(a, &e);
    }
    return a;
}

static void deidentification_threshold(void)
{
    idl_an *a = threshold_log();
    idl_an_report *r = NULL;
    CHECK(idl_an_report_build(a, true, 5, &r) == IDL_OK);
    CHECK_INT(r->n_groups, 1);
    CHECK(r->n_groups == 1 && strcmp(r->groups[0].customer, "large") == 0);
    CHECK_INT(r->suppressed_groups, 1);
    CHECK_INT(r->suppressed_requests, 6);
    CHECK_INT(r->total_requests, 5); /* only what is shown */
    idl_an_report_free(r);

    CHECK(idl_an_report_build(a, true, 4, &r) == IDL_OK);
    CHECK_INT(r->n_groups, 2);
    CHECK_INT(r->suppressed_groups, 0);
    CHECK_INT(r->total_requests, 11);
    idl_an_report_free(r);

    CHECK(idl_an_report_build(a, true, 6, &r) == IDL_OK);
    CHECK_INT(r->n_groups, 0);
    CHECK_INT(r->suppressed_groups, 2);
    CHECK_INT(r->total_requests, 0);
    idl_an_report_free(r);

    /* without de-identification every entry counts, whatever k says */
    CHECK(idl_an_report_build(a, false, 100, &r) == IDL_OK);
    CHECK_INT(r->n_groups, 2);
    CHECK_INT(r->total_requests, 11);
    idl_an_report_free(r);

    r = NULL;
    CHECK(idl_an_report_build(a, true, 0, &r) == IDL_INVALID_ARGUMENT);
    CHECK(r == NULL);
    idl_an_free(a);
}

static void unknown_codes_count_as_unknown(void)
{
    idl_an *a = NULL;
    idl_an_report *r = NULL;
    CHECK(idl_an_new(&a) == IDL_OK);
    idl_qlog_entry e;
    entry(&e, D1, "c", M_SEARCH, 99, 1, 0, 0);
    add(a, &e);
    entry(&e, D1, "c", M_SEARCH, -1, 1, 0, 0);
    add(a, &e);
    entry(&e, D1, "c", M_SEARCH, IDL_UNKNOWN, 1, 0, 0);
    add(a, &e);
    CHECK(idl_an_report_build(a, false, 0, &r) == IDL_OK);
    CHECK(r->n_groups == 1 && r->groups[0].errors[IDL_UNKNOWN] == 3);
    char *csv = capture(idl_an_write_csv, r);
    CHECK(csv && strstr(csv, ",UNKNOWN=3,") != NULL);
    free(csv);
    idl_an_report_free(r);
    idl_an_free(a);
}

/* The keys of a JSON object, sorted and joined by ',' (for exact-key checks). */
static void keys_of(json_t *o, char *out, size_t outsz)
{
    const char *names[32];
    size_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (n < 32) names[n++] = k;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(names[j], names[i]) < 0) {
                const char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
    out[0] = 0;
    for (size_t i = 0; i < n; i++) {
        strncat(out, names[i], outsz - strlen(out) - 1);
        if (i + 1 < n) strncat(out, ",", outsz - strlen(out) - 1);
    }
}

static void json_report_shape(void)
{
    idl_an *a = mixed_log();
    idl_an_report *r = NULL;
    CHECK(idl_an_report_build(a, false, 0, &r) == IDL_OK);
    char *text = capture(idl_an_write_json, r);
    json_error_t je;
    json_t *doc = text ? json_loads(text, 0, &je) : NULL; /* one document, nothing after */
    CHECK(doc != NULL);
    if (!doc) fprintf(stderr, "json: %s\n%s\n", je.text, text ? text : "");
    char keys[256];
    if (doc) {
        keys_of(doc, keys, sizeof keys);
        CHECK_STR(keys, "groups,total_requests");
        CHECK_INT(json_integer_value(json_object_get(doc, "total_requests")), 9);
        json_t *groups = json_object_get(doc, "groups");
        CHECK(json_is_array(groups) && json_array_size(groups) == 5);
        uint64_t sum = 0;
        size_t i;
        json_t *g;
        json_array_foreach(groups, i, g)
        {
            keys_of(g, keys, sizeof keys);
            CHECK_STR(keys, "customer,day,distinct_fingerprints,errors,hit_rate,latency_us,method,"
                            "requests");
            keys_of(json_object_get(g, "latency_us"), keys, sizeof keys);
            CHECK_STR(keys, "p50,p95,p99");
            CHECK(json_is_real(json_object_get(g, "hit_rate")));
            CHECK(json_is_object(json_object_get(g, "errors")));
            CHECK(json_object_get(json_object_get(g, "errors"), "OK") == NULL);
            sum += (uint64_t)json_integer_value(json_object_get(g, "requests"));
        }
        CHECK_INT(sum, 9);
        json_t *g4 = json_array_get(groups, 4); /* acme Search, 2024-05-02 */
        CHECK_STR(json_string_value(json_object_get(g4, "day")), "2024-05-02");
        CHECK_STR(json_string_value(json_object_get(g4, "customer")), "acme");
        json_t *errs = json_object_get(g4, "errors");
        keys_of(errs, keys, sizeof keys);
        CHECK_STR(keys, "INVALID_ARGUMENT,NOT_FOUND");
        CHECK_INT(json_integer_value(json_object_get(errs, "NOT_FOUND")), 1);
        CHECK(json_real_value(json_object_get(g4, "hit_rate")) == 0.5);
        CHECK_INT(json_integer_value(json_object_get(json_object_get(g4, "latency_us"), "p50")),
                  200);
        CHECK_INT(json_integer_value(json_object_get(g4, "distinct_fingerprints")), 3);
        CHECK_STR(json_string_value(json_object_get(json_array_get(groups, 0), "customer")), "");
        json_decref(doc);
    }
    free(text);
    idl_an_report_free(r);

    /* de-identified: suppressed_groups appears, and the numbers add up */
    CHECK(idl_an_report_build(a, true, 2, &r) == IDL_OK);
    text = capture(idl_an_write_json, r);
    doc = text ? json_loads(text, 0, &je) : NULL;
    CHECK(doc != NULL);
    if (doc) {
        keys_of(doc, keys, sizeof keys);
        CHECK_STR(keys, "groups,suppressed_groups,total_requests");
        /* only acme Search day 2 has >= 2 distinct fingerprints */
        CHECK_INT(json_integer_value(json_object_get(doc, "suppressed_groups")), 4);
        CHECK_INT(json_integer_value(json_object_get(doc, "total_requests")), 4);
        CHECK_INT(json_array_size(json_object_get(doc, "groups")), 1);
        json_decref(doc);
    }
    free(text);
    idl_an_report_free(r);

    /* an empty report is still one valid object */
    idl_an *empty = NULL;
    CHECK(idl_an_new(&empty) == IDL_OK);
    CHECK(idl_an_report_build(empty, false, 0, &r) == IDL_OK);
    text = capture(idl_an_write_json, r);
    CHECK_STR(text, "{\"total_requests\": 0, \"groups\": []}\n");
    free(text);
    idl_an_report_free(r);
    idl_an_free(empty);
    idl_an_free(a);
}

static void csv_report_and_quoting(void)
{
    idl_an *a = NULL;
    idl_an_report *r = NULL;
    CHECK(idl_an_new(&a) == IDL_OK);
    idl_qlog_entry e;
    entry(&e, D1, "acme, \"inc\"", M_SEARCH, 0, 10, 1, 1, (uint64_t)1);
    add(a, &e);
    entry(&e, D1, "acme, \"inc\"", M_SEARCH, 5, 30, 0, 1, (uint64_t)2);
    add(a, &e);
    entry(&e, D1, "acme, \"inc\"", M_SEARCH, 14, 20, 0, 0);
    add(a, &e);
    entry(&e, D1, "plain", "bad\nmethod", 12, 5, 0, 0);
    add(a, &e);
    CHECK(idl_an_report_build(a, false, 0, &r) == IDL_OK);
    char *csv = capture(idl_an_write_csv, r);
    CHECK_STR(csv, "customer,method,day,requests,errors,hit_rate,p50_us,p95_us,p99_us,"
                   "distinct_fingerprints\n"
                   "\"acme, \"\"inc\"\"\",idlookup.v1.Lookup/Search,2024-05-01,3,"
                   "NOT_FOUND=1;UNAVAILABLE=1,0.3333333333333333,20,30,30,2\n"
                   "plain,\"bad\nmethod\",2024-05-01,1,UNIMPLEMENTED=1,0.0,5,5,5,0\n");
    free(csv);
    idl_an_report_free(r);
    idl_an_free(a);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    idl_an_csv_field(f, "x");
    fputc('|', f);
    idl_an_csv_field(f, "");
    fputc('|', f);
    idl_an_csv_field(f, "a\"b");
    fputc('|', f);
    idl_an_csv_field(f, "cr\rx");
    fclose(f);
    CHECK_STR(buf, "x||\"a\"\"b\"|\"cr\rx\"");
    free(buf);
}

static void invalid_utf8_is_cleaned(void)
{
    char out[64];
    idl_an_utf8_clean("ok \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", out, sizeof out);
    CHECK_STR(out, "ok \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    /* a lone continuation byte, an overlong '/', a surrogate, a cut sequence */
    idl_an_utf8_clean("a\x80"
                      "b\xc0\xaf"
                      "c\xed\xa0\x80"
                      "d\xe2\x82",
                      out, sizeof out);
    CHECK_STR(out, "a\xef\xbf\xbd"
                   "b\xef\xbf\xbd\xef\xbf\xbd"
                   "c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                   "d\xef\xbf\xbd\xef\xbf\xbd");
    /* a small buffer cuts at a character boundary */
    idl_an_utf8_clean("ab\xc3\xa9", out, 4);
    CHECK_STR(out, "ab");

    /* Groups are keyed by the cleaned text, and the JSON parses. */
    idl_an *a = NULL;
    idl_an_report *r = NULL;
    CHECK(idl_an_new(&a) == IDL_OK);
    idl_qlog_entry e;
    entry(&e, D1, "c", "m\xff", 0, 1, 0, 0);
    add(a, &e);
    entry(&e, D1, "c", "m\xfe", 0, 1, 0, 0);
    add(a, &e);
    CHECK(idl_an_report_build(a, false, 0, &r) == IDL_OK);
    CHECK_INT(r->n_groups, 1);
    char *text = capture(idl_an_write_json, r);
    json_t *doc = text ? json_loads(text, 0, NULL) : NULL;
    CHECK(doc != NULL);
    json_decref(doc);
    free(text);
    idl_an_report_free(r);
    idl_an_free(a);
}

static void days_and_times(void)
{
    uint64_t us = 1;
    CHECK(idl_an_parse_day("2024-05-01", &us) == IDL_OK);
    CHECK(us == D1);
    CHECK(idl_an_parse_day("1970-01-01", &us) == IDL_OK && us == 0);
    CHECK(idl_an_parse_day("2024-02-29", &us) == IDL_OK);
    CHECK(idl_an_parse_day("2000-02-29", &us) == IDL_OK);
    us = 42;
    CHECK(idl_an_parse_day("2023-02-29", &us) == IDL_INVALID_ARGUMENT);
    CHECK(idl_an_parse_day("1900-02-29", &us) == IDL_INVALID_ARGUMENT);
    CHECK(idl_an_parse_day("1969-12-31", &us) == IDL_INVALID_ARGUMENT);
    CHECK(idl_an_parse_day("2024-04-31", &us) == IDL_INVALID_ARGUMENT);
    CHECK(idl_an_parse_day("2024-13-01", &us) == IDL_INVALID_ARGUMENT);
    CHECK(idl_an_parse_day("2024-00-10", &us) == IDL_INVALID_ARGUMENT);
    CHECK(idl_an_parse_day("2024-5-01", &us) == IDL_INVALID_ARGUMENT);
    CHECK(idl_an_parse_day("2024-05-01T00", &us) == IDL_INVALID_ARGUMENT);
    CHECK(idl_an_parse_day("2024/05/01", &us) == IDL_INVALID_ARGUMENT);
    CHECK(idl_an_parse_day("", &us) == IDL_INVALID_ARGUMENT);
    CHECK(us == 42);

    char day[16], when[40];
    idl_an_format_day(D1, day);
    CHECK_STR(day, "2024-05-01");
    idl_an_format_day(D2 - 1, day);
    CHECK_STR(day, "2024-05-01");
    idl_an_format_day(D2, day);
    CHECK_STR(day, "2024-05-02");
    idl_an_format_time(D1 + 3723000042ull, when);
    CHECK_STR(when, "2024-05-01T01:02:03.000042Z");
    idl_an_format_time(0, when);
    CHECK_STR(when, "1970-01-01T00:00:00.000000Z");
}

static void export_lines(void)
{
    idl_qlog_entry e;
    entry(&e, D1 + 3723000042ull, "acme", M_SEARCH, 5, 1234, 2, 2, (uint64_t)0xabcdefull,
          UINT64_MAX);
    e.seq = 0x1234;
    e.n_pids = 2;
    e.pids[0] = 1;
    e.pids[1] = 0xfedcba9876543210ull;

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(idl_an_export_ndjson(f, &e) == IDL_OK);
    fclose(f);
    CHECK(len > 0 && buf[len - 1] == '\n' && memchr(buf, '\n', len) == buf + len - 1);
    json_t *o = json_loads(buf, 0, NULL);
    CHECK(o != NULL);
    if (o) {
        char keys[256];
        keys_of(o, keys, sizeof keys);
        CHECK_STR(keys, "code,code_name,customer,fingerprints,key_id,latency_us,method,"
                        "person_ids,persons,request_id,time,time_us");
        CHECK(json_integer_value(json_object_get(o, "time_us")) == (json_int_t)e.time_us);
        CHECK_STR(json_string_value(json_object_get(o, "time")), "2024-05-01T01:02:03.000042Z");
        char rid[32];
        idl_qlog_request_id(e.time_us, e.seq, rid);
        CHECK_STR(json_string_value(json_object_get(o, "request_id")), rid);
        CHECK_STR(json_string_value(json_object_get(o, "customer")), "acme");
        CHECK_STR(json_string_value(json_object_get(o, "key_id")), "k_test");
        CHECK_STR(json_string_value(json_object_get(o, "method")), M_SEARCH);
        CHECK_INT(json_integer_value(json_object_get(o, "code")), 5);
        CHECK_STR(json_string_value(json_object_get(o, "code_name")), "NOT_FOUND");
        CHECK_INT(json_integer_value(json_object_get(o, "latency_us")), 1234);
        CHECK_INT(json_integer_value(json_object_get(o, "persons")), 2);
        json_t *p = json_object_get(o, "person_ids");
        CHECK(json_array_size(p) == 2);
        CHECK_STR(json_string_value(json_array_get(p, 0)), "p_0000000000000001");
        CHECK_STR(json_string_value(json_array_get(p, 1)), "p_fedcba9876543210");
        json_t *fp = json_object_get(o, "fingerprints");
        CHECK(json_array_size(fp) == 2);
        CHECK_STR(json_string_value(json_array_get(fp, 0)), "0000000000abcdef");
        CHECK_STR(json_string_value(json_array_get(fp, 1)), "ffffffffffffffff");
        json_decref(o);
    }
    free(buf);

    buf = NULL;
    f = open_memstream(&buf, &len);
    CHECK(idl_an_export_csv_header(f) == IDL_OK);
    CHECK(idl_an_export_csv(f, &e) == IDL_OK);
    snprintf(e.customer, sizeof e.customer, "x,y");
    e.n_pids = 0;
    e.n_fps = 0;
    e.code = 0;
    CHECK(idl_an_export_csv(f, &e) == IDL_OK);
    fclose(f);
    char rid[32], want[1024];
    idl_qlog_request_id(e.time_us, e.seq, rid);
    snprintf(want, sizeof want,
             "time_us,time,request_id,customer,key_id,method,code,code_name,latency_us,persons,"
             "person_ids,fingerprints\n"
             "%llu,2024-05-01T01:02:03.000042Z,%s,acme,k_test,%s,5,NOT_FOUND,1234,2,"
             "p_0000000000000001;p_fedcba9876543210,0000000000abcdef;ffffffffffffffff\n"
             "%llu,2024-05-01T01:02:03.000042Z,%s,\"x,y\",k_test,%s,0,OK,1234,2,,\n",
             (unsigned long long)e.time_us, rid, M_SEARCH, (unsigned long long)e.time_us, rid,
             M_SEARCH);
    CHECK_STR(buf, want);
    free(buf);
}

/* A million entries over a few groups stay fast (nothing quadratic) and exact. */
static void many_entries(void)
{
    idl_an *a = NULL;
    idl_an_report *r = NULL;
    CHECK(idl_an_new(&a) == IDL_OK);
    idl_qlog_entry e;
    const char *customers[3] = {"a", "b", "c"};
    uint64_t n = 1000000;
    for (uint64_t i = 0; i < n; i++) {
        entry(&e, D1 + (i % 4) * DAY + i, customers[i % 3], (i & 1) ? M_SEARCH : M_VERIFY,
              (int)(i % 17), (uint32_t)(i % 1000), (uint32_t)(i % 2), 1, i % 5000);
        if (idl_an_add(a, &e) != IDL_OK) {
            CHECK(0);
            break;
        }
    }
    CHECK(idl_an_report_build(a, false, 0, &r) == IDL_OK);
    CHECK_INT(r->total_requests, n);
    CHECK_INT(r->n_groups, 12); /* day, customer and method repeat every 12 entries */
    idl_an_report_free(r);
    /* Groups with every distinct-fingerprint count of 5000/... : none below 100 */
    CHECK(idl_an_report_build(a, true, 100, &r) == IDL_OK);
    CHECK_INT(r->suppressed_groups, 0);
    CHECK_INT(r->total_requests, n);
    idl_an_report_free(r);
    idl_an_free(a);
}

int main(void)
{
    RUN(groups_counts_and_order);
    RUN(percentiles_nearest_rank);
    RUN(distinct_fingerprints_exact);
    RUN(deidentification_threshold);
    RUN(unknown_codes_count_as_unknown);
    RUN(json_report_shape);
    RUN(csv_report_and_quoting);
    RUN(invalid_utf8_is_cleaned);
    RUN(days_and_times);
    RUN(export_lines);
    RUN(many_entries);
    return test_summary();
}
