/* End-to-end test support (see e2e.h). */
#include "e2e.h"
#include "status.h"
#include "store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static e2e_env *current; /* so a harness failure still stops the daemon */

static void die(const char *what)
{
    fprintf(stderr, "e2e harness: %s\n", what);
    if (current && current->pid) {
        kill(current->pid, SIGKILL);
        waitpid(current->pid, NULL, 0);
        current->pid = 0;
    }
    exit(99);
}

static const char *env_or_die(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr, "e2e harness: %s is not set (run through meson test)\n", name);
        exit(99);
    }
    return v;
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

static char *slurp_fd(int fd)
{
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    ssize_t r;
    while ((r = read(fd, b + n, cap - n - 1)) > 0) {
        n += (size_t)r;
        if (cap - n < 2) b = realloc(b, cap *= 2);
    }
    b[n] = 0;
    return b;
}

int e2e_cli(const char *const *args, const char *stdin_text, char **out, char **err)
{
    return e2e_exec("IDL_CLI", args, stdin_text, out, err);
}

int e2e_exec(const char *exe_env, const char *const *args, const char *stdin_text, char **out,
             char **err)
{
    const char *cli = env_or_die(exe_env);
    int po[2], pe[2], pi[2];
    if (pipe(po) || pipe(pe) || pipe(pi)) die("pipe");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        dup2(pi[0], 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]), close(pe[0]), close(pi[1]);
        const char *argv[64] = {cli};
        int i = 1;
        for (; args[i - 1] && i < 63; i++)
            argv[i] = args[i - 1];
        argv[i] = NULL;
        execv(cli, (char *const *)argv);
        _exit(127);
    }
    close(po[1]), close(pe[1]), close(pi[0]);
    if (stdin_text) {
        size_t len = strlen(stdin_text), off = 0;
        while (off < len) {
            ssize_t w = write(pi[1], stdin_text + off, len - off);
            if (w <= 0) break;
            off += (size_t)w;
        }
    }
    close(pi[1]);
    /* stderr is read after stdout; outputs in tests are small. */
    char *o = slurp_fd(po[0]);
    char *e = slurp_fd(pe[0]);
    close(po[0]), close(pe[0]);
    int st;
    waitpid(pid, &st, 0);
    if (out)
        *out = o;
    else
        free(o);
    if (err)
        *err = e;
    else
        free(e);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void add_key(e2e_env *e, const char *customer, const char *scopes, const char *rate,
                    char *out)
{
    const char *args[] = {"keys",     "add",  "--file", e->keys, "--customer", customer,
                          "--scopes", scopes, "--rate", rate,    NULL};
    char *o = NULL, *er = NULL;
    if (e2e_cli(args, NULL, &o, &er) != 0) {
        fprintf(stderr, "keys add failed: %s\n", er);
        die("cannot create keys");
    }
    char *nl = strchr(o, '\n');
    if (nl) *nl = 0;
    snprintf(out, 128, "%s", o);
    free(o);
    free(er);
}

void e2e_init(e2e_env *e)
{
    memset(e, 0, sizeof(*e));
    current = e;
    snprintf(e->dir, sizeof e->dir, "/tmp/idl-e2e-XXXXXX");
    if (!mkdtemp(e->dir)) die("mkdtemp");
    snprintf(e->data, sizeof e->data, "%s/data", e->dir);
    snprintf(e->keys, sizeof e->keys, "%s/keys", e->dir);
    snprintf(e->log, sizeof e->log, "%s/idlookupd.log", e->dir);
    snprintf(e->url, sizeof e->url, "tcp://127.0.0.1:%d", free_port());
    /* The working keys get the highest rate a key may have: a closed-loop
     * bench run on a fast machine does more than 100,000 Searches a second,
     * and a bucket that ran dry would turn its requests into
     * RESOURCE_EXHAUSTED and fail tests that are not about the limit. */
    add_key(e, "lookup-co", "lookup", "1000000", e->lookup_key);
    add_key(e, "privacy-co", "privacy", "1000000", e->privacy_key);
    add_key(e, "admin-co", "admin", "1000000", e->admin_key);
    add_key(e, "all-co", "lookup,privacy,admin", "1000000", e->all_key);
    add_key(e, "slow-co", "lookup", "2", e->slow_key);
}

void e2e_start(e2e_env *e, const char *const *extra)
{
    const char *bin = env_or_die("IDL_DAEMON");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        int fd = open(e->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
        }
        const char *argv[32] = {bin,      "--data", e->data,      "--listen", e->url,
                                "--keys", e->keys,  "--drain-ms", "100"};
        int i = 9;
        for (int j = 0; extra && extra[j] && i < 31; j++)
            argv[i++] = extra[j];
        argv[i] = NULL;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    e->pid = pid;
    if (!e->c && idl_client_open(&e->c, e->url, NULL)) die("client open");
    for (int i = 0; i < 200; i++) {
        idl_reply *r = NULL;
        if (idl_client_call(e->c, "grpc.health.v1.Health/Check", NULL, 0, -1, 100, &r) == 0) {
            bool ok = r->code == 0 && e2e_str_is(e2e_get(&r->body, "status"), "SERVING");
            idl_reply_free(r);
            if (ok) return;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            e->pid = 0;
            die("the daemon exited at start (see its log)");
        }
    }
    die("the daemon did not become SERVING within 20 s");
}

int e2e_stop(e2e_env *e)
{
    if (!e->pid) return -1;
    kill(e->pid, SIGTERM);
    int st = 0;
    for (int i = 0; i < 300; i++) {
        if (waitpid(e->pid, &st, WNOHANG) == e->pid) {
            e->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    kill(e->pid, SIGKILL);
    waitpid(e->pid, &st, 0);
    e->pid = 0;
    return -2;
}

void e2e_kill9(e2e_env *e)
{
    if (!e->pid) return;
    kill(e->pid, SIGKILL);
    int st;
    waitpid(e->pid, &st, 0);
    e->pid = 0;
}

static int rm_rf(const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    return system(cmd);
}

void e2e_cleanup(e2e_env *e)
{
    if (e->pid) e2e_stop(e);
    idl_client_close(e->c);
    e->c = NULL;
    if (getenv("IDL_E2E_KEEP"))
        fprintf(stderr, "e2e: kept %s\n", e->dir);
    else if (e->dir[0])
        rm_rf(e->dir);
}

idl_reply *e2e_call_t(e2e_env *e, const char *key, const char *method, const char *json,
                      int timeout_ms)
{
    idl_buf body = {0};
    char msg[IDL_ERR_MAX];
    if (json && idl_json_to_msgpack(json, strlen(json), &body, msg)) {
        fprintf(stderr, "e2e harness: bad JSON in test: %s: %s\n", json, msg);
        die("bad JSON in the test");
    }
    idl_client *c = e->c;
    idl_client *kc = NULL;
    if (key) {
        if (idl_client_open(&kc, e->url, key)) die("client open");
        c = kc;
    }
    idl_reply *r = NULL;
    /* The client waits 10 s, or longer than a longer deadline: a cluster
     * write given 40 s was dropped by the client at 10 s (CI failed on it). */
    int wait_ms = timeout_ms > 9000 ? timeout_ms + 1000 : 10000;
    int rc = idl_client_call(c, method, body.data, body.len, timeout_ms, wait_ms, &r);
    idl_buf_free(&body);
    idl_client_close(kc);
    return rc ? NULL : r;
}

idl_reply *e2e_call(e2e_env *e, const char *key, const char *method, const char *json)
{
    return e2e_call_t(e, key, method, json, -1);
}

idl_reply *e2e_callf(e2e_env *e, const char *key, const char *method, const char *fmt, ...)
{
    va_list ap, aq;
    va_start(ap, fmt);
    va_copy(aq, ap);
    int n = vsnprintf(NULL, 0, fmt, aq);
    va_end(aq);
    char *json = malloc((size_t)n + 1);
    if (!json) die("out of memory");
    vsnprintf(json, (size_t)n + 1, fmt, ap);
    va_end(ap);
    idl_reply *r = e2e_call(e, key, method, json);
    if (!r) fprintf(stderr, "transport failure calling %s with %.300s\n", method, json);
    free(json);
    return r;
}

const msgpack_object *e2e_get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (idl_wire_str_eq(&map->via.map.ptr[i].key, key)) return &map->via.map.ptr[i].val;
    return NULL;
}

const msgpack_object *e2e_path(const msgpack_object *root, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const msgpack_object *o = root;
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok && o;
         tok = strtok_r(NULL, ".", &save)) {
        if (o->type == MSGPACK_OBJECT_ARRAY && tok[0] >= '0' && tok[0] <= '9') {
            unsigned long i = strtoul(tok, NULL, 10);
            o = i < o->via.array.size ? &o->via.array.ptr[i] : NULL;
        } else {
            o = e2e_get(o, tok);
        }
    }
    return o;
}

const char *e2e_json(const msgpack_object *o)
{
    static char buf[8192];
    if (!o) return "(absent)";
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    if (!f) return "?";
    idl_json_print(f, o, false);
    fclose(f);
    buf[sizeof buf - 1] = 0;
    return buf;
}

bool e2e_str_is(const msgpack_object *o, const char *s)
{
    return o && idl_wire_str_eq(o, s);
}

long long e2e_uint(const msgpack_object *o)
{
    return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (long long)o->via.u64 : -1;
}

const char *e2e_write_file(e2e_env *e, const char *name, const char *text)
{
    static char path[400];
    snprintf(path, sizeof path, "%s/%s", e->dir, name);
    FILE *f = fopen(path, "w");
    if (!f) die("cannot write a test file");
    fputs(text, f);
    fclose(f);
    return path;
}

const char *e2e_pid(const char *source_id)
{
    static char out[19];
    idl_person_id_format(idl_person_id(source_id), out);
    return out;
}
