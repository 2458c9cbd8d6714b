/* Idempotence of the normalizers: normalize(normalize(x)) == normalize(x)
 * for email, phone, name, address (street + unit, city, state, zip) and IP.
 * A normalized value is hashed into index keys and read back by Search,
 * Verify and OptOut; one that normalized to something else a second time
 * would let an opted-out identifier come back under another key.
 *
 * Inputs: every row of the case tables, and, from a fixed seed, streets
 * composed from Pub 28 words and random mutations of all of them.
 * Usage: test-norm-idem EMAIL_CASES.tsv ADDRESS_CASES.tsv */
#include "normcases.h"
#include "norm.h"
#include "status.h"
#include "testutil.h"

#include <stdint.h>

static const char *email_path, *address_path;
static uint64_t rng_state = 0x9E3779B97F4A7C15ull; /* fixed: failures reproduce */
static long checked;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static size_t pick(size_t n)
{
    return (size_t)(rnd() % n);
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- mutation ------------------------------------------------------------ */

static const char *const pieces[] = {
    " ",        ".",      "-",    "/",      "#",     ",",      "'",     "0",
    "7",        "A",      "b",    "@",      "+",     "é",      "\t",    " N ",
    " NORTH ",  " EAST ", " ST ", " AVE ",  " APT ", " STE ",  " # ",   " BOX ",
    " RR ",     " HC ",   " PO ", " REAR ", " 1/2 ", "39.2",   " HWY ", " SOUTH WEST ",
    " BLDG 3 ", "x.",     ".x",   "..",     "Ü",     "\u200b", "--",    "ß",
};

/* One random edit of in into out: insert a piece, delete a byte range,
 * replace one, swap two halves, or change case. */
static void mutate(const char *in, char *out, size_t cap)
{
    size_t n = strlen(in);
    size_t at = n ? pick(n + 1) : 0;
    switch (pick(5)) {
    case 0: {
        const char *p = pieces[pick(COUNT(pieces))];
        snprintf(out, cap, "%.*s%s%s", (int)at, in, p, in + at);
        break;
    }
    case 1: {
        size_t len = 1 + pick(3);
        if (at + len > n) len = n - at;
        snprintf(out, cap, "%.*s%s", (int)at, in, in + at + len);
        break;
    }
    case 2: {
        const char *p = pieces[pick(COUNT(pieces))];
        snprintf(out, cap, "%.*s%s%s", (int)at, in, p, at < n ? in + at + 1 : "");
        break;
    }
    case 3:
        snprintf(out, cap, "%s %.*s", in + at, (int)at, in);
        break;
    default:
        snprintf(out, cap, "%s", in);
        for (char *p = out; *p; p++)
            if (pick(2) && *p >= 'a' && *p <= 'z')
                *p = (char)(*p - 32);
            else if (pick(3) == 0 && *p >= 'A' && *p <= 'Z')
                *p = (char)(*p + 32);
        break;
    }
}

/* ---- one identifier of each kind ------------------------------------------ */

static void email_idem(const char *in, size_t len)
{
    char a[IDL_NORM_EMAIL_MAX], b[IDL_NORM_EMAIL_MAX];
    const char *r = NULL;
    if (idl_norm_email(in, len, a, &r) != IDL_OK) return;
    checked++;
    int rc = idl_norm_email(a, strlen(a), b, &r);
    EXPECT(rc == IDL_OK && strcmp(a, b) == 0, "email \"%s\" -> \"%s\" -> %s \"%s\"", in, a,
           rc == IDL_OK ? "ok" : "invalid", rc == IDL_OK ? b : r);
}

static void address_idem(const char *street, const char *unit, const char *city, const char *state,
                         const char *zip)
{
    idl_address a, b;
    const char *r = NULL;
    if (idl_norm_address(street, unit, city, state, zip, &a, &r) != IDL_OK) return;
    checked++;
    // Fed back as returned: absent parts (nil) are NULL.
    int rc = idl_norm_address(a.street, a.unit[0] ? a.unit : NULL, a.city[0] ? a.city : NULL,
                              a.state[0] ? a.state : NULL, a.zip[0] ? a.zip : NULL, &b, &r);
    EXPECT(
        rc == IDL_OK && strcmp(a.street, b.street) == 0 && strcmp(a.unit, b.unit) == 0 &&
            strcmp(a.city, b.city) == 0 && strcmp(a.state, b.state) == 0 &&
            strcmp(a.zip, b.zip) == 0,
        "address \"%s\" unit \"%s\" -> \"%s\" | \"%s\" | %s %s %s -> %s \"%s\" | \"%s\" | %s %s %s",
        street ? street : "(null)", unit ? unit : "(null)", a.street, a.unit, a.city, a.state,
        a.zip, rc == IDL_OK ? "ok" : r, b.street, b.unit, b.city, b.state, b.zip);
    // Search normalizes the street line alone, the same way.
    char s2[IDL_NORM_STREET_MAX], u2[IDL_NORM_UNIT_MAX];
    rc = idl_norm_street(a.street, a.unit, s2, u2, &r);
    EXPECT(rc == IDL_OK && strcmp(s2, a.street) == 0 && strcmp(u2, a.unit) == 0,
           "street \"%s\" unit \"%s\" -> %s \"%s\" | \"%s\"", a.street, a.unit,
           rc == IDL_OK ? "ok" : r, s2, u2);
}

static void phone_idem(const char *in)
{
    char a[IDL_NORM_PHONE_MAX], b[IDL_NORM_PHONE_MAX];
    const char *r = NULL;
    if (idl_norm_phone(in, strlen(in), a, NULL, NULL, &r) != IDL_OK) return;
    checked++;
    int rc = idl_norm_phone(a, strlen(a), b, NULL, NULL, &r);
    EXPECT(rc == IDL_OK && strcmp(a, b) == 0, "phone \"%s\" -> \"%s\" -> \"%s\"", in, a,
           rc == IDL_OK ? b : r);
}

static void name_idem(const char *in)
{
    char a[IDL_NORM_NAME_MAX], b[IDL_NORM_NAME_MAX];
    const char *r = NULL;
    if (idl_norm_name(in, strlen(in), a, &r) != IDL_OK) return;
    checked++;
    int rc = idl_norm_name(a, strlen(a), b, &r);
    EXPECT(rc == IDL_OK && strcmp(a, b) == 0, "name \"%s\" -> \"%s\" -> \"%s\"", in, a,
           rc == IDL_OK ? b : r);
}

static void ip_idem(const char *in)
{
    char a[IDL_NORM_IP_MAX], b[IDL_NORM_IP_MAX];
    const char *r = NULL;
    if (idl_norm_ip(in, strlen(in), a, &r) != IDL_OK) return;
    checked++;
    int rc = idl_norm_ip(a, strlen(a), b, &r);
    EXPECT(rc == IDL_OK && strcmp(a, b) == 0, "ip \"%s\" -> \"%s\" -> \"%s\"", in, a,
           rc == IDL_OK ? b : r);
}

/* ---- the properties ------------------------------------------------------- */

#define MUTATIONS 40

static void emails(void)
{
    tsv_row *rows;
    size_t n = tsv_load(email_path, &rows);
    CHECK(n > 0);
    long before = checked;
    for (size_t i = 0; i < n; i++) {
        char in[1024], m[1200];
        size_t len = tsv_unescape(rows[i].col[0], in, sizeof in);
        email_idem(in, len);
        for (int k = 0; k < MUTATIONS; k++) {
            mutate(in, m, sizeof m);
            email_idem(m, strlen(m));
        }
    }
    printf("  %ld valid emails checked\n", checked - before);
    CHECK(checked - before > 1000);
    tsv_free(rows, n);
}

static void addresses(void)
{
    tsv_row *rows;
    size_t n = tsv_load(address_path, &rows);
    CHECK(n > 0);
    long before = checked;
    for (size_t i = 0; i < n; i++) {
        tsv_row *r = &rows[i];
        if (r->ncol != 7) continue;
        const char *street = tsv_opt(r->col[0]), *unit = tsv_opt(r->col[1]);
        const char *city = tsv_opt(r->col[2]), *state = tsv_opt(r->col[3]),
                   *zip = tsv_opt(r->col[4]);
        address_idem(street, unit, city, state, zip);
        if (!street) continue;
        for (int k = 0; k < MUTATIONS; k++) {
            char m[1200], mu[200];
            mutate(street, m, sizeof m);
            address_idem(m, unit, city, state, zip);
            mutate(unit ? unit : "", mu, sizeof mu);
            address_idem(street, mu, city, state, zip);
            if (city) {
                char mc[200];
                mutate(city, mc, sizeof mc);
                address_idem(street, unit, mc, state, zip);
            }
        }
    }
    printf("  %ld valid addresses checked\n", checked - before);
    CHECK(checked - before > 1000);
    tsv_free(rows, n);
}

/* Streets composed from the words Pub 28's rules look at, in every order
 * the rules care about (and some they do not). */
static void composed_streets(void)
{
    static const char *const number[] = {"1", "123", "289-01", "12-A", "39.2", "101 1/2", "0"};
    static const char *const dir[] = {"",           "",    "N",    "North", "NE",
                                      "North East", "S W", "West", "E",     "South"};
    static const char *const name[] = {"Main", "Park",    "Avenue", "Ave",          "North",
                                       "N",    "B",       "5",      "Wilkes-Barre", "O'Brien",
                                       "St",   "Highway", "Hwy 20", "State Route",  "Ocean",
                                       "Glen", "Apt",     "Front",  "Box"};
    static const char *const suffix[] = {"",       "",     "St",  "Street", "Ave", "Road",  "Dr",
                                         "Ave Dr", "Park", "Hwy", "Loop",   "Cir", "Front", "Rear"};
    static const char *const unit[] = {
        "",     "",      "",       "Apt 4", "#4",        "Ste 200", "Bldg #3 Ste 200",
        "Rear", "Apt N", "Unit B", "Apt",   "Rm 5 Rear", "Fl 3-B"};
    static const char *const line[] = {
        "PO Box 12", "RR 03 Box 098", "HC 1 Box 5", "Star Route 2 Box 7", "Rural Route 3 Box 98D",
        "Box 0012",  "Caller 7",      "RD 2 Box 3"};
    static const char *const sep_unit[] = {NULL, NULL, "Apt 4", "4", "Suite 2, Rm 3", "rear"};
    long before = checked;
    for (int i = 0; i < 20000; i++) {
        char s[400];
        if (pick(10) == 0) {
            snprintf(s, sizeof s, "%s", line[pick(COUNT(line))]);
        } else {
            snprintf(s, sizeof s, "%s %s %s %s %s %s %s", number[pick(COUNT(number))],
                     dir[pick(COUNT(dir))], name[pick(COUNT(name))],
                     pick(3) ? "" : name[pick(COUNT(name))], suffix[pick(COUNT(suffix))],
                     dir[pick(COUNT(dir))], unit[pick(COUNT(unit))]);
        }
        const char *u = sep_unit[pick(COUNT(sep_unit))];
        address_idem(s, u, NULL, NULL, "10001");
        char m[500];
        mutate(s, m, sizeof m);
        address_idem(m, u, NULL, NULL, "10001");
    }
    printf("  %ld valid composed streets checked\n", checked - before);
    CHECK(checked - before > 10000);
}

static void phones_names_ips(void)
{
    static const char *const phones[] = {
        "(415) 555-2671",   "+1 415.555.2671",   "415-555-2671 x123",   "tel:+1-415-555-2671",
        "+44 20 7946 0958", "(800) 555-0199",    "011 44 20 7946 0958", "+1 900 555 0100",
        "+49 30 901820",    "+33 1 42 68 53 00", "+81 3-1234-5678",     "202-555-0143",
    };
    static const char *const names[] = {
        "Jane",    "  O'Brien ",   "Jean-Luc",   "José",      "ÉMILIE", "Ørsted",
        "Straße",  "van der Berg", "D'Angelo",   "Mary  Ann", "ﬁona",   "İlker",
        "Σίσυφος", "ǅemal",        "McDonald's", "Bob!",
    };
    static const char *const ips[] = {
        "203.0.113.7",
        "2001:DB8::1",
        "2001:0db8:0000:0000:0000:0000:0000:0001",
        "::ffff:1.2.3.4",
        "::1",
        "0.0.0.0",
        "fe80::1:2:3:4",
        "2001:db8:0:0:1:0:0:1",
        " 10.0.0.1 ",
    };
    long before = checked;
    for (size_t i = 0; i < COUNT(phones); i++) {
        phone_idem(phones[i]);
        for (int k = 0; k < MUTATIONS; k++) {
            char m[200];
            mutate(phones[i], m, sizeof m);
            phone_idem(m);
        }
    }
    for (size_t i = 0; i < COUNT(names); i++) {
        name_idem(names[i]);
        for (int k = 0; k < MUTATIONS * 5; k++) {
            char m[200];
            mutate(names[i], m, sizeof m);
            name_idem(m);
        }
    }
    for (size_t i = 0; i < COUNT(ips); i++) {
        ip_idem(ips[i]);
        for (int k = 0; k < MUTATIONS; k++) {
            char m[200];
            mutate(ips[i], m, sizeof m);
            ip_idem(m);
        }
    }
    printf("  %ld valid phones, names and IPs checked\n", checked - before);
    CHECK(checked - before > 1000);
}

/* The failure issue 14 reported, as returned and read back. */
static void market_street(void)
{
    idl_address a;
    const char *r = NULL;
    CHECK_INT(idl_norm_address("1 Market St Bldg #3 Ste 200", NULL, NULL, NULL, "94105", &a, &r),
              IDL_OK);
    CHECK_STR(a.street, "1 MARKET ST");
    CHECK_STR(a.unit, "BLDG 3 STE 200");
    address_idem("1 Market St Bldg #3 Ste 200", NULL, NULL, NULL, "94105");
    address_idem("1 MARKET ST BLDG # 3", "STE 200", NULL, NULL, "94105");
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test-norm-idem EMAIL_CASES.tsv ADDRESS_CASES.tsv\n");
        return 2;
    }
    email_path = argv[1];
    address_path = argv[2];
    RUN(market_street);
    RUN(emails);
    RUN(addresses);
    RUN(composed_streets);
    RUN(phones_names_ips);
    return test_summary();
}
