/* The daemon's shared state and the per-call context handed to method
 * handlers.
 *
 * A handler reads c->body, writes its response message through c->pk and
 * returns a status; on a non-zero status it fills c->msg (and c->field or
 * c->retry_after_ms) and whatever it packed is discarded.  Handlers run on
 * nng's callback threads, many at once: they share only the store, the query
 * log and atomics.
 */
#ifndef IDLD_SERVER_H
#define IDLD_SERVER_H

#include "auth.h"
#include "qlog.h"
#include "record.h"
#include "store.h"
#include "wire.h"

#include <msgpack.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define IDLD_MAX_CANDIDATES 1000 /* persons considered per query (bounded scans) */
#define IDLD_CACHED_RECORDS 16   /* records kept from scoring for rendering */
#define IDLD_BATCH_PARTS 8       /* a Batch's calls are split into at most this many parts */

struct idld_assist;
struct idl_changes;
struct idl_qlogstream;

typedef struct {
    idl_store *store;
    idl_qlog *qlog;
    _Atomic(idl_keyring *) keys;
    atomic_bool draining;
    uint64_t start_mono_us;
    _Atomic uint64_t by_code[17];
    struct idld_assist *assist; /* helpers for Batch's parts; NULL: none */
    const char *describe_body;  /* pre-encoded msgpack */
    size_t describe_len;
    bool log_queries;
    /* Cluster mode (--nats): every write goes through the change stream;
     * NULL in single-node mode. */
    struct idl_changes *changes;
    struct idl_qlogstream *qstream;
    const char *node;
} idld_state;

/* Scratch memory of one worker, reused across requests. */
typedef struct {
    idl_record recs[IDLD_CACHED_RECORDS];
    idl_record tmp;
    uint64_t cand[IDLD_MAX_CANDIDATES];
    uint64_t probe[IDLD_MAX_CANDIDATES];
    struct idld_hit {
        uint64_t pid;
        double score;
        uint32_t matched; /* bit mask of query fields */
        int slot;         /* index into recs, or -1 */
    } hits[IDLD_MAX_CANDIDATES];
    idl_buf inner;                   /* Batch: one inner call's body */
    idl_qlog_entry log;              /* Batch: one inner call's log entry */
    idl_buf parts[IDLD_BATCH_PARTS]; /* Batch: the packed results of each part */
} idld_scratch;

/* A worker's or helper's scratch; free releases its buffers.  NULL is fine. */
idld_scratch *idld_scratch_new(void);
void idld_scratch_free(idld_scratch *sc);

typedef struct idld_call {
    idld_state *st;
    idl_key *key;
    const idl_key_info *kinfo;
    const msgpack_object *body;
    msgpack_packer *pk;
    idld_scratch *scratch;
    idl_qlog_entry *log;
    uint64_t deadline_mono_us; /* 0: none */
    char msg[IDL_WIRE_MSG_MAX];
    char field[64];
    uint32_t retry_after_ms;
} idld_call;

typedef int (*idld_handler)(idld_call *c);

typedef struct {
    const char *name;
    unsigned scope;   /* 0: no key needed */
    bool takes_token; /* Batch takes none itself: its inner calls do */
    bool reads;       /* a deadline passing during the call voids the answer */
    idld_handler fn;
} idld_method;

const idld_method *idld_method_find(const char *name, size_t len);
extern const idld_method idld_methods[];
extern const size_t idld_method_count;

uint64_t idld_mono_us(void);

/* Handlers. */
int idld_health(idld_call *c);
int idld_describe(idld_call *c);
int idld_search(idld_call *c);
int idld_validate(idld_call *c);
int idld_verify(idld_call *c);
int idld_batch(idld_call *c);
int idld_optout(idld_call *c);
int idld_disclosures(idld_call *c);
int idld_upsert(idld_call *c);
int idld_stats(idld_call *c);

/* Sets c->msg (printf-style) and c->field; returns code. */
int idld_fail(idld_call *c, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Adds a keyed fingerprint of a query identifier to the call's log entry. */
void idld_fingerprint(idld_call *c, const char *kind, const char *value);

/* Whether a record holds a normalized identifier (Search, Verify, OptOut). */
bool idld_has_email(const idl_record *r, const char *email);
bool idld_has_phone(const idl_record *r, const char *e164);
bool idld_has_ip(const idl_record *r, const char *ip);
/* Whether an address agrees with every part given (NULL = any). */
bool idld_addr_agrees(const idl_address *a, const char *street, const char *unit, const char *city,
                      const char *state, const char *zip);

/* Shared between Search, OptOut and Disclosures: the parsed identifier set. */
typedef struct {
    bool has_email, has_phone, has_ip, has_street, has_unit, has_city, has_state, has_zip, has_name;
    char email[IDL_NORM_EMAIL_MAX];
    char phone[IDL_NORM_PHONE_MAX];
    char ip[IDL_NORM_IP_MAX];
    char street[IDL_NORM_STREET_MAX];
    char unit[IDL_NORM_UNIT_MAX];
    char city[IDL_NORM_CITY_MAX];
    char state[3];
    char zip[6];
    char first[IDL_NORM_NAME_MAX];
    char last[IDL_NORM_NAME_MAX];
} idld_query;

/* Parses and normalizes the identifier fields of a body (the ten Search
 * fields, found in fields[] by name).  Fails with INVALID_ARGUMENT naming the
 * field on a malformed value or when the set is not enough to search on. */
int idld_query_parse(idld_call *c, const idl_field *fields, size_t n, idld_query *q);

/* Every person, suppressed or not, that holds all the given identifier
 * groups (OptOut, Disclosures), however many: *pids is malloc'd and the
 * caller frees it (also when *n is 0).  Fails with UNAVAILABLE when the
 * store cannot be read: the privacy path never mistakes a failed read for
 * "nobody holds it". */
int idld_query_all(idld_call *c, const idld_query *q, uint64_t **pids, size_t *n);

/* The identifier keys of a query (for OptOut): emails, phones, ips,
 * addresses; never names. */
size_t idld_query_keys(const idld_query *q, idl_hkey *keys, size_t max);

#endif
