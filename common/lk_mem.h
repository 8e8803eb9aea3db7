/* lk_mem.h - allocation that aborts on out-of-memory (server and tools only;
 * liblockclient never aborts and does not use these). */
#ifndef LK_MEM_H
#define LK_MEM_H

#include <stddef.h>

void *lk_xmalloc(size_t n);
void *lk_xcalloc(size_t n, size_t size);
void *lk_xrealloc(void *p, size_t n);
char *lk_xstrdup(const char *s);
char *lk_xstrndup(const char *s, size_t n);

#endif
