/* sentinel.c - see sentinel.h.
 *
 * Each query ends in exactly one of: an answer (the master named, or a
 * Sentinel not knowing it), the Sentinel going away or refusing the
 * connection, or timeout_cb abandoning it; each clears s->ac and answers
 * the caller once, so a caller that asks again after every failure never
 * stops asking. A hiredis callback for a context that is no longer s->ac
 * has been dealt with already. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "lk_log.h"
#include "lk_mem.h"
#include "redis_link.h"
#include "sentinel.h"

struct sentinel {
    const char *name;          /* the link it finds the master for */
    uv_loop_t *loop;
    redisAsyncContext *ac;     /* the query in flight, or NULL */
    uv_timer_t timeout;        /* bounds it */
    unsigned next;             /* which Sentinel of the list is asked next */
    char host[256];            /* the master, as the last answer named it */
    int port;
    sentinel_found_fn found;   /* NULL once answered or cancelled */
    void *found_ctx;
    sentinel_checked_fn checked;
    void *checked_ctx;
};

struct sentinel *sentinel_new(uv_loop_t *loop, const char *name)
{
    struct sentinel *s = lk_xcalloc(1, sizeof(*s));
    s->name = name;
    s->loop = loop;
    uv_timer_init(loop, &s->timeout);
    s->timeout.data = s;
    return s;
}

static void free_cb(uv_handle_t *h) { free(h->data); }

void sentinel_free(struct sentinel *s)
{
    if (!s)
        return;
    sentinel_cancel(s);
    uv_close((uv_handle_t *)&s->timeout, free_cb);
}

/* The query is over: its context is no longer ours, its timer stops. */
static void end_query(struct sentinel *s)
{
    s->ac = NULL;
    uv_timer_stop(&s->timeout);
}

/* Answers the caller (once). host NULL: this attempt failed. */
static void answer(struct sentinel *s, const char *host, int port)
{
    sentinel_found_fn fn = s->found;
    s->found = NULL;
    if (fn)
        fn(s->found_ctx, host, port);
}

static void failed(struct sentinel *s)
{
    end_query(s);
    answer(s, NULL, 0);
}

static void reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct sentinel *s = privdata;
    redisReply *r = reply;
    if (s->ac != ac)
        return;
    end_query(s);
    if (!r) { /* the Sentinel went away; hiredis is freeing the context */
        lk_warn("redis: %s: a Sentinel closed the connection before answering; asking again", s->name);
        answer(s, NULL, 0);
        return;
    }
    redisAsyncDisconnect(ac);
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_STRING &&
        r->element[1]->type == REDIS_REPLY_STRING) {
        snprintf(s->host, sizeof(s->host), "%s", r->element[0]->str);
        s->port = atoi(r->element[1]->str);
        lk_debug("redis: %s: Sentinel says the master is %s:%d", s->name, s->host, s->port);
        answer(s, s->host, s->port);
    } else {
        lk_warn("redis: %s: Sentinel does not know master '%s'%s%s", s->name, cfg.redis_master,
                r->type == REDIS_REPLY_ERROR ? ": " : "", r->type == REDIS_REPLY_ERROR ? r->str : "");
        answer(s, NULL, 0);
    }
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    struct sentinel *s = ac->data;
    if (status != REDIS_OK) {
        if (s->ac == ac) /* hiredis frees it */
            failed(s);
        return;
    }
    redis_link_keepalive(ac);
    if (redisAsyncCommand((redisAsyncContext *)ac, reply_cb, s, "SENTINEL get-master-addr-by-name %s",
                          cfg.redis_master) != REDIS_OK && s->ac == ac) {
        end_query(s);
        redisAsyncDisconnect((redisAsyncContext *)ac);
        answer(s, NULL, 0);
    }
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    struct sentinel *s = ac->data;
    (void)status;
    if (s->ac == ac) /* dropped before answering */
        failed(s);
}

/* The Sentinel took too long: abandon it (freeing the context answers its
 * callbacks, which see it is no longer ours). */
static void timeout_cb(uv_timer_t *t)
{
    struct sentinel *s = t->data;
    if (!s->ac)
        return;
    lk_warn("redis: %s: no answer from a Sentinel within %llu ms; asking again", s->name,
            (unsigned long long)redis_link_timeout_ms());
    redisAsyncContext *ac = s->ac;
    s->ac = NULL;
    redisAsyncFree(ac);
    answer(s, NULL, 0);
}

void sentinel_find(struct sentinel *s, sentinel_found_fn fn, void *ctx)
{
    s->found = fn;
    s->found_ctx = ctx;
    const char *list = cfg.redis_sentinel;
    unsigned n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    unsigned pick = s->next++ % n;
    const char *p = list;
    for (unsigned i = 0; i < pick; i++)
        p = strchr(p, ',') + 1;
    size_t len = strcspn(p, ",");
    char host[256], why[128];
    const char *colon = memrchr(p, ':', len);
    if (!colon || (size_t)(colon - p) >= sizeof(host)) {
        lk_error("redis: bad --redis-sentinel entry '%.*s' (host:port)", (int)len, p);
        answer(s, NULL, 0);
        return;
    }
    snprintf(host, sizeof(host), "%.*s", (int)(colon - p), p);
    s->ac = redis_link_open(s->loop, host, atoi(colon + 1), NULL, s, connect_cb, disconnect_cb, why,
                            sizeof(why));
    if (!s->ac) {
        answer(s, NULL, 0);
        return;
    }
    uv_timer_start(&s->timeout, timeout_cb, redis_link_timeout_ms(), 0);
}

void sentinel_cancel(struct sentinel *s)
{
    s->found = NULL;
    if (!s->ac)
        return;
    redisAsyncContext *ac = s->ac;
    end_query(s);
    redisAsyncFree(ac);
}

static void role_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct sentinel *s = privdata;
    redisReply *r = reply;
    if (!r)
        return;
    int is_master = r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
                    r->element[0]->type == REDIS_REPLY_STRING && !strcmp(r->element[0]->str, "master");
    if (!is_master)
        lk_warn("redis: %s: %s:%d is not the master (yet); asking the Sentinels again", s->name, s->host,
                s->port);
    if (s->checked)
        s->checked(s->checked_ctx, ac, is_master);
}

void sentinel_check_master(struct sentinel *s, redisAsyncContext *ac, sentinel_checked_fn fn, void *ctx)
{
    s->checked = fn;
    s->checked_ctx = ctx;
    redisAsyncCommand(ac, role_cb, s, "ROLE");
}
