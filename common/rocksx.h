/* The two RocksDB calls the C API of Debian's RocksDB (7.8) lacks, through
 * its C++ API: resuming writes after a background error (DB::Resume), and an
 * info log written to stderr instead of a LOG file.  Used by store.c only. */
#ifndef IDL_ROCKSX_H
#define IDL_ROCKSX_H

#include "status.h"

#include <rocksdb/c.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Asks RocksDB to leave the read-only state a failed write (a full disk)
 * put it in.  Returns 0, or IDL_UNAVAILABLE with RocksDB's reason in err
 * when it cannot yet. */
int idl_rocksx_resume(rocksdb_t *db, char err[IDL_ERR_MAX]);

/* Sends RocksDB's info log (at the options' level) to stderr, one line per
 * message prefixed "rocksdb: ", so no log file is written in the data
 * directory: a full disk can then neither lose nor abort on it. */
void idl_rocksx_log_to_stderr(rocksdb_options_t *o);

#ifdef __cplusplus
}
#endif

#endif
