/* webhooks.h - POSTs the events of the stream to the webhooks of the
 * --webhooks file, at least once and in stream order per webhook, with
 * libcurl's multi interface on the broker's libuv loop (docs/webhooks.md).
 * Nothing here blocks: a webhook that fails only delays its own events. */
#ifndef WEBHOOKS_H
#define WEBHOOKS_H

#include <uv.h>

#include "lk_buf.h"
#include "locks.h"

/* Reads the webhooks file (path borrowed) and makes it the configuration:
 * webhooks keep their delivery state across a reload by name; those no
 * longer named stop (their in-flight request is abandoned, their owner key
 * given up). On error nothing changes and -1 is returned with a message in
 * err. May be called before webhooks_init (the first load). */
int webhooks_load(const char *path, char *err, size_t errlen);
/* Parses the file's text (for tests); same contract as webhooks_load. */
int webhooks_parse(const char *text, size_t len, char *err, size_t errlen);
/* Starts delivering on the loop (a no-op without webhooks until a reload
 * adds some). */
void webhooks_init(uv_loop_t *loop);
/* Abandons the requests in flight and gives up the owner keys, running the
 * loop until Redis has answered (at most 300 ms; the keys expire anyway);
 * closes the handles. Call while the store is still up. */
void webhooks_shutdown(void);
/* New events are in the stream: owned webhooks that are idle read them. */
void webhooks_kick(void);
/* Number of webhooks configured. */
unsigned webhooks_count(void);

/* GET /api/webhooks: each webhook's configuration (never its secret) and
 * delivery state, as JSON (docs/webhooks.md), status 200 (Redis down:
 * "redis_available": false). fn runs exactly once, possibly before the
 * function returns (no webhooks, Redis down), unless the call is cancelled
 * first. Returns the call, or NULL when fn has already run. */
struct webhooks_status_call;
struct webhooks_status_call *webhooks_status(locks_done_fn fn, void *ctx);
/* The requester is gone: fn will not run. NULL is a no-op. */
void webhooks_status_cancel(struct webhooks_status_call *c);
/* Appends the webhook series to the /metrics text. */
void webhooks_metrics(struct lk_buf *b);

#endif
