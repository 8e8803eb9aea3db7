/* locks.c - the lock model of SPEC §3 on top of the transition scripts.
 *
 * Everything that changes state happens inside one Lua script (server/lua/),
 * which also appends the event and builds the reply body; this file checks
 * input, builds script arguments, and follows queued requests: a request
 * that waits is a waiter in Redis, served by whichever broker's script frees
 * the device; this broker learns of the grant from the event stream (its
 * `w` field) or asks when the wait's deadline passes. No lock state is kept
 * here. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalogue.h"
#include "config.h"
#include "events.h"
#include "ids.h"
#include "keys.h"
#include "lk_log.h"
#include "lk_mem.h"
#include "lk_text.h"
#include "lk_time.h"
#include "locks.h"
#include "metrics.h"
#include "mirror.h"
#include "shared.h"
#include "store.h"

#define USER_ID_MAX 256
#define TEXT_MAX 1024
#define GROUP_MAX 64
#define REQUEST_ID_MAX 128
#define LEASE_MAX_S (10.0 * 365 * 86400) /* ten years: keeps microseconds in range */
#define EVENTS_SCAN_CAP "20000"
#define PID_MAX 4294967295.0      /* any OS's process id fits */
#define FENCE_MAX 9007199254740992.0 /* 2^53: exact in a double, in JSON and in Lua */
#define READ_PAGE 500             /* at most this many locks per status script */
#define READS_PAGING_MAX 2        /* status reads paging from Redis at once */

enum call_kind { K_REQUEST, K_HOLDER, K_STATUS, K_DEVICE, K_VALIDATE, K_EVENTS, K_UNWAIT, K_RESUME,
                 K_ATTACH, K_METRICS, K_OTHER };

struct locks_call {
    locks_done_fn fn;          /* NULL once cancelled */
    locks_resume_fn resume_fn; /* K_RESUME, instead of fn */
    locks_attach_fn attach_fn; /* K_ATTACH, instead of fn */
    void *ctx;
    enum call_kind kind;
    struct store_op *op;       /* script in flight */
    char device[LK_DEVICE_NAME_MAX + 1];
    long limit;
    long long fence;           /* validate */
    /* a queued request */
    char waiter[32];
    char lock_key[37], user_id[USER_ID_MAX + 1];
    int waiting;
    /* One unwait script at a time; what is asked for meanwhile is kept and
     * sent when its reply comes, unless that reply ended the wait. */
    int recheck;               /* a grant event came while a script was in flight */
    int cancel_pending;        /* the wait ended (deadline, requester gone) meanwhile */
    uv_timer_t timer;
    int has_timer;             /* timer initialised: closed by call_end */
    struct locks_call *prev, *next;   /* on lk.waiting or lk.reads */
    /* a status read of more than READ_PAGE locks (see locks_status) */
    int reading;               /* on lk.reads: the copy answers it once ready */
    int paging;                /* meanwhile reading Redis, a page at a time */
    int timed_out;             /* waited --redis-timeout-ms: pages when its turn comes */
    char cursor[LK_DEVICE_NAME_MAX + 2];  /* '-' or '(' .. the last device read
                                           * (device: the cursor the read began at) */
    struct lk_buf acc;         /* the locks read so far, comma-separated */
    long got;                  /* how many */
    long long total, now_us;   /* from the first page */
    char at[48];               /* the first page's stream position */
};

static struct {
    char broker[37];
    struct locks_call *waiting;
    struct locks_call *reads;  /* status reads of many locks in flight (oldest last) */
    int paging;                /* status reads paging from Redis */
    uv_timer_t kick;           /* serves lk.reads once the copy is ready */
    int kick_init;
    long live;                 /* calls not yet freed (shutdown waits for them) */
    int stopping;              /* shutting down: no new acquire, no new wait */
} lk;

#define STOPPING_DETAIL "the broker is shutting down; retry (with the same request_id) on another broker"


static char maxlen_arg[32], delay_arg[32], grace_arg[32];

static void reads_kick(void);

/* The waiters a transition on these devices may serve, from the read copy:
 * their keys go with the call, so a hand-over needs no NEEDKEYS round
 * unless the copy is behind (docs/design.md "Keys declared"). The first few
 * of each queue: a script serves the first live one. */
#define HINT_WAITERS 8

static void hint_waiter(void *ctx, const struct waiter_fact *w) { keys_for_waiter(ctx, w); }

static void keys_hint(struct keyset *ks, enum store_script script, int argc, char *const *argv,
                      const size_t *argvlen)
{
    if (argc < 1 || !mirror_ready())
        return;
    if (script != SCRIPT_ACQUIRE && script != SCRIPT_RELEASE && script != SCRIPT_RENEW &&
        script != SCRIPT_FORCE_RELEASE)
        return;
    for (size_t i = 0; i < argvlen[0];) { /* argv[0]: the devices, comma-separated */
        size_t n = strcspn(argv[0] + i, ",");
        if (n > 0 && n <= LK_DEVICE_NAME_MAX) {
            char dev[LK_DEVICE_NAME_MAX + 1];
            memcpy(dev, argv[0] + i, n);
            dev[n] = '\0';
            mirror_each_waiter(dev, HINT_WAITERS, hint_waiter, ks);
        }
        i += n + 1;
    }
}

void locks_init(void)
{
    mirror_on_ready(reads_kick);
    store_on_keys(keys_hint);
    ids_uuid4(lk.broker);
    if (cfg.stream_max_age > 0)
        snprintf(maxlen_arg, sizeof(maxlen_arg), "-%lld", (long long)(cfg.stream_max_age * 1000));
    else
        snprintf(maxlen_arg, sizeof(maxlen_arg), "%ld", cfg.stream_maxlen);
    snprintf(delay_arg, sizeof(delay_arg), "%lld", (long long)(cfg.lock_delay * 1000));
    snprintf(grace_arg, sizeof(grace_arg), "%lld", (long long)(cfg.preempt_grace * 1000));
}

const char *locks_broker_id(void) { return lk.broker; }

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
    struct locks_result res = {lk_error_http(s), &b, NULL, NULL, s, NULL};
    fn(ctx, &res);
    lk_buf_free(&b);
}

static struct locks_call *call_new(enum call_kind kind, locks_done_fn fn, void *ctx)
{
    struct locks_call *c = lk_xcalloc(1, sizeof(*c));
    c->kind = kind;
    c->fn = fn;
    c->ctx = ctx;
    lk.live++;
    return c;
}

static void call_free(struct locks_call *c)
{
    lk.live--;
    lk_buf_free(&c->acc);
    free(c);
}

static void timer_closed(uv_handle_t *h) { call_free(h->data); }

static void list_unlink(struct locks_call *c, struct locks_call **head)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void reads_next(void);

/* Ends a call: takes it off its list (lk.waiting, lk.reads) and frees it
 * (after its timer is closed, if it had one); a paging read's end lets the
 * next one page. */
static void call_end(struct locks_call *c)
{
    if (c->waiting) {
        c->waiting = 0;
        list_unlink(c, &lk.waiting);
    }
    if (c->reading) {
        c->reading = 0;
        list_unlink(c, &lk.reads);
    }
    if (c->paging) {
        c->paging = 0;
        lk.paging--;
        reads_next();
    }
    if (c->has_timer) {
        uv_timer_stop(&c->timer);
        c->timer.data = c;
        uv_close((uv_handle_t *)&c->timer, timer_closed);
        return;
    }
    call_free(c);
}

/* Answers c's requester once. Returns 1 when the answer went out, 0 when
 * nobody awaits it (cancelled), -1 when a grant could not reach its
 * requester (gone meanwhile; the caller gives the grant back). */
static int answer_to(struct locks_call *c, int status, struct lk_buf *b, const char *event_id, int grant)
{
    if (!c->fn)
        return 0;
    locks_done_fn fn = c->fn;
    c->fn = NULL;
    int undelivered = 0;
    struct locks_result res = {status, b, event_id, grant ? &undelivered : NULL, LK_E_OK, NULL};
    fn(c->ctx, &res);
    if (undelivered)
        lk_info("device=%s user=%s: the requester hung up before its grant was delivered", c->device,
                c->user_id);
    return undelivered ? -1 : 1;
}

static void answer(struct locks_call *c, int status, struct lk_buf *b, const char *event_id)
{
    answer_to(c, status, b, event_id, 0);
}

static int answer_text_to(struct locks_call *c, int status, const char *text, size_t len, int grant)
{
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_append(&b, text, len);
    int rc = answer_to(c, status, &b, NULL, grant);
    lk_buf_free(&b);
    return rc;
}

static void answer_text(struct locks_call *c, int status, const char *text, size_t len)
{
    answer_text_to(c, status, text, len, 0);
}

static void answer_error(struct locks_call *c, enum lk_status s, const char *detail)
{
    if (!c->fn)
        return;
    locks_done_fn fn = c->fn;
    c->fn = NULL;
    locks_fail(fn, c->ctx, s, detail);
}

/* Starts a script for c; NULL (c ended) if it answered at once. An acquire
 * answered 503 is followed up when its script's reply comes after all
 * (request_late_cb): its grant must not stay with nobody. */
static void script_cb(void *ctx, redisReply *r, enum lk_status s);
static void request_late_cb(void *ctx, redisReply *r, enum lk_status s);
static struct locks_call *run(struct locks_call *c, enum store_script script, int argc,
                              const char **argv)
{
    struct store_op *op = store_eval_late(script, argc, argv, NULL, script_cb,
                                          c->kind == K_REQUEST ? request_late_cb : NULL, c);
    if (!op)
        return NULL; /* answered (and c freed) already */
    c->op = op;
    return c;
}

/* ---- input checks ------------------------------------------------------- */

__attribute__((format(printf, 4, 5))) static enum lk_status errf(char *err, size_t n,
                                                                 enum lk_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return s;
}

static const char *get_string(const cJSON *req, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static enum lk_status check_device(const char *dev, char *err, size_t n)
{
    if (!lk_device_name_valid(dev))
        return errf(err, n, LK_E_INVALID_DEVICE,
                    "invalid device name: use 1-128 characters of A-Z a-z 0-9 _ . : -");
    if (catalogue_active() && !catalogue_find(dev))
        return errf(err, n, LK_E_UNKNOWN_DEVICE, "device %s is not in the device catalogue", dev);
    return LK_E_OK;
}

/* 1 if v is a whole number in [0, max]: only then may it become a long long. */
static int json_integer(double v, double max)
{
    return v >= 0 && v <= max && v == floor(v);
}

/* Seconds to ms for "timeout"/"wait": -2 absent, -1 null. */
static enum lk_status seconds(const cJSON *req, const char *name, long long *ms, char *err,
                              size_t n)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(req, name);
    if (!t) {
        *ms = -2;
        return LK_E_OK;
    }
    if (cJSON_IsNull(t)) {
        *ms = -1;
        return LK_E_OK;
    }
    if (!cJSON_IsNumber(t))
        return errf(err, n, LK_E_VALIDATION, "field '%s' must be a number of seconds or null", name);
    double s = t->valuedouble;
    if (isnan(s) || s > LEASE_MAX_S)
        return errf(err, n, LK_E_INVALID_TIMEOUT, "field '%s' is too large (at most ten years)", name);
    if (s <= 0) { /* any negative, -1e400 (-inf) included: no conversion */
        *ms = s == 0 ? 0 : -3;
        return LK_E_OK;
    }
    long long v = (long long)ceil(s * 1000.0); /* in range: 0 < s <= ten years */
    *ms = v < 1 ? 1 : v;
    return LK_E_OK;
}

enum lk_status locks_parse_request(const cJSON *req, struct locks_request_args *out, char *err,
                                   size_t n)
{
    memset(out, 0, sizeof(*out));
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(req, "device_names");
    enum lk_status s;
    if (names && !cJSON_IsNull(names)) {
        if (!cJSON_IsArray(names) || cJSON_GetArraySize(names) < 1 ||
            cJSON_GetArraySize(names) > GROUP_MAX)
            return errf(err, n, LK_E_VALIDATION,
                        "field 'device_names' must be an array of 1 to 64 device names");
        const cJSON *d;
        cJSON_ArrayForEach(d, names) {
            if (!cJSON_IsString(d))
                return errf(err, n, LK_E_VALIDATION, "field 'device_names' must hold strings");
            if ((s = check_device(d->valuestring, err, n)))
                return s;
            for (const cJSON *e = names->child; e != d; e = e->next)
                if (!strcmp(e->valuestring, d->valuestring))
                    return errf(err, n, LK_E_VALIDATION, "device '%s' is listed twice", d->valuestring);
            if (out->ndevices++)
                strcat(out->devices, ",");
            strcat(out->devices, d->valuestring);
        }
    } else {
        const char *dev = get_string(req, "device_name");
        if (!dev)
            return errf(err, n, LK_E_VALIDATION,
                        "field 'device_name' (or 'device_names') is required and must be a string");
        if ((s = check_device(dev, err, n)))
            return s;
        strcpy(out->devices, dev);
        out->ndevices = 1;
    }
    const char *type = get_string(req, "lock_type");
    if (!type)
        return errf(err, n, LK_E_VALIDATION, "field 'lock_type' is required and must be a string");
    if ((out->prio = lk_lock_type_parse(type)) < 0)
        return errf(err, n, LK_E_VALIDATION,
                    "field 'lock_type' must be one of MAINTENANCE, QUEUE_EXECUTING, "
                    "MANUAL_OPERATOR, QUEUE_QUEUED");
    const char *user = get_string(req, "user_id");
    if (!user)
        return errf(err, n, LK_E_VALIDATION, "field 'user_id' is required and must be a string");
    if (!user[0] || strlen(user) > USER_ID_MAX)
        return errf(err, n, LK_E_VALIDATION, "field 'user_id' must be 1-256 characters");
    static const char *const texts[] = {"reason", "plan_uid", "request_id"};
    for (size_t i = 0; i < 3; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, texts[i]);
        size_t max = i == 2 ? REQUEST_ID_MAX : TEXT_MAX;
        if (v && !cJSON_IsNull(v) && (!cJSON_IsString(v) || strlen(v->valuestring) > max))
            return errf(err, n, LK_E_VALIDATION, "field '%s' must be null or a short string", texts[i]);
    }
    if ((s = seconds(req, "timeout", &out->lease_ms, err, n)))
        return s;
    if (out->lease_ms == 0 || out->lease_ms == -3)
        return errf(err, n, LK_E_INVALID_TIMEOUT,
                    "timeout must be a positive number of seconds (use null for no expiry)");
    if (out->lease_ms == -2)
        out->lease_ms = (long long)(cfg.default_timeout * 1000);
    else if (out->lease_ms == -1)
        out->lease_ms = (long long)(cfg.max_timeout * 1000);
    if (cfg.max_timeout > 0 && out->lease_ms > cfg.max_timeout * 1000)
        return errf(err, n, LK_E_INVALID_TIMEOUT, "timeout must not exceed --max-timeout");
    if ((s = seconds(req, "wait", &out->wait_ms, err, n)))
        return s;
    if (out->wait_ms == -3)
        return errf(err, n, LK_E_VALIDATION, "field 'wait' must not be negative");
    if (out->wait_ms < 0)
        out->wait_ms = 0;
    if (out->wait_ms > cfg.max_wait * 1000)
        return errf(err, n, LK_E_VALIDATION, "field 'wait' is longer than --max-wait");
    const cJSON *sess = cJSON_GetObjectItemCaseSensitive(req, "session");
    if (sess && !cJSON_IsBool(sess) && !cJSON_IsNull(sess))
        return errf(err, n, LK_E_VALIDATION, "field 'session' must be true or false");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(req, "client");
    if (c && !cJSON_IsNull(c)) {
        const cJSON *host = cJSON_GetObjectItemCaseSensitive(c, "host");
        const cJSON *pid = cJSON_GetObjectItemCaseSensitive(c, "pid");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "name");
        if (!cJSON_IsObject(c) || (host && !cJSON_IsString(host) && !cJSON_IsNull(host)) ||
            (pid && !cJSON_IsNumber(pid) && !cJSON_IsNull(pid)) ||
            (name && !cJSON_IsString(name) && !cJSON_IsNull(name)) ||
            (cJSON_IsString(host) && strlen(host->valuestring) > 255) ||
            (cJSON_IsString(name) && strlen(name->valuestring) > 255))
            return errf(err, n, LK_E_VALIDATION,
                        "field 'client' must be {\"host\": string, \"pid\": integer, \"name\": string}");
        if (cJSON_IsNumber(pid) && !json_integer(pid->valuedouble, PID_MAX))
            return errf(err, n, LK_E_VALIDATION, "field 'client.pid' must be an integer from 0 to %lld",
                        (long long)PID_MAX);
    }
    return LK_E_OK;
}

/* '' when absent or null, '=' .. text otherwise (the scripts' optional args). */
static void opt_arg(struct lk_buf *b, const cJSON *req, const char *name)
{
    const char *v = get_string(req, name);
    lk_buf_reset(b);
    if (v) {
        lk_buf_putc(b, '=');
        lk_buf_puts(b, v);
    }
}

static void client_arg(struct lk_buf *b, const cJSON *req)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(req, "client");
    lk_buf_reset(b);
    if (!cJSON_IsObject(c))
        return;
    const cJSON *host = cJSON_GetObjectItemCaseSensitive(c, "host");
    const cJSON *pid = cJSON_GetObjectItemCaseSensitive(c, "pid");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "name");
    lk_buf_puts(b, "={\"host\":");
    lk_buf_json_str(b, cJSON_IsString(host) ? host->valuestring : NULL);
    if (cJSON_IsNumber(pid))
        lk_buf_printf(b, ",\"pid\":%lld", (long long)pid->valuedouble);
    else
        lk_buf_puts(b, ",\"pid\":null");
    lk_buf_puts(b, ",\"name\":");
    lk_buf_json_str(b, cJSON_IsString(name) ? name->valuestring : NULL);
    lk_buf_putc(b, '}');
}

/* ---- script replies ------------------------------------------------------ */

static const char *elem_str(redisReply *r, size_t i)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements ||
        r->element[i]->type != REDIS_REPLY_STRING)
        return NULL;
    return r->element[i]->str;
}

static long long elem_int(redisReply *r, size_t i)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements ||
        r->element[i]->type != REDIS_REPLY_INTEGER)
        return 0;
    return r->element[i]->integer;
}

static void unwait(struct locks_call *c, int cancel);

static void ignore_cb(void *ctx, redisReply *r, enum lk_status s)
{
    (void)ctx;
    (void)r;
    (void)s;
}

/* ---- writes retried until Redis answers ------------------------------------
 * Follow-ups that must not be lost and may run twice (giving back a grant
 * nobody received, a session's detach): when Redis does not answer, they
 * wait in one list and are sent again with backoff (100 ms doubling to 2 s)
 * until it does. Bounded in count; what does not fit, or is left at
 * shutdown, is dropped to what bounds it otherwise (a lease; the other
 * brokers' reap of this broker's sessions). */
#define RETRY_MAX 100000
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 2000

struct retry {
    struct retry *next;
    void (*send)(struct retry *);                 /* sends it (again) */
    void (*drop)(struct retry *, const char *why); /* logs why, frees it */
};

static struct {
    struct retry *head, *tail;
    size_t count;
    uv_timer_t timer;
    int timer_init, shut;
    uint64_t backoff_ms;
} rq;

static void retry_cb(uv_timer_t *t)
{
    (void)t;
    /* send everything again; what Redis still does not answer comes back */
    struct retry *x = rq.head;
    rq.head = rq.tail = NULL;
    rq.count = 0;
    while (x) {
        struct retry *next = x->next;
        x->send(x);
        x = next;
    }
}

static void retry_later(struct retry *x)
{
    if (rq.shut || rq.count >= RETRY_MAX) {
        x->drop(x, rq.shut ? "shutting down" : "too many writes wait for Redis");
        return;
    }
    x->next = NULL;
    if (rq.tail)
        rq.tail->next = x;
    else
        rq.head = x;
    rq.tail = x;
    rq.count++;
    if (!rq.timer_init) {
        uv_timer_init(uv_default_loop(), &rq.timer);
        uv_unref((uv_handle_t *)&rq.timer);
        rq.timer_init = 1;
    }
    if (!uv_is_active((uv_handle_t *)&rq.timer)) {
        rq.backoff_ms = rq.backoff_ms ? rq.backoff_ms * 2 : RETRY_MIN_MS;
        if (rq.backoff_ms > RETRY_MAX_MS)
            rq.backoff_ms = RETRY_MAX_MS;
        uv_timer_start(&rq.timer, retry_cb, rq.backoff_ms, 0);
    }
}

/* Redis answered one: the next failure starts the backoff afresh. */
static void retry_answered(void) { rq.backoff_ms = 0; }

/* Drops what still waits and closes the timer. */
static void retry_shutdown(void)
{
    rq.shut = 1;
    while (rq.head) {
        struct retry *x = rq.head;
        rq.head = x->next;
        x->drop(x, "shutting down");
    }
    rq.tail = NULL;
    rq.count = 0;
    if (rq.timer_init) {
        uv_timer_stop(&rq.timer);
        uv_close((uv_handle_t *)&rq.timer, NULL);
        rq.timer_init = 0;
    }
}

/* ---- grants nobody received -------------------------------------------------
 * A grant whose requester left or was answered 503 is given back with the
 * call's owner token, so a retry that took it over keeps it. Running the
 * release twice is harmless (a lock no longer held with that key, or owned
 * by another call, is left alone), so it is retried until Redis answers. */
struct orphan {
    struct retry r;            /* first: the retry list holds orphans */
    char dev[LK_DEVICE_NAME_MAX + 1], key[37], user[USER_ID_MAX + 1], owner[37];
    int sent;                  /* the script went out: its late reply follows */
};

static void orphan_drop(struct retry *x, const char *why)
{
    struct orphan *o = (struct orphan *)x;
    lk_warn("device=%s: a grant nobody received is left to its lease (%s)", o->dev, why);
    free(o);
}

/* fn of the release; with LK_E_UNAVAILABLE after the script went out, the
 * late reply (orphan_late_cb) tells whether it ran. */
static void orphan_cb(void *ctx, redisReply *r, enum lk_status s)
{
    struct orphan *o = ctx;
    (void)r;
    if (s == LK_E_UNAVAILABLE && o->sent)
        return;
    if (s == LK_E_UNAVAILABLE) {
        retry_later(&o->r);
        return;
    }
    if (s == LK_E_OK)
        retry_answered();
    else
        lk_error("device=%s: giving back a grant nobody received failed", o->dev);
    free(o);
}

static void orphan_late_cb(void *ctx, redisReply *r, enum lk_status s)
{
    struct orphan *o = ctx;
    (void)r;
    if (s == LK_E_OK) {
        free(o);
        return;
    }
    o->sent = 0;
    retry_later(&o->r); /* the outcome is unknown (link lost): ask again */
}

static void orphan_send(struct retry *x)
{
    struct orphan *o = (struct orphan *)x;
    const char *argv[] = {o->dev, o->key, o->user, maxlen_arg, delay_arg, o->owner};
    o->sent = 0;
    if (store_eval_late(SCRIPT_RELEASE, 6, argv, NULL, orphan_cb, orphan_late_cb, o))
        o->sent = 1;
}

static void orphan_release(const char *dev, const char *key, const char *user, const char *owner)
{
    struct orphan *o = lk_xcalloc(1, sizeof(*o));
    snprintf(o->dev, sizeof(o->dev), "%s", dev);
    snprintf(o->key, sizeof(o->key), "%s", key);
    snprintf(o->user, sizeof(o->user), "%s", user);
    snprintf(o->owner, sizeof(o->owner), "%s", owner);
    o->r.send = orphan_send;
    o->r.drop = orphan_drop;
    orphan_send(&o->r);
}

/* A grant (body: its reply) that c's requester never received, having
 * left or been answered 503: give it back, unless a retry with the same
 * request_id has taken it over (release.lua compares c's owner token). */
static void release_orphan(struct locks_call *c, const char *body)
{
    cJSON *j = cJSON_Parse(body);
    const char *key = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "lock_key"));
    const cJSON *lock = cJSON_GetObjectItemCaseSensitive(j, "lock");
    const char *dev = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(lock, "device_name"));
    if (key && dev) {
        lk_info("releasing device=%s granted to a requester that left", dev);
        orphan_release(dev, key, c->user_id, c->lock_key);
    }
    cJSON_Delete(j);
}

static void wait_timer_cb(uv_timer_t *t)
{
    unwait(t->data, 1);
}

/* A request is queued as `waiter` until deadline_us (Redis clock). */
static void start_waiting(struct locks_call *c, const char *waiter, long long deadline_us)
{
    snprintf(c->waiter, sizeof(c->waiter), "%s", waiter);
    c->waiting = 1;
    c->next = lk.waiting;
    c->prev = NULL;
    if (lk.waiting)
        lk.waiting->prev = c;
    lk.waiting = c;
    uv_timer_init(uv_default_loop(), &c->timer);
    c->has_timer = 1;
    c->timer.data = c;
    long long wait_us = deadline_us - (lk_time_now_us() + events_clock_offset_us());
    uv_timer_start(&c->timer, wait_timer_cb, wait_us > 0 ? (uint64_t)(wait_us / 1000) + 5 : 0, 0);
}

static void request_reply(struct locks_call *c, redisReply *r)
{
    const char *what = elem_str(r, 0);
    if (what && !strcmp(what, "queued") && elem_str(r, 1)) {
        const char *d = elem_str(r, 2);
        if (lk.stopping) /* nobody here will follow this wait: leave the queue */
            answer_error(c, LK_E_UNAVAILABLE, STOPPING_DETAIL);
        start_waiting(c, elem_str(r, 1), d ? strtoll(d, NULL, 10) : 0);
        metrics_acquire(ACQ_QUEUED);
        /* The grant may already have happened, and its event been read from
         * the stream before this reply arrived: ask once now. */
        unwait(c, !c->fn);
        return;
    }
    const char *body = elem_str(r, 1);
    if (!what || !body) {
        answer_error(c, LK_E_INTERNAL, "unexpected reply from the lock store");
        call_end(c);
        return;
    }
    /* a grant, or a replayed one this call took over, nobody will receive */
    int grant = !strcmp(what, "granted") ||
                (!strcmp(what, "replay") && !strncmp(body, "{\"success\":true", 15));
    if (!c->fn && grant)
        release_orphan(c, body);
    if (!strcmp(what, "granted")) {
        lk_debug("granted device=%s user=%s", c->device, c->user_id);
        /* acquire.lua: {'granted', body, preempted_count, last_id} */
        metrics_acquire(elem_int(r, 2) > 0 ? ACQ_PREEMPTED : ACQ_GRANTED);
    } else if (!strcmp(what, "denied")) {
        metrics_acquire(ACQ_DENIED);
    }
    if (answer_text_to(c, 200, body, r->element[1]->len, grant) < 0)
        release_orphan(c, body);
    call_end(c);
}

static void unwait_reply(struct locks_call *c, redisReply *r)
{
    const char *what = elem_str(r, 0);
    if (what && !strcmp(what, "waiting")) {
        /* what came while we were asking: the deadline or the requester's
         * leaving (a cancel), or a grant event (a check) */
        if (c->cancel_pending || !c->fn)
            unwait(c, 1);
        else if (c->recheck)
            unwait(c, 0);
        return;
    }
    if (what && !strcmp(what, "detached")) { /* a retry on another call took it over */
        call_end(c);
        return;
    }
    if (what && !strcmp(what, "gone")) {
        /* the queue dropped it at its deadline (a hand-over found it expired)
         * before our timer asked: that is a timeout like any other */
        struct lk_buf b;
        lk_buf_init(&b, 0);
        lk_buf_puts(&b, "{\"success\":false,\"lock_key\":null,\"message\":");
        char msg[LK_DEVICE_NAME_MAX + 40];
        snprintf(msg, sizeof(msg), "Timed out waiting for %s", c->device);
        lk_buf_json_str(&b, msg);
        lk_buf_puts(&b, ",\"expires_at\":null,\"fence\":null}");
        metrics_acquire(ACQ_TIMED_OUT);
        answer(c, 200, &b, NULL);
        lk_buf_free(&b);
        call_end(c);
        return;
    }
    if (what && (!strcmp(what, "granted") || !strcmp(what, "removed")) && elem_str(r, 1)) {
        int grant = !strcmp(what, "granted");
        if (!c->fn && grant)
            release_orphan(c, elem_str(r, 1));
        metrics_acquire(grant ? ACQ_GRANTED : ACQ_TIMED_OUT);
        if (answer_text_to(c, 200, elem_str(r, 1), r->element[1]->len, grant) < 0)
            release_orphan(c, elem_str(r, 1));
    } else {
        answer_error(c, LK_E_INTERNAL, "the queued request vanished");
    }
    call_end(c);
}

static void holder_reply(struct locks_call *c, redisReply *r)
{
    char msg[256];
    switch (elem_int(r, 0)) {
    case 1: answer_text(c, 200, elem_str(r, 1), r->element[1]->len); break;
    case -1:
        snprintf(msg, sizeof(msg), "No lock found for device %s", c->device);
        answer_error(c, LK_E_NOT_FOUND, msg);
        break;
    case -2: answer_error(c, LK_E_FORBIDDEN, "Invalid lock key"); break;
    case -3: answer_error(c, LK_E_FORBIDDEN, "Not authorized to release this lock"); break;
    default: answer_error(c, LK_E_INTERNAL, "unexpected reply from the lock store");
    }
    call_end(c);
}

static void status_reply(struct locks_call *c, redisReply *r)
{
    char ts[40];
    lk_time_format_us(elem_int(r, 0) ? elem_int(r, 0) : lk_time_now_us(), ts, sizeof(ts));
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
    lk_buf_printf(&b, "],\"total_count\":%lld,\"timestamp\":\"%s\"",
                  c->limit < 0 ? (long long)n : elem_int(r, 2), ts);
    if (c->limit > 0) {
        lk_buf_puts(&b, ",\"next_cursor\":");
        cJSON *l = (last && (long)n >= c->limit) ? cJSON_Parse(last) : NULL;
        lk_buf_json_str(&b, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(l, "device_name")));
        cJSON_Delete(l);
    }
    lk_buf_putc(&b, '}');
    answer(c, 200, &b, event_id ? event_id : "0-0");
    lk_buf_free(&b);
    call_end(c);
}

/* GET /api/locks/device/{name}'s answer up to its waiters, from
 * device.lua's parts or the read copy's (locks_device): the same bytes
 * either way. The caller appends the waiters' array and the closing brace. */
static void device_head(struct lk_buf *b, const char *dev, const char *lj, size_t lj_len, const char *ts)
{
    lk_buf_printf(b, "{\"device_name\":\"%s\",\"locked\":%s,\"lock\":", dev, lj ? "true" : "false");
    if (lj)
        lk_buf_append(b, lj, lj_len);
    else
        lk_buf_puts(b, "null");
    lk_buf_printf(b, ",\"timestamp\":\"%s\",\"waiters\":", ts);
}

static void device_reply(struct locks_call *c, redisReply *r)
{
    char ts[40];
    lk_time_format_us(elem_int(r, 0), ts, sizeof(ts));
    const char *lj = elem_str(r, 1), *waiters = elem_str(r, 2);
    struct lk_buf b;
    lk_buf_init(&b, 0);
    if (c->kind == K_VALIDATE) {
        cJSON *l = lj ? cJSON_Parse(lj) : NULL;
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(l, "fence");
        long long cur = cJSON_IsNumber(f) ? (long long)f->valuedouble : -1;
        lk_buf_printf(&b, "{\"valid\":%s,\"current_fence\":", cur >= 0 && cur == c->fence ? "true" : "false");
        if (cur >= 0)
            lk_buf_printf(&b, "%lld", cur);
        else
            lk_buf_puts(&b, "null");
        lk_buf_printf(&b, ",\"device_name\":\"%s\",\"fence\":%lld", c->device, c->fence);
        /* the holder's open preemption window, for keepalives that check by
         * validate (locks without expiry) */
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(l, "preempt");
        char *pj = cur >= 0 && cur == c->fence && cJSON_IsObject(p) ? cJSON_PrintUnformatted(p) : NULL;
        if (pj) {
            lk_buf_puts(&b, ",\"preempt\":");
            lk_buf_puts(&b, pj);
            cJSON_free(pj);
        }
        lk_buf_putc(&b, '}');
        cJSON_Delete(l);
    } else {
        device_head(&b, c->device, lj, lj ? strlen(lj) : 0, ts);
        lk_buf_puts(&b, waiters ? waiters : "[]");
        lk_buf_putc(&b, '}');
    }
    answer(c, 200, &b, NULL);
    lk_buf_free(&b);
    call_end(c);
}

static void events_reply(struct locks_call *c, redisReply *r)
{
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
    answer(c, 200, &b, NULL);
    lk_buf_free(&b);
    call_end(c);
}

/* An acquire answered 503 whose script ran after all (or whose outcome is
 * unknown: r NULL): its requester has no answer, so a grant is given back
 * and a queued request leaves its queue, as for a requester that left. */
static void request_late_cb(void *ctx, redisReply *r, enum lk_status s)
{
    struct locks_call *c = ctx;
    c->op = NULL;
    c->fn = NULL;
    if (s == LK_E_OK && r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1) {
        lk_info("an acquire answered 503 was carried out late (device=%s): following it up", c->device);
        request_reply(c, r);
        return;
    }
    /* the link was lost with the script sent: it may have granted under the
     * key this call chose (a queued request ends at its wait's deadline) */
    if (c->kind == K_REQUEST && c->device[0]) {
        lk_info("an acquire answered 503 has an unknown outcome (device=%s): giving back any grant",
                c->device);
        orphan_release(c->device, c->lock_key, c->user_id, c->lock_key);
    }
    call_end(c);
}

static void script_cb(void *ctx, redisReply *r, enum lk_status s)
{
    struct locks_call *c = ctx;
    int sent = c->op != NULL; /* else store_eval failed at once: nothing ran */
    c->op = NULL;
    if (s != LK_E_OK || !r || r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
        if (s == LK_E_OK || s == LK_E_UNAVAILABLE)
            answer_error(c, LK_E_UNAVAILABLE,
                         "Redis is unavailable or not answering; the request may not have been "
                         "carried out (retry with the same request_id to be safe)");
        else
            answer_error(c, LK_E_INTERNAL, "the lock store failed; see the broker log");
        if (c->kind == K_UNWAIT && c->waiting) {
            /* could not ask: try again shortly (the requester, answered 503,
             * is gone for us: the retry removes the wait) */
            c->recheck = c->cancel_pending = 0;
            uv_timer_start(&c->timer, wait_timer_cb, 500, 0);
            return;
        }
        if (c->kind == K_REQUEST && sent && s == LK_E_UNAVAILABLE) {
            c->op = NULL; /* request_late_cb follows up the outcome */
            return;
        }
        call_end(c);
        return;
    }
    /* a change's last event: reads on this broker wait for the copy to have it */
    redisReply *last = r->element[r->elements - 1];
    if (last->type == REDIS_REPLY_STRING && last->len && last->str[0] >= '0' && last->str[0] <= '9' &&
        memchr(last->str, '-', last->len))
        mirror_note_write(last->str);
    switch (c->kind) {
    case K_REQUEST: request_reply(c, r); break;
    case K_UNWAIT: unwait_reply(c, r); break;
    case K_HOLDER: holder_reply(c, r); break;
    case K_STATUS: status_reply(c, r); break;
    case K_DEVICE:
    case K_VALIDATE: device_reply(c, r); break;
    case K_EVENTS: events_reply(c, r); break;
    default: call_end(c);
    }
}

/* ---- queued requests ------------------------------------------------------ */

/* Asks about a queued request (check), or ends its wait: at its deadline
 * (cancel: a retry replays the timeout) or because nobody awaits the answer
 * any more (abandon: a retry is a new request). While a script is in
 * flight the wish is kept, a cancel taking precedence over a check, and
 * unwait_reply sends it, so every wait ends in an answer. */
static void unwait(struct locks_call *c, int cancel)
{
    if (c->op) {
        if (cancel)
            c->cancel_pending = 1;
        else
            c->recheck = 1;
        return;
    }
    int end = cancel || c->cancel_pending || !c->fn;
    c->recheck = c->cancel_pending = 0;
    c->kind = K_UNWAIT;
    const char *mode = !end ? "check" : c->fn ? "cancel" : "abandon";
    const char *argv[] = {c->waiter, mode, maxlen_arg, delay_arg, c->lock_key};
    struct store_op *op = store_eval(SCRIPT_UNWAIT, 5, argv, NULL, script_cb, c);
    if (op) /* else script_cb ran: c re-armed its timer (still waiting) */
        c->op = op;
}

void locks_waiter_event(const char *waiter)
{
    for (struct locks_call *c = lk.waiting; c; c = c->next)
        if (!strcmp(c->waiter, waiter)) {
            unwait(c, 0);
            return;
        }
}

static void shutdown_timer_cb(uv_timer_t *t) { *(int *)t->data = 1; }
static void listing_free(void);

void locks_shutdown(uv_loop_t *loop, long bound_ms)
{
    lk.stopping = 1;
    for (struct locks_call *c = lk.waiting, *next; c; c = next) {
        next = c->next;
        answer_error(c, LK_E_UNAVAILABLE, STOPPING_DETAIL); /* fn NULL now: abandons */
        unwait(c, 1);
    }
    while (lk.reads) { /* status reads of many locks: waiting, or paging Redis */
        struct locks_call *c = lk.reads;
        if (c->op) {
            store_cancel(c->op);
            c->op = NULL;
        }
        answer_error(c, LK_E_UNAVAILABLE, STOPPING_DETAIL);
        call_end(c);
    }
    if (lk.kick_init) {
        uv_timer_stop(&lk.kick);
        uv_close((uv_handle_t *)&lk.kick, NULL);
        lk.kick_init = 0;
    }
    listing_free();
    if (!lk.live)
        return;
    lk_info("shutdown: taking %ld request(s) off the queues", lk.live);
    static int over;
    static uv_timer_t t;
    over = 0;
    uv_timer_init(loop, &t);
    t.data = &over;
    uv_timer_start(&t, shutdown_timer_cb, (uint64_t)bound_ms, 0);
    while (lk.live > 0 && !over)
        uv_run(loop, UV_RUN_ONCE);
    if (lk.live > 0)
        lk_warn("shutdown: %ld request(s) still in flight after %ld ms", lk.live, bound_ms);
    uv_timer_stop(&t);
    uv_close((uv_handle_t *)&t, NULL);
}

void locks_cancel(struct locks_call *c)
{
    if (!c)
        return;
    c->fn = NULL;
    c->resume_fn = NULL;
    c->attach_fn = NULL;
    c->ctx = NULL;
    if (c->op) {
        /* a request script may have queued or granted: its reply cleans up */
        if (c->kind != K_REQUEST && c->kind != K_UNWAIT) {
            store_cancel(c->op);
            c->op = NULL;
            call_end(c);
        }
        return;
    }
    if (c->waiting)
        unwait(c, 1);
    else if (c->reading)
        call_end(c);
}

/* ---- resume and metrics ---------------------------------------------------- */

/* resume.lua's reply: {'ok', id1, json1, ...} | {'gap'}. */
static void resume_cb(void *ctx, redisReply *r, enum lk_status s)
{
    struct locks_call *c = ctx;
    c->op = NULL;
    struct locks_resume_result res = {LK_E_UNAVAILABLE, 0, 0, 0, NULL};
    struct locks_event *events = NULL;
    if (s == LK_E_OK && r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        r->element[0]->type == REDIS_REPLY_STRING) {
        res.status = LK_E_OK;
        if (strcmp(r->element[0]->str, "gap") == 0) {
            res.gap = 1;
        } else {
            res.replayed = (r->elements - 1) / 2;
            events = lk_xmalloc(sizeof(*events) * (res.replayed ? res.replayed : 1));
            for (size_t i = 0; i < res.replayed; i++) {
                redisReply *id = r->element[1 + 2 * i], *j = r->element[2 + 2 * i];
                if (id->type != REDIS_REPLY_STRING || j->type != REDIS_REPLY_STRING || j->len < 2)
                    continue;
                events[res.n++] = (struct locks_event){id->str, j->str, j->len};
            }
            res.events = events;
        }
    }
    locks_resume_fn fn = c->resume_fn;
    c->resume_fn = NULL;
    if (fn)
        fn(c->ctx, &res);
    free(events);
    call_end(c);
}

struct locks_call *locks_resume(const char *since, long max, locks_resume_fn fn, void *ctx)
{
    char maxs[32];
    snprintf(maxs, sizeof(maxs), "%ld", max);
    const char *argv[] = {since, maxs};
    struct locks_call *c = call_new(K_RESUME, NULL, ctx);
    c->resume_fn = fn;
    struct store_op *op = store_eval(SCRIPT_RESUME, 2, argv, NULL, resume_cb, c);
    if (!op)
        return NULL; /* answered (and c freed) already */
    c->op = op;
    return c;
}

/* stats.lua's reply: {held_p0, held_p1, held_p2, held_p3, stream_length};
 * zeros when Redis did not answer. */
static void metrics_cb(void *ctx, redisReply *r, enum lk_status s)
{
    struct locks_call *c = ctx;
    c->op = NULL;
    long long held[4] = {0, 0, 0, 0}, len = 0;
    if (s == LK_E_OK && r && r->type == REDIS_REPLY_ARRAY && r->elements == 5) {
        for (int i = 0; i < 4; i++)
            held[i] = r->element[i]->integer;
        len = r->element[4]->integer;
    }
    struct lk_buf b;
    lk_buf_init(&b, 0);
    metrics_render(&b, held, len);
    answer(c, 200, &b, NULL);
    lk_buf_free(&b);
    call_end(c);
}

struct locks_call *locks_metrics(locks_done_fn fn, void *ctx)
{
    struct locks_call *c = call_new(K_METRICS, fn, ctx);
    struct store_op *op = store_eval(SCRIPT_STATS, 0, NULL, NULL, metrics_cb, c);
    if (!op)
        return NULL; /* answered (and c freed) already */
    c->op = op;
    return c;
}

unsigned long locks_redis_connects(void) { return store_reconnects(); }

/* ---- entry points ----------------------------------------------------------- */

struct locks_call *locks_request(const cJSON *req, const char *session, locks_done_fn fn, void *ctx)
{
    struct locks_request_args a;
    char err[256];
    enum lk_status s = locks_parse_request(req, &a, err, sizeof(err));
    if (s) {
        locks_fail(fn, ctx, s, err);
        return NULL;
    }
    if (lk.stopping) {
        locks_fail(fn, ctx, LK_E_UNAVAILABLE, STOPPING_DETAIL);
        return NULL;
    }
    const cJSON *sess = cJSON_GetObjectItemCaseSensitive(req, "session");
    if (cJSON_IsTrue(sess) && !session) {
        locks_fail(fn, ctx, LK_E_VALIDATION, "session locks are taken over the WebSocket (/ws)");
        return NULL;
    }
    struct locks_call *c = call_new(K_REQUEST, fn, ctx);
    ids_uuid4(c->lock_key);
    snprintf(c->user_id, sizeof(c->user_id), "%s", get_string(req, "user_id"));
    snprintf(c->device, sizeof(c->device), "%.*s", (int)strcspn(a.devices, ","), a.devices);
    struct lk_buf reason, plan, client, rid, sessarg;
    lk_buf_init(&reason, 0);
    lk_buf_init(&plan, 0);
    lk_buf_init(&client, 0);
    lk_buf_init(&rid, 0);
    lk_buf_init(&sessarg, 0);
    opt_arg(&reason, req, "reason");
    opt_arg(&plan, req, "plan_uid");
    client_arg(&client, req);
    const char *request_id = get_string(req, "request_id");
    if (request_id) { /* per user; the length prefix keeps "a:b"+"c" apart from "a"+"b:c" */
        lk_buf_printf(&rid, "dl:rid:%zu:", strlen(c->user_id));
        lk_buf_puts(&rid, c->user_id);
        lk_buf_putc(&rid, ':');
        lk_buf_puts(&rid, request_id);
    }
    if (cJSON_IsTrue(sess)) {
        lk_buf_putc(&sessarg, '=');
        lk_buf_puts(&sessarg, session);
    }
    char prio[8], lease[32], wait[32];
    snprintf(prio, sizeof(prio), "%d", a.prio);
    snprintf(lease, sizeof(lease), "%lld", a.lease_ms);
    snprintf(wait, sizeof(wait), "%lld", a.wait_ms);
    const char *argv[] = {a.devices, get_string(req, "lock_type"), prio, c->user_id, c->lock_key,
                          lease, lk_buf_data(&reason), lk_buf_data(&plan), lk_buf_data(&client),
                          maxlen_arg, wait, lk_buf_data(&rid), lk.broker, lk_buf_data(&sessarg),
                          grace_arg, delay_arg};
    struct locks_call *ret = run(c, SCRIPT_ACQUIRE, 16, argv);
    lk_buf_free(&reason);
    lk_buf_free(&plan);
    lk_buf_free(&client);
    lk_buf_free(&rid);
    lk_buf_free(&sessarg);
    return ret;
}

static struct locks_call *holder_call(const cJSON *req, int renew, locks_done_fn fn, void *ctx)
{
    const char *dev = get_string(req, "device_name"), *key = get_string(req, "lock_key"),
               *user = get_string(req, "user_id");
    char err[256];
    if (!dev || !key || !user) {
        locks_fail(fn, ctx, LK_E_VALIDATION,
                   "fields 'device_name', 'lock_key' and 'user_id' are required strings");
        return NULL;
    }
    enum lk_status s = check_device(dev, err, sizeof(err));
    if (s) {
        locks_fail(fn, ctx, s, err);
        return NULL;
    }
    struct locks_call *c = call_new(K_HOLDER, fn, ctx);
    snprintf(c->device, sizeof(c->device), "%s", dev);
    if (!renew) {
        const char *argv[] = {dev, key, user, maxlen_arg, delay_arg};
        return run(c, SCRIPT_RELEASE, 5, argv);
    }
    long long ms;
    char lease[32] = "";
    if ((s = seconds(req, "timeout", &ms, err, sizeof(err))) == LK_E_OK && (ms == 0 || ms == -3))
        s = errf(err, sizeof(err), LK_E_INVALID_TIMEOUT, "timeout must be a positive number of seconds");
    if (s == LK_E_OK && cfg.max_timeout > 0 && ms > cfg.max_timeout * 1000)
        s = errf(err, sizeof(err), LK_E_INVALID_TIMEOUT, "timeout must not exceed --max-timeout");
    if (s) {
        call_free(c);
        locks_fail(fn, ctx, s, err);
        return NULL;
    }
    if (ms == -1)
        ms = (long long)(cfg.max_timeout * 1000);
    if (ms >= 0)
        snprintf(lease, sizeof(lease), "%lld", ms);
    const char *argv[] = {dev, key, user, lease, maxlen_arg, delay_arg};
    return run(c, SCRIPT_RENEW, 6, argv);
}

struct locks_call *locks_release(const cJSON *req, locks_done_fn fn, void *ctx)
{
    return holder_call(req, 0, fn, ctx);
}

struct locks_call *locks_renew(const cJSON *req, locks_done_fn fn, void *ctx)
{
    return holder_call(req, 1, fn, ctx);
}

struct locks_call *locks_force_release(const cJSON *req, locks_done_fn fn, void *ctx)
{
    const char *dev = get_string(req, "device_name");
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(req, "reason");
    char err[256];
    if (!dev) {
        locks_fail(fn, ctx, LK_E_VALIDATION, "field 'device_name' is required and must be a string");
        return NULL;
    }
    enum lk_status s = check_device(dev, err, sizeof(err));
    if (!s && reason && !cJSON_IsNull(reason) &&
        (!cJSON_IsString(reason) || strlen(reason->valuestring) > TEXT_MAX))
        s = errf(err, sizeof(err), LK_E_VALIDATION, "field 'reason' must be null or a short string");
    if (s) {
        locks_fail(fn, ctx, s, err);
        return NULL;
    }
    struct lk_buf r;
    lk_buf_init(&r, 0);
    if (cJSON_IsString(reason)) {
        lk_buf_putc(&r, '=');
        lk_buf_puts(&r, reason->valuestring);
    }
    struct locks_call *c = call_new(K_HOLDER, fn, ctx);
    snprintf(c->device, sizeof(c->device), "%s", dev);
    lk_info("force release device=%s reason=%s", dev, cJSON_IsString(reason) ? reason->valuestring : "-");
    const char *argv[] = {dev, lk_buf_data(&r), maxlen_arg, delay_arg};
    struct locks_call *ret = run(c, SCRIPT_FORCE_RELEASE, 4, argv);
    lk_buf_free(&r);
    return ret;
}

struct locks_call *locks_validate(const cJSON *req, locks_done_fn fn, void *ctx)
{
    const char *dev = get_string(req, "device_name");
    const cJSON *fence = cJSON_GetObjectItemCaseSensitive(req, "fence");
    char err[256];
    if (!dev || !cJSON_IsNumber(fence)) {
        locks_fail(fn, ctx, LK_E_VALIDATION, "fields 'device_name' (string) and 'fence' (integer) are required");
        return NULL;
    }
    if (!json_integer(fence->valuedouble, FENCE_MAX)) {
        locks_fail(fn, ctx, LK_E_VALIDATION, "field 'fence' must be an integer from 0 to 2^53");
        return NULL;
    }
    enum lk_status s = check_device(dev, err, sizeof(err));
    if (s) {
        locks_fail(fn, ctx, s, err);
        return NULL;
    }
    struct locks_call *c = call_new(K_VALIDATE, fn, ctx);
    snprintf(c->device, sizeof(c->device), "%s", dev);
    c->fence = (long long)fence->valuedouble;
    const char *argv[] = {dev};
    return run(c, SCRIPT_DEVICE, 1, argv);
}

/* Reads come from this broker's copy of the lock table when it is valid
 * and has every change this broker acknowledged (see mirror.h). */
static int from_mirror(void) { return store_ready() && mirror_ready(); }

static int64_t redis_now_us(void) { return lk_time_now_us() + events_clock_offset_us(); }

/* The full listing, up to its per-read tail ("timestamp"), built once per
 * version of the copy and shared: valid while the copy has not changed
 * and no listed lease has ended (its lock would drop out). */
static struct {
    struct shared *head;
    unsigned long long changes;
    int64_t until_us;       /* the first lease end of the listed locks; 0 none */
} listing;

static struct shared *listing_head(int64_t now)
{
    if (listing.head && listing.changes == mirror_changes() && (!listing.until_us || now < listing.until_us))
        return listing.head;
    shared_unref(listing.head);
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_puts(&b, "{\"locks\":");
    const char *next;
    size_t n = mirror_list(&b, NULL, -1, now, &next);
    lk_buf_printf(&b, ",\"total_count\":%zu", n);
    listing.head = shared_from_buf(&b);
    listing.changes = mirror_changes();
    listing.until_us = mirror_first_end(now);
    lk_buf_free(&b);
    return listing.head;
}

static void listing_free(void)
{
    shared_unref(listing.head);
    listing.head = NULL;
}

static void status_from_mirror(const char *cursor, long limit, locks_done_fn fn, void *ctx)
{
    char ts[40], pos[48];
    int64_t now = redis_now_us();
    lk_time_format_us(now, ts, sizeof(ts));
    snprintf(pos, sizeof(pos), "%s", mirror_position());
    struct lk_buf b;
    lk_buf_init(&b, 0);
    struct shared *head = NULL;
    if (limit < 0 && !(cursor && cursor[0])) {
        head = shared_ref(listing_head(now));
        lk_buf_printf(&b, ",\"timestamp\":\"%s\"}", ts);
    } else {
        lk_buf_puts(&b, "{\"locks\":");
        const char *next;
        size_t n = mirror_list(&b, cursor && cursor[0] ? cursor : NULL, limit, now, &next);
        lk_buf_printf(&b, ",\"total_count\":%zu,\"timestamp\":\"%s\"", limit < 0 ? n : mirror_count(), ts);
        if (limit > 0) {
            lk_buf_puts(&b, ",\"next_cursor\":");
            lk_buf_json_str(&b, next);
        }
        lk_buf_putc(&b, '}');
    }
    struct locks_result res = {200, &b, pos, NULL, LK_E_OK, head};
    fn(ctx, &res);
    shared_unref(head);
    lk_buf_free(&b);
}

void locks_result_flat(const struct locks_result *res, struct lk_buf *out)
{
    if (res->head)
        lk_buf_append(out, res->head->data, res->head->len);
    lk_buf_append(out, lk_buf_data(res->body), res->body->len);
}

/* ---- status reads of more than READ_PAGE locks ----------------------------
 * They are served from the copy. While it is not usable (built at start-up
 * or after a reconnect, or behind a write this broker acknowledged), such a
 * read waits on lk.reads until the copy becomes ready (mirror_on_ready), at
 * most --redis-timeout-ms; then it reads from Redis, READ_PAGE locks per
 * script, so no read holds Redis for longer than one page. If the copy
 * becomes ready meanwhile, the paging stops and the copy answers. A read
 * paged to its end is not one atomic snapshot (each page is): its event_id
 * is the first page's, so a live event that a later page already shows may
 * follow it (each such event carries the whole lock or its removal:
 * applying it again is harmless). At most READS_PAGING_MAX reads page at
 * once, as each builds its whole answer in memory; the others wait on for
 * the copy or a turn. */

static void status_page_cb(void *ctx, redisReply *r, enum lk_status s);

/* Sends c's next page (next: its locks' keys, when the last page named
 * them); 0 if c ended (store_eval failed at once, c answered). */
static int status_page(struct locks_call *c, const struct keyset *next)
{
    long want = READ_PAGE;
    if (c->limit >= 0 && c->limit - c->got < want)
        want = c->limit - c->got;
    char lim[32];
    snprintf(lim, sizeof(lim), "%ld", want);
    const char *argv[] = {c->cursor, lim, "page"};
    struct store_op *op = store_eval_keys(SCRIPT_SNAPSHOT, 3, argv, NULL, next, status_page_cb, c);
    if (!op)
        return 0;
    c->op = op;
    return 1;
}

/* c reads from Redis (staying on lk.reads: the copy, once ready, answers
 * it instead); 0 if c ended. */
static int status_paging(struct locks_call *c)
{
    c->paging = 1;
    lk.paging++;
    return status_page(c, NULL);
}

static void status_page_cb(void *ctx, redisReply *r, enum lk_status s)
{
    struct locks_call *c = ctx;
    c->op = NULL;
    if (s != LK_E_OK || !r || r->type != REDIS_REPLY_ARRAY || r->elements < 4 ||
        r->element[1]->type != REDIS_REPLY_STRING || r->element[3]->type != REDIS_REPLY_STRING) {
        if (s == LK_E_OK || s == LK_E_UNAVAILABLE)
            answer_error(c, LK_E_UNAVAILABLE, "Redis is unavailable or not answering; retry");
        else
            answer_error(c, LK_E_INTERNAL, "the lock store failed; see the broker log");
        call_end(c);
        return;
    }
    if (!c->at[0]) {
        snprintf(c->at, sizeof(c->at), "%s", r->element[1]->str);
        c->now_us = elem_int(r, 0);
        c->total = elem_int(r, 2);
        lk_buf_puts(&c->acc, "{\"locks\":[");
    }
    struct keyset keys;
    keyset_init(&keys);
    size_t end = r->elements - (size_t)keys_next_page(&keys, r);
    for (size_t i = 4; i < end; i++) {
        const char *lj = elem_str(r, i);
        if (!lj)
            continue;
        if (c->got++)
            lk_buf_putc(&c->acc, ',');
        lk_buf_append(&c->acc, lj, r->element[i]->len);
    }
    const char *next = r->element[3]->str;
    int more = next[0] && r->element[3]->len + 2 <= sizeof(c->cursor);
    if (more && (c->limit < 0 || c->got < c->limit)) {
        snprintf(c->cursor, sizeof(c->cursor), "(%s", next);
        status_page(c, &keys);
        keyset_free(&keys);
        return;
    }
    keyset_free(&keys);
    char ts[40];
    lk_time_format_us(c->now_us ? c->now_us : lk_time_now_us(), ts, sizeof(ts));
    lk_buf_printf(&c->acc, "],\"total_count\":%lld,\"timestamp\":\"%s\"",
                  c->limit < 0 ? (long long)c->got : c->total, ts);
    if (c->limit > 0) {
        lk_buf_puts(&c->acc, ",\"next_cursor\":");
        lk_buf_json_str(&c->acc, more ? next : NULL);
    }
    lk_buf_putc(&c->acc, '}');
    answer(c, 200, &c->acc, c->at);
    call_end(c);
}

/* Starts the reads whose wait for the copy is over, oldest first, while
 * fewer than READS_PAGING_MAX page. */
static void reads_next(void)
{
    static int busy; /* a read that fails at once ends in here again */
    if (busy)
        return;
    if (from_mirror()) { /* the copy answers them */
        reads_kick();
        return;
    }
    busy = 1;
    while (lk.paging < READS_PAGING_MAX) {
        struct locks_call *pick = NULL;
        for (struct locks_call *c = lk.reads; c; c = c->next)
            if (c->timed_out && !c->paging)
                pick = c;
        if (!pick)
            break;
        status_paging(pick);
    }
    busy = 0;
}

/* Answers every read on lk.reads from the copy, if it is usable (one that
 * pages Redis stops: the copy is one consistent view). */
static void reads_serve(void)
{
    while (lk.reads && from_mirror()) {
        struct locks_call *c = lk.reads;
        if (c->op) {
            store_cancel(c->op);
            c->op = NULL;
        }
        locks_done_fn fn = c->fn;
        void *ctx = c->ctx;
        long limit = c->limit;
        char cursor[sizeof(c->device)];
        snprintf(cursor, sizeof(cursor), "%s", c->device); /* where the read starts */
        c->fn = NULL;
        call_end(c);
        if (fn)
            status_from_mirror(cursor, limit, fn, ctx);
    }
}

static void kick_cb(uv_timer_t *t)
{
    (void)t;
    reads_serve();
}

/* mirror.c: the copy became ready. The reads are served from the loop,
 * not from inside the mirror's update (the event being applied has not
 * been broadcast yet). */
static void reads_kick(void)
{
    if (!lk.reads || lk.stopping)
        return;
    if (!lk.kick_init) {
        uv_timer_init(uv_default_loop(), &lk.kick);
        lk.kick_init = 1;
    }
    uv_timer_start(&lk.kick, kick_cb, 0, 0);
}

static void read_timer_cb(uv_timer_t *t)
{
    struct locks_call *c = t->data;
    c->timed_out = 1;
    lk_info("status read: the read copy is not ready after %ld ms; reading Redis in pages instead",
            (long)cfg.redis_timeout_ms);
    if (from_mirror())
        reads_serve();
    else
        reads_next();
}

struct locks_call *locks_status(const char *cursor, long limit, locks_done_fn fn, void *ctx)
{
    char start[LK_DEVICE_NAME_MAX + 2] = "-", lim[32];
    if (cursor && cursor[0]) {
        if (!lk_device_name_valid(cursor)) {
            locks_fail(fn, ctx, LK_E_BAD_REQUEST, "cursor must be a device name from next_cursor");
            return NULL;
        }
        snprintf(start, sizeof(start), "(%s", cursor);
    }
    if (from_mirror()) {
        status_from_mirror(cursor, limit, fn, ctx);
        return NULL;
    }
    struct locks_call *c = call_new(K_STATUS, fn, ctx);
    c->limit = limit;
    if (limit >= 0 && limit <= READ_PAGE) { /* one script of at most a page */
        snprintf(lim, sizeof(lim), "%ld", limit);
        const char *argv[] = {start, lim};
        return run(c, SCRIPT_SNAPSHOT, 2, argv);
    }
    snprintf(c->cursor, sizeof(c->cursor), "%s", start);
    snprintf(c->device, sizeof(c->device), "%s", cursor ? cursor : "");
    if (!store_ready() || lk.stopping) /* nothing to wait for: Redis answers (or 503s) */
        return status_paging(c) ? c : NULL;
    c->reading = 1;
    c->prev = NULL;
    c->next = lk.reads;
    if (lk.reads)
        lk.reads->prev = c;
    lk.reads = c;
    uv_timer_init(uv_default_loop(), &c->timer);
    c->has_timer = 1;
    c->timer.data = c;
    uv_timer_start(&c->timer, read_timer_cb, (uint64_t)cfg.redis_timeout_ms, 0);
    return c;
}

/* The device answer from the copy: its lock, and its waiters as the
 * queue facts left them (mirror_waiters). */
static void device_from_mirror(const char *dev, locks_done_fn fn, void *ctx)
{
    char ts[40];
    int64_t now = redis_now_us();
    lk_time_format_us(now, ts, sizeof(ts));
    size_t lj_len = 0;
    const char *lj = mirror_get(dev, now, &lj_len);
    struct lk_buf b;
    lk_buf_init(&b, 0);
    device_head(&b, dev, lj, lj_len, ts);
    mirror_waiters(&b, dev, now);
    lk_buf_putc(&b, '}');
    struct locks_result res = {200, &b, NULL, NULL, LK_E_OK, NULL};
    fn(ctx, &res);
    lk_buf_free(&b);
}

/* One device: from the copy when it is usable (read-your-writes, as
 * status), else device.lua reads Redis. DEVLOCK_DEVICE_READS=redis (read
 * once at the first call) always reads Redis: the tests compare the two. */
struct locks_call *locks_device(const char *dev, locks_done_fn fn, void *ctx)
{
    char err[256];
    enum lk_status s = check_device(dev, err, sizeof(err));
    if (s) {
        locks_fail(fn, ctx, s, err);
        return NULL;
    }
    static int redis_only = -1;
    if (redis_only < 0) {
        const char *v = getenv("DEVLOCK_DEVICE_READS");
        redis_only = v && !strcmp(v, "redis");
    }
    if (!redis_only && from_mirror()) {
        device_from_mirror(dev, fn, ctx);
        return NULL;
    }
    struct locks_call *c = call_new(K_DEVICE, fn, ctx);
    snprintf(c->device, sizeof(c->device), "%s", dev);
    const char *argv[] = {dev};
    return run(c, SCRIPT_DEVICE, 1, argv);
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

struct locks_call *locks_events(const char *since, long limit, const char *device,
                                const char *plan_uid, locks_done_fn fn, void *ctx)
{
    char start[64] = "-", lim[32], err[256];
    if (since && since[0]) {
        if (!stream_id_valid(since)) {
            locks_fail(fn, ctx, LK_E_BAD_REQUEST, "since must be an event_id such as 1763892000123-0");
            return NULL;
        }
        snprintf(start, sizeof(start), "(%s", since);
    }
    enum lk_status s;
    if (device && device[0] && (s = check_device(device, err, sizeof(err)))) {
        locks_fail(fn, ctx, s, err);
        return NULL;
    }
    if (plan_uid && strlen(plan_uid) > TEXT_MAX) {
        locks_fail(fn, ctx, LK_E_BAD_REQUEST, "plan_uid is too long");
        return NULL;
    }
    snprintf(lim, sizeof(lim), "%ld", limit);
    const char *argv[] = {start, lim, device ? device : "", plan_uid ? plan_uid : "", EVENTS_SCAN_CAP};
    return run(call_new(K_EVENTS, fn, ctx), SCRIPT_EVENTS, 5, argv);
}

/* Writes the catalogue's per-device settings where the scripts read them
 * (dl:{D}:conf), in batches. Run when Redis comes up and after a reload. */
void locks_push_catalogue(void)
{
    enum { BATCH = 300 };
    size_t n = catalogue_count();
    for (size_t i = 0; i < n; i += BATCH) {
        const char *argv[BATCH * 3];
        char nums[BATCH * 2][24];
        int argc = 0;
        for (size_t k = i; k < n && k < i + BATCH; k++) {
            const struct catalogue_device *d = catalogue_at(k);
            char *g = nums[(k - i) * 2], *dl = nums[(k - i) * 2 + 1];
            snprintf(g, 24, "%lld", d->preempt_grace_s >= 0 ? (long long)(d->preempt_grace_s * 1000) : -1LL);
            snprintf(dl, 24, "%lld", d->lock_delay_s >= 0 ? (long long)(d->lock_delay_s * 1000) : -1LL);
            argv[argc++] = d->name;
            argv[argc++] = g;
            argv[argc++] = dl;
        }
        store_eval(SCRIPT_CONF, argc, argv, NULL, ignore_cb, NULL);
    }
}

const char *locks_arg_maxlen(void) { return maxlen_arg; }
const char *locks_arg_delay(void) { return delay_arg; }
const char *locks_arg_grace(void) { return grace_arg; }

/* ---- sessions ----------------------------------------------------------------
 *
 * session.lua keeps who owns each WebSocket session (broker, socket
 * connection id, user). A detach must not be lost: one that Redis did not
 * answer is retried with capped backoff until it is, from a bounded list
 * (a detach that ran but whose answer was lost is harmless to repeat: the
 * record no longer names that socket, so the repeat is ignored). A broker
 * that dies cannot detach at all: every broker runs 'reap' now and then,
 * which detaches the sessions of brokers whose liveness key has been gone
 * for SESSION_LOST_WINDOW_MS. */

#define SESSION_LOST_WINDOW_MS "1500" /* a liveness key missing this long: dead */

struct session_detach {
    struct retry r;            /* first: the retry list holds detaches */
    char session[37], conn[37];
};

static struct {
    int reaping;
} sess;

static void session_send_detach(struct retry *x);

static void session_grace_arg(char *out, size_t n)
{
    snprintf(out, n, "%lld", (long long)(cfg.session_grace * 1000));
}

/* The other brokers detach it once this broker's liveness key is gone. */
static void session_detach_drop(struct retry *x, const char *why)
{
    struct session_detach *d = (struct session_detach *)x;
    lk_info("sessions: session %s is left to the broker-liveness cleanup (%s)", d->session, why);
    free(d);
}

static void session_detach_cb(void *ctx, redisReply *r, enum lk_status s)
{
    struct session_detach *d = ctx;
    if (s == LK_E_UNAVAILABLE) {
        retry_later(&d->r);
        return;
    }
    if (s == LK_E_OK) {
        retry_answered();
        if (elem_int(r, 1) > 0)
            events_arm(elem_int(r, 1)); /* this broker ends the session if nobody attaches */
    } else {
        lk_error("sessions: detaching session %s failed", d->session);
    }
    free(d);
}

static void session_send_detach(struct retry *x)
{
    struct session_detach *d = (struct session_detach *)x;
    char grace[32];
    session_grace_arg(grace, sizeof(grace));
    const char *argv[] = {"detach", d->session, lk.broker, d->conn, "", grace};
    store_eval(SCRIPT_SESSION, 6, argv, NULL, session_detach_cb, d);
}

void locks_session_detach(const char *session, const char *conn)
{
    struct session_detach *d = lk_xcalloc(1, sizeof(*d));
    snprintf(d->session, sizeof(d->session), "%s", session);
    snprintf(d->conn, sizeof(d->conn), "%s", conn);
    d->r.send = session_send_detach;
    d->r.drop = session_detach_drop;
    session_send_detach(&d->r);
}

void locks_session_claim(const char *session, const char *conn, const char *user)
{
    const char *argv[] = {"claim", session, lk.broker, conn, user ? user : ""};
    store_eval(SCRIPT_SESSION, 5, argv, NULL, ignore_cb, NULL);
}

/* The attach's reply: {'ok', n, old broker, old conn} | {'forbidden'} |
 * {'busy'}. */
static void session_attach_cb(void *ctx, redisReply *r, enum lk_status s)
{
    struct locks_call *c = ctx;
    c->op = NULL;
    const char *word = s == LK_E_OK && r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
                               r->element[0]->type == REDIS_REPLY_STRING
                           ? r->element[0]->str
                           : NULL;
    struct locks_attach_result res = {LOCKS_ATTACH_UNEXPECTED, NULL};
    if (!word)
        res.outcome = LOCKS_ATTACH_UNAVAILABLE;
    else if (!strcmp(word, "forbidden"))
        res.outcome = LOCKS_ATTACH_FORBIDDEN;
    else if (!strcmp(word, "busy"))
        res.outcome = LOCKS_ATTACH_BUSY;
    else if (!strcmp(word, "ok")) {
        res.outcome = LOCKS_ATTACH_OK;
        if (r->elements >= 4 && r->element[2]->type == REDIS_REPLY_STRING &&
            r->element[3]->type == REDIS_REPLY_STRING && !strcmp(r->element[2]->str, lk.broker))
            res.moved_from = r->element[3]->str;
    }
    locks_attach_fn fn = c->attach_fn;
    c->attach_fn = NULL;
    if (fn)
        fn(c->ctx, &res);
    call_end(c);
}

struct locks_call *locks_session_attach(const char *session, const char *own, const char *conn,
                                        const char *user, int admin, locks_attach_fn fn, void *ctx)
{
    char grace[32];
    session_grace_arg(grace, sizeof(grace));
    const char *argv[] = {"attach", session, lk.broker, conn, user ? user : "", grace,
                          admin ? "1" : "0", own ? own : ""};
    struct locks_call *c = call_new(K_ATTACH, NULL, ctx);
    c->attach_fn = fn;
    struct store_op *op = store_eval(SCRIPT_SESSION, 8, argv, NULL, session_attach_cb, c);
    if (!op)
        return NULL; /* answered (and c freed) already */
    c->op = op;
    return c;
}

static void session_reap_cb(void *ctx, redisReply *r, enum lk_status s)
{
    (void)ctx;
    sess.reaping = 0;
    if (s != LK_E_OK)
        return;
    if (elem_int(r, 0) > 0) {
        lk_warn("sessions: %lld session locks of a broker that is gone enter their grace period",
                elem_int(r, 0));
        if (elem_int(r, 1) > 0)
            events_arm(elem_int(r, 1));
    }
    if (elem_int(r, 2) > 0) /* no deadline waits for a broker that is gone */
        events_arm(elem_int(r, 2));
}

void locks_session_reap(void)
{
    if (sess.reaping || !store_ready())
        return;
    char grace[32];
    session_grace_arg(grace, sizeof(grace));
    const char *argv[] = {"reap", "", lk.broker, "", "", grace, "0", "", SESSION_LOST_WINDOW_MS};
    sess.reaping = 1;
    if (!store_eval(SCRIPT_SESSION, 9, argv, NULL, session_reap_cb, NULL))
        sess.reaping = 0;
}

void locks_session_shutdown(void)
{
    retry_shutdown();
}
