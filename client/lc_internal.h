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

struct lc_client {
    char *url;              /* without a trailing slash */
    char *token;
    char *user_id;
    char *client_name;
    long timeout_ms;
    lc_log_fn log;
    void *log_userdata;
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
    double lease_s;         /* lease asked for / derived; <= 0 none */
    /* Written by a keepalive thread while the owner reads: atomics. */
    int64_t live_expires_us;    /* expires_us as last renewed */
    int lost;                   /* 1 once a keepalive saw the lock gone */
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
lc_status lc__list_add(struct lc_lock_list *list, lc_lock *l);
/* URL-escapes s into b. */
void lc__buf_urlenc(struct lk_buf *b, const char *s);

#endif
