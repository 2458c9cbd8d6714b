/* The record store: RocksDB (C API) with one column family per concern.
 *
 *   persons  pid(8, big-endian)            -> record (record.h format)
 *   idx      hkey(16)                      -> pid(8)...   identifier -> persons, ascending
 *   supp     'p' + pid(8) | 'k' + hkey(16) -> time_us(8)  opt-outs, apart from records
 *   log      time_us(8) + seq(8)           -> entry       the query log (qlog.h)
 *   logp     pid(8) + time_us(8) + seq(8)  -> customer    who received whom (Disclosures)
 *   default  small metadata: layout version, counters, disclosure-request marks
 * Index keys are XXH3-128 of "kind:normalized", so no identifier is a key in
 * clear.  idx lists change by merge operands ('+'/'-' pid), never by reading
 * and rewriting them.  Reads are lock-free (RocksDB point reads);
 * writes that must read-modify-write (upsert, opt-out, purge, marks) take one
 * writer mutex and commit one WriteBatch each, so every record and its index
 * entries appear or vanish together.
 * The layout version (3) also names the normalization rules the keys were
 * made with: a layout 2 store is re-keyed in place when a primary opens it.
 */
#ifndef IDL_STORE_H
#define IDL_STORE_H

#include "hkey.h"
#include "record.h"
#include "status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct idl_store idl_store;

typedef struct {
    size_t cache_mb; /* shared block cache; 0 = default (256 MiB) */
    /* A cache of whole rows (RocksDB's row cache) in front of the block
     * cache, in MiB; 0 = none.  A hit skips the per-level filter, index and
     * data-block search that a point read otherwise pays on every level. */
    size_t row_cache_mb;
    bool bulk;             /* bulk load (ingest): larger memtables, fewer syncs */
    const char *secondary; /* open read-only as a RocksDB secondary with this scratch dir */
    /* Run compactions at the lowest CPU priority, so that requests get a
     * shared core first and compactions use what is left (the daemon).  It
     * lowers the pool of RocksDB's process-wide default env, so it holds for
     * every store the process opens afterwards. */
    bool yield_compactions;
    /* Where RocksDB's info log goes: NULL = a LOG file in the store's
     * directory (RocksDB's default), "-" = stderr, else a directory for it.
     * Debian's RocksDB keeps its assertions, and a LOG file on a full disk
     * aborts the process: a serving daemon keeps it off the data disk. */
    const char *info_log;
    /* Free-space floor of the store's filesystem, in bytes (0 = none): below
     * it every write is refused with IDL_UNAVAILABLE before RocksDB would
     * meet a full disk, while reads go on. */
    uint64_t min_free_bytes;
} idl_store_opts;

typedef enum {
    IDL_CF_META = 0,
    IDL_CF_PERSONS,
    IDL_CF_IDX,
    IDL_CF_SUPP,
    IDL_CF_LOG,
    IDL_CF_LOGP,
    IDL_CF_COUNT
} idl_cf;

/* Opens (creating if missing) the store at path.  A layout 2 store is first
 * re-keyed to today's normalization (a primary only: it rewrites every
 * person whose emails or addresses normalize differently now).  Returns 0,
 * IDL_UNAVAILABLE when another process holds it (err says so),
 * IDL_FAILED_PRECONDITION when it was written with another layout (or is
 * layout 2 and opened as a secondary), IDL_DATA_LOSS or IDL_UNAVAILABLE when
 * the suppression list (or the counters) cannot be read whole, IDL_INTERNAL
 * otherwise; err is filled on failure with one line naming the
 * cause.  It fails closed: a store whose opt-outs cannot all be read is not
 * opened, since serving it would find opted-out persons again. */
int idl_store_open(idl_store **out, const char *path, const idl_store_opts *opts,
                   char err[IDL_ERR_MAX]);
/* Closes the store; NULL is fine.  No call may be running on it. */
void idl_store_close(idl_store *s);
/* Secondary instances only: catch up with the primary's writes. */
int idl_store_catch_up(idl_store *s);
/* Compacts every column family down to its last level, folding the index's
 * merge operands into plain lists.  For tests and maintenance: it rewrites
 * the whole store. */
int idl_store_compact(idl_store *s);

/* ---- reads (thread-safe, lock-free) ---- */

/* Up to max person ids filed under k, ascending; *n the count.  *more is set
 * when there were more than max.  IDL_UNAVAILABLE when the index cannot be
 * read: never an empty list. */
int idl_store_probe(idl_store *s, const idl_hkey *k, uint64_t *pids, size_t max, size_t *n,
                    bool *more);
/* Every person id filed under k, ascending, however many: *pids is
 * malloc'd (the caller frees it, also when *n is 0).  For the privacy path,
 * which must reach every holder of an identifier. */
int idl_store_probe_all(idl_store *s, const idl_hkey *k, uint64_t **pids, size_t *n);
/* Does the work of probing a key that holds nothing, and discards it.  A read
 * path calls it in place of idl_store_probe for a suppressed key, so that an
 * opted-out identifier costs what a never-stored one costs (API.md §5:
 * suppression is never observable, in timing either). */
int idl_store_probe_absent(idl_store *s, const idl_hkey *k);
/* Reads a person.  IDL_NOT_FOUND when absent, IDL_DATA_LOSS when the stored
 * bytes do not decode, IDL_UNAVAILABLE when RocksDB cannot read them (an I/O
 * error, a block failing its checksum).  Only IDL_NOT_FOUND means absent:
 * callers must turn any other error into an error reply, never into "nobody"
 * (that would show a person an opt-out or a damaged file should not). */
int idl_store_get(idl_store *s, uint64_t pid, idl_record *r);
bool idl_store_key_suppressed(idl_store *s, const idl_hkey *k);
bool idl_store_person_suppressed(idl_store *s, uint64_t pid);

/* ---- writes (serialized by the writer mutex) ----
 * Every write (upsert, opt-out, purge, marks, raw batches) first checks the
 * free-space floor and, after a failed write (RocksDB stops taking writes
 * after one, e.g. on a full disk), asks RocksDB to resume once space is back,
 * at most once a second: a store that refused writes takes them again
 * without a restart.  Refused writes return IDL_UNAVAILABLE. */

/* Whether writes would be taken now (the floor and the failed-write state,
 * resuming when it can).  For health checks; thread-safe. */
bool idl_store_writable(idl_store *s);

typedef enum { IDL_UP_STORED, IDL_UP_UPDATED, IDL_UP_CHILD } idl_upsert_outcome;

typedef struct {
    idl_upsert_outcome outcome;
    bool suppressed; /* stored or updated, and hidden by an opt-out */
    bool purged;     /* a stored person became a child and was deleted */
} idl_upsert_result;

/* Upserts n records, in order, in as few WriteBatches as possible (a record
 * and its index entries always share one).  sync: fsync the WAL (not needed
 * for a process crash, only for power loss). */
int idl_store_upsert(idl_store *s, const idl_record *recs, size_t n, idl_upsert_result *res,
                     bool sync);

/* Deletes a person found to be a child at query time (record, index entries),
 * if it still is one.  Counted in children_purged. */
int idl_store_purge_child(idl_store *s, uint64_t pid);

/* Opt-out: suppresses each person in pids (and every identifier they hold)
 * and every key in keys.  *newly counts persons not suppressed before.
 * Durable (WAL) when it returns. */
int idl_store_suppress(idl_store *s, const uint64_t *pids, size_t npids, const idl_hkey *keys,
                       size_t nkeys, uint32_t *newly);

typedef struct {
    uint64_t persons;    /* visible (stored, not suppressed) */
    uint64_t suppressed; /* stored and suppressed */
    uint64_t children_purged;
} idl_store_counts;

void idl_store_counts_get(idl_store *s, idl_store_counts *c);

/* Sets a metadata mark once: returns 0 and *was_set = false when it set it,
 * *was_set = true when the key already existed.  Durable when it returns. */
int idl_store_mark_once(idl_store *s, const void *key, size_t klen, bool *was_set);
/* n marks of klen bytes each (keys holds them back to back), all or none:
 * when none was set, sets all in one write and *was_set = false; when any
 * was set, sets none and *was_set = true.  Durable when it returns. */
int idl_store_mark_all_once(idl_store *s, const void *keys, size_t klen, size_t n, bool *was_set);

/* ---- stamped writes (cluster mode) ----
 * The same writes with one metadata put (stamp: a key and value of the META
 * family) committed in the same WriteBatch as the write's last part, so a
 * change and the record that it was applied (the stream sequence) land
 * together or not at all.  A purge that finds nothing to purge still
 * commits the stamp.  Parts of an upsert committed before its last one are
 * idempotent to apply again.  stamp NULL: exactly the unstamped call. */
typedef struct {
    const void *key;
    size_t klen;
    const void *val;
    size_t vlen;
} idl_store_stamp;

int idl_store_upsert_stamped(idl_store *s, const idl_record *recs, size_t n, idl_upsert_result *res,
                             bool sync, const idl_store_stamp *stamp);
int idl_store_purge_child_stamped(idl_store *s, uint64_t pid, const idl_store_stamp *stamp);
int idl_store_suppress_stamped(idl_store *s, const uint64_t *pids, size_t npids,
                               const idl_hkey *keys, size_t nkeys, uint32_t *newly,
                               const idl_store_stamp *stamp);

/* ---- raw access for the query log and the analytics job ---- */

typedef struct idl_store_batch idl_store_batch;
/* A batch belongs to one store; it commits atomically or not at all. */
idl_store_batch *idl_store_batch_new(idl_store *s);
void idl_store_batch_put(idl_store_batch *b, idl_cf cf, const void *k, size_t kl, const void *v,
                         size_t vl);
void idl_store_batch_delete(idl_store_batch *b, idl_cf cf, const void *k, size_t kl);
void idl_store_batch_delete_range(idl_store_batch *b, idl_cf cf, const void *lo, size_t lol,
                                  const void *hi, size_t hil);
int idl_store_batch_commit(idl_store *s, idl_store_batch *b, bool sync);
void idl_store_batch_free(idl_store_batch *b);

/* A counter or sequence kept in the metadata family (8 bytes, big-endian):
 * 0 and *v = 0 when absent, or the read error.  A failed read is never
 * taken for "absent": a sequence read as 0 would replay or reuse what it
 * numbers. */
int idl_store_meta_u64(idl_store *s, const char *name, uint64_t *v);

/* Point read of any column family; *val is malloc'd (caller frees). */
int idl_store_raw_get(idl_store *s, idl_cf cf, const void *k, size_t kl, char **val, size_t *vl);

/* Forward iteration over [lo, hi) in one column family (hi NULL = to the end). */
typedef struct idl_store_iter idl_store_iter;
int idl_store_iter_open(idl_store *s, idl_cf cf, const void *lo, size_t lol, const void *hi,
                        size_t hil, idl_store_iter **out);
bool idl_store_iter_valid(idl_store_iter *it);
/* Why the iteration stopped, to ask once idl_store_iter_valid is false: 0 at
 * the end of the range, IDL_DATA_LOSS when a block failed its checksum or did
 * not parse, IDL_UNAVAILABLE on an I/O error.  An iterator that hits a bad
 * block simply turns invalid, exactly as at the end, so a scan that does not
 * ask this cannot tell a damaged store from a short one. */
int idl_store_iter_status(idl_store_iter *it);
void idl_store_iter_next(idl_store_iter *it);
const char *idl_store_iter_key(idl_store_iter *it, size_t *len);
const char *idl_store_iter_value(idl_store_iter *it, size_t *len);
void idl_store_iter_close(idl_store_iter *it);

/* ---- consistency check ---- */

typedef struct {
    uint64_t persons;        /* records scanned */
    uint64_t suppressed;     /* of them, suppressed */
    uint64_t entries;        /* index entries (key, pid) scanned */
    uint64_t unreadable;     /* records that do not decode, or with a bad key */
    uint64_t bad_id;         /* records filed under another id than their source_id's */
    uint64_t missing;        /* (person, key) pairs the index does not list */
    uint64_t dangling;       /* index entries naming no stored person */
    uint64_t foreign;        /* index entries under a key their person does not hold */
    uint64_t unsorted;       /* index lists out of order */
    idl_store_counts counts; /* the stored counters, to compare with the scan */
} idl_store_check_report;

/* Scans every person and every index entry (for tests and maintenance: it
 * reads the whole store and holds 16 bytes per index entry in memory; no
 * writer should run meanwhile, or the report may
 * count a write caught half way between the two scans).  Returns 0 with *out
 * filled, or the read error that stopped the scan (IDL_DATA_LOSS for a
 * damaged file).  idl_store_check_ok says whether the report is clean:
 * nothing unreadable, dangling, missing, foreign or unsorted, and counters
 * equal to what the scan found. */
int idl_store_check(idl_store *s, idl_store_check_report *out);
bool idl_store_check_ok(const idl_store_check_report *r);

#endif
