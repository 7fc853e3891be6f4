#include "presence.h"

#include <assert.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "numfmt.h"
#include "presence_lua.h"
#include "rnames.h"
#include "server.h"
#include "wallclock.h"

/* Changes kept while Redis is unreachable; beyond this, the refresh after
 * reconnecting is what repairs presence (removals then wait for the TTL). */
#define MAX_QUEUED_OPS 200000
#define FLUSH_DELAY_MS 20

struct presence_op {
    uint8_t add;                      /* 1 = add/refresh, 0 = remove */
    int shard;                        /* redis_link_shard_of its key */
    size_t seq;                       /* queue order, kept within a shard */
    char conn_id[CONN_ID_LEN + 1];    /* member is "<node id>/<conn id>" */
    char account[ACCOUNT_ID_MAX + 1]; /* whose presence set */
};

/* One EVAL under construction: strings live in one arena, referenced by
 * offset until the argv is assembled (the arena may move as it grows). */
struct eval_batch {
    char *arena; /* every key and argument, back to back */
    size_t used; /* bytes used in arena */
    size_t cap;  /* arena capacity */
    size_t key_off[PRESENCE_BATCH], key_len[PRESENCE_BATCH];
    size_t mem_off[PRESENCE_BATCH], mem_len[PRESENCE_BATCH];
    uint8_t add[PRESENCE_BATCH];
    size_t n;  /* changes in the batch */
    int shard; /* every key of one EVAL lives on one shard (Redis Cluster) */
};

static int64_t expiry_ms(const struct presence *p, int64_t now)
{
    return now + (int64_t)p->srv->cfg->presence_ttl * 1000;
}

static size_t arena_put(struct eval_batch *b, const char *s, size_t len)
{
    if (b->used + len > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64 * 1024;
        while (cap < b->used + len)
            cap *= 2;
        char *bigger = realloc(b->arena, cap);
        if (!bigger)
            return (size_t)-1;
        b->arena = bigger;
        b->cap = cap;
    }
    memcpy(b->arena + b->used, s, len);
    b->used += len;
    return b->used - len;
}

static void on_eval_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply *reply = r;
    (void)ac;
    (void)privdata;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_error("presence_update_failed", "error=\"%s\"", reply->str);
}

/* Sends the batch as one EVAL and empties it. Returns -1 if Redis is down
 * (the batch is then dropped: the resync after reconnecting covers it).
 * The RESP is written here, straight from the arena: hiredis's argv
 * formatting showed in every connect's profile (BENCHMARKS.md). */
static int batch_send(struct presence *p, struct eval_batch *b)
{
    if (b->n == 0)
        return 0;
    int64_t now = wallclock_ms();
    char score[20], nowbuf[20], numkeys[20];
    size_t slen = numfmt_u64(score, (uint64_t)expiry_ms(p, now));
    size_t tlen = numfmt_u64(nowbuf, (uint64_t)now);
    struct respbuf *o = &p->out;
    respbuf_reset(o);
    respbuf_header(o, '*', 3 + b->n + 2 + 2 * b->n);
    respbuf_arg(o, "EVAL", 4);
    respbuf_arg(o, presence_lua, strlen(presence_lua));
    respbuf_arg(o, numkeys, numfmt_u64(numkeys, b->n));
    for (size_t k = 0; k < b->n; k++)
        respbuf_arg(o, b->arena + b->key_off[k], b->key_len[k]);
    respbuf_arg(o, score, slen);
    respbuf_arg(o, nowbuf, tlen);
    for (size_t k = 0; k < b->n; k++) {
        respbuf_arg(o, b->add[k] ? "+" : "-", 1);
        respbuf_arg(o, b->arena + b->mem_off[k], b->mem_len[k]);
    }
    int rc = o->failed ? -1
                       : redis_link_formatted(&p->srv->redis, b->arena + b->key_off[0],
                                              b->key_len[0], on_eval_reply, NULL, o->p, o->len);
    respbuf_reset(o);
    b->n = 0;
    b->used = 0;
    return rc;
}

static int batch_push(struct presence *p, struct eval_batch *b, int add, const char *account,
                      const char *conn_id)
{
    char key[RNAME_MAX], member[300];
    int klen = rnames_presence(key, sizeof(key), p->srv->cfg->redis_prefix, account);
    int m = rnames_presence_member(member, sizeof(member), p->srv->cfg->node_id, conn_id);
    if (klen < 0 || m < 0)
        return 0; /* cannot happen with validated ids; skip rather than corrupt */
    size_t mlen = (size_t)m;
    int shard = redis_link_shard_of(&p->srv->redis, key, (size_t)klen);
    if (b->n && shard != b->shard && batch_send(p, b) < 0)
        return -1;
    b->shard = shard;
    size_t ko = arena_put(b, key, (size_t)klen);
    size_t mo = arena_put(b, member, mlen);
    if (ko == (size_t)-1 || mo == (size_t)-1)
        return -1;
    b->key_off[b->n] = ko;
    b->key_len[b->n] = (size_t)klen;
    b->mem_off[b->n] = mo;
    b->mem_len[b->n] = mlen;
    b->add[b->n] = (uint8_t)add;
    if (++b->n == PRESENCE_BATCH)
        return batch_send(p, b);
    return 0;
}

static struct eval_batch *batch_new(void)
{
    return calloc(1, sizeof(struct eval_batch));
}

static void batch_free(struct eval_batch *b)
{
    if (b) {
        free(b->arena);
        free(b);
    }
}

static void on_node_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply *reply = r;
    (void)ac;
    (void)privdata;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_error("node_registry_failed", "error=\"%s\"", reply->str);
}

/* The most arguments a node-registry command has (HSET of every field). */
#define NODE_COMMAND_ARGS 16

/* A node-registry command; argv[1] is its key. */
static void node_command(struct presence *p, int argc, const char **argv)
{
    size_t lens[NODE_COMMAND_ARGS];
    assert(argc >= 2 && argc <= NODE_COMMAND_ARGS);
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    redis_link_command(&p->srv->redis, argv[1], lens[1], on_node_reply, NULL, argc, argv, lens);
}

static void node_refresh(struct presence *p)
{
    const struct config *cfg = p->srv->cfg;
    char nodes[RNAME_MAX], node[RNAME_MAX], score[24], now[24], ttl[24], conns[24], started[24],
        refreshed[24], addr[300];
    int64_t wall = wallclock_ms();
    rnames_nodes(nodes, sizeof(nodes), cfg->redis_prefix);
    rnames_node(node, sizeof(node), cfg->redis_prefix, cfg->node_id);
    snprintf(score, sizeof(score), "%lld", (long long)expiry_ms(p, wall));
    snprintf(now, sizeof(now), "(%lld", (long long)wall);
    snprintf(ttl, sizeof(ttl), "%d", cfg->presence_ttl * 1000);
    snprintf(conns, sizeof(conns), "%u", p->srv->registry.n_conns);
    snprintf(started, sizeof(started), "%lld", (long long)p->srv->started_at);
    /* With the score (refreshed_at + ttl) it tells a reader the refresh
     * period, so a node that stopped refreshing is seen as dead long before
     * its entry expires (notifyctl nodes). */
    snprintf(refreshed, sizeof(refreshed), "%lld", (long long)wall);
    if (!strcmp(cfg->listen_host, "0.0.0.0") || !strcmp(cfg->listen_host, "::") ||
        !cfg->listen_host[0]) {
        char host[256] = "localhost";
        gethostname(host, sizeof(host) - 1);
        snprintf(addr, sizeof(addr), "%s:%d", host, cfg->listen_port);
    } else {
        snprintf(addr, sizeof(addr), "%s", cfg->listen);
    }
    const char *zadd[] = {"ZADD", nodes, score, cfg->node_id};
    const char *prune[] = {"ZREMRANGEBYSCORE", nodes, "-inf", now};
    const char *hset[] = {"HSET",       node,           "addr",         addr,
                          "started_at", started,        "connections",  conns,
                          "version",    NOTIFY_VERSION, "refreshed_at", refreshed};
    const char *pexpire[] = {"PEXPIRE", node, ttl};
    node_command(p, 4, zadd);
    node_command(p, 4, prune);
    node_command(p, 12, hset);
    node_command(p, 3, pexpire);
}

static int shard_of_account(struct presence *p, const char *account)
{
    char key[RNAME_MAX];
    int klen = rnames_presence(key, sizeof(key), p->srv->cfg->redis_prefix, account);
    return redis_link_shard_of(&p->srv->redis, key, klen > 0 ? (size_t)klen : 0);
}

/* Ticks per refresh period: every tick re-scores the next 1/REFRESH_TICKS
 * of the accounts (registry_walk_next), so the work comes in small pieces
 * ten times a second (ttl 30) rather than all at once. */
#define REFRESH_TICKS 100
/* Refresh passes per pass that also prunes expired members. */
#define PRUNE_PASSES 10

/* Replies are switched off around a refresh: Redis writes none, and the
 * gateway parses one (+OK of CLIENT REPLY ON) instead of three per account. */
static const char reply_off[] = "*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$3\r\nOFF\r\n";
static const char reply_on[] = "*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$2\r\nON\r\n";

/* Appends the refresh of account a: one ZADD of all its connections here,
 * PEXPIREAT and, when prune is set, ZREMRANGEBYSCORE (members left by
 * crashed nodes). Setting the key's expiry to this refresh's score is right
 * for every member of the key: each live one is re-scored every ttl/3 to
 * now + ttl, so the last refresh always carries the latest expiry. */
static void refresh_account(struct presence *p, struct respbuf *b, const struct account *a,
                            const char *key, size_t klen, const char *score, size_t slen,
                            const char *after, size_t alen, int prune)
{
    const char *node = p->srv->cfg->node_id;
    respbuf_header(b, '*', 2 + 2 * (size_t)a->n_conns);
    respbuf_arg(b, "ZADD", 4);
    respbuf_arg(b, key, klen);
    for (const struct session *c = a->conns; c; c = c->acct_next) {
        char member[300];
        int mlen = rnames_presence_member(member, sizeof(member), node, c->id);
        assert(mlen > 0); /* node and connection ids are validated and short */
        respbuf_arg(b, score, slen);
        respbuf_arg(b, member, (size_t)mlen);
    }
    if (prune) {
        const char *cmd[] = {"ZREMRANGEBYSCORE", key, "-inf", after};
        const size_t lens[] = {16, klen, 4, alen};
        respbuf_cmd(b, 4, cmd, lens);
    }
    const char *exp[] = {"PEXPIREAT", key, score};
    const size_t expl[] = {9, klen, slen};
    respbuf_cmd(b, 3, exp, expl);
}

/* Accounts of one refresh buffer at most (a resync sends them all). */
#define REFRESH_CHUNK 500

struct refresh_item {
    int shard;
    const struct account *a;
};

/* Whether n elements are in cmp's order already: with one Redis every
 * account is on shard 0 and the lists come in order, and the merge sort
 * behind qsort is not free even then. */
static int sorted(const void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    const char *e = base;
    for (size_t i = 1; i < n; i++)
        if (cmp(e + (i - 1) * size, e + i * size) > 0)
            return 0;
    return 1;
}

static int by_shard(const void *x, const void *y)
{
    const struct refresh_item *a = x, *b = y;
    return (a->shard > b->shard) - (a->shard < b->shard);
}

/* Sends one buffer to the server of key; returns -1 when it is away. */
static int refresh_send(struct presence *p, struct respbuf *b, const char *key, size_t klen)
{
    respbuf_put(b, reply_on, sizeof(reply_on) - 1);
    int rc =
        b->failed ? 0 : redis_link_formatted(&p->srv->redis, key, klen, NULL, NULL, b->p, b->len);
    respbuf_reset(b);
    respbuf_put(b, reply_off, sizeof(reply_off) - 1);
    return rc;
}

/* Re-scores n accounts from the registry's walk, or all of them (n = 0),
 * as plain commands, not an EVAL: a script blocks Redis for its whole run
 * (5 ms for 1,000 members, every PUBLISH waiting behind it), while
 * pipelined commands are read and run 16 KB at a time, other clients
 * served in between, and cost Redis 1.5 us per connection instead of 9
 * (INFO commandstats, BENCHMARKS.md). One buffer per server and chunk,
 * with replies off. */
static void refresh(struct presence *p, uint32_t n, int prune)
{
    struct server *srv = p->srv;
    struct registry *r = &srv->registry;
    if (!n || n > r->n_accounts)
        n = r->n_accounts;
    if (!n)
        return;
    if (n > p->cap_items) {
        struct refresh_item *bigger = realloc(p->items, sizeof(*bigger) * n);
        if (!bigger)
            return;
        p->items = bigger;
        p->cap_items = n;
    }
    struct refresh_item *items = p->items;
    for (uint32_t i = 0; i < n; i++) {
        items[i].a = registry_walk_next(r);
        items[i].shard = shard_of_account(p, items[i].a->id);
    }
    if (!sorted(items, n, sizeof(*items), by_shard))
        qsort(items, n, sizeof(*items), by_shard);
    int64_t now = wallclock_ms();
    char score[20], after[21], key[RNAME_MAX], first[RNAME_MAX];
    size_t slen = numfmt_u64(score, (uint64_t)expiry_ms(p, now));
    after[0] = '('; /* exclusive: members scored before now */
    size_t alen = 1 + numfmt_u64(after + 1, (uint64_t)now);
    struct respbuf *b = &p->out;
    respbuf_reset(b);
    respbuf_put(b, reply_off, sizeof(reply_off) - 1);
    size_t flen = 0, in_buf = 0;
    for (uint32_t i = 0; i < n; i++) {
        int klen = rnames_presence(key, sizeof(key), srv->cfg->redis_prefix, items[i].a->id);
        if (klen < 0)
            continue; /* cannot happen with validated ids */
        if (in_buf && (items[i].shard != items[i - 1].shard || in_buf == REFRESH_CHUNK)) {
            if (refresh_send(p, b, first, flen) < 0)
                return; /* Redis is away: the resync after reconnecting covers it */
            in_buf = 0;
        }
        if (!in_buf) {
            memcpy(first, key, (size_t)klen);
            flen = (size_t)klen;
        }
        refresh_account(p, b, items[i].a, key, (size_t)klen, score, slen, after, alen, prune);
        in_buf++;
    }
    if (in_buf)
        refresh_send(p, b, first, flen);
}

static int op_order(const void *x, const void *y)
{
    const struct presence_op *a = x, *b = y;
    if (a->shard != b->shard)
        return (a->shard > b->shard) - (a->shard < b->shard);
    return (a->seq > b->seq) - (a->seq < b->seq);
}

static void flush_ops(uv_timer_t *t)
{
    struct presence *p = t->data;
    if (!p->n_ops || !redis_link_connected(&p->srv->redis))
        return; /* nothing to do, or kept until Redis is back */
    struct eval_batch *b = batch_new();
    if (!b)
        return;
    /* One connection's add and remove stay in order: same account, same
     * shard, and seq breaks ties. */
    if (!sorted(p->ops, p->n_ops, sizeof(*p->ops), op_order))
        qsort(p->ops, p->n_ops, sizeof(*p->ops), op_order);
    for (size_t i = 0; i < p->n_ops; i++)
        if (batch_push(p, b, p->ops[i].add, p->ops[i].account, p->ops[i].conn_id) < 0)
            break;
    batch_send(p, b);
    batch_free(b);
    p->n_ops = 0;
}

/* snprintf("%s")'s truncation without its format parsing (two copies per
 * change): the ids are validated to fit, but a longer one is cut, never
 * written past size. */
static void copy_id(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void queue_op(struct presence *p, int add, const char *account, const char *conn_id)
{
    if (p->n_ops == p->cap_ops) {
        size_t cap = p->cap_ops ? p->cap_ops * 2 : 256;
        struct presence_op *bigger =
            p->n_ops < MAX_QUEUED_OPS ? realloc(p->ops, cap * sizeof(*bigger)) : NULL;
        if (!bigger) {
            if (p->dropped_ops++ % 10000 == 0)
                log_warn("presence_changes_dropped", "count=%llu",
                         (unsigned long long)p->dropped_ops);
            return;
        }
        p->ops = bigger;
        p->cap_ops = cap;
    }
    struct presence_op *op = &p->ops[p->n_ops];
    op->seq = p->n_ops++;
    op->shard = shard_of_account(p, account);
    op->add = (uint8_t)add;
    copy_id(op->conn_id, sizeof(op->conn_id), conn_id);
    copy_id(op->account, sizeof(op->account), account);
    if (!uv_is_active((uv_handle_t *)&p->flush_timer))
        uv_timer_start(&p->flush_timer, flush_ops, FLUSH_DELAY_MS, 0);
}

void presence_add(struct presence *p, const char *account, const char *conn_id)
{
    queue_op(p, 1, account, conn_id);
}

void presence_remove(struct presence *p, const char *account, const char *conn_id)
{
    queue_op(p, 0, account, conn_id);
}

/* Every ttl/3 each connection is re-scored, 1/REFRESH_TICKS of the
 * accounts per tick: one refresh of everything at once had Redis run 15
 * EVALs of 1,000 members back to back at 15,000 connections, stalling
 * every PUBLISH behind them (the p99 delivery latency at 20,000 msg/s
 * doubled, BENCHMARKS.md). */
static void on_refresh_timer(uv_timer_t *t)
{
    struct presence *p = t->data;
    if (!redis_link_ready(&p->srv->redis))
        return;
    if (++p->ticks % REFRESH_TICKS == 0)
        node_refresh(p);
    uint32_t n = p->srv->registry.n_accounts;
    /* Expired members do not count (ZCOUNT from now) and connects and
     * disconnects prune their keys (presence.lua): pruning on every pass
     * would be a third of the refresh's commands for nothing. */
    int prune = (p->ticks / REFRESH_TICKS) % PRUNE_PASSES == 0;
    refresh(p, (n + REFRESH_TICKS - 1) / REFRESH_TICKS, prune);
}

void presence_resync(struct presence *p)
{
    /* Changes queued while away first (removals of connections that died
     * meanwhile), then everything alive now. */
    flush_ops(&p->flush_timer);
    node_refresh(p);
    refresh(p, 0, 1);
}

int presence_init(struct presence *p, struct server *srv)
{
    memset(p, 0, sizeof(*p));
    p->srv = srv;
    if (uv_timer_init(&srv->loop, &p->refresh_timer) < 0 ||
        uv_timer_init(&srv->loop, &p->flush_timer) < 0)
        return -1;
    p->refresh_timer.data = p->flush_timer.data = p;
    uint64_t every = (uint64_t)srv->cfg->presence_ttl * 1000 / 3 / REFRESH_TICKS;
    return uv_timer_start(&p->refresh_timer, on_refresh_timer, every, every) < 0 ? -1 : 0;
}

static void on_stop_done(redisAsyncContext *ac, void *r, void *privdata)
{
    struct presence *p = privdata;
    (void)ac;
    (void)r;
    if (p->on_stopped) {
        void (*done)(struct server *) = p->on_stopped;
        p->on_stopped = NULL;
        done(p->srv);
    }
}

void presence_stop(struct presence *p, void (*done)(struct server *))
{
    if (p->stopped)
        return;
    p->stopped = 1;
    uv_timer_stop(&p->refresh_timer);
    uv_close((uv_handle_t *)&p->refresh_timer, NULL);
    /* Connections still open at this point (a drain cut short) go too. */
    struct session *c, *tmp;
    HASH_ITER(hh, p->srv->registry.by_id, c, tmp)
    {
        queue_op(p, 0, c->acct->id, c->id);
    }
    flush_ops(&p->flush_timer);
    uv_timer_stop(&p->flush_timer);
    uv_close((uv_handle_t *)&p->flush_timer, NULL);
    free(p->ops);
    p->ops = NULL;
    p->n_ops = p->cap_ops = 0;
    free(p->items);
    p->items = NULL;
    respbuf_free(&p->out);

    const struct config *cfg = p->srv->cfg;
    char nodes[RNAME_MAX], node[RNAME_MAX];
    rnames_nodes(nodes, sizeof(nodes), cfg->redis_prefix);
    rnames_node(node, sizeof(node), cfg->redis_prefix, cfg->node_id);
    const char *zrem[] = {"ZREM", nodes, cfg->node_id};
    const char *del[] = {"DEL", node};
    size_t zl[] = {4, strlen(nodes), strlen(cfg->node_id)}, dl[] = {3, strlen(node)};
    p->on_stopped = done;
    redis_link_command(&p->srv->redis, nodes, zl[1], on_node_reply, NULL, 3, zrem, zl);
    /* Replies come in order: when DEL's arrives, everything before it (the
     * last removals) has been applied. */
    if (redis_link_command(&p->srv->redis, node, dl[1], on_stop_done, p, 2, del, dl) < 0)
        on_stop_done(NULL, NULL, p);
}
