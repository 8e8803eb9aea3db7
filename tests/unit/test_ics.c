/* Unit tests of server/ics.c: the iCalendar feed of bookings (RFC 5545):
 * line ends, folding (also at multi-byte UTF-8), TEXT escaping, the
 * properties of a booking, and bookings or members that are missing. */
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "harness.h"
#include "ics.h"
#include "lk_buf.h"
#include "lk_text.h"

#define NOW_US 1796601600000000LL   /* 2026-12-07T00:00:00Z */

static const char booking_json[] =
    "{\"id\":\"r17\",\"device_names\":[\"motor1\",\"motor2\"],\"lock_type\":\"QUEUE_EXECUTING\","
    "\"priority\":1,\"user_id\":\"queue-server\",\"lock_key\":null,"
    "\"start\":\"2026-12-07T22:00:00.000000Z\",\"end\":\"2026-12-08T06:00:00.000000Z\","
    "\"reason\":\"night scan\",\"plan_uid\":\"plan-42\",\"state\":\"booked\",\"cause\":null,"
    "\"bumped_by\":null,\"created_at\":\"2026-12-07T09:12:03.120431Z\","
    "\"updated_at\":\"2026-12-07T09:15:00.000001Z\",\"sequence\":2}";

/* Renders a JSON array text. Caller frees the result. */
static char *render(const char *json)
{
    cJSON *j = cJSON_Parse(json);
    struct lk_buf b;
    lk_buf_init(&b, 0);
    ics_render(j, "devlock test", NOW_US, &b);
    cJSON_Delete(j);
    size_t n;
    char *s = lk_buf_steal(&b, &n);
    return s ? s : calloc(1, 1);
}

/* Checks the physical form (every line ends in CRLF, is at most 75
 * octets, is valid UTF-8 by itself; no bare CR or LF) and returns the
 * unfolded content lines, LF-separated. Caller frees. */
static char *unfold(const char *ics, int *bad_lines)
{
    struct lk_buf out;
    lk_buf_init(&out, 0);
    *bad_lines = 0;
    const char *p = ics;
    while (*p) {
        const char *crlf = strstr(p, "\r\n");
        if (!crlf) {
            (*bad_lines)++;
            break;
        }
        size_t n = (size_t)(crlf - p);
        if (n > 75 || !lk_utf8_valid(p, n) || memchr(p, '\r', n) || memchr(p, '\n', n))
            (*bad_lines)++;
        if (*p == ' ')
            lk_buf_append(&out, p + 1, n - 1);      /* a continuation */
        else {
            if (out.len)
                lk_buf_putc(&out, '\n');
            lk_buf_append(&out, p, n);
        }
        p = crlf + 2;
    }
    lk_buf_putc(&out, '\n');
    size_t len;
    return lk_buf_steal(&out, &len);
}

/* The value of the first content line named name (after the colon), in
 * buf; NULL if there is none. */
static const char *prop(const char *lines, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);
    for (const char *p = lines; *p;) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > nl && !strncmp(p, name, nl) && p[nl] == ':') {
            snprintf(buf, len, "%.*s", (int)(n - nl - 1), p + nl + 1);
            return buf;
        }
        p += n + (e ? 1 : 0);
    }
    return NULL;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void calendar_frame(void)
{
    char *ics = render("[]");
    CHECK(!strncmp(ics, "BEGIN:VCALENDAR\r\n", 17));
    CHECK(strstr(ics, "\r\nVERSION:2.0\r\n") != NULL);
    CHECK(strstr(ics, "\r\nPRODID:-//devlock//reservations//EN\r\n") != NULL);
    CHECK(strstr(ics, "\r\nCALSCALE:GREGORIAN\r\n") != NULL);
    CHECK(strstr(ics, "\r\nMETHOD:PUBLISH\r\n") != NULL);
    CHECK(strstr(ics, "\r\nX-WR-CALNAME:devlock test\r\n") != NULL);
    size_t n = strlen(ics);
    CHECK(n > 15 && !strcmp(ics + n - 15, "END:VCALENDAR\r\n"));
    CHECK(count(ics, "BEGIN:VEVENT") == 0);
    free(ics);
    /* not an array: still a calendar, an empty one */
    ics = render("{\"id\":\"r1\"}");
    CHECK(!strncmp(ics, "BEGIN:VCALENDAR\r\n", 17) && count(ics, "BEGIN:VEVENT") == 0);
    free(ics);
}

static void one_booking(void)
{
    char json[2048];
    snprintf(json, sizeof(json), "[%s]", booking_json);
    char *ics = render(json);
    int bad;
    char *l = unfold(ics, &bad), v[512];
    CHECK(bad == 0);
    CHECK(count(l, "BEGIN:VEVENT\n") == 1 && count(l, "END:VEVENT\n") == 1);
    CHECK_STR(prop(l, "UID", v, sizeof(v)), "r17-1796634723120431@devlock");
    CHECK_STR(prop(l, "DTSTAMP", v, sizeof(v)), "20261207T000000Z");
    CHECK_STR(prop(l, "DTSTART", v, sizeof(v)), "20261207T220000Z");
    CHECK_STR(prop(l, "DTEND", v, sizeof(v)), "20261208T060000Z");
    CHECK_STR(prop(l, "SUMMARY", v, sizeof(v)),
              "motor1\\, motor2 \xe2\x80\x94 queue-server (QUEUE_EXECUTING)");
    CHECK_STR(prop(l, "DESCRIPTION", v, sizeof(v)),
              "night scan\\nPlan: plan-42\\nState: booked\\nBooking: r17");
    CHECK_STR(prop(l, "STATUS", v, sizeof(v)), "CONFIRMED");
    CHECK_STR(prop(l, "SEQUENCE", v, sizeof(v)), "2");
    CHECK_STR(prop(l, "CREATED", v, sizeof(v)), "20261207T091203Z");
    CHECK_STR(prop(l, "LAST-MODIFIED", v, sizeof(v)), "20261207T091500Z");
    CHECK_STR(prop(l, "CATEGORIES", v, sizeof(v)), "QUEUE_EXECUTING");
    /* the event lies between the calendar's header and its end */
    CHECK(strstr(l, "METHOD:PUBLISH") < strstr(l, "BEGIN:VEVENT"));
    CHECK(strstr(l, "END:VEVENT") < strstr(l, "END:VCALENDAR"));
    free(l);
    free(ics);
}

static void status_of_states(void)
{
    static const struct { const char *state, *status; } cases[] = {
        {"booked", "CONFIRMED"}, {"waiting", "CONFIRMED"}, {"active", "CONFIRMED"},
        {"ended", "CONFIRMED"}, {"cancelled", "CANCELLED"}, {"bumped", "CANCELLED"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char json[256];
        snprintf(json, sizeof(json),
                 "[{\"id\":\"r1\",\"start\":\"2026-12-07T22:00:00Z\",\"end\":\"2026-12-07T23:00:00Z\","
                 "\"state\":\"%s\"}]", cases[i].state);
        char *ics = render(json);
        int bad;
        char *l = unfold(ics, &bad), v[64];
        CHECK(bad == 0);
        CHECK_STR(prop(l, "STATUS", v, sizeof(v)), cases[i].status);
        free(l);
        free(ics);
    }
}

static void text_escaping(void)
{
    const char *json = "[{\"id\":\"r2\",\"start\":\"2026-12-07T22:00:00Z\",\"end\":\"2026-12-07T23:00:00Z\","
                       "\"reason\":\"a,b;c\\\\d\\ne\\r\\nf\\rg\\u0001h\\ti\"}]";
    char *ics = render(json);
    int bad;
    char *l = unfold(ics, &bad), v[256];
    CHECK(bad == 0);
    CHECK_STR(prop(l, "DESCRIPTION", v, sizeof(v)), "a\\,b\\;c\\\\d\\ne\\nf\\ng" "h\ti\\nBooking: r2");
    free(l);
    free(ics);
}

static void folding_ascii(void)
{
    /* a long reason: every physical line at most 75 octets, and the
     * unfolded value is the whole escaped text */
    char reason[400], json[1024], want[512];
    for (int i = 0; i < 300; i++)
        reason[i] = (char)('a' + i % 26);
    reason[300] = '\0';
    snprintf(json, sizeof(json),
             "[{\"id\":\"r3\",\"start\":\"2026-12-07T22:00:00Z\",\"end\":\"2026-12-07T23:00:00Z\","
             "\"reason\":\"%s\"}]", reason);
    char *ics = render(json);
    int bad;
    char *l = unfold(ics, &bad), v[512];
    CHECK(bad == 0);
    snprintf(want, sizeof(want), "%s\\nBooking: r3", reason);
    CHECK_STR(prop(l, "DESCRIPTION", v, sizeof(v)), want);
    /* the first line is exactly 75 octets, the next starts with a space */
    const char *d = strstr(ics, "DESCRIPTION:");
    CHECK(d && strstr(d, "\r\n") - d == 75 && d[77] == ' ');
    /* a line of exactly 75 octets is not folded */
    char *exact = calloc(1, 200);
    snprintf(exact, 200, "[{\"id\":\"r4\",\"start\":\"2026-12-07T22:00:00Z\",\"end\":\"2026-12-07T23:00:00Z\","
             "\"reason\":\"%.*s\"}]", 75 - 12 - 13, reason);   /* "DESCRIPTION:" + x + "\\nBooking: r4" */
    char *ics2 = render(exact);
    d = strstr(ics2, "DESCRIPTION:");
    CHECK(d && strstr(d, "\r\n") - d == 75 && d[77] != ' ');
    free(exact);
    free(ics2);
    free(l);
    free(ics);
}

static void folding_utf8(void)
{
    /* multi-byte characters at every position relative to the fold: with
     * 0..3 ASCII octets before a run of é (2 octets), € (3) and 😀 (4), no
     * physical line may end inside a sequence, and the value survives */
    static const char *const chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    for (int c = 0; c < 3; c++) {
        for (int pad = 0; pad < 4; pad++) {
            char reason[512] = "", json[1024], want[600];
            for (int i = 0; i < pad; i++)
                strcat(reason, "x");
            for (int i = 0; i < 60; i++)
                strcat(reason, chars[c]);
            snprintf(json, sizeof(json),
                     "[{\"id\":\"r5\",\"start\":\"2026-12-07T22:00:00Z\",\"end\":\"2026-12-07T23:00:00Z\","
                     "\"reason\":\"%s\"}]", reason);
            char *ics = render(json);
            int bad;
            char *l = unfold(ics, &bad), v[700];
            CHECK(bad == 0);    /* includes: every physical line is valid UTF-8 */
            snprintf(want, sizeof(want), "%s\\nBooking: r5", reason);
            CHECK_STR(prop(l, "DESCRIPTION", v, sizeof(v)), want);
            /* the fold backed up to a character boundary: lines of 73..75 octets */
            const char *d = strstr(ics, "DESCRIPTION:");
            long first = d ? (long)(strstr(d, "\r\n") - d) : 0;
            CHECK(first >= 72 && first <= 75);
            free(l);
            free(ics);
        }
    }
}

static void missing_fields(void)
{
    /* no id / no start / no end / unreadable time / not an object: skipped;
     * a minimal booking: only what it has */
    const char *json =
        "[{\"start\":\"2026-12-07T22:00:00Z\",\"end\":\"2026-12-07T23:00:00Z\"},"
        "{\"id\":\"rA\",\"end\":\"2026-12-07T23:00:00Z\"},"
        "{\"id\":\"rB\",\"start\":\"2026-12-07T22:00:00Z\"},"
        "{\"id\":\"rC\",\"start\":\"tomorrow\",\"end\":\"2026-12-07T23:00:00Z\"},"
        "42, null,"
        "{\"id\":\"rD\",\"start\":\"2026-12-07T22:00:00Z\",\"end\":\"2026-12-07T23:00:00Z\","
        "\"reason\":null,\"sequence\":\"x\",\"device_names\":[1,\"dev9\"]}]";
    char *ics = render(json);
    int bad;
    char *l = unfold(ics, &bad), v[256];
    CHECK(bad == 0);
    CHECK(count(l, "BEGIN:VEVENT") == 1);
    CHECK(!strstr(l, "rA") && !strstr(l, "rB") && !strstr(l, "rC"));
    CHECK_STR(prop(l, "UID", v, sizeof(v)), "rD@devlock");
    CHECK_STR(prop(l, "SUMMARY", v, sizeof(v)), "dev9");
    CHECK_STR(prop(l, "DESCRIPTION", v, sizeof(v)), "Booking: rD");
    CHECK(!prop(l, "STATUS", v, sizeof(v)) && !prop(l, "SEQUENCE", v, sizeof(v)) &&
          !prop(l, "CREATED", v, sizeof(v)) && !prop(l, "LAST-MODIFIED", v, sizeof(v)) &&
          !prop(l, "CATEGORIES", v, sizeof(v)));
    CHECK(prop(l, "DTSTAMP", v, sizeof(v)) != NULL);
    free(l);
    free(ics);
}

static void many_bookings(void)
{
    struct lk_buf j;
    lk_buf_init(&j, 0);
    lk_buf_putc(&j, '[');
    for (int i = 0; i < 50; i++)
        lk_buf_printf(&j, "%s{\"id\":\"r%d\",\"device_name\":\"d%d\",\"start\":\"2026-12-07T22:00:00Z\","
                      "\"end\":\"2026-12-07T23:%02d:00Z\",\"created_at\":\"2026-12-01T00:00:00.%06dZ\"}",
                      i ? "," : "", i, i, i, i);
    lk_buf_putc(&j, ']');
    char *ics = render(lk_buf_data(&j));
    int bad;
    char *l = unfold(ics, &bad);
    CHECK(bad == 0);
    CHECK(count(l, "BEGIN:VEVENT\n") == 50 && count(l, "END:VEVENT\n") == 50);
    CHECK(strstr(l, "UID:r49-1796083200000049@devlock\n") != NULL);
    CHECK(strstr(l, "DTEND:20261207T234900Z\n") != NULL);
    free(l);
    free(ics);
    lk_buf_free(&j);
}

int main(void)
{
    RUN(calendar_frame);
    RUN(one_booking);
    RUN(status_of_states);
    RUN(text_escaping);
    RUN(folding_ascii);
    RUN(folding_utf8);
    RUN(missing_fields);
    RUN(many_bookings);
    DONE();
}
