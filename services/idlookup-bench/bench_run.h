/* What idlookup-bench's two clients share while a phase runs: the phase (its
 * schedule and limits), the claim of the next request, the pre-encoded
 * request templates, and the tallies each requester keeps without a lock
 * and that are merged into the result when the phase is over.
 *
 * main.c drives requests over nng req0 contexts; raw_client.c speaks SP over
 * TCP from its own event loops.  Both count a request the same way
 * (bench_tally_record), so their reports compare.
 */
#ifndef IDL_BENCH_RUN_H
#define IDL_BENCH_RUN_H

#include "bench_lib.h"
#include "hist.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* How long an open-loop run may overrun its duration to send requests that
 * were due before its end. */
#define BENCH_OPEN_LOOP_GRACE_NS 1000000000u
/* Waits that have no event to end them wake this often to notice a stop
 * request. */
#define BENCH_STOP_POLL_NS 100000000u

/* Set by SIGINT/SIGTERM: no new request is claimed. */
extern volatile sig_atomic_t bench_stop_requested;

/* One pre-encoded request: the whole envelope, with its id at id_off. */
typedef struct {
    unsigned char *env;
    size_t len;
    size_t id_off;
} bench_tmpl;

typedef struct {
    bench_tmpl *t;
    size_t n;
} bench_tmpl_set;

/* One phase (the --baseline Health run, or the workload).  The fields up to
 * limit are set before the requesters start and only read after. */
typedef struct {
    const char *name;
    unsigned number;            /* goes into the request ids, so phases never share one */
    const bench_tmpl_set *sets; /* [IDL_BENCH_NMETHODS] */
    idl_bench_mix mix;
    bool open_loop;
    double rate;
    int timeout_ms;
    uint64_t t0_ns;               /* start; request i of the open loop is due at t0 + i/rate */
    uint64_t mstart_ns;           /* end of warmup: from here on requests count */
    uint64_t end_ns;              /* 0 with -n */
    uint64_t limit;               /* counted requests to send with -n, else 0 */
    atomic_uint_fast64_t next;    /* nng open loop: the next request index */
    atomic_uint_fast64_t claimed; /* -n: counted requests handed out */
} bench_phase;

/* Sets the phase's clock fields from o: t0 is now plus lead_ns. */
void bench_phase_start(bench_phase *ph, const idl_bench_opts *o, uint64_t lead_ns);

/* The counts of one requester (an nng context, a raw client thread).  Only
 * its owner writes it while the phase runs; done and failed are atomics
 * because the progress line reads them meanwhile. */
typedef struct {
    idl_hist *hist;
    idl_hist *mhist[IDL_BENCH_NMETHODS]; /* a mix of methods: each one's latency */
    uint64_t outcomes[IDL_BENCH_NOUTCOMES];
    uint64_t per_method[IDL_BENCH_NMETHODS];
    uint64_t per_method_ok[IDL_BENCH_NMETHODS];
    uint64_t inner[IDL_STATUS_COUNT];
    uint64_t counted_n;
    uint64_t last_done_ns;
    /* All requests, warmup included, for the progress line. */
    atomic_uint_fast64_t done;
    atomic_uint_fast64_t failed;
} bench_tally;

/* Allocates t's histograms (per method too when mixed).  0 or
 * IDL_RESOURCE_EXHAUSTED; bench_tally_free accepts a half-built tally. */
int bench_tally_init(bench_tally *t, const bench_phase *ph, bool mixed);
void bench_tally_free(bench_tally *t);

/* One request the requester claimed or finished. */
typedef struct {
    int method;
    bool counted;
    uint64_t due_ns;
    uint64_t sent_ns;
} bench_req;

/* Counts one finished request: outcome (a status code or IDL_BENCH_*),
 * inner (its Batch codes, or NULL), replied (a reply came back to be timed),
 * done (when).  The latency follows the loop: from the due time in the open
 * loop, from the send in the closed one. */
void bench_tally_record(bench_tally *t, const bench_phase *ph, const bench_req *r, int outcome,
                        const uint64_t *inner, bool replied, uint64_t done);

/* Adds t into res, hist and mhist[] (each present one), and raises *last to
 * its last counted reply. */
void bench_tally_merge(const bench_tally *t, idl_bench_result *res, idl_hist *hist,
                       idl_hist *const *mhist, uint64_t *last);

/* Fills what the tallies do not: the measured window, interruption and
 * open-loop unsent count; after every bench_tally_merge. */
void bench_result_finish(const bench_phase *ph, idl_bench_result *res, uint64_t last);

/* Claims the next request in the closed loop or the nng open loop: false
 * when the phase is over.  Writes when it is due (*due_ns, now in the closed
 * loop) and whether it counts. */
bool bench_next_request(bench_phase *ph, uint64_t *due_ns, bool *counted);

/* Whether a request due at due (of the open loop) is still to be sent at
 * now, and claims it against -n.  False when the phase is over. */
bool bench_claim_due(bench_phase *ph, uint64_t due, uint64_t now, bool *counted);

/* The progress line on stderr: done and failed summed by the caller. */
void bench_progress_line(const bench_phase *ph, uint64_t done, uint64_t failed, uint64_t now,
                         bool tty, uint64_t *prev_done, uint64_t *prev_ns);

uint64_t bench_now_ns(void);
uint64_t bench_rng_next(uint64_t *s);

#endif
