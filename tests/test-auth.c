/* API keys: the key file round trip (add, list, check, revoke), the strict
 * parser's messages, scope parsing, and the token bucket with explicit times,
 * alone and under threads.  Everything happens in a mkdtemp directory. */
#include "auth.h"
#include "status.h"
#include "testutil.h"

#include <dirent.h>
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];

static char *path_in_tmp(const char *name)
{
    static char buf[4][256];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", tmpdir, name);
    return p;
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(text, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

/* The whole file as a NUL-terminated malloc'd string (NULL if unreadable). */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 16);
    size_t n = buf ? fread(buf, 1, (1 << 16) - 1, f) : 0;
    fclose(f);
    if (buf) buf[n] = '\0';
    return buf;
}

/* Runs idl_auth_check on "Bearer <secret>". */
static int check_bearer(idl_keyring *kr, const char *secret, idl_key **key)
{
    char auth[256];
    snprintf(auth, sizeof auth, "Bearer %s", secret);
    return idl_auth_check(kr, auth, strlen(auth), key);
}

static bool starts_with(const char *s, const char *prefix)
{
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* How many entries of the temp dir have part in their name. */
static int entries_named(const char *part)
{
    int n = 0;
    DIR *d = opendir(tmpdir);
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, part)) n++;
    closedir(d);
    return n;
}

/* ---------------------------------------------------------------- scopes */

static void scopes_parse(void)
{
    unsigned m = 99;
    CHECK_INT(idl_auth_parse_scopes("lookup", &m), IDL_OK);
    CHECK_INT(m, IDL_SCOPE_LOOKUP);
    CHECK_INT(idl_auth_parse_scopes("privacy,lookup", &m), IDL_OK);
    CHECK_INT(m, IDL_SCOPE_LOOKUP | IDL_SCOPE_PRIVACY);
    CHECK_INT(idl_auth_parse_scopes("lookup,privacy,admin", &m), IDL_OK);
    CHECK_INT(m, IDL_SCOPE_LOOKUP | IDL_SCOPE_PRIVACY | IDL_SCOPE_ADMIN);

    const char *bad[] = {"",        "lokup",         "Lookup",        "lookup,",
                         ",lookup", "lookup,,admin", "lookup,lookup", "lookup admin",
                         " lookup", "lookupx",       "look",          "admin,privacy,x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m = 77;
        int rc = idl_auth_parse_scopes(bad[i], &m);
        CHECK_INT(rc, IDL_INVALID_ARGUMENT);
        CHECK_INT(m, 77); /* untouched on error */
        if (rc != IDL_INVALID_ARGUMENT) fprintf(stderr, "  accepted scopes \"%s\"\n", bad[i]);
    }
}

static void scopes_format(void)
{
    char buf[64];
    idl_auth_format_scopes(IDL_SCOPE_LOOKUP, buf, sizeof buf);
    CHECK_STR(buf, "lookup");
    idl_auth_format_scopes(IDL_SCOPE_ADMIN | IDL_SCOPE_LOOKUP, buf, sizeof buf);
    CHECK_STR(buf, "lookup,admin");
    idl_auth_format_scopes(IDL_SCOPE_LOOKUP | IDL_SCOPE_PRIVACY | IDL_SCOPE_ADMIN, buf, sizeof buf);
    CHECK_STR(buf, "lookup,privacy,admin");
    idl_auth_format_scopes(0, buf, sizeof buf);
    CHECK_STR(buf, "");
    /* Too small: whole names only, never a prefix that reads as garbage. */
    char small[10];
    idl_auth_format_scopes(IDL_SCOPE_LOOKUP | IDL_SCOPE_PRIVACY, small, sizeof small);
    CHECK_STR(small, "lookup");

    for (unsigned mask = 1; mask < 8; mask++) {
        unsigned back = 0;
        idl_auth_format_scopes(mask, buf, sizeof buf);
        CHECK_INT(idl_auth_parse_scopes(buf, &back), IDL_OK);
        CHECK_INT(back, mask);
    }
}

static void customer_names(void)
{
    char why[IDL_ERR_MAX] = "";
    CHECK_INT(idl_auth_validate_customer("acme-co", why), IDL_OK);
    CHECK_INT(idl_auth_validate_customer("Ünïcödé Gmbh & Co. KG", why), IDL_OK);
    char longest[IDL_AUTH_CUSTOMER_MAX];
    memset(longest, 'x', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0';
    CHECK_INT(idl_auth_validate_customer(longest, why), IDL_OK);

    char too_long[IDL_AUTH_CUSTOMER_MAX + 1];
    memset(too_long, 'x', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';
    CHECK_INT(idl_auth_validate_customer(too_long, why), IDL_INVALID_ARGUMENT);
    CHECK_STR(why, "longer than 127 bytes");
    CHECK_INT(idl_auth_validate_customer("", why), IDL_INVALID_ARGUMENT);
    CHECK_STR(why, "empty");
    CHECK_INT(idl_auth_validate_customer("a\tb", why), IDL_INVALID_ARGUMENT);
    CHECK_STR(why, "contains a TAB");
    CHECK_INT(idl_auth_validate_customer("a\nb", why), IDL_INVALID_ARGUMENT);
    CHECK_STR(why, "contains a newline");
    CHECK_INT(idl_auth_validate_customer("a\rb", why), IDL_INVALID_ARGUMENT);
    CHECK_STR(why, "contains a control character");
    CHECK_INT(idl_auth_validate_customer("caf\xc3", why), IDL_INVALID_ARGUMENT);
    CHECK_STR(why, "not valid UTF-8");
    CHECK_INT(idl_auth_validate_customer("\xc0\xaf", why), IDL_INVALID_ARGUMENT); /* overlong */
    CHECK_INT(idl_auth_validate_customer("\xed\xa0\x80", why),
              IDL_INVALID_ARGUMENT); /* UTF-16 half */
}

/* ------------------------------------------------------------- round trip */

static bool secret_well_formed(const char *secret, const char *id)
{
    if (strlen(secret) != 61 || strncmp(secret, "idl_", 4) != 0 || strncmp(secret + 4, id, 13) ||
        secret[17] != '_')
        return false;
    for (const char *p = secret + 18; *p; p++)
        if (!(('A' <= *p && *p <= 'Z') || ('a' <= *p && *p <= 'z') || ('0' <= *p && *p <= '9') ||
              *p == '-' || *p == '_'))
            return false;
    return true;
}

static void key_file_round_trip(void)
{
    const char *path = path_in_tmp("round.keys");
    char s1[IDL_AUTH_SECRET_MAX], s2[IDL_AUTH_SECRET_MAX];
    char id1[IDL_AUTH_ID_MAX], id2[IDL_AUTH_ID_MAX];
    char err[IDL_ERR_MAX] = "";

    CHECK_INT(idl_keyfile_add(path, "acme", IDL_SCOPE_LOOKUP, 100, s1, id1, err), IDL_OK);
    CHECK(err[0] == 0);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK_INT(
        idl_keyfile_add(path, "globex corp", IDL_SCOPE_PRIVACY | IDL_SCOPE_ADMIN, 5, s2, id2, err),
        IDL_OK);
    CHECK(secret_well_formed(s1, id1));
    CHECK(secret_well_formed(s2, id2));
    CHECK(strcmp(id1, id2) != 0);
    CHECK(strcmp(s1, s2) != 0);
    /* The secret never reaches the file, only its hash. */
    char *text = read_file(path);
    CHECK(text && !strstr(text, s1) && !strstr(text, s1 + 18) && !strstr(text, s2 + 18));
    free(text);

    idl_keyring *kr = NULL;
    CHECK_INT(idl_keyring_load(path, &kr, err), IDL_OK);
    CHECK(err[0] == 0);
    CHECK_INT(idl_keyring_count(kr), 2);
    const idl_key_info *a = idl_keyring_info(kr, 0), *b = idl_keyring_info(kr, 1);
    CHECK(a && b && idl_keyring_info(kr, 2) == NULL);
    if (!a || !b) goto out;
    CHECK_STR(a->id, id1);
    CHECK_STR(a->customer, "acme");
    CHECK_INT(a->scopes, IDL_SCOPE_LOOKUP);
    CHECK_INT(a->rate, 100);
    CHECK(!a->revoked);
    CHECK_STR(b->id, id2);
    CHECK_STR(b->customer, "globex corp");
    CHECK_INT(b->scopes, IDL_SCOPE_PRIVACY | IDL_SCOPE_ADMIN);
    CHECK_INT(b->rate, 5);

    idl_key *k = NULL;
    CHECK_INT(check_bearer(kr, s1, &k), IDL_OK);
    CHECK(k && idl_key_get_info(k) == a);
    k = NULL;
    CHECK_INT(check_bearer(kr, s2, &k), IDL_OK);
    CHECK(k && idl_key_get_info(k) == b);

    /* Wrong secrets of the right shape: the hash compare must reject them. */
    char wrong[IDL_AUTH_SECRET_MAX];
    strcpy(wrong, s1);
    wrong[60] = wrong[60] == 'A' ? 'B' : 'A';
    k = NULL;
    CHECK_INT(check_bearer(kr, wrong, &k), IDL_UNAUTHENTICATED);
    CHECK(k == NULL);
    strcpy(wrong, s1);
    wrong[18] = wrong[18] == 'A' ? 'B' : 'A';
    CHECK_INT(check_bearer(kr, wrong, &k), IDL_UNAUTHENTICATED);
    /* Key 1's id with key 2's random part. */
    snprintf(wrong, sizeof wrong, "%.18s%s", s1, s2 + 18);
    CHECK_INT(check_bearer(kr, wrong, &k), IDL_UNAUTHENTICATED);
    /* An id that is in no file. */
    strcpy(wrong, s1);
    memcpy(wrong + 4, strcmp(id1, "k000000000000") ? "k000000000000" : "k000000000001", 13);
    CHECK_INT(check_bearer(kr, wrong, &k), IDL_UNAUTHENTICATED);

    /* Malformed authorization values. */
    char buf[256];
    const char *forms[] = {"",        "Bearer",   "Bearer ",  "Basic x", "bearer ",
                           "BEARER ", "Bearer  ", "Bearer\t", "Token "};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        snprintf(buf, sizeof buf, "%s%s", forms[i], i >= 4 ? s1 : "");
        CHECK_INT(idl_auth_check(kr, buf, strlen(buf), &k), IDL_UNAUTHENTICATED);
    }
    snprintf(buf, sizeof buf, "Basic %s", s1);
    CHECK_INT(idl_auth_check(kr, buf, strlen(buf), &k), IDL_UNAUTHENTICATED);
    snprintf(buf, sizeof buf, "Bearer%s", s1); /* no space */
    CHECK_INT(idl_auth_check(kr, buf, strlen(buf), &k), IDL_UNAUTHENTICATED);
    CHECK_INT(idl_auth_check(kr, s1, strlen(s1), &k), IDL_UNAUTHENTICATED); /* no "Bearer " */
    snprintf(buf, sizeof buf, "Bearer %s", s1 + 4); /* secret without "idl_" */
    CHECK_INT(idl_auth_check(kr, buf, strlen(buf), &k), IDL_UNAUTHENTICATED);
    snprintf(buf, sizeof buf, "Bearer %s ", s1); /* trailing space */
    CHECK_INT(idl_auth_check(kr, buf, strlen(buf), &k), IDL_UNAUTHENTICATED);
    snprintf(buf, sizeof buf, "Bearer %s", s1);
    CHECK_INT(idl_auth_check(kr, buf, strlen(buf) - 1, &k), IDL_UNAUTHENTICATED); /* cut short */
    CHECK_INT(idl_auth_check(kr, buf, strlen(buf) + 1, &k), IDL_UNAUTHENTICATED); /* NUL inside */
    CHECK_INT(idl_auth_check(kr, NULL, 0, &k), IDL_UNAUTHENTICATED);
    CHECK_INT(idl_auth_check(NULL, buf, strlen(buf), &k), IDL_UNAUTHENTICATED);
    /* Only len counts: the same bytes followed by garbage are fine. */
    snprintf(buf, sizeof buf, "Bearer %sGARBAGE", s1);
    k = NULL;
    CHECK_INT(idl_auth_check(kr, buf, 7 + strlen(s1), &k), IDL_OK);
    CHECK(k && idl_key_get_info(k) == a);

    /* Revoke: the loaded keyring is a snapshot; a reload sees the revocation. */
    CHECK_INT(idl_keyfile_revoke(path, id1, err), IDL_OK);
    CHECK_INT(check_bearer(kr, s1, &k), IDL_OK);
    idl_keyring *kr2 = NULL;
    CHECK_INT(idl_keyring_load(path, &kr2, err), IDL_OK);
    CHECK_INT(idl_keyring_count(kr2), 2);
    CHECK(idl_keyring_info(kr2, 0) && idl_keyring_info(kr2, 0)->revoked);
    CHECK(idl_keyring_info(kr2, 1) && !idl_keyring_info(kr2, 1)->revoked);
    k = NULL;
    CHECK_INT(check_bearer(kr2, s1, &k), IDL_UNAUTHENTICATED);
    CHECK(k == NULL);
    CHECK_INT(check_bearer(kr2, s2, &k), IDL_OK);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    idl_keyring_free(kr2);

    /* Revoking twice is fine; unknown ids and files are NOT_FOUND. */
    CHECK_INT(idl_keyfile_revoke(path, id1, err), IDL_OK);
    CHECK(err[0] == 0);
    CHECK_INT(idl_keyfile_revoke(path, "k0123456789ab", err), IDL_NOT_FOUND);
    CHECK(err[0] && strstr(err, "k0123456789ab") && strstr(err, path));
    err[0] = 0;
    CHECK_INT(idl_keyfile_revoke(path, s1, err), IDL_NOT_FOUND); /* a secret, not an id */
    CHECK(err[0] && !strstr(err, s1));                           /* never echoed */
    err[0] = 0;
    CHECK_INT(idl_keyfile_revoke(path_in_tmp("absent.keys"), id1, err), IDL_NOT_FOUND);
    CHECK(err[0] && strstr(err, "absent.keys"));
    err[0] = 0;
    CHECK(access(path_in_tmp("absent.keys"), F_OK) != 0);

    CHECK_INT(entries_named(".tmp-"), 0); /* no temp file left behind */
out:
    idl_keyring_free(kr);
    unlink(path);
}

static void missing_and_bad_arguments(void)
{
    static int marker;
    idl_keyring *kr = (idl_keyring *)&marker; /* must stay untouched */
    char err[IDL_ERR_MAX] = "";
    const char *absent = path_in_tmp("nope.keys");
    CHECK_INT(idl_keyring_load(absent, &kr, err), IDL_NOT_FOUND);
    CHECK(kr == (idl_keyring *)&marker);
    CHECK(err[0] && strstr(err, absent));
    err[0] = 0;
    /* err may be NULL. */
    CHECK_INT(idl_keyring_load(absent, &kr, NULL), IDL_NOT_FOUND);
    /* A directory is not a key file. */
    CHECK_INT(idl_keyring_load(tmpdir, &kr, err), IDL_INTERNAL);
    CHECK(kr == (idl_keyring *)&marker);
    CHECK(err[0] && strstr(err, tmpdir));
    err[0] = 0;

    char s[IDL_AUTH_SECRET_MAX] = "untouched", id[IDL_AUTH_ID_MAX] = "untouched";
    const char *path = path_in_tmp("args.keys");
    CHECK_INT(idl_keyfile_add(path, "", IDL_SCOPE_LOOKUP, 10, s, id, err), IDL_INVALID_ARGUMENT);
    CHECK(starts_with(err, "customer: "));
    err[0] = 0;
    CHECK_INT(idl_keyfile_add(path, "a\tb", IDL_SCOPE_LOOKUP, 10, s, id, NULL),
              IDL_INVALID_ARGUMENT);
    CHECK_INT(idl_keyfile_add(path, "a", 0, 10, s, id, NULL), IDL_INVALID_ARGUMENT);
    CHECK_INT(idl_keyfile_add(path, "a", 8, 10, s, id, NULL), IDL_INVALID_ARGUMENT);
    CHECK_INT(idl_keyfile_add(path, "a", IDL_SCOPE_LOOKUP, 0, s, id, NULL), IDL_INVALID_ARGUMENT);
    CHECK_INT(idl_keyfile_add(path, "a", IDL_SCOPE_LOOKUP, 1000001, s, id, NULL),
              IDL_INVALID_ARGUMENT);
    CHECK_STR(s, "untouched");
    CHECK_STR(id, "untouched");
    CHECK(access(path, F_OK) != 0); /* bad arguments create nothing */
    CHECK_INT(
        idl_keyfile_add(path_in_tmp("no/such/dir/x.keys"), "a", IDL_SCOPE_LOOKUP, 1, s, id, NULL),
        IDL_NOT_FOUND);
    CHECK_INT(idl_keyfile_add(path, "a", IDL_SCOPE_LOOKUP, 1, s, id, NULL), IDL_OK);
    CHECK_INT(idl_keyfile_add(path, "b", IDL_SCOPE_LOOKUP, 1000000, s, id, NULL), IDL_OK);
    unlink(path);
}

/* The documented format, written by hand: the hash is BLAKE2b-256 of the
 * whole secret string, in lower-case hex. */
static void hand_written_file(void)
{
    const char *secret = "idl_k00000000002a_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const char *revoked = "idl_k00000000002c_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    unsigned char h[32];
    char hex[65], hex_revoked[65];
    crypto_generichash(h, sizeof h, (const unsigned char *)secret, strlen(secret), NULL, 0);
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    crypto_generichash(h, sizeof h, (const unsigned char *)revoked, strlen(revoked), NULL, 0);
    sodium_bin2hex(hex_revoked, sizeof hex_revoked, h, sizeof h);
    char text[512];
    int n = snprintf(text, sizeof text,
                     "# keys for the test\n\n   \n"
                     "k00000000002a\tinitech\tadmin,lookup\t7\tactive\t%s\n"
                     "#k00000000002b\tnot\ta\tkey\n"
                     "k00000000002c\tumbrella\tlookup\t1\trevoked\t%s",
                     hex, hex_revoked);
    const char *path = path_in_tmp("hand.keys");
    write_file(path, text, (size_t)n);

    idl_keyring *kr = NULL;
    char err[IDL_ERR_MAX] = "";
    CHECK_INT(idl_keyring_load(path, &kr, err), IDL_OK);
    CHECK_INT(idl_keyring_count(kr), 2);
    const idl_key_info *a = idl_keyring_info(kr, 0), *b = idl_keyring_info(kr, 1);
    CHECK(a && b);
    if (a && b) {
        CHECK_STR(a->id, "k00000000002a");
        CHECK_INT(a->scopes, IDL_SCOPE_ADMIN | IDL_SCOPE_LOOKUP);
        CHECK_INT(a->rate, 7);
        CHECK(!a->revoked);
        CHECK_STR(b->customer, "umbrella");
        CHECK(b->revoked);
    }
    idl_key *k = NULL;
    CHECK_INT(check_bearer(kr, secret, &k), IDL_OK);
    CHECK(k && idl_key_get_info(k) == a);
    /* The right secret of a revoked key: no. */
    CHECK_INT(check_bearer(kr, revoked, &k), IDL_UNAUTHENTICATED);
    idl_keyring_free(kr);

    /* Revoke rewrites only the state field, and add never glues its line to
     * a last line without a newline. */
    CHECK_INT(idl_keyfile_revoke(path, "k00000000002a", err), IDL_OK);
    char *after = read_file(path);
    char *expect = strdup(text);
    char *state = strstr(expect, "7\tactive\t");
    CHECK(state != NULL);
    if (state && after) {
        char want[512];
        snprintf(want, sizeof want, "%.*s7\trevoked\t%s", (int)(state - expect), expect,
                 state + strlen("7\tactive\t"));
        CHECK_STR(after, want);
    }
    free(after);
    free(expect);

    char s[IDL_AUTH_SECRET_MAX], id[IDL_AUTH_ID_MAX];
    kr = NULL;
    CHECK_INT(idl_keyfile_add(path, "hooli", IDL_SCOPE_LOOKUP, 3, s, id, err), IDL_OK);
    CHECK_INT(idl_keyring_load(path, &kr, err), IDL_OK);
    CHECK_INT(idl_keyring_count(kr), 3);
    CHECK(idl_keyring_info(kr, 1) && idl_keyring_info(kr, 1)->revoked);
    CHECK_INT(check_bearer(kr, s, &k), IDL_OK);
    CHECK(k && strcmp(idl_key_get_info(k)->customer, "hooli") == 0);
    idl_keyring_free(kr);
    unlink(path);
}

/* ---------------------------------------------------------- bad key files */

static void malformed_files(void)
{
    static const char H[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char good[256], later[256];
    snprintf(good, sizeof good, "k000000000001\tacme\tlookup\t10\tactive\t%s\n", H);
    snprintf(later, sizeof later, "k000000000009\tacme\tlookup\t10\tactive\t%s\n", H);
    struct {
        const char *line; /* %s is the hash */
        const char *cause;
    } cases[] = {
        {"k000000000002\tacme\tlookup\t10\tactive\n", "expected 6 TAB-separated fields"},
        {"k000000000002\tacme\tlookup\t10\tactive\t%s\textra\n", "expected 6 TAB-separated"},
        {"k000000000002 acme lookup 10 active %s\n", "expected 6 TAB-separated"},
        {"k000000000002\tacme\t\tlookup\t10\tactive\t%s\n", "expected 6 TAB-separated"},
        {"K000000000002\tacme\tlookup\t10\tactive\t%s\n", "id: "},
        {"k00000000000\tacme\tlookup\t10\tactive\t%s\n", "id: "},
        {"k00000000000A\tacme\tlookup\t10\tactive\t%s\n", "id: "},
        {"k0000000000002\tacme\tlookup\t10\tactive\t%s\n", "id: "},
        {"k000000000002\t\tlookup\t10\tactive\t%s\n", "customer: empty"},
        {"k000000000002\tac\rme\tlookup\t10\tactive\t%s\n", "customer: contains a control"},
        {"k000000000002\tacm\xff\tlookup\t10\tactive\t%s\n", "customer: not valid UTF-8"},
        {"k000000000002\tacme\tlokup\t10\tactive\t%s\n", "scopes: "},
        {"k000000000002\tacme\t\t10\tactive\t%s\n", "scopes: "},
        {"k000000000002\tacme\tlookup,\t10\tactive\t%s\n", "scopes: "},
        {"k000000000002\tacme\tlookup\t0\tactive\t%s\n", "rate: "},
        {"k000000000002\tacme\tlookup\t1000001\tactive\t%s\n", "rate: "},
        {"k000000000002\tacme\tlookup\t-5\tactive\t%s\n", "rate: "},
        {"k000000000002\tacme\tlookup\t+5\tactive\t%s\n", "rate: "},
        {"k000000000002\tacme\tlookup\t5x\tactive\t%s\n", "rate: "},
        {"k000000000002\tacme\tlookup\t\tactive\t%s\n", "rate: "},
        {"k000000000002\tacme\tlookup\t99999999999999999999\tactive\t%s\n", "rate: "},
        {"k000000000002\tacme\tlookup\t10\tActive\t%s\n", "state: "},
        {"k000000000002\tacme\tlookup\t10\tdisabled\t%s\n", "state: "},
        {"k000000000002\tacme\tlookup\t10\tactive\t%.63s\n", "hash: "},
        {"k000000000002\tacme\tlookup\t10\tactive\t%sa\n", "hash: "},
        {"k000000000002\tacme\tlookup\t10\tactive\t%s\r\n", "hash: "},
        {"k000000000002\tacme\tlookup\t10\tactive\t%s \n", "hash: "},
        {"k000000000002\tacme\tlookup\t10\tactive\t0123456789ABCDEF0123456789abcdef0123456789abcdef"
         "0123456789abcdef\n",
         "hash: "},
        {"k000000000002\tacme\tlookup\t10\tactive\t0123456789gbcdef0123456789abcdef0123456789abcdef"
         "0123456789abcdef\n",
         "hash: "},
        {"k000000000001\tother\tadmin\t10\trevoked\t%s\n", "duplicate id k000000000001 (first on "
                                                           "line 2)"},
        {" k000000000002\tacme\tlookup\t10\tactive\t%s\n", "id: "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char bad[512], text[1024];
        snprintf(bad, sizeof bad, cases[i].line, H);
        /* The bad line is line 3, after a comment and a good key, and
         * before another good key. */
        int n = snprintf(text, sizeof text, "# header\n%s%s%s", good, bad, later);
        const char *path = path_in_tmp("bad.keys");
        write_file(path, text, (size_t)n);

        idl_keyring *kr = NULL;
        char err[IDL_ERR_MAX] = "";
        char want[300];
        snprintf(want, sizeof want, "%s:3: ", path);
        CHECK_INT(idl_keyring_load(path, &kr, err), IDL_INVALID_ARGUMENT);
        CHECK(kr == NULL);
        bool named = starts_with(err, want) && strstr(err, cases[i].cause) && !strchr(err, '\n');
        CHECK(named);
        if (!named)
            fprintf(stderr, "  case %zu: err \"%s\", want \"%s...%s\"\n", i, err, want,
                    cases[i].cause);
        err[0] = 0;

        /* The editors refuse the file and leave it as it was. */
        char s[IDL_AUTH_SECRET_MAX], id[IDL_AUTH_ID_MAX];
        CHECK_INT(idl_keyfile_add(path, "x", IDL_SCOPE_LOOKUP, 1, s, id, err),
                  IDL_INVALID_ARGUMENT);
        CHECK(starts_with(err, want));
        err[0] = 0;
        CHECK_INT(idl_keyfile_revoke(path, "k000000000001", err), IDL_INVALID_ARGUMENT);
        CHECK(starts_with(err, want));
        err[0] = 0;
        char *after = read_file(path);
        CHECK(after && strlen(after) == (size_t)n && memcmp(after, text, (size_t)n) == 0);
        free(after);
        unlink(path);
    }

    /* A NUL byte inside a line, and an over-long line. */
    char text[2048];
    int n = snprintf(text, sizeof text, "%s", good);
    text[5] = '\0';
    const char *path = path_in_tmp("nul.keys");
    write_file(path, text, (size_t)n);
    idl_keyring *kr = NULL;
    char err[IDL_ERR_MAX] = "";
    CHECK_INT(idl_keyring_load(path, &kr, err), IDL_INVALID_ARGUMENT);
    CHECK(err[0] && strstr(err, "nul.keys:1: ") && strstr(err, "NUL"));
    err[0] = 0;
    memset(text, 'x', 1500);
    text[1500] = '\n';
    write_file(path, text, 1501);
    CHECK_INT(idl_keyring_load(path, &kr, err), IDL_INVALID_ARGUMENT);
    CHECK(err[0] && strstr(err, "nul.keys:1: ") && strstr(err, "longer"));
    err[0] = 0;

    /* Empty and comment-only files are valid and hold no key. */
    write_file(path, "", 0);
    CHECK_INT(idl_keyring_load(path, &kr, err), IDL_OK);
    CHECK_INT(idl_keyring_count(kr), 0);
    idl_key *k = NULL;
    CHECK_INT(check_bearer(kr, "idl_k000000000001_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &k),
              IDL_UNAUTHENTICATED);
    idl_keyring_free(kr);
    kr = NULL;
    write_file(path, "# nothing\n\n", 11);
    CHECK_INT(idl_keyring_load(path, &kr, err), IDL_OK);
    CHECK_INT(idl_keyring_count(kr), 0);
    idl_keyring_free(kr);
    unlink(path);
}

/* ----------------------------------------------------------- token bucket */

/* A keyring with one key of the given rate, and that key. */
static idl_keyring *one_key(uint32_t rate, idl_key **key)
{
    const char *path = path_in_tmp("bucket.keys");
    char s[IDL_AUTH_SECRET_MAX], id[IDL_AUTH_ID_MAX];
    idl_keyring *kr = NULL;
    *key = NULL;
    unlink(path);
    CHECK_INT(idl_keyfile_add(path, "bucket", IDL_SCOPE_LOOKUP, rate, s, id, NULL), IDL_OK);
    CHECK_INT(idl_keyring_load(path, &kr, NULL), IDL_OK);
    CHECK_INT(check_bearer(kr, s, key), IDL_OK);
    unlink(path);
    return kr;
}

static void bucket_arithmetic(void)
{
    idl_key *k;
    idl_keyring *kr = one_key(10, &k);
    uint32_t left = 999, retry = 999;
    const uint64_t t = 5000000;
    if (!k) goto out;
    /* Starts full: burst = rate. */
    for (uint32_t i = 0; i < 10; i++) {
        CHECK_INT(idl_key_take(k, t, &left, &retry), IDL_OK);
        CHECK_INT(left, 9 - i);
    }
    retry = 0;
    CHECK_INT(idl_key_take(k, t, &left, &retry), IDL_RESOURCE_EXHAUSTED);
    CHECK_INT(retry, 100); /* one token per 100 ms */
    /* has_token says the same as take, and takes nothing. */
    retry = 0;
    CHECK_INT(idl_key_has_token(k, t + 30000, &retry), IDL_RESOURCE_EXHAUSTED);
    CHECK_INT(retry, 70);
    CHECK_INT(idl_key_has_token(k, t + 100000, &retry), IDL_OK);
    CHECK_INT(idl_key_has_token(k, t + 100000, NULL), IDL_OK);
    CHECK_INT(idl_key_take(k, t + 30000, &left, &retry), IDL_RESOURCE_EXHAUSTED);
    CHECK_INT(retry, 70);
    CHECK_INT(idl_key_take(k, t + 99999, &left, &retry), IDL_RESOURCE_EXHAUSTED);
    CHECK_INT(retry, 1); /* 1 µs away still says 1 ms, never 0 */
    CHECK_INT(idl_key_take(k, t + 100000, &left, &retry), IDL_OK);
    CHECK_INT(left, 0);
    CHECK_INT(idl_key_take(k, t + 100000, &left, &retry), IDL_RESOURCE_EXHAUSTED);
    CHECK_INT(retry, 100);
    /* 250 ms: 2.5 tokens back, one taken, 1 whole left. */
    CHECK_INT(idl_key_take(k, t + 350000, &left, &retry), IDL_OK);
    CHECK_INT(left, 1);
    /* A long idle refills to the burst, not beyond. */
    CHECK_INT(idl_key_take(k, t + 3600000000ull, &left, &retry), IDL_OK);
    CHECK_INT(left, 9);
    /* A time older than the last one refills nothing (threads race to the
     * lock with slightly stale clocks) and breaks nothing. */
    CHECK_INT(idl_key_take(k, t, &left, &retry), IDL_OK);
    CHECK_INT(left, 8);
    /* NULL outputs are allowed. */
    CHECK_INT(idl_key_take(k, t + 3600000000ull, NULL, NULL), IDL_OK);
out:
    idl_keyring_free(kr);

    /* Rate 3: a token every 333333.3 µs, rounded up to 334 ms. */
    kr = one_key(3, &k);
    if (k) {
        for (int i = 0; i < 3; i++)
            CHECK_INT(idl_key_take(k, 0, &left, &retry), IDL_OK);
        CHECK_INT(idl_key_take(k, 0, &left, &retry), IDL_RESOURCE_EXHAUSTED);
        CHECK_INT(retry, 334);
        /* 400 ms: 1.2 tokens; after one, 0.8 short: 266666.7 µs -> 267 ms. */
        CHECK_INT(idl_key_take(k, 400000, &left, &retry), IDL_OK);
        CHECK_INT(left, 0);
        CHECK_INT(idl_key_take(k, 400000, &left, &retry), IDL_RESOURCE_EXHAUSTED);
        CHECK_INT(retry, 267);
    }
    idl_keyring_free(kr);

    /* Rate 1: a second to wait. */
    kr = one_key(1, &k);
    if (k) {
        CHECK_INT(idl_key_take(k, 7, &left, &retry), IDL_OK);
        CHECK_INT(left, 0);
        CHECK_INT(idl_key_take(k, 7, &left, &retry), IDL_RESOURCE_EXHAUSTED);
        CHECK_INT(retry, 1000);
        CHECK_INT(idl_key_take(k, 1000006, &left, &retry), IDL_RESOURCE_EXHAUSTED);
        CHECK_INT(retry, 1);
        CHECK_INT(idl_key_take(k, 1000007, &left, &retry), IDL_OK);
    }
    idl_keyring_free(kr);

    /* Rate 7 (1e6 = 7 * 142857 + 1): 141857 µs after emptying, 7001
     * micro-tokens are missing, 1000.14 µs of refill: 2 ms, not 1. */
    kr = one_key(7, &k);
    if (k) {
        for (int i = 0; i < 7; i++)
            CHECK_INT(idl_key_take(k, 0, &left, &retry), IDL_OK);
        CHECK_INT(idl_key_take(k, 141857, &left, &retry), IDL_RESOURCE_EXHAUSTED);
        CHECK_INT(retry, 2);
    }
    idl_keyring_free(kr);

    /* Rate 3000: a token is 333.3 µs away, which is reported as 1 ms. */
    kr = one_key(3000, &k);
    if (k) {
        int ok = 0;
        while (idl_key_take(k, 1, &left, &retry) == IDL_OK && ok < 10000)
            ok++;
        CHECK_INT(ok, 3000);
        CHECK_INT(retry, 1);
    }
    idl_keyring_free(kr);

    /* The top rate: the arithmetic must not overflow. */
    kr = one_key(1000000, &k);
    if (k) {
        CHECK_INT(idl_key_take(k, UINT64_MAX - 1, &left, &retry), IDL_OK);
        CHECK_INT(left, 999999);
        CHECK_INT(idl_key_take(k, UINT64_MAX, &left, &retry), IDL_OK);
        CHECK_INT(left, 999999);
    }
    idl_keyring_free(kr);
}

#define THREADS 8
#define ROUNDS 40
#define ATTEMPTS 300

/* Each round starts all threads together at one instant; a lost update (two
 * threads taking the same token) shows as more than the expected count. */
struct hammer {
    idl_key *key;
    pthread_barrier_t *start;
    int taken[ROUNDS];
    int bad_refusals; /* a refusal other than RESOURCE_EXHAUSTED, 1 ms */
};

/* Round r runs at 10 s * (r + 1) (a full bucket), except odd rounds, which
 * run half a second after the round before (half a bucket). */
static uint64_t round_time(int r)
{
    return r % 2 ? 10000000ull * (uint64_t)r + 500000 : 10000000ull * (uint64_t)(r + 1);
}

static void *hammer_thread(void *arg)
{
    struct hammer *h = arg;
    for (int r = 0; r < ROUNDS; r++) {
        pthread_barrier_wait(h->start);
        for (int i = 0; i < ATTEMPTS; i++) {
            uint32_t left = 0, retry = 0;
            int rc = idl_key_take(h->key, round_time(r), &left, &retry);
            if (rc == IDL_OK)
                h->taken[r]++;
            else if (rc != IDL_RESOURCE_EXHAUSTED || retry != 1)
                h->bad_refusals++;
        }
    }
    return NULL;
}

/* 8 threads, 2400 attempts a round on a rate-1000 key at one instant: exactly
 * the burst (or the half refilled since the last round) is granted, no token
 * lost or given twice. */
static void bucket_under_threads(void)
{
    idl_key *k;
    idl_keyring *kr = one_key(1000, &k);
    pthread_t th[THREADS];
    static struct hammer h[THREADS];
    pthread_barrier_t start;
    if (!k) goto out;
    pthread_barrier_init(&start, NULL, THREADS);
    for (int i = 0; i < THREADS; i++) {
        memset(&h[i], 0, sizeof h[i]);
        h[i].key = k;
        h[i].start = &start;
        CHECK(pthread_create(&th[i], NULL, hammer_thread, &h[i]) == 0);
    }
    int bad = 0, rounds_wrong = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        bad += h[i].bad_refusals;
    }
    for (int r = 0; r < ROUNDS; r++) {
        int total = 0;
        for (int i = 0; i < THREADS; i++)
            total += h[i].taken[r];
        if (total != (r % 2 ? 500 : 1000)) {
            rounds_wrong++;
            fprintf(stderr, "  round %d: %d tokens taken\n", r, total);
        }
    }
    CHECK_INT(rounds_wrong, 0);
    CHECK_INT(bad, 0);
    pthread_barrier_destroy(&start);
out:
    idl_keyring_free(kr);
}

struct checker {
    idl_keyring *kr;
    const char *good, *bad;
    int wrong;
};

static void *check_thread(void *arg)
{
    struct checker *c = arg;
    for (int i = 0; i < 2000; i++) {
        idl_key *k = NULL;
        if (check_bearer(c->kr, c->good, &k) != IDL_OK || !k) c->wrong++;
        if (check_bearer(c->kr, c->bad, &k) != IDL_UNAUTHENTICATED) c->wrong++;
    }
    return NULL;
}

/* Lookups share the keyring without a lock. */
static void check_under_threads(void)
{
    const char *path = path_in_tmp("threads.keys");
    char s[IDL_AUTH_SECRET_MAX], id[IDL_AUTH_ID_MAX], bad[IDL_AUTH_SECRET_MAX];
    for (int i = 0; i < 50; i++)
        CHECK_INT(idl_keyfile_add(path, "many", IDL_SCOPE_LOOKUP, 10, s, id, NULL), IDL_OK);
    strcpy(bad, s);
    bad[30] = bad[30] == 'x' ? 'y' : 'x';
    idl_keyring *kr = NULL;
    CHECK_INT(idl_keyring_load(path, &kr, NULL), IDL_OK);
    CHECK_INT(idl_keyring_count(kr), 50);
    pthread_t th[THREADS];
    struct checker c[THREADS];
    for (int i = 0; i < THREADS; i++) {
        c[i] = (struct checker){kr, s, bad, 0};
        CHECK(pthread_create(&th[i], NULL, check_thread, &c[i]) == 0);
    }
    int wrong = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        wrong += c[i].wrong;
    }
    CHECK_INT(wrong, 0);
    idl_keyring_free(kr);
    unlink(path);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test-auth-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(scopes_parse);
    RUN(scopes_format);
    RUN(customer_names);
    RUN(key_file_round_trip);
    RUN(missing_and_bad_arguments);
    RUN(hand_written_file);
    RUN(malformed_files);
    RUN(bucket_arithmetic);
    RUN(bucket_under_threads);
    RUN(check_under_threads);
    /* Every case removes its files; rmdir fails if one was left behind. */
    CHECK(rmdir(tmpdir) == 0);
    return test_summary();
}
