/* An ingest killed halfway (SIGKILL) leaves a consistent store that a rerun
 * completes: the rerun reads every line, stores what was missing, updates
 * what had landed, and the daemon then serves exactly the adults of the file
 * with every one of their identifiers. */
#include "e2e.h"
#include "status.h"
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N 60000

static e2e_env env;
static char file[400];

static pid_t spawn_ingest(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execl(getenv("IDL_CLI"), "idlookup", "ingest", "--data", env.data, "--quiet", file,
              (char *)NULL);
        _exit(127);
    }
    return pid;
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
            struct stat st;
            snprintf(path, sizeof path, "%s/%s", env.data, e->d_name);
            if (stat(path, &st) == 0) total += st.st_size;
        }
    }
    if (d) closedir(d);
    return total;
}

/* Under 13 today (UTC), as DATA.md §2 counts it. */
static bool under13(const char *dob)
{
    int y, m, d, ty, tm, td;
    if (sscanf(dob, "%d-%d-%d", &y, &m, &d) != 3) return false;
    time_t now = time(NULL);
    struct tm g;
    gmtime_r(&now, &g);
    ty = g.tm_year + 1900, tm = g.tm_mon + 1, td = g.tm_mday;
    int age = ty - y - (tm < m || (tm == m && td < d));
    return age < 13;
}

static void killed_ingest_then_rerun(void)
{
    /* Kill the first run partway through: once its write-ahead log shows
     * that batches have landed (about a tenth of the file). */
    pid_t pid = spawn_ingest();
    for (int i = 0; i < 400 && wal_bytes() < (2 << 20); i++) {
        struct timespec ts = {0, 25 * 1000000L};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st)); /* it really was killed mid-load */

    const char *args[] = {"ingest", "--data", env.data, "--quiet", file, NULL};
    char *out = NULL;
    CHECK_INT(e2e_cli(args, NULL, &out, NULL), 0);
    json_error_t je;
    json_t *sum = out ? json_loads(out, 0, &je) : NULL;
    CHECK(sum != NULL);
    long long read = json_integer_value(json_object_get(sum, "read"));
    long long stored = json_integer_value(json_object_get(sum, "stored"));
    long long updated = json_integer_value(json_object_get(sum, "updated"));
    long long child = json_integer_value(json_object_get(sum, "rejected_child"));
    CHECK_INT(read, N);
    CHECK_INT(stored + updated + child, N); /* every record either landed before or now */
    CHECK(updated > 0);                     /* the killed run had stored some */
    json_decref(sum);
    free(out);

    e2e_start(&env, NULL);
    idl_reply *r = e2e_call(&env, env.admin_key, "idlookup.v1.Admin/Stats", "{}");
    CHECK(r && r->code == 0);
    CHECK_INT(r ? e2e_uint(e2e_get(&r->body, "persons")) : -1, stored + updated);
    idl_reply_free(r);

    /* Every adult is found by each of its emails (a sample across the file,
     * through the first run's batches and the rerun's). */
    FILE *f = fopen(file, "r");
    char *line = NULL;
    size_t cap = 0;
    int checked = 0, missing = 0;
    for (int i = 0; getline(&line, &cap, f) > 0; i++) {
        if (i % 97) continue;
        json_t *rec = json_loads(line, 0, &je);
        json_t *emails = json_object_get(rec, "emails");
        const char *sid = json_string_value(json_object_get(rec, "source_id"));
        bool minor = json_is_true(json_object_get(rec, "minor"));
        const char *dob = json_string_value(json_object_get(rec, "dob"));
        bool child = minor || (dob && under13(dob));
        if (!child && json_array_size(emails) > 0) {
            char body[400];
            snprintf(body, sizeof body, "{\"email\": \"%s\"}",
                     json_string_value(json_array_get(emails, 0)));
            r = e2e_call(&env, env.lookup_key, "idlookup.v1.Lookup/Search", body);
            bool found = false;
            const msgpack_object *ps = r ? e2e_get(&r->body, "persons") : NULL;
            for (uint32_t k = 0; ps && ps->type == MSGPACK_OBJECT_ARRAY && k < ps->via.array.size;
                 k++)
                found |= e2e_str_is(e2e_get(&ps->via.array.ptr[k], "id"), e2e_pid(sid));
            checked++;
            missing += !found;
            idl_reply_free(r);
        }
        json_decref(rec);
    }
    free(line);
    fclose(f);
    CHECK(checked > 100);
    CHECK_INT(missing, 0);
}

int main(void)
{
    e2e_init(&env);
    snprintf(file, sizeof file, "%s/people.ndjson", env.dir);
    char count[16];
    snprintf(count, sizeof count, "%d", N);
    const char *gen[] = {"gen", "--count", count, "--seed", "11", NULL};
    char *out = NULL;
    if (e2e_cli(gen, NULL, &out, NULL) != 0 || !out) return 99;
    FILE *f = fopen(file, "w");
    fputs(out, f);
    fclose(f);
    free(out);
    RUN(killed_ingest_then_rerun);
    e2e_cleanup(&env);
    return test_summary();
}
