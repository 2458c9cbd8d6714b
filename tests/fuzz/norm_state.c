/* Fuzz target: idl_norm_state (a C string: the input up to its first NUL).
 * Properties: no crash; a success is two upper-case letters that normalize to
 * themselves (idempotence); a failure gives a reason. */
#include "fuzz.h"
#include "norm.h"
#include "status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    if (!in) return 0;
    memcpy(in, data, size);
    in[size] = '\0';
    char out[3], again[3];
    const char *why = NULL;
    if (idl_norm_state(in, out, &why) != IDL_OK) {
        FUZZ_CHECK(why && why[0]);
        free(in);
        return 0;
    }
    FUZZ_CHECK(out[0] >= 'A' && out[0] <= 'Z' && out[1] >= 'A' && out[1] <= 'Z' && !out[2]);
    why = NULL;
    int rc = idl_norm_state(out, again, &why);
    if (rc != IDL_OK || strcmp(again, out) != 0) {
        fuzz_show("input", in, strlen(in));
        fuzz_show("first", out, 2);
        FUZZ_FAIL("state not idempotent (%s)", rc ? why : "output changed");
    }
    free(in);
    return 0;
}
