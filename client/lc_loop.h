/* lc_loop.h - the inside of an lc_loop, shared by lc_loop.c (connection,
 * timers, operations, session), lc_loop_watch.c (the event stream: order,
 * resume, cache) and lc_loop_hold.c (renewals and self-fencing of held
 * locks), and used by lc_watch.c (a loop on its own thread). Not installed.
 *
 * Everything here belongs to the thread that runs the loop, except the
 * cache and last_id when a mutex is set (lc__loop_set_mutex): lc_watch
 * reads them from other threads. */
#ifndef LC_LOOP_H
#define LC_LOOP_H

#include "lc_internal.h"
#include "lc_ws.h"

#define LOOP_MAX_OPS 65536       /* operations waiting or in flight (LC_ERR_TOO_MANY beyond) */
#define LOOP_MAX_ON_WIRE 900     /* requests in flight on the socket (the broker takes 1024) */
#define LOOP_MAX_HELD_BACK 100000 /* events held back during a resume */

enum op_kind {
    OP_ACQUIRE,
    OP_RELEASE,
    OP_RENEW,
    OP_HOLD_RENEW,  /* a hold's renewal (no user callback) */
    OP_GIVE_BACK,   /* release of a grant whose acquire was cancelled (no callback) */
    OP_CONFIRM,     /* an acquire granted after a wait, renewed once for a fresh deadline */
};

struct lc_op {
    struct lc_loop *loop;
    struct lc_op *prev, *next;
    enum op_kind kind;
    long long wire_id;      /* the "id" on the current connection; 0: not sent on it */
    int sent_before;        /* sent on an earlier connection (its answer was lost) */
    int cancelled;
    char *msg;              /* the request without its id: "\"type\":\"acquire\",...}" */
    int64_t deadline_us;    /* LC_ERR_TIMEOUT after it; 0: none */
    int64_t sent_us;        /* when it was last sent (self-fencing counts from here) */
    lc_acquire_fn acb;
    lc_done_fn dcb;
    void *ud;
    lc_lock *lock;          /* renew: the caller's lock (borrowed); confirm: the grant (owned) */
    struct lc_hold *hold;   /* hold renew */
    /* acquire: what the answer needs */
    int session;
    double timeout_s;
    char **group;           /* device_names of a group request, NULL for one device */
    size_t ngroup;
};

struct lc_hold {
    struct lc_loop *loop;
    struct lc_hold *prev, *next;
    lc_lock *lock;          /* borrowed */
    lc_keepalive_callbacks cbs;
    int lost;
    int stopped;            /* lc_hold_stop ran inside a callback: freed after it */
    int releasing;          /* lc_release_async of this lock was sent: its end is ours */
    double lease_s;         /* as last granted; <= 0: no expiry */
    long margin_ms;
    int64_t confirmed_sent_us;  /* send time of the last confirmed grant/renew */
    int64_t deadline_us;        /* self-fencing deadline of the lease, 0: none */
    int64_t renew_at_us;        /* next renewal (0: none pending) */
    struct lc_op *renew;        /* in flight */
    int preempt_seen;
    char seen_id[64];           /* id of the last stream event that showed our lock */
};

/* Events received while a resume is being answered. */
struct lc_held {
    cJSON **items;
    size_t n, cap;
};

struct lc_loop {
    struct lc_opts o;
    int epfd, tfd;
    struct lc_ws *ws;
    int ws_fd;              /* registered in epfd, -1: none */
    short ws_events;        /* as registered */
    int ws_open;
    int ws_closed;          /* on_close ran: free after lc_ws_process returns */
    lc_status stopped;      /* LC_OK, or the permanent error */
    char stop_why[256];
    int64_t reconnect_at_us;    /* 0: connect at the next process */
    int backoff_ms;
    unsigned seed;
    int64_t armed_us;       /* what the timerfd is set to (0: disarmed) */
    int processing;         /* inside lc_loop_process */
    long long next_wire_id;

    struct lc_op *ops_head, *ops_tail;
    size_t nops;
    size_t on_wire;
    struct lc_hold *holds_head;
    size_t nholds;
    struct lc_hold *dead_holds;     /* stopped inside a callback */

    /* event stream */
    int resuming;
    long long resume_wire_id;
    struct lc_held held;
    int synced;             /* snapshot loaded or resume answered on this connection */
    int connected_told;     /* on_connection(1) told */
    int watching;
    lc_watch_callbacks wcbs;
    pthread_mutex_t *mu;    /* guards cache and last_id when set */
    struct lc_lock_list cache;
    char last_id[64];

    /* session */
    char session_id[64];    /* "" until a session lock is granted */
    int session_used;       /* a session lock was granted: keep the session */
    int attaching;
    long long attach_wire_id;
    int64_t sess_confirmed_us;  /* send time of the last answered request on the owning socket */
    int64_t ping_at_us;
    long long ping_wire_id;
    int64_t ping_sent_us;
};

/* lc_loop.c */
void lc__loop_send_raw(struct lc_loop *l, const char *text);
/* Makes the fd readable now (work was queued outside lc_loop_process). */
void lc__loop_kick(struct lc_loop *l);
void lc__loop_set_mutex(struct lc_loop *l, pthread_mutex_t *mu);
struct lc_op *lc__loop_op_new(struct lc_loop *l, enum op_kind kind, struct lk_buf *msg);
void lc__loop_error(struct lc_loop *l, lc_status st, int permanent, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The session's deadline for its locks (monotonic us), 0: none. */
int64_t lc__loop_session_deadline(const struct lc_loop *l);
int lc__id_newer(const char *a, const char *b);

/* lc_loop_watch.c: the event stream */
void lc__stream_open(struct lc_loop *l);        /* connection open: resume or wait for snapshot */
void lc__stream_closed(struct lc_loop *l);
/* The stream is in step (snapshot loaded or resume answered); tells the
 * watch once per connection when no attach is in flight. */
void lc__stream_synced(struct lc_loop *l);
void lc__stream_message(struct lc_loop *l, cJSON *j, const char *type); /* takes j */
void lc__stream_free(struct lc_loop *l);

/* lc_loop_hold.c */
void lc__hold_event(struct lc_loop *l, const cJSON *ev, const char *action, const char *device);
void lc__hold_snapshot(struct lc_loop *l, const cJSON *locks, const char *event_id);
void lc__hold_renew_done(struct lc_op *op, lc_status st, const cJSON *j, const char *detail);
void lc__hold_timers(struct lc_loop *l, int64_t now);
int64_t lc__hold_next_us(const struct lc_loop *l);
void lc__hold_session_lost(struct lc_loop *l, const char *why);
void lc__hold_all_lost(struct lc_loop *l, lc_status st, const char *why);
void lc__hold_free_all(struct lc_loop *l);
void lc__hold_releasing(struct lc_loop *l, const lc_lock *lk);
void lc__hold_reap(struct lc_loop *l);
void lc__lock_apply(lc_lock *lk, const cJSON *j, int64_t sent_us, long margin_opt);

#endif
