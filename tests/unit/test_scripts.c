/* Unit tests of the script table (server/scripts.def): every script file is
 * in it and embedded, and store_eval refuses a call that does not fit its
 * row before anything is sent. Nothing runs: the store is not connected, so
 * a call that fits is answered LK_E_UNAVAILABLE. */
#include <stdlib.h>

#include "embedded.h"
#include "harness.h"
#include "lk_log.h"
#include "store.h"

static void every_file_has_a_row(void)
{
    static const char *const files[] = {
#define SCRIPT(name, file, argc_min, argc_max, writes) file,
#define MODE(name, mode, argc_min, argc_max)
#include "scripts.def"
#undef SCRIPT
#undef MODE
    };
    CHECK(sizeof(files) / sizeof(files[0]) == SCRIPT__COUNT);
    for (size_t i = 0; i < SCRIPT__COUNT; i++) {
        const struct embedded_file *f = embedded_lua;
        while (f->name && strcmp(f->name, files[i]))
            f++;
        CHECK(f->name != NULL); /* the row's file is embedded */
    }
    for (const struct embedded_file *f = embedded_lua; f->name; f++) {
        int found = !strcmp(f->name, "prelude.lua"); /* prepended to all, not a script */
        for (size_t i = 0; i < SCRIPT__COUNT && !found; i++)
            found = !strcmp(f->name, files[i]);
        if (!found)
            fprintf(stderr, "  %s has no row in scripts.def\n", f->name);
        CHECK(found);
    }
}

#ifndef DEVLOCK_DEBUG /* that build aborts on a call that does not fit: these cases are left out */
static enum lk_status got;
static char got_error[200];
static int calls;

static void on_reply(void *ctx, redisReply *r, enum lk_status st)
{
    (void)ctx;
    calls++;
    got = st;
    snprintf(got_error, sizeof(got_error), "%s", r && r->type == REDIS_REPLY_ERROR ? r->str : "");
}

/* Runs one call and returns the status it was answered with. */
static enum lk_status eval(enum store_script script, int argc, const char **argv)
{
    calls = 0;
    got_error[0] = '\0';
    struct store_op *op = store_eval(script, argc, argv, NULL, on_reply, NULL);
    CHECK(op == NULL && calls == 1); /* answered at once, exactly once */
    return got;
}

static void argc_is_checked(void)
{
    const char *a[20] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j",
                         "k", "l", "m", "n", "o", "p", "q", "r", "s", "t"};
    CHECK(eval(SCRIPT_ACQUIRE, 16, a) == LK_E_UNAVAILABLE);   /* fits: Redis is down */
    CHECK(eval(SCRIPT_ACQUIRE, 15, a) == LK_E_INTERNAL);
    CHECK(strstr(got_error, "acquire.lua takes 16..16 arguments, called with 15") != NULL);
    CHECK(eval(SCRIPT_ACQUIRE, 17, a) == LK_E_INTERNAL);
    CHECK(eval(SCRIPT_RELEASE, 5, a) == LK_E_UNAVAILABLE);    /* a range */
    CHECK(eval(SCRIPT_RELEASE, 6, a) == LK_E_UNAVAILABLE);
    CHECK(eval(SCRIPT_RELEASE, 7, a) == LK_E_INTERNAL);
    CHECK(eval(SCRIPT_STATS, 0, NULL) == LK_E_UNAVAILABLE);   /* no arguments at all */
    CHECK(eval(SCRIPT_CONF, 18, a) == LK_E_UNAVAILABLE);      /* no upper bound */
    CHECK(eval(SCRIPT_CONF, 2, a) == LK_E_INTERNAL);
}

static void modes_are_checked(void)
{
    const char *attach[] = {"attach", "s", "b", "c", "u", "10000", "0", ""};
    CHECK(eval(SCRIPT_SESSION, 8, attach) == LK_E_UNAVAILABLE);
    CHECK(eval(SCRIPT_SESSION, 6, attach) == LK_E_INTERNAL);  /* fits the script, not the mode */
    CHECK(strstr(got_error, "session.lua attach takes 8..8 arguments, called with 6") != NULL);
    const char *bogus[] = {"bogus", "s", "b", "c", "u", "g"};
    CHECK(eval(SCRIPT_SESSION, 6, bogus) == LK_E_INTERNAL);
    CHECK(strstr(got_error, "no mode 'bogus'") != NULL);
    const char *ack[] = {"ack", "n", "b", "5000", "1-0", "200", "1-0", "2-0", "3-0"};
    CHECK(eval(SCRIPT_WEBHOOK, 9, ack) == LK_E_UNAVAILABLE);  /* then any number of ids */
    CHECK(eval(SCRIPT_WEBHOOK, 5, ack) == LK_E_INTERNAL);
    const char *get[] = {"get", "r1", "", "", "", "", "", ""};
    CHECK(eval(SCRIPT_RESERVATIONS, 2, get) == LK_E_UNAVAILABLE);
    CHECK(eval(SCRIPT_RESERVATIONS, 8, get) == LK_E_INTERNAL); /* 8 is list's count */
}

#endif

int main(void)
{
    lk_log_threshold = LK_LOG_ERROR + 1; /* the refusals log errors: keep the output to the results */
    RUN(every_file_has_a_row);
#ifndef DEVLOCK_DEBUG
    RUN(argc_is_checked);
    RUN(modes_are_checked);
#endif
    DONE();
}
