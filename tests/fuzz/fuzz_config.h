/* fuzz_config.h - the fuzz targets that validate requests need devlockd's
 * default settings (limits); load them once. */
#ifndef FUZZ_CONFIG_H
#define FUZZ_CONFIG_H

#include <stdio.h>

#include "config.h"

static inline void fuzz_load_defaults(void)
{
    static int loaded;
    if (loaded)
        return;
    char *argv[] = {"devlockd", NULL};
    FILE *null = fopen("/dev/null", "w");
    config_load(1, argv, null, null);
    fclose(null);
    loaded = 1;
}

#endif
