/* test_presence_events: online and offline transitions in
 * notify:presence:events and bulk presence (README.md "Presence events"),
 * against real redis-server processes (one Redis, and a Redis Cluster of
 * three primaries) and real gateway processes.
 *
 * Every gateway runs with --auth none --presence-events; each test of the
 * "single" case starts its own Redis, the "cluster" case shares one cluster
 * (accounts differ per test), "cluster_failover" makes one with replicas. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pevents_util.h"

/* ---- the single-Redis and cluster tests --------------------------------- */

/* The first connection anywhere writes online, the last one gone offline,
 * once each; more connections in between write nothing. */
START_TEST(online_offline_on_connect_and_close)
{
    gw(0, "--presence-debounce-ms", "0", NULL);
    gw(1, "--presence-debounce-ms", "0", NULL);
    const char *acct = cluster_mode ? "ev-c1" : "ev-s1";
    long long before = h_wall_ms();
    struct ws a, b, c;
    open_as(&a, G[0].port, acct);
    ck_assert_msg(wait_events(acct, 1, 3000) >= 0, "no online event");
    open_as(&b, G[0].port, acct);
    open_as(&c, G[1].port, acct);
    h_sleep_ms(300);
    int n;
    struct ev *e = events(acct, &n);
    ck_assert_int_eq(n, 1);
    ck_assert(e[0].online);
    ck_assert_msg(e[0].at >= before - 1000 && e[0].at <= h_wall_ms() + 1000, "at %lld", e[0].at);
    ck_assert_int_gt(e[0].seq, 0);
    free(e);
    ws_close(&a, 1000);
    ws_close(&c, 1000);
    h_sleep_ms(300);
    ck_assert_int_eq(count_events(acct), 1); /* b is still there */
    ws_close(&b, 1000);
    ck_assert_msg(wait_events(acct, 2, 3000) >= 0, "no offline event");
    int last;
    ck_assert_int_eq(check_alternating(acct, &last), 2);
    ck_assert_int_eq(last, 0);
    /* and back */
    open_as(&a, G[1].port, acct);
    ck_assert_msg(wait_events(acct, 3, 3000) >= 0, "no second online event");
    ws_close(&a, 1000);
    ck_assert_msg(wait_events(acct, 4, 3000) >= 0, "no second offline event");
    ck_assert_int_eq(check_alternating(acct, &last), 4);
    /* a clean shutdown takes its accounts offline at once */
    open_as(&a, G[1].port, acct);
    ck_assert(wait_events(acct, 5, 3000) >= 0);
    double written1 = h_ck_metric(G[1].port, "notify_presence_events_total");
    ck_assert_int_eq(h_gw_stop(&G[1], 15000), 0);
    ck_assert_msg(wait_events(acct, 6, 3000) >= 0, "no offline after SIGTERM");
    ck_assert_int_eq(check_alternating(acct, &last), 6);
    ws_drop(&a);
    double written = h_ck_metric(G[0].port, "notify_presence_events_total") + written1;
    ck_assert_msg(written >= 4, "notify_presence_events_total %g", written);
}
END_TEST

/* kill -9 of the node holding an account: offline within the TTL plus a
 * few seconds, written once although both other nodes sweep; an account
 * also held by a surviving node stays online. */
START_TEST(offline_after_kill_within_ttl)
{
    gw(0, "--presence-ttl", "3", "--presence-debounce-ms", "0", NULL);
    gw(1, "--presence-ttl", "3", "--presence-debounce-ms", "0", NULL);
    gw(2, "--presence-ttl", "3", "--presence-debounce-ms", "0", NULL);
    const char *gone = cluster_mode ? "ev-c2" : "ev-s2";
    const char *kept = cluster_mode ? "ev-c3" : "ev-s3";
    struct ws a, b, c;
    open_as(&a, G[0].port, gone);
    open_as(&b, G[0].port, kept);
    open_as(&c, G[1].port, kept);
    ck_assert(wait_events(gone, 1, 3000) >= 0);
    ck_assert(wait_events(kept, 1, 3000) >= 0);
    h_sleep_ms(1200); /* the victim's incarnation refreshed at least once */
    long long killed = h_mono_ms();
    h_gw_kill(&G[0]);
    long long waited = wait_events(gone, 2, 3000 + 4000);
    ck_assert_msg(waited >= 0, "no offline event within ttl + 4 s of kill -9");
    long long took = h_mono_ms() - killed;
    fprintf(stderr, "presence-events: offline %lld ms after kill -9 (ttl 3 s)\n", took);
    ck_assert_msg(took >= 1500, "offline after %lld ms: before the TTL could have lapsed", took);
    h_sleep_ms(1500); /* both survivors sweep again */
    int last;
    ck_assert_int_eq(check_alternating(gone, &last), 2);
    ck_assert_int_eq(last, 0);
    ck_assert_int_eq(check_alternating(kept, &last), 1);
    ck_assert_int_eq(last, 1);
    ws_close(&c, 1000);
    ck_assert(wait_events(kept, 2, 3000) >= 0);
    ws_drop(&a);
    ws_drop(&b);
}
END_TEST

/* A node whose Redis connections are cut comes back under a new
 * incarnation: accounts it held throughout write nothing (not even with
 * no debounce), one that left meanwhile goes offline, and the old
 * incarnation is gone at once, not after the TTL. */
START_TEST(reconnect_takes_a_new_incarnation)
{
    gw(0, "--presence-debounce-ms", "0", NULL);
    struct ws x, y;
    open_as(&x, G[0].port, "ev-s6");
    open_as(&y, G[0].port, "ev-s7");
    ck_assert(wait_events("ev-s6", 1, 3000) >= 0);
    ck_assert(wait_events("ev-s7", 1, 3000) >= 0);
    const char *nodes[] = {"ZRANGE", "notify:pev:{notify:presence:events}:nodes", "0", "-1"};
    redisReply *before = cmd(4, nodes);
    ck_assert_int_eq(before->elements, 1);
    char old[200];
    snprintf(old, sizeof(old), "%s", before->element[0]->str);
    freeReplyObject(before);
    const char *kill[] = {"CLIENT", "KILL", "TYPE", "normal"};
    const char *kill_sub[] = {"CLIENT", "KILL", "TYPE", "pubsub"};
    freeReplyObject(c_cmd_argv(R.port, 4, kill_sub));
    ws_close(&y, 1000); /* while the node may be away */
    freeReplyObject(c_cmd_argv(R.port, 4, kill));
    ck_assert_msg(wait_events("ev-s7", 2, 8000) >= 0, "no offline for the account that left");
    h_sleep_ms(1500);
    ck_assert_int_eq(count_events("ev-s6"), 1);
    redisReply *after = cmd(4, nodes);
    ck_assert_int_eq(after->elements, 1);
    ck_assert_msg(strcmp(after->element[0]->str, old) != 0, "still the incarnation %s", old);
    freeReplyObject(after);
    ws_close(&x, 1000);
    ck_assert(wait_events("ev-s6", 2, 3000) >= 0);
    int last;
    ck_assert_int_eq(check_alternating("ev-s6", &last), 2);
    ck_assert_int_eq(check_alternating("ev-s7", &last), 2);
}
END_TEST

/* An offline-online flap within --presence-debounce-ms writes nothing; an
 * offline that lasts is written after the debounce, with at = when the
 * last connection went. */
START_TEST(debounce)
{
    gw(0, "--presence-debounce-ms", "1500", NULL);
    gw(1, "--presence-debounce-ms", "1500", NULL);
    const char *acct = cluster_mode ? "ev-c4" : "ev-s4";
    struct ws a;
    open_as(&a, G[0].port, acct);
    ck_assert(wait_events(acct, 1, 3000) >= 0);
    for (int i = 0; i < 3; i++) { /* reloads, the last one through another node */
        ws_close(&a, 1000);
        h_sleep_ms(300);
        open_as(&a, G[i == 2].port, acct);
    }
    h_sleep_ms(2500);
    ck_assert_int_eq(count_events(acct), 1);
    long long closed = h_wall_ms();
    long long t0 = h_mono_ms();
    ws_close(&a, 1000);
    h_sleep_ms(1000);
    ck_assert_msg(count_events(acct) == 1, "offline written before the debounce");
    ck_assert(wait_events(acct, 2, 4000) >= 0);
    long long took = h_mono_ms() - t0;
    ck_assert_msg(took >= 1400, "offline %lld ms after the close", took);
    int n;
    struct ev *e = events(acct, &n);
    ck_assert_int_eq(n, 2);
    ck_assert(!e[1].online);
    ck_assert_msg(e[1].at >= closed - 500 && e[1].at <= closed + 500,
                  "offline at %lld, the close was at %lld", e[1].at, closed);
    free(e);
}
END_TEST

/* Connections of one account on three nodes opening and closing at the
 * same time, a few hundred rounds: the states still alternate (each
 * transition written once), and at every quiet point the last one is the
 * truth. */
struct churn {
    int port;
    int rounds;
    const char *account;
    unsigned seed;
    int failures;
};

static void *churn_thread(void *arg)
{
    struct churn *ch = arg;
    char path[200];
    snprintf(path, sizeof(path), "/ws?user_id=%s", ch->account);
    for (int i = 0; i < ch->rounds; i++) {
        struct ws c;
        if (ws_connect(&c, ch->port, path, NULL, 5000) != 101) {
            ch->failures++;
            continue;
        }
        char *reg = ws_recv_text(&c, 5000);
        if (!reg)
            ch->failures++;
        free(reg);
        int pause = (int)(rand_r(&ch->seed) % 4);
        if (pause)
            h_sleep_ms(pause);
        if (rand_r(&ch->seed) % 2)
            ws_close(&c, 1000);
        else
            ws_drop(&c);
    }
    return NULL;
}

static void churn(const char *acct, int rounds)
{
    pthread_t t[3];
    struct churn ch[3];
    for (int i = 0; i < 3; i++) {
        ch[i] = (struct churn){.port = G[i].port,
                               .rounds = rounds,
                               .account = acct,
                               .seed = (unsigned)(i * 7919 + rounds)};
        ck_assert_int_eq(pthread_create(&t[i], NULL, churn_thread, &ch[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        ck_assert_msg(ch[i].failures == 0, "node %d: %d connections failed", i, ch[i].failures);
    }
}

/* Waits until account's last event is want and no other follows for
 * 500 ms; asserts alternation; returns the number of events. */
static int settle(const char *acct, int want, int timeout_ms)
{
    long long t0 = h_mono_ms();
    int last = -1, n = 0;
    for (;;) {
        n = check_alternating(acct, &last);
        ck_assert_msg(h_mono_ms() - t0 < timeout_ms, "%s: last state %d, want %d after %d ms", acct,
                      last, want, timeout_ms);
        if (last == want) {
            h_sleep_ms(500);
            int n2 = check_alternating(acct, &last);
            if (n2 == n && last == want)
                return n;
            continue;
        }
        h_sleep_ms(50);
    }
}

START_TEST(alternation_under_concurrent_churn)
{
    for (int i = 0; i < 3; i++)
        gw(i, "--presence-debounce-ms", "0", NULL);
    const char *acct = cluster_mode ? "ev-c5" : "ev-s5";
    int total = 0;
    for (int phase = 0; phase < 4; phase++) {
        churn(acct, 75);
        total = settle(acct, 0, 5000);
        /* each node leaves one connection open: online, once */
        struct ws keep[3];
        for (int i = 0; i < 3; i++)
            open_as(&keep[i], G[i].port, acct);
        total = settle(acct, 1, 5000);
        churn(acct, 25); /* nothing may change while they are held */
        ck_assert_int_eq(settle(acct, 1, 5000), total);
        for (int i = 0; i < 3; i++)
            ws_close(&keep[i], 1000);
        total = settle(acct, 0, 5000);
    }
    fprintf(stderr, "presence-events: %d events over 4 x 100 rounds on 3 nodes, alternating\n",
            total);
    ck_assert_int_ge(total, 8);
}
END_TEST

/* Bad webhook flags exit 2 with one line naming the flag. */
START_TEST(bad_flags_exit_2)
{
    const char *cases[][6] = {
        {"--webhook-url", "https://example.com/x", "--webhook-secret", "s", "webhook-url"},
        {"--webhook-url", "http://", "--webhook-secret", "s", "webhook-url"},
        {"--webhook-url", "http://127.0.0.1:1/x", NULL, NULL, "webhook-secret"},
        {"--presence-debounce-ms", "-1", NULL, NULL, "presence-debounce-ms"},
        {"--presence-events-max-len", "0", NULL, NULL, "presence-events-max-len"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *args[] = {"--auth",    "none",      cases[i][0], cases[i][1],
                              cases[i][2], cases[i][3], NULL};
        char *err = NULL;
        ck_assert_int_eq(h_gw_run(args, NULL, 5000, &err), 2);
        ck_assert_msg(strstr(err, cases[i][4]) && h_count(err, "\n") == 1, "case %zu: %s", i, err);
        free(err);
    }
}
END_TEST

/* The primary holding the events stream fails over: the gateways follow,
 * an account held throughout writes nothing more, and transitions after
 * the promotion are written on the new primary, still alternating. */
static void failover_setup(void)
{
    cluster_mode = 1;
    memset(G, 0, sizeof(G));
    cluster_up = c_cluster_start(&CL, 120000) == 0 && c_seeds(&CL, 3, seeds, sizeof(seeds)) == 0;
    ck_assert_msg(cluster_up, "cannot create the cluster");
}

static void failover_teardown(void)
{
    gws_down();
    c_cluster_stop(&CL);
    cluster_up = 0;
}

START_TEST(events_across_a_failover)
{
    gw(0, "--presence-debounce-ms", "0", NULL);
    gw(1, "--presence-debounce-ms", "0", NULL);
    struct ws held, gone;
    open_as(&held, G[0].port, "ev-f1");
    open_as(&gone, G[1].port, "ev-f2");
    ck_assert(wait_events("ev-f1", 1, 3000) >= 0);
    ck_assert(wait_events("ev-f2", 1, 3000) >= 0);
    int primary = c_key_owner(&CL, STREAM), slot = c_keyslot(&CL, STREAM);
    ck_assert_int_gt(primary, 0);
    ck_assert_int_eq(c_wait_replicated(primary, 5000), 1);
    ck_assert_int_eq(c_kill(&CL, primary), 0);
    ck_assert_msg(c_wait_promoted(&CL, primary, slot, 30000, NULL) > 0, "no promotion");
    ws_close(&gone, 1000); /* after the promotion, maybe before the gateways follow */
    ck_assert_msg(wait_events("ev-f2", 2, 15000) >= 0, "no offline after the failover");
    h_sleep_ms(2000);
    ck_assert_int_eq(count_events("ev-f1"), 1);
    ws_close(&held, 1000);
    ck_assert(wait_events("ev-f1", 2, 5000) >= 0);
    open_as(&gone, G[0].port, "ev-f2");
    ck_assert(wait_events("ev-f2", 3, 5000) >= 0);
    int last;
    ck_assert_int_eq(check_alternating("ev-f1", &last), 2);
    ck_assert_int_eq(check_alternating("ev-f2", &last), 3);
    ws_close(&gone, 1000);
}
END_TEST

/* ---- bulk presence ------------------------------------------------------ */

/* GET /presence?accounts=... and notifyctl presence a b c answer for many
 * accounts at once (in a cluster, accounts of every primary). */
START_TEST(bulk_presence)
{
    gw(0, "--api-key", "k-1", NULL);
    gw(1, "--api-key", "k-1", NULL);
    char acct[3][64];
    if (cluster_mode) {
        int ports[3];
        ck_assert_int_eq(c_primaries(&CL, ports, 3), 3);
        for (int i = 0; i < 3; i++)
            ck_assert_int_ge(c_find_account(&CL, "bulk-", ports[i], acct[i], sizeof(acct[i])), 0);
    } else {
        for (int i = 0; i < 3; i++)
            snprintf(acct[i], sizeof(acct[i]), "bulk-%d", i);
    }
    struct ws a, b, c;
    open_as(&a, G[0].port, acct[0]);
    open_as(&b, G[1].port, acct[0]);
    open_as(&c, G[1].port, acct[2]);
    char path[400];
    snprintf(path, sizeof(path), "/presence?accounts=%s,%s,%s", acct[0], acct[1], acct[2]);
    const char *auth = "Authorization: Bearer k-1\r\n";
    json_t *j = NULL;
    long long t0 = h_mono_ms();
    for (;;) { /* presence is written within a few ms of the connects */
        struct h_http_resp resp;
        int status = h_http(G[0].port, "GET", path, auth, NULL, 0, &resp, 3000);
        if (status == 503 && h_mono_ms() - t0 < 3000) { /* Redis not connected yet */
            h_http_resp_free(&resp);
            h_sleep_ms(50);
            continue;
        }
        ck_assert_int_eq(status, 200);
        json_decref(j);
        j = h_ck_json_obj(resp.body);
        h_http_resp_free(&resp);
        json_t *all = json_object_get(j, "accounts");
        ck_assert_int_eq(json_object_size(all), 3);
        json_t *x = json_object_get(all, acct[0]), *z = json_object_get(all, acct[2]);
        if (json_integer_value(json_object_get(x, "connections")) == 2 &&
            json_integer_value(json_object_get(z, "connections")) == 1)
            break;
        ck_assert_msg(h_mono_ms() - t0 < 3000, "presence not seen");
        h_sleep_ms(50);
    }
    json_t *all = json_object_get(j, "accounts");
    ck_assert(json_is_true(json_object_get(json_object_get(all, acct[0]), "online")));
    ck_assert(json_is_false(json_object_get(json_object_get(all, acct[1]), "online")));
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(all, acct[1]), "connections")), 0);
    ck_assert(json_is_true(json_object_get(json_object_get(all, acct[2]), "online")));
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(all, acct[2]), "connections")), 1);
    json_decref(j);

    struct h_http_resp resp;
    ck_assert_int_eq(h_http(G[0].port, "GET", path, NULL, NULL, 0, &resp, 3000), 401);
    h_http_resp_free(&resp);
    ck_assert_int_eq(
        h_http(G[0].port, "GET", path, "Authorization: Bearer nope\r\n", NULL, 0, &resp, 3000),
        401);
    h_http_resp_free(&resp);
    ck_assert_int_eq(
        h_http(G[0].port, "GET", "/presence?accounts=ok,b%24d", auth, NULL, 0, &resp, 3000), 400);
    h_http_resp_free(&resp);
    ck_assert_int_eq(h_http(G[0].port, "GET", "/presence", auth, NULL, 0, &resp, 3000), 400);
    h_http_resp_free(&resp);
    ck_assert_int_eq(h_http_get(G[0].port, "/healthz", NULL), 200); /* still serving */

    /* notifyctl, one pipeline */
    char url[300];
    const char *where[] = {cluster_mode ? "--redis-cluster" : "--redis", url};
    if (cluster_mode)
        snprintf(url, sizeof(url), "%s", seeds);
    else
        h_redis_url(&R, url, sizeof(url));
    const char *argv[] = {NOTIFYCTL_BIN, where[0], where[1], "presence", "--json",
                          acct[0],       acct[1],  acct[2],  NULL};
    char *out = NULL, *err = NULL;
    ck_assert_int_eq(h_run(argv, NULL, 10000, &out, &err), 0);
    json_t *doc = json_loads(out, 0, NULL);
    ck_assert_msg(json_is_array(doc) && json_array_size(doc) == 3, "notifyctl: %s %s", out, err);
    for (int i = 0; i < 3; i++) {
        json_t *e = json_array_get(doc, (size_t)i);
        ck_assert_str_eq(h_jstr(e, "account"), acct[i]);
        ck_assert_int_eq(json_is_true(json_object_get(e, "online")), i != 1);
        ck_assert_int_eq(json_integer_value(json_object_get(e, "live")), i == 0   ? 2
                                                                         : i == 2 ? 1
                                                                                  : 0);
    }
    json_decref(doc);
    free(out);
    free(err);
    ws_close(&a, 1000);
    ws_close(&b, 1000);
    ws_close(&c, 1000);
}
END_TEST

/* ---- the suite ---------------------------------------------------------- */

static Suite *suite(void)
{
    Suite *s = suite_create("presence_events");
    TCase *one = h_tcase(s, "single", 120, single_setup, single_teardown);
    tcase_add_test(one, online_offline_on_connect_and_close);
    tcase_add_test(one, offline_after_kill_within_ttl);
    tcase_add_test(one, debounce);
    tcase_add_test(one, alternation_under_concurrent_churn);
    tcase_add_test(one, bulk_presence);
    tcase_add_test(one, reconnect_takes_a_new_incarnation);
    tcase_add_test(one, bad_flags_exit_2);
    TCase *cl = h_tcase(s, "cluster", 180, cluster_setup, cluster_teardown);
    tcase_add_unchecked_fixture(cl, cluster_create, cluster_destroy);
    tcase_add_test(cl, online_offline_on_connect_and_close);
    tcase_add_test(cl, offline_after_kill_within_ttl);
    tcase_add_test(cl, debounce);
    tcase_add_test(cl, alternation_under_concurrent_churn);
    tcase_add_test(cl, bulk_presence);
    TCase *fo = h_tcase(s, "cluster_failover", 240, failover_setup, failover_teardown);
    tcase_add_test(fo, events_across_a_failover);
    return s;
}

int main(void)
{
    return h_run_suite(suite());
}
