/* lc_loop_watch.c - the event stream of an lc_loop: a cache of every lock,
 * each lock_update delivered once and in order, across reconnects; the
 * holds (lc_loop_hold.c) see every event first.
 *
 * No gaps (the rules of the 1.0 watch, moved onto the loop): every
 * lock_update carries the stream id of its event. After a reconnect the
 * loop sends {"type":"resume","since":<last id>}; the broker replays the
 * newer events, then resume_result, then live ones. The initial_status a
 * new connection brings is not loaded while resuming (the replay brings the
 * cache up to date in order; the holds still check against it, see
 * lc_loop_hold.c). A new connection also gets live events from the moment
 * it is registered, before the broker has read our resume: those can be
 * newer than the first replayed ones. So until resume_result every
 * lock_update is held back (at most LOOP_MAX_HELD_BACK; beyond that the
 * connection is dropped and the next one starts from a fresh snapshot),
 * then all are sorted by id and delivered; an event whose id is not newer
 * than the last one delivered is dropped, so none is delivered twice or
 * out of order. On resume_gap the held-back events are dropped and the
 * fresh initial_status that follows reloads the cache (on_snapshot).
 *
 * The cache is kept whether or not lc_loop_watch was called (the broker
 * sends every lock at connect anyway), so a watch started later has it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lc_loop.h"

static void lock_mu(struct lc_loop *l)
{
    if (l->mu)
        pthread_mutex_lock(l->mu);
}

static void unlock_mu(struct lc_loop *l)
{
    if (l->mu)
        pthread_mutex_unlock(l->mu);
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
    lc_lock_list *c = calloc(1, sizeof(*c));
    if (!c)
        return LC_ERR_NOMEM;
    for (size_t i = 0; i < src->n; i++) {
        lc_lock *d = lc__lock_dup(src->items[i]);
        if (!d || lc__list_add(c, d) != LC_OK) {
            lc_lock_free(d);
            lc_lock_list_free(c);
            return LC_ERR_NOMEM;
        }
    }
    *out = c;
    return LC_OK;
}

static const char *event_id_of(const cJSON *j)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "event_id"));
}

void lc__stream_synced(struct lc_loop *l)
{
    l->synced = 1;
    if (!l->connected_told && !l->attaching) {
        l->connected_told = 1;
        if (l->watching && l->wcbs.on_connection)
            l->wcbs.on_connection(1, l->wcbs.userdata);
    }
}

static void held_clear(struct lc_held *h)
{
    for (size_t i = 0; i < h->n; i++)
        cJSON_Delete(h->items[i]);
    free(h->items);
    h->items = NULL;
    h->n = h->cap = 0;
}

static int held_cmp(const void *a, const void *b)
{
    const char *ia = event_id_of(*(cJSON *const *)a), *ib = event_id_of(*(cJSON *const *)b);
    return lc__id_newer(ia, ib) ? 1 : lc__id_newer(ib, ia) ? -1 : 0;
}

/* One lock_update in stream order: cache, holds, then the watch. */
static void deliver(struct lc_loop *l, const cJSON *j)
{
    lc_event ev = {0};
    ev.event_id = event_id_of(j);
    ev.action = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "action"));
    ev.device_name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "device_name"));
    ev.cause = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "cause"));
    ev.timestamp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "timestamp"));
    if (!ev.action || !ev.device_name)
        return;
    if (ev.event_id && !lc__id_newer(ev.event_id, l->last_id))
        return;     /* already seen (replay overlap) */
    const cJSON *lo = cJSON_GetObjectItemCaseSensitive(j, "lock");
    lc_lock *lock = cJSON_IsObject(lo) ? lc__lock_from_json(lo) : NULL;
    lc_lock *cached = NULL;
    if (lock && (!strcmp(ev.action, "acquired") || !strcmp(ev.action, "renewed")))
        cached = lc__lock_dup(lock);
    int remove = !strcmp(ev.action, "released") || !strcmp(ev.action, "force_released") ||
                 !strcmp(ev.action, "expired");
    lock_mu(l);
    if (ev.event_id)
        snprintf(l->last_id, sizeof(l->last_id), "%s", ev.event_id);
    size_t at = cache_find(&l->cache, ev.device_name);
    if (cached) {
        if (at != (size_t)-1) {
            lc_lock_free(l->cache.items[at]);
            l->cache.items[at] = cached;
        } else if (lc__list_add(&l->cache, cached) != LC_OK) {
            lc_lock_free(cached);
        }
    } else if (remove && at != (size_t)-1) {
        lc_lock_free(l->cache.items[at]);
        l->cache.items[at] = l->cache.items[--l->cache.n];
    }
    unlock_mu(l);
    lc__hold_event(l, j, ev.action, ev.device_name);
    if (l->watching && l->wcbs.on_event) {
        char *text = cJSON_PrintUnformatted(j);
        ev.lock = lock;
        ev.json = text ? text : "";
        l->wcbs.on_event(&ev, l->wcbs.userdata);
        cJSON_free(text);
    }
    lc_lock_free(lock);
}

static void on_initial_status(struct lc_loop *l, const cJSON *j)
{
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    const cJSON *locks = cJSON_GetObjectItemCaseSensitive(data, "locks");
    const char *eid = event_id_of(j);
    if (l->resuming) {
        lc__hold_snapshot(l, locks, eid);
        return;
    }
    struct lc_lock_list fresh = {0};
    const cJSON *it;
    cJSON_ArrayForEach(it, locks) {
        lc_lock *lk = lc__lock_from_json(it);
        if (!lk || lc__list_add(&fresh, lk) != LC_OK) {
            lc_lock_free(lk);
            lc__log(l->o.log, l->o.log_userdata, 3, "loop: cannot load the snapshot");
        }
    }
    lc_lock_list *copy = NULL;
    if (l->watching && l->wcbs.on_snapshot)
        (void)copy_list(&fresh, &copy);
    lock_mu(l);
    cache_clear(&l->cache);
    l->cache = fresh;
    if (eid)
        snprintf(l->last_id, sizeof(l->last_id), "%s", eid);
    unlock_mu(l);
    lc__hold_snapshot(l, locks, eid);
    if (copy)
        l->wcbs.on_snapshot(copy, l->wcbs.userdata);
    lc_lock_list_free(copy);
    lc__stream_synced(l);
}

void lc__stream_open(struct lc_loop *l)
{
    l->synced = 0;
    l->connected_told = 0;
    held_clear(&l->held);
    lock_mu(l);
    int have_id = l->last_id[0] != 0;
    char m[160];
    if (have_id) {
        l->resume_wire_id = ++l->next_wire_id;
        snprintf(m, sizeof(m), "{\"type\":\"resume\",\"id\":%lld,\"since\":\"%.60s\"}", l->resume_wire_id,
                 l->last_id);
    }
    unlock_mu(l);
    l->resuming = have_id;
    if (have_id)
        lc__loop_send_raw(l, m);
}

void lc__stream_closed(struct lc_loop *l)
{
    int told = l->connected_told;
    l->resuming = 0;
    l->resume_wire_id = 0;
    l->synced = 0;
    l->connected_told = 0;
    held_clear(&l->held);
    if (told && l->watching && l->wcbs.on_connection)
        l->wcbs.on_connection(0, l->wcbs.userdata);
}

void lc__stream_message(struct lc_loop *l, cJSON *j, const char *type)
{
    if (!strcmp(type, "lock_update")) {
        if (l->resuming && event_id_of(j)) {
            struct lc_held *h = &l->held;
            if (h->n == h->cap) {
                size_t cap = h->cap ? h->cap * 2 : 64;
                cJSON **n = cap <= LOOP_MAX_HELD_BACK ? realloc(h->items, cap * sizeof(*n)) : NULL;
                if (!n) {
                    cJSON_Delete(j);
                    held_clear(h);
                    lock_mu(l);
                    l->last_id[0] = '\0';   /* the next connection starts from a snapshot */
                    unlock_mu(l);
                    lc__log(l->o.log, l->o.log_userdata, 3, "loop: too many events to resume; reloading");
                    if (l->ws)
                        lc_ws_close(l->ws);
                    return;
                }
                h->items = n;
                h->cap = cap;
            }
            h->items[h->n++] = j;
            return;
        }
        deliver(l, j);
    } else if (!strcmp(type, "initial_status")) {
        on_initial_status(l, j);
    } else if (!strcmp(type, "resume_result")) {
        if (l->resuming) {
            l->resuming = 0;
            l->resume_wire_id = 0;
            lc__log(l->o.log, l->o.log_userdata, 1, "loop: resumed (%zu events)", l->held.n);
            if (l->held.n > 1)
                qsort(l->held.items, l->held.n, sizeof(*l->held.items), held_cmp);
            /* deliver may run callbacks that close nothing here (lc_loop_free
             * is not allowed in them), so the list stays ours */
            struct lc_held h = l->held;
            memset(&l->held, 0, sizeof(l->held));
            for (size_t i = 0; i < h.n; i++)
                deliver(l, h.items[i]);
            held_clear(&h);
            lc__stream_synced(l);
        }
    } else if (!strcmp(type, "error")) {
        const char *code = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "error"));
        if (code && !strcmp(code, "resume_gap")) {
            l->resuming = 0;    /* the fresh initial_status that follows is the truth */
            l->resume_wire_id = 0;
            held_clear(&l->held);
            lc__log(l->o.log, l->o.log_userdata, 2, "loop: resume gap, reloading the snapshot");
        } else if (l->resuming) {
            /* e.g. unavailable: try again from a new connection */
            lc__log(l->o.log, l->o.log_userdata, 2, "loop: resume failed (%s)", code ? code : "?");
            if (l->ws)
                lc_ws_close(l->ws);
        }
    }
    cJSON_Delete(j);
}

void lc__stream_free(struct lc_loop *l)
{
    held_clear(&l->held);
    cache_clear(&l->cache);
}

lc_status lc_loop_watch(lc_loop *l, const lc_watch_callbacks *cbs)
{
    if (!l)
        return LC_ERR_BAD_REQUEST;
    if (cbs)
        l->wcbs = *cbs;
    else
        memset(&l->wcbs, 0, sizeof(l->wcbs));
    l->watching = 1;
    return LC_OK;
}

lc_status lc_loop_snapshot(lc_loop *l, lc_lock_list **out)
{
    if (out)
        *out = NULL;
    if (!l || !out)
        return LC_ERR_BAD_REQUEST;
    lock_mu(l);
    lc_status st = copy_list(&l->cache, out);
    unlock_mu(l);
    return st;
}
