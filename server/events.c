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
 * (acquired, renewed) or its removal. After the locks, the pages of the
 * device queues (a SCAN over dl:{D}:waitq, whole queues per page) are
 * read the same way; the queue facts kept meanwhile name each waiter
 * whole (queued) or the queues it left (unqueued), so they too are
 * harmless to apply again. A snapshot that fails is started again, with
 * backoff, until one succeeds. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "events.h"
#include "keys.h"
#include "locks.h"
#include "mirror.h"
#include "lk_log.h"
#include "lk_text.h"
#include "lk_time.h"
#include "store.h"

#define EXPIRE_BATCH 200
#define RETRY_MIN_MS 50
#define RETRY_MAX_MS 1000
#define SNAPSHOT_PAGE "500"
#define SNAPSHOT_QUEUES_PAGE "200" /* queue keys a SCAN step examines */

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
    char snap_cursor[LK_DEVICE_NAME_MAX + 2]; /* or the SCAN cursor of the queues */
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
    store_eval(SCRIPT_EXPIRE, 4, argv, NULL, expire_cb, NULL);
}

/* ---- reading the stream: each entry parsed once, handed to the consumers ---- */

#define MAX_CONSUMERS 8

static event_fn consumers[MAX_CONSUMERS];
static size_t nconsumers;
static void (*batch_done)(void);

void events_subscribe(event_fn fn)
{
    if (nconsumers == MAX_CONSUMERS)
        abort(); /* a wiring mistake in main.c */
    consumers[nconsumers++] = fn;
}

void events_on_batch(void (*fn)(void)) { batch_done = fn; }

static redisReply *field(redisReply *fields, const char *name)
{
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        redisReply *k = fields->element[i], *v = fields->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING && !strcmp(k->str, name))
            return v;
    }
    return NULL;
}

static const char *field_str(redisReply *fields, const char *name)
{
    redisReply *v = field(fields, name);
    return v ? v->str : NULL;
}

static enum event_action action_kind(const char *a)
{
    if (!strcmp(a, "acquired"))
        return EV_ACQUIRED;
    if (!strcmp(a, "renewed"))
        return EV_RENEWED;
    if (!strcmp(a, "released"))
        return EV_RELEASED;
    if (!strcmp(a, "force_released"))
        return EV_FORCE_RELEASED;
    return EV_OTHER;
}

/* What an entry written before the typed fields existed (a stream kept
 * over an upgrade) needs: its JSON parsed once. The lock object is printed
 * again by cJSON, which may escape differently from Lua's cjson ("/"): the
 * read copy of such a lock shows it so until its next event. */
struct legacy {
    cJSON *root;
    char *lock;
    char fence[32];
};

static void from_json(struct event *e, struct legacy *l)
{
    l->root = cJSON_ParseWithLength(e->json, e->json_len);
    const cJSON *lock = cJSON_GetObjectItemCaseSensitive(l->root, "lock");
    const cJSON *rsv = cJSON_GetObjectItemCaseSensitive(l->root, "reservation");
    const char *s;
    if ((s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(l->root, "action"))))
        e->action = s;
    if ((s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(l->root, "cause"))))
        e->cause = s;
    if (cJSON_IsObject(lock)) {
        if ((s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(lock, "user_id"))))
            e->user = s;
        if ((s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(lock, "lock_type"))))
            e->lock_type = s;
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(lock, "fence");
        if (cJSON_IsNumber(f)) {
            snprintf(l->fence, sizeof(l->fence), "%.0f", f->valuedouble);
            e->fence = l->fence;
        }
        int64_t us;
        if ((s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(lock, "expires_at"))) &&
            lk_time_parse_us(s, &us) == 0)
            e->expiry_us = us;
        l->lock = cJSON_PrintUnformatted(lock);
        if (l->lock) {
            e->lock = l->lock;
            e->lock_len = strlen(l->lock);
        }
    } else if ((s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rsv, "user_id")))) {
        e->user = s;
    }
}

/* A queue fact's fields (an entry with q and no j) into e and w. */
static int parse_fact(redisReply *f, const char *q, struct event *e, struct waiter_fact *w)
{
    const char *s;
    memset(w, 0, sizeof(*w));
    if (!strcmp(q, "L")) { /* a lock's text again: as an event's lock */
        redisReply *l = field(f, "l");
        e->kind = EV_LOCK;
        e->action = "lock";
        e->device = (s = field_str(f, "dev")) ? s : "";
        e->plan = e->user = e->cause = e->lock_type = e->fence = "";
        e->expiry_us = (s = field_str(f, "x")) && s[0] ? strtoll(s, NULL, 10) : 0;
        e->deadline_us = (s = field_str(f, "exp")) ? strtoll(s, NULL, 10) : 0;
        if (!l || l->len < 2 || l->str[0] != '{')
            return -1;
        e->lock = l->str;
        e->lock_len = l->len;
        return 1;
    }
    if (!(w->id = field_str(f, "id")) || !(w->devices = field_str(f, "d")))
        return -1;
    e->kind = !strcmp(q, "+") ? EV_QUEUED : !strcmp(q, "-") ? EV_UNQUEUED : EV_OTHER;
    if (e->kind == EV_OTHER)
        return -1;
    w->score = (s = field_str(f, "s")) ? s : "0";
    w->user = (s = field_str(f, "u")) ? s : "";
    w->lock_type = (s = field_str(f, "t")) ? s : "";
    w->prio = (s = field_str(f, "p")) ? s : "0";
    w->queued = (s = field_str(f, "at")) ? s : "0";
    w->deadline = (s = field_str(f, "dl")) ? s : "0";
    w->plan = (s = field_str(f, "pl")) ? s : "";
    w->broker = (s = field_str(f, "b")) ? s : "";
    w->rid = (s = field_str(f, "r")) ? s : "";
    w->session = (s = field_str(f, "ss")) ? s : "";
    e->action = e->kind == EV_QUEUED ? "queued" : "unqueued";
    e->device = e->plan = e->user = e->cause = e->lock_type = e->fence = "";
    e->deadline_us = (s = field_str(f, "exp")) ? strtoll(s, NULL, 10) : 0;
    e->queue = w;
    return 1;
}

/* An entry's fields into e; 0, 1 for a queue fact (w filled in), or -1
 * when it is neither an event nor a fact. */
static int parse_entry(redisReply *entry, struct event *e, struct waiter_fact *w, struct legacy *l)
{
    memset(e, 0, sizeof(*e));
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
        entry->element[0]->type != REDIS_REPLY_STRING || entry->element[1]->type != REDIS_REPLY_ARRAY)
        return -1;
    redisReply *f = entry->element[1], *j = field(f, "j");
    const char *s;
    e->id = entry->element[0]->str;
    if (!j)
        return (s = field_str(f, "q")) ? parse_fact(f, s, e, w) : -1;
    e->json = j->str;
    e->json_len = j->len;
    e->device = (s = field_str(f, "dev")) ? s : "";
    e->plan = (s = field_str(f, "plan")) ? s : "";
    e->deadline_us = (s = field_str(f, "exp")) ? strtoll(s, NULL, 10) : 0;
    e->waiter = field_str(f, "w");
    e->action = e->user = e->cause = e->lock_type = e->fence = "";
    const char *a = field_str(f, "a");
    if (!a) {
        from_json(e, l);
    } else {
        e->action = a;
        e->user = (s = field_str(f, "u")) ? s : "";
        e->cause = (s = field_str(f, "c")) ? s : "";
        e->lock_type = (s = field_str(f, "t")) ? s : "";
        e->fence = (s = field_str(f, "f")) ? s : "";
        e->expiry_us = (s = field_str(f, "x")) && s[0] ? strtoll(s, NULL, 10) : 0;
        const char *lo = field_str(f, "lo"), *ln = field_str(f, "ln");
        if (lo && ln && lo[0] && ln[0]) {
            unsigned long long off = strtoull(lo, NULL, 10), n = strtoull(ln, NULL, 10);
            if (n >= 2 && off < j->len && n <= j->len - off && j->str[off] == '{' && j->str[off + n - 1] == '}') {
                e->lock = j->str + off;
                e->lock_len = (size_t)n;
            }
        }
    }
    e->kind = action_kind(e->action);
    return 0;
}

/* One log line per event: who, device, type, fence, cause (every broker logs
 * every event it reads; the event id ties them together). */
static void log_event(const struct event *e)
{
    if (LK_LOG_INFO < lk_log_threshold)
        return;
    const char *kv[] = {
        "event_id", e->id,
        "action", e->action,
        "device", e->device[0] ? e->device : NULL,
        "user", e->user[0] ? e->user : NULL,
        "type", e->lock_type[0] ? e->lock_type : NULL,
        "fence", e->fence[0] ? e->fence : NULL,
        "plan_uid", e->plan[0] ? e->plan : NULL,
        "cause", e->cause[0] ? e->cause : NULL,
    };
    lk_log_fields(LK_LOG_INFO, "event", kv, 8);
}

static void on_events(redisReply *entries)
{
    for (size_t i = 0; i < entries->elements; i++) {
        struct event e;
        struct waiter_fact w;
        struct legacy l = {0};
        int got = parse_entry(entries->element[i], &e, &w, &l);
        if (got == 1) { /* a queue fact: the read copy's only */
            snprintf(ev.last_id, sizeof(ev.last_id), "%s", e.id);
            mirror_apply(&e);
            if (e.deadline_us)
                events_arm(e.deadline_us);
        } else if (got == 0) {
            snprintf(ev.last_id, sizeof(ev.last_id), "%s", e.id);
            log_event(&e);
            for (size_t k = 0; k < nconsumers; k++)
                consumers[k](&e);
            if (e.deadline_us)
                events_arm(e.deadline_us);
            if (e.waiter)
                locks_waiter_event(e.waiter);
        } else if (entries->element[i]->type == REDIS_REPLY_ARRAY && entries->element[i]->elements == 2 &&
                   entries->element[i]->element[0]->type == REDIS_REPLY_STRING) {
            snprintf(ev.last_id, sizeof(ev.last_id), "%s", entries->element[i]->element[0]->str);
        }
        cJSON_Delete(l.root);
        cJSON_free(l.lock);
    }
    if (batch_done)
        batch_done();
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

static void snapshot_page(const struct keyset *next);
static void queues_page(void);

/* One page: {now, last_event_id, total, next_cursor ('' = the end), lock...} */
/* A page of either kind has returned: 1 when it is to be used, a reply
 * {now, last_event_id, total, next_cursor, then n x stride strings}. Else a
 * restart asked for meanwhile begins, or the failure is retried. */
static int page_usable(redisReply *r, enum lk_status st, size_t stride)
{
    ev.snapshotting = 0;
    if (ev.snap_restart) {
        ev.snap_restart = 0;
        take_snapshot();
        return 0;
    }
    if (st != LK_E_OK || !r || r->type != REDIS_REPLY_ARRAY || r->elements < 4 ||
        (r->elements - 4) % stride || r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[3]->type != REDIS_REPLY_STRING) {
        snapshot_failed(st == LK_E_UNAVAILABLE ? "Redis unavailable" : "bad reply");
        return 0;
    }
    return 1;
}

static void snapshot_cb(void *ctx, redisReply *r, enum lk_status st)
{
    (void)ctx;
    if (!page_usable(r, st, 1))
        return;
    if (!ev.snap_at[0]) { /* the first page: where the stream is read from */
        snprintf(ev.snap_at, sizeof(ev.snap_at), "%s", r->element[1]->str);
        if (!ev.started) {
            ev.started = 1;
            snprintf(ev.last_id, sizeof(ev.last_id), "%s", ev.snap_at);
            store_read_from(ev.snap_at);
        }
    }
    struct keyset keys;
    keyset_init(&keys);
    size_t n = r->elements - 4 - (size_t)keys_next_page(&keys, r);
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
        snapshot_page(&keys);
        keyset_free(&keys);
        return;
    }
    keyset_free(&keys);
    /* then the waiters, from the first SCAN cursor */
    snprintf(ev.snap_cursor, sizeof(ev.snap_cursor), "0");
    queues_page();
}

/* A page of the queues: {now, last_event_id, 0, next_cursor ('' = the
 * end), then QUEUE_FIELDS strings per queue entry (snapshot.lua)}. */
#define QUEUE_FIELDS 13
static void queues_cb(void *ctx, redisReply *r, enum lk_status st)
{
    (void)ctx;
    if (!page_usable(r, st, QUEUE_FIELDS))
        return;
    for (size_t i = 4; i < r->elements; i += QUEUE_FIELDS) {
        const char *v[QUEUE_FIELDS];
        for (size_t k = 0; k < QUEUE_FIELDS; k++)
            v[k] = r->element[i + k]->type == REDIS_REPLY_STRING ? r->element[i + k]->str : "";
        struct waiter_fact w = {v[1], v[3], v[2], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12]};
        mirror_stage_waiter(v[0], &w);
    }
    const char *next = r->element[3]->str;
    if (next[0] && strlen(next) < sizeof(ev.snap_cursor) - 1) {
        snprintf(ev.snap_cursor, sizeof(ev.snap_cursor), "%s", next);
        queues_page();
        return;
    }
    /* The copy serves reads only once the reader has read up to the
     * stream's end as this last page saw it: before, reads went to Redis,
     * and a copy still missing another broker's later grants would answer
     * less than they did (reads on one broker never go back). */
    mirror_note_write(r->element[1]->str);
    if (mirror_commit(ev.snap_at) != 0) {
        snapshot_failed("too many events while it was read");
        return;
    }
    ev.snap_failures = 0;
    lk_info("events: read copy built: %zu locks, %zu queued at event %s", mirror_count(), mirror_waiter_count(),
            ev.snap_at);
}

/* next: the keys of the page's locks, when the last page named them */
static void snapshot_page(const struct keyset *next)
{
    const char *argv[] = {ev.snap_cursor, SNAPSHOT_PAGE, "page"};
    ev.snapshotting = 1;
    store_eval_keys(SCRIPT_SNAPSHOT, 3, argv, NULL, next, snapshot_cb, NULL);
}

static void queues_page(void)
{
    const char *argv[] = {ev.snap_cursor, SNAPSHOT_QUEUES_PAGE, "queues"};
    ev.snapshotting = 1;
    store_eval(SCRIPT_SNAPSHOT, 3, argv, NULL, queues_cb, NULL);
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
    snapshot_page(NULL);
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
    store_eval(SCRIPT_STATS, 1, argv, NULL, count_cb, NULL);
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
