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

/* The ten identifier fields of Search, OptOut and Disclosures, written
 * once, in the API's order (which is also the order Search lists a person's
 * "matched" fields in).  Columns, X(ID, name, member, check, raw_max, key):
 *   ID       IDLD_ID_<ID>, the row's index
 *   name     the wire name
 *   member   where idld_query keeps the normalized value (its size is the
 *            limit after normalizing) and has_<member>, whether it was given
 *   check    the order the fields are checked in: the first bad one is the
 *            one reported, and fingerprints are logged in this order
 *   raw_max  bytes accepted before normalizing (with the terminating NUL)
 *   key      the hashed-key kind the value is indexed under on its own
 *            (idl_hkey_make), NULL for fields indexed only in combination
 *            (names, address parts)
 * The normalizer of each row is bound in query.c. */
#define IDLD_IDENT_LIST(X)                                                                         \
    X(EMAIL, "email", email, 0, 512, "email")                                                      \
    X(PHONE, "phone", phone, 1, 512, "phone")                                                      \
    X(FIRST, "first_name", first, 3, 512, NULL)                                                    \
    X(LAST, "last_name", last, 4, 512, NULL)                                                       \
    X(STREET, "street", street, 8, 512, NULL)                                                      \
    X(UNIT, "unit", unit, 9, 128, NULL)                                                            \
    X(CITY, "city", city, 5, 512, NULL)                                                            \
    X(STATE, "state", state, 6, 512, NULL)                                                         \
    X(ZIP, "zip", zip, 7, 512, NULL)                                                               \
    X(IP, "ip", ip, 2, 512, "ip")

typedef enum {
#define IDLD_IDENT_ENUM(id, name, member, check, raw_max, key) IDLD_ID_##id,
    IDLD_IDENT_LIST(IDLD_IDENT_ENUM)
#undef IDLD_IDENT_ENUM
        IDLD_IDENT_COUNT
} idld_ident_id;

/* The wire names of the identifier fields, indexed by idld_ident_id. */
extern const char *const idld_ident_names[IDLD_IDENT_COUNT];

/* Sets f[0..IDLD_IDENT_COUNT) to the identifier fields (strings), in the
 * table's order, for idl_wire_fields; the caller appends its own. */
void idld_ident_fields(idl_field *f);

/* Whether a record holds a normalized identifier (Search, Verify, OptOut). */
bool idld_has_email(const idl_record *r, const char *email);
bool idld_has_phone(const idl_record *r, const char *e164);
bool idld_has_ip(const idl_record *r, const char *ip);
/* Whether an address agrees with every part given (NULL = any). */
bool idld_addr_agrees(const idl_address *a, const char *street, const char *unit, const char *city,
                      const char *state, const char *zip);

/* Shared between Search, OptOut and Disclosures: the parsed identifier set. */
typedef struct {
    bool has_email, has_phone, has_ip, has_street, has_unit, has_city, has_state, has_zip;
    bool has_first, has_last, has_name; /* has_name: both names */
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

/* Parses and normalizes the identifier fields of a body (those of the
 * table found in fields[] by name: Verify's lack ip).  Fails with INVALID_ARGUMENT naming the
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
