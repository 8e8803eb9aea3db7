/* mirror.c - see mirror.h. The table is an array sorted by device name:
 * lookups are binary searches, a change moves at most the tail (cheap for
 * the tens of thousands of locks a lab has), and listings come out in the
 * name order the API promises. */
#include <stdlib.h>
#include <string.h>

#include "lk_mem.h"
#include "lk_time.h"
#include "mirror.h"
#include "ws.h"

struct entry {
    char *name;
    char *json;
    size_t len;
    int64_t exp_us;   /* lease end (Redis clock), 0 = none */
};

static struct {
    struct entry *e;
    size_t n, cap;
    int valid;
    char at[48];      /* snapshot position: events up to here are in the copy */
    char pos[48];     /* last event applied (or skipped as already included) */
    char barrier[48]; /* newest event a write of this broker produced */
} m;

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

void mirror_free(void)
{
    for (size_t i = 0; i < m.n; i++) {
        free(m.e[i].name);
        free(m.e[i].json);
    }
    free(m.e);
    memset(&m, 0, sizeof(m));
}

void mirror_invalidate(void) { m.valid = 0; }

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

void mirror_reset(const char *at, const char *const *locks, const size_t *lens, size_t n)
{
    char barrier[48];
    snprintf(barrier, sizeof(barrier), "%s", m.barrier);
    mirror_free();
    snprintf(m.barrier, sizeof(m.barrier), "%s", barrier);
    for (size_t i = 0; i < n; i++) {
        size_t nl;
        const char *name = str_field(locks[i], lens[i], "\"device_name\":\"", &nl);
        if (name)
            set(name, nl, locks[i], lens[i]);
    }
    snprintf(m.at, sizeof(m.at), "%s", at);
    snprintf(m.pos, sizeof(m.pos), "%s", at);
    m.valid = 1;
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

void mirror_apply(const char *id, const char *j, size_t len)
{
    if (!m.valid)
        return;
    if (ws_event_id_cmp(id, m.at) <= 0) /* already in the snapshot */
        goto done;
    size_t nl;
    const char *action = str_field(j, len, "\"action\":\"", &nl);
    if (!action)
        goto done;
    int set_it = (nl == 8 && !memcmp(action, "acquired", 8)) || (nl == 7 && !memcmp(action, "renewed", 7));
    int del_it = (nl == 8 && !memcmp(action, "released", 8)) || (nl == 14 && !memcmp(action, "force_released", 14));
    if (!set_it && !del_it)
        goto done; /* expiring, preempt_requested: no change to the table */
    const char *lock = memmem(j, len, "\"lock\":{", 8);
    if (!lock)
        goto done;
    lock += 7;
    const char *end = value_end(lock, j + len);
    if (!end)
        goto done;
    const char *name = str_field(lock, (size_t)(end - lock), "\"device_name\":\"", &nl);
    if (!name)
        goto done;
    if (set_it)
        set(name, nl, lock, (size_t)(end - lock));
    else
        del(name, nl);
done:
    if (ws_event_id_cmp(id, m.pos) > 0)
        snprintf(m.pos, sizeof(m.pos), "%s", id);
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
