/* The status table: names and numbers come from one list and agree both ways. */
#include "status.h"
#include "testutil.h"

#include <string.h>

static void names_match_grpc(void)
{
    CHECK_STR(idl_status_name(IDL_OK), "OK");
    CHECK_STR(idl_status_name(3), "INVALID_ARGUMENT");
    CHECK_STR(idl_status_name(16), "UNAUTHENTICATED");
    CHECK_STR(idl_status_name(99), "UNKNOWN");
    CHECK_STR(idl_status_name(-1), "UNKNOWN");
    CHECK(IDL_RESOURCE_EXHAUSTED == 8 && IDL_UNIMPLEMENTED == 12 && IDL_UNAVAILABLE == 14);
}

static void parse_round_trips(void)
{
    for (int i = 0; i < IDL_STATUS_COUNT; i++) {
        int code = -1;
        CHECK(idl_status_parse(idl_status_name(i), &code) == IDL_OK);
        CHECK(code == i);
    }
    int code = 42;
    CHECK(idl_status_parse("NOPE", &code) == IDL_INVALID_ARGUMENT);
    CHECK(code == 42);
}

int main(void)
{
    RUN(names_match_grpc);
    RUN(parse_round_trips);
    return test_summary();
}
