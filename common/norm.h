/* Normalization of identifiers (DATA.md §3): pure functions, no I/O.
 *
 * Each normalizer turns what a customer typed into the one form that index
 * keys are hashed from, or says in a short static sentence why the value is
 * not well-formed.  Outputs are written only on success; reasons are static
 * strings that the caller must not free.  All functions are thread-safe.
 */
#ifndef IDL_NORM_H
#define IDL_NORM_H

#include <stdbool.h>
#include <stddef.h>

/* Buffer sizes, including the terminating NUL.  Inputs that would not fit are
 * invalid ("too long"), never truncated. */
#define IDL_NORM_EMAIL_MAX 256
#define IDL_NORM_PHONE_MAX 24
#define IDL_NORM_NAME_MAX 128
#define IDL_NORM_IP_MAX 48
#define IDL_NORM_STREET_MAX 160
#define IDL_NORM_UNIT_MAX 48
#define IDL_NORM_CITY_MAX 80

typedef enum {
    IDL_LINE_UNKNOWN = 0,
    IDL_LINE_MOBILE,
    IDL_LINE_LANDLINE,
    IDL_LINE_VOIP,
    IDL_LINE_TOLL_FREE,
    IDL_LINE_PREMIUM,
} idl_line_type;

/* "mobile", "landline", "voip", "toll_free", "premium", "unknown". */
const char *idl_line_type_name(idl_line_type t);
/* Parses one of the names above; IDL_INVALID_ARGUMENT for anything else. */
int idl_line_type_parse(const char *s, idl_line_type *out);

/* Email (DATA.md §3; RFC 5321/5322/6531): spaces and tabs trimmed (a CR or
 * LF anywhere is invalid), lower-case; the local part a dot-atom of at most
 * 64 octets (no quotes, comments, folding white space); the domain two or
 * more LDH labels or an IDNA 2008 name (libidn2), kept as lower-case NFC
 * U-labels; no control, invisible, bidi, private-use or unassigned
 * character, no combining mark starting a run; at most 254 octets.
 * googlemail.com -> gmail.com; for gmail.com dots are removed from the
 * local part and everything from '+' is dropped.  Reasons name the rule that
 * failed ("local part has two dots in a row", "invisible character U+200B").
 * Idempotent: normalizing the output gives the output.
 * Returns 0 and writes out (NUL-terminated), or IDL_INVALID_ARGUMENT and *reason. */
int idl_norm_email(const char *in, size_t len, char out[IDL_NORM_EMAIL_MAX], const char **reason);

/* Phone, through libphonenumber with default region US: valid is
 * IsValidNumber, out is E.164 ("+14155552671"), extensions are dropped.
 * *plan_type is the number plan's type where it is specific (TOLL_FREE,
 * PREMIUM_RATE, VOIP, MOBILE, FIXED_LINE), else IDL_LINE_UNKNOWN
 * (FIXED_LINE_OR_MOBILE and the rest); country is the ISO 3166 alpha-2 region
 * ("US"), looked up only when country is not NULL (it costs as much as the
 * validation itself).  Returns 0 or IDL_INVALID_ARGUMENT with *reason. */
int idl_norm_phone(const char *in, size_t len, char out[IDL_NORM_PHONE_MAX],
                   idl_line_type *plan_type, char country[3], const char **reason);

/* Name, for comparison and index keys (never for display): simple Unicode
 * case folding, accents removed (é -> e), punctuation other than '-' and '\''
 * removed, spaces collapsed and trimmed.  Empty after that is invalid. */
int idl_norm_name(const char *in, size_t len, char out[IDL_NORM_NAME_MAX], const char **reason);

/* A normalized US address.  Empty strings stand for absent parts (nil). */
typedef struct {
    char street[IDL_NORM_STREET_MAX]; /* "742 EVERGREEN TER", "123 N MAIN ST" */
    char unit[IDL_NORM_UNIT_MAX];     /* "APT 4", "# 4", or "" */
    char city[IDL_NORM_CITY_MAX];     /* "SPRINGFIELD" or "" */
    char state[3];                    /* "OR" or "" */
    char zip[6];                      /* "97477" or "" */
} idl_address;

/* Address: upper-case; Pub 28 §232 punctuation, §233 directionals, §234
 * suffixes, C2 unit designators, §24x/§25x RR and HC lines ("RR 3 BOX 98D"),
 * §28x PO boxes ("PO BOX 123"), Appendix F highway names kept; state names
 * -> 2-letter codes; ZIP -> 5 digits.  Every unit group at the end of the
 * street ("123 Main St Bldg 3 Ste 200") moves to unit as "DESIGNATOR
 * VALUE" groups ("BLDG 3 STE 200", "# 4" without a designator); a unit given
 * on its own is added after them (a group written twice counts once).  Any
 * argument may be NULL (absent).  Invalid without a house number and street
 * name (or a box or route line), without either a 5-digit ZIP or city +
 * state, with an unknown state, or with a malformed ZIP.  Idempotent: the
 * output, fed back with empty parts as NULL, normalizes to itself.
 * Returns 0 and fills *out, or IDL_INVALID_ARGUMENT and *reason. */
int idl_norm_address(const char *street, const char *unit, const char *city, const char *state,
                     const char *zip, idl_address *out, const char **reason);

/* Only the street line (and optional unit) of an address, as used by Search
 * where city/state/zip arrive as separate filters.  Same rules as above. */
int idl_norm_street(const char *street, const char *unit, char street_out[IDL_NORM_STREET_MAX],
                    char unit_out[IDL_NORM_UNIT_MAX], const char **reason);

/* A state name or code ("Oregon", "or", "OR") -> "OR"; IDL_INVALID_ARGUMENT
 * when it is not a US state, DC or territory. */
int idl_norm_state(const char *in, char out[3], const char **reason);
/* "97477", "97477-1234", "974771234" -> "97477". */
int idl_norm_zip(const char *in, char out[6], const char **reason);
/* City: trimmed, spaces collapsed, upper-case, accents removed. */
int idl_norm_city(const char *in, char out[IDL_NORM_CITY_MAX], const char **reason);

/* IP: the canonical text form of IPv4 ("203.0.113.7") or IPv6 (RFC 5952,
 * lower-case, "::" compression). */
int idl_norm_ip(const char *in, size_t len, char out[IDL_NORM_IP_MAX], const char **reason);

/* Nickname groups.  For a normalized given name, writes up to max canonical
 * names of the groups it belongs to (the name itself always first; "bob" ->
 * {"bob", "robert"}; "bill" -> {"bill", "william", "robert"} as the data says)
 * and returns how many.  The strings are static. */
size_t idl_nick_groups(const char *norm_first, const char **out, size_t max);

/* True when two normalized given names are the same, or share a nickname
 * group (Bob and Robert, Bobby and Rob). */
bool idl_nick_match(const char *a, const char *b);

/* True when a and b differ by at most one edit (insertion, deletion,
 * substitution, or a swap of two adjacent characters), counted on Unicode
 * code points; only allowed when both have 4 letters or more.  Equal strings
 * match at any length. */
bool idl_name_typo_match(const char *a, const char *b);

/* Verify's name rule for one name part: equal, nickname (when given_name is
 * true), or one typo. */
bool idl_name_match(const char *a, const char *b, bool given_name);

#endif
