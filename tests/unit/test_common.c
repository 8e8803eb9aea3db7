/* Unit tests of common/: JSON output codec, text checks, stream ids, time, error table. */
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "harness.h"
#include "lk_buf.h"
#include "lk_error.h"
#include "lk_text.h"
#include "lk_time.h"

static void json_string_escaping(void)
{
    struct lk_buf b;
    lk_buf_init(&b, 0);
    lk_buf_json_str(&b, "a\"b\\c\n\t\x01/é");
    CHECK_STR(lk_buf_data(&b), "\"a\\\"b\\\\c\\n\\t\\u0001/é\"");
    /* what we write, cJSON reads back unchanged */
    cJSON *j = cJSON_Parse(lk_buf_data(&b));
    CHECK(cJSON_IsString(j) && !strcmp(j->valuestring, "a\"b\\c\n\t\x01/é"));
    cJSON_Delete(j);
    lk_buf_reset(&b);
    lk_buf_json_str(&b, NULL);
    CHECK_STR(lk_buf_data(&b), "null");
    /* Lua cjson's spelling (the device answer from the copy matches
     * device.lua's bytes): "/" and DEL escaped, \b and \f named */
    lk_buf_reset(&b);
    lk_buf_cjson_str(&b, "a\"b\\c/\b\f\n\x01\x7fé");
    CHECK_STR(lk_buf_data(&b), "\"a\\\"b\\\\c\\/\\b\\f\\n\\u0001\\u007fé\"");
    lk_buf_free(&b);
}

static void buffer_growth_and_headroom(void)
{
    struct lk_buf b;
    lk_buf_init(&b, 16);
    for (int i = 0; i < 1000; i++)
        lk_buf_printf(&b, "%04d", i);
    CHECK(b.len == 4000);
    CHECK(!strncmp(lk_buf_data(&b), "000000010002", 12));
    CHECK(lk_buf_data(&b) == b.mem + 16);
    size_t n;
    char *s = lk_buf_steal(&b, &n);
    CHECK(n == 4000 && !strncmp(s + 3996, "0999", 4) && s[4000] == '\0');
    free(s);
    CHECK(b.mem == NULL);
    lk_buf_printf(&b, "%s", "");
    CHECK(b.len == 0);
    lk_buf_free(&b);
}

static void utf8_validation(void)
{
    CHECK(lk_utf8_valid("plain", 5));
    CHECK(lk_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
    CHECK(!lk_utf8_valid("\xc3", 1));              /* truncated */
    CHECK(!lk_utf8_valid("\xc0\xaf", 2));          /* overlong */
    CHECK(!lk_utf8_valid("\xed\xa0\x80", 3));      /* surrogate */
    CHECK(!lk_utf8_valid("\xf4\x90\x80\x80", 4));  /* > U+10FFFF */
    CHECK(!lk_utf8_valid("\xff", 1));
    CHECK(lk_utf8_valid("", 0));
}

static void json_depth_prescan(void)
{
    CHECK(lk_json_depth("{}", 2, 16) == 1);
    CHECK(lk_json_depth("{\"a\":[1,{\"b\":2}]}", 17, 16) == 3);
    CHECK(lk_json_depth("\"[[[[\"", 6, 16) == 0);        /* inside a string */
    CHECK(lk_json_depth("{\"a\\\"[[\":1}", 11, 16) == 1); /* escaped quote */
    char deep[100001];
    memset(deep, '[', 100000);
    deep[100000] = '\0';
    CHECK(lk_json_depth(deep, 100000, 16) == 17);          /* stops at limit + 1 */
}

static void nul_escapes(void)
{
    CHECK(lk_json_has_nul("{\"a\":\"x\\u0000y\"}", 16));
    CHECK(!lk_json_has_nul("{\"a\":\"x\\\\u0000y\"}", 17)); /* an escaped backslash, then text */
    CHECK(!lk_json_has_nul("{\"a\":\"\\u0001\"}", 13));
    CHECK(!lk_json_has_nul("\\", 1));
}

static void device_names(void)
{
    CHECK(lk_device_name_valid("detector1"));
    CHECK(lk_device_name_valid("Motor_2.x:y-z"));
    CHECK(!lk_device_name_valid(""));
    CHECK(!lk_device_name_valid(NULL));
    CHECK(!lk_device_name_valid("a b"));
    CHECK(!lk_device_name_valid("a/b"));
    CHECK(!lk_device_name_valid("dé"));
    char name[130];
    memset(name, 'a', 129);
    name[128] = '\0';
    CHECK(lk_device_name_valid(name));
    name[128] = 'a';
    name[129] = '\0';
    CHECK(!lk_device_name_valid(name));
}

static void lock_types(void)
{
    CHECK(lk_lock_type_parse("MAINTENANCE") == 0);
    CHECK(lk_lock_type_parse("QUEUE_EXECUTING") == 1);
    CHECK(lk_lock_type_parse("MANUAL_OPERATOR") == 2);
    CHECK(lk_lock_type_parse("QUEUE_QUEUED") == 3);
    CHECK(lk_lock_type_parse("maintenance") == -1);
    CHECK(lk_lock_type_parse(NULL) == -1);
    CHECK_STR(lk_lock_type_name(3), "QUEUE_QUEUED");
    CHECK(lk_lock_type_name(4) == NULL);
}

static void timestamps(void)
{
    char s[40];
    lk_time_format_us(1795441672014410LL, s, sizeof(s));
    CHECK_STR(s, "2026-11-23T13:47:52.014410Z");
    int64_t us = 0;
    CHECK(lk_time_parse_us(s, &us) == 0 && us == 1795441672014410LL);
    CHECK(lk_time_parse_us("2026-11-23T13:47:52Z", &us) == 0 && us == 1795441672000000LL);
    CHECK(lk_time_parse_us("2024-02-29T00:00:00.5+00:00", &us) == 0 && us == 1709164800500000LL);
    CHECK(lk_time_parse_us("yesterday", &us) == -1);
    lk_time_format_us(0, s, sizeof(s));
    CHECK_STR(s, "1970-01-01T00:00:00.000000Z");
}

static void stream_ids(void)
{
    CHECK(lk_stream_id_cmp("1-0", "1-0") == 0);
    CHECK(lk_stream_id_cmp("1-1", "1-0") > 0);
    CHECK(lk_stream_id_cmp("9-0", "10-0") < 0); /* by number, not by text */
    CHECK(lk_stream_id_cmp("1795441672014-2", "1795441672014-10") < 0);
    CHECK(lk_stream_id_cmp("1795441672014", "1795441672014-0") == 0); /* no -seq: 0 */
    CHECK(lk_stream_id_cmp("18446744073709551615-18446744073709551615", "1-0") > 0);
    CHECK(lk_stream_id_cmp("junk", "0-1") < 0); /* malformed sorts first */
    CHECK(lk_stream_id_cmp("", "1-0") < 0);
}

static void error_table(void)
{
    CHECK_STR(lk_error_wire(LK_E_INVALID_JSON), "invalid_json");
    CHECK(lk_error_http(LK_E_UNAVAILABLE) == 503);
    CHECK(lk_error_http(LK_E_NOT_FOUND) == 404);
    CHECK(lk_error_exit(LK_E_UNAVAILABLE) == 3);
    CHECK(lk_error_from_wire("resume_gap") == LK_E_RESUME_GAP);
    CHECK(lk_error_from_wire("nonsense") == LK_E_INTERNAL);
    CHECK_STR(lk_error_wire((enum lk_status)9999), "internal_error");
}

int main(void)
{
    RUN(json_string_escaping);
    RUN(buffer_growth_and_headroom);
    RUN(utf8_validation);
    RUN(json_depth_prescan);
    RUN(nul_escapes);
    RUN(device_names);
    RUN(lock_types);
    RUN(timestamps);
    RUN(stream_ids);
    RUN(error_table);
    DONE();
}
