/* locks.h - lock semantics: validates requests, runs the transition
 * scripts, and shapes replies as the old service did (SPEC §3, §5).
 * Transport-neutral: HTTP (http.c) and the WebSocket command channel (ws.c)
 * both call these. */
#ifndef LOCKS_H
#define LOCKS_H

#include <cjson/cJSON.h>

#include "lk_buf.h"
#include "lk_error.h"
#include "store.h"

struct locks_result {
    int status;            /* HTTP status */
    struct lk_buf *body;   /* a JSON object; borrowed for the call */
    const char *event_id;  /* snapshot: the stream position; else NULL */
};

/* Called exactly once, possibly before the function returns (bad input,
 * Redis down), unless the returned op is cancelled with store_cancel. */
typedef void (*locks_done_fn)(void *ctx, const struct locks_result *res);

struct store_op *locks_request(const cJSON *req, locks_done_fn fn, void *ctx);
struct store_op *locks_release(const cJSON *req, locks_done_fn fn, void *ctx);
struct store_op *locks_renew(const cJSON *req, locks_done_fn fn, void *ctx);
/* {"locks":[...],"total_count":N,"timestamp":...}; event_id is set. cursor
 * NULL = from the start; limit < 0 = all. With a limit, "next_cursor" is
 * added (null at the end). */
struct store_op *locks_status(const char *cursor, long limit, locks_done_fn fn, void *ctx);
struct store_op *locks_device(const char *device, locks_done_fn fn, void *ctx);
struct store_op *locks_events(const char *since, long limit, const char *device,
                              const char *plan_uid, locks_done_fn fn, void *ctx);

/* Answers fn with {"detail","error"} for a status. */
void locks_fail(locks_done_fn fn, void *ctx, enum lk_status s, const char *detail);
/* Writes {"detail":...,"error":...} into b. */
void locks_error_json(struct lk_buf *b, enum lk_status s, const char *detail);

#endif
