/* ids.c - random identifiers from a buffer of getrandom(2) bytes.
 *
 * libuuid's uuid_generate_random() makes six system calls per UUID: the
 * getrandom it reads, then getpid (twice), getuid, getppid and gettid to
 * mix into a fallback it applies every time. An acquire needs a lock key,
 * so that was six of the broker's ~15 system calls per acquire+release
 * (strace -c; docs/BENCHMARKS.md "seventh round"). Here one getrandom
 * fills 4 KiB, 256 UUIDs; libuuid still writes the text. The kernel's
 * generator is the only source, as with libuuid when getrandom works. */
#include "ids.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <uuid/uuid.h>

#define POOL 4096

/* Per thread, so no lock is needed; a forked child starts empty (it must
 * not hand out the bytes its parent will). */
static __thread unsigned char pool[POOL];
static __thread size_t left;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void forget_pool(void)
{
    left = 0;
}

static void at_first_use(void)
{
    pthread_atfork(NULL, NULL, forget_pool);
}

static void refill(void)
{
    size_t got = 0;
    while (got < POOL) {
        ssize_t n = getrandom(pool + got, POOL - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "devlockd: getrandom failed: %s\n", strerror(errno));
            abort();
        }
        got += (size_t)n;
    }
    left = POOL;
}

void ids_uuid4(char out[37])
{
    pthread_once(&once, at_first_use);
    if (left < sizeof(uuid_t))
        refill();
    uuid_t u;
    memcpy(u, pool + POOL - left, sizeof(u));
    /* used bytes are wiped: an identifier is not left in memory twice */
    memset(pool + POOL - left, 0, sizeof(u));
    left -= sizeof(u);
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x40); /* version 4 */
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80); /* variant 10 */
    uuid_unparse_lower(u, out);
}
