/* The pure part of `idlookup analytics` (DATA.md §5, API.md §6): query-log
 * entries go in one at a time, per customer × method × UTC day groups come
 * out (requests, errors by code, hit rate, exact latency percentiles, distinct
 * fingerprints), and writers print reports and raw exports to a FILE*.  No
 * store and no I/O besides the FILE*, so tests feed it synthetic entries.
 */
#ifndef IDL_ANALYTICS_LIB_H
#define IDL_ANALYTICS_LIB_H

#include "qlog.h"
#include "status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define IDL_AN_K_DEFAULT 5
#define IDL_AN_US_PER_DAY 86400000000ull

/* ---- aggregation ---- */

typedef struct idl_an idl_an;

/* One customer × method × day group of a report.  The strings point into the
 * aggregator and live until idl_an_free(); they are valid UTF-8 (invalid
 * bytes in the log became U+FFFD before grouping, so no two groups print
 * alike). */
typedef struct {
    const char *customer; /* "" for calls without a valid key */
    const char *method;
    char day[16]; /* "YYYY-MM-DD", UTC */
    uint64_t requests;
    uint64_t errors[IDL_STATUS_COUNT]; /* by code; [0] counts OKs; codes outside
                                          the table are counted as UNKNOWN */
    uint64_t hits;                     /* entries with n_persons >= 1 */
    double hit_rate;                   /* hits / requests */
    uint32_t p50_us, p95_us, p99_us;   /* nearest-rank percentiles of latency_us */
    uint64_t distinct_fingerprints;
} idl_an_group;

/* A finished report: groups sorted by day, customer, method (bytewise). */
typedef struct {
    bool deidentified;
    unsigned k;                 /* the threshold used when deidentified */
    uint64_t total_requests;    /* sum of requests over groups[] */
    uint64_t suppressed_groups; /* groups left out (deidentified only) */
    uint64_t suppressed_requests;
    size_t n_groups;
    idl_an_group *groups;
} idl_an_report;

/* A new, empty aggregator.  Returns 0 or IDL_RESOURCE_EXHAUSTED. */
int idl_an_new(idl_an **out);
/* Frees the aggregator and everything it holds; NULL is fine.  Reports built
 * from it must not be used afterwards (their strings point into it). */
void idl_an_free(idl_an *a);

/* Counts one entry into its group (copied; e may be reused at once).
 * Amortized O(1).  Returns 0 or IDL_RESOURCE_EXHAUSTED (a is still valid and
 * holds everything added before). */
int idl_an_add(idl_an *a, const idl_qlog_entry *e);
/* Entries added so far. */
uint64_t idl_an_count(const idl_an *a);

/* Builds the report.  When deidentified, groups with fewer than k (>= 1)
 * distinct fingerprints are left out and counted in suppressed_groups, and
 * total_requests covers only the groups shown.  Sorts each group's latencies
 * in place (order does not matter to the aggregate, so adding more entries
 * afterwards is fine).  *out is freed with idl_an_report_free().  Returns 0,
 * IDL_INVALID_ARGUMENT (k == 0) or IDL_RESOURCE_EXHAUSTED. */
int idl_an_report_build(idl_an *a, bool deidentified, unsigned k, idl_an_report **out);
/* NULL is fine. */
void idl_an_report_free(idl_an_report *r);

/* Nearest-rank percentile: the value at rank ceil(p/100 * n) of sorted
 * (ascending, n >= 1, 0 < p <= 100). */
uint32_t idl_an_percentile(const uint32_t *sorted, size_t n, unsigned p);

/* ---- report writers (return 0, or IDL_INTERNAL when f reports an error) ---- */

/* One JSON object: {"total_requests", "groups": [...]} plus
 * "suppressed_groups" when deidentified; one group per line. */
int idl_an_write_json(FILE *f, const idl_an_report *r);
/* Header line and one row per group; errors as "CODE=n;CODE=n" in code order;
 * fields quoted per RFC 4180 when they hold a comma, quote, CR or LF. */
int idl_an_write_csv(FILE *f, const idl_an_report *r);

/* ---- raw export, one entry per line (fingerprints only: the log holds no
 * identifiers) ---- */

/* {"time_us", "time", "request_id", "customer", "key_id", "method", "code",
 *  "code_name", "latency_us", "persons", "person_ids", "fingerprints"} */
int idl_an_export_ndjson(FILE *f, const idl_qlog_entry *e);
/* The CSV header of the same columns; lists are joined with ';'. */
int idl_an_export_csv_header(FILE *f);
int idl_an_export_csv(FILE *f, const idl_qlog_entry *e);

/* ---- small helpers, exported for the CLI and the tests ---- */

/* Parses a strict "YYYY-MM-DD" (a real calendar date, 1970-01-01 ..
 * 9999-12-31) into the UTC microsecond at 00:00:00 of that day.  Returns 0 or
 * IDL_INVALID_ARGUMENT; *start_us is written only on success. */
int idl_an_parse_day(const char *s, uint64_t *start_us);
/* "YYYY-MM-DD" of the UTC day holding time_us. */
void idl_an_format_day(uint64_t time_us, char out[16]);
/* RFC 3339 UTC with microseconds: "2024-05-01T12:34:56.123456Z". */
void idl_an_format_time(uint64_t time_us, char out[40]);
/* Writes s as one CSV field (RFC 4180: quoted, with quotes doubled, when it
 * holds a comma, a quote, CR or LF). */
void idl_an_csv_field(FILE *f, const char *s);
/* Copies s into out as valid UTF-8, each invalid byte replaced by U+FFFD.
 * outsz must be at least 3 * strlen(s) + 1 to hold every case; output is
 * cut at a character boundary when it is smaller. */
void idl_an_utf8_clean(const char *s, char *out, size_t outsz);

#endif
