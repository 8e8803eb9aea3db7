/* libFuzzer target: the text checks on network bytes (UTF-8, JSON depth,
 * device names, timestamps, stream-id ordering). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lk_text.h"
#include "lk_time.h"
#include "ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    lk_utf8_valid(text, size);
    lk_json_depth(text, size, 16);
    char *z = malloc(size + 1);
    memcpy(z, data, size);
    z[size] = '\0';
    lk_device_name_valid(z);
    lk_lock_type_parse(z);
    int64_t us;
    lk_time_parse_us(z, &us);
    char *mid = z + size / 2;
    ws_event_id_cmp(z, mid);
    free(z);
    return 0;
}
