/* mirror.c - see mirror.h. The table is an array sorted by device name:
 * lookups are binary searches, a change moves at most the tail (cheap for
 * the tens of thousands of locks a lab has), and listings come out in the
 * name order the API promises; snapshot pages arrive in that order, so
 * staging them only appends.
 *
 * While a snapshot is staged, the events read meanwhile are kept (only
 * those that change the table, at most PENDING_MAX of them or
 * PENDING_MAX_BYTES) and applied in stream order by mirror_commit. */
#include <stdio.h>
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
    char *name;
    char *json;
    size_t len;
    int64_t exp_us;   /* lease end (Redis clock), 0 = none */
};

struct pending {          /* an event that changes the table, kept while staging */
    char id[48];
    int kind;             /* 1 set the lock, -1 remove it */
    char *name;
    char *json;           /* the lock object (kind 1), else NULL */
    size_t len;
    int64_t exp_us;
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
} m;

static void (*on_ready)(void);
static unsigned long long changes; /* mirror_changes() */

void mirror_on_ready(void (*fn)(void)) { on_ready = fn; }

static size_t find(const char *name, int *found)
{
    size_t lo = 0, hi = m.n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(m.e[mid].name, name);
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

static void pending_free(void)
{
    for (size_t i = 0; i < m.np; i++) {
        free(m.p[i].name);
        free(m.p[i].json);
    }
    free(m.p);
    m.p = NULL;
    m.np = m.pcap = m.pbytes = 0;
    m.overflow = 0;
}

void mirror_free(void)
{
    table_free();
    pending_free();
    memset(&m, 0, sizeof(m));
}

void mirror_begin(void)
{
    table_free();
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

/* What an event does to the table: 1 set the lock it carries, -1 remove
 * it, 0 nothing (expiring, preempt_requested, reservation_*). */
static int event_kind(const struct event *e)
{
    if (!lk_device_name_valid(e->device))
        return 0;
    if (e->kind == EV_ACQUIRED || e->kind == EV_RENEWED)
        return e->lock ? 1 : 0;
    if (e->kind == EV_RELEASED || e->kind == EV_FORCE_RELEASED)
        return -1;
    return 0;
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
    size_t len = kind > 0 ? e->lock_len : 0;
    if (m.overflow || !kind)
        return;
    if (m.np >= PENDING_MAX || m.pbytes + len > PENDING_MAX_BYTES || strlen(e->id) >= sizeof(m.p[0].id)) {
        m.overflow = 1;
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
    p->json = kind > 0 ? lk_xstrndup(e->lock, len) : NULL;
    p->len = len;
    p->exp_us = e->expiry_us;
    m.pbytes += len;
}

void mirror_apply(const struct event *e)
{
    int kind = event_kind(e);
    if (m.staging) {
        keep_pending(e, kind);
        return;
    }
    if (!m.valid)
        return;
    int was_ready = mirror_ready();
    if (lk_stream_id_cmp(e->id, m.at) > 0) /* else already in the snapshot */
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
