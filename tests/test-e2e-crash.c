/* kill -9 loses no acknowledged write and leaves a consistent store:
 *   bursts   threads send OptOut and Upsert calls while the daemon is
 *            SIGKILLed; after a restart every acknowledged opt-out hides its
 *            person and every acknowledged upsert is found;
 *   ingest   `idlookup ingest` is SIGKILLed mid-load;
 * after each, `idlookup check` (idl_store_check) finds every index entry
 * naming a stored person who holds that identifier, every identifier of
 * every person indexed, and counters equal to the scan, and Stats reports
 * those counters. */
#include "e2e.h"
#include "e2echeck.h"
#include "status.h"

#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { BASE = 2000, UPSERT_FROM = 100000, MAX_UP = 400000 };

static e2e_env env;
static _Atomic bool stop_burst;
static _Atomic int optout_acked_upto; /* opt-outs of even persons 0..this acknowledged */
static _Atomic int upsert_acked_upto; /* persons UPSERT_FROM..this acknowledged */
static _Atomic int optout_sent, upsert_sent;

static double t0;
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9 - t0;
}
#define STEP(what) fprintf(stderr, "  [%.1f s] %s\n", now_s(), what)

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* One call on c; returns the reply code, or -1 on a transport failure. */
static int call(idl_client *c, const char *method, const char *json, idl_reply **out)
{
    idl_buf body = {0};
    char msg[IDL_ERR_MAX];
    if (idl_json_to_msgpack(json, strlen(json), &body, msg)) {
        fprintf(stderr, "bad test JSON: %s\n", msg);
        idl_buf_free(&body);
        return -1;
    }
    idl_reply *r = NULL;
    int rc = idl_client_call(c, method, body.data, body.len, -1, 2000, &r);
    idl_buf_free(&body);
    int code = rc || !r ? -1 : r->code;
    if (out)
        *out = r;
    else
        idl_reply_free(r);
    return code;
}

static char *records_json(int from, int n)
{
    char *json = malloc((size_t)n * 300 + 64);
    size_t len = (size_t)sprintf(json, "{\"records\": [");
    for (int i = 0; i < n; i++) {
        int id = from + i;
        len += (size_t)sprintf(json + len,
                               "%s{\"source_id\": \"kc-%d\", \"first_name\": \"Kim\", "
                               "\"last_name\": \"Crash%d\", \"dob\": \"1975-03-04\", "
                               "\"emails\": [\"kc%d@example.com\"], "
                               "\"addresses\": [{\"street\": \"%d Elm St\", \"zip\": \"%05d\"}]}",
                               i ? "," : "", id, id, id, id % 5000 + 1, 10000 + id % 80000);
    }
    sprintf(json + len, "]}");
    return json;
}

static void *optout_burst(void *arg)
{
    (void)arg;
    idl_client *c = NULL;
    if (idl_client_open(&c, env.url, env.privacy_key)) return NULL;
    for (int id = 0; id < BASE && !atomic_load(&stop_burst); id += 2) {
        char json[96];
        snprintf(json, sizeof json, "{\"email\": \"kc%d@example.com\"}", id);
        atomic_fetch_add(&optout_sent, 1);
        if (call(c, "idlookup.v1.Privacy/OptOut", json, NULL) != 0) break;
        atomic_store(&optout_acked_upto, id);
    }
    idl_client_close(c);
    return NULL;
}

static void *upsert_burst(void *arg)
{
    (void)arg;
    idl_client *c = NULL;
    if (idl_client_open(&c, env.url, env.admin_key)) return NULL;
    for (int from = UPSERT_FROM; from < MAX_UP && !atomic_load(&stop_burst); from += 50) {
        char *json = records_json(from, 50);
        atomic_fetch_add(&upsert_sent, 1);
        int code = call(c, "idlookup.v1.Admin/Upsert", json, NULL);
        free(json);
        if (code != 0) break;
        atomic_store(&upsert_acked_upto, from + 49);
    }
    idl_client_close(c);
    return NULL;
}

/* Search by email with a keyed client: 1 found, 0 not, -1 error. */
static int found(idl_client *c, int id)
{
    char json[96];
    snprintf(json, sizeof json, "{\"email\": \"kc%d@example.com\"}", id);
    idl_reply *r = NULL;
    int code = call(c, "idlookup.v1.Lookup/Search", json, &r);
    int f = -1;
    if (code == 0) {
        const msgpack_object *ps = e2e_get(&r->body, "persons");
        f = ps && ps->type == MSGPACK_OBJECT_ARRAY && ps->via.array.size > 0;
    }
    idl_reply_free(r);
    return f;
}

/* Every acknowledged write is there. */
static void acknowledged_writes_present(void)
{
    idl_client *c = NULL;
    if (idl_client_open(&c, env.url, env.lookup_key)) {
        CHECK(false);
        return;
    }
    int opt_lost = 0, up_lost = 0, upto = atomic_load(&optout_acked_upto);
    for (int id = 0; id <= upto; id += 2)
        opt_lost += found(c, id) != 0;
    int uhi = atomic_load(&upsert_acked_upto);
    for (int id = UPSERT_FROM; id <= uhi; id++)
        up_lost += found(c, id) != 1;
    CHECK_INT(opt_lost, 0);
    CHECK_INT(up_lost, 0);
    idl_client_close(c);
}

typedef struct {
    long long persons, suppressed;
} stats;

static stats get_stats(void)
{
    stats s = {-1, -1};
    idl_reply *r = e2e_call(&env, env.admin_key, "idlookup.v1.Admin/Stats", "{}");
    if (r && r->code == 0) {
        s.persons = e2e_uint(e2e_get(&r->body, "persons"));
        s.suppressed = e2e_uint(e2e_get(&r->body, "suppressed"));
    }
    idl_reply_free(r);
    return s;
}

/* `idlookup check` on the stopped store: exit 0 and its counts agree with
 * the Stats the daemon gave (st). */
static void store_checks_out(stats st)
{
    const char *args[] = {"check", "--data", env.data, NULL};
    char *out = NULL, *err = NULL;
    int rc = e2e_cli(args, NULL, &out, &err);
    CHECKM(rc == 0, "idlookup check: exit %d: %s %s", rc, out ? out : "", err ? err : "");
    json_error_t je;
    json_t *j = out ? json_loads(out, 0, &je) : NULL;
    CHECK(j != NULL);
    if (j) {
        long long persons = json_integer_value(json_object_get(j, "persons"));
        long long supp = json_integer_value(json_object_get(j, "suppressed"));
        CHECK_INT(json_integer_value(json_object_get(j, "missing")), 0);
        CHECK_INT(json_integer_value(json_object_get(j, "dangling")), 0);
        CHECK_INT(json_integer_value(json_object_get(j, "foreign")), 0);
        CHECK(json_integer_value(json_object_get(j, "index_entries")) > 0);
        if (st.persons >= 0) {
            CHECK_INT(persons - supp, st.persons);
            CHECK_INT(supp, st.suppressed);
        }
        printf("     check: %s", out);
        json_decref(j);
    }
    free(out);
    free(err);
}

static void kill9_during_bursts(void)
{
    STEP("start");
    e2e_start(&env, NULL);
    for (int from = 0; from < BASE; from += 100) {
        char *json = records_json(from, 100);
        idl_reply *r = e2e_call(&env, env.admin_key, "idlookup.v1.Admin/Upsert", json);
        CHECKM(r && r->code == 0, "base upsert: %s", msg_of(r));
        idl_reply_free(r);
        free(json);
    }
    atomic_store(&optout_acked_upto, -2);
    atomic_store(&upsert_acked_upto, UPSERT_FROM - 1);
    pthread_t t[2];
    pthread_create(&t[0], NULL, optout_burst, NULL);
    pthread_create(&t[1], NULL, upsert_burst, NULL);
    /* Kill once both bursts are well under way. */
    for (int i = 0; i < 200 && (atomic_load(&optout_sent) < 200 || atomic_load(&upsert_sent) < 40);
         i++)
        sleep_ms(10);
    STEP("kill");
    e2e_kill9(&env);
    atomic_store(&stop_burst, true);
    pthread_join(t[0], NULL);
    pthread_join(t[1], NULL);
    int opt = atomic_load(&optout_acked_upto) / 2 + 1,
        up = atomic_load(&upsert_acked_upto) - UPSERT_FROM + 1;
    printf("     killed after %d acknowledged opt-outs and %d acknowledged upserted persons\n", opt,
           up);
    CHECK(opt > 0);
    CHECK(up > 0);
    STEP("restart");
    e2e_start(&env, NULL);
    acknowledged_writes_present();
    STEP("checked acks");
    stats st = get_stats();
    CHECK(st.suppressed >= opt);
    CHECK_INT(e2e_stop(&env), 0);
    STEP("stopped");
    store_checks_out(st);
    STEP("checked");
}

/* Bytes in the store's write-ahead log files. */
static long long wal_bytes(void)
{
    DIR *d = opendir(env.data);
    long long total = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 4 && strcmp(e->d_name + n - 4, ".log") == 0) {
            char path[700];
            struct stat sb;
            snprintf(path, sizeof path, "%s/%s", env.data, e->d_name);
            if (stat(path, &sb) == 0) total += sb.st_size;
        }
    }
    if (d) closedir(d);
    return total;
}

static void kill9_during_ingest(void)
{
    char file[400];
    snprintf(file, sizeof file, "%s/people.ndjson", env.dir);
    const char *gen[] = {"gen", "--count", "8000", "--seed", "7", NULL};
    char *out = NULL;
    CHECK_INT(e2e_cli(gen, NULL, &out, NULL), 0);
    FILE *f = fopen(file, "w");
    if (f && out) fputs(out, f);
    if (f) fclose(f);
    free(out);
    STEP("gen done");
    long long wal0 = wal_bytes();
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execl(getenv("IDL_CLI"), "idlookup", "ingest", "--data", env.data, "--quiet", file,
              (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 400 && wal_bytes() < wal0 + (512 << 10); i++)
        sleep_ms(10);
    kill(pid, SIGKILL);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st)); /* it really was killed mid-load */
    STEP("ingest killed");
    store_checks_out((stats){-1, -1});
    STEP("checked");
    e2e_start(&env, NULL);
    acknowledged_writes_present();
    stats s = get_stats();
    CHECK(s.persons > BASE / 2);
    CHECK_INT(e2e_stop(&env), 0);
    store_checks_out(s);
}

int main(void)
{
    t0 = now_s();
    e2e_init(&env);
    RUN(kill9_during_bursts);
    RUN(kill9_during_ingest);
    e2e_cleanup(&env);
    return test_summary();
}
