/* Unit tests of common/rnames: the Redis names of README.md "Publishing" and "Presence". */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "rnames.h"

START_TEST(names)
{
    char buf[RNAME_MAX];
    ck_assert_int_eq(rnames_account_channel(buf, sizeof(buf), "notify:", "u42"), 17);
    ck_assert_str_eq(buf, "notify:acct:{u42}");
    ck_assert_int_eq(rnames_broadcast_channel(buf, sizeof(buf), "notify:"), 16);
    ck_assert_str_eq(buf, "notify:broadcast");
    ck_assert_int_eq(rnames_presence(buf, sizeof(buf), "notify:", "u42"), 21);
    ck_assert_str_eq(buf, "notify:presence:{u42}");
    ck_assert_int_eq(rnames_stream(buf, sizeof(buf), "notify:", "u42"), 19);
    ck_assert_str_eq(buf, "notify:stream:{u42}");
    ck_assert_int_eq(rnames_nodes(buf, sizeof(buf), "notify:"), 12);
    ck_assert_str_eq(buf, "notify:nodes");
    ck_assert_int_eq(rnames_node(buf, sizeof(buf), "notify:", "host-8080"), 21);
    ck_assert_str_eq(buf, "notify:node:host-8080");
}
END_TEST

START_TEST(other_prefix)
{
    char buf[RNAME_MAX];
    ck_assert_int_eq(rnames_account_channel(buf, sizeof(buf), "app1:", "user@example.com"), 28);
    ck_assert_str_eq(buf, "app1:acct:{user@example.com}");
    rnames_presence(buf, sizeof(buf), "x", "a");
    ck_assert_str_eq(buf, "xpresence:{a}");
    rnames_broadcast_channel(buf, sizeof(buf), "p.");
    ck_assert_str_eq(buf, "p.broadcast");
}
END_TEST

START_TEST(longest_account_fits)
{
    char acct[129], buf[RNAME_MAX];
    memset(acct, 'a', 128);
    acct[128] = '\0';
    int n = rnames_presence(buf, sizeof(buf), "notify:", acct);
    ck_assert_int_eq(n, 7 + 10 + 128 + 1);
    ck_assert_uint_eq(strlen(buf), (size_t)n);
}
END_TEST

START_TEST(does_not_fit)
{
    char buf[RNAME_MAX];
    /* "notify:acct:{u42}" is 17 bytes: needs 18 with the NUL */
    ck_assert_int_eq(rnames_account_channel(buf, 17, "notify:", "u42"), -1);
    ck_assert_int_eq(rnames_account_channel(buf, 18, "notify:", "u42"), 17);
    ck_assert_str_eq(buf, "notify:acct:{u42}");
    ck_assert_int_eq(rnames_broadcast_channel(buf, 16, "notify:"), -1);
    ck_assert_int_eq(rnames_broadcast_channel(buf, 17, "notify:"), 16);
    ck_assert_int_eq(rnames_presence(buf, 21, "notify:", "u42"), -1);
    ck_assert_int_eq(rnames_presence(buf, 22, "notify:", "u42"), 21);
    ck_assert_int_eq(rnames_stream(buf, 19, "notify:", "u42"), -1);
    ck_assert_int_eq(rnames_stream(buf, 20, "notify:", "u42"), 19);
    ck_assert_int_eq(rnames_nodes(buf, 12, "notify:"), -1);
    ck_assert_int_eq(rnames_nodes(buf, 13, "notify:"), 12);
    ck_assert_int_eq(rnames_node(buf, 21, "notify:", "host-8080"), -1);
    ck_assert_int_eq(rnames_node(buf, 22, "notify:", "host-8080"), 21);
    ck_assert_int_eq(rnames_nodes(buf, 0, "notify:"), -1);
}
END_TEST

static int parse(const char *channel, const char *prefix, const char **acct, size_t *len)
{
    return rnames_parse_account_channel(channel, strlen(channel), prefix, acct, len);
}

START_TEST(parse_account_channel)
{
    const char *acct = NULL;
    size_t len = 0;
    const char *ch = "notify:acct:{u42}";
    ck_assert_int_eq(parse(ch, "notify:", &acct, &len), 1);
    ck_assert_uint_eq(len, 3);
    ck_assert_ptr_eq(acct, ch + 13);
    ck_assert_int_eq(memcmp(acct, "u42", 3), 0);
    ck_assert_int_eq(parse("p:acct:{a}", "p:", &acct, &len), 1);
    ck_assert_uint_eq(len, 1);
    ck_assert_int_eq(acct[0], 'a');
    /* round trip with the builder */
    char buf[RNAME_MAX];
    int n = rnames_account_channel(buf, sizeof(buf), "notify:", "user@example.com");
    ck_assert_int_eq(rnames_parse_account_channel(buf, (size_t)n, "notify:", &acct, &len), 1);
    ck_assert_uint_eq(len, 16);
    ck_assert_int_eq(memcmp(acct, "user@example.com", 16), 0);
    /* the length decides, not a NUL */
    ck_assert_int_eq(
        rnames_parse_account_channel("notify:acct:{u42}xyz", 17, "notify:", &acct, &len), 1);
    ck_assert_uint_eq(len, 3);
}
END_TEST

START_TEST(parse_not_account_channel)
{
    const char *acct = NULL;
    size_t len = 0;
    static const char *bad[] = {
        "",
        "notify:",
        "notify:broadcast",
        "notify:acct:",
        "notify:acct:{",
        "notify:acct:{}",
        "notify:acct:u42",
        "notify:acct:{u42",
        "notify:acct:{u42}x",
        "notify:presence:{u42}",
        "notify:stream:{u42}",
        "other:acct:{u42}",
        "notify;acct:{u42}",
        "acct:{u42}",
        "NOTIFY:acct:{u42}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(parse(bad[i], "notify:", &acct, &len) == 0, "accepted '%s'", bad[i]);
    ck_assert_int_eq(rnames_parse_account_channel("notify:acct:{u42}", 16, "notify:", &acct, &len),
                     0);
}
END_TEST

START_TEST(presence_member)
{
    char buf[RNAME_MAX];
    ck_assert_int_eq(rnames_presence_member(buf, sizeof(buf), "host-8080", "c0a8017f-12"), 21);
    ck_assert_str_eq(buf, "host-8080/c0a8017f-12");
    /* "a/b" needs 4 bytes with the NUL */
    ck_assert_int_eq(rnames_presence_member(buf, 3, "a", "b"), -1);
    ck_assert_int_eq(rnames_presence_member(buf, 4, "a", "b"), 3);
    ck_assert_str_eq(buf, "a/b");
}
END_TEST

START_TEST(parse_presence_member)
{
    const char *node, *conn;
    size_t nlen, clen;
    char buf[RNAME_MAX];
    int n = rnames_presence_member(buf, sizeof(buf), "it-4000", "abc");
    ck_assert_int_eq(rnames_parse_presence_member(buf, (size_t)n, &node, &nlen, &conn, &clen), 1);
    ck_assert_ptr_eq(node, buf);
    ck_assert_uint_eq(nlen, 7);
    ck_assert_int_eq(memcmp(node, "it-4000", 7), 0);
    ck_assert_ptr_eq(conn, buf + 8);
    ck_assert_uint_eq(clen, 3);
    ck_assert_int_eq(memcmp(conn, "abc", 3), 0);
    /* the first '/' splits: a connection id is taken as it is */
    const char *m = "n/c/d";
    ck_assert_int_eq(rnames_parse_presence_member(m, 5, &node, &nlen, &conn, &clen), 1);
    ck_assert_uint_eq(nlen, 1);
    ck_assert_uint_eq(clen, 3);
    ck_assert_int_eq(memcmp(conn, "c/d", 3), 0);
    /* empty halves */
    ck_assert_int_eq(rnames_parse_presence_member("/x", 2, &node, &nlen, &conn, &clen), 1);
    ck_assert_uint_eq(nlen, 0);
    ck_assert_uint_eq(clen, 1);
    ck_assert_int_eq(rnames_parse_presence_member("x/", 2, &node, &nlen, &conn, &clen), 1);
    ck_assert_uint_eq(nlen, 1);
    ck_assert_uint_eq(clen, 0);
    /* no '/': all node, and the length decides, not a NUL */
    m = "node/conn";
    ck_assert_int_eq(rnames_parse_presence_member(m, 4, &node, &nlen, &conn, &clen), 0);
    ck_assert_uint_eq(nlen, 4);
    ck_assert_ptr_eq(conn, m + 4);
    ck_assert_uint_eq(clen, 0);
}
END_TEST

static Suite *rnames_suite(void)
{
    Suite *s = suite_create("rnames");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, names);
    tcase_add_test(tc, other_prefix);
    tcase_add_test(tc, longest_account_fits);
    tcase_add_test(tc, does_not_fit);
    tcase_add_test(tc, parse_account_channel);
    tcase_add_test(tc, parse_not_account_channel);
    tcase_add_test(tc, presence_member);
    tcase_add_test(tc, parse_presence_member);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(rnames_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
