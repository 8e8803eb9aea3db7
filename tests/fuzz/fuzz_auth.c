/* libFuzzer target: the auth file, and lock-key redaction of JSON bytes. */
#include <stdint.h>
#include <string.h>

#include "auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    auth_parse((const char *)data, size, err, sizeof(err));
    struct auth_user u;
    auth_lookup("fuzz-token-1", &u);
    auth_free();
    struct lk_buf out;
    lk_buf_init(&out, 0);
    auth_redact((const char *)data, size, "alice", &out);
    lk_buf_reset(&out);
    auth_redact((const char *)data, size, NULL, &out);
    lk_buf_free(&out);
    return 0;
}
