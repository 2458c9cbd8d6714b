/* Command-line flags (see args.h). */
#include "args.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void idl_args_start(idl_args *a, const idl_args_spec *spec, int argc, char **argv)
{
    a->status = IDL_OK;
    a->err[0] = 0;
    a->spec = spec;
    a->argc = argc;
    a->argv = argv;
    a->next = 1;
    a->noperands = 0;
    a->flags_done = false;
}

static const idl_args_flag *by_long(const idl_args_spec *sp, const char *name, size_t n)
{
    for (size_t k = 0; k < sp->nflags; k++)
        if (strlen(sp->flags[k].name) == n && memcmp(sp->flags[k].name, name, n) == 0)
            return &sp->flags[k];
    return NULL;
}

static const idl_args_flag *by_short(const idl_args_spec *sp, char c)
{
    for (size_t k = 0; k < sp->nflags; k++)
        if (sp->flags[k].short_name && sp->flags[k].short_name == c) return &sp->flags[k];
    return NULL;
}

static bool usage_error(idl_args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool usage_error(idl_args *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->err, IDL_ERR_MAX, fmt, ap);
    va_end(ap);
    a->status = IDL_INVALID_ARGUMENT;
    a->next = a->argc; /* the walk is over */
    return false;
}

bool idl_args_next(idl_args *a, const idl_args_flag **flag, const char **value)
{
    *flag = NULL;
    *value = NULL;
    if (a->next >= a->argc) return false;
    const char *s = a->argv[a->next++];
    if (!a->flags_done && strcmp(s, "--") == 0) {
        a->flags_done = true;
        if (a->next >= a->argc) return false;
        s = a->argv[a->next++];
    }
    /* "-" alone is an operand (standard input, by custom). */
    if (a->flags_done || s[0] != '-' || s[1] == '\0') {
        if (a->noperands++ >= a->spec->max_operands)
            return usage_error(a, "unexpected argument '%s' (see --help)", s);
        if (a->spec->operands_end_flags) a->flags_done = true;
        *value = s;
        return true;
    }
    const idl_args_flag *fl;
    const char *v = NULL;
    if (s[1] == '-') {
        const char *eq = strchr(s + 2, '=');
        size_t n = eq ? (size_t)(eq - s - 2) : strlen(s + 2);
        if (!(fl = by_long(a->spec, s + 2, n)))
            return usage_error(a, "unknown flag --%.*s (see --help)", (int)n, s + 2);
        if (eq && !fl->arg) return usage_error(a, "--%s: takes no value", fl->name);
        if (eq) v = eq + 1;
    } else {
        if (!(fl = by_short(a->spec, s[1])))
            return usage_error(a, "unknown flag -%c (see --help)", s[1]);
        if (s[2] && !fl->arg) return usage_error(a, "-%c/--%s: takes no value", s[1], fl->name);
        if (s[2]) v = s + 2; /* -c8 as well as -c 8 */
    }
    if (fl->arg && !v) {
        /* "--file --customer x" is a forgotten value far more often than a
         * file named "--customer". */
        if (a->next >= a->argc || strncmp(a->argv[a->next], "--", 2) == 0)
            return usage_error(a, "--%s: missing value %s", fl->name, fl->arg);
        v = a->argv[a->next++];
    }
    *flag = fl;
    *value = v;
    return true;
}

void idl_args_usage(const idl_args_spec *spec, FILE *f)
{
    if (spec->head) fputs(spec->head, f);
    bool shorts = false;
    for (size_t i = 0; i < spec->nflags; i++)
        shorts |= spec->flags[i].short_name != 0;
    int width = spec->column - spec->indent;
    for (size_t i = 0; i < spec->nflags; i++) {
        const idl_args_flag *fl = &spec->flags[i];
        char lhs[128];
        /* Long names line up whether or not a flag has a short one. */
        if (fl->short_name)
            snprintf(lhs, sizeof lhs, "-%c, --%s%s%s", fl->short_name, fl->name, fl->arg ? " " : "",
                     fl->arg ? fl->arg : "");
        else
            snprintf(lhs, sizeof lhs, "%s--%s%s%s", shorts ? "    " : "", fl->name,
                     fl->arg ? " " : "", fl->arg ? fl->arg : "");
        if ((int)strlen(lhs) >= width)
            fprintf(f, "%*s%s\n%*s", spec->indent, "", lhs, spec->column, "");
        else
            fprintf(f, "%*s%-*s", spec->indent, "", width, lhs);
        for (const char *p = fl->help;;) {
            size_t n = strcspn(p, "\n");
            fprintf(f, "%.*s\n", (int)n, p);
            if (!p[n]) break;
            p += n + 1;
            fprintf(f, "%*s", spec->column, "");
        }
    }
    if (spec->tail) fputs(spec->tail, f);
}

int idl_args_fail(const idl_args_spec *spec, FILE *f, const char *msg)
{
    fprintf(f, "%s: %s\n", spec->prog, msg);
    return IDL_ARGS_EXIT_USAGE;
}

int idl_args_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!s || !*s) return IDL_INVALID_ARGUMENT;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return IDL_INVALID_ARGUMENT;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return IDL_INVALID_ARGUMENT;
        v = v * 10 + d;
    }
    if (v < lo || v > hi) return IDL_INVALID_ARGUMENT;
    *out = v;
    return IDL_OK;
}
