/* harness.h - the unit test harness: each test is a function, run in turn;
 * the last line printed is "N passed, M failed". */
#ifndef HARNESS_H
#define HARNESS_H

#include <stdio.h>
#include <string.h>

static int h_failed_checks;
static int h_passed, h_failed;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            h_failed_checks++;                                                       \
        }                                                                            \
    } while (0)
#define CHECK_STR(a, b)                                                                   \
    do {                                                                                  \
        const char *a_ = (a), *b_ = (b);                                                  \
        if (!a_ || !b_ || strcmp(a_, b_)) {                                               \
            fprintf(stderr, "  %s:%d: '%s' != '%s'\n", __FILE__, __LINE__, a_ ? a_ : "(null)", \
                    b_ ? b_ : "(null)");                                                  \
            h_failed_checks++;                                                            \
        }                                                                                 \
    } while (0)

#define RUN(test)                                                 \
    do {                                                          \
        int before_ = h_failed_checks;                            \
        test();                                                   \
        if (h_failed_checks == before_) {                         \
            h_passed++;                                           \
            printf("ok - %s\n", #test);                           \
        } else {                                                  \
            h_failed++;                                           \
            printf("FAIL - %s\n", #test);                         \
        }                                                         \
    } while (0)

#define DONE()                                                 \
    do {                                                       \
        printf("%d passed, %d failed\n", h_passed, h_failed);  \
        return h_failed ? 1 : 0;                               \
    } while (0)

#endif
