/* libFuzzer target: the Origin check's parsing of Origin and Host header
 * values (origin_same) and the --allowed-origins list (origin_listed).
 * Input: "<origin>\n<host>". */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "origin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char *nl = strchr(text, '\n');
    const char *host = "";
    if (nl) {
        *nl = '\0';
        host = nl + 1;
    }
    int plain = origin_same(text, host, 0), tls = origin_same(text, host, 1);
    if (plain && tls) /* one scheme can match, never both */
        abort();
    char *saved = cfg.allowed_origins;
    cfg.allowed_origins = (char *)host; /* the second line as a list, too */
    (void)origin_listed(text);
    cfg.allowed_origins = saved;
    free(text);
    return 0;
}
