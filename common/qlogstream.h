/* The query-log stream (CLUSTER.md §3, §4, §6): every node's query log on
 * NATS JetStream (stream IDL_QLOG, subject idl.qlog.<node>).
 *
 * Publishing: each flush of the query log also writes its entries, in the
 * same WriteBatch as the log itself, to an outbox of ready-made messages
 * (qlog.h, idl_qlog_set_outbox: up to 2,000 entries or 512 KiB a message, as
 * JetStream's cost is per message).  One thread here publishes them in
 * order, each under the id "<node>-<number>" (Nats-Msg-Id): a message never
 * changes once written, so a resend after a failure or a crash keeps its id
 * and JetStream drops it.  Acknowledged messages are deleted.  While NATS is
 * away they wait in the outbox, on disk: none lost, none doubled.  A message
 * is a msgpack array of entries, each its 16-byte log key then its stored
 * value: fingerprints, never identifiers in clear.
 *
 * Applying: the same thread applies every other node's Search entries to
 * the local "who received whom" family (logp), so Disclosures on any node
 * sees the customers every node served (its cost: each node stores every
 * node's disclosure records).  The applied IDL_QLOG sequence is the META key
 * "c:qlog_seq", committed in the same batch as the entries.
 *
 * Threads: one background thread per handle; the store must outlive it.
 */
#ifndef IDL_QLOGSTREAM_H
#define IDL_QLOGSTREAM_H

#include "qlog.h"
#include "store.h"

#include <stdint.h>

typedef struct idl_qlogstream idl_qlogstream;

/* Starts publishing node's outbox and applying the other nodes' entries.
 * NATS need not be reachable yet. */
int idl_qlogstream_open(idl_qlogstream **out, idl_store *s, const char *urls, const char *node,
                        char err[IDL_ERR_MAX]);
/* Stops the thread (the outbox keeps what was not published); NULL fine. */
void idl_qlogstream_close(idl_qlogstream *q);

/* Messages waiting in a store's outbox (counted by a scan). */
uint64_t idl_qlogstream_outbox_count(idl_store *s);

/* Reads IDL_QLOG from its start up to its last message as of the call
 * (analytics --nats): fn gets each entry with the node that logged it; a
 * non-zero return stops the read and is returned.  IDL_UNAVAILABLE when
 * NATS cannot be reached or the stream stops answering. */
typedef int (*idl_qlogstream_fn)(void *ctx, const char *node, const idl_qlog_entry *e);
int idl_qlogstream_read(const char *urls, idl_qlogstream_fn fn, void *ctx, char err[IDL_ERR_MAX]);

#endif
