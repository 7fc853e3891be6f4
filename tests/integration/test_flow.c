/* Flow (issue 21): input that is in progress is read on at once, a burst
 * from Redis is written before anyone is judged a slow consumer, and
 * delivery comes back quickly after a Redis outage. Each test runs against
 * a real redis-server and the real notify-gateway (--auth none):
 *
 *  - a 4 MiB message in 4 KiB fragments, and one 16 MiB frame, are read in
 *    well under a second at the default --input-batch-ms (100): a message
 *    in progress is never stretched into one read per gathering window;
 *  - 2,000 broadcasts pipelined into Redis at once, and 1,500 sent while
 *    the gateway is stopped (SIGSTOP) for 0.75 s, all reach three clients
 *    that read normally, none of which is closed;
 *  - a client that stops reading is still closed with 1013 (slow consumer,
 *    counted once) while the readers beside it get everything;
 *  - after a 5 s Redis outage, a publish is delivered again within the
 *    bound README.md states ("Redis outages"). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

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

static const char BROADCAST[] = "notify:broadcast";

/* ---- large client messages ---------------------------------------------- */

/* {"type":"heartbeat"} and spaces, len bytes in all (malloc'd): a
 * heartbeat any client may send, whose padding costs the gateway's JSON
 * parser little, so what is timed is reading it. */
static char *padded_heartbeat(size_t len)
{
    static const char hb[] = "{\"type\":\"heartbeat\"}";
    ck_assert(len >= sizeof(hb) - 1);
    char *m = malloc(len + 1);
    ck_assert(m);
    memcpy(m, hb, sizeof(hb) - 1);
    memset(m + sizeof(hb) - 1, ' ', len - (sizeof(hb) - 1));
    m[len] = '\0';
    return m;
}

/* Sends msg as one text message in fragments of frag bytes (one frame when
 * frag >= len), each fragment one write, then waits for the heartbeat's
 * answer, which the gateway can only give once it has read the whole
 * message. Returns the ms from the first byte sent to the answer. */
static long long heartbeat_round_trip(struct ws *c, const char *msg, size_t len, size_t frag)
{
    long long t0 = h_mono_ms();
    for (size_t off = 0; off < len; off += frag) {
        size_t n = len - off < frag ? len - off : frag;
        int fin = off + n == len;
        size_t flen;
        unsigned char *f =
            ws_frame_encode((fin ? 0x80 : 0) | (off ? 0 : WS_TEXT), 1, msg + off, n, &flen);
        ck_assert(f);
        int rc = h_send_all(c->fd, f, flen, 30000);
        free(f);
        ck_assert_msg(rc == 0, "sending the fragment at %zu failed (close %d)", off, c->close_code);
    }
    struct h_msg m;
    ck_assert_msg(h_msg_recv(c, &m, 30000), "no answer to the large heartbeat (close %d, eof %d)",
                  c->close_code, c->eof);
    long long ms = h_mono_ms() - t0;
    ck_assert_msg(h_msg_type(&m) && !strcmp(h_msg_type(&m), "heartbeat"),
                  "answered %.200s, want a heartbeat", m.text);
    h_msg_free(&m);
    return ms;
}

/* The time bound for reading a large message: README.md ("Why client
 * input is gathered when idle") promises it is not stretched over
 * gathering windows; at 100 ms a window, the old 45 reads took 4.5 s.
 * AddressSanitizer makes the copies and the JSON parse slower. */
static long long large_message_bound(void)
{
    return h_proc_has_asan(G.proc.pid) ? 2000 : 1000;
}

/* 4 MiB in 32 fragments of 128 KiB: within the 40 frames of a burst that
 * README.md allows a client ("Close codes", 1008), and more than the
 * kernel's buffers hold, so it arrives over many reads. */
START_TEST(test_fragmented_4mib_message)
{
    GW("--auth", "none", "--max-message-bytes", "8388608");
    struct ws c;
    h_ck_open_as(&c, G.port, "frag");
    size_t len = 4u << 20;
    char *msg = padded_heartbeat(len);
    long long ms = heartbeat_round_trip(&c, msg, len, 128 * 1024);
    fprintf(stderr,
            "[flow] 4 MiB in 32 fragments of 128 KiB, --input-batch-ms 100: answered after %lld "
            "ms\n",
            ms);
    ck_assert_msg(ms < large_message_bound(), "4 MiB in 128 KiB fragments took %lld ms", ms);
    /* the connection goes on as before */
    char *small = padded_heartbeat(64);
    ms = heartbeat_round_trip(&c, small, 64, 64);
    ck_assert_msg(ms < 1000, "a small heartbeat afterwards took %lld ms", ms);
    free(small);
    free(msg);
    ws_close(&c, 1000);
}
END_TEST

/* One 16 MiB frame on a fresh connection (whose kernel buffers have not
 * grown yet), twice in turn to a gateway at the default window and to one
 * that reads every arrival (--input-batch-ms 0): besides the bound, the
 * gathering window must not stretch it into one read per window (which
 * took 4.6 s against 0.12 s); the machine is shared, hence the slack. */
START_TEST(test_single_16mib_frame)
{
    GW("--auth", "none", "--max-message-bytes", "16777216");
    struct h_gw g0 = {0};
    ck_assert(h_gw_startl(&g0, &R, "--auth", "none", "--max-message-bytes", "16777216",
                          "--input-batch-ms", "0", (const char *)NULL) == 0);
    size_t len = (16u << 20) - 64;
    char *msg = padded_heartbeat(len);
    long long best = -1, best0 = -1;
    for (int i = 0; i < 2; i++) {
        struct ws c, c0;
        h_ck_open_as(&c, G.port, "big");
        h_ck_open_as(&c0, g0.port, "big0");
        long long ms = heartbeat_round_trip(&c, msg, len, len);
        long long ms0 = heartbeat_round_trip(&c0, msg, len, len);
        fprintf(stderr,
                "[flow] one 16 MiB frame: answered after %lld ms at --input-batch-ms 100, %lld ms "
                "at 0\n",
                ms, ms0);
        best = best < 0 || ms < best ? ms : best;
        best0 = best0 < 0 || ms0 < best0 ? ms0 : best0;
        /* the connection goes on as before */
        char *small = padded_heartbeat(64);
        ms = heartbeat_round_trip(&c, small, 64, 64);
        ck_assert_msg(ms < 1000, "a small heartbeat afterwards took %lld ms", ms);
        free(small);
        ws_close(&c, 1000);
        ws_close(&c0, 1000);
    }
    ck_assert_msg(best < large_message_bound(), "one 16 MiB frame took %lld ms", best);
    ck_assert_msg(best < 3 * best0 + 300,
                  "one 16 MiB frame took %lld ms, against %lld without gathering", best, best0);
    free(msg);
    h_gw_stop(&g0, 5000);
}
END_TEST

/* ---- bursts from Redis -------------------------------------------------- */

/* A client read by its own thread, as a normal client reads: everything
 * that comes, as it comes. No Check assertions in the thread: it records
 * what it saw and the test judges. */
struct reader {
    struct ws ws;
    int want;       /* messages to read */
    int got;        /* messages read */
    int in_order;   /* message i carried body "m<i>-..." */
    int close_code; /* of a close frame received, 0 if none */
    pthread_t thread;
};

static void *reader_run(void *arg)
{
    struct reader *r = arg;
    r->in_order = 1;
    while (r->got < r->want) {
        char *t = ws_recv_text(&r->ws, 20000);
        if (!t)
            break;
        char want[24];
        snprintf(want, sizeof(want), "\"m%d-", r->got);
        if (!strstr(t, want))
            r->in_order = 0;
        free(t);
        r->got++;
    }
    r->close_code = r->ws.close_code;
    return NULL;
}

static void readers_start(struct reader *r, int n, int want)
{
    for (int i = 0; i < n; i++) {
        char acct[32];
        snprintf(acct, sizeof(acct), "reader%d", i);
        h_ck_open_as(&r[i].ws, G.port, acct);
        r[i].want = want;
        r[i].got = 0;
        ck_assert_int_eq(pthread_create(&r[i].thread, NULL, reader_run, &r[i]), 0);
    }
}

/* Joins the readers and asserts each got all its messages, in order, and
 * was not closed. */
static void readers_check(struct reader *r, int n, const char *what)
{
    for (int i = 0; i < n; i++) {
        pthread_join(r[i].thread, NULL);
        fprintf(stderr, "[flow] %s: reader %d received %d of %d (close %d)\n", what, i, r[i].got,
                r[i].want, r[i].close_code);
    }
    for (int i = 0; i < n; i++) {
        ck_assert_msg(r[i].close_code == 0, "%s: reader %d was closed with %d after %d messages",
                      what, i, r[i].close_code, r[i].got);
        ck_assert_msg(r[i].got == r[i].want, "%s: reader %d received %d of %d", what, i, r[i].got,
                      r[i].want);
        ck_assert_msg(r[i].in_order, "%s: reader %d received them out of order", what, i);
    }
}

/* The broadcast envelope of message i, body "m<i>-" and pad bytes of
 * filler (malloc'd). */
static char *broadcast_payload(int i, size_t pad)
{
    char *body = malloc(pad + 32);
    ck_assert(body);
    int n = snprintf(body, 32, "m%d-", i);
    memset(body + n, 'p', pad);
    body[n + (int)pad] = '\0';
    char *e = h_envelope("notification", body);
    free(body);
    return e;
}

/* PUBLISHes n broadcasts of about 160 bytes from message first on, in one
 * pipelined MULTI ... EXEC: Redis runs them together, so they reach the
 * gateway's socket as one burst. Asserts each reached the gateway. */
static void publish_pipelined(int first, int n)
{
    redisContext *rc = redisConnect("127.0.0.1", R.port);
    ck_assert(rc && !rc->err);
    redisAppendCommand(rc, "MULTI");
    for (int i = first; i < first + n; i++) {
        char *e = broadcast_payload(i, 100);
        redisAppendCommand(rc, "PUBLISH %s %s", BROADCAST, e);
        free(e);
    }
    redisAppendCommand(rc, "EXEC");
    redisReply *rep = NULL;
    for (int i = 0; i < n + 2; i++) {
        ck_assert(redisGetReply(rc, (void **)&rep) == REDIS_OK && rep);
        if (i < n + 1)
            freeReplyObject(rep);
    }
    ck_assert_int_eq(rep->type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(rep->elements, (size_t)n);
    for (int i = 0; i < n; i++)
        ck_assert_msg(rep->element[i]->type == REDIS_REPLY_INTEGER && rep->element[i]->integer == 1,
                      "broadcast %d had no subscriber", first + i);
    freeReplyObject(rep);
    redisFree(rc);
}

/* Grows the gateway's Redis socket as a busy node's grows: after bulk
 * traffic the kernel's receive buffer for it (autotuned) holds megabytes,
 * so a burst is there to be read at once, up to 1 MiB per read. n
 * broadcasts of 256 KiB, from message first on (with --max-queue-bytes
 * above what one read can hold: the bursts below are about
 * --max-queue-messages). */
static void warm_up(int first, int n)
{
    for (int i = first; i < first + n; i++) {
        char *e = broadcast_payload(i, 256 * 1024);
        ck_assert_int_eq(h_redis_publish(&R, BROADCAST, e, strlen(e)), 1);
        free(e);
    }
}

/* No slow consumer was closed, in the log or in /metrics. */
static void assert_no_slow_consumer(const char *what)
{
    char *log = h_gw_stderr(&G);
    int closed = h_count(log, "msg=slow_consumer_closed");
    free(log);
    ck_assert_msg(closed == 0, "%s: %d slow_consumer_closed lines", what, closed);
    ck_assert_double_eq(
        h_ck_metric(G.port, "notify_connections_closed_total{reason=\"slow_consumer\"}"), 0);
}

#define BURST_FLAGS "--auth", "none", "--max-queue-bytes", "8388608"

START_TEST(test_pipelined_2000_broadcasts)
{
    GW(BURST_FLAGS);
    ck_assert(h_http_wait_status(G.port, "/readyz", 200, 10000));
    enum { WARM = 80, N = 2000, READERS = 3 };
    struct reader r[READERS];
    readers_start(r, READERS, WARM + N);
    warm_up(0, WARM);
    h_sleep_ms(500);
    long long t0 = h_mono_ms();
    publish_pipelined(WARM, N);
    readers_check(r, READERS, "2,000 pipelined broadcasts");
    fprintf(stderr, "[flow] 2,000 pipelined broadcasts: all received in %lld ms\n",
            h_mono_ms() - t0);
    assert_no_slow_consumer("2,000 pipelined broadcasts");
    for (int i = 0; i < READERS; i++)
        ws_close(&r[i].ws, 1000);
}
END_TEST

START_TEST(test_stalled_gateway_1500_broadcasts)
{
    GW(BURST_FLAGS);
    ck_assert(h_http_wait_status(G.port, "/readyz", 200, 10000));
    enum { WARM = 80, N = 1500, READERS = 3 };
    struct reader r[READERS];
    readers_start(r, READERS, WARM + N);
    warm_up(0, WARM);
    h_sleep_ms(500);
    ck_assert_int_eq(h_gw_signal(&G, SIGSTOP), 0);
    long long t0 = h_mono_ms();
    /* Redis holds them for the stopped gateway, which then finds 1,500
     * broadcasts waiting at once. */
    publish_pipelined(WARM, N);
    long long left = t0 + 750 - h_mono_ms();
    if (left > 0)
        h_sleep_ms((int)left);
    ck_assert_int_eq(h_gw_signal(&G, SIGCONT), 0);
    readers_check(r, READERS, "1,500 broadcasts during a 0.75 s stall");
    assert_no_slow_consumer("1,500 broadcasts during a 0.75 s stall");
    for (int i = 0; i < READERS; i++)
        ws_close(&r[i].ws, 1000);
}
END_TEST

/* A client that reads nothing is still a slow consumer: 200 broadcasts of
 * 128 KiB (25 MiB, more than its socket's buffers and its queue hold) close
 * it with 1013, once, while three readers beside it get all 200. */
START_TEST(test_non_reader_still_closed)
{
    GW("--auth", "none", "--heartbeat-timeout", "300", "--heartbeat-check", "60");
    ck_assert(h_http_wait_status(G.port, "/readyz", 200, 10000));
    enum { N = 200, READERS = 3 };
    struct ws sink;
    h_ck_open_as(&sink, G.port, "sink");
    struct reader r[READERS];
    readers_start(r, READERS, N);
    for (int i = 0; i < N; i++) {
        char *e = broadcast_payload(i, 128 * 1024);
        ck_assert_int_eq(h_redis_publish(&R, BROADCAST, e, strlen(e)), 1);
        free(e);
    }
    readers_check(r, READERS, "readers beside a client that stopped reading");
    int code = ws_wait_close(&sink, 30000);
    ck_assert_msg(code == 1013, "the client that read nothing closed with %d, want 1013", code);
    ws_close(&sink, 1000);
    char *log = h_gw_stderr(&G);
    ck_assert_int_eq(h_count(log, "msg=slow_consumer_closed"), 1);
    free(log);
    const char *closed = "notify_connections_closed_total{reason=\"slow_consumer\"}";
    for (int i = 0; i < 50 && h_ck_metric(G.port, closed) < 1; i++)
        h_sleep_ms(100);
    h_sleep_ms(300);
    ck_assert_double_eq(h_ck_metric(G.port, closed), 1);
    for (int i = 0; i < READERS; i++)
        ws_close(&r[i].ws, 1000);
}
END_TEST

/* Many clients that read nothing, beside a few that read, at a sustained
 * 2,000 broadcasts/s of 1 KiB: the non-readers fill their socket buffers and then
 * their queues and are closed as slow consumers (1013); the readers, sent the same
 * messages by the same loop turns, get every one, in order, and are not
 * closed: being written to in the same turns as clients who stall must not
 * count against them. */
START_TEST(test_many_non_readers_sustained)
{
    GW("--auth", "none", "--heartbeat-timeout", "300", "--heartbeat-check", "60",
       "--max-queue-bytes", "262144");
    ck_assert(h_http_wait_status(G.port, "/readyz", 200, 10000));
    enum { SINKS = 100, READERS = 10, RATE = 2000, SECONDS = 3, STEP_MS = 10 };
    enum { PER_STEP = RATE * STEP_MS / 1000, N = RATE * SECONDS };
    static struct ws sink[SINKS];
    for (int i = 0; i < SINKS; i++) {
        char acct[32];
        snprintf(acct, sizeof(acct), "sink%d", i);
        h_ck_open_as(&sink[i], G.port, acct);
    }
    struct reader r[READERS];
    readers_start(r, READERS, N);
    redisContext *rc = redisConnect("127.0.0.1", R.port);
    ck_assert(rc && !rc->err);
    long long t0 = h_mono_ms();
    for (int step = 0; step * PER_STEP < N; step++) {
        for (int k = 0; k < PER_STEP; k++) {
            char *e = broadcast_payload(step * PER_STEP + k, 1000);
            redisAppendCommand(rc, "PUBLISH %s %s", BROADCAST, e);
            free(e);
        }
        for (int k = 0; k < PER_STEP; k++) {
            redisReply *rep = NULL;
            ck_assert(redisGetReply(rc, (void **)&rep) == REDIS_OK && rep);
            freeReplyObject(rep);
        }
        long long left = t0 + (long long)(step + 1) * STEP_MS - h_mono_ms();
        if (left > 0)
            h_sleep_ms((int)left);
    }
    redisFree(rc);
    readers_check(r, READERS, "readers beside 100 clients that read nothing");
    /* A stalled client's close frame waits behind what its socket already
     * holds: it may see the 1013, or only the end of the connection. */
    int ended = 0;
    long long until = h_mono_ms() + 20000;
    for (int i = 0; i < SINKS; i++) {
        long long left = until - h_mono_ms();
        int code = ws_wait_close(&sink[i], left > 0 ? (int)left : 1);
        ended += code == 1013 || code == -1;
        ws_close(&sink[i], 1000);
    }
    double slow = h_ck_metric(G.port, "notify_connections_closed_total{reason=\"slow_consumer\"}");
    fprintf(stderr, "[flow] %d of %d non-readers ended, %.0f counted slow at %d broadcasts/s\n",
            ended, SINKS, slow, RATE);
    ck_assert_int_eq(ended, SINKS);
    ck_assert_double_eq(slow, SINKS);
    for (int i = 0; i < READERS; i++)
        ws_close(&r[i].ws, 1000);
}
END_TEST

/* ---- Redis outage ------------------------------------------------------- */

/* README.md ("Redis outages"): delivery works again within this of Redis
 * being back after an outage of any length (the backoff's cap, its
 * handshake and the resubscription, with room for a shared machine). */
#define RECOVERY_BOUND_MS 1500

START_TEST(test_recovery_after_5s_outage)
{
    GW("--auth", "none", "--heartbeat-timeout", "300", "--heartbeat-check", "60");
    ck_assert(h_http_wait_status(G.port, "/readyz", 200, 10000));
    struct ws c;
    h_ck_open_as(&c, G.port, "outage");
    enum { OUTAGES = 3 };
    long long rec[OUTAGES];
    for (int o = 0; o < OUTAGES; o++) {
        h_proc_kill(&R.proc);
        ck_assert(h_http_wait_status(G.port, "/readyz", 503, 5000));
        h_sleep_ms(5000);
        ck_assert_msg(h_redis_restart(&R) == 0, "cannot restart redis");
        long long back = h_mono_ms();
        rec[o] = -1;
        for (int k = 0; rec[o] < 0 && h_mono_ms() - back < 15000; k++) {
            char body[32];
            snprintf(body, sizeof(body), "probe-%d-%d", o, k);
            if (h_publish(&R, "outage", "probe", body) != 1) {
                h_sleep_ms(5);
                continue;
            }
            struct h_msg m;
            while (h_msg_recv(&c, &m, 1000)) {
                int match = h_msg_body(&m) && !strcmp(h_msg_body(&m), body);
                h_msg_free(&m);
                if (match) {
                    rec[o] = h_mono_ms() - back;
                    break;
                }
            }
        }
        fprintf(stderr,
                "[flow] outage %d of 5 s: a publish delivered %lld ms after redis was back\n",
                o + 1, rec[o]);
        ck_assert_msg(rec[o] >= 0, "no delivery within 15 s of redis being back");
    }
    for (int o = 0; o < OUTAGES; o++)
        ck_assert_msg(rec[o] < RECOVERY_BOUND_MS, "outage %d: delivery came back after %lld ms",
                      o + 1, rec[o]);
    ws_close(&c, 1000);
}
END_TEST

/* ---- suite -------------------------------------------------------------- */

static Suite *flow_suite(void)
{
    Suite *s = suite_create("gateway-flow");
    TCase *tc = h_tcase(s, "input", 120, setup, teardown);
    tcase_add_test(tc, test_fragmented_4mib_message);
    tcase_add_test(tc, test_single_16mib_frame);
    tc = h_tcase(s, "bursts", 180, setup, teardown);
    tcase_add_test(tc, test_pipelined_2000_broadcasts);
    tcase_add_test(tc, test_stalled_gateway_1500_broadcasts);
    tcase_add_test(tc, test_non_reader_still_closed);
    tcase_add_test(tc, test_many_non_readers_sustained);
    tc = h_tcase(s, "outage", 120, setup, teardown);
    tcase_add_test(tc, test_recovery_after_5s_outage);
    return s;
}

int main(void)
{
    return h_run_suite(flow_suite());
}
