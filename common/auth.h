/* API keys: the key file, constant-time authentication and per-key rate limits.
 *
 * A key file holds one key per line; the secret itself is never stored, only
 * its BLAKE2b-256 hash (libsodium).  The daemon loads the file into an
 * idl_keyring at start and on SIGHUP; lookups are read-only and thread-safe,
 * and each key carries its own token bucket (a per-key lock, never a global one).
 *
 * File format (UTF-8 text, one key per line, '#' starts a comment line, fields
 * separated by one TAB):
 *   id  customer  scopes  rate  state  hash
 *   id:       "k" + 12 lower-case hex digits, unique in the file
 *   customer: the customer's name (no TAB, no newline)
 *   scopes:   comma-separated subset of lookup,privacy,admin
 *   rate:     requests per second, 1..1000000 (token bucket, burst = rate)
 *   state:    "active" or "revoked"
 *   hash:     64 lower-case hex digits, BLAKE2b-256 of the whole secret
 * The secret handed to the customer is "idl_" + id + "_" + 43 base64url
 * characters (32 random bytes), so the id is found without a table scan and
 * the comparison of hashes is the only secret-dependent step.
 */
#ifndef IDL_AUTH_H
#define IDL_AUTH_H

#include "status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The scopes a key may hold, written once: X(NAME, bit, word).  The word is
 * how key files, the keys tool and error messages spell it. */
#define IDL_SCOPE_LIST(X)                                                                          \
    X(LOOKUP, 1u, "lookup")                                                                        \
    X(PRIVACY, 2u, "privacy")                                                                      \
    X(ADMIN, 4u, "admin")

enum {
#define IDL_SCOPE_ENUM(name, bit, word) IDL_SCOPE_##name = bit,
    IDL_SCOPE_LIST(IDL_SCOPE_ENUM)
#undef IDL_SCOPE_ENUM
};

#define IDL_AUTH_ID_MAX 16
#define IDL_AUTH_CUSTOMER_MAX 128
#define IDL_AUTH_SECRET_MAX 96
/* Bounds of a key's rate (requests per second). */
#define IDL_AUTH_RATE_MIN 1u
#define IDL_AUTH_RATE_MAX 1000000u

typedef struct idl_keyring idl_keyring;
typedef struct idl_key idl_key;

/* Public facts about a key; valid as long as the keyring that returned it. */
typedef struct {
    char id[IDL_AUTH_ID_MAX];
    char customer[IDL_AUTH_CUSTOMER_MAX];
    unsigned scopes;
    uint32_t rate;
    bool revoked;
} idl_key_info;

/* "lookup,privacy" -> mask; IDL_INVALID_ARGUMENT naming nothing else. */
int idl_auth_parse_scopes(const char *s, unsigned *out);
/* The word of one scope bit ("lookup"); "" for anything else.  Static. */
const char *idl_auth_scope_name(unsigned bit);
/* mask -> "lookup,privacy" into buf. */
void idl_auth_format_scopes(unsigned scopes, char *buf, size_t bufsz);

/* Checks a customer name as the key file can hold it: 1..IDL_AUTH_CUSTOMER_MAX-1
 * bytes of UTF-8 without control characters (so no TAB or newline).  Returns 0,
 * or IDL_INVALID_ARGUMENT with a short phrase naming the cause in err
 * ("empty", "contains a TAB", ...). */
int idl_auth_validate_customer(const char *customer, char err[IDL_ERR_MAX]);

/* Loads a key file.  On error returns IDL_INVALID_ARGUMENT (malformed line;
 * *err names the line number and cause), IDL_NOT_FOUND (no such file) or
 * IDL_INTERNAL (any other I/O error), and *out is untouched.  err may be NULL;
 * it is written only on error. */
int idl_keyring_load(const char *path, idl_keyring **out, char err[IDL_ERR_MAX]);
/* Frees the keyring; NULL is fine.  No lookup may be running on it. */
void idl_keyring_free(idl_keyring *kr);

size_t idl_keyring_count(const idl_keyring *kr);
/* The i-th key in file order. */
const idl_key_info *idl_keyring_info(const idl_keyring *kr, size_t i);

/* Authenticates an "authorization" metadata value ("Bearer <secret>").
 * Returns 0 and *key for an active key whose hash matches (compared in
 * constant time), IDL_UNAUTHENTICATED for anything else (absent, not Bearer,
 * malformed, unknown, revoked).  Thread-safe. */
int idl_auth_check(idl_keyring *kr, const char *authorization, size_t len, idl_key **key);

const idl_key_info *idl_key_get_info(const idl_key *key);

/* Takes one token from the key's bucket at time now_us (monotonic
 * microseconds).  Returns 0 and writes the whole tokens left, or
 * IDL_RESOURCE_EXHAUSTED and the milliseconds until a token is back.
 * Thread-safe (per-key lock). */
int idl_key_take(idl_key *key, uint64_t now_us, uint32_t *remaining, uint32_t *retry_after_ms);

/* The whole tokens the bucket would hold at now_us, taking none (for the
 * ratelimit-remaining of calls that take no token themselves). */
void idl_key_peek(idl_key *key, uint64_t now_us, uint32_t *remaining);

/* Whether the bucket holds at least one whole token at now_us, taking none:
 * 0, or IDL_RESOURCE_EXHAUSTED and the milliseconds until one is back (for
 * Batch, which takes no token itself but is refused whole on an empty
 * bucket).  Thread-safe. */
int idl_key_has_token(idl_key *key, uint64_t now_us, uint32_t *retry_after_ms);

/* Key-file editing for `idlookup keys`.  add: creates the file (mode 0600) if
 * missing, appends a new active key and writes the secret (NUL-terminated)
 * into secret and its id into id_out (both only on success).  revoke: rewrites
 * the file atomically (temp file + rename) with that key's state set to
 * revoked; IDL_NOT_FOUND for an unknown id or a missing file, 0 for a key that
 * is already revoked.  Both refuse a file that does not parse (its load error),
 * return IDL_INVALID_ARGUMENT for bad arguments and IDL_INTERNAL for I/O
 * errors, and hold an exclusive flock(2) on the file while editing it, so
 * concurrent edits are serialized.  err as for idl_keyring_load. */
int idl_keyfile_add(const char *path, const char *customer, unsigned scopes, uint32_t rate,
                    char secret[IDL_AUTH_SECRET_MAX], char id_out[IDL_AUTH_ID_MAX],
                    char err[IDL_ERR_MAX]);
int idl_keyfile_revoke(const char *path, const char *id, char err[IDL_ERR_MAX]);

#endif
