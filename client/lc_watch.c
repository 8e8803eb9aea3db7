/* lc_watch.c - a WebSocket monitor of every lock, on its own lws context and
 * service thread.
 *
 * Threading: everything lws-related (connect, receive, write, the reconnect
 * timer) happens on the service thread. The cache and the last event id are
 * guarded by `mu`, which is never held while a user callback runs. Other
 * threads only take `mu` (snapshot, last id) or set `stop` and wake the
 * loop with lws_cancel_service, the one lws call that is thread-safe.
 *
 * No gaps: every lock_update carries the stream id of its event. After a
 * reconnect the watch sends {"type":"resume","since":<last id>}; the broker
 * replays the newer events, then resume_result, then live ones. The
 * initial_status the broker sends at connect is ignored while resuming (the
 * replay brings the cache up to date in order). But a new connection also
 * gets live events from the moment it is registered, before the broker has
 * read our resume: those can be newer than the first replayed ones. So
 * until resume_result every lock_update is held back, then all of them are
 * sorted by id and delivered; an event whose id is not newer than the last
 * one delivered is dropped, so none is delivered twice or out of order. On
 * resume_gap the held-back events are dropped and the fresh initial_status
 * that follows reloads the cache. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libwebsockets.h>

#include "lc_internal.h"

#define WATCH_MAX_MESSAGE (16u << 20)
#define MAX_HELD_BACK 100000     /* events held back during a resume */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

struct lc_watch {
    lc_watch_callbacks cbs;
    lc_log_fn log;
    void *log_userdata;
    char *url_copy;             /* lws_parse_uri cuts this up */
    const char *host, *path_in;
    char *path;
    char *auth;                 /* "Bearer TOKEN" or NULL */
    int port, tls;

    struct lws_context *ctx;
    struct lws *wsi;
    lws_sorted_usec_list_t sul;
    pthread_t thread;
    int stop;                   /* atomic */
    int backoff_ms;
    unsigned seed;

    struct lk_buf rx;
    struct lk_buf tx;           /* pending resume, with LWS_PRE headroom */
    int established;
    int resuming;
    cJSON **held;               /* lock_updates received while resuming */
    size_t nheld, held_cap;

    pthread_mutex_t mu;         /* guards the fields below */
    pthread_cond_t ready_cv;    /* signalled when synced becomes 1 */
    struct lc_lock_list cache;
    char last_id[64];
    int synced;
};

/* 1 if stream id a > b ("ms-seq"). */
static int id_newer(const char *a, const char *b)
{
    unsigned long long am = 0, as = 0, bm = 0, bs = 0;
    if (!b || !*b)
        return 1;
    if (sscanf(a, "%llu-%llu", &am, &as) < 1 || sscanf(b, "%llu-%llu", &bm, &bs) < 1)
        return 1;
    return am > bm || (am == bm && as > bs);
}

static void cache_clear(struct lc_lock_list *c)
{
    for (size_t i = 0; i < c->n; i++)
        lc_lock_free(c->items[i]);
    free(c->items);
    c->items = NULL;
    c->n = 0;
}

static size_t cache_find(const struct lc_lock_list *c, const char *dev)
{
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(lc_lock_device(c->items[i]), dev))
            return i;
    return (size_t)-1;
}

static lc_status copy_list(const struct lc_lock_list *src, lc_lock_list **out)
{
    lc_lock_list *l = calloc(1, sizeof(*l));
    if (!l)
        return LC_ERR_NOMEM;
    for (size_t i = 0; i < src->n; i++) {
        lc_lock *d = lc__lock_dup(src->items[i]);
        if (!d || lc__list_add(l, d) != LC_OK) {
            lc_lock_free(d);
            lc_lock_list_free(l);
            return LC_ERR_NOMEM;
        }
    }
    *out = l;
    return LC_OK;
}

static void schedule_reconnect(struct lc_watch *w);

/* Marks the watch synchronised (snapshot loaded or resume done) and tells
 * the user, outside the lock. */
static void became_synced(struct lc_watch *w)
{
    pthread_mutex_lock(&w->mu);
    int was = w->synced;
    w->synced = 1;
    pthread_cond_broadcast(&w->ready_cv);
    pthread_mutex_unlock(&w->mu);
    if (!was && w->cbs.on_connection)
        w->cbs.on_connection(1, w->cbs.userdata);
}

static void on_initial_status(struct lc_watch *w, cJSON *j)
{
    if (w->resuming)
        return;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    const cJSON *locks = cJSON_GetObjectItemCaseSensitive(data, "locks");
    const char *eid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "event_id"));
    struct lc_lock_list fresh = {0};
    const cJSON *it;
    cJSON_ArrayForEach(it, locks) {
        lc_lock *l = lc__lock_from_json(it);
        if (!l || lc__list_add(&fresh, l) != LC_OK) {
            lc_lock_free(l);
            lc__log(w->log, w->log_userdata, 3, "watch: cannot load the snapshot");
        }
    }
    lc_lock_list *copy = NULL;
    if (w->cbs.on_snapshot)
        (void)copy_list(&fresh, &copy);
    pthread_mutex_lock(&w->mu);
    cache_clear(&w->cache);
    w->cache = fresh;
    if (eid)
        snprintf(w->last_id, sizeof(w->last_id), "%s", eid);
    pthread_mutex_unlock(&w->mu);
    if (copy)
        w->cbs.on_snapshot(copy, w->cbs.userdata);
    lc_lock_list_free(copy);
    became_synced(w);
}

static void on_lock_update(struct lc_watch *w, cJSON *j)
{
    lc_event ev = {0};
    ev.event_id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "event_id"));
    ev.action = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "action"));
    ev.device_name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "device_name"));
    ev.cause = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "cause"));
    ev.timestamp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "timestamp"));
    if (!ev.action || !ev.device_name)
        return;
    const cJSON *lo = cJSON_GetObjectItemCaseSensitive(j, "lock");
    lc_lock *lock = cJSON_IsObject(lo) ? lc__lock_from_json(lo) : NULL;
    lc_lock *cached = NULL;
    if (lock && (!strcmp(ev.action, "acquired") || !strcmp(ev.action, "renewed")))
        cached = lc__lock_dup(lock);
    int remove = !strcmp(ev.action, "released") || !strcmp(ev.action, "force_released");

    pthread_mutex_lock(&w->mu);
    if (ev.event_id && !id_newer(ev.event_id, w->last_id)) {
        pthread_mutex_unlock(&w->mu);   /* already seen (replay overlap) */
        lc_lock_free(lock);
        lc_lock_free(cached);
        return;
    }
    if (ev.event_id)
        snprintf(w->last_id, sizeof(w->last_id), "%s", ev.event_id);
    size_t at = cache_find(&w->cache, ev.device_name);
    if (cached) {
        if (at != (size_t)-1) {
            lc_lock_free(w->cache.items[at]);
            w->cache.items[at] = cached;
        } else if (lc__list_add(&w->cache, cached) != LC_OK) {
            lc_lock_free(cached);
        }
    } else if (remove && at != (size_t)-1) {
        lc_lock_free(w->cache.items[at]);
        w->cache.items[at] = w->cache.items[--w->cache.n];
    }
    pthread_mutex_unlock(&w->mu);

    char *text = w->cbs.on_event ? cJSON_PrintUnformatted(j) : NULL;
    ev.lock = lock;
    ev.json = text ? text : "";
    if (w->cbs.on_event)
        w->cbs.on_event(&ev, w->cbs.userdata);
    cJSON_free(text);
    lc_lock_free(lock);
}

static void held_clear(struct lc_watch *w)
{
    for (size_t i = 0; i < w->nheld; i++)
        cJSON_Delete(w->held[i]);
    free(w->held);
    w->held = NULL;
    w->nheld = w->held_cap = 0;
}

static const char *event_id_of(const cJSON *j)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "event_id"));
}

static int held_cmp(const void *a, const void *b)
{
    const char *ia = event_id_of(*(cJSON *const *)a), *ib = event_id_of(*(cJSON *const *)b);
    return id_newer(ia, ib) ? 1 : id_newer(ib, ia) ? -1 : 0;
}

/* Keeps j (taking it) until resume_result; 0, or -1 when too many are held
 * (then the connection is dropped and the next one starts from a fresh
 * snapshot: a gap, reported through on_snapshot). */
static int hold_back(struct lc_watch *w, cJSON *j)
{
    if (w->nheld == w->held_cap) {
        size_t cap = w->held_cap ? w->held_cap * 2 : 64;
        cJSON **n = cap <= MAX_HELD_BACK ? realloc(w->held, cap * sizeof(*n)) : NULL;
        if (!n) {
            cJSON_Delete(j);
            held_clear(w);
            pthread_mutex_lock(&w->mu);
            w->last_id[0] = '\0';
            pthread_mutex_unlock(&w->mu);
            lc__log(w->log, w->log_userdata, 3, "watch: too many events to resume; reloading");
            return -1;
        }
        w->held = n;
        w->held_cap = cap;
    }
    w->held[w->nheld++] = j;
    return 0;
}

/* resume_result: the held-back events in id order, each once. */
static void release_held(struct lc_watch *w)
{
    qsort(w->held, w->nheld, sizeof(*w->held), held_cmp);
    for (size_t i = 0; i < w->nheld; i++)
        on_lock_update(w, w->held[i]);
    held_clear(w);
}

static void handle_message(struct lc_watch *w, struct lws *wsi)
{
    cJSON *j = cJSON_ParseWithLength(lk_buf_data(&w->rx), w->rx.len);
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "type"));
    if (!type) {
        lc__log(w->log, w->log_userdata, 2, "watch: unreadable frame");
    } else if (!strcmp(type, "lock_update")) {
        if (w->resuming && event_id_of(j)) {
            if (hold_back(w, j) != 0)
                lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
            return;
        }
        on_lock_update(w, j);
    } else if (!strcmp(type, "initial_status")) {
        on_initial_status(w, j);
    } else if (!strcmp(type, "resume_result")) {
        w->resuming = 0;
        lc__log(w->log, w->log_userdata, 1, "watch: resumed (%zu events)", w->nheld);
        release_held(w);
        became_synced(w);
    } else if (!strcmp(type, "error")) {
        const char *code = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "error"));
        if (code && !strcmp(code, "resume_gap")) {
            w->resuming = 0;     /* the fresh initial_status that follows is the truth */
            held_clear(w);
            lc__log(w->log, w->log_userdata, 2, "watch: resume gap, reloading the snapshot");
        } else if (w->resuming) {
            /* e.g. unavailable: try again later from a new connection */
            lc__log(w->log, w->log_userdata, 2, "watch: resume failed (%s)", code ? code : "?");
            lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
        }
    }
    cJSON_Delete(j);
}

static int watch_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    (void)user;
    struct lc_watch *w = lws_context_user(lws_get_context(wsi));
    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        if (w && w->auth) {
            unsigned char **p = (unsigned char **)in, *end = (*p) + len;
            if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_AUTHORIZATION,
                                             (const unsigned char *)w->auth,
                                             (int)strlen(w->auth), p, end))
                return -1;
        }
        break;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        w->established = 1;
        w->backoff_ms = BACKOFF_MIN_MS;
        lk_buf_reset(&w->rx);
        pthread_mutex_lock(&w->mu);
        int have_id = w->last_id[0] != 0;
        lk_buf_reset(&w->tx);
        if (have_id) {
            lk_buf_puts(&w->tx, "{\"type\":\"resume\",\"since\":");
            lk_buf_json_str(&w->tx, w->last_id);
            lk_buf_putc(&w->tx, '}');
        }
        pthread_mutex_unlock(&w->mu);
        w->resuming = have_id;
        if (have_id)
            lws_callback_on_writable(wsi);
        lc__log(w->log, w->log_userdata, 1, "watch: connected");
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (w->tx.len) {
            size_t n = w->tx.len;
            int wr = lws_write(wsi, (unsigned char *)lk_buf_data(&w->tx), n, LWS_WRITE_TEXT);
            lk_buf_reset(&w->tx);
            if (wr < (int)n)
                return -1;
        }
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (lws_is_first_fragment(wsi))
            lk_buf_reset(&w->rx);
        if (w->rx.len + len > WATCH_MAX_MESSAGE) {
            lc__log(w->log, w->log_userdata, 3, "watch: message too large");
            return -1;
        }
        lk_buf_append(&w->rx, in, len);
        if (w->rx.oom)
            return -1;
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            handle_message(w, wsi);
            lk_buf_reset(&w->rx);
        }
        break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (w)
            lc__log(w->log, w->log_userdata, 1, "watch: cannot connect: %s",
                    in && len ? (const char *)in : "?");
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (w)
            lc__log(w->log, w->log_userdata, 1, "watch: connection closed");
        break;
    case LWS_CALLBACK_WSI_DESTROY:
        /* Every connection attempt ends here, whatever ended it (error,
         * close, a handshake or ping timeout that reports nothing else). */
        if (!w)
            break;
        w->wsi = NULL;
        lk_buf_free(&w->rx);    /* also clears a sticky out-of-memory */
        lk_buf_free(&w->tx);
        pthread_mutex_lock(&w->mu);
        int was_synced = w->synced;
        w->synced = 0;
        pthread_mutex_unlock(&w->mu);
        if (__atomic_load_n(&w->stop, __ATOMIC_SEQ_CST))
            break;      /* lc_watch_free: no more callbacks */
        if (was_synced && w->cbs.on_connection)
            w->cbs.on_connection(0, w->cbs.userdata);
        w->established = 0;
        w->resuming = 0;
        held_clear(w);
        schedule_reconnect(w);
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {"lockclient-watch", watch_cb, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* A silent connection (the broker's host gone without a FIN) is pinged
 * after 10 s idle and dropped, then reconnected, after 20 s. */
static const lws_retry_bo_t idle_policy = {
    .secs_since_valid_ping = 10,
    .secs_since_valid_hangup = 20,
};

static void connect_now(lws_sorted_usec_list_t *sul)
{
    struct lc_watch *w = lws_container_of(sul, struct lc_watch, sul);
    if (__atomic_load_n(&w->stop, __ATOMIC_SEQ_CST))
        return;
    struct lws_client_connect_info i;
    memset(&i, 0, sizeof(i));
    i.context = w->ctx;
    i.address = w->host;
    i.port = w->port;
    i.path = w->path;
    i.host = w->host;
    i.origin = w->host;
    i.ssl_connection = w->tls ? LCCSCF_USE_SSL : 0;
    i.local_protocol_name = "lockclient-watch";
    i.pwsi = &w->wsi;
    i.retry_and_idle_policy = &idle_policy;
    if (!lws_client_connect_via_info(&i)) {
        w->wsi = NULL;
        schedule_reconnect(w);
    }
}

static void schedule_reconnect(struct lc_watch *w)
{
    if (__atomic_load_n(&w->stop, __ATOMIC_SEQ_CST))
        return;
    int ms = w->backoff_ms;
    int jitter = ms / 4 ? (int)(rand_r(&w->seed) % (unsigned)(ms / 2)) - ms / 4 : 0;
    w->backoff_ms = ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms * 2;
    lws_sul_schedule(w->ctx, 0, &w->sul, connect_now, (lws_usec_t)(ms + jitter) * 1000);
}

static void *watch_main(void *arg)
{
    struct lc_watch *w = arg;
    connect_now(&w->sul);
    while (!__atomic_load_n(&w->stop, __ATOMIC_SEQ_CST))
        if (lws_service(w->ctx, 0) < 0)
            break;
    return NULL;
}

static void quiet_lws(int level, const char *line)
{
    (void)level;
    (void)line;
}

static void watch_destroy(struct lc_watch *w)
{
    if (w->ctx)
        lws_context_destroy(w->ctx);
    lk_buf_free(&w->rx);
    lk_buf_free(&w->tx);
    held_clear(w);
    cache_clear(&w->cache);
    pthread_cond_destroy(&w->ready_cv);
    pthread_mutex_destroy(&w->mu);
    free(w->url_copy);
    free(w->path);
    free(w->auth);
    free(w);
}

lc_status lc_watch_new(const lc_options *opts, const lc_watch_callbacks *cbs, lc_watch **out)
{
    if (!out)
        return LC_ERR_BAD_REQUEST;
    *out = NULL;
    lc_options def = {0};
    if (!opts)
        opts = &def;
    struct lc_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return LC_ERR_NOMEM;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->ready_cv, &ca);
    pthread_condattr_destroy(&ca);
    lk_buf_init(&w->rx, 0);
    lk_buf_init(&w->tx, LWS_PRE);
    if (cbs)
        w->cbs = *cbs;
    w->log = opts->log;
    w->log_userdata = opts->log_userdata;
    w->backoff_ms = BACKOFF_MIN_MS;
    w->seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)w;
    w->url_copy = strdup(opts->url && *opts->url ? opts->url : "http://localhost:60620");
    if (!w->url_copy) {
        watch_destroy(w);
        return LC_ERR_NOMEM;
    }
    const char *proto = NULL;
    if (lws_parse_uri(w->url_copy, &proto, &w->host, &w->port, &w->path_in) ||
        !*w->host) {
        watch_destroy(w);
        return LC_ERR_BAD_REQUEST;
    }
    w->tls = !strcmp(proto, "https") || !strcmp(proto, "wss");
    if (strcmp(proto, "http") && strcmp(proto, "ws") && !w->tls) {
        watch_destroy(w);
        return LC_ERR_BAD_REQUEST;
    }
    /* lws_parse_uri drops the leading '/' of the path */
    struct lk_buf p;
    lk_buf_init(&p, 0);
    lk_buf_putc(&p, '/');
    lk_buf_puts(&p, w->path_in);
    while (p.len > 1 && lk_buf_data(&p)[p.len - 1] == '/')
        lk_buf_data(&p)[--p.len] = '\0';
    lk_buf_puts(&p, p.len > 1 ? "/ws" : "ws");
    w->path = lk_buf_steal(&p, NULL);
    if (opts->token) {
        struct lk_buf a;
        lk_buf_init(&a, 0);
        lk_buf_printf(&a, "Bearer %s", opts->token);
        w->auth = lk_buf_steal(&a, NULL);
    }
    if (!w->path || p.oom || (opts->token && !w->auth)) {
        watch_destroy(w);
        return LC_ERR_NOMEM;
    }
    /* lws logs to stderr by default; the library never prints. (This is
     * process-wide in lws.) */
    lws_set_log_level(LLL_ERR, quiet_lws);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.user = w;
    info.gid = -1;
    info.uid = -1;
    if (w->tls)
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    w->ctx = lws_create_context(&info);
    if (!w->ctx) {
        watch_destroy(w);
        return LC_ERR_INTERNAL;
    }
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        watch_destroy(w);
        return LC_ERR_NOMEM;
    }
    *out = w;
    return LC_OK;
}

lc_status lc_watch_snapshot(lc_watch *w, lc_lock_list **out)
{
    if (out)
        *out = NULL;
    if (!w || !out)
        return LC_ERR_BAD_REQUEST;
    pthread_mutex_lock(&w->mu);
    lc_status st = copy_list(&w->cache, out);
    pthread_mutex_unlock(&w->mu);
    return st;
}

int lc_watch_connected(lc_watch *w)
{
    if (!w)
        return 0;
    pthread_mutex_lock(&w->mu);
    int s = w->synced;
    pthread_mutex_unlock(&w->mu);
    return s;
}

lc_status lc_watch_wait_ready(lc_watch *w, long timeout_ms)
{
    if (!w)
        return LC_ERR_BAD_REQUEST;
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    int rc = 0;
    while (!w->synced && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&w->ready_cv, &w->mu, &dl);
    int ok = w->synced;
    pthread_mutex_unlock(&w->mu);
    return ok ? LC_OK : LC_ERR_TIMEOUT;
}

void lc_watch_last_event_id(lc_watch *w, char *buf, size_t len)
{
    if (!w || !buf || !len)
        return;
    pthread_mutex_lock(&w->mu);
    snprintf(buf, len, "%s", w->last_id);
    pthread_mutex_unlock(&w->mu);
}

void lc_watch_free(lc_watch *w)
{
    if (!w)
        return;
    __atomic_store_n(&w->stop, 1, __ATOMIC_SEQ_CST);
    lws_cancel_service(w->ctx);
    pthread_join(w->thread, NULL);
    watch_destroy(w);
}
