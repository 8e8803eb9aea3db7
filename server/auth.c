/* auth.c - users, tokens and roles. Tokens are kept only as SHA-256
 * digests; a presented token is hashed and compared with every user's
 * digest in constant time (CRYPTO_memcmp), so neither timing nor an early
 * exit tells which prefix matched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "auth.h"
#include "lk_mem.h"
#include "lk_text.h"

struct user {
    struct auth_user u;
    unsigned char digest[SHA256_DIGEST_LENGTH];
};

static struct {
    struct user *users;
    size_t n;
    int active;
} au;

void auth_free(void)
{
    free(au.users);
    memset(&au, 0, sizeof(au));
}

int auth_active(void) { return au.active; }

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static unsigned parse_roles(const cJSON *roles, int *bad)
{
    static const struct { const char *name; unsigned bit; } names[] = {
        {"viewer", ROLE_VIEWER}, {"operator", ROLE_OPERATOR}, {"queue", ROLE_QUEUE},
        {"maintenance", ROLE_MAINTENANCE}, {"admin", ROLE_ADMIN},
    };
    unsigned bits = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, roles) {
        size_t i = 0;
        while (i < 5 && (!cJSON_IsString(r) || strcmp(names[i].name, r->valuestring)))
            i++;
        if (i == 5)
            *bad = 1;
        else
            bits |= names[i].bit;
    }
    return bits;
}

int auth_parse(const char *text, size_t len, char *err, size_t errlen)
{
    if (lk_json_depth(text, len, 8) > 8) {
        snprintf(err, errlen, "auth file nested too deeply");
        return -1;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    const cJSON *users = cJSON_GetObjectItemCaseSensitive(root, "users");
    if (!cJSON_IsArray(users)) {
        snprintf(err, errlen, "auth file must be {\"users\": [...]}");
        cJSON_Delete(root);
        return -1;
    }
    size_t n = (size_t)cJSON_GetArraySize(users);
    struct user *list = lk_xcalloc(n ? n : 1, sizeof(*list));
    size_t i = 0;
    const cJSON *it;
    int rc = 0;
    cJSON_ArrayForEach(it, users) {
        struct user *u = &list[i++];
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "user_id"));
        const char *tok = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "token"));
        const char *hex = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "token_sha256"));
        const cJSON *roles = cJSON_GetObjectItemCaseSensitive(it, "roles");
        int bad = 0;
        if (!id || !id[0] || strlen(id) > 256 || (!tok == !hex) || !cJSON_IsArray(roles)) {
            snprintf(err, errlen, "user %zu: needs user_id, exactly one of token/token_sha256, and roles", i);
            rc = -1;
            break;
        }
        snprintf(u->u.user_id, sizeof(u->u.user_id), "%s", id);
        u->u.roles = parse_roles(roles, &bad);
        if (bad) {
            snprintf(err, errlen, "user %s: unknown role (viewer, operator, queue, maintenance, admin)", id);
            rc = -1;
            break;
        }
        if (tok) {
            if (strlen(tok) < 8) {
                snprintf(err, errlen, "user %s: token shorter than 8 characters", id);
                rc = -1;
                break;
            }
            SHA256((const unsigned char *)tok, strlen(tok), u->digest);
        } else {
            if (strlen(hex) != 64) {
                snprintf(err, errlen, "user %s: token_sha256 must be 64 hex digits", id);
                rc = -1;
                break;
            }
            for (int k = 0; k < 32; k++) {
                int hi = hexval(hex[2 * k]), lo = hexval(hex[2 * k + 1]);
                if (hi < 0 || lo < 0) {
                    bad = 1;
                    break;
                }
                u->digest[k] = (unsigned char)(hi << 4 | lo);
            }
            if (bad) {
                snprintf(err, errlen, "user %s: token_sha256 must be 64 hex digits", id);
                rc = -1;
                break;
            }
        }
    }
    cJSON_Delete(root);
    if (rc) {
        free(list);
        return -1;
    }
    auth_free();
    au.users = list;
    au.n = n;
    au.active = 1;
    return 0;
}

int auth_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return -1;
    }
    char buf[1 << 20];
    size_t len = fread(buf, 1, sizeof(buf), f);
    int toolong = !feof(f);
    fclose(f);
    if (toolong) {
        snprintf(err, errlen, "%s is larger than 1 MiB", path);
        return -1;
    }
    return auth_parse(buf, len, err, errlen);
}

int auth_lookup(const char *token, struct auth_user *out)
{
    if (!token)
        return -1;
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, strlen(token), d);
    int found = -1;
    for (size_t i = 0; i < au.n; i++) /* no early exit: every user is compared */
        if (CRYPTO_memcmp(d, au.users[i].digest, sizeof(d)) == 0 && found < 0)
            found = (int)i;
    if (found < 0)
        return -1;
    *out = au.users[found].u;
    return 0;
}

const char *auth_bearer(const char *header)
{
    if (!header || strncasecmp(header, "Bearer ", 7) != 0)
        return NULL;
    header += 7;
    while (*header == ' ')
        header++;
    return *header ? header : NULL;
}

int auth_may_lock(const struct auth_user *u, int priority)
{
    if (u->roles & ROLE_ADMIN)
        return 1;
    switch (priority) {
    case 0: return (u->roles & ROLE_MAINTENANCE) != 0;
    case 1:
    case 3: return (u->roles & ROLE_QUEUE) != 0;
    case 2: return (u->roles & ROLE_OPERATOR) != 0;
    default: return 0;
    }
}

int auth_is_admin(const struct auth_user *u) { return (u->roles & ROLE_ADMIN) != 0; }

/* Hides the lock_key of every object that names a user_id other than the
 * viewer's; values are compared decoded (Lua's cjson writes "/" as "\/",
 * our serialiser does not, so the texts of one id can differ). */
static int redact_tree(cJSON *node, const char *viewer)
{
    int changed = 0;
    if (cJSON_IsObject(node)) {
        const cJSON *user = cJSON_GetObjectItemCaseSensitive(node, "user_id");
        const cJSON *key = cJSON_GetObjectItemCaseSensitive(node, "lock_key");
        if (cJSON_IsString(key) && cJSON_IsString(user) && !(viewer && !strcmp(user->valuestring, viewer))) {
            cJSON_ReplaceItemInObjectCaseSensitive(node, "lock_key", cJSON_CreateNull());
            changed = 1;
        }
    }
    if (cJSON_IsObject(node) || cJSON_IsArray(node))
        for (cJSON *c = node->child; c; c = c->next)
            changed |= redact_tree(c, viewer);
    return changed;
}

void auth_redact(const char *json, size_t len, const char *viewer, struct lk_buf *out)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !redact_tree(root, viewer)) { /* not JSON (/metrics) or nothing to hide */
        lk_buf_append(out, json, len);
    } else {
        char *text = cJSON_PrintUnformatted(root);
        if (!text) { /* out of memory: abort, as lk_xmalloc does; never the unredacted text */
            fputs("devlock: out of memory redacting an answer\n", stderr);
            abort();
        }
        lk_buf_puts(out, text);
        free(text);
    }
    cJSON_Delete(root);
}
