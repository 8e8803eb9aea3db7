/* libFuzzer target: an HTTP request body as devlockd reads it (UTF-8 and
 * depth checks, then cJSON, then acquire-request validation), and as a
 * booking: its times, and the booking rendered into the calendar feed
 * (whose text fields clients choose). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "fuzz_config.h"
#include "lk_text.h"
#include "ics.h"
#include "lk_buf.h"
#include "locks.h"
#include "reservations.h"

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
        int64_t us;
        reservations_parse_time(cJSON_GetObjectItemCaseSensitive(j, "start"), &us);
        reservations_parse_time(cJSON_GetObjectItemCaseSensitive(j, "end"), &us);
        cJSON *list = cJSON_CreateArray();
        cJSON_AddItemReferenceToArray(list, j);
        struct lk_buf out;
        lk_buf_init(&out, 0);
        ics_render(list, "fuzz", 1796606597308453LL, &out);
        lk_buf_free(&out);
        cJSON_Delete(list);
    }
    cJSON_Delete(j);
    return 0;
}
