/* mirror.c - see mirror.h. The table is an array sorted by device name:
 * lookups are binary searches, a change moves at most the tail (cheap for
 * the tens of thousands of locks a lab has), and listings come out in the
 * name order the API promises; snapshot pages arrive in that order, so
 * staging them only appends.
 *
 * While a snapshot is staged, the events read meanwhile are kept (only
 * those that change the table, at most PENDING_MAX of them or
 * PENDING_MAX_BYTES) and applied in stream order by mirror_commit. */
#include <stdlib.h>
#include <string.h>

#include "lk_mem.h"
#include "lk_time.h"
#include "mirror.h"
#include "ws.h"

#define PENDING_MAX 200000
#define PENDING_MAX_BYTES (64u << 20)

struct entry {
    char *name;
    char *json;
    size_t len;
    int64_t exp_us;   /* lease end (Redis clock), 0 = none */
};

struct pending {
    char id[48];
    char *json;
    size_t len;
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

static void set(const char *name, size_t name_len, const char *json, size_t len)
{
    char key[160];
    if (name_len >= sizeof(key))
        return;
    memcpy(key, name, name_len);
    key[name_len] = '\0';
    int found;
    size_t i = find(key, &found);
    if (found) {
        free(m.e[i].json);
    } else {
        if (m.n == m.cap) {
            m.cap = m.cap ? m.cap * 2 : 256;
            m.e = lk_xrealloc(m.e, m.cap * sizeof(*m.e));
        }
        memmove(&m.e[i + 1], &m.e[i], (m.n - i) * sizeof(*m.e));
        m.e[i].name = lk_xstrdup(key);
        m.n++;
    }
    m.e[i].json = lk_xstrndup(json, len);
    m.e[i].len = len;
    m.e[i].exp_us = 0;
    const char *exp = memmem(json, len, "\"expires_at\":\"", 14);
    if (exp) {
        char ts[40];
        const char *q = memchr(exp + 14, '"', (size_t)(json + len - exp - 14));
        if (q && (size_t)(q - exp - 14) < sizeof(ts)) {
            memcpy(ts, exp + 14, (size_t)(q - exp - 14));
            ts[q - exp - 14] = '\0';
            int64_t us;
            if (lk_time_parse_us(ts, &us) == 0)
                m.e[i].exp_us = us;
        }
    }
}

static void del(const char *name, size_t name_len)
{
    char key[160];
    if (name_len >= sizeof(key))
        return;
    memcpy(key, name, name_len);
    key[name_len] = '\0';
    int found;
    size_t i = find(key, &found);
    if (!found)
        return;
    free(m.e[i].name);
    free(m.e[i].json);
    memmove(&m.e[i], &m.e[i + 1], (m.n - i - 1) * sizeof(*m.e));
    m.n--;
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
}

static void pending_free(void)
{
    for (size_t i = 0; i < m.np; i++)
        free(m.p[i].json);
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

/* The string value of "key":"..." at the top of a lock object. */
static const char *str_field(const char *json, size_t len, const char *pat, size_t *vlen)
{
    const char *p = memmem(json, len, pat, strlen(pat));
    if (!p)
        return NULL;
    p += strlen(pat);
    const char *q = memchr(p, '"', (size_t)(json + len - p));
    if (!q)
        return NULL;
    *vlen = (size_t)(q - p);
    return p;
}

void mirror_begin(void)
{
    table_free();
    pending_free();
    m.valid = 0;
    m.staging = 1;
}

void mirror_stage(const char *const *locks, const size_t *lens, size_t n)
{
    if (!m.staging)
        return;
    for (size_t i = 0; i < n; i++) {
        size_t nl;
        const char *name = str_field(locks[i], lens[i], "\"device_name\":\"", &nl);
        if (name)
            set(name, nl, locks[i], lens[i]);
    }
}

static void apply_event(const char *j, size_t len);

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
        if (ws_event_id_cmp(m.p[i].id, m.at) <= 0)
            continue; /* the pages include it */
        apply_event(m.p[i].json, m.p[i].len);
        if (ws_event_id_cmp(m.p[i].id, m.pos) > 0)
            snprintf(m.pos, sizeof(m.pos), "%s", m.p[i].id);
    }
    pending_free();
    m.valid = 1;
    if (on_ready && mirror_ready())
        on_ready();
    return 0;
}

/* The end of the JSON value starting at p (an object or array), strings
 * and escapes respected; NULL if it does not end within len. */
static const char *value_end(const char *p, const char *end)
{
    int depth = 0, in_str = 0;
    for (; p < end; p++) {
        if (in_str) {
            if (*p == '\\')
                p++;
            else if (*p == '"')
                in_str = 0;
        } else if (*p == '"') {
            in_str = 1;
        } else if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            if (--depth == 0)
                return p + 1;
        }
    }
    return NULL;
}

/* What an event does to the table: 1 set the lock it carries, -1 remove
 * it, 0 nothing (expiring, preempt_requested). */
static int event_kind(const char *j, size_t len)
{
    size_t nl;
    const char *action = str_field(j, len, "\"action\":\"", &nl);
    if (!action)
        return 0;
    if ((nl == 8 && !memcmp(action, "acquired", 8)) || (nl == 7 && !memcmp(action, "renewed", 7)))
        return 1;
    if ((nl == 8 && !memcmp(action, "released", 8)) || (nl == 14 && !memcmp(action, "force_released", 14)))
        return -1;
    return 0;
}

/* Every event that changes the table carries the whole lock (or names the
 * one removed), so applying one twice leaves the table as once. */
static void apply_event(const char *j, size_t len)
{
    int kind = event_kind(j, len);
    if (!kind)
        return;
    const char *lock = memmem(j, len, "\"lock\":{", 8);
    if (!lock)
        return;
    lock += 7;
    const char *end = value_end(lock, j + len);
    if (!end)
        return;
    size_t nl;
    const char *name = str_field(lock, (size_t)(end - lock), "\"device_name\":\"", &nl);
    if (!name)
        return;
    if (kind > 0)
        set(name, nl, lock, (size_t)(end - lock));
    else
        del(name, nl);
}

static void keep_pending(const char *id, const char *j, size_t len)
{
    if (m.overflow || !event_kind(j, len))
        return;
    if (m.np >= PENDING_MAX || m.pbytes + len > PENDING_MAX_BYTES || strlen(id) >= sizeof(m.p[0].id)) {
        m.overflow = 1;
        return;
    }
    if (m.np == m.pcap) {
        m.pcap = m.pcap ? m.pcap * 2 : 256;
        m.p = lk_xrealloc(m.p, m.pcap * sizeof(*m.p));
    }
    struct pending *e = &m.p[m.np++];
    snprintf(e->id, sizeof(e->id), "%s", id);
    e->json = lk_xstrndup(j, len);
    e->len = len;
    m.pbytes += len;
}

void mirror_apply(const char *id, const char *j, size_t len)
{
    if (m.staging) {
        keep_pending(id, j, len);
        return;
    }
    if (!m.valid)
        return;
    int was_ready = mirror_ready();
    if (ws_event_id_cmp(id, m.at) > 0) /* else already in the snapshot */
        apply_event(j, len);
    if (ws_event_id_cmp(id, m.pos) > 0)
        snprintf(m.pos, sizeof(m.pos), "%s", id);
    if (on_ready && !was_ready && mirror_ready())
        on_ready();
}

void mirror_note_write(const char *id)
{
    if (id && id[0] && (!m.barrier[0] || ws_event_id_cmp(id, m.barrier) > 0))
        snprintf(m.barrier, sizeof(m.barrier), "%s", id);
}

int mirror_ready(void)
{
    return m.valid && (!m.barrier[0] || ws_event_id_cmp(m.pos, m.barrier) >= 0);
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
