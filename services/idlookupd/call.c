/* The handler contract (see call.h): the method table, failing a call,
 * fingerprints and the query-log entry of a call. */
#include "call.h"
#include "admin.h"
#include "batch.h"
#include "lookup.h"
#include "privacy.h"
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* common/methods.h's table with each row's handler bound. */
const idld_method idld_methods[IDL_METHOD_COUNT] = {
#define BIND(id, name, scope, handler, token, reads, batch, logged)                                \
    [IDL_METHOD_##id] = {IDL_METHOD_##id, name, scope, token, reads, batch, idld_##handler},
    IDL_METHOD_LIST(BIND)
#undef BIND
};

const idld_method *idld_method_find(const char *name, size_t len)
{
    int id = idl_method_find(name, len);
    return id >= 0 ? &idld_methods[id] : NULL;
}

uint64_t idld_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

idld_scratch *idld_scratch_new(void)
{
    return calloc(1, sizeof(idld_scratch));
}

void idld_scratch_free(idld_scratch *sc)
{
    if (!sc) return;
    idl_buf_free(&sc->inner);
    for (int i = 0; i < IDLD_BATCH_PARTS; i++)
        idl_buf_free(&sc->parts[i]);
    free(sc);
}

int idld_fail(idld_call *c, int code, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof c->msg, fmt, ap);
    va_end(ap);
    snprintf(c->field, sizeof c->field, "%s", field ? field : "");
    return code;
}

/* Callers pass the normalized value when there is one, so the same subject
 * asked in different spellings has one fingerprint (analytics counts
 * distinct subjects). */
void idld_fingerprint(idld_call *c, const char *kind, const char *value)
{
    if (!c->log || !c->st->qlog || c->log->n_fps >= IDL_QLOG_MAX_FPS) return;
    c->log->fps[c->log->n_fps++] = idl_qlog_fingerprint(c->st->qlog, kind, value);
}

void idld_log_begin(idld_state *st, idl_qlog_entry *log)
{
    /* The id arrays are bounded by their counts: clearing them would cost
     * more than the rest of the entry. */
    memset(log, 0, offsetof(idl_qlog_entry, pids));
    log->n_pids = log->n_fps = 0;
    if (st->qlog) idl_qlog_next_id(st->qlog, &log->time_us, &log->seq);
}

/* Truncates to the entry's field, which ends with '\0'. */
static void copy_field(char *dst, size_t cap, const char *src, size_t n)
{
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void idld_log_method(idl_qlog_entry *log, const char *method, size_t len)
{
    copy_field(log->method, sizeof log->method, method, len);
}

void idld_log_key(idl_qlog_entry *log, const idl_key_info *kinfo)
{
    copy_field(log->customer, sizeof log->customer, kinfo->customer, strlen(kinfo->customer));
    copy_field(log->key_id, sizeof log->key_id, kinfo->id, strlen(kinfo->id));
}

void idld_log_end(idld_state *st, idl_qlog_entry *log, int code, uint64_t t0_us)
{
    if (code != 0) log->n_persons = log->n_pids = 0;
    log->code = code;
    log->latency_us = (uint32_t)(idld_mono_us() - t0_us);
    atomic_fetch_add(&st->by_code[code], 1);
    if (st->qlog && st->log_queries) idl_qlog_append(st->qlog, log);
}
