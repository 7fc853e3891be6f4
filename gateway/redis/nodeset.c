/* nodeset: the primaries of redis.h, their two connections each, the slot
 * map, retries and health. The subscription table is subs.c's; routing
 * commands to the primaries is commands.c's. */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nodeset.h"
#include "rnames.h"

/* Retries double from 100 ms to 1 s (each waits a random part of the
 * upper half): a Redis that is back is found within 1 s of it, whatever
 * the outage lasted (README.md, "Redis outages"), and a refused connect
 * twice a second per gateway costs a dead Redis's host nothing. */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
/* A subscriber connection that leaves a PING unanswered this long after
 * it left is dead (a stopped or wedged Redis never closes the socket); so
 * is a pair of connections whose handshake takes this long
 * (redis_uv_stalled says when the clock starts). */
#define HEALTH_INTERVAL_MS 1000
#define HEALTH_TIMEOUT_MS 5000

static const char PING_RESP[] = "*1\r\n$4\r\nPING\r\n";

static void node_connect(struct redis_node *n);

/* ---- logging: one place for the set's state changes ---- */

/* Logged once per outage (redis_down), not once per attempt. */
static void log_down(struct redis_link *l, const struct redis_node *n, const char *why)
{
    if (l->logged_down) {
        log_debug("redis_retry_failed", "reason=\"%s\"", why);
    } else if (n) {
        log_error("redis_down", "host=%s port=%d reason=\"%s\" retry=backoff", n->host, n->port,
                  why);
    } else {
        log_error("redis_down", "mode=cluster reason=\"%s\" retry=backoff", why);
    }
    l->logged_down = 1;
}

/* A primary's connection failed; in a cluster the set goes on with the
 * others, so it is named (logged when a working connection goes, not for
 * each failed retry). */
static void log_node_lost(struct redis_link *l, struct redis_node *n, const char *conn, int was_ok,
                          const char *why)
{
    if (!l->cluster)
        log_down(l, n, why);
    else if (was_ok)
        log_warn("cluster_node_lost", "node=%s:%d conn=%s reason=\"%s\"", n->host, n->port, conn,
                 why);
    else
        log_debug("cluster_node_retry", "node=%s:%d conn=%s reason=\"%s\"", n->host, n->port, conn,
                  why);
}

static void log_connected(struct redis_link *l, int primaries)
{
    uint32_t accounts = l->subs.n ? l->subs.n - 1 : 0; /* the broadcast entry aside */
    if (l->cluster)
        log_info("redis_connected", "mode=cluster primaries=%d accounts=%u", primaries, accounts);
    else
        log_info("redis_connected", "host=%s port=%d accounts=%u", l->nodes[0]->host,
                 l->nodes[0]->port, accounts);
}

static void check_ready(struct redis_link *l)
{
    if (l->up && !l->ready_logged && l->subs.n_waited == 0) {
        l->ready_logged = 1;
        log_info("redis_ready", "subscribed_accounts=%u", l->subs.n_acked);
    }
}

/* ---- retries ---- */

static void on_retry_timer(uv_timer_t *t);

void nodeset_refresh_soon(struct redis_link *l, uint32_t delay_ms)
{
    if (l->stopped)
        return;
    if (delay_ms == 0 || !uv_is_active((uv_handle_t *)&l->retry_timer))
        uv_timer_start(&l->retry_timer, on_retry_timer, delay_ms, 0);
}

/* The next attempt after a failure: jitter over the upper half of the
 * backoff keeps a fleet of gateways from coming back in lockstep after a
 * Redis restart. grow: the failure was the whole set's (its one node, or
 * the map source), so the next wait is longer. */
static void retry_later(struct redis_link *l, int grow)
{
    uint32_t b = l->backoff_ms;
    nodeset_refresh_soon(l, b / 2 + (uint32_t)(random() % (b / 2 + 1)));
    if (grow)
        l->backoff_ms = b * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b * 2;
}

/* ---- up and down ---- */

static void maybe_up(struct redis_link *l)
{
    if (l->up || !l->map_ok || l->stopped)
        return;
    int primaries = 0;
    for (int i = 0; i < REDIS_MAX_NODES; i++) {
        struct redis_node *n = l->nodes[i];
        if (!n)
            continue;
        if (!n->cmd_ok || !n->sub_ok)
            return;
        primaries++;
    }
    l->up = 1;
    if (l->was_up)
        l->reconnects++;
    l->was_up = 1;
    l->logged_down = 0;
    l->ready_logged = 0;
    l->backoff_ms = BACKOFF_MIN_MS;
    log_connected(l, primaries);
    if (l->ev.on_up)
        l->ev.on_up(l->ev.data);
    check_ready(l);
}

static int any_node_ok(const struct redis_link *l)
{
    for (int i = 0; i < REDIS_MAX_NODES; i++)
        if (l->nodes[i] && l->nodes[i]->cmd_ok && l->nodes[i]->sub_ok)
            return 1;
    return 0;
}

/* Closes both of n's connections. freeing is a context hiredis is freeing
 * already (its connect or disconnect callback runs); in_callback one whose
 * reply callback runs, which may only be disconnected. */
static void node_close(struct redis_node *n, const redisAsyncContext *freeing,
                       redisAsyncContext *in_callback)
{
    redisAsyncContext *ctxs[2] = {n->cmd, n->sub};
    n->cmd = n->sub = NULL;
    n->cmd_ok = n->sub_ok = 0;
    n->ping_pending = 0;
    for (int i = 0; i < 2; i++) {
        redisAsyncContext *ac = ctxs[i];
        if (!ac || ac == freeing)
            continue;
        ac->data = NULL; /* its callbacks find no node */
        if (ac == in_callback)
            redisAsyncDisconnect(ac);
        else
            redisAsyncFree(ac);
    }
    respbuf_reset(&n->out);
    respbuf_reset(&n->batch);
    n->batch_n = 0;
}

/* n failed: both connections go, its acknowledged accounts are lost, and
 * it is connected again later. */
static void node_fail(struct redis_node *n, const redisAsyncContext *freeing,
                      redisAsyncContext *in_callback, const char *conn, const char *why)
{
    struct redis_link *l = n->l;
    if (l->stopped)
        return;
    int whole = n->cmd_ok && n->sub_ok;
    int was_ok = !strcmp(conn, "command") ? n->cmd_ok : n->sub_ok;
    int index = n->index;
    log_node_lost(l, n, conn, was_ok, why);
    /* Closing runs the callbacks of the commands still queued, with no
     * reply; a stopping server's last one (the presence removal) stops the
     * link, which frees n: nothing of n is used after it. */
    node_close(n, freeing, in_callback);
    if (l->stopped)
        return;
    subs_node_lost(l, index);
    l->up = 0;
    if (whole && !any_node_ok(l) && l->ev.on_down)
        l->ev.on_down(l->ev.data);
    retry_later(l, !l->cluster);
}

/* ---- the subscriber connection, read in place (redis_uv.h) ---- */

/* A message: straight up, with no table lookup. */
static void on_sub_message(void *data, const char *chan, size_t chan_len, const char *payload,
                           size_t payload_len)
{
    struct redis_node *n = data;
    struct redis_link *l = n->l;
    const char *account;
    size_t alen;
    if (chan_len == l->bcast_len && !memcmp(chan, l->bcast, chan_len))
        l->ev.on_broadcast(l->ev.data, payload, payload_len);
    else if (rnames_parse_account_channel(chan, chan_len, l->cfg->redis_prefix, &account, &alen))
        l->ev.on_message(l->ev.data, account, alen, payload, payload_len);
}

static void on_sub_confirm(void *data, const struct resp_confirmation *c)
{
    struct redis_node *n = data;
    int changed = subs_on_confirm(n->l, n->index, c);
    if (changed > 0)
        check_ready(n->l);
    else if (changed < 0)
        nodeset_refresh_soon(n->l, 0);
}

/* Any other reply: the handshake's, or an error. */
static void on_sub_reply(void *data, const char *r, size_t len)
{
    struct redis_node *n = data;
    struct redis_link *l = n->l;
    if (r[0] == '-') {
        char why[320];
        int elen = len >= 3 ? (int)len - 3 : 0; /* "-" ... CRLF */
        if (!n->sub_ok && l->cfg->redis_url.password[0])
            snprintf(why, sizeof(why), "AUTH refused: %.*s", elen, r + 1);
        else
            snprintf(why, sizeof(why), "%.*s", elen, r + 1);
        if (n->sub_ok && l->cluster) {
            /* MOVED (the map is stale) or CROSSSLOT: refresh, and the
             * health check resends whatever stays unacknowledged. */
            log_warn("cluster_subscribe_refused", "node=%s:%d error=\"%s\"", n->host, n->port, why);
            nodeset_refresh_soon(l, 0);
            return;
        }
        node_fail(n, NULL, NULL, "subscriber", why);
        return;
    }
    /* +PONG before any subscription, ["pong", ""] once subscribed */
    int pong = (len == 7 && !memcmp(r, "+PONG\r\n", 7)) ||
               (len >= 14 && !memcmp(r, "*2\r\n$4\r\npong\r\n", 14));
    if (!pong)
        return;
    if (n->sub_ok) {
        n->ping_pending = 0; /* the health PING's */
        return;
    }
    n->sub_ok = 1;
    subs_place_all(l);
    maybe_up(l);
}

/* ---- the command connection ---- */

static struct redis_node *node_of(const redisAsyncContext *ac)
{
    struct redis_node *n = ac->data;
    return n && n->cmd == ac ? n : NULL;
}

static void on_cmd_auth(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_node *n = node_of(ac);
    redisReply *reply = r;
    (void)privdata;
    if (n && reply && reply->type == REDIS_REPLY_ERROR) {
        char why[300];
        snprintf(why, sizeof(why), "AUTH refused: %s", reply->str);
        node_fail(n, NULL, ac, "command", why);
    }
}

static void on_cmd_select(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_node *n = node_of(ac);
    redisReply *reply = r;
    (void)privdata;
    if (n && reply && reply->type == REDIS_REPLY_ERROR)
        node_fail(n, NULL, ac, "command", reply->str);
}

static void on_fn_loaded(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply *reply = r;
    (void)ac;
    (void)privdata;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_error("function_load_failed", "library=notify error=\"%s\"", reply->str);
    else if (reply)
        log_debug("function_loaded", "library=notify");
}

/* The handshake's last answer: the library is loaded (or refused) by now. */
static void on_cmd_ready(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_node *n = node_of(ac);
    redisReply *reply = r;
    (void)privdata;
    if (!n || !reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        if (n->l->cluster)
            log_error("cluster_node_refused", "node=%s:%d error=\"%s\"", n->host, n->port,
                      reply->str);
        node_fail(n, NULL, ac, "command", reply->str);
        return;
    }
    n->cmd_ok = 1;
    maybe_up(n->l);
}

/* hiredis frees a context whose connect failed or that dropped. */
static void on_gone(const redisAsyncContext *ac, const char *what)
{
    struct redis_node *n = ac->data;
    if (!n || (n->cmd != ac && n->sub != ac))
        return;
    node_fail(n, ac, NULL, n->cmd == ac ? "command" : "subscriber",
              ac->errstr[0] ? ac->errstr : what);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    if (status != REDIS_OK)
        on_gone(ac, "connect failed");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    on_gone(ac, "connection closed");
}

/* Both connections, each with its handshake queued: the command
 * connection's AUTH, SELECT, FUNCTION LOAD and PING leave in one write, so
 * the library is in place before any other command of ours, or anyone
 * else's that comes after the connection is seen; the subscriber's AUTH
 * and PING are written by us, as everything on it. */
static void node_connect(struct redis_node *n)
{
    struct redis_link *l = n->l;
    const struct redis_url *u = &l->cfg->redis_url;
    if (n->cmd || n->sub || l->stopped)
        return;
    n->cmd = redis_uv_connect(l->loop, n->host, n->port, n);
    n->sub = n->cmd ? redis_uv_connect(l->loop, n->host, n->port, n) : NULL;
    if (!n->sub) {
        node_fail(n, NULL, NULL, "command", "cannot create a connection");
        return;
    }
    for (int i = 0; i < 2; i++) {
        redisAsyncContext *ac = i ? n->sub : n->cmd;
        redisAsyncSetConnectCallback(ac, on_connect);
        redisAsyncSetDisconnectCallback(ac, on_disconnect);
    }
    n->pushes = (struct redis_uv_pushes){on_sub_message, on_sub_confirm, on_sub_reply, n};
    redis_uv_take_replies(n->sub, &n->pushes);
    struct respbuf hs = {0};
    if (u->password[0]) {
        const char *argv[3] = {"AUTH", u->user, u->password};
        size_t lens[3] = {4, strlen(u->user), strlen(u->password)};
        int skip = u->user[0] ? 0 : 1; /* AUTH <password> alone */
        if (skip) {
            argv[1] = argv[0];
            lens[1] = lens[0];
        }
        redisAsyncCommandArgv(n->cmd, on_cmd_auth, NULL, 3 - skip, argv + skip, lens + skip);
        respbuf_cmd(&hs, 3 - skip, argv + skip, lens + skip);
    }
    respbuf_cmd(&hs, 1, (const char *[]){"PING"}, (size_t[]){4});
    if (hs.failed || redis_uv_send_raw(n->sub, hs.p, hs.len) < 0) {
        respbuf_free(&hs);
        node_fail(n, NULL, NULL, "subscriber", "cannot queue the handshake");
        return;
    }
    respbuf_free(&hs);
    /* Redis Cluster has only database 0 and refuses SELECT of another. */
    if (!l->cluster)
        redisAsyncCommand(n->cmd, on_cmd_select, NULL, "SELECT %d", u->db);
    if (l->library) {
        const char *argv[] = {"FUNCTION", "LOAD", "REPLACE", l->library};
        size_t lens[] = {8, 4, 7, strlen(l->library)};
        redisAsyncCommandArgv(n->cmd, on_fn_loaded, NULL, 4, argv, lens);
    }
    redisAsyncCommand(n->cmd, on_cmd_ready, NULL, "PING");
    redis_uv_mark(n->cmd);
    redis_uv_mark(n->sub);
}

/* ---- nodes ---- */

static struct redis_node *node_find_or_add(struct redis_link *l, const char *host, int port)
{
    int free_index = -1;
    for (int i = 0; i < REDIS_MAX_NODES; i++) {
        struct redis_node *n = l->nodes[i];
        if (!n) {
            if (free_index < 0)
                free_index = i;
        } else if (n->port == port && !strcmp(n->host, host)) {
            return n;
        }
    }
    if (free_index < 0)
        return NULL;
    struct redis_node *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->l = l;
    n->index = free_index;
    snprintf(n->host, sizeof(n->host), "%s", host);
    n->port = port;
    l->nodes[free_index] = n;
    return n;
}

static void node_free(struct redis_node *n)
{
    n->l->nodes[n->index] = NULL;
    respbuf_free(&n->out);
    respbuf_free(&n->batch);
    free(n);
}

/* A primary the map no longer names. */
static void node_remove(struct redis_link *l, struct redis_node *n)
{
    log_info("cluster_node_removed", "node=%s:%d", n->host, n->port);
    node_close(n, NULL, NULL);
    subs_node_lost(l, n->index);
    for (int s = 0; s < KEYSLOT_COUNT; s++)
        if (l->slot_node[s] == n->index)
            l->slot_node[s] = -1;
    node_free(n);
}

/* ---- the slot map (cluster) ---- */

/* hiredis frees a probe whose connect failed or that dropped: forget it
 * first, so close_probe() never frees it twice. */
static void on_probe_gone(const redisAsyncContext *ac, int status)
{
    struct redis_link *l = ac->data;
    if (status != REDIS_OK && l && l->probe == ac)
        l->probe = NULL;
}

static void close_probe(struct redis_link *l)
{
    if (l->probe) {
        redisAsyncContext *ac = l->probe;
        l->probe = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
}

/* Takes the map m: primaries it does not name go, new ones are
 * connected, and every channel is sent where its slot now is. */
static void apply_map(struct redis_link *l, const struct slotmap *m, int complete)
{
    int8_t index_of[SLOTMAP_MAX_NODES];
    for (int i = 0; i < REDIS_MAX_NODES; i++)
        if (l->nodes[i])
            l->nodes[i]->in_map = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        struct redis_node *n = node_find_or_add(l, m->nodes[i].host, m->nodes[i].port);
        index_of[i] = n ? (int8_t)n->index : -1;
        if (n)
            n->in_map = 1;
    }
    for (int i = 0; i < REDIS_MAX_NODES; i++)
        if (l->nodes[i] && !l->nodes[i]->in_map)
            node_remove(l, l->nodes[i]);
    for (int s = 0; s < KEYSLOT_COUNT; s++)
        l->slot_node[s] = m->owner[s] >= 0 ? index_of[m->owner[s]] : -1;
    l->map_ok = complete;
    for (int i = 0; i < REDIS_MAX_NODES; i++)
        if (l->nodes[i])
            node_connect(l->nodes[i]);
    subs_place_all(l);
}

static void on_slots(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_link *l = privdata;
    redisReply *reply = r;
    (void)ac;
    if (l->stopped)
        return;
    l->refreshing = 0;
    struct slotmap *m = NULL;
    int unowned = -1;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
        (m = malloc(sizeof(*m))))
        unowned = slotmap_read(m, reply, l->asked_host);
    if (unowned < 0) {
        char why[320];
        snprintf(why, sizeof(why), "CLUSTER SLOTS: %s",
                 !reply                             ? "no answer"
                 : reply->type == REDIS_REPLY_ERROR ? reply->str
                 : reply->type != REDIS_REPLY_ARRAY ? "unexpected reply"
                 : reply->elements == 0             ? "empty map"
                                                    : "unreadable map");
        free(m);
        log_down(l, NULL, why);
        close_probe(l);
        retry_later(l, 1);
        return;
    }
    apply_map(l, m, unowned == 0);
    free(m);
    close_probe(l);
    if (!l->map_ok) {
        /* While slots have no owner, their clients cannot be served:
         * readiness drops until the map is complete again. */
        l->up = 0;
        retry_later(l, 1);
        return;
    }
    maybe_up(l);
}

/* Asks a primary we are connected to for the map; else a seed. */
static void ask_map(struct redis_link *l)
{
    if (l->refreshing)
        return;
    for (int i = 0; i < REDIS_MAX_NODES; i++) {
        struct redis_node *n = l->nodes[i];
        if (n && n->cmd_ok && redisAsyncCommand(n->cmd, on_slots, l, "CLUSTER SLOTS") == REDIS_OK) {
            snprintf(l->asked_host, sizeof(l->asked_host), "%s", n->host);
            l->refreshing = 1;
            return;
        }
    }
    const struct config *cfg = l->cfg;
    const struct cluster_seed *seed = &cfg->seeds[l->next_seed++ % cfg->n_seeds];
    close_probe(l);
    l->probe = redis_uv_connect(l->loop, seed->host, seed->port, l);
    snprintf(l->asked_host, sizeof(l->asked_host), "%s", seed->host);
    if (l->probe) {
        const struct redis_url *u = &cfg->redis_url;
        redisAsyncSetConnectCallback(l->probe, on_probe_gone);
        redisAsyncSetDisconnectCallback(l->probe, on_probe_gone);
        if (u->password[0] && u->user[0])
            redisAsyncCommand(l->probe, NULL, NULL, "AUTH %s %s", u->user, u->password);
        else if (u->password[0])
            redisAsyncCommand(l->probe, NULL, NULL, "AUTH %s", u->password);
    }
    if (l->probe && redisAsyncCommand(l->probe, on_slots, l, "CLUSTER SLOTS") == REDIS_OK) {
        l->refreshing = 1;
        return;
    }
    close_probe(l);
    retry_later(l, 1);
}

static void on_retry_timer(uv_timer_t *t)
{
    struct redis_link *l = t->data;
    if (l->stopped)
        return;
    if (l->cluster) {
        ask_map(l);
        return;
    }
    for (int i = 0; i < REDIS_MAX_NODES; i++)
        if (l->nodes[i])
            node_connect(l->nodes[i]);
}

/* ---- health ---- */

/* Fails n when ac (its connection conn) has left an awaited answer
 * unanswered too long, the log line saying what the check saw. */
static void fail_if_stalled(struct redis_node *n, redisAsyncContext *ac, const char *conn,
                            const char *what)
{
    if (!redis_uv_stalled(ac, HEALTH_TIMEOUT_MS))
        return;
    char seen[240], why[300];
    redis_uv_describe(ac, seen, sizeof(seen));
    snprintf(why, sizeof(why), "%s: %s", what, seen);
    node_fail(n, NULL, NULL, conn, why);
}

static void on_health_timer(uv_timer_t *t)
{
    struct redis_link *l = t->data;
    int missing = 0;
    for (int i = 0; i < REDIS_MAX_NODES && !l->stopped; i++) {
        struct redis_node *n = l->nodes[i];
        if (!n)
            continue;
        if (!n->cmd) {
            missing = 1;
            continue;
        }
        /* A Redis that accepts the TCP connection but never answers
         * (stopped, wedged) would otherwise keep us connecting forever.
         * One that is still sending, or whose answer is late only because
         * this loop is, is alive: failing it would resend every
         * subscription and presence entry, which a host short of CPU
         * cannot afford (BENCHMARKS.md, "A million"). */
        if (!n->cmd_ok || !n->sub_ok) {
            redisAsyncContext *ac = n->cmd_ok ? n->sub : n->cmd;
            fail_if_stalled(n, ac, n->cmd_ok ? "subscriber" : "command",
                            "no answer during the handshake");
            continue;
        }
        /* The PING goes on the subscriber: everything on it is answered
         * (confirmations), while the command connection may have seconds
         * of our own commands ahead of a PING, with replies off (a
         * presence resync of a whole process is megabytes): behind them a
         * busy Redis looks dead (BENCHMARKS.md, "A million"). */
        if (n->ping_pending)
            fail_if_stalled(n, n->sub, "subscriber", "no answer to PING");
        else if (redis_uv_send_raw(n->sub, PING_RESP, sizeof(PING_RESP) - 1) == 0) {
            n->ping_pending = 1;
            redis_uv_mark(n->sub);
        }
    }
    if (l->stopped)
        return; /* a failed node's callbacks stopped the server */
    if (subs_health(l))
        missing = 1;
    if (missing && l->cluster)
        nodeset_refresh_soon(l, l->backoff_ms);
}

/* ---- state and lifetime ---- */

const char *redis_link_mode(const struct redis_link *l)
{
    return l->cluster ? "cluster" : "single";
}

int redis_link_connected(const struct redis_link *l)
{
    return l->up;
}

uint32_t redis_link_reconnects(const struct redis_link *l)
{
    return l->reconnects;
}

void redis_link_init(struct redis_link *l, uv_loop_t *loop, const struct config *cfg,
                     const struct redis_events *ev)
{
    memset(l, 0, sizeof(*l));
    l->loop = loop;
    l->cfg = cfg;
    l->ev = *ev;
    l->cluster = cfg->redis_cluster != NULL;
    l->backoff_ms = BACKOFF_MIN_MS;
    memset(l->slot_node, -1, sizeof(l->slot_node));
    int blen = rnames_broadcast_channel(l->bcast, sizeof(l->bcast), cfg->redis_prefix);
    l->bcast_len = blen > 0 ? (size_t)blen : 0;
}

int redis_link_start(struct redis_link *l, const char *library)
{
    l->library = library;
    if (uv_timer_init(l->loop, &l->retry_timer) < 0 ||
        uv_timer_init(l->loop, &l->health_timer) < 0 || subs_init(l) < 0)
        return -1;
    l->retry_timer.data = l->health_timer.data = l;
    if (!l->cluster) {
        /* One Redis: a set of one node owning every slot, for good. */
        const struct redis_url *u = &l->cfg->redis_url;
        struct redis_node *n = node_find_or_add(l, u->host, u->port);
        if (!n)
            return -1;
        memset(l->slot_node, 0, sizeof(l->slot_node));
        l->map_ok = 1;
        node_connect(n);
    } else {
        nodeset_refresh_soon(l, 0);
    }
    uv_timer_start(&l->health_timer, on_health_timer, HEALTH_INTERVAL_MS, HEALTH_INTERVAL_MS);
    return 0;
}

void redis_link_stop(struct redis_link *l)
{
    if (l->stopped)
        return;
    l->stopped = 1;
    uv_close((uv_handle_t *)&l->retry_timer, NULL);
    uv_close((uv_handle_t *)&l->health_timer, NULL);
    close_probe(l);
    for (int i = 0; i < REDIS_MAX_NODES; i++) {
        struct redis_node *n = l->nodes[i];
        if (!n)
            continue;
        if (n->sub) {
            n->sub->data = NULL;
            redisAsyncFree(n->sub);
        }
        if (n->cmd) {
            /* Disconnect (not free) lets queued commands (the last
             * presence removals) reach Redis before the socket closes; a
             * connection still in its handshake has none, and waiting for
             * a Redis that does not answer would keep the process alive. */
            n->cmd->data = NULL;
            if (n->cmd_ok)
                redisAsyncDisconnect(n->cmd);
            else
                redisAsyncFree(n->cmd);
        }
        node_free(n);
    }
    subs_free(l);
}
