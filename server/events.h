/* events.h - the event stream reader's consumer and the expiry timer.
 * Every broker reads every event from the Redis stream (store.c), parses
 * each entry once (event.h) and hands it to the consumers subscribed here
 * (the read copy, metrics, the WebSocket feed), and keeps one timer at the
 * earliest lease end it knows of. */
#ifndef EVENTS_H
#define EVENTS_H

#include <stdint.h>
#include <uv.h>

#include "event.h"

void events_init(uv_loop_t *loop);
/* fn gets every event read, in stream order, after the ones subscribed
 * before it (at most 8; before the loop runs). The event is borrowed for
 * the call. */
void events_subscribe(event_fn fn);
/* fn runs after each batch of events read (once their consumers ran). */
void events_on_batch(void (*fn)(void));
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
