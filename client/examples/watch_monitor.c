/* watch_monitor.c - prints every lock change as it happens, keeps a local
 * table of all locks, and survives broker restarts without missing events
 * (the watch resumes from the last event id).
 *
 *   cc watch_monitor.c $(pkg-config --cflags --libs lockclient) -o watch_monitor
 *   DEVLOCK_URL=http://localhost:60620 ./watch_monitor [COUNT]
 *
 * Runs until Ctrl-C, or until COUNT events were printed.
 */
#define _POSIX_C_SOURCE 200809L   /* nanosleep, pipe, sigaction under -std=c11 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <lockclient.h>

static int wake[2];                 /* the main thread sleeps on this pipe */

struct monitor {
    long want, seen;                /* touched on the watch thread only */
};

static void on_event(const lc_event *ev, void *userdata)
{
    struct monitor *m = userdata;
    printf("%s %-14s %-20s %s%s%s\n", ev->event_id ? ev->event_id : "-", ev->action,
           ev->device_name, ev->lock ? lc_lock_user(ev->lock) : "-", ev->cause ? " cause=" : "",
           ev->cause ? ev->cause : "");
    fflush(stdout);
    if (m->want > 0 && ++m->seen == m->want && write(wake[1], "x", 1) < 0)
        perror("write");
}

static void on_snapshot(const lc_lock_list *locks, void *userdata)
{
    (void)userdata;
    printf("snapshot: %zu lock(s)\n", lc_lock_list_count(locks));
    for (size_t i = 0; i < lc_lock_list_count(locks); i++) {
        const lc_lock *l = lc_lock_list_get(locks, i);
        printf("  %-20s %-16s %s\n", lc_lock_device(l), lc_lock_type_name(lc_lock_type_of(l)),
               lc_lock_user(l));
    }
    fflush(stdout);
}

static void on_connection(int up, void *userdata)
{
    (void)userdata;
    fprintf(stderr, "watch: %s\n", up ? "connected" : "disconnected, reconnecting");
}

static void on_signal(int sig)
{
    (void)sig;
    if (write(wake[1], "s", 1) < 0)
        _exit(1);
}

int main(int argc, char **argv)
{
    struct monitor m = {argc > 1 ? atol(argv[1]) : 0, 0};
    if (pipe(wake) != 0)
        return 1;
    lc_options opts = {0};
    opts.url = getenv("DEVLOCK_URL");
    opts.token = getenv("DEVLOCK_TOKEN");
    lc_watch_callbacks cbs = {on_event, on_snapshot, on_connection, &m};
    lc_watch *w;
    lc_status st = lc_watch_new(&opts, &cbs, &w);
    if (st != LC_OK) {
        fprintf(stderr, "lc_watch_new: %s\n", lc_strerror(st));
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    char c;
    while (read(wake[0], &c, 1) < 0 && errno == EINTR)
        ;
    lc_lock_list *now = NULL;
    if (lc_watch_snapshot(w, &now) == LC_OK)
        fprintf(stderr, "%zu lock(s) held at exit\n", lc_lock_list_count(now));
    lc_lock_list_free(now);
    lc_watch_free(w);
    return 0;
}
