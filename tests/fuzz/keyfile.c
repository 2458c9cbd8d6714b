/* Fuzz target: the key-file parser (idl_keyring_load) and the
 * authorization check against what it loaded.  The input is the file's
 * content, handed over through a memfd so the real load path runs (open,
 * flock, read, parse).  Properties: no crash, no leak; a failure is
 * IDL_INVALID_ARGUMENT with a message; a loaded keyring holds only keys the
 * format allows (ids "k" + 12 hex, valid customers, known scopes, rates in
 * range), and no made-up secret authenticates against it. */
#include "auth.h"
#include "fuzz.h"
#include "status.h"

#include <sys/mman.h>
#include <unistd.h>

static int memfd = -1;
static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (memfd < 0) {
        memfd = memfd_create("fuzz-keys", MFD_CLOEXEC);
        FUZZ_CHECK(memfd >= 0);
        snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
    }
    FUZZ_CHECK(ftruncate(memfd, 0) == 0);
    FUZZ_CHECK(size == 0 || pwrite(memfd, data, size, 0) == (ssize_t)size);
    idl_keyring *kr = NULL;
    char err[IDL_ERR_MAX] = "";
    int rc = idl_keyring_load(path, &kr, err);
    if (rc != IDL_OK) {
        FUZZ_CHECK(rc == IDL_INVALID_ARGUMENT);
        FUZZ_CHECK(err[0] && err[0]);
        err[0] = 0;
        return 0;
    }
    FUZZ_CHECK(err[0] == 0);
    size_t n = idl_keyring_count(kr);
    for (size_t i = 0; i < n; i++) {
        const idl_key_info *k = idl_keyring_info(kr, i);
        char why[IDL_ERR_MAX] = "";
        FUZZ_CHECK(strlen(k->id) == 13 && k->id[0] == 'k');
        FUZZ_CHECK(idl_auth_validate_customer(k->customer, why) == IDL_OK);
        FUZZ_CHECK(k->scopes && !(k->scopes & ~7u));
        FUZZ_CHECK(k->rate >= IDL_AUTH_RATE_MIN && k->rate <= IDL_AUTH_RATE_MAX);
        /* A well-formed secret for this id that was never issued. */
        char bearer[128];
        snprintf(bearer, sizeof bearer, "Bearer idl_%s_%s", k->id,
                 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        idl_key *key = NULL;
        FUZZ_CHECK(idl_auth_check(kr, bearer, strlen(bearer), &key) == IDL_UNAUTHENTICATED);
    }
    /* The input itself as an authorization value. */
    idl_key *key = NULL;
    FUZZ_CHECK(idl_auth_check(kr, (const char *)data, size, &key) == IDL_UNAUTHENTICATED);
    idl_keyring_free(kr);
    return 0;
}
