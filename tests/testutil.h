/* A tiny test runner shared by the unit tests: named cases, CHECK macros that
 * report file:line and keep going, and an exit status meson understands. */
#ifndef IDL_TESTUTIL_H
#define IDL_TESTUTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int test_failures_;
static int test_checks_;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        test_checks_++;                                                                            \
        if (!(cond)) {                                                                             \
            test_failures_++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_STR(got, want)                                                                       \
    do {                                                                                           \
        const char *g_ = (got), *w_ = (want);                                                      \
        test_checks_++;                                                                            \
        if (!g_ || !w_ ? g_ != w_ : strcmp(g_, w_) != 0) {                                         \
            test_failures_++;                                                                      \
            fprintf(stderr, "%s:%d: %s: got \"%s\", want \"%s\"\n", __FILE__, __LINE__, #got,      \
                    g_ ? g_ : "(null)", w_ ? w_ : "(null)");                                       \
        }                                                                                          \
    } while (0)

#define CHECK_INT(got, want)                                                                       \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        test_checks_++;                                                                            \
        if (g_ != w_) {                                                                            \
            test_failures_++;                                                                      \
            fprintf(stderr, "%s:%d: %s: got %lld, want %lld\n", __FILE__, __LINE__, #got, g_, w_); \
        }                                                                                          \
    } while (0)

/* A check with context printed when it fails. */
#define CHECKM(cond, ...)                                                                          \
    do {                                                                                           \
        test_checks_++;                                                                            \
        if (!(cond)) {                                                                             \
            test_failures_++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* A check at a caller's line with a formatted explanation (for helpers that
 * check on behalf of the line that called them). */
static inline void expect_at(const char *file, int line, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline void expect_at(const char *file, int line, bool ok, const char *fmt, ...)
{
    test_checks_++;
    if (ok) return;
    test_failures_++;
    fprintf(stderr, "%s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
#define EXPECT(cond, ...) expect_at(__FILE__, __LINE__, (cond), __VA_ARGS__)

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        int before_ = test_failures_;                                                              \
        fn();                                                                                      \
        printf("%s %s\n", test_failures_ == before_ ? "ok  " : "FAIL", #fn);                       \
    } while (0)

static inline int test_summary(void)
{
    printf("%d checks, %d failed\n", test_checks_, test_failures_);
    return test_failures_ ? 1 : 0;
}

#endif
