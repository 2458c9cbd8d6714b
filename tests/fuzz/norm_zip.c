/* Fuzz target: idl_norm_zip (a C string: the input up to its first NUL).
 * Properties: no crash; a success is five digits that normalize to
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
    char out[6], again[6];
    const char *why = NULL;
    if (idl_norm_zip(in, out, &why) != IDL_OK) {
        FUZZ_CHECK(why && why[0]);
        free(in);
        return 0;
    }
    for (int i = 0; i < 5; i++)
        FUZZ_CHECK(out[i] >= '0' && out[i] <= '9');
    FUZZ_CHECK(out[5] == '\0');
    why = NULL;
    int rc = idl_norm_zip(out, again, &why);
    if (rc != IDL_OK || strcmp(again, out) != 0) {
        fuzz_show("input", in, strlen(in));
        fuzz_show("first", out, 5);
        FUZZ_FAIL("zip not idempotent (%s)", rc ? why : "output changed");
    }
    free(in);
    return 0;
}
