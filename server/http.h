/* http.h - the HTTP JSON API and the dashboard's static files. */
#ifndef HTTP_H
#define HTTP_H

#include <libwebsockets.h>

#include "lk_buf.h"
#include "auth.h"
#include "chunked.h"
#include "locks.h"
#include "reservations.h"

/* The largest single lws_write of http.c (headers and a 16 KB chunk) and
 * ws.c (a 16 KB fragment and its frame header): the protocol's
 * tx_packet_size (main.c). Left 0, lws caps each send() at rx_buffer_size
 * (4 KB) and copies the rest of every write into a buffer of its own, to
 * be sent from later loop turns. */
#define HTTP_SEND_MAX (16384 + 1024)

/* Per-connection state of an HTTP connection (keep-alive: reused by each
 * transaction on it). */
struct webhooks_status_call;

struct http_req {
    int kind;                 /* PSS_HTTP once used (shared first member with ws_session) */
    struct lws *wsi;
    int method;               /* LWSHUMETH_* */
    char path[256];
    struct lk_buf body;
    int body_over;            /* body exceeded --max-body */
    int waiting_body;
    struct locks_call *call;  /* in flight; cancelled if the client leaves */
    struct rsv_call *rcall;   /* a booking call in flight (the same) */
    int ics;                  /* the answer is the calendar feed */
    struct webhooks_status_call *webhooks_call; /* GET /api/webhooks in flight */
    long long started_us;
    int authed;               /* auth on: the token was valid */
    struct auth_user user;
    int status;
    const char *ctype;
    struct shared *head;      /* a shared first part of the answer, or NULL */
    struct lk_buf resp;       /* JSON answer (after head) */
    const char *static_data;  /* or an embedded file */
    size_t static_len;
    size_t sent;
    size_t sndbuf;            /* SO_SNDBUF set for a large answer (0: the kernel's) */
    int headers_sent, answered, close_after;
    int chunked;              /* the body comes with Transfer-Encoding: chunked */
    struct chunked chunk;
    int zero_body;            /* "Content-Length: 0": one BODY_COMPLETION still to come */
    int rx_paused;            /* input held back while an answer is pending */
    long body_repeats;        /* BODY_COMPLETION calls after the first */
    int linger_wait;          /* closing: waiting for lws to flush the answer */
    int lingering;            /* closing: write side shut, input discarded */
    long long linger_until_us;
    size_t linger_bytes;
};

/* The connection limit: every accepted socket is counted until destroyed. */
void http_connection_opened(struct lws *wsi);
void http_connection_closed(struct lws *wsi);
int http_over_limit(struct lws *wsi);
int http_connection_count(void);

/* The first member of both per-connection structs says which one it is. */
enum { PSS_UNUSED, PSS_HTTP, PSS_WS };

/* Answers a refused WebSocket upgrade at once, from its filter callback:
 * the status of s with {"detail","error"} and "Connection: close". The
 * caller then returns -1 so lws drops the connection. */
int http_refuse_upgrade(struct lws *wsi, enum lk_status s, const char *detail);

int http_callback(struct lws *wsi, enum lws_callback_reasons reason, struct http_req *r,
                  void *in, size_t len);


#endif
