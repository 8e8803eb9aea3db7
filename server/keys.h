/* keys.h - the Redis keys a script call declares (its KEYS).
 *
 * Redis Cluster's rule is that every key a script touches is one of its
 * KEYS. The broker names what it can from the call itself: the global
 * keys, this broker's own, and those of the devices, request, waiter,
 * session, booking or webhook the call's ARGV names (keys_for_call). What
 * follows from the data (a queue's waiters, a holder's session, a group's
 * other devices) the script finds itself, before its first write, and asks
 * for with a NEEDKEYS answer; store.c then resends the call with them
 * (docs/design.md "Keys declared"). Key names here must be the ones
 * server/lua/prelude.lua builds. */
#ifndef KEYS_H
#define KEYS_H

#include <stddef.h>

#include "event.h"
#include "store.h"

struct keyset {
    char **key;
    size_t *len;
    int n, cap;
};

void keyset_init(struct keyset *ks);
void keyset_free(struct keyset *ks);
/* Adds key (len bytes) unless it is there already. */
void keyset_add(struct keyset *ks, const char *key, size_t len);
/* Adds key without looking for it first (a NEEDKEYS answer names only
 * keys the call did not have). */
void keyset_append(struct keyset *ks, const char *key, size_t len);

/* The lock key of a device (a page of locks to read). */
void keyset_add_lock(struct keyset *ks, const char *dev, size_t len);
/* A snapshot.lua 'page' reply ends with the next page's devices when more
 * remain: their lock keys into ks; 1 if it does (that last element is not
 * a lock), else 0. */
int keys_next_page(struct keyset *ks, const redisReply *page);

/* The keys a call of script with these ARGV declares before it has run;
 * broker: this broker's id. */
void keys_for_call(struct keyset *ks, enum store_script script, int argc, char *const *argv,
                   const size_t *argvlen, const char *broker);

/* The keys a call that may serve this queued waiter touches of it: its
 * hash and reply, its idempotency key, session, broker, and its devices'. */
void keys_for_waiter(struct keyset *ks, const struct waiter_fact *w);

#endif
