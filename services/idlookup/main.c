/* idlookup: the operator's and developer's command line (API.md §6). */
#include "cli.h"
#include "cli_keys.h"
#include "cli_gen.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: idlookup COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  keys add|list|revoke   manage API keys in a key file\n"
    "  call                   send one request, JSON in, the reply envelope as JSON out\n"
    "  describe               list the methods a running service implements\n"
    "  ingest                 bulk-load NDJSON records into a store\n"
    "  gen                    write synthetic (fake) records as NDJSON\n"
    "  analytics              the analytics batch job over the query log (and `analytics export`)\n"
    "  check                  check a stopped store's index, records and counters agree\n"
    "\n"
    "`idlookup COMMAND --help` describes each.  Exit status: 0 success, 1 failure, 2 bad usage.\n";

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "keys") == 0) return idl_cli_keys(argc - 1, argv + 1);
    if (strcmp(cmd, "call") == 0) return idl_cli_call(argc - 1, argv + 1);
    if (strcmp(cmd, "describe") == 0) return idl_cli_describe(argc - 1, argv + 1);
    if (strcmp(cmd, "ingest") == 0) return idl_cli_ingest(argc - 1, argv + 1);
    if (strcmp(cmd, "gen") == 0) return idl_cli_gen(argc - 1, argv + 1);
    if (strcmp(cmd, "analytics") == 0) return idl_cli_analytics(argc - 1, argv + 1);
    if (strcmp(cmd, "check") == 0) return idl_cli_check(argc - 1, argv + 1);
    fprintf(stderr, "idlookup: unknown command '%s' (see idlookup --help)\n", cmd);
    return 2;
}
