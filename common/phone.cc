/* libphonenumber behind a C interface, so that norm.c stays C and the
 * library's C++ types and exceptions stop here. */
#include "phone.h"

#include <phonenumbers/logger.h>
#include <phonenumbers/phonenumber.pb.h>
#include <phonenumbers/phonenumberutil.h>

#include <cstring>
#include <string>

using i18n::phonenumbers::NullLogger;
using i18n::phonenumbers::PhoneNumber;
using i18n::phonenumbers::PhoneNumberUtil;

namespace
{

PhoneNumberUtil *util()
{
    // The logger goes in before the first parse: the library otherwise writes
    // to stderr for some malformed inputs, which a bulk ingest would flood.
    // A function-local static is initialized once, thread-safely.
    static PhoneNumberUtil *const u = [] {
        PhoneNumberUtil *p = PhoneNumberUtil::GetInstance();
        p->SetLogger(new NullLogger());
        return p;
    }();
    return u;
}

idl_line_type plan_type(PhoneNumberUtil::PhoneNumberType t)
{
    switch (t) {
    case PhoneNumberUtil::TOLL_FREE:
        return IDL_LINE_TOLL_FREE;
    case PhoneNumberUtil::PREMIUM_RATE:
        return IDL_LINE_PREMIUM;
    case PhoneNumberUtil::VOIP:
        return IDL_LINE_VOIP;
    case PhoneNumberUtil::MOBILE:
        return IDL_LINE_MOBILE;
    case PhoneNumberUtil::FIXED_LINE:
        return IDL_LINE_LANDLINE;
    default:
        // FIXED_LINE_OR_MOBILE (all of NANP), pager, UAN...: the plan does not
        // say, so we do not guess.
        return IDL_LINE_UNKNOWN;
    }
}

const char *parse_error(PhoneNumberUtil::ErrorType e)
{
    switch (e) {
    case PhoneNumberUtil::INVALID_COUNTRY_CODE_ERROR:
        return "unknown country calling code";
    case PhoneNumberUtil::TOO_SHORT_AFTER_IDD:
    case PhoneNumberUtil::TOO_SHORT_NSN:
        return "phone number too short";
    case PhoneNumberUtil::TOO_LONG_NSN:
        return "phone number too long";
    default:
        return "not a phone number";
    }
}

} // namespace

extern "C" int idl_phone_parse(const char *in, size_t len, char *e164, size_t cap,
                               idl_line_type *type, char country[3], const char **reason)
{
    try {
        PhoneNumberUtil *u = util();
        PhoneNumber pn;
        PhoneNumberUtil::ErrorType e = u->Parse(std::string(in, len), "US", &pn);
        if (e != PhoneNumberUtil::NO_PARSING_ERROR) {
            *reason = parse_error(e);
            return -1;
        }
        // IsValidNumber(n) is GetNumberTypeHelper(n) != UNKNOWN under the
        // number's region, and GetNumberType is that same helper: one call
        // gives validity and type, where IsValidNumber + GetNumberType would
        // run the pattern matching (the expensive part) twice.
        PhoneNumberUtil::PhoneNumberType t = u->GetNumberType(pn);
        if (t == PhoneNumberUtil::UNKNOWN) {
            *reason = "not a valid phone number";
            return -1;
        }
        // E.164 has no extension, which is what we want: "x123" is dropped.
        std::string out;
        u->Format(pn, PhoneNumberUtil::E164, &out);
        if (out.size() >= cap) {
            *reason = "phone number too long";
            return -1;
        }
        std::memcpy(e164, out.c_str(), out.size() + 1);
        *type = plan_type(t);
        if (country) {
            // Only Validate reports the country: the region lookup tries the
            // patterns of every NANP region in turn, so it is done on request.
            // Non-geographic numbers (+800, +882...) have region "001", which
            // is no ISO 3166 code.
            std::string region;
            u->GetRegionCodeForNumber(pn, &region);
            if (region.size() == 2 && region != "ZZ") {
                country[0] = region[0];
                country[1] = region[1];
                country[2] = '\0';
            } else {
                country[0] = '\0';
            }
        }
        return 0;
    } catch (...) {
        *reason = "phone number could not be parsed";
        return -1;
    }
}
