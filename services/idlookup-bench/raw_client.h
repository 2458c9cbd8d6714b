/* idlookup-bench's raw client: SP over TCP (nng's sp-tcp mapping, req0 to
 * rep0) spoken from --threads event loops of our own, with no nng in the
 * request path.
 *
 * Each thread owns a share of the --sockets connections, each connection a
 * share of the -c request slots.  A thread appends every request that is
 * due to its connection's write buffer and writes it with one send; it reads
 * replies in big reads from a per-connection buffer, matches them to their
 * slot by the SP request id and reads only the envelope's id and code.  No
 * lock and no allocation per request: each thread counts into its own tally,
 * merged when the phase is over.
 */
#ifndef IDL_BENCH_RAW_CLIENT_H
#define IDL_BENCH_RAW_CLIENT_H

#include "bench_run.h"

/* Runs one phase with o's load shape over fresh TCP connections to the
 * --url list and fills *res as main.c's nng path does (res->latency_us is
 * hist, reset here; with a mix and mhist, res->method_latency_us[m] is
 * mhist[m]).  A connection the daemon closes fails its requests in flight
 * (TRANSPORT_ERROR) and is dialled again; requests not answered within
 * ph->timeout_ms count as TIMEOUT.  Returns 0, or a status when the phase
 * could not start (an address that does not resolve, out of memory). */
int bench_raw_run_phase(bench_phase *ph, const idl_bench_opts *o, bool show_progress,
                        idl_bench_result *res, idl_hist *hist, idl_hist *const *mhist);

#endif
