/* GET /sse, the Server-Sent Events transport (README.md, "Server-Sent
 * Events"), against a real redis-server and the real notify-gateway, read
 * the way a browser's EventSource reads it: the answer's head, every
 * refusal /ws has (as HTTP statuses), the register event, notification
 * ids, resuming with Last-Event-ID or ?since= (the header wins), gaps,
 * keep-alives, the closes (drain, slow consumer, token expiry) as
 * "event: close", and the limits, presence and counters it shares with
 * WebSocket connections. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "harness.h"

#define SECRET "sse-test-secret"
#define RECV_MS 5000

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

/* ---- helpers ------------------------------------------------------------ */

/* GET path, expecting the stream to be refused with want before it starts;
 * the refusal is plain text, never an event stream. */
static void expect_refused(const char *path, const char *headers, int want)
{
    struct sse c;
    int st = sse_connect(&c, G.port, path, headers, RECV_MS);
    ck_assert_msg(st == want, "GET %s answered %d, want %d", path, st, want);
    char ct[128] = "";
    h_http_header(c.head, "Content-Type", ct, sizeof(ct));
    ck_assert_msg(!strstr(ct, "event-stream"), "GET %s: refusal %d as %s", path, st, ct);
    sse_close(&c);
}

/* The next event, asserted to be a notification (default event name) of
 * body, with the given id (NULL: no id: field). */
static void expect_note(struct sse *c, const char *who, const char *body, const char *id)
{
    struct sse_event e;
    int got = sse_recv(c, &e, RECV_MS);
    ck_assert_msg(got == 1, "%s: no event (%d), want %s", who, got, body);
    ck_assert_msg(!strcmp(e.event, "message"), "%s: event '%s', want the default", who, e.event);
    ck_assert_msg(!strchr(e.data, '\n'), "%s: data on several lines", who);
    json_t *j = h_ck_json_obj(e.data);
    const char *b = h_jstr(json_object_get(j, "content"), "body");
    ck_assert_msg(b && !strcmp(b, body), "%s: body %s, want %s", who, b ? b : "(none)", body);
    if (id) {
        ck_assert_msg(e.id && !strcmp(e.id, id), "%s: id %s, want %s", who, e.id ? e.id : "(none)",
                      id);
        const char *jid = h_jstr(j, "id");
        ck_assert_msg(jid && !strcmp(jid, id), "%s: envelope id %s, want %s", who,
                      jid ? jid : "(none)", id);
    } else {
        ck_assert_msg(!e.id, "%s: id %s on a message without history", who, e.id);
    }
    json_decref(j);
    sse_event_free(&e);
}

/* Asserts that no event arrives within ms. */
static void expect_no_event(struct sse *c, const char *who, int ms)
{
    struct sse_event e;
    int got = sse_recv(c, &e, ms);
    if (got == 1) {
        char copy[256];
        snprintf(copy, sizeof(copy), "%s %s", e.event, e.data);
        sse_event_free(&e);
        ck_abort_msg("%s: unexpected event %s", who, copy);
    }
    ck_assert_msg(got == 0, "%s: the stream ended", who);
}

/* Reads events (notifications are skipped) until "event: close"; asserts
 * its code and that the response ends right after it. */
static void expect_close(struct sse *c, const char *who, int code, int timeout_ms)
{
    long long deadline = h_mono_ms() + timeout_ms;
    struct sse_event e;
    for (;;) {
        int left = (int)(deadline - h_mono_ms());
        int got = sse_recv(c, &e, left > 0 ? left : 1);
        ck_assert_msg(got == 1, "%s: the stream %s before event: close", who,
                      got == 0 ? "stayed silent" : "ended");
        if (!strcmp(e.event, "close"))
            break;
        ck_assert_msg(!strcmp(e.event, "message"), "%s: event %s before close", who, e.event);
        sse_event_free(&e);
    }
    json_t *j = h_ck_json_obj(e.data);
    json_t *jc = json_object_get(j, "code");
    ck_assert_msg(json_is_integer(jc) && json_integer_value(jc) == code,
                  "%s: close event %s, want code %d", who, e.data, code);
    ck_assert_msg(h_jstr(j, "reason") && *h_jstr(j, "reason"), "%s: close event without reason",
                  who);
    json_decref(j);
    sse_event_free(&e);
    ck_assert_msg(sse_recv(c, &e, 3000) == -1 && c->eof, "%s: the response did not end", who);
}

static void wait_subscribed(const char *account)
{
    long long n = h_redis_wait_numsub(&R, h_chan(account), 1, 5000);
    ck_assert_msg(n == 1, "NUMSUB of %s is %lld, want 1", account, n);
}

/* ---- the stream --------------------------------------------------------- */

START_TEST(test_head_and_register)
{
    GW("--auth", "none", "--heartbeat-timeout", "20");
    struct sse c;
    char *id = h_ck_sse_open(&c, G.port, "/sse?user_id=alice", NULL, RECV_MS);
    ck_assert_msg(id && strlen(id) > 8, "register body (connection id) '%s'", id ? id : "");
    char v[128];
    ck_assert(h_http_header(c.head, "Content-Type", v, sizeof(v)));
    ck_assert_msg(!strncmp(v, "text/event-stream", 17), "Content-Type %s", v);
    ck_assert(h_http_header(c.head, "Cache-Control", v, sizeof(v)));
    ck_assert_msg(strstr(v, "no-cache") != NULL, "Cache-Control %s", v);
    ck_assert_msg(!h_http_header(c.head, "Content-Length", v, sizeof(v)),
                  "a stream with Content-Length %s", v);
    ck_assert_msg(!strncmp(c.head, "HTTP/1.1 200", 12), "status line %.20s", c.head);
    ck_assert_msg(c.retry > 0, "no retry: field before the first event");
    /* a browser's cookies and a plain page: no CORS header without Origin */
    ck_assert(!h_http_header(c.head, "Access-Control-Allow-Origin", v, sizeof(v)));
    sse_close(&c);

    /* The register envelope is /ws's: account, node, heartbeat figures. */
    struct sse d;
    int st =
        sse_connect(&d, G.port, "/sse?user_id=alice", "Origin: https://app.example\r\n", RECV_MS);
    ck_assert_int_eq(st, 200);
    ck_assert(h_http_header(d.head, "Access-Control-Allow-Origin", v, sizeof(v)));
    ck_assert_str_eq(v, "https://app.example");
    struct sse_event e;
    ck_assert_int_eq(sse_recv(&d, &e, RECV_MS), 1);
    ck_assert_str_eq(e.event, "register");
    json_t *j = h_ck_envelope(e.data, "register");
    const char *meta = h_jstr(json_object_get(j, "content"), "meta_data");
    json_t *m = h_ck_json_obj(meta);
    ck_assert_str_eq(h_jstr(m, "account"), "alice");
    ck_assert_msg(h_jstr(m, "node") && !strncmp(h_jstr(m, "node"), "it-", 3), "node in %s", meta);
    ck_assert_int_eq(json_integer_value(json_object_get(m, "heartbeat_timeout")), 20);
    ck_assert_int_eq(json_integer_value(json_object_get(m, "heartbeat_interval")), 10);
    ck_assert_str_eq(h_jstr(m, "connection_id"), h_jstr(json_object_get(j, "content"), "body"));
    json_decref(m);
    json_decref(j);
    sse_event_free(&e);
    sse_close(&d);
    free(id);
}
END_TEST

START_TEST(test_delivery_and_broadcast)
{
    GW("--auth", "none");
    struct sse c;
    struct ws w;
    free(h_ck_sse_open(&c, G.port, "/sse?user_id=bob", NULL, RECV_MS));
    h_ck_open_as(&w, G.port, "bob");
    wait_subscribed("bob");
    /* a plain PUBLISH: no id: field; both transports get it once */
    h_ck_publish(&R, "bob", "plain-1");
    expect_note(&c, "sse", "plain-1", NULL);
    struct h_msg m;
    ck_assert(h_msg_recv(&w, &m, RECV_MS));
    ck_assert_str_eq(h_msg_body(&m), "plain-1");
    h_msg_free(&m);
    /* a producer's pretty-printed JSON stays one data: line */
    const char *pretty = "{\n  \"type\": \"t\",\r\n  \"content\": {\"body\": \"multi\\nline\","
                         " \"meta_data\": \"\"}\n}";
    h_ck_publish_raw(&R, h_chan("bob"), pretty, strlen(pretty));
    expect_note(&c, "sse pretty", "multi\nline", NULL);
    /* broadcast reaches the stream too */
    ck_assert(h_redis_wait_numsub(&R, "notify:broadcast", 1, 5000) == 1);
    char *b = h_envelope("t", "to-all");
    ck_assert_int_eq(h_redis_publish(&R, "notify:broadcast", b, strlen(b)), 1);
    free(b);
    expect_note(&c, "sse broadcast", "to-all", NULL);
    expect_no_event(&c, "sse", 300);
    /* three messages, each to both connections */
    ck_assert_int_eq((long long)h_ck_metric(G.port, "notify_messages_delivered_total"), 6);
    sse_close(&c);
    ws_close(&w, 1000);
}
END_TEST

START_TEST(test_keepalive_and_no_heartbeat_timeout)
{
    /* A WebSocket silent this long would be closed with 4408; a stream's
     * client never speaks, and keep-alive comments hold it open. */
    GW("--auth", "none", "--heartbeat-timeout", "2", "--heartbeat-check", "1");
    struct sse c;
    free(h_ck_sse_open(&c, G.port, "/sse?user_id=quiet", NULL, RECV_MS));
    expect_no_event(&c, "quiet", 4500);
    ck_assert_msg(c.comments >= 2, "%d keep-alive comments in 4.5 s with a 1 s interval",
                  c.comments);
    wait_subscribed("quiet");
    h_ck_publish(&R, "quiet", "still-here");
    expect_note(&c, "quiet", "still-here", NULL);
    ck_assert_int_eq((long long)h_ck_metric(G.port, "notify_connections"), 1);
    sse_close(&c);
}
END_TEST

/* ---- refusals: /ws's, as HTTP statuses ---------------------------------- */

START_TEST(test_refusals_auth_none)
{
    GW("--auth", "none", "--allowed-origins", "https://ok.example", "--max-connections-per-account",
       "1");
    const char *ok = "Origin: https://ok.example\r\n";
    expect_refused("/sse", ok, 400);
    expect_refused("/sse?user_id=", ok, 400);
    expect_refused("/sse?user_id=bad%20id", ok, 400);
    expect_refused("/sse?user_id=a&user_id=b", ok, 400);
    expect_refused("/sse?user_id=u1&since=nonsense", ok, 400);
    expect_refused("/sse?user_id=u1", "Origin: https://ok.example\r\nLast-Event-ID: x-y\r\n", 400);
    expect_refused("/sse?user_id=u1", NULL, 403);
    expect_refused("/sse?user_id=u1", "Origin: https://evil.example\r\n", 403);
    struct sse c;
    free(h_ck_sse_open(&c, G.port, "/sse?user_id=u1", ok, RECV_MS));
    /* the account's limit counts streams and WebSockets alike */
    expect_refused("/sse?user_id=u1", ok, 429);
    struct ws w;
    ck_assert_int_eq(ws_connect(&w, G.port, "/ws?user_id=u1", ok, RECV_MS), 429);
    ws_close(&w, 1000);
    ck_assert_int_eq((long long)h_ck_metric(G.port, "notify_connections_rejected_total"), 10);
    sse_close(&c);
}
END_TEST

START_TEST(test_refusals_jwt)
{
    GW("--auth", "jwt", "--jwt-secret", SECRET);
    long long now = h_unix_s();
    char *good = h_jwt_hs256(SECRET, "carol", now + 600);
    char *expired = h_jwt_hs256(SECRET, "carol", now - 60);
    char *wrong = h_jwt_hs256("another-secret", "carol", now + 600);
    char *none = h_jwt_hs256(NULL, "carol", now + 600);
    char path[2048], hdr[2048];
    expect_refused("/sse", NULL, 401);
    const char *bad[] = {expired, wrong, none, "garbage"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "/sse?token=%s", bad[i]);
        expect_refused(path, NULL, 401);
    }
    /* ?token= (what a page's EventSource can send) and Authorization */
    struct sse c, d;
    snprintf(path, sizeof(path), "/sse?token=%s", good);
    free(h_ck_sse_open(&c, G.port, path, NULL, RECV_MS));
    snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n", good);
    free(h_ck_sse_open(&d, G.port, "/sse", hdr, RECV_MS));
    sse_close(&c);
    sse_close(&d);
    free(good);
    free(expired);
    free(wrong);
    free(none);
}
END_TEST

START_TEST(test_max_connections_counts_both)
{
    GW("--auth", "none", "--max-connections", "2");
    struct sse a;
    struct ws w;
    free(h_ck_sse_open(&a, G.port, "/sse?user_id=m1", NULL, RECV_MS));
    h_ck_open_as(&w, G.port, "m2");
    expect_refused("/sse?user_id=m3", NULL, 503);
    struct ws x;
    ck_assert_int_eq(ws_connect(&x, G.port, "/ws?user_id=m3", NULL, RECV_MS), 503);
    ws_close(&x, 1000);
    ck_assert_int_eq((long long)h_ck_metric(G.port, "notify_connections"), 2);
    /* the stream's place is free again once it is gone */
    sse_close(&a);
    long long deadline = h_mono_ms() + 3000;
    while (h_ck_metric(G.port, "notify_connections") != 1 && h_mono_ms() < deadline)
        h_sleep_ms(20);
    free(h_ck_sse_open(&a, G.port, "/sse?user_id=m3", NULL, RECV_MS));
    sse_close(&a);
    ws_close(&w, 1000);
}
END_TEST

START_TEST(test_presence_while_connected)
{
    GW("--auth", "none", "--presence-ttl", "5");
    struct sse c;
    char *id = h_ck_sse_open(&c, G.port, "/sse?user_id=pres", NULL, RECV_MS);
    long long deadline = h_mono_ms() + 3000;
    while (h_presence_live(&R, "pres") != 1 && h_mono_ms() < deadline)
        h_sleep_ms(20);
    ck_assert_int_eq(h_redis_int(&R, "EXISTS %s", "notify:presence:{pres}"), 1);
    ck_assert_int_eq(h_presence_live(&R, "pres"), 1);
    redisReply *r = h_redis_cmd(&R, "ZRANGE %s 0 -1", "notify:presence:{pres}");
    ck_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1);
    ck_assert_msg(strstr(r->element[0]->str, id) != NULL, "presence member %s, connection %s",
                  r->element[0]->str, id);
    freeReplyObject(r);
    ck_assert_int_eq((long long)h_ck_metric(G.port, "notify_transport_connections"), 1);
    sse_close(&c);
    deadline = h_mono_ms() + 3000;
    while (h_redis_int(&R, "EXISTS %s", "notify:presence:{pres}") != 0 && h_mono_ms() < deadline)
        h_sleep_ms(20);
    ck_assert_int_eq(h_redis_int(&R, "EXISTS %s", "notify:presence:{pres}"), 0);
    free(id);
}
END_TEST

/* ---- ids, resume, gaps -------------------------------------------------- */

START_TEST(test_ids_and_resume)
{
    GW("--auth", "none");
    char *ids[4];
    char body[8];
    for (int i = 0; i < 3; i++) {
        snprintf(body, sizeof(body), "h%d", i);
        ids[i] = h_ck_publish_history(&R, "dave", body);
    }
    /* ?since= replays what came after, each with its id: */
    struct sse c;
    char path[256], hdr[256];
    snprintf(path, sizeof(path), "/sse?user_id=dave&since=%s", ids[0]);
    free(h_ck_sse_open(&c, G.port, path, NULL, RECV_MS));
    expect_note(&c, "since h0", "h1", ids[1]);
    expect_note(&c, "since h0", "h2", ids[2]);
    expect_no_event(&c, "since h0", 300);
    /* then live ones, with ids, once */
    ids[3] = h_ck_publish_history(&R, "dave", "h3");
    expect_note(&c, "since h0 live", "h3", ids[3]);
    expect_no_event(&c, "since h0 live", 300);
    ck_assert_str_eq(c.last_id, ids[3]);
    sse_close(&c);

    /* Last-Event-ID (a browser's reconnect) resumes the same way */
    snprintf(hdr, sizeof(hdr), "Last-Event-ID: %s\r\n", ids[1]);
    free(h_ck_sse_open(&c, G.port, "/sse?user_id=dave", hdr, RECV_MS));
    expect_note(&c, "Last-Event-ID h1", "h2", ids[2]);
    expect_note(&c, "Last-Event-ID h1", "h3", ids[3]);
    expect_no_event(&c, "Last-Event-ID h1", 300);
    sse_close(&c);

    /* and wins over ?since= (the page's URL keeps its first since) */
    snprintf(hdr, sizeof(hdr), "Last-Event-ID: %s\r\n", ids[2]);
    snprintf(path, sizeof(path), "/sse?user_id=dave&since=%s", ids[0]);
    free(h_ck_sse_open(&c, G.port, path, hdr, RECV_MS));
    expect_note(&c, "header wins", "h3", ids[3]);
    expect_no_event(&c, "header wins", 300);
    sse_close(&c);

    /* an empty Last-Event-ID (EventSource before any id) is no position */
    snprintf(path, sizeof(path), "/sse?user_id=dave&since=%s", ids[2]);
    free(h_ck_sse_open(&c, G.port, path, "Last-Event-ID: \r\n", RECV_MS));
    expect_note(&c, "empty header", "h3", ids[3]);
    expect_no_event(&c, "empty header", 300);
    sse_close(&c);
    for (int i = 0; i < 4; i++)
        free(ids[i]);
}
END_TEST

START_TEST(test_gap)
{
    GW("--auth", "none", "--history-max-len", "3");
    char *ids[6];
    char body[8];
    for (int i = 0; i < 6; i++) {
        snprintf(body, sizeof(body), "g%d", i);
        ids[i] = h_ck_publish_history(&R, "erin", body);
    }
    struct sse c;
    char hdr[256];
    snprintf(hdr, sizeof(hdr), "Last-Event-ID: %s\r\n", ids[0]);
    free(h_ck_sse_open(&c, G.port, "/sse?user_id=erin", hdr, RECV_MS));
    struct sse_event e;
    ck_assert_int_eq(sse_recv(&c, &e, RECV_MS), 1);
    ck_assert_msg(!strcmp(e.event, "gap"), "event %s, want gap", e.event);
    ck_assert_msg(!e.id, "a gap with an id");
    json_t *j = h_ck_envelope(e.data, "gap");
    ck_assert_str_eq(h_jstr(json_object_get(j, "content"), "body"), ids[3]);
    json_decref(j);
    sse_event_free(&e);
    expect_note(&c, "after gap", "g3", ids[3]);
    expect_note(&c, "after gap", "g4", ids[4]);
    expect_note(&c, "after gap", "g5", ids[5]);
    expect_no_event(&c, "after gap", 300);
    sse_close(&c);
    for (int i = 0; i < 6; i++)
        free(ids[i]);
}
END_TEST

/* ---- closes ------------------------------------------------------------- */

START_TEST(test_drain_close_event)
{
    GW("--auth", "none", "--drain-seconds", "1");
    struct sse c;
    struct ws w;
    free(h_ck_sse_open(&c, G.port, "/sse?user_id=frank", NULL, RECV_MS));
    h_ck_open_as(&w, G.port, "frank2");
    G.must_survive = 0;
    ck_assert_int_eq(h_gw_signal(&G, SIGTERM), 0);
    expect_close(&c, "draining", 1001, 5000);
    ck_assert_int_eq(ws_wait_close(&w, 5000), 1001);
    ws_close(&w, 1000);
    sse_close(&c);
    ck_assert_int_eq(h_gw_wait(&G, 8000), 0);
}
END_TEST

START_TEST(test_drain_refuses_new_streams)
{
    GW("--auth", "none", "--drain-seconds", "3");
    struct sse c;
    free(h_ck_sse_open(&c, G.port, "/sse?user_id=gina", NULL, RECV_MS));
    G.must_survive = 0;
    ck_assert_int_eq(h_gw_signal(&G, SIGTERM), 0);
    ck_assert(h_http_wait_status(G.port, "/readyz", 503, 2000));
    struct sse late;
    int st = sse_connect(&late, G.port, "/sse?user_id=late", NULL, 2000);
    ck_assert_msg(st != 200, "a stream opened while draining");
    sse_close(&late);
    expect_close(&c, "draining", 1001, 6000);
    sse_close(&c);
}
END_TEST

START_TEST(test_slow_consumer_closed)
{
    GW("--auth", "none", "--max-queue-messages", "32", "--max-queue-bytes", "524288",
       "--heartbeat-timeout", "300", "--heartbeat-check", "60");
    struct sse slow, fast;
    free(h_ck_sse_open(&slow, G.port, "/sse?user_id=slow", NULL, RECV_MS));
    free(h_ck_sse_open(&fast, G.port, "/sse?user_id=fast", NULL, RECV_MS));
    wait_subscribed("slow");
    wait_subscribed("fast");
    size_t big = 64 * 1024;
    char *fill = malloc(big + 1);
    memset(fill, 'x', big);
    fill[big] = '\0';
    char *payload = h_envelope("bulk", fill);
    free(fill);
    /* slow reads nothing until its queue is over the bounds (up to 400 x
     * 64 KiB, far more than its socket holds); then it reads at once, so
     * that the close event is not left behind a full socket beyond the
     * close's linger */
    int overflowed = 0;
    for (int i = 0; i < 400 && !overflowed; i++) {
        ck_assert(h_redis_publish(&R, h_chan("slow"), payload, strlen(payload)) == 1);
        if (i % 8 == 7)
            overflowed = h_ck_metric(G.port, "notify_messages_dropped_total") > 0;
    }
    free(payload);
    ck_assert_msg(overflowed, "the stream's queue never went over its bounds");
    expect_close(&slow, "slow", 1013, 30000);
    /* the other stream was not held up */
    h_ck_publish(&R, "fast", "not-held-up");
    expect_note(&fast, "fast", "not-held-up", NULL);
    long long deadline = h_mono_ms() + 3000;
    const char *metric = "notify_transport_connections_closed_total";
    char *text = NULL;
    int seen = 0;
    while (!seen && h_mono_ms() < deadline) {
        free(text);
        text = NULL;
        ck_assert_int_eq(h_http_get(G.port, "/metrics", &text), 200);
        char want[160];
        snprintf(want, sizeof(want), "%s{transport=\"sse\",reason=\"slow_consumer\"} 1\n", metric);
        seen = strstr(text, want) != NULL;
        if (!seen)
            h_sleep_ms(50);
    }
    ck_assert_msg(seen, "no sse slow_consumer close in /metrics");
    ck_assert_msg(strstr(text, "notify_connections_closed_total{reason=\"slow_consumer\"} 1\n"),
                  "the close not counted with every connection's");
    free(text);
    sse_close(&slow);
    sse_close(&fast);
}
END_TEST

START_TEST(test_token_expiry_close)
{
    GW("--auth", "jwt", "--jwt-secret", SECRET);
    char *tok = h_jwt_hs256(SECRET, "hank", h_unix_s() + 2);
    char path[1024];
    snprintf(path, sizeof(path), "/sse?token=%s", tok);
    struct sse c;
    long long t0 = h_mono_ms();
    free(h_ck_sse_open(&c, G.port, path, NULL, RECV_MS));
    expect_close(&c, "expiry", 4401, 6000);
    long long took = h_mono_ms() - t0;
    ck_assert_msg(took >= 900 && took < 4500, "closed %lld ms after a token with 2 s left", took);
    sse_close(&c);
    long long deadline = h_mono_ms() + 3000;
    while (h_ck_metric(G.port, "notify_connections") != 0 && h_mono_ms() < deadline)
        h_sleep_ms(20);
    ck_assert_int_eq((long long)h_ck_metric(G.port, "notify_connections"), 0);
    ck_assert_int_eq((long long)h_ck_metric(G.port, "notify_transport_connections_closed_total"),
                     1);
    free(tok);
}
END_TEST

/* The client going away is the stream's end: it leaves the registry. */
START_TEST(test_client_gone)
{
    GW("--auth", "none");
    struct sse c;
    free(h_ck_sse_open(&c, G.port, "/sse?user_id=ivy", NULL, RECV_MS));
    wait_subscribed("ivy");
    /* what the client sends is read and dropped */
    ck_assert_int_eq(h_send_all(c.fd, "garbage\r\n\r\n", 11, 1000), 0);
    h_ck_publish(&R, "ivy", "still");
    expect_note(&c, "ivy", "still", NULL);
    sse_close(&c);
    long long n = h_redis_wait_numsub(&R, h_chan("ivy"), 0, 5000);
    ck_assert_msg(n == 0, "NUMSUB of ivy %lld after the stream closed", n);
    ck_assert_int_eq((long long)h_ck_metric(G.port, "notify_connections"), 0);
}
END_TEST

/* ---- suite -------------------------------------------------------------- */

static Suite *sse_suite(void)
{
    Suite *s = suite_create("sse");
    TCase *tc = h_tcase(s, "stream", 30, setup, teardown);
    tcase_add_test(tc, test_head_and_register);
    tcase_add_test(tc, test_delivery_and_broadcast);
    tcase_add_test(tc, test_keepalive_and_no_heartbeat_timeout);
    tcase_add_test(tc, test_client_gone);
    tc = h_tcase(s, "refusals", 30, setup, teardown);
    tcase_add_test(tc, test_refusals_auth_none);
    tcase_add_test(tc, test_refusals_jwt);
    tcase_add_test(tc, test_max_connections_counts_both);
    tcase_add_test(tc, test_presence_while_connected);
    tc = h_tcase(s, "history", 30, setup, teardown);
    tcase_add_test(tc, test_ids_and_resume);
    tcase_add_test(tc, test_gap);
    tc = h_tcase(s, "closes", 60, setup, teardown);
    tcase_add_test(tc, test_drain_close_event);
    tcase_add_test(tc, test_drain_refuses_new_streams);
    tcase_add_test(tc, test_slow_consumer_closed);
    tcase_add_test(tc, test_token_expiry_close);
    return s;
}

int main(void)
{
    return h_run_suite(sse_suite());
}
