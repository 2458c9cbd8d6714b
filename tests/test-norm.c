/* Normalizers (DATA.md §3): every case checks the exact output or that the
 * input is refused, and the case is printed when a check fails. */
#include "norm.h"
#include "status.h"
#include "testutil.h"

#include <stdbool.h>
#include <string.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define INVALID NULL

/* Prints which case of a table failed, since CHECK reports only the loop. */
#define CASE_CONTEXT(before, fmt, ...)                                                             \
    do {                                                                                           \
        if (test_failures_ != (before)) fprintf(stderr, "    in case " fmt "\n", __VA_ARGS__);     \
    } while (0)

/* Runs one single-string normalizer case: want NULL means invalid, in which
 * case the output must be untouched and a reason given. */
typedef int (*norm_fn)(const char *, size_t, char *, const char **);

static void check_norm(norm_fn fn, const char *in, const char *want, size_t cap)
{
    int before = test_failures_;
    char out[256];
    memset(out, '~', sizeof out);
    out[cap - 1] = '\0';
    const char *reason = NULL;
    int rc = fn(in, strlen(in), out, &reason);
    if (want) {
        CHECK_INT(rc, IDL_OK);
        CHECK_STR(out, want);
    } else {
        CHECK_INT(rc, IDL_INVALID_ARGUMENT);
        CHECK(reason != NULL && reason[0] != '\0');
        CHECK(out[0] == '~'); // outputs are written only on success
    }
    CASE_CONTEXT(before, "\"%s\"", in);
}

static int email_fn(const char *in, size_t len, char *out, const char **reason)
{
    return idl_norm_email(in, len, out, reason);
}

static int name_fn(const char *in, size_t len, char *out, const char **reason)
{
    return idl_norm_name(in, len, out, reason);
}

static int ip_fn(const char *in, size_t len, char *out, const char **reason)
{
    return idl_norm_ip(in, len, out, reason);
}

typedef struct {
    const char *in, *want;
} str_case;

/* ---- email --------------------------------------------------------------- */

static const str_case email_cases[] = {
    {" Jane.Doe+x@GoogleMail.com ", "janedoe@gmail.com"},
    {"Jane.Doe@Example.com", "jane.doe@example.com"},
    {"jane.doe@", INVALID},
    {"j.a.n.e@gmail.com", "jane@gmail.com"},
    {"jane+spam+more@gmail.com", "jane@gmail.com"},
    {"JANE@GMAIL.COM", "jane@gmail.com"},
    {"Jane.Doe@GMAIL.com", "janedoe@gmail.com"},
    {"jane.@gmail.com", INVALID}, // RFC 5322 dot-atom: no trailing dot
    {"jane.doe+tag@googlemail.com", "janedoe@gmail.com"},
    {"jane@googlemail.com", "jane@gmail.com"},
    {"jane+tag@example.com", "jane+tag@example.com"},
    {"JANE+Work@Example.COM", "jane+work@example.com"},
    {"jane.doe@mail.gmail.com", "jane.doe@mail.gmail.com"},
    {"jane.doe@gmail.com.au", "jane.doe@gmail.com.au"},
    {"\tjane@example.org\r\n", INVALID}, // DATA.md: only spaces and tabs are trimmed
    {"\tjane@example.org ", "jane@example.org"},
    {"jane@sub.example.co.uk", "jane@sub.example.co.uk"},
    {"jane@ex-ample.com", "jane@ex-ample.com"},
    {"jane@1example.com", "jane@1example.com"},
    {"jane@example.c0m", "jane@example.c0m"},
    {"jane@xn--bcher-kva.example", "jane@bücher.example"}, // the U-label form
    {"Jöhn@Example.com", "jöhn@example.com"},
    {"a@b.co", "a@b.co"},
    {"o'brien@example.ie", "o'brien@example.ie"},
    {"janedoe", INVALID},
    {"janedoe.example.com", INVALID},
    {"@example.com", INVALID},
    {"jane@@example.com", INVALID},
    {"jane@doe@example.com", INVALID},
    {"jane@localhost", INVALID},
    {"jane@example..com", INVALID},
    {"jane@.example.com", INVALID},
    {"jane@example.com.", INVALID},
    {"jane@-example.com", INVALID},
    {"jane@example-.com", INVALID},
    {"jane@exa_mple.com", INVALID},
    {"jane@exämple.com", "jane@exämple.com"}, // IDNA 2008 accepts it
    {"jane@192.168.0.1", INVALID},
    {"jane@example.123", INVALID},
    {"jane doe@example.com", INVALID},
    {"jane@example.com\x7f", INVALID},
    {"j\xFF@example.com", INVALID},
    {"", INVALID},
    {"   ", INVALID},
    {"+tag@gmail.com", INVALID},
    {"...@googlemail.com", INVALID},
};

static void email(void)
{
    for (size_t i = 0; i < COUNT(email_cases); i++)
        check_norm(email_fn, email_cases[i].in, email_cases[i].want, IDL_NORM_EMAIL_MAX);
}

static void email_limits(void)
{
    // Labels may be 63 characters, not 64.
    char in[300], want[300];
    snprintf(in, sizeof in, "x@%.63s.com",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    snprintf(want, sizeof want, "%s", in);
    check_norm(email_fn, in, want, IDL_NORM_EMAIL_MAX);
    snprintf(in, sizeof in, "x@%.64s.com",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    check_norm(email_fn, in, INVALID, IDL_NORM_EMAIL_MAX);

    // 254 octets fit, 255 are too long (never truncated); a local part may
    // have 64 octets, not 65 (RFC 5321 4.5.3.1).
    static const char as[] =
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    char dom[200], big[300];
    snprintf(dom, sizeof dom, "%.63s.%.63s.%.57s.com", as, as, as); // 189 octets
    snprintf(big, sizeof big, "%.64s@%s", as, dom);
    CHECK_INT(strlen(big), 254);
    check_norm(email_fn, big, big, IDL_NORM_EMAIL_MAX);
    snprintf(big, sizeof big, "%.65s@%s", as, dom); // 65-octet local part
    check_norm(email_fn, big, INVALID, IDL_NORM_EMAIL_MAX);
    snprintf(big, sizeof big, "%.62s@x.%s", as, dom); // 62 + 1 + 191
    CHECK_INT(strlen(big), 254);
    check_norm(email_fn, big, big, IDL_NORM_EMAIL_MAX);
    snprintf(big, sizeof big, "%.62s@xy.%s", as, dom); // 255
    check_norm(email_fn, big, INVALID, IDL_NORM_EMAIL_MAX);

    // len is honoured: the part after it is not read.
    char out[IDL_NORM_EMAIL_MAX];
    const char *reason = NULL;
    CHECK_INT(idl_norm_email("jane@example.comXYZ", 16, out, &reason), IDL_OK);
    CHECK_STR(out, "jane@example.com");
    CHECK_INT(idl_norm_email(NULL, 0, out, &reason), IDL_INVALID_ARGUMENT);
    CHECK(reason != NULL);
    CHECK_INT(idl_norm_email("jane", 4, out, &reason), IDL_INVALID_ARGUMENT);
    CHECK_STR(reason, "missing '@'");
    CHECK_INT(idl_norm_email("jane@example", 12, out, &reason), IDL_INVALID_ARGUMENT);
    CHECK_STR(reason, "domain has no dot");
}

/* ---- phone --------------------------------------------------------------- */

typedef struct {
    const char *in, *want;
    idl_line_type type;
    const char *country;
} phone_case;

#define UNK IDL_LINE_UNKNOWN
static const phone_case phone_cases[] = {
    {"(415) 555-2671", "+14155552671", UNK, "US"},
    {"+1 415.555.2671", "+14155552671", UNK, "US"},
    {"415-555-2671", "+14155552671", UNK, "US"},
    {"14155552671", "+14155552671", UNK, "US"},
    {"4155552671", "+14155552671", UNK, "US"},
    {"+14155552671", "+14155552671", UNK, "US"},
    {"1-415-555-2671", "+14155552671", UNK, "US"},
    {"(415)555-2671", "+14155552671", UNK, "US"},
    {"  415 555 2671  ", "+14155552671", UNK, "US"},
    {"tel:+1-415-555-2671", "+14155552671", UNK, "US"},
    {"415-555-2671 x123", "+14155552671", UNK, "US"},
    {"415-555-2671 ext. 123", "+14155552671", UNK, "US"},
    {"(415) 555-2671 extension 9", "+14155552671", UNK, "US"},
    {"+1 415 555 2671 #22", "+14155552671", UNK, "US"},
    // 555-01xx is the fictional range; libphonenumber holds it valid, and the
    // product's fixtures rely on that.
    {"(312) 555-0187", "+13125550187", UNK, "US"},
    {"(808) 555-0111", "+18085550111", UNK, "US"},
    {"202-555-0143", "+12025550143", UNK, "US"},
    // N11 exchanges are valid numbers for libphonenumber; N11 area codes not.
    {"(212) 911-5555", "+12129115555", UNK, "US"},
    {"(212) 411-5555", "+12124115555", UNK, "US"},
    {"(911) 555-1234", INVALID, UNK, ""},
    {"(411) 555-1234", INVALID, UNK, ""},
    {"(012) 555-1234", INVALID, UNK, ""},
    {"(112) 555-1234", INVALID, UNK, ""},
    {"(415) 055-1234", INVALID, UNK, ""},
    {"(415) 155-1234", INVALID, UNK, ""},
    {"+1 987 555 0100", INVALID, UNK, ""},
    {"(212) 555-01", INVALID, UNK, ""},
    {"+1 415 5552 6712", INVALID, UNK, ""},
    {"555-2671", INVALID, UNK, ""},
    {"123", INVALID, UNK, ""},
    {"abc", INVALID, UNK, ""},
    {"", INVALID, UNK, ""},
    {"+1", INVALID, UNK, ""},
    {"+999 123 4567", INVALID, UNK, ""},
    {"44 20 7946 0958", INVALID, UNK, ""},    // no '+': a US number, and a bad one
    {"00 44 20 7946 0958", INVALID, UNK, ""}, // 00 is not the US exit code
    {"(800) 555-0199", "+18005550199", IDL_LINE_TOLL_FREE, "US"},
    {"888-555-1212", "+18885551212", IDL_LINE_TOLL_FREE, "US"},
    {"1-877-555-0100", "+18775550100", IDL_LINE_TOLL_FREE, "US"},
    {"(833) 555-0100", "+18335550100", IDL_LINE_TOLL_FREE, "US"},
    {"1 (800) 555-0199 x9", "+18005550199", IDL_LINE_TOLL_FREE, "US"},
    {"1-800-FLOWERS", "+18003569377", IDL_LINE_TOLL_FREE, "US"},
    {"900-555-1234", "+19005551234", IDL_LINE_PREMIUM, "US"},
    {"+1 500 555 1234", "+15005551234", UNK, "US"}, // PERSONAL_NUMBER
    {"+1 787 555 1234", "+17875551234", UNK, "PR"},
    {"+1 684 733 1234", "+16847331234", IDL_LINE_MOBILE, "AS"},
    {"+1 345 949 1234", "+13459491234", IDL_LINE_LANDLINE, "KY"},
    {"+44 20 7946 0958", "+442079460958", IDL_LINE_LANDLINE, "GB"},
    {"+44 (0)20 7946 0958", "+442079460958", IDL_LINE_LANDLINE, "GB"},
    {"011 44 20 7946 0958", "+442079460958", IDL_LINE_LANDLINE, "GB"},
    {"+44 20 7946 0958 ext 5", "+442079460958", IDL_LINE_LANDLINE, "GB"},
    {"+44 7400 123456", "+447400123456", IDL_LINE_MOBILE, "GB"},
    {"+44 56 1234 5678", "+445612345678", IDL_LINE_VOIP, "GB"},
    {"+44 909 876 5432", "+449098765432", IDL_LINE_PREMIUM, "GB"},
    {"+44 800 123 4567", "+448001234567", IDL_LINE_TOLL_FREE, "GB"},
    {"+49 30 901820", "+4930901820", IDL_LINE_LANDLINE, "DE"},
    {"+49 (0)30 901820", "+4930901820", IDL_LINE_LANDLINE, "DE"},
    {"011 49 30 901820", "+4930901820", IDL_LINE_LANDLINE, "DE"},
    {"+49 1512 3456789", "+4915123456789", IDL_LINE_MOBILE, "DE"},
    {"+33 1 23 45 67 89", "+33123456789", IDL_LINE_LANDLINE, "FR"},
    {"+81 90-1234-5678", "+819012345678", IDL_LINE_MOBILE, "JP"},
    {"+52 55 1234 5678", "+525512345678", UNK, "MX"},
    // Non-geographic: no ISO 3166 region to report.
    {"+800 1234 5678", "+80012345678", IDL_LINE_TOLL_FREE, ""},
};

static void phone(void)
{
    for (size_t i = 0; i < COUNT(phone_cases); i++) {
        const phone_case *c = &phone_cases[i];
        int before = test_failures_;
        char out[IDL_NORM_PHONE_MAX] = "~";
        char country[3] = "~";
        idl_line_type type = (idl_line_type)99;
        const char *reason = NULL;
        int rc = idl_norm_phone(c->in, strlen(c->in), out, &type, country, &reason);
        if (c->want) {
            CHECK_INT(rc, IDL_OK);
            CHECK_STR(out, c->want);
            CHECK_STR(idl_line_type_name(type), idl_line_type_name(c->type));
            CHECK_STR(country, c->country);
        } else {
            CHECK_INT(rc, IDL_INVALID_ARGUMENT);
            CHECK(reason != NULL && reason[0] != '\0');
            CHECK_STR(out, "~");
            CHECK_INT(type, 99);
        }
        CASE_CONTEXT(before, "\"%s\"", c->in);
    }
}

static void line_types(void)
{
    static const char *const names[] = {"unknown", "mobile",    "landline",
                                        "voip",    "toll_free", "premium"};
    for (size_t i = 0; i < COUNT(names); i++) {
        idl_line_type t = (idl_line_type)42;
        CHECK_INT(idl_line_type_parse(names[i], &t), IDL_OK);
        CHECK_INT(t, i);
        CHECK_STR(idl_line_type_name(t), names[i]);
    }
    idl_line_type t = IDL_LINE_MOBILE;
    CHECK_INT(idl_line_type_parse("Mobile", &t), IDL_INVALID_ARGUMENT);
    CHECK_INT(idl_line_type_parse("", &t), IDL_INVALID_ARGUMENT);
    CHECK_INT(t, IDL_LINE_MOBILE);
    CHECK_STR(idl_line_type_name((idl_line_type)17), "unknown");
}

/* ---- name ---------------------------------------------------------------- */

static const str_case name_cases[] = {
    {"JOHN", "john"},
    {"  John   SMITH ", "john smith"},
    {"john\tsmith\n", "john smith"},
    {"John\xC2\xA0Smith", "john smith"}, // no-break space
    {"O'Brien", "o'brien"},
    {"O\u2019Brien", "o'brien"}, // typographic apostrophe
    {"D'Angelo", "d'angelo"},
    {"Mary-Jane", "mary-jane"},
    {"Jean-Luc Picard", "jean-luc picard"},
    {"Anne\xE2\x80\x93Marie", "anne-marie"}, // en dash
    {"Dr. John Smith, Jr.", "dr john smith jr"},
    {"Smith (Jones)", "smith jones"},
    {"A.B. & C", "ab c"},
    {"John 3rd", "john 3rd"},
    {"Mc Donald", "mc donald"},
    {"John \xF0\x9F\x98\x80 Smith", "john smith"}, // emoji
    {"José", "jose"},
    {"JOSÉ", "jose"},
    {"Jose\xCC\x81", "jose"}, // e + combining acute
    {"Zoë", "zoe"},
    {"Renée", "renee"},
    {"François", "francois"},
    {"Müller", "muller"},
    {"Ångström", "angstrom"},
    {"Ñúñez", "nunez"},
    {"Nguyễn", "nguyen"}, // two marks on one letter
    {"Đặng", "đang"},     // Đ has no decomposition
    {"Søren", "søren"},
    {"Łukasz", "łukasz"},
    {"Straße", "straße"}, // simple folding keeps ß
    {"STRAẞE", "straße"}, // capital ẞ folds to ß
    {"STRASSE", "strasse"},
    {"İstanbul", "istanbul"}, // İ is I + dot above
    {"Владимир", "владимир"},
    {"ΣΊΣΥΦΟΣ", "σισυφοσ"}, // Ί loses its accent, Σ folds to σ
    {"Kim 김", "kim 김"},   // Hangul survives NFD + NFC
    {"", INVALID},
    {"   ", INVALID},
    {"...", INVALID},
    {"-", INVALID},
    {"\xCC\x81", INVALID}, // only a combining mark
    {"Jos\xC3", INVALID},  // truncated UTF-8
    {"Jo\xC3\x28", INVALID},
    {"\xC0\xAF", INVALID}, // overlong
};

static void name(void)
{
    for (size_t i = 0; i < COUNT(name_cases); i++)
        check_norm(name_fn, name_cases[i].in, name_cases[i].want, IDL_NORM_NAME_MAX);
}

static void name_limits(void)
{
    char in[700], want[200];
    memset(in, 'A', 127);
    in[127] = '\0';
    memset(want, 'a', 127);
    want[127] = '\0';
    check_norm(name_fn, in, want, IDL_NORM_NAME_MAX);
    in[127] = 'A';
    in[128] = '\0';
    check_norm(name_fn, in, INVALID, IDL_NORM_NAME_MAX);
    // Through ICU as well, where the limit is on the output: 127 letters and
    // an é are 128 characters, 126 and an é are 127.
    memset(in, 'A', 127);
    memcpy(in + 127, "é", 3);
    check_norm(name_fn, in, INVALID, IDL_NORM_NAME_MAX);
    memcpy(in + 126, "é", 3);
    memset(want, 'a', 126);
    want[126] = 'e';
    want[127] = '\0';
    check_norm(name_fn, in, want, IDL_NORM_NAME_MAX);
    memset(in, 'x', 600);
    in[600] = '\0';
    check_norm(name_fn, in, INVALID, IDL_NORM_NAME_MAX);
}

/* ---- address ------------------------------------------------------------- */

typedef struct {
    const char *street, *unit, *city, *state, *zip;
    /* want_street NULL: invalid */
    const char *want_street, *want_unit, *want_city, *want_state, *want_zip;
} addr_case;

#define ZIP_ONLY NULL, NULL, "10001"
#define NYC_ZIP "", "", "10001"
static const addr_case addr_cases[] = {
    {"742 Evergreen Terrace", NULL, "Springfield", "Oregon", "97477-1234", "742 EVERGREEN TER", "",
     "SPRINGFIELD", "OR", "97477"},
    {"1 Nowhere Street", NULL, NULL, "Narnia", "ABCDE", INVALID, 0, 0, 0, 0},
    {"123 north Main Street Apartment 4", NULL, ZIP_ONLY, "123 N MAIN ST", "APT 4", NYC_ZIP},
    {"100 North Street", NULL, ZIP_ONLY, "100 NORTH ST", "", NYC_ZIP},
    {"100 North", NULL, ZIP_ONLY, "100 NORTH", "", NYC_ZIP},
    {"100 Main North", NULL, ZIP_ONLY, "100 MAIN N", "", NYC_ZIP},
    {"100 North Main", NULL, ZIP_ONLY, "100 N MAIN", "", NYC_ZIP},
    {"100 North Street West", NULL, ZIP_ONLY, "100 NORTH ST W", "", NYC_ZIP},
    {"100 South West Street", NULL, ZIP_ONLY, "100 S WEST ST", "", NYC_ZIP},
    {"10 Northeast Blvd", NULL, ZIP_ONLY, "10 NORTHEAST BLVD", "", NYC_ZIP},
    {"100 N Street", NULL, ZIP_ONLY, "100 N ST", "", NYC_ZIP},
    {"123 E. Main St.", NULL, ZIP_ONLY, "123 E MAIN ST", "", NYC_ZIP},
    {"123 Main St NW", NULL, ZIP_ONLY, "123 MAIN ST NW", "", NYC_ZIP},
    {"123 Main Street Northwest", NULL, ZIP_ONLY, "123 MAIN ST NW", "", NYC_ZIP},
    {"123 Main St. N.W.", NULL, ZIP_ONLY, "123 MAIN ST NW", "", NYC_ZIP},
    {"1600 Pennsylvania Avenue NW", NULL, "Washington", "DC", NULL, "1600 PENNSYLVANIA AVE NW", "",
     "WASHINGTON", "DC", ""},
    {"500 Fifth Avenue", NULL, ZIP_ONLY, "500 FIFTH AVE", "", NYC_ZIP},
    {"10 Elm Blvd.", NULL, ZIP_ONLY, "10 ELM BLVD", "", NYC_ZIP},
    {"9 Oak Lane", NULL, ZIP_ONLY, "9 OAK LN", "", NYC_ZIP},
    {"12 Park Place", NULL, ZIP_ONLY, "12 PARK PL", "", NYC_ZIP},
    {"77 Harbor Parkway", NULL, ZIP_ONLY, "77 HARBOR PKWY", "", NYC_ZIP},
    {"45 Cedar Crossing", NULL, ZIP_ONLY, "45 CEDAR XING", "", NYC_ZIP},
    {"5 Mill Rd", NULL, ZIP_ONLY, "5 MILL RD", "", NYC_ZIP},
    {"8 Pine Court", NULL, ZIP_ONLY, "8 PINE CT", "", NYC_ZIP},
    {"8 Pine Crt", NULL, ZIP_ONLY, "8 PINE CRT", "", NYC_ZIP}, // not a C1 variant
    {"3 Lake Hiway", NULL, ZIP_ONLY, "3 LAKE HWY", "", NYC_ZIP},
    {"1 Infinite Loop Bldg 3", NULL, ZIP_ONLY, "1 INFINITE LOOP", "BLDG 3", NYC_ZIP},
    {"100 Avenue of the Americas", NULL, ZIP_ONLY, "100 AVENUE OF THE AMERICAS", "", NYC_ZIP},
    {"1 Street", NULL, ZIP_ONLY, "1 STREET", "", NYC_ZIP},
    {"123 Main   St", NULL, ZIP_ONLY, "123 MAIN ST", "", NYC_ZIP},
    {"123 Main St.", "Apt 4", ZIP_ONLY, "123 MAIN ST", "APT 4", NYC_ZIP},
    {"123 Main St", "apartment 4", ZIP_ONLY, "123 MAIN ST", "APT 4", NYC_ZIP},
    {"123 Main St", "#4", ZIP_ONLY, "123 MAIN ST", "# 4", NYC_ZIP},
    {"123 Main St", "# 4", ZIP_ONLY, "123 MAIN ST", "# 4", NYC_ZIP},
    {"123 Main St", "4", ZIP_ONLY, "123 MAIN ST", "# 4", NYC_ZIP},
    {"123 Main St", "Suite 5b", ZIP_ONLY, "123 MAIN ST", "STE 5B", NYC_ZIP},
    {"123 Main St", "Apt. #12", ZIP_ONLY, "123 MAIN ST", "APT 12", NYC_ZIP},
    {"123 Main St", "rear", ZIP_ONLY, "123 MAIN ST", "REAR", NYC_ZIP},
    {"123 Main St", "", ZIP_ONLY, "123 MAIN ST", "", NYC_ZIP},
    {"123 Main St", "Apt", ZIP_ONLY, INVALID, 0, 0, 0, 0},
    {"123 Main St #4", NULL, ZIP_ONLY, "123 MAIN ST", "# 4", NYC_ZIP},
    {"123 Main St # 4", NULL, ZIP_ONLY, "123 MAIN ST", "# 4", NYC_ZIP},
    {"123 Main St Apt #4", NULL, ZIP_ONLY, "123 MAIN ST", "APT 4", NYC_ZIP},
    {"123 Main St Apt#4", NULL, ZIP_ONLY, "123 MAIN ST", "APT 4", NYC_ZIP},
    {"123 Main Street Suite 200", NULL, ZIP_ONLY, "123 MAIN ST", "STE 200", NYC_ZIP},
    {"123 Main Street, Ste. 200", NULL, ZIP_ONLY, "123 MAIN ST", "STE 200", NYC_ZIP},
    {"4 Privet Drive, Apt B", NULL, ZIP_ONLY, "4 PRIVET DR", "APT B", NYC_ZIP},
    {"350 Fifth Ave Floor 34", NULL, ZIP_ONLY, "350 FIFTH AVE", "FL 34", NYC_ZIP},
    {"123 Main St Rear", NULL, ZIP_ONLY, "123 MAIN ST", "REAR", NYC_ZIP},
    {"123 Main St Apt 4", "Unit 7", ZIP_ONLY, "123 MAIN ST", "APT 4 UNIT 7", NYC_ZIP},
    {"123 Main St Apt 4", " ", ZIP_ONLY, "123 MAIN ST", "APT 4", NYC_ZIP},
    {"22 Ocean Front", NULL, ZIP_ONLY, "22 OCEAN FRONT", "", NYC_ZIP},
    {"12 Lot Rd", NULL, ZIP_ONLY, "12 LOT RD", "", NYC_ZIP},
    {"12 Unit B", NULL, ZIP_ONLY, "12 UNIT B", "", NYC_ZIP},
    {"123 Calle Ñandú", NULL, ZIP_ONLY, "123 CALLE NANDU", "", NYC_ZIP},
    {"123B Main St", NULL, ZIP_ONLY, "123B MAIN ST", "", NYC_ZIP},
    {"Main Street", NULL, ZIP_ONLY, INVALID, 0, 0, 0, 0},
    {"One Main Street", NULL, ZIP_ONLY, INVALID, 0, 0, 0, 0},
    {"123", NULL, ZIP_ONLY, INVALID, 0, 0, 0, 0},
    {"123 #4", NULL, ZIP_ONLY, "123 # 4", "", NYC_ZIP},
    {"", NULL, ZIP_ONLY, INVALID, 0, 0, 0, 0},
    {NULL, NULL, ZIP_ONLY, INVALID, 0, 0, 0, 0},
    {" , . ", NULL, ZIP_ONLY, INVALID, 0, 0, 0, 0},
    {"123 Main St", NULL, "Boston", "ma", "02134", "123 MAIN ST", "", "BOSTON", "MA", "02134"},
    {"123 Main St", NULL, NULL, NULL, "021341234", "123 MAIN ST", "", "", "", "02134"},
    {"123 Main St", NULL, NULL, NULL, " 02134 ", "123 MAIN ST", "", "", "", "02134"},
    {"123 Main St", NULL, NULL, NULL, "0213", INVALID, 0, 0, 0, 0},
    {"123 Main St", NULL, NULL, NULL, "021345", INVALID, 0, 0, 0, 0},
    {"123 Main St", NULL, NULL, NULL, "02134-12", INVALID, 0, 0, 0, 0},
    {"123 Main St", NULL, NULL, NULL, "02134 1234", INVALID, 0, 0, 0, 0},
    {"123 Main St", NULL, NULL, NULL, "02134-12345", INVALID, 0, 0, 0, 0},
    {"123 Main St", NULL, NULL, NULL, "0213A", INVALID, 0, 0, 0, 0},
    {"123 Main St", NULL, "  san   francisco ", "California", NULL, "123 MAIN ST", "",
     "SAN FRANCISCO", "CA", ""},
    {"123 Main St", NULL, "San José", "CA", NULL, "123 MAIN ST", "", "SAN JOSE", "CA", ""},
    {"123 Main St", NULL, "St. Louis", "MO", NULL, "123 MAIN ST", "", "ST LOUIS", "MO", ""},
    {"123 Main St", NULL, "Cañon City", "colorado", NULL, "123 MAIN ST", "", "CANON CITY", "CO",
     ""},
    {"123 Main St", NULL, "New York", "new  york", NULL, "123 MAIN ST", "", "NEW YORK", "NY", ""},
    {"123 Main St", NULL, "Washington", "District of Columbia", NULL, "123 MAIN ST", "",
     "WASHINGTON", "DC", ""},
    {"123 Calle Sol", NULL, "San Juan", "Puerto Rico", "00901", "123 CALLE SOL", "", "SAN JUAN",
     "PR", "00901"},
    {"1 Marine Dr", NULL, "Hagatna", "guam", NULL, "1 MARINE DR", "", "HAGATNA", "GU", ""},
    {"1 Main St", NULL, "Charlotte Amalie", "U.S. Virgin Islands", NULL, "1 MAIN ST", "",
     "CHARLOTTE AMALIE", "VI", ""},
    {"1 Main St", NULL, "Pago Pago", "AS", NULL, "1 MAIN ST", "", "PAGO PAGO", "AS", ""},
    {"1 Main St", NULL, "Saipan", "Northern Mariana Islands", NULL, "1 MAIN ST", "", "SAIPAN", "MP",
     ""},
    {"123 Main St", NULL, "Springfield", NULL, NULL, INVALID, 0, 0, 0, 0},
    {"123 Main St", NULL, NULL, "IL", NULL, INVALID, 0, 0, 0, 0},
    {"123 Main St", NULL, NULL, NULL, NULL, INVALID, 0, 0, 0, 0},
    {"123 Main St", NULL, "Springfield", "XX", "62701", INVALID, 0, 0, 0, 0},
    {"123 Main St", NULL, "Springfield", "Illinoisx", NULL, INVALID, 0, 0, 0, 0},
    {"123 Main St", NULL, "Springfield", "Ill.", NULL, INVALID, 0, 0, 0, 0},
};

static void address(void)
{
    for (size_t i = 0; i < COUNT(addr_cases); i++) {
        const addr_case *c = &addr_cases[i];
        int before = test_failures_;
        idl_address a;
        memset(&a, '~', sizeof a);
        a.street[0] = '\0';
        const char *reason = NULL;
        int rc = idl_norm_address(c->street, c->unit, c->city, c->state, c->zip, &a, &reason);
        if (c->want_street) {
            CHECK_INT(rc, IDL_OK);
            CHECK_STR(a.street, c->want_street);
            CHECK_STR(a.unit, c->want_unit);
            CHECK_STR(a.city, c->want_city);
            CHECK_STR(a.state, c->want_state);
            CHECK_STR(a.zip, c->want_zip);
        } else {
            CHECK_INT(rc, IDL_INVALID_ARGUMENT);
            CHECK(reason != NULL && reason[0] != '\0');
            CHECK(a.street[0] == '\0' && a.unit[0] == '~');
        }
        CASE_CONTEXT(before, "street \"%s\" unit \"%s\" city \"%s\" state \"%s\" zip \"%s\"",
                     c->street ? c->street : "(null)", c->unit ? c->unit : "(null)",
                     c->city ? c->city : "(null)", c->state ? c->state : "(null)",
                     c->zip ? c->zip : "(null)");
    }
}

static void address_reasons(void)
{
    idl_address a;
    const char *reason = NULL;
    CHECK_INT(idl_norm_address("1 Nowhere Street", NULL, NULL, "Narnia", NULL, &a, &reason),
              IDL_INVALID_ARGUMENT);
    CHECK_STR(reason, "unknown state");
    CHECK_INT(idl_norm_address("1 Nowhere Street", NULL, NULL, NULL, "ABCDE", &a, &reason),
              IDL_INVALID_ARGUMENT);
    CHECK_STR(reason, "malformed ZIP");
}

static void street_only(void)
{
    static const struct {
        const char *street, *unit, *want_street, *want_unit;
    } cases[] = {
        {"123 north Main Street Apartment 4", NULL, "123 N MAIN ST", "APT 4"},
        {"742 Evergreen Terrace", NULL, "742 EVERGREEN TER", ""},
        {"742 Evergreen Terrace", "Apartment 2B", "742 EVERGREEN TER", "APT 2B"},
        {"350 Fifth Ave, Suite 3400", NULL, "350 FIFTH AVE", "STE 3400"},
        {"Evergreen Terrace", NULL, INVALID, NULL},
        {"742", "Apt 4", INVALID, NULL},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        int before = test_failures_;
        char s[IDL_NORM_STREET_MAX] = "~", u[IDL_NORM_UNIT_MAX] = "~";
        const char *reason = NULL;
        int rc = idl_norm_street(cases[i].street, cases[i].unit, s, u, &reason);
        if (cases[i].want_street) {
            CHECK_INT(rc, IDL_OK);
            CHECK_STR(s, cases[i].want_street);
            CHECK_STR(u, cases[i].want_unit);
        } else {
            CHECK_INT(rc, IDL_INVALID_ARGUMENT);
            CHECK_STR(s, "~");
            CHECK_STR(u, "~");
        }
        CASE_CONTEXT(before, "\"%s\"", cases[i].street);
    }
}

static void parts(void)
{
    char st[3] = "~", zip[6] = "~", city[IDL_NORM_CITY_MAX] = "~";
    const char *reason = NULL;
    CHECK_INT(idl_norm_state("or", st, &reason), IDL_OK);
    CHECK_STR(st, "OR");
    CHECK_INT(idl_norm_state(" West  Virginia ", st, &reason), IDL_OK);
    CHECK_STR(st, "WV");
    CHECK_INT(idl_norm_state("Virginia", st, &reason), IDL_OK);
    CHECK_STR(st, "VA");
    CHECK_INT(idl_norm_state("Narnia", st, &reason), IDL_INVALID_ARGUMENT);
    CHECK_STR(reason, "unknown state");
    CHECK_INT(idl_norm_state("", st, &reason), IDL_INVALID_ARGUMENT);
    CHECK_STR(st, "VA");
    CHECK_INT(idl_norm_zip("97477-1234", zip, &reason), IDL_OK);
    CHECK_STR(zip, "97477");
    CHECK_INT(idl_norm_zip("97477-", zip, &reason), IDL_INVALID_ARGUMENT);
    CHECK_INT(idl_norm_zip("", zip, &reason), IDL_INVALID_ARGUMENT);
    CHECK_STR(zip, "97477");
    CHECK_INT(idl_norm_city(" Coeur d'Alene ", city, &reason), IDL_OK);
    CHECK_STR(city, "COEUR D'ALENE");
    CHECK_INT(idl_norm_city("   ", city, &reason), IDL_INVALID_ARGUMENT);
    CHECK_STR(city, "COEUR D'ALENE");

    // Every code of the 50 states, DC and the five territories is accepted.
    static const char *const codes[] = {
        "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN",
        "IA", "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV",
        "NH", "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN",
        "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY", "DC", "PR", "GU", "VI", "AS", "MP",
    };
    for (size_t i = 0; i < COUNT(codes); i++) {
        CHECK_INT(idl_norm_state(codes[i], st, &reason), IDL_OK);
        CHECK_STR(st, codes[i]);
    }
}

/* ASCII input takes a fast path that never reaches ICU.  A combining mark
 * appended to an ASCII string sends the same text through ICU, where the mark
 * is removed as an accent: both paths must then give the same answer. */
static bool is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return false;
    return true;
}

static void ascii_and_icu_agree(void)
{
    char buf[IDL_NORM_STREET_MAX + 8];
    for (size_t i = 0; i < COUNT(name_cases); i++) {
        const char *in = name_cases[i].in;
        size_t len = strlen(in);
        if (!is_ascii(in) || len + 3 > sizeof buf) continue;
        memcpy(buf, in, len);
        memcpy(buf + len, "\xCC\x81", 3);
        int before = test_failures_;
        char a[IDL_NORM_NAME_MAX] = "", b[IDL_NORM_NAME_MAX] = "";
        const char *ra = NULL, *rb = NULL;
        CHECK_INT(idl_norm_name(buf, len + 2, b, &rb), idl_norm_name(in, len, a, &ra));
        CHECK_STR(b, a);
        CASE_CONTEXT(before, "name \"%s\"", in);
    }
    for (size_t i = 0; i < COUNT(addr_cases); i++) {
        const char *in = addr_cases[i].street;
        if (!in || !is_ascii(in) || strlen(in) + 3 > sizeof buf || !addr_cases[i].want_street)
            continue;
        snprintf(buf, sizeof buf, "%s\xCC\x81", in);
        int before = test_failures_;
        idl_address a, b;
        const char *r = NULL;
        CHECK_INT(idl_norm_address(buf, addr_cases[i].unit, addr_cases[i].city, addr_cases[i].state,
                                   addr_cases[i].zip, &b, &r),
                  IDL_OK);
        CHECK_INT(idl_norm_address(in, addr_cases[i].unit, addr_cases[i].city, addr_cases[i].state,
                                   addr_cases[i].zip, &a, &r),
                  IDL_OK);
        CHECK_STR(b.street, a.street);
        CHECK_STR(b.unit, a.unit);
        CASE_CONTEXT(before, "street \"%s\"", in);
    }
}

/* ---- IP ------------------------------------------------------------------ */

static const str_case ip_cases[] = {
    {"203.0.113.7", "203.0.113.7"},
    {" 203.0.113.7 ", "203.0.113.7"},
    {"\t198.51.100.1\n", "198.51.100.1"},
    {"0.0.0.0", "0.0.0.0"},
    {"255.255.255.255", "255.255.255.255"},
    {"10.0.0.1", "10.0.0.1"},
    {"256.1.1.1", INVALID},
    {"1.2.3", INVALID},
    {"1.2.3.4.5", INVALID},
    {"01.2.3.4", INVALID},
    {"1.2.3.04", INVALID},
    {"1.2.3.-1", INVALID},
    {"127.1", INVALID},
    {"0x7f.0.0.1", INVALID},
    {"a.b.c.d", INVALID},
    {"1.2.3.4/24", INVALID},
    {"1.2.3.4:80", INVALID},
    {"1 .2.3.4", INVALID},
    {"", INVALID},
    {"  ", INVALID},
    {"2001:DB8::1", "2001:db8::1"},
    {"2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"},
    {"2001:db8::0:1", "2001:db8::1"},
    {"::1", "::1"},
    {"::", "::"},
    {"0:0:0:0:0:0:0:0", "::"},
    {"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},
    {"2001:0:0:1:0:0:0:1", "2001:0:0:1::1"},
    {"2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"},
    {"2001:db8:0:0:0:0:2:1", "2001:db8::2:1"},
    {"FE80:0000:0000:0000:0202:B3FF:FE1E:8329", "fe80::202:b3ff:fe1e:8329"},
    {"fe80::", "fe80::"},
    {"::ffff:192.0.2.1", "::ffff:192.0.2.1"},
    {"::FFFF:C000:0201", "::ffff:192.0.2.1"},
    {" 2001:db8::1 ", "2001:db8::1"},
    {"fe80::1%eth0", INVALID},
    {"2001:db8::1::2", INVALID},
    {"2001:db8:::1", INVALID},
    {"12345::1", INVALID},
    {"gggg::1", INVALID},
    {"1:2:3:4:5:6:7:8:9", INVALID},
    {"1:2:3:4:5:6:7", INVALID},
    {"[2001:db8::1]", INVALID},
    {"2001:db8::1/64", INVALID},
    {":", INVALID},
    {"1111:2222:3333:4444:5555:6666:7777:8888:9999:0000:1111", INVALID},
};

static void ip(void)
{
    for (size_t i = 0; i < COUNT(ip_cases); i++)
        check_norm(ip_fn, ip_cases[i].in, ip_cases[i].want, IDL_NORM_IP_MAX);
}

/* ---- nicknames and typos ------------------------------------------------- */

static void check_groups(const char *name, const char *const *want, size_t nwant)
{
    int before = test_failures_;
    const char *got[32];
    size_t n = idl_nick_groups(name, got, 32);
    CHECK_INT(n, nwant);
    for (size_t i = 0; i < n && i < nwant; i++)
        CHECK_STR(got[i], want[i]);
    CASE_CONTEXT(before, "groups of \"%s\"", name);
}

static void nick_groups(void)
{
    // Lists as nicknames.csv has them: the name, then every name1 of a row
    // where it is name2, in byte order.
    check_groups("bob", (const char *const[]){"bob", "bert", "bobby", "robert"}, 4);
    check_groups("bill", (const char *const[]){"bill", "robert", "will", "william", "willis"}, 5);
    check_groups("robert", (const char *const[]){"robert", "bill", "billy", "bob"}, 4);
    check_groups("peggy", (const char *const[]){"peggy", "margaret", "margaretta", "marguerite"},
                 4);
    check_groups("kc", (const char *const[]){"kc", "casey", "kasey"}, 3); // "k.c." in the data
    check_groups("zzyzx", (const char *const[]){"zzyzx"}, 1);

    const char *got[4];
    CHECK_INT(idl_nick_groups("bill", got, 2), 2);
    CHECK_STR(got[1], "robert");
    CHECK_INT(idl_nick_groups("bill", got, 0), 0);
    CHECK_INT(idl_nick_groups(NULL, got, 4), 0);
}

static void nick_match(void)
{
    static const struct {
        const char *a, *b;
        bool want;
    } cases[] = {
        {"bob", "robert", true},      {"robert", "bob", true},     {"rob", "robert", true},
        {"bobby", "robert", true},    {"bob", "rob", true},        {"bobby", "rob", true},
        {"bill", "william", true},    {"will", "william", true},   {"billy", "william", true},
        {"bill", "robert", true},     {"peggy", "margaret", true}, {"peg", "peggy", true},
        {"maggie", "margaret", true}, {"jon", "john", true},       {"jack", "john", true},
        {"molly", "mary", true},      {"zzyzx", "zzyzx", true},    {"john", "robert", false},
        {"mary", "margaret", false},  {"peggy", "mary", false},    {"bob", "zzyzx", false},
        {"zzyzx", "zzyzy", false},    {"", "bob", false},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        int before = test_failures_;
        CHECK_INT(idl_nick_match(cases[i].a, cases[i].b), cases[i].want);
        CASE_CONTEXT(before, "\"%s\" ~ \"%s\"", cases[i].a, cases[i].b);
    }
    CHECK(!idl_nick_match(NULL, "bob"));
}

static void typo_match(void)
{
    static const struct {
        const char *a, *b;
        bool want;
    } cases[] = {
        {"jonathan", "jonathon", true}, // substitution
        {"smith", "smyth", true},
        {"smith", "smiths", true}, // insertion
        {"smiths", "smith", true}, // deletion
        {"smith", "xsmith", true},
        {"smith", "mith", true},
        {"smith", "smtih", true}, // transposition
        {"smith", "msith", true},
        {"smith", "smiht", true},
        {"smith", "smith", true},
        {"smith", "smithers", false},
        {"smith", "smyht", false}, // substitution + transposition
        {"smith", "mtish", false},
        {"abcd", "badc", false}, // two transpositions
        {"abcd", "axyd", false},
        {"abcd", "abc", false}, // abc is shorter than 4
        {"john", "jonh", true},
        {"jon", "jan", false}, // under 4: no typo allowed
        {"jon", "john", false},
        {"ann", "anne", false},
        {"bob", "bob", true}, // equal matches at any length
        {"", "", true},
        {"müller", "muller", true}, // one code point, two bytes
        {"müller", "mueller", false},
        {"josé", "jose", true},
        {"zoë", "zoe", false}, // three code points
        {"łódź", "łodź", true},
        {"abcé", "abc", false},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        int before = test_failures_;
        CHECK_INT(idl_name_typo_match(cases[i].a, cases[i].b), cases[i].want);
        CASE_CONTEXT(before, "\"%s\" ~ \"%s\"", cases[i].a, cases[i].b);
    }
}

static void name_match(void)
{
    CHECK(idl_name_match("bob", "robert", true));
    CHECK(!idl_name_match("bob", "robert", false));
    CHECK(idl_name_match("smith", "smyth", false));
    CHECK(idl_name_match("roberta", "robert", true)); // a typo, not a nickname
    CHECK(idl_name_match("li", "li", false));
    CHECK(!idl_name_match("li", "lu", true));
    CHECK(!idl_name_match("johnson", "robert", true));
}

int main(void)
{
    RUN(email);
    RUN(email_limits);
    RUN(phone);
    RUN(line_types);
    RUN(name);
    RUN(name_limits);
    RUN(address);
    RUN(address_reasons);
    RUN(street_only);
    RUN(parts);
    RUN(ascii_and_icu_agree);
    RUN(ip);
    RUN(nick_groups);
    RUN(nick_match);
    RUN(typo_match);
    RUN(name_match);
    return test_summary();
}
