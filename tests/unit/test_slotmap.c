/* Unit tests of common/slotmap: CLUSTER SLOTS replies, read through
 * hiredis's own reader from the RESP Redis writes. */
#include <check.h>
#include <hiredis/hiredis.h>
#include <string.h>

#include "slotmap.h"

static redisReply *parse(const char *resp)
{
    redisReader *r = redisReaderCreate();
    redisReaderFeed(r, resp, strlen(resp));
    void *reply = NULL;
    ck_assert_int_eq(redisReaderGetReply(r, &reply), REDIS_OK);
    ck_assert_ptr_nonnull(reply);
    redisReaderFree(r);
    return reply;
}

/* Three primaries, the second with a replica, the first reporting "". */
static const char three[] =
    "*3\r\n"
    "*3\r\n:0\r\n:5460\r\n*3\r\n$0\r\n\r\n:7000\r\n$2\r\nid\r\n"
    "*4\r\n:5461\r\n:10922\r\n*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$2\r\nid\r\n"
    "*3\r\n$9\r\n127.0.0.1\r\n:7004\r\n$2\r\nid\r\n"
    "*3\r\n:10923\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:7002\r\n$2\r\nid\r\n";

START_TEST(three_primaries)
{
    redisReply *r = parse(three);
    struct slotmap m;
    ck_assert_int_eq(slotmap_read(&m, r, "10.0.0.9"), 0);
    ck_assert_int_eq(m.n_nodes, 3);
    ck_assert_str_eq(m.nodes[0].host, "10.0.0.9");
    ck_assert_int_eq(m.nodes[0].port, 7000);
    ck_assert_int_eq(m.nodes[0].slots, 5461);
    ck_assert_int_eq(m.nodes[1].port, 7001);
    ck_assert_int_eq(m.nodes[1].slots, 5462);
    ck_assert_int_eq(m.nodes[2].slots, 5461);
    ck_assert_int_eq(m.owner[0], 0);
    ck_assert_int_eq(m.owner[5461], 1);
    ck_assert_int_eq(m.owner[16383], 2);
    ck_assert_int_eq(slotmap_find(&m, "127.0.0.1", 7004), -1); /* a replica */
    ck_assert_int_eq(slotmap_find(&m, "127.0.0.1", 7002), 2);
    /* "foo" hashes to slot 12182, "{u1}x" to the slot of "u1" (4574). */
    ck_assert_int_eq(slotmap_owner_of(&m, "foo", 3)->port, 7002);
    ck_assert_int_eq(slotmap_owner_of(&m, "{u1}x", 5)->port, 7000);
    ck_assert_int_eq(slotmap_owner_of(&m, "{user7}", 7)->port, 7002);
    freeReplyObject(r);
}
END_TEST

START_TEST(incomplete_and_malformed)
{
    /* One range only, one entry of the wrong shape skipped. */
    redisReply *r = parse("*2\r\n*3\r\n:0\r\n:99\r\n*2\r\n$1\r\nh\r\n:1\r\n"
                          "*2\r\n:100\r\n:200\r\n");
    struct slotmap m;
    ck_assert_int_eq(slotmap_read(&m, r, "x"), KEYSLOT_COUNT - 100);
    ck_assert_int_eq(m.n_nodes, 1);
    ck_assert_int_eq(m.owner[99], 0);
    ck_assert_int_eq(m.owner[100], -1);
    freeReplyObject(r);
    r = parse("+OK\r\n");
    ck_assert_int_eq(slotmap_read(&m, r, "x"), -1);
    freeReplyObject(r);
    ck_assert_int_eq(slotmap_read(&m, NULL, "x"), -1);
}
END_TEST

START_TEST(single_node)
{
    struct slotmap m;
    slotmap_single(&m, "127.0.0.1", 6379);
    ck_assert_int_eq(m.n_nodes, 1);
    ck_assert_int_eq(m.nodes[0].slots, KEYSLOT_COUNT);
    for (int s = 0; s < KEYSLOT_COUNT; s++)
        ck_assert_int_eq(m.owner[s], 0);
    ck_assert_int_eq(slotmap_owner_of(&m, "anything", 8)->port, 6379);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("slotmap");
    TCase *tc = tcase_create("slotmap");
    tcase_add_test(tc, three_primaries);
    tcase_add_test(tc, incomplete_and_malformed);
    tcase_add_test(tc, single_node);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
