/* lc_ws.c - one non-blocking WebSocket client connection (RFC 6455), plain
 * TCP or TLS through OpenSSL, driven by its owner's poll loop (lc_ws.h).
 *
 * A connection goes CONNECTING (non-blocking connect, one address of the
 * name after the other) -> TLS (handshake, https only) -> UPGRADE (the GET
 * is queued in the output buffer; the answer is collected and parsed) ->
 * OPEN -> CLOSING (our close frame sent, waiting for the broker's) ->
 * CLOSED. One deadline (opts->timeout_ms) covers everything up to OPEN.
 * Every way out goes through finish(), which releases the socket and the
 * TLS state and runs on_close exactly once.
 *
 * Callbacks run only inside lc_ws_process(). The owner may call
 * lc_ws_send_text, lc_ws_close and even lc_ws_free from inside them: the
 * free is then deferred until lc_ws_process returns (depth counter), and
 * the decoder is halted so that no further callback runs.
 *
 * TLS reads the socket through a small BIO of our own that uses
 * send(MSG_NOSIGNAL) and recv(): OpenSSL's socket BIO writes with write(),
 * which raises SIGPIPE on a reset peer, and the library must not touch
 * signal dispositions. OpenSSL may want to write while we read (a
 * renegotiation, a key update) or read while we write; the wanted
 * direction is remembered per operation and lc_ws_events asks for it. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lc_ws.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define OUT_MAX ((size_t)16 << 20)          /* bytes of output that may wait */
#define OUT_CTL_SLACK ((size_t)64 << 10)    /* control frames beyond OUT_MAX */
#define UPGRADE_MAX 16384                   /* the upgrade answer's header */
#define READ_BUDGET ((size_t)1 << 20)       /* bytes read per lc_ws_process */
#define CLOSE_WAIT_MS 2000                  /* for the broker's close frame */
#define DEFAULT_MAX_MESSAGE ((size_t)16 << 20)

enum ws_state { ST_CONNECTING, ST_TLS, ST_UPGRADE, ST_OPEN, ST_CLOSING, ST_CLOSED };

struct lc_ws {
    enum ws_state state;
    int fd;
    struct lc_ws_handler h;
    char host[256];             /* without brackets */
    char port[8];
    char hostport[300];         /* for the Host header and messages */
    char *path;                 /* prefix + cfg->path */
    char *token;
    int tls;
    SSL_CTX *ctx;
    SSL *ssl;
    int rd_wants_write;         /* SSL_read said WANT_WRITE */
    int wr_wants_read;          /* SSL_write said WANT_READ */
    int hs_wants_write;         /* SSL_connect said WANT_WRITE */
    struct addrinfo *ai_list, *ai_next;
    int connect_err;            /* errno of the last failed address */
    int pending_err;            /* connect() failed at once: handle in process */
    char key[32];               /* Sec-WebSocket-Key */
    struct lk_buf in;           /* the upgrade answer being collected */
    struct lk_buf out;          /* frames (and the GET) waiting to be written */
    size_t out_off;             /* bytes of out already written */
    struct lc_ws_decoder dec;
    long timeout_ms, ping_after_ms, dead_after_ms;
    int64_t deadline_us;        /* connect + TLS + upgrade; close handshake */
    int64_t attempt_us;         /* this address's share of it, when others follow */
    int64_t last_rx_us;
    int ping_sent;              /* a ping went out in this silence */
    int again;                  /* input may be left (budget used): run again at once */
    int close_reply_due;        /* the broker's close was echoed: finish once written */
    lc_status close_st;
    int depth, doomed;
    char why[400];
};

/* ---- small helpers ---------------------------------------------------------- */

static int64_t ms_us(long ms) { return (int64_t)ms * 1000; }

static void set_why(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_why(char *buf, size_t len, const char *fmt, ...)
{
    if (!buf || !len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

/* The first OpenSSL error queued, as text ("" when none); clears the queue. */
static void ssl_err_text(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    buf[0] = '\0';
    if (e) {
        ERR_error_string_n(e, buf, len);
        /* "error:0A000086:SSL routines::certificate verify failed": keep the reason */
        const char *r = ERR_reason_error_string(e);
        if (r)
            snprintf(buf, len, "%s", r);
    }
    ERR_clear_error();
}

static void base64(const unsigned char *in, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* base64(SHA-1(key + GUID)): the accept value the broker must answer. */
static int expected_accept(const char *key, char out[32])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char cat[128];
    int n = snprintf(cat, sizeof(cat), "%s%s", key, WS_GUID);
    if (n < 0 || (size_t)n >= sizeof(cat))
        return -1;
    if (!EVP_Digest(cat, (size_t)n, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
        return -1;
    base64(md, 20, out);
    return 0;
}

/* ---- the upgrade answer --------------------------------------------------------- */

/* Case-insensitive search for a token in a comma-separated header value. */
static int has_token(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && !strncasecmp(v + s, tok, tl))
            return 1;
    }
    return 0;
}

long lc_ws_parse_upgrade(const char *buf, size_t len, const char *key, int *http_status,
                         int *accept_ok)
{
    *http_status = 0;
    *accept_ok = 0;
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t hlen = (size_t)(end - buf) + 4;
    /* status line: HTTP/1.x SP DDD [SP reason] */
    const char *p = buf, *lim = end;
    const char *eol = memmem(p, (size_t)(lim - p), "\r\n", 2);
    if (!eol)
        eol = lim;
    if (eol - p < 12 || memcmp(p, "HTTP/1.", 7) || (p[7] != '0' && p[7] != '1') || p[8] != ' ')
        return -1;
    for (int i = 9; i < 12; i++)
        if (p[i] < '0' || p[i] > '9')
            return -1;
    if (eol - p > 12 && p[12] != ' ')
        return -1;
    int status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    char want[32] = "";
    int have_want = key && expected_accept(key, want) == 0;
    int accept_match = 0, upgrade_ws = 0, conn_upgrade = 0;
    p = eol;
    while (p < lim) {
        p += 2;                      /* the CRLF before this line */
        eol = memmem(p, (size_t)(lim - p), "\r\n", 2);
        if (!eol)
            eol = lim;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon || colon == p)
            return -1;
        for (const char *q = p; q < colon; q++)
            if (*q == ' ' || *q == '\t' || (unsigned char)*q < 0x21 || (unsigned char)*q > 0x7e)
                return -1;
        size_t nlen = (size_t)(colon - p);
        const char *v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t'))
            v++;
        const char *ve = eol;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t vlen = (size_t)(ve - v);
        if (nlen == 20 && !strncasecmp(p, "Sec-WebSocket-Accept", 20))
            accept_match = have_want && vlen == strlen(want) && !memcmp(v, want, vlen);
        else if (nlen == 7 && !strncasecmp(p, "Upgrade", 7))
            upgrade_ws = has_token(v, vlen, "websocket");
        else if (nlen == 10 && !strncasecmp(p, "Connection", 10))
            conn_upgrade = has_token(v, vlen, "upgrade");
        p = eol;
    }
    *http_status = status;
    *accept_ok = accept_match && upgrade_ws && conn_upgrade;
    return (long)hlen;
}

/* ---- the frame decoder -------------------------------------------------------- */

void lc_ws_decoder_init(struct lc_ws_decoder *d, size_t max_message)
{
    memset(d, 0, sizeof(*d));
    d->max_message = max_message ? max_message : DEFAULT_MAX_MESSAGE;
    lk_buf_init(&d->msg, 0);
    lk_buf_init(&d->ctl, 0);
}

void lc_ws_decoder_free(struct lc_ws_decoder *d)
{
    lk_buf_free(&d->msg);
    lk_buf_free(&d->ctl);
}

static size_t hdr_size(const struct lc_ws_decoder *d)
{
    if (d->hdr_len < 2)
        return 2;
    size_t n = 2;
    unsigned l7 = d->hdr[1] & 0x7f;
    if (l7 == 126)
        n += 2;
    else if (l7 == 127)
        n += 8;
    if (d->hdr[1] & 0x80)
        n += 4;
    return n;
}

static int valid_close_code(int c)
{
    if (c >= 3000 && c <= 4999)
        return 1;
    return c >= 1000 && c <= 1014 && c != 1004 && c != 1005 && c != 1006;
}

/* A whole frame header is in d->hdr: checks it, sets need/opcode/fin. */
static int frame_start(struct lc_ws_decoder *d, int *code)
{
    unsigned char b0 = d->hdr[0], b1 = d->hdr[1];
    int op = b0 & 0x0f;
    uint64_t plen = b1 & 0x7f;
    *code = 1002;
    if (b0 & 0x70)                   /* RSV bits: no extension was negotiated */
        return -1;
    if (b1 & 0x80)                   /* a server must not mask */
        return -1;
    if (plen == 126) {
        plen = ((uint64_t)d->hdr[2] << 8) | d->hdr[3];
        if (plen < 126)
            return -1;
    } else if (plen == 127) {
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = (plen << 8) | d->hdr[2 + i];
        if (plen >> 63 || plen < 65536)
            return -1;
    }
    d->fin = (b0 & 0x80) != 0;
    if (op >= 8) {
        if (op > 10 || !d->fin || plen > 125)
            return -1;
    } else if (op == 0) {
        if (!d->in_message)
            return -1;
    } else if (op == 1 || op == 2) {
        if (d->in_message)
            return -1;
        d->msg_binary = op == 2;
    } else {
        return -1;
    }
    if (op < 8 && plen > d->max_message - d->msg.len) {
        *code = 1009;
        return -1;
    }
    d->opcode = op;
    d->need = plen;
    d->in_payload = 1;
    if (op >= 8)
        lk_buf_reset(&d->ctl);
    else
        d->in_message = 1;
    *code = 0;
    return 0;
}

/* The frame's payload is complete: hands it to the callbacks. */
static int frame_end(struct lc_ws_decoder *d, const struct lc_ws_frame_cb *cb, int *code)
{
    d->in_payload = 0;
    d->hdr_len = 0;
    if (d->opcode < 8) {
        if (!d->fin)
            return 0;
        d->in_message = 0;
        if (cb->message)
            cb->message(lk_buf_data(&d->msg), d->msg.len, d->msg_binary, cb->ud);
        /* keep a small buffer for the next message, give a big one back */
        if (d->msg.cap > 65536)
            lk_buf_free(&d->msg);
        else
            lk_buf_reset(&d->msg);
        return 0;
    }
    const char *p = lk_buf_data(&d->ctl);
    size_t n = d->ctl.len;
    switch (d->opcode) {
    case 8: {
        int c = 1005;                /* no status code in the frame */
        if (n == 1) {
            *code = 1002;
            return -1;
        }
        if (n >= 2) {
            c = ((unsigned char)p[0] << 8) | (unsigned char)p[1];
            if (!valid_close_code(c)) {
                *code = 1002;
                return -1;
            }
        }
        if (cb->close)
            cb->close(c, n >= 2 ? p + 2 : p, n >= 2 ? n - 2 : 0, cb->ud);
        break;
    }
    case 9:
        if (cb->ping)
            cb->ping(p, n, cb->ud);
        break;
    case 10:
        if (cb->pong)
            cb->pong(p, n, cb->ud);
        break;
    }
    return 0;
}

int lc_ws_decode(struct lc_ws_decoder *d, const unsigned char *in, size_t len,
                 const struct lc_ws_frame_cb *cb, int *code)
{
    *code = 0;
    while (!d->halt) {
        if (!d->in_payload) {
            if (!len)
                return 0;
            size_t want;
            while ((want = hdr_size(d)) > d->hdr_len && len) {
                size_t take = want - d->hdr_len < len ? want - d->hdr_len : len;
                memcpy(d->hdr + d->hdr_len, in, take);
                d->hdr_len += take;
                in += take;
                len -= take;
            }
            if (d->hdr_len < hdr_size(d))
                return 0;
            if (frame_start(d, code))
                return -1;
        }
        if (d->need) {
            if (!len)
                return 0;
            size_t take = d->need < len ? (size_t)d->need : len;
            struct lk_buf *b = d->opcode >= 8 ? &d->ctl : &d->msg;
            lk_buf_append(b, in, take);
            if (b->oom) {
                *code = 1011;
                return -1;
            }
            in += take;
            len -= take;
            d->need -= take;
            if (d->need)
                return 0;
        }
        if (frame_end(d, cb, code))
            return -1;
    }
    return 0;
}

/* ---- URL ------------------------------------------------------------------------- */

static lc_status parse_url(struct lc_ws *ws, const char *url, const char *path, char *why,
                           size_t why_len)
{
    const char *p;
    if (!url)
        goto bad;
    if (!strncasecmp(url, "https://", 8)) {
        ws->tls = 1;
        p = url + 8;
    } else if (!strncasecmp(url, "http://", 7)) {
        p = url + 7;
    } else {
        goto bad;
    }
    const char *hs = p, *he;
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (!he)
            goto bad;
        p = he + 1;
    } else {
        while (*p && *p != ':' && *p != '/' && *p != '?' && *p != '#')
            p++;
        he = p;
    }
    if (he == hs || (size_t)(he - hs) >= sizeof(ws->host))
        goto bad;
    memcpy(ws->host, hs, (size_t)(he - hs));
    ws->host[he - hs] = '\0';
    for (const char *c = ws->host; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == '@' || (unsigned char)*c >= 0x7f)
            goto bad;
    if (*p == ':') {
        p++;
        const char *ps = p;
        long port = 0;
        while (*p >= '0' && *p <= '9' && p - ps < 6)
            port = port * 10 + (*p++ - '0');
        if (p == ps || port < 1 || port > 65535)
            goto bad;
        snprintf(ws->port, sizeof(ws->port), "%ld", port);
    } else {
        snprintf(ws->port, sizeof(ws->port), "%s", ws->tls ? "443" : "80");
    }
    if (*p && *p != '/')
        goto bad;
    size_t plen = strlen(p);
    while (plen && p[plen - 1] == '/')
        plen--;
    const char *sub = path && *path ? path : "/ws";
    for (const char *c = p; c < p + plen; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == '?' || *c == '#')
            goto bad;
    for (const char *c = sub; *c; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
            goto bad;
    size_t sl = strlen(sub);
    ws->path = malloc(plen + sl + 2);
    if (!ws->path) {
        set_why(why, why_len, "out of memory");
        return LC_ERR_NOMEM;
    }
    memcpy(ws->path, p, plen);
    size_t o = plen;
    if (*sub != '/')
        ws->path[o++] = '/';
    memcpy(ws->path + o, sub, sl + 1);
    if (strchr(ws->host, ':'))
        snprintf(ws->hostport, sizeof(ws->hostport), "[%s]:%s", ws->host, ws->port);
    else
        snprintf(ws->hostport, sizeof(ws->hostport), "%s:%s", ws->host, ws->port);
    return LC_OK;
bad:
    set_why(why, why_len, "bad broker URL \"%s\" (want http(s)://host[:port][/prefix])", url ? url : "");
    return LC_ERR_BAD_REQUEST;
}

/* ---- a BIO over the socket that never raises SIGPIPE ---------------------------- */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int bio_write(BIO *b, const char *data, int len)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n = send(fd, data, (size_t)len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)n;
}

static int bio_read(BIO *b, char *data, int len)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n = recv(fd, data, (size_t)len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_read(b);
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "lc_ws socket");
    if (m && BIO_meth_set_write(m, bio_write) && BIO_meth_set_read(m, bio_read) &&
        BIO_meth_set_ctrl(m, bio_ctrl) && BIO_meth_set_create(m, bio_create)) {
        bio_method = m;
        return;
    }
    BIO_meth_free(m);
}

/* ---- TLS setup --------------------------------------------------------------- */

static lc_status tls_ctx_new(struct lc_ws *ws, const struct lc_opts *o, char *why, size_t why_len)
{
    char err[200];
    ERR_clear_error();
    pthread_once(&bio_once, bio_method_init);
    if (!bio_method) {
        set_why(why, why_len, "TLS: cannot set up OpenSSL");
        return LC_ERR_NOMEM;
    }
    ws->ctx = SSL_CTX_new(TLS_client_method());
    if (!ws->ctx) {
        set_why(why, why_len, "TLS: cannot set up OpenSSL");
        return LC_ERR_NOMEM;
    }
    SSL_CTX_set_min_proto_version(ws->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ws->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ws->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    static const struct lc_opts defaults;   /* no options: the environment's and system's CAs */
    if (!o)
        o = &defaults;
    const char *caf = lc__ca_file(o), *cap = lc__ca_path(o);
    if (caf || cap) {
        if (!SSL_CTX_load_verify_locations(ws->ctx, caf, cap)) {
            ssl_err_text(err, sizeof(err));
            set_why(why, why_len, "TLS: cannot load the CA %s \"%s\": %s", caf ? "file" : "directory",
                    caf ? caf : cap, err);
            return LC_ERR_TLS;
        }
    } else if (!SSL_CTX_set_default_verify_paths(ws->ctx)) {
        ssl_err_text(err, sizeof(err));
        set_why(why, why_len, "TLS: cannot load the system's CAs: %s", err);
        return LC_ERR_TLS;
    }
    if (o->cert_file) {
        const char *keyf = o->key_file ? o->key_file : o->cert_file;
        if (SSL_CTX_use_certificate_chain_file(ws->ctx, o->cert_file) != 1) {
            ssl_err_text(err, sizeof(err));
            set_why(why, why_len, "TLS: cannot load the client certificate \"%s\": %s", o->cert_file, err);
            return LC_ERR_TLS;
        }
        if (SSL_CTX_use_PrivateKey_file(ws->ctx, keyf, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ws->ctx) != 1) {
            ssl_err_text(err, sizeof(err));
            set_why(why, why_len, "TLS: cannot use the client key \"%s\": %s", keyf, err);
            return LC_ERR_TLS;
        }
    }
    return LC_OK;
}

static int is_ip_literal(const char *h)
{
    unsigned char a[16];
    return inet_pton(AF_INET, h, a) == 1 || inet_pton(AF_INET6, h, a) == 1;
}

/* A new SSL for the connected socket: SNI and the name to verify. */
static int tls_start(struct lc_ws *ws)
{
    ERR_clear_error();
    ws->ssl = SSL_new(ws->ctx);
    BIO *b = ws->ssl ? BIO_new(bio_method) : NULL;
    if (!b)
        return -1;
    BIO_set_data(b, (void *)(intptr_t)ws->fd);
    SSL_set_bio(ws->ssl, b, b);
    if (is_ip_literal(ws->host)) {
        if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ws->ssl), ws->host))
            return -1;
    } else {
        /* SNI, and the certificate must name this host */
        if (!SSL_set_tlsext_host_name(ws->ssl, ws->host) || !SSL_set1_host(ws->ssl, ws->host))
            return -1;
        SSL_set_hostflags(ws->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    }
    SSL_set_connect_state(ws->ssl);
    return 0;
}

/* ---- ending ------------------------------------------------------------------ */

static void release_io(struct lc_ws *ws)
{
    if (ws->ssl) {
        SSL_free(ws->ssl);
        ws->ssl = NULL;
    }
    if (ws->fd >= 0) {
        close(ws->fd);
        ws->fd = -1;
    }
    ERR_clear_error();
}

/* The one way a connection ends (except lc_ws_free): on_close once. */
static void finish(struct lc_ws *ws, lc_status st, int permanent, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void finish(struct lc_ws *ws, lc_status st, int permanent, const char *fmt, ...)
{
    if (ws->state == ST_CLOSED)
        return;
    char text[sizeof(ws->why)];     /* fmt's arguments may be ws->why itself */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    memcpy(ws->why, text, sizeof(text));
    release_io(ws);
    ws->state = ST_CLOSED;
    ws->dec.halt = 1;
    lk_buf_free(&ws->out);
    ws->out_off = 0;
    lk_buf_free(&ws->in);
    if (ws->h.on_close && !ws->doomed)
        ws->h.on_close(st, permanent, ws->why, ws->h.ud);
}

static int ended(const struct lc_ws *ws) { return ws->state == ST_CLOSED || ws->doomed; }

/* ---- output ------------------------------------------------------------------ */

static size_t out_pending(const struct lc_ws *ws) { return ws->out.len - ws->out_off; }

/* Queues one masked frame. LC_ERR_TOO_LARGE beyond the bound, LC_ERR_NOMEM. */
static lc_status queue_frame(struct lc_ws *ws, int opcode, const void *data, size_t len)
{
    size_t limit = opcode >= 8 ? OUT_MAX + OUT_CTL_SLACK : OUT_MAX;
    if (len > limit || out_pending(ws) > limit - len)
        return LC_ERR_TOO_LARGE;
    /* give written bytes back before growing */
    if (ws->out_off && (ws->out_off == ws->out.len || ws->out_off > 65536)) {
        size_t rest = out_pending(ws);
        memmove(ws->out.mem + ws->out.pre, lk_buf_data(&ws->out) + ws->out_off, rest);
        ws->out.len = rest;
        ws->out_off = 0;
    }
    unsigned char hdr[14];
    size_t hl = 0;
    hdr[hl++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        hdr[hl++] = (unsigned char)(0x80 | len);
    } else if (len <= 0xffff) {
        hdr[hl++] = 0x80 | 126;
        hdr[hl++] = (unsigned char)(len >> 8);
        hdr[hl++] = (unsigned char)len;
    } else {
        hdr[hl++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[hl++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    unsigned char *mask = hdr + hl;
    if (RAND_bytes(mask, 4) != 1) {
        ERR_clear_error();
        return LC_ERR_INTERNAL;
    }
    hl += 4;
    size_t start = ws->out.len;
    lk_buf_append(&ws->out, hdr, hl);
    lk_buf_append(&ws->out, data, len);
    if (ws->out.oom) {
        /* take back what went in of this frame; lk_buf's oom is sticky */
        ws->out.oom = 0;
        ws->out.len = start;
        if (ws->out.mem)
            ws->out.mem[ws->out.pre + start] = '\0';
        return LC_ERR_NOMEM;
    }
    unsigned char *p = (unsigned char *)lk_buf_data(&ws->out) + start + hl;
    for (size_t i = 0; i < len; i++)
        p[i] ^= mask[i & 3];
    return LC_OK;
}

/* Writes what it can. 0, or -1 after finish(). */
static int flush_out(struct lc_ws *ws)
{
    while (out_pending(ws)) {
        const char *p = lk_buf_data(&ws->out) + ws->out_off;
        size_t n = out_pending(ws);
        if (ws->ssl) {
            int chunk = n > 65536 ? 65536 : (int)n;
            ERR_clear_error();
            int w = SSL_write(ws->ssl, p, chunk);
            ws->wr_wants_read = 0;
            if (w <= 0) {
                int e = SSL_get_error(ws->ssl, w);
                if (e == SSL_ERROR_WANT_WRITE)
                    return 0;
                if (e == SSL_ERROR_WANT_READ) {
                    ws->wr_wants_read = 1;
                    return 0;
                }
                char err[200];
                ssl_err_text(err, sizeof(err));
                finish(ws, LC_ERR_UNAVAILABLE, 0, "write to %s: %s", ws->hostport,
                       err[0] ? err : strerror(errno ? errno : EPIPE));
                return -1;
            }
            ws->out_off += (size_t)w;
        } else {
            ssize_t w = send(ws->fd, p, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                    return 0;
                finish(ws, LC_ERR_UNAVAILABLE, 0, "write to %s: %s", ws->hostport, strerror(errno));
                return -1;
            }
            ws->out_off += (size_t)w;
        }
    }
    lk_buf_reset(&ws->out);
    if (ws->out.cap > 65536)
        lk_buf_free(&ws->out);
    ws->out_off = 0;
    return 0;
}

/* ---- the decoder's callbacks ------------------------------------------------------ */

static void on_message(const char *data, size_t len, int binary, void *ud)
{
    struct lc_ws *ws = ud;
    if (ended(ws) || ws->state != ST_OPEN)
        return;
    if (binary)                     /* the broker sends text only: ignore others */
        return;
    if (ws->h.on_text)
        ws->h.on_text(data, len, ws->h.ud);
}

static void on_ping(const char *data, size_t len, void *ud)
{
    struct lc_ws *ws = ud;
    if (ended(ws) || ws->state != ST_OPEN)
        return;
    /* when even the slack is used, the pong is dropped: the next ping asks again */
    lc_status st = queue_frame(ws, 10, data, len);
    if (st == LC_ERR_NOMEM) {
        finish(ws, LC_ERR_NOMEM, 0, "out of memory");
        ws->dec.halt = 1;
    }
}

static void on_pong(const char *data, size_t len, void *ud)
{
    (void)data;
    (void)len;
    (void)ud;                       /* any byte received already counts as life */
}

/* Close codes: 1000/1001/1005 are an orderly end; a slow-client drop (1008),
 * overload and restarts (1011-1014) are worth a retry; the rest say that
 * one side did not follow the protocol. */
static lc_status close_status(int code)
{
    switch (code) {
    case 1000: case 1001: case 1005:
        return LC_OK;
    case 1002: case 1003: case 1007: case 1009: case 1010:
        return LC_ERR_PROTOCOL;
    default:
        return LC_ERR_UNAVAILABLE;
    }
}

static void on_close_frame(int code, const char *reason, size_t len, void *ud)
{
    struct lc_ws *ws = ud;
    if (ended(ws))
        return;
    ws->dec.halt = 1;
    if (ws->state == ST_CLOSING) {   /* the answer to ours */
        finish(ws, LC_OK, 0, "closed");
        return;
    }
    lc_status st = close_status(code);
    char text[124];                 /* the reason, printable */
    size_t n = len < sizeof(text) - 1 ? len : sizeof(text) - 1;
    for (size_t i = 0; i < n; i++)
        text[i] = (unsigned char)reason[i] < 0x20 || reason[i] == 0x7f ? '?' : reason[i];
    text[n] = '\0';
    if (st == LC_OK)
        snprintf(ws->why, sizeof(ws->why), "the broker closed the connection (%d)", code);
    else
        snprintf(ws->why, sizeof(ws->why), "the broker closed the connection with code %d%s%s%s", code,
                 n ? " (" : "", text, n ? ")" : "");
    /* echo the close (its code only), then end once it is written */
    unsigned char c[2] = {(unsigned char)((code == 1005 ? 1000 : code) >> 8),
                          (unsigned char)(code == 1005 ? 1000 : code)};
    if (queue_frame(ws, 8, c, 2) != LC_OK) {
        finish(ws, st, 0, "%s", ws->why);
        return;
    }
    ws->state = ST_CLOSING;
    ws->close_st = st;
    ws->close_reply_due = 1;
    ws->deadline_us = lc__mono_us() + ms_us(CLOSE_WAIT_MS);
}

static const struct lc_ws_frame_cb frame_cb = {on_message, on_ping, on_pong, on_close_frame, NULL};

/* ---- input ------------------------------------------------------------------- */

/* Reads once: >0 bytes, 0 nothing now, -2 end of stream, -1 after finish(). */
static ssize_t read_some(struct lc_ws *ws, char *buf, size_t len)
{
    if (ws->ssl) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_read(ws->ssl, buf, (int)len);
        ws->rd_wants_write = 0;
        if (r > 0)
            return r;
        int e = SSL_get_error(ws->ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            return 0;
        if (e == SSL_ERROR_WANT_WRITE) {
            ws->rd_wants_write = 1;
            return 0;
        }
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !ERR_peek_error() && errno == 0) ||
            (e == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
            ERR_clear_error();
            errno = 0;
            return -2;
        }
        char err[200];
        ssl_err_text(err, sizeof(err));
        finish(ws, e == SSL_ERROR_SSL ? LC_ERR_TLS : LC_ERR_UNAVAILABLE, 0, "read from %s: %s",
               ws->hostport, err[0] ? err : strerror(errno ? errno : ECONNRESET));
        return -1;
    }
    ssize_t r = recv(ws->fd, buf, len, 0);
    if (r > 0)
        return r;
    if (r == 0)
        return -2;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    finish(ws, LC_ERR_UNAVAILABLE, 0, "read from %s: %s", ws->hostport, strerror(errno));
    return -1;
}

static void feed_frames(struct lc_ws *ws, const char *data, size_t len)
{
    int code = 0;
    struct lc_ws_frame_cb cb = frame_cb;
    cb.ud = ws;
    if (lc_ws_decode(&ws->dec, (const unsigned char *)data, len, &cb, &code) == 0 || ended(ws))
        return;
    if (code == 1011) {
        finish(ws, LC_ERR_NOMEM, 0, "out of memory for a message from %s", ws->hostport);
        return;
    }
    /* tell the broker why, best effort, then end */
    unsigned char c[2] = {(unsigned char)(code >> 8), (unsigned char)code};
    if (queue_frame(ws, 8, c, 2) == LC_OK)
        flush_out(ws);
    if (code == 1009)
        finish(ws, LC_ERR_PROTOCOL, 0, "a message from %s is larger than %zu bytes (closed 1009)",
               ws->hostport, ws->dec.max_message);
    else
        finish(ws, LC_ERR_PROTOCOL, 0, "bad WebSocket frame from %s", ws->hostport);
}

/* The upgrade answer is in ws->in (maybe with frames after it). */
static void handle_upgrade(struct lc_ws *ws)
{
    int status = 0, accept_ok = 0;
    long hl = lc_ws_parse_upgrade(lk_buf_data(&ws->in), ws->in.len, ws->key, &status, &accept_ok);
    if (hl == 0) {
        if (ws->in.len > UPGRADE_MAX)
            finish(ws, LC_ERR_PROTOCOL, 0, "the upgrade answer from %s is larger than %d bytes",
                   ws->hostport, UPGRADE_MAX);
        return;
    }
    if (hl < 0) {
        finish(ws, LC_ERR_PROTOCOL, 0, "malformed HTTP answer from %s to the WebSocket upgrade",
               ws->hostport);
        return;
    }
    switch (status) {
    case 101:
        break;
    case 401:
        finish(ws, LC_ERR_UNAUTHORIZED, 1, "HTTP 401 on WebSocket upgrade: %s",
               ws->token ? "the broker refused the token" : "the broker wants a token");
        return;
    case 403:
        finish(ws, LC_ERR_FORBIDDEN, 1, "HTTP 403 on WebSocket upgrade (%s%s)", ws->hostport, ws->path);
        return;
    case 503:
        finish(ws, LC_ERR_UNAVAILABLE, 0, "HTTP 503 on WebSocket upgrade: the broker is not ready");
        return;
    default:
        finish(ws, LC_ERR_PROTOCOL, 0, "HTTP %d on WebSocket upgrade (%s%s)", status, ws->hostport,
               ws->path);
        return;
    }
    if (!accept_ok) {
        finish(ws, LC_ERR_PROTOCOL, 0, "the broker at %s answered the upgrade without a valid "
               "Sec-WebSocket-Accept", ws->hostport);
        return;
    }
    ws->state = ST_OPEN;
    ws->deadline_us = 0;
    ws->last_rx_us = lc__mono_us();
    ws->ping_sent = 0;
    size_t rest = ws->in.len - (size_t)hl;
    struct lk_buf tail = ws->in;
    lk_buf_init(&ws->in, 0);
    if (ws->h.on_open)
        ws->h.on_open(ws->h.ud);
    if (rest && !ended(ws))
        feed_frames(ws, lk_buf_data(&tail) + hl, rest);
    lk_buf_free(&tail);
}

/* Reads until nothing is left (or the budget is used). */
static void do_read(struct lc_ws *ws)
{
    char buf[16384];
    size_t total = 0;
    ws->again = 0;
    while (!ended(ws) && (ws->state == ST_UPGRADE || ws->state == ST_OPEN || ws->state == ST_CLOSING)) {
        if (total >= READ_BUDGET) {
            ws->again = 1;
            return;
        }
        ssize_t n = read_some(ws, buf, sizeof(buf));
        if (n == 0 || n == -1)
            return;
        if (n == -2) {
            if (ws->state == ST_CLOSING)
                finish(ws, ws->close_reply_due ? ws->close_st : LC_OK, 0, "%s",
                       ws->close_reply_due ? ws->why : "closed");
            else if (ws->state == ST_UPGRADE)
                finish(ws, LC_ERR_UNAVAILABLE, 0, "%s closed the connection during the WebSocket upgrade",
                       ws->hostport);
            else
                finish(ws, LC_ERR_UNAVAILABLE, 0, "%s closed the connection", ws->hostport);
            return;
        }
        total += (size_t)n;
        ws->last_rx_us = lc__mono_us();
        ws->ping_sent = 0;
        if (ws->state == ST_UPGRADE) {
            lk_buf_append(&ws->in, buf, (size_t)n);
            if (ws->in.oom) {
                finish(ws, LC_ERR_NOMEM, 0, "out of memory");
                return;
            }
            handle_upgrade(ws);
        } else if (!ws->close_reply_due) {
            feed_frames(ws, buf, (size_t)n);
        }
    }
}

/* ---- connecting ---------------------------------------------------------------- */

static void queue_upgrade(struct lc_ws *ws)
{
    lk_buf_printf(&ws->out,
                  "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                  "User-Agent: liblockclient/" LC_VERSION_STRING "\r\n",
                  ws->path, ws->hostport, ws->key);
    if (ws->token)
        lk_buf_printf(&ws->out, "Authorization: Bearer %s\r\n", ws->token);
    lk_buf_puts(&ws->out, "\r\n");
    ws->state = ST_UPGRADE;
    if (ws->out.oom)
        finish(ws, LC_ERR_NOMEM, 0, "out of memory");
}

/* Starts a connect to the next address. 0 started (or failed at once:
 * pending_err), -1 no address left. */
static int connect_next(struct lc_ws *ws)
{
    while (ws->ai_next) {
        struct addrinfo *ai = ws->ai_next;
        ws->ai_next = ai->ai_next;
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            ws->connect_err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (ws->fd >= 0)
            close(ws->fd);
        ws->fd = fd;
        ws->pending_err = 0;
        /* an address that does not answer (a black-holed route) may use
         * half of the time left when other addresses follow, not all */
        ws->attempt_us = 0;
        if (ws->ai_next) {
            int64_t now = lc__mono_us(), left = ws->deadline_us - now;
            ws->attempt_us = now + (left / 2 > ms_us(1000) ? left / 2 : ms_us(1000));
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS)
            return 0;
        ws->pending_err = errno;    /* e.g. refused at once: reported from process */
        return 0;
    }
    return -1;
}

static void connected(struct lc_ws *ws)
{
    freeaddrinfo(ws->ai_list);
    ws->ai_list = ws->ai_next = NULL;
    if (!ws->tls) {
        queue_upgrade(ws);
        return;
    }
    if (tls_start(ws)) {
        char err[200];
        ssl_err_text(err, sizeof(err));
        finish(ws, LC_ERR_NOMEM, 0, "TLS: cannot set up the connection: %s", err);
        return;
    }
    ws->state = ST_TLS;
}

static void tls_step(struct lc_ws *ws)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_connect(ws->ssl);
    ws->hs_wants_write = 0;
    if (r == 1) {
        queue_upgrade(ws);
        return;
    }
    int e = SSL_get_error(ws->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return;
    if (e == SSL_ERROR_WANT_WRITE) {
        ws->hs_wants_write = 1;
        return;
    }
    long vr = SSL_get_verify_result(ws->ssl);
    if (vr != X509_V_OK) {
        ERR_clear_error();
        finish(ws, LC_ERR_TLS, 1, "TLS: certificate verify failed: %s (%s)",
               X509_verify_cert_error_string(vr), ws->hostport);
        return;
    }
    char err[200];
    int sys = errno;
    ssl_err_text(err, sizeof(err));
    if (e == SSL_ERROR_SSL)
        finish(ws, LC_ERR_TLS, 1, "TLS: handshake with %s failed: %s", ws->hostport, err);
    else
        finish(ws, LC_ERR_UNAVAILABLE, 0, "TLS: %s closed the connection during the handshake%s%s",
               ws->hostport, sys ? ": " : "", sys ? strerror(sys) : "");
}

static void connect_step(struct lc_ws *ws, short revents)
{
    int err = ws->pending_err;
    if (!err) {
        if (!(revents & (POLLOUT | POLLERR | POLLHUP)))
            return;
        socklen_t sl = sizeof(err);
        if (getsockopt(ws->fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0)
            err = errno;
        if (!err) {
            connected(ws);
            return;
        }
    }
    ws->connect_err = err;
    if (connect_next(ws) < 0)
        finish(ws, LC_ERR_UNAVAILABLE, 0, "connect to %s: %s", ws->hostport, strerror(ws->connect_err));
}

/* ---- the public functions ---------------------------------------------------------- */

lc_status lc_ws_open(const struct lc_ws_cfg *cfg, const struct lc_ws_handler *h,
                     struct lc_ws **out, char *why, size_t why_len)
{
    if (why && why_len)
        why[0] = '\0';
    if (!out || !cfg || !h) {
        set_why(why, why_len, "bad arguments");
        return LC_ERR_BAD_REQUEST;
    }
    *out = NULL;
    struct lc_ws *ws = calloc(1, sizeof(*ws));
    if (!ws) {
        set_why(why, why_len, "out of memory");
        return LC_ERR_NOMEM;
    }
    ws->fd = -1;
    ws->h = *h;
    lk_buf_init(&ws->in, 0);
    lk_buf_init(&ws->out, 0);
    lc_ws_decoder_init(&ws->dec, cfg->max_message);
    const struct lc_opts *o = cfg->opts;
    ws->timeout_ms = o && o->timeout_ms > 0 ? o->timeout_ms : 5000;
    ws->ping_after_ms = cfg->ping_after_ms > 0 ? cfg->ping_after_ms : 10000;
    ws->dead_after_ms = cfg->dead_after_ms > 0 ? cfg->dead_after_ms : 20000;
    lc_status st = parse_url(ws, cfg->url, cfg->path, why, why_len);
    if (st != LC_OK)
        goto fail;
    if (o && o->token) {
        if (strpbrk(o->token, "\r\n")) {
            set_why(why, why_len, "the token contains a line break");
            st = LC_ERR_BAD_REQUEST;
            goto fail;
        }
        ws->token = lc__strdup(o->token);
        if (!ws->token) {
            set_why(why, why_len, "out of memory");
            st = LC_ERR_NOMEM;
            goto fail;
        }
    }
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        ERR_clear_error();
        set_why(why, why_len, "no random bytes for the WebSocket key");
        st = LC_ERR_INTERNAL;
        goto fail;
    }
    base64(raw, sizeof(raw), ws->key);
    if (ws->tls && (st = tls_ctx_new(ws, o, why, why_len)) != LC_OK)
        goto fail;
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int gai = getaddrinfo(ws->host, ws->port, &hints, &ws->ai_list);
    if (gai) {
        set_why(why, why_len, "cannot resolve %s: %s", ws->host,
                gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
        ws->ai_list = NULL;
        st = gai == EAI_MEMORY ? LC_ERR_NOMEM : LC_ERR_UNAVAILABLE;
        goto fail;
    }
    ws->ai_next = ws->ai_list;
    ws->state = ST_CONNECTING;
    ws->deadline_us = lc__mono_us() + ms_us(ws->timeout_ms);
    if (connect_next(ws) < 0) {
        set_why(why, why_len, "connect to %s: %s", ws->hostport, strerror(ws->connect_err));
        st = LC_ERR_UNAVAILABLE;
        goto fail;
    }
    *out = ws;
    return LC_OK;
fail:
    ws->h.on_close = NULL;
    lc_ws_free(ws);
    return st;
}

int lc_ws_fd(const struct lc_ws *ws) { return ws && ws->state != ST_CLOSED ? ws->fd : -1; }

short lc_ws_events(const struct lc_ws *ws)
{
    if (!ws || ws->state == ST_CLOSED || ws->fd < 0)
        return 0;
    switch (ws->state) {
    case ST_CONNECTING:
        return POLLOUT;
    case ST_TLS:
        return (short)(POLLIN | (ws->hs_wants_write ? POLLOUT : 0));
    default: {
        short ev = POLLIN;
        if (ws->rd_wants_write)
            ev |= POLLOUT;
        /* a write that waits for input is retried on POLLIN */
        if (out_pending(ws) && !ws->wr_wants_read)
            ev |= POLLOUT;
        return ev;
    }
    }
}

int64_t lc_ws_timer_us(const struct lc_ws *ws)
{
    if (!ws || ws->state == ST_CLOSED)
        return 0;
    if (ws->again || ws->pending_err || (ws->ssl && SSL_pending(ws->ssl) > 0))
        return lc__mono_us();
    if (ws->state == ST_CONNECTING && ws->attempt_us && ws->attempt_us < ws->deadline_us)
        return ws->attempt_us;
    if (ws->state != ST_OPEN)
        return ws->deadline_us;
    int64_t dead = ws->last_rx_us + ms_us(ws->dead_after_ms);
    int64_t ping = ws->last_rx_us + ms_us(ws->ping_after_ms);
    return !ws->ping_sent && ping < dead ? ping : dead;
}

static void run_timers(struct lc_ws *ws)
{
    int64_t now = lc__mono_us();
    if (ws->state == ST_CONNECTING && ws->attempt_us && now >= ws->attempt_us && now < ws->deadline_us) {
        ws->connect_err = ETIMEDOUT;   /* this address's share is used: the next one */
        ws->attempt_us = 0;
        if (connect_next(ws) == 0)
            return;
    }
    switch (ws->state) {
    case ST_CONNECTING:
    case ST_TLS:
    case ST_UPGRADE:
        if (now >= ws->deadline_us) {
            const char *what = ws->state == ST_CONNECTING ? "connecting to"
                               : ws->state == ST_TLS ? "in the TLS handshake with"
                               : "waiting for the WebSocket upgrade from";
            finish(ws, LC_ERR_TIMEOUT, 0, "timed out after %ld ms %s %s", ws->timeout_ms, what,
                   ws->hostport);
        }
        break;
    case ST_OPEN:
        if (now >= ws->last_rx_us + ms_us(ws->dead_after_ms)) {
            finish(ws, LC_ERR_TIMEOUT, 0, "nothing received from %s for %ld ms", ws->hostport,
                   ws->dead_after_ms);
        } else if (!ws->ping_sent && now >= ws->last_rx_us + ms_us(ws->ping_after_ms)) {
            ws->ping_sent = 1;
            lc_status st = queue_frame(ws, 9, "lc", 2);
            if (st == LC_ERR_NOMEM)
                finish(ws, LC_ERR_NOMEM, 0, "out of memory");
        }
        break;
    case ST_CLOSING:
        if (now >= ws->deadline_us)
            finish(ws, ws->close_reply_due ? ws->close_st : LC_OK, 0, "%s",
                   ws->close_reply_due ? ws->why : "closed (the broker did not answer the close)");
        break;
    case ST_CLOSED:
        break;
    }
}

void lc_ws_process(struct lc_ws *ws, short revents)
{
    if (!ws || ws->state == ST_CLOSED)
        return;
    ws->depth++;
    if (ws->state == ST_CONNECTING)
        connect_step(ws, revents);
    if (ws->state == ST_TLS)
        tls_step(ws);
    if (!ended(ws) && ws->fd >= 0 && ws->state >= ST_UPGRADE && ws->state <= ST_CLOSING) {
        int can_write = (revents & POLLOUT) || (ws->wr_wants_read && (revents & POLLIN)) ||
                        ws->state == ST_UPGRADE;
        if (can_write && out_pending(ws))
            flush_out(ws);
        int can_read = (revents & (POLLIN | POLLERR | POLLHUP)) || (ws->rd_wants_write && (revents & POLLOUT)) ||
                       ws->again || (ws->ssl && SSL_pending(ws->ssl) > 0);
        if (!ended(ws) && can_read)
            do_read(ws);
        /* what reading queued (pongs, a close echo, a ping), try at once */
        if (!ended(ws) && out_pending(ws) && !ws->wr_wants_read)
            flush_out(ws);
        if (!ended(ws) && ws->close_reply_due && !out_pending(ws))
            finish(ws, ws->close_st, 0, "%s", ws->why);
    }
    if (!ended(ws))
        run_timers(ws);
    if (!ended(ws) && ws->fd >= 0 && ws->state == ST_OPEN && out_pending(ws) && !ws->wr_wants_read)
        flush_out(ws);
    if (--ws->depth == 0 && ws->doomed) {
        ws->doomed = 0;
        ws->state = ST_CLOSED;
        lc_ws_free(ws);
    }
}

int lc_ws_is_open(const struct lc_ws *ws) { return ws && ws->state == ST_OPEN && !ws->doomed; }

lc_status lc_ws_send_text(struct lc_ws *ws, const char *data, size_t len)
{
    if (!ws || ws->state != ST_OPEN || ws->doomed)
        return LC_ERR_IO;
    return queue_frame(ws, 1, data, len);
}

void lc_ws_close(struct lc_ws *ws)
{
    if (!ws || ws->doomed || ws->state == ST_CLOSED || ws->state == ST_CLOSING)
        return;
    if (ws->state == ST_OPEN) {
        static const unsigned char normal[2] = {0x03, 0xe8};   /* 1000 */
        if (queue_frame(ws, 8, normal, 2) != LC_OK) {
            /* no room for the close frame: end at the next lc_ws_process */
            ws->state = ST_CLOSING;
            ws->deadline_us = lc__mono_us();
            return;
        }
    } else {
        /* not open yet: nothing to say to the broker; on_close from process */
        release_io(ws);
        lk_buf_reset(&ws->out);
        ws->out_off = 0;
        ws->state = ST_CLOSING;
        ws->deadline_us = lc__mono_us();
        return;
    }
    ws->state = ST_CLOSING;
    long wait = ws->timeout_ms < CLOSE_WAIT_MS ? ws->timeout_ms : CLOSE_WAIT_MS;
    ws->deadline_us = lc__mono_us() + ms_us(wait);
}

void lc_ws_free(struct lc_ws *ws)
{
    if (!ws)
        return;
    if (ws->depth > 0) {
        /* inside one of its callbacks: lc_ws_process frees it on return */
        ws->doomed = 1;
        ws->dec.halt = 1;
        release_io(ws);
        return;
    }
    release_io(ws);
    if (ws->ctx)
        SSL_CTX_free(ws->ctx);
    if (ws->ai_list)
        freeaddrinfo(ws->ai_list);
    lc_ws_decoder_free(&ws->dec);
    lk_buf_free(&ws->in);
    lk_buf_free(&ws->out);
    free(ws->path);
    free(ws->token);
    free(ws);
}
