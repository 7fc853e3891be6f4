/* test_webhooks: presence events and undelivered-outbox entries POSTed,
 * signed, to a real HTTP receiver started by the test
 * (tests/integration/webhook_receiver.py, which checks the signature with
 * the secret), by real gateway processes against one Redis and a Redis
 * Cluster (README.md "Webhooks"). */
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

#include "pevents_util.h"

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

/* Waits until the gateway has made the webhook group on stream: it is made
 * at the stream's end once Redis is connected, which /healthz does not
 * wait for, and entries written before it are not POSTed (README.md
 * "Webhooks"). */
static void wait_webhook_group(const char *stream)
{
    const char *argv[] = {"XINFO", "GROUPS", stream};
    long long t0 = h_mono_ms();
    for (;;) {
        redisReply *r =
            cluster_mode ? c_cmd_key(&CL, stream, NULL, 3, argv) : c_cmd_argv(R.port, 3, argv);
        int found = 0;
        for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
            const redisReply *g = r->element[i];
            for (size_t k = 0; g->type == REDIS_REPLY_ARRAY && k + 1 < g->elements; k += 2)
                if (!strcmp(g->element[k]->str, "name") &&
                    !strcmp(g->element[k + 1]->str, "notify-webhooks"))
                    found = 1;
        }
        if (r)
            freeReplyObject(r);
        if (found)
            return;
        ck_assert_msg(h_mono_ms() - t0 < 10000, "no webhook group on %s", stream);
        h_sleep_ms(20);
    }
}

/* An entry of the undelivered outbox (a message published with ack to an
 * account with no connection) is POSTed too, signed, with its payload. */
START_TEST(webhook_undelivered_outbox)
{
    gw(0, WH_FLAGS, NULL);
    wait_webhook_group("notify:undelivered");
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
    Suite *s = suite_create("webhooks");
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
