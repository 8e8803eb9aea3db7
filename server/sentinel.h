/* sentinel.h - where the Redis master is, asked of the Sentinels of
 * --redis-sentinel (round robin) under the name --redis-master, and whether
 * the server found there is the master indeed (a Sentinel's answer can be
 * stale: the old master, not yet demoted, or a replica not yet promoted).
 *
 * One struct sentinel per link that follows the master (store.c has two);
 * it owns its query connection, the timer bounding each query
 * (redis_link_timeout_ms) and which Sentinel is asked next. It knows
 * nothing of what the link is for, and does not retry by itself: every
 * failure is logged here and answered to the caller, which asks again
 * after its own backoff. Everything runs on the loop given to
 * sentinel_new; nothing blocks. */
#ifndef SENTINEL_H
#define SENTINEL_H

#include <hiredis/async.h>
#include <uv.h>

struct sentinel;

/* The answer to sentinel_find: the master's host (borrowed: valid during
 * the call) and port; or host NULL and port 0 when this attempt failed (a
 * bad --redis-sentinel entry, a Sentinel unreachable, hanging up, silent
 * past the timeout, or not knowing the master). */
typedef void (*sentinel_found_fn)(void *ctx, const char *host, int port);
/* The answer to sentinel_check_master: is_master 1, or 0 (logged; the
 * caller drops ac and asks again). ac is the link that was checked. */
typedef void (*sentinel_checked_fn)(void *ctx, redisAsyncContext *ac, int is_master);

/* A finder for the link called name (borrowed, kept: for the log), on loop.
 * Never NULL (aborts on out of memory). */
struct sentinel *sentinel_new(uv_loop_t *loop, const char *name);
/* Cancels what is in flight and frees s once its timer has closed (the
 * loop must run on). NULL is a no-op. */
void sentinel_free(struct sentinel *s);

/* Asks the next Sentinel where the master is; fn(ctx, ...) runs exactly
 * once, possibly before this returns, unless sentinel_cancel comes first.
 * One query at a time: a call while one is in flight is a programming
 * error. */
void sentinel_find(struct sentinel *s, sentinel_found_fn fn, void *ctx);
/* Abandons the query in flight, if any: its fn does not run. */
void sentinel_cancel(struct sentinel *s);

/* Sends ROLE on ac (borrowed: the caller's link, just connected to where
 * the last answer of sentinel_find named) and answers fn(ctx, ac, ...)
 * once, unless the link drops first (then fn does not run: the caller's
 * disconnect callback deals with it). One check at a time per s. */
void sentinel_check_master(struct sentinel *s, redisAsyncContext *ac, sentinel_checked_fn fn,
                           void *ctx);

#endif
