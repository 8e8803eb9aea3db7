/* net.h - lockbench's client side of the wire: many non-blocking loopback
 * connections on one epoll set, speaking HTTP/1.1 keep-alive or WebSocket
 * (RFC 6455: handshake, masked client frames, unmasked server frames).
 *
 * One thread only. Callbacks run from net_poll(); a callback may send on
 * any connection or close its own (the dispatcher checks the state after
 * each callback). Connections are owned by the caller (usually an array);
 * net_close() releases their buffers but not the struct. */
#ifndef BENCH_NET_H
#define BENCH_NET_H

#include <stddef.h>
#include <stdint.h>

#include "lk_buf.h"

struct conn;

struct net_ops {
    /* HTTP: connected; WebSocket: 101 received and Sec-WebSocket-Accept checked. */
    void (*open)(struct conn *c);
    /* One complete HTTP response (body borrowed for the call). */
    void (*http)(struct conn *c, int status, const char *body, size_t len);
    /* One complete WebSocket text or binary message (borrowed for the call). */
    void (*ws)(struct conn *c, const char *msg, size_t len);
    /* The connection ended (by us, the peer, or an error); why is static text. */
    void (*closed)(struct conn *c, const char *why);
};

enum net_proto { NET_HTTP, NET_WS };
enum net_state { NET_IDLE, NET_CONNECTING, NET_UPGRADING, NET_OPEN, NET_CLOSED };

struct conn {
    int fd;
    enum net_proto proto;
    enum net_state state;
    const struct net_ops *ops;
    void *user;             /* the scenario's per-connection state, borrowed */
    struct lk_buf out;      /* bytes not yet written */
    size_t out_off;
    int want_out;           /* EPOLLOUT registered */
    char *in;               /* bytes read but not yet parsed (only a partial message) */
    size_t in_len, in_cap;
    struct lk_buf frag;     /* WebSocket message being reassembled from fragments */
    char accept[32];        /* expected Sec-WebSocket-Accept */
};

/* What was exchanged since net_stats_reset(), over every connection. */
struct net_stats {
    long http_in;           /* complete HTTP responses received */
    long ws_in, ws_out;     /* WebSocket frames received / sent (control frames too) */
};
extern struct net_stats net_stats;
void net_stats_reset(void);

/* Monotonic clock in nanoseconds. */
int64_t net_now_ns(void);
/* Sets the server address (IPv4 or IPv6 literal) and creates the epoll set; -1 on error. */
int net_init(const char *host, int port);
/* Starts a non-blocking connect; failures arrive through ops->closed. */
void net_connect(struct conn *c, enum net_proto proto, const struct net_ops *ops, void *user);
/* Sends one HTTP/1.1 request; body may be NULL (then Content-Length: 0 for POST). */
void net_http(struct conn *c, const char *method, const char *path, const char *body);
/* Sends one masked WebSocket text frame. */
void net_ws_text(struct conn *c, const char *text, size_t len);
/* Closes the socket, frees the buffers, calls ops->closed once. */
void net_close(struct conn *c, const char *why);
/* Waits up to timeout_ms for events and dispatches them; returns the number handled. */
int net_poll(int timeout_ms);

#endif
