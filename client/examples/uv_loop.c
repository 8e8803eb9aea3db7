/* uv_loop.c - liblockclient inside a libuv loop: the same as poll_loop.c
 * (watch, acquire DEVICE, release it, stop once both events were seen),
 * with a uv_poll_t on lc_loop_fd() and a uv_timer_t set to
 * lc_loop_timeout_ms() after every lc_loop_process(). No library thread.
 *
 *   DEVLOCK_URL=http://127.0.0.1:60620 ./uv_loop DEVICE
 *
 * Build: cc uv_loop.c $(pkg-config --cflags --libs lockclient libuv) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE     /* uv.h uses POSIX types (pthread_rwlock_t) that -std=c11 hides */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "lockclient.h"

struct app {
    lc_loop *loop;
    uv_poll_t poll;
    uv_timer_t timer, give_up;
    const char *device;
    lc_lock *lock;
    int asked, saw_acquired, saw_released, released, failed;
    lc_status st;
};

static void done_check(struct app *a)
{
    if (a->failed || a->st != LC_OK || (a->released && a->saw_released)) {
        uv_poll_stop(&a->poll);
        uv_timer_stop(&a->timer);
        uv_timer_stop(&a->give_up);
    }
}

static void on_timer(uv_timer_t *t);

/* The glue: process, then wait for the fd again or for the next timer. */
static void drive(struct app *a)
{
    a->st = lc_loop_process(a->loop);
    fflush(stdout);
    done_check(a);
    if (!uv_is_active((uv_handle_t *)&a->poll))
        return;
    long t = lc_loop_timeout_ms(a->loop);
    if (t >= 0)
        uv_timer_start(&a->timer, on_timer, (uint64_t)t, 0);
    else
        uv_timer_stop(&a->timer);
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    drive(p->data);
}

static void on_timer(uv_timer_t *t)
{
    drive(t->data);
}

static void on_give_up(uv_timer_t *t)
{
    struct app *a = t->data;
    fprintf(stderr, "timed out\n");
    a->failed = 1;
    done_check(a);
}

static void on_released(lc_status st, const char *detail, void *ud)
{
    struct app *a = ud;
    if (st != LC_OK) {
        fprintf(stderr, "release: %s: %s\n", lc_strerror(st), detail);
        a->failed = 1;
        return;
    }
    printf("released %s\n", a->device);
    a->released = 1;
}

static void on_acquired(lc_status st, lc_lock *lock, const char *detail, void *ud)
{
    struct app *a = ud;
    if (st != LC_OK) {
        fprintf(stderr, "acquire: %s: %s\n", lc_strerror(st), detail);
        a->failed = 1;
        return;
    }
    a->lock = lock;
    printf("acquired %s fence %lld\n", lc_lock_device(lock), (long long)lc_lock_fence(lock));
    if (lc_release_async(a->loop, lock, on_released, a, NULL) != LC_OK)
        a->failed = 1;
}

static void on_event(const lc_event *ev, void *ud)
{
    struct app *a = ud;
    printf("event %s %s\n", ev->action, ev->device_name);
    if (strcmp(ev->device_name, a->device))
        return;
    if (!strcmp(ev->action, "acquired"))
        a->saw_acquired = 1;
    else if (!strcmp(ev->action, "released") && a->saw_acquired)
        a->saw_released = 1;
}

static void on_connection(int up, void *ud)
{
    struct app *a = ud;
    printf("%s\n", up ? "connected" : "disconnected");
    if (!up || a->asked)
        return;
    lc_request req = {0};
    req.device_name = a->device;
    req.timeout_s = 30;
    req.reason = "uv_loop example";
    a->asked = 1;
    if (lc_acquire_async(a->loop, &req, on_acquired, a, NULL) != LC_OK)
        a->failed = 1;
}

static void on_error(lc_status st, int permanent, const char *detail, void *ud)
{
    (void)ud;
    fprintf(stderr, "connection: %s%s: %s\n", lc_strerror(st), permanent ? " (giving up)" : "", detail);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: DEVLOCK_URL=... %s DEVICE\n", argv[0]);
        return 2;
    }
    static struct app a;
    a.device = argv[1];
    lc_opts *o = NULL;
    if (lc_opts_new(&o) != LC_OK)
        return 1;
    const char *url = getenv("DEVLOCK_URL");
    if ((url && lc_opts_set_str(o, LC_OPT_URL, url) != LC_OK) ||
        lc_opts_set_str(o, LC_OPT_TOKEN, getenv("DEVLOCK_TOKEN")) != LC_OK ||
        lc_opts_set_error_cb(o, on_error, NULL) != LC_OK || lc_loop_new(o, &a.loop) != LC_OK) {
        fprintf(stderr, "cannot create the loop\n");
        lc_opts_free(o);
        return 1;
    }
    lc_opts_free(o);
    lc_watch_callbacks cbs = {on_event, NULL, on_connection, &a};
    lc_loop_watch(a.loop, &cbs);

    uv_loop_t *uv = uv_default_loop();
    uv_poll_init(uv, &a.poll, lc_loop_fd(a.loop));
    uv_timer_init(uv, &a.timer);
    uv_timer_init(uv, &a.give_up);
    a.poll.data = a.timer.data = a.give_up.data = &a;
    uv_poll_start(&a.poll, UV_READABLE, on_readable);
    uv_timer_start(&a.give_up, on_give_up, 20000, 0);
    drive(&a);
    uv_run(uv, UV_RUN_DEFAULT);

    int ok = a.released && a.saw_released && a.st == LC_OK && !a.failed;
    if (!ok && a.st != LC_OK)
        fprintf(stderr, "stopped: %s\n", lc_strerror(a.st));
    uv_close((uv_handle_t *)&a.poll, NULL);
    uv_close((uv_handle_t *)&a.timer, NULL);
    uv_close((uv_handle_t *)&a.give_up, NULL);
    uv_run(uv, UV_RUN_DEFAULT);
    uv_loop_close(uv);
    lc_lock_free(a.lock);
    lc_loop_free(a.loop);
    return ok ? 0 : 1;
}
