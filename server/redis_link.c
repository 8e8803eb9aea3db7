/* redis_link.c - see redis_link.h. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>

#include "config.h"
#include "lk_log.h"
#include "redis_link.h"
#include "redis_uv.h"

#define KEEPALIVE_IDLE_S 5
#define KEEPALIVE_INTERVAL_S 1
#define KEEPALIVE_PROBES 3
#define LINK_DEAD_MS 10000

redisAsyncContext *redis_link_open(uv_loop_t *loop, const char *host, int port, const char *path,
                                   void *data, redisConnectCallback *on_connect,
                                   redisDisconnectCallback *on_disconnect, char *why, size_t size)
{
    redisAsyncContext *ac = path ? redisAsyncConnectUnix(path) : redisAsyncConnect(host, port);
    if (!ac || ac->err) {
        snprintf(why, size, "%s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        return NULL;
    }
    ac->data = data;
    redis_uv_attach(ac, loop);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    return ac;
}

void redis_link_keepalive(const redisAsyncContext *ac)
{
    int fd = ac->c.fd, on = 1, idle = KEEPALIVE_IDLE_S, intvl = KEEPALIVE_INTERVAL_S, cnt = KEEPALIVE_PROBES;
    unsigned user_timeout = LINK_DEAD_MS;
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&sa, &len) != 0 ||
        (sa.ss_family != AF_INET && sa.ss_family != AF_INET6))
        return;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout)) != 0)
        lk_warn("redis: cannot set TCP keepalive on the Redis link");
}

uint64_t redis_link_timeout_ms(void)
{
    return (uint64_t)(cfg.redis_timeout_ms > 250 ? 2 * cfg.redis_timeout_ms : 500);
}
