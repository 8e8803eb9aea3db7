/* lc_reservation.c - bookings (1.2): book, list, get, cancel, move over
 * the broker's /api/reservations (docs/reservations.md), and the RFC 3339
 * conversions the API's microsecond times need. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lc_internal.h"
#include "lk_time.h"

struct lc_booking_list {
    lc_booking **items;
    size_t n;
    char *next_cursor;
};

/* ---- times ---- */

lc_status lc_time_parse(const char *text, int64_t *us)
{
    if (!text || !us)
        return LC_ERR_BAD_REQUEST;
    /* RFC 3339 wants the offset: "Z" or "+hh:mm" / "-hh:mm" (common/ reads
     * a time without one as UTC, which a caller's local time is not) */
    size_t n = strlen(text);
    int zulu = n >= 20 && (text[n - 1] == 'Z' || text[n - 1] == 'z');
    int offset = n >= 25 && (text[n - 6] == '+' || text[n - 6] == '-') && text[n - 3] == ':';
    char buf[64];
    if ((!zulu && !offset) || n >= sizeof(buf))
        return LC_ERR_BAD_REQUEST;
    memcpy(buf, text, n + 1);
    if (buf[10] == 't')
        buf[10] = 'T';
    int64_t v;
    if (lk_time_parse_us(buf, &v) != 0)
        return LC_ERR_BAD_REQUEST;
    *us = v;
    return LC_OK;
}

char *lc_time_format(int64_t us, char *buf, size_t len)
{
    if (!buf || !len)
        return buf;
    char tmp[64];
    lk_time_format_us(us, tmp, sizeof(tmp));
    snprintf(buf, len, "%s", tmp);
    return buf;
}

/* ---- booking objects ---- */

void lc_booking_free(lc_booking *b)
{
    if (!b)
        return;
    for (size_t i = 0; b->device_names && i < b->n_devices; i++)
        free((char *)b->device_names[i]);
    for (size_t i = 0; b->bumped && i < b->n_bumped; i++)
        free((char *)b->bumped[i]);
    free((void *)b->device_names);
    free((void *)b->bumped);
    free((char *)b->id);
    free((char *)b->user_id);
    free((char *)b->lock_key);
    free((char *)b->reason);
    free((char *)b->plan_uid);
    free((char *)b->state);
    free((char *)b->cause);
    free((char *)b->bumped_by);
    free((char *)b->json);
    free(b);
}

static const char *dup_member(const cJSON *o, const char *name, int *oom)
{
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name));
    if (!v)
        return NULL;
    char *d = strdup(v);
    if (!d)
        *oom = 1;
    return d;
}

/* An RFC 3339 member in µs; 0 when missing or unreadable. */
static int64_t time_member(const cJSON *o, const char *name)
{
    int64_t us = 0;
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name));
    return s && lc_time_parse(s, &us) == LC_OK ? us : 0;
}

/* The strings of a JSON array (non-strings skipped), copied. */
static const char *const *dup_strings(const cJSON *arr, size_t *n, int *oom)
{
    *n = 0;
    int size = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : 0;
    if (size <= 0)
        return NULL;
    char **v = calloc((size_t)size, sizeof(char *));
    if (!v) {
        *oom = 1;
        return NULL;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsString(it))
            continue;
        if (!(v[*n] = strdup(it->valuestring))) {
            *oom = 1;
            break;
        }
        (*n)++;
    }
    return (const char *const *)v;
}

/* A booking from the broker's object; NULL on OOM (*oom set) or a shape
 * that is not a booking (no id). bumped: the reply's "bumped" (lc_book). */
static lc_booking *booking_from_json(const cJSON *o, const cJSON *bumped, int *oom)
{
    if (!cJSON_IsObject(o) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "id")))
        return NULL;
    lc_booking *b = calloc(1, sizeof(*b));
    if (!b) {
        *oom = 1;
        return NULL;
    }
    b->id = dup_member(o, "id", oom);
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(o, "device_names");
    if (cJSON_IsArray(names)) {
        b->device_names = dup_strings(names, &b->n_devices, oom);
    } else if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "device_name"))) {
        char **one = calloc(1, sizeof(char *));
        if (one && (one[0] = strdup(cJSON_GetObjectItemCaseSensitive(o, "device_name")->valuestring)))
            b->n_devices = 1;
        else
            *oom = 1;
        b->device_names = (const char *const *)one;
    }
    b->type = lc_lock_type_parse(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "lock_type")));
    const cJSON *prio = cJSON_GetObjectItemCaseSensitive(o, "priority");
    b->priority = cJSON_IsNumber(prio) ? (int)prio->valuedouble : -1;
    b->user_id = dup_member(o, "user_id", oom);
    b->lock_key = dup_member(o, "lock_key", oom);
    b->start_us = time_member(o, "start");
    b->end_us = time_member(o, "end");
    b->reason = dup_member(o, "reason", oom);
    b->plan_uid = dup_member(o, "plan_uid", oom);
    b->state = dup_member(o, "state", oom);
    b->cause = dup_member(o, "cause", oom);
    b->bumped_by = dup_member(o, "bumped_by", oom);
    b->created_us = time_member(o, "created_at");
    b->updated_us = time_member(o, "updated_at");
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(o, "sequence");
    b->sequence = cJSON_IsNumber(seq) ? (long)seq->valuedouble : 0;
    if (bumped)
        b->bumped = dup_strings(bumped, &b->n_bumped, oom);
    if (!(b->json = cJSON_PrintUnformatted(o)))
        *oom = 1;
    if (*oom) {
        lc_booking_free(b);
        return NULL;
    }
    return b;
}

/* The booking in reply j's "reservation" into *out (out may be NULL: only
 * checked). Deletes j. */
static lc_status reply_booking(lc_client *c, cJSON *j, const char *what, lc_booking **out)
{
    int oom = 0;
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "reservation");
    lc_booking *b = booking_from_json(r, cJSON_GetObjectItemCaseSensitive(j, "bumped"), &oom);
    cJSON_Delete(j);
    if (!b)
        return oom ? lc__fail(c, LC_ERR_NOMEM, "out of memory reading the booking")
                   : lc__fail(c, LC_ERR_PROTOCOL, "%s: the reply has no reservation object", what);
    if (out)
        *out = b;
    else
        lc_booking_free(b);
    return LC_OK;
}

/* "/api/reservations/ID" into p. */
static void booking_path(struct lk_buf *p, const char *id)
{
    lk_buf_puts(p, "/api/reservations/");
    lc__buf_urlenc(p, id);
}

static void put_time(struct lk_buf *b, const char *name, int64_t us)
{
    char t[64];
    lk_time_format_us(us, t, sizeof(t));
    lk_buf_printf(b, ",\"%s\":", name);
    lk_buf_json_str(b, t);
}

/* ---- calls ---- */

lc_status lc_book(lc_client *c, const lc_booking_request *req, lc_booking **out)
{
    if (out)
        *out = NULL;
    if (!c || !req || !out || req->end_us <= 0 ||
        (!req->device_name && (!req->device_names || req->n_devices == 0)))
        return LC_ERR_BAD_REQUEST;
    /* the broker wants a lock_type: LC_TYPE_DEFAULT is MANUAL_OPERATOR, as for lc_acquire */
    const char *type = lc_lock_type_name(req->type == LC_TYPE_DEFAULT ? LC_MANUAL_OPERATOR : req->type);
    if (!type)
        return LC_ERR_BAD_REQUEST;
    struct lk_buf b;
    lk_buf_init(&b, 0);
    if (req->device_name) {
        lk_buf_puts(&b, "{\"device_names\":[");
        lk_buf_json_str(&b, req->device_name);
        lk_buf_putc(&b, ']');
    } else {
        lk_buf_puts(&b, "{\"device_names\":[");
        for (size_t i = 0; i < req->n_devices; i++) {
            if (i)
                lk_buf_putc(&b, ',');
            lk_buf_json_str(&b, req->device_names[i]);
        }
        lk_buf_putc(&b, ']');
    }
    lk_buf_puts(&b, ",\"lock_type\":");
    lk_buf_json_str(&b, type);
    lk_buf_puts(&b, ",\"user_id\":");
    lk_buf_json_str(&b, req->user_id ? req->user_id : c->o.user_id);
    put_time(&b, "start", req->start_us > 0 ? req->start_us : lk_time_now_us());
    put_time(&b, "end", req->end_us);
    struct { const char *name, *value; } opt[] = {
        {"reason", req->reason}, {"plan_uid", req->plan_uid}, {"request_id", req->request_id},
    };
    for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++)
        if (opt[i].value) {
            lk_buf_printf(&b, ",\"%s\":", opt[i].name);
            lk_buf_json_str(&b, opt[i].value);
        }
    lk_buf_putc(&b, '}');
    if (b.oom) {
        lk_buf_free(&b);
        return LC_ERR_NOMEM;
    }
    cJSON *j = NULL;
    lc_status st = lc__http(c, "POST", "/api/reservations", lk_buf_data(&b), 0, &j);
    lk_buf_free(&b);
    if (st != LC_OK)
        return st;
    return reply_booking(c, j, "book", out);
}

/* GET or DELETE /api/reservations/{id}; what names the call in errors. A
 * cancel sends the caller's user_id (the owner check of a broker without
 * auth; with auth the token's user counts). */
static lc_status by_id(lc_client *c, const char *method, const char *id, const char *what,
                       lc_booking **out)
{
    struct lk_buf p;
    lk_buf_init(&p, 0);
    booking_path(&p, id);
    if (!strcmp(method, "DELETE"))
        lc__query_param(&p, "user_id", c->o.user_id);
    if (p.oom) {
        lk_buf_free(&p);
        return LC_ERR_NOMEM;
    }
    cJSON *j = NULL;
    lc_status st = lc__http(c, method, lk_buf_data(&p), NULL, 0, &j);
    lk_buf_free(&p);
    if (st != LC_OK)
        return st;
    return reply_booking(c, j, what, out);
}

lc_status lc_booking_get(lc_client *c, const char *id, lc_booking **out)
{
    if (out)
        *out = NULL;
    if (!c || !id || !*id || !out)
        return LC_ERR_BAD_REQUEST;
    return by_id(c, "GET", id, "booking", out);
}

lc_status lc_booking_cancel(lc_client *c, const char *id, lc_booking **out)
{
    if (out)
        *out = NULL;
    if (!c || !id || !*id)
        return LC_ERR_BAD_REQUEST;
    return by_id(c, "DELETE", id, "cancel", out);
}

lc_status lc_booking_move(lc_client *c, const char *id, int64_t start_us, int64_t end_us,
                          lc_booking **out)
{
    if (out)
        *out = NULL;
    if (!c || !id || !*id || (start_us <= 0 && end_us <= 0))
        return LC_ERR_BAD_REQUEST;
    struct lk_buf p, b;
    lk_buf_init(&p, 0);
    lk_buf_init(&b, 0);
    booking_path(&p, id);
    lk_buf_puts(&b, "{\"user_id\":");     /* the caller, as for cancel */
    lk_buf_json_str(&b, c->o.user_id);
    if (start_us > 0)
        put_time(&b, "start", start_us);
    if (end_us > 0)
        put_time(&b, "end", end_us);
    lk_buf_putc(&b, '}');
    lc_status st = LC_ERR_NOMEM;
    cJSON *j = NULL;
    if (!p.oom && !b.oom)
        st = lc__http(c, "PATCH", lk_buf_data(&p), lk_buf_data(&b), 0, &j);
    lk_buf_free(&p);
    lk_buf_free(&b);
    if (st != LC_OK)
        return st;
    return reply_booking(c, j, "move", out);
}

/* ---- listing ---- */

size_t lc_booking_list_count(const lc_booking_list *l) { return l ? l->n : 0; }
const lc_booking *lc_booking_list_get(const lc_booking_list *l, size_t i)
{
    return l && i < l->n ? l->items[i] : NULL;
}
const char *lc_booking_list_next_cursor(const lc_booking_list *l) { return l ? l->next_cursor : NULL; }

void lc_booking_list_free(lc_booking_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        lc_booking_free(l->items[i]);
    free(l->items);
    free(l->next_cursor);
    free(l);
}

lc_status lc_bookings(lc_client *c, const lc_booking_query *q, lc_booking_list **out)
{
    if (out)
        *out = NULL;
    if (!c || !out)
        return LC_ERR_BAD_REQUEST;
    lc_booking_query none = {0};
    if (!q)
        q = &none;
    if (q->limit < 0)
        return LC_ERR_BAD_REQUEST;
    char from[64], to[64], lim[24];
    lk_time_format_us(q->from_us, from, sizeof(from));
    lk_time_format_us(q->to_us, to, sizeof(to));
    snprintf(lim, sizeof(lim), "%d", q->limit);
    struct lk_buf p;
    lk_buf_init(&p, 0);
    lk_buf_puts(&p, "/api/reservations");
    lc__query_param(&p, "device", q->device);
    lc__query_param(&p, "user", q->user);
    lc__query_param(&p, "state", q->state);
    lc__query_param(&p, "from", q->from_us ? from : NULL);
    lc__query_param(&p, "to", q->to_us ? to : NULL);
    lc__query_param(&p, "limit", q->limit ? lim : NULL);
    lc__query_param(&p, "cursor", q->cursor);
    if (p.oom) {
        lk_buf_free(&p);
        return LC_ERR_NOMEM;
    }
    cJSON *j = NULL;
    lc_status st = lc__http(c, "GET", lk_buf_data(&p), NULL, 0, &j);
    lk_buf_free(&p);
    if (st != LC_OK)
        return st;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "reservations");
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(j);
        return lc__fail(c, LC_ERR_PROTOCOL, "bookings: the reply has no reservations array");
    }
    lc_booking_list *l = calloc(1, sizeof(*l));
    int n = cJSON_GetArraySize(arr), oom = !l;
    if (l && n > 0 && !(l->items = calloc((size_t)n, sizeof(*l->items))))
        oom = 1;
    const char *cur = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "next_cursor"));
    if (l && cur && !(l->next_cursor = strdup(cur)))
        oom = 1;
    const cJSON *it;
    st = LC_OK;
    cJSON_ArrayForEach(it, arr) {
        if (oom || st != LC_OK)
            break;
        lc_booking *b = booking_from_json(it, NULL, &oom);
        if (b)
            l->items[l->n++] = b;
        else if (!oom)
            st = LC_ERR_PROTOCOL;
    }
    cJSON_Delete(j);
    if (oom || st != LC_OK) {
        lc_booking_list_free(l);
        return oom ? lc__fail(c, LC_ERR_NOMEM, "out of memory reading the bookings")
                   : lc__fail(c, LC_ERR_PROTOCOL, "bookings: an entry is not a booking");
    }
    *out = l;
    return LC_OK;
}
