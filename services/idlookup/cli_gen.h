/* `idlookup gen`: synthetic (fake) person records for loading, tests and
 * benchmarks.  Records follow DATA.md §1 and are drawn from the frequency
 * lists of data/gen/ (compiled in by gen_lists.py), so names, places and
 * identifiers look real while every person is made up.
 *
 * Output is a pure function of (count, seed): no clock, no locale, no
 * floating point.  Ages are measured at the fixed date IDL_GEN_AS_OF_* below,
 * so a record that is a child there stays one until its 13th birthday.
 */
#ifndef IDL_CLI_GEN_H
#define IDL_CLI_GEN_H

#include <stdint.h>
#include <stdio.h>

/* The date at which generated ages hold (a dob at age A is A years old on it). */
#define IDL_GEN_AS_OF_YEAR 2026
#define IDL_GEN_AS_OF_MONTH 1
#define IDL_GEN_AS_OF_DAY 1

/* Writes count records to out as NDJSON, one object per line, source ids
 * "gen-00000001" upwards.  The same (count, seed) gives the same bytes, and the
 * output for a count is a prefix of the output for any larger count with the
 * same seed.  Writes through fwrite in large blocks and allocates one buffer per
 * call (none per record); does not close or flush out.  Returns IDL_OK, or
 * IDL_INTERNAL when a write failed (errno says why; the output is then
 * incomplete) or the buffer could not be allocated.  Thread-safe as long as each
 * thread writes to its own FILE. */
int idl_gen_write(FILE *out, uint64_t count, uint64_t seed);

/* The subcommand: argv[0] is "gen", then --count N [--seed S] [--help].
 * Returns the exit status: 0 done, 1 output failed, 2 bad usage (with one
 * line on stderr naming the cause). */
int idl_cli_gen(int argc, char **argv);

#endif
