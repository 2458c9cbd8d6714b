/* End-to-end test support: a real idlookupd on a free loopback port, in a
 * temp dir with its own key file, driven through the client library.
 *
 * Paths of the binaries come from the environment (IDL_DAEMON, IDL_CLI),
 * which meson sets for every e2e test.  Every helper aborts the test with a
 * message on failure of the harness itself (not of the service under test).
 */
#ifndef IDL_E2E_H
#define IDL_E2E_H

#include "client.h"
#include "json.h"

#include <stdbool.h>
#include <sys/types.h>

typedef struct {
    char dir[256];  /* temp dir: keys, data/, logs */
    char data[300]; /* the store */
    char keys[300]; /* the key file */
    char url[320];
    char log[300]; /* daemon stderr */
    pid_t pid;
    char lookup_key[128], privacy_key[128], admin_key[128], all_key[128], slow_key[128];
    idl_client *c; /* no key */
} e2e_env;

/* Creates the temp dir and keys (lookup, privacy, admin, all scopes at a high
 * rate, and a "slow" lookup key with rate 2). */
void e2e_init(e2e_env *e);
/* Starts the daemon (extra flags may be NULL-terminated) and waits for SERVING. */
void e2e_start(e2e_env *e, const char *const *extra);
/* SIGTERM and wait; returns the exit status. */
int e2e_stop(e2e_env *e);
/* SIGKILL and wait. */
void e2e_kill9(e2e_env *e);
/* Stops the daemon if running and removes the temp dir. */
void e2e_cleanup(e2e_env *e);

/* Calls METHOD with a JSON body using key (NULL = none).  Returns the reply
 * (caller frees) or NULL on transport failure. */
idl_reply *e2e_call(e2e_env *e, const char *key, const char *method, const char *json);
/* The same with timeout_ms in the envelope (-1: none); the client waits
 * 10 s, or 1 s longer than a deadline above 9 s. */
idl_reply *e2e_call_t(e2e_env *e, const char *key, const char *method, const char *json,
                      int timeout_ms);

/* e2e_call with a printf-built JSON body; transport failures are reported
 * on stderr and return NULL. */
idl_reply *e2e_callf(e2e_env *e, const char *key, const char *method, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Looks up a key in a msgpack map (NULL when absent or not a map). */
const msgpack_object *e2e_get(const msgpack_object *map, const char *key);
/* Follows a dotted path "persons.0.id" through maps and arrays. */
const msgpack_object *e2e_path(const msgpack_object *root, const char *path);
/* Renders an object as compact JSON into a static buffer (for messages). */
const char *e2e_json(const msgpack_object *o);
/* Equality of a str object with s. */
bool e2e_str_is(const msgpack_object *o, const char *s);
/* The value of a uint object or -1. */
long long e2e_uint(const msgpack_object *o);

/* Runs the CLI with args (NULL-terminated), capturing stdout/stderr into
 * malloc'd strings (may be NULL); returns the exit status. stdin_text may be
 * NULL. */
int e2e_cli(const char *const *args, const char *stdin_text, char **out, char **err);
/* The same for the program named by the environment variable exe_env
 * (IDL_CLI, IDL_DAEMON, ...). */
int e2e_exec(const char *exe_env, const char *const *args, const char *stdin_text, char **out,
             char **err);

/* Writes text to DIR/name and returns the path (static buffer). */
const char *e2e_write_file(e2e_env *e, const char *name, const char *text);

/* "p_" + hex(XXH3-64(source_id)) */
const char *e2e_pid(const char *source_id);

#endif
