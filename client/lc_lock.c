/* lc_lock.c - lock objects, acquire / release / renew, and the scoped forms
 * (lc_with_lock, the cleanup guard). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lc_internal.h"
#include "lk_time.h"

/* ---- lock objects ---- */

static char *dup_str_field(const cJSON *o, const char *name, int *oom)
{
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name));
    if (!v)
        return NULL;
    char *d = strdup(v);
    if (!d)
        *oom = 1;
    return d;
}

static int64_t num_field(const cJSON *o, const char *name, int64_t dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : dflt;
}

/* Sets the device list of l to names (borrowed) with fence each. */
static int lock_set_devices(lc_lock *l, const char *const *names, size_t n, int64_t fence)
{
    l->devices = calloc(n, sizeof(char *));
    l->fences = calloc(n, sizeof(int64_t));
    if (!l->devices || !l->fences)
        return -1;
    l->n = n;
    for (size_t i = 0; i < n; i++) {
        l->fences[i] = fence;
        if (!(l->devices[i] = strdup(names[i])))
            return -1;
    }
    return 0;
}

lc_lock *lc__lock_from_json(const cJSON *obj)
{
    if (!cJSON_IsObject(obj))
        return NULL;
    const char *dev = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, "device_name"));
    if (!dev)
        return NULL;
    lc_lock *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    int oom = 0;
    if (lock_set_devices(l, &dev, 1, num_field(obj, "fence", -1)))
        oom = 1;
    l->key = dup_str_field(obj, "lock_key", &oom);
    l->expires_at = dup_str_field(obj, "expires_at", &oom);
    l->acquired_at = dup_str_field(obj, "acquired_at", &oom);
    l->user = dup_str_field(obj, "user_id", &oom);
    l->reason = dup_str_field(obj, "reason", &oom);
    l->plan_uid = dup_str_field(obj, "plan_uid", &oom);
    l->type = lc_lock_type_parse(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, "lock_type")));
    l->json = cJSON_PrintUnformatted(obj);
    if (!l->json)
        oom = 1;
    l->session_id = dup_str_field(obj, "session_id", &oom);
    int64_t acq = 0;
    if (l->expires_at && lk_time_parse_us(l->expires_at, &l->expires_us) != 0)
        l->expires_us = 0;
    l->live_expires_us = l->expires_us;
    /* lease_s (brokers since 1.1): the lease as last set, null for none;
     * older brokers: what the grant's own times say */
    const cJSON *lease = cJSON_GetObjectItemCaseSensitive(obj, "lease_s");
    if (cJSON_IsNumber(lease))
        l->lease_s = lease->valuedouble > 0 ? lease->valuedouble : 0;
    else if (!cJSON_IsNull(lease) && l->expires_us && l->acquired_at &&
             lk_time_parse_us(l->acquired_at, &acq) == 0 && l->expires_us > acq)
        l->lease_s = (double)(l->expires_us - acq) / 1e6;
    l->lease_us = (int64_t)(l->lease_s * 1e6);
    if (oom) {
        lc_lock_free(l);
        return NULL;
    }
    return l;
}

lc_lock *lc__lock_dup(const lc_lock *s)
{
    lc_lock *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    int bad = lock_set_devices(l, (const char *const *)s->devices, s->n, 0);
    for (size_t i = 0; !bad && i < s->n; i++)
        l->fences[i] = s->fences[i];
#define DUP(f) do { if (s->f && !(l->f = strdup(s->f))) bad = 1; } while (0)
    DUP(key); DUP(expires_at); DUP(acquired_at); DUP(user); DUP(reason); DUP(plan_uid); DUP(json);
    DUP(session_id);
#undef DUP
    l->expires_us = s->expires_us;
    l->live_expires_us = lc_lock_expires_us(s);
    l->type = s->type;
    l->lease_s = s->lease_s;
    l->lease_us = __atomic_load_n(&s->lease_us, __ATOMIC_ACQUIRE);
    l->deadline_us = lc_lock_deadline_us(s);
    l->lease_sent_us = s->lease_sent_us;
    l->preempt_grace_us = __atomic_load_n(&s->preempt_grace_us, __ATOMIC_ACQUIRE);
    l->lost = lc_lock_lost(s);
    if (bad) {
        lc_lock_free(l);
        return NULL;
    }
    return l;
}

void lc_lock_free(lc_lock *l)
{
    if (!l)
        return;
    for (size_t i = 0; l->devices && i < l->n; i++)
        free(l->devices[i]);
    free(l->devices);
    free(l->fences);
    free(l->key);
    free(l->expires_at);
    free(l->acquired_at);
    free(l->user);
    free(l->reason);
    free(l->plan_uid);
    free(l->json);
    free(l->session_id);
    free(l);
}

const char *lc_lock_device(const lc_lock *l) { return l && l->n ? l->devices[0] : NULL; }
size_t lc_lock_device_count(const lc_lock *l) { return l ? l->n : 0; }
const char *lc_lock_device_at(const lc_lock *l, size_t i) { return l && i < l->n ? l->devices[i] : NULL; }
const char *lc_lock_key(const lc_lock *l) { return l ? l->key : NULL; }
int64_t lc_lock_fence(const lc_lock *l) { return l && l->n ? l->fences[0] : -1; }
int64_t lc_lock_fence_at(const lc_lock *l, size_t i) { return l && i < l->n ? l->fences[i] : -1; }
const char *lc_lock_expires_at(const lc_lock *l) { return l ? l->expires_at : NULL; }
int64_t lc_lock_expires_us(const lc_lock *l)
{
    return l ? __atomic_load_n(&l->live_expires_us, __ATOMIC_ACQUIRE) : 0;
}
int lc_lock_lost(const lc_lock *l) { return l ? __atomic_load_n(&l->lost, __ATOMIC_ACQUIRE) : 0; }
int64_t lc_lock_deadline_us(const lc_lock *l)
{
    return l ? __atomic_load_n(&l->deadline_us, __ATOMIC_ACQUIRE) : 0;
}
double lc_lock_lease_s(const lc_lock *l)
{
    return l ? (double)__atomic_load_n(&l->lease_us, __ATOMIC_ACQUIRE) / 1e6 : 0;
}
double lc_lock_preempt_grace_s(const lc_lock *l)
{
    return l ? (double)__atomic_load_n(&l->preempt_grace_us, __ATOMIC_ACQUIRE) / 1e6 : 0;
}
const char *lc_lock_session_id(const lc_lock *l) { return l ? l->session_id : NULL; }
lc_lock_type lc_lock_type_of(const lc_lock *l) { return l ? l->type : LC_TYPE_DEFAULT; }
const char *lc_lock_user(const lc_lock *l) { return l ? l->user : NULL; }
const char *lc_lock_reason(const lc_lock *l) { return l ? l->reason : NULL; }
const char *lc_lock_plan_uid(const lc_lock *l) { return l ? l->plan_uid : NULL; }
const char *lc_lock_acquired_at(const lc_lock *l) { return l ? l->acquired_at : NULL; }
const char *lc_lock_json(const lc_lock *l) { return l ? l->json : NULL; }

lc_status lc__list_add(struct lc_lock_list *list, lc_lock *l)
{
    lc_lock **n = realloc(list->items, (list->n + 1) * sizeof(*n));
    if (!n)
        return LC_ERR_NOMEM;
    list->items = n;
    list->items[list->n++] = l;
    return LC_OK;
}

size_t lc_lock_list_count(const lc_lock_list *list) { return list ? list->n : 0; }
const lc_lock *lc_lock_list_get(const lc_lock_list *list, size_t i)
{
    return list && i < list->n ? list->items[i] : NULL;
}
void lc_lock_list_free(lc_lock_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->n; i++)
        lc_lock_free(list->items[i]);
    free(list->items);
    free(list);
}

/* ---- acquire / release / renew ---- */

void lc__put_num(struct lk_buf *b, double v)
{
    if (v == (double)(int64_t)v)
        lk_buf_printf(b, "%lld", (long long)v);
    else
        lk_buf_printf(b, "%.3f", v);
}

void lc__put_request(struct lk_buf *b, const lc_request *req, const char *type, const char *user,
                     const char *request_id, const char *client_name)
{
    if (req->device_name) {
        lk_buf_puts(b, "\"device_name\":");
        lk_buf_json_str(b, req->device_name);
    } else {
        lk_buf_puts(b, "\"device_names\":[");
        for (size_t i = 0; i < req->n_devices; i++) {
            if (i)
                lk_buf_putc(b, ',');
            lk_buf_json_str(b, req->device_names[i]);
        }
        lk_buf_putc(b, ']');
    }
    lk_buf_puts(b, ",\"lock_type\":");
    lk_buf_json_str(b, type);
    lk_buf_puts(b, ",\"user_id\":");
    lk_buf_json_str(b, user);
    if (req->timeout_s > 0) {
        lk_buf_puts(b, ",\"timeout\":");
        lc__put_num(b, req->timeout_s);
    } else if (req->timeout_s < 0) {
        lk_buf_puts(b, ",\"timeout\":null");
    }
    if (req->reason) {
        lk_buf_puts(b, ",\"reason\":");
        lk_buf_json_str(b, req->reason);
    }
    if (req->plan_uid) {
        lk_buf_puts(b, ",\"plan_uid\":");
        lk_buf_json_str(b, req->plan_uid);
    }
    if (req->wait_s > 0) {
        lk_buf_puts(b, ",\"wait\":");
        lc__put_num(b, req->wait_s);
    }
    if (request_id) {
        lk_buf_puts(b, ",\"request_id\":");
        lk_buf_json_str(b, request_id);
    }
    if (req->session)
        lk_buf_puts(b, ",\"session\":true");
    if (client_name || req->client_host || req->client_pid) {
        char host[256] = "";
        const char *h = req->client_host;
        if (!h && gethostname(host, sizeof(host) - 1) == 0)
            h = host;
        lk_buf_printf(b, ",\"client\":{\"pid\":%ld", req->client_pid ? req->client_pid : (long)getpid());
        if (h && *h) {
            lk_buf_puts(b, ",\"host\":");
            lk_buf_json_str(b, h);
        }
        if (client_name) {
            lk_buf_puts(b, ",\"name\":");
            lk_buf_json_str(b, client_name);
        }
        lk_buf_putc(b, '}');
    }
}

lc_status lc_acquire(lc_client *c, const lc_request *req, lc_lock **out)
{
    if (out)
        *out = NULL;
    if (!c || !req || !out)
        return LC_ERR_BAD_REQUEST;
    if (!req->device_name && (!req->device_names || req->n_devices == 0)) {
        return lc__fail(c, LC_ERR_BAD_REQUEST, "a request needs device_name or device_names");
    }
    for (size_t i = 0; !req->device_name && i < req->n_devices; i++)
        if (!req->device_names[i]) {
            return lc__fail(c, LC_ERR_BAD_REQUEST, "device_names[%zu] is NULL", i);
        }
    const char *type = lc_lock_type_name(req->type ? req->type : LC_MANUAL_OPERATOR);
    if (!type) {
        return lc__fail(c, LC_ERR_BAD_REQUEST, "unknown lock type %d", (int)req->type);
    }
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_putc(&b, '{');
    lc__put_request(&b, req, type, req->user_id ? req->user_id : c->o.user_id, req->request_id,
                    req->client_name ? req->client_name : c->o.client_name);
    lk_buf_putc(&b, '}');
    if (b.oom) {
        lk_buf_free(&b);
        return LC_ERR_NOMEM;
    }
    cJSON *j = NULL;
    long extra = req->wait_s > 0 ? (long)(req->wait_s * 1000) + 1000 : 0;
    int64_t sent = 0;
    lc_status st = lc__http_ex(c, "POST", "/api/lock/request", lk_buf_data(&b),
                               c->o.timeout_ms + extra, &sent, &j);
    lk_buf_free(&b);
    if (st != LC_OK)
        return st;
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "success"))) {
        const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "message"));
        lc__fail(c, LC_ERR_DENIED, "%s", msg ? msg : "lock denied");
        cJSON_Delete(j);
        return LC_ERR_DENIED;
    }
    lc_lock *l = lc__lock_from_json(cJSON_GetObjectItemCaseSensitive(j, "lock"));
    if (!l) {
        cJSON_Delete(j);
        return lc__fail(c, LC_ERR_PROTOCOL, "the grant has no usable lock object");
    }
    const char *key = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "lock_key"));
    if (!l->key && key && !(l->key = strdup(key)))
        st = LC_ERR_NOMEM;
    const char *sid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "session_id"));
    if (!l->session_id && sid && !(l->session_id = strdup(sid)))
        st = LC_ERR_NOMEM;
    /* a broker before 1.1 sends no lease_s: the lease asked for */
    if (!cJSON_HasObjectItem(cJSON_GetObjectItemCaseSensitive(j, "lock"), "lease_s") && req->timeout_s > 0)
        l->lease_s = req->timeout_s;
    lc__lock_set_lease(c, l, l->lease_s, sent);
    if (st == LC_OK && !req->device_name) {
        /* a group: every device with its own fence */
        const cJSON *fences = cJSON_GetObjectItemCaseSensitive(j, "fences");
        for (size_t i = 0; i < l->n; i++)
            free(l->devices[i]);
        free(l->devices);
        free(l->fences);
        l->devices = NULL;
        l->fences = NULL;
        l->n = 0;
        if (lock_set_devices(l, req->device_names, req->n_devices, -1))
            st = LC_ERR_NOMEM;
        for (size_t i = 0; st == LC_OK && i < l->n; i++)
            l->fences[i] = num_field(fences, l->devices[i], -1);
    }
    cJSON_Delete(j);
    if (st != LC_OK) {
        lc_lock_free(l);
        return st;
    }
    /* The deadline counts from the send time, the only time we know the
     * grant cannot precede. After a long wait in the broker's queue most of
     * the lease may look used up, though the grant is fresh: one renew now
     * gives a send time near the grant (its failure is the keepalive's to
     * judge; the lock is granted either way). */
    if (l->lease_s > 0 && lc__mono_us() >= lc__renew_due_us(sent, l->lease_s))
        if (lc__renew_ex(c, l, 0, 0, NULL) != LC_OK)
            lc__seterr(c, "%s", "");   /* the acquire succeeded: "" as after any success */
    *out = l;
    return LC_OK;
}

void lc__lock_set_lease(const lc_client *c, lc_lock *l, double lease_s, int64_t sent_us)
{
    l->lease_s = lease_s > 0 ? lease_s : 0;
    l->lease_sent_us = sent_us;
    int64_t d = lc__deadline_us(sent_us, l->lease_s, lc__margin_ms(l->lease_s, c->o.safety_margin_ms));
    __atomic_store_n(&l->lease_us, (int64_t)(l->lease_s * 1e6), __ATOMIC_RELEASE);
    __atomic_store_n(&l->deadline_us, d, __ATOMIC_RELEASE);
}

static lc_status holder_call(lc_client *c, const char *path, const char *dev, const char *key,
                             const char *user, double timeout_s, long call_ms, int64_t *sent,
                             cJSON **out)
{
    if (!c || !dev || !key)
        return LC_ERR_BAD_REQUEST;
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_puts(&b, "{\"device_name\":");
    lk_buf_json_str(&b, dev);
    lk_buf_puts(&b, ",\"lock_key\":");
    lk_buf_json_str(&b, key);
    lk_buf_puts(&b, ",\"user_id\":");
    lk_buf_json_str(&b, user ? user : c->o.user_id);
    if (timeout_s > 0) {
        lk_buf_puts(&b, ",\"timeout\":");
        lc__put_num(&b, timeout_s);
    }
    lk_buf_putc(&b, '}');
    if (b.oom) {
        lk_buf_free(&b);
        return LC_ERR_NOMEM;
    }
    lc_status st = lc__http_ex(c, "POST", path, lk_buf_data(&b), call_ms, sent, out);
    lk_buf_free(&b);
    return st;
}

lc_status lc_release_key(lc_client *c, const char *dev, const char *key, const char *user)
{
    cJSON *j = NULL;
    lc_status st = holder_call(c, "/api/lock/release", dev, key, user, 0, 0, NULL, &j);
    cJSON_Delete(j);
    return st;
}

lc_status lc_release(lc_client *c, const lc_lock *l)
{
    if (!l)
        return LC_ERR_BAD_REQUEST;
    return lc_release_key(c, lc_lock_device(l), l->key, l->user);
}

lc_status lc_force_release(lc_client *c, const char *dev, const char *reason)
{
    if (!c || !dev)
        return LC_ERR_BAD_REQUEST;
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_puts(&b, "{\"device_name\":");
    lk_buf_json_str(&b, dev);
    if (reason) {
        lk_buf_puts(&b, ",\"reason\":");
        lk_buf_json_str(&b, reason);
    }
    lk_buf_putc(&b, '}');
    if (b.oom) {
        lk_buf_free(&b);
        return LC_ERR_NOMEM;
    }
    cJSON *j = NULL;
    lc_status st = lc__http(c, "POST", "/api/lock/force_release", lk_buf_data(&b), 0, &j);
    lk_buf_free(&b);
    cJSON_Delete(j);
    return st;
}

/* A confirmed renew sent at sent_us: the new expiry, the lease as the
 * broker now has it (the answer's lock lease_s; without one, the timeout
 * asked for, else unchanged) and the deadline that follows. */
static lc_status apply_renew(lc_client *c, lc_lock *l, const cJSON *j, double timeout_s,
                             int64_t sent_us)
{
    const char *exp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "expires_at"));
    char *e = exp ? strdup(exp) : NULL;
    if (exp && !e)
        return LC_ERR_NOMEM;
    free(l->expires_at);
    l->expires_at = e;
    if (!e || lk_time_parse_us(e, &l->expires_us) != 0)
        l->expires_us = 0;
    __atomic_store_n(&l->live_expires_us, l->expires_us, __ATOMIC_RELEASE);
    const cJSON *lease = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "lock"), "lease_s");
    double lease_s = l->lease_s;
    if (cJSON_IsNumber(lease))
        lease_s = lease->valuedouble;
    else if (cJSON_IsNull(lease) || !l->expires_us)
        lease_s = 0;
    else if (timeout_s > 0)
        lease_s = timeout_s;
    lc__lock_set_lease(c, l, lease_s, sent_us);
    return LC_OK;
}

lc_status lc__renew_ex(lc_client *c, lc_lock *l, double timeout_s, long call_ms, cJSON **answer)
{
    if (answer)
        *answer = NULL;
    if (!c || !l)
        return LC_ERR_BAD_REQUEST;
    cJSON *j = NULL;
    int64_t sent = 0;
    lc_status st = holder_call(c, "/api/lock/renew", lc_lock_device(l), l->key, l->user,
                               timeout_s, call_ms, &sent, &j);
    if (st == LC_OK)
        st = apply_renew(c, l, j, timeout_s, sent);
    if (st == LC_OK && answer)
        *answer = j;
    else
        cJSON_Delete(j);
    return st;
}

lc_status lc_renew(lc_client *c, lc_lock *l, double timeout_s)
{
    return lc__renew_ex(c, l, timeout_s, 0, NULL);
}

lc_status lc_renew_key(lc_client *c, const char *dev, const char *key, const char *user,
                       double timeout_s, lc_lock **out)
{
    if (out)
        *out = NULL;
    cJSON *j = NULL;
    lc_status st = holder_call(c, "/api/lock/renew", dev, key, user, timeout_s, 0, NULL, &j);
    if (st == LC_OK && out) {
        *out = lc__lock_from_json(cJSON_GetObjectItemCaseSensitive(j, "lock"));
        if (!*out)
            st = LC_ERR_PROTOCOL;
    }
    cJSON_Delete(j);
    return st;
}

/* ---- scoped locks ---- */

/* Acquires and starts the keepalive of a scoped lock; on failure nothing is
 * held. Every scoped lock gets a keepalive, also one without expiry (it is
 * then checked with validate every LC_OPT_CHECK_INTERVAL_MS): the body
 * learns of a force-release or a lost lease through lc_lock_lost. */
static lc_status scoped_acquire(lc_client *c, const lc_request *req, lc_lock **lock,
                                lc_keepalive **ka)
{
    *ka = NULL;
    lc_status st = lc_acquire(c, req, lock);
    if (st != LC_OK)
        return st;
    st = lc_keepalive_start(c, *lock, 0, NULL, NULL, ka);
    if (st != LC_OK) {
        (void)lc_release(c, *lock);
        lc_lock_free(*lock);
        *lock = NULL;
        lc__fail(c, st, "cannot start the keepalive: %s", lc_strerror(st));
    }
    return st;
}

/* Stops the keepalive, releases, frees; LC_ERR_LOST if the lock was lost. */
static lc_status scoped_release(lc_client *c, lc_lock *lock, lc_keepalive *ka)
{
    lc_status kst = lc_keepalive_stop(ka);
    lc_status st = lc_release(c, lock);
    /* a 403/404 on release: the lock ended while the scope ran */
    if (kst == LC_ERR_LOST || lc_lock_lost(lock) || st == LC_ERR_FORBIDDEN || st == LC_ERR_NOT_FOUND)
        st = LC_ERR_LOST;
    lc_lock_free(lock);
    return st;
}

lc_status lc_with_lock(lc_client *c, const lc_request *req, lc_locked_fn fn, void *ud)
{
    if (!c || !req || !fn)
        return LC_ERR_BAD_REQUEST;
    lc_lock *l = NULL;
    lc_keepalive *ka = NULL;
    lc_status st = scoped_acquire(c, req, &l, &ka);
    if (st != LC_OK)
        return st;
    fn(c, l, ud);
    return scoped_release(c, l, ka);
}

lc_guard lc_guard_acquire(lc_client *c, const lc_request *req)
{
    lc_guard g = {c, NULL, NULL, LC_ERR_BAD_REQUEST};
    if (c && req)
        g.status = scoped_acquire(c, req, &g.lock, &g.keepalive);
    return g;
}

void lc_guard_release(lc_guard *g)
{
    if (!g || !g->lock)
        return;
    g->status = scoped_release(g->client, g->lock, g->keepalive);
    g->lock = NULL;
    g->keepalive = NULL;
}
