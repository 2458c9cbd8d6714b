/* Fuzz target: idl_norm_phone.  Properties: no crash; a success is E.164
 * ('+' and digits) and normalizing it again gives the same number, plan type
 * and country (idempotence); a failure gives a reason. */
#include "fuzz.h"
#include "norm.h"
#include "status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[IDL_NORM_PHONE_MAX], again[IDL_NORM_PHONE_MAX], cc[3] = "", cc2[3] = "";
    idl_line_type t = IDL_LINE_UNKNOWN, t2 = IDL_LINE_UNKNOWN;
    const char *why = NULL;
    if (idl_norm_phone((const char *)data, size, out, &t, cc, &why) != IDL_OK) {
        FUZZ_CHECK(why && why[0]);
        return 0;
    }
    size_t n = strnlen(out, sizeof out);
    FUZZ_CHECK(n < sizeof out && n >= 2 && out[0] == '+');
    for (size_t i = 1; i < n; i++)
        FUZZ_CHECK(out[i] >= '0' && out[i] <= '9');
    why = NULL;
    int rc = idl_norm_phone(out, n, again, &t2, cc2, &why);
    if (rc != IDL_OK || strcmp(again, out) != 0 || t2 != t || strcmp(cc, cc2) != 0) {
        fuzz_show("input", (const char *)data, size);
        fuzz_show("first", out, n);
        if (rc == IDL_OK) fuzz_show("second", again, strlen(again));
        FUZZ_FAIL("phone not idempotent (%s; types %d/%d, countries %s/%s)",
                  rc ? why : "output changed", (int)t, (int)t2, cc, cc2);
    }
    return 0;
}
