/* metrics.c - the broker's counters and their Prometheus text rendering.
 * Counters are per broker; lock and event totals reflect every event this
 * broker has read from the shared stream since it started. */
#include <string.h>

#include "events.h"
#include "lk_text.h"
#include "metrics.h"
#include "mirror.h"
#include "store.h"
#include "webhooks.h"

static const double buckets[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

static const char *const acquire_names[ACQ__COUNT] = {"granted", "denied", "preempted", "queued", "timed_out"};
static const char *const refusal_names[REF__COUNT] = {
#define X(name) #name,
    METRIC_REFUSALS(X)
#undef X
};
static const char *const causes[] = {"released", "preempted", "expired", "admin", "session_lost"};
#define NCAUSES (sizeof(causes) / sizeof(causes[0]))

static struct {
    unsigned long long acquires[ACQ__COUNT];
    unsigned long long refusals[REF__COUNT];
    unsigned long long releases[NCAUSES];
    unsigned long long events;
    unsigned long long http_by_class[6];  /* 1xx..5xx */
    unsigned long long hist[NBUCKETS + 1];
    double hist_sum;
    unsigned long long hist_count;
    long ws_clients;                      /* pushed by ws.c */
    unsigned long ws_dropped;
} m;

void metrics_acquire(enum metric_acquire what) { m.acquires[what]++; }
void metrics_ws_clients(int delta) { m.ws_clients += delta; }
void metrics_ws_dropped(void) { m.ws_dropped++; }
void metrics_refusal(enum metric_refusal why) { m.refusals[why]++; }

void metrics_refusal_wire(const char *wire)
{
    static const struct { const char *wire; enum metric_refusal why; } map[] = {
        {"payload_too_large", REF_body_too_large}, {"json_too_deep", REF_json_too_deep},
        {"invalid_json", REF_invalid_json}, {"validation_error", REF_validation},
        {"invalid_device_name", REF_invalid_device}, {"invalid_timeout", REF_invalid_timeout},
        {"not_found", REF_not_found}, {"method_not_allowed", REF_method},
        {"unauthorized", REF_unauthorized}, {"forbidden", REF_forbidden},
        {"unknown_type", REF_ws_bad_message}, {"bad_request", REF_validation},
        {"unknown_device", REF_unknown_device}, {"unsupported_media_type", REF_unsupported_media_type},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (!strcmp(map[i].wire, wire)) {
            m.refusals[map[i].why]++;
            return;
        }
}

void metrics_http(int status, double seconds)
{
    int cls = status / 100;
    m.http_by_class[cls >= 1 && cls <= 5 ? cls : 0]++;
    size_t i = 0;
    while (i < NBUCKETS && seconds > buckets[i])
        i++;
    m.hist[i]++;
    m.hist_sum += seconds;
    m.hist_count++;
}

void metrics_event(const struct event *e)
{
    m.events++;
    if (e->kind == EV_RELEASED) {
        m.releases[0]++;
        return;
    }
    if (e->kind != EV_FORCE_RELEASED)
        return;
    for (size_t i = 1; i < NCAUSES; i++) {
        if (!strcmp(e->cause, causes[i])) {
            m.releases[i]++;
            return;
        }
    }
}

void metrics_render(struct lk_buf *b, const long long held[4], long long stream_len)
{
    lk_buf_puts(b, "# HELP devlock_locks_held Locks held now, by lock type.\n"
                   "# TYPE devlock_locks_held gauge\n");
    for (int i = 0; i < 4; i++)
        lk_buf_printf(b, "devlock_locks_held{type=\"%s\"} %lld\n", lk_lock_type_name(i), held ? held[i] : 0);
    lk_buf_puts(b, "# HELP devlock_acquires_total Acquire requests answered by this broker, by result.\n"
                   "# TYPE devlock_acquires_total counter\n");
    for (int i = 0; i < ACQ__COUNT; i++)
        lk_buf_printf(b, "devlock_acquires_total{result=\"%s\"} %llu\n", acquire_names[i], m.acquires[i]);
    lk_buf_puts(b, "# HELP devlock_releases_total Locks ended (seen in the event stream), by cause.\n"
                   "# TYPE devlock_releases_total counter\n");
    for (size_t i = 0; i < NCAUSES; i++)
        lk_buf_printf(b, "devlock_releases_total{cause=\"%s\"} %llu\n", causes[i], m.releases[i]);
    lk_buf_printf(b, "# HELP devlock_events_total Events read from the stream.\n"
                     "# TYPE devlock_events_total counter\ndevlock_events_total %llu\n", m.events);
    lk_buf_printf(b, "# HELP devlock_stream_length Events kept in the Redis stream.\n"
                     "# TYPE devlock_stream_length gauge\ndevlock_stream_length %lld\n", stream_len);
    lk_buf_printf(b, "# HELP devlock_websocket_clients WebSocket clients connected to this broker.\n"
                     "# TYPE devlock_websocket_clients gauge\ndevlock_websocket_clients %ld\n",
                  m.ws_clients);
    lk_buf_printf(b, "# HELP devlock_websocket_dropped_total Slow WebSocket clients dropped.\n"
                     "# TYPE devlock_websocket_dropped_total counter\ndevlock_websocket_dropped_total %lu\n",
                  m.ws_dropped);
    lk_buf_printf(b, "# HELP devlock_redis_up 1 while Redis is connected and answering.\n"
                     "# TYPE devlock_redis_up gauge\ndevlock_redis_up %d\n", store_ready());
    lk_buf_printf(b, "# HELP devlock_read_copy_ready 1 while this broker's copy of the lock table serves reads.\n"
                     "# TYPE devlock_read_copy_ready gauge\ndevlock_read_copy_ready %d\n", mirror_ready());
    lk_buf_printf(b, "# HELP devlock_redis_connects_total Redis connections made (first included).\n"
                     "# TYPE devlock_redis_connects_total counter\ndevlock_redis_connects_total %lu\n",
                  store_reconnects());
    lk_buf_printf(b, "# HELP devlock_script_key_rounds_total Script calls sent again with the keys the script asked for (NEEDKEYS).\n"
                     "# TYPE devlock_script_key_rounds_total counter\ndevlock_script_key_rounds_total %lu\n",
                  store_needkeys());
    lk_buf_puts(b, "# HELP devlock_refusals_total Requests or messages refused, by reason.\n"
                   "# TYPE devlock_refusals_total counter\n");
    for (int i = 0; i < REF__COUNT; i++)
        lk_buf_printf(b, "devlock_refusals_total{reason=\"%s\"} %llu\n", refusal_names[i], m.refusals[i]);
    lk_buf_puts(b, "# HELP devlock_http_responses_total HTTP responses, by status class.\n"
                   "# TYPE devlock_http_responses_total counter\n");
    for (int i = 1; i <= 5; i++)
        lk_buf_printf(b, "devlock_http_responses_total{code=\"%dxx\"} %llu\n", i, m.http_by_class[i]);
    lk_buf_puts(b, "# HELP devlock_http_request_duration_seconds Time from request to answer.\n"
                   "# TYPE devlock_http_request_duration_seconds histogram\n");
    unsigned long long cum = 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        cum += m.hist[i];
        lk_buf_printf(b, "devlock_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n", buckets[i], cum);
    }
    cum += m.hist[NBUCKETS];
    lk_buf_printf(b, "devlock_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
    lk_buf_printf(b, "devlock_http_request_duration_seconds_sum %.6f\n", m.hist_sum);
    lk_buf_printf(b, "devlock_http_request_duration_seconds_count %llu\n", m.hist_count);
    webhooks_metrics(b);
}
