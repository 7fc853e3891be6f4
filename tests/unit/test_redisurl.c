/* Unit tests of common/redisurl: redis://[user:password@]host:port[/db]. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redisurl.h"

static struct redis_url u;
static char err[128];

static int parse(const char *url)
{
    memset(&u, 0x5a, sizeof(u)); /* the parser must reset every field */
    err[0] = '\0';
    return redis_url_parse(url, &u, err, sizeof(err));
}

static void expect(const char *url, const char *host, int port, const char *user,
                   const char *password, int db)
{
    ck_assert_msg(parse(url) == 0, "%s rejected: %s", url, err);
    ck_assert_str_eq(u.host, host);
    ck_assert_int_eq(u.port, port);
    ck_assert_str_eq(u.user, user);
    ck_assert_str_eq(u.password, password);
    ck_assert_int_eq(u.db, db);
}

static void reject(const char *url)
{
    ck_assert_msg(parse(url) == -1, "%s accepted", url);
    ck_assert_msg(err[0] != '\0', "%s: no reason given", url);
}

START_TEST(plain)
{
    expect("redis://127.0.0.1:6379/0", "127.0.0.1", 6379, "", "", 0);
    expect("redis://127.0.0.1:6379", "127.0.0.1", 6379, "", "", 0);
    expect("redis://127.0.0.1:6379/", "127.0.0.1", 6379, "", "", 0);
    expect("redis://redis.internal:1", "redis.internal", 1, "", "", 0);
    expect("redis://h:65535/15", "h", 65535, "", "", 15);
    expect("redis://localhost:6380/1000000", "localhost", 6380, "", "", 1000000);
    expect("redis://h:06379/007", "h", 6379, "", "", 7);
}
END_TEST

START_TEST(credentials)
{
    expect("redis://user:password@h:6379/2", "h", 6379, "user", "password", 2);
    expect("redis://default:s3cr3t@10.0.0.5:6379", "10.0.0.5", 6379, "default", "s3cr3t", 0);
    /* password only: AUTH <password> */
    expect("redis://:pw@h:6379/0", "h", 6379, "", "pw", 0);
    expect("redis://:pw@h:6379", "h", 6379, "", "pw", 0);
    /* the password may hold ':' and '@' (the last '@' ends the credentials) */
    expect("redis://u:a:b@h:1", "h", 1, "u", "a:b", 0);
    expect("redis://u:p@ss@h:1/3", "h", 1, "u", "p@ss", 3);
    expect("redis://:@@h:1", "h", 1, "", "@", 0);
}
END_TEST

START_TEST(credentials_bad)
{
    reject("redis://user@h:6379"); /* no ':' between user and password */
    reject("redis://@h:6379");
    reject("redis://user:@h:6379"); /* empty password */
    reject("redis://:@h:6379");
    reject("redis://user:pw@"); /* nothing after the credentials */
    reject("redis://user:pw@h");
    reject("redis://user:pw@:6379");
}
END_TEST

START_TEST(credentials_length)
{
    char url[1024], user[200], pw[300];
    memset(user, 'u', sizeof(user));
    memset(pw, 'p', sizeof(pw));
    /* 127-byte user and 255-byte password fit */
    snprintf(url, sizeof(url), "redis://%.127s:%.255s@h:1", user, pw);
    ck_assert_int_eq(parse(url), 0);
    ck_assert_uint_eq(strlen(u.user), 127);
    ck_assert_uint_eq(strlen(u.password), 255);
    snprintf(url, sizeof(url), "redis://%.128s:pw@h:1", user);
    reject(url);
    snprintf(url, sizeof(url), "redis://u:%.256s@h:1", pw);
    reject(url);
}
END_TEST

START_TEST(host_and_port_bad)
{
    reject("");
    reject("redis://");
    reject("redis:/h:1");
    reject("REDIS://h:1");
    reject("rediss://h:1");
    reject("http://h:1");
    reject("h:6379");
    reject("redis://h");
    reject("redis://h/0");
    reject("redis://:6379");
    reject("redis://h:");
    reject("redis://h:/0");
    reject("redis://h:0");
    reject("redis://h:65536");
    reject("redis://h:99999999999999999999");
    reject("redis://h:-1");
    reject("redis://h:+1");
    reject("redis://h: 1");
    reject("redis://h:1 ");
    reject("redis://h:abc");
    reject("redis://h:12ab");
    reject("redis://h:0x10");
    ck_assert_int_eq(parse("redis://h:0"), -1);
    ck_assert_str_eq(err, "bad port");
}
END_TEST

START_TEST(host_length)
{
    char url[400], host[300];
    memset(host, 'h', sizeof(host));
    snprintf(url, sizeof(url), "redis://%.255s:1", host);
    ck_assert_int_eq(parse(url), 0);
    ck_assert_uint_eq(strlen(u.host), 255);
    snprintf(url, sizeof(url), "redis://%.256s:1", host);
    reject(url);
}
END_TEST

START_TEST(db_bad)
{
    reject("redis://h:1/x");
    reject("redis://h:1/-1");
    reject("redis://h:1/+1");
    reject("redis://h:1/1x");
    reject("redis://h:1/1/2");
    reject("redis://h:1//");
    reject("redis://h:1/ 1");
    reject("redis://h:1/1000001");
    reject("redis://h:1/99999999999999999999");
    ck_assert_int_eq(parse("redis://h:1/x"), -1);
    ck_assert_str_eq(err, "bad database number");
}
END_TEST

START_TEST(small_error_buffer)
{
    char small[4] = "zzz";
    struct redis_url r;
    ck_assert_int_eq(redis_url_parse("nope", &r, small, sizeof(small)), -1);
    ck_assert_uint_eq(strlen(small), 3); /* truncated, still terminated */
    ck_assert_int_eq(redis_url_parse("nope", &r, NULL, 0), -1);
}
END_TEST

static Suite *redisurl_suite(void)
{
    Suite *s = suite_create("redisurl");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, plain);
    tcase_add_test(tc, credentials);
    tcase_add_test(tc, credentials_bad);
    tcase_add_test(tc, credentials_length);
    tcase_add_test(tc, host_and_port_bad);
    tcase_add_test(tc, host_length);
    tcase_add_test(tc, db_bad);
    tcase_add_test(tc, small_error_buffer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(redisurl_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
