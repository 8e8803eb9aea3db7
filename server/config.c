/* config.c - table-driven settings: config.def is the single source of the
 * flags, environment variables, defaults and --help. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "lk_mem.h"

struct config cfg;

enum type { STR, INT, DBL, BOOL };

/* A row's check column (config.def) as data: which bounds apply, and for a
 * word setting the words, '|'-separated. */
enum bound { B_MIN = 1, B_MAX = 2, B_ABOVE = 4, B_WORDS = 8 };

struct check {
    unsigned bounds;
    double lo, hi;
    const char *words;
};

struct setting {
    const char *flag, *env, *def, *help;
    enum type type;
    size_t offset;
    struct check check;
};

#define ANY {0, 0, 0, NULL}
#define MIN(lo) {B_MIN, lo, 0, NULL}
#define ABOVE(lo) {B_ABOVE, lo, 0, NULL}
#define RANGE(lo, hi) {B_MIN | B_MAX, lo, hi, NULL}
#define ONE_OF(words) {B_WORDS, 0, 0, words}
static const struct setting table[] = {
#define X(field, t, flag, env, def, check, help) {flag, env, def, help, t, offsetof(struct config, field), check},
#include "config.def"
#undef X
};
#undef ANY
#undef MIN
#undef ABOVE
#undef RANGE
#undef ONE_OF
#define NSETTINGS (sizeof(table) / sizeof(table[0]))

static int set_value(const struct setting *s, const char *v, FILE *err)
{
    void *p = (char *)&cfg + s->offset;
    char *end;
    switch (s->type) {
    case STR:
        free(*(char **)p);
        *(char **)p = lk_xstrdup(v);
        return 0;
    case INT: {
        errno = 0;
        long n = strtol(v, &end, 10);
        if (errno || end == v || *end) {
            fprintf(err, "devlockd: --%s: '%s' is not an integer\n", s->flag, v);
            return -1;
        }
        *(long *)p = n;
        return 0;
    }
    case DBL: {
        errno = 0;
        double d = strtod(v, &end);
        if (errno || end == v || *end) {
            fprintf(err, "devlockd: --%s: '%s' is not a number\n", s->flag, v);
            return -1;
        }
        *(double *)p = d;
        return 0;
    }
    case BOOL:
        if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on"))
            *(int *)p = 1;
        else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off"))
            *(int *)p = 0;
        else {
            fprintf(err, "devlockd: --%s: '%s' is not a boolean\n", s->flag, v);
            return -1;
        }
        return 0;
    }
    return -1;
}

static int is_word(const char *words, const char *v)
{
    size_t n = strlen(v);
    for (const char *w = words; *w;) {
        size_t len = strcspn(w, "|");
        if (len == n && strncmp(w, v, n) == 0)
            return 1;
        w += len + (w[len] == '|');
    }
    return 0;
}

/* Writes the bound as "0..65535", "at least 10", "more than 0" or
 * "one of text, json". */
static void describe(const struct check *c, char *buf, size_t size)
{
    if (c->bounds & B_WORDS) {
        int n = snprintf(buf, size, "one of ");
        for (const char *w = c->words; *w && n > 0 && (size_t)n < size;) {
            size_t len = strcspn(w, "|");
            n += snprintf(buf + n, size - (size_t)n, "%s%.*s", w == c->words ? "" : ", ", (int)len, w);
            w += len + (w[len] == '|');
        }
    } else if ((c->bounds & B_MIN) && (c->bounds & B_MAX)) {
        snprintf(buf, size, "%.15g..%.15g", c->lo, c->hi);
    } else if (c->bounds & B_MIN) {
        snprintf(buf, size, "at least %.15g", c->lo);
    } else {
        snprintf(buf, size, "more than %.15g", c->lo);
    }
}

/* Checks one setting's value against its row's bound; 0 if it holds,
 * otherwise -1 with "devlockd: --port must be 0..65535, got 70000". */
static int check_value(const struct setting *s, FILE *err)
{
    const struct check *c = &s->check;
    const void *p = (const char *)&cfg + s->offset;
    char range[160], got[64];
    int ok = 1;
    if (!c->bounds)
        return 0;
    if (s->type == STR) {
        const char *v = *(char *const *)p;
        ok = !(c->bounds & B_WORDS) || is_word(c->words, v);
        snprintf(got, sizeof(got), "'%.60s'", v);
    } else if (s->type == INT || s->type == DBL) {
        double v = s->type == INT ? (double)*(const long *)p : *(const double *)p;
        ok = !((c->bounds & B_MIN) && v < c->lo) && !((c->bounds & B_MAX) && v > c->hi) &&
             !((c->bounds & B_ABOVE) && v <= c->lo);
        if (s->type == INT)
            snprintf(got, sizeof(got), "%ld", *(const long *)p);
        else
            snprintf(got, sizeof(got), "%g", v);
    }
    if (ok)
        return 0;
    describe(c, range, sizeof(range));
    fprintf(err, "devlockd: --%s must be %s, got %s\n", s->flag, range, got);
    return -1;
}

static void usage(FILE *out)
{
    fprintf(out, "Usage: devlockd [OPTION]...\n"
                 "Device lock broker: HTTP JSON API, /ws event feed and dashboard on one port.\n\n"
                 "Options (flag > environment > default):\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const struct setting *s = &table[i];
        fprintf(out, "  --%-18s %s\n  %-20s   env %s, default '%s'\n", s->flag, s->help, "",
                s->env, s->def);
    }
    fprintf(out, "  --%-18s %s\n  --%-18s %s\n", "print-config",
            "print the effective settings and exit", "help", "print this help and exit");
}

static int is_secret(const struct setting *s) { return strcmp(s->flag, "redis-url") == 0; }

static void print_config(FILE *out)
{
    for (size_t i = 0; i < NSETTINGS; i++) {
        const struct setting *s = &table[i];
        const void *p = (const char *)&cfg + s->offset;
        fprintf(out, "%s=", s->flag);
        switch (s->type) {
        case STR: {
            const char *v = *(char *const *)p;
            const char *at = is_secret(s) ? strchr(v, '@') : NULL;
            if (at) /* mask the password of redis://:password@host */
                fprintf(out, "redis://***%s\n", at);
            else
                fprintf(out, "%s\n", v);
            break;
        }
        case INT: fprintf(out, "%ld\n", *(const long *)p); break;
        case DBL: fprintf(out, "%g\n", *(const double *)p); break;
        case BOOL: fprintf(out, "%s\n", *(const int *)p ? "true" : "false"); break;
        }
    }
}

static const struct setting *find_flag(const char *name, size_t n)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strlen(table[i].flag) == n && strncmp(table[i].flag, name, n) == 0)
            return &table[i];
    return NULL;
}

int config_load(int argc, char **argv, FILE *out, FILE *err)
{
    config_free(); /* a reload starts from nothing (and leaks nothing) */
    memset(&cfg, 0, sizeof(cfg));
    for (size_t i = 0; i < NSETTINGS; i++) {
        const char *env = getenv(table[i].env);
        if (set_value(&table[i], table[i].def, err))
            return -1;
        if (env && set_value(&table[i], env, err))
            return -1;
    }
    int print = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(out);
            return 1;
        }
        if (!strcmp(a, "--print-config")) {
            print = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(err, "devlockd: unexpected argument '%s' (see --help)\n", a);
            return -1;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        const struct setting *s = find_flag(name, eq ? (size_t)(eq - name) : strlen(name));
        if (!s) {
            fprintf(err, "devlockd: unknown option '%s' (see --help)\n", a);
            return -1;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (s->type == BOOL) {
                v = "true";
            } else if (i + 1 < argc) {
                v = argv[++i];
            } else {
                fprintf(err, "devlockd: option '%s' needs a value\n", a);
                return -1;
            }
        }
        if (set_value(s, v, err))
            return -1;
    }
    for (size_t i = 0; i < NSETTINGS; i++)
        if (check_value(&table[i], err))
            return -1;
    if (!cfg.tls_cert[0] != !cfg.tls_key[0]) {
        fprintf(err, "devlockd: --tls-cert and --tls-key go together (one is set, the other is empty)\n");
        return -1;
    }
    if (print) {
        print_config(out);
        return 1;
    }
    return 0;
}

void config_free(void)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (table[i].type == STR) {
            char **p = (char **)((char *)&cfg + table[i].offset);
            free(*p);
            *p = NULL;
        }
}
