/* libFuzzer target: the device catalogue file (JSON or text lines). */
#include <stdint.h>

#include "catalogue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    if (catalogue_parse((const char *)data, size, err, sizeof(err)) == 0) {
        for (size_t i = 0; i < catalogue_count(); i++)
            catalogue_find(catalogue_at(i)->name);
    }
    catalogue_free();
    return 0;
}
