/* Black-box tests of history and recovery (README.md "Publishing", "Resuming" and "HTTP endpoints")
 * against a real redis-server and the real notify-gateway: notify_publish
 * and its ids, ?since= replays (also racing live publishes), gaps, replays
 * after a Redis restart and after the node's connections are killed, and
 * POST /publish. Each test starts its own redis-server and gateway. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define RECV_MS 10000  /* a message that must come */
#define QUIET_MS 300   /* how long "nothing more" is watched */
#define RACE_ROUNDS 30 /* iterations of the replay race */

static struct h_redis R;
static struct h_gw G;
static redisContext *PUB; /* the test's producer connection */

static void setup(void)
{
    PUB = NULL;
    h_ck_setup(&R, &G);
}

static void teardown(void)
{
    if (PUB)
        redisFree(PUB);
    PUB = NULL;
    h_ck_teardown(&R, &G);
}

#define GW(...) H_GW(&G, &R, __VA_ARGS__)

/* ---- Redis side --------------------------------------------------------- */

static redisContext *rconnect(void)
{
    redisContext *c = redisConnect("127.0.0.1", R.port);
    ck_assert_msg(c && !c->err, "cannot connect to redis :%d", R.port);
    struct timeval tv = {10, 0};
    redisSetTimeout(c, tv);
    return c;
}

static redisContext *pub(void)
{
    if (!PUB)
        PUB = rconnect();
    return PUB;
}

static void stream_key(char *buf, size_t size, const char *account)
{
    snprintf(buf, size, "notify:stream:{%s}", account);
}

/* FCALL notify_publish on c; the raw reply (NULL on I/O error). */
static redisReply *fcall(redisContext *c, const char *account, const char *payload, size_t len)
{
    char key[300];
    stream_key(key, sizeof(key), account);
    return redisCommand(c, "FCALL notify_publish 1 %s %b", key, payload, len);
}

/* notify_publish of an envelope with body; asserts success, returns the id
 * (malloc'd). */
static char *publish(const char *account, const char *body)
{
    char *env = h_envelope("t", body);
    redisReply *r = fcall(pub(), account, env, strlen(env));
    ck_assert_msg(r && r->type == REDIS_REPLY_STRING, "FCALL notify_publish %s: %s", account,
                  r ? (r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply type")
                    : PUB->errstr);
    char *id = strdup(r->str);
    freeReplyObject(r);
    free(env);
    return id;
}

/* As publish, but retries while Redis is not (yet) able to run it (the
 * gateway reloads the library after a restart): only the successful call
 * counts. Reconnects PUB on I/O errors (a command that got no answer was
 * not executed: the server was not there). */
static char *publish_retry(const char *account, const char *body, int timeout_ms)
{
    char *env = h_envelope("t", body);
    long long deadline = h_mono_ms() + timeout_ms;
    for (;;) {
        redisContext *c = PUB;
        if (!c) {
            c = redisConnect("127.0.0.1", R.port);
            if (c && !c->err) {
                struct timeval tv = {10, 0};
                redisSetTimeout(c, tv);
                PUB = c;
            } else {
                redisFree(c);
                c = NULL;
            }
        }
        redisReply *r = c ? fcall(c, account, env, strlen(env)) : NULL;
        if (r && r->type == REDIS_REPLY_STRING) {
            char *id = strdup(r->str);
            freeReplyObject(r);
            free(env);
            return id;
        }
        if (!r && PUB) {
            redisFree(PUB);
            PUB = NULL;
        }
        ck_assert_msg(!r || r->type == REDIS_REPLY_ERROR, "FCALL: unexpected reply type %d",
                      r->type);
        ck_assert_msg(h_mono_ms() < deadline, "FCALL never succeeded: %s",
                      r ? r->str : "connection error");
        freeReplyObject(r);
        h_sleep_ms(5);
    }
}

static long long xlen(const char *account)
{
    char key[300];
    stream_key(key, sizeof(key), account);
    return h_redis_int(&R, "XLEN %s", key);
}

/* The gateway loads the library when it connects to Redis. */
static void wait_library(void)
{
    long long deadline = h_mono_ms() + 10000;
    for (;;) {
        redisReply *r = h_redis_cmd(&R, "FUNCTION LIST LIBRARYNAME notify");
        int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0;
        freeReplyObject(r);
        if (ok)
            return;
        ck_assert_msg(h_mono_ms() < deadline, "the gateway never loaded the notify library");
        h_sleep_ms(50);
    }
}

/* ---- client side -------------------------------------------------------- */

/* The next message must be the notification with this id (first member)
 * and body. */
static void expect_id(struct ws *c, const char *who, const char *id, const char *body)
{
    struct h_msg m;
    ck_assert_msg(h_msg_recv(c, &m, RECV_MS), "%s: no message, want id %s (close %d)", who, id,
                  c->close_code);
    char head[128];
    snprintf(head, sizeof(head), "{\"id\":\"%s\",", id);
    ck_assert_msg(!strncmp(m.text, head, strlen(head)), "%s: got %s, want id %s first", who, m.text,
                  id);
    if (body)
        ck_assert_msg(h_msg_body(&m) && !strcmp(h_msg_body(&m), body), "%s: got %s, want body %s",
                      who, m.text, body);
    h_msg_free(&m);
}

static void expect_gap(struct ws *c, const char *who, const char *oldest)
{
    struct h_msg m;
    ck_assert_msg(h_msg_recv(c, &m, RECV_MS), "%s: no message, want a gap", who);
    ck_assert_msg(h_msg_type(&m) && !strcmp(h_msg_type(&m), "gap"), "%s: got %s, want a gap", who,
                  m.text);
    ck_assert_msg(h_msg_body(&m) && !strcmp(h_msg_body(&m), oldest), "%s: gap %s, want body '%s'",
                  who, m.text, oldest);
    json_t *content = json_object_get(m.j, "content");
    ck_assert_msg(h_jstr(content, "meta_data") && !strcmp(h_jstr(content, "meta_data"), ""),
                  "%s: gap meta_data in %s", who, m.text);
    h_msg_free(&m);
}

/* Receives exactly ids[0..n) in order (gap messages only where
 * allow_gap_first and before the first id; the count goes to *gaps). */
static void expect_ids(struct ws *c, const char *who, char **ids, int n, int allow_gap_first,
                       int *gaps)
{
    for (int i = 0; i < n; i++) {
        struct h_msg m;
        ck_assert_msg(h_msg_recv(c, &m, RECV_MS), "%s: message %d of %d (id %s) never came", who,
                      i + 1, n, ids[i]);
        if (allow_gap_first && i == 0 && h_msg_type(&m) && !strcmp(h_msg_type(&m), "gap")) {
            if (gaps)
                (*gaps)++;
            h_msg_free(&m);
            i--;
            continue;
        }
        const char *got = h_jstr(m.j, "id");
        ck_assert_msg(got && !strcmp(got, ids[i]), "%s: message %d of %d: got %s, want id %s", who,
                      i + 1, n, m.text, ids[i]);
        h_msg_free(&m);
    }
}

static void free_ids(char **ids, int n)
{
    for (int i = 0; i < n; i++)
        free(ids[i]);
}

/* ---- notify_publish ----------------------------------------------------- */

START_TEST(test_live_message_carries_id)
{
    GW("--auth", "none");
    wait_library();
    struct ws c;
    h_ck_open_client(&c, G.port, "u1", NULL, RECV_MS);

    const char *env = "{\"type\":\"payment\",\"content\":{\"body\":\"paid \\u00e9\","
                      "\"meta_data\":\"{\\\"order\\\":7}\"},\"extra\":[1,2]}";
    redisReply *r = fcall(pub(), "u1", env, strlen(env));
    ck_assert_msg(r && r->type == REDIS_REPLY_STRING, "FCALL: %s", r ? r->str : "I/O error");
    char *id = strdup(r->str);
    freeReplyObject(r);

    char *text = ws_recv_text(&c, RECV_MS);
    ck_assert_msg(text != NULL, "no live message");
    char want[1024];
    snprintf(want, sizeof(want), "{\"id\":\"%s\",%s", id, env + 1);
    ck_assert_str_eq(text, want);
    free(text);

    /* The stream holds the payload as given, under that id. */
    char key[300];
    stream_key(key, sizeof(key), "u1");
    r = h_redis_cmd(&R, "XRANGE %s - +", key);
    ck_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1);
    ck_assert_str_eq(r->element[0]->element[0]->str, id);
    freeReplyObject(r);
    /* ... and expires (--history-ttl, default one day). */
    long long ttl = h_redis_int(&R, "TTL %s", key);
    ck_assert_msg(ttl > 86000 && ttl <= 86400, "TTL %lld", ttl);

    /* An empty object gets the id as its only member. */
    r = fcall(pub(), "u1", "{}", 2);
    ck_assert(r && r->type == REDIS_REPLY_STRING);
    snprintf(want, sizeof(want), "{\"id\":\"%s\"}", r->str);
    freeReplyObject(r);
    text = ws_recv_text(&c, RECV_MS);
    ck_assert_msg(text != NULL, "no live message");
    ck_assert_str_eq(text, want);
    free(text);
    free(id);
    ws_close(&c, 1000);
}
END_TEST

START_TEST(test_invalid_payloads_rejected)
{
    GW("--auth", "none");
    wait_library();
    struct ws c;
    h_ck_open_client(&c, G.port, "u2", NULL, RECV_MS);
    static const struct {
        const char *what, *payload;
    } bad[] = {
        {"array", "[{\"type\":\"t\"}]"},
        {"not JSON", "hello"},
        {"truncated JSON", "{\"type\":\"t\","},
        {"string", "\"{}\""},
        {"invalid UTF-8",
         "{\"type\":\"t\",\"content\":{\"body\":\"\xff\xfe\",\"meta_data\":\"\"}}"},
        {"overlong UTF-8",
         "{\"type\":\"t\",\"content\":{\"body\":\"\xc0\xaf\",\"meta_data\":\"\"}}"},
        {"top-level id", "{\"id\":\"1-1\",\"type\":\"t\"}"},
        {"empty", ""},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        redisReply *r = fcall(pub(), "u2", bad[i].payload, strlen(bad[i].payload));
        ck_assert_msg(r && r->type == REDIS_REPLY_ERROR,
                      "%s: FCALL answered type %d (%s), want "
                      "an error",
                      bad[i].what, r ? r->type : -1, r && r->str ? r->str : "");
        freeReplyObject(r);
        ck_assert_msg(xlen("u2") == 0, "%s: stored (XLEN %lld)", bad[i].what, xlen("u2"));
    }
    /* A key that is not <prefix>stream:{<account>} is refused too. */
    redisReply *r = redisCommand(pub(), "FCALL notify_publish 1 %s %s", "notify:stream:u2", "{}");
    ck_assert_msg(r && r->type == REDIS_REPLY_ERROR, "bad key accepted");
    freeReplyObject(r);
    /* Nothing reached the client: the next message is the first valid one,
     * and a nested "id" is fine. */
    const char *ok = "{\"type\":\"t\",\"content\":{\"body\":\"ok\",\"meta_data\":\"\",\"id\":1}}";
    r = fcall(pub(), "u2", ok, strlen(ok));
    ck_assert_msg(r && r->type == REDIS_REPLY_STRING, "valid payload refused: %s", r ? r->str : "");
    char *id = strdup(r->str);
    freeReplyObject(r);
    expect_id(&c, "u2", id, "ok");
    ck_assert_int_eq(xlen("u2"), 1);
    free(id);
    ws_close(&c, 1000);
}
END_TEST

/* ---- since -------------------------------------------------------------- */

START_TEST(test_since_replays_missed_in_order)
{
    GW("--auth", "none");
    wait_library();
    struct ws c;
    h_ck_open_client(&c, G.port, "u3", NULL, RECV_MS);
    char *first = publish("u3", "m0");
    expect_id(&c, "live", first, "m0");
    ws_close(&c, 1000);

    char *ids[8];
    char body[16];
    for (int i = 0; i < 5; i++) {
        snprintf(body, sizeof(body), "m%d", i + 1);
        ids[i] = publish("u3", body);
    }
    /* Another account's history is not replayed. */
    free(publish("u3x", "other"));

    h_ck_open_client(&c, G.port, "u3", first, RECV_MS);
    for (int i = 0; i < 5; i++) {
        snprintf(body, sizeof(body), "m%d", i + 1);
        expect_id(&c, "replay", ids[i], body);
    }
    ids[5] = publish("u3", "m6");
    expect_id(&c, "live after replay", ids[5], "m6");
    h_ck_quiet(&c, "after m6", QUIET_MS, 0);
    ck_assert_msg(h_ck_metric(G.port, "notify_messages_replayed_total") >= 5, "replayed metric");
    ws_close(&c, 1000);

    /* since in the middle: only what follows it. */
    h_ck_open_client(&c, G.port, "u3", ids[2], RECV_MS);
    expect_id(&c, "mid replay", ids[3], "m4");
    expect_id(&c, "mid replay", ids[4], "m5");
    expect_id(&c, "mid replay", ids[5], "m6");
    h_ck_quiet(&c, "mid replay", QUIET_MS, 0);
    ws_close(&c, 1000);
    free_ids(ids, 6);
    free(first);
}
END_TEST

/* A producer FCALLing back to back, or with a short pause (either way a
 * replay's held queue stays far below --max-queue-messages). */
#define RACE_MAX 4000

struct racer {
    const char *account;
    int port;
    int pause_us; /* between two FCALLs */
    atomic_int stop;
    atomic_int n; /* ids[0..n) published */
    char *ids[RACE_MAX];
    char err[256];
};

static void *racer_main(void *arg)
{
    struct racer *rc = arg;
    redisContext *c = redisConnect("127.0.0.1", rc->port);
    if (!c || c->err) {
        snprintf(rc->err, sizeof(rc->err), "connect failed");
        redisFree(c);
        return NULL;
    }
    char key[300];
    stream_key(key, sizeof(key), rc->account);
    while (!atomic_load(&rc->stop) && atomic_load(&rc->n) < RACE_MAX) {
        int i = atomic_load(&rc->n);
        char env[128];
        snprintf(env, sizeof(env),
                 "{\"type\":\"t\",\"content\":{\"body\":\"r%d\",\"meta_data\":\"\"}}", i);
        redisReply *r = redisCommand(c, "FCALL notify_publish 1 %s %s", key, env);
        if (!r || r->type != REDIS_REPLY_STRING) {
            snprintf(rc->err, sizeof(rc->err), "FCALL: %s", r ? r->str : c->errstr);
            freeReplyObject(r);
            break;
        }
        rc->ids[i] = strdup(r->str);
        freeReplyObject(r);
        atomic_store(&rc->n, i + 1);
        if (rc->pause_us)
            usleep((useconds_t)rc->pause_us);
    }
    redisFree(c);
    return NULL;
}

static void wait_count(struct racer *rc, int want)
{
    long long deadline = h_mono_ms() + 10000;
    while (atomic_load(&rc->n) < want && !rc->err[0]) {
        ck_assert_msg(h_mono_ms() < deadline, "the publisher is stuck at %d", atomic_load(&rc->n));
        h_sleep_ms(1);
    }
}

START_TEST(test_since_races_live_publishes)
{
    GW("--auth", "none", "--log-level", "info");
    wait_library();
    int total = 0;
    for (int round = 0; round < RACE_ROUNDS; round++) {
        char account[32], who[64];
        snprintf(account, sizeof(account), "race%d", round);
        char *pre[3];
        for (int i = 0; i < 3; i++)
            pre[i] = publish(account, "pre");
        int from = round % 3; /* since = pre[from] */

        struct racer *rc = calloc(1, sizeof(*rc));
        ck_assert_ptr_nonnull(rc);
        rc->account = account;
        rc->port = R.port;
        rc->pause_us = round % 2 ? 0 : 200;
        pthread_t th;
        ck_assert_int_eq(pthread_create(&th, NULL, racer_main, rc), 0);
        /* Connect while the producer runs: some rounds right away, some
         * after a few messages. */
        wait_count(rc, round % 4);
        struct ws c;
        h_ck_open_client(&c, G.port, account, pre[from], RECV_MS);
        /* Keep publishing through and after the replay. */
        int at_register = atomic_load(&rc->n);
        wait_count(rc, at_register + 10 + round % 7);
        atomic_store(&rc->stop, 1);
        pthread_join(th, NULL);
        ck_assert_msg(!rc->err[0], "round %d: publisher: %s", round, rc->err);
        int n = atomic_load(&rc->n);

        char **want = calloc((size_t)(n + 3), sizeof(*want));
        int nwant = 0;
        for (int i = from + 1; i < 3; i++)
            want[nwant++] = pre[i];
        for (int i = 0; i < n; i++)
            want[nwant++] = rc->ids[i];
        snprintf(who, sizeof(who), "round %d (%d published, since pre[%d])", round, n, from);
        expect_ids(&c, who, want, nwant, 0, NULL);
        h_ck_quiet(&c, who, 150, 0);
        ws_close(&c, 1000);
        total += nwant;
        free(want);
        free_ids(rc->ids, n);
        free_ids(pre, 3);
        free(rc);
    }
    ck_assert_int_gt(total, RACE_ROUNDS * 10);
}
END_TEST

START_TEST(test_gap_when_since_older_than_retained)
{
    GW("--auth", "none", "--history-max-len", "3");
    wait_library();
    char *ids[6];
    char body[8];
    for (int i = 0; i < 6; i++) {
        snprintf(body, sizeof(body), "g%d", i);
        ids[i] = publish("u4", body);
    }
    ck_assert_int_eq(xlen("u4"), 3); /* g3 g4 g5 retained */

    struct ws c;
    h_ck_open_client(&c, G.port, "u4", ids[0], RECV_MS);
    expect_gap(&c, "since g0", ids[3]);
    expect_id(&c, "since g0", ids[3], "g3");
    expect_id(&c, "since g0", ids[4], "g4");
    expect_id(&c, "since g0", ids[5], "g5");
    h_ck_quiet(&c, "since g0", QUIET_MS, 0);
    ws_close(&c, 1000);

    /* since = the newest trimmed id: nothing was lost, no gap. */
    h_ck_open_client(&c, G.port, "u4", ids[2], RECV_MS);
    expect_id(&c, "since g2", ids[3], "g3");
    expect_id(&c, "since g2", ids[4], "g4");
    expect_id(&c, "since g2", ids[5], "g5");
    h_ck_quiet(&c, "since g2", QUIET_MS, 0);
    ws_close(&c, 1000);

    /* since = the newest id: nothing extra, then live messages. */
    h_ck_open_client(&c, G.port, "u4", ids[5], RECV_MS);
    h_ck_quiet(&c, "since newest", QUIET_MS, 0);
    char *live = publish("u4", "g6");
    expect_id(&c, "since newest", live, "g6");
    h_ck_quiet(&c, "since newest", QUIET_MS, 0);
    ws_close(&c, 1000);

    /* An account whose history is gone entirely (expired): a gap with an
     * empty body. */
    h_ck_open_client(&c, G.port, "u4none", ids[0], RECV_MS);
    expect_gap(&c, "no history", "");
    h_ck_quiet(&c, "no history", QUIET_MS, 0);
    ws_close(&c, 1000);
    free(live);
    free_ids(ids, 6);
}
END_TEST

START_TEST(test_malformed_since_is_400)
{
    GW("--auth", "none");
    static const char *const bad[] = {"abc",
                                      "12-x",
                                      "1-2-3",
                                      "-1",
                                      "1-",
                                      "x-1",
                                      "1.5-0",
                                      "99999999999999999999999-0",
                                      "1-99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char path[256];
        snprintf(path, sizeof(path), "/ws?user_id=u5&since=%s", bad[i]);
        struct ws c;
        int st = ws_connect(&c, G.port, path, NULL, 5000);
        ck_assert_msg(st == 400, "since=%s answered %d, want 400", bad[i], st);
        ws_close(&c, 1000);
    }
    /* Well-formed ones are accepted. */
    static const char *const good[] = {"0-0", "1700000000000-5"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct ws c;
        char path[256];
        snprintf(path, sizeof(path), "/ws?user_id=u5&since=%s", good[i]);
        int st = ws_connect(&c, G.port, path, NULL, 5000);
        ck_assert_msg(st == 101, "since=%s answered %d, want 101", good[i], st);
        ws_close(&c, 1000);
    }
}
END_TEST

/* ---- Redis outages ------------------------------------------------------ */

/* Waits until the gateway has re-established its Redis links (the
 * reconnect counter passed before) and is ready again. */
static void wait_reconnected(double before)
{
    long long deadline = h_mono_ms() + 20000;
    while (h_ck_metric(G.port, "notify_redis_reconnects_total") <= before) {
        ck_assert_msg(h_mono_ms() < deadline, "the gateway never reconnected to Redis");
        h_sleep_ms(20);
    }
    ck_assert_msg(h_http_wait_status(G.port, "/readyz", 200, 20000), "/readyz never 200 again");
}

/* Clients of a recovery test: ra1 and ra2 have a last id (they got a
 * message live), rb has none. */
struct outage_clients {
    struct ws ra1, ra2, rb;
    char *first; /* the id ra1 and ra2 got */
};

static void outage_open(struct outage_clients *oc, const char *a, const char *b)
{
    h_ck_open_client(&oc->ra1, G.port, a, NULL, RECV_MS);
    h_ck_open_client(&oc->ra2, G.port, a, NULL, RECV_MS);
    h_ck_open_client(&oc->rb, G.port, b, NULL, RECV_MS);
    oc->first = publish(a, "before");
    expect_id(&oc->ra1, "ra1 before", oc->first, "before");
    expect_id(&oc->ra2, "ra2 before", oc->first, "before");
}

static void outage_close(struct outage_clients *oc)
{
    ws_close(&oc->ra1, 1000);
    ws_close(&oc->ra2, 1000);
    ws_close(&oc->rb, 1000);
    free(oc->first);
}

START_TEST(test_replay_after_redis_restart)
{
    GW("--auth", "none");
    wait_library();
    struct outage_clients oc;
    outage_open(&oc, "rsa", "rsb");
    double reconnects = h_ck_metric(G.port, "notify_redis_reconnects_total");

    /* A new, empty redis-server on the same port. Publish as soon as the
     * library is back (the gateway loads it when it reconnects), which is
     * before or while it resubscribes. */
    if (PUB)
        redisFree(PUB);
    PUB = NULL;
    ck_assert_int_eq(h_redis_restart(&R), 0);
    char *a[6], *b[4];
    int na = 0, nb = 0;
    a[na++] = publish_retry("rsa", "a1", 30000);
    a[na++] = publish_retry("rsa", "a2", 5000);
    b[nb++] = publish_retry("rsb", "b1", 5000);
    a[na++] = publish_retry("rsa", "a3", 5000);
    b[nb++] = publish_retry("rsb", "b2", 5000);
    wait_reconnected(reconnects);
    /* Live again. */
    a[na++] = publish("rsa", "a4");
    b[nb++] = publish("rsb", "b3");

    int gaps = 0;
    expect_ids(&oc.ra1, "ra1 after restart", a, na, 1, &gaps);
    expect_ids(&oc.ra2, "ra2 after restart", a, na, 1, &gaps);
    expect_ids(&oc.rb, "rb after restart", b, nb, 0, NULL);
    h_ck_quiet(&oc.ra1, "ra1 after restart", QUIET_MS, 0);
    h_ck_quiet(&oc.ra2, "ra2 after restart", QUIET_MS, 0);
    h_ck_quiet(&oc.rb, "rb after restart", QUIET_MS, 0);
    if (gaps)
        fprintf(stderr, "note: %d gap message(s) after the restart (empty new stream)\n", gaps);
    free_ids(a, na);
    free_ids(b, nb);
    outage_close(&oc);
}
END_TEST

/* The same, but the test itself restores the library into the new Redis
 * (FUNCTION DUMP / RESTORE of what the gateway loaded), so the publishes
 * land while the gateway is still cut off, before it reconnects at all:
 * they can only reach the clients through the replay. The new stream
 * exists by the time the gateway replays, so no gap either. */
START_TEST(test_replay_after_redis_restart_before_reconnect)
{
    GW("--auth", "none");
    wait_library();
    struct outage_clients oc;
    outage_open(&oc, "rra", "rrb");
    redisReply *dump = h_redis_cmd(&R, "FUNCTION DUMP");
    ck_assert(dump && dump->type == REDIS_REPLY_STRING);
    double reconnects = h_ck_metric(G.port, "notify_redis_reconnects_total");

    if (PUB)
        redisFree(PUB);
    PUB = NULL;
    /* Down long enough for the gateway's reconnect backoff to grow past a
     * second: its next attempt then comes well after the restore and the
     * publishes below (with attempts 50-400 ms apart it sometimes got in
     * first). */
    h_redis_stop(&R);
    h_sleep_ms(1800);
    ck_assert_int_eq(h_redis_restart(&R), 0);
    redisReply *r = redisCommand(pub(), "FUNCTION RESTORE %b REPLACE", dump->str, dump->len);
    ck_assert_msg(r && r->type == REDIS_REPLY_STATUS, "FUNCTION RESTORE: %s",
                  r && r->str ? r->str : "I/O error");
    freeReplyObject(r);
    freeReplyObject(dump);
    char *a[6], *b[4];
    int na = 0, nb = 0;
    a[na++] = publish("rra", "a1");
    b[nb++] = publish("rrb", "b1");
    a[na++] = publish("rra", "a2");
    a[na++] = publish("rra", "a3");
    ck_assert_msg(h_ck_metric(G.port, "notify_redis_reconnects_total") == reconnects,
                  "the gateway reconnected before the publishes: the test proves less");
    wait_reconnected(reconnects);
    a[na++] = publish("rra", "a4");
    b[nb++] = publish("rrb", "b2");

    expect_ids(&oc.ra1, "ra1 after restart", a, na, 0, NULL);
    expect_ids(&oc.ra2, "ra2 after restart", a, na, 0, NULL);
    expect_ids(&oc.rb, "rb after restart", b, nb, 0, NULL);
    h_ck_quiet(&oc.ra1, "ra1 after restart", QUIET_MS, 0);
    h_ck_quiet(&oc.ra2, "ra2 after restart", QUIET_MS, 0);
    h_ck_quiet(&oc.rb, "rb after restart", QUIET_MS, 0);
    free_ids(a, na);
    free_ids(b, nb);
    outage_close(&oc);
}
END_TEST

/* Publishes while the gateway is cut off, over several iterations (the
 * publishes land before or during its reconnect). */
START_TEST(test_replay_after_client_kill)
{
    GW("--auth", "none");
    wait_library();
    struct outage_clients oc;
    outage_open(&oc, "kla", "klb");
    for (int round = 0; round < 5; round++) {
        double reconnects = h_ck_metric(G.port, "notify_redis_reconnects_total");
        redisReply *r = redisCommand(pub(), "CLIENT KILL TYPE pubsub");
        ck_assert_msg(r && r->type == REDIS_REPLY_INTEGER && r->integer >= 1,
                      "CLIENT KILL TYPE pubsub killed nothing");
        freeReplyObject(r);
        r = redisCommand(pub(), "CLIENT KILL TYPE normal SKIPME yes");
        ck_assert_msg(r && r->type == REDIS_REPLY_INTEGER, "CLIENT KILL TYPE normal failed");
        freeReplyObject(r);
        char *a[6], *b[4], body[16];
        int na = 0, nb = 0;
        for (int i = 0; i < 3; i++) {
            snprintf(body, sizeof(body), "a%d.%d", round, i);
            a[na++] = publish("kla", body);
            if (i < 2) {
                snprintf(body, sizeof(body), "b%d.%d", round, i);
                b[nb++] = publish("klb", body);
            }
        }
        wait_reconnected(reconnects);
        a[na++] = publish("kla", "live-a");
        b[nb++] = publish("klb", "live-b");
        char who[64];
        snprintf(who, sizeof(who), "ra1 round %d", round);
        expect_ids(&oc.ra1, who, a, na, 0, NULL);
        snprintf(who, sizeof(who), "ra2 round %d", round);
        expect_ids(&oc.ra2, who, a, na, 0, NULL);
        snprintf(who, sizeof(who), "rb round %d", round);
        expect_ids(&oc.rb, who, b, nb, 0, NULL);
        h_ck_quiet(&oc.ra1, "ra1", QUIET_MS, 0);
        h_ck_quiet(&oc.ra2, "ra2", QUIET_MS, 0);
        h_ck_quiet(&oc.rb, "rb", QUIET_MS, 0);
        free_ids(a, na);
        free_ids(b, nb);
    }
    outage_close(&oc);
}
END_TEST

/* ---- POST /publish ------------------------------------------------------ */

#define API_KEY "s3cret-key"
#define AUTH_HDR "Authorization: Bearer " API_KEY "\r\n"

static int post(const char *headers, const char *body, size_t len, struct h_http_resp *resp)
{
    return h_http(G.port, "POST", "/publish", headers, body, len, resp, 10000);
}

static int post_status(const char *headers, const char *body)
{
    struct h_http_resp resp;
    int st = post(headers, body, strlen(body), &resp);
    h_http_resp_free(&resp);
    return st;
}

START_TEST(test_publish_api_history)
{
    GW("--auth", "none", "--api-key", API_KEY);
    wait_library();
    struct ws c1, c2;
    h_ck_open_client(&c1, G.port, "p1", NULL, RECV_MS);
    h_ck_open_client(&c2, G.port, "p2", NULL, RECV_MS);
    const char *body = "{\"accounts\":[\"p1\",\"p2\"],\"history\":true,"
                       "\"message\":{\"type\":\"payment\",\"content\":{\"body\":\"paid\","
                       "\"meta_data\":\"\"}}}";
    struct h_http_resp resp;
    int st = post(AUTH_HDR, body, strlen(body), &resp);
    ck_assert_msg(st == 200, "status %d: %s", st, resp.body);
    json_t *j = h_ck_json_obj(resp.body);
    json_t *ids = json_object_get(j, "ids");
    ck_assert_msg(json_is_object(ids) && json_object_size(ids) == 2, "body %s", resp.body);
    const char *id1 = h_jstr(ids, "p1"), *id2 = h_jstr(ids, "p2");
    ck_assert_msg(id1 && id2, "body %s", resp.body);
    expect_id(&c1, "p1", id1, "paid");
    expect_id(&c2, "p2", id2, "paid");
    ck_assert_int_eq(xlen("p1"), 1);
    ck_assert_int_eq(xlen("p2"), 1);
    json_decref(j);
    h_http_resp_free(&resp);

    /* history false: plain PUBLISH, receivers per account, no id, not kept. */
    body = "{\"accounts\":[\"p1\",\"nobody\"],\"history\":false,"
           "\"message\":{\"type\":\"typing\",\"content\":{\"body\":\"\",\"meta_data\":\"\"}}}";
    st = post(AUTH_HDR, body, strlen(body), &resp);
    ck_assert_msg(st == 200, "status %d: %s", st, resp.body);
    ck_assert_str_eq(resp.body, "{\"receivers\":{\"p1\":1,\"nobody\":0}}");
    h_http_resp_free(&resp);
    char *text = ws_recv_text(&c1, RECV_MS);
    ck_assert_msg(text != NULL, "p1: no plain message");
    ck_assert_str_eq(text, "{\"type\":\"typing\",\"content\":{\"body\":\"\",\"meta_data\":\"\"}}");
    free(text);
    ck_assert_int_eq(xlen("p1"), 1);
    h_ck_quiet(&c2, "p2", QUIET_MS, 0);

    /* Without "history": the same. */
    body = "{\"accounts\":[\"p2\"],\"message\":{\"type\":\"x\"}}";
    st = post(AUTH_HDR, body, strlen(body), &resp);
    ck_assert_msg(st == 200, "status %d: %s", st, resp.body);
    ck_assert_str_eq(resp.body, "{\"receivers\":{\"p2\":1}}");
    h_http_resp_free(&resp);
    text = ws_recv_text(&c2, RECV_MS);
    ck_assert_msg(text && !strcmp(text, "{\"type\":\"x\"}"), "p2 got %s", text);
    free(text);

    /* Broadcast reaches every connection. */
    body = "{\"broadcast\":true,\"message\":{\"type\":\"notice\",\"content\":{\"body\":\"hi\","
           "\"meta_data\":\"\"}}}";
    st = post(AUTH_HDR, body, strlen(body), &resp);
    ck_assert_msg(st == 200, "status %d: %s", st, resp.body);
    ck_assert_str_eq(resp.body, "{\"receivers\":1}");
    h_http_resp_free(&resp);
    const char *want = "{\"type\":\"notice\",\"content\":{\"body\":\"hi\",\"meta_data\":\"\"}}";
    text = ws_recv_text(&c1, RECV_MS);
    ck_assert_msg(text && !strcmp(text, want), "p1 got %s", text);
    free(text);
    text = ws_recv_text(&c2, RECV_MS);
    ck_assert_msg(text && !strcmp(text, want), "p2 got %s", text);
    free(text);
    ws_close(&c1, 1000);
    ws_close(&c2, 1000);
}
END_TEST

START_TEST(test_publish_api_errors)
{
    GW("--auth", "none", "--api-key", API_KEY);
    wait_library();
    static const struct {
        const char *what, *body;
    } bad[] = {
        {"not JSON", "hello"},
        {"empty", ""},
        {"array", "[1]"},
        {"no accounts", "{\"message\":{\"type\":\"t\"}}"},
        {"empty accounts", "{\"accounts\":[],\"message\":{\"type\":\"t\"}}"},
        {"accounts not an array", "{\"accounts\":\"p1\",\"message\":{\"type\":\"t\"}}"},
        {"bad account id", "{\"accounts\":[\"p1\",\"a b\"],\"message\":{\"type\":\"t\"}}"},
        {"account not a string", "{\"accounts\":[7],\"message\":{\"type\":\"t\"}}"},
        {"no message", "{\"accounts\":[\"p1\"]}"},
        {"message a string", "{\"accounts\":[\"p1\"],\"message\":\"hi\"}"},
        {"message an array", "{\"accounts\":[\"p1\"],\"message\":[1]}"},
        {"history not a boolean", "{\"accounts\":[\"p1\"],\"history\":1,\"message\":{}}"},
        {"history with an id",
         "{\"accounts\":[\"p1\"],\"history\":true,\"message\":{\"id\":\"1-1\"}}"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct h_http_resp resp;
        int st = post(AUTH_HDR, bad[i].body, strlen(bad[i].body), &resp);
        ck_assert_msg(st == 400, "%s: status %d (%s), want 400", bad[i].what, st,
                      resp.body ? resp.body : "");
        h_http_resp_free(&resp);
    }
    ck_assert_int_eq(xlen("p1"), 0);

    const char *ok = "{\"accounts\":[\"p1\"],\"message\":{\"type\":\"t\"}}";
    ck_assert_int_eq(post_status(NULL, ok), 401);
    ck_assert_int_eq(post_status("Authorization: Bearer wrong\r\n", ok), 401);
    ck_assert_int_eq(post_status("Authorization: Bearer " API_KEY "x\r\n", ok), 401);
    ck_assert_int_eq(post_status("Authorization: Basic " API_KEY "\r\n", ok), 401);
    ck_assert_int_eq(post_status(AUTH_HDR, ok), 200);

    /* Over 64 KiB: 413, nothing published. */
    size_t big = 64 * 1024 + 100;
    char *body = malloc(big + 1);
    ck_assert_ptr_nonnull(body);
    int n = snprintf(body, big + 1,
                     "{\"accounts\":[\"p1\"],\"history\":true,\"message\":{\"type\":\"t\","
                     "\"pad\":\"");
    memset(body + n, 'x', big - (size_t)n - 3);
    memcpy(body + big - 3, "\"}}", 4);
    struct h_http_resp resp;
    int st = post(AUTH_HDR, body, big, &resp);
    ck_assert_msg(st == 413, "%zu bytes: status %d, want 413", big, st);
    h_http_resp_free(&resp);
    ck_assert_int_eq(xlen("p1"), 0);
    /* Exactly 64 KiB is accepted. */
    size_t limit = 64 * 1024;
    memcpy(body + limit - 3, "\"}}", 4);
    st = post(AUTH_HDR, body, limit, &resp);
    ck_assert_msg(st == 200, "%zu bytes: status %d (%s), want 200", limit, st,
                  resp.body ? resp.body : "");
    h_http_resp_free(&resp);
    ck_assert_int_eq(xlen("p1"), 1);
    free(body);
}
END_TEST

START_TEST(test_publish_api_off_without_key)
{
    GW("--auth", "none");
    const char *ok = "{\"accounts\":[\"p1\"],\"message\":{\"type\":\"t\"}}";
    ck_assert_int_eq(post_status(NULL, ok), 404);
    ck_assert_int_eq(post_status("Authorization: Bearer anything\r\n", ok), 404);
}
END_TEST

static Suite *history_suite(void)
{
    Suite *s = suite_create("history");
    TCase *tc = h_tcase(s, "history", 120, setup, teardown);
    tcase_add_test(tc, test_live_message_carries_id);
    tcase_add_test(tc, test_invalid_payloads_rejected);
    tcase_add_test(tc, test_since_replays_missed_in_order);
    tcase_add_test(tc, test_gap_when_since_older_than_retained);
    tcase_add_test(tc, test_malformed_since_is_400);
    tcase_add_test(tc, test_publish_api_history);
    tcase_add_test(tc, test_publish_api_errors);
    tcase_add_test(tc, test_publish_api_off_without_key);

    TCase *slow = h_tcase(s, "recovery", 300, setup, teardown);
    tcase_add_test(slow, test_since_races_live_publishes);
    tcase_add_test(slow, test_replay_after_redis_restart);
    tcase_add_test(slow, test_replay_after_redis_restart_before_reconnect);
    tcase_add_test(slow, test_replay_after_client_kill);
    return s;
}

int main(void)
{
    return h_run_suite(history_suite());
}
