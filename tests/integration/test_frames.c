/* test_frames: what the gateway does with frames a client must not send
 * (README.md, "Close codes" and "Slow clients and limits"), against a real
 * gateway and a real redis-server.
 *
 * A connection that is failed (RFC 6455 7.1.7: a bad frame, text that is
 * not UTF-8, a flood) gets the server's close frame and the server's FIN
 * at once: the client does not answer the close here, and the TCP
 * connection must still end within FAIL_MS. Floods of every kind of frame
 * (empty continuations, unsolicited pongs, pings) close with 1008, while
 * a large message may come in many fragments of 1 KiB or more. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* A failed connection's close and FIN come within this of the fault. */
#define FAIL_MS 500

static struct h_redis R;
static struct h_gw G;

static const char HEARTBEAT[] = "{\"type\":\"heartbeat\"}";

/* A string literal as bytes and length (without its NUL). */
#define BYTES(s) s, sizeof(s) - 1

/* Polls the gateway's closed-connection counter for reason until it is
 * want (a socket is counted when it is gone, after the client's FIN). */
static void expect_closed_count(const char *reason, double want)
{
    char name[96];
    snprintf(name, sizeof(name), "notify_connections_closed_total{reason=\"%s\"}", reason);
    double got = -1;
    for (int i = 0; i < 40 && (got = h_ck_metric(G.port, name)) != want; i++)
        h_sleep_ms(50);
    ck_assert_msg(got == want, "%s: %g, want %g", name, got, want);
}

static void setup(void)
{
    h_ck_setup(&R, &G);
    /* a raised message limit: a large message in many fragments */
    H_GW(&G, &R, "--auth", "none", "--max-message-bytes", "262144");
}

static void teardown(void)
{
    h_ck_teardown(&R, &G);
}

/* Appends one encoded frame (first byte b0, masked) to *all. */
static void add_frame(unsigned char **all, size_t *total, int b0, const void *data, size_t len)
{
    size_t n;
    unsigned char *f = ws_frame_encode(b0, 1, data, len, &n);
    ck_assert(f != NULL);
    *all = realloc(*all, *total + n);
    ck_assert(*all != NULL);
    memcpy(*all + *total, f, n);
    *total += n;
    free(f);
}

/* Sends all[0..total) (freeing it) and asserts that the server fails the
 * connection: texts before the close are counted into *texts (if not
 * NULL), the close frame carries code, and the server's FIN follows
 * within FAIL_MS of the send, while the client never answers. */
static void expect_failed(struct ws *c, unsigned char *all, size_t total, int code,
                          const char *what, int *texts)
{
    long long t0 = h_mono_ms();
    ck_assert_msg(h_send_all(c->fd, all, total, 5000) == 0, "%s: send failed", what);
    free(all);
    c->sent_close = 1; /* ws_recv must not answer the server's close */
    struct ws_msg m;
    int op, n = 0;
    for (;;) {
        op = ws_recv(c, &m, 3000);
        if (op == WS_TEXT)
            n++;
        if (op != WS_TEXT && op != WS_PONG && op != WS_BINARY)
            break;
        ws_msg_free(&m);
    }
    ck_assert_msg(op == WS_CLOSE, "%s: no close frame (ws_recv %d, eof %d)", what, op, c->eof);
    ck_assert_msg(m.close_code == code, "%s: closed with %d '%s', want %d", what, m.close_code,
                  m.data, code);
    ws_msg_free(&m);
    int closed = h_read_until_closed(c->fd, 3000, NULL, 0, NULL);
    long long took = h_mono_ms() - t0;
    ck_assert_msg(closed, "%s: TCP still open 3 s after the close frame", what);
    ck_assert_msg(took <= FAIL_MS, "%s: TCP closed %lld ms after the fault, want <= %d ms", what,
                  took, FAIL_MS);
    if (texts)
        *texts = n;
    ws_drop(c);
}

/* One frame, given as its first byte and payload. */
static void expect_frame_fails(int b0, const void *data, size_t len, int code, const char *what)
{
    struct ws c;
    h_ck_open_as(&c, G.port, "shape");
    unsigned char *all = NULL;
    size_t total = 0;
    add_frame(&all, &total, b0, data, len);
    expect_failed(&c, all, total, code, what, NULL);
}

/* ---- every way of failing a connection -------------------------------- */

START_TEST(test_bad_frames_close_at_once)
{
    char big[126];
    memset(big, 'p', sizeof(big));
    unsigned char close126[126];
    close126[0] = 0x03; /* 1000, then 124 bytes of reason: 126 in all */
    close126[1] = 0xe8;
    memset(close126 + 2, 'r', sizeof(close126) - 2);

    /* unmasked: ws_frame_encode's masked flag is the only one not 1 */
    struct ws c;
    h_ck_open_as(&c, G.port, "shape");
    size_t n;
    unsigned char *f = ws_frame_encode(0x81, 0, HEARTBEAT, strlen(HEARTBEAT), &n);
    ck_assert(f != NULL);
    expect_failed(&c, f, n, 1002, "an unmasked frame", NULL);

    expect_frame_fails(0x81 | 0x40, HEARTBEAT, strlen(HEARTBEAT), 1002, "RSV1 set");
    expect_frame_fails(0x81 | 0x10, HEARTBEAT, strlen(HEARTBEAT), 1002, "RSV3 set");
    expect_frame_fails(0x83, "x", 1, 1002, "reserved opcode 0x3");
    expect_frame_fails(0x8b, "x", 1, 1002, "reserved control opcode 0xB");
    expect_frame_fails(0x89, big, sizeof(big), 1002, "a ping of 126 bytes");
    expect_frame_fails(0x88, close126, sizeof(close126), 1002, "a close of 126 bytes");
    expect_frame_fails(0x09, "abc", 3, 1002, "a ping with FIN clear");
    expect_frame_fails(0x80, HEARTBEAT, strlen(HEARTBEAT), 1002, "a stray continuation");
    expect_frame_fails(0x81, BYTES("{\"x\":\"\xff\"}"), 1007, "invalid UTF-8");
    expect_frame_fails(0x81, BYTES("{\"x\":\"\xce\xba\xe1"), 1007, "UTF-8 cut at the end");
    expect_closed_count("protocol_error", 11);
}
END_TEST

START_TEST(test_fragmented_utf8)
{
    /* Bad UTF-8 in the first fragment fails the connection at once, with
     * the rest of the message never sent. */
    struct ws c;
    h_ck_open_as(&c, G.port, "frag");
    unsigned char *all = NULL;
    size_t total = 0;
    add_frame(&all, &total, 0x01, BYTES("{\"x\":\"\xce\xba\xf4\x90")); /* U+110000 and up */
    expect_failed(&c, all, total, 1007, "an impossible sequence in a first fragment", NULL);

    h_ck_open_as(&c, G.port, "frag");
    all = NULL;
    total = 0;
    add_frame(&all, &total, 0x01, BYTES("{\"type\":\"heartbeat\",\"x\":\""));
    add_frame(&all, &total, 0x00, BYTES("\xed\xa0")); /* a surrogate's first two bytes */
    expect_failed(&c, all, total, 1007, "a surrogate in a middle fragment", NULL);

    h_ck_open_as(&c, G.port, "frag");
    all = NULL;
    total = 0;
    add_frame(&all, &total, 0x01, BYTES("{\"type\":\"heartbeat\""));
    add_frame(&all, &total, 0x80, BYTES(",\"x\":\"\xce")); /* the message ends mid-sequence */
    expect_failed(&c, all, total, 1007, "a sequence unfinished at the message's end", NULL);

    /* A sequence split between fragments is fine: the message is read. */
    h_ck_open_as(&c, G.port, "frag");
    ck_assert_int_eq(ws_send_frame(&c, 0, WS_TEXT, BYTES("{\"type\":\"nosuch\",\"x\":\"\xf0\x9f")),
                     0);
    ck_assert_int_eq(ws_send_frame(&c, 0, 0, BYTES("\x98")), 0);
    ck_assert_int_eq(ws_send_frame(&c, 1, 0, BYTES("\x80\"}")), 0);
    struct h_msg m;
    ck_assert_msg(h_msg_recv(&c, &m, 3000), "no reply to a split sequence (close %d)",
                  c.close_code);
    ck_assert_str_eq(h_msg_type(&m), "error");
    ck_assert_str_eq(h_msg_body(&m), "unknown message type");
    h_msg_free(&m);
    h_ck_quiet(&c, "after a split sequence", 200, 1);
    ws_close(&c, 1000);
}
END_TEST

START_TEST(test_replies_before_the_fault_kept)
{
    /* Two heartbeats, a frame with RSV2 set, a third heartbeat, in one
     * write: the replies owed before the fault go out, then the close;
     * nothing after the fault is read. */
    struct ws c;
    h_ck_open_as(&c, G.port, "owed");
    unsigned char *all = NULL;
    size_t total = 0;
    add_frame(&all, &total, 0x81, HEARTBEAT, strlen(HEARTBEAT));
    add_frame(&all, &total, 0x81, HEARTBEAT, strlen(HEARTBEAT));
    add_frame(&all, &total, 0x81 | 0x20, HEARTBEAT, strlen(HEARTBEAT));
    add_frame(&all, &total, 0x81, HEARTBEAT, strlen(HEARTBEAT));
    int texts = 0;
    expect_failed(&c, all, total, 1002, "RSV2 after two heartbeats", &texts);
    ck_assert_msg(texts == 2, "%d heartbeat replies before the close, want 2", texts);
}
END_TEST

/* ---- floods: every kind of frame counts ------------------------------- */

START_TEST(test_flood_empty_continuations)
{
    struct ws c;
    h_ck_open_as(&c, G.port, "flood");
    enum { N = 10000 };
    unsigned char *all = NULL;
    size_t total = 0;
    add_frame(&all, &total, 0x01, "{\"type\":", 8);
    for (int i = 0; i < N; i++)
        add_frame(&all, &total, 0x00, "", 0);
    expect_failed(&c, all, total, 1008, "10,000 empty continuations", NULL);
    expect_closed_count("policy", 1);
}
END_TEST

START_TEST(test_flood_pongs)
{
    struct ws c;
    h_ck_open_as(&c, G.port, "flood");
    enum { N = 1000 };
    unsigned char *all = NULL;
    size_t total = 0;
    for (int i = 0; i < N; i++)
        add_frame(&all, &total, 0x8a, "", 0);
    expect_failed(&c, all, total, 1008, "1,000 unsolicited pongs", NULL);
}
END_TEST

START_TEST(test_flood_pings)
{
    struct ws c;
    h_ck_open_as(&c, G.port, "flood");
    c.auto_pong = 0;
    enum { N = 10000 };
    unsigned char *all = NULL;
    size_t total = 0;
    for (int i = 0; i < N; i++)
        add_frame(&all, &total, 0x89, "p", 1);
    long long t0 = h_mono_ms();
    ck_assert_int_eq(h_send_all(c.fd, all, total, 5000), 0);
    free(all);
    c.sent_close = 1;
    struct ws_msg m;
    int op, pongs = 0;
    while ((op = ws_recv(&c, &m, 3000)) == WS_PONG) {
        pongs++;
        ws_msg_free(&m);
    }
    ck_assert_msg(op == WS_CLOSE, "10,000 pings: no close frame (ws_recv %d)", op);
    ck_assert_msg(m.close_code == 1008, "10,000 pings closed with %d, want 1008", m.close_code);
    ws_msg_free(&m);
    /* the burst allowed, and not one pong more */
    ck_assert_msg(pongs == 40, "%d pongs before the close, want 40", pongs);
    ck_assert(h_read_until_closed(c.fd, 3000, NULL, 0, NULL));
    long long took = h_mono_ms() - t0;
    ck_assert_msg(took <= FAIL_MS, "TCP closed %lld ms after the pings, want <= %d", took, FAIL_MS);
    ws_drop(&c);
}
END_TEST

START_TEST(test_steady_rate_allowed)
{
    /* 15 frames a second of every kind for 4 s, 60 in all (more than the
     * burst, under the rate): the connection stays open and every
     * heartbeat and ping is answered. */
    struct ws c;
    h_ck_open_as(&c, G.port, "steady");
    c.auto_pong = 0;
    int replies = 0, pongs = 0;
    for (int i = 0; i < 60; i++) {
        switch (i % 3) {
        case 0:
            ck_assert_int_eq(ws_send_text(&c, HEARTBEAT), 0);
            break;
        case 1:
            ck_assert_int_eq(ws_send(&c, WS_PING, "s", 1), 0);
            break;
        default:
            ck_assert_int_eq(ws_send(&c, WS_PONG, "", 0), 0);
        }
        struct ws_msg m;
        int op;
        while ((op = ws_recv(&c, &m, i % 3 == 2 ? 66 : 1000)) > 0) {
            replies += op == WS_TEXT;
            pongs += op == WS_PONG;
            ck_assert_msg(op != WS_CLOSE, "closed with %d after %d frames at 15/s", m.close_code,
                          i + 1);
            ws_msg_free(&m);
            if (op == WS_TEXT || op == WS_PONG)
                break;
        }
        h_sleep_ms(50);
    }
    ck_assert_int_eq(replies, 20);
    ck_assert_int_eq(pongs, 20);
    h_ck_quiet(&c, "after 60 frames at 15/s", 200, 1);
    ws_close(&c, 1000);
}
END_TEST

START_TEST(test_large_message_in_fragments)
{
    /* 200 KiB in 200 fragments of 1 KiB, in one write: the fragments
     * before the last take no token (their bytes are bounded by
     * --max-message-bytes), so the message is read and answered. */
    struct ws c;
    h_ck_open_as(&c, G.port, "large");
    enum { FRAG = 1024, N = 200 };
    static char msg[FRAG * N];
    static const char head[] = "{\"type\":\"heartbeat\",\"pad\":\"";
    memset(msg, 'x', sizeof(msg));
    memcpy(msg, head, sizeof(head) - 1);
    memcpy(msg + sizeof(msg) - 2, "\"}", 2);
    unsigned char *all = NULL;
    size_t total = 0;
    for (int i = 0; i < N; i++)
        add_frame(&all, &total, (i == N - 1 ? 0x80 : 0) | (i ? 0 : WS_TEXT), msg + i * FRAG, FRAG);
    ck_assert_int_eq(h_send_all(c.fd, all, total, 5000), 0);
    free(all);
    struct h_msg m;
    ck_assert_msg(h_msg_recv(&c, &m, 5000), "no answer to 200 fragments of 1 KiB (close %d)",
                  c.close_code);
    ck_assert_str_eq(h_msg_type(&m), "heartbeat");
    h_msg_free(&m);
    h_ck_quiet(&c, "after a large fragmented message", 200, 1);
    ws_close(&c, 1000);

    /* the same bytes in fragments of 1,000 bytes: each takes a token */
    h_ck_open_as(&c, G.port, "large");
    all = NULL;
    total = 0;
    for (int i = 0; i < 100; i++)
        add_frame(&all, &total, i ? 0 : WS_TEXT, msg + i * 1000, 1000);
    expect_failed(&c, all, total, 1008, "100 fragments of 1,000 bytes", NULL);
}
END_TEST

static Suite *frames_suite(void)
{
    Suite *s = suite_create("frames");
    TCase *tc = h_tcase(s, "frames", 60, setup, teardown);
    tcase_add_test(tc, test_bad_frames_close_at_once);
    tcase_add_test(tc, test_fragmented_utf8);
    tcase_add_test(tc, test_replies_before_the_fault_kept);
    tcase_add_test(tc, test_flood_empty_continuations);
    tcase_add_test(tc, test_flood_pongs);
    tcase_add_test(tc, test_flood_pings);
    tcase_add_test(tc, test_steady_rate_allowed);
    tcase_add_test(tc, test_large_message_in_fragments);
    return s;
}

int main(void)
{
    return h_run_suite(frames_suite());
}
