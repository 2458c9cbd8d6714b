/* idlookupd: the identity lookup daemon.  Parses flags, opens the store, the
 * keys and the query log, serves on nng until SIGTERM/SIGINT, then drains. */
#include "args.h"
#include "assist.h"
#include "call.h"
#include "changes.h"
#include "natsconn.h"
#include "qlogstream.h"
#include "server.h"
#include "status.h"
#include "json.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

extern const char idld_schema_json[]; /* schemas/api.json, embedded at build time */

/* The flags.  A flag is a row here and a case in main(). */
enum {
    F_DATA,
    F_KEYS,
    F_LISTEN,
    F_WORKERS,
    F_SLOW,
    F_CACHE,
    F_ROWCACHE,
    F_BATCH,
    F_FLUSH,
    F_RETENTION,
    F_FPKEY,
    F_DRAIN,
    F_SENDTO,
    F_PENDING,
    F_IDLE,
    F_STORELOG,
    F_MINFREE,
    F_NOLOG,
    F_NATS,
    F_NODE,
    F_HELP,
};

static const idl_args_flag flags[] = {
    {"data", 0, "DIR", "the RocksDB store (created if missing)", F_DATA},
    {"keys", 0, "FILE",
     "the API key file (see `idlookup keys`); reloaded on SIGHUP;\n"
     "refused when world-writable",
     F_KEYS},
    {"listen", 0, "URL", "tcp://HOST:PORT or ipc:///PATH (default tcp://127.0.0.1:7411)", F_LISTEN},
    {"workers", 0, "N",
     "threads serving requests, each from receive to reply (default:\n"
     "the number of CPUs)",
     F_WORKERS},
    {"slow-workers", 0, "N",
     "threads running writes (OptOut, Upsert, Disclosures), Stats and\n"
     "Batch at a lower CPU priority, so they never hold a thread that\n"
     "single lookups need (default 4; 32 with --nats, where a write\n"
     "waits for JetStream's acknowledgement on its thread)",
     F_SLOW},
    {"cache-mb", 0, "N", "RocksDB block cache in MiB (default 256)", F_CACHE},
    {"row-cache-mb", 0, "N", "RocksDB row cache in MiB, 0 for none (default 64)", F_ROWCACHE},
    {"batch-threads", 0, "N",
     "helper threads that run parts of a Batch in parallel with the\n"
     "thread that received it (default: the number of CPUs; 0: none)",
     F_BATCH},
    {"log-flush-ms", 0, "N",
     "query-log flush interval, 1..1000 ms (default 200): a crash\n"
     "loses at most this much of the log; a clean stop loses nothing",
     F_FLUSH},
    {"log-retention-days", 0, "N",
     "delete query-log entries older than N days (default 400;\n"
     "0 keeps them forever); applied at start and hourly",
     F_RETENTION},
    {"fingerprint-key", 0, "FILE",
     "secret for query fingerprints (default DIR/fingerprint.key,\n"
     "created 0600 on first start; refused when others may read\n"
     "or write it)",
     F_FPKEY},
    {"drain-ms", 0, "N",
     "on SIGTERM/SIGINT, answer NOT_SERVING/UNAVAILABLE for N ms\n"
     "before closing (default 500)",
     F_DRAIN},
    {"send-timeout-ms", 0, "N",
     "close a connection that has taken none of its waiting replies\n"
     "for N ms (default 1000; 0: wait forever)",
     F_SENDTO},
    {"max-pending-replies", 0, "N",
     "stop reading a connection while N of its replies wait for it to\n"
     "take them, so a client that does not read holds a buffer and no\n"
     "thread (default 256; 0: only the 4 MiB byte cap)",
     F_PENDING},
    {"idle-timeout-ms", 0, "N",
     "close a connection with nothing outstanding that has sent no\n"
     "whole request for N ms, also one stuck mid-frame (default\n"
     "60000; 0: never)",
     F_IDLE},
    {"store-log", 0, "DIR",
     "write RocksDB's info log (warnings) as a LOG file in DIR, which\n"
     "should be on another filesystem than --data (default: to\n"
     "stderr, prefixed 'rocksdb: '; never into the data directory)",
     F_STORELOG},
    {"min-free-mb", 0, "N",
     "refuse writes (Upsert, OptOut, Disclosures, the query log)\n"
     "with UNAVAILABLE while the filesystem of --data has less than\n"
     "N MiB free; reads go on (default 64; 0: no floor)",
     F_MINFREE},
    {"no-query-log", 0, NULL,
     "do not log queries (benchmark comparison only: it breaks the\n"
     "logging promise and must not be used in production)",
     F_NOLOG},
    {"nats", 0, "URL[,URL...]",
     "run as a cluster node: every write goes through NATS\n"
     "JetStream (CLUSTER.md); needs --node",
     F_NATS},
    {"node", 0, "NAME", "this node's name in the cluster, [a-z0-9-]{1,32}, unique", F_NODE},
    {"help", 'h', NULL, "this text", F_HELP},
};

static const idl_args_spec spec = {
    .prog = "idlookupd",
    .head = "usage: idlookupd --data DIR --keys FILE [--listen URL] [options]\n\n",
    .flags = flags,
    .nflags = sizeof flags / sizeof flags[0],
    .indent = 2,
    .column = 30,
};

static int parse_uint(const char *flag, const char *s, unsigned long lo, unsigned long hi,
                      unsigned long *out)
{
    uint64_t v;
    if (idl_args_uint(s, lo, hi, &v) != IDL_OK) {
        fprintf(stderr, "idlookupd: %s: expected a number in %lu..%lu, got '%s'\n", flag, lo, hi,
                s);
        return -1;
    }
    *out = (unsigned long)v;
    return 0;
}

/* Refuses a secret file others can read or change: err gets one line naming
 * the file and its mode.  A missing file passes (the caller reports it, or
 * creates it).  what: "key file", "fingerprint key"; no_read: whether
 * world-readable is refused too (the key file holds only hashes, so only
 * writing it matters; the fingerprint key is the secret itself). */
static int check_mode(const char *path, const char *what, bool no_read, char err[IDL_ERR_MAX])
{
    struct stat sb;
    if (stat(path, &sb) != 0) return IDL_OK;
    unsigned mode = (unsigned)(sb.st_mode & 07777);
    const char *bad = (mode & S_IWOTH)              ? "world-writable"
                      : no_read && (mode & S_IROTH) ? "world-readable"
                                                    : NULL;
    if (!bad) return IDL_OK;
    snprintf(err, IDL_ERR_MAX, "%s %s has mode %04o: it is %s; refusing it (chmod 600 %s)", what,
             path, mode, bad, path);
    return IDL_PERMISSION_DENIED;
}

/* Builds the Describe body from the embedded schema: the ten methods with
 * their scopes and request/response field descriptions. */
static int build_describe(idld_state *st, char err[IDL_ERR_MAX])
{
    json_error_t je;
    json_t *root = json_loads(idld_schema_json, 0, &je);
    if (!root) {
        snprintf(err, IDL_ERR_MAX, "embedded schema: %s", je.text);
        return IDL_INTERNAL;
    }
    json_t *methods = json_object_get(root, "methods");
    json_t *out = json_object();
    json_object_set_new(out, "version", json_string("1"));
    json_t *arr = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(methods, i, m)
    {
        json_t *e = json_object();
        json_object_set(e, "name", json_object_get(m, "name"));
        json_t *scope = json_object_get(m, "scope");
        json_object_set(e, "scope", scope ? scope : json_null());
        json_object_set(e, "request", json_object_get(m, "request"));
        json_object_set(e, "response", json_object_get(m, "response"));
        json_array_append_new(arr, e);
    }
    json_object_set_new(out, "methods", arr);
    idl_buf b = {0};
    msgpack_packer pk;
    idl_buf_packer(&b, &pk);
    idl_json_pack(&pk, out);
    json_decref(out);
    json_decref(root);
    if (b.failed) {
        idl_buf_free(&b);
        snprintf(err, IDL_ERR_MAX, "out of memory");
        return IDL_INTERNAL;
    }
    st->describe_body = b.data;
    st->describe_len = b.len;
    return IDL_OK;
}

/* Key rings retired by SIGHUP and not yet freed: a request may still be
 * using one (see idld_pool_ring_in_use). */
typedef struct {
    idl_keyring **v;
    size_t n, cap;
} retired;

/* Frees every retired ring no request uses any more. */
static void reap_rings(retired *r, const idld_pool *pool)
{
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (idld_pool_ring_in_use(pool, r->v[i]))
            r->v[k++] = r->v[i];
        else
            idl_keyring_free(r->v[i]);
    }
    r->n = k;
}

typedef struct {
    idld_pool *pool;
    pthread_mutex_t lock;
    pthread_cond_t done_cv;
    bool done;
} closer;

static void *closer_main(void *arg)
{
    closer *c = arg;
    idld_pool_stop(c->pool);
    pthread_mutex_lock(&c->lock);
    c->done = true;
    pthread_cond_signal(&c->done_cv);
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* Stops the pool on another thread and waits for it up to ms: 0 when it
 * stopped, -1 when it is still closing (the thread is left running). */
static int close_with_deadline(idld_pool *pool, unsigned ms)
{
    static closer c = {.lock = PTHREAD_MUTEX_INITIALIZER, .done_cv = PTHREAD_COND_INITIALIZER};
    c.pool = pool;
    pthread_t th;
    if (pthread_create(&th, NULL, closer_main, &c) != 0) {
        idld_pool_stop(pool);
        return 0;
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)ms * 1000000u;
    until.tv_sec += (time_t)(ns / 1000000000u);
    until.tv_nsec = (long)(ns % 1000000000u);
    pthread_mutex_lock(&c.lock);
    while (!c.done)
        if (pthread_cond_timedwait(&c.done_cv, &c.lock, &until) != 0) break;
    bool done = c.done;
    pthread_mutex_unlock(&c.lock);
    if (!done) return -1;
    pthread_join(th, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    const char *data = NULL, *keys = NULL, *listen = "tcp://127.0.0.1:7411", *fpkey = NULL;
    const char *nats = NULL, *node = NULL;
    unsigned long workers = 0, slow_workers = 0, cache_mb = 256, row_cache_mb = 64, flush_ms = 200,
                  retention = 400, drain_ms = 500, min_free_mb = 64;
    const char *store_log = "-";
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned long batch_threads = ncpu > 0 ? (unsigned long)ncpu : 1;
    bool log_queries = true;
    unsigned long send_timeout = 1000, idle_ms = 60000, max_pending = ULONG_MAX;
    idl_args args;
    const idl_args_flag *fl;
    const char *v;
    idl_args_start(&args, &spec, argc, argv);
    while (idl_args_next(&args, &fl, &v)) {
        switch (fl->id) {
        case F_DATA:
            data = v;
            break;
        case F_KEYS:
            keys = v;
            break;
        case F_LISTEN:
            listen = v;
            break;
        case F_WORKERS:
            if (parse_uint("--workers", v, 1, 4096, &workers)) return 2;
            break;
        case F_SLOW:
            if (parse_uint("--slow-workers", v, 1, 4096, &slow_workers)) return 2;
            break;
        case F_CACHE:
            if (parse_uint("--cache-mb", v, 8, 1 << 20, &cache_mb)) return 2;
            break;
        case F_ROWCACHE:
            if (parse_uint("--row-cache-mb", v, 0, 1 << 20, &row_cache_mb)) return 2;
            break;
        case F_FLUSH:
            if (parse_uint("--log-flush-ms", v, 1, 1000, &flush_ms)) return 2;
            break;
        case F_RETENTION:
            if (parse_uint("--log-retention-days", v, 0, 100000, &retention)) return 2;
            break;
        case F_FPKEY:
            fpkey = v;
            break;
        case F_DRAIN:
            if (parse_uint("--drain-ms", v, 0, 60000, &drain_ms)) return 2;
            break;
        case F_NOLOG:
            log_queries = false;
            break;
        case F_BATCH:
            if (parse_uint("--batch-threads", v, 0, 256, &batch_threads)) return 2;
            break;
        case F_SENDTO:
            if (parse_uint("--send-timeout-ms", v, 0, 600000, &send_timeout)) return 2;
            break;
        case F_PENDING:
            if (parse_uint("--max-pending-replies", v, 0, 1000000, &max_pending)) return 2;
            break;
        case F_IDLE:
            if (parse_uint("--idle-timeout-ms", v, 0, 86400000, &idle_ms)) return 2;
            break;
        case F_STORELOG:
            store_log = v;
            break;
        case F_MINFREE:
            if (parse_uint("--min-free-mb", v, 0, 1 << 24, &min_free_mb)) return 2;
            break;
        case F_NATS:
            nats = v;
            break;
        case F_NODE:
            node = v;
            break;
        case F_HELP:
            idl_args_usage(&spec, stdout);
            return 0;
        }
    }
    if (args.status) return idl_args_fail(&spec, stderr, args.err);
    if (max_pending == ULONG_MAX) max_pending = 256;
    if (!workers) workers = ncpu > 0 ? (unsigned long)ncpu : 1;
    if (!data || !keys) {
        fprintf(stderr, "idlookupd: %s is required (see --help)\n", !data ? "--data" : "--keys");
        return 2;
    }
    if (!nats != !node) {
        fprintf(stderr, "idlookupd: --nats and --node go together (see --help)\n");
        return 2;
    }
    /* In cluster mode a write holds its slow thread for a JetStream round
     * trip (3 replicas, each writing to disk): with 4 threads one node took
     * 807 opt-outs/s at most; the threads wait, they do not compute. */
    if (!slow_workers) slow_workers = nats ? 32 : 4;
    if (node && !idl_natsconn_node_valid(node)) {
        fprintf(stderr, "idlookupd: --node: '%s' is not a node name ([a-z0-9-]{1,32})\n", node);
        return 2;
    }

    /* Signals are taken by sigwait in this thread only: block them before
     * any library starts a thread. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    char err[IDL_ERR_MAX] = "";
    idld_state st = {.log_queries = log_queries, .start_mono_us = idld_mono_us()};
    idl_keyring *kr = NULL;
    retired old = {0};
    idld_pool *pool = NULL;
    char kerr[IDL_ERR_MAX] = "";
    if (check_mode(keys, "key file", false, err)) {
        fprintf(stderr, "idlookupd: %s\n", err);
        return 1;
    }
    if (idl_keyring_load(keys, &kr, kerr) != IDL_OK) {
        fprintf(stderr, "idlookupd: %s\n", kerr[0] ? kerr : "cannot load the key file");
        return 1;
    }
    atomic_store(&st.keys, kr);
    char fpbuf[PATH_MAX];
    if (!fpkey) {
        snprintf(fpbuf, sizeof fpbuf, "%s/fingerprint.key", data);
        fpkey = fpbuf;
    }
    if (check_mode(fpkey, "fingerprint key", true, err)) goto fail;
    if (build_describe(&st, err)) goto fail;
    mkdir(data, 0700);
    idl_store_opts so = {.cache_mb = cache_mb,
                         .row_cache_mb = row_cache_mb,
                         .yield_compactions = true,
                         .info_log = store_log,
                         .min_free_bytes = (uint64_t)min_free_mb << 20};
    if (strcmp(store_log, "-") != 0 && mkdir(store_log, 0700) != 0 && errno != EEXIST) {
        snprintf(err, IDL_ERR_MAX, "--store-log %s: %s", store_log, strerror(errno));
        goto fail;
    }
    if (idl_store_open(&st.store, data, &so, err)) goto fail;
    if (idl_qlog_open(&st.qlog, st.store, fpkey, (unsigned)flush_ms, (unsigned)retention, err))
        goto fail;
    if (nats) {
        /* Cluster mode: the query log also fills the outbox the stream
         * publisher empties; the applier catches up before we serve. */
        st.node = node;
        if (idl_qlog_set_outbox(st.qlog, true)) {
            snprintf(err, IDL_ERR_MAX, "cannot read the query log's outbox sequence");
            goto fail;
        }
        if (idl_changes_open(&st.changes, st.store, nats, node, err)) goto fail;
        if (idl_qlogstream_open(&st.qstream, st.store, nats, node, err)) goto fail;
    }
    if (idld_assist_new(&st.assist, batch_threads)) {
        snprintf(err, IDL_ERR_MAX, "cannot start %lu batch helper threads", batch_threads);
        goto fail;
    }
    idld_pool_opts po = {.workers = workers,
                         .slow_workers = slow_workers,
                         .send_timeout_ms = (uint32_t)send_timeout,
                         .max_pending = (uint32_t)max_pending,
                         .idle_ms = (uint32_t)idle_ms};
    if (idld_pool_start(&pool, &st, listen, &po, err)) goto fail;
    fprintf(stderr, "idlookupd: serving on %s (%lu workers, %lu slow workers, store %s)\n", listen,
            workers, slow_workers, data);

    for (;;) {
        /* Wakes each second while rings wait to be freed. */
        struct timespec tick = {.tv_sec = 1};
        int sig = sigtimedwait(&set, NULL, &tick);
        if (old.n) reap_rings(&old, pool);
        if (sig < 0) continue;
        if (sig == SIGHUP) {
            idl_keyring *nk = NULL;
            if (check_mode(keys, "key file", false, err)) {
                fprintf(stderr, "idlookupd: SIGHUP: keeping the old keys: %s\n", err);
                err[0] = 0;
                continue;
            }
            if (idl_keyring_load(keys, &nk, kerr) != IDL_OK) {
                fprintf(stderr, "idlookupd: SIGHUP: keeping the old keys: %s\n",
                        kerr[0] ? kerr : "cannot load the key file");
                kerr[0] = 0;
                continue;
            }
            /* Handlers may still hold keys of the old ring: it is retired,
             * and freed once none does (at the latest a second later). */
            if (old.n == old.cap) {
                size_t cap = old.cap ? old.cap * 2 : 8;
                idl_keyring **v = realloc(old.v, cap * sizeof *v);
                if (!v) {
                    /* Cannot retire it: keep serving the old keys. */
                    fprintf(stderr, "idlookupd: SIGHUP: keeping the old keys: out of memory\n");
                    idl_keyring_free(nk);
                    continue;
                }
                old.v = v;
                old.cap = cap;
            }
            old.v[old.n++] = atomic_exchange(&st.keys, nk);
            reap_rings(&old, pool);
            fprintf(stderr, "idlookupd: SIGHUP: reloaded %zu keys\n", idl_keyring_count(nk));
            continue;
        }
        break;
    }
    fprintf(stderr, "idlookupd: draining for %lu ms\n", drain_ms);
    atomic_store(&st.draining, true);
    struct timespec ts = {.tv_sec = (time_t)(drain_ms / 1000),
                          .tv_nsec = (long)(drain_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    /* The log and the store are made durable before the socket closes: in
     * nng 1.5.2, nng_close can wait forever on a connection torn down
     * mid-frame (busy clients, unread replies), and a supervisor's SIGKILL
     * then lost up to a flush interval of log. */
    idld_pool_quiesce(pool);
    /* The applier stops writing first; the log's last flush fills the
     * outbox; the stream publisher stops after it, and what it did not send
     * waits on disk for the next start. */
    idl_changes_close(st.changes);
    st.changes = NULL;
    idl_qlog_close(st.qlog);
    st.qlog = NULL;
    idl_qlogstream_close(st.qstream);
    st.qstream = NULL;
    idl_store_close(st.store);
    st.store = NULL;
    if (close_with_deadline(pool, 1000)) {
        fprintf(stderr, "idlookupd: the socket did not close within 1 s; log and store are "
                        "closed, exiting without it\n");
        _exit(0);
    }
    pool = NULL;
    rc = 0;
fail:
    if (rc) fprintf(stderr, "idlookupd: %s\n", err[0] ? err : "failed to start");
    idld_pool_stop(pool);
    idld_assist_free(st.assist);
    idl_changes_close(st.changes);
    idl_qlog_close(st.qlog);
    idl_qlogstream_close(st.qstream);
    idl_store_close(st.store);
    idl_keyring_free(atomic_load(&st.keys));
    for (size_t i = 0; i < old.n; i++)
        idl_keyring_free(old.v[i]);
    free(old.v);
    free((void *)st.describe_body);
    if (rc == 0) fprintf(stderr, "idlookupd: stopped\n");
    return rc;
}
