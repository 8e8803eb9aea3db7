/* redis_uv.c - see redis_uv.h.
 *
 * Writes are batched: when hiredis asks to write (a command was queued),
 * the adapter does not start polling for writability at once; a uv_idle
 * handle flushes the output buffer in the same loop iteration, once for all
 * the commands queued so far (idle runs after the timers, and right after
 * the I/O callbacks of the previous poll; an active idle handle also keeps
 * the poll from blocking, so commands queued by a timer go out at once).
 * Only when the socket cannot take everything does the adapter poll for
 * writability. This saves two epoll_ctl calls per batch on the hot path. */
#include <stdlib.h>

#include "redis_uv.h"

struct redis_uv {
    redisAsyncContext *ac;
    uv_poll_t handle;
    uv_idle_t flush;
    int reading;      /* hiredis wants read events */
    int want_write;   /* hiredis has output to write */
    int poll_write;   /* the socket was full: poll for writability */
    int events;       /* what the poll handle is started with */
    int closes;       /* handles still to close before freeing */
};

static void on_poll(uv_poll_t *handle, int status, int events);

static void update(struct redis_uv *p)
{
    int events = (p->reading ? UV_READABLE : 0) | (p->want_write && p->poll_write ? UV_WRITABLE : 0);
    if (events == p->events)
        return;
    p->events = events;
    if (events)
        uv_poll_start(&p->handle, events, on_poll);
    else
        uv_poll_stop(&p->handle);
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    struct redis_uv *p = handle->data;
    if (status != 0) {
        /* libuv stopped the handle; let hiredis find the error itself */
        events = UV_READABLE | UV_WRITABLE;
        p->events = 0;
    }
    if (p->ac && (events & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
    if (p->ac && status != 0)
        update(p);
}

static void on_flush(uv_idle_t *check)
{
    struct redis_uv *p = check->data;
    uv_idle_stop(check);
    if (!p->ac || !p->want_write)
        return;
    redisAsyncHandleWrite(p->ac); /* calls del_write when all is written */
    if (p->ac && p->want_write) {
        p->poll_write = 1; /* the rest goes when the socket takes it */
        update(p);
    }
}

static void add_read(void *privdata)
{
    struct redis_uv *p = privdata;
    p->reading = 1;
    update(p);
}

static void del_read(void *privdata)
{
    struct redis_uv *p = privdata;
    p->reading = 0;
    update(p);
}

static void add_write(void *privdata)
{
    struct redis_uv *p = privdata;
    p->want_write = 1;
    if (!p->poll_write)
        uv_idle_start(&p->flush, on_flush);
}

static void del_write(void *privdata)
{
    struct redis_uv *p = privdata;
    p->want_write = 0;
    p->poll_write = 0;
    update(p);
}

static void on_close(uv_handle_t *handle)
{
    struct redis_uv *p = handle->data;
    if (--p->closes == 0)
        free(p);
}

static void cleanup(void *privdata)
{
    struct redis_uv *p = privdata;
    p->ac = NULL; /* the context is being freed: no more events for it */
    p->closes = 2;
    uv_close((uv_handle_t *)&p->handle, on_close);
    uv_close((uv_handle_t *)&p->flush, on_close);
}

int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    if (ac->ev.data)
        return -1;
    struct redis_uv *p = calloc(1, sizeof(*p));
    if (!p)
        return -1;
    if (uv_poll_init_socket(loop, &p->handle, ac->c.fd) != 0) {
        free(p);
        return -1;
    }
    uv_idle_init(loop, &p->flush);
    p->ac = ac;
    p->handle.data = p;
    p->flush.data = p;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    ac->ev.data = p;
    return 0;
}
