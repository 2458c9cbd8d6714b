/* The single lookup methods: Search, Validate and Verify (see lookup.c). */
#ifndef IDLD_LOOKUP_H
#define IDLD_LOOKUP_H

#include "call.h"

int idld_search(idld_call *c);
int idld_validate(idld_call *c);
int idld_verify(idld_call *c);

#endif
