/* JSON at the edges: the CLI takes request bodies as JSON and prints replies
 * as JSON, and ingest reads NDJSON.  Parsing is jansson's (a well-kept parser
 * with depth limits); printing msgpack as JSON is ours, because jansson cannot
 * hold a uint64 above INT64_MAX and ids may use the whole range.
 */
#ifndef IDL_JSON_H
#define IDL_JSON_H

#include "wire.h"

#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdio.h>

/* Parses JSON text and appends it as msgpack to out.  Returns 0, or
 * IDL_INVALID_ARGUMENT with err naming line and column. */
int idl_json_to_msgpack(const char *text, size_t len, idl_buf *out, char err[IDL_ERR_MAX]);

/* Packs a parsed jansson value as msgpack (integers >= 0 as unsigned). */
void idl_json_pack(msgpack_packer *pk, const json_t *v);

/* Writes o as JSON text (indented by 2 when pretty). */
void idl_json_print(FILE *f, const msgpack_object *o, bool pretty);

/* Writes s (len bytes) as a JSON string literal with escapes. */
void idl_json_print_str(FILE *f, const char *s, size_t len);

#endif
