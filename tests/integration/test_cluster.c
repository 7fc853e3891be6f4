/* Black-box tests of Redis Cluster mode (README.md "Redis Cluster") against a real
 * cluster of six redis-server processes (three primaries, three replicas,
 * cluster-node-timeout 2000, see cluster_util.h) and the real
 * notify-gateway started with --redis-cluster (no --redis):
 *
 *   utils      the cluster helpers on their own (routing, sharded pub/sub,
 *              slot moves, failover), no gateway
 *   usage      --redis with --redis-cluster (flags or env) exits 2
 *   gateway    one shared cluster: SPUBLISH delivery per shard, broadcast,
 *              plain PUBLISH ignored, notify_publish and ?since= replay,
 *              presence, node registry, /readyz
 *   failover   a fresh cluster: kill -9 of a primary owning connected
 *              accounts; clients stay, /readyz 503 then 200, delivery and
 *              history catch-up after the replica's promotion
 *   reshard    a fresh cluster per test: a connected account's slot moved
 *              (SETSLOT protocol, then redis-cli --cluster reshard) keeps
 *              its delivery working
 *
 * Accounts are picked per shard with CLUSTER KEYSLOT + CLUSTER SLOTS.
 * One test case alone: CK_RUN_CASE=failover build/tests/integration/test_cluster
 * (H_KEEP_TMP=1 keeps every process's log). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "cluster_util.h"
#include "harness.h"

#define RECV_MS 10000    /* a message that must come */
#define QUIET_MS 700     /* how long "nothing more" is watched */
#define CLUSTER_MS 90000 /* creating a cluster, replicas synced */
#define SWITCH_MS 30000  /* a failover or a slot move, seen by the gateway */
#define PRESENCE_TTL 6   /* --presence-ttl of the gateways here */
#define NPRIMARIES 3

static struct c_cluster CL;
static int cluster_up;
static struct h_gw G;

/* ---- fixtures ----------------------------------------------------------- */

/* Unchecked (once per test case, in the runner): no ck_assert here, the
 * tests check cluster_up. */
static void shared_cluster_up(void)
{
    cluster_up = c_cluster_start(&CL, CLUSTER_MS) == 0;
}

static void shared_cluster_down(void)
{
    if (cluster_up)
        c_cluster_stop(&CL);
    cluster_up = 0;
}

/* Checked (per test, in its process): a fresh cluster. */
static void fresh_cluster_up(void)
{
    memset(&G, 0, sizeof(G));
    ck_assert_msg(c_cluster_start(&CL, CLUSTER_MS) == 0, "cannot create the cluster");
    cluster_up = 1;
}

static void gw_down(void)
{
    if (G.proc.dir[0]) {
        char *log = h_gw_stderr(&G);
        int alive = h_proc_running(&G.proc);
        h_proc_cleanup(&G.proc);
        ck_assert_msg(!strstr(log, "AddressSanitizer") && !strstr(log, "runtime error:"),
                      "sanitizer report in the gateway's stderr");
        free(log);
        ck_assert_msg(alive, "the gateway died during the test");
    }
}

static void fresh_cluster_down(void)
{
    gw_down();
    c_cluster_stop(&CL);
    cluster_up = 0;
}

static void gateway_setup(void)
{
    memset(&G, 0, sizeof(G));
    ck_assert_msg(cluster_up, "the shared cluster could not be created (see stderr)");
}

/* ---- the gateway -------------------------------------------------------- */

/* Starts GATEWAY_BIN with --listen 127.0.0.1:<free> --redis-cluster seeds
 * --node-id itc-<port> --log-level debug --auth none --presence-ttl 6
 * --heartbeat-timeout 300 and the extra args (NULL-terminated); waits for
 * /healthz 200. Asserts. */
static void gw_start(const char *seeds, ...)
{
    const char *extra[32];
    int ne = 0;
    va_list ap;
    va_start(ap, seeds);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && ne < 31)
        extra[ne++] = a;
    va_end(ap);
    char ttl[16];
    snprintf(ttl, sizeof(ttl), "%d", PRESENCE_TTL);
    for (int attempt = 0; attempt < 3; attempt++) {
        int port = h_free_port();
        ck_assert_int_gt(port, 0);
        char listen[64], node[32];
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        snprintf(node, sizeof(node), "itc-%d", port);
        const char *argv[64] = {GATEWAY_BIN, "--listen",
                                listen,      "--redis-cluster",
                                seeds,       "--node-id",
                                node,        "--log-level",
                                "debug",     "--auth",
                                "none",      "--presence-ttl",
                                ttl,         "--heartbeat-timeout",
                                "300"};
        int n = 15;
        for (int i = 0; i < ne; i++)
            argv[n++] = extra[i];
        argv[n] = NULL;
        ck_assert_int_eq(h_proc_spawn(&G.proc, argv, NULL), 0);
        /* a "label" file makes the harness print the log tail if the test
         * fails and leaves the dir behind */
        char path[H_PATH_MAX + 16];
        snprintf(path, sizeof(path), "%s/label", G.proc.dir);
        FILE *f = fopen(path, "w");
        if (f) {
            fprintf(f, "left over (its test failed?): cluster gateway %s, seeds %s", listen, seeds);
            fclose(f);
        }
        G.port = port;
        long long deadline = h_mono_ms() + 15000;
        while (h_mono_ms() < deadline && h_proc_running(&G.proc)) {
            if (h_http_get(port, "/healthz", NULL) == 200)
                return;
            h_sleep_ms(30);
        }
        int died = !h_proc_running(&G.proc);
        char *log = h_gw_stderr(&G);
        h_proc_cleanup(&G.proc);
        if (!died || attempt == 2)
            ck_abort_msg("gateway %s (status %d): %s", died ? "died" : "not healthy in 15 s",
                         G.proc.status, log);
        free(log);
    }
}

static char *gw_log(void)
{
    return h_gw_stderr(&G);
}

/* Prints the last 80 lines of the gateway's log that mention one of the
 * words (NULL: any) to stderr, for a failure's context (Check's messages
 * are short); returns a note to put in the failure message (malloc'd). */
static char *log_lines(const char *w1, const char *w2)
{
    char *log = gw_log();
    const char *lines[80];
    size_t lens[80], n = 0;
    for (char *line = log; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t ll = nl ? (size_t)(nl - line) : strlen(line);
        char *probe = strndup(line, ll);
        if ((!w1 && !w2) || (w1 && strstr(probe, w1)) || (w2 && strstr(probe, w2))) {
            lines[n % 80] = line;
            lens[n % 80] = ll;
            n++;
        }
        free(probe);
        line = nl ? nl + 1 : line + ll;
    }
    fprintf(stderr, "---- gateway log lines matching '%s' or '%s' (last %zu of %zu):\n",
            w1 ? w1 : "", w2 ? w2 : "", n < 80 ? n : 80, n);
    for (size_t i = n > 80 ? n - 80 : 0; i < n; i++)
        fprintf(stderr, "%.*s\n", (int)lens[i % 80], lines[i % 80]);
    fprintf(stderr, "---- end of gateway log lines\n");
    free(log);
    return strdup("(printed on stderr)");
}

/* ---- Redis side --------------------------------------------------------- */

static long long wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static char *envelope(const char *body)
{
    char *s = NULL;
    ck_assert_int_gt(
        asprintf(&s, "{\"type\":\"t\",\"content\":{\"body\":\"%s\",\"meta_data\":\"\"}}", body), 0);
    return s;
}

static void chan(char *buf, size_t size, const char *account)
{
    snprintf(buf, size, "notify:acct:{%s}", account);
}

/* PUBSUB SHARDNUMSUB channel on port; -1 on error. */
static long long shardnumsub(int port, const char *channel)
{
    redisReply *r = c_cmd_port(port, "PUBSUB SHARDNUMSUB %s", channel);
    long long v = -1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_INTEGER)
        v = r->element[1]->integer;
    freeReplyObject(r);
    return v;
}

/* Waits until the channel has a sharded subscriber on its owner. */
static void wait_subscribed(const char *channel, int timeout_ms)
{
    long long deadline = h_mono_ms() + timeout_ms;
    int owner = -1;
    long long n = -1;
    for (;;) {
        owner = c_key_owner(&CL, channel);
        n = owner > 0 ? shardnumsub(owner, channel) : -1;
        if (n >= 1)
            return;
        if (h_mono_ms() >= deadline)
            break;
        h_sleep_ms(50);
    }
    char *lines = log_lines("ubscri", "cluster");
    ck_abort_msg("no SSUBSCRIBE of %s on its owner 127.0.0.1:%d within %d ms (SHARDNUMSUB %lld); "
                 "gateway log:\n%s",
                 channel, owner, timeout_ms, n, lines);
}

/* SPUBLISH of an envelope with body to the channel's owner; returns the
 * receivers. */
static long long spublish(const char *channel, const char *body)
{
    char *env = envelope(body);
    long long n = c_spublish(&CL, channel, env);
    free(env);
    return n;
}

/* SPUBLISH to the owner until a subscriber receives it (the gateway
 * resubscribes asynchronously); returns the body that was received by
 * Redis's count (malloc'd). */
static char *spublish_until_heard(const char *channel, const char *tag, int timeout_ms)
{
    long long deadline = h_mono_ms() + timeout_ms;
    for (int k = 0;; k++) {
        char body[128];
        snprintf(body, sizeof(body), "%s-%d", tag, k);
        long long n = spublish(channel, body);
        if (n >= 1)
            return strdup(body);
        if (h_mono_ms() >= deadline) {
            char *lines = log_lines("ubscri", "cluster");
            ck_abort_msg("SPUBLISH %s never reached a subscriber in %d ms (last %lld); gateway "
                         "log:\n%s",
                         channel, timeout_ms, n, lines);
        }
        h_sleep_ms(100);
    }
}

/* FCALL notify_publish on the owner of the account's stream key; returns
 * the reply (NULL on connection error). */
static redisReply *fcall(const char *account, const char *body, int *port)
{
    char key[300];
    snprintf(key, sizeof(key), "notify:stream:{%s}", account);
    char *env = envelope(body);
    redisReply *r = c_cmd_keyf(&CL, key, port, "FCALL notify_publish 1 %s %s", key, env);
    free(env);
    return r;
}

/* fcall that must succeed; returns the id (malloc'd). */
static char *publish(const char *account, const char *body)
{
    int port = -1;
    redisReply *r = fcall(account, body, &port);
    ck_assert_msg(r && r->type == REDIS_REPLY_STRING, "FCALL notify_publish %s on 127.0.0.1:%d: %s",
                  account, port,
                  r ? (r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply type")
                    : "connection error");
    char *id = strdup(r->str);
    freeReplyObject(r);
    return id;
}

/* FCALL notify_publish sent to exactly this node until it accepts it (a
 * replica answers MOVED until it is promoted); polls every 5 ms. Returns
 * the id (malloc'd). */
static char *publish_on_retry(int port, const char *account, const char *body, int timeout_ms)
{
    char key[300];
    snprintf(key, sizeof(key), "notify:stream:{%s}", account);
    char *env = envelope(body);
    long long deadline = h_mono_ms() + timeout_ms;
    char last[256] = "";
    redisContext *c = NULL;
    for (;;) {
        if (!c) {
            struct timeval tv = {2, 0};
            c = redisConnectWithTimeout("127.0.0.1", port, tv);
            if (c && c->err) {
                redisFree(c);
                c = NULL;
            }
        }
        redisReply *r = c ? redisCommand(c, "FCALL notify_publish 1 %s %s", key, env) : NULL;
        if (r && r->type == REDIS_REPLY_STRING) {
            char *id = strdup(r->str);
            freeReplyObject(r);
            redisFree(c);
            free(env);
            return id;
        }
        snprintf(last, sizeof(last), "%s",
                 r ? (r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply")
                   : "connection error");
        if (!r && c) {
            redisFree(c);
            c = NULL;
        }
        freeReplyObject(r);
        ck_assert_msg(h_mono_ms() < deadline, "FCALL on 127.0.0.1:%d never accepted: %s", port,
                      last);
        h_sleep_ms(5);
    }
}

/* EXISTS key on the key's owner, asked directly (no redirection). */
static long long exists_on_owner(const char *key, int *owner_out)
{
    int owner = c_key_owner(&CL, key);
    if (owner_out)
        *owner_out = owner;
    redisReply *r = owner > 0 ? c_cmd_port(owner, "EXISTS %s", key) : NULL;
    long long v = (r && r->type == REDIS_REPLY_INTEGER) ? r->integer : -1;
    freeReplyObject(r);
    return v;
}

static void wait_exists(const char *key, long long want, int timeout_ms)
{
    long long deadline = h_mono_ms() + timeout_ms, v;
    int owner = -1;
    for (;;) {
        v = exists_on_owner(key, &owner);
        if (v == want)
            return;
        if (h_mono_ms() >= deadline)
            break;
        h_sleep_ms(100);
    }
    char *lines = log_lines("presence", "ZADD");
    ck_abort_msg("EXISTS %s on its owner 127.0.0.1:%d: %lld, want %lld within %d ms; gateway "
                 "log:\n%s",
                 key, owner, v, want, timeout_ms, lines);
}

static void primaries(int *p)
{
    int n = c_primaries(&CL, p, NPRIMARIES);
    ck_assert_int_eq(n, NPRIMARIES);
}

/* An account whose slot is owned by primary port, distinct per prefix. */
static void account_on(int port, const char *prefix, char *out, size_t size)
{
    int slot = c_find_account(&CL, prefix, port, out, size);
    ck_assert_msg(slot >= 0, "no account with prefix %s on 127.0.0.1:%d", prefix, port);
}

static void seeds_of(char *buf, size_t size, int n)
{
    ck_assert_int_eq(c_seeds(&CL, n, buf, size), 0);
}

/* ---- client side -------------------------------------------------------- */

/* The next message has this body (and, if id is not NULL, this "id"). */
static void expect_body(struct ws *c, const char *who, const char *body, const char *id)
{
    struct h_msg m;
    if (!h_msg_recv(c, &m, RECV_MS)) {
        char *lines = log_lines("ubscri", "cluster");
        ck_abort_msg("%s: no message, want body %s (close %d, eof %d); gateway log:\n%s", who, body,
                     c->close_code, c->eof, lines);
    }
    ck_assert_msg(h_msg_body(&m) && !strcmp(h_msg_body(&m), body), "%s: got %s, want body %s", who,
                  m.text, body);
    if (id)
        ck_assert_msg(h_jstr(m.j, "id") && !strcmp(h_jstr(m.j, "id"), id), "%s: got %s, want id %s",
                      who, m.text, id);
    h_msg_free(&m);
}

/* A heartbeat round trip: the connection is still open and served. */
static void expect_alive(struct ws *c, const char *who)
{
    ck_assert_msg(c->close_code == 0 && !c->eof, "%s: closed with %d", who, c->close_code);
    ck_assert_int_eq(ws_send_text(c, "{\"type\":\"heartbeat\"}"), 0);
    struct h_msg m;
    ck_assert_msg(h_msg_recv(c, &m, RECV_MS), "%s: no heartbeat reply (close %d, eof %d)", who,
                  c->close_code, c->eof);
    ck_assert_msg(h_msg_type(&m) && !strcmp(h_msg_type(&m), "heartbeat"),
                  "%s: got %s, want the heartbeat reply", who, m.text);
    h_msg_free(&m);
}

static int readyz(void)
{
    return h_http_get(G.port, "/readyz", NULL);
}

static void expect_ready(int timeout_ms, const char *when)
{
    if (!h_http_wait_status(G.port, "/readyz", 200, timeout_ms)) {
        if (!h_proc_running(&G.proc)) {
            free(log_lines(NULL, NULL));
            ck_abort_msg("/readyz: the gateway exited (status %d) %s", G.proc.status, when);
        }
        char *lines = log_lines("ubscri", "cluster");
        ck_abort_msg("/readyz not 200 within %d ms %s (now %d); gateway log:\n%s", timeout_ms, when,
                     readyz(), lines);
    }
}

/* Soft checks: problems are collected (and printed at once), the test
 * fails at soft_check() with all of them. */
static char soft_buf[3000];
static int soft_n;

static void soft_fail(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "FAILED CHECK: %s\n", line);
    size_t used = strlen(soft_buf);
    snprintf(soft_buf + used, sizeof(soft_buf) - used, "%s[%d] %s", soft_n ? "\n" : "", soft_n + 1,
             line);
    soft_n++;
}

static void soft_check(void)
{
    if (soft_n) {
        free(log_lines(NULL, NULL));
        ck_abort_msg("%d check(s) failed:\n%s", soft_n, soft_buf);
    }
}

/* The next message has this body (and id, if not NULL); a soft failure
 * otherwise. */
static void soft_body(struct ws *c, const char *who, const char *body, const char *id,
                      const char *what)
{
    struct h_msg m;
    if (!h_msg_recv(c, &m, RECV_MS)) {
        soft_fail("%s: %s: no message in %d ms, want body %s (close %d, eof %d)", who, what,
                  RECV_MS, body, c->close_code, c->eof);
        return;
    }
    if (!h_msg_body(&m) || strcmp(h_msg_body(&m), body) ||
        (id && (!h_jstr(m.j, "id") || strcmp(h_jstr(m.j, "id"), id))))
        soft_fail("%s: %s: got %s, want body %s%s%s", who, what, m.text, body, id ? " id " : "",
                  id ? id : "");
    h_msg_free(&m);
}

static void soft_quiet(struct ws *c, const char *who, int ms)
{
    struct h_msg m;
    while (h_msg_recv(c, &m, ms)) {
        soft_fail("%s: unexpected message %s", who, m.text);
        h_msg_free(&m);
    }
}

/* ======================================================================= */
/* utils: the helpers on their own                                          */
/* ======================================================================= */

START_TEST(utils_routing_and_slot_moves)
{
    int p[NPRIMARIES];
    primaries(p);
    for (int i = 0; i < NPRIMARIES; i++) {
        int rep = c_replica_of(&CL, p[i]);
        ck_assert_msg(rep > 0 && rep != p[i], "primary %d: no replica", p[i]);
        redisReply *r = c_cmd_port(rep, "ROLE");
        ck_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements > 0);
        ck_assert_str_eq(r->element[0]->str, "slave");
        freeReplyObject(r);
    }
    char seeds[128];
    seeds_of(seeds, sizeof(seeds), 2);
    char want[128];
    snprintf(want, sizeof(want), "127.0.0.1:%d,127.0.0.1:%d", p[0], p[1]);
    ck_assert_str_eq(seeds, want);

    /* the hash tag keeps an account's names in one slot */
    const char *names[] = {"u1", "u42", "a.b@c:d-e_f", "x"};
    for (int i = 0; i < 4; i++) {
        char k1[128], k2[128], k3[128];
        snprintf(k1, sizeof(k1), "notify:acct:{%s}", names[i]);
        snprintf(k2, sizeof(k2), "notify:stream:{%s}", names[i]);
        snprintf(k3, sizeof(k3), "notify:presence:{%s}", names[i]);
        int s = c_keyslot(&CL, k1);
        ck_assert_int_ge(s, 0);
        ck_assert_int_eq(c_keyslot_local(k1), s);
        ck_assert_int_eq(c_keyslot(&CL, k2), s);
        ck_assert_int_eq(c_keyslot(&CL, k3), s);
        ck_assert_int_eq(c_keyslot(&CL, names[i]), s);
    }
    ck_assert_int_eq(c_keyslot_local("notify:broadcast"), c_keyslot(&CL, "notify:broadcast"));

    /* one account per shard; commands routed to the owner; others MOVED */
    char acct[NPRIMARIES][64];
    for (int i = 0; i < NPRIMARIES; i++) {
        account_on(p[i], "ut", acct[i], sizeof(acct[i]));
        char key[256];
        snprintf(key, sizeof(key), "k:{%s}", acct[i]);
        int port = -1;
        redisReply *r = c_cmd_keyf(&CL, key, &port, "SET %s v%d", key, i);
        ck_assert(r && r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
        ck_assert_int_eq(port, p[i]);
        r = c_cmd_port(p[(i + 1) % NPRIMARIES], "GET %s", key);
        ck_assert_msg(r && r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "MOVED", 5),
                      "GET on a non-owner: %s", r ? r->str : "I/O error");
        freeReplyObject(r);
        /* a redirect is followed */
        const char *argv[] = {"GET", key};
        r = c_cmd_key(&CL, key, &port, 2, argv);
        ck_assert(r && r->type == REDIS_REPLY_STRING);
        freeReplyObject(r);
    }

    /* a sharded subscriber on the owner gets SPUBLISH; the slot moved away
     * pushes sunsubscribe; keys move with the slot */
    char ch[128], key[128];
    chan(ch, sizeof(ch), acct[0]);
    snprintf(key, sizeof(key), "k:{%s}", acct[0]);
    int slot = c_keyslot(&CL, ch);
    redisContext *sub = redisConnect("127.0.0.1", p[0]);
    ck_assert(sub && !sub->err);
    redisReply *r = redisCommand(sub, "SSUBSCRIBE %s", ch);
    ck_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 3);
    freeReplyObject(r);
    ck_assert_int_eq(c_spublish(&CL, ch, "hello"), 1);
    ck_assert_int_eq(c_spublish_port(p[1], ch, "hello"), -1); /* MOVED */
    ck_assert_int_eq(redisGetReply(sub, (void **)&r), REDIS_OK);
    ck_assert_str_eq(r->element[0]->str, "smessage");
    ck_assert_str_eq(r->element[2]->str, "hello");
    freeReplyObject(r);
    ck_assert_int_eq(c_move_slot(&CL, slot, p[2], 20000, NULL, NULL), 0);
    ck_assert_int_eq(c_slot_owner(&CL, slot), p[2]);
    ck_assert_int_eq(redisGetReply(sub, (void **)&r), REDIS_OK);
    ck_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 3);
    ck_assert_str_eq(r->element[0]->str, "sunsubscribe");
    ck_assert_str_eq(r->element[1]->str, ch);
    freeReplyObject(r);
    redisFree(sub);
    r = c_cmd_port(p[2], "GET %s", key);
    ck_assert_msg(r && r->type == REDIS_REPLY_STRING && !strcmp(r->str, "v0"), "moved key: %s",
                  r ? r->str : "I/O error");
    freeReplyObject(r);
    ck_assert_int_eq(c_wait_stable(&CL, 10000), 0);

    /* redis-cli --cluster reshard moves the source's lowest slot */
    int low = c_lowest_slot(&CL, p[1]);
    ck_assert_int_ge(low, 0);
    char inslot[64];
    ck_assert_int_eq(c_find_account_in_slot(&CL, "low", low, inslot, sizeof(inslot)), low);
    ck_assert_int_eq(c_reshard_cli(&CL, p[1], p[0], 60000), low);
    ck_assert_int_eq(c_slot_owner(&CL, low), p[0]);
    ck_assert_int_eq(c_wait_stable(&CL, 10000), 0);
}
END_TEST

START_TEST(utils_failover)
{
    int p[NPRIMARIES];
    primaries(p);
    char acct[64], key[128];
    account_on(p[1], "fo", acct, sizeof(acct));
    snprintf(key, sizeof(key), "k:{%s}", acct);
    redisReply *r = c_cmd_keyf(&CL, key, NULL, "SET %s before", key);
    ck_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    ck_assert_int_eq(c_wait_replicated(p[1], 2000), 1);
    int replica = c_replica_of(&CL, p[1]);
    ck_assert_int_gt(replica, 0);
    int slot = c_keyslot(&CL, key);
    ck_assert_int_eq(c_kill(&CL, p[1]), 0);
    ck_assert(!c_alive(&CL, p[1]));
    long long took = 0;
    int owner = c_wait_promoted(&CL, p[1], slot, SWITCH_MS, &took);
    fprintf(stderr, "utils_failover: replica 127.0.0.1:%d promoted in %lld ms\n", owner, took);
    ck_assert_int_eq(owner, replica);
    r = c_cmd_keyf(&CL, key, NULL, "GET %s", key);
    ck_assert_msg(r && r->type == REDIS_REPLY_STRING && !strcmp(r->str, "before"),
                  "GET after failover: %s", r ? r->str : "I/O error");
    freeReplyObject(r);
    int now[NPRIMARIES];
    primaries(now);
}
END_TEST

/* ======================================================================= */
/* usage                                                                    */
/* ======================================================================= */

static void expect_usage_error(const char *const *args, const char *const *env, const char *what)
{
    char *err = NULL;
    int st = h_gw_run(args, env, 10000, &err);
    ck_assert_msg(st == 2, "%s: exit %d, want 2; stderr: %s", what, st, err);
    ck_assert_msg(strstr(err, "redis"), "%s: the error does not name the flag: %s", what, err);
    size_t len = strlen(err);
    ck_assert_msg(len > 0 && err[len - 1] == '\n' && !memchr(err, '\n', len - 1),
                  "%s: not a one-line error: %s", what, err);
    free(err);
}

START_TEST(usage_redis_and_cluster_exit_2)
{
    char *out = NULL;
    const char *help[] = {GATEWAY_BIN, "--help", NULL};
    ck_assert_int_eq(h_run(help, NULL, 10000, &out, NULL), 0);
    ck_assert_msg(strstr(out, "--redis-cluster"), "--help does not list --redis-cluster");
    free(out);

    const char *flags[] = {"--auth",          "none",        "--redis", "redis://127.0.0.1:1/0",
                           "--redis-cluster", "127.0.0.1:1", NULL};
    expect_usage_error(flags, NULL, "--redis and --redis-cluster");
    const char *none[] = {"--auth", "none", NULL};
    const char *env_both[] = {"NOTIFY_REDIS=redis://127.0.0.1:1/0",
                              "NOTIFY_REDIS_CLUSTER=127.0.0.1:1", NULL};
    expect_usage_error(none, env_both, "NOTIFY_REDIS and NOTIFY_REDIS_CLUSTER");
    const char *cl_flag[] = {"--auth", "none", "--redis-cluster", "127.0.0.1:1", NULL};
    const char *env_redis[] = {"NOTIFY_REDIS=redis://127.0.0.1:1/0", NULL};
    expect_usage_error(cl_flag, env_redis, "--redis-cluster and NOTIFY_REDIS");
    const char *redis_flag[] = {"--auth", "none", "--redis", "redis://127.0.0.1:1/0", NULL};
    const char *env_cluster[] = {"NOTIFY_REDIS_CLUSTER=127.0.0.1:1", NULL};
    expect_usage_error(redis_flag, env_cluster, "--redis and NOTIFY_REDIS_CLUSTER");
    const char *bad_seed[] = {"--auth", "none", "--redis-cluster", "127.0.0.1", NULL};
    expect_usage_error(bad_seed, NULL, "a seed without a port");
}
END_TEST

/* ======================================================================= */
/* gateway: one shared cluster                                              */
/* ======================================================================= */

/* Accounts on all three shards each get their SPUBLISH and only theirs;
 * broadcast reaches all; plain PUBLISH is not delivered; /readyz is 200
 * once everything is subscribed. */
START_TEST(delivery_per_shard)
{
    int p[NPRIMARIES];
    primaries(p);
    char seeds[128];
    seeds_of(seeds, sizeof(seeds), 2);
    gw_start(seeds, (const char *)NULL);
    expect_ready(20000, "after start");

    char acct[NPRIMARIES][64], ch[NPRIMARIES][128];
    struct ws c[NPRIMARIES];
    for (int i = 0; i < NPRIMARIES; i++) {
        account_on(p[i], "dl", acct[i], sizeof(acct[i]));
        chan(ch[i], sizeof(ch[i]), acct[i]);
        h_ck_open_client(&c[i], G.port, acct[i], NULL, RECV_MS);
    }
    for (int i = 0; i < NPRIMARIES; i++) {
        wait_subscribed(ch[i], 10000);
        ck_assert_int_eq(shardnumsub(p[i], ch[i]), 1);
    }
    wait_subscribed("notify:broadcast", 10000);
    expect_ready(5000, "with every account subscribed");

    for (int i = 0; i < NPRIMARIES; i++) {
        char body[256];
        snprintf(body, sizeof(body), "to-%s", acct[i]);
        ck_assert_int_eq(spublish(ch[i], body), 1);
    }
    for (int i = 0; i < NPRIMARIES; i++) {
        char body[256];
        snprintf(body, sizeof(body), "to-%s", acct[i]);
        expect_body(&c[i], acct[i], body, NULL);
    }
    for (int i = 0; i < NPRIMARIES; i++)
        h_ck_quiet(&c[i], acct[i], i ? 100 : QUIET_MS, 1);

    ck_assert_int_eq(spublish("notify:broadcast", "to-all"), 1);
    for (int i = 0; i < NPRIMARIES; i++)
        expect_body(&c[i], acct[i], "to-all", NULL);

    /* plain PUBLISH, on every primary, reaches nobody */
    char *plain = envelope("plain");
    for (int j = 0; j < NPRIMARIES; j++) {
        for (int i = 0; i < NPRIMARIES; i++) {
            redisReply *r = c_cmd_port(p[j], "PUBLISH %s %s", ch[i], plain);
            ck_assert(r && r->type == REDIS_REPLY_INTEGER);
            freeReplyObject(r);
        }
        redisReply *r = c_cmd_port(p[j], "PUBLISH notify:broadcast %s", plain);
        ck_assert(r && r->type == REDIS_REPLY_INTEGER);
        freeReplyObject(r);
    }
    free(plain);
    for (int i = 0; i < NPRIMARIES; i++)
        h_ck_quiet(&c[i], acct[i], i ? 100 : QUIET_MS, 1);

    /* not JSON objects are not forwarded */
    ck_assert_int_eq(c_spublish(&CL, ch[0], "not json"), 1);
    ck_assert_int_eq(spublish(ch[0], "after-junk"), 1);
    expect_body(&c[0], acct[0], "after-junk", NULL);

    for (int i = 0; i < NPRIMARIES; i++) {
        expect_alive(&c[i], acct[i]);
        ws_close(&c[i], 1000);
    }
    /* the channel is unsubscribed once its last connection left */
    for (int i = 0; i < NPRIMARIES; i++) {
        long long deadline = h_mono_ms() + 10000;
        while (shardnumsub(p[i], ch[i]) != 0 && h_mono_ms() < deadline)
            h_sleep_ms(50);
        ck_assert_msg(shardnumsub(p[i], ch[i]) == 0, "%s still subscribed after its last close",
                      ch[i]);
    }
    ck_assert_int_eq(readyz(), 200);
    gw_down();
}
END_TEST

/* notify_publish on the owner returns an id and delivers with it; a
 * reconnect with ?since= replays what was missed, in order. The library is
 * on every primary. */
START_TEST(history_and_since)
{
    int p[NPRIMARIES];
    primaries(p);
    char seeds[128];
    seeds_of(seeds, sizeof(seeds), 2);
    gw_start(seeds, (const char *)NULL);
    expect_ready(20000, "after start");
    for (int i = 0; i < NPRIMARIES; i++) {
        redisReply *r = c_cmd_port(p[i], "FUNCTION LIST LIBRARYNAME notify");
        ck_assert_msg(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1,
                      "primary 127.0.0.1:%d has no notify library", p[i]);
        freeReplyObject(r);
    }

    for (int i = 0; i < NPRIMARIES; i++) {
        char acct[64], ch[128];
        account_on(p[i], "hs", acct, sizeof(acct));
        chan(ch, sizeof(ch), acct);
        struct ws c;
        h_ck_open_client(&c, G.port, acct, NULL, RECV_MS);
        wait_subscribed(ch, 10000);

        /* a non-owner refuses the FCALL with MOVED */
        char key[128], *env = envelope("x");
        snprintf(key, sizeof(key), "notify:stream:{%s}", acct);
        redisReply *r =
            c_cmd_port(p[(i + 1) % NPRIMARIES], "FCALL notify_publish 1 %s %s", key, env);
        ck_assert_msg(r && r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "MOVED", 5),
                      "FCALL on a non-owner: %s", r ? r->str : "I/O error");
        freeReplyObject(r);
        free(env);

        int port = -1;
        r = fcall(acct, "h1", &port);
        ck_assert_msg(r && r->type == REDIS_REPLY_STRING, "FCALL: %s", r ? r->str : "I/O error");
        ck_assert_int_eq(port, p[i]);
        char *id1 = strdup(r->str);
        freeReplyObject(r);
        expect_body(&c, acct, "h1", id1);
        char *id2 = publish(acct, "h2");
        expect_body(&c, acct, "h2", id2);
        h_ck_quiet(&c, acct, 200, 1);
        ws_close(&c, 1000);

        char *id3 = publish(acct, "h3");
        char *id4 = publish(acct, "h4");
        h_ck_open_client(&c, G.port, acct, id1, RECV_MS);
        expect_body(&c, acct, "h2", id2);
        expect_body(&c, acct, "h3", id3);
        expect_body(&c, acct, "h4", id4);
        h_ck_quiet(&c, acct, 300, 1);
        wait_subscribed(ch, 10000);
        char *id5 = publish(acct, "h5");
        expect_body(&c, acct, "h5", id5);
        h_ck_quiet(&c, acct, 200, 1);
        ws_close(&c, 1000);
        free(id1);
        free(id2);
        free(id3);
        free(id4);
        free(id5);
    }
    gw_down();
}
END_TEST

/* Presence keys on the owning shard, gone after the disconnect; the node
 * registry. */
START_TEST(presence_and_registry)
{
    int p[NPRIMARIES];
    primaries(p);
    /* one seed, as a URL */
    char seeds[128];
    snprintf(seeds, sizeof(seeds), "redis://127.0.0.1:%d", p[1]);
    long long t_start = h_mono_ms();
    gw_start(seeds, (const char *)NULL);
    expect_ready(20000, "after start");

    char acct[NPRIMARIES][64], pkey[NPRIMARIES][128];
    struct ws c[NPRIMARIES];
    for (int i = 0; i < NPRIMARIES; i++) {
        account_on(p[i], "pr", acct[i], sizeof(acct[i]));
        ck_assert_int_lt(snprintf(pkey[i], sizeof(pkey[i]), "notify:presence:{%s}", acct[i]),
                         (int)sizeof(pkey[i]));
        h_ck_open_client(&c[i], G.port, acct[i], NULL, RECV_MS);
    }
    for (int i = 0; i < NPRIMARIES; i++) {
        wait_exists(pkey[i], 1, 5000);
        int owner = -1;
        ck_assert_int_eq(exists_on_owner(pkey[i], &owner), 1);
        ck_assert_int_eq(owner, p[i]);
        redisReply *r = c_cmd_port(p[i], "ZCOUNT %s %lld +inf", pkey[i], wall_ms());
        ck_assert_msg(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1, "ZCOUNT %s: %lld",
                      pkey[i], r ? r->integer : -1);
        freeReplyObject(r);
        r = c_cmd_port(p[i], "PTTL %s", pkey[i]);
        ck_assert_msg(r && r->type == REDIS_REPLY_INTEGER && r->integer > 0 &&
                          r->integer <= PRESENCE_TTL * 1000,
                      "PTTL %s: %lld", pkey[i], r ? r->integer : -1);
        freeReplyObject(r);
    }

    /* node registry */
    char node[32];
    snprintf(node, sizeof(node), "itc-%d", G.port);
    long long deadline = h_mono_ms() + PRESENCE_TTL * 1000 + 3000;
    redisReply *r;
    for (;;) {
        int port = -1;
        r = c_cmd_keyf(&CL, "notify:nodes", &port, "ZSCORE notify:nodes %s", node);
        int ok = r && r->type == REDIS_REPLY_STRING && atoll(r->str) > wall_ms();
        char seen[128];
        snprintf(seen, sizeof(seen), "%s", r && r->str ? r->str : "nil");
        freeReplyObject(r);
        if (ok) {
            fprintf(stderr, "registry: %s in notify:nodes %lld ms after the gateway's start\n",
                    node, h_mono_ms() - t_start);
            break;
        }
        if (h_mono_ms() >= deadline) {
            char *lines = log_lines("node", "regist");
            ck_abort_msg("ZSCORE notify:nodes %s on 127.0.0.1:%d: %s, want a future expiry "
                         "(within %d s); gateway log:\n%s",
                         node, port, seen, PRESENCE_TTL + 3, lines);
        }
        h_sleep_ms(200);
    }
    char nkey[64];
    snprintf(nkey, sizeof(nkey), "notify:node:%s", node);
    deadline = h_mono_ms() + PRESENCE_TTL * 1000 + 3000;
    for (;;) {
        r = c_cmd_keyf(&CL, nkey, NULL, "HGET %s connections", nkey);
        int ok = r && r->type == REDIS_REPLY_STRING && !strcmp(r->str, "3");
        char seen[64];
        snprintf(seen, sizeof(seen), "%s", r && r->str ? r->str : "nil");
        freeReplyObject(r);
        if (ok)
            break;
        ck_assert_msg(h_mono_ms() < deadline, "HGET %s connections: %s, want 3", nkey, seen);
        h_sleep_ms(200);
    }
    r = c_cmd_keyf(&CL, nkey, NULL, "HGET %s addr", nkey);
    ck_assert_msg(r && r->type == REDIS_REPLY_STRING && r->len > 0, "HGET %s addr", nkey);
    freeReplyObject(r);
    r = c_cmd_keyf(&CL, nkey, NULL, "PTTL %s", nkey);
    ck_assert_msg(r && r->type == REDIS_REPLY_INTEGER && r->integer > 0, "PTTL %s: %lld", nkey,
                  r ? r->integer : -2);
    freeReplyObject(r);

    /* presence is refreshed past its ttl */
    h_sleep_ms(PRESENCE_TTL * 1000 + 1500);
    for (int i = 0; i < NPRIMARIES; i++)
        ck_assert_int_eq(exists_on_owner(pkey[i], NULL), 1);

    for (int i = 0; i < NPRIMARIES; i++)
        ws_close(&c[i], 1000);
    for (int i = 0; i < NPRIMARIES; i++)
        wait_exists(pkey[i], 0, PRESENCE_TTL * 1000 + 3000);
    gw_down();
}
END_TEST

/* A dead first seed is skipped; the slot map comes from the next one. */
START_TEST(dead_seed_skipped)
{
    int p[NPRIMARIES];
    primaries(p);
    char seeds[128];
    snprintf(seeds, sizeof(seeds), "127.0.0.1:%d,127.0.0.1:%d", h_free_port(), p[2]);
    gw_start(seeds, (const char *)NULL);
    expect_ready(20000, "with a dead first seed");
    char acct[64], ch[128];
    account_on(p[0], "ds", acct, sizeof(acct));
    chan(ch, sizeof(ch), acct);
    struct ws c;
    h_ck_open_client(&c, G.port, acct, NULL, RECV_MS);
    wait_subscribed(ch, 10000);
    ck_assert_int_eq(spublish(ch, "via-seed-2"), 1);
    expect_body(&c, acct, "via-seed-2", NULL);
    ws_close(&c, 1000);
    gw_down();
}
END_TEST

/* ======================================================================= */
/* failover                                                                 */
/* ======================================================================= */

/* kill -9 of the primary that owns a connected account's slot (and
 * notify:broadcast's): nobody is disconnected, /readyz is 503 until the
 * replica is promoted and the gateway resubscribed, then delivery resumes;
 * notify_publish messages accepted meanwhile arrive once, in order. */
START_TEST(failover_keeps_clients)
{
    int p[NPRIMARIES];
    primaries(p);
    int victim = c_key_owner(&CL, "notify:broadcast");
    ck_assert_int_gt(victim, 0);
    int other = victim == p[0] ? p[1] : p[0];
    char av[64], ao[64], chv[128], cho[128];
    account_on(victim, "fv", av, sizeof(av));
    account_on(other, "fo", ao, sizeof(ao));
    chan(chv, sizeof(chv), av);
    chan(cho, sizeof(cho), ao);
    char seeds[128];
    snprintf(seeds, sizeof(seeds), "127.0.0.1:%d,127.0.0.1:%d", victim, other);
    gw_start(seeds, (const char *)NULL);
    expect_ready(20000, "after start");

    struct ws cv, co;
    h_ck_open_client(&cv, G.port, av, NULL, RECV_MS);
    h_ck_open_client(&co, G.port, ao, NULL, RECV_MS);
    wait_subscribed(chv, 10000);
    wait_subscribed(cho, 10000);
    wait_subscribed("notify:broadcast", 10000);
    expect_ready(5000, "with every account subscribed");
    char *id0 = publish(av, "before");
    expect_body(&cv, av, "before", id0);
    ck_assert_int_eq(c_wait_replicated(victim, 2000), 1);
    char pkey[128];
    snprintf(pkey, sizeof(pkey), "notify:presence:{%s}", av);
    wait_exists(pkey, 1, 5000);
    ck_assert_int_eq(c_wait_replicated(victim, 2000), 1);

    int replica = c_replica_of(&CL, victim);
    ck_assert_int_gt(replica, 0);
    int slot = c_keyslot(&CL, chv);
    long long t_kill = h_mono_ms();
    fprintf(stderr, "failover: kill -9 of primary 127.0.0.1:%d (replica 127.0.0.1:%d)\n", victim,
            replica);
    ck_assert_int_eq(c_kill(&CL, victim), 0);

    /* /readyz turns 503 */
    int saw_503 = h_http_wait_status(G.port, "/readyz", 503, 5000);
    long long t_503 = h_mono_ms() - t_kill;
    /* the other shard keeps delivering meanwhile (SPUBLISH works during the
     * outage) */
    ck_assert_int_eq(spublish(cho, "other-during"), 1);
    expect_body(&co, ao, "other-during", NULL);

    /* FCALL retried until the promoted replica accepts it, then two more
     * right away: published while the gateway was switching */
    char *ids[3];
    ids[0] = publish_on_retry(replica, av, "during-0", SWITCH_MS);
    long long t_accept = h_mono_ms() - t_kill;
    long long subs_at_accept = shardnumsub(replica, chv);
    int ready_at_accept = readyz();
    ids[1] = publish_on_retry(replica, av, "during-1", 1000);
    ids[2] = publish_on_retry(replica, av, "during-2", 1000);
    int owner = c_wait_promoted(&CL, victim, slot, SWITCH_MS, NULL);
    long long took = h_mono_ms() - t_kill;
    ck_assert_int_eq(owner, replica);
    if (!h_http_wait_status(G.port, "/readyz", 200, SWITCH_MS)) {
        char *lines = log_lines("ubscri", "cluster");
        ck_abort_msg("/readyz not 200 again within %d ms of the promotion (now %d); gateway "
                     "log:\n%s",
                     SWITCH_MS, readyz(), lines);
    }
    long long t_ready = h_mono_ms() - t_kill;
    fprintf(stderr,
            "failover: /readyz 503 %s after %lld ms; first FCALL accepted by the promoted "
            "replica after %lld ms (SHARDNUMSUB there then %lld, readyz %d: %s); promotion "
            "agreed by all nodes after %lld ms; /readyz 200 after %lld ms\n",
            saw_503 ? "seen" : "NOT seen", t_503, t_accept, subs_at_accept, ready_at_accept,
            subs_at_accept == 0 ? "published before the gateway resubscribed"
                                : "the gateway was already resubscribed",
            took, t_ready);
    ck_assert_msg(saw_503, "/readyz never 503 after the primary's loss");

    /* From here on, checks are soft: every problem is listed, then the test
     * fails with all of them. */
    /* messages of the switch, once and in order, before live ones */
    char got[3][512];
    int ngot = 0;
    long long deadline = h_mono_ms() + RECV_MS;
    while (ngot < 3 && h_mono_ms() < deadline) {
        struct h_msg m;
        if (!h_msg_recv(&cv, &m, (int)(deadline - h_mono_ms())))
            break;
        snprintf(got[ngot++], sizeof(got[0]), "%s", m.text);
        h_msg_free(&m);
    }
    for (int i = 0; i < 3; i++) {
        char body[32], want[96];
        snprintf(body, sizeof(body), "during-%d", i);
        snprintf(want, sizeof(want), "{\"id\":\"%s\",", ids[i]);
        if (i >= ngot)
            soft_fail("%s: notify_publish '%s' (id %s, FCALLed during the failover) never "
                      "arrived (%d of 3 came in %d ms)",
                      av, body, ids[i], ngot, RECV_MS);
        else if (strncmp(got[i], want, strlen(want)) || !strstr(got[i], body))
            soft_fail("%s: message %d after the failover: %s, want id %s body %s", av, i + 1,
                      got[i], ids[i], body);
    }
    if (ngot < 3) {
        char *metrics = NULL;
        int st = h_http_get(G.port, "/metrics", &metrics);
        fprintf(stderr,
                "failover: /metrics (status %d) lines about replay, redis, subscriptions:\n", st);
        for (char *line = metrics ? strtok(metrics, "\n") : NULL; line; line = strtok(NULL, "\n"))
            if (line[0] != '#' &&
                (strstr(line, "replay") || strstr(line, "redis") || strstr(line, "subscri")))
                fprintf(stderr, "  %s\n", line);
        free(metrics);
    }
    long long xlen = -1;
    redisReply *r = c_cmd_port(replica, "XLEN notify:stream:{%s}", av);
    if (r && r->type == REDIS_REPLY_INTEGER)
        xlen = r->integer;
    freeReplyObject(r);
    fprintf(stderr, "failover: XLEN notify:stream:{%s} on the promoted primary: %lld\n", av, xlen);

    char *heard = spublish_until_heard(chv, "live", 10000);
    soft_body(&cv, av, heard, NULL, "live SPUBLISH to the promoted primary");
    if (shardnumsub(replica, chv) != 1)
        soft_fail("SHARDNUMSUB %s on the promoted primary: %lld, want 1", chv,
                  shardnumsub(replica, chv));
    char *id4 = publish(av, "after");
    soft_body(&cv, av, "after", id4, "notify_publish after the failover");
    soft_quiet(&cv, av, QUIET_MS);

    /* broadcast moved with the shard; the other account is unaffected */
    long long nb = -1;
    deadline = h_mono_ms() + 10000;
    while ((nb = spublish("notify:broadcast", "all-after")) < 1 && h_mono_ms() < deadline)
        h_sleep_ms(100);
    if (nb < 1) {
        soft_fail("notify:broadcast has no subscriber on its new owner 127.0.0.1:%d",
                  c_key_owner(&CL, "notify:broadcast"));
    } else {
        soft_body(&cv, av, "all-after", NULL, "broadcast after the failover");
        soft_body(&co, ao, "all-after", NULL, "broadcast after the failover");
    }
    if (spublish(cho, "other-after") != 1)
        soft_fail("%s: no subscriber after the failover", cho);
    soft_body(&co, ao, "other-after", NULL, "SPUBLISH on the unaffected shard");
    expect_alive(&cv, av);
    expect_alive(&co, ao);

    /* presence lives on on the promoted primary, refreshed past its ttl */
    h_sleep_ms(PRESENCE_TTL * 1000 + 1500);
    int powner = -1;
    long long ex = exists_on_owner(pkey, &powner);
    if (ex != 1 || powner != replica)
        soft_fail("EXISTS %s on 127.0.0.1:%d (the promoted primary is 127.0.0.1:%d): %lld, want "
                  "1 (%d s after the failover)",
                  pkey, powner, replica, ex, PRESENCE_TTL + 1);
    r = c_cmd_port(replica, "FUNCTION LIST LIBRARYNAME notify");
    if (!(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1))
        soft_fail("no notify library on the promoted primary");
    freeReplyObject(r);
    soft_quiet(&cv, av, 100);
    soft_quiet(&co, ao, 100);
    expect_alive(&cv, av);
    expect_alive(&co, ao);

    ws_close(&cv, 1000);
    ws_close(&co, 1000);
    free(id0);
    free(id4);
    free(heard);
    for (int i = 0; i < 3; i++)
        free(ids[i]);
    soft_check();
}
END_TEST

/* ======================================================================= */
/* reshard                                                                  */
/* ======================================================================= */

/* Messages FCALLed on the new owner while the slot is half moved (dst
 * owns it, src has not let it go, so the gateway's subscription is still
 * on src): see c_move_slot's between. */
static struct {
    const char *account;
    int dst;
    int n;
    char *ids[2];
    long long dst_subs; /* SHARDNUMSUB on dst then */
} window;

static void publish_in_window(void *arg)
{
    (void)arg;
    char key[128];
    snprintf(key, sizeof(key), "notify:stream:{%s}", window.account);
    char ch[128];
    chan(ch, sizeof(ch), window.account);
    window.dst_subs = shardnumsub(window.dst, ch);
    for (int i = 0; i < 2; i++) {
        char body[32];
        snprintf(body, sizeof(body), "window-%d", i + 1);
        char *env = envelope(body);
        redisReply *r = c_cmd_port(window.dst, "FCALL notify_publish 1 %s %s", key, env);
        free(env);
        if (r && r->type == REDIS_REPLY_STRING)
            window.ids[window.n++] = strdup(r->str);
        else
            fprintf(stderr, "reshard: FCALL on the importing owner 127.0.0.1:%d: %s\n", window.dst,
                    r && r->str ? r->str : "I/O error");
        freeReplyObject(r);
    }
}

/* After the move of a's slot from src to dst (how: by move()), delivery to
 * a works (sunsubscribe push, resubscribe on the new owner), messages of
 * the switch are not lost, presence follows; b (on another shard) is
 * unaffected. */
static void check_slot_move(const char *a, int src, int dst, const char *b,
                            int (*move)(int slot, int src, int dst))
{
    char cha[128], chb[128], pkey[128];
    chan(cha, sizeof(cha), a);
    chan(chb, sizeof(chb), b);
    snprintf(pkey, sizeof(pkey), "notify:presence:{%s}", a);
    char seeds[128];
    seeds_of(seeds, sizeof(seeds), 2);
    gw_start(seeds, (const char *)NULL);
    expect_ready(20000, "after start");
    struct ws ca, cb;
    h_ck_open_client(&ca, G.port, a, NULL, RECV_MS);
    h_ck_open_client(&cb, G.port, b, NULL, RECV_MS);
    wait_subscribed(cha, 10000);
    wait_subscribed(chb, 10000);
    ck_assert_int_eq(c_key_owner(&CL, cha), src);
    expect_ready(5000, "with every account subscribed");
    char *id0 = publish(a, "before");
    expect_body(&ca, a, "before", id0);
    wait_exists(pkey, 1, 5000);

    int slot = c_keyslot(&CL, cha);
    long long t0 = h_mono_ms();
    memset(&window, 0, sizeof(window));
    window.account = a;
    window.dst = dst;
    window.dst_subs = -1;
    ck_assert_int_eq(move(slot, src, dst), slot);
    ck_assert_int_eq(c_key_owner(&CL, cha), dst);
    fprintf(stderr, "reshard: slot %d of %s moved 127.0.0.1:%d -> 127.0.0.1:%d in %lld ms\n", slot,
            a, src, dst, h_mono_ms() - t0);
    if (window.n)
        fprintf(stderr,
                "reshard: %d notify_publish accepted by the new owner before the old one let the "
                "slot go (SHARDNUMSUB there then: %lld)\n",
                window.n, window.dst_subs);
    /* published right after the move, maybe before the gateway followed */
    char *id1 = publish(a, "moved-1");
    char *id2 = publish(a, "moved-2");
    long long deadline = h_mono_ms() + SWITCH_MS;
    while (shardnumsub(dst, cha) < 1 && h_mono_ms() < deadline)
        h_sleep_ms(50);
    if (shardnumsub(dst, cha) < 1) {
        char *lines = log_lines("ubscri", "cluster");
        ck_abort_msg("%s not resubscribed on the new owner 127.0.0.1:%d within %d ms (old owner "
                     "SHARDNUMSUB %lld); gateway log:\n%s",
                     cha, dst, SWITCH_MS, shardnumsub(src, cha), lines);
    }
    fprintf(stderr, "reshard: resubscribed on 127.0.0.1:%d after %lld ms\n", dst, h_mono_ms() - t0);
    expect_ready(SWITCH_MS, "after the slot move");

    /* soft checks from here: the messages of the switch, once, in order */
    const char *want_body[4], *want_id[4];
    int nwant = 0;
    for (int i = 0; i < window.n; i++) {
        want_body[nwant] = i ? "window-2" : "window-1";
        want_id[nwant++] = window.ids[i];
    }
    want_body[nwant] = "moved-1";
    want_id[nwant++] = id1;
    want_body[nwant] = "moved-2";
    want_id[nwant++] = id2;
    for (int i = 0; i < nwant; i++) {
        char what[96];
        snprintf(what, sizeof(what), "message %d of %d published during the slot move", i + 1,
                 nwant);
        soft_body(&ca, a, want_body[i], want_id[i], what);
    }
    char *heard = spublish_until_heard(cha, "live", 10000);
    soft_body(&ca, a, heard, NULL, "live SPUBLISH on the new owner");
    char *id3 = publish(a, "after");
    soft_body(&ca, a, "after", id3, "notify_publish after the move");
    soft_quiet(&ca, a, QUIET_MS);
    if (spublish(chb, "b-after") != 1)
        soft_fail("%s (another shard) lost its subscriber", chb);
    soft_body(&cb, b, "b-after", NULL, "SPUBLISH on another shard");
    expect_alive(&ca, a);
    expect_alive(&cb, b);

    /* presence moved with the slot and is refreshed there past its ttl */
    h_sleep_ms(PRESENCE_TTL * 1000 + 1500);
    int powner = -1;
    long long ex = exists_on_owner(pkey, &powner);
    if (ex != 1 || powner != dst)
        soft_fail("EXISTS %s on 127.0.0.1:%d (new owner 127.0.0.1:%d): %lld, want 1 after %d s",
                  pkey, powner, dst, ex, PRESENCE_TTL + 1);
    ws_close(&ca, 1000);
    ws_close(&cb, 1000);
    deadline = h_mono_ms() + PRESENCE_TTL * 1000 + 3000;
    while ((ex = exists_on_owner(pkey, &powner)) != 0 && h_mono_ms() < deadline)
        h_sleep_ms(100);
    if (ex != 0)
        soft_fail("EXISTS %s on 127.0.0.1:%d: %lld, want 0 after the disconnect", pkey, powner, ex);
    free(id0);
    free(id1);
    free(id2);
    free(id3);
    free(heard);
    for (int i = 0; i < window.n; i++)
        free(window.ids[i]);
    soft_check();
}

static int move_setslot(int slot, int src, int dst)
{
    (void)src;
    return c_move_slot(&CL, slot, dst, 20000, publish_in_window, NULL) == 0 ? slot : -1;
}

static int move_redis_cli(int slot, int src, int dst)
{
    (void)slot;
    return c_reshard_cli(&CL, src, dst, 60000);
}

START_TEST(slot_migration_keeps_delivery)
{
    int p[NPRIMARIES];
    primaries(p);
    char a[64], b[64];
    account_on(p[0], "mg", a, sizeof(a));
    account_on(p[1], "mb", b, sizeof(b));
    check_slot_move(a, p[0], p[2], b, move_setslot);
}
END_TEST

START_TEST(reshard_cli_keeps_delivery)
{
    int p[NPRIMARIES];
    primaries(p);
    int low = c_lowest_slot(&CL, p[1]);
    char a[64], b[64];
    ck_assert_int_eq(c_find_account_in_slot(&CL, "rs", low, a, sizeof(a)), low);
    account_on(p[2], "rb", b, sizeof(b));
    check_slot_move(a, p[1], p[0], b, move_redis_cli);
}
END_TEST

static Suite *cluster_suite(void)
{
    Suite *s = suite_create("cluster");

    TCase *utils = tcase_create("utils");
    tcase_add_checked_fixture(utils, fresh_cluster_up, fresh_cluster_down);
    tcase_set_timeout(utils, 240);
    tcase_add_test(utils, utils_routing_and_slot_moves);
    tcase_add_test(utils, utils_failover);
    suite_add_tcase(s, utils);

    TCase *usage = tcase_create("usage");
    tcase_set_timeout(usage, 60);
    tcase_add_test(usage, usage_redis_and_cluster_exit_2);
    suite_add_tcase(s, usage);

    TCase *gw = tcase_create("gateway");
    tcase_add_unchecked_fixture(gw, shared_cluster_up, shared_cluster_down);
    tcase_add_checked_fixture(gw, gateway_setup, gw_down);
    tcase_set_timeout(gw, 180);
    tcase_add_test(gw, delivery_per_shard);
    tcase_add_test(gw, history_and_since);
    tcase_add_test(gw, presence_and_registry);
    tcase_add_test(gw, dead_seed_skipped);
    suite_add_tcase(s, gw);

    TCase *fo = tcase_create("failover");
    tcase_add_checked_fixture(fo, fresh_cluster_up, fresh_cluster_down);
    tcase_set_timeout(fo, 300);
    tcase_add_test(fo, failover_keeps_clients);
    suite_add_tcase(s, fo);

    TCase *rs = tcase_create("reshard");
    tcase_add_checked_fixture(rs, fresh_cluster_up, fresh_cluster_down);
    tcase_set_timeout(rs, 300);
    tcase_add_test(rs, slot_migration_keeps_delivery);
    tcase_add_test(rs, reshard_cli_keeps_delivery);
    suite_add_tcase(s, rs);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cluster_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
