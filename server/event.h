/* event.h - one entry of the event stream, parsed once (events.c) and
 * handed to the consumers registered with events_subscribe (mirror,
 * metrics, the WebSocket feed). The fields come from the entry's own
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
};

typedef void (*event_fn)(const struct event *e);

#endif
