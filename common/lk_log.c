#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "lk_buf.h"
#include "lk_log.h"
#include "lk_time.h"

int lk_log_threshold = LK_LOG_INFO;
int lk_log_json;

static const char *const level_names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};

int lk_log_level_parse(const char *s)
{
    if (!s)
        return -1;
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return i;
    if (strcasecmp(s, "WARN") == 0)
        return LK_LOG_WARNING;
    return -1;
}

void lk_log_fields(int level, const char *what, const char *const *kv, int n)
{
    if (level < lk_log_threshold)
        return;
    char ts[40];
    lk_time_format_us(lk_time_now_us(), ts, sizeof(ts));
    if (level < 0 || level > 3)
        level = LK_LOG_ERROR;
    struct lk_buf b;
    lk_buf_init(&b, 0);
    if (lk_log_json) {
        lk_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, level_names[level]);
        lk_buf_json_str(&b, what);
    } else {
        lk_buf_printf(&b, "%s %-7s %s", ts, level_names[level], what);
    }
    for (int i = 0; i < n; i++) {
        const char *k = kv[2 * i], *v = kv[2 * i + 1];
        if (!v)
            continue;
        if (lk_log_json) {
            lk_buf_putc(&b, ',');
            lk_buf_json_str(&b, k);
            lk_buf_putc(&b, ':');
            lk_buf_json_str(&b, v);
        } else if (v[strcspn(v, " \"=\n")]) {
            lk_buf_printf(&b, " %s=", k);
            lk_buf_json_str(&b, v);
        } else {
            lk_buf_printf(&b, " %s=%s", k, v);
        }
    }
    lk_buf_puts(&b, lk_log_json ? "}\n" : "\n");
    fputs(lk_buf_data(&b), stderr);
    lk_buf_free(&b);
}

void lk_log_emit(int level, const char *fmt, ...)
{
    char msg[2048], ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    lk_time_format_us(lk_time_now_us(), ts, sizeof(ts));
    if (level < 0 || level > 3)
        level = LK_LOG_ERROR;
    if (lk_log_json) {
        struct lk_buf b;
        lk_buf_init(&b, 0);
        lk_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, level_names[level]);
        lk_buf_json_str(&b, msg);
        lk_buf_puts(&b, "}\n");
        fputs(lk_buf_data(&b), stderr);
        lk_buf_free(&b);
    } else {
        fprintf(stderr, "%s %-7s %s\n", ts, level_names[level], msg);
    }
}
