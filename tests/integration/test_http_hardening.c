/* Plain HTTP (served by lws) against requests it would mishandle, as a
 * client on a raw socket sees it (README.md, HTTP endpoints): a chunked
 * body or a POST without Content-Length is answered 411, a request with
 * both Content-Length and Transfer-Encoding 400 with nothing after it read
 * as a second request, a head over 9 KiB 431, and a POST /publish body that
 * trickles in is cut off with 408 once PUBLISH_BODY_TIMEOUT_MS (10 s) has
 * passed. Each on the first request of a connection (screened before lws
 * sees it) and, where lws parses the head, on a later one of a kept-alive
 * connection. Each test runs against a real redis-server and the real
 * notify-gateway. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

#define API_KEY "k3y"
#define GW() H_GW(&G, &R, "--auth", "none", "--api-key", API_KEY)

/* What one account's publish looks like. */
static const char BODY[] = "{\"accounts\":[\"u1\"],\"message\":{\"type\":\"t\"}}";

/* PUBLISH_BODY_TIMEOUT_MS in gateway/features/publish_api.h. */
#define BODY_TIMEOUT_MS 10000

/* An answer read until the server closed the connection. */
struct answer {
    char buf[65536];
    size_t len;
    int closed;    /* the server closed within the wait */
    long long ms;  /* how long after the request that was */
    int status;    /* of the first answer; -1 when none */
    int n_answers; /* "HTTP/1.1 " status lines in it */
};

static void parse_answer(struct answer *a)
{
    a->buf[a->len] = '\0';
    a->status = -1;
    if (!strncmp(a->buf, "HTTP/1.1 ", 9))
        sscanf(a->buf + 9, "%d", &a->status);
    a->n_answers = h_count(a->buf, "HTTP/1.1 ");
}

/* Sends req on fd (connected) and reads until the server closes, at most
 * wait_ms. */
static void send_and_read(int fd, const char *req, size_t len, int wait_ms, struct answer *a)
{
    ck_assert_int_eq(h_send_all(fd, req, len, 3000), 0);
    long long t0 = h_mono_ms();
    a->closed = h_read_until_closed(fd, wait_ms, a->buf, sizeof(a->buf) - 1, &a->len);
    a->ms = h_mono_ms() - t0;
    parse_answer(a);
}

/* req as the first request of a new connection. */
static void first_request(const char *req, size_t len, struct answer *a)
{
    int fd = h_tcp_connect(G.port, 3000);
    ck_assert(fd >= 0);
    send_and_read(fd, req, len, 5000, a);
    close(fd);
}

/* Reads one whole answer to GET /healthz (Content-Length: 3) from fd. */
static void read_healthz(int fd)
{
    char *raw = NULL;
    size_t len = 0;
    long hlen = h_read_http_head(fd, 3000, &raw, &len);
    ck_assert_msg(hlen > 0, "no answer to the first GET /healthz");
    ck_assert_msg(!strncmp(raw, "HTTP/1.1 200 ", 13), "first GET /healthz: %.40s", raw);
    char cl[16];
    ck_assert(h_http_header(raw, "content-length", cl, sizeof(cl)));
    size_t want = (size_t)hlen + (size_t)atoi(cl);
    long long deadline = h_mono_ms() + 3000;
    while (len < want && h_mono_ms() < deadline) { /* the body may lag its head */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        char b[64];
        ssize_t n;
        if (poll(&p, 1, 100) > 0 && (n = recv(fd, b, sizeof(b), 0)) > 0)
            len += (size_t)n;
    }
    ck_assert_msg(len == want, "first GET /healthz: %zu bytes, want %zu", len, want);
    free(raw);
}

/* req as the second request of a connection kept alive after a GET
 * /healthz: lws parses that head itself. */
static void later_request(const char *req, size_t len, struct answer *a)
{
    static const char first[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    int fd = h_tcp_connect(G.port, 3000);
    ck_assert(fd >= 0);
    ck_assert_int_eq(h_send_all(fd, first, sizeof(first) - 1, 3000), 0);
    read_healthz(fd);
    send_and_read(fd, req, len, 5000, a);
    close(fd);
}

/* A POST /publish with extra header lines (each ending in CRLF) and body. */
static size_t publish_req(char *out, size_t size, const char *headers, const char *body)
{
    int n = snprintf(out, size,
                     "POST /publish HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Authorization: Bearer " API_KEY "\r\n%s\r\n%s",
                     headers, body);
    ck_assert(n > 0 && (size_t)n < size);
    return (size_t)n;
}

static void expect_refused(const struct answer *a, const char *what, int status, const char *reason)
{
    ck_assert_msg(a->closed, "%s: not answered and closed within 5 s (%zu bytes: %.60s)", what,
                  a->len, a->buf);
    ck_assert_msg(a->ms < 2000, "%s: closed only after %lld ms", what, a->ms);
    ck_assert_msg(a->status == status, "%s: status %d, want %d (%.80s)", what, a->status, status,
                  a->buf);
    ck_assert_msg(a->n_answers == 1, "%s: %d answers, want 1:\n%s", what, a->n_answers, a->buf);
    const char *body = strstr(a->buf, "\r\n\r\n");
    ck_assert_msg(body && !strcmp(body + 4, reason), "%s: body %s, want %s", what,
                  body ? body + 4 : "(none)", reason);
}

/* Opens a WebSocket as account, to see what a publish reached. */
static void open_ws(struct ws *c, const char *account)
{
    char path[64];
    snprintf(path, sizeof(path), "/ws?user_id=%s", account);
    free(h_ck_ws_open(c, G.port, path, 5000));
    ck_assert(h_redis_wait_numsub(&R, h_chan(account), 1, 3000));
}

static void expect_nothing(struct ws *c, const char *what)
{
    char *text = ws_recv_text(c, 300);
    ck_assert_msg(text == NULL, "%s: a refused request was published: %s", what, text);
}

/* ---- tests -------------------------------------------------------------- */

START_TEST(test_chunked_411)
{
    GW();
    struct ws c;
    open_ws(&c, "u1");
    char req[1024];
    char chunked[256];
    snprintf(chunked, sizeof(chunked), "%zx\r\n%s\r\n0\r\n\r\n", strlen(BODY), BODY);
    size_t len = publish_req(req, sizeof(req), "Transfer-Encoding: chunked\r\n", chunked);
    const char *why = "Transfer-Encoding not supported: send Content-Length\n";
    struct answer a;
    first_request(req, len, &a);
    expect_refused(&a, "chunked, first request", 411, why);
    later_request(req, len, &a);
    expect_refused(&a, "chunked, kept-alive request", 411, why);
    expect_nothing(&c, "chunked");
    ck_assert_int_eq(h_ck_metric(G.port, "notify_connections_rejected_total{reason=\"malformed\"}"),
                     2);
    ws_close(&c, 1000);
}
END_TEST

START_TEST(test_no_length_411)
{
    GW();
    struct ws c;
    open_ws(&c, "u1");
    char req[1024];
    size_t len = publish_req(req, sizeof(req), "", BODY);
    struct answer a;
    first_request(req, len, &a);
    expect_refused(&a, "no Content-Length, first request", 411, "Content-Length required\n");
    later_request(req, len, &a);
    expect_refused(&a, "no Content-Length, kept-alive request", 411, "Content-Length required\n");
    expect_nothing(&c, "no Content-Length");
    /* Bodiless methods need no length; a length of 0 is a length. */
    static const char get[] =
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    first_request(get, sizeof(get) - 1, &a);
    ck_assert_msg(a.closed && a.status == 200, "GET /healthz: %d", a.status);
    len = publish_req(req, sizeof(req), "Content-Length: 0\r\nConnection: close\r\n", "");
    first_request(req, len, &a);
    ck_assert_msg(a.closed && a.status == 400, "empty POST /publish: %d, want 400 (bad body)",
                  a.status);
    ws_close(&c, 1000);
}
END_TEST

/* Content-Length covers the body; a proxy going by Transfer-Encoding would
 * read "0" as the end and the GET as a second request. */
START_TEST(test_length_and_chunked_400)
{
    GW();
    struct ws c;
    open_ws(&c, "u1");
    char headers[128], req[1024];
    snprintf(headers, sizeof(headers), "Content-Length: %zu\r\nTransfer-Encoding: chunked\r\n",
             strlen(BODY));
    char body[512];
    snprintf(body, sizeof(body), "%sGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", BODY);
    size_t len = publish_req(req, sizeof(req), headers, body);
    const char *why = "both Content-Length and Transfer-Encoding\n";
    struct answer a;
    first_request(req, len, &a);
    expect_refused(&a, "Content-Length and chunked, first request", 400, why);
    later_request(req, len, &a);
    expect_refused(&a, "Content-Length and chunked, kept-alive request", 400, why);
    /* The other order, and a body that is a smuggled request itself. */
    len = publish_req(req, sizeof(req), "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                      "0\r\n\r\nPOST /publish HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
    first_request(req, len, &a);
    expect_refused(&a, "chunked and Content-Length", 400, why);
    expect_nothing(&c, "Content-Length and chunked");
    ck_assert_int_eq(h_ck_metric(G.port, "notify_connections_rejected_total{reason=\"malformed\"}"),
                     3);
    ws_close(&c, 1000);
}
END_TEST

/* GET /healthz with header lines padding the head to exactly total bytes
 * (n_pad lines, besides Host). */
static char *padded_head(size_t total, int n_pad)
{
    char *req = malloc(total + 1);
    ck_assert_ptr_nonnull(req);
    size_t n = (size_t)snprintf(req, total + 1, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    size_t fixed = n + 2 + (size_t)n_pad * strlen("X-Pad-00: \r\n");
    ck_assert(total > fixed + (size_t)n_pad);
    size_t room = total - fixed;
    for (int i = 0; i < n_pad; i++) {
        size_t v = room / (size_t)(n_pad - i);
        room -= v;
        n += (size_t)snprintf(req + n, total + 1 - n, "X-Pad-%02d: ", i);
        memset(req + n, 'a', v);
        n += v;
        memcpy(req + n, "\r\n", 2);
        n += 2;
    }
    memcpy(req + n, "\r\n", 2);
    n += 2;
    ck_assert_uint_eq(n, total);
    req[n] = '\0';
    return req;
}

START_TEST(test_big_head_431)
{
    GW();
    struct answer a;
    /* 12 KiB of head: more than lws has room for (it would drop it). */
    char *req = padded_head(12 * 1024, 1);
    first_request(req, strlen(req), &a);
    expect_refused(&a, "12 KiB head", 431, "request head too large\n");
    free(req);
    /* One byte over the limit, however it is spread. */
    req = padded_head(9216 + 1, 31);
    first_request(req, strlen(req), &a);
    expect_refused(&a, "9 KiB + 1 head", 431, "request head too large\n");
    free(req);
    /* The limit itself is served, in one header line or in 32 (lws spends
     * more than the head's bytes on each line: it must still fit). */
    int lines[] = {1, 31};
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        req = padded_head(9216, lines[i]);
        first_request(req, strlen(req), &a);
        ck_assert_msg(a.status == 200, "9 KiB head in %d lines: %d, want 200", lines[i] + 1,
                      a.status);
        free(req);
    }
    /* 33 header lines. */
    req = padded_head(2048, 32);
    first_request(req, strlen(req), &a);
    expect_refused(&a, "33 header lines", 431, "too many headers\n");
    free(req);
    ck_assert_int_eq(h_ck_metric(G.port, "notify_connections_rejected_total{reason=\"malformed\"}"),
                     3);
}
END_TEST

#define N_TRICKLE 5

/* Bodies sent a byte a second (lws's own 10 s timeout restarts with each
 * byte): each is answered 408 and closed once the body deadline passes. */
START_TEST(test_trickled_body_408)
{
    GW();
    int fd[N_TRICKLE];
    char req[1024];
    size_t len = publish_req(req, sizeof(req), "Content-Length: 1000\r\n", "");
    for (int i = 0; i < N_TRICKLE; i++) {
        fd[i] = h_tcp_connect(G.port, 3000);
        ck_assert(fd[i] >= 0);
        ck_assert_int_eq(h_send_all(fd[i], req, len, 3000), 0);
    }
    long long t0 = h_mono_ms(), next_byte = t0;
    struct answer a[N_TRICKLE];
    int open = N_TRICKLE;
    memset(a, 0, sizeof(a));
    while (open > 0 && h_mono_ms() - t0 < BODY_TIMEOUT_MS + 3000) {
        int now_byte = h_mono_ms() >= next_byte;
        if (now_byte)
            next_byte += 1000;
        for (int i = 0; i < N_TRICKLE; i++) {
            if (a[i].closed)
                continue;
            if (now_byte)
                (void)send(fd[i], "{", 1, MSG_NOSIGNAL);
            ssize_t n;
            while ((n = recv(fd[i], a[i].buf + a[i].len, sizeof(a[i].buf) - 1 - a[i].len, 0)) > 0)
                a[i].len += (size_t)n;
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                a[i].closed = 1;
                a[i].ms = h_mono_ms() - t0;
                open--;
            }
        }
        h_sleep_ms(20);
    }
    for (int i = 0; i < N_TRICKLE; i++) {
        close(fd[i]);
        parse_answer(&a[i]);
        ck_assert_msg(a[i].closed, "trickled body %d: still open after %d ms", i,
                      BODY_TIMEOUT_MS + 3000);
        ck_assert_msg(a[i].ms >= BODY_TIMEOUT_MS - 500 && a[i].ms <= BODY_TIMEOUT_MS + 1500,
                      "trickled body %d: closed after %lld ms, want about %d", i, a[i].ms,
                      BODY_TIMEOUT_MS);
        ck_assert_msg(a[i].status == 408 && a[i].n_answers == 1, "trickled body %d: %.60s", i,
                      a[i].buf);
    }
    ck_assert_int_eq(h_ck_metric(G.port, "notify_connections_rejected_total{reason=\"timeout\"}"),
                     N_TRICKLE);
    /* A body that comes whole is answered as before. */
    int c = h_tcp_connect(G.port, 3000);
    ck_assert(c >= 0);
    char lenhdr[64];
    snprintf(lenhdr, sizeof(lenhdr), "Content-Length: %zu\r\n", strlen(BODY));
    len = publish_req(req, sizeof(req), lenhdr, BODY);
    ck_assert_int_eq(h_send_all(c, req, len, 3000), 0);
    char *raw = NULL;
    size_t got = 0;
    ck_assert(h_read_http_head(c, 3000, &raw, &got) > 0);
    ck_assert_msg(!strncmp(raw, "HTTP/1.1 200 ", 13), "whole body: %.60s", raw);
    free(raw);
    close(c);
}
END_TEST

/* ---- suite -------------------------------------------------------------- */

int main(void)
{
    Suite *s = suite_create("gateway-http-hardening");
    TCase *tc = h_tcase(s, "framing", 30, setup, teardown);
    tcase_add_test(tc, test_chunked_411);
    tcase_add_test(tc, test_no_length_411);
    tcase_add_test(tc, test_length_and_chunked_400);
    tcase_add_test(tc, test_big_head_431);
    tc = h_tcase(s, "body-timeout", 40, setup, teardown);
    tcase_add_test(tc, test_trickled_body_408);
    return h_run_suite(s);
}
