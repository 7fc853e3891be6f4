/* End-to-end tests of the scale-out topology on loopback, with the real
 * processes: deploy/local-cluster.sh starts redis-server, three gateway
 * nodes and haproxy with deploy/haproxy.cfg's settings; every client here
 * connects through haproxy only (issue 6):
 *
 *   - connections of one account spread over the three nodes all receive
 *     one publish;
 *   - kill -9 of a node: its clients reconnect through haproxy to the other
 *     nodes and keep receiving; presence of an account that was only on the
 *     dead node expires within the presence TTL;
 *   - SIGTERM of a node: haproxy takes it out of the pool, its clients get
 *     1001 and land on the other nodes, and no live message published after
 *     a client reconnected is lost;
 *   - GET /sse through haproxy: each event arrives at once (unbuffered); a
 *     draining node's stream ends with event: close, and its reconnect with
 *     Last-Event-ID lands on another node and gets what it missed, once.
 *
 * Skips (exit 77) when haproxy is not installed. Each test starts its own
 * cluster in its own directory on random ports; Check's fork mode kills
 * whatever a failed test left running (the cluster's processes stay in the
 * test's process group). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define NODES 3
#define PER_ACCOUNT 6 /* connections of the shared account: 2 per node */
#define PRESENCE_TTL 6
#define DRAIN_SECONDS 6
#define MAX_MSGS 64

static const char *haproxy_bin;
static char base_dir[H_PATH_MAX]; /* made by the parent; one cluster dir per test in it */
static int has_drain_delay;       /* the daemon has --drain-delay (see drain test) */

struct cluster {
    char dir[H_PATH_MAX];
    int haproxy_port, stats_port;
    struct h_redis redis; /* only .port is used (the script owns the process) */
    int node_port[NODES];
    pid_t node_pid[NODES];
};

static struct cluster C;
static long long t_start;

/* E2E_TRACE=1: timestamps of the steps on stderr. */
static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace(const char *fmt, ...)
{
    if (!getenv("E2E_TRACE"))
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%6lld ms] ", h_mono_ms() - t_start);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- cluster ------------------------------------------------------------ */

static int script(const char *cmd, char **out)
{
    static char env_dir[H_PATH_MAX + 16], env_port[64], env_gw[H_PATH_MAX + 16],
        env_hp[H_PATH_MAX + 16], env_args[256];
    snprintf(env_dir, sizeof(env_dir), "CLUSTER_DIR=%s", C.dir);
    snprintf(env_port, sizeof(env_port), "CLUSTER_PORT=%d", C.haproxy_port);
    snprintf(env_gw, sizeof(env_gw), "GATEWAY_BIN=%s", GATEWAY_BIN);
    snprintf(env_hp, sizeof(env_hp), "HAPROXY_BIN=%s", haproxy_bin);
    /* clients here answer pings only while being read: a long heartbeat
     * timeout keeps idle test connections open */
    snprintf(env_args, sizeof(env_args),
             "CLUSTER_GATEWAY_ARGS=--auth none --presence-ttl %d --drain-seconds %d "
             "--heartbeat-timeout 300 --log-level debug%s",
             PRESENCE_TTL, DRAIN_SECONDS, has_drain_delay ? " --drain-delay 3" : "");
    const char *env[] = {env_dir, env_port, env_gw, env_hp, env_args, "CLUSTER_STOP_TIMEOUT=15",
                         NULL};
    const char *argv[] = {"/bin/sh", LOCAL_CLUSTER_SH, cmd, NULL};
    char *o = NULL, *e = NULL;
    int st = h_run(argv, env, 120000, &o, &e);
    if (st != 0)
        fprintf(stderr, "local-cluster.sh %s: status %d\n%s%s", cmd, st, o ? o : "", e ? e : "");
    if (out)
        *out = o;
    else
        free(o);
    free(e);
    return st;
}

static int env_int(const char *text, const char *name)
{
    char key[64];
    snprintf(key, sizeof(key), "\n%s=", name);
    const char *p = strstr(text, key);
    return p ? atoi(p + strlen(key)) : -1;
}

static pid_t read_pid(int node)
{
    char path[H_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/node%d.pid", C.dir, node + 1);
    char *s = h_read_file(path);
    pid_t pid = s ? (pid_t)atoi(s) : -1;
    free(s);
    return pid;
}

static void print_dir_logs(const char *dir);

/* Tails of the logs of every cluster a failed test left behind (those
 * still have their cluster.env: "down" removes it). Runs in the parent. */
static void print_logs(void)
{
    char cmd[H_PATH_MAX + 200];
    snprintf(cmd, sizeof(cmd),
             "for f in %s/*/cluster.env; do [ -e \"$f\" ] && dirname \"$f\"; done", base_dir);
    FILE *p = popen(cmd, "r");
    char dir[H_PATH_MAX];
    while (p && fgets(dir, sizeof(dir), p)) {
        dir[strcspn(dir, "\n")] = '\0';
        print_dir_logs(dir);
    }
    if (p)
        pclose(p);
}

static void print_dir_logs(const char *dir)
{
    const char *names[] = {"node1.log", "node2.log", "node3.log", "haproxy.log"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[H_PATH_MAX + 32];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        char *s = h_read_file(path);
        if (!s)
            continue;
        size_t n = strlen(s);
        fprintf(stderr, "---- %s/%s (tail)\n%s\n", dir, names[i], n > 3000 ? s + n - 3000 : s);
        free(s);
    }
}

static void cluster_up(void)
{
    memset(&C, 0, sizeof(C));
    snprintf(C.dir, sizeof(C.dir), "%.200s/cluster.XXXXXX", base_dir);
    ck_assert_msg(mkdtemp(C.dir) != NULL, "no temp dir");
    int st = -1;
    /* the haproxy port is picked here; another process may take it first */
    for (int attempt = 0; attempt < 3 && st != 0; attempt++) {
        C.haproxy_port = h_free_port();
        st = script("up", NULL);
    }
    ck_assert_msg(st == 0, "deploy/local-cluster.sh up failed (status %d)", st);
    char path[H_PATH_MAX + 32], *env;
    snprintf(path, sizeof(path), "%s/cluster.env", C.dir);
    ck_assert_msg((env = h_read_file(path)) != NULL, "no %s", path);
    C.stats_port = env_int(env, "STATS_PORT");
    C.redis.port = env_int(env, "REDIS_PORT");
    const char *np = strstr(env, "NODE_PORTS='");
    ck_assert_msg(np && C.stats_port > 0 && C.redis.port > 0, "bad cluster.env:\n%s", env);
    np += strlen("NODE_PORTS='");
    for (int i = 0; i < NODES; i++) {
        C.node_port[i] = (int)strtol(np, (char **)&np, 10);
        C.node_pid[i] = read_pid(i);
        ck_assert_msg(C.node_port[i] > 0 && C.node_pid[i] > 0, "bad cluster.env / pids:\n%s", env);
    }
    free(env);
}

static void setup(void)
{
    t_start = h_mono_ms();
    cluster_up();
    trace("cluster up");
}

static void teardown(void)
{
    /* reached only when the test passed: Check kills a failed test's group */
    long long t = h_mono_ms();
    script("down", NULL);
    trace("down took %lld ms", h_mono_ms() - t);
}

/* "gwN" status in haproxy's stats CSV ("UP", "DOWN", "UP 1/2", ...) into
 * buf; "" if unknown. */
static void haproxy_status(int node, char *buf, size_t size)
{
    buf[0] = '\0';
    char *body = NULL;
    if (h_http_get(C.stats_port, "/stats;csv", &body) != 200 || !body) {
        free(body);
        return;
    }
    char key[32];
    snprintf(key, sizeof(key), "\ngateways,gw%d,", node + 1);
    const char *p = strstr(body, key);
    if (p) {
        p++;
        for (int f = 0; f < 17 && p; f++) { /* status is the 18th field */
            p = strchr(p, ',');
            if (p)
                p++;
        }
        if (p)
            snprintf(buf, size, "%.*s", (int)strcspn(p, ",\n"), p);
    }
    free(body);
}

/* ---- clients ------------------------------------------------------------ */

struct client {
    struct ws ws;
    char account[32];
    int node;           /* index of the node holding it (from "local-N") */
    int msgs[MAX_MSGS]; /* how often live message k arrived */
    int from;           /* first live message it must get (connected before it) */
};

static json_t *json_obj(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    ck_assert_msg(j && json_is_object(j), "not a JSON object: %s", text);
    return j;
}

/* Connects through haproxy (retrying for a while: right after a node died
 * haproxy may still try it first) and reads the register reply. */
static void client_connect(struct client *c, const char *account, int from)
{
    char path[128];
    snprintf(path, sizeof(path), "/ws?user_id=%s", account);
    snprintf(c->account, sizeof(c->account), "%s", account);
    memset(c->msgs, 0, sizeof(c->msgs));
    c->from = from;
    int st = -1;
    long long deadline = h_mono_ms() + 20000;
    while ((st = ws_connect(&c->ws, C.haproxy_port, path, NULL, 10000)) != 101 &&
           h_mono_ms() < deadline)
        h_sleep_ms(200);
    ck_assert_msg(st == 101, "upgrade through haproxy: status %d", st);
    char *reg = ws_recv_text(&c->ws, 10000);
    ck_assert_msg(reg != NULL, "no register reply");
    json_t *j = json_obj(reg);
    ck_assert_str_eq(json_string_value(json_object_get(j, "type")), "register");
    const char *meta =
        json_string_value(json_object_get(json_object_get(j, "content"), "meta_data"));
    ck_assert_msg(meta != NULL, "register without meta_data: %s", reg);
    json_t *m = json_obj(meta);
    const char *node = json_string_value(json_object_get(m, "node"));
    ck_assert_msg(node && !strncmp(node, "local-", 6), "register names node %s", node);
    c->node = atoi(node + 6) - 1;
    ck_assert_msg(c->node >= 0 && c->node < NODES, "unknown node %s", node);
    json_decref(m);
    json_decref(j);
    free(reg);
}

static void publish(const char *account, int k)
{
    char chan[96], msg[160];
    snprintf(chan, sizeof(chan), "notify:acct:{%s}", account);
    snprintf(msg, sizeof(msg),
             "{\"type\":\"live\",\"content\":{\"body\":\"%d\",\"meta_data\":\"\"}}", k);
    ck_assert_msg(h_redis_publish(&C.redis, chan, msg, strlen(msg)) >= 0, "PUBLISH failed");
}

/* Handles one text frame: counts a "live" message. */
static void client_count(struct client *c, const char *text)
{
    json_t *j = json_obj(text);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (type && !strcmp(type, "live")) {
        int k = atoi(json_string_value(json_object_get(json_object_get(j, "content"), "body")));
        ck_assert_msg(k >= 0 && k < MAX_MSGS, "bad live message %s", text);
        c->msgs[k]++;
    }
    json_decref(j);
}

/* Reads everything that arrives within quiet_ms of silence. */
static void client_drain(struct client *c, int quiet_ms)
{
    char *t;
    while ((t = ws_recv_text(&c->ws, quiet_ms)) != NULL) {
        client_count(c, t);
        free(t);
    }
}

/* Reads until live message k has arrived. */
static void client_wait_msg(struct client *c, int idx, int k, int timeout_ms)
{
    long long deadline = h_mono_ms() + timeout_ms;
    while (!c->msgs[k] && h_mono_ms() < deadline) {
        char *t = ws_recv_text(&c->ws, (int)(deadline - h_mono_ms()) + 1);
        if (!t)
            break;
        client_count(c, t);
        free(t);
    }
    ck_assert_msg(c->msgs[k] == 1, "client %d (node %d) did not get message %d", idx, c->node + 1,
                  k);
}

/* Every live message k in [c->from, n) arrived exactly once. */
static void client_check(const struct client *c, int idx, int n)
{
    for (int k = 0; k < n; k++) {
        if (k >= c->from)
            ck_assert_msg(c->msgs[k] == 1,
                          "client %d (%s, node %d, connected before message %d) got message %d "
                          "%d times, want once",
                          idx, c->account, c->node + 1, c->from, k, c->msgs[k]);
        else
            ck_assert_msg(c->msgs[k] <= 1, "client %d got message %d %d times", idx, k, c->msgs[k]);
    }
}

/* Polls "EXISTS key" until it answers want (presence is written just
 * after the register reply); returns the last answer. */
static long long wait_exists(const char *key, long long want, int timeout_ms)
{
    long long v, deadline = h_mono_ms() + timeout_ms;
    while ((v = h_redis_int(&C.redis, "EXISTS %s", key)) != want && h_mono_ms() < deadline)
        h_sleep_ms(100);
    return v;
}

/* Polls the live presence count of account until it is want. */
static long long wait_zcount(const char *account, long long want, int timeout_ms)
{
    char key[96];
    snprintf(key, sizeof(key), "notify:presence:{%s}", account);
    long long v, deadline = h_mono_ms() + timeout_ms;
    while ((v = h_redis_int(&C.redis, "ZCOUNT %s %lld +inf", key, (long long)h_unix_s() * 1000)) !=
               want &&
           h_mono_ms() < deadline)
        h_sleep_ms(100);
    return v;
}

/* ---- tests ---------------------------------------------------------------- */

START_TEST(test_spread_one_publish_reaches_all)
{
    struct client cl[PER_ACCOUNT];
    int per_node[NODES] = {0};
    for (int i = 0; i < PER_ACCOUNT; i++) {
        client_connect(&cl[i], "spread", 0);
        per_node[cl[i].node]++;
    }
    for (int n = 0; n < NODES; n++)
        ck_assert_msg(per_node[n] == PER_ACCOUNT / NODES,
                      "leastconn spread: node %d holds %d of %d connections (%d/%d/%d)", n + 1,
                      per_node[n], PER_ACCOUNT, per_node[0], per_node[1], per_node[2]);
    /* one subscription per node */
    ck_assert_int_eq(h_redis_wait_numsub(&C.redis, "notify:acct:{spread}", NODES, 10000), NODES);
    publish("spread", 0);
    for (int i = 0; i < PER_ACCOUNT; i++) {
        client_wait_msg(&cl[i], i, 0, 10000);
        client_drain(&cl[i], 300); /* a duplicate would come right after */
    }
    for (int i = 0; i < PER_ACCOUNT; i++)
        client_check(&cl[i], i, 1);
    ck_assert_int_eq(wait_zcount("spread", PER_ACCOUNT, 10000), PER_ACCOUNT);
    for (int i = 0; i < PER_ACCOUNT; i++)
        ws_close(&cl[i].ws, 1000);
}
END_TEST

START_TEST(test_kill9_clients_move_and_presence_expires)
{
    struct client cl[PER_ACCOUNT], solo;
    for (int i = 0; i < PER_ACCOUNT; i++)
        client_connect(&cl[i], "k9", 0);
    client_connect(&solo, "k9solo", 0);
    int victim = solo.node; /* the node that alone holds account k9solo */
    ck_assert_int_eq(wait_exists("notify:presence:{k9solo}", 1, 10000), 1);
    ck_assert_int_eq(h_redis_wait_numsub(&C.redis, "notify:acct:{k9}", NODES, 10000), NODES);
    publish("k9", 0);
    for (int i = 0; i < PER_ACCOUNT; i++)
        client_wait_msg(&cl[i], i, 0, 10000);

    trace("message 0 everywhere; kill -9 node %d", victim + 1);
    long long t_kill = h_mono_ms();
    ck_assert_msg(kill(C.node_pid[victim], SIGKILL) == 0, "kill -9 node %d", victim + 1);

    /* the victim's clients lose their connection (haproxy closes the client
     * side) and reconnect through haproxy; the others stay */
    int moved = 0;
    for (int i = 0; i < PER_ACCOUNT; i++) {
        if (cl[i].node != victim)
            continue;
        char *t;
        while ((t = ws_recv_text(&cl[i].ws, 15000)) != NULL) {
            client_count(&cl[i], t);
            free(t);
        }
        ck_assert_msg(cl[i].ws.eof || cl[i].ws.close_code,
                      "client %d on the killed node was not disconnected", i);
        ws_close(&cl[i].ws, 1000);
        client_connect(&cl[i], "k9", 1);
        ck_assert_msg(cl[i].node != victim, "client %d reconnected to the killed node %d", i,
                      victim + 1);
        moved++;
    }
    ck_assert_msg(moved > 0, "no client of account k9 was on the killed node");
    trace("%d clients moved", moved);
    ws_drop(&solo.ws);

    /* they keep receiving: messages published now reach all six */
    h_sleep_ms(300);
    for (int k = 1; k < 4; k++)
        publish("k9", k);
    for (int i = 0; i < PER_ACCOUNT; i++) {
        client_wait_msg(&cl[i], i, 3, 10000); /* one channel: in order */
        client_drain(&cl[i], 300);
    }
    for (int i = 0; i < PER_ACCOUNT; i++)
        client_check(&cl[i], i, 4);

    trace("messages 1-3 everywhere");
    /* presence of k9solo (only on the dead node) expires within the TTL;
     * k9 stays present */
    long long left = t_kill + (PRESENCE_TTL + 4) * 1000 - h_mono_ms();
    ck_assert_msg(wait_exists("notify:presence:{k9solo}", 0, left > 0 ? (int)left : 0) == 0,
                  "presence of an account only on the killed node still exists %lld ms after "
                  "the kill (presence TTL %d s)",
                  h_mono_ms() - t_kill, PRESENCE_TTL);
    ck_assert_int_eq(h_redis_int(&C.redis, "EXISTS %s", "notify:presence:{k9}"), 1);
    trace("k9solo presence gone");

    /* haproxy has taken the dead node out of the pool */
    char hs[64];
    haproxy_status(victim, hs, sizeof(hs));
    ck_assert_msg(!strncmp(hs, "DOWN", 4), "haproxy status of the killed node: '%s'", hs);
    for (int i = 0; i < PER_ACCOUNT; i++)
        ws_close(&cl[i].ws, 1000);
}
END_TEST

START_TEST(test_drain_leaves_pool_clients_move_nothing_lost)
{
    struct client cl[PER_ACCOUNT];
    for (int i = 0; i < PER_ACCOUNT; i++)
        client_connect(&cl[i], "dr", 0);
    int victim = cl[0].node, on_victim = 0;
    for (int i = 0; i < PER_ACCOUNT; i++)
        on_victim += cl[i].node == victim;
    ck_assert_int_eq(h_redis_wait_numsub(&C.redis, "notify:acct:{dr}", NODES, 10000), NODES);

    long long t0 = h_mono_ms(), t_down = 0, t_first_close = 0, next_poll = 0;
    ck_assert_msg(kill(C.node_pid[victim], SIGTERM) == 0, "SIGTERM node %d", victim + 1);

    /* Watch haproxy's view of the node and the node's clients at the same
     * time; reconnect each client as soon as it is closed (as a real client
     * would), then publish one live message: every connection open at that
     * moment must get it. */
    int next_msg = 0, done = 0;
    int closed[PER_ACCOUNT] = {0};
    long long deadline = t0 + (DRAIN_SECONDS + 20) * 1000;
    while ((done < on_victim || !t_down) && h_mono_ms() < deadline) {
        if (!t_down && h_mono_ms() >= next_poll) {
            char hs[64];
            haproxy_status(victim, hs, sizeof(hs));
            if (hs[0] && strncmp(hs, "UP", 2) != 0)
                t_down = h_mono_ms();
            next_poll = h_mono_ms() + 100;
        }
        for (int i = 0; i < PER_ACCOUNT; i++) {
            if (cl[i].node != victim || closed[i])
                continue;
            struct ws_msg m;
            int op = ws_recv(&cl[i].ws, &m, 20);
            if (op == WS_TIMEOUT)
                continue;
            if (op == WS_TEXT) {
                client_count(&cl[i], m.data);
                ws_msg_free(&m);
                continue;
            }
            if (op > 0)
                ws_msg_free(&m);
            if (op == WS_PING || op == WS_PONG)
                continue;
            ck_assert_msg(op == WS_CLOSE,
                          "client %d on the draining node: connection ended "
                          "without a close frame (op %d)",
                          i, op);
            ck_assert_msg(cl[i].ws.close_code == 1001, "client %d closed with %d, want 1001", i,
                          cl[i].ws.close_code);
            if (!t_first_close)
                t_first_close = h_mono_ms();
            closed[i] = 1;
            ws_close(&cl[i].ws, 1000);
            client_connect(&cl[i], "dr", next_msg);
            ck_assert_msg(cl[i].node != victim,
                          "client %d was sent back to the draining node %d by haproxy", i,
                          victim + 1);
            publish("dr", next_msg++);
            done++;
        }
    }
    trace("drain: haproxy DOWN after %lld ms, first close after %lld ms, %d moved", t_down - t0,
          t_first_close - t0, done);
    ck_assert_msg(t_down, "haproxy never took the draining node out of the pool");
    ck_assert_msg(t_down - t0 < 5000, "haproxy took %lld ms to see the node draining", t_down - t0);
    ck_assert_msg(done == on_victim, "%d of the %d clients of the draining node were moved", done,
                  on_victim);
    if (has_drain_delay)
        ck_assert_msg(t_down <= t_first_close,
                      "the node closed its first socket %lld ms after SIGTERM, before haproxy "
                      "took it out of the pool (%lld ms)",
                      t_first_close - t0, t_down - t0);
    else
        fprintf(stderr,
                "NOTE: the daemon has no --drain-delay: haproxy took the draining node out "
                "after %lld ms, its first socket closed after %lld ms (not asserted)\n",
                t_down - t0, t_first_close - t0);

    /* and a last message after everyone moved */
    publish("dr", next_msg++);
    for (int i = 0; i < PER_ACCOUNT; i++) {
        client_wait_msg(&cl[i], i, next_msg - 1, 10000);
        client_drain(&cl[i], 300);
    }
    trace("all messages checked");
    for (int i = 0; i < PER_ACCOUNT; i++)
        client_check(&cl[i], i, next_msg);

    /* the drained node exits once empty */
    long long dl = h_mono_ms() + (DRAIN_SECONDS + 10) * 1000;
    char stat_path[64];
    snprintf(stat_path, sizeof(stat_path), "/proc/%d/stat", (int)C.node_pid[victim]);
    for (;;) {
        char *s = h_read_file(stat_path);
        const char *st = s ? strrchr(s, ')') : NULL;
        int gone = !st || st[2] == 'Z';
        free(s);
        if (gone)
            break;
        ck_assert_msg(h_mono_ms() < dl, "the drained node still runs");
        h_sleep_ms(100);
    }
    for (int i = 0; i < PER_ACCOUNT; i++)
        ws_close(&cl[i].ws, 1000);
}
END_TEST

/* The node of an event stream, from its register event ("local-N"). */
static int sse_node(struct sse *c)
{
    struct sse_event e;
    ck_assert_msg(sse_recv(c, &e, 10000) == 1 && !strcmp(e.event, "register"),
                  "no register event through haproxy");
    json_t *j = json_obj(e.data);
    json_t *m =
        json_obj(json_string_value(json_object_get(json_object_get(j, "content"), "meta_data")));
    const char *node = json_string_value(json_object_get(m, "node"));
    ck_assert_msg(node && !strncmp(node, "local-", 6), "register names node %s", node);
    int n = atoi(node + 6) - 1;
    json_decref(m);
    json_decref(j);
    sse_event_free(&e);
    return n;
}

/* The next notification of an event stream: its body and id, asserted. */
static void sse_expect(struct sse *c, const char *body, const char *id, int timeout_ms)
{
    struct sse_event e;
    ck_assert_msg(sse_recv(c, &e, timeout_ms) == 1, "stream: no event, want %s", body);
    ck_assert_msg(!strcmp(e.event, "message"), "stream: event %s, want %s", e.event, body);
    json_t *j = json_obj(e.data);
    const char *b = json_string_value(json_object_get(json_object_get(j, "content"), "body"));
    ck_assert_msg(b && !strcmp(b, body), "stream: body %s, want %s", b ? b : "-", body);
    ck_assert_msg(e.id && !strcmp(e.id, id), "stream: id %s, want %s", e.id ? e.id : "-", id);
    json_decref(j);
    sse_event_free(&e);
}

/* GET /sse through haproxy (README.md, "Server-Sent Events"): unbuffered,
 * and a drained node's stream ends with event: close, then resumes on
 * another node with Last-Event-ID, every message once. */
START_TEST(test_sse_unbuffered_and_resumed_after_a_drain)
{
    struct sse c;
    int st = -1;
    long long deadline = h_mono_ms() + 20000;
    while ((st = sse_connect(&c, C.haproxy_port, "/sse?user_id=ss", NULL, 10000)) != 200 &&
           h_mono_ms() < deadline)
        h_sleep_ms(200);
    ck_assert_msg(st == 200, "GET /sse through haproxy: status %d", st);
    int node = sse_node(&c);
    ck_assert(h_redis_wait_numsub(&C.redis, "notify:acct:{ss}", 1, 10000) == 1);
    /* Each event arrives on its own, at once: nothing holds it back. */
    char *ids[4];
    for (int i = 0; i < 2; i++) {
        char body[8];
        snprintf(body, sizeof(body), "s%d", i);
        long long t = h_mono_ms();
        ids[i] = h_ck_publish_history(&C.redis, "ss", body);
        sse_expect(&c, body, ids[i], 2000);
        ck_assert_msg(h_mono_ms() - t < 1000, "an event took %lld ms through haproxy",
                      h_mono_ms() - t);
    }
    ck_assert_msg(kill(C.node_pid[node], SIGTERM) == 0, "SIGTERM node %d", node + 1);
    ids[2] = h_ck_publish_history(&C.redis, "ss", "s2");
    sse_expect(&c, "s2", ids[2], 5000);
    struct sse_event e;
    ck_assert_msg(sse_recv(&c, &e, (DRAIN_SECONDS + 10) * 1000) == 1 && !strcmp(e.event, "close"),
                  "no event: close from the draining node");
    ck_assert_msg(strstr(e.data, "\"code\":1001") != NULL, "close event %s", e.data);
    sse_event_free(&e);
    ck_assert_msg(sse_recv(&c, &e, 5000) == -1, "the stream did not end after its close event");
    sse_close(&c);
    ids[3] = h_ck_publish_history(&C.redis, "ss", "s3");
    /* what a browser's EventSource does next: the same URL, Last-Event-ID */
    char hdr[96];
    snprintf(hdr, sizeof(hdr), "Last-Event-ID: %s\r\n", ids[1]);
    st = sse_connect(&c, C.haproxy_port, "/sse?user_id=ss", hdr, 10000);
    ck_assert_msg(st == 200, "the stream's reconnect through haproxy: status %d", st);
    int again = sse_node(&c);
    ck_assert_msg(again != node, "haproxy sent the stream back to the draining node %d", node + 1);
    sse_expect(&c, "s2", ids[2], 5000);
    sse_expect(&c, "s3", ids[3], 5000);
    ck_assert_msg(sse_recv(&c, &e, 500) == 0, "more than each message once");
    sse_close(&c);
    for (int i = 0; i < 4; i++)
        free(ids[i]);
}
END_TEST

/* ---- runner --------------------------------------------------------------- */

static const char *find_haproxy(void)
{
    static char buf[H_PATH_MAX];
    const char *env = getenv("HAPROXY_BIN");
    if (env && *env)
        return access(env, X_OK) == 0 ? env : NULL;
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof(dirs), "%s:/usr/sbin:/usr/local/sbin:/sbin", path ? path : "");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(buf, sizeof(buf), "%s/haproxy", d);
        if (access(buf, X_OK) == 0)
            return buf;
    }
    return NULL;
}

static Suite *cluster_suite(void)
{
    Suite *s = suite_create("cluster-e2e");
    TCase *tc = tcase_create("cluster");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 180);
    /* E2E_ONLY=<part of a test name> runs just the matching tests */
    const char *only = getenv("E2E_ONLY");
#define ADD(t)                                                                                     \
    if (!only || strstr(#t, only))                                                                 \
    tcase_add_test(tc, t)
    ADD(test_spread_one_publish_reaches_all);
    ADD(test_kill9_clients_move_and_presence_expires);
    ADD(test_drain_leaves_pool_clients_move_nothing_lost);
    ADD(test_sse_unbuffered_and_resumed_after_a_drain);
#undef ADD
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    haproxy_bin = find_haproxy();
    if (!haproxy_bin) {
        printf("SKIP: haproxy is not installed (scripts/install-deps.sh test): the three-node "
               "end-to-end tests need it\n");
        return 77;
    }
    char *help = NULL;
    const char *argv[] = {GATEWAY_BIN, "--help", NULL};
    h_run(argv, NULL, 10000, &help, NULL);
    has_drain_delay = help && strstr(help, "--drain-delay") != NULL;
    free(help);
    if (h_tmpdir(base_dir) != 0) {
        fprintf(stderr, "no temp dir\n");
        return 1;
    }
    SRunner *sr = srunner_create(cluster_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (failed)
        print_logs();
    return failed == 0 ? 0 : 1;
}
