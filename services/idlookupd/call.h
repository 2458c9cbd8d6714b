/* The handler contract: the daemon's shared state, the per-call context a
 * method handler gets, the method table, and the query-log entry every call
 * (a request, or one call inside a Batch) writes.
 *
 * A handler reads c->body, writes its response message through c->pk and
 * returns a status; on a non-zero status it fills c->msg (and c->field or
 * c->retry_after_ms) and whatever it packed is discarded.  Handlers run on
 * nng's callback threads, many at once: they share only the store, the query
 * log and atomics.
 */
#ifndef IDLD_CALL_H
#define IDLD_CALL_H

#include "auth.h"
#include "methods.h"
#include "qlog.h"
#include "record.h"
#include "status.h"
#include "store.h"
#include "wire.h"

#include <msgpack.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
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
    _Atomic uint64_t by_code[IDL_STATUS_COUNT];
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
    char msg[IDL_ERR_MAX];
    char field[64];
    uint32_t retry_after_ms;
} idld_call;

typedef int (*idld_handler)(idld_call *c);

/* A row of common/methods.h with its handler bound (see there). */
typedef struct {
    idl_method_id id;
    const char *name;
    unsigned scope;   /* 0: no key needed */
    bool takes_token; /* Batch takes none itself: its inner calls do */
    bool reads;       /* a deadline passing during the call voids the answer */
    bool in_batch;    /* may be called inside Batch */
    idld_handler fn;
} idld_method;

const idld_method *idld_method_find(const char *name, size_t len);
extern const idld_method idld_methods[IDL_METHOD_COUNT];

uint64_t idld_mono_us(void);

/* Sets c->msg (printf-style) and c->field; returns code. */
int idld_fail(idld_call *c, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Adds a keyed fingerprint of a query identifier to the call's log entry. */
void idld_fingerprint(idld_call *c, const char *kind, const char *value);

/* The query-log entry of one call, written the same way for a request and
 * for each call inside a Batch.  begin clears log and gives it its id;
 * method and key fill in what the call says it is and who asks; end records
 * the outcome (code, latency since t0_us), counts the code and appends the
 * entry when the daemon logs queries.  A failed call returns no persons. */
void idld_log_begin(idld_state *st, idl_qlog_entry *log);
void idld_log_method(idl_qlog_entry *log, const char *method, size_t len);
void idld_log_key(idl_qlog_entry *log, const idl_key_info *kinfo);
void idld_log_end(idld_state *st, idl_qlog_entry *log, int code, uint64_t t0_us);

#endif
