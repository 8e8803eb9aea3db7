/* lc_lease.c - the self-fencing arithmetic of liblockclient (lockclient.h,
 * "Self-fencing"): when a holder must consider its lock gone, and how long
 * a renew may wait. Pure functions on the boot-time clock, shared by the
 * keepalive thread (HTTP) and the holds of an lc_loop (WebSocket).
 *
 * The broker ends a lease at (the time its script ran) + lease. The script
 * runs after we sent the request, so (send time + lease) is never later
 * than the broker's end, on clocks that run at the same rate. The margin is
 * what the holder gets to stop (signals, a plan's safe point) plus the
 * clock-rate difference: with the automatic margin, max(500 ms, lease/10),
 * a 10 % rate difference is covered. The clock is CLOCK_BOOTTIME (it
 * counts a suspend, see lc__mono_us). */
#include <time.h>

#include "lc_internal.h"

/* CLOCK_BOOTTIME, not CLOCK_MONOTONIC: the monotonic clock stops while the
 * machine is suspended, the broker's clock does not. A holder suspended for
 * a minute would wake up still inside its 3 s lease by the monotonic clock,
 * long after the broker gave the device to someone else. */
int64_t lc__mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

long lc__margin_ms(double lease_s, long opt_ms)
{
    long half = (long)(lease_s * 500.0);
    long m = opt_ms >= 0 ? opt_ms : (long)(lease_s * 100.0);
    if (opt_ms < 0 && m < 500)
        m = 500;
    return m > half ? half : m;
}

int64_t lc__deadline_us(int64_t sent_us, double lease_s, long margin_ms)
{
    if (lease_s <= 0)
        return 0;
    return sent_us + (int64_t)(lease_s * 1e6) - (int64_t)margin_ms * 1000;
}

long lc__call_timeout_ms(long timeout_ms, int64_t deadline_us, int64_t now_us)
{
    if (deadline_us <= 0)
        return timeout_ms;
    int64_t left = (deadline_us - now_us) / 1000;
    if (left <= 0)
        return 0;
    return left < timeout_ms ? (long)left : timeout_ms;
}

int64_t lc__renew_due_us(int64_t sent_us, double lease_s)
{
    int64_t third = (int64_t)(lease_s * 1e6 / 3);
    if (third < 100000)
        third = 100000;
    return sent_us + third;
}
