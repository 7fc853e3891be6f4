/* Unit tests of common/envelope: server-built envelopes and client frames
 * (README.md "Messages"). */
#include <check.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "jsoncheck.h"

START_TEST(build_basic)
{
    size_t len = 0;
    char *s = envelope_build("heartbeat", NULL, NULL, &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "{\"type\":\"heartbeat\",\"content\":{\"body\":\"\",\"meta_data\":\"\"}}");
    ck_assert_uint_eq(len, strlen(s));
    free(s);
    s = envelope_build("error", "bad frame", "", &len);
    ck_assert_str_eq(
        s, "{\"type\":\"error\",\"content\":{\"body\":\"bad frame\",\"meta_data\":\"\"}}");
    free(s);
    /* len may be NULL */
    s = envelope_build("gap", "1-0", NULL, NULL);
    ck_assert_str_eq(s, "{\"type\":\"gap\",\"content\":{\"body\":\"1-0\",\"meta_data\":\"\"}}");
    free(s);
}
END_TEST

START_TEST(build_escapes)
{
    size_t len;
    const char *meta = "{\"account\":\"u42\",\"node\":\"n1\",\"heartbeat_interval\":9}";
    char *s = envelope_build("register", "0123456789abcdef01234567", meta, &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(jsoncheck_object(s, len, NULL), 1);
    json_error_t e;
    json_t *root = json_loadb(s, len, 0, &e);
    ck_assert_ptr_nonnull(root);
    ck_assert_str_eq(json_string_value(json_object_get(root, "type")), "register");
    json_t *content = json_object_get(root, "content");
    ck_assert_str_eq(json_string_value(json_object_get(content, "body")),
                     "0123456789abcdef01234567");
    ck_assert_str_eq(json_string_value(json_object_get(content, "meta_data")), meta);
    json_decref(root);
    free(s);
    /* quotes, backslashes, controls and UTF-8 survive a round trip */
    const char *body = "a\"b\\c\nd\te\x01 caf\xc3\xa9 \xf0\x9f\x98\x80 </script>";
    s = envelope_build("t", body, NULL, &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(jsoncheck_object(s, len, NULL), 1);
    root = json_loadb(s, len, 0, &e);
    ck_assert_ptr_nonnull(root);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(root, "content"), "body")),
                     body);
    json_decref(root);
    free(s);
}
END_TEST

START_TEST(build_invalid_utf8)
{
    /* jansson refuses strings that are not UTF-8: NULL, never a bad frame */
    size_t len;
    char *s = envelope_build("t", "\xff", NULL, &len);
    ck_assert_ptr_null(s);
    s = envelope_build("\xc0\xaf", NULL, NULL, &len);
    ck_assert_ptr_null(s);
}
END_TEST

static int parse(const char *s, struct client_msg *m, const char **reason)
{
    return envelope_parse_client(s, strlen(s), m, reason);
}

START_TEST(parse_heartbeat)
{
    struct client_msg m;
    const char *reason = NULL;
    ck_assert_int_eq(parse("{\"type\":\"heartbeat\"}", &m, &reason), 0);
    ck_assert_str_eq(m.type, "heartbeat");
    ck_assert_ptr_null(m.body);
    client_msg_clear(&m);
    ck_assert_int_eq(parse(" \n{ \"type\" : \"heartbeat\" , \"extra\": [1,2,{}] }\n", &m, &reason),
                     0);
    ck_assert_str_eq(m.type, "heartbeat");
    client_msg_clear(&m);
}
END_TEST

START_TEST(parse_with_body)
{
    struct client_msg m;
    const char *reason = NULL;
    ck_assert_int_eq(
        parse("{\"type\":\"ack\",\"content\":{\"body\":\"1-0\",\"meta_data\":\"\"}}", &m, &reason),
        0);
    ck_assert_str_eq(m.type, "ack");
    ck_assert_ptr_nonnull(m.body);
    ck_assert_str_eq(m.body, "1-0");
    client_msg_clear(&m);
    ck_assert_ptr_null(m.body);
    client_msg_clear(&m); /* twice is fine */
    /* a non-string body is ignored */
    ck_assert_int_eq(parse("{\"type\":\"x\",\"content\":{\"body\":5}}", &m, &reason), 0);
    ck_assert_ptr_null(m.body);
    client_msg_clear(&m);
    ck_assert_int_eq(parse("{\"type\":\"x\",\"content\":\"body\"}", &m, &reason), 0);
    ck_assert_ptr_null(m.body);
    client_msg_clear(&m);
    ck_assert_int_eq(parse("{\"type\":\"x\",\"body\":\"top-level\"}", &m, &reason), 0);
    ck_assert_ptr_null(m.body);
    client_msg_clear(&m);
    /* escapes are decoded */
    ck_assert_int_eq(parse("{\"type\":\"x\",\"content\":{\"body\":\"a\\nb\\u00e9\"}}", &m, &reason),
                     0);
    ck_assert_str_eq(m.body, "a\nb\xc3\xa9");
    client_msg_clear(&m);
}
END_TEST

START_TEST(parse_type_truncated)
{
    struct client_msg m;
    const char *reason = NULL;
    ck_assert_int_eq(parse("{\"type\":\"0123456789012345678901234567890123456789\"}", &m, &reason),
                     0);
    ck_assert_uint_eq(strlen(m.type), sizeof(m.type) - 1);
    ck_assert_int_eq(strncmp(m.type, "0123456789012345678901234567890", sizeof(m.type) - 1), 0);
    client_msg_clear(&m);
    ck_assert_int_eq(parse("{\"type\":\"\"}", &m, &reason), 0);
    ck_assert_str_eq(m.type, "");
    client_msg_clear(&m);
}
END_TEST

START_TEST(parse_bad)
{
    static const char *bad[] = {
        "",
        "heartbeat",
        "{",
        "{\"type\":\"heartbeat\"",
        "{\"type\":\"heartbeat\"}x",
        "{\"type\":\"heartbeat\"}{}",
        "{'type':'heartbeat'}",
        "[\"type\",\"heartbeat\"]",
        "[{\"type\":\"heartbeat\"}]",
        "\"heartbeat\"",
        "1",
        "null",
        "{}",
        "{\"Type\":\"heartbeat\"}",
        "{\"type\":null}",
        "{\"type\":1}",
        "{\"type\":[\"heartbeat\"]}",
        "{\"type\":{\"heartbeat\":1}}",
        "{\"type\":true}",
        "{\"type\":\"a\",\"type\":\"b\"}", /* duplicate keys */
        "{\"type\":\"\xff\"}",
        "{\"type\":\"\xed\xa0\x80\"}",
        "{\"type\":\"a\\u0000b\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct client_msg m;
        const char *reason = NULL;
        ck_assert_msg(parse(bad[i], &m, &reason) == -1, "accepted %s", bad[i]);
        ck_assert_msg(reason != NULL && *reason, "no reason for %s", bad[i]);
        ck_assert_ptr_null(m.body);
        client_msg_clear(&m);
    }
}
END_TEST

START_TEST(parse_reasons)
{
    struct client_msg m;
    const char *reason = NULL;
    ck_assert_int_eq(parse("nope", &m, &reason), -1);
    ck_assert_str_eq(reason, "message is not valid JSON");
    ck_assert_int_eq(parse("[1]", &m, &reason), -1);
    ck_assert_str_eq(reason, "message is not a JSON object");
    ck_assert_int_eq(parse("{\"type\":2}", &m, &reason), -1);
    ck_assert_str_eq(reason, "message has no string \"type\"");
}
END_TEST

START_TEST(parse_length_bounds)
{
    /* the length decides: no NUL needed, bytes past it are not read */
    const char *s = "{\"type\":\"heartbeat\"}garbage";
    struct client_msg m;
    const char *reason = NULL;
    ck_assert_int_eq(envelope_parse_client(s, 20, &m, &reason), 0);
    ck_assert_str_eq(m.type, "heartbeat");
    client_msg_clear(&m);
    ck_assert_int_eq(envelope_parse_client(s, 19, &m, &reason), -1);
    ck_assert_int_eq(envelope_parse_client(s, 0, &m, &reason), -1);
    ck_assert_int_eq(envelope_parse_client("{\"type\":\"x\"}\0", 13, &m, &reason), -1);
}
END_TEST

static Suite *envelope_suite(void)
{
    Suite *s = suite_create("envelope");
    TCase *build = tcase_create("build");
    tcase_add_test(build, build_basic);
    tcase_add_test(build, build_escapes);
    tcase_add_test(build, build_invalid_utf8);
    suite_add_tcase(s, build);
    TCase *p = tcase_create("parse");
    tcase_add_test(p, parse_heartbeat);
    tcase_add_test(p, parse_with_body);
    tcase_add_test(p, parse_type_truncated);
    tcase_add_test(p, parse_bad);
    tcase_add_test(p, parse_reasons);
    tcase_add_test(p, parse_length_bounds);
    suite_add_tcase(s, p);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(envelope_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
