/* ics.h - bookings as an iCalendar feed (RFC 5545), for
 * GET /api/reservations.ics (docs/reservations.md). */
#ifndef ICS_H
#define ICS_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "lk_buf.h"

/* Writes a VCALENDAR with one VEVENT per booking object of `reservations`
 * (a JSON array, as GET /api/reservations lists them) into out. name is
 * the calendar's X-WR-CALNAME; now_us stamps DTSTAMP. Lines end in CRLF and
 * are folded at 75 octets; TEXT values are escaped (§3.3.11). Objects that
 * lack id, start or end are skipped. */
void ics_render(const cJSON *reservations, const char *name, int64_t now_us, struct lk_buf *out);

#endif
