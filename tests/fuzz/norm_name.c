/* Fuzz target: idl_norm_name.  Properties: no crash; a success is non-empty
 * valid UTF-8 and normalizing it again gives the same (idempotence: names
 * are index keys); a failure gives a reason. */
#include "fuzz.h"
#include "norm.h"
#include "status.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[IDL_NORM_NAME_MAX], again[IDL_NORM_NAME_MAX];
    const char *why = NULL;
    if (idl_norm_name((const char *)data, size, out, &why) != IDL_OK) {
        FUZZ_CHECK(why && why[0]);
        return 0;
    }
    size_t n = strnlen(out, sizeof out);
    FUZZ_CHECK(n > 0 && n < sizeof out);
    FUZZ_CHECK(idl_wire_utf8_valid(out, n));
    why = NULL;
    int rc = idl_norm_name(out, n, again, &why);
    if (rc != IDL_OK || strcmp(again, out) != 0) {
        fuzz_show("input", (const char *)data, size);
        fuzz_show("first", out, n);
        if (rc == IDL_OK) fuzz_show("second", again, strlen(again));
        FUZZ_FAIL("name not idempotent (%s)", rc ? why : "output changed");
    }
    return 0;
}
