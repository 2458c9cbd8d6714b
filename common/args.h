/* Command-line flags, one table per program: the same rows drive the parser
 * and the --help text, so the two cannot drift apart.
 *
 * A program lists its flags (long name, optional short letter, the value's
 * placeholder or none, the help text, its own id), walks its argv with
 * idl_args_next and switches on each flag's id; values are checked by the
 * program, which words its own message naming the flag.  Errors are one line
 * naming the flag; a program prints them with idl_args_fail and exits 2.
 * Adding a flag is adding a row and a case.
 */
#ifndef IDL_ARGS_H
#define IDL_ARGS_H

#include "status.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The exit status of every program for bad usage. */
#define IDL_ARGS_EXIT_USAGE 2

/* One flag.  "--name VALUE", "--name=VALUE" and, with a short letter, "-c
 * VALUE" and "-cVALUE" all work; a switch (arg NULL) takes no value. */
typedef struct {
    const char *name; /* the long name, without "--" */
    char short_name;  /* 0: none */
    const char *arg;  /* the value's placeholder in --help ("N", "FILE"); NULL: a switch */
    const char *help; /* its --help text; each '\n' starts a line at the text column */
    int id;           /* the program's own number for it */
} idl_args_flag;

/* A program's (or subcommand's) flags and the --help text around them.  The
 * strings are static; the spec outlives every idl_args walking with it. */
typedef struct {
    const char *prog; /* "idlookup ingest": the prefix of its error lines */
    const char *head; /* --help text before the flags (NULL: none) */
    const char *tail; /* --help text after the flags (NULL: none) */
    const idl_args_flag *flags;
    size_t nflags;
    int indent; /* spaces before each flag in --help */
    int column; /* where each flag's help text starts; a longer flag gets its own line */
    /* How many operands (arguments that are no flag) it takes: 0 for none,
     * IDL_ARGS_ANY for no limit.  One more is a usage error. */
    int max_operands;
    /* The first operand ends the flags (idlookup call METHOD [JSON|-]), as
     * "--" always does. */
    bool operands_end_flags;
} idl_args_spec;

#define IDL_ARGS_ANY INT_MAX

/* The walk over one argv.  status and err are set when idl_args_next stops
 * on a usage error; the other fields are private to args.c. */
typedef struct {
    int status;            /* 0, or IDL_INVALID_ARGUMENT */
    char err[IDL_ERR_MAX]; /* with status: one line naming the flag */
    const idl_args_spec *spec;
    int argc;
    char **argv;
    int next;
    int noperands;
    bool flags_done;
} idl_args;

/* Starts a walk over argv[1..argc-1] (argv[0] is the program or subcommand
 * name).  argv must outlive the walk: values point into it. */
void idl_args_start(idl_args *a, const idl_args_spec *spec, int argc, char **argv);

/* Takes the next argument: true with a flag (*flag its row, *value its
 * value, or NULL for a switch) or an operand (*flag NULL, *value the
 * argument); false at the end, or on a usage error, which sets a->status and
 * a->err naming the flag (an unknown flag, a switch given a value, a flag
 * without its value, an operand too many).  So a program reads:
 *
 *     while (idl_args_next(&a, &fl, &v)) switch (fl->id) ...
 *     if (a.status) return idl_args_fail(&spec, stderr, a.err);
 *
 * A value that starts with "--" is taken for a forgotten value ("--file
 * --customer x"); such a value is given as --file=--customer.  Flags given
 * twice are handed on twice: whether that is an error is the program's
 * call.  Long names match whole, never by prefix. */
bool idl_args_next(idl_args *a, const idl_args_flag **flag, const char **value);

/* Writes the --help text: head, one row per flag, tail. */
void idl_args_usage(const idl_args_spec *spec, FILE *f);

/* Writes "PROG: MSG" as one line to f (stderr for a program) and returns
 * IDL_ARGS_EXIT_USAGE, for `return idl_args_fail(&spec, stderr, err);`. */
int idl_args_fail(const idl_args_spec *spec, FILE *f, const char *msg);

/* Parses s as a whole decimal number in [lo, hi] into *out.  Only the digits
 * 0-9 are taken: "", "+5", " 5", "5 ", "5.0", "-1" and values past UINT64_MAX
 * are typos, not numbers.  Returns IDL_OK, or IDL_INVALID_ARGUMENT with *out
 * untouched. */
int idl_args_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);

#endif
