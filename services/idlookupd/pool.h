/* The nng worker pool of the daemon: start listening, stop and drain. */
#ifndef IDLD_POOL_H
#define IDLD_POOL_H

#include "server.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct idld_pool idld_pool;
typedef struct idld_worker idld_worker;

/* Opens a rep0 socket on url with nworkers contexts and starts serving. */
int idld_pool_start(idld_pool **out, idld_state *st, const char *url, size_t nworkers,
                    char err[256]);
/* Whether a request being handled still uses key ring kr (one retired by a
 * reload is freed once not).  Thread-safe; NULL p: false. */
bool idld_pool_ring_in_use(const idld_pool *p, const idl_keyring *kr);
/* Closes the socket and waits for every worker's callback to finish.
 * NULL is fine. */
void idld_pool_stop(idld_pool *p);

#endif
