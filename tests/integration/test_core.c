/* Black-box tests of the gateway core against a real redis-server and the
 * real notify-gateway process (README.md: flags, connecting, messages,
 * publishing, presence, HTTP endpoints, shutdown). Each test
 * starts its own redis-server and gateway with the flags it needs. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <jansson.h>
#include <liburing.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

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

/* Starts the gateway with the given flags (after the harness defaults). */
#define GW(...) H_GW(&G, &R, __VA_ARGS__)

/* ---- helpers ------------------------------------------------------------ */

static int ws_try(struct ws *c, const char *path, const char *headers)
{
    int st = ws_connect(c, G.port, path, headers, 5000);
    if (st != 101)
        ws_close(c, 1000);
    return st;
}

static void wait_subscribed(const char *channel)
{
    long long n = h_redis_wait_numsub(&R, channel, 1, 5000);
    ck_assert_msg(n == 1, "NUMSUB %s is %lld, want 1 (gateway did not subscribe)", channel, n);
}

static void expect_text(struct ws *c, const char *want, const char *who)
{
    char *got = ws_recv_text(c, 3000);
    ck_assert_msg(got != NULL, "%s: no message (close code %d)", who, c->close_code);
    ck_assert_msg(!strcmp(got, want), "%s: got '%s', want '%s'", who, got, want);
    free(got);
}

static void expect_heartbeat_roundtrip(struct ws *c)
{
    ck_assert_int_eq(ws_send_text(c, "{\"type\":\"heartbeat\"}"), 0);
    char *text = ws_recv_text(c, 3000);
    json_t *j = h_ck_envelope(text, "heartbeat");
    json_t *content = json_object_get(j, "content");
    ck_assert_str_eq(h_jstr(content, "body"), "");
    ck_assert_str_eq(h_jstr(content, "meta_data"), "");
    json_decref(j);
    free(text);
}

/* ---- register reply ----------------------------------------------------- */

START_TEST(test_register_reply)
{
    GW("--auth", "none", "--node-id", "it-node-a", "--heartbeat-timeout", "20");
    struct ws c;
    ck_assert_int_eq(ws_connect(&c, G.port, "/ws?user_id=u1", NULL, 5000), 101);
    char *text = ws_recv_text(&c, 5000);
    json_t *j = h_ck_envelope(text, "register");
    json_t *content = json_object_get(j, "content");
    ck_assert_msg(h_jstr(content, "body")[0] != '\0', "empty connection id");
    json_t *meta = h_ck_json_obj(h_jstr(content, "meta_data"));
    ck_assert_str_eq(h_jstr(meta, "account"), "u1");
    ck_assert_str_eq(h_jstr(meta, "node"), "it-node-a");
    json_t *hi = json_object_get(meta, "heartbeat_interval");
    json_t *ht = json_object_get(meta, "heartbeat_timeout");
    ck_assert_msg(json_is_number(hi) && json_is_number(ht), "heartbeat fields missing: %s",
                  h_jstr(content, "meta_data"));
    ck_assert_msg(json_number_value(ht) == 20, "heartbeat_timeout is not the flag's 20");
    ck_assert_msg(json_number_value(hi) > 0 && json_number_value(hi) < json_number_value(ht),
                  "heartbeat_interval %g must be in (0, heartbeat_timeout)", json_number_value(hi));
    json_decref(meta);
    json_decref(j);
    free(text);
    ws_close(&c, 1000);
}
END_TEST

START_TEST(test_register_ids_unique)
{
    GW("--auth", "none");
    struct ws c[4];
    char *ids[4];
    const char *acct[4] = {"u1", "u1", "u2", "u1"};
    for (int i = 0; i < 4; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/ws?user_id=%s", acct[i]);
        ck_assert_int_eq(ws_connect(&c[i], G.port, path, NULL, 5000), 101);
        ids[i] = h_ck_expect_register(&c[i], acct[i]);
    }
    /* a reconnect after a close must get a new id, too */
    ws_close(&c[3], 1000);
    ck_assert_int_eq(ws_connect(&c[3], G.port, "/ws?user_id=u1", NULL, 5000), 101);
    char *again = h_ck_expect_register(&c[3], "u1");
    for (int i = 0; i < 4; i++) {
        for (int k = i + 1; k < 4; k++)
            ck_assert_msg(strcmp(ids[i], ids[k]) != 0, "connections %d and %d share id %s", i, k,
                          ids[i]);
        ck_assert_msg(strcmp(ids[i], again) != 0, "reconnect reused id %s", again);
    }
    for (int i = 0; i < 4; i++) {
        free(ids[i]);
        ws_close(&c[i], 1000);
    }
    free(again);
}
END_TEST

/* ---- presence (README.md "Presence") ------------------------------------- */

START_TEST(test_presence_follows_connections)
{
    GW("--auth", "none", "--node-id", "it-node-p");
    struct ws a, b;
    ck_assert_int_eq(ws_connect(&a, G.port, "/ws?user_id=u1", NULL, 5000), 101);
    char *id = h_ck_expect_register(&a, "u1");
    h_ck_open_as(&b, G.port, "u1");
    long long deadline = h_mono_ms() + 5000;
    while (h_presence_live(&R, "u1") != 2 && h_mono_ms() < deadline)
        h_sleep_ms(50);
    ck_assert_msg(h_presence_live(&R, "u1") == 2, "ZCOUNT of live u1 entries is %lld, want 2",
                  h_presence_live(&R, "u1"));
    /* the member is <node id>/<connection id> */
    char member[128];
    snprintf(member, sizeof(member), "it-node-p/%s", id);
    redisReply *rep = h_redis_cmd(&R, "ZSCORE %s %s", "notify:presence:{u1}", member);
    ck_assert_msg(rep && rep->type == REDIS_REPLY_STRING, "no presence member %s", member);
    ck_assert_msg(atof(rep->str) > (double)h_unix_s() * 1000,
                  "presence score %s is not in the "
                  "future",
                  rep->str);
    freeReplyObject(rep);
    ck_assert_int_gt(h_redis_int(&R, "TTL %s", "notify:presence:{u1}"), 0);
    ws_close(&a, 1000);
    ws_drop(&b);
    deadline = h_mono_ms() + 5000;
    while (h_presence_live(&R, "u1") != 0 && h_mono_ms() < deadline)
        h_sleep_ms(50);
    ck_assert_msg(h_presence_live(&R, "u1") == 0,
                  "%lld live u1 entries 5 s after both disconnected", h_presence_live(&R, "u1"));
    free(id);
}
END_TEST

/* ---- delivery ----------------------------------------------------------- */

/* Spacing, key order, escapes and non-ASCII must survive byte for byte. */
static const char PAYLOAD[] =
    "{ \"content\" : {\"meta_data\":\"{\\\"k\\\":1}\", \"body\":\"h\\u00e9llo \\\"w\\\" "
    "\xe2\x9c\x93\"},  \"type\":\"notice\", \"x\":[1,2.50,null] }";

START_TEST(test_account_delivery)
{
    GW("--auth", "none");
    struct ws a1, a2, b;
    h_ck_open_as(&a1, G.port, "u1");
    h_ck_open_as(&a2, G.port, "u1");
    h_ck_open_as(&b, G.port, "u2");
    wait_subscribed(h_chan("u1"));
    wait_subscribed(h_chan("u2"));
    h_ck_publish_raw(&R, h_chan("u1"), PAYLOAD, strlen(PAYLOAD));
    expect_text(&a1, PAYLOAD, "u1 connection 1");
    expect_text(&a2, PAYLOAD, "u1 connection 2");
    /* u2 must not have received it: its next message is its own */
    const char *mark = "{\"type\":\"mark\",\"content\":{\"body\":\"for u2\",\"meta_data\":\"\"}}";
    h_ck_publish_raw(&R, h_chan("u2"), mark, strlen(mark));
    expect_text(&b, mark, "u2");
    /* and u1 got exactly one copy each */
    const char *next = "{\"type\":\"mark\",\"content\":{\"body\":\"2\",\"meta_data\":\"\"}}";
    h_ck_publish_raw(&R, h_chan("u1"), next, strlen(next));
    expect_text(&a1, next, "u1 connection 1, second");
    expect_text(&a2, next, "u1 connection 2, second");
    ws_close(&a1, 1000);
    ws_close(&a2, 1000);
    ws_close(&b, 1000);
}
END_TEST

/* A client that stops reading: the gateway's writes hit a full socket
 * (partial writes, then waiting for POLLOUT) and must resume exactly where
 * they stopped once it reads again, in order, nothing lost or repeated.
 * Run with batched io_uring writes and, as integration_core_sendmsg, with
 * a sendmsg per socket. */
START_TEST(test_full_socket_resumes_in_order)
{
    GW("--auth", "none", "--max-queue-messages", "4096", "--max-queue-bytes", "16777216",
       "--heartbeat-timeout", "300", "--heartbeat-check", "60");
    struct ws slow, other;
    h_ck_open_as(&slow, G.port, "slow");
    h_ck_open_as(&other, G.port, "other");
    /* loopback's receive buffers grow to 32 MB: keep this one small so
     * that the gateway's side fills up */
    int small = 65536;
    ck_assert_int_eq(setsockopt(slow.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    wait_subscribed(h_chan("slow"));
    wait_subscribed(h_chan("other"));
    enum { N = 1200, BODY = 6000 };
    char *fill = malloc(BODY + 1);
    memset(fill, 'z', BODY);
    fill[BODY] = '\0';
    /* 1200 x 6 KB = 7.2 MB unread: more than the socket buffers hold
     * (the sending side grows to 4 MB) */
    for (int i = 0; i < N; i++) {
        snprintf(fill, 16, "%06d", i);
        fill[6] = 'z';
        char *payload = h_envelope("bulk", fill);
        h_ck_publish_raw(&R, h_chan("slow"), payload, strlen(payload));
        free(payload);
    }
    /* the socket is full: the rest waits in the gateway's queue */
    long long deadline = h_mono_ms() + 5000;
    while (h_ck_metric(G.port, "notify_queued_bytes") <= 0 && h_mono_ms() < deadline)
        h_sleep_ms(50);
    fprintf(stderr, "[core] full socket: %g bytes queued in the gateway\n",
            h_ck_metric(G.port, "notify_queued_bytes"));
    ck_assert_msg(h_ck_metric(G.port, "notify_queued_bytes") > 0, "nothing queued");
    /* meanwhile another client is served at once */
    const char *mark = "{\"type\":\"mark\",\"content\":{\"body\":\"x\",\"meta_data\":\"\"}}";
    h_ck_publish_raw(&R, h_chan("other"), mark, strlen(mark));
    expect_text(&other, mark, "the other client");
    h_sleep_ms(200);
    for (int i = 0; i < N; i++) {
        char *text = ws_recv_text(&slow, 10000);
        ck_assert_msg(text != NULL, "message %d missing (close code %d)", i, slow.close_code);
        json_t *j = h_ck_envelope(text, "bulk");
        const char *body = h_jstr(json_object_get(j, "content"), "body");
        char want[8];
        snprintf(want, sizeof(want), "%06d", i);
        ck_assert_msg(strlen(body) == BODY && !strncmp(body, want, 6),
                      "message %d: got body starting '%.8s' (%zu bytes)", i, body, strlen(body));
        json_decref(j);
        free(text);
    }
    free(fill);
    expect_heartbeat_roundtrip(&slow);
    ws_close(&slow, 1000);
    ws_close(&other, 1000);
}
END_TEST

START_TEST(test_broadcast)
{
    GW("--auth", "none");
    struct ws c[3];
    const char *acct[3] = {"u1", "u1", "u2"};
    for (int i = 0; i < 3; i++)
        h_ck_open_as(&c[i], G.port, acct[i]);
    wait_subscribed("notify:broadcast");
    h_ck_publish_raw(&R, "notify:broadcast", PAYLOAD, strlen(PAYLOAD));
    for (int i = 0; i < 3; i++)
        expect_text(&c[i], PAYLOAD, acct[i]);
    for (int i = 0; i < 3; i++)
        ws_close(&c[i], 1000);
}
END_TEST

/* ---- client messages ---------------------------------------------------- */

START_TEST(test_heartbeat_reply)
{
    GW("--auth", "none");
    struct ws c;
    h_ck_open_as(&c, G.port, "u1");
    for (int i = 0; i < 3; i++)
        expect_heartbeat_roundtrip(&c);
    ws_close(&c, 1000);
}
END_TEST

static void expect_error_then_alive(const char *bad, size_t len)
{
    struct ws c;
    h_ck_open_as(&c, G.port, "u1");
    ck_assert_int_eq(ws_send(&c, WS_TEXT, bad, len), 0);
    char *text = ws_recv_text(&c, 3000);
    ck_assert_msg(text != NULL, "no error reply to '%s' (close code %d)", bad, c.close_code);
    json_t *j = h_ck_envelope(text, "error");
    ck_assert_msg(h_jstr(json_object_get(j, "content"), "body")[0] != '\0',
                  "error reply without a reason: %s", text);
    json_decref(j);
    free(text);
    expect_heartbeat_roundtrip(&c); /* still open and serving */
    ws_close(&c, 1000);
}

START_TEST(test_error_reply_not_json)
{
    GW("--auth", "none");
    expect_error_then_alive("hello there", 11);
}
END_TEST

START_TEST(test_error_reply_unknown_type)
{
    GW("--auth", "none");
    expect_error_then_alive("{\"type\":\"no-such-type\"}", 23);
}
END_TEST

/* ---- heartbeat timeout -------------------------------------------------- */

START_TEST(test_silent_client_closed_4408)
{
    GW("--auth", "none", "--heartbeat-timeout", "2", "--heartbeat-check", "1");
    struct ws c;
    long long t0 = h_mono_ms();
    h_ck_open_as(&c, G.port, "u1");
    c.auto_pong = 0; /* ignore the server's pings */
    int code = ws_wait_close(&c, 8000);
    long long took = h_mono_ms() - t0;
    ck_assert_msg(code == 4408, "silent client: close code %d after %lld ms, want 4408", code,
                  took);
    ck_assert_msg(took >= 1500, "closed after %lld ms, before the 2 s timeout", took);
    ws_close(&c, 1000);
}
END_TEST

/* Keeps the connection for ms while doing what kind says; fails on close. */
enum keepalive { BY_PONG_REPLIES, BY_HEARTBEATS, BY_UNSOLICITED_PONGS };

static void stay_alive(struct ws *c, enum keepalive kind, int ms)
{
    c->auto_pong = kind == BY_PONG_REPLIES;
    long long end = h_mono_ms() + ms, next_send = 0;
    while (h_mono_ms() < end) {
        if (kind != BY_PONG_REPLIES && h_mono_ms() >= next_send) {
            if (kind == BY_HEARTBEATS)
                ck_assert_int_eq(ws_send_text(c, "{\"type\":\"heartbeat\"}"), 0);
            else
                ck_assert_int_eq(ws_send(c, WS_PONG, "keepalive", 9), 0);
            next_send = h_mono_ms() + 700;
        }
        struct ws_msg m;
        int op = ws_recv(c, &m, 100);
        ws_msg_free(&m);
        ck_assert_msg(op != WS_CLOSE && op != WS_ERROR,
                      "connection closed (code %d) while keeping it alive", c->close_code);
    }
}

START_TEST(test_pong_replies_keep_alive)
{
    GW("--auth", "none", "--heartbeat-timeout", "2", "--heartbeat-check", "1");
    struct ws c;
    h_ck_open_as(&c, G.port, "u1");
    stay_alive(&c, BY_PONG_REPLIES, 5000);
    ck_assert_msg(c.pings > 0, "the server sent no ping in 5 s");
    expect_heartbeat_roundtrip(&c);
    ws_close(&c, 1000);
}
END_TEST

START_TEST(test_heartbeats_keep_alive)
{
    GW("--auth", "none", "--heartbeat-timeout", "2", "--heartbeat-check", "1");
    struct ws c;
    h_ck_open_as(&c, G.port, "u1");
    stay_alive(&c, BY_HEARTBEATS, 5000);
    expect_heartbeat_roundtrip(&c);
    ws_close(&c, 1000);
}
END_TEST

START_TEST(test_unsolicited_pongs_keep_alive)
{
    GW("--auth", "none", "--heartbeat-timeout", "2", "--heartbeat-check", "1");
    struct ws c;
    h_ck_open_as(&c, G.port, "u1");
    stay_alive(&c, BY_UNSOLICITED_PONGS, 5000);
    expect_heartbeat_roundtrip(&c);
    ws_close(&c, 1000);
}
END_TEST

/* ---- limits ------------------------------------------------------------- */

START_TEST(test_oversize_frame_1009)
{
    GW("--auth", "none", "--max-message-bytes", "1024");
    struct ws c;
    h_ck_open_as(&c, G.port, "u1");
    /* exactly the limit is accepted: a heartbeat padded with spaces */
    char msg[1100];
    memset(msg, ' ', sizeof(msg));
    memcpy(msg, "{\"type\":\"heartbeat\"", 19);
    msg[1023] = '}';
    ck_assert_int_eq(ws_send(&c, WS_TEXT, msg, 1024), 0);
    char *text = ws_recv_text(&c, 3000);
    ck_assert_msg(text != NULL, "a 1024-byte frame was refused (close %d)", c.close_code);
    json_decref(h_ck_envelope(text, "heartbeat"));
    free(text);
    /* one byte more is not */
    msg[1023] = ' ';
    msg[1024] = '}';
    ck_assert_int_eq(ws_send(&c, WS_TEXT, msg, 1025), 0);
    int code = ws_wait_close(&c, 3000);
    ck_assert_msg(code == 1009, "a 1025-byte frame: close code %d, want 1009", code);
    ws_close(&c, 1000);
}
END_TEST

START_TEST(test_max_connections_503)
{
    GW("--auth", "none", "--max-connections", "1");
    struct ws a, b;
    h_ck_open_as(&a, G.port, "u1");
    ck_assert_int_eq(ws_try(&b, "/ws?user_id=u2", NULL), 503);
    ws_close(&a, 1000);
    /* the slot frees once the first connection is gone */
    long long deadline = h_mono_ms() + 3000;
    int st;
    while ((st = ws_try(&b, "/ws?user_id=u2", NULL)) != 101 && h_mono_ms() < deadline)
        h_sleep_ms(100);
    ck_assert_msg(st == 101, "after the close a new connection still got %d", st);
    ws_close(&b, 1000);
}
END_TEST

START_TEST(test_max_per_account_429)
{
    GW("--auth", "none", "--max-connections-per-account", "1");
    struct ws a, b, other;
    h_ck_open_as(&a, G.port, "u1");
    ck_assert_int_eq(ws_try(&b, "/ws?user_id=u1", NULL), 429);
    h_ck_open_as(&other, G.port, "u2"); /* other accounts are not affected */
    ws_close(&a, 1000);
    long long deadline = h_mono_ms() + 3000;
    int st;
    while ((st = ws_try(&b, "/ws?user_id=u1", NULL)) != 101 && h_mono_ms() < deadline)
        h_sleep_ms(100);
    ck_assert_msg(st == 101, "after the close u1 still got %d", st);
    ws_close(&b, 1000);
    ws_close(&other, 1000);
}
END_TEST

/* ---- subscriptions follow connections ----------------------------------- */

START_TEST(test_unsubscribe_after_last_disconnect)
{
    GW("--auth", "none");
    struct ws a, b;
    ck_assert_int_eq(h_redis_numsub(&R, h_chan("u1")), 0);
    h_ck_open_as(&a, G.port, "u1");
    wait_subscribed(h_chan("u1"));
    h_ck_open_as(&b, G.port, "u1");
    ck_assert_int_eq(h_redis_numsub(&R, h_chan("u1")), 1);
    ws_close(&a, 1000);
    h_sleep_ms(1500); /* longer than any batching of (un)subscribes */
    ck_assert_msg(h_redis_numsub(&R, h_chan("u1")) == 1,
                  "unsubscribed although a connection of u1 is left");
    const char *msg = "{\"type\":\"t\",\"content\":{\"body\":\"still here\",\"meta_data\":\"\"}}";
    h_ck_publish_raw(&R, h_chan("u1"), msg, strlen(msg));
    expect_text(&b, msg, "remaining u1 connection");
    ws_drop(&b); /* the last one goes away without a close frame */
    long long n = h_redis_wait_numsub(&R, h_chan("u1"), 0, 5000);
    ck_assert_msg(n == 0, "NUMSUB %s is %lld 5 s after the last disconnect", h_chan("u1"), n);
}
END_TEST

/* ---- rejections before the upgrade -------------------------------------- */

#define SECRET "it-secret-0123456789"

static char *bearer(const char *token)
{
    static char buf[2048];
    snprintf(buf, sizeof(buf), "Authorization: Bearer %s\r\n", token);
    return buf;
}

START_TEST(test_jwt_rejections)
{
    GW("--auth", "jwt", "--jwt-secret", SECRET);
    struct ws c;
    long long now = h_unix_s();
    char *expired = h_jwt_hs256(SECRET, "u1", now - 60);
    char *none = h_jwt_hs256(NULL, "u1", now + 600);
    char *wrong = h_jwt_hs256("another-secret", "u1", now + 600);
    char *no_exp = h_jwt_hs256(SECRET, "u1", 0);
    char *no_sub = h_jwt_hs256(SECRET, NULL, now + 600);
    ck_assert(expired && none && wrong && no_exp && no_sub);
    ck_assert_int_eq(ws_try(&c, "/ws", NULL), 401);
    ck_assert_int_eq(ws_try(&c, "/ws?user_id=u1", NULL), 401);
    ck_assert_int_eq(ws_try(&c, "/ws", "Authorization: Bearer\r\n"), 401);
    ck_assert_int_eq(ws_try(&c, "/ws", bearer("not.a.token")), 401);
    ck_assert_int_eq(ws_try(&c, "/ws?token=garbage", NULL), 401);
    ck_assert_int_eq(ws_try(&c, "/ws", bearer(expired)), 401);
    ck_assert_int_eq(ws_try(&c, "/ws", bearer(none)), 401);
    ck_assert_int_eq(ws_try(&c, "/ws", bearer(wrong)), 401);
    ck_assert_int_eq(ws_try(&c, "/ws", bearer(no_exp)), 401);
    ck_assert_int_eq(ws_try(&c, "/ws", bearer(no_sub)), 401);
    char path[2048];
    snprintf(path, sizeof(path), "/ws?token=%s", expired);
    ck_assert_int_eq(ws_try(&c, path, NULL), 401);
    snprintf(path, sizeof(path), "/ws?token=%s", none);
    ck_assert_int_eq(ws_try(&c, path, NULL), 401);
    snprintf(path, sizeof(path), "/ws?token=%s", wrong);
    ck_assert_int_eq(ws_try(&c, path, NULL), 401);
    free(expired);
    free(none);
    free(wrong);
    free(no_exp);
    free(no_sub);
}
END_TEST

START_TEST(test_jwt_valid_header_and_query)
{
    GW("--auth", "jwt", "--jwt-secret", SECRET);
    char *tok = h_jwt_hs256(SECRET, "alice@example", h_unix_s() + 600);
    ck_assert_ptr_nonnull(tok);
    struct ws a, b;
    ck_assert_int_eq(ws_connect(&a, G.port, "/ws", bearer(tok), 5000), 101);
    free(h_ck_expect_register(&a, "alice@example"));
    char path[2048];
    snprintf(path, sizeof(path), "/ws?token=%s", tok);
    ck_assert_int_eq(ws_connect(&b, G.port, path, NULL, 5000), 101);
    free(h_ck_expect_register(&b, "alice@example"));
    /* the account comes from sub: both get alice's messages */
    wait_subscribed(h_chan("alice@example"));
    h_ck_publish_raw(&R, h_chan("alice@example"), PAYLOAD, strlen(PAYLOAD));
    expect_text(&a, PAYLOAD, "header-authenticated");
    expect_text(&b, PAYLOAD, "query-authenticated");
    ws_close(&a, 1000);
    ws_close(&b, 1000);
    free(tok);
}
END_TEST

START_TEST(test_jwt_expiry_closes_4401)
{
    /* A short heartbeat period so the gateway looks at the connection
     * often; the client answers pings, so only the token can end it. */
    GW("--auth", "jwt", "--jwt-secret", SECRET, "--heartbeat-timeout", "4", "--heartbeat-check",
       "1");
    char *tok = h_jwt_hs256(SECRET, "u1", h_unix_s() + 3);
    struct ws c;
    ck_assert_int_eq(ws_connect(&c, G.port, "/ws", bearer(tok), 5000), 101);
    free(h_ck_expect_register(&c, "u1"));
    int code = ws_wait_close(&c, 15000);
    ck_assert_msg(code == 4401, "token expired while connected: close code %d, want 4401", code);
    ws_close(&c, 1000);
    free(tok);
}
END_TEST

START_TEST(test_none_account_ids)
{
    GW("--auth", "none");
    struct ws c;
    char path[512], id[200];
    ck_assert_int_eq(ws_try(&c, "/ws", NULL), 400);
    ck_assert_int_eq(ws_try(&c, "/ws?user_id=", NULL), 400);
    memset(id, 'a', 129);
    id[129] = '\0';
    snprintf(path, sizeof(path), "/ws?user_id=%s", id);
    ck_assert_int_eq(ws_try(&c, path, NULL), 400);
    ck_assert_int_eq(ws_try(&c, "/ws?user_id=a/b", NULL), 400);
    ck_assert_int_eq(ws_try(&c, "/ws?user_id=a%2Fb", NULL), 400);
    ck_assert_int_eq(ws_try(&c, "/ws?user_id=a%20b", NULL), 400);
    ck_assert_int_eq(ws_try(&c, "/ws?user_id=%7Bu1%7D", NULL), 400);
    ck_assert_int_eq(ws_try(&c, "/ws?user_id=%C3%BC", NULL), 400);
    /* the longest and every allowed character are accepted */
    id[128] = '\0';
    snprintf(path, sizeof(path), "/ws?user_id=%s", id);
    ck_assert_int_eq(ws_connect(&c, G.port, path, NULL, 5000), 101);
    free(h_ck_expect_register(&c, id));
    ws_close(&c, 1000);
    ck_assert_int_eq(ws_connect(&c, G.port, "/ws?user_id=Az09_.@:-x", NULL, 5000), 101);
    free(h_ck_expect_register(&c, "Az09_.@:-x"));
    ws_close(&c, 1000);
}
END_TEST

START_TEST(test_origin_403)
{
    GW("--auth", "none", "--allowed-origins", "https://app.example.com,https://admin.example.com");
    struct ws c;
    ck_assert_int_eq(ws_try(&c, "/ws?user_id=u1", "Origin: https://evil.example.com\r\n"), 403);
    ck_assert_int_eq(ws_try(&c, "/ws?user_id=u1", "Origin: https://app.example.com.evil.net\r\n"),
                     403);
    ck_assert_int_eq(ws_try(&c, "/ws?user_id=u1", "Origin: http://app.example.com\r\n"), 403);
    ck_assert_int_eq(
        ws_connect(&c, G.port, "/ws?user_id=u1", "Origin: https://admin.example.com\r\n", 5000),
        101);
    ws_close(&c, 1000);
    ck_assert_int_eq(
        ws_connect(&c, G.port, "/ws?user_id=u1", "Origin: https://app.example.com\r\n", 5000), 101);
    ws_close(&c, 1000);
}
END_TEST

/* ---- producer payloads that are not forwarded --------------------------- */

START_TEST(test_invalid_payloads_dropped)
{
    GW("--auth", "none");
    struct ws c;
    h_ck_open_as(&c, G.port, "u1");
    wait_subscribed(h_chan("u1"));
    static const char *bad[] = {
        "not json at all",
        "[{\"type\":\"array\",\"content\":{\"body\":\"\",\"meta_data\":\"\"}}]",
        "{\"type\":\"bad-utf8 \xff\xfe\",\"content\":{\"body\":\"\",\"meta_data\":\"\"}}",
        "42",
        "{\"type\":\"trailing\"} {}",
    };
    size_t nbad = sizeof(bad) / sizeof(bad[0]);
    for (size_t i = 0; i < nbad; i++)
        h_ck_publish_raw(&R, h_chan("u1"), bad[i], strlen(bad[i]));
    const char *good = "{\"type\":\"good\",\"content\":{\"body\":\"ok\",\"meta_data\":\"\"}}";
    h_ck_publish_raw(&R, h_chan("u1"), good, strlen(good));
    expect_text(&c, good, "u1 after invalid payloads");
    double dropped = h_ck_metric(G.port, "notify_messages_dropped_total");
    ck_assert_msg(dropped >= (double)nbad, "notify_messages_dropped_total is %g, want >= %zu",
                  dropped, nbad);
    ws_close(&c, 1000);
}
END_TEST

/* ---- HTTP endpoints ----------------------------------------------------- */

START_TEST(test_health_ready_metrics)
{
    GW("--auth", "none");
    ck_assert_int_eq(h_http_get(G.port, "/healthz", NULL), 200);
    ck_assert_msg(h_http_wait_status(G.port, "/readyz", 200, 5000), "/readyz never 200");
    char *body = NULL;
    ck_assert_int_eq(h_http_get(G.port, "/metrics", &body), 200);
    ck_assert_msg(strstr(body, "notify_connections") != NULL, "no notify_connections in:\n%s",
                  body);
    free(body);
    ck_assert_msg(h_ck_metric(G.port, "notify_connections") == 0,
                  "notify_connections not 0 while idle");
    /* batched io_uring writes wherever io_uring works (probed here), unless
     * turned off */
    const char *flags = getenv("NOTIFY_TEST_GATEWAY_FLAGS");
    struct io_uring ring;
    int works = io_uring_queue_init(2, &ring, 0) == 0;
    if (works)
        io_uring_queue_exit(&ring);
    int want = flags && strstr(flags, "--io-uring=false") ? 0 : works;
    ck_assert_msg(h_ck_metric(G.port, "notify_io_uring") == want, "notify_io_uring is %g, want %d",
                  h_ck_metric(G.port, "notify_io_uring"), want);
    struct ws c;
    h_ck_open_as(&c, G.port, "u1");
    long long deadline = h_mono_ms() + 3000;
    while (h_ck_metric(G.port, "notify_connections") != 1 && h_mono_ms() < deadline)
        h_sleep_ms(50);
    ck_assert_msg(h_ck_metric(G.port, "notify_connections") == 1,
                  "notify_connections is %g with one open",
                  h_ck_metric(G.port, "notify_connections"));
    ws_close(&c, 1000);
    deadline = h_mono_ms() + 3000;
    while (h_ck_metric(G.port, "notify_connections") != 0 && h_mono_ms() < deadline)
        h_sleep_ms(50);
    ck_assert_msg(h_ck_metric(G.port, "notify_connections") == 0,
                  "notify_connections is %g after the close",
                  h_ck_metric(G.port, "notify_connections"));
}
END_TEST

START_TEST(test_redis_outage)
{
    GW("--auth", "none");
    ck_assert_msg(h_http_wait_status(G.port, "/readyz", 200, 5000), "/readyz never 200");
    struct ws c;
    h_ck_open_as(&c, G.port, "u1");
    wait_subscribed(h_chan("u1"));
    h_proc_kill(&R.proc);
    ck_assert_msg(h_http_wait_status(G.port, "/readyz", 503, 5000),
                  "/readyz not 503 with Redis down");
    ck_assert_int_eq(h_http_get(G.port, "/healthz", NULL), 200);
    ck_assert_int_eq(h_redis_restart(&R), 0);
    ck_assert_msg(h_http_wait_status(G.port, "/readyz", 200, 15000),
                  "/readyz not back to 200 after Redis returned");
    /* the connection survived and its account is subscribed again */
    wait_subscribed(h_chan("u1"));
    h_ck_publish_raw(&R, h_chan("u1"), PAYLOAD, strlen(PAYLOAD));
    /* the new Redis is empty, so the gateway may first report the lost
     * history with a "gap" message (README.md "Resuming") */
    char *got = ws_recv_text(&c, 3000);
    if (got && strstr(got, "\"gap\"")) {
        json_decref(h_ck_envelope(got, "gap"));
        free(got);
        got = ws_recv_text(&c, 3000);
    }
    ck_assert_msg(got != NULL, "no message after the outage (close code %d)", c.close_code);
    ck_assert_msg(!strcmp(got, PAYLOAD), "after the outage got '%s', want '%s'", got, PAYLOAD);
    free(got);
    ws_close(&c, 1000);
}
END_TEST

/* ---- graceful shutdown -------------------------------------------------- */

/* Opens two clients, waits until u1's presence is recorded, sends SIGTERM. */
static void start_draining(struct ws *a, struct ws *b, long long *t0)
{
    GW("--auth", "none", "--drain-seconds", "2");
    h_ck_open_as(a, G.port, "u1");
    h_ck_open_as(b, G.port, "u2");
    ck_assert_msg(h_http_wait_status(G.port, "/readyz", 200, 5000), "/readyz never 200");
    long long deadline = h_mono_ms() + 5000;
    while (h_redis_int(&R, "EXISTS %s", "notify:presence:{u1}") != 1 && h_mono_ms() < deadline)
        h_sleep_ms(50);
    ck_assert_int_eq(h_redis_int(&R, "EXISTS %s", "notify:presence:{u1}"), 1);
    *t0 = h_mono_ms();
    ck_assert_int_eq(h_gw_signal(&G, SIGTERM), 0);
    G.must_survive = 0;
}

START_TEST(test_sigterm_readyz_503)
{
    struct ws a, b, late;
    long long t0;
    start_draining(&a, &b, &t0);
    /* a load balancer polling /readyz must see the node leave: 503 (not a
     * refused connection) within a moment of the signal */
    int st, seen_503 = 0;
    long long deadline = t0 + 1500;
    do {
        st = h_http_get(G.port, "/readyz", NULL);
        if (st == 503)
            seen_503 = 1;
        else
            h_sleep_ms(20);
    } while (!seen_503 && h_mono_ms() < deadline);
    ck_assert_msg(seen_503,
                  "GET /readyz after SIGTERM: last answer %d (-1 = no HTTP answer), "
                  "want 503",
                  st);
    ck_assert_msg(ws_try(&late, "/ws?user_id=u3", NULL) != 101,
                  "a new connection was accepted while draining");
    ws_close(&a, 1000);
    ws_close(&b, 1000);
}
END_TEST

START_TEST(test_sigterm_closes_1001_and_exits_0)
{
    struct ws a, b;
    long long t0;
    start_draining(&a, &b, &t0);
    int ca = ws_wait_close(&a, 5000);
    int cb = ws_wait_close(&b, 5000);
    ck_assert_msg(ca == 1001 && cb == 1001, "close codes while draining: %d and %d, want 1001", ca,
                  cb);
    int st = h_gw_wait(&G, 8000);
    long long took = h_mono_ms() - t0;
    ck_assert_msg(st == 0, "exit status %d after SIGTERM, want 0", st);
    ck_assert_msg(took < 6000, "draining took %lld ms with --drain-seconds 2", took);
    ck_assert_msg(h_redis_int(&R, "EXISTS %s", "notify:presence:{u1}") == 0,
                  "presence of u1 left behind after a clean shutdown");
    ws_close(&a, 1000);
    ws_close(&b, 1000);
}
END_TEST

/* ---- command line ------------------------------------------------------- */

static int count_lines(const char *s)
{
    int n = 0;
    for (const char *p = s; *p; p++)
        if (*p == '\n')
            n++;
    if (*s && s[strlen(s) - 1] != '\n')
        n++;
    return n;
}

START_TEST(test_bad_flag_exit_2)
{
    char listen[64], url[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", h_free_port());
    h_redis_url(&R, url, sizeof(url));
    const char *args[] = {
        "--listen", listen, "--redis", url, "--auth", "none", "--heartbeat-timeout", "abc", NULL};
    char *err = NULL;
    int st = h_gw_run(args, NULL, 5000, &err);
    ck_assert_msg(st == 2, "exit status %d for --heartbeat-timeout abc, want 2", st);
    ck_assert_msg(strstr(err, "--heartbeat-timeout") != NULL, "stderr does not name the flag: %s",
                  err);
    ck_assert_msg(count_lines(err) == 1, "error is not one line: %s", err);
    free(err);
}
END_TEST

START_TEST(test_bad_env_exit_2)
{
    char listen[64], url[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", h_free_port());
    h_redis_url(&R, url, sizeof(url));
    const char *args[] = {"--listen", listen, "--redis", url, "--auth", "none", NULL};
    const char *env[] = {"NOTIFY_MAX_MESSAGE_BYTES=lots", NULL};
    char *err = NULL;
    int st = h_gw_run(args, env, 5000, &err);
    ck_assert_msg(st == 2, "exit status %d for NOTIFY_MAX_MESSAGE_BYTES=lots, want 2", st);
    ck_assert_msg(strstr(err, "max-message-bytes") || strstr(err, "MAX_MESSAGE_BYTES"),
                  "stderr does not name the setting: %s", err);
    free(err);
}
END_TEST

START_TEST(test_jwt_without_key_exit_2)
{
    char listen[64], url[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", h_free_port());
    h_redis_url(&R, url, sizeof(url));
    const char *args[] = {"--listen", listen, "--redis", url, "--auth", "jwt", NULL};
    char *err = NULL;
    int st = h_gw_run(args, NULL, 5000, &err);
    ck_assert_msg(st == 2, "exit status %d for --auth jwt without a key, want 2", st);
    ck_assert_msg(strcasestr(err, "jwt") != NULL, "stderr does not say why: %s", err);
    free(err);
    /* jwt is the default: no flags at all must not start either */
    const char *args2[] = {"--listen", listen, "--redis", url, NULL};
    st = h_gw_run(args2, NULL, 5000, NULL);
    ck_assert_msg(st == 2, "exit status %d with the default --auth jwt and no key, want 2", st);
}
END_TEST

/* ---- suite -------------------------------------------------------------- */

static Suite *core_suite(void)
{
    Suite *s = suite_create("gateway-core");
    TCase *tc;

    tc = h_tcase(s, "register", 30, setup, teardown);
    tcase_add_test(tc, test_register_reply);
    tcase_add_test(tc, test_register_ids_unique);

    tc = h_tcase(s, "presence", 30, setup, teardown);
    tcase_add_test(tc, test_presence_follows_connections);

    tc = h_tcase(s, "delivery", 30, setup, teardown);
    tcase_add_test(tc, test_account_delivery);
    tcase_add_test(tc, test_full_socket_resumes_in_order);
    tcase_add_test(tc, test_broadcast);
    tcase_add_test(tc, test_invalid_payloads_dropped);

    tc = h_tcase(s, "client-messages", 30, setup, teardown);
    tcase_add_test(tc, test_heartbeat_reply);
    tcase_add_test(tc, test_error_reply_not_json);
    tcase_add_test(tc, test_error_reply_unknown_type);

    tc = h_tcase(s, "heartbeat-timeout", 40, setup, teardown);
    tcase_add_test(tc, test_silent_client_closed_4408);
    tcase_add_test(tc, test_pong_replies_keep_alive);
    tcase_add_test(tc, test_heartbeats_keep_alive);
    tcase_add_test(tc, test_unsolicited_pongs_keep_alive);

    tc = h_tcase(s, "limits", 30, setup, teardown);
    tcase_add_test(tc, test_oversize_frame_1009);
    tcase_add_test(tc, test_max_connections_503);
    tcase_add_test(tc, test_max_per_account_429);

    tc = h_tcase(s, "subscriptions", 30, setup, teardown);
    tcase_add_test(tc, test_unsubscribe_after_last_disconnect);

    tc = h_tcase(s, "auth", 40, setup, teardown);
    tcase_add_test(tc, test_jwt_rejections);
    tcase_add_test(tc, test_jwt_valid_header_and_query);
    tcase_add_test(tc, test_jwt_expiry_closes_4401);
    tcase_add_test(tc, test_none_account_ids);
    tcase_add_test(tc, test_origin_403);

    tc = h_tcase(s, "http", 60, setup, teardown);
    tcase_add_test(tc, test_health_ready_metrics);
    tcase_add_test(tc, test_redis_outage);

    tc = h_tcase(s, "shutdown", 40, setup, teardown);
    tcase_add_test(tc, test_sigterm_readyz_503);
    tcase_add_test(tc, test_sigterm_closes_1001_and_exits_0);

    tc = h_tcase(s, "command-line", 30, setup, teardown);
    tcase_add_test(tc, test_bad_flag_exit_2);
    tcase_add_test(tc, test_bad_env_exit_2);
    tcase_add_test(tc, test_jwt_without_key_exit_2);

    return s;
}

int main(void)
{
    return h_run_suite(core_suite());
}
