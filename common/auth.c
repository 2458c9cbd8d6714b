/* API keys: the key-file parser and editor, constant-time authentication and
 * the per-key token buckets.  The file format and every contract are in
 * auth.h; this file keeps one parser that both the daemon's load and the
 * `idlookup keys` editors go through, so a file the daemon would reject is
 * never edited. */
#include "auth.h"
#include "status.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define HASH_LEN 32 /* BLAKE2b-256 */
#define ID_LEN 13   /* "k" + 12 hex digits */
#define ID_RANDOM_BYTES 6
#define SECRET_RANDOM_BYTES 32
#define SECRET_TAIL_LEN 43 /* base64url of 32 bytes, no padding */
#define SECRET_PREFIX "idl_"
#define SECRET_PREFIX_LEN 4
#define SECRET_LEN (SECRET_PREFIX_LEN + ID_LEN + 1 + SECRET_TAIL_LEN)
#define BEARER "Bearer "
#define BEARER_LEN 7
#define FIELD_COUNT 6
/* The longest valid line is about 250 bytes; the cap only bounds the copy. */
#define LINE_MAX_BYTES 1024
/* A key file is small; a huge one is a mistake (wrong path), not a key file. */
#define FILE_MAX_BYTES (64u << 20)
/* Tokens are counted in millionths so that a rate in tokens per second is
 * exactly that many micro-tokens per microsecond: the refill is an integer
 * product with no rounding drift. */
#define MICRO 1000000u
#define STATE_ACTIVE "active"
#define STATE_REVOKED "revoked"
#define LOCK_RETRIES 100
#define ID_RETRIES 64

_Static_assert(SECRET_LEN < IDL_AUTH_SECRET_MAX, "secret buffer too small");
_Static_assert(ID_LEN < IDL_AUTH_ID_MAX, "id buffer too small");

struct idl_key {
    idl_key_info info;
    unsigned char hash[HASH_LEN];
    size_t line;      /* 1-based line in the file, for messages */
    size_t state_off; /* byte offset of the state field, for revoke */
    pthread_mutex_t lock;
    uint64_t tokens; /* micro-tokens, guarded by lock */
    uint64_t last_us;
};

struct idl_keyring {
    idl_key *keys; /* file order; never moved once the mutexes are initialized */
    size_t count;
    size_t locks_ready;
    idl_key **by_id; /* sorted by id, for bsearch */
    /* Compared against when the id is unknown, so that an unknown id costs the
     * same hash and compare as a known one. */
    unsigned char dummy_hash[HASH_LEN];
};

#define SCOPE_NAME(name, bit, word) word,
#define SCOPE_BIT(name, bit, word) bit,
#define SCOPE_OR(name, bit, word) | bit
static const char *const scope_names[] = {IDL_SCOPE_LIST(SCOPE_NAME)};
static const unsigned scope_bits[] = {IDL_SCOPE_LIST(SCOPE_BIT)};
#define SCOPE_COUNT (sizeof scope_bits / sizeof scope_bits[0])
#define SCOPE_ALL (0u IDL_SCOPE_LIST(SCOPE_OR))

static void set_err(char err[IDL_ERR_MAX], const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_err(char err[IDL_ERR_MAX], const char *fmt, ...)
{
    if (!err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, IDL_ERR_MAX, fmt, ap);
    va_end(ap);
}

/* errno as our status, right after the failing call. */
static int status_from_errno(int e)
{
    return e == ENOENT ? IDL_NOT_FOUND : IDL_INTERNAL;
}

/* ------------------------------------------------------------------ fields */

static bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static bool is_valid_id(const char *s, size_t n)
{
    if (n != ID_LEN || s[0] != 'k') return false;
    for (size_t i = 1; i < n; i++)
        if (!is_lower_hex(s[i])) return false;
    return true;
}

static bool is_base64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

int idl_auth_parse_scopes(const char *s, unsigned *out)
{
    unsigned mask = 0;
    const char *p = s;
    if (!s || !*s) return IDL_INVALID_ARGUMENT;
    for (;;) {
        size_t n = strcspn(p, ",");
        unsigned bit = 0;
        for (size_t i = 0; i < SCOPE_COUNT; i++)
            if (strlen(scope_names[i]) == n && memcmp(p, scope_names[i], n) == 0)
                bit = scope_bits[i];
        /* A repeated scope is a typo of some other one as often as not. */
        if (!bit || (mask & bit)) return IDL_INVALID_ARGUMENT;
        mask |= bit;
        if (p[n] == '\0') break;
        p += n + 1;
    }
    *out = mask;
    return IDL_OK;
}

const char *idl_auth_scope_name(unsigned bit)
{
    for (size_t i = 0; i < SCOPE_COUNT; i++)
        if (scope_bits[i] == bit) return scope_names[i];
    return "";
}

void idl_auth_format_scopes(unsigned scopes, char *buf, size_t bufsz)
{
    size_t used = 0;
    if (!buf || bufsz == 0) return;
    buf[0] = '\0';
    for (size_t i = 0; i < SCOPE_COUNT; i++) {
        if (!(scopes & scope_bits[i])) continue;
        int n = snprintf(buf + used, bufsz - used, "%s%s", used ? "," : "", scope_names[i]);
        if (n < 0 || (size_t)n >= bufsz - used) {
            /* Never leave half a scope name that could be read as another. */
            buf[used] = '\0';
            return;
        }
        used += (size_t)n;
    }
}

/* Length of the UTF-8 sequence at s (at most n bytes), 0 if it is not a
 * well-formed one (overlong forms, surrogates and values past U+10FFFF are
 * not). */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned cp, min;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

/* Why a customer name cannot be stored, as a static phrase, or NULL. */
static const char *customer_problem(const char *customer)
{
    const char *reason = NULL;
    size_t n = customer ? strlen(customer) : 0;
    const unsigned char *s = (const unsigned char *)customer;
    if (n == 0) {
        reason = "empty";
    } else if (n >= IDL_AUTH_CUSTOMER_MAX) {
        reason = "longer than 127 bytes";
    } else {
        for (size_t i = 0; i < n && !reason;) {
            if (s[i] < 0x20 || s[i] == 0x7f) {
                reason = s[i] == '\t'   ? "contains a TAB"
                         : s[i] == '\n' ? "contains a newline"
                                        : "contains a control character";
                break;
            }
            size_t len = utf8_seq_len(s + i, n - i);
            if (!len) reason = "not valid UTF-8";
            i += len;
        }
    }
    return reason;
}

int idl_auth_validate_customer(const char *customer, char err[IDL_ERR_MAX])
{
    const char *why = customer_problem(customer);
    if (!why) return IDL_OK;
    set_err(err, "%s", why);
    return IDL_INVALID_ARGUMENT;
}

static bool parse_rate(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    if (!*s) return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        v = v * 10 + (uint32_t)(*s - '0');
        if (v > IDL_AUTH_RATE_MAX) return false;
    }
    if (v < IDL_AUTH_RATE_MIN) return false;
    *out = v;
    return true;
}

static bool parse_hash(const char *s, unsigned char out[HASH_LEN])
{
    if (strlen(s) != 2 * HASH_LEN) return false;
    for (size_t i = 0; i < HASH_LEN; i++) {
        unsigned v = 0;
        for (size_t j = 0; j < 2; j++) {
            char c = s[2 * i + j];
            if (!is_lower_hex(c)) return false;
            v = v * 16 + (unsigned)(c <= '9' ? c - '0' : c - 'a' + 10);
        }
        out[i] = (unsigned char)v;
    }
    return true;
}

static void hash_secret(const char *secret, size_t len, unsigned char out[HASH_LEN])
{
    crypto_generichash(out, HASH_LEN, (const unsigned char *)secret, len, NULL, 0);
}

/* ----------------------------------------------------------------- keyring */

static int cmp_key_by_id(const void *a, const void *b)
{
    const idl_key *x = *(idl_key *const *)a, *y = *(idl_key *const *)b;
    int c = strcmp(x->info.id, y->info.id);
    if (c) return c;
    return x->line < y->line ? -1 : x->line > y->line;
}

static int cmp_id_to_key(const void *id, const void *elem)
{
    const idl_key *k = *(idl_key *const *)elem;
    return memcmp(id, k->info.id, ID_LEN);
}

/* id must point at ID_LEN bytes of a well-formed id. */
static idl_key *find_key(const idl_keyring *kr, const char *id)
{
    if (!kr->count) return NULL;
    idl_key **hit = bsearch(id, kr->by_id, kr->count, sizeof *kr->by_id, cmp_id_to_key);
    return hit ? *hit : NULL;
}

void idl_keyring_free(idl_keyring *kr)
{
    if (!kr) return;
    for (size_t i = 0; i < kr->locks_ready; i++)
        pthread_mutex_destroy(&kr->keys[i].lock);
    free(kr->keys);
    free(kr->by_id);
    free(kr);
}

/* Parses one non-blank, non-comment line into k.  Returns NULL when the line
 * is well-formed, else a static cause and the field it is about (NULL for the
 * line as a whole) in *field_name.  line is modified (fields split). */
static const char *parse_line(char *line, idl_key *k, size_t *state_col, const char **field_name)
{
    char *field[FIELD_COUNT];
    size_t nfields = 0;
    const char *why = NULL;
    char *p = line;
    for (;;) {
        char *tab = strchr(p, '\t');
        if (nfields < FIELD_COUNT) field[nfields] = p;
        nfields++;
        if (!tab) break;
        *tab = '\0';
        p = tab + 1;
    }
    *field_name = NULL;
    if (nfields != FIELD_COUNT)
        return "expected 6 TAB-separated fields (id, customer, scopes, rate, state, hash)";
    *field_name = "id";
    if (!is_valid_id(field[0], strlen(field[0])))
        return "expected 'k' and 12 lower-case hex digits";
    *field_name = "customer";
    if ((why = customer_problem(field[1]))) return why;
    *field_name = "scopes";
    if (idl_auth_parse_scopes(field[2], &k->info.scopes) != IDL_OK)
        return "expected a comma-separated subset of lookup,privacy,admin";
    *field_name = "rate";
    if (!parse_rate(field[3], &k->info.rate)) return "expected an integer 1..1000000";
    *field_name = "state";
    if (strcmp(field[4], STATE_ACTIVE) == 0)
        k->info.revoked = false;
    else if (strcmp(field[4], STATE_REVOKED) == 0)
        k->info.revoked = true;
    else
        return "expected 'active' or 'revoked'";
    *field_name = "hash";
    if (!parse_hash(field[5], k->hash)) return "expected 64 lower-case hex digits";
    memcpy(k->info.id, field[0], ID_LEN + 1);
    memcpy(k->info.customer, field[1], strlen(field[1]) + 1);
    *state_col = (size_t)(field[4] - line);
    return NULL;
}

static bool is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t') return false;
    return true;
}

/* The one parser of key files.  path only names the file in messages. */
static int parse_keys(const char *path, const char *buf, size_t len, idl_keyring **out,
                      char err[IDL_ERR_MAX])
{
    int rc = IDL_INTERNAL;
    idl_keyring *kr = calloc(1, sizeof *kr);
    size_t cap = 0, lineno = 0, pos = 0;
    char line[LINE_MAX_BYTES + 1];
    if (!kr) {
        set_err(err, "%s: out of memory", path);
        goto fail;
    }
    while (pos < len) {
        const char *start = buf + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - start) : len - pos;
        size_t line_off = pos;
        pos += n + (nl ? 1 : 0);
        lineno++;
        if (n == 0 || start[0] == '#' || is_blank(start, n)) continue;
        if (n > LINE_MAX_BYTES) {
            rc = IDL_INVALID_ARGUMENT;
            set_err(err, "%s:%zu: line longer than %d bytes", path, lineno, LINE_MAX_BYTES);
            goto fail;
        }
        if (memchr(start, '\0', n)) {
            rc = IDL_INVALID_ARGUMENT;
            set_err(err, "%s:%zu: contains a NUL byte", path, lineno);
            goto fail;
        }
        if (kr->count == cap) {
            size_t ncap = cap ? 2 * cap : 16;
            idl_key *nk = realloc(kr->keys, ncap * sizeof *nk);
            if (!nk) {
                set_err(err, "%s: out of memory", path);
                goto fail;
            }
            kr->keys = nk;
            cap = ncap;
        }
        memcpy(line, start, n);
        line[n] = '\0';
        idl_key *k = &kr->keys[kr->count];
        memset(k, 0, sizeof *k);
        size_t state_col = 0;
        const char *field = NULL;
        const char *why = parse_line(line, k, &state_col, &field);
        if (why) {
            rc = IDL_INVALID_ARGUMENT;
            set_err(err, "%s:%zu: %s%s%s", path, lineno, field ? field : "", field ? ": " : "",
                    why);
            goto fail;
        }
        k->line = lineno;
        k->state_off = line_off + state_col;
        kr->count++;
    }

    kr->by_id = malloc((kr->count ? kr->count : 1) * sizeof *kr->by_id);
    if (!kr->by_id) {
        set_err(err, "%s: out of memory", path);
        goto fail;
    }
    for (size_t i = 0; i < kr->count; i++)
        kr->by_id[i] = &kr->keys[i];
    qsort(kr->by_id, kr->count, sizeof *kr->by_id, cmp_key_by_id);
    /* Report the duplicate that comes first in the file, as a reader would
     * find it: equal ids sort by line, so that is the second of some run and
     * its predecessor is the first of the run. */
    const idl_key *dup = NULL, *first = NULL;
    for (size_t i = 1; i < kr->count; i++) {
        const idl_key *a = kr->by_id[i - 1], *b = kr->by_id[i];
        if (strcmp(a->info.id, b->info.id) == 0 && (!dup || b->line < dup->line)) {
            dup = b;
            first = a;
        }
    }
    if (dup) {
        rc = IDL_INVALID_ARGUMENT;
        set_err(err, "%s:%zu: duplicate id %s (first on line %zu)", path, dup->line, dup->info.id,
                first->line);
        goto fail;
    }

    for (; kr->locks_ready < kr->count; kr->locks_ready++) {
        idl_key *k = &kr->keys[kr->locks_ready];
        if (pthread_mutex_init(&k->lock, NULL) != 0) {
            set_err(err, "%s: cannot create a lock", path);
            goto fail;
        }
        k->tokens = (uint64_t)k->info.rate * MICRO;
        k->last_us = 0;
    }
    randombytes_buf(kr->dummy_hash, sizeof kr->dummy_hash);
    *out = kr;
    return IDL_OK;

fail:
    idl_keyring_free(kr);
    return rc;
}

/* Reads what remains of fd into a malloc'd buffer. */
static int read_all(int fd, const char *path, char **buf_out, size_t *len_out,
                    char err[IDL_ERR_MAX])
{
    int rc = IDL_INTERNAL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        set_err(err, "%s: out of memory", path);
        goto fail;
    }
    for (;;) {
        if (len == cap) {
            if (cap >= FILE_MAX_BYTES) {
                rc = IDL_INVALID_ARGUMENT;
                set_err(err, "%s: larger than %u MiB, not a key file", path, FILE_MAX_BYTES >> 20);
                goto fail;
            }
            char *nb = realloc(buf, 2 * cap);
            if (!nb) {
                set_err(err, "%s: out of memory", path);
                goto fail;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            set_err(err, "%s: read: %s", path, strerror(errno));
            goto fail;
        }
        if (n == 0) break;
        len += (size_t)n;
    }
    *buf_out = buf;
    *len_out = len;
    return IDL_OK;

fail:
    free(buf);
    return rc;
}

static int flock_retry(int fd, int op)
{
    int r;
    do
        r = flock(fd, op);
    while (r < 0 && errno == EINTR);
    return r;
}

int idl_keyring_load(const char *path, idl_keyring **out, char err[IDL_ERR_MAX])
{
    int rc = IDL_INTERNAL;
    int fd = -1;
    char *buf = NULL;
    size_t len = 0;
    idl_keyring *kr = NULL;
    if (sodium_init() < 0) {
        set_err(err, "%s: libsodium failed to initialize", path);
        goto fail;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = status_from_errno(errno);
        set_err(err, "%s: %s", path, strerror(errno));
        goto fail;
    }
    /* Shared lock: an append by `keys add` is never seen half-written. */
    if (flock_retry(fd, LOCK_SH) < 0) {
        set_err(err, "%s: flock: %s", path, strerror(errno));
        goto fail;
    }
    rc = read_all(fd, path, &buf, &len, err);
    if (rc != IDL_OK) goto fail;
    rc = parse_keys(path, buf, len, &kr, err);
    if (rc != IDL_OK) goto fail;
    free(buf);
    close(fd);
    *out = kr;
    return IDL_OK;

fail:
    free(buf);
    if (fd >= 0) close(fd);
    return rc;
}

size_t idl_keyring_count(const idl_keyring *kr)
{
    return kr ? kr->count : 0;
}

const idl_key_info *idl_keyring_info(const idl_keyring *kr, size_t i)
{
    if (!kr || i >= kr->count) return NULL;
    return &kr->keys[i].info;
}

const idl_key_info *idl_key_get_info(const idl_key *key)
{
    return &key->info;
}

/* ------------------------------------------------------------ authenticate */

int idl_auth_check(idl_keyring *kr, const char *authorization, size_t len, idl_key **key)
{
    unsigned char got[HASH_LEN];
    if (!kr || !authorization || len != BEARER_LEN + SECRET_LEN ||
        memcmp(authorization, BEARER, BEARER_LEN) != 0)
        return IDL_UNAUTHENTICATED;
    /* The shape of a secret is public, so rejecting a malformed one early
     * tells an attacker nothing. */
    const char *secret = authorization + BEARER_LEN;
    const char *id = secret + SECRET_PREFIX_LEN;
    const char *tail = id + ID_LEN + 1;
    if (memcmp(secret, SECRET_PREFIX, SECRET_PREFIX_LEN) != 0 || !is_valid_id(id, ID_LEN) ||
        id[ID_LEN] != '_')
        return IDL_UNAUTHENTICATED;
    for (size_t i = 0; i < SECRET_TAIL_LEN; i++)
        if (!is_base64url(tail[i])) return IDL_UNAUTHENTICATED;

    idl_key *k = find_key(kr, id);
    hash_secret(secret, SECRET_LEN, got);
    bool match = sodium_memcmp(got, k ? k->hash : kr->dummy_hash, HASH_LEN) == 0;
    if (!k || !match || k->info.revoked) return IDL_UNAUTHENTICATED;
    *key = k;
    return IDL_OK;
}

/* ------------------------------------------------------------ rate limiter */

int idl_key_take(idl_key *key, uint64_t now_us, uint32_t *remaining, uint32_t *retry_after_ms)
{
    int rc;
    uint64_t rate = key->info.rate;
    uint64_t capacity = rate * MICRO;
    pthread_mutex_lock(&key->lock);
    /* Threads read the clock before taking the lock, so now_us can be a little
     * older than last_us; such a call refills nothing rather than twice. */
    if (now_us > key->last_us) {
        /* An empty bucket is full again after one second, so longer gaps need
         * not be multiplied (and cannot overflow). */
        uint64_t elapsed = now_us - key->last_us;
        if (elapsed > MICRO) elapsed = MICRO;
        uint64_t tokens = key->tokens + elapsed * rate;
        key->tokens = tokens > capacity ? capacity : tokens;
        key->last_us = now_us;
    }
    if (key->tokens >= MICRO) {
        key->tokens -= MICRO;
        uint32_t left = (uint32_t)(key->tokens / MICRO);
        pthread_mutex_unlock(&key->lock);
        if (remaining) *remaining = left;
        rc = IDL_OK;
    } else {
        uint64_t deficit = MICRO - key->tokens;
        pthread_mutex_unlock(&key->lock);
        uint64_t wait_us = (deficit + rate - 1) / rate;
        uint64_t wait_ms = (wait_us + 999) / 1000;
        if (retry_after_ms) *retry_after_ms = (uint32_t)(wait_ms ? wait_ms : 1);
        rc = IDL_RESOURCE_EXHAUSTED;
    }
    return rc;
}

/* The bucket's content at now_us (in millionths of a token), refilled but
 * not taken from. */
static uint64_t tokens_at(idl_key *key, uint64_t now_us)
{
    uint64_t rate = key->info.rate;
    pthread_mutex_lock(&key->lock);
    uint64_t tokens = key->tokens;
    if (now_us > key->last_us) {
        uint64_t elapsed = now_us - key->last_us;
        if (elapsed > MICRO) elapsed = MICRO;
        tokens += elapsed * rate;
        if (tokens > rate * MICRO) tokens = rate * MICRO;
    }
    pthread_mutex_unlock(&key->lock);
    return tokens;
}

void idl_key_peek(idl_key *key, uint64_t now_us, uint32_t *remaining)
{
    *remaining = (uint32_t)(tokens_at(key, now_us) / MICRO);
}

int idl_key_has_token(idl_key *key, uint64_t now_us, uint32_t *retry_after_ms)
{
    uint64_t rate = key->info.rate;
    uint64_t tokens = tokens_at(key, now_us);
    if (tokens >= MICRO) return IDL_OK;
    uint64_t wait_us = (MICRO - tokens + rate - 1) / rate;
    uint64_t wait_ms = (wait_us + 999) / 1000;
    if (retry_after_ms) *retry_after_ms = (uint32_t)(wait_ms ? wait_ms : 1);
    return IDL_RESOURCE_EXHAUSTED;
}

/* ---------------------------------------------------------------- editing */

static int write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Makes a rename or a creation in path's directory durable. */
static int fsync_parent(const char *path, char err[IDL_ERR_MAX])
{
    int rc = IDL_INTERNAL;
    int fd = -1;
    char *copy = strdup(path);
    if (!copy) {
        set_err(err, "%s: out of memory", path);
        goto out;
    }
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    /* Some file systems cannot fsync a directory; the data is safe anyway. */
    if (fd < 0 || (fsync(fd) < 0 && errno != EINVAL)) {
        set_err(err, "%s: syncing its directory: %s", path, strerror(errno));
        goto out;
    }
    rc = IDL_OK;
out:
    if (fd >= 0) close(fd);
    free(copy);
    return rc;
}

/* Opens path and takes an exclusive lock on it; for appending when create is
 * set (and then creates a missing file), else only for reading, as a rewrite
 * goes to a new file.  A revoke replaces the file by rename, so a lock won on
 * the old inode would guard nothing: after locking, the path must still name
 * the locked inode, else try again. */
static int open_locked(const char *path, bool create, int *fd_out, bool *created_out,
                       struct stat *st_out, char err[IDL_ERR_MAX])
{
    int rc = IDL_INTERNAL;
    int fd = -1;
    bool created = false;
    struct stat st, cur;
    for (int attempt = 0; attempt < LOCK_RETRIES; attempt++) {
        created = false;
        fd = open(path, create ? O_RDWR | O_APPEND | O_CLOEXEC : O_RDONLY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT && create) {
            fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            if (fd < 0 && errno == EEXIST) continue;
            created = fd >= 0;
        }
        if (fd < 0) {
            rc = status_from_errno(errno);
            set_err(err, "%s: %s", path, strerror(errno));
            goto fail;
        }
        if (flock_retry(fd, LOCK_EX) < 0 || fstat(fd, &st) < 0) {
            set_err(err, "%s: %s", path, strerror(errno));
            goto fail;
        }
        if (stat(path, &cur) == 0 && cur.st_dev == st.st_dev && cur.st_ino == st.st_ino) {
            *fd_out = fd;
            *created_out = created;
            *st_out = st;
            return IDL_OK;
        }
        close(fd);
        fd = -1;
    }
    set_err(err, "%s: keeps being replaced while trying to lock it", path);
fail:
    if (fd >= 0) close(fd);
    return rc;
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int idl_keyfile_add(const char *path, const char *customer, unsigned scopes, uint32_t rate,
                    char secret[IDL_AUTH_SECRET_MAX], char id_out[IDL_AUTH_ID_MAX],
                    char err[IDL_ERR_MAX])
{
    int rc = IDL_INVALID_ARGUMENT;
    int fd = -1;
    bool created = false;
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    idl_keyring *kr = NULL;
    char id[ID_LEN + 1];
    char sec[SECRET_LEN + 1];
    char scopes_text[32];
    char hash_hex[2 * HASH_LEN + 1];
    unsigned char raw[SECRET_RANDOM_BYTES];
    unsigned char hash[HASH_LEN];
    char line[LINE_MAX_BYTES];
    const char *why = NULL;

    if ((why = customer_problem(customer))) {
        set_err(err, "customer: %s", why);
        goto out;
    }
    if (!scopes || (scopes & ~SCOPE_ALL)) {
        set_err(err, "scopes: expected a non-empty subset of lookup,privacy,admin");
        goto out;
    }
    if (rate < IDL_AUTH_RATE_MIN || rate > IDL_AUTH_RATE_MAX) {
        set_err(err, "rate: %u is out of range 1..1000000", (unsigned)rate);
        goto out;
    }
    rc = IDL_INTERNAL;
    if (sodium_init() < 0) {
        set_err(err, "%s: libsodium failed to initialize", path);
        goto out;
    }
    rc = open_locked(path, true, &fd, &created, &st, err);
    if (rc != IDL_OK) goto out;
    rc = read_all(fd, path, &buf, &len, err);
    if (rc != IDL_OK) goto out;
    rc = parse_keys(path, buf, len, &kr, err);
    if (rc != IDL_OK) goto out;

    rc = IDL_INTERNAL;
    bool unique = false;
    for (int i = 0; i < ID_RETRIES && !unique; i++) {
        unsigned char r[ID_RANDOM_BYTES];
        randombytes_buf(r, sizeof r);
        id[0] = 'k';
        hex_encode(r, sizeof r, id + 1);
        unique = find_key(kr, id) == NULL;
    }
    if (!unique) {
        set_err(err, "%s: no free key id found", path);
        goto out;
    }
    randombytes_buf(raw, sizeof raw);
    memcpy(sec, SECRET_PREFIX, SECRET_PREFIX_LEN);
    memcpy(sec + SECRET_PREFIX_LEN, id, ID_LEN);
    sec[SECRET_PREFIX_LEN + ID_LEN] = '_';
    sodium_bin2base64(sec + SECRET_PREFIX_LEN + ID_LEN + 1, SECRET_TAIL_LEN + 1, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    hash_secret(sec, SECRET_LEN, hash);
    hex_encode(hash, sizeof hash, hash_hex);
    idl_auth_format_scopes(scopes, scopes_text, sizeof scopes_text);

    /* A last line without its newline would otherwise swallow the new key. */
    bool need_nl = len > 0 && buf[len - 1] != '\n';
    int n = snprintf(line, sizeof line, "%s%s\t%s\t%s\t%u\t%s\t%s\n", need_nl ? "\n" : "", id,
                     customer, scopes_text, (unsigned)rate, STATE_ACTIVE, hash_hex);
    if (n < 0 || (size_t)n >= sizeof line) {
        set_err(err, "%s: key line too long", path);
        goto out;
    }
    /* One write for the whole line; on failure cut the file back so that no
     * half line is left for the parser to reject. */
    if (write_all(fd, line, (size_t)n) < 0 || fsync(fd) < 0) {
        set_err(err, "%s: write: %s", path, strerror(errno));
        if (ftruncate(fd, (off_t)len) == 0) (void)fsync(fd);
        goto out;
    }
    if (created) {
        rc = fsync_parent(path, err);
        if (rc != IDL_OK) goto out;
        rc = IDL_INTERNAL;
    }
    if (close(fd) < 0) {
        fd = -1;
        set_err(err, "%s: close: %s", path, strerror(errno));
        goto out;
    }
    fd = -1;
    memcpy(secret, sec, SECRET_LEN + 1);
    memcpy(id_out, id, ID_LEN + 1);
    rc = IDL_OK;

out:
    sodium_memzero(sec, sizeof sec);
    sodium_memzero(raw, sizeof raw);
    if (fd >= 0) close(fd);
    idl_keyring_free(kr);
    free(buf);
    return rc;
}

int idl_keyfile_revoke(const char *path, const char *id, char err[IDL_ERR_MAX])
{
    int rc = IDL_INTERNAL;
    int fd = -1, tfd = -1;
    bool created = false;
    struct stat st;
    char *buf = NULL, *tmp = NULL;
    size_t len = 0;
    idl_keyring *kr = NULL;

    rc = open_locked(path, false, &fd, &created, &st, err);
    if (rc != IDL_OK) goto out;
    rc = read_all(fd, path, &buf, &len, err);
    if (rc != IDL_OK) goto out;
    rc = parse_keys(path, buf, len, &kr, err);
    if (rc != IDL_OK) goto out;
    if (!id || !is_valid_id(id, strlen(id))) {
        rc = IDL_NOT_FOUND;
        set_err(err, "%s: not a key id (expected 'k' and 12 lower-case hex digits)", path);
        goto out;
    }
    idl_key *k = find_key(kr, id);
    if (!k) {
        rc = IDL_NOT_FOUND;
        set_err(err, "%s: no key with id %s", path, id);
        goto out;
    }
    if (k->info.revoked) {
        rc = IDL_OK; /* nothing to change, so nothing to rewrite */
        goto out;
    }

    rc = IDL_INTERNAL;
    if (asprintf(&tmp, "%s.tmp-XXXXXX", path) < 0) {
        tmp = NULL;
        set_err(err, "%s: out of memory", path);
        goto out;
    }
    tfd = mkostemp(tmp, O_CLOEXEC);
    if (tfd < 0) {
        set_err(err, "%s: cannot create a temp file beside it: %s", path, strerror(errno));
        free(tmp);
        tmp = NULL;
        goto out;
    }
    /* Only the state field changes; comments and layout stay as they were. */
    size_t off = k->state_off;
    size_t old_len = strlen(STATE_ACTIVE);
    /* The daemon may read the file as another user: keep owner and mode, or
     * refuse rather than lock it out at the next reload. */
    if ((st.st_uid != geteuid() || st.st_gid != getegid()) &&
        fchown(tfd, st.st_uid, st.st_gid) < 0) {
        set_err(err, "%s: cannot give the rewritten file the same owner: %s", path,
                strerror(errno));
        goto out;
    }
    if (fchmod(tfd, st.st_mode & 07777) < 0 || write_all(tfd, buf, off) < 0 ||
        write_all(tfd, STATE_REVOKED, strlen(STATE_REVOKED)) < 0 ||
        write_all(tfd, buf + off + old_len, len - off - old_len) < 0 || fsync(tfd) < 0) {
        set_err(err, "%s: writing %s: %s", path, tmp, strerror(errno));
        goto out;
    }
    if (close(tfd) < 0) {
        tfd = -1;
        set_err(err, "%s: closing %s: %s", path, tmp, strerror(errno));
        goto out;
    }
    tfd = -1;
    if (rename(tmp, path) < 0) {
        set_err(err, "%s: rename from %s: %s", path, tmp, strerror(errno));
        goto out;
    }
    free(tmp);
    tmp = NULL;
    rc = fsync_parent(path, err);

out:
    if (tfd >= 0) close(tfd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    if (fd >= 0) close(fd);
    idl_keyring_free(kr);
    free(buf);
    return rc;
}
