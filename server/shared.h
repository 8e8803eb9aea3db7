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

/* An answer or frame written from several pieces (its own bytes, a shared
 * listing, more of its own): bytes [off, off + n) of their concatenation
 * into dst, which has room for n. */
struct piece {
    const void *p;
    size_t len;
};
void pieces_copy(const struct piece *pc, size_t npieces, size_t off, size_t n, unsigned char *dst);

#endif
