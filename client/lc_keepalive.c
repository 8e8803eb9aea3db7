/* lc_keepalive.c - background renewal of one lock (or group).
 *
 * Each keepalive has its own thread, its own HTTP connection (a private
 * clone of the caller's client, so a long call on the caller's client, e.g.
 * an acquire that waits, never delays a renewal) and its own copy of the
 * lock, which is the only object it renews. What the owner can see of the
 * renewals goes through two atomics of the owner's lock: the current expiry
 * (lc_lock_expires_us) and the lost flag (lc_lock_lost).
 *
 * The thread sleeps on a condition variable (monotonic clock) until the next
 * tick or until it is stopped. A renew that answers 403/404 means the lock
 * is gone (preempted, expired, force-released): the lost callback runs (no
 * internal lock held), then the thread ends. Unreachable / 503 / timeouts
 * are retried at a shorter interval: the lease may still be alive and the
 * broker back in time. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lc_internal.h"

struct lc_keepalive {
    lc_client *client;      /* private clone */
    lc_lock *mine;          /* private copy, renewed */
    lc_lock *owner;         /* the caller's lock: only its atomics are written */
    long interval_ms;
    lc_lost_fn lost_cb;
    void *userdata;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;               /* under mu */
    int lost;               /* atomic */
    int renewals;           /* atomic: successful renewals */
};

static void deadline_after(struct timespec *t, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, t);
    t->tv_sec += ms / 1000;
    t->tv_nsec += (ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

static void *ka_main(void *arg)
{
    lc_keepalive *ka = arg;
    long wait_ms = ka->interval_ms;
    for (;;) {
        struct timespec next;
        deadline_after(&next, wait_ms);
        pthread_mutex_lock(&ka->mu);
        while (!ka->stop && pthread_cond_timedwait(&ka->cv, &ka->mu, &next) != ETIMEDOUT)
            ;
        int stop = ka->stop;
        pthread_mutex_unlock(&ka->mu);
        if (stop)
            break;
        lc_status st = lc_renew(ka->client, ka->mine, ka->mine->lease_s);
        if (st == LC_OK) {
            __atomic_store_n(&ka->owner->live_expires_us, ka->mine->expires_us, __ATOMIC_RELEASE);
            __atomic_add_fetch(&ka->renewals, 1, __ATOMIC_RELAXED);
            wait_ms = ka->interval_ms;
            continue;
        }
        char detail[LC_ERRMSG_MAX];
        lc__errmsg_copy(ka->client, detail, sizeof(detail));
        if (st == LC_ERR_FORBIDDEN || st == LC_ERR_NOT_FOUND) {
            __atomic_store_n(&ka->owner->lost, 1, __ATOMIC_RELEASE);
            __atomic_store_n(&ka->lost, 1, __ATOMIC_RELEASE);
            lc__log(ka->client->log, ka->client->log_userdata, 2, "lock on %s lost: %s",
                    lc_lock_device(ka->mine), detail);
            if (ka->lost_cb)
                ka->lost_cb(ka->owner, st, detail, ka->userdata);
            break;
        }
        lc__log(ka->client->log, ka->client->log_userdata, 2, "renew of %s failed, retrying: %s",
                lc_lock_device(ka->mine), detail);
        /* transient: retry sooner than a full interval, while the lease lasts */
        wait_ms = ka->interval_ms / 3 > 100 ? ka->interval_ms / 3 : 100;
    }
    return NULL;
}

static void ka_free(lc_keepalive *ka)
{
    lc_client_free(ka->client);
    lc_lock_free(ka->mine);
    free(ka);
}

lc_status lc_keepalive_start(lc_client *c, lc_lock *lock, long interval_ms, lc_lost_fn lost_cb,
                             void *userdata, lc_keepalive **out)
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
    if (interval_ms <= 0) {
        interval_ms = lock->lease_s > 0 ? (long)(lock->lease_s * 1000 / 3) : 1000;
        if (interval_ms < 100)
            interval_ms = 100;
    }
    ka->owner = lock;
    ka->interval_ms = interval_ms;
    ka->lost_cb = lost_cb;
    ka->userdata = userdata;
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
