/* config.h - devlockd settings, from config.def. */
#ifndef CONFIG_H
#define CONFIG_H

#include <stdio.h>

struct config {
#define STR char *
#define INT long
#define DBL double
#define BOOL int
#define X(field, type, flag, env, def, check, help) type field;
#include "config.def"
#undef X
#undef STR
#undef INT
#undef DBL
#undef BOOL
};

extern struct config cfg;

/* Fills cfg from defaults, then environment, then argv. Returns 0 to go
 * on, 1 when --help/--print-config was handled (exit 0), -1 on a bad
 * setting (message written to err). */
int config_load(int argc, char **argv, FILE *out, FILE *err);
void config_free(void);

#endif
