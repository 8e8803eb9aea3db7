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
    RUN(help_lists_every_flag);
    RUN(event_id_order);
    DONE();
}
