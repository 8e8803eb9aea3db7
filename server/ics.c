/* ics.c - placeholder until the feed lands: an empty calendar. */
#include "ics.h"

void ics_render(const cJSON *reservations, const char *name, int64_t now_us, struct lk_buf *out)
{
    (void)reservations;
    (void)name;
    (void)now_us;
    lk_buf_puts(out, "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//devlock//reservations//EN\r\nEND:VCALENDAR\r\n");
}
