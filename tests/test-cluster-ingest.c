/* `idlookup ingest --nats` when acknowledgements are lost (the 1M ingest
 * that stopped with "the change stream could not be written"): the one
 * NATS server is frozen (SIGSTOP) while the ingest publishes, so the client
 * drops the connection as stale and the acknowledgements of what it had
 * sent never come.  The ingest must still finish, every record must reach
 * a node, and it must not take the library's 60 s to notice.  Then with 3
 * servers, two of them killed mid-ingest: the stream has no leader, and
 * JetStream answers "no responders" at once; the ingest must wait for the
 * election instead of spending its attempts in milliseconds.  Skipped (77)
 * without nats-server. */
#include "natscl.h"
#include "testutil.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PERSONS 40000
#define STATS "idlookup.v1.Admin/Stats"

static natscl cl, cl3;
static e2e_env A, B;

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

/* Waits up to ms for pid; its exit status, or -1 (then it is killed). */
static int wait_exit(pid_t pid, int ms)
{
    uint64_t t0 = natscl_now_ms();
    int st = 0;
    while (natscl_now_ms() - t0 < (uint64_t)ms) {
        if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        natscl_sleep_ms(50);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

/* The outage an ingest runs into halfway through its input: begin() once
 * the first half is acknowledged, end() 2.5 s later. */
typedef struct {
    void (*begin)(void);
    void (*end)(void);
} outage;

/* Ingests persons (gen --seed seed) through urls into node e's cluster with
 * the outage in the middle; the ingest must exit 0 and e must then hold
 * what `ingest --data` stores for the same file. */
static void ingest_through(e2e_env *e, const char *urls, int persons_n, const char *seed,
                           const outage *o)
{
    char count[16];
    snprintf(count, sizeof count, "%d", persons_n);
    const char *gen[] = {"gen", "--count", count, "--seed", seed, NULL};
    char *people = NULL;
    CHECK_INT(e2e_cli(gen, NULL, &people, NULL), 0);
    CHECK(people != NULL);
    if (!people) return;
    const char *path = e2e_write_file(e, "people.ndjson", people);
    char file[400], fresh[400];
    snprintf(file, sizeof file, "%s", path);
    snprintf(fresh, sizeof fresh, "%s/fresh", e->dir);
    /* What a store holds after these persons: the node must hold as many. */
    char *expect = NULL;
    const char *direct[] = {"ingest", "--quiet", "--data", fresh, file, NULL};
    CHECK_INT(e2e_cli(direct, NULL, &expect, NULL), 0);
    const char *st = expect ? strstr(expect, "\"stored\": ") : NULL;
    long long stored = st ? atoll(st + 10) : -1;
    free(expect);

    int in[2], errp[2];
    CHECK(pipe(in) == 0 && pipe(errp) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(errp[1], 2);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        close(in[1]);
        close(errp[0]);
        execl(getenv("IDL_CLI"), "idlookup", "ingest", "--quiet", "--nats", urls, "-",
              (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(errp[1]);
    size_t len = strlen(people), half = len / 2;
    while (half < len && people[half - 1] != '\n')
        half++;
    uint64_t t0 = natscl_now_ms();
    write_all(in[1], people, half);
    natscl_sleep_ms(1500); /* the first half published and acknowledged */
    o->begin();
    /* The rest is written by another process: the ingest stops reading
     * while it waits for acknowledgements. */
    pid_t writer = fork();
    if (writer == 0) {
        write_all(in[1], people + half, len - half);
        _exit(0);
    }
    close(in[1]);
    natscl_sleep_ms(2500);
    o->end();
    CHECK_INT(wait_exit(writer, 30000), 0);
    int rc = wait_exit(pid, 60000);
    uint64_t took = natscl_now_ms() - t0;
    char err[4096] = "";
    size_t got = 0;
    for (ssize_t n;
         got < sizeof err - 1 && (n = read(errp[0], err + got, sizeof err - 1 - got)) > 0;)
        got += (size_t)n;
    err[got] = 0;
    close(errp[0]);
    printf("# ingest --nats exit %d after %llu ms: %s\n", rc, (unsigned long long)took, err);
    CHECKM(rc == 0, "ingest --nats failed (%d): %s", rc, err);

    long long persons = -1;
    char last[512] = "";
    t0 = natscl_now_ms();
    do {
        idl_reply *r = e2e_call(e, e->admin_key, STATS, "{}");
        persons = r && r->code == 0 ? e2e_uint(e2e_get(&r->body, "persons")) : -1;
        /* What the node said last, when it was not a count. */
        if (persons < 0)
            snprintf(last, sizeof last, "%s", r ? e2e_json(&r->root) : "no reply (transport)");
        idl_reply_free(r);
        if (persons == stored) break;
        natscl_sleep_ms(200);
    } while (natscl_now_ms() - t0 < 20000);
    printf("# persons on the node %lld, stored by ingest --data %lld%s%s\n", persons, stored,
           persons < 0 ? "; last Stats reply: " : "", persons < 0 ? last : "");
    CHECK(stored > persons_n / 2);
    CHECK_INT(persons, stored);
    free(people);
}

/* Frozen with the second half in flight: the client gives the connection
 * up as stale (pings every 500 ms, two missed). */
static void freeze(void)
{
    kill(cl.pid[0], SIGSTOP);
}

static void thaw(void)
{
    kill(cl.pid[0], SIGCONT);
}

static void lost_acknowledgements(void)
{
    outage o = {freeze, thaw};
    ingest_through(&A, cl.urls, PERSONS, "3", &o);
}

/* Two of three servers gone: the streams (R=3) lose their quorum and
 * leader while the ingest's own server stays up. */
static void kill_two(void)
{
    natscl_kill9(&cl3, 1);
    natscl_kill9(&cl3, 2);
}

static void restart_two(void)
{
    natscl_start_one(&cl3, 1);
    natscl_start_one(&cl3, 2);
}

static void no_stream_leader(void)
{
    /* Only the server that stays up: the client must not fail over, so
     * what it meets is a stream without a leader, not a lost connection. */
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", cl3.port[0]);
    outage o = {kill_two, restart_two};
    ingest_through(&B, url, 6000, "5", &o);
}

int main(void)
{
    if (!natscl_server()) {
        printf("nats-server is not installed (apt install nats-server): test skipped\n");
        return 77;
    }
    natscl_start(&cl, 1);
    natscl_node_init(&A, NULL);
    natscl_node_start(&cl, &A, "a", NULL, true);
    RUN(lost_acknowledgements);
    e2e_cleanup(&A);
    natscl_cleanup(&cl);
    natscl_start(&cl3, 3);
    natscl_node_init(&B, NULL);
    natscl_node_start(&cl3, &B, "b", NULL, true);
    RUN(no_stream_leader);
    e2e_cleanup(&B);
    natscl_cleanup(&cl3);
    return test_summary();
}
