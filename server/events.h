/* events.h - the event stream reader's consumer and the expiry timer.
 * Every broker reads every event from the Redis stream (store.c), pushes
 * it to its WebSocket clients, and keeps one timer at the earliest lease
 * end it knows of. */
#ifndef EVENTS_H
#define EVENTS_H

#include <uv.h>

void events_init(uv_loop_t *loop);
void events_shutdown(void);
/* Expiries carried out by this broker (for metrics). */
unsigned long events_expired_count(void);
/* The id of the last event read from the stream ("" before the first). */
const char *events_last_id(void);

#endif
