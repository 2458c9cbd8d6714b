/* The lock-free insert-only set (see u64set.h): open addressing with linear
 * probing over mixed keys, at most half full. */
#include "u64set.h"
#include "status.h"

#include <stdlib.h>
#include <string.h>

struct idl_u64table {
    size_t cap; /* power of two */
    _Atomic uint64_t slots[];
};

/* A strong 64-bit mix (MurmurHash3's finalizer), so that sequential keys
 * spread over the table. */
static uint64_t set_mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x ? x : 1; /* 0 marks an empty slot */
}

static idl_u64table *table_new(size_t cap)
{
    idl_u64table *t = calloc(1, sizeof(*t) + cap * sizeof(uint64_t));
    if (t) t->cap = cap;
    return t;
}

static bool table_has(const idl_u64table *t, uint64_t v)
{
    size_t mask = t->cap - 1;
    for (size_t i = v & mask;; i = (i + 1) & mask) {
        uint64_t x = atomic_load_explicit(&((idl_u64table *)t)->slots[i], memory_order_acquire);
        if (x == v) return true;
        if (x == 0) return false;
    }
}

static void table_put(idl_u64table *t, uint64_t v)
{
    size_t mask = t->cap - 1;
    for (size_t i = v & mask;; i = (i + 1) & mask) {
        uint64_t x = atomic_load_explicit(&t->slots[i], memory_order_relaxed);
        if (x == v) return;
        if (x == 0) {
            atomic_store_explicit(&t->slots[i], v, memory_order_release);
            return;
        }
    }
}

bool idl_u64set_has(idl_u64set *s, uint64_t key)
{
    idl_u64table *t = atomic_load_explicit(&s->table, memory_order_acquire);
    return t && table_has(t, set_mix(key));
}

int idl_u64set_add(idl_u64set *s, uint64_t key)
{
    uint64_t v = set_mix(key);
    idl_u64table *t = atomic_load_explicit(&s->table, memory_order_relaxed);
    if (t && table_has(t, v)) return IDL_OK;
    if (!t || (s->count + 1) * 2 > t->cap) {
        idl_u64table *n = table_new(t ? t->cap * 2 : 1024);
        idl_u64table **r = t ? realloc(s->retired, (s->nretired + 1) * sizeof(*r)) : s->retired;
        if (!n || (t && !r)) {
            free(n);
            if (r) s->retired = r;
            return IDL_INTERNAL;
        }
        if (t) {
            for (size_t i = 0; i < t->cap; i++) {
                uint64_t x = atomic_load_explicit(&t->slots[i], memory_order_relaxed);
                if (x) table_put(n, x);
            }
            s->retired = r;
            s->retired[s->nretired++] = t;
        }
        atomic_store_explicit(&s->table, n, memory_order_release);
        t = n;
    }
    table_put(t, v);
    s->count++;
    return IDL_OK;
}

void idl_u64set_free(idl_u64set *s)
{
    free(atomic_load(&s->table));
    for (size_t i = 0; i < s->nretired; i++)
        free(s->retired[i]);
    free(s->retired);
    atomic_store(&s->table, NULL);
    s->count = 0;
    s->retired = NULL;
    s->nretired = 0;
}
