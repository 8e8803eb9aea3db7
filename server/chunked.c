/* chunked.c - chunked request bodies; see chunked.h. */
#include "chunked.h"

enum { SIZE, EXT, SIZE_LF, DATA, DATA_CR, DATA_LF, TRAILER_START, TRAILER, TRAILER_LF, END_LF,
       S_DONE, S_BAD, S_TOO_LARGE };

#define MAX_TRAILER 8192

void chunked_init(struct chunked *c)
{
    c->state = SIZE;
    c->digits = 0;
    c->left = 0;
    c->trailer = 0;
}

static int hex(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static enum chunked_status status_of(int state)
{
    return state == S_DONE ? CHUNKED_DONE : state == S_BAD ? CHUNKED_BAD
         : state == S_TOO_LARGE ? CHUNKED_TOO_LARGE : CHUNKED_MORE;
}

enum chunked_status chunked_feed(struct chunked *c, const char *in, size_t len, struct lk_buf *out, size_t max)
{
    size_t i = 0;
    while (i < len && c->state < S_DONE) {
        char ch = in[i];
        switch (c->state) {
        case SIZE: {
            int v = hex(ch);
            if (v >= 0) {
                if (++c->digits > 16) {
                    c->state = S_BAD;
                    break;
                }
                c->left = c->left << 4 | (unsigned)v;
                if (c->left > max) {
                    c->state = S_TOO_LARGE;
                    break;
                }
            } else if (c->digits && (ch == ';' || ch == ' ' || ch == '\t')) {
                c->state = EXT;
            } else if (c->digits && ch == '\r') {
                c->state = SIZE_LF;
            } else {
                c->state = S_BAD;
            }
            i++;
            break;
        }
        case EXT: /* chunk extensions are ignored */
            if (ch == '\r')
                c->state = SIZE_LF;
            else if (ch == '\n' || ++c->trailer > MAX_TRAILER)
                c->state = S_BAD;
            i++;
            break;
        case SIZE_LF:
            c->state = ch != '\n' ? S_BAD : c->left ? DATA : TRAILER_START;
            i++;
            break;
        case DATA: {
            size_t n = len - i < c->left ? len - i : (size_t)c->left;
            if (out->len + n > max) {
                c->state = S_TOO_LARGE;
                break;
            }
            lk_buf_append(out, in + i, n);
            i += n;
            c->left -= n;
            if (!c->left)
                c->state = DATA_CR;
            break;
        }
        case DATA_CR:
            c->state = ch == '\r' ? DATA_LF : S_BAD;
            i++;
            break;
        case DATA_LF:
            c->state = ch == '\n' ? SIZE : S_BAD;
            c->digits = 0;
            i++;
            break;
        case TRAILER_START:
            c->state = ch == '\r' ? END_LF : ch == '\n' ? S_BAD : TRAILER;
            i++;
            break;
        case TRAILER:
            if (ch == '\r')
                c->state = TRAILER_LF;
            else if (ch == '\n')
                c->state = S_BAD;
            i++;
            break;
        case TRAILER_LF:
            c->state = ch == '\n' ? TRAILER_START : S_BAD;
            i++;
            break;
        case END_LF:
            c->state = ch == '\n' ? S_DONE : S_BAD;
            i++;
            break;
        }
        if ((c->state == TRAILER || c->state == TRAILER_START) && ++c->trailer > MAX_TRAILER)
            c->state = S_BAD;
    }
    return status_of(c->state);
}
