/* libFuzzer target: an HTTP request body as devlockd reads it (UTF-8 and
 * depth checks, then cJSON, then acquire-request validation). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "fuzz_config.h"
#include "lk_text.h"
#include "locks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_load_defaults();
    const char *text = (const char *)data;
    if (!lk_utf8_valid(text, size) || lk_json_depth(text, size, 16) > 16)
        return 0;
    cJSON *j = cJSON_ParseWithLength(text, size);
    if (cJSON_IsObject(j)) {
        struct locks_request_args a;
        char err[256];
        locks_parse_request(j, &a, err, sizeof(err));
    }
    cJSON_Delete(j);
    return 0;
}
