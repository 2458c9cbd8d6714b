/* The pure parts of idlookup-bench, kept apart from threads and sockets so the
 * unit tests can reach them: command-line and --mix parsing, the open-loop
 * schedule, the identifier pool and request bodies, the in-place request id,
 * a minimal reply scanner and the text and JSON reports.
 *
 * Nothing here touches the network.  Functions return 0 or a status.h code;
 * the ones that can fail on user input also write a one-line message into
 * err (errlen bytes), naming the flag or file at fault.
 */
#ifndef IDL_BENCH_LIB_H
#define IDL_BENCH_LIB_H

#include "hist.h"
#include "status.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The workloads a request can belong to, in --mix order. */
enum {
    IDL_BENCH_HEALTH,
    IDL_BENCH_SEARCH,
    IDL_BENCH_VALIDATE,
    IDL_BENCH_VERIFY,
    IDL_BENCH_BATCH,
    IDL_BENCH_NMETHODS
};

/* "search" for IDL_BENCH_SEARCH (the --method/--mix spelling) and
 * "idlookup.v1.Lookup/Search" (the wire name).  Static strings; NULL for a
 * number out of range. */
const char *idl_bench_method_name(int m);
const char *idl_bench_method_wire(int m);

/* Outcomes of one request: the reply's status code (0..IDL_STATUS_COUNT-1;
 * a code outside the table counts as UNKNOWN), or a failure of the transport,
 * which has no reply code. */
enum {
    IDL_BENCH_TIMEOUT = IDL_STATUS_COUNT, /* no reply within --timeout-ms */
    IDL_BENCH_TRANSPORT_ERROR,            /* could not send or receive */
    IDL_BENCH_BAD_REPLY,                  /* reply not a decodable envelope, or wrong id */
    IDL_BENCH_NOUTCOMES
};

/* "OK", "RESOURCE_EXHAUSTED", ..., "TIMEOUT", "TRANSPORT_ERROR", "BAD_REPLY". */
const char *idl_bench_outcome_name(int outcome);

/* A request mix: relative weights per method (percentages when they sum to
 * 100).  total is their sum, at least 1 once parsed. */
typedef struct {
    unsigned weight[IDL_BENCH_NMETHODS];
    unsigned total;
} idl_bench_mix;

/* The mix used when neither --method nor --mix is given. */
#define IDL_BENCH_DEFAULT_MIX "search=70,validate=15,verify=10,batch=5"

/* Parses "search=70,validate=15,verify=10,batch=5": comma-separated
 * method=weight, weights whole numbers 0..1000000, each method at most once,
 * a positive total.  Returns 0 and *mix, or IDL_INVALID_ARGUMENT. */
int idl_bench_mix_parse(const char *spec, idl_bench_mix *mix, char *err, size_t errlen);

/* Picks the method for a uniformly random r: method m with probability
 * weight[m] / total. */
int idl_bench_mix_pick(const idl_bench_mix *mix, uint64_t r);

/* What Search, and the Searches inside a Batch, ask for (--search-by). */
enum {
    IDL_BENCH_BY_EMAIL, /* only persons with an email, by email (the default) */
    IDL_BENCH_BY_PHONE, /* only persons with a phone, by phone */
    IDL_BENCH_BY_ANY,   /* any person: by email, else by phone */
};

/* The client that carries requests (--client).  RAW speaks SP over TCP
 * itself from a few event loops; NNG uses nng req0 contexts and works for
 * every transport nng knows (ipc://, ...).  The default is RAW when every
 * --url is tcp://, else NNG. */
enum { IDL_BENCH_CLIENT_RAW, IDL_BENCH_CLIENT_NNG };

/* Everything the command line says.  Strings point into argv. */
typedef struct {
    const char *url;
    const char *key;          /* NULL: no authorization sent */
    const char *data;         /* NDJSON pool; NULL when only health is asked for */
    const char *method_label; /* "search" for --method search, "mix" for a mix */
    idl_bench_mix mix;
    double miss_ratio;
    int search_by; /* IDL_BENCH_BY_* */
    unsigned batch_size;
    unsigned concurrency;
    unsigned sockets;
    double duration_s; /* 0 when -n is given */
    uint64_t requests; /* 0 when -z is given (or defaulted) */
    double warmup_s;
    double rate; /* total requests/s; 0 = closed loop */
    int timeout_ms;
    int deadline_ms; /* -1: no timeout_ms sent */
    int json;
    int progress;
    double max_errors;
    int baseline;
    uint64_t seed;
    int client;       /* IDL_BENCH_CLIENT_*: how requests travel */
    unsigned threads; /* raw client: event-loop threads, connections spread over them */
    int help;
} idl_bench_opts;

/* Parses argv[1..argc-1] into *o (defaults for whatever is not given).
 * Flags: see idl_bench_usage.  "--flag value" and "--flag=value" both work.
 * On --help sets o->help and returns 0 without checking the rest.  Returns 0,
 * or IDL_INVALID_ARGUMENT with err naming the flag (usage error, exit 2). */
int idl_bench_parse_args(int argc, char **argv, idl_bench_opts *o, char *err, size_t errlen);

/* Writes the --help text. */
void idl_bench_usage(FILE *f);

/* Open loop: request i of a run started at t0_ns is due at t0 + i/rate
 * seconds.  Computed from i, not by adding intervals, so no drift builds up. */
uint64_t idl_bench_sched_ns(uint64_t t0_ns, uint64_t i, double rate);

/* How many open-loop requests are due before t: the smallest i with
 * idl_bench_sched_ns(t0_ns, i, rate) >= t. */
uint64_t idl_bench_due_before(uint64_t t0_ns, double rate, uint64_t t);

/* The latency of a request: in the open loop from its scheduled time (a send
 * that is late because the load generator or the server stalled still counts
 * the wait), in the closed loop from the actual send.  0 if done is earlier. */
uint64_t idl_bench_latency_ns(int open_loop, uint64_t sched_ns, uint64_t sent_ns, uint64_t done_ns);

/* The identifier pool: persons read from an NDJSON file as `idlookup gen`
 * writes it.  Only names, emails and phones are kept. */
typedef struct idl_bench_pool idl_bench_pool;

/* Loads path.  Lines that are not JSON objects, or have neither an email nor
 * a phone, are skipped and counted in *skipped.  Returns 0, IDL_NOT_FOUND
 * (cannot open), IDL_INVALID_ARGUMENT (no usable line) or
 * IDL_RESOURCE_EXHAUSTED; err names the file. */
int idl_bench_pool_load(const char *path, idl_bench_pool **out, size_t *skipped, char *err,
                        size_t errlen);
size_t idl_bench_pool_size(const idl_bench_pool *p);
void idl_bench_pool_free(idl_bench_pool *p);

/* Checks that the pool has what o's workloads ask for: with --search-by
 * email (phone), Search and Batch need at least one person with an email
 * (a phone).  Returns 0, or IDL_INVALID_ARGUMENT with err naming --search-by
 * and o->data. */
int idl_bench_pool_fits(const idl_bench_pool *p, const idl_bench_opts *o, char *err, size_t errlen);

/* One pre-encoded request body (a msgpack map), malloc'd. */
typedef struct {
    unsigned char *data;
    size_t len;
} idl_bench_body;

/* Builds count bodies for method m from the pool (NULL is fine for health):
 *   health   {}
 *   search   by search_by (IDL_BENCH_BY_*): {"email": e} of a person with an
 *            email, {"phone": p} of one with a phone, or for any person
 *            {"email": e}, else {"phone": p}
 *   validate {"email": e} or {"phone": p}, alternating where both exist
 *   verify   {"first_name", "last_name", "email"} (phone without email)
 *   batch    {"calls": [batch_size Search calls as above]}
 * A share miss_ratio of the lookups (of the inner calls for batch) asks for a
 * made-up email or phone that no person in the pool holds (a phone for
 * search and batch only with IDL_BENCH_BY_PHONE).  Persons are picked at
 * random with seed, so the same arguments give the same bodies.  Returns 0
 * and *out (free with idl_bench_bodies_free), IDL_INVALID_ARGUMENT when m
 * needs a pool and has none (or no person search_by can ask for), or
 * IDL_RESOURCE_EXHAUSTED. */
int idl_bench_bodies(const idl_bench_pool *pool, int m, size_t count, double miss_ratio,
                     unsigned batch_size, int search_by, uint64_t seed, idl_bench_body **out);
void idl_bench_bodies_free(idl_bench_body *b, size_t count);

/* Request ids are patched into pre-encoded envelopes: an envelope encoded
 * with id = marker (>= 2^32, so any encoder writes it as msgpack uint64,
 * 0xcf and 8 big-endian bytes) holds those 9 bytes exactly once.
 * idl_bench_find_id writes the offset of the 8 id bytes, or returns
 * IDL_INVALID_ARGUMENT when the pattern is absent or not unique. */
#define IDL_BENCH_ID_MARKER UINT64_C(0xb3e7c4a1d2f09e5b)
int idl_bench_find_id(const void *env, size_t len, uint64_t marker, size_t *off);
void idl_bench_put_id(void *env, size_t off, uint64_t id);

/* Reads the `id` and `code` of a reply envelope without decoding the rest
 * (no allocation).  When inner is not NULL and the reply's body has a
 * "results" array (Batch), adds each result's code to inner[code] (codes
 * outside the table to inner[IDL_UNKNOWN]).  Returns 0, or
 * IDL_INVALID_ARGUMENT for bytes that are not a well-formed envelope with an
 * integer id and code.  Nesting deeper than 64 is refused. */
int idl_bench_scan_reply(const void *buf, size_t len, uint64_t *id, int *code, uint64_t *inner);

/* ---- SP over TCP (nng's "sp-tcp" mapping), for the raw client ----------
 * After connecting, each side sends 8 bytes: 0x00 'S' 'P' 0x00, its protocol
 * number (big-endian u16) and two zero bytes.  Then every message is a
 * big-endian u64 length and that many bytes.  A req0 message starts with the
 * request id, a 4-byte big-endian word with the high bit set; rep0 sends
 * the same word back in front of the reply. */
#define IDL_BENCH_SP_REQ0 0x30
#define IDL_BENCH_SP_REP0 0x31
#define IDL_BENCH_SP_HELLO 8
/* Length prefix plus request id: what precedes an envelope on the wire. */
#define IDL_BENCH_SP_REQ_HEAD 12

/* Writes the 8 greeting bytes of protocol proto. */
void idl_bench_sp_hello(uint16_t proto, unsigned char out[IDL_BENCH_SP_HELLO]);

/* Checks a peer's greeting: 0, or IDL_INVALID_ARGUMENT when it is not SP
 * or not protocol want. */
int idl_bench_sp_check_hello(const unsigned char in[IDL_BENCH_SP_HELLO], uint16_t want);

/* Writes the 12 bytes that precede an envelope of body_len bytes: the
 * message length (body_len + 4) and the request id word 0x80000000 | id. */
void idl_bench_sp_req_head(unsigned char out[IDL_BENCH_SP_REQ_HEAD], uint32_t id, size_t body_len);

/* Splits the first message off the avail bytes at buf.  Returns 0 with
 * *frame_len (bytes to consume), *id (the request id, high bit cleared) and
 * the reply body [*body, *body + *body_len) pointing into buf; IDL_UNAVAILABLE
 * when more bytes are needed (*frame_len is the whole frame's size once the
 * length prefix is in, else 0); IDL_INVALID_ARGUMENT when the message is
 * longer than cap bytes or has no request id (a word with the high bit set
 * within the first 8 words). */
int idl_bench_sp_split(const unsigned char *buf, size_t avail, size_t cap, size_t *frame_len,
                       uint32_t *id, const unsigned char **body, size_t *body_len);

/* Splits one "tcp://HOST:PORT" (len bytes; HOST may be [v6]) into
 * NUL-terminated host and port.  Returns 0, or IDL_INVALID_ARGUMENT for
 * another scheme, a missing port or parts too long for the buffers. */
int idl_bench_tcp_addr(const char *url, size_t len, char *host, size_t hostlen, char *port,
                       size_t portlen);

/* What one phase of a run measured. */
typedef struct {
    uint64_t requests; /* counted requests (after warmup) */
    double duration_s; /* from the end of warmup to the last counted reply */
    uint64_t outcomes[IDL_BENCH_NOUTCOMES];
    uint64_t per_method[IDL_BENCH_NMETHODS];
    uint64_t per_method_ok[IDL_BENCH_NMETHODS]; /* of those, replies with code OK */
    uint64_t inner[IDL_STATUS_COUNT];           /* codes of the calls inside Batch replies */
    const idl_hist *latency_us;                 /* replies only; transport failures have none */
    /* A mix of two or more methods: each one's latency (NULL for the others) */
    const idl_hist *method_latency_us[IDL_BENCH_NMETHODS];
    int interrupted; /* stopped early by SIGINT/SIGTERM */
    uint64_t unsent; /* open loop: due in the measured window, never sent (fell behind) */
} idl_bench_result;

/* Requests that did not end in OK (transport failures included); and the
 * share of failures among all requests due, where open-loop requests never
 * sent count as failed too (0 when there were none). */
uint64_t idl_bench_errors(const idl_bench_result *r);
double idl_bench_error_share(const idl_bench_result *r);

/* Lookups answered: one per OK search/validate/verify, one per OK result
 * inside a Batch (batch_size per batch when all of them succeed). */
uint64_t idl_bench_lookups(const idl_bench_result *r);

/* The reports.  baseline is NULL unless --baseline ran it.  JSON: exactly one
 * object and a newline, keys requests, duration_s, throughput_rps, codes,
 * latency_us {min,p50,p90,p99,p999,max,mean} and more (see bench_lib.c).
 * Return 0 or IDL_INTERNAL when writing fails. */
int idl_bench_report_json(const idl_bench_opts *o, const idl_bench_result *r,
                          const idl_bench_result *baseline, FILE *f);
int idl_bench_report_text(const idl_bench_opts *o, const idl_bench_result *r,
                          const idl_bench_result *baseline, FILE *f);

#endif
