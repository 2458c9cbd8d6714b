/* Identifier sets shared by Search, OptOut and Disclosures (see query.c):
 * the parsed and normalized query, the persons holding all of it, its
 * hashed keys, and the record predicates the lookup methods share. */
#ifndef IDLD_QUERY_H
#define IDLD_QUERY_H

#include "call.h"
#include "norm.h"
#include "record.h"
#include "store.h"
#include "wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
