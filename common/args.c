/* Command-line values (see args.h). */
#include "args.h"
#include "status.h"

#include <stddef.h>

int idl_args_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!s || !*s) return IDL_INVALID_ARGUMENT;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return IDL_INVALID_ARGUMENT;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return IDL_INVALID_ARGUMENT;
        v = v * 10 + d;
    }
    if (v < lo || v > hi) return IDL_INVALID_ARGUMENT;
    *out = v;
    return IDL_OK;
}
