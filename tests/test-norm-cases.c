/* The normalizer case tables (tests/data/email_cases.tsv and
 * address_cases.tsv): each row gives an input, the normalized form or a
 * word of the reason, and the RFC or Pub 28 rule it exercises; every failing
 * row is reported with its line and rule.
 * Usage: test-norm-cases EMAIL_CASES.tsv ADDRESS_CASES.tsv */
#include "normcases.h"
#include "norm.h"
#include "status.h"
#include "testutil.h"

static const char *email_path, *address_path;

static void email_table(void)
{
    tsv_row *rows;
    size_t n = tsv_load(email_path, &rows);
    CHECKM(n >= 150, "%zu email cases, want at least 150", n);
    for (size_t i = 0; i < n; i++) {
        tsv_row *r = &rows[i];
        if (r->ncol != 3) {
            EXPECT(false, "email_cases.tsv:%d: want 3 columns, got %d", r->line, r->ncol);
            continue;
        }
        char in[1024], out[IDL_NORM_EMAIL_MAX] = "~";
        size_t len = tsv_unescape(r->col[0], in, sizeof in);
        const char *reason = NULL;
        int rc = idl_norm_email(in, len, out, &reason);
        const char *want = r->col[1];
        if (strncmp(want, "ok:", 3) == 0) {
            EXPECT(rc == IDL_OK && strcmp(out, want + 3) == 0,
                   "email_cases.tsv:%d [%s]: \"%s\": got %s \"%s\", want \"%s\"", r->line,
                   r->col[2], r->col[0], rc == IDL_OK ? "ok" : "invalid",
                   rc == IDL_OK ? out : reason, want + 3);
        } else {
            EXPECT(rc == IDL_INVALID_ARGUMENT && reason && strstr(reason, want + 4) &&
                       strcmp(out, "~") == 0,
                   "email_cases.tsv:%d [%s]: \"%s\": got %s \"%s\", want invalid with \"%s\"",
                   r->line, r->col[2], r->col[0], rc == IDL_OK ? "ok" : "invalid",
                   rc == IDL_OK ? out : reason, want + 4);
        }
    }
    tsv_free(rows, n);
}

static void address_table(void)
{
    tsv_row *rows;
    size_t n = tsv_load(address_path, &rows);
    CHECKM(n >= 120, "%zu address cases, want at least 120", n);
    for (size_t i = 0; i < n; i++) {
        tsv_row *r = &rows[i];
        if (r->ncol != 7) {
            EXPECT(false, "address_cases.tsv:%d: want 7 columns, got %d", r->line, r->ncol);
            continue;
        }
        char street[1024];
        tsv_unescape(r->col[0], street, sizeof street);
        idl_address a;
        memset(&a, 0, sizeof a);
        const char *reason = NULL;
        int rc = idl_norm_address(tsv_opt(r->col[0]) ? street : NULL, tsv_opt(r->col[1]),
                                  tsv_opt(r->col[2]), tsv_opt(r->col[3]), tsv_opt(r->col[4]), &a,
                                  &reason);
        const char *want = r->col[5];
        char got[512];
        if (rc == IDL_OK)
            snprintf(got, sizeof got, "%s|%s|%s|%s|%s", a.street, a.unit, a.city, a.state, a.zip);
        else
            snprintf(got, sizeof got, "invalid: %s", reason ? reason : "(no reason)");
        if (strncmp(want, "ok:", 3) == 0)
            EXPECT(rc == IDL_OK && strcmp(got, want + 3) == 0,
                   "address_cases.tsv:%d [%s]: \"%s\" unit \"%s\": got \"%s\", want \"%s\"",
                   r->line, r->col[6], r->col[0], r->col[1], got, want + 3);
        else
            EXPECT(rc == IDL_INVALID_ARGUMENT && reason && strstr(reason, want + 4),
                   "address_cases.tsv:%d [%s]: \"%s\" unit \"%s\": got \"%s\", want invalid "
                   "with \"%s\"",
                   r->line, r->col[6], r->col[0], r->col[1], got, want + 4);
    }
    tsv_free(rows, n);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test-norm-cases EMAIL_CASES.tsv ADDRESS_CASES.tsv\n");
        return 2;
    }
    email_path = argv[1];
    address_path = argv[2];
    RUN(email_table);
    RUN(address_table);
    return test_failures_ ? 1 : 0;
}
