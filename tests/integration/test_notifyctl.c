/* test_notifyctl: notifyctl (NOTIFYCTL_BIN) against a real redis-server.
 *
 * Each test starts its own redis-server on a free loopback port, writes the
 * presence and node entries directly the way the gateway does (README.md
 * "Presence"), runs notifyctl as a child process and checks its exit status
 * and output. */
#include <check.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster_util.h"
#include "harness.h"

#ifndef NOTIFYCTL_BIN
#error "NOTIFYCTL_BIN must name the notifyctl executable"
#endif

#define RUN_TIMEOUT_MS 10000

static struct h_redis redis;
static char redis_url[128];

static void start_redis(void)
{
    ck_assert_int_eq(h_redis_start(&redis), 0);
    h_redis_url(&redis, redis_url, sizeof(redis_url));
}

static void stop_redis(void)
{
    h_redis_stop(&redis);
}

/* The result of one notifyctl run. */
struct run {
    int status;
    char *out;
    char *err;
};

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
}

/* Runs notifyctl with the NULL-terminated arguments and env (NULL-terminated
 * "NAME=value" list or NULL). */
static struct run run_ctl_env(const char *const *env, const char *first, ...)
{
    const char *argv[32] = {NOTIFYCTL_BIN};
    int n = 1;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *)) {
        ck_assert_int_lt(n, 31);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    struct run r = {0};
    r.status = h_run(argv, env, RUN_TIMEOUT_MS, &r.out, &r.err);
    ck_assert_ptr_nonnull(r.out);
    ck_assert_ptr_nonnull(r.err);
    return r;
}

#define run_ctl(...) run_ctl_env(NULL, __VA_ARGS__, NULL)

/* A usage error: exit 2, one line on stderr naming `names`, nothing on
 * stdout. */
static void assert_usage_error(struct run *r, const char *names)
{
    ck_assert_msg(r->status == 2, "status %d, stderr: %s", r->status, r->err);
    ck_assert_int_eq(h_count(r->err, "\n"), 1);
    ck_assert_msg(strstr(r->err, names) != NULL, "stderr '%s' does not name '%s'", r->err, names);
    ck_assert_str_eq(r->out, "");
    run_free(r);
}

static json_t *parse_json(const char *text)
{
    json_error_t e;
    json_t *doc = json_loads(text, 0, &e);
    ck_assert_msg(doc != NULL, "not JSON (%s): %s", e.text, text);
    return doc;
}

/* Runs one command on the test's Redis and fails the test on an error. */
#define redis_ok(...)                                                                              \
    do {                                                                                           \
        redisReply *reply_ = h_redis_cmd(&redis, __VA_ARGS__);                                     \
        ck_assert_msg(reply_ && reply_->type != REDIS_REPLY_ERROR, "redis: %s",                    \
                      reply_ ? reply_->str : "connection failed");                                 \
        freeReplyObject(reply_);                                                                   \
    } while (0)

/* ------------------------------------------------------------ presence */

/* Two live connections on two nodes and one expired entry the gateway's
 * node died before removing: only the two live ones count. */
static void write_u42_presence(const char *prefix, long long now)
{
    char key[128];
    snprintf(key, sizeof(key), "%spresence:{u42}", prefix);
    redis_ok("ZADD %s %lld %s %lld %s %lld %s", key, now + 30000, "node-a/c0000000000000000000001",
             now + 20000, "node-b/c0000000000000000000002", now - 5000,
             "node-dead/c0000000000000000000003");
    redis_ok("PEXPIRE %s 30000", key);
}

START_TEST(presence_counts_only_live_members)
{
    long long now = h_wall_ms();
    write_u42_presence("notify:", now);

    struct run r = run_ctl("--redis", redis_url, "presence", "u42", "--json");
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    json_t *doc = parse_json(r.out);
    ck_assert(json_is_array(doc));
    ck_assert_int_eq(json_array_size(doc), 1);
    json_t *acct = json_array_get(doc, 0);
    ck_assert_str_eq(json_string_value(json_object_get(acct, "account")), "u42");
    ck_assert(json_is_true(json_object_get(acct, "online")));
    ck_assert_int_eq(json_integer_value(json_object_get(acct, "live")), 2);
    json_t *conns = json_object_get(acct, "connections");
    ck_assert_int_eq(json_array_size(conns), 2);
    /* Ascending expiry: node-b's entry expires first. */
    json_t *first = json_array_get(conns, 0), *second = json_array_get(conns, 1);
    ck_assert_str_eq(json_string_value(json_object_get(first, "member")),
                     "node-b/c0000000000000000000002");
    ck_assert_str_eq(json_string_value(json_object_get(first, "node")), "node-b");
    ck_assert_str_eq(json_string_value(json_object_get(first, "connection")),
                     "c0000000000000000000002");
    ck_assert_int_eq(json_integer_value(json_object_get(first, "expires_ms")), now + 20000);
    ck_assert_str_eq(json_string_value(json_object_get(second, "node")), "node-a");
    ck_assert_int_eq(json_integer_value(json_object_get(second, "expires_ms")), now + 30000);
    json_decref(doc);
    run_free(&r);

    r = run_ctl("--redis", redis_url, "presence", "u42");
    ck_assert_int_eq(r.status, 0);
    ck_assert_msg(strncmp(r.out, "account: u42\nonline: yes\nlive: 2\n", 33) == 0, "got: %s",
                  r.out);
    ck_assert_ptr_nonnull(strstr(r.out, "connection: node-b/c0000000000000000000002 expires "));
    ck_assert_ptr_nonnull(strstr(r.out, "connection: node-a/c0000000000000000000001 expires "));
    ck_assert_ptr_null(strstr(r.out, "node-dead"));
    ck_assert_int_eq(h_count(r.out, "\n"), 5);
    ck_assert_str_eq(r.err, "");
    run_free(&r);
}
END_TEST

START_TEST(presence_offline_account)
{
    long long now = h_wall_ms();
    write_u42_presence("notify:", now);

    /* Several accounts: one block each, separated by a blank line. */
    struct run r = run_ctl("--redis", redis_url, "presence", "u43", "u42");
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    ck_assert_msg(strncmp(r.out, "account: u43\nonline: no\nlive: 0\n\naccount: u42\n", 46) == 0,
                  "got: %s", r.out);
    run_free(&r);

    r = run_ctl("--redis", redis_url, "--json", "presence", "u43");
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.out, "[{\"account\":\"u43\",\"online\":false,\"live\":0,"
                            "\"connections\":[]}]\n");
    run_free(&r);
}
END_TEST

/* The key outlives its last entry by up to --presence-ttl: online (EXISTS)
 * but no live connection. notifyctl reports both facts as Redis has them. */
START_TEST(presence_only_expired_members)
{
    redis_ok("ZADD notify:presence:{u44} %lld node-a/x", h_wall_ms() - 1000);
    struct run r = run_ctl("--redis", redis_url, "presence", "u44");
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.out, "account: u44\nonline: yes\nlive: 0\n");
    run_free(&r);
}
END_TEST

START_TEST(presence_prefix_flag_and_env)
{
    write_u42_presence("other:", h_wall_ms());
    struct run r = run_ctl("--redis", redis_url, "--redis-prefix", "other:", "presence", "u42");
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "live: 2\n"));
    run_free(&r);

    char env_redis[160];
    snprintf(env_redis, sizeof(env_redis), "NOTIFY_REDIS=%s", redis_url);
    const char *env[] = {env_redis, "NOTIFY_REDIS_PREFIX=other:", NULL};
    r = run_ctl_env(env, "presence", "u42", NULL);
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "live: 2\n"));
    run_free(&r);

    /* The flag wins over the environment. */
    r = run_ctl_env(env, "--redis-prefix", "notify:", "presence", "u42", NULL);
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "live: 0\n"));
    run_free(&r);
}
END_TEST

/* AUTH with an ACL user and SELECT of the URL's database. */
START_TEST(presence_auth_user_and_db)
{
    redis_ok("ACL SETUSER alice on >s3cret ~* &* +@all");
    char url[160];
    snprintf(url, sizeof(url), "redis://alice:s3cret@127.0.0.1:%d/3", redis.port);

    redisContext *c = redisConnect("127.0.0.1", redis.port);
    ck_assert(c && !c->err);
    redisReply *rep = redisCommand(c, "SELECT 3");
    freeReplyObject(rep);
    rep = redisCommand(c, "ZADD notify:presence:{u7} %lld node-a/c1", h_wall_ms() + 30000);
    ck_assert_int_eq(rep->integer, 1);
    freeReplyObject(rep);
    redisFree(c);

    struct run r = run_ctl("--redis", url, "presence", "u7");
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "live: 1\n"));
    run_free(&r);

    /* Database 0 has no such entry. */
    snprintf(url, sizeof(url), "redis://alice:s3cret@127.0.0.1:%d/0", redis.port);
    r = run_ctl("--redis", url, "presence", "u7");
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "live: 0\n"));
    run_free(&r);

    /* A wrong password is a Redis error: exit 1 naming host:port and AUTH. */
    snprintf(url, sizeof(url), "redis://alice:wrong@127.0.0.1:%d/0", redis.port);
    r = run_ctl("--redis", url, "presence", "u7");
    ck_assert_int_eq(r.status, 1);
    char where[64];
    snprintf(where, sizeof(where), "127.0.0.1:%d", redis.port);
    ck_assert_ptr_nonnull(strstr(r.err, where));
    ck_assert_ptr_nonnull(strstr(r.err, "AUTH"));
    ck_assert_int_eq(h_count(r.err, "\n"), 1);
    run_free(&r);
}
END_TEST

/* ---------------------------------------------------------------- nodes */

START_TEST(nodes_lists_live_nodes)
{
    long long now = h_wall_ms();
    redis_ok("ZADD notify:nodes %lld node-a %lld node-b %lld node-dead", now + 30000, now + 20000,
             now - 1000);
    redis_ok("HSET notify:node:node-a addr 10.0.0.1:8080 started_at 1700000000000 connections 12 "
             "version 0.1.0");
    redis_ok("HSET notify:node:node-dead addr 10.0.0.9:8080 started_at 1 connections 3 version x");
    /* node-b has no hash (it expired between the two reads, say). */

    struct run r = run_ctl("--redis", redis_url, "nodes", "--json");
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    char want[512];
    snprintf(want, sizeof(want),
             "[{\"node\":\"node-b\",\"expires_ms\":%lld,\"addr\":null,\"started_at\":null,"
             "\"connections\":null,\"version\":null},"
             "{\"node\":\"node-a\",\"expires_ms\":%lld,\"addr\":\"10.0.0.1:8080\","
             "\"started_at\":\"1700000000000\",\"connections\":12,\"version\":\"0.1.0\"}]\n",
             now + 20000, now + 30000);
    ck_assert_str_eq(r.out, want);
    run_free(&r);

    r = run_ctl("--redis", redis_url, "nodes");
    ck_assert_int_eq(r.status, 0);
    ck_assert_int_eq(h_count(r.out, "\n"), 3);
    ck_assert_msg(strncmp(r.out,
                          "NODE    ADDR           STARTED_AT     CONNECTIONS  VERSION  "
                          "EXPIRES_IN\n",
                          70) == 0,
                  "got: %s", r.out);
    ck_assert_ptr_nonnull(strstr(r.out, "\nnode-b  -              -              -            -"));
    ck_assert_ptr_nonnull(
        strstr(r.out, "\nnode-a  10.0.0.1:8080  1700000000000  12           0.1.0    "));
    ck_assert_ptr_null(strstr(r.out, "node-dead"));
    run_free(&r);
}
END_TEST

START_TEST(nodes_none_live)
{
    struct run r = run_ctl("--redis", redis_url, "nodes");
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.out, "no live nodes\n");
    run_free(&r);
    r = run_ctl("--redis", redis_url, "nodes", "--json");
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.out, "[]\n");
    run_free(&r);
}
END_TEST

/* A string field of a hash as a number, -1 when absent. */
static long long hget_ll(const char *key, const char *field)
{
    redisReply *rep = h_redis_cmd(&redis, "HGET %s %s", key, field);
    ck_assert_ptr_nonnull(rep);
    long long v = rep->type == REDIS_REPLY_STRING ? atoll(rep->str) : -1;
    freeReplyObject(rep);
    return v;
}

/* A node killed with SIGKILL leaves its entry in notify:nodes until it
 * expires (ttl after its last refresh) or a live node prunes it; nodes
 * must stop listing it once it is more than half a refresh period (ttl/3)
 * late, while the live node goes on being listed. */
START_TEST(nodes_omits_node_killed_9)
{
    struct h_gw live, dead;
    ck_assert_int_eq(h_gw_startl(&live, &redis, "--auth", "none", "--node-id", "live-node",
                                 "--presence-ttl", "9", (const char *)NULL),
                     0);
    ck_assert_int_eq(h_gw_startl(&dead, &redis, "--auth", "none", "--node-id", "dead-node",
                                 "--presence-ttl", "9", (const char *)NULL),
                     0);
    long long deadline = h_mono_ms() + 5000, refreshed = -1;
    while ((refreshed = hget_ll("notify:node:dead-node", "refreshed_at")) < 0 &&
           h_mono_ms() < deadline)
        h_sleep_ms(50);
    ck_assert_msg(refreshed > 0, "dead-node never wrote refreshed_at");
    struct run r = run_ctl("--redis", redis_url, "nodes");
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "\ndead-node "));
    ck_assert_ptr_nonnull(strstr(r.out, "\nlive-node "));
    run_free(&r);

    h_gw_kill(&dead);
    /* Its last refresh, and the expiry that refresh wrote. */
    refreshed = hget_ll("notify:node:dead-node", "refreshed_at");
    redisReply *rep = h_redis_cmd(&redis, "ZSCORE notify:nodes dead-node");
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
    long long expires = atoll(rep->str);
    freeReplyObject(rep);
    ck_assert_int_eq(expires - refreshed, 9000);
    /* Half a period (1.5 s) late, well before the entry expires. */
    long long wait = refreshed + 3000 + 1500 + 300 - h_wall_ms();
    if (wait > 0)
        h_sleep_ms((int)wait);
    ck_assert_msg(h_wall_ms() < expires - 1000, "too late to tell: the entry expires anyway");

    r = run_ctl("--redis", redis_url, "nodes");
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    ck_assert_msg(!strstr(r.out, "dead-node"), "a dead node listed:\n%s", r.out);
    ck_assert_msg(strstr(r.out, "\nlive-node "), "the live node not listed:\n%s", r.out);
    run_free(&r);
    r = run_ctl("--redis", redis_url, "nodes", "--json");
    ck_assert_int_eq(r.status, 0);
    json_t *doc = parse_json(r.out);
    ck_assert_int_eq(json_array_size(doc), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(doc, 0), "node")),
                     "live-node");
    json_decref(doc);
    run_free(&r);
    ck_assert_int_eq(h_gw_stop(&live, 10000), 0);
}
END_TEST

/* -------------------------------------------------------------- publish */

/* A subscriber on its own connection, subscribed before notifyctl runs;
 * the published message waits in its socket until read. */
static redisContext *subscribe(const char *channel)
{
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    ck_assert(c && !c->err);
    struct timeval tv = {5, 0};
    redisSetTimeout(c, tv);
    redisReply *r = redisCommand(c, "SUBSCRIBE %s", channel);
    ck_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 3);
    freeReplyObject(r);
    return c;
}

/* Reads the next pub/sub message and returns its payload (malloc'd). */
static char *next_message(redisContext *c, const char *channel)
{
    redisReply *r = NULL;
    ck_assert_int_eq(redisGetReply(c, (void **)&r), REDIS_OK);
    ck_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 3);
    ck_assert_str_eq(r->element[0]->str, "message");
    ck_assert_str_eq(r->element[1]->str, channel);
    char *payload = strdup(r->element[2]->str);
    freeReplyObject(r);
    return payload;
}

START_TEST(publish_reaches_account_subscriber)
{
    redisContext *sub = subscribe("notify:acct:{u42}");
    struct run r = run_ctl("--redis", redis_url, "publish", "u42", "--type", "chat", "--body",
                           "hi \"there\" \xc3\xa9", "--meta", "{\"k\":1}");
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    ck_assert_str_eq(r.out, "1\n");
    run_free(&r);

    char *payload = next_message(sub, "notify:acct:{u42}");
    ck_assert_str_eq(payload, "{\"type\":\"chat\",\"content\":{\"body\":\"hi \\\"there\\\" "
                              "\xc3\xa9\",\"meta_data\":\"{\\\"k\\\":1}\"}}");
    free(payload);
    redisFree(sub);

    /* Nobody listens to u43: PUBLISH reports 0 receivers, still success. */
    r = run_ctl("--redis", redis_url, "publish", "u43", "--type=ping");
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.out, "0\n");
    run_free(&r);
}
END_TEST

START_TEST(publish_broadcast)
{
    redisContext *sub = subscribe("notify:broadcast");
    struct run r =
        run_ctl("--redis", redis_url, "publish", "--broadcast", "--type", "maintenance", "--json");
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    ck_assert_str_eq(r.out, "{\"channel\":\"notify:broadcast\",\"receivers\":1}\n");
    run_free(&r);
    char *payload = next_message(sub, "notify:broadcast");
    ck_assert_str_eq(payload,
                     "{\"type\":\"maintenance\",\"content\":{\"body\":\"\",\"meta_data\":\"\"}}");
    free(payload);
    redisFree(sub);
}
END_TEST

/* ------------------------------------------------------ publish --history */

static redisContext *connect_port(int port); /* below, with the cluster helpers */

/* The notify library is the gateway's (gateway/lua/notify.lua, loaded with
 * the gateway's flags): a gateway started on a Redis loads it there. */
static void wait_notify_library(int port)
{
    long long deadline = h_mono_ms() + 10000;
    for (;;) {
        redisContext *c = redisConnect("127.0.0.1", port);
        redisReply *r = c && !c->err ? redisCommand(c, "FUNCTION LIST LIBRARYNAME notify") : NULL;
        int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0;
        freeReplyObject(r);
        redisFree(c);
        if (ok)
            return;
        ck_assert_msg(h_mono_ms() < deadline, "127.0.0.1:%d: notify library never loaded", port);
        h_sleep_ms(50);
    }
}

/* 1 if id looks like a stream id <ms>-<seq>. */
static int is_stream_id(const char *id)
{
    const char *p = id;
    if (*p < '0' || *p > '9')
        return 0;
    while (*p >= '0' && *p <= '9')
        p++;
    if (*p++ != '-' || *p < '0' || *p > '9')
        return 0;
    while (*p >= '0' && *p <= '9')
        p++;
    return *p == '\0';
}

/* The stream holds exactly one entry, id, whose payload is want. */
static void assert_stream_entry(redisContext *c, const char *key, const char *id, const char *want)
{
    redisReply *r = redisCommand(c, "XRANGE %s - +", key);
    ck_assert_msg(r && r->type == REDIS_REPLY_ARRAY, "XRANGE %s failed", key);
    ck_assert_msg(r->elements == 1, "XRANGE %s: %zu entries, want 1", key, r->elements);
    redisReply *e = r->element[0];
    ck_assert_str_eq(e->element[0]->str, id);
    ck_assert_int_eq(e->element[1]->elements, 2);
    ck_assert_str_eq(e->element[1]->element[0]->str, "m");
    ck_assert_str_eq(e->element[1]->element[1]->str, want);
    freeReplyObject(r);
}

START_TEST(publish_history_prints_id)
{
    /* Without the library (no gateway ever ran here) the FCALL fails. */
    struct run r = run_ctl("--redis", redis_url, "publish", "u42", "--history", "--type", "t");
    ck_assert_msg(r.status == 1, "status %d: %s", r.status, r.err);
    ck_assert_int_eq(h_count(r.err, "\n"), 1);
    ck_assert_msg(strstr(r.err, "notify_publish") && strstr(r.err, "notify:stream:{u42}"),
                  "stderr: %s", r.err);
    ck_assert_str_eq(r.out, "");
    run_free(&r);

    struct h_gw gw;
    ck_assert_int_eq(h_gw_startl(&gw, &redis, "--auth", "none", (const char *)NULL), 0);
    wait_notify_library(redis.port);
    struct ws c;
    ck_assert_int_eq(ws_connect(&c, gw.port, "/ws?user_id=u42", NULL, 5000), 101);
    char *reg = ws_recv_text(&c, 5000); /* sent once the channel is subscribed */
    ck_assert_msg(reg && strstr(reg, "\"register\""), "no register reply: %s", reg);
    free(reg);

    redisContext *sub = subscribe("notify:acct:{u42}");
    r = run_ctl("--redis", redis_url, "publish", "u42", "--history", "--type", "payment", "--body",
                "paid \xc3\xa9", "--meta", "{\"order\":7}");
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    ck_assert_int_eq(h_count(r.out, "\n"), 1);
    char id[64];
    snprintf(id, sizeof(id), "%.*s", (int)strcspn(r.out, "\n"), r.out);
    ck_assert_msg(is_stream_id(id), "not an id: '%s'", r.out);
    ck_assert_str_eq(r.err, "");
    run_free(&r);

    const char *env = "{\"type\":\"payment\",\"content\":{\"body\":\"paid \xc3\xa9\","
                      "\"meta_data\":\"{\\\"order\\\":7}\"}}";
    redisContext *rc = connect_port(redis.port);
    assert_stream_entry(rc, "notify:stream:{u42}", id, env);
    /* Published on the account's channel with the id first, and the
     * gateway's client got exactly that. */
    char want[512];
    snprintf(want, sizeof(want), "{\"id\":\"%s\",%s", id, env + 1);
    char *payload = next_message(sub, "notify:acct:{u42}");
    ck_assert_str_eq(payload, want);
    free(payload);
    redisFree(sub);
    char *text = ws_recv_text(&c, 5000);
    ck_assert_msg(text != NULL, "the client got nothing");
    ck_assert_str_eq(text, want);
    free(text);
    ws_close(&c, 1000);

    /* --json, and a second id after the first. */
    r = run_ctl("--redis", redis_url, "--json", "publish", "u43", "--history", "--type=t");
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    json_t *doc = parse_json(r.out);
    ck_assert_int_eq(json_object_size(doc), 2);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "account")), "u43");
    const char *id2 = json_string_value(json_object_get(doc, "id"));
    ck_assert_msg(id2 && is_stream_id(id2), "json: %s", r.out);
    assert_stream_entry(rc, "notify:stream:{u43}", id2,
                        "{\"type\":\"t\",\"content\":{\"body\":\"\",\"meta_data\":\"\"}}");
    json_decref(doc);
    run_free(&r);

    /* Another prefix: the stream key (and channel) follow it. */
    r = run_ctl("--redis", redis_url, "--redis-prefix", "other:", "publish", "u44", "--history",
                "--type", "t", "--body", "b");
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    snprintf(id, sizeof(id), "%.*s", (int)strcspn(r.out, "\n"), r.out);
    assert_stream_entry(rc, "other:stream:{u44}", id,
                        "{\"type\":\"t\",\"content\":{\"body\":\"b\",\"meta_data\":\"\"}}");
    run_free(&r);
    redisFree(rc);
    ck_assert_int_eq(h_gw_stop(&gw, 10000), 0);
}
END_TEST

/* --------------------------------------------------------------- errors */

START_TEST(redis_unreachable_exits_1)
{
    int port = h_free_port();
    ck_assert_int_gt(port, 0);
    char url[64], where[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", port);
    snprintf(where, sizeof(where), "127.0.0.1:%d", port);
    const char *cmds[][4] = {
        {"nodes", NULL}, {"presence", "u1", NULL}, {"publish", "u1", "--type", "t"}};
    for (size_t i = 0; i < 3; i++) {
        struct run r = run_ctl("--redis", url, cmds[i][0], cmds[i][1], cmds[i][2], cmds[i][3]);
        ck_assert_msg(r.status == 1, "%s: status %d", cmds[i][0], r.status);
        ck_assert_int_eq(h_count(r.err, "\n"), 1);
        ck_assert_msg(strstr(r.err, where) && strstr(r.err, "refused"), "stderr: %s", r.err);
        ck_assert_str_eq(r.out, "");
        run_free(&r);
    }
}
END_TEST

START_TEST(redis_error_reply_exits_1)
{
    redis_ok("SET notify:presence:{u1} not-a-zset");
    struct run r = run_ctl("--redis", redis_url, "presence", "u1");
    ck_assert_int_eq(r.status, 1);
    ck_assert_int_eq(h_count(r.err, "\n"), 1);
    ck_assert_msg(strstr(r.err, "WRONGTYPE") && strstr(r.err, "notify:presence:{u1}"), "stderr: %s",
                  r.err);
    run_free(&r);
}
END_TEST

START_TEST(usage_errors_exit_2)
{
    /* No Redis runs here: usage is checked before connecting. */
    struct run r = run_ctl("--bogus", "nodes");
    assert_usage_error(&r, "--bogus");
    r = run_ctl("presence", "bad id");
    assert_usage_error(&r, "bad id");
    r = run_ctl("presence", "u1", "a/b");
    assert_usage_error(&r, "a/b");
    r = run_ctl("publish", "u1", "--body", "x");
    assert_usage_error(&r, "--type");
    r = run_ctl("publish", "u1", "--type");
    assert_usage_error(&r, "--type");
    r = run_ctl("publish", "--type", "t");
    assert_usage_error(&r, "ACCOUNT");
    r = run_ctl("publish", "--broadcast", "u1", "--type", "t");
    assert_usage_error(&r, "--broadcast");
    r = run_ctl("publish", "--broadcast", "--history", "--type", "t");
    assert_usage_error(&r, "--history");
    r = run_ctl("publish", "--history", "--broadcast", "--type", "t", "--json");
    assert_usage_error(&r, "--history");
    r = run_ctl("presence", "u1", "--history");
    assert_usage_error(&r, "--history");
    r = run_ctl("publish", "u1", "--history=yes", "--type", "t");
    assert_usage_error(&r, "--history");
    r = run_ctl("presence", "u1", "--type", "t");
    assert_usage_error(&r, "--type");
    r = run_ctl("presence");
    assert_usage_error(&r, "ACCOUNT");
    r = run_ctl("frobnicate");
    assert_usage_error(&r, "frobnicate");
    r = run_ctl("--json");
    assert_usage_error(&r, "command");
    r = run_ctl("--redis", "http://127.0.0.1:6379", "nodes");
    assert_usage_error(&r, "--redis");
    r = run_ctl("--redis", "redis://127.0.0.1:0/0", "nodes");
    assert_usage_error(&r, "--redis");
    r = run_ctl("--redis-prefix", "a{b", "nodes");
    assert_usage_error(&r, "--redis-prefix");

    const char *env_bad[] = {"NOTIFY_REDIS=nope", NULL};
    r = run_ctl_env(env_bad, "nodes", NULL);
    assert_usage_error(&r, "NOTIFY_REDIS");
    const char *env_both[] = {"NOTIFY_REDIS_CLUSTER=127.0.0.1:7000", NULL};
    r = run_ctl_env(env_both, "--redis", "redis://127.0.0.1:7001", "nodes", NULL);
    assert_usage_error(&r, "--redis");
}
END_TEST

START_TEST(help_exits_0)
{
    struct run r = run_ctl("--help");
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "usage: notifyctl"));
    ck_assert_ptr_nonnull(strstr(r.out, "--redis-prefix"));
    ck_assert_ptr_nonnull(strstr(r.out, "redis://127.0.0.1:6379/0"));
    run_free(&r);
}
END_TEST

/* -------------------------------------------------------------- cluster */

#define CLUSTER_NODES 3

static struct c_cluster cluster;

/* cluster.node[i]'s port. */
#define cluster_port(i) (cluster.node[i].port)

/* c_connect, asserting it connected. */
static redisContext *connect_port(int port)
{
    redisContext *c = c_connect(port);
    ck_assert_msg(c != NULL, "cannot connect to 127.0.0.1:%d", port);
    return c;
}

/* Three primaries, no replicas: the smallest cluster redis-cli creates. */
static void start_cluster(void)
{
    ck_assert_int_eq(c_cluster_start_shape(&cluster, CLUSTER_NODES, 0, 30000), 0);
}

static void stop_cluster(void)
{
    c_cluster_stop(&cluster);
}

/* Runs a key command on whichever primary owns the key (the others answer
 * MOVED) and returns that primary's port. */
static int cluster_cmd(const char *cmd)
{
    for (int i = 0; i < CLUSTER_NODES; i++) {
        redisContext *c = connect_port(cluster_port(i));
        redisReply *r = redisCommand(c, cmd);
        ck_assert_ptr_nonnull(r);
        int moved = r->type == REDIS_REPLY_ERROR && strncmp(r->str, "MOVED", 5) == 0;
        ck_assert_msg(moved || r->type != REDIS_REPLY_ERROR, "%s: %s", cmd, r->str);
        freeReplyObject(r);
        redisFree(c);
        if (!moved)
            return cluster_port(i);
    }
    ck_abort_msg("no primary accepted '%s'", cmd);
    return -1;
}

/* Presence, nodes and publish follow MOVED from one seed to the owners of
 * the keys; publish uses SPUBLISH (README.md "Redis Cluster"). */
START_TEST(cluster_presence_nodes_publish)
{
    long long now = h_wall_ms();
    char cmd[256];
    const char *accounts[] = {"u1", "u2", "u3", "u42"}; /* slots on all three shards */
    for (int i = 0; i < 4; i++) {
        snprintf(cmd, sizeof(cmd), "ZADD notify:presence:{%s} %lld node-a/c-%s %lld node-a/old",
                 accounts[i], now + 30000, accounts[i], now - 1000);
        cluster_cmd(cmd);
    }
    snprintf(cmd, sizeof(cmd), "ZADD notify:nodes %lld node-a %lld node-b", now + 30000,
             now + 20000);
    cluster_cmd(cmd);
    cluster_cmd("HSET notify:node:node-a addr 10.0.0.1:8080 connections 4 version 0.1.0");
    cluster_cmd("HSET notify:node:node-b addr 10.0.0.2:8080 connections 5 version 0.1.0");

    char seeds[128];
    snprintf(seeds, sizeof(seeds), "127.0.0.1:%d,redis://127.0.0.1:%d", cluster_port(0),
             cluster_port(1));
    struct run r = run_ctl("--redis-cluster", seeds, "presence", "--json", "u1", "u2", "u3", "u42");
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    json_t *doc = parse_json(r.out);
    ck_assert_int_eq(json_array_size(doc), 4);
    for (int i = 0; i < 4; i++) {
        json_t *a = json_array_get(doc, (size_t)i);
        ck_assert_str_eq(json_string_value(json_object_get(a, "account")), accounts[i]);
        ck_assert_int_eq(json_integer_value(json_object_get(a, "live")), 1);
    }
    json_decref(doc);
    run_free(&r);

    r = run_ctl("--redis-cluster", seeds, "nodes", "--json");
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "\"node\":\"node-b\",\"expires_ms\""));
    ck_assert_ptr_nonnull(strstr(r.out, "\"addr\":\"10.0.0.1:8080\""));
    ck_assert_ptr_nonnull(strstr(r.out, "\"connections\":5"));
    run_free(&r);

    /* A sharded subscriber on the primary that owns u3's channel. */
    int owner = cluster_cmd("SPUBLISH notify:acct:{u3} probe");
    redisContext *sub = connect_port(owner);
    redisReply *rep = redisCommand(sub, "SSUBSCRIBE notify:acct:{u3}");
    ck_assert(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3);
    freeReplyObject(rep);
    /* The seed is a primary that does not own the slot, so notifyctl must
     * follow MOVED to reach the subscriber. */
    int other = cluster_port(0) == owner ? cluster_port(1) : cluster_port(0);
    snprintf(seeds, sizeof(seeds), "127.0.0.1:%d", other);
    r = run_ctl("--redis-cluster", seeds, "publish", "u3", "--type", "t", "--body", "b");
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    ck_assert_str_eq(r.out, "1\n");
    run_free(&r);
    ck_assert_int_eq(redisGetReply(sub, (void **)&rep), REDIS_OK);
    ck_assert(rep->type == REDIS_REPLY_ARRAY && rep->elements == 3);
    ck_assert_str_eq(rep->element[0]->str, "smessage");
    ck_assert_str_eq(rep->element[2]->str,
                     "{\"type\":\"t\",\"content\":{\"body\":\"b\",\"meta_data\":\"\"}}");
    freeReplyObject(rep);
    redisFree(sub);

    /* A dead seed is skipped when another answers; none answering is exit 1. */
    int dead = h_free_port();
    snprintf(seeds, sizeof(seeds), "127.0.0.1:%d,127.0.0.1:%d", dead, cluster_port(2));
    r = run_ctl("--redis-cluster", seeds, "presence", "u42");
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    ck_assert_str_eq(r.err, "");
    run_free(&r);
    snprintf(seeds, sizeof(seeds), "127.0.0.1:%d", dead);
    r = run_ctl("--redis-cluster", seeds, "nodes");
    ck_assert_int_eq(r.status, 1);
    ck_assert_int_eq(h_count(r.err, "\n"), 1);
    run_free(&r);
}
END_TEST

/* The gateway's library on every primary (no gateway speaks cluster here:
 * it is loaded on a single Redis by a gateway and copied with FUNCTION
 * DUMP / RESTORE). */
static void load_library_on_cluster(void)
{
    struct h_redis one;
    struct h_gw gw;
    ck_assert_int_eq(h_redis_start(&one), 0);
    ck_assert_int_eq(h_gw_startl(&gw, &one, "--auth", "none", (const char *)NULL), 0);
    wait_notify_library(one.port);
    redisReply *dump = h_redis_cmd(&one, "FUNCTION DUMP");
    ck_assert(dump && dump->type == REDIS_REPLY_STRING);
    h_gw_stop(&gw, 10000);
    h_redis_stop(&one);
    for (int i = 0; i < CLUSTER_NODES; i++) {
        redisContext *c = connect_port(cluster_port(i));
        redisReply *r = redisCommand(c, "FUNCTION RESTORE %b", dump->str, dump->len);
        ck_assert_msg(r && r->type == REDIS_REPLY_STATUS, "FUNCTION RESTORE: %s",
                      r ? r->str : "I/O error");
        freeReplyObject(r);
        redisFree(c);
    }
    freeReplyObject(dump);
}

/* --history in cluster mode: the FCALL goes to the primary owning the
 * stream key's slot, also from a seed that does not own it. */
START_TEST(cluster_publish_history)
{
    load_library_on_cluster();
    const char *accounts[] = {"u1", "u2", "u3", "u42"}; /* slots on all three shards */
    for (int i = 0; i < 4; i++) {
        char key[64], cmd[96];
        snprintf(key, sizeof(key), "notify:stream:{%s}", accounts[i]);
        snprintf(cmd, sizeof(cmd), "EXISTS %s", key);
        int owner = cluster_cmd(cmd);
        int other = cluster_port(0) == owner ? cluster_port(1) : cluster_port(0);
        char seeds[64];
        snprintf(seeds, sizeof(seeds), "127.0.0.1:%d", other);
        struct run r = run_ctl("--redis-cluster", seeds, "publish", accounts[i], "--history",
                               "--type", "t", "--body", accounts[i], "--json");
        ck_assert_msg(r.status == 0, "%s: status %d: %s", accounts[i], r.status, r.err);
        json_t *doc = parse_json(r.out);
        const char *id = json_string_value(json_object_get(doc, "id"));
        ck_assert_msg(id && is_stream_id(id), "json: %s", r.out);
        ck_assert_str_eq(json_string_value(json_object_get(doc, "account")), accounts[i]);
        char want[128];
        snprintf(want, sizeof(want),
                 "{\"type\":\"t\",\"content\":{\"body\":\"%s\",\"meta_data\":\"\"}}", accounts[i]);
        redisContext *c = connect_port(owner);
        assert_stream_entry(c, key, id, want);
        redisFree(c);
        json_decref(doc);
        run_free(&r);
    }
}
END_TEST

static Suite *notifyctl_suite(void)
{
    Suite *s = suite_create("notifyctl");
    TCase *with_redis = h_tcase(s, "with_redis", 30, start_redis, stop_redis);
    tcase_add_test(with_redis, presence_counts_only_live_members);
    tcase_add_test(with_redis, presence_offline_account);
    tcase_add_test(with_redis, presence_only_expired_members);
    tcase_add_test(with_redis, presence_prefix_flag_and_env);
    tcase_add_test(with_redis, presence_auth_user_and_db);
    tcase_add_test(with_redis, nodes_lists_live_nodes);
    tcase_add_test(with_redis, nodes_none_live);
    tcase_add_test(with_redis, nodes_omits_node_killed_9);
    tcase_add_test(with_redis, publish_reaches_account_subscriber);
    tcase_add_test(with_redis, publish_broadcast);
    tcase_add_test(with_redis, publish_history_prints_id);
    tcase_add_test(with_redis, redis_error_reply_exits_1);

    TCase *without_redis = h_tcase(s, "without_redis", 30, NULL, NULL);
    tcase_add_test(without_redis, redis_unreachable_exits_1);
    tcase_add_test(without_redis, usage_errors_exit_2);
    tcase_add_test(without_redis, help_exits_0);

    TCase *cluster = h_tcase(s, "cluster", 60, start_cluster, stop_cluster);
    tcase_add_test(cluster, cluster_presence_nodes_publish);
    tcase_add_test(cluster, cluster_publish_history);
    return s;
}

int main(void)
{
    return h_run_suite(notifyctl_suite());
}
