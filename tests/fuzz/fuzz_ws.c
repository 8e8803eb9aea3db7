/* libFuzzer target: a WebSocket text message from a client (ws_decode,
 * then the acquire fields when it is an acquire). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz_config.h"
#include "locks.h"
#include "ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_load_defaults();
    cJSON *msg;
    const char *type, *detail;
    if (ws_decode((const char *)data, size, &msg, &type, &detail) == LK_E_OK && !strcmp(type, "acquire")) {
        struct locks_request_args a;
        char err[256];
        locks_parse_request(msg, &a, err, sizeof(err));
    }
    cJSON_Delete(msg);
    return 0;
}
