/* The store fails closed on damaged files.  Each case builds a store, compacts
 * it so that every column family sits in one SST file, overwrites 32 bytes in
 * the middle of one family's SST and reopens:
 *   supp     the open fails, naming the suppression list (serving would find
 *            opted-out persons again);
 *   persons  every read of a person is either the person or an error, never
 *            "absent", and a full scan ends with an error status;
 *   idx      every probe either lists the person or fails;
 *   log/logp scans end with an error status, retention reports it.
 * The consistency check (idl_store_check) reports the damage as an error. */
#include "qlog.h"
#include "storefault.h"

static bool setup(char dir[64], const char *cfname)
{
    snprintf(dir, 64, "/tmp/idl-test-corrupt-XXXXXX");
    if (!mkdtemp(dir)) return false;
    return build(dir) && corrupt(dir, cfname);
}

static idl_store *open_ok(const char *dir)
{
    idl_store *s = NULL;
    char err[IDL_ERR_MAX] = "";
    int rc = idl_store_open(&s, dir, NULL, err);
    CHECKM(rc == IDL_OK, "open: %s", err);
    return rc ? NULL : s;
}

/* Scans a family to its end; returns the iterator's status. */
static int scan_status(idl_store *s, idl_cf cf, size_t *n)
{
    idl_store_iter *it = NULL;
    int rc = idl_store_iter_open(s, cf, NULL, 0, NULL, 0, &it);
    if (rc) return rc;
    *n = 0;
    for (; idl_store_iter_valid(it); idl_store_iter_next(it))
        (*n)++;
    rc = idl_store_iter_status(it);
    idl_store_iter_close(it);
    return rc;
}

/* Scans the query log through qlog's own scan; returns its status, with
 * the entries skipped as undecodable in *n. */
static int qlog_scan_status(idl_store *s, size_t *n)
{
    idl_qlog_scan *sc = NULL;
    int rc = idl_qlog_scan_open(s, 0, UINT64_MAX, &sc);
    if (rc) return rc;
    idl_qlog_entry *e = malloc(sizeof *e);
    bool got = true;
    while (e && got && (rc = idl_qlog_scan_next(sc, e, &got)) == IDL_OK)
        ;
    *n = (size_t)idl_qlog_scan_undecodable(sc);
    free(e);
    idl_qlog_scan_close(sc);
    return rc;
}

/* The recipients of every person of the fixture (Disclosures' scan). */
static int recipients_status(idl_store *s)
{
    uint64_t *pids = malloc(NPERSONS * sizeof *pids);
    if (!pids) return IDL_INTERNAL;
    for (int i = 0; i < NPERSONS; i++)
        pids[i] = pid_of(i);
    idl_qlog_recipient *rs = NULL;
    size_t nr = 0;
    int rc = idl_qlog_recipients(s, pids, NPERSONS, 0, UINT64_MAX, &rs, &nr);
    if (rc == IDL_OK) CHECK(nr > 0); /* the fixture's customers are random bytes */
    free(rs);
    free(pids);
    return rc;
}

static void intact_store_reads_clean(void)
{
    char dir[64];
    snprintf(dir, 64, "/tmp/idl-test-corrupt-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    CHECK(build(dir));
    idl_store *s = open_ok(dir);
    if (!s) goto out;
    size_t n = 0;
    CHECK_INT(scan_status(s, IDL_CF_PERSONS, &n), IDL_OK);
    CHECK_INT(n, NPERSONS);
    CHECK_INT(scan_status(s, IDL_CF_LOG, &n), IDL_OK);
    CHECK_INT(n, NLOG);
    CHECK_INT(qlog_scan_status(s, &n), IDL_OK);
    CHECK_INT(n, NLOG); /* the fixture's log values are not entries */
    CHECK_INT(recipients_status(s), IDL_OK);
    idl_store_check_report rep;
    CHECK_INT(idl_store_check(s, &rep), IDL_OK);
    CHECK(idl_store_check_ok(&rep));
    CHECK_INT(rep.persons, NPERSONS);
    CHECK_INT(rep.suppressed, NPERSONS / 2);
    idl_store_close(s);
out:
    rm_rf(dir);
}

static void supp_corrupt_refuses_open(void)
{
    char dir[64];
    if (!setup(dir, "supp")) goto out;
    idl_store *s = NULL;
    char err[IDL_ERR_MAX] = "";
    int rc = idl_store_open(&s, dir, NULL, err);
    CHECK_INT(rc, IDL_DATA_LOSS);
    CHECKM(strstr(err, "suppression") != NULL, "message: %s", err);
    CHECKM(strstr(err, "Corruption") != NULL || strstr(err, "checksum") != NULL, "message: %s",
           err);
    printf("     open refused: %s\n", err);
    if (!rc) idl_store_close(s);
out:
    rm_rf(dir);
}

static void persons_corrupt_reads_fail(void)
{
    char dir[64];
    if (!setup(dir, "persons")) goto out;
    idl_store *s = open_ok(dir);
    if (!s) goto out;
    size_t ok = 0, failed = 0, absent = 0;
    static idl_record r;
    for (int i = 0; i < NPERSONS; i++) {
        int rc = idl_store_get(s, pid_of(i), &r);
        ok += rc == IDL_OK;
        absent += rc == IDL_NOT_FOUND;
        failed += rc == IDL_UNAVAILABLE || rc == IDL_DATA_LOSS;
    }
    CHECK_INT(absent, 0);
    CHECK(failed > 0);
    CHECK_INT(ok + failed, NPERSONS);
    size_t n = 0;
    CHECK_INT(scan_status(s, IDL_CF_PERSONS, &n), IDL_DATA_LOSS);
    CHECK(n < NPERSONS);
    idl_store_check_report rep;
    CHECK_INT(idl_store_check(s, &rep), IDL_DATA_LOSS);
    printf("     %zu of %d persons unreadable, none reported absent\n", failed, NPERSONS);
    idl_store_close(s);
out:
    rm_rf(dir);
}

static void idx_corrupt_probes_fail(void)
{
    char dir[64];
    if (!setup(dir, "idx")) goto out;
    idl_store *s = open_ok(dir);
    if (!s) goto out;
    size_t found = 0, failed = 0, missed = 0;
    for (int i = 0; i < NPERSONS; i++) {
        char email[64];
        snprintf(email, sizeof email, "p%d@example.com", i);
        idl_hkey k;
        idl_hkey_make(&k, "email", email);
        uint64_t pids[8];
        size_t n = 0;
        int rc = idl_store_probe(s, &k, pids, 8, &n, NULL);
        if (rc) {
            failed += rc == IDL_UNAVAILABLE || rc == IDL_DATA_LOSS;
            continue;
        }
        if (n == 1 && pids[0] == pid_of(i))
            found++;
        else
            missed++;
    }
    CHECK_INT(missed, 0);
    CHECK(failed > 0);
    CHECK_INT(found + failed, NPERSONS);
    idl_store_check_report rep;
    CHECK_INT(idl_store_check(s, &rep), IDL_DATA_LOSS);
    printf("     %zu of %d email probes failed, none answered nobody\n", failed, NPERSONS);
    idl_store_close(s);
out:
    rm_rf(dir);
}

static void log_corrupt_scans_fail(void)
{
    char dir[64];
    if (!setup(dir, "log")) goto out;
    idl_store *s = open_ok(dir);
    if (!s) goto out;
    size_t n = 0;
    CHECK_INT(scan_status(s, IDL_CF_LOG, &n), IDL_DATA_LOSS);
    CHECK(n < NLOG);
    CHECK_INT(qlog_scan_status(s, &n), IDL_DATA_LOSS);
    CHECK(n < NLOG);
    uint64_t deleted = 0;
    CHECK_INT(idl_qlog_delete_before(s, UINT64_MAX, &deleted), IDL_DATA_LOSS);
    /* Nothing was deleted on the strength of a partial scan. */
    idl_store_close(s);
    s = open_ok(dir);
    if (!s) goto out;
    size_t m = 0;
    scan_status(s, IDL_CF_LOG, &m);
    CHECK_INT(m, n);
    idl_store_close(s);
out:
    rm_rf(dir);
}

static void logp_corrupt_scans_fail(void)
{
    char dir[64];
    if (!setup(dir, "logp")) goto out;
    idl_store *s = open_ok(dir);
    if (!s) goto out;
    size_t n = 0;
    CHECK_INT(scan_status(s, IDL_CF_LOGP, &n), IDL_DATA_LOSS);
    CHECK(n < NLOG);
    CHECK_INT(recipients_status(s), IDL_DATA_LOSS);
    idl_store_close(s);
out:
    rm_rf(dir);
}

int main(void)
{
    RUN(intact_store_reads_clean);
    RUN(supp_corrupt_refuses_open);
    RUN(persons_corrupt_reads_fail);
    RUN(idx_corrupt_probes_fail);
    RUN(log_corrupt_scans_fail);
    RUN(logp_corrupt_scans_fail);
    return test_summary();
}
