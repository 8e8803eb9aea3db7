/* keys.c - the Redis keys a script call declares before it has run (keys.h). */
#include "keys.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "lk_buf.h"
#include "lk_mem.h"

/* prelude.lua's GLOBAL_KEYS (what any call may touch; the few global keys
 * only some scripts touch are named with them), and the keys of one device
 * (DEVICE_KEYS). Each key costs every call (sent, parsed, a Lua string),
 * so a call names no more. */
static const char *const global_keys[] = {
    "dl:held", "dl:expiry", "dl:events", "dl:seq", "dl:stats", "dl:sessbrokers",
};
static const char *const device_keys[] = {"lock", "fence", "waitq", "delay", "conf", "rsv"};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

void keyset_init(struct keyset *ks) { memset(ks, 0, sizeof(*ks)); }

void keyset_free(struct keyset *ks)
{
    for (int i = 0; i < ks->n; i++)
        free(ks->key[i]);
    free(ks->key);
    free(ks->len);
    keyset_init(ks);
}

void keyset_append(struct keyset *ks, const char *key, size_t len)
{
    if (ks->n == ks->cap) {
        ks->cap = ks->cap ? 2 * ks->cap : 32;
        ks->key = lk_xrealloc(ks->key, sizeof(*ks->key) * (size_t)ks->cap);
        ks->len = lk_xrealloc(ks->len, sizeof(*ks->len) * (size_t)ks->cap);
    }
    ks->key[ks->n] = lk_xstrndup(key, len);
    ks->len[ks->n] = len;
    ks->n++;
}

/* The keys named before a call are a few dozen: a linear look is enough. */
void keyset_add(struct keyset *ks, const char *key, size_t len)
{
    for (int i = 0; i < ks->n; i++)
        if (ks->len[i] == len && memcmp(ks->key[i], key, len) == 0)
            return;
    keyset_append(ks, key, len);
}

/* prefix + the len bytes of s */
static void add_named(struct keyset *ks, const char *prefix, const char *s, size_t len,
                      const char *suffix)
{
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_puts(&b, prefix);
    lk_buf_append(&b, s, len);
    lk_buf_puts(&b, suffix);
    keyset_add(ks, lk_buf_data(&b), b.len);
    lk_buf_free(&b);
}

static void add_device(struct keyset *ks, const char *dev, size_t len)
{
    for (size_t i = 0; i < NELEM(device_keys); i++) {
        char suffix[16];
        snprintf(suffix, sizeof(suffix), "}:%s", device_keys[i]);
        add_named(ks, "dl:{", dev, len, suffix);
    }
}

/* Each device of a comma-separated list, as prelude.lua's split(). */
static void add_devices(struct keyset *ks, const char *list, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t n = 0;
        while (i + n < len && list[i + n] != ',')
            n++;
        if (n > 0)
            add_device(ks, list + i, n);
        i += n + 1;
    }
}

void keyset_add_lock(struct keyset *ks, const char *dev, size_t len) { add_named(ks, "dl:{", dev, len, "}:lock"); }

int keys_next_page(struct keyset *ks, const redisReply *page)
{
    if (page->elements < 5 || page->element[page->elements - 1]->type != REDIS_REPLY_ARRAY)
        return 0;
    const redisReply *names = page->element[page->elements - 1];
    for (size_t i = 0; i < names->elements; i++)
        if (names->element[i]->type == REDIS_REPLY_STRING)
            keyset_add_lock(ks, names->element[i]->str, names->element[i]->len);
    return 1;
}

/* A waiter's hash and reply. */
static void add_waiter(struct keyset *ks, const char *id, size_t len)
{
    add_named(ks, "dl:waiter:", id, len, "");
    add_named(ks, "dl:wres:", id, len, "");
}

/* The waiter an acquire would queue: 'w' and 24 hex digits of the SHA-1 of
 * its token (acquire.lua's new_wid). */
static void add_new_waiter(struct keyset *ks, const char *token, size_t len)
{
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)token, len, md);
    char id[1 + 24 + 1];
    id[0] = 'w';
    for (int k = 0; k < 12; k++)
        snprintf(id + 1 + 2 * k, 3, "%02x", md[k]);
    add_waiter(ks, id, 25);
}

void keys_for_waiter(struct keyset *ks, const struct waiter_fact *w)
{
    add_waiter(ks, w->id, strlen(w->id));
    add_devices(ks, w->devices, strlen(w->devices));
    if (w->rid[0])
        keyset_add(ks, w->rid, strlen(w->rid));
    if (w->session[0])
        add_named(ks, "dl:sess:", w->session, strlen(w->session), "");
    if (w->broker[0]) {
        add_named(ks, "dl:broker:", w->broker, strlen(w->broker), "");
        add_named(ks, "dl:bwait:", w->broker, strlen(w->broker), "");
    }
}

void keys_for_call(struct keyset *ks, enum store_script script, int argc, char *const *argv,
                   const size_t *argvlen, const char *broker)
{
    for (size_t i = 0; i < NELEM(global_keys); i++)
        keyset_add(ks, global_keys[i], strlen(global_keys[i]));
    add_named(ks, "dl:broker:", broker, strlen(broker), "");
    add_named(ks, "dl:bwait:", broker, strlen(broker), "");
#define ARG(i) argv[i], argvlen[i]
    switch (script) {
    case SCRIPT_ACQUIRE: /* devices, token 5, idempotency key 12, session 14 ('=' S) */
        add_devices(ks, ARG(0));
        add_new_waiter(ks, ARG(4));
        if (argvlen[11] > 0)
            keyset_add(ks, ARG(11));
        if (argvlen[13] > 1)
            add_named(ks, "dl:sess:", argv[13] + 1, argvlen[13] - 1, "");
        break;
    case SCRIPT_RELEASE:
    case SCRIPT_RENEW:
    case SCRIPT_FORCE_RELEASE:
    case SCRIPT_DEVICE:
        add_device(ks, ARG(0));
        break;
    case SCRIPT_UNWAIT:
        add_waiter(ks, ARG(0));
        break;
    case SCRIPT_SESSION: /* mode, session, broker, ..., own session 8 (attach) */
        keyset_add(ks, "dl:brokerlost", 13);
        add_named(ks, "dl:bsess:", broker, strlen(broker), "");
        add_named(ks, "dl:sessown:", ARG(1), "");
        add_named(ks, "dl:sess:", ARG(1), "");
        add_named(ks, "dl:bsess:", ARG(2), "");
        if (argc >= 8 && argvlen[7] > 0) {
            add_named(ks, "dl:sessown:", ARG(7), "");
            add_named(ks, "dl:sess:", ARG(7), "");
        }
        break;
    case SCRIPT_CONF: /* triples: device, grace, delay */
        for (int i = 0; i + 2 < argc; i += 3)
            add_named(ks, "dl:{", ARG(i), "}:conf");
        break;
    case SCRIPT_RESERVE: /* devices, idempotency key 10 */
        keyset_add(ks, "dl:rsv:byend", 12);
        keyset_add(ks, "dl:rsv:seq", 10);
        add_devices(ks, ARG(0));
        if (argvlen[9] > 0)
            keyset_add(ks, ARG(9));
        break;
    case SCRIPT_RESERVATION: /* mode, id */
        keyset_add(ks, "dl:rsv:byend", 12);
        add_named(ks, "dl:rsv:", ARG(1), "");
        add_named(ks, "dl:waiter:b", ARG(1), "");
        add_named(ks, "dl:wres:b", ARG(1), "");
        break;
    case SCRIPT_RESERVATIONS: /* get: id; list: from dl:rsv:byend */
        keyset_add(ks, "dl:rsv:byend", 12);
        if (argc >= 2 && argvlen[0] == 3 && memcmp(argv[0], "get", 3) == 0)
            add_named(ks, "dl:rsv:", ARG(1), "");
        break;
    case SCRIPT_WEBHOOK: /* mode, names (status: all of them; else the first) */
        for (int i = 1; i < argc && (i == 1 || (argvlen[0] == 6 && memcmp(argv[0], "status", 6) == 0)); i++) {
            add_named(ks, "dl:wh:", ARG(i), ":owner");
            add_named(ks, "dl:wh:", ARG(i), ":state");
        }
        break;
    default: /* expire, snapshot, stats, events, resume: the global keys, then NEEDKEYS */
        break;
    }
#undef ARG
}
