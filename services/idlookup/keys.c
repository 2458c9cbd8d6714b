/* `idlookup keys add|list|revoke`: argument parsing and messages only; the
 * file itself is read and written by common/auth.c.  Everything the operator
 * typed is checked here first, so a library error can only be about the file
 * (exit 1) and never about usage (exit 2). */
#include "args.h"
#include "cli_keys.h"

#include "auth.h"
#include "status.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_USAGE 2
#define DEFAULT_RATE 100u

/* The flags, one id each; a subcommand's table lists those it takes. */
enum { F_FILE, F_CUSTOMER, F_SCOPES, F_RATE, F_COUNT };

#define ROW_FILE                                                                                   \
    {                                                                                              \
        "file", 0, "FILE", "the key file (created 0600 by add when missing)", F_FILE               \
    }

static const idl_args_flag add_flags[] = {
    ROW_FILE,
    {"customer", 0, "NAME",
     "the customer the key belongs to (1..127 bytes of\n"
     "UTF-8, no TAB, newline or other control character)",
     F_CUSTOMER},
    {"scopes", 0, "SCOPES", "comma-separated subset of lookup, privacy, admin", F_SCOPES},
    {"rate", 0, "N",
     "requests per second, 1..1000000, default 100; a token\n"
     "bucket whose burst is N",
     F_RATE},
};

static const idl_args_flag file_flags[] = {ROW_FILE};

/* The keys --help: add's rows, inside the text on every subcommand. */
static const idl_args_spec add_spec = {
    .prog = "idlookup keys add",
    .head = "Usage: idlookup keys add --file FILE --customer NAME --scopes SCOPES [--rate N]\n"
            "       idlookup keys list --file FILE\n"
            "       idlookup keys revoke --file FILE KEY_ID\n"
            "\n"
            "Edits the API key file that idlookupd loads with --keys (and reloads on SIGHUP).\n"
            "\n"
            "  add     Creates FILE (mode 0600) if it is missing and appends a new active key.\n"
            "          Prints the key's secret alone on one stdout line; it is shown this once\n"
            "          (the file keeps only its hash).  The key id goes to stderr.\n",
    .tail = "  list    One line per key, TAB-separated: id, customer, scopes, rate, state.\n"
            "  revoke  Marks KEY_ID revoked; a running idlookupd honours it after SIGHUP.\n"
            "\n"
            "Options also take the form --name=VALUE.  Exit status: 0 success, 1 failure\n"
            "(missing file, unknown key id, malformed key file, I/O error), 2 bad usage.\n",
    .flags = add_flags,
    .nflags = sizeof add_flags / sizeof add_flags[0],
    .indent = 10,
    .column = 27,
};

static const idl_args_spec list_spec = {
    .prog = "idlookup keys list",
    .flags = file_flags,
    .nflags = sizeof file_flags / sizeof file_flags[0],
};

static const idl_args_spec revoke_spec = {
    .prog = "idlookup keys revoke",
    .flags = file_flags,
    .nflags = sizeof file_flags / sizeof file_flags[0],
    .max_operands = 1, /* KEY_ID */
};

struct keys_args {
    const char *value[F_COUNT]; /* by flag id; NULL if absent */
    const char *positional[1];
    int npositional;
};

/* One line on stderr, "idlookup keys[ CMD]: ...".  Control characters from
 * arguments or paths become '?', so the message stays on one line. */
static void complain(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void complain(const char *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    fprintf(stderr, "idlookup keys%s%s: %s\n", cmd ? " " : "", cmd ? cmd : "", msg);
}

/* A library error: its message, or the status name if it gave none. */
static int complain_status(const char *cmd, int rc, const char err[IDL_ERR_MAX])
{
    complain(cmd, "%s", err[0] ? err : idl_status_name(rc));
    return EXIT_FAILURE;
}

static bool is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* argv[0] is the subcommand.  Returns 0, or EXIT_USAGE after complaining. */
static int parse_args(const char *cmd, int argc, char **argv, const idl_args_spec *spec,
                      struct keys_args *out)
{
    struct keys_args a = {0};
    idl_args args;
    const idl_args_flag *fl;
    const char *value;
    idl_args_start(&args, spec, argc, argv);
    while (idl_args_next(&args, &fl, &value)) {
        if (!fl) {
            a.positional[a.npositional++] = value; /* spec->max_operands <= 1 */
            continue;
        }
        if (a.value[fl->id]) {
            complain(cmd, "--%s: given twice", fl->name);
            return EXIT_USAGE;
        }
        if (*value == '\0' && fl->id != F_CUSTOMER) {
            complain(cmd, "--%s: empty value", fl->name);
            return EXIT_USAGE;
        }
        a.value[fl->id] = value;
    }
    if (args.status) {
        complain(cmd, "%s", args.err);
        return EXIT_USAGE;
    }
    *out = a;
    return 0;
}

/* Returns 0 and the mask, or EXIT_USAGE after naming the offending scope. */
static int parse_scopes_arg(const char *s, unsigned *out)
{
    unsigned mask = 0;
    const char *p = s;
    for (;;) {
        size_t n = strcspn(p, ",");
        char one[16];
        unsigned bit = 0;
        if (n == 0) {
            complain("add", "--scopes: empty scope in '%s' (expected lookup, privacy, admin)", s);
            return EXIT_USAGE;
        }
        bool known = n < sizeof one;
        if (known) {
            memcpy(one, p, n);
            one[n] = '\0';
            known = idl_auth_parse_scopes(one, &bit) == IDL_OK;
        }
        if (!known) {
            complain("add", "--scopes: unknown scope '%.*s' (expected lookup, privacy, admin)",
                     (int)n, p);
            return EXIT_USAGE;
        }
        if (mask & bit) {
            complain("add", "--scopes: scope '%s' given twice", one);
            return EXIT_USAGE;
        }
        mask |= bit;
        if (p[n] == '\0') break;
        p += n + 1;
    }
    *out = mask;
    return 0;
}

/* Decimal digits only: "+5", " 5" and "5.0" are typos, not rates. */
static int parse_rate_arg(const char *s, uint32_t *out)
{
    uint64_t v;
    if (idl_args_uint(s, IDL_AUTH_RATE_MIN, IDL_AUTH_RATE_MAX, &v) != IDL_OK) {
        complain("add", "--rate: expected an integer 1..1000000, got '%s'", s);
        return EXIT_USAGE;
    }
    *out = (uint32_t)v;
    return 0;
}

static int require(const char *cmd, const char *value, const char *what)
{
    if (value) return 0;
    complain(cmd, "%s is required", what);
    return EXIT_USAGE;
}

static int keys_add(int argc, char **argv)
{
    struct keys_args a;
    unsigned scopes = 0;
    uint32_t rate = DEFAULT_RATE;
    char why[IDL_ERR_MAX] = "";
    char secret[IDL_AUTH_SECRET_MAX], id[IDL_AUTH_ID_MAX];
    char err[IDL_ERR_MAX] = "";
    int rc = parse_args("add", argc, argv, &add_spec, &a);
    if (rc) return rc;
    const char *file = a.value[F_FILE], *customer = a.value[F_CUSTOMER];
    const char *scopes_arg = a.value[F_SCOPES], *rate_arg = a.value[F_RATE];
    if ((rc = require("add", file, "--file")) || (rc = require("add", customer, "--customer")) ||
        (rc = require("add", scopes_arg, "--scopes")))
        return rc;
    if (idl_auth_validate_customer(customer, why) != IDL_OK) {
        complain("add", "--customer: %s", why);
        return EXIT_USAGE;
    }
    if ((rc = parse_scopes_arg(scopes_arg, &scopes))) return rc;
    if (rate_arg && (rc = parse_rate_arg(rate_arg, &rate))) return rc;

    rc = idl_keyfile_add(file, customer, scopes, rate, secret, id, err);
    if (rc != IDL_OK) return complain_status("add", rc, err);
    fprintf(stderr, "created key %s for customer %s\n", id, customer);
    /* The secret exists nowhere else: if it cannot be shown, the key is
     * useless and should not linger as a live credential. */
    bool shown = printf("%s\n", secret) > 0 && fflush(stdout) == 0;
    int saved_errno = errno;
    sodium_memzero(secret, sizeof secret);
    if (!shown) {
        complain("add", "writing the secret to stdout: %s; key %s was added, revoke it",
                 strerror(saved_errno), id);
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}

static int keys_list(int argc, char **argv)
{
    struct keys_args a;
    idl_keyring *kr = NULL;
    char err[IDL_ERR_MAX] = "";
    int rc = parse_args("list", argc, argv, &list_spec, &a);
    if (rc) return rc;
    const char *file = a.value[F_FILE];
    if ((rc = require("list", file, "--file"))) return rc;
    rc = idl_keyring_load(file, &kr, err);
    if (rc != IDL_OK) return complain_status("list", rc, err);
    for (size_t i = 0; i < idl_keyring_count(kr); i++) {
        const idl_key_info *k = idl_keyring_info(kr, i);
        char scopes[32];
        idl_auth_format_scopes(k->scopes, scopes, sizeof scopes);
        printf("%s\t%s\t%s\t%u\t%s\n", k->id, k->customer, scopes, (unsigned)k->rate,
               k->revoked ? "revoked" : "active");
    }
    idl_keyring_free(kr);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        complain("list", "writing to stdout: %s", strerror(errno));
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}

static int keys_revoke(int argc, char **argv)
{
    struct keys_args a;
    char err[IDL_ERR_MAX] = "";
    int rc = parse_args("revoke", argc, argv, &revoke_spec, &a);
    if (rc) return rc;
    const char *file = a.value[F_FILE];
    if ((rc = require("revoke", file, "--file")) ||
        (rc = require("revoke", a.npositional ? a.positional[0] : NULL, "KEY_ID")))
        return rc;
    rc = idl_keyfile_revoke(file, a.positional[0], err);
    if (rc != IDL_OK) return complain_status("revoke", rc, err);
    fprintf(stderr, "revoked key %s; a running idlookupd honours it after SIGHUP\n",
            a.positional[0]);
    return EXIT_SUCCESS;
}

int idl_cli_keys(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
    } commands[] = {
        {"add", keys_add},
        {"list", keys_list},
        {"revoke", keys_revoke},
    };
    if (argc < 2) {
        complain(NULL, "missing subcommand (add, list or revoke; see idlookup keys --help)");
        return EXIT_USAGE;
    }
    /* --help anywhere before "--" wins over every other check. */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (is_help(argv[i]) || (i == 1 && strcmp(argv[i], "help") == 0)) {
            idl_args_usage(&add_spec, stdout);
            return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        }
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    complain(NULL, "unknown subcommand '%s' (expected add, list or revoke)", argv[1]);
    return EXIT_USAGE;
}
