/* test_operations: what an operator of many nodes relies on, against a real
 * redis-server and real gateway processes:
 *   - --reuse-port: two processes on one port both take connections (the
 *     kernel spreads them) and together deliver to every account; while one
 *     drains, every new connection on the port lands on the other;
 *   - /metrics while traffic flows: the counters, gauges and the delivery
 *     latency histogram move by exactly what happened. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static struct h_redis R;
static struct h_gw GA, GB;

static void setup(void)
{
    memset(&GA, 0, sizeof(GA));
    memset(&GB, 0, sizeof(GB));
    ck_assert_msg(h_redis_start(&R) == 0, "cannot start redis-server");
}

static void teardown(void)
{
    h_proc_cleanup(&GA.proc);
    h_proc_cleanup(&GB.proc);
    h_redis_stop(&R);
}

#define N_REUSE 40

/* GA and GB, two processes on one port with --reuse-port (rp-a, rp-b). */
static void start_pair(const char *drain_seconds)
{
    ck_assert(h_gw_startl(&GA, &R, "--auth", "none", "--reuse-port", "--node-id", "rp-a",
                          "--drain-seconds", drain_seconds, (const char *)NULL) == 0);
    /* The second process gets exactly the first one's port (the harness
     * would pick a free one), so it is started by hand. */
    char listen[64], redis[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", GA.port);
    h_redis_url(&R, redis, sizeof(redis));
    const char *argv[] = {
        GATEWAY_BIN,    "--listen",  listen, "--redis",         redis,         "--auth", "none",
        "--reuse-port", "--node-id", "rp-b", "--drain-seconds", drain_seconds, NULL};
    ck_assert_int_eq(h_proc_spawn(&GB.proc, argv, NULL), 0);
    GB.port = GA.port;
    long long deadline = h_mono_ms() + 10000;
    int listening = 0;
    while (!listening && h_proc_running(&GB.proc) && h_mono_ms() < deadline) {
        char *err = h_proc_stderr(&GB.proc);
        listening = strstr(err, "msg=redis_ready") != NULL;
        free(err);
        if (!listening)
            h_sleep_ms(50);
    }
    ck_assert_msg(listening, "a second process could not share the port with --reuse-port");
}

START_TEST(test_reuse_port_spreads_connections)
{
    start_pair("10");
    long long deadline;

    static struct ws c[N_REUSE];
    char account[N_REUSE][16];
    for (int i = 0; i < N_REUSE; i++) {
        snprintf(account[i], sizeof(account[i]), "rp%d", i);
        h_ck_open_as(&c[i], GA.port, account[i]);
    }
    /* Presence says which process holds each connection. */
    long long on_a = 0, on_b = 0;
    deadline = h_mono_ms() + 3000;
    do {
        on_a = on_b = 0;
        for (int i = 0; i < N_REUSE; i++) {
            on_a += h_presence_members_of(&R, account[i], "rp-a");
            on_b += h_presence_members_of(&R, account[i], "rp-b");
        }
        if (on_a + on_b == N_REUSE)
            break;
        h_sleep_ms(50);
    } while (h_mono_ms() < deadline);
    fprintf(stderr, "[operations] reuse-port: %lld connections on rp-a, %lld on rp-b\n", on_a,
            on_b);
    ck_assert_int_eq(on_a + on_b, N_REUSE);
    ck_assert_msg(on_a > 0 && on_b > 0, "the kernel gave every connection to one process");

    /* Each process subscribed the accounts it holds: every one is reached. */
    for (int i = 0; i < N_REUSE; i++) {
        char chan[64], msg[64];
        ck_assert_int_lt(snprintf(chan, sizeof(chan), "notify:acct:{%s}", account[i]),
                         (int)sizeof(chan));
        snprintf(msg, sizeof(msg), "{\"type\":\"t\",\"n\":%d}", i);
        ck_assert_int_eq(h_redis_publish(&R, chan, msg, strlen(msg)), 1);
        char *got = ws_recv_text(&c[i], 5000);
        ck_assert_msg(got && !strcmp(got, msg), "account %s got '%s'", account[i],
                      got ? got : "(nothing)");
        free(got);
    }
    for (int i = 0; i < N_REUSE; i++)
        ws_close(&c[i], 1000);
}
END_TEST

/* A rolling restart of the processes on one port: while rp-a drains
 * (SIGTERM: its clients are sent away with 1001), the clients it sends away
 * and every new one must land on rp-b at the first try, not get rp-a's 503
 * because the kernel still hands rp-a its share of the port. */
START_TEST(test_reuse_port_drain_hands_over)
{
    start_pair("6");
    ck_assert_int_eq(h_gw_signal(&GA, SIGTERM), 0);
    /* rp-a's /readyz turns 503 at once; give the signal that long. */
    h_sleep_ms(300);
    int refused = 0, upgraded = 0;
    for (int i = 0; i < N_REUSE; i++) {
        struct ws c;
        char path[64];
        snprintf(path, sizeof(path), "/ws?user_id=dr%d", i);
        int st = ws_connect(&c, GA.port, path, NULL, 3000);
        if (st == 101) {
            upgraded++;
            ws_close(&c, 1000);
        } else {
            refused++;
        }
    }
    fprintf(stderr, "[operations] during a drain: %d upgraded, %d refused\n", upgraded, refused);
    ck_assert_msg(refused == 0, "%d of %d connections were refused while one process drained",
                  refused, N_REUSE);
    ck_assert_int_eq(h_gw_wait(&GA, 15000), 0);
}
END_TEST

static char *metrics(int port)
{
    char *body = NULL;
    ck_assert_int_eq(h_http_get(port, "/metrics", &body), 200);
    return body;
}

static double metric(const char *text, const char *name)
{
    return h_metric_sum(text, name);
}

START_TEST(test_metrics_move_with_traffic)
{
    ck_assert(h_gw_startl(&GA, &R, "--auth", "none", (const char *)NULL) == 0);
    char *before = metrics(GA.port);

    struct ws a, b, bad;
    h_ck_open_as(&a, GA.port, "m1");
    h_ck_open_as(&b, GA.port, "m1");
    ck_assert_int_eq(ws_connect(&bad, GA.port, "/ws?user_id=not/valid", NULL, 5000), 400);
    ws_close(&bad, 1000);

    enum { N = 25 };
    for (int i = 0; i < N; i++) {
        char msg[64];
        snprintf(msg, sizeof(msg), "{\"type\":\"t\",\"n\":%d}", i);
        ck_assert_int_eq(h_redis_publish(&R, "notify:acct:{m1}", msg, strlen(msg)), 1);
    }
    ck_assert_int_eq(h_redis_publish(&R, "notify:acct:{m1}", "not json", 8), 1);
    for (int i = 0; i < N; i++) {
        char *x = ws_recv_text(&a, 5000), *y = ws_recv_text(&b, 5000);
        ck_assert_msg(x && y, "message %d missing", i);
        free(x);
        free(y);
    }
    char *during = metrics(GA.port);
    ck_assert_int_eq((int)metric(during, "notify_connections"), 2);
    ck_assert_int_eq((int)metric(during, "notify_accounts"), 1);
    ck_assert_int_eq((int)metric(during, "notify_subscribed_accounts"), 1);
    ck_assert_int_eq((int)(metric(during, "notify_connections_accepted_total") -
                           metric(before, "notify_connections_accepted_total")),
                     2);
    ck_assert_int_eq((int)(metric(during, "notify_connections_rejected_total") -
                           metric(before, "notify_connections_rejected_total")),
                     1);
    ck_assert_msg(strstr(during, "notify_connections_rejected_total{reason=\"bad_request\"} 1"),
                  "the 400 is not counted as bad_request");
    ck_assert_int_eq((int)(metric(during, "notify_messages_received_total") -
                           metric(before, "notify_messages_received_total")),
                     N + 1);
    ck_assert_int_eq((int)(metric(during, "notify_messages_delivered_total") -
                           metric(before, "notify_messages_delivered_total")),
                     2 * N);
    ck_assert_int_eq((int)(metric(during, "notify_delivery_latency_seconds_count") -
                           metric(before, "notify_delivery_latency_seconds_count")),
                     2 * N);
    ck_assert_msg(strstr(during, "notify_messages_dropped_total{reason=\"invalid_payload\"} 1"),
                  "the invalid payload is not counted");
    ck_assert_int_eq((int)metric(during, "notify_queued_bytes"), 0);
    ck_assert_int_eq((int)metric(during, "notify_ready"), 1);
    ck_assert_int_eq((int)metric(during, "notify_redis_up"), 1);

    /* Closing one connection moves the gauges and the closed counter. */
    ws_close(&a, 1000);
    long long deadline = h_mono_ms() + 3000;
    char *after = NULL;
    do {
        free(after);
        after = metrics(GA.port);
        if ((int)metric(after, "notify_connections") == 1)
            break;
        h_sleep_ms(50);
    } while (h_mono_ms() < deadline);
    ck_assert_int_eq((int)metric(after, "notify_connections"), 1);
    ck_assert_msg(strstr(after, "notify_connections_closed_total{reason=\"client\"} 1"),
                  "the client's close is not counted");
    ws_close(&b, 1000);
    free(before);
    free(during);
    free(after);
}
END_TEST

/* utime + stime of pid, in clock ticks. */
static long long cpu_ticks(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    char *stat = h_read_file(path);
    ck_assert_ptr_nonnull(stat);
    const char *p = strrchr(stat, ')'); /* the command name may hold spaces */
    long long utime = 0, stime = 0;
    ck_assert_int_eq(
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &utime, &stime), 2);
    free(stat);
    return utime + stime;
}

/* A process out of file descriptors (EMFILE on accept) must not spin on its
 * readable listening socket, and must accept again once some are free. */
START_TEST(test_out_of_descriptors)
{
    char listen[64], redis[64];
    int port = h_free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    h_redis_url(&R, redis, sizeof(redis));
    const char *argv[] = {"prlimit", "--nofile=64:64", GATEWAY_BIN, "--listen", listen, "--redis",
                          redis,     "--auth",         "none",      NULL};
    ck_assert_int_eq(h_proc_spawn(&GA.proc, argv, NULL), 0);
    GA.port = port;
    ck_assert_msg(h_http_wait_status(port, "/readyz", 200, 10000), "gateway not ready");

    enum { N_FD = 80 };
    int fds[N_FD];
    for (int i = 0; i < N_FD; i++)
        fds[i] = h_tcp_connect(port, 2000); /* the kernel's backlog takes them all */
    h_sleep_ms(300);
    long long t0 = cpu_ticks(GA.proc.pid);
    h_sleep_ms(2000);
    long long used = cpu_ticks(GA.proc.pid) - t0;
    fprintf(stderr, "[operations] out of descriptors: %lld ticks of CPU in 2 s\n", used);
    ck_assert_msg(used < 50, "the gateway spins while out of descriptors (%lld ticks in 2 s)",
                  used);
    for (int i = 0; i < N_FD; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    struct ws c;
    long long deadline = h_mono_ms() + 5000;
    int status = -1;
    while (status != 101 && h_mono_ms() < deadline) {
        status = ws_connect(&c, port, "/ws?user_id=fd1", NULL, 2000);
        if (status != 101)
            h_sleep_ms(100);
    }
    ck_assert_int_eq(status, 101);
    char *reg = ws_recv_text(&c, 5000);
    ck_assert_msg(reg && strstr(reg, "\"register\""), "no register reply after recovery");
    free(reg);
    ws_close(&c, 1000);
    ck_assert(h_proc_running(&GA.proc));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gateway-operations");
    TCase *tc = tcase_create("reuse-port");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_reuse_port_spreads_connections);
    tcase_add_test(tc, test_reuse_port_drain_hands_over);
    suite_add_tcase(s, tc);
    tc = tcase_create("descriptors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_out_of_descriptors);
    suite_add_tcase(s, tc);
    tc = tcase_create("metrics");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_metrics_move_with_traffic);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
