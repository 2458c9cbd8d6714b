/* The lock-free insert-only set (common/u64set.c): membership, growth past
 * many table doublings while a reader thread keeps asking, and the keys a
 * sentinel-based table gets wrong first (0, 1, UINT64_MAX). */
#include "status.h"
#include "testutil.h"
#include "u64set.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

static void empty_set(void)
{
    idl_u64set s = {0};
    CHECK(!idl_u64set_has(&s, 0));
    CHECK(!idl_u64set_has(&s, 42));
    idl_u64set_free(&s);
    /* Freeing an empty set twice is fine: free leaves it empty. */
    idl_u64set_free(&s);
    CHECK(!idl_u64set_has(&s, 42));
}

static void add_has(void)
{
    idl_u64set s = {0};
    CHECK_INT(idl_u64set_add(&s, 7), IDL_OK);
    CHECK_INT(idl_u64set_add(&s, 900), IDL_OK);
    CHECK(idl_u64set_has(&s, 7));
    CHECK(idl_u64set_has(&s, 900));
    CHECK(!idl_u64set_has(&s, 8));
    CHECK(!idl_u64set_has(&s, 6));
    /* Adding twice keeps one entry and stays a member. */
    CHECK_INT(idl_u64set_add(&s, 7), IDL_OK);
    CHECK(idl_u64set_has(&s, 7));
    idl_u64set_free(&s);
    CHECK(!idl_u64set_has(&s, 7));
}

static void edge_keys(void)
{
    /* 0 is the empty-slot marker inside the table: the key 0 must still be a
     * key like any other, and must not be "present" in an empty table. */
    idl_u64set s = {0};
    CHECK_INT(idl_u64set_add(&s, 5), IDL_OK);
    CHECK(!idl_u64set_has(&s, 0));
    CHECK(!idl_u64set_has(&s, UINT64_MAX));
    CHECK_INT(idl_u64set_add(&s, 0), IDL_OK);
    CHECK(idl_u64set_has(&s, 0));
    CHECK(!idl_u64set_has(&s, 1));
    CHECK(!idl_u64set_has(&s, UINT64_MAX));
    CHECK_INT(idl_u64set_add(&s, UINT64_MAX), IDL_OK);
    CHECK_INT(idl_u64set_add(&s, 1), IDL_OK);
    CHECK(idl_u64set_has(&s, UINT64_MAX));
    CHECK(idl_u64set_has(&s, 1));
    CHECK(idl_u64set_has(&s, 0));
    CHECK(!idl_u64set_has(&s, UINT64_MAX - 1));
    CHECK(!idl_u64set_has(&s, 2));
    idl_u64set_free(&s);
}

/* Keys that share their low bits collide in the table's first slots; the
 * set must keep them apart through linear probing and regrowth. */
static void colliding_low_bits(void)
{
    idl_u64set s = {0};
    for (uint64_t i = 0; i < 5000; i++)
        CHECK_INT(idl_u64set_add(&s, i << 32), IDL_OK);
    size_t missing = 0, extra = 0;
    for (uint64_t i = 0; i < 5000; i++) {
        missing += !idl_u64set_has(&s, i << 32);
        extra += idl_u64set_has(&s, (i << 32) | 1);
    }
    CHECK_INT(missing, 0);
    CHECK_INT(extra, 0);
    idl_u64set_free(&s);
}

/* One writer grows the set from empty through many doublings (1024 slots
 * first, so 200000 keys take ~9 regrowths) while a reader asks about every
 * key already published and about keys never added.  A reader that lands on
 * a retired table or a half-copied one would miss a key. */
#define GROW_KEYS 200000u

typedef struct {
    idl_u64set *set;
    _Atomic uint64_t published; /* keys [0, published) are in the set */
    _Atomic bool done;
    uint64_t misses, false_hits, rounds;
} grow_state;

static uint64_t grow_key(uint64_t i)
{
    return i * 0x9e3779b97f4a7c15ull; /* distinct for distinct i (odd multiplier) */
}

static void *reader(void *arg)
{
    grow_state *g = arg;
    uint64_t probe = 0;
    while (!atomic_load_explicit(&g->done, memory_order_acquire)) {
        uint64_t n = atomic_load_explicit(&g->published, memory_order_acquire);
        if (n) {
            /* The newest key, and a spread of older ones. */
            g->misses += !idl_u64set_has(g->set, grow_key(n - 1));
            g->misses += !idl_u64set_has(g->set, grow_key(probe % n));
            probe = probe * 6364136223846793005ull + 1442695040888963407ull;
        }
        g->false_hits += idl_u64set_has(g->set, grow_key(GROW_KEYS + (g->rounds % 1000)));
        g->rounds++;
    }
    return NULL;
}

static void growth_with_concurrent_reader(void)
{
    idl_u64set s = {0};
    grow_state g = {.set = &s};
    pthread_t th;
    CHECK_INT(pthread_create(&th, NULL, reader, &g), 0);
    int failed = 0;
    for (uint64_t i = 0; i < GROW_KEYS; i++) {
        failed += idl_u64set_add(&s, grow_key(i)) != IDL_OK;
        atomic_store_explicit(&g.published, i + 1, memory_order_release);
    }
    atomic_store_explicit(&g.done, true, memory_order_release);
    CHECK_INT(pthread_join(th, NULL), 0);
    CHECK_INT(failed, 0);
    CHECK_INT(g.misses, 0);
    CHECK_INT(g.false_hits, 0);
    CHECK(g.rounds > 0);
    size_t missing = 0;
    for (uint64_t i = 0; i < GROW_KEYS; i++)
        missing += !idl_u64set_has(&s, grow_key(i));
    CHECK_INT(missing, 0);
    idl_u64set_free(&s);
}

int main(void)
{
    RUN(empty_set);
    RUN(add_has);
    RUN(edge_keys);
    RUN(colliding_low_bits);
    RUN(growth_with_concurrent_reader);
    return test_summary();
}
