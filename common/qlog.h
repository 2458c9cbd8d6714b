/* The query log (DATA.md §5): one entry per request that reaches the daemon.
 *
 * Request threads append entries to sharded in-memory buffers (a short
 * per-shard lock, no I/O); one flusher thread writes them to the store's log
 * column families every flush interval (at most 1 s, default 200 ms) through
 * the WAL, so a process crash loses at most one interval and a clean close
 * loses nothing.  Identifiers never enter the log: only keyed fingerprints
 * (SipHash-2-4 under a per-deployment secret kept in the data directory).
 */
#ifndef IDL_QLOG_H
#define IDL_QLOG_H

#include "store.h"

#include <stdbool.h>
#include <stdint.h>

#define IDL_QLOG_MAX_PIDS 100
#define IDL_QLOG_MAX_FPS 32
#define IDL_QLOG_FIELD_MAX 128

typedef struct idl_qlog idl_qlog;

typedef struct {
    uint64_t time_us;                  /* UTC microseconds when the request arrived */
    uint64_t seq;                      /* with time_us, the entry's key and the request-id */
    char customer[IDL_QLOG_FIELD_MAX]; /* "" without a valid key */
    char key_id[24];                   /* "" without a valid key */
    char method[IDL_QLOG_FIELD_MAX];   /* as sent, or "" when undecodable */
    int code;
    uint32_t latency_us;
    uint32_t n_persons; /* persons returned */
    uint32_t n_pids;    /* ids kept (<= IDL_QLOG_MAX_PIDS) */
    uint64_t pids[IDL_QLOG_MAX_PIDS];
    uint32_t n_fps;
    uint64_t fps[IDL_QLOG_MAX_FPS];
} idl_qlog_entry;

/* Opens the log over an open store.  secret_path: the fingerprint key file
 * (created with 32 random bytes, mode 0600, when missing).  flush_ms: 1..1000.
 * retention_days: entries older than this are deleted at open and hourly
 * (0 keeps everything). */
int idl_qlog_open(idl_qlog **out, idl_store *s, const char *secret_path, unsigned flush_ms,
                  unsigned retention_days, char err[IDL_ERR_MAX]);
/* Flushes everything appended, stops the flusher.  NULL is fine. */
void idl_qlog_close(idl_qlog *q);

/* A unique (time_us, seq) for a new request; thread-safe. */
void idl_qlog_next_id(idl_qlog *q, uint64_t *time_us, uint64_t *seq);
/* The request-id text of (time_us, seq): 16 hex digits, '-', 8 hex digits. */
void idl_qlog_request_id(uint64_t time_us, uint64_t seq, char out[32]);

/* Keyed fingerprint of "kind:value" (value normalized when it could be). */
uint64_t idl_qlog_fingerprint(const idl_qlog *q, const char *kind, const char *value);

/* Copies e into the buffers.  Thread-safe; never waits on I/O. */
void idl_qlog_append(idl_qlog *q, const idl_qlog_entry *e);
/* Waits until everything appended before the call is in the store. */
int idl_qlog_flush(idl_qlog *q);
/* Entries ever written to the store (persisted counter) plus pending ones. */
uint64_t idl_qlog_count(idl_qlog *q);

/* Cluster mode: from now on every flush also writes, in the same WriteBatch,
 * its entries to the outbox as ready-made query-log stream messages of at
 * most IDL_QLOG_OUTBOX_ENTRIES entries and IDL_QLOG_OUTBOX_BYTES bytes: META
 * key IDL_QLOG_OUTBOX_PREFIX + a number (8 bytes, big-endian, in the order
 * written; the next one is kept under IDL_QLOG_OUTBOX_NEXT), value a msgpack
 * array of bins, each an entry's 16-byte log key then its stored value.  A
 * message never changes once written, so its number is a stable message id.
 * qlogstream.h publishes the outbox to NATS and empties it.  Set before the
 * first request. */
#define IDL_QLOG_OUTBOX_PREFIX "qo:"
#define IDL_QLOG_OUTBOX_NEXT "c:qo_next"
#define IDL_QLOG_OUTBOX_ENTRIES 2000
#define IDL_QLOG_OUTBOX_BYTES (512u * 1024u)
int idl_qlog_set_outbox(idl_qlog *q, bool on); /* 0, or the store's read error */

/* Deletes entries older than cutoff_us (and their per-person records).
 * Returns the scan's read error (IDL_DATA_LOSS for a damaged file) without
 * deleting anything when the entries cannot all be read. */
int idl_qlog_delete_before(idl_store *s, uint64_t cutoff_us, uint64_t *deleted);

/* Cluster mode: files the recipient records of an entry another node
 * logged (its Search persons, as a flush files this node's own), into b.
 * tag is XORed into the entry's sequence so that two nodes' entries with the
 * same time and sequence keep apart.  Entries whose persons are not logged
 * per person, and failed calls, file nothing. */
void idl_qlog_file_remote(idl_store_batch *b, const idl_qlog_entry *e, uint64_t tag);

/* Decodes a stored entry (log column family key and value). */
int idl_qlog_decode(const char *k, size_t kl, const char *v, size_t vl, idl_qlog_entry *e);

/* ---- reading the log ----
 * The log's key layouts (log: time_us(8 BE) + seq(8 BE); logp: pid(8 BE) +
 * time_us(8 BE) + seq(8 BE) -> customer) are known only to qlog.c; readers
 * go through the scans below.  A scan that stops on a damaged block or a read
 * error returns that error (IDL_DATA_LOSS, IDL_UNAVAILABLE), never a short
 * answer. */

/* A forward scan over the entries whose time_us is in [from_us, to_us), in
 * key order.  from_us 0 starts at the first entry, to_us UINT64_MAX runs to
 * the last.  Not thread-safe; the store must stay open until it is closed. */
typedef struct idl_qlog_scan idl_qlog_scan;
int idl_qlog_scan_open(idl_store *s, uint64_t from_us, uint64_t to_us, idl_qlog_scan **out);
/* The next decodable entry into *e: returns 0 with *got true, or 0 with *got
 * false at the end of the range, or the read error that stopped the scan.
 * Entries that do not decode are skipped and counted (see below). */
int idl_qlog_scan_next(idl_qlog_scan *sc, idl_qlog_entry *e, bool *got);
/* Entries skipped so far because they did not decode. */
uint64_t idl_qlog_scan_undecodable(const idl_qlog_scan *sc);
/* NULL is fine. */
void idl_qlog_scan_close(idl_qlog_scan *sc);

/* Who received a person (Disclosures): per customer, how many entries and
 * the first and last time_us. */
typedef struct {
    char customer[IDL_QLOG_FIELD_MAX];
    uint64_t count, first, last;
} idl_qlog_recipient;

/* The recipients of any of the n persons in pids in [from_us, to_us), one
 * per customer (an entry naming two of the persons counts twice), in
 * ascending order of customer.  *out is malloc'd (the caller frees it, also
 * when *nout is 0).  Returns 0, IDL_INTERNAL when out of memory, or the read
 * error that stopped a scan; *out and *nout are written only on success. */
int idl_qlog_recipients(idl_store *s, const uint64_t *pids, size_t n, uint64_t from_us,
                        uint64_t to_us, idl_qlog_recipient **out, size_t *nout);

/* The metadata mark of a person's disclosure request in a year ('d' ':'
 * pid(8 BE) year(2 BE)), for idl_store_mark_all_once. */
#define IDL_QLOG_MARK_LEN 12
void idl_qlog_disclosure_mark(uint64_t pid, unsigned year, uint8_t out[IDL_QLOG_MARK_LEN]);

#endif
