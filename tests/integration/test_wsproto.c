/* The WebSocket protocol as a client sees it, now that the gateway speaks
 * it on its own sockets (gateway/net/conn.c, gateway/session/ws.c): the handshake's
 * answers byte for byte, requests that arrive in pieces, control frames,
 * the close handshake, protocol errors (1002), frames batched into one
 * write or one frame spread over many, a pipelined burst of notifications,
 * the request head timeout, and client input gathered while the node is
 * idle (--input-batch-ms). Each test runs against a real redis-server
 * and the real notify-gateway (--auth none). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

#define GW(...) H_GW(&G, &R, __VA_ARGS__)

/* RFC 6455 section 1.3's sample handshake. */
static const char SAMPLE_KEY[] = "dGhlIHNhbXBsZSBub25jZQ==";
static const char SAMPLE_ACCEPT[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

static const char HEARTBEAT[] = "{\"type\":\"heartbeat\"}";

/* ---- helpers ------------------------------------------------------------ */

/* Asserts that the next text message is an envelope of type with
 * content.body == body (body NULL: any). */
static void expect_message(struct ws *c, const char *type, const char *body, const char *what)
{
    char *text = ws_recv_text(c, 5000);
    ck_assert_msg(text != NULL, "%s: no message (close %d, eof %d)", what, c->close_code, c->eof);
    json_t *j = h_ck_json_obj(text);
    const char *t = h_jstr(j, "type");
    const char *b = h_jstr(json_object_get(j, "content"), "body");
    ck_assert_msg(t && !strcmp(t, type), "%s: got %s, want type %s", what, text, type);
    ck_assert_msg(!body || (b && !strcmp(b, body)), "%s: got %s, want body '%s'", what, text, body);
    json_decref(j);
    free(text);
}

/* Waits for the peer's FIN on fd: returns the ms it took when read()
 * returned 0, -1 on timeout, -2 on a reset or error, -3 if data came. */
static long long wait_eof(int fd, int timeout_ms)
{
    long long t0 = h_mono_ms();
    for (;;) {
        char b[256];
        ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
        if (n == 0)
            return h_mono_ms() - t0;
        if (n > 0)
            return -3;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -2;
        long long left = t0 + timeout_ms - h_mono_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = {fd, POLLIN, 0};
        poll(&p, 1, (int)left);
    }
}

/* Waits for a close frame with code (answering it, as ws_recv does, unless
 * c sent its own close first), then asserts that nothing follows it and
 * that the server closes TCP (FIN) within 1 s. */
static void expect_close(struct ws *c, int code, const char *what)
{
    struct ws_msg m;
    int op;
    do {
        op = ws_recv(c, &m, 5000);
        if (op != WS_CLOSE)
            ws_msg_free(&m);
    } while (op == WS_TEXT || op == WS_PONG || op == WS_BINARY);
    ck_assert_msg(op == WS_CLOSE, "%s: no close frame (ws_recv %d, eof %d)", what, op, c->eof);
    ck_assert_msg(m.close_code == code, "%s: closed with %d '%s', want %d", what, m.close_code,
                  m.data, code);
    ws_msg_free(&m);
    ck_assert_msg(c->len == 0, "%s: %zu bytes after the close frame", what, c->len);
    long long t = wait_eof(c->fd, 1000);
    ck_assert_msg(t >= 0, "%s: TCP not closed by the server within 1 s after its close (%lld)",
                  what, t);
}

/* Sends req (len bytes) on a new connection and reads the answer until the
 * server closes the connection, asserting it does within 5 s. Returns the
 * HTTP status; *out gets the whole answer (malloc'd). */
static int exchange(const char *req, size_t len, char **out)
{
    int fd = h_tcp_connect(G.port, 3000);
    ck_assert(fd >= 0);
    ck_assert_int_eq(h_send_all(fd, req, len, 3000), 0);
    size_t cap = 65536, got = 0;
    char *buf = malloc(cap + 1);
    int closed = h_read_until_closed(fd, 5000, buf, cap, &got);
    close(fd);
    buf[got] = '\0';
    ck_assert_msg(closed, "the server did not close after answering %.*s", (int)strcspn(req, "\r"),
                  req);
    int status = -1;
    if (strncmp(buf, "HTTP/1.1 ", 9) != 0 || sscanf(buf + 9, "%d", &status) != 1)
        status = -1;
    *out = buf;
    return status;
}

/* The body of a complete answer (after the blank line), "" if none. */
static const char *body_of(const char *answer)
{
    const char *p = strstr(answer, "\r\n\r\n");
    return p ? p + 4 : "";
}

static void assert_header(const char *head, const char *name, const char *want, const char *what)
{
    char v[256];
    ck_assert_msg(h_http_header(head, name, v, sizeof(v)), "%s: no %s header in\n%s", what, name,
                  head);
    ck_assert_msg(!strcasecmp(v, want), "%s: %s: '%s', want '%s'", what, name, v, want);
}

static void assert_no_header(const char *head, const char *name, const char *what)
{
    char v[256];
    ck_assert_msg(!h_http_header(head, name, v, sizeof(v)), "%s: unexpected %s: %s", what, name, v);
}

static double rejected(const char *reason)
{
    char name[128];
    snprintf(name, sizeof(name), "notify_connections_rejected_total{reason=\"%s\"}", reason);
    return h_ck_metric(G.port, name);
}

/* An upgrade request for /ws?user_id=account with key and extra header
 * lines (may be ""). */
static int upgrade_request(char *out, size_t size, const char *account, const char *key,
                           const char *extra)
{
    int n = snprintf(out, size,
                     "GET /ws?user_id=%s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     account, key, extra);
    ck_assert(n > 0 && (size_t)n < size);
    return n;
}

/* Reads the 101 head from fd, asserts it is exactly what RFC 6455 asks for
 * key (and protocol, NULL: no Sec-WebSocket-Protocol), and makes c a client
 * on fd with the bytes that followed the head. */
static void expect_101(struct ws *c, int fd, const char *key, const char *protocol,
                       const char *what)
{
    char *raw = NULL;
    size_t len = 0;
    long hlen = h_read_http_head(fd, 5000, &raw, &len);
    ck_assert_msg(hlen > 0, "%s: no answer to the upgrade", what);
    char *head = strndup(raw, (size_t)hlen);
    ck_assert_msg(!strncmp(head, "HTTP/1.1 101 ", 13), "%s: answered %.*s", what,
                  (int)strcspn(head, "\r\n"), head);
    assert_header(head, "Upgrade", "websocket", what);
    assert_header(head, "Connection", "Upgrade", what);
    /* base64(SHA-1(key + GUID)) */
    char in[128], want[64];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int n = snprintf(in, sizeof(in), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    ck_assert(EVP_Digest(in, (size_t)n, md, &mdlen, EVP_sha1(), NULL) == 1);
    EVP_EncodeBlock((unsigned char *)want, md, (int)mdlen);
    char got[128];
    ck_assert_msg(h_http_header(head, "Sec-WebSocket-Accept", got, sizeof(got)),
                  "%s: no Sec-WebSocket-Accept", what);
    ck_assert_msg(!strcmp(got, want), "%s: Sec-WebSocket-Accept '%s', want '%s'", what, got, want);
    if (protocol)
        assert_header(head, "Sec-WebSocket-Protocol", protocol, what);
    else
        assert_no_header(head, "Sec-WebSocket-Protocol", what);
    ck_assert_int_eq(ws_adopt(c, fd, raw + hlen, len - (size_t)hlen), 0);
    free(head);
    free(raw);
}

/* The first frame after the 101 is the register reply for account. */
static void expect_register_first(struct ws *c, const char *account, const char *what)
{
    struct ws_msg m;
    int op = ws_recv(c, &m, 5000);
    ck_assert_msg(op == WS_TEXT, "%s: first frame has opcode %d, want text", what, op);
    json_t *j = h_ck_json_obj(m.data);
    const char *type = h_jstr(j, "type");
    ck_assert_msg(type && !strcmp(type, "register"), "%s: first frame %s", what, m.data);
    json_t *meta = h_ck_json_obj(h_jstr(json_object_get(j, "content"), "meta_data"));
    const char *acct = h_jstr(meta, "account");
    ck_assert_msg(acct && !strcmp(acct, account), "%s: register for '%s', want '%s'", what, acct,
                  account);
    json_decref(meta);
    json_decref(j);
    ws_msg_free(&m);
}

/* Upgrades account by hand with key and extra header lines, checking the
 * 101 byte for byte and that the register reply comes first. */
static void upgrade_by_hand(struct ws *c, const char *account, const char *key, const char *extra,
                            const char *protocol, const char *what)
{
    char req[1024];
    int n = upgrade_request(req, sizeof(req), account, key, extra);
    int fd = h_tcp_connect(G.port, 3000);
    ck_assert(fd >= 0);
    ck_assert_int_eq(h_send_all(fd, req, (size_t)n, 3000), 0);
    expect_101(c, fd, key, protocol, what);
    expect_register_first(c, account, what);
}

/* Writes buf one byte at a time, gap_ms apart. */
static void trickle(int fd, const char *buf, size_t len, int gap_ms)
{
    for (size_t i = 0; i < len; i++) {
        ck_assert_msg(h_send_all(fd, buf + i, 1, 3000) == 0, "byte %zu not taken", i);
        h_sleep_ms(gap_ms);
    }
}

/* ---- 1. handshake refusals ---------------------------------------------- */

START_TEST(test_handshake_refusals)
{
    GW("--auth", "none");
    char *a;

    /* A plain GET /ws: 426 naming the upgrade it wants. */
    static const char plain[] = "GET /ws?user_id=r1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    ck_assert_int_eq(exchange(plain, sizeof(plain) - 1, &a), 426);
    assert_header(a, "Upgrade", "websocket", "GET /ws without an upgrade");
    assert_header(a, "Sec-WebSocket-Version", "13", "GET /ws without an upgrade");
    assert_header(a, "Connection", "close", "GET /ws without an upgrade");
    char cl[32];
    ck_assert(h_http_header(a, "Content-Length", cl, sizeof(cl)));
    ck_assert_int_eq(atoi(cl), (int)strlen(body_of(a)));
    free(a);

    /* A WebSocket version the gateway does not speak: 426 too. */
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "GET /ws?user_id=r1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 8\r\n\r\n",
                     SAMPLE_KEY);
    ck_assert_int_eq(exchange(req, (size_t)n, &a), 426);
    assert_header(a, "Upgrade", "websocket", "Sec-WebSocket-Version: 8");
    assert_header(a, "Sec-WebSocket-Version", "13", "Sec-WebSocket-Version: 8");
    free(a);

    /* No Sec-WebSocket-Key: 400. */
    static const char nokey[] = "GET /ws?user_id=r1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Version: 13\r\n\r\n";
    ck_assert_int_eq(exchange(nokey, sizeof(nokey) - 1, &a), 400);
    ck_assert_str_eq(body_of(a), "missing Sec-WebSocket-Key\n");
    assert_no_header(a, "Sec-WebSocket-Accept", "no key");
    free(a);

    /* An upgrade on another path: lws answers 404. */
    n = snprintf(req, sizeof(req),
                 "GET /other?user_id=r1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n",
                 SAMPLE_KEY);
    ck_assert_int_eq(exchange(req, (size_t)n, &a), 404);
    assert_no_header(a, "Sec-WebSocket-Accept", "GET /other");
    free(a);

    /* /wsx is not /ws: routed to lws, which has no such page. */
    static const char wsx[] = "GET /wsx HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    ck_assert_int_eq(exchange(wsx, sizeof(wsx) - 1, &a), 404);
    ck_assert_str_eq(body_of(a), "not found\n");
    free(a);

    /* A head the gateway cannot read (a header line without a colon). */
    static const char bad[] = "GET /ws?user_id=r1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              "this is no header\r\n\r\n";
    ck_assert_int_eq(exchange(bad, sizeof(bad) - 1, &a), 400);
    ck_assert_str_eq(body_of(a), "malformed request\n");
    free(a);

    ck_assert_double_eq(rejected("upgrade_required"), 2);
    ck_assert_double_eq(rejected("bad_request"), 1);
    ck_assert_double_eq(rejected("not_found"), 1);
    ck_assert_double_eq(rejected("malformed"), 1);
    ck_assert_double_eq(rejected("timeout"), 0);
    ck_assert_double_eq(h_ck_metric(G.port, "notify_connections_rejected_total"), 5);
    ck_assert_double_eq(h_ck_metric(G.port, "notify_connections_accepted_total"), 0);
}
END_TEST

/* ---- 2. the 101 answer -------------------------------------------------- */

START_TEST(test_101_exact)
{
    GW("--auth", "none");
    struct ws c, d;
    /* RFC 6455's sample key, whose accept value the RFC gives */
    char req[1024];
    int n = upgrade_request(req, sizeof(req), "exact", SAMPLE_KEY, "");
    int fd = h_tcp_connect(G.port, 3000);
    ck_assert(fd >= 0);
    ck_assert_int_eq(h_send_all(fd, req, (size_t)n, 3000), 0);
    char *raw = NULL;
    size_t len = 0;
    long hlen = h_read_http_head(fd, 5000, &raw, &len);
    ck_assert(hlen > 0);
    ck_assert_msg(!strncmp(raw, "HTTP/1.1 101 Switching Protocols\r\n", 34), "status line: %.*s",
                  (int)strcspn(raw, "\r\n"), raw);
    char v[128];
    ck_assert(h_http_header(raw, "Sec-WebSocket-Accept", v, sizeof(v)));
    ck_assert_str_eq(v, SAMPLE_ACCEPT);
    free(raw);
    close(fd);

    /* a random key, the accept value computed here; register comes first */
    unsigned char rnd[16];
    char key[32];
    ck_assert_int_eq(getrandom(rnd, sizeof(rnd), 0), (ssize_t)sizeof(rnd));
    EVP_EncodeBlock((unsigned char *)key, rnd, sizeof(rnd));
    upgrade_by_hand(&c, "exact", key, "", NULL, "random key");
    /* and it is a working connection */
    upgrade_by_hand(&d, "exact", SAMPLE_KEY, "", NULL, "sample key");
    h_ck_publish(&R, "exact", "after-101");
    expect_message(&c, "notification", "after-101", "random key");
    expect_message(&d, "notification", "after-101", "sample key");
    ws_close(&c, 1000);
    ws_close(&d, 1000);
}
END_TEST

START_TEST(test_subprotocol)
{
    GW("--auth", "none");
    struct ws c;
    upgrade_by_hand(&c, "proto", SAMPLE_KEY, "Sec-WebSocket-Protocol: chat, notify\r\n", "notify",
                    "offering chat, notify");
    ws_close(&c, 1000);
    upgrade_by_hand(&c, "proto", SAMPLE_KEY, "Sec-WebSocket-Protocol: notify\r\n", "notify",
                    "offering notify");
    ws_close(&c, 1000);
    upgrade_by_hand(&c, "proto", SAMPLE_KEY,
                    "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: notify\r\n", "notify",
                    "offering chat and notify in two headers");
    ws_close(&c, 1000);
    upgrade_by_hand(&c, "proto", SAMPLE_KEY, "Sec-WebSocket-Protocol: chat\r\n", NULL,
                    "offering chat");
    ws_close(&c, 1000);
    upgrade_by_hand(&c, "proto", SAMPLE_KEY, "Sec-WebSocket-Protocol: notifyx, xnotify\r\n", NULL,
                    "offering look-alikes");
    ws_close(&c, 1000);
}
END_TEST

/* ---- 3. requests in pieces ---------------------------------------------- */

START_TEST(test_trickled_upgrade)
{
    GW("--auth", "none");
    char req[1024];
    int n = upgrade_request(req, sizeof(req), "trickle", SAMPLE_KEY, "");
    int fd = h_tcp_connect(G.port, 3000);
    ck_assert(fd >= 0);
    trickle(fd, req, (size_t)n, 10);
    struct ws c;
    expect_101(&c, fd, SAMPLE_KEY, NULL, "trickled upgrade");
    expect_register_first(&c, "trickle", "trickled upgrade");
    h_ck_publish(&R, "trickle", "dripped");
    expect_message(&c, "notification", "dripped", "trickled upgrade");
    ck_assert_int_eq(ws_send_text(&c, HEARTBEAT), 0);
    expect_message(&c, "heartbeat", "", "trickled upgrade");
    ws_close(&c, 1000);
}
END_TEST

START_TEST(test_trickled_healthz)
{
    GW("--auth", "none");
    static const char req[] =
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    int fd = h_tcp_connect(G.port, 3000);
    ck_assert(fd >= 0);
    trickle(fd, req, sizeof(req) - 1, 10);
    char buf[4096];
    size_t got = 0;
    int closed = h_read_until_closed(fd, 5000, buf, sizeof(buf) - 1, &got);
    close(fd);
    buf[got] = '\0';
    ck_assert_msg(closed, "trickled /healthz: connection left open");
    ck_assert_msg(!strncmp(buf, "HTTP/1.1 200 ", 13), "trickled /healthz answered %.*s",
                  (int)strcspn(buf, "\r\n"), buf);
    ck_assert_str_eq(body_of(buf), "ok\n");
}
END_TEST

START_TEST(test_metrics_in_two_halves)
{
    GW("--auth", "none");
    static const char req[] =
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    /* split in the middle, and after "GET /", too few bytes to route (the
     * gateway looks again 20 ms later, then hands the socket to lws) */
    size_t splits[] = {(sizeof(req) - 1) / 2, 5};
    for (size_t i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
        int fd = h_tcp_connect(G.port, 3000);
        ck_assert(fd >= 0);
        ck_assert_int_eq(h_send_all(fd, req, splits[i], 3000), 0);
        h_sleep_ms(100);
        ck_assert_int_eq(h_send_all(fd, req + splits[i], sizeof(req) - 1 - splits[i], 3000), 0);
        size_t cap = 65536, got = 0;
        char *buf = malloc(cap + 1);
        int closed = h_read_until_closed(fd, 5000, buf, cap, &got);
        close(fd);
        buf[got] = '\0';
        ck_assert_msg(closed, "/metrics split at %zu: connection left open", splits[i]);
        ck_assert_msg(!strncmp(buf, "HTTP/1.1 200 ", 13), "/metrics split at %zu answered %.*s",
                      splits[i], (int)strcspn(buf, "\r\n"), buf);
        ck_assert_msg(h_metric_sum(body_of(buf), "notify_connections_rejected_total") == 0,
                      "/metrics split at %zu: no rejection counters in\n%s", splits[i], buf);
        free(buf);
    }
}
END_TEST

/* ---- 4. control frames and the close handshake -------------------------- */

START_TEST(test_ping_pong)
{
    GW("--auth", "none");
    struct ws c;
    h_ck_open_as(&c, G.port, "pinger");
    char big[125];
    memset(big, 'z', sizeof(big));
    struct {
        const char *data;
        size_t len;
    } pings[] = {{"abc", 3}, {"", 0}, {big, sizeof(big)}};
    for (size_t i = 0; i < sizeof(pings) / sizeof(pings[0]); i++) {
        ck_assert_int_eq(ws_send(&c, WS_PING, pings[i].data, pings[i].len), 0);
        struct ws_msg m;
        int op = ws_recv(&c, &m, 3000);
        ck_assert_msg(op == WS_PONG, "ping of %zu bytes: got opcode %d, want a pong", pings[i].len,
                      op);
        ck_assert_uint_eq(m.len, pings[i].len);
        ck_assert(!memcmp(m.data, pings[i].data, m.len));
        ws_msg_free(&m);
    }
    ck_assert_int_eq(ws_send_text(&c, HEARTBEAT), 0);
    expect_message(&c, "heartbeat", "", "after pings");
    ws_close(&c, 1000);
}
END_TEST

START_TEST(test_client_close_echoed)
{
    GW("--auth", "none");
    struct ws c;
    h_ck_open_as(&c, G.port, "closer");
    static const unsigned char bye[] = {0x0f, 0xa0, 'b', 'y', 'e'}; /* 4000 "bye" */
    ck_assert_int_eq(ws_send(&c, WS_CLOSE, bye, sizeof(bye)), 0);
    expect_close(&c, 4000, "close 4000 \"bye\"");
    ws_close(&c, 1000);

    /* an empty close is answered with an empty close */
    h_ck_open_as(&c, G.port, "closer");
    ck_assert_int_eq(ws_send(&c, WS_CLOSE, "", 0), 0);
    struct ws_msg m;
    ck_assert_int_eq(ws_recv(&c, &m, 3000), WS_CLOSE);
    ck_assert_msg(m.close_code == 1005 && m.len == 0,
                  "an empty close was answered with code %d and %zu reason bytes", m.close_code,
                  m.len);
    ws_msg_free(&m);
    long long t = wait_eof(c.fd, 1000);
    ck_assert_msg(t >= 0, "empty close: TCP not closed within 1 s (%lld)", t);
    ws_close(&c, 1000);

    /* 1000 with a reason */
    h_ck_open_as(&c, G.port, "closer");
    static const unsigned char normal[] = {0x03, 0xe8, 'o', 'k'};
    ck_assert_int_eq(ws_send(&c, WS_CLOSE, normal, sizeof(normal)), 0);
    expect_close(&c, 1000, "close 1000 \"ok\"");
    ws_close(&c, 1000);

    ck_assert_double_eq(h_ck_metric(G.port, "notify_connections_closed_total{reason=\"client\"}"),
                        3);
}
END_TEST

START_TEST(test_client_close_invalid)
{
    GW("--auth", "none");
    struct {
        unsigned char p[8];
        size_t len;
        const char *what;
    } bad[] = {
        {{0x03, 0xed}, 2, "close code 1005 on the wire"},
        {{0x03, 0xe7}, 2, "close code 999"},
        {{0x03, 0xee}, 2, "close code 1006 on the wire"},
        {{0x03, 0xf7}, 2, "close code 1015 on the wire"},
        {{0x13, 0x88}, 2, "close code 5000"},
        {{0x03}, 1, "a 1-byte close payload"},
        {{0x03, 0xe8, 0xff, 0xfe}, 4, "a close reason that is not UTF-8"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ws c;
        h_ck_open_as(&c, G.port, "badclose");
        ck_assert_int_eq(ws_send(&c, WS_CLOSE, bad[i].p, bad[i].len), 0);
        expect_close(&c, 1002, bad[i].what);
        ws_close(&c, 1000);
    }
}
END_TEST

/* The client's close right behind a frame the server closes on, in the
 * same write: the server's close (queued, not yet sent) still goes out. */
START_TEST(test_close_right_behind_a_fault)
{
    GW("--auth", "none");
    static const unsigned char bye[] = {0x03, 0xe8}; /* 1000 */
    static const char bad_utf8[] = "{\"type\":\"heartbeat\",\"x\":\"\xff\xfe\"}";
    for (int round = 0; round < 2; round++) {
        struct ws c;
        h_ck_open_as(&c, G.port, "fault");
        unsigned char *all = NULL;
        size_t total = 0, n;
        /* round 0: invalid UTF-8 (1007); round 1: 45 heartbeats, over the
         * burst of 40 (1008) */
        int frames = round == 0 ? 1 : 45;
        for (int i = 0; i <= frames; i++) {
            unsigned char *f = i == frames ? ws_frame_encode(0x88, 1, bye, sizeof(bye), &n)
                               : round == 0
                                   ? ws_frame_encode(0x81, 1, bad_utf8, sizeof(bad_utf8) - 1, &n)
                                   : ws_frame_encode(0x81, 1, HEARTBEAT, strlen(HEARTBEAT), &n);
            ck_assert(f != NULL);
            all = realloc(all, total + n);
            memcpy(all + total, f, n);
            total += n;
            free(f);
        }
        ck_assert_int_eq(h_send_all(c.fd, all, total, 3000), 0);
        free(all);
        c.sent_close = 1; /* ours is on its way: ws_recv must not answer theirs */
        expect_close(&c, round == 0 ? 1007 : 1008,
                     round == 0 ? "invalid UTF-8, then a close" : "45 heartbeats, then a close");
        ws_close(&c, 1000);
    }
}
END_TEST

/* ---- 5. protocol errors ------------------------------------------------- */

START_TEST(test_protocol_errors_1002)
{
    GW("--auth", "none");
    struct ws by;
    h_ck_open_as(&by, G.port, "bystander");
    char big[126];
    memset(big, 'p', sizeof(big));
    static const char *const what[] = {
        "an unmasked frame",
        "RSV1 set",
        "RSV2 set",
        "RSV3 set",
        "opcode 0x3",
        "opcode 0xB",
        "a continuation with no message started",
        "a text frame inside a fragmented message",
        "a ping with FIN clear",
        "a ping of 126 bytes",
        "a 64-bit length with its top bit set",
    };
    for (size_t i = 0; i < sizeof(what) / sizeof(what[0]); i++) {
        struct ws c;
        char acct[32];
        snprintf(acct, sizeof(acct), "perr%zu", i);
        h_ck_open_as(&c, G.port, acct);
        int rc = 0;
        switch (i) {
        case 0:
            rc = ws_send_raw_frame(&c, 0x81, 0, HEARTBEAT, strlen(HEARTBEAT));
            break;
        case 1:
        case 2:
        case 3:
            rc = ws_send_raw_frame(&c, 0x81 | (0x40 >> (i - 1)), 1, HEARTBEAT, strlen(HEARTBEAT));
            break;
        case 4:
            rc = ws_send_raw_frame(&c, 0x83, 1, HEARTBEAT, strlen(HEARTBEAT));
            break;
        case 5:
            rc = ws_send_raw_frame(&c, 0x8b, 1, "x", 1);
            break;
        case 6:
            rc = ws_send_frame(&c, 1, 0, HEARTBEAT, strlen(HEARTBEAT));
            break;
        case 7:
            rc = ws_send_frame(&c, 0, WS_TEXT, "{\"type\":", 8);
            if (rc == 0)
                rc = ws_send_frame(&c, 1, WS_TEXT, HEARTBEAT, strlen(HEARTBEAT));
            break;
        case 8:
            rc = ws_send_raw_frame(&c, 0x09, 1, "abc", 3);
            break;
        case 9:
            rc = ws_send(&c, WS_PING, big, sizeof(big));
            break;
        case 10: {
            static const unsigned char huge[] = {0x81, 0x80 | 127, 0x80, 0, 0, 0, 0,
                                                 0,    0,          5,    1, 2, 3, 4};
            rc = h_send_all(c.fd, huge, sizeof(huge), 3000);
            break;
        }
        }
        ck_assert_int_eq(rc, 0);
        expect_close(&c, 1002, what[i]);
        ws_close(&c, 1000);
        /* the gateway lives on: another account still gets its messages */
        char body[64];
        snprintf(body, sizeof(body), "after-%zu", i);
        h_ck_publish(&R, "bystander", body);
        expect_message(&by, "notification", body, what[i]);
    }
    ck_assert_double_eq(
        h_ck_metric(G.port, "notify_connections_closed_total{reason=\"protocol_error\"}"),
        sizeof(what) / sizeof(what[0]));
    ws_close(&by, 1000);
}
END_TEST

/* ---- 6. frames and writes that do not line up --------------------------- */

START_TEST(test_many_frames_one_write)
{
    GW("--auth", "none");
    struct ws c;
    h_ck_open_as(&c, G.port, "batch");
    /* 30 heartbeats in one send (the burst allowed is 40, ws.c), padded to
     * 60 bytes each: 1,980 bytes on the wire, more than one batched read
     * takes (READ_SLOT, 1 KB, conn.c), so a frame is cut at its end */
    enum { N = 30 };
    char padded[61];
    memset(padded, ' ', 60);
    memcpy(padded, HEARTBEAT, strlen(HEARTBEAT) - 1);
    memcpy(padded + 59, "}", 2);
    unsigned char *all = NULL;
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        size_t n;
        unsigned char *f = ws_frame_encode(0x81, 1, padded, 60, &n);
        ck_assert(f != NULL);
        all = realloc(all, total + n);
        memcpy(all + total, f, n);
        total += n;
        free(f);
    }
    ck_assert_int_eq(h_send_all(c.fd, all, total, 3000), 0);
    free(all);
    for (int i = 0; i < N; i++) {
        char what[48];
        snprintf(what, sizeof(what), "heartbeat reply %d of %d", i + 1, N);
        expect_message(&c, "heartbeat", "", what);
    }
    h_ck_quiet(&c, "after 30 heartbeat replies", 300, 1);
    ws_close(&c, 1000);
}
END_TEST

START_TEST(test_frame_split_across_writes)
{
    GW("--auth", "none");
    struct ws c;
    h_ck_open_as(&c, G.port, "split");
    /* one 3000-byte text frame: valid JSON of an unknown type */
    char msg[3001];
    int n = snprintf(msg, sizeof(msg), "{\"type\":\"nosuchtype\",\"pad\":\"");
    memset(msg + n, 'q', 3000 - 2 - (size_t)n);
    memcpy(msg + 3000 - 2, "\"}", 3);
    ck_assert_uint_eq(strlen(msg), 3000);
    size_t len;
    unsigned char *f = ws_frame_encode(0x81, 1, msg, 3000, &len);
    ck_assert(f != NULL);
    for (size_t off = 0; off < len; off += 100) {
        size_t k = len - off < 100 ? len - off : 100;
        ck_assert_int_eq(h_send_all(c.fd, f + off, k, 3000), 0);
        h_sleep_ms(5);
    }
    free(f);
    expect_message(&c, "error", "unknown message type", "3000-byte frame in 100-byte writes");
    h_ck_quiet(&c, "after the error reply", 300, 1);
    ck_assert_int_eq(ws_send_text(&c, HEARTBEAT), 0);
    expect_message(&c, "heartbeat", "", "after a frame split across writes");
    ws_close(&c, 1000);
}
END_TEST

/* ---- 7. a pipelined burst ----------------------------------------------- */

START_TEST(test_pipelined_burst)
{
    GW("--auth", "none");
    struct ws a, b;
    h_ck_open_as(&a, G.port, "burst");
    h_ck_open_as(&b, G.port, "burst");
    enum { N = 20 };
    redisContext *rc = redisConnect("127.0.0.1", R.port);
    ck_assert(rc && !rc->err);
    redisAppendCommand(rc, "MULTI");
    for (int i = 0; i < N; i++) {
        char body[16];
        snprintf(body, sizeof(body), "b%02d", i);
        char *e = h_envelope("notification", body);
        redisAppendCommand(rc, "PUBLISH %s %s", h_chan("burst"), e);
        free(e);
    }
    redisAppendCommand(rc, "EXEC");
    redisReply *rep = NULL;
    for (int i = 0; i < N + 2; i++) {
        ck_assert_int_eq(redisGetReply(rc, (void **)&rep), REDIS_OK);
        if (i < N + 1)
            freeReplyObject(rep);
    }
    ck_assert_int_eq(rep->type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(rep->elements, N);
    for (int i = 0; i < N; i++)
        ck_assert_msg(rep->element[i]->type == REDIS_REPLY_INTEGER && rep->element[i]->integer == 1,
                      "PUBLISH %d in the burst did not reach the gateway", i);
    freeReplyObject(rep);
    redisFree(rc);
    struct ws *conns[] = {&a, &b};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < N; i++) {
            char body[16], what[48];
            snprintf(body, sizeof(body), "b%02d", i);
            snprintf(what, sizeof(what), "connection %d, message %d", k, i);
            expect_message(conns[k], "notification", body, what);
        }
    h_ck_quiet(&a, "after the burst", 200, 1);
    h_ck_quiet(&b, "after the burst", 200, 1);
    ws_close(&a, 1000);
    ws_close(&b, 1000);
}
END_TEST

/* The sockets of one loop turn are written in the order their deliveries
 * came: in a turn with many (a backlog read from Redis at once, after the
 * node waited for the CPU), the oldest does not wait for all the others.
 * Here one MULTI/EXEC publishes to 100 accounts, so the gateway reads them
 * in one go; each client's kernel receive time (SO_TIMESTAMPNS) tells the
 * order the gateway wrote them in. Before the flush list was a queue it
 * was a stack: the newest first, each turn in reverse. */
static long long rx_time_ns(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ck_assert_int_eq(poll(&p, 1, 5000), 1);
    char byte, ctl[CMSG_SPACE(sizeof(struct timespec))];
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
    ck_assert_int_eq(recvmsg(fd, &m, MSG_PEEK), 1);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof(ts));
            return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        }
    ck_abort_msg("no receive time on a client socket");
    return 0;
}

START_TEST(test_turn_writes_oldest_first)
{
    enum { N = 100 };
    GW("--auth", "none");
    static struct ws c[N];
    char name[N][16];
    int one = 1;
    for (int i = 0; i < N; i++) {
        snprintf(name[i], sizeof(name[i]), "order-%03d", i);
        h_ck_open_as(&c[i], G.port, name[i]);
        ck_assert_int_eq(setsockopt(c[i].fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)), 0);
    }
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(h_redis_wait_numsub(&R, h_chan(name[i]), 1, 5000), 1);
    redisContext *rc = redisConnect("127.0.0.1", R.port);
    ck_assert(rc && !rc->err);
    char *e = h_envelope("notification", "in-order");
    redisAppendCommand(rc, "MULTI");
    for (int i = 0; i < N; i++)
        redisAppendCommand(rc, "PUBLISH %s %s", h_chan(name[i]), e);
    redisAppendCommand(rc, "EXEC");
    free(e);
    redisReply *rep = NULL;
    for (int i = 0; i < N + 2; i++) {
        ck_assert_int_eq(redisGetReply(rc, (void **)&rep), REDIS_OK);
        freeReplyObject(rep);
    }
    redisFree(rc);
    long long t[N];
    for (int i = 0; i < N; i++) {
        t[i] = rx_time_ns(c[i].fd);
        expect_message(&c[i], "notification", "in-order", "one of the burst");
    }
    int in_order = 0;
    for (int i = 0; i + 1 < N; i++)
        in_order += t[i] <= t[i + 1];
    fprintf(stderr,
            "[wsproto] 100 deliveries of one turn: %d of 99 neighbours written in order, "
            "first to last %lld us\n",
            in_order, (t[N - 1] - t[0]) / 1000);
    ck_assert_msg(in_order >= 90, "only %d of 99 neighbours written in the order published",
                  in_order);
    for (int i = 0; i < N; i++)
        ws_close(&c[i], 1000);
}
END_TEST

/* ---- 8. the request head timeout ---------------------------------------- */

START_TEST(test_head_timeout)
{
    GW("--auth", "none");
    static const char line[] = "GET /ws HTTP/1.1\r\n";
    int fd = h_tcp_connect(G.port, 3000);
    ck_assert(fd >= 0);
    long long t0 = h_mono_ms();
    ck_assert_int_eq(h_send_all(fd, line, sizeof(line) - 1, 3000), 0);
    char buf[256];
    size_t got = 0;
    int closed = h_read_until_closed(fd, 15000, buf, sizeof(buf) - 1, &got);
    long long took = h_mono_ms() - t0;
    close(fd);
    buf[got] = '\0';
    ck_assert_msg(closed, "a head that never ends still open after %lld ms", took);
    /* 10 s, on a wheel of one-second ticks; a little slack for the loop's
     * cached clock */
    ck_assert_msg(took >= 9900 && took <= 13000, "closed after %lld ms, want 10-13 s", took);
    ck_assert_msg(got == 0, "the server answered a timed-out head with: %s", buf);
    ck_assert_double_eq(rejected("timeout"), 1);
    ck_assert_double_eq(h_ck_metric(G.port, "notify_connections_rejected_total"), 1);
}
END_TEST

/* ---- 9. client input gathered while idle (--input-batch-ms) ------------- */

/* Client input may wait up to the window to be read with others'; a push
 * or a handshake never waits for it, and nothing sent meanwhile is lost or
 * reordered. A 1 s window (the largest) makes the difference unmistakable. */
START_TEST(test_input_gathering)
{
    enum { WINDOW_MS = 1000 };
    GW("--auth", "none", "--input-batch-ms", "1000");
    struct ws a, b;
    h_ck_open_as(&a, G.port, "gather-a");
    h_ck_open_as(&b, G.port, "gather-b");

    /* Input after a quiet spell is read at once; input close behind it is
     * gathered. */
    h_sleep_ms(WINDOW_MS + 500);
    long long t0 = h_mono_ms();
    ck_assert_int_eq(ws_send_text(&a, HEARTBEAT), 0);
    expect_message(&a, "heartbeat", "", "first heartbeat");
    ck_assert_msg(h_mono_ms() - t0 < WINDOW_MS / 2,
                  "the first heartbeat after a quiet spell waited %lld ms", h_mono_ms() - t0);

    /* While it gathers, a notification goes out at once... */
    ck_assert_int_eq(ws_send_text(&a, HEARTBEAT), 0);
    t0 = h_mono_ms();
    h_ck_publish(&R, "gather-b", "not held");
    expect_message(&b, "notification", "not held", "push while gathering");
    long long push_ms = h_mono_ms() - t0;
    ck_assert_msg(push_ms < WINDOW_MS / 2, "a push waited %lld ms behind gathered input", push_ms);

    /* ...and so does a new connection's handshake. */
    ck_assert_int_eq(ws_send_text(&b, HEARTBEAT), 0);
    t0 = h_mono_ms();
    struct ws c;
    h_ck_open_as(&c, G.port, "gather-c");
    long long open_ms = h_mono_ms() - t0;
    ck_assert_msg(open_ms < WINDOW_MS / 2, "a handshake waited %lld ms behind gathered input",
                  open_ms);

    /* The push kept input read as it comes for a window
     * (test_input_read_while_pushing); after a quiet spell, input close
     * behind other input is gathered again. */
    h_sleep_ms(WINDOW_MS + 500);
    ck_assert_int_eq(ws_send_text(&c, HEARTBEAT), 0);
    expect_message(&c, "heartbeat", "", "c: heartbeat after a quiet spell");
    ck_assert_int_eq(ws_send_text(&c, HEARTBEAT), 0);
    expect_message(&c, "heartbeat", "", "c: heartbeat close behind it");

    /* Everything sent while gathering is answered once, in order, within
     * the window (plus slack for a loaded machine). */
    ck_assert_int_eq(ws_send_text(&a, HEARTBEAT), 0);
    ck_assert_int_eq(ws_send(&b, WS_PING, "p1", 2), 0);
    ck_assert_int_eq(ws_send_text(&b, "not json"), 0);
    ck_assert_int_eq(ws_send_text(&c, HEARTBEAT), 0);
    t0 = h_mono_ms();
    expect_message(&a, "heartbeat", "", "a: second heartbeat");
    expect_message(&a, "heartbeat", "", "a: third heartbeat");
    expect_message(&b, "heartbeat", "", "b: heartbeat");
    struct ws_msg m;
    ck_assert_int_eq(ws_recv(&b, &m, 5000), WS_PONG);
    ck_assert_uint_eq(m.len, 2);
    ck_assert(!memcmp(m.data, "p1", 2));
    ws_msg_free(&m);
    expect_message(&b, "error", NULL, "b: error after the pong");
    expect_message(&c, "heartbeat", "", "c: heartbeat");
    long long replies_ms = h_mono_ms() - t0;
    ck_assert_msg(replies_ms < WINDOW_MS + 2000, "gathered input answered after %lld ms",
                  replies_ms);
    /* and the window did hold it back: that is what spares the wakeups */
    ck_assert_msg(replies_ms >= WINDOW_MS / 4,
                  "input sent right after a handshake answered in %lld ms: not gathered",
                  replies_ms);
    h_ck_quiet(&a, "a after its replies", 200, 1);
    h_ck_quiet(&c, "c after its reply", 200, 1);

    /* A close sent while gathering gets its close back. */
    ck_assert_int_eq(ws_send_text(&c, HEARTBEAT), 0);
    static const unsigned char bye[] = {0x03, 0xe8};
    ck_assert_int_eq(ws_send(&a, WS_CLOSE, bye, sizeof(bye)), 0);
    expect_close(&a, 1000, "close while gathering");
    expect_message(&c, "heartbeat", "", "c: heartbeat beside a close");
    ws_close(&a, 1000);
    ws_close(&b, 1000);
    ws_close(&c, 1000);
}
END_TEST

/* While pushes go out, client input is read as it comes: the loop wakes
 * for the pushes anyway, and a window's input gathered and read in one
 * pass would hold up the pushes behind it (README.md, "Why client input is
 * gathered when idle"). Here a heartbeat is sent right after each of ten
 * pushes, with gathering on: each is answered at once, not at the next
 * 1 s pass. */
START_TEST(test_input_read_while_pushing)
{
    enum { WINDOW_MS = 1000 };
    GW("--auth", "none", "--input-batch-ms", "1000");
    struct ws a, b;
    h_ck_open_as(&a, G.port, "push-a");
    h_ck_open_as(&b, G.port, "push-b");
    h_sleep_ms(WINDOW_MS + 500);
    /* gathering from here: a second input within the window shuts the gate */
    ck_assert_int_eq(ws_send_text(&a, HEARTBEAT), 0);
    expect_message(&a, "heartbeat", "", "first heartbeat");
    ck_assert_int_eq(ws_send_text(&a, HEARTBEAT), 0);
    expect_message(&a, "heartbeat", "", "second heartbeat");
    long long worst = 0;
    for (int i = 0; i < 10; i++) {
        char body[16];
        snprintf(body, sizeof(body), "push-%d", i);
        h_ck_publish(&R, "push-b", body);
        expect_message(&b, "notification", body, "the push");
        long long t0 = h_mono_ms();
        ck_assert_int_eq(ws_send_text(&a, HEARTBEAT), 0);
        expect_message(&a, "heartbeat", "", "a heartbeat while pushing");
        long long d = h_mono_ms() - t0;
        worst = d > worst ? d : worst;
        h_sleep_ms(100);
    }
    fprintf(stderr, "[wsproto] heartbeats answered while pushing: worst %lld ms (window %d ms)\n",
            worst, WINDOW_MS);
    ck_assert_msg(worst < WINDOW_MS / 2, "a heartbeat waited %lld ms while pushes went out", worst);
    ws_close(&a, 1000);
    ws_close(&b, 1000);
}
END_TEST

/* A socket the gateway found full is written again as soon as its client
 * reads, even while the gate holds other input back: output waiting for
 * POLLOUT is watched apart from the gathered input. Here 18 MB go to a
 * client that reads nothing at first (the kernel holds about 4 MB of it);
 * the rest needs several refills of the gateway's socket, each of which
 * would wait for the next 1 s gathering pass if POLLOUT went through the
 * gate, kept shut by another client's heartbeats every 100 ms. */
START_TEST(test_full_socket_not_gathered)
{
    enum { WINDOW_MS = 1000, N = 3000, BODY = 6000 };
    GW("--auth", "none", "--input-batch-ms", "1000", "--max-queue-messages", "4096",
       "--max-queue-bytes", "33554432");
    struct ws slow, ticker;
    h_ck_open_as(&slow, G.port, "gather-slow");
    h_ck_open_as(&ticker, G.port, "gather-ticker");
    int small = 65536;
    ck_assert_int_eq(setsockopt(slow.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    char *fill = malloc(BODY + 1);
    ck_assert_ptr_nonnull(fill);
    memset(fill, 'q', BODY);
    fill[BODY] = '\0';
    for (int i = 0; i < N; i++) {
        char num[8];
        snprintf(num, sizeof(num), "%06d", i);
        memcpy(fill, num, 6);
        h_ck_publish(&R, "gather-slow", fill);
    }
    long long deadline = h_mono_ms() + 5000;
    while (h_ck_metric(G.port, "notify_queued_bytes") < 8e6 && h_mono_ms() < deadline)
        h_sleep_ms(50);
    ck_assert_msg(h_ck_metric(G.port, "notify_queued_bytes") >= 8e6,
                  "the gateway queued only %g bytes", h_ck_metric(G.port, "notify_queued_bytes"));

    pid_t child = fork(); /* heartbeats keep the gate shut meanwhile */
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        for (int i = 0; i < 60; i++) {
            if (ws_send_text(&ticker, HEARTBEAT) < 0)
                _exit(1);
            h_sleep_ms(100);
        }
        _exit(0);
    }
    h_sleep_ms(2 * WINDOW_MS + 500); /* gathering for a while now */
    long long t0 = h_mono_ms();
    for (int i = 0; i < N; i++) {
        char *text = ws_recv_text(&slow, 10000);
        ck_assert_msg(text != NULL, "message %d missing (close %d)", i, slow.close_code);
        char want[8];
        snprintf(want, sizeof(want), "%06d", i);
        /* the number leads the body, within the envelope's first bytes:
         * scanning all 6 KB of each (18 MB under ASan) would make the
         * client, not the gateway, what this measures */
        ck_assert_msg(memmem(text, 64, want, 6) != NULL, "message %d out of order: %.60s", i, text);
        free(text);
    }
    long long took = h_mono_ms() - t0;
    fprintf(stderr, "[wsproto] 18 MB to a full socket drained in %lld ms while gathering\n", took);
    ck_assert_msg(took < WINDOW_MS + WINDOW_MS / 2,
                  "a full socket's output took %lld ms: its POLLOUT waited for the gate", took);
    int status;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the heartbeat sender failed");
    expect_message(&ticker, "heartbeat", "", "ticker: heartbeats answered");
    free(fill);
    ws_close(&slow, 1000);
    ws_close(&ticker, 1000);
}
END_TEST

/* ---- suite -------------------------------------------------------------- */

static Suite *wsproto_suite(void)
{
    Suite *s = suite_create("gateway-wsproto");
    TCase *tc;

    tc = h_tcase(s, "handshake", 30, setup, teardown);
    tcase_add_test(tc, test_handshake_refusals);
    tcase_add_test(tc, test_101_exact);
    tcase_add_test(tc, test_subprotocol);

    tc = h_tcase(s, "pieces", 30, setup, teardown);
    tcase_add_test(tc, test_trickled_upgrade);
    tcase_add_test(tc, test_trickled_healthz);
    tcase_add_test(tc, test_metrics_in_two_halves);

    tc = h_tcase(s, "control", 30, setup, teardown);
    tcase_add_test(tc, test_ping_pong);
    tcase_add_test(tc, test_client_close_echoed);
    tcase_add_test(tc, test_client_close_invalid);
    tcase_add_test(tc, test_close_right_behind_a_fault);

    tc = h_tcase(s, "protocol-errors", 60, setup, teardown);
    tcase_add_test(tc, test_protocol_errors_1002);

    tc = h_tcase(s, "batching", 30, setup, teardown);
    tcase_add_test(tc, test_many_frames_one_write);
    tcase_add_test(tc, test_frame_split_across_writes);
    tcase_add_test(tc, test_pipelined_burst);
    tcase_add_test(tc, test_turn_writes_oldest_first);

    tc = h_tcase(s, "head-timeout", 40, setup, teardown);
    tcase_add_test(tc, test_head_timeout);

    tc = h_tcase(s, "input-gathering", 30, setup, teardown);
    tcase_add_test(tc, test_input_gathering);
    tcase_add_test(tc, test_input_read_while_pushing);
    tcase_add_test(tc, test_full_socket_not_gathered);

    return s;
}

int main(void)
{
    return h_run_suite(wsproto_suite());
}
