/* idlookup-timing: does the time a reply takes tell identifier classes
 * apart?  (API.md §5: a suppressed identifier must cost what a never-stored
 * one costs.)  Each FILE is one class, one email per line (or "first|last"
 * for a search by name); requests go one
 * at a time, one per class in turn in a shuffled order, so machine drift
 * and noise fall on every class alike.  Prints each class's median, mean
 * and spread in microseconds.
 *
 *   idlookup-timing --url URL --key KEY [--method validate|search] [-n ROUNDS]
 *                   CLASS=FILE CLASS=FILE...
 * Exit 0 when every call was OK, 1 when one was not, 2 for bad usage.
 */
#include "args.h"
#include "client.h"
#include "status.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CLASSES 8

typedef struct {
    char name[32];
    char **emails;
    size_t n;
    double *us; /* one latency per round */
} klass;

enum { F_URL, F_KEY, F_METHOD, F_ROUNDS, F_HELP };

static const idl_args_flag flags[] = {
    {"url", 0, "URL", "the service (tcp://HOST:PORT or ipc:///PATH); required", F_URL},
    {"key", 0, "KEY", "API key with the lookup scope; required", F_KEY},
    {"method", 0, "M", "validate (default) or search", F_METHOD},
    {"rounds", 'n', "ROUNDS", "requests per class, 1..10000000 (default 10000)", F_ROUNDS},
    {"help", 'h', NULL, "this text", F_HELP},
};

static const idl_args_spec spec = {
    .prog = "idlookup-timing",
    .head = "usage: idlookup-timing --url URL --key KEY [--method validate|search] "
            "[-n ROUNDS] CLASS=FILE...\n",
    .tail = "  CLASS=FILE          one class of identifiers, one per line; at least two\n",
    .flags = flags,
    .nflags = sizeof flags / sizeof flags[0],
    .indent = 2,
    .column = 22,
    .max_operands = MAX_CLASSES,
};

static int load(klass *k, const char *spec)
{
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || (size_t)(eq - spec) >= sizeof k->name) return IDL_INVALID_ARGUMENT;
    memcpy(k->name, spec, (size_t)(eq - spec));
    k->name[eq - spec] = 0;
    FILE *f = fopen(eq + 1, "r");
    if (!f) return IDL_NOT_FOUND;
    char line[512];
    size_t cap = 0;
    int rc = IDL_OK;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        if (k->n == cap) {
            cap = cap ? cap * 2 : 1024;
            char **grown = realloc(k->emails, cap * sizeof(*grown));
            if (!grown) {
                rc = IDL_INTERNAL;
                break;
            }
            k->emails = grown;
        }
        if (!(k->emails[k->n] = strdup(line))) {
            rc = IDL_INTERNAL;
            break;
        }
        k->n++;
    }
    fclose(f);
    if (rc == IDL_OK && k->n == 0) rc = IDL_FAILED_PRECONDITION;
    return rc;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double at(const double *sorted, size_t n, double q)
{
    return sorted[(size_t)(q * (double)(n - 1))];
}

int main(int argc, char **argv)
{
    const char *url = NULL, *key = NULL, *method = "idlookup.v1.Lookup/Validate";
    uint64_t rounds = 10000;
    klass ks[MAX_CLASSES];
    size_t nk = 0;
    memset(ks, 0, sizeof ks);
    idl_args args;
    const idl_args_flag *fl;
    const char *v;
    idl_args_start(&args, &spec, argc, argv);
    while (idl_args_next(&args, &fl, &v)) {
        if (!fl) {
            int rc = load(&ks[nk], v);
            if (rc) {
                fprintf(stderr, "idlookup-timing: %s: %s\n", v,
                        rc == IDL_INVALID_ARGUMENT ? "give CLASS=FILE"
                        : rc == IDL_NOT_FOUND      ? "cannot open the file"
                        : rc == IDL_INTERNAL       ? "out of memory"
                                                   : "the file has no email");
                return 2;
            }
            nk++;
            continue;
        }
        switch (fl->id) {
        case F_URL:
            url = v;
            break;
        case F_KEY:
            key = v;
            break;
        case F_METHOD:
            if (!strcmp(v, "validate"))
                method = "idlookup.v1.Lookup/Validate";
            else if (!strcmp(v, "search"))
                method = "idlookup.v1.Lookup/Search";
            else
                return idl_args_fail(&spec, stderr, "--method: validate or search");
            break;
        case F_ROUNDS:
            if (idl_args_uint(v, 1, 10000000, &rounds))
                return idl_args_fail(&spec, stderr, "-n: a whole number of rounds, 1..10000000");
            break;
        case F_HELP:
            idl_args_usage(&spec, stdout);
            return 0;
        }
    }
    if (args.status) return idl_args_fail(&spec, stderr, args.err);
    if (!url || !key || nk < 2)
        return idl_args_fail(&spec, stderr, "--url, --key and at least two classes are needed");

    int status = 0;
    idl_client *c = NULL;
    if (idl_client_open(&c, url, key)) {
        fprintf(stderr, "idlookup-timing: cannot open %s\n", url);
        return 1;
    }
    for (size_t k = 0; k < nk; k++)
        if (!(ks[k].us = malloc(rounds * sizeof(double)))) {
            fprintf(stderr, "idlookup-timing: out of memory\n");
            status = 1;
            goto done;
        }
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (uint64_t r = 0; r < rounds && status == 0; r++) {
        size_t order[MAX_CLASSES];
        for (size_t k = 0; k < nk; k++)
            order[k] = k;
        for (size_t k = nk - 1; k > 0; k--) { /* Fisher-Yates, xorshift */
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            size_t j = (size_t)(rng % (k + 1)), t = order[k];
            order[k] = order[j];
            order[j] = t;
        }
        for (size_t o = 0; o < nk; o++) {
            klass *k = &ks[order[o]];
            const char *e = k->emails[r % k->n];
            msgpack_sbuffer_clear(&sb);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            const char *bar = strchr(e, '|');
            if (bar) { /* "first|last": a name search */
                msgpack_pack_map(&pk, 2);
                msgpack_pack_str_with_body(&pk, "first_name", 10);
                msgpack_pack_str_with_body(&pk, e, (size_t)(bar - e));
                msgpack_pack_str_with_body(&pk, "last_name", 9);
                msgpack_pack_str_with_body(&pk, bar + 1, strlen(bar + 1));
            } else {
                msgpack_pack_map(&pk, 1);
                msgpack_pack_str_with_body(&pk, "email", 5);
                msgpack_pack_str_with_body(&pk, e, strlen(e));
            }
            idl_reply *rep = NULL;
            double t0 = now_us();
            int rc = idl_client_call(c, method, sb.data, sb.size, -1, 5000, &rep);
            double t1 = now_us();
            if (rc || !rep || rep->code != 0) {
                fprintf(stderr, "idlookup-timing: %s %s: %s\n", k->name, e,
                        rc                    ? "no reply"
                        : rep && rep->message ? rep->message
                                              : "not OK");
                status = 1;
            }
            idl_reply_free(rep);
            k->us[r] = t1 - t0;
        }
    }
    msgpack_sbuffer_destroy(&sb);
    if (status == 0) {
        printf("class\tmedian_us\tmean_us\tp10_us\tp90_us\trequests\n");
        for (size_t k = 0; k < nk; k++) {
            double sum = 0;
            for (uint64_t r = 0; r < rounds; r++)
                sum += ks[k].us[r];
            qsort(ks[k].us, rounds, sizeof(double), cmp_double);
            printf("%s\t%.1f\t%.1f\t%.1f\t%.1f\t%llu\n", ks[k].name, at(ks[k].us, rounds, 0.5),
                   sum / (double)rounds, at(ks[k].us, rounds, 0.1), at(ks[k].us, rounds, 0.9),
                   (unsigned long long)rounds);
        }
    }
done:
    for (size_t k = 0; k < nk; k++) {
        for (size_t i = 0; i < ks[k].n; i++)
            free(ks[k].emails[i]);
        free(ks[k].emails);
        free(ks[k].us);
    }
    idl_client_close(c);
    return status;
}
