/* lk_text.h - checks on untrusted text: UTF-8, JSON nesting, device names,
 * lock types, stream ids. Pure functions, no allocation; used by the server's parsers,
 * the client library and the fuzz targets. */
#ifndef LK_TEXT_H
#define LK_TEXT_H

#include <stddef.h>

#define LK_DEVICE_NAME_MAX 128

/* 1 if s[0..n) is well-formed UTF-8 (no overlongs, surrogates, > U+10FFFF). */
int lk_utf8_valid(const char *s, size_t n);

/* Deepest nesting of [ and { in s[0..n), ignoring brackets inside strings.
 * Stops counting (and returns limit + 1) as soon as limit is passed. */
int lk_json_depth(const char *s, size_t n, int limit);

/* 1 if the JSON text has a \u0000 escape (cJSON would cut the string
 * there, so "a\u0000b" would read as "a"). */
int lk_json_has_nul(const char *s, size_t n);

/* 1 if s[0..n) holds nothing but JSON whitespace. */
int lk_json_only_space(const char *s, size_t n);

/* Compares Redis stream ids "ms-seq" by number: <0, 0, >0 like strcmp; a
 * missing "-seq" counts as 0, malformed ids sort first. */
int lk_stream_id_cmp(const char *a, const char *b);

/* 1 if name is 1..128 chars of A-Z a-z 0-9 _ . : - */
int lk_device_name_valid(const char *name);

/* Lock types, in priority order: index = priority (0 is highest). */
enum lk_lock_type {
    LK_MAINTENANCE = 0,
    LK_QUEUE_EXECUTING = 1,
    LK_MANUAL_OPERATOR = 2,
    LK_QUEUE_QUEUED = 3,
    LK_LOCK_TYPE_COUNT
};
/* Parses "MAINTENANCE" etc. (exact, upper case); -1 if unknown. */
int lk_lock_type_parse(const char *s);
/* The name of a type; NULL if out of range. */
const char *lk_lock_type_name(int type);

#endif
