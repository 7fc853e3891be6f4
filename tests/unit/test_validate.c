/* Unit tests of common/validate: account ids, UTF-8 and stream ids. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

#define ACCOUNT(s) validate_account_id(s, strlen(s))
#define UTF8(s) validate_utf8(s, sizeof(s) - 1)
#define STREAM(s) validate_stream_id(s, strlen(s))

START_TEST(account_ids_good)
{
    ck_assert_int_eq(ACCOUNT("u42"), 1);
    ck_assert_int_eq(ACCOUNT("a"), 1);
    ck_assert_int_eq(ACCOUNT("0"), 1);
    ck_assert_int_eq(ACCOUNT("ABCxyz019"), 1);
    ck_assert_int_eq(ACCOUNT("user@example.com"), 1);
    ck_assert_int_eq(ACCOUNT("tenant:user-1_a.b"), 1);
    ck_assert_int_eq(ACCOUNT("_"), 1);
    ck_assert_int_eq(ACCOUNT("."), 1);
    ck_assert_int_eq(ACCOUNT("@"), 1);
    ck_assert_int_eq(ACCOUNT(":"), 1);
    ck_assert_int_eq(ACCOUNT("-"), 1);
    ck_assert_int_eq(ACCOUNT("_.@:-"), 1);
}
END_TEST

START_TEST(account_ids_length)
{
    char buf[ACCOUNT_ID_MAX + 2];
    memset(buf, 'a', sizeof(buf));
    ck_assert_int_eq(ACCOUNT_ID_MAX, 128);
    ck_assert_int_eq(validate_account_id(buf, 0), 0);
    ck_assert_int_eq(validate_account_id(buf, 1), 1);
    ck_assert_int_eq(validate_account_id(buf, 127), 1);
    ck_assert_int_eq(validate_account_id(buf, 128), 1);
    ck_assert_int_eq(validate_account_id(buf, 129), 0);
    ck_assert_int_eq(validate_account_id(buf, 130), 0);
    ck_assert_int_eq(validate_account_id("", 0), 0);
}
END_TEST

START_TEST(account_ids_bad_characters)
{
    static const char *bad[] = {
        "a b", " a",   "a ",    "a/b",  "/",    "a{b",         "a}b",  "{u42}", "a*b",
        "a?b", "a#b",  "a%20b", "a+b",  "a=b",  "a&b",         "a,b",  "a;b",   "a\"b",
        "a'b", "a\\b", "a\tb",  "a\nb", "a\rb", "caf\xc3\xa9", "\xff", "a~b",   "a!b",
        "a$b", "a(b)", "a[b]",  "a|b",  "a<b>", "a^b",         "a`b",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(ACCOUNT(bad[i]) == 0, "accepted %s", bad[i]);
    /* Every byte outside [A-Za-z0-9_.@:-] is rejected, anywhere. */
    for (int c = 0; c < 256; c++) {
        int allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.' || c == '@' || c == ':' || c == '-';
        char s[3] = {'a', (char)c, 'b'};
        ck_assert_msg(validate_account_id(s, 3) == allowed, "byte 0x%02x", c);
        ck_assert_msg(validate_account_id(s + 1, 1) == allowed, "byte 0x%02x alone", c);
    }
    /* No reliance on NUL termination: the length decides. */
    ck_assert_int_eq(validate_account_id("abc def", 3), 1);
    ck_assert_int_eq(validate_account_id("abc\0def", 7), 0);
}
END_TEST

START_TEST(utf8_good)
{
    ck_assert_int_eq(validate_utf8("", 0), 1);
    ck_assert_int_eq(validate_utf8(NULL, 0), 1);
    ck_assert_int_eq(UTF8("plain ascii"), 1);
    ck_assert_int_eq(UTF8("\0"), 1); /* NUL is valid UTF-8 */
    ck_assert_int_eq(UTF8("\x7f"), 1);
    ck_assert_int_eq(UTF8("\xc2\x80"), 1);         /* U+0080 */
    ck_assert_int_eq(UTF8("\xdf\xbf"), 1);         /* U+07FF */
    ck_assert_int_eq(UTF8("\xe0\xa0\x80"), 1);     /* U+0800 */
    ck_assert_int_eq(UTF8("\xed\x9f\xbf"), 1);     /* U+D7FF */
    ck_assert_int_eq(UTF8("\xee\x80\x80"), 1);     /* U+E000 */
    ck_assert_int_eq(UTF8("\xef\xbf\xbf"), 1);     /* U+FFFF */
    ck_assert_int_eq(UTF8("\xef\xbb\xbf"), 1);     /* BOM */
    ck_assert_int_eq(UTF8("\xf0\x90\x80\x80"), 1); /* U+10000 */
    ck_assert_int_eq(UTF8("\xf4\x8f\xbf\xbf"), 1); /* U+10FFFF */
    ck_assert_int_eq(UTF8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80!"), 1);
}
END_TEST

START_TEST(utf8_bad)
{
    ck_assert_int_eq(UTF8("\x80"), 0); /* lone continuation */
    ck_assert_int_eq(UTF8("\xbf"), 0);
    ck_assert_int_eq(UTF8("a\x80z"), 0);
    ck_assert_int_eq(UTF8("\xc0\x80"), 0);         /* overlong NUL */
    ck_assert_int_eq(UTF8("\xc1\xbf"), 0);         /* overlong U+007F */
    ck_assert_int_eq(UTF8("\xe0\x80\x80"), 0);     /* overlong 3-byte */
    ck_assert_int_eq(UTF8("\xe0\x9f\xbf"), 0);     /* overlong U+07FF */
    ck_assert_int_eq(UTF8("\xf0\x80\x80\x80"), 0); /* overlong 4-byte */
    ck_assert_int_eq(UTF8("\xf0\x8f\xbf\xbf"), 0); /* overlong U+FFFF */
    ck_assert_int_eq(UTF8("\xed\xa0\x80"), 0);     /* U+D800 */
    ck_assert_int_eq(UTF8("\xed\xaf\xbf"), 0);     /* U+DBFF */
    ck_assert_int_eq(UTF8("\xed\xb0\x80"), 0);     /* U+DC00 */
    ck_assert_int_eq(UTF8("\xed\xbf\xbf"), 0);     /* U+DFFF */
    ck_assert_int_eq(UTF8("\xf4\x90\x80\x80"), 0); /* U+110000 */
    ck_assert_int_eq(UTF8("\xf4\xbf\xbf\xbf"), 0);
    ck_assert_int_eq(UTF8("\xf5\x80\x80\x80"), 0);
    ck_assert_int_eq(UTF8("\xf7\xbf\xbf\xbf"), 0);
    ck_assert_int_eq(UTF8("\xf8\x88\x80\x80\x80"), 0); /* 5-byte */
    ck_assert_int_eq(UTF8("\xfc\x84\x80\x80\x80\x80"), 0);
    ck_assert_int_eq(UTF8("\xfe"), 0);
    ck_assert_int_eq(UTF8("\xff"), 0);
    ck_assert_int_eq(UTF8("\xc3"), 0); /* truncated */
    ck_assert_int_eq(UTF8("\xe2\x82"), 0);
    ck_assert_int_eq(UTF8("\xf0\x9f\x98"), 0);
    ck_assert_int_eq(UTF8("\xc3("), 0); /* bad continuation */
    ck_assert_int_eq(UTF8("\xe2(\xac"), 0);
    ck_assert_int_eq(UTF8("\xe2\x82("), 0);
    ck_assert_int_eq(UTF8("\xf0\x9f\x98("), 0);
    ck_assert_int_eq(UTF8("\xc3\xa9\xc3"), 0);
}
END_TEST

START_TEST(utf8_length_bounds)
{
    /* A sequence cut by len is invalid even when the buffer goes on. */
    const char *s = "\xe2\x82\xac";
    ck_assert_int_eq(validate_utf8(s, 3), 1);
    ck_assert_int_eq(validate_utf8(s, 2), 0);
    ck_assert_int_eq(validate_utf8(s, 1), 0);
    ck_assert_int_eq(validate_utf8(s, 0), 1);
    const char *four = "\xf0\x9f\x98\x80";
    for (size_t i = 1; i < 4; i++)
        ck_assert_int_eq(validate_utf8(four, i), 0);
    ck_assert_int_eq(validate_utf8(four, 4), 1);
}
END_TEST

START_TEST(utf8_partial_pieces)
{
    ck_assert_int_eq(validate_utf8_partial("", 0), 0);
    ck_assert_int_eq(validate_utf8_partial("ab\xc3\xa9", 4), 0);
    ck_assert_int_eq(validate_utf8_partial("ab\xc3", 3), 1);
    ck_assert_int_eq(validate_utf8_partial("\xe2\x82", 2), 2);
    ck_assert_int_eq(validate_utf8_partial("\xf0\x9f\x98", 3), 3);
    ck_assert_int_eq(validate_utf8_partial("\xf4", 1), 1);
    /* refused before the rest comes: U+110000 and up, a surrogate, an
     * overlong form, a lead byte that starts nothing, a bad continuation */
    ck_assert_int_eq(validate_utf8_partial("\xce\xba\xf4\x90", 4), -1);
    ck_assert_int_eq(validate_utf8_partial("\xed\xa0", 2), -1);
    ck_assert_int_eq(validate_utf8_partial("\xe0\x9f", 2), -1);
    ck_assert_int_eq(validate_utf8_partial("\xf0\x8f", 2), -1);
    ck_assert_int_eq(validate_utf8_partial("a\xc0", 2), -1);
    ck_assert_int_eq(validate_utf8_partial("a\xff", 2), -1);
    ck_assert_int_eq(validate_utf8_partial("\xe2(", 2), -1);
    ck_assert_int_eq(validate_utf8_partial("\xe2\x82\xac\x80", 4), -1);
}
END_TEST

START_TEST(utf8_partial_exhaustive)
{
    /* A two-byte piece that starts with a lead byte is accepted exactly
     * when some continuation of up to two bytes makes it well-formed. */
    for (int a = 0xC0; a < 0x100; a++)
        for (int b = 0; b < 0x100; b++) {
            char s[4] = {(char)a, (char)b};
            int completable = validate_utf8(s, 2);
            for (int c = 0x80; c < 0xC0 && !completable; c++) {
                s[2] = (char)c;
                completable = validate_utf8(s, 3);
                for (int d = 0x80; d < 0xC0 && !completable; d++) {
                    s[3] = (char)d;
                    completable = validate_utf8(s, 4);
                }
            }
            int r = validate_utf8_partial(s, 2);
            ck_assert_msg((r >= 0) == completable, "%02x %02x: %d, completable %d", a, b, r,
                          completable);
            ck_assert_msg(r != 0 || validate_utf8(s, 2), "%02x %02x: 0 but not whole", a, b);
        }
}
END_TEST

START_TEST(utf8_exhaustive_two_and_three_bytes)
{
    /* Every 2- and 3-byte sequence agrees with a reference decoder. */
    for (int a = 0x80; a < 0x100; a++)
        for (int b = 0; b < 0x100; b++) {
            unsigned char s[2] = {(unsigned char)a, (unsigned char)b};
            int expect = a >= 0xc2 && a <= 0xdf && (b & 0xc0) == 0x80;
            ck_assert_msg(validate_utf8((const char *)s, 2) == expect, "%02x %02x", a, b);
        }
    for (int a = 0xe0; a < 0xf0; a++)
        for (int b = 0x80; b < 0xc0; b++)
            for (int c = 0x80; c < 0xc0; c++) {
                unsigned char s[3] = {(unsigned char)a, (unsigned char)b, (unsigned char)c};
                unsigned cp = ((unsigned)(a & 0x0f) << 12) | ((unsigned)(b & 0x3f) << 6) |
                              (unsigned)(c & 0x3f);
                int expect = cp >= 0x800 && !(cp >= 0xd800 && cp <= 0xdfff);
                ck_assert_msg(validate_utf8((const char *)s, 3) == expect, "%02x %02x %02x", a, b,
                              c);
            }
}
END_TEST

START_TEST(stream_ids_good)
{
    ck_assert_int_eq(STREAM("0-0"), 1);
    ck_assert_int_eq(STREAM("0-1"), 1);
    ck_assert_int_eq(STREAM("1700000000000-0"), 1);
    ck_assert_int_eq(STREAM("1700000000000-42"), 1);
    ck_assert_int_eq(STREAM("18446744073709551615-18446744073709551615"), 1); /* 41 bytes */
    ck_assert_int_eq(STREAM("18446744073709551615-0"), 1);
}
END_TEST

START_TEST(stream_ids_bad)
{
    static const char *bad[] = {
        "",
        "-",
        "0",
        "1700000000000",
        "1700000000000-",
        "-0",
        "-1-0",
        "1--0",
        "1-0-0",
        "1-0 ",
        " 1-0",
        "+1-0",
        "1-+0",
        "1-a",
        "a-1",
        "0x10-0",
        "1.5-0",
        "1-0\n",
        "$",
        ">",
        "*",
        "1-*",
        "18446744073709551616-0", /* ms overflows */
        "0-18446744073709551616", /* seq overflows */
        "99999999999999999999-0",
        "184467440737095516150-0",
        "18446744073709551615-184467440737095516150", /* 42 bytes */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(STREAM(bad[i]) == 0, "accepted '%s'", bad[i]);
    /* The length decides, not a NUL. */
    ck_assert_int_eq(validate_stream_id("1-2xyz", 3), 1);
    ck_assert_int_eq(validate_stream_id("1-2xyz", 4), 0);
    ck_assert_int_eq(validate_stream_id("1-2\0", 4), 0);
    ck_assert_int_eq(validate_stream_id("1-2", 2), 0);
}
END_TEST

static Suite *validate_suite(void)
{
    Suite *s = suite_create("validate");
    TCase *acct = tcase_create("account");
    tcase_add_test(acct, account_ids_good);
    tcase_add_test(acct, account_ids_length);
    tcase_add_test(acct, account_ids_bad_characters);
    suite_add_tcase(s, acct);
    TCase *utf8 = tcase_create("utf8");
    tcase_add_test(utf8, utf8_good);
    tcase_add_test(utf8, utf8_bad);
    tcase_add_test(utf8, utf8_length_bounds);
    tcase_add_test(utf8, utf8_exhaustive_two_and_three_bytes);
    tcase_add_test(utf8, utf8_partial_pieces);
    tcase_add_test(utf8, utf8_partial_exhaustive);
    suite_add_tcase(s, utf8);
    TCase *stream = tcase_create("stream");
    tcase_add_test(stream, stream_ids_good);
    tcase_add_test(stream, stream_ids_bad);
    suite_add_tcase(s, stream);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(validate_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
