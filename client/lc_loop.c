/* lc_loop.c - the event-loop form of liblockclient (lockclient.h,
 * "event-loop integration"): one WebSocket connection (lc_ws.c) carrying
 * the asynchronous calls, the event stream and the session, driven by the
 * program's own loop through one epoll fd.
 *
 * The fd: an epoll set holding the socket (for the events lc_ws_events()
 * wants; re-armed with EPOLL_CTL_MOD only when they change) and a timerfd
 * armed to the earliest thing due (lc_ws's timers, the reconnect backoff,
 * operation deadlines, the holds' renewals and deadlines, session pings).
 * So the program waits for readability of one fd that never changes, and
 * lc_loop_timeout_ms() is only a hint for loops that prefer a timeout.
 *
 * Operations: each is a queued request; it gets a wire "id" when it is
 * written to a connection. Requests are written at the end of
 * lc_loop_process (never inside the call that starts them), at most
 * LOOP_MAX_ON_WIRE at once, the rest wait in order. When the connection
 * drops, every request whose answer did not come is sent again on the next
 * one: an acquire carries a request_id (made up when the caller gave none),
 * so the broker answers a repeat with the grant it already made - a grant
 * is neither lost nor doubled; a release repeated after its answer was lost
 * may find the lock gone (404), which then counts as done; a renew is
 * harmless to repeat. A cancelled acquire that may have reached the broker
 * is kept until its answer comes, and a grant in it is released at once.
 *
 * Session: the broker ties session locks to the socket. After a reconnect
 * the loop sends attach_session before any session acquire; while session
 * locks may be held, an application ping ({"type":"ping"}) goes every
 * grace/4, so the time of the last request the broker answered on the
 * owning socket is known: the broker cannot end the session earlier than
 * that send time + grace (it counts the grace from the socket's close,
 * which is later). lc_loop_hold.c declares session holds lost before then. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "lc_loop.h"
#include "lk_error.h"
#include "lk_time.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

static void flush_sends(struct lc_loop *l);

/* ---- small helpers ---- */

int lc__id_newer(const char *a, const char *b)
{
    unsigned long long am = 0, as = 0, bm = 0, bs = 0;
    if (!b || !*b)
        return 1;
    if (!a || sscanf(a, "%llu-%llu", &am, &as) < 1 || sscanf(b, "%llu-%llu", &bm, &bs) < 1)
        return 1;
    return am > bm || (am == bm && as > bs);
}

void lc__loop_error(struct lc_loop *l, lc_status st, int permanent, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    lc__log(l->o.log, l->o.log_userdata, permanent ? 3 : 2, "loop: %s", msg);
    if (l->o.error_cb)
        l->o.error_cb(st, permanent, msg, l->o.error_userdata);
}

void lc__loop_set_mutex(struct lc_loop *l, pthread_mutex_t *mu)
{
    l->mu = mu;
}

static long grace_ms(const struct lc_loop *l)
{
    return l->o.session_grace_ms > 0 ? l->o.session_grace_ms : 10000;
}

static long call_ms(const struct lc_loop *l)
{
    return l->o.timeout_ms > 0 ? l->o.timeout_ms : 5000;
}

int64_t lc__loop_session_deadline(const struct lc_loop *l)
{
    if (!l->session_used || !l->sess_confirmed_us)
        return 0;
    double g = (double)grace_ms(l) / 1000.0;
    return lc__deadline_us(l->sess_confirmed_us, g, lc__margin_ms(g, l->o.safety_margin_ms));
}

static const char *user_of(const struct lc_loop *l, const char *given)
{
    if (given)
        return given;
    if (l->o.user_id)
        return l->o.user_id;
    const char *u = getenv("USER");
    return u && *u ? u : "unknown";
}

/* The status of a *_result or error frame, as lc__http maps an HTTP reply:
 * the wire "error" code when there is one, else the HTTP status; 200 with
 * success false is a denial. *detail: the broker's text (borrowed from j). */
static lc_status answer_status(const cJSON *j, const char **detail)
{
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "type"));
    const cJSON *sv = cJSON_GetObjectItemCaseSensitive(j, "status");
    int status = cJSON_IsNumber(sv) ? (int)sv->valuedouble : 200;
    const char *wire = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "error"));
    *detail = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "detail"));
    if (!*detail)
        *detail = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "message"));
    if (!*detail)
        *detail = "";
    if (type && !strcmp(type, "error") && !wire)
        return LC_ERR_PROTOCOL;
    if (status == 200 && !wire) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "success")))
            return LC_OK;
        return LC_ERR_DENIED;
    }
    lc_status st;
    switch (status) {
    case 400: st = LC_ERR_BAD_REQUEST; break;
    case 401: st = LC_ERR_UNAUTHORIZED; break;
    case 403: st = LC_ERR_FORBIDDEN; break;
    case 404: st = LC_ERR_NOT_FOUND; break;
    case 408: st = LC_ERR_REQUEST_TIMEOUT; break;
    case 413: st = LC_ERR_TOO_LARGE; break;
    case 422: st = LC_ERR_VALIDATION; break;
    case 503: st = LC_ERR_UNAVAILABLE; break;
    case 504: st = LC_ERR_TIMEOUT; break;
    default: st = status >= 500 ? LC_ERR_INTERNAL : LC_ERR_PROTOCOL; break;
    }
    if (wire) {
        enum lk_status ls = lk_error_from_wire(wire);
        if (ls != LK_E_INTERNAL || !strcmp(wire, "internal_error"))
            st = (lc_status)ls;
    }
    return st;
}

/* ---- operations ---- */

void lc__loop_kick(struct lc_loop *l)
{
    if (l->processing || l->armed_us == 1)
        return;     /* lc_loop_process sends and re-arms before it returns */
    struct itimerspec its = {{0, 0}, {0, 1}};
    if (timerfd_settime(l->tfd, 0, &its, NULL) == 0)
        l->armed_us = 1;
}

struct lc_op *lc__loop_op_new(struct lc_loop *l, enum op_kind kind, struct lk_buf *msg)
{
    if (l->nops >= LOOP_MAX_OPS || msg->oom) {
        lk_buf_free(msg);
        return NULL;
    }
    struct lc_op *op = calloc(1, sizeof(*op));
    if (!op) {
        lk_buf_free(msg);
        return NULL;
    }
    op->msg = lk_buf_steal(msg, NULL);
    if (!op->msg) {
        free(op);
        return NULL;
    }
    op->loop = l;
    op->kind = kind;
    lc__loop_kick(l);
    op->prev = l->ops_tail;
    if (l->ops_tail)
        l->ops_tail->next = op;
    else
        l->ops_head = op;
    l->ops_tail = op;
    l->nops++;
    return op;
}

static void op_unlink(struct lc_op *op)
{
    struct lc_loop *l = op->loop;
    if (op->prev)
        op->prev->next = op->next;
    else
        l->ops_head = op->next;
    if (op->next)
        op->next->prev = op->prev;
    else
        l->ops_tail = op->prev;
    op->prev = op->next = NULL;
    if (op->wire_id && l->on_wire)
        l->on_wire--;
    op->wire_id = 0;
    l->nops--;
}

static void op_free(struct lc_op *op)
{
    if (!op)
        return;
    if (op->kind == OP_CONFIRM)
        lc_lock_free(op->lock);
    free(op->msg);
    for (size_t i = 0; i < op->ngroup; i++)
        free(op->group[i]);
    free(op->group);
    free(op);
}

/* Runs the op's callback (if any and not cancelled) with st and frees it. */
static void op_finish(struct lc_op *op, lc_status st, lc_lock *lock, const char *detail)
{
    op_unlink(op);
    if (op->kind == OP_HOLD_RENEW) {
        lc__hold_renew_done(op, st, NULL, detail);
    } else if (!op->cancelled) {
        if (op->acb)
            op->acb(st, lock, detail ? detail : "", op->ud);
        else if (op->dcb)
            op->dcb(st, detail ? detail : "", op->ud);
        else
            lc_lock_free(lock);
    } else {
        lc_lock_free(lock);
    }
    op_free(op);
}

/* {"type":"release"|"renew", device, key, user[, timeout]} without the '{'. */
static void holder_msg(struct lk_buf *b, const char *type, const lc_lock *lk, const char *user,
                       double timeout_s)
{
    lk_buf_printf(b, "\"type\":\"%s\",\"device_name\":", type);
    lk_buf_json_str(b, lc_lock_device(lk));
    lk_buf_puts(b, ",\"lock_key\":");
    lk_buf_json_str(b, lk->key);
    lk_buf_puts(b, ",\"user_id\":");
    lk_buf_json_str(b, user);
    if (timeout_s > 0) {
        lk_buf_puts(b, ",\"timeout\":");
        lc__put_num(b, timeout_s);
    }
    lk_buf_putc(b, '}');
}

/* Gives back a grant nobody wants (a cancelled or timed-out acquire). */
static void give_back(struct lc_loop *l, const lc_lock *lk)
{
    struct lk_buf b;
    lk_buf_init(&b, 0);
    holder_msg(&b, "release", lk, lk->user ? lk->user : user_of(l, NULL), 0);
    struct lc_op *op = lc__loop_op_new(l, OP_GIVE_BACK, &b);
    if (!op)
        lc__log(l->o.log, l->o.log_userdata, 3, "loop: cannot queue the release of %s; its lease runs out",
                lc_lock_device(lk));
    else
        lc__log(l->o.log, l->o.log_userdata, 1, "loop: releasing %s (its acquire was cancelled)",
                lc_lock_device(lk));
}

void lc__lock_apply(lc_lock *lk, const cJSON *j, int64_t sent_us, long margin_opt)
{
    const cJSON *lo = cJSON_GetObjectItemCaseSensitive(j, "lock");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(j, "expires_at");
    if (!exp && lo)
        exp = cJSON_GetObjectItemCaseSensitive(lo, "expires_at");
    int64_t e_us = 0;
    if (cJSON_IsString(exp) && lk_time_parse_us(exp->valuestring, &e_us) != 0)
        e_us = 0;
    const cJSON *ls = lo ? cJSON_GetObjectItemCaseSensitive(lo, "lease_s") : NULL;
    double lease = cJSON_IsNumber(ls) ? ls->valuedouble : lk->lease_s;
    if (cJSON_IsNull(exp) || (cJSON_IsNumber(ls) && ls->valuedouble <= 0))
        lease = 0;
    lk->lease_s = lease;
    __atomic_store_n(&lk->live_expires_us, e_us, __ATOMIC_RELEASE);
    __atomic_store_n(&lk->lease_us, (int64_t)(lease * 1e6), __ATOMIC_RELEASE);
    __atomic_store_n(&lk->deadline_us,
                     lease > 0 ? lc__deadline_us(sent_us, lease, lc__margin_ms(lease, margin_opt)) : 0,
                     __ATOMIC_RELEASE);
}

/* The granted lock of an acquire_result, as lc_acquire builds it. */
static lc_status grant_lock(struct lc_loop *l, struct lc_op *op, const cJSON *j, lc_lock **out)
{
    *out = NULL;
    lc_lock *lk = lc__lock_from_json(cJSON_GetObjectItemCaseSensitive(j, "lock"));
    if (!lk)
        return LC_ERR_PROTOCOL;
    const char *key = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "lock_key"));
    lc_status st = LC_OK;
    if (!lk->key && key && !(lk->key = strdup(key)))
        st = LC_ERR_NOMEM;
    if (op->timeout_s > 0)
        lk->lease_s = op->timeout_s;
    if (st == LC_OK && op->group) {
        const cJSON *fences = cJSON_GetObjectItemCaseSensitive(j, "fences");
        char **d = calloc(op->ngroup, sizeof(char *));
        int64_t *f = calloc(op->ngroup, sizeof(int64_t));
        if (!d || !f) {
            free(d);
            free(f);
            st = LC_ERR_NOMEM;
        } else {
            for (size_t i = 0; i < lk->n; i++)
                free(lk->devices[i]);
            free(lk->devices);
            free(lk->fences);
            lk->devices = d;
            lk->fences = f;
            lk->n = op->ngroup;
            for (size_t i = 0; i < op->ngroup; i++) {
                const cJSON *fv = cJSON_GetObjectItemCaseSensitive(fences, op->group[i]);
                f[i] = cJSON_IsNumber(fv) ? (int64_t)fv->valuedouble : -1;
                if (!(d[i] = strdup(op->group[i])))
                    st = LC_ERR_NOMEM;
            }
        }
    }
    const char *sid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "session_id"));
    if (st == LC_OK && op->session && sid) {
        if (!lk->session_id && !(lk->session_id = strdup(sid)))
            st = LC_ERR_NOMEM;
        if (strcmp(l->session_id, sid)) {
            snprintf(l->session_id, sizeof(l->session_id), "%s", sid);
            l->sess_confirmed_us = 0;
        }
        l->session_used = 1;
        if (op->sent_us > l->sess_confirmed_us)
            l->sess_confirmed_us = op->sent_us;
        if (!l->ping_at_us)
            l->ping_at_us = lc__mono_us() + grace_ms(l) * 250;
    }
    if (st != LC_OK) {
        lc_lock_free(lk);
        return st;
    }
    lc__lock_apply(lk, j, op->sent_us, l->o.safety_margin_ms);
    *out = lk;
    return LC_OK;
}

static void acquire_done(struct lc_loop *l, struct lc_op *op, const cJSON *j)
{
    const char *detail = "";
    lc_status st = answer_status(j, &detail);
    lc_lock *lk = NULL;
    if (st == LC_OK)
        st = grant_lock(l, op, j, &lk);
    if (st == LC_OK && op->cancelled) {
        give_back(l, lk);
        lc_lock_free(lk);
        lk = NULL;
    }
    int64_t now = lc__mono_us();
    int64_t dl = lk ? __atomic_load_n(&lk->deadline_us, __ATOMIC_ACQUIRE) : 0;
    if (lk && lk->key && lk->lease_s > 0 && dl && dl - now < (int64_t)(lk->lease_s * 1e6 * 2 / 3)) {
        /* Granted after a wait: the lease began when the broker granted
         * it, which we cannot see, so the send time puts the deadline far
         * too early (maybe past). One renew right away gives a deadline
         * from its own send time; the callback runs with its answer. The
         * op stays the same object (the caller may still cancel it). */
        struct lk_buf b;
        lk_buf_init(&b, 0);
        holder_msg(&b, "renew", lk, lk->user ? lk->user : user_of(l, NULL), 0);
        char *m = b.oom ? NULL : lk_buf_steal(&b, NULL);
        lk_buf_free(&b);
        if (m) {
            free(op->msg);
            op->msg = m;
            if (op->wire_id && l->on_wire)
                l->on_wire--;
            op->wire_id = 0;
            op->sent_before = 0;
            op->kind = OP_CONFIRM;
            op->lock = lk;
            op->deadline_us = now + call_ms(l) * 1000;
            return;
        }
    }
    op_finish(op, st, lk, st == LC_OK ? "" : detail);
}

/* The answer to the renew of a grant after a wait (OP_CONFIRM). */
static void confirm_done(struct lc_loop *l, struct lc_op *op, lc_status st, const cJSON *j,
                         const char *detail)
{
    lc_lock *lk = op->lock;
    op->lock = NULL;
    op_unlink(op);
    if (st == LC_OK && j) {
        lc__lock_apply(lk, j, op->sent_us, l->o.safety_margin_ms);
    } else if (st == LC_ERR_FORBIDDEN || st == LC_ERR_NOT_FOUND) {
        /* granted, and gone again before the first renew */
        lc_lock_free(lk);
        lk = NULL;
        st = LC_ERR_LOST;
    } else {
        st = LC_OK;     /* no answer: the grant stands, with the early deadline */
    }
    if (op->acb && !op->cancelled)
        op->acb(st, lk, st == LC_OK ? "" : detail, op->ud);
    else
        lc_lock_free(lk);
    op_free(op);
}

static void holder_done(struct lc_loop *l, struct lc_op *op, const cJSON *j)
{
    (void)l;
    const char *detail = "";
    lc_status st = answer_status(j, &detail);
    if (op->kind == OP_HOLD_RENEW) {
        op_unlink(op);
        lc__hold_renew_done(op, st, j, detail);
        op_free(op);
        return;
    }
    if (op->kind == OP_CONFIRM) {
        confirm_done(l, op, st, j, detail);
        return;
    }
    if ((op->kind == OP_RELEASE || op->kind == OP_GIVE_BACK) && st == LC_ERR_NOT_FOUND && op->sent_before)
        st = LC_OK;     /* the first try ended it; its answer was lost with the connection */
    if (op->kind == OP_GIVE_BACK && st != LC_OK)
        lc__log(l->o.log, l->o.log_userdata, 2, "loop: giving back a cancelled grant: %s", detail);
    if (op->kind == OP_RENEW && st == LC_OK && op->lock && !op->cancelled) {
        const char *exp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "expires_at"));
        char *e = exp ? strdup(exp) : NULL;
        if (!exp || e) {
            free(op->lock->expires_at);
            op->lock->expires_at = e;
            if (!e || lk_time_parse_us(e, &op->lock->expires_us) != 0)
                op->lock->expires_us = 0;
        }
        if (op->timeout_s > 0)
            op->lock->lease_s = op->timeout_s;  /* unless the answer says otherwise */
        lc__lock_apply(op->lock, j, op->sent_us, l->o.safety_margin_ms);
    }
    op_finish(op, st, NULL, st == LC_OK ? "" : detail);
}

static struct lc_op *op_by_wire(struct lc_loop *l, long long id)
{
    for (struct lc_op *op = l->ops_head; op; op = op->next)
        if (op->wire_id == id)
            return op;
    return NULL;
}

/* An answer on the socket that owns the session confirms it up to the
 * request's send time. */
static void confirm_session(struct lc_loop *l, int64_t sent_us)
{
    if (l->session_used && !l->attaching && sent_us > l->sess_confirmed_us)
        l->sess_confirmed_us = sent_us;
}

/* ---- public: operations ---- */

static void random_id(char *buf, size_t len)
{
    unsigned char r[16];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        for (size_t i = 0; i < sizeof(r); i++)
            r[i] = (unsigned char)((t.tv_nsec >> (i % 4 * 8)) ^ (uintptr_t)buf ^ rand());
    }
    size_t k = 0;
    k += (size_t)snprintf(buf + k, len - k, "lcl-");
    for (size_t i = 0; i < sizeof(r) && k + 2 < len; i++)
        k += (size_t)snprintf(buf + k, len - k, "%02x", r[i]);
}

lc_status lc_acquire_async(lc_loop *l, const lc_request *req, lc_acquire_fn cb, void *ud, lc_op **out)
{
    if (out)
        *out = NULL;
    if (!l || !req || (!req->device_name && (!req->device_names || !req->n_devices)))
        return LC_ERR_BAD_REQUEST;
    for (size_t i = 0; !req->device_name && i < req->n_devices; i++)
        if (!req->device_names[i])
            return LC_ERR_BAD_REQUEST;
    const char *type = lc_lock_type_name(req->type ? req->type : LC_MANUAL_OPERATOR);
    if (!type)
        return LC_ERR_BAD_REQUEST;
    if (l->stopped)
        return l->stopped;
    char rid[48];
    if (!req->request_id)
        random_id(rid, sizeof(rid));
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_puts(&b, "\"type\":\"acquire\",");
    lc__put_request(&b, req, type, user_of(l, req->user_id), req->request_id ? req->request_id : rid,
                    req->client_name ? req->client_name : l->o.client_name);
    lk_buf_putc(&b, '}');
    if (b.oom) {
        lk_buf_free(&b);
        return LC_ERR_NOMEM;
    }
    if (l->nops >= LOOP_MAX_OPS) {
        lk_buf_free(&b);
        return LC_ERR_TOO_MANY;
    }
    struct lc_op *op = lc__loop_op_new(l, OP_ACQUIRE, &b);
    if (!op)
        return LC_ERR_NOMEM;
    op->acb = cb;
    op->ud = ud;
    op->session = req->session;
    op->timeout_s = req->timeout_s;
    op->deadline_us = lc__mono_us() + call_ms(l) * 1000 +
                      (req->wait_s > 0 ? (int64_t)(req->wait_s * 1e6) : 0);
    if (!req->device_name) {
        op->group = calloc(req->n_devices, sizeof(char *));
        int bad = !op->group;
        for (size_t i = 0; !bad && i < req->n_devices; i++) {
            op->ngroup = i + 1;
            bad = !(op->group[i] = strdup(req->device_names[i]));
        }
        if (bad) {
            op_unlink(op);
            op_free(op);
            return LC_ERR_NOMEM;
        }
    }
    if (out)
        *out = op;
    return LC_OK;
}

static lc_status holder_async(lc_loop *l, enum op_kind kind, lc_lock *lk, double timeout_s,
                              lc_done_fn cb, void *ud, lc_op **out)
{
    if (out)
        *out = NULL;
    if (!l || !lk || !lk->key || !lc_lock_device(lk))
        return LC_ERR_BAD_REQUEST;
    if (l->stopped)
        return l->stopped;
    if (l->nops >= LOOP_MAX_OPS)
        return LC_ERR_TOO_MANY;
    struct lk_buf b;
    lk_buf_init(&b, 0);
    holder_msg(&b, kind == OP_RELEASE ? "release" : "renew", lk, user_of(l, lk->user), timeout_s);
    struct lc_op *op = lc__loop_op_new(l, kind, &b);
    if (!op)
        return LC_ERR_NOMEM;
    op->dcb = cb;
    op->ud = ud;
    op->lock = lk;
    op->timeout_s = timeout_s;
    if (kind == OP_RELEASE)
        lc__hold_releasing(l, lk);
    op->deadline_us = lc__mono_us() + call_ms(l) * 1000;
    if (out)
        *out = op;
    return LC_OK;
}

lc_status lc_release_async(lc_loop *l, const lc_lock *lk, lc_done_fn cb, void *ud, lc_op **out)
{
    return holder_async(l, OP_RELEASE, (lc_lock *)lk, 0, cb, ud, out);
}

lc_status lc_renew_async(lc_loop *l, lc_lock *lk, double timeout_s, lc_done_fn cb, void *ud, lc_op **out)
{
    return holder_async(l, OP_RENEW, lk, timeout_s, cb, ud, out);
}

void lc_op_cancel(lc_op *op)
{
    if (!op || op->cancelled)
        return;
    op->cancelled = 1;
    op->acb = NULL;
    op->dcb = NULL;
    if (op->kind != OP_CONFIRM)
        op->lock = NULL;
    /* A request that never left can simply go. An acquire that may have
     * reached the broker stays until its answer (a grant is given back);
     * it no longer waits in the broker's queue once its connection goes,
     * and the broker has no message to leave a queue otherwise. */
    if (op->kind == OP_CONFIRM) {
        lc_lock *lk = op->lock;     /* a grant that is no longer wanted */
        op->lock = NULL;
        give_back(op->loop, lk);
        lc_lock_free(lk);
        op_unlink(op);
        op_free(op);
    } else if (!op->wire_id && !op->sent_before) {
        op_unlink(op);
        op_free(op);
    } else if (op->kind != OP_ACQUIRE) {
        op->deadline_us = 0;    /* its answer is of no interest; it goes when it comes */
    }
}

/* ---- the connection ---- */

static void ws_on_open(void *ud)
{
    struct lc_loop *l = ud;
    l->ws_open = 1;
    l->backoff_ms = BACKOFF_MIN_MS;
    lc__log(l->o.log, l->o.log_userdata, 1, "loop: connected");
    if (l->session_used && l->session_id[0]) {
        struct lk_buf b;
        lk_buf_init(&b, 0);
        l->attach_wire_id = ++l->next_wire_id;
        lk_buf_printf(&b, "{\"type\":\"attach_session\",\"id\":%lld,\"session_id\":", l->attach_wire_id);
        lk_buf_json_str(&b, l->session_id);
        lk_buf_putc(&b, '}');
        l->attaching = 1;
        l->ping_sent_us = lc__mono_us();    /* the attach's send time */
        lc__loop_send_raw(l, lk_buf_data(&b));
        lk_buf_free(&b);
    }
    lc__stream_open(l);
}

static void on_answer(struct lc_loop *l, cJSON *j, const char *type)
{
    const cJSON *idv = cJSON_GetObjectItemCaseSensitive(j, "id");
    long long id = cJSON_IsNumber(idv) ? (long long)idv->valuedouble : 0;
    if (!strcmp(type, "pong")) {
        if (id && id == l->ping_wire_id) {
            confirm_session(l, l->ping_sent_us);
            l->ping_wire_id = 0;
        }
        return;
    }
    if (!strcmp(type, "attach_session_result")) {
        if (id && id == l->attach_wire_id) {
            l->attaching = 0;
            l->attach_wire_id = 0;
            l->sess_confirmed_us = l->ping_sent_us;
            lc__log(l->o.log, l->o.log_userdata, 1, "loop: session %s attached", l->session_id);
            if (l->synced)
                lc__stream_synced(l);
        }
        return;
    }
    if (!strcmp(type, "error") && id && id == l->attach_wire_id) {
        const char *d = "";
        lc_status st = answer_status(j, &d);
        l->attaching = 0;
        l->attach_wire_id = 0;
        l->session_used = 0;
        l->session_id[0] = '\0';
        l->sess_confirmed_us = 0;
        l->ping_at_us = 0;
        lc__loop_error(l, st, 0, "the session could not be attached again: %s", d);
        lc__hold_session_lost(l, d);
        if (l->synced)
            lc__stream_synced(l);
        return;
    }
    if (!strcmp(type, "error") && id && id == l->resume_wire_id) {
        lc__stream_message(l, cJSON_Duplicate(j, 1), type);
        return;
    }
    struct lc_op *op = id ? op_by_wire(l, id) : NULL;
    if (!op)
        return;     /* an answer on an earlier connection's id, or to a cancelled request */
    confirm_session(l, op->sent_us);
    if (op->kind == OP_ACQUIRE)
        acquire_done(l, op, j);
    else
        holder_done(l, op, j);
}

static void ws_on_text(const char *data, size_t len, void *ud)
{
    struct lc_loop *l = ud;
    if (l->stopped)
        return;
    lc__log(l->o.log, l->o.log_userdata, 0, "loop: < %.*s%s", len > 200 ? 200 : (int)len, data,
            len > 200 ? "..." : "");
    cJSON *j = cJSON_ParseWithLength(data, len);
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "type"));
    if (!type) {
        lc__log(l->o.log, l->o.log_userdata, 2, "loop: unreadable message from the broker");
        cJSON_Delete(j);
        return;
    }
    if (!strcmp(type, "lock_update") || !strcmp(type, "initial_status") ||
        !strcmp(type, "resume_result") ||
        (!strcmp(type, "error") && !cJSON_GetObjectItemCaseSensitive(j, "id"))) {
        lc__stream_message(l, j, type);
        return;
    }
    on_answer(l, j, type);
    cJSON_Delete(j);
}

static void stop_loop(struct lc_loop *l, lc_status st, const char *why)
{
    if (l->stopped)
        return;
    l->stopped = st;
    snprintf(l->stop_why, sizeof(l->stop_why), "%s", why);
    for (struct lc_op *op = l->ops_head; op; op = l->ops_head) {
        if (op->kind == OP_HOLD_RENEW) {
            op_unlink(op);
            if (op->hold)
                op->hold->renew = NULL;
            op_free(op);
            continue;
        }
        op_finish(op, st, NULL, why);
    }
    lc__hold_all_lost(l, st, why);
}

static void ws_on_close(lc_status st, int permanent, const char *why, void *ud)
{
    struct lc_loop *l = ud;
    int was_open = l->ws_open;
    l->ws_open = 0;
    l->ws_closed = 1;
    if (st != LC_OK || !was_open)
        lc__loop_error(l, st != LC_OK ? st : LC_ERR_UNAVAILABLE, permanent, "%s", why ? why : "connection closed");
    else
        lc__log(l->o.log, l->o.log_userdata, 1, "loop: connection closed (%s)", why ? why : "");
    for (struct lc_op *op = l->ops_head; op; op = op->next) {
        if (op->wire_id) {
            op->wire_id = 0;
            op->sent_before = 1;
        }
    }
    l->on_wire = 0;
    l->attaching = 0;
    l->attach_wire_id = 0;
    l->ping_wire_id = 0;
    lc__stream_closed(l);
    if (permanent) {
        stop_loop(l, st, why ? why : lc_strerror(st));
        return;
    }
    int ms = l->backoff_ms;
    int jitter = ms / 4 ? (int)(rand_r(&l->seed) % (unsigned)(ms / 2)) - ms / 4 : 0;
    l->backoff_ms = ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms * 2;
    l->reconnect_at_us = lc__mono_us() + (int64_t)(ms + jitter) * 1000;
}

static void ws_release(struct lc_loop *l)
{
    if (l->ws_fd >= 0)
        (void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, l->ws_fd, NULL);
    l->ws_fd = -1;
    l->ws_events = 0;
    lc_ws_free(l->ws);
    l->ws = NULL;
    l->ws_closed = 0;
}

static void connect_now(struct lc_loop *l)
{
    static const struct lc_ws_handler h0 = {ws_on_open, ws_on_text, ws_on_close, NULL};
    struct lc_ws_handler h = h0;
    h.ud = l;
    struct lc_ws_cfg cfg = {0};
    cfg.url = l->o.url ? l->o.url : "http://localhost:60620";
    cfg.path = "/ws";
    cfg.opts = &l->o;
    char why[256] = "";
    l->reconnect_at_us = 0;
    lc_status st = lc_ws_open(&cfg, &h, &l->ws, why, sizeof(why));
    if (st == LC_OK)
        return;
    l->ws = NULL;
    int permanent = st == LC_ERR_TLS || st == LC_ERR_BAD_REQUEST;
    lc__loop_error(l, st, permanent, "%s", why[0] ? why : lc_strerror(st));
    if (permanent) {
        stop_loop(l, st, why[0] ? why : lc_strerror(st));
        return;
    }
    int ms = l->backoff_ms;
    int jitter = ms / 4 ? (int)(rand_r(&l->seed) % (unsigned)(ms / 2)) - ms / 4 : 0;
    l->backoff_ms = ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms * 2;
    l->reconnect_at_us = lc__mono_us() + (int64_t)(ms + jitter) * 1000;
}

void lc__loop_send_raw(struct lc_loop *l, const char *text)
{
    if (!l->ws || !l->ws_open)
        return;
    lc_status st = lc_ws_send_text(l->ws, text, strlen(text));
    if (st != LC_OK)
        lc__log(l->o.log, l->o.log_userdata, 3, "loop: cannot send: %s", lc_strerror(st));
}

/* Writes the requests that wait, in order. */
static void flush_sends(struct lc_loop *l)
{
    if (!l->ws || !l->ws_open || l->stopped)
        return;
    struct lk_buf b;
    lk_buf_init(&b, 0);
    for (struct lc_op *op = l->ops_head, *next; op && l->on_wire < LOOP_MAX_ON_WIRE; op = next) {
        next = op->next;
        if (op->wire_id)
            continue;
        if (op->cancelled && op->kind != OP_ACQUIRE) {
            /* a dropped renewal or a cancelled release: not worth sending (again) */
            op_unlink(op);
            op_free(op);
            continue;
        }
        if (op->session && l->attaching)
            continue;   /* the broker refuses a session acquire while an attach runs */
        lk_buf_reset(&b);
        op->wire_id = ++l->next_wire_id;
        lk_buf_printf(&b, "{\"id\":%lld,%s", op->wire_id, op->msg);
        if (b.oom || lc_ws_send_text(l->ws, lk_buf_data(&b), b.len) != LC_OK) {
            op->wire_id = 0;
            break;
        }
        op->sent_us = lc__mono_us();
        l->on_wire++;
        lc__log(l->o.log, l->o.log_userdata, 0, "loop: > %.200s", lk_buf_data(&b));
    }
    lk_buf_free(&b);
    if (l->session_used && !l->attaching && !l->ping_wire_id && l->ping_at_us &&
        lc__mono_us() >= l->ping_at_us) {
        char m[64];
        l->ping_wire_id = ++l->next_wire_id;
        snprintf(m, sizeof(m), "{\"type\":\"ping\",\"id\":%lld}", l->ping_wire_id);
        l->ping_sent_us = lc__mono_us();
        l->ping_at_us = l->ping_sent_us + grace_ms(l) * 250;
        lc__loop_send_raw(l, m);
    }
}

/* ---- timers ---- */

static int64_t earliest(const struct lc_loop *l)
{
    int64_t t = 0;
#define AT(v) do { int64_t v_ = (v); if (v_ > 0 && (!t || v_ < t)) t = v_; } while (0)
    if (l->stopped)
        return 0;
    if (l->ws)
        AT(lc_ws_timer_us(l->ws));
    else
        AT(l->reconnect_at_us ? l->reconnect_at_us : 1);
    for (const struct lc_op *op = l->ops_head; op; op = op->next)
        AT(op->deadline_us);
    AT(lc__hold_next_us(l));
    if (l->session_used && l->ws_open && !l->ping_wire_id)
        AT(l->ping_at_us);
#undef AT
    return t;
}

static void arm_timer(struct lc_loop *l)
{
    int64_t t = earliest(l);
    if (t == l->armed_us)
        return;
    struct itimerspec its = {{0, 0}, {0, 0}};
    if (t > 0) {
        its.it_value.tv_sec = t / 1000000;
        its.it_value.tv_nsec = (t % 1000000) * 1000;
    }
    if (timerfd_settime(l->tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
        l->armed_us = t;
}

static void arm_socket(struct lc_loop *l)
{
    int fd = l->ws ? lc_ws_fd(l->ws) : -1;
    short ev = l->ws ? lc_ws_events(l->ws) : 0;
    if (fd != l->ws_fd) {
        if (l->ws_fd >= 0)
            (void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, l->ws_fd, NULL);
        l->ws_fd = -1;
        l->ws_events = 0;
        if (fd < 0)
            return;
        struct epoll_event e = {0};
        e.events = (ev & POLLIN ? EPOLLIN : 0) | (ev & POLLOUT ? EPOLLOUT : 0);
        e.data.fd = fd;
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &e) == 0) {
            l->ws_fd = fd;
            l->ws_events = ev;
        }
        return;
    }
    /* while connecting, lc_ws may close the socket and open the next one,
     * which can get the same number: re-arm then every time */
    if (fd >= 0 && (ev != l->ws_events || !l->ws_open)) {
        struct epoll_event e = {0};
        e.events = (ev & POLLIN ? EPOLLIN : 0) | (ev & POLLOUT ? EPOLLOUT : 0);
        e.data.fd = fd;
        /* the same number may be a new socket (the old one closed while
         * connecting): epoll dropped the old one, so add it again */
        if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &e) == 0 ||
            (errno == ENOENT && epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &e) == 0))
            l->ws_events = ev;
    }
}

static void op_timers(struct lc_loop *l, int64_t now)
{
    for (struct lc_op *op = l->ops_head, *next; op; op = next) {
        next = op->next;
        if (!op->deadline_us || now < op->deadline_us)
            continue;
        if (op->kind == OP_HOLD_RENEW) {
            op_unlink(op);
            lc__hold_renew_done(op, LC_ERR_TIMEOUT, NULL, "no answer to the renew in time");
            op_free(op);
            next = l->ops_head;     /* the hold may have queued or ended ops */
            continue;
        }
        if (op->kind == OP_CONFIRM) {
            confirm_done(l, op, LC_ERR_TIMEOUT, NULL, "no answer in time");
            next = l->ops_head;
            continue;
        }
        if (op->kind == OP_ACQUIRE && (op->wire_id || op->sent_before)) {
            /* the grant may still come: keep the request to give it back */
            lc_acquire_fn cb = op->acb;
            void *ud = op->ud;
            int was_cancelled = op->cancelled;
            op->cancelled = 1;
            op->acb = NULL;
            op->deadline_us = 0;
            if (cb && !was_cancelled)
                cb(LC_ERR_TIMEOUT, NULL, "no answer in time", ud);
            next = l->ops_head;
            continue;
        }
        op_finish(op, LC_ERR_TIMEOUT, NULL,
                  l->ws_open ? "no answer in time" : "not connected to the broker in time");
        next = l->ops_head;
    }
}

/* ---- public: the loop ---- */

lc_status lc_loop_new(const lc_opts *opts, lc_loop **out)
{
    if (!out)
        return LC_ERR_BAD_REQUEST;
    *out = NULL;
    if (opts && opts->url && strncmp(opts->url, "http://", 7) && strncmp(opts->url, "https://", 8))
        return LC_ERR_BAD_REQUEST;
    struct lc_loop *l = calloc(1, sizeof(*l));
    if (!l)
        return LC_ERR_NOMEM;
    l->epfd = l->tfd = l->ws_fd = -1;
    if (lc__opts_copy(&l->o, opts) != 0) {
        free(l);
        return LC_ERR_NOMEM;
    }
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->tfd = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event e = {0};
    e.events = EPOLLIN;
    e.data.fd = l->tfd;
    if (l->epfd < 0 || l->tfd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->tfd, &e) != 0) {
        lc_loop_free(l);
        return LC_ERR_INTERNAL;
    }
    l->backoff_ms = BACKOFF_MIN_MS;
    l->seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)l ^ (unsigned)getpid();
    lc__loop_kick(l);   /* the first process connects: the fd is readable at once */
    *out = l;
    return LC_OK;
}

void lc_loop_free(lc_loop *l)
{
    if (!l)
        return;
    if (!l->stopped) {
        l->stopped = LC_ERR_CANCELLED;
        for (struct lc_op *op = l->ops_head; op; op = l->ops_head) {
            if (op->kind == OP_HOLD_RENEW) {
                op_unlink(op);
                if (op->hold)
                    op->hold->renew = NULL;
                op_free(op);
                continue;
            }
            op_finish(op, LC_ERR_CANCELLED, NULL, "the loop was freed");
        }
    }
    while (l->ops_head) {
        struct lc_op *op = l->ops_head;
        op_unlink(op);
        op_free(op);
    }
    lc__hold_free_all(l);
    if (l->ws)
        ws_release(l);
    lc__stream_free(l);
    if (l->tfd >= 0)
        close(l->tfd);
    if (l->epfd >= 0)
        close(l->epfd);
    lc__opts_clear(&l->o);
    free(l);
}

int lc_loop_fd(const lc_loop *l)
{
    return l ? l->epfd : -1;
}

long lc_loop_timeout_ms(const lc_loop *l)
{
    if (!l)
        return -1;
    if (l->armed_us == 1)
        return 0;   /* kicked: work waits */
    int64_t t = earliest(l);
    if (!t)
        return -1;
    int64_t left = t - lc__mono_us();
    return left <= 0 ? 0 : (long)((left + 999) / 1000);
}

lc_status lc_loop_process(lc_loop *l)
{
    if (!l)
        return LC_ERR_BAD_REQUEST;
    if (l->stopped)
        return l->stopped;
    l->processing = 1;
    uint64_t ticks;
    while (read(l->tfd, &ticks, sizeof(ticks)) > 0) {
    }
    l->armed_us = -1;   /* re-armed below in any case */
    short revents = 0;
    struct epoll_event evs[4];
    int n = epoll_wait(l->epfd, evs, 4, 0);
    for (int i = 0; i < n; i++) {
        if (evs[i].data.fd != l->ws_fd)
            continue;
        uint32_t e = evs[i].events;
        revents |= (short)((e & EPOLLIN ? POLLIN : 0) | (e & EPOLLOUT ? POLLOUT : 0) |
                           (e & EPOLLERR ? POLLERR : 0) | (e & EPOLLHUP ? POLLHUP : 0));
    }
    int64_t now = lc__mono_us();
    if (!l->ws && now >= l->reconnect_at_us)
        connect_now(l);
    else if (l->ws)
        lc_ws_process(l->ws, revents);
    if (l->ws && l->ws_closed)
        ws_release(l);
    if (!l->stopped) {
        now = lc__mono_us();
        op_timers(l, now);
        lc__hold_timers(l, now);
    }
    flush_sends(l);
    if (l->ws && !l->ws_closed)
        lc_ws_process(l->ws, 0);    /* writes what was queued now */
    if (l->ws && l->ws_closed)
        ws_release(l);
    l->processing = 0;
    lc__hold_reap(l);
    arm_socket(l);
    arm_timer(l);
    return l->stopped;
}

int lc_loop_connected(const lc_loop *l)
{
    return l && l->ws_open && l->synced && !l->attaching;
}

const char *lc_loop_session_id(const lc_loop *l)
{
    return l && l->session_id[0] ? l->session_id : NULL;
}
