/* Unit tests of gateway/features/webhook: the --webhook-url parser, and
 * one POST on a real libuv loop to a listener of the test's own (its
 * answer's status reaches the callback; a closed port and a silent peer
 * are errors). */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "webhook.h"

START_TEST(url_parse)
{
    struct webhook_url u;
    ck_assert_int_eq(webhook_url_parse("http://example.com/hooks?x=1", &u), 0);
    ck_assert_str_eq(u.host, "example.com");
    ck_assert_str_eq(u.port, "80");
    ck_assert_str_eq(u.path, "/hooks?x=1");
    ck_assert_int_eq(webhook_url_parse("http://127.0.0.1:8081", &u), 0);
    ck_assert_str_eq(u.host, "127.0.0.1");
    ck_assert_str_eq(u.port, "8081");
    ck_assert_str_eq(u.path, "/");
    ck_assert_int_eq(webhook_url_parse("http://[::1]:9000/p", &u), 0);
    ck_assert_str_eq(u.host, "::1");
    ck_assert_str_eq(u.port, "9000");
    ck_assert_int_eq(webhook_url_parse("http://h?q", &u), 0);
    ck_assert_str_eq(u.path, "/?q");
    const char *bad[] = {"https://example.com/", "http://",     "http://:80/",
                         "http://h:/",           "http://h:0/", "http://h:65536/",
                         "http://h:8x/",         "ftp://h/",    "http://[::1/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(webhook_url_parse(bad[i], &u) < 0, "%s accepted", bad[i]);
}
END_TEST

/* A one-shot server: accepts, reads the request, answers with answer (or
 * nothing when NULL) and closes. */
struct server {
    uv_tcp_t listener;
    uv_tcp_t peer;
    const char *answer;
    char got[4096];
    size_t got_len;
    uv_write_t w;
};

static void on_alloc(uv_handle_t *h, size_t n, uv_buf_t *b)
{
    struct server *s = h->data;
    (void)n;
    *b = uv_buf_init(s->got + s->got_len, (unsigned)(sizeof(s->got) - 1 - s->got_len));
}

static void on_written(uv_write_t *w, int status)
{
    struct server *s = w->data;
    (void)status;
    uv_close((uv_handle_t *)&s->peer, NULL);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct server *s = st->data;
    (void)b;
    if (n < 0) {
        if (!uv_is_closing((uv_handle_t *)&s->peer))
            uv_close((uv_handle_t *)&s->peer, NULL);
        return;
    }
    s->got_len += (size_t)n;
    s->got[s->got_len] = '\0';
    char *end = strstr(s->got, "\r\n\r\n");
    if (end && strstr(s->got, "{\"a\":1}") && s->answer) {
        uv_read_stop(st);
        uv_buf_t out = uv_buf_init((char *)s->answer, (unsigned)strlen(s->answer));
        s->w.data = s;
        uv_write(&s->w, st, &out, 1, on_written);
    }
}

static void on_conn(uv_stream_t *l, int status)
{
    struct server *s = l->data;
    ck_assert_int_eq(status, 0);
    uv_tcp_init(l->loop, &s->peer);
    s->peer.data = s;
    ck_assert_int_eq(uv_accept(l, (uv_stream_t *)&s->peer), 0);
    uv_read_start((uv_stream_t *)&s->peer, on_alloc, on_read);
}

static int result;

static void on_done(void *data, int status)
{
    struct server *s = data;
    result = status;
    if (s)
        uv_close((uv_handle_t *)&s->listener, NULL);
}

/* Starts the server on a free port; returns the port. */
static int serve(uv_loop_t *loop, struct server *s, const char *answer)
{
    memset(s, 0, sizeof(*s));
    s->answer = answer;
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    ck_assert_int_eq(uv_tcp_bind(&s->listener, (struct sockaddr *)&a, 0), 0);
    ck_assert_int_eq(uv_listen((uv_stream_t *)&s->listener, 4, on_conn), 0);
    int len = sizeof(a);
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&a, &len);
    return ntohs(a.sin_port);
}

static int post_to(uv_loop_t *loop, int port, struct server *s, int timeout_ms)
{
    struct webhook_url u;
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/in", port);
    ck_assert_int_eq(webhook_url_parse(url, &u), 0);
    result = 1;
    ck_assert_ptr_nonnull(
        webhook_post(loop, &u, "X-Test: 1\r\n", "{\"a\":1}", 7, timeout_ms, on_done, s));
    uv_run(loop, UV_RUN_DEFAULT);
    return result;
}

START_TEST(post_status_and_errors)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct server s;
    int port = serve(&loop, &s, "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
    ck_assert_int_eq(post_to(&loop, port, &s, 2000), 204);
    ck_assert_msg(strstr(s.got, "POST /in HTTP/1.1\r\n") && strstr(s.got, "X-Test: 1\r\n") &&
                      strstr(s.got, "Content-Length: 7\r\n"),
                  "request: %s", s.got);
    port = serve(&loop, &s, "HTTP/1.0 500 Oops\r\n\r\n");
    ck_assert_int_eq(post_to(&loop, port, &s, 2000), 500);
    port = serve(&loop, &s, NULL); /* reads, never answers */
    ck_assert_int_eq(post_to(&loop, port, &s, 300), UV_ETIMEDOUT);
    if (!uv_is_closing((uv_handle_t *)&s.peer))
        uv_close((uv_handle_t *)&s.peer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    port = serve(&loop, &s, "HTTP/1.1 200 OK\r\n\r\n");
    uv_close((uv_handle_t *)&s.listener, NULL); /* nobody listens any more */
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_lt(post_to(&loop, port, NULL, 2000), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("webhook");
    TCase *tc = tcase_create("webhook");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, url_parse);
    tcase_add_test(tc, post_status_and_errors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
