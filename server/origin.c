/* origin.c - cross-site request refusal (issue 11, defect 9).
 *
 * With authentication off (the default) a lock call needs no secret, so any
 * web page an operator opens could post to the broker: a text/plain or
 * form POST is a "simple" request that a browser sends cross-site without
 * asking first, and a WebSocket upgrade is never preflighted. Browsers name
 * the page behind such a request in Origin; the broker refuses a request
 * whose Origin is neither its own (the Host the client reached, with the
 * connection's scheme) nor listed in --allowed-origins. Requests without an
 * Origin come from programs, not from pages, and are served as before. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "origin.h"

enum origin_listing origin_listed(const char *origin)
{
    enum origin_listing found = ORIGIN_UNLISTED;
    size_t olen = strlen(origin);
    const char *s = cfg.allowed_origins;
    while (*s) {
        size_t n = strcspn(s, ",");
        const char *next = s + n;
        while (n && s[n - 1] == ' ')
            n--;
        if (n == olen && !strncmp(s, origin, n))
            return ORIGIN_LISTED;
        if (n == 1 && *s == '*')
            found = ORIGIN_ANY;
        s = next;
        while (*s == ',' || *s == ' ')
            s++;
    }
    return found;
}

/* Splits "host[:port]" or "[v6]:port" at its port; the port is the
 * default when absent. -1 when the text is not an authority. */
static int split_authority(const char *a, size_t len, size_t *host_len, long *port, long default_port)
{
    size_t h;
    if (len && a[0] == '[') {
        const char *close = memchr(a, ']', len);
        if (!close)
            return -1;
        h = (size_t)(close - a) + 1;
    } else {
        const char *colon = memchr(a, ':', len);
        h = colon ? (size_t)(colon - a) : len;
    }
    if (!h)
        return -1;
    for (size_t i = 0; i < h; i++)
        if (a[i] == '/' || a[i] == '@' || a[i] == '?' || a[i] == '#' || a[i] == ' ')
            return -1;
    *host_len = h;
    *port = default_port;
    if (h == len)
        return 0;
    if (a[h] != ':' || h + 1 == len || len - h - 1 > 5)
        return -1;
    long p = 0;
    for (size_t i = h + 1; i < len; i++) {
        if (a[i] < '0' || a[i] > '9')
            return -1;
        p = p * 10 + (a[i] - '0');
    }
    if (p < 1 || p > 65535)
        return -1;
    *port = p;
    return 0;
}

int origin_same(const char *origin, const char *host_header, int tls)
{
    const char *scheme = tls ? "https://" : "http://";
    size_t sl = strlen(scheme);
    long dflt = tls ? 443 : 80;
    if (!origin || !host_header || strncasecmp(origin, scheme, sl))
        return 0;
    const char *oa = origin + sl;
    size_t oh, hh;
    long op, hp;
    if (split_authority(oa, strlen(oa), &oh, &op, dflt) ||
        split_authority(host_header, strlen(host_header), &hh, &hp, dflt))
        return 0;
    return oh == hh && !strncasecmp(oa, host_header, oh) && op == hp;
}

int origin_allowed(struct lws *wsi)
{
    char origin[256], host[256];
    if (lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) <= 0)
        return 1;
    if (lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) <= 0)
        return 0; /* longer than any origin we could list */
    if (origin_listed(origin) != ORIGIN_UNLISTED)
        return 1;
    if (lws_hdr_copy(wsi, host, sizeof(host), WSI_TOKEN_HOST) <= 0)
        return 0;
    return origin_same(origin, host, lws_is_ssl(wsi));
}
