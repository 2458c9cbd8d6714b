/* Fuzz target: record parsing, the way records arrive.  The input is read
 * three ways: as one NDJSON line (jansson, then idl_json_pack, the structure
 * check and idl_record_parse, as `idlookup ingest` does), as msgpack (as
 * Upsert's records arrive), and as a stored record (idl_record_unpack).
 * Properties: no crash, no read past the input; every warning and reason is
 * a NUL-terminated sentence of valid UTF-8 (they go back out in replies); a
 * parsed record has valid UTF-8 display strings and survives the store
 * format unchanged (pack, unpack, pack again gives the same bytes). */
#include "fuzz.h"
#include "json.h"
#include "record.h"
#include "status.h"
#include "wire.h"

#include <jansson.h>

static void on_warning(void *ctx, const char *reason)
{
    (void)ctx;
    size_t n = strnlen(reason, 256);
    FUZZ_CHECK(n > 0 && n < 256);
    if (!idl_wire_utf8_valid(reason, n)) {
        fuzz_show("warning", reason, n);
        FUZZ_FAIL("a record warning is not valid UTF-8");
    }
}

static void pack_record(const idl_record *r, idl_buf *b)
{
    idl_buf_reset(b);
    msgpack_packer pk;
    idl_buf_packer(b, &pk);
    idl_record_pack(&pk, r);
    FUZZ_CHECK(!b->failed);
}

static void check_record(const idl_record *r)
{
    FUZZ_CHECK(idl_wire_utf8_valid(r->source_id, strnlen(r->source_id, sizeof r->source_id)));
    FUZZ_CHECK(idl_wire_utf8_valid(r->first_name, strnlen(r->first_name, sizeof r->first_name)));
    FUZZ_CHECK(idl_wire_utf8_valid(r->last_name, strnlen(r->last_name, sizeof r->last_name)));
    FUZZ_CHECK(idl_wire_utf8_valid(r->middle_name, strnlen(r->middle_name, sizeof r->middle_name)));
    FUZZ_CHECK(r->n_emails <= IDL_REC_MAX_EMAILS && r->n_phones <= IDL_REC_MAX_PHONES);
    FUZZ_CHECK(r->n_addrs <= IDL_REC_MAX_ADDRS && r->n_ips <= IDL_REC_MAX_IPS);
    /* The store format round trip. */
    idl_buf a = {0}, b = {0};
    pack_record(r, &a);
    idl_record back;
    FUZZ_CHECK(idl_record_unpack(a.data, a.len, &back) == IDL_OK);
    pack_record(&back, &b);
    if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
        FUZZ_FAIL("a record changes through the store format");
    idl_buf_free(&a);
    idl_buf_free(&b);
}

static void parse_msgpack(const void *buf, size_t len, size_t max_len)
{
    char why[IDL_ERR_MAX];
    if (idl_wire_check_limits(buf, len, max_len, IDL_WIRE_MAX_OBJECTS, why) != IDL_OK) return;
    msgpack_zone zone;
    msgpack_zone_init(&zone, 2048);
    msgpack_object o;
    size_t off = 0;
    FUZZ_CHECK(msgpack_unpack(buf, len, &off, &zone, &o) == MSGPACK_UNPACK_SUCCESS);
    idl_record r;
    char reason[IDL_ERR_MAX];
    reason[0] = '\0';
    if (idl_record_parse(&o, &r, on_warning, NULL, reason) != IDL_OK) {
        size_t n = strnlen(reason, sizeof reason);
        FUZZ_CHECK(n > 0 && n < sizeof reason && idl_wire_utf8_valid(reason, n));
    } else {
        check_record(&r);
    }
    msgpack_zone_destroy(&zone);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* NDJSON, as ingest reads a line. */
    json_error_t je;
    json_t *v = json_loadb((const char *)data, size, 0, &je);
    if (v && json_is_object(v)) {
        idl_buf mp = {0};
        msgpack_packer pk;
        idl_buf_packer(&mp, &pk);
        idl_json_pack(&pk, v);
        FUZZ_CHECK(!mp.failed);
        parse_msgpack(mp.data, mp.len, 2 * size + 64);
        idl_buf_free(&mp);
    }
    if (v) json_decref(v);
    /* Upsert's msgpack. */
    if (size) parse_msgpack(data, size, IDL_WIRE_MAX_MSG);
    /* A stored record. */
    idl_record r;
    if (idl_record_unpack(data, size, &r) == IDL_OK) {
        idl_buf a = {0};
        pack_record(&r, &a);
        idl_record back;
        FUZZ_CHECK(idl_record_unpack(a.data, a.len, &back) == IDL_OK);
        idl_buf_free(&a);
    }
    return 0;
}
