/* The query log over a store in a mkdtemp directory: the fingerprint secret
 * file (created 0600, reread, another secret gives other fingerprints);
 * request ids; entries appended from four threads, flushed and decoded back
 * field by field; per-person disclosure records for Search; close flushes;
 * retention; decode of garbage; and no identifier in clear anywhere in the
 * log's column families. */
#include "qlog.h"
#include "status.h"
#include "store.h"
#include "testmp.h"
#include "testutil.h"

#include <ftw.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The method whose returned persons the log records for Disclosures. */
#define SEARCH_METHOD "idlookup.v1.Lookup/Search"

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

typedef struct {
    char dir[64];
    char db[96];
    char secret[96];
    idl_store *s;
    idl_qlog *q;
} env;

static bool env_open_store(env *e)
{
    char err[IDL_ERR_MAX] = "";
    int rc = idl_store_open(&e->s, e->db, NULL, err);
    CHECK_INT(rc, IDL_OK);
    if (rc) fprintf(stderr, "  store: %s\n", err);
    return rc == IDL_OK;
}

static bool env_open_log(env *e, unsigned retention_days)
{
    char err[IDL_ERR_MAX] = "";
    int rc = idl_qlog_open(&e->q, e->s, e->secret, 50, retention_days, err);
    CHECK_INT(rc, IDL_OK);
    if (rc) fprintf(stderr, "  qlog: %s\n", err);
    return rc == IDL_OK;
}

static bool env_init(env *e)
{
    memset(e, 0, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/idl-test-qlog-XXXXXX");
    CHECK(mkdtemp(e->dir) != NULL);
    snprintf(e->db, sizeof e->db, "%s/db", e->dir);
    snprintf(e->secret, sizeof e->secret, "%s/fingerprint.key", e->dir);
    return env_open_store(e) && env_open_log(e, 0);
}

static void env_close(env *e)
{
    idl_qlog_close(e->q);
    e->q = NULL;
    idl_store_close(e->s);
    e->s = NULL;
}

static void env_free(env *e)
{
    env_close(e);
    rm_rf(e->dir);
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* A deterministic entry for (t, seq). */
static void make_entry(idl_qlog_entry *e, uint64_t t, uint64_t seq, int variant)
{
    memset(e, 0, sizeof *e);
    e->time_us = t;
    e->seq = seq;
    static const char *const methods[] = {"idlookup.v1.Lookup/Search", "idlookup.v1.Lookup/Verify",
                                          "idlookup.v1.Lookup/Batch", "idlookup.v1.Admin/Stats",
                                          ""};
    /* variant % 5 == 4: a request refused before its key was checked */
    if (variant % 5 != 4) {
        snprintf(e->customer, sizeof e->customer, "cust-%d", variant % 3);
        snprintf(e->key_id, sizeof e->key_id, "k_%d", variant % 7);
    }
    snprintf(e->method, sizeof e->method, "%s", methods[variant % 5]);
    e->code = variant % 4 == 3 ? 8 : 0;
    e->latency_us = (uint32_t)(variant * 37 + 1);
    e->n_persons = (uint32_t)(variant % 6);
    e->n_pids = e->n_persons;
    for (uint32_t i = 0; i < e->n_pids; i++)
        e->pids[i] = 0x1000000000000000ull + (uint64_t)variant * 100 + i;
    e->n_fps = (uint32_t)(variant % 4);
    for (uint32_t i = 0; i < e->n_fps; i++)
        e->fps[i] = ~((uint64_t)variant << 8 | i);
}

static bool entries_equal(const idl_qlog_entry *a, const idl_qlog_entry *b)
{
    bool eq = a->time_us == b->time_us && a->seq == b->seq &&
              strcmp(a->customer, b->customer) == 0 && strcmp(a->key_id, b->key_id) == 0 &&
              strcmp(a->method, b->method) == 0 && a->code == b->code &&
              a->latency_us == b->latency_us && a->n_persons == b->n_persons &&
              a->n_pids == b->n_pids && a->n_fps == b->n_fps;
    for (uint32_t i = 0; eq && i < a->n_pids; i++)
        eq = a->pids[i] == b->pids[i];
    for (uint32_t i = 0; eq && i < a->n_fps; i++)
        eq = a->fps[i] == b->fps[i];
    return eq;
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

/* ---- cases ---- */

static bool is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

static void secret_file(void)
{
    env e;
    if (!env_init(&e)) {
        env_free(&e);
        return;
    }
    struct stat st;
    CHECK(stat(e.secret, &st) == 0);
    CHECK_INT(st.st_mode & 0777, 0600);
    CHECK_INT(st.st_size, 33);
    char text[64] = "";
    FILE *f = fopen(e.secret, "r");
    if (f) {
        CHECK(fgets(text, sizeof text, f) != NULL);
        fclose(f);
    }
    CHECK_INT(strlen(text), 33);
    CHECK(is_hex(text, 32) && text[32] == '\n');

    uint64_t fp1 = idl_qlog_fingerprint(e.q, "email", "jane@example.com");
    CHECK(fp1 == idl_qlog_fingerprint(e.q, "email", "jane@example.com"));
    CHECK(fp1 != idl_qlog_fingerprint(e.q, "email", "jane@example.org"));
    CHECK(fp1 != idl_qlog_fingerprint(e.q, "phone", "jane@example.com"));
    idl_qlog_close(e.q);

    /* Reopened: the same secret, the same fingerprints; the file is kept. */
    CHECK(env_open_log(&e, 0));
    CHECK(fp1 == idl_qlog_fingerprint(e.q, "email", "jane@example.com"));
    char again[64] = "";
    f = fopen(e.secret, "r");
    if (f) {
        CHECK(fgets(again, sizeof again, f) != NULL);
        fclose(f);
    }
    CHECK_STR(again, text);
    idl_qlog_close(e.q);
    e.q = NULL;

    /* Another secret, other fingerprints. */
    write_text(e.secret, "00112233445566778899aabbccddeeff\n");
    CHECK(env_open_log(&e, 0));
    uint64_t fp2 = idl_qlog_fingerprint(e.q, "email", "jane@example.com");
    CHECK(fp2 != fp1);
    idl_qlog_close(e.q);
    e.q = NULL;
    /* Upper-case hex and no newline: the same key. */
    write_text(e.secret, "00112233445566778899AABBCCDDEEFF");
    CHECK(env_open_log(&e, 0));
    CHECK(fp2 == idl_qlog_fingerprint(e.q, "email", "jane@example.com"));
    idl_qlog_close(e.q);
    e.q = NULL;

    /* A file that is not a key: refused, naming the file. */
    static const char *const bad[] = {"", "xyz\n", "00112233445566778899aabbccddee\n",
                                      "zz112233445566778899aabbccddeeff\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(e.secret, bad[i]);
        idl_qlog *q = (idl_qlog *)&e;
        char err[IDL_ERR_MAX] = "";
        int rc = idl_qlog_open(&q, e.s, e.secret, 50, 0, err);
        CHECK_INT(rc, IDL_INVALID_ARGUMENT);
        CHECK(q == (idl_qlog *)&e);
        CHECK(strstr(err, e.secret) != NULL);
    }
    /* A directory that does not exist. */
    idl_qlog *q = NULL;
    char err[IDL_ERR_MAX] = "", path[160];
    snprintf(path, sizeof path, "%s/missing/dir/key", e.dir);
    CHECK(idl_qlog_open(&q, e.s, path, 50, 0, err) != IDL_OK);
    CHECK(q == NULL && err[0] != 0);
    idl_qlog_close(NULL);
    env_free(&e);
}

typedef struct {
    idl_qlog *q;
    uint64_t t[1000], seq[1000];
} ids_arg;

static void *ids_thread(void *p)
{
    ids_arg *a = p;
    for (int i = 0; i < 1000; i++)
        idl_qlog_next_id(a->q, &a->t[i], &a->seq[i]);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void ids_and_request_ids(void)
{
    env e;
    if (!env_init(&e)) {
        env_free(&e);
        return;
    }
    uint64_t pt = 0, ps = 0;
    int not_increasing = 0;
    uint64_t before = now_us();
    for (int i = 0; i < 1000; i++) {
        uint64_t t, s;
        idl_qlog_next_id(e.q, &t, &s);
        if (i && !(t > pt || (t == pt && s > ps))) not_increasing++;
        if (i && s <= ps) not_increasing++;
        pt = t, ps = s;
    }
    CHECK_INT(not_increasing, 0);
    CHECK(pt >= before && pt <= now_us());

    /* From four threads: every seq distinct. */
    ids_arg *args = calloc(4, sizeof *args);
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        args[i].q = e.q;
        pthread_create(&th[i], NULL, ids_thread, &args[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    uint64_t *all = malloc(4000 * sizeof *all);
    for (int i = 0; i < 4; i++)
        memcpy(all + i * 1000, args[i].seq, 1000 * sizeof *all);
    qsort(all, 4000, sizeof *all, cmp_u64);
    int dups = 0;
    for (int i = 1; i < 4000; i++)
        dups += all[i] == all[i - 1];
    CHECK_INT(dups, 0);
    free(all);
    free(args);

    char rid[32];
    idl_qlog_request_id(0x0123456789abcdefull, 0x42, rid);
    CHECK_STR(rid, "0123456789abcdef-00000042");
    idl_qlog_request_id(0, 0, rid);
    CHECK_STR(rid, "0000000000000000-00000000");
    idl_qlog_request_id(UINT64_MAX, 0xffffffffull, rid);
    CHECK_STR(rid, "ffffffffffffffff-ffffffff");
    idl_qlog_next_id(e.q, &pt, &ps);
    idl_qlog_request_id(pt, ps, rid);
    CHECK_INT(strlen(rid), 25);
    CHECK(is_hex(rid, 16) && rid[16] == '-' && is_hex(rid + 17, 8));
    env_free(&e);
}

enum { PER_THREAD = 600, THREADS = 4, TOTAL = PER_THREAD * THREADS };

typedef struct {
    idl_qlog *q;
    idl_qlog_entry *expect; /* TOTAL slots, indexed by variant */
    int first;
} append_arg;

static void *append_thread(void *p)
{
    append_arg *a = p;
    idl_qlog_entry *e = malloc(sizeof *e);
    for (int i = 0; i < PER_THREAD; i++) {
        int v = a->first + i;
        uint64_t t, seq;
        idl_qlog_next_id(a->q, &t, &seq);
        make_entry(e, t, seq, v);
        a->expect[v] = *e;
        idl_qlog_append(a->q, e);
    }
    free(e);
    return NULL;
}

static void append_flush_decode(void)
{
    env e;
    if (!env_init(&e)) {
        env_free(&e);
        return;
    }
    CHECK_INT(idl_qlog_count(e.q), 0);
    idl_qlog_entry *expect = calloc(TOTAL, sizeof *expect);
    append_arg args[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (append_arg){e.q, expect, i * PER_THREAD};
        pthread_create(&th[i], NULL, append_thread, &args[i]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK_INT(idl_qlog_count(e.q), TOTAL);
    CHECK_INT(idl_qlog_flush(e.q), IDL_OK);
    CHECK_INT(idl_qlog_count(e.q), TOTAL);

    /* Every entry decodes back exactly; find each one by its seq. */
    uint64_t max_seq = 0;
    for (int i = 0; i < TOTAL; i++)
        max_seq = expect[i].seq > max_seq ? expect[i].seq : max_seq;
    int *by_seq = malloc((max_seq + 1) * sizeof *by_seq);
    for (uint64_t i = 0; i <= max_seq; i++)
        by_seq[i] = -1;
    for (int i = 0; i < TOTAL; i++)
        by_seq[expect[i].seq] = i;
    bool *seen = calloc(TOTAL, sizeof *seen);
    idl_store_iter *it = NULL;
    CHECK_INT(idl_store_iter_open(e.s, IDL_CF_LOG, NULL, 0, NULL, 0, &it), IDL_OK);
    int n = 0, mismatched = 0, unknown = 0, undecodable = 0;
    idl_qlog_entry *got = malloc(sizeof *got);
    uint64_t prev_t = 0;
    int unordered = 0;
    for (; it && idl_store_iter_valid(it); idl_store_iter_next(it)) {
        size_t kl, vl;
        const char *k = idl_store_iter_key(it, &kl);
        const char *v = idl_store_iter_value(it, &vl);
        n++;
        if (idl_qlog_decode(k, kl, v, vl, got) != IDL_OK) {
            undecodable++;
            continue;
        }
        unordered += got->time_us < prev_t;
        prev_t = got->time_us;
        if (got->seq > max_seq || by_seq[got->seq] < 0) {
            unknown++;
            continue;
        }
        int i = by_seq[got->seq];
        seen[i] = true;
        if (!entries_equal(got, &expect[i])) mismatched++;
    }
    idl_store_iter_close(it);
    CHECK_INT(n, TOTAL);
    CHECK_INT(undecodable, 0);
    CHECK_INT(unknown, 0);
    CHECK_INT(mismatched, 0);
    CHECK_INT(unordered, 0);
    int unseen = 0;
    for (int i = 0; i < TOTAL; i++)
        unseen += !seen[i];
    CHECK_INT(unseen, 0);

    /* Disclosure records: one per pid of each successful Search, keyed
     * pid + time + seq, valued with the customer. */
    size_t want_logp = 0;
    for (int i = 0; i < TOTAL; i++)
        if (strcmp(expect[i].method, SEARCH_METHOD) == 0 && expect[i].code == 0)
            want_logp += expect[i].n_pids;
    CHECK(want_logp > 0);
    CHECK_INT(count_cf(e.s, IDL_CF_LOGP), want_logp);
    size_t matched = 0;
    CHECK_INT(idl_store_iter_open(e.s, IDL_CF_LOGP, NULL, 0, NULL, 0, &it), IDL_OK);
    for (; it && idl_store_iter_valid(it); idl_store_iter_next(it)) {
        size_t kl, vl;
        const char *k = idl_store_iter_key(it, &kl);
        const char *v = idl_store_iter_value(it, &vl);
        if (kl != 24) continue;
        uint64_t pid = idl_be64_get((const uint8_t *)k);
        uint64_t seq = idl_be64_get((const uint8_t *)k + 16);
        if (seq > max_seq || by_seq[seq] < 0) continue;
        const idl_qlog_entry *x = &expect[by_seq[seq]];
        bool has_pid = false;
        for (uint32_t j = 0; j < x->n_pids; j++)
            has_pid |= x->pids[j] == pid;
        matched += has_pid && idl_be64_get((const uint8_t *)k + 8) == x->time_us &&
                   vl == strlen(x->customer) && memcmp(v, x->customer, vl) == 0 &&
                   strcmp(x->method, SEARCH_METHOD) == 0 && x->code == 0;
    }
    idl_store_iter_close(it);
    CHECK_INT(matched, want_logp);

    /* The count is persisted. */
    idl_qlog_close(e.q);
    e.q = NULL;
    CHECK(env_open_log(&e, 0));
    CHECK_INT(idl_qlog_count(e.q), TOTAL);
    /* Flushing with nothing pending is fine. */
    CHECK_INT(idl_qlog_flush(e.q), IDL_OK);
    CHECK_INT(idl_qlog_count(e.q), TOTAL);
    free(got);
    free(seen);
    free(by_seq);
    free(expect);
    env_free(&e);
}

static void logp_only_for_successful_search(void)
{
    env e;
    if (!env_init(&e)) {
        env_free(&e);
        return;
    }
    static const struct {
        const char *method;
        int code;
        bool logp;
    } cases[] = {
        {"idlookup.v1.Lookup/Search", 0, true},    {"idlookup.v1.Lookup/Search", 8, false},
        {"idlookup.v1.Lookup/Search", 3, false},   {"idlookup.v1.Lookup/Verify", 0, false},
        {"idlookup.v1.Lookup/Validate", 0, false}, {"idlookup.v1.Lookup/Batch", 0, false},
        {"idlookup.v1.Lookup/Searchx", 0, false},  {"", 0, false},
    };
    idl_qlog_entry *en = malloc(sizeof *en);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(en, 0, sizeof *en);
        idl_qlog_next_id(e.q, &en->time_us, &en->seq);
        snprintf(en->customer, sizeof en->customer, "acme");
        snprintf(en->method, sizeof en->method, "%s", cases[i].method);
        en->code = cases[i].code;
        en->n_persons = en->n_pids = 3;
        for (int j = 0; j < 3; j++)
            en->pids[j] = 1000 * (i + 1) + (uint64_t)j;
        idl_qlog_append(e.q, en);
    }
    /* A Search that returned nobody. */
    memset(en, 0, sizeof *en);
    idl_qlog_next_id(e.q, &en->time_us, &en->seq);
    snprintf(en->method, sizeof en->method, SEARCH_METHOD);
    idl_qlog_append(e.q, en);
    /* The most pids an entry keeps. */
    memset(en, 0, sizeof *en);
    idl_qlog_next_id(e.q, &en->time_us, &en->seq);
    snprintf(en->customer, sizeof en->customer, "bigco");
    snprintf(en->method, sizeof en->method, SEARCH_METHOD);
    en->n_persons = 250;
    en->n_pids = IDL_QLOG_MAX_PIDS;
    for (int j = 0; j < IDL_QLOG_MAX_PIDS; j++)
        en->pids[j] = 5000000 + (uint64_t)j;
    en->n_fps = IDL_QLOG_MAX_FPS;
    for (int j = 0; j < IDL_QLOG_MAX_FPS; j++)
        en->fps[j] = UINT64_MAX - (uint64_t)j;
    idl_qlog_entry big = *en;
    idl_qlog_append(e.q, en);
    CHECK_INT(idl_qlog_flush(e.q), IDL_OK);
    CHECK_INT(count_cf(e.s, IDL_CF_LOG), sizeof cases / sizeof cases[0] + 2);
    CHECK_INT(count_cf(e.s, IDL_CF_LOGP), 3 + IDL_QLOG_MAX_PIDS);
    /* Acme's three. */
    for (int j = 0; j < 3; j++) {
        uint8_t lo[8];
        idl_be64_put(lo, 1000 + (uint64_t)j);
        uint8_t hi[8];
        idl_be64_put(hi, 1000 + (uint64_t)j + 1);
        idl_store_iter *it = NULL;
        CHECK_INT(idl_store_iter_open(e.s, IDL_CF_LOGP, lo, 8, hi, 8, &it), IDL_OK);
        int n = 0;
        for (; it && idl_store_iter_valid(it); idl_store_iter_next(it)) {
            size_t vl;
            const char *v = idl_store_iter_value(it, &vl);
            CHECK(vl == 4 && memcmp(v, "acme", 4) == 0);
            n++;
        }
        idl_store_iter_close(it);
        CHECK_INT(n, 1);
    }
    /* The big entry decodes back whole. */
    uint8_t key[16];
    idl_be64_put(key, big.time_us);
    idl_be64_put(key + 8, big.seq);
    char *v = NULL;
    size_t vl = 0;
    CHECK_INT(idl_store_raw_get(e.s, IDL_CF_LOG, key, 16, &v, &vl), IDL_OK);
    if (v) {
        CHECK_INT(idl_qlog_decode((const char *)key, 16, v, vl, en), IDL_OK);
        CHECK(entries_equal(en, &big));
        free(v);
    }
    free(en);
    env_free(&e);
}

static void close_flushes_pending(void)
{
    env e;
    if (!env_init(&e)) {
        env_free(&e);
        return;
    }
    /* A long flush interval, so only close can have written them. */
    idl_qlog_close(e.q);
    char err[IDL_ERR_MAX];
    CHECK_INT(idl_qlog_open(&e.q, e.s, e.secret, 1000, 0, err), IDL_OK);
    idl_qlog_entry en;
    for (int i = 0; i < 10; i++) {
        uint64_t t, s;
        idl_qlog_next_id(e.q, &t, &s);
        make_entry(&en, t, s, i);
        idl_qlog_append(e.q, &en);
    }
    CHECK_INT(idl_qlog_count(e.q), 10);
    env_close(&e); /* no flush */
    CHECK(env_open_store(&e));
    CHECK_INT(count_cf(e.s, IDL_CF_LOG), 10);
    CHECK(env_open_log(&e, 0));
    CHECK_INT(idl_qlog_count(e.q), 10);
    /* The flusher writes on its own within the interval too. */
    idl_qlog_close(e.q);
    CHECK_INT(idl_qlog_open(&e.q, e.s, e.secret, 20, 0, err), IDL_OK);
    uint64_t t, s;
    idl_qlog_next_id(e.q, &t, &s);
    make_entry(&en, t, s, 1);
    idl_qlog_append(e.q, &en);
    size_t n = 0;
    for (int i = 0; i < 200 && (n = count_cf(e.s, IDL_CF_LOG)) < 11; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    CHECK_INT(n, 11);
    env_free(&e);
}

/* Appends an entry at an explicit time, a Search with two pids. */
static void append_at(idl_qlog *q, uint64_t t, uint64_t seq)
{
    idl_qlog_entry en;
    memset(&en, 0, sizeof en);
    en.time_us = t;
    en.seq = seq;
    snprintf(en.customer, sizeof en.customer, "acme");
    snprintf(en.method, sizeof en.method, SEARCH_METHOD);
    en.n_persons = en.n_pids = 2;
    en.pids[0] = 77;
    en.pids[1] = 1000 + seq;
    idl_qlog_append(q, &en);
}

static void delete_before_and_retention(void)
{
    env e;
    if (!env_init(&e)) {
        env_free(&e);
        return;
    }
    uint64_t now = now_us();
    for (uint64_t i = 0; i < 10; i++)
        append_at(e.q, 1000 + i, i); /* 1970 */
    append_at(e.q, 5000, 0);         /* exactly at the cutoff: kept */
    for (uint64_t i = 0; i < 5; i++)
        append_at(e.q, now - 1000 + i, 100 + i);
    CHECK_INT(idl_qlog_flush(e.q), IDL_OK);
    CHECK_INT(count_cf(e.s, IDL_CF_LOG), 16);
    CHECK_INT(count_cf(e.s, IDL_CF_LOGP), 32);
    uint64_t deleted = 0;
    CHECK_INT(idl_qlog_delete_before(e.s, 5000, &deleted), IDL_OK);
    CHECK_INT(deleted, 10);
    CHECK_INT(count_cf(e.s, IDL_CF_LOG), 6);
    CHECK_INT(count_cf(e.s, IDL_CF_LOGP), 12);
    /* What is left is the newer entries, and pid 77's records are theirs. */
    idl_store_iter *it = NULL;
    CHECK_INT(idl_store_iter_open(e.s, IDL_CF_LOGP, NULL, 0, NULL, 0, &it), IDL_OK);
    int old = 0;
    for (; it && idl_store_iter_valid(it); idl_store_iter_next(it)) {
        size_t kl;
        const char *k = idl_store_iter_key(it, &kl);
        old += idl_be64_get((const uint8_t *)k + 8) < 5000;
    }
    idl_store_iter_close(it);
    CHECK_INT(old, 0);
    /* Nothing older: nothing deleted; NULL count is fine. */
    CHECK_INT(idl_qlog_delete_before(e.s, 5000, &deleted), IDL_OK);
    CHECK_INT(deleted, 0);
    CHECK_INT(idl_qlog_delete_before(e.s, 0, NULL), IDL_OK);
    CHECK_INT(count_cf(e.s, IDL_CF_LOG), 6);

    /* Retention at open: one day drops the 1970 entry at 5000, keeps today's. */
    idl_qlog_close(e.q);
    e.q = NULL;
    CHECK(env_open_log(&e, 1));
    CHECK_INT(count_cf(e.s, IDL_CF_LOG), 5);
    CHECK_INT(count_cf(e.s, IDL_CF_LOGP), 10);
    idl_qlog_close(e.q);
    e.q = NULL;
    /* A long retention (100 years) keeps everything recent. */
    CHECK(env_open_log(&e, 36500));
    CHECK_INT(count_cf(e.s, IDL_CF_LOG), 5);
    CHECK_INT(count_cf(e.s, IDL_CF_LOGP), 10);
    idl_qlog_close(e.q);
    e.q = NULL;
    /* Zero keeps everything. */
    CHECK(env_open_log(&e, 0));
    CHECK_INT(count_cf(e.s, IDL_CF_LOG), 5);
    env_free(&e);
}

/* Reads entries [from, to) back through the log's own scan. */
static size_t scan_range(idl_store *s, uint64_t from, uint64_t to, uint64_t *times, size_t max,
                         uint64_t *undecodable)
{
    idl_qlog_scan *sc = NULL;
    CHECK_INT(idl_qlog_scan_open(s, from, to, &sc), IDL_OK);
    if (!sc) return 0;
    idl_qlog_entry *en = malloc(sizeof *en);
    size_t n = 0;
    bool got = true;
    while (en && got) {
        CHECK_INT(idl_qlog_scan_next(sc, en, &got), IDL_OK);
        if (got && n < max) times[n] = en->time_us;
        n += got;
    }
    *undecodable = idl_qlog_scan_undecodable(sc);
    free(en);
    idl_qlog_scan_close(sc);
    return n;
}

static void scan_by_time_range(void)
{
    env e;
    if (!env_init(&e)) {
        env_free(&e);
        return;
    }
    for (uint64_t i = 0; i < 10; i++)
        append_at(e.q, 1000 + i * 100, i); /* 1000, 1100, ..., 1900 */
    CHECK_INT(idl_qlog_flush(e.q), IDL_OK);
    /* Two keys that are no entry: skipped and counted, not an error. */
    idl_store_batch *b = idl_store_batch_new(e.s);
    uint8_t k[16];
    idl_be64_put(k, 1250);
    idl_be64_put(k + 8, 0);
    idl_store_batch_put(b, IDL_CF_LOG, k, 16, "junk", 4);
    idl_store_batch_put(b, IDL_CF_LOG, "\x00\x01", 2, "x", 1);
    CHECK_INT(idl_store_batch_commit(e.s, b, false), IDL_OK);
    idl_store_batch_free(b);
    uint64_t t[16], bad = 0;
    CHECK_INT(scan_range(e.s, 0, UINT64_MAX, t, 16, &bad), 10);
    CHECK_INT(bad, 2);
    CHECK_INT(t[0], 1000);
    CHECK_INT(t[9], 1900);
    /* The lower bound is inclusive, the upper exclusive. */
    CHECK_INT(scan_range(e.s, 1100, 1500, t, 16, &bad), 4);
    CHECK_INT(t[0], 1100);
    CHECK_INT(t[3], 1400);
    CHECK_INT(bad, 1);
    CHECK_INT(scan_range(e.s, 1101, 1501, t, 16, &bad), 4);
    CHECK_INT(t[0], 1200);
    CHECK_INT(t[3], 1500);
    CHECK_INT(scan_range(e.s, 1950, UINT64_MAX, t, 16, &bad), 0);
    /* The two-byte key sorts after every entry of the 1970s (0x00 0x01 >
     * 0x00 0x00 ...): outside this range. */
    CHECK_INT(scan_range(e.s, 0, 1000, t, 16, &bad), 0);
    CHECK_INT(bad, 0);
    idl_qlog_scan_close(NULL);
    env_free(&e);
}

static void recipients_of_persons(void)
{
    env e;
    if (!env_init(&e)) {
        env_free(&e);
        return;
    }
    /* Person 77 is in every entry; person 1000+seq in one each.  Customers
     * alternate: "zeta" for even seq, "acme" (append_at's) for odd. */
    for (uint64_t i = 0; i < 6; i++) {
        idl_qlog_entry en;
        memset(&en, 0, sizeof en);
        en.time_us = 5000 + i * 10;
        en.seq = i;
        snprintf(en.customer, sizeof en.customer, "%s", i % 2 ? "acme" : "zeta");
        snprintf(en.method, sizeof en.method, "idlookup.v1.Lookup/Search");
        en.n_persons = en.n_pids = 2;
        en.pids[0] = 77;
        en.pids[1] = 1000 + i;
        idl_qlog_append(e.q, &en);
    }
    CHECK_INT(idl_qlog_flush(e.q), IDL_OK);
    idl_qlog_recipient *rs = NULL;
    size_t nr = 99;
    uint64_t p77 = 77;
    CHECK_INT(idl_qlog_recipients(e.s, &p77, 1, 0, UINT64_MAX, &rs, &nr), IDL_OK);
    CHECK_INT(nr, 2);
    if (rs && nr == 2) {
        CHECK_STR(rs[0].customer, "acme"); /* ascending by customer */
        CHECK_INT(rs[0].count, 3);
        CHECK_INT(rs[0].first, 5010);
        CHECK_INT(rs[0].last, 5050);
        CHECK_STR(rs[1].customer, "zeta");
        CHECK_INT(rs[1].count, 3);
        CHECK_INT(rs[1].first, 5000);
        CHECK_INT(rs[1].last, 5040);
    }
    free(rs);
    /* Bounds: [5010, 5040) holds seq 1, 2, 3. */
    rs = NULL;
    CHECK_INT(idl_qlog_recipients(e.s, &p77, 1, 5010, 5040, &rs, &nr), IDL_OK);
    CHECK_INT(nr, 2);
    if (rs && nr == 2) {
        CHECK_INT(rs[0].count, 2);
        CHECK_INT(rs[1].count, 1);
        CHECK_INT(rs[1].first, 5020);
        CHECK_INT(rs[1].last, 5020);
    }
    free(rs);
    /* Several persons: their entries add up per customer. */
    uint64_t two[2] = {1002, 1003};
    rs = NULL;
    CHECK_INT(idl_qlog_recipients(e.s, two, 2, 0, UINT64_MAX, &rs, &nr), IDL_OK);
    CHECK_INT(nr, 2);
    if (rs && nr == 2) {
        CHECK_STR(rs[0].customer, "acme");
        CHECK_INT(rs[0].first, 5030);
        CHECK_STR(rs[1].customer, "zeta");
        CHECK_INT(rs[1].first, 5020);
    }
    free(rs);
    /* Nobody received an unknown person, or anyone outside the range. */
    uint64_t other = 78;
    rs = NULL;
    CHECK_INT(idl_qlog_recipients(e.s, &other, 1, 0, UINT64_MAX, &rs, &nr), IDL_OK);
    CHECK_INT(nr, 0);
    free(rs);
    rs = NULL;
    CHECK_INT(idl_qlog_recipients(e.s, &p77, 1, 6000, 7000, &rs, &nr), IDL_OK);
    CHECK_INT(nr, 0);
    free(rs);
    env_free(&e);
}

/* Cluster mode: other nodes' entries filed into logp are recipients like
 * this node's own; two nodes' entries with the same time and sequence stay
 * apart by their tags; failed calls and methods whose persons are not
 * logged file nothing. */
static void remote_entries_file_recipients(void)
{
    env e;
    if (!env_init(&e)) {
        env_free(&e);
        return;
    }
    idl_store_batch *b = idl_store_batch_new(e.s);
    CHECK(b != NULL);
    if (!b) {
        env_free(&e);
        return;
    }
    idl_qlog_entry en;
    memset(&en, 0, sizeof en);
    en.time_us = 9000;
    en.seq = 4;
    snprintf(en.method, sizeof en.method, "idlookup.v1.Lookup/Search");
    en.n_persons = en.n_pids = 1;
    en.pids[0] = 55;
    snprintf(en.customer, sizeof en.customer, "acme");
    idl_qlog_file_remote(b, &en, 0x1111000000000000ull);
    idl_qlog_file_remote(b, &en, 0x2222000000000000ull); /* another node, same time and seq */
    en.code = 8;                                         /* refused: returned nobody */
    snprintf(en.customer, sizeof en.customer, "refused");
    idl_qlog_file_remote(b, &en, 0x3333000000000000ull);
    en.code = 0;
    snprintf(en.method, sizeof en.method, "idlookup.v1.Lookup/Verify");
    snprintf(en.customer, sizeof en.customer, "verifier");
    idl_qlog_file_remote(b, &en, 0x4444000000000000ull);
    CHECK_INT(idl_store_batch_commit(e.s, b, false), IDL_OK);
    idl_store_batch_free(b);
    idl_qlog_recipient *rs = NULL;
    size_t nr = 99;
    uint64_t p55 = 55;
    CHECK_INT(idl_qlog_recipients(e.s, &p55, 1, 0, UINT64_MAX, &rs, &nr), IDL_OK);
    CHECK_INT(nr, 1);
    if (rs && nr == 1) {
        CHECK_STR(rs[0].customer, "acme");
        CHECK_INT(rs[0].count, 2);
        CHECK_INT(rs[0].first, 9000);
        CHECK_INT(rs[0].last, 9000);
    }
    free(rs);
    env_free(&e);
}

static void disclosure_mark_layout(void)
{
    uint8_t m[IDL_QLOG_MARK_LEN];
    idl_qlog_disclosure_mark(0x0102030405060708ull, 2026, m);
    static const uint8_t want[IDL_QLOG_MARK_LEN] = {'d', ':', 1, 2, 3, 4, 5, 6, 7, 8, 0x07, 0xea};
    CHECK(memcmp(m, want, sizeof want) == 0);
    uint8_t m2[IDL_QLOG_MARK_LEN];
    idl_qlog_disclosure_mark(0x0102030405060708ull, 2027, m2);
    CHECK(memcmp(m, m2, sizeof m) != 0);
}

static void decode_garbage(void)
{
    idl_qlog_entry *e = malloc(sizeof *e);
    const char key[16] = {0};
    /* Wrong key length. */
    CHECK_INT(idl_qlog_decode(key, 15, "\x98\xa0\xa0\xa0\x00\x00\x00\x90\x90", 9, e),
              IDL_DATA_LOSS);
    CHECK_INT(idl_qlog_decode(key, 17, "\x98\xa0\xa0\xa0\x00\x00\x00\x90\x90", 9, e),
              IDL_DATA_LOSS);
    /* The smallest valid value, for contrast. */
    CHECK_INT(idl_qlog_decode(key, 16, "\x98\xa0\xa0\xa0\x00\x00\x00\x90\x90", 9, e), IDL_OK);
    static const struct {
        const char *v;
        size_t n;
    } bad[] = {
        {"", 0},
        {"\xc1", 1},
        {"\x97\xa0\xa0\xa0\x00\x00\x00\x90", 8},          /* 7 elements */
        {"\x99\xa0\xa0\xa0\x00\x00\x00\x90\x90\x90", 10}, /* 9 elements */
        {"\x98\xa0\xa0\xa0\x00\x00\x00\xc0\x90", 9},      /* pids not an array */
        {"\x98\xa0\xa0\xa0\x00\x00\x00\x90\xa0", 9},      /* fps not an array */
        {"\x98\xa0\xa0\xa0\x00\x00\x00\x90", 8},          /* truncated */
        {"\x88\xa0\xa0\xa0\x00\x00\x00\x90\x90", 9},      /* a map */
        {"\xa5hello", 6},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *v = malloc(bad[i].n ? bad[i].n : 1);
        memcpy(v, bad[i].v, bad[i].n);
        int rc = idl_qlog_decode(key, 16, v, bad[i].n, e);
        CHECK_INT(rc, IDL_DATA_LOSS);
        if (rc != IDL_DATA_LOSS) fprintf(stderr, "  garbage case %zu decoded\n", i);
        free(v);
    }
    /* A few bytes declaring 4 G entries, and random bytes behind a plausible
     * header: OK or DATA_LOSS, strings terminated, counts bounded, and no
     * crash.  In a child, so that an abort (a sanitizer's allocation limit
     * hit by a declared size) is a failed check here, not a lost run. */
    fflush(NULL);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        cap_address_space();
        int odd = 0;
        static const struct {
            const char *v;
            size_t n;
        } huge[] = {
            {"\xdd\xff\xff\xff\xff\x01\x02\x03", 8},
            {"\xdf\xff\xff\xff\xff\xa1k", 7},
            {"\x98\xa0\xa0\xa0\x00\x00\x00\xdd\xff\xff\xff\xff\x90", 13},
        };
        for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++)
            if (idl_qlog_decode(key, 16, huge[i].v, huge[i].n, e) != IDL_DATA_LOSS) {
                fprintf(stderr, "  huge case %zu decoded\n", i);
                odd++;
            }
        uint64_t x = 0x2545f4914f6cdd1dull;
        for (int i = 0; i < 20000; i++) {
            unsigned char buf[48];
            size_t n = 1 + (size_t)(i % 47);
            for (size_t k = 0; k < n; k++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf[k] = (unsigned char)x;
            }
            buf[0] = 0x98;
            char *v = malloc(n);
            memcpy(v, buf, n);
            int rc = idl_qlog_decode(key, 16, v, n, e);
            if (rc == IDL_OK)
                odd += strnlen(e->customer, sizeof e->customer) >= sizeof e->customer ||
                       strnlen(e->key_id, sizeof e->key_id) >= sizeof e->key_id ||
                       strnlen(e->method, sizeof e->method) >= sizeof e->method ||
                       e->n_pids > IDL_QLOG_MAX_PIDS || e->n_fps > IDL_QLOG_MAX_FPS;
            else
                odd += rc != IDL_DATA_LOSS;
            free(v);
        }
        free(e);
        _exit(odd ? 1 : 0);
    }
    int st = 0;
    waitpid(child, &st, 0);
    CHECK(WIFEXITED(st));
    CHECK_INT(WIFEXITED(st) ? WEXITSTATUS(st) : -1, 0);
    free(e);
}

static bool contains(const char *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    return m <= n && memmem(hay, n, needle, m) != NULL;
}

/* Counts stored keys and values (both log column families) holding s. */
static size_t occurrences(idl_store *st, const char *s)
{
    size_t hits = 0;
    idl_cf cfs[2] = {IDL_CF_LOG, IDL_CF_LOGP};
    for (int c = 0; c < 2; c++) {
        idl_store_iter *it = NULL;
        CHECK_INT(idl_store_iter_open(st, cfs[c], NULL, 0, NULL, 0, &it), IDL_OK);
        for (; it && idl_store_iter_valid(it); idl_store_iter_next(it)) {
            size_t kl, vl;
            const char *k = idl_store_iter_key(it, &kl);
            const char *v = idl_store_iter_value(it, &vl);
            hits += contains(k, kl, s) || contains(v, vl, s);
        }
        idl_store_iter_close(it);
    }
    return hits;
}

static void no_identifier_in_clear(void)
{
    env e;
    if (!env_init(&e)) {
        env_free(&e);
        return;
    }
    const char *email = "secret.person@example.com", *phone = "+14155552671", *name = "zebediah",
               *street = "742 EVERGREEN TER";
    idl_qlog_entry en;
    memset(&en, 0, sizeof en);
    idl_qlog_next_id(e.q, &en.time_us, &en.seq);
    snprintf(en.customer, sizeof en.customer, "acme");
    snprintf(en.key_id, sizeof en.key_id, "k_1");
    snprintf(en.method, sizeof en.method, SEARCH_METHOD);
    en.n_persons = en.n_pids = 1;
    en.pids[0] = 42;
    en.fps[en.n_fps++] = idl_qlog_fingerprint(e.q, "email", email);
    en.fps[en.n_fps++] = idl_qlog_fingerprint(e.q, "phone", phone);
    en.fps[en.n_fps++] = idl_qlog_fingerprint(e.q, "first_name", name);
    en.fps[en.n_fps++] = idl_qlog_fingerprint(e.q, "street", street);
    idl_qlog_append(e.q, &en);
    CHECK_INT(idl_qlog_flush(e.q), IDL_OK);
    CHECK_INT(count_cf(e.s, IDL_CF_LOG), 1);
    CHECK_INT(count_cf(e.s, IDL_CF_LOGP), 1);
    /* The scan works: the customer is there in clear. */
    CHECK_INT(occurrences(e.s, "acme"), 2);
    CHECK_INT(occurrences(e.s, email), 0);
    CHECK_INT(occurrences(e.s, "secret.person"), 0);
    CHECK_INT(occurrences(e.s, "example.com"), 0);
    CHECK_INT(occurrences(e.s, phone), 0);
    CHECK_INT(occurrences(e.s, "4155552671"), 0);
    CHECK_INT(occurrences(e.s, name), 0);
    CHECK_INT(occurrences(e.s, "EVERGREEN"), 0);
    /* The fingerprints are what is stored. */
    uint8_t key[16];
    idl_be64_put(key, en.time_us);
    idl_be64_put(key + 8, en.seq);
    char *v = NULL;
    size_t vl = 0;
    CHECK_INT(idl_store_raw_get(e.s, IDL_CF_LOG, key, 16, &v, &vl), IDL_OK);
    idl_qlog_entry got;
    if (v) {
        CHECK_INT(idl_qlog_decode((const char *)key, 16, v, vl, &got), IDL_OK);
        CHECK(entries_equal(&got, &en));
        free(v);
    }
    /* ... and the secret file does not hold the identifier either. */
    FILE *f = fopen(e.secret, "r");
    char text[128] = "";
    if (f) {
        size_t n = fread(text, 1, sizeof text - 1, f);
        text[n] = 0;
        fclose(f);
    }
    CHECK(strstr(text, "secret.person") == NULL);
    env_free(&e);
}

int main(void)
{
    RUN(secret_file);
    RUN(ids_and_request_ids);
    RUN(append_flush_decode);
    RUN(logp_only_for_successful_search);
    RUN(close_flushes_pending);
    RUN(delete_before_and_retention);
    RUN(scan_by_time_range);
    RUN(recipients_of_persons);
    RUN(remote_entries_file_recipients);
    RUN(disclosure_mark_layout);
    RUN(decode_garbage);
    RUN(no_identifier_in_clear);
    return test_summary();
}
