/* The pure parts of idlookup-bench (see bench_lib.h): everything that can be
 * decided without a socket, so that the unit tests check it and the load loop
 * in main.c only copies bytes, sends and counts.
 */
#include "bench_lib.h"
#include "args.h"
#include "methods.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ------------------------------------------------------------- */

static const char *const method_names[IDL_BENCH_NMETHODS] = {
    "health", "search", "validate", "verify", "batch",
};

/* The rows of common/methods.h the bench drives, in its own order. */
static const idl_method_id method_row[IDL_BENCH_NMETHODS] = {
    IDL_METHOD_HEALTH, IDL_METHOD_SEARCH, IDL_METHOD_VALIDATE, IDL_METHOD_VERIFY, IDL_METHOD_BATCH,
};

const char *idl_bench_method_name(int m)
{
    return m >= 0 && m < IDL_BENCH_NMETHODS ? method_names[m] : NULL;
}

const char *idl_bench_method_wire(int m)
{
    return m >= 0 && m < IDL_BENCH_NMETHODS ? idl_method_name(method_row[m]) : NULL;
}

static int method_by_name(const char *s, size_t n)
{
    for (int m = 0; m < IDL_BENCH_NMETHODS; m++)
        if (strlen(method_names[m]) == n && memcmp(method_names[m], s, n) == 0) return m;
    return -1;
}

const char *idl_bench_outcome_name(int outcome)
{
    switch (outcome) {
    case IDL_BENCH_TIMEOUT:
        return "TIMEOUT";
    case IDL_BENCH_TRANSPORT_ERROR:
        return "TRANSPORT_ERROR";
    case IDL_BENCH_BAD_REPLY:
        return "BAD_REPLY";
    default:
        return idl_status_name(outcome);
    }
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- numbers ----------------------------------------------------------- */

/* A whole number in [min, max], decimal, nothing else around it. */
static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    return idl_args_uint(s, min, max, out);
}

/* A finite decimal number in [min, max] (max_open: max itself excluded, min
 * excluded when min_open). */
static int parse_double(const char *s, double min, bool min_open, double max, double *out)
{
    if (!s || !*s || isspace((unsigned char)s[0])) return IDL_INVALID_ARGUMENT;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < min || v > max || (min_open && v == min))
        return IDL_INVALID_ARGUMENT;
    *out = v;
    return 0;
}

/* Seconds, with an optional unit: "10", "2.5s", "500ms", "1m". */
static int parse_seconds(const char *s, bool zero_ok, double *out)
{
    if (!s || !*s || !(isdigit((unsigned char)s[0]) || s[0] == '.')) return IDL_INVALID_ARGUMENT;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double scale;
    if (errno || !isfinite(v)) return IDL_INVALID_ARGUMENT;
    if (!strcmp(end, "") || !strcmp(end, "s"))
        scale = 1;
    else if (!strcmp(end, "ms"))
        scale = 1e-3;
    else if (!strcmp(end, "m"))
        scale = 60;
    else
        return IDL_INVALID_ARGUMENT;
    v *= scale;
    /* A week is far beyond any sensible run and keeps ns arithmetic safe. */
    if (v < 0 || v > 7 * 86400.0 || (!zero_ok && v == 0)) return IDL_INVALID_ARGUMENT;
    *out = v;
    return 0;
}

/* ---- mix --------------------------------------------------------------- */

int idl_bench_mix_parse(const char *spec, idl_bench_mix *mix, char *err, size_t errlen)
{
    idl_bench_mix m = {{0}, 0};
    bool seen[IDL_BENCH_NMETHODS] = {false};
    const char *p = spec;
    if (!spec || !*spec) {
        set_err(err, errlen, "--mix: empty; expected e.g. %s", IDL_BENCH_DEFAULT_MIX);
        return IDL_INVALID_ARGUMENT;
    }
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (n == 0) {
            set_err(err, errlen, "--mix: empty entry in \"%s\"", spec);
            return IDL_INVALID_ARGUMENT;
        }
        if (!eq) {
            set_err(err, errlen, "--mix: \"%.*s\" is not method=weight", (int)n, p);
            return IDL_INVALID_ARGUMENT;
        }
        int meth = method_by_name(p, (size_t)(eq - p));
        if (meth < 0) {
            set_err(err, errlen,
                    "--mix: unknown method \"%.*s\" (known: health, search, validate, verify, "
                    "batch)",
                    (int)(eq - p), p);
            return IDL_INVALID_ARGUMENT;
        }
        if (seen[meth]) {
            set_err(err, errlen, "--mix: %s given twice", method_names[meth]);
            return IDL_INVALID_ARGUMENT;
        }
        seen[meth] = true;
        char num[32];
        size_t numlen = n - (size_t)(eq + 1 - p);
        uint64_t w = 0;
        if (numlen >= sizeof(num)) {
            set_err(err, errlen, "--mix: bad weight for %s", method_names[meth]);
            return IDL_INVALID_ARGUMENT;
        }
        memcpy(num, eq + 1, numlen);
        num[numlen] = '\0';
        if (parse_u64(num, 0, 1000000, &w)) {
            set_err(err, errlen,
                    "--mix: weight of %s must be a whole number 0..1000000, got \"%s\"",
                    method_names[meth], num);
            return IDL_INVALID_ARGUMENT;
        }
        m.weight[meth] = (unsigned)w;
        m.total += (unsigned)w;
        if (!comma) break;
        p = comma + 1;
    }
    if (m.total == 0) {
        set_err(err, errlen, "--mix: the weights sum to 0");
        return IDL_INVALID_ARGUMENT;
    }
    *mix = m;
    return 0;
}

int idl_bench_mix_pick(const idl_bench_mix *mix, uint64_t r)
{
    /* The modulo bias is below total / 2^64: nothing a run can see. */
    uint64_t x = r % mix->total;
    for (int m = 0; m < IDL_BENCH_NMETHODS; m++) {
        if (x < mix->weight[m]) return m;
        x -= mix->weight[m];
    }
    return IDL_BENCH_NMETHODS - 1; /* unreachable with total = sum of weights */
}

/* ---- command line ------------------------------------------------------ */

enum {
    F_URL,
    F_KEY,
    F_METHOD,
    F_MIX,
    F_DATA,
    F_MISS,
    F_SEARCH_BY,
    F_BATCH,
    F_CONC,
    F_SOCKETS,
    F_DURATION,
    F_REQUESTS,
    F_WARMUP,
    F_RATE,
    F_TIMEOUT,
    F_DEADLINE,
    F_FORMAT,
    F_PROGRESS,
    F_MAXERR,
    F_BASELINE,
    F_SEED,
    F_CLIENT,
    F_THREADS,
    F_HELP,
};

static const idl_args_flag flags[] = {
    {"url", 0, "URL",
     "service address, or a comma-separated list of nodes (default tcp://127.0.0.1:7411)", F_URL},
    {"key", 0, "KEY", "API key sent as Bearer (health needs none)", F_KEY},
    {"method", 0, "M", "one workload: health, search, validate, verify or batch", F_METHOD},
    {"mix", 0, "SPEC",
     "weighted workloads, e.g. search=70,validate=15,verify=10,batch=5\n"
     "(the default when neither --method nor --mix is given)",
     F_MIX},
    {"data", 0, "FILE",
     "NDJSON persons (as `idlookup gen` writes) to query; needed by\n"
     "every workload but health",
     F_DATA},
    {"miss-ratio", 0, "R",
     "share 0..1 of lookups for made-up identifiers not in --data (default 0)", F_MISS},
    {"search-by", 0, "KIND",
     "what Search and Batch's Searches ask for: email (default; persons\n"
     "with an email), phone (persons with a phone) or any\n"
     "(email, else phone); misses are made-up emails or phones",
     F_SEARCH_BY},
    {"batch-size", 0, "N", "Search calls per Batch request, 1..100 (default 100)", F_BATCH},
    {"concurrency", 'c', "N", "requests in flight, spread over the connections (default 8)",
     F_CONC},
    {"sockets", 0, "K",
     "client connections (default 1, at most -c); raw: TCP connections\n"
     "spread over the --url list, nng: sockets each dialing every URL",
     F_SOCKETS},
    {"client", 0, "KIND",
     "raw: SP over TCP from our own event loops (the default when every\n"
     "--url is tcp://); nng: nng req0 contexts (any transport)",
     F_CLIENT},
    {"threads", 0, "N",
     "raw client: event-loop threads, connections spread over them\n"
     "(default 1, at most --sockets)",
     F_THREADS},
    {"duration", 'z', "SECS", "measured run time: 10, 2.5s, 500ms, 1m (default 10 s)", F_DURATION},
    {"requests", 'n', "N", "measured requests instead of a duration", F_REQUESTS},
    {"warmup", 0, "SECS", "run this long first without counting (default 0)", F_WARMUP},
    {"rate", 0, "R",
     "open loop: R requests/s in total, request i due at start + i/R;\n"
     "latency counts from the due time (coordinated omission\n"
     "corrected). Without --rate: closed loop",
     F_RATE},
    {"timeout-ms", 0, "MS", "how long to wait for each reply (default 5000)", F_TIMEOUT},
    {"deadline-ms", 0, "MS", "send timeout_ms = MS with every request (default none)", F_DEADLINE},
    {"format", 0, "FMT", "text (default) or json: one JSON object on stdout", F_FORMAT},
    {"progress", 0, NULL, "live progress line on stderr even when it is not a terminal",
     F_PROGRESS},
    {"max-errors", 0, "F",
     "exit 1 when the share of non-OK requests exceeds F, 0..1 (default 0);\n"
     "with --rate, requests never sent count as failed",
     F_MAXERR},
    {"baseline", 0, NULL,
     "first measure Health/Check (closed loop, same -c/--sockets/-z/-n/--warmup)\n"
     "and report the workload as a ratio of that ceiling",
     F_BASELINE},
    {"seed", 0, "N", "seed for picking persons and made-up identifiers (default 1)", F_SEED},
    {"help", 'h', NULL, "this text", F_HELP},
};

static const idl_args_spec spec = {
    .prog = "idlookup-bench",
    .head = "usage: idlookup-bench [--url URL] [--key KEY] [--method M | --mix SPEC]\n"
            "                      [--data FILE] [-c N] [-z SECS | -n N] [--rate R] ...\n"
            "Load generator for idlookupd: sends requests, reports throughput, status codes\n"
            "and the latency distribution (HDR histogram).  Exit 0, 1 when the error share\n"
            "exceeds --max-errors (or the run cannot start), 2 for bad usage.\n\n",
    .flags = flags,
    .nflags = sizeof flags / sizeof flags[0],
    .indent = 2,
    .column = 24,
};

void idl_bench_usage(FILE *f)
{
    idl_args_usage(&spec, f);
}

static void defaults(idl_bench_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->url = "tcp://127.0.0.1:7411";
    o->batch_size = 100;
    o->concurrency = 8;
    o->sockets = 1;
    o->timeout_ms = 5000;
    o->deadline_ms = -1;
    o->seed = 1;
    o->threads = 1;
}

/* One flag with its value; writes err naming the flag on a bad value. */
static int apply_flag(idl_bench_opts *o, const idl_args_flag *fl, const char *v, bool *have,
                      char *err, size_t errlen)
{
    uint64_t u;
    double d;
    const char *name = fl->name;
    switch (fl->id) {
    case F_URL: {
        /* nng needs a scheme; catching "localhost:7411" here gives a usage
         * error rather than a run full of failed requests. */
        if (!*v) goto bad_text;
        /* A comma-separated list (a cluster's nodes): each one checked. */
        for (const char *p = v, *end; *p; p = *end ? end + 1 : end) {
            end = strchr(p, ',');
            if (!end) end = p + strlen(p);
            const char *sep = strstr(p, "://");
            if (!sep || sep >= end || sep == p || sep + 3 >= end) {
                set_err(err, errlen,
                        "--url: expected tcp://HOST:PORT or ipc:///PATH (or a comma-separated "
                        "list), got \"%s\"",
                        v);
                return IDL_INVALID_ARGUMENT;
            }
        }
        o->url = v;
        break;
    }
    case F_KEY:
        o->key = v;
        break;
    case F_METHOD: {
        int m = method_by_name(v, strlen(v));
        if (m < 0) {
            set_err(err, errlen,
                    "--method: unknown method \"%s\" (known: health, search, validate, verify, "
                    "batch)",
                    v);
            return IDL_INVALID_ARGUMENT;
        }
        memset(&o->mix, 0, sizeof(o->mix));
        o->mix.weight[m] = 1;
        o->mix.total = 1;
        o->method_label = method_names[m];
        break;
    }
    case F_MIX:
        if (idl_bench_mix_parse(v, &o->mix, err, errlen)) return IDL_INVALID_ARGUMENT;
        o->method_label = "mix";
        break;
    case F_DATA:
        if (!*v) goto bad_text;
        o->data = v;
        break;
    case F_MISS:
        if (parse_double(v, 0, false, 1, &d)) {
            set_err(err, errlen, "--%s: expected a share from 0 to 1, got \"%s\"", name, v);
            return IDL_INVALID_ARGUMENT;
        }
        o->miss_ratio = d;
        break;
    case F_SEARCH_BY:
        if (!strcmp(v, "email"))
            o->search_by = IDL_BENCH_BY_EMAIL;
        else if (!strcmp(v, "phone"))
            o->search_by = IDL_BENCH_BY_PHONE;
        else if (!strcmp(v, "any"))
            o->search_by = IDL_BENCH_BY_ANY;
        else {
            set_err(err, errlen, "--%s: expected email, phone or any, got \"%s\"", name, v);
            return IDL_INVALID_ARGUMENT;
        }
        break;
    case F_BATCH:
        if (parse_u64(v, 1, 100, &u)) {
            set_err(err, errlen, "--%s: expected a whole number 1..100, got \"%s\"", name, v);
            return IDL_INVALID_ARGUMENT;
        }
        o->batch_size = (unsigned)u;
        break;
    case F_CONC:
        if (parse_u64(v, 1, 10000, &u)) {
            set_err(err, errlen, "--%s: expected a whole number 1..10000, got \"%s\"", name, v);
            return IDL_INVALID_ARGUMENT;
        }
        o->concurrency = (unsigned)u;
        break;
    case F_SOCKETS:
        if (parse_u64(v, 1, 10000, &u)) {
            set_err(err, errlen, "--%s: expected a whole number 1..10000, got \"%s\"", name, v);
            return IDL_INVALID_ARGUMENT;
        }
        o->sockets = (unsigned)u;
        break;
    case F_DURATION:
        if (parse_seconds(v, false, &d)) {
            set_err(err, errlen,
                    "--%s: expected seconds > 0 (e.g. 10, 2.5s, 500ms, 1m), got \"%s\"", name, v);
            return IDL_INVALID_ARGUMENT;
        }
        o->duration_s = d;
        break;
    case F_REQUESTS:
        if (parse_u64(v, 1, UINT64_C(1) << 40, &u)) {
            set_err(err, errlen, "--%s: expected a whole number >= 1, got \"%s\"", name, v);
            return IDL_INVALID_ARGUMENT;
        }
        o->requests = u;
        break;
    case F_WARMUP:
        if (parse_seconds(v, true, &d)) {
            set_err(err, errlen, "--%s: expected seconds >= 0 (e.g. 2, 500ms), got \"%s\"", name,
                    v);
            return IDL_INVALID_ARGUMENT;
        }
        o->warmup_s = d;
        break;
    case F_RATE:
        if (parse_double(v, 0, true, 1e9, &d)) {
            set_err(err, errlen, "--%s: expected requests/s > 0, got \"%s\"", name, v);
            return IDL_INVALID_ARGUMENT;
        }
        o->rate = d;
        break;
    case F_TIMEOUT:
        if (parse_u64(v, 1, 3600000, &u)) {
            set_err(err, errlen, "--%s: expected milliseconds 1..3600000, got \"%s\"", name, v);
            return IDL_INVALID_ARGUMENT;
        }
        o->timeout_ms = (int)u;
        break;
    case F_DEADLINE:
        if (parse_u64(v, 0, 3600000, &u)) {
            set_err(err, errlen, "--%s: expected milliseconds 0..3600000, got \"%s\"", name, v);
            return IDL_INVALID_ARGUMENT;
        }
        o->deadline_ms = (int)u;
        break;
    case F_FORMAT:
        if (!strcmp(v, "json"))
            o->json = 1;
        else if (!strcmp(v, "text"))
            o->json = 0;
        else {
            set_err(err, errlen, "--%s: expected text or json, got \"%s\"", name, v);
            return IDL_INVALID_ARGUMENT;
        }
        break;
    case F_PROGRESS:
        o->progress = 1;
        break;
    case F_MAXERR:
        if (parse_double(v, 0, false, 1, &d)) {
            set_err(err, errlen, "--%s: expected a share from 0 to 1, got \"%s\"", name, v);
            return IDL_INVALID_ARGUMENT;
        }
        o->max_errors = d;
        break;
    case F_BASELINE:
        o->baseline = 1;
        break;
    case F_SEED:
        if (parse_u64(v, 0, UINT64_MAX, &u)) {
            set_err(err, errlen, "--%s: expected a whole number, got \"%s\"", name, v);
            return IDL_INVALID_ARGUMENT;
        }
        o->seed = u;
        break;
    case F_CLIENT:
        if (!strcmp(v, "raw"))
            o->client = IDL_BENCH_CLIENT_RAW;
        else if (!strcmp(v, "nng"))
            o->client = IDL_BENCH_CLIENT_NNG;
        else {
            set_err(err, errlen, "--%s: expected raw or nng, got \"%s\"", name, v);
            return IDL_INVALID_ARGUMENT;
        }
        break;
    case F_THREADS:
        if (parse_u64(v, 1, 256, &u)) {
            set_err(err, errlen, "--%s: expected a whole number 1..256, got \"%s\"", name, v);
            return IDL_INVALID_ARGUMENT;
        }
        o->threads = (unsigned)u;
        break;
    case F_HELP:
        o->help = 1;
        break;
    }
    have[fl->id] = true;
    return 0;

bad_text:
    set_err(err, errlen, "--%s: empty value", name);
    return IDL_INVALID_ARGUMENT;
}

int idl_bench_parse_args(int argc, char **argv, idl_bench_opts *o, char *err, size_t errlen)
{
    bool have[F_HELP + 1] = {false};
    defaults(o);
    idl_args args;
    const idl_args_flag *fl;
    const char *value;
    idl_args_start(&args, &spec, argc, argv);
    while (idl_args_next(&args, &fl, &value)) {
        if (fl->id == F_HELP) {
            o->help = 1;
            return 0;
        }
        if (have[fl->id]) {
            set_err(err, errlen, "--%s: given twice", fl->name);
            return IDL_INVALID_ARGUMENT;
        }
        if (apply_flag(o, fl, value, have, err, errlen)) return IDL_INVALID_ARGUMENT;
    }
    if (args.status) {
        set_err(err, errlen, "%s", args.err);
        return IDL_INVALID_ARGUMENT;
    }

    if (have[F_METHOD] && have[F_MIX]) {
        set_err(err, errlen, "--mix: cannot be combined with --method");
        return IDL_INVALID_ARGUMENT;
    }
    if (have[F_DURATION] && have[F_REQUESTS]) {
        set_err(err, errlen, "--requests: cannot be combined with --duration");
        return IDL_INVALID_ARGUMENT;
    }
    if (!have[F_METHOD] && !have[F_MIX]) {
        if (idl_bench_mix_parse(IDL_BENCH_DEFAULT_MIX, &o->mix, err, errlen)) return IDL_INTERNAL;
        o->method_label = "mix";
    }
    if (!have[F_REQUESTS] && !have[F_DURATION]) o->duration_s = 10;
    if (o->sockets > o->concurrency) {
        set_err(err, errlen,
                "--sockets: %u is more than --concurrency (%u); a socket needs a context",
                o->sockets, o->concurrency);
        return IDL_INVALID_ARGUMENT;
    }
    /* The raw client speaks TCP only; without --client it is chosen when
     * every URL allows it. */
    bool all_tcp = true;
    for (const char *p = o->url, *end; *p; p = *end ? end + 1 : end) {
        end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        char host[256], port[32];
        if (idl_bench_tcp_addr(p, (size_t)(end - p), host, sizeof host, port, sizeof port))
            all_tcp = false;
    }
    if (!have[F_CLIENT]) o->client = all_tcp ? IDL_BENCH_CLIENT_RAW : IDL_BENCH_CLIENT_NNG;
    if (o->client == IDL_BENCH_CLIENT_RAW && !all_tcp) {
        set_err(err, errlen, "--client raw: every --url must be tcp://HOST:PORT, got \"%s\"",
                o->url);
        return IDL_INVALID_ARGUMENT;
    }
    if (have[F_THREADS] && o->client != IDL_BENCH_CLIENT_RAW) {
        set_err(err, errlen, "--threads: only the raw client has threads of its own");
        return IDL_INVALID_ARGUMENT;
    }
    if (o->threads > o->sockets) {
        set_err(err, errlen,
                "--threads: %u is more than --sockets (%u); a thread needs a connection",
                o->threads, o->sockets);
        return IDL_INVALID_ARGUMENT;
    }
    if (!o->data) {
        for (int m = IDL_BENCH_SEARCH; m < IDL_BENCH_NMETHODS; m++) {
            if (o->mix.weight[m]) {
                set_err(err, errlen,
                        "--data: an NDJSON file of persons is needed for %s (only health runs "
                        "without)",
                        method_names[m]);
                return IDL_INVALID_ARGUMENT;
            }
        }
    }
    return 0;
}

/* ---- schedule ---------------------------------------------------------- */

uint64_t idl_bench_sched_ns(uint64_t t0_ns, uint64_t i, double rate)
{
    /* i * 1e9 first: for whole rates the product and the quotient are exact
     * (up to i of about 9e6), so request 7k at 7/s is due at exactly k s. */
    return t0_ns + (uint64_t)((double)i * 1e9 / rate);
}

uint64_t idl_bench_due_before(uint64_t t0_ns, double rate, uint64_t t)
{
    if (t <= t0_ns) return 0;
    /* The closed form, then a nudge either way: the schedule itself rounds,
     * and the answer must agree with it exactly. */
    uint64_t i = (uint64_t)ceil((double)(t - t0_ns) * rate / 1e9);
    while (i > 0 && idl_bench_sched_ns(t0_ns, i - 1, rate) >= t)
        i--;
    while (idl_bench_sched_ns(t0_ns, i, rate) < t)
        i++;
    return i;
}

uint64_t idl_bench_latency_ns(int open_loop, uint64_t sched_ns, uint64_t sent_ns, uint64_t done_ns)
{
    uint64_t from = open_loop ? sched_ns : sent_ns;
    return done_ns > from ? done_ns - from : 0;
}

/* ---- random ------------------------------------------------------------ */

/* splitmix64: tiny, seedable, good enough to pick persons and make up
 * identifiers. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* ---- pool -------------------------------------------------------------- */

typedef struct {
    char *first, *last, *email, *phone; /* email or phone may be NULL, not both */
} person;

struct idl_bench_pool {
    person *persons;
    size_t n, cap;
    char **emails; /* sorted, lower-case: made-up emails must not be in here */
    size_t nemails;
    char **phones; /* sorted, the last 10 digits of each phone */
    size_t nphones;
    /* Indexes into persons of those with an email, and with a phone, in file
     * order: Search picks from these for --search-by email and phone. */
    size_t *with_email, nwith_email;
    size_t *with_phone, nwith_phone;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *dup_json_str(json_t *v)
{
    const char *s = json_string_value(v);
    return s && *s ? strdup(s) : NULL;
}

/* The last ten digits of a phone, the part a made-up US number must not
 * share with any phone on record. */
static void phone_key(const char *p, char out[16])
{
    char digits[64];
    size_t n = 0;
    for (; *p && n < sizeof(digits) - 1; p++)
        if (isdigit((unsigned char)*p)) digits[n++] = *p;
    digits[n] = '\0';
    const char *tail = n > 10 ? digits + n - 10 : digits;
    size_t tl = strlen(tail);
    memcpy(out, tail, tl + 1); /* at most 10 digits + NUL */
}

void idl_bench_pool_free(idl_bench_pool *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->persons[i].first);
        free(p->persons[i].last);
        free(p->persons[i].email);
        free(p->persons[i].phone);
    }
    free(p->persons);
    for (size_t i = 0; i < p->nemails; i++)
        free(p->emails[i]);
    free(p->emails);
    for (size_t i = 0; i < p->nphones; i++)
        free(p->phones[i]);
    free(p->phones);
    free(p->with_email);
    free(p->with_phone);
    free(p);
}

size_t idl_bench_pool_size(const idl_bench_pool *p)
{
    return p ? p->n : 0;
}

/* Reads one NDJSON object into *out; returns false for a line to skip. */
static bool person_from_json(json_t *obj, person *out)
{
    person pe = {0};
    json_t *v;
    size_t i;
    if (!json_is_object(obj)) return false;
    json_array_foreach(json_object_get(obj, "emails"), i, v)
    {
        if ((pe.email = dup_json_str(v))) break;
    }
    json_array_foreach(json_object_get(obj, "phones"), i, v)
    {
        /* A phone is a string or {"number", "line_type"}. */
        if ((pe.phone = dup_json_str(json_is_object(v) ? json_object_get(v, "number") : v))) break;
    }
    if (!pe.email && !pe.phone) return false;
    pe.first = dup_json_str(json_object_get(obj, "first_name"));
    pe.last = dup_json_str(json_object_get(obj, "last_name"));
    *out = pe;
    return true;
}

static int build_miss_sets(idl_bench_pool *p)
{
    p->emails = calloc(p->n ? p->n : 1, sizeof(char *));
    p->phones = calloc(p->n ? p->n : 1, sizeof(char *));
    p->with_email = calloc(p->n ? p->n : 1, sizeof(size_t));
    p->with_phone = calloc(p->n ? p->n : 1, sizeof(size_t));
    if (!p->emails || !p->phones || !p->with_email || !p->with_phone) return IDL_RESOURCE_EXHAUSTED;
    for (size_t i = 0; i < p->n; i++) {
        if (p->persons[i].email) p->with_email[p->nwith_email++] = i;
        if (p->persons[i].phone) p->with_phone[p->nwith_phone++] = i;
        if (p->persons[i].email) {
            char *e = strdup(p->persons[i].email);
            if (!e) return IDL_RESOURCE_EXHAUSTED;
            for (char *c = e; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            p->emails[p->nemails++] = e;
        }
        if (p->persons[i].phone) {
            char key[16];
            phone_key(p->persons[i].phone, key);
            if (!(p->phones[p->nphones] = strdup(key))) return IDL_RESOURCE_EXHAUSTED;
            p->nphones++;
        }
    }
    qsort(p->emails, p->nemails, sizeof(char *), cmp_str);
    qsort(p->phones, p->nphones, sizeof(char *), cmp_str);
    return 0;
}

int idl_bench_pool_load(const char *path, idl_bench_pool **out, size_t *skipped, char *err,
                        size_t errlen)
{
    int rc = IDL_RESOURCE_EXHAUSTED;
    char *line = NULL;
    size_t linecap = 0, bad = 0;
    FILE *f = NULL;
    idl_bench_pool *p = calloc(1, sizeof(*p));
    if (!p) goto fail;
    if (!(f = fopen(path, "r"))) {
        set_err(err, errlen, "--data: cannot open %s: %s", path, strerror(errno));
        rc = IDL_NOT_FOUND;
        goto fail;
    }
    ssize_t len;
    while ((len = getline(&line, &linecap, f)) >= 0) {
        size_t n = (size_t)len;
        while (n && isspace((unsigned char)line[n - 1]))
            n--;
        if (n == 0) continue; /* blank lines are not records */
        json_t *obj = json_loadb(line, n, 0, NULL);
        person pe;
        bool ok = obj && person_from_json(obj, &pe);
        json_decref(obj);
        if (!ok) {
            bad++;
            continue;
        }
        if (p->n == p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 1024;
            person *np = realloc(p->persons, cap * sizeof(*np));
            if (!np) {
                free(pe.first);
                free(pe.last);
                free(pe.email);
                free(pe.phone);
                goto fail;
            }
            p->persons = np;
            p->cap = cap;
        }
        p->persons[p->n++] = pe;
    }
    if (ferror(f)) {
        set_err(err, errlen, "--data: cannot read %s", path);
        rc = IDL_NOT_FOUND;
        goto fail;
    }
    if (p->n == 0) {
        set_err(err, errlen, "--data: %s holds no person with an email or a phone", path);
        rc = IDL_INVALID_ARGUMENT;
        goto fail;
    }
    if ((rc = build_miss_sets(p))) goto fail;
    fclose(f);
    free(line);
    if (skipped) *skipped = bad;
    *out = p;
    return 0;

fail:
    if (rc == IDL_RESOURCE_EXHAUSTED)
        set_err(err, errlen, "--data: out of memory reading %s", path);
    if (f) fclose(f);
    free(line);
    idl_bench_pool_free(p);
    return rc;
}

int idl_bench_pool_fits(const idl_bench_pool *p, const idl_bench_opts *o, char *err, size_t errlen)
{
    if (!o->mix.weight[IDL_BENCH_SEARCH] && !o->mix.weight[IDL_BENCH_BATCH]) return 0;
    const char *file = o->data ? o->data : "the pool";
    if (o->search_by == IDL_BENCH_BY_EMAIL && (!p || p->nwith_email == 0)) {
        set_err(err, errlen,
                "--search-by email: %s holds no person with an email (try --search-by phone "
                "or any)",
                file);
        return IDL_INVALID_ARGUMENT;
    }
    if (o->search_by == IDL_BENCH_BY_PHONE && (!p || p->nwith_phone == 0)) {
        set_err(err, errlen,
                "--search-by phone: %s holds no person with a phone (try --search-by email "
                "or any)",
                file);
        return IDL_INVALID_ARGUMENT;
    }
    return 0;
}

/* A made-up email that no person in the pool holds. */
static void miss_email(const idl_bench_pool *p, uint64_t *rng, char out[64])
{
    for (;;) {
        snprintf(out, 64, "bench.miss.%016llx@example.org", (unsigned long long)rng_next(rng));
        const char *key = out;
        if (!bsearch(&key, p->emails, p->nemails, sizeof(char *), cmp_str)) return;
    }
}

/* A made-up US phone that no person in the pool holds: a real area code and
 * an exchange that is neither N11 nor 555, so it is well-formed and the
 * lookup is a genuine miss, not an invalid argument. */
static void miss_phone(const idl_bench_pool *p, uint64_t *rng, char out[32])
{
    static const char *const areas[] = {"212", "312", "415", "617", "713", "206",
                                        "303", "404", "305", "512", "602", "801"};
    for (;;) {
        uint64_t r = rng_next(rng);
        unsigned exch = 200 + (unsigned)(r % 800);
        unsigned line = (unsigned)((r >> 16) % 10000);
        if (exch % 100 == 11 || exch == 555) continue;
        snprintf(out, 32, "+1%s%03u%04u", areas[(r >> 32) % 12], exch, line);
        char key[16];
        const char *k = key;
        phone_key(out, key);
        if (!bsearch(&k, p->phones, p->nphones, sizeof(char *), cmp_str)) return;
    }
}

/* ---- bodies ------------------------------------------------------------ */

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_kv(msgpack_packer *pk, const char *k, const char *v)
{
    pack_cstr(pk, k);
    pack_cstr(pk, v);
}

/* Whether lookup j of n (counted across a template set) is a miss: exactly
 * floor(n * ratio) of them are, spread evenly. */
static bool is_miss(size_t j, double ratio)
{
    return floor((double)(j + 1) * ratio) > floor((double)j * ratio);
}

/* {"email": e} or {"phone": p} for a Search (or a Batch's inner Search), as
 * by (IDL_BENCH_BY_*) asks.  The caller has checked that the pool has a
 * person of that kind. */
static void pack_search(msgpack_packer *pk, const idl_bench_pool *p, int by, bool miss,
                        uint64_t *rng)
{
    char buf[64];
    msgpack_pack_map(pk, 1);
    if (miss && by == IDL_BENCH_BY_PHONE) {
        miss_phone(p, rng, buf);
        pack_kv(pk, "phone", buf);
    } else if (miss) {
        miss_email(p, rng, buf);
        pack_kv(pk, "email", buf);
    } else if (by == IDL_BENCH_BY_EMAIL) {
        pack_kv(pk, "email", p->persons[p->with_email[rng_next(rng) % p->nwith_email]].email);
    } else if (by == IDL_BENCH_BY_PHONE) {
        pack_kv(pk, "phone", p->persons[p->with_phone[rng_next(rng) % p->nwith_phone]].phone);
    } else {
        const person *pe = &p->persons[rng_next(rng) % p->n];
        if (pe->email)
            pack_kv(pk, "email", pe->email);
        else
            pack_kv(pk, "phone", pe->phone);
    }
}

static void pack_body(msgpack_packer *pk, const idl_bench_pool *p, int m, size_t j, double ratio,
                      unsigned batch_size, int by, uint64_t *rng)
{
    char buf[64];
    const person *pe = p && m != IDL_BENCH_HEALTH ? &p->persons[rng_next(rng) % p->n] : NULL;
    bool miss = m != IDL_BENCH_HEALTH && is_miss(j, ratio);
    switch (m) {
    case IDL_BENCH_HEALTH:
        msgpack_pack_map(pk, 0);
        break;
    case IDL_BENCH_SEARCH:
        pack_search(pk, p, by, miss, rng);
        break;
    case IDL_BENCH_VALIDATE:
        /* Emails on even templates and phones on odd ones, so both
         * validators are exercised; a person lacking one gives the other. */
        msgpack_pack_map(pk, 1);
        if (miss && j % 2 == 0) {
            miss_email(p, rng, buf);
            pack_kv(pk, "email", buf);
        } else if (miss) {
            miss_phone(p, rng, buf);
            pack_kv(pk, "phone", buf);
        } else if ((j % 2 == 0 && pe->email) || !pe->phone) {
            pack_kv(pk, "email", pe->email);
        } else {
            pack_kv(pk, "phone", pe->phone);
        }
        break;
    case IDL_BENCH_VERIFY:
        msgpack_pack_map(pk, 3);
        pack_kv(pk, "first_name", pe->first ? pe->first : "Jane");
        pack_kv(pk, "last_name", pe->last ? pe->last : "Doe");
        if (miss) {
            miss_email(p, rng, buf);
            pack_kv(pk, "email", buf);
        } else if (pe->email) {
            pack_kv(pk, "email", pe->email);
        } else {
            pack_kv(pk, "phone", pe->phone);
        }
        break;
    case IDL_BENCH_BATCH:
        msgpack_pack_map(pk, 1);
        pack_cstr(pk, "calls");
        msgpack_pack_array(pk, batch_size);
        for (unsigned k = 0; k < batch_size; k++) {
            msgpack_pack_map(pk, 2);
            pack_kv(pk, "method", idl_method_name(IDL_METHOD_SEARCH));
            pack_cstr(pk, "body");
            pack_search(pk, p, by, is_miss(j * batch_size + k, ratio), rng);
        }
        break;
    }
}

void idl_bench_bodies_free(idl_bench_body *b, size_t count)
{
    if (!b) return;
    for (size_t i = 0; i < count; i++)
        free(b[i].data);
    free(b);
}

int idl_bench_bodies(const idl_bench_pool *pool, int m, size_t count, double miss_ratio,
                     unsigned batch_size, int search_by, uint64_t seed, idl_bench_body **out)
{
    if (m < 0 || m >= IDL_BENCH_NMETHODS || count == 0 || batch_size == 0 ||
        (m != IDL_BENCH_HEALTH && (!pool || pool->n == 0)))
        return IDL_INVALID_ARGUMENT;
    if ((m == IDL_BENCH_SEARCH || m == IDL_BENCH_BATCH) &&
        ((search_by == IDL_BENCH_BY_EMAIL && pool->nwith_email == 0) ||
         (search_by == IDL_BENCH_BY_PHONE && pool->nwith_phone == 0) ||
         (search_by < IDL_BENCH_BY_EMAIL || search_by > IDL_BENCH_BY_ANY)))
        return IDL_INVALID_ARGUMENT;
    idl_bench_body *b = calloc(count, sizeof(*b));
    if (!b) return IDL_RESOURCE_EXHAUSTED;
    /* Each method gets its own stream, so adding batch to a mix does not
     * change which persons search asks for. */
    uint64_t rng = seed ^ ((uint64_t)(m + 1) * UINT64_C(0x9e3779b97f4a7c15));
    for (size_t j = 0; j < count; j++) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        pack_body(&pk, pool, m, j, miss_ratio, batch_size, search_by, &rng);
        /* msgpack_sbuffer_write reports allocation failure by returning -1,
         * which the packer passes on silently; an empty buffer is the sign. */
        if (sb.size == 0) {
            msgpack_sbuffer_destroy(&sb);
            idl_bench_bodies_free(b, count);
            return IDL_RESOURCE_EXHAUSTED;
        }
        b[j].len = sb.size;
        b[j].data = (unsigned char *)msgpack_sbuffer_release(&sb);
    }
    *out = b;
    return 0;
}

/* ---- request ids ------------------------------------------------------- */

int idl_bench_find_id(const void *env, size_t len, uint64_t marker, size_t *off)
{
    unsigned char pat[9];
    const unsigned char *e = env;
    size_t found = 0, at = 0;
    pat[0] = 0xcf;
    for (int k = 0; k < 8; k++)
        pat[1 + k] = (unsigned char)(marker >> (56 - 8 * k));
    for (size_t i = 0; i + sizeof(pat) <= len; i++) {
        if (e[i] == 0xcf && !memcmp(e + i, pat, sizeof(pat))) {
            found++;
            at = i + 1;
        }
    }
    if (found != 1) return IDL_INVALID_ARGUMENT;
    *off = at;
    return 0;
}

void idl_bench_put_id(void *env, size_t off, uint64_t id)
{
    unsigned char *e = (unsigned char *)env + off;
    for (int k = 0; k < 8; k++)
        e[k] = (unsigned char)(id >> (56 - 8 * k));
}

/* ---- SP over TCP --------------------------------------------------------- */

void idl_bench_sp_hello(uint16_t proto, unsigned char out[IDL_BENCH_SP_HELLO])
{
    out[0] = 0;
    out[1] = 'S';
    out[2] = 'P';
    out[3] = 0;
    out[4] = (unsigned char)(proto >> 8);
    out[5] = (unsigned char)proto;
    out[6] = 0;
    out[7] = 0;
}

int idl_bench_sp_check_hello(const unsigned char in[IDL_BENCH_SP_HELLO], uint16_t want)
{
    unsigned char exp[IDL_BENCH_SP_HELLO];
    idl_bench_sp_hello(want, exp);
    return memcmp(in, exp, sizeof exp) ? IDL_INVALID_ARGUMENT : 0;
}

static uint64_t get_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int k = 0; k < n; k++)
        v = v << 8 | p[k];
    return v;
}

static void put_be(unsigned char *p, uint64_t v, int n)
{
    for (int k = 0; k < n; k++)
        p[k] = (unsigned char)(v >> (8 * (n - 1 - k)));
}

void idl_bench_sp_req_head(unsigned char out[IDL_BENCH_SP_REQ_HEAD], uint32_t id, size_t body_len)
{
    put_be(out, (uint64_t)body_len + 4, 8);
    put_be(out + 8, UINT32_C(0x80000000) | id, 4);
}

int idl_bench_sp_split(const unsigned char *buf, size_t avail, size_t cap, size_t *frame_len,
                       uint32_t *id, const unsigned char **body, size_t *body_len)
{
    *frame_len = 0;
    if (avail < 8) return IDL_UNAVAILABLE;
    uint64_t len = get_be(buf, 8);
    if (len > cap) return IDL_INVALID_ARGUMENT;
    *frame_len = (size_t)len + 8;
    if (avail - 8 < len) return IDL_UNAVAILABLE;
    /* The backtrace: hop words (a device in between) up to the request id,
     * the first word with the high bit set; nng caps hops at 8 too. */
    const unsigned char *p = buf + 8, *end = p + len;
    for (int hop = 0; hop < 8 && end - p >= 4; hop++, p += 4) {
        uint32_t w = (uint32_t)get_be(p, 4);
        if (w & UINT32_C(0x80000000)) {
            *id = w & UINT32_C(0x7fffffff);
            *body = p + 4;
            *body_len = (size_t)(end - p - 4);
            return 0;
        }
    }
    return IDL_INVALID_ARGUMENT;
}

int idl_bench_tcp_addr(const char *url, size_t len, char *host, size_t hostlen, char *port,
                       size_t portlen)
{
    static const char scheme[] = "tcp://";
    size_t sl = sizeof scheme - 1;
    if (len <= sl || memcmp(url, scheme, sl)) return IDL_INVALID_ARGUMENT;
    const char *h = url + sl, *end = url + len, *colon;
    size_t hl;
    if (*h == '[') {
        const char *close = memchr(h, ']', (size_t)(end - h));
        if (!close || close + 1 >= end || close[1] != ':') return IDL_INVALID_ARGUMENT;
        h++;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = NULL;
        for (const char *q = h; q < end; q++)
            if (*q == ':') colon = q;
        if (!colon) return IDL_INVALID_ARGUMENT;
        hl = (size_t)(colon - h);
    }
    size_t pl = (size_t)(end - colon - 1);
    if (hl == 0 || hl >= hostlen || pl == 0 || pl >= portlen) return IDL_INVALID_ARGUMENT;
    for (size_t i = 0; i < pl; i++)
        if (!isdigit((unsigned char)colon[1 + i])) return IDL_INVALID_ARGUMENT;
    memcpy(host, h, hl);
    host[hl] = 0;
    memcpy(port, colon + 1, pl);
    port[pl] = 0;
    return 0;
}

/* ---- reply scanner ----------------------------------------------------- */

/* A msgpack reader over [p, end) that only moves forward; every length is
 * checked against what is left before it is used. */
typedef struct {
    const unsigned char *p, *end;
} reader;

#define MAX_DEPTH 64

static size_t left(const reader *r)
{
    return (size_t)(r->end - r->p);
}

static uint64_t be(const unsigned char *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned k = 0; k < n; k++)
        v = v << 8 | p[k];
    return v;
}

/* Reads an integer of any width.  *neg says whether it is below zero; *mag
 * holds its value (two's complement bits for negatives). */
static int read_int(reader *r, bool *neg, uint64_t *val)
{
    if (left(r) < 1) return -1;
    unsigned char t = *r->p;
    unsigned n;
    bool is_signed;
    if (t <= 0x7f || t >= 0xe0) {
        r->p++;
        *neg = t >= 0xe0;
        *val = *neg ? (uint64_t)(int64_t)(signed char)t : t;
        return 0;
    }
    /* uint8..uint64 are 0xcc..0xcf, int8..int64 0xd0..0xd3: 1 << k bytes. */
    if (t >= 0xcc && t <= 0xcf) {
        n = 1u << (t - 0xcc);
        is_signed = false;
    } else if (t >= 0xd0 && t <= 0xd3) {
        n = 1u << (t - 0xd0);
        is_signed = true;
    } else {
        return -1;
    }
    if (left(r) < 1 + n) return -1;
    uint64_t v = be(r->p + 1, n);
    r->p += 1 + n;
    *neg = false;
    if (is_signed && (v >> (8 * n - 1)) & 1) {
        *neg = true;
        if (n < 8) v |= ~UINT64_C(0) << (8 * n); /* sign-extend */
    }
    *val = v;
    return 0;
}

/* Reads a str header; *s and *n describe the bytes. */
static int read_str(reader *r, const unsigned char **s, size_t *n)
{
    if (left(r) < 1) return -1;
    unsigned char t = *r->p;
    size_t hdr, len;
    if (t >= 0xa0 && t <= 0xbf) {
        hdr = 1;
        len = t & 0x1f;
    } else if (t == 0xd9 || t == 0xda || t == 0xdb) {
        unsigned w = t == 0xd9 ? 1 : t == 0xda ? 2 : 4;
        if (left(r) < 1 + w) return -1;
        hdr = 1 + w;
        len = (size_t)be(r->p + 1, w);
    } else {
        return -1;
    }
    if (left(r) - hdr < len) return -1;
    *s = r->p + hdr;
    *n = len;
    r->p += hdr + len;
    return 0;
}

/* Reads a map (want_map) or array header and its element count, checked
 * against the bytes left (each element takes at least one byte). */
static int read_container(reader *r, bool want_map, size_t *count)
{
    if (left(r) < 1) return -1;
    unsigned char t = *r->p;
    size_t hdr, n;
    if (want_map && t >= 0x80 && t <= 0x8f) {
        hdr = 1;
        n = t & 0x0f;
    } else if (!want_map && t >= 0x90 && t <= 0x9f) {
        hdr = 1;
        n = t & 0x0f;
    } else if (t == (want_map ? 0xde : 0xdc) || t == (want_map ? 0xdf : 0xdd)) {
        unsigned w = (t == 0xde || t == 0xdc) ? 2 : 4;
        if (left(r) < 1 + w) return -1;
        hdr = 1 + w;
        n = (size_t)be(r->p + 1, w);
    } else {
        return -1;
    }
    r->p += hdr;
    if (n > left(r) / (want_map ? 2 : 1)) return -1;
    *count = n;
    return 0;
}

static bool peek_is(const reader *r, bool map)
{
    if (left(r) < 1) return false;
    unsigned char t = *r->p;
    if (map) return (t >= 0x80 && t <= 0x8f) || t == 0xde || t == 0xdf;
    return (t >= 0x90 && t <= 0x9f) || t == 0xdc || t == 0xdd;
}

/* Skips one complete object. */
static int skip(reader *r, int depth)
{
    if (depth > MAX_DEPTH || left(r) < 1) return -1;
    unsigned char t = *r->p;
    size_t n, fixed = 0, lenw = 0;
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
        r->p++;
        return 0;
    }
    if ((t >= 0x80 && t <= 0x9f) || (t >= 0xdc && t <= 0xdf)) {
        bool map = (t >= 0x80 && t <= 0x8f) || t == 0xde || t == 0xdf;
        if (read_container(r, map, &n)) return -1;
        for (size_t i = 0; i < (map ? 2 * n : n); i++)
            if (skip(r, depth + 1)) return -1;
        return 0;
    }
    if ((t >= 0xa0 && t <= 0xbf) || (t >= 0xd9 && t <= 0xdb)) {
        const unsigned char *s;
        return read_str(r, &s, &n);
    }
    /* The rest, 0xc4..0xd8, by the table: bytes after the type byte that do
     * not depend on the data (fixed) and the width of a length prefix (lenw).
     * bin = prefix + data; ext = prefix + type byte + data; fixext = type
     * byte + 1..16 bytes; numbers = their width.  0xc1 is never used. */
    static const unsigned char shape[][2] = {
        {0, 1}, {0, 2}, {0, 4},                 /* c4-c6 bin 8/16/32 */
        {1, 1}, {1, 2}, {1, 4},                 /* c7-c9 ext 8/16/32 */
        {4, 0}, {8, 0},                         /* ca-cb float 32/64 */
        {1, 0}, {2, 0}, {4, 0}, {8, 0},         /* cc-cf uint */
        {1, 0}, {2, 0}, {4, 0}, {8, 0},         /* d0-d3 int */
        {2, 0}, {3, 0}, {5, 0}, {9, 0}, {17, 0} /* d4-d8 fixext 1/2/4/8/16 */
    };
    if (t < 0xc4 || t > 0xd8) return -1;
    fixed = shape[t - 0xc4][0];
    lenw = shape[t - 0xc4][1];
    if (left(r) < 1 + lenw) return -1;
    size_t body = fixed + (size_t)be(r->p + 1, (unsigned)lenw);
    if (left(r) - 1 - lenw < body) return -1;
    r->p += 1 + lenw + body;
    return 0;
}

static bool key_is(const unsigned char *s, size_t n, const char *want)
{
    return strlen(want) == n && !memcmp(s, want, n);
}

/* Reads a map's "code" as a status index; codes off the table are UNKNOWN. */
static int read_code(reader *r, int *code)
{
    bool neg;
    uint64_t v;
    if (read_int(r, &neg, &v)) return -1;
    *code = !neg && v < IDL_STATUS_COUNT ? (int)v : IDL_UNKNOWN;
    return 0;
}

/* Reads a map key.  A key that is not a string is skipped and comes back
 * empty (*k NULL), so the caller skips its value like any unknown key's. */
static int read_key(reader *r, int depth, const unsigned char **k, size_t *kn)
{
    if (read_str(r, k, kn) == 0) return 0;
    *k = NULL;
    *kn = 0;
    return skip(r, depth);
}

/* Counts the codes of one Batch result {"code": n, ...}. */
static int scan_batch_result(reader *r, uint64_t *inner)
{
    size_t fields;
    if (!peek_is(r, true)) return skip(r, 3);
    if (read_container(r, true, &fields)) return -1;
    for (size_t f = 0; f < fields; f++) {
        const unsigned char *k;
        size_t kn;
        int code;
        if (read_key(r, 4, &k, &kn)) return -1;
        if (k && key_is(k, kn, "code")) {
            if (read_code(r, &code)) return -1;
            inner[code]++;
        } else if (skip(r, 4)) {
            return -1;
        }
    }
    return 0;
}

/* Counts the codes in a Batch body {"results": [{"code": n, ...}, ...]}. */
static int scan_batch_body(reader *r, uint64_t *inner)
{
    size_t n, m;
    if (!peek_is(r, true)) return skip(r, 1);
    if (read_container(r, true, &n)) return -1;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *k;
        size_t kn;
        if (read_key(r, 2, &k, &kn)) return -1;
        if (k && key_is(k, kn, "results") && peek_is(r, false)) {
            if (read_container(r, false, &m)) return -1;
            for (size_t j = 0; j < m; j++)
                if (scan_batch_result(r, inner)) return -1;
        } else if (skip(r, 2)) {
            return -1;
        }
    }
    return 0;
}

int idl_bench_scan_reply(const void *buf, size_t len, uint64_t *id, int *code, uint64_t *inner)
{
    reader r = {buf, (const unsigned char *)buf + len};
    uint64_t counts[IDL_STATUS_COUNT] = {0};
    uint64_t got_id = 0;
    int got_code = 0;
    bool have_id = false, have_code = false;
    size_t n;
    if (read_container(&r, true, &n)) return IDL_INVALID_ARGUMENT;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *k;
        size_t kn;
        if (read_key(&r, 1, &k, &kn)) return IDL_INVALID_ARGUMENT;
        if (k && key_is(k, kn, "id")) {
            bool neg;
            if (read_int(&r, &neg, &got_id) || neg) return IDL_INVALID_ARGUMENT;
            have_id = true;
        } else if (k && key_is(k, kn, "code")) {
            if (read_code(&r, &got_code)) return IDL_INVALID_ARGUMENT;
            have_code = true;
        } else if (inner && k && key_is(k, kn, "body")) {
            if (scan_batch_body(&r, counts)) return IDL_INVALID_ARGUMENT;
        } else if (skip(&r, 1)) {
            return IDL_INVALID_ARGUMENT;
        }
    }
    if (!have_id || !have_code) return IDL_INVALID_ARGUMENT;
    /* Counted only now, so a reply that turns out malformed adds nothing. */
    if (inner)
        for (int c = 0; c < IDL_STATUS_COUNT; c++)
            inner[c] += counts[c];
    *id = got_id;
    *code = got_code;
    return 0;
}

/* ---- reports ----------------------------------------------------------- */

uint64_t idl_bench_errors(const idl_bench_result *r)
{
    return r->requests - r->outcomes[IDL_OK];
}

double idl_bench_error_share(const idl_bench_result *r)
{
    uint64_t all = r->requests + r->unsent;
    return all ? (double)(idl_bench_errors(r) + r->unsent) / (double)all : 0.0;
}

uint64_t idl_bench_lookups(const idl_bench_result *r)
{
    /* Failed calls looked nothing up: counting them would make a run full of
     * UNAUTHENTICATED look like a fast one. */
    return r->per_method_ok[IDL_BENCH_SEARCH] + r->per_method_ok[IDL_BENCH_VALIDATE] +
           r->per_method_ok[IDL_BENCH_VERIFY] + r->inner[IDL_OK];
}

static double throughput(const idl_bench_result *r)
{
    return r->duration_s > 0 ? (double)r->requests / r->duration_s : 0.0;
}

/* Rounds for display: JSON readers get 6 decimals at most, not 17 digits. */
static json_t *jreal(double v, double unit)
{
    return json_real(isfinite(v) ? round(v / unit) * unit : 0.0);
}

static json_t *latency_json(const idl_hist *h)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "min", (json_int_t)idl_hist_min(h), "p50",
                     (json_int_t)idl_hist_percentile(h, 50), "p90",
                     (json_int_t)idl_hist_percentile(h, 90), "p99",
                     (json_int_t)idl_hist_percentile(h, 99), "p999",
                     (json_int_t)idl_hist_percentile(h, 99.9), "max", (json_int_t)idl_hist_max(h),
                     "mean", jreal(idl_hist_mean(h), 0.1));
}

static json_t *codes_json(const uint64_t *counts, int n)
{
    json_t *o = json_object();
    /* OK is always there, so readers can do codes["OK"] without a guard. */
    json_object_set_new(o, "OK", json_integer((json_int_t)counts[IDL_OK]));
    for (int c = 1; c < n; c++)
        if (counts[c])
            json_object_set_new(o, idl_bench_outcome_name(c), json_integer((json_int_t)counts[c]));
    return o;
}

/* The keys every phase reports, the workload's and the baseline's alike. */
static json_t *phase_json(const idl_bench_result *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "requests", json_integer((json_int_t)r->requests));
    json_object_set_new(o, "duration_s", jreal(r->duration_s, 1e-6));
    json_object_set_new(o, "throughput_rps", jreal(throughput(r), 0.01));
    json_object_set_new(o, "codes", codes_json(r->outcomes, IDL_BENCH_NOUTCOMES));
    json_object_set_new(o, "errors", json_integer((json_int_t)idl_bench_errors(r)));
    json_object_set_new(o, "error_share", jreal(idl_bench_error_share(r), 1e-6));
    json_object_set_new(o, "latency_us", latency_json(r->latency_us));
    if (idl_hist_clamped(r->latency_us))
        json_object_set_new(o, "latency_clamped",
                            json_integer((json_int_t)idl_hist_clamped(r->latency_us)));
    if (r->interrupted) json_object_set_new(o, "interrupted", json_true());
    if (r->unsent) json_object_set_new(o, "unsent", json_integer((json_int_t)r->unsent));
    return o;
}

int idl_bench_report_json(const idl_bench_opts *o, const idl_bench_result *r,
                          const idl_bench_result *baseline, FILE *f)
{
    json_t *root = phase_json(r);
    if (!root) return IDL_INTERNAL;
    json_t *mix = json_object(), *per = json_object();
    for (int m = 0; m < IDL_BENCH_NMETHODS; m++) {
        if (o->mix.weight[m]) {
            json_object_set_new(mix, method_names[m], json_integer(o->mix.weight[m]));
            json_object_set_new(per, method_names[m], json_integer((json_int_t)r->per_method[m]));
        }
    }
    json_object_set_new(root, "method", json_string(o->method_label ? o->method_label : "mix"));
    json_object_set_new(root, "mix", mix);
    json_object_set_new(root, "methods", per);
    json_t *mlat = NULL;
    for (int m = 0; m < IDL_BENCH_NMETHODS; m++) {
        if (!r->method_latency_us[m]) continue;
        if (!mlat) mlat = json_object();
        json_object_set_new(mlat, method_names[m], latency_json(r->method_latency_us[m]));
    }
    if (mlat) json_object_set_new(root, "method_latency_us", mlat);
    json_object_set_new(root, "url", json_string(o->url));
    json_object_set_new(root, "concurrency", json_integer(o->concurrency));
    json_object_set_new(root, "sockets", json_integer(o->sockets));
    json_object_set_new(root, "client",
                        json_string(o->client == IDL_BENCH_CLIENT_RAW ? "raw" : "nng"));
    json_object_set_new(root, "threads",
                        json_integer(o->client == IDL_BENCH_CLIENT_RAW ? o->threads : 0));
    json_object_set_new(root, "loop", json_string(o->rate > 0 ? "open" : "closed"));
    json_object_set_new(root, "rate", o->rate > 0 ? jreal(o->rate, 1e-3) : json_null());
    json_object_set_new(root, "warmup_s", jreal(o->warmup_s, 1e-3));
    json_object_set_new(root, "miss_ratio", jreal(o->miss_ratio, 1e-6));
    if (o->mix.weight[IDL_BENCH_BATCH]) {
        json_object_set_new(root, "batch_size", json_integer(o->batch_size));
        json_object_set_new(root, "batch_codes", codes_json(r->inner, IDL_STATUS_COUNT));
    }
    uint64_t lookups = idl_bench_lookups(r);
    if (o->mix.total != o->mix.weight[IDL_BENCH_HEALTH])
        json_object_set_new(root, "lookups_per_s",
                            jreal(r->duration_s > 0 ? (double)lookups / r->duration_s : 0, 0.01));
    if (baseline) {
        double base = throughput(baseline);
        json_object_set_new(root, "baseline", phase_json(baseline));
        json_object_set_new(root, "baseline_rps", jreal(base, 0.01));
        json_object_set_new(root, "ratio",
                            base > 0 ? jreal(throughput(r) / base, 1e-4) : json_null());
    }
    int rc = json_dumpf(root, f, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
    json_decref(root);
    if (rc || fputc('\n', f) == EOF || fflush(f)) return IDL_INTERNAL;
    return 0;
}

/* 850 us, 12.3 ms, 1.50 s: latencies the way people read them. */
static const char *fmt_us(uint64_t us, char buf[32])
{
    if (us < 10000)
        snprintf(buf, 32, "%llu us", (unsigned long long)us);
    else if (us < 10000000)
        snprintf(buf, 32, "%.2f ms", (double)us / 1e3);
    else
        snprintf(buf, 32, "%.2f s", (double)us / 1e6);
    return buf;
}

static void text_codes(FILE *f, const uint64_t *counts, int n)
{
    fprintf(f, "OK %llu", (unsigned long long)counts[IDL_OK]);
    for (int c = 1; c < n; c++)
        if (counts[c])
            fprintf(f, "  %s %llu", idl_bench_outcome_name(c), (unsigned long long)counts[c]);
    fputc('\n', f);
}

static void text_latency(FILE *f, const idl_hist *h)
{
    if (idl_hist_count(h) == 0) {
        fprintf(f, "(no replies)\n");
        return;
    }
    char a[32], b[32], c[32], d[32], e[32], g[32], m[32];
    fprintf(f, "min %s  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s)\n",
            fmt_us(idl_hist_min(h), a), fmt_us(idl_hist_percentile(h, 50), b),
            fmt_us(idl_hist_percentile(h, 90), c), fmt_us(idl_hist_percentile(h, 99), d),
            fmt_us(idl_hist_percentile(h, 99.9), e), fmt_us(idl_hist_max(h), g),
            fmt_us((uint64_t)(idl_hist_mean(h) + 0.5), m));
}

int idl_bench_report_text(const idl_bench_opts *o, const idl_bench_result *r,
                          const idl_bench_result *baseline, FILE *f)
{
    fprintf(f, "idlookup-bench  %s  ", o->url);
    if (o->method_label && strcmp(o->method_label, "mix")) {
        fprintf(f, "%s\n", o->method_label);
    } else {
        const char *sep = "mix ";
        for (int m = 0; m < IDL_BENCH_NMETHODS; m++) {
            if (o->mix.weight[m]) {
                fprintf(f, "%s%s=%u", sep, method_names[m], o->mix.weight[m]);
                sep = ",";
            }
        }
        fputc('\n', f);
    }
    fprintf(f, "  load       %s, %u worker%s on %u socket%s",
            o->rate > 0 ? "open loop" : "closed loop", o->concurrency,
            o->concurrency == 1 ? "" : "s", o->sockets, o->sockets == 1 ? "" : "s");
    if (o->client == IDL_BENCH_CLIENT_RAW)
        fprintf(f, " (raw SP/TCP, %u thread%s)", o->threads, o->threads == 1 ? "" : "s");
    else
        fprintf(f, " (nng)");
    if (o->rate > 0) fprintf(f, ", %.1f req/s scheduled", o->rate);
    if (o->warmup_s > 0) fprintf(f, ", %.1f s warmup", o->warmup_s);
    if (o->miss_ratio > 0) fprintf(f, ", %.0f%% misses", o->miss_ratio * 100);
    fputc('\n', f);
    fprintf(f, "  requests   %llu in %.3f s = %.1f req/s", (unsigned long long)r->requests,
            r->duration_s, throughput(r));
    if (o->mix.total != o->mix.weight[IDL_BENCH_HEALTH] && r->duration_s > 0)
        fprintf(f, "  (%.1f lookups/s)", (double)idl_bench_lookups(r) / r->duration_s);
    fprintf(f, "%s\n", r->interrupted ? "  [interrupted]" : "");
    if (o->method_label && !strcmp(o->method_label, "mix")) {
        fprintf(f, "  methods   ");
        for (int m = 0; m < IDL_BENCH_NMETHODS; m++)
            if (o->mix.weight[m])
                fprintf(f, " %s %llu", method_names[m], (unsigned long long)r->per_method[m]);
        fputc('\n', f);
    }
    if (r->unsent)
        fprintf(f,
                "  behind     %llu requests due in the run were never sent: the service (or -c) "
                "did not keep up with --rate\n",
                (unsigned long long)r->unsent);
    fprintf(f, "  codes      ");
    text_codes(f, r->outcomes, IDL_BENCH_NOUTCOMES);
    if (r->per_method[IDL_BENCH_BATCH]) {
        fprintf(f, "  in batch   ");
        text_codes(f, r->inner, IDL_STATUS_COUNT);
    }
    fprintf(f, "  errors     %llu (%.3f%%, allowed %.3f%%)\n",
            (unsigned long long)idl_bench_errors(r), 100 * idl_bench_error_share(r),
            100 * o->max_errors);
    fprintf(f, "  latency    ");
    text_latency(f, r->latency_us);
    if (idl_hist_clamped(r->latency_us))
        fprintf(f, "             %llu latencies above 60 s counted as 60 s\n",
                (unsigned long long)idl_hist_clamped(r->latency_us));
    for (int m = 0; m < IDL_BENCH_NMETHODS; m++) {
        if (!r->method_latency_us[m]) continue;
        fprintf(f, "  %-10s ", method_names[m]);
        text_latency(f, r->method_latency_us[m]);
    }
    if (baseline) {
        double base = throughput(baseline);
        fprintf(f,
                "  baseline   health %.1f req/s (%llu requests, %llu errors); workload at %.1f%% "
                "of it\n",
                base, (unsigned long long)baseline->requests,
                (unsigned long long)idl_bench_errors(baseline),
                base > 0 ? 100 * throughput(r) / base : 0.0);
        fprintf(f, "  baseline   ");
        text_latency(f, baseline->latency_us);
    }
    fprintf(f, "  distribution%s\n", o->rate > 0 ? " (from scheduled send times)" : "");
    int rc = idl_hist_print(r->latency_us, f, 20, "us");
    if (rc || fflush(f) || ferror(f)) return IDL_INTERNAL;
    return 0;
}
