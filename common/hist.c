/* High-dynamic-range latency histograms (see hist.h): log-linear buckets with
 * 1024 sub-buckets per power of two, so recording is an index computation and
 * one add, and percentiles come from one walk over the counts.
 */
#include "hist.h"
#include "status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Values below 2^SUB_BITS get a bucket each; above, the top SUB_BITS bits of a
 * value (its leading 1 and the next 10 bits) pick the sub-bucket, the position
 * of the leading 1 picks the power of two. */
#define SUB_BITS 11
#define SUB_COUNT (UINT64_C(1) << SUB_BITS)
#define HALF_BITS (SUB_BITS - 1)

struct idl_hist {
    uint64_t count;
    uint64_t clamped;
    uint64_t min; /* UINT64_MAX while empty, so the first record sets it */
    uint64_t max;
    uint64_t sum; /* exact up to 3e11 values of 60 s each */
    size_t nbuckets;
    uint64_t counts[];
};

static size_t bucket_index(uint64_t v)
{
    if (v < SUB_COUNT) return (size_t)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - HALF_BITS;
    /* v >> shift is in [1024, 2048): the sub-bucket inside this power of two,
     * offset so that consecutive powers follow each other without a gap. */
    return ((size_t)shift << HALF_BITS) + (size_t)(v >> shift);
}

static uint64_t bucket_low(size_t idx)
{
    if (idx < SUB_COUNT) return idx;
    unsigned shift = (unsigned)(idx >> HALF_BITS) - 1u;
    uint64_t sub = (uint64_t)idx - ((uint64_t)shift << HALF_BITS);
    return sub << shift;
}

static uint64_t bucket_width(size_t idx)
{
    if (idx < SUB_COUNT) return 1;
    return UINT64_C(1) << ((unsigned)(idx >> HALF_BITS) - 1u);
}

uint64_t idl_hist_lowest_equivalent(uint64_t value)
{
    return bucket_low(bucket_index(value));
}

uint64_t idl_hist_highest_equivalent(uint64_t value)
{
    size_t idx = bucket_index(value);
    return bucket_low(idx) + bucket_width(idx) - 1;
}

int idl_hist_new(idl_hist **out)
{
    size_t n = bucket_index(IDL_HIST_MAX) + 1;
    idl_hist *h = calloc(1, sizeof(*h) + n * sizeof(h->counts[0]));
    if (!h) return IDL_RESOURCE_EXHAUSTED;
    h->nbuckets = n;
    h->min = UINT64_MAX;
    *out = h;
    return 0;
}

void idl_hist_free(idl_hist *h)
{
    free(h);
}

void idl_hist_reset(idl_hist *h)
{
    memset(h->counts, 0, h->nbuckets * sizeof(h->counts[0]));
    h->count = h->clamped = h->max = h->sum = 0;
    h->min = UINT64_MAX;
}

void idl_hist_record_n(idl_hist *h, uint64_t value, uint64_t n)
{
    if (n == 0) return;
    if (value > IDL_HIST_MAX) {
        value = IDL_HIST_MAX;
        h->clamped += n;
    }
    h->counts[bucket_index(value)] += n;
    h->count += n;
    h->sum += value * n;
    if (value < h->min) h->min = value;
    if (value > h->max) h->max = value;
}

void idl_hist_record(idl_hist *h, uint64_t value)
{
    idl_hist_record_n(h, value, 1);
}

void idl_hist_merge(idl_hist *dst, const idl_hist *src)
{
    if (src->count == 0) return;
    for (size_t i = 0; i < dst->nbuckets; i++)
        dst->counts[i] += src->counts[i];
    dst->count += src->count;
    dst->clamped += src->clamped;
    dst->sum += src->sum;
    if (src->min < dst->min) dst->min = src->min;
    if (src->max > dst->max) dst->max = src->max;
}

uint64_t idl_hist_count(const idl_hist *h)
{
    return h->count;
}

uint64_t idl_hist_clamped(const idl_hist *h)
{
    return h->clamped;
}

uint64_t idl_hist_min(const idl_hist *h)
{
    return h->count ? h->min : 0;
}

uint64_t idl_hist_max(const idl_hist *h)
{
    return h->max;
}

double idl_hist_mean(const idl_hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}

uint64_t idl_hist_percentile(const idl_hist *h, double p)
{
    if (h->count == 0) return 0;
    if (!(p > 0.0)) return h->min;
    if (p >= 100.0) return h->max;
    /* The rank of the wanted value, 1-based.  The tiny subtraction keeps
     * 99.9% of 10000 at rank 9990 although the product rounds to
     * 9990.000000000002. */
    double x = p / 100.0 * (double)h->count;
    uint64_t rank = (uint64_t)ceil(x - x * 1e-12);
    if (rank < 1) rank = 1;
    uint64_t cum = 0;
    for (size_t i = 0; i < h->nbuckets; i++) {
        cum += h->counts[i];
        if (cum >= rank) {
            uint64_t v = bucket_low(i) + bucket_width(i) - 1;
            if (v > h->max) v = h->max;
            if (v < h->min) v = h->min;
            return v;
        }
    }
    return h->max;
}

/* Row bounds for idl_hist_print: bound[k] is the first value of row k, rows
 * are strictly increasing integers, evenly spaced on a log scale from min to
 * max (linear when the range has fewer values than rows).  Returns the number
 * of rows. */
static unsigned row_bounds(uint64_t min, uint64_t max, unsigned rows, uint64_t *bound)
{
    if (max - min + 1 <= rows) {
        unsigned n = (unsigned)(max - min + 1);
        for (unsigned k = 0; k < n; k++)
            bound[k] = min + k;
        return n;
    }
    double lo = min ? (double)min : 1.0;
    double ratio = log((double)max / lo);
    unsigned n = 0;
    bound[n++] = min;
    for (unsigned k = 1; k < rows; k++) {
        uint64_t b = (uint64_t)ceil(lo * exp(ratio * k / rows));
        if (b <= bound[n - 1]) b = bound[n - 1] + 1;
        if (b > max) break;
        bound[n++] = b;
    }
    return n;
}

int idl_hist_print(const idl_hist *h, FILE *f, unsigned rows, const char *unit)
{
    enum { MAX_ROWS = 200, BAR = 40 };
    uint64_t bound[MAX_ROWS];
    uint64_t cnt[MAX_ROWS] = {0};
    if (!unit) unit = "";
    if (h->count == 0) {
        fprintf(f, "  (no values recorded)\n");
        return ferror(f) ? IDL_INTERNAL : 0;
    }
    if (rows == 0) rows = 20;
    if (rows < 2) rows = 2;
    if (rows > MAX_ROWS) rows = MAX_ROWS;
    unsigned n = row_bounds(h->min, h->max, rows, bound);

    /* Each bucket goes to the row holding its lowest value (clamped into
     * [min, max]); a bucket is at most 0.1% wide, so the error at row edges is
     * of the histogram's own precision. */
    unsigned row = 0;
    for (size_t i = 0; i < h->nbuckets; i++) {
        if (!h->counts[i]) continue;
        uint64_t v = bucket_low(i);
        if (v < h->min) v = h->min;
        while (row + 1 < n && v >= bound[row + 1])
            row++;
        cnt[row] += h->counts[i];
    }
    uint64_t top = 0;
    for (unsigned k = 0; k < n; k++)
        if (cnt[k] > top) top = cnt[k];

    char head[64];
    snprintf(head, sizeof(head), *unit ? "value range (%s)" : "value range%s", unit);
    fprintf(f, "  %-30s %12s %8s %8s\n", head, "count", "share", "cumul");
    uint64_t cum = 0;
    for (unsigned k = 0; k < n; k++) {
        uint64_t hi = k + 1 < n ? bound[k + 1] - 1 : h->max;
        cum += cnt[k];
        char bar[BAR + 1];
        unsigned len = (unsigned)((double)cnt[k] * BAR / (double)top + 0.5);
        if (len == 0 && cnt[k]) len = 1; /* a non-empty row is never drawn as empty */
        memset(bar, '#', len);
        bar[len] = '\0';
        fprintf(f, "  %12llu .. %-12llu %12llu %7.2f%% %7.2f%%%s%s\n", (unsigned long long)bound[k],
                (unsigned long long)hi, (unsigned long long)cnt[k],
                100.0 * (double)cnt[k] / (double)h->count, 100.0 * (double)cum / (double)h->count,
                len ? "  " : "", bar);
    }
    return ferror(f) ? IDL_INTERNAL : 0;
}
