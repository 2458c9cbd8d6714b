/* The change stream (CLUSTER.md §1, §2, §4, §5): every write of a cluster
 * node goes through NATS JetStream (stream IDL_CHANGES) and every node
 * applies the stream to its own store, in order, exactly once.
 *
 * A message is msgpack [1, kind, origin, ctr, body]:
 *   kind "u": body = [record bytes (record.h store format)...]   Upsert, ingest
 *   kind "s": body = [[pid...], [hkey(16 bytes)...]]               OptOut
 *   kind "p": body = pid                                          child purge
 * origin is a random number per process and ctr a counter, so the node that
 * published a change recognizes it when it applies it and hands its outcome
 * to the waiting handler.  An opt-out carries hashed keys and person ids
 * only: no identifier in clear reaches NATS (§3).
 *
 * The last applied stream sequence is the META key "c:applied_seq", written
 * in the same RocksDB WriteBatch as the change (store.h, stamped writes):
 * after a crash the node resumes at the next message, never applying one
 * twice or skipping one.
 *
 * Threads: one applier thread (started by open) is the only writer of the
 * store's records in cluster mode; the write calls below are made from any
 * number of request threads and block until their change is acknowledged
 * by JetStream and applied here (read-your-writes).  Reads never touch NATS.
 * Ownership: the handle borrows the store (which must outlive it) and owns
 * its NATS connection and thread.
 */
#ifndef IDL_CHANGES_H
#define IDL_CHANGES_H

#include "record.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct idl_changes idl_changes;

typedef struct {
    uint64_t applied_seq; /* last stream sequence applied to the local store */
    uint64_t stream_seq;  /* last stream sequence known to exist */
    bool connected;       /* NATS reachable now */
    bool ready;           /* caught up with the stream's end as of the start */
} idl_changes_status;

/* Opens the node side over an open store: connects to urls in the
 * background, creates the streams when missing and starts the applier,
 * which first catches up with the stream's end (idl_changes_ready).  node:
 * the node name (natsconn.h).  Fails only on bad arguments or resources: an
 * unreachable NATS is waited for. */
int idl_changes_open(idl_changes **out, idl_store *s, const char *urls, const char *node,
                     char err[IDL_ERR_MAX]);
/* Stops the applier and closes the connection; NULL is fine.  No write call
 * may be running. */
void idl_changes_close(idl_changes *c);

/* True once the applier has applied everything the stream held when it
 * first reached NATS. */
bool idl_changes_ready(idl_changes *c);
void idl_changes_status_get(idl_changes *c, idl_changes_status *st);

/* Writes: publish, wait for JetStream's acknowledgement, then for the local
 * applier to apply the change, and return its outcome as the store call
 * would.  IDL_UNAVAILABLE when NATS is unreachable (nothing was written
 * anywhere) or the change was not applied within a few seconds. */
int idl_changes_upsert(idl_changes *c, const idl_record *recs, size_t n, idl_upsert_result *res);
int idl_changes_suppress(idl_changes *c, const uint64_t *pids, size_t npids, const idl_hkey *keys,
                         size_t nkeys, uint32_t *newly);
/* A child found at query time: queued for the applier thread to publish (a
 * read never waits on NATS); the store purges it when the change comes
 * back.  Never fails: a full queue drops it, and the next read finds it. */
void idl_changes_purge_child(idl_changes *c, uint64_t pid);

/* Disclosure marks (§6): sets "pid.year" for every pid in the cluster-wide
 * bucket, all or none: *was_set when any was set already (then none is
 * left set by this call).  While the bucket's stream elects a leader it
 * waits, up to 15 s per mark; IDL_UNAVAILABLE when NATS is unreachable or
 * the bucket does not answer in that time. */
int idl_changes_mark_disclosures(idl_changes *c, const uint64_t *pids, size_t n, unsigned year,
                                 bool *was_set);

/* ---- publisher only (ingest --nats) ---- */

typedef struct idl_changes_pub idl_changes_pub;
/* Connects (waiting: IDL_UNAVAILABLE when no server answers) and creates the
 * streams when missing. */
int idl_changes_pub_open(idl_changes_pub **out, const char *urls, char err[IDL_ERR_MAX]);
/* Publishes an upsert of n records asynchronously (copied), in messages no
 * bigger than the server's max_payload.  Messages whose acknowledgement is
 * lost (a dropped connection, a server that stalls) are sent again, in
 * order.  On failure err names the cause (JetStream's error, a record too
 * big for a message, no acknowledgement after retries). */
int idl_changes_pub_upsert(idl_changes_pub *p, const idl_record *recs, size_t n,
                           char err[IDL_ERR_MAX]);
/* Waits until every message is acknowledged; IDL_UNAVAILABLE with the cause
 * in err when that cannot be had. */
int idl_changes_pub_wait(idl_changes_pub *p, char err[IDL_ERR_MAX]);
void idl_changes_pub_close(idl_changes_pub *p);

/* Encoding, for tests and tools: packs an upsert message body. */
int idl_changes_encode_upsert(const idl_record *recs, size_t n, uint64_t origin, uint64_t ctr,
                              char **out, size_t *len);

#endif
