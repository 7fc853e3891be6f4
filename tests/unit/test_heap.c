/* Unit tests of gateway/features/heap: when the heap is trimmed (and so
 * walked), given the process's RSS at each check (heap.h). */
#include <check.h>
#include <stdlib.h>

#include "heap.h"

#define MB (1024 * 1024)

static struct heap at(size_t rss)
{
    return (struct heap){.rss_mark = rss, .rss_last = rss};
}

START_TEST(steady_rss_never_trims)
{
    struct heap h = at(40 * MB);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(heap_should_trim(&h, 40 * MB + (size_t)(i % 3) * 4096), 0);
}
END_TEST

START_TEST(growth_trims_once_when_it_stops)
{
    struct heap h = at(10 * MB);
    /* a wave of connections: 2 MB per check, no trim while it lasts */
    for (size_t r = 12 * MB; r <= 30 * MB; r += 2 * MB)
        ck_assert_int_eq(heap_should_trim(&h, r), 0);
    ck_assert_int_eq(heap_should_trim(&h, 30 * MB), 1);
    h.rss_mark = h.rss_last = 30 * MB; /* what the trim left (nothing was free) */
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(heap_should_trim(&h, 30 * MB), 0);
}
END_TEST

START_TEST(burst_between_checks_trims_next_check)
{
    struct heap h = at(14 * MB);
    /* a resync allocated 5 MB and freed it before the next check: the RSS
     * stays up */
    ck_assert_int_eq(heap_should_trim(&h, 19 * MB), 0); /* it grew since the last check */
    ck_assert_int_eq(heap_should_trim(&h, 19 * MB), 1); /* and stopped */
    h.rss_mark = h.rss_last = 15 * MB;                  /* trimmed: 4 MB back */
    /* the next outage reuses nothing below the mark: trims again */
    ck_assert_int_eq(heap_should_trim(&h, 18 * MB), 0);
    ck_assert_int_eq(heap_should_trim(&h, 18 * MB), 1);
}
END_TEST

START_TEST(small_growth_is_not_worth_a_walk)
{
    struct heap h = at(20 * MB);
    ck_assert_int_eq(heap_should_trim(&h, 20 * MB + 512 * 1024), 0);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(heap_should_trim(&h, 20 * MB + 512 * 1024), 0);
}
END_TEST

START_TEST(shrinking_lowers_the_mark)
{
    struct heap h = at(30 * MB);
    ck_assert_int_eq(heap_should_trim(&h, 22 * MB), 0); /* clients left, pages unmapped */
    ck_assert_int_eq(heap_should_trim(&h, 22 * MB), 0);
    /* growth counts from the lower RSS */
    ck_assert_int_eq(heap_should_trim(&h, 23 * MB + 512 * 1024), 0);
    ck_assert_int_eq(heap_should_trim(&h, 23 * MB + 512 * 1024), 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("heap");
    TCase *tc = tcase_create("rule");
    tcase_add_test(tc, steady_rss_never_trims);
    tcase_add_test(tc, growth_trims_once_when_it_stops);
    tcase_add_test(tc, burst_between_checks_trims_next_check);
    tcase_add_test(tc, small_growth_is_not_worth_a_walk);
    tcase_add_test(tc, shrinking_lowers_the_mark);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
