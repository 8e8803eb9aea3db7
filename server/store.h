/* store.h - devlockd's Redis: two async hiredis connections on the libuv
 * loop (commands, and the stream reader), scripts, reconnects, deadlines.
 *
 * Every command gets a deadline (--redis-timeout-ms). When it passes, the
 * caller is answered LK_E_UNAVAILABLE at once, although the script may
 * still run: its late reply is dropped, or handed to a "late" handler
 * (store_eval_late) for scripts whose effect must not be lost.
 * While Redis is down or not answering, store_eval fails at once.
 * With --redis-sentinel each connection asks sentinel.h where the master is
 * before every (re)connect. */
#ifndef STORE_H
#define STORE_H

#include <hiredis/hiredis.h>
#include <uv.h>

#include "lk_error.h"

/* One per row of scripts.def. */
enum store_script {
#define SCRIPT(name, file, argc_min, argc_max, writes) SCRIPT_##name,
#define MODE(name, mode, argc_min, argc_max)
#include "scripts.def"
#undef SCRIPT
#undef MODE
    SCRIPT__COUNT
};

/* Called once per command: reply is borrowed (valid during the call) and
 * non-NULL iff st == LK_E_OK; a Redis error reply arrives as
 * LK_E_INTERNAL with reply set. */
typedef void (*store_reply_fn)(void *ctx, redisReply *reply, enum lk_status st);

struct store_op;

/* Parses the URL, starts connecting (asynchronously). 0 or -1 on a bad URL.
 * broker_id names this broker's liveness key (dl:broker:<id>). */
int store_init(uv_loop_t *loop, const char *url, const char *broker_id);
/* Closes both connections; pending callbacks are answered UNAVAILABLE. */
void store_shutdown(void);

/* Up and answering. */
int store_ready(void);
/* Connections made since start (the first one included). */
unsigned long store_reconnects(void);
/* Calls sent again with the keys their script asked for (NEEDKEYS). */
unsigned long store_needkeys(void);

/* Runs a script with args (argv strings, lengths in argvlen; copied) and
 * the keys it declares (keys.h: those the args name, then what the script
 * asks for). The callback runs exactly once, unless store_cancel is
 * called first. Returns a handle valid until the callback runs, or NULL
 * when the callback already ran (Redis down: LK_E_UNAVAILABLE; or
 * argc or the mode do not fit the script's row of scripts.def, a
 * programming error that is logged: LK_E_INTERNAL with an error reply). */
struct store_op *store_eval(enum store_script script, int argc, const char **argv,
                            const size_t *argvlen, store_reply_fn fn, void *ctx);
/* As store_eval, declaring the keys in extra too (besides keys.h's): what
 * the caller knows the script will read (snapshot.lua's next page). */
struct keyset;
struct store_op *store_eval_keys(enum store_script script, int argc, const char **argv,
                                 const size_t *argvlen, const struct keyset *extra,
                                 store_reply_fn fn, void *ctx);
/* As store_eval, for a script whose effect must be followed up even after
 * its caller was answered. fn runs once, as for store_eval. If it runs with
 * LK_E_UNAVAILABLE after store_eval_late has returned the handle (the script
 * was sent: the deadline passed, the connection dropped, or the replicas did
 * not confirm), late then runs exactly once more, with the same ctx: with
 * the script's reply and LK_E_OK if it ran (possibly long after the deadline),
 * or with NULL and LK_E_UNAVAILABLE if it did not run or its outcome is
 * unknown (connection lost). The handle stays valid until late has run.
 * late NULL is store_eval. */
struct store_op *store_eval_late(enum store_script script, int argc, const char **argv,
                                 const size_t *argvlen, store_reply_fn fn, store_reply_fn late,
                                 void *ctx);
/* The caller no longer wants the answer (its connection closed): neither fn
 * nor late will run. */
void store_cancel(struct store_op *op);

/* A hook that adds keys to a call before it is sent, beyond those its
 * ARGV names (keys.h): what the caller knows of the data, so that fewer
 * calls need a NEEDKEYS round (locks.c: the read copy's queues). */
typedef void (*store_keys_fn)(struct keyset *ks, enum store_script script, int argc, char *const *argv,
                              const size_t *argvlen);
void store_on_keys(store_keys_fn fn);

/* Hooks run when the command connection comes up, and for each batch of
 * stream entries read (reply = the entries array of XREAD). */
void store_on_up(void (*fn)(void));
void store_on_events(void (*fn)(redisReply *entries));
/* Run each time the stream connection comes (back) up. */
void store_on_stream_up(void (*fn)(void));
/* Starts (or restarts) the stream reader after the given id. */
void store_read_from(const char *last_id);

#endif
