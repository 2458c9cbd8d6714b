/* A person record (DATA.md §1): parsed from Upsert's msgpack or ingest's JSON,
 * validated and normalized, and serialized for the store.
 *
 * idl_record is a flat struct with bounded arrays, so a record can live on the
 * stack or in a reusable slot without allocation.  Identifiers that fail
 * validation are dropped and reported through the warning callback; anything
 * that makes the whole record unusable is an IDL_INVALID_ARGUMENT with a reason.
 */
#ifndef IDL_RECORD_H
#define IDL_RECORD_H

#include "norm.h"
#include "status.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#define IDL_REC_MAX_EMAILS 8
#define IDL_REC_MAX_PHONES 8
#define IDL_REC_MAX_ADDRS 4
#define IDL_REC_MAX_IPS 8
#define IDL_REC_SOURCE_MAX 128
#define IDL_REC_NAME_MAX 128

typedef struct {
    char number[IDL_NORM_PHONE_MAX]; /* E.164 */
    idl_line_type rec_type;          /* the type the source gave, or UNKNOWN */
    idl_line_type plan_type;         /* the number plan's specific type, or UNKNOWN */
} idl_rec_phone;

typedef struct {
    char source_id[IDL_REC_SOURCE_MAX];
    char first_name[IDL_REC_NAME_MAX];  /* as given (trimmed), for display */
    char middle_name[IDL_REC_NAME_MAX]; /* "" = nil */
    char last_name[IDL_REC_NAME_MAX];
    char norm_first[IDL_NORM_NAME_MAX]; /* normalized, for matching and keys */
    char norm_last[IDL_NORM_NAME_MAX];
    int dob_y, dob_m, dob_d; /* dob_y == 0: no dob */
    bool minor;
    int n_emails, n_phones, n_addrs, n_ips;
    char emails[IDL_REC_MAX_EMAILS][IDL_NORM_EMAIL_MAX];
    idl_rec_phone phones[IDL_REC_MAX_PHONES];
    idl_address addrs[IDL_REC_MAX_ADDRS];
    char ips[IDL_REC_MAX_IPS][IDL_NORM_IP_MAX];
    uint32_t dropped; /* identifiers dropped while parsing */
} idl_record;

/* Receives one warning sentence (unknown field, dropped identifier). */
typedef void (*idl_record_warn_fn)(void *ctx, const char *reason);

/* Parses and normalizes one record from a msgpack map.  Returns 0, or
 * IDL_INVALID_ARGUMENT with err saying why (the record is not to be stored).
 * warn may be NULL. */
int idl_record_parse(const msgpack_object *o, idl_record *r, idl_record_warn_fn warn, void *ctx,
                     char err[IDL_ERR_MAX]);

/* Whole years of age at the UTC date (y, m, d); -1 without a dob. */
int idl_record_age(const idl_record *r, int y, int m, int d);
/* True when the record is a child (< 13 by dob on that date, or minor). */
bool idl_record_is_child(const idl_record *r, int y, int m, int d);
/* Today's UTC date. */
void idl_today(int *y, int *m, int *d);

/* Serializes the record for the store (msgpack) into pk. */
void idl_record_pack(msgpack_packer *pk, const idl_record *r);
/* Runs today's normalizers again over a stored record's emails and
 * addresses (the identifiers whose rules have changed since layout 2): a
 * value that changes is replaced, one that is now invalid is dropped,
 * duplicates fold.  *changed says whether anything did.  Idempotent, as
 * the normalizers are. */
int idl_record_renormalize(idl_record *r, bool *changed);
/* Decodes a stored record.  IDL_DATA_LOSS when the bytes are not one. */
int idl_record_unpack(const void *buf, size_t len, idl_record *r);

/* Parses "YYYY-MM-DD" (a real calendar date). */
int idl_parse_date(const char *s, size_t len, int *y, int *m, int *d);

#endif
