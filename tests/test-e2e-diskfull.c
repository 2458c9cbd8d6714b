/* A full disk neither aborts the daemon nor keeps it refusing writes after
 * space is freed.  The store lives on a 16 MiB tmpfs that the test mounts
 * (root only: otherwise it is skipped, exit 77) and fills with a file:
 *   floor    with --min-free-mb 4, writes (Upsert, OptOut, Disclosures) are
 *            UNAVAILABLE below the floor, reads are served, Health reports
 *            NOT_SERVING for Admin and Privacy only, and the daemon lives;
 *            once the file is removed, writes succeed again, no restart;
 *   enospc   with no floor (and the tmpfs grown to 192 MiB: RocksDB resumes
 *            only with 64 MiB free), RocksDB meets the full disk: writes fail
 *            UNAVAILABLE, the daemon lives (RocksDB's info log is on stderr,
 *            not on the full disk), and after freeing space RocksDB is
 *            resumed and writes succeed, no restart;
 *   restart  every opt-out acknowledged along the way is still in force
 *            after a restart. */
#include "e2e.h"
#include "e2echeck.h"
#include "status.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static e2e_env env;
static char mnt[280], fill_path[320];
static int next_person; /* persons p0..p(next_person-1) were upserted */
static int acked[256];  /* persons whose opt-out was acknowledged */
static int nacked;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Upserts n persons with ids from next_person; returns the reply code. */
static int upsert(int n)
{
    char *json = malloc((size_t)n * 400 + 64);
    size_t len = (size_t)sprintf(json, "{\"records\": [");
    for (int i = 0; i < n; i++) {
        int id = next_person + i;
        len += (size_t)sprintf(json + len,
                               "%s{\"source_id\": \"df-%d\", \"first_name\": \"Dana\", "
                               "\"last_name\": \"Full%d\", \"dob\": \"1980-01-01\", "
                               "\"emails\": [\"df%d@example.com\"]}",
                               i ? "," : "", id, id, id);
    }
    sprintf(json + len, "]}");
    idl_reply *r = e2e_call(&env, env.admin_key, "idlookup.v1.Admin/Upsert", json);
    int code = r ? r->code : -1;
    if (code == 0) next_person += n;
    idl_reply_free(r);
    free(json);
    return code;
}

static int optout(int id)
{
    idl_reply *r = e2e_callf(&env, env.privacy_key, "idlookup.v1.Privacy/OptOut",
                             "{\"email\": \"df%d@example.com\"}", id);
    int code = r ? r->code : -1;
    if (code == 0 && nacked < 256) acked[nacked++] = id;
    idl_reply_free(r);
    return code;
}

/* Whether Search finds person id (-1 on an error reply). */
static int found(int id)
{
    idl_reply *r = e2e_callf(&env, env.lookup_key, "idlookup.v1.Lookup/Search",
                             "{\"email\": \"df%d@example.com\"}", id);
    int f = -1;
    if (r && r->code == 0) {
        const msgpack_object *ps = e2e_get(&r->body, "persons");
        f = ps && ps->type == MSGPACK_OBJECT_ARRAY && ps->via.array.size > 0;
    }
    idl_reply_free(r);
    return f;
}

static const char *health(const char *service)
{
    static char out[32];
    idl_reply *r =
        e2e_callf(&env, NULL, "grpc.health.v1.Health/Check", "{\"service\": \"%s\"}", service);
    const msgpack_object *s = r && r->code == 0 ? e2e_get(&r->body, "status") : NULL;
    snprintf(out, sizeof out, "%s",
             !s                             ? "(error)"
             : e2e_str_is(s, "SERVING")     ? "SERVING"
             : e2e_str_is(s, "NOT_SERVING") ? "NOT_SERVING"
                                            : "(other)");
    idl_reply_free(r);
    return out;
}

/* Writes a file until the filesystem is full; returns the bytes written. */
static long long fill(void)
{
    int fd = open(fill_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    static char chunk[4096];
    memset(chunk, 'f', sizeof chunk);
    long long n = 0;
    for (;;) {
        ssize_t w = write(fd, chunk, sizeof chunk);
        if (w <= 0) break;
        n += w;
    }
    close(fd);
    return n;
}

static bool alive(void)
{
    return env.pid > 0 && kill(env.pid, 0) == 0;
}

/* Retries a write for up to 20 s (RocksDB checks free space every 5 s);
 * returns its last code. */
static int eventually(int (*fn)(int), int arg)
{
    int code = -1;
    for (int i = 0; i < 200 && code != 0; i++) {
        code = fn(arg);
        if (code) sleep_ms(100);
    }
    return code;
}

static int upsert_one(int unused)
{
    (void)unused;
    return upsert(1);
}

static void floor_refuses_writes_then_resumes(void)
{
    const char *flags[] = {"--min-free-mb", "4", NULL};
    e2e_start(&env, flags);
    CHECK_INT(upsert(50), 0);
    for (int i = 0; i < 5; i++)
        CHECK_INT(optout(i), 0);
    long long filled = fill();
    CHECK(filled > 0);
    CHECK_INT(upsert(1), IDL_UNAVAILABLE);
    CHECK_INT(optout(10), IDL_UNAVAILABLE);
    idl_reply *r = e2e_callf(&env, env.privacy_key, "idlookup.v1.Privacy/Disclosures",
                             "{\"email\": \"df11@example.com\", \"year\": 2025}");
    CHECK_INT(r ? r->code : -1, IDL_UNAVAILABLE);
    idl_reply_free(r);
    CHECK_INT(found(12), 1); /* reads are served */
    CHECK_INT(found(1), 0);  /* and the opt-outs hold */
    sleep_ms(500);           /* the query log's flusher meets the floor too */
    CHECK_STR(health("idlookup.v1.Admin"), "NOT_SERVING");
    CHECK_STR(health("idlookup.v1.Privacy"), "NOT_SERVING");
    CHECK_STR(health("idlookup.v1.Lookup"), "SERVING");
    CHECK_STR(health(""), "SERVING");
    CHECK(alive());
    unlink(fill_path);
    CHECK_INT(eventually(optout, 10), 0);
    CHECK_INT(upsert(1), 0);
    CHECK_STR(health("idlookup.v1.Admin"), "SERVING");
    CHECK_STR(health("idlookup.v1.Privacy"), "SERVING");
    CHECK_INT(found(10), 0);
    CHECK_INT(e2e_stop(&env), 0);
}

static void enospc_without_floor_resumes(void)
{
    /* RocksDB clears a full-disk error only once as much is free as its
     * largest write buffer (64 MiB, the query log's), and it preallocates
     * its write-ahead log: the tmpfs grows to 192 MiB for this case. */
    CHECKM(mount("tmpfs", mnt, "tmpfs", MS_REMOUNT, "size=192m") == 0, "remount: %s",
           strerror(errno));
    const char *flags[] = {"--min-free-mb", "0", NULL};
    e2e_start(&env, flags);
    fill();
    /* The write-ahead log's preallocated space still takes writes: write
     * until RocksDB meets the full disk. */
    int code = 0, calls = 0;
    for (; calls < 3000 && code == 0; calls++)
        code = upsert(200);
    CHECK_INT(code, IDL_UNAVAILABLE);
    printf("     RocksDB met the full disk after %d upserts of 200\n", calls);
    CHECK_INT(optout(20), IDL_UNAVAILABLE);
    CHECK_INT(found(12), 1);
    CHECK_STR(health("idlookup.v1.Admin"), "NOT_SERVING");
    CHECK_STR(health("idlookup.v1.Lookup"), "SERVING");
    sleep_ms(500);
    CHECK(alive());
    unlink(fill_path);
    CHECK_INT(eventually(optout, 21), 0);
    CHECK_INT(eventually(upsert_one, 0), 0);
    CHECK_STR(health("idlookup.v1.Admin"), "SERVING");
    CHECK(alive());
    CHECK_INT(e2e_stop(&env), 0);
}

static void acknowledged_optouts_survive_restart(void)
{
    const char *flags[] = {"--min-free-mb", "4", NULL};
    e2e_start(&env, flags);
    CHECK(nacked >= 7);
    int lost = 0;
    for (int i = 0; i < nacked; i++)
        lost += found(acked[i]) != 0;
    CHECK_INT(lost, 0);
    idl_reply *r = e2e_call(&env, env.admin_key, "idlookup.v1.Admin/Stats", "{}");
    CHECK_INT(r ? e2e_uint(e2e_get(&r->body, "suppressed")) : -1, nacked);
    idl_reply_free(r);
    printf("     %d acknowledged opt-outs after restart, %d persons stored\n", nacked, next_person);
    CHECK_INT(e2e_stop(&env), 0);
}

int main(void)
{
    if (geteuid() != 0) {
        printf("skipped: mounting the test's 16 MiB tmpfs needs root\n");
        return 77;
    }
    e2e_init(&env);
    snprintf(mnt, sizeof mnt, "%s/mnt", env.dir);
    mkdir(mnt, 0700);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=16m") != 0) {
        printf("skipped: cannot mount a tmpfs on %s: %s\n", mnt, strerror(errno));
        e2e_cleanup(&env);
        return 77;
    }
    snprintf(env.data, sizeof env.data, "%s/data", mnt);
    snprintf(fill_path, sizeof fill_path, "%s/fill", mnt);
    RUN(floor_refuses_writes_then_resumes);
    RUN(enospc_without_floor_resumes);
    RUN(acknowledged_optouts_survive_restart);
    if (env.pid) e2e_stop(&env);
    if (umount2(mnt, MNT_DETACH) != 0) fprintf(stderr, "umount %s: %s\n", mnt, strerror(errno));
    e2e_cleanup(&env);
    return test_summary();
}
