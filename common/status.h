/* Status codes of idlookup, written once.
 *
 * The X-macro below is the only list of codes in the project: it generates the
 * enum, the wire number and the name.  Every function in common/ returns one of
 * these (IDL_OK is 0), so a storage error deep in the store reaches the wire as
 * INTERNAL without any translation table in between.
 */
#ifndef IDL_STATUS_H
#define IDL_STATUS_H

#define IDL_STATUS_LIST(X)                                                                         \
    X(OK, 0)                                                                                       \
    X(CANCELLED, 1)                                                                                \
    X(UNKNOWN, 2)                                                                                  \
    X(INVALID_ARGUMENT, 3)                                                                         \
    X(DEADLINE_EXCEEDED, 4)                                                                        \
    X(NOT_FOUND, 5)                                                                                \
    X(ALREADY_EXISTS, 6)                                                                           \
    X(PERMISSION_DENIED, 7)                                                                        \
    X(RESOURCE_EXHAUSTED, 8)                                                                       \
    X(FAILED_PRECONDITION, 9)                                                                      \
    X(ABORTED, 10)                                                                                 \
    X(OUT_OF_RANGE, 11)                                                                            \
    X(UNIMPLEMENTED, 12)                                                                           \
    X(INTERNAL, 13)                                                                                \
    X(UNAVAILABLE, 14)                                                                             \
    X(DATA_LOSS, 15)                                                                               \
    X(UNAUTHENTICATED, 16)

typedef enum {
#define IDL_STATUS_ENUM(name, num) IDL_##name = num,
    IDL_STATUS_LIST(IDL_STATUS_ENUM)
#undef IDL_STATUS_ENUM
} idl_status;

/* Number of wire codes (they are dense, 0..IDL_STATUS_COUNT-1): one per row. */
#define IDL_STATUS_ONE(name, num) +1
#define IDL_STATUS_COUNT (0 IDL_STATUS_LIST(IDL_STATUS_ONE))

/* "INVALID_ARGUMENT" for 3; "UNKNOWN" for a number outside the table.  The
 * string is static. */
const char *idl_status_name(int code);

/* Parses a name such as "NOT_FOUND"; returns 0 and writes *code, or
 * IDL_INVALID_ARGUMENT for a name not in the table. */
int idl_status_parse(const char *name, int *code);

/* Error text: every function in common/ that explains a failure takes
 * `char err[IDL_ERR_MAX]` and writes one NUL-terminated line there (no
 * newline) when it returns an error; on success err is left as it was.
 * Callers own the buffer, so no error text is ever freed. */
#define IDL_ERR_MAX 256

#endif
