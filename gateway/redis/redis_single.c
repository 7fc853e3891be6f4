#include "redis.h"
#include "redis_single.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "deliver.h"
#include "log.h"
#include "redis_uv.h"
#include "respbuf.h"
#include "rnames.h"
#include "server.h"

/* Channels named in one SUBSCRIBE or UNSUBSCRIBE. */
#define SUB_BATCH 1000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* A command connection that leaves a PING unanswered this long is dead
 * (a stopped or wedged Redis never closes the socket). */
#define HEALTH_INTERVAL_MS 1000
#define HEALTH_TIMEOUT_MS 5000

/* One account whose subscription must change at the next flush. The table
 * holds the difference between what Redis has and what we want, so a
 * subscribe cancels a pending unsubscribe of the same account and vice
 * versa; uthash keeps insertion order for the flush. */
struct pending_sub {
    UT_hash_handle hh; /* keyed by account */
    int subscribe;     /* 1 = SUBSCRIBE, 0 = UNSUBSCRIBE */
    char account[];    /* NUL-terminated */
};

static void connect_now(struct single_link *l);
static int single_connected(const struct single_link *l);

static void on_reconnect_timer(uv_timer_t *t)
{
    connect_now(t->data);
}
static void set_up_if_synced(struct single_link *l);

static const char *host_of(const struct single_link *l)
{
    return l->srv->cfg->redis_url.host;
}

static void clear_pending(struct single_link *l)
{
    struct pending_sub *p, *tmp;
    HASH_ITER(hh, l->pending, p, tmp)
    {
        HASH_DELETE(hh, l->pending, p);
        free(p);
    }
}

/* Tears both connections down and schedules the next attempt. freeing is a
 * context hiredis is already freeing (connect/disconnect callbacks);
 * in_callback is one whose reply callback is running, which may only be
 * disconnected, not freed. */
static void link_fail(struct single_link *l, const redisAsyncContext *freeing,
                      redisAsyncContext *in_callback, const char *why)
{
    if (freeing == l->sub)
        l->sub = NULL;
    if (freeing == l->cmd)
        l->cmd = NULL;
    if (l->state == LINK_DOWN || l->state == LINK_STOPPED)
        return;
    int was_up = single_connected(l);
    if (was_up)
        server_on_redis_down(l->srv);
    l->state = LINK_DOWN;
    redisAsyncContext *ctxs[2] = {l->sub, l->cmd};
    l->sub = l->cmd = NULL;
    for (int i = 0; i < 2; i++) {
        if (!ctxs[i])
            continue;
        if (ctxs[i] == in_callback)
            redisAsyncDisconnect(ctxs[i]);
        else
            redisAsyncFree(ctxs[i]);
    }
    clear_pending(l);
    l->subscribed = 0;
    l->sub_handshake_ok = l->cmd_handshake_ok = 0;
    if (was_up || !l->logged_down) {
        log_error("redis_down", "host=%s port=%d reason=\"%s\" retry=backoff", host_of(l),
                  l->srv->cfg->redis_url.port, why);
        l->logged_down = 1;
    } else {
        log_debug("redis_retry_failed", "reason=\"%s\"", why);
    }
    /* Full jitter over the upper half keeps a fleet of nodes from
     * reconnecting in lockstep after a Redis restart. */
    uint32_t delay = l->backoff_ms / 2 + (uint32_t)(random() % (l->backoff_ms / 2 + 1));
    l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
    uv_timer_start(&l->reconnect_timer, on_reconnect_timer, delay, 0);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct single_link *l = ac->data;
    if (status != REDIS_OK)
        link_fail(l, ac, NULL, ac->errstr[0] ? ac->errstr : "connect failed");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct single_link *l = ac->data;
    (void)status;
    link_fail(l, ac, NULL, ac->errstr[0] ? ac->errstr : "connection closed");
}

/* ---- subscriber connection ---- */

/* One callback for every SUBSCRIBE: hiredis keeps a callback per channel
 * and the newest registration wins, so per-channel state lives in the
 * registry, not in hiredis (FACTS.md). */
static void on_sub_message(void *data, const char *chan, size_t chan_len, const char *payload,
                           size_t payload_len)
{
    struct single_link *l = data;
    const char *account;
    size_t alen;
    if (chan_len == l->bcast_len && !memcmp(chan, l->bcast, chan_len))
        deliver_broadcast(l->srv, payload, payload_len);
    else if (rnames_parse_account_channel(chan, chan_len, l->srv->cfg->redis_prefix, &account,
                                          &alen))
        deliver_account(l->srv, account, alen, payload, payload_len);
}

/* A subscription confirmed or ended. */
static void sub_confirmed(struct single_link *l, int subscribe, const char *chan, size_t chan_len,
                          long long count)
{
    if (count > 0)
        l->subscribed = (uint32_t)(count - 1); /* the broadcast channel aside */
    if (!subscribe)
        return;
    if (chan_len == l->bcast_len && !memcmp(chan, l->bcast, chan_len)) {
        l->sub_handshake_ok = 1;
        set_up_if_synced(l);
        return;
    }
    const char *id;
    size_t len;
    struct account *a;
    if (rnames_parse_account_channel(chan, chan_len, l->srv->cfg->redis_prefix, &id, &len) &&
        (a = registry_find_account(&l->srv->registry, id, len)) && !a->subscribed)
        session_account_subscribed(&l->srv->sessions, a);
    if (l->sync_acks_left > 0 && --l->sync_acks_left == 0)
        set_up_if_synced(l);
}

/* Confirmations read in place (redis_uv): those of the account channels,
 * whose (UN)SUBSCRIBEs we wrote past hiredis (send_sub_batch). The
 * broadcast channel's goes on to hiredis, which sent its SUBSCRIBE: hiredis
 * then sees exactly the one subscription it knows of, confirmed. */
static int on_sub_confirm(void *data, int subscribe, const char *chan, size_t chan_len,
                          long long count)
{
    struct single_link *l = data;
    if (chan_len == l->bcast_len && !memcmp(chan, l->bcast, chan_len))
        return 0;
    sub_confirmed(l, subscribe, chan, chan_len, count);
    return 1;
}

static void on_sub_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct single_link *l = privdata;
    redisReply *reply = r;
    if (!reply)
        return; /* the connection is going away; on_disconnect follows */
    if (reply->type == REDIS_REPLY_ERROR) {
        link_fail(l, NULL, ac, reply->str);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
        return;
    redisReply *kind = reply->element[0], *chan = reply->element[1], *third = reply->element[2];
    if (chan->type != REDIS_REPLY_STRING)
        return;
    if (redis_reply_is(kind, "message")) {
        /* Normally read in place by redis_uv (on_sub_message); kept for
         * a message hiredis meets anyway. */
        if (third->type == REDIS_REPLY_STRING)
            on_sub_message(l, chan->str, chan->len, third->str, third->len);
    } else if (third->type == REDIS_REPLY_INTEGER &&
               (redis_reply_is(kind, "subscribe") || redis_reply_is(kind, "unsubscribe"))) {
        sub_confirmed(l, redis_reply_is(kind, "subscribe"), chan->str, chan->len, third->integer);
    }
}

/* Sends one (UN)SUBSCRIBE naming up to SUB_BATCH account channels,
 * written by us and past hiredis's command table: through it, hiredis
 * formatted the command, kept an sds and a table entry per channel and
 * built, looked up and freed a reply tree per confirmation, about 10,700
 * instructions of every connect (callgrind) and 0.13 KiB of every idle
 * connection. The confirmations are read in place (on_sub_confirm), so
 * hiredis holds nothing per channel. */
static int send_sub_batch(struct single_link *l, int subscribe, char **accounts, size_t n)
{
    struct respbuf *b = &l->sub_out;
    char name[RNAME_MAX];
    respbuf_header(b, '*', n + 1);
    if (subscribe)
        respbuf_arg(b, "SUBSCRIBE", 9);
    else
        respbuf_arg(b, "UNSUBSCRIBE", 11);
    for (size_t i = 0; i < n; i++) {
        int len =
            rnames_account_channel(name, sizeof(name), l->srv->cfg->redis_prefix, accounts[i]);
        if (len < 0) {
            respbuf_reset(b);
            return -1;
        }
        respbuf_arg(b, name, (size_t)len);
    }
    int rc = b->failed ? -1 : redis_uv_send_raw(l->sub, b->p, b->len);
    respbuf_reset(b);
    return rc;
}

static void flush_pending(uv_timer_t *t)
{
    struct single_link *l = t->data;
    if (!l->sub || !l->sub_handshake_ok) {
        clear_pending(l); /* the resubscription after connect covers it */
        return;
    }
    char *batch[SUB_BATCH];
    size_t n = 0;
    int op = -1;
    struct pending_sub *p, *tmp;
    /* Consecutive entries with the same operation share a command; the
     * order of operations is kept. */
    HASH_ITER(hh, l->pending, p, tmp)
    {
        if (n && (p->subscribe != op || n == SUB_BATCH)) {
            if (send_sub_batch(l, op, batch, n) < 0)
                log_error("redis_subscribe_failed", "channels=%zu", n);
            n = 0;
        }
        op = p->subscribe;
        batch[n++] = p->account;
    }
    if (n && send_sub_batch(l, op, batch, n) < 0)
        log_error("redis_subscribe_failed", "channels=%zu", n);
    clear_pending(l);
}

static int queue_change(struct single_link *l, const char *account, int subscribe)
{
    if (!single_connected(l))
        return -1;
    struct pending_sub *p;
    size_t len = strlen(account);
    HASH_FIND(hh, l->pending, account, len, p);
    if (p) {
        /* The opposite change is pending: the two cancel out. */
        if (p->subscribe != subscribe) {
            HASH_DELETE(hh, l->pending, p);
            free(p);
            return 1;
        }
        return 0;
    }
    p = malloc(sizeof(*p) + len + 1);
    if (!p) {
        log_error("out_of_memory", "where=subscribe account=%s", account);
        return -1;
    }
    p->subscribe = subscribe;
    memcpy(p->account, account, len + 1);
    HASH_ADD(hh, l->pending, account, len, p);
    if (!uv_is_active((uv_handle_t *)&l->flush_timer))
        uv_timer_start(&l->flush_timer, flush_pending, 1, 0);
    return 0;
}

static int single_subscribe(struct single_link *l, const char *account)
{
    return queue_change(l, account, 1);
}

static void single_unsubscribe(struct single_link *l, const char *account)
{
    queue_change(l, account, 0);
}

/* After a (re)connect: every account present on the node, in batches. */
static void resubscribe_all(struct single_link *l)
{
    char *batch[SUB_BATCH];
    size_t n = 0;
    l->sync_acks_left = 0;
    struct account *a, *tmp;
    HASH_ITER(hh, l->srv->registry.accounts, a, tmp)
    {
        batch[n++] = a->id;
        if (n == SUB_BATCH) {
            if (send_sub_batch(l, 1, batch, n) == 0)
                l->sync_acks_left += (uint32_t)n;
            n = 0;
        }
    }
    if (n && send_sub_batch(l, 1, batch, n) == 0)
        l->sync_acks_left += (uint32_t)n;
}

static void set_up_if_synced(struct single_link *l)
{
    if (l->state == LINK_CONNECTING && l->sub_handshake_ok && l->cmd_handshake_ok) {
        l->state = LINK_SYNCING;
        resubscribe_all(l);
        if (l->was_up)
            l->srv->metrics.redis_reconnects++;
        log_info("redis_connected", "host=%s port=%d accounts=%u", host_of(l),
                 l->srv->cfg->redis_url.port, l->srv->registry.n_accounts);
        l->logged_down = 0;
        l->backoff_ms = BACKOFF_MIN_MS;
        server_on_redis_up(l->srv);
    }
    if (l->state == LINK_SYNCING && l->sync_acks_left == 0) {
        l->state = LINK_UP;
        l->was_up = 1;
        log_info("redis_ready", "subscribed_accounts=%u", l->subscribed);
    }
}

/* ---- command connection ---- */

static void on_cmd_handshake(redisAsyncContext *ac, void *r, void *privdata)
{
    struct single_link *l = ac->data;
    redisReply *reply = r;
    (void)privdata;
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        link_fail(l, NULL, ac, reply->str);
        return;
    }
    if (privdata) { /* the last handshake command */
        l->cmd_handshake_ok = 1;
        set_up_if_synced(l);
    }
}

static void on_auth(redisAsyncContext *ac, void *r, void *privdata)
{
    struct single_link *l = ac->data;
    redisReply *reply = r;
    (void)privdata;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        char why[300];
        snprintf(why, sizeof(why), "AUTH refused: %s", reply->str);
        link_fail(l, NULL, ac, why);
    }
}

static redisAsyncContext *open_ctx(struct single_link *l)
{
    const struct redis_url *u = &l->srv->cfg->redis_url;
    redisAsyncContext *ac =
        redis_uv_connect(&l->srv->loop, u->host, u->port, u->user, u->password, on_auth, l);
    if (ac) {
        redisAsyncSetConnectCallback(ac, on_connect);
        redisAsyncSetDisconnectCallback(ac, on_disconnect);
    }
    return ac;
}

static void connect_now(struct single_link *l)
{
    if (l->state == LINK_STOPPED)
        return;
    l->state = LINK_CONNECTING;
    l->connecting_since = uv_now(&l->srv->loop);
    l->sub_handshake_ok = l->cmd_handshake_ok = 0;
    l->sync_acks_left = 0;
    l->ping_sent_at = 0;
    l->sub = open_ctx(l);
    l->cmd = l->sub ? open_ctx(l) : NULL;
    if (!l->sub || !l->cmd) {
        link_fail(l, NULL, NULL, "cannot create a connection");
        return;
    }
    redis_uv_on_pushes(l->sub, on_sub_message, on_sub_confirm, l);
    int blen = rnames_broadcast_channel(l->bcast, sizeof(l->bcast), l->srv->cfg->redis_prefix);
    l->bcast_len = blen > 0 ? (size_t)blen : 0;
    /* Queuing a command is also what makes hiredis report the connect. */
    redisAsyncCommand(l->sub, on_sub_reply, l, "SUBSCRIBE %s", l->bcast);
    redisAsyncCommand(l->cmd, on_cmd_handshake, NULL, "SELECT %d", l->srv->cfg->redis_url.db);
    redisAsyncCommand(l->cmd, on_cmd_handshake, l, "PING");
}

/* ---- health check ---- */

static void on_health_pong(redisAsyncContext *ac, void *r, void *privdata)
{
    struct single_link *l = privdata;
    (void)ac;
    if (r)
        l->ping_sent_at = 0;
}

static void on_health_timer(uv_timer_t *t)
{
    struct single_link *l = t->data;
    uint64_t now = uv_now(t->loop);
    /* A Redis that accepts the TCP connection but never answers (stopped,
     * wedged) would otherwise keep us connecting forever. */
    if (l->state == LINK_CONNECTING && now - l->connecting_since > HEALTH_TIMEOUT_MS) {
        link_fail(l, NULL, NULL, "no answer during the handshake");
        return;
    }
    if (!l->cmd || !l->cmd_handshake_ok)
        return;
    if (l->ping_sent_at) {
        if (now - l->ping_sent_at > HEALTH_TIMEOUT_MS)
            link_fail(l, NULL, NULL, "no answer to PING");
        return;
    }
    if (redisAsyncCommand(l->cmd, on_health_pong, l, "PING") == REDIS_OK)
        l->ping_sent_at = now;
}

/* ---- public ---- */

static int single_start(struct single_link *l, struct server *srv)
{
    memset(l, 0, sizeof(*l));
    l->srv = srv;
    l->state = LINK_DOWN;
    l->backoff_ms = BACKOFF_MIN_MS;
    if (uv_timer_init(&srv->loop, &l->reconnect_timer) < 0 ||
        uv_timer_init(&srv->loop, &l->flush_timer) < 0 ||
        uv_timer_init(&srv->loop, &l->health_timer) < 0)
        return -1;
    l->reconnect_timer.data = l->flush_timer.data = l->health_timer.data = l;
    uv_timer_start(&l->health_timer, on_health_timer, HEALTH_INTERVAL_MS, HEALTH_INTERVAL_MS);
    connect_now(l);
    return 0;
}

static int single_ready(const struct single_link *l)
{
    return l->state == LINK_UP;
}

static int single_connected(const struct single_link *l)
{
    return l->state == LINK_UP || l->state == LINK_SYNCING;
}

static int single_command(struct single_link *l, redisCallbackFn *cb, void *privdata, int argc,
                          const char **argv, const size_t *argvlen)
{
    if (!l->cmd || !l->cmd_handshake_ok)
        return -1;
    return redisAsyncCommandArgv(l->cmd, cb, privdata, argc, argv, argvlen) == REDIS_OK ? 0 : -1;
}

static void single_stop(struct single_link *l)
{
    if (l->state == LINK_STOPPED)
        return;
    l->state = LINK_STOPPED;
    redisAsyncContext *sub = l->sub, *cmd = l->cmd;
    l->sub = l->cmd = NULL;
    /* Disconnect lets queued commands (the last presence removals) reach
     * Redis before the socket closes. */
    if (sub)
        redisAsyncFree(sub);
    if (cmd)
        redisAsyncDisconnect(cmd);
    clear_pending(l);
    respbuf_free(&l->sub_out);
    uv_close((uv_handle_t *)&l->reconnect_timer, NULL);
    uv_close((uv_handle_t *)&l->flush_timer, NULL);
    uv_close((uv_handle_t *)&l->health_timer, NULL);
}

/* ---- the redis.h interface ---- */

static struct single_link *impl(const struct redis_link *l)
{
    return (struct single_link *)&l->u.single;
}

static int op_start(struct redis_link *l)
{
    return single_start(impl(l), l->srv);
}

static int op_ready(const struct redis_link *l)
{
    return single_ready(impl(l));
}

static int op_connected(const struct redis_link *l)
{
    return single_connected(impl(l));
}

static uint32_t op_subscribed(const struct redis_link *l)
{
    return impl(l)->subscribed;
}

static int op_subscribe(struct redis_link *l, const char *account)
{
    return single_subscribe(impl(l), account);
}

static void op_unsubscribe(struct redis_link *l, const char *account)
{
    single_unsubscribe(impl(l), account);
}

/* One Redis holds every key: the key does not matter. */
static int op_command(struct redis_link *l, const char *key, size_t keylen, redisCallbackFn *cb,
                      void *privdata, int argc, const char **argv, const size_t *argvlen)
{
    (void)key;
    (void)keylen;
    return single_command(impl(l), cb, privdata, argc, argv, argvlen);
}

static int op_formatted(struct redis_link *l, const char *key, size_t keylen, redisCallbackFn *cb,
                        void *privdata, const char *cmd, size_t len)
{
    struct single_link *sl = impl(l);
    (void)key;
    (void)keylen;
    if (!sl->cmd || !sl->cmd_handshake_ok)
        return -1;
    return redisAsyncFormattedCommand(sl->cmd, cb, privdata, cmd, len) == REDIS_OK ? 0 : -1;
}

static int op_command_all(struct redis_link *l, redisCallbackFn *cb, void *privdata, int argc,
                          const char **argv, const size_t *argvlen)
{
    return single_command(impl(l), cb, privdata, argc, argv, argvlen);
}

static int op_shard_of(const struct redis_link *l, const char *key, size_t keylen)
{
    (void)l;
    (void)key;
    (void)keylen;
    return 0;
}

static void op_stop(struct redis_link *l)
{
    single_stop(impl(l));
}

const struct redis_ops redis_single_ops = {
    .name = "single",
    .publish_command = "PUBLISH",
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
