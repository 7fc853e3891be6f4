/* Unit tests of common/resp: replies measured and message pushes read in
 * place, checked against hiredis's own reader (what the gateway used
 * before, and still uses for every reply that is not a message). */
#include <check.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"

/* hiredis's verdict on buf[0..len): 1 one complete reply that uses exactly
 * len bytes, 0 no reply yet, -1 a protocol error, 2 a reply with bytes
 * left over. */
static int hiredis_verdict(const char *buf, size_t len)
{
    redisReader *r = redisReaderCreate();
    ck_assert_ptr_nonnull(r);
    void *reply = NULL;
    int v;
    if (redisReaderFeed(r, buf, len) != REDIS_OK || redisReaderGetReply(r, &reply) != REDIS_OK)
        v = -1;
    else if (!reply)
        v = 0;
    else
        v = r->pos == r->len ? 1 : 2;
    if (reply)
        freeReplyObject(reply);
    redisReaderFree(r);
    return v;
}

/* resp_scan on exactly the bytes of s, with no terminating NUL readable. */
static long scan(const char *s, size_t len, struct resp_message *m, int *is_message)
{
    char *copy = malloc(len ? len : 1);
    memcpy(copy, s, len);
    long n = resp_scan(copy, len, m, is_message);
    if (*is_message) {
        /* the spans point into the buffer: re-point them into s */
        m->channel = s + (m->channel - copy);
        m->payload = s + (m->payload - copy);
    }
    free(copy);
    return n;
}

/* Every whole reply: measured to its exact length, which hiredis agrees
 * is one reply; every strict prefix: incomplete, for both. */
static void check_complete(const char *s, size_t len, int want_message)
{
    struct resp_message m;
    int is_message;
    ck_assert_msg(scan(s, len, &m, &is_message) == (long)len, "length of %.*s", (int)len, s);
    ck_assert_int_eq(is_message, want_message);
    ck_assert_int_eq(hiredis_verdict(s, len), 1);
    for (size_t k = 0; k < len; k++) {
        ck_assert_msg(scan(s, k, &m, &is_message) == 0, "prefix %zu of %.*s", k, (int)len, s);
        ck_assert_int_eq(hiredis_verdict(s, k), 0);
    }
}

START_TEST(message_push_read_in_place)
{
    const char *s =
        "*3\r\n$7\r\nmessage\r\n$16\r\nnotify:acct:{u1}\r\n$13\r\n{\"type\":\"x\"}\n\r\n";
    size_t len = strlen(s);
    check_complete(s, len, 1);
    struct resp_message m;
    int is_message;
    ck_assert_int_eq(scan(s, len, &m, &is_message), (long)len);
    ck_assert_uint_eq(m.channel_len, 16);
    ck_assert(memcmp(m.channel, "notify:acct:{u1}", 16) == 0);
    ck_assert_uint_eq(m.payload_len, 13);
    ck_assert(memcmp(m.payload, "{\"type\":\"x\"}\n", 13) == 0);
    /* a payload holding CRLF and RESP-looking bytes is still one bulk */
    const char *tricky = "*3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n$8\r\n\r\n*3\r\n$1\r\n";
    check_complete(tricky, strlen(tricky), 1);
    ck_assert_int_eq(scan(tricky, strlen(tricky), &m, &is_message), (long)strlen(tricky));
    ck_assert_uint_eq(m.payload_len, 8);
    /* an empty payload */
    const char *empty = "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$0\r\n\r\n";
    check_complete(empty, strlen(empty), 1);
}
END_TEST

START_TEST(other_replies_measured)
{
    const char *replies[] = {
        "*3\r\n$9\r\nsubscribe\r\n$16\r\nnotify:broadcast\r\n:1\r\n",
        "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n",
        "*2\r\n$4\r\npong\r\n$0\r\n\r\n",
        "+OK\r\n",
        "-ERR unknown command\r\n",
        ":-42\r\n",
        "$-1\r\n",
        "*-1\r\n",
        "*0\r\n",
        "*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n$3\r\nabc\r\n",
        /* three elements, but not a message: measured, not read as one */
        "*3\r\n$7\r\nMESSAGE\r\n$1\r\nc\r\n$1\r\np\r\n",
        "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n:1\r\n",
        "*3\r\n$7\r\nmessage\r\n$-1\r\n$1\r\np\r\n",
    };
    for (size_t i = 0; i < sizeof(replies) / sizeof(*replies); i++)
        check_complete(replies[i], strlen(replies[i]), 0);
}
END_TEST

START_TEST(stream_of_replies)
{
    /* back to back, as they come off the socket: each measured in turn */
    const char *s = "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
                    "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n"
                    "*3\r\n$7\r\nmessage\r\n$1\r\nb\r\n$3\r\nyo!\r\n"
                    "+OK\r\n*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$4\r\npart";
    size_t len = strlen(s), off = 0;
    int kinds[8], k = 0;
    for (;;) {
        struct resp_message m;
        int is_message;
        long n = resp_scan(s + off, len - off, &m, &is_message);
        ck_assert_int_ge(n, 0);
        if (n == 0)
            break;
        kinds[k++] = is_message;
        off += (size_t)n;
    }
    ck_assert_int_eq(k, 4);
    ck_assert_int_eq(kinds[0], 0);
    ck_assert_int_eq(kinds[1], 1);
    ck_assert_int_eq(kinds[2], 1);
    ck_assert_int_eq(kinds[3], 0);
    ck_assert_str_eq(s + off, "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$4\r\npart");
}
END_TEST

/* Subscription confirmations: recognised in a whole reply, with the parts
 * hiredis reads there; anything close to one is not. */
static int confirm(const char *s, struct resp_confirmation *c)
{
    size_t len = strlen(s);
    char *copy = malloc(len);
    memcpy(copy, s, len); /* no NUL after the reply */
    struct resp_message m;
    int is_message;
    ck_assert_msg(resp_scan(copy, len, &m, &is_message) == (long)len, "not one reply: %s", s);
    int yes = resp_confirmation(copy, len, c);
    if (yes) {
        ck_assert(c->channel >= copy && c->channel + c->channel_len <= copy + len);
        c->channel = s + (c->channel - copy);
    }
    free(copy);
    return yes;
}

START_TEST(subscription_confirmations)
{
    struct resp_confirmation c;
    ck_assert(confirm("*3\r\n$9\r\nsubscribe\r\n$14\r\nnotify:{u1}:ch\r\n:2\r\n", &c));
    ck_assert_int_eq(c.subscribe, 1);
    ck_assert_uint_eq(c.channel_len, 14);
    ck_assert(!memcmp(c.channel, "notify:{u1}:ch", 14));
    ck_assert_int_eq(c.count, 2);
    ck_assert(confirm("*3\r\n$11\r\nunsubscribe\r\n$3\r\nabc\r\n:15000\r\n", &c));
    ck_assert_int_eq(c.subscribe, 0);
    ck_assert_int_eq(c.count, 15000);
    ck_assert(confirm("*3\r\n$11\r\nunsubscribe\r\n$0\r\n\r\n:0\r\n", &c));
    ck_assert_uint_eq(c.channel_len, 0);
    ck_assert_int_eq(c.sharded, 0);
    /* sharded pub/sub (Redis Cluster): the same shape, other verbs */
    ck_assert(confirm("*3\r\n$10\r\nssubscribe\r\n$3\r\nabc\r\n:1\r\n", &c));
    ck_assert_int_eq(c.subscribe, 1);
    ck_assert_int_eq(c.sharded, 1);
    ck_assert_uint_eq(c.channel_len, 3);
    ck_assert(!memcmp(c.channel, "abc", 3));
    ck_assert_int_eq(c.count, 1);
    ck_assert(confirm("*3\r\n$12\r\nsunsubscribe\r\n$4\r\nab:c\r\n:0\r\n", &c));
    ck_assert_int_eq(c.subscribe, 0);
    ck_assert_int_eq(c.sharded, 1);
    ck_assert(!memcmp(c.channel, "ab:c", 4));
    ck_assert_int_eq(c.count, 0);
    ck_assert(confirm("*3\r\n$9\r\nsubscribe\r\n$3\r\nabc\r\n:1\r\n", &c));
    ck_assert_int_eq(c.sharded, 0);
    const char * not [] = {
        "*3\r\n$7\r\nmessage\r\n$3\r\nabc\r\n$1\r\nx\r\n",    /* a message */
        "*3\r\n$10\r\npsubscribe\r\n$3\r\nab*\r\n:1\r\n",     /* a pattern */
        "*3\r\n$11\r\npsubscribex\r\n$3\r\nabc\r\n:1\r\n",    /* no such verb */
        "*3\r\n$10\r\nSSUBSCRIBE\r\n$3\r\nabc\r\n:1\r\n",     /* not what Redis sends */
        "*3\r\n$12\r\nsunsubscribe\r\n$3\r\nabc\r\n+1\r\n",   /* count not an integer */
        "*3\r\n$8\r\nsmessage\r\n$3\r\nabc\r\n$1\r\nx\r\n",   /* a sharded message */
        "*3\r\n$9\r\nSUBSCRIBE\r\n$3\r\nabc\r\n:1\r\n",       /* not what Redis sends */
        "*3\r\n$9\r\nsubscribe\r\n$3\r\nabc\r\n$1\r\n1\r\n",  /* count not an integer */
        "*3\r\n$9\r\nsubscribe\r\n$-1\r\n:1\r\n",             /* null channel */
        "*4\r\n$9\r\nsubscribe\r\n$3\r\nabc\r\n:1\r\n:1\r\n", /* four parts */
        "*2\r\n$9\r\nsubscribe\r\n$3\r\nabc\r\n",             /* two parts */
        "-ERR unknown command\r\n",
        ":1\r\n",
    };
    for (size_t i = 0; i < sizeof(not ) / sizeof(not [0]); i++)
        ck_assert_msg(!confirm(not [i], &c), "taken as a confirmation: %s", not [i]);
}
END_TEST

START_TEST(not_resp_refused)
{
    const char *bad[] = {"hello\r\n", "$abc\r\n", "$3\r\nabcd\r\n", "*x\r\n",
                         ":1\rx",     "$-2\r\n",  "*-2\r\n",        "$9999999999999\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        struct resp_message m;
        int is_message;
        ck_assert_msg(scan(bad[i], strlen(bad[i]), &m, &is_message) == -1, "accepted %s", bad[i]);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("resp");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, message_push_read_in_place);
    tcase_add_test(tc, other_replies_measured);
    tcase_add_test(tc, stream_of_replies);
    tcase_add_test(tc, not_resp_refused);
    tcase_add_test(tc, subscription_confirmations);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
