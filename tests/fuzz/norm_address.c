/* Fuzz target: idl_norm_address.  Input: street, unit, city, state and zip
 * separated by newlines; parts not present are NULL (absent).  Properties: no
 * crash; a success gives valid UTF-8 parts, and feeding them back (NULL for
 * empty ones, as the struct says) gives the same address (idempotence); a
 * failure gives a reason. */
#include "fuzz.h"
#include "norm.h"
#include "status.h"
#include "wire.h"

static const char *or_null(const char *s)
{
    return s[0] ? s : NULL;
}

static void show(const char *label, const idl_address *a)
{
    fprintf(stderr, "  %s:\n", label);
    fuzz_show("street", a->street, strlen(a->street));
    fuzz_show("unit", a->unit, strlen(a->unit));
    fuzz_show("city", a->city, strlen(a->city));
    fuzz_show("state", a->state, strlen(a->state));
    fuzz_show("zip", a->zip, strlen(a->zip));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 5), *part[5];
    if (!buf) return 0;
    fuzz_split(data, size, buf, part, 5);
    idl_address a, b;
    const char *why = NULL;
    if (idl_norm_address(part[0], part[1], part[2], part[3], part[4], &a, &why) != IDL_OK) {
        FUZZ_CHECK(why && why[0]);
        free(buf);
        return 0;
    }
    FUZZ_CHECK(a.street[0] && strnlen(a.street, sizeof a.street) < sizeof a.street);
    FUZZ_CHECK(strnlen(a.unit, sizeof a.unit) < sizeof a.unit);
    FUZZ_CHECK(strnlen(a.city, sizeof a.city) < sizeof a.city);
    FUZZ_CHECK(strnlen(a.state, sizeof a.state) < sizeof a.state);
    FUZZ_CHECK(strnlen(a.zip, sizeof a.zip) < sizeof a.zip);
    FUZZ_CHECK(idl_wire_utf8_valid(a.street, strlen(a.street)));
    FUZZ_CHECK(idl_wire_utf8_valid(a.unit, strlen(a.unit)));
    FUZZ_CHECK(idl_wire_utf8_valid(a.city, strlen(a.city)));
    why = NULL;
    int rc = idl_norm_address(a.street, or_null(a.unit), or_null(a.city), or_null(a.state),
                              or_null(a.zip), &b, &why);
    if (rc != IDL_OK || strcmp(a.street, b.street) != 0 || strcmp(a.unit, b.unit) != 0 ||
        strcmp(a.city, b.city) != 0 || strcmp(a.state, b.state) != 0 || strcmp(a.zip, b.zip) != 0) {
        fuzz_show("input", (const char *)data, size);
        show("first", &a);
        if (rc == IDL_OK) show("second", &b);
        FUZZ_FAIL("address not idempotent (%s)", rc ? why : "output changed");
    }
    free(buf);
    return 0;
}
