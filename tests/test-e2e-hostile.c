/* End to end over the real daemon: clients that misbehave on purpose.
 *
 * - A connection that pipelines thousands of requests and never reads the
 *   replies must not stall everyone else (the send timeout, and the cap on
 *   requests outstanding per connection).
 * - SIGTERM with such connections and busy clients exits within the drain
 *   time plus a bound, with every acknowledged query in the log.
 * - A key with no token left cannot flood the log through Batch.
 * - Hundreds of SIGHUP reloads of a large key file leak nothing.
 * - A world-readable fingerprint key or a world-writable key file is refused
 *   at start.
 * - A connection holding a partial frame is closed after the idle timeout.
 *
 * The hostile client is a plain TCP socket speaking nng's SP framing (the
 * 8-byte handshake, then frames of a 64-bit big-endian length, a 4-byte
 * request id with the high bit set and the msgpack envelope): nng's own req0
 * socket would read the replies.
 */
#include "e2e.h"
#include "status.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HEALTH "grpc.health.v1.Health/Check"
#define DESCRIBE "idlookup.v1.Meta/Describe"
#define SEARCH "idlookup.v1.Lookup/Search"
#define VALIDATE "idlookup.v1.Lookup/Validate"
#define BATCH "idlookup.v1.Lookup/Batch"

static long long mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int port_of(const char *url)
{
    const char *c = strrchr(url, ':');
    return c ? atoi(c + 1) : 0;
}

/* ---- the raw SP client ---- */

/* Connects and sends the req0 handshake; -1 on failure. */
static int sp_connect(const char *url, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    /* A small receive buffer makes the server's sends block after a few
     * replies instead of after megabytes: the same stall, sooner. */
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port_of(url)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    static const unsigned char hello[8] = {0, 'S', 'P', 0, 0, 0x30, 0, 0};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        send(fd, hello, sizeof hello, MSG_NOSIGNAL) != (ssize_t)sizeof hello) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One SP frame holding a request for method (no key, no body). */
static unsigned char *sp_frame(const char *method, size_t *len)
{
    void *env = NULL;
    size_t elen = 0;
    if (idl_request_encode(7, method, NULL, -1, NULL, 0, &env, &elen)) return NULL;
    *len = 8 + 4 + elen;
    unsigned char *f = malloc(*len);
    uint64_t n = 4 + elen;
    for (int i = 0; i < 8; i++)
        f[i] = (unsigned char)(n >> (56 - 8 * i));
    f[8] = 0x80, f[9] = 0, f[10] = 0, f[11] = 1; /* request id: the high bit ends the backtrace */
    memcpy(f + 12, env, elen);
    free(env);
    return f;
}

/* Whether the peer has closed fd (without reading what it sent). */
static bool sp_closed(int fd, int wait_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, wait_ms) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* A thread that pipelines `per_conn` requests on a connection it never
 * reads, and opens a new one whenever the server closes it, until stop. */
typedef struct {
    const char *url;
    const char *method;
    int per_conn;
    atomic_bool stop;
    atomic_long written; /* whole requests written */
    atomic_long conns;   /* connections opened */
    pthread_t th;
} flood;

static void *flood_main(void *arg)
{
    flood *f = arg;
    size_t flen;
    unsigned char *frame = sp_frame(f->method, &flen);
    while (frame && !atomic_load(&f->stop)) {
        int fd = sp_connect(f->url, 16384);
        if (fd < 0) {
            sleep_ms(20);
            continue;
        }
        atomic_fetch_add(&f->conns, 1);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        bool dead = false;
        for (int i = 0; i < f->per_conn && !dead && !atomic_load(&f->stop); i++) {
            size_t off = 0;
            while (off < flen && !atomic_load(&f->stop)) {
                ssize_t w = send(fd, frame + off, flen - off, MSG_NOSIGNAL);
                if (w > 0) {
                    off += (size_t)w;
                } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                    if (sp_closed(fd, 5)) {
                        dead = true;
                        break;
                    }
                } else {
                    dead = true;
                    break;
                }
            }
            if (off == flen) atomic_fetch_add(&f->written, 1);
        }
        while (!dead && !atomic_load(&f->stop))
            dead = sp_closed(fd, 20);
        close(fd);
    }
    free(frame);
    return NULL;
}

static void flood_start(flood *f, const char *url, const char *method, int per_conn)
{
    memset(f, 0, sizeof *f);
    f->url = url;
    f->method = method;
    f->per_conn = per_conn;
    pthread_create(&f->th, NULL, flood_main, f);
}

static void flood_stop(flood *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->th, NULL);
}

/* ---- Health latency under a flood ---- */

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

/* n Health calls from a well-behaved client, 50 ms apart; the median and the
 * worst latency in µs (a call that gets no reply within 3 s counts 3 s). */
static void health_latency(e2e_env *e, int n, long long *median, long long *worst)
{
    long long lat[200];
    if (n > 200) n = 200;
    int timeouts = 0;
    for (int i = 0; i < n; i++) {
        /* after three calls without a reply the pool is stalled: the rest
         * count as unanswered without waiting out each one */
        if (timeouts >= 3) {
            lat[i] = 3000000;
            continue;
        }
        idl_reply *r = NULL;
        long long t0 = mono_us();
        int rc = idl_client_call(e->c, HEALTH, NULL, 0, -1, 3000, &r);
        lat[i] = rc == 0 ? mono_us() - t0 : 3000000;
        timeouts += rc != 0;
        idl_reply_free(r);
        sleep_ms(50);
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp_ll);
    *median = lat[n / 2];
    *worst = lat[n - 1];
}

/* Finding 1: one unauthenticated connection pipelining thousands of Describes
 * (large replies) and never reading must not park the pool. */
static void slow_reader_does_not_stall(void)
{
    e2e_env e;
    e2e_init(&e);
    e2e_start(&e, NULL);
    flood f;
    flood_start(&f, e.url, DESCRIBE, 5000);
    sleep_ms(500); /* the replies back up */
    long long med, worst;
    health_latency(&e, 60, &med, &worst);
    flood_stop(&f);
    printf("  slow reader: %ld requests written on %ld connections; Health median %lld us, "
           "worst %lld us\n",
           atomic_load(&f.written), atomic_load(&f.conns), med, worst);
    CHECKM(atomic_load(&f.written) >= 1000, "the flood wrote only %ld requests",
           atomic_load(&f.written));
    CHECKM(med < 50000, "Health median %lld us under the flood (want < 50 ms)", med);
    CHECKM(worst < 1000000, "Health worst %lld us under the flood (want < 1 s)", worst);
    CHECKM(e2e_stop(&e) == 0, "the daemon did not stop cleanly");
    e2e_cleanup(&e);
}

/* Finding 1, the send timeout alone: with no cap per connection, a blocked
 * reply is dropped after --send-timeout-ms and its worker serves others. */
static void send_timeout_frees_workers(void)
{
    e2e_env e;
    e2e_init(&e);
    const char *extra[] = {"--max-pending-replies", "0", "--send-timeout-ms", "200", NULL};
    e2e_start(&e, extra);
    flood f;
    flood_start(&f, e.url, DESCRIBE, 5000);
    sleep_ms(1000);
    long long med, worst;
    health_latency(&e, 30, &med, &worst);
    flood_stop(&f);
    printf("  no cap, send timeout 200 ms: %ld requests written; Health median %lld us, worst "
           "%lld us\n",
           atomic_load(&f.written), med, worst);
    CHECKM(atomic_load(&f.written) >= 1000, "the flood wrote only %ld requests",
           atomic_load(&f.written));
    CHECKM(worst < 1000000, "Health worst %lld us with the send timeout (want < 1 s)", worst);
    CHECKM(e2e_stop(&e) == 0, "the daemon did not stop cleanly");
    e2e_cleanup(&e);
}

/* ---- finding 4: SIGTERM under load ---- */

#define MAX_ACKED 200000
typedef struct {
    e2e_env *e;
    const char *key;
    atomic_bool stop;
    size_t n;
    char (*rids)[32];
    pthread_t th;
} busy;

static void *busy_main(void *arg)
{
    busy *b = arg;
    idl_client *c = NULL;
    if (idl_client_open(&c, b->e->url, b->key)) return NULL;
    idl_buf body = {0};
    char msg[IDL_ERR_MAX];
    const char *json = "{\"email\": \"nobody.busy@example.org\"}";
    idl_json_to_msgpack(json, strlen(json), &body, msg);
    while (!atomic_load(&b->stop) && b->n < MAX_ACKED / 4) {
        idl_reply *r = NULL;
        if (idl_client_call(c, SEARCH, body.data, body.len, -1, 1000, &r) != 0) {
            sleep_ms(5);
            continue;
        }
        if (r->request_id) snprintf(b->rids[b->n++], 32, "%s", r->request_id);
        idl_reply_free(r);
    }
    idl_buf_free(&body);
    idl_client_close(c);
    return NULL;
}

static void sigterm_under_load(void)
{
    e2e_env e;
    e2e_init(&e);
    const char *extra[] = {"--drain-ms", "500", NULL};
    e2e_start(&e, extra);
    flood f[2];
    for (int i = 0; i < 2; i++)
        flood_start(&f[i], e.url, DESCRIBE, 5000);
    busy b[4];
    for (int i = 0; i < 4; i++) {
        memset(&b[i], 0, sizeof b[i]);
        b[i].e = &e;
        b[i].key = e.lookup_key;
        b[i].rids = calloc(MAX_ACKED / 4, 32);
        pthread_create(&b[i].th, NULL, busy_main, &b[i]);
    }
    sleep_ms(1500);
    long long t0 = mono_us();
    kill(e.pid, SIGTERM);
    int st = 0;
    bool exited = false;
    while (mono_us() - t0 < 15000000) {
        if (waitpid(e.pid, &st, WNOHANG) == e.pid) {
            exited = true;
            break;
        }
        sleep_ms(10);
    }
    long long took = mono_us() - t0;
    if (!exited) {
        kill(e.pid, SIGKILL);
        waitpid(e.pid, &st, 0);
    }
    e.pid = 0;
    for (int i = 0; i < 4; i++)
        atomic_store(&b[i].stop, true);
    for (int i = 0; i < 4; i++)
        pthread_join(b[i].th, NULL);
    for (int i = 0; i < 2; i++)
        flood_stop(&f[i]);
    size_t acked = 0;
    for (int i = 0; i < 4; i++)
        acked += b[i].n;
    printf("  SIGTERM under load: exited %s after %lld ms (status %d); %zu acknowledged calls\n",
           exited ? "" : "NOT", took / 1000, WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st),
           acked);
    CHECKM(exited && took < 2500000,
           "SIGTERM with --drain-ms 500: exit after %lld ms (want < "
           "2.5 s)",
           took / 1000);
    CHECKM(exited && WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
    CHECKM(acked > 100, "the busy clients got only %zu replies", acked);

    /* every acknowledged call is in the log */
    const char *args[] = {"analytics", "export", "--data", e.data, "--format", "ndjson", NULL};
    char *out = NULL, *err = NULL;
    int rc = e2e_cli(args, NULL, &out, &err);
    CHECKM(rc == 0, "analytics export: exit %d: %s", rc, err ? err : "");
    size_t missing = 0;
    const char *first_missing = NULL;
    for (int i = 0; out && i < 4; i++)
        for (size_t j = 0; j < b[i].n; j++) {
            char needle[48];
            snprintf(needle, sizeof needle, "\"%s\"", b[i].rids[j]);
            if (!strstr(out, needle)) {
                if (!missing) first_missing = b[i].rids[j];
                missing++;
            }
        }
    CHECKM(missing == 0, "%zu of %zu acknowledged calls are not in the log (first: %s)", missing,
           acked, first_missing ? first_missing : "");
    free(out);
    free(err);
    for (int i = 0; i < 4; i++)
        free(b[i].rids);
    e2e_cleanup(&e);
}

/* ---- finding 5: Batch on an empty bucket ---- */

static void add_key(e2e_env *e, const char *customer, const char *rate, char out[128])
{
    const char *args[] = {"keys",     "add",    "--file", e->keys, "--customer", customer,
                          "--scopes", "lookup", "--rate", rate,    NULL};
    char *o = NULL;
    int rc = e2e_cli(args, NULL, &o, NULL);
    CHECKM(rc == 0, "keys add: exit %d", rc);
    out[0] = 0;
    if (o) {
        char *nl = strchr(o, '\n');
        if (nl) *nl = 0;
        snprintf(out, 128, "%s", o);
    }
    free(o);
}

static void batch_on_empty_bucket_logs_once(void)
{
    e2e_env e;
    e2e_init(&e);
    char key[128];
    add_key(&e, "one-per-second", "1", key);
    e2e_start(&e, NULL);
    char json[100 * 96 + 32];
    size_t off = (size_t)snprintf(json, sizeof json, "{\"calls\":[");
    for (int i = 0; i < 100; i++)
        off += (size_t)snprintf(json + off, sizeof json - off,
                                "%s{\"method\":\"" VALIDATE
                                "\",\"body\":{\"email\":\"r%d@example.com\"}}",
                                i ? "," : "", i);
    snprintf(json + off, sizeof json - off, "]}");
    idl_buf body = {0};
    char msg[IDL_ERR_MAX];
    idl_json_to_msgpack(json, strlen(json), &body, msg);
    idl_client *c = NULL;
    CHECK(idl_client_open(&c, e.url, key) == 0);
    long long t0 = mono_us();
    int refused = 0, with_retry = 0;
    for (int i = 0; c && i < 200; i++) {
        idl_reply *r = NULL;
        if (idl_client_call(c, BATCH, body.data, body.len, -1, 5000, &r) != 0) continue;
        if (r->code == IDL_RESOURCE_EXHAUSTED) {
            refused++;
            const msgpack_object *ra = e2e_get(&r->details, "retry_after_ms");
            with_retry += ra && ra->type == MSGPACK_OBJECT_POSITIVE_INTEGER && ra->via.u64 > 0 &&
                          ra->via.u64 <= 1000;
        }
        idl_reply_free(r);
    }
    long long secs = (mono_us() - t0) / 1000000 + 1;
    idl_client_close(c);
    idl_buf_free(&body);
    CHECKM(e2e_stop(&e) == 0, "the daemon did not stop cleanly");

    const char *args[] = {"analytics", "export", "--data", e.data, "--format", "ndjson", NULL};
    char *out = NULL;
    int rc = e2e_cli(args, NULL, &out, NULL);
    CHECKM(rc == 0, "analytics export: exit %d", rc);
    size_t entries = 0;
    for (const char *p = out; p && (p = strstr(p, "\"one-per-second\"")); p++)
        entries++;
    free(out);
    /* a bucket of 1 refills once a second: at most one Batch of 101 entries
     * per second (plus the first), and one entry per refused Batch */
    long long bound = 101 * (secs + 1) + 200;
    printf("  200 Batches of 100 on a 1/s key in %lld s: %zu log entries, %d refused whole\n", secs,
           entries, refused);
    CHECKM((long long)entries <= bound, "%zu log entries for the key (want <= %lld)", entries,
           bound);
    CHECKM(refused >= 200 - secs - 1, "only %d of 200 Batches refused whole", refused);
    CHECKM(with_retry == refused, "%d of %d refused Batches carry details.retry_after_ms",
           with_retry, refused);
    e2e_cleanup(&e);
}

/* ---- finding 6: key rings are freed after SIGHUP ---- */

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = atol(line + 6);
    if (f) fclose(f);
    return kb;
}

static int count_in_file(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    if (f) fclose(f);
    return n;
}

static void sighup_reloads_do_not_leak(void)
{
    e2e_env e;
    e2e_init(&e);
    /* 1,000 more keys (random hashes: nobody holds their secrets) */
    FILE *kf = fopen(e.keys, "a");
    srand(42);
    for (int i = 0; kf && i < 1000; i++) {
        fprintf(kf, "k%012x\tfiller-%d\tlookup\t10\tactive\t", 0x100000 + i, i);
        for (int j = 0; j < 64; j++)
            fputc("0123456789abcdef"[rand() % 16], kf);
        fputc('\n', kf);
    }
    if (kf) fclose(kf);
    e2e_start(&e, NULL);
    /* a few reloads first, so the allocator reaches its steady state */
    int done = 0;
    long before = 0;
    for (int i = 0; i < 300; i++) {
        if (i == 10) before = rss_kb(e.pid);
        kill(e.pid, SIGHUP);
        long long t0 = mono_us();
        while (count_in_file(e.log, "SIGHUP: reloaded 1005 keys") < i + 1 &&
               mono_us() - t0 < 10000000)
            sleep_ms(1);
        if (count_in_file(e.log, "SIGHUP: reloaded 1005 keys") < i + 1) break;
        done++;
    }
    CHECKM(done == 300, "only %d of 300 reloads were logged", done);
    sleep_ms(1500); /* retired rings are freed within a second */
    long after = rss_kb(e.pid);
    printf("  300 reloads of 1,005 keys: RSS %ld kB after 10, %ld kB after 300 (+%ld kB)\n", before,
           after, after - before);
#ifndef __SANITIZE_ADDRESS__
    /* (ASan keeps freed memory in quarantine: there the exit's leak check
     * below is the test) */
    CHECKM(after - before < 16 * 1024, "RSS grew by %ld kB over 290 reloads (want < 16 MB)",
           after - before);
#endif
    idl_reply *r = e2e_call(&e, e.lookup_key, SEARCH, "{\"email\": \"a@example.org\"}");
    CHECKM(r && r->code == 0, "Search after the reloads: code %d", r ? r->code : -1);
    idl_reply_free(r);
    /* under the sanitizer build a leak fails the exit status */
    int st = e2e_stop(&e);
    CHECKM(st == 0, "exit status %d after the reloads (a leak report under ASan?)", st);
    e2e_cleanup(&e);
}

/* ---- finding 7: permissions and partial frames ---- */

/* Runs the daemon with e's flags; returns its exit status, or -1 when it is
 * still running after 5 s (then it is killed).  Its stderr goes to *err. */
static int start_expect_exit(e2e_env *e, char **err)
{
    int pe[2];
    if (pipe(pe)) return -2;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pe[1], 2);
        close(pe[0]);
        const char *argv[] = {getenv("IDL_DAEMON"), "--data", e->data, "--keys", e->keys,
                              "--listen",           e->url,   NULL};
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pe[1]);
    int st = 0, rc = -1;
    long long t0 = mono_us();
    while (mono_us() - t0 < 5000000) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
            rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        sleep_ms(20);
    }
    if (rc == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    char buf[4096];
    ssize_t n = read(pe[0], buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    close(pe[0]);
    *err = strdup(buf);
    return rc;
}

static void refuses_loose_permissions(void)
{
    e2e_env e;
    e2e_init(&e);
    e2e_start(&e, NULL); /* creates DATA/fingerprint.key */
    CHECK(e2e_stop(&e) == 0);
    char fp[400];
    snprintf(fp, sizeof fp, "%s/fingerprint.key", e.data);
    struct stat sb;
    CHECKM(stat(fp, &sb) == 0 && (sb.st_mode & 0777) == 0600, "fingerprint.key mode %o",
           (unsigned)(sb.st_mode & 0777));

    chmod(fp, 0644);
    char *err = NULL;
    int rc = start_expect_exit(&e, &err);
    CHECKM(rc == 1, "world-readable fingerprint key: exit %d (want 1; -1: it started)", rc);
    CHECKM(err && strstr(err, fp) && strstr(err, "0644") && strstr(err, "readable"),
           "the error names the file and its mode: %s", err ? err : "");
    free(err);
    chmod(fp, 0600);

    chmod(e.keys, 0666);
    rc = start_expect_exit(&e, &err);
    CHECKM(rc == 1, "world-writable key file: exit %d (want 1; -1: it started)", rc);
    CHECKM(err && strstr(err, e.keys) && strstr(err, "0666") && strstr(err, "writable"),
           "the error names the file and its mode: %s", err ? err : "");
    free(err);

    /* a reload from a file that turned world-writable keeps the old keys */
    chmod(e.keys, 0600);
    e2e_start(&e, NULL);
    chmod(e.keys, 0666);
    kill(e.pid, SIGHUP);
    long long t0 = mono_us();
    while (count_in_file(e.log, "keeping the old keys") < 1 && mono_us() - t0 < 5000000)
        sleep_ms(10);
    CHECKM(count_in_file(e.log, "keeping the old keys") == 1,
           "SIGHUP with a world-writable key file was not refused");
    idl_reply *r = e2e_call(&e, e.lookup_key, SEARCH, "{\"email\": \"a@example.org\"}");
    CHECKM(r && r->code == 0, "Search after the refused reload: code %d", r ? r->code : -1);
    idl_reply_free(r);
    chmod(e.keys, 0600);
    CHECK(e2e_stop(&e) == 0);
    e2e_cleanup(&e);
}

static void partial_frame_is_closed(void)
{
    e2e_env e;
    e2e_init(&e);
    const char *extra[] = {"--idle-timeout-ms", "1000", NULL};
    e2e_start(&e, extra);
    int fd = sp_connect(e.url, 0);
    CHECK(fd >= 0);
    /* a header announcing 100 bytes, then 10 of them */
    unsigned char part[18] = {0, 0, 0, 0, 0, 0, 0, 100, 0x80, 0, 0, 1};
    CHECK(fd >= 0 && send(fd, part, sizeof part, MSG_NOSIGNAL) == (ssize_t)sizeof part);
    long long t0 = mono_us();
    bool closed = fd >= 0 && sp_closed(fd, 6000);
    long long took = mono_us() - t0;
    printf("  partial frame: %s after %lld ms\n", closed ? "closed" : "still open", took / 1000);
    CHECKM(closed, "a connection holding a partial frame was still open after 6 s");
    CHECKM(took >= 900000, "closed after %lld ms, before the 1 s timeout", took / 1000);
    if (fd >= 0) close(fd);
    /* a well-behaved client whose idle connection was closed reconnects by
     * itself; a request sent just as the server closes it fails with a reset
     * (req0 does not resend: the README says so), so a second try is allowed */
    sleep_ms(2500);
    idl_reply *r = NULL;
    int rc = idl_client_call(e.c, HEALTH, NULL, 0, -1, 3000, &r);
    if (rc != 0) rc = idl_client_call(e.c, HEALTH, NULL, 0, -1, 3000, &r);
    CHECKM(rc == 0 && r->code == 0, "Health after idle closes: rc %d code %d", rc,
           r ? r->code : -1);
    idl_reply_free(r);
    CHECK(e2e_stop(&e) == 0);
    e2e_cleanup(&e);
}

/* Reads one SP reply frame from fd (blocking, within wait_ms): its
 * backtrace's first word in *word; the payload length, or -1. */
static long sp_read_reply(int fd, int wait_ms, uint32_t *word)
{
    unsigned char hdr[12];
    size_t got = 0;
    while (got < sizeof hdr) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, wait_ms) <= 0) return -1;
        ssize_t r = recv(fd, hdr + got, sizeof hdr - got, 0);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    uint64_t n = 0;
    for (int i = 0; i < 8; i++)
        n = (n << 8) | hdr[i];
    *word = (uint32_t)hdr[8] << 24 | (uint32_t)hdr[9] << 16 | (uint32_t)hdr[10] << 8 | hdr[11];
    unsigned char skip[4096];
    for (uint64_t left = n - 4; left > 0;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, wait_ms) <= 0) return -1;
        ssize_t r = recv(fd, skip, left < sizeof skip ? left : sizeof skip, 0);
        if (r <= 0) return -1;
        left -= (uint64_t)r;
    }
    return (long)n;
}

/* The daemon speaks SP itself: its framing rules, as nng's rep0 has them.
 * Pipelined requests in one write are all answered, each with its own
 * backtrace; a request with more than 8 hops is dropped and the connection
 * goes on; a frame too short for a backtrace closes the connection; a peer
 * that is not req0 is refused at the handshake.  The service stays up. */
static void sp_framing_rules(void)
{
    e2e_env e;
    e2e_init(&e);
    e2e_start(&e, NULL);
    size_t flen;
    unsigned char *frame = sp_frame(HEALTH, &flen);
    CHECK(frame != NULL);
    int fd = frame ? sp_connect(e.url, 0) : -1;
    CHECK(fd >= 0);
    if (fd >= 0) {
        unsigned char hs[8];
        CHECK(recv(fd, hs, sizeof hs, MSG_WAITALL) == 8 && hs[1] == 'S' && hs[5] == 0x31);
        /* 20 requests in one write, ids 1..20 */
        unsigned char *many = malloc(flen * 20);
        for (int i = 0; i < 20; i++) {
            memcpy(many + flen * (size_t)i, frame, flen);
            many[flen * (size_t)i + 11] = (unsigned char)(i + 1);
        }
        CHECK(send(fd, many, flen * 20, MSG_NOSIGNAL) == (ssize_t)(flen * 20));
        free(many);
        unsigned seen = 0;
        for (int i = 0; i < 20; i++) {
            uint32_t w = 0;
            if (sp_read_reply(fd, 3000, &w) < 0) break;
            if ((w & 0x80000000u) && (w & 0xff) >= 1 && (w & 0xff) <= 20) seen |= 1u << (w & 0xff);
        }
        CHECKM(seen == 0x1ffffeu, "replies to pipelined requests: mask %x", seen);
        /* 9 hops (words without the high bit) before the request id: dropped */
        size_t hl = 4 * 9;
        unsigned char *deep = calloc(1, flen + hl);
        uint64_t n = flen - 8 + hl;
        for (int i = 0; i < 8; i++)
            deep[i] = (unsigned char)(n >> (56 - 8 * i));
        memcpy(deep + 8 + hl, frame + 8, flen - 8);
        CHECK(send(fd, deep, flen + hl, MSG_NOSIGNAL) == (ssize_t)(flen + hl));
        free(deep);
        uint32_t w = 0;
        CHECKM(sp_read_reply(fd, 500, &w) < 0 && !sp_closed(fd, 0),
               "a request with 9 hops was answered, or closed the connection");
        /* the connection still serves */
        CHECK(send(fd, frame, flen, MSG_NOSIGNAL) == (ssize_t)flen);
        CHECKM(sp_read_reply(fd, 3000, &w) > 0 && w == 0x80000001u, "no reply after the drop");
        /* a 2-byte frame: no room for a backtrace, the connection is closed */
        unsigned char tiny[10] = {0, 0, 0, 0, 0, 0, 0, 2, 0x80, 0};
        CHECK(send(fd, tiny, sizeof tiny, MSG_NOSIGNAL) == (ssize_t)sizeof tiny);
        CHECKM(sp_closed(fd, 3000), "a frame too short for a backtrace did not close");
        close(fd);
    }
    /* a peer speaking rep0 (not req0) is refused at the handshake */
    int fd2 = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port_of(e.url)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    static const unsigned char rep_hello[8] = {0, 'S', 'P', 0, 0, 0x31, 0, 0};
    CHECK(connect(fd2, (struct sockaddr *)&a, sizeof a) == 0 &&
          send(fd2, rep_hello, sizeof rep_hello, MSG_NOSIGNAL) == 8);
    CHECKM(sp_closed(fd2, 3000), "a rep0 peer was not refused");
    close(fd2);
    free(frame);
    idl_reply *r = e2e_call(&e, NULL, HEALTH, "{}");
    CHECKM(r && r->code == 0, "Health after the framing cases");
    idl_reply_free(r);
    CHECK(e2e_stop(&e) == 0);
    e2e_cleanup(&e);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    /* one case by name, for debugging: test-e2e-hostile NAME */
    const char *only = argc > 1 ? argv[1] : NULL;
#define MAYBE(fn)                                                                                  \
    if (!only || strcmp(only, #fn) == 0) RUN(fn)
    MAYBE(slow_reader_does_not_stall);
    MAYBE(send_timeout_frees_workers);
    MAYBE(sigterm_under_load);
    MAYBE(batch_on_empty_bucket_logs_once);
    MAYBE(sighup_reloads_do_not_leak);
    MAYBE(refuses_loose_permissions);
    MAYBE(partial_frame_is_closed);
    MAYBE(sp_framing_rules);
    return test_summary();
}
