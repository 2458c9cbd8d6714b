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

static const char usage_text[] =
    "Usage: idlookup keys add --file FILE --customer NAME --scopes SCOPES [--rate N]\n"
    "       idlookup keys list --file FILE\n"
    "       idlookup keys revoke --file FILE KEY_ID\n"
    "\n"
    "Edits the API key file that idlookupd loads with --keys (and reloads on SIGHUP).\n"
    "\n"
    "  add     Creates FILE (mode 0600) if it is missing and appends a new active key.\n"
    "          Prints the key's secret alone on one stdout line; it is shown this once\n"
    "          (the file keeps only its hash).  The key id goes to stderr.\n"
    "          --customer NAME  the customer the key belongs to (1..127 bytes of\n"
    "                           UTF-8, no TAB, newline or other control character)\n"
    "          --scopes SCOPES  comma-separated subset of lookup, privacy, admin\n"
    "          --rate N         requests per second, 1..1000000, default 100; a token\n"
    "                           bucket whose burst is N\n"
    "  list    One line per key, TAB-separated: id, customer, scopes, rate, state.\n"
    "  revoke  Marks KEY_ID revoked; a running idlookupd honours it after SIGHUP.\n"
    "\n"
    "Options also take the form --name=VALUE.  Exit status: 0 success, 1 failure\n"
    "(missing file, unknown key id, malformed key file, I/O error), 2 bad usage.\n";

/* The options a subcommand accepts, as bits. */
enum {
    OPT_FILE = 1,
    OPT_CUSTOMER = 2,
    OPT_SCOPES = 4,
    OPT_RATE = 8,
};

static const struct {
    const char *name;
    unsigned bit;
} option_names[] = {
    {"--file", OPT_FILE},
    {"--customer", OPT_CUSTOMER},
    {"--scopes", OPT_SCOPES},
    {"--rate", OPT_RATE},
};
#define OPTION_COUNT (sizeof option_names / sizeof option_names[0])

struct keys_args {
    const char *value[OPTION_COUNT]; /* by index in option_names; NULL if absent */
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

/* A library error: its message, or the status name if there was no memory
 * for one. */
static int complain_status(const char *cmd, int rc, char *err)
{
    complain(cmd, "%s", err ? err : idl_status_name(rc));
    free(err);
    return EXIT_FAILURE;
}

static bool is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* argv[0] is the subcommand.  Returns 0, or EXIT_USAGE after complaining. */
static int parse_args(const char *cmd, int argc, char **argv, unsigned allowed, int max_positional,
                      struct keys_args *out)
{
    struct keys_args a = {0};
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (options_done || arg[0] != '-' || arg[1] == '\0') {
            if (a.npositional >= max_positional) {
                complain(cmd, "unexpected argument '%s'", arg);
                return EXIT_USAGE;
            }
            a.positional[a.npositional++] = arg;
            continue;
        }
        const char *eq = strchr(arg, '=');
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        size_t opt = OPTION_COUNT;
        for (size_t j = 0; j < OPTION_COUNT; j++)
            if (strlen(option_names[j].name) == name_len &&
                memcmp(option_names[j].name, arg, name_len) == 0 && (allowed & option_names[j].bit))
                opt = j;
        if (opt == OPTION_COUNT) {
            complain(cmd, "unknown option '%.*s'", (int)name_len, arg);
            return EXIT_USAGE;
        }
        const char *name = option_names[opt].name;
        const char *value = eq ? eq + 1 : NULL;
        /* "--file --customer x" is a forgotten value far more often than a
         * file named "--customer"; such a value can still be given as
         * --file=--customer. */
        if (!eq) {
            if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0) {
                complain(cmd, "%s: missing value", name);
                return EXIT_USAGE;
            }
            value = argv[++i];
        }
        if (a.value[opt]) {
            complain(cmd, "%s: given twice", name);
            return EXIT_USAGE;
        }
        if (*value == '\0' && option_names[opt].bit != OPT_CUSTOMER) {
            complain(cmd, "%s: empty value", name);
            return EXIT_USAGE;
        }
        a.value[opt] = value;
    }
    *out = a;
    return 0;
}

static const char *arg_value(const struct keys_args *a, unsigned bit)
{
    for (size_t j = 0; j < OPTION_COUNT; j++)
        if (option_names[j].bit == bit) return a->value[j];
    return NULL;
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
    const char *why = NULL;
    char secret[IDL_AUTH_SECRET_MAX], id[IDL_AUTH_ID_MAX];
    char *err = NULL;
    int rc = parse_args("add", argc, argv, OPT_FILE | OPT_CUSTOMER | OPT_SCOPES | OPT_RATE, 0, &a);
    if (rc) return rc;
    const char *file = arg_value(&a, OPT_FILE), *customer = arg_value(&a, OPT_CUSTOMER);
    const char *scopes_arg = arg_value(&a, OPT_SCOPES), *rate_arg = arg_value(&a, OPT_RATE);
    if ((rc = require("add", file, "--file")) || (rc = require("add", customer, "--customer")) ||
        (rc = require("add", scopes_arg, "--scopes")))
        return rc;
    if (idl_auth_validate_customer(customer, &why) != IDL_OK) {
        complain("add", "--customer: %s", why);
        return EXIT_USAGE;
    }
    if ((rc = parse_scopes_arg(scopes_arg, &scopes))) return rc;
    if (rate_arg && (rc = parse_rate_arg(rate_arg, &rate))) return rc;

    rc = idl_keyfile_add(file, customer, scopes, rate, secret, id, &err);
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
    char *err = NULL;
    int rc = parse_args("list", argc, argv, OPT_FILE, 0, &a);
    if (rc) return rc;
    const char *file = arg_value(&a, OPT_FILE);
    if ((rc = require("list", file, "--file"))) return rc;
    rc = idl_keyring_load(file, &kr, &err);
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
    char *err = NULL;
    int rc = parse_args("revoke", argc, argv, OPT_FILE, 1, &a);
    if (rc) return rc;
    const char *file = arg_value(&a, OPT_FILE);
    if ((rc = require("revoke", file, "--file")) ||
        (rc = require("revoke", a.npositional ? a.positional[0] : NULL, "KEY_ID")))
        return rc;
    rc = idl_keyfile_revoke(file, a.positional[0], &err);
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
            fputs(usage_text, stdout);
            return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        }
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    complain(NULL, "unknown subcommand '%s' (expected add, list or revoke)", argv[1]);
    return EXIT_USAGE;
}
