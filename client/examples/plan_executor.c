/* plan_executor.c - how a queue server runs a plan: lock every device the
 * plan uses, all or none, as QUEUE_EXECUTING under the plan's uid; run the
 * steps while a keepalive renews the group; check the fence before each
 * command; release at the end (or stop early when the lock is lost, e.g. a
 * MAINTENANCE lock preempted the plan).
 *
 * It fails closed: a step runs only when the fence check says "valid". A
 * check that cannot be made (broker unreachable, timeout, ...) stops the
 * plan as a stale fence does - not knowing is not permission. A
 * preemption warning (a higher priority asked for the devices) makes it
 * stop at the next step boundary, its safe point, and release.
 *
 *   cc plan_executor.c $(pkg-config --cflags --libs lockclient) -o plan_executor
 *   DEVLOCK_URL=http://localhost:60620 ./plan_executor PLAN_UID DEVICE...
 */
#define _POSIX_C_SOURCE 200809L   /* nanosleep, pipe, sigaction under -std=c11 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <lockclient.h>

struct plan {
    const char *uid;
    const char *const *devices;
    size_t n;
};

static void lost(const lc_lock *lock, lc_status status, const char *detail, void *userdata)
{
    const struct plan *p = userdata;
    /* on the keepalive thread: just report; the executor polls lc_lock_lost */
    fprintf(stderr, "plan %s: lock on %s lost (%s): %s\n", p->uid, lc_lock_device(lock),
            lc_strerror(status), detail);
}

static void preempt_requested(const lc_lock *lock, double grace_s, const char *requested_by,
                              void *userdata)
{
    const struct plan *p = userdata;
    /* the executor polls lc_lock_preempt_grace_s and stops at the next step */
    fprintf(stderr, "plan %s: %s wanted by %s: stopping within %.1f s\n", p->uid,
            lc_lock_device(lock), requested_by, grace_s);
}

/* One step of the plan on one device. A real device server would check the
 * fence itself; here the executor asks the broker (lc_validate_fence).
 * 0: done; -1: the fence is stale; -2: the check failed (fail closed). */
static int run_step(lc_client *client, const lc_lock *lock, size_t i, int step)
{
    int valid = 0;
    lc_status st = lc_validate_fence(client, lc_lock_device_at(lock, i), lc_lock_fence_at(lock, i),
                                     &valid, NULL);
    if (st != LC_OK) {
        fprintf(stderr, "  step %d: cannot check the fence of %s (%s: %s): not driving it\n", step,
                lc_lock_device_at(lock, i), lc_strerror(st), lc_errmsg(client));
        return -2;
    }
    if (!valid)
        return -1;                    /* stale holder: never drive the device */
    printf("  step %d: %s (fence %lld)\n", step, lc_lock_device_at(lock, i),
           (long long)lc_lock_fence_at(lock, i));
    struct timespec t = {0, 100 * 1000000L};
    nanosleep(&t, NULL);              /* the device works */
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s PLAN_UID DEVICE...\n", argv[0]);
        return 2;
    }
    struct plan plan = {argv[1], (const char *const *)(argv + 2), (size_t)(argc - 2)};
    lc_options opts = {0};
    opts.url = getenv("DEVLOCK_URL");
    opts.token = getenv("DEVLOCK_TOKEN");
    opts.user_id = "queue_server";
    opts.client_name = "plan_executor";
    lc_client *client;
    if (lc_client_new(&opts, &client) != LC_OK)
        return 1;

    lc_request req = {0};
    req.device_names = plan.devices;  /* all or none, one lock_key */
    req.n_devices = plan.n;
    req.type = LC_QUEUE_EXECUTING;
    req.plan_uid = plan.uid;
    req.timeout_s = 10;               /* short lease, renewed while the plan runs */
    req.wait_s = 5;                   /* queue behind current holders for up to 5 s */
    req.request_id = plan.uid;        /* a retried request does not lock twice */
    lc_lock *lock;
    lc_status st = lc_acquire(client, &req, &lock);
    if (st != LC_OK) {
        fprintf(stderr, "plan %s: cannot lock its devices: %s: %s\n", plan.uid, lc_strerror(st),
                lc_errmsg(client));
        lc_client_free(client);
        return lc_status_exit_code(st);
    }
    lc_keepalive *ka;
    lc_keepalive_callbacks cbs = {lost, preempt_requested, &plan};
    st = lc_keepalive_start_cb(client, lock, 0, &cbs, &ka);
    if (st != LC_OK) {
        (void)lc_release(client, lock);
        lc_lock_free(lock);
        lc_client_free(client);
        return 1;
    }
    printf("plan %s: running on %zu device(s)\n", plan.uid, lc_lock_device_count(lock));
    const char *why = NULL;
    int rc;
    for (int step = 0; step < 3 && !why; step++)
        for (size_t i = 0; i < lc_lock_device_count(lock) && !why; i++) {
            if (lc_lock_lost(lock))
                why = "lock lost";
            else if (lc_lock_preempt_grace_s(lock) > 0)
                why = "preemption requested";     /* a safe point: between steps */
            else if ((rc = run_step(client, lock, i, step)) != 0)
                why = rc == -1 ? "fence no longer valid" : "fence check failed";
        }
    st = lc_keepalive_stop(ka);
    lc_status rst = lc_release(client, lock);
    if (st == LC_OK)
        st = rst;
    printf("plan %s: %s%s\n", plan.uid, why ? "stopped: " : "done, devices released", why ? why : "");
    lc_lock_free(lock);
    lc_client_free(client);
    return why ? 1 : lc_status_exit_code(st);
}
