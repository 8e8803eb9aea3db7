/* mirror.h - this broker's copy of the lock table, fed by the event stream,
 * that serves reads (GET /api/locks/status, /api/locks/device/{name}).
 *
 * Consistency: the copy holds every event the broker has read, in stream
 * order. A read on a broker waits until the copy includes every change
 * that broker has acknowledged (read-your-writes per broker); changes made
 * through other brokers show up within the stream's latency. While the copy
 * is not valid (start-up, after a Redis reconnect, until the reader has
 * caught up with a fresh snapshot), reads of many locks wait for it
 * (mirror_on_ready) and then go to Redis a page at a time (locks.c). */
#ifndef MIRROR_H
#define MIRROR_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "lk_buf.h"

/* Starts over: empties the copy (not valid until mirror_commit) and stages
 * a snapshot read in pages. Events applied until the commit are kept. */
void mirror_begin(void);
/* Adds a page of the snapshot: locks are lock-object JSON texts (copied),
 * in device-name order. */
void mirror_stage(const char *const *locks, const size_t *lens, size_t n);
/* Adds one entry of a device's queue from a snapshot page (strings
 * copied); a waiter whose hash is gone has deadline "0" (never shown). */
void mirror_stage_waiter(const char *device, const struct waiter_fact *w);
/* Ends the staging: the pages were read after stream position `at`
 * (possibly well after: each page is its own script), so the kept events
 * after `at` are applied on top, in order, and the copy is valid. -1 when
 * too many events came meanwhile to keep them all (nothing is valid: begin
 * again). */
int mirror_commit(const char *at);
/* Applies one stream event (an events_subscribe consumer), or a queue
 * fact (events.c hands those to the mirror only). */
void mirror_apply(const struct event *e);
/* A change this broker acknowledged produced event `id`. */
void mirror_note_write(const char *id);
/* 1 when reads can be served: valid, and caught up with every
 * acknowledged write of this broker. */
int mirror_ready(void);
/* fn runs each time mirror_ready() becomes 1 (the copy was committed, or
 * it read the last acknowledged write), from inside mirror_commit or
 * mirror_apply: it must not call back into the mirror's writers. */
void mirror_on_ready(void (*fn)(void));
/* The lock JSON of a device, or NULL (also when its lease ended before
 * now_us, Redis clock). */
const char *mirror_get(const char *device, int64_t now_us, size_t *len);
/* Appends the held locks (name order) after cursor (NULL = first), at most
 * limit (< 0 = all), as a JSON array; returns how many; *next = last name
 * when more remain. */
size_t mirror_list(struct lk_buf *out, const char *cursor, long limit, int64_t now_us, const char **next);
size_t mirror_count(void);
/* Appends the device's waiters as device.lua answers them: of the first
 * MIRROR_WAITERS_MAX in rank order, those whose deadline is after now_us
 * (Redis clock), as a JSON array; returns how many. Unlike device.lua it
 * still shows the waiters of a broker that died until a broker reaps it
 * (session.lua drops them, docs/design.md "Queue facts"). */
#define MIRROR_WAITERS_MAX 100
size_t mirror_waiters(struct lk_buf *out, const char *device, int64_t now_us);
/* Calls fn with each of the first max waiters of the device's queue, in
 * rank order (past their deadline too: the copy does not know which a
 * script would still see). */
void mirror_each_waiter(const char *device, size_t max, void (*fn)(void *ctx, const struct waiter_fact *w), void *ctx);
/* Queue entries held (a group's waiter counts once per device). */
size_t mirror_waiter_count(void);
/* The stream position of the copy. */
const char *mirror_position(void);
/* Counts the changes to the copy (a lock set or removed, the copy emptied):
 * a listing stays the same while this and the time before
 * mirror_first_end() hold. */
unsigned long long mirror_changes(void);
/* The earliest lease end after now_us (Redis clock) among the held locks,
 * when the first of them drops out of listings; 0 if none ends. */
int64_t mirror_first_end(int64_t now_us);
void mirror_free(void);

#endif
