/* The Redis node set (gateway/redis/) against real redis-server processes:
 * the notify library is loaded on a primary as the first command of every
 * command connection, once per connection, for one Redis as for a Redis
 * Cluster (here a cluster of one primary owning every slot, which is
 * cheap to start); sharded subscriptions are read like plain ones. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static struct h_redis R;
static struct h_gw G;

static void setup(void)
{
    h_ck_setup(&R, &G);
}

static void teardown(void)
{
    h_ck_teardown(&R, &G);
}

static const char LIB_CALL[] = "FCALL notify_publish 1 notify:stream:{lib} %s";
static const char MSG[] = "{\"type\":\"t\",\"content\":{\"body\":\"b\",\"meta_data\":\"\"}}";

static redisContext *connect_port(int port)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    ck_assert_msg(c && !c->err, "cannot connect to redis on %d", port);
    return c;
}

/* In a CLIENT LIST reply, whether a client other than ours (me) that is
 * not a subscriber has run a command: the gateway's command connection,
 * past the AUTH and SELECT that come before the library (the library is
 * larger than one read of Redis's, so CLIENT LIST can see SELECT done and
 * FUNCTION LOAD still arriving). A PING is left out too: the subscriber
 * connection's first PING comes before its SUBSCRIBE (flags=N still) and
 * says nothing about the command connection. *cmd gets that command's
 * name. */
static int gateway_command_seen(const char *list, long long me, char *cmd, size_t size)
{
    for (const char *line = list; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[2048];
        snprintf(buf, sizeof(buf), "%.*s", (int)len, line);
        long long id = -1;
        const char *c = strstr(buf, " cmd=");
        sscanf(buf, "id=%lld", &id);
        if (id != me && strstr(buf, " flags=N ") && c && strncmp(c + 5, "NULL", 4) != 0 &&
            strncmp(c + 5, "select ", 7) != 0 && strncmp(c + 5, "auth ", 5) != 0 &&
            strncmp(c + 5, "ping ", 5) != 0) {
            snprintf(cmd, size, "%.*s", (int)strcspn(c + 5, " "), c + 5);
            return 1;
        }
        line = end ? end + 1 : NULL;
    }
    return 0;
}

/* Restarts Redis empty, then, in one round trip after another, asks for
 * the client list and calls notify_publish: once the gateway's command
 * connection has run any command, the library must be there. Returns the
 * round trips it took. */
static int restart_and_call_at_once(int round)
{
    ck_assert_msg(h_redis_restart(&R) == 0, "cannot restart redis on port %d", R.port);
    redisContext *c = connect_port(R.port);
    redisReply *r = redisCommand(c, "CLIENT ID");
    ck_assert(r && r->type == REDIS_REPLY_INTEGER);
    long long me = r->integer;
    freeReplyObject(r);
    long long deadline = h_mono_ms() + 20000;
    for (int trips = 1;; trips++) {
        ck_assert_msg(h_mono_ms() < deadline, "round %d: the gateway never reconnected", round);
        redisAppendCommand(c, "CLIENT LIST");
        redisAppendCommand(c, LIB_CALL, MSG);
        redisReply *list = NULL, *call = NULL;
        ck_assert(redisGetReply(c, (void **)&list) == REDIS_OK && list);
        ck_assert(redisGetReply(c, (void **)&call) == REDIS_OK && call);
        char cmd[64];
        int seen = list->type == REDIS_REPLY_STRING &&
                   gateway_command_seen(list->str, me, cmd, sizeof(cmd));
        if (seen)
            ck_assert_msg(call->type == REDIS_REPLY_STRING,
                          "round %d: the gateway's command connection ran %s, and FCALL "
                          "notify_publish then answered: %s",
                          round, cmd, call->type == REDIS_REPLY_ERROR ? call->str : "(not an id)");
        freeReplyObject(list);
        freeReplyObject(call);
        if (seen) {
            redisFree(c);
            return trips;
        }
    }
}

START_TEST(library_first_after_restart)
{
    H_GW(&G, &R, "--auth", "none");
    ck_assert(h_http_wait_status(G.port, "/readyz", 200, 10000));
    for (int round = 1; round <= 5; round++) {
        int trips = restart_and_call_at_once(round);
        fprintf(stderr,
                "[redis] restart %d: FCALL worked from the gateway's first command (%d "
                "round trips of polling)\n",
                round, trips);
        ck_assert_msg(h_http_wait_status(G.port, "/readyz", 200, 10000),
                      "/readyz not 200 after restart %d", round);
    }
}
END_TEST

/* FUNCTION LOAD calls a server has run. */
static long long function_loads(int port)
{
    redisContext *c = connect_port(port);
    redisReply *r = redisCommand(c, "INFO commandstats");
    ck_assert(r && r->type == REDIS_REPLY_STRING);
    const char *at = strstr(r->str, "cmdstat_function|load:calls=");
    long long n = at ? atoll(at + strlen("cmdstat_function|load:calls=")) : 0;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

START_TEST(library_loaded_once_single)
{
    H_GW(&G, &R, "--auth", "none");
    ck_assert(h_http_wait_status(G.port, "/readyz", 200, 10000));
    h_sleep_ms(300);
    ck_assert_int_eq(function_loads(R.port), 1);
}
END_TEST

/* ---- a cluster of one primary ------------------------------------------- */

static struct h_redis C; /* cluster-enabled redis-server owning every slot */

static void cluster_setup(void)
{
    memset(&G, 0, sizeof(G));
    memset(&C, 0, sizeof(C));
    for (int attempt = 0; attempt < 5 && !C.port; attempt++) {
        int port = h_free_port();
        ck_assert_int_gt(port, 0);
        char ports[16];
        snprintf(ports, sizeof(ports), "%d", port);
        const char *argv[] = {REDIS_SERVER_BIN,
                              "--port",
                              ports,
                              "--bind",
                              "127.0.0.1",
                              "--save",
                              "",
                              "--appendonly",
                              "no",
                              "--dir",
                              ".",
                              "--cluster-enabled",
                              "yes",
                              "--cluster-config-file",
                              "nodes.conf",
                              NULL};
        ck_assert_int_eq(h_proc_spawn(&C.proc, argv, NULL), 0);
        long long deadline = h_mono_ms() + 5000;
        while (h_mono_ms() < deadline && h_proc_running(&C.proc)) {
            struct timeval tv = {1, 0};
            redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
            redisReply *r = c && !c->err ? redisCommand(c, "PING") : NULL;
            int ok = r && r->type == REDIS_REPLY_STATUS;
            freeReplyObject(r);
            redisFree(c);
            if (ok) {
                C.port = port;
                break;
            }
            h_sleep_ms(20);
        }
        if (!C.port)
            h_proc_cleanup(&C.proc);
    }
    ck_assert_msg(C.port, "cannot start a cluster-enabled redis-server");
    redisReply *r = h_redis_cmd(&C, "CLUSTER ADDSLOTSRANGE 0 16383");
    ck_assert_msg(r && r->type == REDIS_REPLY_STATUS, "CLUSTER ADDSLOTSRANGE failed");
    freeReplyObject(r);
    long long deadline = h_mono_ms() + 10000;
    for (;;) {
        r = h_redis_cmd(&C, "CLUSTER INFO");
        int ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok");
        freeReplyObject(r);
        if (ok)
            break;
        ck_assert_msg(h_mono_ms() < deadline, "the cluster of one never reached state ok");
        h_sleep_ms(50);
    }
}

static void cluster_teardown(void)
{
    if (G.proc.pid) {
        char *log = h_gw_stderr(&G);
        int clean = !log || (!strstr(log, "AddressSanitizer") && !strstr(log, "runtime error:"));
        free(log);
        h_gw_kill(&G);
        ck_assert_msg(clean, "sanitizer report in the gateway's stderr");
    }
    h_proc_cleanup(&C.proc);
}

static void cluster_gw_start(void)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        int port = h_free_port();
        ck_assert_int_gt(port, 0);
        char listen[64], node[32], seeds[64];
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        snprintf(node, sizeof(node), "itr-%d", port);
        snprintf(seeds, sizeof(seeds), "127.0.0.1:%d", C.port);
        const char *argv[] = {GATEWAY_BIN, "--listen",  listen, "--redis-cluster",
                              seeds,       "--node-id", node,   "--log-level",
                              "debug",     "--auth",    "none", NULL};
        ck_assert_int_eq(h_proc_spawn(&G.proc, argv, NULL), 0);
        G.port = port;
        if (h_http_wait_status(port, "/healthz", 200, 10000))
            return;
        h_proc_cleanup(&G.proc);
    }
    ck_abort_msg("the cluster gateway did not start");
}

START_TEST(library_loaded_once_per_primary)
{
    cluster_gw_start();
    ck_assert_msg(h_http_wait_status(G.port, "/readyz", 200, 10000), "cluster gateway not ready");
    h_sleep_ms(300);
    ck_assert_int_eq(function_loads(C.port), 1);
}
END_TEST

/* A sharded subscription acknowledged and its messages delivered, read in
 * place like plain ones; the broadcast channel too. */
START_TEST(sharded_delivery)
{
    cluster_gw_start();
    ck_assert(h_http_wait_status(G.port, "/readyz", 200, 10000));
    struct ws c;
    free(h_ck_ws_open(&c, G.port, "/ws?user_id=sh1", 5000));
    redisReply *r = h_redis_cmd(&C, "PUBSUB SHARDNUMSUB %s", "notify:acct:{sh1}");
    ck_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    ck_assert_int_eq(r->element[1]->integer, 1);
    freeReplyObject(r);
    char *e = h_envelope("note", "sharded-body");
    r = h_redis_cmd(&C, "SPUBLISH %s %s", "notify:acct:{sh1}", e);
    ck_assert(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);
    char *t = ws_recv_text(&c, 3000);
    ck_assert_msg(t && strstr(t, "sharded-body"), "no sharded message: %s", t ? t : "(none)");
    free(t);
    r = h_redis_cmd(&C, "SPUBLISH %s %s", "notify:broadcast", e);
    ck_assert(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);
    t = ws_recv_text(&c, 3000);
    ck_assert_msg(t && strstr(t, "sharded-body"), "no broadcast: %s", t ? t : "(none)");
    free(t);
    free(e);
    ws_close(&c, 1000);
    /* the last connection gone, the channel is unsubscribed */
    long long deadline = h_mono_ms() + 3000;
    for (;;) {
        r = h_redis_cmd(&C, "PUBSUB SHARDNUMSUB %s", "notify:acct:{sh1}");
        long long n = r && r->type == REDIS_REPLY_ARRAY ? r->element[1]->integer : -1;
        freeReplyObject(r);
        if (n == 0)
            break;
        ck_assert_msg(h_mono_ms() < deadline, "still subscribed after the last close");
        h_sleep_ms(50);
    }
}
END_TEST

static Suite *redis_suite(void)
{
    Suite *s = suite_create("redis");
    TCase *tc = h_tcase(s, "single", 120, setup, teardown);
    tcase_add_test(tc, library_first_after_restart);
    tcase_add_test(tc, library_loaded_once_single);
    tc = h_tcase(s, "cluster_of_one", 60, cluster_setup, cluster_teardown);
    tcase_add_test(tc, library_loaded_once_per_primary);
    tcase_add_test(tc, sharded_delivery);
    return s;
}

int main(void)
{
    return h_run_suite(redis_suite());
}
