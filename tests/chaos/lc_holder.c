/* lc_holder.c - a liblockclient holder for the library-client chaos checker
 * (tests/chaos/holders.js, docs/reliability.md "The library-client checker").
 *
 * Loops, for a bounded number of rounds and time: acquire a device of a
 * small set through the synchronous API (short leases of 1-3 s, sometimes
 * no expiry, sometimes a wait), start a keepalive, and "use" the device
 * every few ms until it decides to release or the library says the lock is
 * gone. Before every use it CHECKS lc_lock_lost() and the self-fencing
 * deadline (lc_lock_deadline_us() against CLOCK_BOOTTIME): the first
 * failed check ends its belief, at once. That is the contract a holder has
 * with the library: between two checks it believes it holds the lock, so
 * the library must say "lost" before the broker can hand the device on.
 *
 * One JSON line per fact on stdout, with CLOCK_REALTIME microseconds (the
 * checker compares them across holders on this machine):
 *   {"ev":"grant","dev":D,"fence":F,"t":T,"lease":S,"key":K}   lc_acquire returned the lock
 *   {"ev":"believe_end","dev":D,"fence":F,"t":T,"why":"released|lost","uses":N}
 *       released: it decided to release (before lc_release is sent);
 *       lost: the first failed check (uses 0: it never acted on the lock)
 *   {"ev":"acquire_fail","dev":D,"st":"lock_denied",...}, {"ev":"release","st":...},
 *   {"ev":"done","rounds":R}                                   the last line
 *
 * Options:  lc_holder --url URL --user U [--devices a,b,c] [--rounds N]
 *           [--duration-ms MS] [--seed N] [--timeout-ms MS]
 *           [--lease-ms LO,HI (1000,3000)] [--hold-ms LO,HI (default: half
 *           20-500, half 500-4500)] [--no-expiry-pct N (10)]
 * LC_HOLDER_CHEAT_MS=N (self-test of the checker): keep believing (and
 * using) N ms after the first failed check - a holder that ignores its
 * library, which the checker must report.
 * LC_HOLDER_FENCE=expiry (calibration only): also stop at the broker's
 * expiry (lc_lock_expires_us, kept current by the keepalive) minus 500 ms,
 * on CLOCK_REALTIME - valid only because broker and holder share this
 * machine's clock; it stands in for a self-fencing library.
 *
 * The 1.1 accessors (lc_lock_deadline_us, lc_keepalive_start_cb) are weak
 * references: against a 1.0 keepalive the holder runs with lc_lock_lost
 * alone, which is exactly the case the checker must catch. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lockclient.h"

#pragma weak lc_lock_deadline_us
#pragma weak lc_keepalive_start_cb

#define MAX_DEVICES 16

struct holder_cfg {
    const char *url;
    const char *user;
    char *devices[MAX_DEVICES];
    int n_devices;
    long rounds;
    long duration_ms;
    long timeout_ms;
    uint64_t seed;
    long cheat_ms;
    int fence_expiry;
    long lease_lo_ms, lease_hi_ms;  /* --lease-ms */
    long hold_lo_ms, hold_hi_ms;    /* --hold-ms; 0: the default mix */
    long no_expiry_pct;             /* --no-expiry-pct */
};

static volatile sig_atomic_t stop_requested;

static void on_term(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int64_t clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_us(void) { return clock_us(CLOCK_BOOTTIME); }   /* lc_lock_deadline_us's clock */
static int64_t real_us(void) { return clock_us(CLOCK_REALTIME); }

static void pause_ms(long ms)
{
    /* pacing of the uses, not synchronisation */
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop_requested)
        ;
}

/* xorshift64*: seeded, so a holder's choices repeat with the run's seed */
static uint64_t rng_state;
static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}
static long rng_int(long lo, long hi) { return lo + (long)(rng_next() % (uint64_t)(hi - lo + 1)); }

/* Whether the holder may still act on the lock; the reasons are the
 * library's (lost flag, self-fencing deadline), plus the calibration-only
 * expiry check. */
static int still_held(const struct holder_cfg *cfg, const lc_lock *lock)
{
    if (lc_lock_lost(lock))
        return 0;
    if (lc_lock_deadline_us) {
        int64_t d = lc_lock_deadline_us(lock);
        if (d > 0 && mono_us() >= d)
            return 0;
    }
    if (cfg->fence_expiry) {
        int64_t e = lc_lock_expires_us(lock);
        if (e > 0 && real_us() >= e - 500000)
            return 0;
    }
    return 1;
}

static void lost_cb(const lc_lock *lock, lc_status st, const char *detail, void *ud)
{
    /* the main loop's next check sees lc_lock_lost(); this only records why */
    (void)ud;
    fprintf(stderr, "lc_holder: keepalive lost %s: %s (%s)\n", lc_lock_device(lock), lc_status_code(st),
            detail ? detail : "");
}

static void on_lost(const lc_lock *lock, lc_status st, const char *detail, void *ud)
{
    lost_cb(lock, st, detail, ud);
}

static void json_str(const char *s)
{
    putchar('"');
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        if ((unsigned char)*s >= 0x20)
            putchar(*s);
    }
    putchar('"');
}

static void print_fact(const char *ev, const char *dev, int64_t fence, int64_t t)
{
    printf("{\"ev\":\"%s\",\"dev\":", ev);
    json_str(dev);
    printf(",\"fence\":%lld,\"t\":%lld", (long long)fence, (long long)t);
}

/* One round: acquire, hold with checks before every use, release.
 * Returns 1 if it got a lock. */
static int one_round(const struct holder_cfg *cfg, lc_client *c, int64_t end_mono)
{
    lc_request req = { 0 };
    req.device_name = cfg->devices[rng_int(0, cfg->n_devices - 1)];
    long r = rng_int(0, 99);
    req.timeout_s = r < cfg->no_expiry_pct ? -1 : (double)rng_int(cfg->lease_lo_ms, cfg->lease_hi_ms) / 1000.0;
    if (rng_int(0, 99) < 40)
        req.wait_s = (double)rng_int(5, 30) / 10.0;
    lc_lock *lock = NULL;
    lc_status st = lc_acquire(c, &req, &lock);
    int64_t t_grant = real_us();
    if (st != LC_OK) {
        printf("{\"ev\":\"acquire_fail\",\"dev\":");
        json_str(req.device_name);
        printf(",\"st\":\"%s\",\"t\":%lld}\n", lc_status_code(st), (long long)t_grant);
        if (st != LC_ERR_DENIED)
            pause_ms(rng_int(20, 200));
        else
            pause_ms(rng_int(5, 50));
        return 0;
    }
    int64_t fence = lc_lock_fence(lock);
    print_fact("grant", req.device_name, fence, t_grant);
    printf(",\"lease\":%g,\"key\":", req.timeout_s > 0 ? req.timeout_s : 0.0);
    json_str(lc_lock_key(lock));
    printf("}\n");

    lc_keepalive *ka = NULL;
    if (lc_keepalive_start_cb) {
        lc_keepalive_callbacks cbs = { 0 };
        cbs.on_lost = on_lost;
        st = lc_keepalive_start_cb(c, lock, 0, &cbs, &ka);
    } else {
        st = lc_keepalive_start(c, lock, 0, lost_cb, NULL, &ka);
    }
    if (st != LC_OK)
        fprintf(stderr, "lc_holder: keepalive did not start: %s\n", lc_status_code(st));

    /* hold 20-500 ms (half of the rounds) or 0.5-4.5 s: often longer than
     * the lease, so renewals matter */
    long hold_ms = cfg->hold_hi_ms > 0 ? rng_int(cfg->hold_lo_ms, cfg->hold_hi_ms)
                   : rng_int(0, 1) ? rng_int(20, 500) : rng_int(500, 4500);
    int64_t hold_until = mono_us() + hold_ms * 1000;
    if (hold_until > end_mono)
        hold_until = end_mono;
    long uses = 0;
    const char *why = "released";
    for (;;) {
        if (!still_held(cfg, lock)) {
            why = "lost";
            break;
        }
        if (mono_us() >= hold_until || stop_requested)
            break;
        uses++;                 /* the "use" of the device */
        pause_ms(rng_int(1, 5));
    }
    if (why[0] == 'l' && cfg->cheat_ms > 0) {
        /* self-test: a holder that goes on using the device after the loss */
        int64_t until = mono_us() + cfg->cheat_ms * 1000;
        while (mono_us() < until && !stop_requested) {
            uses++;
            pause_ms(rng_int(1, 5));
        }
    }
    print_fact("believe_end", req.device_name, fence, real_us());
    printf(",\"why\":\"%s\",\"uses\":%ld}\n", why, uses);

    lc_keepalive_stop(ka);
    /* Release (also after a loss: it only answers 403/404 then). A lock
     * without expiry must not stay behind, so its release is retried
     * for longer; a leased one ends by itself. */
    int tries = req.timeout_s > 0 ? 3 : 30;
    for (int i = 0; i < tries; i++) {
        st = lc_release(c, lock);
        if (st != LC_ERR_UNAVAILABLE && st != LC_ERR_TIMEOUT && st != LC_ERR_IO)
            break;
        if (i + 1 < tries)
            pause_ms(rng_int(100, 500));
    }
    printf("{\"ev\":\"release\",\"dev\":");
    json_str(req.device_name);
    printf(",\"fence\":%lld,\"st\":\"%s\"}\n", (long long)fence, lc_status_code(st));
    lc_lock_free(lock);
    pause_ms(rng_int(0, 20));
    return 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: lc_holder --url URL --user U [--devices a,b,c] [--rounds N] "
                    "[--duration-ms MS] [--seed N] [--timeout-ms MS] [--lease-ms LO,HI] "
                    "[--hold-ms LO,HI] [--no-expiry-pct N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct holder_cfg cfg = { .user = "lc_holder", .rounds = 1000000, .duration_ms = 20000,
                              .timeout_ms = 1500, .seed = 1, .lease_lo_ms = 1000, .lease_hi_ms = 3000,
                              .no_expiry_pct = 10 };
    char *devlist = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (!strcmp(a, "--url"))
            cfg.url = v;
        else if (!strcmp(a, "--user"))
            cfg.user = v;
        else if (!strcmp(a, "--devices"))
            devlist = strdup(v);
        else if (!strcmp(a, "--rounds"))
            cfg.rounds = atol(v);
        else if (!strcmp(a, "--duration-ms"))
            cfg.duration_ms = atol(v);
        else if (!strcmp(a, "--timeout-ms"))
            cfg.timeout_ms = atol(v);
        else if (!strcmp(a, "--seed"))
            cfg.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--lease-ms")) {
            if (sscanf(v, "%ld,%ld", &cfg.lease_lo_ms, &cfg.lease_hi_ms) != 2 || cfg.lease_lo_ms < 100 ||
                cfg.lease_hi_ms < cfg.lease_lo_ms)
                usage();
        } else if (!strcmp(a, "--hold-ms")) {
            if (sscanf(v, "%ld,%ld", &cfg.hold_lo_ms, &cfg.hold_hi_ms) != 2 || cfg.hold_lo_ms < 0 ||
                cfg.hold_hi_ms < cfg.hold_lo_ms)
                usage();
        } else if (!strcmp(a, "--no-expiry-pct"))
            cfg.no_expiry_pct = atol(v);
        else
            usage();
        i++;
    }
    if (!cfg.url)
        usage();
    if (!devlist)
        devlist = strdup("lc-dev-0,lc-dev-1,lc-dev-2");
    for (char *save = NULL, *tok = strtok_r(devlist, ",", &save); tok && cfg.n_devices < MAX_DEVICES;
         tok = strtok_r(NULL, ",", &save))
        cfg.devices[cfg.n_devices++] = tok;
    if (cfg.n_devices == 0)
        usage();
    const char *cheat = getenv("LC_HOLDER_CHEAT_MS");
    cfg.cheat_ms = cheat ? atol(cheat) : 0;
    const char *fe = getenv("LC_HOLDER_FENCE");
    cfg.fence_expiry = fe && !strcmp(fe, "expiry");
    rng_state = cfg.seed * 0x9E3779B97F4A7C15ULL + 1;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);

    lc_options o = { 0 };
    o.url = cfg.url;
    o.user_id = cfg.user;
    o.timeout_ms = cfg.timeout_ms;
    o.client_name = "lc_holder";
    lc_client *c = NULL;
    lc_status st = lc_client_new(&o, &c);
    if (st != LC_OK) {
        fprintf(stderr, "lc_holder: lc_client_new: %s\n", lc_status_code(st));
        return 1;
    }
    printf("{\"ev\":\"start\",\"user\":");
    json_str(cfg.user);
    printf(",\"deadline_api\":%d,\"callbacks_api\":%d,\"cheat_ms\":%ld,\"fence_expiry\":%d}\n",
           lc_lock_deadline_us ? 1 : 0, lc_keepalive_start_cb ? 1 : 0, cfg.cheat_ms, cfg.fence_expiry);
    int64_t end_mono = mono_us() + cfg.duration_ms * 1000;
    long rounds = 0, grants = 0;
    for (; rounds < cfg.rounds && mono_us() < end_mono && !stop_requested; rounds++)
        grants += one_round(&cfg, c, end_mono);
    printf("{\"ev\":\"done\",\"rounds\":%ld,\"grants\":%ld}\n", rounds, grants);
    lc_client_free(c);
    free(devlist);
    return 0;
}
