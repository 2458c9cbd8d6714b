/* The analytics aggregation and its writers (see analytics_lib.h).
 *
 * Groups live in an open-addressing hash table keyed by (day, customer,
 * method); each keeps its latencies in a growing array (sorted once, at report
 * time, for exact percentiles) and its fingerprints in an open-addressing set,
 * so millions of entries cost O(n log n) in total and nothing is quadratic.
 */
#include "analytics_lib.h"
#include "json.h"
#include "store.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

/* A UTF-8 cleaned log field: each byte may grow to 3 (U+FFFD). */
#define CLEAN_MAX (3 * IDL_QLOG_FIELD_MAX + 1)

typedef struct group {
    uint64_t hash;
    uint64_t day;                  /* days since 1970-01-01 (UTC) */
    const char *customer, *method; /* point into names[] */
    uint64_t requests, hits;
    uint64_t errors[IDL_STATUS_COUNT];
    uint32_t *lat; /* requests entries */
    size_t lat_cap;
    uint64_t *fps; /* open addressing; 0 marks an empty slot ... */
    size_t fps_cap, fps_n;
    bool fp_zero; /* ... so a fingerprint of 0 is remembered here */
    char names[]; /* customer '\0' method '\0' */
} group;

struct idl_an {
    group **slots; /* power-of-two table, NULL = empty */
    size_t cap, n;
    group *last; /* log entries come in time order: consecutive ones often share a group */
    uint64_t count;
};

/* ---- UTF-8 ---- */

/* Length of the well-formed UTF-8 sequence at p (NUL-terminated), or 0 when
 * the bytes there are not one (overlong forms, surrogates and code points
 * above U+10FFFF included).  Never reads past the terminating NUL, because a
 * NUL fails every continuation-byte test. */
static size_t utf8_seq_len(const unsigned char *p)
{
    unsigned char c = p[0];
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80 ? 4 : 0;
    }
    return 0;
}

void idl_an_utf8_clean(const char *s, char *out, size_t outsz)
{
    static const char repl[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    if (outsz == 0) return;
    while (*p) {
        size_t n = utf8_seq_len(p);
        const char *src = n ? (const char *)p : repl;
        size_t w = n ? n : 3;
        if (o + w >= outsz) break;
        memcpy(out + o, src, w);
        o += w;
        p += n ? n : 1;
    }
    out[o] = 0;
}

/* ---- time ---- */

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int idl_an_parse_day(const char *s, uint64_t *start_us)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-') return IDL_INVALID_ARGUMENT;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9')) return IDL_INVALID_ARGUMENT;
    int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    int m = (s[5] - '0') * 10 + (s[6] - '0');
    int d = (s[8] - '0') * 10 + (s[9] - '0');
    if (y < 1970 || m < 1 || m > 12 || d < 1) return IDL_INVALID_ARGUMENT;
    int dim = mdays[m - 1] + (m == 2 && is_leap(y));
    if (d > dim) return IDL_INVALID_ARGUMENT;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d};
    time_t t = timegm(&tm);
    if (t < 0) return IDL_INVALID_ARGUMENT;
    *start_us = (uint64_t)t * 1000000u;
    return IDL_OK;
}

static void format_day_num(uint64_t day, char out[16])
{
    time_t t = (time_t)(day * 86400u);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || tm.tm_year > 999999 - 1900) {
        strcpy(out, "0000-00-00");
        return;
    }
    snprintf(out, 16, "%04d-%02d-%02d", (tm.tm_year + 1900) % 1000000, (tm.tm_mon + 1) % 100,
             tm.tm_mday % 100);
}

void idl_an_format_day(uint64_t time_us, char out[16])
{
    format_day_num(time_us / IDL_AN_US_PER_DAY, out);
}

void idl_an_format_time(uint64_t time_us, char out[40])
{
    time_t t = (time_t)(time_us / 1000000u);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || tm.tm_year > 999999 - 1900) {
        strcpy(out, "0000-00-00T00:00:00.000000Z");
        return;
    }
    snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", (tm.tm_year + 1900) % 1000000,
             (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
             tm.tm_sec % 100, (unsigned)(time_us % 1000000u));
}

/* ---- aggregation ---- */

int idl_an_new(idl_an **out)
{
    idl_an *a = calloc(1, sizeof(*a));
    if (!a) return IDL_RESOURCE_EXHAUSTED;
    a->cap = 64;
    a->slots = calloc(a->cap, sizeof(*a->slots));
    if (!a->slots) {
        free(a);
        return IDL_RESOURCE_EXHAUSTED;
    }
    *out = a;
    return IDL_OK;
}

static void group_free(group *g)
{
    if (!g) return;
    free(g->lat);
    free(g->fps);
    free(g);
}

void idl_an_free(idl_an *a)
{
    if (!a) return;
    for (size_t i = 0; i < a->cap; i++)
        group_free(a->slots[i]);
    free(a->slots);
    free(a);
}

uint64_t idl_an_count(const idl_an *a)
{
    return a->count;
}

static uint64_t group_hash(uint64_t day, const char *customer, size_t lc, const char *method,
                           size_t lm)
{
    /* day, customer with its NUL (so ("ab","c") and ("a","bc") differ), method */
    char buf[8 + 2 * CLEAN_MAX];
    memcpy(buf, &day, 8);
    memcpy(buf + 8, customer, lc + 1);
    memcpy(buf + 8 + lc + 1, method, lm);
    return XXH3_64bits(buf, 8 + lc + 1 + lm);
}

static bool group_is(const group *g, uint64_t day, const char *customer, const char *method)
{
    return g->day == day && strcmp(g->customer, customer) == 0 && strcmp(g->method, method) == 0;
}

static int table_grow(idl_an *a)
{
    size_t ncap = a->cap * 2;
    group **ns = calloc(ncap, sizeof(*ns));
    if (!ns) return IDL_RESOURCE_EXHAUSTED;
    for (size_t i = 0; i < a->cap; i++) {
        group *g = a->slots[i];
        if (!g) continue;
        size_t j = (size_t)g->hash & (ncap - 1);
        while (ns[j])
            j = (j + 1) & (ncap - 1);
        ns[j] = g;
    }
    free(a->slots);
    a->slots = ns;
    a->cap = ncap;
    return IDL_OK;
}

/* Finds or creates the group; *out is NULL only on IDL_RESOURCE_EXHAUSTED. */
static int group_get(idl_an *a, uint64_t day, const char *customer, const char *method, group **out)
{
    if (a->last && group_is(a->last, day, customer, method)) {
        *out = a->last;
        return IDL_OK;
    }
    size_t lc = strlen(customer), lm = strlen(method);
    uint64_t h = group_hash(day, customer, lc, method, lm);
    size_t j = (size_t)h & (a->cap - 1);
    for (group *g; (g = a->slots[j]) != NULL; j = (j + 1) & (a->cap - 1)) {
        if (g->hash == h && group_is(g, day, customer, method)) {
            *out = a->last = g;
            return IDL_OK;
        }
    }
    /* Keep the load under 1/2 so probes stay short. */
    if ((a->n + 1) * 2 > a->cap) {
        if (table_grow(a)) return IDL_RESOURCE_EXHAUSTED;
        j = (size_t)h & (a->cap - 1);
        while (a->slots[j])
            j = (j + 1) & (a->cap - 1);
    }
    group *g = calloc(1, sizeof(*g) + lc + lm + 2);
    if (!g) return IDL_RESOURCE_EXHAUSTED;
    g->hash = h;
    g->day = day;
    memcpy(g->names, customer, lc + 1);
    memcpy(g->names + lc + 1, method, lm + 1);
    g->customer = g->names;
    g->method = g->names + lc + 1;
    a->slots[j] = g;
    a->n++;
    *out = a->last = g;
    return IDL_OK;
}

/* Fingerprints are keyed hashes already, but a cheap finalizer keeps the set
 * well spread even if that ever changes. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static void fps_place(uint64_t *slots, size_t cap, uint64_t fp)
{
    size_t j = (size_t)mix64(fp) & (cap - 1);
    while (slots[j])
        j = (j + 1) & (cap - 1);
    slots[j] = fp;
}

/* Makes room for need fingerprints at a load of at most 3/4. */
static int fps_reserve(group *g, size_t need)
{
    if (need * 4 <= g->fps_cap * 3) return IDL_OK;
    size_t ncap = g->fps_cap ? g->fps_cap : 8;
    while (need * 4 > ncap * 3)
        ncap *= 2;
    uint64_t *ns = calloc(ncap, sizeof(*ns));
    if (!ns) return IDL_RESOURCE_EXHAUSTED;
    for (size_t i = 0; i < g->fps_cap; i++)
        if (g->fps[i]) fps_place(ns, ncap, g->fps[i]);
    free(g->fps);
    g->fps = ns;
    g->fps_cap = ncap;
    return IDL_OK;
}

/* Adds fp to the set; room was reserved, so it cannot fail. */
static void fps_add(group *g, uint64_t fp)
{
    if (fp == 0) {
        g->fp_zero = true;
        return;
    }
    size_t j = (size_t)mix64(fp) & (g->fps_cap - 1);
    for (; g->fps[j]; j = (j + 1) & (g->fps_cap - 1))
        if (g->fps[j] == fp) return;
    g->fps[j] = fp;
    g->fps_n++;
}

int idl_an_add(idl_an *a, const idl_qlog_entry *e)
{
    char customer[CLEAN_MAX], method[CLEAN_MAX];
    /* The log holds strings as sent (a method name is whatever the caller
     * wrote, possibly cut mid-character at 127 bytes); group by the cleaned
     * text so the report is valid UTF-8 and no two groups print alike. */
    idl_an_utf8_clean(e->customer, customer, sizeof customer);
    idl_an_utf8_clean(e->method, method, sizeof method);
    group *g;
    if (group_get(a, e->time_us / IDL_AN_US_PER_DAY, customer, method, &g))
        return IDL_RESOURCE_EXHAUSTED;
    /* Everything that can fail comes first, so a failed add counts nothing. */
    if (g->requests == g->lat_cap) {
        size_t ncap = g->lat_cap ? g->lat_cap * 2 : 8;
        uint32_t *nl = realloc(g->lat, ncap * sizeof(*nl));
        if (!nl) return IDL_RESOURCE_EXHAUSTED;
        g->lat = nl;
        g->lat_cap = ncap;
    }
    uint32_t n_fps = e->n_fps < IDL_QLOG_MAX_FPS ? e->n_fps : IDL_QLOG_MAX_FPS;
    if (fps_reserve(g, g->fps_n + n_fps)) return IDL_RESOURCE_EXHAUSTED;
    for (uint32_t i = 0; i < n_fps; i++)
        fps_add(g, e->fps[i]);
    g->lat[g->requests++] = e->latency_us;
    g->hits += e->n_persons >= 1;
    int code = e->code >= 0 && e->code < IDL_STATUS_COUNT ? e->code : IDL_UNKNOWN;
    g->errors[code]++;
    a->count++;
    return IDL_OK;
}

uint32_t idl_an_percentile(const uint32_t *sorted, size_t n, unsigned p)
{
    /* rank = ceil(p * n / 100), in integers so 95% of 20 is exactly 19. */
    size_t rank = ((size_t)p * n + 99) / 100;
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return sorted[rank - 1];
}

static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

static int cmp_group(const void *x, const void *y)
{
    const group *a = *(const group *const *)x, *b = *(const group *const *)y;
    if (a->day != b->day) return a->day < b->day ? -1 : 1;
    int c = strcmp(a->customer, b->customer);
    return c ? c : strcmp(a->method, b->method);
}

int idl_an_report_build(idl_an *a, bool deidentified, unsigned k, idl_an_report **out)
{
    if (deidentified && k == 0) return IDL_INVALID_ARGUMENT;
    int rc = IDL_RESOURCE_EXHAUSTED;
    group **list = malloc((a->n ? a->n : 1) * sizeof(*list));
    idl_an_report *r = calloc(1, sizeof(*r));
    if (!list || !r) goto fail;
    r->groups = calloc(a->n ? a->n : 1, sizeof(*r->groups));
    if (!r->groups) goto fail;
    size_t n = 0;
    for (size_t i = 0; i < a->cap; i++)
        if (a->slots[i]) list[n++] = a->slots[i];
    qsort(list, n, sizeof(*list), cmp_group);
    r->deidentified = deidentified;
    r->k = deidentified ? k : 0;
    for (size_t i = 0; i < n; i++) {
        group *g = list[i];
        if (g->requests == 0) continue; /* created by an add that then ran out of memory */
        uint64_t distinct = g->fps_n + g->fp_zero;
        if (deidentified && distinct < k) {
            r->suppressed_groups++;
            r->suppressed_requests += g->requests;
            continue;
        }
        qsort(g->lat, g->requests, sizeof(*g->lat), cmp_u32);
        idl_an_group *o = &r->groups[r->n_groups++];
        o->customer = g->customer;
        o->method = g->method;
        format_day_num(g->day, o->day);
        o->requests = g->requests;
        memcpy(o->errors, g->errors, sizeof o->errors);
        o->hits = g->hits;
        o->hit_rate = (double)g->hits / (double)g->requests;
        o->p50_us = idl_an_percentile(g->lat, g->requests, 50);
        o->p95_us = idl_an_percentile(g->lat, g->requests, 95);
        o->p99_us = idl_an_percentile(g->lat, g->requests, 99);
        o->distinct_fingerprints = distinct;
        r->total_requests += g->requests;
    }
    free(list);
    *out = r;
    return IDL_OK;
fail:
    free(list);
    idl_an_report_free(r);
    return rc;
}

void idl_an_report_free(idl_an_report *r)
{
    if (!r) return;
    free(r->groups);
    free(r);
}

/* ---- writers ---- */

/* The shortest decimal that reads back as v, always with a '.' or an
 * exponent so JSON readers take it as a float (1.0, not 1). */
static void format_double(double v, char out[40])
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, 40, "%.*g", prec, v);
        if (strtod(out, NULL) == v) break;
    }
    if (!strpbrk(out, ".eE")) strcat(out, ".0");
}

static int write_status(FILE *f)
{
    return ferror(f) ? IDL_INTERNAL : IDL_OK;
}

static void json_cstr(FILE *f, const char *s)
{
    idl_json_print_str(f, s, strlen(s));
}

/* A log field as a JSON string: cleaned first, since jansson and most JSON
 * readers refuse invalid UTF-8. */
static void json_field(FILE *f, const char *s)
{
    char buf[CLEAN_MAX];
    idl_an_utf8_clean(s, buf, sizeof buf);
    json_cstr(f, buf);
}

int idl_an_write_json(FILE *f, const idl_an_report *r)
{
    fprintf(f, "{\"total_requests\": %" PRIu64, r->total_requests);
    if (r->deidentified) fprintf(f, ", \"suppressed_groups\": %" PRIu64, r->suppressed_groups);
    fputs(", \"groups\": [", f);
    for (size_t i = 0; i < r->n_groups; i++) {
        const idl_an_group *g = &r->groups[i];
        char rate[40];
        format_double(g->hit_rate, rate);
        fputs(i ? ",\n  {\"customer\": " : "\n  {\"customer\": ", f);
        json_cstr(f, g->customer);
        fputs(", \"method\": ", f);
        json_cstr(f, g->method);
        fprintf(f, ", \"day\": \"%s\", \"requests\": %" PRIu64 ", \"errors\": {", g->day,
                g->requests);
        bool first = true;
        for (int c = 1; c < IDL_STATUS_COUNT; c++) {
            if (!g->errors[c]) continue;
            fprintf(f, "%s\"%s\": %" PRIu64, first ? "" : ", ", idl_status_name(c), g->errors[c]);
            first = false;
        }
        fprintf(f,
                "}, \"hit_rate\": %s, \"latency_us\": {\"p50\": %" PRIu32 ", \"p95\": %" PRIu32
                ", \"p99\": %" PRIu32 "}, \"distinct_fingerprints\": %" PRIu64 "}",
                rate, g->p50_us, g->p95_us, g->p99_us, g->distinct_fingerprints);
    }
    fputs(r->n_groups ? "\n]}\n" : "]}\n", f);
    return write_status(f);
}

void idl_an_csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int idl_an_write_csv(FILE *f, const idl_an_report *r)
{
    fputs("customer,method,day,requests,errors,hit_rate,p50_us,p95_us,p99_us,"
          "distinct_fingerprints\n",
          f);
    for (size_t i = 0; i < r->n_groups; i++) {
        const idl_an_group *g = &r->groups[i];
        char rate[40];
        format_double(g->hit_rate, rate);
        idl_an_csv_field(f, g->customer);
        fputc(',', f);
        idl_an_csv_field(f, g->method);
        fprintf(f, ",%s,%" PRIu64 ",", g->day, g->requests);
        /* Code names are [A-Z_] and counts digits: the field never needs quotes. */
        bool first = true;
        for (int c = 1; c < IDL_STATUS_COUNT; c++) {
            if (!g->errors[c]) continue;
            fprintf(f, "%s%s=%" PRIu64, first ? "" : ";", idl_status_name(c), g->errors[c]);
            first = false;
        }
        fprintf(f, ",%s,%" PRIu32 ",%" PRIu32 ",%" PRIu32 ",%" PRIu64 "\n", rate, g->p50_us,
                g->p95_us, g->p99_us, g->distinct_fingerprints);
    }
    return write_status(f);
}

/* ---- export ---- */

int idl_an_export_ndjson(FILE *f, const idl_qlog_entry *e)
{
    char when[40], rid[32], pid[19];
    idl_an_format_time(e->time_us, when);
    idl_qlog_request_id(e->time_us, e->seq, rid);
    fprintf(f,
            "{\"time_us\": %" PRIu64 ", \"time\": \"%s\", \"request_id\": \"%s\", \"customer\": ",
            e->time_us, when, rid);
    json_field(f, e->customer);
    fputs(", \"key_id\": ", f);
    json_field(f, e->key_id);
    fputs(", \"method\": ", f);
    json_field(f, e->method);
    fprintf(f,
            ", \"code\": %d, \"code_name\": \"%s\", \"latency_us\": %" PRIu32
            ", \"persons\": %" PRIu32 ", \"person_ids\": [",
            e->code, idl_status_name(e->code), e->latency_us, e->n_persons);
    uint32_t n_pids = e->n_pids < IDL_QLOG_MAX_PIDS ? e->n_pids : IDL_QLOG_MAX_PIDS;
    for (uint32_t i = 0; i < n_pids; i++) {
        idl_person_id_format(e->pids[i], pid);
        fprintf(f, "%s\"%s\"", i ? ", " : "", pid);
    }
    fputs("], \"fingerprints\": [", f);
    uint32_t n_fps = e->n_fps < IDL_QLOG_MAX_FPS ? e->n_fps : IDL_QLOG_MAX_FPS;
    for (uint32_t i = 0; i < n_fps; i++)
        fprintf(f, "%s\"%016" PRIx64 "\"", i ? ", " : "", e->fps[i]);
    fputs("]}\n", f);
    return write_status(f);
}

int idl_an_export_csv_header(FILE *f)
{
    fputs("time_us,time,request_id,customer,key_id,method,code,code_name,latency_us,persons,"
          "person_ids,fingerprints\n",
          f);
    return write_status(f);
}

int idl_an_export_csv(FILE *f, const idl_qlog_entry *e)
{
    char when[40], rid[32], pid[19], buf[CLEAN_MAX];
    idl_an_format_time(e->time_us, when);
    idl_qlog_request_id(e->time_us, e->seq, rid);
    fprintf(f, "%" PRIu64 ",%s,%s,", e->time_us, when, rid);
    idl_an_utf8_clean(e->customer, buf, sizeof buf);
    idl_an_csv_field(f, buf);
    fputc(',', f);
    idl_an_utf8_clean(e->key_id, buf, sizeof buf);
    idl_an_csv_field(f, buf);
    fputc(',', f);
    idl_an_utf8_clean(e->method, buf, sizeof buf);
    idl_an_csv_field(f, buf);
    fprintf(f, ",%d,%s,%" PRIu32 ",%" PRIu32 ",", e->code, idl_status_name(e->code), e->latency_us,
            e->n_persons);
    /* Person ids and hex fingerprints hold no separators: no quoting needed. */
    uint32_t n_pids = e->n_pids < IDL_QLOG_MAX_PIDS ? e->n_pids : IDL_QLOG_MAX_PIDS;
    for (uint32_t i = 0; i < n_pids; i++) {
        idl_person_id_format(e->pids[i], pid);
        fprintf(f, "%s%s", i ? ";" : "", pid);
    }
    fputc(',', f);
    uint32_t n_fps = e->n_fps < IDL_QLOG_MAX_FPS ? e->n_fps : IDL_QLOG_MAX_FPS;
    for (uint32_t i = 0; i < n_fps; i++)
        fprintf(f, "%s%016" PRIx64, i ? ";" : "", e->fps[i]);
    fputc('\n', f);
    return write_status(f);
}
