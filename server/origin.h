/* origin.h - which web pages may call the broker (cross-site request
 * refusal, and the CORS answer headers). A browser names the page behind a
 * request in its Origin header; clients that are not browsers (curl,
 * lockctl, wscat, the old Python client) send none and are not affected. */
#ifndef ORIGIN_H
#define ORIGIN_H

#include <libwebsockets.h>

enum origin_listing { ORIGIN_UNLISTED, ORIGIN_ANY, ORIGIN_LISTED };

/* How --allowed-origins lists origin (borrowed, NUL-terminated): by name
 * (exact match, as a browser serialises it), by '*', or not at all. */
enum origin_listing origin_listed(const char *origin);

/* 1 if origin ("scheme://host[:port]") is the broker's own origin as the
 * client reached it: host_header is the request's Host, tls says whether
 * the connection is TLS (https/wss) or plain (http/ws). Hosts compare
 * case-insensitively, absent ports as the scheme's default. */
int origin_same(const char *origin, const char *host_header, int tls);

/* The Origin check of an HTTP request or WebSocket upgrade: 1 when the
 * request has no Origin, is same-origin, or its Origin is listed. */
int origin_allowed(struct lws *wsi);

#endif
