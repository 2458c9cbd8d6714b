/* The daemon's request pipeline and its nng worker pool (see server.c):
 * start listening, stop and drain. */
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
    size_t workers;           /* nng contexts serving requests */
    uint32_t send_timeout_ms; /* a reply not handed to its connection by then is dropped */
    uint32_t max_pending;     /* replies waiting for one connection to take them, beyond
                               * which its new requests are dropped */
    uint32_t idle_ms;         /* a connection with nothing outstanding and no whole request
                               * for this long is closed (also one stuck mid-frame) */
} idld_pool_opts;

/* Opens a rep0 socket on url and starts serving with o's workers. */
int idld_pool_start(idld_pool **out, idld_state *st, const char *url, const idld_pool_opts *o,
                    char err[IDL_ERR_MAX]);
/* Stops handling requests: waits for the handlers running and makes the
 * workers drop what they receive from then on, so the query log and the
 * store can be closed while the socket is still open.  NULL is fine. */
void idld_pool_quiesce(idld_pool *p);
/* Whether a request being handled still uses key ring kr (one retired by a
 * reload is freed once not).  Thread-safe; NULL p: false. */
bool idld_pool_ring_in_use(const idld_pool *p, const idl_keyring *kr);
/* Closes the socket and waits for every worker's callback to finish.
 * NULL is fine. */
void idld_pool_stop(idld_pool *p);

#endif
