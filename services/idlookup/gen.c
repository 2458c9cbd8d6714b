/* `idlookup gen`: writes synthetic person records as NDJSON.
 *
 * People are made in households of one to four: members share a last name,
 * the home address and, when there are two or more, a landline; some share the
 * home IP address.  Everything else (first names, e-mail addresses, mobiles)
 * is personal.  All randomness comes from one xoshiro256** stream seeded by
 * splitmix64 from the seed and is consumed strictly in output order, which
 * makes the output deterministic and prefix-stable (see cli_gen.h).
 *
 * Records are formatted by hand into one large buffer that is written with
 * fwrite when nearly full: no allocation and no printf per record.
 */
#include "args.h"
#include "cli_gen.h"

#include "gen_lists.h"
#include "status.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Random numbers                                                           */

typedef struct {
    uint64_t s[4];
} gen_rng;

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void rng_seed(gen_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman and Vigna). */
static inline uint64_t rng_next(gen_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* A number in [0, n), n >= 1 (multiply-shift on the top 32 bits; the bias is
 * below 2^-32 per draw, irrelevant here, and the result is exact integers). */
static inline uint32_t rng_below(gen_rng *r, uint32_t n)
{
    return (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

/* A number in [lo, hi]. */
static inline uint32_t rng_range(gen_rng *r, uint32_t lo, uint32_t hi)
{
    return lo + rng_below(r, hi - lo + 1);
}

/* True with probability per_mille / 1000. */
static inline bool rng_chance(gen_rng *r, uint32_t per_mille)
{
    return rng_below(r, 1000) < per_mille;
}

/* The index of a weighted draw from an array of structs whose uint32_t `cum`
 * holds running totals (first at cum0, stride bytes apart, n >= 1). */
static size_t pick_index(gen_rng *r, const uint32_t *cum0, size_t n, size_t stride)
{
    const char *base = (const char *)cum0;
    uint32_t total = *(const uint32_t *)(const void *)(base + (n - 1) * stride);
    uint32_t x = rng_below(r, total);
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (*(const uint32_t *)(const void *)(base + mid * stride) > x)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

#define PICK(r, arr, n) (&(arr)[pick_index((r), &(arr)[0].cum, (n), sizeof((arr)[0]))])

/* Picks from a small table of weights given inline. */
static size_t pick_small(gen_rng *r, const uint16_t *weights, size_t n)
{
    uint32_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += weights[i];
    uint32_t x = rng_below(r, total);
    for (size_t i = 0; i < n; i++) {
        if (x < weights[i]) return i;
        x -= weights[i];
    }
    return n - 1;
}

#define PICK_SMALL(r, ...)                                                                         \
    pick_small((r), (const uint16_t[]){__VA_ARGS__},                                               \
               sizeof((const uint16_t[]){__VA_ARGS__}) / sizeof(uint16_t))

/* ------------------------------------------------------------------------ */
/* Output buffer                                                            */

enum {
    OUT_CAP = 1 << 18,
    /* No record comes near this: every string in the lists is at most 63
     * bytes and a record holds a few dozen of them. */
    RECORD_MAX = 8192,
};

typedef struct {
    FILE *file;
    char *buf;
    size_t len;
    int err; /* errno of the first failed write, or 0 */
    bool failed;
} gen_out;

static void out_flush(gen_out *o)
{
    if (o->len && !o->failed) {
        errno = 0;
        if (fwrite(o->buf, 1, o->len, o->file) != o->len) {
            o->failed = true;
            o->err = errno ? errno : EIO;
        }
    }
    o->len = 0;
}

/* The appenders below write without checks: the caller makes room for
 * RECORD_MAX bytes before each record. */
static inline void ap(gen_out *o, const char *s, size_t n)
{
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static inline void ap_c(gen_out *o, char c)
{
    o->buf[o->len++] = c;
}

#define AP_LIT(o, lit) ap((o), (lit), sizeof(lit) - 1)

static void ap_u(gen_out *o, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        o->buf[o->len++] = tmp[--n];
}

/* v in decimal with at least width digits (zero-padded). */
static void ap_u_pad(gen_out *o, uint64_t v, int width)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n < width && n < (int)sizeof tmp)
        tmp[n++] = '0';
    while (n)
        o->buf[o->len++] = tmp[--n];
}

static const char hex_digits[] = "0123456789abcdef";

/* v (< 0x10000) in lower-case hex without leading zeros. */
static void ap_hex16(gen_out *o, uint32_t v)
{
    bool started = false;
    for (int shift = 12; shift >= 0; shift -= 4) {
        uint32_t d = (v >> shift) & 0xf;
        if (d || started || shift == 0) {
            ap_c(o, hex_digits[d]);
            started = true;
        }
    }
}

enum { CASE_AS_IS, CASE_UPPER, CASE_LOWER };

static inline char ascii_case(char c, int mode)
{
    if (mode == CASE_UPPER && c >= 'a' && c <= 'z') return (char)(c - 'a' + 'A');
    if (mode == CASE_LOWER && c >= 'A' && c <= 'Z') return (char)(c - 'A' + 'a');
    return c;
}

/* Appends the body of a JSON string (no quotes): '"', '\\' and control
 * characters escaped, other bytes (UTF-8) as they are, ASCII letters in the
 * given case. */
static void ap_json_body(gen_out *o, const char *s, size_t n, int mode)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            ap_c(o, '\\');
            ap_c(o, (char)c);
        } else if (c < 0x20) {
            AP_LIT(o, "\\u00");
            ap_c(o, hex_digits[c >> 4]);
            ap_c(o, hex_digits[c & 0xf]);
        } else {
            ap_c(o, ascii_case((char)c, mode));
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Dates                                                                    */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * well-known algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* ------------------------------------------------------------------------ */
/* The people                                                               */

enum { MAX_AGE = 95, MAX_PHONES = 3, MAX_EMAILS = 3, MAX_IPS = 3, EMAIL_MAX = 128 };

typedef struct {
    uint16_t area, exchange, line;
    uint8_t kind; /* PHONE_* */
} gen_phone;

enum { PHONE_MOBILE, PHONE_LANDLINE, PHONE_TOLL_FREE };

typedef struct {
    bool v6;
    bool compressed; /* v6 written as 2001:db8:a:b::c */
    uint32_t v4;
    uint16_t group[8];
} gen_ip;

typedef struct {
    const idl_gen_city *city;
    const idl_gen_street *street;
    const idl_gen_suffix *suffix;
    uint32_t number;
    uint16_t plus4;
    int8_t predir, postdir; /* index into directionals, or -1 */
    uint8_t unit_kind;      /* UNIT_* */
    uint16_t unit_number;
    char unit_letter; /* 0 or 'A'.. */
} gen_address;

enum { UNIT_NONE, UNIT_APT, UNIT_UNIT, UNIT_SUITE, UNIT_HASH };

typedef struct {
    const idl_gen_name *surname;
    const idl_gen_name *surname2; /* second half of a double-barrelled name, or NULL */
    gen_address home;
    gen_phone landline;
    gen_ip home_ip;
    bool has_landline, has_home_ip;
    uint8_t size, made;
    uint8_t primary_age;
    bool primary_female;
} gen_household;

typedef struct {
    gen_out *out;
    gen_rng rng;
    uint64_t seed;
    uint32_t adult_age_cum[MAX_AGE + 1]; /* running weights of ages 18..95 */
    gen_household hh;
} gen_ctx;

static const struct {
    const char *full, *abbr;
} directionals[] = {
    {"North", "N"},      {"South", "S"},      {"East", "E"},       {"West", "W"},
    {"Northeast", "NE"}, {"Northwest", "NW"}, {"Southeast", "SE"}, {"Southwest", "SW"},
};

static const uint16_t toll_free_areas[] = {800, 888, 877, 866, 855, 844, 833};

static const char *const plus_tags[] = {"shopping", "news",  "work", "bills",  "spam",
                                        "travel",   "promo", "bank", "social", "jobs"};

static const char *const line_type_names[] = {"mobile", "landline"};

/* Adult ages 18..95: flat to 64, then thinning out to about a sixth at 95. */
static void init_ages(gen_ctx *g)
{
    uint32_t cum = 0;
    for (int age = 0; age <= MAX_AGE; age++) {
        uint32_t w = 0;
        if (age >= 18 && age <= 64)
            w = 100;
        else if (age > 64)
            w = (uint32_t)(100 - (age - 64) * 85 / 31);
        cum += w;
        g->adult_age_cum[age] = cum;
    }
}

static uint32_t adult_age(gen_ctx *g)
{
    uint32_t x = rng_below(&g->rng, g->adult_age_cum[MAX_AGE]);
    uint32_t age = 0;
    while (g->adult_age_cum[age] <= x)
        age++;
    return age;
}

/* An exchange (NXX) that libphonenumber accepts for the area: 200-999, not
 * N11, not 555 (fictional) or the special 950/958/959/976, and not 505-64x,
 * which libphonenumber's US metadata leaves partly unassigned. */
static uint16_t pick_exchange(gen_rng *r, uint16_t area)
{
    for (;;) {
        uint16_t ex = (uint16_t)rng_range(r, 200, 999);
        if (ex % 100 == 11 || ex == 555 || ex == 950 || ex == 958 || ex == 959 || ex == 976)
            continue;
        if (area == 505 && ex / 10 == 64) continue;
        return ex;
    }
}

static void make_phone(gen_ctx *g, gen_phone *p, uint8_t kind)
{
    gen_rng *r = &g->rng;
    if (kind == PHONE_TOLL_FREE) {
        p->area = toll_free_areas[rng_below(r, sizeof toll_free_areas / sizeof *toll_free_areas)];
    } else if (rng_chance(r, kind == PHONE_LANDLINE ? 950 : 700)) {
        p->area = g->hh.home.city->area_code; /* a local number */
    } else {
        p->area = PICK(r, idl_gen_cities, IDL_GEN_CITIES_COUNT)->area_code;
    }
    p->exchange = pick_exchange(r, p->area);
    p->line = (uint16_t)rng_below(r, 10000);
    p->kind = kind;
}

/* A random IPv4 address outside 0/8, 127/8, 169.254/16 and 224/3: a tenth in
 * the documentation ranges, a fifth private, the rest anywhere else. */
static uint32_t random_ipv4(gen_rng *r)
{
    static const uint32_t doc_nets[] = {0xc0000200u, 0xc6336400u, 0xcb007100u};
    uint32_t x = (uint32_t)(rng_next(r) >> 32);
    size_t kind = PICK_SMALL(r, 10, 20, 70);
    if (kind == 0) return doc_nets[rng_below(r, 3)] | (x & 0xff);
    if (kind == 1) {
        switch (rng_below(r, 3)) {
        case 0:
            return 0x0a000000u | (x & 0x00ffffffu); /* 10/8 */
        case 1:
            return 0xac100000u | (x & 0x000fffffu); /* 172.16/12 */
        default:
            return 0xc0a80000u | (x & 0x0000ffffu); /* 192.168/16 */
        }
    }
    for (;;) {
        uint32_t first = x >> 24;
        if (first != 0 && first != 127 && first < 224 && (x >> 16) != 0xa9fe) return x;
        x = (uint32_t)(rng_next(r) >> 32);
    }
}

static void make_ip(gen_ctx *g, gen_ip *ip)
{
    gen_rng *r = &g->rng;
    memset(ip, 0, sizeof *ip);
    if (rng_chance(r, 150)) {
        /* 2001:db8::/32, the documentation prefix; no zero groups unless
         * compressed, so the text is canonical (RFC 5952). */
        ip->v6 = true;
        ip->compressed = rng_chance(r, 300);
        ip->group[0] = 0x2001;
        ip->group[1] = 0x0db8;
        for (int i = 2; i < 8; i++)
            ip->group[i] = (uint16_t)rng_range(r, 1, 0xffff);
        if (ip->compressed) ip->group[4] = ip->group[5] = ip->group[6] = 0;
    } else {
        ip->v4 = random_ipv4(r);
    }
}

/* One of 256 addresses in the carrier-grade NAT range 100.64/10 that many
 * unrelated people share; fixed per seed. */
static void shared_ip(gen_ctx *g, gen_ip *ip)
{
    uint64_t x = g->seed ^ (0x5851f42d4c957f2du * (rng_below(&g->rng, 256) + 1));
    memset(ip, 0, sizeof *ip);
    ip->v4 = 0x64400000u | (uint32_t)(splitmix64(&x) & 0x003fffffu);
}

/* A street address in a city drawn by weight; the ZIP+4 and unit are fixed
 * here so that every rendering of the address names the same place. */
static void make_address(gen_ctx *g, gen_address *a)
{
    gen_rng *r = &g->rng;
    a->city = PICK(r, idl_gen_cities, IDL_GEN_CITIES_COUNT);
    switch (PICK_SMALL(r, 20, 35, 38, 7)) {
    case 0:
        a->number = rng_range(r, 1, 99);
        break;
    case 1:
        a->number = rng_range(r, 100, 999);
        break;
    case 2:
        a->number = rng_range(r, 1000, 9999);
        break;
    default:
        a->number = rng_range(r, 10000, 29999);
        break;
    }
    a->predir = rng_chance(r, 150) ? (int8_t)rng_below(r, 8) : -1;
    a->postdir = a->predir < 0 && rng_chance(r, 40) ? (int8_t)rng_below(r, 8) : -1;
    a->street = PICK(r, idl_gen_street_names, IDL_GEN_STREET_NAMES_COUNT);
    a->suffix = PICK(r, idl_gen_street_suffixes, IDL_GEN_STREET_SUFFIXES_COUNT);
    a->plus4 = (uint16_t)rng_range(r, 1, 9999);
    a->unit_kind = (uint8_t)PICK_SMALL(r, 720, 160, 40, 30, 50);
    a->unit_letter = 0;
    switch (PICK_SMALL(r, 60, 25, 15)) {
    case 0:
        a->unit_number = (uint16_t)rng_range(r, 1, 40);
        break;
    case 1:
        a->unit_number = (uint16_t)rng_range(r, 101, 450);
        break;
    default:
        a->unit_number = (uint16_t)rng_range(r, 1, 9);
        a->unit_letter = (char)('A' + rng_below(r, 6));
        break;
    }
    if (a->unit_kind == UNIT_SUITE && a->unit_number < 100)
        a->unit_number = (uint16_t)(a->unit_number + 100);
}

static void new_household(gen_ctx *g)
{
    gen_rng *r = &g->rng;
    gen_household *h = &g->hh;
    /* Sizes 1-4; about a fifth of the people live with someone else. */
    h->size = (uint8_t)(1 + PICK_SMALL(r, 902, 70, 20, 8));
    h->made = 0;
    h->surname = PICK(r, idl_gen_surnames, IDL_GEN_SURNAMES_COUNT);
    h->surname2 = rng_chance(r, 15) ? PICK(r, idl_gen_surnames, IDL_GEN_SURNAMES_COUNT) : NULL;
    if (h->surname2 == h->surname) h->surname2 = NULL;
    make_address(g, &h->home);
    h->has_landline = h->size > 1 || rng_chance(r, 250);
    if (h->has_landline) make_phone(g, &h->landline, PHONE_LANDLINE);
    h->has_home_ip = rng_chance(r, 500);
    if (h->has_home_ip) make_ip(g, &h->home_ip);
    h->primary_age = (uint8_t)(h->size >= 3 ? rng_range(r, 25, 60) : adult_age(g));
    h->primary_female = rng_chance(r, 500);
}

/* ------------------------------------------------------------------------ */
/* Writing one record                                                       */

typedef struct {
    bool female;
    int case_mode;
    const idl_gen_name *first;
    const idl_gen_name *middle; /* NULL: none */
    bool middle_initial;
    const idl_gen_name *last;
    const idl_gen_name *last2;
    bool has_dob, minor;
    uint32_t age;
    int64_t dob_year;
    unsigned dob_month, dob_day;
} gen_person;

static const idl_gen_name *given_name(gen_rng *r, bool female)
{
    return female ? PICK(r, idl_gen_given_female, IDL_GEN_GIVEN_FEMALE_COUNT)
                  : PICK(r, idl_gen_given_male, IDL_GEN_GIVEN_MALE_COUNT);
}

/* A name as a JSON string: its accented spelling now and then (not in
 * upper-case records, whose letters are ASCII). */
static void ap_name(gen_ctx *g, const idl_gen_name *n, int mode)
{
    if (n->accented && mode == CASE_AS_IS && rng_chance(&g->rng, 300))
        ap_json_body(g->out, n->accented, n->accented_len, mode);
    else
        ap_json_body(g->out, n->plain, n->plain_len, mode);
}

static void write_names(gen_ctx *g, const gen_person *p)
{
    gen_out *o = g->out;
    AP_LIT(o, ",\"first_name\":\"");
    ap_name(g, p->first, p->case_mode);
    ap_c(o, '"');
    if (p->middle) {
        AP_LIT(o, ",\"middle_name\":\"");
        if (p->middle_initial)
            ap_c(o, p->middle->plain[0]);
        else
            ap_name(g, p->middle, p->case_mode);
        ap_c(o, '"');
    }
    AP_LIT(o, ",\"last_name\":\"");
    ap_name(g, p->last, p->case_mode);
    if (p->last2) {
        ap_c(o, '-');
        ap_name(g, p->last2, p->case_mode);
    }
    ap_c(o, '"');
}

static void write_dob(gen_ctx *g, const gen_person *p)
{
    gen_out *o = g->out;
    if (p->has_dob) {
        AP_LIT(o, ",\"dob\":\"");
        ap_u_pad(o, (uint64_t)p->dob_year, 4);
        ap_c(o, '-');
        ap_u_pad(o, p->dob_month, 2);
        ap_c(o, '-');
        ap_u_pad(o, p->dob_day, 2);
        ap_c(o, '"');
    }
    if (p->minor) AP_LIT(o, ",\"minor\":true");
}

/* Copies letters into buf at *n, capitalised when cap (bounded by EMAIL_MAX). */
static void email_part(char *buf, size_t *n, const char *s, size_t len, bool cap)
{
    for (size_t i = 0; i < len && *n < EMAIL_MAX - 1; i++) {
        char c = s[i];
        buf[(*n)++] = (cap && i == 0) ? ascii_case(c, CASE_UPPER) : c;
    }
}

static void email_num(char *buf, size_t *n, uint32_t v)
{
    char tmp[10];
    int k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k && *n < EMAIL_MAX - 1)
        buf[(*n)++] = tmp[--k];
}

/* Builds one e-mail address for p into buf; returns its length. */
static size_t make_email(gen_ctx *g, const gen_person *p, char buf[EMAIL_MAX])
{
    gen_rng *r = &g->rng;
    const idl_gen_domain *dom = PICK(r, idl_gen_email_domains, IDL_GEN_EMAIL_DOMAINS_COUNT);
    const idl_gen_name *f = p->first, *l = p->last;
    bool cap = rng_chance(r, 80); /* "Jane.Doe84@..." */
    char mi = p->middle ? p->middle->letters[0] : 0;
    size_t n = 0;
    bool short_form = false; /* "jane", "jdoe": too common without a number */

    switch (PICK_SMALL(r, 25, 15, 12, 8, 10, 10, 8, 6, 6)) {
    case 0: /* jane.doe */
        email_part(buf, &n, f->letters, f->letters_len, cap);
        buf[n++] = '.';
        email_part(buf, &n, l->letters, l->letters_len, cap);
        break;
    case 1: /* janedoe */
        email_part(buf, &n, f->letters, f->letters_len, cap);
        email_part(buf, &n, l->letters, l->letters_len, cap);
        break;
    case 2: /* jdoe */
        email_part(buf, &n, f->letters, 1, cap);
        email_part(buf, &n, l->letters, l->letters_len, false);
        short_form = true;
        break;
    case 3: /* jane_doe */
        email_part(buf, &n, f->letters, f->letters_len, cap);
        buf[n++] = '_';
        email_part(buf, &n, l->letters, l->letters_len, cap);
        break;
    case 4: /* janed */
        email_part(buf, &n, f->letters, f->letters_len, cap);
        email_part(buf, &n, l->letters, 1, false);
        short_form = true;
        break;
    case 5: /* jane */
        email_part(buf, &n, f->letters, f->letters_len, cap);
        short_form = true;
        break;
    case 6: /* doe.jane */
        email_part(buf, &n, l->letters, l->letters_len, cap);
        buf[n++] = '.';
        email_part(buf, &n, f->letters, f->letters_len, cap);
        break;
    case 7: /* jane.q.doe */
        email_part(buf, &n, f->letters, f->letters_len, cap);
        buf[n++] = '.';
        if (mi) {
            buf[n++] = cap ? ascii_case(mi, CASE_UPPER) : mi;
            buf[n++] = '.';
        }
        email_part(buf, &n, l->letters, l->letters_len, cap);
        break;
    default: /* doej */
        email_part(buf, &n, l->letters, l->letters_len, cap);
        email_part(buf, &n, f->letters, 1, false);
        short_form = true;
        break;
    }

    /* A number makes most addresses unique to one person. */
    if (short_form || rng_chance(r, dom->kind == IDL_GEN_DOMAIN_WORK ? 150 : 820)) {
        switch (PICK_SMALL(r, 35, 15, 35, 15)) {
        case 0:
            email_num(buf, &n, p->has_dob ? (uint32_t)(p->dob_year % 100) : rng_range(r, 10, 99));
            break;
        case 1:
            email_num(buf, &n, p->has_dob ? (uint32_t)p->dob_year : rng_range(r, 1950, 2010));
            break;
        case 2:
            email_num(buf, &n, rng_range(r, 1, 999));
            break;
        default:
            email_num(buf, &n, rng_range(r, 1000, 99999));
            break;
        }
    }

    if (dom->kind == IDL_GEN_DOMAIN_GMAIL) {
        /* Gmail ignores dots and "+tags": people use both. */
        if (n > 2 && rng_chance(r, 80)) {
            size_t at = 1 + rng_below(r, (uint32_t)(n - 1));
            if (buf[at - 1] != '.' && buf[at] != '.' && buf[at - 1] != '_' && buf[at] != '_') {
                memmove(buf + at + 1, buf + at, n - at);
                buf[at] = '.';
                n++;
            }
        }
        if (rng_chance(r, 100)) {
            const char *tag = plus_tags[rng_below(r, sizeof plus_tags / sizeof *plus_tags)];
            buf[n++] = '+';
            email_part(buf, &n, tag, strlen(tag), false);
        }
    }
    buf[n++] = '@';
    bool cap_domain = cap && rng_chance(r, 250);
    email_part(buf, &n, dom->domain, dom->len, cap_domain);
    return n;
}

static void write_emails(gen_ctx *g, const gen_person *p)
{
    gen_rng *r = &g->rng;
    gen_out *o = g->out;
    size_t count = PICK_SMALL(r, 12, 55, 25, 8);
    if (!count) return;
    char emails[MAX_EMAILS][EMAIL_MAX];
    size_t lens[MAX_EMAILS];
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) {
        size_t n = make_email(g, p, emails[kept]);
        bool dup = false;
        for (size_t j = 0; j < kept; j++)
            dup |= lens[j] == n && memcmp(emails[j], emails[kept], n) == 0;
        if (!dup) lens[kept++] = n;
    }
    AP_LIT(o, ",\"emails\":[");
    for (size_t i = 0; i < kept; i++) {
        if (i) ap_c(o, ',');
        ap_c(o, '"');
        ap_json_body(o, emails[i], lens[i], CASE_AS_IS);
        ap_c(o, '"');
    }
    ap_c(o, ']');
}

static void ap_phone_text(gen_ctx *g, const gen_phone *p)
{
    gen_out *o = g->out;
    size_t style = PICK_SMALL(&g->rng, 30, 25, 10, 15, 10, 5, 5);
    switch (style) {
    case 0: /* (415) 555-2671 */
        ap_c(o, '(');
        ap_u(o, p->area);
        AP_LIT(o, ") ");
        ap_u(o, p->exchange);
        ap_c(o, '-');
        ap_u_pad(o, p->line, 4);
        break;
    case 1: /* 415-555-2671 */
    case 4: /* 415.555.2671 */
    {
        char sep = style == 4 ? '.' : '-';
        ap_u(o, p->area);
        ap_c(o, sep);
        ap_u(o, p->exchange);
        ap_c(o, sep);
        ap_u_pad(o, p->line, 4);
        break;
    }
    case 2: /* +1 415 555 2671 */
        AP_LIT(o, "+1 ");
        ap_u(o, p->area);
        ap_c(o, ' ');
        ap_u(o, p->exchange);
        ap_c(o, ' ');
        ap_u_pad(o, p->line, 4);
        break;
    case 3: /* 4155552671 */
        ap_u(o, p->area);
        ap_u(o, p->exchange);
        ap_u_pad(o, p->line, 4);
        break;
    case 5: /* 1-415-555-2671 */
        AP_LIT(o, "1-");
        ap_u(o, p->area);
        ap_c(o, '-');
        ap_u(o, p->exchange);
        ap_c(o, '-');
        ap_u_pad(o, p->line, 4);
        break;
    default: /* +14155552671 */
        AP_LIT(o, "+1");
        ap_u(o, p->area);
        ap_u(o, p->exchange);
        ap_u_pad(o, p->line, 4);
        break;
    }
}

static void write_phone(gen_ctx *g, const gen_phone *p)
{
    gen_out *o = g->out;
    if (p->kind != PHONE_TOLL_FREE && rng_chance(&g->rng, 250)) {
        AP_LIT(o, "{\"number\":\"");
        ap_phone_text(g, p);
        AP_LIT(o, "\",\"line_type\":\"");
        const char *t = line_type_names[p->kind];
        ap(o, t, strlen(t));
        AP_LIT(o, "\"}");
    } else {
        ap_c(o, '"');
        ap_phone_text(g, p);
        ap_c(o, '"');
    }
}

static void write_phones(gen_ctx *g, bool with_landline)
{
    gen_rng *r = &g->rng;
    gen_out *o = g->out;
    size_t count = PICK_SMALL(r, 10, 50, 30, 10);
    if (with_landline && count == 0) count = 1;
    if (!count) return;
    /* The shared landline takes a random place among the person's numbers. */
    size_t landline_at = with_landline ? rng_below(r, (uint32_t)count) : MAX_PHONES;
    AP_LIT(o, ",\"phones\":[");
    for (size_t i = 0; i < count; i++) {
        if (i) ap_c(o, ',');
        if (i == landline_at) {
            write_phone(g, &g->hh.landline);
            continue;
        }
        gen_phone p;
        make_phone(g, &p, (uint8_t)PICK_SMALL(r, 900, 70, 30));
        write_phone(g, &p);
    }
    ap_c(o, ']');
}

static void ap_word(gen_ctx *g, const char *full, const char *abbr, int mode)
{
    const char *s = rng_chance(&g->rng, 550) ? full : abbr;
    ap_json_body(g->out, s, strlen(s), mode);
}

static void write_address(gen_ctx *g, const gen_address *a)
{
    gen_rng *r = &g->rng;
    gen_out *o = g->out;
    int mode = (int)PICK_SMALL(r, 880, 80, 40);

    AP_LIT(o, "{\"street\":\"");
    ap_u(o, a->number);
    ap_c(o, ' ');
    if (a->predir >= 0) {
        ap_word(g, directionals[a->predir].full, directionals[a->predir].abbr, mode);
        ap_c(o, ' ');
    }
    ap_json_body(o, a->street->name, a->street->len, mode);
    ap_c(o, ' ');
    ap_word(g, a->suffix->full, a->suffix->abbr, mode);
    if (a->postdir >= 0) {
        ap_c(o, ' ');
        ap_word(g, directionals[a->postdir].full, directionals[a->postdir].abbr, mode);
    }
    if (a->unit_kind != UNIT_NONE) {
        ap_c(o, ' ');
        switch (a->unit_kind) {
        case UNIT_APT:
            switch (PICK_SMALL(r, 55, 25, 20)) {
            case 0:
                ap_json_body(o, "Apt ", 4, mode);
                break;
            case 1:
                ap_json_body(o, "Apartment ", 10, mode);
                break;
            default:
                ap_c(o, '#');
                break;
            }
            break;
        case UNIT_UNIT:
            ap_json_body(o, "Unit ", 5, mode);
            break;
        case UNIT_SUITE:
            ap_word(g, "Suite ", "Ste ", mode);
            break;
        default:
            ap_c(o, '#');
            if (rng_chance(r, 500)) ap_c(o, ' ');
            break;
        }
        ap_u(o, a->unit_number);
        if (a->unit_letter) ap_c(o, ascii_case(a->unit_letter, mode));
    }
    AP_LIT(o, "\",\"city\":\"");
    ap_json_body(o, a->city->city, a->city->city_len, mode);
    AP_LIT(o, "\",\"state\":\"");
    if (rng_chance(r, 350))
        ap_json_body(o, a->city->state_name, a->city->state_name_len, mode);
    else
        ap(o, a->city->state, 2);
    AP_LIT(o, "\",\"zip\":\"");
    ap(o, a->city->zip, 5);
    if (rng_chance(r, 300)) {
        ap_c(o, '-');
        ap_u_pad(o, a->plus4, 4);
    }
    AP_LIT(o, "\"}");
}

static void write_addresses(gen_ctx *g)
{
    gen_out *o = g->out;
    AP_LIT(o, ",\"addresses\":[");
    write_address(g, &g->hh.home);
    if (rng_chance(&g->rng, 200)) {
        gen_address prev;
        make_address(g, &prev);
        ap_c(o, ',');
        write_address(g, &prev);
    }
    ap_c(o, ']');
}

static void ap_ip(gen_out *o, const gen_ip *ip)
{
    if (!ip->v6) {
        for (int shift = 24; shift >= 0; shift -= 8) {
            ap_u(o, (ip->v4 >> shift) & 0xff);
            if (shift) ap_c(o, '.');
        }
        return;
    }
    for (int i = 0; i < 8; i++) {
        if (ip->compressed && i == 4) {
            ap_c(o, ':'); /* with the ':' after group 3: "::" */
            i = 6;
            continue;
        }
        if (i) ap_c(o, ':');
        ap_hex16(o, ip->group[i]);
    }
}

static void write_ips(gen_ctx *g)
{
    gen_rng *r = &g->rng;
    gen_out *o = g->out;
    if (!rng_chance(r, 350)) return;
    size_t count = 1 + PICK_SMALL(r, 75, 20, 5);
    AP_LIT(o, ",\"ips\":[");
    for (size_t i = 0; i < count; i++) {
        gen_ip ip;
        if (i == 0 && g->hh.has_home_ip && rng_chance(r, 600))
            ip = g->hh.home_ip;
        else if (rng_chance(r, 30))
            shared_ip(g, &ip);
        else
            make_ip(g, &ip);
        if (i) ap_c(o, ',');
        ap_c(o, '"');
        ap_ip(o, &ip);
        ap_c(o, '"');
    }
    ap_c(o, ']');
}

static void make_person(gen_ctx *g, gen_person *p)
{
    gen_rng *r = &g->rng;
    gen_household *h = &g->hh;
    uint8_t member = h->made;

    /* Member 0 heads the household, 1 is a partner, 2 and 3 are children. */
    if (member == 0)
        p->female = h->primary_female;
    else if (member == 1)
        p->female = rng_chance(r, 900) ? !h->primary_female : h->primary_female;
    else
        p->female = rng_chance(r, 500);

    if (member == 0) {
        p->age = h->primary_age;
        if (h->size == 1) {
            /* Some sources list children and teenagers on their own. */
            size_t band = PICK_SMALL(r, 16, 40, 944);
            if (band == 0)
                p->age = rng_range(r, 0, 12);
            else if (band == 1)
                p->age = rng_range(r, 13, 17);
        }
    } else if (member == 1) {
        int age = (int)h->primary_age + (int)rng_range(r, 0, 12) - 6;
        p->age = (uint32_t)(age < 18 ? 18 : age > MAX_AGE ? MAX_AGE : age);
    } else {
        int age = (int)h->primary_age - (int)rng_range(r, 20, 40);
        p->age = age >= 0 ? (uint32_t)age : rng_range(r, 0, h->primary_age - 20u);
    }

    p->minor = rng_chance(r, 4);
    if (p->minor && p->age >= 13) p->age = rng_range(r, 0, 12);
    p->has_dob = !rng_chance(r, p->minor ? 400 : 40);
    if (p->has_dob) {
        /* Born within the year that ends on the as-of date A years ago. */
        int64_t anchor = days_from_civil(IDL_GEN_AS_OF_YEAR - (int64_t)p->age, IDL_GEN_AS_OF_MONTH,
                                         IDL_GEN_AS_OF_DAY);
        civil_from_days(anchor - rng_below(r, 365), &p->dob_year, &p->dob_month, &p->dob_day);
    }

    p->case_mode = rng_chance(r, 30) ? CASE_UPPER : CASE_AS_IS;
    p->first = given_name(r, p->female);
    p->middle = NULL;
    p->middle_initial = false;
    size_t middle = PICK_SMALL(r, 45, 25, 30);
    if (middle) {
        p->middle = given_name(r, p->female);
        if (p->middle == p->first) p->middle = given_name(r, p->female);
        p->middle_initial = middle == 1;
    }
    p->last = h->surname;
    p->last2 = h->surname2;
    if (member == 1 && rng_chance(r, 100)) {
        /* A partner who kept their own name. */
        p->last = PICK(r, idl_gen_surnames, IDL_GEN_SURNAMES_COUNT);
        p->last2 = NULL;
    }
}

static void write_record(gen_ctx *g, uint64_t index)
{
    gen_out *o = g->out;
    if (g->hh.made >= g->hh.size) new_household(g);

    gen_person p = {0};
    make_person(g, &p);

    AP_LIT(o, "{\"source_id\":\"gen-");
    ap_u_pad(o, index, 8);
    ap_c(o, '"');
    write_names(g, &p);
    write_dob(g, &p);
    write_emails(g, &p);
    write_phones(g, g->hh.has_landline && (g->hh.size > 1 || rng_chance(&g->rng, 800)));
    write_addresses(g);
    write_ips(g);
    AP_LIT(o, "}\n");
    g->hh.made++;
}

int idl_gen_write(FILE *out, uint64_t count, uint64_t seed)
{
    gen_out o = {.file = out};
    o.buf = malloc(OUT_CAP);
    if (!o.buf) {
        errno = ENOMEM;
        return IDL_INTERNAL;
    }
    gen_ctx *g = calloc(1, sizeof *g);
    if (!g) {
        free(o.buf);
        errno = ENOMEM;
        return IDL_INTERNAL;
    }
    g->out = &o;
    g->seed = seed;
    rng_seed(&g->rng, seed);
    init_ages(g);
    g->hh.size = g->hh.made = 0; /* the first record starts a household */

    for (uint64_t i = 1; i <= count && !o.failed; i++) {
        if (o.len + RECORD_MAX > OUT_CAP) out_flush(&o);
        size_t start = o.len;
        write_record(g, i);
        if (o.len - start > RECORD_MAX) /* cannot happen: the lists are checked */
            abort();
    }
    out_flush(&o);
    int err = o.err;
    free(g);
    free(o.buf);
    if (o.failed) {
        errno = err;
        return IDL_INTERNAL;
    }
    return IDL_OK;
}

/* ------------------------------------------------------------------------ */
/* The subcommand                                                           */

enum { F_COUNT, F_SEED, F_HELP };

static const idl_args_flag gen_flags[] = {
    {"count", 0, "N", "how many records (required; 0 writes nothing)", F_COUNT},
    {"seed", 0, "S", "seed of the generator, 0 to 18446744073709551615 (default 1)", F_SEED},
    {"help", 'h', NULL, "show this text", F_HELP},
};

static const idl_args_spec gen_spec = {
    .prog = "idlookup gen",
    .head = "usage: idlookup gen --count N [--seed S]\n"
            "\n"
            "Writes N synthetic (fake) person records to stdout as NDJSON, one JSON\n"
            "object per line in the ingest format.  The same N and S always give the\n"
            "same bytes, and the first M lines of a run are the output for M.\n"
            "\n",
    .flags = gen_flags,
    .nflags = sizeof gen_flags / sizeof gen_flags[0],
    .indent = 2,
    .column = 17,
};

/* Parses a whole decimal number into *v; false for anything else. */
static bool parse_u64(const char *s, uint64_t *v)
{
    return idl_args_uint(s, 0, UINT64_MAX, v) == IDL_OK;
}

int idl_cli_gen(int argc, char **argv)
{
    uint64_t count = 0, seed = 1;
    bool have_count = false;

    idl_args args;
    const idl_args_flag *fl;
    const char *value;
    idl_args_start(&args, &gen_spec, argc, argv);
    while (idl_args_next(&args, &fl, &value)) {
        switch (fl->id) {
        case F_HELP:
            idl_args_usage(&gen_spec, stdout);
            return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
        case F_COUNT:
            if (!parse_u64(value, &count)) {
                fprintf(stderr, "idlookup gen: --count: '%s' is not a whole number of records\n",
                        value);
                return 2;
            }
            have_count = true;
            break;
        case F_SEED:
            if (!parse_u64(value, &seed)) {
                fprintf(stderr,
                        "idlookup gen: --seed: '%s' is not a number from 0 to "
                        "18446744073709551615\n",
                        value);
                return 2;
            }
            break;
        }
    }
    if (args.status) return idl_args_fail(&gen_spec, stderr, args.err);
    if (!have_count) {
        fprintf(stderr, "idlookup gen: --count N is required (see idlookup gen --help)\n");
        return 2;
    }

    if (idl_gen_write(stdout, count, seed) != IDL_OK || fflush(stdout) != 0) {
        fprintf(stderr, "idlookup gen: writing to stdout failed: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}
