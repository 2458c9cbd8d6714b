/* The daemon's request pipeline and the threads that serve it (see
 * server.c): nng's SP rep0 protocol over TCP and IPC, run to completion on
 * one thread per core; start listening, stop and drain. */
#ifndef IDLD_SERVER_H
#define IDLD_SERVER_H

#include "auth.h"
#include "call.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct idld_pool idld_pool;
typedef struct idld_worker idld_worker;

/* How the pool guards itself against connections that do not read their
 * replies or do not finish their frames (0 turns a guard off). */
typedef struct {
    size_t workers;           /* request threads, each from receive to reply */
    size_t slow_workers;      /* threads for writes and Batch, at a lower priority */
    uint32_t send_timeout_ms; /* a connection taking none of its waiting replies for this
                               * long is closed */
    uint32_t max_pending;     /* replies waiting for one connection to take them, beyond
                               * which it is not read until it takes some */
    uint32_t idle_ms;         /* a connection with nothing outstanding and no whole request
                               * for this long is closed (also one stuck mid-frame) */
} idld_pool_opts;

/* Listens on url (tcp://HOST:PORT or ipc:///PATH) and starts serving. */
int idld_pool_start(idld_pool **out, idld_state *st, const char *url, const idld_pool_opts *o,
                    char err[IDL_ERR_MAX]);
/* Stops handling requests: waits for the handlers running and makes the
 * workers drop what they receive from then on, so the query log and the
 * store can be closed while the socket is still open.  NULL is fine. */
void idld_pool_quiesce(idld_pool *p);
/* Whether a request being handled still uses key ring kr (one retired by a
 * reload is freed once not).  Thread-safe; NULL p: false. */
bool idld_pool_ring_in_use(const idld_pool *p, const idl_keyring *kr);
/* Stops and joins every thread, then closes the listener and every
 * connection.  NULL is fine. */
void idld_pool_stop(idld_pool *p);

#endif
