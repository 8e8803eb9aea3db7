/* test_book.c - the reservation calls of liblockclient (1.2) against a real
 * devlockd + redis-server: book, get, list (filters, paging), conflict,
 * bumping, move, cancel, idempotent retries, the window becoming a lock,
 * and the RFC 3339 helpers.
 *
 * Started by tests/client/t_book.sh (sourced by run.sh), which exports
 *   LC_T_URL     broker A
 *   LC_T_URL_B   broker B, sharing A's Redis
 * Device names carry the pid, so the plain and the ASan runs do not meet.
 * Waits are bounded polls. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "lockclient.h"

static const char *url_a, *url_b;
static char dev_prefix[32];

#define SEC 1000000LL
#define HOUR (3600 * SEC)

static int64_t wall_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * SEC + t.tv_nsec / 1000;
}

static void pause_ms(long ms)   /* a poll interval, not a synchronisation */
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static const char *dev(const char *name)
{
    static char bufs[8][96];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, 96, "%s%s", dev_prefix, name);
    return b;
}

static lc_client *client_at(const char *url, const char *user)
{
    lc_options o = {0};
    o.url = url;
    o.user_id = user;
    o.timeout_ms = 3000;
    lc_client *c = NULL;
    return lc_client_new(&o, &c) == LC_OK ? c : NULL;
}

/* A window of `hours` hours starting `at_h` hours from a base far enough
 * ahead that no test's window has started. */
static int64_t base_us;
static lc_booking_request window(const char *device, lc_lock_type type, double at_h, double hours)
{
    lc_booking_request r;
    memset(&r, 0, sizeof(r));
    r.device_name = device;
    r.type = type;
    r.start_us = base_us + (int64_t)(at_h * HOUR);
    r.end_us = r.start_us + (int64_t)(hours * HOUR);
    return r;
}

static void test_time_helpers(void)
{
    int64_t us = 0;
    CHECK(lc_time_parse("2026-12-07T22:00:00Z", &us) == LC_OK && us == 1796680800LL * SEC);
    CHECK(lc_time_parse("2026-12-07T22:00:00.5Z", &us) == LC_OK && us == 1796680800LL * SEC + 500000);
    CHECK(lc_time_parse("2026-12-07T23:30:00+01:30", &us) == LC_OK && us == 1796680800LL * SEC);
    CHECK(lc_time_parse("2026-12-07T20:00:00.000001-02:00", &us) == LC_OK && us == 1796680800LL * SEC + 1);
    CHECK(lc_time_parse("2026-12-07t22:00:00z", &us) == LC_OK && us == 1796680800LL * SEC);
    CHECK(lc_time_parse("2026-12-07T22:00:00", &us) == LC_ERR_BAD_REQUEST);   /* no offset */
    CHECK(lc_time_parse("2026-12-07T22:00:00+1:00", &us) == LC_ERR_BAD_REQUEST);
    CHECK(lc_time_parse("tomorrow", &us) == LC_ERR_BAD_REQUEST);
    CHECK(lc_time_parse(NULL, &us) == LC_ERR_BAD_REQUEST);
    char buf[40];
    CHECK_STR(lc_time_format(1796680800LL * SEC + 42, buf, sizeof(buf)), "2026-12-07T22:00:00.000042Z");
    CHECK(lc_time_parse(buf, &us) == LC_OK && us == 1796680800LL * SEC + 42);
    char small[8];
    lc_time_format(0, small, sizeof(small));
    CHECK(strlen(small) == 7);
}

static void test_status_conflict(void)
{
    CHECK_STR(lc_status_code(LC_ERR_CONFLICT), "conflict");
    CHECK(lc_status_exit_code(LC_ERR_CONFLICT) == 4);
    CHECK(LC_ERR_CONFLICT == LC_STATUS_COUNT - 1);
}

static void test_bad_arguments(void)
{
    lc_client *c = client_at(url_a, "bk-user");
    lc_booking *b = (lc_booking *)1;
    lc_booking_request r = window(NULL, LC_TYPE_DEFAULT, 1, 1);
    CHECK(lc_book(c, &r, &b) == LC_ERR_BAD_REQUEST && b == NULL);      /* no device */
    r = window(dev("bad"), LC_TYPE_DEFAULT, 1, 1);
    r.end_us = 0;
    CHECK(lc_book(c, &r, &b) == LC_ERR_BAD_REQUEST);
    CHECK(lc_book(NULL, &r, &b) == LC_ERR_BAD_REQUEST);
    CHECK(lc_booking_get(c, NULL, &b) == LC_ERR_BAD_REQUEST);
    CHECK(lc_booking_move(c, "r1", 0, 0, NULL) == LC_ERR_BAD_REQUEST);
    CHECK(lc_booking_cancel(c, "", NULL) == LC_ERR_BAD_REQUEST);
    CHECK(lc_bookings(c, NULL, NULL) == LC_ERR_BAD_REQUEST);
    lc_booking_free(NULL);
    lc_booking_list_free(NULL);
    CHECK(lc_booking_list_count(NULL) == 0 && lc_booking_list_get(NULL, 0) == NULL);
    /* the broker's refusals: end before start, a bad device name */
    r = window(dev("bad"), LC_TYPE_DEFAULT, 2, 1);
    r.end_us = r.start_us - HOUR;
    lc_status st = lc_book(c, &r, &b);
    CHECK(st == LC_ERR_VALIDATION || st == LC_ERR_BAD_REQUEST);
    r = window("bad name!", LC_TYPE_DEFAULT, 2, 1);
    CHECK(lc_book(c, &r, &b) == LC_ERR_INVALID_DEVICE);
    CHECK(lc_booking_get(c, "r999999999", &b) == LC_ERR_NOT_FOUND && b == NULL);
    lc_client_free(c);
}

static void test_book_and_get(void)
{
    lc_client *c = client_at(url_a, "bk-owner");
    lc_booking_request r = window(dev("one"), LC_QUEUE_EXECUTING, 1, 2);
    r.reason = "night scan, part 1; \"quoted\"";
    r.plan_uid = "plan-42";
    lc_booking *b = NULL;
    lc_status st = lc_book(c, &r, &b);
    CHECK(st == LC_OK);
    if (st != LC_OK) {
        fprintf(stderr, "  book: %s\n", lc_errmsg(c));
        lc_client_free(c);
        return;
    }
    CHECK(b->id && b->id[0] == 'r');
    CHECK(b->n_devices == 1 && !strcmp(b->device_names[0], dev("one")));
    CHECK(b->type == LC_QUEUE_EXECUTING && b->priority == 1);
    CHECK_STR(b->user_id, "bk-owner");
    CHECK(b->lock_key && strlen(b->lock_key) >= 16);
    CHECK(b->start_us == r.start_us && b->end_us == r.end_us);
    CHECK_STR(b->reason, r.reason);
    CHECK_STR(b->plan_uid, "plan-42");
    CHECK_STR(b->state, "booked");
    CHECK(b->cause == NULL && b->bumped_by == NULL && b->n_bumped == 0);
    CHECK(b->sequence == 0 && b->created_us > 0 && b->updated_us >= b->created_us);
    CHECK(b->json && strstr(b->json, b->id));
    /* the same booking through GET, and through the other broker */
    lc_booking *g = NULL;
    CHECK(lc_booking_get(c, b->id, &g) == LC_OK && g && !strcmp(g->id, b->id) &&
          g->start_us == b->start_us && g->end_us == b->end_us && !strcmp(g->state, "booked"));
    lc_booking_free(g);
    lc_client *cb = client_at(url_b, "bk-owner");
    g = NULL;
    CHECK(lc_booking_get(cb, b->id, &g) == LC_OK && g && g->created_us == b->created_us);
    lc_booking_free(g);
    lc_client_free(cb);
    lc_booking_free(b);
    lc_client_free(c);
}

static void test_group(void)
{
    lc_client *c = client_at(url_a, "bk-group");
    const char *devs[] = {dev("g1"), dev("g2"), dev("g3")};
    lc_booking_request r = window(NULL, LC_MANUAL_OPERATOR, 1, 1);
    r.device_names = devs;
    r.n_devices = 3;
    lc_booking *b = NULL;
    CHECK(lc_book(c, &r, &b) == LC_OK && b && b->n_devices == 3);
    for (size_t i = 0; b && i < 3; i++)
        CHECK(!strcmp(b->device_names[i], devs[i]));
    /* one device of the group is taken: a single booking there conflicts */
    lc_booking *x = NULL;
    lc_booking_request one = window(dev("g2"), LC_MANUAL_OPERATOR, 1.5, 1);
    CHECK(lc_book(c, &one, &x) == LC_ERR_CONFLICT && x == NULL);
    lc_booking_free(b);
    lc_client_free(c);
}

static void test_conflict(void)
{
    lc_client *c = client_at(url_a, "bk-first"), *d = client_at(url_a, "bk-second");
    lc_booking_request r = window(dev("cf"), LC_MANUAL_OPERATOR, 3, 2);
    lc_booking *first = NULL, *b = NULL;
    CHECK(lc_book(c, &r, &first) == LC_OK && first);
    if (!first)
        goto out;
    /* equal priority, overlapping by an hour: refused, naming the first */
    lc_booking_request o = window(dev("cf"), LC_MANUAL_OPERATOR, 4, 2);
    lc_status st = lc_book(d, &o, &b);
    CHECK(st == LC_ERR_CONFLICT && b == NULL);
    CHECK(strstr(lc_errmsg(d), first->id) != NULL);
    /* lower priority too */
    o.type = LC_QUEUE_QUEUED;
    CHECK(lc_book(d, &o, &b) == LC_ERR_CONFLICT);
    /* touching is not overlapping: [end, end + 1h) is free */
    lc_booking_request after = window(dev("cf"), LC_MANUAL_OPERATOR, 5, 1);
    CHECK(lc_book(d, &after, &b) == LC_OK && b);
    lc_booking_free(b);
out:
    lc_booking_free(first);
    lc_client_free(c);
    lc_client_free(d);
}

static void test_bump(void)
{
    lc_client *low = client_at(url_a, "bk-low"), *high = client_at(url_a, "bk-high");
    lc_booking_request r = window(dev("bump"), LC_QUEUE_QUEUED, 6, 2);
    lc_booking *lb = NULL, *hb = NULL, *g = NULL;
    CHECK(lc_book(low, &r, &lb) == LC_OK && lb);
    lc_booking_request h = window(dev("bump"), LC_MAINTENANCE, 7, 2);
    CHECK(lc_book(high, &h, &hb) == LC_OK && hb);
    if (lb && hb) {
        CHECK(hb->n_bumped == 1 && !strcmp(hb->bumped[0], lb->id));
        CHECK(lc_booking_get(low, lb->id, &g) == LC_OK && g);
        if (g) {
            CHECK_STR(g->state, "bumped");
            CHECK_STR(g->bumped_by, hb->id);
            CHECK(g->sequence >= 1);
        }
        /* a bumped booking can no longer be cancelled */
        CHECK(lc_booking_cancel(low, lb->id, NULL) == LC_ERR_CONFLICT);
    }
    lc_booking_free(g);
    lc_booking_free(lb);
    lc_booking_free(hb);
    lc_client_free(low);
    lc_client_free(high);
}

static void test_move(void)
{
    lc_client *c = client_at(url_a, "bk-mover");
    lc_booking_request r = window(dev("mv"), LC_MANUAL_OPERATOR, 10, 1);
    lc_booking_request other = window(dev("mv"), LC_MANUAL_OPERATOR, 13, 1);
    lc_booking *b = NULL, *o = NULL, *m = NULL;
    CHECK(lc_book(c, &r, &b) == LC_OK && b);
    CHECK(lc_book(c, &other, &o) == LC_OK && o);
    if (!b || !o)
        goto out;
    /* extend to 12h: free */
    int64_t new_end = base_us + 12 * HOUR;
    CHECK(lc_booking_move(c, b->id, 0, new_end, &m) == LC_OK && m);
    if (m) {
        CHECK(m->end_us == new_end && m->start_us == r.start_us);
        CHECK(m->sequence == b->sequence + 1);
        CHECK_STR(m->state, "booked");
        lc_booking_free(m);
        m = NULL;
    }
    /* into the other booking's time (even our own): refused */
    CHECK(lc_booking_move(c, b->id, 0, base_us + 13 * HOUR + HOUR / 2, &m) == LC_ERR_CONFLICT && !m);
    /* both ends */
    CHECK(lc_booking_move(c, b->id, base_us + 9 * HOUR, base_us + 9 * HOUR + HOUR / 2, NULL) == LC_OK);
    CHECK(lc_booking_get(c, b->id, &m) == LC_OK && m && m->start_us == base_us + 9 * HOUR &&
          m->end_us == base_us + 9 * HOUR + HOUR / 2);
    lc_booking_free(m);
    m = NULL;
    CHECK(lc_booking_move(c, "r999999999", 0, new_end, &m) == LC_ERR_NOT_FOUND);
out:
    lc_booking_free(b);
    lc_booking_free(o);
    lc_client_free(c);
}

static void test_cancel(void)
{
    lc_client *c = client_at(url_a, "bk-canceller");
    lc_booking_request r = window(dev("cx"), LC_MANUAL_OPERATOR, 20, 1);
    lc_booking *b = NULL, *x = NULL;
    CHECK(lc_book(c, &r, &b) == LC_OK && b);
    if (!b)
        goto out;
    CHECK(lc_booking_cancel(c, b->id, &x) == LC_OK && x && !strcmp(x->state, "cancelled"));
    CHECK(x && x->sequence == b->sequence + 1);
    lc_booking_free(x);
    x = NULL;
    /* someone else's booking: not theirs to cancel (without auth, the user_id sent) */
    lc_client *other = client_at(url_a, "bk-not-owner");
    CHECK(lc_booking_cancel(other, b->id, NULL) == LC_ERR_FORBIDDEN);
    CHECK(lc_booking_move(other, b->id, 0, r.end_us + HOUR, NULL) == LC_ERR_FORBIDDEN);
    lc_client_free(other);
    CHECK(lc_booking_cancel(c, b->id, &x) == LC_OK && x && !strcmp(x->state, "cancelled"));
    lc_booking_free(x);
    x = NULL;
    /* the time is free again */
    CHECK(lc_book(c, &r, &x) == LC_OK && x && strcmp(x->id, b->id));
    lc_booking_free(x);
    CHECK(lc_booking_cancel(c, "r999999999", NULL) == LC_ERR_NOT_FOUND);
out:
    lc_booking_free(b);
    lc_client_free(c);
}

static void test_request_id(void)
{
    lc_client *c = client_at(url_a, "bk-retry");
    char rid[64];
    snprintf(rid, sizeof(rid), "rid-%s", dev_prefix);
    lc_booking_request r = window(dev("rid"), LC_MANUAL_OPERATOR, 30, 1);
    r.request_id = rid;
    lc_booking *a = NULL, *b = NULL;
    CHECK(lc_book(c, &r, &a) == LC_OK && a);
    CHECK(lc_book(c, &r, &b) == LC_OK && b);
    CHECK(a && b && !strcmp(a->id, b->id));
    lc_booking_free(a);
    lc_booking_free(b);
    lc_client_free(c);
}

/* Every booking of one device, paged by `limit`; the ids in order into ids. */
static int list_ids(lc_client *c, const lc_booking_query *q0, char ids[][16], int max)
{
    lc_booking_query q = *q0;
    int n = 0, pages = 0;
    char cursor[256] = "";
    for (;;) {
        lc_booking_list *l = NULL;
        q.cursor = *cursor ? cursor : NULL;
        if (lc_bookings(c, &q, &l) != LC_OK)
            return -1;
        for (size_t i = 0; i < lc_booking_list_count(l) && n < max; i++)
            snprintf(ids[n++], 16, "%s", lc_booking_list_get(l, i)->id);
        const char *next = lc_booking_list_next_cursor(l);
        snprintf(cursor, sizeof(cursor), "%s", next ? next : "");
        lc_booking_list_free(l);
        if (!*cursor || ++pages > 50)
            break;
    }
    return n;
}

static void test_list(void)
{
    lc_client *c = client_at(url_a, "bk-lister"), *d = client_at(url_a, "bk-other");
    lc_booking *b[5] = {0};
    for (int i = 0; i < 5; i++) {
        lc_booking_request r = window(dev("ls"), LC_MANUAL_OPERATOR, 40 + i, 1);
        CHECK(lc_book(i == 4 ? d : c, &r, &b[i]) == LC_OK && b[i]);
    }
    if (!b[4])
        goto out;
    char ids[16][16];
    lc_booking_query q = {0};
    q.device = dev("ls");
    int n = list_ids(c, &q, ids, 16);
    CHECK(n == 5);
    for (int i = 0; i < n && i < 5; i++)
        CHECK(!strcmp(ids[i], b[i]->id));        /* in order of start */
    /* paged by 2: the same five, in the same order */
    q.limit = 2;
    char paged[16][16];
    CHECK(list_ids(c, &q, paged, 16) == 5);
    for (int i = 0; i < 5; i++)
        CHECK(!strcmp(paged[i], ids[i]));
    lc_booking_list *l = NULL;
    CHECK(lc_bookings(c, &q, &l) == LC_OK && lc_booking_list_count(l) == 2 &&
          lc_booking_list_next_cursor(l) != NULL);
    lc_booking_list_free(l);
    /* by user */
    q.limit = 0;
    q.user = "bk-other";
    CHECK(list_ids(c, &q, ids, 16) == 1 && !strcmp(ids[0], b[4]->id));
    /* by window: [41h, 43h) overlaps the bookings at 41h and 42h only */
    q.user = NULL;
    q.from_us = base_us + 41 * HOUR;
    q.to_us = base_us + 43 * HOUR;
    n = list_ids(c, &q, ids, 16);
    CHECK(n == 2 && !strcmp(ids[0], b[1]->id) && !strcmp(ids[1], b[2]->id));
    /* by state */
    CHECK(lc_booking_cancel(c, b[0]->id, NULL) == LC_OK);
    q.from_us = q.to_us = 0;
    q.state = "cancelled";
    CHECK(list_ids(c, &q, ids, 16) == 1 && !strcmp(ids[0], b[0]->id));
    q.state = "booked";
    CHECK(list_ids(c, &q, ids, 16) == 4);
    /* the lock_key: the owner's view has it; a listing by another user (no
     * auth: the user_id the broker sees) must not show someone else's */
    q.state = NULL;
    l = NULL;
    CHECK(lc_bookings(c, &q, &l) == LC_OK);
    for (size_t i = 0; i < lc_booking_list_count(l); i++) {
        const lc_booking *x = lc_booking_list_get(l, i);
        CHECK(x->start_us > 0 && x->end_us > x->start_us && x->n_devices == 1);
    }
    lc_booking_list_free(l);
out:
    for (int i = 0; i < 5; i++)
        lc_booking_free(b[i]);
    lc_client_free(c);
    lc_client_free(d);
}

/* Polls the device until its holder's key is key (NULL: free), at most ms. */
static int device_key_is(lc_client *c, const char *device, const char *key, long ms)
{
    for (long waited = 0;; waited += 50) {
        lc_lock *l = NULL;
        lc_status st = lc_device_status(c, device, &l);
        int match = st == LC_OK && (key ? l && lc_lock_key(l) && !strcmp(lc_lock_key(l), key) : !l);
        lc_lock_free(l);
        if (match)
            return 1;
        if (waited >= ms)
            return 0;
        pause_ms(50);
    }
}

static void test_window_becomes_lock(void)
{
    lc_client *c = client_at(url_a, "bk-live");
    lc_booking_request r;
    memset(&r, 0, sizeof(r));
    r.device_name = dev("live");
    r.type = LC_MANUAL_OPERATOR;
    r.start_us = wall_us() + 1 * SEC;
    r.end_us = r.start_us + 2 * SEC;
    lc_booking *b = NULL, *g = NULL;
    CHECK(lc_book(c, &r, &b) == LC_OK && b && b->lock_key);
    if (!b || !b->lock_key)
        goto out;
    /* at start: a lock with the booking's key (deadline: start + 2 s) */
    CHECK(device_key_is(c, dev("live"), b->lock_key, 3500));
    CHECK(lc_booking_get(c, b->id, &g) == LC_OK && g && !strcmp(g->state, "active"));
    lc_booking_free(g);
    g = NULL;
    /* another user is refused during the window */
    lc_client *o = client_at(url_a, "bk-intruder");
    lc_request q = {0};
    q.device_name = dev("live");
    q.type = LC_MANUAL_OPERATOR;
    lc_lock *l = NULL;
    CHECK(lc_acquire(o, &q, &l) == LC_ERR_DENIED);
    lc_lock_free(l);
    lc_client_free(o);
    /* at end: released (cause reservation_end), the booking ended */
    CHECK(device_key_is(c, dev("live"), NULL, 4000));
    int ended = 0;
    for (int i = 0; i < 40 && !ended; i++) {
        lc_booking_free(g);
        g = NULL;
        ended = lc_booking_get(c, b->id, &g) == LC_OK && g && !strcmp(g->state, "ended");
        if (!ended)
            pause_ms(50);
    }
    CHECK(ended);
    CHECK(g && g->cause && !strcmp(g->cause, "reservation_end"));
out:
    lc_booking_free(g);
    lc_booking_free(b);
    lc_client_free(c);
}

static void test_cancel_active(void)
{
    lc_client *c = client_at(url_a, "bk-cancel-live");
    lc_booking_request r;
    memset(&r, 0, sizeof(r));
    r.device_name = dev("cl");
    r.start_us = 0;                         /* now */
    r.end_us = wall_us() + 60 * SEC;
    lc_booking *b = NULL, *x = NULL;
    CHECK(lc_book(c, &r, &b) == LC_OK && b && b->lock_key);
    if (!b || !b->lock_key)
        goto out;
    CHECK(device_key_is(c, dev("cl"), b->lock_key, 2000));
    CHECK(lc_booking_cancel(c, b->id, &x) == LC_OK && x && !strcmp(x->state, "cancelled"));
    CHECK(device_key_is(c, dev("cl"), NULL, 2000));
out:
    lc_booking_free(x);
    lc_booking_free(b);
    lc_client_free(c);
}

int main(int argc, char **argv)
{
    url_a = getenv("LC_T_URL");
    url_b = getenv("LC_T_URL_B");
    if (!url_a || !url_b) {
        fprintf(stderr, "run me from tests/client/run.sh\n");
        return 2;
    }
    snprintf(dev_prefix, sizeof(dev_prefix), "b%ld.", (long)getpid());
    /* whole hours, a day ahead: no window of the tests below starts */
    base_us = (wall_us() / HOUR + 24) * HOUR;
    const char *only = argc > 1 ? argv[1] : NULL;
#define T(fn) do { if (!only || strstr(#fn, only)) RUN(fn); fflush(stdout); } while (0)
    T(test_time_helpers);
    T(test_status_conflict);
    T(test_bad_arguments);
    T(test_book_and_get);
    T(test_group);
    T(test_conflict);
    T(test_bump);
    T(test_move);
    T(test_cancel);
    T(test_request_id);
    T(test_list);
    T(test_window_becomes_lock);
    T(test_cancel_active);
    DONE();
}
