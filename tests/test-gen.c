/* `idlookup gen`: the output is deterministic, prefix-stable, valid NDJSON in
 * the ingest format, and looks like a population: all ages with a few
 * children, households that share a landline, unique source ids. */
#include "cli_gen.h"
#include "status.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *data;
    size_t len;
} text;

/* The output of idl_gen_write in memory; data is NULL if it failed. */
static text gen_text(uint64_t count, uint64_t seed)
{
    text t = {NULL, 0};
    FILE *f = open_memstream(&t.data, &t.len);
    if (!f) return t;
    int rc = idl_gen_write(f, count, seed);
    if (fclose(f) != 0 || rc != IDL_OK) {
        free(t.data);
        t.data = NULL;
        t.len = 0;
    }
    return t;
}

static size_t count_lines(const text *t)
{
    size_t n = 0;
    for (size_t i = 0; i < t->len; i++)
        n += t->data[i] == '\n';
    return n;
}

/* Calls fn(line, len, index, ctx) for each line; returns the number of lines. */
static size_t each_line(const text *t, void (*fn)(const char *, size_t, size_t, void *), void *ctx)
{
    size_t start = 0, index = 0;
    for (size_t i = 0; i < t->len; i++) {
        if (t->data[i] != '\n') continue;
        fn(t->data + start, i - start, index++, ctx);
        start = i + 1;
    }
    return index;
}

static void deterministic_per_seed(void)
{
    text a = gen_text(2000, 42), b = gen_text(2000, 42), c = gen_text(2000, 43);
    CHECK(a.data && b.data && c.data);
    if (a.data && b.data && c.data) {
        CHECK(a.len > 2000 * 100);
        CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
        CHECK(a.len != c.len || memcmp(a.data, c.data, a.len) != 0);
        CHECK_INT(count_lines(&a), 2000);
        CHECK_INT(count_lines(&c), 2000);
    }
    free(a.data);
    free(b.data);
    free(c.data);
}

static void shorter_run_is_a_prefix(void)
{
    text small = gen_text(137, 9), big = gen_text(2000, 9);
    CHECK(small.data && big.data);
    if (small.data && big.data) {
        CHECK_INT(count_lines(&small), 137);
        CHECK(small.len < big.len && memcmp(small.data, big.data, small.len) == 0);
    }
    free(small.data);
    free(big.data);
}

static void zero_records_and_write_errors(void)
{
    text t = gen_text(0, 1);
    CHECK(t.data != NULL);
    CHECK_INT(t.len, 0);
    free(t.data);

    /* A stream that cannot be written: the failure is reported, not lost. */
    FILE *ro = fopen("/dev/null", "r");
    CHECK(ro != NULL);
    if (ro) {
        CHECK(idl_gen_write(ro, 5000, 1) != IDL_OK);
        fclose(ro);
    }
}

/* ---- Checking the records of one sample ---- */

enum { SAMPLE = 5000, MAX_PHONE_KEYS = SAMPLE * 3 };

typedef struct {
    size_t records, bad_json, missing_required, bad_source_id;
    size_t with_dob, children, minors, minors_not_children, accented_names, middle_names;
    size_t bad_email, bad_phone, bad_address, bad_ip, ipv6;
    size_t age_hist[100];
    size_t decade[10];
    uint64_t phone_keys[MAX_PHONE_KEYS]; /* number * SAMPLE + record index */
    size_t n_phone_keys;
} sample_stats;

static bool is_string(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) && json_string_length(v) > 0;
}

/* Age on the as-of date of a "YYYY-MM-DD" dob, or -1 if it is malformed. */
static int age_of(const char *dob)
{
    int y, m, d;
    char tail;
    if (strlen(dob) != 10 || sscanf(dob, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3) return -1;
    if (m < 1 || m > 12 || d < 1 || d > 31) return -1;
    int age = IDL_GEN_AS_OF_YEAR - y;
    if (m > IDL_GEN_AS_OF_MONTH || (m == IDL_GEN_AS_OF_MONTH && d > IDL_GEN_AS_OF_DAY)) age--;
    return age;
}

/* The ten NANP digits of a US number in any of the generated forms, or 0. */
static uint64_t nanp_digits(const char *s)
{
    char digits[16];
    size_t n = 0;
    for (const char *p = s; *p; p++) {
        if (*p >= '0' && *p <= '9') {
            if (n == sizeof digits) return 0;
            digits[n++] = *p;
        } else if (!strchr("()-. +", *p)) {
            return 0;
        }
    }
    const char *d = digits;
    if (n == 11 && digits[0] == '1') {
        d++;
        n--;
    }
    if (n != 10) return 0;
    /* NPA and NXX: first digit 2-9, not N11. */
    if (d[0] < '2' || d[3] < '2' || (d[1] == '1' && d[2] == '1') || (d[4] == '1' && d[5] == '1'))
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < 10; i++)
        v = v * 10 + (uint64_t)(d[i] - '0');
    return v;
}

static bool valid_email(const char *e)
{
    const char *at = strchr(e, '@');
    if (!at || at == e || strchr(at + 1, '@')) return false;
    const char *dot = strrchr(at + 1, '.');
    return dot && dot > at + 1 && dot[1] != '\0';
}

static bool valid_zip(const char *z)
{
    size_t n = strlen(z);
    if (n != 5 && n != 10) return false;
    for (size_t i = 0; i < n; i++) {
        bool want_dash = i == 5;
        if (want_dash ? z[i] != '-' : (z[i] < '0' || z[i] > '9')) return false;
    }
    return true;
}

static bool has_non_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return true;
    return false;
}

static void check_record(const char *line, size_t len, size_t index, void *ctx)
{
    sample_stats *st = ctx;
    st->records++;
    json_error_t err;
    json_t *rec = json_loadb(line, len, 0, &err);
    if (!json_is_object(rec)) {
        st->bad_json++;
        json_decref(rec);
        return;
    }
    if (!is_string(rec, "source_id") || !is_string(rec, "first_name") ||
        !is_string(rec, "last_name")) {
        st->missing_required++;
        json_decref(rec);
        return;
    }
    char want_id[32];
    snprintf(want_id, sizeof want_id, "gen-%08zu", index + 1);
    if (strcmp(json_string_value(json_object_get(rec, "source_id")), want_id) != 0)
        st->bad_source_id++;
    if (has_non_ascii(json_string_value(json_object_get(rec, "first_name"))) ||
        has_non_ascii(json_string_value(json_object_get(rec, "last_name"))))
        st->accented_names++;
    if (is_string(rec, "middle_name")) st->middle_names++;

    json_t *dob = json_object_get(rec, "dob");
    bool minor = json_is_true(json_object_get(rec, "minor"));
    st->minors += minor;
    if (dob) {
        int age = json_is_string(dob) ? age_of(json_string_value(dob)) : -1;
        if (age < 0 || age > 99) {
            st->missing_required++;
        } else {
            st->with_dob++;
            st->age_hist[age]++;
            st->decade[age / 10]++;
            st->children += age < 13;
            st->minors_not_children += minor && age >= 13;
        }
    }

    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(rec, "emails"), i, v)
    {
        if (!json_is_string(v) || !valid_email(json_string_value(v))) st->bad_email++;
    }
    json_array_foreach(json_object_get(rec, "phones"), i, v)
    {
        json_t *num = json_is_object(v) ? json_object_get(v, "number") : v;
        uint64_t digits = json_is_string(num) ? nanp_digits(json_string_value(num)) : 0;
        if (!digits) {
            st->bad_phone++;
            continue;
        }
        if (json_is_object(v)) {
            const char *lt = json_string_value(json_object_get(v, "line_type"));
            if (!lt || (strcmp(lt, "mobile") != 0 && strcmp(lt, "landline") != 0)) st->bad_phone++;
        }
        if (st->n_phone_keys < MAX_PHONE_KEYS)
            st->phone_keys[st->n_phone_keys++] = digits * SAMPLE + index;
    }
    json_t *addrs = json_object_get(rec, "addresses");
    if (!json_is_array(addrs) || json_array_size(addrs) == 0) st->bad_address++;
    json_array_foreach(addrs, i, v)
    {
        if (!is_string(v, "street") || !is_string(v, "city") || !is_string(v, "state") ||
            !is_string(v, "zip") || !valid_zip(json_string_value(json_object_get(v, "zip"))))
            st->bad_address++;
    }
    json_array_foreach(json_object_get(rec, "ips"), i, v)
    {
        unsigned char buf[16];
        const char *ip = json_string_value(v);
        if (ip && inet_pton(AF_INET, ip, buf) == 1) continue;
        if (ip && inet_pton(AF_INET6, ip, buf) == 1) {
            st->ipv6++;
            continue;
        }
        st->bad_ip++;
    }
    json_decref(rec);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Numbers that appear in two or more different records. */
static size_t shared_numbers(sample_stats *st)
{
    qsort(st->phone_keys, st->n_phone_keys, sizeof *st->phone_keys, cmp_u64);
    size_t shared = 0;
    for (size_t i = 0; i < st->n_phone_keys;) {
        uint64_t number = st->phone_keys[i] / SAMPLE;
        size_t records = 0;
        uint64_t last_record = UINT64_MAX;
        for (; i < st->n_phone_keys && st->phone_keys[i] / SAMPLE == number; i++) {
            uint64_t rec = st->phone_keys[i] % SAMPLE;
            records += rec != last_record;
            last_record = rec;
        }
        shared += records >= 2;
    }
    return shared;
}

static void records_are_valid_and_realistic(void)
{
    text t = gen_text(SAMPLE, 2024);
    CHECK(t.data != NULL);
    if (!t.data) return;
    sample_stats *st = calloc(1, sizeof *st);
    CHECK(st != NULL);
    if (!st) {
        free(t.data);
        return;
    }
    CHECK_INT(each_line(&t, check_record, st), SAMPLE);
    CHECK(t.len > 0 && t.data[t.len - 1] == '\n');

    /* Every line is a record in the ingest format. */
    CHECK_INT(st->records, SAMPLE);
    CHECK_INT(st->bad_json, 0);
    CHECK_INT(st->missing_required, 0);
    CHECK_INT(st->bad_source_id, 0); /* so the ids are unique too */
    CHECK_INT(st->bad_email, 0);
    CHECK_INT(st->bad_phone, 0);
    CHECK_INT(st->bad_address, 0);
    CHECK_INT(st->bad_ip, 0);

    /* Most have a dob, a few do not. */
    CHECK(st->with_dob > SAMPLE * 90 / 100 && st->with_dob < SAMPLE);

    /* All ages: every decade up to the eighties is there, and the spread is a
     * population's, not a uniform draw or one age. */
    for (int d = 0; d <= 8; d++)
        CHECK(st->decade[d] > 0);
    size_t young = 0, old = 0, seen = 0, median = 0;
    for (int a = 0; a < 100; a++) {
        if (a <= 5) young += st->age_hist[a];
        if (a >= 65) old += st->age_hist[a];
        if (seen < st->with_dob / 2) median = (size_t)a;
        seen += st->age_hist[a];
    }
    CHECK(young > 0);
    CHECK(st->age_hist[85] + st->age_hist[86] + st->age_hist[87] + st->age_hist[88] +
              st->age_hist[89] + st->age_hist[90] + st->age_hist[91] + st->age_hist[92] +
              st->age_hist[93] + st->age_hist[94] + st->age_hist[95] >
          0);
    CHECK(old > st->with_dob * 8 / 100 && old < st->with_dob * 35 / 100);
    CHECK(median >= 30 && median <= 60);

    /* Some children (about 3%, never most), and the minor flag now and then,
     * only on children. */
    CHECK(st->children >= SAMPLE / 100 && st->children <= SAMPLE * 6 / 100);
    CHECK(st->minors >= 1 && st->minors <= SAMPLE / 50);
    CHECK_INT(st->minors_not_children, 0);

    /* Households share landlines: many numbers appear in two or more records. */
    size_t shared = shared_numbers(st);
    CHECK(shared >= SAMPLE / 40);

    /* Names vary in form: middle names, accented spellings; IPv6 appears. */
    CHECK(st->middle_names > SAMPLE / 3 && st->middle_names < SAMPLE * 3 / 4);
    CHECK(st->accented_names > 0);
    CHECK(st->ipv6 > 0);

    free(st);
    free(t.data);
}

int main(void)
{
    RUN(deterministic_per_seed);
    RUN(shorter_run_is_a_prefix);
    RUN(zero_records_and_write_errors);
    RUN(records_are_valid_and_realistic);
    return test_summary();
}
