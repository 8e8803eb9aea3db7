/* test_loop.c - the event-loop API of liblockclient (lc_loop, async calls,
 * holds, sessions) against a real devlockd + redis-server.
 *
 * Started by tests/client/t_loop.sh (through run_c), which exports, besides
 * what test_lib.c gets (LC_T_URL, LC_T_URL_B, LC_T_CTL ...):
 *   LC_T_URL_C      broker C (--auth-file)
 *   LC_T_DIR        the suite's directory (redis.port)
 *   LC_T_DEVLOCKD   the broker binary, to start one with a short --session-grace
 * Device names are prefixed with the pid. Every wait is a poll with a
 * deadline; no sleep synchronises anything. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "lockclient.h"

static const char *url_a, *url_c, *ctl, *tdir, *devlockd;
static char dev_prefix[32];

static int64_t now_ms(void)      /* CLOCK_BOOTTIME: the clock of lc_lock_deadline_us */
{
    struct timespec t;
    clock_gettime(CLOCK_BOOTTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int64_t real_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static int64_t mono_us(void)
{
    return now_ms() * 1000;
}

static void pause_ms(long ms)   /* a poll interval, not a synchronisation */
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static const char *dev(const char *name)
{
    static char bufs[64][96];
    static int k;
    char *b = bufs[k++ % 64];
    snprintf(b, 96, "%s%s", dev_prefix, name);
    return b;
}

static int run_ctl(const char *action)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s %s >/dev/null 2>&1", ctl, action);
    return system(cmd);
}

static lc_client *http_client(const char *url, const char *user)
{
    lc_options o = {0};
    o.url = url;
    o.user_id = user;
    o.timeout_ms = 3000;
    lc_client *c = NULL;
    return lc_client_new(&o, &c) == LC_OK ? c : NULL;
}

/* The fence of the device's holder, -1 when free, -2 on error. */
static int64_t holder_fence(lc_client *c, const char *device)
{
    lc_lock *l = NULL;
    if (lc_device_status(c, device, &l) != LC_OK)
        return -2;
    int64_t f = l ? lc_lock_fence(l) : -1;
    lc_lock_free(l);
    return f;
}

struct errs {
    int n, permanent;
    lc_status last;
};

static void on_error(lc_status st, int permanent, const char *detail, void *ud)
{
    (void)detail;
    struct errs *e = ud;
    e->n++;
    e->last = st;
    e->permanent |= permanent;
}

static void log_cb(int level, const char *msg, void *ud)
{
    (void)ud;
    fprintf(stderr, "  log %d: %s\n", level, msg);
}

static lc_loop *loop_at(const char *url, const char *user, long timeout_ms, struct errs *e)
{
    lc_opts *o = NULL;
    lc_loop *l = NULL;
    if (lc_opts_new(&o) != LC_OK)
        return NULL;
    lc_opts_set_str(o, LC_OPT_URL, url);
    lc_opts_set_str(o, LC_OPT_USER_ID, user);
    if (timeout_ms > 0)
        lc_opts_set_long(o, LC_OPT_TIMEOUT_MS, timeout_ms);
    if (e)
        lc_opts_set_error_cb(o, on_error, e);
    if (getenv("LC_T_LOG"))
        lc_opts_set_log(o, log_cb, NULL);
    lc_status st = lc_loop_new(o, &l);
    lc_opts_free(o);
    return st == LC_OK ? l : NULL;
}

/* Runs the loop as a program would: poll on its fd, then process, until
 * *flag is set (flag NULL: for ms), at most ms. Returns the last status. */
static lc_status pump(lc_loop *l, long ms, const int *flag)
{
    int64_t end = now_ms() + ms;
    lc_status st = LC_OK;
    while ((!flag || !*flag) && now_ms() < end) {
        struct pollfd p = {lc_loop_fd(l), POLLIN, 0};
        long t = lc_loop_timeout_ms(l);
        long left = (long)(end - now_ms());
        if (t < 0 || t > left)
            t = left;
        poll(&p, 1, (int)(t < 0 ? 0 : t));
        st = lc_loop_process(l);
        if (st != LC_OK)
            break;
    }
    return st;
}

static int connected_flag;
static lc_status pump_connected(lc_loop *l, long ms)
{
    int64_t end = now_ms() + ms;
    lc_status st = LC_OK;
    while (!lc_loop_connected(l) && now_ms() < end && st == LC_OK)
        st = pump(l, 50, NULL);
    return st;
}

struct res {
    int done;
    lc_status st;
    lc_lock *lock;
    char detail[256];
};

static void acq_cb(lc_status st, lc_lock *lock, const char *detail, void *ud)
{
    struct res *r = ud;
    r->done++;
    r->st = st;
    lc_lock_free(r->lock);
    r->lock = lock;
    snprintf(r->detail, sizeof(r->detail), "%s", detail);
}

static void done_cb(lc_status st, const char *detail, void *ud)
{
    struct res *r = ud;
    r->done++;
    r->st = st;
    snprintf(r->detail, sizeof(r->detail), "%s", detail);
}

/* acquire over the loop, waiting for the answer */
static lc_lock *loop_acquire(lc_loop *l, const char *device, double lease_s, int session)
{
    lc_request req = {0};
    req.device_name = device;
    req.timeout_s = lease_s;
    req.session = session;
    struct res r = {0};
    if (lc_acquire_async(l, &req, acq_cb, &r, NULL) != LC_OK)
        return NULL;
    pump(l, 5000, &r.done);
    if (r.st != LC_OK)
        fprintf(stderr, "  acquire %s: %s: %s\n", device, lc_strerror(r.st), r.detail);
    return r.st == LC_OK ? r.lock : NULL;
}

static lc_status loop_release(lc_loop *l, lc_lock *lk)
{
    struct res r = {0};
    if (lc_release_async(l, lk, done_cb, &r, NULL) != LC_OK)
        return LC_ERR_INTERNAL;
    pump(l, 5000, &r.done);
    return r.done ? r.st : LC_ERR_TIMEOUT;
}

/* ---- tests ---- */

static void test_async_calls(void)
{
    lc_client *c = http_client(url_a, "tl");
    lc_loop *l = loop_at(url_a, "tl", 0, NULL);
    struct res r = {0};
    CHECK(c && l);
    if (!c || !l)
        goto out;
    /* the callback never runs inside the call that starts it */
    lc_request req = {0};
    req.device_name = dev("a1");
    req.timeout_s = 20;
    CHECK(lc_acquire_async(l, &req, acq_cb, &r, NULL) == LC_OK);
    CHECK(r.done == 0);
    pump(l, 5000, &r.done);
    CHECK(r.done == 1 && r.st == LC_OK && r.lock);
    if (!r.lock)
        goto out;
    CHECK(lc_loop_connected(l) == 1);
    CHECK(holder_fence(c, dev("a1")) == lc_lock_fence(r.lock));
    CHECK(lc_lock_deadline_us(r.lock) > mono_us() + 15000000);
    CHECK(lc_lock_lease_s(r.lock) > 19 && lc_lock_lease_s(r.lock) < 21);
    /* a second acquire is denied, with the broker's message */
    struct res d = {0};
    CHECK(lc_acquire_async(l, &req, acq_cb, &d, NULL) == LC_OK);
    pump(l, 5000, &d.done);
    if (d.st != LC_ERR_DENIED)
        fprintf(stderr, "  second acquire: %d %s: %s\n", d.done, lc_strerror(d.st), d.detail);
    CHECK(d.done == 1 && d.st == LC_ERR_DENIED && d.lock == NULL && strstr(d.detail, "locked"));
    /* renew: a new expiry and deadline */
    int64_t dl0 = lc_lock_deadline_us(r.lock);
    pause_ms(20);
    struct res rn = {0};
    CHECK(lc_renew_async(l, r.lock, 40, done_cb, &rn, NULL) == LC_OK);
    pump(l, 5000, &rn.done);
    CHECK(rn.done == 1 && rn.st == LC_OK);
    CHECK(lc_lock_deadline_us(r.lock) > dl0 + 15000000);
    CHECK(lc_lock_expires_us(r.lock) > real_us() + 35000000);
    /* release, then the device is free; a second release is not_found */
    CHECK(loop_release(l, r.lock) == LC_OK);
    CHECK(holder_fence(c, dev("a1")) == -1);
    CHECK(loop_release(l, r.lock) == LC_ERR_NOT_FOUND);
    /* bad arguments start nothing */
    CHECK(lc_acquire_async(l, NULL, acq_cb, &r, NULL) == LC_ERR_BAD_REQUEST);
    lc_request empty = {0};
    CHECK(lc_acquire_async(l, &empty, acq_cb, &r, NULL) == LC_ERR_BAD_REQUEST);
    CHECK(lc_loop_new(NULL, NULL) == LC_ERR_BAD_REQUEST);
    lc_op_cancel(NULL);
    CHECK(lc_hold_stop(NULL) == LC_OK);
    lc_loop_free(NULL);
out:
    lc_lock_free(r.lock);
    lc_loop_free(l);
    lc_client_free(c);
}

static void test_cancel(void)
{
    lc_client *c = http_client(url_a, "tl"), *other = http_client(url_a, "tl-other");
    lc_loop *l = loop_at(url_a, "tl", 0, NULL);
    CHECK(c && other && l);
    if (!c || !other || !l)
        goto out;
    CHECK(pump_connected(l, 5000) == LC_OK && lc_loop_connected(l));
    /* cancelled before it was sent: nothing happens */
    lc_request req = {0};
    req.device_name = dev("c1");
    req.timeout_s = 30;
    struct res r = {0};
    lc_op *op = NULL;
    CHECK(lc_acquire_async(l, &req, acq_cb, &r, &op) == LC_OK && op);
    lc_op_cancel(op);
    pump(l, 300, NULL);
    CHECK(r.done == 0);
    CHECK(holder_fence(c, dev("c1")) == -1);
    /* cancelled after it was sent: the grant comes and is given back */
    CHECK(lc_acquire_async(l, &req, acq_cb, &r, &op) == LC_OK);
    lc_loop_process(l);     /* written now */
    lc_op_cancel(op);
    int64_t end = now_ms() + 5000;
    int64_t f = -2;
    int polls = 0;
    while (now_ms() < end) {
        pump(l, 50, NULL);
        f = holder_fence(c, dev("c1"));
        if (f == -1 && ++polls >= 3)
            break;
    }
    CHECK(r.done == 0);
    CHECK(f == -1);
    {
        /* it was granted (fence 1) and released: the next grant has fence 2 */
        lc_lock *pr = NULL;
        lc_request preq = req;
        CHECK(lc_acquire(other, &preq, &pr) == LC_OK && pr && lc_lock_fence(pr) == 2);
        if (pr)
            lc_release(other, pr);
        lc_lock_free(pr);
    }
    /* a queued acquire (wait) cancelled: once the holder goes, the grant
     * that reaches the loop is given back */
    lc_request oreq = {0};
    oreq.device_name = dev("c2");
    oreq.timeout_s = 30;
    lc_lock *ol = NULL;
    CHECK(lc_acquire(other, &oreq, &ol) == LC_OK);
    lc_request wreq = req;
    wreq.device_name = dev("c2");
    wreq.wait_s = 10;
    CHECK(lc_acquire_async(l, &wreq, acq_cb, &r, &op) == LC_OK);
    pump(l, 300, NULL);     /* sent and queued */
    lc_op_cancel(op);
    CHECK(ol && lc_release(other, ol) == LC_OK);
    int64_t prev = ol ? lc_lock_fence(ol) : 0;
    end = now_ms() + 5000;
    int given = 0;
    while (now_ms() < end && !given) {
        pump(l, 50, NULL);
        f = holder_fence(c, dev("c2"));
        given = f == -1;
    }
    CHECK(given);
    /* and it was granted to us in between: the fence moved on */
    lc_lock *probe = NULL;
    CHECK(lc_acquire(other, &oreq, &probe) == LC_OK && probe && lc_lock_fence(probe) >= prev + 2);
    if (probe)
        lc_release(other, probe);
    lc_lock_free(probe);
    lc_lock_free(ol);
    CHECK(r.done == 0);
out:
    lc_loop_free(l);
    lc_client_free(c);
    lc_client_free(other);
}

static void test_timeout_paused_broker(void)
{
    lc_client *c = http_client(url_a, "tl");
    lc_loop *l = loop_at(url_a, "tl", 1000, NULL);
    CHECK(c && l);
    if (!c || !l)
        goto out;
    CHECK(pump_connected(l, 5000) == LC_OK);
    CHECK(run_ctl("pause-a") == 0);
    lc_request req = {0};
    req.device_name = dev("t1");
    req.timeout_s = 30;
    struct res r = {0};
    int64_t t0 = now_ms();
    CHECK(lc_acquire_async(l, &req, acq_cb, &r, NULL) == LC_OK);
    pump(l, 4000, &r.done);
    int64_t took = now_ms() - t0;
    CHECK(r.done == 1 && r.st == LC_ERR_TIMEOUT);
    CHECK(took >= 900 && took < 2500);
    CHECK(run_ctl("cont-a") == 0);
    /* the broker now runs the acquire: the loop gives the late grant back */
    int64_t end = now_ms() + 8000;
    int64_t f = -2;
    int saw = 0;
    while (now_ms() < end) {
        pump(l, 50, NULL);
        f = holder_fence(c, dev("t1"));
        saw |= f >= 0;
        if (saw && f == -1)
            break;
    }
    CHECK(f == -1);
    CHECK(r.done == 1);
out:
    run_ctl("cont-a");
    lc_loop_free(l);
    lc_client_free(c);
}

struct lost {
    int n;
    lc_status st;
    int64_t at_real_us;
    int64_t expires_us;     /* the lock's expiry as last confirmed, when lost */
    int preempt;
    double grace;
    char by[256];
};

static void on_lost(const lc_lock *lock, lc_status st, const char *detail, void *ud)
{
    (void)detail;
    struct lost *x = ud;
    x->n++;
    x->st = st;
    x->at_real_us = real_us();
    x->expires_us = lc_lock_expires_us(lock);
}

static void on_preempt(const lc_lock *lock, double grace, const char *by, void *ud)
{
    (void)lock;
    struct lost *x = ud;
    x->preempt++;
    x->grace = grace;
    snprintf(x->by, sizeof(x->by), "%s", by);
}

/* Granted after a wait longer than the lease: the deadline comes from a
 * renew right after the grant, not from the long-past send time. */
static void test_grant_after_wait(void)
{
    lc_client *other = http_client(url_a, "tl-other");
    lc_loop *l = loop_at(url_a, "tl", 0, NULL);
    lc_lock *ol = NULL;
    struct res r = {0};
    CHECK(other && l);
    if (!other || !l)
        goto out;
    lc_request oreq = {0};
    oreq.device_name = dev("w1");
    oreq.timeout_s = 30;
    CHECK(lc_acquire(other, &oreq, &ol) == LC_OK);
    lc_request req = {0};
    req.device_name = dev("w1");
    req.timeout_s = 2;
    req.wait_s = 8;
    CHECK(lc_acquire_async(l, &req, acq_cb, &r, NULL) == LC_OK);
    pump(l, 2500, &r.done);     /* queued for longer than its lease */
    CHECK(r.done == 0);
    CHECK(ol && lc_release(other, ol) == LC_OK);
    pump(l, 3000, &r.done);
    CHECK(r.done == 1 && r.st == LC_OK && r.lock);
    if (r.lock) {
        CHECK(lc_lock_deadline_us(r.lock) > mono_us() + 1000000);
        struct lost x = {0};
        lc_keepalive_callbacks cb = {on_lost, NULL, &x};
        lc_hold *h = NULL;
        CHECK(lc_loop_hold(l, r.lock, &cb, &h) == LC_OK);
        pump(l, 2500, NULL);
        CHECK(x.n == 0 && !lc_lock_lost(r.lock));
        CHECK(holder_fence(other, dev("w1")) == lc_lock_fence(r.lock));
        lc_hold_stop(h);
        CHECK(loop_release(l, r.lock) == LC_OK);
    }
out:
    lc_lock_free(ol);
    lc_lock_free(r.lock);
    lc_loop_free(l);
    lc_client_free(other);
}

/* Requests made while the broker is away wait for the connection, within
 * their deadline. */
static void test_op_waits_for_connection(void)
{
    lc_client *c = http_client(url_a, "tl");
    lc_loop *l = loop_at(url_a, "tl", 6000, NULL);
    struct res r = {0};
    CHECK(c && l);
    if (!c || !l)
        goto out;
    CHECK(pump_connected(l, 5000) == LC_OK);
    CHECK(run_ctl("stop-a") == 0);
    int64_t end = now_ms() + 3000;
    while (lc_loop_connected(l) && now_ms() < end)
        pump(l, 50, NULL);
    CHECK(!lc_loop_connected(l));
    lc_request req = {0};
    req.device_name = dev("q1");
    req.timeout_s = 20;
    CHECK(lc_acquire_async(l, &req, acq_cb, &r, NULL) == LC_OK);
    pump(l, 500, &r.done);
    CHECK(r.done == 0);         /* waiting, not failed */
    CHECK(run_ctl("start-a") == 0);
    pump(l, 6000, &r.done);
    CHECK(r.done == 1 && r.st == LC_OK && r.lock);
    CHECK(r.lock && holder_fence(c, dev("q1")) == lc_lock_fence(r.lock));
    if (r.lock)
        CHECK(loop_release(l, r.lock) == LC_OK);
out:
    run_ctl("start-a");
    lc_loop_free(l);
    lc_lock_free(r.lock);
    lc_client_free(c);
}

static void test_reconnect_holds(void)
{
    lc_client *c = http_client(url_a, "tl");
    struct errs e = {0};
    lc_loop *l = loop_at(url_a, "tl", 0, &e);
    CHECK(c && l);
    if (!c || !l)
        goto out;
    lc_lock *lk = loop_acquire(l, dev("r1"), 6, 0);
    lc_lock *nx = loop_acquire(l, dev("r2"), -1, 0);     /* no expiry */
    CHECK(lk && nx);
    if (!lk || !nx)
        goto out2;
    struct lost x = {0}, y = {0};
    lc_keepalive_callbacks cb = {on_lost, on_preempt, &x}, cb2 = {on_lost, on_preempt, &y};
    lc_hold *h = NULL, *h2 = NULL;
    CHECK(lc_loop_hold(l, lk, &cb, &h) == LC_OK);
    CHECK(lc_loop_hold(l, nx, &cb2, &h2) == LC_OK);
    pump(l, 500, NULL);
    CHECK(run_ctl("stop-a") == 0);
    int64_t end = now_ms() + 3000;
    while (lc_loop_connected(l) && now_ms() < end)
        pump(l, 50, NULL);
    CHECK(!lc_loop_connected(l));
    CHECK(run_ctl("start-a") == 0);
    CHECK(pump_connected(l, 8000) == LC_OK && lc_loop_connected(l));
    CHECK(e.n >= 1 && !e.permanent);    /* the failed connects were reported */
    /* past the first lease: renewed over the new connection */
    pump(l, 6500, NULL);
    CHECK(x.n == 0 && y.n == 0);
    CHECK(!lc_lock_lost(lk) && !lc_lock_lost(nx));
    CHECK(holder_fence(c, dev("r1")) == lc_lock_fence(lk));
    CHECK(holder_fence(c, dev("r2")) == lc_lock_fence(nx));
    CHECK(lc_lock_deadline_us(lk) > mono_us());
    /* a no-expiry lock is lost at once when an admin ends it */
    CHECK(lc_force_release(c, dev("r2"), "test") == LC_OK);
    pump(l, 3000, &y.n);
    CHECK(y.n == 1 && y.st == LC_ERR_LOST && lc_lock_lost(nx));
    CHECK(lc_hold_stop(h2) == LC_ERR_LOST);
    CHECK(lc_hold_stop(h) == LC_OK);
    CHECK(loop_release(l, lk) == LC_OK);
out2:
    lc_lock_free(lk);
    lc_lock_free(nx);
out:
    lc_loop_free(l);
    lc_client_free(c);
}

static void test_hold_self_fencing(void)
{
    lc_client *c = http_client(url_a, "tl");
    lc_loop *l = loop_at(url_a, "tl", 0, NULL);
    CHECK(c && l);
    if (!c || !l)
        goto out;
    lc_lock *lk = loop_acquire(l, dev("f1"), 3, 0);
    CHECK(lk != NULL);
    if (!lk)
        goto out;
    struct lost x = {0};
    lc_keepalive_callbacks cb = {on_lost, NULL, &x};
    lc_hold *h = NULL;
    CHECK(lc_loop_hold(l, lk, &cb, &h) == LC_OK);
    pump(l, 1500, NULL);    /* one renewal */
    CHECK(run_ctl("pause-a") == 0);
    int64_t t0 = now_ms();
    pump(l, 6000, &x.n);
    CHECK(x.n == 1 && x.st == LC_ERR_LOST && lc_lock_lost(lk));
    /* before the broker could end the lease: its expiry as last confirmed */
    CHECK(x.at_real_us > 0 && x.at_real_us < x.expires_us);
    CHECK(now_ms() - t0 < 3000);
    run_ctl("cont-a");
    /* the lease does run out on the broker afterwards */
    int64_t end = now_ms() + 6000;
    while (holder_fence(c, dev("f1")) == lc_lock_fence(lk) && now_ms() < end)
        pause_ms(50);
    CHECK(holder_fence(c, dev("f1")) == -1);
    CHECK(real_us() >= x.at_real_us);
    CHECK(lc_hold_stop(h) == LC_ERR_LOST);
    lc_lock_free(lk);
out:
    run_ctl("cont-a");
    lc_loop_free(l);
    lc_client_free(c);
}

/* devlock_websocket_clients of a broker, -1 on error */
static long ws_clients(const char *url)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "curl -sf -m 3 %s/metrics | sed -n 's/^devlock_websocket_clients //p'", url);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    long n = -1;
    if (fscanf(p, "%ld", &n) != 1)
        n = -1;
    pclose(p);
    return n;
}

#define MANY 50
static void test_many_holds_one_connection(void)
{
    lc_client *c = http_client(url_a, "tl");
    long before = ws_clients(url_a);
    lc_loop *l = loop_at(url_a, "tl", 0, NULL);
    CHECK(c && l && before >= 0);
    if (!c || !l)
        goto out;
    struct res r[MANY];
    memset(r, 0, sizeof(r));
    char names[MANY][64];
    for (int i = 0; i < MANY; i++) {
        snprintf(names[i], sizeof(names[i]), "%s", dev("m"));
        snprintf(names[i] + strlen(names[i]), sizeof(names[i]) - strlen(names[i]), "%d", i);
        lc_request req = {0};
        req.device_name = names[i];
        req.timeout_s = 3;
        CHECK(lc_acquire_async(l, &req, acq_cb, &r[i], NULL) == LC_OK);
    }
    int64_t end = now_ms() + 8000;
    int all = 0;
    while (!all && now_ms() < end) {
        pump(l, 50, NULL);
        all = 1;
        for (int i = 0; i < MANY; i++)
            all &= r[i].done;
    }
    CHECK(all);
    struct lost x[MANY];
    memset(x, 0, sizeof(x));
    lc_hold *h[MANY] = {0};
    for (int i = 0; i < MANY; i++) {
        CHECK(r[i].st == LC_OK && r[i].lock);
        lc_keepalive_callbacks cb = {on_lost, NULL, &x[i]};
        if (r[i].lock)
            CHECK(lc_loop_hold(l, r[i].lock, &cb, &h[i]) == LC_OK);
    }
    /* two leases long: every lock renewed */
    pump(l, 6500, NULL);
    int lost = 0, held = 0;
    for (int i = 0; i < MANY; i++) {
        lost += x[i].n;
        held += r[i].lock && holder_fence(c, names[i]) == lc_lock_fence(r[i].lock);
    }
    CHECK(lost == 0 && held == MANY);
    long during = ws_clients(url_a);
    CHECK(during == before + 1);
    if (during != before + 1)
        fprintf(stderr, "  websocket clients before %ld, with %d holds %ld\n", before, MANY, during);
    for (int i = 0; i < MANY; i++) {
        lc_hold_stop(h[i]);
        if (r[i].lock) {
            struct res d = {0};
            lc_release_async(l, r[i].lock, done_cb, &d, NULL);
            pump(l, 3000, &d.done);
        }
        lc_lock_free(r[i].lock);
    }
out:
    lc_loop_free(l);
    lc_client_free(c);
}

/* ---- session locks: a broker of our own with --session-grace 2 ---- */

static pid_t own_pid = -1;
static char own_url[64];
static int own_port;

/* Starts our own broker on port (0: any) with --session-grace grace and
 * --preempt-grace 3. */
static int start_own_broker(const char *grace, int port)
{
    char pf[512], rp[512], log[512];
    snprintf(pf, sizeof(pf), "%s/tl-own.port.%d", tdir, (int)getpid());
    snprintf(log, sizeof(log), "%s/tl-own.log", tdir);
    unlink(pf);
    char path[512];
    snprintf(path, sizeof(path), "%s/redis.port", tdir);
    FILE *f = fopen(path, "r");
    int redis_port = 0;
    if (!f || fscanf(f, "%d", &redis_port) != 1) {
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    snprintf(rp, sizeof(rp), "redis://127.0.0.1:%d", redis_port);
    own_pid = fork();
    if (own_pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        char ps[16];
        snprintf(ps, sizeof(ps), "%d", port);
        execl(devlockd, devlockd, "--host", "127.0.0.1", "--port", ps, "--port-file", pf,
              "--redis-url", rp, "--session-grace", grace, "--preempt-grace", "3", (char *)NULL);
        _exit(127);
    }
    /* run.sh's cleanup kills the PID of every DIR/NAME.pid: ours too if we crash */
    char pidf[512];
    snprintf(pidf, sizeof(pidf), "%s/tl-own.pid", tdir);
    FILE *pfh = own_pid > 0 ? fopen(pidf, "w") : NULL;
    if (pfh) {
        fprintf(pfh, "%d\n", (int)own_pid);
        fclose(pfh);
    }
    int64_t end = now_ms() + 10000;
    while (now_ms() < end) {
        f = fopen(pf, "r");
        int got = 0;
        if (f && fscanf(f, "%d", &got) == 1 && got > 0) {
            fclose(f);
            own_port = got;
            snprintf(own_url, sizeof(own_url), "http://127.0.0.1:%d", got);
            lc_client *c = http_client(own_url, "probe");
            lc_health hl;
            int ready = c && lc_health_check(c, &hl) == LC_OK;
            lc_client_free(c);
            if (ready)
                return 0;
        } else if (f) {
            fclose(f);
        }
        pause_ms(50);
    }
    return -1;
}

static void stop_own_broker(void)
{
    if (own_pid > 0) {
        kill(own_pid, SIGCONT);
        kill(own_pid, SIGTERM);
        waitpid(own_pid, NULL, 0);
        char pidf[512];
        snprintf(pidf, sizeof(pidf), "%s/tl-own.pid", tdir);
        unlink(pidf);
    }
    own_pid = -1;
}

/* The child: takes a session lock over a loop, says so, then runs the loop
 * until it is killed. */
static void session_child(int wfd, const char *device)
{
    lc_loop *l = loop_at(own_url, "tl-sess", 0, NULL);
    lc_lock *lk = l ? loop_acquire(l, device, -1, 1) : NULL;
    char msg[128];
    snprintf(msg, sizeof(msg), "%s %lld\n", lk && lc_lock_session_id(lk) ? lc_lock_session_id(lk) : "-",
             lk ? (long long)lc_lock_fence(lk) : -1LL);
    if (write(wfd, msg, strlen(msg)) < 0)
        _exit(1);
    for (int64_t end = now_ms() + 60000; now_ms() < end;)
        pump(l, 1000, NULL);
    _exit(0);
}

static void test_session_lock(void)
{
    if (!tdir || !devlockd || start_own_broker("2", 0) != 0) {
        CHECK(!"own broker with --session-grace 2 started");
        stop_own_broker();
        return;
    }
    const char *device = dev("s1");
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t kid = fork();
    if (kid == 0) {
        close(p[0]);
        session_child(p[1], device);
    }
    close(p[1]);
    char buf[128] = "";
    FILE *rf = fdopen(p[0], "r");
    CHECK(rf && fgets(buf, sizeof(buf), rf));
    if (rf)
        fclose(rf);
    char sid[64] = "";
    long long fence = -1;
    CHECK(sscanf(buf, "%63s %lld", sid, &fence) == 2 && strlen(sid) == 36 && fence >= 0);
    lc_client *c = http_client(own_url, "tl-other");
    lc_request req = {0};
    req.device_name = device;
    req.timeout_s = 10;
    lc_lock *got = NULL;
    CHECK(c && lc_acquire(c, &req, &got) == LC_ERR_DENIED);    /* held by the session */
    /* the session lives with its process: a second and a half later
     * (nothing renews it) it is still held */
    pause_ms(1500);
    CHECK(lc_acquire(c, &req, &got) == LC_ERR_DENIED);
    kill(kid, SIGKILL);
    waitpid(kid, NULL, 0);
    int64_t t0 = now_ms();
    lc_status st = LC_ERR_DENIED;
    while (st == LC_ERR_DENIED && now_ms() < t0 + 10000) {
        pause_ms(100);
        st = lc_acquire(c, &req, &got);
    }
    int64_t took = now_ms() - t0;
    CHECK(st == LC_OK && got);
    CHECK(took >= 1500 && took < 6000);     /* after the grace (2 s), not a lease */
    if (got)
        lc_release(c, got);
    lc_lock_free(got);
    lc_client_free(c);
}

/* A session lock of a loop survives a restart of its broker (re-attached),
 * and its hold is declared lost before the grace can end when the broker
 * stops answering. */
static void test_session_keepalive(void)
{
    if (own_pid <= 0) {
        CHECK(!"own broker running");
        return;
    }
    lc_opts *o = NULL;
    lc_loop *l = NULL;
    lc_opts_new(&o);
    lc_opts_set_str(o, LC_OPT_URL, own_url);
    lc_opts_set_str(o, LC_OPT_USER_ID, "tl-sess");
    lc_opts_set_long(o, LC_OPT_SESSION_GRACE_MS, 2000);
    CHECK(lc_loop_new(o, &l) == LC_OK);
    lc_opts_free(o);
    lc_client *c = http_client(own_url, "tl-other");
    lc_lock *lk = l ? loop_acquire(l, dev("s2"), -1, 1) : NULL;
    CHECK(lk && lc_lock_session_id(lk) && lc_loop_session_id(l) &&
          !strcmp(lc_lock_session_id(lk), lc_loop_session_id(l)));
    if (!lk || !c)
        goto out;
    struct lost x = {0};
    lc_keepalive_callbacks cb = {on_lost, NULL, &x};
    lc_hold *h = NULL;
    CHECK(lc_loop_hold(l, lk, &cb, &h) == LC_OK);
    /* pings keep it confirmed: well past the grace, still held */
    pump(l, 3000, NULL);
    CHECK(x.n == 0 && lc_lock_deadline_us(lk) > mono_us());
    CHECK(holder_fence(c, dev("s2")) == lc_lock_fence(lk));
    /* the broker stops answering: lost before the grace could end */
    kill(own_pid, SIGSTOP);
    int64_t t0 = now_ms();
    pump(l, 4000, &x.n);
    CHECK(x.n == 1 && x.st == LC_ERR_LOST);
    CHECK(now_ms() - t0 < 2000);
    kill(own_pid, SIGCONT);
    lc_hold_stop(h);
out:
    lc_lock_free(lk);
    lc_loop_free(l);
    lc_client_free(c);
}

/* ---- a TCP relay to the broker whose connections the test can cut ---- */

#define RELAY_MAX 8
struct relay {
    int lfd, port, target;
    int wake[2];
    int pair[RELAY_MAX][2];
    int cut;        /* atomic: close every relayed connection */
    int stop;       /* atomic */
    pthread_t th;
};

static void relay_close(struct relay *r, int i)
{
    close(r->pair[i][0]);
    close(r->pair[i][1]);
    r->pair[i][0] = r->pair[i][1] = -1;
}

static void *relay_main(void *arg)
{
    struct relay *r = arg;
    while (!__atomic_load_n(&r->stop, __ATOMIC_SEQ_CST)) {
        struct pollfd p[2 + 2 * RELAY_MAX];
        int n = 0;
        p[n++] = (struct pollfd){r->lfd, POLLIN, 0};
        p[n++] = (struct pollfd){r->wake[0], POLLIN, 0};
        for (int i = 0; i < RELAY_MAX; i++)
            for (int k = 0; k < 2; k++)
                p[n++] = (struct pollfd){r->pair[i][k], POLLIN, 0};
        if (poll(p, (nfds_t)n, 1000) < 0)
            continue;
        char b[65536];
        if (p[1].revents) {
            if (read(r->wake[0], b, sizeof(b)) < 0) {
                /* nothing: only a wake-up */
            }
        }
        if (__atomic_exchange_n(&r->cut, 0, __ATOMIC_SEQ_CST))
            for (int i = 0; i < RELAY_MAX; i++)
                if (r->pair[i][0] >= 0)
                    relay_close(r, i);
        if (p[0].revents & POLLIN) {
            int c = accept(r->lfd, NULL, NULL);
            struct sockaddr_in a = {0};
            a.sin_family = AF_INET;
            a.sin_port = htons((uint16_t)r->target);
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            int u = socket(AF_INET, SOCK_STREAM, 0);
            int slot = -1;
            for (int i = 0; i < RELAY_MAX && slot < 0; i++)
                if (r->pair[i][0] < 0)
                    slot = i;
            if (c >= 0 && u >= 0 && slot >= 0 && connect(u, (struct sockaddr *)&a, sizeof(a)) == 0) {
                r->pair[slot][0] = c;
                r->pair[slot][1] = u;
            } else {
                if (c >= 0)
                    close(c);
                if (u >= 0)
                    close(u);
            }
        }
        for (int i = 0; i < RELAY_MAX; i++) {
            for (int k = 0; k < 2 && r->pair[i][0] >= 0; k++) {
                struct pollfd *q = &p[2 + 2 * i + k];
                if (q->fd != r->pair[i][k] || !q->revents)
                    continue;
                ssize_t got = read(r->pair[i][k], b, sizeof(b));
                if (got <= 0 || write(r->pair[i][1 - k], b, (size_t)got) != got)
                    relay_close(r, i);
            }
        }
    }
    for (int i = 0; i < RELAY_MAX; i++)
        if (r->pair[i][0] >= 0)
            relay_close(r, i);
    return NULL;
}

static int relay_start(struct relay *r, int target)
{
    memset(r, 0, sizeof(*r));
    for (int i = 0; i < RELAY_MAX; i++)
        r->pair[i][0] = r->pair[i][1] = -1;
    r->target = target;
    r->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    if (r->lfd < 0 || bind(r->lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(r->lfd, 8) != 0 ||
        getsockname(r->lfd, (struct sockaddr *)&a, &al) != 0 || pipe(r->wake) != 0)
        return -1;
    r->port = ntohs(a.sin_port);
    return pthread_create(&r->th, NULL, relay_main, r) == 0 ? 0 : -1;
}

static void relay_poke(struct relay *r, int *flag)
{
    __atomic_store_n(flag, 1, __ATOMIC_SEQ_CST);
    if (write(r->wake[1], "x", 1) != 1) {
        /* the thread polls once a second anyway */
    }
}

static void relay_stop(struct relay *r)
{
    relay_poke(r, &r->stop);
    pthread_join(r->th, NULL);
    close(r->lfd);
    close(r->wake[0]);
    close(r->wake[1]);
}

/* A session lock survives the loss of its connection: the loop attaches
 * the session on the next one within the grace (2 s here). Without the
 * attach the broker ends it 2 s after the old socket closed. */
static void test_session_reattach(void)
{
    if (own_pid <= 0) {
        CHECK(!"own broker running");
        return;
    }
    struct relay rl;
    if (relay_start(&rl, own_port) != 0) {
        CHECK(!"relay started");
        return;
    }
    char via[64];
    snprintf(via, sizeof(via), "http://127.0.0.1:%d", rl.port);
    lc_opts *o = NULL;
    lc_loop *l = NULL;
    lc_opts_new(&o);
    lc_opts_set_str(o, LC_OPT_URL, via);
    lc_opts_set_str(o, LC_OPT_USER_ID, "tl-sess");
    lc_opts_set_long(o, LC_OPT_SESSION_GRACE_MS, 2000);
    CHECK(lc_loop_new(o, &l) == LC_OK);
    lc_opts_free(o);
    lc_client *c = http_client(own_url, "tl-other");
    lc_lock *lk = l ? loop_acquire(l, dev("s3"), -1, 1) : NULL;
    CHECK(lk && c);
    if (!lk || !c)
        goto out;
    char sid[64];
    snprintf(sid, sizeof(sid), "%s", lc_loop_session_id(l) ? lc_loop_session_id(l) : "");
    struct lost x = {0};
    lc_keepalive_callbacks cb = {on_lost, NULL, &x};
    lc_hold *h = NULL;
    CHECK(lc_loop_hold(l, lk, &cb, &h) == LC_OK);
    pump(l, 300, NULL);
    for (int round = 0; round < 2; round++) {
        relay_poke(&rl, &rl.cut);
        int64_t end = now_ms() + 3000;
        while (lc_loop_connected(l) && now_ms() < end)
            pump(l, 20, NULL);
        CHECK(pump_connected(l, 3000) == LC_OK && lc_loop_connected(l));
        /* past the grace since the old socket closed */
        pump(l, 3000, NULL);
        CHECK(x.n == 0 && !lc_lock_lost(lk));
        CHECK(holder_fence(c, dev("s3")) == lc_lock_fence(lk));
    }
    CHECK(lc_loop_session_id(l) && !strcmp(lc_loop_session_id(l), sid));
    lc_hold_stop(h);
    CHECK(loop_release(l, lk) == LC_OK);
    CHECK(holder_fence(c, dev("s3")) == -1);
out:
    lc_lock_free(lk);
    lc_loop_free(l);
    lc_client_free(c);
    relay_stop(&rl);
}

struct preemptor {
    lc_client *c;
    const char *device;
    lc_status st;
    int64_t fence;
};

static void *preempt_main(void *arg)
{
    struct preemptor *p = arg;
    lc_request req = {0};
    req.device_name = p->device;
    req.type = LC_QUEUE_EXECUTING;      /* outranks MANUAL_OPERATOR */
    req.timeout_s = 10;
    lc_lock *l = NULL;
    p->st = lc_acquire(p->c, &req, &l);
    p->fence = l ? lc_lock_fence(l) : -1;
    if (l)
        lc_release(p->c, l);
    lc_lock_free(l);
    return NULL;
}

/* A higher priority asks for a held device (--preempt-grace 3): the hold
 * gets on_preempt_requested at once with the window and the requester;
 * releasing then hands the device over without a loss. */
static void test_preempt_warning(void)
{
    if (own_pid <= 0) {
        CHECK(!"own broker running");
        return;
    }
    lc_loop *l = loop_at(own_url, "tl-pre", 0, NULL);
    lc_lock *lk = l ? loop_acquire(l, dev("p1"), 30, 0) : NULL;
    CHECK(lk != NULL);
    if (!lk) {
        lc_loop_free(l);
        return;
    }
    struct lost x = {0};
    lc_keepalive_callbacks cb = {on_lost, on_preempt, &x};
    lc_hold *h = NULL;
    CHECK(lc_loop_hold(l, lk, &cb, &h) == LC_OK);
    pump(l, 200, NULL);
    struct preemptor p = {http_client(own_url, "tl-boss"), dev("p1"), LC_ERR_INTERNAL, -1};
    pthread_t th;
    int64_t t0 = now_ms();
    CHECK(p.c && pthread_create(&th, NULL, preempt_main, &p) == 0);
    pump(l, 2500, &x.preempt);
    CHECK(x.preempt == 1 && now_ms() - t0 < 2000);
    CHECK(x.grace > 2.5 && x.grace < 3.5);
    CHECK(lc_lock_preempt_grace_s(lk) > 2.5);
    CHECK(strstr(x.by, "tl-boss") && strstr(x.by, "QUEUE_EXECUTING"));
    CHECK(x.n == 0);
    struct res r = {0};
    CHECK(lc_release_async(l, lk, done_cb, &r, NULL) == LC_OK);
    pump(l, 3000, &r.done);
    CHECK(r.st == LC_OK);
    pthread_join(th, NULL);
    CHECK(p.st == LC_OK && p.fence > lc_lock_fence(lk));
    pump(l, 300, NULL);
    CHECK(x.n == 0 && x.preempt == 1);     /* our own release is no loss */
    CHECK(lc_hold_stop(h) == LC_OK);
    lc_client_free(p.c);
    lc_lock_free(lk);
    lc_loop_free(l);
}

static void test_permanent_401(void)
{
    if (!url_c) {
        CHECK(!"LC_T_URL_C set");
        return;
    }
    struct errs e = {0};
    lc_loop *l = loop_at(url_c, "tl", 0, &e);
    CHECK(l != NULL);
    if (!l)
        return;
    lc_request req = {0};
    req.device_name = dev("u1");
    struct res r = {0};
    CHECK(lc_acquire_async(l, &req, acq_cb, &r, NULL) == LC_OK);
    lc_status st = pump(l, 5000, NULL);
    CHECK(st == LC_ERR_UNAUTHORIZED);
    CHECK(lc_loop_process(l) == LC_ERR_UNAUTHORIZED);
    CHECK(r.done == 1 && r.st == LC_ERR_UNAUTHORIZED);
    CHECK(e.n >= 1 && e.permanent && e.last == LC_ERR_UNAUTHORIZED);
    CHECK(lc_acquire_async(l, &req, acq_cb, &r, NULL) == LC_ERR_UNAUTHORIZED);
    lc_loop_free(l);
}

/* A watch (a loop on its own thread) gives up on 401 and says why. */
static void test_watch_status_401(void)
{
    lc_opts *o = NULL;
    lc_opts_new(&o);
    lc_opts_set_str(o, LC_OPT_URL, url_c);
    struct errs e = {0};
    lc_opts_set_error_cb(o, on_error, &e);
    lc_watch *w = NULL;
    CHECK(lc_watch_new_opts(o, NULL, &w) == LC_OK && w);
    lc_opts_free(o);
    int64_t end = now_ms() + 5000;
    while (w && lc_watch_status(w) == LC_OK && now_ms() < end)
        pause_ms(20);
    CHECK(w && lc_watch_status(w) == LC_ERR_UNAUTHORIZED);
    CHECK(lc_watch_wait_ready(w, 100) == LC_ERR_TIMEOUT && !lc_watch_connected(w));
    lc_watch_free(w);
    CHECK(e.n >= 1 && e.permanent && e.last == LC_ERR_UNAUTHORIZED);
}

/* A lock taken over HTTP (lc_acquire) kept by a hold of the loop. */
static void test_hold_http_lock(void)
{
    lc_client *c = http_client(url_a, "tl");
    lc_loop *l = loop_at(url_a, "tl", 0, NULL);
    CHECK(c && l);
    if (!c || !l)
        goto out;
    lc_request req = {0};
    req.device_name = dev("hh");
    req.timeout_s = 2;
    lc_lock *lk = NULL;
    CHECK(lc_acquire(c, &req, &lk) == LC_OK && lk);
    if (!lk)
        goto out;
    struct lost x = {0};
    lc_keepalive_callbacks cb = {on_lost, NULL, &x};
    lc_hold *h = NULL;
    CHECK(lc_loop_hold(l, lk, &cb, &h) == LC_OK);
    pump(l, 3500, NULL);
    CHECK(x.n == 0 && !lc_lock_lost(lk));
    CHECK(holder_fence(c, dev("hh")) == lc_lock_fence(lk));
    CHECK(lc_lock_deadline_us(lk) > mono_us());
    CHECK(lc_hold_stop(h) == LC_OK);
    CHECK(lc_release(c, lk) == LC_OK);
    lc_lock_free(lk);
out:
    lc_loop_free(l);
    lc_client_free(c);
}

static void test_free_cancels(void)
{
    lc_loop *l = loop_at(url_a, "tl", 0, NULL);
    CHECK(l != NULL);
    if (!l)
        return;
    lc_request req = {0};
    req.device_name = dev("x1");
    struct res r = {0};
    CHECK(lc_acquire_async(l, &req, acq_cb, &r, NULL) == LC_OK);
    lc_loop_free(l);
    CHECK(r.done == 1 && r.st == LC_ERR_CANCELLED);
}

int main(int argc, char **argv)
{
    url_a = getenv("LC_T_URL");
    url_c = getenv("LC_T_URL_C");
    ctl = getenv("LC_T_CTL");
    tdir = getenv("LC_T_DIR");
    devlockd = getenv("LC_T_DEVLOCKD");
    if (!url_a || !ctl) {
        fprintf(stderr, "run me from tests/client/t_loop.sh\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    snprintf(dev_prefix, sizeof(dev_prefix), "l%ld.", (long)getpid());
    const char *only = argc > 1 ? argv[1] : NULL;
    (void)connected_flag;
#define T(fn) do { if (!only || strstr(#fn, only)) RUN(fn); } while (0)
    T(test_async_calls);
    T(test_cancel);
    T(test_free_cancels);
    T(test_grant_after_wait);
    T(test_timeout_paused_broker);
    T(test_hold_self_fencing);
    T(test_op_waits_for_connection);
    T(test_reconnect_holds);
    T(test_many_holds_one_connection);
    T(test_session_lock);
    T(test_session_reattach);
    T(test_session_keepalive);
    T(test_preempt_warning);
    stop_own_broker();
    T(test_permanent_401);
    T(test_watch_status_401);
    T(test_hold_http_lock);
    DONE();
}
