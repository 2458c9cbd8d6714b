/* Normalization of identifiers (DATA.md §3).
 *
 * The normalizers run once per identifier in bulk ingest and on every request,
 * so the common case is kept cheap: ASCII input never reaches ICU, nothing is
 * allocated on the heap (bounded stack buffers; inputs that would not fit are
 * "too long"), and reference words are found by bsearch in the tables that
 * gen_tables.py compiles in.  Phone numbers are the exception: they go through
 * libphonenumber (phone.cc), which is the reference for what a valid number is;
 * so are internationalized email domains (and xn-- labels), which libidn2
 * checks against IDNA 2008 and which it allocates for.
 */
#include "norm.h"

#include "norm_tables.h"
#include "phone.h"
#include "status.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <stdint.h>
#include <stdio.h>
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

/* RFC 5321 §4.5.3.1: a path is at most 256 octets with its angle brackets,
 * so an address at most 254; a local part at most 64; a domain at most 253
 * (RFC 1035 §2.3.4 less the root's dot) with labels of at most 63. */
#define EMAIL_IN_MAX 254
#define LOCAL_MAX 64
#define DOMAIN_MAX 253
#define LABEL_MAX 63

/* RFC 5322 §3.2.3 atext, less ALPHA and DIGIT. */
static bool is_atext_special(unsigned char c)
{
    return c != '\0' && strchr("!#$%&'*+/=?^_`{|}~-", c) != NULL;
}

/* Why an ASCII character that is not atext cannot stand in a dot-atom local
 * part.  Static strings, one per character, so reasons stay static. */
static const char *local_char_reason(unsigned char c)
{
    switch (c) {
    case '"':
        return "quoted local part (quotes are not accepted)";
    case '(':
    case ')':
        return "comment in email (parentheses are not accepted)";
    case '\\':
        return "backslash in local part";
    case '[':
        return "'[' in local part";
    case ']':
        return "']' in local part";
    case ';':
        return "';' in local part";
    case ':':
        return "':' in local part";
    case ',':
        return "',' in local part";
    case '<':
        return "'<' in local part";
    case '>':
        return "'>' in local part";
    default:
        return "character not allowed in local part";
    }
}

/* Reasons for the invisible and text-reordering characters people paste by
 * accident, by code point; other format characters get a general reason. */
static const char *format_reason(UChar32 c)
{
    switch (c) {
    case 0x00AD:
        return "invisible character U+00AD (soft hyphen)";
    case 0x061C:
        return "bidi format character U+061C";
    case 0x180E:
        return "invisible character U+180E";
    case 0x200B:
        return "invisible character U+200B";
    case 0x200C:
        return "invisible character U+200C";
    case 0x200D:
        return "invisible character U+200D";
    case 0x200E:
        return "bidi format character U+200E";
    case 0x200F:
        return "bidi format character U+200F";
    case 0x202A:
        return "bidi format character U+202A";
    case 0x202B:
        return "bidi format character U+202B";
    case 0x202C:
        return "bidi format character U+202C";
    case 0x202D:
        return "bidi format character U+202D";
    case 0x202E:
        return "bidi format character U+202E";
    case 0x2060:
        return "invisible character U+2060";
    case 0x2066:
        return "bidi format character U+2066";
    case 0x2067:
        return "bidi format character U+2067";
    case 0x2068:
        return "bidi format character U+2068";
    case 0x2069:
        return "bidi format character U+2069";
    case 0xFEFF:
        return "invisible character U+FEFF";
    default:
        return "invisible format character";
    }
}

/* Checks every character of an email for the classes DATA.md §3 refuses
 * anywhere (controls, invisible, bidi, separators, private use, unassigned,
 * a combining mark that starts a run); the ASCII grammar is checked later.
 * A run starts at the beginning, after '@' and after '.'. */
static int check_email_chars(const unsigned char *s, size_t len, bool *ascii, const char **reason)
{
    *ascii = true;
    bool run_start = true;
    for (size_t i = 0; i < len;) {
        unsigned char b = s[i];
        if (b < 0x80) {
            i++;
            if (b == '\r') return invalid(reason, "carriage return (CR) in email");
            if (b == '\n') return invalid(reason, "line feed (LF) in email");
            if (b == ' ' || b == '\t')
                return invalid(reason,
                               "white space inside email (folding white space is not accepted)");
            if (b < ' ' || b == 0x7F) return invalid(reason, "control character in email");
            run_start = b == '.' || b == '@';
            continue;
        }
        *ascii = false;
        int32_t c = utf8_next(s, len, &i);
        if (c < 0) return invalid(reason, "invalid UTF-8");
        switch (u_charType(c)) {
        case U_CONTROL_CHAR:
            return invalid(reason, "C1 control character in email");
        case U_FORMAT_CHAR:
            return invalid(reason, format_reason(c));
        case U_LINE_SEPARATOR:
            return invalid(reason, "line separator U+2028 in email");
        case U_PARAGRAPH_SEPARATOR:
            return invalid(reason, "paragraph separator U+2029 in email");
        case U_SPACE_SEPARATOR:
            return invalid(reason, "space character in email");
        case U_PRIVATE_USE_CHAR:
            return invalid(reason, "private-use character in email");
        case U_UNASSIGNED:
            return invalid(reason, "unassigned code point in email");
        case U_NON_SPACING_MARK:
        case U_ENCLOSING_MARK:
        case U_COMBINING_SPACING_MARK:
            if (run_start) return invalid(reason, "combining mark starts a run");
            break;
        default:
            break;
        }
        // Noncharacters (U+FDD0.., U+xFFFE/F) are Cn too, and caught above.
        run_start = false;
    }
    return IDL_OK;
}

/* RFC 5322 §3.4.1 dot-atom over ASCII, RFC 6531 §3.3 letters, marks and
 * digits beyond it (other classes were refused by check_email_chars). */
static int check_local(const unsigned char *s, size_t n, const char **reason)
{
    if (n == 0) return invalid(reason, "empty local part");
    if (s[0] == '.') return invalid(reason, "local part starts with a dot");
    if (s[n - 1] == '.') return invalid(reason, "local part ends with a dot");
    if (n > LOCAL_MAX) return invalid(reason, "local part longer than 64 octets");
    for (size_t i = 0; i < n;) {
        unsigned char b = s[i];
        if (b >= 0x80) {
            int32_t c = utf8_next(s, n, &i);
            int8_t t = u_charType(c);
            if (!(u_isalpha(c) || u_isdigit(c) || t == U_NON_SPACING_MARK ||
                  t == U_ENCLOSING_MARK || t == U_COMBINING_SPACING_MARK))
                return invalid(reason, "non-ASCII character in local part that is not a letter, "
                                       "mark or digit");
            continue;
        }
        i++;
        if (b == '.') {
            if (s[i] == '.') return invalid(reason, "local part has two dots in a row");
            continue;
        }
        if (!is_alpha(b) && !is_digit(b) && !is_atext_special(b))
            return invalid(reason, local_char_reason(b));
    }
    return IDL_OK;
}

/* Label rules of RFC 1035 §2.3.1 / RFC 5890 on an ASCII (A-label) domain. */
static int check_ldh(const char *d, size_t n, const char **reason)
{
    if (n == 0) return invalid(reason, "missing domain");
    if (n > DOMAIN_MAX) return invalid(reason, "domain longer than 253 octets");
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
        if (label > LABEL_MAX) return invalid(reason, "domain label longer than 63 octets");
        if (d[start] == '-' || d[i - 1] == '-')
            return invalid(reason, "domain label starts or ends with '-'");
        if (i == n && all_digits) return invalid(reason, "top-level domain is numeric");
        start = i + 1;
        all_digits = true;
    }
    return IDL_OK;
}

/* Lower-case NFC of UTF-8 text (root locale), into out (cap bytes with NUL). */
static int lower_nfc(const char *in, size_t len, char *out, size_t cap, size_t *out_len,
                     const char **reason)
{
    UChar a[EMAIL_IN_MAX * 2], b[EMAIL_IN_MAX * 2];
    UErrorCode st = U_ZERO_ERROR;
    int32_t n = 0;
    u_strFromUTF8(a, EMAIL_IN_MAX * 2, &n, in, (int32_t)len, &st);
    if (U_FAILURE(st)) return invalid(reason, "invalid UTF-8");
    st = U_ZERO_ERROR;
    int32_t m = u_strToLower(b, EMAIL_IN_MAX * 2, a, n, "", &st);
    if (U_FAILURE(st) || st == U_STRING_NOT_TERMINATED_WARNING)
        return invalid(reason, "email too long");
    st = U_ZERO_ERROR;
    const UNormalizer2 *nfc = unorm2_getNFCInstance(&st);
    if (U_FAILURE(st)) return invalid(reason, "Unicode data unavailable");
    m = unorm2_normalize(nfc, b, m, a, EMAIL_IN_MAX * 2, &st);
    if (U_FAILURE(st) || st == U_STRING_NOT_TERMINATED_WARNING)
        return invalid(reason, "email too long");
    st = U_ZERO_ERROR;
    int32_t w = 0;
    u_strToUTF8(out, (int32_t)cap, &w, a, m, &st);
    if (U_FAILURE(st) || st == U_STRING_NOT_TERMINATED_WARNING)
        return invalid(reason, "email too long");
    *out_len = (size_t)w;
    return IDL_OK;
}

/* A domain with non-ASCII characters or A-labels ("xn--"): IDNA 2008 through
 * libidn2 (no UTS #46 mapping, so what it accepts is what RFC 5891 allows),
 * the label rules on its A-label form, and the Unicode form (U-labels, NFC,
 * lower-case) written to out, so "bücher.example" and "xn--bcher-kva.example"
 * give one key. */
static int check_idn(const char *d, char *out, size_t cap, size_t *out_len, const char **reason)
{
    uint8_t *alabel = NULL;
    char *ulabel = NULL;
    int rc = IDL_OK;
    int r = idn2_lookup_u8((const uint8_t *)d, &alabel, IDN2_NFC_INPUT | IDN2_NO_TR46);
    if (r != IDN2_OK) {
        rc = invalid(reason, "domain is not a valid IDNA 2008 name");
        goto fail;
    }
    rc = check_ldh((const char *)alabel, strlen((const char *)alabel), reason);
    if (rc) goto fail;
    if (idn2_to_unicode_8z8z((const char *)alabel, &ulabel, 0) != IDN2_OK) {
        rc = invalid(reason, "domain is not a valid IDNA 2008 name");
        goto fail;
    }
    size_t n = strlen(ulabel);
    if (n + 1 > cap) {
        rc = invalid(reason, "email too long");
        goto fail;
    }
    /* The Unicode form must read back as itself: an A-label can decode to
     * upper-case letters (Cherokee's, say) that lower-casing turns into
     * letters IDNA 2008 disallows, and a stored form that no longer
     * normalizes could never be looked up or opted out again. */
    char relowered[IDL_NORM_EMAIL_MAX];
    size_t rn = 0;
    const char *why = NULL;
    uint8_t *again = NULL;
    if (lower_nfc(ulabel, n, relowered, sizeof relowered, &rn, &why) != IDL_OK || rn != n ||
        memcmp(relowered, ulabel, n) != 0 ||
        idn2_lookup_u8((const uint8_t *)relowered, &again, IDN2_NFC_INPUT | IDN2_NO_TR46) !=
            IDN2_OK) {
        idn2_free(again);
        rc = invalid(reason, "domain has no stable lower-case Unicode form");
        goto fail;
    }
    idn2_free(again);
    memcpy(out, ulabel, n + 1);
    *out_len = n;
fail:
    idn2_free(alabel);
    idn2_free(ulabel);
    return rc;
}

static bool has_alabel(const char *d, size_t n)
{
    for (size_t i = 0; i + 4 <= n; i++)
        if ((i == 0 || d[i - 1] == '.') && memcmp(d + i, "xn--", 4) == 0) return true;
    return false;
}

int idl_norm_email(const char *in, size_t len, char out[IDL_NORM_EMAIL_MAX], const char **reason)
{
    if (!in) return invalid(reason, "missing email");
    // Only spaces and tabs are trimmed: a CR or LF is never harmless padding
    // (it is how header injection arrives), so it makes the address invalid.
    while (len > 0 && (in[0] == ' ' || in[0] == '\t')) {
        in++;
        len--;
    }
    while (len > 0 && (in[len - 1] == ' ' || in[len - 1] == '\t'))
        len--;
    if (len == 0) return invalid(reason, "empty email");
    if (len > EMAIL_IN_MAX) return invalid(reason, "email longer than 254 octets");
    if (memchr(in, '\0', len)) return invalid(reason, "control character in email");

    // A quoted local part is refused for its quotes, whatever it holds.
    if (in[0] == '"') return invalid(reason, local_char_reason('"'));
    bool ascii;
    int rc = check_email_chars((const unsigned char *)in, len, &ascii, reason);
    if (rc) return rc;
    const char *at = memchr(in, '@', len);
    if (!at) return invalid(reason, "missing '@'");
    size_t llen = (size_t)(at - in);
    const char *dom = at + 1;
    size_t dlen = len - llen - 1;
    if (memchr(dom, '@', dlen)) return invalid(reason, "more than one '@'");
    rc = check_local((const unsigned char *)in, llen, reason);
    if (rc) return rc;
    if (dlen == 0) return invalid(reason, "missing domain");
    if (dom[0] == '[') return invalid(reason, "domain literal (an address in brackets)");

    char local[IDL_NORM_EMAIL_MAX], domain[IDL_NORM_EMAIL_MAX];
    size_t ln = 0, dn = 0;
    if (all_ascii(in, llen)) {
        for (size_t i = 0; i < llen; i++)
            local[i] = (char)to_lower((unsigned char)in[i]);
        ln = llen;
    } else if ((rc = lower_nfc(in, llen, local, sizeof local, &ln, reason)) != IDL_OK) {
        return rc;
    }
    if (ascii || all_ascii(dom, dlen)) {
        for (size_t i = 0; i < dlen; i++)
            domain[i] = (char)to_lower((unsigned char)dom[i]);
        dn = dlen;
        domain[dn] = '\0';
        if ((rc = check_ldh(domain, dn, reason)) != IDL_OK) return rc;
        if (has_alabel(domain, dn)) {
            char lowered[IDL_NORM_EMAIL_MAX];
            memcpy(lowered, domain, dn + 1);
            if ((rc = check_idn(lowered, domain, sizeof domain, &dn, reason)) != IDL_OK) return rc;
        }
    } else {
        char lowered[IDL_NORM_EMAIL_MAX];
        size_t n = 0;
        if ((rc = lower_nfc(dom, dlen, lowered, sizeof lowered, &n, reason)) != IDL_OK) return rc;
        if ((rc = check_idn(lowered, domain, sizeof domain, &dn, reason)) != IDL_OK) return rc;
    }

    if (dn == 14 && memcmp(domain, "googlemail.com", 14) == 0) {
        memcpy(domain, "gmail.com", 10);
        dn = 9;
    }
    if (dn == 9 && memcmp(domain, "gmail.com", 9) == 0) {
        // Gmail ignores dots and "+tag" when delivering, so they name one box.
        size_t w = 0;
        for (size_t i = 0; i < ln && local[i] != '+'; i++)
            if (local[i] != '.') local[w++] = local[i];
        ln = w;
        if (ln == 0) return invalid(reason, "empty local part");
    }
    if (ln + 1 + dn > EMAIL_IN_MAX) return invalid(reason, "email longer than 254 octets");
    memcpy(out, local, ln);
    out[ln] = '@';
    memcpy(out + ln + 1, domain, dn);
    out[ln + 1 + dn] = '\0';
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

/* Upper-case, accent-free text of one address field, tokenized.  Whitespace
 * and ',' separate words, '#' is a word of its own ("#4" and "APT#4" are
 * "# 4" and "APT # 4"), tokens are NUL-terminated in buf so they can be
 * looked up directly.
 *
 * In a delivery address line (pub28 true) the punctuation rules of Pub 28
 * §232 apply: a period is kept only as a decimal point ("39.2 RD"), a slash
 * only in a fraction ("101 1/2"), a hyphen only inside a word with a digit
 * (a house, box or unit number: "289-01", "4-B"); elsewhere a hyphen is a
 * space ("WILKES-BARRE" is "WILKES BARRE"), an apostrophe and other periods
 * are dropped ("O'BRIEN", "N.W."), and other punctuation separates words.
 * City and state (pub28 false) only lose their periods, as before. */
typedef struct {
    char buf[ADDR_WORK_MAX + MAX_TOKENS + 1]; /* a NUL after each token */
    const char *tok[MAX_TOKENS];
    size_t n;
} tokens;

static bool is_word_sep(char c)
{
    return c == ' ' || c == ',' || c == '#' || is_space((unsigned char)c);
}

/* Pub 28 §232 on the upper-cased text, in place. */
static void pub28_punct(char *up, size_t n)
{
    char orig_prev = '\0';
    for (size_t i = 0; i < n; i++) {
        char c = up[i];
        char next = i + 1 < n ? up[i + 1] : '\0';
        bool between_digits = is_digit((unsigned char)orig_prev) && is_digit((unsigned char)next);
        orig_prev = c;
        if (c == '\'' || (c == '.' && !between_digits)) {
            up[i] = '\x01'; // deleted below
        } else if (c == '/' && !between_digits) {
            up[i] = ' ';
        } else if ((unsigned char)c < 0x80 && !is_alpha((unsigned char)c) &&
                   !is_digit((unsigned char)c) && !strchr("-#./,", c) &&
                   !is_space((unsigned char)c)) {
            up[i] = ' ';
        }
    }
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (up[i] != '\x01') up[w++] = up[i];
    for (size_t i = w; i < n; i++)
        up[i] = ' ';
    // Hyphens, word by word: kept (runs collapsed, none at the ends) in a
    // word with a digit, spaces elsewhere.  Two passes, so that the digit
    // rule is judged on the words the first pass leaves: "T-S--P4" splits
    // into "T-S" and "P4", and "T-S" has no digit, so it is "T S P4" --
    // which reads back as itself (the normalizers are idempotent).
    for (int pass = 0; pass < 2; pass++) {
        for (size_t s = 0; s < w;) {
            if (is_word_sep(up[s])) {
                s++;
                continue;
            }
            size_t e = s;
            bool digit = false;
            while (e < w && !is_word_sep(up[e]))
                digit |= is_digit((unsigned char)up[e++]);
            for (size_t i = s; i < e; i++) {
                if (up[i] != '-') continue;
                bool inner = i > s && i + 1 < e && up[i - 1] != '-' && up[i - 1] != ' ' &&
                             up[i + 1] != '-';
                if (pass == 0 ? !inner : !digit) up[i] = ' ';
            }
            e = e > s ? e : s + 1;
            s = e;
        }
    }
}

static int tokenize(const char *in, bool pub28, const char *too_long, tokens *t,
                    const char **reason)
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
    if (pub28) pub28_punct(up, n);

    size_t w = 0;
    t->n = 0;
    bool in_word = false;
    for (size_t i = 0; i < n; i++) {
        char c = up[i];
        if (c == '.' && !pub28) continue;
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

/* Appends the word, space-separated, to out[*n]; false when it does not fit
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

static bool eq(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

/* A word that can follow a designator as its value without a '#': "4",
 * "12B", "B", "NORTH" -- but not "RD" in "12 LOT RD", where LOT is no
 * designator. */
static bool unit_value_like(const char *w)
{
    return has_digit(w) || (is_alpha((unsigned char)w[0]) && w[1] == '\0') ||
           find_directional(w) != NULL;
}

/* Unit groups of tok[from..to): "DESIGNATOR VALUE..." each, the designator
 * abbreviated (Pub 28 C2), "#" where none was given, "APT # 4" written
 * "APT 4".  Groups are appended, space-separated, to out[*n], skipping one
 * already there (the same unit written in the street and in unit). */
static int format_units(const char *const *tok, size_t from, size_t to, char *out, size_t cap,
                        size_t *n, const char **reason)
{
    size_t i = from;
    while (i < to) {
        char group[IDL_NORM_UNIT_MAX];
        size_t g = 0;
        group[0] = '\0';
        const idl_abbr *d = find_unit(tok[i]);
        if (d) {
            i++;
            // "APT # 4" says no more than "APT 4"; "# # 4" no more than "# 4".
            while (d->needs_value && i < to && eq(tok[i], "#"))
                i++;
            if (!append(group, sizeof group, &g, d->abbr)) return invalid(reason, "unit too long");
            if (d->needs_value) {
                if (i == to) return invalid(reason, "unit has no number");
                if (!append(group, sizeof group, &g, tok[i++]))
                    return invalid(reason, "unit too long");
            }
        } else {
            if (!append(group, sizeof group, &g, "#") || !append(group, sizeof group, &g, tok[i++]))
                return invalid(reason, "unit too long");
        }
        // More value words ("APT 4 B") stay with their designator.
        while (i < to && !find_unit(tok[i]))
            if (!append(group, sizeof group, &g, tok[i++])) return invalid(reason, "unit too long");
        // Skip a group already written (whole groups, at group boundaries).
        bool dup = false;
        for (const char *p = out; !dup && (p = strstr(p, group)) != NULL; p++) {
            bool start = p == out || p[-1] == ' ';
            char after = p[g];
            // A group boundary is the end or a space before a designator.
            dup = start && (after == '\0' || after == ' ');
        }
        if (!dup && !append(out, cap, n, group)) return invalid(reason, "unit too long");
    }
    return IDL_OK;
}

static const char *dir_pair(const char *a, const char *b);

/* Where a unit group starts at the end of tok[0..n), or n when there is
 * none; a group only counts with at least min words (house number and one
 * name word) before it, so "12 UNIT B" stays a street. */
static size_t unit_start(const char *const *tok, size_t n, size_t min)
{
    size_t s = n;
    const idl_abbr *d;
    if (n >= 2 && eq(tok[n - 2], "#"))
        s = n >= 3 && !eq(tok[n - 3], "#") && find_unit(tok[n - 3]) ? n - 3 : n - 2;
    else if (n >= 2 && (d = find_unit(tok[n - 2])) && d->needs_value && unit_value_like(tok[n - 1]))
        s = n - 2; // "APT 4"
    else if (n >= 3 && (d = find_unit(tok[n - 3])) && d->needs_value &&
             dir_pair(tok[n - 2], tok[n - 1]))
        s = n - 3; // "APT NORTH EAST", which would read "APT NE" once combined
    else if (n >= 2 && (d = find_unit(tok[n - 1])) && !d->needs_value &&
             (find_suffix(tok[n - 2]) || has_digit(tok[n - 2])))
        // A designator that takes no value (REAR, FRNT, UPPR) is only taken as
        // such after a suffix or another unit: "22 OCEAN FRONT" is a street.
        s = n - 1;
    return s >= min ? s : n;
}

/* ---- PO boxes, rural routes, highway contract routes ---------------------- */

/* Matches one of the phrases (space-separated words, NULL-terminated list)
 * at tok[0..]; returns the number of words matched, 0 for none. */
static size_t match_phrase(const char *const *tok, size_t n, const char *const *phrases)
{
    for (; *phrases; phrases++) {
        char words[64];
        snprintf(words, sizeof words, "%s", *phrases);
        size_t k = 0;
        bool ok = true;
        for (char *save = NULL, *w = strtok_r(words, " ", &save); w && ok;
             w = strtok_r(NULL, " ", &save), k++)
            ok = k < n && eq(tok[k], w);
        if (ok) return k;
    }
    return 0;
}

/* Pub 28 §283: CALLER, FIRM CALLER, BIN, LOCKBOX and DRAWER are written
 * PO BOX, as are the spelled-out and dotted forms of PO BOX itself. */
static const char *const po_phrases[] = {
    "PO BOX",    "P O BOX", "POST OFFICE BOX", "POST BOX", "POBOX",       "POB",    "P O B", "BOX",
    "PO DRAWER", "DRAWER",  "LOCKBOX",         "LOCK BOX", "FIRM CALLER", "CALLER", "BIN",   NULL,
};
/* Pub 28 §241/§244/§245: RR and its variants (RD and RFD included). */
static const char *const rr_phrases[] = {
    "RURAL ROUTE",
    "RURAL RTE",
    "RURAL RT",
    "RURAL FREE DELIVERY",
    "RURAL DELIVERY",
    "RFD ROUTE",
    "R F D",
    "RFD",
    "R R",
    "RR",
    "RURAL",
    "RD",
    "ROUTE",
    "RTE",
    "RT",
    NULL,
};
/* Pub 28 §251/§254/§255: HC, with HIGHWAY CONTRACT and STAR ROUTE. */
static const char *const hc_phrases[] = {
    "HIGHWAY CONTRACT ROUTE",
    "HIGHWAY CONTRACT",
    "HWY CONTRACT",
    "STAR ROUTE",
    "STAR RTE",
    "H C",
    "HCR",
    "HC",
    NULL,
};

/* Copies a route or box number without leading zeros (Pub 28 §242, §252),
 * keeping one digit: "03" -> "3", "0" -> "0". */
static void drop_zeros(const char *w, char *out, size_t cap)
{
    while (w[0] == '0' && is_digit((unsigned char)w[1]))
        w++;
    snprintf(out, cap, "%s", w);
}

/* A PO box, rural route or highway contract line: 1 and the line in out
 * when tok is one, 0 when it is not, or IDL_INVALID_ARGUMENT for one that is
 * recognized but incomplete. */
static int box_line(const char *const *tok, size_t n, char *out, size_t cap, const char **reason)
{
    size_t k;
    char num[IDL_NORM_STREET_MAX], box[IDL_NORM_STREET_MAX];
    // A route number glued to its designator: "RR2", "HC1".
    const char *glued = NULL, *kind = NULL;
    if (n >= 1 && (strncmp(tok[0], "RR", 2) == 0 || strncmp(tok[0], "HC", 2) == 0) &&
        is_digit((unsigned char)tok[0][2])) {
        kind = tok[0][0] == 'R' ? "RR" : "HC";
        glued = tok[0] + 2;
        k = 1;
    } else if ((k = match_phrase(tok, n, hc_phrases)) > 0) {
        kind = "HC";
    } else if ((k = match_phrase(tok, n, rr_phrases)) > 0) {
        kind = "RR";
    }
    if (kind) {
        const char *route = glued;
        if (!route && k < n && has_digit(tok[k])) route = tok[k++];
        bool has_box = k < n && (eq(tok[k], "BOX") || eq(tok[k], "BX"));
        // RD, ROUTE, RTE and RT alone also begin street names and highways
        // ("ROUTE 66"): they only make a route line with a box after them.
        bool weak = !glued && (eq(tok[0], "RD") || eq(tok[0], "ROUTE") || eq(tok[0], "RTE") ||
                               eq(tok[0], "RT") || eq(tok[0], "RURAL"));
        if (weak && !(route && has_box)) return 0;
        if (!route) return invalid(reason, "route has no number");
        if (!has_box || k + 1 >= n) return invalid(reason, "route has no box number");
        if (k + 2 != n) return invalid(reason, "extra words after the box number");
        drop_zeros(route, num, sizeof num);
        drop_zeros(tok[k + 1], box, sizeof box);
        if (snprintf(out, cap, "%s %s BOX %s", kind, num, box) >= (int)cap)
            return invalid(reason, "street too long");
        return 1;
    }
    if ((k = match_phrase(tok, n, po_phrases)) > 0) {
        // "BOX ELDER ST" is a street name without a house number: only a
        // number makes a lone BOX a box line.
        if (k == n) return invalid(reason, "PO box has no number");
        if (eq(tok[k], "#") && k + 1 < n) k++;
        if (!has_digit(tok[k]) && eq(tok[0], "BOX")) return 0;
        if (k + 1 != n) return invalid(reason, "extra words after the PO box number");
        // Leading zeros of a PO box can be significant (Pub 28 §282): kept.
        if (snprintf(out, cap, "PO BOX %s", tok[k]) >= (int)cap)
            return invalid(reason, "street too long");
        return 1;
    }
    return 0;
}

/* ---- street line ---------------------------------------------------------- */

/* Pub 28 §233: two directionals in a row make one when they are a north or
 * south and an east or west ("NORTH EAST", "N E" -> "NE"). */
static const char *dir_pair(const char *a, const char *b)
{
    const idl_abbr *x = find_directional(a), *y = find_directional(b);
    if (!x || !y || x->abbr[1] || y->abbr[1]) return NULL;
    static const char *const pairs[][3] = {
        {"N", "E", "NE"}, {"N", "W", "NW"}, {"S", "E", "SE"}, {"S", "W", "SW"}};
    for (size_t i = 0; i < 4; i++)
        if (eq(x->abbr, pairs[i][0]) && eq(y->abbr, pairs[i][1])) return pairs[i][2];
    return NULL;
}

/* Appendix F: a highway name ("HIGHWAY 20", "STATE RTE 3", "COUNTY ROAD 12")
 * is kept as given: a numbered last word after a highway word. */
static bool highway_name(const char *const *w, size_t lo, size_t hi)
{
    static const char *const words[] = {
        "HIGHWAY", "HWY",        "HIWAY", "HIWY",       "HWAY", "HIGHWY",   "ROUTE", "RTE",
        "RT",      "ROAD",       "RD",    "INTERSTATE", "I",    "FM",       "SR",    "CR",
        "US",      "EXPRESSWAY", "EXPY",  "FREEWAY",    "FWY",  "TURNPIKE", "TPKE",  "PIKE",
        "BYPASS",  "BYP",        "LOOP",  "SPUR",       NULL,
    };
    if (hi - lo < 2 || !has_digit(w[hi - 1])) return false;
    for (size_t i = 0; words[i]; i++)
        if (eq(w[hi - 2], words[i])) return true;
    return false;
}

static bool is_fraction(const char *w)
{
    const char *s = strchr(w, '/');
    return s && s > w && is_digit((unsigned char)s[1]) && has_digit(w);
}

/* Number-like: digits with at most letters, for "AVENUE B", "AVENUE 5". */
static bool letter_or_number(const char *w)
{
    return has_digit(w) || (is_alpha((unsigned char)w[0]) && w[1] == '\0');
}

/* House number, predirectional, name, suffix, postdirectional of tok[0..m)
 * into out (Pub 28 §231-§234, parsed from the right as §23 says). */
static int format_street(const char *const *tok, size_t h, size_t m, char *out, size_t cap,
                         const char **reason)
{
    const char *w[MAX_TOKENS];
    size_t k = m - h;
    for (size_t i = 0; i < k; i++)
        w[i] = tok[h + i];
    const char *pre = NULL, *suffix = NULL, *post = NULL;
    size_t lo = 0, hi = k;
    const idl_abbr *a;
    const char *pair;
    // Postdirectional, then suffix, then predirectional, each only when a
    // name word remains: in "100 NORTH ST" NORTH is the name.
    if (hi - lo >= 3 && (pair = dir_pair(w[hi - 2], w[hi - 1]))) {
        post = pair;
        hi -= 2;
    } else if (hi - lo >= 2 && (a = find_directional(w[hi - 1]))) {
        post = a->abbr;
        hi--;
    }
    // A decimal number is no house number but a grid street's name (Pub 28
    // §232 and Appendix D2: "39.2 RD"), so its suffix needs no name word.
    size_t min_name = strchr(tok[0], '.') ? 0 : 1;
    if (hi - lo >= 1 + min_name && (a = find_suffix(w[hi - 1]))) {
        suffix = a->abbr;
        hi--;
    }
    if (hi - lo >= 3 && (pair = dir_pair(w[lo], w[lo + 1]))) {
        pre = pair;
        lo += 2;
    } else if (hi - lo >= 2 && (a = find_directional(w[lo]))) {
        pre = a->abbr;
        lo++;
    }

    size_t nn = hi - lo;
    const char **name = w + lo;
    if (nn == 1) {
        // A directional or suffix word that is the whole name is spelled out
        // ("NE ST" -> "NORTHEAST ST", "AVE" -> "AVENUE"); a single letter
        // stays, as a lettered street ("N ST NW" in Washington).
        if ((a = find_directional(name[0])) && name[0][1])
            name[0] = a->full;
        else if ((a = find_suffix(name[0])))
            name[0] = a->full;
    } else if (nn >= 2 && !highway_name(w, lo, hi)) {
        if (suffix && (a = find_directional(name[nn - 1])))
            name[nn - 1] = a->full; // §233: between the name and the suffix
        else if (suffix && (a = find_suffix(name[nn - 1])))
            name[nn - 1] = a->full; // §234.2: the first of two suffixes
        if (nn == 2 && letter_or_number(name[1]) && (a = find_suffix(name[0])))
            name[0] = a->full; // §234: "AVENUE B"
    }

    size_t n = 0;
    out[0] = '\0';
    bool ok = true;
    for (size_t i = 0; i < h; i++)
        ok &= append(out, cap, &n, tok[i]);
    if (pre) ok &= append(out, cap, &n, pre);
    for (size_t i = 0; i < nn; i++)
        ok &= append(out, cap, &n, name[i]);
    if (suffix) ok &= append(out, cap, &n, suffix);
    if (post) ok &= append(out, cap, &n, post);
    return ok ? IDL_OK : invalid(reason, "street too long");
}

int idl_norm_street(const char *street, const char *unit, char street_out[IDL_NORM_STREET_MAX],
                    char unit_out[IDL_NORM_UNIT_MAX], const char **reason)
{
    if (!street) return invalid(reason, "missing street");
    tokens st;
    int rc = tokenize(street, true, "street too long", &st, reason);
    if (rc) return rc;
    if (st.n == 0) return invalid(reason, "missing street");
    tokens ut;
    ut.n = 0;
    if (unit && (rc = tokenize(unit, true, "unit too long", &ut, reason)) != IDL_OK) return rc;

    const char *const *tok = st.tok;
    char street_buf[IDL_NORM_STREET_MAX], unit_buf[IDL_NORM_UNIT_MAX];
    size_t un = 0;
    unit_buf[0] = '\0';
    int box = box_line(tok, st.n, street_buf, sizeof street_buf, reason);
    if (box < 0 || box > 1) return box;
    if (box == 0) {
        if (!has_digit(tok[0])) return invalid(reason, "street does not start with a house number");
        size_t h = st.n >= 2 && is_fraction(tok[1]) ? 2 : 1; // "101 1/2"
        // Every unit group at the end of the street moves to unit, so a
        // normalized street never ends in one and reads back the same.
        size_t m = st.n, s;
        while ((s = unit_start(tok, m, h + 1)) < m)
            m = s;
        if (m <= h) return invalid(reason, "street has no name");
        if ((rc = format_units(tok, m, st.n, unit_buf, sizeof unit_buf, &un, reason)) != IDL_OK)
            return rc;
        if ((rc = format_street(tok, h, m, street_buf, sizeof street_buf, reason)) != IDL_OK)
            return rc;
    }
    // A unit given on its own adds to one written into the street (the same
    // unit written twice counts once).
    if ((rc = format_units(ut.tok, 0, ut.n, unit_buf, sizeof unit_buf, &un, reason)) != IDL_OK)
        return rc;

    memcpy(street_out, street_buf, strlen(street_buf) + 1);
    memcpy(unit_out, unit_buf, un + 1);
    return IDL_OK;
}

/* Joins the words of one field with single spaces; "" when there are none. */
static int norm_words(const char *in, const char *too_long, char *out, size_t cap,
                      const char **reason)
{
    tokens t;
    int rc = tokenize(in, false, too_long, &t, reason);
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
