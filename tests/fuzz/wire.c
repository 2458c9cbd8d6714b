/* Fuzz target: the envelope decoder (idl_wire_decode_request) and body field
 * parsing (idl_wire_fields), on bytes as they arrive from the network.
 * Properties: no crash, no read past the input, no allocation sized from a
 * declared length; a failure gives a NUL-terminated sentence; a decoded
 * method and any unknown field name go back out (escaped by the reply
 * packer) as valid UTF-8 msgpack str. */
#include "fuzz.h"
#include "status.h"
#include "wire.h"

/* Packs s as a reply would and checks the str that comes out is UTF-8. */
static void check_packed(const char *s, size_t n)
{
    idl_buf b = {0};
    msgpack_packer pk;
    idl_buf_packer(&b, &pk);
    idl_wire_pack_str(&pk, s, n);
    FUZZ_CHECK(!b.failed);
    msgpack_zone z;
    msgpack_zone_init(&z, 256);
    msgpack_object o;
    size_t off = 0;
    FUZZ_CHECK(msgpack_unpack(b.data, b.len, &off, &z, &o) == MSGPACK_UNPACK_SUCCESS);
    FUZZ_CHECK(o.type == MSGPACK_OBJECT_STR && off == b.len);
    if (!idl_wire_utf8_valid(o.via.str.ptr, o.via.str.size)) {
        fuzz_show("packed", o.via.str.ptr, o.via.str.size);
        FUZZ_FAIL("a packed str is not valid UTF-8");
    }
    if (idl_wire_utf8_valid(s, n))
        FUZZ_CHECK(o.via.str.size == n && (n == 0 || memcmp(o.via.str.ptr, s, n) == 0));
    msgpack_zone_destroy(&z);
    idl_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    msgpack_zone zone;
    msgpack_zone_init(&zone, 2048);
    idl_request req;
    char msg[IDL_ERR_MAX];
    msg[0] = '\0';
    int rc = idl_wire_decode_request(data, size, &zone, &req, msg);
    if (rc != IDL_OK) {
        FUZZ_CHECK(rc == IDL_INVALID_ARGUMENT);
        FUZZ_CHECK(msg[0] && strnlen(msg, sizeof msg) < sizeof msg);
        FUZZ_CHECK(req.has_id || req.id == 0);
        if (req.method) check_packed(req.method, req.method_len);
        msgpack_zone_destroy(&zone);
        return 0;
    }
    FUZZ_CHECK(req.has_id && req.method);
    check_packed(req.method, req.method_len);
    if (req.auth) check_packed(req.auth, req.auth_len);
    /* Search's table (every field type), then the address sub-map as Search
     * parses it. */
    idl_field f[8] = {
        {"email", IDL_FT_STR, NULL},        {"limit", IDL_FT_UINT, NULL},
        {"min_score", IDL_FT_NUMBER, NULL}, {"address", IDL_FT_STR_OR_MAP, NULL},
        {"calls", IDL_FT_ARRAY, NULL},      {"person", IDL_FT_MAP, NULL},
        {"exact", IDL_FT_BOOL, NULL},       {"phone", IDL_FT_STR, NULL},
    };
    char field[64];
    field[0] = '\0';
    rc = idl_wire_fields(req.body, f, 8, msg, field);
    if (rc != IDL_OK) {
        FUZZ_CHECK(rc == IDL_INVALID_ARGUMENT);
        FUZZ_CHECK(msg[0] && strnlen(msg, sizeof msg) < sizeof msg);
        FUZZ_CHECK(strnlen(field, sizeof field) < sizeof field);
        FUZZ_CHECK(idl_wire_utf8_valid(msg, strlen(msg)));
        FUZZ_CHECK(idl_wire_utf8_valid(field, strlen(field)));
    } else if (f[3].val && f[3].val->type == MSGPACK_OBJECT_MAP) {
        idl_field af[5] = {{"street", IDL_FT_STR, NULL},
                           {"unit", IDL_FT_STR, NULL},
                           {"city", IDL_FT_STR, NULL},
                           {"state", IDL_FT_STR, NULL},
                           {"zip", IDL_FT_STR, NULL}};
        if (idl_wire_fields(f[3].val, af, 5, msg, field) != IDL_OK) {
            FUZZ_CHECK(idl_wire_utf8_valid(msg, strlen(msg)));
            FUZZ_CHECK(idl_wire_utf8_valid(field, strlen(field)));
        }
        for (int i = 0; i < 5; i++) {
            char s[64];
            if (af[i].val && idl_wire_str(af[i].val, s, sizeof s) == IDL_OK)
                FUZZ_CHECK(strlen(s) <= af[i].val->via.str.size);
        }
    }
    for (int i = 0; i < 8 && rc == IDL_OK; i++)
        if (f[i].val && f[i].val->type == MSGPACK_OBJECT_STR)
            check_packed(f[i].val->via.str.ptr, f[i].val->via.str.size);
    msgpack_zone_destroy(&zone);
    return 0;
}
