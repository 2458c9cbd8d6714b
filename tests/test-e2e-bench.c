/* A short smoke run of idlookup-bench against a real daemon: a few seconds of
 * health, search and mixed load on generated data must finish with zero
 * errors and a well-formed JSON report.  Not a timing assertion. */
#include "e2e.h"
#include "testutil.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static e2e_env env;
static char pool[400];

/* Starts the bench with args, its stdout on a pipe: returns its pid and
 * writes the pipe's read end to *out_fd (-1 and no pid on failure). */
static pid_t start_bench(const char *const *args, int *out_fd)
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
    *out_fd = fd[0];
    return pid;
}

/* Reads the bench's report and waits for it: its exit status. */
static int finish_bench(pid_t pid, int fd, json_t **report)
{
    char buf[65536];
    size_t n = 0;
    ssize_t r;
    while ((r = read(fd, buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = 0;
    close(fd);
    int st;
    waitpid(pid, &st, 0);
    json_error_t je;
    *report = json_loads(buf, 0, &je);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs the bench with args; returns its exit status and the parsed report. */
static int run_bench(const char *const *args, json_t **report)
{
    int fd;
    pid_t pid = start_bench(args, &fd);
    if (pid < 0) return -1;
    return finish_bench(pid, fd, report);
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
    if (ok != requests) {
        /* Which codes came back says why (a key's rate limit, a timeout). */
        char *dump = json_dumps(codes, JSON_COMPACT);
        CHECKM(ok == requests, "%lld of %lld requests OK; codes %s", ok, requests,
               dump ? dump : "?");
        free(dump);
    }
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

static long long code_count(json_t *rep, const char *code)
{
    return json_integer_value(json_object_get(json_object_get(rep, "codes"), code));
}

/* The raw client with two threads owning four connections spread over a
 * two-URL list: Batch replies answered in full, each inner lookup counted. */
static void raw_threads_and_batch(void)
{
    char urls[700];
    snprintf(urls, sizeof urls, "%s,%s", env.url, env.url);
    const char *args[] = {
        "--url",        urls, "--key",    env.lookup_key, "--method",  "batch", "--data",    pool,
        "--batch-size", "10", "-c",       "16",           "--sockets", "4",     "--threads", "2",
        "-z",           "2",  "--format", "json",         NULL};
    json_t *rep = NULL;
    CHECK_INT(run_bench(args, &rep), 0);
    check_report(rep);
    CHECK_STR(json_string_value(json_object_get(rep, "client")), "raw");
    CHECK_INT(json_integer_value(json_object_get(rep, "threads")), 2);
    long long requests = json_integer_value(json_object_get(rep, "requests"));
    json_t *inner = json_object_get(rep, "batch_codes");
    long long inner_all = 0;
    const char *k;
    json_t *v;
    json_object_foreach(inner, k, v) inner_all += json_integer_value(v);
    CHECK(requests > 0);
    CHECK_INT(inner_all, 10 * requests);
    json_decref(rep);
}

/* --client nng keeps the nng path, for comparison. */
static void nng_client_on_request(void)
{
    const char *args[] = {"--url", env.url, "--method", "health",   "--client", "nng", "-c",
                          "4",     "-z",    "1",        "--format", "json",     NULL};
    json_t *rep = NULL;
    CHECK_INT(run_bench(args, &rep), 0);
    check_report(rep);
    CHECK_STR(json_string_value(json_object_get(rep, "client")), "nng");
    json_decref(rep);
}

/* The daemon stops in the middle of a raw-client run and comes back: the
 * requests it dropped count as errors, the bench redials and ends on time
 * with a report.  Then it is killed for good: every later request fails,
 * and the bench still ends (exit 1) instead of waiting. */
static void raw_client_survives_the_daemon(void)
{
    const char *args[] = {
        "--url",        env.url, "--key",    env.lookup_key, "--method", "search",       "--data",
        pool,           "-c",    "8",        "-z",           "3",        "--timeout-ms", "500",
        "--max-errors", "1",     "--format", "json",         NULL};
    int fd;
    json_t *rep = NULL;
    pid_t pid = start_bench(args, &fd);
    CHECK(pid > 0);
    usleep(800000);
    CHECK_INT(e2e_stop(&env), 0);
    usleep(500000);
    e2e_start(&env, NULL);
    CHECK_INT(finish_bench(pid, fd, &rep), 0);
    CHECK(rep != NULL);
    long long requests = json_integer_value(json_object_get(rep, "requests"));
    long long ok = code_count(rep, "OK");
    long long failed = code_count(rep, "TRANSPORT_ERROR") + code_count(rep, "TIMEOUT");
    long long all = 0;
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(rep, "codes"), k, v) all += json_integer_value(v);
    CHECK(ok > 0);
    CHECK(failed > 0);
    /* A daemon that is shutting down may answer UNAVAILABLE too. */
    CHECK_INT(all, requests);
    json_decref(rep);

    args[15] = "0"; /* --max-errors 0: the failures make it exit 1 */
    pid = start_bench(args, &fd);
    CHECK(pid > 0);
    usleep(800000);
    e2e_kill9(&env);
    time_t t0 = time(NULL);
    CHECK_INT(finish_bench(pid, fd, &rep), 1);
    /* 3 s of run and 0.5 s of timeout, and slack for a loaded machine. */
    CHECK(time(NULL) - t0 <= 10);
    CHECK(rep != NULL);
    CHECK(code_count(rep, "OK") > 0);
    CHECK(code_count(rep, "TRANSPORT_ERROR") + code_count(rep, "TIMEOUT") > 0);
    json_decref(rep);
    e2e_start(&env, NULL);
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
    RUN(raw_threads_and_batch);
    RUN(nng_client_on_request);
    RUN(raw_client_survives_the_daemon);
    e2e_cleanup(&env);
    return test_summary();
}
