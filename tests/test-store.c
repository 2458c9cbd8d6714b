/* The RocksDB record store in a mkdtemp directory: open/close/reopen and the
 * lock; upsert outcomes (stored, updated with the old index entries gone,
 * child refused, update-to-child purged); counters across reopen; opt-outs
 * by person and by key, and records arriving later with a suppressed
 * identifier; purge_child; mark_once; bounded probes; several records per
 * call; person ids; raw batches and iterators; and crash consistency: a
 * writer process is SIGKILLed mid-load and every record and index entry must
 * still agree with each other. */
#include "json.h"
#include "record.h"
#include "status.h"
#include "store.h"
#include "testutil.h"
#include "wire.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

static const char *self_exe;

/* ---- helpers ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void make_tmpdir(char out[64])
{
    snprintf(out, 64, "/tmp/idl-test-store-XXXXXX");
    CHECK(mkdtemp(out) != NULL);
}

static idl_store *open_store(const char *dir)
{
    idl_store *s = NULL;
    char err[IDL_ERR_MAX] = "";
    int rc = idl_store_open(&s, dir, NULL, err);
    CHECK_INT(rc, IDL_OK);
    if (rc) fprintf(stderr, "  open %s: %s\n", dir, err);
    return rc ? NULL : s;
}

/* Parses a record from JSON text (the Upsert path's parser). */
static bool rec_json(idl_record *r, const char *json)
{
    idl_buf buf = {0};
    char msg[IDL_ERR_MAX], reason[IDL_ERR_MAX];
    bool ok = false;
    if (idl_json_to_msgpack(json, strlen(json), &buf, msg) == IDL_OK) {
        msgpack_zone z;
        msgpack_zone_init(&z, 1024);
        msgpack_object o;
        size_t off = 0;
        if (msgpack_unpack(buf.data, buf.len, &off, &z, &o) == MSGPACK_UNPACK_SUCCESS)
            ok = idl_record_parse(&o, r, NULL, NULL, reason) == IDL_OK;
        msgpack_zone_destroy(&z);
    }
    idl_buf_free(&buf);
    CHECK(ok);
    if (!ok) fprintf(stderr, "  bad test record: %s\n", json);
    return ok;
}

/* An adult with one of each identifier, all derived from `tag`. */
static void adult(idl_record *r, const char *sid, const char *tag)
{
    char json[1024];
    snprintf(json, sizeof json,
             "{\"source_id\": \"%s\", \"first_name\": \"Robert\", \"last_name\": \"Doe-%s\","
             " \"dob\": \"1980-05-05\", \"emails\": [\"%s@example.com\"],"
             " \"phones\": [\"+1 212 555 01%02d\"],"
             " \"addresses\": [{\"street\": \"%d Main Street\", \"city\": \"Springfield\","
             " \"state\": \"IL\", \"zip\": \"62701\"}],"
             " \"ips\": [\"10.1.%d.%d\"]}",
             sid, tag, tag, (int)(XXH3_64bits(tag, strlen(tag)) % 100),
             (int)(XXH3_64bits(tag, strlen(tag)) % 9000) + 1, (int)(strlen(tag) % 250),
             (int)(XXH3_64bits(tag, strlen(tag)) % 250) + 1);
    rec_json(r, json);
}

static void dob_years_ago(char out[16], int years)
{
    int y, m, d;
    idl_today(&y, &m, &d);
    if (m == 2 && d == 29) d = 28;
    snprintf(out, 16, "%04d-%02d-%02d", (y - years) % 10000, m % 100, d % 100);
}

static idl_hkey email_key(const char *email)
{
    idl_hkey k;
    idl_hkey_make(&k, "email", email);
    return k;
}

static size_t probe(idl_store *s, const idl_hkey *k, uint64_t *pids, size_t max, bool *more)
{
    size_t n = 12345;
    bool m = false;
    CHECK_INT(idl_store_probe(s, k, pids, max, &n, &m), IDL_OK);
    if (more) *more = m;
    return n;
}

/* True when a probe of k lists pid.  Some keys are shared by many persons
 * (a date of birth, a first name with a last initial): no bound here. */
static bool probe_finds(idl_store *s, const idl_hkey *k, uint64_t pid)
{
    enum { MAXP = 1 << 16 };
    uint64_t *pids = malloc(MAXP * sizeof *pids);
    size_t n = 0;
    bool more = false, found = false;
    CHECK_INT(idl_store_probe(s, k, pids, MAXP, &n, &more), IDL_OK);
    CHECK(!more);
    for (size_t i = 0; i < n && !found; i++)
        found = pids[i] == pid;
    free(pids);
    return found;
}

/* Index entries (anywhere) that point at pid: an idx value is the list of
 * 8-byte pids under one 16-byte identifier hash. */
static size_t idx_entries_for(idl_store *s, uint64_t pid)
{
    idl_store_iter *it = NULL;
    size_t n = 0;
    CHECK_INT(idl_store_iter_open(s, IDL_CF_IDX, NULL, 0, NULL, 0, &it), IDL_OK);
    for (; it && idl_store_iter_valid(it); idl_store_iter_next(it)) {
        size_t kl, vl;
        idl_store_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)idl_store_iter_value(it, &vl);
        CHECK_INT(kl, 16);
        CHECK_INT(vl % 8, 0);
        for (size_t i = 0; i + 8 <= vl; i += 8)
            n += idl_be64_get(v + i) == pid;
    }
    idl_store_iter_close(it);
    return n;
}

static size_t count_cf(idl_store *s, idl_cf cf)
{
    idl_store_iter *it = NULL;
    size_t n = 0;
    CHECK_INT(idl_store_iter_open(s, cf, NULL, 0, NULL, 0, &it), IDL_OK);
    for (; it && idl_store_iter_valid(it); idl_store_iter_next(it))
        n++;
    idl_store_iter_close(it);
    return n;
}

/* Full scans (idx_entries_for, count_cf) of the hashed column families
 * (persons, idx) see what is on disk: the tests reopen the store first, which
 * replays and flushes the WAL.  Scans of unflushed writes have their own case,
 * iterators_see_unflushed_writes. */
static idl_store *reopen(idl_store *s, const char *dir)
{
    idl_store_close(s);
    return open_store(dir);
}

static idl_upsert_result upsert1(idl_store *s, const idl_record *r)
{
    idl_upsert_result res;
    memset(&res, 0x5a, sizeof res);
    CHECK_INT(idl_store_upsert(s, r, 1, &res, false), IDL_OK);
    return res;
}

static void counts_are(idl_store *s, uint64_t persons, uint64_t suppressed, uint64_t purged)
{
    idl_store_counts c;
    idl_store_counts_get(s, &c);
    CHECK_INT(c.persons, persons);
    CHECK_INT(c.suppressed, suppressed);
    CHECK_INT(c.children_purged, purged);
}

/* ---- cases ---- */

static void open_close_reopen(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    counts_are(s, 0, 0, 0);
    idl_record r;
    adult(&r, "crm-000123", "jane");
    idl_upsert_result res = upsert1(s, &r);
    CHECK_INT(res.outcome, IDL_UP_STORED);
    CHECK(!res.suppressed && !res.purged);
    idl_store_close(s);
    idl_store_close(NULL);

    s = open_store(dir);
    if (!s) return;
    idl_record got;
    CHECK_INT(idl_store_get(s, idl_person_id("crm-000123"), &got), IDL_OK);
    CHECK_STR(got.source_id, "crm-000123");
    CHECK_STR(got.emails[0], "jane@example.com");
    CHECK_INT(idl_store_get(s, idl_person_id("nobody"), &got), IDL_NOT_FOUND);
    counts_are(s, 1, 0, 0);
    idl_store_close(s);
    rm_rf(dir);
}

static void second_open_is_unavailable(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir), *t = (idl_store *)&s;
    char err[IDL_ERR_MAX] = "";
    CHECK_INT(idl_store_open(&t, dir, NULL, err), IDL_UNAVAILABLE);
    CHECK(t == (idl_store *)&s); /* not written on failure */
    CHECK(strlen(err) > 10);
    CHECK(strstr(err, dir) != NULL);
    idl_store_close(s);
    /* Free again once closed. */
    s = open_store(dir);
    idl_store_close(s);
    /* A path that cannot be a store. */
    char file[128];
    snprintf(file, sizeof file, "%s/plainfile", dir);
    FILE *f = fopen(file, "w");
    if (f) fclose(f);
    err[0] = 0;
    t = NULL;
    int rc = idl_store_open(&t, file, NULL, err);
    CHECK(rc != IDL_OK);
    CHECK(t == NULL);
    CHECK(err[0] != 0);
    rm_rf(dir);
}

static void upsert_then_update_moves_index(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    uint64_t pid = idl_person_id("s-1");
    idl_record r;
    rec_json(&r, "{\"source_id\": \"s-1\", \"first_name\": \"Ann\", \"last_name\": \"Old\","
                 " \"emails\": [\"old@example.com\"], \"phones\": [\"+1 212 555 0101\"],"
                 " \"addresses\": [{\"street\": \"1 Elm St\", \"zip\": \"97477\"}],"
                 " \"ips\": [\"10.0.0.1\"]}");
    idl_upsert_result res = upsert1(s, &r);
    CHECK_INT(res.outcome, IDL_UP_STORED);
    CHECK(!res.suppressed && !res.purged);
    idl_hkey old_keys[IDL_RECORD_KEYS_MAX];
    size_t n_old = idl_record_keys(&r, old_keys, IDL_RECORD_KEYS_MAX, true);
    CHECK(n_old >= 5);
    for (size_t i = 0; i < n_old; i++)
        CHECK(probe_finds(s, &old_keys[i], pid));
    s = reopen(s, dir);
    if (!s) return;
    CHECK_INT(idx_entries_for(s, pid), n_old);
    counts_are(s, 1, 0, 0);

    /* Same source_id, all new identifiers and another name. */
    rec_json(&r, "{\"source_id\": \"s-1\", \"first_name\": \"Ann\", \"last_name\": \"New\","
                 " \"emails\": [\"new@example.com\"], \"phones\": [\"+1 212 555 0102\"],"
                 " \"addresses\": [{\"street\": \"2 Elm St\", \"zip\": \"97477\"}],"
                 " \"ips\": [\"10.0.0.2\"]}");
    res = upsert1(s, &r);
    CHECK_INT(res.outcome, IDL_UP_UPDATED);
    CHECK(!res.suppressed && !res.purged);
    idl_hkey new_keys[IDL_RECORD_KEYS_MAX];
    size_t n_new = idl_record_keys(&r, new_keys, IDL_RECORD_KEYS_MAX, true);
    /* Every old key the new record does not also have is gone. */
    uint64_t pids[4];
    bool more = true;
    size_t gone = 0;
    for (size_t i = 0; i < n_old; i++) {
        bool kept = false;
        for (size_t j = 0; j < n_new; j++)
            kept |= memcmp(old_keys[i].b, new_keys[j].b, 16) == 0;
        if (kept) continue;
        CHECK_INT(probe(s, &old_keys[i], pids, 4, &more), 0);
        CHECK(!more);
        gone++;
    }
    CHECK(gone >= 5); /* email, phone, ip, address, name at least */
    idl_hkey k = email_key("old@example.com");
    CHECK_INT(probe(s, &k, pids, 4, NULL), 0);
    k = email_key("new@example.com");
    CHECK_INT(probe(s, &k, pids, 4, NULL), 1);
    CHECK(pids[0] == pid);
    for (size_t i = 0; i < n_new; i++)
        CHECK(probe_finds(s, &new_keys[i], pid));
    s = reopen(s, dir);
    if (!s) return;
    CHECK_INT(idx_entries_for(s, pid), n_new);
    idl_record got;
    CHECK_INT(idl_store_get(s, pid, &got), IDL_OK);
    CHECK_STR(got.last_name, "New");
    CHECK_STR(got.emails[0], "new@example.com");
    counts_are(s, 1, 0, 0);

    /* Re-sending the identical record is an update that keeps every key. */
    res = upsert1(s, &r);
    CHECK_INT(res.outcome, IDL_UP_UPDATED);
    for (size_t i = 0; i < n_new; i++)
        CHECK(probe_finds(s, &new_keys[i], pid));
    s = reopen(s, dir);
    if (!s) return;
    CHECK_INT(idx_entries_for(s, pid), n_new);
    counts_are(s, 1, 0, 0);
    CHECK_INT(count_cf(s, IDL_CF_PERSONS), 1);
    idl_store_close(s);
    rm_rf(dir);
}

/* The person ids a probe of email lists, as a comparable number string. */
static void expect_list(idl_store *s, const char *email, const uint64_t *want, size_t nwant)
{
    idl_hkey k = email_key(email);
    uint64_t got[8];
    bool more = true;
    size_t n = probe(s, &k, got, 8, &more);
    CHECK(!more);
    CHECK_INT(n, nwant);
    for (size_t i = 0; i < n && i < nwant; i++)
        CHECK(got[i] == want[i]);
}

static int cmp_pid(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void household(idl_record *r, const char *sid, const char *email)
{
    char json[512];
    snprintf(json, sizeof json,
             "{\"source_id\": \"%s\", \"first_name\": \"Ann\", \"last_name\": \"Lee\","
             " \"emails\": [\"%s\"]}",
             sid, email);
    rec_json(r, json);
}

/* An identifier's list is folded from merge operands: joins and leaves in
 * separate writes, before and after compaction (which turns operands into a
 * stored list and folds newer operands into that), stay exact and sorted. */
static void index_lists_merge(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    const char *sid[4] = {"h-1", "h-2", "h-3", "h-4"};
    uint64_t pid[4];
    for (int i = 0; i < 4; i++)
        pid[i] = idl_person_id(sid[i]);
    idl_record r;
    uint64_t want[4];
    /* Three join one by one, each in its own write. */
    for (int i = 0; i < 3; i++) {
        household(&r, sid[i], "home@example.com");
        upsert1(s, &r);
        want[i] = pid[i];
    }
    qsort(want, 3, sizeof *want, cmp_pid);
    expect_list(s, "home@example.com", want, 3);
    CHECK_INT(idl_store_compact(s), IDL_OK);
    expect_list(s, "home@example.com", want, 3);
    /* One moves away (a '-' operand on a stored list), one joins. */
    household(&r, sid[1], "away@example.com");
    upsert1(s, &r);
    household(&r, sid[3], "home@example.com");
    upsert1(s, &r);
    uint64_t now[3] = {pid[0], pid[2], pid[3]};
    qsort(now, 3, sizeof *now, cmp_pid);
    expect_list(s, "home@example.com", now, 3);
    expect_list(s, "away@example.com", &pid[1], 1);
    s = reopen(s, dir);
    if (!s) return;
    expect_list(s, "home@example.com", now, 3);
    CHECK_INT(idl_store_compact(s), IDL_OK);
    expect_list(s, "home@example.com", now, 3);
    /* The one who moved comes back, and leaves again, in one call: the last
     * write of a person decides. */
    idl_record two[2];
    household(&two[0], sid[1], "home@example.com");
    household(&two[1], sid[1], "away@example.com");
    idl_upsert_result res[2];
    CHECK_INT(idl_store_upsert(s, two, 2, res, false), IDL_OK);
    expect_list(s, "home@example.com", now, 3);
    expect_list(s, "away@example.com", &pid[1], 1);
    /* Everyone leaves: an empty list is no one. */
    for (int i = 0; i < 4; i++) {
        household(&r, sid[i], "elsewhere@example.com");
        upsert1(s, &r);
    }
    expect_list(s, "home@example.com", NULL, 0);
    CHECK_INT(idl_store_compact(s), IDL_OK);
    expect_list(s, "home@example.com", NULL, 0);
    expect_list(s, "away@example.com", NULL, 0);
    qsort(pid, 4, sizeof *pid, cmp_pid);
    expect_list(s, "elsewhere@example.com", pid, 4);
    idl_store_close(s);
    rm_rf(dir);
}

/* A store written with another index layout is refused with a reason, not
 * served as if it were empty. */
static void other_layout_is_refused(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    idl_record r;
    household(&r, "f-1", "f@example.com");
    upsert1(s, &r);
    /* A layout-1 store: records, and no layout stamp. */
    idl_store_batch *b = idl_store_batch_new(s);
    idl_store_batch_delete(b, IDL_CF_META, "format", 6);
    CHECK_INT(idl_store_batch_commit(s, b, false), IDL_OK);
    idl_store_batch_free(b);
    idl_store_close(s);
    char err[IDL_ERR_MAX] = "";
    s = NULL;
    CHECK_INT(idl_store_open(&s, dir, NULL, err), IDL_FAILED_PRECONDITION);
    CHECK(s == NULL);
    CHECK(strstr(err, "layout 1") != NULL && strstr(err, "ingest") != NULL);
    idl_store_close(s);
    rm_rf(dir);
    /* A new store is stamped and opens again. */
    make_tmpdir(dir);
    s = open_store(dir);
    idl_store_close(s);
    s = open_store(dir);
    idl_store_close(s);
    rm_rf(dir);
}

/* A layout 2 store (emails and addresses keyed by the old rules) is brought
 * to layout 3 at open: index entries move to the new forms, a suppressed
 * person's new forms are suppressed, and a second open changes nothing. */
static void layout_2_is_renormalized(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    idl_record r[2];
    CHECK(rec_json(&r[0], "{\"source_id\": \"mig-a\", \"first_name\": \"Ann\", \"last_name\": "
                          "\"Old\", \"emails\": [\"ann@example.com\"], \"addresses\": "
                          "[{\"street\": \"1 Market St\", \"unit\": \"Ste 200\", \"zip\": "
                          "\"05301\"}]}"));
    CHECK(rec_json(&r[1], "{\"source_id\": \"mig-b\", \"first_name\": \"Bea\", \"last_name\": "
                          "\"Old\", \"emails\": [\"bea@example.com\"], \"addresses\": "
                          "[{\"street\": \"2 Market St\", \"zip\": \"05301\"}]}"));
    CHECK_INT(idl_store_upsert(s, r, 2, NULL, false), IDL_OK);
    uint64_t pb = idl_person_id("mig-b");
    uint32_t newly;
    CHECK_INT(idl_store_suppress(s, &pb, 1, NULL, 0, &newly), IDL_OK);
    /* Rewrite both as a layout 2 store held them: an address form the old
     * rules produced ("1 MARKET ST BLDG # 3" + "STE 200" read back as
     * street "1 MARKET ST", unit "BLDG 3 STE 200" today), filed under its
     * old key, and the layout stamp 2. */
    const char *old_street[2] = {"1 MARKET ST BLDG # 3", "2 MARKET ST BLDG # 9"};
    idl_store_batch *b = idl_store_batch_new(s);
    for (int i = 0; i < 2; i++) {
        uint64_t pid = idl_person_id(r[i].source_id);
        idl_hkey now;
        idl_hkey_addr(&now, r[i].addrs[0].street, r[i].addrs[0].zip);
        idl_store_batch_delete(b, IDL_CF_IDX, now.b, 16);
        snprintf(r[i].addrs[0].street, sizeof r[i].addrs[0].street, "%s", old_street[i]);
        idl_hkey old;
        idl_hkey_addr(&old, old_street[i], "05301");
        uint8_t pk[8];
        idl_be64_put(pk, pid);
        idl_store_batch_put(b, IDL_CF_IDX, old.b, 16, pk, 8);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer mp;
        msgpack_packer_init(&mp, &sb, msgpack_sbuffer_write);
        idl_record_pack(&mp, &r[i]);
        idl_store_batch_put(b, IDL_CF_PERSONS, pk, 8, sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
    }
    uint8_t two[8];
    idl_be64_put(two, 2);
    idl_store_batch_put(b, IDL_CF_META, "format", 6, two, 8);
    CHECK_INT(idl_store_batch_commit(s, b, true), IDL_OK);
    idl_store_batch_free(b);
    idl_store_close(s);

    /* A secondary (the analytics job) refuses it until a primary has run. */
    char err[IDL_ERR_MAX] = "", sec[80];
    snprintf(sec, sizeof sec, "%s-secondary", dir);
    idl_store_opts so = {.secondary = sec};
    s = NULL;
    CHECK_INT(idl_store_open(&s, dir, &so, err), IDL_FAILED_PRECONDITION);
    CHECK(strstr(err, "layout 2") != NULL);
    idl_store_close(s);

    for (int pass = 0; pass < 2; pass++) {
        s = open_store(dir);
        if (!s) return;
        for (int i = 0; i < 2; i++) {
            uint64_t pid = idl_person_id(r[i].source_id), got[4];
            size_t n = 0;
            idl_record now;
            CHECK_INT(idl_store_get(s, pid, &now), IDL_OK);
            idl_hkey k;
            idl_hkey_addr(&k, now.addrs[0].street, "05301");
            CHECK_INT(idl_store_probe(s, &k, got, 4, &n, NULL), IDL_OK);
            CHECKM(n == 1 && got[0] == pid, "%s: new key filed (%s)", r[i].source_id,
                   now.addrs[0].street);
            idl_hkey_addr(&k, old_street[i], "05301");
            CHECK_INT(idl_store_probe(s, &k, got, 4, &n, NULL), IDL_OK);
            CHECKM(n == 0, "%s: old key still filed", r[i].source_id);
            idl_hkey_addr(&k, now.addrs[0].street, "05301");
            CHECK(idl_store_key_suppressed(s, &k) == (i == 1));
        }
        counts_are(s, 1, 1, 0);
        idl_store_close(s);
    }
    rm_rf(dir);
    rm_rf(sec);
}

static void children_are_not_stored(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    char dob[16], json[512];
    dob_years_ago(dob, 5);
    idl_record r;
    snprintf(json, sizeof json,
             "{\"source_id\": \"kid\", \"first_name\": \"Tim\", \"last_name\": \"Small\","
             " \"dob\": \"%s\", \"emails\": [\"kid@example.com\"]}",
             dob);
    rec_json(&r, json);
    idl_upsert_result res = upsert1(s, &r);
    CHECK_INT(res.outcome, IDL_UP_CHILD);
    CHECK(!res.purged && !res.suppressed);
    idl_record got;
    CHECK_INT(idl_store_get(s, idl_person_id("kid"), &got), IDL_NOT_FOUND);
    idl_hkey k = email_key("kid@example.com");
    uint64_t pids[2];
    CHECK_INT(probe(s, &k, pids, 2, NULL), 0);
    rec_json(&r, "{\"source_id\": \"flagged\", \"first_name\": \"Tim\", \"last_name\": \"Small\","
                 " \"dob\": \"1970-01-01\", \"minor\": true, \"emails\": [\"m@example.com\"]}");
    res = upsert1(s, &r);
    CHECK_INT(res.outcome, IDL_UP_CHILD);
    CHECK_INT(idl_store_get(s, idl_person_id("flagged"), &got), IDL_NOT_FOUND);
    /* Turns 13 today: stored. */
    dob_years_ago(dob, 13);
    snprintf(json, sizeof json,
             "{\"source_id\": \"teen\", \"first_name\": \"Tim\", \"last_name\": \"Small\","
             " \"dob\": \"%s\"}",
             dob);
    rec_json(&r, json);
    CHECK_INT(upsert1(s, &r).outcome, IDL_UP_STORED);
    counts_are(s, 1, 0, 0);
    s = reopen(s, dir);
    if (!s) return;
    CHECK_INT(count_cf(s, IDL_CF_PERSONS), 1);
    idl_store_close(s);
    rm_rf(dir);
}

static void update_to_child_purges(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    idl_record r, other;
    adult(&r, "p-1", "grownup");
    adult(&other, "p-2", "bystander");
    CHECK_INT(upsert1(s, &r).outcome, IDL_UP_STORED);
    CHECK_INT(upsert1(s, &other).outcome, IDL_UP_STORED);
    uint64_t pid = idl_person_id("p-1");
    idl_hkey keys[IDL_RECORD_KEYS_MAX];
    size_t nk = idl_record_keys(&r, keys, IDL_RECORD_KEYS_MAX, true);
    s = reopen(s, dir);
    if (!s) return;
    CHECK_INT(idx_entries_for(s, pid), nk);
    counts_are(s, 2, 0, 0);

    /* The same person, now with a dob five years ago. */
    char dob[16];
    dob_years_ago(dob, 5);
    snprintf(r.emails[0], sizeof r.emails[0], "changed@example.com");
    sscanf(dob, "%d-%d-%d", &r.dob_y, &r.dob_m, &r.dob_d);
    idl_upsert_result res = upsert1(s, &r);
    CHECK_INT(res.outcome, IDL_UP_CHILD);
    CHECK(res.purged);
    idl_record got;
    CHECK_INT(idl_store_get(s, pid, &got), IDL_NOT_FOUND);
    for (size_t i = 0; i < nk; i++)
        CHECK(!probe_finds(s, &keys[i], pid));
    idl_hkey k = email_key("changed@example.com");
    CHECK(!probe_finds(s, &k, pid));
    s = reopen(s, dir);
    if (!s) return;
    CHECK_INT(idx_entries_for(s, pid), 0);
    counts_are(s, 1, 0, 1);
    /* The bystander is untouched. */
    CHECK_INT(idl_store_get(s, idl_person_id("p-2"), &got), IDL_OK);
    /* A second child upsert of the same (now absent) person purges nothing. */
    res = upsert1(s, &r);
    CHECK_INT(res.outcome, IDL_UP_CHILD);
    CHECK(!res.purged);
    counts_are(s, 1, 0, 1);
    idl_store_close(s);

    s = open_store(dir);
    if (!s) return;
    counts_are(s, 1, 0, 1);
    CHECK_INT(idl_store_get(s, pid, &got), IDL_NOT_FOUND);
    idl_store_close(s);
    rm_rf(dir);
}

static void counters_persist(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    idl_record a, b, c;
    adult(&a, "a", "alpha");
    adult(&b, "b", "bravo");
    adult(&c, "c", "charlie");
    CHECK_INT(upsert1(s, &a).outcome, IDL_UP_STORED);
    CHECK_INT(upsert1(s, &b).outcome, IDL_UP_STORED);
    CHECK_INT(upsert1(s, &c).outcome, IDL_UP_STORED);
    counts_are(s, 3, 0, 0);
    uint64_t pb = idl_person_id("b");
    uint32_t newly = 99;
    CHECK_INT(idl_store_suppress(s, &pb, 1, NULL, 0, &newly), IDL_OK);
    CHECK_INT(newly, 1);
    counts_are(s, 2, 1, 0);
    char dob[16];
    dob_years_ago(dob, 3);
    sscanf(dob, "%d-%d-%d", &c.dob_y, &c.dob_m, &c.dob_d);
    CHECK(upsert1(s, &c).purged);
    counts_are(s, 1, 1, 1);
    idl_store_close(s);

    s = open_store(dir);
    if (!s) return;
    counts_are(s, 1, 1, 1);
    /* A suppressed person who becomes a child leaves both counts. */
    sscanf(dob, "%d-%d-%d", &b.dob_y, &b.dob_m, &b.dob_d);
    idl_upsert_result res = upsert1(s, &b);
    CHECK_INT(res.outcome, IDL_UP_CHILD);
    CHECK(res.purged);
    counts_are(s, 1, 0, 2);
    idl_store_close(s);

    s = open_store(dir);
    if (!s) return;
    counts_are(s, 1, 0, 2);
    s = reopen(s, dir);
    if (!s) return;
    CHECK_INT(count_cf(s, IDL_CF_PERSONS), 1);
    idl_store_close(s);
    rm_rf(dir);
}

static void suppress_by_person(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    idl_record r, other;
    rec_json(&r, "{\"source_id\": \"opt\", \"first_name\": \"Olive\", \"last_name\": \"Out\","
                 " \"emails\": [\"olive@example.com\", \"o2@example.com\"],"
                 " \"phones\": [\"+1 212 555 0155\"],"
                 " \"addresses\": [{\"street\": \"5 Oak Ave\", \"city\": \"Eugene\","
                 " \"state\": \"OR\", \"zip\": \"97401\"}], \"ips\": [\"192.0.2.5\"]}");
    rec_json(&other,
             "{\"source_id\": \"housemate\", \"first_name\": \"Hal\", \"last_name\": \"Mate\","
             " \"emails\": [\"hal@example.com\"], \"phones\": [\"+1 212 555 0155\"]}");
    CHECK_INT(upsert1(s, &r).outcome, IDL_UP_STORED);
    CHECK_INT(upsert1(s, &other).outcome, IDL_UP_STORED);
    uint64_t pid = idl_person_id("opt"), hal = idl_person_id("housemate");
    CHECK(!idl_store_person_suppressed(s, pid));
    idl_hkey keys[IDL_RECORD_KEYS_MAX];
    size_t nk = idl_record_keys(&r, keys, IDL_RECORD_KEYS_MAX, false);
    CHECK_INT(nk, 2 + 1 + 1 + 2); /* emails, phone, ip, addr + addrcs */
    for (size_t i = 0; i < nk; i++)
        CHECK(!idl_store_key_suppressed(s, &keys[i]));

    uint64_t twice[2] = {pid, pid};
    uint32_t newly = 99;
    CHECK_INT(idl_store_suppress(s, twice, 2, NULL, 0, &newly), IDL_OK);
    CHECK_INT(newly, 1);
    CHECK(idl_store_person_suppressed(s, pid));
    for (size_t i = 0; i < nk; i++)
        CHECK(idl_store_key_suppressed(s, &keys[i]));
    /* Names are never suppressed identifiers. */
    idl_hkey all[IDL_RECORD_KEYS_MAX];
    size_t na = idl_record_keys(&r, all, IDL_RECORD_KEYS_MAX, true);
    CHECK(na > nk);
    for (size_t i = nk; i < na; i++)
        CHECK(!idl_store_key_suppressed(s, &all[i]));
    /* The housemate holds a suppressed phone but is not suppressed. */
    CHECK(!idl_store_person_suppressed(s, hal));
    counts_are(s, 1, 1, 0);
    /* The record itself stays (suppression is kept apart from records). */
    idl_record got;
    CHECK_INT(idl_store_get(s, pid, &got), IDL_OK);

    /* Again: nothing new. */
    newly = 99;
    CHECK_INT(idl_store_suppress(s, &pid, 1, NULL, 0, &newly), IDL_OK);
    CHECK_INT(newly, 0);
    counts_are(s, 1, 1, 0);
    /* An unknown person: no person counted. */
    uint64_t ghost = idl_person_id("ghost");
    newly = 99;
    CHECK_INT(idl_store_suppress(s, &ghost, 1, NULL, 0, &newly), IDL_OK);
    CHECK_INT(newly, 0);
    counts_are(s, 1, 1, 0);

    /* Re-sending the opted-out person keeps it suppressed and counted once. */
    idl_upsert_result res = upsert1(s, &r);
    CHECK_INT(res.outcome, IDL_UP_UPDATED);
    CHECK(res.suppressed);
    counts_are(s, 1, 1, 0);
    /* Re-ingesting the housemate, who carries the suppressed phone, hides
     * them as well (DATA.md §4). */
    res = upsert1(s, &other);
    CHECK_INT(res.outcome, IDL_UP_UPDATED);
    CHECK(res.suppressed);
    CHECK(idl_store_person_suppressed(s, hal));
    counts_are(s, 0, 2, 0);
    idl_store_close(s);

    s = open_store(dir);
    if (!s) return;
    CHECK(idl_store_person_suppressed(s, pid));
    for (size_t i = 0; i < nk; i++)
        CHECK(idl_store_key_suppressed(s, &keys[i]));
    counts_are(s, 0, 2, 0);
    idl_store_close(s);
    rm_rf(dir);
}

static void suppress_by_keys_then_new_record(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    idl_hkey keys[2];
    keys[0] = email_key("hidden@example.com");
    idl_hkey_make(&keys[1], "phone", "+12125550177");
    uint32_t newly = 99;
    CHECK_INT(idl_store_suppress(s, NULL, 0, keys, 2, &newly), IDL_OK);
    CHECK_INT(newly, 0);
    CHECK(idl_store_key_suppressed(s, &keys[0]));
    CHECK(idl_store_key_suppressed(s, &keys[1]));
    idl_hkey other = email_key("visible@example.com");
    CHECK(!idl_store_key_suppressed(s, &other));
    counts_are(s, 0, 0, 0);

    idl_record r, v;
    rec_json(&r, "{\"source_id\": \"later\", \"first_name\": \"Lee\", \"last_name\": \"Late\","
                 " \"emails\": [\"visible2@example.com\", \"Hidden@Example.com\"]}");
    rec_json(&v, "{\"source_id\": \"vis\", \"first_name\": \"Vi\", \"last_name\": \"Sible\","
                 " \"emails\": [\"visible@example.com\"]}");
    idl_upsert_result res = upsert1(s, &r);
    CHECK_INT(res.outcome, IDL_UP_STORED);
    CHECK(res.suppressed);
    CHECK(idl_store_person_suppressed(s, idl_person_id("later")));
    res = upsert1(s, &v);
    CHECK_INT(res.outcome, IDL_UP_STORED);
    CHECK(!res.suppressed);
    CHECK(!idl_store_person_suppressed(s, idl_person_id("vis")));
    counts_are(s, 1, 1, 0);
    /* Re-sent: updated, still suppressed, still counted once. */
    res = upsert1(s, &r);
    CHECK_INT(res.outcome, IDL_UP_UPDATED);
    CHECK(res.suppressed);
    counts_are(s, 1, 1, 0);
    /* Even without the suppressed email now: the person stays hidden. */
    r.n_emails = 1;
    res = upsert1(s, &r);
    CHECK(res.suppressed);
    counts_are(s, 1, 1, 0);
    /* A record with the suppressed phone, arriving in a multi-record call. */
    idl_record batch[2];
    rec_json(&batch[0], "{\"source_id\": \"b1\", \"first_name\": \"Bo\", \"last_name\": \"One\","
                        " \"phones\": [\"(212) 555-0177\"]}");
    rec_json(&batch[1], "{\"source_id\": \"b2\", \"first_name\": \"Bo\", \"last_name\": \"Two\","
                        " \"phones\": [\"(212) 555-0178\"]}");
    idl_upsert_result rs[2];
    CHECK_INT(idl_store_upsert(s, batch, 2, rs, false), IDL_OK);
    CHECK(rs[0].outcome == IDL_UP_STORED && rs[0].suppressed);
    CHECK(rs[1].outcome == IDL_UP_STORED && !rs[1].suppressed);
    counts_are(s, 2, 2, 0);
    idl_store_close(s);
    rm_rf(dir);
}

static void purge_child_only_children(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    idl_record r;
    adult(&r, "grown", "grown");
    CHECK_INT(upsert1(s, &r).outcome, IDL_UP_STORED);
    uint64_t pid = idl_person_id("grown");
    CHECK_INT(idl_store_purge_child(s, pid), IDL_OK);
    idl_record got;
    CHECK_INT(idl_store_get(s, pid, &got), IDL_OK);
    idl_hkey keys[IDL_RECORD_KEYS_MAX];
    size_t nk = idl_record_keys(&r, keys, IDL_RECORD_KEYS_MAX, true);
    s = reopen(s, dir);
    if (!s) return;
    CHECK_INT(idx_entries_for(s, pid), nk);
    counts_are(s, 1, 0, 0);
    /* Unknown person: nothing to do. */
    CHECK_INT(idl_store_purge_child(s, idl_person_id("nobody")), IDL_OK);
    counts_are(s, 1, 0, 0);

    /* The stored record turns out to be a child (bad data in the store):
     * rewrite it in place with minor set, as if the clock had moved. */
    r.minor = true;
    idl_buf buf = {0};
    msgpack_packer pk;
    idl_buf_packer(&buf, &pk);
    idl_record_pack(&pk, &r);
    uint8_t key[8];
    idl_be64_put(key, pid);
    idl_store_batch *b = idl_store_batch_new(s);
    idl_store_batch_put(b, IDL_CF_PERSONS, key, 8, buf.data, buf.len);
    CHECK_INT(idl_store_batch_commit(s, b, false), IDL_OK);
    idl_store_batch_free(b);
    idl_buf_free(&buf);
    CHECK_INT(idl_store_purge_child(s, pid), IDL_OK);
    CHECK_INT(idl_store_get(s, pid, &got), IDL_NOT_FOUND);
    s = reopen(s, dir);
    if (!s) return;
    CHECK_INT(idx_entries_for(s, pid), 0);
    counts_are(s, 0, 0, 1);
    CHECK_INT(idl_store_purge_child(s, pid), IDL_OK); /* twice: nothing */
    counts_are(s, 0, 0, 1);
    idl_store_close(s);
    rm_rf(dir);
}

static uint64_t stamp_of(idl_store *s)
{
    char *v = NULL;
    size_t vl = 0;
    uint64_t out = 0;
    if (idl_store_raw_get(s, IDL_CF_META, "t:stamp", 7, &v, &vl) == IDL_OK && vl == 8)
        out = idl_be64_get((const uint8_t *)v);
    free(v);
    return out;
}

/* Cluster mode's stamped writes: each write's stamp lands with it (and a
 * purge with nothing to purge still lands its stamp), and survives a
 * reopen. */
static void stamped_writes_land_their_stamp(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    uint8_t v[8];
    idl_store_stamp st = {"t:stamp", 7, v, 8};
    idl_record r;
    adult(&r, "stamp-1", "stamp1");
    idl_upsert_result res;
    idl_be64_put(v, 1);
    CHECK_INT(idl_store_upsert_stamped(s, &r, 1, &res, false, &st), IDL_OK);
    CHECK_INT(res.outcome, IDL_UP_STORED);
    CHECK_INT(stamp_of(s), 1);
    idl_be64_put(v, 2);
    CHECK_INT(idl_store_upsert_stamped(s, &r, 0, NULL, false, &st), IDL_OK); /* empty */
    CHECK_INT(stamp_of(s), 2);
    uint64_t pid = idl_person_id("stamp-1");
    uint32_t newly = 0;
    idl_be64_put(v, 3);
    CHECK_INT(idl_store_suppress_stamped(s, &pid, 1, NULL, 0, &newly, &st), IDL_OK);
    CHECK_INT(newly, 1);
    CHECK_INT(stamp_of(s), 3);
    idl_be64_put(v, 4);
    CHECK_INT(idl_store_purge_child_stamped(s, pid, &st), IDL_OK); /* an adult: no purge */
    CHECK_INT(stamp_of(s), 4);
    idl_be64_put(v, 5);
    CHECK_INT(idl_store_purge_child_stamped(s, idl_person_id("nobody"), &st), IDL_OK);
    CHECK_INT(stamp_of(s), 5);
    s = reopen(s, dir);
    if (!s) return;
    CHECK_INT(stamp_of(s), 5);
    counts_are(s, 0, 1, 0);
    /* Unstamped calls leave it alone. */
    adult(&r, "stamp-2", "stamp2");
    CHECK_INT(idl_store_upsert(s, &r, 1, &res, false), IDL_OK);
    CHECK_INT(stamp_of(s), 5);
    idl_store_close(s);
    rm_rf(dir);
}

static void mark_once_semantics(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    bool was = true;
    CHECK_INT(idl_store_mark_once(s, "d:2024:p_1", 10, &was), IDL_OK);
    CHECK(!was);
    CHECK_INT(idl_store_mark_once(s, "d:2024:p_1", 10, &was), IDL_OK);
    CHECK(was);
    was = true;
    CHECK_INT(idl_store_mark_once(s, "d:2025:p_1", 10, &was), IDL_OK);
    CHECK(!was);
    /* Binary keys with NULs are distinct by their full length. */
    was = true;
    CHECK_INT(idl_store_mark_once(s, "d\0x", 3, &was), IDL_OK);
    CHECK(!was);
    was = true;
    CHECK_INT(idl_store_mark_once(s, "d\0y", 3, &was), IDL_OK);
    CHECK(!was);
    idl_store_close(s);
    s = open_store(dir);
    if (!s) return;
    was = false;
    CHECK_INT(idl_store_mark_once(s, "d:2024:p_1", 10, &was), IDL_OK);
    CHECK(was);
    was = false;
    CHECK_INT(idl_store_mark_once(s, "d\0y", 3, &was), IDL_OK);
    CHECK(was);
    /* Marks do not disturb the counters. */
    counts_are(s, 0, 0, 0);
    idl_store_close(s);
    rm_rf(dir);
}

/* All or none: a set of marks with one already set sets nothing. */
static void mark_all_once_is_all_or_none(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    bool was = true;
    CHECK_INT(idl_store_mark_all_once(s, "m:Bm:Cm:D", 3, 3, &was), IDL_OK); /* B, C, D */
    CHECK(!was);
    CHECK_INT(idl_store_mark_all_once(s, "m:Am:B", 3, 2, &was), IDL_OK); /* B is set */
    CHECK(was);
    was = true;
    CHECK_INT(idl_store_mark_once(s, "m:A", 3, &was), IDL_OK); /* so A was left alone */
    CHECK(!was);
    CHECK_INT(idl_store_mark_all_once(s, "m:E", 3, 0, &was), IDL_OK); /* none: nothing set */
    CHECK(!was);
    idl_store_close(s);
    rm_rf(dir);
}

/* probe_all returns every holder, past any bound; probe_absent finds
 * nobody even for a filed key. */
static void probe_all_has_no_cap(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    enum { HOLDERS = 3000 };
    for (int i = 0; i < HOLDERS; i += 100) {
        idl_record recs[100];
        for (int j = 0; j < 100; j++) {
            char json[256];
            snprintf(json, sizeof json,
                     "{\"source_id\": \"many-%d\", \"first_name\": \"A\", \"last_name\": "
                     "\"B%d\", \"ips\": [\"192.0.2.7\"]}",
                     i + j, i + j);
            CHECK(rec_json(&recs[j], json));
        }
        CHECK_INT(idl_store_upsert(s, recs, 100, NULL, false), IDL_OK);
    }
    idl_hkey k;
    idl_hkey_make(&k, "ip", "192.0.2.7");
    uint64_t *pids = NULL;
    size_t n = 0;
    CHECK_INT(idl_store_probe_all(s, &k, &pids, &n), IDL_OK);
    CHECK_INT(n, HOLDERS);
    bool sorted = true;
    for (size_t i = 1; i < n; i++)
        sorted &= pids[i - 1] < pids[i];
    CHECK(sorted);
    free(pids);
    CHECK_INT(idl_store_probe_absent(s, &k), IDL_OK);
    idl_hkey none;
    idl_hkey_make(&none, "ip", "192.0.2.8");
    CHECK_INT(idl_store_probe_all(s, &none, &pids, &n), IDL_OK);
    CHECK_INT(n, 0);
    free(pids);
    /* Suppressing all of them at once counts each once, duplicates aside. */
    CHECK_INT(idl_store_probe_all(s, &k, &pids, &n), IDL_OK);
    uint64_t *twice = malloc(2 * n * sizeof(*twice));
    if (twice) {
        memcpy(twice, pids, n * sizeof(*pids));
        memcpy(twice + n, pids, n * sizeof(*pids));
        uint32_t newly = 0;
        CHECK_INT(idl_store_suppress(s, twice, 2 * n, NULL, 0, &newly), IDL_OK);
        CHECK_INT(newly, HOLDERS);
        free(twice);
    }
    free(pids);
    counts_are(s, 0, HOLDERS, 0);
    idl_store_close(s);
    rm_rf(dir);
}

/* A suppressed person's identifiers join the suppressed set when they
 * arrive, in the same write, and a record carrying one stays hidden. */
static void later_identifiers_of_suppressed_person(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    idl_record r[2];
    CHECK(rec_json(&r[0], "{\"source_id\": \"sup-a\", \"first_name\": \"A\", \"last_name\": "
                          "\"B\", \"emails\": [\"a@example.com\"]}"));
    CHECK_INT(idl_store_upsert(s, r, 1, NULL, false), IDL_OK);
    uint64_t pid = idl_person_id("sup-a");
    uint32_t newly = 0;
    CHECK_INT(idl_store_suppress(s, &pid, 1, NULL, 0, &newly), IDL_OK);
    idl_hkey phone;
    idl_hkey_make(&phone, "phone", "+12125550100");
    CHECK(!idl_store_key_suppressed(s, &phone));
    /* Its name entries are gone: a name probe finds what it finds for a
     * stranger. */
    idl_hkey name;
    idl_hkey_name(&name, "b", "a");
    uint64_t got[4];
    size_t ngot = 9;
    CHECK_INT(idl_store_probe(s, &name, got, 4, &ngot, NULL), IDL_OK);
    CHECK_INT(ngot, 0);
    /* The same person comes back with a phone; another source shares it
     * (same call, so the second must see the first's write). */
    CHECK(rec_json(&r[0], "{\"source_id\": \"sup-a\", \"first_name\": \"A\", \"last_name\": "
                          "\"B\", \"phones\": [\"+1 212 555 0100\"]}"));
    CHECK(rec_json(&r[1], "{\"source_id\": \"sup-b\", \"first_name\": \"A\", \"last_name\": "
                          "\"B\", \"phones\": [\"+1 212 555 0100\"]}"));
    idl_upsert_result res[2];
    CHECK_INT(idl_store_upsert(s, r, 2, res, false), IDL_OK);
    CHECK(res[0].suppressed && res[1].suppressed);
    CHECK(idl_store_key_suppressed(s, &phone));
    idl_store_close(s);
    /* Durable, not only mirrored. */
    s = open_store(dir);
    if (!s) return;
    CHECK(idl_store_key_suppressed(s, &phone));
    CHECK(idl_store_person_suppressed(s, idl_person_id("sup-b")));
    idl_store_close(s);
    rm_rf(dir);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void probe_is_bounded(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    uint64_t want[5];
    for (int i = 0; i < 5; i++) {
        char json[256], sid[16];
        snprintf(sid, sizeof sid, "house-%d", i);
        snprintf(json, sizeof json,
                 "{\"source_id\": \"%s\", \"first_name\": \"M%d\", \"last_name\": \"Home\","
                 " \"phones\": [\"+1 503 555 0100\"]}",
                 sid, i);
        idl_record r;
        rec_json(&r, json);
        CHECK_INT(upsert1(s, &r).outcome, IDL_UP_STORED);
        want[i] = idl_person_id(sid);
    }
    qsort(want, 5, sizeof want[0], cmp_u64);
    idl_hkey k;
    idl_hkey_make(&k, "phone", "+15035550100");
    uint64_t pids[10];
    bool more = false;
    CHECK_INT(probe(s, &k, pids, 3, &more), 3);
    CHECK(more);
    CHECK(pids[0] == want[0] && pids[1] == want[1] && pids[2] == want[2]);
    more = true;
    CHECK_INT(probe(s, &k, pids, 5, &more), 5);
    CHECK(!more);
    CHECK(memcmp(pids, want, sizeof want) == 0);
    more = true;
    CHECK_INT(probe(s, &k, pids, 10, &more), 5);
    CHECK(!more);
    more = false;
    CHECK_INT(probe(s, &k, pids, 0, &more), 0);
    CHECK(more);
    /* more may be NULL. */
    size_t n = 0;
    CHECK_INT(idl_store_probe(s, &k, pids, 2, &n, NULL), IDL_OK);
    CHECK_INT(n, 2);
    /* Neighbouring hash prefixes do not bleed into each other. */
    idl_hkey near = k;
    near.b[15] ^= 1;
    CHECK_INT(probe(s, &near, pids, 10, NULL), 0);
    idl_hkey ff;
    memset(ff.b, 0xff, 16);
    CHECK_INT(probe(s, &ff, pids, 10, NULL), 0);
    idl_hkey zero;
    memset(zero.b, 0, 16);
    CHECK_INT(probe(s, &zero, pids, 10, NULL), 0);
    idl_store_close(s);
    rm_rf(dir);
}

static void many_records_one_call(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    enum { N = 300 };
    idl_record *recs = calloc(N + 2, sizeof *recs);
    idl_upsert_result *res = calloc(N + 2, sizeof *res);
    for (int i = 0; i < N; i++) {
        char sid[32], tag[32];
        snprintf(sid, sizeof sid, "bulk-%d", i);
        snprintf(tag, sizeof tag, "bulk%d", i);
        adult(&recs[i], sid, tag);
    }
    /* bulk-7 again, later in the same call, with another email: it wins. */
    adult(&recs[N], "bulk-7", "bulk7-second");
    /* ... and a child version of bulk-9 after that: purged in the same call. */
    recs[N + 1] = recs[9];
    recs[N + 1].minor = true;
    CHECK_INT(idl_store_upsert(s, recs, N + 2, res, false), IDL_OK);
    int stored = 0;
    for (int i = 0; i < N; i++)
        stored += res[i].outcome == IDL_UP_STORED;
    CHECK_INT(stored, N);
    CHECK_INT(res[N].outcome, IDL_UP_UPDATED);
    CHECK_INT(res[N + 1].outcome, IDL_UP_CHILD);
    CHECK(res[N + 1].purged);
    idl_record got;
    CHECK_INT(idl_store_get(s, idl_person_id("bulk-7"), &got), IDL_OK);
    CHECK_STR(got.emails[0], "bulk7-second@example.com");
    idl_hkey k = email_key("bulk7@example.com");
    CHECK(!probe_finds(s, &k, idl_person_id("bulk-7")));
    k = email_key("bulk7-second@example.com");
    CHECK(probe_finds(s, &k, idl_person_id("bulk-7")));
    CHECK_INT(idl_store_get(s, idl_person_id("bulk-9"), &got), IDL_NOT_FOUND);
    s = reopen(s, dir);
    if (!s) return;
    CHECK_INT(idx_entries_for(s, idl_person_id("bulk-9")), 0);
    counts_are(s, N - 1, 0, 1);
    CHECK_INT(count_cf(s, IDL_CF_PERSONS), N - 1);
    /* Every stored person is found by every one of its keys. */
    int missing = 0;
    for (int i = 0; i < N; i++) {
        uint64_t pid = idl_person_id(recs[i].source_id);
        if (i == 9 || idl_store_get(s, pid, &got) != IDL_OK) continue;
        idl_hkey keys[IDL_RECORD_KEYS_MAX];
        size_t nk = idl_record_keys(&got, keys, IDL_RECORD_KEYS_MAX, true);
        for (size_t j = 0; j < nk; j++)
            missing += !probe_finds(s, &keys[j], pid);
    }
    CHECK_INT(missing, 0);
    /* Zero records is fine. */
    CHECK_INT(idl_store_upsert(s, recs, 0, res, false), IDL_OK);
    /* res may be NULL; sync may be true. */
    CHECK_INT(idl_store_upsert(s, recs, 2, NULL, true), IDL_OK);
    counts_are(s, N - 1, 0, 1);
    free(recs);
    free(res);
    idl_store_close(s);
    rm_rf(dir);
}

static void person_ids(void)
{
    const char *sid = "crm-000123";
    uint64_t pid = idl_person_id(sid);
    CHECK(pid == XXH3_64bits(sid, strlen(sid)));
    CHECK(pid == XXH3_64bits_withSeed(sid, strlen(sid), 0));
    char out[19];
    idl_person_id_format(pid, out);
    char want[32];
    snprintf(want, sizeof want, "p_%016llx", (unsigned long long)XXH3_64bits(sid, strlen(sid)));
    CHECK_STR(out, want);
    CHECK_INT(strlen(out), 18);
    uint64_t back = 0;
    CHECK_INT(idl_person_id_parse(out, 18, &back), IDL_OK);
    CHECK(back == pid);
    idl_person_id_format(0, out);
    CHECK_STR(out, "p_0000000000000000");
    idl_person_id_format(UINT64_MAX, out);
    CHECK_STR(out, "p_ffffffffffffffff");
    CHECK_INT(idl_person_id_parse(out, 18, &back), IDL_OK);
    CHECK(back == UINT64_MAX);
    idl_person_id_format(0x0123456789abcdefull, out);
    CHECK_STR(out, "p_0123456789abcdef");
    /* Different source ids, different persons. */
    CHECK(idl_person_id("crm-000123") != idl_person_id("crm-000124"));
    CHECK(idl_person_id("") == XXH3_64bits("", 0));

    static const char *const bad[] = {
        "",
        "p_",
        "p_0123456789abcde",   /* 15 hex */
        "p_0123456789abcdef0", /* 17 hex */
        "P_0123456789abcdef",
        "p-0123456789abcdef",
        "q_0123456789abcdef",
        "p_0123456789ABCDEF", /* upper case is not the canonical form */
        "p_0123456789abcdeg",
        "p_ 123456789abcdef",
        "p_-123456789abcdef",
        "0123456789abcdef",
        "p__123456789abcdef",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        back = 42;
        CHECK_INT(idl_person_id_parse(bad[i], strlen(bad[i]), &back), IDL_INVALID_ARGUMENT);
        CHECK(back == 42);
    }
    /* The length argument counts, not a NUL. */
    CHECK_INT(idl_person_id_parse("p_0123456789abcdefXYZ", 18, &back), IDL_OK);
    CHECK(back == 0x0123456789abcdefull);
    CHECK_INT(idl_person_id_parse("p_0123456789abcdef", 17, &back), IDL_INVALID_ARGUMENT);
}

static void hkeys(void)
{
    /* Kind and value are separated: "email" + ":a@b.c" != "emai" + "l:a@b.c". */
    idl_hkey a, b, c;
    idl_hkey_make(&a, "email", "a@b.c");
    idl_hkey_make(&b, "phone", "a@b.c");
    CHECK(memcmp(a.b, b.b, 16) != 0);
    idl_hkey_make(&c, "email", "a@b.c");
    CHECK(memcmp(a.b, c.b, 16) == 0);
    /* XXH3-128 of "email:a@b.c", canonical (big-endian) bytes. */
    XXH128_hash_t h = XXH3_128bits("email:a@b.c", 11);
    XXH128_canonical_t canon;
    XXH128_canonicalFromHash(&canon, h);
    CHECK(memcmp(a.b, canon.digest, 16) == 0);
    idl_hkey_addr(&a, "1 MAIN ST", "62701");
    h = XXH3_128bits("addr:1 MAIN ST|62701", 20);
    XXH128_canonicalFromHash(&canon, h);
    CHECK(memcmp(a.b, canon.digest, 16) == 0);
    /* Parts cannot slide into each other. */
    idl_hkey_addrcs(&a, "1 MAIN ST", "SPRINGFIELD", "IL");
    idl_hkey_addrcs(&b, "1 MAIN ST SPRINGFIELD", "", "IL");
    CHECK(memcmp(a.b, b.b, 16) != 0);
    /* Nickname groups: Robert's name keys include bob's group. */
    idl_record r;
    rec_json(&r, "{\"source_id\": \"n\", \"first_name\": \"Bob\", \"last_name\": \"Smith\"}");
    idl_hkey keys[IDL_RECORD_KEYS_MAX];
    size_t n = idl_record_keys(&r, keys, IDL_RECORD_KEYS_MAX, true);
    CHECK(n >= 2);
    idl_hkey_name(&a, "smith", "robert");
    bool found = false;
    for (size_t i = 0; i < n; i++)
        found |= memcmp(keys[i].b, a.b, 16) == 0;
    CHECK(found);
    CHECK_INT(idl_record_keys(&r, keys, IDL_RECORD_KEYS_MAX, false), 0);
    CHECK_INT(idl_record_keys(&r, keys, 1, true), 1); /* bounded by max */
}

static void batches_and_iterators(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    idl_store_batch *b = idl_store_batch_new(s);
    for (int i = 0; i < 10; i++) {
        uint8_t k[16];
        idl_be64_put(k, (uint64_t)i * 1000);
        idl_be64_put(k + 8, (uint64_t)i);
        char v[8];
        snprintf(v, sizeof v, "v%d", i);
        idl_store_batch_put(b, IDL_CF_LOG, k, 16, v, strlen(v));
    }
    /* Nothing visible before the commit. */
    CHECK_INT(count_cf(s, IDL_CF_LOG), 0);
    CHECK_INT(idl_store_batch_commit(s, b, true), IDL_OK);
    CHECK_INT(count_cf(s, IDL_CF_LOG), 10);
    /* A committed batch is empty and reusable. */
    CHECK_INT(idl_store_batch_commit(s, b, false), IDL_OK);
    CHECK_INT(count_cf(s, IDL_CF_LOG), 10);

    /* [lo, hi) */
    uint8_t lo[16] = {0}, hi[16] = {0};
    idl_be64_put(lo, 3000);
    idl_be64_put(hi, 6000);
    idl_store_iter *it = NULL;
    CHECK_INT(idl_store_iter_open(s, IDL_CF_LOG, lo, 16, hi, 16, &it), IDL_OK);
    int n = 0;
    uint64_t first = 0, last = 0;
    for (; idl_store_iter_valid(it); idl_store_iter_next(it)) {
        size_t kl, vl;
        const char *k = idl_store_iter_key(it, &kl);
        const char *v = idl_store_iter_value(it, &vl);
        CHECK_INT(kl, 16);
        uint64_t t = idl_be64_get((const uint8_t *)k);
        if (!n) first = t;
        last = t;
        char want[8];
        snprintf(want, sizeof want, "v%d", (int)(t / 1000));
        CHECK(vl == strlen(want) && memcmp(v, want, vl) == 0);
        n++;
    }
    idl_store_iter_close(it);
    CHECK_INT(n, 3);
    CHECK_INT(first, 3000);
    CHECK_INT(last, 5000);
    idl_store_iter_close(NULL);

    /* Point reads, deletes, delete_range, other column families. */
    char *val = NULL;
    size_t vl = 0;
    uint8_t k5[16];
    idl_be64_put(k5, 5000);
    idl_be64_put(k5 + 8, 5);
    CHECK_INT(idl_store_raw_get(s, IDL_CF_LOG, k5, 16, &val, &vl), IDL_OK);
    CHECK(vl == 2 && memcmp(val, "v5", 2) == 0);
    free(val);
    val = NULL;
    CHECK_INT(idl_store_raw_get(s, IDL_CF_LOGP, k5, 16, &val, &vl), IDL_NOT_FOUND);
    CHECK(val == NULL);
    idl_store_batch_delete(b, IDL_CF_LOG, k5, 16);
    idl_store_batch_delete_range(b, IDL_CF_LOG, lo, 16, lo, 16); /* empty range: no-op */
    CHECK_INT(idl_store_batch_commit(s, b, false), IDL_OK);
    CHECK_INT(count_cf(s, IDL_CF_LOG), 9);
    uint8_t zero[16] = {0};
    idl_store_batch_delete_range(b, IDL_CF_LOG, zero, 16, hi, 16);
    CHECK_INT(idl_store_batch_commit(s, b, false), IDL_OK);
    CHECK_INT(count_cf(s, IDL_CF_LOG), 4); /* 6000..9000 */
    idl_store_batch_free(b);
    idl_store_batch_free(NULL);

    /* An unreadable person record is DATA_LOSS, not a crash. */
    uint8_t pk[8];
    idl_be64_put(pk, idl_person_id("corrupt"));
    b = idl_store_batch_new(s);
    idl_store_batch_put(b, IDL_CF_PERSONS, pk, 8, "\x9f\x01garbage", 9);
    CHECK_INT(idl_store_batch_commit(s, b, false), IDL_OK);
    idl_store_batch_free(b);
    idl_record r;
    CHECK_INT(idl_store_get(s, idl_person_id("corrupt"), &r), IDL_DATA_LOSS);
    idl_store_close(s);

    /* be64 helpers. */
    uint8_t buf[8];
    idl_be64_put(buf, 0x0102030405060708ull);
    CHECK(memcmp(buf, "\x01\x02\x03\x04\x05\x06\x07\x08", 8) == 0);
    CHECK(idl_be64_get(buf) == 0x0102030405060708ull);
    rm_rf(dir);
}

/* store.h: "Forward iteration over [lo, hi) in one column family".  A scan
 * right after a write sees it in every family, flushed to disk or not. */
static void iterators_see_unflushed_writes(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    idl_record r;
    adult(&r, "scan-me", "scanme");
    CHECK_INT(upsert1(s, &r).outcome, IDL_UP_STORED);
    uint64_t pid = idl_person_id("scan-me");
    idl_hkey keys[IDL_RECORD_KEYS_MAX];
    /* Suppressed below: its identifier entries stay, its name entries go. */
    size_t nk = idl_record_keys(&r, keys, IDL_RECORD_KEYS_MAX, false);
    uint32_t newly;
    CHECK_INT(idl_store_suppress(s, &pid, 1, NULL, 0, &newly), IDL_OK);
    CHECK_INT(count_cf(s, IDL_CF_PERSONS), 1);
    CHECK_INT(idx_entries_for(s, pid), nk);
    CHECK(count_cf(s, IDL_CF_SUPP) > 1);
    CHECK(count_cf(s, IDL_CF_META) >= 3);
    /* A bounded scan from the person's own key. */
    uint8_t lo[8], hi[8];
    idl_be64_put(lo, pid);
    idl_be64_put(hi, pid + 1);
    idl_store_iter *it = NULL;
    CHECK_INT(idl_store_iter_open(s, IDL_CF_PERSONS, lo, 8, pid == UINT64_MAX ? NULL : hi, 8, &it),
              IDL_OK);
    int n = 0;
    for (; it && idl_store_iter_valid(it); idl_store_iter_next(it))
        n++;
    idl_store_iter_close(it);
    CHECK_INT(n, 1);
    /* After a reopen (the WAL replayed and flushed) the same holds. */
    s = reopen(s, dir);
    if (!s) return;
    CHECK_INT(count_cf(s, IDL_CF_PERSONS), 1);
    CHECK_INT(idx_entries_for(s, pid), nk);
    idl_store_close(s);
    rm_rf(dir);
}

/* A secondary instance (the analytics job) that caught up with the primary
 * answers the suppression questions as the primary does. */
static void secondary_catches_up_with_suppression(void)
{
    char dir[64], scratch[96];
    make_tmpdir(dir);
    snprintf(scratch, sizeof scratch, "%s/secondary", dir);
    char db[96];
    snprintf(db, sizeof db, "%s/db", dir);
    idl_store *s = open_store(db);
    if (!s) return;
    idl_record r;
    adult(&r, "sec", "secondary");
    CHECK_INT(upsert1(s, &r).outcome, IDL_UP_STORED);
    CHECK_INT(idl_store_mark_once(s, "flush-me", 8, &(bool){false}), IDL_OK);
    idl_store *sec = NULL;
    char err[IDL_ERR_MAX] = "";
    idl_store_opts o = {.secondary = scratch};
    CHECK_INT(idl_store_open(&sec, db, &o, err), IDL_OK);
    if (!sec) {
        fprintf(stderr, "  secondary: %s\n", err);
        idl_store_close(s);
        rm_rf(dir);
        return;
    }
    uint64_t pid = idl_person_id("sec");
    idl_record got;
    CHECK_INT(idl_store_get(sec, pid, &got), IDL_OK);
    CHECK(!idl_store_person_suppressed(sec, pid));
    uint32_t newly;
    CHECK_INT(idl_store_suppress(s, &pid, 1, NULL, 0, &newly), IDL_OK);
    CHECK_INT(idl_store_catch_up(sec), IDL_OK);
    CHECK(idl_store_person_suppressed(sec, pid));
    idl_hkey k = email_key("secondary@example.com");
    CHECK(idl_store_key_suppressed(sec, &k));
    idl_store_close(sec);
    idl_store_close(s);
    rm_rf(dir);
}

/* store.h: "a batch ... commits atomically or not at all".  A reversed range
 * (lo > hi) is a caller's mistake, but it must not half-apply the batch or
 * leave the store unable to take any later write. */
static void reversed_delete_range_is_harmless(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = open_store(dir);
    if (!s) return;
    idl_store_batch *b = idl_store_batch_new(s);
    idl_store_batch_put(b, IDL_CF_LOG, "aaaa", 4, "1", 1);
    idl_store_batch_delete_range(b, IDL_CF_LOG, "zzzz", 4, "bbbb", 4);
    idl_store_batch_put(b, IDL_CF_LOG, "cccc", 4, "1", 1);
    int rc = idl_store_batch_commit(s, b, false);
    idl_store_batch_free(b);
    char *v = NULL;
    size_t vl = 0;
    int a = idl_store_raw_get(s, IDL_CF_LOG, "aaaa", 4, &v, &vl);
    free(a == IDL_OK ? v : NULL);
    v = NULL;
    int c = idl_store_raw_get(s, IDL_CF_LOG, "cccc", 4, &v, &vl);
    free(c == IDL_OK ? v : NULL);
    /* All or nothing. */
    CHECK(a == c);
    CHECK(rc == IDL_OK ? a == IDL_OK : a == IDL_NOT_FOUND);
    /* And the store still takes writes. */
    idl_record r;
    adult(&r, "after", "after");
    idl_upsert_result res;
    CHECK_INT(idl_store_upsert(s, &r, 1, &res, false), IDL_OK);
    bool was;
    CHECK_INT(idl_store_mark_once(s, "m", 1, &was), IDL_OK);
    idl_store_close(s);
    rm_rf(dir);
}

/* ---- crash consistency ---- */

enum { CRASH_IDS = 250 };

/* The child: upserts forever (batches of 1..4, repeats, children, opt-outs),
 * writing one byte to progress_fd every 100 calls, until SIGKILLed. */
static int crash_writer(const char *dir, int progress_fd)
{
    idl_store *s = NULL;
    char err[IDL_ERR_MAX];
    if (idl_store_open(&s, dir, NULL, err) != IDL_OK) {
        fprintf(stderr, "writer: %s\n", err);
        return 2;
    }
    char kid_dob[16];
    dob_years_ago(kid_dob, 4);
    srand((unsigned)getpid());
    for (unsigned long i = 0;; i++) {
        idl_record recs[4];
        int n = 1 + (int)(i % 4);
        for (int j = 0; j < n; j++) {
            unsigned long id = (unsigned long)rand() % CRASH_IDS, ver = i + (unsigned long)j;
            char json[1024];
            snprintf(json, sizeof json,
                     "{\"source_id\": \"crash-%lu\", \"first_name\": \"F%lu\","
                     " \"last_name\": \"L%lu\", \"dob\": \"%s\","
                     " \"emails\": [\"c%lu-v%lu@example.com\", \"c%lu@example.com\"],"
                     " \"phones\": [\"+1 212 555 %04lu\"],"
                     " \"addresses\": [{\"street\": \"%lu Main St\", \"zip\": \"%05lu\"}],"
                     " \"ips\": [\"10.%lu.%lu.%lu\"]}",
                     id, ver % 7, id, ver % 101 == 0 ? kid_dob : "1970-01-01", id, ver, id,
                     ver % 10000, ver % 5000 + 1, 10000 + id, id % 256, ver % 256,
                     (ver / 256) % 256);
            if (!rec_json(&recs[j], json)) return 3;
        }
        if (idl_store_upsert(s, recs, (size_t)n, NULL, false) != IDL_OK) return 4;
        if (i % 37 == 0) {
            uint64_t pid = idl_person_id(recs[0].source_id);
            uint32_t newly;
            if (idl_store_suppress(s, &pid, 1, NULL, 0, &newly) != IDL_OK) return 5;
        }
        if (i % 100 == 99 && write(progress_fd, "x", 1) != 1) return 6;
    }
}

/* The store's own consistency scan (idl_store_check) of the store in dir. */
static idl_store_check_report scan_store(const char *dir)
{
    idl_store_check_report r;
    memset(&r, 0, sizeof r);
    idl_store *s = open_store(dir);
    if (!s) return r;
    CHECK_INT(idl_store_check(s, &r), IDL_OK);
    idl_store_close(s);
    return r;
}

/* Reads the nice value of every thread of this process named name. */
static int thread_nices(const char *name, int *nices, int cap)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        if (e->d_name[0] == '.') continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        /* "tid (comm) state ..." with nice the 17th field after the comm. */
        char *open = strchr(buf, '('), *close = strrchr(buf, ')');
        if (!open || !close || (size_t)(close - open - 1) != strlen(name) ||
            strncmp(open + 1, name, strlen(name)) != 0)
            continue;
        char *p = close + 1;
        for (int i = 0; i < 16 && p; i++)
            p = strchr(p + 1, ' ');
        if (p) nices[n++] = atoi(p + 1);
    }
    closedir(d);
    return n;
}

/* The daemon opens its store with yield_compactions: compactions run at the
 * lowest CPU priority, so requests get a shared core first.  (This lowers the
 * pool of RocksDB's process-wide default env, so it runs last.) */
static void compactions_yield(void)
{
    char dir[64];
    make_tmpdir(dir);
    idl_store *s = NULL;
    char err[IDL_ERR_MAX] = "";
    idl_store_opts o = {.yield_compactions = true};
    CHECK_INT(idl_store_open(&s, dir, &o, err), IDL_OK);
    if (!s) return;
    for (int i = 0; i < 50; i++) {
        idl_record r;
        char sid[32];
        snprintf(sid, sizeof sid, "y%d", i);
        adult(&r, sid, sid);
        idl_upsert_result res;
        CHECK_INT(idl_store_upsert(s, &r, 1, &res, false), IDL_OK);
    }
    /* A manual compaction runs on the compaction pool, whose threads apply
     * the pool's priority when they take a job. */
    CHECK_INT(idl_store_compact(s), IDL_OK);
    int nices[16];
    int n = thread_nices("rocksdb:low", nices, 16);
    CHECK(n > 0);
    for (int i = 0; i < n; i++)
        CHECK_INT(nices[i], 19);
    /* Flushes keep the daemon's priority, so memtables drain under load. */
    int hn = thread_nices("rocksdb:high", nices, 16);
    for (int i = 0; i < hn; i++)
        CHECK_INT(nices[i], 0);
    idl_store_close(s);
    rm_rf(dir);
}

static void check_consistent(const char *dir)
{
    idl_store_check_report sc = scan_store(dir);
    CHECK(sc.persons > 0);
    CHECK(sc.entries > 0);
    CHECK_INT(sc.unreadable, 0);
    CHECK_INT(sc.bad_id, 0);
    CHECK_INT(sc.missing, 0);
    CHECK_INT(sc.dangling, 0);
    CHECK_INT(sc.foreign, 0);
    CHECK_INT(sc.unsorted, 0);
    CHECK_INT(sc.counts.persons + sc.counts.suppressed, sc.persons);
    CHECK_INT(sc.counts.suppressed, sc.suppressed);
    CHECK(idl_store_check_ok(&sc));
    CHECK(sc.counts.children_purged > 0);
    printf("     after SIGKILL: %llu persons (%llu suppressed), %llu index entries, %llu purged\n",
           (unsigned long long)sc.persons, (unsigned long long)sc.suppressed,
           (unsigned long long)sc.entries, (unsigned long long)sc.counts.children_purged);
}

/* The scan itself catches damage: one index entry removed, one orphan and
 * one stale entry added (idx values rewritten behind the merge operator). */
static void scan_detects_damage(const char *dir)
{
    idl_store *s = open_store(dir);
    if (!s) return;
    idl_store_iter *it = NULL;
    CHECK_INT(idl_store_iter_open(s, IDL_CF_IDX, NULL, 0, NULL, 0, &it), IDL_OK);
    /* A key with one pid: dropping it leaves that person's key missing. */
    uint8_t victim_key[16], victim_pid[8];
    bool found = false;
    for (; idl_store_iter_valid(it) && !found; idl_store_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const char *k = idl_store_iter_key(it, &kl);
        const char *v = idl_store_iter_value(it, &vl);
        if (kl == 16 && vl == 8) {
            memcpy(victim_key, k, 16);
            memcpy(victim_pid, v, 8);
            found = true;
        }
    }
    idl_store_iter_close(it);
    CHECK(found);
    idl_hkey k = email_key("nobody-holds-this@example.com");
    uint8_t list[16];
    uint64_t orphan = idl_person_id("no-such-person"), stale = idl_be64_get(victim_pid);
    idl_be64_put(list, orphan < stale ? orphan : stale);
    idl_be64_put(list + 8, orphan < stale ? stale : orphan);
    idl_store_batch *b = idl_store_batch_new(s);
    idl_store_batch_put(b, IDL_CF_IDX, victim_key, 16, "", 0);
    idl_store_batch_put(b, IDL_CF_IDX, k.b, 16, list, 16);
    CHECK_INT(idl_store_batch_commit(s, b, false), IDL_OK);
    idl_store_batch_free(b);
    idl_store_close(s);
    idl_store_check_report sc = scan_store(dir);
    CHECK_INT(sc.missing, 1);
    CHECK_INT(sc.dangling, 1);
    CHECK_INT(sc.foreign, 1);
    CHECK(!idl_store_check_ok(&sc));
}

static void crash_consistency(void)
{
    char dir[64];
    make_tmpdir(dir);
    for (int round = 0; round < 3; round++) {
        int fds[2];
        CHECK(pipe(fds) == 0);
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid < 0) break;
        if (pid == 0) {
            close(fds[0]);
            char fdtext[16];
            snprintf(fdtext, sizeof fdtext, "%d", fds[1]);
            execl(self_exe, self_exe, "--crash-writer", dir, fdtext, (char *)NULL);
            _exit(127);
        }
        close(fds[1]);
        /* Wait for 2000 + 1000*round upserts, then kill at a random moment. */
        int want = 20 + 10 * round, got = 0;
        char c;
        while (got < want && read(fds[0], &c, 1) == 1)
            got++;
        CHECK_INT(got, want);
        struct timespec ts = {0, (long)(rand() % 20000) * 1000};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int st = 0;
        waitpid(pid, &st, 0);
        close(fds[0]);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        if (!WIFSIGNALED(st)) fprintf(stderr, "  writer exited with %d\n", WEXITSTATUS(st));
        check_consistent(dir);
    }
    scan_detects_damage(dir);
    rm_rf(dir);
}

int main(int argc, char **argv)
{
    self_exe = "/proc/self/exe";
    if (argc == 4 && strcmp(argv[1], "--crash-writer") == 0)
        return crash_writer(argv[2], atoi(argv[3]));
    /* The crash test runs first: the forked child execs at once, but the
     * parent should not carry RocksDB threads into the fork either. */
    srand((unsigned)time(NULL));
    RUN(crash_consistency);
    RUN(open_close_reopen);
    RUN(second_open_is_unavailable);
    RUN(upsert_then_update_moves_index);
    RUN(index_lists_merge);
    RUN(other_layout_is_refused);
    RUN(layout_2_is_renormalized);
    RUN(children_are_not_stored);
    RUN(update_to_child_purges);
    RUN(counters_persist);
    RUN(suppress_by_person);
    RUN(suppress_by_keys_then_new_record);
    RUN(purge_child_only_children);
    RUN(mark_once_semantics);
    RUN(stamped_writes_land_their_stamp);
    RUN(mark_all_once_is_all_or_none);
    RUN(probe_all_has_no_cap);
    RUN(later_identifiers_of_suppressed_person);
    RUN(probe_is_bounded);
    RUN(many_records_one_call);
    RUN(person_ids);
    RUN(hkeys);
    RUN(batches_and_iterators);
    RUN(reversed_delete_range_is_harmless);
    RUN(iterators_see_unflushed_writes);
    RUN(secondary_catches_up_with_suppression);
    RUN(compactions_yield);
    return test_summary();
}
