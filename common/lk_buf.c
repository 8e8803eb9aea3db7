#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lk_buf.h"

void lk_buf_init(struct lk_buf *b, size_t pre)
{
    memset(b, 0, sizeof(*b));
    b->pre = pre;
}

void lk_buf_free(struct lk_buf *b)
{
    free(b->mem);
    lk_buf_init(b, b->pre);
}

void lk_buf_reset(struct lk_buf *b)
{
    b->len = 0;
    if (b->mem)
        b->mem[b->pre] = '\0';
}

static int reserve(struct lk_buf *b, size_t extra)
{
    if (b->oom)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *m = realloc(b->mem, b->pre + cap);
    if (!m) {
        b->oom = 1;
        return -1;
    }
    b->mem = m;
    b->cap = cap;
    return 0;
}

void lk_buf_append(struct lk_buf *b, const void *p, size_t n)
{
    if (reserve(b, n))
        return;
    memcpy(b->mem + b->pre + b->len, p, n);
    b->len += n;
    b->mem[b->pre + b->len] = '\0';
}

void lk_buf_puts(struct lk_buf *b, const char *s) { lk_buf_append(b, s, strlen(s)); }
void lk_buf_putc(struct lk_buf *b, char c) { lk_buf_append(b, &c, 1); }

void lk_buf_printf(struct lk_buf *b, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(small)) {
        lk_buf_append(b, small, (size_t)n);
        return;
    }
    if (reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->mem + b->pre + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* One escaper for both spellings: ours, and Lua cjson's (lua), which also
 * escapes "/" and DEL and names \b and \f. Bytes from 0x80 pass as they are
 * in both. */
static void json_escape(struct lk_buf *b, const char *s, size_t n, int lua)
{
    static const char hex[] = "0123456789abcdef";
    lk_buf_putc(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && !(lua && (c == '/' || c == 0x7f)))
            continue;
        lk_buf_append(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': lk_buf_puts(b, "\\\""); break;
        case '\\': lk_buf_puts(b, "\\\\"); break;
        case '/': lk_buf_puts(b, "\\/"); break;
        case '\n': lk_buf_puts(b, "\\n"); break;
        case '\r': lk_buf_puts(b, "\\r"); break;
        case '\t': lk_buf_puts(b, "\\t"); break;
        case '\b':
        case '\f':
            if (lua) {
                lk_buf_puts(b, c == '\b' ? "\\b" : "\\f");
                break;
            }
            /* fall through */
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            lk_buf_append(b, u, 6);
        }
        }
    }
    lk_buf_append(b, s + run, n - run);
    lk_buf_putc(b, '"');
}

void lk_buf_json_strn(struct lk_buf *b, const char *s, size_t n) { json_escape(b, s, n, 0); }

void lk_buf_cjson_str(struct lk_buf *b, const char *s) { json_escape(b, s, strlen(s), 1); }

void lk_buf_json_str(struct lk_buf *b, const char *s)
{
    if (!s)
        lk_buf_puts(b, "null");
    else
        lk_buf_json_strn(b, s, strlen(s));
}

char *lk_buf_steal(struct lk_buf *b, size_t *len)
{
    if (!b->mem)
        lk_buf_append(b, "", 0);
    if (b->oom) {
        lk_buf_free(b);
        return NULL;
    }
    char *m = b->mem;
    if (b->pre)
        memmove(m, m + b->pre, b->len + 1);
    if (len)
        *len = b->len;
    b->mem = NULL;
    b->len = b->cap = 0;
    return m;
}
