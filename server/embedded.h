/* embedded.h - files compiled into devlockd by scripts/embed.sh. */
#ifndef EMBEDDED_H
#define EMBEDDED_H

#include <stddef.h>

struct embedded_file {
    const char *name;  /* base name, e.g. "acquire.lua", "index.html" */
    const char *data;  /* NUL-terminated */
    size_t len;
};

/* Both arrays end with a {NULL, NULL, 0} row. */
extern const struct embedded_file embedded_lua[];
extern const struct embedded_file embedded_web[];

#endif
