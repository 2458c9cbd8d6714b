/* The parts of a phase both clients share (see bench_run.h). */
#include "bench_run.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

volatile sig_atomic_t bench_stop_requested;

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bench_rng_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

void bench_phase_start(bench_phase *ph, const idl_bench_opts *o, uint64_t lead_ns)
{
    ph->t0_ns = bench_now_ns() + lead_ns;
    ph->mstart_ns = ph->t0_ns + (uint64_t)(o->warmup_s * 1e9);
    ph->end_ns = o->duration_s > 0 ? ph->mstart_ns + (uint64_t)(o->duration_s * 1e9) : 0;
    ph->limit = o->requests;
    atomic_init(&ph->next, 0);
    atomic_init(&ph->claimed, 0);
}

int bench_tally_init(bench_tally *t, const bench_phase *ph, bool mixed)
{
    memset(t, 0, sizeof(*t));
    atomic_init(&t->done, 0);
    atomic_init(&t->failed, 0);
    if (idl_hist_new(&t->hist)) return IDL_RESOURCE_EXHAUSTED;
    for (int m = 0; mixed && m < IDL_BENCH_NMETHODS; m++)
        if (ph->mix.weight[m] && idl_hist_new(&t->mhist[m])) return IDL_RESOURCE_EXHAUSTED;
    return 0;
}

void bench_tally_free(bench_tally *t)
{
    idl_hist_free(t->hist);
    t->hist = NULL;
    for (int m = 0; m < IDL_BENCH_NMETHODS; m++) {
        idl_hist_free(t->mhist[m]);
        t->mhist[m] = NULL;
    }
}

void bench_tally_record(bench_tally *t, const bench_phase *ph, const bench_req *r, int outcome,
                        const uint64_t *inner, bool replied, uint64_t done)
{
    atomic_fetch_add_explicit(&t->done, 1, memory_order_relaxed);
    if (outcome != IDL_OK) atomic_fetch_add_explicit(&t->failed, 1, memory_order_relaxed);
    if (!r->counted) return;
    t->counted_n++;
    t->outcomes[outcome]++;
    t->per_method[r->method]++;
    t->per_method_ok[r->method] += outcome == IDL_OK;
    if (inner)
        for (int k = 0; k < IDL_STATUS_COUNT; k++)
            t->inner[k] += inner[k];
    /* Transport failures have no reply to time; they show in the codes. */
    if (replied) {
        uint64_t lat = idl_bench_latency_ns(ph->open_loop, r->due_ns, r->sent_ns, done);
        idl_hist_record(t->hist, (lat + 500) / 1000);
        if (t->mhist[r->method]) idl_hist_record(t->mhist[r->method], (lat + 500) / 1000);
    }
    t->last_done_ns = done;
}

void bench_tally_merge(const bench_tally *t, idl_bench_result *res, idl_hist *hist,
                       idl_hist *const *mhist, uint64_t *last)
{
    res->requests += t->counted_n;
    for (int k = 0; k < IDL_BENCH_NOUTCOMES; k++)
        res->outcomes[k] += t->outcomes[k];
    for (int m = 0; m < IDL_BENCH_NMETHODS; m++) {
        res->per_method[m] += t->per_method[m];
        res->per_method_ok[m] += t->per_method_ok[m];
    }
    for (int k = 0; k < IDL_STATUS_COUNT; k++)
        res->inner[k] += t->inner[k];
    idl_hist_merge(hist, t->hist);
    for (int m = 0; mhist && m < IDL_BENCH_NMETHODS; m++)
        if (t->mhist[m] && mhist[m]) idl_hist_merge(mhist[m], t->mhist[m]);
    if (t->last_done_ns > *last) *last = t->last_done_ns;
}

void bench_result_finish(const bench_phase *ph, idl_bench_result *res, uint64_t last)
{
    /* The measured window runs from the end of warmup to the last counted
     * reply, so the tail of in-flight requests is inside it. */
    res->duration_s = last > ph->mstart_ns ? (double)(last - ph->mstart_ns) / 1e9 : 0;
    res->interrupted = bench_stop_requested;
    if (ph->open_loop && ph->end_ns && !bench_stop_requested) {
        uint64_t due = idl_bench_due_before(ph->t0_ns, ph->rate, ph->end_ns) -
                       idl_bench_due_before(ph->t0_ns, ph->rate, ph->mstart_ns);
        res->unsent = due > res->requests ? due - res->requests : 0;
    }
}

bool bench_claim_due(bench_phase *ph, uint64_t due, uint64_t now, bool *counted)
{
    if (bench_stop_requested) return false;
    /* A backlog left when the run is over (the service or -c could not keep
     * up with --rate) drains for BENCH_OPEN_LOOP_GRACE at most; what is
     * still unsent then is reported as such, not waited for. */
    if (ph->end_ns && due < ph->end_ns && now > ph->end_ns + BENCH_OPEN_LOOP_GRACE_NS) return false;
    if (ph->end_ns && due >= ph->end_ns) return false;
    *counted = due >= ph->mstart_ns;
    if (*counted && ph->limit &&
        atomic_fetch_add_explicit(&ph->claimed, 1, memory_order_relaxed) >= ph->limit)
        return false;
    return true;
}

bool bench_next_request(bench_phase *ph, uint64_t *due_ns, bool *counted)
{
    if (bench_stop_requested) return false;
    uint64_t now = bench_now_ns(), due = now;
    if (ph->open_loop) {
        uint64_t i = atomic_fetch_add_explicit(&ph->next, 1, memory_order_relaxed);
        due = idl_bench_sched_ns(ph->t0_ns, i, ph->rate);
    }
    if (!bench_claim_due(ph, due, now, counted)) return false;
    *due_ns = due;
    return true;
}

void bench_progress_line(const bench_phase *ph, uint64_t done, uint64_t failed, uint64_t now,
                         bool tty, uint64_t *prev_done, uint64_t *prev_ns)
{
    double dt = (double)(now - *prev_ns) / 1e9;
    double rps = dt > 0 ? (double)(done - *prev_done) / dt : 0;
    double elapsed = (double)(now - ph->t0_ns) / 1e9;
    /* On a terminal the line is rewritten in place; in a log, one per second. */
    fprintf(stderr, "%s%s %s %5.0fs  %llu requests  %.0f req/s  %llu errors   %s", tty ? "\r" : "",
            ph->name, now < ph->mstart_ns ? "warmup" : "run   ", elapsed, (unsigned long long)done,
            rps, (unsigned long long)failed, tty ? "" : "\n");
    fflush(stderr);
    *prev_done = done;
    *prev_ns = now;
}
