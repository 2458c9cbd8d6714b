/* The admin methods Upsert and Stats, and the key-less Health and Describe
 * (see admin.c). */
#ifndef IDLD_ADMIN_H
#define IDLD_ADMIN_H

#include "call.h"

int idld_upsert(idld_call *c);
int idld_stats(idld_call *c);
int idld_health(idld_call *c);
int idld_describe(idld_call *c);

#endif
