/* libFuzzer target: what a broker sends to the client library's WebSocket
 * transport (client/lc_ws.c): the upgrade answer (lc_ws_parse_upgrade) and
 * the frames after it (lc_ws_decode), fed in pieces of varying size.
 *
 * Input: one control byte, then the bytes from the network.
 *   bit 0-1   piece size: 1, 7, 4096 bytes, or all at once
 *   bit 2     the input starts with the upgrade answer (parsed first; the
 *             decoder gets what follows it), else it is frames only
 *   bit 4-7   max_message = 16 << n bytes
 * Checked beyond "no crash": a message handed out is never larger than
 * max_message, a control payload never larger than 125 bytes, a close code
 * is one RFC 6455 allows on the wire, and after an error the decoder is
 * not called again (as lc_ws.c does). Built by the Makefile with the
 * library's lc_ws.c and common/ only (no server objects). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lc_ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* lc_ws.c's few dependencies in the library (lc_lease.c, lc_opts.c,
 * lc_client.c); the parsers do not call them. */
int64_t lc__mono_us(void) { return 0; }
const char *lc__ca_file(const struct lc_opts *o) { (void)o; return NULL; }
const char *lc__ca_path(const struct lc_opts *o) { (void)o; return NULL; }
char *lc__strdup(const char *s) { return s ? strdup(s) : NULL; }

struct seen { size_t max; };

static void on_message(const char *d, size_t n, int binary, void *ud)
{
    struct seen *s = ud;
    (void)binary;
    if (n > s->max || d[n] != '\0')     /* lk_buf keeps its data NUL-terminated */
        __builtin_trap();
}

static void on_ctl(const char *d, size_t n, void *ud)
{
    (void)d;
    (void)ud;
    if (n > 125)
        __builtin_trap();
}

static void on_close(int code, const char *reason, size_t n, void *ud)
{
    (void)reason;
    (void)ud;
    if (n > 123 || (code != 1005 && (code < 1000 || code > 4999)))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned ctl = data[0];
    data++;
    size--;
    static const size_t pieces[] = {1, 7, 4096, (size_t)-1};
    size_t piece = pieces[ctl & 3];
    size_t max = (size_t)16 << (ctl >> 4);
    const unsigned char *in = data;
    size_t len = size;
    if (ctl & 4) {
        int status = 0, accept_ok = 0;
        long hl = lc_ws_parse_upgrade((const char *)data, size, "dGhlIHNhbXBsZSBub25jZQ==", &status,
                                      &accept_ok);
        if (hl <= 0)
            return 0;
        if ((size_t)hl > size || status < 0 || status > 999)
            __builtin_trap();
        in += hl;
        len -= (size_t)hl;
    }
    struct seen s = {max};
    struct lc_ws_decoder d;
    lc_ws_decoder_init(&d, max);
    struct lc_ws_frame_cb cb = {on_message, on_ctl, on_ctl, on_close, &s};
    int code = 0;
    while (len) {
        size_t n = len < piece ? len : piece;
        if (lc_ws_decode(&d, in, n, &cb, &code)) {
            if (code != 1002 && code != 1009 && code != 1011)
                __builtin_trap();
            break;
        }
        in += n;
        len -= n;
    }
    lc_ws_decoder_free(&d);
    return 0;
}
