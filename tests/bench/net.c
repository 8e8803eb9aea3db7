/* net.c - see net.h. Level-triggered epoll; EPOLLOUT is registered only
 * while a connection has unwritten bytes (or is connecting), so an idle
 * connection costs nothing per poll. Reads go into one shared buffer and are
 * parsed in place; only the tail of a partial message is copied into the
 * connection's own buffer, so ten thousand idle watchers hold almost no
 * client memory. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "lk_mem.h"
#include "net.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_MESSAGE (64u << 20) /* a response or message larger than this is an error */

static struct {
    int ep;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char host_header[300];
    uint64_t mask_state;    /* xorshift state for frame masks */
} net = { .ep = -1 };

static char rbuf[256 * 1024];

struct net_stats net_stats;

void net_stats_reset(void)
{
    memset(&net_stats, 0, sizeof(net_stats));
}

int64_t net_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int net_init(const char *host, int port)
{
    struct addrinfo hints, *res = NULL;
    char service[16];
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%d", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0 || !res) {
        fprintf(stderr, "lockbench: bad host %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    memcpy(&net.addr, res->ai_addr, res->ai_addrlen);
    net.addrlen = res->ai_addrlen;
    int v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    snprintf(net.host_header, sizeof(net.host_header), v6 ? "[%s]:%d" : "%s:%d", host, port);
    if (RAND_bytes((unsigned char *)&net.mask_state, sizeof(net.mask_state)) != 1 || !net.mask_state)
        net.mask_state = (uint64_t)net_now_ns() | 1;
    net.ep = epoll_create1(EPOLL_CLOEXEC);
    if (net.ep < 0) {
        perror("lockbench: epoll_create1");
        return -1;
    }
    return 0;
}

static uint32_t next_mask(void)
{
    uint64_t x = net.mask_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    net.mask_state = x;
    return (uint32_t)(x >> 16);
}

static void set_events(struct conn *c, int want_out)
{
    struct epoll_event ev = { .events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c };
    if (epoll_ctl(net.ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->want_out = want_out;
}

void net_close(struct conn *c, const char *why)
{
    if (c->state == NET_CLOSED || c->state == NET_IDLE)
        return;
    if (c->fd >= 0) {
        epoll_ctl(net.ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = NET_CLOSED;
    lk_buf_free(&c->out);
    lk_buf_free(&c->frag);
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
    c->out_off = 0;
    if (c->ops && c->ops->closed)
        c->ops->closed(c, why);
}

static void flush(struct conn *c)
{
    if (c->state == NET_CONNECTING || c->state == NET_CLOSED)
        return;
    if (c->out.oom) {
        net_close(c, "out of memory");
        return;
    }
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, lk_buf_data(&c->out) + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            net_close(c, "write error");
            return;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out.len) {
        lk_buf_reset(&c->out);
        c->out_off = 0;
        if (c->want_out)
            set_events(c, 0);
    } else if (!c->want_out) {
        set_events(c, 1);
    }
}

void net_connect(struct conn *c, enum net_proto proto, const struct net_ops *ops, void *user)
{
    memset(c, 0, sizeof(*c));
    c->proto = proto;
    c->ops = ops;
    c->user = user;
    lk_buf_init(&c->out, 0);
    lk_buf_init(&c->frag, 0);
    c->fd = socket(net.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->state = NET_CONNECTING;
    if (c->fd < 0) {
        net_close(c, errno == EMFILE || errno == ENFILE ? "socket: too many open files" : "socket failed");
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&net.addr, net.addrlen) < 0 && errno != EINPROGRESS) {
        net_close(c, errno == EADDRNOTAVAIL ? "connect: no free local port" : "connect refused");
        return;
    }
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
    if (epoll_ctl(net.ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        net_close(c, "epoll_ctl failed");
        return;
    }
    c->want_out = 1;
}

void net_http(struct conn *c, const char *method, const char *path, const char *body)
{
    size_t blen = body ? strlen(body) : 0;
    lk_buf_printf(&c->out, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, net.host_header);
    if (body)
        lk_buf_printf(&c->out, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", blen);
    else if (strcmp(method, "GET"))
        lk_buf_puts(&c->out, "Content-Length: 0\r\n\r\n");
    else
        lk_buf_puts(&c->out, "\r\n");
    if (body)
        lk_buf_append(&c->out, body, blen);
    flush(c);
}

static void ws_frame(struct conn *c, int opcode, const char *data, size_t len)
{
    unsigned char h[14];
    size_t hl = 2;
    h[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        h[1] = (unsigned char)(0x80 | len);
    } else if (len <= 0xffff) {
        h[1] = 0x80 | 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        hl = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    net_stats.ws_out++;
    uint32_t m = next_mask();
    unsigned char mask[4] = { (unsigned char)(m >> 24), (unsigned char)(m >> 16), (unsigned char)(m >> 8),
                              (unsigned char)m };
    memcpy(h + hl, mask, 4);
    hl += 4;
    lk_buf_append(&c->out, h, hl);
    if (c->out.oom)
        return;
    size_t at = c->out.len;
    lk_buf_append(&c->out, data, len);
    if (c->out.oom)
        return;
    unsigned char *p = (unsigned char *)lk_buf_data(&c->out) + at;
    for (size_t i = 0; i < len; i++)
        p[i] ^= mask[i & 3];
}

void net_ws_text(struct conn *c, const char *text, size_t len)
{
    ws_frame(c, 0x1, text, len);
    flush(c);
}

/* ---- parsing ---------------------------------------------------------------- */

/* The value of header `name` in the block hdr[0..len), or NULL; *vlen set. */
static const char *header_value(const char *hdr, size_t len, const char *name, size_t *vlen)
{
    size_t nlen = strlen(name);
    const char *p = memchr(hdr, '\n', len), *end = hdr + len;
    while (p && p + 1 < end) {
        const char *line = p + 1;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            eol = end;
        if ((size_t)(eol - line) > nlen && line[nlen] == ':' && !strncasecmp(line, name, nlen)) {
            const char *v = line + nlen + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        p = eol < end ? eol : NULL;
    }
    return NULL;
}

/* One HTTP response from data; returns bytes used, 0 if incomplete, -1 on error. */
static long parse_http(struct conn *c, const char *data, size_t len)
{
    const char *eoh = memmem(data, len, "\r\n\r\n", 4);
    if (!eoh)
        return len > 65536 ? -1 : 0;
    size_t hlen = (size_t)(eoh - data) + 4;
    if (len < 12 || memcmp(data, "HTTP/1.", 7))
        return -1;
    int status = atoi(data + 9);
    size_t vlen;
    const char *v = header_value(data, hlen, "Transfer-Encoding", &vlen);
    if (v) /* devlockd always sends Content-Length */
        return -1;
    long body = 0;
    v = header_value(data, hlen, "Content-Length", &vlen);
    if (v)
        body = strtol(v, NULL, 10);
    if (body < 0 || (size_t)body > MAX_MESSAGE)
        return -1;
    if (c->state == NET_UPGRADING) {
        if (status != 101)
            return -1;
        v = header_value(data, hlen, "Sec-WebSocket-Accept", &vlen);
        if (!v || vlen != strlen(c->accept) || memcmp(v, c->accept, vlen))
            return -1;
        c->state = NET_OPEN;
        if (c->ops->open)
            c->ops->open(c);
        return (long)hlen;
    }
    if (len < hlen + (size_t)body)
        return 0;
    net_stats.http_in++;
    if (c->ops->http) {
        /* NUL-terminate for the caller's string searches, restoring the byte after. */
        char *b = (char *)data + hlen;
        char saved = b[body];
        b[body] = '\0';
        c->ops->http(c, status, b, (size_t)body);
        if (c->state != NET_CLOSED)
            b[body] = saved;
    }
    return (long)(hlen + (size_t)body);
}

static void deliver(struct conn *c, const char *msg, size_t len)
{
    if (c->ops->ws)
        c->ops->ws(c, msg, len);
}

/* One WebSocket frame; same return convention as parse_http. */
static long parse_frame(struct conn *c, const char *data, size_t len)
{
    const unsigned char *p = (const unsigned char *)data;
    if (len < 2)
        return 0;
    int fin = p[0] & 0x80, op = p[0] & 0x0f, masked = p[1] & 0x80;
    uint64_t plen = p[1] & 0x7f;
    size_t hl = 2;
    if (plen == 126) {
        if (len < 4)
            return 0;
        plen = (uint64_t)p[2] << 8 | p[3];
        hl = 4;
    } else if (plen == 127) {
        if (len < 10)
            return 0;
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = plen << 8 | p[2 + i];
        hl = 10;
    }
    if (plen > MAX_MESSAGE)
        return -1;
    unsigned char mask[4] = { 0, 0, 0, 0 };
    if (masked) {
        if (len < hl + 4)
            return 0;
        memcpy(mask, p + hl, 4);
        hl += 4;
    }
    if (len < hl + plen)
        return 0;
    net_stats.ws_in++;
    char *payload = (char *)data + hl;
    if (masked)
        for (size_t i = 0; i < plen; i++)
            payload[i] ^= (char)mask[i & 3];
    switch (op) {
    case 0x0: case 0x1: case 0x2:
        if (fin && op != 0 && c->frag.len == 0) {
            /* a whole message: NUL-terminate in place for the caller */
            char saved = payload[plen];
            payload[plen] = '\0';
            deliver(c, payload, (size_t)plen);
            if (c->state != NET_CLOSED)
                payload[plen] = saved;
        } else {
            lk_buf_append(&c->frag, payload, (size_t)plen);
            if (c->frag.len > MAX_MESSAGE || c->frag.oom)
                return -1;
            if (fin) {
                deliver(c, lk_buf_data(&c->frag), c->frag.len);
                if (c->state != NET_CLOSED)
                    lk_buf_reset(&c->frag);
            }
        }
        break;
    case 0x8:
        ws_frame(c, 0x8, payload, plen >= 2 ? 2 : 0);
        flush(c);
        net_close(c, "closed by the server");
        break;
    case 0x9:
        ws_frame(c, 0xA, payload, (size_t)plen);
        flush(c);
        break;
    default:
        break;
    }
    return (long)(hl + plen);
}

/* Parses as much of data as makes whole messages; returns the bytes used or -1. */
static long parse(struct conn *c, char *data, size_t len)
{
    size_t used = 0;
    while (used < len && c->state != NET_CLOSED) {
        long n = (c->proto == NET_HTTP || c->state == NET_UPGRADING) ? parse_http(c, data + used, len - used)
                                                                      : parse_frame(c, data + used, len - used);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        used += (size_t)n;
    }
    return (long)used;
}

static int keep_tail(struct conn *c, const char *p, size_t n)
{
    if (c->in_len + n + 1 > c->in_cap) {
        size_t cap = c->in_cap ? c->in_cap : 4096;
        while (cap < c->in_len + n + 1)
            cap *= 2;
        if (cap > MAX_MESSAGE + 65536)
            return -1;
        c->in = lk_xrealloc(c->in, cap);
        c->in_cap = cap;
    }
    memmove(c->in + c->in_len, p, n);
    c->in_len += n;
    return 0;
}

static void on_readable(struct conn *c)
{
    for (int round = 0; round < 16 && c->state != NET_CLOSED; round++) {
        ssize_t n = recv(c->fd, rbuf, sizeof(rbuf) - 1, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                net_close(c, "read error");
            return;
        }
        if (n == 0) {
            net_close(c, "closed by the server");
            return;
        }
        long used;
        if (c->in_len == 0) {
            used = parse(c, rbuf, (size_t)n);
            if (used < 0) {
                net_close(c, "protocol error");
                return;
            }
            if (c->state != NET_CLOSED && (size_t)used < (size_t)n && keep_tail(c, rbuf + used, (size_t)n - (size_t)used)) {
                net_close(c, "message too large");
                return;
            }
        } else {
            if (keep_tail(c, rbuf, (size_t)n)) {
                net_close(c, "message too large");
                return;
            }
            used = parse(c, c->in, c->in_len);
            if (used < 0) {
                net_close(c, "protocol error");
                return;
            }
            if (c->state != NET_CLOSED) {
                memmove(c->in, c->in + used, c->in_len - (size_t)used);
                c->in_len -= (size_t)used;
                if (c->in_len == 0 && c->in_cap > 65536) {
                    free(c->in);
                    c->in = NULL;
                    c->in_cap = 0;
                }
            }
        }
        if ((size_t)n < sizeof(rbuf) - 1)
            return;
    }
}

static void start_upgrade(struct conn *c)
{
    unsigned char raw[16], digest[EVP_MAX_MD_SIZE];
    char key[32], text[64];
    unsigned int dlen = 0;
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        net_close(c, "RAND_bytes failed");
        return;
    }
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    int tl = snprintf(text, sizeof(text), "%s%s", key, WS_GUID);
    if (EVP_Digest(text, (size_t)tl, digest, &dlen, EVP_sha1(), NULL) != 1 || dlen != 20) {
        net_close(c, "SHA-1 failed");
        return;
    }
    EVP_EncodeBlock((unsigned char *)c->accept, digest, 20);
    c->state = NET_UPGRADING;
    lk_buf_printf(&c->out,
                  "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                  net.host_header, key);
    flush(c);
}

static void on_connected(struct conn *c)
{
    int err = 0;
    socklen_t elen = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err) {
        net_close(c, err == ECONNREFUSED ? "connection refused" : "connect failed");
        return;
    }
    if (c->proto == NET_WS) {
        start_upgrade(c);
        return;
    }
    c->state = NET_OPEN;
    flush(c);
    if (c->state != NET_CLOSED && c->ops->open)
        c->ops->open(c);
}

int net_poll(int timeout_ms)
{
    struct epoll_event evs[512];
    int n = epoll_wait(net.ep, evs, 512, timeout_ms);
    if (n < 0)
        return 0;
    for (int i = 0; i < n; i++) {
        struct conn *c = evs[i].data.ptr;
        uint32_t e = evs[i].events;
        if (c->state == NET_CLOSED)
            continue;
        if (c->state == NET_CONNECTING) {
            if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                on_connected(c);
            continue;
        }
        if (e & (EPOLLIN | EPOLLERR | EPOLLHUP))
            on_readable(c);
        if (c->state != NET_CLOSED && (e & EPOLLOUT))
            flush(c);
    }
    return n;
}
