/* store.c - hiredis glue. Two connections share the libuv loop with
 * libwebsockets: `cmd` pipelines every script, `sub` blocks in XREAD on the
 * event stream. No blocking Redis call is ever made.
 *
 * Faults: a connection that drops is re-made with capped exponential
 * backoff and full jitter. hiredis 0.14 has no command timeouts, so every
 * command is on a FIFO deadline list watched by one timer; a command past
 * its deadline is answered UNAVAILABLE and Redis is marked stalled until
 * any reply comes back (a heartbeat PING keeps one command in flight so
 * recovery is noticed). Every script gets this broker's fence-clock
 * setting as a last argument (prelude.lua takes it off).
 *
 * Scripts: every script of scripts.def is a function of one Functions
 * library (Redis 7), built at start-up from prelude.lua and the scripts and
 * loaded with FUNCTION LOAD on every (re)connect, before the greeting; a
 * call is FCALL. The library's name and its functions' carry a hash of its
 * text, so brokers of two versions share a Redis. "Function not found"
 * (Redis restarted without persistence, FUNCTION FLUSH, a master that
 * lacks it) means the call did not run: the library is loaded again and the
 * call resent once, pipelined behind the load; a second not-found is resent
 * as EVAL. Without Functions (DEVLOCK_FUNCTIONS=0, or a Redis that refuses
 * FUNCTION LOAD as an unknown command or by ACL) scripts are sent with
 * EVALSHA of prelude + begin(ARGV) + script; NOSCRIPT (Redis restarted and
 * lost its script cache) is answered by resending as EVAL, which also
 * reloads the cache.
 *
 * Dead links: every link is opened through redis_link.c (keepalive probes
 * and TCP_USER_TIMEOUT, so a master that vanished from the network, the
 * usual cause of a failover, is dropped within seconds; a stalled Redis
 * still acknowledges TCP and is not dropped: the deadlines answer for it).
 * Connecting and greeting are bounded by one timer per connection
 * (redis_link_timeout_ms): past it the attempt is abandoned and retried.
 *
 * With --redis-sentinel, where to connect is sentinel.c's answer: each
 * connection has its own struct sentinel, asked again before every
 * (re)connect and after every failed query (with the same backoff, capped
 * lower), and a master it names is checked with sentinel_check_master
 * before it is greeted. A master answering nothing for twice the link
 * timeout is dropped so that the Sentinels are asked again. */
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>

#include "config.h"
#include "embedded.h"
#include "keys.h"
#include "lk_buf.h"
#include "lk_log.h"
#include "lk_mem.h"
#include "lk_time.h"
#include "redis_link.h"
#include "sentinel.h"
#include "store.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define BACKOFF_MAX_SENTINEL_MS 400
#define HEARTBEAT_MS 250
#define OVERLOAD_FACTOR 8
#define READ_COUNT "1000"

/* The script table (scripts.def): file, ARGV counts, writes. */
struct script_row {
    const char *file;
    int argc_min, argc_max, writes;
};

static const struct script_row script_rows[SCRIPT__COUNT] = {
#define SCRIPT(name, file, argc_min, argc_max, writes) \
    [SCRIPT_##name] = {file, argc_min, argc_max, writes},
#define MODE(name, mode, argc_min, argc_max)
#include "scripts.def"
#undef SCRIPT
#undef MODE
};

struct script_mode {
    enum store_script script;
    const char *mode;
    int argc_min, argc_max;
};

static const struct script_mode script_modes[] = {
#define SCRIPT(name, file, argc_min, argc_max, writes)
#define MODE(name, mode, argc_min, argc_max) {SCRIPT_##name, mode, argc_min, argc_max},
#include "scripts.def"
#undef SCRIPT
#undef MODE
};
#define NMODES (sizeof(script_modes) / sizeof(script_modes[0]))

struct script {
    char *body;       /* prelude + begin(ARGV) + script, for EVAL(SHA) */
    size_t len;
    char sha[41];
    char fname[80];   /* its function in the library: dl_<hash>_<file stem> */
};

/* The Functions library: its name carries the first 12 hex digits of the
 * SHA-1 of its text (built with a placeholder for them). */
#define LIB_HASH_LEN 12
#define LIB_PLACEHOLDER "000000000000"

struct store_op {
    int refs;                /* the script's reply, plus each WAIT in flight */
    redisReply *saved;       /* the script's reply, kept until WAIT answers */
    int script_done;
    long long replicas;      /* what the last WAIT answered */
    long wait_for;           /* replicas it must reach */
    store_reply_fn fn;       /* NULL once answered or cancelled */
    store_reply_fn late;     /* the outcome after fn was answered 503; NULL once run */
    void *ctx;
    enum store_script script;
    int argc;
    char **argv;             /* its ARGV, for a resend (NOSCRIPT, function not found, NEEDKEYS) */
    struct keyset keys;      /* its KEYS: keys.c's, then what NEEDKEYS answers added */
    int key_rounds;          /* resends after NEEDKEYS */
    int as_eval;             /* last sent as EVAL (after NOSCRIPT) */
    size_t *argvlen;
    int64_t deadline_ms;
    int retried;             /* resends: after NOSCRIPT, or after a function not found */
    unsigned load_gen;       /* st.load_gen when it was last sent */
    struct store_op *prev, *next;  /* deadline list, while fn is set */
};

struct conn {
    const char *name;
    redisAsyncContext *ac;
    struct sentinel *sentinel;  /* finds the master (with --redis-sentinel), else NULL */
    int up;                  /* connected and greeted */
    unsigned attempts;       /* failed connects and Sentinel queries since the last success */
    char host[256];          /* where ac connects */
    int port;
    uv_timer_t retry;
    uv_timer_t link;         /* bounds a connect + greeting */
};

static struct {
    uv_loop_t *loop;
    char *host, *unix_path, *password;
    int port, db;
    struct script scripts[SCRIPT__COUNT];
    char *library;             /* the Functions library's text */
    size_t library_len;
    char library_name[32];     /* devlock_<hash> */
    int functions_wanted;      /* not DEVLOCK_FUNCTIONS=0 */
    int functions;             /* calls are FCALL (this connection loaded the library) */
    unsigned load_gen;         /* FUNCTION LOADs sent on this connection */
    struct conn cmd, sub;
    struct store_op *head, *tail;   /* deadline list, oldest first */
    uv_timer_t deadline_timer, heartbeat;
    int64_t last_reply_ms;
    int stalled, ping_in_flight, shutting_down, reading;
    unsigned long reconnects;
    unsigned long needkeys;    /* calls resent with more keys (NEEDKEYS) */
    char read_id[64];
    char broker_id[64];
    int fence_clock;
    int strict_keys;           /* DEVLOCK_TEST_STRICT_KEYS=1: scripts check every key (prelude.lua) */
    int skip_walk;             /* DEVLOCK_TEST_KEYS_FAULT=walk: they do not ask for missing keys */
    int no_fast_path;          /* DEVLOCK_TEST_FAST_PATH=0: acquire, renew and release take their general path */
    long replicas;             /* replicas the master reports (ROLE) */
    unsigned beats;
    void (*on_up)(void);
    store_keys_fn on_keys;
    void (*on_events)(redisReply *);
    void (*on_stream_up)(void);
} st;

static void conn_start(struct conn *c);
static void deadline_cb(uv_timer_t *t);
static void schedule_retry(struct conn *c);
static void conn_drop(struct conn *c, const char *why);
static void link_timeout_cb(uv_timer_t *t);
static void conn_kill(struct conn *c);

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

/* Answers the op (once) and takes it off the deadline list. An op with a
 * late handler answered 503 keeps the handler for the outcome. */
static void answer(struct store_op *op, redisReply *r, enum lk_status s)
{
    store_reply_fn fn = op->fn;
    if (!fn)
        return;
    op->fn = NULL;
    list_remove(op);
    if (r || s != LK_E_UNAVAILABLE)
        op->late = NULL; /* the outcome is known: nothing comes later */
    fn(op->ctx, r, s);
}

/* The script's own outcome: to the caller if it is still waiting, else to
 * the late handler (once). An unknown outcome given to the caller is also
 * given to the late handler at once: late runs after every 503 of a sent
 * script, as store.h promises. */
static void deliver(struct store_op *op, redisReply *r, enum lk_status s)
{
    if (op->fn) {
        answer(op, r, s);
        if (r || s != LK_E_UNAVAILABLE)
            return;
    }
    store_reply_fn late = op->late;
    if (!late)
        return;
    op->late = NULL;
    late(op->ctx, r, s);
}

static void deadline_cb(uv_timer_t *t)
{
    (void)t;
    int64_t now = lk_time_mono_ms();
    /* Redis answering, only busy (a burst queued many commands): give the
     * queue more time, up to OVERLOAD_FACTOR timeouts; a Redis that answers
     * nothing for a whole timeout is unavailable and answered 503 at once. */
    if (st.head && st.head->deadline_ms <= now && now - st.last_reply_ms < cfg.redis_timeout_ms &&
        st.head->deadline_ms - cfg.redis_timeout_ms + OVERLOAD_FACTOR * cfg.redis_timeout_ms > now) {
        uv_timer_start(&st.deadline_timer, deadline_cb, (uint64_t)(st.last_reply_ms + cfg.redis_timeout_ms - now), 0);
        return;
    }
    while (st.head && st.head->deadline_ms <= now) {
        if (!st.stalled)
            lk_warn("redis: no reply within %ld ms, answering 503 until it answers again",
                    cfg.redis_timeout_ms);
        st.stalled = 1;
        answer(st.head, NULL, LK_E_UNAVAILABLE);
    }
    arm_deadline();
}

static void reply_free(redisReply *r);

static void op_free(struct store_op *op)
{
    if (--op->refs > 0)
        return;
    reply_free(op->saved);
    for (int i = 0; i < op->argc; i++)
        free(op->argv[i]);
    free(op->argv);
    free(op->argvlen);
    keyset_free(&op->keys);
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
static void send_library(void);

/* A script that did not run because Redis lacks it: sends it again (once
 * after NOSCRIPT, as EVAL; after "Function not found", behind a FUNCTION
 * LOAD, then as EVAL if still not found). 1 if it was resent. Neither
 * error runs anything, so a resend cannot double a write. */
static int resend(struct store_op *op, const redisReply *r)
{
    if (!op->retried && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        op->retried = 1;
        return send_script(op, 1) == 0;
    }
    if (op->retried >= 2 || strcmp(r->str, "ERR Function not found") != 0)
        return 0;
    if (op->retried++ == 0) {
        if (op->load_gen == st.load_gen) /* no FUNCTION LOAD sent since this call */
            send_library();
        return send_script(op, 0) == 0;
    }
    return send_script(op, 1) == 0;
}


static redisReply *reply_dup(const redisReply *r)
{
    redisReply *d = lk_xcalloc(1, sizeof(*d));
    d->type = r->type;
    d->integer = r->integer;
    if (r->str) {
        d->str = lk_xstrndup(r->str, r->len);
        d->len = r->len;
    }
    if (r->elements) {
        d->elements = r->elements;
        d->element = lk_xcalloc(r->elements, sizeof(*d->element));
        for (size_t i = 0; i < r->elements; i++)
            d->element[i] = reply_dup(r->element[i]);
    }
    return d;
}

static void reply_free(redisReply *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->elements; i++)
        reply_free(r->element[i]);
    free(r->element);
    free(r->str);
    free(r);
}

static void conn_drop(struct conn *c, const char *why);
static long wait_target(void);

/* A script answers {NEEDKEYS, key...} when it would touch keys its call did
 * not declare (prelude.lua "keys declared"): it wrote nothing, so the call
 * is sent again with them. Each round reaches one step further into the
 * data; more than KEY_ROUNDS rounds (the data changing under every round)
 * fail the call as unavailable, which nothing ran. */
#define KEY_ROUNDS 16

static int is_needkeys(const redisReply *r)
{
    return r->type == REDIS_REPLY_ARRAY && r->elements >= 1 && r->element[0]->type == REDIS_REPLY_STATUS &&
           r->element[0]->len == 8 && memcmp(r->element[0]->str, "NEEDKEYS", 8) == 0;
}

static int more_keys(struct store_op *op, const redisReply *r)
{
    if (op->key_rounds >= KEY_ROUNDS) {
        lk_warn("redis: %s still needs %zu more keys after %d rounds; answering 503",
                script_rows[op->script].file, r->elements - 1, op->key_rounds);
        return 0;
    }
    op->key_rounds++;
    st.needkeys++;
    for (size_t i = 1; i < r->elements; i++) {
        const redisReply *k = r->element[i];
        if (k->type == REDIS_REPLY_STRING)
            keyset_append(&op->keys, k->str, k->len);
    }
    return send_script(op, op->as_eval) == 0;
}

static void script_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct store_op *op = privdata;
    redisReply *r = reply;
    if (r)
        got_reply();
    if (r && r->type == REDIS_REPLY_ERROR && op->fn && resend(op, r)) {
        op_free(op);
        return;
    }
    if (r && is_needkeys(r)) {
        if (!op->fn || !more_keys(op, r))
            deliver(op, NULL, LK_E_UNAVAILABLE); /* it did not run */
        op_free(op);
        return;
    }
    if (r && r->type == REDIS_REPLY_ERROR && st.strict_keys && strstr(r->str, "devlock strict keys")) {
        lk_error("redis: %s touched a key it did not declare: %s", script_rows[op->script].file, r->str);
        abort(); /* a test mode: the suite must see it */
    }
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "READONLY", 8) == 0) {
        /* a replica now (failover): find the new master */
        conn_drop(&st.cmd, "the server is a read-only replica now");
        deliver(op, NULL, LK_E_UNAVAILABLE);
    } else if (!r)
        deliver(op, NULL, LK_E_UNAVAILABLE);
    else if (r->type == REDIS_REPLY_ERROR) {
        lk_error("redis: %s failed: %s", script_rows[op->script].file, r->str);
        if (op->fn)
            answer(op, r, LK_E_INTERNAL);
        else
            deliver(op, NULL, LK_E_UNAVAILABLE); /* late, and it did not run */
    } else if (!op->fn) {
        deliver(op, r, LK_E_OK); /* answered 503 already: the late handler follows it up */
    } else if (op->refs > 1) {
        op->saved = reply_dup(r); /* answered when WAIT returns */
        op->script_done = 1;
    } else
        answer(op, r, LK_E_OK);
    op_free(op);
}

static void wait_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct store_op *op = privdata;
    redisReply *r = reply;
    if (r && r->type == REDIS_REPLY_INTEGER)
        op->replicas = r->integer;
    if (op->refs == 1 && op->script_done) { /* the last WAIT, after the script */
        if (op->replicas >= op->wait_for) {
            answer(op, op->saved, LK_E_OK);
        } else {
            lk_warn("redis: %lld of %ld replicas confirmed a change within %ld ms; answering 503",
                    op->replicas, op->wait_for, cfg.redis_wait_ms);
            answer(op, NULL, LK_E_UNAVAILABLE);
            deliver(op, op->saved, LK_E_OK); /* it ran, unconfirmed: let the caller undo it */
        }
    } else if (!r) {
        answer(op, NULL, LK_E_UNAVAILABLE);
    }
    op_free(op);
}

static int send_script(struct store_op *op, int as_eval)
{
    int n = 3 + op->keys.n + op->argc + 1; /* EVALSHA sha nkeys keys... args... flags */
    const char **av = lk_xmalloc(sizeof(*av) * (size_t)n);
    size_t *al = lk_xmalloc(sizeof(*al) * (size_t)n);
    char nk[16], flags[4];
    struct script *s = &st.scripts[op->script];
    if (as_eval) {
        av[0] = "EVAL";
        av[1] = s->body;
        al[1] = s->len;
    } else if (st.functions) {
        av[0] = "FCALL";
        av[1] = s->fname;
        al[1] = strlen(s->fname);
    } else {
        av[0] = "EVALSHA";
        av[1] = s->sha;
        al[1] = 40;
    }
    al[0] = strlen(av[0]);
    snprintf(nk, sizeof(nk), "%d", op->keys.n);
    av[2] = nk;
    al[2] = strlen(nk);
    int k = 3;
    for (int i = 0; i < op->keys.n; i++, k++) {
        av[k] = op->keys.key[i];
        al[k] = op->keys.len[i];
    }
    for (int i = 0; i < op->argc; i++, k++) {
        av[k] = op->argv[i];
        al[k] = op->argvlen[i];
    }
    /* taken off ARGV by prelude.lua's begin: 1 the fence clock, 2 strict keys, 4 the fault, 8 no fast path */
    snprintf(flags, sizeof(flags), "%d", (st.fence_clock ? 1 : 0) | (st.strict_keys ? 2 : 0) | (st.skip_walk ? 4 : 0) |
             (st.no_fast_path ? 8 : 0));
    av[k] = flags;
    al[k] = strlen(flags);
    int rc = redisAsyncCommandArgv(st.cmd.ac, script_cb, op, n, av, al);
    free(av);
    free(al);
    if (rc != REDIS_OK)
        return -1;
    op->refs++;
    op->as_eval = as_eval;
    op->load_gen = st.load_gen;
    op->wait_for = script_rows[op->script].writes == 1 ? wait_target() : 0;
    if (op->wait_for > 0 &&
        redisAsyncCommand(st.cmd.ac, wait_cb, op, "WAIT %ld %ld", op->wait_for, cfg.redis_wait_ms) == REDIS_OK)
        op->refs++;
    return 0;
}

/* What FUNCTION LOAD answered. The load sent with the greeting (first set)
 * decides how this connection's calls are sent: FCALL once the library is
 * there (loaded now, or already: "already exists" is success), else EVALSHA
 * (a Redis without Functions, an ACL without FUNCTION, or a failure, which
 * is logged). */
static void library_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    redisReply *r = reply;
    int first = privdata != NULL;
    if (!r)
        return; /* disconnected: the next greeting loads it again */
    got_reply();
    char exists[96];
    snprintf(exists, sizeof(exists), "ERR Library '%s' already exists", st.library_name);
    if (r->type != REDIS_REPLY_ERROR || !strcmp(r->str, exists)) {
        if (first && !st.functions)
            lk_debug("redis: scripts are functions of library %s", st.library_name);
        if (first)
            st.functions = 1;
        return;
    }
    if (first && (!strncmp(r->str, "ERR unknown command", 19) || !strncmp(r->str, "NOPERM", 6)))
        lk_info("redis: FUNCTION LOAD refused (%s); scripts are sent with EVALSHA", r->str);
    else
        lk_error("redis: FUNCTION LOAD of %s failed: %s%s", st.library_name, r->str,
                 first ? "; scripts are sent with EVALSHA" : "");
}

static void send_library_on(redisAsyncContext *ac, int first)
{
    const char *av[3] = {"FUNCTION", "LOAD", st.library};
    size_t al[3] = {8, 4, st.library_len};
    if (redisAsyncCommandArgv(ac, library_cb, first ? &st : NULL, 3, av, al) == REDIS_OK)
        st.load_gen++;
}

/* Loads the library again (a call found its function missing); the calls
 * sent after it find it. */
static void send_library(void)
{
    if (st.cmd.ac)
        send_library_on(st.cmd.ac, 0);
}

int store_ready(void) { return st.cmd.up && !st.stalled; }
unsigned long store_reconnects(void) { return st.reconnects; }
unsigned long store_needkeys(void) { return st.needkeys; }

struct store_op *store_eval(enum store_script script, int argc, const char **argv,
                            const size_t *argvlen, store_reply_fn fn, void *ctx)
{
    return store_eval_late(script, argc, argv, argvlen, fn, NULL, ctx);
}

static int argc_fits(int argc, int lo, int hi) { return argc >= lo && (hi < 0 || argc <= hi); }

/* Whether a call fits its script's row (and its mode's, for a script with
 * MODE rows); if not, why, in why. */
static int call_fits(enum store_script script, int argc, const char **argv,
                     const size_t *argvlen, char *why, size_t size)
{
    if ((unsigned)script >= SCRIPT__COUNT) {
        snprintf(why, size, "no script %d", (int)script);
        return 0;
    }
    const struct script_row *row = &script_rows[script];
    if (!argc_fits(argc, row->argc_min, row->argc_max)) {
        snprintf(why, size, "%s takes %d..%d arguments, called with %d", row->file, row->argc_min,
                 row->argc_max, argc);
        return 0;
    }
    int has_modes = 0;
    for (size_t i = 0; i < NMODES; i++) {
        const struct script_mode *m = &script_modes[i];
        if (m->script != script)
            continue;
        has_modes = 1;
        size_t len = argc < 1 ? 0 : argvlen ? argvlen[0] : strlen(argv[0]);
        if (argc > 0 && strlen(m->mode) == len && memcmp(m->mode, argv[0], len) == 0) {
            if (argc_fits(argc, m->argc_min, m->argc_max))
                return 1;
            snprintf(why, size, "%s %s takes %d..%d arguments, called with %d", row->file, m->mode,
                     m->argc_min, m->argc_max, argc);
            return 0;
        }
    }
    if (has_modes) {
        snprintf(why, size, "%s: no mode '%.*s'", row->file, argc > 0 ? 40 : 0, argc > 0 ? argv[0] : "");
        return 0;
    }
    return 1;
}

static struct store_op *eval_with(enum store_script script, int argc, const char **argv,
                                  const size_t *argvlen, const struct keyset *extra, store_reply_fn fn,
                                  store_reply_fn late, void *ctx);

struct store_op *store_eval_late(enum store_script script, int argc, const char **argv,
                                 const size_t *argvlen, store_reply_fn fn, store_reply_fn late,
                                 void *ctx)
{
    return eval_with(script, argc, argv, argvlen, NULL, fn, late, ctx);
}

struct store_op *store_eval_keys(enum store_script script, int argc, const char **argv,
                                 const size_t *argvlen, const struct keyset *extra,
                                 store_reply_fn fn, void *ctx)
{
    return eval_with(script, argc, argv, argvlen, extra, fn, NULL, ctx);
}

static struct store_op *eval_with(enum store_script script, int argc, const char **argv,
                                  const size_t *argvlen, const struct keyset *extra, store_reply_fn fn,
                                  store_reply_fn late, void *ctx)
{
    char why[160];
    if (!call_fits(script, argc, argv, argvlen, why, sizeof(why))) {
        lk_error("internal: a call does not fit scripts.def: %s", why);
#ifdef DEVLOCK_DEBUG
        abort();
#endif
        redisReply e = {.type = REDIS_REPLY_ERROR, .str = why, .len = strlen(why)};
        fn(ctx, &e, LK_E_INTERNAL); /* as a Redis error reply: nothing ran */
        return NULL;
    }
    if (!store_ready()) {
        fn(ctx, NULL, LK_E_UNAVAILABLE);
        return NULL;
    }
    struct store_op *op = lk_xcalloc(1, sizeof(*op));
    op->fn = fn;
    op->late = late;
    op->ctx = ctx;
    op->script = script;
    op->argc = argc;
    op->argv = lk_xmalloc(sizeof(char *) * (size_t)(argc ? argc : 1));
    op->argvlen = lk_xmalloc(sizeof(size_t) * (size_t)(argc ? argc : 1));
    for (int i = 0; i < argc; i++) {
        size_t len = argvlen ? argvlen[i] : strlen(argv[i]);
        op->argv[i] = lk_xstrndup(argv[i], len);
        op->argvlen[i] = len;
    }
    keyset_init(&op->keys);
    keys_for_call(&op->keys, script, argc, op->argv, op->argvlen, st.broker_id);
    if (st.on_keys)
        st.on_keys(&op->keys, script, argc, op->argv, op->argvlen);
    for (int i = 0; extra && i < extra->n; i++)
        keyset_append(&op->keys, extra->key[i], extra->len[i]);
    op->deadline_ms = lk_time_mono_ms() + cfg.redis_timeout_ms +
                      (cfg.redis_wait_replicas > 0 && script_rows[script].writes == 1 ? cfg.redis_wait_ms : 0);
    op->refs = 1; /* ours, until it is queued */
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
    op_free(op); /* drop our reference: the callbacks hold theirs */
    return op;
}

void store_cancel(struct store_op *op)
{
    if (!op)
        return;
    op->late = NULL;
    if (op->fn) {
        op->fn = NULL;
        list_remove(op);
    }
}

/* ---- heartbeat ----------------------------------------------------------- */

static void ping_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    (void)privdata;
    redisReply *r = reply;
    st.ping_in_flight = 0;
    if (r)
        got_reply();
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "READONLY", 8) == 0)
        conn_drop(&st.cmd, "the server is a read-only replica now");
}

/* Keeps one heartbeat in flight when idle (it also refreshes this broker's
 * liveness key, which keeps its queued requests servable), so a stall is seen even with no
 * traffic, and its end is seen even when requests are refused. */
static void role_count_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    (void)privdata;
    redisReply *r = reply;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 3 && r->element[2]->type == REDIS_REPLY_ARRAY)
        st.replicas = (long)r->element[2]->elements;
}

/* How many replicas a change waits for: --redis-wait-replicas, but no more
 * than are connected (after a failover the new master may have none yet:
 * the fence clock keeps fences safe meanwhile). */
static long wait_target(void)
{
    return cfg.redis_wait_replicas < st.replicas ? cfg.redis_wait_replicas : st.replicas;
}

static void heartbeat_cb(uv_timer_t *t)
{
    (void)t;
    int64_t now = lk_time_mono_ms();
    if (!st.cmd.up)
        return;
    if (cfg.redis_wait_replicas > 0 && st.beats++ % 4 == 0)
        redisAsyncCommand(st.cmd.ac, role_count_cb, NULL, "ROLE");
    if (st.ping_in_flight) {
        if (!st.stalled && now - st.last_reply_ms > cfg.redis_timeout_ms) {
            lk_warn("redis: heartbeat unanswered for %ld ms", (long)(now - st.last_reply_ms));
            st.stalled = 1;
        }
        /* A master that keeps its TCP alive but answers nothing (a frozen
         * process or host) may have been failed over meanwhile: drop both
         * links and ask the Sentinels again (they name it again if not). */
        if (cfg.redis_sentinel[0] && st.stalled && now - st.last_reply_ms > (int64_t)(2 * redis_link_timeout_ms())) {
            lk_warn("redis: no reply for %ld ms; asking the Sentinels where the master is",
                    (long)(now - st.last_reply_ms));
            conn_kill(&st.cmd);
            conn_kill(&st.sub);
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
void store_on_keys(store_keys_fn fn) { st.on_keys = fn; }
void store_on_events(void (*fn)(redisReply *)) { st.on_events = fn; }
void store_on_stream_up(void (*fn)(void)) { st.on_stream_up = fn; }

/* ---- connections ---------------------------------------------------------- */

static void link_start(struct conn *c) { uv_timer_start(&c->link, link_timeout_cb, redis_link_timeout_ms(), 0); }
static void link_done(struct conn *c) { uv_timer_stop(&c->link); }

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
    /* with Sentinels, asking again is cheap and a failover is short: stay quick */
    uint64_t max = cfg.redis_sentinel[0] ? BACKOFF_MAX_SENTINEL_MS : BACKOFF_MAX_MS;
    if (cap > max)
        cap = max;
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
    link_done(c);
    c->up = 1;
    c->attempts = 0;
    st.reconnects++;
    lk_info("redis: %s connection up", c->name);
    if (c == &st.cmd) {
        got_reply();
        if (st.on_up)
            st.on_up();
    } else {
        if (st.on_stream_up)
            st.on_stream_up();
        read_next();
    }
}

static void greet(redisAsyncContext *a, struct conn *c);

/* What sentinel_check_master found (it logged a "no"). */
static void master_checked(void *ctx, redisAsyncContext *ac, int is_master)
{
    if (is_master)
        greet(ac, ctx);
    else
        redisAsyncDisconnect(ac);
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    struct conn *c = ac->data;
    if (status != REDIS_OK) {
        lk_warn("redis: %s connect failed: %s", c->name, ac->errstr);
        c->ac = NULL; /* hiredis frees it */
        link_done(c);
        schedule_retry(c);
        return;
    }
    redis_link_keepalive(ac);
    redisAsyncContext *a = (redisAsyncContext *)ac;
    if (st.password)
        redisAsyncCommand(a, NULL, NULL, "AUTH %s", st.password);
    if (c->sentinel) { /* make sure it is the master before using it */
        sentinel_check_master(c->sentinel, a, master_checked, c);
        return;
    }
    greet(a, c);
}

static void greet(redisAsyncContext *a, struct conn *c)
{
    if (st.db)
        redisAsyncCommand(a, NULL, NULL, "SELECT %d", st.db);
    if (c == &st.cmd && cfg.redis_wait_replicas > 0)
        redisAsyncCommand(a, role_count_cb, NULL, "ROLE");
    if (c == &st.cmd) { /* answered before the greeting, so before any call */
        st.functions = 0;
        st.load_gen = 0;
        if (st.functions_wanted)
            send_library_on(a, 1);
    }
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
    link_done(c);
    if (c == &st.cmd) {
        st.ping_in_flight = 0;
        st.stalled = 0;
    } else {
        st.reading = 0;
    }
    schedule_retry(c);
}

static void conn_drop(struct conn *c, const char *why)
{
    if (!c->ac)
        return;
    lk_warn("redis: %s: %s; reconnecting", c->name, why);
    redisAsyncDisconnect(c->ac);
}

/* Drops a link at once, with replies outstanding (redisAsyncDisconnect
 * would wait for them): their callbacks get NULL, disconnect_cb retries.
 * Not from inside a hiredis callback of that link. */
static void conn_kill(struct conn *c)
{
    if (!c->ac)
        return;
    redisAsyncContext *ac = c->ac;
    int connected = (ac->c.flags & REDIS_CONNECTED) != 0;
    c->ac = NULL;
    redisAsyncFree(ac);
    if (!connected)
        schedule_retry(c);
}

static void conn_open(struct conn *c, const char *host, int port);

/* A connect or greeting took too long: abandon it and try again. */
static void link_timeout_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->ac && !c->up) {
        lk_warn("redis: %s: %s:%d did not connect and answer within %llu ms; trying again", c->name,
                st.unix_path && !c->sentinel ? st.unix_path : c->host, c->port,
                (unsigned long long)redis_link_timeout_ms());
        conn_kill(c);
    }
}

/* What sentinel_find answered (it logged a failure). */
static void master_found(void *ctx, const char *host, int port)
{
    struct conn *c = ctx;
    if (host)
        conn_open(c, host, port);
    else
        schedule_retry(c);
}

static void conn_start(struct conn *c)
{
    if (st.shutting_down)
        return;
    if (c->sentinel) {
        sentinel_find(c->sentinel, master_found, c);
        return;
    }
    conn_open(c, st.host, st.port);
}

static void conn_open(struct conn *c, const char *host, int port)
{
    if (st.shutting_down)
        return;
    snprintf(c->host, sizeof(c->host), "%s", host ? host : "");
    c->port = port;
    lk_debug("redis: %s connecting to %s:%d", c->name, c->host, c->port);
    char why[128];
    c->ac = redis_link_open(st.loop, host, port, st.unix_path && !c->sentinel ? st.unix_path : NULL, c,
                            connect_cb, disconnect_cb, why, sizeof(why));
    if (!c->ac) {
        lk_warn("redis: %s connect failed: %s", c->name, why);
        schedule_retry(c);
        return;
    }
    link_start(c);
}

/* ---- set-up ------------------------------------------------------------------ */

/* Between the prelude and a script: the call's state (prelude.lua). */
#define BEGIN_CALL "begin(ARGV, KEYS)\n"

static const struct embedded_file *embedded(const char *name)
{
    const struct embedded_file *f = embedded_lua;
    while (f->name && strcmp(f->name, name))
        f++;
    if (!f->name) {
        lk_error("internal: script %s not embedded", name);
        abort();
    }
    return f;
}

/* The first 2 * nbytes hex digits of the SHA-1 of data into hex (room for
 * 2 * nbytes + 1). */
static void sha1_hex(const char *data, size_t len, int nbytes, char *hex)
{
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)data, len, md);
    for (int k = 0; k < nbytes; k++)
        snprintf(hex + 2 * k, 3, "%02x", md[k]);
}

/* The Functions library, its hash being hash: the prelude once, then each
 * script as the body of its function, which first sets the call's state.
 * Scripts that write nothing (scripts.def's writes 0) are flagged no-writes. */
static void build_library(struct lk_buf *t, const char *hash)
{
    lk_buf_reset(t);
    lk_buf_puts(t, "#!lua name=devlock_");
    lk_buf_puts(t, hash);
    lk_buf_puts(t, "\n");
    const struct embedded_file *prelude = embedded("prelude.lua");
    lk_buf_append(t, prelude->data, prelude->len);
    for (int i = 0; i < SCRIPT__COUNT; i++) {
        const struct embedded_file *f = embedded(script_rows[i].file);
        const char *stem = script_rows[i].file;
        lk_buf_puts(t, "redis.register_function{function_name = 'dl_");
        lk_buf_puts(t, hash);
        lk_buf_puts(t, "_");
        lk_buf_append(t, stem, strcspn(stem, "."));
        lk_buf_puts(t, script_rows[i].writes ? "', flags = {}," : "', flags = {'no-writes'},");
        lk_buf_puts(t, " callback = function(KEYS, ARGV) " BEGIN_CALL);
        lk_buf_append(t, f->data, f->len);
        lk_buf_puts(t, "\nend}\n");
    }
}

static void load_scripts(void)
{
    const struct embedded_file *prelude = embedded("prelude.lua");
    for (int i = 0; i < SCRIPT__COUNT; i++) {
        const struct embedded_file *f = embedded(script_rows[i].file);
        struct script *s = &st.scripts[i];
        s->len = prelude->len + strlen(BEGIN_CALL) + f->len;
        s->body = lk_xmalloc(s->len + 1);
        memcpy(s->body, prelude->data, prelude->len);
        memcpy(s->body + prelude->len, BEGIN_CALL, strlen(BEGIN_CALL));
        memcpy(s->body + prelude->len + strlen(BEGIN_CALL), f->data, f->len + 1);
        sha1_hex(s->body, s->len, SHA_DIGEST_LENGTH, s->sha);
    }
    /* the hash of the text built with a placeholder names the real one */
    struct lk_buf t;
    lk_buf_init(&t, 0);
    build_library(&t, LIB_PLACEHOLDER);
    char hash[LIB_HASH_LEN + 1];
    sha1_hex(lk_buf_data(&t), t.len, LIB_HASH_LEN / 2, hash);
    build_library(&t, hash);
    st.library = lk_buf_steal(&t, &st.library_len);
    if (!st.library) { /* out of memory at start-up, as lk_xmalloc */
        lk_error("out of memory building the Functions library");
        abort();
    }
    snprintf(st.library_name, sizeof(st.library_name), "devlock_%s", hash);
    for (int i = 0; i < SCRIPT__COUNT; i++) {
        const char *stem = script_rows[i].file;
        snprintf(st.scripts[i].fname, sizeof(st.scripts[i].fname), "dl_%s_%.*s", hash,
                 (int)strcspn(stem, "."), stem);
    }
    const char *env = getenv("DEVLOCK_FUNCTIONS");
    st.functions_wanted = !(env && !strcmp(env, "0"));
    if (!st.functions_wanted)
        lk_info("redis: DEVLOCK_FUNCTIONS=0: scripts are sent with EVALSHA");
}

int store_init(uv_loop_t *loop, const char *url, const char *broker_id)
{
    st.loop = loop;
    snprintf(st.broker_id, sizeof(st.broker_id), "%s", broker_id);
    st.fence_clock = !strcmp(cfg.fence_clock, "on") || (!strcmp(cfg.fence_clock, "auto") && cfg.redis_sentinel[0]);
    const char *strict = getenv("DEVLOCK_TEST_STRICT_KEYS");
    st.strict_keys = strict && !strcmp(strict, "1");
    const char *fault = getenv("DEVLOCK_TEST_KEYS_FAULT");
    st.skip_walk = fault && !strcmp(fault, "walk");
    const char *fast = getenv("DEVLOCK_TEST_FAST_PATH");
    st.no_fast_path = fast && !strcmp(fast, "0");
    if (st.strict_keys)
        lk_info("redis: DEVLOCK_TEST_STRICT_KEYS=1: a script that touches a key it did not declare stops the broker");
    if (parse_url(url) != 0)
        return -1;
    load_scripts();
    st.cmd.name = "command";
    st.sub.name = "stream";
    uv_timer_init(loop, &st.cmd.retry);
    uv_timer_init(loop, &st.sub.retry);
    uv_timer_init(loop, &st.cmd.link);
    uv_timer_init(loop, &st.sub.link);
    st.cmd.retry.data = st.cmd.link.data = &st.cmd;
    st.sub.retry.data = st.sub.link.data = &st.sub;
    if (cfg.redis_sentinel[0]) {
        st.cmd.sentinel = sentinel_new(loop, st.cmd.name);
        st.sub.sentinel = sentinel_new(loop, st.sub.name);
    }
    uv_timer_init(loop, &st.deadline_timer);
    uv_timer_init(loop, &st.heartbeat);
    uv_timer_start(&st.heartbeat, heartbeat_cb, HEARTBEAT_MS, HEARTBEAT_MS);
    conn_start(&st.cmd);
    conn_start(&st.sub);
    return 0;
}

static void close_conn(struct conn *c)
{
    if (c->ac) {
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        c->up = 0;
        redisAsyncFree(ac);
    }
    sentinel_free(c->sentinel);
    c->sentinel = NULL;
    uv_timer_stop(&c->retry);
    uv_close((uv_handle_t *)&c->retry, NULL);
    uv_timer_stop(&c->link);
    uv_close((uv_handle_t *)&c->link, NULL);
}

void store_shutdown(void)
{
    st.shutting_down = 1;
    close_conn(&st.cmd);
    close_conn(&st.sub);
    while (st.head)
        deliver(st.head, NULL, LK_E_UNAVAILABLE);
    uv_timer_stop(&st.heartbeat);
    uv_timer_stop(&st.deadline_timer);
    uv_close((uv_handle_t *)&st.heartbeat, NULL);
    uv_close((uv_handle_t *)&st.deadline_timer, NULL);
    for (int i = 0; i < SCRIPT__COUNT; i++)
        free(st.scripts[i].body);
    free(st.library);
    free(st.host);
    free(st.unix_path);
    free(st.password);
}
