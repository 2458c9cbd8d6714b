/* Fuzz target: idl_norm_ip.  Properties: no crash; a success is the
 * canonical text form, which normalizes to itself (idempotence) and which
 * inet_pton reads as the same address; a failure gives a reason. */
#include "fuzz.h"
#include "norm.h"
#include "status.h"

#include <arpa/inet.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[IDL_NORM_IP_MAX], again[IDL_NORM_IP_MAX];
    const char *why = NULL;
    if (idl_norm_ip((const char *)data, size, out, &why) != IDL_OK) {
        FUZZ_CHECK(why && why[0]);
        return 0;
    }
    size_t n = strnlen(out, sizeof out);
    FUZZ_CHECK(n > 0 && n < sizeof out);
    unsigned char bin[16];
    FUZZ_CHECK(inet_pton(strchr(out, ':') ? AF_INET6 : AF_INET, out, bin) == 1);
    why = NULL;
    int rc = idl_norm_ip(out, n, again, &why);
    if (rc != IDL_OK || strcmp(again, out) != 0) {
        fuzz_show("input", (const char *)data, size);
        fuzz_show("first", out, n);
        if (rc == IDL_OK) fuzz_show("second", again, strlen(again));
        FUZZ_FAIL("ip not idempotent (%s)", rc ? why : "output changed");
    }
    return 0;
}
