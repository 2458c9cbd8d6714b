/* The RocksDB record store (see store.h for the layout and the locking). */
#include "store.h"
#include "status.h"
#include "wire.h"

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#define XXH_INLINE_ALL /* streaming state on the stack, and inlined hot hashes */
#include <xxhash.h>

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
 * durable truth); this insert-only hash set mirrors it in memory so the
 * question costs a few nanoseconds and no RocksDB read.  Readers never lock:
 * a full table is replaced by a bigger copy published with one atomic store,
 * and old tables are kept until close (they sum to less than the live one).
 * Writers hold the store's writer mutex. */

typedef struct {
    size_t cap; /* power of two */
    _Atomic uint64_t slots[];
} u64table;

typedef struct {
    _Atomic(u64table *) table;
    size_t count;
    u64table **retired;
    size_t nretired;
} u64set;

static uint64_t set_mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x ? x : 1; /* 0 marks an empty slot */
}

static u64table *table_new(size_t cap)
{
    u64table *t = calloc(1, sizeof(*t) + cap * sizeof(uint64_t));
    if (t) t->cap = cap;
    return t;
}

static bool table_has(const u64table *t, uint64_t v)
{
    size_t mask = t->cap - 1;
    for (size_t i = v & mask;; i = (i + 1) & mask) {
        uint64_t x = atomic_load_explicit(&((u64table *)t)->slots[i], memory_order_acquire);
        if (x == v) return true;
        if (x == 0) return false;
    }
}

static void table_put(u64table *t, uint64_t v)
{
    size_t mask = t->cap - 1;
    for (size_t i = v & mask;; i = (i + 1) & mask) {
        uint64_t x = atomic_load_explicit(&t->slots[i], memory_order_relaxed);
        if (x == v) return;
        if (x == 0) {
            atomic_store_explicit(&t->slots[i], v, memory_order_release);
            return;
        }
    }
}

static bool u64set_has(u64set *s, uint64_t key)
{
    u64table *t = atomic_load_explicit(&s->table, memory_order_acquire);
    return t && table_has(t, set_mix(key));
}

/* Writer mutex held (or single-threaded open). */
static int u64set_add(u64set *s, uint64_t key)
{
    uint64_t v = set_mix(key);
    u64table *t = atomic_load_explicit(&s->table, memory_order_relaxed);
    if (t && table_has(t, v)) return IDL_OK;
    if (!t || (s->count + 1) * 2 > t->cap) {
        u64table *n = table_new(t ? t->cap * 2 : 1024);
        u64table **r = t ? realloc(s->retired, (s->nretired + 1) * sizeof(*r)) : s->retired;
        if (!n || (t && !r)) {
            free(n);
            if (r) s->retired = r;
            return IDL_INTERNAL;
        }
        if (t) {
            for (size_t i = 0; i < t->cap; i++) {
                uint64_t x = atomic_load_explicit(&t->slots[i], memory_order_relaxed);
                if (x) table_put(n, x);
            }
            s->retired = r;
            s->retired[s->nretired++] = t;
        }
        atomic_store_explicit(&s->table, n, memory_order_release);
        t = n;
    }
    table_put(t, v);
    s->count++;
    return IDL_OK;
}

static void u64set_free(u64set *s)
{
    free(atomic_load(&s->table));
    for (size_t i = 0; i < s->nretired; i++)
        free(s->retired[i]);
    free(s->retired);
}

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
    rocksdb_env_t *env; /* NULL: RocksDB's default, untouched */
    rocksdb_readoptions_t *ropts;
    rocksdb_writeoptions_t *wopts;
    rocksdb_writeoptions_t *wopts_sync;
    pthread_mutex_t wlock;
    bool secondary;
    bool bulk;
    _Atomic uint64_t persons_total, persons_suppressed, children_purged;
    u64set supp_persons, supp_keys; /* in-memory mirror of the supp column family */
    atomic_bool erase_pending;      /* a purge's physical erasure failed (erase_purged) */
    bool renormalize;               /* a layout 2 store: migrate_renormalize at open */
};

static int erase_purged(idl_store *s, const uint64_t *pids, size_t n);

struct idl_store_batch {
    idl_store *s;
    rocksdb_writebatch_t *wb;
};

struct idl_store_iter {
    rocksdb_iterator_t *it;
    rocksdb_readoptions_t *ro;
    char *hi;
};

void idl_be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

uint64_t idl_be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* ---- keys ---- */

static void hkey_parts(idl_hkey *k, const char *const *parts, size_t n)
{
    /* Parts are joined with ':' after the kind and '|' between values, as
     * one streamed hash so no buffer has to hold the whole key. */
    XXH3_state_t st;
    XXH3_128bits_reset(&st);
    for (size_t i = 0; i < n; i++) {
        if (i == 1)
            XXH3_128bits_update(&st, ":", 1);
        else if (i > 1)
            XXH3_128bits_update(&st, "|", 1);
        XXH3_128bits_update(&st, parts[i], strlen(parts[i]));
    }
    XXH128_hash_t h = XXH3_128bits_digest(&st);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    memcpy(k->b, c.digest, 16);
}

void idl_hkey_make(idl_hkey *k, const char *kind, const char *norm)
{
    const char *p[2] = {kind, norm};
    hkey_parts(k, p, 2);
}

void idl_hkey_addr(idl_hkey *k, const char *street, const char *zip)
{
    const char *p[3] = {"addr", street, zip};
    hkey_parts(k, p, 3);
}

void idl_hkey_addrcs(idl_hkey *k, const char *street, const char *city, const char *state)
{
    const char *p[4] = {"addrcs", street, city, state};
    hkey_parts(k, p, 4);
}

void idl_hkey_name(idl_hkey *k, const char *norm_last, const char *first_group)
{
    const char *p[3] = {"name", norm_last, first_group};
    hkey_parts(k, p, 3);
}

void idl_hkey_pair(idl_hkey *k, const char *kind, const char *a, const char *b)
{
    const char *p[3] = {kind, a, b};
    hkey_parts(k, p, 3);
}

void idl_initial(const char *s, char out[8])
{
    size_t n = 1;
    unsigned char c = (unsigned char)s[0];
    if (c >= 0xf0)
        n = 4;
    else if (c >= 0xe0)
        n = 3;
    else if (c >= 0xc0)
        n = 2;
    size_t i = 0;
    for (; i < n && s[i]; i++)
        out[i] = s[i];
    out[i] = 0;
}

uint64_t idl_person_id(const char *source_id)
{
    return XXH3_64bits(source_id, strlen(source_id));
}

void idl_person_id_format(uint64_t pid, char out[19])
{
    snprintf(out, 19, "p_%016llx", (unsigned long long)pid);
}

int idl_person_id_parse(const char *s, size_t len, uint64_t *pid)
{
    if (len != 18 || s[0] != 'p' || s[1] != '_') return IDL_INVALID_ARGUMENT;
    uint64_t v = 0;
    for (size_t i = 2; i < 18; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0) return IDL_INVALID_ARGUMENT;
        v = (v << 4) | (uint64_t)d;
    }
    *pid = v;
    return IDL_OK;
}

size_t idl_record_keys(const idl_record *r, idl_hkey *keys, size_t max, bool names)
{
    size_t n = 0;
#define ADD(expr)                                                                                  \
    do {                                                                                           \
        if (n < max) {                                                                             \
            expr;                                                                                  \
            n++;                                                                                   \
        }                                                                                          \
    } while (0)
    for (int i = 0; i < r->n_emails; i++)
        ADD(idl_hkey_make(&keys[n], "email", r->emails[i]));
    for (int i = 0; i < r->n_phones; i++)
        ADD(idl_hkey_make(&keys[n], "phone", r->phones[i].number));
    for (int i = 0; i < r->n_ips; i++)
        ADD(idl_hkey_make(&keys[n], "ip", r->ips[i]));
    for (int i = 0; i < r->n_addrs; i++) {
        const idl_address *a = &r->addrs[i];
        if (a->zip[0]) ADD(idl_hkey_addr(&keys[n], a->street, a->zip));
        if (a->city[0] && a->state[0]) ADD(idl_hkey_addrcs(&keys[n], a->street, a->city, a->state));
    }
    if (names) {
        const char *groups[16];
        size_t ng = idl_nick_groups(r->norm_first, groups, 16);
        char fi[8], li[8];
        idl_initial(r->norm_first, fi);
        idl_initial(r->norm_last, li);
        for (size_t g = 0; g < ng; g++) {
            ADD(idl_hkey_name(&keys[n], r->norm_last, groups[g]));
            /* Verify tolerates one typo in the last name: the first name
             * (or its nickname group) and the last initial find it. */
            ADD(idl_hkey_pair(&keys[n], "fgl", groups[g], li));
        }
        /* ... and one typo in the first name: the last name and the first
         * initial find it. */
        ADD(idl_hkey_pair(&keys[n], "lnf", r->norm_last, fi));
        if (r->dob_y) {
            char dob[16];
            snprintf(dob, sizeof dob, "%04d-%02d-%02d", r->dob_y, r->dob_m, r->dob_d);
            ADD(idl_hkey_pair(&keys[n], "dob", dob, ""));
        }
    }
#undef ADD
    return n;
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
static int check_format(idl_store *s, const char *path, char err[256])
{
    char *v = NULL;
    size_t vl = 0;
    uint64_t have = 0;
    if (idl_store_raw_get(s, IDL_CF_META, META_FORMAT, strlen(META_FORMAT), &v, &vl) == IDL_OK) {
        have = vl == 8 ? idl_be64_get((const uint8_t *)v) : UINT64_MAX;
        free(v);
    }
    if (have == STORE_FORMAT) return IDL_OK;
    if (have == STORE_FORMAT_RENORMALIZE) {
        if (!s->secondary) {
            s->renormalize = true; /* once the suppression mirror is loaded */
            return IDL_OK;
        }
        snprintf(err, 256,
                 "store %s has layout %d: start the daemon (or an ingest) on it once to bring it "
                 "to layout %d",
                 path, STORE_FORMAT_RENORMALIZE, STORE_FORMAT);
        return IDL_FAILED_PRECONDITION;
    }
    if (have == 0) {
        idl_store_iter *it;
        if (idl_store_iter_open(s, IDL_CF_PERSONS, NULL, 0, NULL, 0, &it)) return IDL_INTERNAL;
        bool empty = !idl_store_iter_valid(it);
        idl_store_iter_close(it);
        if (empty && !s->secondary) {
            uint8_t b[8];
            idl_be64_put(b, STORE_FORMAT);
            char *rerr = NULL;
            rocksdb_put_cf(s->db, s->wopts, s->cf[IDL_CF_META], META_FORMAT, strlen(META_FORMAT),
                           (const char *)b, 8, &rerr);
            if (!rerr) return IDL_OK;
            snprintf(err, 256, "cannot write to store %s: %s", path, rerr);
            free(rerr);
            return IDL_UNAVAILABLE;
        }
        if (empty) return IDL_OK;
    }
    snprintf(err, 256,
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
         * plain vector sorted once at flush.  Serving reads it constantly
         * (a vector memtable sorts a copy for every read), so there it is
         * hashed on the whole 16-byte key, as persons is on its 8. */
        rocksdb_options_set_prefix_extractor(o, rocksdb_slicetransform_create_fixed_prefix(16));
        rocksdb_options_set_memtable_whole_key_filtering(o, 1);
        if (bulk)
            rocksdb_options_set_memtable_vector_rep(o);
        else
            rocksdb_options_set_hash_skip_list_rep(o, 1u << 20, 4, 4);
    } else if (cf == IDL_CF_PERSONS) {
        /* Persons are only ever read by id: a hashed memtable as for idx. */
        rocksdb_options_set_prefix_extractor(o, rocksdb_slicetransform_create_fixed_prefix(8));
        rocksdb_options_set_memtable_whole_key_filtering(o, 1);
        rocksdb_options_set_hash_skip_list_rep(o, 1u << 20, 4, 4);
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

static void load_counters(idl_store *s)
{
    const char *names[3] = {CTR_PERSONS, CTR_SUPPRESSED, CTR_PURGED};
    _Atomic uint64_t *dst[3] = {&s->persons_total, &s->persons_suppressed, &s->children_purged};
    for (int i = 0; i < 3; i++) {
        char *v = NULL;
        size_t vl = 0;
        if (idl_store_raw_get(s, IDL_CF_META, names[i], strlen(names[i]), &v, &vl) == IDL_OK) {
            if (vl == 8) atomic_store(dst[i], idl_be64_get((const uint8_t *)v));
            free(v);
        }
    }
}

/* Layout 2 -> 3: every stored person whose emails or addresses normalize
 * differently under today's rules is upserted again in its new form, which
 * moves its index entries, and -- for a suppressed person -- suppresses the
 * new forms of its identifiers (idl_store_upsert does both).  Opt-outs of
 * identifiers that nobody held are stored only as hashes of their old form:
 * those keep hiding the old form and cannot be carried over (README).  A
 * crash midway leaves layout 2, and the next open runs it again; records
 * already moved do not change again (the normalizers are idempotent). */
static int migrate_renormalize(idl_store *s, char err[256])
{
    enum { CHUNK = 256 };
    idl_record *recs = malloc(CHUNK * sizeof(*recs));
    idl_store_iter *it = NULL;
    int rc = IDL_INTERNAL;
    size_t n = 0;
    if (!recs || idl_store_iter_open(s, IDL_CF_PERSONS, NULL, 0, NULL, 0, &it)) {
        snprintf(err, 256, "out of memory");
        goto fail;
    }
    rc = IDL_OK;
    for (; idl_store_iter_valid(it) && rc == IDL_OK; idl_store_iter_next(it)) {
        size_t vl;
        const char *v = idl_store_iter_value(it, &vl);
        bool changed = false;
        if (idl_record_unpack(v, vl, &recs[n]) != IDL_OK) continue; /* left as it is */
        idl_record_renormalize(&recs[n], &changed);
        if (changed && ++n == CHUNK) {
            rc = idl_store_upsert(s, recs, n, NULL, false);
            n = 0;
        }
    }
    char *rerr = NULL;
    if (rc == IDL_OK) rocksdb_iter_get_error(it->it, &rerr);
    if (rerr) {
        snprintf(err, 256, "cannot read the persons to bring them to layout %d: %s", STORE_FORMAT,
                 rerr);
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
        snprintf(err, 256, "cannot bring the store to layout %d: the write failed", STORE_FORMAT);
fail:
    idl_store_iter_close(it);
    free(recs);
    return rc;
}

/* Fills the in-memory mirror from the supp column family. */
static int load_suppression(idl_store *s)
{
    idl_store_iter *it;
    if (idl_store_iter_open(s, IDL_CF_SUPP, NULL, 0, NULL, 0, &it)) return IDL_INTERNAL;
    int rc = IDL_OK;
    for (; idl_store_iter_valid(it) && rc == IDL_OK; idl_store_iter_next(it)) {
        size_t kl;
        const uint8_t *k = (const uint8_t *)idl_store_iter_key(it, &kl);
        if (kl == 9 && k[0] == 'p')
            rc = u64set_add(&s->supp_persons, idl_be64_get(k + 1));
        else if (kl == 17 && k[0] == 'k')
            rc = u64set_add(&s->supp_keys, hkey_u64(k + 1));
    }
    idl_store_iter_close(it);
    return rc;
}

int idl_store_open(idl_store **out, const char *path, const idl_store_opts *opts, char err[256])
{
    idl_store_opts def = {0};
    if (!opts) opts = &def;
    idl_store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, 256, "out of memory");
        return IDL_INTERNAL;
    }
    pthread_mutex_init(&s->wlock, NULL);
    int rc = IDL_INTERNAL;
    char *rerr = NULL;
    s->bulk = opts->bulk && !opts->secondary;
    s->cache = rocksdb_cache_create_lru((opts->cache_mb ? opts->cache_mb : 256) << 20);
    s->dbopts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(s->dbopts, 1);
    rocksdb_options_set_create_missing_column_families(s->dbopts, 1);
    rocksdb_options_increase_parallelism(s->dbopts, 2);
    rocksdb_options_set_max_background_jobs(s->dbopts, 2);
    rocksdb_options_set_info_log_level(s->dbopts, 2 /* WARN */);
    /* Hashed memtables (idx, persons) take one writer at a time. */
    rocksdb_options_set_allow_concurrent_memtable_write(s->dbopts, 0);
    rocksdb_options_set_keep_log_file_num(s->dbopts, 3);
    rocksdb_options_set_max_open_files(s->dbopts, opts->secondary ? -1 : 512);
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
        snprintf(err, 256, "cannot open store %s: %s%s", path, rerr ? rerr : "unknown error",
                 rc == IDL_UNAVAILABLE ? " (is a daemon or another ingest using it?)" : "");
        free(rerr);
        goto fail;
    }
    s->ropts = rocksdb_readoptions_create();
    s->wopts = rocksdb_writeoptions_create();
    s->wopts_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wopts_sync, 1);
    if ((rc = check_format(s, path, err))) goto fail;
    rc = IDL_INTERNAL;
    load_counters(s);
    if (load_suppression(s)) {
        snprintf(err, 256, "cannot read the suppression list of %s", path);
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
    if (s->env) rocksdb_env_destroy(s->env);
    u64set_free(&s->supp_persons);
    u64set_free(&s->supp_keys);
    pthread_mutex_destroy(&s->wlock);
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
    return load_suppression(s) ? IDL_INTERNAL : IDL_OK;
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
    if (rerr) {
        free(rerr);
        return IDL_UNAVAILABLE;
    }
    if (!v) return IDL_NOT_FOUND;
    *val = v;
    *vl = n;
    return IDL_OK;
}

static bool exists(idl_store *s, idl_cf cf, const void *k, size_t kl)
{
    char *rerr = NULL;
    rocksdb_pinnableslice_t *p = rocksdb_get_pinned_cf(s->db, s->ropts, s->cf[cf], k, kl, &rerr);
    free(rerr);
    if (!p) return false;
    rocksdb_pinnableslice_destroy(p);
    return true;
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
    char *rerr = NULL;
    rocksdb_write(s->db, sync ? s->wopts_sync : s->wopts, b->wb, &rerr);
    if (rerr) {
        free(rerr);
        return IDL_UNAVAILABLE;
    }
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
    /* Full-order scans over families whose memtables are hashed on a prefix
     * (idx, persons) need this, or they miss unflushed entries. */
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

int idl_store_probe(idl_store *s, const idl_hkey *k, uint64_t *pids, size_t max, size_t *n,
                    bool *more)
{
    char *rerr = NULL;
    rocksdb_pinnableslice_t *p = rocksdb_get_pinned_cf(s->db, s->ropts, s->cf[IDL_CF_IDX],
                                                       (const char *)k->b, sizeof k->b, &rerr);
    if (rerr) {
        free(rerr);
        return IDL_UNAVAILABLE;
    }
    size_t count = 0, vl = 0;
    const uint8_t *v = p ? (const uint8_t *)rocksdb_pinnableslice_value(p, &vl) : NULL;
    size_t total = vl / 8;
    for (; count < total && count < max; count++)
        pids[count] = idl_be64_get(v + 8 * count);
    if (p) rocksdb_pinnableslice_destroy(p);
    *n = count;
    if (more) *more = total > max;
    return IDL_OK;
}

int idl_store_probe_all(idl_store *s, const idl_hkey *k, uint64_t **pids, size_t *n)
{
    char *rerr = NULL;
    rocksdb_pinnableslice_t *p = rocksdb_get_pinned_cf(s->db, s->ropts, s->cf[IDL_CF_IDX],
                                                       (const char *)k->b, sizeof k->b, &rerr);
    if (rerr) {
        free(rerr);
        return IDL_UNAVAILABLE;
    }
    size_t vl = 0;
    const uint8_t *v = p ? (const uint8_t *)rocksdb_pinnableslice_value(p, &vl) : NULL;
    size_t total = vl / 8;
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
    return u64set_has(&s->supp_keys, hkey_u64(h->b));
}

bool idl_store_person_suppressed(idl_store *s, uint64_t pid)
{
    return u64set_has(&s->supp_persons, pid);
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
    if (rerr) {
        free(rerr);
        return IDL_UNAVAILABLE;
    }
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

static void index_delete(sbatch *b, const idl_record *r, uint64_t pid)
{
    idl_hkey keys[IDL_RECORD_KEYS_MAX];
    size_t n = idl_record_keys(r, keys, IDL_RECORD_KEYS_MAX, true);
    for (size_t i = 0; i < n; i++)
        sb_index(b, &keys[i], pid, false);
}

static void person_delete(sbatch *b, const idl_record *r, uint64_t pid)
{
    uint8_t k[8];
    idl_be64_put(k, pid);
    index_delete(b, r, pid);
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
            u64set_add(&s->supp_persons, pids[i]);
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
                person_delete(b, old, pid);
                total--;
                if (was_supp) supp--;
                purged++;
                out.purged = true;
                erase[nerase++] = pid;
            } else if (g == IDL_DATA_LOSS) {
                sb_del(b, IDL_CF_PERSONS, pk, 8);
            }
        } else {
            if (had) index_delete(b, old, pid);
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
            idl_hkey keys[IDL_RECORD_KEYS_MAX];
            size_t nk = idl_record_keys(r, keys, IDL_RECORD_KEYS_MAX, true);
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
                    u64set_add(&s->supp_keys, hkey_u64(suppkeys[k].b));
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
        person_delete(b, r, pid);
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
            u64set_add(&s->supp_keys, hkey_u64(keys[i].b));
        for (size_t i = 0; i < nmirror; i++)
            u64set_add(&s->supp_keys, hkey_u64(mirror[i].b));
        for (size_t i = 0; i < npids; i++)
            u64set_add(&s->supp_persons, pids[i]);
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
    for (size_t i = 0; i < n && !any; i++)
        any = exists(s, IDL_CF_META, k + i * klen, klen);
    if (any) {
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
