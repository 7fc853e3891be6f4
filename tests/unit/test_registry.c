/* Unit tests of gateway/registry: connections by id and by account. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry.h"

/* A zeroed session with the given id, as the session layer registers it. */
static void conn_make(struct session *c, const char *id)
{
    memset(c, 0, sizeof(*c));
    c->hb.slot = -1;
    size_t n = strlen(id);
    if (n > CONN_ID_LEN)
        n = CONN_ID_LEN;
    memcpy(c->id, id, n);
    c->id[n] = '\0';
}

/* Walks the account's intrusive list, checking its links; returns its
 * length. */
static uint32_t list_len(const struct account *a)
{
    uint32_t n = 0;
    const struct session *prev = NULL;
    for (const struct session *c = a->conns; c; c = c->acct_next) {
        ck_assert_ptr_eq(c->acct_prev, prev);
        ck_assert_ptr_eq(c->acct, a);
        prev = c;
        n++;
    }
    return n;
}

/* Every count in r agrees with its tables and lists. */
static void check_consistent(const struct registry *r)
{
    ck_assert_uint_eq(HASH_COUNT(r->by_id), r->n_conns);
    ck_assert_uint_eq(HASH_COUNT(r->accounts), r->n_accounts);
    uint32_t total = 0;
    const struct account *a;
    for (a = r->accounts; a; a = a->hh.next) {
        ck_assert_uint_gt(a->n_conns, 0);
        ck_assert_uint_eq(list_len(a), a->n_conns);
        ck_assert_uint_eq(strlen(a->id), a->id_len);
        ck_assert_ptr_eq(registry_find_account(r, a->id, a->id_len), a);
        for (const struct session *c = a->conns; c; c = c->acct_next)
            ck_assert_ptr_eq(registry_find_session(r, c->id), c);
        total += a->n_conns;
    }
    ck_assert_uint_eq(total, r->n_conns);
}

START_TEST(add_remove_single)
{
    struct registry r;
    registry_init(&r, 0, 0);
    ck_assert_uint_eq(r.n_conns, 0);
    ck_assert_uint_eq(r.n_accounts, 0);
    ck_assert_ptr_null(registry_find_session(&r, "c1"));
    ck_assert_ptr_null(registry_find_account(&r, "u1", 2));

    struct session c;
    conn_make(&c, "c1");
    ck_assert_int_eq(registry_add(&r, &c, "u1"), 1); /* account appears */
    ck_assert_uint_eq(r.n_conns, 1);
    ck_assert_uint_eq(r.n_accounts, 1);
    ck_assert_ptr_eq(registry_find_session(&r, "c1"), &c);
    struct account *a = registry_find_account(&r, "u1", 2);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_eq(c.acct, a);
    ck_assert_str_eq(a->id, "u1");
    ck_assert_uint_eq(a->n_conns, 1);
    ck_assert_int_eq(a->subscribed, 0);
    check_consistent(&r);

    char *gone = NULL;
    ck_assert_int_eq(registry_remove(&r, &c, &gone), 1); /* account disappears */
    ck_assert_ptr_nonnull(gone);
    ck_assert_str_eq(gone, "u1");
    free(gone);
    ck_assert_ptr_null(c.acct);
    ck_assert_uint_eq(r.n_conns, 0);
    ck_assert_uint_eq(r.n_accounts, 0);
    ck_assert_ptr_null(registry_find_session(&r, "c1"));
    ck_assert_ptr_null(registry_find_account(&r, "u1", 2));
    check_consistent(&r);

    /* removing again: not registered */
    gone = NULL;
    ck_assert_int_eq(registry_remove(&r, &c, &gone), -1);
    ck_assert_ptr_null(gone);
    registry_clear(&r);
}
END_TEST

START_TEST(account_appears_once)
{
    struct registry r;
    registry_init(&r, 0, 0);
    struct session c[4];
    conn_make(&c[0], "a");
    conn_make(&c[1], "b");
    conn_make(&c[2], "c");
    conn_make(&c[3], "d");
    ck_assert_int_eq(registry_add(&r, &c[0], "u1"), 1);
    ck_assert_int_eq(registry_add(&r, &c[1], "u1"), 0);
    ck_assert_int_eq(registry_add(&r, &c[2], "u1"), 0);
    ck_assert_int_eq(registry_add(&r, &c[3], "u2"), 1);
    ck_assert_uint_eq(r.n_conns, 4);
    ck_assert_uint_eq(r.n_accounts, 2);
    ck_assert_uint_eq(registry_find_account(&r, "u1", 2)->n_conns, 3);
    ck_assert_ptr_eq(c[0].acct, c[1].acct);
    ck_assert_ptr_ne(c[0].acct, c[3].acct);
    check_consistent(&r);

    /* remove from the middle, the head and the tail of u1's list */
    char *gone = NULL;
    ck_assert_int_eq(registry_remove(&r, &c[1], &gone), 0);
    ck_assert_ptr_null(gone);
    check_consistent(&r);
    ck_assert_int_eq(registry_remove(&r, &c[2], &gone), 0);
    ck_assert_ptr_null(gone);
    check_consistent(&r);
    ck_assert_uint_eq(registry_find_account(&r, "u1", 2)->n_conns, 1);
    ck_assert_int_eq(registry_remove(&r, &c[0], &gone), 1);
    ck_assert_str_eq(gone, "u1");
    free(gone);
    gone = NULL;
    check_consistent(&r);
    ck_assert_ptr_null(registry_find_account(&r, "u1", 2));
    ck_assert_ptr_nonnull(registry_find_account(&r, "u2", 2));
    ck_assert_uint_eq(r.n_accounts, 1);

    /* NULL gone_id is allowed */
    ck_assert_int_eq(registry_remove(&r, &c[3], NULL), 1);
    ck_assert_uint_eq(r.n_accounts, 0);
    ck_assert_uint_eq(r.n_conns, 0);

    /* the account can come back */
    ck_assert_int_eq(registry_add(&r, &c[0], "u1"), 1);
    ck_assert_int_eq(registry_add(&r, &c[1], "u1"), 0);
    check_consistent(&r);
    registry_clear(&r);
    ck_assert_uint_eq(r.n_conns, 0);
    ck_assert_uint_eq(r.n_accounts, 0);
    ck_assert_ptr_null(r.accounts);
    ck_assert_ptr_null(r.by_id);
}
END_TEST

START_TEST(find_needs_exact_id)
{
    struct registry r;
    registry_init(&r, 0, 0);
    struct session c;
    conn_make(&c, "0123456789abcdef01234567");
    ck_assert_int_eq(registry_add(&r, &c, "acct:x"), 1);
    ck_assert_ptr_eq(registry_find_session(&r, "0123456789abcdef01234567"), &c);
    ck_assert_ptr_null(registry_find_session(&r, "0123456789abcdef0123456"));
    ck_assert_ptr_null(registry_find_session(&r, "0123456789abcdef012345678"));
    ck_assert_ptr_null(registry_find_session(&r, ""));
    /* by account: the length counts, not a prefix */
    ck_assert_ptr_nonnull(registry_find_account(&r, "acct:x", 6));
    ck_assert_ptr_null(registry_find_account(&r, "acct:x", 5));
    ck_assert_ptr_nonnull(registry_find_account(&r, "acct:xyz", 6));
    ck_assert_ptr_null(registry_find_account(&r, "acct:X", 6));
    registry_clear(&r);
}
END_TEST

START_TEST(per_account_limit)
{
    struct registry r;
    registry_init(&r, 0, 2);
    struct session c[5];
    for (int i = 0; i < 5; i++) {
        char id[8];
        snprintf(id, sizeof(id), "c%d", i);
        conn_make(&c[i], id);
    }
    ck_assert_int_eq(registry_check(&r, "u1"), REGISTRY_OK);
    ck_assert_int_eq(registry_add(&r, &c[0], "u1"), 1);
    ck_assert_int_eq(registry_check(&r, "u1"), REGISTRY_OK);
    ck_assert_int_eq(registry_add(&r, &c[1], "u1"), 0);
    ck_assert_int_eq(registry_check(&r, "u1"), REGISTRY_ACCOUNT_FULL);
    ck_assert_int_eq(registry_add(&r, &c[2], "u1"), -1);
    ck_assert_ptr_null(c[2].acct);
    ck_assert_ptr_null(registry_find_session(&r, "c2"));
    ck_assert_uint_eq(r.n_conns, 2);
    /* other accounts are not affected */
    ck_assert_int_eq(registry_check(&r, "u2"), REGISTRY_OK);
    ck_assert_int_eq(registry_add(&r, &c[3], "u2"), 1);
    ck_assert_int_eq(registry_add(&r, &c[4], "u2"), 0);
    ck_assert_int_eq(registry_check(&r, "u2"), REGISTRY_ACCOUNT_FULL);
    check_consistent(&r);
    /* a slot freed is usable again */
    ck_assert_int_eq(registry_remove(&r, &c[0], NULL), 0);
    ck_assert_int_eq(registry_check(&r, "u1"), REGISTRY_OK);
    ck_assert_int_eq(registry_add(&r, &c[2], "u1"), 0);
    ck_assert_int_eq(registry_check(&r, "u1"), REGISTRY_ACCOUNT_FULL);
    check_consistent(&r);
    registry_clear(&r);
}
END_TEST

START_TEST(per_node_limit)
{
    struct registry r;
    registry_init(&r, 3, 0);
    struct session c[5];
    for (int i = 0; i < 5; i++) {
        char id[8];
        snprintf(id, sizeof(id), "c%d", i);
        conn_make(&c[i], id);
    }
    ck_assert_int_eq(registry_add(&r, &c[0], "u1"), 1);
    ck_assert_int_eq(registry_add(&r, &c[1], "u2"), 1);
    ck_assert_int_eq(registry_check(&r, "u3"), REGISTRY_OK);
    ck_assert_int_eq(registry_add(&r, &c[2], "u3"), 1);
    ck_assert_int_eq(registry_check(&r, "u3"), REGISTRY_NODE_FULL);
    ck_assert_int_eq(registry_check(&r, "u4"), REGISTRY_NODE_FULL);
    ck_assert_int_eq(registry_add(&r, &c[3], "u4"), -1);
    ck_assert_ptr_null(registry_find_account(&r, "u4", 2)); /* no stray entry */
    ck_assert_uint_eq(r.n_accounts, 3);
    ck_assert_int_eq(registry_add(&r, &c[3], "u1"), -1);
    ck_assert_uint_eq(registry_find_account(&r, "u1", 2)->n_conns, 1);
    check_consistent(&r);
    char *gone = NULL;
    ck_assert_int_eq(registry_remove(&r, &c[1], &gone), 1);
    free(gone);
    ck_assert_int_eq(registry_check(&r, "u4"), REGISTRY_OK);
    ck_assert_int_eq(registry_add(&r, &c[3], "u4"), 1);
    ck_assert_int_eq(registry_check(&r, "u5"), REGISTRY_NODE_FULL);
    check_consistent(&r);
    registry_clear(&r);
}
END_TEST

START_TEST(both_limits_node_first)
{
    struct registry r;
    registry_init(&r, 2, 2);
    struct session c[3];
    conn_make(&c[0], "x0");
    conn_make(&c[1], "x1");
    conn_make(&c[2], "x2");
    ck_assert_int_eq(registry_add(&r, &c[0], "u1"), 1);
    ck_assert_int_eq(registry_add(&r, &c[1], "u1"), 0);
    /* both limits reached: the node's wins (503 before 429) */
    ck_assert_int_eq(registry_check(&r, "u1"), REGISTRY_NODE_FULL);
    ck_assert_int_eq(registry_check(&r, "u2"), REGISTRY_NODE_FULL);
    ck_assert_int_eq(registry_add(&r, &c[2], "u1"), -1);
    registry_clear(&r);
}
END_TEST

START_TEST(many_accounts_and_conns)
{
    enum { ACCOUNTS = 2000, PER = 5, N = ACCOUNTS * PER };
    struct registry r;
    registry_init(&r, 0, 0);
    struct session *c = calloc(N, sizeof(*c));
    ck_assert_ptr_nonnull(c);
    int appeared = 0;
    for (int i = 0; i < N; i++) {
        char id[32], acct[32];
        snprintf(id, sizeof(id), "%024d", i);
        snprintf(acct, sizeof(acct), "acct-%d", i % ACCOUNTS);
        conn_make(&c[i], id);
        int rc = registry_add(&r, &c[i], acct);
        ck_assert_int_ge(rc, 0);
        appeared += rc;
        ck_assert_int_eq(rc, i < ACCOUNTS ? 1 : 0);
    }
    ck_assert_int_eq(appeared, ACCOUNTS);
    ck_assert_uint_eq(r.n_conns, N);
    ck_assert_uint_eq(r.n_accounts, ACCOUNTS);
    check_consistent(&r);
    /* every account found; at most one per bucket on average, so a
     * delivery's lookup looks at about 1.4 entries (registry.c) */
    for (int a = 0; a < ACCOUNTS; a++) {
        char acct[32];
        int len = snprintf(acct, sizeof(acct), "acct-%d", a);
        struct account *found = registry_find_account(&r, acct, (size_t)len);
        ck_assert_ptr_nonnull(found);
        ck_assert_str_eq(found->id, acct);
    }
    ck_assert_uint_ge(r.accounts->hh.tbl->num_buckets, r.n_accounts);
    for (int i = 0; i < N; i += 97) {
        char id[32];
        snprintf(id, sizeof(id), "%024d", i);
        ck_assert_ptr_eq(registry_find_session(&r, id), &c[i]);
    }

    /* remove in an order that mixes heads, middles and tails */
    int gone_count = 0;
    for (int pass = 0; pass < PER; pass++) {
        int k = (pass * 3) % PER; /* 0,3,1,4,2 */
        for (int a = 0; a < ACCOUNTS; a++) {
            int i = k * ACCOUNTS + a;
            char *gone = NULL;
            int rc = registry_remove(&r, &c[i], &gone);
            ck_assert_int_eq(rc, pass == PER - 1 ? 1 : 0);
            if (rc == 1) {
                char acct[32];
                snprintf(acct, sizeof(acct), "acct-%d", a);
                ck_assert_str_eq(gone, acct);
                free(gone);
                gone_count++;
            } else {
                ck_assert_ptr_null(gone);
            }
        }
        ck_assert_uint_eq(r.n_conns, (uint32_t)(N - (pass + 1) * ACCOUNTS));
        if (pass == 1)
            check_consistent(&r);
    }
    ck_assert_int_eq(gone_count, ACCOUNTS);
    ck_assert_uint_eq(r.n_conns, 0);
    ck_assert_uint_eq(r.n_accounts, 0);
    ck_assert_ptr_null(r.accounts);
    ck_assert_ptr_null(r.by_id);
    registry_clear(&r);
    free(c);
}
END_TEST

START_TEST(clear_frees_accounts)
{
    struct registry r;
    registry_init(&r, 10, 10);
    struct session c[3];
    conn_make(&c[0], "a");
    conn_make(&c[1], "b");
    conn_make(&c[2], "c");
    registry_add(&r, &c[0], "u1");
    registry_add(&r, &c[1], "u2");
    registry_add(&r, &c[2], "u2");
    registry_clear(&r);
    ck_assert_uint_eq(r.n_conns, 0);
    ck_assert_uint_eq(r.n_accounts, 0);
    ck_assert_ptr_null(registry_find_session(&r, "a"));
    ck_assert_ptr_null(registry_find_account(&r, "u2", 2));
    /* limits survive a clear */
    ck_assert_uint_eq(r.max_conns, 10);
    ck_assert_uint_eq(r.max_per_account, 10);
    /* usable again with fresh conns */
    struct session d;
    conn_make(&d, "d");
    ck_assert_int_eq(registry_add(&r, &d, "u1"), 1);
    check_consistent(&r);
    registry_clear(&r);
}
END_TEST

static Suite *registry_suite(void)
{
    Suite *s = suite_create("registry");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, add_remove_single);
    tcase_add_test(tc, account_appears_once);
    tcase_add_test(tc, find_needs_exact_id);
    tcase_add_test(tc, per_account_limit);
    tcase_add_test(tc, per_node_limit);
    tcase_add_test(tc, both_limits_node_first);
    tcase_add_test(tc, many_accounts_and_conns);
    tcase_add_test(tc, clear_frees_accounts);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(registry_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
