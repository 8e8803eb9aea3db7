/* pollset.h - every uv_poll_t of devlockd on one epoll set of our own,
 * whose masks change in place, once per loop turn, only when they differ.
 *
 * Why: libwebsockets 4.1's libuv event library changes a socket's poll mask
 * by calling uv_poll_start again (POLLOUT on when an answer is ready, off
 * after the write), and libuv 1.44's uv_poll_start stops the handle first:
 * EPOLL_CTL_DEL, then EPOLL_CTL_ADD on the next turn. That was about ten
 * epoll_ctl per HTTP request and four per WebSocket frame sent
 * (docs/BENCHMARKS.md), 13-29 % of the broker's CPU.
 *
 * How: devlockd defines uv_poll_start, uv_poll_stop and uv_close itself and
 * exports them (the Makefile's --export-dynamic-symbol), so the calls of
 * lws's libuv plugin (a dlopen()ed library) land here too; libuv's own are
 * found with dlsym(RTLD_NEXT). A uv_poll_t started on the loop given to
 * pollset_init is not registered with libuv at all: its fd goes into our
 * epoll set, which is one fd polled by libuv (one uv_poll_t of libuv's own).
 * A start or stop only records the wanted mask; a uv_prepare handle, which
 * runs right before libuv blocks, writes the changed masks to the kernel
 * with EPOLL_CTL_MOD (ADD or DEL only when a socket enters or leaves the
 * set). A mask switched on and back off within one turn costs nothing.
 *
 * Writable without asking: a socket almost always has room, so when a
 * handle that has already seen an event asks for UV_WRITABLE and the kernel
 * is not watching for it, the prepare handle calls its callback with
 * UV_WRITABLE at once, at most once per turn; lws writes, or finds the
 * socket full and asks again, and only then is EPOLLOUT registered. A
 * handle that has seen no event yet (a client socket still connecting)
 * always waits for the kernel, so a connect is never reported early.
 *
 * Events are delivered as libuv would: masked by what is wanted now,
 * POLLERR stops the handle and reports UV_EBADF, POLLHUP alone reports what
 * is wanted. A handle's callback may start, stop or close any handle,
 * itself included; events already read for a closed handle are dropped.
 *
 * DEVLOCK_POLLSET=0 in the environment leaves libuv's own uv_poll_t in
 * charge (for comparison in benchmarks). Linux only (epoll). */
#ifndef DEVLOCK_POLLSET_H
#define DEVLOCK_POLLSET_H

#include <uv.h>

/* Takes over the uv_poll_t handles of loop from now on. Returns 0, or -1
 * (logged) when the epoll set cannot be made; libuv's own poll handles then
 * stay in charge. */
int pollset_init(uv_loop_t *loop);

/* Gives the handles back to libuv and closes the set's handles; call after
 * the last connection is closed, before the loop's final run. */
void pollset_shutdown(void);

#endif
