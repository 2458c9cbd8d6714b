/* `idlookup keys`: the operator's editor of the key file (API.md 6).
 *
 * add, list and revoke go through common/auth.h, so the tool refuses any file
 * the daemon would refuse.  Only `keys add` writes to stdout anything but
 * usage and listings: the new secret, alone on one line, once.
 */
#ifndef IDL_CLI_KEYS_H
#define IDL_CLI_KEYS_H

/* Runs `idlookup keys ...`; argv[0] is "keys".  Returns the process exit
 * status: 0 success, 1 failure (missing file, unknown key id, I/O error, a
 * malformed key file), 2 bad usage.  Errors go to stderr as one line. */
int idl_cli_keys(int argc, char **argv);

#endif
