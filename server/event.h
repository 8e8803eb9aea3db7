/* event.h - one entry of the event stream, parsed once (events.c) and
 * handed to the consumers registered with events_subscribe (mirror,
 * metrics, the WebSocket feed). Queue facts (EV_QUEUED, EV_UNQUEUED) are
 * internal entries that only the mirror gets (mirror_apply). The fields come from the entry's own
 * stream fields (prelude.lua's emit_members, docs/design.md "Reads"), so
 * no consumer reads them out of the JSON text. */
#ifndef EVENT_H
#define EVENT_H

#include <stddef.h>
#include <stdint.h>

enum event_action {
    EV_OTHER,            /* reservation_*, expiring, preempt_requested, ... */
    EV_ACQUIRED,
    EV_RENEWED,
    EV_RELEASED,
    EV_FORCE_RELEASED,
    EV_QUEUED,           /* queue facts: internal entries (no "j"), for the mirror only */
    EV_UNQUEUED,
    EV_LOCK,             /* internal too: a lock's text changed without an event */
};

/* A queue fact (prelude.lua "queue facts"): a waiter put on (EV_QUEUED) or
 * taken off (EV_UNQUEUED) device queues. Strings as in struct event, never
 * NULL; an EV_UNQUEUED fact has only id and devices (the queues it left). */
struct waiter_fact {
    const char *id;          /* the waiter id */
    const char *devices;     /* comma-separated */
    const char *score;       /* its rank in every queue (ZSET score) */
    const char *user;
    const char *lock_type;
    const char *prio;        /* as the hash holds it */
    const char *queued;      /* us, Redis clock */
    const char *deadline;    /* us, Redis clock */
    const char *plan;        /* plan_uid, "" = none */
    const char *broker;      /* the requester's broker, "" = none (a booking) */
    const char *rid;         /* its idempotency key, "" = none */
    const char *session;     /* its session, "" = none */
};

/* Every pointer is borrowed for the call (the reply of the stream read);
 * strings are never NULL ("" when the event has none) but for waiter and
 * lock. */
struct event {
    const char *id;          /* stream id "ms-seq" */
    const char *device;
    const char *plan;        /* plan_uid */
    const char *action;      /* "acquired", "reservation_started", ... */
    enum event_action kind;  /* action, for the ones that change the lock table */
    const char *user;        /* the lock's user_id, or the booking's */
    const char *cause;
    const char *lock_type;
    const char *fence;       /* the lock's fence as in the JSON */
    int64_t expiry_us;       /* the lock's lease end (Redis clock), 0 = none */
    int64_t deadline_us;     /* the earliest deadline after the change ("exp"), 0 = none */
    const char *waiter;      /* a queued request this event serves, or NULL */
    const char *json;        /* the event as clients get it */
    size_t json_len;
    const char *lock;        /* the lock object's JSON text (inside json, or a copy), or NULL */
    size_t lock_len;
    const struct waiter_fact *queue; /* EV_QUEUED, EV_UNQUEUED: the fact (json is NULL), else NULL */
};

typedef void (*event_fn)(const struct event *e);

#endif
