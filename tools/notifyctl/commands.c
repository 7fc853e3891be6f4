/* notifyctl's commands and their output, text or --json (notifyctl.h). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "envelope.h"
#include "notifyctl.h"
#include "rnames.h"

/* ----------------------------------------------------------- rendering */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Scores arrive as text; expiries are whole milliseconds but a score may in
 * principle be fractional or inf, hence a double. Returns 0 on success. */
static int parse_score(const redisReply *r, double *out)
{
    if (r->type != REDIS_REPLY_STRING)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(r->str, &end);
    if (end == r->str || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* "2025-06-01T10:00:30.123Z (in 24.9s)", or "never" for an infinite score. */
static const char *describe_expiry(char *buf, size_t size, double expires_ms, int64_t now)
{
    if (!isfinite(expires_ms)) {
        snprintf(buf, size, "never");
        return buf;
    }
    time_t secs = (time_t)(expires_ms / 1000.0);
    int ms = (int)(expires_ms - (double)secs * 1000.0);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ (in %.1fs)", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms,
             (expires_ms - (double)now) / 1000.0);
    return buf;
}

/* An expiry for JSON: an integer number of ms, or null when infinite. */
static json_t *json_expiry(double expires_ms)
{
    return isfinite(expires_ms) ? json_integer((json_int_t)expires_ms) : json_null();
}

/* Prints doc as one compact line; json_dumpf fails only on I/O. */
static int print_json(json_t *doc)
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

/* Adds a value to an object; jansson steals the reference. Out of memory
 * only, so the caller checks once at the end through a NULL doc. */
static void json_put(json_t *obj, const char *key, json_t *value)
{
    if (json_object_set_new(obj, key, value) < 0)
        fprintf(stderr, "%s: out of memory building JSON output\n", PROG);
}

/* ------------------------------------------------------------- presence */

/* What Redis says about one account at one instant. */
struct presence {
    int online;          /* EXISTS presence key */
    long long live;      /* ZCOUNT key now +inf */
    redisReply *members; /* ZRANGEBYSCORE key now +inf WITHSCORES: member, score... */
};

/* The three commands asked per account, all of its key. */
#define PRESENCE_CMDS 3

/* Fills p[0..n) for accounts[0..n), all in one pipeline (one round trip
 * per Redis node holding some of them). */
static int presence_fetch(struct session *s, const char *prefix, char **accounts, int n,
                          int64_t now, struct presence *p)
{
    int total = n * PRESENCE_CMDS, rc = EXIT_REDIS;
    char(*keys)[RNAME_MAX] = malloc(sizeof(*keys) * (size_t)n);
    const char *(*cmds)[5] = malloc(sizeof(*cmds) * (size_t)total);
    const char *const **argvp = malloc(sizeof(*argvp) * (size_t)total);
    int *argc = malloc(sizeof(int) * (size_t)total);
    redisReply **replies = calloc((size_t)total, sizeof(*replies));
    char min[32];
    memset(p, 0, sizeof(*p) * (size_t)n);
    if (!keys || !cmds || !argvp || !argc || !replies) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        goto out;
    }
    snprintf(min, sizeof(min), "%lld", (long long)now);
    for (int i = 0; i < n; i++) {
        if (rnames_presence(keys[i], sizeof(keys[i]), prefix, accounts[i]) < 0) {
            fprintf(stderr, "%s: presence key of '%s' too long\n", PROG, accounts[i]);
            rc = EXIT_USAGE;
            goto out;
        }
        const char *exists[] = {"EXISTS", keys[i]};
        const char *zcount[] = {"ZCOUNT", keys[i], min, "+inf"};
        const char *zrange[] = {"ZRANGEBYSCORE", keys[i], min, "+inf", "WITHSCORES"};
        memcpy(cmds[3 * i], exists, sizeof(exists));
        memcpy(cmds[3 * i + 1], zcount, sizeof(zcount));
        memcpy(cmds[3 * i + 2], zrange, sizeof(zrange));
        argc[3 * i] = 2, argc[3 * i + 1] = 4, argc[3 * i + 2] = 5;
    }
    for (int i = 0; i < total; i++)
        argvp[i] = (const char *const *)cmds[i];
    if (session_pipeline(s, total, argc, argvp, replies) < 0)
        goto out;
    for (int i = 0; i < n; i++) {
        redisReply *e = replies[3 * i], *c = replies[3 * i + 1], *m = replies[3 * i + 2];
        if (e->type != REDIS_REPLY_INTEGER || c->type != REDIS_REPLY_INTEGER ||
            m->type != REDIS_REPLY_ARRAY || m->elements % 2 != 0) {
            session_report(s, keys[i], "unexpected reply types");
            goto out;
        }
        p[i].online = e->integer > 0;
        p[i].live = c->integer;
        p[i].members = m;
        replies[3 * i + 2] = NULL; /* kept in p */
    }
    rc = 0;
out:
    if (rc)
        for (int i = 0; i < n; i++)
            if (p[i].members) {
                freeReplyObject(p[i].members);
                p[i].members = NULL;
            }
    if (replies)
        for (int i = 0; i < total; i++)
            freeReplyObject(replies[i]);
    free(replies);
    free(argc);
    free(argvp);
    free(cmds);
    free(keys);
    return rc;
}

/* Splits "<node id>/<connection id>" (rnames.h): the node id into node,
 * *conn_id pointing into member. */
static void split_member(const char *member, char *node, size_t nsize, const char **conn_id)
{
    const char *n;
    size_t nlen, clen;
    rnames_parse_presence_member(member, strlen(member), &n, &nlen, conn_id, &clen);
    snprintf(node, nsize, "%.*s", (int)nlen, n);
}

static void presence_print_text(const char *account, const struct presence *p, int64_t now,
                                int first)
{
    if (!first)
        putchar('\n');
    printf("account: %s\nonline: %s\nlive: %lld\n", account, p->online ? "yes" : "no", p->live);
    for (size_t i = 0; i + 1 < p->members->elements; i += 2) {
        double score;
        char when[96];
        const redisReply *m = p->members->element[i];
        if (parse_score(p->members->element[i + 1], &score) < 0)
            score = NAN; /* shown as "never"; cannot happen with a real zset */
        printf("connection: %s expires %s\n", m->type == REDIS_REPLY_STRING ? m->str : "?",
               describe_expiry(when, sizeof(when), score, now));
    }
}

static json_t *presence_json(const char *account, const struct presence *p)
{
    json_t *obj = json_object(), *members = json_array();
    if (!obj || !members) {
        json_decref(obj);
        json_decref(members);
        return NULL;
    }
    for (size_t i = 0; i + 1 < p->members->elements; i += 2) {
        const redisReply *m = p->members->element[i];
        const char *text = m->type == REDIS_REPLY_STRING ? m->str : "";
        char node[256];
        const char *conn_id;
        double score;
        if (parse_score(p->members->element[i + 1], &score) < 0)
            score = NAN;
        split_member(text, node, sizeof(node), &conn_id);
        json_t *e = json_object();
        if (!e)
            continue;
        json_put(e, "member", json_string(text));
        json_put(e, "node", json_string(node));
        json_put(e, "connection", json_string(conn_id));
        json_put(e, "expires_ms", json_expiry(score));
        json_array_append_new(members, e);
    }
    json_put(obj, "account", json_string(account));
    json_put(obj, "online", json_boolean(p->online));
    json_put(obj, "live", json_integer(p->live));
    json_put(obj, "connections", members);
    return obj;
}

int cmd_presence(struct session *s, const struct args *a)
{
    int64_t now = now_ms(); /* one instant for every account */
    json_t *doc = a->json ? json_array() : NULL;
    struct presence *p = calloc((size_t)a->npos, sizeof(*p));
    if ((a->json && !doc) || !p) {
        free(p);
        json_decref(doc);
        return print_json(NULL);
    }
    int rc = presence_fetch(s, a->prefix, a->pos, a->npos, now, p);
    for (int i = 0; i < a->npos && rc == 0; i++) {
        if (a->json)
            json_array_append_new(doc, presence_json(a->pos[i], &p[i]));
        else
            presence_print_text(a->pos[i], &p[i], now, i == 0);
    }
    for (int i = 0; i < a->npos; i++)
        freeReplyObject(p[i].members);
    free(p);
    if (rc) {
        json_decref(doc);
        return rc;
    }
    return a->json ? print_json(doc) : 0;
}

/* ---------------------------------------------------------------- nodes */

/* The hash fields shown, then refreshed_at, read to judge liveness only. */
static const char *const node_fields[] = {"addr", "started_at", "connections", "version",
                                          "refreshed_at"};
#define N_NODE_FIELDS 4
#define N_NODE_FETCHED 5
#define FIELD_REFRESHED 4

/* One live node: its id and expiry from notify:nodes, its hash fields. */
struct node_row {
    const char *id;
    double expires_ms;
    const char *field[N_NODE_FETCHED]; /* NULL when the hash lacks it */
    redisReply *hash;                  /* owns field[] */
};

static int node_fetch_hash(struct session *s, const char *prefix, struct node_row *row)
{
    char key[RNAME_MAX];
    if (rnames_node(key, sizeof(key), prefix, row->id) < 0) {
        fprintf(stderr, "%s: node id '%s' too long for a key name\n", PROG, row->id);
        return EXIT_REDIS;
    }
    const char *argv[2 + N_NODE_FETCHED] = {"HMGET", key};
    for (int i = 0; i < N_NODE_FETCHED; i++)
        argv[2 + i] = node_fields[i];
    if (!(row->hash = session_expect(s, REDIS_REPLY_ARRAY, 2 + N_NODE_FETCHED, argv)))
        return EXIT_REDIS;
    for (size_t i = 0; i < N_NODE_FETCHED && i < row->hash->elements; i++) {
        const redisReply *v = row->hash->element[i];
        row->field[i] = v->type == REDIS_REPLY_STRING ? v->str : NULL;
    }
    return 0;
}

/* A node refreshes its entry every ttl/3 to expire at refreshed_at + ttl
 * (README.md, the node registry). One more than half a period late has
 * stopped (kill -9, a crash, no way to Redis) although its entry lives on
 * until it expires or a live node prunes it: it is not listed. Without
 * refreshed_at (a gateway that does not write it) the expiry alone
 * decides. */
static int node_lapsed(const struct node_row *row, int64_t now)
{
    const char *text = row->field[FIELD_REFRESHED];
    char *end;
    if (!text || !isfinite(row->expires_ms))
        return 0;
    errno = 0;
    double refreshed = strtod(text, &end);
    if (errno || end == text || *end != '\0' || refreshed > row->expires_ms)
        return 0;
    double period = (row->expires_ms - refreshed) / 3;
    return (double)now > refreshed + 1.5 * period;
}

/* connections as a JSON integer when it is one, so jq can compare it;
 * null when missing or not a number. */
static json_t *json_count(const char *text)
{
    if (!text)
        return json_null();
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end != '\0')
        return json_null();
    return json_integer((json_int_t)v);
}

static json_t *nodes_json(const struct node_row *rows, size_t n)
{
    json_t *doc = json_array();
    for (size_t i = 0; doc && i < n; i++) {
        json_t *o = json_object();
        if (!o)
            continue;
        json_put(o, "node", json_string(rows[i].id));
        json_put(o, "expires_ms", json_expiry(rows[i].expires_ms));
        for (int f = 0; f < N_NODE_FIELDS; f++) {
            const char *v = rows[i].field[f];
            if (strcmp(node_fields[f], "connections") == 0)
                json_put(o, node_fields[f], json_count(v));
            else
                json_put(o, node_fields[f], v ? json_string(v) : json_null());
        }
        json_array_append_new(doc, o);
    }
    return doc;
}

/* A table with a header, columns as wide as their widest cell. */
static void nodes_print_text(const struct node_row *rows, size_t n, int64_t now)
{
    if (n == 0) {
        printf("no live nodes\n");
        return;
    }
    static const char *const head[] = {"NODE",        "ADDR",    "STARTED_AT",
                                       "CONNECTIONS", "VERSION", "EXPIRES_IN"};
    int w[5];
    for (int c = 0; c < 5; c++)
        w[c] = (int)strlen(head[c]);
    for (size_t i = 0; i < n; i++) {
        if ((int)strlen(rows[i].id) > w[0])
            w[0] = (int)strlen(rows[i].id);
        for (int f = 0; f < N_NODE_FIELDS; f++) {
            const char *v = rows[i].field[f] ? rows[i].field[f] : "-";
            if ((int)strlen(v) > w[f + 1])
                w[f + 1] = (int)strlen(v);
        }
    }
    printf("%-*s  %-*s  %-*s  %-*s  %-*s  %s\n", w[0], head[0], w[1], head[1], w[2], head[2], w[3],
           head[3], w[4], head[4], head[5]);
    for (size_t i = 0; i < n; i++) {
        const struct node_row *r = &rows[i];
        char in[32];
        if (isfinite(r->expires_ms))
            snprintf(in, sizeof(in), "%.1fs", (r->expires_ms - (double)now) / 1000.0);
        else
            snprintf(in, sizeof(in), "never");
        printf("%-*s  %-*s  %-*s  %-*s  %-*s  %s\n", w[0], r->id, w[1],
               r->field[0] ? r->field[0] : "-", w[2], r->field[1] ? r->field[1] : "-", w[3],
               r->field[2] ? r->field[2] : "-", w[4], r->field[3] ? r->field[3] : "-", in);
    }
}

int cmd_nodes(struct session *s, const struct args *a)
{
    char key[RNAME_MAX], min[32];
    int64_t now = now_ms();
    if (rnames_nodes(key, sizeof(key), a->prefix) < 0) {
        fprintf(stderr, "%s: --redis-prefix too long\n", PROG);
        return EXIT_USAGE;
    }
    snprintf(min, sizeof(min), "%lld", (long long)now);
    const char *argv[] = {"ZRANGEBYSCORE", key, min, "+inf", "WITHSCORES"};
    redisReply *live = session_expect(s, REDIS_REPLY_ARRAY, 5, argv);
    if (!live)
        return EXIT_REDIS;
    size_t n = live->elements / 2;
    struct node_row *rows = calloc(n ? n : 1, sizeof(*rows));
    int rc = 0;
    if (!rows) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        rc = EXIT_REDIS;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const redisReply *id = live->element[2 * i];
        if (id->type != REDIS_REPLY_STRING ||
            parse_score(live->element[2 * i + 1], &rows[i].expires_ms) < 0) {
            session_report(s, "ZRANGEBYSCORE", "malformed WITHSCORES reply");
            rc = EXIT_REDIS;
            break;
        }
        rows[i].id = id->str;
        /* The hash may be gone if the node expired since the ZRANGEBYSCORE;
         * HMGET then gives nils, shown as "-" / null. */
        rc = node_fetch_hash(s, a->prefix, &rows[i]);
    }
    size_t kept = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!node_lapsed(&rows[i], now)) {
            rows[kept++] = rows[i];
            continue;
        }
        freeReplyObject(rows[i].hash);
    }
    if (rc == 0)
        n = kept;
    if (rc == 0) {
        if (a->json)
            rc = print_json(nodes_json(rows, n));
        else
            nodes_print_text(rows, n, now);
    }
    for (size_t i = 0; rows && i < n; i++)
        freeReplyObject(rows[i].hash);
    free(rows);
    freeReplyObject(live);
    return rc;
}

/* -------------------------------------------------------------- publish */

/* Prints publish's answer: {k1: v1, k2: v2} with --json (the values'
 * references are taken), else text and a newline. */
static int print_answer(const struct args *a, const char *k1, json_t *v1, const char *k2,
                        json_t *v2, const char *text)
{
    if (!a->json) {
        json_decref(v1);
        json_decref(v2);
        printf("%s\n", text);
        return 0;
    }
    json_t *doc = json_object();
    if (doc) {
        json_put(doc, k1, v1);
        json_put(doc, k2, v2);
    } else {
        json_decref(v1);
        json_decref(v2);
    }
    return print_json(doc);
}

/* The envelope publish's flags describe (malloc'd), or NULL after saying
 * why. */
static char *publish_envelope(const struct args *a)
{
    size_t len;
    char *envelope = envelope_build(a->type, a->body, a->meta, &len);
    if (!envelope)
        fprintf(stderr, "%s: cannot build the envelope (out of memory)\n", PROG);
    return envelope;
}

/* publish --history: the gateway's notify_publish function validates,
 * appends to the account's stream and publishes with the id, atomically.
 * In cluster mode the FCALL names its key, so a node that does not own the
 * slot answers MOVED and session_run follows it to the owner. */
static int cmd_publish_history(struct session *s, const struct args *a)
{
    char key[RNAME_MAX];
    if (rnames_stream(key, sizeof(key), a->prefix, a->pos[0]) < 0) {
        fprintf(stderr, "%s: stream key name too long\n", PROG);
        return EXIT_USAGE;
    }
    char *envelope = publish_envelope(a);
    if (!envelope)
        return EXIT_REDIS;
    const char *argv[9] = {"FCALL", "notify_publish", "1", key, envelope};
    int argc = 5;
    if (a->ack)
        argv[argc++] = "ack", argv[argc++] = a->ack;
    if (a->ttl)
        argv[argc++] = "ttl", argv[argc++] = a->ttl;
    redisReply *r = session_expect(s, REDIS_REPLY_STRING, argc, argv);
    free(envelope);
    if (!r)
        return EXIT_REDIS;
    int rc = print_answer(a, "account", json_string(a->pos[0]), "id", json_stringn(r->str, r->len),
                          r->str);
    freeReplyObject(r);
    return rc;
}

int cmd_publish(struct session *s, const struct args *a)
{
    if (a->history)
        return cmd_publish_history(s, a);
    char channel[RNAME_MAX];
    int n = a->broadcast ? rnames_broadcast_channel(channel, sizeof(channel), a->prefix)
                         : rnames_account_channel(channel, sizeof(channel), a->prefix, a->pos[0]);
    if (n < 0) {
        fprintf(stderr, "%s: channel name too long\n", PROG);
        return EXIT_USAGE;
    }
    char *envelope = publish_envelope(a);
    if (!envelope)
        return EXIT_REDIS;
    /* Cluster nodes deliver only sharded pub/sub to the gateway's
     * subscriptions (README.md, Redis Cluster); a single Redis takes plain
     * PUBLISH. */
    const char *argv[] = {s->target->cluster ? "SPUBLISH" : "PUBLISH", channel, envelope};
    redisReply *r = session_expect(s, REDIS_REPLY_INTEGER, 3, argv);
    free(envelope);
    if (!r)
        return EXIT_REDIS;
    char text[32];
    snprintf(text, sizeof(text), "%lld", r->integer);
    int rc = print_answer(a, "channel", json_string(channel), "receivers", json_integer(r->integer),
                          text);
    freeReplyObject(r);
    return rc;
}
