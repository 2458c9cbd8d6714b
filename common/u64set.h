/* An insert-only set of 64-bit keys whose lookups never lock.
 *
 * The store mirrors its suppression list here, so that "is this person or
 * identifier suppressed?" costs a few nanoseconds and no RocksDB read.
 * Readers take no lock: a full table is replaced by a bigger copy published
 * with one atomic store, and old tables are kept until the set is freed (they
 * sum to less than the live one), so a reader still walking an old table
 * never touches freed memory.
 */
#ifndef IDL_U64SET_H
#define IDL_U64SET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct idl_u64table idl_u64table;

/* A zeroed idl_u64set is an empty set, ready for use; the fields are
 * private to u64set.c. */
typedef struct {
    _Atomic(idl_u64table *) table;
    size_t count;
    idl_u64table **retired;
    size_t nretired;
} idl_u64set;

/* Whether key was added.  Thread-safe against one concurrent writer and any
 * number of readers; never waits. */
bool idl_u64set_has(idl_u64set *s, uint64_t key);
/* Adds key (any value, 0 included).  Writers must be serialized by the
 * caller (the store's writer mutex); readers may run meanwhile.  Returns 0,
 * or IDL_INTERNAL when the bigger table cannot be allocated (the set is then
 * unchanged). */
int idl_u64set_add(idl_u64set *s, uint64_t key);
/* Releases every table and leaves s empty (zeroed).  No reader or writer may
 * be running on it. */
void idl_u64set_free(idl_u64set *s);

#endif
