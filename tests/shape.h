/* Shape checker for the tests: loads schemas/api.json (format in schemas/README.md) and
 * checks that a decoded msgpack value has exactly the documented shape - every required
 * field, no other field, every value of its type, enums and ranges held.
 * It is pure: no I/O besides reading the schema file in shape_load().
 */
#ifndef IDL_TESTS_SHAPE_H
#define IDL_TESTS_SHAPE_H

#include <msgpack.h>
#include <stddef.h>

/* A loaded schema.  Immutable after shape_load(), so one schema may be shared by
 * threads that only check. */
typedef struct shape_schema shape_schema;

/* Reads and validates the schema at schema_path.  On success writes *out (free it with
 * shape_free) and returns 0.  Otherwise leaves *out alone, writes a one-line reason
 * naming the offending place (e.g. "types.Person.age: unknown type name 'Uint'") to err
 * and returns IDL_NOT_FOUND (file cannot be opened), IDL_INVALID_ARGUMENT (not JSON, or
 * breaks the format) or IDL_INTERNAL (out of memory). */
int shape_load(const char *schema_path, shape_schema **out, char err[256]);

/* Frees everything shape_load() made; accepts NULL. */
void shape_free(shape_schema *s);

/* Check body against the request or response message of method (the full
 * "package.Service/Method").  Returns 0 when it matches; IDL_INVALID_ARGUMENT with err
 * naming the path when it does not (e.g. "persons[0].phones[1].line_type: 'cell' not in
 * enum"); IDL_NOT_FOUND for a method the schema does not list.  body must not be NULL:
 * an absent request body is an empty map.  Nothing is retained from body. */
int shape_check_request(const shape_schema *s, const char *method, const msgpack_object *body,
                        char err[512]);
int shape_check_response(const shape_schema *s, const char *method, const msgpack_object *body,
                         char err[512]);

/* Same, against a named type such as "Person" (IDL_NOT_FOUND for an unknown name). */
int shape_check_type(const shape_schema *s, const char *type_name, const msgpack_object *obj,
                     char err[512]);

/* Same, against the envelope: side is "request" or "reply".  Only the envelope's own keys
 * are checked; the body inside is a free-form map here (check it with the calls above). */
int shape_check_envelope(const shape_schema *s, const char *side, const msgpack_object *obj,
                         char err[512]);

/* The methods in schema order.  shape_method_at() writes the name and the scope (NULL for
 * none); both strings live as long as s.  Returns IDL_NOT_FOUND when i is out of range. */
size_t shape_method_count(const shape_schema *s);
int shape_method_at(const shape_schema *s, size_t i, const char **name, const char **scope);

/* The status codes listed in the schema, in order; the name lives as long as s. */
size_t shape_code_count(const shape_schema *s);
int shape_code_at(const shape_schema *s, size_t i, int *code, const char **name);

#endif
