/* libFuzzer target: what a broker sends to the client library's WebSocket
 * transport (client/lc_ws.c).
 *
 * Input: one control byte, then the bytes from the network.
 * Parsers alone (bit 3 clear): the upgrade answer (lc_ws_parse_upgrade)
 * and the frames after it (lc_ws_decode), fed in pieces:
 *   bit 0-1   piece size: 1, 7, 4096 bytes, or all at once
 *   bit 2     the input starts with the upgrade answer (parsed first; the
 *             decoder gets what follows it), else it is frames only
 *   bit 4-7   max_message = 16 << n bytes
 * Checked beyond "no crash": a message handed out is never larger than
 * max_message, a control payload never larger than 125 bytes, a close code
 * is one RFC 6455 allows on the wire, an error code is 1002/1009/1011.
 * Whole connection (bit 3 set): a real lc_ws connects over loopback to a
 * listener of this process, which answers the upgrade and sends the bytes
 * (bit 2: the bytes are the whole answer, "@@" replaced by the right
 * Sec-WebSocket-Accept; else a correct 101 comes first); lc_ws_process runs
 * until on_close. bits 0-1 choose what on_text does: nothing, send an
 * answer, lc_ws_close at the second message, lc_ws_free at once. on_close
 * must run exactly once (unless freed), and nothing may leak.
 * Built by the Makefile with the library's lc_ws.c and common/ only (no
 * server objects). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "lc_ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* lc_ws.c's few dependencies in the library (lc_lease.c, lc_opts.c,
 * lc_client.c); the parsers do not call them. */
int64_t lc__mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
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

/* ---- whole connection ---------------------------------------------------------- */

static int listen_fd = -1;
static char listen_url[64];

struct run {
    struct lc_ws *ws;
    int mode, texts, closes, freed;
};

static void r_open(void *ud) { (void)ud; }

static void r_text(const char *d, size_t n, void *ud)
{
    struct run *r = ud;
    r->texts++;
    switch (r->mode) {
    case 1:
        lc_ws_send_text(r->ws, d, n < 100 ? n : 100);
        break;
    case 2:
        if (r->texts == 2)
            lc_ws_close(r->ws);
        break;
    case 3:
        if (!r->freed) {
            lc_ws_free(r->ws);
            r->freed = 1;
        }
        break;
    }
}

static void r_close(lc_status st, int permanent, const char *why, void *ud)
{
    struct run *r = ud;
    (void)st;
    (void)permanent;
    if (!why || r->freed)
        __builtin_trap();
    r->closes++;
}

static void connection(unsigned ctl, const uint8_t *data, size_t size)
{
    if (listen_fd < 0) {
        listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t sl = sizeof(a);
        if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&a, sizeof(a)) || listen(listen_fd, 16) ||
            getsockname(listen_fd, (struct sockaddr *)&a, &sl))
            abort();
        snprintf(listen_url, sizeof(listen_url), "http://127.0.0.1:%d/p", ntohs(a.sin_port));
    }
    struct run r = {0};
    r.mode = ctl & 3;
    struct lc_opts o;
    memset(&o, 0, sizeof(o));
    o.timeout_ms = 1000;
    struct lc_ws_cfg cfg = {listen_url, "/ws", &o, (size_t)16 << (ctl >> 4), 0, 0};
    struct lc_ws_handler h = {r_open, r_text, r_close, &r};
    char why[256];
    if (lc_ws_open(&cfg, &h, &r.ws, why, sizeof(why)) != LC_OK)
        abort();
    int s = accept(listen_fd, NULL, NULL);
    if (s < 0)
        abort();
    struct timeval tv = {1, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    /* the GET goes out once the connect is seen */
    char req[4096];
    size_t n = 0;
    char *end = NULL;
    for (int i = 0; i < 100 && !end && n < sizeof(req) - 1; i++) {
        struct pollfd p = {lc_ws_fd(r.ws), lc_ws_events(r.ws), 0};
        poll(&p, 1, 10);
        lc_ws_process(r.ws, p.revents);
        ssize_t got = recv(s, req + n, sizeof(req) - 1 - n, MSG_DONTWAIT);
        if (got > 0)
            n += (size_t)got;
        req[n] = '\0';
        end = strstr(req, "\r\n\r\n");
    }
    if (!end)
        abort();
    char key[64] = "", cat[128], acc[64];
    const char *k = strstr(req, "Sec-WebSocket-Key: ");
    if (!k || sscanf(k + 19, "%63[^\r]", key) != 1)
        abort();
    snprintf(cat, sizeof(cat), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    EVP_Digest(cat, strlen(cat), md, &ml, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)acc, md, (int)ml);
    struct lk_buf ans;
    lk_buf_init(&ans, 0);
    if (ctl & 4) {
        for (size_t i = 0; i < size; i++) {
            if (i + 1 < size && data[i] == '@' && data[i + 1] == '@') {
                lk_buf_puts(&ans, acc);
                i++;
            } else {
                lk_buf_putc(&ans, (char)data[i]);
            }
        }
    } else {
        lk_buf_printf(&ans, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", acc);
        lk_buf_append(&ans, data, size);
    }
    /* written from here while the client reads: no deadlock on a full buffer */
    size_t off = 0;
    int shut = 0;
    for (int i = 0; i < 2000 && !r.closes && !r.freed; i++) {
        if (off < ans.len) {
            ssize_t w = send(s, lk_buf_data(&ans) + off, ans.len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                off += (size_t)w;
        } else if (!shut) {
            shutdown(s, SHUT_WR);
            shut = 1;
        }
        char sink[4096];
        while (recv(s, sink, sizeof(sink), MSG_DONTWAIT) > 0)
            ;
        struct pollfd p = {lc_ws_fd(r.ws), lc_ws_events(r.ws), 0};
        int pr = poll(&p, p.fd >= 0 ? 1 : 0, shut ? 5 : 0);
        lc_ws_process(r.ws, pr > 0 ? p.revents : 0);
    }
    if (!r.freed && !r.closes) {
        /* still open after everything was sent (and our side shut): it
         * must see the end of the stream; give up only for lc_ws_close's wait */
        close(s);
        s = -1;
        for (int i = 0; i < 400 && !r.closes; i++) {
            struct pollfd p = {lc_ws_fd(r.ws), lc_ws_events(r.ws), 0};
            int pr = poll(&p, p.fd >= 0 ? 1 : 0, 10);
            lc_ws_process(r.ws, pr > 0 ? p.revents : 0);
        }
        if (!r.closes)
            __builtin_trap();
    }
    if (r.closes > 1)
        __builtin_trap();
    if (!r.freed)
        lc_ws_free(r.ws);
    if (s >= 0)
        close(s);
    lk_buf_free(&ans);
}

/* ---- the parsers alone ---------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned ctl = data[0];
    data++;
    size--;
    if (ctl & 8) {
        connection(ctl, data, size);
        return 0;
    }
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
