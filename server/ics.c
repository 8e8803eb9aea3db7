/* ics.c - bookings as an iCalendar feed (RFC 5545), for
 * GET /api/reservations.ics (docs/reservations.md, "HTTP").
 *
 * Every content line is built whole in a scratch buffer, then written out
 * folded: at most 75 octets per physical line (CRLF not counted), the
 * continuation lines starting with one space, which counts. A fold never
 * falls inside a UTF-8 sequence, so every physical line is valid UTF-8 on
 * its own (§3.1 allows splitting one, but calendar clients mangle it).
 *
 * A booking without an id, a start or an end is skipped; any other member
 * that is missing (or of the wrong type) only drops the property built
 * from it. Times are written in UTC, to the second. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ics.h"
#include "lk_time.h"

#define ICS_LINE_MAX 75

/* The length of the next physical line of line[0..len): at most max
 * octets, cut back to the start of a UTF-8 sequence. */
static size_t fold_at(const char *line, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    /* 10xxxxxx continues a sequence; a sequence is at most 4 octets long */
    for (int back = 0; back < 3 && n > 1 && ((unsigned char)line[n] & 0xC0) == 0x80; back++)
        n--;
    return n;
}

static void put_folded(struct lk_buf *out, const char *line, size_t len)
{
    size_t max = ICS_LINE_MAX;
    while (len > 0) {
        size_t n = fold_at(line, len, max);
        lk_buf_append(out, line, n);
        lk_buf_puts(out, "\r\n");
        line += n;
        len -= n;
        if (len > 0)
            lk_buf_putc(out, ' ');
        max = ICS_LINE_MAX - 1;
    }
}

/* TEXT (§3.3.11): backslash, semicolon and comma get a backslash, a line
 * break becomes \n (CRLF, LF and a lone CR alike); other control
 * characters are not allowed in a TEXT value and are dropped (TAB stays). */
static void put_text(struct lk_buf *b, const char *s)
{
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\\' || c == ';' || c == ',') {
            lk_buf_putc(b, '\\');
            lk_buf_putc(b, (char)c);
        } else if (c == '\r') {
            lk_buf_puts(b, "\\n");
            if (s[1] == '\n')
                s++;
        } else if (c == '\n') {
            lk_buf_puts(b, "\\n");
        } else if (c >= 0x20 && c != 0x7F) {
            lk_buf_putc(b, (char)c);
        } else if (c == '\t') {
            lk_buf_putc(b, '\t');
        }
    }
}

/* One property "NAME:" + value, folded; text: escaped as TEXT. */
static void put_prop(struct lk_buf *out, struct lk_buf *line, const char *name, const char *value,
                     int text)
{
    lk_buf_reset(line);
    lk_buf_puts(line, name);
    lk_buf_putc(line, ':');
    if (text)
        put_text(line, value);
    else
        lk_buf_puts(line, value);
    put_folded(out, lk_buf_data(line), line->len);
}

/* "20261207T220000Z" (DATE-TIME, UTC form) into buf (at least 17 bytes). */
static void utc_stamp(int64_t us, char *buf, size_t len)
{
    int64_t s = us / 1000000;
    if (us < 0 && us % 1000000)
        s--;
    time_t t = (time_t)s;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(buf, len, "19700101T000000Z");
        return;
    }
    snprintf(buf, len, "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static const char *str_member(const cJSON *o, const char *name)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name));
    return s && *s ? s : NULL;
}

/* A time member (RFC 3339) in µs; 0 when missing, -1 when unreadable. */
static int time_member(const cJSON *o, const char *name, int64_t *us)
{
    const char *s = str_member(o, name);
    if (!s)
        return 0;
    return lk_time_parse_us(s, us) == 0 ? 1 : -1;
}

static void put_time_prop(struct lk_buf *out, struct lk_buf *line, const char *name, int64_t us)
{
    char stamp[80];
    utc_stamp(us, stamp, sizeof(stamp));
    put_prop(out, line, name, stamp, 0);
}

/* "motor1, motor2" from device_names (or device_name); "" if neither. */
static void devices_text(const cJSON *b, struct lk_buf *dst)
{
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(b, "device_names");
    const cJSON *it;
    int n = 0;
    const cJSON *list = cJSON_IsArray(names) ? names : NULL;
    cJSON_ArrayForEach(it, list) {
        if (!cJSON_IsString(it))
            continue;
        if (n++)
            lk_buf_puts(dst, ", ");
        lk_buf_puts(dst, it->valuestring);
    }
    const char *one = str_member(b, "device_name");
    if (!n && one)
        lk_buf_puts(dst, one);
}

static void render_event(const cJSON *b, int64_t now_us, struct lk_buf *out, struct lk_buf *line,
                         struct lk_buf *tmp)
{
    const char *id = str_member(b, "id");
    int64_t start = 0, end = 0, created = 0, updated = 0;
    if (!id || time_member(b, "start", &start) != 1 || time_member(b, "end", &end) != 1)
        return;
    int has_created = time_member(b, "created_at", &created) == 1;
    int has_updated = time_member(b, "updated_at", &updated) == 1;
    const char *user = str_member(b, "user_id");
    const char *type = str_member(b, "lock_type");
    const char *state = str_member(b, "state");
    const char *reason = str_member(b, "reason");
    const char *plan = str_member(b, "plan_uid");

    lk_buf_puts(out, "BEGIN:VEVENT\r\n");
    lk_buf_reset(tmp);
    if (has_created)
        lk_buf_printf(tmp, "%s-%lld@devlock", id, (long long)created);
    else
        lk_buf_printf(tmp, "%s@devlock", id);
    put_prop(out, line, "UID", lk_buf_data(tmp), 1);
    put_time_prop(out, line, "DTSTAMP", now_us);
    put_time_prop(out, line, "DTSTART", start);
    put_time_prop(out, line, "DTEND", end);

    /* SUMMARY: "<devices> — <user_id> (<lock_type>)", the parts there are */
    lk_buf_reset(tmp);
    devices_text(b, tmp);
    if (user)
        lk_buf_printf(tmp, "%s%s", tmp->len ? " \xe2\x80\x94 " : "", user);
    if (type)
        lk_buf_printf(tmp, "%s(%s)", tmp->len ? " " : "", type);
    if (tmp->len)
        put_prop(out, line, "SUMMARY", lk_buf_data(tmp), 1);

    /* DESCRIPTION: the reason, then one line each for plan, state and id */
    lk_buf_reset(tmp);
    if (reason)
        lk_buf_printf(tmp, "%s\n", reason);
    if (plan)
        lk_buf_printf(tmp, "Plan: %s\n", plan);
    if (state)
        lk_buf_printf(tmp, "State: %s\n", state);
    lk_buf_printf(tmp, "Booking: %s", id);
    put_prop(out, line, "DESCRIPTION", lk_buf_data(tmp), 1);

    if (state)
        put_prop(out, line, "STATUS",
                 !strcmp(state, "cancelled") || !strcmp(state, "bumped") ? "CANCELLED" : "CONFIRMED", 0);
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(b, "sequence");
    if (cJSON_IsNumber(seq) && seq->valuedouble >= 0 && seq->valuedouble < 2147483648.0) {
        char num[16];
        snprintf(num, sizeof(num), "%d", (int)seq->valuedouble);
        put_prop(out, line, "SEQUENCE", num, 0);
    }
    if (has_created)
        put_time_prop(out, line, "CREATED", created);
    if (has_updated)
        put_time_prop(out, line, "LAST-MODIFIED", updated);
    if (type)
        put_prop(out, line, "CATEGORIES", type, 1);
    lk_buf_puts(out, "END:VEVENT\r\n");
}

void ics_render(const cJSON *reservations, const char *name, int64_t now_us, struct lk_buf *out)
{
    struct lk_buf line, tmp;
    lk_buf_init(&line, 0);
    lk_buf_init(&tmp, 0);
    lk_buf_puts(out, "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//devlock//reservations//EN\r\n"
                     "CALSCALE:GREGORIAN\r\nMETHOD:PUBLISH\r\n");
    put_prop(out, &line, "X-WR-CALNAME", name && *name ? name : "devlock reservations", 1);
    const cJSON *list = cJSON_IsArray(reservations) ? reservations : NULL, *b;
    cJSON_ArrayForEach(b, list) {
        if (cJSON_IsObject(b))
            render_event(b, now_us, out, &line, &tmp);
    }
    lk_buf_puts(out, "END:VCALENDAR\r\n");
    lk_buf_free(&line);
    lk_buf_free(&tmp);
}
