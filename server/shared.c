/* shared.c - see shared.h. */
#include <string.h>
#include <stdlib.h>

#include "lk_buf.h"
#include "lk_mem.h"
#include "shared.h"

struct shared *shared_from_buf(const struct lk_buf *b)
{
    struct shared *s = lk_xmalloc(sizeof(*s) + b->len + 1);
    s->refs = 1;
    s->len = b->len;
    memcpy(s->data, lk_buf_data(b), b->len);
    s->data[b->len] = '\0';
    return s;
}

struct shared *shared_ref(struct shared *s)
{
    if (s)
        s->refs++;
    return s;
}

void shared_unref(struct shared *s)
{
    if (s && --s->refs == 0)
        free(s);
}

void pieces_copy(const struct piece *pc, size_t npieces, size_t off, size_t n, unsigned char *dst)
{
    for (size_t i = 0; i < npieces && n; i++) {
        if (off >= pc[i].len) {
            off -= pc[i].len;
            continue;
        }
        size_t k = pc[i].len - off < n ? pc[i].len - off : n;
        memcpy(dst, (const char *)pc[i].p + off, k);
        dst += k;
        n -= k;
        off = 0;
    }
}
