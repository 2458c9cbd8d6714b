/* Names of the status codes, generated from the one list in status.h. */
#include "status.h"

#include <string.h>

static const char *const names[IDL_STATUS_COUNT] = {
#define IDL_STATUS_NAME(name, num) [num] = #name,
    IDL_STATUS_LIST(IDL_STATUS_NAME)
#undef IDL_STATUS_NAME
};

const char *idl_status_name(int code)
{
    if (code < 0 || code >= IDL_STATUS_COUNT || !names[code]) return "UNKNOWN";
    return names[code];
}

int idl_status_parse(const char *name, int *code)
{
    for (int i = 0; i < IDL_STATUS_COUNT; i++) {
        if (names[i] && strcmp(names[i], name) == 0) {
            *code = i;
            return IDL_OK;
        }
    }
    return IDL_INVALID_ARGUMENT;
}
