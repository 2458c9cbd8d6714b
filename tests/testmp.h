/* Helpers the unit tests share: building msgpack by hand, reading maps,
 * removing temp trees, and capping the address space of a forked child so
 * that an allocation sized from a hostile declared length fails at once. */
#ifndef IDL_TESTMP_H
#define IDL_TESTMP_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} builder;

static inline void b_init(builder *b)
{
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

static inline void b_str(builder *b, const char *s)
{
    msgpack_pack_str(&b->pk, strlen(s));
    msgpack_pack_str_body(&b->pk, s, strlen(s));
}

static inline bool str_is(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           (n == 0 || memcmp(o->via.str.ptr, s, n) == 0);
}

static inline const msgpack_object *get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (str_is(&map->via.map.ptr[i].key, key)) return &map->via.map.ptr[i].val;
    return NULL;
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* In a forked child: caps the address space near its current size, so an
 * allocation sized from a declared length fails at once instead of being
 * made (and, under MALLOC_PERTURB_, filled).  AddressSanitizer reserves far
 * more address space than it uses, so there the cap is left out. */
static inline void cap_address_space(void)
{
#ifndef UNDER_ASAN
    long pages = 0, page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld", &pages) != 1) pages = 0;
        fclose(f);
    }
    if (pages > 0) {
        rlim_t cap = (rlim_t)pages * (rlim_t)page + ((rlim_t)256 << 20);
        struct rlimit rl = {cap, cap};
        setrlimit(RLIMIT_AS, &rl);
    }
#endif
}

#endif
