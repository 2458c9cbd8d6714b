/* The wire codec: request and reply envelopes (API.md §2) over msgpack-c.
 *
 * Pure code, no sockets.  Every declared length and count from a peer is
 * checked against the bytes actually present, and nesting depth and object
 * count are capped, before msgpack-c allocates anything; a message that fails
 * gets IDL_INVALID_ARGUMENT and a sentence naming the cause.  Decoded objects
 * live in a caller-owned msgpack_zone that is cleared and reused per request.
 */
#ifndef IDL_WIRE_H
#define IDL_WIRE_H

#include "status.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDL_WIRE_MAX_MSG 65536 /* the transport refuses anything larger */
#define IDL_WIRE_MAX_DEPTH 16  /* envelope + body + record + address */
/* Every object takes at least one byte, so a request within the size limit
 * has at most this many: any request up to the size limit is served
 * (API.md §1), and decoding one costs at most 1.5 MiB of msgpack_objects.
 * The count matters for callers with larger size limits (ingest). */
#define IDL_WIRE_MAX_OBJECTS 65536

/* A decoded request.  Pointers point into the request bytes or the zone
 * passed to idl_wire_decode_request, and live as long as both. */
typedef struct {
    uint64_t id; /* 0 when has_id is false */
    bool has_id;
    const char *method; /* not NUL-terminated; NULL when absent */
    size_t method_len;
    const char *auth; /* meta.authorization; NULL when absent */
    size_t auth_len;
    bool has_timeout;
    uint64_t timeout_ms;
    const msgpack_object *body; /* NULL when absent (an empty map) */
    bool body_not_map;          /* body present but not a map: the body check's
                                   INVALID_ARGUMENT, which comes last in the
                                   contract's order, not a decode failure */
} idl_request;

/* Checks the structure of one msgpack object that must span buf exactly:
 * declared lengths against the bytes left, depth, object count.  Returns 0 or
 * IDL_INVALID_ARGUMENT with a sentence in err. */
int idl_wire_check(const void *buf, size_t len, char err[IDL_ERR_MAX]);
/* The same with other limits (replies and stored entries may be larger
 * than a request; depth stays capped at IDL_WIRE_MAX_DEPTH). */
int idl_wire_check_limits(const void *buf, size_t len, size_t max_len, size_t max_objects,
                          char err[IDL_ERR_MAX]);

/* Decodes an envelope.  On IDL_INVALID_ARGUMENT, err says why and req->id /
 * req->has_id tell whether the id could still be read (the reply echoes it
 * when it could: "missing method" keeps the id, "not a map" does not). */
int idl_wire_decode_request(const void *buf, size_t len, msgpack_zone *zone, idl_request *req,
                            char err[IDL_ERR_MAX]);

/* Body field parsing: the table lists every field a method accepts with its
 * type.  Unknown keys, non-string keys, duplicate keys and wrong types are
 * IDL_INVALID_ARGUMENT with a message naming the field; nil counts as absent. */
typedef enum {
    IDL_FT_STR,
    IDL_FT_UINT,   /* a non-negative integer */
    IDL_FT_NUMBER, /* an integer or a float */
    IDL_FT_MAP,
    IDL_FT_ARRAY,
    IDL_FT_BOOL,
    IDL_FT_STR_OR_MAP,
} idl_field_type;

typedef struct {
    const char *name;
    idl_field_type type;
    const msgpack_object *val; /* out: NULL when absent */
} idl_field;

/* body may be NULL (empty).  field_out, when set, receives the offending
 * field name (static or pointing into the message) for details.field. */
int idl_wire_fields(const msgpack_object *body, idl_field *fields, size_t n, char err[IDL_ERR_MAX],
                    char field_out[64]);

/* Copies a msgpack str into a NUL-terminated buffer; IDL_INVALID_ARGUMENT when
 * it does not fit. */
int idl_wire_str(const msgpack_object *o, char *buf, size_t bufsz);

/* Numeric helpers for validated fields. */
uint64_t idl_wire_uint(const msgpack_object *o);
double idl_wire_number(const msgpack_object *o);

/* UTF-8 in replies (API.md §2: every string in a reply is valid UTF-8, also
 * when it quotes request bytes that were not).  A byte that does not start a
 * well-formed sequence (truncated, overlong, surrogate, above U+10FFFF, a
 * stray continuation byte) is shown as the four characters "\xHH"; the next
 * byte is looked at afresh, so a bad sequence is escaped byte by byte. */

/* True when s[0..len) is well-formed UTF-8. */
bool idl_wire_utf8_valid(const char *s, size_t len);

/* Writes s[0..len) escaped as above into out (NUL-terminated, outsz >= 1),
 * never cutting a character or an escape; well-formed UTF-8 is copied
 * unchanged.  Returns how many input bytes were consumed (len when all fit). */
size_t idl_wire_utf8_escape(const char *s, size_t len, char *out, size_t outsz);

/* Packs a C string as msgpack str (nil for NULL).  Both packers escape
 * malformed UTF-8 as above, so whatever a reply quotes (method names, field
 * names, values, record fields in warnings) goes out as valid msgpack str;
 * well-formed strings are packed unchanged. */
void idl_wire_pack_cstr(msgpack_packer *pk, const char *s);
void idl_wire_pack_str(msgpack_packer *pk, const char *s, size_t len);

/* True when o is a str equal to s. */
bool idl_wire_str_eq(const msgpack_object *o, const char *s);

/* A msgpack_packer writer that appends to an nng-independent growing buffer.
 * Used per request context and reused without freeing between requests. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
    bool failed; /* an allocation failed or a fixed buffer is full */
    bool fixed;  /* data is caller-owned memory of cap bytes: never realloc'd */
} idl_buf;

void idl_buf_reset(idl_buf *b);
void idl_buf_free(idl_buf *b);
int idl_buf_write(void *data, const char *buf, size_t len); /* msgpack_packer_write */
void idl_buf_packer(idl_buf *b, msgpack_packer *pk);

#endif
