/* The whole-number flag parser every program uses. */
#include "args.h"
#include "status.h"
#include "testutil.h"

#include <stdint.h>

static void takes_digits_in_range(void)
{
    uint64_t v = 7;
    CHECK_INT(idl_args_uint("0", 0, 10, &v), IDL_OK);
    CHECK(v == 0);
    CHECK_INT(idl_args_uint("10", 0, 10, &v), IDL_OK);
    CHECK(v == 10);
    CHECK_INT(idl_args_uint("007", 1, 10, &v), IDL_OK);
    CHECK(v == 7);
    CHECK_INT(idl_args_uint("18446744073709551615", 0, UINT64_MAX, &v), IDL_OK);
    CHECK(v == UINT64_MAX);
}

static void refuses_the_rest(void)
{
    static const char *const bad[] = {"",
                                      "+5",
                                      " 5",
                                      "5 ",
                                      "5.0",
                                      "-1",
                                      "0x10",
                                      "1e3",
                                      "five",
                                      "18446744073709551616",
                                      "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint64_t v = 42;
        CHECK_INT(idl_args_uint(bad[i], 0, UINT64_MAX, &v), IDL_INVALID_ARGUMENT);
        CHECK(v == 42); /* untouched */
    }
    uint64_t v = 42;
    CHECK_INT(idl_args_uint(NULL, 0, 10, &v), IDL_INVALID_ARGUMENT);
    /* Out of range, on either side. */
    CHECK_INT(idl_args_uint("11", 0, 10, &v), IDL_INVALID_ARGUMENT);
    CHECK_INT(idl_args_uint("0", 1, 10, &v), IDL_INVALID_ARGUMENT);
    CHECK(v == 42);
}

int main(void)
{
    RUN(takes_digits_in_range);
    RUN(refuses_the_rest);
    return test_summary();
}
