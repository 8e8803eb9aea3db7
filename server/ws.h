/* ws.h - the /ws feed: initial_status, lock_update fan-out, resume, and
 * the command channel (ping, get_status, acquire, release, renew). */
#ifndef WS_H
#define WS_H

#include <libwebsockets.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "event.h"
#include "lk_buf.h"
#include "lk_error.h"
#include "lk_text.h"

struct cJSON;

struct ws_call;
struct ws_msg;
struct ws_pending;

/* Per-connection state (inside the lws per-session data). What the
 * broadcast reads of every session comes first, in its first 112 bytes
 * (ws.c asserts it): with a thousand watchers, each session is a cache
 * miss or two per event, not five. */
struct ws_session {
    int kind;                         /* PSS_WS (see http.h) */
    int syncing;        /* a snapshot or resume is in flight: hold the queue */
    struct lws *wsi;
    struct ws_session *prev, *next;   /* all sessions */
    char **filter;                    /* subscribe: devices wanted (NULL = all) */
    struct ws_msg *cur;               /* a frame being sent in fragments, or NULL */
    size_t qlen;                      /* frames in q */
    int doomed;         /* close at the next write: 1 fell too far behind, 2 no pong,
                           3 a write failed (closed without a close frame) */
    int ping_due;       /* send a ping at the next WRITEABLE */
    char floor[48];                   /* events up to this id were covered by a sync */
    struct ws_msg **q;                /* ring of frames to send */
    size_t qcap, qhead, qbytes;       /* qbytes: all but qbig */
    struct ws_msg *qbig;              /* one queued frame over --ws-queue-max-bytes, or NULL */
    struct ws_msg **sync_frames;      /* made by the sync, sent before the queue */
    size_t nsync;
    char sync_upto[48];               /* the sync covers events up to this id */
    struct ws_pending *pending;       /* resumes asked for while syncing, in order */
    size_t npending;
    struct ws_call *calls;            /* requests in flight */
    size_t ncalls;
    struct lk_buf rx;                 /* message being reassembled */
    int rx_over;                      /* message too large */
    size_t nfilter;
    char session_id[37];              /* owner of this socket's session locks */
    char conn_id[37];                 /* this socket, as session owner records name it */
    int claimed;        /* the session's owner record (Redis) names this socket */
    int attaching;      /* an attach_session (or resume with session_id) is in flight */
    int64_t ping_sent_ms;             /* a ping is unanswered since then (0: none) */
    int64_t last_seen_ms;             /* the client last sent something */
    struct auth_user user;            /* auth on: the token's user */
    size_t cur_sent;                  /* bytes of cur sent so far */
};

void ws_init(void);
/* Stops the ping and session-cleanup timer (before the loop closes). */
void ws_shutdown(void);
/* lws callback for reasons of WebSocket connections. */
int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, struct ws_session *s,
                void *in, size_t len);
/* Sends one stream event to every session (serialised once, shared); an
 * events_subscribe consumer. */
void ws_broadcast(const struct event *e);
size_t ws_client_count(void);
unsigned long ws_dropped_count(void);

/* Checks and parses one client message (depth first, then JSON, an object
 * with a string "type"). On LK_E_OK *msg (caller frees with cJSON_Delete)
 * and *type are set; on LK_E_VALIDATION *msg is set but *type is NULL; else
 * *msg is NULL. *detail says what is wrong. */
enum lk_status ws_decode(const char *text, size_t len, struct cJSON **msg, const char **type,
                         const char **detail);

/* Kept for the unit and fuzz tests that call it: lk_stream_id_cmp. */
static inline int ws_event_id_cmp(const char *a, const char *b) { return lk_stream_id_cmp(a, b); }

#endif
