/* `idlookup call` and `idlookup describe`: one request from the command line,
 * JSON in, the reply envelope as JSON out (like grpcurl). */
#include "args.h"
#include "cli.h"
#include "client.h"
#include "json.h"
#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { F_URL, F_KEY, F_TIMEOUT, F_WAIT, F_HELP };

static const idl_args_flag call_flags[] = {
    {"url", 0, "URL",
     "tcp://HOST:PORT or ipc:///PATH (default tcp://127.0.0.1:7411), or a\n"
     "comma-separated list of them (a cluster's nodes: requests are\n"
     "spread over them)",
     F_URL},
    {"key", 0, "KEY", "API key (default: $IDLOOKUP_KEY); Health and Describe need none", F_KEY},
    {"timeout-ms", 0, "N", "deadline sent to the service (default: none)", F_TIMEOUT},
    {"wait-ms", 0, "N", "how long to wait for the reply (default 10000)", F_WAIT},
    {"help", 'h', NULL, "this text", F_HELP},
};

static const idl_args_spec call_spec = {
    .prog = "idlookup call",
    .head = "usage: idlookup call --url URL [--key KEY] [--timeout-ms N] [--wait-ms N] METHOD "
            "[JSON|-]\n"
            "\n"
            "Sends one request and prints the reply envelope as JSON on stdout.\n",
    .tail = "  METHOD               full name, e.g. idlookup.v1.Lookup/Search (or a short form\n"
            "                       such as Lookup/Search or Health/Check)\n"
            "  JSON                 the request body; '-' or absent reads it from stdin ({} when\n"
            "                       stdin is a terminal or empty)\n"
            "Exit status: 0 when the reply's code is 0, 1 otherwise (message on stderr), 2 bad "
            "usage.\n",
    .flags = call_flags,
    .nflags = sizeof call_flags / sizeof call_flags[0],
    .indent = 2,
    .column = 23,
    /* METHOD ends the flags: the body that follows is the request's. */
    .max_operands = 2,
    .operands_end_flags = true,
};

static const idl_args_flag describe_flags[] = {
    {"url", 0, "URL", "tcp://HOST:PORT or ipc:///PATH (default tcp://127.0.0.1:7411)", F_URL},
    {"help", 'h', NULL, "this text", F_HELP},
};

static const idl_args_spec describe_spec = {
    .prog = "idlookup describe",
    .head = "usage: idlookup describe [--url URL]\n"
            "Lists the methods the service implements, with the scope each needs.\n",
    .flags = describe_flags,
    .nflags = sizeof describe_flags / sizeof describe_flags[0],
    .indent = 2,
    .column = 18,
};

static int parse_int(const char *flag, const char *s, long lo, long hi, long *out)
{
    uint64_t v;
    if (idl_args_uint(s, (uint64_t)lo, (uint64_t)hi, &v) != IDL_OK) {
        fprintf(stderr, "idlookup call: %s: expected a number in %ld..%ld, got '%s'\n", flag, lo,
                hi, s);
        return -1;
    }
    *out = (long)v;
    return 0;
}

static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            if (cap > (size_t)64 << 20) {
                free(buf);
                return NULL;
            }
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
        }
    }
    *len = n;
    return buf;
}

static void full_method(const char *m, char *out, size_t outsz)
{
    if (strchr(m, '.') || !strchr(m, '/')) {
        snprintf(out, outsz, "%s", m);
        return;
    }
    /* Short forms: Health/Check, Lookup/Search, ... */
    if (strncmp(m, "Health/", 7) == 0)
        snprintf(out, outsz, "grpc.health.v1.%s", m);
    else
        snprintf(out, outsz, "idlookup.v1.%s", m);
}

/* Builds the message body for the request: JSON must be an object. */
static int body_from_json(const char *text, size_t len, idl_buf *body)
{
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r'))
        i++;
    if (i == len) text = "{}", len = 2;
    char msg[IDL_ERR_MAX];
    if (idl_json_to_msgpack(text, len, body, msg)) {
        fprintf(stderr, "idlookup call: the request body: %s\n", msg);
        return 2;
    }
    if (body->len == 0 || ((unsigned char)body->data[0] & 0xf0) != 0x80) {
        unsigned char b = (unsigned char)body->data[0];
        if (b != 0xde && b != 0xdf) {
            fprintf(stderr, "idlookup call: the request body must be a JSON object\n");
            return 2;
        }
    }
    return 0;
}

static int do_call(const char *url, const char *key, const char *method, const idl_buf *body,
                   long timeout_ms, long wait_ms, bool print, idl_reply **keep)
{
    idl_client *c = NULL;
    int rc = idl_client_open(&c, url, key);
    if (rc) {
        fprintf(stderr, "idlookup: cannot connect to '%s': %s\n", url,
                rc == IDL_INVALID_ARGUMENT ? "not a valid nng URL" : "unavailable");
        return 1;
    }
    idl_reply *r = NULL;
    rc = idl_client_call(c, method, body ? body->data : NULL, body ? body->len : 0, (int)timeout_ms,
                         (int)wait_ms, &r);
    int status = 1;
    if (rc) {
        /* No envelope came back: print one in the same shape, made here, so
         * stdout always holds exactly one JSON document. */
        const char *why = rc == IDL_DEADLINE_EXCEEDED ? "no reply within the wait time"
                                                      : "the service could not be reached";
        if (print)
            printf("{\n  \"id\": 0,\n  \"code\": %d,\n  \"message\": \"client: %s (%s)\",\n"
                   "  \"meta\": {}\n}\n",
                   rc, why, url);
        fprintf(stderr, "idlookup: %s: %s (%s)\n", idl_status_name(rc), why, url);
        goto out;
    }
    if (print) {
        idl_json_print(stdout, &r->root, true);
        fputc('\n', stdout);
    }
    if (r->code != 0) {
        fprintf(stderr, "idlookup: %s: %s\n", idl_status_name(r->code),
                r->message ? r->message : "(no message)");
    } else {
        status = 0;
    }
    if (keep && r->code == 0) {
        *keep = r;
        r = NULL;
    }
out:
    idl_reply_free(r);
    idl_client_close(c);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "idlookup: cannot write to stdout\n");
        status = 1;
    }
    return status;
}

int idl_cli_call(int argc, char **argv)
{
    const char *url = "tcp://127.0.0.1:7411", *key = getenv("IDLOOKUP_KEY");
    long timeout_ms = -1, wait_ms = 10000;
    const char *operand[2];
    int noperands = 0;
    idl_args args;
    const idl_args_flag *fl;
    const char *v;
    idl_args_start(&args, &call_spec, argc, argv);
    while (idl_args_next(&args, &fl, &v)) {
        if (!fl) {
            operand[noperands++] = v;
            continue;
        }
        switch (fl->id) {
        case F_URL:
            url = v;
            break;
        case F_KEY:
            key = v;
            break;
        case F_TIMEOUT:
            if (parse_int("--timeout-ms", v, 0, 86400000, &timeout_ms)) return 2;
            break;
        case F_WAIT:
            if (parse_int("--wait-ms", v, 1, 86400000, &wait_ms)) return 2;
            break;
        case F_HELP:
            idl_args_usage(&call_spec, stdout);
            return 0;
        }
    }
    if (args.status) return idl_args_fail(&call_spec, stderr, args.err);
    if (noperands == 0) {
        fprintf(stderr, "idlookup call: METHOD is required (see --help)\n");
        return 2;
    }
    char method[256];
    full_method(operand[0], method, sizeof method);
    const char *json = noperands > 1 ? operand[1] : NULL;
    char *in = NULL;
    size_t len = 0;
    if (!json || strcmp(json, "-") == 0) {
        if (!json && isatty(STDIN_FILENO)) {
            json = "{}";
            len = 2;
        } else {
            in = read_all(stdin, &len);
            if (!in) {
                fprintf(stderr, "idlookup call: cannot read the body from stdin\n");
                return 1;
            }
            json = in;
        }
    } else {
        len = strlen(json);
    }
    idl_buf body = {0};
    int rc = body_from_json(json, len, &body);
    free(in);
    if (rc == 0) rc = do_call(url, key, method, &body, timeout_ms, wait_ms, true, NULL);
    idl_buf_free(&body);
    return rc;
}

int idl_cli_describe(int argc, char **argv)
{
    const char *url = "tcp://127.0.0.1:7411";
    idl_args args;
    const idl_args_flag *fl;
    const char *v;
    idl_args_start(&args, &describe_spec, argc, argv);
    while (idl_args_next(&args, &fl, &v)) {
        if (fl->id == F_HELP) {
            idl_args_usage(&describe_spec, stdout);
            return 0;
        }
        url = v; /* F_URL */
    }
    if (args.status) return idl_args_fail(&describe_spec, stderr, args.err);
    idl_reply *r = NULL;
    int rc = do_call(url, NULL, "idlookup.v1.Meta/Describe", NULL, -1, 10000, false, &r);
    if (rc) return rc;
    const msgpack_object *methods = NULL;
    if (r->body.type == MSGPACK_OBJECT_MAP)
        for (uint32_t i = 0; i < r->body.via.map.size; i++)
            if (idl_wire_str_eq(&r->body.via.map.ptr[i].key, "methods"))
                methods = &r->body.via.map.ptr[i].val;
    if (methods && methods->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < methods->via.array.size; i++) {
            const msgpack_object *m = &methods->via.array.ptr[i];
            const msgpack_object *name = NULL, *scope = NULL;
            for (uint32_t j = 0; m->type == MSGPACK_OBJECT_MAP && j < m->via.map.size; j++) {
                if (idl_wire_str_eq(&m->via.map.ptr[j].key, "name")) name = &m->via.map.ptr[j].val;
                if (idl_wire_str_eq(&m->via.map.ptr[j].key, "scope"))
                    scope = &m->via.map.ptr[j].val;
            }
            if (name && name->type == MSGPACK_OBJECT_STR)
                printf("%-36.*s %.*s\n", (int)name->via.str.size, name->via.str.ptr,
                       scope && scope->type == MSGPACK_OBJECT_STR ? (int)scope->via.str.size : 6,
                       scope && scope->type == MSGPACK_OBJECT_STR ? scope->via.str.ptr : "(none)");
        }
    }
    idl_reply_free(r);
    return 0;
}
