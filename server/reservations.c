/* reservations.c - bookings on top of their scripts (docs/reservations.md).
 *
 * Every change to a booking (create, cancel, move) and every transition a
 * booking makes (start, end) happens inside one Lua script, as for locks;
 * the windows' starts and ends are deadlines of the expiry timer
 * (events.c). This file checks input, builds the scripts' arguments and
 * shapes their answers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalogue.h"
#include "config.h"
#include "events.h"
#include "ids.h"
#include "lk_mem.h"
#include "lk_text.h"
#include "lk_time.h"
#include "mirror.h"
#include "reservations.h"
#include "store.h"

#define DEVICES_MAX 64
#define USER_ID_MAX 256
#define TEXT_MAX 1024
#define REQUEST_ID_MAX 128
#define WINDOW_MAX_US (366LL * 86400 * 1000000)
#define AHEAD_MAX_US (10LL * 365 * 86400 * 1000000)
#define LIST_LIMIT 100
#define LIST_LIMIT_MAX 1000

enum rsv_kind { R_CREATE, R_CHANGE, R_GET, R_LIST };

struct rsv_call {
    locks_done_fn fn;          /* NULL once abandoned */
    void *ctx;
    enum rsv_kind kind;
    struct store_op *op;
    char id[32];
};

static struct rsv_call *call_new(enum rsv_kind kind, locks_done_fn fn, void *ctx)
{
    struct rsv_call *c = lk_xcalloc(1, sizeof(*c));
    c->kind = kind;
    c->fn = fn;
    c->ctx = ctx;
    return c;
}

/* error: the answer's wire code when it is an error answer, else LK_E_OK */
static void answer_as(struct rsv_call *c, int status, struct lk_buf *b, enum lk_status error)
{
    if (!c->fn)
        return;
    struct locks_result res = {status, b, NULL, NULL, error, NULL};
    c->fn(c->ctx, &res);
}

static void answer(struct rsv_call *c, int status, struct lk_buf *b) { answer_as(c, status, b, LK_E_OK); }

static void answer_text(struct rsv_call *c, int status, const char *text)
{
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_puts(&b, text);
    answer(c, status, &b);
    lk_buf_free(&b);
}

static void answer_error(struct rsv_call *c, enum lk_status s, const char *detail)
{
    if (c->fn)
        locks_fail(c->fn, c->ctx, s, detail);
}

/* 409 {"detail","error":"conflict", member: the booking in the way}. */
static void answer_conflict(struct rsv_call *c, const char *detail, const char *member, const char *json)
{
    struct lk_buf b;
    lk_buf_init(&b, 0);
    locks_error_json(&b, LK_E_CONFLICT, detail);
    if (json && json[0] == '{') {
        b.len--; /* reopen the object */
        lk_buf_printf(&b, ",\"%s\":", member);
        lk_buf_puts(&b, json);
        lk_buf_putc(&b, '}');
    }
    answer_as(c, 409, &b, LK_E_CONFLICT);
    lk_buf_free(&b);
}

static const char *elem(const redisReply *r, size_t i)
{
    if (i >= r->elements || r->element[i]->type != REDIS_REPLY_STRING)
        return NULL;
    return r->element[i]->str;
}

static void script_cb(void *ctx, redisReply *r, enum lk_status s)
{
    struct rsv_call *c = ctx;
    c->op = NULL;
    if (s != LK_E_OK || !r || r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
        if (s == LK_E_OK || s == LK_E_UNAVAILABLE)
            answer_error(c, LK_E_UNAVAILABLE, "Redis is unavailable or not answering; the change may "
                                              "not have been made (retry with the same request_id to be safe)");
        else
            answer_error(c, LK_E_INTERNAL, "the lock store failed; see the broker log");
        free(c);
        return;
    }
    /* a change's last event: reads on this broker wait for the copy to have it */
    if (c->kind == R_CREATE || c->kind == R_CHANGE) {
        const char *last = elem(r, r->elements - 1);
        if (last && last[0] >= '0' && last[0] <= '9' && strchr(last, '-'))
            mirror_note_write(last);
    }
    const char *what = elem(r, 0);
    char msg[160];
    if (c->kind == R_GET) {
        const char *b = elem(r, 1);
        if (b && b[0] == '{') {
            struct lk_buf out;
            lk_buf_init(&out, 0);
            lk_buf_puts(&out, "{\"reservation\":");
            lk_buf_puts(&out, b);
            lk_buf_putc(&out, '}');
            answer(c, 200, &out);
            lk_buf_free(&out);
        } else {
            snprintf(msg, sizeof(msg), "No booking %s", c->id);
            answer_error(c, LK_E_NOT_FOUND, msg);
        }
    } else if (c->kind == R_LIST) {
        char ts[40];
        const char *now = elem(r, 0), *next = elem(r, 1);
        lk_time_format_us(now ? strtoll(now, NULL, 10) : lk_time_now_us(), ts, sizeof(ts));
        struct lk_buf out;
        lk_buf_init(&out, 0);
        lk_buf_puts(&out, "{\"reservations\":[");
        size_t n = 0;
        for (size_t i = 2; i < r->elements; i++) {
            const char *b = elem(r, i);
            if (!b)
                continue;
            if (n++)
                lk_buf_putc(&out, ',');
            lk_buf_puts(&out, b);
        }
        lk_buf_printf(&out, "],\"count\":%zu,\"next_cursor\":", n);
        lk_buf_json_str(&out, next && next[0] ? next : NULL);
        lk_buf_printf(&out, ",\"timestamp\":\"%s\"}", ts);
        answer(c, 200, &out);
        lk_buf_free(&out);
    } else if (!what) {
        answer_error(c, LK_E_INTERNAL, "unexpected reply from the lock store");
    } else if (!strcmp(what, "created") || !strcmp(what, "replay")) {
        answer_text(c, 201, elem(r, 1) ? elem(r, 1) : "{}");
    } else if (!strcmp(what, "ok")) {
        answer_text(c, 200, elem(r, 1) ? elem(r, 1) : "{}");
    } else if (!strcmp(what, "conflict")) {
        answer_conflict(c, elem(r, 1), "conflict", elem(r, 2));
    } else if (!strcmp(what, "finished")) {
        snprintf(msg, sizeof(msg), "booking %s is over (ended or bumped): it cannot change", c->id);
        answer_conflict(c, msg, "reservation", elem(r, 1));
    } else if (!strcmp(what, "invalid")) {
        answer_error(c, LK_E_VALIDATION, elem(r, 1));
    } else if (!strcmp(what, "not_found")) {
        snprintf(msg, sizeof(msg), "No booking %s", c->id);
        answer_error(c, LK_E_NOT_FOUND, msg);
    } else if (!strcmp(what, "forbidden")) {
        answer_error(c, LK_E_FORBIDDEN, "only the booking's owner or an admin may change it");
    } else {
        answer_error(c, LK_E_INTERNAL, "unexpected reply from the lock store");
    }
    free(c);
}

static struct rsv_call *run(struct rsv_call *c, enum store_script script, int argc, const char **argv)
{
    struct store_op *op = store_eval(script, argc, argv, NULL, script_cb, c);
    if (!op)
        return NULL; /* answered (and c freed) already */
    c->op = op;
    return c;
}

void reservations_abandon(struct rsv_call *c)
{
    if (!c)
        return;
    /* a change still runs; only its answer is dropped */
    c->fn = NULL;
    if (c->op) {
        store_cancel(c->op);
        free(c);
    }
}

/* ---- input checks ------------------------------------------------------- */

static const char *get_string(const cJSON *req, const char *name)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, name));
}

int reservations_parse_time(const cJSON *v, int64_t *us)
{
    if (cJSON_IsNumber(v)) {
        double s = v->valuedouble;
        if (!isfinite(s) || s < 0 || s > 1e11)
            return -1;
        *us = (int64_t)llround(s * 1e6);
        return 0;
    }
    if (cJSON_IsString(v))
        return lk_time_parse_us(v->valuestring, us);
    return -1;
}

int reservations_id_valid(const char *id)
{
    if (!id || id[0] != 'r' || !id[1] || strlen(id) > 20)
        return 0;
    for (const char *p = id + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return 1;
}

static int64_t redis_now_us(void) { return lk_time_now_us() + events_clock_offset_us(); }

/* NULL, or what is wrong with a device name (its status in *st). */
static const char *device_problem(const char *dev, enum lk_status *st)
{
    if (!lk_device_name_valid(dev)) {
        *st = LK_E_INVALID_DEVICE;
        return "invalid device name: use 1-128 characters of A-Z a-z 0-9 _ . : -";
    }
    if (catalogue_active() && !catalogue_find(dev)) {
        *st = LK_E_UNKNOWN_DEVICE;
        return "a device is not in the device catalogue";
    }
    return NULL;
}

/* An optional text field: '' (absent) or '=' .. value, as the scripts take
 * them; -1 when present but not a string or too long. */
static int opt_text(struct lk_buf *b, const cJSON *req, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, name);
    lk_buf_reset(b);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v) || strlen(v->valuestring) > TEXT_MAX)
        return -1;
    lk_buf_putc(b, '=');
    lk_buf_puts(b, v->valuestring);
    return 0;
}

struct rsv_call *reservations_create(const cJSON *req, locks_done_fn fn, void *ctx)
{
    char err[200];
    struct lk_buf devs;
    lk_buf_init(&devs, 0);
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(req, "device_names");
    const char *one = get_string(req, "device_name");
    int n = 0;
    const char *bad = NULL;
    enum lk_status st = LK_E_VALIDATION;
    if (cJSON_IsArray(names)) {
        const cJSON *d;
        cJSON_ArrayForEach(d, names)
        {
            if (!cJSON_IsString(d)) {
                bad = "device_names must be an array of strings";
                break;
            }
            if ((bad = device_problem(d->valuestring, &st)))
                break;
            /* a device named twice is booked once */
            int dup = 0;
            for (const cJSON *e = names->child; e != d; e = e->next)
                dup |= !strcmp(e->valuestring, d->valuestring);
            if (dup)
                continue;
            if (n++)
                lk_buf_putc(&devs, ',');
            lk_buf_puts(&devs, d->valuestring);
        }
    } else if (one) {
        if (!(bad = device_problem(one, &st))) {
            lk_buf_puts(&devs, one);
            n = 1;
        }
    }
    if (!bad && (n < 1 || n > DEVICES_MAX))
        bad = "give 'device_names' (1 to 64 devices) or 'device_name'";
    if (bad) {
        lk_buf_free(&devs);
        locks_fail(fn, ctx, st, bad);
        return NULL;
    }
    const char *type = get_string(req, "lock_type"), *user = get_string(req, "user_id");
    const char *request_id = get_string(req, "request_id");
    int prio = lk_lock_type_parse(type);
    int64_t start = 0, end = 0, now = redis_now_us();
    const char *msg = NULL;
    if (prio < 0)
        msg = "lock_type must be MAINTENANCE, QUEUE_EXECUTING, MANUAL_OPERATOR or QUEUE_QUEUED";
    else if (!user || !user[0] || strlen(user) > USER_ID_MAX)
        msg = "user_id is required (1-256 characters)";
    else if (reservations_parse_time(cJSON_GetObjectItemCaseSensitive(req, "start"), &start) ||
             reservations_parse_time(cJSON_GetObjectItemCaseSensitive(req, "end"), &end))
        msg = "start and end are required: RFC 3339 times (Z or an offset) or seconds since the epoch";
    else if (end <= start)
        msg = "end must be after start";
    else if (end - (start > now ? start : now) > WINDOW_MAX_US)
        msg = "a window lasts at most 366 days";
    else if (start > now + AHEAD_MAX_US)
        msg = "a window starts within 10 years";
    else if (cJSON_GetObjectItemCaseSensitive(req, "request_id") &&
             (!request_id || !request_id[0] || strlen(request_id) > REQUEST_ID_MAX))
        msg = "request_id must be a string of 1-128 characters";
    struct lk_buf reason, plan, rid;
    lk_buf_init(&reason, 0);
    lk_buf_init(&plan, 0);
    lk_buf_init(&rid, 0);
    if (!msg && (opt_text(&reason, req, "reason") || opt_text(&plan, req, "plan_uid")))
        msg = "reason and plan_uid must be strings of at most 1024 bytes";
    if (msg) {
        lk_buf_free(&devs);
        lk_buf_free(&reason);
        lk_buf_free(&plan);
        lk_buf_free(&rid);
        snprintf(err, sizeof(err), "%s", msg);
        locks_fail(fn, ctx, LK_E_VALIDATION, err);
        return NULL;
    }
    if (request_id) { /* per user; the length prefix keeps users apart */
        lk_buf_printf(&rid, "dl:rsv:rid:%zu:", strlen(user));
        lk_buf_puts(&rid, user);
        lk_buf_putc(&rid, ':');
        lk_buf_puts(&rid, request_id);
    }
    struct rsv_call *c = call_new(R_CREATE, fn, ctx);
    char key[37], prio_s[16], start_s[24], end_s[24], keep[32];
    ids_uuid4(key);
    snprintf(prio_s, sizeof(prio_s), "%d", prio);
    snprintf(start_s, sizeof(start_s), "%lld", (long long)start);
    snprintf(end_s, sizeof(end_s), "%lld", (long long)end);
    snprintf(keep, sizeof(keep), "%lld", (long long)(cfg.reservation_history * 1000));
    const char *argv[] = {lk_buf_data(&devs), type, prio_s, user, key, start_s, end_s,
                          lk_buf_data(&reason), lk_buf_data(&plan), lk_buf_data(&rid),
                          locks_arg_maxlen(), keep};
    struct rsv_call *ret = run(c, SCRIPT_RESERVE, 12, argv);
    lk_buf_free(&devs);
    lk_buf_free(&reason);
    lk_buf_free(&plan);
    lk_buf_free(&rid);
    return ret;
}

struct rsv_call *reservations_list(const struct rsv_query *q, locks_done_fn fn, void *ctx)
{
    if ((q->device && !lk_device_name_valid(q->device)) || (q->cursor && strlen(q->cursor) > 64) ||
        (q->user && strlen(q->user) > USER_ID_MAX) || (q->states && strlen(q->states) > 128)) {
        locks_fail(fn, ctx, LK_E_VALIDATION, "bad filter (device, user, state or cursor)");
        return NULL;
    }
    long limit = q->limit > 0 ? q->limit : LIST_LIMIT;
    if (limit > LIST_LIMIT_MAX)
        limit = LIST_LIMIT_MAX;
    char from[24], to[24] = "", lim[24];
    snprintf(from, sizeof(from), "%lld", (long long)q->from_us);
    if (q->to_us > 0)
        snprintf(to, sizeof(to), "%lld", (long long)q->to_us);
    snprintf(lim, sizeof(lim), "%ld", limit);
    const char *argv[] = {"list", from, to, q->device ? q->device : "", q->user ? q->user : "",
                          q->states ? q->states : "", lim, q->cursor ? q->cursor : ""};
    return run(call_new(R_LIST, fn, ctx), SCRIPT_RESERVATIONS, 8, argv);
}

static struct rsv_call *by_id(enum rsv_kind kind, const char *id, locks_done_fn fn, void *ctx)
{
    if (!reservations_id_valid(id)) {
        locks_fail(fn, ctx, LK_E_NOT_FOUND, "No such booking (ids look like r17)");
        return NULL;
    }
    struct rsv_call *c = call_new(kind, fn, ctx);
    snprintf(c->id, sizeof(c->id), "%s", id);
    return c;
}

struct rsv_call *reservations_get(const char *id, locks_done_fn fn, void *ctx)
{
    struct rsv_call *c = by_id(R_GET, id, fn, ctx);
    if (!c)
        return NULL;
    const char *argv[] = {"get", id};
    return run(c, SCRIPT_RESERVATIONS, 2, argv);
}

struct rsv_call *reservations_cancel(const char *id, const char *caller, int admin, locks_done_fn fn,
                                     void *ctx)
{
    struct rsv_call *c = by_id(R_CHANGE, id, fn, ctx);
    if (!c)
        return NULL;
    const char *argv[] = {"cancel", id, caller ? caller : "", admin ? "1" : "0", locks_arg_maxlen(),
                          "", "", "", "", locks_arg_delay()};
    return run(c, SCRIPT_RESERVATION, 10, argv);
}

struct rsv_call *reservations_patch(const char *id, const cJSON *req, const char *caller, int admin,
                                    locks_done_fn fn, void *ctx)
{
    const cJSON *sv = cJSON_GetObjectItemCaseSensitive(req, "start");
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(req, "end");
    int64_t start = 0, end = 0;
    char start_s[24] = "", end_s[24] = "";
    if ((sv && reservations_parse_time(sv, &start)) || (ev && reservations_parse_time(ev, &end))) {
        locks_fail(fn, ctx, LK_E_VALIDATION,
                   "start and end must be RFC 3339 times (Z or an offset) or seconds since the epoch");
        return NULL;
    }
    struct lk_buf reason, plan;
    lk_buf_init(&reason, 0);
    lk_buf_init(&plan, 0);
    if (opt_text(&reason, req, "reason") || opt_text(&plan, req, "plan_uid")) {
        lk_buf_free(&reason);
        lk_buf_free(&plan);
        locks_fail(fn, ctx, LK_E_VALIDATION, "reason and plan_uid must be strings of at most 1024 bytes");
        return NULL;
    }
    struct rsv_call *c = by_id(R_CHANGE, id, fn, ctx);
    struct rsv_call *ret = NULL;
    if (c) {
        if (sv)
            snprintf(start_s, sizeof(start_s), "%lld", (long long)start);
        if (ev)
            snprintf(end_s, sizeof(end_s), "%lld", (long long)end);
        const char *argv[] = {"patch", id, caller ? caller : "", admin ? "1" : "0", locks_arg_maxlen(),
                              start_s, end_s, lk_buf_data(&reason), lk_buf_data(&plan), locks_arg_delay()};
        ret = run(c, SCRIPT_RESERVATION, 10, argv);
    }
    lk_buf_free(&reason);
    lk_buf_free(&plan);
    return ret;
}
