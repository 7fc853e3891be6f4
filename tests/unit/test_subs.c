/* Unit tests of the node set's subscription table (gateway/redis/subs.c),
 * driven through redis.h and nodeset.h with one primary whose subscriber
 * is taken for up but has no connection: what would be written is
 * dropped, and confirmations are handed in as the subscriber would read
 * them. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "nodeset.h"

static uv_loop_t loop;
static struct config cfg;
static struct redis_link L;
static struct redis_node N;
static int n_subscribed, n_lost;

static void on_subscribed(void *data, const char *account, size_t len)
{
    (void)data;
    ck_assert_uint_eq(strlen(account), len);
    n_subscribed++;
}

static void on_lost(void *data, const char *account, size_t len)
{
    (void)data;
    ck_assert_uint_eq(strlen(account), len);
    n_lost++;
}

static void setup(void)
{
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    memset(&cfg, 0, sizeof(cfg));
    cfg.redis_prefix = (char *)"notify:";
    const struct redis_events ev = {.on_subscribed = on_subscribed, .on_lost = on_lost};
    redis_link_init(&L, &loop, &cfg, &ev);
    ck_assert_int_eq(subs_init(&L), 0);
    memset(&N, 0, sizeof(N));
    N.l = &L;
    N.sub_ok = 1;
    L.nodes[0] = &N;
    memset(L.slot_node, 0, sizeof(L.slot_node));
    n_subscribed = n_lost = 0;
}

static void teardown(void)
{
    subs_free(&L);
    respbuf_free(&N.out);
    respbuf_free(&N.batch);
    uv_run(&loop, UV_RUN_DEFAULT); /* the flush timer's close */
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}

/* Runs the batched flush (the loop's only timer). */
static void flush(void)
{
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* The primary's confirmation of account's channel ("" = broadcast). */
static int confirm(const char *account, int subscribe)
{
    char name[RNAME_MAX];
    int len = *account ? rnames_account_channel(name, sizeof(name), cfg.redis_prefix, account)
                       : rnames_broadcast_channel(name, sizeof(name), cfg.redis_prefix);
    ck_assert_int_gt(len, 0);
    struct resp_confirmation c = {subscribe, 0, name, (size_t)len, 1};
    return subs_on_confirm(&L, 0, &c);
}

START_TEST(subscribe_acknowledge_unsubscribe)
{
    ck_assert_int_eq(redis_link_subscribe(&L, "a"), 0);
    ck_assert_int_eq(confirm("a", 1), 0); /* not sent yet: not its confirmation */
    flush();
    ck_assert_int_eq(confirm("a", 1), 1);
    ck_assert_int_eq(n_subscribed, 1);
    ck_assert_uint_eq(redis_link_subscribed(&L), 1);
    ck_assert_int_eq(confirm("a", 1), 0); /* twice: once */
    ck_assert_int_eq(n_subscribed, 1);
    ck_assert_int_eq(redis_link_subscribe(&L, "a"), 1);
    redis_link_unsubscribe(&L, "a");
    flush();
    ck_assert_uint_eq(redis_link_subscribed(&L), 0);
    ck_assert_int_eq(confirm("a", 1), 0); /* gone */
    ck_assert_int_eq(redis_link_subscribe(&L, "a"), 0);
    ck_assert_int_eq(n_lost, 0);
}
END_TEST

/* An unsubscribe and a subscribe of one account within one flush cancel
 * out: the channel stays acknowledged. */
START_TEST(changes_cancel_out)
{
    redis_link_subscribe(&L, "b");
    flush();
    confirm("b", 1);
    redis_link_unsubscribe(&L, "b");
    ck_assert_int_eq(redis_link_subscribe(&L, "b"), 1);
    flush();
    ck_assert_uint_eq(redis_link_subscribed(&L), 1);
    /* never sent: nothing to undo */
    redis_link_subscribe(&L, "c");
    redis_link_unsubscribe(&L, "c");
    flush();
    ck_assert_int_eq(confirm("c", 1), 0);
    ck_assert_uint_eq(L.subs.n, 2); /* b and the broadcast channel */
}
END_TEST

/* A primary lost: its acknowledged accounts are reported lost, and once it
 * is back readiness waits for every channel, broadcast included. */
START_TEST(node_lost_and_back)
{
    const char *acc[] = {"x1", "x2", "x3"};
    for (int i = 0; i < 3; i++)
        redis_link_subscribe(&L, acc[i]);
    flush();
    for (int i = 0; i < 3; i++)
        confirm(acc[i], 1);
    confirm("", 1);
    L.up = 1;
    ck_assert_int_eq(redis_link_ready(&L), 1);
    N.sub_ok = 0;
    subs_node_lost(&L, 0);
    ck_assert_int_eq(n_lost, 3);
    ck_assert_uint_eq(redis_link_subscribed(&L), 0);
    ck_assert_int_eq(redis_link_subscribe(&L, "x4"), -1); /* its primary is away */
    N.sub_ok = 1;
    subs_place_all(&L);
    ck_assert_int_eq(redis_link_ready(&L), 0);
    for (int i = 0; i < 3; i++)
        confirm(acc[i], 1);
    ck_assert_int_eq(redis_link_ready(&L), 0);
    confirm("x4", 1);
    ck_assert_int_eq(redis_link_ready(&L), 0); /* the broadcast channel still due */
    confirm("", 1);
    ck_assert_int_eq(redis_link_ready(&L), 1);
    ck_assert_uint_eq(redis_link_subscribed(&L), 4);
    /* a fresh subscribe does not make the node unready */
    redis_link_subscribe(&L, "x5");
    flush();
    ck_assert_int_eq(redis_link_ready(&L), 1);
}
END_TEST

/* An unsubscribe nobody asked for, of an acknowledged channel: its slot
 * moved away. */
START_TEST(unasked_unsubscribe_is_a_move)
{
    redis_link_subscribe(&L, "m");
    flush();
    confirm("m", 1);
    ck_assert_int_eq(confirm("m", 0), -1);
    ck_assert_int_eq(n_lost, 1);
    ck_assert_int_eq(confirm("m", 0), 0);
    /* ours, for an entry leaving: not a move */
    redis_link_subscribe(&L, "n");
    flush();
    confirm("n", 1);
    redis_link_unsubscribe(&L, "n");
    ck_assert_int_eq(confirm("n", 0), 0);
    ck_assert_int_eq(n_lost, 1);
}
END_TEST

/* An unacknowledged SSUBSCRIBE is sent again at the third health check
 * (a cluster's MOVED names no channel), and readiness then waits for it;
 * one Redis's SUBSCRIBE is never sent twice. */
START_TEST(cluster_resends_unacknowledged)
{
    subs_place_all(&L);
    ck_assert_int_eq(confirm("", 1), 1); /* the broadcast channel */
    L.up = 1;
    redis_link_subscribe(&L, "r");
    flush();
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(subs_health(&L), 0);
    ck_assert_int_eq(redis_link_ready(&L), 1);
    L.cluster = 1;
    for (int i = 0; i < 2; i++) {
        subs_health(&L);
        ck_assert_int_eq(redis_link_ready(&L), 1);
    }
    subs_health(&L);
    ck_assert_int_eq(redis_link_ready(&L), 0);
    ck_assert_int_eq(confirm("r", 1), 1);
    ck_assert_int_eq(redis_link_ready(&L), 1);
    /* an entry whose owner is away is counted as missing */
    N.sub_ok = 0;
    redis_link_subscribe(&L, "s");
    flush();
    ck_assert_int_eq(subs_health(&L), 1);
}
END_TEST

/* Many entries in, half out in a scattered order, the rest all found:
 * open addressing's deletions leave no entry unreachable. */
START_TEST(table_many_entries)
{
    enum { COUNT = 20000 };
    char id[32];
    for (int i = 0; i < COUNT; i++) {
        snprintf(id, sizeof(id), "u%d", i);
        ck_assert_int_eq(redis_link_subscribe(&L, id), 0);
    }
    flush();
    for (int i = 0; i < COUNT; i++) {
        snprintf(id, sizeof(id), "u%d", i);
        ck_assert_int_eq(confirm(id, 1), 1);
    }
    ck_assert_uint_eq(redis_link_subscribed(&L), COUNT);
    for (int i = 0; i < COUNT; i++) {
        snprintf(id, sizeof(id), "u%d", (i * 7919) % COUNT);
        if (((i * 7919) % COUNT) % 2)
            redis_link_unsubscribe(&L, id);
    }
    flush();
    ck_assert_uint_eq(redis_link_subscribed(&L), COUNT / 2);
    ck_assert_uint_eq(L.subs.n, COUNT / 2 + 1);
    for (int i = 0; i < COUNT; i++) {
        snprintf(id, sizeof(id), "u%d", i);
        ck_assert_int_eq(redis_link_subscribe(&L, id), i % 2 ? 0 : 1);
    }
    /* an account of the longest length */
    char longest[129];
    memset(longest, 'L', 128);
    longest[128] = '\0';
    ck_assert_int_eq(redis_link_subscribe(&L, longest), 0);
    flush();
    ck_assert_int_eq(confirm(longest, 1), 1);
}
END_TEST

int main(void)
{
    /* unsent (un)subscribes are logged as errors: not this test's output */
    if (!freopen("/dev/null", "w", stderr))
        return EXIT_FAILURE;
    Suite *s = suite_create("subs");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, subscribe_acknowledge_unsubscribe);
    tcase_add_test(tc, changes_cancel_out);
    tcase_add_test(tc, node_lost_and_back);
    tcase_add_test(tc, unasked_unsubscribe_is_a_move);
    tcase_add_test(tc, cluster_resends_unacknowledged);
    tcase_add_test(tc, table_many_entries);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
