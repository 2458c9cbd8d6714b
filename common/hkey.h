/* Hashed keys and person ids: how an identifier becomes an index key and a
 * source id becomes a person id.  Pure functions (no store, no I/O), shared by
 * the store, the daemon's read paths and the tools; the store's layout
 * (store.h) files persons under these keys.
 */
#ifndef IDL_HKEY_H
#define IDL_HKEY_H

#include "record.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t b[16];
} idl_hkey;

/* XXH3-128 of kind ":" norm; kinds: email, phone, ip, addr (STREET|ZIP),
 * addrcs (STREET|CITY|ST), name (last|first-group). */
void idl_hkey_make(idl_hkey *k, const char *kind, const char *norm);
void idl_hkey_addr(idl_hkey *k, const char *street, const char *zip);
void idl_hkey_addrcs(idl_hkey *k, const char *street, const char *city, const char *state);
void idl_hkey_name(idl_hkey *k, const char *norm_last, const char *first_group);
/* kind ":" a "|" b, for the keys Verify uses to find a name with one typo:
 * "lnf" (last name | first initial), "fgl" (first-name group | last initial)
 * and "dob" (date, b = ""). */
void idl_hkey_pair(idl_hkey *k, const char *kind, const char *a, const char *b);
/* The first UTF-8 character of s, NUL-terminated, into out. */
void idl_initial(const char *s, char out[8]);

/* "p_" + hex(XXH3-64(source_id)) */
uint64_t idl_person_id(const char *source_id);
void idl_person_id_format(uint64_t pid, char out[19]);
int idl_person_id_parse(const char *s, size_t len, uint64_t *pid);

/* Every index key of a record: identifiers (email, phone, ip, addr, addrcs)
 * and, when names is true, the name keys.  Returns the count (<= max). */
size_t idl_record_keys(const idl_record *r, idl_hkey *keys, size_t max, bool names);
#define IDL_RECORD_KEYS_MAX 64

/* Big-endian 64-bit integers, the byte order of every key layout in the
 * store (so keys sort as their numbers do). */
void idl_be64_put(uint8_t *p, uint64_t v);
uint64_t idl_be64_get(const uint8_t *p);

#endif
