/* locks.c - the lock model of SPEC §3 on top of the transition scripts.
 *
 * Everything that changes state happens inside one Lua script (server/lua/),
 * which also appends the event; this file only checks input, builds the
 * script arguments, and turns script replies into the JSON the old service
 * answered. No lock state is kept here. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "config.h"
#include "lk_log.h"
#include "lk_mem.h"
#include "lk_text.h"
#include "lk_time.h"
#include "locks.h"

#define USER_ID_MAX 256
#define TEXT_MAX 1024
#define LEASE_MAX_S (10.0 * 365 * 86400) /* ten years: keeps microseconds in range */
#define EVENTS_SCAN_CAP "20000"

/* One call in flight: what the reply handler needs besides the reply. */
struct call {
    locks_done_fn fn;
    void *ctx;
    char device[LK_DEVICE_NAME_MAX + 1];
    long limit;
};

void locks_error_json(struct lk_buf *b, enum lk_status s, const char *detail)
{
    lk_buf_puts(b, "{\"detail\":");
    lk_buf_json_str(b, detail ? detail : lk_error_desc(s));
    lk_buf_puts(b, ",\"error\":");
    lk_buf_json_str(b, lk_error_wire(s));
    lk_buf_putc(b, '}');
}

void locks_fail(locks_done_fn fn, void *ctx, enum lk_status s, const char *detail)
{
    struct lk_buf b;
    lk_buf_init(&b, 0);
    locks_error_json(&b, s, detail);
    struct locks_result res = {lk_error_http(s), &b, NULL};
    fn(ctx, &res);
    lk_buf_free(&b);
}

static void reply_ok(struct call *c, struct lk_buf *b, const char *event_id)
{
    struct locks_result res = {200, b, event_id};
    c->fn(c->ctx, &res);
}

static struct call *call_new(locks_done_fn fn, void *ctx)
{
    struct call *c = lk_xcalloc(1, sizeof(*c));
    c->fn = fn;
    c->ctx = ctx;
    return c;
}

/* Common failure handling of a script reply: frees c and returns 1 when the
 * reply was an outage or error (the caller is answered). */
static int reply_failed(struct call *c, redisReply *r, enum lk_status s)
{
    if (s == LK_E_OK && r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1)
        return 0;
    if (s == LK_E_UNAVAILABLE || s == LK_E_OK /* malformed: treat as outage */)
        locks_fail(c->fn, c->ctx, LK_E_UNAVAILABLE,
                   "Redis is unavailable or not answering; the request was not carried out "
                   "(a retry with the same request is safe)");
    else
        locks_fail(c->fn, c->ctx, LK_E_INTERNAL, "the lock store failed; see the broker log");
    free(c);
    return 1;
}

static const char *elem_str(redisReply *r, size_t i)
{
    if (i >= r->elements || r->element[i]->type != REDIS_REPLY_STRING)
        return NULL;
    return r->element[i]->str;
}

static long long elem_int(redisReply *r, size_t i)
{
    if (i >= r->elements || r->element[i]->type != REDIS_REPLY_INTEGER)
        return 0;
    return r->element[i]->integer;
}

static void now_iso(char *out, size_t n, long long us)
{
    lk_time_format_us(us ? us : lk_time_now_us(), out, n);
}

/* ---- input checks ------------------------------------------------------- */

/* A required string field; answers fn and returns NULL when missing. */
static const char *need_string(const cJSON *req, const char *name, locks_done_fn fn, void *ctx)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, name);
    char msg[160];
    if (!cJSON_IsString(v)) {
        snprintf(msg, sizeof(msg), "field '%s' is required and must be a string", name);
        locks_fail(fn, ctx, LK_E_VALIDATION, msg);
        return NULL;
    }
    return v->valuestring;
}

static int check_device(const char *dev, locks_done_fn fn, void *ctx)
{
    if (lk_device_name_valid(dev))
        return 0;
    char msg[256];
    snprintf(msg, sizeof(msg),
             "invalid device name: use 1-%d characters of A-Z a-z 0-9 _ . : -", LK_DEVICE_NAME_MAX);
    locks_fail(fn, ctx, LK_E_INVALID_DEVICE, msg);
    return -1;
}

static int check_user(const char *user, locks_done_fn fn, void *ctx)
{
    size_t n = strlen(user);
    if (n >= 1 && n <= USER_ID_MAX)
        return 0;
    locks_fail(fn, ctx, LK_E_VALIDATION, "field 'user_id' must be 1-256 characters");
    return -1;
}

/* Optional text (null or string): '' when absent/null, '=' .. text else. */
static int opt_text(const cJSON *req, const char *name, struct lk_buf *out, locks_done_fn fn,
                    void *ctx)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, name);
    lk_buf_reset(out);
    if (!v || cJSON_IsNull(v))
        return 0;
    char msg[160];
    if (!cJSON_IsString(v) || strlen(v->valuestring) > TEXT_MAX) {
        snprintf(msg, sizeof(msg), "field '%s' must be null or a string of at most %d bytes",
                 name, TEXT_MAX);
        locks_fail(fn, ctx, LK_E_VALIDATION, msg);
        return -1;
    }
    lk_buf_putc(out, '=');
    lk_buf_puts(out, v->valuestring);
    return 0;
}

/* The lease in ms from "timeout": 0 = no expiry. -1 when answered (bad). */
static long long lease_ms(const cJSON *req, int absent_means_default, locks_done_fn fn, void *ctx)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(req, "timeout");
    double s;
    if (!t)
        s = absent_means_default ? cfg.default_timeout : -2;
    else if (cJSON_IsNull(t))
        s = cfg.max_timeout > 0 ? cfg.max_timeout : 0;
    else if (cJSON_IsNumber(t))
        s = t->valuedouble;
    else {
        locks_fail(fn, ctx, LK_E_VALIDATION, "field 'timeout' must be a number of seconds or null");
        return -1;
    }
    if (s == -2)
        return -2; /* renew: keep the lock's own lease */
    if (t && cJSON_IsNumber(t) && !(s > 0)) {
        locks_fail(fn, ctx, LK_E_INVALID_TIMEOUT,
                   "timeout must be a positive number of seconds (use null for no expiry)");
        return -1;
    }
    if (cfg.max_timeout > 0 && s > cfg.max_timeout) {
        char msg[128];
        snprintf(msg, sizeof(msg), "timeout must not exceed %g seconds (--max-timeout)",
                 cfg.max_timeout);
        locks_fail(fn, ctx, LK_E_INVALID_TIMEOUT, msg);
        return -1;
    }
    if (s > LEASE_MAX_S || isnan(s)) {
        locks_fail(fn, ctx, LK_E_INVALID_TIMEOUT, "timeout is too large (at most ten years)");
        return -1;
    }
    long long ms = (long long)ceil(s * 1000.0);
    return s > 0 && ms < 1 ? 1 : ms;
}

/* The requester's optional "client": {host, pid, name}, re-serialised. */
static int client_info(const cJSON *req, struct lk_buf *out, locks_done_fn fn, void *ctx)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(req, "client");
    lk_buf_reset(out);
    if (!c || cJSON_IsNull(c))
        return 0;
    const cJSON *host = cJSON_GetObjectItemCaseSensitive(c, "host");
    const cJSON *pid = cJSON_GetObjectItemCaseSensitive(c, "pid");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "name");
    if (!cJSON_IsObject(c) || (host && !cJSON_IsString(host)) || (pid && !cJSON_IsNumber(pid)) ||
        (name && !cJSON_IsString(name)) || (host && strlen(host->valuestring) > 255) ||
        (name && strlen(name->valuestring) > 255)) {
        locks_fail(fn, ctx, LK_E_VALIDATION,
                   "field 'client' must be {\"host\": string, \"pid\": integer, \"name\": string}");
        return -1;
    }
    lk_buf_puts(out, "={\"host\":");
    lk_buf_json_str(out, host ? host->valuestring : NULL);
    if (pid)
        lk_buf_printf(out, ",\"pid\":%lld", (long long)pid->valuedouble);
    else
        lk_buf_puts(out, ",\"pid\":null");
    lk_buf_puts(out, ",\"name\":");
    lk_buf_json_str(out, name ? name->valuestring : NULL);
    lk_buf_putc(out, '}');
    return 0;
}

/* ---- request ------------------------------------------------------------ */

static void request_cb(void *ctx, redisReply *r, enum lk_status s)
{
    struct call *c = ctx;
    if (reply_failed(c, r, s))
        return;
    struct lk_buf b;
    lk_buf_init(&b, 0);
    if (elem_int(r, 0) == 1) {
        const char *lj = elem_str(r, 1), *preempted = elem_str(r, 4), *exp = elem_str(r, 5);
        cJSON *lock = cJSON_Parse(lj ? lj : "{}");
        const cJSON *key = cJSON_GetObjectItemCaseSensitive(lock, "lock_key");
        lk_buf_puts(&b, "{\"success\":true,\"lock_key\":");
        lk_buf_json_str(&b, cJSON_IsString(key) ? key->valuestring : NULL);
        lk_buf_printf(&b, ",\"message\":\"Lock acquired for %s\",\"expires_at\":", c->device);
        lk_buf_json_str(&b, exp);
        lk_buf_printf(&b, ",\"fence\":%lld,\"lock\":%s", elem_int(r, 2), lj ? lj : "null");
        if (preempted)
            lk_buf_printf(&b, ",\"preempted\":%s", preempted);
        lk_buf_putc(&b, '}');
        cJSON_Delete(lock);
        lk_info("granted device=%s fence=%lld%s", c->device, elem_int(r, 2),
                preempted ? " preempted=yes" : "");
    } else {
        const char *hj = elem_str(r, 1);
        cJSON *h = cJSON_Parse(hj ? hj : "{}");
        const cJSON *user = cJSON_GetObjectItemCaseSensitive(h, "user_id");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(h, "lock_type");
        struct lk_buf msg;
        lk_buf_init(&msg, 0);
        lk_buf_printf(&msg, "Device %s is locked by %s (%s)", c->device,
                      cJSON_IsString(user) ? user->valuestring : "?",
                      cJSON_IsString(type) ? type->valuestring : "?");
        lk_buf_puts(&b, "{\"success\":false,\"lock_key\":null,\"message\":");
        lk_buf_json_str(&b, lk_buf_data(&msg));
        lk_buf_printf(&b, ",\"expires_at\":null,\"fence\":null,\"holder\":%s}", hj ? hj : "null");
        lk_buf_free(&msg);
        cJSON_Delete(h);
    }
    reply_ok(c, &b, NULL);
    lk_buf_free(&b);
    free(c);
}

struct store_op *locks_request(const cJSON *req, locks_done_fn fn, void *ctx)
{
    const char *dev, *type, *user;
    if (!(dev = need_string(req, "device_name", fn, ctx)) ||
        !(type = need_string(req, "lock_type", fn, ctx)) ||
        !(user = need_string(req, "user_id", fn, ctx)))
        return NULL;
    if (check_device(dev, fn, ctx) || check_user(user, fn, ctx))
        return NULL;
    int prio = lk_lock_type_parse(type);
    if (prio < 0) {
        locks_fail(fn, ctx, LK_E_VALIDATION,
                   "field 'lock_type' must be one of MAINTENANCE, QUEUE_EXECUTING, "
                   "MANUAL_OPERATOR, QUEUE_QUEUED");
        return NULL;
    }
    long long lease = lease_ms(req, 1, fn, ctx);
    if (lease < 0)
        return NULL;
    struct lk_buf reason, plan, client;
    lk_buf_init(&reason, 0);
    lk_buf_init(&plan, 0);
    lk_buf_init(&client, 0);
    struct store_op *op = NULL;
    if (opt_text(req, "reason", &reason, fn, ctx) == 0 && opt_text(req, "plan_uid", &plan, fn, ctx) == 0 &&
        client_info(req, &client, fn, ctx) == 0) {
        char keys[2][LK_DEVICE_NAME_MAX + 32], prio_s[16], lease_s[32], maxlen[32], lock_key[37];
        uuid_t u;
        uuid_generate_random(u);
        uuid_unparse_lower(u, lock_key);
        snprintf(keys[0], sizeof(keys[0]), "dl:{%s}:lock", dev);
        snprintf(keys[1], sizeof(keys[1]), "dl:{%s}:fence", dev);
        snprintf(prio_s, sizeof(prio_s), "%d", prio);
        snprintf(lease_s, sizeof(lease_s), "%lld", lease);
        snprintf(maxlen, sizeof(maxlen), "%ld", cfg.stream_maxlen);
        const char *argv[] = {keys[0], keys[1], dev, type, prio_s, user, lock_key, lease_s,
                              lk_buf_data(&reason), lk_buf_data(&plan), lk_buf_data(&client), maxlen};
        struct call *c = call_new(fn, ctx);
        snprintf(c->device, sizeof(c->device), "%s", dev);
        op = store_eval(SCRIPT_ACQUIRE, 2, 12, argv, NULL, request_cb, c);
    }
    lk_buf_free(&reason);
    lk_buf_free(&plan);
    lk_buf_free(&client);
    return op;
}

/* ---- release and renew ------------------------------------------------------ */

/* Maps the scripts' {-1}/{-2}/{-3} refusals; returns 1 when answered. */
static int refused(struct call *c, long long code)
{
    char msg[256];
    switch (code) {
    case -1:
        snprintf(msg, sizeof(msg), "No lock found for device %s", c->device);
        locks_fail(c->fn, c->ctx, LK_E_NOT_FOUND, msg);
        break;
    case -2: locks_fail(c->fn, c->ctx, LK_E_FORBIDDEN, "Invalid lock key"); break;
    case -3: locks_fail(c->fn, c->ctx, LK_E_FORBIDDEN, "Not authorized to release this lock"); break;
    default: return 0;
    }
    free(c);
    return 1;
}

static void release_cb(void *ctx, redisReply *r, enum lk_status s)
{
    struct call *c = ctx;
    if (reply_failed(c, r, s) || refused(c, elem_int(r, 0)))
        return;
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_printf(&b, "{\"success\":true,\"message\":\"Lock released for %s\"}", c->device);
    lk_info("released device=%s", c->device);
    reply_ok(c, &b, NULL);
    lk_buf_free(&b);
    free(c);
}

static void renew_cb(void *ctx, redisReply *r, enum lk_status s)
{
    struct call *c = ctx;
    if (reply_failed(c, r, s) || refused(c, elem_int(r, 0)))
        return;
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_printf(&b, "{\"success\":true,\"message\":\"Lock renewed for %s\",\"expires_at\":",
                  c->device);
    lk_buf_json_str(&b, elem_str(r, 4));
    const char *lj = elem_str(r, 1);
    lk_buf_printf(&b, ",\"fence\":%lld,\"lock\":%s}", elem_int(r, 2), lj ? lj : "null");
    reply_ok(c, &b, NULL);
    lk_buf_free(&b);
    free(c);
}

static struct store_op *holder_call(const cJSON *req, int renew, locks_done_fn fn, void *ctx)
{
    const char *dev, *key, *user;
    if (!(dev = need_string(req, "device_name", fn, ctx)) ||
        !(key = need_string(req, "lock_key", fn, ctx)) ||
        !(user = need_string(req, "user_id", fn, ctx)))
        return NULL;
    if (check_device(dev, fn, ctx))
        return NULL;
    char lockkey[LK_DEVICE_NAME_MAX + 32], maxlen[32], lease_s[32] = "";
    snprintf(lockkey, sizeof(lockkey), "dl:{%s}:lock", dev);
    snprintf(maxlen, sizeof(maxlen), "%ld", cfg.stream_maxlen);
    struct call *c;
    if (renew) {
        long long lease = lease_ms(req, 0, fn, ctx);
        if (lease == -1)
            return NULL;
        if (lease >= 0)
            snprintf(lease_s, sizeof(lease_s), "%lld", lease);
        const char *argv[] = {lockkey, dev, key, user, lease_s, maxlen};
        c = call_new(fn, ctx);
        snprintf(c->device, sizeof(c->device), "%s", dev);
        return store_eval(SCRIPT_RENEW, 1, 6, argv, NULL, renew_cb, c);
    }
    const char *argv[] = {lockkey, dev, key, user, maxlen};
    c = call_new(fn, ctx);
    snprintf(c->device, sizeof(c->device), "%s", dev);
    return store_eval(SCRIPT_RELEASE, 1, 5, argv, NULL, release_cb, c);
}

struct store_op *locks_release(const cJSON *req, locks_done_fn fn, void *ctx)
{
    return holder_call(req, 0, fn, ctx);
}

struct store_op *locks_renew(const cJSON *req, locks_done_fn fn, void *ctx)
{
    return holder_call(req, 1, fn, ctx);
}

/* ---- reads ------------------------------------------------------------------- */

static void status_cb(void *ctx, redisReply *r, enum lk_status s)
{
    struct call *c = ctx;
    if (reply_failed(c, r, s))
        return;
    char ts[40];
    now_iso(ts, sizeof(ts), elem_int(r, 0));
    const char *event_id = elem_str(r, 1);
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_puts(&b, "{\"locks\":[");
    size_t n = 0;
    const char *last = NULL;
    for (size_t i = 3; i < r->elements; i++) {
        const char *lj = elem_str(r, i);
        if (!lj)
            continue;
        if (n++)
            lk_buf_putc(&b, ',');
        lk_buf_puts(&b, lj);
        last = lj;
    }
    /* Without paging, total_count is the number listed (old behaviour);
     * with paging it is every held lock. */
    lk_buf_printf(&b, "],\"total_count\":%lld,\"timestamp\":\"%s\"",
                  c->limit < 0 ? (long long)n : elem_int(r, 2), ts);
    if (c->limit >= 0) {
        lk_buf_puts(&b, ",\"next_cursor\":");
        cJSON *l = (last && (long)n >= c->limit) ? cJSON_Parse(last) : NULL;
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(l, "device_name");
        lk_buf_json_str(&b, cJSON_IsString(d) ? d->valuestring : NULL);
        cJSON_Delete(l);
    }
    lk_buf_putc(&b, '}');
    reply_ok(c, &b, event_id ? event_id : "0-0");
    lk_buf_free(&b);
    free(c);
}

struct store_op *locks_status(const char *cursor, long limit, locks_done_fn fn, void *ctx)
{
    char start[LK_DEVICE_NAME_MAX + 2] = "-", lim[32];
    if (cursor && cursor[0]) {
        if (!lk_device_name_valid(cursor)) {
            locks_fail(fn, ctx, LK_E_BAD_REQUEST, "cursor must be a device name from next_cursor");
            return NULL;
        }
        snprintf(start, sizeof(start), "(%s", cursor);
    }
    snprintf(lim, sizeof(lim), "%ld", limit);
    const char *argv[] = {start, lim};
    struct call *c = call_new(fn, ctx);
    c->limit = limit;
    return store_eval(SCRIPT_SNAPSHOT, 0, 2, argv, NULL, status_cb, c);
}

static void device_cb(void *ctx, redisReply *r, enum lk_status s)
{
    struct call *c = ctx;
    if (reply_failed(c, r, s))
        return;
    char ts[40];
    now_iso(ts, sizeof(ts), elem_int(r, 0));
    const char *lj = elem_str(r, 1);
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_printf(&b, "{\"device_name\":\"%s\",\"locked\":%s,\"lock\":%s,\"timestamp\":\"%s\"}",
                  c->device, lj ? "true" : "false", lj ? lj : "null", ts);
    reply_ok(c, &b, NULL);
    lk_buf_free(&b);
    free(c);
}

struct store_op *locks_device(const char *dev, locks_done_fn fn, void *ctx)
{
    if (check_device(dev, fn, ctx))
        return NULL;
    char key[LK_DEVICE_NAME_MAX + 32];
    snprintf(key, sizeof(key), "dl:{%s}:lock", dev);
    const char *argv[] = {key};
    struct call *c = call_new(fn, ctx);
    snprintf(c->device, sizeof(c->device), "%s", dev);
    return store_eval(SCRIPT_DEVICE, 1, 1, argv, NULL, device_cb, c);
}

/* 1 if s looks like a stream id "ms-seq". */
static int stream_id_valid(const char *s)
{
    const char *p = s;
    if (!*p || strlen(s) > 42)
        return 0;
    while (*p >= '0' && *p <= '9')
        p++;
    if (p == s || *p != '-')
        return 0;
    const char *q = ++p;
    while (*p >= '0' && *p <= '9')
        p++;
    return p != q && *p == '\0';
}

static void events_cb(void *ctx, redisReply *r, enum lk_status s)
{
    struct call *c = ctx;
    if (reply_failed(c, r, s))
        return;
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_puts(&b, "{\"events\":[");
    size_t n = 0;
    for (size_t i = 1; i + 1 < r->elements; i += 2) {
        const char *id = elem_str(r, i), *j = elem_str(r, i + 1);
        if (!id || !j || j[0] != '{')
            continue;
        if (n++)
            lk_buf_putc(&b, ',');
        lk_buf_printf(&b, "{\"event_id\":\"%s\",%s", id, j + 1);
    }
    const char *last = elem_str(r, 0);
    lk_buf_printf(&b, "],\"count\":%zu,\"last_event_id\":", n);
    lk_buf_json_str(&b, last && last[0] ? last : NULL);
    lk_buf_putc(&b, '}');
    reply_ok(c, &b, NULL);
    lk_buf_free(&b);
    free(c);
}

struct store_op *locks_events(const char *since, long limit, const char *device,
                              const char *plan_uid, locks_done_fn fn, void *ctx)
{
    char start[64] = "-", lim[32];
    if (since && since[0]) {
        if (!stream_id_valid(since)) {
            locks_fail(fn, ctx, LK_E_BAD_REQUEST, "since must be an event_id such as 1763892000123-0");
            return NULL;
        }
        snprintf(start, sizeof(start), "(%s", since);
    }
    if (device && device[0] && check_device(device, fn, ctx))
        return NULL;
    if (plan_uid && strlen(plan_uid) > TEXT_MAX) {
        locks_fail(fn, ctx, LK_E_BAD_REQUEST, "plan_uid is too long");
        return NULL;
    }
    snprintf(lim, sizeof(lim), "%ld", limit);
    const char *argv[] = {start, lim, device ? device : "", plan_uid ? plan_uid : "", EVENTS_SCAN_CAP};
    struct call *c = call_new(fn, ctx);
    return store_eval(SCRIPT_EVENTS, 0, 5, argv, NULL, events_cb, c);
}
