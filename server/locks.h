/* locks.h - lock semantics: validates requests, runs the transition
 * scripts, waits for queued requests, and shapes replies as the old service
 * did (SPEC §3, §5). Transport-neutral: HTTP (http.c) and the WebSocket
 * command channel (ws.c) both call these. */
#ifndef LOCKS_H
#define LOCKS_H

#include <cjson/cJSON.h>
#include <uv.h>

#include "lk_buf.h"
#include "lk_error.h"

struct shared;

struct locks_result {
    int status;            /* HTTP status */
    struct lk_buf *body;   /* a JSON object; borrowed for the call */
    const char *event_id;  /* snapshot: the stream position; else NULL */
    /* A grant: the caller sets *undelivered to 1 when its requester is gone
     * and the answer cannot reach it (the grant is then given back); else
     * NULL. */
    int *undelivered;
    /* An error answer's code (its body's "error"; counted by http.c
     * without reading the body); LK_E_OK for every other answer. */
    enum lk_status error;
    /* A full status listing from the read copy: the answer is head's
     * bytes followed by body's (head shared by every reader of this
     * version of the table, body the per-read tail); take a reference
     * (shared_ref) to keep it. Else NULL and body is the whole answer. */
    struct shared *head;
};

/* Called exactly once, possibly before the function returns (bad input,
 * Redis down), unless the call is cancelled first. */
typedef void (*locks_done_fn)(void *ctx, const struct locks_result *res);

/* A call in flight (a script, or a request waiting in a device's queue). */
struct locks_call;

/* Each returns the call, or NULL when fn has already run. session: the
 * WebSocket session id for "session": true locks, or NULL. */
struct locks_call *locks_request(const cJSON *req, const char *session, locks_done_fn fn, void *ctx);
struct locks_call *locks_release(const cJSON *req, locks_done_fn fn, void *ctx);
struct locks_call *locks_renew(const cJSON *req, locks_done_fn fn, void *ctx);
struct locks_call *locks_force_release(const cJSON *req, locks_done_fn fn, void *ctx);
struct locks_call *locks_validate(const cJSON *req, locks_done_fn fn, void *ctx);
/* {"locks":[...],"total_count":N,"timestamp":...}; event_id is set. cursor
 * NULL = from the start; limit < 0 = all (then total_count = listed). With
 * a limit, "next_cursor" is added (null at the end). From the read copy;
 * while it is not usable, a read of more than 1000 locks waits for it (at
 * most --redis-timeout-ms), then reads Redis in pages of 1000. */
struct locks_call *locks_status(const char *cursor, long limit, locks_done_fn fn, void *ctx);
struct locks_call *locks_device(const char *device, locks_done_fn fn, void *ctx);
struct locks_call *locks_events(const char *since, long limit, const char *device,
                                const char *plan_uid, locks_done_fn fn, void *ctx);
/* A WebSocket resume: the events after since, oldest first (at most max),
 * or a gap when some of them are no longer kept. */
struct locks_event {
    const char *id;           /* stream id; borrowed for the call */
    const char *json;         /* the event, a JSON object; borrowed */
    size_t len;
};
struct locks_resume_result {
    enum lk_status status;    /* LK_E_OK, or LK_E_UNAVAILABLE (nothing else is set) */
    int gap;                  /* events after since were trimmed: none are listed */
    size_t replayed;          /* events the replay holds */
    size_t n;                 /* of which well formed, listed in events */
    const struct locks_event *events; /* borrowed for the call */
};
typedef void (*locks_resume_fn)(void *ctx, const struct locks_resume_result *res);
/* fn runs exactly once, possibly before the function returns, unless
 * locks_cancel is called first. Returns the call, or NULL when fn has
 * already run. since: a stream id (copied). */
struct locks_call *locks_resume(const char *since, long max, locks_resume_fn fn, void *ctx);
/* GET /metrics: the Prometheus text (status 200), with the locks held by
 * type and the stream length read from Redis (zero while Redis is down:
 * devlock_redis_up says so). As the calls above: fn runs once, the call or
 * NULL is returned, locks_cancel stops it. */
struct locks_call *locks_metrics(locks_done_fn fn, void *ctx);
/* Redis connections made since start, the first one included. */
unsigned long locks_redis_connects(void);
/* The caller is gone: fn will not be called. A queued request leaves its
 * queue; a lock granted to it meanwhile is released. */
void locks_cancel(struct locks_call *c);

/* Shutdown, while the connections are still open (before
 * lws_context_destroy and store_shutdown): refuses new acquires (503),
 * answers this broker's queued requests 503 and takes them off the queues,
 * so none keeps a device reserved after the broker is gone, and waits for
 * the scripts in flight, running the loop for at most bound_ms. */
void locks_shutdown(uv_loop_t *loop, long bound_ms);

/* A session's WebSocket closed (detach) or was resumed (attach). */
void locks_session(const char *session, int attach);
/* WebSocket sessions (session.lua). conn: the socket's connection id,
 * which the session's owner record names. claim: the socket's own session,
 * before its first session lock. attach: the socket takes session over
 * (own: its own session, refused with 'busy' while that holds locks; a
 * session of another user is refused with 'forbidden' unless admin); fn gets
 * the script's reply. detach: the socket closed; ignored unless it still
 * owns the session; retried until Redis answers. reap: detaches the
 * sessions of brokers that are gone (run periodically). */
void locks_session_claim(const char *session, const char *conn, const char *user);
enum locks_attach_outcome {
    LOCKS_ATTACH_OK,          /* the socket owns the session now */
    LOCKS_ATTACH_FORBIDDEN,   /* the session belongs to another user */
    LOCKS_ATTACH_BUSY,        /* the socket's own session holds locks */
    LOCKS_ATTACH_UNAVAILABLE, /* Redis down or failing: the script may still run */
    LOCKS_ATTACH_UNEXPECTED   /* the script answered something else */
};
struct locks_attach_result {
    enum locks_attach_outcome outcome;
    /* OK: the connection id of the socket of this broker that owned the
     * session until now, or NULL (none, or a socket of another broker);
     * borrowed for the call. */
    const char *moved_from;
};
typedef void (*locks_attach_fn)(void *ctx, const struct locks_attach_result *res);
/* fn runs exactly once, possibly before the function returns (Redis down),
 * unless locks_cancel is called first. Returns the call, or NULL when fn
 * has already run. */
struct locks_call *locks_session_attach(const char *session, const char *own, const char *conn,
                                        const char *user, int admin, locks_attach_fn fn, void *ctx);
void locks_session_detach(const char *session, const char *conn);
void locks_session_reap(void);
/* Drops the detaches still waiting for Redis and closes their timer. */
void locks_session_shutdown(void);
/* events.c: a grant for queued request `waiter` was read from the stream. */
void locks_waiter_event(const char *waiter);
/* This broker's id (its waiters are served only while it is alive). */
const char *locks_broker_id(void);
void locks_init(void);
/* Writes the catalogue's per-device settings to Redis. */
void locks_push_catalogue(void);
/* Stream retention and default lock-delay, as the scripts take them. */
const char *locks_arg_maxlen(void);
const char *locks_arg_delay(void);
/* The default preemption grace in ms, as the scripts take it. */
const char *locks_arg_grace(void);

/* Answers fn with {"detail","error"} for a status. */
/* Appends the whole answer of res (head, then body) to out. */
void locks_result_flat(const struct locks_result *res, struct lk_buf *out);
void locks_fail(locks_done_fn fn, void *ctx, enum lk_status s, const char *detail);
/* Writes {"detail":...,"error":...} into b. */
void locks_error_json(struct lk_buf *b, enum lk_status s, const char *detail);

/* Input checks, exposed for the fuzz targets: a parsed acquire request. */
struct locks_request_args {
    char devices[64 * 129 + 1];  /* comma-separated */
    int ndevices;
    int prio;
    long long lease_ms, wait_ms;
};
/* 0, or a status with a message in err (errlen bytes). */
enum lk_status locks_parse_request(const cJSON *req, struct locks_request_args *out, char *err,
                                   size_t errlen);

#endif
