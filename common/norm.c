/* Normalization of identifiers (DATA.md §3).
 *
 * The normalizers run once per identifier in bulk ingest and on every request,
 * so the common case is kept cheap: ASCII input never reaches ICU, nothing is
 * allocated on the heap (bounded stack buffers; inputs that would not fit are
 * "too long"), and reference words are found by bsearch in the tables that
 * gen_tables.py compiles in.  Phone numbers are the exception: they go through
 * libphonenumber (phone.cc), which is the reference for what a valid number is.
 */
#include "norm.h"

#include "norm_tables.h"
#include "phone.h"
#include "status.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>

/* Longest input (in bytes, after trimming) each free-text normalizer looks at.
 * They bound the stack buffers; anything longer could not produce an output
 * that fits anyway, short of being mostly spaces. */
#define NAME_IN_MAX 512
#define ADDR_IN_MAX 512
/* Room for the NFD form of ADDR_IN_MAX / NAME_IN_MAX UTF-16 units: one unit
 * decomposes into at most four. */
#define U16_WORK_MAX (4 * 512)
#define ADDR_WORK_MAX 1024
#define MAX_TOKENS 128

static int invalid(const char **reason, const char *why)
{
    *reason = why;
    return IDL_INVALID_ARGUMENT;
}

static bool is_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static unsigned char to_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static unsigned char to_upper(unsigned char c)
{
    return c >= 'a' && c <= 'z' ? (unsigned char)(c - 32) : c;
}

static void trim(const char **s, size_t *len)
{
    const unsigned char *p = (const unsigned char *)*s;
    size_t n = *len;
    while (n > 0 && is_space(p[0])) {
        p++;
        n--;
    }
    while (n > 0 && is_space(p[n - 1]))
        n--;
    *s = (const char *)p;
    *len = n;
}

static bool all_ascii(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80) return false;
    return true;
}

/* Decodes one well-formed UTF-8 sequence at s[*i]; -1 for an ill-formed one
 * (overlong, surrogate, beyond U+10FFFF, truncated). */
static int32_t utf8_next(const unsigned char *s, size_t len, size_t *i)
{
    unsigned char c = s[*i];
    if (c < 0x80) {
        (*i)++;
        return c;
    }
    int extra;
    int32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) {
        extra = 1;
        cp = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        extra = 2;
        cp = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        extra = 3;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return -1;
    }
    if (len - *i <= (size_t)extra) return -1;
    for (int k = 1; k <= extra; k++) {
        unsigned char d = s[*i + (size_t)k];
        if ((d & 0xC0) != 0x80) return -1;
        cp = (cp << 6) | (d & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
    *i += (size_t)extra + 1;
    return cp;
}

static bool utf8_valid(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len)
        if (utf8_next((const unsigned char *)s, len, &i) < 0) return false;
    return true;
}

/* ---- line types ---------------------------------------------------------- */

static const char *const line_names[] = {
    [IDL_LINE_UNKNOWN] = "unknown",     [IDL_LINE_MOBILE] = "mobile",
    [IDL_LINE_LANDLINE] = "landline",   [IDL_LINE_VOIP] = "voip",
    [IDL_LINE_TOLL_FREE] = "toll_free", [IDL_LINE_PREMIUM] = "premium",
};
#define LINE_COUNT (sizeof line_names / sizeof line_names[0])

const char *idl_line_type_name(idl_line_type t)
{
    if ((unsigned)t >= LINE_COUNT) return "unknown";
    return line_names[t];
}

int idl_line_type_parse(const char *s, idl_line_type *out)
{
    if (!s) return IDL_INVALID_ARGUMENT;
    for (size_t i = 0; i < LINE_COUNT; i++) {
        if (strcmp(s, line_names[i]) == 0) {
            *out = (idl_line_type)i;
            return IDL_OK;
        }
    }
    return IDL_INVALID_ARGUMENT;
}

/* ---- email --------------------------------------------------------------- */

/* RFC 5321 caps a forward path at 256 octets including the angle brackets. */
#define EMAIL_IN_MAX 254

static int check_domain(const char *d, size_t n, const char **reason)
{
    if (n == 0) return invalid(reason, "missing domain");
    if (!memchr(d, '.', n)) return invalid(reason, "domain has no dot");
    size_t start = 0;
    bool all_digits = true;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && d[i] != '.') {
            unsigned char c = (unsigned char)d[i];
            if (!is_alpha(c) && !is_digit(c) && c != '-')
                return invalid(reason, "invalid character in domain");
            if (!is_digit(c)) all_digits = false;
            continue;
        }
        size_t label = i - start;
        if (label == 0) return invalid(reason, "empty label in domain");
        if (label > 63) return invalid(reason, "domain label too long");
        if (d[start] == '-' || d[i - 1] == '-')
            return invalid(reason, "domain label starts or ends with '-'");
        if (i == n && all_digits) return invalid(reason, "top-level domain is numeric");
        start = i + 1;
        all_digits = true;
    }
    return IDL_OK;
}

int idl_norm_email(const char *in, size_t len, char out[IDL_NORM_EMAIL_MAX], const char **reason)
{
    if (!in) return invalid(reason, "missing email");
    trim(&in, &len);
    if (len == 0) return invalid(reason, "empty email");
    if (len > EMAIL_IN_MAX) return invalid(reason, "email too long");

    char buf[IDL_NORM_EMAIL_MAX];
    size_t at = len;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c <= ' ' || c == 0x7F)
            return invalid(reason, "email contains a space or control character");
        if (c == '@') {
            if (at != len) return invalid(reason, "more than one '@'");
            at = i;
        }
        buf[i] = (char)to_lower(c);
    }
    if (at == len) return invalid(reason, "missing '@'");
    if (at == 0) return invalid(reason, "empty local part");
    if (!utf8_valid(buf, at)) return invalid(reason, "invalid UTF-8");

    const char *domain = buf + at + 1;
    size_t dlen = len - at - 1;
    int rc = check_domain(domain, dlen, reason);
    if (rc) return rc;

    bool gmail = false;
    if (dlen == 14 && memcmp(domain, "googlemail.com", 14) == 0) {
        domain = "gmail.com";
        dlen = 9;
        gmail = true;
    } else if (dlen == 9 && memcmp(domain, "gmail.com", 9) == 0) {
        gmail = true;
    }

    size_t local = at;
    if (gmail) {
        // Gmail ignores dots and "+tag" when delivering, so they name one box.
        size_t w = 0;
        for (size_t i = 0; i < at && buf[i] != '+'; i++)
            if (buf[i] != '.') buf[w++] = buf[i];
        local = w;
        if (local == 0) return invalid(reason, "empty local part");
    }
    memcpy(out, buf, local);
    out[local] = '@';
    memmove(out + local + 1, domain, dlen);
    out[local + 1 + dlen] = '\0';
    return IDL_OK;
}

/* ---- phone --------------------------------------------------------------- */

/* libphonenumber refuses longer input itself; checking first spares it the
 * copy into a std::string. */
#define PHONE_IN_MAX 250

int idl_norm_phone(const char *in, size_t len, char out[IDL_NORM_PHONE_MAX],
                   idl_line_type *plan_type, char country[3], const char **reason)
{
    if (!in) return invalid(reason, "missing phone number");
    trim(&in, &len);
    if (len == 0) return invalid(reason, "empty phone number");
    if (len > PHONE_IN_MAX) return invalid(reason, "phone number too long");
    char e164[IDL_NORM_PHONE_MAX];
    idl_line_type type;
    char cc[3];
    if (idl_phone_parse(in, len, e164, sizeof e164, &type, country ? cc : NULL, reason) != 0)
        return IDL_INVALID_ARGUMENT;
    memcpy(out, e164, strlen(e164) + 1);
    if (plan_type) *plan_type = type;
    if (country) memcpy(country, cc, 3);
    return IDL_OK;
}

/* ---- ICU folding (non-ASCII names and addresses) ------------------------- */

typedef enum { FOLD_NAME, FOLD_UPPER } fold_mode;

/* Typographic apostrophes and hyphens stand for the ASCII ones people meant;
 * without this "O’Brien" and "O'Brien" would normalize apart. */
static UChar32 ascii_lookalike(UChar32 c)
{
    switch (c) {
    case 0x2018:
    case 0x2019:
    case 0x02BC:
        return '\'';
    case 0x2010:
    case 0x2011:
    case 0x2012:
    case 0x2013:
        return '-';
    default:
        return c;
    }
}

static bool is_mark(int8_t type)
{
    return type == U_NON_SPACING_MARK || type == U_ENCLOSING_MARK;
}

static bool is_punct_or_symbol(int8_t type)
{
    switch (type) {
    case U_DASH_PUNCTUATION:
    case U_START_PUNCTUATION:
    case U_END_PUNCTUATION:
    case U_CONNECTOR_PUNCTUATION:
    case U_OTHER_PUNCTUATION:
    case U_INITIAL_PUNCTUATION:
    case U_FINAL_PUNCTUATION:
    case U_MATH_SYMBOL:
    case U_CURRENCY_SYMBOL:
    case U_MODIFIER_SYMBOL:
    case U_OTHER_SYMBOL:
        return true;
    default:
        return false;
    }
}

/* UTF-8 -> NFD -> per code point rule -> NFC -> UTF-8.  Accents are the
 * nonspacing marks NFD splits off; NFC afterwards puts back together what
 * was decomposed but not dropped (Hangul syllables, for one).
 *
 * FOLD_NAME: simple case folding; punctuation and symbols other than '-' and
 * '\'' removed; whitespace collapsed and trimmed; *has_alnum tells whether a
 * letter or digit is left.  FOLD_UPPER: simple upper-casing; whitespace and
 * controls become ' ' (the address tokenizer collapses them). */
static int icu_fold(const char *in, size_t len, fold_mode mode, char *out, size_t cap,
                    size_t *out_len, bool *has_alnum, const char *too_long, const char **reason)
{
    UChar src[U16_WORK_MAX], nfd[U16_WORK_MAX];
    UErrorCode st = U_ZERO_ERROR;
    int32_t n = 0;
    u_strFromUTF8(src, U16_WORK_MAX, &n, in, (int32_t)len, &st);
    if (st == U_BUFFER_OVERFLOW_ERROR || st == U_STRING_NOT_TERMINATED_WARNING)
        return invalid(reason, too_long);
    if (U_FAILURE(st)) return invalid(reason, "invalid UTF-8");

    st = U_ZERO_ERROR;
    const UNormalizer2 *nfd_n = unorm2_getNFDInstance(&st);
    const UNormalizer2 *nfc_n = unorm2_getNFCInstance(&st);
    if (U_FAILURE(st)) return invalid(reason, "Unicode data unavailable");
    st = U_ZERO_ERROR;
    int32_t m = unorm2_normalize(nfd_n, src, n, nfd, U16_WORK_MAX, &st);
    if (st == U_BUFFER_OVERFLOW_ERROR || st == U_STRING_NOT_TERMINATED_WARNING)
        return invalid(reason, too_long);
    if (U_FAILURE(st)) return invalid(reason, "invalid UTF-8");

    // Folding back into src: the result is never longer than the NFD form,
    // except for a BMP character whose case mapping leaves the BMP, hence the
    // bound check on every write.
    int32_t w = 0;
    bool pending_space = false, alnum = false;
    for (int32_t i = 0; i < m;) {
        UChar32 c;
        U16_NEXT(nfd, i, m, c);
        c = ascii_lookalike(c);
        int8_t type = u_charType(c);
        if (is_mark(type)) continue;
        if (mode == FOLD_UPPER && (u_isUWhiteSpace(c) || type == U_CONTROL_CHAR)) {
            c = ' ';
        } else if (u_isUWhiteSpace(c)) {
            pending_space = true;
            continue;
        } else if (type == U_CONTROL_CHAR || type == U_FORMAT_CHAR) {
            continue;
        } else if (mode == FOLD_NAME) {
            if (c != '-' && c != '\'' && is_punct_or_symbol(type)) continue;
            c = u_foldCase(c, U_FOLD_CASE_DEFAULT);
            if (u_isalnum(c)) alnum = true;
        } else {
            c = u_toupper(c);
        }
        if (pending_space && w > 0) {
            if (w >= U16_WORK_MAX) return invalid(reason, too_long);
            src[w++] = ' ';
        }
        pending_space = false;
        if (w + U16_LENGTH(c) > U16_WORK_MAX) return invalid(reason, too_long);
        U16_APPEND_UNSAFE(src, w, c);
    }

    st = U_ZERO_ERROR;
    m = unorm2_normalize(nfc_n, src, w, nfd, U16_WORK_MAX, &st);
    if (U_FAILURE(st) || st == U_STRING_NOT_TERMINATED_WARNING) return invalid(reason, too_long);
    int32_t outn = 0;
    st = U_ZERO_ERROR;
    u_strToUTF8(out, (int32_t)cap, &outn, nfd, m, &st);
    // NUL-termination is required, so exactly cap bytes is too long as well.
    if (U_FAILURE(st) || st == U_STRING_NOT_TERMINATED_WARNING) return invalid(reason, too_long);
    *out_len = (size_t)outn;
    if (has_alnum) *has_alnum = alnum;
    return IDL_OK;
}

/* ---- name ---------------------------------------------------------------- */

static bool ascii_punct(unsigned char c)
{
    return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') ||
           (c >= '{' && c <= '~');
}

int idl_norm_name(const char *in, size_t len, char out[IDL_NORM_NAME_MAX], const char **reason)
{
    if (!in) return invalid(reason, "missing name");
    trim(&in, &len);
    if (len > NAME_IN_MAX) return invalid(reason, "name too long");

    char buf[IDL_NORM_NAME_MAX];
    size_t n = 0;
    bool alnum = false;
    if (all_ascii(in, len)) {
        // The same rules as icu_fold's FOLD_NAME, restricted to ASCII, where
        // folding is tolower and P/S categories are exactly ispunct.
        bool pending_space = false;
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)in[i];
            if (is_space(c)) {
                pending_space = true;
                continue;
            }
            if (c < ' ' || c == 0x7F || (ascii_punct(c) && c != '-' && c != '\'')) continue;
            if (is_alpha(c) || is_digit(c)) alnum = true;
            if (n + 1 + (pending_space && n > 0) >= sizeof buf)
                return invalid(reason, "name too long");
            if (pending_space && n > 0) buf[n++] = ' ';
            pending_space = false;
            buf[n++] = (char)to_lower(c);
        }
        buf[n] = '\0';
    } else {
        int rc = icu_fold(in, len, FOLD_NAME, buf, sizeof buf, &n, &alnum, "name too long", reason);
        if (rc) return rc;
    }
    if (!alnum) return invalid(reason, n == 0 ? "empty name" : "name has no letters");
    memcpy(out, buf, n + 1);
    return IDL_OK;
}

/* ---- IP ------------------------------------------------------------------ */

int idl_norm_ip(const char *in, size_t len, char out[IDL_NORM_IP_MAX], const char **reason)
{
    if (!in) return invalid(reason, "missing IP address");
    trim(&in, &len);
    if (len == 0) return invalid(reason, "empty IP address");
    // The longest textual IPv6 address (with an embedded IPv4) is 45 bytes.
    char text[IDL_NORM_IP_MAX];
    if (len >= sizeof text) return invalid(reason, "not an IP address");
    memcpy(text, in, len);
    text[len] = '\0';
    if (memchr(text, '\0', len)) return invalid(reason, "not an IP address");

    unsigned char addr[16];
    int af = memchr(text, ':', len) ? AF_INET6 : AF_INET;
    if (inet_pton(af, text, addr) != 1)
        return invalid(reason, af == AF_INET6 ? "not an IPv6 address" : "not an IPv4 address");
    char canon[INET6_ADDRSTRLEN];
    if (!inet_ntop(af, addr, canon, sizeof canon)) return invalid(reason, "not an IP address");
    memcpy(out, canon, strlen(canon) + 1);
    return IDL_OK;
}

/* ---- tables -------------------------------------------------------------- */

static int abbr_cmp(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const idl_abbr *)elem)->key);
}

static const idl_abbr *find_abbr(const idl_abbr *table, size_t n, const char *word)
{
    return bsearch(word, table, n, sizeof *table, abbr_cmp);
}

static const idl_abbr *find_suffix(const char *w)
{
    return find_abbr(idl_suffixes, idl_suffixes_len, w);
}

static const idl_abbr *find_unit(const char *w)
{
    return find_abbr(idl_units, idl_units_len, w);
}

static const idl_abbr *find_directional(const char *w)
{
    return find_abbr(idl_directionals, idl_directionals_len, w);
}

/* ---- address ------------------------------------------------------------- */

/* Upper-case, accent-free text of one address field, tokenized: '.' deleted
 * ("N.W." is "NW"), whitespace and ',' separate words, '#' is a word of its
 * own ("#4" and "APT#4" are "# 4" and "APT # 4").  Tokens are NUL-terminated
 * in buf so they can be looked up directly. */
typedef struct {
    char buf[ADDR_WORK_MAX + MAX_TOKENS + 1]; /* a NUL after each token */
    const char *tok[MAX_TOKENS];
    size_t n;
} tokens;

static int tokenize(const char *in, const char *too_long, tokens *t, const char **reason)
{
    size_t len = strnlen(in, ADDR_IN_MAX + 1);
    if (len > ADDR_IN_MAX) return invalid(reason, too_long);
    char up[ADDR_WORK_MAX];
    size_t n = 0;
    if (all_ascii(in, len)) {
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)in[i];
            up[i] = c < ' ' || c == 0x7F ? ' ' : (char)to_upper(c);
        }
        n = len;
    } else {
        int rc = icu_fold(in, len, FOLD_UPPER, up, sizeof up, &n, NULL, too_long, reason);
        if (rc) return rc;
    }

    size_t w = 0;
    t->n = 0;
    bool in_word = false;
    for (size_t i = 0; i < n; i++) {
        char c = up[i];
        if (c == '.') continue;
        bool sep = c == ' ' || c == ',' || is_space((unsigned char)c);
        if (sep || c == '#') {
            if (in_word) t->buf[w++] = '\0';
            in_word = false;
            if (sep) continue;
        }
        if (!in_word) {
            if (t->n == MAX_TOKENS) return invalid(reason, too_long);
            t->tok[t->n++] = t->buf + w;
            in_word = true;
        }
        t->buf[w++] = c;
        if (c == '#') {
            t->buf[w++] = '\0';
            in_word = false;
        }
    }
    if (in_word) t->buf[w++] = '\0';
    return IDL_OK;
}

/* Appends the words, space-separated, to out[*n]; false when they do not fit
 * in cap bytes with the NUL. */
static bool append(char *out, size_t cap, size_t *n, const char *word)
{
    size_t wl = strlen(word);
    size_t need = (*n > 0 ? 1 : 0) + wl;
    if (*n + need + 1 > cap) return false;
    if (*n > 0) out[(*n)++] = ' ';
    memcpy(out + *n, word, wl);
    *n += wl;
    out[*n] = '\0';
    return true;
}

static bool has_digit(const char *w)
{
    for (; *w; w++)
        if (is_digit((unsigned char)*w)) return true;
    return false;
}

/* A word that can follow a designator as its value without a '#': "4",
 * "12B", "B" -- but not "RD" in "12 LOT RD", where LOT is no designator. */
static bool unit_value_like(const char *w)
{
    return has_digit(w) || (is_alpha((unsigned char)w[0]) && w[1] == '\0');
}

/* Writes "DESIGNATOR VALUE..." for tokens tok[from..to) of a unit: the first
 * may be a designator (abbreviated), '#' or neither (then "#" is the
 * designator, Pub 28's rule for an unidentified unit). */
static int format_unit(const char *const *tok, size_t from, size_t to, char *out, size_t cap,
                       const char **reason)
{
    size_t n = 0;
    out[0] = '\0';
    if (from == to) return IDL_OK;
    const idl_abbr *d = find_unit(tok[from]);
    if (d) {
        from++;
        // "APT # 4" says no more than "APT 4".
        if (d->abbr[0] != '#' && from < to && strcmp(tok[from], "#") == 0) from++;
    }
    if (!append(out, cap, &n, d ? d->abbr : "#")) return invalid(reason, "unit too long");
    if (from == to && (!d || d->needs_value)) return invalid(reason, "unit has no number");
    for (size_t i = from; i < to; i++)
        if (!append(out, cap, &n, tok[i])) return invalid(reason, "unit too long");
    return IDL_OK;
}

/* Where a unit starts at the end of the street's words, or n when there is
 * none.  Only words after a house number and one name word qualify, so
 * "12 UNIT B" stays a street. */
static size_t unit_start(const char *const *tok, size_t n)
{
    size_t s = n;
    const idl_abbr *d;
    if (n >= 2 && strcmp(tok[n - 2], "#") == 0)
        s = n >= 3 && find_unit(tok[n - 3]) ? n - 3 : n - 2; // "APT # 4", "# 4"
    else if (n >= 2 && find_unit(tok[n - 2]) && unit_value_like(tok[n - 1]))
        s = n - 2; // "APT 4"
    else if ((d = find_unit(tok[n - 1])) && !d->needs_value && n >= 2 && find_suffix(tok[n - 2]))
        // A designator that takes no value (REAR, FRNT, UPPR) is only taken as
        // such after a suffix: "22 OCEAN FRONT" is a street name.
        s = n - 1;
    return s >= 2 ? s : n;
}

int idl_norm_street(const char *street, const char *unit, char street_out[IDL_NORM_STREET_MAX],
                    char unit_out[IDL_NORM_UNIT_MAX], const char **reason)
{
    if (!street) return invalid(reason, "missing street");
    tokens st;
    int rc = tokenize(street, "street too long", &st, reason);
    if (rc) return rc;
    if (st.n == 0) return invalid(reason, "missing street");

    const char *const *tok = st.tok;
    size_t m = unit_start(tok, st.n);
    char unit_buf[IDL_NORM_UNIT_MAX];
    unit_buf[0] = '\0';
    tokens ut;
    ut.n = 0;
    if (unit && (rc = tokenize(unit, "unit too long", &ut, reason)) != IDL_OK) return rc;
    // The unit given on its own wins over one written into the street; the
    // street loses its unit either way.
    if (ut.n > 0)
        rc = format_unit(ut.tok, 0, ut.n, unit_buf, sizeof unit_buf, reason);
    else
        rc = format_unit(tok, m, st.n, unit_buf, sizeof unit_buf, reason);
    if (rc) return rc;

    if (!has_digit(tok[0])) return invalid(reason, "street does not start with a house number");
    if (m < 2) return invalid(reason, "street has no name");

    // Directionals are abbreviated only in the positions Pub 28 gives them,
    // and only when another name word remains: in "100 NORTH ST" NORTH is the
    // name.  The suffix likewise needs a house number and a name word before
    // it ("1 STREET" is left alone).
    const char *word[MAX_TOKENS];
    for (size_t i = 0; i < m; i++)
        word[i] = tok[i];
    size_t end = m;
    const idl_abbr *a;
    if (end >= 3 && (a = find_directional(word[end - 1]))) {
        word[end - 1] = a->abbr;
        end--;
    }
    if (end >= 3 && (a = find_suffix(word[end - 1]))) {
        word[end - 1] = a->abbr;
        end--;
    }
    if (end >= 3 && (a = find_directional(word[1]))) word[1] = a->abbr;

    char street_buf[IDL_NORM_STREET_MAX];
    size_t n = 0;
    street_buf[0] = '\0';
    for (size_t i = 0; i < m; i++)
        if (!append(street_buf, sizeof street_buf, &n, word[i]))
            return invalid(reason, "street too long");

    memcpy(street_out, street_buf, n + 1);
    memcpy(unit_out, unit_buf, strlen(unit_buf) + 1);
    return IDL_OK;
}

/* Joins the words of one field with single spaces; "" when there are none. */
static int norm_words(const char *in, const char *too_long, char *out, size_t cap,
                      const char **reason)
{
    tokens t;
    int rc = tokenize(in, too_long, &t, reason);
    if (rc) return rc;
    char buf[ADDR_WORK_MAX];
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < t.n; i++)
        if (!append(buf, cap < sizeof buf ? cap : sizeof buf, &n, t.tok[i]))
            return invalid(reason, too_long);
    memcpy(out, buf, n + 1);
    return IDL_OK;
}

int idl_norm_state(const char *in, char out[3], const char **reason)
{
    if (!in) return invalid(reason, "missing state");
    char buf[64];
    int rc = norm_words(in, "unknown state", buf, sizeof buf, reason);
    if (rc) return rc;
    if (!buf[0]) return invalid(reason, "empty state");
    const idl_abbr *s = find_abbr(idl_states, idl_states_len, buf);
    if (!s) return invalid(reason, "unknown state");
    memcpy(out, s->abbr, 3);
    return IDL_OK;
}

int idl_norm_zip(const char *in, char out[6], const char **reason)
{
    if (!in) return invalid(reason, "missing ZIP");
    size_t len = strnlen(in, 64);
    trim(&in, &len);
    if (len == 0) return invalid(reason, "empty ZIP");
    // ZIP+4 is accepted with or without its hyphen; the +4 is not kept.
    bool ok = len == 5 || len == 9 || (len == 10 && in[5] == '-');
    for (size_t i = 0; ok && i < len; i++)
        if (!is_digit((unsigned char)in[i]) && !(len == 10 && i == 5)) ok = false;
    if (!ok) return invalid(reason, "malformed ZIP");
    memcpy(out, in, 5);
    out[5] = '\0';
    return IDL_OK;
}

int idl_norm_city(const char *in, char out[IDL_NORM_CITY_MAX], const char **reason)
{
    if (!in) return invalid(reason, "missing city");
    char buf[IDL_NORM_CITY_MAX];
    int rc = norm_words(in, "city too long", buf, sizeof buf, reason);
    if (rc) return rc;
    if (!buf[0]) return invalid(reason, "empty city");
    memcpy(out, buf, strlen(buf) + 1);
    return IDL_OK;
}

static bool blank(const char *s)
{
    if (!s) return true;
    for (; *s; s++)
        if (!is_space((unsigned char)*s)) return false;
    return true;
}

int idl_norm_address(const char *street, const char *unit, const char *city, const char *state,
                     const char *zip, idl_address *out, const char **reason)
{
    idl_address a;
    int rc = idl_norm_street(street, unit, a.street, a.unit, reason);
    if (rc) return rc;
    a.city[0] = a.state[0] = a.zip[0] = '\0';
    if (!blank(city) && (rc = idl_norm_city(city, a.city, reason)) != IDL_OK) return rc;
    if (!blank(state) && (rc = idl_norm_state(state, a.state, reason)) != IDL_OK) return rc;
    if (!blank(zip) && (rc = idl_norm_zip(zip, a.zip, reason)) != IDL_OK) return rc;
    if (!a.zip[0] && !(a.city[0] && a.state[0]))
        return invalid(reason, "address needs a ZIP or a city and state");
    *out = a;
    return IDL_OK;
}

/* ---- nicknames and typos ------------------------------------------------- */

static int nick_cmp(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const idl_nick_name *)elem)->name);
}

static const idl_nick_name *find_nick(const char *name)
{
    return bsearch(name, idl_nick_names, idl_nick_names_len, sizeof *idl_nick_names, nick_cmp);
}

size_t idl_nick_groups(const char *norm_first, const char **out, size_t max)
{
    if (!norm_first || max == 0) return 0;
    const idl_nick_name *e = find_nick(norm_first);
    if (!e) {
        out[0] = norm_first;
        return 1;
    }
    size_t n = 0;
    out[n++] = e->name;
    for (size_t i = 0; i < e->count && n < max; i++)
        out[n++] = idl_nick_names[idl_nick_canon[e->first + i]].name;
    return n;
}

bool idl_nick_match(const char *a, const char *b)
{
    if (!a || !b) return false;
    if (strcmp(a, b) == 0) return true;
    const idl_nick_name *ea = find_nick(a), *eb = find_nick(b);
    if (!ea || !eb) return false;
    // Each side's set is itself plus its canonical names; the lists are a
    // handful long, so a nested loop beats anything cleverer.
    size_t ia = (size_t)(ea - idl_nick_names), ib = (size_t)(eb - idl_nick_names);
    for (size_t i = 0; i <= ea->count; i++) {
        size_t x = i == 0 ? ia : idl_nick_canon[ea->first + i - 1];
        for (size_t j = 0; j <= eb->count; j++) {
            size_t y = j == 0 ? ib : idl_nick_canon[eb->first + j - 1];
            if (x == y) return true;
        }
    }
    return false;
}

#define TYPO_MAX_CP 256

/* Code points of s, or -1 when s is not UTF-8 or longer than cap. */
static long decode(const char *s, int32_t *cp, size_t cap)
{
    size_t len = strlen(s), i = 0, n = 0;
    while (i < len) {
        if (n == cap) return -1;
        int32_t c = utf8_next((const unsigned char *)s, len, &i);
        if (c < 0) return -1;
        cp[n++] = c;
    }
    return (long)n;
}

static bool same(const int32_t *a, const int32_t *b, size_t n)
{
    return n == 0 || memcmp(a, b, n * sizeof *a) == 0;
}

bool idl_name_typo_match(const char *a, const char *b)
{
    if (!a || !b) return false;
    if (strcmp(a, b) == 0) return true;
    int32_t x[TYPO_MAX_CP], y[TYPO_MAX_CP];
    long lx = decode(a, x, TYPO_MAX_CP), ly = decode(b, y, TYPO_MAX_CP);
    if (lx < 4 || ly < 4) return false;
    const int32_t *p = x, *q = y;
    size_t np = (size_t)lx, nq = (size_t)ly;
    if (np < nq) {
        p = y;
        q = x;
        np = (size_t)ly;
        nq = (size_t)lx;
    }
    if (np - nq > 1) return false;
    // With at most one edit allowed, the first mismatch decides which edit it
    // must be; the rest has to agree exactly, so no distance matrix is needed.
    size_t i = 0;
    while (i < nq && p[i] == q[i])
        i++;
    if (np != nq) return same(p + i + 1, q + i, nq - i);
    if (same(p + i + 1, q + i + 1, np - i - 1)) return true;
    return i + 1 < np && p[i] == q[i + 1] && p[i + 1] == q[i] &&
           same(p + i + 2, q + i + 2, np - i - 2);
}

bool idl_name_match(const char *a, const char *b, bool given_name)
{
    if (!a || !b) return false;
    if (strcmp(a, b) == 0) return true;
    if (given_name && idl_nick_match(a, b)) return true;
    return idl_name_typo_match(a, b);
}
