/* events.h - the event stream reader's consumer and the expiry timer.
 * Every broker reads every event from the Redis stream (store.c), pushes
 * it to its WebSocket clients, and keeps one timer at the earliest lease
 * end it knows of. */
#ifndef EVENTS_H
#define EVENTS_H

#include <stdint.h>
#include <uv.h>

void events_init(uv_loop_t *loop);
void events_shutdown(void);
/* Expiries carried out by this broker (for metrics). */
unsigned long events_expired_count(void);
/* The id of the last event read from the stream ("" before the first). */
const char *events_last_id(void);
/* Sets the timer for a deadline (Redis-clock us) if it is the earliest. */
void events_arm(int64_t deadline_us);
/* Redis clock minus this machine's, as last measured. */
int64_t events_clock_offset_us(void);

#endif
