/* A connection to a NATS JetStream cluster, shared by the cluster modules
 * (changes.h, qlogstream.h) and the CLI's --nats forms.
 *
 * It wraps one natsConnection and its JetStream context, reconnecting
 * forever, and knows the names the cluster uses (CLUSTER.md): the change
 * stream IDL_CHANGES (subject idl.changes), the query-log stream IDL_QLOG
 * (subjects idl.qlog.<node>) and the disclosure-mark bucket IDL_DISCLOSURES.
 * Ownership: the handle owns the connection; the nats objects it hands out
 * (idl_natsconn_js, idl_natsconn_nc) live as long as the handle.
 * Threads: every call is thread-safe (the nats.c library locks inside).
 */
#ifndef IDL_NATSCONN_H
#define IDL_NATSCONN_H

#include "status.h"

#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

#define IDL_NATS_CHANGES_STREAM "IDL_CHANGES"
#define IDL_NATS_CHANGES_SUBJECT "idl.changes"
#define IDL_NATS_QLOG_STREAM "IDL_QLOG"
#define IDL_NATS_QLOG_PREFIX "idl.qlog."
#define IDL_NATS_DISCLOSURES_BUCKET "IDL_DISCLOSURES"
/* A node name: [a-z0-9-]{1,32} (it becomes a subject token and a message-id
 * prefix). */
#define IDL_NATS_NODE_MAX 33

typedef struct idl_natsconn idl_natsconn;

/* Connects to urls (comma-separated nats:// URLs).  wait: fail with
 * IDL_UNAVAILABLE when no server answers now; otherwise the handle is
 * returned at once and connects in the background (a node may start before
 * its NATS servers).  name: the client name servers show. */
int idl_natsconn_open(idl_natsconn **out, const char *urls, const char *name, bool wait,
                      char err[IDL_ERR_MAX]);
/* Closes the connection; NULL is fine.  Nothing may be using it. */
void idl_natsconn_close(idl_natsconn *c);

bool idl_natsconn_connected(idl_natsconn *c);
/* Connected now, or within grace_ms (nats.c moves to another server of the
 * list in about 100 ms when it loses its own); false after grace_ms. */
bool idl_natsconn_wait_connected(idl_natsconn *c, unsigned grace_ms);
natsConnection *idl_natsconn_nc(idl_natsconn *c);
jsCtx *idl_natsconn_js(idl_natsconn *c);

/* Creates the streams and the bucket when missing (idempotent: a second
 * node racing to create them finds them made).  Replicas: 3 when the
 * cluster has 3 or more servers, else 1.  IDL_UNAVAILABLE when NATS cannot
 * be reached. */
int idl_natsconn_ensure(idl_natsconn *c, char err[IDL_ERR_MAX]);

/* The last sequence of a stream (0 when empty).  IDL_UNAVAILABLE when NATS
 * cannot be reached. */
int idl_natsconn_last_seq(idl_natsconn *c, const char *stream, uint64_t *seq);

/* Whether name is a valid node name. */
bool idl_natsconn_node_valid(const char *name);

#endif
