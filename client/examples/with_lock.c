/* with_lock.c - the callback form: lc_with_lock acquires, runs the body
 * while renewing the lease in the background, and always releases.
 *
 *   cc with_lock.c $(pkg-config --cflags --libs lockclient) -o with_lock
 *   DEVLOCK_URL=http://localhost:60620 ./with_lock [DEVICE]
 */
#define _POSIX_C_SOURCE 200809L   /* nanosleep, pipe, sigaction under -std=c11 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <lockclient.h>

struct job {
    int steps_done;
};

/* Runs with the lock held. The lease is 2 s but the body takes about 3 s:
 * the keepalive renews it meanwhile. */
static void body(lc_client *client, const lc_lock *lock, void *userdata)
{
    struct job *job = userdata;
    (void)client;
    for (int step = 0; step < 6; step++) {
        if (lc_lock_lost(lock)) {              /* preempted or force-released: stop */
            fprintf(stderr, "lock lost, stopping at step %d\n", step);
            return;
        }
        printf("step %d on %s with fence %lld\n", step, lc_lock_device(lock),
               (long long)lc_lock_fence(lock));
        struct timespec half = {0, 500 * 1000000L};
        nanosleep(&half, NULL);                /* the device works */
        job->steps_done++;
    }
}

int main(int argc, char **argv)
{
    lc_options opts = {0};
    opts.url = getenv("DEVLOCK_URL");
    opts.token = getenv("DEVLOCK_TOKEN");
    lc_client *client;
    if (lc_client_new(&opts, &client) != LC_OK)
        return 1;
    lc_request req = {0};
    req.device_name = argc > 1 ? argv[1] : "motor1";
    req.timeout_s = 2;
    req.reason = "example: lc_with_lock";
    struct job job = {0};
    lc_status st = lc_with_lock(client, &req, body, &job);
    if (st != LC_OK)
        fprintf(stderr, "with_lock: %s: %s\n", lc_strerror(st), lc_errmsg(client));
    else
        printf("done: %d steps, lock released\n", job.steps_done);
    lc_client_free(client);
    return lc_status_exit_code(st);
}
