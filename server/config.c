/* config.c - table-driven settings: config.def is the single source of the
 * flags, environment variables, defaults and --help. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "lk_mem.h"

struct config cfg;

enum type { STR, INT, DBL, BOOL };

struct setting {
    const char *flag, *env, *def, *help;
    enum type type;
    size_t offset;
};

static const struct setting table[] = {
#define X(field, t, flag, env, def, help) {flag, env, def, help, t, offsetof(struct config, field)},
#include "config.def"
#undef X
};
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
    if (cfg.port < 0 || cfg.port > 65535 || cfg.redis_timeout_ms < 10 || cfg.max_body < 64 ||
        cfg.max_json_depth < 2 || cfg.max_ws_message < 64 || cfg.ws_queue_max < 1024 ||
        cfg.stream_maxlen < 10 || cfg.default_timeout <= 0 || cfg.max_timeout < 0 ||
        cfg.resume_max < 1 || cfg.redis_wait_replicas < 0 || cfg.redis_wait_ms < 1 ||
        (strcmp(cfg.fence_clock, "on") && strcmp(cfg.fence_clock, "off") && strcmp(cfg.fence_clock, "auto")) || cfg.max_connections < 1 || cfg.io_timeout < 1 ||
        cfg.stream_max_age < 0 || cfg.preempt_grace < 0 || cfg.lock_delay < 0 ||
        cfg.session_grace < 0 || cfg.max_wait < 0 || cfg.reservation_history < 0 ||
        cfg.reservation_history > 10L * 365 * 86400 || (!cfg.tls_cert[0] != !cfg.tls_key[0]) ||
        (strcmp(cfg.log_format, "text") && strcmp(cfg.log_format, "json"))) {
        fprintf(err, "devlockd: a setting is out of range (see --help)\n");
        return -1;
    }
    if (cfg.ws_queue_max_bytes < 65536 || cfg.ws_ping_interval < 0 || cfg.ws_ping_timeout < 1) {
        fprintf(err, "devlockd: --ws-queue-max-bytes is at least 65536, --ws-ping-interval at least 0, "
                     "--ws-ping-timeout at least 1\n");
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
