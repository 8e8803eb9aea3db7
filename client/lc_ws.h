/* lc_ws.h - one non-blocking WebSocket client connection (RFC 6455) to the
 * broker's /ws, plain TCP or TLS (OpenSSL), for the library's event loop
 * (lc_loop.c). Not installed.
 *
 * The library does not use libwebsockets for this: Debian's libwebsockets
 * 4.1 is built without LWS_WITH_EXTERNAL_POLL, so it cannot be driven from
 * a program's own poll loop, and it changes process-wide state (its log
 * level). libcurl 7.88 has no WebSocket support.
 *
 * Life of a connection: lc_ws_open() resolves the name (blocking, as
 * getaddrinfo is) and starts a non-blocking connect; the owner waits on
 * lc_ws_fd() for lc_ws_events() (or until lc_ws_timer_us()) and calls
 * lc_ws_process() when it is ready or due. The handler's callbacks run only
 * inside lc_ws_process(). on_close runs exactly once, for every way a
 * connection ends except lc_ws_free(); after it the owner may only free. */
#ifndef LC_WS_H
#define LC_WS_H

#include <stddef.h>
#include <stdint.h>

#include "lc_internal.h"

struct lc_ws;

struct lc_ws_cfg {
    const char *url;            /* the broker's http(s)://host:port[/prefix] */
    const char *path;           /* appended to the URL's prefix: "/ws" or "/ws?since=ID" */
    const struct lc_opts *opts; /* token, TLS files, timeout_ms (connect + handshake) */
    size_t max_message;         /* largest message accepted (close 1009 beyond); 0: 16 MiB */
    long ping_after_ms;         /* ping after this much silence; 0: 10000 */
    long dead_after_ms;         /* close after this much silence; 0: 20000 */
};

struct lc_ws_handler {
    /* The upgrade succeeded; messages may be sent. */
    void (*on_open)(void *ud);
    /* One whole text message (fragments joined). data borrowed for the call. */
    void (*on_text)(const char *data, size_t len, void *ud);
    /* The connection ended: st is LC_OK for a close the owner asked for or
     * the broker sent (code 1000/1001), else LC_ERR_UNAVAILABLE (refused,
     * reset, 503), LC_ERR_TIMEOUT (connect/handshake/silence),
     * LC_ERR_UNAUTHORIZED / LC_ERR_FORBIDDEN (401/403 on the upgrade:
     * permanent), LC_ERR_TLS (permanent), LC_ERR_PROTOCOL, LC_ERR_NOMEM.
     * why: a sentence for the error callback ("TLS: certificate verify
     * failed: ...", "connect to 127.0.0.1:60620: Connection refused").
     * A close frame from the broker: 1000/1001/none -> LC_OK; 1002, 1003,
     * 1007, 1009, 1010 -> LC_ERR_PROTOCOL; others (1008 slow client, 1011
     * ...) -> LC_ERR_UNAVAILABLE; the code is in why. A bad frame or a
     * message over max_message from the broker: LC_ERR_PROTOCOL (we send
     * close 1002 / 1009 first). The owner may call lc_ws_free from any
     * callback, on_close included (the free is deferred until
     * lc_ws_process returns; no callback runs after it). */
    void (*on_close)(lc_status st, int permanent, const char *why, void *ud);
    void *ud;
};

/* Starts a connection. On failure (bad URL, resolution, no memory, TLS
 * setup such as an unreadable CA file) returns the status and fills why;
 * no callback runs. */
lc_status lc_ws_open(const struct lc_ws_cfg *cfg, const struct lc_ws_handler *h,
                     struct lc_ws **out, char *why, size_t why_len);
/* The socket; -1 once closed. It may change while connecting: each
 * address of the name gets its own socket, made before the previous one
 * is closed, so its number always differs from the one it replaces (an
 * epoll owner that re-registers when the number changes stays right). */
int lc_ws_fd(const struct lc_ws *ws);
/* The poll events wanted now: POLLIN, plus POLLOUT while connecting or
 * while output waits (TLS may want either direction at any time). */
short lc_ws_events(const struct lc_ws *ws);
/* The next time (lc__mono_us) lc_ws_process must run without I/O: connect
 * or handshake deadline, ping due, silence limit. 0: none. */
int64_t lc_ws_timer_us(const struct lc_ws *ws);
/* Does the I/O that revents allows (0: timers only) and what is due. */
void lc_ws_process(struct lc_ws *ws, short revents);
/* 1 once on_open ran and until the connection ends. */
int lc_ws_is_open(const struct lc_ws *ws);
/* Queues one text message (copied). LC_ERR_IO when not open,
 * LC_ERR_TOO_LARGE when more than 16 MiB would wait, LC_ERR_NOMEM. */
lc_status lc_ws_send_text(struct lc_ws *ws, const char *data, size_t len);
/* Starts a closing handshake (code 1000); on_close follows with LC_OK. */
void lc_ws_close(struct lc_ws *ws);
/* Frees at once (no callback). NULL: no-op. */
void lc_ws_free(struct lc_ws *ws);

/* ---- the parsers, exposed for tests/fuzz/fuzz_client_ws.c --------------
 * Incremental server-frame decoder. Feed bytes; each complete message or
 * control frame goes to the callbacks. Returns 0, or -1 with a close code
 * (1002 protocol, 1007 bad UTF-8 is not checked, 1009 too big, 1011 out of
 * memory) in *code. A callback may set d->halt: the rest is not decoded. */
struct lc_ws_decoder {
    size_t max_message;
    unsigned char hdr[14];
    size_t hdr_len;
    uint64_t need;              /* payload bytes still to come in this frame */
    int opcode, fin, in_message;
    struct lk_buf msg;          /* message being assembled */
    struct lk_buf ctl;          /* control frame being assembled */
    /* (added with lc_ws.c) */
    int in_payload;             /* the header is complete; need bytes follow */
    int msg_binary;             /* the message's first frame was binary */
    int halt;                   /* set by a callback: lc_ws_decode stops, returns 0 */
};
struct lc_ws_frame_cb {
    void (*message)(const char *data, size_t len, int binary, void *ud);
    void (*ping)(const char *data, size_t len, void *ud);
    void (*pong)(const char *data, size_t len, void *ud);
    void (*close)(int code, const char *reason, size_t len, void *ud);
    void *ud;
};
void lc_ws_decoder_init(struct lc_ws_decoder *d, size_t max_message);
void lc_ws_decoder_free(struct lc_ws_decoder *d);
int lc_ws_decode(struct lc_ws_decoder *d, const unsigned char *in, size_t len,
                 const struct lc_ws_frame_cb *cb, int *code);
/* Parses the upgrade answer in buf[0..len). Returns 0 while incomplete,
 * else the header length, with *http_status set and *accept_ok 1 when
 * Sec-WebSocket-Accept matches key; -1 when malformed. */
long lc_ws_parse_upgrade(const char *buf, size_t len, const char *key, int *http_status,
                         int *accept_ok);

#endif
