/* http.c - HTTP routes (SPEC §5).
 *
 * Requests are answered asynchronously: a route validates input and starts
 * a script; the script's callback fills the answer and asks lws for a
 * WRITEABLE callback, where headers and body are written (in chunks for
 * large bodies). If the client goes away first, the script's answer is
 * dropped: the request context is a small heap cell the callback owns,
 * detached from the connection on close. */
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "embedded.h"
#include "http.h"
#include "lk_log.h"
#include "lk_mem.h"
#include "lk_text.h"
#include "lk_time.h"
#include "auth.h"
#include "catalogue.h"
#include "locks.h"
#include "metrics.h"
#include "origin.h"
#include "ics.h"
#include "events.h"
#include "webhooks.h"
#include "ws.h"
#include "shared.h"

#define CHUNK 16384
_Static_assert(CHUNK + 1024 <= HTTP_SEND_MAX, "a write of headers and a chunk is one send()");


/* Every answer is counted by status; a refusal (4xx) also by its wire
 * error code, which comes with the answer (err; LK_E_OK for none). */
static void count_answer(struct http_req *r, int status, enum lk_status err)
{
    metrics_http(status, (double)(lk_time_now_us() - r->started_us) / 1e6);
    if (status < 400 || status == 503 || err == LK_E_OK)
        return;
    metrics_refusal_wire(lk_error_wire(err));
}

/* The answer is ready: ask for a WRITEABLE callback. lws ignores POLLOUT on
 * a connection whose input is held back, so input is let in again first. */
static void want_write(struct http_req *r)
{
    r->answered = 1;
    if (r->rx_paused) {
        r->rx_paused = 0;
        lws_rx_flow_control(r->wsi, 1);
    }
    lws_callback_on_writable(r->wsi);
}

static int redacts(const struct http_req *r) { return auth_active() && !(r->authed && auth_is_admin(&r->user)); }

static void respond(struct http_req *r, int status, struct lk_buf *body, enum lk_status err)
{
    count_answer(r, status, err);
    r->status = status;
    r->ctype = "application/json";
    shared_unref(r->head);
    r->head = NULL;
    lk_buf_reset(&r->resp);
    if (redacts(r))
        auth_redact(lk_buf_data(body), body->len, r->authed ? r->user.user_id : NULL, &r->resp);
    else
        lk_buf_append(&r->resp, lk_buf_data(body), body->len);
    want_write(r);
}

/* A lock call's answer. A shared listing (res->head) is kept by reference
 * and written from there; with its keys to hide from this viewer it is
 * redacted into a copy of its own instead, as every other answer. */
static void respond_result(struct http_req *r, const struct locks_result *res)
{
    if (!res->head || redacts(r)) {
        struct lk_buf flat;
        lk_buf_init(&flat, 0);
        if (res->head)
            locks_result_flat(res, &flat);
        respond(r, res->status, res->head ? &flat : res->body, res->error);
        lk_buf_free(&flat);
        return;
    }
    respond(r, res->status, res->body, res->error);
    r->head = shared_ref(res->head);
}

static void respond_error(struct http_req *r, enum lk_status s, const char *detail)
{
    struct lk_buf b;
    lk_buf_init(&b, 0);
    locks_error_json(&b, s, detail);
    respond(r, lk_error_http(s), &b, s);
    lk_buf_free(&b);
}

/* The client closed (or reset) its connection, or shut down its sending
 * side: its answer may not reach it. POLLRDHUP sees the FIN even behind
 * unread bytes (input is held back while an answer is pending). */
static int peer_gone(struct lws *wsi)
{
    struct pollfd p = {.fd = (int)lws_get_socket_fd(wsi), .events = POLLRDHUP};
    if (p.fd < 0)
        return 1;
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static void done_cb(void *ctx, const struct locks_result *res)
{
    struct http_req *r = ctx;
    r->call = NULL;
    /* A grant for a client that has already hung up (an aborted request
     * whose close lws has not yet seen) is not written into the dead socket:
     * locks gives it back. A client that only half-closed is answered 503
     * (if lws still writes to it): never a grant it would believe in. */
    if (res->undelivered && peer_gone(r->wsi)) {
        *res->undelivered = 1;
        respond_error(r, LK_E_UNAVAILABLE, "the connection closed before the grant could be "
                                           "delivered; it was given back (retry with the same request_id)");
        return;
    }
    respond_result(r, res);
}

/* Starts a lock call; a NULL call means it has answered already. */
#define START(r, expr)                      \
    do {                                    \
        struct locks_call *c_ = (expr);     \
        if (c_)                             \
            (r)->call = c_;                 \
    } while (0)
#define CTX r

/* ---- query strings and bodies --------------------------------------------- */

static const char *query_arg(struct http_req *r, const char *name, char *buf, int len)
{
    char key[64];
    snprintf(key, sizeof(key), "%s=", name);
    return lws_get_urlarg_by_name(r->wsi, key, buf, len);
}

/* The body as a JSON object; answers and returns NULL when it is not. */
static cJSON *body_json(struct http_req *r)
{
    const char *text = lk_buf_data(&r->body);
    if (!lk_utf8_valid(text, r->body.len)) {
        respond_error(r, LK_E_INVALID_JSON, "body is not valid UTF-8");
        return NULL;
    }
    if (lk_json_has_nul(text, r->body.len)) {
        respond_error(r, LK_E_INVALID_JSON, "strings must not contain NUL (\\u0000)");
        return NULL;
    }
    if (lk_json_depth(text, r->body.len, (int)cfg.max_json_depth) > cfg.max_json_depth) {
        char msg[96];
        snprintf(msg, sizeof(msg), "JSON nesting deeper than %ld levels", cfg.max_json_depth);
        respond_error(r, LK_E_TOO_DEEP, msg);
        return NULL;
    }
    /* one JSON value and nothing after it but whitespace */
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, r->body.len, &end, 0);
    if (j && (!end || !lk_json_only_space(end, (size_t)(text + r->body.len - end)))) {
        cJSON_Delete(j);
        j = NULL;
    }
    if (!j) {
        respond_error(r, LK_E_INVALID_JSON, "body is not valid JSON (or has bytes after the JSON value)");
        return NULL;
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        respond_error(r, LK_E_INVALID_JSON, "body must be a JSON object");
        return NULL;
    }
    return j;
}

/* ---- authorization -------------------------------------------------------------- */

/* Open connections, counted per socket (a keep-alive connection between
 * requests counts too). A connection accepted past --max-connections is
 * marked and answered 503 (HTTP) or refused (WebSocket upgrade). */
static int open_conns;
static char counted, over_limit;

void http_connection_opened(struct lws *wsi)
{
    open_conns++;
    lws_set_opaque_user_data(wsi, open_conns > cfg.max_connections ? &over_limit : &counted);
}

void http_connection_closed(struct lws *wsi)
{
    void *mark = lws_get_opaque_user_data(wsi);
    if (mark == &counted || mark == &over_limit) {
        open_conns--;
        lws_set_opaque_user_data(wsi, NULL);
    }
}

int http_over_limit(struct lws *wsi) { return lws_get_opaque_user_data(wsi) == &over_limit; }
int http_connection_count(void) { return open_conns; }

/* With auth on: the token's user must be the request's user_id, and hold
 * the role for the lock type (MAINTENANCE: maintenance, QUEUE_*: queue,
 * MANUAL_OPERATOR: operator; admin may do all). Answers 403 when not. */
static int authorize(struct http_req *r, const cJSON *j, int need_type)
{
    if (!auth_active())
        return 1;
    const char *user = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "user_id"));
    if (user && strcmp(user, r->user.user_id) && !auth_is_admin(&r->user)) {
        respond_error(r, LK_E_FORBIDDEN, "user_id is not the user of this token");
        return 0;
    }
    if (need_type) {
        int prio = lk_lock_type_parse(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "lock_type")));
        if (prio >= 0 && !auth_may_lock(&r->user, prio)) {
            respond_error(r, LK_E_FORBIDDEN, "this token's roles do not allow that lock type");
            return 0;
        }
    }
    return 1;
}

/* ---- routes ------------------------------------------------------------------- */

static void route_request(struct http_req *r)
{
    cJSON *j = body_json(r);
    if (!j)
        return;
    if (!authorize(r, j, 1)) {
        cJSON_Delete(j);
        return;
    }
    START(r, locks_request(j, NULL, done_cb, CTX));
    cJSON_Delete(j);
}

/* release and renew take the old client's query string, or a JSON body. */
static cJSON *holder_args(struct http_req *r)
{
    if (r->body.len)
        return body_json(r);
    cJSON *j = cJSON_CreateObject();
    static const char *const names[] = {"device_name", "lock_key", "user_id", "timeout"};
    for (size_t i = 0; i < 4; i++) {
        char buf[512];
        const char *v = query_arg(r, names[i], buf, sizeof(buf));
        if (!v)
            continue;
        if (i == 3) {
            char *end;
            double t = strtod(v, &end);
            if (end == v || *end || !isfinite(t)) {
                cJSON_Delete(j);
                respond_error(r, LK_E_INVALID_TIMEOUT, "timeout must be a number of seconds");
                return NULL;
            }
            cJSON_AddNumberToObject(j, names[i], t);
        } else {
            cJSON_AddStringToObject(j, names[i], v);
        }
    }
    return j;
}

typedef struct locks_call *(*holder_fn)(const cJSON *req, locks_done_fn fn, void *ctx);

/* release and renew: the holder's key and user, by query string or body */
static void holder_route(struct http_req *r, holder_fn call)
{
    cJSON *j = holder_args(r);
    if (!j)
        return;
    if (authorize(r, j, 0))
        START(r, call(j, done_cb, CTX));
    cJSON_Delete(j);
}

static void route_release(struct http_req *r) { holder_route(r, locks_release); }
static void route_renew(struct http_req *r) { holder_route(r, locks_renew); }

static void route_force_release(struct http_req *r)
{
    if (auth_active() && !auth_is_admin(&r->user)) {
        respond_error(r, LK_E_FORBIDDEN, "force release needs the admin role");
        return;
    }
    cJSON *j = body_json(r);
    if (!j)
        return;
    START(r, locks_force_release(j, done_cb, CTX));
    cJSON_Delete(j);
}

static void route_validate(struct http_req *r)
{
    cJSON *j = body_json(r);
    if (!j)
        return;
    START(r, locks_validate(j, done_cb, CTX));
    cJSON_Delete(j);
}

static void route_status(struct http_req *r)
{
    char cbuf[256], lbuf[32];
    const char *cursor = query_arg(r, "cursor", cbuf, sizeof(cbuf));
    const char *limit_s = query_arg(r, "limit", lbuf, sizeof(lbuf));
    long limit = -1;
    if (limit_s) {
        char *end;
        limit = strtol(limit_s, &end, 10);
        if (*end || limit < 1 || limit > 10000) {
            respond_error(r, LK_E_BAD_REQUEST, "limit must be an integer from 1 to 10000");
            return;
        }
    } else if (cursor) {
        limit = 1000;
    }
    START(r, locks_status(cursor, limit, done_cb, CTX));
}

static void route_device(struct http_req *r)
{
    const char *name = r->path + strlen("/api/locks/device/");
    START(r, locks_device(name, done_cb, CTX));
}

static void route_events(struct http_req *r)
{
    char sbuf[128], lbuf[32], dbuf[256], pbuf[1100];
    const char *since = query_arg(r, "since", sbuf, sizeof(sbuf));
    const char *limit_s = query_arg(r, "limit", lbuf, sizeof(lbuf));
    const char *device = query_arg(r, "device", dbuf, sizeof(dbuf));
    const char *plan = query_arg(r, "plan_uid", pbuf, sizeof(pbuf));
    long limit = 100;
    if (limit_s) {
        char *end;
        limit = strtol(limit_s, &end, 10);
        if (*end || limit < 1 || limit > 1000) {
            respond_error(r, LK_E_BAD_REQUEST, "limit must be an integer from 1 to 1000");
            return;
        }
    }
    START(r, locks_events(since, limit, device, plan, done_cb, CTX));
}

/* GET /api/devices: the catalogue (or, without one, every locked device)
 * with each device's lock. */
static void devices_done(void *ctx, const struct locks_result *res)
{
    struct http_req *r = ctx;
    r->call = NULL;
    if (res->status != 200) {
        respond(r, res->status, res->body, res->error);
        return;
    }
    struct lk_buf flat;
    lk_buf_init(&flat, 0);
    locks_result_flat(res, &flat);
    cJSON *st = cJSON_ParseWithLength(lk_buf_data(&flat), flat.len);
    lk_buf_free(&flat);
    const cJSON *locks = cJSON_GetObjectItemCaseSensitive(st, "locks");
    const char *ts = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st, "timestamp"));
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_puts(&b, "{\"devices\":[");
    size_t n = 0;
    const cJSON *l = locks ? locks->child : NULL;
    size_t ci = 0, cn = catalogue_count();
    /* merge two name-ordered lists: catalogue devices and held locks */
    while (ci < cn || l) {
        const struct catalogue_device *d = catalogue_at(ci);
        const char *lname = l ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(l, "device_name")) : NULL;
        int cmp = !d ? 1 : !lname ? -1 : strcmp(d->name, lname);
        if (n++)
            lk_buf_putc(&b, ',');
        lk_buf_puts(&b, "{\"device_name\":");
        lk_buf_json_str(&b, cmp <= 0 ? d->name : lname);
        lk_buf_puts(&b, ",\"known\":");
        lk_buf_puts(&b, cmp <= 0 ? "true" : (catalogue_active() ? "false" : "null"));
        if (cmp <= 0) {
            lk_buf_puts(&b, ",\"description\":");
            lk_buf_json_str(&b, d->description);
            lk_buf_printf(&b, ",\"preempt_grace_s\":%g,\"lock_delay_s\":%g",
                          d->preempt_grace_s >= 0 ? d->preempt_grace_s : cfg.preempt_grace,
                          d->lock_delay_s >= 0 ? d->lock_delay_s : cfg.lock_delay);
        }
        if (cmp >= 0) {
            char *lj = cJSON_PrintUnformatted(l);
            lk_buf_printf(&b, ",\"locked\":true,\"lock\":%s}", lj);
            free(lj);
            l = l->next;
        } else {
            lk_buf_puts(&b, ",\"locked\":false,\"lock\":null}");
        }
        if (cmp <= 0)
            ci++;
    }
    lk_buf_printf(&b, "],\"total_count\":%zu,\"catalogue\":%s,\"timestamp\":", n,
                  catalogue_active() ? "true" : "false");
    lk_buf_json_str(&b, ts);
    lk_buf_putc(&b, '}');
    cJSON_Delete(st);
    respond(r, 200, &b, LK_E_OK);
    lk_buf_free(&b);
}

static void route_devices(struct http_req *r)
{
    START(r, locks_status(NULL, -1, devices_done, CTX));
}

/* ---- reservations (docs/reservations.md) ---- */

static void rsv_done_cb(void *ctx, const struct locks_result *res)
{
    struct http_req *r = ctx;
    r->rcall = NULL;
    if (!r->ics || res->status != 200) {
        respond(r, res->status, res->body, res->error);
        return;
    }
    /* the calendar feed: the list, as iCalendar */
    cJSON *j = cJSON_ParseWithLength(lk_buf_data(res->body), res->body->len);
    count_answer(r, 200, LK_E_OK);
    r->status = 200;
    r->ctype = "text/calendar; charset=utf-8";
    lk_buf_reset(&r->resp);
    ics_render(cJSON_GetObjectItemCaseSensitive(j, "reservations"), "devlock bookings",
               lk_time_now_us() + events_clock_offset_us(), &r->resp);
    cJSON_Delete(j);
    want_write(r);
}

#define RSTART(r, expr)                     \
    do {                                    \
        struct rsv_call *c_ = (expr);       \
        if (c_)                             \
            (r)->rcall = c_;                \
    } while (0)

/* With auth on: the token's user, and whether it is an admin; without,
 * the user_id the request names (or NULL: anyone). */
static const char *caller(struct http_req *r, const cJSON *j, char *buf, int len, int *admin)
{
    *admin = 0;
    if (auth_active()) {
        *admin = auth_is_admin(&r->user);
        return r->user.user_id;
    }
    const char *u = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "user_id"));
    return u ? u : query_arg(r, "user_id", buf, len);
}

static const char *rsv_id(struct http_req *r) { return r->path + strlen("/api/reservations/"); }

static void route_rsv_create(struct http_req *r)
{
    cJSON *j = body_json(r);
    if (!j)
        return;
    if (authorize(r, j, 1))
        RSTART(r, reservations_create(j, rsv_done_cb, CTX));
    cJSON_Delete(j);
}

/* A time in a query string: RFC 3339, or seconds since the epoch. */
static int query_time(struct http_req *r, const char *name, int64_t *us)
{
    char buf[64];
    const char *v = query_arg(r, name, buf, sizeof(buf));
    if (!v)
        return 0;
    char *end;
    double s = strtod(v, &end);
    cJSON *x = (end != v && !*end) ? cJSON_CreateNumber(s) : cJSON_CreateString(v);
    int rc = reservations_parse_time(x, us);
    cJSON_Delete(x);
    if (rc) {
        respond_error(r, LK_E_VALIDATION, "from and to must be RFC 3339 times or seconds since the epoch");
        return -1;
    }
    return 1;
}

static void rsv_list(struct http_req *r, int ics)
{
    char dbuf[160], ubuf[300], sbuf[160], cbuf[80], lbuf[32];
    struct rsv_query q = {0};
    q.device = query_arg(r, "device", dbuf, sizeof(dbuf));
    q.user = query_arg(r, "user", ubuf, sizeof(ubuf));
    q.states = query_arg(r, "state", sbuf, sizeof(sbuf));
    q.cursor = query_arg(r, "cursor", cbuf, sizeof(cbuf));
    const char *limit = query_arg(r, "limit", lbuf, sizeof(lbuf));
    if (limit) {
        char *end;
        q.limit = strtol(limit, &end, 10);
        if (end == limit || *end || q.limit < 1) {
            respond_error(r, LK_E_VALIDATION, "limit must be a positive integer");
            return;
        }
    }
    /* default window: from now (the feed: from 30 days ago), no end */
    q.from_us = lk_time_now_us() + events_clock_offset_us() - (ics ? 30LL * 86400 * 1000000 : 0);
    if (query_time(r, "from", &q.from_us) < 0 || query_time(r, "to", &q.to_us) < 0)
        return;
    if (ics && !limit)
        q.limit = 1000;
    r->ics = ics;
    RSTART(r, reservations_list(&q, rsv_done_cb, CTX));
}

static void route_rsv_list(struct http_req *r) { rsv_list(r, 0); }
static void route_rsv_ics(struct http_req *r) { rsv_list(r, 1); }
static void route_rsv_get(struct http_req *r) { RSTART(r, reservations_get(rsv_id(r), rsv_done_cb, CTX)); }

static void route_rsv_delete(struct http_req *r)
{
    char buf[300];
    int admin;
    const char *who = caller(r, NULL, buf, sizeof(buf), &admin);
    RSTART(r, reservations_cancel(rsv_id(r), who, admin, rsv_done_cb, CTX));
}

static void route_rsv_patch(struct http_req *r)
{
    cJSON *j = body_json(r);
    if (!j)
        return;
    char buf[300];
    int admin;
    const char *who = caller(r, j, buf, sizeof(buf), &admin);
    RSTART(r, reservations_patch(rsv_id(r), j, who, admin, rsv_done_cb, CTX));
    cJSON_Delete(j);
}

static void route_live(struct http_req *r)
{
    char ts[40];
    lk_time_format_us(lk_time_now_us(), ts, sizeof(ts));
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_printf(&b, "{\"status\":\"alive\",\"timestamp\":\"%s\"}", ts);
    respond(r, 200, &b, LK_E_OK);
    lk_buf_free(&b);
}

/* Readiness: Redis answering, and how many locks are held (read through
 * the snapshot script, limit 0, so it costs one small round trip). */
static void ready_done(void *ctx, const struct locks_result *res)
{
    struct http_req *r = ctx;
    r->call = NULL;
    struct lk_buf b;
    lk_buf_init(&b, 0);
    int ok = res->status == 200;
    long long active = 0;
    if (ok) {
        cJSON *j = cJSON_ParseWithLength(lk_buf_data(res->body), res->body->len);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "total_count");
        /* a double outside long long's range must not be cast (undefined) */
        if (cJSON_IsNumber(t) && t->valuedouble >= 0 && t->valuedouble < 9.2e18)
            active = (long long)t->valuedouble;
        cJSON_Delete(j);
    }
    lk_buf_printf(&b,
                  "{\"status\":\"%s\",\"redis_connected\":%s,\"active_locks\":%lld,"
                  "\"websocket_clients\":%zu,\"redis_reconnects\":%lu}",
                  ok ? "ready" : "not_ready", ok ? "true" : "false", active, ws_client_count(),
                  locks_redis_connects());
    respond(r, ok ? 200 : 503, &b, LK_E_OK);
    lk_buf_free(&b);
}

static void route_ready(struct http_req *r)
{
    START(r, locks_status(NULL, 0, ready_done, CTX));
}

static void metrics_done(void *ctx, const struct locks_result *res)
{
    struct http_req *r = ctx;
    r->call = NULL;
    respond(r, res->status, res->body, res->error);
    r->ctype = "text/plain; version=0.0.4; charset=utf-8";
}

/* GET /metrics: counters, plus locks by type and the stream length read
 * from Redis (zero while Redis is down; devlock_redis_up says so). */
static void route_metrics(struct http_req *r)
{
    START(r, locks_metrics(metrics_done, CTX));
}

static void webhooks_done(void *ctx, const struct locks_result *res)
{
    struct http_req *r = ctx;
    r->webhooks_call = NULL;
    respond(r, res->status, res->body, res->error);
}

/* GET /api/webhooks: each webhook's configuration (never its secret) and
 * delivery state (docs/webhooks.md); admin only when auth is on. */
static void route_webhooks(struct http_req *r)
{
    if (auth_active() && !auth_is_admin(&r->user)) {
        respond_error(r, LK_E_FORBIDDEN, "the webhooks' status needs the admin role");
        return;
    }
    struct webhooks_status_call *c = webhooks_status(webhooks_done, r);
    if (c)
        r->webhooks_call = c;
}

static const char *content_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    static const struct { const char *ext, *type; } types[] = {
        {".html", "text/html; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"}, {".svg", "image/svg+xml"},
        {".png", "image/png"}, {".ico", "image/x-icon"}, {".json", "application/json"},
    };
    for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
        if (!strcmp(dot, types[i].ext))
            return types[i].type;
    return "application/octet-stream";
}

/* GET / and GET /<file> serve the dashboard embedded from server/web/. */
static int route_static(struct http_req *r)
{
    const char *name = strcmp(r->path, "/") ? r->path + 1 : "index.html";
    for (const struct embedded_file *f = embedded_web; f->name; f++) {
        if (strcmp(f->name, name))
            continue;
        r->status = 200;
        r->ctype = content_type(f->name);
        r->static_data = f->data;
        r->static_len = f->len;
        want_write(r);
        return 1;
    }
    return 0;
}

struct route {
    int method;
    const char *path;
    int prefix;
    void (*fn)(struct http_req *);
};

static const struct route routes[] = {
    {LWSHUMETH_POST, "/api/lock/request", 0, route_request},
    {LWSHUMETH_POST, "/api/lock/release", 0, route_release},
    {LWSHUMETH_POST, "/api/lock/renew", 0, route_renew},
    {LWSHUMETH_POST, "/api/lock/force_release", 0, route_force_release},
    {LWSHUMETH_POST, "/api/lock/validate", 0, route_validate},
    {LWSHUMETH_GET, "/api/locks/status", 0, route_status},
    {LWSHUMETH_GET, "/api/locks/device/", 1, route_device},
    {LWSHUMETH_GET, "/api/events", 0, route_events},
    {LWSHUMETH_GET, "/api/health/live", 0, route_live},
    {LWSHUMETH_GET, "/api/health/ready", 0, route_ready},
    {LWSHUMETH_GET, "/metrics", 0, route_metrics},
    {LWSHUMETH_GET, "/api/devices", 0, route_devices},
    {LWSHUMETH_POST, "/api/reservations", 0, route_rsv_create},
    {LWSHUMETH_GET, "/api/reservations", 0, route_rsv_list},
    {LWSHUMETH_GET, "/api/reservations.ics", 0, route_rsv_ics},
    {LWSHUMETH_GET, "/api/reservations/", 1, route_rsv_get},
    {LWSHUMETH_PATCH, "/api/reservations/", 1, route_rsv_patch},
    {LWSHUMETH_DELETE, "/api/reservations/", 1, route_rsv_delete},
    {LWSHUMETH_GET, "/api/webhooks", 0, route_webhooks},
};

/* Routes anyone may call with auth on: liveness/readiness probes and the
 * dashboard's static files (the page asks for a token itself). */
static int public_path(const struct http_req *r)
{
    return !strcmp(r->path, "/api/health/live") || !strcmp(r->path, "/api/health/ready") ||
           (strncmp(r->path, "/api/", 5) != 0 && strcmp(r->path, "/metrics") && strcmp(r->path, "/ws"));
}

/* 1 if a Content-Type names JSON: application/json or application/<x>+json,
 * any case, with or without parameters (charset). */
static int json_media_type(const char *ct)
{
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, "; \t");
    static const char app[] = "application/";
    if (n <= sizeof(app) - 1 || strncasecmp(ct, app, sizeof(app) - 1))
        return 0;
    const char *sub = ct + sizeof(app) - 1;
    size_t sn = n - (sizeof(app) - 1);
    if (!((sn == 4 && !strncasecmp(sub, "json", 4)) || (sn > 5 && !strncasecmp(sub + sn - 5, "+json", 5))))
        return 0;
    const char *rest = ct + n;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    return *rest == '\0' || *rest == ';';
}

/* A body is read as JSON only when it says so: a form or text/plain body is
 * what a web page can send cross-site without a preflight. No Content-Type
 * at all is read as JSON, as the old service did. Answers 415 when not. */
static int body_media_ok(struct http_req *r)
{
    char ct[256];
    if (!r->body.len || lws_hdr_total_length(r->wsi, WSI_TOKEN_HTTP_CONTENT_TYPE) <= 0)
        return 1;
    if (lws_hdr_copy(r->wsi, ct, sizeof(ct), WSI_TOKEN_HTTP_CONTENT_TYPE) > 0 && json_media_type(ct))
        return 1;
    respond_error(r, LK_E_UNSUPPORTED_MEDIA, "the body must be JSON: send Content-Type: application/json");
    return 0;
}

static void dispatch(struct http_req *r)
{
    int path_known = 0;
    if (r->method == LWSHUMETH_OPTIONS) { /* CORS preflight: carries no token */
        struct lk_buf b;
        lk_buf_init(&b, 0);
        lk_buf_puts(&b, "{}");
        respond(r, 204, &b, LK_E_OK);
        lk_buf_free(&b);
        return;
    }
    if (!origin_allowed(r->wsi)) {
        respond_error(r, LK_E_FORBIDDEN, "cross-origin request refused: its Origin is neither this "
                                         "broker's own nor listed in --allowed-origins");
        return;
    }
    if (auth_active() && !public_path(r)) {
        char hdr[600] = "";
        lws_hdr_copy(r->wsi, hdr, sizeof(hdr), WSI_TOKEN_HTTP_AUTHORIZATION);
        const char *token = auth_bearer(hdr);
        char qtoken[512];
        /* a calendar app subscribes by URL and sends no header: the feed
         * (read-only) also takes ?token= */
        if (!token && !strcmp(r->path, "/api/reservations.ics"))
            token = query_arg(r, "token", qtoken, sizeof(qtoken));
        r->authed = auth_lookup(token, &r->user) == 0;
        if (!r->authed) {
            respond_error(r, LK_E_UNAUTHORIZED, "a valid 'Authorization: Bearer <token>' header is required");
            return;
        }
    }
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const struct route *rt = &routes[i];
        int match = rt->prefix ? strncmp(r->path, rt->path, strlen(rt->path)) == 0
                               : strcmp(r->path, rt->path) == 0;
        if (!match)
            continue;
        path_known = 1;
        if (rt->method == r->method || (rt->method == LWSHUMETH_GET && r->method == LWSHUMETH_HEAD)) {
            if ((r->method == LWSHUMETH_POST || r->method == LWSHUMETH_PATCH) && !body_media_ok(r))
                return;
            rt->fn(r);
            return;
        }
    }
    if (path_known) {
        respond_error(r, LK_E_METHOD, "method not allowed on this path");
        return;
    }
    if ((r->method == LWSHUMETH_GET || r->method == LWSHUMETH_HEAD) && route_static(r))
        return;
    respond_error(r, LK_E_NOT_FOUND, "Not Found");
}

/* ---- writing the answer ---------------------------------------------------------- */

/* CORS (ALLOWED_ORIGINS): an allowed Origin is echoed (with credentials);
 * '*' allows any origin, without credentials. None by default. */
static int add_cors(struct lws *wsi, struct http_req *r, unsigned char **p, unsigned char *end)
{
    char origin[256] = "";
    if (!cfg.allowed_origins[0] ||
        lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) <= 0)
        return 0;
    enum origin_listing listed = origin_listed(origin);
    if (listed == ORIGIN_UNLISTED)
        return 0;
    int match = listed == ORIGIN_LISTED;
    const char *allow = match ? origin : "*";
    if (lws_add_http_header_by_name(wsi, (const unsigned char *)"access-control-allow-origin:",
                                    (const unsigned char *)allow, (int)strlen(allow), p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"vary:", (const unsigned char *)"Origin", 6, p, end))
        return -1;
    if (match && lws_add_http_header_by_name(wsi, (const unsigned char *)"access-control-allow-credentials:",
                                             (const unsigned char *)"true", 4, p, end))
        return -1;
    if (r->method == LWSHUMETH_OPTIONS) {
        static const char methods[] = "GET, POST, PATCH, DELETE, OPTIONS", headers[] = "Authorization, Content-Type";
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)"access-control-allow-methods:",
                                        (const unsigned char *)methods, sizeof(methods) - 1, p, end) ||
            lws_add_http_header_by_name(wsi, (const unsigned char *)"access-control-allow-headers:",
                                        (const unsigned char *)headers, sizeof(headers) - 1, p, end) ||
            lws_add_http_header_by_name(wsi, (const unsigned char *)"access-control-max-age:",
                                        (const unsigned char *)"600", 3, p, end))
            return -1;
    }
    return 0;
}

/* Headers shared by both ways of answering. */
static int extra_headers(struct lws *wsi, struct http_req *r, unsigned char **p, unsigned char *end)
{
    if (r->static_data &&
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)"no-cache", 8, p, end))
        return -1;
    if (r->status == 401 &&
        lws_add_http_header_by_name(wsi, (const unsigned char *)"www-authenticate:",
                                    (const unsigned char *)"Bearer", 6, p, end))
        return -1;
    if (add_cors(wsi, r, p, end))
        return -1;
    if (r->close_after &&
        lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close", 5, p, end))
        return -1;
    return 0;
}

/* Closing after an answer, the way nginx does ("lingering close"): a client
 * that writes its whole body before reading (Node's fetch, many libraries)
 * would see a reset instead of the answer if the socket were closed with
 * its unread bytes in the receive buffer. So the write side is shut (the
 * client reads the answer, then end of stream) and input is read and
 * dropped until the client closes, for at most LINGER_US and LINGER_BYTES. */
#define LINGER_US 5000000LL
#define LINGER_BYTES ((size_t)64 << 20)

static int linger(struct lws *wsi, struct http_req *r)
{
    r->answered = 0;
    if (lws_partial_buffered(wsi)) { /* lws still holds part of the answer */
        r->linger_wait = 1;
        lws_callback_on_writable(wsi);
        return 0;
    }
    r->linger_wait = 0;
    /* over TLS the write side stays open (a bare TCP shutdown under TLS
     * reads as a truncation); the answer says "Connection: close" */
    if (!lws_is_ssl(wsi) && shutdown(lws_get_socket_fd(wsi), SHUT_WR) != 0)
        return -1;
    r->lingering = 1;
    r->linger_until_us = lk_time_now_us() + LINGER_US;
    r->linger_bytes = 0;
    if (r->rx_paused) {
        r->rx_paused = 0;
        lws_rx_flow_control(wsi, 1);
    }
    lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, (int)(LINGER_US / 1000000));
    return 0;
}

/* Input while lingering: dropped; -1 (close) once over the bounds. */
static int linger_input(struct http_req *r, size_t len)
{
    r->linger_bytes += len;
    return r->linger_bytes > LINGER_BYTES || lk_time_now_us() > r->linger_until_us ? -1 : 0;
}

static int answered(struct lws *wsi, struct http_req *r)
{
    if (r->close_after)
        return linger(wsi, r);
    if (r->rx_paused) {
        r->rx_paused = 0;
        lws_rx_flow_control(wsi, 1);
    }
    /* keep-alive: ready for the next transaction on this connection */
    r->answered = r->headers_sent = 0;
    r->static_data = NULL;
    r->sent = 0;
    lk_buf_reset(&r->body);
    shared_unref(r->head);
    r->head = NULL;
    lk_buf_reset(&r->resp);
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

int http_refuse_upgrade(struct lws *wsi, enum lk_status s, const char *detail)
{
    struct lk_buf b;
    lk_buf_init(&b, 0);
    locks_error_json(&b, s, detail);
    unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;
    int rc = -1;
    if (b.len < 512 &&
        !lws_add_http_common_headers(wsi, (unsigned)lk_error_http(s), "application/json", b.len, &p, end) &&
        !lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close", 5, &p, end) &&
        !lws_finalize_http_header(wsi, &p, end)) {
        memcpy(p, lk_buf_data(&b), b.len);
        p += b.len;
        rc = lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_FINAL) == (int)(p - start) ? 0 : -1;
    }
    lk_buf_free(&b);
    return rc;
}

/* The answer's bytes [off, off + n) into dst: the embedded file, or the
 * shared head followed by resp. */
static void answer_copy(const struct http_req *r, size_t off, size_t n, unsigned char *dst)
{
    if (r->static_data) {
        memcpy(dst, r->static_data + off, n);
        return;
    }
    const struct piece pc[] = {{r->head ? r->head->data : NULL, r->head ? r->head->len : 0},
                               {lk_buf_data(&r->resp), r->resp.len}};
    pieces_copy(pc, 2, off, n, dst);
}

static size_t answer_len(const struct http_req *r)
{
    if (r->static_data)
        return r->static_len;
    return (r->head ? r->head->len : 0) + r->resp.len;
}

/* A small answer goes out in one write: headers and body together (half
 * the system calls of writing them apart, which is what most answers are). */
static int write_small(struct lws *wsi, struct http_req *r, size_t len)
{
    unsigned char buf[LWS_PRE + 1024 + CHUNK], *start = buf + LWS_PRE, *p = start,
                                               *end = buf + LWS_PRE + 1024 - 1;
    char clen[24];
    int n = snprintf(clen, sizeof(clen), "%zu", len);
    if (lws_add_http_header_status(wsi, (unsigned)r->status, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, (const unsigned char *)r->ctype,
                                     (int)strlen(r->ctype), &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, (const unsigned char *)clen, n,
                                     &p, end) ||
        extra_headers(wsi, r, &p, end) || lws_finalize_http_header(wsi, &p, end))
        return -1;
    if (r->method != LWSHUMETH_HEAD) {
        answer_copy(r, 0, len, p);
        p += len;
    }
    if (lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_FINAL) != (int)(p - start))
        return -1;
    return answered(wsi, r);
}

/* A large answer: the socket's send buffer is made room for it (at most
 * SNDBUF_MAX), once per connection. With the kernel's initial 16 KB
 * (tcp_wmem) a 280 KB answer went out in about 70 partial sends (lws
 * keeping each remainder), one loop turn every 4 of them. The buffer is
 * kernel memory, filled only while the client has not read. */
#define SNDBUF_MAX (1 << 20)

static void roomy_send_buffer(struct lws *wsi, struct http_req *r, size_t len)
{
    if (r->sndbuf >= len || r->sndbuf >= SNDBUF_MAX)
        return;
    int want = len < SNDBUF_MAX ? (int)len : SNDBUF_MAX;
    if (setsockopt(lws_get_socket_fd(wsi), SOL_SOCKET, SO_SNDBUF, &want, sizeof(want)) == 0)
        r->sndbuf = (size_t)want;
    else
        r->sndbuf = SNDBUF_MAX; /* not again */
}

/* Chunks written per WRITEABLE callback at most, while the socket takes
 * them whole (other connections get their turn between). */
#define CHUNKS_PER_TURN 8

static int write_answer(struct lws *wsi, struct http_req *r)
{
    size_t len = answer_len(r);
    if (r->status == 204)
        len = 0;
    if (!r->headers_sent && len <= CHUNK)
        return write_small(wsi, r, len);
    if (!r->headers_sent) {
        unsigned char hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *p = start,
                                           *end = hdr + sizeof(hdr) - 1;
        if (lws_add_http_common_headers(wsi, (unsigned)r->status, r->ctype, len, &p, end) ||
            extra_headers(wsi, r, &p, end) || lws_finalize_write_http_header(wsi, start, &p, end))
            return -1;
        r->headers_sent = 1;
        if (r->method == LWSHUMETH_HEAD) /* the headers of the GET, no body */
            return answered(wsi, r);
        roomy_send_buffer(wsi, r, len);
        lws_callback_on_writable(wsi);
        return 0;
    }
    /* Each chunk is copied to a buffer with LWS_PRE headroom; the next
     * one only if the socket took this one (lws never holds more than a
     * chunk of a partial write). */
    unsigned char chunk[LWS_PRE + CHUNK];
    for (int turn = 0;; turn++) {
        size_t n = len - r->sent < CHUNK ? len - r->sent : CHUNK;
        int final = r->sent + n >= len;
        answer_copy(r, r->sent, n, chunk + LWS_PRE);
        if (lws_write(wsi, chunk + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
            return -1;
        r->sent += n;
        if (final)
            return answered(wsi, r);
        if (turn + 1 >= CHUNKS_PER_TURN || lws_partial_buffered(wsi) || lws_send_pipe_choked(wsi))
            break;
    }
    lws_callback_on_writable(wsi);
    return 0;
}

static void begin(struct http_req *r, struct lws *wsi, const char *uri, size_t len)
{
    if (!r->wsi) {
        r->kind = PSS_HTTP;
        r->sndbuf = 0;
        lk_buf_init(&r->body, 0);
        lk_buf_init(&r->resp, 0);
        r->head = NULL;
    }
    r->authed = 0;
    r->wsi = wsi;
    r->body_over = r->waiting_body = r->answered = r->headers_sent = r->close_after = 0;
    r->ics = 0;
    r->rx_paused = r->linger_wait = r->lingering = r->zero_body = 0;
    r->body_repeats = 0;
    r->chunked = 0;
    r->static_data = NULL;
    r->sent = 0;
    lk_buf_reset(&r->body);
    shared_unref(r->head);
    r->head = NULL;
    lk_buf_reset(&r->resp);
    size_t n = len < sizeof(r->path) - 1 ? len : sizeof(r->path) - 1;
    memcpy(r->path, uri, n);
    r->path[n] = '\0';
    char *unused;
    int ulen;
    r->method = lws_http_get_uri_and_method(wsi, &unused, &ulen);
    r->started_us = lk_time_now_us();
}

int http_callback(struct lws *wsi, enum lws_callback_reasons reason, struct http_req *r,
                  void *in, size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        if (r->wsi && (r->lingering || r->linger_wait))
            return -1; /* a request pipelined behind one answered with close */
        if (r->wsi && (r->call || r->rcall || r->webhooks_call || r->answered)) {
            /* The previous request is not answered yet: lws 4.1 announces
             * its headers again when the bytes of a next (pipelined)
             * request arrive before the answer, and drops those bytes. The
             * pending one is answered with "Connection: close"; the client
             * sends the rest again on a new connection (RFC 9112 §9.3.2). */
            r->close_after = 1;
            return 0;
        }
        begin(r, wsi, in, len);
        if (http_over_limit(wsi)) {
            r->close_after = 1;
            metrics_refusal(REF_connections);
            respond_error(r, LK_E_TOO_MANY, "too many connections; try again later");
            return 0;
        }
        if (len >= sizeof(r->path) - 1) {
            respond_error(r, LK_E_NOT_FOUND, "path too long");
            return 0;
        }
        if (r->method == LWSHUMETH_POST || r->method == LWSHUMETH_PATCH) {
            char cl[32] = "", second[32];
            long long clen = -1;
            /* request smuggling: two Content-Length headers, or one with
             * Transfer-Encoding, could be read two ways; refuse and close */
            int te = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0;
            if (lws_hdr_copy_fragment(wsi, second, sizeof(second), WSI_TOKEN_HTTP_CONTENT_LENGTH, 1) >= 0 ||
                (te && lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0)) {
                r->close_after = 1;
                respond_error(r, LK_E_BAD_REQUEST, "conflicting Content-Length / Transfer-Encoding headers");
                return 0;
            }
            if (lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
                char *end;
                clen = strtoll(cl, &end, 10);
                if (end == cl || *end || clen < 0) {
                    r->close_after = 1;
                    respond_error(r, LK_E_BAD_REQUEST, "Content-Length is not a number");
                    return 0;
                }
            }
            if (clen > 16LL * cfg.max_body) {
                r->close_after = 1; /* the unread body must not become the next request */
                respond_error(r, LK_E_TOO_LARGE, "request body is too large");
                return 0;
            }
            if (clen > cfg.max_body) {
                /* read and drop it, then answer 413: answering while the client
                 * is still sending can lose the answer to a TCP reset */
                r->body_over = 1;
                r->waiting_body = 1;
                return 0;
            }
            if (te) {
                /* lws 4.1 passes a chunked body on with its framing and takes
                 * the rest of the connection for it: decoded here, and the
                 * connection closed after the answer (lingering) */
                char tev[32] = "";
                r->close_after = 1;
                if (lws_hdr_copy(wsi, tev, sizeof(tev), WSI_TOKEN_HTTP_TRANSFER_ENCODING) <= 0 ||
                    strcasecmp(tev, "chunked")) {
                    respond_error(r, LK_E_LENGTH_REQUIRED,
                                  "only 'Transfer-Encoding: chunked' is accepted; or send a Content-Length");
                    return 0;
                }
                r->chunked = 1;
                chunked_init(&r->chunk);
                r->waiting_body = 1;
                return 0;
            }
            if (clen > 0) {
                r->waiting_body = 1;
                return 0;
            }
            r->zero_body = clen == 0; /* lws still calls BODY_COMPLETION once */
            /* No Content-Length and no Transfer-Encoding: the body is empty
             * (RFC 9112 §6.3), but libwebsockets 4.1 reads the rest of the
             * connection as this request's body, so a next request on it
             * would never be parsed. Answer, then close (lingering). */
            if (clen < 0)
                r->close_after = 1;
        } else if (r->method != LWSHUMETH_GET && r->method != LWSHUMETH_HEAD &&
                   r->method != LWSHUMETH_OPTIONS && r->method != LWSHUMETH_DELETE) {
            r->close_after = 1;
            respond_error(r, LK_E_METHOD, "method not allowed");
            return 0;
        }
        dispatch(r);
        return 0;
    }
    case LWS_CALLBACK_HTTP_BODY:
        if (r->lingering)
            return linger_input(r, len);
        if (!r->waiting_body)
            return 0;
        /* lws restarts its content timeout with every packet: a body dripped
         * a byte at a time is cut here, --io-timeout after the request began */
        if (lk_time_now_us() - r->started_us > cfg.io_timeout * 1000000LL) {
            r->waiting_body = 0;
            r->close_after = 1;
            respond_error(r, LK_E_REQUEST_TIMEOUT, "the request body was not sent in time");
            return 0;
        }
        if (r->chunked) {
            enum chunked_status cs = chunked_feed(&r->chunk, in, len, &r->body, (size_t)cfg.max_body);
            if (cs == CHUNKED_MORE)
                return 0;
            r->waiting_body = 0; /* what follows is dropped while lingering */
            if (cs == CHUNKED_DONE)
                dispatch(r);
            else if (cs == CHUNKED_TOO_LARGE)
                respond_error(r, LK_E_TOO_LARGE, "request body is too large");
            else
                respond_error(r, LK_E_BAD_REQUEST, "malformed chunked request body");
            return 0;
        }
        if (r->body_over || r->body.len + len > (size_t)cfg.max_body) {
            r->body_over = 1;
            return 0;
        }
        lk_buf_append(&r->body, in, len);
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (r->lingering)
            return -1; /* all of the body read: nothing left to reset on */
        if (r->zero_body) { /* "Content-Length: 0": already dispatched */
            r->zero_body = 0;
            return 0;
        }
        if (!r->waiting_body) {
            /* lws calls again: the next request is already here, behind a
             * body, while this one's answer is pending (pipelining). lws 4.1
             * would call back without end and cannot parse a request that
             * follows a body on a held connection, so this one is answered
             * with "Connection: close" (the client sends the rest again on
             * a new connection, RFC 9112 §9.3.2) and input is held back
             * until the answer is ready. */
            r->close_after = 1;
            if (!r->rx_paused && !r->answered) {
                r->rx_paused = 1;
                lws_rx_flow_control(wsi, 0);
            }
            /* lws can also loop here without returning to the event loop
             * (a pipelined body it reads from its own buffer): bounded, the
             * connection is dropped rather than the broker stalled */
            return ++r->body_repeats > 100000 ? -1 : 0;
        }
        r->waiting_body = 0;
        if (r->body_over) {
            respond_error(r, LK_E_TOO_LARGE, "request body is too large");
            return 0;
        }
        dispatch(r);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (r->linger_wait)
            return linger(wsi, r);
        if (!r->answered)
            return 0;
        return write_answer(wsi, r);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (r->rcall) {
            reservations_abandon(r->rcall);
            r->rcall = NULL;
        }
        if (r->call) {
            locks_cancel(r->call);
            r->call = NULL;
        }
        if (r->webhooks_call) {
            webhooks_status_cancel(r->webhooks_call);
            r->webhooks_call = NULL;
        }
        if (r->wsi) {
            lk_buf_free(&r->body);
            shared_unref(r->head);
            r->head = NULL;
            lk_buf_free(&r->resp);
        }
        r->wsi = NULL;
        return 0;
    default:
        return 0;
    }
}
