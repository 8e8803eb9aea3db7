/* auth.h - bearer tokens and roles (--auth-file, SPEC §7). Off unless an
 * auth file is loaded; then every request needs a token. */
#ifndef AUTH_H
#define AUTH_H

#include <stddef.h>

#include "lk_buf.h"

enum auth_role {
    ROLE_VIEWER = 1 << 0,
    ROLE_OPERATOR = 1 << 1,
    ROLE_QUEUE = 1 << 2,
    ROLE_MAINTENANCE = 1 << 3,
    ROLE_ADMIN = 1 << 4,
};

struct auth_user {
    char user_id[257];
    unsigned roles;
};

/* Loads the file ({"users":[{"user_id","token"|"token_sha256","roles"}]}).
 * On error keeps the previous users and returns -1 with a message. */
int auth_load(const char *path, char *err, size_t errlen);
int auth_parse(const char *text, size_t len, char *err, size_t errlen);
void auth_free(void);
int auth_active(void);
/* The user of a token (constant-time comparison of SHA-256 digests), copied
 * into out; 0 if found, -1 if not. */
int auth_lookup(const char *token, struct auth_user *out);
/* The token from "Bearer <token>"; NULL if the header is not that form. */
const char *auth_bearer(const char *header);
/* May this user take a lock of this priority (0 = MAINTENANCE ...)? */
int auth_may_lock(const struct auth_user *u, int priority);
int auth_is_admin(const struct auth_user *u);
/* Copies json into out with every lock_key that belongs to someone other
 * than viewer replaced by null (viewer NULL: every one). A lock_key belongs
 * to the user_id of the same object, compared as decoded strings; a
 * lock_key without one (the requester's own, top level) is kept. Text that
 * is not JSON, or has nothing to hide, is copied unchanged. */
void auth_redact(const char *json, size_t len, const char *viewer, struct lk_buf *out);

#endif
