/* Unit tests of the keys a call declares before it has run (server/keys.c):
 * the names must be the ones server/lua/prelude.lua builds, or every call
 * costs a NEEDKEYS round (tests/edges/keys.js measures that end to end). */
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "keys.h"

static int has(const struct keyset *ks, const char *k)
{
    for (int i = 0; i < ks->n; i++)
        if (ks->len[i] == strlen(k) && memcmp(ks->key[i], k, ks->len[i]) == 0)
            return 1;
    return 0;
}

static void declare(struct keyset *ks, enum store_script s, int argc, char **argv)
{
    size_t len[32];
    for (int i = 0; i < argc; i++)
        len[i] = strlen(argv[i]);
    keyset_init(ks);
    keys_for_call(ks, s, argc, argv, len, "B1");
}

static void acquire_names_its_keys(void)
{
    char *a[16] = {"m1,m{2}", "t", "2", "u", "6c1b", "0", "", "", "", "1000", "0",
                   "dl:rid:1:u:r9", "B1", "=S7", "0", "0"};
    struct keyset ks;
    declare(&ks, SCRIPT_ACQUIRE, 16, a);
    CHECK(has(&ks, "dl:held") && has(&ks, "dl:events") && has(&ks, "dl:expiry"));
    CHECK(has(&ks, "dl:broker:B1") && has(&ks, "dl:bwait:B1"));
    CHECK(has(&ks, "dl:{m1}:lock") && has(&ks, "dl:{m1}:waitq") && has(&ks, "dl:{m1}:rsv"));
    CHECK(has(&ks, "dl:{m{2}}:fence") && has(&ks, "dl:{m{2}}:delay") && has(&ks, "dl:{m{2}}:conf"));
    CHECK(has(&ks, "dl:rid:1:u:r9"));
    CHECK(has(&ks, "dl:sess:S7"));
    /* the waiter it would queue: 'w' and 24 hex digits of SHA-1(token) */
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)"6c1b", 4, md);
    char want[64] = "dl:waiter:w";
    for (int k = 0; k < 12; k++)
        snprintf(want + 11 + 2 * k, 3, "%02x", md[k]);
    CHECK(has(&ks, want));
    int n = ks.n;
    keys_for_call(&ks, SCRIPT_ACQUIRE, 16, a, (size_t[16]){7, 1, 1, 1, 4, 1, 0, 0, 0, 4, 1, 13, 2, 3, 1, 1}, "B1");
    CHECK(ks.n == n); /* named twice, declared once */
    keyset_free(&ks);
}

static void conf_and_webhooks(void)
{
    char *c[6] = {"d1", "0", "-1", "d2", "-1", "5"};
    struct keyset ks;
    declare(&ks, SCRIPT_CONF, 6, c);
    CHECK(has(&ks, "dl:{d1}:conf") && has(&ks, "dl:{d2}:conf"));
    keyset_free(&ks);
    char *st[3] = {"status", "h1", "h2"};
    declare(&ks, SCRIPT_WEBHOOK, 3, st);
    CHECK(has(&ks, "dl:wh:h1:owner") && has(&ks, "dl:wh:h2:state"));
    keyset_free(&ks);
    char *take[5] = {"take", "h1", "B1", "5000", "10"};
    declare(&ks, SCRIPT_WEBHOOK, 5, take);
    CHECK(has(&ks, "dl:wh:h1:owner") && !has(&ks, "dl:wh:B1:owner"));
    keyset_free(&ks);
}

/* The fast paths (prelude.lua fast_keys, docs/design.md "Fast paths") find a
 * one-device call's keys by place: the global keys, the broker's two, then
 * the device's six in DEVICE_KEYS order. (They compare, so another order
 * would cost speed, not safety: every call would take its general path.) */
static int at(const struct keyset *ks, int i, const char *k)
{
    return i < ks->n && ks->len[i] == strlen(k) && memcmp(ks->key[i], k, ks->len[i]) == 0;
}

static void one_device_keys_at_their_places(void)
{
    static const char *const places[] = {"dl:held", "dl:expiry", "dl:events", "dl:seq", "dl:stats",
                                         "dl:sessbrokers", "dl:broker:B1", "dl:bwait:B1", "dl:{f1}:lock",
                                         "dl:{f1}:fence", "dl:{f1}:waitq", "dl:{f1}:delay", "dl:{f1}:conf",
                                         "dl:{f1}:rsv"};
    char *a[16] = {"f1", "t", "2", "u", "6c1b", "0", "", "", "", "1000", "0", "", "B1", "", "0", "0"};
    char *r[6] = {"f1", "6c1b", "u", "1000", "0", ""};
    struct keyset ks;
    declare(&ks, SCRIPT_ACQUIRE, 16, a);
    for (int i = 0; i < 14; i++)
        CHECK(at(&ks, i, places[i]));
    keyset_free(&ks);
    declare(&ks, SCRIPT_RELEASE, 6, r);
    CHECK(ks.n == 14);
    for (int i = 0; i < 14; i++)
        CHECK(at(&ks, i, places[i]));
    keyset_free(&ks);
}

int main(void)
{
    RUN(acquire_names_its_keys);
    RUN(one_device_keys_at_their_places);
    RUN(conf_and_webhooks);
    DONE();
}
