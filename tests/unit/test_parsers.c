/* Unit tests of the parsers that see outside input: acquire requests,
 * the device catalogue, the auth file, and lock-key redaction. */
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "auth.h"
#include "catalogue.h"
#include "chunked.h"
#include "config.h"
#include "harness.h"
#include "locks.h"
#include "origin.h"

static enum lk_status parse(const char *json, struct locks_request_args *a)
{
    char err[256];
    cJSON *j = cJSON_Parse(json);
    enum lk_status s = locks_parse_request(j, a, err, sizeof(err));
    cJSON_Delete(j);
    return s;
}

static void acquire_requests(void)
{
    char *argv[] = {"devlockd", NULL};
    FILE *null = fopen("/dev/null", "w");
    config_load(1, argv, null, null);
    fclose(null);
    struct locks_request_args a;
    CHECK(parse("{\"device_name\":\"d1\",\"lock_type\":\"MAINTENANCE\",\"user_id\":\"u\"}", &a) == LK_E_OK);
    CHECK(a.prio == 0 && a.lease_ms == 300000 && a.ndevices == 1 && !strcmp(a.devices, "d1"));
    CHECK(parse("{\"device_name\":\"d1\",\"lock_type\":\"QUEUE_QUEUED\",\"user_id\":\"u\",\"timeout\":0.5,\"wait\":2}", &a) == LK_E_OK);
    CHECK(a.lease_ms == 500 && a.wait_ms == 2000);
    CHECK(parse("{\"device_name\":\"d1\",\"lock_type\":\"QUEUE_QUEUED\",\"user_id\":\"u\",\"timeout\":null}", &a) == LK_E_OK);
    CHECK(a.lease_ms == 0); /* no expiry without --max-timeout */
    CHECK(parse("{\"device_names\":[\"a\",\"b\"],\"lock_type\":\"QUEUE_QUEUED\",\"user_id\":\"u\"}", &a) == LK_E_OK);
    CHECK(a.ndevices == 2 && !strcmp(a.devices, "a,b"));
    CHECK(parse("{\"device_names\":[\"a\",\"a\"],\"lock_type\":\"QUEUE_QUEUED\",\"user_id\":\"u\"}", &a) == LK_E_VALIDATION);
    CHECK(parse("{\"device_names\":[],\"lock_type\":\"QUEUE_QUEUED\",\"user_id\":\"u\"}", &a) == LK_E_VALIDATION);
    CHECK(parse("{\"device_name\":\"a b\",\"lock_type\":\"QUEUE_QUEUED\",\"user_id\":\"u\"}", &a) == LK_E_INVALID_DEVICE);
    CHECK(parse("{\"device_name\":\"d\",\"lock_type\":\"queue\",\"user_id\":\"u\"}", &a) == LK_E_VALIDATION);
    CHECK(parse("{\"device_name\":\"d\",\"lock_type\":\"QUEUE_QUEUED\"}", &a) == LK_E_VALIDATION);
    CHECK(parse("{\"device_name\":\"d\",\"lock_type\":\"QUEUE_QUEUED\",\"user_id\":\"\"}", &a) == LK_E_VALIDATION);
    CHECK(parse("{\"device_name\":\"d\",\"lock_type\":\"QUEUE_QUEUED\",\"user_id\":\"u\",\"timeout\":0}", &a) == LK_E_INVALID_TIMEOUT);
    CHECK(parse("{\"device_name\":\"d\",\"lock_type\":\"QUEUE_QUEUED\",\"user_id\":\"u\",\"timeout\":-3}", &a) == LK_E_INVALID_TIMEOUT);
    CHECK(parse("{\"device_name\":\"d\",\"lock_type\":\"QUEUE_QUEUED\",\"user_id\":\"u\",\"timeout\":\"5\"}", &a) == LK_E_VALIDATION);
    CHECK(parse("{\"device_name\":\"d\",\"lock_type\":\"QUEUE_QUEUED\",\"user_id\":\"u\",\"timeout\":1e300}", &a) == LK_E_INVALID_TIMEOUT);
    CHECK(parse("{\"device_name\":\"d\",\"lock_type\":\"QUEUE_QUEUED\",\"user_id\":\"u\",\"wait\":-1}", &a) == LK_E_VALIDATION);
    CHECK(parse("{\"device_name\":\"d\",\"lock_type\":\"QUEUE_QUEUED\",\"user_id\":\"u\",\"client\":{\"pid\":\"x\"}}", &a) == LK_E_VALIDATION);
    CHECK(parse("{\"device_name\":\"d\",\"lock_type\":\"QUEUE_QUEUED\",\"user_id\":\"u\",\"reason\":5}", &a) == LK_E_VALIDATION);
    config_free();
}

static void catalogue_formats(void)
{
    char err[256];
    const char *text = "# lab devices\ndet1 description=\"Main detector\" preempt_grace_s=5\n"
                       "  motor1 lock_delay_s=2 # note\n\nshutter\n";
    CHECK(catalogue_parse(text, strlen(text), err, sizeof(err)) == 0);
    CHECK(catalogue_count() == 3);
    const struct catalogue_device *d = catalogue_find("det1");
    CHECK(d && d->description && !strcmp(d->description, "Main detector") && d->preempt_grace_s == 5);
    CHECK(catalogue_find("motor1") && catalogue_find("motor1")->lock_delay_s == 2);
    CHECK(!catalogue_find("det2"));
    CHECK_STR(catalogue_at(0)->name, "det1"); /* sorted */
    const char *json = "{\"devices\":[\"b\",{\"name\":\"a\",\"preempt_grace_s\":1.5}]}";
    CHECK(catalogue_parse(json, strlen(json), err, sizeof(err)) == 0);
    CHECK(catalogue_count() == 2 && catalogue_find("a")->preempt_grace_s == 1.5);
    /* a bad file keeps the previous catalogue */
    CHECK(catalogue_parse("[\"x y\"]", 7, err, sizeof(err)) == -1 && catalogue_count() == 2);
    CHECK(catalogue_parse("a\na\n", 4, err, sizeof(err)) == -1);
    CHECK(catalogue_parse("a lock_delay_s=-1\n", 18, err, sizeof(err)) == -1);
    CHECK(catalogue_parse("a key\n", 6, err, sizeof(err)) == -1);
    catalogue_free();
    CHECK(!catalogue_active());
}

static void auth_file(void)
{
    char err[256];
    const char *f = "{\"users\":[{\"user_id\":\"alice\",\"token\":\"secret-alice\",\"roles\":[\"operator\"]},"
                    "{\"user_id\":\"root\",\"token_sha256\":"
                    "\"2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b\",\"roles\":[\"admin\"]}]}";
    CHECK(auth_parse(f, strlen(f), err, sizeof(err)) == 0);
    struct auth_user u;
    CHECK(auth_lookup("secret-alice", &u) == 0 && !strcmp(u.user_id, "alice"));
    CHECK(auth_may_lock(&u, 2) && !auth_may_lock(&u, 0) && !auth_may_lock(&u, 1) && !auth_is_admin(&u));
    CHECK(auth_lookup("secret", &u) == 0 && !strcmp(u.user_id, "root")); /* sha256("secret") */
    CHECK(auth_is_admin(&u) && auth_may_lock(&u, 0));
    CHECK(auth_lookup("nope", &u) == -1 && auth_lookup(NULL, &u) == -1);
    CHECK(auth_bearer("Bearer abc") && !strcmp(auth_bearer("Bearer abc"), "abc"));
    CHECK(!auth_bearer("Basic abc") && !auth_bearer(NULL) && !auth_bearer("Bearer "));
    const char *bad = "{\"users\":[{\"user_id\":\"x\",\"token\":\"abcdefgh\",\"roles\":[\"root\"]}]}";
    CHECK(auth_parse(bad, strlen(bad), err, sizeof(err)) == -1);
    CHECK(auth_lookup("secret-alice", &u) == 0); /* the previous users stay */
    auth_free();
    CHECK(!auth_active());
}

static void redaction(void)
{
    const char *j = "{\"locks\":[{\"device_name\":\"a\",\"lock_type\":\"X\",\"user_id\":\"alice\",\"lock_key\":\"k1\",\"fence\":1},"
                    "{\"device_name\":\"b\",\"lock_type\":\"X\",\"user_id\":\"bob\",\"lock_key\":\"k2\",\"fence\":2}]}";
    struct lk_buf out;
    lk_buf_init(&out, 0);
    auth_redact(j, strlen(j), "alice", &out);
    CHECK(strstr(lk_buf_data(&out), "\"lock_key\":\"k1\"") && !strstr(lk_buf_data(&out), "k2"));
    CHECK(strstr(lk_buf_data(&out), "\"user_id\":\"bob\",\"lock_key\":null"));
    lk_buf_reset(&out);
    auth_redact(j, strlen(j), NULL, &out);
    CHECK(!strstr(lk_buf_data(&out), "k1") && !strstr(lk_buf_data(&out), "k2"));
    /* the requester's own key at top level stays */
    const char *g = "{\"success\":true,\"lock_key\":\"mine\",\"lock\":{\"user_id\":\"me\",\"lock_key\":\"mine\"}}";
    lk_buf_reset(&out);
    auth_redact(g, strlen(g), "me", &out);
    CHECK(!strcmp(lk_buf_data(&out), g));
    /* a user_id with an escaped quote is compared as written */
    const char *e = "{\"user_id\":\"a\\\"b\",\"lock_key\":\"k\"}";
    lk_buf_reset(&out);
    auth_redact(e, strlen(e), "a\"b", &out);
    CHECK(!strcmp(lk_buf_data(&out), e));
    /* ids compare decoded: Lua's cjson writes "/" as "\/" */
    const char *slash = "{\"locks\":[{\"user_id\":\"lab\\/alice\",\"lock_key\":\"k1\"},"
                        "{\"user_id\":\"lab\\/bob\",\"lock_key\":\"k2\"}]}";
    lk_buf_reset(&out);
    auth_redact(slash, strlen(slash), "lab/alice", &out);
    CHECK(strstr(lk_buf_data(&out), "\"k1\"") && !strstr(lk_buf_data(&out), "k2"));
    lk_buf_free(&out);
}

static enum chunked_status dechunk(const char *wire, size_t max, struct lk_buf *out, size_t step)
{
    struct chunked c;
    chunked_init(&c);
    lk_buf_reset(out);
    enum chunked_status st = CHUNKED_MORE;
    for (size_t i = 0, n = strlen(wire); i < n && st == CHUNKED_MORE; i += step)
        st = chunked_feed(&c, wire + i, n - i < step ? n - i : step, out, max);
    return st;
}

static void chunked_bodies(void)
{
    struct lk_buf out;
    lk_buf_init(&out, 0);
    for (size_t step = 1; step <= 64; step *= 4) { /* any split of the bytes */
        CHECK(dechunk("5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n", 100, &out, step) == CHUNKED_DONE);
        CHECK(out.len == 11 && !memcmp(lk_buf_data(&out), "hello world", 11));
        CHECK(dechunk("A\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1", 100, &out, step) == CHUNKED_DONE);
        CHECK(out.len == 10);
    }
    CHECK(dechunk("5\r\nhel", 100, &out, 64) == CHUNKED_MORE);
    CHECK(dechunk("5\r\nhello\r\n0\r\n\r\n", 4, &out, 64) == CHUNKED_TOO_LARGE);
    CHECK(dechunk("ffffffffffffffffff\r\n", 1 << 20, &out, 64) == CHUNKED_TOO_LARGE);
    CHECK(dechunk("\r\n", 100, &out, 64) == CHUNKED_BAD);            /* no size */
    CHECK(dechunk("5\nhello\r\n", 100, &out, 64) == CHUNKED_BAD);   /* bare LF */
    CHECK(dechunk("5\r\nhelloX\r\n", 100, &out, 64) == CHUNKED_BAD); /* chunk longer than said */
    CHECK(dechunk("-5\r\nhello\r\n", 100, &out, 64) == CHUNKED_BAD);
    CHECK(dechunk("0x5\r\nhello\r\n", 100, &out, 64) == CHUNKED_BAD);
    lk_buf_free(&out);
}

static void origins(void)
{
    /* same origin: the Host the client reached, with the connection's scheme */
    CHECK(origin_same("http://127.0.0.1:8080", "127.0.0.1:8080", 0));
    CHECK(origin_same("http://Lab.Example", "lab.example:80", 0));
    CHECK(origin_same("https://lab.example", "lab.example", 1));
    CHECK(origin_same("https://lab.example:443", "lab.example", 1));
    CHECK(origin_same("http://[::1]:8080", "[::1]:8080", 0));
    CHECK(!origin_same("https://127.0.0.1:8080", "127.0.0.1:8080", 0));
    CHECK(!origin_same("http://127.0.0.1:8080", "127.0.0.1:8080", 1));
    CHECK(!origin_same("http://127.0.0.1:8081", "127.0.0.1:8080", 0));
    CHECK(!origin_same("http://lab.example", "lab.example:8080", 0));
    CHECK(!origin_same("http://lab.example.evil", "lab.example", 0));
    CHECK(!origin_same("http://evil@lab.example", "lab.example", 0));
    CHECK(!origin_same("http://lab.example/", "lab.example", 0));
    CHECK(!origin_same("http://lab.example:99999", "lab.example:99999", 0));
    CHECK(!origin_same("null", "lab.example", 0));
    CHECK(!origin_same("http://", "", 0));
    /* the list: exact names, or '*' */
    char *saved = cfg.allowed_origins;
    cfg.allowed_origins = "https://gui.example, http://a.example:8080";
    CHECK(origin_listed("https://gui.example") == ORIGIN_LISTED);
    CHECK(origin_listed("http://a.example:8080") == ORIGIN_LISTED);
    CHECK(origin_listed("http://a.example") == ORIGIN_UNLISTED);
    CHECK(origin_listed("https://GUI.example") == ORIGIN_UNLISTED);
    cfg.allowed_origins = "*";
    CHECK(origin_listed("http://anything.example") == ORIGIN_ANY);
    cfg.allowed_origins = "";
    CHECK(origin_listed("https://gui.example") == ORIGIN_UNLISTED);
    cfg.allowed_origins = saved;
}

int main(void)
{
    RUN(acquire_requests);
    RUN(catalogue_formats);
    RUN(auth_file);
    RUN(redaction);
    RUN(origins);
    RUN(chunked_bodies);
    DONE();
}
