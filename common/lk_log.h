/* lk_log.h - levelled logging to stderr, text or JSON lines.
 * LK_LOG skips evaluating its arguments when the level is off. */
#ifndef LK_LOG_H
#define LK_LOG_H

enum lk_log_level { LK_LOG_DEBUG, LK_LOG_INFO, LK_LOG_WARNING, LK_LOG_ERROR };

extern int lk_log_threshold;   /* messages below this level are dropped */
extern int lk_log_json;        /* 1: one JSON object per line */

/* "DEBUG", "INFO", "WARNING"/"WARN", "ERROR" (any case); -1 if unknown. */
int lk_log_level_parse(const char *s);
void lk_log_emit(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One event as key=value fields (text: `what k=v k="v w"`; json: an object
 * with msg = what and one member per field). kv holds n key/value pairs;
 * NULL values are left out. */
void lk_log_fields(int level, const char *what, const char *const *kv, int n);

#define LK_LOG(level, ...)                         \
    do {                                           \
        if ((level) >= lk_log_threshold)           \
            lk_log_emit((level), __VA_ARGS__);     \
    } while (0)
#define lk_debug(...) LK_LOG(LK_LOG_DEBUG, __VA_ARGS__)
#define lk_info(...) LK_LOG(LK_LOG_INFO, __VA_ARGS__)
#define lk_warn(...) LK_LOG(LK_LOG_WARNING, __VA_ARGS__)
#define lk_error(...) LK_LOG(LK_LOG_ERROR, __VA_ARGS__)

#endif
