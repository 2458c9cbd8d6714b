/* Damaged-store fixtures shared by test-store-corrupt and test-e2e-corrupt:
 * a store of NPERSONS persons (every other one opted out) and NLOG query-log
 * entries, compacted to one SST per column family, and a helper that
 * overwrites 32 bytes in the middle of one family's SST.  Header-only because
 * the check counters of testutil.h belong to each test executable. */
#ifndef IDL_TEST_STOREFAULT_H
#define IDL_TEST_STOREFAULT_H

#include "json.h"
#include "record.h"
#include "status.h"
#include "store.h"
#include "testutil.h"
#include "wire.h"

#include <fcntl.h>
#include <ftw.h>
#include <rocksdb/c.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { NPERSONS = 3000, NLOG = 6000 };

static inline int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static inline void rm_rf(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline bool person(idl_record *r, int i)
{
    char json[1024];
    snprintf(json, sizeof json,
             "{\"source_id\": \"corrupt-%d\", \"first_name\": \"Ann%d\", \"last_name\": \"Lee%d\","
             " \"dob\": \"1970-01-%02d\", \"emails\": [\"p%d@example.com\"],"
             " \"phones\": [\"+1 212 555 %04d\"],"
             " \"addresses\": [{\"street\": \"%d Oak Street\", \"zip\": \"%05d\"}],"
             " \"ips\": [\"10.%d.%d.1\"]}",
             i, i % 97, i, 1 + i % 28, i, i % 10000, i + 1, 10000 + i, i / 250, i % 250);
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
    return ok;
}

static inline uint64_t pid_of(int i)
{
    char sid[32];
    snprintf(sid, sizeof sid, "corrupt-%d", i);
    return idl_person_id(sid);
}

/* NPERSONS persons, every other one suppressed, NLOG log entries each with
 * a logp record, all compacted to one SST per family. */
static inline bool build(const char *dir)
{
    idl_store *s = NULL;
    char err[IDL_ERR_MAX] = "";
    int rc = idl_store_open(&s, dir, NULL, err);
    CHECK_INT(rc, IDL_OK);
    if (rc) return false;
    static idl_record recs[100];
    for (int i = 0; i < NPERSONS; i += 100) {
        for (int j = 0; j < 100; j++)
            if (!person(&recs[j], i + j)) goto fail;
        CHECK_INT(idl_store_upsert(s, recs, 100, NULL, false), IDL_OK);
    }
    for (int i = 0; i < NPERSONS; i += 2) {
        uint64_t pid = pid_of(i);
        uint32_t newly = 0;
        CHECK_INT(idl_store_suppress(s, &pid, 1, NULL, 0, &newly), IDL_OK);
    }
    idl_store_batch *b = idl_store_batch_new(s);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < NLOG; i++) {
        uint8_t k[16], pk[24], v[96];
        idl_be64_put(k, 1700000000000000ull + (uint64_t)i * 1000);
        idl_be64_put(k + 8, (uint64_t)i);
        for (size_t j = 0; j < sizeof v; j++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* incompressible values */
            v[j] = (uint8_t)x;
        }
        idl_store_batch_put(b, IDL_CF_LOG, k, 16, v, sizeof v);
        idl_be64_put(pk, pid_of(i % NPERSONS));
        memcpy(pk + 8, k, 16);
        idl_store_batch_put(b, IDL_CF_LOGP, pk, 24, v, 40);
    }
    CHECK_INT(idl_store_batch_commit(s, b, false), IDL_OK);
    idl_store_batch_free(b);
    CHECK_INT(idl_store_compact(s), IDL_OK);
    idl_store_close(s);
    return true;
fail:
    idl_store_close(s);
    return false;
}

/* The largest live SST of one column family (RocksDB's own file list). */
static inline bool sst_of(const char *dir, const char *cfname, char *out, size_t outsz)
{
    static const char *names[IDL_CF_COUNT] = {"default", "persons", "idx", "supp", "log", "logp"};
    rocksdb_options_t *o = rocksdb_options_create();
    const rocksdb_options_t *cfo[IDL_CF_COUNT];
    rocksdb_column_family_handle_t *h[IDL_CF_COUNT];
    for (int i = 0; i < IDL_CF_COUNT; i++)
        cfo[i] = o;
    char *err = NULL;
    rocksdb_t *db =
        rocksdb_open_for_read_only_column_families(o, dir, IDL_CF_COUNT, names, cfo, h, 0, &err);
    bool found = false;
    if (db) {
        const rocksdb_livefiles_t *lf = rocksdb_livefiles(db);
        size_t best = 0;
        for (int i = 0; i < rocksdb_livefiles_count(lf); i++) {
            if (strcmp(rocksdb_livefiles_column_family_name(lf, i), cfname) != 0) continue;
            size_t sz = rocksdb_livefiles_size(lf, i);
            if (sz <= best) continue;
            best = sz;
            snprintf(out, outsz, "%s%s", dir, rocksdb_livefiles_name(lf, i));
            found = true;
        }
        rocksdb_livefiles_destroy(lf);
        for (int i = 0; i < IDL_CF_COUNT; i++)
            rocksdb_column_family_handle_destroy(h[i]);
        rocksdb_close(db);
    } else {
        fprintf(stderr, "  cannot list %s: %s\n", dir, err);
        free(err);
    }
    rocksdb_options_destroy(o);
    CHECKM(found, "no SST of %s in %s", cfname, dir);
    return found;
}

/* Overwrites 32 bytes in the middle of the family's SST. */
static inline bool corrupt(const char *dir, const char *cfname)
{
    char path[512];
    if (!sst_of(dir, cfname, path, sizeof path)) return false;
    int fd = open(path, O_WRONLY);
    struct stat st;
    bool ok = fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 4096;
    if (ok) {
        uint8_t junk[32];
        memset(junk, 0xa5, sizeof junk);
        ok = pwrite(fd, junk, sizeof junk, st.st_size / 2) == (ssize_t)sizeof junk;
    }
    if (fd >= 0) close(fd);
    CHECKM(ok, "cannot overwrite %s", path);
    return ok;
}

#endif
