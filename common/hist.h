/* High-dynamic-range latency histograms: record a value in O(1) without
 * allocating, merge per-thread histograms, and read percentiles, min, max and
 * mean back with three significant digits, without keeping any sample.
 *
 * Values are unsigned integers in whatever unit the caller picks (the bench
 * records microseconds).  Buckets are log-linear: values below 2048 are exact;
 * above, each power of two is split into 1024 equal sub-buckets, so a value is
 * known to within 1/1024 (< 0.1%) of itself.  The range ends at IDL_HIST_MAX;
 * larger values are recorded as IDL_HIST_MAX and counted by
 * idl_hist_clamped().  One histogram takes about 140 KiB.
 *
 * A histogram is not thread-safe: give every thread its own and merge them
 * when the threads are done.  Readers take a const pointer and never modify.
 */
#ifndef IDL_HIST_H
#define IDL_HIST_H

#include <stdint.h>
#include <stdio.h>

/* The largest value a histogram holds: 60 s in microseconds. */
#define IDL_HIST_MAX UINT64_C(60000000)

typedef struct idl_hist idl_hist;

/* Creates an empty histogram.  Returns 0 or IDL_RESOURCE_EXHAUSTED. */
int idl_hist_new(idl_hist **out);

/* Frees h; NULL is fine. */
void idl_hist_free(idl_hist *h);

/* Forgets every recorded value. */
void idl_hist_reset(idl_hist *h);

/* Records value once, or n times.  O(1), never allocates.  A value above
 * IDL_HIST_MAX is recorded as IDL_HIST_MAX (and counted as clamped). */
void idl_hist_record(idl_hist *h, uint64_t value);
void idl_hist_record_n(idl_hist *h, uint64_t value, uint64_t n);

/* Adds every value recorded in src to dst (src is unchanged). */
void idl_hist_merge(idl_hist *dst, const idl_hist *src);

/* Number of values recorded; values clamped to IDL_HIST_MAX. */
uint64_t idl_hist_count(const idl_hist *h);
uint64_t idl_hist_clamped(const idl_hist *h);

/* The exact smallest and largest values recorded (after clamping); 0 when
 * empty. */
uint64_t idl_hist_min(const idl_hist *h);
uint64_t idl_hist_max(const idl_hist *h);

/* The exact mean of the recorded values (after clamping); 0 when empty. */
double idl_hist_mean(const idl_hist *h);

/* The value at percentile p (0..100; clamped into that range): the smallest
 * recorded value v such that at least p% of the values are <= v, reported as
 * the top of v's bucket (so never below the true value, and at most 0.1%
 * above it), and never outside [min, max].  p = 0 gives min, p = 100 max.
 * 0 when empty. */
uint64_t idl_hist_percentile(const idl_hist *h, double p);

/* The lowest and highest value that share value's bucket: what the histogram
 * cannot tell apart from value. */
uint64_t idl_hist_lowest_equivalent(uint64_t value);
uint64_t idl_hist_highest_equivalent(uint64_t value);

/* Writes the distribution as text to f: up to `rows` lines (at least 2; 0
 * picks 20), each a value range on a log scale between min and max with its
 * count, its share, the cumulative share and a bar of `#`.  unit is printed
 * after the values ("us"); it may be NULL.  Returns 0, or IDL_INTERNAL when
 * writing fails.  An empty histogram prints one line saying so. */
int idl_hist_print(const idl_hist *h, FILE *f, unsigned rows, const char *unit);

#endif
