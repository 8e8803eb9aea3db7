/* events.c - consumes the event stream and drives expiry.
 *
 * Expiry is exact without a periodic sweep: each broker keeps one timer for
 * the earliest deadline it knows (from expire.lua's answer and from the
 * "exp" field of every event it reads, so leases granted by other brokers
 * count too). When it fires, expire.lua ends every due lease and answers
 * the next deadline. Deadlines are Redis-clock microseconds; the offset to
 * this machine's clock is re-measured from each answer, so a broker whose
 * clock is off fires early (and re-arms) or late by at most that error
 * until the next answer corrects it. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "events.h"
#include "locks.h"
#include "metrics.h"
#include "mirror.h"
#include "lk_log.h"
#include "lk_time.h"
#include "store.h"
#include "ws.h"

#define EXPIRE_BATCH 200

static struct {
    uv_timer_t timer;
    int64_t armed_us;        /* Redis-clock deadline the timer is set for; 0 = none */
    int64_t offset_us;       /* Redis clock minus ours */
    int running;             /* an expire.lua call is in flight */
    int again;               /* run once more when it returns */
    int started;             /* the stream reader has a position */
    int snapshotting;
    unsigned long expired;
    char last_id[48];
} ev;

static void run_expire(void);

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

static void expire_cb(void *ctx, redisReply *r, enum lk_status st)
{
    (void)ctx;
    ev.running = 0;
    if (st != LK_E_OK || !r || r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
        /* Redis is down: store_on_up runs us again when it is back. */
        return;
    }
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
    const char *argv[] = {locks_arg_maxlen(), batch, locks_arg_delay()};
    ev.running = 1;
    if (!store_eval(SCRIPT_EXPIRE, 0, 3, argv, NULL, expire_cb, NULL))
        ev.running = 0;
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
}

/* A snapshot of every lock and its stream position: it (re)builds the read
 * copy; on the first start it is also where the stream reader begins (only
 * events after it are read: clients get earlier state from snapshots). */
static void snapshot_cb(void *ctx, redisReply *r, enum lk_status st)
{
    (void)ctx;
    ev.snapshotting = 0;
    if (st != LK_E_OK || !r || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[1]->type != REDIS_REPLY_STRING)
        return; /* retried on the next connection */
    size_t n = r->elements - 3;
    const char **locks = calloc(n ? n : 1, sizeof(*locks));
    size_t *lens = calloc(n ? n : 1, sizeof(*lens));
    for (size_t i = 0; i < n; i++) {
        locks[i] = r->element[3 + i]->str ? r->element[3 + i]->str : "";
        lens[i] = r->element[3 + i]->len;
    }
    mirror_reset(r->element[1]->str, locks, lens, n);
    free(locks);
    free(lens);
    if (!ev.started) {
        ev.started = 1;
        snprintf(ev.last_id, sizeof(ev.last_id), "%s", r->element[1]->str);
        store_read_from(r->element[1]->str);
    }
}

static void take_snapshot(void)
{
    if (ev.snapshotting)
        return;
    const char *argv[] = {"-", "-1"};
    ev.snapshotting = 1;
    if (!store_eval(SCRIPT_SNAPSHOT, 0, 2, argv, NULL, snapshot_cb, NULL))
        ev.snapshotting = 0;
}

/* The stream connection came back: events may have been lost with Redis (a
 * restart without fsync) or trimmed, so the read copy starts over from a
 * fresh snapshot; the reader itself goes on from where it was, so
 * WebSocket clients still get every event it can read. */
static void on_stream_up(void)
{
    if (ev.started) {
        mirror_invalidate();
        take_snapshot();
    }
}

static void on_up(void)
{
    if (!ev.started || !mirror_ready())
        take_snapshot();
    /* Leases may have ended while Redis was away: end them now. */
    run_expire();
    locks_push_catalogue();
}

void events_init(uv_loop_t *loop)
{
    uv_timer_init(loop, &ev.timer);
    store_on_up(on_up);
    store_on_events(on_events);
    store_on_stream_up(on_stream_up);
}

void events_shutdown(void)
{
    mirror_free();
    uv_timer_stop(&ev.timer);
    uv_close((uv_handle_t *)&ev.timer, NULL);
}

unsigned long events_expired_count(void) { return ev.expired; }
int64_t events_clock_offset_us(void) { return ev.offset_us; }
const char *events_last_id(void) { return ev.last_id; }
