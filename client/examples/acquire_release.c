/* acquire_release.c - the plain form: acquire a device, use it, release it.
 *
 *   cc acquire_release.c $(pkg-config --cflags --libs lockclient) -o acquire_release
 *   DEVLOCK_URL=http://localhost:60620 ./acquire_release [DEVICE]
 */
#include <stdio.h>
#include <stdlib.h>

#include <lockclient.h>

int main(int argc, char **argv)
{
    const char *device = argc > 1 ? argv[1] : "detector1";
    lc_options opts = {0};
    opts.url = getenv("DEVLOCK_URL");          /* NULL: http://localhost:60620 */
    opts.token = getenv("DEVLOCK_TOKEN");      /* NULL: no auth */
    opts.client_name = "acquire_release";      /* shown to operators as the holder's program */
    lc_client *client;
    lc_status st = lc_client_new(&opts, &client);
    if (st != LC_OK) {
        fprintf(stderr, "lc_client_new: %s\n", lc_strerror(st));
        return 1;
    }

    lc_request req = {0};
    req.device_name = device;
    req.type = LC_MANUAL_OPERATOR;
    req.timeout_s = 60;                        /* lease: released by the broker after 60 s */
    req.reason = "example: plain acquire/release";
    lc_lock *lock;
    st = lc_acquire(client, &req, &lock);
    if (st != LC_OK) {
        /* LC_ERR_DENIED: someone with equal or higher priority holds it */
        fprintf(stderr, "acquire %s: %s: %s\n", device, lc_strerror(st), lc_errmsg(client));
        lc_client_free(client);
        return lc_status_exit_code(st);
    }
    printf("holding %s: fence %lld, key %s, expires %s\n", lc_lock_device(lock),
           (long long)lc_lock_fence(lock), lc_lock_key(lock), lc_lock_expires_at(lock));

    /* ... drive the device, sending lc_lock_fence(lock) with each command ... */

    st = lc_release(client, lock);
    if (st != LC_OK)
        fprintf(stderr, "release: %s: %s\n", lc_strerror(st), lc_errmsg(client));
    else
        printf("released %s\n", device);
    lc_lock_free(lock);
    lc_client_free(client);
    return st == LC_OK ? 0 : lc_status_exit_code(st);
}
