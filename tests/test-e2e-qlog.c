/* End to end over the real daemon: the query log (DATA.md §5) and the
 * analytics job over it (API.md §6: `idlookup analytics`, `analytics export`).
 *
 * Every request that reaches the daemon is one entry, whatever its outcome;
 * entries older than the flush interval survive kill -9 and a clean stop
 * loses nothing; the job reads the log while the daemon serves; and the log
 * holds fingerprints, never the identifiers sent.
 */
#include "e2e.h"
#include "status.h"
#include "testutil.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HEALTH "grpc.health.v1.Health/Check"
#define SEARCH "idlookup.v1.Lookup/Search"
#define VALIDATE "idlookup.v1.Lookup/Validate"
#define VERIFY "idlookup.v1.Lookup/Verify"
#define BATCH "idlookup.v1.Lookup/Batch"
#define UPSERT "idlookup.v1.Admin/Upsert"
#define STATS "idlookup.v1.Admin/Stats"
#define NOPE "idlookup.v1.Lookup/Nope"

static e2e_env E;

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- what the test sent: replies to find in the log, identifiers that must
 * not be there ---- */

typedef struct {
    char rid[40];
    char customer[32];
    char method[64];
    int code;
} sent_call;

#define MAX_SENT 256
static sent_call sent[MAX_SENT];
static size_t n_sent;

/* Every identifier the test puts in any request (raw and normalized forms). */
static const char *const pii[] = {
    /* emails */
    "annelise.v@example.org",
    "bart.oakhurst@example.org",
    "cordelia.f@example.org",
    "nobody.q1@example.org",
    "nobody.q2@example.org",
    "dunstan.k@example.org",
    "annelise.v",
    "bart.oakhurst",
    "cordelia.f",
    "dunstan.k",
    /* phones, raw and E.164 */
    "(802) 555-0181",
    "802-555-0182",
    "+1 802 555 0183",
    "802.555.0184",
    "+18025550181",
    "+18025550182",
    "+18025550183",
    "+18025550184",
    "555-0181",
    "555-0182",
    "555 0183",
    "555-0183",
    "555.0184",
    /* names */
    "Annelise",
    "Vandermeer",
    "Bartholomew",
    "Oakhurst",
    "Cordelia",
    "Fairweather",
    "Dunstan",
    "Kettleby",
    /* streets, raw and normalized, and their distinctive words */
    "17 Juniper Hollow Road",
    "17 JUNIPER HOLLOW RD",
    "Juniper",
    "Hollow",
    "48 Quarry Ridge Lane",
    "48 QUARRY RIDGE LN",
    "Quarry",
    "Ridge",
    /* cities */
    "Montpelier",
    "Barre",
    "Middlebury",
    /* IPs */
    "192.0.2.44",
    "2001:db8::17",
    "2001:0db8:0000:0000:0000:0000:0000:0017",
    "198.51.100.61",
};
/* Digit-only identifiers: matched as whole tokens (not inside the decimal
 * and hex numbers every export line carries).  Zips start with 0, which no
 * JSON number does. */
static const char *const pii_digits[] = {"05602",      "05641",       "05753",
                                         "8025550181", "8025550182",  "8025550183",
                                         "8025550184", "18025550181", "18025550183"};

static const char *const records =
    "{\"records\": ["
    "{\"source_id\": \"qa-ann\", \"first_name\": \"Annelise\", \"last_name\": \"Vandermeer\", "
    "\"emails\": [\"annelise.v@example.org\"], \"phones\": [\"(802) 555-0181\"], "
    "\"addresses\": [{\"street\": \"17 Juniper Hollow Road\", \"city\": \"Montpelier\", "
    "\"state\": \"VT\", \"zip\": \"05602\"}], \"ips\": [\"192.0.2.44\"]},"
    "{\"source_id\": \"qa-bart\", \"first_name\": \"Bartholomew\", \"last_name\": \"Oakhurst\", "
    "\"emails\": [\"bart.oakhurst@example.org\"], \"phones\": [\"802-555-0182\"], "
    "\"addresses\": [{\"street\": \"48 Quarry Ridge Lane\", \"city\": \"Barre\", \"state\": "
    "\"VT\", "
    "\"zip\": \"05641\"}], \"ips\": [\"2001:db8::17\"]},"
    "{\"source_id\": \"qa-cora\", \"first_name\": \"Cordelia\", \"last_name\": \"Fairweather\", "
    "\"emails\": [\"cordelia.f@example.org\"], \"phones\": [\"+1 802 555 0183\"]}"
    "]}";

/* Calls method, checks the code and remembers the reply's request-id with
 * the customer and method its log entry must carry. */
static idl_reply *send_at(int line, const char *key, const char *customer, const char *method,
                          const char *json, int want)
{
    idl_reply *r = e2e_call(&E, key, method, json);
    expect_at(__FILE__, line, r != NULL, "%s %s: no reply", method, json);
    if (!r) return NULL;
    expect_at(__FILE__, line, r->code == want, "%s %s: code %d (%s), want %d", method, json,
              r->code, r->message ? r->message : "", want);
    expect_at(__FILE__, line, r->request_id && strlen(r->request_id) > 0, "%s: no meta.request-id",
              method);
    if (n_sent < MAX_SENT && r->request_id) {
        sent_call *s = &sent[n_sent++];
        snprintf(s->rid, sizeof s->rid, "%s", r->request_id);
        snprintf(s->customer, sizeof s->customer, "%s", customer);
        snprintf(s->method, sizeof s->method, "%s", method);
        s->code = r->code;
    }
    return r;
}
#define SEND(key, customer, method, json, want)                                                    \
    idl_reply_free(send_at(__LINE__, (key), (customer), (method), (json), (want)))

/* Sends raw bytes (not a valid envelope); expects INVALID_ARGUMENT, id 0. */
static void send_garbage(int line, const void *bytes, size_t len)
{
    void *rep = NULL;
    size_t rl = 0;
    int rc = idl_client_call_raw(E.c, bytes, len, 10000, &rep, &rl);
    expect_at(__FILE__, line, rc == 0, "garbage: no reply (%d)", rc);
    idl_reply *r = NULL;
    if (rc == 0 && idl_reply_decode(rep, rl, &r) == 0) {
        expect_at(__FILE__, line, r->code == IDL_INVALID_ARGUMENT && r->id == 0,
                  "garbage: code %d id %llu", r->code, (unsigned long long)r->id);
        if (r->request_id && n_sent < MAX_SENT) {
            sent_call *s = &sent[n_sent++];
            snprintf(s->rid, sizeof s->rid, "%s", r->request_id);
            s->customer[0] = 0;
            s->method[0] = 0;
            s->code = r->code;
        }
    } else {
        expect_at(__FILE__, line, false, "garbage: undecodable reply");
    }
    idl_reply_free(r);
    free(rep);
}

static long long stats_queries_logged(void)
{
    idl_reply *r = e2e_call(&E, E.admin_key, STATS, "{}");
    long long q = r && r->code == 0 ? e2e_uint(e2e_get(&r->body, "queries_logged")) : -1;
    if (r && r->request_id && n_sent < MAX_SENT) {
        sent_call *s = &sent[n_sent++];
        snprintf(s->rid, sizeof s->rid, "%s", r->request_id);
        snprintf(s->customer, sizeof s->customer, "admin-co");
        snprintf(s->method, sizeof s->method, "%s", STATS);
        s->code = r->code;
    }
    idl_reply_free(r);
    return q;
}

/* ---- the export and the report, through the CLI ---- */

typedef struct {
    long long time_us;
    char rid[40];
    char customer[64];
    char method[160];
    int code;
    size_t n_fps;
    bool fps_ok; /* every fingerprint is 16 lower-case hex digits */
} entry;

/* Runs `idlookup analytics export --format fmt`; returns stdout (caller
 * frees) or NULL after reporting a failure. */
static char *run_export(int line, const char *fmt)
{
    const char *args[] = {"analytics", "export", "--data", E.data, "--format", fmt, NULL};
    char *out = NULL, *err = NULL;
    int st = e2e_cli(args, NULL, &out, &err);
    expect_at(__FILE__, line, st == 0, "analytics export --format %s: exit %d: %s", fmt, st,
              err ? err : "");
    free(err);
    if (st != 0) {
        free(out);
        return NULL;
    }
    return out;
}

static const char *str_or(const json_t *v, const char *dflt)
{
    const char *s = json_string_value(v);
    return s ? s : dflt;
}

/* Parses NDJSON export text into entries (caller frees). */
static entry *parse_export(int line, const char *text, size_t *n)
{
    size_t cap = 64;
    entry *es = calloc(cap, sizeof(*es));
    *n = 0;
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len > 0) {
            json_error_t je;
            json_t *o = json_loadb(p, len, 0, &je);
            expect_at(__FILE__, line, o && json_is_object(o),
                      "export line is not a JSON object: %.*s", (int)len, p);
            if (o) {
                if (*n == cap) es = realloc(es, (cap *= 2) * sizeof(*es));
                entry *e = &es[(*n)++];
                memset(e, 0, sizeof(*e));
                e->time_us = json_integer_value(json_object_get(o, "time_us"));
                snprintf(e->rid, sizeof e->rid, "%s", str_or(json_object_get(o, "request_id"), ""));
                snprintf(e->customer, sizeof e->customer, "%s",
                         str_or(json_object_get(o, "customer"), "?"));
                snprintf(e->method, sizeof e->method, "%s",
                         str_or(json_object_get(o, "method"), "?"));
                e->code = (int)json_integer_value(json_object_get(o, "code"));
                json_t *fps = json_object_get(o, "fingerprints");
                e->fps_ok = json_is_array(fps);
                e->n_fps = json_array_size(fps);
                for (size_t i = 0; i < e->n_fps; i++) {
                    const char *f = json_string_value(json_array_get(fps, i));
                    bool ok = f && strlen(f) == 16;
                    for (int j = 0; ok && j < 16; j++)
                        ok = isdigit((unsigned char)f[j]) || (f[j] >= 'a' && f[j] <= 'f');
                    e->fps_ok &= ok;
                }
                json_decref(o);
            }
        }
        p = nl ? nl + 1 : NULL;
    }
    return es;
}

static entry *export_entries(int line, size_t *n)
{
    char *text = run_export(line, "ndjson");
    *n = 0;
    if (!text) return calloc(1, sizeof(entry));
    entry *es = parse_export(line, text, n);
    free(text);
    return es;
}

static const entry *find_rid(const entry *es, size_t n, const char *rid)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(es[i].rid, rid) == 0) return &es[i];
    return NULL;
}

/* Health entries the harness's start-up polls made in (after_us, before_us). */
static size_t harness_polls(const entry *es, size_t n, long long after_us, long long before_us)
{
    size_t h = 0;
    for (size_t i = 0; i < n; i++)
        h += strcmp(es[i].method, HEALTH) == 0 && es[i].customer[0] == 0 &&
             es[i].time_us > after_us && es[i].time_us < before_us;
    return h;
}

/* Checks that every remembered reply from index `from` on has its entry. */
static void expect_sent_logged(int line, const entry *es, size_t n, size_t from)
{
    for (size_t i = from; i < n_sent; i++) {
        const entry *e = find_rid(es, n, sent[i].rid);
        expect_at(__FILE__, line, e != NULL, "request-id %s (%s) is not in the log", sent[i].rid,
                  sent[i].method);
        if (!e) continue;
        expect_at(__FILE__, line,
                  strcmp(e->customer, sent[i].customer) == 0 &&
                      strcmp(e->method, sent[i].method) == 0 && e->code == sent[i].code,
                  "entry %s: customer \"%s\" method \"%s\" code %d, want \"%s\" \"%s\" %d", e->rid,
                  e->customer, e->method, e->code, sent[i].customer, sent[i].method, sent[i].code);
    }
}

/* Runs `idlookup analytics` with extra args; returns the parsed JSON report
 * (caller json_decref's) or NULL. */
static json_t *run_report(int line, const char *const *extra, char **text_out)
{
    const char *args[16] = {"analytics", "--data", E.data};
    int i = 3;
    for (int j = 0; extra && extra[j] && i < 15; j++)
        args[i++] = extra[j];
    args[i] = NULL;
    char *out = NULL, *err = NULL;
    int st = e2e_cli(args, NULL, &out, &err);
    expect_at(__FILE__, line, st == 0, "analytics: exit %d: %s", st, err ? err : "");
    json_error_t je;
    json_t *rep = st == 0 ? json_loads(out ? out : "", 0, &je) : NULL;
    expect_at(__FILE__, line, st != 0 || (rep && json_is_object(rep)),
              "analytics output is not one JSON object: %s", out ? out : "");
    if (text_out)
        *text_out = out;
    else
        free(out);
    free(err);
    return rep;
}

static long long total_requests(const json_t *rep)
{
    json_t *t = json_object_get(rep, "total_requests");
    return json_is_integer(t) ? json_integer_value(t) : -1;
}

typedef struct {
    long long requests, distinct, groups;
    long long errors[IDL_STATUS_COUNT];
    long long other_errors; /* names not known */
    double hits;            /* hit_rate * requests, summed */
} group_sum;

/* Sums the groups of customer × method over days. */
static group_sum sum_groups(const json_t *rep, const char *customer, const char *method)
{
    group_sum s;
    memset(&s, 0, sizeof s);
    json_t *gs = json_object_get(rep, "groups");
    size_t i;
    json_t *g;
    json_array_foreach(gs, i, g)
    {
        const char *c = json_string_value(json_object_get(g, "customer"));
        const char *m = json_string_value(json_object_get(g, "method"));
        if (!c || !m || strcmp(c, customer) || strcmp(m, method)) continue;
        long long req = json_integer_value(json_object_get(g, "requests"));
        s.groups++;
        s.requests += req;
        s.distinct += json_integer_value(json_object_get(g, "distinct_fingerprints"));
        s.hits += json_number_value(json_object_get(g, "hit_rate")) * (double)req;
        const char *name;
        json_t *v;
        json_object_foreach(json_object_get(g, "errors"), name, v)
        {
            int code = -1;
            for (int k = 0; k < IDL_STATUS_COUNT; k++)
                if (strcmp(idl_status_name(k), name) == 0) code = k;
            if (code >= 0)
                s.errors[code] += json_integer_value(v);
            else
                s.other_errors += json_integer_value(v);
        }
    }
    return s;
}

/* errors: the expected non-OK counts, as code/count pairs ending with -1. */
static void expect_group(int line, const json_t *rep, const char *customer, const char *method,
                         long long requests, long long distinct, const int *errors)
{
    group_sum s = sum_groups(rep, customer, method);
    expect_at(__FILE__, line, s.requests == requests,
              "group (\"%s\", %s): %lld requests, want %lld", customer, method, s.requests,
              requests);
    if (distinct >= 0)
        expect_at(__FILE__, line, s.distinct == distinct,
                  "group (\"%s\", %s): %lld distinct fingerprints, want %lld", customer, method,
                  s.distinct, distinct);
    long long want[IDL_STATUS_COUNT] = {0};
    for (int i = 0; errors && errors[i] >= 0; i += 2)
        want[errors[i]] = errors[i + 1];
    for (int k = 1; k < IDL_STATUS_COUNT; k++)
        expect_at(__FILE__, line, s.errors[k] == want[k],
                  "group (\"%s\", %s): errors %s = %lld, want %lld", customer, method,
                  idl_status_name(k), s.errors[k], want[k]);
    expect_at(__FILE__, line, s.other_errors == 0,
              "group (\"%s\", %s): error names that are not code names", customer, method);
}

/* ---- cases ---- */

static long long t_started;   /* µs, just after the first e2e_start returned */
static long long first_total; /* total_requests of the first report */
static size_t first_n_entries;
static long long t_stopped; /* µs, when the first stop returned */

static void counts_and_report(void)
{
    /* Requests, with the log entries each makes (a Batch of 3 makes 4). */
    SEND(E.admin_key, "admin-co", UPSERT, records, 0);                           /* 1 */
    long long q0 = stats_queries_logged();                                       /* 1 */
    SEND(NULL, "", HEALTH, "{}", 0);                                             /* 1 */
    SEND(NULL, "", HEALTH, "{\"service\": \"idlookup.v1.Lookup\"}", 0);          /* 1 */
    SEND(NULL, "", HEALTH, "{\"service\": \"no.such.Service\"}", IDL_NOT_FOUND); /* 1 */
    /* lookup-co Search: 5 distinct identifiers (already in normalized form),
     * 3 of them hits; then one refused for its body. */
    SEND(E.lookup_key, "lookup-co", SEARCH, "{\"email\": \"annelise.v@example.org\"}", 0); /* 1 */
    SEND(E.lookup_key, "lookup-co", SEARCH, "{\"phone\": \"+18025550182\"}", 0);           /* 1 */
    SEND(E.lookup_key, "lookup-co", SEARCH, "{\"ip\": \"192.0.2.44\"}", 0);                /* 1 */
    SEND(E.lookup_key, "lookup-co", SEARCH, "{\"email\": \"nobody.q1@example.org\"}", 0);  /* 1 */
    SEND(E.lookup_key, "lookup-co", SEARCH, "{\"email\": \"nobody.q2@example.org\"}", 0);  /* 1 */
    SEND(E.lookup_key, "lookup-co", SEARCH, "{\"limit\": 0}", IDL_INVALID_ARGUMENT);       /* 1 */
    /* all-co: one subject asked about three times, spelled three ways. */
    SEND(E.all_key, "all-co", SEARCH, "{\"email\": \"Bart.Oakhurst@Example.org\"}", 0);   /* 1 */
    SEND(E.all_key, "all-co", SEARCH, "{\"email\": \"bart.oakhurst@example.org\"}", 0);   /* 1 */
    SEND(E.all_key, "all-co", SEARCH, "{\"email\": \" BART.OAKHURST@example.ORG \"}", 0); /* 1 */
    /* Refused before or at the key: no customer. */
    SEND("idl_k000000000000_notarealsecret", "", SEARCH, "{\"email\": \"annelise.v@example.org\"}",
         IDL_UNAUTHENTICATED);                                                              /* 1 */
    SEND(NULL, "", SEARCH, "{\"email\": \"annelise.v@example.org\"}", IDL_UNAUTHENTICATED); /* 1 */
    SEND(E.lookup_key, "", NOPE, "{\"email\": \"annelise.v@example.org\"}",
         IDL_UNIMPLEMENTED); /* 1 */
    static const unsigned char garbage[] = {0xc1, 0xde, 0xad, 0xbe, 0xef,
                                            'n',  'o',  't',  0x00, 0xff};
    send_garbage(__LINE__, garbage, sizeof garbage); /* 1 */
    /* A valid key without the scope: the customer is known. */
    SEND(E.privacy_key, "privacy-co", SEARCH, "{\"email\": \"cordelia.f@example.org\"}",
         IDL_PERMISSION_DENIED); /* 1 */
    /* A Batch of three: one entry for the Batch and one per inner call. */
    SEND(E.lookup_key, "lookup-co", BATCH,
         "{\"calls\": [{\"method\": \"" SEARCH
         "\", \"body\": {\"street\": \"17 Juniper Hollow Road\", "
         "\"zip\": \"05602\"}}, {\"method\": \"" VALIDATE "\", \"body\": {\"email\": "
         "\"cordelia.f@example.org\"}}, {\"method\": \"" VERIFY "\", \"body\": {\"first_name\": "
         "\"Cordelia\", \"last_name\": \"Fairweather\", \"phone\": \"(802) 555-0183\"}}]}",
         0);                               /* 4 */
    long long q1 = stats_queries_logged(); /* 1 */
    /* Entries between the two Stats calls: the first Stats itself, then 3
     * Health, 6 lookup-co Search, 3 all-co Search, 2 UNAUTHENTICATED, 1
     * UNIMPLEMENTED, 1 garbage, 1 PERMISSION_DENIED, 4 for the Batch = 22.
     * (Stats counts entries before its own.) */
    CHECK_INT(q1, q0 + 22);
    const long long mine = 24; /* every entry above: Upsert, Stats, the 22, Stats */

    CHECK_INT(e2e_stop(&E), 0);
    t_stopped = now_us();

    size_t n = 0;
    entry *es = export_entries(__LINE__, &n);
    /* e2e_start polls Health (no key, no body) until SERVING; each poll that
     * reached the daemon before e2e_start returned is one entry too.  They are
     * the Health entries older than t_started (ours all came later). */
    size_t h = harness_polls(es, n, 0, t_started);
    EXPECT(h >= 1, "the harness's SERVING poll is logged");
    /* Before the first Stats: the harness polls and the Upsert. */
    CHECK_INT(q0, (long long)h + 1);
    CHECK_INT((long long)n, (long long)h + mine);
    expect_sent_logged(__LINE__, es, n, 0);
    bool fps_ok = true;
    for (size_t i = 0; i < n; i++)
        fps_ok &= es[i].fps_ok;
    EXPECT(fps_ok, "every fingerprint is 16 hex digits");
    first_n_entries = n;
    free(es);

    json_t *rep = run_report(__LINE__, NULL, NULL);
    if (rep) {
        first_total = total_requests(rep);
        CHECK_INT(first_total, (long long)h + mine);
        const int health_err[] = {IDL_NOT_FOUND, 1, -1};
        expect_group(__LINE__, rep, "", HEALTH, 3 + (long long)h, 0, health_err);
        const int search_err[] = {IDL_INVALID_ARGUMENT, 1, -1};
        /* 5 + the refused one + the one inside Batch; distinct: 5 + street + zip. */
        expect_group(__LINE__, rep, "lookup-co", SEARCH, 7, 7, search_err);
        group_sum s = sum_groups(rep, "lookup-co", SEARCH);
        EXPECT(s.hits > 3.999 && s.hits < 4.001,
               "lookup-co Search: hit_rate × requests = %g, want 4 of 7", s.hits);
        expect_group(__LINE__, rep, "lookup-co", VALIDATE, 1, 1, NULL);
        expect_group(__LINE__, rep, "lookup-co", VERIFY, 1, 3, NULL);
        expect_group(__LINE__, rep, "lookup-co", BATCH, 1, 0, NULL);
        s = sum_groups(rep, "lookup-co", VALIDATE);
        EXPECT(s.hits < 0.001, "Validate returns no persons: hit_rate 0");
        /* One subject, three spellings: one distinct fingerprint. */
        expect_group(__LINE__, rep, "all-co", SEARCH, 3, 1, NULL);
        s = sum_groups(rep, "all-co", SEARCH);
        EXPECT(s.hits > 2.999 && s.hits < 3.001, "all-co Search: hit_rate 1");
        const int unauth[] = {IDL_UNAUTHENTICATED, 2, -1};
        expect_group(__LINE__, rep, "", SEARCH, 2, 0, unauth);
        const int unimpl[] = {IDL_UNIMPLEMENTED, 1, -1};
        expect_group(__LINE__, rep, "", NOPE, 1, 0, unimpl);
        const int undecodable[] = {IDL_INVALID_ARGUMENT, 1, -1};
        expect_group(__LINE__, rep, "", "", 1, 0, undecodable);
        const int denied[] = {IDL_PERMISSION_DENIED, 1, -1};
        expect_group(__LINE__, rep, "privacy-co", SEARCH, 1, -1, denied);
        expect_group(__LINE__, rep, "admin-co", UPSERT, 1, 0, NULL);
        expect_group(__LINE__, rep, "admin-co", STATS, 2, 0, NULL);
        /* No group beyond those. */
        size_t ng = json_array_size(json_object_get(rep, "groups"));
        long long named =
            sum_groups(rep, "", HEALTH).groups + sum_groups(rep, "lookup-co", SEARCH).groups +
            sum_groups(rep, "lookup-co", VALIDATE).groups +
            sum_groups(rep, "lookup-co", VERIFY).groups +
            sum_groups(rep, "lookup-co", BATCH).groups + sum_groups(rep, "all-co", SEARCH).groups +
            sum_groups(rep, "", SEARCH).groups + sum_groups(rep, "", NOPE).groups +
            sum_groups(rep, "", "").groups + sum_groups(rep, "privacy-co", SEARCH).groups +
            sum_groups(rep, "admin-co", UPSERT).groups + sum_groups(rep, "admin-co", STATS).groups;
        CHECK_INT((long long)ng, named);
        json_decref(rep);
    }

    /* For partners: groups under k = 5 distinct fingerprints are left out;
     * only lookup-co Search (7) reaches it. */
    const char *deid[] = {"--deidentified", NULL};
    rep = run_report(__LINE__, deid, NULL);
    if (rep) {
        size_t i;
        json_t *g;
        json_array_foreach(json_object_get(rep, "groups"), i, g)
            EXPECT(json_integer_value(json_object_get(g, "distinct_fingerprints")) >= 5,
                   "--deidentified shows a group under k: %s %s",
                   json_string_value(json_object_get(g, "customer")),
                   json_string_value(json_object_get(g, "method")));
        CHECK_INT(sum_groups(rep, "lookup-co", SEARCH).requests, 7);
        CHECK_INT(sum_groups(rep, "lookup-co", VALIDATE).groups, 0);
        CHECK_INT(sum_groups(rep, "", HEALTH).groups, 0);
        CHECK_INT(total_requests(rep), 7);
        json_decref(rep);
    }
    const char *deid1[] = {"--deidentified", "--k", "1", NULL};
    rep = run_report(__LINE__, deid1, NULL);
    if (rep) {
        CHECK_INT(sum_groups(rep, "lookup-co", SEARCH).requests, 7);
        CHECK_INT(sum_groups(rep, "lookup-co", VALIDATE).requests, 1);
        CHECK_INT(sum_groups(rep, "lookup-co", VERIFY).requests, 1);
        CHECK_INT(sum_groups(rep, "all-co", SEARCH).requests, 3);
        CHECK_INT(sum_groups(rep, "", HEALTH).groups, 0); /* no fingerprints at all */
        CHECK_INT(total_requests(rep), 12);
        json_decref(rep);
    }

    /* CSV: a header naming the report's fields, one row per group. */
    const char *args[] = {"analytics", "--data", E.data, "--format", "csv", NULL};
    char *out = NULL;
    int st = e2e_cli(args, NULL, &out, NULL);
    CHECK_INT(st, 0);
    if (out) {
        char *nl = strchr(out, '\n');
        char header[512] = "";
        if (nl) snprintf(header, sizeof header, "%.*s", (int)(nl - out), out);
        EXPECT(strncmp(header, "customer,method,day,requests,", 29) == 0 &&
                   strstr(header, "errors") && strstr(header, "hit_rate") &&
                   strstr(header, "p50") && strstr(header, "p95") && strstr(header, "p99") &&
                   strstr(header, "distinct_fingerprints"),
               "CSV header: %s", header);
        size_t lines = 0;
        for (char *p = out; *p; p++)
            lines += *p == '\n';
        json_t *rep2 = run_report(__LINE__, NULL, NULL);
        CHECK_INT((long long)lines,
                  1 + (long long)json_array_size(json_object_get(rep2, "groups")));
        json_decref(rep2);
        /* The customer "" rows start with an empty field. */
        EXPECT(strstr(out, "\n," HEALTH ",") != NULL || strstr(out, "\n\"\"," HEALTH ",") != NULL,
               "CSV has the keyless Health row: %s", out);
    }
    free(out);
}

/* The job reads the log while the daemon serves. */
static void live_report(void)
{
    e2e_start(&E, NULL);
    long long t_start2 = now_us();
    size_t from = n_sent;
    for (int i = 0; i < 4; i++)
        SEND(E.lookup_key, "lookup-co", SEARCH, "{\"email\": \"dunstan.k@example.org\"}", 0);
    SEND(E.lookup_key, "lookup-co", SEARCH, "{\"phone\": \"802.555.0184\"}", 0);
    sleep_ms(1200); /* more than the flush interval (at most 1 s) */
    json_t *rep = run_report(__LINE__, NULL, NULL);
    size_t n = 0;
    entry *es = export_entries(__LINE__, &n);
    expect_sent_logged(__LINE__, es, n, from);
    size_t h2 = harness_polls(es, n, t_stopped, t_start2);
    EXPECT(h2 >= 1, "the second start's SERVING poll is logged");
    CHECK_INT((long long)n, (long long)first_n_entries + (long long)h2 + 5);
    if (rep) {
        CHECK_INT(total_requests(rep), first_total + (long long)h2 + 5);
        CHECK_INT(sum_groups(rep, "lookup-co", SEARCH).requests, 7 + 5);
        json_decref(rep);
    }
    free(es);
}

/* Entries older than the flush interval survive kill -9. */
static void survives_kill9(void)
{
    size_t from = n_sent;
    SEND(E.lookup_key, "lookup-co", SEARCH, "{\"email\": \"annelise.v@example.org\"}", 0);
    SEND(E.lookup_key, "lookup-co", VALIDATE, "{\"phone\": \"(802) 555-0181\"}", 0);
    SEND(E.all_key, "all-co", VERIFY,
         "{\"first_name\": \"Annelise\", \"last_name\": \"Vandermeer\", \"email\": "
         "\"annelise.v@example.org\"}",
         0);
    SEND("idl_k000000000000_notarealsecret", "", SEARCH, "{\"ip\": \"198.51.100.61\"}",
         IDL_UNAUTHENTICATED);
    SEND(NULL, "", HEALTH, "{}", 0);
    sleep_ms(1500);
    e2e_kill9(&E);
    e2e_start(&E, NULL);
    /* queries_logged still agrees with the log: every entry before this
     * Stats call (the log read after a flush interval also holds the Stats
     * entry itself). */
    long long q = stats_queries_logged();
    sleep_ms(1200);
    size_t n = 0;
    entry *es = export_entries(__LINE__, &n);
    expect_sent_logged(__LINE__, es, n, from);
    CHECK_INT(q, (long long)n - 1);
    free(es);
}

/* A clean shutdown right after the replies loses nothing. */
static void clean_stop_loses_nothing(void)
{
    size_t from = n_sent;
    SEND(E.lookup_key, "lookup-co", SEARCH,
         "{\"street\": \"48 Quarry Ridge Lane\", \"city\": \"Barre\", \"state\": \"VT\"}", 0);
    SEND(E.lookup_key, "lookup-co", SEARCH,
         "{\"first_name\": \"Bartholomew\", \"last_name\": \"Oakhurst\", \"zip\": \"05641\"}", 0);
    SEND(E.lookup_key, "lookup-co", VALIDATE,
         "{\"address\": {\"street\": \"17 Juniper Hollow Road\", \"city\": \"Montpelier\", "
         "\"state\": "
         "\"VT\", \"zip\": \"05602\"}}",
         0);
    SEND(E.lookup_key, "lookup-co", SEARCH, "{\"ip\": \"2001:0db8:0000:0000:0000:0000:0000:0017\"}",
         0);
    SEND(E.lookup_key, "lookup-co", SEARCH,
         "{\"first_name\": \"Dunstan\", \"last_name\": \"Kettleby\", "
         "\"city\": \"Middlebury\", \"zip\": \"05753\"}",
         0);
    SEND(E.lookup_key, "", NOPE, "{}", IDL_UNIMPLEMENTED);
    CHECK_INT(e2e_stop(&E), 0);
    size_t n = 0;
    entry *es = export_entries(__LINE__, &n);
    expect_sent_logged(__LINE__, es, n, from);
    free(es);
}

/* Whole-token search for a digit string (not inside a longer run of letters
 * or digits). */
static bool has_digit_token(const char *text, const char *digits)
{
    size_t l = strlen(digits);
    for (const char *p = text; (p = strstr(p, digits)); p++) {
        bool left = p == text || !isalnum((unsigned char)p[-1]);
        bool right = !isalnum((unsigned char)p[l]);
        if (left && right) return true;
    }
    return false;
}

static void scan_for_identifiers(int line, const char *what, const char *text)
{
    /* The scan itself finds what it must. */
    CHECK(has_digit_token("{\"zip\": \"05602\"}", "05602"));
    CHECK(!has_digit_token("1718005602123 ab05602", "05602"));
    CHECK(strcasestr("x JUNIPER hollow", "Juniper Hollow") != NULL);
    for (size_t i = 0; i < sizeof pii / sizeof pii[0]; i++)
        expect_at(__FILE__, line, strcasestr(text, pii[i]) == NULL,
                  "%s holds the identifier \"%s\"", what, pii[i]);
    for (size_t i = 0; i < sizeof pii_digits / sizeof pii_digits[0]; i++)
        expect_at(__FILE__, line, !has_digit_token(text, pii_digits[i]),
                  "%s holds the identifier \"%s\"", what, pii_digits[i]);
}

/* The log holds no identifier the test sent, only fingerprints. */
static void no_identifiers_in_log(void)
{
    char *nd = run_export(__LINE__, "ndjson");
    char *csv = run_export(__LINE__, "csv");
    if (nd) {
        scan_for_identifiers(__LINE__, "export ndjson", nd);
        size_t n = 0;
        entry *es = parse_export(__LINE__, nd, &n);
        size_t with_fps = 0;
        for (size_t i = 0; i < n; i++)
            with_fps += es[i].n_fps > 0;
        /* Every call above that got past its key and scope with
         * identifiers in its body has fingerprints: in counts_and_report 5
         * lookup-co and 3 all-co Searches and the Batch's 3 inner calls (not
         * the Batch itself); 5 in live_report; 3 in survives_kill9; 5 in
         * clean_stop_loses_nothing.  24 in all. */
        CHECK_INT((long long)with_fps, 24);
        free(es);
    }
    if (csv) {
        scan_for_identifiers(__LINE__, "export csv", csv);
        EXPECT(strncmp(csv, "time_us,", 8) == 0 || strstr(csv, "request_id") != NULL,
               "CSV export header");
    }
    /* The reports too. */
    char *text = NULL;
    json_t *rep = run_report(__LINE__, NULL, &text);
    if (text) scan_for_identifiers(__LINE__, "analytics report", text);
    json_decref(rep);
    free(text);
    free(nd);
    free(csv);
}

int main(void)
{
    e2e_init(&E);
    e2e_start(&E, NULL);
    t_started = now_us();
    RUN(counts_and_report);
    RUN(live_report);
    RUN(survives_kill9);
    RUN(clean_stop_loses_nothing);
    RUN(no_identifiers_in_log);
    e2e_cleanup(&E);
    return test_summary();
}
