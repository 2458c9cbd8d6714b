/* Cluster test support: a JetStream cluster of real nats-server processes
 * on loopback ports, in a temp dir, and idlookupd nodes joined to it.
 *
 * nats-server comes from $IDL_NATS_SERVER or the PATH; natscl_available
 * says whether it is there (tests skip with 77 when not).  Every process
 * started here is killed at exit, also when the harness dies.
 */
#ifndef IDL_NATSCL_H
#define IDL_NATSCL_H

#include "e2e.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define NATSCL_MAX 3

typedef struct {
    int n;
    char dir[256];
    int port[NATSCL_MAX], cport[NATSCL_MAX];
    pid_t pid[NATSCL_MAX];
    char urls[256]; /* nats://127.0.0.1:P1,... */
} natscl;

/* Monotonic milliseconds, and a sleep, for the tests' deadlines. */
uint64_t natscl_now_ms(void);
void natscl_sleep_ms(int ms);

/* The nats-server binary, or NULL when it is not installed. */
const char *natscl_server(void);
/* Starts n (1 or 3) servers with JetStream in a fresh temp dir and waits
 * until the cluster accepts a stream (at most 30 s). */
void natscl_start(natscl *c, int n);
/* Starts server i again (same store and ports). */
void natscl_start_one(natscl *c, int i);
/* Waits until the cluster accepts JetStream requests again (30 s). */
void natscl_wait_ready(natscl *c);
void natscl_kill9(natscl *c, int i);
/* Stops every server (SIGKILL: as a crash would). */
void natscl_stop_all(natscl *c);
void natscl_cleanup(natscl *c);

/* Sets up node env e as a cluster node sharing keys with the first node
 * (NULL for the first one). */
void natscl_node_init(e2e_env *e, const e2e_env *first);
/* Starts the node (--nats, --node NAME, a shared fingerprint key) and, when
 * wait is true, waits for SERVING like e2e_start; otherwise returns at once
 * (the node may not be listening yet). */
void natscl_node_start(natscl *c, e2e_env *e, const char *name, const e2e_env *first, bool wait);

/* Health status string of a node ("SERVING", "NOT_SERVING", or "" when no
 * answer). */
const char *natscl_health(e2e_env *e, char out[32]);

#endif
