/* Fuzz target: idl_norm_city (a C string: the input up to its first NUL).
 * Properties: no crash; a success is valid UTF-8 that normalizes to itself
 * (idempotence); a failure gives a reason. */
#include "fuzz.h"
#include "norm.h"
#include "status.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    if (!in) return 0;
    memcpy(in, data, size);
    in[size] = '\0';
    char out[IDL_NORM_CITY_MAX], again[IDL_NORM_CITY_MAX];
    const char *why = NULL;
    if (idl_norm_city(in, out, &why) != IDL_OK) {
        FUZZ_CHECK(why && why[0]);
        free(in);
        return 0;
    }
    size_t n = strnlen(out, sizeof out);
    FUZZ_CHECK(n > 0 && n < sizeof out);
    FUZZ_CHECK(idl_wire_utf8_valid(out, n));
    why = NULL;
    int rc = idl_norm_city(out, again, &why);
    if (rc != IDL_OK || strcmp(again, out) != 0) {
        fuzz_show("input", in, strlen(in));
        fuzz_show("first", out, n);
        if (rc == IDL_OK) fuzz_show("second", again, strlen(again));
        FUZZ_FAIL("city not idempotent (%s)", rc ? why : "output changed");
    }
    free(in);
    return 0;
}
