/* Helper threads that take a share of one request's independent parts
 * (Batch's inner calls), so a batch's latency is not one core's.  The calling
 * thread works too and takes every part no idle helper picked up, so a busy
 * pool costs only the parallelism, never a wait.
 */
#ifndef IDLD_ASSIST_H
#define IDLD_ASSIST_H

#include "call.h"

#include <stddef.h>

typedef struct idld_assist idld_assist;

/* Runs part p of a job with the executing thread's scratch. */
typedef void (*idld_assist_fn)(void *arg, size_t part, idld_scratch *scratch);

/* Starts nthreads helpers, each with its own scratch.  nthreads 0 gives no
 * pool (*out = NULL), and idld_assist_run then runs every part itself. */
int idld_assist_new(idld_assist **out, size_t nthreads);
/* Stops and joins the helpers.  No run may be in progress.  NULL is fine. */
void idld_assist_free(idld_assist *a);
/* Runs fn(arg, p, scratch) once for every p in [0, nparts), on the caller
 * (with own as scratch) and on idle helpers; returns when all are done.
 * Parts must not depend on each other's order. */
void idld_assist_run(idld_assist *a, idld_assist_fn fn, void *arg, size_t nparts,
                     idld_scratch *own);

#endif
