/* Subcommands of the idlookup CLI.  Each takes the arguments after the
 * program name (argv[0] is the subcommand) and returns the exit status:
 * 0 success, 1 failure, 2 bad usage (API.md §6). */
#ifndef IDL_CLI_H
#define IDL_CLI_H

int idl_cli_call(int argc, char **argv);
int idl_cli_describe(int argc, char **argv);
int idl_cli_ingest(int argc, char **argv);
int idl_cli_analytics(int argc, char **argv);
int idl_cli_check(int argc, char **argv);

#endif
