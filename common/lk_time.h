/* lk_time.h - clocks and RFC 3339 timestamps. */
#ifndef LK_TIME_H
#define LK_TIME_H

#include <stddef.h>
#include <stdint.h>

/* Wall clock, microseconds since the Unix epoch. */
int64_t lk_time_now_us(void);
/* Monotonic clock in milliseconds (for deadlines and backoff). */
int64_t lk_time_mono_ms(void);
/* "2026-11-23T10:00:00.123456Z" into out (at least 28 bytes). */
void lk_time_format_us(int64_t us, char *out, size_t outlen);
/* Parses the form above (fraction optional; Z, no suffix (UTC) or a
 * +hh:mm / -hh:mm offset); -1 on error. */
int lk_time_parse_us(const char *s, int64_t *us);

#endif
