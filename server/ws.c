/* ws.c - WebSocket sessions.
 *
 * Ordering without gaps: a new session is registered for broadcasts at
 * once but holds its queue ("syncing") while the snapshot for
 * initial_status is read. The snapshot says which stream id it includes
 * (E); queued events with id <= E are dropped, the snapshot goes in front,
 * and the queue is released. Events after E were appended to the stream
 * after the snapshot was read, so the reader delivers them after the
 * session registered: none is lost, none is repeated. resume works the same
 * way with a replay of (since, now] instead of a snapshot.
 *
 * The stream reader may lag behind a snapshot (the snapshot's id E can be
 * ahead of the last event read). So when a sync ends, E becomes the
 * session's floor: a live event with id <= floor is never sent, however
 * late the reader delivers it. Resumes asked for while a sync is in flight
 * wait in a short FIFO and run in turn; each gets its answer.
 *
 * Each event is serialised once into a refcounted frame (with LWS_PRE
 * headroom) shared by every session's queue. A queue is a bounded ring; a
 * client that falls behind by --ws-queue-max frames or --ws-queue-max-bytes
 * bytes is dropped (one frame larger than the byte bound is still sent to a
 * client whose queue is empty).
 *
 * A live event for a session with nothing waiting (not syncing, queue empty,
 * no fragmented frame or ping pending, nothing lws kept of a partial send)
 * is written at once from the broadcast, not queued for a WRITEABLE
 * callback: one send() per watcher, without POLLOUT switched on and off and
 * a pass through lws's service and our callback for each. Anything that
 * waits keeps its place: a session with something queued or held queues
 * the event behind it (write_now).
 *
 * Liveness: each client is pinged after --ws-ping-interval seconds without
 * anything from it, and dropped when --ws-ping-timeout more pass without a
 * pong (or any frame). A client that does not read is dropped the same way,
 * since its ping cannot even be written.
 *
 * Sessions: a socket owns one session (its own, or one it attached). The
 * owner record in Redis (session.lua) names the broker and this socket's
 * conn_id, so a detach from a socket the session has moved away from is
 * ignored, and the other brokers detach the sessions of a broker that died. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "lk_log.h"
#include "lk_mem.h"
#include "lk_text.h"
#include "lk_time.h"
#include "auth.h"
#include "ids.h"
#include "locks.h"
#include "metrics.h"
#include "origin.h"
#include "http.h"
#include "ws.h"
#include "shared.h"

/* A frame: its bytes are buf's first pre bytes, then head's (a status
 * listing shared by every session and request, or none), then the rest
 * of buf. */
struct ws_msg {
    int refs;
    int is_event;
    char id[48];            /* stream id of an event, "" for replies */
    size_t len;             /* the whole frame */
    struct shared *head;
    size_t pre;
    unsigned char buf[];    /* LWS_PRE headroom, then len - head's bytes */
};

/* Frames longer than this go out in fragments of at most this size, one
 * per WRITEABLE callback, each copied to a buffer with LWS_PRE headroom:
 * a frame is never copied per session, nor whole into lws's buffer when
 * the socket takes only part of it. */
#define FRAGMENT 16384
_Static_assert(FRAGMENT + 14 <= HTTP_SEND_MAX, "a fragment and its frame header are one send()");

enum call_kind { CALL_SNAPSHOT, CALL_RESUME, CALL_STATUS, CALL_ACQUIRE, CALL_RELEASE, CALL_RENEW,
                 CALL_ATTACH };

#define PENDING_RESUMES_MAX 4 /* each may hold a replay of --resume-max events */
#define CALLS_MAX 1024      /* requests in flight per client (each holds memory) */
#define TICK_MS 250

/* A resume that waits for the sync in flight. */
struct ws_pending {
    struct ws_pending *next;
    char *since;
    char *id_json;
};

struct ws_call {
    struct ws_session *s;
    struct ws_call *next;
    enum call_kind kind;
    struct locks_call *lc;  /* lock call in flight (also resume, attach) */
    char *id_json;          /* the request's "id", serialised; NULL if none */
    char *since;            /* resume; attach: the resume's since, NULL for attach_session */
    char *target;           /* attach: the session taken over */
    int session;            /* acquire with "session": true */
};

static struct {
    struct ws_session *head;
    size_t count;
    unsigned long dropped;
} all;

static const char *const result_type[] = {
    [CALL_STATUS] = "status_response", [CALL_ACQUIRE] = "acquire_result",
    [CALL_RELEASE] = "release_result", [CALL_RENEW] = "renew_result",
};

static uv_timer_t tick;
static unsigned ticks;
static void tick_cb(uv_timer_t *t);

void ws_init(void)
{
    uv_timer_init(uv_default_loop(), &tick);
    uv_unref((uv_handle_t *)&tick); /* it never keeps the loop alive at shutdown */
    uv_timer_start(&tick, tick_cb, TICK_MS, TICK_MS);
}
void ws_shutdown(void)
{
    uv_timer_stop(&tick);
    uv_close((uv_handle_t *)&tick, NULL);
    locks_session_shutdown();
}

size_t ws_client_count(void) { return all.count; }
unsigned long ws_dropped_count(void) { return all.dropped; }

/* ---- frames and queues ---------------------------------------------------- */

/* The frame pre + head + tail (head may be NULL: a frame of its own). */
static struct ws_msg *msg_parts(const char *pre, size_t prelen, struct shared *head, const char *tail,
                                size_t taillen, const char *event_id)
{
    struct ws_msg *m = lk_xmalloc(sizeof(*m) + LWS_PRE + prelen + taillen);
    m->refs = 1;
    m->is_event = event_id != NULL;
    snprintf(m->id, sizeof(m->id), "%s", event_id ? event_id : "");
    m->head = shared_ref(head);
    m->pre = prelen;
    m->len = prelen + (head ? head->len : 0) + taillen;
    memcpy(m->buf + LWS_PRE, pre, prelen);
    memcpy(m->buf + LWS_PRE + prelen, tail, taillen);
    return m;
}

static struct ws_msg *msg_new(const char *data, size_t len, const char *event_id)
{
    return msg_parts(data, len, NULL, "", 0, event_id);
}

static void msg_unref(struct ws_msg *m)
{
    if (m && --m->refs == 0) {
        shared_unref(m->head);
        free(m);
    }
}

/* The frame's bytes [off, off + n) into dst. */
static void msg_copy(const struct ws_msg *m, size_t off, size_t n, unsigned char *dst)
{
    size_t hlen = m->head ? m->head->len : 0;
    const struct piece pc[] = {{m->buf + LWS_PRE, m->pre},
                               {m->head ? m->head->data : NULL, hlen},
                               {m->buf + LWS_PRE + m->pre, m->len - m->pre - hlen}};
    pieces_copy(pc, 3, off, n, dst);
}

_Static_assert(offsetof(struct ws_session, floor) + sizeof(((struct ws_session *)0)->floor) <= 112,
               "what ws_broadcast reads of a session is in its first 112 bytes");

static struct ws_msg *q_at(struct ws_session *s, size_t i) { return s->q[(s->qhead + i) % s->qcap]; }

static int q_grow(struct ws_session *s)
{
    if (s->qlen < s->qcap)
        return 0;
    if (s->qcap >= (size_t)cfg.ws_queue_max)
        return -1;
    size_t ncap = s->qcap ? s->qcap * 2 : 16;
    if (ncap > (size_t)cfg.ws_queue_max)
        ncap = (size_t)cfg.ws_queue_max;
    struct ws_msg **nq = lk_xmalloc(sizeof(*nq) * ncap);
    for (size_t i = 0; i < s->qlen; i++)
        nq[i] = q_at(s, i);
    free(s->q);
    s->q = nq;
    s->qcap = ncap;
    s->qhead = 0;
    return 0;
}

/* Queues m (taking a reference) at the back, or the front. A session whose
 * queue is full is doomed: it is closed instead of growing memory. */
static void q_push(struct ws_session *s, struct ws_msg *m, int front)
{
    if (s->doomed)
        return;
    /* One frame larger than the bound (a snapshot or status of many locks)
     * may wait besides it, uncounted; a second one is counted. */
    size_t max = (size_t)cfg.ws_queue_max_bytes;
    int big = m->len > max && !s->qbig;
    int over_bytes = !big && s->qlen > 0 && s->qbytes + m->len > max;
    if (over_bytes || q_grow(s) != 0) {
        s->doomed = 1;
        all.dropped++;
        metrics_ws_dropped();
        metrics_refusal(REF_slow_client);
        lk_warn("ws: client fell %zu frames (%zu bytes) behind; dropping it", s->qlen, s->qbytes);
        /* it may never become writeable again (it does not read): close it
         * from the loop rather than waiting for a WRITEABLE callback */
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        lws_callback_on_writable(s->wsi); /* sooner, with a close frame, if it can be written */
        return;
    }
    m->refs++;
    if (big)
        s->qbig = m;
    else
        s->qbytes += m->len;
    if (front) {
        s->qhead = (s->qhead + s->qcap - 1) % s->qcap;
        s->q[s->qhead] = m;
    } else {
        s->q[(s->qhead + s->qlen) % s->qcap] = m;
    }
    s->qlen++;
    if (!s->syncing)
        lws_callback_on_writable(s->wsi);
}

static struct ws_msg *q_pop(struct ws_session *s)
{
    if (!s->qlen)
        return NULL;
    struct ws_msg *m = s->q[s->qhead];
    s->qhead = (s->qhead + 1) % s->qcap;
    s->qlen--;
    if (m == s->qbig)
        s->qbig = NULL;
    else
        s->qbytes -= m->len;
    return m;
}

/* Drops queued events with id <= upto ("" = every event); keeps replies. */
static void q_drop_events(struct ws_session *s, const char *upto)
{
    size_t n = s->qlen, kept = 0;
    for (size_t i = 0; i < n; i++) {
        int big = q_at(s, 0) == s->qbig;
        struct ws_msg *m = q_pop(s);
        if (m->is_event && (!upto[0] || lk_stream_id_cmp(m->id, upto) <= 0)) {
            msg_unref(m);
            continue;
        }
        s->q[(s->qhead + s->qlen) % s->qcap] = m;
        s->qlen++;
        if (big)
            s->qbig = m;
        else
            s->qbytes += m->len;
        kept++;
    }
    (void)kept;
}

/* With auth on, lock keys of other users' locks are hidden (admins see all). */
static int redacts(const struct ws_session *s) { return auth_active() && !auth_is_admin(&s->user); }

static struct ws_msg *session_msg(const struct ws_session *s, struct lk_buf *b, const char *event_id)
{
    if (!redacts(s))
        return msg_new(lk_buf_data(b), b->len, event_id);
    struct lk_buf r;
    lk_buf_init(&r, 0);
    auth_redact(lk_buf_data(b), b->len, s->user.user_id, &r);
    struct ws_msg *m = msg_new(lk_buf_data(&r), r.len, event_id);
    lk_buf_free(&r);
    return m;
}

/* The frame pre + res's answer + post for s: sharing the answer's head
 * when s sees every key, else a redacted copy of its own. */
static struct ws_msg *session_msg_result(const struct ws_session *s, const char *pre,
                                         const struct locks_result *res, const char *post)
{
    struct lk_buf b;
    lk_buf_init(&b, 0);
    struct ws_msg *m;
    if (res->head && !redacts(s)) {
        lk_buf_append(&b, lk_buf_data(res->body), res->body->len);
        lk_buf_puts(&b, post);
        m = msg_parts(pre, strlen(pre), res->head, lk_buf_data(&b), b.len, NULL);
    } else {
        lk_buf_puts(&b, pre);
        locks_result_flat(res, &b);
        lk_buf_puts(&b, post);
        m = session_msg(s, &b, NULL);
    }
    lk_buf_free(&b);
    return m;
}

static void send_text(struct ws_session *s, struct lk_buf *b, int front)
{
    struct ws_msg *m = session_msg(s, b, NULL);
    q_push(s, m, front);
    msg_unref(m);
}

static void send_error(struct ws_session *s, enum lk_status st, const char *detail, const char *id_json)
{
    struct lk_buf b;
    lk_buf_init(&b, 0);
    metrics_refusal(REF_ws_bad_message);
    lk_buf_puts(&b, "{\"type\":\"error\",");
    if (id_json)
        lk_buf_printf(&b, "\"id\":%s,", id_json);
    lk_buf_puts(&b, "\"error\":");
    lk_buf_json_str(&b, lk_error_wire(st));
    lk_buf_puts(&b, ",\"detail\":");
    lk_buf_json_str(&b, detail);
    lk_buf_putc(&b, '}');
    send_text(s, &b, 0);
    lk_buf_free(&b);
}

/* Frames produced by a sync (gap error, initial_status, replay,
 * resume_result) collect here in order, and go in front of the held queue
 * when the sync ends. */
/* A frame of the sync, held until the sync ends (the reference is taken over). */
static void sync_add_msg(struct ws_session *s, struct ws_msg *m)
{
    s->sync_frames = lk_xrealloc(s->sync_frames, sizeof(*s->sync_frames) * (s->nsync + 1));
    s->sync_frames[s->nsync++] = m;
}

static void sync_add(struct ws_session *s, struct lk_buf *b, const char *event_id)
{
    sync_add_msg(s, session_msg(s, b, event_id));
}

static void sync_covers(struct ws_session *s, const char *id)
{
    if (id && (!s->sync_upto[0] || lk_stream_id_cmp(id, s->sync_upto) > 0))
        snprintf(s->sync_upto, sizeof(s->sync_upto), "%s", id);
}

static void release_queue(struct ws_session *s)
{
    if (s->sync_upto[0]) {
        q_drop_events(s, s->sync_upto);
        if (!s->floor[0] || lk_stream_id_cmp(s->sync_upto, s->floor) > 0)
            snprintf(s->floor, sizeof(s->floor), "%s", s->sync_upto);
    }
    for (size_t i = s->nsync; i-- > 0;) {
        q_push(s, s->sync_frames[i], 1);
        msg_unref(s->sync_frames[i]);
    }
    free(s->sync_frames);
    s->sync_frames = NULL;
    s->nsync = 0;
    s->sync_upto[0] = '\0';
    s->syncing = 0;
    if (s->qlen || s->doomed)
        lws_callback_on_writable(s->wsi);
}

/* The session's subscription: every device, or the listed ones. */
static int wants(const struct ws_session *s, const char *device)
{
    if (!s->filter)
        return 1;
    for (size_t i = 0; i < s->nfilter; i++)
        if (!strcmp(s->filter[i], device))
            return 1;
    return 0;
}

/* Sends m at once, outside a WRITEABLE callback, when nothing may come
 * before it: the session is live (not syncing, not doomed, no close frame
 * prepared), nothing of it waits (no queued frame, no frame in fragments, no
 * ping due, nothing lws kept of a partial send) and m goes in one write. The
 * socket may take only part of it: lws keeps the rest (at most one frame,
 * FRAGMENT bytes) and sends it before anything else, and until then
 * lws_partial_buffered() sends the next frames to the queue. 1 if m was
 * written (or the write failed and the session is closing), 0 to queue it. */
static int write_now(struct ws_session *s, struct ws_msg *m)
{
    if (!s->wsi || s->syncing || s->doomed || s->qlen || s->cur || s->ping_due || m->head ||
        m->len > FRAGMENT || lws_get_close_length(s->wsi) || lws_partial_buffered(s->wsi))
        return 0;
    if (lws_write(s->wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT) < 0) {
        /* the socket is gone: close it from the loop, as a WRITEABLE would */
        s->doomed = 3;
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
    return 1;
}

void ws_broadcast(const struct event *e)
{
    const char *event_id = e->id;
    if (!all.head || e->json_len < 2 || e->json[0] != '{')
        return;
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_printf(&b, "{\"type\":\"lock_update\",\"event_id\":\"%s\",", event_id);
    lk_buf_append(&b, e->json + 1, e->json_len - 1);
    struct ws_msg *m = msg_new(lk_buf_data(&b), b.len, event_id), *hidden = NULL;
    if (auth_active()) { /* one copy with the key hidden, for everyone but its owner */
        struct lk_buf r;
        lk_buf_init(&r, 0);
        auth_redact(lk_buf_data(&b), b.len, NULL, &r);
        hidden = msg_new(lk_buf_data(&r), r.len, event_id);
        lk_buf_free(&r);
    }
    lk_buf_free(&b);
    for (struct ws_session *s = all.head, *next; s; s = next) {
        /* the session after next and next's lws connection are fetched from
         * memory while this one's send() runs (next came the same way) */
        next = s->next;
        if (next) {
            if (next->next) {
                __builtin_prefetch(next->next);
                __builtin_prefetch((char *)next->next + 64);
            }
            __builtin_prefetch(next->wsi);
        }
        if (!wants(s, e->device) || (s->floor[0] && lk_stream_id_cmp(event_id, s->floor) <= 0))
            continue; /* or the sync before it covered it: the reader lags */
        int full = !hidden || !redacts(s) || !strcmp(s->user.user_id, e->user);
        struct ws_msg *f = full ? m : hidden;
        if (!write_now(s, f))
            q_push(s, f, 0);
    }
    msg_unref(m);
    msg_unref(hidden);
}

/* ---- calls in flight ------------------------------------------------------- */

static struct ws_call *call_new(struct ws_session *s, enum call_kind kind, const cJSON *id)
{
    struct ws_call *c = lk_xcalloc(1, sizeof(*c));
    c->s = s;
    c->kind = kind;
    c->id_json = id ? cJSON_PrintUnformatted(id) : NULL;
    c->next = s->calls;
    s->calls = c;
    s->ncalls++;
    return c;
}

/* Records the lock call or script of a request still in flight. NULL means
 * it was answered (and c freed) already: c must not be touched then. */
static void call_started(struct ws_call *c, struct locks_call *lc)
{
    if (lc)
        c->lc = lc;
}

static void call_free(struct ws_call *c)
{
    struct ws_call **pp = &c->s->calls;
    while (*pp && *pp != c)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = c->next;
        c->s->ncalls--;
    }
    free(c->id_json);
    free(c->since);
    free(c->target);
    free(c);
}

static void start_resume(struct ws_session *s, const char *since, const char *id_json);

/* The sync ended: the next waiting resume, or the live queue. */
static void sync_next(struct ws_session *s)
{
    struct ws_pending *p = s->pending;
    if (!p || s->doomed) {
        release_queue(s);
        return;
    }
    s->pending = p->next;
    s->npending--;
    start_resume(s, p->since, p->id_json);
    free(p->since);
    free(p->id_json);
    free(p);
}

/* The snapshot (initial_status, or after resume_gap) is in: put it in
 * front of the held queue, minus the events it already contains. */
static void snapshot_done(void *ctx, const struct locks_result *res)
{
    struct ws_call *c = ctx;
    struct ws_session *s = c->s;
    c->lc = NULL;
    if (res->status != 200) {
        send_error(s, LK_E_UNAVAILABLE, "could not read the lock state; reconnect to retry", NULL);
        s->doomed = 1;
        call_free(c);
        release_queue(s);
        return;
    }
    char post[80];
    snprintf(post, sizeof(post), ",\"event_id\":\"%s\"}", res->event_id ? res->event_id : "0-0");
    sync_add_msg(s, session_msg_result(s, "{\"type\":\"initial_status\",\"data\":", res, post));
    sync_covers(s, res->event_id ? res->event_id : "0-0");
    call_free(c);
    sync_next(s);
}

static void start_snapshot(struct ws_session *s)
{
    s->syncing = 1;
    struct ws_call *c = call_new(s, CALL_SNAPSHOT, NULL);
    call_started(c, locks_status(NULL, -1, snapshot_done, c));
}

static void resume_done(void *ctx, const struct locks_resume_result *res)
{
    struct ws_call *c = ctx;
    struct ws_session *s = c->s;
    c->lc = NULL;
    if (res->status != LK_E_OK) {
        send_error(s, LK_E_UNAVAILABLE, "Redis is unavailable; resume again later", c->id_json);
        call_free(c);
        sync_next(s);
        return;
    }
    if (res->gap) {
        /* the error, then a fresh initial_status, then live events */
        struct lk_buf b;
        lk_buf_init(&b, 0);
        lk_buf_puts(&b, "{\"type\":\"error\",");
        if (c->id_json)
            lk_buf_printf(&b, "\"id\":%s,", c->id_json);
        lk_buf_puts(&b, "\"error\":\"resume_gap\",\"detail\":");
        lk_buf_json_str(&b, "events after that id are no longer kept (or never existed); "
                            "a fresh initial_status follows");
        lk_buf_puts(&b, ",\"since\":");
        lk_buf_json_str(&b, c->since);
        lk_buf_putc(&b, '}');
        sync_add(s, &b, NULL);
        lk_buf_free(&b);
        call_free(c);
        struct ws_call *snap = call_new(s, CALL_SNAPSHOT, NULL);
        call_started(snap, locks_status(NULL, -1, snapshot_done, snap));
        return;
    }
    /* Replay (since, last], then resume_result, then the held live events
     * newer than the replay. */
    const char *last = c->since;
    struct lk_buf b;
    lk_buf_init(&b, 0);
    for (size_t i = 0; i < res->n; i++) {
        const struct locks_event *e = &res->events[i];
        last = e->id;
        if (s->filter) {
            cJSON *ev = cJSON_ParseWithLength(e->json, e->len);
            const char *dev = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "device_name"));
            int keep = dev && wants(s, dev);
            cJSON_Delete(ev);
            if (!keep)
                continue;
        }
        lk_buf_reset(&b);
        lk_buf_printf(&b, "{\"type\":\"lock_update\",\"event_id\":\"%s\",", e->id);
        lk_buf_append(&b, e->json + 1, e->len - 1);
        sync_add(s, &b, e->id);
    }
    sync_covers(s, last);
    lk_buf_reset(&b);
    lk_buf_puts(&b, "{\"type\":\"resume_result\",");
    if (c->id_json)
        lk_buf_printf(&b, "\"id\":%s,", c->id_json);
    lk_buf_puts(&b, "\"since\":");
    lk_buf_json_str(&b, c->since);
    lk_buf_printf(&b, ",\"replayed\":%zu,\"event_id\":", res->replayed);
    lk_buf_json_str(&b, last);
    lk_buf_putc(&b, '}');
    sync_add(s, &b, NULL);
    lk_buf_free(&b);
    call_free(c);
    sync_next(s);
}

static void start_resume(struct ws_session *s, const char *since, const char *id_json)
{
    s->syncing = 1;
    q_drop_events(s, "");
    struct ws_call *c = call_new(s, CALL_RESUME, NULL);
    c->id_json = id_json ? lk_xstrdup(id_json) : NULL;
    c->since = lk_xstrdup(since);
    call_started(c, locks_resume(since, cfg.resume_max, resume_done, c));
}

/* A command's answer: {"type":"<kind>_result","id":..., <reply fields>}. */
static void command_done(void *ctx, const struct locks_result *res)
{
    struct ws_call *c = ctx;
    struct ws_session *s = c->s;
    c->lc = NULL;
    const char *body = lk_buf_data(res->body);
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_printf(&b, "{\"type\":\"%s\",", result_type[c->kind]);
    if (c->id_json)
        lk_buf_printf(&b, "\"id\":%s,", c->id_json);
    if (c->kind == CALL_STATUS && res->status == 200 && res->head) { /* the shared listing */
        lk_buf_puts(&b, "\"data\":");
        struct ws_msg *m = session_msg_result(s, lk_buf_data(&b), res, "}");
        q_push(s, m, 0);
        msg_unref(m);
        lk_buf_free(&b);
        call_free(c);
        return;
    }
    if (c->kind == CALL_STATUS) {
        if (res->status == 200) { /* a page read from Redis */
            lk_buf_puts(&b, "\"data\":");
            lk_buf_append(&b, body, res->body->len);
            lk_buf_putc(&b, '}');
        } else {
            lk_buf_append(&b, body + 1, res->body->len - 1);
        }
    } else {
        if (c->kind == CALL_ACQUIRE && c->session)
            lk_buf_printf(&b, "\"session_id\":\"%s\",", s->session_id);
        lk_buf_printf(&b, "\"status\":%d,", res->status);
        if (res->status != 200)
            lk_buf_puts(&b, "\"success\":false,");
        lk_buf_append(&b, body + 1, res->body->len - 1);
    }
    send_text(s, &b, 0);
    lk_buf_free(&b);
    call_free(c);
}

/* ---- incoming messages -------------------------------------------------------- */

/* {"type":"subscribe","devices":[...]}: only those devices' updates from now
 * on; an empty list or null means every device again. */
static void subscribe(struct ws_session *s, const cJSON *msg, const char *id_json)
{
    const cJSON *devs = cJSON_GetObjectItemCaseSensitive(msg, "devices");
    if (devs && !cJSON_IsNull(devs) && (!cJSON_IsArray(devs) || cJSON_GetArraySize(devs) > 10000)) {
        send_error(s, LK_E_VALIDATION, "field 'devices' must be an array of device names", id_json);
        return;
    }
    const cJSON *d;
    cJSON_ArrayForEach(d, devs) {
        if (!cJSON_IsString(d) || !lk_device_name_valid(d->valuestring)) {
            send_error(s, LK_E_INVALID_DEVICE, "field 'devices' holds an invalid device name", id_json);
            return;
        }
    }
    for (size_t i = 0; i < s->nfilter; i++)
        free(s->filter[i]);
    free(s->filter);
    s->filter = NULL;
    s->nfilter = 0;
    int n = devs ? cJSON_GetArraySize(devs) : 0;
    if (n > 0) {
        s->filter = lk_xcalloc((size_t)n, sizeof(char *));
        cJSON_ArrayForEach(d, devs) s->filter[s->nfilter++] = lk_xstrdup(d->valuestring);
    }
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_puts(&b, "{\"type\":\"subscribe_result\",");
    if (id_json)
        lk_buf_printf(&b, "\"id\":%s,", id_json);
    lk_buf_puts(&b, "\"devices\":");
    if (!s->filter)
        lk_buf_puts(&b, "null");
    for (size_t i = 0; i < s->nfilter; i++) {
        lk_buf_putc(&b, i ? ',' : '[');
        lk_buf_json_str(&b, s->filter[i]);
        if (i + 1 == s->nfilter)
            lk_buf_putc(&b, ']');
    }
    lk_buf_putc(&b, '}');
    send_text(s, &b, 0);
    lk_buf_free(&b);
}

/* The same rules as HTTP: the token's user, and the role for the type. */
static int authorized(struct ws_session *s, const cJSON *msg, int acquire, const char *id_json)
{
    if (!auth_active())
        return 1;
    const char *user = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "user_id"));
    if (user && strcmp(user, s->user.user_id) && !auth_is_admin(&s->user)) {
        metrics_refusal(REF_forbidden);
        send_error(s, LK_E_FORBIDDEN, "user_id is not the user of this token", id_json);
        return 0;
    }
    int prio = lk_lock_type_parse(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "lock_type")));
    if (acquire && prio >= 0 && !auth_may_lock(&s->user, prio)) {
        metrics_refusal(REF_forbidden);
        send_error(s, LK_E_FORBIDDEN, "this token's roles do not allow that lock type", id_json);
        return 0;
    }
    return 1;
}

/* The token of an upgrade request: Authorization: Bearer, or ?token=. */
static int ws_authenticate(struct lws *wsi, struct auth_user *user)
{
    char hdr[600] = "", arg[600];
    const char *tok = NULL;
    if (lws_hdr_copy(wsi, hdr, sizeof(hdr), WSI_TOKEN_HTTP_AUTHORIZATION) > 0)
        tok = auth_bearer(hdr);
    if (!tok)
        tok = lws_get_urlarg_by_name(wsi, "token=", arg, sizeof(arg));
    return auth_lookup(tok, user);
}

/* A resume, now or after the sync in flight (every resume is answered). */
static void resume_or_queue(struct ws_session *s, const char *since, const char *id_json)
{
    if (!s->syncing) {
        start_resume(s, since, id_json);
        return;
    }
    if (s->npending >= PENDING_RESUMES_MAX) {
        send_error(s, LK_E_VALIDATION, "too many resumes in flight; wait for their resume_result",
                   id_json);
        return;
    }
    struct ws_pending *p = lk_xcalloc(1, sizeof(*p)), **pp = &s->pending;
    p->since = lk_xstrdup(since);
    p->id_json = id_json ? lk_xstrdup(id_json) : NULL;
    while (*pp)
        pp = &(*pp)->next;
    *pp = p;
    s->npending++;
}

static void send_attach_result(struct ws_session *s, const char *id_json)
{
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_puts(&b, "{\"type\":\"attach_session_result\",");
    if (id_json)
        lk_buf_printf(&b, "\"id\":%s,", id_json);
    lk_buf_puts(&b, "\"session_id\":");
    lk_buf_json_str(&b, s->session_id);
    lk_buf_putc(&b, '}');
    send_text(s, &b, 0);
    lk_buf_free(&b);
}

/* The session left the socket of this broker that owned it (conn): that
 * socket starts a fresh session of its own, so closing it detaches nothing. */
static void session_moved_from(const char *session, const char *conn)
{
    for (struct ws_session *o = all.head; o; o = o->next) {
        if (o->wsi && !strcmp(o->conn_id, conn) && !strcmp(o->session_id, session)) {
            ids_uuid4(o->session_id);
            o->claimed = 0;
        }
    }
}

static void attach_done(void *ctx, const struct locks_attach_result *res)
{
    struct ws_call *c = ctx;
    struct ws_session *s = c->s;
    c->lc = NULL;
    s->attaching = 0;
    switch (res->outcome) {
    case LOCKS_ATTACH_UNAVAILABLE:
        /* it may still run: if it does, the session gets its grace period */
        locks_session_detach(c->target, s->conn_id);
        send_error(s, LK_E_UNAVAILABLE, "Redis is unavailable; attach again later", c->id_json);
        break;
    case LOCKS_ATTACH_FORBIDDEN:
        metrics_refusal(REF_forbidden);
        send_error(s, LK_E_FORBIDDEN, "that session belongs to another user", c->id_json);
        break;
    case LOCKS_ATTACH_BUSY:
        send_error(s, LK_E_VALIDATION,
                   "this socket's own session holds locks: release them first, or attach on a new socket",
                   c->id_json);
        break;
    case LOCKS_ATTACH_OK:
        if (res->moved_from && strcmp(res->moved_from, s->conn_id))
            session_moved_from(c->target, res->moved_from);
        snprintf(s->session_id, sizeof(s->session_id), "%s", c->target);
        s->claimed = 1;
        if (c->since)
            resume_or_queue(s, c->since, c->id_json);
        else
            send_attach_result(s, c->id_json);
        break;
    default:
        send_error(s, LK_E_INTERNAL, "unexpected reply from the session script", c->id_json);
    }
    call_free(c);
}

static int session_acquire_in_flight(const struct ws_session *s)
{
    for (const struct ws_call *c = s->calls; c; c = c->next)
        if (c->kind == CALL_ACQUIRE && c->session)
            return 1;
    return 0;
}

/* Takes over an earlier socket's session (its session locks stay); then
 * resumes from since when it is set (resume with session_id). */
static void attach_session(struct ws_session *s, const cJSON *sid, const char *since, const char *id_json)
{
    if (!cJSON_IsString(sid) || strlen(sid->valuestring) != 36) {
        send_error(s, LK_E_VALIDATION, "field 'session_id' must be a session id from acquire_result",
                   id_json);
        return;
    }
    if (s->attaching || session_acquire_in_flight(s)) {
        send_error(s, LK_E_VALIDATION,
                   s->attaching ? "an attach is in flight; wait for its answer"
                                : "a session acquire is in flight; wait for its answer",
                   id_json);
        return;
    }
    struct ws_call *c = call_new(s, CALL_ATTACH, NULL);
    c->id_json = id_json ? lk_xstrdup(id_json) : NULL;
    c->since = since ? lk_xstrdup(since) : NULL;
    c->target = lk_xstrdup(sid->valuestring);
    s->attaching = 1;
    call_started(c, locks_session_attach(c->target, s->session_id, s->conn_id, s->user.user_id,
                                         auth_active() && auth_is_admin(&s->user), attach_done, c));
}

enum lk_status ws_decode(const char *text, size_t len, cJSON **msg, const char **type,
                         const char **detail)
{
    *msg = NULL;
    *type = NULL;
    if (lk_json_depth(text, len, (int)cfg.max_json_depth) > cfg.max_json_depth) {
        *detail = "JSON nesting is too deep";
        return LK_E_TOO_DEEP;
    }
    if (lk_json_has_nul(text, len)) {
        *detail = "strings must not contain NUL (\\u0000)";
        return LK_E_INVALID_JSON;
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (j && (!end || !lk_json_only_space(end, (size_t)(text + len - end)))) {
        cJSON_Delete(j);
        j = NULL;
    }
    if (!j || !cJSON_IsObject(j)) {
        *detail = j ? "a message must be a JSON object" : "message is not valid JSON";
        cJSON_Delete(j);
        return LK_E_INVALID_JSON;
    }
    *msg = j;
    *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "type"));
    if (!*type) {
        *detail = "field 'type' is required and must be a string";
        return LK_E_VALIDATION;
    }
    return LK_E_OK;
}

static void handle_message(struct ws_session *s, const char *text, size_t len)
{
    if (s->doomed)
        return; /* being dropped: no more work for it */
    cJSON *msg;
    const char *t, *detail = NULL;
    enum lk_status st = ws_decode(text, len, &msg, &t, &detail);
    if (!msg) {
        send_error(s, st, detail, NULL);
        return;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    char *id_json = id ? cJSON_PrintUnformatted(id) : NULL;
    if (!t) {
        send_error(s, st, detail, id_json);
    } else if (s->ncalls >= CALLS_MAX && strcmp(t, "ping") && strcmp(t, "subscribe")) {
        send_error(s, LK_E_UNAVAILABLE, "too many requests in flight on this socket; wait for answers",
                   id_json);
    } else if (!strcmp(t, "ping")) {
        char ts[40];
        lk_time_format_us(lk_time_now_us(), ts, sizeof(ts));
        struct lk_buf b;
        lk_buf_init(&b, 0);
        lk_buf_puts(&b, "{\"type\":\"pong\",");
        if (id_json)
            lk_buf_printf(&b, "\"id\":%s,", id_json);
        lk_buf_printf(&b, "\"timestamp\":\"%s\"}", ts);
        send_text(s, &b, 0);
        lk_buf_free(&b);
    } else if (!strcmp(t, "get_status")) {
        struct ws_call *c = call_new(s, CALL_STATUS, id);
        call_started(c, locks_status(NULL, -1, command_done, c));
    } else if ((!strcmp(t, "acquire") || !strcmp(t, "release") || !strcmp(t, "renew")) &&
               !authorized(s, msg, t[1] == 'c', id_json)) {
        /* refused: the error frame is sent */
    } else if (!strcmp(t, "acquire") && s->attaching &&
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(msg, "session"))) {
        send_error(s, LK_E_VALIDATION, "an attach is in flight; send session acquires after its answer",
                   id_json);
    } else if (!strcmp(t, "acquire") || !strcmp(t, "release") || !strcmp(t, "renew")) {
        enum call_kind k = t[1] == 'c' ? CALL_ACQUIRE : t[2] == 'l' ? CALL_RELEASE : CALL_RENEW;
        struct ws_call *c = call_new(s, k, id);
        c->session = k == CALL_ACQUIRE && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(msg, "session"));
        if (c->session && !s->claimed) { /* ahead of the acquire on the same connection */
            locks_session_claim(s->session_id, s->conn_id, s->user.user_id);
            s->claimed = 1;
        }
        call_started(c, k == CALL_ACQUIRE ? locks_request(msg, s->session_id, command_done, c)
                        : k == CALL_RELEASE ? locks_release(msg, command_done, c)
                                            : locks_renew(msg, command_done, c));
    } else if (!strcmp(t, "subscribe")) {
        subscribe(s, msg, id_json);
    } else if (!strcmp(t, "resume") || !strcmp(t, "attach_session")) {
        const cJSON *since = cJSON_GetObjectItemCaseSensitive(msg, "since");
        const cJSON *sid = cJSON_GetObjectItemCaseSensitive(msg, "session_id");
        int resume = !strcmp(t, "resume");
        if (resume && (!cJSON_IsString(since) || strlen(since->valuestring) > 42))
            send_error(s, LK_E_VALIDATION, "field 'since' must be an event_id string", id_json);
        else if (sid)
            attach_session(s, sid, resume ? since->valuestring : NULL, id_json);
        else if (!resume)
            send_attach_result(s, id_json); /* no session_id: the socket's own */
        else
            resume_or_queue(s, since->valuestring, id_json);
    } else {
        send_error(s, LK_E_UNKNOWN_TYPE, "unknown message type", id_json);
    }
    free(id_json);
    cJSON_Delete(msg);
}

/* ---- liveness ------------------------------------------------------------------ */

static void drop_silent(struct ws_session *s)
{
    s->doomed = 2;
    all.dropped++;
    metrics_ws_dropped();
    lk_info("ws: client did not answer a ping within %ld s; dropping it", cfg.ws_ping_timeout);
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    lws_callback_on_writable(s->wsi);
}

/* Pings, ping timeouts, and (once a second) the cleanup of sessions whose
 * broker died. */
static void tick_cb(uv_timer_t *t)
{
    (void)t;
    int64_t now = lk_time_mono_ms();
    if (cfg.ws_ping_interval > 0) {
        for (struct ws_session *s = all.head; s; s = s->next) {
            if (!s->wsi || s->doomed)
                continue;
            if (s->ping_sent_ms) {
                if (now - s->ping_sent_ms >= cfg.ws_ping_timeout * 1000)
                    drop_silent(s);
            } else if (now - s->last_seen_ms >= cfg.ws_ping_interval * 1000) {
                /* the timeout runs from now even if the ping cannot be written */
                s->ping_sent_ms = now;
                s->ping_due = 1;
                lws_callback_on_writable(s->wsi);
            }
        }
    }
    if (++ticks >= 1000 / TICK_MS) {
        ticks = 0;
        locks_session_reap();
    }
}

/* ---- lws callback ------------------------------------------------------------- */

static void session_close(struct ws_session *s)
{
    while (s->calls) {
        /* an attach that still runs makes this socket the owner: undo that */
        if (s->calls->kind == CALL_ATTACH && s->calls->lc)
            locks_session_detach(s->calls->target, s->conn_id);
        if (s->calls->lc)
            locks_cancel(s->calls->lc);
        call_free(s->calls);
    }
    /* its session locks end after the grace period unless attached elsewhere */
    if (s->claimed)
        locks_session_detach(s->session_id, s->conn_id);
    for (size_t i = 0; i < s->nfilter; i++)
        free(s->filter[i]);
    free(s->filter);
    struct ws_msg *m;
    msg_unref(s->cur);
    s->cur = NULL;
    while ((m = q_pop(s)))
        msg_unref(m);
    free(s->q);
    for (size_t i = 0; i < s->nsync; i++)
        msg_unref(s->sync_frames[i]);
    free(s->sync_frames);
    while (s->pending) {
        struct ws_pending *p = s->pending;
        s->pending = p->next;
        free(p->since);
        free(p->id_json);
        free(p);
    }
    lk_buf_free(&s->rx);
    if (s->prev)
        s->prev->next = s->next;
    else if (all.head == s)
        all.head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    all.count--;
    metrics_ws_clients(-1);
}

/* Writes the next fragment of s->cur: its first as TEXT, the others as
 * CONTINUATION, all but the last without FIN. Pings wait for the frame's
 * end (a control frame may legally come between fragments, but not every
 * client reassembles around one). */
static int write_fragment(struct ws_session *s)
{
    struct ws_msg *m = s->cur;
    unsigned char buf[LWS_PRE + FRAGMENT];
    size_t n = m->len - s->cur_sent < FRAGMENT ? m->len - s->cur_sent : FRAGMENT;
    int last = s->cur_sent + n >= m->len;
    int flags = s->cur_sent ? LWS_WRITE_CONTINUATION : LWS_WRITE_TEXT;
    if (!last)
        flags |= LWS_WRITE_NO_FIN;
    msg_copy(m, s->cur_sent, n, buf + LWS_PRE);
    if (lws_write(s->wsi, buf + LWS_PRE, n, (enum lws_write_protocol)flags) < 0)
        return -1;
    s->cur_sent += n;
    if (last) {
        s->cur = NULL;
        msg_unref(m);
    }
    if (s->cur || s->ping_due || (s->qlen && !s->syncing))
        lws_callback_on_writable(s->wsi);
    return 0;
}

int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, struct ws_session *s,
                void *in, size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        /* refuse the upgrade: wrong path, too many connections, bad token */
        char uri[64];
        struct auth_user u;
        if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 ||
            (strcmp(uri, "/ws") && strcmp(uri, "/ws/")))
            return -1;
        if (http_over_limit(wsi)) {
            metrics_refusal(REF_connections);
            return -1;
        }
        if (!origin_allowed(wsi)) { /* a foreign web page: refused with 403 */
            metrics_refusal(REF_forbidden);
            http_refuse_upgrade(wsi, LK_E_FORBIDDEN, "cross-origin WebSocket refused: its Origin is "
                                "neither this broker's own nor listed in --allowed-origins");
            return -1;
        }
        if (auth_active() && ws_authenticate(wsi, &u) != 0) {
            /* a 401, not a bare close: clients tell a bad token (permanent)
             * from a broker that went away (retry) */
            metrics_refusal(REF_unauthorized);
            http_refuse_upgrade(wsi, LK_E_UNAUTHORIZED, "missing or invalid token");
            return -1;
        }
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED: {
        char uri[64];
        struct auth_user user;
        memset(&user, 0, sizeof(user));
        if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 ||
            (strcmp(uri, "/ws") && strcmp(uri, "/ws/")))
            return -1;
        if (auth_active() && ws_authenticate(wsi, &user) != 0)
            return -1;
        memset(s, 0, sizeof(*s));
        s->kind = PSS_WS;
        s->user = user;
        s->wsi = wsi;
        ids_uuid4(s->session_id);
        ids_uuid4(s->conn_id);
        s->last_seen_ms = lk_time_mono_ms();
        lk_buf_init(&s->rx, 0);
        s->next = all.head;
        if (all.head)
            all.head->prev = s;
        all.head = s;
        all.count++;
        metrics_ws_clients(1);
        /* ?since=<event_id>: resume at connect time, replay before anything live */
        char since[64];
        const char *sv = lws_get_urlarg_by_name(wsi, "since=", since, sizeof(since));
        if (sv && sv[0] && strlen(sv) <= 42)
            start_resume(s, sv, NULL);
        else
            start_snapshot(s);
        return 0;
    }
    case LWS_CALLBACK_RECEIVE_PONG:
        if (s->wsi) {
            s->ping_sent_ms = 0;
            s->last_seen_ms = lk_time_mono_ms();
        }
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (!s->wsi)
            return -1;
        s->ping_sent_ms = 0;
        s->last_seen_ms = lk_time_mono_ms();
        if (!s->rx_over && s->rx.len + len > (size_t)cfg.max_ws_message) {
            s->rx_over = 1;
            metrics_refusal(REF_ws_message_too_large);
            lk_buf_free(&s->rx);
        }
        if (s->rx_over) {
            static const char why[] = "message too large";
            lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)why,
                             sizeof(why) - 1);
            return -1;
        }
        lk_buf_append(&s->rx, in, len);
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            if (lws_frame_is_binary(wsi))
                send_error(s, LK_E_INVALID_JSON, "binary frames are not accepted; send text", NULL);
            else
                handle_message(s, lk_buf_data(&s->rx), s->rx.len);
            lk_buf_reset(&s->rx);
        }
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        if (!s->wsi)
            return -1;
        if (s->doomed == 3) /* a write failed: no close frame can go out */
            return -1;
        if (s->doomed) {
            const char *why = s->doomed == 2 ? "no pong" : "client too slow";
            lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, (unsigned char *)why, strlen(why));
            return -1;
        }
        if (s->cur) /* the rest of a fragmented frame first: nothing comes between */
            return write_fragment(s);
        if (s->ping_due) {
            /* with a payload: lws 4.1 reports no RECEIVE_PONG for an empty pong */
            unsigned char ping[LWS_PRE + 4];
            memcpy(ping + LWS_PRE, "dl", 2);
            s->ping_due = 0;
            if (lws_write(wsi, ping + LWS_PRE, 2, LWS_WRITE_PING) < 0)
                return -1;
            if (s->qlen && !s->syncing)
                lws_callback_on_writable(wsi);
            return 0;
        }
        if (s->syncing)
            return 0;
        struct ws_msg *m = q_pop(s);
        if (!m)
            return 0;
        if (m->len > FRAGMENT || m->head) {
            s->cur = m;
            s->cur_sent = 0;
            return write_fragment(s);
        }
        int n = lws_write(wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT);
        msg_unref(m);
        if (n < 0)
            return -1;
        if (s->qlen)
            lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_CLOSED:
        if (s->wsi)
            session_close(s);
        s->wsi = NULL;
        return 0;
    default:
        return 0;
    }
}
