/* test_presence_events: online and offline transitions in
 * notify:presence:events, bulk presence and signed webhooks (README.md
 * "Presence events", "Webhooks"), against real redis-server processes (one
 * Redis, and a Redis Cluster of three primaries), real gateway processes and
 * a real HTTP receiver (tests/integration/webhook_receiver.py).
 *
 * Every gateway runs with --auth none --presence-events; each test of the
 * "single" case starts its own Redis, the "cluster" case shares one cluster
 * (accounts differ per test). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_util.h"
#include "harness.h"

#define STREAM "notify:presence:events"
#define MAX_GW 4

/* Where the events live: one Redis, or a cluster. */
static struct h_redis R;
static struct c_cluster CL;
static int cluster_mode, cluster_up;
static char seeds[256];
static struct h_gw G[MAX_GW];

/* ---- fixtures ----------------------------------------------------------- */

static void single_setup(void)
{
    cluster_mode = 0;
    memset(G, 0, sizeof(G));
    ck_assert_msg(h_redis_start(&R) == 0, "cannot start redis-server");
}

/* Stops the gateways, asserting no sanitizer report in their stderr. */
static void gws_down(void)
{
    for (int i = 0; i < MAX_GW; i++) {
        if (!G[i].proc.dir[0])
            continue;
        char *log = h_gw_stderr(&G[i]);
        h_proc_cleanup(&G[i].proc);
        int clean = !strstr(log, "AddressSanitizer") && !strstr(log, "runtime error:");
        free(log);
        ck_assert_msg(clean, "sanitizer report in gateway %d's stderr", i);
    }
}

static void single_teardown(void)
{
    gws_down();
    h_redis_stop(&R);
}

/* Unchecked (in the runner): one cluster for every test of the case. */
static void cluster_create(void)
{
    cluster_up =
        c_cluster_start_shape(&CL, 3, 0, 120000) == 0 && c_seeds(&CL, 3, seeds, sizeof(seeds)) == 0;
}

static void cluster_destroy(void)
{
    if (cluster_up)
        c_cluster_stop(&CL);
    cluster_up = 0;
}

static void cluster_setup(void)
{
    cluster_mode = 1;
    memset(G, 0, sizeof(G));
    ck_assert_msg(cluster_up, "the shared cluster could not be created (see stderr)");
}

static void cluster_teardown(void)
{
    gws_down();
}

/* ---- Redis, either way -------------------------------------------------- */

/* One command whose key (argv[1]) picks the node. */
static redisReply *cmd(int argc, const char **argv)
{
    if (cluster_mode)
        return c_cmd_key(&CL, argv[1], NULL, argc, argv);
    return c_cmd_argv(R.port, argc, argv);
}

/* Starts gateway i with --auth none --presence-events, the backend's
 * Redis flags and the extra flags (NULL-terminated). */
static void gw(int i, ...)
{
    const char *args[40];
    int n = 0;
    if (cluster_mode) {
        args[n++] = "--redis-cluster";
        args[n++] = seeds;
    }
    const char *fixed[] = {"--auth", "none", "--presence-events", "--heartbeat-timeout", "120"};
    for (size_t k = 0; k < sizeof(fixed) / sizeof(fixed[0]); k++)
        args[n++] = fixed[k];
    va_list ap;
    va_start(ap, i);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 39)
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    ck_assert_msg(h_gw_start(&G[i], cluster_mode ? NULL : &R, args) == 0,
                  "gateway %d did not start", i);
}

/* ---- the events stream -------------------------------------------------- */

struct ev {
    char id[32];
    char account[130];
    int online; /* 1 online, 0 offline */
    long long at, seq;
};

/* Every entry of the stream for account (all if NULL), in order; *n set.
 * malloc'd. */
static struct ev *events(const char *account, int *n)
{
    const char *argv[] = {"XRANGE", STREAM, "-", "+"};
    redisReply *r = cmd(4, argv);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
    struct ev *out = calloc(r->elements + 1, sizeof(*out));
    *n = 0;
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *e = r->element[i], *f = e->element[1];
        struct ev v;
        memset(&v, 0, sizeof(v));
        snprintf(v.id, sizeof(v.id), "%s", e->element[0]->str);
        int fields = 0;
        for (size_t k = 0; k + 1 < f->elements; k += 2) {
            const char *name = f->element[k]->str, *val = f->element[k + 1]->str;
            if (!strcmp(name, "account"))
                snprintf(v.account, sizeof(v.account), "%s", val), fields++;
            else if (!strcmp(name, "state")) {
                ck_assert_msg(!strcmp(val, "online") || !strcmp(val, "offline"), "state %s", val);
                v.online = !strcmp(val, "online"), fields++;
            } else if (!strcmp(name, "at"))
                v.at = atoll(val), fields++;
            else if (!strcmp(name, "seq"))
                v.seq = atoll(val), fields++;
        }
        ck_assert_msg(fields == 4, "entry %s lacks a field", v.id);
        if (!account || !strcmp(account, v.account))
            out[(*n)++] = v;
    }
    freeReplyObject(r);
    return out;
}

/* Asserts that account's events alternate, starting online, with seq
 * growing; returns how many there are and the last state in *last (-1
 * none). */
static int check_alternating(const char *account, int *last)
{
    int n;
    struct ev *e = events(account, &n);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(e[i].online == (i % 2 == 0), "%s: event %d (%s) is %s twice in a row",
                      account, i, e[i].id, e[i].online ? "online" : "offline");
        if (i)
            ck_assert_msg(e[i].seq > e[i - 1].seq, "%s: seq %lld after %lld", account, e[i].seq,
                          e[i - 1].seq);
    }
    *last = n ? e[n - 1].online : -1;
    free(e);
    return n;
}

/* Waits until account has want events; returns ms waited, -1 on timeout. */
static long long wait_events(const char *account, int want, int timeout_ms)
{
    long long t0 = h_mono_ms();
    for (;;) {
        int n;
        free(events(account, &n));
        if (n >= want)
            return h_mono_ms() - t0;
        if (h_mono_ms() - t0 > timeout_ms)
            return -1;
        h_sleep_ms(20);
    }
}

static int count_events(const char *account)
{
    int n;
    free(events(account, &n));
    return n;
}

static void open_as(struct ws *c, int port, const char *account)
{
    h_ck_open_as(c, port, account);
}

/* ---- the single-Redis and cluster tests --------------------------------- */

/* The first connection anywhere writes online, the last one gone offline,
 * once each; more connections in between write nothing. */
START_TEST(online_offline_on_connect_and_close)
{
    gw(0, "--presence-debounce-ms", "0", NULL);
    gw(1, "--presence-debounce-ms", "0", NULL);
    const char *acct = cluster_mode ? "ev-c1" : "ev-s1";
    long long before = h_wall_ms();
    struct ws a, b, c;
    open_as(&a, G[0].port, acct);
    ck_assert_msg(wait_events(acct, 1, 3000) >= 0, "no online event");
    open_as(&b, G[0].port, acct);
    open_as(&c, G[1].port, acct);
    h_sleep_ms(300);
    int n;
    struct ev *e = events(acct, &n);
    ck_assert_int_eq(n, 1);
    ck_assert(e[0].online);
    ck_assert_msg(e[0].at >= before - 1000 && e[0].at <= h_wall_ms() + 1000, "at %lld", e[0].at);
    ck_assert_int_gt(e[0].seq, 0);
    free(e);
    ws_close(&a, 1000);
    ws_close(&c, 1000);
    h_sleep_ms(300);
    ck_assert_int_eq(count_events(acct), 1); /* b is still there */
    ws_close(&b, 1000);
    ck_assert_msg(wait_events(acct, 2, 3000) >= 0, "no offline event");
    int last;
    ck_assert_int_eq(check_alternating(acct, &last), 2);
    ck_assert_int_eq(last, 0);
    /* and back */
    open_as(&a, G[1].port, acct);
    ck_assert_msg(wait_events(acct, 3, 3000) >= 0, "no second online event");
    ws_close(&a, 1000);
    ck_assert_msg(wait_events(acct, 4, 3000) >= 0, "no second offline event");
    ck_assert_int_eq(check_alternating(acct, &last), 4);
    /* a clean shutdown takes its accounts offline at once */
    open_as(&a, G[1].port, acct);
    ck_assert(wait_events(acct, 5, 3000) >= 0);
    double written1 = h_ck_metric(G[1].port, "notify_presence_events_total");
    ck_assert_int_eq(h_gw_stop(&G[1], 15000), 0);
    ck_assert_msg(wait_events(acct, 6, 3000) >= 0, "no offline after SIGTERM");
    ck_assert_int_eq(check_alternating(acct, &last), 6);
    ws_drop(&a);
    double written = h_ck_metric(G[0].port, "notify_presence_events_total") + written1;
    ck_assert_msg(written >= 4, "notify_presence_events_total %g", written);
}
END_TEST

/* kill -9 of the node holding an account: offline within the TTL plus a
 * few seconds, written once although both other nodes sweep; an account
 * also held by a surviving node stays online. */
START_TEST(offline_after_kill_within_ttl)
{
    gw(0, "--presence-ttl", "3", "--presence-debounce-ms", "0", NULL);
    gw(1, "--presence-ttl", "3", "--presence-debounce-ms", "0", NULL);
    gw(2, "--presence-ttl", "3", "--presence-debounce-ms", "0", NULL);
    const char *gone = cluster_mode ? "ev-c2" : "ev-s2";
    const char *kept = cluster_mode ? "ev-c3" : "ev-s3";
    struct ws a, b, c;
    open_as(&a, G[0].port, gone);
    open_as(&b, G[0].port, kept);
    open_as(&c, G[1].port, kept);
    ck_assert(wait_events(gone, 1, 3000) >= 0);
    ck_assert(wait_events(kept, 1, 3000) >= 0);
    h_sleep_ms(1200); /* the victim's incarnation refreshed at least once */
    long long killed = h_mono_ms();
    h_gw_kill(&G[0]);
    long long waited = wait_events(gone, 2, 3000 + 4000);
    ck_assert_msg(waited >= 0, "no offline event within ttl + 4 s of kill -9");
    long long took = h_mono_ms() - killed;
    fprintf(stderr, "presence-events: offline %lld ms after kill -9 (ttl 3 s)\n", took);
    ck_assert_msg(took >= 1500, "offline after %lld ms: before the TTL could have lapsed", took);
    h_sleep_ms(1500); /* both survivors sweep again */
    int last;
    ck_assert_int_eq(check_alternating(gone, &last), 2);
    ck_assert_int_eq(last, 0);
    ck_assert_int_eq(check_alternating(kept, &last), 1);
    ck_assert_int_eq(last, 1);
    ws_close(&c, 1000);
    ck_assert(wait_events(kept, 2, 3000) >= 0);
    ws_drop(&a);
    ws_drop(&b);
}
END_TEST

/* A node whose Redis connections are cut comes back under a new
 * incarnation: accounts it held throughout write nothing (not even with
 * no debounce), one that left meanwhile goes offline, and the old
 * incarnation is gone at once, not after the TTL. */
START_TEST(reconnect_takes_a_new_incarnation)
{
    gw(0, "--presence-debounce-ms", "0", NULL);
    struct ws x, y;
    open_as(&x, G[0].port, "ev-s6");
    open_as(&y, G[0].port, "ev-s7");
    ck_assert(wait_events("ev-s6", 1, 3000) >= 0);
    ck_assert(wait_events("ev-s7", 1, 3000) >= 0);
    const char *nodes[] = {"ZRANGE", "notify:pev:{notify:presence:events}:nodes", "0", "-1"};
    redisReply *before = cmd(4, nodes);
    ck_assert_int_eq(before->elements, 1);
    char old[200];
    snprintf(old, sizeof(old), "%s", before->element[0]->str);
    freeReplyObject(before);
    const char *kill[] = {"CLIENT", "KILL", "TYPE", "normal"};
    const char *kill_sub[] = {"CLIENT", "KILL", "TYPE", "pubsub"};
    freeReplyObject(c_cmd_argv(R.port, 4, kill_sub));
    ws_close(&y, 1000); /* while the node may be away */
    freeReplyObject(c_cmd_argv(R.port, 4, kill));
    ck_assert_msg(wait_events("ev-s7", 2, 8000) >= 0, "no offline for the account that left");
    h_sleep_ms(1500);
    ck_assert_int_eq(count_events("ev-s6"), 1);
    redisReply *after = cmd(4, nodes);
    ck_assert_int_eq(after->elements, 1);
    ck_assert_msg(strcmp(after->element[0]->str, old) != 0, "still the incarnation %s", old);
    freeReplyObject(after);
    ws_close(&x, 1000);
    ck_assert(wait_events("ev-s6", 2, 3000) >= 0);
    int last;
    ck_assert_int_eq(check_alternating("ev-s6", &last), 2);
    ck_assert_int_eq(check_alternating("ev-s7", &last), 2);
}
END_TEST

/* An offline-online flap within --presence-debounce-ms writes nothing; an
 * offline that lasts is written after the debounce, with at = when the
 * last connection went. */
START_TEST(debounce)
{
    gw(0, "--presence-debounce-ms", "1500", NULL);
    gw(1, "--presence-debounce-ms", "1500", NULL);
    const char *acct = cluster_mode ? "ev-c4" : "ev-s4";
    struct ws a;
    open_as(&a, G[0].port, acct);
    ck_assert(wait_events(acct, 1, 3000) >= 0);
    for (int i = 0; i < 3; i++) { /* reloads, the last one through another node */
        ws_close(&a, 1000);
        h_sleep_ms(300);
        open_as(&a, G[i == 2].port, acct);
    }
    h_sleep_ms(2500);
    ck_assert_int_eq(count_events(acct), 1);
    long long closed = h_wall_ms();
    long long t0 = h_mono_ms();
    ws_close(&a, 1000);
    h_sleep_ms(1000);
    ck_assert_msg(count_events(acct) == 1, "offline written before the debounce");
    ck_assert(wait_events(acct, 2, 4000) >= 0);
    long long took = h_mono_ms() - t0;
    ck_assert_msg(took >= 1400, "offline %lld ms after the close", took);
    int n;
    struct ev *e = events(acct, &n);
    ck_assert_int_eq(n, 2);
    ck_assert(!e[1].online);
    ck_assert_msg(e[1].at >= closed - 500 && e[1].at <= closed + 500,
                  "offline at %lld, the close was at %lld", e[1].at, closed);
    free(e);
}
END_TEST

/* Connections of one account on three nodes opening and closing at the
 * same time, a few hundred rounds: the states still alternate (each
 * transition written once), and at every quiet point the last one is the
 * truth. */
struct churn {
    int port;
    int rounds;
    const char *account;
    unsigned seed;
    int failures;
};

static void *churn_thread(void *arg)
{
    struct churn *ch = arg;
    char path[200];
    snprintf(path, sizeof(path), "/ws?user_id=%s", ch->account);
    for (int i = 0; i < ch->rounds; i++) {
        struct ws c;
        if (ws_connect(&c, ch->port, path, NULL, 5000) != 101) {
            ch->failures++;
            continue;
        }
        char *reg = ws_recv_text(&c, 5000);
        if (!reg)
            ch->failures++;
        free(reg);
        int pause = (int)(rand_r(&ch->seed) % 4);
        if (pause)
            h_sleep_ms(pause);
        if (rand_r(&ch->seed) % 2)
            ws_close(&c, 1000);
        else
            ws_drop(&c);
    }
    return NULL;
}

static void churn(const char *acct, int rounds)
{
    pthread_t t[3];
    struct churn ch[3];
    for (int i = 0; i < 3; i++) {
        ch[i] = (struct churn){.port = G[i].port,
                               .rounds = rounds,
                               .account = acct,
                               .seed = (unsigned)(i * 7919 + rounds)};
        ck_assert_int_eq(pthread_create(&t[i], NULL, churn_thread, &ch[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        ck_assert_msg(ch[i].failures == 0, "node %d: %d connections failed", i, ch[i].failures);
    }
}

/* Waits until account's last event is want and no other follows for
 * 500 ms; asserts alternation; returns the number of events. */
static int settle(const char *acct, int want, int timeout_ms)
{
    long long t0 = h_mono_ms();
    int last = -1, n = 0;
    for (;;) {
        n = check_alternating(acct, &last);
        ck_assert_msg(h_mono_ms() - t0 < timeout_ms, "%s: last state %d, want %d after %d ms", acct,
                      last, want, timeout_ms);
        if (last == want) {
            h_sleep_ms(500);
            int n2 = check_alternating(acct, &last);
            if (n2 == n && last == want)
                return n;
            continue;
        }
        h_sleep_ms(50);
    }
}

START_TEST(alternation_under_concurrent_churn)
{
    for (int i = 0; i < 3; i++)
        gw(i, "--presence-debounce-ms", "0", NULL);
    const char *acct = cluster_mode ? "ev-c5" : "ev-s5";
    int total = 0;
    for (int phase = 0; phase < 4; phase++) {
        churn(acct, 75);
        total = settle(acct, 0, 5000);
        /* each node leaves one connection open: online, once */
        struct ws keep[3];
        for (int i = 0; i < 3; i++)
            open_as(&keep[i], G[i].port, acct);
        total = settle(acct, 1, 5000);
        churn(acct, 25); /* nothing may change while they are held */
        ck_assert_int_eq(settle(acct, 1, 5000), total);
        for (int i = 0; i < 3; i++)
            ws_close(&keep[i], 1000);
        total = settle(acct, 0, 5000);
    }
    fprintf(stderr, "presence-events: %d events over 4 x 100 rounds on 3 nodes, alternating\n",
            total);
    ck_assert_int_ge(total, 8);
}
END_TEST

/* Bad webhook flags exit 2 with one line naming the flag. */
START_TEST(bad_flags_exit_2)
{
    const char *cases[][6] = {
        {"--webhook-url", "https://example.com/x", "--webhook-secret", "s", "webhook-url"},
        {"--webhook-url", "http://", "--webhook-secret", "s", "webhook-url"},
        {"--webhook-url", "http://127.0.0.1:1/x", NULL, NULL, "webhook-secret"},
        {"--presence-debounce-ms", "-1", NULL, NULL, "presence-debounce-ms"},
        {"--presence-events-max-len", "0", NULL, NULL, "presence-events-max-len"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *args[] = {"--auth",    "none",      cases[i][0], cases[i][1],
                              cases[i][2], cases[i][3], NULL};
        char *err = NULL;
        ck_assert_int_eq(h_gw_run(args, NULL, 5000, &err), 2);
        ck_assert_msg(strstr(err, cases[i][4]) && h_count(err, "\n") == 1, "case %zu: %s", i, err);
        free(err);
    }
}
END_TEST

/* The primary holding the events stream fails over: the gateways follow,
 * an account held throughout writes nothing more, and transitions after
 * the promotion are written on the new primary, still alternating. */
static void failover_setup(void)
{
    cluster_mode = 1;
    memset(G, 0, sizeof(G));
    cluster_up = c_cluster_start(&CL, 120000) == 0 && c_seeds(&CL, 3, seeds, sizeof(seeds)) == 0;
    ck_assert_msg(cluster_up, "cannot create the cluster");
}

static void failover_teardown(void)
{
    gws_down();
    c_cluster_stop(&CL);
    cluster_up = 0;
}

START_TEST(events_across_a_failover)
{
    gw(0, "--presence-debounce-ms", "0", NULL);
    gw(1, "--presence-debounce-ms", "0", NULL);
    struct ws held, gone;
    open_as(&held, G[0].port, "ev-f1");
    open_as(&gone, G[1].port, "ev-f2");
    ck_assert(wait_events("ev-f1", 1, 3000) >= 0);
    ck_assert(wait_events("ev-f2", 1, 3000) >= 0);
    int primary = c_key_owner(&CL, STREAM), slot = c_keyslot(&CL, STREAM);
    ck_assert_int_gt(primary, 0);
    ck_assert_int_eq(c_wait_replicated(primary, 5000), 1);
    ck_assert_int_eq(c_kill(&CL, primary), 0);
    ck_assert_msg(c_wait_promoted(&CL, primary, slot, 30000, NULL) > 0, "no promotion");
    ws_close(&gone, 1000); /* after the promotion, maybe before the gateways follow */
    ck_assert_msg(wait_events("ev-f2", 2, 15000) >= 0, "no offline after the failover");
    h_sleep_ms(2000);
    ck_assert_int_eq(count_events("ev-f1"), 1);
    ws_close(&held, 1000);
    ck_assert(wait_events("ev-f1", 2, 5000) >= 0);
    open_as(&gone, G[0].port, "ev-f2");
    ck_assert(wait_events("ev-f2", 3, 5000) >= 0);
    int last;
    ck_assert_int_eq(check_alternating("ev-f1", &last), 2);
    ck_assert_int_eq(check_alternating("ev-f2", &last), 3);
    ws_close(&gone, 1000);
}
END_TEST

/* ---- bulk presence ------------------------------------------------------ */

/* GET /presence?accounts=... and notifyctl presence a b c answer for many
 * accounts at once (in a cluster, accounts of every primary). */
START_TEST(bulk_presence)
{
    gw(0, "--api-key", "k-1", NULL);
    gw(1, "--api-key", "k-1", NULL);
    char acct[3][64];
    if (cluster_mode) {
        int ports[3];
        ck_assert_int_eq(c_primaries(&CL, ports, 3), 3);
        for (int i = 0; i < 3; i++)
            ck_assert_int_ge(c_find_account(&CL, "bulk-", ports[i], acct[i], sizeof(acct[i])), 0);
    } else {
        for (int i = 0; i < 3; i++)
            snprintf(acct[i], sizeof(acct[i]), "bulk-%d", i);
    }
    struct ws a, b, c;
    open_as(&a, G[0].port, acct[0]);
    open_as(&b, G[1].port, acct[0]);
    open_as(&c, G[1].port, acct[2]);
    char path[400];
    snprintf(path, sizeof(path), "/presence?accounts=%s,%s,%s", acct[0], acct[1], acct[2]);
    const char *auth = "Authorization: Bearer k-1\r\n";
    json_t *j = NULL;
    long long t0 = h_mono_ms();
    for (;;) { /* presence is written within a few ms of the connects */
        struct h_http_resp resp;
        ck_assert_int_eq(h_http(G[0].port, "GET", path, auth, NULL, 0, &resp, 3000), 200);
        json_decref(j);
        j = h_ck_json_obj(resp.body);
        h_http_resp_free(&resp);
        json_t *all = json_object_get(j, "accounts");
        ck_assert_int_eq(json_object_size(all), 3);
        json_t *x = json_object_get(all, acct[0]), *z = json_object_get(all, acct[2]);
        if (json_integer_value(json_object_get(x, "connections")) == 2 &&
            json_integer_value(json_object_get(z, "connections")) == 1)
            break;
        ck_assert_msg(h_mono_ms() - t0 < 3000, "presence not seen");
        h_sleep_ms(50);
    }
    json_t *all = json_object_get(j, "accounts");
    ck_assert(json_is_true(json_object_get(json_object_get(all, acct[0]), "online")));
    ck_assert(json_is_false(json_object_get(json_object_get(all, acct[1]), "online")));
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(all, acct[1]), "connections")), 0);
    ck_assert(json_is_true(json_object_get(json_object_get(all, acct[2]), "online")));
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(all, acct[2]), "connections")), 1);
    json_decref(j);

    struct h_http_resp resp;
    ck_assert_int_eq(h_http(G[0].port, "GET", path, NULL, NULL, 0, &resp, 3000), 401);
    h_http_resp_free(&resp);
    ck_assert_int_eq(
        h_http(G[0].port, "GET", path, "Authorization: Bearer nope\r\n", NULL, 0, &resp, 3000),
        401);
    h_http_resp_free(&resp);
    ck_assert_int_eq(
        h_http(G[0].port, "GET", "/presence?accounts=ok,b%24d", auth, NULL, 0, &resp, 3000), 400);
    h_http_resp_free(&resp);
    ck_assert_int_eq(h_http(G[0].port, "GET", "/presence", auth, NULL, 0, &resp, 3000), 400);
    h_http_resp_free(&resp);
    ck_assert_int_eq(h_http_get(G[0].port, "/healthz", NULL), 200); /* still serving */

    /* notifyctl, one pipeline */
    char url[300];
    const char *where[] = {cluster_mode ? "--redis-cluster" : "--redis", url};
    if (cluster_mode)
        snprintf(url, sizeof(url), "%s", seeds);
    else
        h_redis_url(&R, url, sizeof(url));
    const char *argv[] = {NOTIFYCTL_BIN, where[0], where[1], "presence", "--json",
                          acct[0],       acct[1],  acct[2],  NULL};
    char *out = NULL, *err = NULL;
    ck_assert_int_eq(h_run(argv, NULL, 10000, &out, &err), 0);
    json_t *doc = json_loads(out, 0, NULL);
    ck_assert_msg(json_is_array(doc) && json_array_size(doc) == 3, "notifyctl: %s %s", out, err);
    for (int i = 0; i < 3; i++) {
        json_t *e = json_array_get(doc, (size_t)i);
        ck_assert_str_eq(h_jstr(e, "account"), acct[i]);
        ck_assert_int_eq(json_is_true(json_object_get(e, "online")), i != 1);
        ck_assert_int_eq(json_integer_value(json_object_get(e, "live")), i == 0   ? 2
                                                                         : i == 2 ? 1
                                                                                  : 0);
    }
    json_decref(doc);
    free(out);
    free(err);
    ws_close(&a, 1000);
    ws_close(&b, 1000);
    ws_close(&c, 1000);
}
END_TEST

/* ---- webhooks ----------------------------------------------------------- */

#define SECRET "whsec-test-1"

/* The Python receiver: its port, log and mode file. */
struct rcv {
    struct h_proc proc;
    int port;
    char dir[H_PATH_MAX];
    char log[H_PATH_MAX + 16];
    char mode[H_PATH_MAX + 16];
    char url[64];
};

static struct rcv RCV;

static void rcv_start(struct rcv *r)
{
    if (!r->dir[0]) {
        ck_assert_int_eq(h_tmpdir(r->dir), 0);
        snprintf(r->log, sizeof(r->log), "%s/log", r->dir);
        snprintf(r->mode, sizeof(r->mode), "%s/mode", r->dir);
        r->port = h_free_port();
        snprintf(r->url, sizeof(r->url), "http://127.0.0.1:%d/hooks/presence", r->port);
    }
    char port[16];
    snprintf(port, sizeof(port), "%d", r->port);
    const char *argv[] = {PYTHON3_BIN, RECEIVER_PY, port, SECRET, r->log, r->mode, NULL};
    ck_assert_int_eq(h_proc_spawn(&r->proc, argv, NULL), 0);
    long long deadline = h_mono_ms() + 10000;
    for (;;) {
        char *out = h_proc_stdout(&r->proc);
        int ready = strstr(out, "ready") != NULL;
        free(out);
        if (ready)
            return;
        ck_assert_msg(h_proc_running(&r->proc) && h_mono_ms() < deadline,
                      "the webhook receiver did not start");
        h_sleep_ms(30);
    }
}

static void rcv_mode(struct rcv *r, const char *mode)
{
    char tmp[H_PATH_MAX + 32];
    snprintf(tmp, sizeof(tmp), "%s.new", r->mode);
    FILE *f = fopen(tmp, "w");
    ck_assert_ptr_nonnull(f);
    fputs(mode, f);
    fclose(f);
    ck_assert_int_eq(rename(tmp, r->mode), 0);
}

/* Every request the receiver answered, in the order it logged them. */
static json_t *rcv_log(struct rcv *r)
{
    json_t *all = json_array();
    char *text = h_read_file(r->log);
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        json_t *j = json_loads(line, 0, NULL);
        if (j)
            json_array_append_new(all, j);
        if (!next)
            break;
    }
    free(text);
    return all;
}

/* Distinct event ids answered 200. */
static int rcv_delivered(struct rcv *r)
{
    json_t *all = rcv_log(r), *seen = json_object(), *e;
    size_t i;
    json_array_foreach(all, i, e)
    {
        if (json_integer_value(json_object_get(e, "status")) == 200)
            json_object_set_new(seen, h_jstr(e, "event_id"), json_true());
    }
    int n = (int)json_object_size(seen);
    json_decref(all);
    json_decref(seen);
    return n;
}

static int wait_delivered(struct rcv *r, int want, int timeout_ms)
{
    long long t0 = h_mono_ms();
    while (rcv_delivered(r) < want) {
        if (h_mono_ms() - t0 > timeout_ms)
            return 0;
        h_sleep_ms(50);
    }
    return 1;
}

static void rcv_setup_common(void)
{
    memset(&RCV, 0, sizeof(RCV));
    rcv_start(&RCV);
}

static void single_wh_setup(void)
{
    single_setup();
    rcv_setup_common();
}

static void single_wh_teardown(void)
{
    h_proc_cleanup(&RCV.proc);
    single_teardown();
}

static void cluster_wh_setup(void)
{
    cluster_setup();
    rcv_setup_common();
}

static void cluster_wh_teardown(void)
{
    h_proc_cleanup(&RCV.proc);
    cluster_teardown();
}

#define WH_FLAGS "--webhook-url", RCV.url, "--webhook-secret", SECRET, "--presence-debounce-ms", "0"

/* Checks every request the receiver logged: signed with the secret, its
 * id header the body's id, a stream entry with the same fields; and that
 * the 200s of each account come in seq order, states alternating, with
 * every event of the accounts delivered. Returns the duplicates (ids
 * answered 200 more than once). */
static int check_deliveries(const char *const *accounts, int n_accounts)
{
    int n_ev;
    struct ev *all = events(NULL, &n_ev);
    json_t *log = rcv_log(&RCV), *e, *count = json_object();
    size_t i;
    int dups = 0;
    json_array_foreach(log, i, e)
    {
        json_t *body = json_object_get(e, "body");
        const char *id = h_jstr(e, "event_id");
        ck_assert_msg(id && !strcmp(id, h_jstr(body, "id")),
                      "Notify-Event-Id is not the body's id");
        ck_assert_msg(json_is_true(json_object_get(e, "sig_ok")), "bad signature: %s",
                      h_jstr(e, "signature"));
        ck_assert(json_is_true(json_object_get(e, "type_ok")));
        const char *sig = h_jstr(e, "signature");
        const char *v1 = strstr(sig, ",v1=");
        ck_assert_msg(!strncmp(sig, "t=", 2) && v1 && strlen(v1 + 4) == 64,
                      "Notify-Signature %s is not t=<unix>,v1=<64 hex>", sig);
        ck_assert_str_eq(h_jstr(body, "type"), "presence");
        struct ev *match = NULL;
        for (int k = 0; k < n_ev; k++)
            if (!strcmp(all[k].id, id))
                match = &all[k];
        ck_assert_msg(match, "delivered %s is not in the stream", id);
        ck_assert_str_eq(h_jstr(body, "account"), match->account);
        ck_assert_str_eq(h_jstr(body, "state"), match->online ? "online" : "offline");
        ck_assert_int_eq(json_integer_value(json_object_get(body, "seq")), match->seq);
        ck_assert_int_eq(json_integer_value(json_object_get(body, "at")), match->at);
        if (json_integer_value(json_object_get(e, "status")) != 200)
            continue;
        json_t *c = json_object_get(count, id);
        if (c) {
            dups++;
            json_integer_set(c, json_integer_value(c) + 1);
        } else {
            json_object_set_new(count, id, json_integer(1));
        }
    }
    for (int a = 0; a < n_accounts; a++) {
        long long last_seq = -1;
        int k = 0, delivered = 0;
        json_t *done = json_object();
        json_array_foreach(log, i, e)
        {
            json_t *body = json_object_get(e, "body");
            if (json_integer_value(json_object_get(e, "status")) != 200 ||
                strcmp(h_jstr(body, "account"), accounts[a]) ||
                json_object_get(done, h_jstr(e, "event_id")))
                continue;
            json_object_set_new(done, h_jstr(e, "event_id"), json_true());
            long long seq = json_integer_value(json_object_get(body, "seq"));
            ck_assert_msg(seq > last_seq, "%s: seq %lld delivered after %lld", accounts[a], seq,
                          last_seq);
            ck_assert_str_eq(h_jstr(body, "state"), k % 2 == 0 ? "online" : "offline");
            last_seq = seq;
            k++;
            delivered++;
        }
        json_decref(done);
        ck_assert_int_eq(delivered, count_events(accounts[a]));
    }
    json_decref(log);
    json_decref(count);
    free(all);
    return dups;
}

/* Each event POSTed once, signed, with its stream id, in order. */
START_TEST(webhook_signed_in_order)
{
    gw(0, WH_FLAGS, NULL);
    const char *acct[] = {cluster_mode ? "wh-c1" : "wh-s1", cluster_mode ? "wh-c2" : "wh-s2"};
    for (int round = 0; round < 2; round++)
        for (int a = 0; a < 2; a++) {
            struct ws c;
            open_as(&c, G[0].port, acct[a]);
            ck_assert(wait_events(acct[a], 2 * round + 1, 3000) >= 0);
            ws_close(&c, 1000);
            ck_assert(wait_events(acct[a], 2 * round + 2, 3000) >= 0);
        }
    ck_assert_msg(wait_delivered(&RCV, 8, 10000), "not every event was delivered");
    h_sleep_ms(500);
    ck_assert_int_eq(check_deliveries(acct, 2), 0);
    json_t *log = rcv_log(&RCV);
    ck_assert_int_eq(json_array_size(log), 8); /* nothing retried */
    json_decref(log);
    ck_assert_int_eq(h_ck_metric(G[0].port, "notify_webhooks_sent_total"), 8);
    ck_assert_int_eq(h_ck_metric(G[0].port, "notify_webhooks_failed_total"), 0);
    ck_assert_int_eq(h_ck_metric(G[0].port, "notify_webhook_oldest_pending_seconds"), 0);
}
END_TEST

/* A receiver answering 500, then one that is down: every event arrives
 * afterwards, in order, retried with backoff. */
START_TEST(webhook_retries_after_500_and_outage)
{
    gw(0, WH_FLAGS, NULL);
    const char *acct[] = {"wh-r1", "wh-r2"};
    rcv_mode(&RCV, "500");
    struct ws c;
    open_as(&c, G[0].port, acct[0]);
    ws_close(&c, 1000);
    ck_assert(wait_events(acct[0], 2, 3000) >= 0);
    long long t0 = h_mono_ms();
    for (;;) { /* the first event, three times refused */
        json_t *log = rcv_log(&RCV);
        size_t n = json_array_size(log);
        json_decref(log);
        if (n >= 3)
            break;
        ck_assert_msg(h_mono_ms() - t0 < 10000, "not retried after 500");
        h_sleep_ms(50);
    }
    ck_assert_int_eq(rcv_delivered(&RCV), 0);
    ck_assert_msg(h_ck_metric(G[0].port, "notify_webhook_oldest_pending_seconds") > 0,
                  "no age of the oldest pending event");
    rcv_mode(&RCV, "200");
    ck_assert_msg(wait_delivered(&RCV, 2, 15000), "not delivered once the receiver recovered");
    ck_assert_msg(h_ck_metric(G[0].port, "notify_webhooks_failed_total") >= 3,
                  "failures uncounted");
    ck_assert_msg(h_ck_metric(G[0].port, "notify_webhooks_retried_total") >= 3,
                  "retries uncounted");

    /* down for a few seconds: refused connections, then everything */
    h_proc_kill(&RCV.proc);
    for (int a = 0; a < 2; a++) {
        open_as(&c, G[0].port, acct[a]);
        ck_assert(wait_events(acct[a], a == 0 ? 3 : 1, 3000) >= 0);
        ws_close(&c, 1000);
        ck_assert(wait_events(acct[a], a == 0 ? 4 : 2, 3000) >= 0);
    }
    h_sleep_ms(3000);
    double failed = h_ck_metric(G[0].port, "notify_webhooks_failed_total");
    rcv_start(&RCV);
    ck_assert_msg(wait_delivered(&RCV, 6, 40000), "not everything delivered after the outage");
    ck_assert_msg(failed >= 5, "refused connections not counted as failures (%g)", failed);
    h_sleep_ms(300);
    check_deliveries(acct, 2);
}
END_TEST

/* An entry of the undelivered outbox (a message published with ack to an
 * account with no connection) is POSTed too, signed, with its payload. */
START_TEST(webhook_undelivered_outbox)
{
    gw(0, WH_FLAGS, NULL);
    const char *acct = cluster_mode ? "wh-cu1" : "wh-u1";
    char key[200];
    snprintf(key, sizeof(key), "notify:stream:{%s}", acct);
    const char *pub[] = {"FCALL",
                         "notify_publish",
                         "1",
                         key,
                         "{\"type\":\"n\",\"content\":{\"body\":\"lost\",\"meta_data\":\"\"}}",
                         "ack",
                         "5"};
    redisReply *r = cmd(7, pub);
    ck_assert_msg(r && r->type == REDIS_REPLY_STRING, "notify_publish: %s",
                  r && r->type == REDIS_REPLY_ERROR ? r->str : "no id");
    char id[64];
    snprintf(id, sizeof(id), "%s", r->str);
    freeReplyObject(r);
    json_t *got = NULL;
    long long t0 = h_mono_ms();
    while (!got) {
        json_t *log = rcv_log(&RCV), *e;
        size_t i;
        json_array_foreach(log, i, e)
        {
            json_t *body = json_object_get(e, "body");
            if (json_integer_value(json_object_get(e, "status")) == 200 && h_jstr(body, "type") &&
                !strcmp(h_jstr(body, "type"), "undelivered"))
                got = json_incref(e);
        }
        json_decref(log);
        ck_assert_msg(got || h_mono_ms() - t0 < 15000, "the outbox entry was not POSTed");
        if (!got)
            h_sleep_ms(50);
    }
    json_t *body = json_object_get(got, "body");
    ck_assert(json_is_true(json_object_get(got, "sig_ok")));
    ck_assert_str_eq(h_jstr(got, "event_id"), h_jstr(body, "id"));
    ck_assert_str_eq(h_jstr(body, "account"), acct);
    ck_assert_str_eq(h_jstr(body, "message_id"), id);
    ck_assert_str_eq(h_jstr(body, "reason"), "offline");
    json_t *payload = json_object_get(body, "payload");
    ck_assert_msg(json_is_object(payload), "payload is not the envelope");
    ck_assert_str_eq(h_jstr(payload, "id"), id);
    ck_assert_str_eq(h_jstr(json_object_get(payload, "content"), "body"), "lost");
    json_decref(got);
}
END_TEST

/* Three senders; the one holding the lease is killed while events wait:
 * another takes over, nothing is lost, nothing is sent by two nodes at
 * once, at most the event under way at the kill is sent twice. */
START_TEST(webhook_sender_killed_with_events_pending)
{
    for (int i = 0; i < 3; i++)
        gw(i, WH_FLAGS, NULL);
    const char *probe = cluster_mode ? "wh-ck0" : "wh-k0";
    struct ws c;
    open_as(&c, G[0].port, probe);
    ck_assert_msg(wait_delivered(&RCV, 1, 15000), "no sender");
    json_t *log = rcv_log(&RCV);
    const char *holder = h_jstr(json_array_get(log, 0), "node");
    int victim = -1;
    for (int i = 0; i < 3; i++) {
        char id[32];
        snprintf(id, sizeof(id), "it-%d", G[i].port);
        if (holder && !strcmp(holder, id))
            victim = i;
    }
    json_decref(log);
    ck_assert_msg(victim >= 0, "the sender is none of the nodes");
    int other = victim == 2 ? 1 : 2;
    if (victim == 0) { /* keep connections off the victim: no offline wait for its TTL */
        ws_close(&c, 1000);
        ck_assert(wait_events(probe, 2, 3000) >= 0);
    }
    rcv_mode(&RCV, "sleep:150");
    char names[10][32];
    const char *acct[11];
    acct[0] = probe;
    for (int a = 0; a < 10; a++) {
        snprintf(names[a], sizeof(names[a]), "%s-%d", cluster_mode ? "wh-ck" : "wh-k", a + 1);
        acct[a + 1] = names[a];
        struct ws x;
        open_as(&x, G[other].port, names[a]);
        ck_assert(wait_events(names[a], 1, 3000) >= 0);
        ws_close(&x, 1000);
        ck_assert(wait_events(names[a], 2, 3000) >= 0);
    }
    int n_events = 0; /* this test's: a shared cluster's stream holds others too */
    for (int a = 0; a < 11; a++)
        n_events += count_events(acct[a]);
    ck_assert_msg(wait_delivered(&RCV, 4, 10000), "the sender is stuck");
    h_gw_kill(&G[victim]);
    long long killed = h_mono_ms();
    int before = rcv_delivered(&RCV);
    ck_assert_msg(before < n_events, "everything was sent before the kill: nothing pending");
    ck_assert_msg(wait_delivered(&RCV, n_events, 60000), "events lost after the sender's kill");
    fprintf(stderr, "presence-events: webhooks taken over %lld ms after kill -9 (%d of %d left)\n",
            h_mono_ms() - killed, n_events - before, n_events);
    h_sleep_ms(500);
    int dups = check_deliveries(acct, 11);
    ck_assert_msg(dups <= 1, "%d events delivered twice", dups);
    /* never two nodes at once: the requests of different nodes do not overlap */
    log = rcv_log(&RCV);
    size_t i, k;
    json_t *e, *f;
    json_array_foreach(log, i, e)
    {
        json_array_foreach(log, k, f)
        {
            if (k <= i || !strcmp(h_jstr(e, "node"), h_jstr(f, "node")))
                continue;
            double s1 = json_real_value(json_object_get(e, "start"));
            double e1 = json_real_value(json_object_get(e, "end"));
            double s2 = json_real_value(json_object_get(f, "start"));
            double e2 = json_real_value(json_object_get(f, "end"));
            ck_assert_msg(e1 < s2 || e2 < s1, "%s and %s sent at once by %s and %s",
                          h_jstr(e, "event_id"), h_jstr(f, "event_id"), h_jstr(e, "node"),
                          h_jstr(f, "node"));
        }
    }
    json_decref(log);
    if (victim != 0)
        ws_close(&c, 1000);
}
END_TEST

/* ---- the suite ---------------------------------------------------------- */

static Suite *suite(void)
{
    Suite *s = suite_create("presence_events");
    TCase *one = h_tcase(s, "single", 120, single_setup, single_teardown);
    tcase_add_test(one, online_offline_on_connect_and_close);
    tcase_add_test(one, offline_after_kill_within_ttl);
    tcase_add_test(one, debounce);
    tcase_add_test(one, alternation_under_concurrent_churn);
    tcase_add_test(one, bulk_presence);
    tcase_add_test(one, reconnect_takes_a_new_incarnation);
    tcase_add_test(one, bad_flags_exit_2);
    TCase *cl = h_tcase(s, "cluster", 180, cluster_setup, cluster_teardown);
    tcase_add_unchecked_fixture(cl, cluster_create, cluster_destroy);
    tcase_add_test(cl, online_offline_on_connect_and_close);
    tcase_add_test(cl, offline_after_kill_within_ttl);
    tcase_add_test(cl, debounce);
    tcase_add_test(cl, alternation_under_concurrent_churn);
    tcase_add_test(cl, bulk_presence);
    TCase *fo = h_tcase(s, "cluster_failover", 240, failover_setup, failover_teardown);
    tcase_add_test(fo, events_across_a_failover);
    TCase *wh = h_tcase(s, "webhooks", 180, single_wh_setup, single_wh_teardown);
    tcase_add_test(wh, webhook_signed_in_order);
    tcase_add_test(wh, webhook_retries_after_500_and_outage);
    tcase_add_test(wh, webhook_undelivered_outbox);
    tcase_add_test(wh, webhook_sender_killed_with_events_pending);
    TCase *whc = h_tcase(s, "cluster_webhooks", 180, cluster_wh_setup, cluster_wh_teardown);
    tcase_add_unchecked_fixture(whc, cluster_create, cluster_destroy);
    tcase_add_test(whc, webhook_signed_in_order);
    tcase_add_test(whc, webhook_retries_after_500_and_outage);
    tcase_add_test(whc, webhook_undelivered_outbox);
    tcase_add_test(whc, webhook_sender_killed_with_events_pending);
    return s;
}

int main(void)
{
    return h_run_suite(suite());
}
