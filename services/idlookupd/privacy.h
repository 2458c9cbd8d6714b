/* The privacy methods: OptOut and Disclosures (see privacy.c). */
#ifndef IDLD_PRIVACY_H
#define IDLD_PRIVACY_H

#include "call.h"

int idld_optout(idld_call *c);
int idld_disclosures(idld_call *c);

#endif
