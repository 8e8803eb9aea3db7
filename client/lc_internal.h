/* lc_internal.h - shared between the liblockclient source files; not installed. */
#ifndef LC_INTERNAL_H
#define LC_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "lockclient.h"
#include "lk_buf.h"

#define LC_ERRMSG_MAX 512

/* The settings behind lc_opts (and lc_options, converted). Strings owned. */
struct lc_opts {
    char *url, *token, *user_id, *client_name;
    char *ca_file, *ca_path, *cert_file, *key_file;   /* NULL: default (env, system) */
    long timeout_ms;            /* <= 0: 5000 */
    long safety_margin_ms;      /* < 0: automatic (lc__margin_ms) */
    long check_interval_ms;     /* <= 0: 1000 */
    long session_grace_ms;      /* <= 0: 10000 */
    lc_log_fn log;
    void *log_userdata;
    lc_error_fn error_cb;
    void *error_userdata;
};
/* Deep copy (NULL src: defaults); 0 or -1 (ENOMEM). dst is overwritten. */
int lc__opts_copy(struct lc_opts *dst, const struct lc_opts *src);
void lc__opts_clear(struct lc_opts *o);
/* The CA file/dir to use: the option, else $SSL_CERT_FILE / $CURL_CA_BUNDLE
 * (file) or $SSL_CERT_DIR (dir), else NULL (the system's default). */
const char *lc__ca_file(const struct lc_opts *o);
const char *lc__ca_path(const struct lc_opts *o);

/* ---- self-fencing arithmetic (lc_lease.c), shared by the keepalive thread
 * and the loop's holds. Times are CLOCK_BOOTTIME microseconds (monotonic,
 * and counting the time the machine was suspended). */
int64_t lc__mono_us(void);
/* The safety margin for a lease: opt_ms >= 0 as given (at most lease/2),
 * else max(500 ms, lease / 10), at most lease / 2. */
long lc__margin_ms(double lease_s, long opt_ms);
/* sent_us + lease - margin; 0 when lease_s <= 0 (no expiry). */
int64_t lc__deadline_us(int64_t sent_us, double lease_s, long margin_ms);
/* A call's timeout: timeout_ms, cut to the time left until deadline_us
 * (0: none). 0 when no time is left. */
long lc__call_timeout_ms(long timeout_ms, int64_t deadline_us, int64_t now_us);
/* When the next renew is due: a third of the lease after sent_us. */
int64_t lc__renew_due_us(int64_t sent_us, double lease_s);

/* A client: its own copy of the options (o.url without a trailing slash,
 * o.user_id resolved, o.timeout_ms > 0) and one curl handle. */
struct lc_client {
    struct lc_opts o;
    pthread_mutex_t mu;     /* serialises calls: curl handle, errmsg */
    CURL *curl;
    struct curl_slist *headers;
    char errmsg[LC_ERRMSG_MAX];
};

struct lc_lock {
    char **devices;
    int64_t *fences;
    size_t n;
    char *key, *expires_at, *acquired_at, *user, *reason, *plan_uid, *json;
    int64_t expires_us;
    lc_lock_type type;
    double lease_s;         /* the broker's lease_s (older brokers: asked for / derived); <= 0 none */
    char *session_id;       /* session locks; NULL otherwise */
    /* Written by a keepalive thread while the owner reads: atomics. */
    int64_t live_expires_us;    /* expires_us as last renewed */
    int lost;                   /* 1 once a keepalive saw the lock gone */
    int64_t deadline_us;        /* self-fencing deadline (monotonic), 0: none */
    int64_t lease_sent_us;      /* the send time deadline_us counts from (the writer's own) */
    int64_t lease_us;           /* lease as last granted (lease_s * 1e6), 0: none */
    int64_t preempt_grace_us;   /* grace of the preempt_requested seen, 0: none */
};

struct lc_lock_list {
    lc_lock **items;
    size_t n;
};

struct lc_event_list {
    lc_event *items;
    lc_lock **locks;        /* owned, parallel to items */
    char **json;            /* owned */
    cJSON *root;            /* owns the strings the events point to */
    char *last_id;
    size_t n;
};

/* HTTP call under the client's mutex. body may be NULL (GET). On LC_OK
 * *out is the parsed JSON reply (caller deletes). extra_ms is added to the
 * timeout. Sets the client's errmsg. */
lc_status lc__http(lc_client *c, const char *method, const char *path, const char *body,
                   long extra_ms, cJSON **out);
/* lc__http with the whole call's time given (timeout_ms, connect
 * included; <= 0: the client's timeout_ms) and, when sent_us is not NULL,
 * the monotonic time just before the request went out (the start of the
 * self-fencing lease). */
lc_status lc__http_ex(lc_client *c, const char *method, const char *path, const char *body,
                      long timeout_ms, int64_t *sent_us, cJSON **out);
/* A call that fails after lc__http succeeded (a denial, an unreadable
 * grant): sets errmsg and tells the error callback, as lc__http does for
 * its own failures. */
lc_status lc__fail(lc_client *c, lc_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void lc__seterr(lc_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lc__log(lc_log_fn fn, void *ud, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
char *lc__strdup(const char *s);
/* A new client with c's options (its own connection). */
lc_status lc__client_clone(const lc_client *c, lc_client **out);
/* Copies c's errmsg under its mutex. */
void lc__errmsg_copy(lc_client *c, char *buf, size_t len);
/* Builds an lc_lock from a broker lock object; NULL on OOM or bad shape. */
lc_lock *lc__lock_from_json(const cJSON *obj);
lc_lock *lc__lock_dup(const lc_lock *l);
/* Sets l's lease (<= 0: none) and its self-fencing deadline from sent_us,
 * with c's margin. Called by l's writer only (lc_acquire, lc_renew, a
 * keepalive on its private copy); lease_us and deadline_us are stored as
 * atomics for readers on other threads. */
void lc__lock_set_lease(const lc_client *c, lc_lock *l, double lease_s, int64_t sent_us);
/* lc_renew with the call's time (call_ms, <= 0: the client's timeout) and,
 * on LC_OK with answer not NULL, the broker's answer (caller deletes). */
lc_status lc__renew_ex(lc_client *c, lc_lock *l, double timeout_s, long call_ms, cJSON **answer);
lc_status lc__list_add(struct lc_lock_list *list, lc_lock *l);
/* A number as JSON (integers without a fraction). */
void lc__put_num(struct lk_buf *b, double v);
/* The fields of an acquire request (lc_acquire's body, the WebSocket's
 * "acquire" message), from device_name to client, without braces: one
 * writer, so both paths send the same request. */
void lc__put_request(struct lk_buf *b, const lc_request *req, const char *type, const char *user,
                     const char *request_id, const char *client_name);
/* URL-escapes s into b. */
void lc__buf_urlenc(struct lk_buf *b, const char *s);
/* Appends ?name=v (or &name=v) to a path, URL-encoded; nothing when v is NULL. */
void lc__query_param(struct lk_buf *b, const char *name, const char *v);

#endif
