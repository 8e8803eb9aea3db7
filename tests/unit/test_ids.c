/* Unit tests of the broker's random identifiers (server/ids.c): version-4
 * UUID text, no repeats, and a forked child that does not hand out the
 * bytes its parent will. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "ids.h"

static int is_uuid4(const char *s)
{
    if (strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!strchr("0123456789abcdef", s[i]) || !s[i]) {
            return 0;
        }
    }
    return s[14] == '4' && strchr("89ab", s[19]) != NULL;
}

static int cmp(const void *a, const void *b) { return strcmp(a, b); }

/* more than one 4 KiB pool's worth (256 each), all distinct */
static void uuids_are_version_4_and_distinct(void)
{
    enum { N = 1000 };
    static char ids[N][37];
    int bad = 0;
    for (int i = 0; i < N; i++) {
        ids_uuid4(ids[i]);
        bad += !is_uuid4(ids[i]);
    }
    CHECK(bad == 0);
    qsort(ids, N, sizeof(ids[0]), cmp);
    int same = 0;
    for (int i = 1; i < N; i++)
        same += !strcmp(ids[i - 1], ids[i]);
    CHECK(same == 0);
}

/* the child's first identifier is not the parent's next one */
static void a_forked_child_starts_a_pool_of_its_own(void)
{
    char warm[37], parent[37], child[37] = "";
    ids_uuid4(warm); /* the pool is filled and partly used */
    int fd[2];
    CHECK(pipe(fd) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        char c[37];
        ids_uuid4(c);
        ssize_t n = write(fd[1], c, sizeof(c));
        _exit(n == (ssize_t)sizeof(c) ? 0 : 1);
    }
    CHECK(pid > 0);
    ids_uuid4(parent);
    CHECK(read(fd[0], child, sizeof(child)) == (ssize_t)sizeof(child));
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(fd[0]);
    close(fd[1]);
    CHECK(is_uuid4(child) && is_uuid4(parent));
    CHECK(strcmp(child, parent) != 0);
}

int main(void)
{
    RUN(uuids_are_version_4_and_distinct);
    RUN(a_forked_child_starts_a_pool_of_its_own);
    DONE();
}
