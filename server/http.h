/* http.h - the HTTP JSON API and the dashboard's static files. */
#ifndef HTTP_H
#define HTTP_H

#include <libwebsockets.h>

#include "lk_buf.h"
#include "auth.h"
#include "locks.h"

/* Per-connection state of an HTTP connection (keep-alive: reused by each
 * transaction on it). */
struct http_req {
    int kind;                 /* PSS_HTTP once used (shared first member with ws_session) */
    struct lws *wsi;
    int method;               /* LWSHUMETH_* */
    char path[256];
    struct lk_buf body;
    int body_over;            /* body exceeded --max-body */
    int waiting_body;
    struct locks_call *call;  /* in flight; cancelled if the client leaves */
    struct store_op *metrics_op;
    long long started_us;
    int authed;               /* auth on: the token was valid */
    struct auth_user user;
    int status;
    const char *ctype;
    struct lk_buf resp;       /* JSON answer */
    const char *static_data;  /* or an embedded file */
    size_t static_len;
    size_t sent;
    int headers_sent, answered, close_after;
};

/* The connection limit: every accepted socket is counted until destroyed. */
void http_connection_opened(struct lws *wsi);
void http_connection_closed(struct lws *wsi);
int http_over_limit(struct lws *wsi);
int http_connection_count(void);

/* The first member of both per-connection structs says which one it is. */
enum { PSS_UNUSED, PSS_HTTP, PSS_WS };

int http_callback(struct lws *wsi, enum lws_callback_reasons reason, struct http_req *r,
                  void *in, size_t len);


#endif
