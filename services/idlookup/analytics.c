/* `idlookup analytics` and `idlookup analytics export`: the batch job over the
 * query log (DATA.md §5).  It runs beside a live daemon by opening the store
 * as a RocksDB secondary (no lock taken; its scratch directory is a fresh
 * temporary one, removed at the end), streams the log column family over the
 * requested days and hands each entry to analytics_lib.
 */
#include "analytics_lib.h"
#include "args.h"
#include "cli.h"
#include "qlog.h"
#include "qlogstream.h"
#include "status.h"
#include "store.h"

#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { F_DATA, F_NATS, F_FROM, F_TO, F_FORMAT, F_DEIDENTIFIED, F_K, F_HELP };

/* The rows both commands take; the report's table adds its own. */
#define ROW_DATA                                                                                   \
    {                                                                                              \
        "data", 0, "DIR", "the store (a daemon may be serving it)", F_DATA                         \
    }
#define ROW_NATS                                                                                   \
    {                                                                                              \
        "nats", 0, "URLS", "every cluster node's log, from the IDL_QLOG stream, instead of DIR",   \
            F_NATS                                                                                 \
    }
#define ROW_FROM                                                                                   \
    {                                                                                              \
        "from", 0, "D", "first UTC day (YYYY-MM-DD), included; default all", F_FROM                \
    }
#define ROW_TO                                                                                     \
    {                                                                                              \
        "to", 0, "D", "last UTC day (YYYY-MM-DD), included; default all", F_TO                     \
    }
#define ROW_HELP                                                                                   \
    {                                                                                              \
        "help", 'h', NULL, "this text", F_HELP                                                     \
    }

static const idl_args_flag report_flags[] = {
    ROW_DATA,
    ROW_NATS,
    ROW_FROM,
    ROW_TO,
    {"format", 0, "F",
     "json (default: one object) or csv (one row per group);\n"
     "export: ndjson or csv (required)",
     F_FORMAT},
    {"deidentified", 0, NULL,
     "leave out groups with fewer than k distinct fingerprints (for\n"
     "partners); total_requests then covers the groups shown, and\n"
     "suppressed_groups counts those left out",
     F_DEIDENTIFIED},
    {"k", 0, "N", "the threshold (default 5, N >= 1); needs --deidentified", F_K},
    ROW_HELP,
};

static const idl_args_flag export_flags[] = {
    ROW_DATA, ROW_NATS, ROW_FROM, ROW_TO, {"format", 0, "F", "ndjson or csv (required)", F_FORMAT},
    ROW_HELP,
};

/* One --help for both commands: the report's rows cover export's. */
static const idl_args_spec report_spec = {
    .prog = "idlookup analytics",
    .head = "usage: idlookup analytics --data DIR [--from D] [--to D] [--format json|csv]\n"
            "                          [--deidentified [--k N]]\n"
            "       idlookup analytics export --data DIR --format ndjson|csv [--from D] [--to D]\n"
            "       (either form with --nats URL[,URL...] instead of --data DIR)\n"
            "\n"
            "Reads the query log of the store at DIR (a daemon may be serving it), or with\n"
            "--nats every cluster node's log from the IDL_QLOG stream, and prints,\n"
            "per customer x method x UTC day: requests, errors by code, hit rate (share with at\n"
            "least one person returned), latency p50/p95/p99 (nearest rank) and the number of\n"
            "distinct query fingerprints.  Customer \"\" is calls without a valid key.\n",
    .tail = "\n"
            "`export` writes every log entry in range, one per line (NDJSON objects or CSV rows\n"
            "with a header), for DuckDB or Spark: time_us, time, request_id, customer, key_id,\n"
            "method, code, code_name, latency_us, persons, person_ids, fingerprints.  The log\n"
            "holds fingerprints only, never identifiers.\n"
            "Exit status: 0 success, 1 failure (no store at DIR, unreadable store, write error),\n"
            "2 bad usage.\n",
    .flags = report_flags,
    .nflags = sizeof report_flags / sizeof report_flags[0],
    .indent = 2,
    .column = 22,
};

static const idl_args_spec export_spec = {
    .prog = "idlookup analytics export",
    .flags = export_flags,
    .nflags = sizeof export_flags / sizeof export_flags[0],
};

typedef struct {
    const char *data;
    const char *nats; /* the cluster's IDL_QLOG stream instead of a store */
    const char *format;
    bool have_from, have_to;
    uint64_t from_us, to_end_us; /* [from 00:00, to + 1 day 00:00) */
    bool deidentified;
    bool have_k;
    unsigned k;
} options;

/* Set by SIGINT/SIGTERM so the scan stops and the scratch directory is still
 * removed. */
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* Parses the flags of either command into *o.  Returns -1 to go on, or the
 * exit status (0 after --help, 2 on bad usage). */
static int parse_flags(int argc, char **argv, bool export, options *o)
{
    const idl_args_spec *spec = export ? &export_spec : &report_spec;
    const char *prog = spec->prog;
    const char *from = NULL, *to = NULL;
    idl_args args;
    const idl_args_flag *fl;
    const char *v;
    idl_args_start(&args, spec, argc, argv);
    while (idl_args_next(&args, &fl, &v)) {
        switch (fl->id) {
        case F_DATA:
            o->data = v;
            break;
        case F_NATS:
            o->nats = v;
            break;
        case F_FROM:
            from = v;
            break;
        case F_TO:
            to = v;
            break;
        case F_FORMAT:
            o->format = v;
            break;
        case F_DEIDENTIFIED:
            o->deidentified = true;
            break;
        case F_K: {
            uint64_t n;
            if (idl_args_uint(v, 1, 1000000000u, &n) != IDL_OK) {
                fprintf(stderr, "%s: --k: expected a whole number >= 1, got '%s'\n", prog, v);
                return 2;
            }
            o->k = (unsigned)n;
            o->have_k = true;
            break;
        }
        case F_HELP:
            idl_args_usage(&report_spec, stdout);
            return 0;
        }
    }
    if (args.status) return idl_args_fail(spec, stderr, args.err);
    if (!o->data && !o->nats) {
        fprintf(stderr, "%s: --data DIR is required (see --help)\n", prog);
        return 2;
    }
    if (o->data && o->nats) {
        fprintf(stderr, "%s: give --data DIR or --nats URL, not both\n", prog);
        return 2;
    }
    if (export) {
        if (!o->format) {
            fprintf(stderr, "%s: --format ndjson|csv is required\n", prog);
            return 2;
        }
        if (strcmp(o->format, "ndjson") != 0 && strcmp(o->format, "csv") != 0) {
            fprintf(stderr, "%s: --format: expected ndjson or csv, got '%s'\n", prog, o->format);
            return 2;
        }
    } else {
        if (!o->format) o->format = "json";
        if (strcmp(o->format, "json") != 0 && strcmp(o->format, "csv") != 0) {
            fprintf(stderr, "%s: --format: expected json or csv, got '%s'\n", prog, o->format);
            return 2;
        }
        /* A threshold alone would print the raw report while the caller
         * believes it de-identified: refuse rather than guess. */
        if (o->have_k && !o->deidentified) {
            fprintf(stderr, "%s: --k: only meaningful with --deidentified\n", prog);
            return 2;
        }
        if (!o->have_k) o->k = IDL_AN_K_DEFAULT;
    }
    if (from) {
        if (idl_an_parse_day(from, &o->from_us)) {
            fprintf(stderr,
                    "%s: --from: expected a date YYYY-MM-DD (1970-01-01 or later), got '%s'\n",
                    prog, from);
            return 2;
        }
        o->have_from = true;
    }
    if (to) {
        uint64_t start;
        if (idl_an_parse_day(to, &start)) {
            fprintf(stderr,
                    "%s: --to: expected a date YYYY-MM-DD (1970-01-01 or later), got '%s'\n", prog,
                    to);
            return 2;
        }
        o->to_end_us = start + IDL_AN_US_PER_DAY;
        o->have_to = true;
    }
    if (from && to && o->from_us >= o->to_end_us) {
        fprintf(stderr, "%s: --from %s is after --to %s\n", prog, from, to);
        return 2;
    }
    return -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0; /* keep going: remove as much as can be removed */
}

/* The scan: a secondary instance over DIR, every log entry in range. */
typedef struct {
    char scratch[64]; /* the secondary's own directory ("" until made) */
    idl_store *s;
    idl_qlog_scan *log;
} scan;

static void scan_close(scan *sc)
{
    idl_qlog_scan_close(sc->log);
    sc->log = NULL;
    idl_store_close(sc->s);
    sc->s = NULL;
    if (sc->scratch[0]) {
        nftw(sc->scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        sc->scratch[0] = 0;
    }
}

/* Opens the scan.  Returns 0, or 1 after printing one line naming the cause. */
static int scan_open(scan *sc, const char *prog, const options *o)
{
    char err[IDL_ERR_MAX];
    struct stat st;
    /* Checked here because RocksDB's own message for a missing directory
     * talks about a CURRENT file, and create_if_missing must not apply. */
    if (stat(o->data, &st) != 0) {
        fprintf(stderr, "%s: %s: %s\n", prog, o->data, strerror(errno));
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "%s: %s: not a directory\n", prog, o->data);
        return 1;
    }
    char current[4096];
    snprintf(current, sizeof current, "%s/CURRENT", o->data);
    if (access(current, R_OK) != 0) {
        fprintf(stderr, "%s: %s: not an idlookup store (no readable RocksDB CURRENT file)\n", prog,
                o->data);
        return 1;
    }
    strcpy(sc->scratch, "/tmp/idlookup-analytics-XXXXXX");
    if (!mkdtemp(sc->scratch)) {
        fprintf(stderr, "%s: cannot make a scratch directory under /tmp: %s\n", prog,
                strerror(errno));
        sc->scratch[0] = 0;
        return 1;
    }
    idl_store_opts so = {.cache_mb = 64, .secondary = sc->scratch};
    if (idl_store_open(&sc->s, o->data, &so, err)) {
        fprintf(stderr, "%s: %s\n", prog, err);
        goto fail;
    }
    /* Opening reads the primary's state as of then; catching up once more
     * takes in what the daemon wrote while we were opening. */
    if (idl_store_catch_up(sc->s)) {
        fprintf(stderr, "%s: %s: cannot catch up with the serving daemon's writes\n", prog,
                o->data);
        goto fail;
    }
    if (idl_qlog_scan_open(sc->s, o->have_from ? o->from_us : 0,
                           o->have_to ? o->to_end_us : UINT64_MAX, &sc->log)) {
        fprintf(stderr, "%s: %s: cannot read the query log\n", prog, o->data);
        goto fail;
    }
    return 0;
fail:
    scan_close(sc);
    return 1;
}

typedef int (*entry_fn)(void *ctx, const idl_qlog_entry *e);

/* Feeds every decodable entry to fn.  Returns 0, 1 (fn failed or we were
 * interrupted, message printed).  *bad counts undecodable entries. */
static int scan_run(scan *sc, const char *prog, entry_fn fn, void *ctx, uint64_t *bad)
{
    idl_qlog_entry *e = malloc(sizeof(*e));
    if (!e) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return 1;
    }
    int status = 0;
    int rc = IDL_OK;
    for (;;) {
        if (interrupted) {
            fprintf(stderr, "%s: interrupted\n", prog);
            status = 1;
            break;
        }
        bool got = false;
        if ((rc = idl_qlog_scan_next(sc->log, e, &got)) || !got) break;
        if (fn(ctx, e)) {
            status = 1;
            break;
        }
    }
    *bad = idl_qlog_scan_undecodable(sc->log);
    /* A report from part of the log must not pass for the whole. */
    if (rc) {
        fprintf(stderr,
                "%s: the query log cannot be read whole (%s); the output would be incomplete\n",
                prog, rc == IDL_DATA_LOSS ? "a store file is damaged" : "read error");
        status = 1;
    }
    free(e);
    return status;
}

/* --nats: every entry of the IDL_QLOG stream in the requested days, in
 * stream order (each node's entries in the order it logged them). */
typedef struct {
    const options *o;
    entry_fn fn;
    void *ctx;
} stream_ctx;

static int stream_entry(void *ctx, const char *node, const idl_qlog_entry *e)
{
    stream_ctx *x = ctx;
    (void)node;
    if (interrupted) {
        fputs("idlookup analytics: interrupted\n", stderr);
        return 1;
    }
    if (x->o->have_from && e->time_us < x->o->from_us) return 0;
    if (x->o->have_to && e->time_us >= x->o->to_end_us) return 0;
    return x->fn(x->ctx, e) ? 1 : 0;
}

static int stream_run(const char *prog, const options *o, entry_fn fn, void *ctx)
{
    stream_ctx x = {o, fn, ctx};
    char err[IDL_ERR_MAX] = "";
    int rc = idl_qlogstream_read(o->nats, stream_entry, &x, err);
    if (rc == 1) return 1; /* fn failed, already reported */
    if (rc) {
        fprintf(stderr, "%s: %s\n", prog, err[0] ? err : "cannot read the IDL_QLOG stream");
        return 1;
    }
    return 0;
}

static int add_entry(void *ctx, const idl_qlog_entry *e)
{
    if (idl_an_add(ctx, e)) {
        fputs("idlookup analytics: out of memory\n", stderr);
        return 1;
    }
    return 0;
}

typedef struct {
    bool csv;
    uint64_t n;
} export_ctx;

static int export_entry(void *ctx, const idl_qlog_entry *e)
{
    export_ctx *x = ctx;
    int rc = x->csv ? idl_an_export_csv(stdout, e) : idl_an_export_ndjson(stdout, e);
    /* A closed pipe or a full disk shows here; stop instead of reading the
     * rest of the log for nothing. */
    if (rc) {
        fprintf(stderr, "idlookup analytics export: write error: %s\n", strerror(errno));
        return 1;
    }
    x->n++;
    return 0;
}

/* Installs the SIGINT/SIGTERM handler for the scan and restores the old ones. */
typedef struct {
    struct sigaction intr, term;
} saved_signals;

static void signals_catch(saved_signals *sv)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART; /* RocksDB reads must not see EINTR */
    sigemptyset(&sa.sa_mask);
    interrupted = 0;
    sigaction(SIGINT, &sa, &sv->intr);
    sigaction(SIGTERM, &sa, &sv->term);
}

static void signals_restore(const saved_signals *sv)
{
    sigaction(SIGINT, &sv->intr, NULL);
    sigaction(SIGTERM, &sv->term, NULL);
}

static int finish_stdout(const char *prog)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: write error: %s\n", prog, strerror(errno));
        return 1;
    }
    return 0;
}

static void warn_bad(const char *prog, uint64_t bad)
{
    if (bad)
        fprintf(stderr, "%s: warning: %llu log entries could not be decoded and were skipped\n",
                prog, (unsigned long long)bad);
}

static int run_export(int argc, char **argv)
{
    const char *prog = "idlookup analytics export";
    options o = {0};
    int st = parse_flags(argc, argv, true, &o);
    if (st >= 0) return st;
    scan sc = {.s = NULL};
    saved_signals sv;
    signals_catch(&sv);
    if (!o.nats && scan_open(&sc, prog, &o)) {
        signals_restore(&sv);
        return 1;
    }
    static char obuf[1 << 16];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    export_ctx x = {.csv = strcmp(o.format, "csv") == 0};
    uint64_t bad = 0;
    int status = 0;
    if (x.csv && idl_an_export_csv_header(stdout)) {
        fprintf(stderr, "%s: write error: %s\n", prog, strerror(errno));
        status = 1;
    }
    if (!status)
        status = o.nats ? stream_run(prog, &o, export_entry, &x)
                        : scan_run(&sc, prog, export_entry, &x, &bad);
    scan_close(&sc);
    signals_restore(&sv);
    warn_bad(prog, bad);
    if (status == 0)
        status = finish_stdout(prog);
    else
        fflush(stdout); /* the failure was reported once already */
    return status;
}

static int run_report(int argc, char **argv)
{
    const char *prog = "idlookup analytics";
    options o = {0};
    int st = parse_flags(argc, argv, false, &o);
    if (st >= 0) return st;
    idl_an *a = NULL;
    idl_an_report *r = NULL;
    if (idl_an_new(&a)) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return 1;
    }
    scan sc = {.s = NULL};
    saved_signals sv;
    signals_catch(&sv);
    int status = 1;
    uint64_t bad = 0;
    if (o.nats) {
        status = stream_run(prog, &o, add_entry, a);
    } else {
        if (scan_open(&sc, prog, &o)) goto out;
        status = scan_run(&sc, prog, add_entry, a, &bad);
    }
    /* The store is not needed for the report: close it (and remove the
     * scratch directory) before the sort and the printing. */
    scan_close(&sc);
    if (status) goto out;
    status = 1;
    warn_bad(prog, bad);
    if (idl_an_report_build(a, o.deidentified, o.k, &r)) {
        fprintf(stderr, "%s: out of memory\n", prog);
        goto out;
    }
    int rc =
        strcmp(o.format, "csv") == 0 ? idl_an_write_csv(stdout, r) : idl_an_write_json(stdout, r);
    if (rc == 0 && finish_stdout(prog) == 0)
        status = 0;
    else if (rc)
        fprintf(stderr, "%s: write error: %s\n", prog, strerror(errno));
out:
    scan_close(&sc);
    signals_restore(&sv);
    idl_an_report_free(r);
    idl_an_free(a);
    return status;
}

int idl_cli_analytics(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "export") == 0) return run_export(argc - 1, argv + 1);
    return run_report(argc, argv);
}
