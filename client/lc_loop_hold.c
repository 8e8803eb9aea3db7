/* lc_loop_hold.c - the holds of an lc_loop: renewals over the loop's
 * connection, self-fencing (lockclient.h, "Self-fencing"; the arithmetic
 * is lc_lease.c's), end events and preemption warnings from the stream.
 *
 * A hold with a lease renews it at a third of the lease, counted from the
 * send time of the last confirmed grant or renew, and asks for no timeout
 * (the broker keeps the lease as last set, so a `lockctl renew --timeout`
 * is kept); the lease then comes from the answer's lock ("lease_s"), else
 * the lock's own. Each renew may wait only the time left until the local
 * deadline; a transient failure is retried 100 ms later while time is left;
 * 403/404 or the deadline itself end the hold (on_lost).
 *
 * A lock without expiry has no deadline and no renewals: the event stream
 * confirms it. The loop receives every lock_update, resumes the stream
 * after a reconnect (the broker replays what was missed), and on a resume
 * gap takes the fresh snapshot as the truth. A snapshot (also the one every
 * new connection brings) only counts against a hold when it is at least as
 * new as the last event that showed the hold's lock (seen_id): an older
 * snapshot may simply predate our grant.
 *
 * A session lock (one granted on this loop's session) is also lost when
 * the session's own deadline passes (lc__loop_session_deadline: the last
 * answered request's send time + grace - margin), or when the session
 * cannot be attached again after a reconnect. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lc_loop.h"

#define RETRY_US 100000

static long call_ms(const struct lc_loop *l)
{
    return l->o.timeout_ms > 0 ? l->o.timeout_ms : 5000;
}

static int is_session_hold(const struct lc_loop *l, const struct lc_hold *h)
{
    return h->lock->session_id && l->session_id[0] && !strcmp(h->lock->session_id, l->session_id);
}

/* The hold's effective deadline: the lease's, or the session's, whichever
 * comes first; 0: none. */
static int64_t hold_deadline(const struct lc_loop *l, const struct lc_hold *h)
{
    int64_t d = h->lease_s > 0 ? h->deadline_us : 0;
    if (is_session_hold(l, h)) {
        int64_t s = lc__loop_session_deadline(l);
        if (s && (!d || s < d))
            d = s;
    }
    return d;
}

static void publish(struct lc_loop *l, struct lc_hold *h)
{
    __atomic_store_n(&h->lock->deadline_us, hold_deadline(l, h), __ATOMIC_RELEASE);
    __atomic_store_n(&h->lock->lease_us, (int64_t)(h->lease_s > 0 ? h->lease_s * 1e6 : 0), __ATOMIC_RELEASE);
}

static void hold_unlink(struct lc_hold *h)
{
    struct lc_loop *l = h->loop;
    if (h->prev)
        h->prev->next = h->next;
    else if (l->holds_head == h)
        l->holds_head = h->next;
    if (h->next)
        h->next->prev = h->prev;
    h->prev = h->next = NULL;
    l->nholds--;
}

static void drop_renew(struct lc_hold *h)
{
    if (!h->renew)
        return;
    h->renew->hold = NULL;
    h->renew->cancelled = 1;
    h->renew->deadline_us = 0;
    h->renew = NULL;
}

/* Declares the hold lost and tells its owner, once. The callback may stop
 * any hold: callers start their walk over after it. */
static void hold_lost(struct lc_hold *h, lc_status st, const char *detail)
{
    if (h->lost || h->stopped)
        return;
    h->lost = 1;
    drop_renew(h);
    __atomic_store_n(&h->lock->lost, 1, __ATOMIC_RELEASE);
    lc__log(h->loop->o.log, h->loop->o.log_userdata, 2, "loop: lock on %s lost: %s",
            lc_lock_device(h->lock), detail);
    if (h->cbs.on_lost)
        h->cbs.on_lost(h->lock, st, detail, h->cbs.userdata);
}

/* 1 when the event's lock is the hold's lock (device and fence, or key). */
static int same_lock(const struct lc_hold *h, const char *device, const cJSON *lo)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(lo, "fence");
    const char *key = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(lo, "lock_key"));
    for (size_t i = 0; i < h->lock->n; i++) {
        if (strcmp(h->lock->devices[i], device))
            continue;
        if (cJSON_IsNumber(f) && h->lock->fences[i] >= 0)
            return (int64_t)f->valuedouble == h->lock->fences[i];
        return key && h->lock->key && !strcmp(key, h->lock->key);
    }
    return 0;
}

static void preempt_warning(struct lc_hold *h, const cJSON *grace, const cJSON *by)
{
    if (h->preempt_seen || h->lost)
        return;
    h->preempt_seen = 1;
    double g = cJSON_IsNumber(grace) ? grace->valuedouble : 0;
    __atomic_store_n(&h->lock->preempt_grace_us, (int64_t)(g * 1e6), __ATOMIC_RELEASE);
    if (h->cbs.on_preempt_requested) {
        char *txt = by ? cJSON_PrintUnformatted(by) : NULL;
        h->cbs.on_preempt_requested(h->lock, g, txt ? txt : "{}", h->cbs.userdata);
        cJSON_free(txt);
    }
}

void lc__hold_event(struct lc_loop *l, const cJSON *ev, const char *action, const char *device)
{
    const cJSON *lo = cJSON_GetObjectItemCaseSensitive(ev, "lock");
    const char *eid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "event_id"));
    const char *cause = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "cause"));
    int end = !strcmp(action, "released") || !strcmp(action, "force_released") ||
              !strcmp(action, "expired");
    int seen = !strcmp(action, "acquired") || !strcmp(action, "renewed");
    int preempt = !strcmp(action, "preempt_requested");
    if (!lo || (!end && !seen && !preempt))
        return;
again:
    for (struct lc_hold *h = l->holds_head; h; h = h->next) {
        if (h->lost || h->stopped || !same_lock(h, device, lo))
            continue;
        if (seen && eid) {
            snprintf(h->seen_id, sizeof(h->seen_id), "%s", eid);
        } else if (preempt && !h->preempt_seen) {
            preempt_warning(h, cJSON_GetObjectItemCaseSensitive(ev, "grace_s"),
                            cJSON_GetObjectItemCaseSensitive(ev, "requested_by"));
            goto again;
        } else if (end && !h->releasing) {
            char d[160];
            snprintf(d, sizeof(d), "the broker ended the lock on %s: %s%s%s", device, action,
                     cause ? ", cause " : "", cause ? cause : "");
            hold_lost(h, LC_ERR_LOST, d);
            goto again;
        }
    }
}

void lc__hold_snapshot(struct lc_loop *l, const cJSON *locks, const char *event_id)
{
    if (!event_id)
        return;
again:
    for (struct lc_hold *h = l->holds_head; h; h = h->next) {
        if (h->lost || h->stopped || h->releasing || !h->seen_id[0] ||
            lc__id_newer(h->seen_id, event_id))
            continue;
        int found = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, locks) {
            const char *dev = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "device_name"));
            if (dev && same_lock(h, dev, it)) {
                found = 1;
                break;
            }
        }
        if (!found) {
            char d[200];
            snprintf(d, sizeof(d), "the lock on %s is gone: not in the broker's status at %s",
                     lc_lock_device(h->lock), event_id);
            hold_lost(h, LC_ERR_LOST, d);
            goto again;
        }
        snprintf(h->seen_id, sizeof(h->seen_id), "%s", event_id);
    }
}

static void send_renew(struct lc_loop *l, struct lc_hold *h, int64_t now)
{
    long t = lc__call_timeout_ms(call_ms(l), h->deadline_us, now);
    if (t <= 0)
        return;     /* the deadline check ends it */
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_puts(&b, "\"type\":\"renew\",\"device_name\":");
    lk_buf_json_str(&b, lc_lock_device(h->lock));
    lk_buf_puts(&b, ",\"lock_key\":");
    lk_buf_json_str(&b, h->lock->key);
    lk_buf_puts(&b, ",\"user_id\":");
    lk_buf_json_str(&b, h->lock->user ? h->lock->user
                        : l->o.user_id ? l->o.user_id
                        : getenv("USER") ? getenv("USER") : "unknown");
    lk_buf_putc(&b, '}');
    struct lc_op *op = lc__loop_op_new(l, OP_HOLD_RENEW, &b);
    if (!op) {
        h->renew_at_us = now + RETRY_US;
        return;
    }
    op->hold = h;
    op->deadline_us = now + (int64_t)t * 1000;
    h->renew = op;
    h->renew_at_us = 0;
}

void lc__hold_renew_done(struct lc_op *op, lc_status st, const cJSON *j, const char *detail)
{
    struct lc_hold *h = op->hold;
    if (!h)
        return;
    h->renew = NULL;
    if (h->lost || h->stopped)
        return;
    struct lc_loop *l = h->loop;
    int64_t now = lc__mono_us();
    if (st == LC_OK && j) {
        lc__lock_apply(h->lock, j, op->sent_us, l->o.safety_margin_ms);
        h->lease_s = h->lock->lease_s;
        h->margin_ms = lc__margin_ms(h->lease_s, l->o.safety_margin_ms);
        h->confirmed_sent_us = op->sent_us;
        h->deadline_us = lc__deadline_us(op->sent_us, h->lease_s, h->margin_ms);
        h->renew_at_us = h->lease_s > 0 ? lc__renew_due_us(op->sent_us, h->lease_s) : 0;
        publish(l, h);
        const cJSON *lo = cJSON_GetObjectItemCaseSensitive(j, "lock");
        const cJSON *pre = cJSON_GetObjectItemCaseSensitive(lo, "preempt");
        if (cJSON_IsObject(pre))
            preempt_warning(h, cJSON_GetObjectItemCaseSensitive(pre, "grace_s"),
                            cJSON_GetObjectItemCaseSensitive(pre, "requested_by"));
        return;
    }
    if (st == LC_ERR_FORBIDDEN || st == LC_ERR_NOT_FOUND) {
        hold_lost(h, st, detail && *detail ? detail : lc_strerror(st));
        return;
    }
    lc__log(l->o.log, l->o.log_userdata, 1, "loop: renew of %s failed (%s); retrying",
            lc_lock_device(h->lock), detail && *detail ? detail : lc_strerror(st));
    h->renew_at_us = now + RETRY_US;
}

void lc__hold_timers(struct lc_loop *l, int64_t now)
{
again:
    for (struct lc_hold *h = l->holds_head; h; h = h->next) {
        if (h->lost || h->stopped || h->releasing)
            continue;
        int64_t d = hold_deadline(l, h);
        if (d && now >= d) {
            char msg[200];
            if (h->lease_s > 0 && d == h->deadline_us)
                snprintf(msg, sizeof(msg),
                         "no renew confirmed before the local deadline (lease %g s, margin %ld ms)",
                         h->lease_s, h->margin_ms);
            else
                snprintf(msg, sizeof(msg),
                         "session not confirmed before the local deadline (grace %ld ms)",
                         l->o.session_grace_ms > 0 ? l->o.session_grace_ms : 10000);
            hold_lost(h, LC_ERR_LOST, msg);
            goto again;
        }
        publish(l, h);
        if (h->lease_s > 0 && !h->renew && h->renew_at_us && now >= h->renew_at_us)
            send_renew(l, h, now);
    }
}

int64_t lc__hold_next_us(const struct lc_loop *l)
{
    int64_t t = 0;
    for (const struct lc_hold *h = l->holds_head; h; h = h->next) {
        if (h->lost || h->stopped || h->releasing)
            continue;
        int64_t d = hold_deadline(l, h);
        if (d && (!t || d < t))
            t = d;
        if (h->lease_s > 0 && !h->renew && h->renew_at_us && (!t || h->renew_at_us < t))
            t = h->renew_at_us;
    }
    return t;
}

void lc__hold_session_lost(struct lc_loop *l, const char *why)
{
    char d[200];
    snprintf(d, sizeof(d), "the session could not be attached again: %s", why);
again:
    for (struct lc_hold *h = l->holds_head; h; h = h->next) {
        if (!h->lost && !h->stopped && h->lock->session_id) {
            hold_lost(h, LC_ERR_LOST, d);
            goto again;
        }
    }
}

void lc__hold_all_lost(struct lc_loop *l, lc_status st, const char *why)
{
again:
    for (struct lc_hold *h = l->holds_head; h; h = h->next) {
        if (!h->lost && !h->stopped) {
            hold_lost(h, st, why);
            goto again;
        }
    }
}

void lc__hold_releasing(struct lc_loop *l, const lc_lock *lk)
{
    for (struct lc_hold *h = l->holds_head; h; h = h->next)
        if (h->lock == lk) {
            h->releasing = 1;
            drop_renew(h);
        }
}

void lc__hold_reap(struct lc_loop *l)
{
    while (l->dead_holds) {
        struct lc_hold *h = l->dead_holds;
        l->dead_holds = h->next;
        free(h);
    }
}

void lc__hold_free_all(struct lc_loop *l)
{
    while (l->holds_head) {
        struct lc_hold *h = l->holds_head;
        drop_renew(h);
        hold_unlink(h);
        free(h);
    }
    lc__hold_reap(l);
}

lc_status lc_loop_hold(lc_loop *l, lc_lock *lock, const lc_keepalive_callbacks *cbs, lc_hold **out)
{
    if (out)
        *out = NULL;
    if (!l || !lock || !lock->key || !lock->n || !out)
        return LC_ERR_BAD_REQUEST;
    struct lc_hold *h = calloc(1, sizeof(*h));
    if (!h)
        return LC_ERR_NOMEM;
    h->loop = l;
    h->lock = lock;
    if (cbs)
        h->cbs = *cbs;
    int64_t now = lc__mono_us();
    int64_t lease_us = __atomic_load_n(&lock->lease_us, __ATOMIC_ACQUIRE);
    int64_t expires = lc_lock_expires_us(lock);
    h->lease_s = lease_us > 0 ? (double)lease_us / 1e6 : lock->lease_s;
    if (!expires && !lock->expires_at && !lease_us)
        h->lease_s = 0;      /* no expiry */
    h->margin_ms = lc__margin_ms(h->lease_s, l->o.safety_margin_ms);
    if (h->lease_s > 0) {
        int64_t dl = __atomic_load_n(&lock->deadline_us, __ATOMIC_ACQUIRE);
        if (dl > 0) {
            h->confirmed_sent_us = dl + (int64_t)h->margin_ms * 1000 - (int64_t)(h->lease_s * 1e6);
        } else {
            /* acquired elsewhere without a deadline: estimate the send
             * time from the expiry on the wall clock */
            struct timespec rt;
            clock_gettime(CLOCK_REALTIME, &rt);
            int64_t real = (int64_t)rt.tv_sec * 1000000 + rt.tv_nsec / 1000;
            h->confirmed_sent_us = now + (expires - real) - (int64_t)(h->lease_s * 1e6);
        }
        h->deadline_us = lc__deadline_us(h->confirmed_sent_us, h->lease_s, h->margin_ms);
        h->renew_at_us = lc__renew_due_us(h->confirmed_sent_us, h->lease_s);
    }
    /* the cache shows the lock: the stream has seen it up to last_id */
    for (size_t i = 0; i < l->cache.n; i++) {
        const lc_lock *c = l->cache.items[i];
        if (!strcmp(lc_lock_device(c), lc_lock_device(lock)) && lc_lock_fence(c) == lc_lock_fence(lock) &&
            lc_lock_fence(c) >= 0) {
            snprintf(h->seen_id, sizeof(h->seen_id), "%s", l->last_id);
            break;
        }
    }
    h->next = l->holds_head;
    if (l->holds_head)
        l->holds_head->prev = h;
    l->holds_head = h;
    l->nholds++;
    publish(l, h);
    lc__loop_kick(l);   /* a renewal may be due already */
    *out = h;
    return LC_OK;
}

lc_status lc_hold_stop(lc_hold *h)
{
    if (!h)
        return LC_OK;
    struct lc_loop *l = h->loop;
    lc_status st = h->lost ? LC_ERR_LOST : LC_OK;
    if (h->stopped)
        return st;
    h->stopped = 1;
    drop_renew(h);
    hold_unlink(h);
    if (l->processing) {
        h->next = l->dead_holds;    /* a walk over the holds may still look at it */
        l->dead_holds = h;
    } else {
        free(h);
    }
    return st;
}
