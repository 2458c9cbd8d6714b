/* Look-ups in the method table (see methods.h). */
#include "methods.h"

#include <string.h>

static const char *const names[IDL_METHOD_COUNT] = {
#define NAME(id, name, scope, handler, token, reads, batch, logged) [IDL_METHOD_##id] = name,
    IDL_METHOD_LIST(NAME)
#undef NAME
};

static const bool logged_col[IDL_METHOD_COUNT] = {
#define LOGGED(id, name, scope, handler, token, reads, batch, logged) [IDL_METHOD_##id] = logged,
    IDL_METHOD_LIST(LOGGED)
#undef LOGGED
};

const char *idl_method_name(int id)
{
    return id >= 0 && id < IDL_METHOD_COUNT ? names[id] : NULL;
}

int idl_method_find(const char *name, size_t len)
{
    for (int i = 0; i < IDL_METHOD_COUNT; i++)
        if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0) return i;
    return -1;
}

bool idl_method_logged(const char *name, size_t len)
{
    int id = idl_method_find(name, len);
    return id >= 0 && logged_col[id];
}
