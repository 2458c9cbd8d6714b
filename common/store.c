/* The RocksDB record store (see store.h for the layout and the locking). */
#include "store.h"
#include "hkey.h"
#include "rocksx.h"
#include "status.h"
#include "u64set.h"
#include "wire.h"

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <time.h>

static const char *const cf_names[IDL_CF_COUNT] = {"default", "persons", "idx",
                                                   "supp",    "log",     "logp"};

/* Counters kept in the default column family, updated in the same batch as
 * the change they count, so a crash never leaves them out of step. */
#define CTR_PERSONS "c:persons_total"
#define CTR_SUPPRESSED "c:persons_suppressed"
#define CTR_PURGED "c:children_purged"
/* The layout version (store.h).  Version 2 made idx values pid lists;
 * version 3 keys emails and addresses by the stricter rules of DATA.md §3
 * (RFC 5321/6531 dot-atoms, IDNA 2008, Pub 28), and a version 2 store is
 * brought to it in place when a primary opens it (migrate_renormalize). */
#define META_FORMAT "format"
#define STORE_FORMAT 3
#define STORE_FORMAT_RENORMALIZE 2

/* ---- the suppression mirror ----
 * Every read path asks "is this person / identifier suppressed?" several
 * times per person returned.  The answers live in the supp column family (the
 * durable truth); an idl_u64set (u64set.h) per kind mirrors it in memory so
 * the question costs a few nanoseconds and no RocksDB read.  Writers hold the
 * store's writer mutex. */

/* An identifier key folded to the 64 bits the mirror holds. */
static uint64_t hkey_u64(const uint8_t *b)
{
    return idl_be64_get(b) ^ idl_be64_get(b + 8);
}

struct idl_store {
    rocksdb_t *db;
    rocksdb_options_t *dbopts;
    rocksdb_options_t *cfopts[IDL_CF_COUNT];
    rocksdb_column_family_handle_t *cf[IDL_CF_COUNT];
    rocksdb_cache_t *cache;
    rocksdb_cache_t *row_cache;
    rocksdb_env_t *env; /* NULL: RocksDB's default, untouched */
    rocksdb_readoptions_t *ropts;
    rocksdb_writeoptions_t *wopts;
    rocksdb_writeoptions_t *wopts_sync;
    pthread_mutex_t wlock;
    bool secondary;
    bool bulk;
    _Atomic uint64_t persons_total, persons_suppressed, children_purged;
    idl_u64set supp_persons, supp_keys; /* in-memory mirror of the supp column family */
    atomic_bool erase_pending;          /* a purge's physical erasure failed (erase_purged) */
    bool renormalize;                   /* a layout 2 store: migrate_renormalize at open */
    char *path;
    uint64_t min_free;           /* the free-space floor, bytes (0: none) */
    _Atomic bool write_failed;   /* a write failed: RocksDB must resume first */
    _Atomic bool below_floor;    /* the last check found too little space */
    pthread_mutex_t resume_lock; /* one resume attempt at a time */
    uint64_t last_resume_us;     /* guarded by resume_lock */
    unsigned resume_failures;    /* guarded by resume_lock */
};

static int erase_purged(idl_store *s, const uint64_t *pids, size_t n);

/* Write admission (below, with the writes). */
static int write_admit(idl_store *s);
static int note_write_failure(idl_store *s, char *rerr);

struct idl_store_batch {
    idl_store *s;
    rocksdb_writebatch_t *wb;
};

/* RocksDB's error text becomes our status here, once: a checksum mismatch
 * or a malformed block is DATA_LOSS, anything else (I/O errors, a full disk,
 * a store stopped by a background error) is UNAVAILABLE.  Frees rerr. */
static int rocks_status(char *rerr)
{
    if (!rerr) return IDL_OK;
    int rc = strncmp(rerr, "Corruption", 10) == 0 ? IDL_DATA_LOSS : IDL_UNAVAILABLE;
    free(rerr);
    return rc;
}

struct idl_store_iter {
    rocksdb_iterator_t *it;
    rocksdb_readoptions_t *ro;
    char *hi;
};

/* The iterator's error, as a status, with RocksDB's text in err (when
 * given) for the one line a caller prints. */
static int iter_error(idl_store_iter *it, char err[IDL_ERR_MAX])
{
    char *rerr = NULL;
    rocksdb_iter_get_error(it->it, &rerr);
    if (rerr && err) snprintf(err, IDL_ERR_MAX, "%s", rerr);
    return rocks_status(rerr);
}

/* ---- the index's merge operator ----
 * An idx value is the ascending list of big-endian person ids filed under one
 * identifier, so a lookup is one point read rather than a prefix scan (an
 * iterator over every level cost twice a Get).  Writers never read-modify-
 * write a list: they merge operands, each a run of 9-byte ops ('+' or '-',
 * then the pid), which RocksDB folds into the list at read or compaction
 * time.  The last op on a pid decides whether it is in the list. */

#define IDX_OP_LEN 9

typedef struct {
    uint64_t pid;
    uint32_t seq;
    bool add;
} idx_op;

static int cmp_idx_op(const void *a, const void *b)
{
    const idx_op *x = a, *y = b;
    if (x->pid != y->pid) return x->pid < y->pid ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static char *idx_full_merge(void *state, const char *key, size_t key_length, const char *existing,
                            size_t existing_length, const char *const *operands,
                            const size_t *operand_lengths, int num_operands, unsigned char *success,
                            size_t *new_length)
{
    (void)state, (void)key, (void)key_length;
    *success = 0;
    size_t nops = 0;
    for (int i = 0; i < num_operands; i++)
        nops += operand_lengths[i] / IDX_OP_LEN;
    size_t nold = existing ? existing_length / 8 : 0;
    idx_op *ops = malloc((nops ? nops : 1) * sizeof(*ops));
    char *out = malloc((nold + nops) * 8 + 1);
    if (!ops || !out) goto fail;
    size_t n = 0;
    for (int i = 0; i < num_operands; i++) {
        const uint8_t *o = (const uint8_t *)operands[i];
        for (size_t j = 0; j + IDX_OP_LEN <= operand_lengths[i]; j += IDX_OP_LEN) {
            ops[n].add = o[j] == '+';
            ops[n].pid = idl_be64_get(o + j + 1);
            ops[n].seq = (uint32_t)n;
            n++;
        }
    }
    qsort(ops, n, sizeof(*ops), cmp_idx_op);
    /* Merge the sorted old list with the last op of each pid. */
    const uint8_t *old = (const uint8_t *)existing;
    size_t i = 0, j = 0, len = 0;
    while (i < nold || j < n) {
        uint64_t a = i < nold ? idl_be64_get(old + 8 * i) : UINT64_MAX;
        if (j < n && (i == nold || ops[j].pid <= a)) {
            size_t last = j;
            while (last + 1 < n && ops[last + 1].pid == ops[j].pid)
                last++;
            if (ops[last].add) {
                idl_be64_put((uint8_t *)out + len, ops[j].pid);
                len += 8;
            }
            if (i < nold && a == ops[j].pid) i++;
            j = last + 1;
        } else {
            memcpy(out + len, old + 8 * i, 8);
            len += 8;
            i++;
        }
    }
    free(ops);
    *new_length = len;
    *success = 1;
    return out;
fail:
    free(ops);
    free(out);
    return NULL;
}

/* Operands compose by concatenation: applying the joined run in order is
 * applying each in turn. */
static char *idx_partial_merge(void *state, const char *key, size_t key_length,
                               const char *const *operands, const size_t *operand_lengths,
                               int num_operands, unsigned char *success, size_t *new_length)
{
    (void)state, (void)key, (void)key_length;
    size_t total = 0;
    for (int i = 0; i < num_operands; i++)
        total += operand_lengths[i];
    char *out = malloc(total ? total : 1);
    *success = out != NULL;
    if (!out) return NULL;
    size_t len = 0;
    for (int i = 0; i < num_operands; i++) {
        memcpy(out + len, operands[i], operand_lengths[i]);
        len += operand_lengths[i];
    }
    *new_length = len;
    return out;
}

static void idx_merge_free(void *state, const char *value, size_t length)
{
    (void)state, (void)length;
    free((void *)value);
}

/* The C API calls a destructor for the (here absent) state unconditionally. */
static void idx_merge_state_free(void *state)
{
    (void)state;
}

static const char *idx_merge_name(void *state)
{
    (void)state;
    return "idlookup.pidlist.v1";
}

/* ---- open / close ---- */

/* A store written with another layout would answer every lookup with
 * nobody: refuse it, and stamp a new empty store with this layout. */
static int check_format(idl_store *s, const char *path, char err[IDL_ERR_MAX])
{
    char *v = NULL;
    size_t vl = 0;
    uint64_t have = 0;
    int g = idl_store_raw_get(s, IDL_CF_META, META_FORMAT, strlen(META_FORMAT), &v, &vl);
    if (g == IDL_OK) {
        have = vl == 8 ? idl_be64_get((const uint8_t *)v) : UINT64_MAX;
        free(v);
    } else if (g != IDL_NOT_FOUND) {
        snprintf(err, IDL_ERR_MAX, "cannot read the layout version of %s: %s", path,
                 idl_status_name(g));
        return g;
    }
    if (have == STORE_FORMAT) return IDL_OK;
    if (have == STORE_FORMAT_RENORMALIZE) {
        if (!s->secondary) {
            s->renormalize = true; /* once the suppression mirror is loaded */
            return IDL_OK;
        }
        snprintf(err, IDL_ERR_MAX,
                 "store %s has layout %d: start the daemon (or an ingest) on it once to bring it "
                 "to layout %d",
                 path, STORE_FORMAT_RENORMALIZE, STORE_FORMAT);
        return IDL_FAILED_PRECONDITION;
    }
    if (have == 0) {
        idl_store_iter *it;
        if (idl_store_iter_open(s, IDL_CF_PERSONS, NULL, 0, NULL, 0, &it)) return IDL_INTERNAL;
        bool empty = !idl_store_iter_valid(it);
        char why[IDL_ERR_MAX] = "";
        int ir = iter_error(it, why);
        idl_store_iter_close(it);
        if (ir) {
            snprintf(err, IDL_ERR_MAX, "cannot read the persons of %s: %.159s", path, why);
            return ir;
        }
        if (empty && !s->secondary) {
            uint8_t b[8];
            idl_be64_put(b, STORE_FORMAT);
            char *rerr = NULL;
            rocksdb_put_cf(s->db, s->wopts, s->cf[IDL_CF_META], META_FORMAT, strlen(META_FORMAT),
                           (const char *)b, 8, &rerr);
            if (!rerr) return IDL_OK;
            snprintf(err, IDL_ERR_MAX, "cannot write to store %s: %s", path, rerr);
            free(rerr);
            return IDL_UNAVAILABLE;
        }
        if (empty) return IDL_OK;
    }
    snprintf(err, IDL_ERR_MAX,
             "store %s has layout %llu, this build reads layout %d: ingest the data again into "
             "a new directory",
             path, have == UINT64_MAX ? 0ull : (unsigned long long)(have ? have : 1), STORE_FORMAT);
    return IDL_FAILED_PRECONDITION;
}

static rocksdb_options_t *cf_options(idl_store *s, idl_cf cf, bool bulk)
{
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_block_based_table_options_t *t = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(t, s->cache);
    /* Index and filter blocks stay in the table readers, outside the LRU
     * cache: every lookup touches them, and a cache lookup per level (with
     * its shard mutex) was a visible share of a point read.  They are small
     * (about 12 MiB of filters for a million persons). */
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(t, 0);
    /* Both are read only by whole key: a hash of each data block's keys
     * spares the binary search inside the block. */
    if (cf == IDL_CF_PERSONS || cf == IDL_CF_IDX)
        rocksdb_block_based_options_set_data_block_index_type(
            t, rocksdb_block_based_table_data_block_index_type_binary_search_and_hash);
    if (cf != IDL_CF_LOG && cf != IDL_CF_LOGP)
        rocksdb_block_based_options_set_filter_policy(t,
                                                      rocksdb_filterpolicy_create_bloom_full(10));
    if (cf == IDL_CF_IDX) {
        rocksdb_options_set_merge_operator(
            o, rocksdb_mergeoperator_create(NULL, idx_merge_state_free, idx_full_merge,
                                            idx_partial_merge, idx_merge_free, idx_merge_name));
        /* A bulk load never reads this family, so its memtable can be a
         * plain vector sorted once at flush.  Serving reads it (a vector
         * memtable sorts a copy for every read), so there it is RocksDB's
         * skip list with a bloom filter on the whole 16-byte key.  A
         * hash-skip-list memtable made reads no cheaper and every flush
         * re-sorted it entry by entry: a cluster node applying 200k
         * persons spent 21 CPU-s instead of 14 (docs/CLUSTER.md). */
        rocksdb_options_set_prefix_extractor(o, rocksdb_slicetransform_create_fixed_prefix(16));
        rocksdb_options_set_memtable_whole_key_filtering(o, 1);
        if (bulk)
            rocksdb_options_set_memtable_vector_rep(o);
        else
            rocksdb_options_set_memtable_prefix_bloom_size_ratio(o, 0.05);
    } else if (cf == IDL_CF_PERSONS) {
        /* Persons are only ever read by id: a skip list with a bloom
         * filter on the whole 8-byte key, as for idx. */
        rocksdb_options_set_prefix_extractor(o, rocksdb_slicetransform_create_fixed_prefix(8));
        rocksdb_options_set_memtable_whole_key_filtering(o, 1);
        rocksdb_options_set_memtable_prefix_bloom_size_ratio(o, 0.05);
    } else if (cf == IDL_CF_SUPP) {
        rocksdb_options_set_memtable_whole_key_filtering(o, 1);
        rocksdb_options_set_memtable_prefix_bloom_size_ratio(o, 0.05);
    }
    if ((cf == IDL_CF_LOG || cf == IDL_CF_LOGP) && !bulk)
        /* The query log is appended by one flusher and read only by batch
         * jobs, retention and the rare Disclosures request: a vector
         * memtable appends in O(1) and sorts once, when it is read. */
        rocksdb_options_set_memtable_vector_rep(o);
    rocksdb_options_set_block_based_table_factory(o, t);
    rocksdb_block_based_options_destroy(t);
    size_t wb = bulk ? (size_t)128 << 20 : (size_t)32 << 20;
    if (cf == IDL_CF_META || cf == IDL_CF_SUPP) wb = (size_t)4 << 20;
    if (cf == IDL_CF_LOG || cf == IDL_CF_LOGP) {
        /* Append-mostly and deleted by retention ranges: universal compaction
         * rewrites each byte far fewer times than levelled compaction did
         * (which took a tenth of the daemon's CPU under Batch load). */
        rocksdb_options_set_compaction_style(o, rocksdb_universal_compaction);
        wb = (size_t)64 << 20;
    }
    rocksdb_options_set_write_buffer_size(o, wb);
    /* Index keys are hashes: they do not compress, so compressing them only
     * costs CPU at every read and compaction. */
    rocksdb_options_set_compression(o, cf == IDL_CF_IDX ? rocksdb_no_compression
                                                        : rocksdb_lz4_compression);
    return o;
}

int idl_store_meta_u64(idl_store *s, const char *name, uint64_t *v)
{
    char *val = NULL;
    size_t vl = 0;
    int rc = idl_store_raw_get(s, IDL_CF_META, name, strlen(name), &val, &vl);
    if (rc == IDL_NOT_FOUND) {
        *v = 0;
        return IDL_OK;
    }
    if (rc) return rc;
    *v = vl == 8 ? idl_be64_get((const uint8_t *)val) : 0;
    free(val);
    return IDL_OK;
}

/* Returns 0, or the read error (an absent counter is zero). */
static int load_counters(idl_store *s)
{
    const char *names[3] = {CTR_PERSONS, CTR_SUPPRESSED, CTR_PURGED};
    _Atomic uint64_t *dst[3] = {&s->persons_total, &s->persons_suppressed, &s->children_purged};
    for (int i = 0; i < 3; i++) {
        uint64_t v;
        int rc = idl_store_meta_u64(s, names[i], &v);
        if (rc) return rc;
        atomic_store(dst[i], v);
    }
    return IDL_OK;
}

/* Layout 2 -> 3: every stored person whose emails or addresses normalize
 * differently under today's rules is upserted again in its new form, which
 * moves its index entries, and -- for a suppressed person -- suppresses the
 * new forms of its identifiers (idl_store_upsert does both).  Opt-outs of
 * identifiers that nobody held are stored only as hashes of their old form:
 * those keep hiding the old form and cannot be carried over (README).  A
 * crash midway leaves layout 2, and the next open runs it again; records
 * already moved do not change again (the normalizers are idempotent). */
static int migrate_renormalize(idl_store *s, char err[IDL_ERR_MAX])
{
    enum { CHUNK = 256 };
    idl_record *recs = malloc(CHUNK * sizeof(*recs));
    idl_store_iter *it = NULL;
    int rc = IDL_INTERNAL;
    size_t n = 0;
    if (!recs || idl_store_iter_open(s, IDL_CF_PERSONS, NULL, 0, NULL, 0, &it)) {
        snprintf(err, IDL_ERR_MAX, "out of memory");
        goto fail;
    }
    rc = IDL_OK;
    for (; idl_store_iter_valid(it) && rc == IDL_OK; idl_store_iter_next(it)) {
        size_t vl;
        const char *v = idl_store_iter_value(it, &vl);
        bool changed = false;
        if (idl_record_unpack(v, vl, &recs[n]) != IDL_OK) continue; /* left as it is */
        idl_record_renormalize(&recs[n], &changed);
        /* Layout 3 also drops a suppressed person's name entries
         * (unindex_names); upserting it again does that. */
        changed |= idl_store_person_suppressed(s, idl_person_id(recs[n].source_id));
        if (changed && ++n == CHUNK) {
            rc = idl_store_upsert(s, recs, n, NULL, false);
            n = 0;
        }
    }
    char *rerr = NULL;
    if (rc == IDL_OK) rocksdb_iter_get_error(it->it, &rerr);
    if (rerr) {
        snprintf(err, IDL_ERR_MAX, "cannot read the persons to bring them to layout %d: %s",
                 STORE_FORMAT, rerr);
        free(rerr);
        rc = IDL_DATA_LOSS;
        goto fail;
    }
    if (rc == IDL_OK && n) rc = idl_store_upsert(s, recs, n, NULL, false);
    if (rc == IDL_OK) {
        uint8_t b[8];
        idl_be64_put(b, STORE_FORMAT);
        rocksdb_put_cf(s->db, s->wopts_sync, s->cf[IDL_CF_META], META_FORMAT, strlen(META_FORMAT),
                       (const char *)b, 8, &rerr);
        if (rerr) {
            free(rerr);
            rc = IDL_UNAVAILABLE;
        }
    }
    if (rc != IDL_OK && !err[0])
        snprintf(err, IDL_ERR_MAX, "cannot bring the store to layout %d: the write failed",
                 STORE_FORMAT);
fail:
    idl_store_iter_close(it);
    free(recs);
    return rc;
}

/* Fills the in-memory mirror from the supp column family.  The whole family
 * must be read: an iterator that stops at a damaged block looks exactly like
 * the end of the list, and serving with part of the list would find
 * opted-out persons again.  err gets RocksDB's text on a read error. */
static int load_suppression(idl_store *s, char err[IDL_ERR_MAX])
{
    idl_store_iter *it;
    if (idl_store_iter_open(s, IDL_CF_SUPP, NULL, 0, NULL, 0, &it)) {
        snprintf(err, IDL_ERR_MAX, "out of memory");
        return IDL_INTERNAL;
    }
    int rc = IDL_OK;
    for (; idl_store_iter_valid(it) && rc == IDL_OK; idl_store_iter_next(it)) {
        size_t kl;
        const uint8_t *k = (const uint8_t *)idl_store_iter_key(it, &kl);
        if (kl == 9 && k[0] == 'p')
            rc = idl_u64set_add(&s->supp_persons, idl_be64_get(k + 1));
        else if (kl == 17 && k[0] == 'k')
            rc = idl_u64set_add(&s->supp_keys, hkey_u64(k + 1));
    }
    if (rc)
        snprintf(err, IDL_ERR_MAX, "out of memory");
    else
        rc = iter_error(it, err);
    idl_store_iter_close(it);
    return rc;
}

int idl_store_open(idl_store **out, const char *path, const idl_store_opts *opts,
                   char err[IDL_ERR_MAX])
{
    idl_store_opts def = {0};
    if (!opts) opts = &def;
    idl_store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, IDL_ERR_MAX, "out of memory");
        return IDL_INTERNAL;
    }
    pthread_mutex_init(&s->wlock, NULL);
    pthread_mutex_init(&s->resume_lock, NULL);
    int rc = IDL_INTERNAL;
    s->path = strdup(path);
    s->min_free = opts->secondary ? 0 : opts->min_free_bytes;
    if (!s->path) {
        snprintf(err, IDL_ERR_MAX, "out of memory");
        goto fail;
    }
    char *rerr = NULL;
    s->bulk = opts->bulk && !opts->secondary;
    s->cache = rocksdb_cache_create_lru((opts->cache_mb ? opts->cache_mb : 256) << 20);
    s->dbopts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(s->dbopts, 1);
    rocksdb_options_set_create_missing_column_families(s->dbopts, 1);
    rocksdb_options_increase_parallelism(s->dbopts, 2);
    rocksdb_options_set_max_background_jobs(s->dbopts, 2);
    rocksdb_options_set_info_log_level(s->dbopts, 2 /* WARN */);
    /* A damaged file found by a flush or compaction stops writes instead of
     * being compacted into the rest (the default, stated). */
    rocksdb_options_set_paranoid_checks(s->dbopts, 1);
    if (opts->info_log && strcmp(opts->info_log, "-") == 0)
        idl_rocksx_log_to_stderr(s->dbopts);
    else if (opts->info_log)
        rocksdb_options_set_db_log_dir(s->dbopts, opts->info_log);
    /* Vector memtables (the log's, a bulk load's idx) take one writer at a
     * time. */
    rocksdb_options_set_allow_concurrent_memtable_write(s->dbopts, 0);
    rocksdb_options_set_keep_log_file_num(s->dbopts, 3);
    rocksdb_options_set_max_open_files(s->dbopts, opts->secondary ? -1 : 512);
    if (opts->row_cache_mb && !opts->bulk) {
        s->row_cache = rocksdb_cache_create_lru(opts->row_cache_mb << 20);
        rocksdb_options_set_row_cache(s->dbopts, s->row_cache);
    }
    if (opts->yield_compactions && !opts->secondary) {
        /* The default env's low-priority pool is where compactions run;
         * flushes (the high pool) keep their priority, so memtables still
         * drain and writes do not stall. */
        s->env = rocksdb_create_default_env();
        rocksdb_env_lower_thread_pool_cpu_priority(s->env);
        rocksdb_options_set_env(s->dbopts, s->env);
    }
    const rocksdb_options_t *cfo[IDL_CF_COUNT];
    for (int i = 0; i < IDL_CF_COUNT; i++) {
        s->cfopts[i] = cf_options(s, (idl_cf)i, opts->bulk);
        cfo[i] = s->cfopts[i];
    }
    if (opts->secondary) {
        s->secondary = true;
        s->db = rocksdb_open_as_secondary_column_families(
            s->dbopts, path, opts->secondary, IDL_CF_COUNT, cf_names, cfo, s->cf, &rerr);
    } else {
        s->db = rocksdb_open_column_families(s->dbopts, path, IDL_CF_COUNT, cf_names, cfo, s->cf,
                                             &rerr);
    }
    if (!s->db) {
        if (rerr && (strstr(rerr, "lock") || strstr(rerr, "Resource temporarily unavailable")))
            rc = IDL_UNAVAILABLE;
        snprintf(err, IDL_ERR_MAX, "cannot open store %s: %s%s", path,
                 rerr ? rerr : "unknown error",
                 rc == IDL_UNAVAILABLE ? " (is a daemon or another ingest using it?)" : "");
        free(rerr);
        goto fail;
    }
    s->ropts = rocksdb_readoptions_create();
    /* RocksDB's default, stated: a damaged block is an error, never data. */
    rocksdb_readoptions_set_verify_checksums(s->ropts, 1);
    s->wopts = rocksdb_writeoptions_create();
    s->wopts_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wopts_sync, 1);
    if ((rc = check_format(s, path, err))) goto fail;
    rc = IDL_INTERNAL;
    if ((rc = load_counters(s))) {
        snprintf(err, IDL_ERR_MAX, "cannot read the counters of %s: %s", path, idl_status_name(rc));
        goto fail;
    }
    /* RocksDB's text is cut at 159 bytes so the path still fits the line. */
    char why[IDL_ERR_MAX] = "";
    if ((rc = load_suppression(s, why))) {
        snprintf(
            err, IDL_ERR_MAX,
            "cannot read the suppression list of %s whole, refusing to serve without it: %.159s",
            path, why);
        goto fail;
    }
    if (s->renormalize) {
        err[0] = 0;
        if ((rc = migrate_renormalize(s, err))) goto fail;
    }
    *out = s;
    return IDL_OK;
fail:
    idl_store_close(s);
    return rc;
}

void idl_store_close(idl_store *s)
{
    if (!s) return;
    if (s->db && s->bulk) {
        /* A bulk load ends with its memtables on disk, so the daemon that
         * opens the store next starts at once instead of replaying a WAL of
         * the whole load. */
        rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
        rocksdb_flushoptions_set_wait(fo, 1);
        for (int i = 0; i < IDL_CF_COUNT; i++) {
            char *rerr = NULL;
            if (s->cf[i]) rocksdb_flush_cf(s->db, fo, s->cf[i], &rerr);
            free(rerr);
        }
        rocksdb_flushoptions_destroy(fo);
        if (atomic_load(&s->erase_pending)) {
            s->bulk = false; /* erase now, over the whole family */
            erase_purged(s, NULL, 0);
        }
    }
    if (s->db) {
        for (int i = 0; i < IDL_CF_COUNT; i++)
            if (s->cf[i]) rocksdb_column_family_handle_destroy(s->cf[i]);
        rocksdb_close(s->db);
    }
    for (int i = 0; i < IDL_CF_COUNT; i++)
        if (s->cfopts[i]) rocksdb_options_destroy(s->cfopts[i]);
    if (s->dbopts) rocksdb_options_destroy(s->dbopts);
    if (s->ropts) rocksdb_readoptions_destroy(s->ropts);
    if (s->wopts) rocksdb_writeoptions_destroy(s->wopts);
    if (s->wopts_sync) rocksdb_writeoptions_destroy(s->wopts_sync);
    if (s->cache) rocksdb_cache_destroy(s->cache);
    if (s->row_cache) rocksdb_cache_destroy(s->row_cache);
    if (s->env) rocksdb_env_destroy(s->env);
    idl_u64set_free(&s->supp_persons);
    idl_u64set_free(&s->supp_keys);
    pthread_mutex_destroy(&s->wlock);
    pthread_mutex_destroy(&s->resume_lock);
    free(s->path);
    free(s);
}

int idl_store_catch_up(idl_store *s)
{
    char *rerr = NULL;
    rocksdb_try_catch_up_with_primary(s->db, &rerr);
    if (rerr) {
        free(rerr);
        return IDL_UNAVAILABLE;
    }
    /* The mirror is insert-only, like the list: reading it again adds what
     * the primary suppressed since. */
    char why[IDL_ERR_MAX];
    return load_suppression(s, why);
}

int idl_store_compact(idl_store *s)
{
    if (s->secondary) return IDL_FAILED_PRECONDITION;
    rocksdb_compactoptions_t *co = rocksdb_compactoptions_create();
    rocksdb_compactoptions_set_bottommost_level_compaction(co, 2 /* kForce */);
    for (int i = 0; i < IDL_CF_COUNT; i++)
        rocksdb_compact_range_cf_opt(s->db, s->cf[i], co, NULL, 0, NULL, 0);
    rocksdb_compactoptions_destroy(co);
    return IDL_OK;
}

/* ---- raw access ---- */

int idl_store_raw_get(idl_store *s, idl_cf cf, const void *k, size_t kl, char **val, size_t *vl)
{
    char *rerr = NULL;
    size_t n = 0;
    char *v = rocksdb_get_cf(s->db, s->ropts, s->cf[cf], k, kl, &n, &rerr);
    if (rerr) return rocks_status(rerr);
    if (!v) return IDL_NOT_FOUND;
    *val = v;
    *vl = n;
    return IDL_OK;
}

/* Whether k is stored; a read error is returned, never taken for "no". */
static int exists(idl_store *s, idl_cf cf, const void *k, size_t kl, bool *yes)
{
    char *rerr = NULL;
    rocksdb_pinnableslice_t *p = rocksdb_get_pinned_cf(s->db, s->ropts, s->cf[cf], k, kl, &rerr);
    if (rerr) return rocks_status(rerr);
    *yes = p != NULL;
    if (p) rocksdb_pinnableslice_destroy(p);
    return IDL_OK;
}

idl_store_batch *idl_store_batch_new(idl_store *s)
{
    idl_store_batch *b = malloc(sizeof(*b));
    if (b) {
        b->s = s;
        b->wb = rocksdb_writebatch_create();
    }
    return b;
}

void idl_store_batch_put(idl_store_batch *b, idl_cf cf, const void *k, size_t kl, const void *v,
                         size_t vl)
{
    rocksdb_writebatch_put_cf(b->wb, b->s->cf[cf], k, kl, v, vl);
}

void idl_store_batch_delete(idl_store_batch *b, idl_cf cf, const void *k, size_t kl)
{
    rocksdb_writebatch_delete_cf(b->wb, b->s->cf[cf], k, kl);
}

void idl_store_batch_delete_range(idl_store_batch *b, idl_cf cf, const void *lo, size_t lol,
                                  const void *hi, size_t hil)
{
    /* RocksDB rejects a reversed range at write time and then refuses every
     * later write: an empty range is simply nothing to delete. */
    size_t n = lol < hil ? lol : hil;
    int c = memcmp(lo, hi, n);
    if (c > 0 || (c == 0 && lol >= hil)) return;
    rocksdb_writebatch_delete_range_cf(b->wb, b->s->cf[cf], lo, lol, hi, hil);
}

int idl_store_batch_commit(idl_store *s, idl_store_batch *b, bool sync)
{
    int adm = write_admit(s);
    if (adm) return adm;
    char *rerr = NULL;
    rocksdb_write(s->db, sync ? s->wopts_sync : s->wopts, b->wb, &rerr);
    if (rerr) return note_write_failure(s, rerr);
    rocksdb_writebatch_clear(b->wb);
    return IDL_OK;
}

void idl_store_batch_free(idl_store_batch *b)
{
    if (!b) return;
    rocksdb_writebatch_destroy(b->wb);
    free(b);
}

int idl_store_iter_open(idl_store *s, idl_cf cf, const void *lo, size_t lol, const void *hi,
                        size_t hil, idl_store_iter **out)
{
    idl_store_iter *it = calloc(1, sizeof(*it));
    if (!it) return IDL_INTERNAL;
    it->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_verify_checksums(it->ro, 1);
    /* Full-order scans over families with a prefix extractor (idx,
     * persons) need this, or their prefix blooms skip what they scan. */
    rocksdb_readoptions_set_total_order_seek(it->ro, 1);
    if (hi) {
        it->hi = malloc(hil ? hil : 1);
        if (!it->hi) {
            rocksdb_readoptions_destroy(it->ro);
            free(it);
            return IDL_INTERNAL;
        }
        memcpy(it->hi, hi, hil);
        rocksdb_readoptions_set_iterate_upper_bound(it->ro, it->hi, hil);
    }
    it->it = rocksdb_create_iterator_cf(s->db, it->ro, s->cf[cf]);
    if (lo)
        rocksdb_iter_seek(it->it, lo, lol);
    else
        rocksdb_iter_seek_to_first(it->it);
    *out = it;
    return IDL_OK;
}

int idl_store_iter_status(idl_store_iter *it)
{
    return iter_error(it, NULL);
}

bool idl_store_iter_valid(idl_store_iter *it)
{
    return rocksdb_iter_valid(it->it);
}

void idl_store_iter_next(idl_store_iter *it)
{
    rocksdb_iter_next(it->it);
}

const char *idl_store_iter_key(idl_store_iter *it, size_t *len)
{
    return rocksdb_iter_key(it->it, len);
}

const char *idl_store_iter_value(idl_store_iter *it, size_t *len)
{
    return rocksdb_iter_value(it->it, len);
}

void idl_store_iter_close(idl_store_iter *it)
{
    if (!it) return;
    rocksdb_iter_destroy(it->it);
    rocksdb_readoptions_destroy(it->ro);
    free(it->hi);
    free(it);
}

/* ---- reads ---- */

/* The pid list filed under k: *p is NULL when nothing is (the caller
 * destroys a non-NULL *p after reading *v, *total entries). */
static int pidlist_get(idl_store *s, const idl_hkey *k, rocksdb_pinnableslice_t **p,
                       const uint8_t **v, size_t *total)
{
    char *rerr = NULL;
    *p = rocksdb_get_pinned_cf(s->db, s->ropts, s->cf[IDL_CF_IDX], (const char *)k->b, sizeof k->b,
                               &rerr);
    if (rerr) {
        free(rerr);
        return IDL_UNAVAILABLE;
    }
    size_t vl = 0;
    *v = *p ? (const uint8_t *)rocksdb_pinnableslice_value(*p, &vl) : NULL;
    *total = vl / 8;
    return IDL_OK;
}

int idl_store_probe(idl_store *s, const idl_hkey *k, uint64_t *pids, size_t max, size_t *n,
                    bool *more)
{
    rocksdb_pinnableslice_t *p;
    const uint8_t *v;
    size_t total, count = 0;
    if (pidlist_get(s, k, &p, &v, &total)) return IDL_UNAVAILABLE;
    for (; count < total && count < max; count++)
        pids[count] = idl_be64_get(v + 8 * count);
    if (p) rocksdb_pinnableslice_destroy(p);
    *n = count;
    if (more) *more = total > max;
    return IDL_OK;
}

int idl_store_probe_all(idl_store *s, const idl_hkey *k, uint64_t **pids, size_t *n)
{
    rocksdb_pinnableslice_t *p;
    const uint8_t *v;
    size_t total;
    if (pidlist_get(s, k, &p, &v, &total)) return IDL_UNAVAILABLE;
    uint64_t *out = malloc((total ? total : 1) * sizeof(*out));
    if (!out) {
        if (p) rocksdb_pinnableslice_destroy(p);
        return IDL_INTERNAL;
    }
    for (size_t i = 0; i < total; i++)
        out[i] = idl_be64_get(v + 8 * i);
    if (p) rocksdb_pinnableslice_destroy(p);
    *pids = out;
    *n = total;
    return IDL_OK;
}

int idl_store_probe_absent(idl_store *s, const idl_hkey *k)
{
    /* The complement of a filed key is filed under nothing (a collision is
     * a 128-bit accident), so this read walks exactly the path of a key
     * that was never stored: memtable, bloom filters, no data block. */
    idl_hkey decoy;
    for (size_t i = 0; i < sizeof decoy.b; i++)
        decoy.b[i] = (uint8_t)~k->b[i];
    uint64_t pid;
    size_t n = 0;
    return idl_store_probe(s, &decoy, &pid, 1, &n, NULL);
}

int idl_store_get(idl_store *s, uint64_t pid, idl_record *r)
{
    uint8_t k[8];
    idl_be64_put(k, pid);
    char *rerr = NULL;
    rocksdb_pinnableslice_t *p =
        rocksdb_get_pinned_cf(s->db, s->ropts, s->cf[IDL_CF_PERSONS], (const char *)k, 8, &rerr);
    if (rerr) {
        free(rerr);
        return IDL_UNAVAILABLE;
    }
    if (!p) return IDL_NOT_FOUND;
    size_t vl;
    const char *v = rocksdb_pinnableslice_value(p, &vl);
    int rc = idl_record_unpack(v, vl, r);
    rocksdb_pinnableslice_destroy(p);
    return rc;
}

static void supp_pkey(uint8_t k[9], uint64_t pid)
{
    k[0] = 'p';
    idl_be64_put(k + 1, pid);
}

static void supp_kkey(uint8_t k[17], const idl_hkey *h)
{
    k[0] = 'k';
    memcpy(k + 1, h->b, 16);
}

bool idl_store_key_suppressed(idl_store *s, const idl_hkey *h)
{
    return idl_u64set_has(&s->supp_keys, hkey_u64(h->b));
}

bool idl_store_person_suppressed(idl_store *s, uint64_t pid)
{
    return idl_u64set_has(&s->supp_persons, pid);
}

/* ---- write admission ----
 * RocksDB on a full disk fails a WAL write and then refuses every write
 * until resumed; on Debian it may also abort on a later append to a file
 * that failed once.  So writes are refused before the disk is full (the
 * floor), and after any failed write RocksDB is asked to resume. */

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static bool space_ok(idl_store *s)
{
    if (!s->min_free) return true;
    struct statvfs v;
    bool ok = statvfs(s->path, &v) == 0 && (uint64_t)v.f_bavail * v.f_frsize >= s->min_free;
    bool was_below = atomic_exchange(&s->below_floor, !ok);
    /* One line per change, not one per refused write. */
    if (ok == was_below)
        fprintf(stderr, "idlookup: store %s: %s\n", s->path,
                ok ? "free space is back above the floor: writes are taken again"
                   : "free space is below the floor: writes are refused");
    return ok;
}

/* After a failed write: asks RocksDB to resume, at most once a second. */
static int try_resume(idl_store *s)
{
    int rc = IDL_UNAVAILABLE;
    pthread_mutex_lock(&s->resume_lock);
    if (!atomic_load(&s->write_failed)) {
        rc = IDL_OK; /* another thread resumed it */
    } else if (mono_us() - s->last_resume_us >= 1000000u) {
        s->last_resume_us = mono_us();
        char why[IDL_ERR_MAX] = "";
        rc = idl_rocksx_resume(s->db, why);
        if (rc == IDL_OK) {
            atomic_store(&s->write_failed, false);
            s->resume_failures = 0;
            fprintf(stderr, "idlookup: store %s: writes resumed\n", s->path);
        } else if (s->resume_failures++ % 60 == 0) {
            fprintf(stderr, "idlookup: store %s: cannot resume writes yet: %s\n", s->path, why);
        }
    }
    pthread_mutex_unlock(&s->resume_lock);
    return rc;
}

/* 0 when a write may go to RocksDB now, else IDL_UNAVAILABLE. */
static int write_admit(idl_store *s)
{
    if (s->secondary) return IDL_FAILED_PRECONDITION;
    if (!space_ok(s)) return IDL_UNAVAILABLE;
    return atomic_load(&s->write_failed) ? try_resume(s) : IDL_OK;
}

/* A failed write: RocksDB now refuses writes until resumed. */
static int note_write_failure(idl_store *s, char *rerr)
{
    if (!atomic_exchange(&s->write_failed, true))
        fprintf(stderr,
                "idlookup: store %s: a write failed, writes are refused until it resumes: %s\n",
                s->path, rerr);
    free(rerr);
    return IDL_UNAVAILABLE;
}

bool idl_store_writable(idl_store *s)
{
    return write_admit(s) == IDL_OK;
}

/* ---- sorted batches ----
 * Memtable inserts dominate bulk loads: a skip-list insert of a random key
 * walks every level from the top.  Writing a batch's keys in sorted order
 * lets RocksDB reuse the previous insert's position (its "splice"), which
 * roughly halves the cost.  Operations on the same key keep their order. */

typedef struct {
    uint8_t cf, kind, klen; /* kind: SOP_PUT, SOP_DEL or SOP_MERGE */
    uint8_t key[24];
    uint32_t seq;
    uint32_t vlen;
    size_t voff;
} sop;

enum { SOP_PUT, SOP_DEL, SOP_MERGE };

typedef struct {
    sop *ops;
    size_t n, cap;
    idl_buf vals;
    bool failed;
} sbatch;

static void sb_add(sbatch *b, idl_cf cf, int kind, const void *k, size_t kl, const void *v,
                   size_t vl)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        sop *ops = realloc(b->ops, cap * sizeof(*ops));
        if (!ops) {
            b->failed = true;
            return;
        }
        b->ops = ops;
        b->cap = cap;
    }
    sop *o = &b->ops[b->n];
    o->cf = (uint8_t)cf;
    o->kind = (uint8_t)kind;
    o->klen = (uint8_t)(kl > 24 ? 24 : kl);
    memcpy(o->key, k, o->klen);
    o->seq = (uint32_t)b->n;
    o->voff = b->vals.len;
    o->vlen = (uint32_t)vl;
    if (vl && idl_buf_write(&b->vals, v, vl)) {
        b->failed = true;
        return;
    }
    b->n++;
}

static void sb_put(sbatch *b, idl_cf cf, const void *k, size_t kl, const void *v, size_t vl)
{
    sb_add(b, cf, SOP_PUT, k, kl, v, vl);
}

static void sb_del(sbatch *b, idl_cf cf, const void *k, size_t kl)
{
    sb_add(b, cf, SOP_DEL, k, kl, NULL, 0);
}

/* Files pid under (add) or removes it from (!add) the index key k. */
static void sb_index(sbatch *b, const idl_hkey *k, uint64_t pid, bool add)
{
    uint8_t op[IDX_OP_LEN];
    op[0] = add ? '+' : '-';
    idl_be64_put(op + 1, pid);
    sb_add(b, IDL_CF_IDX, SOP_MERGE, k->b, 16, op, IDX_OP_LEN);
}

static int cmp_sop(const void *a, const void *b)
{
    const sop *x = a, *y = b;
    if (x->cf != y->cf) return x->cf < y->cf ? -1 : 1;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->key, y->key, n);
    if (c) return c;
    if (x->klen != y->klen) return x->klen < y->klen ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int sb_commit(idl_store *s, sbatch *b, bool sync)
{
    if (b->failed || b->vals.failed) return IDL_INTERNAL;
    int adm = write_admit(s);
    if (adm) {
        b->n = 0;
        idl_buf_reset(&b->vals);
        return adm;
    }
    qsort(b->ops, b->n, sizeof(*b->ops), cmp_sop);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    for (size_t i = 0; i < b->n; i++) {
        const sop *o = &b->ops[i];
        const char *v = b->vals.data ? b->vals.data + o->voff : "";
        if (o->kind == SOP_DEL)
            rocksdb_writebatch_delete_cf(wb, s->cf[o->cf], (const char *)o->key, o->klen);
        else if (o->kind == SOP_MERGE)
            rocksdb_writebatch_merge_cf(wb, s->cf[o->cf], (const char *)o->key, o->klen, v,
                                        o->vlen);
        else
            rocksdb_writebatch_put_cf(wb, s->cf[o->cf], (const char *)o->key, o->klen, v, o->vlen);
    }
    char *rerr = NULL;
    rocksdb_write(s->db, sync ? s->wopts_sync : s->wopts, wb, &rerr);
    rocksdb_writebatch_destroy(wb);
    b->n = 0;
    idl_buf_reset(&b->vals);
    if (rerr) return note_write_failure(s, rerr);
    return IDL_OK;
}

static void sb_free(sbatch *b)
{
    free(b->ops);
    idl_buf_free(&b->vals);
}

/* ---- writes ---- */

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void put_counter(idl_store_batch *b, const char *name, uint64_t v)
{
    uint8_t buf[8];
    idl_be64_put(buf, v);
    idl_store_batch_put(b, IDL_CF_META, name, strlen(name), buf, 8);
}

static void sb_counter(sbatch *b, const char *name, uint64_t v)
{
    uint8_t buf[8];
    idl_be64_put(buf, v);
    sb_put(b, IDL_CF_META, name, strlen(name), buf, 8);
}

static void put_counters(idl_store *s, sbatch *b, uint64_t total, uint64_t supp, uint64_t purged)
{
    sb_counter(b, CTR_PERSONS, total);
    sb_counter(b, CTR_SUPPRESSED, supp);
    sb_counter(b, CTR_PURGED, purged);
}

/* names: the person is filed under its name keys too (it is not
 * suppressed); a '-' for an entry that is not there would leave a merge
 * operand that every later read of that key must fold. */
static void index_delete(sbatch *b, const idl_record *r, uint64_t pid, bool names)
{
    idl_hkey keys[IDL_RECORD_KEYS_MAX];
    size_t n = idl_record_keys(r, keys, IDL_RECORD_KEYS_MAX, names);
    for (size_t i = 0; i < n; i++)
        sb_index(b, &keys[i], pid, false);
}

static void person_delete(idl_store *s, sbatch *b, const idl_record *r, uint64_t pid)
{
    uint8_t k[8];
    idl_be64_put(k, pid);
    index_delete(b, r, pid, !idl_store_person_suppressed(s, pid));
    sb_del(b, IDL_CF_PERSONS, k, 8);
}

/* True when any identifier of r is suppressed. */
static bool carries_suppressed(idl_store *s, const idl_record *r)
{
    idl_hkey keys[IDL_RECORD_KEYS_MAX];
    size_t n = idl_record_keys(r, keys, IDL_RECORD_KEYS_MAX, false);
    for (size_t i = 0; i < n; i++)
        if (idl_store_key_suppressed(s, &keys[i])) return true;
    return false;
}

/* A suppressed person's identifiers are suppressed too (DATA.md §4: every
 * identifier the person held), also those that reach them later: files each
 * one not suppressed yet into b, and returns how many, their keys into out
 * (IDL_RECORD_KEYS_MAX room) for the mirror once b is committed. */
static size_t sb_suppress_keys(idl_store *s, sbatch *b, const idl_record *r, idl_hkey *out)
{
    idl_hkey keys[IDL_RECORD_KEYS_MAX];
    size_t n = idl_record_keys(r, keys, IDL_RECORD_KEYS_MAX, false), nnew = 0;
    uint8_t tv[8];
    idl_be64_put(tv, now_us());
    for (size_t i = 0; i < n; i++) {
        if (idl_store_key_suppressed(s, &keys[i])) continue;
        uint8_t kk[17];
        supp_kkey(kk, &keys[i]);
        sb_put(b, IDL_CF_SUPP, kk, 17, tv, 8);
        out[nnew++] = keys[i];
    }
    return nnew;
}

/* After a committed batch, its new person suppressions join the mirror. */
static void mirror_new_suppressions(idl_store *s, int rc, uint64_t *pids, size_t *n)
{
    if (rc == IDL_OK)
        for (size_t i = 0; i < *n; i++)
            idl_u64set_add(&s->supp_persons, pids[i]);
    *n = 0;
}

/* Stages the caller's stamp (cluster mode: the applied stream sequence) into
 * the batch that commits a write's last part, so both land or neither. */
static void sb_stamp(sbatch *b, const idl_store_stamp *stamp)
{
    if (stamp) sb_put(b, IDL_CF_META, stamp->key, stamp->klen, stamp->val, stamp->vlen);
}

int idl_store_upsert(idl_store *s, const idl_record *recs, size_t n, idl_upsert_result *res,
                     bool sync)
{
    return idl_store_upsert_stamped(s, recs, n, res, sync, NULL);
}

int idl_store_upsert_stamped(idl_store *s, const idl_record *recs, size_t n, idl_upsert_result *res,
                             bool sync, const idl_store_stamp *stamp)
{
    int rc = IDL_OK;
    sbatch sbv = {0}, *b = &sbv;
    idl_record *old = malloc(sizeof(*old));
    uint64_t *batch_pids = malloc(n * sizeof(uint64_t) + 1);
    uint64_t *newsupp = malloc(n * sizeof(uint64_t) + 1);
    uint64_t *erase = malloc(n * sizeof(uint64_t) + 1);
    size_t nerase = 0;
    size_t nns = 0, nsk = 0;
    idl_hkey suppkeys[IDL_RECORD_KEYS_MAX];
    idl_buf buf = {0};
    if (!old || !batch_pids || !newsupp || !erase) {
        rc = IDL_INTERNAL;
        goto out;
    }
    int y, m, d;
    idl_today(&y, &m, &d);
    pthread_mutex_lock(&s->wlock);
    uint64_t total = atomic_load(&s->persons_total), supp = atomic_load(&s->persons_suppressed),
             purged = atomic_load(&s->children_purged);
    size_t nb = 0;
    for (size_t i = 0; i < n && rc == IDL_OK; i++) {
        const idl_record *r = &recs[i];
        uint64_t pid = idl_person_id(r->source_id);
        /* A second record for the same person in this batch must see the
         * first one's writes: commit what we have before reading. */
        for (size_t j = 0; j < nb; j++) {
            if (batch_pids[j] == pid) {
                put_counters(s, b, total, supp, purged);
                rc = sb_commit(s, b, sync);
                mirror_new_suppressions(s, rc, newsupp, &nns);
                nb = 0;
                break;
            }
        }
        if (rc) break;
        int g = idl_store_get(s, pid, old);
        if (g != IDL_OK && g != IDL_NOT_FOUND && g != IDL_DATA_LOSS) {
            rc = g;
            break;
        }
        bool had = g == IDL_OK;
        bool was_supp = idl_store_person_suppressed(s, pid);
        idl_upsert_result out = {0};
        uint8_t pk[8];
        idl_be64_put(pk, pid);
        if (idl_record_is_child(r, y, m, d)) {
            out.outcome = IDL_UP_CHILD;
            if (had) {
                person_delete(s, b, old, pid);
                total--;
                if (was_supp) supp--;
                purged++;
                out.purged = true;
                erase[nerase++] = pid;
            } else if (g == IDL_DATA_LOSS) {
                sb_del(b, IDL_CF_PERSONS, pk, 8);
            }
        } else {
            if (had) index_delete(b, old, pid, !was_supp);
            bool now_supp = was_supp || carries_suppressed(s, r);
            if (now_supp && !was_supp) {
                uint8_t sk[9], tv[8];
                supp_pkey(sk, pid);
                idl_be64_put(tv, now_us());
                sb_put(b, IDL_CF_SUPP, sk, 9, tv, 8);
                newsupp[nns++] = pid;
            }
            idl_buf_reset(&buf);
            msgpack_packer mp;
            idl_buf_packer(&buf, &mp);
            idl_record_pack(&mp, r);
            if (buf.failed) {
                rc = IDL_INTERNAL;
                break;
            }
            sb_put(b, IDL_CF_PERSONS, pk, 8, buf.data, buf.len);
            /* A suppressed person keeps its identifier entries (OptOut and
             * Disclosures by identifier still reach it) but has no name
             * entries, so a name search costs what it costs for a stranger
             * (API.md §5; see unindex_names). */
            idl_hkey keys[IDL_RECORD_KEYS_MAX];
            size_t nk = idl_record_keys(r, keys, IDL_RECORD_KEYS_MAX, !now_supp);
            for (size_t k = 0; k < nk; k++)
                sb_index(b, &keys[k], pid, true);
            if (now_supp) nsk = sb_suppress_keys(s, b, r, suppkeys);
            out.outcome = had ? IDL_UP_UPDATED : IDL_UP_STORED;
            out.suppressed = now_supp;
            if (!had) total++;
            if (now_supp && (!had || !was_supp)) supp++;
        }
        if (res) res[i] = out;
        batch_pids[nb++] = pid;
        if (nsk) {
            /* New suppressed identifiers are committed with the record, and
             * mirrored at once, so the next record of this call that carries
             * one of them is hidden as if it came in a later call. */
            put_counters(s, b, total, supp, purged);
            rc = sb_commit(s, b, sync);
            mirror_new_suppressions(s, rc, newsupp, &nns);
            if (rc == IDL_OK)
                for (size_t k = 0; k < nsk; k++)
                    idl_u64set_add(&s->supp_keys, hkey_u64(suppkeys[k].b));
            nsk = 0;
            nb = 0;
        }
    }
    if (rc == IDL_OK) {
        put_counters(s, b, total, supp, purged);
        sb_stamp(b, stamp);
        rc = sb_commit(s, b, sync);
        mirror_new_suppressions(s, rc, newsupp, &nns);
    }
    if (rc == IDL_OK) {
        atomic_store(&s->persons_total, total);
        atomic_store(&s->persons_suppressed, supp);
        atomic_store(&s->children_purged, purged);
    } else {
        /* Batches before the failed one may have landed: the counters are
         * re-read so memory agrees with what is stored. */
        load_counters(s);
    }
    pthread_mutex_unlock(&s->wlock);
    /* The upsert itself is done and acknowledged either way; a failed
     * erasure is retried, wider, at the next purge (erase_purged). */
    if (nerase) erase_purged(s, erase, nerase);
out:
    idl_buf_free(&buf);
    free(erase);
    free(batch_pids);
    free(newsupp);
    free(old);
    sb_free(b);
    return rc;
}

/* A purged child's bytes must leave the disk, not only the live view
 * (DATA.md §2: deleted, everything).  A delete is a tombstone: the record
 * stays in the WAL until every column family that shares the WAL has been
 * flushed, and in older SST files until a compaction rewrites them.  So:
 * flush every family (the WAL holding the record becomes obsolete),
 * compact the purged keys' range down to the last level (the SSTs holding
 * it are rewritten without it), and purge obsolete files now rather than
 * at RocksDB's next background pass.  Purges are rare; this costs one
 * flush and the rewrite of the files that overlap the purged ids.  When it
 * fails (a full disk), the whole persons family is compacted at the next
 * purge that succeeds. */
static int erase_purged(idl_store *s, const uint64_t *pids, size_t n)
{
    if (n == 0 && !atomic_load(&s->erase_pending)) return IDL_OK;
    if (s->bulk) {
        /* A bulk load (ingest) erases once, at close, over the whole
         * family: per-call flushes would multiply its cost. */
        atomic_store(&s->erase_pending, true);
        return IDL_OK;
    }
    int rc = IDL_OK;
    char *rerr = NULL;
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    for (int i = 0; i < IDL_CF_COUNT && rc == IDL_OK; i++) {
        rocksdb_flush_cf(s->db, fo, s->cf[i], &rerr);
        if (rerr) rc = IDL_UNAVAILABLE;
    }
    rocksdb_flushoptions_destroy(fo);
    rocksdb_compactoptions_t *co = rocksdb_compactoptions_create();
    rocksdb_compactoptions_set_bottommost_level_compaction(co, 2 /* kForce */);
    if (rc == IDL_OK && atomic_exchange(&s->erase_pending, false)) {
        rocksdb_compact_range_cf_opt(s->db, s->cf[IDL_CF_PERSONS], co, NULL, 0, NULL, 0);
    } else {
        for (size_t i = 0; i < n && rc == IDL_OK; i++) {
            uint8_t lo[8], hi[9];
            idl_be64_put(lo, pids[i]);
            idl_be64_put(hi, pids[i]);
            hi[8] = 0; /* the smallest key after pids[i] */
            rocksdb_compact_range_cf_opt(s->db, s->cf[IDL_CF_PERSONS], co, (const char *)lo, 8,
                                         (const char *)hi, 9);
        }
    }
    rocksdb_compactoptions_destroy(co);
    if (rc == IDL_OK) {
        /* Re-enabling deletions with force purges obsolete WAL and SST
         * files before it returns. */
        rocksdb_disable_file_deletions(s->db, &rerr);
        if (!rerr) rocksdb_enable_file_deletions(s->db, 1, &rerr);
        if (rerr) rc = IDL_UNAVAILABLE;
    }
    free(rerr);
    if (rc != IDL_OK) atomic_store(&s->erase_pending, true);
    return rc;
}

int idl_store_purge_child(idl_store *s, uint64_t pid)
{
    return idl_store_purge_child_stamped(s, pid, NULL);
}

int idl_store_purge_child_stamped(idl_store *s, uint64_t pid, const idl_store_stamp *stamp)
{
    idl_record *r = malloc(sizeof(*r));
    sbatch sbv = {0}, *b = &sbv;
    int rc = IDL_INTERNAL;
    bool purged_now = false;
    if (!r) goto out;
    int y, m, d;
    idl_today(&y, &m, &d);
    pthread_mutex_lock(&s->wlock);
    rc = idl_store_get(s, pid, r);
    if (rc == IDL_OK && idl_record_is_child(r, y, m, d)) {
        bool was_supp = idl_store_person_suppressed(s, pid);
        uint64_t total = atomic_load(&s->persons_total) - 1;
        uint64_t supp = atomic_load(&s->persons_suppressed) - (was_supp ? 1 : 0);
        uint64_t purged = atomic_load(&s->children_purged) + 1;
        person_delete(s, b, r, pid);
        put_counters(s, b, total, supp, purged);
        sb_stamp(b, stamp);
        rc = sb_commit(s, b, false);
        if (rc == IDL_OK) {
            purged_now = true;
            atomic_store(&s->persons_total, total);
            atomic_store(&s->persons_suppressed, supp);
            atomic_store(&s->children_purged, purged);
        }
    } else if (rc == IDL_NOT_FOUND || rc == IDL_OK) {
        /* Nothing to purge (gone, or no longer a child): the stamp alone. */
        rc = IDL_OK;
        if (stamp) {
            sb_stamp(b, stamp);
            rc = sb_commit(s, b, false);
        }
    }
    pthread_mutex_unlock(&s->wlock);
    if (rc == IDL_OK && purged_now) rc = erase_purged(s, &pid, 1);
out:
    sb_free(b);
    free(r);
    return rc;
}

/* Takes a newly suppressed person out of the name entries (name, fgl, lnf,
 * dob keys).  Suppressed identifiers are probed as absent keys at lookup;
 * names are never suppressed keys, so without this a name search for an
 * opted-out person would read a filed entry where a stranger's reads none,
 * and the time it takes would tell them apart. */
static void unindex_names(idl_store *s, idl_store_batch *b, const idl_record *r, uint64_t pid)
{
    idl_hkey keys[IDL_RECORD_KEYS_MAX];
    size_t nid = idl_record_keys(r, keys, IDL_RECORD_KEYS_MAX, false);
    size_t nall = idl_record_keys(r, keys, IDL_RECORD_KEYS_MAX, true);
    uint8_t op[IDX_OP_LEN];
    op[0] = '-';
    idl_be64_put(op + 1, pid);
    for (size_t i = nid; i < nall; i++) {
        /* The sole holder's entry is deleted outright: a '-' operand would
         * leave a key that every read must find and fold to nothing, which
         * costs more than a key that is not there.  A tombstone costs no
         * more, and the bottommost compaction drops it. */
        uint64_t held[2];
        size_t n = 0;
        if (idl_store_probe(s, &keys[i], held, 2, &n, NULL) == IDL_OK && n == 1 && held[0] == pid)
            rocksdb_writebatch_delete_cf(b->wb, s->cf[IDL_CF_IDX], (const char *)keys[i].b, 16);
        else
            rocksdb_writebatch_merge_cf(b->wb, s->cf[IDL_CF_IDX], (const char *)keys[i].b, 16,
                                        (const char *)op, IDX_OP_LEN);
    }
}

static int cmp_pid(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int idl_store_suppress(idl_store *s, const uint64_t *given, size_t npids, const idl_hkey *keys,
                       size_t nkeys, uint32_t *newly)
{
    return idl_store_suppress_stamped(s, given, npids, keys, nkeys, newly, NULL);
}

int idl_store_suppress_stamped(idl_store *s, const uint64_t *given, size_t npids,
                               const idl_hkey *keys, size_t nkeys, uint32_t *newly,
                               const idl_store_stamp *stamp)
{
    idl_record *r = malloc(sizeof(*r));
    idl_store_batch *b = idl_store_batch_new(s);
    uint64_t *pids = malloc((npids ? npids : 1) * sizeof(*pids));
    idl_hkey *mirror = NULL;
    size_t nmirror = 0, mirror_cap = 0;
    int rc = IDL_INTERNAL;
    if (!r || !b || !pids) goto out;
    if (npids) memcpy(pids, given, npids * sizeof(*pids));
    qsort(pids, npids, sizeof(*pids), cmp_pid);
    uint8_t tv[8];
    idl_be64_put(tv, now_us());
    uint32_t count = 0;
    rc = IDL_OK;
    pthread_mutex_lock(&s->wlock);
    uint64_t supp = atomic_load(&s->persons_suppressed);
    for (size_t i = 0; i < nkeys; i++) {
        uint8_t k[17];
        supp_kkey(k, &keys[i]);
        idl_store_batch_put(b, IDL_CF_SUPP, k, 17, tv, 8);
    }
    for (size_t i = 0; i < npids && rc == IDL_OK; i++) {
        if (i > 0 && pids[i] == pids[i - 1]) continue; /* sorted above */
        int g = idl_store_get(s, pids[i], r);
        if (g != IDL_OK && g != IDL_NOT_FOUND) {
            rc = g;
            break;
        }
        uint8_t pk[9];
        supp_pkey(pk, pids[i]);
        bool was = idl_store_person_suppressed(s, pids[i]);
        idl_store_batch_put(b, IDL_CF_SUPP, pk, 9, tv, 8);
        if (g == IDL_OK) {
            /* Every identifier the person held goes too, so a later record
             * carrying any of them stays hidden. */
            idl_hkey pk16[IDL_RECORD_KEYS_MAX];
            size_t nk = idl_record_keys(r, pk16, IDL_RECORD_KEYS_MAX, false);
            for (size_t k = 0; k < nk; k++) {
                uint8_t kk[17];
                supp_kkey(kk, &pk16[k]);
                idl_store_batch_put(b, IDL_CF_SUPP, kk, 17, tv, 8);
                if (nmirror == mirror_cap) {
                    size_t cap = mirror_cap ? mirror_cap * 2 : 64;
                    idl_hkey *grown = realloc(mirror, cap * sizeof(*mirror));
                    if (!grown) {
                        rc = IDL_INTERNAL;
                        break;
                    }
                    mirror = grown;
                    mirror_cap = cap;
                }
                mirror[nmirror++] = pk16[k];
            }
            if (!was) {
                unindex_names(s, b, r, pids[i]);
                count++;
                supp++;
            }
        }
    }
    if (rc == IDL_OK) {
        put_counter(b, CTR_SUPPRESSED, supp);
        if (stamp)
            idl_store_batch_put(b, IDL_CF_META, stamp->key, stamp->klen, stamp->val, stamp->vlen);
        rc = idl_store_batch_commit(s, b, false);
    }
    if (rc == IDL_OK) {
        /* Mirror exactly what was committed, under the same lock, so the
         * next request on any thread sees it. */
        for (size_t i = 0; i < nkeys; i++)
            idl_u64set_add(&s->supp_keys, hkey_u64(keys[i].b));
        for (size_t i = 0; i < nmirror; i++)
            idl_u64set_add(&s->supp_keys, hkey_u64(mirror[i].b));
        for (size_t i = 0; i < npids; i++)
            idl_u64set_add(&s->supp_persons, pids[i]);
        atomic_store(&s->persons_suppressed, supp);
        *newly = count;
    }
    pthread_mutex_unlock(&s->wlock);
out:
    free(mirror);
    free(pids);
    idl_store_batch_free(b);
    free(r);
    return rc;
}

void idl_store_counts_get(idl_store *s, idl_store_counts *c)
{
    uint64_t total = atomic_load(&s->persons_total), supp = atomic_load(&s->persons_suppressed);
    c->persons = total >= supp ? total - supp : 0;
    c->suppressed = supp;
    c->children_purged = atomic_load(&s->children_purged);
}

int idl_store_mark_all_once(idl_store *s, const void *keys, size_t klen, size_t n, bool *was_set)
{
    idl_store_batch *b = idl_store_batch_new(s);
    if (!b) return IDL_INTERNAL;
    int rc = IDL_OK;
    const char *k = keys;
    pthread_mutex_lock(&s->wlock);
    bool any = false;
    for (size_t i = 0; i < n && !any && rc == IDL_OK; i++)
        rc = exists(s, IDL_CF_META, k + i * klen, klen, &any);
    if (rc) {
        /* unreadable: neither set nor refused */
    } else if (any) {
        *was_set = true;
    } else {
        uint8_t tv[8];
        idl_be64_put(tv, now_us());
        for (size_t i = 0; i < n; i++)
            idl_store_batch_put(b, IDL_CF_META, k + i * klen, klen, tv, 8);
        rc = idl_store_batch_commit(s, b, false);
        if (rc == IDL_OK) *was_set = false;
    }
    pthread_mutex_unlock(&s->wlock);
    idl_store_batch_free(b);
    return rc;
}

int idl_store_mark_once(idl_store *s, const void *key, size_t klen, bool *was_set)
{
    return idl_store_mark_all_once(s, key, klen, 1, was_set);
}

/* ---- consistency check ---- */

/* One index entry, as the check keeps it: the person and a 64-bit digest of
 * the key (16 bytes an entry). */
typedef struct {
    uint64_t pid, key;
} check_entry;

static int cmp_check_entry(const void *a, const void *b)
{
    const check_entry *x = a, *y = b;
    if (x->pid != y->pid) return x->pid < y->pid ? -1 : 1;
    return x->key < y->key ? -1 : x->key > y->key;
}

typedef struct {
    check_entry *v;
    size_t n, cap;
} check_entries;

/* idl_store_get for the check: a damaged block is DATA_LOSS (the store's
 * fault, not a passing I/O error), a record that does not decode counts as
 * absent (its own scan reports it unreadable). */
static int check_get(idl_store *s, uint64_t pid, idl_record *rec)
{
    uint8_t k[8];
    idl_be64_put(k, pid);
    char *rerr = NULL;
    rocksdb_pinnableslice_t *p =
        rocksdb_get_pinned_cf(s->db, s->ropts, s->cf[IDL_CF_PERSONS], (const char *)k, 8, &rerr);
    if (rerr) return rocks_status(rerr);
    if (!p) return IDL_NOT_FOUND;
    size_t vl;
    const char *v = rocksdb_pinnableslice_value(p, &vl);
    int rc = idl_record_unpack(v, vl, rec) == IDL_OK ? IDL_OK : IDL_NOT_FOUND;
    rocksdb_pinnableslice_destroy(p);
    return rc;
}

/* Every index entry: a sorted list of persons that exist and hold the key.
 * The entries are also collected, so that the persons' scan finds each of
 * their keys by a binary search: a point read per key would refold the merge
 * operands of a key thousands share (a date of birth) at each holder. */
static int check_index(idl_store *s, idl_store_check_report *r, idl_record *rec, check_entries *ce)
{
    idl_store_iter *it;
    if (idl_store_iter_open(s, IDL_CF_IDX, NULL, 0, NULL, 0, &it)) return IDL_INTERNAL;
    int rc = IDL_OK;
    for (; idl_store_iter_valid(it) && rc == IDL_OK; idl_store_iter_next(it)) {
        size_t kl, vl;
        const char *k = idl_store_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)idl_store_iter_value(it, &vl);
        if (kl != 16 || vl % 8) {
            r->entries++;
            r->dangling++;
            continue;
        }
        for (size_t e = 0; e < vl && rc == IDL_OK; e += 8) {
            r->entries++;
            uint64_t pid = idl_be64_get(v + e);
            if (e && idl_be64_get(v + e - 8) >= pid) r->unsorted++;
            if (ce->n == ce->cap) {
                size_t cap = ce->cap ? ce->cap * 2 : 4096;
                check_entry *nv = realloc(ce->v, cap * sizeof(*nv));
                if (!nv) {
                    rc = IDL_INTERNAL;
                    break;
                }
                ce->v = nv;
                ce->cap = cap;
            }
            ce->v[ce->n++] = (check_entry){pid, hkey_u64((const uint8_t *)k)};
            int g = check_get(s, pid, rec);
            if (g == IDL_NOT_FOUND) {
                r->dangling++;
                continue;
            }
            if (g) {
                rc = g;
                break;
            }
            idl_hkey keys[IDL_RECORD_KEYS_MAX];
            size_t nk = idl_record_keys(rec, keys, IDL_RECORD_KEYS_MAX, true);
            bool mine = false;
            for (size_t i = 0; i < nk && !mine; i++)
                mine = memcmp(keys[i].b, k, 16) == 0;
            r->foreign += !mine;
        }
    }
    if (rc == IDL_OK) rc = idl_store_iter_status(it);
    idl_store_iter_close(it);
    return rc;
}

/* Every stored person: decodable, filed under its own id, and listed under
 * each of its keys (in the sorted entries of check_index). */
static int check_persons(idl_store *s, idl_store_check_report *r, idl_record *rec,
                         const check_entries *ce)
{
    idl_store_iter *it;
    if (idl_store_iter_open(s, IDL_CF_PERSONS, NULL, 0, NULL, 0, &it)) return IDL_INTERNAL;
    for (; idl_store_iter_valid(it); idl_store_iter_next(it)) {
        size_t kl, vl;
        const char *k = idl_store_iter_key(it, &kl);
        const char *v = idl_store_iter_value(it, &vl);
        if (kl != 8 || idl_record_unpack(v, vl, rec) != IDL_OK) {
            r->unreadable++;
            continue;
        }
        uint64_t pid = idl_be64_get((const uint8_t *)k);
        r->persons++;
        r->bad_id += idl_person_id(rec->source_id) != pid;
        bool supp = idl_store_person_suppressed(s, pid);
        r->suppressed += supp;
        /* A suppressed person is filed under its identifiers only, never
         * under its name keys (unindex_names): one there counts as wrong. */
        idl_hkey keys[IDL_RECORD_KEYS_MAX];
        size_t nid = idl_record_keys(rec, keys, IDL_RECORD_KEYS_MAX, false);
        size_t nk = idl_record_keys(rec, keys, IDL_RECORD_KEYS_MAX, true);
        for (size_t i = 0; i < nk; i++) {
            check_entry want = {pid, hkey_u64(keys[i].b)};
            bool filed = bsearch(&want, ce->v, ce->n, sizeof want, cmp_check_entry) != NULL;
            r->missing += filed != (i < nid || !supp);
        }
    }
    int rc = idl_store_iter_status(it);
    idl_store_iter_close(it);
    return rc;
}

int idl_store_check(idl_store *s, idl_store_check_report *out)
{
    idl_store_check_report r;
    memset(&r, 0, sizeof r);
    check_entries ce = {0};
    idl_record *rec = malloc(sizeof(*rec));
    if (!rec) return IDL_INTERNAL;
    int rc = check_index(s, &r, rec, &ce);
    if (rc == IDL_OK) {
        if (ce.n) qsort(ce.v, ce.n, sizeof *ce.v, cmp_check_entry);
        rc = check_persons(s, &r, rec, &ce);
    }
    free(ce.v);
    free(rec);
    if (rc) return rc;
    idl_store_counts_get(s, &r.counts);
    *out = r;
    return IDL_OK;
}

bool idl_store_check_ok(const idl_store_check_report *r)
{
    return !r->unreadable && !r->bad_id && !r->missing && !r->dangling && !r->foreign &&
           !r->unsorted && r->counts.persons + r->counts.suppressed == r->persons &&
           r->counts.suppressed == r->suppressed;
}
