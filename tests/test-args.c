/* The flag table every program parses with: long and short flags, both
 * value spellings, operands, "--", the one-line errors naming the flag, and
 * the --help text generated from the same table; and the whole-number
 * parser. */
#include "args.h"
#include "status.h"
#include "testutil.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void takes_digits_in_range(void)
{
    uint64_t v = 7;
    CHECK_INT(idl_args_uint("0", 0, 10, &v), IDL_OK);
    CHECK(v == 0);
    CHECK_INT(idl_args_uint("10", 0, 10, &v), IDL_OK);
    CHECK(v == 10);
    CHECK_INT(idl_args_uint("007", 1, 10, &v), IDL_OK);
    CHECK(v == 7);
    CHECK_INT(idl_args_uint("18446744073709551615", 0, UINT64_MAX, &v), IDL_OK);
    CHECK(v == UINT64_MAX);
}

static void refuses_the_rest(void)
{
    static const char *const bad[] = {"",
                                      "+5",
                                      " 5",
                                      "5 ",
                                      "5.0",
                                      "-1",
                                      "0x10",
                                      "1e3",
                                      "five",
                                      "18446744073709551616",
                                      "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint64_t v = 42;
        CHECK_INT(idl_args_uint(bad[i], 0, UINT64_MAX, &v), IDL_INVALID_ARGUMENT);
        CHECK(v == 42); /* untouched */
    }
    uint64_t v = 42;
    CHECK_INT(idl_args_uint(NULL, 0, 10, &v), IDL_INVALID_ARGUMENT);
    /* Out of range, on either side. */
    CHECK_INT(idl_args_uint("11", 0, 10, &v), IDL_INVALID_ARGUMENT);
    CHECK_INT(idl_args_uint("0", 1, 10, &v), IDL_INVALID_ARGUMENT);
    CHECK(v == 42);
}

enum { F_URL, F_CONC, F_PROGRESS, F_HELP };

static const idl_args_flag flags[] = {
    {"url", 0, "URL", "service address\nsecond line", F_URL},
    {"concurrency", 'c', "N", "requests in flight", F_CONC},
    {"progress", 0, NULL, "live progress", F_PROGRESS},
    {"help", 'h', NULL, "this text", F_HELP},
};

static const idl_args_spec spec = {
    .prog = "prog",
    .head = "usage: prog [flags] FILE...\n",
    .tail = "Exit status: 0, 2 bad usage.\n",
    .flags = flags,
    .nflags = sizeof flags / sizeof *flags,
    .indent = 2,
    .column = 24,
    .max_operands = IDL_ARGS_ANY,
};

/* Parses argv (NULL-terminated, argv[0] the program) to the end; writes
 * what it saw into out as "id=value" / "@operand" words, or the error. */
static int parse(const idl_args_spec *sp, const char **args, char *out, size_t outsz)
{
    char *argv[16] = {"prog"};
    int argc = 1;
    for (; args[argc - 1]; argc++)
        argv[argc] = (char *)args[argc - 1];
    idl_args a;
    const idl_args_flag *fl;
    const char *v;
    idl_args_start(&a, sp, argc, argv);
    out[0] = 0;
    while (idl_args_next(&a, &fl, &v)) {
        size_t n = strlen(out);
        if (fl)
            snprintf(out + n, outsz - n, "%s%d=%s", n ? " " : "", fl->id, v ? v : "-");
        else
            snprintf(out + n, outsz - n, "%s@%s", n ? " " : "", v);
    }
    if (a.status) {
        snprintf(out, outsz, "%s", a.err);
        /* The walk is over after an error. */
        CHECK(!idl_args_next(&a, &fl, &v) && !fl && !v);
    }
    return a.status;
}

#define PARSES(want, ...)                                                                          \
    do {                                                                                           \
        const char *args_[] = {__VA_ARGS__, NULL};                                                 \
        char got_[256];                                                                            \
        CHECK_INT(parse(&spec, args_, got_, sizeof got_), IDL_OK);                                 \
        CHECK_STR(got_, want);                                                                     \
    } while (0)

#define REFUSES(names, ...)                                                                        \
    do {                                                                                           \
        const char *args_[] = {__VA_ARGS__, NULL};                                                 \
        char got_[256];                                                                            \
        CHECK_INT(parse(&spec, args_, got_, sizeof got_), IDL_INVALID_ARGUMENT);                   \
        EXPECT(strstr(got_, names) && !strchr(got_, '\n'), "error \"%s\" does not name %s", got_,  \
               names);                                                                             \
    } while (0)

static void table_parses_both_spellings(void)
{
    PARSES("0=tcp://x", "--url", "tcp://x");
    PARSES("0=tcp://x", "--url=tcp://x");
    PARSES("0=", "--url=");
    PARSES("1=8", "-c", "8");
    PARSES("1=8", "-c8");
    PARSES("1=8", "--concurrency", "8");
    PARSES("2=-", "--progress");
    PARSES("3=-", "-h");
    /* A value may look like a negative number; it is the value. */
    PARSES("1=-5", "-c", "-5");
    /* Repeats are the program's to judge: both are handed on, in order. */
    PARSES("1=1 1=2", "-c", "1", "--concurrency", "2");
}

static void table_hands_on_operands(void)
{
    PARSES("@a 2=- @b", "a", "--progress", "b");
    PARSES("@-", "-");
    /* After "--" everything is an operand. */
    PARSES("2=- @--url @-c", "--progress", "--", "--url", "-c");
    PARSES("", "--");
    /* A program may end its flags at its first operand (idlookup call). */
    idl_args_spec first = spec;
    first.operands_end_flags = true;
    const char *args[] = {"--progress", "METHOD", "--url", "x", NULL};
    char got[256];
    CHECK_INT(parse(&first, args, got, sizeof got), IDL_OK);
    CHECK_STR(got, "2=- @METHOD @--url @x");
    /* One operand more than the program takes is a usage error. */
    idl_args_spec two = spec;
    two.max_operands = 2;
    const char *three[] = {"a", "b", "c", NULL};
    CHECK_INT(parse(&two, three, got, sizeof got), IDL_INVALID_ARGUMENT);
    CHECK_STR(got, "unexpected argument 'c' (see --help)");
    idl_args_spec none = spec;
    none.max_operands = 0;
    const char *stray[] = {"--progress", "stray", NULL};
    CHECK_INT(parse(&none, stray, got, sizeof got), IDL_INVALID_ARGUMENT);
    CHECK_STR(got, "unexpected argument 'stray' (see --help)");
}

static void table_errors_name_the_flag(void)
{
    REFUSES("--bogus", "--bogus");
    REFUSES("--bogus", "--bogus=1");
    REFUSES("-q", "-q");
    REFUSES("--url", "--url");
    REFUSES("--concurrency", "-c");
    REFUSES("--progress", "--progress=yes");
    REFUSES("--help", "--progress", "--help=1");
    REFUSES("--help", "-hx");
    /* No prefix matching: --con is not --concurrency. */
    REFUSES("--con", "--con", "1");
    /* "--url --progress" is a forgotten value far more often than a URL
     * that starts with "--"; such a value is spelled --url=--progress. */
    REFUSES("--url", "--url", "--progress");
    PARSES("0=--progress", "--url=--progress");
}

static void usage_from_the_table(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    idl_args_usage(&spec, f);
    fclose(f);
    CHECK_STR(buf, "usage: prog [flags] FILE...\n"
                   "      --url URL         service address\n"
                   "                        second line\n"
                   "  -c, --concurrency N   requests in flight\n"
                   "      --progress        live progress\n"
                   "  -h, --help            this text\n"
                   "Exit status: 0, 2 bad usage.\n");
    free(buf);
    /* A flag too long for its column gets its text on the next line. */
    static const idl_args_flag longf[] = {
        {"a-very-long-flag-name", 0, "VALUE", "text", 0},
        {"b", 0, "N", "one\ntwo", 1},
    };
    idl_args_spec ls = {.flags = longf, .nflags = 2, .indent = 2, .column = 12};
    buf = NULL;
    f = open_memstream(&buf, &len);
    idl_args_usage(&ls, f);
    fclose(f);
    CHECK_STR(buf, "  --a-very-long-flag-name VALUE\n"
                   "            text\n"
                   "  --b N     one\n"
                   "            two\n");
    free(buf);
}

static void usage_error_is_one_line(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK_INT(idl_args_fail(&spec, f, "--url: missing value URL"), IDL_ARGS_EXIT_USAGE);
    fclose(f);
    CHECK_STR(buf, "prog: --url: missing value URL\n");
    free(buf);
}

int main(void)
{
    RUN(takes_digits_in_range);
    RUN(refuses_the_rest);
    RUN(table_parses_both_spellings);
    RUN(table_hands_on_operands);
    RUN(table_errors_name_the_flag);
    RUN(usage_from_the_table);
    RUN(usage_error_is_one_line);
    return test_summary();
}
