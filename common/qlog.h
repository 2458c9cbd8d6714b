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
                  unsigned retention_days, char err[256]);
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
void idl_qlog_set_outbox(idl_qlog *q, bool on);

/* Deletes entries older than cutoff_us (and their per-person records). */
int idl_qlog_delete_before(idl_store *s, uint64_t cutoff_us, uint64_t *deleted);

/* Decodes a stored entry (log column family key and value). */
int idl_qlog_decode(const char *k, size_t kl, const char *v, size_t vl, idl_qlog_entry *e);

#define IDL_QLOG_SEARCH_METHOD "idlookup.v1.Lookup/Search"

#endif
