/* idlookup check: the store's consistency scan (idl_store_check) from the
 * command line, for operators after a crash and for the fault tests. */
#include "args.h"
#include "cli.h"
#include "status.h"
#include "store.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { F_DATA, F_HELP };

static const idl_args_flag check_flags[] = {
    {"data", 0, "DIR", "the store to check (the daemon must be stopped)", F_DATA},
    {"help", 'h', NULL, "this text", F_HELP},
};

static const idl_args_spec check_spec = {
    .prog = "idlookup check",
    .head = "usage: idlookup check --data DIR\n"
            "\n"
            "Reads every person and every index entry of the store in DIR (the daemon must be\n"
            "stopped: the store is opened for writing) and checks that each index entry names\n"
            "a stored person holding that identifier, that each person's identifiers are\n"
            "indexed, and that the counters (Stats persons/suppressed) agree with the scan.\n"
            "Prints one JSON line of counts.  Exit status: 0 consistent, 1 inconsistent or\n"
            "unreadable (a line on stderr says which), 2 bad usage.\n\n",
    .flags = check_flags,
    .nflags = sizeof check_flags / sizeof check_flags[0],
    .indent = 2,
    .column = 18,
};

int idl_cli_check(int argc, char **argv)
{
    const char *data = NULL;
    idl_args args;
    const idl_args_flag *fl;
    const char *v;
    idl_args_start(&args, &check_spec, argc, argv);
    while (idl_args_next(&args, &fl, &v)) {
        if (fl->id == F_HELP) {
            idl_args_usage(&check_spec, stdout);
            return 0;
        }
        data = v; /* F_DATA */
    }
    if (args.status) return idl_args_fail(&check_spec, stderr, args.err);
    if (!data) {
        fprintf(stderr, "idlookup check: --data DIR is required (see --help)\n");
        return 2;
    }
    /* Opening creates a missing store: a check of nothing must fail. */
    char current[4096];
    snprintf(current, sizeof current, "%s/CURRENT", data);
    if (access(current, R_OK) != 0) {
        fprintf(stderr, "idlookup check: %s: not an idlookup store (no readable CURRENT file)\n",
                data);
        return 1;
    }
    idl_store *s = NULL;
    char err[IDL_ERR_MAX];
    if (idl_store_open(&s, data, NULL, err)) {
        fprintf(stderr, "idlookup check: %s\n", err);
        return 1;
    }
    idl_store_check_report r;
    int rc = idl_store_check(s, &r);
    idl_store_close(s);
    if (rc) {
        fprintf(stderr, "idlookup check: %s: the store cannot be read whole (%s)\n", data,
                idl_status_name(rc));
        return 1;
    }
    printf("{\"persons\": %llu, \"suppressed\": %llu, \"index_entries\": %llu, "
           "\"unreadable\": %llu, \"bad_id\": %llu, \"missing\": %llu, \"dangling\": %llu, "
           "\"foreign\": %llu, \"unsorted\": %llu, \"counted_persons\": %llu, "
           "\"counted_suppressed\": %llu}\n",
           (unsigned long long)r.persons, (unsigned long long)r.suppressed,
           (unsigned long long)r.entries, (unsigned long long)r.unreadable,
           (unsigned long long)r.bad_id, (unsigned long long)r.missing,
           (unsigned long long)r.dangling, (unsigned long long)r.foreign,
           (unsigned long long)r.unsorted, (unsigned long long)r.counts.persons,
           (unsigned long long)r.counts.suppressed);
    if (!idl_store_check_ok(&r)) {
        fprintf(stderr, "idlookup check: %s: inconsistent (see the counts)\n", data);
        return 1;
    }
    return 0;
}
