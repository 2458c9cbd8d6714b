/* Lookup/Batch, the one handler that runs other handlers (see batch.c). */
#ifndef IDLD_BATCH_H
#define IDLD_BATCH_H

#include "call.h"

int idld_batch(idld_call *c);

#endif
