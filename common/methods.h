/* The methods of the API (API.md), written once.
 *
 * The X-macro below is the only list of method names: the daemon binds its
 * handlers to it, Batch takes its allowed calls from it, the query log finds
 * the method whose answers it records per person in it, and the bench takes
 * its wire names from it.  Columns, X(ID, name, scope, handler, token, reads,
 * batch, logged):
 *   ID       IDL_METHOD_<ID>, the row's index
 *   name     the wire name
 *   scope    the key scope it needs (auth.h), 0: no key
 *   handler  the daemon binds it to idld_<handler>
 *   token    takes a rate-limit token itself (Batch does not: its calls do)
 *   reads    a deadline passing during the call voids the answer
 *   batch    may be called inside Lookup/Batch
 *   logged   the persons it returns are logged per person, for Disclosures
 */
#ifndef IDL_METHODS_H
#define IDL_METHODS_H

#include "auth.h"

#include <stdbool.h>
#include <stddef.h>

#define IDL_METHOD_LIST(X)                                                                         \
    X(HEALTH, "grpc.health.v1.Health/Check", 0, health, 0, 0, 0, 0)                                \
    X(DESCRIBE, "idlookup.v1.Meta/Describe", 0, describe, 0, 0, 0, 0)                              \
    X(SEARCH, "idlookup.v1.Lookup/Search", IDL_SCOPE_LOOKUP, search, 1, 1, 1, 1)                   \
    X(VALIDATE, "idlookup.v1.Lookup/Validate", IDL_SCOPE_LOOKUP, validate, 1, 1, 1, 0)             \
    X(VERIFY, "idlookup.v1.Lookup/Verify", IDL_SCOPE_LOOKUP, verify, 1, 1, 1, 0)                   \
    X(BATCH, "idlookup.v1.Lookup/Batch", IDL_SCOPE_LOOKUP, batch, 0, 1, 0, 0)                      \
    X(OPTOUT, "idlookup.v1.Privacy/OptOut", IDL_SCOPE_PRIVACY, optout, 1, 0, 0, 0)                 \
    X(DISCLOSURES, "idlookup.v1.Privacy/Disclosures", IDL_SCOPE_PRIVACY, disclosures, 1, 0, 0, 0)  \
    X(UPSERT, "idlookup.v1.Admin/Upsert", IDL_SCOPE_ADMIN, upsert, 1, 0, 0, 0)                     \
    X(STATS, "idlookup.v1.Admin/Stats", IDL_SCOPE_ADMIN, stats, 1, 0, 0, 0)

typedef enum {
#define IDL_METHOD_ENUM(id, name, scope, handler, token, reads, batch, logged) IDL_METHOD_##id,
    IDL_METHOD_LIST(IDL_METHOD_ENUM)
#undef IDL_METHOD_ENUM
        IDL_METHOD_COUNT
} idl_method_id;

/* The wire name of a method ("idlookup.v1.Lookup/Search"); NULL outside the
 * table.  The string is static. */
const char *idl_method_name(int id);

/* The method named name[0..len) (not NUL-terminated), or -1. */
int idl_method_find(const char *name, size_t len);

/* Whether the persons a call of this wire name returns are logged per
 * person (the "logged" column); false for a name not in the table. */
bool idl_method_logged(const char *name, size_t len);

#endif
