/* store.c - hiredis glue. Two connections share the libuv loop with
 * libwebsockets: `cmd` pipelines every script, `sub` blocks in XREAD on the
 * event stream. No blocking Redis call is ever made.
 *
 * Faults: a connection that drops is re-made with capped exponential
 * backoff and full jitter. hiredis 0.14 has no command timeouts, so every
 * command is on a FIFO deadline list watched by one timer; a command past
 * its deadline is answered UNAVAILABLE and Redis is marked stalled until
 * any reply comes back (a heartbeat PING keeps one command in flight so
 * recovery is noticed). Scripts are sent with EVALSHA; NOSCRIPT (Redis
 * restarted and lost its script cache) is answered by resending as EVAL,
 * which also reloads the cache. */
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>

#include "config.h"
#include "embedded.h"
#include "lk_log.h"
#include "lk_mem.h"
#include "lk_time.h"
#include "store.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define HEARTBEAT_MS 250
#define READ_COUNT "1000"

static const char *const script_files[SCRIPT__COUNT] = {
    "acquire.lua", "release.lua", "renew.lua", "expire.lua",
    "snapshot.lua", "device.lua", "events.lua", "resume.lua",
    "force_release.lua", "unwait.lua", "session.lua", "stats.lua", "conf.lua",
};

struct script {
    char *body;       /* prelude + script */
    size_t len;
    char sha[41];
};

struct store_op {
    store_reply_fn fn;       /* NULL once answered or cancelled */
    void *ctx;
    enum store_script script;
    int nkeys, argc;
    char **argv;             /* keys then args, for the NOSCRIPT resend */
    size_t *argvlen;
    int64_t deadline_ms;
    int retried;
    struct store_op *prev, *next;  /* deadline list, while fn is set */
};

struct conn {
    const char *name;
    redisAsyncContext *ac;
    int up;                  /* connected and greeted */
    unsigned attempts;       /* failed connects since the last success */
    uv_timer_t retry;
};

static struct {
    uv_loop_t *loop;
    char *host, *unix_path, *password;
    int port, db;
    struct script scripts[SCRIPT__COUNT];
    struct conn cmd, sub;
    struct store_op *head, *tail;   /* deadline list, oldest first */
    uv_timer_t deadline_timer, heartbeat;
    int64_t last_reply_ms;
    int stalled, ping_in_flight, shutting_down, reading;
    unsigned long reconnects;
    char read_id[64];
    char broker_id[64];
    void (*on_up)(void);
    void (*on_events)(redisReply *);
} st;

static void conn_start(struct conn *c);
static void deadline_cb(uv_timer_t *t);

/* ---- URL ------------------------------------------------------------ */

static int parse_url(const char *url)
{
    st.port = 6379;
    if (strncmp(url, "unix://", 7) == 0) {
        const char *path = url + 7;
        const char *q = strchr(path, '?');
        st.unix_path = lk_xstrndup(path, q ? (size_t)(q - path) : strlen(path));
        if (q && strncmp(q, "?db=", 4) == 0)
            st.db = atoi(q + 4);
        return st.unix_path[0] ? 0 : -1;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return -1;
    const char *p = url + 8, *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        st.password = lk_xstrndup(pw, (size_t)(at - pw));
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    size_t hostlen = slash ? (size_t)(slash - p) : strlen(p);
    const char *colon = NULL;
    if (hostlen && p[0] == '[') { /* [::1]:port */
        const char *rb = memchr(p, ']', hostlen);
        if (!rb)
            return -1;
        st.host = lk_xstrndup(p + 1, (size_t)(rb - p - 1));
        if (rb + 1 < p + hostlen && rb[1] == ':')
            colon = rb + 1;
    } else {
        colon = memchr(p, ':', hostlen);
        st.host = lk_xstrndup(p, colon ? (size_t)(colon - p) : hostlen);
    }
    if (colon) {
        st.port = atoi(colon + 1);
        if (st.port <= 0 || st.port > 65535)
            return -1;
    }
    if (slash && slash[1])
        st.db = atoi(slash + 1);
    if (!st.host[0]) {
        free(st.host);
        st.host = lk_xstrdup("localhost");
    }
    return 0;
}

/* ---- deadlines -------------------------------------------------------- */

static void list_remove(struct store_op *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else if (st.head == op)
        st.head = op->next;
    if (op->next)
        op->next->prev = op->prev;
    else if (st.tail == op)
        st.tail = op->prev;
    op->prev = op->next = NULL;
}

static void arm_deadline(void)
{
    if (!st.head) {
        uv_timer_stop(&st.deadline_timer);
        return;
    }
    int64_t wait = st.head->deadline_ms - lk_time_mono_ms();
    uv_timer_start(&st.deadline_timer, deadline_cb, wait > 0 ? (uint64_t)wait : 0, 0);
}

/* Answers the op (once) and takes it off the deadline list. */
static void answer(struct store_op *op, redisReply *r, enum lk_status s)
{
    store_reply_fn fn = op->fn;
    if (!fn)
        return;
    op->fn = NULL;
    list_remove(op);
    fn(op->ctx, r, s);
}

static void deadline_cb(uv_timer_t *t)
{
    (void)t;
    int64_t now = lk_time_mono_ms();
    while (st.head && st.head->deadline_ms <= now) {
        if (!st.stalled)
            lk_warn("redis: no reply within %ld ms, answering 503 until it answers again",
                    cfg.redis_timeout_ms);
        st.stalled = 1;
        answer(st.head, NULL, LK_E_UNAVAILABLE);
    }
    arm_deadline();
}

static void op_free(struct store_op *op)
{
    for (int i = 0; i < op->argc; i++)
        free(op->argv[i]);
    free(op->argv);
    free(op->argvlen);
    free(op);
}

/* ---- commands ---------------------------------------------------------- */

static void got_reply(void)
{
    st.last_reply_ms = lk_time_mono_ms();
    if (st.stalled)
        lk_info("redis: answering again");
    st.stalled = 0;
}

static int send_script(struct store_op *op, int as_eval);

static void script_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct store_op *op = privdata;
    redisReply *r = reply;
    if (r)
        got_reply();
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0 && !op->retried &&
        op->fn) {
        op->retried = 1;
        if (send_script(op, 1) == 0)
            return;
    }
    if (!r)
        answer(op, NULL, LK_E_UNAVAILABLE);
    else if (r->type == REDIS_REPLY_ERROR) {
        lk_error("redis: %s failed: %s", script_files[op->script], r->str);
        answer(op, r, LK_E_INTERNAL);
    } else
        answer(op, r, LK_E_OK);
    op_free(op);
}

static int send_script(struct store_op *op, int as_eval)
{
    int n = op->argc + 3;
    const char **av = lk_xmalloc(sizeof(*av) * (size_t)n);
    size_t *al = lk_xmalloc(sizeof(*al) * (size_t)n);
    char nk[16];
    struct script *s = &st.scripts[op->script];
    av[0] = as_eval ? "EVAL" : "EVALSHA";
    al[0] = strlen(av[0]);
    av[1] = as_eval ? s->body : s->sha;
    al[1] = as_eval ? s->len : 40;
    snprintf(nk, sizeof(nk), "%d", op->nkeys);
    av[2] = nk;
    al[2] = strlen(nk);
    for (int i = 0; i < op->argc; i++) {
        av[3 + i] = op->argv[i];
        al[3 + i] = op->argvlen[i];
    }
    int rc = redisAsyncCommandArgv(st.cmd.ac, script_cb, op, n, av, al);
    free(av);
    free(al);
    return rc == REDIS_OK ? 0 : -1;
}

int store_ready(void) { return st.cmd.up && !st.stalled; }
unsigned long store_reconnects(void) { return st.reconnects; }

struct store_op *store_eval(enum store_script script, int nkeys, int argc, const char **argv,
                            const size_t *argvlen, store_reply_fn fn, void *ctx)
{
    if (!store_ready()) {
        fn(ctx, NULL, LK_E_UNAVAILABLE);
        return NULL;
    }
    struct store_op *op = lk_xcalloc(1, sizeof(*op));
    op->fn = fn;
    op->ctx = ctx;
    op->script = script;
    op->nkeys = nkeys;
    op->argc = argc;
    op->argv = lk_xmalloc(sizeof(char *) * (size_t)(argc ? argc : 1));
    op->argvlen = lk_xmalloc(sizeof(size_t) * (size_t)(argc ? argc : 1));
    for (int i = 0; i < argc; i++) {
        size_t len = argvlen ? argvlen[i] : strlen(argv[i]);
        op->argv[i] = lk_xstrndup(argv[i], len);
        op->argvlen[i] = len;
    }
    op->deadline_ms = lk_time_mono_ms() + cfg.redis_timeout_ms;
    if (send_script(op, 0) != 0) {
        fn(ctx, NULL, LK_E_UNAVAILABLE);
        op_free(op);
        return NULL;
    }
    op->prev = st.tail;
    if (st.tail)
        st.tail->next = op;
    else
        st.head = op;
    st.tail = op;
    if (st.head == op)
        arm_deadline();
    return op;
}

void store_cancel(struct store_op *op)
{
    if (op && op->fn) {
        op->fn = NULL;
        list_remove(op);
    }
}

/* ---- heartbeat ----------------------------------------------------------- */

static void ping_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    (void)privdata;
    st.ping_in_flight = 0;
    if (reply)
        got_reply();
}

/* Keeps one heartbeat in flight when idle (it also refreshes this broker's
 * liveness key, which keeps its queued requests servable), so a stall is seen even with no
 * traffic, and its end is seen even when requests are refused. */
static void heartbeat_cb(uv_timer_t *t)
{
    (void)t;
    int64_t now = lk_time_mono_ms();
    if (!st.cmd.up)
        return;
    if (st.ping_in_flight) {
        if (!st.stalled && now - st.last_reply_ms > cfg.redis_timeout_ms) {
            lk_warn("redis: heartbeat unanswered for %ld ms", (long)(now - st.last_reply_ms));
            st.stalled = 1;
        }
        return;
    }
    if (redisAsyncCommand(st.cmd.ac, ping_cb, NULL, "SET dl:broker:%s 1 PX 5000", st.broker_id) ==
        REDIS_OK) {
        st.ping_in_flight = 1;
        st.last_reply_ms = st.last_reply_ms > now - HEARTBEAT_MS ? st.last_reply_ms : now;
    }
}

/* ---- the stream reader ------------------------------------------------------ */

static void read_next(void);

static void read_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    (void)privdata;
    redisReply *r = reply;
    st.reading = 0;
    if (!r)
        return; /* disconnected: resumes from read_id on reconnect */
    if (r->type == REDIS_REPLY_ERROR) {
        lk_error("redis: XREAD failed: %s", r->str);
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
               r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
        redisReply *entries = r->element[0]->element[1];
        if (entries->elements > 0) {
            redisReply *last = entries->element[entries->elements - 1];
            if (last->type == REDIS_REPLY_ARRAY && last->elements >= 1 &&
                last->element[0]->type == REDIS_REPLY_STRING)
                snprintf(st.read_id, sizeof(st.read_id), "%s", last->element[0]->str);
            if (st.on_events)
                st.on_events(entries);
        }
    }
    read_next();
}

static void read_next(void)
{
    if (!st.sub.up || st.reading || !st.read_id[0] || st.shutting_down)
        return;
    if (redisAsyncCommand(st.sub.ac, read_cb, NULL, "XREAD COUNT " READ_COUNT
                          " BLOCK 5000 STREAMS dl:events %s", st.read_id) == REDIS_OK)
        st.reading = 1;
}

void store_read_from(const char *last_id)
{
    snprintf(st.read_id, sizeof(st.read_id), "%s", last_id);
    read_next();
}

void store_on_up(void (*fn)(void)) { st.on_up = fn; }
void store_on_events(void (*fn)(redisReply *)) { st.on_events = fn; }

/* ---- connections ---------------------------------------------------------- */

static void retry_cb(uv_timer_t *t)
{
    conn_start(t->data);
}

static void schedule_retry(struct conn *c)
{
    if (st.shutting_down)
        return;
    unsigned shift = c->attempts < 6 ? c->attempts : 6;
    uint64_t cap = (uint64_t)BACKOFF_MIN_MS << shift;
    if (cap > BACKOFF_MAX_MS)
        cap = BACKOFF_MAX_MS;
    /* full jitter over [cap/2, cap]: brokers restarted together spread out */
    uint64_t delay = cap / 2 + (uint64_t)(rand() % (int)(cap / 2 + 1));
    c->attempts++;
    lk_debug("redis: %s reconnect in %llu ms", c->name, (unsigned long long)delay);
    uv_timer_start(&c->retry, retry_cb, delay, 0);
}

static void greet_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct conn *c = privdata;
    redisReply *r = reply;
    if (!r)
        return; /* the disconnect callback schedules the retry */
    if (r->type == REDIS_REPLY_ERROR) {
        lk_error("redis: %s: %s", c->name, r->str);
        redisAsyncDisconnect(ac);
        return;
    }
    c->up = 1;
    c->attempts = 0;
    st.reconnects++;
    lk_info("redis: %s connection up", c->name);
    if (c == &st.cmd) {
        got_reply();
        if (st.on_up)
            st.on_up();
    } else {
        read_next();
    }
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    struct conn *c = ac->data;
    if (status != REDIS_OK) {
        lk_warn("redis: %s connect failed: %s", c->name, ac->errstr);
        c->ac = NULL; /* hiredis frees it */
        schedule_retry(c);
        return;
    }
    redisAsyncContext *a = (redisAsyncContext *)ac;
    if (st.password)
        redisAsyncCommand(a, NULL, NULL, "AUTH %s", st.password);
    if (st.db)
        redisAsyncCommand(a, NULL, NULL, "SELECT %d", st.db);
    if (c == &st.cmd)
        redisAsyncCommand(a, greet_cb, c, "SET dl:broker:%s 1 PX 5000", st.broker_id);
    else
        redisAsyncCommand(a, greet_cb, c, "PING");
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    struct conn *c = ac->data;
    (void)status;
    if (c->up)
        lk_warn("redis: %s connection lost%s%s", c->name, ac->errstr[0] ? ": " : "", ac->errstr);
    c->up = 0;
    c->ac = NULL;
    if (c == &st.cmd) {
        st.ping_in_flight = 0;
        st.stalled = 0;
    } else {
        st.reading = 0;
    }
    schedule_retry(c);
}

static void conn_start(struct conn *c)
{
    if (st.shutting_down)
        return;
    redisAsyncContext *ac = st.unix_path ? redisAsyncConnectUnix(st.unix_path)
                                         : redisAsyncConnect(st.host, st.port);
    if (!ac || ac->err) {
        lk_warn("redis: %s connect failed: %s", c->name, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_retry(c);
        return;
    }
    ac->data = c;
    c->ac = ac;
    redisLibuvAttach(ac, st.loop);
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
}

/* ---- set-up ------------------------------------------------------------------ */

static void load_scripts(void)
{
    const struct embedded_file *prelude = NULL;
    for (const struct embedded_file *f = embedded_lua; f->name; f++)
        if (!strcmp(f->name, "prelude.lua"))
            prelude = f;
    for (int i = 0; i < SCRIPT__COUNT; i++) {
        const struct embedded_file *f = embedded_lua;
        while (f->name && strcmp(f->name, script_files[i]))
            f++;
        if (!f->name || !prelude) {
            lk_error("internal: script %s not embedded", script_files[i]);
            abort();
        }
        struct script *s = &st.scripts[i];
        s->len = prelude->len + f->len;
        s->body = lk_xmalloc(s->len + 1);
        memcpy(s->body, prelude->data, prelude->len);
        memcpy(s->body + prelude->len, f->data, f->len + 1);
        unsigned char md[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)s->body, s->len, md);
        for (int k = 0; k < SHA_DIGEST_LENGTH; k++)
            snprintf(s->sha + 2 * k, 3, "%02x", md[k]);
    }
}

int store_init(uv_loop_t *loop, const char *url, const char *broker_id)
{
    st.loop = loop;
    snprintf(st.broker_id, sizeof(st.broker_id), "%s", broker_id);
    if (parse_url(url) != 0)
        return -1;
    load_scripts();
    st.cmd.name = "command";
    st.sub.name = "stream";
    uv_timer_init(loop, &st.cmd.retry);
    uv_timer_init(loop, &st.sub.retry);
    st.cmd.retry.data = &st.cmd;
    st.sub.retry.data = &st.sub;
    uv_timer_init(loop, &st.deadline_timer);
    uv_timer_init(loop, &st.heartbeat);
    uv_timer_start(&st.heartbeat, heartbeat_cb, HEARTBEAT_MS, HEARTBEAT_MS);
    conn_start(&st.cmd);
    conn_start(&st.sub);
    return 0;
}

static void close_conn(struct conn *c)
{
    uv_timer_stop(&c->retry);
    uv_close((uv_handle_t *)&c->retry, NULL);
    if (c->ac) {
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        c->up = 0;
        redisAsyncFree(ac);
    }
}

void store_shutdown(void)
{
    st.shutting_down = 1;
    close_conn(&st.cmd);
    close_conn(&st.sub);
    while (st.head)
        answer(st.head, NULL, LK_E_UNAVAILABLE);
    uv_timer_stop(&st.heartbeat);
    uv_timer_stop(&st.deadline_timer);
    uv_close((uv_handle_t *)&st.heartbeat, NULL);
    uv_close((uv_handle_t *)&st.deadline_timer, NULL);
    for (int i = 0; i < SCRIPT__COUNT; i++)
        free(st.scripts[i].body);
    free(st.host);
    free(st.unix_path);
    free(st.password);
}
