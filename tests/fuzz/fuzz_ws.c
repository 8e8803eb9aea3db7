/* libFuzzer target: a WebSocket text message from a client (ws_decode,
 * then the acquire fields when it is an acquire). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "locks.h"
#include "ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int loaded;
    if (!loaded) {
        char *argv[] = {"devlockd", NULL};
        FILE *null = fopen("/dev/null", "w");
        config_load(1, argv, null, null);
        fclose(null);
        loaded = 1;
    }
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
