#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lk_mem.h"

static void oom(size_t n)
{
    fprintf(stderr, "devlock: out of memory allocating %zu bytes\n", n);
    abort();
}

void *lk_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *lk_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *lk_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *lk_xstrndup(const char *s, size_t n)
{
    char *p = lk_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *lk_xstrdup(const char *s) { return lk_xstrndup(s, strlen(s)); }
