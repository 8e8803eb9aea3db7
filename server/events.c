/* events.c - consumes the event stream and drives expiry.
 *
 * Expiry is exact without a periodic sweep: each broker keeps one timer for
 * the earliest deadline it knows (from expire.lua's answer and from the
 * "exp" field of every event it reads, so leases granted by other brokers
 * count too). When it fires, expire.lua ends every due lease and answers
 * the next deadline. Deadlines are Redis-clock microseconds; the offset to
 * this machine's clock is re-measured from each answer, so a broker whose
 * clock is off fires early (and re-arms) or late by at most that error
 * until the next answer corrects it.
 *
 * The timer is the only thing that ends leases on this broker, so no path
 * may leave it unarmed while deadlines remain: a failed run (Redis stalled
 * or down, an error reply) re-arms it for a retry, 50 ms doubling to 1 s
 * while Redis answers errors or times out; while Redis is known to be
 * unavailable it only checks every 50 ms (nothing is sent) so the run
 * follows the end of a stall at once. A (re)connected command link runs it
 * too, which reads the earliest deadline again.
 *
 * Start-up: the read copy (mirror.c) is built from the lock table in pages
 * (snapshot.lua, SNAPSHOT_PAGE locks per call), so no script blocks Redis
 * for long whatever the number of locks. The first page names the stream's
 * last id L; the stream reader starts after L at once, and the events it
 * reads while the pages come in are kept by the mirror and applied after
 * the last page. A page read later than L may already show some of those
 * events; applying them again is harmless, as each carries the whole lock
 * (acquired, renewed) or its removal. A snapshot that fails is started
 * again, with backoff, until one succeeds. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "events.h"
#include "locks.h"
#include "metrics.h"
#include "mirror.h"
#include "lk_log.h"
#include "lk_text.h"
#include "lk_time.h"
#include "store.h"
#include "webhooks.h"
#include "ws.h"

#define EXPIRE_BATCH 200
#define RETRY_MIN_MS 50
#define RETRY_MAX_MS 1000
#define SNAPSHOT_PAGE "500"

static struct {
    uv_timer_t timer;
    int64_t armed_us;        /* Redis-clock deadline the timer is set for; 0 = none */
    int64_t offset_us;       /* Redis clock minus ours */
    int running;             /* an expire.lua call is in flight */
    int again;               /* run once more when it returns */
    unsigned failures;       /* expiry runs failed in a row */
    int started;             /* the stream reader has a position */
    int stream_was_up;       /* the stream connection has been up before */
    int snapshotting;        /* a snapshot page is in flight */
    int snap_restart;        /* start over when it returns */
    unsigned snap_failures;
    char snap_at[48];        /* the stream position the snapshot is built at */
    char snap_cursor[LK_DEVICE_NAME_MAX + 2];
    uv_timer_t snap_retry;
    int counting;            /* a stats.lua count page is in flight */
    uv_timer_t count_retry;
    unsigned long expired;
    char last_id[48];
} ev;

static void run_expire(void);
static void take_snapshot(void);
static void count_held(void);

/* The delay before retry number `failures` (0 first): doubling, bounded. */
static uint64_t backoff_ms(unsigned failures)
{
    unsigned shift = failures < 5 ? failures : 5;
    uint64_t ms = (uint64_t)RETRY_MIN_MS << shift;
    return ms < RETRY_MAX_MS ? ms : RETRY_MAX_MS;
}

static void timer_cb(uv_timer_t *t)
{
    (void)t;
    ev.armed_us = 0;
    run_expire();
}

void events_arm(int64_t deadline_us)
{
    if (deadline_us <= 0 || (ev.armed_us && deadline_us >= ev.armed_us))
        return;
    ev.armed_us = deadline_us;
    int64_t wait_us = deadline_us - (lk_time_now_us() + ev.offset_us);
    /* +1 ms: never fire before the deadline as Redis sees it */
    uint64_t wait_ms = wait_us > 0 ? (uint64_t)(wait_us / 1000) + 1 : 0;
    uv_timer_start(&ev.timer, timer_cb, wait_ms, 0);
}

/* A run failed: try again soon. While Redis is known to be unavailable
 * the timer only polls store_ready() (store_eval fails at once, nothing is
 * sent), so the first run after a stall is at most RETRY_MIN_MS late. */
static void retry_expire(void)
{
    uint64_t ms = store_ready() ? backoff_ms(ev.failures++) : RETRY_MIN_MS;
    ev.again = 0;
    ev.armed_us = lk_time_now_us() + ev.offset_us + (int64_t)ms * 1000;
    uv_timer_start(&ev.timer, timer_cb, ms, 0);
}

static void expire_cb(void *ctx, redisReply *r, enum lk_status st)
{
    (void)ctx;
    ev.running = 0;
    if (st != LK_E_OK || !r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER ||
        r->element[2]->type != REDIS_REPLY_INTEGER) {
        if (st == LK_E_OK || st == LK_E_INTERNAL)
            lk_warn("expiry: expire.lua failed; retrying");
        retry_expire();
        return;
    }
    ev.failures = 0;
    long long ended = r->element[0]->integer, next = r->element[1]->integer;
    ev.offset_us = r->element[2]->integer - lk_time_now_us();
    ev.expired += (unsigned long)ended;
    if (ended >= EXPIRE_BATCH || ev.again) {
        ev.again = 0;
        run_expire();
        return;
    }
    if (next > 0)
        events_arm(next);
}

static void run_expire(void)
{
    if (ev.running) {
        ev.again = 1;
        return;
    }
    char batch[16];
    snprintf(batch, sizeof(batch), "%d", EXPIRE_BATCH);
    const char *argv[] = {locks_arg_maxlen(), batch, locks_arg_delay(), locks_arg_grace()};
    ev.running = 1;
    uv_timer_stop(&ev.timer); /* this run answers the next deadline */
    ev.armed_us = 0;
    store_eval(SCRIPT_EXPIRE, 0, 4, argv, NULL, expire_cb, NULL);
}

static const char *field(redisReply *fields, const char *name, size_t *len)
{
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        redisReply *k = fields->element[i], *v = fields->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING && !strcmp(k->str, name)) {
            if (len)
                *len = v->len;
            return v->str;
        }
    }
    return NULL;
}

/* The value of "key":"..." or "key":123 in our fixed-layout event JSON. */
static const char *json_field(const char *j, const char *key, char *out, size_t n)
{
    char pat[40];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(j, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    if (*p == 'n')
        return NULL; /* null */
    int quoted = *p == '"';
    p += quoted;
    size_t k = 0;
    while (*p && k + 1 < n && (quoted ? *p != '"' : (*p != ',' && *p != '}'))) {
        if (quoted && *p == '\\' && p[1])
            p++;
        out[k++] = *p++;
    }
    out[k] = '\0';
    return out;
}

/* One log line per event: who, device, type, fence, cause (every broker
 * logs every event it reads; the event id ties them together). */
static void log_event(const char *id, const char *j, size_t len)
{
    (void)len;
    if (LK_LOG_INFO < lk_log_threshold)
        return;
    char action[32], dev[160], user[300], type[32], fence[32], cause[32], plan[160];
    const char *kv[] = {
        "event_id", id,
        "action", json_field(j, "action", action, sizeof(action)),
        "device", json_field(j, "device_name", dev, sizeof(dev)),
        "user", json_field(j, "user_id", user, sizeof(user)),
        "type", json_field(j, "lock_type", type, sizeof(type)),
        "fence", json_field(j, "fence", fence, sizeof(fence)),
        "plan_uid", json_field(j, "plan_uid", plan, sizeof(plan)),
        "cause", json_field(j, "cause", cause, sizeof(cause)),
    };
    lk_log_fields(LK_LOG_INFO, "event", kv, 8);
}

static void on_events(redisReply *entries)
{
    for (size_t i = 0; i < entries->elements; i++) {
        redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        const char *id = e->element[0]->str;
        size_t jlen = 0;
        const char *dev = field(e->element[1], "dev", NULL);
        const char *exp = field(e->element[1], "exp", NULL);
        const char *j = field(e->element[1], "j", &jlen);
        const char *waiter = field(e->element[1], "w", NULL);
        snprintf(ev.last_id, sizeof(ev.last_id), "%s", id);
        if (j) {
            log_event(id, j, jlen);
            metrics_event(j, jlen);
            mirror_apply(id, j, jlen);
            ws_broadcast(id, dev ? dev : "", j, jlen);
        }
        if (exp)
            events_arm(strtoll(exp, NULL, 10));
        if (waiter)
            locks_waiter_event(waiter);
    }
    webhooks_kick();
}

/* ---- the start-up snapshot, in pages (see the top of the file) ---- */

static void snap_retry_cb(uv_timer_t *t)
{
    (void)t;
    take_snapshot();
}

static void snapshot_failed(const char *why)
{
    unsigned n = ev.snap_failures++;
    uint64_t ms = store_ready() ? backoff_ms(n) : 2 * RETRY_MIN_MS;
    if (n == 0)
        lk_warn("events: reading the lock table failed (%s); trying again until it succeeds", why);
    uv_timer_start(&ev.snap_retry, snap_retry_cb, ms, 0);
}

static void snapshot_page(void);

/* One page: {now, last_event_id, total, next_cursor ('' = the end), lock...} */
static void snapshot_cb(void *ctx, redisReply *r, enum lk_status st)
{
    (void)ctx;
    ev.snapshotting = 0;
    if (ev.snap_restart) {
        ev.snap_restart = 0;
        take_snapshot();
        return;
    }
    if (st != LK_E_OK || !r || r->type != REDIS_REPLY_ARRAY || r->elements < 4 ||
        r->element[1]->type != REDIS_REPLY_STRING || r->element[3]->type != REDIS_REPLY_STRING) {
        snapshot_failed(st == LK_E_UNAVAILABLE ? "Redis unavailable" : "bad reply");
        return;
    }
    if (!ev.snap_at[0]) { /* the first page: where the stream is read from */
        snprintf(ev.snap_at, sizeof(ev.snap_at), "%s", r->element[1]->str);
        if (!ev.started) {
            ev.started = 1;
            snprintf(ev.last_id, sizeof(ev.last_id), "%s", ev.snap_at);
            store_read_from(ev.snap_at);
        }
    }
    size_t n = r->elements - 4;
    const char **locks = calloc(n ? n : 1, sizeof(*locks));
    size_t *lens = calloc(n ? n : 1, sizeof(*lens));
    if (!locks || !lens)
        abort();
    for (size_t i = 0; i < n; i++) {
        locks[i] = r->element[4 + i]->str ? r->element[4 + i]->str : "";
        lens[i] = r->element[4 + i]->str ? r->element[4 + i]->len : 0;
    }
    mirror_stage(locks, lens, n);
    free(locks);
    free(lens);
    const char *next = r->element[3]->str;
    if (next[0] && strlen(next) < sizeof(ev.snap_cursor) - 1) {
        snprintf(ev.snap_cursor, sizeof(ev.snap_cursor), "(%s", next);
        snapshot_page();
        return;
    }
    if (mirror_commit(ev.snap_at) != 0) {
        snapshot_failed("too many events while it was read");
        return;
    }
    ev.snap_failures = 0;
    lk_info("events: read copy built: %zu locks at event %s", mirror_count(), ev.snap_at);
}

static void snapshot_page(void)
{
    const char *argv[] = {ev.snap_cursor, SNAPSHOT_PAGE, "page"};
    ev.snapshotting = 1;
    store_eval(SCRIPT_SNAPSHOT, 0, 3, argv, NULL, snapshot_cb, NULL);
}

/* Starts building the read copy over (once the page in flight, if any,
 * has returned). */
static void take_snapshot(void)
{
    if (ev.snapshotting) {
        ev.snap_restart = 1;
        return;
    }
    uv_timer_stop(&ev.snap_retry);
    mirror_begin();
    ev.snap_at[0] = '\0';
    snprintf(ev.snap_cursor, sizeof(ev.snap_cursor), "-");
    snapshot_page();
}

/* The stream connection came back: events may have been lost with Redis (a
 * restart without fsync) or trimmed, so the read copy starts over from a
 * fresh snapshot; the reader itself goes on from where it was, so
 * WebSocket clients still get every event it can read. */
static void on_stream_up(void)
{
    if (ev.started && ev.stream_was_up)
        take_snapshot();
    ev.stream_was_up = 1; /* its first time up is not a comeback */
}

/* The held-lock counters (stats.lua) of a database written before they
 * existed are counted once, a page per call, until stats.lua answers 1
 * (a failed page is tried again a second later). */
static void count_retry_cb(uv_timer_t *t)
{
    (void)t;
    count_held();
}

static void count_cb(void *ctx, redisReply *r, enum lk_status st)
{
    (void)ctx;
    ev.counting = 0;
    if (st == LK_E_OK && r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_INTEGER) {
        if (r->element[0]->integer == 0)
            count_held();
        return;
    }
    uv_timer_start(&ev.count_retry, count_retry_cb, RETRY_MAX_MS, 0);
}

static void count_held(void)
{
    if (ev.counting)
        return;
    const char *argv[] = {SNAPSHOT_PAGE};
    ev.counting = 1;
    store_eval(SCRIPT_STATS, 0, 1, argv, NULL, count_cb, NULL);
}

static void on_up(void)
{
    if (!ev.started || !mirror_ready())
        take_snapshot();
    /* Leases may have ended while Redis was away: end them now. */
    run_expire();
    count_held();
    locks_push_catalogue();
}

void events_init(uv_loop_t *loop)
{
    uv_timer_init(loop, &ev.timer);
    uv_timer_init(loop, &ev.snap_retry);
    uv_timer_init(loop, &ev.count_retry);
    store_on_up(on_up);
    store_on_events(on_events);
    store_on_stream_up(on_stream_up);
}

void events_shutdown(void)
{
    mirror_free();
    uv_timer_stop(&ev.timer);
    uv_close((uv_handle_t *)&ev.timer, NULL);
    uv_timer_stop(&ev.snap_retry);
    uv_close((uv_handle_t *)&ev.snap_retry, NULL);
    uv_timer_stop(&ev.count_retry);
    uv_close((uv_handle_t *)&ev.count_retry, NULL);
}

unsigned long events_expired_count(void) { return ev.expired; }
int64_t events_clock_offset_us(void) { return ev.offset_us; }
const char *events_last_id(void) { return ev.last_id; }
