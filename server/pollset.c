/* pollset.c - see pollset.h for why and how.
 *
 * One slot per fd: the handle polling it now, its callback, the mask it
 * wants (UV_* bits, changed at once by uv_poll_start/stop) and the mask the
 * kernel has (EPOLL* bits, changed only by flush()). Each epoll entry
 * carries the fd and the slot's generation, so an event read for a handle
 * that was closed (or whose fd was taken over) in the same turn is dropped.
 * No pointer into the slot table is kept across a callback: a callback may
 * start a handle on a higher fd and grow the table. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "lk_log.h"
#include "lk_mem.h"
#include "pollset.h"

struct slot {
    uv_poll_t *handle; /* polling this fd now; NULL: none of ours */
    uv_poll_cb cb;
    uint32_t gen;      /* bumped whenever the slot changes hands */
    unsigned want;     /* UV_READABLE | UV_WRITABLE | UV_DISCONNECT | UV_PRIORITIZED */
    uint32_t kernel;   /* EPOLL* registered; 0: not in the set */
    uint64_t tried;    /* the turn of its last writable-without-asking */
    unsigned tries;    /* how many that turn */
    unsigned char dirty, trying, proven;
};

struct fd_list {
    int *fd;
    size_t n, cap;
};

static struct {
    int on;
    uv_loop_t *loop;
    int epfd;
    uv_poll_t set;       /* the epoll set's fd, polled by libuv */
    uv_prepare_t before; /* flush() and the writes without asking */
    struct slot *slot;
    size_t nslot;
    struct fd_list dirty, trying;
    uint64_t turn;
    size_t started;      /* slots with a nonzero want: the set keeps the loop alive while > 0 */
} ps = {.epfd = -1};

static int (*libuv_poll_start)(uv_poll_t *, int, uv_poll_cb);
static int (*libuv_poll_stop)(uv_poll_t *);
static void (*libuv_close)(uv_handle_t *, uv_close_cb);

static void resolve(void)
{
    if (libuv_close)
        return;
    libuv_poll_start = (int (*)(uv_poll_t *, int, uv_poll_cb))dlsym(RTLD_NEXT, "uv_poll_start");
    libuv_poll_stop = (int (*)(uv_poll_t *))dlsym(RTLD_NEXT, "uv_poll_stop");
    libuv_close = (void (*)(uv_handle_t *, uv_close_cb))dlsym(RTLD_NEXT, "uv_close");
    if (!libuv_poll_start || !libuv_poll_stop || !libuv_close) {
        lk_error("pollset: libuv's uv_poll_start, uv_poll_stop or uv_close not found");
        abort();
    }
}

static void list_add(struct fd_list *l, int fd)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->fd = lk_xrealloc(l->fd, l->cap * sizeof(*l->fd));
    }
    l->fd[l->n++] = fd;
}

static struct slot *slot_of(int fd)
{
    if ((size_t)fd >= ps.nslot) {
        size_t n = ps.nslot ? ps.nslot : 256;
        while (n <= (size_t)fd)
            n *= 2;
        ps.slot = lk_xrealloc(ps.slot, n * sizeof(*ps.slot));
        memset(ps.slot + ps.nslot, 0, (n - ps.nslot) * sizeof(*ps.slot));
        ps.nslot = n;
    }
    return &ps.slot[fd];
}

/* the slot of a handle we poll, or NULL */
static struct slot *ours(const uv_poll_t *h)
{
    int fd = h->io_watcher.fd;
    if (!ps.on || fd < 0 || (size_t)fd >= ps.nslot || ps.slot[fd].handle != h)
        return NULL;
    return &ps.slot[fd];
}

static uint32_t epoll_mask(unsigned want)
{
    return (want & UV_READABLE ? EPOLLIN : 0u) | (want & UV_WRITABLE ? EPOLLOUT : 0u) |
           (want & UV_DISCONNECT ? EPOLLRDHUP : 0u) | (want & UV_PRIORITIZED ? EPOLLPRI : 0u);
}

static void keep_alive(void)
{
    if (ps.started)
        uv_ref((uv_handle_t *)&ps.set);
    else
        uv_unref((uv_handle_t *)&ps.set);
}

static void set_want(int fd, unsigned want)
{
    struct slot *s = &ps.slot[fd];
    unsigned was = s->want;
    s->want = want;
    if (!was != !want) {
        if (want)
            ps.started++;
        else
            ps.started--;
        keep_alive();
    }
    if (!s->dirty) {
        s->dirty = 1;
        list_add(&ps.dirty, fd);
    }
    if ((want & UV_WRITABLE) && !(was & UV_WRITABLE) && !(s->kernel & EPOLLOUT) && s->proven &&
        !s->trying) {
        s->trying = 1;
        list_add(&ps.trying, fd);
    }
}

/* The slot passes to handle h (NULL: to nobody, the old one is closing):
 * the old handle counts as stopped, and the new generation makes the set
 * drop events already read for it. The fd stays on the dirty and trying
 * lists it is on, so those flags stay; the rest starts afresh. */
static void slot_hand_over(struct slot *s, uv_poll_t *h)
{
    if (s->handle && s->want) {
        ps.started--;
        keep_alive();
    }
    struct slot fresh = {.handle = h, .gen = s->gen + 1, .dirty = s->dirty, .trying = s->trying};
    *s = fresh;
}

/* The kernel gets the masks wanted now. A MOD that finds no entry means the
 * fd was closed behind the handle's back (libuv forbids it; it then polls
 * nothing either): the slot forgets it instead of registering whatever
 * file now has that number. */
static void flush(void)
{
    for (size_t i = 0; i < ps.dirty.n; i++) {
        int fd = ps.dirty.fd[i];
        struct slot *s = &ps.slot[fd];
        s->dirty = 0;
        if (!s->handle)
            continue;
        uint32_t mask = epoll_mask(s->want);
        if (mask == s->kernel)
            continue;
        struct epoll_event ev = {.events = mask, .data.u64 = (uint64_t)s->gen << 32 | (uint32_t)fd};
        int rc;
        if (!mask) {
            rc = epoll_ctl(ps.epfd, EPOLL_CTL_DEL, fd, &ev);
        } else if (!s->kernel) {
            rc = epoll_ctl(ps.epfd, EPOLL_CTL_ADD, fd, &ev);
            if (rc != 0 && errno == EEXIST)
                rc = epoll_ctl(ps.epfd, EPOLL_CTL_MOD, fd, &ev);
        } else {
            rc = epoll_ctl(ps.epfd, EPOLL_CTL_MOD, fd, &ev);
        }
        if (rc != 0) {
            lk_debug("pollset: epoll_ctl on fd %d: %s", fd, strerror(errno));
            mask = 0;
        }
        s->kernel = mask;
    }
    ps.dirty.n = 0;
}

/* Writable without asking (pollset.h): each handle that started wanting
 * UV_WRITABLE is called at once, up to TRIES_PER_TURN times a turn (lws
 * writes an HTTP answer on one call and finishes the transaction on the
 * next); one that still wants it afterwards is left to the kernel, so a
 * full socket costs at most that many failed sends a turn. Callbacks may
 * make more handles want to write (a broadcast), hence the passes; bounded,
 * the rest go to the kernel. */
#define TRIES_PER_TURN 3
static void write_now(void)
{
    for (int pass = 0; pass < TRIES_PER_TURN + 1 && ps.trying.n; pass++) {
        size_t n = ps.trying.n;
        for (size_t i = 0; i < n; i++) {
            int fd = ps.trying.fd[i];
            struct slot *s = &ps.slot[fd];
            s->trying = 0;
            if (!s->handle || !s->proven || !(s->want & UV_WRITABLE) || (s->kernel & EPOLLOUT))
                continue;
            if (s->tried != ps.turn) {
                s->tried = ps.turn;
                s->tries = 0;
            }
            if (s->tries++ == TRIES_PER_TURN)
                continue;
            s->cb(s->handle, 0, UV_WRITABLE); /* may grow ps.slot and ps.trying */
        }
        memmove(ps.trying.fd, ps.trying.fd + n, (ps.trying.n - n) * sizeof(int));
        ps.trying.n -= n;
    }
    for (size_t i = 0; i < ps.trying.n; i++)
        ps.slot[ps.trying.fd[i]].trying = 0;
    ps.trying.n = 0;
}

static void on_before_poll(uv_prepare_t *p)
{
    (void)p;
    ps.turn++;
    write_now();
    flush();
}

/* libuv's uv__io_poll and uv__poll_io, for our set */
static void on_set_readable(uv_poll_t *h, int status, int events)
{
    (void)h;
    (void)status;
    (void)events;
    struct epoll_event ev[256];
    int n = epoll_wait(ps.epfd, ev, (int)(sizeof(ev) / sizeof(ev[0])), 0);
    for (int i = 0; i < n; i++) {
        int fd = (int)(uint32_t)ev[i].data.u64;
        uint32_t gen = (uint32_t)(ev[i].data.u64 >> 32);
        if ((size_t)fd >= ps.nslot)
            continue;
        struct slot *s = &ps.slot[fd];
        if (!s->handle || s->gen != gen || !s->want)
            continue;
        uint32_t wanted = epoll_mask(s->want);
        uint32_t got = ev[i].events & (wanted | EPOLLERR | EPOLLHUP);
        if (got == EPOLLERR || got == EPOLLHUP)
            got |= wanted;
        if (!got)
            continue;
        uv_poll_t *handle = s->handle;
        uv_poll_cb cb = s->cb;
        if ((got & EPOLLERR) && !(got & EPOLLPRI)) {
            set_want(fd, 0);
            cb(handle, UV_EBADF, 0);
            continue;
        }
        if (got & (EPOLLIN | EPOLLOUT))
            s->proven = 1;
        int uv = (got & EPOLLIN ? UV_READABLE : 0) | (got & EPOLLPRI ? UV_PRIORITIZED : 0) |
                 (got & EPOLLOUT ? UV_WRITABLE : 0) | (got & EPOLLRDHUP ? UV_DISCONNECT : 0);
        cb(handle, 0, uv);
    }
}

int pollset_init(uv_loop_t *loop)
{
    resolve();
    const char *env = getenv("DEVLOCK_POLLSET");
    if (env && strcmp(env, "0") == 0) {
        lk_info("pollset: off (DEVLOCK_POLLSET=0): libuv polls each socket itself");
        return 0;
    }
    ps.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ps.epfd < 0) {
        lk_error("pollset: epoll_create1: %s; libuv polls each socket itself", strerror(errno));
        return -1;
    }
    ps.loop = loop;
    if (uv_poll_init(loop, &ps.set, ps.epfd) != 0 || libuv_poll_start(&ps.set, UV_READABLE, on_set_readable) != 0) {
        lk_error("pollset: cannot poll the epoll set; libuv polls each socket itself");
        close(ps.epfd);
        ps.epfd = -1;
        return -1;
    }
    uv_prepare_init(loop, &ps.before);
    uv_prepare_start(&ps.before, on_before_poll);
    uv_unref((uv_handle_t *)&ps.before);
    ps.on = 1;
    keep_alive();
    return 0;
}

static void on_set_closed(uv_handle_t *h)
{
    (void)h;
    close(ps.epfd);
    ps.epfd = -1;
}

void pollset_shutdown(void)
{
    if (!ps.on)
        return;
    ps.on = 0;
    libuv_close((uv_handle_t *)&ps.before, NULL);
    libuv_close((uv_handle_t *)&ps.set, on_set_closed);
    free(ps.slot);
    free(ps.dirty.fd);
    free(ps.trying.fd);
    ps.slot = NULL;
    ps.nslot = 0;
    memset(&ps.dirty, 0, sizeof(ps.dirty));
    memset(&ps.trying, 0, sizeof(ps.trying));
    ps.started = 0;
}

/* ---- libuv's entry points, as devlockd and lws's plugin call them -------- */

int uv_poll_start(uv_poll_t *h, int events, uv_poll_cb cb)
{
    resolve();
    int fd = h->io_watcher.fd;
    if (!ps.on || h->loop != ps.loop || fd < 0 || h == &ps.set)
        return libuv_poll_start(h, events, cb);
    if (events & ~(UV_READABLE | UV_WRITABLE | UV_DISCONNECT | UV_PRIORITIZED))
        return UV_EINVAL;
    if (uv_is_closing((uv_handle_t *)h))
        return UV_EINVAL;
    struct slot *s = slot_of(fd);
    if (s->handle != h) {
        /* a new handle on this fd: an earlier one was closed, or its fd was
         * closed and the number reused (its entry then left the set with it) */
        slot_hand_over(s, h);
    }
    s->cb = cb;
    set_want(fd, (unsigned)events);
    return 0;
}

int uv_poll_stop(uv_poll_t *h)
{
    resolve();
    if (!ours(h))
        return libuv_poll_stop(h);
    set_want(h->io_watcher.fd, 0);
    return 0;
}

void uv_close(uv_handle_t *h, uv_close_cb cb)
{
    resolve();
    if (h->type == UV_POLL) {
        struct slot *s = ours((uv_poll_t *)h);
        if (s) {
            int fd = ((uv_poll_t *)h)->io_watcher.fd;
            if (s->kernel) { /* now, while the fd is still open */
                struct epoll_event ev = {0};
                if (epoll_ctl(ps.epfd, EPOLL_CTL_DEL, fd, &ev) != 0)
                    lk_debug("pollset: epoll_ctl DEL on fd %d: %s", fd, strerror(errno));
            }
            slot_hand_over(s, NULL);
        }
    }
    libuv_close(h, cb);
}
