/* Unit tests of gateway/net/wheel: the timing wheel, on a real libuv loop
 * with a short tick.
 *
 * A "metronome" connection reschedules itself for the next tick every
 * tick, so the test knows every tick's loop time. Assertions are about
 * which tick delivers what (derived from the wheel's own time base), sets
 * and order, never about wall-clock precision: a connection is never
 * delivered before its time, and it is delivered by the tick whose nominal
 * time is the first >= its time. */
#include <stddef.h>
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "wheel.h"

/* An item of the wheel, as a connection would embed its link. */
struct conn {
    int pad; /* the link is not at offset 0 */
    struct wheel_link hb;
};

#define TICK_MS 20
#define MAX_TICKS 4096

struct rec {
    uint64_t at;         /* scheduled for (loop ms) */
    uint64_t sched_next; /* w->next_tick_at when scheduled */
    int sched_ticks;     /* ticks seen when scheduled */
    int delivered;       /* times handed over */
    uint64_t got_now;    /* now of the delivery */
    int got_order;       /* global delivery sequence number */
    int cancelled;
};

struct fixture {
    uv_loop_t loop;
    struct wheel w;
    uv_timer_t stop_timer;
    struct conn metronome;
    uint64_t ticks[MAX_TICKS]; /* loop time of each tick */
    int n_ticks;
    struct conn *conns;
    struct rec *recs;
    int n;
    int expect;    /* deliveries that end the run */
    int delivered; /* deliveries so far (excluding the metronome) */
    int seq;
    int stop_after_ticks; /* 0: none */
    void (*on_due)(struct fixture *f, int i, uint64_t now);
};

static struct fixture F;

static void due(void *data, void *item, uint64_t now)
{
    struct conn *c = item;
    struct fixture *f = data;
    ck_assert_ptr_eq(f, &F);
    ck_assert_int_eq(c->hb.slot, -1); /* already out of the wheel */
    ck_assert_ptr_null(c->hb.prev);
    /* the first delivery of a tick records it (the metronome is in every
     * tick, not necessarily first) */
    if (f->n_ticks == 0 || f->ticks[f->n_ticks - 1] != now) {
        ck_assert_int_lt(f->n_ticks, MAX_TICKS);
        if (f->n_ticks > 0)
            ck_assert_uint_gt(now, f->ticks[f->n_ticks - 1]);
        f->ticks[f->n_ticks++] = now;
    }
    if (c == &f->metronome) {
        wheel_schedule(&f->w, c, now); /* due already: the next tick */
        if (f->stop_after_ticks && f->n_ticks >= f->stop_after_ticks)
            uv_stop(&f->loop);
        return;
    }
    int i = (int)(c - f->conns);
    ck_assert_int_ge(i, 0);
    ck_assert_int_lt(i, f->n);
    struct rec *r = &f->recs[i];
    r->delivered++;
    r->got_now = now;
    r->got_order = f->seq++;
    f->delivered++;
    if (f->on_due)
        f->on_due(f, i, now);
    if (f->expect && f->delivered >= f->expect)
        uv_stop(&f->loop);
}

static void on_deadline(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static void fixture_start(int n, uint64_t max_delay_ms)
{
    memset(&F, 0, sizeof(F));
    ck_assert_int_eq(uv_loop_init(&F.loop), 0);
    ck_assert_int_eq(
        wheel_init(&F.w, &F.loop, TICK_MS, max_delay_ms, offsetof(struct conn, hb), due, &F), 0);
    ck_assert_uint_ge(F.w.n_slots, max_delay_ms / TICK_MS + 1);
    F.metronome.hb.slot = -1;
    wheel_schedule(&F.w, &F.metronome, uv_now(&F.loop));
    F.n = n;
    F.conns = calloc((size_t)n + 1, sizeof(*F.conns));
    F.recs = calloc((size_t)n + 1, sizeof(*F.recs));
    ck_assert_ptr_nonnull(F.conns);
    ck_assert_ptr_nonnull(F.recs);
    for (int i = 0; i < n; i++)
        F.conns[i].hb.slot = -1;
    ck_assert_int_eq(uv_timer_init(&F.loop, &F.stop_timer), 0);
}

/* Schedules conn i for loop time at, recording the wheel's state. */
static void sched(int i, uint64_t at)
{
    struct rec *r = &F.recs[i];
    r->at = at;
    r->sched_next = F.w.next_tick_at;
    r->sched_ticks = F.n_ticks;
    wheel_schedule(&F.w, &F.conns[i], at);
    ck_assert_int_ge(F.conns[i].hb.slot, 0);
}

/* Runs the loop until the expected deliveries, stop_after_ticks, or
 * deadline_ms. */
static void run(int deadline_ms)
{
    ck_assert_int_eq(uv_timer_start(&F.stop_timer, on_deadline, (uint64_t)deadline_ms, 0), 0);
    uv_run(&F.loop, UV_RUN_DEFAULT);
    uv_timer_stop(&F.stop_timer);
}

static void fixture_end(void)
{
    wheel_close(&F.w);
    uv_close((uv_handle_t *)&F.stop_timer, NULL);
    uv_run(&F.loop, UV_RUN_DEFAULT);
    ck_assert_ptr_null(F.w.slots); /* freed in the close callback */
    ck_assert_int_eq(uv_loop_close(&F.loop), 0);
    free(F.conns);
    free(F.recs);
}

/* Index of the tick at loop time now. */
static int tick_index(uint64_t now)
{
    for (int k = 0; k < F.n_ticks; k++)
        if (F.ticks[k] == now)
            return k;
    ck_abort_msg("delivery at %llu is not a tick", (unsigned long long)now);
    return -1;
}

/* Conn i was delivered once, never early, by the first tick whose nominal
 * time (in the wheel's time base at scheduling) is >= its time. */
static void check_on_time(int i)
{
    const struct rec *r = &F.recs[i];
    ck_assert_msg(r->delivered == 1, "conn %d delivered %d times", i, r->delivered);
    ck_assert_msg(r->got_now >= r->at, "conn %d early: at %llu, delivered %llu", i,
                  (unsigned long long)r->at, (unsigned long long)r->got_now);
    uint64_t ahead = r->at <= r->sched_next ? 0 : (r->at - r->sched_next + TICK_MS - 1) / TICK_MS;
    /* the nominal tick chosen is the first at or after at */
    ck_assert_uint_ge(r->sched_next + ahead * TICK_MS, r->at);
    if (ahead > 0)
        ck_assert_uint_lt(r->sched_next + (ahead - 1) * TICK_MS, r->at);
    /* and it is exactly that tick that delivered it */
    int k = tick_index(r->got_now);
    ck_assert_msg(k == r->sched_ticks + (int)ahead,
                  "conn %d: delivered at tick %d, expected tick %d (at %llu, next %llu)", i, k,
                  r->sched_ticks + (int)ahead, (unsigned long long)r->at,
                  (unsigned long long)r->sched_next);
    /* the previous tick (if after scheduling) was not yet nominally due:
     * with no stall, the previous tick's loop time is < at */
    if (k > r->sched_ticks && k >= 1) {
        uint64_t gap = F.ticks[k] - F.ticks[k - 1];
        if (gap < TICK_MS + TICK_MS / 2 && F.ticks[k] - r->at < TICK_MS)
            ck_assert_uint_lt(F.ticks[k - 1], r->at);
    }
}

START_TEST(single_delivered_at_first_tick_after)
{
    fixture_start(4, 1000);
    uint64_t t0 = uv_now(&F.loop);
    sched(0, t0 + 100);
    sched(1, t0 + 200);
    sched(2, t0);     /* already due: next tick */
    sched(3, t0 - 5); /* in the past: next tick */
    F.expect = 4;
    run(3000);
    for (int i = 0; i < 4; i++)
        check_on_time(i);
    /* the past and present ones come first, then 100, then 200 */
    ck_assert_uint_eq(F.recs[2].got_now, F.recs[3].got_now);
    ck_assert_int_eq(tick_index(F.recs[2].got_now), 0);
    ck_assert_int_lt(F.recs[3].got_order, F.recs[0].got_order);
    ck_assert_int_lt(F.recs[0].got_order, F.recs[1].got_order);
    ck_assert_uint_lt(F.recs[0].got_now, F.recs[1].got_now);
    /* nothing left in the wheel but the metronome */
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(F.conns[i].hb.slot, -1);
    fixture_end();
}
END_TEST

START_TEST(cancel_before_due)
{
    fixture_start(3, 1000);
    uint64_t t0 = uv_now(&F.loop);
    sched(0, t0 + 60);
    sched(1, t0 + 60); /* same slot as 0 */
    sched(2, t0 + 120);
    wheel_cancel(&F.w, &F.conns[0]); /* the head of its slot's list */
    ck_assert_int_eq(F.conns[0].hb.slot, -1);
    wheel_cancel(&F.w, &F.conns[0]); /* twice is harmless */
    wheel_cancel(&F.w, &F.conns[2]);
    F.stop_after_ticks = (int)(240 / TICK_MS);
    run(3000);
    ck_assert_int_eq(F.recs[0].delivered, 0);
    ck_assert_int_eq(F.recs[2].delivered, 0);
    check_on_time(1);
    fixture_end();
}
END_TEST

START_TEST(cancel_tail_and_middle)
{
    fixture_start(5, 1000);
    uint64_t t0 = uv_now(&F.loop);
    for (int i = 0; i < 5; i++)
        sched(i, t0 + 80);           /* all in one slot: list 4,3,2,1,0 */
    wheel_cancel(&F.w, &F.conns[0]); /* tail */
    wheel_cancel(&F.w, &F.conns[2]); /* middle */
    wheel_cancel(&F.w, &F.conns[4]); /* head */
    F.expect = 2;
    run(3000);
    ck_assert_int_eq(F.recs[0].delivered, 0);
    ck_assert_int_eq(F.recs[2].delivered, 0);
    ck_assert_int_eq(F.recs[4].delivered, 0);
    check_on_time(1);
    check_on_time(3);
    /* a few more ticks: nothing else shows up */
    F.expect = 0;
    F.stop_after_ticks = F.n_ticks + 5;
    run(3000);
    ck_assert_int_eq(F.delivered, 2);
    fixture_end();
}
END_TEST

START_TEST(reschedule_moves)
{
    fixture_start(2, 1000);
    uint64_t t0 = uv_now(&F.loop);
    sched(0, t0 + 300);
    sched(1, t0 + 40);
    /* move 0 earlier and 1 later: each only once, at its new time */
    sched(0, t0 + 20);
    sched(1, t0 + 200);
    F.expect = 2;
    run(3000);
    check_on_time(0);
    check_on_time(1);
    ck_assert_int_lt(F.recs[0].got_order, F.recs[1].got_order);
    /* and nothing at the old times */
    F.expect = 0;
    F.stop_after_ticks = F.n_ticks + (int)(200 / TICK_MS);
    run(3000);
    ck_assert_int_eq(F.recs[0].delivered, 1);
    ck_assert_int_eq(F.recs[1].delivered, 1);
    fixture_end();
}
END_TEST

/* On delivery, conn 0 reschedules itself 50 ms later, three times; each
 * round's record is kept for checking afterwards. */
static struct rec rounds[4];
static int n_rounds;

static void again(struct fixture *f, int i, uint64_t now)
{
    ck_assert_int_eq(i, 0);
    ck_assert_int_lt(n_rounds, 4);
    rounds[n_rounds++] = f->recs[0];
    if (n_rounds < 4) {
        f->recs[0].delivered = 0;
        sched(0, now + 50);
    }
}

START_TEST(reschedule_from_callback)
{
    fixture_start(1, 1000);
    F.on_due = again;
    uint64_t t0 = uv_now(&F.loop);
    sched(0, t0 + 30);
    F.stop_after_ticks = (int)(600 / TICK_MS);
    run(3000);
    ck_assert_int_eq(n_rounds, 4);
    ck_assert_int_eq(F.delivered, 4);
    for (int k = 0; k < 4; k++) {
        F.recs[0] = rounds[k];
        check_on_time(0);
        if (k > 0)
            ck_assert_uint_ge(rounds[k].got_now, rounds[k - 1].got_now + 50);
    }
    fixture_end();
}
END_TEST

START_TEST(beyond_the_wheel)
{
    /* a wheel for 100 ms: a delay of 1 s lands in the farthest slot and is
     * handed over early, for the callback to reschedule */
    fixture_start(1, 100);
    uint32_t slots = F.w.n_slots;
    uint64_t t0 = uv_now(&F.loop);
    wheel_schedule(&F.w, &F.conns[0], t0 + 1000);
    ck_assert_int_ge(F.conns[0].hb.slot, 0);
    ck_assert_uint_lt((uint32_t)F.conns[0].hb.slot, slots);
    F.expect = 1;
    run(3000);
    ck_assert_int_eq(F.recs[0].delivered, 1);
    ck_assert_uint_lt(F.recs[0].got_now, t0 + 1000);
    /* delivered by the farthest slot's tick, not before */
    ck_assert_int_eq(tick_index(F.recs[0].got_now), (int)slots - 1);
    fixture_end();
}
END_TEST

START_TEST(many_only_due_handed_over)
{
    enum { N = 2000 };
    fixture_start(N, 2000);
    uint64_t t0 = uv_now(&F.loop);
    uint32_t seed = 12345;
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        sched(i, t0 + (seed >> 8) % 600); /* 0 .. 599 ms */
    }
    /* cancel every third, and reschedule every seventh (not cancelled)
     * to the far future (beyond the run) */
    int want = 0;
    for (int i = 0; i < N; i++) {
        if (i % 3 == 0) {
            wheel_cancel(&F.w, &F.conns[i]);
            F.recs[i].cancelled = 1;
        } else if (i % 7 == 0) {
            sched(i, t0 + 1900);
            F.recs[i].cancelled = 2; /* not due during the run */
        } else {
            want++;
        }
    }
    F.stop_after_ticks = (int)(800 / TICK_MS);
    run(5000);
    ck_assert_int_eq(F.delivered, want);
    uint64_t prev_now = 0;
    for (int i = 0; i < N; i++) {
        if (F.recs[i].cancelled) {
            ck_assert_msg(F.recs[i].delivered == 0, "conn %d delivered though not due", i);
            continue;
        }
        check_on_time(i);
    }
    /* deliveries are in tick order: a later delivery never has an earlier now */
    int *by_order = calloc((size_t)F.seq, sizeof(int));
    ck_assert_ptr_nonnull(by_order);
    for (int i = 0; i < N; i++)
        if (F.recs[i].delivered)
            by_order[F.recs[i].got_order] = i;
    for (int s = 0; s < F.seq; s++) {
        uint64_t now = F.recs[by_order[s]].got_now;
        ck_assert_uint_ge(now, prev_now);
        prev_now = now;
    }
    free(by_order);
    /* the far ones are still in the wheel, the others are out */
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(F.conns[i].hb.slot >= 0, F.recs[i].cancelled == 2);
    fixture_end();
}
END_TEST

static Suite *heartbeat_suite(void)
{
    Suite *s = suite_create("heartbeat");
    TCase *tc = tcase_create("wheel");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, single_delivered_at_first_tick_after);
    tcase_add_test(tc, cancel_before_due);
    tcase_add_test(tc, cancel_tail_and_middle);
    tcase_add_test(tc, reschedule_moves);
    tcase_add_test(tc, reschedule_from_callback);
    tcase_add_test(tc, beyond_the_wheel);
    tcase_add_test(tc, many_only_due_handed_over);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(heartbeat_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
