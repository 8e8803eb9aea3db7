/* lc_keepalive.c - background renewal and self-fencing of one lock (or
 * group); lockclient.h, "Self-fencing".
 *
 * Each keepalive has its own thread, its own HTTP connection (a private
 * clone of the caller's client, so a long call on the caller's client, e.g.
 * an acquire that waits, never delays a renewal) and its own copy of the
 * lock, which is the only object it renews. What the owner can see goes
 * through atomics of the owner's lock: expiry, lease, deadline, preemption
 * grace and the lost flag.
 *
 * A lock with a lease has a local deadline (lc_lock_deadline_us): the
 * send time (boot-time clock) of the last confirmed grant or renew, plus the lease,
 * minus the margin. The broker cannot end the lease before send time +
 * lease, so declaring the lock lost at the deadline - when no renew was
 * confirmed in time - always comes before anyone else can get it. The
 * thread therefore:
 *   - sleeps until the next renew (a third of the lease after the last
 *     send) or the deadline, whichever is first;
 *   - sends each renew with a timeout cut to the time left, connect
 *     included (CURLOPT_TIMEOUT_MS), so a stalled broker cannot hold the
 *     thread past the deadline;
 *   - retries transient failures (unreachable, 503, timeouts) quickly while
 *     time is left;
 *   - renews WITHOUT a timeout: the broker then keeps the lease as last set
 *     (a manual `lockctl renew --timeout 600` is followed, not undone) and
 *     says which in the answer's lease_s, from which the next deadline is
 *     computed.
 * A lock without expiry has no deadline: POST /api/lock/validate every
 * check interval tells whether its fence is still the holder's.
 * Renew and validate answers carry the lock's preemption window, if one is
 * open: the preempt callback runs once per window. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lc_internal.h"
#include "lk_buf.h"

struct lc_keepalive {
    lc_client *client;      /* private clone */
    lc_lock *mine;          /* private copy, renewed */
    lc_lock *owner;         /* the caller's lock: only its atomics are written */
    long interval_ms;       /* > 0: the caller's; else automatic */
    lc_keepalive_callbacks cbs;
    char preempt_seen[64];  /* "until" of the last window reported */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;               /* under mu */
    int lost;               /* atomic */
    long renewals;          /* atomic: successful renewals (and checks) */
};

static void log_ka(lc_keepalive *ka, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void log_ka(lc_keepalive *ka, int level, const char *fmt, ...)
{
    if (!ka->client->o.log)
        return;
    char msg[LC_ERRMSG_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ka->client->o.log(level, msg, ka->client->o.log_userdata);
}

/* Sleeps until at_us (lc__mono_us: CLOCK_BOOTTIME) or until stopped; 1
 * when stopped. A condition variable only waits on CLOCK_MONOTONIC, which
 * stands still while the machine is suspended; so the wait goes in slices
 * of at most 250 ms, each re-reading the boot-time clock: after a resume
 * the deadline is seen within a slice. */
static int sleep_until(lc_keepalive *ka, int64_t at_us)
{
    pthread_mutex_lock(&ka->mu);
    while (!ka->stop) {
        int64_t left = at_us - lc__mono_us();
        if (left <= 0)
            break;
        if (left > 250000)
            left = 250000;
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        int64_t ns = (int64_t)t.tv_nsec + left * 1000;
        t.tv_sec += (time_t)(ns / 1000000000);
        t.tv_nsec = (long)(ns % 1000000000);
        pthread_cond_timedwait(&ka->cv, &ka->mu, &t);
    }
    int stop = ka->stop;
    pthread_mutex_unlock(&ka->mu);
    return stop;
}

static void declare_lost(lc_keepalive *ka, lc_status st, const char *detail)
{
    __atomic_store_n(&ka->owner->lost, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&ka->lost, 1, __ATOMIC_RELEASE);
    log_ka(ka, 2, "lock on %s lost: %s", lc_lock_device(ka->mine), detail);
    if (ka->cbs.on_lost)
        ka->cbs.on_lost(ka->owner, st, detail, ka->cbs.userdata);
}

/* A preempt object ({"until", "grace_s", "requested_by"}) of a renew or
 * validate answer: reported once per window (told apart by "until"). */
static void check_preempt(lc_keepalive *ka, const cJSON *p)
{
    if (!cJSON_IsObject(p))
        return;
    const char *until = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "until"));
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(p, "grace_s");
    if (!until || !strcmp(until, ka->preempt_seen))
        return;
    snprintf(ka->preempt_seen, sizeof(ka->preempt_seen), "%s", until);
    double grace = cJSON_IsNumber(g) ? g->valuedouble : 0;
    __atomic_store_n(&ka->owner->preempt_grace_us, (int64_t)(grace * 1e6), __ATOMIC_RELEASE);
    char *by = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(p, "requested_by"));
    log_ka(ka, 2, "preemption of %s requested (grace %.3f s) by %s", lc_lock_device(ka->mine),
           grace, by ? by : "?");
    if (ka->cbs.on_preempt_requested)
        ka->cbs.on_preempt_requested(ka->owner, grace, by ? by : "{}", ka->cbs.userdata);
    cJSON_free(by);
}

/* Publishes a confirmed renew of the private copy to the owner's lock. */
static void publish(lc_keepalive *ka)
{
    lc_lock *m = ka->mine, *o = ka->owner;
    __atomic_store_n(&o->live_expires_us, m->expires_us, __ATOMIC_RELEASE);
    __atomic_store_n(&o->lease_us, __atomic_load_n(&m->lease_us, __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
    __atomic_store_n(&o->deadline_us, __atomic_load_n(&m->deadline_us, __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
    __atomic_add_fetch(&ka->renewals, 1, __ATOMIC_RELAXED);
}

/* One validate of a lock without expiry: 1 still held, 0 lost (callback
 * done), -1 transient failure. */
static int check_once(lc_keepalive *ka)
{
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_puts(&b, "{\"device_name\":");
    lk_buf_json_str(&b, lc_lock_device(ka->mine));
    lk_buf_printf(&b, ",\"fence\":%lld}", (long long)lc_lock_fence(ka->mine));
    if (b.oom) {
        lk_buf_free(&b);
        return -1;
    }
    cJSON *j = NULL;
    lc_status st = lc__http_ex(ka->client, "POST", "/api/lock/validate", lk_buf_data(&b), 0, NULL, &j);
    lk_buf_free(&b);
    if (st != LC_OK) {
        char detail[LC_ERRMSG_MAX];
        lc__errmsg_copy(ka->client, detail, sizeof(detail));
        log_ka(ka, 2, "check of %s failed, retrying: %s", lc_lock_device(ka->mine), detail);
        return -1;
    }
    int held = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "valid"));
    if (held) {
        __atomic_add_fetch(&ka->renewals, 1, __ATOMIC_RELAXED);
        check_preempt(ka, cJSON_GetObjectItemCaseSensitive(j, "preempt"));
    } else {
        /* as a renew's answer would say: free (404) or someone else's (403) */
        const cJSON *cur = cJSON_GetObjectItemCaseSensitive(j, "current_fence");
        char detail[160];
        if (cJSON_IsNumber(cur))
            snprintf(detail, sizeof(detail), "fence %lld of %s is no longer current (now %lld)",
                     (long long)lc_lock_fence(ka->mine), lc_lock_device(ka->mine),
                     (long long)cur->valuedouble);
        else
            snprintf(detail, sizeof(detail), "fence %lld of %s is no longer current (device free)",
                     (long long)lc_lock_fence(ka->mine), lc_lock_device(ka->mine));
        declare_lost(ka, cJSON_IsNumber(cur) ? LC_ERR_FORBIDDEN : LC_ERR_NOT_FOUND, detail);
    }
    cJSON_Delete(j);
    return held;
}

/* When the next renew is due: a third of the lease after the last
 * confirmed send, or the caller's interval if that is sooner. */
static int64_t next_renew_us(const lc_keepalive *ka, int64_t sent_us, double lease_s)
{
    int64_t due = lc__renew_due_us(sent_us, lease_s);
    if (ka->interval_ms > 0 && sent_us + (int64_t)ka->interval_ms * 1000 < due)
        due = sent_us + (int64_t)ka->interval_ms * 1000;
    return due;
}

static void *ka_main(void *arg)
{
    lc_keepalive *ka = arg;
    lc_lock *m = ka->mine;
    /* a lock that came without a deadline (not from lc_acquire / lc_renew
     * here, e.g. lc_renew_key's) is renewed at once to get one */
    int64_t next = lc_lock_deadline_us(m) ? next_renew_us(ka, m->lease_sent_us, lc_lock_lease_s(m))
                                          : lc__mono_us();
    for (;;) {
        int64_t deadline = lc_lock_deadline_us(m);
        double lease = lc_lock_lease_s(m);
        if (lease <= 0) {
            /* no expiry: confirm the fence every check interval */
            long every = ka->interval_ms > 0 ? ka->interval_ms : ka->client->o.check_interval_ms;
            if (sleep_until(ka, next + (int64_t)every * 1000))
                break;
            next = lc__mono_us();
            if (check_once(ka) == 0)
                break;
            continue;
        }
        if (sleep_until(ka, !deadline || next < deadline ? next : deadline))
            break;
        long call_ms = lc__call_timeout_ms(ka->client->o.timeout_ms, deadline, lc__mono_us());
        if (call_ms <= 0) {
            char detail[160];
            snprintf(detail, sizeof(detail),
                     "no renew confirmed before the local deadline (lease %.3g s, margin %ld ms)",
                     lease, lc__margin_ms(lease, ka->client->o.safety_margin_ms));
            declare_lost(ka, LC_ERR_LOST, detail);
            break;
        }
        cJSON *answer = NULL;
        lc_status st = lc__renew_ex(ka->client, m, 0, call_ms, &answer);
        if (st == LC_OK) {
            publish(ka);
            check_preempt(ka, cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(answer, "lock"),
                                                               "preempt"));
            cJSON_Delete(answer);
            next = lc_lock_lease_s(m) > 0 ? next_renew_us(ka, m->lease_sent_us, lc_lock_lease_s(m))
                                          : lc__mono_us();
            continue;
        }
        char detail[LC_ERRMSG_MAX];
        lc__errmsg_copy(ka->client, detail, sizeof(detail));
        if (st == LC_ERR_FORBIDDEN || st == LC_ERR_NOT_FOUND) {
            declare_lost(ka, st, detail);
            break;
        }
        log_ka(ka, 2, "renew of %s failed, retrying: %s", lc_lock_device(m), detail);
        /* transient: the lease may still be alive and the broker back in
         * time; retry soon (a tenth of the lease, 100 ms to 500 ms) */
        long retry_ms = (long)(lease * 100);
        retry_ms = retry_ms < 100 ? 100 : retry_ms > 500 ? 500 : retry_ms;
        next = lc__mono_us() + (int64_t)retry_ms * 1000;
    }
    return NULL;
}

static void ka_free(lc_keepalive *ka)
{
    lc_client_free(ka->client);
    lc_lock_free(ka->mine);
    free(ka);
}

lc_status lc_keepalive_start_cb(lc_client *c, lc_lock *lock, long interval_ms,
                                const lc_keepalive_callbacks *cbs, lc_keepalive **out)
{
    if (out)
        *out = NULL;
    if (!c || !lock || !out || !lock->key)
        return LC_ERR_BAD_REQUEST;
    lc_keepalive *ka = calloc(1, sizeof(*ka));
    if (!ka)
        return LC_ERR_NOMEM;
    lc_status st = lc__client_clone(c, &ka->client);
    if (st != LC_OK) {
        free(ka);
        return st;
    }
    ka->mine = lc__lock_dup(lock);
    if (!ka->mine) {
        ka_free(ka);
        return LC_ERR_NOMEM;
    }
    ka->owner = lock;
    ka->interval_ms = interval_ms > 0 ? interval_ms : 0;
    if (cbs)
        ka->cbs = *cbs;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ka->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&ka->mu, NULL);
    if (pthread_create(&ka->thread, NULL, ka_main, ka) != 0) {
        pthread_cond_destroy(&ka->cv);
        pthread_mutex_destroy(&ka->mu);
        ka_free(ka);
        return LC_ERR_NOMEM;
    }
    *out = ka;
    return LC_OK;
}

lc_status lc_keepalive_start(lc_client *c, lc_lock *lock, long interval_ms, lc_lost_fn lost_cb,
                             void *userdata, lc_keepalive **out)
{
    lc_keepalive_callbacks cbs = {lost_cb, NULL, userdata};
    return lc_keepalive_start_cb(c, lock, interval_ms, &cbs, out);
}

lc_status lc_keepalive_stop(lc_keepalive *ka)
{
    if (!ka)
        return LC_OK;
    pthread_mutex_lock(&ka->mu);
    ka->stop = 1;
    pthread_cond_signal(&ka->cv);
    pthread_mutex_unlock(&ka->mu);
    pthread_join(ka->thread, NULL);
    lc_status st = __atomic_load_n(&ka->lost, __ATOMIC_ACQUIRE) ? LC_ERR_LOST : LC_OK;
    pthread_cond_destroy(&ka->cv);
    pthread_mutex_destroy(&ka->mu);
    ka_free(ka);
    return st;
}

int lc_keepalive_lost(const lc_keepalive *ka)
{
    return ka ? __atomic_load_n(&ka->lost, __ATOMIC_ACQUIRE) : 0;
}

long lc_keepalive_renewals(const lc_keepalive *ka)
{
    return ka ? __atomic_load_n(&ka->renewals, __ATOMIC_RELAXED) : 0;
}
