/* redis_uv.h - hiredis on a libuv loop (our own thin adapter).
 *
 * Why not hiredis/adapters/libuv.h: in hiredis 0.14 its poll callback
 * returns early when libuv reports an error status. libuv reports POLLERR
 * (a refused connect, a reset) exactly that way, after stopping the handle,
 * so hiredis never learns of the error: the connect callback never runs and
 * the connection hangs forever. Here an error status is handed to hiredis
 * as a read/write event, so it sees the failure and disconnects. */
#ifndef REDIS_UV_H
#define REDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/* Attaches ac to loop. 0, or -1 (already attached / out of memory). */
int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
