/* libFuzzer target: the chunked request body reader, fed the input in
 * pieces of every size the first byte picks. */
#include <stdint.h>
#include <stdlib.h>

#include "chunked.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0;
    size_t step = (size_t)data[0] + 1;
    struct chunked c;
    struct lk_buf out;
    chunked_init(&c);
    lk_buf_init(&out, 0);
    enum chunked_status st = CHUNKED_MORE;
    for (size_t i = 1; i < size && st == CHUNKED_MORE; i += step)
        st = chunked_feed(&c, (const char *)data + i, size - i < step ? size - i : step, &out, 4096);
    if (out.len > 4096)
        abort();
    lk_buf_free(&out);
    return 0;
}
