/* lc_client.c - the client object, status codes, and the HTTP transport
 * (one libcurl easy handle per client, reused so the connection stays
 * alive; a mutex serialises the calls of one client). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pwd.h>
#include <unistd.h>

#include "lc_internal.h"
#include "lk_error.h"
#include "lk_text.h"

/* lc_status must mirror errors.def row by row. */
#define X(name, wire, http, exit_code, desc) \
    _Static_assert((int)LC_ERR_##name == (int)LK_E_##name, "lc_status and errors.def differ at " #name);
#define LC_ERR_OK LC_OK
#include "errors.def"
#undef LC_ERR_OK
#undef X
_Static_assert((int)LC_STATUS_COUNT == (int)LK_E__COUNT, "lc_status and errors.def differ in length");

const char *lc_strerror(lc_status s) { return lk_error_desc((enum lk_status)s); }
const char *lc_status_code(lc_status s) { return lk_error_wire((enum lk_status)s); }
int lc_status_exit_code(lc_status s) { return lk_error_exit((enum lk_status)s); }

const char *lc_lock_type_name(lc_lock_type t)
{
    if (t <= LC_TYPE_DEFAULT || t > LC_QUEUE_QUEUED)
        return NULL;
    return lk_lock_type_name((int)t - 1);
}

/* Case-insensitive since 1.1 ("maintenance" from a command line); the
 * broker's own parser (lk_lock_type_parse) stays exact. */
lc_lock_type lc_lock_type_parse(const char *name)
{
    for (int t = LC_MAINTENANCE; name && t <= LC_QUEUE_QUEUED; t++)
        if (!strcasecmp(name, lc_lock_type_name((lc_lock_type)t)))
            return (lc_lock_type)t;
    return LC_TYPE_DEFAULT;
}

char *lc__strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

void lc__log(lc_log_fn fn, void *ud, int level, const char *fmt, ...)
{
    if (!fn)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fn(level, msg, ud);
}

/* Under c->mu (the HTTP path holds it already). */
static void seterr_locked(lc_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seterr_locked(lc_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
    va_end(ap);
}

void lc__seterr(lc_client *c, const char *fmt, ...)
{
    char msg[LC_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&c->mu);
    memcpy(c->errmsg, msg, sizeof(msg));
    pthread_mutex_unlock(&c->mu);
}

void lc__buf_urlenc(struct lk_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            lk_buf_putc(b, (char)ch);
        } else {
            lk_buf_putc(b, '%');
            lk_buf_putc(b, hex[ch >> 4]);
            lk_buf_putc(b, hex[ch & 15]);
        }
    }
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init_once(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

lc_status lc_client_new_opts(const lc_opts *opts, lc_client **out)
{
    if (!out)
        return LC_ERR_BAD_REQUEST;
    *out = NULL;
    const char *url = opts && opts->url && *opts->url ? opts->url : "http://localhost:60620";
    if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))
        return LC_ERR_BAD_REQUEST;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK)
        return LC_ERR_INTERNAL;

    lc_client *c = calloc(1, sizeof(*c));
    if (!c)
        return LC_ERR_NOMEM;
    if (lc__opts_copy(&c->o, opts)) {
        free(c);
        return LC_ERR_NOMEM;
    }
    const char *user = opts ? opts->user_id : NULL;
    char pwbuf[1024];
    struct passwd pw, *pwp = NULL;
    if (!user || !*user)
        user = getenv("USER");
    if ((!user || !*user) && getpwuid_r(getuid(), &pw, pwbuf, sizeof(pwbuf), &pwp) == 0 && pwp)
        user = pwp->pw_name;
    if (!user || !*user)
        user = "unknown";
    char *u = strdup(url), *uid = strdup(user);
    free(c->o.url);
    free(c->o.user_id);
    c->o.url = u;
    c->o.user_id = uid;
    if (c->o.timeout_ms <= 0)
        c->o.timeout_ms = 5000;
    if (!u || !uid) {
        lc__opts_clear(&c->o);
        free(c);
        return LC_ERR_NOMEM;
    }
    size_t ul = strlen(u);
    while (ul > 0 && u[ul - 1] == '/')
        u[--ul] = '\0';
    c->curl = curl_easy_init();
    if (!c->curl) {
        lc__opts_clear(&c->o);
        free(c);
        return LC_ERR_INTERNAL;
    }
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (c->headers && c->o.token) {
        struct lk_buf h;
        lk_buf_init(&h, 0);
        lk_buf_printf(&h, "Authorization: Bearer %s", c->o.token);
        struct curl_slist *n = h.oom ? NULL : curl_slist_append(c->headers, lk_buf_data(&h));
        lk_buf_free(&h);
        if (!n) {
            curl_slist_free_all(c->headers);
            c->headers = NULL;
        }
    }
    pthread_mutex_init(&c->mu, NULL);
    if (!c->headers) {
        lc_client_free(c);
        return LC_ERR_NOMEM;
    }
    *out = c;
    return LC_OK;
}

/* The 1.0 options are the first keys of the 1.1 ones: the struct is only
 * read (the strings are copied by lc_client_new_opts). */
lc_status lc_client_new(const lc_options *opts, lc_client **out)
{
    struct lc_opts o;
    memset(&o, 0, sizeof(o));
    o.safety_margin_ms = -1;
    o.check_interval_ms = 1000;
    o.session_grace_ms = 10000;
    o.timeout_ms = 5000;
    if (opts) {
        o.url = (char *)opts->url;
        o.token = (char *)opts->token;
        o.user_id = (char *)opts->user_id;
        o.client_name = (char *)opts->client_name;
        o.timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 5000;
        o.log = opts->log;
        o.log_userdata = opts->log_userdata;
    }
    return lc_client_new_opts(&o, out);
}

lc_status lc__client_clone(const lc_client *c, lc_client **out)
{
    return lc_client_new_opts(&c->o, out);
}

void lc__errmsg_copy(lc_client *c, char *buf, size_t len)
{
    pthread_mutex_lock(&c->mu);
    snprintf(buf, len, "%s", c->errmsg);
    pthread_mutex_unlock(&c->mu);
}

void lc_client_free(lc_client *c)
{
    if (!c)
        return;
    if (c->curl) {
        curl_easy_cleanup(c->curl);
        pthread_mutex_destroy(&c->mu);
    }
    curl_slist_free_all(c->headers);
    lc__opts_clear(&c->o);
    free(c);
}

const char *lc_errmsg(const lc_client *c)
{
    return c ? c->errmsg : "no client";
}

const char *lc_client_user(const lc_client *c)
{
    return c ? c->o.user_id : NULL;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct lk_buf *b = ud;
    lk_buf_append(b, p, size * n);
    return b->oom ? 0 : size * n;
}

static lc_status status_of_http(long code)
{
    switch (code) {
    case 400: return LC_ERR_BAD_REQUEST;
    case 401: return LC_ERR_UNAUTHORIZED;
    case 403: return LC_ERR_FORBIDDEN;
    case 404: return LC_ERR_NOT_FOUND;
    case 405: return LC_ERR_METHOD;
    case 409: return LC_ERR_CONFLICT;
    case 408: return LC_ERR_REQUEST_TIMEOUT;
    case 411: return LC_ERR_LENGTH_REQUIRED;
    case 413: return LC_ERR_TOO_LARGE;
    case 422: return LC_ERR_VALIDATION;
    case 503: return LC_ERR_UNAVAILABLE;
    case 504: return LC_ERR_TIMEOUT;
    default: return code >= 500 ? LC_ERR_INTERNAL : LC_ERR_PROTOCOL;
    }
}

/* Certificate and handshake failures: retrying cannot help, and calling
 * them "unreachable" sends people looking at the network. */
static int is_tls_error(CURLcode rc)
{
    switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_USE_SSL_FAILED:
#if LIBCURL_VERSION_NUM >= 0x074d00
    case CURLE_SSL_CLIENTCERT:
#endif
        return 1;
    default:
        return 0;
    }
}

/* permanent: retrying the same call cannot help (see lc_error_fn). */
static int is_permanent(lc_status st)
{
    return st == LC_ERR_UNAUTHORIZED || st == LC_ERR_FORBIDDEN || st == LC_ERR_TLS ||
           st == LC_ERR_BAD_REQUEST;
}

static void set_tls(lc_client *c, CURL *h)
{
    const char *ca = lc__ca_file(&c->o), *dir = lc__ca_path(&c->o);
    if (ca)
        curl_easy_setopt(h, CURLOPT_CAINFO, ca);
    if (dir)
        curl_easy_setopt(h, CURLOPT_CAPATH, dir);
    if (c->o.cert_file) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, c->o.cert_file);
        curl_easy_setopt(h, CURLOPT_SSLKEY, c->o.key_file ? c->o.key_file : c->o.cert_file);
    }
}

static lc_status http_locked(lc_client *c, const char *method, const char *path, const char *body,
                             long timeout_ms, int64_t *sent_us, cJSON **out)
{
    struct lk_buf url, resp;
    lk_buf_init(&url, 0);
    lk_buf_init(&resp, 0);
    lk_buf_puts(&url, c->o.url);
    lk_buf_puts(&url, path);
    if (url.oom) {
        lk_buf_free(&url);
        seterr_locked(c, "out of memory");
        return LC_ERR_NOMEM;
    }
    CURL *h = c->curl;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, lk_buf_data(&url));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    /* TIMEOUT covers the whole call, connect included: a capped renew
     * returns by its deadline whatever part of the exchange stalls */
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < c->o.timeout_ms ? timeout_ms : c->o.timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "liblockclient/" LC_VERSION_STRING);
    set_tls(c, h);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else if (strcmp(method, "GET") != 0 && strcmp(method, "DELETE") != 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
    }
    /* PATCH (with its body) and DELETE (without one) of the reservations */
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    if (sent_us)
        *sent_us = lc__mono_us();
    CURLcode rc = curl_easy_perform(h);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    if (c->o.log) {
        long code = 0, connects = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects);
        lc__log(c->o.log, c->o.log_userdata, 0, "%s %s -> HTTP %ld (%s), new connections %ld", method,
                lk_buf_data(&url), code, curl_easy_strerror(rc), connects);
    }
    lc_status st = LC_OK;
    if (rc != CURLE_OK) {
        const char *why = cerr[0] ? cerr : curl_easy_strerror(rc);
        if (resp.oom) {
            st = LC_ERR_NOMEM;
            seterr_locked(c, "out of memory reading the reply");
        } else if (is_tls_error(rc)) {
            st = LC_ERR_TLS;
            seterr_locked(c, "TLS: %s (%s %s)", why, method, lk_buf_data(&url));
        } else if (rc == CURLE_OPERATION_TIMEDOUT) {
            st = LC_ERR_TIMEOUT;
            seterr_locked(c, "no answer in time: %s %s: %s", method, lk_buf_data(&url), why);
        } else if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL) {
            st = LC_ERR_BAD_REQUEST;
            seterr_locked(c, "bad URL %s: %s", lk_buf_data(&url), why);
        } else {
            st = LC_ERR_UNAVAILABLE;
            seterr_locked(c, "broker unreachable: %s %s: %s", method, lk_buf_data(&url), why);
        }
        goto done;
    }
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    cJSON *j = cJSON_ParseWithLength(lk_buf_data(&resp), resp.len);
    if (code >= 200 && code < 300) {
        if (!j || !cJSON_IsObject(j)) {
            cJSON_Delete(j);
            st = LC_ERR_PROTOCOL;
            seterr_locked(c, "%s %s: reply is not a JSON object", method, path);
            goto done;
        }
        *out = j;
        c->errmsg[0] = '\0';
        goto done;
    }
    const char *wire = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "error"));
    const char *detail = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "detail"));
    if (!detail)
        detail = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "message"));
    st = status_of_http(code);
    if (wire) {
        enum lk_status ls = lk_error_from_wire(wire);
        if (ls != LK_E_INTERNAL || !strcmp(wire, "internal_error"))
            st = (lc_status)ls;
    }
    seterr_locked(c, "%s (HTTP %ld)", detail ? detail : lc_strerror(st), code);
    cJSON_Delete(j);
done:
    lk_buf_free(&url);
    lk_buf_free(&resp);
    return st;
}

/* Runs the error callback (outside the client's mutex, with a copy of the
 * detail: another thread's call may change errmsg meanwhile). */
static void report(lc_client *c, lc_status st, const char *detail)
{
    if (st != LC_OK && c->o.error_cb)
        c->o.error_cb(st, is_permanent(st), detail, c->o.error_userdata);
}

lc_status lc__http_ex(lc_client *c, const char *method, const char *path, const char *body,
                      long timeout_ms, int64_t *sent_us, cJSON **out)
{
    *out = NULL;
    char detail[LC_ERRMSG_MAX];
    pthread_mutex_lock(&c->mu);
    lc_status st = http_locked(c, method, path, body, timeout_ms > 0 ? timeout_ms : c->o.timeout_ms,
                               sent_us, out);
    if (st != LC_OK)
        memcpy(detail, c->errmsg, sizeof(detail));
    pthread_mutex_unlock(&c->mu);
    if (st != LC_OK)
        report(c, st, detail);
    return st;
}

lc_status lc__http(lc_client *c, const char *method, const char *path, const char *body,
                   long extra_ms, cJSON **out)
{
    return lc__http_ex(c, method, path, body, c->o.timeout_ms + extra_ms, NULL, out);
}

lc_status lc__fail(lc_client *c, lc_status st, const char *fmt, ...)
{
    char msg[LC_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&c->mu);
    memcpy(c->errmsg, msg, sizeof(msg));
    pthread_mutex_unlock(&c->mu);
    report(c, st, msg);
    return st;
}
