/* Shared by the fuzz targets (tests/fuzz/<target>.c): each defines
 * LLVMFuzzerTestOneInput, built either with libFuzzer (scripts/fuzz.sh,
 * clang -fsanitize=fuzzer) or with replay.c, which feeds it every file of the
 * target's seed corpus as a meson test.  A broken property aborts, which both
 * libFuzzer and meson report as a failure, after printing what broke. */
#ifndef IDL_FUZZ_H
#define IDL_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Prints s[0..n) with C escapes for anything but printable ASCII. */
static inline void fuzz_show(const char *label, const char *s, size_t n)
{
    fprintf(stderr, "  %s: \"", label);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\n");
}

#define FUZZ_FAIL(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: property broken: ", __FILE__, __LINE__);                           \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) FUZZ_FAIL("%s", #cond);                                                       \
    } while (0)

/* Splits data at '\n' into at most max NUL-terminated parts in buf (the last
 * part takes the rest, newlines included); parts not present are NULL.  A
 * NUL byte ends its part early, as it would for a C caller.  buf must hold
 * size + max bytes.  Returns how many parts were present. */
static inline size_t fuzz_split(const uint8_t *data, size_t size, char *buf, char **parts,
                                size_t max)
{
    size_t n = 0, pos = 0;
    for (size_t i = 0; i < max; i++)
        parts[i] = NULL;
    while (n < max && (pos < size || (n == 0 && size == 0))) {
        const uint8_t *nl = n + 1 < max ? memchr(data + pos, '\n', size - pos) : NULL;
        size_t len = nl ? (size_t)(nl - (data + pos)) : size - pos;
        memcpy(buf, data + pos, len);
        buf[len] = '\0';
        parts[n++] = buf;
        buf += len + 1;
        pos += len + (nl ? 1 : 0);
        if (!nl) break;
    }
    return n;
}

#endif
