/* The C side of phone.cc, a shim over libphonenumber (private to norm.c). */
#ifndef IDL_PHONE_H
#define IDL_PHONE_H

#include "norm.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Parses in[0..len) with default region US.  For a number libphonenumber
 * holds valid, writes its E.164 form to e164 (NUL-terminated, at most cap
 * bytes), the plan type and the region ("" for non-geographic numbers such as
 * +800) and returns 0; otherwise returns -1 and a static *reason.  Never
 * throws. */
int idl_phone_parse(const char *in, size_t len, char *e164, size_t cap, idl_line_type *type,
                    char country[3], const char **reason);

#ifdef __cplusplus
}
#endif

#endif
