/* catalogue.c - the device catalogue.
 *
 * Formats: JSON, either {"devices": [...]} or a bare array, whose items are
 * names or objects {"name" (or "device_name"), "description",
 * "preempt_grace_s", "lock_delay_s"}; or text, one device per line:
 *     detector1 description="Main detector" preempt_grace_s=5 lock_delay_s=2
 * with '#' comments. Devices are kept sorted for binary search. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "catalogue.h"
#include "lk_mem.h"
#include "lk_text.h"

#define CATALOGUE_MAX 100000
#define FILE_MAX (64 << 20)

static struct {
    struct catalogue_device *devs;
    size_t n;
    int active;
} cat;

static void free_list(struct catalogue_device *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(d[i].name);
        free(d[i].description);
    }
    free(d);
}

void catalogue_free(void)
{
    free_list(cat.devs, cat.n);
    memset(&cat, 0, sizeof(cat));
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct catalogue_device *)a)->name, ((const struct catalogue_device *)b)->name);
}

struct list {
    struct catalogue_device *d;
    size_t n, cap;
};

static int add(struct list *l, const char *name, char *err, size_t errlen)
{
    if (!lk_device_name_valid(name)) {
        snprintf(err, errlen, "invalid device name '%.64s'", name);
        return -1;
    }
    if (l->n >= CATALOGUE_MAX) {
        snprintf(err, errlen, "more than %d devices", CATALOGUE_MAX);
        return -1;
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->d = lk_xrealloc(l->d, l->cap * sizeof(*l->d));
    }
    struct catalogue_device *d = &l->d[l->n++];
    memset(d, 0, sizeof(*d));
    d->name = lk_xstrdup(name);
    d->preempt_grace_s = d->lock_delay_s = -1;
    return 0;
}

static int set_meta(struct catalogue_device *d, const char *key, const char *val, char *err,
                    size_t errlen)
{
    char *end;
    if (!strcmp(key, "description")) {
        free(d->description);
        d->description = lk_xstrdup(val);
        return 0;
    }
    double *slot = !strcmp(key, "preempt_grace_s") ? &d->preempt_grace_s
                 : !strcmp(key, "lock_delay_s")    ? &d->lock_delay_s
                                                   : NULL;
    if (!slot)
        return 0; /* unknown metadata is kept out, not an error */
    double v = strtod(val, &end);
    if (end == val || *end || v < 0 || v > 86400) {
        snprintf(err, errlen, "device %s: %s must be 0..86400 seconds", d->name, key);
        return -1;
    }
    *slot = v;
    return 0;
}

static int parse_json(cJSON *root, struct list *l, char *err, size_t errlen)
{
    cJSON *arr = cJSON_IsArray(root) ? root : cJSON_GetObjectItemCaseSensitive(root, "devices");
    if (!cJSON_IsArray(arr)) {
        snprintf(err, errlen, "JSON catalogue must be an array or {\"devices\": [...]}");
        return -1;
    }
    cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (cJSON_IsString(it)) {
            if (add(l, it->valuestring, err, errlen))
                return -1;
            continue;
        }
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "name"));
        if (!name)
            name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "device_name"));
        if (!cJSON_IsObject(it) || !name) {
            snprintf(err, errlen, "each device must be a name or an object with \"name\"");
            return -1;
        }
        if (add(l, name, err, errlen))
            return -1;
        struct catalogue_device *d = &l->d[l->n - 1];
        const char *desc = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "description"));
        if (desc)
            d->description = lk_xstrdup(desc);
        static const char *const nums[] = {"preempt_grace_s", "lock_delay_s"};
        for (int k = 0; k < 2; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, nums[k]);
            if (!v || cJSON_IsNull(v))
                continue;
            char num[64];
            if (!cJSON_IsNumber(v)) {
                snprintf(err, errlen, "device %s: %s must be a number", d->name, nums[k]);
                return -1;
            }
            snprintf(num, sizeof(num), "%.17g", v->valuedouble);
            if (set_meta(d, nums[k], num, err, errlen))
                return -1;
        }
    }
    return 0;
}

/* name key=value key="quoted value" ... */
static int parse_line(char *line, struct list *l, char *err, size_t errlen)
{
    char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    if (!*p || *p == '#')
        return 0;
    char *name = p;
    while (*p && *p != ' ' && *p != '\t')
        p++;
    if (*p)
        *p++ = '\0';
    if (add(l, name, err, errlen))
        return -1;
    struct catalogue_device *d = &l->d[l->n - 1];
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p || *p == '#')
            return 0;
        char *key = p, *eq = strchr(p, '=');
        if (!eq) {
            snprintf(err, errlen, "device %s: expected key=value", d->name);
            return -1;
        }
        *eq = '\0';
        char *val = eq + 1, *end;
        if (*val == '"') {
            val++;
            end = strchr(val, '"');
            if (!end) {
                snprintf(err, errlen, "device %s: unterminated quote", d->name);
                return -1;
            }
        } else {
            end = val + strcspn(val, " \t");
        }
        char saved = *end;
        *end = '\0';
        if (set_meta(d, key, val, err, errlen))
            return -1;
        p = saved ? end + 1 : end;
    }
}

int catalogue_parse(const char *text, size_t len, char *err, size_t errlen)
{
    struct list l = {0};
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r'))
        i++;
    int rc = 0;
    if (i < len && (text[i] == '{' || text[i] == '[')) {
        if (lk_json_depth(text, len, 8) > 8) {
            snprintf(err, errlen, "JSON catalogue nested too deeply");
            return -1;
        }
        cJSON *root = cJSON_ParseWithLength(text, len);
        if (!root) {
            snprintf(err, errlen, "catalogue is not valid JSON");
            return -1;
        }
        rc = parse_json(root, &l, err, errlen);
        cJSON_Delete(root);
    } else {
        char *copy = lk_xstrndup(text, len), *save = NULL;
        for (char *line = strtok_r(copy, "\r\n", &save); line && rc == 0; line = strtok_r(NULL, "\r\n", &save))
            rc = parse_line(line, &l, err, errlen);
        free(copy);
    }
    if (rc == 0 && l.n > 1) {
        qsort(l.d, l.n, sizeof(*l.d), by_name);
        for (size_t k = 1; k < l.n; k++)
            if (!strcmp(l.d[k - 1].name, l.d[k].name)) {
                snprintf(err, errlen, "device %s is listed twice", l.d[k].name);
                rc = -1;
                break;
            }
    }
    if (rc) {
        free_list(l.d, l.n);
        return -1;
    }
    catalogue_free();
    cat.devs = l.d;
    cat.n = l.n;
    cat.active = 1;
    return 0;
}

int catalogue_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return -1;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 > cap) {
            cap = cap ? cap * 2 : 65536 * 2;
            buf = lk_xrealloc(buf, cap);
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0 || len > FILE_MAX)
            break;
    }
    int bad = ferror(f) || len > FILE_MAX;
    fclose(f);
    int rc = bad ? -1 : catalogue_parse(buf, len, err, errlen);
    if (bad)
        snprintf(err, errlen, "cannot read %s (or larger than 64 MiB)", path);
    free(buf);
    return rc;
}

int catalogue_active(void) { return cat.active; }
size_t catalogue_count(void) { return cat.n; }
const struct catalogue_device *catalogue_at(size_t i) { return i < cat.n ? &cat.devs[i] : NULL; }

const struct catalogue_device *catalogue_find(const char *name)
{
    if (!cat.n)
        return NULL;
    struct catalogue_device key = {.name = (char *)name};
    return bsearch(&key, cat.devs, cat.n, sizeof(*cat.devs), by_name);
}
