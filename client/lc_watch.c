/* lc_watch.c - a monitor of every lock on its own thread: a private lc_loop
 * (lc_loop.c, lc_loop_watch.c) with lc_loop_watch, driven by poll() on the
 * loop's fd and an eventfd that lc_watch_free writes to stop it.
 *
 * Threading: the loop and every callback belong to the watch thread. The
 * loop's cache and last event id are guarded by `mu` (the loop takes it
 * around its changes, lc__loop_set_mutex), which is never held while a user
 * callback runs; `synced` is kept under `mu` from the loop's on_connection,
 * so lc_watch_wait_ready can wait for it. The order and resume rules are
 * the loop's (lc_loop_watch.c). */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "lc_loop.h"

struct lc_watch {
    lc_watch_callbacks cbs;
    lc_loop *loop;
    pthread_t thread;
    int efd;
    int stop;                   /* atomic */
    int status;                 /* atomic: lc_status the loop stopped with */
    pthread_mutex_t mu;
    pthread_cond_t ready_cv;
    int synced;                 /* under mu */
};

static void w_connection(int connected, void *ud)
{
    struct lc_watch *w = ud;
    pthread_mutex_lock(&w->mu);
    w->synced = connected;
    pthread_cond_broadcast(&w->ready_cv);
    pthread_mutex_unlock(&w->mu);
    if (w->cbs.on_connection)
        w->cbs.on_connection(connected, w->cbs.userdata);
}

static void w_event(const lc_event *ev, void *ud)
{
    struct lc_watch *w = ud;
    if (w->cbs.on_event)
        w->cbs.on_event(ev, w->cbs.userdata);
}

static void w_snapshot(const lc_lock_list *locks, void *ud)
{
    struct lc_watch *w = ud;
    if (w->cbs.on_snapshot)
        w->cbs.on_snapshot(locks, w->cbs.userdata);
}

static void *watch_main(void *arg)
{
    struct lc_watch *w = arg;
    while (!__atomic_load_n(&w->stop, __ATOMIC_SEQ_CST)) {
        struct pollfd p[2] = {{lc_loop_fd(w->loop), POLLIN, 0}, {w->efd, POLLIN, 0}};
        long t = lc_loop_timeout_ms(w->loop);
        if (poll(p, 2, t > 60000 || t < 0 ? 60000 : (int)t) < 0 && errno != EINTR)
            break;
        if (__atomic_load_n(&w->stop, __ATOMIC_SEQ_CST))
            break;
        lc_status st = lc_loop_process(w->loop);
        if (st != LC_OK) {
            __atomic_store_n(&w->status, (int)st, __ATOMIC_SEQ_CST);
            pthread_mutex_lock(&w->mu);
            w->synced = 0;
            pthread_cond_broadcast(&w->ready_cv);
            pthread_mutex_unlock(&w->mu);
            break;      /* permanent: 401, 403, TLS */
        }
    }
    return NULL;
}

static void watch_destroy(struct lc_watch *w)
{
    lc_loop_free(w->loop);
    if (w->efd >= 0)
        close(w->efd);
    pthread_cond_destroy(&w->ready_cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

lc_status lc_watch_new_opts(const lc_opts *opts, const lc_watch_callbacks *cbs, lc_watch **out)
{
    if (!out)
        return LC_ERR_BAD_REQUEST;
    *out = NULL;
    struct lc_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return LC_ERR_NOMEM;
    w->efd = -1;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->ready_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (cbs)
        w->cbs = *cbs;
    lc_status st = lc_loop_new(opts, &w->loop);
    if (st != LC_OK) {
        watch_destroy(w);
        return st;
    }
    lc__loop_set_mutex(w->loop, &w->mu);
    lc_watch_callbacks mine = {w_event, w_snapshot, w_connection, w};
    w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->efd < 0 || lc_loop_watch(w->loop, &mine) != LC_OK) {
        watch_destroy(w);
        return LC_ERR_INTERNAL;
    }
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        watch_destroy(w);
        return LC_ERR_NOMEM;
    }
    *out = w;
    return LC_OK;
}

lc_status lc_watch_new(const lc_options *opts, const lc_watch_callbacks *cbs, lc_watch **out)
{
    if (!out)
        return LC_ERR_BAD_REQUEST;
    *out = NULL;
    struct lc_opts o;
    memset(&o, 0, sizeof(o));
    o.safety_margin_ms = -1;
    if (opts) {
        /* borrowed for the call: lc_loop_new copies them */
        o.url = (char *)opts->url;
        o.token = (char *)opts->token;
        o.user_id = (char *)opts->user_id;
        o.client_name = (char *)opts->client_name;
        o.timeout_ms = opts->timeout_ms;
        o.log = opts->log;
        o.log_userdata = opts->log_userdata;
    }
    if (o.url && !*o.url)
        o.url = NULL;
    return lc_watch_new_opts(&o, cbs, out);
}

lc_status lc_watch_status(lc_watch *w)
{
    if (!w)
        return LC_ERR_BAD_REQUEST;
    return (lc_status)__atomic_load_n(&w->status, __ATOMIC_SEQ_CST);
}

lc_status lc_watch_snapshot(lc_watch *w, lc_lock_list **out)
{
    if (out)
        *out = NULL;
    if (!w || !out)
        return LC_ERR_BAD_REQUEST;
    return lc_loop_snapshot(w->loop, out);
}

int lc_watch_connected(lc_watch *w)
{
    if (!w)
        return 0;
    pthread_mutex_lock(&w->mu);
    int s = w->synced;
    pthread_mutex_unlock(&w->mu);
    return s;
}

lc_status lc_watch_wait_ready(lc_watch *w, long timeout_ms)
{
    if (!w)
        return LC_ERR_BAD_REQUEST;
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    int rc = 0;
    while (!w->synced && rc != ETIMEDOUT && !__atomic_load_n(&w->status, __ATOMIC_SEQ_CST))
        rc = pthread_cond_timedwait(&w->ready_cv, &w->mu, &dl);
    int ok = w->synced;
    pthread_mutex_unlock(&w->mu);
    return ok ? LC_OK : LC_ERR_TIMEOUT;
}

void lc_watch_last_event_id(lc_watch *w, char *buf, size_t len)
{
    if (!w || !buf || !len)
        return;
    pthread_mutex_lock(&w->mu);
    snprintf(buf, len, "%s", w->loop->last_id);
    pthread_mutex_unlock(&w->mu);
}

void lc_watch_free(lc_watch *w)
{
    if (!w)
        return;
    __atomic_store_n(&w->stop, 1, __ATOMIC_SEQ_CST);
    uint64_t one = 1;
    if (write(w->efd, &one, sizeof(one)) < 0) {
        /* the counter is full: the thread is being woken anyway */
    }
    pthread_join(w->thread, NULL);
    watch_destroy(w);
}
