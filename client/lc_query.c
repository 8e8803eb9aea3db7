/* lc_query.c - read-only calls: status, device status, fence check,
 * health, history. */
#include <stdlib.h>
#include <string.h>

#include "lc_internal.h"

lc_status lc_locks_status(lc_client *c, lc_lock_list **out)
{
    if (out)
        *out = NULL;
    if (!c || !out)
        return LC_ERR_BAD_REQUEST;
    cJSON *j = NULL;
    lc_status st = lc__http(c, "GET", "/api/locks/status", NULL, 0, &j);
    if (st != LC_OK)
        return st;
    lc_lock_list *list = calloc(1, sizeof(*list));
    const cJSON *locks = cJSON_GetObjectItemCaseSensitive(j, "locks");
    if (!list) {
        st = LC_ERR_NOMEM;
    } else if (!cJSON_IsArray(locks)) {
        st = LC_ERR_PROTOCOL;
        lc__seterr(c, "status reply has no locks array");
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, locks) {
        if (st != LC_OK)
            break;
        lc_lock *l = lc__lock_from_json(it);
        if (!l || lc__list_add(list, l) != LC_OK) {
            lc_lock_free(l);
            st = l ? LC_ERR_NOMEM : LC_ERR_PROTOCOL;
        }
    }
    cJSON_Delete(j);
    if (st != LC_OK) {
        lc_lock_list_free(list);
        return st;
    }
    *out = list;
    return LC_OK;
}

lc_status lc_device_status(lc_client *c, const char *dev, lc_lock **out)
{
    if (out)
        *out = NULL;
    if (!c || !dev || !out)
        return LC_ERR_BAD_REQUEST;
    struct lk_buf p;
    lk_buf_init(&p, 0);
    lk_buf_puts(&p, "/api/locks/device/");
    lc__buf_urlenc(&p, dev);
    if (p.oom) {
        lk_buf_free(&p);
        return LC_ERR_NOMEM;
    }
    cJSON *j = NULL;
    lc_status st = lc__http(c, "GET", lk_buf_data(&p), NULL, 0, &j);
    lk_buf_free(&p);
    if (st != LC_OK)
        return st;
    const cJSON *lock = cJSON_GetObjectItemCaseSensitive(j, "lock");
    if (cJSON_IsObject(lock)) {
        *out = lc__lock_from_json(lock);
        if (!*out)
            st = LC_ERR_PROTOCOL;
    }
    cJSON_Delete(j);
    return st;
}

lc_status lc_validate_fence(lc_client *c, const char *dev, int64_t fence, int *valid,
                            int64_t *current)
{
    if (!c || !dev || !valid)
        return LC_ERR_BAD_REQUEST;
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_puts(&b, "{\"device_name\":");
    lk_buf_json_str(&b, dev);
    lk_buf_printf(&b, ",\"fence\":%lld}", (long long)fence);
    if (b.oom) {
        lk_buf_free(&b);
        return LC_ERR_NOMEM;
    }
    cJSON *j = NULL;
    lc_status st = lc__http(c, "POST", "/api/lock/validate", lk_buf_data(&b), 0, &j);
    lk_buf_free(&b);
    if (st != LC_OK)
        return st;
    *valid = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "valid"));
    const cJSON *cur = cJSON_GetObjectItemCaseSensitive(j, "current_fence");
    if (current)
        *current = cJSON_IsNumber(cur) ? (int64_t)cur->valuedouble : -1;
    cJSON_Delete(j);
    return LC_OK;
}

lc_status lc_health_check(lc_client *c, lc_health *out)
{
    if (!c || !out)
        return LC_ERR_BAD_REQUEST;
    memset(out, 0, sizeof(*out));
    cJSON *j = NULL;
    lc_status st = lc__http(c, "GET", "/api/health/ready", NULL, 0, &j);
    if (st != LC_OK)
        return st;
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "status"));
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "active_locks");
    out->ready = s && !strcmp(s, "ready");
    out->redis_connected = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "redis_connected"));
    out->active_locks = cJSON_IsNumber(n) ? (long)n->valuedouble : 0;
    cJSON_Delete(j);
    return out->ready ? LC_OK : LC_ERR_UNAVAILABLE;
}

/* ---- history ---- */

size_t lc_event_list_count(const lc_event_list *l) { return l ? l->n : 0; }
const lc_event *lc_event_list_get(const lc_event_list *l, size_t i)
{
    return l && i < l->n ? &l->items[i] : NULL;
}
const char *lc_event_list_last_id(const lc_event_list *l) { return l ? l->last_id : NULL; }

void lc_event_list_free(lc_event_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        lc_lock_free(l->locks[i]);
        cJSON_free(l->json[i]);
    }
    free(l->items);
    free(l->locks);
    free(l->json);
    free(l->last_id);
    cJSON_Delete(l->root);
    free(l);
}

void lc__query_param(struct lk_buf *b, const char *name, const char *v)
{
    if (!v)
        return;
    lk_buf_putc(b, b->len && strchr(lk_buf_data(b), '?') ? '&' : '?');
    lk_buf_puts(b, name);
    lk_buf_putc(b, '=');
    lc__buf_urlenc(b, v);
}

lc_status lc_history(lc_client *c, const lc_history_query *q, lc_event_list **out)
{
    if (out)
        *out = NULL;
    if (!c || !out)
        return LC_ERR_BAD_REQUEST;
    lc_history_query none = {0};
    if (!q)
        q = &none;
    struct lk_buf p;
    lk_buf_init(&p, 0);
    lk_buf_puts(&p, "/api/events");
    char lim[24];
    snprintf(lim, sizeof(lim), "%d", q->limit);
    lc__query_param(&p, "since", q->since);
    lc__query_param(&p, "limit", q->limit > 0 ? lim : NULL);
    lc__query_param(&p, "device", q->device);
    lc__query_param(&p, "plan_uid", q->plan_uid);
    if (p.oom) {
        lk_buf_free(&p);
        return LC_ERR_NOMEM;
    }
    cJSON *j = NULL;
    lc_status st = lc__http(c, "GET", lk_buf_data(&p), NULL, 0, &j);
    lk_buf_free(&p);
    if (st != LC_OK)
        return st;
    const cJSON *evs = cJSON_GetObjectItemCaseSensitive(j, "events");
    int n = cJSON_GetArraySize(evs);
    lc_event_list *l = calloc(1, sizeof(*l));
    if (!l || !cJSON_IsArray(evs)) {
        cJSON_Delete(j);
        free(l);
        lc__seterr(c, "history reply has no events array");
        return l ? LC_ERR_PROTOCOL : LC_ERR_NOMEM;
    }
    l->root = j;
    l->items = calloc((size_t)n + 1, sizeof(*l->items));
    l->locks = calloc((size_t)n + 1, sizeof(*l->locks));
    l->json = calloc((size_t)n + 1, sizeof(*l->json));
    const char *last = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "last_event_id"));
    l->last_id = last ? strdup(last) : NULL;
    if (!l->items || !l->locks || !l->json || (last && !l->last_id)) {
        lc_event_list_free(l);
        return LC_ERR_NOMEM;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, evs) {
        lc_event *ev = &l->items[l->n];
        ev->event_id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "event_id"));
        ev->action = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "action"));
        ev->device_name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "device_name"));
        ev->cause = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "cause"));
        ev->timestamp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "timestamp"));
        const cJSON *lo = cJSON_GetObjectItemCaseSensitive(e, "lock");
        l->locks[l->n] = cJSON_IsObject(lo) ? lc__lock_from_json(lo) : NULL;
        l->json[l->n] = cJSON_PrintUnformatted(e);
        ev->lock = l->locks[l->n];
        ev->json = l->json[l->n];
        l->n++;
        if (!ev->json || (cJSON_IsObject(lo) && !ev->lock)) {
            lc_event_list_free(l);
            return LC_ERR_NOMEM;
        }
    }
    *out = l;
    return LC_OK;
}
