/* Fuzz target: the client library's reply decoder (idl_reply_decode), on
 * bytes a server (or anything on the network) sent back.  Properties: no
 * crash, no read past the input, no leak; a decoded reply has its strings
 * NUL-terminated and its objects typed as the header says. */
#include "client.h"
#include "fuzz.h"
#include "status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    idl_reply *r = NULL;
    int rc = idl_reply_decode(data, size, &r);
    if (rc != IDL_OK) {
        FUZZ_CHECK(rc == IDL_INTERNAL);
        return 0;
    }
    FUZZ_CHECK(r != NULL);
    if (r->message) FUZZ_CHECK(strlen(r->message) <= size);
    if (r->request_id) FUZZ_CHECK(strlen(r->request_id) <= size);
    FUZZ_CHECK(r->root.type == MSGPACK_OBJECT_MAP);
    if (r->meta.type == MSGPACK_OBJECT_MAP)
        for (uint32_t i = 0; i < r->meta.via.map.size; i++)
            (void)r->meta.via.map.ptr[i].key.type;
    idl_reply_free(r);
    return 0;
}
