/* Unit tests of common/ids: connection ids. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"

static int is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

START_TEST(format)
{
    struct idgen g;
    ck_assert_int_eq(idgen_init(&g), 0);
    char id[CONN_ID_LEN + 8];
    memset(id, 'X', sizeof(id));
    idgen_next(&g, id, 1700000000123ULL);
    ck_assert_int_eq(CONN_ID_LEN, 24);
    ck_assert_uint_eq(strlen(id), CONN_ID_LEN);
    ck_assert_int_eq(is_lower_hex(id, CONN_ID_LEN), 1);
    ck_assert_int_eq(id[CONN_ID_LEN + 1], 'X'); /* nothing past the NUL */
    /* the first 12 digits are the clock in ms */
    ck_assert_int_eq(strncmp(id, "018bcfe5687b", 12), 0);
}
END_TEST

START_TEST(deterministic_layout)
{
    struct idgen g = {.base = 0x0000123456789abcULL, .counter = 0};
    char id[CONN_ID_LEN + 1];
    idgen_next(&g, id, 0);
    ck_assert_str_eq(id, "000000000000123456789abc");
    idgen_next(&g, id, 1);
    ck_assert_str_eq(id, "000000000001123456789abd");
    ck_assert_uint_eq(g.counter, 2);
    /* only 48 bits of each half are used; both wrap */
    struct idgen w = {.base = 0xffffffffffffffffULL, .counter = 0};
    idgen_next(&w, id, 0xffffffffffffffffULL);
    ck_assert_str_eq(id, "ffffffffffffffffffffffff");
    idgen_next(&w, id, 0x1000000000000ULL);
    ck_assert_str_eq(id, "000000000000000000000000");
}
END_TEST

START_TEST(unique_in_one_generator)
{
    struct idgen g;
    ck_assert_int_eq(idgen_init(&g), 0);
    enum { N = 10000 };
    char(*ids)[CONN_ID_LEN + 1] = malloc(sizeof(*ids) * N);
    ck_assert_ptr_nonnull(ids);
    for (int i = 0; i < N; i++)
        idgen_next(&g, ids[i], 1700000000000ULL); /* same millisecond */
    /* same ms, consecutive counter: all distinct (plain strcmp, one assert:
     * half a million Check assertions are slow under the sanitizers) */
    int equal = 0;
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < i + 50 && j < N; j++)
            equal += strcmp(ids[i], ids[j]) == 0;
    ck_assert_int_eq(equal, 0);
    free(ids);
}
END_TEST

START_TEST(generators_differ)
{
    struct idgen a, b;
    ck_assert_int_eq(idgen_init(&a), 0);
    ck_assert_int_eq(idgen_init(&b), 0);
    ck_assert_uint_eq(a.counter, 0);
    /* two seeds colliding is a 2^-64 event */
    ck_assert(a.base != b.base);
    char x[CONN_ID_LEN + 1], y[CONN_ID_LEN + 1];
    idgen_next(&a, x, 42);
    idgen_next(&b, y, 42);
    ck_assert_str_ne(x, y);
}
END_TEST

static Suite *ids_suite(void)
{
    Suite *s = suite_create("ids");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, format);
    tcase_add_test(tc, deterministic_layout);
    tcase_add_test(tc, unique_in_one_generator);
    tcase_add_test(tc, generators_differ);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ids_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
