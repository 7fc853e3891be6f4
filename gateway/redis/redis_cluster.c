#include "redis_cluster.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "deliver.h"
#include "keyslot.h"
#include "log.h"
#include "redis.h"
#include "redis_uv.h"
#include "rnames.h"
#include "server.h"
#include "shardsub.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define HEALTH_INTERVAL_MS 1000
/* An SSUBSCRIBE unacknowledged this long is sent again (its MOVED error
 * carries no channel name, so a lost one is found by age). */
#define RESEND_AFTER_MS 2000

/* One primary of the current map. */
struct cnode {
    struct cluster_link *cl; /* owner */
    int index;               /* in cl->nodes */
    char host[256];          /* as CLUSTER SLOTS names it */
    int port;
    redisAsyncContext *cmd; /* key commands; NULL when down */
    int cmd_ok;             /* AUTH and PING answered */
    struct shardsub *sub;   /* SSUBSCRIBE connection; NULL when down */
    int sub_ok;             /* connected (and AUTH accepted) */
    int in_map;             /* named by the latest CLUSTER SLOTS */
};

/* A channel this node wants: an account present here, or the broadcast
 * channel (account ""). */
struct csub {
    UT_hash_handle hh; /* keyed by account */
    int16_t node;      /* index it was sent to, -1 = not sent */
    uint8_t acked;     /* the primary confirmed it */
    uint16_t slot;     /* the channel's slot */
    uint64_t sent_at;  /* loop ms of the last SSUBSCRIBE */
    char account[];    /* "" = broadcast */
};

static struct cluster_link *impl(const struct redis_link *l)
{
    return (struct cluster_link *)&l->u.cluster;
}

static uint64_t now_ms(struct cluster_link *cl)
{
    return uv_now(&cl->srv->loop);
}

static int channel_name(struct cluster_link *cl, const char *account, char *buf, size_t size)
{
    const char *prefix = cl->srv->cfg->redis_prefix;
    return *account ? rnames_account_channel(buf, size, prefix, account)
                    : rnames_broadcast_channel(buf, size, prefix);
}

static void schedule_refresh(struct cluster_link *cl, uint32_t delay_ms);
static void maybe_up(struct cluster_link *cl);

/* ---- subscriptions ---- */

/* The channel lost its subscription (its primary died or gave the slot
 * away): its connections will replay what they miss. */
static void csub_lost(struct cluster_link *cl, struct csub *cs)
{
    if (cs->acked && *cs->account)
        cl->n_acked--;
    int was_acked = cs->acked;
    cs->acked = 0;
    cs->node = -1;
    if (!was_acked || !*cs->account)
        return;
    struct account *a = registry_find_account(&cl->srv->registry, cs->account, strlen(cs->account));
    if (a)
        session_account_lost(&cl->srv->sessions, a);
}

static int send_sub(struct cluster_link *cl, struct cnode *n, const char *verb, const char *account)
{
    char chan[RNAME_MAX];
    int len = channel_name(cl, account, chan, sizeof(chan));
    if (len < 0)
        return -1;
    const char *argv[2] = {verb, chan};
    size_t lens[2] = {strlen(verb), (size_t)len};
    return shardsub_send(n->sub, 2, argv, lens);
}

/* Sends cs to the owner of its slot when it is not there yet. */
static void csub_place(struct cluster_link *cl, struct csub *cs)
{
    int owner = cl->slot_node[cs->slot];
    if (cs->node >= 0 && cs->node != owner) {
        struct cnode *old = cl->nodes[cs->node];
        if (old && old->sub_ok)
            send_sub(cl, old, "SUNSUBSCRIBE", cs->account);
        csub_lost(cl, cs);
    }
    if (cs->node == owner || owner < 0)
        return;
    struct cnode *n = cl->nodes[owner];
    if (!n || !n->sub_ok)
        return;
    if (send_sub(cl, n, "SSUBSCRIBE", cs->account) == 0) {
        cs->node = (int16_t)owner;
        cs->sent_at = now_ms(cl);
    }
}

static void place_all(struct cluster_link *cl)
{
    struct csub *cs, *tmp;
    HASH_ITER(hh, cl->subs, cs, tmp)
    {
        csub_place(cl, cs);
    }
}

static struct csub *csub_add(struct cluster_link *cl, const char *account)
{
    size_t len = strlen(account);
    struct csub *cs;
    HASH_FIND(hh, cl->subs, account, len, cs);
    if (cs)
        return cs;
    cs = calloc(1, sizeof(*cs) + len + 1);
    if (!cs)
        return NULL;
    memcpy(cs->account, account, len + 1);
    cs->node = -1;
    char chan[RNAME_MAX];
    int clen = channel_name(cl, account, chan, sizeof(chan));
    cs->slot = (uint16_t)keyslot(chan, clen > 0 ? (size_t)clen : 0);
    HASH_ADD(hh, cl->subs, account, len, cs);
    return cs;
}

static int op_subscribe(struct redis_link *l, const char *account)
{
    struct cluster_link *cl = impl(l);
    struct csub *cs = csub_add(cl, account);
    if (!cs)
        return -1;
    if (cs->acked)
        return 1;
    csub_place(cl, cs);
    /* Not sent: its primary is unreachable right now. */
    return cs->node >= 0 ? 0 : -1;
}

static void op_unsubscribe(struct redis_link *l, const char *account)
{
    struct cluster_link *cl = impl(l);
    struct csub *cs;
    HASH_FIND(hh, cl->subs, account, strlen(account), cs);
    if (!cs)
        return;
    if (cs->node >= 0) {
        struct cnode *n = cl->nodes[cs->node];
        if (n && n->sub_ok)
            send_sub(cl, n, "SUNSUBSCRIBE", account);
    }
    if (cs->acked)
        cl->n_acked--;
    HASH_DELETE(hh, cl->subs, cs);
    free(cs);
}

static struct csub *csub_by_channel(struct cluster_link *cl, const redisReply *chan)
{
    const char *account;
    size_t len;
    struct csub *cs = NULL;
    char bcast[RNAME_MAX];
    int blen = rnames_broadcast_channel(bcast, sizeof(bcast), cl->srv->cfg->redis_prefix);
    if (blen == (int)chan->len && !memcmp(chan->str, bcast, chan->len))
        HASH_FIND(hh, cl->subs, "", 0, cs);
    else if (rnames_parse_account_channel(chan->str, chan->len, cl->srv->cfg->redis_prefix,
                                          &account, &len))
        HASH_FIND(hh, cl->subs, account, len, cs);
    return cs;
}

static void on_sub_reply(void *data, redisReply *reply)
{
    struct cnode *n = data;
    struct cluster_link *cl = n->cl;
    if (reply->type == REDIS_REPLY_ERROR) {
        /* MOVED (the map is stale) or CROSSSLOT: refresh, and the health
         * timer resends whatever stays unacknowledged. */
        log_warn("cluster_subscribe_refused", "node=%s:%d error=\"%s\"", n->host, n->port,
                 reply->str);
        schedule_refresh(cl, 0);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return;
    const redisReply *kind = reply->element[0], *chan = reply->element[1];
    if (redis_reply_is(kind, "smessage")) {
        const redisReply *payload = reply->element[2];
        const char *account;
        size_t alen;
        if (payload->type != REDIS_REPLY_STRING)
            return;
        if (rnames_parse_account_channel(chan->str, chan->len, cl->srv->cfg->redis_prefix, &account,
                                         &alen))
            deliver_account(cl->srv, account, alen, payload->str, payload->len);
        else
            deliver_broadcast(cl->srv, payload->str, payload->len);
        return;
    }
    struct csub *cs = csub_by_channel(cl, chan);
    if (!cs)
        return; /* unsubscribed meanwhile */
    if (redis_reply_is(kind, "ssubscribe")) {
        if (cs->node != n->index || cs->acked)
            return;
        cs->acked = 1;
        if (!*cs->account)
            return;
        cl->n_acked++;
        struct account *a =
            registry_find_account(&cl->srv->registry, cs->account, strlen(cs->account));
        if (a && !a->subscribed)
            session_account_subscribed(&cl->srv->sessions, a);
    } else if (redis_reply_is(kind, "sunsubscribe") && cs->node == n->index) {
        /* Pushed by the server: the slot moved (resharding or failover). */
        log_info("cluster_slot_moved", "node=%s:%d slot=%u", n->host, n->port, cs->slot);
        csub_lost(cl, cs);
        schedule_refresh(cl, 0);
    }
}

/* ---- nodes ---- */

static void node_sub_lost(struct cluster_link *cl, struct cnode *n)
{
    n->sub = NULL;
    n->sub_ok = 0;
    struct csub *cs, *tmp;
    HASH_ITER(hh, cl->subs, cs, tmp)
    {
        if (cs->node == n->index)
            csub_lost(cl, cs);
    }
}

static void on_sub_state(void *data, int up, const char *why)
{
    struct cnode *n = data;
    struct cluster_link *cl = n->cl;
    if (up) {
        n->sub_ok = 1;
        place_all(cl);
        return;
    }
    /* Logged when a working connection goes, not for each failed retry. */
    if (n->sub_ok)
        log_warn("cluster_node_lost", "node=%s:%d conn=subscriber reason=\"%s\"", n->host, n->port,
                 why);
    else
        log_debug("cluster_node_retry", "node=%s:%d conn=subscriber reason=\"%s\"", n->host,
                  n->port, why);
    node_sub_lost(cl, n);
    schedule_refresh(cl, cl->backoff_ms);
}

static void on_fn_loaded(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply *reply = r;
    (void)ac;
    (void)privdata;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_error("function_load_failed", "library=notify error=\"%s\"", reply->str);
}

static void on_cmd_ready(redisAsyncContext *ac, void *r, void *privdata)
{
    struct cnode *n = privdata;
    redisReply *reply = r;
    (void)ac;
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        log_error("cluster_node_refused", "node=%s:%d error=\"%s\"", n->host, n->port, reply->str);
        return;
    }
    n->cmd_ok = 1;
    /* Every primary carries the library, promoted and new ones included. */
    const char *lib = n->cl->srv->notify_lib;
    const char *argv[] = {"FUNCTION", "LOAD", "REPLACE", lib};
    size_t lens[] = {8, 4, 7, strlen(lib)};
    redisAsyncCommandArgv(n->cmd, on_fn_loaded, NULL, 4, argv, lens);
    maybe_up(n->cl);
}

static void on_cmd_disconnect(const redisAsyncContext *ac, int status)
{
    struct cnode *n = ac->data;
    (void)status;
    if (!n || n->cmd != ac)
        return;
    int was_ok = n->cmd_ok;
    n->cmd = NULL;
    n->cmd_ok = 0;
    n->cl->up = 0;
    if (n->cl->stopped)
        return;
    if (was_ok)
        log_warn("cluster_node_lost", "node=%s:%d conn=command reason=\"%s\"", n->host, n->port,
                 ac->errstr[0] ? ac->errstr : "closed");
    else
        log_debug("cluster_node_retry", "node=%s:%d conn=command reason=\"%s\"", n->host, n->port,
                  ac->errstr[0] ? ac->errstr : "closed");
    schedule_refresh(n->cl, n->cl->backoff_ms);
}

static void on_cmd_connect(const redisAsyncContext *ac, int status)
{
    if (status != REDIS_OK)
        on_cmd_disconnect(ac, status);
}

static redisAsyncContext *open_ctx(struct cluster_link *cl, const char *host, int port, void *data)
{
    const struct redis_url *u = &cl->srv->cfg->redis_url;
    return redis_uv_connect(&cl->srv->loop, host, port, u->user, u->password, NULL, data);
}

static void node_connect(struct cluster_link *cl, struct cnode *n)
{
    const struct redis_url *u = &cl->srv->cfg->redis_url;
    if (!n->cmd) {
        n->cmd = open_ctx(cl, n->host, n->port, n);
        if (n->cmd) {
            redisAsyncSetConnectCallback(n->cmd, on_cmd_connect);
            redisAsyncSetDisconnectCallback(n->cmd, on_cmd_disconnect);
            redisAsyncCommand(n->cmd, on_cmd_ready, n, "PING");
        }
    }
    if (!n->sub)
        n->sub = shardsub_open(&cl->srv->loop, n->host, n->port, u->user, u->password, on_sub_reply,
                               on_sub_state, n);
}

static void node_free(struct cluster_link *cl, struct cnode *n)
{
    cl->nodes[n->index] = NULL;
    if (n->sub) {
        shardsub_close(n->sub);
        node_sub_lost(cl, n);
    }
    if (n->cmd) {
        redisAsyncContext *ac = n->cmd;
        n->cmd = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    for (int s = 0; s < KEYSLOT_COUNT; s++)
        if (cl->slot_node[s] == n->index)
            cl->slot_node[s] = -1;
    free(n);
}

static struct cnode *node_find_or_add(struct cluster_link *cl, const char *host, int port)
{
    int free_index = -1;
    for (int i = 0; i < CLUSTER_MAX_NODES; i++) {
        struct cnode *n = cl->nodes[i];
        if (!n) {
            if (free_index < 0)
                free_index = i;
        } else if (n->port == port && !strcmp(n->host, host)) {
            return n;
        }
    }
    if (free_index < 0)
        return NULL;
    struct cnode *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->cl = cl;
    n->index = free_index;
    snprintf(n->host, sizeof(n->host), "%s", host);
    n->port = port;
    cl->nodes[free_index] = n;
    return n;
}

/* ---- the slot map ---- */

/* hiredis frees a context whose connect failed or that dropped: forget it
 * first, so close_probe() never frees it twice. */
static void on_probe_gone(const redisAsyncContext *ac, int status)
{
    struct cluster_link *cl = ac->data;
    if (status != REDIS_OK && cl && cl->probe == ac)
        cl->probe = NULL;
}

static void close_probe(struct cluster_link *cl)
{
    if (cl->probe) {
        redisAsyncContext *ac = cl->probe;
        cl->probe = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
}

/* Applies a CLUSTER SLOTS reply; returns 1 when every slot has an owner. */
static int apply_slots(struct cluster_link *cl, const redisReply *reply)
{
    int16_t owner[KEYSLOT_COUNT];
    for (int s = 0; s < KEYSLOT_COUNT; s++)
        owner[s] = -1;
    for (int i = 0; i < CLUSTER_MAX_NODES; i++)
        if (cl->nodes[i])
            cl->nodes[i]->in_map = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
            continue;
        const redisReply *primary = e->element[2];
        if (primary->element[0]->type != REDIS_REPLY_STRING ||
            primary->element[1]->type != REDIS_REPLY_INTEGER)
            continue;
        /* A node that never met another reports its own host as "": it is
         * the one we asked. */
        const char *host = primary->element[0]->str[0] ? primary->element[0]->str : cl->asked_host;
        struct cnode *n = node_find_or_add(cl, host, (int)primary->element[1]->integer);
        if (!n)
            continue;
        n->in_map = 1;
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        for (long long s = lo; s <= hi && s < KEYSLOT_COUNT; s++)
            if (s >= 0)
                owner[s] = (int16_t)n->index;
    }
    for (int i = 0; i < CLUSTER_MAX_NODES; i++) {
        struct cnode *n = cl->nodes[i];
        if (n && !n->in_map) {
            log_info("cluster_node_removed", "node=%s:%d", n->host, n->port);
            node_free(cl, n);
        }
    }
    int complete = 1;
    memcpy(cl->slot_node, owner, sizeof(owner));
    for (int s = 0; s < KEYSLOT_COUNT; s++)
        if (owner[s] < 0)
            complete = 0;
    for (int i = 0; i < CLUSTER_MAX_NODES; i++)
        if (cl->nodes[i])
            node_connect(cl, cl->nodes[i]);
    return complete;
}

static void on_slots(redisAsyncContext *ac, void *r, void *privdata)
{
    struct cluster_link *cl = privdata;
    redisReply *reply = r;
    (void)ac;
    if (cl->stopped)
        return;
    cl->refreshing = 0;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
        const char *why = !reply                             ? "no answer"
                          : reply->type == REDIS_REPLY_ERROR ? reply->str
                                                             : "empty map";
        if (!cl->logged_down) {
            log_error("redis_down", "mode=cluster reason=\"CLUSTER SLOTS: %s\" retry=backoff", why);
            cl->logged_down = 1;
        }
        close_probe(cl);
        schedule_refresh(cl, cl->backoff_ms);
        cl->backoff_ms = cl->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : cl->backoff_ms * 2;
        return;
    }
    cl->map_ok = apply_slots(cl, reply);
    close_probe(cl);
    place_all(cl);
    if (!cl->map_ok) {
        cl->up = 0;
        schedule_refresh(cl, cl->backoff_ms);
        return;
    }
    cl->backoff_ms = BACKOFF_MIN_MS;
    maybe_up(cl);
}

/* Up = a complete map and a command connection to every primary in it:
 * then presence is re-registered and every key command can be routed. */
static void maybe_up(struct cluster_link *cl)
{
    if (cl->up || !cl->map_ok)
        return;
    int n = 0;
    for (int i = 0; i < CLUSTER_MAX_NODES; i++) {
        if (!cl->nodes[i])
            continue;
        if (!cl->nodes[i]->cmd_ok)
            return;
        n++;
    }
    cl->up = 1;
    log_info("redis_connected", "mode=cluster primaries=%d accounts=%u", n,
             cl->srv->registry.n_accounts);
    if (cl->was_up)
        cl->srv->metrics.redis_reconnects++;
    cl->was_up = 1;
    cl->logged_down = 0;
    server_on_redis_up(cl->srv);
}

static void refresh_now(uv_timer_t *t)
{
    struct cluster_link *cl = t->data;
    if (cl->stopped || cl->refreshing)
        return;
    /* Ask a primary we are connected to; else a seed. */
    for (int i = 0; i < CLUSTER_MAX_NODES; i++) {
        struct cnode *n = cl->nodes[i];
        if (n && n->cmd_ok &&
            redisAsyncCommand(n->cmd, on_slots, cl, "CLUSTER SLOTS") == REDIS_OK) {
            snprintf(cl->asked_host, sizeof(cl->asked_host), "%s", n->host);
            cl->refreshing = 1;
            return;
        }
    }
    const struct config *cfg = cl->srv->cfg;
    const struct cluster_seed *seed = &cfg->seeds[cl->next_seed++ % cfg->n_seeds];
    close_probe(cl);
    cl->probe = open_ctx(cl, seed->host, seed->port, cl);
    if (cl->probe) {
        redisAsyncSetConnectCallback(cl->probe, on_probe_gone);
        redisAsyncSetDisconnectCallback(cl->probe, on_probe_gone);
    }
    snprintf(cl->asked_host, sizeof(cl->asked_host), "%s", seed->host);
    if (cl->probe && redisAsyncCommand(cl->probe, on_slots, cl, "CLUSTER SLOTS") == REDIS_OK) {
        cl->refreshing = 1;
        return;
    }
    close_probe(cl);
    schedule_refresh(cl, cl->backoff_ms);
}

static void schedule_refresh(struct cluster_link *cl, uint32_t delay_ms)
{
    if (cl->stopped)
        return;
    /* While the map is being refreshed, clients of a moved slot cannot be
     * served: readiness drops until it is complete again. */
    if (delay_ms == 0 || !uv_is_active((uv_handle_t *)&cl->refresh_timer))
        uv_timer_start(&cl->refresh_timer, refresh_now, delay_ms, 0);
}

static void on_health(uv_timer_t *t)
{
    struct cluster_link *cl = t->data;
    uint64_t now = now_ms(cl);
    int missing = 0;
    struct csub *cs, *tmp;
    HASH_ITER(hh, cl->subs, cs, tmp)
    {
        if (cs->acked)
            continue;
        if (cs->node >= 0 && now - cs->sent_at > RESEND_AFTER_MS)
            cs->node = -1; /* never acknowledged: send again */
        if (cs->node < 0)
            missing = 1;
    }
    if (missing) {
        place_all(cl);
        schedule_refresh(cl, cl->backoff_ms);
    }
    for (int i = 0; i < CLUSTER_MAX_NODES; i++)
        if (cl->nodes[i] && (!cl->nodes[i]->cmd || !cl->nodes[i]->sub))
            schedule_refresh(cl, cl->backoff_ms);
}

/* ---- commands ---- */

/* Wraps a caller's callback to notice that the map moved. */
struct routed {
    struct cluster_link *cl; /* owner */
    redisCallbackFn *cb;     /* caller's */
    void *privdata;          /* caller's */
};

static void on_routed(redisAsyncContext *ac, void *r, void *privdata)
{
    struct routed *rt = privdata;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR &&
        (!strncmp(reply->str, "MOVED", 5) || !strncmp(reply->str, "ASK", 3) ||
         !strncmp(reply->str, "CLUSTERDOWN", 11)))
        schedule_refresh(rt->cl, 0);
    if (rt->cb)
        rt->cb(ac, r, rt->privdata);
    free(rt);
}

/* The primary owning key's slot, if its command connection is up. */
static struct cnode *owner_of(struct cluster_link *cl, const char *key, size_t keylen)
{
    int owner = cl->slot_node[keyslot(key, keylen)];
    struct cnode *n = owner >= 0 ? cl->nodes[owner] : NULL;
    return n && n->cmd_ok ? n : NULL;
}

static int op_command(struct redis_link *l, const char *key, size_t keylen, redisCallbackFn *cb,
                      void *privdata, int argc, const char **argv, const size_t *argvlen)
{
    struct cluster_link *cl = impl(l);
    struct cnode *n = owner_of(cl, key, keylen);
    if (!n)
        return -1;
    struct routed *rt = malloc(sizeof(*rt));
    if (!rt)
        return -1;
    rt->cl = cl;
    rt->cb = cb;
    rt->privdata = privdata;
    if (redisAsyncCommandArgv(n->cmd, on_routed, rt, argc, argv, argvlen) != REDIS_OK) {
        free(rt);
        return -1;
    }
    return 0;
}

static int op_formatted(struct redis_link *l, const char *key, size_t keylen, redisCallbackFn *cb,
                        void *privdata, const char *cmd, size_t len)
{
    struct cnode *n = owner_of(impl(l), key, keylen);
    if (!n)
        return -1;
    return redisAsyncFormattedCommand(n->cmd, cb, privdata, cmd, len) == REDIS_OK ? 0 : -1;
}

static int op_command_all(struct redis_link *l, redisCallbackFn *cb, void *privdata, int argc,
                          const char **argv, const size_t *argvlen)
{
    struct cluster_link *cl = impl(l);
    int sent = 0;
    for (int i = 0; i < CLUSTER_MAX_NODES; i++) {
        struct cnode *n = cl->nodes[i];
        if (n && n->cmd_ok &&
            redisAsyncCommandArgv(n->cmd, cb, privdata, argc, argv, argvlen) == REDIS_OK)
            sent++;
    }
    return sent;
}

static int op_shard_of(const struct redis_link *l, const char *key, size_t keylen)
{
    (void)l;
    return (int)keyslot(key, keylen);
}

/* ---- state ---- */

static int op_connected(const struct redis_link *l)
{
    return impl(l)->up;
}

static int op_ready(const struct redis_link *l)
{
    struct cluster_link *cl = impl(l);
    if (!cl->up)
        return 0;
    struct csub *cs, *tmp;
    HASH_ITER(hh, cl->subs, cs, tmp)
    {
        if (!cs->acked)
            return 0;
    }
    return 1;
}

static uint32_t op_subscribed(const struct redis_link *l)
{
    return impl(l)->n_acked;
}

static int op_start(struct redis_link *l)
{
    struct cluster_link *cl = impl(l);
    memset(cl, 0, sizeof(*cl));
    cl->srv = l->srv;
    cl->backoff_ms = BACKOFF_MIN_MS;
    for (int s = 0; s < KEYSLOT_COUNT; s++)
        cl->slot_node[s] = -1;
    if (uv_timer_init(&cl->srv->loop, &cl->refresh_timer) < 0 ||
        uv_timer_init(&cl->srv->loop, &cl->health_timer) < 0)
        return -1;
    cl->refresh_timer.data = cl->health_timer.data = cl;
    if (!csub_add(cl, "")) /* the broadcast channel, always */
        return -1;
    uv_timer_start(&cl->health_timer, on_health, HEALTH_INTERVAL_MS, HEALTH_INTERVAL_MS);
    schedule_refresh(cl, 0);
    return 0;
}

static void op_stop(struct redis_link *l)
{
    struct cluster_link *cl = impl(l);
    if (cl->stopped)
        return;
    cl->stopped = 1;
    uv_close((uv_handle_t *)&cl->refresh_timer, NULL);
    uv_close((uv_handle_t *)&cl->health_timer, NULL);
    close_probe(cl);
    for (int i = 0; i < CLUSTER_MAX_NODES; i++) {
        struct cnode *n = cl->nodes[i];
        if (!n)
            continue;
        cl->nodes[i] = NULL;
        if (n->sub)
            shardsub_close(n->sub);
        if (n->cmd) {
            /* Disconnect (not free) lets the last presence removals out. */
            n->cmd->data = NULL;
            redisAsyncDisconnect(n->cmd);
        }
        free(n);
    }
    struct csub *cs, *tmp;
    HASH_ITER(hh, cl->subs, cs, tmp)
    {
        HASH_DELETE(hh, cl->subs, cs);
        free(cs);
    }
}

const struct redis_ops redis_cluster_ops = {
    .name = "cluster",
    .publish_command = "SPUBLISH",
    .start = op_start,
    .ready = op_ready,
    .connected = op_connected,
    .subscribed = op_subscribed,
    .subscribe = op_subscribe,
    .unsubscribe = op_unsubscribe,
    .command = op_command,
    .formatted = op_formatted,
    .command_all = op_command_all,
    .shard_of = op_shard_of,
    .stop = op_stop,
};
