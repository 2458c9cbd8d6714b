/* Command-line values shared by every program: one strict parser for
 * whole-number flags, so that all of them take and refuse the same spellings.
 * Each program still words its own message, naming the flag.
 */
#ifndef IDL_ARGS_H
#define IDL_ARGS_H

#include <stdint.h>

/* Parses s as a whole decimal number in [lo, hi] into *out.  Only the digits
 * 0-9 are taken: "", "+5", " 5", "5 ", "5.0", "-1" and values past UINT64_MAX
 * are typos, not numbers.  Returns IDL_OK, or IDL_INVALID_ARGUMENT with *out
 * untouched. */
int idl_args_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);

#endif
