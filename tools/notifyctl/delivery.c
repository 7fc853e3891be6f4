/* notifyctl's delivery commands (README.md "Acknowledgements and the
 * undelivered outbox"): receipts, undelivered (read, read as a consumer
 * group, acknowledge for the group) and unacked. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notifyctl.h"
#include "rnames.h"
#include "streamid.h"
#include "validate.h"

#define DEFAULT_COUNT "100"

int delivery_check(const struct args *a)
{
    if (a->count) {
        char *end;
        long n = strtol(a->count, &end, 10);
        if (*a->count < '0' || *a->count > '9' || *end || n < 1 || n > 1000000)
            return args_usage_error("--count: expected 1 to 1000000 (got '%s')", a->count);
    }
    switch (a->cmd) {
    case CMD_RECEIPTS:
        if (a->npos > 1)
            return args_usage_error("receipts: unexpected argument '%s'", a->pos[1]);
        break;
    case CMD_UNACKED:
        if (a->npos != 1)
            return args_usage_error(a->npos ? "unacked: one ACCOUNT per call"
                                            : "unacked: missing ACCOUNT");
        break;
    case CMD_UNDELIVERED:
        if (a->consumer && !a->group)
            return args_usage_error("undelivered: --consumer needs --group");
        if (a->npos == 0)
            break;
        if (strcmp(a->pos[0], "ack") != 0)
            return args_usage_error("undelivered: unexpected argument '%s' (expected ack)",
                                    a->pos[0]);
        if (!a->group)
            return args_usage_error("undelivered ack: missing --group");
        if (a->npos < 2)
            return args_usage_error("undelivered ack: missing ENTRY-ID");
        for (int i = 1; i < a->npos; i++) {
            struct stream_id id;
            if (stream_id_parse(a->pos[i], strlen(a->pos[i]), &id) < 0)
                return args_usage_error("undelivered ack: '%s' is not an entry id <ms>-<seq>",
                                        a->pos[i]);
        }
        break;
    default:
        break;
    }
    return -1;
}

static int print_doc(json_t *doc)
{
    if (!doc) {
        fprintf(stderr, "%s: out of memory building JSON output\n", PROG);
        return EXIT_REDIS;
    }
    int rc = json_dumpf(doc, stdout, JSON_COMPACT) == 0 && putchar('\n') != EOF ? 0 : EXIT_REDIS;
    json_decref(doc);
    if (rc)
        fprintf(stderr, "%s: cannot write output: %s\n", PROG, strerror(errno));
    return rc;
}

/* A stream entry {id, [field, value, ...]} as {"entry": id, field: value...};
 * NULL when it has another shape. */
static json_t *entry_json(const redisReply *e)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY)
        return NULL;
    json_t *o = json_object();
    json_object_set_new(o, "entry", json_stringn(e->element[0]->str, e->element[0]->len));
    const redisReply *f = e->element[1];
    for (size_t i = 0; i + 1 < f->elements; i += 2)
        if (f->element[i]->type == REDIS_REPLY_STRING &&
            f->element[i + 1]->type == REDIS_REPLY_STRING)
            json_object_set_new(o, f->element[i]->str,
                                json_stringn(f->element[i + 1]->str, f->element[i + 1]->len));
    return o;
}

/* Prints entries (an array of stream entries), those of account only when
 * not NULL: text one line each (entry id, then field=value), or one JSON
 * array. */
static int print_entries(const struct args *a, const redisReply *entries, const char *account)
{
    json_t *all = json_array();
    for (size_t i = 0; i < entries->elements; i++) {
        json_t *o = entry_json(entries->element[i]);
        if (!o)
            continue;
        const char *acct = json_string_value(json_object_get(o, "account"));
        if (account && (!acct || strcmp(acct, account))) {
            json_decref(o);
            continue;
        }
        json_array_append_new(all, o);
    }
    if (a->json)
        return print_doc(all);
    size_t i;
    json_t *o;
    json_array_foreach(all, i, o)
    {
        fputs(json_string_value(json_object_get(o, "entry")), stdout);
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v)
        {
            if (strcmp(k, "entry"))
                printf(" %s=%s", k, json_string_value(v));
        }
        putchar('\n');
    }
    json_decref(all);
    return 0;
}

static void stream_name(char *buf, size_t size, const char *prefix, const char *name)
{
    snprintf(buf, size, "%s%s", prefix, name);
}

int cmd_receipts(struct session *s, const struct args *a)
{
    char key[RNAME_MAX];
    stream_name(key, sizeof(key), a->prefix, "receipts");
    const char *argv[] = {"XRANGE", key, "-", "+", "COUNT", a->count ? a->count : DEFAULT_COUNT};
    redisReply *r = session_expect(s, REDIS_REPLY_ARRAY, 6, argv);
    if (!r)
        return EXIT_REDIS;
    int rc = print_entries(a, r, a->npos ? a->pos[0] : NULL);
    freeReplyObject(r);
    return rc;
}

/* The group exists afterwards (created at the start of the stream, the
 * stream too if need be); 0, or the exit status. */
static int ensure_group(struct session *s, const char *key, const char *group)
{
    const char *exists[] = {"EXISTS", key};
    redisReply *r = session_expect(s, REDIS_REPLY_INTEGER, 2, exists);
    if (!r)
        return EXIT_REDIS;
    int there = r->integer == 1;
    freeReplyObject(r);
    if (there) {
        const char *argv[] = {"XINFO", "GROUPS", key};
        if (!(r = session_expect(s, REDIS_REPLY_ARRAY, 3, argv)))
            return EXIT_REDIS;
        for (size_t i = 0; i < r->elements; i++) {
            const redisReply *g = r->element[i];
            for (size_t k = 0; g->type == REDIS_REPLY_ARRAY && k + 1 < g->elements; k += 2)
                if (g->element[k]->type == REDIS_REPLY_STRING &&
                    !strcmp(g->element[k]->str, "name") &&
                    g->element[k + 1]->type == REDIS_REPLY_STRING &&
                    !strcmp(g->element[k + 1]->str, group)) {
                    freeReplyObject(r);
                    return 0;
                }
        }
        freeReplyObject(r);
    }
    /* from the start of the outbox: a new worker sees what waits already */
    const char *create[] = {"XGROUP", "CREATE", key, group, "0", "MKSTREAM"};
    if (!(r = session_expect(s, REDIS_REPLY_STATUS, 6, create)))
        return EXIT_REDIS;
    freeReplyObject(r);
    return 0;
}

int cmd_undelivered(struct session *s, const struct args *a)
{
    char key[RNAME_MAX];
    stream_name(key, sizeof(key), a->prefix, "undelivered");
    const char *count = a->count ? a->count : DEFAULT_COUNT;
    if (a->npos && !strcmp(a->pos[0], "ack")) {
        const char **argv = calloc((size_t)a->npos + 2, sizeof(*argv));
        if (!argv)
            return EXIT_REDIS;
        argv[0] = "XACK", argv[1] = key, argv[2] = a->group;
        for (int i = 1; i < a->npos; i++)
            argv[2 + i] = a->pos[i];
        redisReply *r = session_expect(s, REDIS_REPLY_INTEGER, a->npos + 2, argv);
        free(argv);
        if (!r)
            return EXIT_REDIS;
        int rc = a->json ? print_doc(json_pack("{s:I}", "acknowledged", (json_int_t)r->integer))
                         : (printf("%lld\n", r->integer) < 0 ? EXIT_REDIS : 0);
        freeReplyObject(r);
        return rc;
    }
    if (!a->group) {
        const char *argv[] = {"XRANGE", key, "-", "+", "COUNT", count};
        redisReply *r = session_expect(s, REDIS_REPLY_ARRAY, 6, argv);
        if (!r)
            return EXIT_REDIS;
        int rc = print_entries(a, r, NULL);
        freeReplyObject(r);
        return rc;
    }
    int rc = ensure_group(s, key, a->group);
    if (rc)
        return rc;
    const char *consumer = a->consumer ? a->consumer : "notifyctl";
    const char *argv[] = {"XREADGROUP", "GROUP",   a->group, consumer, "COUNT",
                          count,        "STREAMS", key,      ">"};
    redisReply *r = session_command(s, 9, argv);
    if (!r)
        return EXIT_REDIS;
    /* nil: nothing new; else [[key, [entries...]]] */
    const redisReply *none = NULL, *entries = none;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2)
        entries = r->element[0]->element[1];
    if (entries && entries->type == REDIS_REPLY_ARRAY)
        rc = print_entries(a, entries, NULL);
    else
        rc = a->json ? print_doc(json_array()) : 0;
    freeReplyObject(r);
    return rc;
}

int cmd_unacked(struct session *s, const struct args *a)
{
    char key[RNAME_MAX];
    /* <prefix>unacked:{<account>}, next to the account's stream (lua/notify.lua) */
    snprintf(key, sizeof(key), "%sunacked:{%s}", a->prefix, a->pos[0]);
    const char *argv[] = {"ZRANGE", key, "0", "-1"};
    redisReply *r = session_expect(s, REDIS_REPLY_ARRAY, 4, argv);
    if (!r)
        return EXIT_REDIS;
    int rc = 0;
    if (a->json) {
        json_t *ids = json_array();
        for (size_t i = 0; i < r->elements; i++)
            json_array_append_new(ids, json_stringn(r->element[i]->str, r->element[i]->len));
        rc = print_doc(json_pack("{s:s,s:o}", "account", a->pos[0], "ids", ids));
    } else {
        for (size_t i = 0; i < r->elements && rc == 0; i++)
            if (printf("%s\n", r->element[i]->str) < 0)
                rc = EXIT_REDIS;
    }
    freeReplyObject(r);
    return rc;
}
