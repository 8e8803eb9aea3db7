/* redis_link.h - what every link to Redis gets, store.c's two connections
 * and sentinel.c's queries alike: it is opened without blocking on the
 * loop, a TCP one has keepalive probes and TCP_USER_TIMEOUT (a peer that
 * vanished from the network, the usual cause of a failover, is dropped
 * within 10 s instead of at the kernel's retransmission timeout; a peer that
 * is only slow still acknowledges TCP and is not dropped), and connecting,
 * greeting or a Sentinel query is bounded by one timeout. */
#ifndef REDIS_LINK_H
#define REDIS_LINK_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/async.h>
#include <uv.h>

/* Starts connecting to host:port, or to the unix socket path when path is
 * not NULL (host and path borrowed), on loop, with ac->data = data and the
 * two hiredis callbacks. Returns the context, or NULL when not even the
 * attempt could start, with hiredis's reason copied into why (size bytes). */
redisAsyncContext *redis_link_open(uv_loop_t *loop, const char *host, int port, const char *path,
                                   void *data, redisConnectCallback *on_connect,
                                   redisDisconnectCallback *on_disconnect, char *why, size_t size);
/* Turns on keepalive probes and TCP_USER_TIMEOUT on a connected link; a
 * unix socket is left as it is. A failure is logged, the link kept. */
void redis_link_keepalive(const redisAsyncContext *ac);
/* How long connecting and greeting, or a Sentinel query, may take: twice
 * --redis-timeout-ms, at least 500 ms. */
uint64_t redis_link_timeout_ms(void);

#endif
