/* redis_uv.c - see redis_uv.h. */
#include <stdlib.h>

#include "redis_uv.h"

struct redis_uv {
    redisAsyncContext *ac;
    uv_poll_t handle;
    int events;
};

static void on_poll(uv_poll_t *handle, int status, int events)
{
    struct redis_uv *p = handle->data;
    if (status != 0)
        events = p->events; /* let hiredis find the error itself */
    if (p->ac && (events & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void update(struct redis_uv *p, int add, int flag)
{
    p->events = add ? p->events | flag : p->events & ~flag;
    if (p->events)
        uv_poll_start(&p->handle, p->events, on_poll);
    else
        uv_poll_stop(&p->handle);
}

static void add_read(void *privdata) { update(privdata, 1, UV_READABLE); }
static void del_read(void *privdata) { update(privdata, 0, UV_READABLE); }
static void add_write(void *privdata) { update(privdata, 1, UV_WRITABLE); }
static void del_write(void *privdata) { update(privdata, 0, UV_WRITABLE); }

static void on_close(uv_handle_t *handle) { free(handle->data); }

static void cleanup(void *privdata)
{
    struct redis_uv *p = privdata;
    p->ac = NULL; /* the context is being freed: no more events for it */
    uv_close((uv_handle_t *)&p->handle, on_close);
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
    p->ac = ac;
    p->handle.data = p;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    ac->ev.data = p;
    return 0;
}
