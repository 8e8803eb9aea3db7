/* chunked.h - a reader of chunked request bodies (RFC 9112 §7.1).
 * libwebsockets 4.1 hands a chunked body over as it arrives on the wire,
 * framing included; this decodes it, bounded, without allocation of its
 * own. Strict: CRLF line ends, at most 16 hex digits, trailers skipped
 * (at most 8 KiB). */
#ifndef CHUNKED_H
#define CHUNKED_H

#include <stddef.h>

#include "lk_buf.h"

enum chunked_status { CHUNKED_MORE, CHUNKED_DONE, CHUNKED_BAD, CHUNKED_TOO_LARGE };

struct chunked {
    int state;
    int digits;
    unsigned long long left; /* bytes of the current chunk still to come */
    size_t trailer;          /* bytes of trailer lines so far */
};

void chunked_init(struct chunked *c);
/* Decodes in[0..len) into out, which may hold at most max bytes. Returns
 * CHUNKED_MORE (send more), CHUNKED_DONE (the last chunk and trailers are
 * read; bytes after them are not looked at), CHUNKED_BAD or
 * CHUNKED_TOO_LARGE; once it returned anything but MORE, it keeps
 * returning that. */
enum chunked_status chunked_feed(struct chunked *c, const char *in, size_t len, struct lk_buf *out, size_t max);

#endif
