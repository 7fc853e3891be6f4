/* Black-box tests of acknowledgements, receipts, the undelivered outbox,
 * expiry and gaps after any trim (README.md "Acknowledgements and the
 * undelivered outbox", "Expiry", "Resuming") against real redis-server and
 * notify-gateway processes, each test twice: on a single Redis (a fresh one
 * per test) and on a Redis Cluster of three primaries (one per test case,
 * cluster_util.h; each test its own --redis-prefix, so nothing is shared).
 *
 * One case alone: CK_RUN_CASE=single (or cluster) build/tests/integration/test_delivery */
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

#include "cluster_util.h"
#include "harness.h"
#include "keyslot.h"

#define RECV_MS 10000    /* a message that must come */
#define QUIET_MS 400     /* how long "nothing more" is watched */
#define CLUSTER_MS 90000 /* creating a cluster */
#define SWEEP_MS "100"   /* --ack-sweep-ms of the gateways here */
#define LEASE_MS 300     /* three sweep periods */

enum { SINGLE = 0, CLUSTER = 1 };

static int MODE;            /* the running test's: SINGLE or CLUSTER */
static struct h_redis R;    /* SINGLE: this test's Redis */
static struct c_cluster CL; /* CLUSTER: the test case's */
static int cluster_up;
static char SEEDS[256];
static char PFX[32];   /* this test's --redis-prefix */
static struct h_gw G;  /* the first gateway */
static struct h_gw G2; /* a second one, when a test needs two */

/* ---- fixtures ----------------------------------------------------------- */

static void cluster_case_up(void) /* unchecked: once per case, in the runner */
{
    cluster_up =
        c_cluster_start(&CL, CLUSTER_MS) == 0 && c_seeds(&CL, 3, SEEDS, sizeof(SEEDS)) == 0;
}

static void cluster_case_down(void)
{
    if (cluster_up)
        c_cluster_stop(&CL);
    cluster_up = 0;
}

static void setup_common(void)
{
    memset(&G, 0, sizeof(G));
    memset(&G2, 0, sizeof(G2));
    snprintf(PFX, sizeof(PFX), "t%d:", (int)getpid());
}

static void single_setup(void)
{
    MODE = SINGLE;
    setup_common();
    h_ck_setup(&R, &G);
}

static void cluster_setup(void)
{
    MODE = CLUSTER;
    setup_common();
    ck_assert_msg(cluster_up, "the cluster could not be created (see stderr)");
}

static void gw_check_down(struct h_gw *g)
{
    if (!g->proc.dir[0])
        return;
    char *log = h_gw_stderr(g);
    int alive = h_proc_running(&g->proc);
    h_proc_cleanup(&g->proc);
    ck_assert_msg(!strstr(log, "AddressSanitizer") && !strstr(log, "runtime error:"),
                  "sanitizer report in a gateway's stderr");
    ck_assert_msg(alive || !g->must_survive, "a gateway died during the test: %s", log);
    free(log);
}

static void single_teardown(void)
{
    gw_check_down(&G2);
    h_ck_teardown(&R, &G);
}

static void cluster_teardown(void)
{
    gw_check_down(&G2);
    gw_check_down(&G);
}

/* Starts g with --auth none, this test's prefix, a short sweep period and
 * presence TTL, on this mode's Redis, plus the NULL-terminated extra flags. */
static void gw_up(struct h_gw *g, ...)
{
    const char *args[40] = {
        "--auth",         "none", "--redis-prefix",      PFX,  "--ack-sweep-ms", SWEEP_MS,
        "--presence-ttl", "5",    "--heartbeat-timeout", "300"};
    int n = 10;
    if (MODE == CLUSTER) {
        args[n++] = "--redis-cluster";
        args[n++] = SEEDS;
    }
    va_list ap;
    va_start(ap, g);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 38)
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    ck_assert_msg(h_gw_start(g, MODE == SINGLE ? &R : NULL, args) == 0, "gateway did not start");
    g->must_survive = 1;
    /* the library is loaded (on every primary) once /readyz says ready */
    ck_assert_msg(h_http_wait_status(g->port, "/readyz", 200, 20000), "gateway not ready");
}

/* ---- Redis, either mode ------------------------------------------------- */

/* One command (NULL-terminated string arguments) on the node owning key. */
static redisReply *rcmd(const char *key, ...)
{
    const char *argv[64];
    int argc = 0;
    va_list ap;
    va_start(ap, key);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 64)
        argv[argc++] = a;
    va_end(ap);
    if (MODE == CLUSTER)
        return c_cmd_key(&CL, key, NULL, argc, argv);
    redisContext *c = redisConnect("127.0.0.1", R.port);
    if (!c || c->err) {
        redisFree(c);
        return NULL;
    }
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    redisFree(c);
    return r;
}

/* rcmd with an integer answer, asserted. */
static long long rint_(const char *key, ...);
#define RINT(key, ...) rint_((key), __VA_ARGS__, (const char *)NULL)
#define RCMD(key, ...) rcmd((key), __VA_ARGS__, (const char *)NULL)

static long long rint_(const char *key, ...)
{
    const char *argv[16];
    int argc = 0;
    va_list ap;
    va_start(ap, key);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 16)
        argv[argc++] = a;
    va_end(ap);
    redisReply *r = MODE == CLUSTER ? c_cmd_key(&CL, key, NULL, argc, argv) : NULL;
    if (MODE == SINGLE) {
        redisContext *c = redisConnect("127.0.0.1", R.port);
        r = c && !c->err ? redisCommandArgv(c, argc, argv, NULL) : NULL;
        redisFree(c);
    }
    ck_assert_msg(r && r->type == REDIS_REPLY_INTEGER, "%s %s: %s", argv[0], key,
                  r && r->type == REDIS_REPLY_ERROR ? r->str : "not an integer");
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static const char *key_of(const char *name)
{
    static char buf[4][300];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "%s%s", PFX, name);
    return buf[i];
}

static const char *stream_of(const char *account)
{
    static char buf[300];
    snprintf(buf, sizeof(buf), "%sstream:{%s}", PFX, account);
    return buf;
}

/* FCALL notify_publish with up to two options; returns the id (malloc'd),
 * asserting success. */
static char *publish_opts(const char *account, const char *body, const char *o1, const char *v1,
                          const char *o2, const char *v2)
{
    char *env = h_envelope("t", body);
    char key[300];
    snprintf(key, sizeof(key), "%s", stream_of(account));
    redisReply *r = rcmd(key, "FCALL", "notify_publish", "1", key, env, o1, v1, o2, v2, NULL);
    ck_assert_msg(r && r->type == REDIS_REPLY_STRING, "notify_publish %s: %s", account,
                  r && r->type == REDIS_REPLY_ERROR ? r->str : "no id");
    char *id = strdup(r->str);
    freeReplyObject(r);
    free(env);
    return id;
}

#define PUBLISH(acct, body) publish_opts((acct), (body), NULL, NULL, NULL, NULL)
#define PUBLISH_ACK(acct, body, secs) publish_opts((acct), (body), "ack", (secs), NULL, NULL)

/* The entries of a stream, as a JSON array of objects: "_id" and the fields. */
static json_t *entries(const char *key)
{
    redisReply *r = RCMD(key, "XRANGE", key, "-", "+");
    ck_assert_msg(r && r->type == REDIS_REPLY_ARRAY, "XRANGE %s", key);
    json_t *out = json_array();
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *e = r->element[i];
        json_t *o = json_object();
        json_object_set_new(o, "_id", json_string(e->element[0]->str));
        redisReply *f = e->element[1];
        for (size_t k = 0; k + 1 < f->elements; k += 2)
            json_object_set_new(o, f->element[k]->str,
                                json_stringn(f->element[k + 1]->str, f->element[k + 1]->len));
        json_array_append_new(out, o);
    }
    freeReplyObject(r);
    return out;
}

/* Entries of <prefix><name> whose account is account (and id is id, unless
 * NULL). */
static int count_for(json_t *list, const char *account, const char *id)
{
    int n = 0;
    size_t i;
    json_t *o;
    json_array_foreach(list, i, o)
    {
        if (!strcmp(h_jstr(o, "account"), account) && (!id || !strcmp(h_jstr(o, "id"), id)))
            n++;
    }
    return n;
}

/* Waits up to ms until <prefix><name> holds at least want entries of
 * account (id, unless NULL); returns the entries then (json_decref). */
static json_t *wait_entries(const char *name, const char *account, const char *id, int want, int ms)
{
    long long deadline = h_mono_ms() + ms;
    for (;;) {
        json_t *list = entries(key_of(name));
        if (count_for(list, account, id) >= want || h_mono_ms() > deadline)
            return list;
        json_decref(list);
        h_sleep_ms(50);
    }
}

/* An account whose slot lives on the first primary in a cluster (any name
 * on a single Redis), unique to this test. */
static void account_name(char *out, size_t size, const char *base)
{
    snprintf(out, size, "%s%d", base, (int)getpid());
}

/* 1 when id is among account's unacknowledged ids (<prefix>unacked:{<account>}). */
static int unacked_has(const char *account, const char *id)
{
    char key[300];
    snprintf(key, sizeof(key), "%sunacked:{%s}", PFX, account);
    redisReply *r = RCMD(key, "ZSCORE", key, id);
    ck_assert_msg(r, "ZSCORE %s", key);
    int has = r->type != REDIS_REPLY_NIL;
    freeReplyObject(r);
    return has;
}

/* Waits until account has a live presence entry: notify_publish ... ack
 * takes an account without one for offline (presence is written a few ms
 * after the register reply). */
static void wait_presence(const char *account)
{
    char key[300], now[32];
    snprintf(key, sizeof(key), "%spresence:{%s}", PFX, account);
    long long deadline = h_mono_ms() + RECV_MS;
    for (;;) {
        snprintf(now, sizeof(now), "%lld", h_wall_ms());
        if (RINT(key, "ZCOUNT", key, now, "+inf") > 0)
            return;
        ck_assert_msg(h_mono_ms() < deadline, "no presence for %s", account);
        h_sleep_ms(10);
    }
}

/* h_ck_open_as, then its presence written. */
static void open_present(struct ws *c, int port, const char *account)
{
    h_ck_open_as(c, port, account);
    wait_presence(account);
}

/* ---- the client --------------------------------------------------------- */

/* The next notification on c (skipping nothing): its id and body checked. */
static struct h_msg expect_note(struct ws *c, const char *who, const char *id, const char *body)
{
    struct h_msg m;
    ck_assert_msg(h_msg_recv(c, &m, RECV_MS), "%s: no message, want %s", who, id);
    const char *got = h_jstr(m.j, "id");
    ck_assert_msg(got && !strcmp(got, id), "%s: got %s, want id %s", who, m.text, id);
    if (body)
        ck_assert_msg(h_msg_body(&m) && !strcmp(h_msg_body(&m), body), "%s: body in %s", who,
                      m.text);
    return m;
}

/* Sends an ack of ids (comma-separated) and returns the next message. */
static struct h_msg ack(struct ws *c, const char *ids)
{
    char text[1024];
    snprintf(text, sizeof(text), "{\"type\":\"ack\",\"content\":{\"body\":\"%s\"}}", ids);
    ck_assert_int_eq(ws_send_text(c, text), 0);
    struct h_msg m;
    ck_assert_msg(h_msg_recv(c, &m, RECV_MS), "no answer to the ack of %s", ids);
    return m;
}

static void expect_type(struct h_msg *m, const char *type, const char *body)
{
    ck_assert_msg(h_msg_type(m) && !strcmp(h_msg_type(m), type), "got %s, want a %s", m->text,
                  type);
    if (body)
        ck_assert_msg(h_msg_body(m) && !strcmp(h_msg_body(m), body), "got %s, want body %s",
                      m->text, body);
}

/* ---- acknowledgements and receipts -------------------------------------- */

START_TEST(test_ack_once_and_twice)
{
    gw_up(&G, NULL);
    char acct[64];
    account_name(acct, sizeof(acct), "ack");
    struct ws c;
    char *conn = NULL;
    {
        char path[128];
        snprintf(path, sizeof(path), "/ws?user_id=%s", acct);
        conn = h_ck_ws_open(&c, G.port, path, RECV_MS);
        wait_presence(acct);
    }
    long long before = h_wall_ms();
    char *id = PUBLISH_ACK(acct, "hello", "30");
    struct h_msg m = expect_note(&c, "live", id, "hello");
    h_msg_free(&m);
    ck_assert_int_eq(unacked_has(acct, id), 1);

    struct h_msg a = ack(&c, id);
    expect_type(&a, "ack", id);
    h_msg_free(&a);
    ck_assert_int_eq(unacked_has(acct, id), 0);
    json_t *list = wait_entries("receipts", acct, id, 1, RECV_MS);
    ck_assert_int_eq(count_for(list, acct, id), 1);
    json_t *e = json_array_get(list, 0);
    ck_assert_str_eq(h_jstr(e, "connection"), conn);
    char node[32];
    snprintf(node, sizeof(node), "it-%d", G.port);
    ck_assert_str_eq(h_jstr(e, "node"), node);
    long long at = atoll(h_jstr(e, "at"));
    ck_assert_msg(at >= before - 2000 && at <= h_wall_ms() + 2000, "at %lld", at);
    json_decref(list);

    /* Again: answered the same, no second receipt. */
    a = ack(&c, id);
    expect_type(&a, "ack", id);
    h_msg_free(&a);
    h_sleep_ms(4 * atoi(SWEEP_MS) + QUIET_MS);
    list = entries(key_of("receipts"));
    ck_assert_int_eq(count_for(list, acct, id), 1);
    json_decref(list);
    ck_assert_int_eq(h_ck_metric(G.port, "notify_acks_total"), 2);
    ws_close(&c, 1000);
    free(conn);
    free(id);
}
END_TEST

START_TEST(test_ack_unknown_id)
{
    gw_up(&G, NULL);
    char acct[64];
    account_name(acct, sizeof(acct), "unk");
    struct ws c;
    open_present(&c, G.port, acct);
    char *id = PUBLISH(acct, "plain"); /* no ack asked: may still be acknowledged */
    struct h_msg m = expect_note(&c, "live", id, "plain");
    h_msg_free(&m);

    struct h_msg a = ack(&c, "1-1");
    expect_type(&a, "error", "unknown notification id: 1-1");
    h_msg_free(&a);
    /* A mix: the known one is acknowledged, the other named. */
    char both[128];
    snprintf(both, sizeof(both), "%s, 2-2", id);
    a = ack(&c, both);
    expect_type(&a, "ack", id);
    h_msg_free(&a);
    ck_assert_msg(h_msg_recv(&c, &a, RECV_MS), "no error for 2-2");
    expect_type(&a, "error", "unknown notification id: 2-2");
    h_msg_free(&a);
    /* Malformed acks: error replies, the connection stays. */
    const char *bad[] = {"", "x", "1-1;2-2", "1-1,,2-2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        a = ack(&c, bad[i]);
        expect_type(&a, "error", NULL);
        h_msg_free(&a);
    }
    ck_assert_int_eq(ws_send_text(&c, "{\"type\":\"ack\",\"content\":{\"body\":7}}"), 0);
    ck_assert_msg(h_msg_recv(&c, &a, RECV_MS), "no answer to a numeric body");
    expect_type(&a, "error", NULL);
    h_msg_free(&a);
    /* An id of another account is unknown to this one. */
    char other[80];
    snprintf(other, sizeof(other), "%so", acct);
    char *oid = PUBLISH(other, "theirs");
    a = ack(&c, oid);
    expect_type(&a, "error", NULL);
    h_msg_free(&a);
    h_sleep_ms(4 * atoi(SWEEP_MS));
    json_t *list = entries(key_of("receipts"));
    ck_assert_int_eq(count_for(list, acct, NULL), 1);
    ck_assert_int_eq(count_for(list, other, NULL), 0);
    json_decref(list);
    h_ck_quiet(&c, "after acks", QUIET_MS, 1);
    ws_close(&c, 1000);
    free(id);
    free(oid);
}
END_TEST

START_TEST(test_publish_options)
{
    gw_up(&G, NULL);
    const char *key = stream_of("opts");
    struct {
        const char *o1, *v1, *o2, *v2, *want;
    } bad[] = {
        {"ack", "0", NULL, NULL, "ack must be"},    {"ack", "x", NULL, NULL, "ack must be"},
        {"ttl", "-1", NULL, NULL, "ttl must be"},   {"ack", NULL, NULL, NULL, "ack must be"},
        {"foo", "1", NULL, NULL, "unknown option"}, {"ack", "1", "ack", "2", "twice"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        redisReply *r = rcmd(key, "FCALL", "notify_publish", "1", key, "{\"type\":\"t\"}",
                             bad[i].o1, bad[i].v1, bad[i].o2, bad[i].v2, NULL);
        ck_assert_msg(r && r->type == REDIS_REPLY_ERROR && strstr(r->str, bad[i].want),
                      "case %zu: %s", i, r && r->type == REDIS_REPLY_ERROR ? r->str : "accepted");
        freeReplyObject(r);
    }
    ck_assert_int_eq(RINT(key, "EXISTS", key), 0); /* nothing written */
    /* The plain form and both options in either order. */
    free(PUBLISH("opts", "a"));
    free(publish_opts("opts", "b", "ttl", "60", "ack", "60"));
    free(publish_opts("opts", "c", "ack", "60", "ttl", "60"));
    ck_assert_int_eq(RINT(key, "XLEN", key), 3);
}
END_TEST

/* ---- the outbox ---------------------------------------------------------- */

START_TEST(test_outbox_offline)
{
    gw_up(&G, NULL);
    char acct[64];
    account_name(acct, sizeof(acct), "off");
    long long before = h_wall_ms();
    char *id = PUBLISH_ACK(acct, "while away", "60");
    /* A single Redis writes it inside notify_publish; a cluster relays it
     * within a sweep period or two. */
    json_t *list =
        wait_entries("undelivered", acct, id, 1, MODE == SINGLE ? 0 : 5 * atoi(SWEEP_MS) + 2000);
    ck_assert_int_eq(count_for(list, acct, id), 1);
    json_t *e = json_array_get(list, 0);
    ck_assert_str_eq(h_jstr(e, "reason"), "offline");
    json_t *p = h_ck_json_obj(h_jstr(e, "payload"));
    ck_assert_str_eq(h_jstr(p, "id"), id);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(p, "content"), "body")),
                     "while away");
    json_decref(p);
    long long at = atoll(h_jstr(e, "at"));
    ck_assert_msg(at >= before - 2000 && at <= h_wall_ms() + 2000, "at %lld", at);
    json_decref(list);
    /* Not again at its deadline either. */
    h_sleep_ms(6 * atoi(SWEEP_MS));
    list = entries(key_of("undelivered"));
    ck_assert_int_eq(count_for(list, acct, NULL), 1);
    json_decref(list);
    free(id);
}
END_TEST

START_TEST(test_outbox_timeout)
{
    gw_up(&G, NULL);
    char acct[64];
    account_name(acct, sizeof(acct), "late");
    struct ws c;
    open_present(&c, G.port, acct);
    long long t0 = h_mono_ms();
    char *id = PUBLISH_ACK(acct, "seen?", "1");
    struct h_msg m = expect_note(&c, "live", id, "seen?");
    h_msg_free(&m);
    /* Not acknowledged: in the outbox after 1 s plus a sweep or two. */
    json_t *list = wait_entries("undelivered", acct, id, 1, 1000 + 10 * atoi(SWEEP_MS) + 2000);
    long long took = h_mono_ms() - t0;
    ck_assert_int_eq(count_for(list, acct, id), 1);
    ck_assert_msg(took >= 900, "in the outbox after %lld ms, before its deadline", took);
    json_t *e = json_array_get(list, 0);
    ck_assert_str_eq(h_jstr(e, "reason"), "timeout");
    json_t *p = h_ck_json_obj(h_jstr(e, "payload"));
    ck_assert_str_eq(h_jstr(p, "id"), id);
    json_decref(p);
    json_decref(list);
    ck_assert_int_eq(unacked_has(acct, id), 1); /* still not acknowledged */
    h_sleep_ms(6 * atoi(SWEEP_MS));
    list = entries(key_of("undelivered"));
    ck_assert_int_eq(count_for(list, acct, NULL), 1);
    json_decref(list);
    /* A late acknowledgement still gives a receipt. */
    struct h_msg a = ack(&c, id);
    expect_type(&a, "ack", id);
    h_msg_free(&a);
    list = wait_entries("receipts", acct, id, 1, RECV_MS);
    ck_assert_int_eq(count_for(list, acct, id), 1);
    json_decref(list);
    ws_close(&c, 1000);
    free(id);
}
END_TEST

START_TEST(test_outbox_nothing_when_acked_in_time)
{
    gw_up(&G, NULL);
    char acct[64];
    account_name(acct, sizeof(acct), "ontime");
    struct ws c;
    open_present(&c, G.port, acct);
    char *id = PUBLISH_ACK(acct, "quick", "1");
    struct h_msg m = expect_note(&c, "live", id, "quick");
    h_msg_free(&m);
    struct h_msg a = ack(&c, id);
    expect_type(&a, "ack", id);
    h_msg_free(&a);
    h_sleep_ms(1000 + 10 * atoi(SWEEP_MS) + 500);
    json_t *list = entries(key_of("undelivered"));
    ck_assert_int_eq(count_for(list, acct, NULL), 0);
    json_decref(list);
    list = entries(key_of("receipts"));
    ck_assert_int_eq(count_for(list, acct, id), 1);
    json_decref(list);
    ws_close(&c, 1000);
    free(id);
}
END_TEST

/* Every id of ids[0..n) exactly once among account's outbox entries, and
 * nothing else of account. */
static void expect_each_once(const char *account, char **ids, int n, int ms)
{
    json_t *list = wait_entries("undelivered", account, NULL, n, ms);
    for (int i = 0; i < n; i++)
        ck_assert_msg(count_for(list, account, ids[i]) == 1, "id %s %d times in the outbox", ids[i],
                      count_for(list, account, ids[i]));
    ck_assert_int_eq(count_for(list, account, NULL), n);
    json_decref(list);
}

/* The lease key of the primary sweeping account's slot. */
static void lease_key(char *out, size_t size, const char *account)
{
    if (MODE == SINGLE) {
        snprintf(out, size, "%ssweeper", PFX);
        return;
    }
    char tags[KEYSLOT_COUNT * KEYSLOT_TAG_LEN];
    keyslot_tags(tags);
    char key[300];
    snprintf(key, sizeof(key), "%s", stream_of(account));
    int owner = c_key_owner(&CL, key);
    int lo = c_lowest_slot(&CL, owner);
    snprintf(out, size, "%ssweeper:{%.4s}", PFX, tags + lo * KEYSLOT_TAG_LEN);
}

START_TEST(test_exactly_once_holder_killed)
{
    char acct[64];
    account_name(acct, sizeof(acct), "kill");
    char lease[300];
    lease_key(lease, sizeof(lease), acct);
    gw_up(&G, NULL);
    struct ws c;
    open_present(&c, G.port, acct);
    enum { N = 20 };
    char *ids[N];
    char body[16];
    for (int i = 0; i < N; i++) {
        snprintf(body, sizeof(body), "k%d", i);
        ids[i] = PUBLISH_ACK(acct, body, "3");
    }
    for (int i = 0; i < N; i++) {
        struct h_msg m = expect_note(&c, "live", ids[i], NULL);
        h_msg_free(&m);
    }
    /* G, alone, takes the sweep lease as soon as there are deadlines. */
    long long deadline = h_mono_ms() + 5000;
    redisReply *r = NULL;
    while (h_mono_ms() < deadline) {
        r = RCMD(lease, "GET", lease);
        if (r && r->type == REDIS_REPLY_STRING)
            break;
        freeReplyObject(r);
        r = NULL;
        h_sleep_ms(20);
    }
    ck_assert_msg(r, "no sweep lease taken");
    char node[32];
    snprintf(node, sizeof(node), "it-%d", G.port);
    ck_assert_str_eq(r->str, node);
    freeReplyObject(r);
    gw_up(&G2, NULL);
    /* Mid-deadline: the node with the sockets and the lease dies. */
    G.must_survive = 0;
    h_gw_kill(&G);
    ws_drop(&c);
    expect_each_once(acct, ids, N, 3000 + LEASE_MS + 20 * atoi(SWEEP_MS) + 3000);
    /* the survivor took over and wrote every one of them */
    ck_assert_int_eq(h_ck_metric(G2.port, "notify_outbox_entries_total"), N);
    h_sleep_ms(LEASE_MS + 10 * atoi(SWEEP_MS));
    expect_each_once(acct, ids, N, 0);
    for (int i = 0; i < N; i++)
        free(ids[i]);
}
END_TEST

/* Racing sweeps: the lease deleted again and again (so both gateways sweep
 * each period), and this thread's own FCALL notify_sweep without a lease. */
static atomic_int racing;
static char race_lease[300];

static void *race_thread(void *arg)
{
    (void)arg;
    char node[16] = "racer";
    while (atomic_load(&racing)) {
        redisReply *r = RCMD(race_lease, "DEL", race_lease);
        if (r)
            freeReplyObject(r);
        if (MODE == SINGLE) {
            r = RCMD(key_of("x"), "FCALL", "notify_sweep", "0", PFX, node, "0", "5");
            if (r)
                freeReplyObject(r);
        }
        usleep(2000);
    }
    return NULL;
}

START_TEST(test_exactly_once_racing_sweeps)
{
    char acct[64];
    account_name(acct, sizeof(acct), "race");
    lease_key(race_lease, sizeof(race_lease), acct);
    gw_up(&G, NULL);
    gw_up(&G2, NULL);
    struct ws c;
    open_present(&c, G.port, acct);
    enum { N = 60 };
    char *ids[N];
    char body[16];
    atomic_store(&racing, 1);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, race_thread, NULL), 0);
    for (int i = 0; i < N; i++) {
        snprintf(body, sizeof(body), "r%d", i);
        ids[i] = PUBLISH_ACK(acct, body, "1");
        if (i % 10 == 9)
            h_sleep_ms(150); /* deadlines spread over several sweeps */
    }
    expect_each_once(acct, ids, N, 1000 + 1000 + 30 * atoi(SWEEP_MS) + 3000);
    h_sleep_ms(10 * atoi(SWEEP_MS));
    atomic_store(&racing, 0);
    pthread_join(th, NULL);
    expect_each_once(acct, ids, N, 0);
    ws_close(&c, 1000);
    for (int i = 0; i < N; i++)
        free(ids[i]);
}
END_TEST

/* ---- expiry --------------------------------------------------------------- */

/* PUBLISH (SPUBLISH in a cluster) of payload on account's channel. */
static void raw_publish(const char *account, const char *payload)
{
    char ch[300];
    snprintf(ch, sizeof(ch), "%sacct:{%s}", PFX, account);
    long long n = MODE == CLUSTER ? c_spublish(&CL, ch, payload) : RINT(ch, "PUBLISH", ch, payload);
    ck_assert_int_eq(n, 1);
}

START_TEST(test_ttl_live)
{
    gw_up(&G, NULL);
    char acct[64];
    account_name(acct, sizeof(acct), "ttl");
    struct ws c;
    open_present(&c, G.port, acct);
    long long before = h_wall_ms();
    char *id = publish_opts(acct, "fresh", "ttl", "60", NULL, NULL);
    struct h_msg m = expect_note(&c, "live", id, "fresh");
    json_t *x = json_object_get(m.j, "expires_at");
    ck_assert_msg(json_is_integer(x), "no expires_at in %s", m.text);
    long long exp = json_integer_value(x);
    ck_assert_msg(exp >= before + 58000 && exp <= h_wall_ms() + 62000, "expires_at %lld", exp);
    h_msg_free(&m);
    /* A message whose expiry has passed when it reaches the node is not
     * delivered; one whose expiry is ahead is. */
    char text[256];
    snprintf(
        text, sizeof(text),
        "{\"expires_at\":%lld,\"type\":\"t\",\"content\":{\"body\":\"stale\",\"meta_data\":\"\"}}",
        h_wall_ms() - 1000);
    raw_publish(acct, text);
    h_ck_quiet(&c, "stale", QUIET_MS, 1);
    snprintf(
        text, sizeof(text),
        "{\"expires_at\":%lld,\"type\":\"t\",\"content\":{\"body\":\"ok\",\"meta_data\":\"\"}}",
        h_wall_ms() + 60000);
    raw_publish(acct, text);
    ck_assert_msg(h_msg_recv(&c, &m, RECV_MS), "the unexpired message did not come");
    ck_assert_str_eq(h_msg_body(&m), "ok");
    h_msg_free(&m);
    ck_assert_int_ge(h_ck_metric(G.port, "notify_expired_total"), 1);
    ws_close(&c, 1000);
    free(id);
}
END_TEST

START_TEST(test_ttl_replay)
{
    gw_up(&G, NULL);
    char acct[64];
    account_name(acct, sizeof(acct), "ttlr");
    char *first = PUBLISH(acct, "before");
    char *gone = publish_opts(acct, "short", "ttl", "1", NULL, NULL);
    char *kept = publish_opts(acct, "long", "ttl", "600", NULL, NULL);
    char *plain = PUBLISH(acct, "plain");
    h_sleep_ms(1300);
    struct ws c;
    h_ck_open_client(&c, G.port, acct, first, RECV_MS);
    /* The expired one is skipped, and that is no gap. */
    struct h_msg m = expect_note(&c, "replay", kept, "long");
    ck_assert_msg(json_is_integer(json_object_get(m.j, "expires_at")), "no expires_at: %s", m.text);
    h_msg_free(&m);
    m = expect_note(&c, "replay", plain, "plain");
    h_msg_free(&m);
    h_ck_quiet(&c, "replay", QUIET_MS, 1);
    ws_close(&c, 1000);
    free(first);
    free(gone);
    free(kept);
    free(plain);
}
END_TEST

START_TEST(test_ttl_outbox)
{
    gw_up(&G, NULL);
    char acct[64];
    account_name(acct, sizeof(acct), "ttlo");
    struct ws c;
    open_present(&c, G.port, acct);
    /* Expired before its acknowledgement deadline: never in the outbox. */
    char *id = publish_opts(acct, "brief", "ack", "2", "ttl", "1");
    struct h_msg m = expect_note(&c, "live", id, "brief");
    h_msg_free(&m);
    /* Its neighbour without ttl shows the sweep ran. */
    char *id2 = PUBLISH_ACK(acct, "control", "2");
    m = expect_note(&c, "live", id2, "control");
    h_msg_free(&m);
    json_t *list = wait_entries("undelivered", acct, id2, 1, 2000 + 20 * atoi(SWEEP_MS) + 2000);
    ck_assert_int_eq(count_for(list, acct, id2), 1);
    ck_assert_int_eq(count_for(list, acct, id), 0);
    json_decref(list);
    h_sleep_ms(5 * atoi(SWEEP_MS));
    list = entries(key_of("undelivered"));
    ck_assert_int_eq(count_for(list, acct, id), 0);
    json_decref(list);
    ck_assert_int_ge(h_ck_metric(G.port, "notify_expired_total"), 1);
    ws_close(&c, 1000);
    free(id);
    free(id2);
}
END_TEST

/* ---- gaps after any trim ---------------------------------------------------- */

static void expect_gap(struct ws *c, const char *who, const char *oldest)
{
    struct h_msg m;
    ck_assert_msg(h_msg_recv(c, &m, RECV_MS), "%s: no message, want a gap", who);
    expect_type(&m, "gap", oldest);
    h_msg_free(&m);
}

START_TEST(test_gap_after_xtrim)
{
    gw_up(&G, NULL);
    char acct[64];
    account_name(acct, sizeof(acct), "xtrim");
    char *ids[5];
    char body[8];
    for (int i = 0; i < 5; i++) {
        snprintf(body, sizeof(body), "x%d", i);
        ids[i] = PUBLISH(acct, body);
    }
    /* An operator trims the stream behind the gateway's back. */
    ck_assert_int_eq(RINT(stream_of(acct), "XTRIM", stream_of(acct), "MAXLEN", "2"), 3);
    struct ws c;
    h_ck_open_client(&c, G.port, acct, ids[0], RECV_MS);
    expect_gap(&c, "since x0", ids[3]);
    struct h_msg m = expect_note(&c, "since x0", ids[3], "x3");
    h_msg_free(&m);
    m = expect_note(&c, "since x0", ids[4], "x4");
    h_msg_free(&m);
    h_ck_quiet(&c, "since x0", QUIET_MS, 1);
    ws_close(&c, 1000);
    /* since = the oldest retained: nothing after it is gone. */
    h_ck_open_client(&c, G.port, acct, ids[3], RECV_MS);
    m = expect_note(&c, "since x3", ids[4], "x4");
    h_msg_free(&m);
    h_ck_quiet(&c, "since x3", QUIET_MS, 1);
    ws_close(&c, 1000);
    for (int i = 0; i < 5; i++)
        free(ids[i]);
}
END_TEST

START_TEST(test_gap_after_xadd_maxlen)
{
    gw_up(&G, NULL);
    char acct[64];
    account_name(acct, sizeof(acct), "xadd");
    char *ids[3];
    char body[8];
    for (int i = 0; i < 3; i++) {
        snprintf(body, sizeof(body), "y%d", i);
        ids[i] = PUBLISH(acct, body);
    }
    /* Another producer appends with MAXLEN, dropping y0 and y1. */
    const char *env = "{\"type\":\"t\",\"content\":{\"body\":\"other\",\"meta_data\":\"\"}}";
    redisReply *r = RCMD(stream_of(acct), "XADD", stream_of(acct), "MAXLEN", "2", "*", "m", env);
    ck_assert_msg(r && r->type == REDIS_REPLY_STRING, "XADD MAXLEN");
    char *other = strdup(r->str);
    freeReplyObject(r);
    struct ws c;
    h_ck_open_client(&c, G.port, acct, ids[0], RECV_MS);
    expect_gap(&c, "since y0", ids[2]);
    struct h_msg m = expect_note(&c, "since y0", ids[2], "y2");
    h_msg_free(&m);
    m = expect_note(&c, "since y0", other, "other");
    h_msg_free(&m);
    h_ck_quiet(&c, "since y0", QUIET_MS, 1);
    ws_close(&c, 1000);
    /* notify_publish's own trimming afterwards still reports exactly. */
    for (int i = 0; i < 3; i++)
        free(ids[i]);
    free(other);
}
END_TEST

/* ---- register first ------------------------------------------------------- */

static atomic_int flooding;
static void *broadcast_thread(void *arg)
{
    (void)arg;
    char ch[64];
    snprintf(ch, sizeof(ch), "%sbroadcast", PFX);
    redisContext *c = redisConnect("127.0.0.1", R.port);
    while (c && !c->err && atomic_load(&flooding)) {
        redisReply *r =
            redisCommand(c, "PUBLISH %s %s", ch,
                         "{\"type\":\"b\",\"content\":{\"body\":\"all\",\"meta_data\":\"\"}}");
        if (r)
            freeReplyObject(r);
    }
    redisFree(c);
    return NULL;
}

/* A connection whose account's channel is still being subscribed gets its
 * register reply before anything else, even with broadcasts arriving all
 * along. */
START_TEST(test_register_before_any_notification)
{
    gw_up(&G, NULL);
    atomic_store(&flooding, 1);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, broadcast_thread, NULL), 0);
    h_sleep_ms(100);
    int bad = 0;
    for (int i = 0; i < 60 && !bad; i++) {
        char path[96];
        snprintf(path, sizeof(path), "/ws?user_id=reg%d_%d", (int)getpid(), i);
        struct ws c;
        ck_assert_int_eq(ws_connect(&c, G.port, path, NULL, RECV_MS), 101);
        struct h_msg m;
        ck_assert_msg(h_msg_recv(&c, &m, RECV_MS), "connection %d: no message", i);
        if (!h_msg_type(&m) || strcmp(h_msg_type(&m), "register"))
            bad = i + 1;
        h_msg_free(&m);
        ws_drop(&c);
    }
    atomic_store(&flooding, 0);
    pthread_join(th, NULL);
    ck_assert_msg(!bad, "connection %d got a notification before its register reply", bad - 1);
}
END_TEST

/* ---- a Redis restart with AOF ------------------------------------------- */

/* Deadlines and outbox entries are Redis data: with appendfsync always, a
 * kill -9 of Redis in the middle of a deadline loses none and doubles
 * none. */
START_TEST(test_exactly_once_across_redis_restart_aof)
{
    h_redis_stop(&R);
    ck_assert_int_eq(h_redis_start_aof(&R), 0);
    gw_up(&G, NULL);
    char acct[64], away[64];
    account_name(acct, sizeof(acct), "aof");
    account_name(away, sizeof(away), "aofaway");
    struct ws c;
    open_present(&c, G.port, acct);
    char *due = PUBLISH_ACK(acct, "due", "3");
    struct h_msg m = expect_note(&c, "live", due, "due");
    h_msg_free(&m);
    char *off = PUBLISH_ACK(away, "offline", "60");
    json_decref(wait_entries("undelivered", away, off, 1, 0));
    ck_assert_int_eq(h_redis_restart(&R), 0);
    ck_assert_msg(h_http_wait_status(G.port, "/readyz", 200, 20000), "not ready after the restart");
    json_t *list = wait_entries("undelivered", acct, due, 1, 3000 + 10 * atoi(SWEEP_MS) + 5000);
    ck_assert_int_eq(count_for(list, acct, due), 1);
    ck_assert_int_eq(count_for(list, away, off), 1);
    json_decref(list);
    h_sleep_ms(10 * atoi(SWEEP_MS));
    list = entries(key_of("undelivered"));
    ck_assert_int_eq(count_for(list, acct, NULL), 1);
    ck_assert_int_eq(count_for(list, away, NULL), 1);
    json_decref(list);
    ws_close(&c, 1000);
    free(due);
    free(off);
}
END_TEST

/* ---- the producer's tools: notifyctl and POST /publish ------------------ */

/* Runs notifyctl with this test's Redis and prefix and the NULL-terminated
 * args; returns its exit status, *out its stdout (malloc'd). */
static int ctl(char **out, ...)
{
    char url[128];
    const char *argv[32] = {NOTIFYCTL_BIN, "--redis-prefix", PFX};
    int n = 3;
    if (MODE == CLUSTER) {
        argv[n++] = "--redis-cluster";
        argv[n++] = SEEDS;
    } else {
        h_redis_url(&R, url, sizeof(url));
        argv[n++] = "--redis";
        argv[n++] = url;
    }
    va_list ap;
    va_start(ap, out);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 31)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    char *err = NULL;
    int rc = h_run(argv, NULL, 20000, out, &err);
    if (rc != 0 && rc != 2)
        fprintf(stderr, "notifyctl %s: exit %d: %s\n", argv[n - 1], rc, err ? err : "");
    free(err);
    return rc;
}

START_TEST(test_producer_tools)
{
    gw_up(&G, "--api-key", "k3y", NULL);
    char acct[64], away[64];
    account_name(acct, sizeof(acct), "tool");
    account_name(away, sizeof(away), "away");
    struct ws c;
    open_present(&c, G.port, acct);

    /* publish --ack --ttl: the id printed, delivered with expires_at */
    char *out = NULL;
    ck_assert_int_eq(ctl(&out, "publish", acct, "--ack", "60", "--ttl", "600", "--type", "t",
                         "--body", "via ctl", NULL),
                     0);
    char id[64];
    ck_assert_int_eq(sscanf(out, "%63s", id), 1);
    free(out);
    struct h_msg m = expect_note(&c, "ctl", id, "via ctl");
    ck_assert_msg(json_is_integer(json_object_get(m.j, "expires_at")), "no expires_at: %s", m.text);
    h_msg_free(&m);
    ck_assert_int_eq(ctl(&out, "publish", acct, "--ack", "0", "--type", "t", NULL), 2);
    free(out);
    ck_assert_int_eq(ctl(&out, "publish", "--broadcast", "--ttl", "5", "--type", "t", NULL), 2);
    free(out);

    /* unacked, then acknowledged: receipts */
    ck_assert_int_eq(ctl(&out, "unacked", acct, NULL), 0);
    ck_assert_msg(strstr(out, id), "unacked: %s", out);
    free(out);
    struct h_msg a = ack(&c, id);
    expect_type(&a, "ack", id);
    h_msg_free(&a);
    ck_assert_int_eq(ctl(&out, "unacked", acct, NULL), 0);
    ck_assert_str_eq(out, "");
    free(out);
    json_decref(wait_entries("receipts", acct, id, 1, RECV_MS));
    ck_assert_int_eq(ctl(&out, "--json", "receipts", acct, NULL), 0);
    json_t *r = json_loads(out, 0, NULL);
    ck_assert_msg(json_is_array(r) && json_array_size(r) == 1, "receipts: %s", out);
    ck_assert_str_eq(h_jstr(json_array_get(r, 0), "id"), id);
    json_decref(r);
    free(out);

    /* POST /publish with ack to an account offline: the outbox; a worker's
     * consumer group reads it, acknowledges it, and does not see it again. */
    char body[512];
    snprintf(body, sizeof(body),
             "{\"accounts\":[\"%s\"],\"history\":true,\"ack\":30,\"ttl\":600,"
             "\"message\":{\"type\":\"t\",\"content\":{\"body\":\"push me\",\"meta_data\":\"\"}}}",
             away);
    struct h_http_resp resp;
    ck_assert_int_eq(h_http(G.port, "POST", "/publish", "Authorization: Bearer k3y\r\n", body,
                            strlen(body), &resp, 5000),
                     200);
    json_t *ids = h_ck_json_obj(resp.body);
    const char *pid = h_jstr(json_object_get(ids, "ids"), away);
    ck_assert_msg(pid, "no id: %s", resp.body);
    char away_id[64];
    snprintf(away_id, sizeof(away_id), "%s", pid);
    json_decref(ids);
    h_http_resp_free(&resp);
    json_decref(wait_entries("undelivered", away, away_id, 1, 5000));
    ck_assert_int_eq(
        ctl(&out, "--json", "undelivered", "--group", "push", "--consumer", "w1", NULL), 0);
    r = json_loads(out, 0, NULL);
    ck_assert_msg(json_is_array(r) && json_array_size(r) >= 1, "undelivered: %s", out);
    free(out);
    json_t *e = NULL;
    size_t i;
    json_t *v;
    json_array_foreach(r, i, v)
    {
        if (!strcmp(h_jstr(v, "id"), away_id))
            e = v;
    }
    ck_assert_msg(e, "the outbox entry was not read by the group");
    ck_assert_str_eq(h_jstr(e, "reason"), "offline");
    char entry[64];
    snprintf(entry, sizeof(entry), "%s", h_jstr(e, "entry"));
    json_decref(r);
    ck_assert_int_eq(ctl(&out, "undelivered", "ack", "--group", "push", entry, NULL), 0);
    ck_assert_str_eq(out, "1\n");
    free(out);
    ck_assert_int_eq(ctl(&out, "--json", "undelivered", "--group", "push", NULL), 0);
    ck_assert_str_eq(out, "[]\n");
    free(out);
    ck_assert_int_eq(ctl(&out, "undelivered", "ack", "1-1", NULL), 2); /* no --group */
    free(out);

    /* POST /publish refusals */
    const char *bad[] = {
        "{\"accounts\":[\"x\"],\"ack\":5,\"message\":{\"type\":\"t\"}}",
        "{\"accounts\":[\"x\"],\"history\":true,\"ack\":0,\"message\":{\"type\":\"t\"}}",
        "{\"accounts\":[\"x\"],\"history\":true,\"ttl\":\"5\",\"message\":{\"type\":\"t\"}}",
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        ck_assert_int_eq(h_http(G.port, "POST", "/publish", "Authorization: Bearer k3y\r\n", bad[k],
                                strlen(bad[k]), &resp, 5000),
                         400);
        h_http_resp_free(&resp);
    }
    ws_close(&c, 1000);
}
END_TEST

static void add_all(TCase *tc)
{
    tcase_add_test(tc, test_ack_once_and_twice);
    tcase_add_test(tc, test_ack_unknown_id);
    tcase_add_test(tc, test_publish_options);
    tcase_add_test(tc, test_outbox_offline);
    tcase_add_test(tc, test_outbox_timeout);
    tcase_add_test(tc, test_outbox_nothing_when_acked_in_time);
    tcase_add_test(tc, test_exactly_once_holder_killed);
    tcase_add_test(tc, test_exactly_once_racing_sweeps);
    tcase_add_test(tc, test_ttl_live);
    tcase_add_test(tc, test_ttl_replay);
    tcase_add_test(tc, test_ttl_outbox);
    tcase_add_test(tc, test_gap_after_xtrim);
    tcase_add_test(tc, test_gap_after_xadd_maxlen);
    tcase_add_test(tc, test_producer_tools);
}

static Suite *delivery_suite(void)
{
    Suite *s = suite_create("delivery");
    TCase *single = h_tcase(s, "single", 120, single_setup, single_teardown);
    add_all(single);
    tcase_add_test(single, test_register_before_any_notification);
    tcase_add_test(single, test_exactly_once_across_redis_restart_aof);
    TCase *cluster = h_tcase(s, "cluster", 120, cluster_setup, cluster_teardown);
    tcase_add_unchecked_fixture(cluster, cluster_case_up, cluster_case_down);
    add_all(cluster);
    return s;
}

int main(void)
{
    return h_run_suite(delivery_suite());
}
