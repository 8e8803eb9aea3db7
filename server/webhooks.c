/* webhooks.c - delivers the event stream to the webhooks of --webhooks.
 *
 * Per webhook, one consumer group wh:<name> on dl:events and one owner key
 * (webhook.lua): the broker holding the key is the only one delivering, so
 * the events reach the receiver in stream order; the others ask each tick
 * (1 s) and take over when the key has expired (its holder died), claiming
 * the group's pending entries first. An entry is acknowledged (XACK) only
 * after a 2xx, or at once when the webhook's filter does not match it: at
 * least once, in order, with the stream id as the de-duplication key.
 *
 * A webhook is a small state machine driven by step(): at most one script
 * (w->op) or one HTTP request (w->easy) in flight, a batch of at most
 * BATCH entries in memory, w->pos the next one to look at, w->acked how far
 * they are acknowledged. A failed POST retries the same entry after a
 * backoff (full jitter, BACKOFF_MIN_MS doubling to BACKOFF_MAX_MS); later
 * entries wait. A delivery starts only while the lease is known to hold
 * (lease_until_ms, from the send time of the last successful renewal), so a
 * broker that lost its key never starts a POST after the new owner began;
 * only the request in flight at a take-over can arrive twice.
 *
 * HTTP is libcurl's multi interface on our libuv loop: one uv_poll_t per
 * socket libcurl opens (CURLMOPT_SOCKETFUNCTION) and one uv_timer_t for
 * its timeouts (CURLMOPT_TIMERFUNCTION); no thread of ours and no blocking
 * call, so a receiver that hangs costs one socket and nothing else. */
#include <ctype.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"
#include "locks.h"
#include "lk_log.h"
#include "lk_mem.h"
#include "lk_time.h"
#include "webhooks.h"
#include "store.h"

#define BATCH 64
#define TICK_MS 1000
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 60000
#define LEASE_MARGIN_MS 100
#define NAME_MAX_LEN 64
#define URL_MAX_LEN 2048
#define MAX_WEBHOOKS 256
#define FILE_MAX (1 << 20)
#define RELEASE_WAIT_MS 300

struct globs {
    char **v;   /* NULL: everything matches */
    size_t n;
};

struct entry {
    char id[48];
    char *dev;
    char *j;
    size_t jlen;
};

enum op_kind { OP_NONE, OP_TAKE, OP_RENEW, OP_ACK, OP_FAIL };

struct webhook {
    struct webhook *next;
    /* configuration */
    char name[NAME_MAX_LEN + 1];
    char *url, *secret;      /* secret NULL: unsigned */
    struct globs actions, devices, users;
    long timeout_ms;
    int lock_keys;
    /* delivery */
    int owned;               /* this broker holds the owner key */
    char owner[64];          /* who does, as last seen */
    int64_t lease_until_ms;  /* CLOCK_BOOTTIME: the key is ours until then at least */
    int64_t op_sent_ms;      /* CLOCK_BOOTTIME */
    struct store_op *op;
    enum op_kind op_kind;
    int kicked;              /* new events arrived while a take was in flight */
    struct entry batch[BATCH];
    size_t nbatch, pos, acked;
    int delivered_unacked;   /* batch[pos] got its 2xx; its XACK is still to do */
    CURL *easy;
    struct curl_slist *hdrs;
    char errbuf[CURL_ERROR_SIZE];
    int64_t retry_at_ms;     /* monotonic; 0: no backoff */
    int64_t next_attempt_us; /* the same, wall clock, for the status */
    unsigned failures;
    long last_status;
    char last_error[CURL_ERROR_SIZE];
    char last_id[48];
    int64_t last_success_us;
    unsigned long long delivered, failed, skipped, lost;
    long long pel, lag;
};

static struct {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t curl_timer, tick, wake;
    int inited;
    struct webhook *list;
    long lease_ms;
} wh = {.lease_ms = 10000};

static void step(struct webhook *w);
static void arm_wake(void);

/* ---- configuration ---------------------------------------------------------- */

static void globs_free(struct globs *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->v[i]);
    free(g->v);
    g->v = NULL;
    g->n = 0;
}

static void batch_clear(struct webhook *w)
{
    for (size_t i = 0; i < w->nbatch; i++) {
        free(w->batch[i].dev);
        free(w->batch[i].j);
    }
    w->nbatch = w->pos = w->acked = 0;
    w->delivered_unacked = 0;
}

static void config_clear(struct webhook *w)
{
    free(w->url);
    free(w->secret);
    w->url = w->secret = NULL;
    globs_free(&w->actions);
    globs_free(&w->devices);
    globs_free(&w->users);
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.' && *s != '-')
            return 0;
    return 1;
}

static int parse_globs(const cJSON *a, const char *what, struct globs *g, char *err, size_t errlen)
{
    if (!a)
        return 0;
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) == 0) {
        snprintf(err, errlen, "\"%s\" must be a non-empty array of glob patterns (leave it out for all)", what);
        return -1;
    }
    g->n = (size_t)cJSON_GetArraySize(a);
    g->v = lk_xcalloc(g->n, sizeof(*g->v));
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, a) {
        if (!cJSON_IsString(it) || !it->valuestring[0] || strlen(it->valuestring) > 256) {
            snprintf(err, errlen, "\"%s\" entries must be non-empty strings (at most 256 bytes)", what);
            g->n = i;
            return -1;
        }
        g->v[i++] = lk_xstrdup(it->valuestring);
    }
    return 0;
}

static void list_free(struct webhook *l)
{
    while (l) {
        struct webhook *next = l->next;
        config_clear(l);
        batch_clear(l);
        free(l);
        l = next;
    }
}

static int parse_one(const cJSON *o, struct webhook *w, char *err, size_t errlen)
{
    static const char *const known[] = {"name", "url", "actions", "devices", "users", "secret",
                                        "timeout_ms", "lock_keys"};
    if (!cJSON_IsObject(o)) {
        snprintf(err, errlen, "each webhook must be an object");
        return -1;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, o) {
        size_t k = 0;
        while (k < sizeof(known) / sizeof(known[0]) && strcmp(known[k], it->string))
            k++;
        if (k == sizeof(known) / sizeof(known[0])) {
            snprintf(err, errlen, "unknown member \"%.64s\"", it->string);
            return -1;
        }
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    if (!cJSON_IsString(name) || !valid_name(name->valuestring)) {
        snprintf(err, errlen, "\"name\" must be 1 to %d characters of A-Z a-z 0-9 _ . -", NAME_MAX_LEN);
        return -1;
    }
    snprintf(w->name, sizeof(w->name), "%s", name->valuestring);
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(o, "url");
    if (!cJSON_IsString(url) || strlen(url->valuestring) > URL_MAX_LEN ||
        (strncmp(url->valuestring, "http://", 7) && strncmp(url->valuestring, "https://", 8))) {
        snprintf(err, errlen, "webhook %s: \"url\" must be an http:// or https:// URL", w->name);
        return -1;
    }
    w->url = lk_xstrdup(url->valuestring);
    const cJSON *secret = cJSON_GetObjectItemCaseSensitive(o, "secret");
    if (secret && (!cJSON_IsString(secret) || !secret->valuestring[0])) {
        snprintf(err, errlen, "webhook %s: \"secret\" must be a non-empty string", w->name);
        return -1;
    }
    w->secret = secret ? lk_xstrdup(secret->valuestring) : NULL;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "timeout_ms");
    w->timeout_ms = 5000;
    if (t) {
        if (!cJSON_IsNumber(t) || t->valuedouble < 100 || t->valuedouble > 600000 ||
            t->valuedouble != (double)(long)t->valuedouble) {
            snprintf(err, errlen, "webhook %s: \"timeout_ms\" must be an integer 100..600000", w->name);
            return -1;
        }
        w->timeout_ms = (long)t->valuedouble;
    }
    const cJSON *lk = cJSON_GetObjectItemCaseSensitive(o, "lock_keys");
    if (lk && !cJSON_IsBool(lk)) {
        snprintf(err, errlen, "webhook %s: \"lock_keys\" must be true or false", w->name);
        return -1;
    }
    w->lock_keys = cJSON_IsTrue(lk);
    char what[NAME_MAX_LEN + 32];
    snprintf(what, sizeof(what), "%s: actions", w->name);
    if (parse_globs(cJSON_GetObjectItemCaseSensitive(o, "actions"), what, &w->actions, err, errlen))
        return -1;
    snprintf(what, sizeof(what), "%s: devices", w->name);
    if (parse_globs(cJSON_GetObjectItemCaseSensitive(o, "devices"), what, &w->devices, err, errlen))
        return -1;
    snprintf(what, sizeof(what), "%s: users", w->name);
    if (parse_globs(cJSON_GetObjectItemCaseSensitive(o, "users"), what, &w->users, err, errlen))
        return -1;
    return 0;
}

/* Parses the file into a fresh list (configuration only). */
static int parse_file(const char *text, size_t len, struct webhook **out, long *lease_ms, char *err,
                      size_t errlen)
{
    cJSON *root = cJSON_ParseWithLength(text, len);
    struct webhook *head = NULL, **tail = &head;
    int rc = -1;
    *lease_ms = 10000;
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "not a JSON object");
        goto done;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        if (strcmp(it->string, "webhooks") && strcmp(it->string, "lease_ms")) {
            snprintf(err, errlen, "unknown member \"%.64s\" (webhooks, lease_ms)", it->string);
            goto done;
        }
    }
    const cJSON *lease = cJSON_GetObjectItemCaseSensitive(root, "lease_ms");
    if (lease) {
        if (!cJSON_IsNumber(lease) || lease->valuedouble < 1000 || lease->valuedouble > 600000) {
            snprintf(err, errlen, "\"lease_ms\" must be a number 1000..600000");
            goto done;
        }
        *lease_ms = (long)lease->valuedouble;
    }
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "webhooks");
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) > MAX_WEBHOOKS) {
        snprintf(err, errlen, "\"webhooks\" must be an array (at most %d)", MAX_WEBHOOKS);
        goto done;
    }
    cJSON_ArrayForEach(it, arr) {
        struct webhook *w = lk_xcalloc(1, sizeof(*w));
        *tail = w;
        tail = &w->next;
        if (parse_one(it, w, err, errlen) != 0)
            goto done;
        for (struct webhook *o = head; o != w; o = o->next)
            if (!strcmp(o->name, w->name)) {
                snprintf(err, errlen, "two webhooks are named %s", w->name);
                goto done;
            }
    }
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc)
        list_free(head);
    else
        *out = head;
    return rc;
}

static struct webhook *find(struct webhook *l, const char *name)
{
    for (; l; l = l->next)
        if (!strcmp(l->name, name))
            return l;
    return NULL;
}

static int releasing; /* release calls not yet answered */

static void release_cb(void *ctx, redisReply *r, enum lk_status s)
{
    (void)ctx;
    (void)r;
    (void)s;
    if (releasing > 0)
        releasing--;
}

static void abandon_request(struct webhook *w)
{
    if (w->easy) {
        curl_multi_remove_handle(wh.multi, w->easy);
        curl_easy_cleanup(w->easy);
        w->easy = NULL;
    }
    curl_slist_free_all(w->hdrs);
    w->hdrs = NULL;
}

/* A webhook leaves the configuration (or the broker stops). */
static void webhook_drop(struct webhook *w)
{
    if (w->op)
        store_cancel(w->op);
    w->op = NULL;
    abandon_request(w);
    if (w->owned && store_ready()) {
        const char *argv[] = {"release", w->name, locks_broker_id()};
        releasing++;
        store_eval(SCRIPT_WEBHOOK, 3, argv, NULL, release_cb, NULL);
    }
    w->next = NULL;
    list_free(w);
}

int webhooks_parse(const char *text, size_t len, char *err, size_t errlen)
{
    struct webhook *fresh = NULL;
    long lease_ms;
    if (parse_file(text, len, &fresh, &lease_ms, err, errlen) != 0)
        return -1;
    /* keep the delivery state of the webhooks named again */
    struct webhook *head = NULL, **tail = &head;
    for (struct webhook *f = fresh, *next; f; f = next) {
        next = f->next;
        struct webhook *old = find(wh.list, f->name);
        if (old) {
            struct webhook **pp = &wh.list;
            while (*pp != old)
                pp = &(*pp)->next;
            *pp = old->next;
            config_clear(old);
            old->url = f->url;
            old->secret = f->secret;
            old->actions = f->actions;
            old->devices = f->devices;
            old->users = f->users;
            old->timeout_ms = f->timeout_ms;
            old->lock_keys = f->lock_keys;
            free(f);
            f = old;
        }
        f->next = NULL;
        *tail = f;
        tail = &f->next;
    }
    for (struct webhook *o = wh.list, *next; o; o = next) {
        next = o->next;
        lk_info("webhooks: %s removed", o->name);
        webhook_drop(o);
    }
    wh.list = head;
    wh.lease_ms = lease_ms;
    return 0;
}

int webhooks_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return -1;
    }
    char *buf = lk_xmalloc(FILE_MAX);
    size_t len = fread(buf, 1, FILE_MAX, f);
    int toolong = !feof(f);
    fclose(f);
    int rc = -1;
    if (toolong)
        snprintf(err, errlen, "%s is larger than 1 MiB", path);
    else
        rc = webhooks_parse(buf, len, err, errlen);
    free(buf);
    if (rc == 0 && wh.inited)
        for (struct webhook *w = wh.list; w; w = w->next)
            step(w);
    return rc;
}

unsigned webhooks_count(void)
{
    unsigned n = 0;
    for (struct webhook *w = wh.list; w; w = w->next)
        n++;
    return n;
}

/* ---- filters ---------------------------------------------------------------- */

static int globs_match(const struct globs *g, const char *s)
{
    if (!s)
        return 0;
    for (size_t i = 0; i < g->n; i++)
        if (fnmatch(g->v[i], s, 0) == 0)
            return 1;
    return 0;
}

static const char *str_member(const cJSON *o, const char *name)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name));
}

/* actions: the event's "action"; devices: "device_name", any of
 * "device_names", or the stream's dev field; users: the top-level
 * "user_id", or that of its "lock" or "reservation" object. */
static int matches(const struct webhook *w, const struct entry *e, const cJSON *j)
{
    if (w->actions.v && !globs_match(&w->actions, str_member(j, "action")))
        return 0;
    if (w->devices.v) {
        int hit = globs_match(&w->devices, str_member(j, "device_name")) ||
                  globs_match(&w->devices, e->dev);
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "device_names"))
            hit = hit || globs_match(&w->devices, cJSON_GetStringValue(it));
        if (!hit)
            return 0;
    }
    if (w->users.v) {
        const cJSON *lock = cJSON_GetObjectItemCaseSensitive(j, "lock");
        const cJSON *res = cJSON_GetObjectItemCaseSensitive(j, "reservation");
        if (!globs_match(&w->users, str_member(j, "user_id")) &&
            !globs_match(&w->users, str_member(lock, "user_id")) &&
            !globs_match(&w->users, str_member(res, "user_id")))
            return 0;
    }
    return 1;
}

/* ---- Redis (webhook.lua) ------------------------------------------------------ */

/* The lease is counted on CLOCK_BOOTTIME: it goes on during a suspend, as
 * the owner key's expiry in Redis does (CLOCK_MONOTONIC stops), so a broker
 * that wakes up does not believe in a key that expired while it slept. */
static int64_t boot_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int lease_valid(const struct webhook *w)
{
    return w->owned && boot_ms() + LEASE_MARGIN_MS < w->lease_until_ms;
}

static void lost_ownership(struct webhook *w, const char *why)
{
    if (w->owned)
        lk_info("webhooks: %s: no longer delivered by this broker (%s)", w->name, why);
    w->owned = 0;
    abandon_request(w);
    batch_clear(w);
    w->retry_at_ms = 0;
}

/* An answer of renew/ack/fail: 1 still the owner (the lease renewed). */
static void owned_answer(struct webhook *w, redisReply *r, enum lk_status s)
{
    if (s != LK_E_OK || !r || r->type != REDIS_REPLY_INTEGER)
        return; /* unknown: the lease is not extended; lease_valid() holds deliveries back */
    if (r->integer >= 1)
        w->lease_until_ms = w->op_sent_ms + wh.lease_ms;
    else
        lost_ownership(w, "its owner key expired or was taken");
}

static void op_done(void *ctx, redisReply *r, enum lk_status s);

/* Sends a webhook.lua call; at most one per webhook. Nothing is sent while
 * Redis is unavailable (the tick tries again). */
static void send_op(struct webhook *w, enum op_kind kind, int argc, const char **argv)
{
    if (w->op || !store_ready())
        return;
    w->op_kind = kind;
    w->op_sent_ms = boot_ms();
    w->op = store_eval(SCRIPT_WEBHOOK, argc, argv, NULL, op_done, w);
}

static void take(struct webhook *w)
{
    char lease[24], count[16];
    snprintf(lease, sizeof(lease), "%ld", wh.lease_ms);
    snprintf(count, sizeof(count), "%d", BATCH);
    const char *argv[] = {"take", w->name, locks_broker_id(), lease, count};
    w->kicked = 0;
    send_op(w, OP_TAKE, 5, argv);
}

static void renew(struct webhook *w)
{
    char lease[24];
    snprintf(lease, sizeof(lease), "%ld", wh.lease_ms);
    const char *argv[] = {"renew", w->name, locks_broker_id(), lease};
    send_op(w, OP_RENEW, 4, argv);
}

/* Acknowledges batch[acked..pos) and, after a 2xx, batch[pos] too. */
static void send_ack(struct webhook *w)
{
    size_t upto = w->pos + (w->delivered_unacked ? 1 : 0);
    const char *argv[6 + BATCH];
    char lease[24], status[16];
    snprintf(lease, sizeof(lease), "%ld", wh.lease_ms);
    snprintf(status, sizeof(status), "%ld", w->last_status);
    argv[0] = "ack";
    argv[1] = w->name;
    argv[2] = locks_broker_id();
    argv[3] = lease;
    argv[4] = w->delivered_unacked ? w->batch[w->pos].id : "";
    argv[5] = status;
    int argc = 6;
    for (size_t i = w->acked; i < upto; i++)
        argv[argc++] = w->batch[i].id;
    send_op(w, OP_ACK, argc, argv);
}

static void send_fail(struct webhook *w)
{
    char lease[24], status[16], failures[16], next[24];
    snprintf(lease, sizeof(lease), "%ld", wh.lease_ms);
    snprintf(status, sizeof(status), "%ld", w->last_status);
    snprintf(failures, sizeof(failures), "%u", w->failures);
    snprintf(next, sizeof(next), "%lld", (long long)w->next_attempt_us);
    const char *argv[] = {"fail", w->name, locks_broker_id(), lease, w->batch[w->pos].id, status,
                          w->last_error, failures, next};
    send_op(w, OP_FAIL, 9, argv);
}

static long long int_at(redisReply *r, size_t i)
{
    if (i >= r->elements)
        return 0;
    redisReply *e = r->element[i];
    if (e->type == REDIS_REPLY_INTEGER)
        return e->integer;
    if (e->type == REDIS_REPLY_STRING)
        return strtoll(e->str, NULL, 10);
    return 0;
}

static const char *fields_get(redisReply *f, const char *name, size_t *len)
{
    for (size_t i = 0; f && f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2) {
        redisReply *k = f->element[i], *v = f->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING && !strcmp(k->str, name)) {
            if (len)
                *len = v->len;
            return v->str;
        }
    }
    return NULL;
}

/* {owned, owner, pel, lag, lost, failures, last_success_us, entries} */
static void take_answer(struct webhook *w, redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 8 || r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[7]->type != REDIS_REPLY_ARRAY) {
        lk_warn("webhooks: %s: unexpected answer from webhook.lua", w->name);
        return;
    }
    int owned = int_at(r, 0) == 1;
    snprintf(w->owner, sizeof(w->owner), "%s", r->element[1]->str);
    w->pel = int_at(r, 2);
    w->lag = int_at(r, 3);
    w->lost += (unsigned long long)int_at(r, 4);
    if (int_at(r, 4) > 0)
        lk_warn("webhooks: %s: %lld events were trimmed from the stream before delivery", w->name,
                int_at(r, 4));
    long long last_ok = int_at(r, 6);
    if (last_ok > w->last_success_us)
        w->last_success_us = last_ok;
    if (!owned) {
        if (w->owned)
            lost_ownership(w, "another broker owns it");
        w->failures = (unsigned)int_at(r, 5); /* shared: the owner's count */
        return;
    }
    if (!w->owned) {
        lk_info("webhooks: %s: delivered by this broker now", w->name);
        w->failures = (unsigned)int_at(r, 5); /* a failing webhook keeps backing off */
    }
    w->owned = 1;
    w->lease_until_ms = w->op_sent_ms + wh.lease_ms;
    if (w->nbatch)
        return; /* cannot happen: take runs with an empty batch */
    redisReply *es = r->element[7];
    lk_debug("webhooks: %s: took %zu entries (pending %lld, unread %lld)", w->name, es->elements, w->pel, w->lag);
    for (size_t i = 0; i < es->elements && w->nbatch < BATCH; i++) {
        redisReply *e = es->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING ||
            e->element[0]->len >= sizeof(w->batch[0].id))
            continue;
        struct entry *x = &w->batch[w->nbatch++];
        snprintf(x->id, sizeof(x->id), "%s", e->element[0]->str);
        size_t jlen = 0;
        const char *dev = fields_get(e->element[1], "dev", NULL);
        const char *j = fields_get(e->element[1], "j", &jlen);
        x->dev = dev ? lk_xstrdup(dev) : NULL;
        x->j = j ? lk_xstrndup(j, jlen) : NULL;
        x->jlen = j ? jlen : 0;
    }
}

static void op_done(void *ctx, redisReply *r, enum lk_status s)
{
    struct webhook *w = ctx;
    enum op_kind kind = w->op_kind;
    w->op = NULL;
    w->op_kind = OP_NONE;
    int ok = s == LK_E_OK && r;
    switch (kind) {
    case OP_TAKE:
        if (ok)
            take_answer(w, r);
        if (!ok || !w->owned || (!w->nbatch && !w->kicked))
            return; /* idle until new events or the next tick */
        break;
    case OP_RENEW:
        owned_answer(w, r, s);
        break;
    case OP_ACK:
        if (!ok) {
            /* unknown: the entries stay pending and come back with the next take */
            batch_clear(w);
            return;
        }
        w->acked = w->pos + (w->delivered_unacked ? 1 : 0);
        w->pos = w->acked;
        w->delivered_unacked = 0;
        owned_answer(w, r, s);
        if (w->acked >= w->nbatch)
            batch_clear(w);
        break;
    case OP_FAIL:
        owned_answer(w, r, s);
        break;
    case OP_NONE:
        return;
    }
    step(w);
}

/* ---- HTTP (libcurl multi on libuv) --------------------------------------------- */

struct curl_sock {
    uv_poll_t poll;
    curl_socket_t fd;
};

static void check_done(void);

static void sock_closed(uv_handle_t *h) { free(h->data); }

static void poll_cb(uv_poll_t *h, int status, int events)
{
    struct curl_sock *cs = h->data;
    int flags = 0, running;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(wh.multi, cs->fd, flags, &running);
    check_done();
}

static int sock_fn(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)e;
    (void)userp;
    struct curl_sock *cs = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (cs) {
            uv_poll_stop(&cs->poll);
            uv_close((uv_handle_t *)&cs->poll, sock_closed);
            curl_multi_assign(wh.multi, s, NULL);
        }
        return 0;
    }
    if (!cs) {
        cs = lk_xcalloc(1, sizeof(*cs));
        cs->fd = s;
        if (uv_poll_init_socket(wh.loop, &cs->poll, s) != 0) {
            free(cs);
            return -1;
        }
        cs->poll.data = cs;
        curl_multi_assign(wh.multi, s, cs);
    }
    int ev = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&cs->poll, ev, poll_cb);
    return 0;
}

static void curl_timer_cb(uv_timer_t *t)
{
    (void)t;
    int running;
    curl_multi_socket_action(wh.multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done();
}

static int timer_fn(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    (void)userp;
    if (timeout_ms < 0)
        uv_timer_stop(&wh.curl_timer);
    else
        uv_timer_start(&wh.curl_timer, curl_timer_cb, (uint64_t)timeout_ms, 0);
    return 0;
}

static size_t discard(char *p, size_t size, size_t n, void *userp)
{
    (void)p;
    (void)userp;
    return size * n;
}

/* The retry delay after `failures` failures in a row: full jitter over
 * [0, min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2^(failures-1))]. */
static uint64_t backoff_ms(unsigned failures)
{
    unsigned shift = failures > 0 ? failures - 1 : 0;
    uint64_t cap = shift >= 7 ? BACKOFF_MAX_MS : (uint64_t)BACKOFF_MIN_MS << shift;
    if (cap > BACKOFF_MAX_MS)
        cap = BACKOFF_MAX_MS;
    return (uint64_t)rand() % (cap + 1);
}

static void delivery_done(struct webhook *w, CURLcode rc, long code)
{
    curl_slist_free_all(w->hdrs);
    w->hdrs = NULL;
    w->last_status = rc == CURLE_OK ? code : 0;
    if (rc == CURLE_OK && code >= 200 && code < 300) {
        w->delivered++;
        w->failures = 0;
        w->retry_at_ms = 0;
        w->next_attempt_us = 0;
        w->last_error[0] = '\0';
        w->last_success_us = lk_time_now_us();
        snprintf(w->last_id, sizeof(w->last_id), "%s", w->batch[w->pos].id);
        w->delivered_unacked = 1;
        send_ack(w);
        return;
    }
    if (rc == CURLE_OK)
        snprintf(w->last_error, sizeof(w->last_error), "HTTP status %ld", code);
    else
        snprintf(w->last_error, sizeof(w->last_error), "%s", w->errbuf[0] ? w->errbuf : curl_easy_strerror(rc));
    w->failed++;
    w->failures++;
    uint64_t delay = backoff_ms(w->failures);
    w->retry_at_ms = lk_time_mono_ms() + (int64_t)delay;
    w->next_attempt_us = lk_time_now_us() + (int64_t)delay * 1000;
    if (w->failures == 1 || w->failures % 10 == 0)
        lk_warn("webhooks: %s: event %s: %s (failure %u in a row; retrying in %llu ms)", w->name,
                w->batch[w->pos].id, w->last_error, w->failures, (unsigned long long)delay);
    send_fail(w);
    arm_wake();
}

static void check_done(void)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(wh.multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *e = msg->easy_handle;
        CURLcode rc = msg->data.result;
        char *priv = NULL;
        long code = 0;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
        curl_multi_remove_handle(wh.multi, e);
        curl_easy_cleanup(e);
        struct webhook *w = (struct webhook *)(void *)priv;
        w->easy = NULL;
        delivery_done(w, rc, code);
        if (!w->op)
            step(w);
    }
}

static void hex(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Appends "name: value" ("name:" alone for an empty value: curl then
 * sends no such header). */
static struct curl_slist *header(struct curl_slist *l, const char *name, const char *value)
{
    char line[512];
    snprintf(line, sizeof(line), "%s:%s%s", name, value[0] ? " " : "", value);
    struct curl_slist *n = curl_slist_append(l, line);
    if (!n)
        abort(); /* out of memory, as lk_xmalloc */
    return n;
}

/* POSTs batch[pos]: the event JSON with "event_id" first (lock keys of
 * the holders removed unless lock_keys), signed over "<timestamp>.<body>". */
static void deliver(struct webhook *w, const struct entry *e)
{
    struct lk_buf ev, body;
    lk_buf_init(&ev, 0);
    lk_buf_init(&body, 0);
    if (w->lock_keys)
        lk_buf_append(&ev, e->j, e->jlen);
    else
        auth_redact(e->j, e->jlen, NULL, &ev);
    /* the event is a JSON object (step() parsed it): splice the id in
     * after its '{', keeping the event's bytes as they are */
    const char *j = lk_buf_data(&ev), *open = strchr(j, '{');
    const char *rest = open ? open + 1 : "}";
    lk_buf_puts(&body, "{\"event_id\":");
    lk_buf_json_str(&body, e->id);
    const char *k = rest;
    while (*k == ' ' || *k == '\n' || *k == '\t' || *k == '\r')
        k++;
    if (*k != '}')
        lk_buf_putc(&body, ',');
    lk_buf_puts(&body, rest);
    lk_buf_free(&ev);

    char ts[24];
    snprintf(ts, sizeof(ts), "%lld", (long long)(lk_time_now_us() / 1000000));
    struct curl_slist *h = NULL;
    h = header(h, "Content-Type", "application/json");
    h = header(h, "User-Agent", "devlockd");
    h = header(h, "Expect", ""); /* no 100-continue round trip */
    h = header(h, "X-Devlock-Event-Id", e->id);
    h = header(h, "X-Devlock-Webhook", w->name);
    h = header(h, "X-Devlock-Timestamp", ts);
    if (w->secret) {
        struct lk_buf signed_text;
        lk_buf_init(&signed_text, 0);
        lk_buf_printf(&signed_text, "%s.", ts);
        lk_buf_append(&signed_text, lk_buf_data(&body), body.len);
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        char hexsig[2 * EVP_MAX_MD_SIZE + 1];
        if (!HMAC(EVP_sha256(), w->secret, (int)strlen(w->secret), (const unsigned char *)lk_buf_data(&signed_text),
                  signed_text.len, md, &mdlen))
            abort();
        hex(md, mdlen, hexsig);
        char sig[2 * EVP_MAX_MD_SIZE + 8];
        snprintf(sig, sizeof(sig), "sha256=%s", hexsig);
        h = header(h, "X-Devlock-Signature", sig);
        lk_buf_free(&signed_text);
    }

    CURL *c = curl_easy_init();
    if (!c)
        abort();
    w->errbuf[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, w->url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body.len);
    curl_easy_setopt(c, CURLOPT_COPYPOSTFIELDS, lk_buf_data(&body));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, w->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, w->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, w->errbuf);
    curl_easy_setopt(c, CURLOPT_PRIVATE, (char *)(void *)w);
    lk_buf_free(&body);
    w->hdrs = h;
    w->easy = c;
    if (curl_multi_add_handle(wh.multi, c) != CURLM_OK) {
        curl_easy_cleanup(c);
        w->easy = NULL;
        snprintf(w->errbuf, sizeof(w->errbuf), "curl_multi_add_handle failed");
        delivery_done(w, CURLE_FAILED_INIT, 0);
    }
}

/* ---- the state machine ---------------------------------------------------------- */

static void step(struct webhook *w)
{
    if (!wh.inited || w->op || w->easy)
        return;
    if (!w->nbatch) {
        take(w);
        return;
    }
    if (w->delivered_unacked) {
        send_ack(w);
        return;
    }
    if (w->retry_at_ms) {
        if (lk_time_mono_ms() < w->retry_at_ms) {
            arm_wake();
            return;
        }
        w->retry_at_ms = 0;
    }
    while (w->pos < w->nbatch) {
        struct entry *e = &w->batch[w->pos];
        if (!e->j) { /* a queue fact for the read copies (prelude.lua), no event */
            w->pos++;
            continue;
        }
        cJSON *j = cJSON_ParseWithLength(e->j, e->jlen);
        int object = cJSON_IsObject(j);
        int hit = object && matches(w, e, j);
        cJSON_Delete(j);
        if (hit)
            break;
        if (!object)
            lk_warn("webhooks: %s: event %s is not a JSON object; skipped", w->name, e->id);
        w->skipped++;
        w->pos++;
    }
    if (w->pos >= w->nbatch) {
        if (w->acked < w->nbatch)
            send_ack(w);
        else
            batch_clear(w);
        if (!w->nbatch)
            take(w);
        return;
    }
    if (!lease_valid(w))
        return; /* the tick renews the lease, then steps again */
    deliver(w, &w->batch[w->pos]);
}

static void wake_cb(uv_timer_t *t)
{
    (void)t;
    for (struct webhook *w = wh.list; w; w = w->next)
        if (w->retry_at_ms && w->retry_at_ms <= lk_time_mono_ms())
            step(w);
    arm_wake();
}

/* Arms the wake timer for the earliest retry. */
static void arm_wake(void)
{
    if (!wh.inited)
        return;
    int64_t first = 0, now = lk_time_mono_ms();
    for (struct webhook *w = wh.list; w; w = w->next)
        if (w->retry_at_ms && !w->easy && !w->op && (!first || w->retry_at_ms < first))
            first = w->retry_at_ms;
    if (!first) {
        uv_timer_stop(&wh.wake);
        return;
    }
    uv_timer_start(&wh.wake, wake_cb, first > now ? (uint64_t)(first - now) : 0, 0);
}

/* Every second: non-owners ask for the key (a take-over when its holder
 * died), busy owners renew their lease, idle owners look for events. */
static void tick_cb(uv_timer_t *t)
{
    (void)t;
    for (struct webhook *w = wh.list; w; w = w->next) {
        if (w->op)
            continue;
        if (w->owned && (w->easy || w->nbatch))
            renew(w);
        else
            step(w);
    }
}

void webhooks_kick(void)
{
    for (struct webhook *w = wh.list; w; w = w->next) {
        if (!w->owned)
            continue;
        if (w->op && w->op_kind == OP_TAKE)
            w->kicked = 1;
        else if (!w->nbatch)
            step(w);
    }
}

void webhooks_init(uv_loop_t *loop)
{
    wh.loop = loop;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    wh.multi = curl_multi_init();
    if (!wh.multi)
        abort();
    curl_multi_setopt(wh.multi, CURLMOPT_SOCKETFUNCTION, sock_fn);
    curl_multi_setopt(wh.multi, CURLMOPT_TIMERFUNCTION, timer_fn);
    uv_timer_init(loop, &wh.curl_timer);
    uv_timer_init(loop, &wh.tick);
    uv_timer_init(loop, &wh.wake);
    uv_timer_start(&wh.tick, tick_cb, TICK_MS / 10, TICK_MS); /* the groups exist soon after start */
    wh.inited = 1;
}

static void release_timeout_cb(uv_timer_t *t)
{
    (void)t;
    releasing = 0;
}

void webhooks_shutdown(void)
{
    if (!wh.inited) {
        list_free(wh.list);
        wh.list = NULL;
        return;
    }
    uv_timer_stop(&wh.tick);
    uv_timer_stop(&wh.wake);
    for (struct webhook *w = wh.list, *next; w; w = next) {
        next = w->next;
        webhook_drop(w);
    }
    wh.list = NULL;
    /* let the releases reach Redis (bounded): the other brokers take over
     * at their next tick instead of after the lease */
    if (releasing > 0) {
        uv_timer_start(&wh.wake, release_timeout_cb, RELEASE_WAIT_MS, 0);
        while (releasing > 0)
            uv_run(wh.loop, UV_RUN_ONCE);
        uv_timer_stop(&wh.wake);
    }
    curl_multi_cleanup(wh.multi);
    wh.multi = NULL;
    uv_timer_stop(&wh.curl_timer);
    uv_close((uv_handle_t *)&wh.tick, NULL);
    uv_close((uv_handle_t *)&wh.wake, NULL);
    uv_close((uv_handle_t *)&wh.curl_timer, NULL);
    curl_global_cleanup();
    wh.inited = 0;
}

/* ---- status and metrics ------------------------------------------------------------ */

static int status_render(redisReply *reply, enum lk_status st, struct lk_buf *out);

struct webhooks_status_call {
    struct store_op *op;
    locks_done_fn fn;
    void *ctx;
};

static void status_answer(locks_done_fn fn, void *ctx, redisReply *reply, enum lk_status st)
{
    struct lk_buf b;
    lk_buf_init(&b, 0);
    int status = status_render(reply, st, &b);
    struct locks_result res = {status, &b, NULL, NULL, LK_E_OK, NULL};
    fn(ctx, &res);
    lk_buf_free(&b);
}

static void status_cb(void *ctx, redisReply *reply, enum lk_status st)
{
    struct webhooks_status_call *c = ctx;
    status_answer(c->fn, c->ctx, reply, st);
    free(c);
}

struct webhooks_status_call *webhooks_status(locks_done_fn fn, void *ctx)
{
    if (!wh.list) {
        status_answer(fn, ctx, NULL, LK_E_OK);
        return NULL;
    }
    const char *argv[1 + MAX_WEBHOOKS];
    int argc = 0;
    argv[argc++] = "status";
    for (struct webhook *w = wh.list; w && argc < 1 + MAX_WEBHOOKS; w = w->next)
        argv[argc++] = w->name;
    struct webhooks_status_call *c = lk_xcalloc(1, sizeof(*c));
    c->fn = fn;
    c->ctx = ctx;
    struct store_op *op = store_eval(SCRIPT_WEBHOOK, argc, argv, NULL, status_cb, c);
    if (!op)
        return NULL; /* answered (and c freed) already */
    c->op = op;
    return c;
}

void webhooks_status_cancel(struct webhooks_status_call *c)
{
    if (!c)
        return;
    store_cancel(c->op);
    free(c);
}

static void json_globs(struct lk_buf *b, const char *name, const struct globs *g)
{
    lk_buf_printf(b, ",\"%s\":", name);
    if (!g->v) {
        lk_buf_puts(b, "null");
        return;
    }
    lk_buf_putc(b, '[');
    for (size_t i = 0; i < g->n; i++) {
        if (i)
            lk_buf_putc(b, ',');
        lk_buf_json_str(b, g->v[i]);
    }
    lk_buf_putc(b, ']');
}

/* The URL without user:password@ (a credential, like the secret). */
static void json_url(struct lk_buf *b, const char *url)
{
    const char *auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    size_t hostlen = strcspn(auth, "/?#");
    const char *at = memchr(auth, '@', hostlen);
    if (!at) {
        lk_buf_json_str(b, url);
        return;
    }
    struct lk_buf u;
    lk_buf_init(&u, 0);
    lk_buf_append(&u, url, (size_t)(auth - url));
    lk_buf_puts(&u, "***@");
    lk_buf_puts(&u, at + 1);
    lk_buf_json_str(b, lk_buf_data(&u));
    lk_buf_free(&u);
}

static void json_time(struct lk_buf *b, const char *name, long long us)
{
    lk_buf_printf(b, ",\"%s\":", name);
    if (us <= 0) {
        lk_buf_puts(b, "null");
        return;
    }
    char ts[40];
    lk_time_format_us(us, ts, sizeof(ts));
    lk_buf_json_str(b, ts);
}

/* One webhook: configuration and this broker's view, then (row non-NULL)
 * the shared state: {name, owner, pel, lag, last_delivered_id, {hash}}. */
static void status_one(struct lk_buf *b, const struct webhook *w, redisReply *row)
{
    redisReply *hash = row && row->elements == 6 ? row->element[5] : NULL;
    const char *owner = row && row->element[1]->type == REDIS_REPLY_STRING ? row->element[1]->str : w->owner;
    const char *v;
    lk_buf_puts(b, "{\"name\":");
    lk_buf_json_str(b, w->name);
    lk_buf_puts(b, ",\"url\":");
    json_url(b, w->url);
    json_globs(b, "actions", &w->actions);
    json_globs(b, "devices", &w->devices);
    json_globs(b, "users", &w->users);
    lk_buf_printf(b, ",\"timeout_ms\":%ld,\"signed\":%s,\"lock_keys\":%s,\"owner\":", w->timeout_ms,
                  w->secret ? "true" : "false", w->lock_keys ? "true" : "false");
    lk_buf_json_str(b, owner && owner[0] ? owner : NULL);
    lk_buf_printf(b, ",\"owner_is_this_broker\":%s", owner && !strcmp(owner, locks_broker_id()) ? "true" : "false");
    v = fields_get(hash, "last_event_id", NULL);
    lk_buf_puts(b, ",\"last_event_id\":");
    lk_buf_json_str(b, v && v[0] ? v : (w->last_id[0] ? w->last_id : NULL));
    v = fields_get(hash, "last_status", NULL);
    long long status = v ? strtoll(v, NULL, 10) : w->last_status;
    lk_buf_puts(b, ",\"last_status\":");
    if (status > 0)
        lk_buf_printf(b, "%lld", status);
    else
        lk_buf_puts(b, "null");
    v = fields_get(hash, "last_error", NULL);
    lk_buf_puts(b, ",\"last_error\":");
    lk_buf_json_str(b, v ? (v[0] ? v : NULL) : (w->last_error[0] ? w->last_error : NULL));
    v = fields_get(hash, "failures", NULL);
    lk_buf_printf(b, ",\"consecutive_failures\":%lld", v ? strtoll(v, NULL, 10) : (long long)w->failures);
    v = fields_get(hash, "next_attempt_us", NULL);
    json_time(b, "next_attempt", v ? strtoll(v, NULL, 10) : w->next_attempt_us);
    v = fields_get(hash, "last_success_us", NULL);
    json_time(b, "last_success", v ? strtoll(v, NULL, 10) : w->last_success_us);
    v = fields_get(hash, "delivered", NULL);
    lk_buf_printf(b, ",\"delivered\":%lld", v ? strtoll(v, NULL, 10) : 0);
    v = fields_get(hash, "failed", NULL);
    lk_buf_printf(b, ",\"failed\":%lld", v ? strtoll(v, NULL, 10) : 0);
    v = fields_get(hash, "lost", NULL);
    lk_buf_printf(b, ",\"lost\":%lld", v ? strtoll(v, NULL, 10) : 0);
    long long pel = row ? int_at(row, 2) : w->pel, lag = row ? int_at(row, 3) : w->lag;
    lk_buf_puts(b, ",\"pending\":");
    if (pel < 0 || lag < 0)
        lk_buf_puts(b, "null");
    else
        lk_buf_printf(b, "%lld", pel + lag);
    lk_buf_printf(b, ",\"unacknowledged\":%lld,\"unread\":", pel);
    if (lag < 0)
        lk_buf_puts(b, "null");
    else
        lk_buf_printf(b, "%lld", lag);
    lk_buf_puts(b, ",\"group_last_id\":");
    lk_buf_json_str(b, row && row->element[4]->type == REDIS_REPLY_STRING && row->element[4]->str[0]
                           ? row->element[4]->str : NULL);
    lk_buf_printf(b, ",\"in_flight\":%s,\"this_broker\":{\"delivered\":%llu,\"failed\":%llu,"
                     "\"skipped\":%llu,\"lost\":%llu}}",
                  w->easy ? "true" : "false", w->delivered, w->failed, w->skipped, w->lost);
}

static int status_render(redisReply *reply, enum lk_status st, struct lk_buf *out)
{
    int have = st == LK_E_OK && reply && reply->type == REDIS_REPLY_ARRAY;
    lk_buf_puts(out, "{\"broker_id\":");
    lk_buf_json_str(out, locks_broker_id());
    lk_buf_printf(out, ",\"redis_available\":%s,\"lease_ms\":%ld,\"webhooks\":[",
                  have || (st == LK_E_OK && !reply) ? "true" : "false", wh.lease_ms);
    int first = 1;
    for (struct webhook *w = wh.list; w; w = w->next) {
        redisReply *row = NULL;
        for (size_t i = 0; have && i < reply->elements; i++) {
            redisReply *e = reply->element[i];
            if (e->type == REDIS_REPLY_ARRAY && e->elements == 6 && e->element[0]->type == REDIS_REPLY_STRING &&
                !strcmp(e->element[0]->str, w->name))
                row = e;
        }
        if (!first)
            lk_buf_putc(out, ',');
        first = 0;
        status_one(out, w, row);
    }
    lk_buf_puts(out, "]}");
    return 200;
}

void webhooks_metrics(struct lk_buf *b)
{
    if (!wh.list)
        return;
    lk_buf_puts(b, "# HELP devlock_webhook_deliveries_total Webhook events handled by this broker, by result "
                   "(delivered: a 2xx; failed: an attempt that got an error or another status; skipped: "
                   "not matching the filter, acknowledged without a POST).\n"
                   "# TYPE devlock_webhook_deliveries_total counter\n");
    for (struct webhook *w = wh.list; w; w = w->next)
        lk_buf_printf(b,
                      "devlock_webhook_deliveries_total{webhook=\"%s\",result=\"delivered\"} %llu\n"
                      "devlock_webhook_deliveries_total{webhook=\"%s\",result=\"failed\"} %llu\n"
                      "devlock_webhook_deliveries_total{webhook=\"%s\",result=\"skipped\"} %llu\n",
                      w->name, w->delivered, w->name, w->failed, w->name, w->skipped);
    lk_buf_puts(b, "# HELP devlock_webhook_pending Events of the stream the webhook has not had yet "
                   "(unacknowledged plus unread), as of this broker's last look (at most a second old).\n"
                   "# TYPE devlock_webhook_pending gauge\n");
    for (struct webhook *w = wh.list; w; w = w->next)
        lk_buf_printf(b, "devlock_webhook_pending{webhook=\"%s\"} %lld\n", w->name,
                      w->pel + (w->lag > 0 ? w->lag : 0));
    lk_buf_puts(b, "# HELP devlock_webhook_consecutive_failures Failed attempts since the last 2xx.\n"
                   "# TYPE devlock_webhook_consecutive_failures gauge\n");
    for (struct webhook *w = wh.list; w; w = w->next)
        lk_buf_printf(b, "devlock_webhook_consecutive_failures{webhook=\"%s\"} %u\n", w->name, w->failures);
    lk_buf_puts(b, "# HELP devlock_webhook_last_success_seconds Unix time of the last 2xx (0: none yet).\n"
                   "# TYPE devlock_webhook_last_success_seconds gauge\n");
    for (struct webhook *w = wh.list; w; w = w->next)
        lk_buf_printf(b, "devlock_webhook_last_success_seconds{webhook=\"%s\"} %.3f\n", w->name,
                      (double)w->last_success_us / 1e6);
    lk_buf_puts(b, "# HELP devlock_webhook_lost_total Events trimmed from the stream before delivery, "
                   "seen by this broker.\n"
                   "# TYPE devlock_webhook_lost_total counter\n");
    for (struct webhook *w = wh.list; w; w = w->next)
        lk_buf_printf(b, "devlock_webhook_lost_total{webhook=\"%s\"} %llu\n", w->name, w->lost);
    lk_buf_puts(b, "# HELP devlock_webhook_owner 1 while this broker delivers the webhook.\n"
                   "# TYPE devlock_webhook_owner gauge\n");
    for (struct webhook *w = wh.list; w; w = w->next)
        lk_buf_printf(b, "devlock_webhook_owner{webhook=\"%s\"} %d\n", w->name, w->owned);
}
