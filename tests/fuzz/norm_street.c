/* Fuzz target: idl_norm_street.  Input: "street" or "street\nunit" (no
 * newline: no unit).  Properties: no crash; a success gives a non-empty
 * valid UTF-8 street and unit, and feeding that street and unit (NULL when
 * empty) back gives the same pair (idempotence: the stored form must match
 * itself in Search); a failure gives a reason. */
#include "fuzz.h"
#include "norm.h"
#include "status.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 2), *part[2];
    if (!buf) return 0;
    fuzz_split(data, size, buf, part, 2);
    char street[IDL_NORM_STREET_MAX], unit[IDL_NORM_UNIT_MAX];
    char street2[IDL_NORM_STREET_MAX], unit2[IDL_NORM_UNIT_MAX];
    const char *why = NULL;
    if (idl_norm_street(part[0], part[1], street, unit, &why) != IDL_OK) {
        FUZZ_CHECK(why && why[0]);
        free(buf);
        return 0;
    }
    FUZZ_CHECK(strnlen(street, sizeof street) < sizeof street && street[0]);
    FUZZ_CHECK(strnlen(unit, sizeof unit) < sizeof unit);
    FUZZ_CHECK(idl_wire_utf8_valid(street, strlen(street)));
    FUZZ_CHECK(idl_wire_utf8_valid(unit, strlen(unit)));
    why = NULL;
    int rc = idl_norm_street(street, unit[0] ? unit : NULL, street2, unit2, &why);
    if (rc != IDL_OK || strcmp(street2, street) != 0 || strcmp(unit2, unit) != 0) {
        fuzz_show("street in", part[0], strlen(part[0]));
        if (part[1]) fuzz_show("unit in", part[1], strlen(part[1]));
        fuzz_show("street first", street, strlen(street));
        fuzz_show("unit first", unit, strlen(unit));
        if (rc == IDL_OK) {
            fuzz_show("street second", street2, strlen(street2));
            fuzz_show("unit second", unit2, strlen(unit2));
        }
        FUZZ_FAIL("street+unit not idempotent (%s)", rc ? why : "output changed");
    }
    free(buf);
    return 0;
}
