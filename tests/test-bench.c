/* idlookup-bench's pure logic: flags and their errors, --mix, the open-loop
 * schedule, pool and bodies, request-id patching, the reply scanner and the
 * JSON/text reports.  Given the bench binary's path as argv[1], also checks
 * its exit codes (2 for bad usage, 0 for --help, 1 when requests fail). */
#include "bench_lib.h"
#include "client.h"
#include "hist.h"
#include "status.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define ARGV(...) ((char *[]){"idlookup-bench", __VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((char *[]){"idlookup-bench", __VA_ARGS__}) / sizeof(char *)))
#define PARSE(o, err, ...)                                                                         \
    idl_bench_parse_args(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), (o), (err), sizeof(err))

/* ---- flags ------------------------------------------------------------- */

static void args_defaults(void)
{
    idl_bench_opts o;
    char err[256] = "";
    CHECK_INT(idl_bench_parse_args(1, ARGV(NULL), &o, err, sizeof(err)), IDL_INVALID_ARGUMENT);
    CHECK(strstr(err, "--data") != NULL); /* the default mix needs a pool */

    CHECK_INT(PARSE(&o, err, "--data", "pool.ndjson"), 0);
    CHECK_STR(o.url, "tcp://127.0.0.1:7411");
    CHECK_STR(o.method_label, "mix");
    CHECK_INT(o.mix.weight[IDL_BENCH_SEARCH], 70);
    CHECK_INT(o.mix.weight[IDL_BENCH_VALIDATE], 15);
    CHECK_INT(o.mix.weight[IDL_BENCH_VERIFY], 10);
    CHECK_INT(o.mix.weight[IDL_BENCH_BATCH], 5);
    CHECK_INT(o.mix.weight[IDL_BENCH_HEALTH], 0);
    CHECK_INT(o.mix.total, 100);
    CHECK(o.duration_s == 10.0);
    CHECK_INT(o.requests, 0);
    CHECK_INT(o.concurrency, 8);
    CHECK_INT(o.sockets, 1);
    CHECK_INT(o.batch_size, 100);
    CHECK_INT(o.search_by, IDL_BENCH_BY_EMAIL);
    CHECK_INT(o.timeout_ms, 5000);
    CHECK_INT(o.deadline_ms, -1);
    CHECK(o.rate == 0 && o.warmup_s == 0 && o.miss_ratio == 0 && o.max_errors == 0);
    CHECK(!o.json && !o.baseline && !o.progress && !o.help);
    CHECK(o.key == NULL);

    /* Health alone needs no pool. */
    CHECK_INT(PARSE(&o, err, "--method", "health"), 0);
    CHECK_STR(o.method_label, "health");
    CHECK_INT(o.mix.total, 1);
    CHECK_INT(o.mix.weight[IDL_BENCH_HEALTH], 1);
}

static void args_all_flags(void)
{
    idl_bench_opts o;
    char err[256] = "";
    int rc = PARSE(&o, err, "--url=ipc:///tmp/x.sock", "--key", "k1", "-c16", "--sockets", "4",
                   "-z", "500ms", "--rate", "1000.5", "--warmup", "1m", "--method", "batch",
                   "--data", "p.ndjson", "--format", "json", "--deadline-ms", "0", "--progress",
                   "--baseline", "--max-errors", "0.01", "--miss-ratio=0.25", "--batch-size", "7",
                   "--timeout-ms", "250", "--seed", "99", "--search-by", "phone");
    CHECK_INT(rc, 0);
    if (rc) fprintf(stderr, "  err: %s\n", err);
    CHECK_STR(o.url, "ipc:///tmp/x.sock");
    CHECK_STR(o.key, "k1");
    /* A cluster's nodes as one comma-separated list. */
    idl_bench_opts o2;
    CHECK_INT(PARSE(&o2, err, "--url", "tcp://127.0.0.1:1,tcp://127.0.0.1:2", "--method", "health"),
              0);
    CHECK_STR(o2.url, "tcp://127.0.0.1:1,tcp://127.0.0.1:2");
    CHECK_INT(o.concurrency, 16);
    CHECK_INT(o.sockets, 4);
    CHECK(o.duration_s == 0.5);
    CHECK(o.rate == 1000.5);
    CHECK(o.warmup_s == 60.0);
    CHECK_STR(o.method_label, "batch");
    CHECK_INT(o.mix.weight[IDL_BENCH_BATCH], 1);
    CHECK_STR(o.data, "p.ndjson");
    CHECK(o.json && o.progress && o.baseline);
    CHECK_INT(o.deadline_ms, 0);
    CHECK(o.max_errors == 0.01);
    CHECK(o.miss_ratio == 0.25);
    CHECK_INT(o.batch_size, 7);
    CHECK_INT(o.timeout_ms, 250);
    CHECK_INT(o.seed, 99);
    CHECK_INT(o.search_by, IDL_BENCH_BY_PHONE);
    CHECK_INT(PARSE(&o, err, "--method", "health", "--search-by=any"), 0);
    CHECK_INT(o.search_by, IDL_BENCH_BY_ANY);
    CHECK_INT(PARSE(&o, err, "--method", "health", "--search-by", "email"), 0);
    CHECK_INT(o.search_by, IDL_BENCH_BY_EMAIL);

    CHECK_INT(PARSE(&o, err, "-n", "1000", "--method", "health", "--duration=2s"),
              IDL_INVALID_ARGUMENT);
    CHECK_INT(PARSE(&o, err, "--method", "health", "-n", "1000"), 0);
    CHECK_INT(o.requests, 1000);
    CHECK(o.duration_s == 0);
    CHECK_INT(PARSE(&o, err, "-h", "--bogus"), 0);
    CHECK(o.help);
    CHECK_INT(PARSE(&o, err, "--method", "health", "--help"), 0);
    CHECK(o.help);
}

static void args_errors_name_the_flag(void)
{
    static const struct {
        const char *argv[8];
        const char *names;
    } cases[] = {
        {{"--method", "health", "-c", "0"}, "--concurrency"},
        {{"--method", "health", "--concurrency=abc"}, "--concurrency"},
        {{"--method", "health", "-c", "10001"}, "--concurrency"},
        {{"--method", "health", "-c", "-3"}, "--concurrency"},
        {{"--method", "health", "-z", "-1"}, "--duration"},
        {{"--method", "health", "--duration", "5x"}, "--duration"},
        {{"--method", "health", "--duration", "0"}, "--duration"},
        {{"--method", "health", "-n", "0"}, "--requests"},
        {{"--method", "health", "-n", "1e3"}, "--requests"},
        {{"--method", "health", "--rate", "0"}, "--rate"},
        {{"--method", "health", "--rate", "nan"}, "--rate"},
        {{"--method", "health", "--rate", "inf"}, "--rate"},
        {{"--method", "health", "--miss-ratio", "1.5"}, "--miss-ratio"},
        {{"--method", "health", "--miss-ratio", "-0.1"}, "--miss-ratio"},
        {{"--method", "health", "--search-by", "name"}, "--search-by"},
        {{"--method", "health", "--search-by", "Email"}, "--search-by"},
        {{"--method", "health", "--search-by="}, "--search-by"},
        {{"--method", "health", "--search-by"}, "--search-by"},
        {{"--method", "health", "--batch-size", "101"}, "--batch-size"},
        {{"--method", "health", "--batch-size", "0"}, "--batch-size"},
        {{"--method", "health", "--timeout-ms", "0"}, "--timeout-ms"},
        {{"--method", "health", "--deadline-ms", "-5"}, "--deadline-ms"},
        {{"--method", "health", "--format", "xml"}, "--format"},
        {{"--method", "health", "--max-errors", "2"}, "--max-errors"},
        {{"--method", "health", "--warmup", "-1"}, "--warmup"},
        {{"--method", "health", "--seed", "x"}, "--seed"},
        {{"--method", "health", "--sockets", "0"}, "--sockets"},
        {{"--method", "health", "-c", "2", "--sockets", "3"}, "--sockets"},
        {{"--method", "health", "--url", ""}, "--url"},
        {{"--method", "health", "--url", "localhost:7411"}, "--url"},
        {{"--method", "health", "--url", "tcp://"}, "--url"},
        {{"--method", "health", "--url", "tcp://a:1,localhost:2"}, "--url"},
        {{"--method", "health", "--url", "tcp://a:1,tcp://"}, "--url"},
        {{"--method", "health", "--data="}, "--data"},
        {{"--method", "lookup"}, "--method"},
        {{"--mix", "search=x", "--data", "f"}, "--mix"},
        {{"--method", "health", "--bogus"}, "--bogus"},
        {{"--method", "health", "-q"}, "-q"},
        {{"--method", "health", "--url"}, "--url"},
        {{"--method", "health", "--progress=yes"}, "--progress"},
        {{"--method", "health", "--baseline=1"}, "--baseline"},
        {{"--method", "health", "--mix", "health=1"}, "--mix"},
        {{"--method", "health", "-z", "5", "-n", "10"}, "--requests"},
        {{"--method", "search"}, "--data"},
        {{"--mix", "health=5,verify=1"}, "--data"},
        {{"--method", "health", "stray"}, "stray"},
        {{"--method", "health", "-c", "5", "-c", "6"}, "--concurrency"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *argv[10] = {"idlookup-bench"};
        int argc = 1;
        for (int k = 0; cases[i].argv[k]; k++)
            argv[argc++] = (char *)cases[i].argv[k];
        idl_bench_opts o;
        char err[256] = "";
        int rc = idl_bench_parse_args(argc, argv, &o, err, sizeof(err));
        CHECK_INT(rc, IDL_INVALID_ARGUMENT);
        if (!strstr(err, cases[i].names) || strchr(err, '\n')) {
            fprintf(stderr, "  case %zu: error \"%s\" does not name %s on one line\n", i, err,
                    cases[i].names);
            CHECK(0);
        }
    }
}

static void help_documents_every_flag(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    idl_bench_usage(f);
    fclose(f);
    static const char *const all[] = {
        "--url",          "--key",          "--method",          "--mix",        "--data",
        "--miss-ratio",   "--batch-size",   "-c, --concurrency", "--search-by",  "--sockets",
        "-z, --duration", "-n, --requests", "--warmup",          "--rate",       "--timeout-ms",
        "--deadline-ms",  "--format",       "--progress",        "--max-errors", "--baseline",
        "--seed",         "-h, --help",     "--client",          "--threads",
    };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (!strstr(buf, all[i])) {
            fprintf(stderr, "  --help lacks %s\n", all[i]);
            CHECK(0);
        }
    }
    free(buf);
}

/* ---- mix --------------------------------------------------------------- */

static void mix_parsing(void)
{
    idl_bench_mix m;
    char err[256];
    CHECK_INT(idl_bench_mix_parse("search=70,validate=15,verify=10,batch=5", &m, err, sizeof(err)),
              0);
    CHECK_INT(m.total, 100);
    CHECK_INT(m.weight[IDL_BENCH_VERIFY], 10);
    /* Weights are relative: they need not sum to 100. */
    CHECK_INT(idl_bench_mix_parse("search=1,verify=1", &m, err, sizeof(err)), 0);
    CHECK_INT(m.total, 2);
    CHECK_INT(idl_bench_mix_parse("health=0,search=3", &m, err, sizeof(err)), 0);
    CHECK_INT(m.total, 3);
    CHECK_INT(m.weight[IDL_BENCH_HEALTH], 0);

    static const struct {
        const char *spec, *says;
    } bad[] = {
        {"", "empty"},
        {"search", "method=weight"},
        {"search=", "weight"},
        {"search=-1", "weight"},
        {"search=1.5", "weight"},
        {"search= 5", "weight"},
        {"search=99999999999", "weight"},
        {"lookup=5", "unknown method \"lookup\""},
        {"Search=5", "unknown method"},
        {"search=5,search=5", "twice"},
        {"search=0", "sum to 0"},
        {"search=0,batch=0", "sum to 0"},
        {"search=1,", "empty entry"},
        {",search=1", "empty entry"},
        {"search=1,,batch=1", "empty entry"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        m.total = 12345;
        err[0] = '\0';
        CHECK_INT(idl_bench_mix_parse(bad[i].spec, &m, err, sizeof(err)), IDL_INVALID_ARGUMENT);
        CHECK(m.total == 12345); /* untouched on error */
        if (strncmp(err, "--mix", 5) || !strstr(err, bad[i].says)) {
            fprintf(stderr, "  mix \"%s\": error \"%s\", want \"%s\"\n", bad[i].spec, err,
                    bad[i].says);
            CHECK(0);
        }
    }
}

static void mix_pick_follows_weights(void)
{
    idl_bench_mix m;
    char err[256];
    CHECK_INT(idl_bench_mix_parse("search=70,validate=15,verify=10,batch=5", &m, err, sizeof(err)),
              0);
    uint64_t seen[IDL_BENCH_NMETHODS] = {0};
    for (uint64_t r = 0; r < 1000; r++)
        seen[idl_bench_mix_pick(&m, r)]++;
    CHECK_INT(seen[IDL_BENCH_HEALTH], 0);
    CHECK_INT(seen[IDL_BENCH_SEARCH], 700);
    CHECK_INT(seen[IDL_BENCH_VALIDATE], 150);
    CHECK_INT(seen[IDL_BENCH_VERIFY], 100);
    CHECK_INT(seen[IDL_BENCH_BATCH], 50);
    CHECK_INT(idl_bench_mix_pick(&m, UINT64_MAX), idl_bench_mix_pick(&m, UINT64_MAX % 100));
}

/* ---- schedule ---------------------------------------------------------- */

static void open_loop_schedule(void)
{
    CHECK_INT(idl_bench_sched_ns(1000, 0, 100), 1000);
    CHECK_INT(idl_bench_sched_ns(0, 5, 1000), 5000000);
    CHECK_INT(idl_bench_sched_ns(0, 1, 3), 333333333);
    CHECK_INT(idl_bench_sched_ns(0, 3, 3), 1000000000);
    CHECK_INT(idl_bench_sched_ns(7, 2, 0.5), 4000000007);
    /* No drift: an hour at 1M/s ends exactly on the hour, and every 7th
     * request at 7/s falls on a whole second. */
    CHECK_INT(idl_bench_sched_ns(0, UINT64_C(3600000000), 1e6), UINT64_C(3600000000000));
    int off = 0;
    for (uint64_t k = 1; k <= 100000; k++)
        off += idl_bench_sched_ns(0, 7 * k, 7) != k * 1000000000u;
    CHECK_INT(off, 0);
    /* Monotonic with spacing 1/R. */
    uint64_t prev = idl_bench_sched_ns(5, 0, 12345.6);
    int bad = 0;
    for (uint64_t i = 1; i < 100000; i++) {
        uint64_t t = idl_bench_sched_ns(5, i, 12345.6);
        bad += t <= prev || t - prev < 80000 || t - prev > 81100;
        prev = t;
    }
    CHECK_INT(bad, 0);
}

static void due_before_agrees_with_schedule(void)
{
    CHECK_INT(idl_bench_due_before(1000, 10, 1000), 0);
    CHECK_INT(idl_bench_due_before(1000, 10, 999), 0);
    CHECK_INT(idl_bench_due_before(1000, 10, 1001), 1);         /* request 0 at t0 */
    CHECK_INT(idl_bench_due_before(0, 1000, 1000000000), 1000); /* 0..999 in the first second */
    CHECK_INT(idl_bench_due_before(0, 1000, 1000000001), 1001);
    CHECK_INT(idl_bench_due_before(0, 3, 1000000000), 3);
    int bad = 0;
    for (uint64_t t = 1; t < 5000000000u; t += 7777777) {
        uint64_t n = idl_bench_due_before(5, 12345.6, t);
        bad += idl_bench_sched_ns(5, n, 12345.6) < t ||
               (n && idl_bench_sched_ns(5, n - 1, 12345.6) >= t);
    }
    CHECK_INT(bad, 0);
}

static void latency_from_schedule(void)
{
    /* Due at 1000, sent late at 5000 (the generator or server stalled),
     * answered at 6000: the open loop counts the stall, the closed one not. */
    CHECK_INT(idl_bench_latency_ns(1, 1000, 5000, 6000), 5000);
    CHECK_INT(idl_bench_latency_ns(0, 1000, 5000, 6000), 1000);
    /* On time: both agree. */
    CHECK_INT(idl_bench_latency_ns(1, 1000, 1000, 1700), 700);
    CHECK_INT(idl_bench_latency_ns(0, 1000, 1000, 1700), 700);
    CHECK_INT(idl_bench_latency_ns(1, 9000, 9000, 8000), 0);

    /* A stall in the open loop shows in the tail: at 1000/s, a 100 ms stall
     * delays the ~100 requests due during it, by 100 ms down to ~0. */
    idl_hist *h = NULL;
    CHECK(idl_hist_new(&h) == 0);
    uint64_t t0 = 0, free_at = 0;
    for (uint64_t i = 0; i < 10000; i++) {
        uint64_t due = idl_bench_sched_ns(t0, i, 1000);
        uint64_t sent = due > free_at ? due : free_at;
        uint64_t service = i == 5000 ? 100000000u : 100000u; /* one 100 ms stall */
        uint64_t done = sent + service;
        free_at = done;
        idl_hist_record(h, idl_bench_latency_ns(1, due, sent, done) / 1000);
    }
    CHECK(idl_hist_percentile(h, 50) <= 101);
    CHECK(idl_hist_percentile(h, 99.5) >= 40000); /* ~1% of requests waited */
    CHECK(idl_hist_max(h) >= 100000);
    idl_hist_free(h);
}

/* ---- pool and bodies ---------------------------------------------------- */

static char *write_pool(const char *text)
{
    char *path = strdup("/tmp/test-bench-pool-XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    return path;
}

/* Decodes one body; returns its root (zone owned by the caller). */
static msgpack_object decode(const void *data, size_t len, msgpack_zone *z)
{
    msgpack_object o;
    size_t off = 0;
    msgpack_zone_init(z, 1024);
    o.type = MSGPACK_OBJECT_NIL;
    CHECK(msgpack_unpack(data, len, &off, z, &o) == MSGPACK_UNPACK_SUCCESS);
    CHECK(off == len);
    return o;
}

static const msgpack_object *get(const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            !memcmp(k->via.str.ptr, key, k->via.str.size))
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static int str_has(const msgpack_object *o, const char *needle)
{
    if (!o || o->type != MSGPACK_OBJECT_STR) return 0;
    char buf[256];
    snprintf(buf, sizeof(buf), "%.*s", (int)o->via.str.size, o->via.str.ptr);
    return strstr(buf, needle) != NULL;
}

static const char pool_text[] =
    "{\"source_id\":\"a\",\"first_name\":\"Jane\",\"last_name\":\"Doe\","
    "\"emails\":[\"Jane.Doe@Example.com\"],\"phones\":[\"(415) 555-2671\"]}\n"
    "\n"
    "{\"source_id\":\"b\",\"first_name\":\"Bob\",\"last_name\":\"Roe\",\"emails\":[],"
    "\"phones\":[{\"number\":\"+1 212 555 0100\",\"line_type\":\"landline\"}]}\n"
    "not json at all\n"
    "{\"source_id\":\"c\",\"first_name\":\"No\",\"last_name\":\"Ids\",\"emails\":[]}\n"
    "[1,2,3]\n";

static void pool_loading(void)
{
    char *path = write_pool(pool_text);
    idl_bench_pool *p = NULL;
    size_t skipped = 99;
    char err[256] = "";
    CHECK_INT(idl_bench_pool_load(path, &p, &skipped, err, sizeof(err)), 0);
    CHECK_INT(idl_bench_pool_size(p), 2);
    CHECK_INT(skipped, 3); /* bad JSON, no identifier, not an object; blank lines don't count */
    idl_bench_pool_free(p);
    unlink(path);
    free(path);

    p = NULL;
    CHECK_INT(idl_bench_pool_load("/nonexistent/pool.ndjson", &p, NULL, err, sizeof(err)),
              IDL_NOT_FOUND);
    CHECK(p == NULL);
    CHECK(strstr(err, "/nonexistent/pool.ndjson") && strstr(err, "--data"));

    path = write_pool("garbage\n{\"first_name\":\"x\"}\n");
    CHECK_INT(idl_bench_pool_load(path, &p, &skipped, err, sizeof(err)), IDL_INVALID_ARGUMENT);
    CHECK(strstr(err, path) != NULL);
    unlink(path);
    free(path);
    idl_bench_pool_free(NULL);
}

static void request_bodies(void)
{
    char *path = write_pool(pool_text);
    idl_bench_pool *p = NULL;
    char err[256];
    CHECK_INT(idl_bench_pool_load(path, &p, NULL, err, sizeof(err)), 0);
    unlink(path);
    free(path);
    idl_bench_body *b = NULL;
    msgpack_zone z;

    CHECK_INT(idl_bench_bodies(NULL, IDL_BENCH_HEALTH, 1, 0, 100, IDL_BENCH_BY_EMAIL, 1, &b), 0);
    CHECK_INT(b[0].len, 1);
    CHECK_INT(b[0].data[0], 0x80); /* {} */
    idl_bench_bodies_free(b, 1);
    CHECK_INT(idl_bench_bodies(NULL, IDL_BENCH_SEARCH, 1, 0, 100, IDL_BENCH_BY_EMAIL, 1, &b),
              IDL_INVALID_ARGUMENT);
    CHECK_INT(idl_bench_bodies(p, 99, 1, 0, 100, IDL_BENCH_BY_EMAIL, 1, &b), IDL_INVALID_ARGUMENT);

    /* Search by email (the default): every body asks for the one email;
     * Bob, who has only a phone, is never asked. */
    CHECK_INT(idl_bench_bodies(p, IDL_BENCH_SEARCH, 20, 0, 100, IDL_BENCH_BY_EMAIL, 1, &b), 0);
    int emails = 0, phones = 0;
    for (int i = 0; i < 20; i++) {
        msgpack_object o = decode(b[i].data, b[i].len, &z);
        CHECK(o.type == MSGPACK_OBJECT_MAP && o.via.map.size == 1);
        emails += str_has(get(&o, "email"), "Jane.Doe@Example.com");
        phones += get(&o, "phone") != NULL;
        msgpack_zone_destroy(&z);
    }
    CHECK_INT(emails, 20);
    CHECK_INT(phones, 0);
    idl_bench_bodies_free(b, 20);

    /* By any: email where there is one, else phone, so both kinds appear. */
    CHECK_INT(idl_bench_bodies(p, IDL_BENCH_SEARCH, 20, 0, 100, IDL_BENCH_BY_ANY, 1, &b), 0);
    emails = phones = 0;
    for (int i = 0; i < 20; i++) {
        msgpack_object o = decode(b[i].data, b[i].len, &z);
        CHECK(o.type == MSGPACK_OBJECT_MAP && o.via.map.size == 1);
        emails += str_has(get(&o, "email"), "Jane.Doe@Example.com");
        phones += str_has(get(&o, "phone"), "212 555 0100");
        msgpack_zone_destroy(&z);
    }
    CHECK_INT(emails + phones, 20);
    CHECK(emails > 0 && phones > 0);
    idl_bench_bodies_free(b, 20);

    /* By phone: only phones, Jane's as well as Bob's; misses are made-up
     * phones that neither holds. */
    CHECK_INT(idl_bench_bodies(p, IDL_BENCH_SEARCH, 20, 0.5, 100, IDL_BENCH_BY_PHONE, 1, &b), 0);
    int jane = 0, bob = 0, made_up = 0;
    for (int i = 0; i < 20; i++) {
        msgpack_object o = decode(b[i].data, b[i].len, &z);
        CHECK(o.type == MSGPACK_OBJECT_MAP && o.via.map.size == 1);
        CHECK(get(&o, "email") == NULL);
        const msgpack_object *ph = get(&o, "phone");
        CHECK(ph != NULL);
        if (str_has(ph, "(415) 555-2671"))
            jane++;
        else if (str_has(ph, "212 555 0100"))
            bob++;
        else
            made_up += str_has(ph, "+1");
        msgpack_zone_destroy(&z);
    }
    CHECK_INT(made_up, 10);
    CHECK_INT(jane + bob, 10);
    CHECK(jane > 0 && bob > 0);
    idl_bench_bodies_free(b, 20);

    /* The same seed gives the same bodies, another seed others. */
    idl_bench_body *again = NULL;
    CHECK_INT(idl_bench_bodies(p, IDL_BENCH_SEARCH, 20, 0.5, 100, IDL_BENCH_BY_PHONE, 1, &b), 0);
    CHECK_INT(idl_bench_bodies(p, IDL_BENCH_SEARCH, 20, 0.5, 100, IDL_BENCH_BY_PHONE, 1, &again),
              0);
    int same = 0;
    for (int i = 0; i < 20; i++)
        same += b[i].len == again[i].len && !memcmp(b[i].data, again[i].data, b[i].len);
    CHECK_INT(same, 20);
    idl_bench_bodies_free(again, 20);
    CHECK_INT(idl_bench_bodies(p, IDL_BENCH_SEARCH, 20, 0.5, 100, IDL_BENCH_BY_PHONE, 2, &again),
              0);
    same = 0;
    for (int i = 0; i < 20; i++)
        same += b[i].len == again[i].len && !memcmp(b[i].data, again[i].data, b[i].len);
    CHECK(same < 20);
    idl_bench_bodies_free(again, 20);
    idl_bench_bodies_free(b, 20);

    /* Misses: exactly half of 20 ask for made-up emails not in the pool. */
    CHECK_INT(idl_bench_bodies(p, IDL_BENCH_SEARCH, 20, 0.5, 100, IDL_BENCH_BY_EMAIL, 1, &b), 0);
    int misses = 0;
    for (int i = 0; i < 20; i++) {
        msgpack_object o = decode(b[i].data, b[i].len, &z);
        misses += str_has(get(&o, "email"), "bench.miss.");
        msgpack_zone_destroy(&z);
    }
    CHECK_INT(misses, 10);
    idl_bench_bodies_free(b, 20);

    /* Validate alternates email and phone; misses include made-up phones. */
    CHECK_INT(idl_bench_bodies(p, IDL_BENCH_VALIDATE, 40, 1.0, 100, IDL_BENCH_BY_EMAIL, 3, &b), 0);
    int miss_phones = 0;
    for (int i = 0; i < 40; i++) {
        msgpack_object o = decode(b[i].data, b[i].len, &z);
        const msgpack_object *ph = get(&o, "phone");
        if (ph) {
            miss_phones++;
            CHECK(str_has(ph, "+1"));
            CHECK(!str_has(ph, "4155552671") && !str_has(ph, "2125550100"));
        } else {
            CHECK(str_has(get(&o, "email"), "bench.miss."));
        }
        msgpack_zone_destroy(&z);
    }
    CHECK_INT(miss_phones, 20);
    idl_bench_bodies_free(b, 40);

    /* Verify: names and one identifier. */
    CHECK_INT(idl_bench_bodies(p, IDL_BENCH_VERIFY, 10, 0, 100, IDL_BENCH_BY_EMAIL, 1, &b), 0);
    for (int i = 0; i < 10; i++) {
        msgpack_object o = decode(b[i].data, b[i].len, &z);
        CHECK(o.via.map.size == 3);
        CHECK(get(&o, "first_name") && get(&o, "last_name"));
        CHECK(get(&o, "email") || get(&o, "phone"));
        msgpack_zone_destroy(&z);
    }
    idl_bench_bodies_free(b, 10);

    /* Batch: batch_size inner Search calls. */
    CHECK_INT(idl_bench_bodies(p, IDL_BENCH_BATCH, 3, 0.25, 4, IDL_BENCH_BY_EMAIL, 1, &b), 0);
    int inner_misses = 0;
    for (int i = 0; i < 3; i++) {
        msgpack_object o = decode(b[i].data, b[i].len, &z);
        const msgpack_object *calls = get(&o, "calls");
        CHECK(calls && calls->type == MSGPACK_OBJECT_ARRAY && calls->via.array.size == 4);
        for (uint32_t k = 0; calls && k < calls->via.array.size; k++) {
            const msgpack_object *c = &calls->via.array.ptr[k];
            CHECK(str_has(get(c, "method"), "idlookup.v1.Lookup/Search"));
            const msgpack_object *body = get(c, "body");
            CHECK(body && body->type == MSGPACK_OBJECT_MAP);
            inner_misses += body && str_has(get(body, "email"), "bench.miss.");
        }
        msgpack_zone_destroy(&z);
    }
    CHECK_INT(inner_misses, 3); /* a quarter of 12 */
    idl_bench_bodies_free(b, 3);

    /* Batch by phone: the inner Searches ask for phones only. */
    CHECK_INT(idl_bench_bodies(p, IDL_BENCH_BATCH, 3, 0.25, 4, IDL_BENCH_BY_PHONE, 1, &b), 0);
    int inner_phones = 0;
    for (int i = 0; i < 3; i++) {
        msgpack_object o = decode(b[i].data, b[i].len, &z);
        const msgpack_object *calls = get(&o, "calls");
        for (uint32_t k = 0; calls && k < calls->via.array.size; k++) {
            const msgpack_object *body = get(&calls->via.array.ptr[k], "body");
            CHECK(body && !get(body, "email"));
            inner_phones += body && get(body, "phone") != NULL;
        }
        msgpack_zone_destroy(&z);
    }
    CHECK_INT(inner_phones, 12);
    idl_bench_bodies_free(b, 3);
    CHECK_INT(idl_bench_bodies(p, IDL_BENCH_SEARCH, 1, 0, 100, 7, 1, &b), IDL_INVALID_ARGUMENT);
    idl_bench_pool_free(p);
}

/* A pool without a person of the kind --search-by asks for is refused up
 * front, with a message that names the flag and the file. */
static void search_by_needs_matching_persons(void)
{
    char *path = write_pool("{\"first_name\":\"Bob\",\"last_name\":\"Roe\",\"emails\":[],"
                            "\"phones\":[\"+1 212 555 0100\"]}\n");
    idl_bench_pool *p = NULL;
    idl_bench_opts o;
    char err[256] = "";
    CHECK_INT(idl_bench_pool_load(path, &p, NULL, err, sizeof(err)), 0);

    CHECK_INT(PARSE(&o, err, "--method", "search", "--data", path), 0);
    err[0] = '\0';
    CHECK_INT(idl_bench_pool_fits(p, &o, err, sizeof(err)), IDL_INVALID_ARGUMENT);
    CHECK(strstr(err, "--search-by email") && strstr(err, path) && !strchr(err, '\n'));
    idl_bench_body *b = NULL;
    CHECK_INT(idl_bench_bodies(p, IDL_BENCH_SEARCH, 1, 0, 100, IDL_BENCH_BY_EMAIL, 1, &b),
              IDL_INVALID_ARGUMENT);
    /* Batch searches too; Verify and Validate take a phone as before. */
    CHECK_INT(PARSE(&o, err, "--mix", "batch=1,verify=1", "--data", path), 0);
    CHECK_INT(idl_bench_pool_fits(p, &o, err, sizeof(err)), IDL_INVALID_ARGUMENT);
    CHECK_INT(PARSE(&o, err, "--mix", "validate=1,verify=1", "--data", path), 0);
    CHECK_INT(idl_bench_pool_fits(p, &o, err, sizeof(err)), 0);

    CHECK_INT(PARSE(&o, err, "--method", "search", "--data", path, "--search-by", "phone"), 0);
    CHECK_INT(idl_bench_pool_fits(p, &o, err, sizeof(err)), 0);
    CHECK_INT(PARSE(&o, err, "--method", "search", "--data", path, "--search-by", "any"), 0);
    CHECK_INT(idl_bench_pool_fits(p, &o, err, sizeof(err)), 0);
    idl_bench_pool_free(p);
    unlink(path);
    free(path);

    path = write_pool("{\"first_name\":\"Jo\",\"last_name\":\"Poe\",\"emails\":[\"jo@x.org\"]}\n");
    CHECK_INT(idl_bench_pool_load(path, &p, NULL, err, sizeof(err)), 0);
    CHECK_INT(PARSE(&o, err, "--method", "search", "--data", path, "--search-by=phone"), 0);
    err[0] = '\0';
    CHECK_INT(idl_bench_pool_fits(p, &o, err, sizeof(err)), IDL_INVALID_ARGUMENT);
    CHECK(strstr(err, "--search-by phone") && strstr(err, path));
    CHECK_INT(idl_bench_bodies(p, IDL_BENCH_BATCH, 1, 0, 3, IDL_BENCH_BY_PHONE, 1, &b),
              IDL_INVALID_ARGUMENT);
    CHECK_INT(PARSE(&o, err, "--method", "search", "--data", path), 0);
    CHECK_INT(idl_bench_pool_fits(p, &o, err, sizeof(err)), 0);
    idl_bench_pool_free(p);
    unlink(path);
    free(path);
}

/* ---- ids and replies ------------------------------------------------------ */

static void request_id_patching(void)
{
    /* Through the client library's encoder, as the bench does. */
    void *env = NULL;
    size_t len = 0, off = 0;
    CHECK_INT(idl_request_encode(IDL_BENCH_ID_MARKER, "grpc.health.v1.Health/Check", "secret", 250,
                                 "\x80", 1, &env, &len),
              0);
    CHECK_INT(idl_bench_find_id(env, len, IDL_BENCH_ID_MARKER, &off), 0);
    idl_bench_put_id(env, off, 7);
    msgpack_zone z;
    msgpack_object o = decode(env, len, &z);
    const msgpack_object *id = get(&o, "id");
    CHECK(id && id->type == MSGPACK_OBJECT_POSITIVE_INTEGER && id->via.u64 == 7);
    CHECK(str_has(get(&o, "method"), "Health/Check"));
    msgpack_zone_destroy(&z);
    idl_bench_put_id(env, off, UINT64_MAX - 1);
    o = decode(env, len, &z);
    id = get(&o, "id");
    CHECK(id && id->via.u64 == UINT64_MAX - 1);
    msgpack_zone_destroy(&z);
    /* The marker is gone now: not found. */
    CHECK_INT(idl_bench_find_id(env, len, IDL_BENCH_ID_MARKER, &off), IDL_INVALID_ARGUMENT);
    free(env);

    /* Twice is ambiguous, and a short id encoding is not patchable. */
    unsigned char two[20] = {0xcf, 0xb3, 0xe7, 0xc4, 0xa1, 0xd2, 0xf0, 0x9e, 0x5b, 0x00,
                             0xcf, 0xb3, 0xe7, 0xc4, 0xa1, 0xd2, 0xf0, 0x9e, 0x5b, 0x00};
    CHECK_INT(idl_bench_find_id(two, 20, IDL_BENCH_ID_MARKER, &off), IDL_INVALID_ARGUMENT);
    CHECK_INT(idl_bench_find_id(two, 10, IDL_BENCH_ID_MARKER, &off), 0);
    CHECK_INT(off, 1);
    CHECK_INT(idl_bench_find_id(two, 8, IDL_BENCH_ID_MARKER, &off), IDL_INVALID_ARGUMENT);
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* A reply envelope like the service's; batch_codes (n of them) makes it a
 * Batch reply. */
static void make_reply(msgpack_sbuffer *sb, uint64_t id, int code, const int *batch_codes, int n)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    pack_cstr(&pk, "meta");
    msgpack_pack_map(&pk, 1);
    pack_cstr(&pk, "request-id");
    pack_cstr(&pk, "r-1");
    pack_cstr(&pk, "message");
    pack_cstr(&pk, "a message");
    pack_cstr(&pk, "details");
    msgpack_pack_map(&pk, 1);
    pack_cstr(&pk, "retry_after_ms");
    msgpack_pack_int(&pk, 250);
    pack_cstr(&pk, "body");
    msgpack_pack_map(&pk, 2);
    pack_cstr(&pk, "persons");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 2);
    pack_cstr(&pk, "score");
    msgpack_pack_double(&pk, 0.5);
    pack_cstr(&pk, "code"); /* a "code" deeper down is not the reply's */
    msgpack_pack_int(&pk, 13);
    pack_cstr(&pk, "results");
    msgpack_pack_array(&pk, (size_t)n);
    for (int i = 0; i < n; i++) {
        msgpack_pack_map(&pk, 3);
        pack_cstr(&pk, "message");
        msgpack_pack_nil(&pk);
        pack_cstr(&pk, "code");
        msgpack_pack_int(&pk, batch_codes[i]);
        pack_cstr(&pk, "body");
        msgpack_pack_bin(&pk, 3);
        msgpack_pack_bin_body(&pk, "xyz", 3);
    }
    pack_cstr(&pk, "id");
    msgpack_pack_uint64(&pk, id);
    pack_cstr(&pk, "code");
    msgpack_pack_int(&pk, code);
}

/* Every msgpack type before the id and code: a wrong skip width anywhere
 * would misread what follows. */
static void scanner_skips_every_type(void)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    char big[70000];
    memset(big, 'x', sizeof(big));
    msgpack_pack_map(&pk, 2 + 24);
    for (int i = 0; i < 24; i++) {
        msgpack_pack_int(&pk, i); /* integer keys are skipped with their values */
        switch (i) {
        case 0:
            msgpack_pack_nil(&pk);
            break;
        case 1:
            msgpack_pack_true(&pk);
            break;
        case 2:
            msgpack_pack_false(&pk);
            break;
        case 3:
            msgpack_pack_uint8(&pk, 200);
            break;
        case 4:
            msgpack_pack_uint16(&pk, 60000);
            break;
        case 5:
            msgpack_pack_uint32(&pk, 4000000000u);
            break;
        case 6:
            msgpack_pack_int8(&pk, -100);
            break;
        case 7:
            msgpack_pack_int16(&pk, -30000);
            break;
        case 8:
            msgpack_pack_int32(&pk, -2000000000);
            break;
        case 9:
            msgpack_pack_int64(&pk, INT64_MIN);
            break;
        case 10:
            msgpack_pack_float(&pk, 1.5f);
            break;
        case 11:
            msgpack_pack_double(&pk, 2.5);
            break;
        case 12:
            msgpack_pack_str(&pk, 200);
            msgpack_pack_str_body(&pk, big, 200);
            break;
        case 13:
            msgpack_pack_str(&pk, 1000);
            msgpack_pack_str_body(&pk, big, 1000);
            break;
        case 14:
            msgpack_pack_str(&pk, 70000);
            msgpack_pack_str_body(&pk, big, 70000);
            break;
        case 15:
            msgpack_pack_bin(&pk, 10);
            msgpack_pack_bin_body(&pk, big, 10);
            break;
        case 16:
            msgpack_pack_bin(&pk, 300);
            msgpack_pack_bin_body(&pk, big, 300);
            break;
        case 17:
            msgpack_pack_bin(&pk, 70000);
            msgpack_pack_bin_body(&pk, big, 70000);
            break;
        case 18:
            for (size_t n = 1; n <= 16; n *= 2) { /* fixext 1..16, wrapped in an array */
                if (n == 1) msgpack_pack_array(&pk, 5);
                msgpack_pack_ext(&pk, n, 1);
                msgpack_pack_ext_body(&pk, big, n);
            }
            break;
        case 19:
            msgpack_pack_array(&pk, 3);
            msgpack_pack_ext(&pk, 3, 2); /* ext 8 */
            msgpack_pack_ext_body(&pk, big, 3);
            msgpack_pack_ext(&pk, 300, 2); /* ext 16 */
            msgpack_pack_ext_body(&pk, big, 300);
            msgpack_pack_ext(&pk, 70000, 2); /* ext 32 */
            msgpack_pack_ext_body(&pk, big, 70000);
            break;
        case 20:
            msgpack_pack_array(&pk, 20); /* array 16 */
            for (int k = 0; k < 20; k++)
                msgpack_pack_int(&pk, -k);
            break;
        case 21:
            msgpack_pack_map(&pk, 17); /* map 16 */
            for (int k = 0; k < 17; k++) {
                msgpack_pack_int(&pk, k);
                msgpack_pack_array(&pk, 0);
            }
            break;
        case 22:
            msgpack_pack_uint64(&pk, UINT64_MAX);
            break;
        case 23:
            msgpack_pack_int(&pk, -1);
            break;
        }
    }
    pack_cstr(&pk, "id");
    msgpack_pack_uint16(&pk, 777);
    pack_cstr(&pk, "code");
    msgpack_pack_uint8(&pk, 16);
    uint64_t id = 0;
    int code = -1;
    CHECK_INT(idl_bench_scan_reply(sb.data, sb.size, &id, &code, NULL), 0);
    CHECK_INT(id, 777);
    CHECK_INT(code, IDL_UNAUTHENTICATED);
    msgpack_sbuffer_destroy(&sb);
}

static void reply_scanning(void)
{
    msgpack_sbuffer sb;
    uint64_t id = 0;
    int code = -1;
    uint64_t inner[IDL_STATUS_COUNT] = {0};
    int codes[] = {0, 8, 0, 3, 99};
    make_reply(&sb, 42, 8, codes, 5);
    CHECK_INT(idl_bench_scan_reply(sb.data, sb.size, &id, &code, NULL), 0);
    CHECK_INT(id, 42);
    CHECK_INT(code, 8);
    CHECK_INT(idl_bench_scan_reply(sb.data, sb.size, &id, &code, inner), 0);
    CHECK_INT(inner[IDL_OK], 2);
    CHECK_INT(inner[IDL_RESOURCE_EXHAUSTED], 1);
    CHECK_INT(inner[IDL_INVALID_ARGUMENT], 1);
    CHECK_INT(inner[IDL_UNKNOWN], 1); /* 99 is off the table */
    CHECK_INT(inner[IDL_INTERNAL], 0);

    /* Every truncation is refused and counts nothing. */
    int accepted = 0;
    uint64_t before = inner[IDL_OK];
    for (size_t n = 0; n < sb.size; n++)
        accepted += idl_bench_scan_reply(sb.data, n, &id, &code, inner) == 0;
    CHECK_INT(accepted, 0);
    CHECK_INT(inner[IDL_OK], before);
    msgpack_sbuffer_destroy(&sb);

    /* Big ids and codes off the table. */
    make_reply(&sb, UINT64_MAX, 99, NULL, 0);
    CHECK_INT(idl_bench_scan_reply(sb.data, sb.size, &id, &code, NULL), 0);
    CHECK(id == UINT64_MAX);
    CHECK_INT(code, IDL_UNKNOWN);
    msgpack_sbuffer_destroy(&sb);

    /* Not a map, no code, negative id, absurd declared sizes, deep nesting. */
    CHECK_INT(idl_bench_scan_reply("\x93\x01\x02\x03", 4, &id, &code, NULL), IDL_INVALID_ARGUMENT);
    CHECK_INT(idl_bench_scan_reply("\x81\xa2id\x05", 5, &id, &code, NULL), IDL_INVALID_ARGUMENT);
    CHECK_INT(idl_bench_scan_reply("\x82\xa2id\xff\xa4"
                                   "code\x00",
                                   11, &id, &code, NULL),
              IDL_INVALID_ARGUMENT);
    CHECK_INT(idl_bench_scan_reply("\x82\xa2id\x05\xa4"
                                   "code\x00",
                                   11, &id, &code, NULL),
              0);
    CHECK_INT(idl_bench_scan_reply("\xdf\xff\xff\xff\xff\xa2id", 8, &id, &code, NULL),
              IDL_INVALID_ARGUMENT);
    CHECK_INT(idl_bench_scan_reply("\x83\xa1x\xdd\xff\xff\xff\xff", 8, &id, &code, NULL),
              IDL_INVALID_ARGUMENT);
    CHECK_INT(idl_bench_scan_reply("\x81\xc1\x00", 3, &id, &code, NULL), IDL_INVALID_ARGUMENT);
    /* A non-string key is skipped with its value. */
    CHECK_INT(idl_bench_scan_reply("\x83\x07\x91\x01\xa2id\x09\xa4"
                                   "code\x05",
                                   15, &id, &code, NULL),
              0);
    CHECK_INT(id, 9);
    CHECK_INT(code, 5);
    unsigned char deep[300];
    size_t dn = 0;
    deep[dn++] = 0x83;
    deep[dn++] = 0xa1;
    deep[dn++] = 'x';
    for (int i = 0; i < 200; i++)
        deep[dn++] = 0x91;
    deep[dn++] = 0x00;
    memcpy(deep + dn,
           "\xa2id\x01\xa4"
           "code\x00",
           10);
    dn += 10;
    CHECK_INT(idl_bench_scan_reply(deep, dn, &id, &code, NULL), IDL_INVALID_ARGUMENT);

    /* Random bytes never crash it (the sanitizer build watches). */
    uint64_t s = 12345;
    unsigned char junk[64];
    for (int it = 0; it < 200000; it++) {
        size_t n = (size_t)(s % sizeof(junk));
        for (size_t k = 0; k < n; k++) {
            s = s * 6364136223846793005u + 1442695040888963407u;
            junk[k] = (unsigned char)(s >> 56);
        }
        if (n) junk[0] = (unsigned char)(0x80 | (junk[0] & 0x0f)); /* mostly maps */
        (void)idl_bench_scan_reply(junk, n, &id, &code, inner);
        s += (uint64_t)it;
    }
}

/* ---- reports ------------------------------------------------------------ */

static void fill_result(idl_bench_result *r, idl_hist *h, uint64_t ok, uint64_t busy,
                        uint64_t timeouts)
{
    memset(r, 0, sizeof(*r));
    for (uint64_t v = 1; v <= 1000; v++)
        idl_hist_record(h, v * 10);
    r->requests = ok + busy + timeouts;
    r->duration_s = 2.0;
    r->outcomes[IDL_OK] = ok;
    r->outcomes[IDL_RESOURCE_EXHAUSTED] = busy;
    r->outcomes[IDL_BENCH_TIMEOUT] = timeouts;
    r->per_method[IDL_BENCH_BATCH] = r->requests;
    r->per_method_ok[IDL_BENCH_BATCH] = ok;
    r->inner[IDL_OK] = ok * 50 - 3; /* three inner calls were refused */
    r->inner[IDL_RESOURCE_EXHAUSTED] = 3;
    r->latency_us = h;
}

static int is_int(json_t *o, const char *k)
{
    return json_is_integer(json_object_get(o, k));
}

static void json_report_shape(void)
{
    idl_bench_opts o;
    char err[256];
    CHECK_INT(PARSE(&o, err, "--method", "batch", "--data", "f", "--batch-size", "50", "-c", "4"),
              0);
    idl_hist *h = NULL, *bh = NULL;
    CHECK(idl_hist_new(&h) == 0 && idl_hist_new(&bh) == 0);
    idl_bench_result r, base;
    fill_result(&r, h, 990, 8, 2);
    fill_result(&base, bh, 4000, 0, 0);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK_INT(idl_bench_report_json(&o, &r, &base, f), 0);
    fclose(f);
    /* Exactly one JSON value (jansson refuses trailing data), on one line. */
    json_error_t jerr;
    json_t *root = json_loads(buf, 0, &jerr);
    CHECK(root != NULL);
    CHECK(json_is_object(root));
    CHECK(strchr(buf, '\n') == buf + len - 1);
    if (!root) {
        fprintf(stderr, "  %s\n", jerr.text);
        free(buf);
        return;
    }
    CHECK(is_int(root, "requests"));
    CHECK_INT(json_integer_value(json_object_get(root, "requests")), 1000);
    CHECK(json_is_number(json_object_get(root, "duration_s")));
    CHECK(json_number_value(json_object_get(root, "duration_s")) == 2.0);
    CHECK(json_is_number(json_object_get(root, "throughput_rps")));
    CHECK(json_number_value(json_object_get(root, "throughput_rps")) == 500.0);
    json_t *codes = json_object_get(root, "codes");
    CHECK(json_is_object(codes));
    CHECK_INT(json_integer_value(json_object_get(codes, "OK")), 990);
    CHECK_INT(json_integer_value(json_object_get(codes, "RESOURCE_EXHAUSTED")), 8);
    CHECK_INT(json_integer_value(json_object_get(codes, "TIMEOUT")), 2);
    CHECK(json_object_get(codes, "INTERNAL") == NULL); /* zero counts left out */
    CHECK_INT(json_integer_value(json_object_get(root, "errors")), 10);
    json_t *lat = json_object_get(root, "latency_us");
    CHECK(json_is_object(lat));
    static const char *const lk[] = {"min", "p50", "p90", "p99", "p999", "max"};
    for (size_t i = 0; i < sizeof(lk) / sizeof(lk[0]); i++)
        CHECK(is_int(lat, lk[i]));
    CHECK_INT(json_integer_value(json_object_get(lat, "min")), 10);
    CHECK_INT(json_integer_value(json_object_get(lat, "max")), 10000);
    json_int_t p50 = json_integer_value(json_object_get(lat, "p50"));
    CHECK(p50 >= 5000 && p50 <= 5005);
    CHECK_STR(json_string_value(json_object_get(root, "method")), "batch");
    CHECK_INT(json_integer_value(json_object_get(root, "concurrency")), 4);
    CHECK_INT(json_integer_value(json_object_get(root, "batch_size")), 50);
    CHECK(json_is_null(json_object_get(root, "rate")));
    /* Batch: lookups answered OK per second, 50 per OK batch but the three
     * refused inner calls. */
    CHECK(json_number_value(json_object_get(root, "lookups_per_s")) == (990.0 * 50 - 3) / 2.0);
    json_t *bc = json_object_get(root, "batch_codes");
    CHECK_INT(json_integer_value(json_object_get(bc, "OK")), 990 * 50 - 3);
    CHECK_INT(json_integer_value(json_object_get(bc, "RESOURCE_EXHAUSTED")), 3);
    CHECK(json_number_value(json_object_get(root, "baseline_rps")) == 2000.0);
    CHECK(json_number_value(json_object_get(root, "ratio")) == 0.25);
    CHECK(json_is_object(json_object_get(root, "baseline")));
    CHECK(is_int(json_object_get(root, "baseline"), "requests"));
    CHECK(json_object_get(root, "unsent") == NULL);
    /* One method: no per-method latency. */
    CHECK(json_object_get(root, "method_latency_us") == NULL);
    json_decref(root);
    free(buf);
    /* Without a baseline there are no baseline keys; health has no lookups. */
    CHECK_INT(PARSE(&o, err, "--method", "health", "--rate", "100"), 0);
    r.unsent = 17;
    buf = NULL;
    f = open_memstream(&buf, &len);
    CHECK_INT(idl_bench_report_json(&o, &r, NULL, f), 0);
    fclose(f);
    root = json_loads(buf, 0, &jerr);
    CHECK(root != NULL);
    CHECK(json_object_get(root, "baseline_rps") == NULL);
    CHECK(json_object_get(root, "ratio") == NULL);
    CHECK(json_object_get(root, "lookups_per_s") == NULL);
    CHECK(json_number_value(json_object_get(root, "rate")) == 100.0);
    CHECK_INT(json_integer_value(json_object_get(root, "unsent")), 17);
    /* 10 failed replies and 17 never sent, of 1017 due. */
    CHECK(fabs(json_number_value(json_object_get(root, "error_share")) - 27.0 / 1017) < 1e-6);
    json_decref(root);
    free(buf);

    /* An empty run still gives valid JSON with zeros. */
    idl_hist_reset(h);
    memset(&r, 0, sizeof(r));
    r.latency_us = h;
    buf = NULL;
    f = open_memstream(&buf, &len);
    CHECK_INT(idl_bench_report_json(&o, &r, NULL, f), 0);
    fclose(f);
    root = json_loads(buf, 0, &jerr);
    CHECK(root && json_number_value(json_object_get(root, "throughput_rps")) == 0.0);
    CHECK(root && is_int(json_object_get(root, "latency_us"), "p99"));
    json_decref(root);
    free(buf);

    idl_hist_free(h);
    idl_hist_free(bh);
}

/* A mix reports each method's latency next to the overall one. */
static void mix_latency_report(void)
{
    idl_bench_opts o;
    char err[256];
    CHECK_INT(PARSE(&o, err, "--mix", "search=90,batch=10", "--data", "f"), 0);
    idl_hist *all = NULL, *search = NULL, *batch = NULL;
    CHECK(idl_hist_new(&all) == 0 && idl_hist_new(&search) == 0 && idl_hist_new(&batch) == 0);
    idl_bench_result r;
    memset(&r, 0, sizeof(r));
    for (uint64_t v = 1; v <= 900; v++) {
        idl_hist_record(search, v);
        idl_hist_record(all, v);
    }
    for (uint64_t v = 1; v <= 100; v++) {
        idl_hist_record(batch, 5000 + v);
        idl_hist_record(all, 5000 + v);
    }
    r.requests = 1000;
    r.duration_s = 1.0;
    r.outcomes[IDL_OK] = 1000;
    r.per_method[IDL_BENCH_SEARCH] = r.per_method_ok[IDL_BENCH_SEARCH] = 900;
    r.per_method[IDL_BENCH_BATCH] = r.per_method_ok[IDL_BENCH_BATCH] = 100;
    r.latency_us = all;
    r.method_latency_us[IDL_BENCH_SEARCH] = search;
    r.method_latency_us[IDL_BENCH_BATCH] = batch;

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK_INT(idl_bench_report_json(&o, &r, NULL, f), 0);
    fclose(f);
    json_error_t jerr;
    json_t *root = json_loads(buf, 0, &jerr);
    CHECK(root != NULL);
    json_t *ml = root ? json_object_get(root, "method_latency_us") : NULL;
    CHECK(json_is_object(ml));
    CHECK_INT(json_object_size(ml), 2);
    json_t *s = json_object_get(ml, "search"), *b = json_object_get(ml, "batch");
    CHECK(is_int(s, "p99") && is_int(b, "p99"));
    CHECK_INT(json_integer_value(json_object_get(s, "max")), 900);
    CHECK_INT(json_integer_value(json_object_get(s, "p99")), 891);
    CHECK_INT(json_integer_value(json_object_get(b, "min")), 5001);
    /* Above 2048 a bucket is 1/1024 of its value wide, reported at its top. */
    json_int_t bp50 = json_integer_value(json_object_get(b, "p50"));
    CHECK(bp50 >= 5050 && bp50 <= 5055);
    /* The overall p99 falls among the batches. */
    json_int_t p99 =
        json_integer_value(json_object_get(json_object_get(root, "latency_us"), "p99"));
    CHECK(p99 >= 5090 && p99 <= 5095);
    json_decref(root);
    free(buf);

    buf = NULL;
    f = open_memstream(&buf, &len);
    CHECK_INT(idl_bench_report_text(&o, &r, NULL, f), 0);
    fclose(f);
    CHECK(strstr(buf, "  search     min 1 us") != NULL);
    CHECK(strstr(buf, "  batch      min 5001 us") != NULL);
    free(buf);
    idl_hist_free(all);
    idl_hist_free(search);
    idl_hist_free(batch);
}

static void text_report(void)
{
    idl_bench_opts o;
    char err[256];
    CHECK_INT(PARSE(&o, err, "--data", "f"), 0);
    idl_hist *h = NULL;
    CHECK(idl_hist_new(&h) == 0);
    idl_bench_result r;
    fill_result(&r, h, 990, 8, 2);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK_INT(idl_bench_report_text(&o, &r, &r, f), 0);
    fclose(f);
    CHECK(strstr(buf, "mix search=70,validate=15,verify=10,batch=5") != NULL);
    CHECK(strstr(buf, "1000 in 2.000 s = 500.0 req/s") != NULL);
    CHECK(strstr(buf, "RESOURCE_EXHAUSTED 8") != NULL);
    CHECK(strstr(buf, "TIMEOUT 2") != NULL);
    CHECK(strstr(buf, "p99.9") != NULL);
    CHECK(strstr(buf, "baseline") != NULL);
    CHECK(strstr(buf, "100.0% of it") != NULL);
    CHECK(strchr(buf, '#') != NULL);
    free(buf);
    idl_hist_free(h);
}

/* ---- the binary --------------------------------------------------------- */

static const char *bench_path;

/* Runs the bench with a shell command line; returns its exit status and
 * leaves stdout/stderr in the two files. */
/* ---- client choice and SP over TCP --------------------------------------- */

static int run_bench(const char *args, const char *out, const char *errf);
static char *slurp(const char *path);

static void client_flags(void)
{
    idl_bench_opts o;
    char err[256] = "";
    /* tcp:// URLs get the raw client with one thread unless told. */
    CHECK_INT(PARSE(&o, err, "--method", "health"), 0);
    CHECK_INT(o.client, IDL_BENCH_CLIENT_RAW);
    CHECK_INT(o.threads, 1);
    CHECK_INT(PARSE(&o, err, "--method", "health", "--url", "tcp://[::1]:7411,tcp://h:1", "-c", "8",
                    "--sockets", "4", "--threads", "3"),
              0);
    CHECK_INT(o.client, IDL_BENCH_CLIENT_RAW);
    CHECK_INT(o.threads, 3);
    CHECK_INT(PARSE(&o, err, "--method", "health", "--client", "nng"), 0);
    CHECK_INT(o.client, IDL_BENCH_CLIENT_NNG);
    /* Any other transport is nng's. */
    CHECK_INT(PARSE(&o, err, "--method", "health", "--url", "tcp://h:1,ipc:///tmp/x"), 0);
    CHECK_INT(o.client, IDL_BENCH_CLIENT_NNG);
    static const struct {
        const char *args[8];
        const char *flag;
    } bad[] = {
        {{"--method", "health", "--client", "zmq"}, "--client"},
        {{"--method", "health", "--client", "raw", "--url", "ipc:///tmp/x"}, "--client raw"},
        {{"--method", "health", "--client", "nng", "--threads", "2"}, "--threads"},
        {{"--method", "health", "-c", "4", "--sockets", "2", "--threads", "3"}, "--threads"},
        {{"--method", "health", "--threads", "0"}, "--threads"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *argv[10] = {"idlookup-bench"};
        int argc = 1;
        while (argc < 9 && bad[i].args[argc - 1]) {
            argv[argc] = (char *)bad[i].args[argc - 1];
            argc++;
        }
        err[0] = 0;
        CHECK_INT(idl_bench_parse_args(argc, argv, &o, err, sizeof err), IDL_INVALID_ARGUMENT);
        CHECKM(strstr(err, bad[i].flag) != NULL, "case %zu: \"%s\" should name %s", i, err,
               bad[i].flag);
    }
}

static void tcp_addresses(void)
{
    char host[64], port[16];
    const char *u = "tcp://127.0.0.1:7411";
    CHECK_INT(idl_bench_tcp_addr(u, strlen(u), host, sizeof host, port, sizeof port), 0);
    CHECK_STR(host, "127.0.0.1");
    CHECK_STR(port, "7411");
    u = "tcp://[::1]:9";
    CHECK_INT(idl_bench_tcp_addr(u, strlen(u), host, sizeof host, port, sizeof port), 0);
    CHECK_STR(host, "::1");
    CHECK_STR(port, "9");
    /* Only the first len bytes count: one URL out of a list. */
    u = "tcp://a:1,tcp://b:2";
    CHECK_INT(idl_bench_tcp_addr(u, 9, host, sizeof host, port, sizeof port), 0);
    CHECK_STR(host, "a");
    CHECK_STR(port, "1");
    static const char *const bad[] = {"ipc:///tmp/x", "tcp://host",  "tcp://:1",     "tcp://h:",
                                      "tcp://h:x1",   "tcp://[::1]", "tcp://[::1]9", "tcp:/h:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECKM(idl_bench_tcp_addr(bad[i], strlen(bad[i]), host, sizeof host, port, sizeof port) ==
                   IDL_INVALID_ARGUMENT,
               "%s should be refused", bad[i]);
    /* A host longer than the buffer is refused, not cut. */
    u = "tcp://a-rather-long-host-name:1";
    CHECK_INT(idl_bench_tcp_addr(u, strlen(u), host, 8, port, sizeof port), IDL_INVALID_ARGUMENT);
}

static void sp_framing(void)
{
    unsigned char h[IDL_BENCH_SP_HELLO];
    idl_bench_sp_hello(IDL_BENCH_SP_REQ0, h);
    static const unsigned char req0[8] = {0, 'S', 'P', 0, 0, 0x30, 0, 0};
    CHECK(memcmp(h, req0, 8) == 0);
    CHECK_INT(idl_bench_sp_check_hello(h, IDL_BENCH_SP_REQ0), 0);
    CHECK_INT(idl_bench_sp_check_hello(h, IDL_BENCH_SP_REP0), IDL_INVALID_ARGUMENT);
    h[1] = 's';
    CHECK_INT(idl_bench_sp_check_hello(h, IDL_BENCH_SP_REQ0), IDL_INVALID_ARGUMENT);

    unsigned char head[IDL_BENCH_SP_REQ_HEAD];
    idl_bench_sp_req_head(head, 0x1234567, 300);
    static const unsigned char want[12] = {0, 0, 0, 0, 0, 0, 0x01, 0x30, 0x81, 0x23, 0x45, 0x67};
    CHECK(memcmp(head, want, 12) == 0);

    /* A reply: length 4 + 3, the id word, 3 body bytes, then the next
     * frame's first bytes. */
    unsigned char buf[32] = {0, 0, 0, 0, 0, 0, 0, 7, 0x80, 0, 0x01, 0x02, 0xa1, 'x', 0xc0, 0, 0};
    size_t frame = 99, blen = 0;
    uint32_t id = 0;
    const unsigned char *body = NULL;
    for (size_t avail = 0; avail < 15; avail++) {
        CHECK_INT(idl_bench_sp_split(buf, avail, 1000, &frame, &id, &body, &blen), IDL_UNAVAILABLE);
        CHECK_INT(frame, avail < 8 ? 0 : 15);
    }
    CHECK_INT(idl_bench_sp_split(buf, 17, 1000, &frame, &id, &body, &blen), 0);
    CHECK_INT(frame, 15);
    CHECK_INT(id, 0x102);
    CHECK(body == buf + 12);
    CHECK_INT(blen, 3);
    /* Longer than the cap: refused before anything waits for it. */
    CHECK_INT(idl_bench_sp_split(buf, 8, 6, &frame, &id, &body, &blen), IDL_INVALID_ARGUMENT);
    static const unsigned char huge[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    CHECK_INT(idl_bench_sp_split(huge, 8, 1u << 26, &frame, &id, &body, &blen),
              IDL_INVALID_ARGUMENT);
    /* A hop word before the id (a device in between) is skipped. */
    unsigned char hop[16] = {0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 5, 0x80, 0, 0, 9};
    CHECK_INT(idl_bench_sp_split(hop, 16, 1000, &frame, &id, &body, &blen), 0);
    CHECK_INT(id, 9);
    CHECK_INT(blen, 0);
    /* No word with the high bit: not a reply. */
    hop[12] = 0;
    CHECK_INT(idl_bench_sp_split(hop, 16, 1000, &frame, &id, &body, &blen), IDL_INVALID_ARGUMENT);
    /* Shorter than an id. */
    unsigned char tiny[10] = {0, 0, 0, 0, 0, 0, 0, 2, 0x80, 0};
    CHECK_INT(idl_bench_sp_split(tiny, 10, 1000, &frame, &id, &body, &blen), IDL_INVALID_ARGUMENT);
}

/* ---- the raw client against a fake SP server ------------------------------
 * A rep0 peer on a loopback port, in a thread of the test: it answers each
 * request as told (faithfully, after closing the connection every so often,
 * with wrong ids, with garbage), so the raw client's handling of each is
 * seen in the report of a real idlookup-bench run. */

enum {
    FAKE_OK,          /* {"id": id, "code": 0} */
    FAKE_CLOSE_EVERY, /* closes the connection after per_conn replies */
    FAKE_WRONG_ENV,   /* the envelope's id is not the request's */
    FAKE_WRONG_SP,    /* the SP request id is not the request's */
    FAKE_GARBAGE,     /* a length prefix no reply can have */
    FAKE_BAD_HELLO,   /* greets as req0, not rep0 */
    FAKE_BIG,         /* each reply carries 1 MiB of padding */
};

typedef struct {
    int lfd;
    int mode;
    int per_conn;
    unsigned short port;
    atomic_int accepted;
    atomic_int served;
    atomic_bool stop;
    pthread_t tid;
} fake_sp;

#define FAKE_PAD (1u << 20)

static bool read_full(int fd, void *buf, size_t n, fake_sp *f)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (atomic_load(&f->stop)) return false;
        if (poll(&p, 1, 50) <= 0) continue;
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0) return false;
        got += (size_t)r;
    }
    return true;
}

static bool write_full(int fd, const void *buf, size_t n)
{
    size_t put = 0;
    while (put < n) {
        ssize_t r = send(fd, (const char *)buf + put, n - put, MSG_NOSIGNAL);
        if (r <= 0) return false;
        put += (size_t)r;
    }
    return true;
}

/* The envelope id of a request, decoded the slow way. */
static uint64_t request_id(const unsigned char *env, size_t len)
{
    msgpack_zone z;
    msgpack_object o = decode(env, len, &z);
    const msgpack_object *id = get(&o, "id");
    uint64_t v = id && id->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? id->via.u64 : 0;
    msgpack_zone_destroy(&z);
    return v;
}

static void fake_serve(fake_sp *f, int fd)
{
    unsigned char hello[8];
    idl_bench_sp_hello(f->mode == FAKE_BAD_HELLO ? IDL_BENCH_SP_REQ0 : IDL_BENCH_SP_REP0, hello);
    unsigned char peer[8];
    if (!read_full(fd, peer, 8, f) || !write_full(fd, hello, 8)) return;
    if (idl_bench_sp_check_hello(peer, IDL_BENCH_SP_REQ0)) return;
    unsigned char *req = malloc(70000), *rep = calloc(1, FAKE_PAD + 64);
    for (int n = 0;; n++) {
        unsigned char lenb[8];
        if (!read_full(fd, lenb, 8, f)) break;
        uint64_t len = 0;
        for (int k = 0; k < 8; k++)
            len = len << 8 | lenb[k];
        if (len < 4 || len > 70000 || !read_full(fd, req, len, f)) break;
        if (f->mode == FAKE_GARBAGE) {
            static const unsigned char junk[12] = {0x7f, 1, 2, 3, 4, 5, 6, 7, 'j', 'u', 'n', 'k'};
            write_full(fd, junk, sizeof junk);
            continue;
        }
        uint64_t id = request_id(req + 4, len - 4);
        if (f->mode == FAKE_WRONG_ENV) id ^= 1;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, f->mode == FAKE_BIG ? 3 : 2);
        msgpack_pack_str_with_body(&pk, "id", 2);
        msgpack_pack_uint64(&pk, id);
        if (f->mode == FAKE_BIG) {
            msgpack_pack_str_with_body(&pk, "pad", 3);
            msgpack_pack_bin(&pk, FAKE_PAD);
            msgpack_pack_bin_body(&pk, rep, FAKE_PAD);
        }
        msgpack_pack_str_with_body(&pk, "code", 4);
        msgpack_pack_int(&pk, 0);
        uint64_t plen = sb.size + 4;
        unsigned char head[12];
        for (int k = 0; k < 8; k++)
            head[k] = (unsigned char)(plen >> (56 - 8 * k));
        memcpy(head + 8, req, 4);
        if (f->mode == FAKE_WRONG_SP) head[11] ^= 0x55;
        bool ok = write_full(fd, head, 12) && write_full(fd, sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
        if (!ok) break;
        atomic_fetch_add(&f->served, 1);
        if (f->mode == FAKE_CLOSE_EVERY && n + 1 == f->per_conn) break;
    }
    free(req);
    free(rep);
}

static void *fake_main(void *arg)
{
    fake_sp *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd p = {.fd = f->lfd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0) continue;
        atomic_fetch_add(&f->accepted, 1);
        fake_serve(f, fd);
        close(fd);
    }
    return NULL;
}

static void fake_start(fake_sp *f, int mode, int per_conn)
{
    memset(f, 0, sizeof(*f));
    f->mode = mode;
    f->per_conn = per_conn;
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    CHECK(bind(f->lfd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(listen(f->lfd, 16) == 0);
    CHECK(getsockname(f->lfd, (struct sockaddr *)&a, &alen) == 0);
    f->port = ntohs(a.sin_port);
    CHECK(pthread_create(&f->tid, NULL, fake_main, f) == 0);
}

static void fake_stop(fake_sp *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->tid, NULL);
    close(f->lfd);
}

/* Runs the bench (raw client) against the fake server with extra args and
 * returns its exit status and parsed JSON report (NULL if none). */
static int run_against(const fake_sp *f, const char *extra, json_t **rep)
{
    char args[512], out[64], errf[64];
    snprintf(out, sizeof out, "/tmp/test-bench-fake-%d.out", (int)getpid());
    snprintf(errf, sizeof errf, "/tmp/test-bench-fake-%d.err", (int)getpid());
    snprintf(args, sizeof args,
             "--url tcp://127.0.0.1:%u --method health --format json --client raw %s", f->port,
             extra);
    int rc = run_bench(args, out, errf);
    char *o = slurp(out);
    *rep = json_loads(o, 0, NULL);
    free(o);
    unlink(out);
    unlink(errf);
    return rc;
}

static long long code_count(json_t *rep, const char *code)
{
    return json_integer_value(json_object_get(json_object_get(rep, "codes"), code));
}

static void raw_client_faithful_and_big_replies(void)
{
    if (!bench_path) return;
    fake_sp f;
    json_t *rep = NULL;
    fake_start(&f, FAKE_OK, 0);
    CHECK_INT(run_against(&f, "-n 200 -c 4", &rep), 0);
    CHECK_INT(json_integer_value(json_object_get(rep, "requests")), 200);
    CHECK_INT(code_count(rep, "OK"), 200);
    CHECK_STR(json_string_value(json_object_get(rep, "client")), "raw");
    json_decref(rep);
    fake_stop(&f);
    CHECK_INT(atomic_load(&f.served), 200);

    /* Replies four times the read buffer: it grows, and they are read. */
    fake_start(&f, FAKE_BIG, 0);
    CHECK_INT(run_against(&f, "-n 6 -c 2", &rep), 0);
    CHECK_INT(code_count(rep, "OK"), 6);
    json_decref(rep);
    fake_stop(&f);
}

static void raw_client_reconnects(void)
{
    if (!bench_path) return;
    fake_sp f;
    json_t *rep = NULL;
    /* The server hangs up after every 50 replies: the requests then in
     * flight fail as transport errors, the client dials again and the run
     * completes. */
    fake_start(&f, FAKE_CLOSE_EVERY, 50);
    CHECK_INT(run_against(&f, "-n 400 -c 4 --timeout-ms 3000 --max-errors 1", &rep), 0);
    long long ok = code_count(rep, "OK"), terr = code_count(rep, "TRANSPORT_ERROR");
    CHECK_INT(json_integer_value(json_object_get(rep, "requests")), 400);
    CHECK_INT(ok + terr + code_count(rep, "TIMEOUT"), 400);
    CHECK(ok >= 300);
    CHECK(terr >= 1);
    json_decref(rep);
    fake_stop(&f);
    CHECK(atomic_load(&f.accepted) >= 7);
}

static void raw_client_refuses_wrong_replies(void)
{
    if (!bench_path) return;
    fake_sp f;
    json_t *rep = NULL;
    /* Right SP id, wrong envelope id: each a bad reply, exit 1. */
    fake_start(&f, FAKE_WRONG_ENV, 0);
    CHECK_INT(run_against(&f, "-n 20 -c 2", &rep), 1);
    CHECK_INT(code_count(rep, "BAD_REPLY"), 20);
    CHECK_INT(code_count(rep, "OK"), 0);
    json_decref(rep);
    fake_stop(&f);

    /* An SP id nobody waits for is dropped, as nng drops it: the requests
     * time out. */
    fake_start(&f, FAKE_WRONG_SP, 0);
    CHECK_INT(run_against(&f, "-n 4 -c 2 --timeout-ms 200", &rep), 1);
    CHECK_INT(code_count(rep, "TIMEOUT"), 4);
    json_decref(rep);
    fake_stop(&f);

    /* Garbage and a wrong greeting break the connection: every request
     * fails, none hangs, the bench exits 1. */
    static const int modes[] = {FAKE_GARBAGE, FAKE_BAD_HELLO};
    for (size_t i = 0; i < 2; i++) {
        fake_start(&f, modes[i], 0);
        CHECK_INT(run_against(&f, "-n 6 -c 2 --timeout-ms 300", &rep), 1);
        CHECK_INT(json_integer_value(json_object_get(rep, "requests")), 6);
        CHECK_INT(code_count(rep, "OK"), 0);
        CHECK_INT(code_count(rep, "TRANSPORT_ERROR") + code_count(rep, "TIMEOUT"), 6);
        json_decref(rep);
        fake_stop(&f);
    }

    /* Nobody listens on the port: every request times out. */
    fake_start(&f, FAKE_OK, 0);
    fake_stop(&f); /* the port is closed again */
    CHECK_INT(run_against(&f, "-n 3 -c 1 --timeout-ms 100", &rep), 1);
    CHECK_INT(code_count(rep, "TIMEOUT"), 3);
    json_decref(rep);
}

static int run_bench(const char *args, const char *out, const char *errf)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "'%s' %s >%s 2>%s", bench_path, args, out, errf);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return strdup("");
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void binary_exit_codes(void)
{
    if (!bench_path) {
        printf("skip binary_exit_codes (no bench path given)\n");
        return;
    }
    char out[64], errf[64];
    snprintf(out, sizeof(out), "/tmp/test-bench-%d.out", (int)getpid());
    snprintf(errf, sizeof(errf), "/tmp/test-bench-%d.err", (int)getpid());

    static const struct {
        const char *args, *names;
    } bad[] = {
        {"--method health -c 0", "--concurrency"},
        {"--method health --rate -5", "--rate"},
        {"--mix search=70,lookup=30 --data x", "--mix"},
        {"--method search", "--data"},
        {"--frobnicate", "--frobnicate"},
        {"--method search --data x --search-by phones", "--search-by"},
        {"--method health --url not-a-url -n 1", "--url"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = run_bench(bad[i].args, out, errf);
        char *e = slurp(errf), *o = slurp(out);
        CHECK_INT(rc, 2);
        char *nl = strchr(e, '\n');
        if (!strstr(e, bad[i].names) || !nl || nl[1] != '\0' || *o) {
            fprintf(stderr, "  \"%s\": stderr \"%s\", want one line naming %s\n", bad[i].args, e,
                    bad[i].names);
            CHECK(0);
        }
        free(e);
        free(o);
    }

    /* A pool without the kind of identifier --search-by asks for: exit 1
     * before the first request, with the flag named. */
    char *phones_only = write_pool("{\"first_name\":\"Bob\",\"phones\":[\"+1 212 555 0100\"]}\n");
    char pool_args[512];
    snprintf(pool_args, sizeof(pool_args),
             "--url ipc:///tmp/test-bench-nobody-%d.sock --method search --data %s -n 1",
             (int)getpid(), phones_only);
    CHECK_INT(run_bench(pool_args, out, errf), 1);
    char *pool_err = slurp(errf);
    CHECK(strstr(pool_err, "--search-by email") != NULL);
    free(pool_err);
    unlink(phones_only);
    free(phones_only);

    CHECK_INT(run_bench("--help", out, errf), 0);
    char *help = slurp(out);
    CHECK(strstr(help, "--baseline") && strstr(help, "--max-errors"));
    free(help);

    /* Nobody listens: every request times out, the JSON says so, exit 1. */
    char args[256];
    snprintf(args, sizeof(args),
             "--url ipc:///tmp/test-bench-nobody-%d.sock --method health -n 3 -c 1 "
             "--timeout-ms 100 --format json",
             (int)getpid());
    CHECK_INT(run_bench(args, out, errf), 1);
    char *o = slurp(out);
    json_t *root = json_loads(o, 0, NULL);
    CHECK(root != NULL);
    CHECK_INT(json_integer_value(json_object_get(root, "requests")), 3);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(root, "codes"), "TIMEOUT")), 3);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(root, "codes"), "OK")), 0);
    json_decref(root);
    free(o);
    /* ... unless --max-errors allows it. */
    strcat(args, " --max-errors 1");
    CHECK_INT(run_bench(args, out, errf), 0);
    unlink(out);
    unlink(errf);
}

int main(int argc, char **argv)
{
    bench_path = argc > 1 ? argv[1] : NULL;
    RUN(args_defaults);
    RUN(args_all_flags);
    RUN(args_errors_name_the_flag);
    RUN(help_documents_every_flag);
    RUN(mix_parsing);
    RUN(mix_pick_follows_weights);
    RUN(open_loop_schedule);
    RUN(due_before_agrees_with_schedule);
    RUN(latency_from_schedule);
    RUN(pool_loading);
    RUN(request_bodies);
    RUN(search_by_needs_matching_persons);
    RUN(request_id_patching);
    RUN(reply_scanning);
    RUN(scanner_skips_every_type);
    RUN(json_report_shape);
    RUN(mix_latency_report);
    RUN(text_report);
    RUN(binary_exit_codes);
    RUN(client_flags);
    RUN(tcp_addresses);
    RUN(sp_framing);
    RUN(raw_client_faithful_and_big_replies);
    RUN(raw_client_reconnects);
    RUN(raw_client_refuses_wrong_replies);
    return test_summary();
}
