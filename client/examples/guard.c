/* guard.c - the scoped form: LC_LOCK_GUARD releases when the variable goes
 * out of scope, early returns included (gcc/clang cleanup attribute; see
 * the rules in lockclient.h: never goto into its scope).
 *
 *   cc guard.c $(pkg-config --cflags --libs lockclient) -o guard
 *   DEVLOCK_URL=http://localhost:60620 ./guard [DEVICE]
 */
#include <stdio.h>
#include <stdlib.h>

#include <lockclient.h>

/* Moves the stage unless it is already there; every return releases. */
static int move_stage(lc_client *client, const char *device, double target, double *position)
{
    lc_request req = {0};
    req.device_name = device;
    req.timeout_s = 30;
    req.reason = "example: guard";
    LC_LOCK_GUARD(guard, client, &req);
    if (guard.status != LC_OK) {
        fprintf(stderr, "cannot lock %s: %s\n", device, lc_errmsg(client));
        return -1;                                  /* nothing held */
    }
    printf("locked %s (fence %lld)\n", device, (long long)lc_lock_fence(guard.lock));
    if (*position == target) {
        printf("already at %.1f\n", target);
        return 0;                                   /* released here */
    }
    *position = target;                             /* the device moves */
    printf("moved to %.1f\n", target);
    return 1;                                       /* and here */
}

int main(int argc, char **argv)
{
    const char *device = argc > 1 ? argv[1] : "stage1";
    lc_options opts = {0};
    opts.url = getenv("DEVLOCK_URL");
    opts.token = getenv("DEVLOCK_TOKEN");
    lc_client *client;
    if (lc_client_new(&opts, &client) != LC_OK)
        return 1;
    double position = 0;
    int a = move_stage(client, device, 5.0, &position);
    int b = move_stage(client, device, 5.0, &position);  /* early return path */
    lc_lock *still = NULL;
    lc_status st = lc_device_status(client, device, &still);
    printf("%s is %s after both calls\n", device, st == LC_OK && !still ? "free" : "NOT free");
    int rc = (a == 1 && b == 0 && st == LC_OK && !still) ? 0 : 1;
    lc_lock_free(still);
    lc_client_free(client);
    return rc;
}
