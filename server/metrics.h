/* metrics.h - counters for GET /metrics (Prometheus text format). */
#ifndef METRICS_H
#define METRICS_H

#include "event.h"
#include "lk_buf.h"

enum metric_acquire { ACQ_GRANTED, ACQ_DENIED, ACQ_PREEMPTED, ACQ_QUEUED, ACQ_TIMED_OUT, ACQ__COUNT };

/* Refusals of bad or unwanted input, by reason. */
#define METRIC_REFUSALS(X)                                                             \
    X(body_too_large) X(json_too_deep) X(invalid_json) X(validation) X(invalid_device) \
    X(invalid_timeout) X(not_found) X(method) X(unauthorized) X(forbidden)             \
    X(ws_message_too_large) X(ws_bad_message) X(connections) X(slow_client)            \
    X(unknown_device) X(unsupported_media_type)

enum metric_refusal {
#define X(name) REF_##name,
    METRIC_REFUSALS(X)
#undef X
    REF__COUNT
};

void metrics_acquire(enum metric_acquire what);
/* Pushed by ws.c: a WebSocket client came (1) or went (-1); one was dropped
 * as too slow. */
void metrics_ws_clients(int delta);
void metrics_ws_dropped(void);
void metrics_refusal(enum metric_refusal why);
/* Counts a refusal by its wire error code ("invalid_json", ...). */
void metrics_refusal_wire(const char *wire);
/* An event read from the stream (counts releases by cause). */
void metrics_event(const struct event *e);
/* An HTTP request answered with status after seconds. */
void metrics_http(int status, double seconds);
/* Appends the text exposition; held: locks by priority (4), stream length. */
void metrics_render(struct lk_buf *b, const long long held[4], long long stream_len);

#endif
