/* Cluster test support (see natscl.h). */
#include "natscl.h"
#include "natsconn.h"
#include "status.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t spawned[32];
static int nspawned;
static bool atexit_set;

static void kill_spawned(void)
{
    for (int i = 0; i < nspawned; i++)
        if (spawned[i] > 0) {
            kill(spawned[i], SIGKILL);
            waitpid(spawned[i], NULL, 0);
        }
    nspawned = 0;
}

static void track(pid_t p)
{
    if (!atexit_set) {
        atexit(kill_spawned);
        atexit_set = true;
    }
    for (int i = 0; i < nspawned; i++)
        if (spawned[i] <= 0) {
            spawned[i] = p;
            return;
        }
    if (nspawned < 32) spawned[nspawned++] = p;
}

static void untrack(pid_t p)
{
    for (int i = 0; i < nspawned; i++)
        if (spawned[i] == p) spawned[i] = 0;
}

static void die(const char *what)
{
    fprintf(stderr, "natscl harness: %s\n", what);
    exit(99);
}

uint64_t natscl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void natscl_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(fd, (struct sockaddr *)&a, &l))
        die("cannot find a free port");
    int port = ntohs(a.sin_port);
    close(fd);
    return port;
}

const char *natscl_server(void)
{
    static char path[512];
    const char *env = getenv("IDL_NATS_SERVER");
    if (env && *env) return access(env, X_OK) == 0 ? env : NULL;
    const char *dirs[] = {"/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        snprintf(path, sizeof path, "%s/nats-server", dirs[i]);
        if (access(path, X_OK) == 0) return path;
    }
    return NULL;
}

void natscl_start_one(natscl *c, int i)
{
    const char *bin = natscl_server();
    if (!bin) die("nats-server is not installed");
    char sd[300], name[16], port[16], cl[64], routes[200], log[300];
    snprintf(sd, sizeof sd, "%s/s%d", c->dir, i);
    snprintf(log, sizeof log, "%s/s%d.log", c->dir, i);
    snprintf(name, sizeof name, "s%d", i);
    snprintf(port, sizeof port, "%d", c->port[i]);
    snprintf(cl, sizeof cl, "nats://127.0.0.1:%d", c->cport[i]);
    routes[0] = 0;
    for (int j = 0; j < c->n; j++) {
        size_t l = strlen(routes);
        snprintf(routes + l, sizeof routes - l, "%snats://127.0.0.1:%d", j ? "," : "", c->cport[j]);
    }
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (c->n > 1)
            execl(bin, bin, "-js", "-sd", sd, "-a", "127.0.0.1", "-p", port, "-n", name,
                  "--cluster_name", "idl", "--cluster", cl, "--routes", routes, (char *)NULL);
        else
            execl(bin, bin, "-js", "-sd", sd, "-a", "127.0.0.1", "-p", port, "-n", name,
                  (char *)NULL);
        _exit(127);
    }
    c->pid[i] = pid;
    track(pid);
}

void natscl_wait_ready(natscl *c)
{
    char err[IDL_ERR_MAX];
    for (int t = 0; t < 150; t++) {
        idl_natsconn *nc = NULL;
        if (idl_natsconn_open(&nc, c->urls, "natscl", true, err) == IDL_OK) {
            int rc = idl_natsconn_ensure(nc, err);
            uint64_t seq;
            if (rc == IDL_OK) rc = idl_natsconn_last_seq(nc, "IDL_CHANGES", &seq);
            idl_natsconn_close(nc);
            if (rc == IDL_OK) return;
        }
        natscl_sleep_ms(200);
    }
    fprintf(stderr, "natscl: last error: %s\n", err);
    die("the NATS cluster did not accept JetStream requests within 30 s");
}

void natscl_start(natscl *c, int n)
{
    memset(c, 0, sizeof(*c));
    c->n = n;
    snprintf(c->dir, sizeof c->dir, "/tmp/idl-natscl-XXXXXX");
    if (!mkdtemp(c->dir)) die("mkdtemp");
    for (int i = 0; i < n; i++) {
        c->port[i] = free_port();
        c->cport[i] = free_port();
        size_t l = strlen(c->urls);
        snprintf(c->urls + l, sizeof c->urls - l, "%snats://127.0.0.1:%d", i ? "," : "",
                 c->port[i]);
    }
    for (int i = 0; i < n; i++)
        natscl_start_one(c, i);
    natscl_wait_ready(c);
}

void natscl_kill9(natscl *c, int i)
{
    if (c->pid[i] <= 0) return;
    kill(c->pid[i], SIGKILL);
    waitpid(c->pid[i], NULL, 0);
    untrack(c->pid[i]);
    c->pid[i] = 0;
}

void natscl_stop_all(natscl *c)
{
    for (int i = 0; i < c->n; i++)
        natscl_kill9(c, i);
}

void natscl_cleanup(natscl *c)
{
    natscl_stop_all(c);
    if (c->dir[0] && !getenv("IDL_E2E_KEEP")) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->dir);
        if (system(cmd) != 0) fprintf(stderr, "natscl: cannot remove %s\n", c->dir);
    }
}

static void copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    if (!a || !b) die("cannot copy a file");
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        fwrite(buf, 1, n, b);
    fclose(a);
    fclose(b);
}

void natscl_node_init(e2e_env *e, const e2e_env *first)
{
    e2e_init(e);
    if (!first) return;
    /* One customer base: the same key file and keys on every node. */
    copy_file(first->keys, e->keys);
    memcpy(e->lookup_key, first->lookup_key, sizeof e->lookup_key);
    memcpy(e->privacy_key, first->privacy_key, sizeof e->privacy_key);
    memcpy(e->admin_key, first->admin_key, sizeof e->admin_key);
    memcpy(e->all_key, first->all_key, sizeof e->all_key);
    memcpy(e->slow_key, first->slow_key, sizeof e->slow_key);
}

const char *natscl_health(e2e_env *e, char out[32])
{
    out[0] = 0;
    idl_reply *r = NULL;
    if (idl_client_call(e->c, "grpc.health.v1.Health/Check", NULL, 0, -1, 200, &r) == 0) {
        const msgpack_object *s = e2e_get(&r->body, "status");
        if (r->code == 0 && s && s->type == MSGPACK_OBJECT_STR && s->via.str.size < 32) {
            memcpy(out, s->via.str.ptr, s->via.str.size);
            out[s->via.str.size] = 0;
        }
        idl_reply_free(r);
    }
    return out;
}

void natscl_node_start(natscl *c, e2e_env *e, const char *name, const e2e_env *first, bool wait)
{
    char fp[400];
    snprintf(fp, sizeof fp, "%s/fingerprint.key", (first ? first : e)->dir);
    const char *extra[] = {"--nats", c->urls, "--node", name, "--fingerprint-key", fp, NULL};
    if (wait) {
        e2e_start(e, extra);
        track(e->pid);
        return;
    }
    const char *bin = getenv("IDL_DAEMON");
    if (!bin) die("IDL_DAEMON is not set");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        int fd = open(e->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
        }
        execl(bin, bin, "--data", e->data, "--listen", e->url, "--keys", e->keys, "--drain-ms",
              "100", "--nats", c->urls, "--node", name, "--fingerprint-key", fp, (char *)NULL);
        _exit(127);
    }
    e->pid = pid;
    track(pid);
    if (!e->c && idl_client_open(&e->c, e->url, NULL)) die("client open");
}
