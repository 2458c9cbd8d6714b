/* idlookupd: the identity lookup daemon.  Parses flags, opens the store, the
 * keys and the query log, serves on nng until SIGTERM/SIGINT, then drains. */
#include "args.h"
#include "assist.h"
#include "changes.h"
#include "natsconn.h"
#include "qlogstream.h"
#include "pool.h"
#include "server.h"
#include "status.h"
#include "json.h"

#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

extern const char idld_schema_json[]; /* schemas/api.json, embedded at build time */

static const char usage[] =
    "usage: idlookupd --data DIR --keys FILE [--listen URL] [options]\n"
    "\n"
    "  --data DIR              the RocksDB store (created if missing)\n"
    "  --keys FILE             the API key file (see `idlookup keys`); reloaded on SIGHUP\n"
    "  --listen URL            tcp://HOST:PORT or ipc:///PATH (default tcp://127.0.0.1:7411)\n"
    "  --workers N             nng contexts serving requests concurrently (default 64)\n"
    "  --cache-mb N            RocksDB block cache in MiB (default 256)\n"
    "  --batch-threads N       helper threads that run parts of a Batch in parallel with the\n"
    "                          thread that received it (default: the number of CPUs; 0: none)\n"
    "  --log-flush-ms N        query-log flush interval, 1..1000 ms (default 200): a crash\n"
    "                          loses at most this much of the log; a clean stop loses nothing\n"
    "  --log-retention-days N  delete query-log entries older than N days (default 400;\n"
    "                          0 keeps them forever); applied at start and hourly\n"
    "  --fingerprint-key FILE  secret for query fingerprints (default DIR/fingerprint.key,\n"
    "                          created on first start)\n"
    "  --drain-ms N            on SIGTERM/SIGINT, answer NOT_SERVING/UNAVAILABLE for N ms\n"
    "                          before closing (default 500)\n"
    "  --no-query-log          do not log queries (benchmark comparison only: it breaks the\n"
    "                          logging promise and must not be used in production)\n"
    "  --nats URL[,URL...]     run as a cluster node: every write goes through NATS\n"
    "                          JetStream (CLUSTER.md); needs --node\n"
    "  --node NAME             this node's name in the cluster, [a-z0-9-]{1,32}, unique\n"
    "  --help                  this text\n";

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

/* Builds the Describe body from the embedded schema: the ten methods with
 * their scopes and request/response field descriptions. */
static int build_describe(idld_state *st, char err[256])
{
    json_error_t je;
    json_t *root = json_loads(idld_schema_json, 0, &je);
    if (!root) {
        snprintf(err, 256, "embedded schema: %s", je.text);
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
        snprintf(err, 256, "out of memory");
        return IDL_INTERNAL;
    }
    st->describe_body = b.data;
    st->describe_len = b.len;
    return IDL_OK;
}

int main(int argc, char **argv)
{
    const char *data = NULL, *keys = NULL, *listen = "tcp://127.0.0.1:7411", *fpkey = NULL;
    const char *nats = NULL, *node = NULL;
    unsigned long workers = 64, cache_mb = 256, flush_ms = 200, retention = 400, drain_ms = 500;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned long batch_threads = ncpu > 0 ? (unsigned long)ncpu : 1;
    bool log_queries = true;
    enum { O_WORKERS = 256, O_CACHE, O_FLUSH, O_RETENTION, O_FPKEY, O_DRAIN, O_NOLOG, O_BATCH };
    enum { O_NATS = 512, O_NODE }; /* cluster flags, apart so other flags merge cleanly */
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'},
        {"keys", required_argument, 0, 'k'},
        {"listen", required_argument, 0, 'l'},
        {"workers", required_argument, 0, O_WORKERS},
        {"cache-mb", required_argument, 0, O_CACHE},
        {"log-flush-ms", required_argument, 0, O_FLUSH},
        {"log-retention-days", required_argument, 0, O_RETENTION},
        {"fingerprint-key", required_argument, 0, O_FPKEY},
        {"drain-ms", required_argument, 0, O_DRAIN},
        {"no-query-log", no_argument, 0, O_NOLOG},
        {"batch-threads", required_argument, 0, O_BATCH},
        {"nats", required_argument, 0, O_NATS},
        {"node", required_argument, 0, O_NODE},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (o) {
        case 'd':
            data = optarg;
            break;
        case 'k':
            keys = optarg;
            break;
        case 'l':
            listen = optarg;
            break;
        case O_WORKERS:
            if (parse_uint("--workers", optarg, 1, 4096, &workers)) return 2;
            break;
        case O_CACHE:
            if (parse_uint("--cache-mb", optarg, 8, 1 << 20, &cache_mb)) return 2;
            break;
        case O_FLUSH:
            if (parse_uint("--log-flush-ms", optarg, 1, 1000, &flush_ms)) return 2;
            break;
        case O_RETENTION:
            if (parse_uint("--log-retention-days", optarg, 0, 100000, &retention)) return 2;
            break;
        case O_FPKEY:
            fpkey = optarg;
            break;
        case O_DRAIN:
            if (parse_uint("--drain-ms", optarg, 0, 60000, &drain_ms)) return 2;
            break;
        case O_NOLOG:
            log_queries = false;
            break;
        case O_BATCH:
            if (parse_uint("--batch-threads", optarg, 0, 256, &batch_threads)) return 2;
            break;
        case O_NATS:
            nats = optarg;
            break;
        case O_NODE:
            node = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case ':':
            fprintf(stderr, "idlookupd: %s: missing value\n", argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "idlookupd: unknown option '%s' (see --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "idlookupd: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    if (!data || !keys) {
        fprintf(stderr, "idlookupd: %s is required (see --help)\n", !data ? "--data" : "--keys");
        return 2;
    }
    if (!nats != !node) {
        fprintf(stderr, "idlookupd: --nats and --node go together (see --help)\n");
        return 2;
    }
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
    char err[256] = "";
    idld_state st = {.log_queries = log_queries, .start_mono_us = idld_mono_us()};
    idl_keyring *kr = NULL;
    idl_keyring *old_keys[64];
    size_t n_old = 0;
    idld_pool *pool = NULL;
    char *kerr = NULL;
    if (idl_keyring_load(keys, &kr, &kerr) != IDL_OK) {
        fprintf(stderr, "idlookupd: %s\n", kerr ? kerr : "cannot load the key file");
        free(kerr);
        return 1;
    }
    atomic_store(&st.keys, kr);
    if (build_describe(&st, err)) goto fail;
    mkdir(data, 0700);
    idl_store_opts so = {.cache_mb = cache_mb, .yield_compactions = true};
    if (idl_store_open(&st.store, data, &so, err)) goto fail;
    char fpbuf[PATH_MAX];
    if (!fpkey) {
        snprintf(fpbuf, sizeof fpbuf, "%s/fingerprint.key", data);
        fpkey = fpbuf;
    }
    if (idl_qlog_open(&st.qlog, st.store, fpkey, (unsigned)flush_ms, (unsigned)retention, err))
        goto fail;
    if (nats) {
        /* Cluster mode: the query log also fills the outbox the stream
         * publisher empties; the applier catches up before we serve. */
        st.node = node;
        idl_qlog_set_outbox(st.qlog, true);
        if (idl_changes_open(&st.changes, st.store, nats, node, err)) goto fail;
        if (idl_qlogstream_open(&st.qstream, st.store, nats, node, err)) goto fail;
    }
    if (idld_assist_new(&st.assist, batch_threads)) {
        snprintf(err, 256, "cannot start %lu batch helper threads", batch_threads);
        goto fail;
    }
    if (idld_pool_start(&pool, &st, listen, workers, err)) goto fail;
    fprintf(stderr, "idlookupd: serving on %s (%lu workers, store %s)\n", listen, workers, data);

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) continue;
        if (sig == SIGHUP) {
            idl_keyring *nk = NULL;
            if (idl_keyring_load(keys, &nk, &kerr) != IDL_OK) {
                fprintf(stderr, "idlookupd: SIGHUP: keeping the old keys: %s\n",
                        kerr ? kerr : "cannot load the key file");
                free(kerr);
                kerr = NULL;
                continue;
            }
            /* Handlers may still hold keys of the old ring: it is retired,
             * not freed, until exit. */
            idl_keyring *old = atomic_exchange(&st.keys, nk);
            if (n_old < sizeof old_keys / sizeof *old_keys) old_keys[n_old++] = old;
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
    idld_pool_stop(pool);
    pool = NULL;
    rc = 0;
fail:
    if (rc) fprintf(stderr, "idlookupd: %s\n", err[0] ? err : "failed to start");
    idld_pool_stop(pool);
    idld_assist_free(st.assist);
    /* The log's last flush fills the outbox; the stream publisher stops
     * after it, and what it did not send waits on disk for the next start. */
    idl_changes_close(st.changes);
    idl_qlog_close(st.qlog);
    idl_qlogstream_close(st.qstream);
    idl_store_close(st.store);
    idl_keyring_free(atomic_load(&st.keys));
    for (size_t i = 0; i < n_old; i++)
        idl_keyring_free(old_keys[i]);
    free((void *)st.describe_body);
    if (rc == 0) fprintf(stderr, "idlookupd: stopped\n");
    return rc;
}
