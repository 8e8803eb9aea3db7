/* lk_error.h - the project-wide status codes, generated from errors.def. */
#ifndef LK_ERROR_H
#define LK_ERROR_H

enum lk_status {
#define X(name, wire, http, exit_code, desc) LK_E_##name,
#include "errors.def"
#undef X
    LK_E__COUNT
};

/* Wire code ("invalid_json"), HTTP status, CLI exit code and description of
 * a status. Out-of-range values map to LK_E_INTERNAL. Never NULL. */
const char *lk_error_wire(enum lk_status s);
int lk_error_http(enum lk_status s);
int lk_error_exit(enum lk_status s);
const char *lk_error_desc(enum lk_status s);
/* Inverse of lk_error_wire; LK_E_INTERNAL when unknown. */
enum lk_status lk_error_from_wire(const char *wire);

#endif
