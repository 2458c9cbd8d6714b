/* The operator's surface (API.md §6): `idlookup call` and `describe` against a
 * real daemon (JSON out, exit 0/1/2, the message on stderr), and bad usage of
 * every subcommand (exit 2, one line naming the cause). */
#include "e2e.h"
#include "testutil.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static e2e_env env;

static int lines(const char *s)
{
    int n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

static void call_ok_prints_the_envelope(void)
{
    const char *args[] = {"call", "--url", env.url, "grpc.health.v1.Health/Check", "{}", NULL};
    char *out = NULL, *err = NULL;
    CHECK_INT(e2e_cli(args, NULL, &out, &err), 0);
    json_error_t je;
    json_t *j = out ? json_loads(out, 0, &je) : NULL;
    CHECK(j != NULL);
    CHECK_INT(json_integer_value(json_object_get(j, "code")), 0);
    CHECK(json_is_string(json_object_get(json_object_get(j, "meta"), "request-id")));
    CHECK_STR(json_string_value(json_object_get(json_object_get(j, "body"), "status")), "SERVING");
    json_decref(j);
    free(out);
    free(err);
    /* Body from stdin, short method names. */
    const char *args2[] = {"call",         "--url",           env.url, "--key",
                           env.lookup_key, "Lookup/Validate", "-",     NULL};
    CHECK_INT(e2e_cli(args2, "{\"email\": \"Jane@Example.com\"}", &out, &err), 0);
    CHECK(out && strstr(out, "\"normalized\": \"jane@example.com\""));
    free(out);
    free(err);
}

static void call_error_exits_1_with_json_and_message(void)
{
    const char *args[] = {
        "call", "--url", env.url, "idlookup.v1.Lookup/Search", "{\"email\": \"a@b.com\"}", NULL};
    char *out = NULL, *err = NULL;
    CHECK_INT(e2e_cli(args, NULL, &out, &err), 1);
    json_error_t je;
    json_t *j = out ? json_loads(out, 0, &je) : NULL;
    CHECK(j != NULL); /* exactly one JSON document, also on error */
    CHECK_INT(json_integer_value(json_object_get(j, "code")), 16);
    CHECK(err && strstr(err, "UNAUTHENTICATED"));
    CHECK_INT(lines(err), 1);
    json_decref(j);
    free(out);
    free(err);
}

static void call_bad_usage_exits_2(void)
{
    const char *cases[][8] = {
        {"call", NULL},
        {"call", "--url", env.url, "Lookup/Search", "{not json", NULL},
        {"call", "--url", env.url, "Lookup/Search", "[1,2]", NULL},
        {"call", "--bogus", "x", "Lookup/Search", NULL},
        {"call", "--timeout-ms", "abc", "Lookup/Search", NULL},
        {"ingest", NULL},
        {"ingest", "--data", NULL},
        {"ingest", "--threads", "0", "--data", "/tmp/x", "f", NULL},
        {"gen", "--count", "-5", NULL},
        {"keys", "add", "--file", "/tmp/k", "--customer", "c", "--scopes", "lokup"},
        {"analytics", "--format", "xml", NULL},
        {"nosuchcommand", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *args[9] = {0};
        for (int k = 0; k < 8 && cases[i][k]; k++)
            args[k] = cases[i][k];
        char *out = NULL, *err = NULL;
        int rc = e2e_cli(args, NULL, &out, &err);
        if (rc != 2)
            fprintf(stderr, "case %zu (%s ...): exit %d, stderr %s\n", i, args[0], rc, err);
        CHECK_INT(rc, 2);
        CHECK(err && lines(err) == 1);
        free(out);
        free(err);
    }
}

/* The daemon refuses bad flags before it opens anything: exit 2 and one
 * line naming the flag. */
static void daemon_bad_flags_exit_2(void)
{
    const char *cases[][8] = {
        {"--data", NULL},
        {"--data", "/tmp/x", NULL},
        {"--bogus", NULL},
        {"--data", "/tmp/x", "--keys", "/tmp/k", "--workers", "0", NULL},
        {"--data", "/tmp/x", "--keys", "/tmp/k", "--batch-threads", "-1", NULL},
        {"--data", "/tmp/x", "--keys", "/tmp/k", "--batch-threads", "lots", NULL},
        {"--data", "/tmp/x", "--keys", "/tmp/k", "--batch-threads", "257", NULL},
        {"--data", "/tmp/x", "--keys", "/tmp/k", "--cache-mb", "1", NULL},
    };
    const char *names[] = {"--data",          "--keys",          "--bogus",         "--workers",
                           "--batch-threads", "--batch-threads", "--batch-threads", "--cache-mb"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *err = NULL;
        int rc = e2e_exec("IDL_DAEMON", cases[i], NULL, NULL, &err);
        if (rc != 2 || !err || !strstr(err, names[i]))
            fprintf(stderr, "daemon case %zu: exit %d, stderr %s\n", i, rc, err ? err : "");
        CHECK_INT(rc, 2);
        CHECK(err && lines(err) == 1 && strstr(err, names[i]));
        free(err);
    }
}

static void call_unreachable_exits_1(void)
{
    const char *args[] = {"call",      "--url", "tcp://127.0.0.1:1",
                          "--wait-ms", "300",   "grpc.health.v1.Health/Check",
                          "{}",        NULL};
    char *out = NULL, *err = NULL;
    CHECK_INT(e2e_cli(args, NULL, &out, &err), 1);
    json_error_t je;
    json_t *j = out ? json_loads(out, 0, &je) : NULL;
    CHECK(j != NULL);
    CHECK(j && json_integer_value(json_object_get(j, "code")) != 0);
    json_decref(j);
    free(out);
    free(err);
}

static void describe_lists_methods(void)
{
    const char *args[] = {"describe", "--url", env.url, NULL};
    char *out = NULL;
    CHECK_INT(e2e_cli(args, NULL, &out, NULL), 0);
    CHECK_INT(lines(out), 10);
    CHECK(out && strstr(out, "idlookup.v1.Privacy/Disclosures") && strstr(out, "privacy"));
    free(out);
}

static void help_exits_0(void)
{
    const char *subs[] = {"call", "describe", "ingest", "gen", "keys", "analytics"};
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++) {
        const char *args[] = {subs[i], "--help", NULL};
        char *out = NULL;
        CHECK_INT(e2e_cli(args, NULL, &out, NULL), 0);
        CHECK(out && strstr(out, "usage"));
        free(out);
    }
}

/* API.md §1: ipc:// works as well as tcp://. */
static void ipc_transport(void)
{
    e2e_env ipc;
    e2e_init(&ipc);
    snprintf(ipc.url, sizeof ipc.url, "ipc://%s/idlookupd.sock", ipc.dir);
    e2e_start(&ipc, NULL);
    idl_reply *r =
        e2e_call(&ipc, ipc.lookup_key, "idlookup.v1.Lookup/Search", "{\"email\": \"a@b.com\"}");
    CHECK(r && r->code == 0);
    idl_reply_free(r);
    const char *args[] = {"call", "--url", ipc.url, "grpc.health.v1.Health/Check", NULL};
    CHECK_INT(e2e_cli(args, NULL, NULL, NULL), 0);
    e2e_cleanup(&ipc);
}

int main(void)
{
    e2e_init(&env);
    e2e_start(&env, NULL);
    RUN(call_ok_prints_the_envelope);
    RUN(call_error_exits_1_with_json_and_message);
    RUN(call_bad_usage_exits_2);
    RUN(call_unreachable_exits_1);
    RUN(daemon_bad_flags_exit_2);
    RUN(describe_lists_methods);
    RUN(help_exits_0);
    e2e_cleanup(&env);
    RUN(ipc_transport);
    return test_summary();
}
