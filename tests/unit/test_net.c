/* Unit tests of gateway/net's routing: which claimed path (net_route) or
 * the adopt function gets a socket, on a real loop with real loopback
 * sockets. Two paths are claimed, as the gateway will with GET /sse next
 * to GET /ws, and request lines come whole or a few bytes at a time. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "httphead.h"
#include "net.h"

static uv_loop_t loop;
static struct net N;
static struct metrics M;
static int port;

/* What each route and the adopt function were given. */
static struct {
    int heads[2];     /* [0] /ws, [1] /sse */
    char path[2][64]; /* the last head's path, per route */
    int adopted;      /* sockets handed off */
} seen;

static void on_head(void *ctx, struct conn *c, const struct httphead *h)
{
    int i = *(const int *)ctx;
    seen.heads[i]++;
    snprintf(seen.path[i], sizeof(seen.path[i]), "%.*s", (int)h->path_len, h->path);
    conn_refuse(c, 404, "seen\n");
}

static void on_message(void *ctx, struct conn *c, int binary, const char *buf, size_t len)
{
    (void)ctx, (void)c, (void)binary, (void)buf, (void)len;
}

static void on_conn(void *ctx, struct conn *c)
{
    (void)ctx, (void)c;
}

static void on_overflow(void *ctx, struct conn *c, uint32_t frames, uint32_t bytes)
{
    (void)ctx, (void)c, (void)frames, (void)bytes;
}

static void on_free(void *ctx, void *data)
{
    (void)ctx, (void)data;
}

static const struct net_handlers handlers = {
    .on_head = on_head,
    .on_message = on_message,
    .on_alive = on_conn,
    .on_timeout = on_conn,
    .on_overflow = on_overflow,
    .on_gone = on_conn,
    .on_free = on_free,
};

static void adopt(void *ctx, int fd)
{
    (void)ctx;
    seen.adopted++;
    close(fd);
}

static const int route_ws = 0, route_sse = 1;

static void setup(void)
{
    memset(&seen, 0, sizeof(seen));
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    const struct net_options opt = {
        .max_message_bytes = 65536,
        .max_queue_messages = 64,
        .max_queue_bytes = 1 << 20,
        .input_batch_ms = 0,
        .io_uring = 0,
    };
    ck_assert_int_eq(net_init(&N, &loop, &opt, &M, adopt, NULL), 0);
    ck_assert_int_eq(net_route(&N, "/ws", &handlers, (void *)&route_ws), 0);
    ck_assert_int_eq(net_route(&N, "/sse", &handlers, (void *)&route_sse), 0);
    char err[128];
    ck_assert_int_eq(net_listen(&N, "127.0.0.1", 0, 0, err, sizeof(err)), 0);
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    ck_assert_int_eq(getsockname(N.listener.fd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
}

static void teardown(void)
{
    net_close(&N);
    uv_run(&loop, UV_RUN_DEFAULT);
    net_free(&N);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void say(int fd, const char *text)
{
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
}

/* Runs the loop for about ms milliseconds. */
static void run_for(int ms)
{
    uint64_t until = uv_now(&loop) + (uint64_t)ms;
    while (uv_now(&loop) < until) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
        uv_update_time(&loop);
    }
}

/* Runs the loop until *counter reaches want (or 2 s pass). */
static int run_until(const int *counter, int want)
{
    for (int i = 0; i < 2000 && *counter < want; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    return *counter >= want;
}

static const char tail[] = " HTTP/1.1\r\nHost: t\r\n\r\n";

static void request(const char *target)
{
    char text[256];
    snprintf(text, sizeof(text), "%s%s", target, tail);
    int fd = dial();
    say(fd, text);
    run_for(0);
    close(fd);
}

START_TEST(test_each_path_to_its_route)
{
    request("GET /ws");
    ck_assert(run_until(&seen.heads[0], 1));
    request("GET /sse?since=1-0");
    ck_assert(run_until(&seen.heads[1], 1));
    ck_assert_str_eq(seen.path[0], "/ws");
    ck_assert_str_eq(seen.path[1], "/sse");
    request("GET /ws?user_id=u1");
    ck_assert(run_until(&seen.heads[0], 2));
    ck_assert_int_eq(seen.adopted, 0);
}
END_TEST

START_TEST(test_other_requests_adopted)
{
    request("GET /wsx");
    ck_assert(run_until(&seen.adopted, 1));
    request("POST /publish");
    ck_assert(run_until(&seen.adopted, 2));
    request("GET /ss");
    ck_assert(run_until(&seen.adopted, 3));
    request("GET /metrics");
    ck_assert(run_until(&seen.adopted, 4));
    ck_assert_int_eq(seen.heads[0] + seen.heads[1], 0);
}
END_TEST

/* A request line that comes a few bytes at a time is routed once it tells
 * the paths apart, not before. */
START_TEST(test_trickling_request_line)
{
    int fd = dial();
    say(fd, "GET /s");
    run_for(100);
    ck_assert_int_eq(seen.heads[0] + seen.heads[1] + seen.adopted, 0);
    say(fd, "se");
    run_for(100);
    ck_assert_int_eq(seen.heads[0] + seen.heads[1] + seen.adopted, 0);
    say(fd, tail);
    ck_assert(run_until(&seen.heads[1], 1));
    close(fd);

    fd = dial();
    say(fd, "GET /w");
    run_for(100);
    ck_assert_int_eq(seen.heads[0] + seen.adopted, 0);
    say(fd, tail); /* "GET /w HTTP": no path of ours */
    ck_assert(run_until(&seen.adopted, 1));
    close(fd);

    fd = dial();
    say(fd, "GE");
    run_for(100);
    say(fd, "T /ws");
    run_for(100);
    ck_assert_int_eq(seen.heads[0], 0);
    say(fd, tail);
    ck_assert(run_until(&seen.heads[0], 1));
    close(fd);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("net");
    TCase *tc = tcase_create("routing");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_each_path_to_its_route);
    tcase_add_test(tc, test_other_requests_adopted);
    tcase_add_test(tc, test_trickling_request_line);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
