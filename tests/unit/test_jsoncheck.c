/* Unit tests of common/jsoncheck: the validator run on every producer
 * payload before it is forwarded. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsoncheck.h"

/* Checks a NUL-terminated literal (the NUL is not part of the input). */
static int ok(const char *s)
{
    const char *reason = "unset";
    int r = jsoncheck_object(s, strlen(s), &reason);
    if (r)
        ck_assert_msg(reason == NULL, "reason must be NULL on success for %s", s);
    else
        ck_assert_msg(reason != NULL, "reason must be set on failure for %s", s);
    return r;
}

static int okn(const char *s, size_t len)
{
    const char *reason = NULL;
    int r = jsoncheck_object(s, len, &reason);
    if (!r)
        ck_assert_ptr_nonnull(reason);
    return r;
}

#define ACCEPT(s) ck_assert_msg(ok(s) == 1, "should accept: %s", s)
#define REJECT(s) ck_assert_msg(ok(s) == 0, "should reject: %s", s)

static const char *reason_of(const char *s)
{
    const char *reason = NULL;
    ck_assert_int_eq(jsoncheck_object(s, strlen(s), &reason), 0);
    ck_assert_ptr_nonnull(reason);
    return reason;
}

START_TEST(objects_accepted)
{
    ACCEPT("{}");
    ACCEPT("{ }");
    ACCEPT(" \t\r\n{}\n\r\t ");
    ACCEPT("{\"a\":1}");
    ACCEPT("{\"\":\"\"}");
    ACCEPT("{\"type\":\"x\",\"content\":{\"body\":\"b\",\"meta_data\":\"{}\"}}");
    ACCEPT("{ \"a\" : [ 1 , 2 , { } , [ ] ] , \"b\" : null , \"c\" : true , \"d\" : false }");
    ACCEPT("{\"a\":{\"b\":{\"c\":{\"d\":[[[]]]}}}}");
    ACCEPT("{\"dup\":1,\"dup\":2}");
    ACCEPT("{\"a\":\"\x7f\"}");
}
END_TEST

START_TEST(non_objects_rejected)
{
    REJECT("");
    REJECT("   ");
    REJECT("[]");
    REJECT("[{}]");
    REJECT("\"{}\"");
    REJECT("1");
    REJECT("-1");
    REJECT("true");
    REJECT("false");
    REJECT("null");
    REJECT("}");
    REJECT("x{}");
    ck_assert_str_eq(reason_of("[]"), "not a JSON object");
    ck_assert_str_eq(reason_of(""), "not a JSON object");
}
END_TEST

START_TEST(reason_may_be_null)
{
    ck_assert_int_eq(jsoncheck_object("{}", 2, NULL), 1);
    ck_assert_int_eq(jsoncheck_object("[]", 2, NULL), 0);
    ck_assert_int_eq(jsoncheck_object("", 0, NULL), 0);
}
END_TEST

START_TEST(truncated_rejected)
{
    REJECT("{");
    REJECT("{\"");
    REJECT("{\"a");
    REJECT("{\"a\"");
    REJECT("{\"a\":");
    REJECT("{\"a\":1");
    REJECT("{\"a\":1,");
    REJECT("{\"a\":[");
    REJECT("{\"a\":[1");
    REJECT("{\"a\":[1,");
    REJECT("{\"a\":\"x");
    REJECT("{\"a\":\"x\\");
    REJECT("{\"a\":\"\\u12");
    REJECT("{\"a\":tru");
    REJECT("{\"a\":nul");
    REJECT("{\"a\":fals");
    REJECT("{\"a\":{}");
    /* Every proper prefix of a valid object is invalid. */
    const char *full = "{\"k\":[1,-2.5e+3,\"s\\n\\u00e9\xc3\xa9\",true,false,null,{\"x\":{}}]}";
    size_t n = strlen(full);
    ck_assert_int_eq(okn(full, n), 1);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(okn(full, i) == 0, "prefix of length %zu accepted", i);
}
END_TEST

START_TEST(trailing_garbage_rejected)
{
    REJECT("{}}");
    REJECT("{}{}");
    REJECT("{} x");
    REJECT("{},");
    REJECT("{}\x01");
    REJECT("{} []");
    ck_assert_str_eq(reason_of("{} 1"), "trailing bytes after the object");
    /* An embedded NUL is a trailing byte, not an end of input. */
    ck_assert_int_eq(okn("{}\0", 3), 0);
    ck_assert_int_eq(okn("{}\0garbage", 10), 0);
    /* Length bounds the input: bytes beyond it are not read. */
    ck_assert_int_eq(okn("{}garbage", 2), 1);
}
END_TEST

START_TEST(structure_errors_rejected)
{
    REJECT("{a:1}");
    REJECT("{'a':1}");
    REJECT("{\"a\" 1}");
    REJECT("{\"a\"::1}");
    REJECT("{\"a\":1,}");
    REJECT("{,}");
    REJECT("{,\"a\":1}");
    REJECT("{\"a\":1 \"b\":2}");
    REJECT("{\"a\":1;\"b\":2}");
    REJECT("{1:1}");
    REJECT("{null:1}");
    REJECT("{\"a\":[1,]}");
    REJECT("{\"a\":[,1]}");
    REJECT("{\"a\":[1 2]}");
    REJECT("{\"a\":[}");
    REJECT("{\"a\":{]}");
    REJECT("{\"a\":]}");
    REJECT("{\"a\"}");
    REJECT("{\"a\":}");
    REJECT("{\"a\":True}");
    REJECT("{\"a\":NULL}");
    REJECT("{\"a\":nulll}");
    REJECT("{\"a\":undefined}");
    REJECT("{\"a\":NaN}");
    REJECT("{\"a\":Infinity}");
    REJECT("{\"a\":'x'}");
    REJECT("{\"a\":1}\xef\xbb\xbf");
    REJECT("\xef\xbb\xbf{\"a\":1}"); /* a BOM is not JSON whitespace */
    REJECT("{\"a\":\f1}");           /* nor is form feed */
    REJECT("\v{}");
}
END_TEST

START_TEST(numbers)
{
    ACCEPT("{\"n\":0}");
    ACCEPT("{\"n\":-0}");
    ACCEPT("{\"n\":123}");
    ACCEPT("{\"n\":-123}");
    ACCEPT("{\"n\":0.5}");
    ACCEPT("{\"n\":-0.5}");
    ACCEPT("{\"n\":1e5}");
    ACCEPT("{\"n\":1E5}");
    ACCEPT("{\"n\":1e+5}");
    ACCEPT("{\"n\":1e-5}");
    ACCEPT("{\"n\":1.25e-5}");
    ACCEPT("{\"n\":123456789012345678901234567890}");
    ACCEPT("{\"n\":[0,1,-1,0.0,1e0]}");
    REJECT("{\"n\":01}");
    REJECT("{\"n\":-01}");
    REJECT("{\"n\":00}");
    REJECT("{\"n\":+1}");
    REJECT("{\"n\":-}");
    REJECT("{\"n\":--1}");
    REJECT("{\"n\":.5}");
    REJECT("{\"n\":1.}");
    REJECT("{\"n\":1.e5}");
    REJECT("{\"n\":1e}");
    REJECT("{\"n\":1e+}");
    REJECT("{\"n\":1e-}");
    REJECT("{\"n\":1e5.5}");
    REJECT("{\"n\":0x10}");
    REJECT("{\"n\":1_000}");
    REJECT("{\"n\":- 1}");
    REJECT("{\"n\":1..2}");
    ck_assert_str_eq(reason_of("{\"n\":-}"), "bad number");
}
END_TEST

START_TEST(strings_and_escapes)
{
    ACCEPT("{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}");
    ACCEPT("{\"s\":\"\\u0000\"}");
    ACCEPT("{\"s\":\"\\u00e9\\u00E9\\uFFFF\\uabcd\"}");
    ACCEPT("{\"s\":\"\\ud83d\\ude00\"}"); /* escaped surrogate pair */
    ACCEPT("{\"\\u0041\":\"key with escape\"}");
    ACCEPT("{\"s\":\"a\\\\\"}");
    ACCEPT("{\"s\":\"'single' quotes\"}");
    REJECT("{\"s\":\"\\x41\"}");
    REJECT("{\"s\":\"\\a\"}");
    REJECT("{\"s\":\"\\U0041\"}");
    REJECT("{\"s\":\"\\u004\"}");
    REJECT("{\"s\":\"\\u004g\"}");
    REJECT("{\"s\":\"\\uXYZW\"}");
    REJECT("{\"s\":\"\\u\"}");
    REJECT("{\"s\":\"\\'\"}");
    REJECT("{\"s\":\"\\0\"}");
    REJECT("{\"s\":\"\\\"}");
    REJECT("{\"s\":\"\\ \"}");
    ck_assert_str_eq(reason_of("{\"s\":\"\\q\"}"), "bad escape");
    ck_assert_str_eq(reason_of("{\"s\":\"\\u12\"}"), "bad \\u escape");
    ck_assert_str_eq(reason_of("{\"s\":\"abc"), "unterminated string");
}
END_TEST

START_TEST(control_characters_rejected)
{
    char buf[16];
    for (int c = 1; c < 0x20; c++) {
        snprintf(buf, sizeof(buf), "{\"s\":\"%c\"}", c);
        ck_assert_msg(ok(buf) == 0, "control 0x%02x accepted in a string", c);
        snprintf(buf, sizeof(buf), "{\"%c\":1}", c);
        ck_assert_msg(ok(buf) == 0, "control 0x%02x accepted in a key", c);
    }
    ck_assert_int_eq(okn("{\"s\":\"\0\"}", 9), 0);
    ck_assert_str_eq(reason_of("{\"s\":\"a\nb\"}"), "control character in string");
}
END_TEST

START_TEST(utf8_in_strings)
{
    ACCEPT("{\"s\":\"caf\xc3\xa9\"}");                        /* U+00E9 */
    ACCEPT("{\"s\":\"\xe2\x82\xac\"}");                       /* U+20AC */
    ACCEPT("{\"s\":\"\xf0\x9f\x98\x80\"}");                   /* U+1F600 */
    ACCEPT("{\"s\":\"\xf4\x8f\xbf\xbf\"}");                   /* U+10FFFF */
    ACCEPT("{\"s\":\"\xed\x9f\xbf\"}");                       /* U+D7FF */
    ACCEPT("{\"s\":\"\xee\x80\x80\"}");                       /* U+E000 */
    ACCEPT("{\"\xc3\xa9\":\"key\"}");                         /* UTF-8 in a key */
    ACCEPT("{\"s\":\"\xc3\xa9\\n\xc3\xa9\\u0041\xc3\xa9\"}"); /* around escapes */
    REJECT("{\"s\":\"\xff\"}");
    REJECT("{\"s\":\"\xfe\"}");
    REJECT("{\"s\":\"\x80\"}"); /* lone continuation */
    REJECT("{\"s\":\"\xbf\"}");
    REJECT("{\"s\":\"\xc3\"}");                     /* truncated 2-byte */
    REJECT("{\"s\":\"\xe2\x82\"}");                 /* truncated 3-byte */
    REJECT("{\"s\":\"\xf0\x9f\x98\"}");             /* truncated 4-byte */
    REJECT("{\"s\":\"\xc3\\n\"}");                  /* truncated before an escape */
    REJECT("{\"s\":\"\xc3(\"}");                    /* bad continuation */
    REJECT("{\"s\":\"\xc0\xaf\"}");                 /* overlong '/' */
    REJECT("{\"s\":\"\xc1\xbf\"}");                 /* overlong 2-byte */
    REJECT("{\"s\":\"\xe0\x80\xaf\"}");             /* overlong 3-byte */
    REJECT("{\"s\":\"\xe0\x9f\xbf\"}");             /* overlong U+07FF */
    REJECT("{\"s\":\"\xf0\x80\x80\xaf\"}");         /* overlong 4-byte */
    REJECT("{\"s\":\"\xf0\x8f\xbf\xbf\"}");         /* overlong U+FFFF */
    REJECT("{\"s\":\"\xed\xa0\x80\"}");             /* surrogate U+D800 */
    REJECT("{\"s\":\"\xed\xbf\xbf\"}");             /* surrogate U+DFFF */
    REJECT("{\"s\":\"\xed\xa0\xbd\xed\xb8\x80\"}"); /* CESU-8 pair */
    REJECT("{\"s\":\"\xf4\x90\x80\x80\"}");         /* U+110000 */
    REJECT("{\"s\":\"\xf5\x80\x80\x80\"}");
    REJECT("{\"s\":\"\xf8\x88\x80\x80\x80\"}"); /* 5-byte form */
    REJECT("{\"\xff\":1}");                     /* in a key */
    ck_assert_str_eq(reason_of("{\"s\":\"\xed\xa0\x80\"}"), "invalid UTF-8 in string");
    /* Raw non-ASCII bytes outside strings are never valid. */
    REJECT("{\xc3\xa9:1}");
    REJECT("{\"a\":\xc3\xa9}");
}
END_TEST

/* Builds depth levels of nesting: an object at the top, alternating arrays
 * and objects below it. */
static char *nest(int depth)
{
    size_t cap = (size_t)depth * 8 + 16;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    size_t n = 0;
    for (int i = 0; i < depth; i++) {
        if (i % 2 == 0) {
            memcpy(buf + n, "{\"k\":", 5);
            n += 5;
        } else {
            buf[n++] = '[';
        }
    }
    buf[n++] = '1';
    for (int i = depth - 1; i >= 0; i--)
        buf[n++] = i % 2 == 0 ? '}' : ']';
    buf[n] = '\0';
    return buf;
}

START_TEST(depth_limit)
{
    for (int d = 1; d <= JSONCHECK_MAX_DEPTH; d++) {
        char *s = nest(d);
        ck_assert_msg(ok(s) == 1, "depth %d rejected", d);
        free(s);
    }
    char *s = nest(JSONCHECK_MAX_DEPTH + 1);
    ck_assert_int_eq(ok(s), 0);
    ck_assert_str_eq(reason_of(s), "nested too deeply");
    free(s);
    /* Far beyond the limit (no stack exhaustion: fails early). */
    size_t n = 200000;
    char *deep = malloc(n + 8);
    ck_assert_ptr_nonnull(deep);
    deep[0] = '{';
    memcpy(deep + 1, "\"a\":", 4);
    memset(deep + 5, '[', n);
    ck_assert_int_eq(okn(deep, n + 5), 0);
    free(deep);
}
END_TEST

START_TEST(depth_limit_arrays_and_empty)
{
    /* {"a":[[[...[]...]]]} with 64 levels in total is fine, 65 is not. */
    char buf[256];
    for (int extra = 0; extra <= 1; extra++) {
        int arrays = JSONCHECK_MAX_DEPTH - 1 + extra;
        size_t n = 0;
        n += (size_t)snprintf(buf, sizeof(buf), "{\"a\":");
        for (int i = 0; i < arrays; i++)
            buf[n++] = '[';
        for (int i = 0; i < arrays; i++)
            buf[n++] = ']';
        buf[n++] = '}';
        buf[n] = '\0';
        ck_assert_int_eq(ok(buf), extra ? 0 : 1);
    }
}
END_TEST

START_TEST(long_strings)
{
    size_t n = 100000;
    char *buf = malloc(n + 16);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, "{\"s\":\"", 6);
    for (size_t i = 0; i < n; i += 2)
        memcpy(buf + 6 + i, "\xc3\xa9", 2);
    memcpy(buf + 6 + n, "\"}", 2);
    ck_assert_int_eq(okn(buf, n + 8), 1);
    buf[6 + n - 1] = '\xc3'; /* corrupt the last sequence */
    ck_assert_int_eq(okn(buf, n + 8), 0);
    free(buf);
}
END_TEST

static Suite *jsoncheck_suite(void)
{
    Suite *s = suite_create("jsoncheck");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, objects_accepted);
    tcase_add_test(tc, non_objects_rejected);
    tcase_add_test(tc, reason_may_be_null);
    tcase_add_test(tc, truncated_rejected);
    tcase_add_test(tc, trailing_garbage_rejected);
    tcase_add_test(tc, structure_errors_rejected);
    tcase_add_test(tc, numbers);
    tcase_add_test(tc, strings_and_escapes);
    tcase_add_test(tc, control_characters_rejected);
    tcase_add_test(tc, utf8_in_strings);
    tcase_add_test(tc, depth_limit);
    tcase_add_test(tc, depth_limit_arrays_and_empty);
    tcase_add_test(tc, long_strings);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(jsoncheck_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
