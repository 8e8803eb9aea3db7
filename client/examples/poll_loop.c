/* poll_loop.c - liblockclient from a program's own poll() loop, with no
 * library thread: watch every lock, acquire DEVICE, release it, and stop
 * once the watch has seen both events.
 *
 *   DEVLOCK_URL=http://127.0.0.1:60620 ./poll_loop DEVICE
 *
 * Prints "connected", "event ACTION DEVICE" for every lock_update,
 * "acquired DEVICE fence N", "released DEVICE"; exits 0 when done, 1 on an
 * error, 2 on bad usage. Build: cc poll_loop.c $(pkg-config --cflags --libs lockclient) */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lockclient.h"

struct app {
    lc_loop *loop;
    const char *device;
    lc_lock *lock;
    int asked, saw_acquired, saw_released, released, failed;
};

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
    /* the watch is in step: take the device */
    lc_request req = {0};
    req.device_name = a->device;
    req.timeout_s = 30;
    req.reason = "poll_loop example";
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
    struct app a = {0};
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

    time_t give_up = time(NULL) + 20;
    lc_status st = LC_OK;
    while (!a.failed && !(a.released && a.saw_released) && time(NULL) < give_up) {
        struct pollfd p = {lc_loop_fd(a.loop), POLLIN, 0};
        long t = lc_loop_timeout_ms(a.loop);
        poll(&p, 1, t < 0 || t > 1000 ? 1000 : (int)t);
        if ((st = lc_loop_process(a.loop)) != LC_OK)
            break;
        fflush(stdout);
    }
    int ok = a.released && a.saw_released && st == LC_OK && !a.failed;
    if (!ok)
        fprintf(stderr, "not done: %s\n", st != LC_OK ? lc_strerror(st) : a.failed ? "failed" : "timed out");
    lc_lock_free(a.lock);
    lc_loop_free(a.loop);
    return ok ? 0 : 1;
}
