/* fence_prog.c - helper of tests/client/t_fence.sh.
 *
 *   fence_prog tls URL [CA_FILE [CERT_FILE]]
 *       one health check through an lc_client made from an lc_opts (CA file
 *       and client certificate if given and not empty; else the defaults:
 *       SSL_CERT_FILE, ...); prints "status=WIRE permanent=P calls=N" and
 *       the detail on a second line, then, when it worked, whether a
 *       keepalive renews over TLS; exits with lc_status_exit_code.
 *   fence_prog preempt URL
 *       against a broker with --preempt-grace 2: a keepalive reports the
 *       preemption window once (renew answers for a lock with a lease,
 *       validate answers for one without), with its grace, then the loss.
 *       Last line "N passed, M failed".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "lockclient.h"

struct err_rec {
    int calls, permanent;
    lc_status status;
};

static void on_error(lc_status st, int permanent, const char *detail, void *ud)
{
    struct err_rec *e = ud;
    (void)detail;
    e->calls++;
    e->permanent = permanent;
    e->status = st;
}

/* After a good health check: a 1.5 s lease kept over TLS by a keepalive
 * (its own connection, made from the same options) for three renewals. */
static int keep_over_tls(lc_client *c)
{
    lc_request r = {0};
    char name[64];
    snprintf(name, sizeof(name), "fp%ld.tls", (long)getpid());
    r.device_name = name;
    r.timeout_s = 1.5;
    lc_lock *l = NULL;
    if (lc_acquire(c, &r, &l) != LC_OK)
        return 0;
    lc_keepalive *ka = NULL;
    int ok = lc_keepalive_start(c, l, 0, NULL, NULL, &ka) == LC_OK;
    for (int i = 0; ok && i < 100 && lc_keepalive_renewals(ka) < 3 && !lc_lock_lost(l); i++) {
        struct timespec t = {0, 50 * 1000000L};
        nanosleep(&t, NULL);
    }
    ok = ok && lc_keepalive_renewals(ka) >= 3 && lc_keepalive_stop(ka) == LC_OK;
    ok = lc_release(c, l) == LC_OK && ok;
    lc_lock_free(l);
    return ok;
}

static int tls_main(const char *url, const char *ca, const char *cert)
{
    lc_opts *o = NULL;
    struct err_rec e = {0, 0, LC_OK};
    if (lc_opts_new(&o) != LC_OK || lc_opts_set_str(o, LC_OPT_URL, url) != LC_OK)
        return 2;
    if (ca && *ca && lc_opts_set_str(o, LC_OPT_CA_FILE, ca) != LC_OK)
        return 2;
    if (cert && *cert && lc_opts_set_str(o, LC_OPT_CERT_FILE, cert) != LC_OK)
        return 2;
    lc_opts_set_long(o, LC_OPT_TIMEOUT_MS, 3000);
    lc_opts_set_error_cb(o, on_error, &e);
    lc_client *c = NULL;
    lc_status st = lc_client_new_opts(o, &c);
    lc_opts_free(o);
    if (st != LC_OK)
        return 2;
    lc_health h;
    st = lc_health_check(c, &h);
    printf("status=%s permanent=%d calls=%d\n", lc_status_code(st), e.permanent, e.calls);
    printf("%s\n", lc_errmsg(c));
    if (st == LC_OK)
        printf("keepalive over TLS: %s\n", keep_over_tls(c) ? "ok" : "FAILED");
    lc_client_free(c);
    return lc_status_exit_code(st);
}

/* ---- preempt ---- */

static const char *url;

static int64_t now_ms(void)      /* CLOCK_BOOTTIME: the clock of lc_lock_deadline_us */
{
    struct timespec t;
    clock_gettime(CLOCK_BOOTTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void pause_ms(long ms)   /* a poll interval, not a synchronisation */
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

struct rec {
    pthread_mutex_t mu;
    int preempts, losts;
    double grace;
    lc_status lost_status;
    char by[256];
};

static void on_preempt(const lc_lock *lock, double grace_s, const char *by, void *ud)
{
    struct rec *r = ud;
    (void)lock;
    pthread_mutex_lock(&r->mu);
    r->preempts++;
    r->grace = grace_s;
    snprintf(r->by, sizeof(r->by), "%s", by ? by : "");
    pthread_mutex_unlock(&r->mu);
}

static void on_lost(const lc_lock *lock, lc_status st, const char *detail, void *ud)
{
    struct rec *r = ud;
    (void)lock;
    (void)detail;
    pthread_mutex_lock(&r->mu);
    r->losts++;
    r->lost_status = st;
    pthread_mutex_unlock(&r->mu);
}

static int count(struct rec *r, int *field)
{
    pthread_mutex_lock(&r->mu);
    int n = *field;
    pthread_mutex_unlock(&r->mu);
    return n;
}

struct boss {
    const char *device;
    lc_status status;
};

static void *boss_main(void *arg)
{
    struct boss *b = arg;
    lc_opts *o = NULL;
    lc_client *c = NULL;
    lc_opts_new(&o);
    lc_opts_set_str(o, LC_OPT_URL, url);
    lc_opts_set_str(o, LC_OPT_USER_ID, "boss");
    lc_client_new_opts(o, &c);
    lc_opts_free(o);
    lc_request r = {0};
    r.device_name = b->device;
    r.type = LC_MANUAL_OPERATOR;
    r.timeout_s = 30;
    lc_lock *l = NULL;
    b->status = c ? lc_acquire(c, &r, &l) : LC_ERR_NOMEM;  /* waits for the 2 s window */
    if (l)
        (void)lc_release(c, l);
    lc_lock_free(l);
    lc_client_free(c);
    return NULL;
}

static void preempt_case(const char *device, double lease_s)
{
    lc_opts *o = NULL;
    lc_client *c = NULL;
    lc_opts_new(&o);
    lc_opts_set_str(o, LC_OPT_URL, url);
    lc_opts_set_str(o, LC_OPT_USER_ID, "holder");
    lc_opts_set_long(o, LC_OPT_CHECK_INTERVAL_MS, 300);
    CHECK(lc_client_new_opts(o, &c) == LC_OK);
    lc_opts_free(o);
    if (!c)
        return;
    char name[96];
    snprintf(name, sizeof(name), "fp%ld.%s", (long)getpid(), device);
    lc_request r = {0};
    r.device_name = name;
    r.type = LC_QUEUE_QUEUED;
    r.timeout_s = lease_s;
    lc_lock *l = NULL;
    CHECK(lc_acquire(c, &r, &l) == LC_OK);
    if (!l) {
        lc_client_free(c);
        return;
    }
    static struct rec rc;
    memset(&rc, 0, sizeof(rc));
    pthread_mutex_init(&rc.mu, NULL);
    lc_keepalive_callbacks cbs = {on_lost, on_preempt, &rc};
    lc_keepalive *ka = NULL;
    CHECK(lc_keepalive_start_cb(c, l, 0, &cbs, &ka) == LC_OK);
    CHECK(lc_lock_preempt_grace_s(l) == 0);
    struct boss b = {name, LC_OK};
    pthread_t t;
    int64_t t0 = now_ms();
    pthread_create(&t, NULL, boss_main, &b);
    int64_t end = now_ms() + 4000;
    while (count(&rc, &rc.preempts) == 0 && now_ms() < end)
        pause_ms(10);
    int64_t seen = now_ms() - t0;
    CHECK(count(&rc, &rc.preempts) == 1);
    CHECK(seen < 2000);                       /* inside the window */
    CHECK(rc.grace == 2 && lc_lock_preempt_grace_s(l) == 2);
    CHECK(strstr(rc.by, "\"user_id\":\"boss\"") && strstr(rc.by, "MANUAL_OPERATOR"));
    CHECK(!lc_lock_lost(l));
    /* the holder does not release: preempted at the end of the window */
    pthread_join(t, NULL);
    CHECK(b.status == LC_OK);
    end = now_ms() + 4000;
    while (!lc_lock_lost(l) && now_ms() < end)
        pause_ms(10);
    CHECK(lc_lock_lost(l));
    CHECK(count(&rc, &rc.preempts) == 1);     /* once per window, however many renews saw it */
    CHECK(count(&rc, &rc.losts) == 1);
    CHECK(rc.lost_status == LC_ERR_FORBIDDEN || rc.lost_status == LC_ERR_NOT_FOUND);
    printf("  %s: preempt_requested seen after %lld ms\n", device, (long long)seen);
    CHECK(lc_keepalive_stop(ka) == LC_ERR_LOST);
    lc_lock_free(l);
    lc_client_free(c);
    pthread_mutex_destroy(&rc.mu);
}

static void test_preempt_renewed(void) { preempt_case("renewed", 3); }
static void test_preempt_checked(void) { preempt_case("checked", -1); }

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "tls"))
        return tls_main(argv[2], argc > 3 ? argv[3] : NULL, argc > 4 ? argv[4] : NULL);
    if (argc >= 3 && !strcmp(argv[1], "preempt")) {
        url = argv[2];
        RUN(test_preempt_renewed);
        RUN(test_preempt_checked);
        DONE();
    }
    fprintf(stderr, "usage: fence_prog tls URL [CA_FILE] | preempt URL\n");
    return 2;
}
