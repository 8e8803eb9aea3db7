/* lk_buf.h - a growable byte buffer, the one way devlock builds output.
 *
 * A buffer may reserve `pre` bytes of headroom in front of the data (the
 * LWS_PRE room libwebsockets needs before a frame). lk_buf functions abort
 * through lk_xmalloc on out-of-memory in the server; the client library
 * checks `oom` instead (set once, sticky: later appends do nothing). */
#ifndef LK_BUF_H
#define LK_BUF_H

#include <stddef.h>
#include <stdint.h>

struct lk_buf {
    char *mem;      /* allocation: pre bytes of headroom, then data */
    size_t pre;     /* headroom before data */
    size_t len;     /* bytes of data */
    size_t cap;     /* bytes allocated after the headroom */
    int oom;        /* sticky allocation failure */
};

void lk_buf_init(struct lk_buf *b, size_t pre);
void lk_buf_free(struct lk_buf *b);
void lk_buf_reset(struct lk_buf *b);
/* Pointer to the data (after the headroom); always NUL-terminated. */
static inline char *lk_buf_data(const struct lk_buf *b) { return b->mem ? b->mem + b->pre : (char *)""; }
void lk_buf_append(struct lk_buf *b, const void *p, size_t n);
void lk_buf_puts(struct lk_buf *b, const char *s);
void lk_buf_putc(struct lk_buf *b, char c);
void lk_buf_printf(struct lk_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string literal with quotes; NULL gives null. */
void lk_buf_json_str(struct lk_buf *b, const char *s);
void lk_buf_json_strn(struct lk_buf *b, const char *s, size_t n);
/* The same as Lua's cjson.encode writes it ("/" is "\/", DEL "\u007f"),
 * for answers that must match a script's bytes (mirror.c's device answer). */
void lk_buf_cjson_str(struct lk_buf *b, const char *s);
/* Hands the memory over to the caller (free with free()); the buffer is empty after. */
char *lk_buf_steal(struct lk_buf *b, size_t *len);

#endif
