/* Reliability and security (issue 4), each point provoked for real against
 * a real redis-server and the real notify-gateway: Redis killed, stopped,
 * password-protected; slow consumers; hostile frames, handshakes and bytes;
 * handshake limits; token expiry and refresh; and the time from Redis back
 * to delivery working with 10,000 accounts connected (printed to stderr).
 *
 * After each hostile step the daemon must still answer /healthz and serve a
 * normal client. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static struct h_redis R;
static struct h_gw G;
static const char *jwt_secret; /* set when G runs --auth jwt */

static const char SECRET[] = "reliability-secret";

static void setup(void)
{
    jwt_secret = NULL;
    h_ck_setup(&R, &G);
}

static void teardown(void)
{
    h_ck_teardown(&R, &G);
}

#define GW(...) H_GW(&G, &R, __VA_ARGS__)

#define GW_JWT(...)                                                                                \
    do {                                                                                           \
        GW("--auth", "jwt", "--jwt-secret", SECRET, __VA_ARGS__);                                  \
        jwt_secret = SECRET;                                                                       \
    } while (0)

/* ---- helpers ------------------------------------------------------------ */

/* Type of the next text message (malloc'd), NULL on timeout or close. */
static char *next_type(struct ws *c, int timeout_ms, char **body)
{
    char *t = ws_recv_text(c, timeout_ms);
    if (!t)
        return NULL;
    json_t *j = h_ck_json_obj(t);
    const char *ty = h_jstr(j, "type");
    char *out = strdup(ty ? ty : "");
    if (body) {
        json_t *content = json_object_get(j, "content");
        const char *b = content ? h_jstr(content, "body") : NULL;
        *body = strdup(b ? b : "");
    }
    json_decref(j);
    free(t);
    return out;
}

/* Waits for a message of type want (skipping others); 1 if it came. */
static int wait_type(struct ws *c, const char *want, int timeout_ms, char **body)
{
    long long deadline = h_mono_ms() + timeout_ms;
    for (;;) {
        long long left = deadline - h_mono_ms();
        if (left <= 0)
            return 0;
        char *b = NULL;
        char *t = next_type(c, (int)left, &b);
        if (!t)
            return 0;
        int match = !strcmp(t, want);
        free(t);
        if (match) {
            if (body)
                *body = b;
            else
                free(b);
            return 1;
        }
        free(b);
    }
}

/* Waits for a notification whose body is exactly want. */
static int wait_body(struct ws *c, const char *want, int timeout_ms)
{
    long long deadline = h_mono_ms() + timeout_ms;
    for (;;) {
        long long left = deadline - h_mono_ms();
        if (left <= 0)
            return 0;
        char *b = NULL;
        char *t = next_type(c, (int)left, &b);
        if (!t)
            return 0;
        int match = !strcmp(b, want);
        free(t);
        free(b);
        if (match)
            return 1;
    }
}

/* The /ws path for account (a fresh token under --auth jwt). */
static void ws_path(const char *account, char *out, size_t size)
{
    if (jwt_secret) {
        char *tok = h_jwt_hs256(jwt_secret, account, h_unix_s() + 3600);
        snprintf(out, size, "/ws?token=%s", tok);
        free(tok);
    } else {
        snprintf(out, size, "/ws?user_id=%s", account);
    }
}

/* Connects account and waits for the register reply (asserting both). */
static void connect_ok(struct ws *c, const char *account)
{
    char path[1024];
    ws_path(account, path, sizeof(path));
    int st = ws_connect(c, G.port, path, NULL, 5000);
    ck_assert_msg(st == 101, "connect %s: status %d", account, st);
    ck_assert_msg(wait_type(c, "register", 5000, NULL), "no register reply for %s", account);
}

/* Sends a heartbeat and expects its reply within timeout_ms. */
static int heartbeat_ok(struct ws *c, int timeout_ms)
{
    if (ws_send_text(c, "{\"type\":\"heartbeat\"}") != 0)
        return 0;
    return wait_type(c, "heartbeat", timeout_ms, NULL);
}

/* The node is up and serves a normal client. */
static void assert_node_ok(const char *after)
{
    ck_assert_msg(h_proc_running(&G.proc), "gateway died after %s", after);
    ck_assert_msg(h_http_get(G.port, "/healthz", NULL) == 200, "/healthz not 200 after %s", after);
    static int n;
    char acct[64];
    snprintf(acct, sizeof(acct), "probe-%d-%d", (int)getpid(), n++);
    struct ws c;
    char path[1024];
    ws_path(acct, path, sizeof(path));
    int st = ws_connect(&c, G.port, path, NULL, 5000);
    ck_assert_msg(st == 101, "a normal client got %d after %s", st, after);
    ck_assert_msg(wait_type(&c, "register", 5000, NULL), "no register reply after %s", after);
    ck_assert_msg(heartbeat_ok(&c, 3000), "no heartbeat reply after %s", after);
    ws_close(&c, 1000);
}

static char *gw_log(void)
{
    return h_gw_stderr(&G);
}

/* ---- Redis faults ------------------------------------------------------- */

START_TEST(test_redis_killed_and_back)
{
    GW("--auth", "none");
    ck_assert(h_http_wait_status(G.port, "/readyz", 200, 10000));
    struct ws a, b;
    connect_ok(&a, "ka");
    connect_ok(&b, "kb");

    for (int outage = 1; outage <= 2; outage++) {
        h_proc_kill(&R.proc); /* SIGKILL */
        long long t0 = h_mono_ms();
        ck_assert_msg(h_http_wait_status(G.port, "/readyz", 503, 5000),
                      "/readyz not 503 after redis was killed");
        fprintf(stderr, "[reliability] outage %d: /readyz 503 after %lld ms\n", outage,
                h_mono_ms() - t0);
        /* connections stay open and are served */
        ck_assert_msg(heartbeat_ok(&a, 3000), "connection a not served during the outage");
        ck_assert_msg(heartbeat_ok(&b, 3000), "connection b not served during the outage");
        ck_assert_int_eq(h_http_get(G.port, "/healthz", NULL), 200);
        /* ~3.5 s of outage: several reconnect attempts, one log line */
        h_sleep_ms(3500);
        ck_assert_int_eq(h_http_get(G.port, "/readyz", NULL), 503);
        char *log = gw_log();
        int downs = h_count(log, "msg=redis_down");
        int retries = h_count(log, "msg=redis_retry_failed");
        fprintf(stderr, "[reliability] outage %d: redis_down lines=%d retry_failed lines=%d\n",
                outage, downs, retries);
        ck_assert_msg(downs == outage, "%d redis_down lines after %d outage(s) (want one each)",
                      downs, outage);
        free(log);
        ck_assert_msg(heartbeat_ok(&a, 3000), "connection a lost during the outage");

        ck_assert_msg(h_redis_restart(&R) == 0, "cannot restart redis on port %d", R.port);
        long long back = h_mono_ms();
        ck_assert_msg(h_http_wait_status(G.port, "/readyz", 200, 10000),
                      "/readyz not 200 within 10 s of redis being back");
        fprintf(stderr, "[reliability] outage %d: /readyz 200 %lld ms after redis was back\n",
                outage, h_mono_ms() - back);
        ck_assert_msg(h_mono_ms() - back < 8000, "readyz took %lld ms", h_mono_ms() - back);

        char body[32];
        snprintf(body, sizeof(body), "after-%d", outage);
        ck_assert_int_eq(h_publish(&R, "ka", "note", body), 1);
        ck_assert_int_eq(h_publish(&R, "kb", "note", body), 1);
        ck_assert_msg(wait_body(&a, body, 3000), "old connection a got nothing after recovery");
        ck_assert_msg(wait_body(&b, body, 3000), "old connection b got nothing after recovery");
    }
    char *log = gw_log();
    ck_assert_int_eq(h_count(log, "msg=redis_down"), 2);
    free(log);
    ws_close(&a, 1000);
    ws_close(&b, 1000);
    assert_node_ok("two redis outages");
}
END_TEST

START_TEST(test_redis_stopped)
{
    GW("--auth", "none");
    ck_assert(h_http_wait_status(G.port, "/readyz", 200, 10000));
    struct ws a;
    connect_ok(&a, "sa");

    ck_assert_int_eq(h_proc_signal(&R.proc, SIGSTOP), 0);
    long long t0 = h_mono_ms();
    long long ready503 = -1, worst_hb = 0, worst_health = 0;
    while (h_mono_ms() - t0 < 9000) {
        long long s = h_mono_ms();
        ck_assert_msg(heartbeat_ok(&a, 2000), "heartbeat not answered %lld ms into SIGSTOP",
                      s - t0);
        long long hb = h_mono_ms() - s;
        s = h_mono_ms();
        ck_assert_msg(h_http_get(G.port, "/healthz", NULL) == 200,
                      "/healthz not 200 %lld ms into SIGSTOP", s - t0);
        long long he = h_mono_ms() - s;
        worst_hb = hb > worst_hb ? hb : worst_hb;
        worst_health = he > worst_health ? he : worst_health;
        if (ready503 < 0 && h_http_get(G.port, "/readyz", NULL) == 503)
            ready503 = h_mono_ms() - t0;
        h_sleep_ms(200);
    }
    fprintf(stderr,
            "[reliability] SIGSTOP: /readyz 503 after %lld ms; worst heartbeat reply %lld ms, "
            "worst /healthz %lld ms\n",
            ready503, worst_hb, worst_health);
    ck_assert_msg(ready503 >= 0 && ready503 <= 8000, "/readyz 503 after %lld ms (want <= ~7 s)",
                  ready503);
    ck_assert_msg(worst_hb < 1000, "a heartbeat reply took %lld ms", worst_hb);
    /* a new client is served while redis is wedged */
    assert_node_ok("redis SIGSTOP");

    ck_assert_int_eq(h_proc_signal(&R.proc, SIGCONT), 0);
    long long back = h_mono_ms();
    ck_assert_msg(h_http_wait_status(G.port, "/readyz", 200, 15000),
                  "/readyz not 200 within 15 s of SIGCONT");
    fprintf(stderr, "[reliability] SIGCONT: /readyz 200 after %lld ms\n", h_mono_ms() - back);
    ck_assert_int_eq(h_publish(&R, "sa", "note", "after-cont"), 1);
    ck_assert_msg(wait_body(&a, "after-cont", 3000), "no delivery after SIGCONT");
    ws_close(&a, 1000);
    assert_node_ok("redis SIGCONT");
}
END_TEST

/* Connections Redis has accepted since it started, this query's own
 * included (h_redis_cmd connects for each command). */
static long long redis_connections(void)
{
    redisReply *r = h_redis_cmd(&R, "INFO stats");
    ck_assert(r && r->type == REDIS_REPLY_STRING);
    const char *f = strstr(r->str, "total_connections_received:");
    ck_assert(f);
    long long n = atoll(f + strlen("total_connections_received:"));
    freeReplyObject(r);
    return n;
}

/* A gateway whose loop was late (a host short of CPU, here SIGSTOP) must not
 * drop a Redis that answered meanwhile: its health PING's answer waits in
 * the socket, and reconnecting would resend every subscription and presence
 * entry. Redis is stopped first so that a PING is outstanding, then the
 * gateway, then Redis answers, and the gateway sleeps past the PING's
 * timeout (5 s) before it runs again. */
START_TEST(test_late_loop_keeps_redis)
{
    GW("--auth", "none");
    ck_assert(h_http_wait_status(G.port, "/readyz", 200, 10000));
    struct ws a;
    connect_ok(&a, "late");
    long long before = redis_connections();

    ck_assert_int_eq(h_proc_signal(&R.proc, SIGSTOP), 0);
    h_sleep_ms(1500); /* the health check has sent a PING that waits */
    ck_assert_int_eq(h_gw_signal(&G, SIGSTOP), 0);
    ck_assert_int_eq(h_proc_signal(&R.proc, SIGCONT), 0);
    h_sleep_ms(6000); /* Redis has answered; the PING is 7.5 s old */
    ck_assert_int_eq(h_gw_signal(&G, SIGCONT), 0);
    h_sleep_ms(2500);

    char *log = gw_log();
    int downs = h_count(log, "msg=redis_down");
    free(log);
    long long after = redis_connections() - 1; /* less the query's own */
    ck_assert_msg(downs == 0 && after == before,
                  "the gateway dropped Redis after its own late loop: %d redis_down, "
                  "%lld new connections",
                  downs, after - before);
    ck_assert_int_eq(h_publish(&R, "late", "note", "after-late"), 1);
    ck_assert_msg(wait_body(&a, "after-late", 3000), "no delivery after the late loop");
    ws_close(&a, 1000);
    assert_node_ok("a late loop");
}
END_TEST

/* Redis stops answering while a node drains: the health check fails it just
 * when the node waits for its last presence removal, whose callback (run
 * with no reply as the connection closes) stops the node. It must exit
 * cleanly, and its log name Redis (the line was once read from the freed
 * node: under ASan, a use after free). Redis is stopped 5.2 s before the
 * SIGTERM, so the PING fails 6 to 7 s after the stop, inside the 2 s the
 * drained node waits for its removal. */
START_TEST(test_redis_lost_while_stopping)
{
    GW("--auth", "none", "--drain-delay", "0", "--drain-seconds", "1");
    ck_assert(h_http_wait_status(G.port, "/readyz", 200, 10000));
    struct ws a;
    connect_ok(&a, "drainlost");
    ck_assert_int_eq(h_proc_signal(&R.proc, SIGSTOP), 0);
    h_sleep_ms(5200);
    G.must_survive = 0;
    ck_assert_int_eq(h_gw_signal(&G, SIGTERM), 0);
    int st = h_gw_wait(&G, 15000);
    ck_assert_int_eq(h_proc_signal(&R.proc, SIGCONT), 0);
    char *log = gw_log();
    int named = h_count(log, "msg=redis_down host=127.0.0.1 ");
    int grace = h_count(log, "msg=stop_grace_expired");
    free(log);
    fprintf(stderr, "[reliability] stop with Redis stopped: status %d, redis_down %d, grace %d\n",
            st, named, grace);
    ck_assert_msg(st == 0, "the stopping node exited with status %d", st);
    ck_assert_msg(named == 1, "redis_down with Redis named logged %d times", named);
    ws_close(&a, 1000);
}
END_TEST

static void gw_with_redis_url(const char *url)
{
    GW("--auth", "none", "--redis", url);
}

START_TEST(test_redis_password)
{
    redisReply *r = h_redis_cmd(&R, "CONFIG SET requirepass %s", "pw-0123");
    ck_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    char url[128];
    snprintf(url, sizeof(url), "redis://:pw-0123@127.0.0.1:%d/0", R.port);
    gw_with_redis_url(url);
    ck_assert_msg(h_http_wait_status(G.port, "/readyz", 200, 10000),
                  "/readyz not 200 with a password");
    struct ws a;
    connect_ok(&a, "pa");
    char *e = h_envelope("note", "with-password");
    r = h_redis_cmd_auth(R.port, NULL, "pw-0123", "PUBLISH %s %s", h_chan("pa"), e);
    free(e);
    ck_assert(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);
    ck_assert(wait_body(&a, "with-password", 3000));
    ws_close(&a, 1000);
}
END_TEST

START_TEST(test_redis_wrong_password)
{
    redisReply *r = h_redis_cmd(&R, "CONFIG SET requirepass %s", "right-pw");
    ck_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    char url[128];
    snprintf(url, sizeof(url), "redis://:wrong-pw@127.0.0.1:%d/0", R.port);
    gw_with_redis_url(url);
    h_sleep_ms(3000);
    ck_assert_msg(h_proc_running(&G.proc), "gateway exited with a wrong password");
    ck_assert_int_eq(h_http_get(G.port, "/readyz", NULL), 503);
    ck_assert_int_eq(h_http_get(G.port, "/healthz", NULL), 200);
    char *log = gw_log();
    const char *line = strstr(log, "AUTH");
    ck_assert_msg(line, "no log line mentioning AUTH:\n%s", log);
    const char *sol = line;
    while (sol > log && sol[-1] != '\n')
        sol--;
    fprintf(stderr, "[reliability] wrong password logs: %.*s\n", (int)strcspn(sol, "\n"), sol);
    int downs = h_count(log, "msg=redis_down");
    fprintf(stderr, "[reliability] wrong password: %d redis_down lines in 3 s\n", downs);
    free(log);
    /* clients are still served (register is sent at once while redis is down) */
    assert_node_ok("a wrong redis password");
    /* the password the gateway has becomes right: it gets in on a retry */
    r = h_redis_cmd_auth(R.port, NULL, "right-pw", "CONFIG SET requirepass %s", "wrong-pw");
    ck_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    ck_assert_msg(h_http_wait_status(G.port, "/readyz", 200, 10000),
                  "/readyz not 200 once the password matched");
}
END_TEST

START_TEST(test_redis_acl_user)
{
    redisReply *r = h_redis_cmd(&R, "ACL SETUSER gwuser on >gw-pass ~* &* +@all");
    ck_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = h_redis_cmd(&R, "ACL SETUSER default off");
    ck_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    char url[128];
    snprintf(url, sizeof(url), "redis://gwuser:gw-pass@127.0.0.1:%d/0", R.port);
    gw_with_redis_url(url);
    ck_assert_msg(h_http_wait_status(G.port, "/readyz", 200, 10000),
                  "/readyz not 200 with an ACL user");
    struct ws a;
    connect_ok(&a, "aclu");
    char *e = h_envelope("note", "with-acl");
    r = h_redis_cmd_auth(R.port, "gwuser", "gw-pass", "PUBLISH %s %s", h_chan("aclu"), e);
    free(e);
    ck_assert(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);
    ck_assert(wait_body(&a, "with-acl", 3000));
    r = h_redis_cmd_auth(R.port, "gwuser", "gw-pass", "CLIENT LIST");
    ck_assert(r && r->type == REDIS_REPLY_STRING);
    ck_assert_msg(strstr(r->str, "user=gwuser"), "no gwuser client:\n%s", r->str);
    freeReplyObject(r);
    ws_close(&a, 1000);
}
END_TEST

/* ---- slow consumer ------------------------------------------------------ */

START_TEST(test_slow_consumer_1013)
{
    GW("--auth", "none", "--max-queue-messages", "32", "--max-queue-bytes", "524288",
       "--heartbeat-timeout", "300", "--heartbeat-check", "60");
    ck_assert(h_http_wait_status(G.port, "/readyz", 200, 10000));
    struct ws fast;
    connect_ok(&fast, "fast");

    size_t big = 128 * 1024;
    char *fill = malloc(big + 1);
    memset(fill, 'x', big);
    fill[big] = '\0';
    char *payload = h_envelope("bulk", fill);
    size_t plen = strlen(payload);
    free(fill);

    long rss[4];
    long long worst_probe = 0;
    for (int round = 0; round < 4; round++) {
        char acct[32];
        snprintf(acct, sizeof(acct), "slow%d", round);
        struct ws slow;
        connect_ok(&slow, acct);
        /* slow stops reading: 300 x 128 KiB = 38 MiB, more than any TCP
         * buffer; fast gets a probe every 25 messages */
        for (int i = 0; i < 300; i++) {
            long long n = h_redis_publish(&R, h_chan(acct), payload, plen);
            ck_assert_msg(n >= 0, "publish failed");
            if (i % 25 == 24) {
                char body[32];
                snprintf(body, sizeof(body), "probe-%d-%d", round, i);
                long long s = h_mono_ms();
                ck_assert_int_eq(h_publish(&R, "fast", "probe", body), 1);
                ck_assert_msg(wait_body(&fast, body, 5000), "fast client missed %s", body);
                long long d = h_mono_ms() - s;
                worst_probe = d > worst_probe ? d : worst_probe;
            }
        }
        long long s = h_mono_ms();
        int code = ws_wait_close(&slow, 60000);
        fprintf(stderr, "[reliability] slow consumer round %d: close %d (drained in %lld ms)\n",
                round, code, h_mono_ms() - s);
        ck_assert_msg(code == 1013, "slow consumer closed with %d, want 1013", code);
        ws_close(&slow, 1000);
        rss[round] = h_proc_rss_kb(G.proc.pid);
        ck_assert(rss[round] > 0);
    }
    free(payload);
    fprintf(stderr,
            "[reliability] slow consumer: gateway VmRSS after rounds %ld %ld %ld %ld kB; worst "
            "probe latency for the other client %lld ms\n",
            rss[0], rss[1], rss[2], rss[3], worst_probe);
    ck_assert_msg(worst_probe < 1000, "the other client waited %lld ms", worst_probe);
    /* memory stays flat: later rounds do not add to the first (not
     * measurable under ASan, whose quarantine keeps freed memory) */
    if (h_proc_has_asan(G.proc.pid))
        fprintf(stderr, "[reliability] gateway runs with ASan: VmRSS not checked\n");
    else
        ck_assert_msg(rss[3] < rss[0] + 16 * 1024, "VmRSS grew from %ld to %ld kB", rss[0], rss[3]);
    char *log = gw_log();
    ck_assert_int_ge(h_count(log, "msg=slow_consumer_closed"), 4);
    free(log);
    /* Each of the four closes counts once in /metrics (the socket goes
     * once the client answered the close: wait for that, then make sure
     * nothing counts it a second time). */
    const char *closed = "notify_connections_closed_total{reason=\"slow_consumer\"}";
    for (int i = 0; i < 50 && h_ck_metric(G.port, closed) < 4; i++)
        h_sleep_ms(100);
    h_sleep_ms(300);
    ck_assert_double_eq(h_ck_metric(G.port, closed), 4);
    ck_assert_msg(heartbeat_ok(&fast, 3000), "fast client not served");
    ws_close(&fast, 1000);
    assert_node_ok("slow consumers");
}
END_TEST

/* ---- hostile frames ----------------------------------------------------- */

START_TEST(test_oversized_frame_1009)
{
    GW("--auth", "none");
    struct ws c;
    connect_ok(&c, "big");
    size_t n = 5000;
    char *text = malloc(n + 1);
    memset(text, ' ', n);
    memcpy(text, "{\"type\":\"heartbeat\"", 19);
    text[n - 1] = '}';
    text[n] = '\0';
    ck_assert_int_eq(ws_send_text(&c, text), 0);
    free(text);
    ck_assert_int_eq(ws_wait_close(&c, 5000), 1009);
    ws_close(&c, 1000);
    /* the same, split over frames: the total counts */
    connect_ok(&c, "big2");
    char chunk[1500];
    memset(chunk, ' ', sizeof(chunk));
    memcpy(chunk, "{\"type\":", 8);
    ws_send_frame(&c, 0, WS_TEXT, chunk, sizeof(chunk));
    for (int i = 0; i < 4; i++)
        ws_send_frame(&c, 0, 0, chunk + 8, sizeof(chunk) - 8);
    ws_send_frame(&c, 1, 0, "\"heartbeat\"}", 12);
    ck_assert_int_eq(ws_wait_close(&c, 5000), 1009);
    ws_close(&c, 1000);
    assert_node_ok("oversized frames");
}
END_TEST

START_TEST(test_fragmented_message)
{
    GW("--auth", "none");
    struct ws c;
    connect_ok(&c, "frag");
    ck_assert_int_eq(ws_send_frame(&c, 0, WS_TEXT, "{\"ty", 4), 0);
    h_sleep_ms(50);
    ck_assert_int_eq(ws_send_frame(&c, 0, 0, "pe\":\"hea", 8), 0);
    /* a ping between fragments is allowed */
    ck_assert_int_eq(ws_send_frame(&c, 1, WS_PING, "p", 1), 0);
    h_sleep_ms(50);
    ck_assert_int_eq(ws_send_frame(&c, 1, 0, "rtbeat\"}", 8), 0);
    ck_assert_msg(wait_type(&c, "heartbeat", 3000, NULL), "no reply to a fragmented heartbeat");
    /* a larger message in many small fragments (under the 4096 limit) */
    char msg[3000];
    int n = snprintf(msg, sizeof(msg), "{\"type\":\"heartbeat\",\"pad\":\"");
    memset(msg + n, 'p', 2900 - (size_t)n);
    n = 2900;
    n += snprintf(msg + n, sizeof(msg) - (size_t)n, "\"}");
    for (int off = 0; off < n; off += 100) {
        int len = n - off < 100 ? n - off : 100;
        ck_assert_int_eq(
            ws_send_frame(&c, off + len == n, off == 0 ? WS_TEXT : 0, msg + off, (size_t)len), 0);
    }
    ck_assert_msg(wait_type(&c, "heartbeat", 3000, NULL), "no reply to a 29-fragment heartbeat");
    ck_assert(heartbeat_ok(&c, 3000));
    ws_close(&c, 1000);
    assert_node_ok("fragmented frames");
}
END_TEST

START_TEST(test_invalid_utf8_1007)
{
    GW("--auth", "none");
    struct ws c;
    connect_ok(&c, "utf");
    static const char bad[] = "{\"type\":\"heartbeat\",\"x\":\"\xff\xfe\xc3\x28\"}";
    ck_assert_int_eq(ws_send(&c, WS_TEXT, bad, sizeof(bad) - 1), 0);
    int code = ws_wait_close(&c, 5000);
    ck_assert_msg(code == 1007, "invalid UTF-8 closed with %d, want 1007", code);
    ws_close(&c, 1000);
    assert_node_ok("invalid UTF-8");
}
END_TEST

START_TEST(test_binary_frame_error)
{
    GW("--auth", "none");
    struct ws c;
    connect_ok(&c, "bin");
    ck_assert_int_eq(ws_send(&c, WS_BINARY, "{\"type\":\"heartbeat\"}", 20), 0);
    char *body = NULL;
    ck_assert_msg(wait_type(&c, "error", 3000, &body), "no error reply to a binary frame");
    fprintf(stderr, "[reliability] binary frame -> error \"%s\"\n", body);
    free(body);
    ck_assert_msg(heartbeat_ok(&c, 3000), "connection not kept after a binary frame");
    ws_close(&c, 1000);
    assert_node_ok("a binary frame");
}
END_TEST

START_TEST(test_client_flood_1008)
{
    GW("--auth", "none");
    struct ws c;
    connect_ok(&c, "flood");
    /* 60 frames at once (bursts of 40 allowed): few enough that the server
     * has read them all when it closes, so its close frame is not lost to
     * the TCP reset that unread input would cause */
    int sent = 0;
    for (; sent < 60; sent++)
        if (ws_send_text(&c, "{\"type\":\"heartbeat\"}") != 0)
            break;
    int code = ws_wait_close(&c, 5000);
    ck_assert_msg(code == 1008, "a flood of %d messages closed with %d, want 1008", sent, code);
    ws_close(&c, 1000);
    /* the same with error replies (not JSON) */
    connect_ok(&c, "flood2");
    for (int i = 0; i < 60; i++)
        if (ws_send_text(&c, "not json") != 0)
            break;
    code = ws_wait_close(&c, 5000);
    ck_assert_msg(code == 1008, "a flood of bad messages closed with %d, want 1008", code);
    ws_close(&c, 1000);
    assert_node_ok("a client flood");
}
END_TEST

/* ---- hostile handshakes and bytes --------------------------------------- */

START_TEST(test_slowloris_handshake)
{
    GW("--auth", "none");
    enum { N = 50 };
    int fds[N];
    static const char half[] = "GET /ws?user_id=loris HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               "Upgrade: websocket\r\n";
    long long t0 = h_mono_ms();
    for (int i = 0; i < N; i++) {
        fds[i] = h_tcp_connect(G.port, 3000);
        ck_assert_msg(fds[i] >= 0, "cannot connect slowloris %d", i);
        ck_assert_int_eq(h_send_all(fds[i], half, sizeof(half) - 1, 3000), 0);
    }
    /* others still connect promptly meanwhile */
    long long s = h_mono_ms();
    assert_node_ok("slowloris handshakes (pending)");
    ck_assert_msg(h_mono_ms() - s < 2000, "a normal client took %lld ms", h_mono_ms() - s);
    long long worst = 0;
    for (int i = 0; i < N; i++) {
        long long budget = t0 + 20000 - h_mono_ms();
        int closed = h_read_until_closed(fds[i], budget > 0 ? (int)budget : 0, NULL, 0, NULL);
        long long at = h_mono_ms() - t0;
        ck_assert_msg(closed, "slowloris %d still open after %lld ms", i, at);
        worst = at > worst ? at : worst;
        close(fds[i]);
    }
    fprintf(stderr, "[reliability] slowloris: all %d half handshakes closed by %lld ms\n", N,
            worst);
    ck_assert_msg(worst <= 15500, "slowloris closed after %lld ms (want <= ~15 s)", worst);
    assert_node_ok("slowloris handshakes");
}
END_TEST

START_TEST(test_oversized_headers)
{
    GW("--auth", "none");
    size_t big = 20 * 1024;
    char *req = malloc(big + 512);
    int n = sprintf(req, "GET /ws?user_id=hdr HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\nX-Big: ");
    memset(req + n, 'a', big);
    n += (int)big;
    n += sprintf(req + n, "\r\n\r\n");
    for (int round = 0; round < 3; round++) {
        int fd = h_tcp_connect(G.port, 3000);
        ck_assert(fd >= 0);
        h_send_all(fd, req, (size_t)n, 3000); /* may fail: the server may close early */
        char head[256];
        size_t got = 0;
        int closed = h_read_until_closed(fd, 15000, head, sizeof(head) - 1, &got);
        head[got] = '\0';
        close(fd);
        ck_assert_msg(closed, "a 20 KB header left the connection open");
        ck_assert_msg(strncmp(head, "HTTP/1.1 431", 12) == 0, "a 20 KB header got '%.*s', want 431",
                      (int)strcspn(head, "\r\n"), head);
        if (round == 0)
            fprintf(stderr, "[reliability] 20 KB header -> %.*s\n",
                    got ? (int)strcspn(head, "\r\n") : 9, got ? head : "(dropped)");
    }
    /* many headers rather than one long one */
    n = sprintf(req, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (int i = 0; i < 1000; i++)
        n += sprintf(req + n, "X-H%d: v\r\n", i);
    n += sprintf(req + n, "\r\n");
    int fd = h_tcp_connect(G.port, 3000);
    ck_assert(fd >= 0);
    h_send_all(fd, req, (size_t)n, 3000);
    h_read_until_closed(fd, 15000, NULL, 0, NULL);
    close(fd);
    free(req);
    assert_node_ok("oversized headers");
}
END_TEST

START_TEST(test_garbage_bytes)
{
    GW("--auth", "none");
    struct ws live;
    connect_ok(&live, "bystander");
    enum { N = 60 };
    int fds[N];
    unsigned char buf[8192];
    srand(12345);
    for (int i = 0; i < N; i++) {
        fds[i] = h_tcp_connect(G.port, 3000);
        ck_assert(fds[i] >= 0);
        size_t len = 1 + (size_t)(rand() % (int)sizeof(buf));
        for (size_t k = 0; k < len; k++)
            buf[k] = (unsigned char)rand();
        if (i % 3 == 1) /* something that looks like a request line first */
            memcpy(buf, "GET /ws HTTP/1.1\r\n", len < 18 ? len : 18);
        if (i % 3 == 2 && len > 4)
            memcpy(buf + len - 4, "\r\n\r\n", 4);
        h_send_all(fds[i], buf, len, 2000); /* may fail: closed early */
    }
    /* every garbage connection is closed by the server (at the latest by
     * the handshake timeout); the bystander is served all along */
    long long t0 = h_mono_ms(), last_hb = t0;
    int open = N;
    while (open > 0 && h_mono_ms() - t0 < 20000) {
        for (int i = 0; i < N; i++)
            if (fds[i] >= 0 && h_read_until_closed(fds[i], 0, NULL, 0, NULL)) {
                close(fds[i]);
                fds[i] = -1;
                open--;
            }
        if (h_mono_ms() - last_hb >= 2000) {
            ck_assert_msg(heartbeat_ok(&live, 2000), "the bystander was not served");
            last_hb = h_mono_ms();
        }
        h_sleep_ms(50);
    }
    fprintf(stderr, "[reliability] garbage: %d connections, %d still open after %lld ms\n", N, open,
            h_mono_ms() - t0);
    ck_assert_msg(open == 0, "%d garbage connections still open", open);
    /* garbage after a valid upgrade: a bad frame header */
    struct ws c;
    connect_ok(&c, "garbage-ws");
    memset(buf, 0xff, 64);
    h_send_all(c.fd, buf, 64, 2000);
    int code = ws_wait_close(&c, 5000);
    fprintf(stderr, "[reliability] garbage after the upgrade -> close %d\n", code);
    ws_close(&c, 1000);
    ck_assert_msg(heartbeat_ok(&live, 3000), "the bystander was disturbed");
    ws_close(&live, 1000);
    assert_node_ok("garbage bytes");
}
END_TEST

/* ---- handshake limits --------------------------------------------------- */

START_TEST(test_max_connections_503)
{
    GW("--auth", "none", "--max-connections", "3");
    struct ws c[3], extra;
    connect_ok(&c[0], "m0");
    connect_ok(&c[1], "m1");
    connect_ok(&c[2], "m2");
    int st = ws_connect(&extra, G.port, "/ws?user_id=m3", NULL, 5000);
    ck_assert_int_eq(st, 503);
    ws_close(&extra, 1000);
    ck_assert_int_eq(h_http_get(G.port, "/healthz", NULL), 200);
    ws_close(&c[0], 1000);
    long long deadline = h_mono_ms() + 5000;
    do {
        st = ws_connect(&extra, G.port, "/ws?user_id=m3", NULL, 5000);
        if (st != 101) {
            ws_close(&extra, 1000);
            h_sleep_ms(50);
        }
    } while (st != 101 && h_mono_ms() < deadline);
    ck_assert_msg(st == 101, "no room after a close (%d)", st);
    ws_close(&extra, 1000);
    ws_close(&c[1], 1000);
    ws_close(&c[2], 1000);
}
END_TEST

/* A process out of descriptors (each of the processes sharing a port has
 * its own limit) refuses the clients it cannot accept at once, instead of
 * leaving them in its backlog until their own timeout: they try again,
 * elsewhere on a shared port. It serves again once descriptors are free. */
START_TEST(test_out_of_descriptors_refused)
{
    struct rlimit rl, low;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    low = rl;
    low.rlim_cur = 64; /* the gateway inherits it; this process keeps its own */
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    GW("--auth", "none");
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    ck_assert(h_http_wait_status(G.port, "/readyz", 200, 10000));
    enum { MAX = 80 };
    static struct ws c[MAX];
    int ok = 0, refused = 0;
    long long slowest = 0;
    for (int i = 0; i < MAX; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/ws?user_id=fd%d", i);
        long long t0 = h_mono_ms();
        int st = ws_connect(&c[ok], G.port, path, NULL, 3000);
        long long took = h_mono_ms() - t0;
        if (st == 101) {
            ok++;
            continue;
        }
        refused++;
        if (took > slowest)
            slowest = took;
    }
    fprintf(stderr,
            "[reliability] 64 descriptors: %d upgraded, %d refused, slowest refusal %lld ms\n", ok,
            refused, slowest);
    ck_assert_msg(ok > 10 && refused > 0, "%d upgraded and %d refused of %d", ok, refused, MAX);
    ck_assert_msg(slowest < 1500, "a client the gateway could not accept waited %lld ms", slowest);
    char *log = gw_log();
    int logged = h_count(log, "msg=accept_refused");
    free(log);
    ck_assert_msg(logged >= 1, "no accept_refused logged");
    for (int i = 0; i < ok; i++)
        ck_assert_msg(heartbeat_ok(&c[i], 3000), "upgraded client %d not served", i);
    for (int i = 0; i < 5; i++)
        ws_close(&c[--ok], 1000);
    struct ws again;
    long long deadline = h_mono_ms() + 5000;
    int st;
    do {
        st = ws_connect(&again, G.port, "/ws?user_id=fd-again", NULL, 3000);
        if (st != 101)
            h_sleep_ms(50);
    } while (st != 101 && h_mono_ms() < deadline);
    ck_assert_msg(st == 101, "no upgrade once descriptors were free (%d)", st);
    ws_close(&again, 1000);
    while (ok)
        ws_close(&c[--ok], 1000);
    assert_node_ok("running out of descriptors");
}
END_TEST

START_TEST(test_per_account_429)
{
    GW("--auth", "none", "--max-connections-per-account", "2");
    struct ws a1, a2, a3, b;
    connect_ok(&a1, "pa");
    connect_ok(&a2, "pa");
    int st = ws_connect(&a3, G.port, "/ws?user_id=pa", NULL, 5000);
    ck_assert_int_eq(st, 429);
    ws_close(&a3, 1000);
    connect_ok(&b, "pb");
    ws_close(&a1, 1000);
    ws_close(&a2, 1000);
    ws_close(&b, 1000);
    assert_node_ok("per-account limit");
}
END_TEST

START_TEST(test_invalid_token_flood)
{
    GW_JWT("--log-level", "info");
    enum { CHILDREN = 4, EACH = 500 };
    char *forged = h_jwt_hs256("not-the-secret", "victim", h_unix_s() + 3600);
    char *none = h_jwt_hs256(NULL, "victim", h_unix_s() + 3600);
    pid_t kids[CHILDREN];
    for (int k = 0; k < CHILDREN; k++) {
        kids[k] = fork();
        ck_assert(kids[k] >= 0);
        if (kids[k] == 0) {
            int refused = 0;
            for (int i = 0; i < EACH; i++) {
                char path[1024];
                const char *tok = i % 3 == 0 ? forged : i % 3 == 1 ? none : "garbage.tok.en";
                snprintf(path, sizeof(path), "/ws?token=%s", tok);
                struct ws c;
                int st = ws_connect(&c, G.port, path, NULL, 5000);
                if (st == 401)
                    refused++;
                ws_close(&c, 1000);
            }
            _exit(refused == EACH ? 0 : 1);
        }
    }
    /* meanwhile a valid client connects again and again */
    int samples = 0;
    long long worst = 0, sum = 0;
    for (;;) {
        int running = 0;
        for (int k = 0; k < CHILDREN; k++)
            if (kids[k] > 0 && waitpid(kids[k], NULL, WNOHANG) == 0)
                running++;
        if (!running && samples >= 5)
            break;
        char path[1024], acct[32];
        snprintf(acct, sizeof(acct), "valid%d", samples);
        ws_path(acct, path, sizeof(path));
        struct ws c;
        long long s = h_mono_ms();
        ck_assert_int_eq(ws_connect(&c, G.port, path, NULL, 5000), 101);
        ck_assert(wait_type(&c, "register", 5000, NULL));
        long long d = h_mono_ms() - s;
        ws_close(&c, 1000);
        worst = d > worst ? d : worst;
        sum += d;
        samples++;
        h_sleep_ms(5);
    }
    char *metrics = NULL;
    ck_assert_int_eq(h_http_get(G.port, "/metrics", &metrics), 200);
    double rejected = h_metric_sum(metrics, "notify_connections_rejected_total");
    free(metrics);
    fprintf(stderr,
            "[reliability] %d invalid-token handshakes: valid client connect+register mean %lld "
            "ms, worst %lld ms over %d samples; rejected_total=%.0f\n",
            CHILDREN * EACH, sum / samples, worst, samples, rejected);
    ck_assert_msg(rejected >= CHILDREN * EACH, "rejected_total %.0f", rejected);
    ck_assert_msg(worst < 1000, "a valid client waited %lld ms during the flood", worst);
    free(forged);
    free(none);
    assert_node_ok("an invalid-token flood");
}
END_TEST

/* ---- tokens ------------------------------------------------------------- */

/* Connects with a token for sub that expires at exp (Unix seconds) and
 * reads the register reply. */
static void open_with_token(struct ws *c, const char *sub, long long exp)
{
    char *tok = h_jwt_hs256(SECRET, sub, exp);
    char path[1024];
    snprintf(path, sizeof(path), "/ws?token=%s", tok);
    free(tok);
    ck_assert_int_eq(ws_connect(c, G.port, path, NULL, 5000), 101);
    ck_assert(wait_type(c, "register", 5000, NULL));
}

START_TEST(test_token_expiry_4401)
{
    GW_JWT("--heartbeat-timeout", "60");
    long long exp = h_unix_s() + 2;
    struct ws c;
    open_with_token(&c, "exp1", exp);
    int code = ws_wait_close(&c, 15000);
    long long at = h_wall_ms();
    fprintf(stderr, "[reliability] token exp %lld: closed %d at exp%+lld ms\n", exp, code,
            at - exp * 1000);
    ck_assert_msg(code == 4401, "closed with %d, want 4401", code);
    ck_assert_msg(at >= exp * 1000 - 200 && at <= exp * 1000 + 1500,
                  "closed %lld ms from exp (want about exp)", at - exp * 1000);
    ws_close(&c, 1000);
    assert_node_ok("token expiry");
}
END_TEST

START_TEST(test_token_refresh)
{
    /* checked every 2 s, so an unrefreshed token would end it by exp + 2 */
    GW_JWT("--heartbeat-timeout", "60", "--heartbeat-check", "2");
    long long exp = h_unix_s() + 2;
    struct ws c;
    open_with_token(&c, "ref1", exp);
    long long exp2 = h_unix_s() + 60;
    char *tok2 = h_jwt_hs256(SECRET, "ref1", exp2);
    char msg[1024];
    snprintf(msg, sizeof(msg), "{\"type\":\"refresh\",\"content\":{\"body\":\"%s\"}}", tok2);
    free(tok2);
    ck_assert_int_eq(ws_send_text(&c, msg), 0);
    char *t = ws_recv_text(&c, 3000);
    ck_assert_msg(t, "no reply to refresh");
    json_t *j = h_ck_json_obj(t);
    ck_assert_msg(h_jstr(j, "type") && !strcmp(h_jstr(j, "type"), "refresh"), "reply: %s", t);
    json_decref(j);
    free(t);
    /* past the old exp: still open and served */
    while (h_wall_ms() < exp * 1000 + 4500) {
        struct ws_msg m;
        int op = ws_recv(&c, &m, 200);
        ck_assert_msg(op != WS_CLOSE && op != WS_ERROR, "closed (%d) despite the refresh",
                      c.close_code);
        ws_msg_free(&m);
    }
    ck_assert_msg(heartbeat_ok(&c, 3000), "not served past the old exp");
    ws_close(&c, 1000);
    assert_node_ok("token refresh");
}
END_TEST

START_TEST(test_refresh_other_account)
{
    GW_JWT("--heartbeat-timeout", "60");
    long long exp = h_unix_s() + 3;
    struct ws c;
    open_with_token(&c, "owner", exp);
    char *other = h_jwt_hs256(SECRET, "intruder", h_unix_s() + 60);
    char msg[1024];
    snprintf(msg, sizeof(msg), "{\"type\":\"refresh\",\"content\":{\"body\":\"%s\"}}", other);
    free(other);
    ck_assert_int_eq(ws_send_text(&c, msg), 0);
    char *body = NULL;
    char *t = next_type(&c, 3000, &body);
    ck_assert_msg(t && !strcmp(t, "error"), "refresh with another account: reply %s",
                  t ? t : "(none)");
    fprintf(stderr, "[reliability] refresh with another account -> error \"%s\"\n", body);
    free(t);
    free(body);
    /* a bad token and an expired one: errors too */
    ck_assert_int_eq(
        ws_send_text(&c, "{\"type\":\"refresh\",\"content\":{\"body\":\"not.a.jwt\"}}"), 0);
    ck_assert(wait_type(&c, "error", 3000, NULL));
    /* the old exp still holds (not the intruder's; the timing of the close
     * itself is test_token_expiry_4401's business) */
    int code = ws_wait_close(&c, 15000);
    long long at = h_wall_ms();
    fprintf(stderr, "[reliability] after a refused refresh: closed %d at exp%+lld ms\n", code,
            at - exp * 1000);
    ck_assert_msg(code == 4401, "closed with %d, want 4401 at the original exp", code);
    ck_assert_msg(at <= exp * 1000 + 12000, "closed %lld ms after the original exp",
                  at - exp * 1000);
    ws_close(&c, 1000);
    assert_node_ok("refresh with another account");
}
END_TEST

/* ---- recovery time at 10,000 accounts ----------------------------------- */

START_TEST(test_recovery_time_10k)
{
    enum { N = 10000 };
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < N + 200) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    ck_assert_msg(rl.rlim_cur >= N + 200, "open-files limit %llu too low",
                  (unsigned long long)rl.rlim_cur);
    GW("--auth", "none", "--log-level", "info", "--heartbeat-timeout", "300", "--heartbeat-check",
       "60");
    ck_assert(h_http_wait_status(G.port, "/readyz", 200, 10000));
    struct ws *c = calloc(N, sizeof(*c));
    ck_assert(c);
    long long s = h_mono_ms();
    for (int i = 0; i < N; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/ws?user_id=r%d", i);
        int st = ws_connect(&c[i], G.port, path, NULL, 10000);
        ck_assert_msg(st == 101, "connection %d: %d", i, st);
    }
    fprintf(stderr, "[reliability] 10k: %d connections in %lld ms\n", N, h_mono_ms() - s);
    for (int i = 0; i < N; i++)
        ck_assert_msg(wait_type(&c[i], "register", 10000, NULL), "no register for %d", i);
    ck_assert(h_http_wait_status(G.port, "/readyz", 200, 10000));
    long rss_before = h_proc_rss_kb(G.proc.pid);

    enum { OUTAGES = 3 };
    long long rec[OUTAGES];
    for (int o = 0; o < OUTAGES; o++) {
        h_proc_kill(&R.proc);
        ck_assert(h_http_wait_status(G.port, "/readyz", 503, 5000));
        h_sleep_ms(500);
        ck_assert_msg(h_redis_restart(&R) == 0, "cannot restart redis");
        long long back = h_mono_ms();
        /* probe the last account until delivery works, and watch /readyz */
        long long t_probe = -1, t_ready = -1;
        int k = 0;
        while ((t_probe < 0 || t_ready < 0) && h_mono_ms() - back < 30000) {
            if (t_ready < 0 && h_http_get(G.port, "/readyz", NULL) == 200)
                t_ready = h_mono_ms() - back;
            if (t_probe < 0) {
                char body[32];
                snprintf(body, sizeof(body), "probe-%d-%d", o, k++);
                if (h_publish(&R, "r9999", "probe", body) == 1 && wait_body(&c[N - 1], body, 20))
                    t_probe = h_mono_ms() - back;
            }
            h_sleep_ms(5);
        }
        ck_assert_msg(t_ready >= 0 && t_probe >= 0, "no recovery in 30 s (ready %lld probe %lld)",
                      t_ready, t_probe);
        /* every account gets a message now */
        long long check_at = h_mono_ms() - back;
        redisContext *rc = redisConnect("127.0.0.1", R.port);
        ck_assert(rc && !rc->err);
        char body[32];
        snprintf(body, sizeof(body), "all-back-%d", o);
        char *e = h_envelope("note", body);
        for (int i = 0; i < N; i++) {
            char ch[64];
            snprintf(ch, sizeof(ch), "notify:acct:{r%d}", i);
            redisAppendCommand(rc, "PUBLISH %s %s", ch, e);
        }
        int receivers = 0;
        for (int i = 0; i < N; i++) {
            redisReply *rep = NULL;
            ck_assert(redisGetReply(rc, (void **)&rep) == REDIS_OK && rep);
            if (rep->type == REDIS_REPLY_INTEGER && rep->integer == 1)
                receivers++;
            freeReplyObject(rep);
        }
        redisFree(rc);
        free(e);
        int got = 0;
        for (int i = 0; i < N; i++)
            got += wait_body(&c[i], body, 5000);
        rec[o] = t_ready > t_probe ? t_ready : t_probe;
        fprintf(stderr,
                "[reliability] 10k accounts, outage %d: redis back -> /readyz 200 in %lld ms, "
                "first probe delivered in %lld ms; at %lld ms %d/%d channels had a subscriber "
                "and %d/%d connections received\n",
                o + 1, t_ready, t_probe, check_at, receivers, N, got, N);
        ck_assert_int_eq(receivers, N);
        ck_assert_int_eq(got, N);
    }
    long long best = rec[0], worst = rec[0];
    for (int o = 1; o < OUTAGES; o++) {
        best = rec[o] < best ? rec[o] : best;
        worst = rec[o] > worst ? rec[o] : worst;
    }
    fprintf(stderr,
            "[reliability] RECOVERY at 10,000 accounts (redis back -> delivery working): "
            "%lld / %lld / %lld ms (target < 2000 ms)\n",
            rec[0], rec[1], rec[2]);
    ck_assert_msg(worst < 3000, "recovery took up to %lld ms (best %lld)", worst, best);
    /* What the resyncs allocated and freed goes back to the kernel within
     * two heap checks (README.md, "Design": heap.c): without that, the
     * free chunks they left inside the heap stayed resident (BENCHMARKS.md,
     * "Memory after a Redis outage"). Not measurable under ASan, whose
     * quarantine keeps freed memory. */
    long rss_after = h_proc_rss_kb(G.proc.pid);
    long long settle = h_mono_ms();
    while (rss_after > rss_before + 2048 && h_mono_ms() - settle < 12000) {
        h_sleep_ms(200);
        rss_after = h_proc_rss_kb(G.proc.pid);
    }
    fprintf(stderr,
            "[reliability] 10k: VmRSS %ld kB before the outages, %ld kB %lld ms after the last\n",
            rss_before, rss_after, h_mono_ms() - settle);
    if (h_proc_has_asan(G.proc.pid))
        fprintf(stderr, "[reliability] gateway runs with ASan: VmRSS not checked\n");
    else {
        ck_assert_msg(rss_after <= rss_before + 2048,
                      "VmRSS %ld kB after the outages, %ld kB before", rss_after, rss_before);
        ck_assert_msg(h_ck_metric(G.port, "notify_heap_released_bytes_total") > 1024 * 1024,
                      "the release is not counted in /metrics");
    }
    for (int i = 0; i < N; i++)
        ws_close(&c[i], 1000);
    free(c);
    assert_node_ok("the 10k recovery");
}
END_TEST

/* ---- suite -------------------------------------------------------------- */

static Suite *reliability_suite(void)
{
    Suite *s = suite_create("gateway-reliability");
    TCase *tc = h_tcase(s, "redis", 120, setup, teardown);
    tcase_add_test(tc, test_redis_killed_and_back);
    tcase_add_test(tc, test_redis_stopped);
    tcase_add_test(tc, test_late_loop_keeps_redis);
    tcase_add_test(tc, test_redis_lost_while_stopping);
    tcase_add_test(tc, test_redis_password);
    tcase_add_test(tc, test_redis_wrong_password);
    tcase_add_test(tc, test_redis_acl_user);

    tc = h_tcase(s, "slow", 240, setup, teardown);
    tcase_add_test(tc, test_slow_consumer_1013);

    tc = h_tcase(s, "frames", 60, setup, teardown);
    tcase_add_test(tc, test_oversized_frame_1009);
    tcase_add_test(tc, test_fragmented_message);
    tcase_add_test(tc, test_invalid_utf8_1007);
    tcase_add_test(tc, test_binary_frame_error);
    tcase_add_test(tc, test_client_flood_1008);

    tc = h_tcase(s, "handshakes", 120, setup, teardown);
    tcase_add_test(tc, test_slowloris_handshake);
    tcase_add_test(tc, test_oversized_headers);
    tcase_add_test(tc, test_garbage_bytes);
    tcase_add_test(tc, test_max_connections_503);
    tcase_add_test(tc, test_out_of_descriptors_refused);
    tcase_add_test(tc, test_per_account_429);
    tcase_add_test(tc, test_invalid_token_flood);

    tc = h_tcase(s, "tokens", 60, setup, teardown);
    tcase_add_test(tc, test_token_expiry_4401);
    tcase_add_test(tc, test_token_refresh);
    tcase_add_test(tc, test_refresh_other_account);

    tc = h_tcase(s, "scale", 600, setup, teardown);
    tcase_add_test(tc, test_recovery_time_10k);
    return s;
}

int main(void)
{
    return h_run_suite(reliability_suite());
}
