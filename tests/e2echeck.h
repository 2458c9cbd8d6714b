/* Checks shared by the e2e tests: reply is OK and holds the schema's shape,
 * reply is a given error naming a field.  Header-only because the check
 * counters of testutil.h belong to each test executable. */
#ifndef IDL_E2ECHECK_H
#define IDL_E2ECHECK_H

#include "e2e.h"
#include "shape.h"
#include "testutil.h"

#include <string.h>

static inline const char *msg_of(const idl_reply *r)
{
    return !r ? "(no reply)" : r->message ? r->message : "(no message)";
}

/* OK and the body has the schema's shape. */
static inline bool check_ok_shape(const shape_schema *s, const idl_reply *r, const char *method,
                                  const char *what)
{
    CHECKM(r && r->code == 0, "%s: %s: code %d: %s", method, what, r ? r->code : -1, msg_of(r));
    if (!r || r->code != 0) return false;
    char err[512] = "";
    int rc = shape_check_response(s, method, &r->body, err);
    CHECKM(rc == 0, "%s: %s: reply body off the schema: %s: %s", method, what, err,
           e2e_json(&r->body));
    return true;
}

/* A non-zero code with a message naming field (when given) and no body. */
static inline void expect_err(const idl_reply *r, int code, const char *field, const char *what)
{
    CHECKM(r && r->code == code, "%s: want code %d, got %d (%s)", what, code, r ? r->code : -1,
           msg_of(r));
    if (!r) return;
    CHECKM(r->message && r->message[0], "%s: no message", what);
    if (field)
        CHECKM(r->message && strstr(r->message, field), "%s: message '%s' does not name '%s'", what,
               msg_of(r), field);
    CHECKM(r->body.type == MSGPACK_OBJECT_NIL, "%s: a body on error: %s", what, e2e_json(&r->body));
}

#endif
