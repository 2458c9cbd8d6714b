/* Hashed keys and person ids (see hkey.h). */
#include "hkey.h"
#include "norm.h"
#include "status.h"

#include <stdio.h>
#include <string.h>
#define XXH_INLINE_ALL /* streaming state on the stack, and inlined hot hashes */
#include <xxhash.h>

void idl_be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

uint64_t idl_be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* ---- keys ---- */

static void hkey_parts(idl_hkey *k, const char *const *parts, size_t n)
{
    /* Parts are joined with ':' after the kind and '|' between values, as
     * one streamed hash so no buffer has to hold the whole key. */
    XXH3_state_t st;
    XXH3_128bits_reset(&st);
    for (size_t i = 0; i < n; i++) {
        if (i == 1)
            XXH3_128bits_update(&st, ":", 1);
        else if (i > 1)
            XXH3_128bits_update(&st, "|", 1);
        XXH3_128bits_update(&st, parts[i], strlen(parts[i]));
    }
    XXH128_hash_t h = XXH3_128bits_digest(&st);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    memcpy(k->b, c.digest, 16);
}

void idl_hkey_make(idl_hkey *k, const char *kind, const char *norm)
{
    const char *p[2] = {kind, norm};
    hkey_parts(k, p, 2);
}

void idl_hkey_addr(idl_hkey *k, const char *street, const char *zip)
{
    const char *p[3] = {"addr", street, zip};
    hkey_parts(k, p, 3);
}

void idl_hkey_addrcs(idl_hkey *k, const char *street, const char *city, const char *state)
{
    const char *p[4] = {"addrcs", street, city, state};
    hkey_parts(k, p, 4);
}

void idl_hkey_name(idl_hkey *k, const char *norm_last, const char *first_group)
{
    const char *p[3] = {"name", norm_last, first_group};
    hkey_parts(k, p, 3);
}

void idl_hkey_pair(idl_hkey *k, const char *kind, const char *a, const char *b)
{
    const char *p[3] = {kind, a, b};
    hkey_parts(k, p, 3);
}

void idl_initial(const char *s, char out[8])
{
    size_t n = 1;
    unsigned char c = (unsigned char)s[0];
    if (c >= 0xf0)
        n = 4;
    else if (c >= 0xe0)
        n = 3;
    else if (c >= 0xc0)
        n = 2;
    size_t i = 0;
    for (; i < n && s[i]; i++)
        out[i] = s[i];
    out[i] = 0;
}

uint64_t idl_person_id(const char *source_id)
{
    return XXH3_64bits(source_id, strlen(source_id));
}

void idl_person_id_format(uint64_t pid, char out[19])
{
    snprintf(out, 19, "p_%016llx", (unsigned long long)pid);
}

int idl_person_id_parse(const char *s, size_t len, uint64_t *pid)
{
    if (len != 18 || s[0] != 'p' || s[1] != '_') return IDL_INVALID_ARGUMENT;
    uint64_t v = 0;
    for (size_t i = 2; i < 18; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0) return IDL_INVALID_ARGUMENT;
        v = (v << 4) | (uint64_t)d;
    }
    *pid = v;
    return IDL_OK;
}

size_t idl_record_keys(const idl_record *r, idl_hkey *keys, size_t max, bool names)
{
    size_t n = 0;
#define ADD(expr)                                                                                  \
    do {                                                                                           \
        if (n < max) {                                                                             \
            expr;                                                                                  \
            n++;                                                                                   \
        }                                                                                          \
    } while (0)
    for (int i = 0; i < r->n_emails; i++)
        ADD(idl_hkey_make(&keys[n], "email", r->emails[i]));
    for (int i = 0; i < r->n_phones; i++)
        ADD(idl_hkey_make(&keys[n], "phone", r->phones[i].number));
    for (int i = 0; i < r->n_ips; i++)
        ADD(idl_hkey_make(&keys[n], "ip", r->ips[i]));
    for (int i = 0; i < r->n_addrs; i++) {
        const idl_address *a = &r->addrs[i];
        if (a->zip[0]) ADD(idl_hkey_addr(&keys[n], a->street, a->zip));
        if (a->city[0] && a->state[0]) ADD(idl_hkey_addrcs(&keys[n], a->street, a->city, a->state));
    }
    if (names) {
        const char *groups[16];
        size_t ng = idl_nick_groups(r->norm_first, groups, 16);
        char fi[8], li[8];
        idl_initial(r->norm_first, fi);
        idl_initial(r->norm_last, li);
        for (size_t g = 0; g < ng; g++) {
            ADD(idl_hkey_name(&keys[n], r->norm_last, groups[g]));
            /* Verify tolerates one typo in the last name: the first name
             * (or its nickname group) and the last initial find it. */
            ADD(idl_hkey_pair(&keys[n], "fgl", groups[g], li));
        }
        /* ... and one typo in the first name: the last name and the first
         * initial find it. */
        ADD(idl_hkey_pair(&keys[n], "lnf", r->norm_last, fi));
        if (r->dob_y) {
            char dob[16];
            snprintf(dob, sizeof dob, "%04d-%02d-%02d", r->dob_y, r->dob_m, r->dob_d);
            ADD(idl_hkey_pair(&keys[n], "dob", dob, ""));
        }
    }
#undef ADD
    return n;
}
