/* The node set's health check (gateway/redis/nodeset.c, redis_uv.c),
 * driven in this process on a loop of its own against a real
 * redis-server, so that the loop can be made late on purpose: a starved
 * gateway (55 of them beside their clients on two cores, BENCHMARKS.md,
 * "A million") runs one turn for seconds, and a PING queued at the start
 * of such a turn leaves at its end. Redis must not be blamed for that;
 * a Redis that is stopped must still be found dead within the 5 s the
 * README promises ("Redis outages"), also when the socket is full. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "harness.h"
#include "nodeset.h"

static struct h_redis R;
static uv_loop_t loop;
static struct config cfg;
static struct redis_link L;
static int ups, downs;
static uint64_t down_at; /* uv_hrtime() ms of the first on_down */

static uint64_t clock_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void on_up(void *data)
{
    (void)data;
    ups++;
}

static void on_down(void *data)
{
    (void)data;
    if (!downs++)
        down_at = clock_ms();
}

static void on_stop(uv_timer_t *t)
{
    (void)t;
    uv_stop(&loop);
}

/* Runs the loop for ms of real time. */
static void run_for(int ms)
{
    uv_timer_t stop;
    uv_timer_init(&loop, &stop);
    uv_update_time(&loop);
    uv_timer_start(&stop, on_stop, (uint64_t)ms, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&stop, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

static void setup(void)
{
    ck_assert_int_eq(h_redis_start(&R), 0);
    char url[64];
    h_redis_url(&R, url, sizeof(url));
    char *argv[] = {"test", "--auth", "none", "--redis", url, NULL};
    memset(&cfg, 0, sizeof(cfg));
    ck_assert_int_eq(config_parse(&cfg, 5, argv, "test"), 0);
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ups = downs = 0;
    const struct redis_events ev = {.on_up = on_up, .on_down = on_down};
    redis_link_init(&L, &loop, &cfg, &ev);
}

static void teardown(void)
{
    redis_link_stop(&L);
    uv_run(&loop, UV_RUN_DEFAULT); /* the handles' closes */
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    config_free(&cfg);
    h_redis_stop(&R);
}

/* ---- a late loop ---- */

static uv_timer_t busy, resume;
static int answered;

static void on_answer(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    (void)privdata;
    answered += r != NULL;
}
static int ticks, pending_when_busy;

static void on_resume(uv_timer_t *t)
{
    (void)t;
    ck_assert_int_eq(h_proc_signal(&R.proc, SIGCONT), 0);
}

/* Runs right after the health check, in the same turn (same due time,
 * started after it): at the second tick, the check has just queued a
 * PING, and this turn then takes 6 s, as a starved one does. Redis is
 * stopped as the turn ends, for 500 ms: the PING leaves when the turn
 * does, and its answer is not there yet when the next turn's check
 * looks, 6 s after the PING was queued. */
static void on_busy(uv_timer_t *t)
{
    (void)t;
    if (++ticks != 2)
        return;
    pending_when_busy = L.nodes[0] && L.nodes[0]->ping_pending;
    usleep(6000 * 1000);
    ck_assert_int_eq(h_proc_signal(&R.proc, SIGSTOP), 0);
    uv_timer_start(&resume, on_resume, 500, 0);
}

START_TEST(late_turn_keeps_redis)
{
    ck_assert_int_eq(redis_link_start(&L, NULL), 0);
    uv_timer_init(&loop, &busy);
    uv_timer_init(&loop, &resume);
    ticks = pending_when_busy = 0;
    uv_timer_start(&busy, on_busy, 1000, 1000); /* due with the health timer */
    run_for(11000);
    uv_close((uv_handle_t *)&busy, NULL);
    uv_close((uv_handle_t *)&resume, NULL);
    fprintf(stderr, "[health] late turn: ups %d, downs %d, reconnects %u, PING pending %d\n", ups,
            downs, redis_link_reconnects(&L), pending_when_busy);
    ck_assert_msg(pending_when_busy, "the health check had no PING queued before the long turn");
    ck_assert_msg(ups == 1 && downs == 0 && redis_link_reconnects(&L) == 0,
                  "Redis was dropped for this process's own late turn: %d up, %d down", ups, downs);
    ck_assert(redis_link_connected(&L));
    /* and the same connection still answers */
    const char *argv[] = {"SET", "after-late", "1"};
    const size_t lens[] = {3, 10, 1};
    answered = 0;
    ck_assert_int_eq(redis_link_command(&L, "after-late", 10, on_answer, NULL, 3, argv, lens), 0);
    run_for(1000);
    ck_assert_msg(answered == 1, "no answer after the late turn");
    ck_assert_int_eq(h_redis_int(&R, "EXISTS after-late"), 1);
}
END_TEST

/* ---- a stopped Redis ---- */

static uint64_t stop_redis(void)
{
    ck_assert_int_eq(ups, 1);
    ck_assert_int_eq(h_proc_signal(&R.proc, SIGSTOP), 0);
    return clock_ms();
}

static void wait_down(uint64_t stopped_at, const char *what)
{
    run_for(12000);
    ck_assert_int_eq(h_proc_signal(&R.proc, SIGCONT), 0);
    ck_assert_msg(downs == 1, "%s: a stopped Redis was not found dead (%d on_down)", what, downs);
    uint64_t took = down_at - stopped_at;
    fprintf(stderr, "[health] %s: found dead %llu ms after the stop\n", what,
            (unsigned long long)took);
    /* a PING every second, dead 5 s after it left */
    ck_assert_msg(took <= 7500, "%s: found dead after %llu ms", what, (unsigned long long)took);
}

/* ---- a busy Redis behind our own commands ---- */

static int backlog_done;

static void on_backlog_done(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    (void)privdata;
    backlog_done = r != NULL;
}

/* Seconds of work queued on the command connection with replies off, as a
 * presence resync of a whole process is (megabytes): Redis reads a
 * client's input 16 KB at a time and serves its other clients in between,
 * so it is silent on that connection until it is through, yet alive.
 * Each script here is padded to about 15 KB, so that every read of Redis's
 * holds one. */
START_TEST(busy_behind_own_commands_keeps_redis)
{
    ck_assert_int_eq(redis_link_start(&L, NULL), 0);
    run_for(500);
    ck_assert_int_eq(ups, 1);
    static const char busy[] = "local t0 = redis.call('TIME') "
                               "local s0 = t0[1] * 1000000 + t0[2] "
                               "repeat local t = redis.call('TIME') "
                               "until t[1] * 1000000 + t[2] - s0 > 80000 return 1";
    static char pad[15000];
    memset(pad, 'p', sizeof(pad));
    struct respbuf b = {0};
    respbuf_cmd(&b, 3, (const char *[]){"CLIENT", "REPLY", "OFF"}, (size_t[]){6, 5, 3});
    for (int i = 0; i < 90; i++) /* 90 x 80 ms: 7.2 s of Redis's time */
        respbuf_cmd(&b, 4, (const char *[]){"EVAL", busy, "0", pad},
                    (size_t[]){4, sizeof(busy) - 1, 1, sizeof(pad)});
    respbuf_cmd(&b, 3, (const char *[]){"CLIENT", "REPLY", "ON"}, (size_t[]){6, 5, 2});
    ck_assert(!b.failed);
    backlog_done = 0;
    ck_assert_int_eq(redis_link_formatted(&L, "busy", 4, on_backlog_done, NULL, b.p, b.len), 0);
    respbuf_free(&b);
    uint64_t t0 = clock_ms();
    while (!backlog_done && clock_ms() - t0 < 20000)
        run_for(200);
    fprintf(stderr, "[health] 8 s of silent commands: done after %llu ms, %d down\n",
            (unsigned long long)(clock_ms() - t0), downs);
    ck_assert_msg(backlog_done, "the commands were never answered");
    ck_assert_msg(downs == 0 && redis_link_reconnects(&L) == 0,
                  "a Redis busy with our own commands was dropped (%d down)", downs);
}
END_TEST

START_TEST(stopped_redis_found_dead)
{
    ck_assert_int_eq(redis_link_start(&L, NULL), 0);
    run_for(500);
    wait_down(stop_redis(), "stopped");
}
END_TEST

/* The socket fills before the PING is queued: it cannot leave, and the
 * loop is not late, so Redis taking nothing for 5 s is what fails it. */
START_TEST(stopped_redis_full_socket_found_dead)
{
    ck_assert_int_eq(redis_link_start(&L, NULL), 0);
    run_for(500);
    uint64_t stopped_at = stop_redis();
    static char big[256 * 1024];
    memset(big, 'x', sizeof(big));
    for (int i = 0; i < 64; i++) { /* 16 MiB, far more than loopback buffers hold */
        const char *argv[] = {"SET", "filler", big};
        const size_t lens[] = {3, 6, sizeof(big)};
        ck_assert_int_eq(redis_link_command(&L, "filler", 6, NULL, NULL, 3, argv, lens), 0);
    }
    wait_down(stopped_at, "full socket");
}
END_TEST

static Suite *health_suite(void)
{
    Suite *s = suite_create("redis_health");
    TCase *tc = h_tcase(s, "health", 60, setup, teardown);
    tcase_add_test(tc, late_turn_keeps_redis);
    tcase_add_test(tc, busy_behind_own_commands_keeps_redis);
    tcase_add_test(tc, stopped_redis_found_dead);
    tcase_add_test(tc, stopped_redis_full_socket_found_dead);
    return s;
}

int main(void)
{
    return h_run_suite(health_suite());
}
