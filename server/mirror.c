/* mirror.c - see mirror.h. The table is an array sorted by device name:
 * lookups are binary searches, a change moves at most the tail (cheap for
 * the tens of thousands of locks a lab has), and listings come out in the
 * name order the API promises; snapshot pages arrive in that order, so
 * staging them only appends.
 *
 * The device queues are a second sorted array (by device name) of queues,
 * each an array of its waiters in rank order (score, then waiter id: the
 * ZSET's order), fed by the queue facts (EV_QUEUED, EV_UNQUEUED). A waiter
 * of a group is one entry in each of its devices' queues, each with its
 * answer text rendered once, as device.lua renders it.
 *
 * While a snapshot is staged, the events read meanwhile are kept (only
 * those that change the table or a queue, at most PENDING_MAX of them or
 * PENDING_MAX_BYTES) and applied in stream order by mirror_commit. */
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "lk_mem.h"
#include "lk_text.h"
#include "lk_time.h"
#include "mirror.h"

#define PENDING_MAX 200000
#define PENDING_MAX_BYTES (64u << 20)

struct entry {
    char *name;       /* first: find_in */
    char *json;
    size_t len;
    int64_t exp_us;   /* lease end (Redis clock), 0 = none */
};

struct fact_copy {         /* a queue fact, copied: its strings follow */
    struct waiter_fact w;
    char text[];
};

struct pending {          /* an event that changes the table, kept while staging */
    char id[48];
    int kind;             /* 1 set the lock, -1 remove it, 2 queued, -2 unqueued */
    char *name;
    char *json;           /* the lock object (kind 1), else NULL */
    size_t len;
    int64_t exp_us;
    struct fact_copy *fact; /* kinds 2 and -2 */
};

struct qent {             /* one waiter in one device's queue */
    char *wid;            /* fact->w.id */
    double score;
    int64_t deadline_us;  /* shown while before it (0: never, its hash is gone) */
    char *json;           /* the waiter as the device answer shows it */
    size_t len;
    struct fact_copy *fact; /* the fact it came from (mirror_each_waiter) */
};

struct queue {
    char *name;       /* first: find_in */
    struct qent *w;
    size_t n, cap;
};

static struct {
    struct entry *e;
    size_t n, cap;
    int valid;
    int staging;      /* a snapshot is being staged (mirror_begin) */
    struct pending *p;
    size_t np, pcap, pbytes;
    int overflow;     /* events were dropped while staging */
    char at[48];      /* snapshot position: events up to here are in the copy */
    char pos[48];     /* last event applied (or skipped as already included) */
    char barrier[48]; /* newest event a write of this broker produced */
    struct queue *q;  /* the device queues, by name */
    size_t nq, qcap;
    size_t nwaiters;  /* queue entries in all */
} m;

static void (*on_ready)(void);
static unsigned long long changes; /* mirror_changes() */

void mirror_on_ready(void (*fn)(void)) { on_ready = fn; }

/* Where name is (or would go) in an array of n elements of size bytes,
 * in name order, each starting with its name (struct entry, struct queue). */
static size_t find_in(const void *base, size_t n, size_t size, const char *name, int *found)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(*(char *const *)((const char *)base + mid * size), name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

_Static_assert(offsetof(struct entry, name) == 0, "find_in reads the name first");
_Static_assert(offsetof(struct queue, name) == 0, "find_in reads the name first");

static size_t find(const char *name, int *found) { return find_in(m.e, m.n, sizeof(*m.e), name, found); }

static void set(const char *name, const char *json, size_t len, int64_t exp_us)
{
    int found;
    size_t i = find(name, &found);
    if (found) {
        free(m.e[i].json);
    } else {
        if (m.n == m.cap) {
            m.cap = m.cap ? m.cap * 2 : 256;
            m.e = lk_xrealloc(m.e, m.cap * sizeof(*m.e));
        }
        memmove(&m.e[i + 1], &m.e[i], (m.n - i) * sizeof(*m.e));
        m.e[i].name = lk_xstrdup(name);
        m.n++;
    }
    m.e[i].json = lk_xstrndup(json, len);
    m.e[i].len = len;
    m.e[i].exp_us = exp_us;
    changes++;
}

static void del(const char *name)
{
    int found;
    size_t i = find(name, &found);
    if (!found)
        return;
    free(m.e[i].name);
    free(m.e[i].json);
    memmove(&m.e[i], &m.e[i + 1], (m.n - i - 1) * sizeof(*m.e));
    m.n--;
    changes++;
}

static void table_free(void)
{
    for (size_t i = 0; i < m.n; i++) {
        free(m.e[i].name);
        free(m.e[i].json);
    }
    free(m.e);
    m.e = NULL;
    m.n = m.cap = 0;
    changes++;
}

static void queues_free(void)
{
    for (size_t i = 0; i < m.nq; i++) {
        for (size_t k = 0; k < m.q[i].n; k++) {
            free(m.q[i].w[k].fact);
            free(m.q[i].w[k].json);
        }
        free(m.q[i].w);
        free(m.q[i].name);
    }
    free(m.q);
    m.q = NULL;
    m.nq = m.qcap = m.nwaiters = 0;
}

static void pending_free(void)
{
    for (size_t i = 0; i < m.np; i++) {
        free(m.p[i].name);
        free(m.p[i].json);
        free(m.p[i].fact);
    }
    free(m.p);
    m.p = NULL;
    m.np = m.pcap = m.pbytes = 0;
    m.overflow = 0;
}

void mirror_free(void)
{
    table_free();
    queues_free();
    pending_free();
    memset(&m, 0, sizeof(m));
}

void mirror_begin(void)
{
    table_free();
    queues_free();
    pending_free();
    m.valid = 0;
    m.staging = 1;
}

/* A snapshot page's lock objects are read with a parser (its device and
 * lease end); the text kept is the one Redis answered. */
void mirror_stage(const char *const *locks, const size_t *lens, size_t n)
{
    if (!m.staging)
        return;
    for (size_t i = 0; i < n; i++) {
        cJSON *l = cJSON_ParseWithLength(locks[i], lens[i]);
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(l, "device_name"));
        const char *exp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(l, "expires_at"));
        int64_t exp_us = 0;
        if (exp && lk_time_parse_us(exp, &exp_us) != 0)
            exp_us = 0;
        if (name && lk_device_name_valid(name))
            set(name, locks[i], lens[i], exp_us);
        cJSON_Delete(l);
    }
}

static void apply_event(int kind, const char *name, const char *lock, size_t len, int64_t exp_us);
static void apply_fact(int kind, const struct waiter_fact *w);

/* ---- the device queues ---- */

static size_t find_queue(const char *name, int *found)
{
    return find_in(m.q, m.nq, sizeof(*m.q), name, found);
}

static int64_t us_of(const char *s) { return strtoll(s, NULL, 10); }

static void iso_us(struct lk_buf *b, const char *us)
{
    char ts[40];
    lk_time_format_us(us_of(us), ts, sizeof(ts));
    lk_buf_printf(b, "\"%s\"", ts);
}

/* The waiter's object in the device answer, as device.lua writes it. */
static void waiter_json(struct lk_buf *b, const struct waiter_fact *w)
{
    lk_buf_puts(b, "{\"user_id\":");
    lk_buf_cjson_str(b, w->user);
    lk_buf_puts(b, ",\"lock_type\":");
    lk_buf_cjson_str(b, w->lock_type);
    lk_buf_printf(b, ",\"priority\":%s,\"queued_at\":", w->prio);
    iso_us(b, w->queued);
    lk_buf_puts(b, ",\"wait_until\":");
    iso_us(b, w->deadline);
    lk_buf_puts(b, ",\"plan_uid\":");
    if (w->plan[0])
        lk_buf_cjson_str(b, w->plan);
    else
        lk_buf_puts(b, "null");
    if (strchr(w->devices, ',')) { /* maybe a group: as many names as split() finds */
        size_t n = 0, at = b->len;
        lk_buf_puts(b, ",\"group\":[");
        for (const char *p = w->devices; *p;) {
            size_t len = strcspn(p, ",");
            if (len) {
                char name[LK_DEVICE_NAME_MAX + 1];
                snprintf(name, sizeof(name), "%.*s", (int)(len < sizeof(name) ? len : sizeof(name) - 1), p);
                if (n++)
                    lk_buf_putc(b, ',');
                lk_buf_cjson_str(b, name);
            }
            p += len + (p[len] == ',');
        }
        lk_buf_putc(b, ']');
        if (n < 2)
            b->len = at; /* one name: no group */
    }
    lk_buf_putc(b, '}');
}

static void queue_del(const char *dev, const char *wid)
{
    int found;
    size_t i = find_queue(dev, &found);
    if (!found)
        return;
    struct queue *q = &m.q[i];
    for (size_t k = 0; k < q->n; k++) {
        if (strcmp(q->w[k].wid, wid))
            continue;
        free(q->w[k].fact);
        free(q->w[k].json);
        memmove(&q->w[k], &q->w[k + 1], (q->n - k - 1) * sizeof(*q->w));
        q->n--;
        m.nwaiters--;
        break;
    }
    if (!q->n) {
        free(q->w);
        free(q->name);
        memmove(&m.q[i], &m.q[i + 1], (m.nq - i - 1) * sizeof(*m.q));
        m.nq--;
    }
}

/* The ZSET's order: score, then member bytes. */
static int rank_cmp(double score, const char *wid, const struct qent *e)
{
    if (score != e->score)
        return score < e->score ? -1 : 1;
    return strcmp(wid, e->wid);
}

static struct fact_copy *fact_dup(const struct waiter_fact *w, size_t *bytes);

static void queue_put(const char *dev, const struct waiter_fact *w, const char *json, size_t len)
{
    const char *wid = w->id;
    double score = strtod(w->score, NULL);
    int64_t deadline_us = us_of(w->deadline);
    queue_del(dev, wid);
    int found;
    size_t i = find_queue(dev, &found);
    if (!found) {
        if (m.nq == m.qcap) {
            m.qcap = m.qcap ? m.qcap * 2 : 64;
            m.q = lk_xrealloc(m.q, m.qcap * sizeof(*m.q));
        }
        memmove(&m.q[i + 1], &m.q[i], (m.nq - i) * sizeof(*m.q));
        m.q[i] = (struct queue){lk_xstrdup(dev), NULL, 0, 0};
        m.nq++;
    }
    struct queue *q = &m.q[i];
    if (q->n == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 4;
        q->w = lk_xrealloc(q->w, q->cap * sizeof(*q->w));
    }
    size_t k = q->n;
    while (k > 0 && rank_cmp(score, wid, &q->w[k - 1]) < 0)
        k--;
    memmove(&q->w[k + 1], &q->w[k], (q->n - k) * sizeof(*q->w));
    size_t bytes;
    struct fact_copy *c = fact_dup(w, &bytes);
    q->w[k] = (struct qent){(char *)c->w.id, score, deadline_us, lk_xstrndup(json, len), len, c};
    q->n++;
    m.nwaiters++;
}

/* Each device of a fact's list, as split() reads it. */
static void each_device(const char *list, const struct waiter_fact *w, int kind, const struct lk_buf *json)
{
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len && len <= LK_DEVICE_NAME_MAX) {
            char dev[LK_DEVICE_NAME_MAX + 1];
            memcpy(dev, p, len);
            dev[len] = '\0';
            if (kind > 0)
                queue_put(dev, w, lk_buf_data(json), json->len);
            else
                queue_del(dev, w->id);
        }
        p += len + (p[len] == ',');
    }
}

/* A queued fact replaces the waiter in each of its queues; an unqueued
 * one takes it off the queues it names: applying one twice leaves the
 * queues as once. */
static void apply_fact(int kind, const struct waiter_fact *w)
{
    struct lk_buf json;
    lk_buf_init(&json, 0);
    if (kind > 0)
        waiter_json(&json, w);
    each_device(w->devices, w, kind, &json);
    lk_buf_free(&json);
}

void mirror_stage_waiter(const char *device, const struct waiter_fact *w)
{
    if (!m.staging || !lk_device_name_valid(device))
        return;
    struct lk_buf json;
    lk_buf_init(&json, 0);
    waiter_json(&json, w);
    queue_put(device, w, lk_buf_data(&json), json.len);
    lk_buf_free(&json);
}

size_t mirror_waiters(struct lk_buf *out, const char *device, int64_t now_us)
{
    int found;
    size_t i = find_queue(device, &found), n = 0;
    lk_buf_putc(out, '[');
    for (size_t k = 0; found && k < m.q[i].n && k < MIRROR_WAITERS_MAX; k++) {
        const struct qent *e = &m.q[i].w[k];
        if (e->deadline_us <= now_us)
            continue;
        if (n++)
            lk_buf_putc(out, ',');
        lk_buf_append(out, e->json, e->len);
    }
    lk_buf_putc(out, ']');
    return n;
}

size_t mirror_waiter_count(void) { return m.nwaiters; }

void mirror_each_waiter(const char *device, size_t max, void (*fn)(void *ctx, const struct waiter_fact *w), void *ctx)
{
    int found;
    size_t i = find_queue(device, &found);
    for (size_t k = 0; found && k < m.q[i].n && k < max; k++)
        fn(ctx, &m.q[i].w[k].fact->w);
}

static struct fact_copy *fact_dup(const struct waiter_fact *w, size_t *bytes)
{
    const char *src[] = {w->id, w->devices, w->score, w->user, w->lock_type, w->prio, w->queued, w->deadline, w->plan,
                         w->broker, w->rid, w->session};
    size_t n = 0, nsrc = sizeof(src) / sizeof(src[0]);
    for (size_t i = 0; i < nsrc; i++)
        n += strlen(src[i]) + 1;
    struct fact_copy *c = lk_xmalloc(sizeof(*c) + n);
    const char **dst[] = {&c->w.id, &c->w.devices, &c->w.score, &c->w.user, &c->w.lock_type,
                          &c->w.prio, &c->w.queued, &c->w.deadline, &c->w.plan, &c->w.broker, &c->w.rid,
                          &c->w.session};
    char *p = c->text;
    for (size_t i = 0; i < nsrc; i++) {
        size_t len = strlen(src[i]) + 1;
        memcpy(p, src[i], len);
        *dst[i] = p;
        p += len;
    }
    *bytes = n;
    return c;
}

int mirror_commit(const char *at)
{
    if (!m.staging)
        return -1;
    m.staging = 0;
    if (m.overflow) {
        table_free();
        pending_free();
        return -1;
    }
    snprintf(m.at, sizeof(m.at), "%s", at);
    snprintf(m.pos, sizeof(m.pos), "%s", at);
    for (size_t i = 0; i < m.np; i++) {
        if (lk_stream_id_cmp(m.p[i].id, m.at) <= 0)
            continue; /* the pages include it */
        if (m.p[i].fact)
            apply_fact(m.p[i].kind, &m.p[i].fact->w);
        else
            apply_event(m.p[i].kind, m.p[i].name, m.p[i].json, m.p[i].len, m.p[i].exp_us);
        if (lk_stream_id_cmp(m.p[i].id, m.pos) > 0)
            snprintf(m.pos, sizeof(m.pos), "%s", m.p[i].id);
    }
    pending_free();
    m.valid = 1;
    if (on_ready && mirror_ready())
        on_ready();
    return 0;
}

/* What an event does to the table: -1 remove the lock (released,
 * force_released), 1 set the lock it carries (acquired, renewed, and
 * preempt_requested, whose lock shows the window opened; expiring and
 * reservation_started carry the lock as it is), 0 nothing (no lock). */
static int event_kind(const struct event *e)
{
    if (!lk_device_name_valid(e->device))
        return 0;
    if (e->kind == EV_RELEASED || e->kind == EV_FORCE_RELEASED)
        return -1;
    return e->lock ? 1 : 0;
}

/* Every event that changes the table carries the whole lock (or names the
 * one removed), so applying one twice leaves the table as once. */
static void apply_event(int kind, const char *name, const char *lock, size_t len, int64_t exp_us)
{
    if (kind > 0)
        set(name, lock, len, exp_us);
    else if (kind < 0)
        del(name);
}

static void keep_pending(const struct event *e, int kind)
{
    size_t len = kind == 1 ? e->lock_len : 0, fact_len = 0;
    if (m.overflow || !kind)
        return;
    struct fact_copy *fact = e->queue ? fact_dup(e->queue, &fact_len) : NULL;
    len += fact_len;
    if (m.np >= PENDING_MAX || m.pbytes + len > PENDING_MAX_BYTES || strlen(e->id) >= sizeof(m.p[0].id)) {
        m.overflow = 1;
        free(fact);
        return;
    }
    if (m.np == m.pcap) {
        m.pcap = m.pcap ? m.pcap * 2 : 256;
        m.p = lk_xrealloc(m.p, m.pcap * sizeof(*m.p));
    }
    struct pending *p = &m.p[m.np++];
    snprintf(p->id, sizeof(p->id), "%s", e->id);
    p->kind = kind;
    p->name = lk_xstrdup(e->device);
    p->json = kind == 1 ? lk_xstrndup(e->lock, e->lock_len) : NULL;
    p->len = kind == 1 ? e->lock_len : 0;
    p->exp_us = e->expiry_us;
    p->fact = fact;
    m.pbytes += len;
}

/* The tests' planted bug (tests/edges/devreads.js): with
 * DEVLOCK_TEST_MIRROR_FAULT=unqueued the copy ignores unqueued facts, which
 * the comparison with device.lua must report. */
static int fault_unqueued(void)
{
    static int on = -1;
    if (on < 0) {
        const char *v = getenv("DEVLOCK_TEST_MIRROR_FAULT");
        on = v && !strcmp(v, "unqueued");
    }
    return on;
}

void mirror_apply(const struct event *e)
{
    int kind = e->queue ? (e->kind == EV_QUEUED ? 2 : -2) : event_kind(e);
    if (kind == -2 && fault_unqueued())
        kind = 0;
    if (m.staging) {
        keep_pending(e, kind);
        return;
    }
    if (!m.valid)
        return;
    int was_ready = mirror_ready();
    if (lk_stream_id_cmp(e->id, m.at) <= 0)
        ; /* already in the snapshot */
    else if (e->queue && kind)
        apply_fact(kind, e->queue);
    else
        apply_event(kind, e->device, e->lock, e->lock_len, e->expiry_us);
    if (lk_stream_id_cmp(e->id, m.pos) > 0)
        snprintf(m.pos, sizeof(m.pos), "%s", e->id);
    if (on_ready && !was_ready && mirror_ready())
        on_ready();
}

void mirror_note_write(const char *id)
{
    if (id && id[0] && (!m.barrier[0] || lk_stream_id_cmp(id, m.barrier) > 0))
        snprintf(m.barrier, sizeof(m.barrier), "%s", id);
}

int mirror_ready(void)
{
    return m.valid && (!m.barrier[0] || lk_stream_id_cmp(m.pos, m.barrier) >= 0);
}

/* A lease past its end is left out, as the Redis reads do: its expiry
 * event is on its way. */
static int live(const struct entry *e, int64_t now_us) { return !e->exp_us || e->exp_us > now_us; }

const char *mirror_get(const char *device, int64_t now_us, size_t *len)
{
    int found;
    size_t i = find(device, &found);
    if (!found || !live(&m.e[i], now_us))
        return NULL;
    *len = m.e[i].len;
    return m.e[i].json;
}

size_t mirror_list(struct lk_buf *out, const char *cursor, long limit, int64_t now_us, const char **next)
{
    size_t i = 0, n = 0;
    *next = NULL;
    if (cursor) {
        int found;
        i = find(cursor, &found);
        if (found)
            i++;
    }
    lk_buf_putc(out, '[');
    for (; i < m.n && (limit < 0 || (long)n < limit); i++) {
        if (!live(&m.e[i], now_us))
            continue;
        if (n++)
            lk_buf_putc(out, ',');
        lk_buf_append(out, m.e[i].json, m.e[i].len);
    }
    lk_buf_putc(out, ']');
    if (limit >= 0 && i < m.n && n)
        *next = m.e[i - 1].name;
    return n;
}

size_t mirror_count(void) { return m.n; }
const char *mirror_position(void) { return m.pos; }

unsigned long long mirror_changes(void) { return changes; }

int64_t mirror_first_end(int64_t now_us)
{
    int64_t first = 0;
    for (size_t i = 0; i < m.n; i++)
        if (m.e[i].exp_us > now_us && (!first || m.e[i].exp_us < first))
            first = m.e[i].exp_us;
    return first;
}
