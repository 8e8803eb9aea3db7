/* shared.h - an immutable, reference-counted byte string: built once
 * (the status answer of one version of the lock table), then read by
 * every request and WebSocket session that sends it. Single-threaded
 * (the broker's loop): the count is a plain int. */
#ifndef SHARED_H
#define SHARED_H

#include <stddef.h>

struct lk_buf;

struct shared {
    int refs;
    size_t len;
    char data[];    /* len bytes, then a NUL */
};

/* A new string holding a copy of b's data, with one reference. */
struct shared *shared_from_buf(const struct lk_buf *b);
/* Another reference to s (NULL stays NULL). */
struct shared *shared_ref(struct shared *s);
/* Drops a reference; the last one frees s. NULL is accepted. */
void shared_unref(struct shared *s);

#endif
