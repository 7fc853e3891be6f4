/* test_presence: presence in Redis with TTLs and the node registry
 * (README.md "Presence"), against a real redis-server and real gateway
 * processes (several nodes sharing one Redis).
 *
 *   notify:presence:{<account>}  zset, member "<node>/<conn>", score expiry ms
 *   notify:nodes                 zset, member node id, score expiry ms
 *   notify:node:<id>             hash addr, started_at, connections, version,
 *                                refreshed_at
 *
 * Every gateway runs with --auth none; each test starts its own Redis. The
 * load test prints what it measured to stderr ("presence-load: ..."). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rnames.h"

#define NODE_A "pres-a"
#define NODE_B "pres-b"

static struct h_redis R;
static struct h_gw GA, GB;

static void setup(void)
{
    memset(&GA, 0, sizeof(GA));
    memset(&GB, 0, sizeof(GB));
    ck_assert_msg(h_redis_start(&R) == 0, "cannot start redis-server");
}

static void teardown(void)
{
    h_proc_cleanup(&GA.proc);
    h_proc_cleanup(&GB.proc);
    h_redis_stop(&R);
}

/* ---- helpers ------------------------------------------------------------ */

/* Starts a gateway node with --auth none, the node id and presence ttl,
 * then any extra flags (NULL-terminated, may be empty). */
#define START_NODE(g, node, ttl, ...)                                                              \
    ck_assert_msg(h_gw_startl((g), &R, "--auth", "none", "--node-id", (node), "--presence-ttl",    \
                              (ttl), "--heartbeat-timeout", "120", "--heartbeat-check", "30",      \
                              ##__VA_ARGS__, (const char *)NULL) == 0,                             \
                  "gateway %s did not start", (node))

static const char *pkey(const char *account)
{
    static char buf[300];
    snprintf(buf, sizeof(buf), "notify:presence:{%s}", account);
    return buf;
}

static const char *nkey(const char *node)
{
    static char buf[300];
    snprintf(buf, sizeof(buf), "notify:node:%s", node);
    return buf;
}

/* Connects to port as account, reads the register reply and returns the
 * connection id (malloc'd). */
static char *connect_as(struct ws *c, int port, const char *account)
{
    char path[300];
    snprintf(path, sizeof(path), "/ws?user_id=%s", account);
    char *id = h_ck_ws_open(c, port, path, 5000);
    ck_assert_msg(id && *id, "no connection id in the register reply of %s", account);
    return id;
}

static long long exists(const char *key)
{
    return h_redis_int(&R, "EXISTS %s", key);
}

/* Polls fn until it returns want, up to timeout_ms; returns ms waited or -1. */
/* h_presence_live of this test's Redis, for wait_eq. */
static long long live_count(const char *account)
{
    return h_presence_live(&R, account);
}

static long long wait_eq(long long (*fn)(const char *), const char *arg, long long want,
                         int timeout_ms)
{
    long long t0 = h_mono_ms(), deadline = t0 + timeout_ms;
    for (;;) {
        if (fn(arg) == want)
            return h_mono_ms() - t0;
        if (h_mono_ms() >= deadline)
            return -1;
        h_sleep_ms(25);
    }
}

/* Score of member in key, or -1 if it is absent. */
static long long zscore(const char *key, const char *member)
{
    redisReply *rep = h_redis_cmd(&R, "ZSCORE %s %s", key, member);
    ck_assert_ptr_nonnull(rep);
    long long v = -1;
    if (rep->type == REDIS_REPLY_STRING)
        v = atoll(rep->str);
    freeReplyObject(rep);
    return v;
}

/* HGET key field as a malloc'd string, NULL if absent. */
static char *hget(const char *key, const char *field)
{
    redisReply *rep = h_redis_cmd(&R, "HGET %s %s", key, field);
    ck_assert_ptr_nonnull(rep);
    char *v = rep->type == REDIS_REPLY_STRING ? strdup(rep->str) : NULL;
    freeReplyObject(rep);
    return v;
}

static char *member(const char *node, const char *conn_id)
{
    char m[RNAME_MAX];
    ck_assert_int_gt(rnames_presence_member(m, sizeof(m), node, conn_id), 0);
    return strdup(m);
}

/* The node registry entries of node are there and well formed. */
static void check_node_registered(const char *node, int port, int ttl_s)
{
    long long now = h_wall_ms();
    long long score = zscore("notify:nodes", node);
    ck_assert_msg(score > now, "notify:nodes %s score %lld not in the future (now %lld)", node,
                  score, now);
    ck_assert_msg(score <= now + ttl_s * 1000LL + 200, "node score %lld beyond now + ttl", score);
    ck_assert_int_eq(exists(nkey(node)), 1);
    char *addr = hget(nkey(node), "addr");
    char *started = hget(nkey(node), "started_at");
    char *conns = hget(nkey(node), "connections");
    char *version = hget(nkey(node), "version");
    ck_assert_msg(addr && started && conns && version,
                  "%s lacks a field: addr=%s started_at=%s connections=%s version=%s", nkey(node),
                  addr ? addr : "(nil)", started ? started : "(nil)", conns ? conns : "(nil)",
                  version ? version : "(nil)");
    char want_addr[64];
    snprintf(want_addr, sizeof(want_addr), "127.0.0.1:%d", port);
    ck_assert_str_eq(addr, want_addr);
    long long st = atoll(started);
    /* Unix seconds or ms: either way not in the future and not ancient */
    ck_assert_msg(st > 0 && (st <= now / 1000 + 1 || (st > 1000000000000LL && st <= now + 1000)),
                  "started_at %s implausible", started);
    ck_assert_msg(version[0] != '\0', "empty version");
    /* The expiry is the last refresh + ttl: readers derive the period.
     * Both read at once (a script), again if a refresh came in between. */
    long long gap = -1;
    for (int tries = 0; tries < 5 && gap != ttl_s * 1000LL; tries++) {
        redisReply *rep = h_redis_cmd(&R, "EVAL %s 2 notify:nodes %s %s",
                                      "return {redis.call('ZSCORE', KEYS[1], ARGV[1]), "
                                      "redis.call('HGET', KEYS[2], 'refreshed_at')}",
                                      nkey(node), node);
        ck_assert_ptr_nonnull(rep);
        ck_assert_msg(rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
                          rep->element[1]->type == REDIS_REPLY_STRING,
                      "%s lacks refreshed_at", nkey(node));
        gap = atoll(rep->element[0]->str) - atoll(rep->element[1]->str);
        freeReplyObject(rep);
        if (gap != ttl_s * 1000LL)
            h_sleep_ms(100);
    }
    ck_assert_int_eq(gap, ttl_s * 1000LL);
    long long pttl = h_redis_int(&R, "PTTL %s", nkey(node));
    ck_assert_msg(pttl > 0 && pttl <= ttl_s * 1000LL, "PTTL %s = %lld (ttl %d s)", nkey(node), pttl,
                  ttl_s);
    free(addr);
    free(started);
    free(conns);
    free(version);
}

/* ---- tests -------------------------------------------------------------- */

/* One account, a connection on each of two nodes: two members, each named
 * after its node and connection, scored in the future; the key's PTTL is
 * within the TTL; it disappears right after the last disconnect. */
START_TEST(two_nodes_members_and_cleanup)
{
    const int ttl = 6;
    START_NODE(&GA, NODE_A, "6");
    START_NODE(&GB, NODE_B, "6");
    struct ws a, b;
    char *ida = connect_as(&a, GA.port, "alice");
    char *idb = connect_as(&b, GB.port, "alice");
    char *ma = member(NODE_A, ida), *mb = member(NODE_B, idb);

    ck_assert_msg(wait_eq(live_count, "alice", 2, 3000) >= 0, "ZCOUNT never reached 2 (%lld)",
                  h_presence_live(&R, "alice"));
    long long now = h_wall_ms();
    long long sa = zscore(pkey("alice"), ma), sb = zscore(pkey("alice"), mb);
    ck_assert_msg(sa > now && sb > now, "scores not in the future: %lld %lld now %lld", sa, sb,
                  now);
    ck_assert_msg(sa <= now + ttl * 1000LL + 200 && sb <= now + ttl * 1000LL + 200,
                  "scores beyond now + ttl: %lld %lld now %lld", sa, sb, now);
    ck_assert_int_eq(h_redis_int(&R, "ZCARD %s", pkey("alice")), 2);
    long long pttl = h_redis_int(&R, "PTTL %s", pkey("alice"));
    ck_assert_msg(pttl > 0 && pttl <= ttl * 1000LL, "PTTL %lld", pttl);
    ck_assert_int_eq(exists(pkey("alice")), 1);

    /* a refresh period later the scores moved forward and PTTL is still
     * within the TTL */
    h_sleep_ms(ttl * 1000 / 3 + 500);
    long long sa2 = zscore(pkey("alice"), ma);
    ck_assert_msg(sa2 > sa, "score of %s not refreshed: %lld then %lld", ma, sa, sa2);
    pttl = h_redis_int(&R, "PTTL %s", pkey("alice"));
    ck_assert_msg(pttl > 0 && pttl <= ttl * 1000LL, "PTTL after refresh %lld", pttl);

    /* one goes: its member goes, the account stays */
    ws_close(&a, 1000);
    ck_assert_msg(wait_eq(live_count, "alice", 1, 3000) >= 0, "ZCOUNT never fell to 1");
    ck_assert_int_eq(zscore(pkey("alice"), ma), -1);
    ck_assert_int_gt(zscore(pkey("alice"), mb), 0);
    ck_assert_int_eq(exists(pkey("alice")), 1);

    /* the last goes: the key is gone shortly, not a TTL later */
    long long t0 = h_mono_ms();
    ws_close(&b, 1000);
    long long waited = wait_eq(exists, pkey("alice"), 0, 2000);
    ck_assert_msg(waited >= 0, "presence key still exists 2 s after the last disconnect");
    fprintf(stderr, "presence: key gone %lld ms after the last disconnect\n", h_mono_ms() - t0);

    /* an abrupt TCP drop counts as a disconnect too */
    struct ws c;
    char *idc = connect_as(&c, GA.port, "carol");
    ck_assert_msg(wait_eq(live_count, "carol", 1, 3000) >= 0, "carol never present");
    ws_drop(&c);
    ck_assert_msg(wait_eq(exists, pkey("carol"), 0, 3000) >= 0,
                  "presence key of carol still there 3 s after a TCP drop");
    free(idc);
    free(ma);
    free(mb);
    free(ida);
    free(idb);
}
END_TEST

/* kill -9 of one node: the account stays online through the other, and the
 * dead node's member stops counting after the TTL; once both nodes are
 * dead the key is gone within the TTL. */
START_TEST(crash_of_one_node)
{
    const int ttl = 3;
    START_NODE(&GA, NODE_A, "3");
    START_NODE(&GB, NODE_B, "3");
    struct ws a, b;
    char *ida = connect_as(&a, GA.port, "bob");
    char *idb = connect_as(&b, GB.port, "bob");
    char *ma = member(NODE_A, ida), *mb = member(NODE_B, idb);
    ck_assert_msg(wait_eq(live_count, "bob", 2, 3000) >= 0, "ZCOUNT never reached 2");

    h_gw_kill(&GA); /* SIGKILL: no cleanup */
    long long killed = h_mono_ms();
    ws_drop(&a);
    /* for TTL + 2 s: EXISTS stays 1 every time we look */
    long long live_one_at = -1;
    int polls = 0;
    while (h_mono_ms() - killed < (ttl + 2) * 1000LL) {
        ck_assert_msg(exists(pkey("bob")) == 1, "bob offline %lld ms after one node died",
                      h_mono_ms() - killed);
        long long n = h_presence_live(&R, "bob");
        ck_assert_msg(n == 1 || n == 2, "ZCOUNT live %lld", n);
        if (n == 1 && live_one_at < 0)
            live_one_at = h_mono_ms() - killed;
        if (n == 2)
            ck_assert_msg(live_one_at < 0, "the dead node's member counts again");
        polls++;
        h_sleep_ms(50);
    }
    ck_assert_msg(live_one_at >= 0, "the dead node's member still counts after TTL + 2 s");
    ck_assert_msg(live_one_at <= ttl * 1000LL + 500, "dead member counted for %lld ms (ttl %d s)",
                  live_one_at, ttl);
    ck_assert_int_eq(h_presence_live(&R, "bob"), 1);
    ck_assert_int_gt(zscore(pkey("bob"), mb), h_wall_ms());
    /* the survivor's refresh prunes the dead member, on one pass in ten
     * (PRUNE_PASSES: until then it only stops counting) */
    long long prune_deadline = killed + 10 * ttl * 1000LL / 3 + 3000;
    while (zscore(pkey("bob"), ma) != -1 && h_mono_ms() < prune_deadline)
        h_sleep_ms(100);
    ck_assert_msg(zscore(pkey("bob"), ma) == -1, "the dead member not pruned %lld ms after",
                  h_mono_ms() - killed);
    ck_assert_int_eq(h_presence_members_of(&R, "bob", NODE_A), 0);
    ck_assert_int_eq(h_presence_live(&R, "bob"), 1);
    fprintf(stderr,
            "presence: after kill -9 of one node, ZCOUNT live fell to 1 after %lld ms "
            "(ttl %d s, %d polls, EXISTS 1 throughout)\n",
            live_one_at, ttl, polls);

    /* the dead node left the node registry by expiry */
    ck_assert_int_eq(exists(nkey(NODE_A)), 0);
    long long now = h_wall_ms();
    long long sdead = zscore("notify:nodes", NODE_A);
    ck_assert_msg(sdead < 0 || sdead <= now, "dead node still scored in the future: %lld", sdead);
    ck_assert_int_gt(zscore("notify:nodes", NODE_B), now);

    /* the second node dies too: offline within the TTL */
    h_gw_kill(&GB);
    long long t0 = h_mono_ms();
    ws_drop(&b);
    long long waited = wait_eq(exists, pkey("bob"), 0, ttl * 1000 + 2000);
    ck_assert_msg(waited >= 0, "bob still online %d s after both nodes died", ttl + 2);
    long long gone = h_mono_ms() - t0;
    ck_assert_msg(gone <= ttl * 1000LL + 500, "offline only %lld ms after the last node died",
                  gone);
    ck_assert_int_eq(wait_eq(exists, nkey(NODE_B), 0, 1000) >= 0, 1);
    fprintf(stderr, "presence: both nodes killed: key gone %lld ms after the last (ttl %d s)\n",
            gone, ttl);
    free(ma);
    free(mb);
    free(ida);
    free(idb);
}
END_TEST

/* The node registry: both nodes with future scores and a full hash; the
 * hash's connections follows the node; SIGTERM removes the node's entries
 * and its presence members. */
START_TEST(node_registry_and_sigterm)
{
    const int ttl = 3;
    START_NODE(&GA, NODE_A, "3", "--drain-seconds", "1");
    START_NODE(&GB, NODE_B, "3", "--drain-seconds", "1");
    h_sleep_ms(300);
    check_node_registered(NODE_A, GA.port, ttl);
    check_node_registered(NODE_B, GB.port, ttl);
    ck_assert_int_eq(h_redis_int(&R, "ZCARD notify:nodes"), 2);

    struct ws a1, a2, b1;
    char *ia1 = connect_as(&a1, GA.port, "dave");
    char *ia2 = connect_as(&a2, GA.port, "erin");
    char *ib1 = connect_as(&b1, GB.port, "dave");
    /* connections is refreshed every ttl/3 s */
    long long deadline = h_mono_ms() + ttl * 1000 + 1000;
    char *conns = NULL;
    for (;;) {
        free(conns);
        conns = hget(nkey(NODE_A), "connections");
        if ((conns && !strcmp(conns, "2")) || h_mono_ms() > deadline)
            break;
        h_sleep_ms(100);
    }
    ck_assert_msg(conns && !strcmp(conns, "2"), "%s connections = %s, want 2", nkey(NODE_A),
                  conns ? conns : "(nil)");
    free(conns);
    check_node_registered(NODE_A, GA.port, ttl);
    ck_assert_int_eq(wait_eq(live_count, "dave", 2, 3000) >= 0, 1);
    ck_assert_int_eq(wait_eq(live_count, "erin", 1, 3000) >= 0, 1);

    /* SIGTERM on A with its connections still open */
    ck_assert_int_eq(h_gw_signal(&GA, SIGTERM), 0);
    /* the close code itself (1001) is test_core's business: here only
     * that the node lets go of its connections */
    int c1 = ws_wait_close(&a1, 5000), c2 = ws_wait_close(&a2, 5000);
    ck_assert_msg(c1 != 0 && c2 != 0, "connections not closed 5 s after SIGTERM");
    if (c1 != 1001 || c2 != 1001)
        fprintf(stderr, "presence: note: drain closed with %d and %d (README: 1001)\n", c1, c2);
    ws_close(&a1, 1000);
    ws_close(&a2, 1000);
    int st = h_gw_wait(&GA, 10000);
    ck_assert_msg(st == 0, "gateway A exited with %d after SIGTERM", st);
    /* everything of A is gone at once (it cleaned up before exiting) */
    ck_assert_msg(zscore("notify:nodes", NODE_A) == -1, "%s still in notify:nodes", NODE_A);
    ck_assert_msg(exists(nkey(NODE_A)) == 0, "%s still exists", nkey(NODE_A));
    ck_assert_int_eq(h_presence_members_of(&R, "dave", NODE_A), 0);
    ck_assert_msg(exists(pkey("erin")) == 0, "erin's presence survives its node's shutdown");
    /* B is untouched */
    check_node_registered(NODE_B, GB.port, ttl);
    ck_assert_int_eq(h_presence_live(&R, "dave"), 1);
    ck_assert_int_eq(h_presence_members_of(&R, "dave", NODE_B), 1);

    /* SIGTERM on B with no connection left on it */
    ws_close(&b1, 1000);
    ck_assert_int_eq(wait_eq(exists, pkey("dave"), 0, 2000) >= 0, 1);
    ck_assert_int_eq(h_gw_signal(&GB, SIGTERM), 0);
    st = h_gw_wait(&GB, 10000);
    ck_assert_msg(st == 0, "gateway B exited with %d after SIGTERM", st);
    ck_assert_int_eq(exists("notify:nodes"), 0);
    ck_assert_int_eq(exists(nkey(NODE_B)), 0);
    free(ia1);
    free(ia2);
    free(ib1);
}
END_TEST

/* Redis is lost and comes back empty: the node re-registers itself and
 * every live connection within a few seconds, and the connections stay. */
START_TEST(redis_restart_resync)
{
    const int ttl = 30; /* long: what comes back is the resync, not a refresh */
    START_NODE(&GA, NODE_A, "30");
    enum { N = 5 };
    struct ws c[N];
    char *ids[N];
    const char *accts[N] = {"fay", "fay", "gus", "hal", "hal"};
    for (int i = 0; i < N; i++)
        ids[i] = connect_as(&c[i], GA.port, accts[i]);
    ck_assert_int_eq(wait_eq(live_count, "hal", 2, 3000) >= 0, 1);
    ck_assert_int_eq(wait_eq(live_count, "fay", 2, 3000) >= 0, 1);
    check_node_registered(NODE_A, GA.port, ttl);

    ck_assert_int_eq(h_redis_restart(&R), 0);
    long long t0 = h_mono_ms(), node_back = -1, all_back = -1;
    while (h_mono_ms() - t0 < 10000) {
        if (node_back < 0 && zscore("notify:nodes", NODE_A) > 0 && exists(nkey(NODE_A)) == 1)
            node_back = h_mono_ms() - t0;
        if (all_back < 0 && h_presence_live(&R, "fay") == 2 && h_presence_live(&R, "gus") == 1 &&
            h_presence_live(&R, "hal") == 2)
            all_back = h_mono_ms() - t0;
        if (node_back >= 0 && all_back >= 0)
            break;
        h_sleep_ms(50);
    }
    fprintf(stderr,
            "presence: after a Redis restart, node back in %lld ms, connections back in %lld "
            "ms\n",
            node_back, all_back);
    ck_assert_msg(node_back >= 0, "the node did not re-register within 10 s");
    ck_assert_msg(all_back >= 0, "presence not restored within 10 s: fay %lld gus %lld hal %lld",
                  h_presence_live(&R, "fay"), h_presence_live(&R, "gus"),
                  h_presence_live(&R, "hal"));
    ck_assert_msg(node_back <= 5000 && all_back <= 5000, "re-registration took more than 5 s");
    check_node_registered(NODE_A, GA.port, ttl);
    /* the members are exactly the same connections */
    for (int i = 0; i < N; i++) {
        char *m = member(NODE_A, ids[i]);
        ck_assert_msg(zscore(pkey(accts[i]), m) > h_wall_ms(), "%s missing after resync", m);
        free(m);
    }
    long long pttl = h_redis_int(&R, "PTTL %s", pkey("gus"));
    ck_assert_msg(pttl > 0 && pttl <= ttl * 1000LL, "PTTL after resync %lld", pttl);
    /* the connections were kept and still work */
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(ws_send_text(&c[i], "{\"type\":\"heartbeat\"}"), 0);
        char *t = ws_recv_text(&c[i], 3000);
        /* Redis came back empty: the history catch-up may announce a gap
         * first (section 6); anything else is unexpected */
        while (t && strstr(t, "\"type\":\"gap\"")) {
            fprintf(stderr, "presence: note: connection %d got %s after the Redis restart\n", i, t);
            free(t);
            t = ws_recv_text(&c[i], 3000);
        }
        ck_assert_msg(t && strstr(t, "\"heartbeat\""),
                      "connection %d: no heartbeat reply after the Redis restart: got %s "
                      "(close code %d, eof %d)",
                      i, t ? t : "nothing", c[i].close_code, c[i].eof);
        free(t);
    }
    /* and a disconnect after the resync is applied too */
    ws_close(&c[2], 1000);
    ck_assert_int_eq(wait_eq(exists, pkey("gus"), 0, 2000) >= 0, 1);
    for (int i = 0; i < N; i++) {
        if (i != 2)
            ws_close(&c[i], 1000);
        free(ids[i]);
    }
}
END_TEST

/* Parses "calls=<n>" of cmdstat_<cmd> from INFO commandstats; 0 if absent. */
static long long cmd_calls(const char *info, const char *cmd)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "cmdstat_%s:calls=", cmd);
    const char *p = strstr(info, pat);
    return p ? atoll(p + strlen(pat)) : 0;
}

static double cmd_usec_per_call(const char *info, const char *cmd)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "cmdstat_%s:", cmd);
    const char *p = strstr(info, pat);
    if (!p)
        return 0;
    const char *u = strstr(p, "usec_per_call=");
    return u ? atof(u + strlen("usec_per_call=")) : 0;
}

static char *info_commandstats(void)
{
    redisReply *rep = h_redis_cmd(&R, "INFO commandstats");
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
    char *s = strdup(rep->str);
    freeReplyObject(rep);
    return s;
}

/* Many connections, one per account: connecting costs about one EVAL per
 * 1000 connections; the periodic refresh runs no script at all (a script
 * blocks Redis), only cheap pipelined commands, two per account and
 * period: ZADD, PEXPIREAT, and ZREMRANGEBYSCORE on one period in ten. */
START_TEST(refresh_cost_is_batched)
{
    const int ttl = 3; /* refresh every 1 s */
    const long long period_ms = ttl * 1000 / 3;
    enum { N = 2000, BATCH = 1000 };
    START_NODE(&GA, NODE_A, "3");
    struct ws *c = calloc(N, sizeof(*c));
    ck_assert_ptr_nonnull(c);
    long long t0 = h_mono_ms();
    for (int i = 0; i < N; i++) {
        char acct[32];
        snprintf(acct, sizeof(acct), "load-%d", i);
        free(connect_as(&c[i], GA.port, acct));
    }
    long long connect_ms = h_mono_ms() - t0;
    /* all present (the adds are batched too) */
    long long deadline = h_mono_ms() + 5000;
    long long n_keys = 0;
    for (;;) {
        n_keys = h_redis_int(&R, "DBSIZE");
        if (n_keys >= N + 2 || h_mono_ms() > deadline) /* + nodes, node hash */
            break;
        h_sleep_ms(100);
    }
    ck_assert_msg(n_keys >= N + 2, "only %lld keys for %d connections", n_keys, N);
    ck_assert_int_eq(h_presence_live(&R, "load-0"), 1);
    ck_assert_int_eq(h_presence_live(&R, "load-1999"), 1);

    /* measure a window of several refresh periods with nothing else going on */
    redisReply *rep = h_redis_cmd(&R, "CONFIG RESETSTAT");
    ck_assert_ptr_nonnull(rep);
    freeReplyObject(rep);
    long long w0 = h_mono_ms();
    h_sleep_ms(6 * (int)period_ms + 100);
    char *info = info_commandstats();
    long long window = h_mono_ms() - w0;
    long long evals = cmd_calls(info, "eval");
    long long zadds = cmd_calls(info, "zadd");
    long long prunes = cmd_calls(info, "zremrangebyscore");
    long long pexpireats = cmd_calls(info, "pexpireat");
    long long hsets = cmd_calls(info, "hset");
    double periods = (double)window / (double)period_ms;
    double us_per_conn = cmd_usec_per_call(info, "zadd") +
                         cmd_usec_per_call(info, "zremrangebyscore") +
                         cmd_usec_per_call(info, "pexpireat");
    fprintf(stderr,
            "presence-load: %d connections (%d accounts), connect %lld ms; window %lld ms = "
            "%.1f refresh periods of %lld ms: EVAL %lld; ZADD %lld, ZREMRANGEBYSCORE %lld, "
            "PEXPIREAT %lld (%.0f each per period, %.1f us of Redis per connection), HSET %lld; "
            "connecting: ~%d EVALs of %d\n",
            N, N, connect_ms, window, periods, period_ms, evals, zadds, prunes, pexpireats,
            zadds / periods, us_per_conn, hsets, (N + BATCH - 1) / BATCH, BATCH);
    free(info);
    /* no script while nothing changes: refreshes are plain commands */
    ck_assert_msg(evals == 0, "%lld EVALs while no connection changed", evals);
    /* every connection was refreshed in each period, once: one ZADD and
     * one PEXPIREAT per connection (one account each); pruning in at most
     * one of these six periods */
    ck_assert_msg(zadds >= (long long)(periods - 2) * N, "only %lld ZADDs", zadds);
    ck_assert_msg(zadds <= (long long)(periods + 1) * N, "%lld ZADDs: more than one per period",
                  zadds);
    ck_assert_msg(prunes <= N, "%lld ZREMRANGEBYSCORE in %.1f periods", prunes, periods);
    ck_assert_msg(pexpireats >= (long long)(periods - 2) * N &&
                      pexpireats <= (long long)(periods + 1) * N,
                  "%lld PEXPIREAT in %.1f periods", pexpireats, periods);
    /* and each score stays in the future */
    ck_assert_int_eq(h_presence_live(&R, "load-1000"), 1);

    for (int i = 0; i < N; i++)
        ws_drop(&c[i]);
    free(c);
    /* all go away promptly, in batches as well */
    deadline = h_mono_ms() + 10000;
    while (h_redis_int(&R, "DBSIZE") > 2 && h_mono_ms() < deadline)
        h_sleep_ms(100);
    ck_assert_int_le(h_redis_int(&R, "DBSIZE"), 2);
}
END_TEST

static Suite *presence_suite(void)
{
    Suite *s = suite_create("presence");
    TCase *tc = h_tcase(s, "presence", 120, setup, teardown);
    tcase_add_test(tc, two_nodes_members_and_cleanup);
    tcase_add_test(tc, crash_of_one_node);
    tcase_add_test(tc, node_registry_and_sigterm);
    tcase_add_test(tc, redis_restart_resync);
    TCase *load = h_tcase(s, "load", 180, setup, teardown);
    tcase_add_test(load, refresh_cost_is_batched);
    return s;
}

int main(void)
{
    return h_run_suite(presence_suite());
}
