/* Reader for the normalizer case tables in tests/data (the .tsv files), shared by
 * test-norm-cases and test-norm-idem.  One case a line, tab-separated,
 * '#' lines and blank lines skipped; inputs may carry escapes (\t \r \n \\
 * \s for a space, \xHH for one raw byte, \u{HEX} for a code point in UTF-8)
 * so that control and invisible characters stay visible in the file. */
#ifndef IDL_NORMCASES_H
#define IDL_NORMCASES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TSV_MAX_COLS 8

typedef struct {
    char *col[TSV_MAX_COLS];
    int ncol;
    int line;
} tsv_row;

/* Loads every case row of path; exits on an unreadable file, since a test
 * that silently reads nothing could not fail. */
static size_t tsv_load(const char *path, tsv_row **rows_out)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    size_t cap = 64, n = 0;
    tsv_row *rows = malloc(cap * sizeof *rows);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int lineno = 0;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0 || line[0] == '#') continue;
        if (n == cap) rows = realloc(rows, (cap *= 2) * sizeof *rows);
        tsv_row *r = &rows[n++];
        memset(r, 0, sizeof *r);
        r->line = lineno;
        char *p = strdup(line);
        for (;;) {
            char *tab = strchr(p, '\t');
            if (r->ncol < TSV_MAX_COLS) r->col[r->ncol++] = p;
            if (!tab) break;
            *tab = '\0';
            p = tab + 1;
        }
    }
    free(line);
    fclose(f);
    *rows_out = rows;
    return n;
}

/* Frees what tsv_load returned (col[0] is each row's one allocation). */
static void tsv_free(tsv_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(rows[i].col[0]);
    free(rows);
}

static void put_utf8(unsigned long c, char *out, size_t *n)
{
    if (c < 0x80) {
        out[(*n)++] = (char)c;
    } else if (c < 0x800) {
        out[(*n)++] = (char)(0xC0 | (c >> 6));
        out[(*n)++] = (char)(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        out[(*n)++] = (char)(0xE0 | (c >> 12));
        out[(*n)++] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (c & 0x3F));
    } else {
        out[(*n)++] = (char)(0xF0 | (c >> 18));
        out[(*n)++] = (char)(0x80 | ((c >> 12) & 0x3F));
        out[(*n)++] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (c & 0x3F));
    }
}

/* Unescapes in into out (cap bytes, NUL-terminated); returns the length,
 * which counts any NUL the text holds. */
static size_t tsv_unescape(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = in; *p && n + 5 < cap; p++) {
        if (*p != '\\' || !p[1]) {
            out[n++] = *p;
            continue;
        }
        p++;
        switch (*p) {
        case 't':
            out[n++] = '\t';
            break;
        case 'r':
            out[n++] = '\r';
            break;
        case 'n':
            out[n++] = '\n';
            break;
        case 's':
            out[n++] = ' ';
            break;
        case '\\':
            out[n++] = '\\';
            break;
        case 'x': {
            char hex[3] = {p[1], p[2], '\0'};
            out[n++] = (char)strtoul(hex, NULL, 16);
            p += 2;
            break;
        }
        case 'u': {
            char *end = NULL;
            unsigned long c = strtoul(p + 2, &end, 16);
            put_utf8(c, out, &n);
            p = end; // at the '}'
            break;
        }
        default:
            out[n++] = '\\';
            out[n++] = *p;
            break;
        }
    }
    out[n] = '\0';
    return n;
}

/* "-" in an address column stands for an absent (NULL) part. */
static const char *tsv_opt(const char *s)
{
    return strcmp(s, "-") == 0 ? NULL : s;
}

#endif
