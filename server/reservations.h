/* reservations.h - bookings of devices for time windows (SPEC §9,
 * docs/reservations.md): input checks, the booking scripts (reserve.lua,
 * reservation.lua, reservations.lua) and the shape of their answers.
 * Transport-neutral, as locks.h; answers come through locks_done_fn. */
#ifndef RESERVATIONS_H
#define RESERVATIONS_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "locks.h"

/* A call in flight; reservations_abandon when its requester leaves. */
struct rsv_call;

/* GET /api/reservations filters; NULL or 0 = none. */
struct rsv_query {
    const char *device, *user, *states, *cursor;
    int64_t from_us, to_us;   /* to 0: no limit */
    long limit;
};

/* Each returns the call, or NULL when fn has already run. caller: the
 * token's user with auth on (admin: may act on every booking), or NULL
 * (no auth: anyone may). */
struct rsv_call *reservations_create(const cJSON *req, locks_done_fn fn, void *ctx);
struct rsv_call *reservations_list(const struct rsv_query *q, locks_done_fn fn, void *ctx);
struct rsv_call *reservations_get(const char *id, locks_done_fn fn, void *ctx);
struct rsv_call *reservations_cancel(const char *id, const char *caller, int admin, locks_done_fn fn,
                                     void *ctx);
struct rsv_call *reservations_patch(const char *id, const cJSON *req, const char *caller, int admin,
                                    locks_done_fn fn, void *ctx);
/* The requester is gone: fn will not be called. */
void reservations_abandon(struct rsv_call *c);

/* A time given as RFC 3339 text or as seconds since the epoch (a number);
 * 0 or -1 when it is neither. */
int reservations_parse_time(const cJSON *v, int64_t *us);
/* A booking id: 'r' and digits. */
int reservations_id_valid(const char *id);

#endif
