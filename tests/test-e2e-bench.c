/* A short smoke run of idlookup-bench against a real daemon: a few seconds of
 * health, search and mixed load on generated data must finish with zero
 * errors and a well-formed JSON report.  Not a timing assertion. */
#include "e2e.h"
#include "testutil.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static e2e_env env;
static char pool[400];

/* Runs the bench with args; returns its exit status and the parsed report. */
static int run_bench(const char *const *args, json_t **report)
{
    const char *bench = getenv("IDL_BENCH");
    int fd[2];
    if (!bench || pipe(fd)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        const char *argv[40] = {bench};
        int i = 1;
        for (; args[i - 1] && i < 39; i++)
            argv[i] = args[i - 1];
        argv[i] = NULL;
        execv(bench, (char *const *)argv);
        _exit(127);
    }
    close(fd[1]);
    char buf[65536];
    size_t n = 0;
    ssize_t r;
    while ((r = read(fd[0], buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = 0;
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    json_error_t je;
    *report = json_loads(buf, 0, &je);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void check_report(json_t *rep)
{
    CHECK(rep != NULL);
    if (!rep) return;
    json_t *codes = json_object_get(rep, "codes");
    json_t *lat = json_object_get(rep, "latency_us");
    long long requests = json_integer_value(json_object_get(rep, "requests"));
    long long ok = json_integer_value(json_object_get(codes, "OK"));
    CHECK(requests > 0);
    CHECK_INT(ok, requests);
    CHECK(json_is_number(json_object_get(rep, "throughput_rps")));
    CHECK(json_is_number(json_object_get(rep, "duration_s")));
    static const char *const keys[] = {"min", "p50", "p90", "p99", "p999", "max"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        CHECK(json_is_integer(json_object_get(lat, keys[i])));
}

static void health_load(void)
{
    const char *args[] = {"--url", env.url, "--method", "health", "-c", "4",
                          "-z",    "2",     "--format", "json",   NULL};
    json_t *rep = NULL;
    CHECK_INT(run_bench(args, &rep), 0);
    check_report(rep);
    json_decref(rep);
}

static void search_with_baseline(void)
{
    const char *args[] = {
        "--url", env.url, "--key", env.lookup_key, "--method", "search", "--data", pool, "-c",
        "4",     "-z",    "2",     "--baseline",   "--format", "json",   NULL};
    json_t *rep = NULL;
    CHECK_INT(run_bench(args, &rep), 0);
    check_report(rep);
    CHECK(rep && json_is_number(json_object_get(rep, "ratio")));
    json_decref(rep);
}

static void mixed_open_loop(void)
{
    const char *args[] = {"--url",
                          env.url,
                          "--key",
                          env.lookup_key,
                          "--data",
                          pool,
                          "--mix",
                          "search=70,validate=15,verify=10,batch=5",
                          "--batch-size",
                          "10",
                          "-c",
                          "8",
                          "-z",
                          "2",
                          "--rate",
                          "200",
                          "--miss-ratio",
                          "0.2",
                          "--format",
                          "json",
                          NULL};
    json_t *rep = NULL;
    CHECK_INT(run_bench(args, &rep), 0);
    check_report(rep);
    /* Each mixed method has its own latency, from as many replies as that
     * method got: the four counts add up to the whole. */
    json_t *ml = json_object_get(rep, "method_latency_us");
    json_t *per = json_object_get(rep, "methods");
    CHECK(json_is_object(ml) && json_object_size(ml) == 4);
    static const char *const names[] = {"search", "validate", "verify", "batch"};
    long long sum = 0;
    for (int i = 0; i < 4; i++) {
        json_t *l = json_object_get(ml, names[i]);
        long long n = json_integer_value(json_object_get(per, names[i]));
        sum += n;
        CHECK(n > 0);
        CHECK(json_is_integer(json_object_get(l, "p99")));
        CHECK(json_integer_value(json_object_get(l, "min")) <=
              json_integer_value(json_object_get(l, "p99")));
        CHECK(json_integer_value(json_object_get(l, "max")) <=
              json_integer_value(json_object_get(json_object_get(rep, "latency_us"), "max")));
    }
    CHECK_INT(sum, json_integer_value(json_object_get(rep, "requests")));
    json_decref(rep);
}

/* Many contexts on a few sockets: 64 requests in flight, none lost, none
 * answered with another request's reply. */
static void closed_loop_many_contexts(void)
{
    const char *args[] = {"--url",  env.url, "--key",    env.lookup_key, "--method",  "search",
                          "--data", pool,    "-c",       "64",           "--sockets", "4",
                          "-z",     "2",     "--format", "json",         NULL};
    json_t *rep = NULL;
    CHECK_INT(run_bench(args, &rep), 0);
    check_report(rep);
    CHECK_INT(json_integer_value(json_object_get(rep, "errors")), 0);
    CHECK_INT(json_integer_value(json_object_get(rep, "concurrency")), 64);
    json_decref(rep);
}

/* The open loop sends what the schedule says: at 400/s for 3 s, 1,200
 * requests are due, each either answered or reported unsent, and nearly all
 * answered.  The bound is loose for slow sanitizer builds; a scheduler that
 * lost or doubled requests falls outside. */
static void open_loop_keeps_the_rate(void)
{
    const char *args[] = {"--url",        env.url, "--key",    env.lookup_key,
                          "--data",       pool,    "--mix",    "search=80,validate=10,verify=10",
                          "-c",           "16",    "-z",       "3",
                          "--rate",       "400",   "--format", "json",
                          "--max-errors", "0.1",   NULL};
    json_t *rep = NULL;
    CHECK_INT(run_bench(args, &rep), 0);
    check_report(rep);
    long long requests = json_integer_value(json_object_get(rep, "requests"));
    long long unsent = json_integer_value(json_object_get(rep, "unsent"));
    CHECK(requests >= 1080 && requests <= 1200);
    CHECK_INT(requests + unsent, 1200);
    CHECK_INT(json_integer_value(json_object_get(rep, "errors")), 0);
    CHECK(json_is_string(json_object_get(rep, "loop")) &&
          !strcmp(json_string_value(json_object_get(rep, "loop")), "open"));
    json_decref(rep);
}

int main(void)
{
    e2e_init(&env);
    /* Data: 2,000 generated persons, ingested before the daemon starts. */
    snprintf(pool, sizeof pool, "%s/people.ndjson", env.dir);
    const char *gen[] = {"gen", "--count", "2000", "--seed", "3", NULL};
    char *out = NULL;
    if (e2e_cli(gen, NULL, &out, NULL) != 0 || !out) {
        fprintf(stderr, "gen failed\n");
        return 99;
    }
    FILE *f = fopen(pool, "w");
    fputs(out, f);
    fclose(f);
    free(out);
    const char *ingest[] = {"ingest", "--data", env.data, "--quiet", pool, NULL};
    CHECK_INT(e2e_cli(ingest, NULL, NULL, NULL), 0);
    e2e_start(&env, NULL);
    RUN(health_load);
    RUN(search_with_baseline);
    RUN(mixed_open_loop);
    RUN(closed_loop_many_contexts);
    RUN(open_loop_keeps_the_rate);
    e2e_cleanup(&env);
    return test_summary();
}
