/* The latency histogram: percentiles of known inputs within the histogram's
 * precision, exact min/max/mean, merges, clamping and the text rendering. */
#include "hist.h"
#include "testutil.h"

#include <stdint.h>
#include <stdlib.h>

/* True when got is want within the histogram's precision (1/1024 of the
 * value), and never below it (percentiles report the top of a bucket). */
static int near(uint64_t got, uint64_t want)
{
    return got >= want && got - want <= want / 1024 + 1;
}

static idl_hist *make(void)
{
    idl_hist *h = NULL;
    CHECK(idl_hist_new(&h) == 0);
    return h;
}

static void empty_histogram(void)
{
    idl_hist *h = make();
    CHECK_INT(idl_hist_count(h), 0);
    CHECK_INT(idl_hist_min(h), 0);
    CHECK_INT(idl_hist_max(h), 0);
    CHECK_INT(idl_hist_percentile(h, 50), 0);
    CHECK(idl_hist_mean(h) == 0.0);
    idl_hist_free(h);
    idl_hist_free(NULL);
}

static void uniform_1_to_10000(void)
{
    idl_hist *h = make();
    for (uint64_t v = 1; v <= 10000; v++)
        idl_hist_record(h, v);
    CHECK_INT(idl_hist_count(h), 10000);
    CHECK_INT(idl_hist_min(h), 1);
    CHECK_INT(idl_hist_max(h), 10000);
    CHECK(near(idl_hist_percentile(h, 50), 5000));
    CHECK(near(idl_hist_percentile(h, 90), 9000));
    CHECK(near(idl_hist_percentile(h, 99), 9900));
    CHECK(near(idl_hist_percentile(h, 99.9), 9990));
    CHECK_INT(idl_hist_percentile(h, 0), 1);
    CHECK_INT(idl_hist_percentile(h, 100), 10000);
    CHECK_INT(idl_hist_percentile(h, 150), 10000);
    CHECK_INT(idl_hist_percentile(h, -3), 1);
    /* Small values are exact: the 10th value is 10. */
    CHECK_INT(idl_hist_percentile(h, 0.1), 10);
    CHECK(idl_hist_mean(h) == 5000.5);
    idl_hist_free(h);
}

static void exact_small_values(void)
{
    /* Below 2048 every value has its own bucket, so ranks are exact: the
     * 999th of 1..1000 is p99.9 although 99.9% of 1000 computes as
     * 999.0000000000001 in floating point. */
    idl_hist *h = make();
    for (uint64_t v = 1; v <= 1000; v++)
        idl_hist_record(h, v);
    CHECK_INT(idl_hist_percentile(h, 50), 500);
    CHECK_INT(idl_hist_percentile(h, 90), 900);
    CHECK_INT(idl_hist_percentile(h, 99), 990);
    CHECK_INT(idl_hist_percentile(h, 99.9), 999);
    CHECK_INT(idl_hist_percentile(h, 99.95), 1000);
    idl_hist_free(h);
}

static void single_value(void)
{
    idl_hist *h = make();
    idl_hist_record(h, 123456);
    /* Every percentile is the one value, exactly: the bucket top is capped at
     * the recorded max. */
    CHECK_INT(idl_hist_percentile(h, 1), 123456);
    CHECK_INT(idl_hist_percentile(h, 50), 123456);
    CHECK_INT(idl_hist_percentile(h, 99.9), 123456);
    CHECK_INT(idl_hist_min(h), 123456);
    CHECK_INT(idl_hist_max(h), 123456);
    CHECK(idl_hist_mean(h) == 123456.0);
    idl_hist_reset(h);
    CHECK_INT(idl_hist_count(h), 0);
    idl_hist_record(h, 0);
    CHECK_INT(idl_hist_percentile(h, 50), 0);
    CHECK_INT(idl_hist_count(h), 1);
    idl_hist_free(h);
}

static void relative_error_bound(void)
{
    /* Across the whole range a bucket never spans more than 1/1024 of its
     * values, and neighbouring values land in ordered buckets. */
    uint64_t prev_low = 0;
    for (uint64_t v = 1; v <= IDL_HIST_MAX; v += v / 97 + 1) {
        uint64_t lo = idl_hist_lowest_equivalent(v), hi = idl_hist_highest_equivalent(v);
        CHECK(lo <= v && v <= hi);
        CHECK(hi - lo <= v / 1024);
        CHECK(lo >= prev_low);
        prev_low = lo;
    }
    CHECK_INT(idl_hist_lowest_equivalent(2047), 2047);
    CHECK_INT(idl_hist_highest_equivalent(2048), 2049);
    CHECK_INT(idl_hist_lowest_equivalent(4097), 4096);
    CHECK_INT(idl_hist_highest_equivalent(4096), 4099);
}

static void merges(void)
{
    idl_hist *a = make(), *b = make(), *all = make();
    for (uint64_t v = 1; v <= 10000; v++) {
        idl_hist_record(v % 2 ? a : b, v * 10);
        idl_hist_record(all, v * 10);
    }
    idl_hist *sum = make();
    idl_hist_merge(sum, a);
    idl_hist_merge(sum, b);
    CHECK_INT(idl_hist_count(sum), 10000);
    CHECK_INT(idl_hist_min(sum), 10);
    CHECK_INT(idl_hist_max(sum), 100000);
    CHECK(idl_hist_mean(sum) == idl_hist_mean(all));
    double ps[] = {1, 50, 90, 99, 99.9, 99.99};
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
        CHECK_INT(idl_hist_percentile(sum, ps[i]), idl_hist_percentile(all, ps[i]));
    CHECK(near(idl_hist_percentile(sum, 50), 50000));
    /* Merging an empty histogram changes nothing, min included. */
    idl_hist *empty = make();
    idl_hist_merge(sum, empty);
    CHECK_INT(idl_hist_min(sum), 10);
    /* Merging into an empty one copies min and max. */
    idl_hist_merge(empty, b);
    CHECK_INT(idl_hist_min(empty), 20);
    CHECK_INT(idl_hist_max(empty), 100000);
    idl_hist_free(a);
    idl_hist_free(b);
    idl_hist_free(all);
    idl_hist_free(sum);
    idl_hist_free(empty);
}

static void huge_values_clamp(void)
{
    idl_hist *h = make();
    idl_hist_record(h, 5);
    idl_hist_record(h, UINT64_MAX);
    idl_hist_record_n(h, IDL_HIST_MAX + 1, 3);
    CHECK_INT(idl_hist_count(h), 5);
    CHECK_INT(idl_hist_clamped(h), 4);
    CHECK_INT(idl_hist_max(h), IDL_HIST_MAX);
    CHECK_INT(idl_hist_percentile(h, 99), IDL_HIST_MAX);
    CHECK_INT(idl_hist_percentile(h, 10), 5);
    /* A value exactly at the limit is not clamped. */
    idl_hist_record(h, IDL_HIST_MAX);
    CHECK_INT(idl_hist_clamped(h), 4);
    idl_hist_record_n(h, 7, 0);
    CHECK_INT(idl_hist_count(h), 6);
    idl_hist_free(h);
}

static void skewed_tail(void)
{
    /* 990 fast values and 10 slow ones: p99 is still fast, p99.9 is slow. */
    idl_hist *h = make();
    idl_hist_record_n(h, 100, 990);
    idl_hist_record_n(h, 2000000, 10);
    CHECK_INT(idl_hist_percentile(h, 50), 100);
    CHECK_INT(idl_hist_percentile(h, 99), 100);
    CHECK(near(idl_hist_percentile(h, 99.1), 2000000));
    CHECK_INT(idl_hist_percentile(h, 99.9), 2000000);
    idl_hist_free(h);
}

static void text_rendering(void)
{
    idl_hist *h = make();
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(idl_hist_print(h, f, 10, "us") == 0);
    fflush(f);
    CHECK(strstr(buf, "no values") != NULL);
    fclose(f);
    free(buf);

    for (uint64_t v = 1; v <= 100000; v++)
        idl_hist_record(h, v);
    buf = NULL;
    f = open_memstream(&buf, &len);
    CHECK(idl_hist_print(h, f, 10, "us") == 0);
    fclose(f);
    /* A header and ten rows; the last row ends at the max with 100%. */
    int lines = 0;
    for (char *p = buf; *p; p++)
        lines += *p == '\n';
    CHECK_INT(lines, 11);
    CHECK(strstr(buf, ".. 100000 ") != NULL);
    CHECK(strstr(buf, "(us)") != NULL);
    CHECK(strstr(buf, "100.00%") != NULL);
    CHECK(strchr(buf, '#') != NULL);
    free(buf);

    /* Few distinct values: one row per value. */
    idl_hist_reset(h);
    idl_hist_record_n(h, 3, 2);
    idl_hist_record_n(h, 5, 2);
    buf = NULL;
    f = open_memstream(&buf, &len);
    CHECK(idl_hist_print(h, f, 20, NULL) == 0);
    fclose(f);
    lines = 0;
    for (char *p = buf; *p; p++)
        lines += *p == '\n';
    CHECK_INT(lines, 4);
    CHECK(strstr(buf, " 50.00%") != NULL);
    free(buf);
    idl_hist_free(h);
}

int main(void)
{
    RUN(empty_histogram);
    RUN(uniform_1_to_10000);
    RUN(exact_small_values);
    RUN(single_value);
    RUN(relative_error_bound);
    RUN(merges);
    RUN(huge_values_clamp);
    RUN(skewed_tail);
    RUN(text_rendering);
    return test_summary();
}
