#include <stdlib.h>
#include <string.h>

#include "lk_text.h"

int lk_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned cp, min;
        if ((c & 0xe0) == 0xc0) {
            len = 2; cp = c & 0x1f; min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3; cp = c & 0x0f; min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4; cp = c & 0x07; min = 0x10000;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

int lk_json_depth(const char *s, size_t n, int limit)
{
    int depth = 0, deepest = 0, in_string = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        switch (c) {
        case '"': in_string = 1; break;
        case '[':
        case '{':
            if (++depth > deepest) {
                deepest = depth;
                if (deepest > limit)
                    return limit + 1;
            }
            break;
        case ']':
        case '}':
            if (depth > 0)
                depth--;
            break;
        default: break;
        }
    }
    return deepest;
}

int lk_json_has_nul(const char *s, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '\\')
            continue;
        if (s[i + 1] == 'u' && n - i >= 6 && !memcmp(s + i + 2, "0000", 4))
            return 1;
        i++; /* skip the escaped character (e.g. a second backslash) */
    }
    return 0;
}

int lk_json_only_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return 0;
    return 1;
}

int lk_device_name_valid(const char *name)
{
    if (!name)
        return 0;
    size_t n = 0;
    for (const char *p = name; *p; p++, n++) {
        char c = *p;
        if (n >= LK_DEVICE_NAME_MAX)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '-'))
            return 0;
    }
    return n > 0;
}

static const char *const type_names[LK_LOCK_TYPE_COUNT] = {
    "MAINTENANCE", "QUEUE_EXECUTING", "MANUAL_OPERATOR", "QUEUE_QUEUED",
};

int lk_lock_type_parse(const char *s)
{
    for (int i = 0; s && i < LK_LOCK_TYPE_COUNT; i++)
        if (strcmp(s, type_names[i]) == 0)
            return i;
    return -1;
}

const char *lk_lock_type_name(int type)
{
    return type >= 0 && type < LK_LOCK_TYPE_COUNT ? type_names[type] : NULL;
}

static void stream_id_parse(const char *s, unsigned long long *ms, unsigned long long *seq)
{
    char *end;
    *ms = strtoull(s, &end, 10);
    *seq = *end == '-' ? strtoull(end + 1, NULL, 10) : 0;
}

int lk_stream_id_cmp(const char *a, const char *b)
{
    unsigned long long am, as, bm, bs;
    stream_id_parse(a, &am, &as);
    stream_id_parse(b, &bm, &bs);
    if (am != bm)
        return am < bm ? -1 : 1;
    return as < bs ? -1 : as > bs;
}
