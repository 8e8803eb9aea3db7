/* Unit tests of the configuration table: defaults, environment, flags,
 * precedence, --help, bad values. */
#include <stdlib.h>

#include "config.h"
#include "harness.h"
#include "ws.h"

static int load(int argc, char **argv)
{
    FILE *null = fopen("/dev/null", "w");
    int rc = config_load(argc, argv, null, null);
    fclose(null);
    return rc;
}

static void defaults(void)
{
    unsetenv("COORDINATION_REDIS_URL");
    unsetenv("COORDINATION_PORT");
    char *argv[] = {"devlockd", NULL};
    CHECK(load(1, argv) == 0);
    CHECK(cfg.port == 60620);
    CHECK_STR(cfg.host, "0.0.0.0");
    CHECK_STR(cfg.redis_url, "redis://localhost:60590");
    CHECK_STR(cfg.log_level, "INFO");
    CHECK(cfg.default_timeout == 300);
    config_free();
}

static void env_then_flags(void)
{
    setenv("COORDINATION_REDIS_URL", "redis://10.0.0.1:1", 1);
    setenv("COORDINATION_PORT", "1234", 1);
    char *argv[] = {"devlockd", "--port", "0", "--max-timeout=60", NULL};
    CHECK(load(4, argv) == 0);
    CHECK(cfg.port == 0);                               /* flag beats env */
    CHECK_STR(cfg.redis_url, "redis://10.0.0.1:1");     /* env beats default */
    CHECK(cfg.max_timeout == 60);
    config_free();
    unsetenv("COORDINATION_REDIS_URL");
    unsetenv("COORDINATION_PORT");
}

static void bad_values(void)
{
    char *a1[] = {"devlockd", "--port", "abc", NULL};
    CHECK(load(3, a1) == -1);
    char *a2[] = {"devlockd", "--no-such-flag", NULL};
    CHECK(load(2, a2) == -1);
    char *a3[] = {"devlockd", "--port", "70000", NULL};
    CHECK(load(3, a3) == -1);
    char *a4[] = {"devlockd", "--port", NULL};
    CHECK(load(2, a4) == -1);
    char *a5[] = {"devlockd", "--log-format", "xml", NULL};
    CHECK(load(3, a5) == -1);
    setenv("COORDINATION_MAX_BODY", "12x", 1);
    char *a6[] = {"devlockd", NULL};
    CHECK(load(1, a6) == -1);
    unsetenv("COORDINATION_MAX_BODY");
    config_free();
}

/* Loads argv and returns config_load's result; the error text, if any,
 * goes into msg. */
static int load_msg(int argc, char **argv, char *msg, size_t size)
{
    char *text = NULL;
    size_t len = 0;
    FILE *null = fopen("/dev/null", "w"), *err = open_memstream(&text, &len);
    int rc = config_load(argc, argv, null, err);
    fclose(null);
    fclose(err);
    snprintf(msg, size, "%s", text ? text : "");
    free(text);
    config_free();
    return rc;
}

/* Each kind of bound of config.def's check column refuses the first value
 * past it, accepts the edge, and the message names the setting and the
 * range. */
static void bounds_name_their_setting(void)
{
    char msg[256];
    char *r1[] = {"devlockd", "--port", "70000", NULL};
    CHECK(load_msg(3, r1, msg, sizeof(msg)) == -1);
    CHECK_STR(msg, "devlockd: --port must be 0..65535, got 70000\n");
    char *r2[] = {"devlockd", "--port=-1", NULL};
    CHECK(load_msg(2, r2, msg, sizeof(msg)) == -1);
    CHECK_STR(msg, "devlockd: --port must be 0..65535, got -1\n");
    char *r3[] = {"devlockd", "--port", "65535", "--reservation-history", "315360000", NULL};
    CHECK(load_msg(5, r3, msg, sizeof(msg)) == 0);
    char *r4[] = {"devlockd", "--reservation-history", "315360001", NULL};
    CHECK(load_msg(3, r4, msg, sizeof(msg)) == -1);
    CHECK_STR(msg, "devlockd: --reservation-history must be 0..315360000, got 315360001\n");

    char *m1[] = {"devlockd", "--redis-timeout-ms", "9", NULL};          /* MIN, INT */
    CHECK(load_msg(3, m1, msg, sizeof(msg)) == -1);
    CHECK_STR(msg, "devlockd: --redis-timeout-ms must be at least 10, got 9\n");
    char *m2[] = {"devlockd", "--redis-timeout-ms", "10", "--lock-delay", "0", NULL};
    CHECK(load_msg(5, m2, msg, sizeof(msg)) == 0);
    char *m3[] = {"devlockd", "--lock-delay", "-0.5", NULL};              /* MIN, DBL */
    CHECK(load_msg(3, m3, msg, sizeof(msg)) == -1);
    CHECK_STR(msg, "devlockd: --lock-delay must be at least 0, got -0.5\n");

    char *a1[] = {"devlockd", "--default-timeout", "0", NULL};            /* ABOVE */
    CHECK(load_msg(3, a1, msg, sizeof(msg)) == -1);
    CHECK_STR(msg, "devlockd: --default-timeout must be more than 0, got 0\n");
    char *a2[] = {"devlockd", "--default-timeout", "0.001", NULL};
    CHECK(load_msg(3, a2, msg, sizeof(msg)) == 0);

    char *w1[] = {"devlockd", "--fence-clock", "maybe", NULL};            /* ONE_OF */
    CHECK(load_msg(3, w1, msg, sizeof(msg)) == -1);
    CHECK_STR(msg, "devlockd: --fence-clock must be one of on, off, auto, got 'maybe'\n");
    char *w2[] = {"devlockd", "--fence-clock", "of", NULL};               /* a prefix is no word */
    CHECK(load_msg(3, w2, msg, sizeof(msg)) == -1);
    char *w3[] = {"devlockd", "--fence-clock", "off", "--log-format", "json", NULL};
    CHECK(load_msg(5, w3, msg, sizeof(msg)) == 0);
    char *w4[] = {"devlockd", "--log-format", "xml", NULL};
    CHECK(load_msg(3, w4, msg, sizeof(msg)) == -1);
    CHECK_STR(msg, "devlockd: --log-format must be one of text, json, got 'xml'\n");

    setenv("COORDINATION_WS_QUEUE_MAX", "1023", 1);                       /* a bound holds for the environment too */
    char *e1[] = {"devlockd", NULL};
    CHECK(load_msg(1, e1, msg, sizeof(msg)) == -1);
    CHECK_STR(msg, "devlockd: --ws-queue-max must be at least 1024, got 1023\n");
    char *e2[] = {"devlockd", "--ws-queue-max", "1024", NULL};           /* the flag beats it */
    CHECK(load_msg(3, e2, msg, sizeof(msg)) == 0);
    unsetenv("COORDINATION_WS_QUEUE_MAX");

    char *x1[] = {"devlockd", "--tls-cert", "/x.pem", NULL};              /* across settings: still code */
    CHECK(load_msg(3, x1, msg, sizeof(msg)) == -1);
    CHECK(strstr(msg, "--tls-key") != NULL);
}

static void help_lists_every_flag(void)
{
    char path[] = "/tmp/devlock-help-XXXXXX";
    int fd = mkstemp(path);
    FILE *out = fdopen(fd, "w+");
    char *argv[] = {"devlockd", "--help", NULL};
    CHECK(config_load(2, argv, out, out) == 1);
    fflush(out);
    rewind(out);
    char text[8192] = "";
    size_t n = fread(text, 1, sizeof(text) - 1, out);
    text[n] = '\0';
    fclose(out);
    unlink(path);
    CHECK(strstr(text, "--port") && strstr(text, "--redis-url") && strstr(text, "COORDINATION_REDIS_URL"));
    CHECK(strstr(text, "--port-file") && strstr(text, "--max-ws-message"));
    config_free();
}

static void event_id_order(void)
{
    CHECK(ws_event_id_cmp("1-0", "1-0") == 0);
    CHECK(ws_event_id_cmp("1-1", "1-0") > 0);
    CHECK(ws_event_id_cmp("9-0", "10-0") < 0);   /* numeric, not lexical */
    CHECK(ws_event_id_cmp("1795441672014-2", "1795441672014-10") < 0);
}

int main(void)
{
    RUN(defaults);
    RUN(env_then_flags);
    RUN(bad_values);
    RUN(bounds_name_their_setting);
    RUN(help_lists_every_flag);
    RUN(event_id_order);
    DONE();
}
