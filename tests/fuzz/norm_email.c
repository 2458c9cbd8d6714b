/* Fuzz target: idl_norm_email.  Properties: no crash; a success writes a
 * NUL-terminated, valid UTF-8 address, and normalizing it again succeeds with
 * the same result (idempotence: index keys hash the normalized form, so a
 * stored form must look itself up); a failure gives a reason. */
#include "fuzz.h"
#include "norm.h"
#include "status.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[IDL_NORM_EMAIL_MAX], again[IDL_NORM_EMAIL_MAX];
    const char *why = NULL;
    if (idl_norm_email((const char *)data, size, out, &why) != IDL_OK) {
        FUZZ_CHECK(why && why[0]);
        return 0;
    }
    size_t n = strnlen(out, sizeof out);
    FUZZ_CHECK(n < sizeof out);
    FUZZ_CHECK(idl_wire_utf8_valid(out, n));
    why = NULL;
    int rc = idl_norm_email(out, n, again, &why);
    if (rc != IDL_OK || strcmp(again, out) != 0) {
        fuzz_show("input", (const char *)data, size);
        fuzz_show("first", out, n);
        if (rc == IDL_OK) fuzz_show("second", again, strlen(again));
        FUZZ_FAIL("email not idempotent (%s)", rc ? why : "output changed");
    }
    return 0;
}
