/* Unit tests of common/streamid (ids and "expires_at" read from a payload,
 * README.md "Expiry") and of common/keyslot's per-slot tags. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyslot.h"
#include "streamid.h"

static int expiry(const char *payload, int64_t *ms)
{
    return stream_expiry_from_payload(payload, strlen(payload), ms);
}

START_TEST(expiry_where_notify_publish_puts_it)
{
    int64_t ms = 0;
    ck_assert_int_eq(expiry("{\"id\":\"1-0\",\"expires_at\":1796657685715,\"type\":\"t\"}", &ms),
                     0);
    ck_assert_int_eq(ms, 1796657685715LL);
    ck_assert_int_eq(expiry("{\"expires_at\":5}", &ms), 0);
    ck_assert_int_eq(ms, 5);
    ck_assert_int_eq(expiry("{\"id\":\"1796657675715-12\",\"expires_at\":7}", &ms), 0);
    ck_assert_int_eq(ms, 7);
}
END_TEST

START_TEST(expiry_absent_or_malformed)
{
    int64_t ms = 42;
    const char *no[] = {
        "{\"id\":\"1-0\",\"type\":\"t\"}",
        "{\"type\":\"t\",\"expires_at\":5}", /* not where the gateway reads it */
        "{\"expires_at\":\"5\"}",
        "{\"expires_at\":}",
        "{\"expires_at\":5x}",
        "{\"expires_at\":5",
        "{\"expires_at\":-5}",
        "{\"expires_at\":12345678901234567}", /* more digits than a ms timestamp */
        "{\"id\":\"1-0\"}",
        "{\"id\":\"1-0\" ,\"expires_at\":5}",
        "",
        "{",
    };
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        ck_assert_msg(expiry(no[i], &ms) == -1, "accepted %s", no[i]);
    ck_assert_int_eq(ms, 42);
}
END_TEST

START_TEST(tags_land_in_their_slot)
{
    char *tags = malloc((size_t)KEYSLOT_COUNT * KEYSLOT_TAG_LEN);
    ck_assert_ptr_nonnull(tags);
    keyslot_tags(tags);
    for (unsigned slot = 0; slot < KEYSLOT_COUNT; slot++) {
        char key[32];
        int n =
            snprintf(key, sizeof(key), "notify:deadlines:{%.4s}", tags + slot * KEYSLOT_TAG_LEN);
        ck_assert_msg(keyslot(key, (size_t)n) == slot, "slot %u: tag %.4s", slot,
                      tags + slot * KEYSLOT_TAG_LEN);
        for (int k = 0; k < KEYSLOT_TAG_LEN; k++) {
            char c = tags[slot * KEYSLOT_TAG_LEN + k];
            ck_assert((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'));
        }
    }
    /* the same table every time (every node and the Lua library agree) */
    char *again = malloc((size_t)KEYSLOT_COUNT * KEYSLOT_TAG_LEN);
    keyslot_tags(again);
    ck_assert_int_eq(memcmp(tags, again, (size_t)KEYSLOT_COUNT * KEYSLOT_TAG_LEN), 0);
    free(again);
    free(tags);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("streamid");
    TCase *tc = tcase_create("streamid");
    tcase_add_test(tc, expiry_where_notify_publish_puts_it);
    tcase_add_test(tc, expiry_absent_or_malformed);
    tcase_add_test(tc, tags_land_in_their_slot);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
