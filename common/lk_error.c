#include <string.h>

#include "lk_error.h"

struct error_row {
    const char *wire;
    int http;
    int exit_code;
    const char *desc;
};

static const struct error_row rows[] = {
#define X(name, wire, http, exit_code, desc) {wire, http, exit_code, desc},
#include "errors.def"
#undef X
};

static const struct error_row *row(enum lk_status s)
{
    if ((unsigned)s >= LK_E__COUNT)
        s = LK_E_INTERNAL;
    return &rows[s];
}

const char *lk_error_wire(enum lk_status s) { return row(s)->wire; }
int lk_error_http(enum lk_status s) { return row(s)->http; }
int lk_error_exit(enum lk_status s) { return row(s)->exit_code; }
const char *lk_error_desc(enum lk_status s) { return row(s)->desc; }

enum lk_status lk_error_from_wire(const char *wire)
{
    for (int i = 0; wire && i < LK_E__COUNT; i++)
        if (strcmp(rows[i].wire, wire) == 0)
            return (enum lk_status)i;
    return LK_E_INTERNAL;
}
