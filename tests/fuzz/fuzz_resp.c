/* libFuzzer target: resp_scan (common/resp.c), cross-checked against
 * hiredis's reader, which parsed every reply before and still parses every
 * reply that is not a message push.
 *
 * Whatever resp_scan measures as one complete reply of n bytes, hiredis
 * must not find incomplete nor shorter (it may refuse it: it allows no
 * nesting deeper than 7, which Redis never sends); a message push must
 * read as hiredis reads it, and so must a subscription confirmation
 * (resp_confirmation, sharded ones included). Whatever resp_scan finds incomplete, hiredis must
 * not complete. */
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"

/* 1 one reply using exactly len bytes, 2 a reply with bytes left over,
 * 0 none yet, -1 an error; *out gets the reply (caller frees). */
static int hiredis_parse(const uint8_t *buf, size_t len, redisReply **out)
{
    redisReader *r = redisReaderCreate();
    if (!r)
        abort();
    void *reply = NULL;
    int v;
    if (redisReaderFeed(r, (const char *)buf, len) != REDIS_OK ||
        redisReaderGetReply(r, &reply) != REDIS_OK)
        v = -1;
    else if (!reply)
        v = 0;
    else
        v = r->pos == r->len ? 1 : 2;
    redisReaderFree(r);
    *out = reply;
    return v;
}

static int same(const redisReply *e, const char *s, size_t n)
{
    return e && e->type == REDIS_REPLY_STRING && e->len == n && memcmp(e->str, s, n) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct resp_message m;
    int is_message;
    long n = resp_scan((const char *)data, size, &m, &is_message);
    if (n < -1 || n > (long)size)
        abort();
    redisReply *reply = NULL;
    if (n > 0) {
        int v = hiredis_parse(data, (size_t)n, &reply);
        if (v == 0 || v == 2)
            abort();
        if (v == 1 && is_message) {
            if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
                !(same(reply->element[0], "message", 7) ||
                  same(reply->element[0], "smessage", 8)) ||
                !same(reply->element[1], m.channel, m.channel_len) ||
                !same(reply->element[2], m.payload, m.payload_len))
                abort();
        }
        if (is_message && (m.channel < (const char *)data || m.payload < (const char *)data ||
                           m.payload + m.payload_len > (const char *)data + n))
            abort();
        struct resp_confirmation c;
        if (v == 1 && resp_confirmation((const char *)data, (size_t)n, &c)) {
            /* a confirmation is read as hiredis reads it (where hiredis
             * reads it at all: like resp_scan, it takes numbers such as
             * "$016" that hiredis refuses and Redis never writes) */
            const redisReply *k =
                reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 ? reply->element[0] : NULL;
            int sub = same(k, "subscribe", 9) || same(k, "ssubscribe", 10);
            int unsub = same(k, "unsubscribe", 11) || same(k, "sunsubscribe", 12);
            int sharded = same(k, "ssubscribe", 10) || same(k, "sunsubscribe", 12);
            if (is_message || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
                !(sub || unsub) || c.subscribe != sub || c.sharded != sharded ||
                !same(reply->element[1], c.channel, c.channel_len) ||
                reply->element[2]->type != REDIS_REPLY_INTEGER ||
                reply->element[2]->integer != c.count)
                abort();
        }
    } else if (n == 0) {
        if (hiredis_parse(data, size, &reply) >= 1)
            abort();
    }
    if (reply)
        freeReplyObject(reply);
    return 0;
}
