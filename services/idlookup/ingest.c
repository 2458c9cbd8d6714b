/* `idlookup ingest`: bulk NDJSON load into a store no daemon holds open.
 *
 * A reader fills chunks of lines, two parser threads turn them into
 * normalized records (JSON parsing and libphonenumber are the expensive
 * part), and the main thread writes chunks in file order, each as one
 * RocksDB WriteBatch: a record and its index entries always land together,
 * so an ingest killed halfway leaves a consistent store that a rerun
 * completes (upserts are idempotent by source_id).
 */
#include "args.h"
#include "changes.h"
#include "cli.h"
#include "json.h"
#include "record.h"
#include "status.h"
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK_LINES 1024
#define SLOTS 8
#define PARSERS_MAX 8
#define MAX_REPORTS 1000 /* per kind; the rest are only counted */
#define MAX_LINE (1 << 20)

typedef enum { S_EMPTY, S_FILLED, S_PARSING, S_PARSED } slot_state;

typedef struct {
    slot_state state;
    uint64_t seq; /* chunk number, for in-order writing */
    const char *file;
    uint64_t first_line; /* line number of lines[0] */
    size_t n;
    char *lines[CHUNK_LINES];
    size_t lens[CHUNK_LINES];
    uint64_t lineno[CHUNK_LINES];
    /* parse results */
    idl_record *recs; /* CHUNK_LINES records */
    size_t nrecs;
    uint64_t invalid, dropped;
    idl_buf notes; /* "FILE:LINE: text\n" messages, errors then warnings */
    uint64_t n_errors, n_warnings;
} slot;

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    slot slots[SLOTS];
    uint64_t next_fill, next_write;
    bool eof;
    bool failed;
} pipeline;

typedef struct {
    slot *s;
    uint64_t line;
} warn_ctx;

static void note(slot *s, const char *file, uint64_t line, const char *kind, const char *text)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf, "idlookup ingest: %s:%llu: %s%s\n", file,
                     (unsigned long long)line, kind, text);
    if (n > 0) idl_buf_write(&s->notes, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void on_warning(void *ctx, const char *reason)
{
    warn_ctx *w = ctx;
    w->s->n_warnings++;
    note(w->s, w->s->file, w->line, "warning: ", reason);
}

static void parse_slot(slot *s)
{
    msgpack_zone zone;
    msgpack_zone_init(&zone, 8192);
    idl_buf mp = {0};
    s->nrecs = 0;
    s->invalid = s->dropped = 0;
    s->n_errors = s->n_warnings = 0;
    idl_buf_reset(&s->notes);
    for (size_t i = 0; i < s->n; i++) {
        uint64_t line = s->lineno[i];
        if (s->lens[i] > MAX_LINE) {
            note(s, s->file, line, "skipped: ", "line longer than 1 MiB");
            s->invalid++;
            s->n_errors++;
            continue;
        }
        json_error_t je;
        json_t *v = json_loadb(s->lines[i], s->lens[i], 0, &je);
        if (!v) {
            char why[300];
            snprintf(why, sizeof why, "not valid JSON (column %d: %s)", je.column, je.text);
            note(s, s->file, line, "skipped: ", why);
            s->invalid++;
            s->n_errors++;
            continue;
        }
        if (!json_is_object(v)) {
            json_decref(v);
            note(s, s->file, line, "skipped: ", "a record must be a JSON object");
            s->invalid++;
            s->n_errors++;
            continue;
        }
        idl_buf_reset(&mp);
        msgpack_packer pk;
        idl_buf_packer(&mp, &pk);
        idl_json_pack(&pk, v);
        json_decref(v);
        msgpack_zone_clear(&zone);
        msgpack_object o;
        size_t off = 0;
        char reason[IDL_ERR_MAX];
        warn_ctx w = {s, line};
        char why[IDL_ERR_MAX] = "the record could not be decoded";
        if (mp.failed) {
            note(s, s->file, line, "skipped: ", "out of memory");
            s->invalid++;
            s->n_errors++;
            continue;
        }
        /* The same structural limits as a request (nesting, object count),
         * so a pathological line is refused with a reason, not unpacked. */
        if (idl_wire_check_limits(mp.data, mp.len, MAX_LINE * 2, IDL_WIRE_MAX_OBJECTS, why) ||
            msgpack_unpack(mp.data, mp.len, &off, &zone, &o) != MSGPACK_UNPACK_SUCCESS) {
            note(s, s->file, line, "skipped: ", why);
            s->invalid++;
            s->n_errors++;
            continue;
        }
        if (idl_record_parse(&o, &s->recs[s->nrecs], on_warning, &w, reason)) {
            note(s, s->file, line, "skipped: ", reason);
            s->invalid++;
            s->n_errors++;
            continue;
        }
        s->dropped += s->recs[s->nrecs].dropped;
        s->nrecs++;
    }
    idl_buf_free(&mp);
    msgpack_zone_destroy(&zone);
}

static void *parser(void *arg)
{
    pipeline *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        slot *s = NULL;
        uint64_t best = UINT64_MAX;
        for (int i = 0; i < SLOTS; i++)
            if (p->slots[i].state == S_FILLED && p->slots[i].seq < best)
                best = p->slots[i].seq, s = &p->slots[i];
        if (!s) {
            if (p->eof || p->failed) break;
            pthread_cond_wait(&p->changed, &p->lock);
            continue;
        }
        s->state = S_PARSING;
        pthread_mutex_unlock(&p->lock);
        parse_slot(s);
        pthread_mutex_lock(&p->lock);
        s->state = S_PARSED;
        pthread_cond_broadcast(&p->changed);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

typedef struct {
    uint64_t read, stored, updated, child, suppressed, invalid, dropped;
    uint64_t reported_errors, reported_warnings, more_errors, more_warnings;
} totals;

/* Writes one parsed chunk (main thread, in file order): to the store, or
 * with pub (--nats) to the change stream, where every node applies it. */
static int write_slot(idl_store *st, idl_changes_pub *pub, slot *s, totals *t,
                      idl_upsert_result *res, char err[IDL_ERR_MAX])
{
    /* Notes: errors and warnings in line order, bounded. */
    const char *p = s->notes.data, *end = s->notes.data + s->notes.len;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
        bool warning = memmem(p, len, ": warning: ", 11) != NULL;
        uint64_t *shown = warning ? &t->reported_warnings : &t->reported_errors;
        if (*shown < MAX_REPORTS) {
            fwrite(p, 1, len, stderr);
            (*shown)++;
        } else {
            (*(warning ? &t->more_warnings : &t->more_errors))++;
        }
        p += len;
    }
    t->read += s->n;
    t->invalid += s->invalid;
    t->dropped += s->dropped;
    if (s->nrecs == 0) return IDL_OK;
    if (pub) {
        /* Which records are new, updated or hidden is each node's to find
         * when it applies them; a child is one wherever it lands. */
        int y, m, d;
        idl_today(&y, &m, &d);
        int rc = idl_changes_pub_upsert(pub, s->recs, s->nrecs, err);
        if (rc) return rc;
        for (size_t i = 0; i < s->nrecs; i++) {
            bool child = idl_record_is_child(&s->recs[i], y, m, d);
            t->child += child;
            t->stored += !child;
        }
        return IDL_OK;
    }
    int rc = idl_store_upsert(st, s->recs, s->nrecs, res, false);
    if (rc) return rc;
    for (size_t i = 0; i < s->nrecs; i++) {
        t->stored += res[i].outcome == IDL_UP_STORED;
        t->updated += res[i].outcome == IDL_UP_UPDATED;
        t->child += res[i].outcome == IDL_UP_CHILD;
        t->suppressed += res[i].suppressed;
    }
    return IDL_OK;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum { F_DATA, F_NATS, F_THREADS, F_CACHE, F_QUIET, F_HELP };

static const idl_args_flag ingest_flags[] = {
    {"data", 0, "DIR", "the store (created if missing)", F_DATA},
    {"nats", 0, "URLS",
     "load through the cluster's change stream (CLUSTER.md) instead of a\n"
     "store: every node, present or future, applies the records.  The\n"
     "summary is printed once JetStream acknowledged every message; as\n"
     "only a node knows what it held before, \"stored\" then counts the\n"
     "records sent (new or updated), \"updated\" and \"suppressed\" are 0\n"
     "(each node's Stats has its own counts)",
     F_NATS},
    {"threads", 0, "N", "parser threads (default: the number of cores, at most 8)", F_THREADS},
    {"cache-mb", 0, "N", "RocksDB block cache in MiB, 8..1048576 (default 256)", F_CACHE},
    {"quiet", 0, NULL, "no progress line on stderr", F_QUIET},
    {"help", 'h', NULL, "this text", F_HELP},
};

static const idl_args_spec ingest_spec = {
    .prog = "idlookup ingest",
    .head = "usage: idlookup ingest --data DIR [--threads N] [--cache-mb N] [--quiet] "
            "FILE.ndjson...\n"
            "       idlookup ingest --nats URL[,URL...] [--threads N] [--quiet] FILE.ndjson...\n"
            "\n"
            "Loads person records (one JSON object per line, DATA.md §1) into the store at DIR,\n"
            "which no daemon may hold open.  Same source_id again replaces the person.  Bad lines\n"
            "are skipped and reported on stderr with their line numbers (the first 1000 of each\n"
            "kind); the counts go to stdout as one JSON object.  '-' reads standard input.\n",
    .tail =
        "Exit status: 0 when the load ran to the end (even with skipped lines), 1 on a missing\n"
        "file or a store that cannot be opened or written, 2 bad usage.\n",
    .flags = ingest_flags,
    .nflags = sizeof ingest_flags / sizeof ingest_flags[0],
    .indent = 2,
    .column = 20,
    .max_operands = IDL_ARGS_ANY,
};

int idl_cli_ingest(int argc, char **argv)
{
    const char *data = NULL, *nats = NULL;
    unsigned long cache_mb = 256;
    bool quiet = false;
    long nparsers = sysconf(_SC_NPROCESSORS_ONLN);
    if (nparsers < 1) nparsers = 1;
    if (nparsers > PARSERS_MAX) nparsers = PARSERS_MAX;
    /* The files are gathered at the front of argv, in order, as getopt
     * did: each one is written to a slot the walk has already read. */
    int nfiles = 0;
    idl_args args;
    const idl_args_flag *fl;
    const char *v;
    idl_args_start(&args, &ingest_spec, argc, argv);
    while (idl_args_next(&args, &fl, &v)) {
        if (!fl) {
            argv[1 + nfiles++] = (char *)v;
            continue;
        }
        switch (fl->id) {
        case F_DATA:
            data = v;
            break;
        case F_NATS:
            nats = v;
            break;
        case F_CACHE: {
            uint64_t n;
            if (idl_args_uint(v, 8, 1u << 20, &n) != IDL_OK) {
                fprintf(stderr, "idlookup ingest: --cache-mb: expected 8..1048576, got '%s'\n", v);
                return 2;
            }
            cache_mb = (unsigned long)n;
            break;
        }
        case F_THREADS: {
            uint64_t n;
            if (idl_args_uint(v, 1, PARSERS_MAX, &n) != IDL_OK) {
                fprintf(stderr, "idlookup ingest: --threads: expected 1..%d, got '%s'\n",
                        PARSERS_MAX, v);
                return 2;
            }
            nparsers = (long)n;
            break;
        }
        case F_QUIET:
            quiet = true;
            break;
        case F_HELP:
            idl_args_usage(&ingest_spec, stdout);
            return 0;
        }
    }
    if (args.status) return idl_args_fail(&ingest_spec, stderr, args.err);
    char **paths = argv + 1;
    if (!data && !nats) {
        fprintf(stderr, "idlookup ingest: --data DIR is required (see --help)\n");
        return 2;
    }
    if (data && nats) {
        fprintf(stderr, "idlookup ingest: give --data DIR or --nats URL, not both\n");
        return 2;
    }
    if (nfiles == 0) {
        fprintf(stderr, "idlookup ingest: give at least one NDJSON file (see --help)\n");
        return 2;
    }
    /* Every file must be readable before anything is written. */
    FILE **files = calloc((size_t)nfiles, sizeof(FILE *));
    if (!files) return 1;
    int status = 1;
    for (int i = 0; i < nfiles; i++) {
        const char *path = paths[i];
        files[i] = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
        if (!files[i]) {
            fprintf(stderr, "idlookup ingest: %s: %s\n", path, strerror(errno));
            goto close_files;
        }
    }
    idl_store *st = NULL;
    idl_changes_pub *pub = NULL;
    char err[IDL_ERR_MAX];
    if (nats) {
        if (idl_changes_pub_open(&pub, nats, err)) {
            fprintf(stderr, "idlookup ingest: %s\n", err);
            goto close_files;
        }
    } else {
        mkdir(data, 0700);
        /* No write below 64 MiB free, as in the daemon: a full disk mid-load
         * ends in an error (rerun the ingest), not in RocksDB's abort. */
        idl_store_opts so = {
            .cache_mb = cache_mb, .bulk = true, .min_free_bytes = (uint64_t)64 << 20};
        if (idl_store_open(&st, data, &so, err)) {
            fprintf(stderr, "idlookup ingest: %s\n", err);
            goto close_files;
        }
    }

    pipeline p = {.next_fill = 0, .next_write = 0};
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.changed, NULL);
    idl_upsert_result *res = malloc(CHUNK_LINES * sizeof(*res));
    bool setup_ok = res != NULL;
    for (int i = 0; i < SLOTS && setup_ok; i++) {
        p.slots[i].recs = malloc(CHUNK_LINES * sizeof(idl_record));
        setup_ok = p.slots[i].recs != NULL;
    }
    pthread_t th[PARSERS_MAX];
    int nth = 0;
    for (; setup_ok && nth < nparsers; nth++)
        if (pthread_create(&th[nth], NULL, parser, &p) != 0) break;
    totals t = {0};
    double t0 = now_s(), last_progress = t0;
    bool show_progress = !quiet;
    int rc = setup_ok && nth > 0 ? IDL_OK : IDL_INTERNAL;
    char cause[IDL_ERR_MAX] = ""; /* why the stream could not be written */
    char *line = NULL;
    size_t cap = 0;
    int fi = 0;
    uint64_t lineno = 0;
    const char *fname = nfiles ? paths[0] : "";
    bool reading = rc == IDL_OK;
    while (rc == IDL_OK) {
        pthread_mutex_lock(&p.lock);
        /* Fill every empty slot we can, then write the next chunk in order. */
        slot *empty = NULL;
        for (int i = 0; i < SLOTS && reading; i++)
            if (p.slots[i].state == S_EMPTY) {
                empty = &p.slots[i];
                break;
            }
        slot *next = NULL;
        for (int i = 0; i < SLOTS; i++)
            if (p.slots[i].state == S_PARSED && p.slots[i].seq == p.next_write) next = &p.slots[i];
        if (!empty && !next) {
            bool pending = false;
            for (int i = 0; i < SLOTS; i++)
                pending |= p.slots[i].state != S_EMPTY;
            if (!reading && !pending) {
                pthread_mutex_unlock(&p.lock);
                break;
            }
            pthread_cond_wait(&p.changed, &p.lock);
            pthread_mutex_unlock(&p.lock);
            continue;
        }
        pthread_mutex_unlock(&p.lock);
        if (next) {
            rc = write_slot(st, pub, next, &t, res, cause);
            pthread_mutex_lock(&p.lock);
            for (size_t i = 0; i < next->n; i++)
                free(next->lines[i]);
            next->n = 0;
            next->state = S_EMPTY;
            p.next_write++;
            pthread_cond_broadcast(&p.changed);
            pthread_mutex_unlock(&p.lock);
            double now = now_s();
            if (show_progress && now - last_progress >= 1.0) {
                fprintf(stderr, "\ridlookup ingest: %llu lines, %.0f lines/s ",
                        (unsigned long long)t.read, (double)t.read / (now - t0));
                last_progress = now;
            }
            continue;
        }
        /* Fill one chunk. */
        empty->n = 0;
        empty->file = fname;
        while (empty->n < CHUNK_LINES && fi < nfiles) {
            ssize_t n = getline(&line, &cap, files[fi]);
            if (n < 0) {
                if (ferror(files[fi])) {
                    fprintf(stderr, "\nidlookup ingest: %s: read error: %s\n", paths[fi],
                            strerror(errno));
                    rc = IDL_INTERNAL;
                    break;
                }
                fi++;
                lineno = 0;
                if (fi < nfiles) {
                    /* A chunk holds lines of one file, so its notes name it. */
                    fname = paths[fi];
                    break;
                }
                continue;
            }
            lineno++;
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = 0;
            size_t k = 0;
            while (k < (size_t)n && (line[k] == ' ' || line[k] == '\t'))
                k++;
            if (k == (size_t)n) continue; /* blank lines are not records */
            char *copy = malloc((size_t)n + 1);
            if (!copy) {
                rc = IDL_INTERNAL;
                break;
            }
            memcpy(copy, line, (size_t)n + 1);
            empty->lines[empty->n] = copy;
            empty->lens[empty->n] = (size_t)n;
            empty->lineno[empty->n] = lineno;
            empty->n++;
        }
        if (fi >= nfiles) reading = false;
        pthread_mutex_lock(&p.lock);
        if (empty->n) {
            empty->seq = p.next_fill++;
            empty->state = S_FILLED;
        }
        if (!reading) p.eof = true;
        if (rc) p.failed = true;
        pthread_cond_broadcast(&p.changed);
        pthread_mutex_unlock(&p.lock);
    }
    pthread_mutex_lock(&p.lock);
    p.eof = true;
    if (rc) p.failed = true;
    pthread_cond_broadcast(&p.changed);
    pthread_mutex_unlock(&p.lock);
    for (int i = 0; i < nth; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < SLOTS; i++) {
        for (size_t j = 0; j < p.slots[i].n; j++)
            free(p.slots[i].lines[j]);
        free(p.slots[i].recs);
        idl_buf_free(&p.slots[i].notes);
    }
    free(line);
    free(res);
    pthread_mutex_destroy(&p.lock);
    pthread_cond_destroy(&p.changed);
    idl_store_close(st);
    if (pub) {
        /* The summary means "in the stream": wait for every acknowledgement. */
        if (rc == IDL_OK) rc = idl_changes_pub_wait(pub, cause);
        if (rc && cause[0]) fprintf(stderr, "\nidlookup ingest: %s\n", cause);
        idl_changes_pub_close(pub);
    }
    double secs = now_s() - t0;
    if (show_progress && secs >= 1.0)
        fprintf(stderr, "\ridlookup ingest: %llu lines in %.1f s (%.0f lines/s)\n",
                (unsigned long long)t.read, secs, (double)t.read / secs);
    if (t.more_errors || t.more_warnings)
        fprintf(stderr,
                "idlookup ingest: %llu more skipped lines and %llu more warnings not shown\n",
                (unsigned long long)t.more_errors, (unsigned long long)t.more_warnings);
    if (rc) {
        fprintf(stderr,
                "idlookup ingest: the %s could not be written; what was written is "
                "consistent, and a rerun completes the load\n",
                nats ? "change stream" : "store");
        goto close_files;
    }
    printf("{\"read\": %llu, \"stored\": %llu, \"updated\": %llu, \"rejected_child\": %llu, "
           "\"suppressed\": %llu, \"invalid\": %llu, \"dropped_identifiers\": %llu}\n",
           (unsigned long long)t.read, (unsigned long long)t.stored, (unsigned long long)t.updated,
           (unsigned long long)t.child, (unsigned long long)t.suppressed,
           (unsigned long long)t.invalid, (unsigned long long)t.dropped);
    status = fflush(stdout) == 0 ? 0 : 1;
close_files:
    for (int i = 0; i < nfiles; i++)
        if (files[i] && files[i] != stdin) fclose(files[i]);
    free(files);
    return status;
}
