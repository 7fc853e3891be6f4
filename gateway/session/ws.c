#include "ws.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "envelope.h"
#include "history.h"
#include "httphead.h"
#include "log.h"
#include "numfmt.h"
#include "server.h"
#include "streamid.h"
#include "validate.h"
#include "wsframe.h"

/* More error replies than this within ERROR_WINDOW_MS closes with 1008. */
#define ERROR_LIMIT 10
#define ERROR_WINDOW_MS 10000
/* Client frames: a token bucket of CLIENT_BURST frames refilled at
 * CLIENT_RATE per second; a client beyond it is closed with 1008. A real
 * client sends a heartbeat every few seconds. */
#define CLIENT_RATE 20
#define CLIENT_BURST 40

static void schedule_expiry(struct server *srv, struct conn *c);

/* ---- handshake ---- */

/* The client's address: the peer, or behind a trusted proxy the address
 * the proxy appended last to X-Forwarded-For (earlier entries are whatever
 * the client claimed). */
static const char *client_addr(const struct server *srv, const struct conn *c,
                               const struct httphead *h, char *buf, size_t size)
{
    size_t len;
    const char *xff = srv->cfg->trust_proxy && h ? httphead_get(h, "X-Forwarded-For", &len) : NULL;
    if (xff && len) {
        const char *last = xff + len;
        while (last > xff && last[-1] != ',')
            last--;
        while (last < xff + len && *last == ' ')
            last++;
        size_t n = (size_t)(xff + len - last);
        n = n < size - 1 ? n : size - 1;
        memcpy(buf, last, n);
        buf[n] = '\0';
        return buf;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    const void *addr = NULL;
    if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) == 0)
        addr = ss.ss_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                        : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
    if (!addr || !inet_ntop(ss.ss_family, addr, buf, (socklen_t)size))
        snprintf(buf, size, "-");
    return buf;
}

static void reject(struct conn *c, const struct httphead *h, enum reject_reason why, int status,
                   const char *body, const char *detail)
{
    struct server *srv = c->srv;
    char q[160], addr[64];
    srv->metrics.rejected[why]++;
    /* At most one line a second: a flood of bad tokens must not become a
     * flood of log lines. */
    uint64_t now = uv_now(&srv->loop);
    if (log_enabled(LOG_DEBUG) || now - srv->reject_logged_at >= 1000) {
        log_info("handshake_rejected", "status=%d reason=%s client=%s detail=%s suppressed=%llu",
                 status, counters_reject_name(why), client_addr(srv, c, h, addr, sizeof(addr)),
                 log_quote(q, sizeof(q), detail), (unsigned long long)srv->reject_unlogged);
        srv->reject_logged_at = now;
        srv->reject_unlogged = 0;
    } else {
        srv->reject_unlogged++;
    }
    conn_refuse(c, status, body);
}

static int origin_allowed(const struct server *srv, const struct httphead *h)
{
    if (!srv->n_origins)
        return 1;
    size_t len;
    const char *origin = httphead_get(h, "Origin", &len);
    if (!origin)
        return 0;
    for (size_t i = 0; i < srv->n_origins; i++)
        if (strlen(srv->origins[i]) == len && !memcmp(origin, srv->origins[i], len))
            return 1;
    return 0;
}

/* The token from "Authorization: Bearer" or, for browsers, ?token=, copied
 * NUL-terminated into buf. */
static const char *find_token(const struct httphead *h, char *buf, size_t size)
{
    size_t len;
    const char *v = httphead_get(h, "Authorization", &len);
    if (v && len > 7 && !strncasecmp(v, "Bearer ", 7)) {
        v += 7;
        len -= 7;
        while (len && *v == ' ')
            v++, len--;
        if (!len || len >= size)
            return NULL;
        memcpy(buf, v, len);
        buf[len] = '\0';
        return buf;
    }
    return httphead_query_arg(h, "token", buf, size) > 0 ? buf : NULL;
}

static void connected(struct server *srv, struct conn *c, const struct httphead *h,
                      const char *account, int64_t exp, const struct stream_id *since);

void ws_on_head(struct conn *c, const struct httphead *h)
{
    struct server *srv = c->srv;
    size_t klen;
    const char *key = httphead_get(h, "Sec-WebSocket-Key", &klen);
    size_t vlen;
    const char *version = httphead_get(h, "Sec-WebSocket-Version", &vlen);
    if (h->method_len != 3 || memcmp(h->method, "GET", 3) != 0 ||
        !httphead_has_token(h, "Upgrade", "websocket") ||
        !httphead_has_token(h, "Connection", "upgrade") || !version || vlen != 2 ||
        memcmp(version, "13", 2) != 0)
        return reject(c, h, REJECT_UPGRADE, 426,
                      "connect to /ws with a WebSocket upgrade (version 13)\n", "");
    if (!key || !klen)
        return reject(c, h, REJECT_BAD_REQUEST, 400, "missing Sec-WebSocket-Key\n", "");
    if (srv->draining)
        return reject(c, h, REJECT_DRAINING, 503, "node draining\n", "");
    if (!origin_allowed(srv, h))
        return reject(c, h, REJECT_FORBIDDEN, 403, "origin not allowed\n", "");

    char account[ACCOUNT_ID_MAX + 1];
    int64_t exp = 0;
    if (srv->cfg->auth_mode == AUTH_NONE) {
        char id[512];
        int n = httphead_query_arg(h, "user_id", id, sizeof(id));
        if (n <= 0)
            return reject(c, h, REJECT_BAD_REQUEST, 400, "missing user_id\n", "");
        if (!validate_account_id(id, (size_t)n))
            return reject(c, h, REJECT_BAD_REQUEST, 400,
                          "user_id must be 1-128 bytes of [A-Za-z0-9_.@:-]\n", id);
        memcpy(account, id, (size_t)n + 1);
    } else {
        char *buf = srv->token_buf; /* one thread: one buffer for every handshake */
        const char *token = find_token(h, buf, SERVER_TOKEN_MAX);
        const char *why = "missing token";
        int rc = token ? auth_verify(&srv->auth, token, strlen(token), server_wall_ms() / 1000,
                                     account, &exp, &why)
                       : -1;
        if (rc < 0)
            return reject(c, h, REJECT_UNAUTHORIZED, 401, "invalid or missing token\n", why);
    }
    char sbuf[64];
    struct stream_id since = {0, 0};
    int slen = httphead_query_arg(h, "since", sbuf, sizeof(sbuf));
    if (slen != -1 && (slen < 0 || stream_id_parse(sbuf, (size_t)slen, &since) < 0))
        return reject(c, h, REJECT_BAD_REQUEST, 400, "since must be a notification id <ms>-<seq>\n",
                      slen > 0 ? sbuf : "");
    switch (registry_check(&srv->registry, account)) {
    case REGISTRY_NODE_FULL:
        return reject(c, h, REJECT_NODE_FULL, 503, "node full\n", account);
    case REGISTRY_ACCOUNT_FULL:
        return reject(c, h, REJECT_ACCOUNT_FULL, 429, "too many connections for account\n",
                      account);
    case REGISTRY_OK:
        break;
    }
    char accept_key[29];
    if (wsframe_accept_key(key, klen, accept_key) < 0)
        return reject(c, h, REJECT_BAD_REQUEST, 400, "bad Sec-WebSocket-Key\n", "");
    if (conn_upgrade(c, accept_key, httphead_has_token(h, "Sec-WebSocket-Protocol", "notify")) <
        0) {
        conn_destroy(c);
        return;
    }
    connected(srv, c, h, account, exp, slen >= 0 ? &since : NULL);
}

/* ---- registration ---- */

/* Copied piece by piece rather than with a JSON library or snprintf (whose
 * format parsing was ~2,400 instructions of every connect): every value is
 * validated to characters JSON never escapes (account and node ids, hex
 * connection ids, numbers), so none needs escaping; the only escapes are
 * the constant \" of the meta_data string. */
static void send_register(struct conn *c)
{
    struct server *srv = c->srv;
    static const char p_body[] = "{\"type\":\"register\",\"content\":{\"body\":\"";
    static const char p_account[] = "\",\"meta_data\":\"{\\\"account\\\":\\\"";
    static const char p_node[] = "\\\",\\\"node\\\":\\\"";
    static const char p_conn[] = "\\\",\\\"connection_id\\\":\\\"";
    static const char p_interval[] = "\\\",\\\"heartbeat_interval\\\":";
    static const char p_timeout[] = ",\\\"heartbeat_timeout\\\":";
    static const char p_end[] = "}\"}}";
    char interval[20], timeout[20];
    size_t ilen = numfmt_u64(interval, srv->heartbeat_interval_ms / 1000);
    size_t tlen = numfmt_u64(timeout, srv->heartbeat_timeout_ms / 1000);
    const char *node = srv->cfg->node_id;
    size_t idlen = strlen(c->id), alen = strlen(c->acct->id), nlen = strlen(node);
    struct {
        const char *s;
        size_t len;
    } piece[] = {
        {p_body, sizeof(p_body) - 1},         {c->id, idlen},
        {p_account, sizeof(p_account) - 1},   {c->acct->id, alen},
        {p_node, sizeof(p_node) - 1},         {node, nlen},
        {p_conn, sizeof(p_conn) - 1},         {c->id, idlen},
        {p_interval, sizeof(p_interval) - 1}, {interval, ilen},
        {p_timeout, sizeof(p_timeout) - 1},   {timeout, tlen},
        {p_end, sizeof(p_end) - 1},
    };
    char text[1024];
    size_t n = 0;
    for (size_t i = 0; i < sizeof(piece) / sizeof(piece[0]); i++) {
        if (piece[i].len >= sizeof(text) - n) {
            n = 0; /* cannot happen with validated ids */
            break;
        }
        memcpy(text + n, piece[i].s, piece[i].len);
        n += piece[i].len;
    }
    struct frame *f = n ? frame_new(text, n) : NULL;
    if (!f) {
        conn_close(c, 1011);
        return;
    }
    c->registered = 1;
    conn_send(c, f);
    frame_unref(f);
    conn_release_hold(c);
}

/* The account's channel is subscribed (or Redis is down and waiting would
 * not help): the client learns who it is, then gets its history. */
static void conn_ready(struct server *srv, struct conn *c)
{
    if (!c->registered)
        send_register(c);
    /* If Redis cannot run the replay yet (a cluster still connecting to a
     * promoted primary), history retries it; live frames wait meanwhile. */
    if (c->replay_pending)
        history_replay(srv, c);
}

void ws_account_subscribed(struct server *srv, struct account *a)
{
    a->subscribed = 1;
    struct conn *c, *next;
    for (c = a->conns; c; c = next) {
        next = c->acct_next;
        conn_ready(srv, c);
    }
}

void ws_account_lost(struct server *srv, struct account *a)
{
    /* Whatever is published from now until the subscription is back must
     * be replayed: from each connection's last id, or for connections that
     * never got one, from a little before the loss (stream ids are the
     * Redis server's clock, ours may differ slightly). */
    (void)srv;
    uint64_t floor_ms = (uint64_t)server_wall_ms() - 2000;
    a->subscribed = 0;
    for (struct conn *c = a->conns; c; c = c->acct_next) {
        if (c->replay_pending)
            continue;
        c->replay_pending = 1;
        c->replay_exact = c->has_last_id;
        if (c->has_last_id) {
            c->replay_since = c->last_id;
        } else {
            uint64_t from = (uint64_t)c->connected_at - 2000;
            c->replay_since.ms = from > floor_ms ? from : floor_ms;
            c->replay_since.seq = 0;
        }
    }
}

void ws_on_redis_down(struct server *srv)
{
    struct account *a, *tmp;
    HASH_ITER(hh, srv->registry.accounts, a, tmp)
    {
        ws_account_lost(srv, a);
    }
}

static void connected(struct server *srv, struct conn *c, const struct httphead *h,
                      const char *account, int64_t exp, const struct stream_id *since)
{
    c->token_exp = exp;
    c->connected_at = server_wall_ms();
    if (since) {
        c->last_id = c->replay_since = *since;
        c->has_last_id = c->replay_pending = c->replay_exact = 1;
    }
    idgen_next(&srv->ids, c->id, (uint64_t)server_wall_ms());
    int added = registry_add(&srv->registry, c, account);
    if (added < 0) {
        conn_destroy(c);
        return;
    }
    srv->metrics.accepted++;
    c->last_seen = uv_now(&srv->loop);
    hb_schedule(&srv->heartbeat, c, c->last_seen + srv->ping_after_ms);
    schedule_expiry(srv, c);
    presence_add(&srv->presence, c->acct->id, c->id);
    int sub =
        added == 1 ? redis_link_subscribe(&srv->redis, c->acct->id) : (c->acct->subscribed ? 1 : 0);
    if (sub == 1) {
        c->acct->subscribed = 1;
        conn_ready(srv, c);
    } else if (sub < 0 || !redis_link_connected(&srv->redis)) {
        /* Redis is away: answer now rather than keep the client waiting,
         * and replay what it misses once the subscription is back. */
        if (!c->replay_pending) {
            c->replay_pending = 1;
            c->replay_since.ms = (uint64_t)c->connected_at - 2000;
            c->replay_since.seq = 0;
        }
        send_register(c);
    }
    /* Otherwise the 101 and the register reply, which promises that
     * publishes reach this connection, wait for Redis to acknowledge the
     * account's channel (ws_account_subscribed). */
    if (log_enabled(LOG_DEBUG)) {
        char addr[64];
        log_debug("connected", "conn=%s account=%s client=%s", c->id, c->acct->id,
                  client_addr(srv, c, h, addr, sizeof(addr)));
    }
}

/* ---- client frames ---- */

static void client_error(struct conn *c, const char *reason)
{
    struct server *srv = c->srv;
    uint64_t now = uv_now(&srv->loop);
    srv->metrics.client_errors++;
    if (now - c->errors_since > ERROR_WINDOW_MS) {
        c->errors_since = now;
        c->errors = 0;
    }
    if (++c->errors > ERROR_LIMIT) {
        conn_close(c, 1008);
        return;
    }
    conn_send_envelope(c, "error", reason, "");
}

/* {"type":"refresh","content":{"body":"<jwt>"}}: a new token for the same
 * account extends the connection past the old token's exp. */
static void refresh_token(struct conn *c, const char *token)
{
    struct server *srv = c->srv;
    if (srv->cfg->auth_mode != AUTH_JWT) {
        client_error(c, "refresh needs --auth jwt");
        return;
    }
    char account[ACCOUNT_ID_MAX + 1];
    int64_t exp;
    const char *why = "missing token";
    if (!token || auth_verify(&srv->auth, token, strlen(token), server_wall_ms() / 1000, account,
                              &exp, &why) < 0) {
        client_error(c, why);
        return;
    }
    if (strcmp(account, c->acct->id) != 0) {
        client_error(c, "token is for another account");
        return;
    }
    c->token_exp = exp;
    char meta[48];
    snprintf(meta, sizeof(meta), "{\"exp\":%lld}", (long long)exp);
    conn_send_envelope(c, "refresh", "ok", meta);
    schedule_expiry(srv, c);
}

/* Token bucket: returns 0 when the client may send one more frame. */
static int rate_limited(struct conn *c, uint64_t now)
{
    uint64_t cap = (uint64_t)CLIENT_BURST * 1000;
    uint64_t tokens = c->rl_at ? c->rl_tokens + (now - c->rl_at) * CLIENT_RATE : cap;
    c->rl_tokens = (uint32_t)(tokens > cap ? cap : tokens);
    c->rl_at = now;
    if (c->rl_tokens < 1000)
        return 1;
    c->rl_tokens -= 1000;
    return 0;
}

static void client_message(struct conn *c, const char *buf, size_t len)
{
    struct server *srv = c->srv;
    srv->metrics.client_messages++;
    uint64_t now = uv_now(&srv->loop);
    if (rate_limited(c, now)) {
        log_info("client_flood_closed", "conn=%s account=%s", c->id, c->acct->id);
        conn_close(c, 1008);
        return;
    }
    c->last_seen = now;
    /* The message every client sends every few seconds, as our own client
     * and the README spell it: answered without building a JSON tree. */
    static const char heartbeat[] = "{\"type\":\"heartbeat\"}";
    if (len == sizeof(heartbeat) - 1 && !memcmp(buf, heartbeat, len)) {
        conn_send(c, srv->heartbeat_reply);
        return;
    }
    struct client_msg msg;
    const char *reason;
    if (envelope_parse_client(buf, len, &msg, &reason) < 0) {
        client_error(c, reason);
        return;
    }
    if (!strcmp(msg.type, "heartbeat"))
        conn_send(c, srv->heartbeat_reply);
    else if (!strcmp(msg.type, "refresh"))
        refresh_token(c, msg.body);
    else
        client_error(c, "unknown message type");
    client_msg_clear(&msg);
}

void ws_on_message(struct conn *c, int binary, const char *buf, size_t len)
{
    if (binary)
        client_error(c, "binary frames are not supported");
    else if (!validate_utf8(buf, len))
        conn_close(c, 1007); /* RFC 6455 8.1: text must be UTF-8 */
    else
        client_message(c, buf, len);
}

/* ---- heartbeat ---- */

/* Puts c in the expiry wheel for its token's exp (one-second ticks, so
 * the close comes within a second of exp, whatever --heartbeat-check). */
static void schedule_expiry(struct server *srv, struct conn *c)
{
    if (!c->token_exp)
        return;
    int64_t left_ms = c->token_exp * 1000 - server_wall_ms();
    uint64_t now = uv_now(&srv->loop);
    hb_schedule(&srv->expiry, c, left_ms > 0 ? now + (uint64_t)left_ms : now);
}

void ws_expiry_due(void *data, struct conn *c, uint64_t now)
{
    struct server *srv = data;
    (void)now;
    if (conn_timeout(c))
        return; /* a head or a close that never came */
    if (server_wall_ms() / 1000 >= c->token_exp)
        conn_close(c, 4401);
    else
        schedule_expiry(srv, c); /* beyond the wheel's reach, or refreshed */
}

void ws_heartbeat_due(void *data, struct conn *c, uint64_t now)
{
    struct server *srv = data;
    if (c->state != CONN_OPEN)
        return;
    uint64_t silence = now - c->last_seen;
    if (silence >= srv->heartbeat_timeout_ms) {
        log_debug("heartbeat_timeout", "conn=%s silence_ms=%llu", c->id,
                  (unsigned long long)silence);
        conn_close(c, 4408);
        return;
    }
    /* Quiet long enough that the deadline could pass before the next
     * check: a ping, whose pong counts as liveness. */
    if (silence >= srv->ping_after_ms) {
        conn_send(c, srv->ping);
        /* Look again one ping interval from now (its pong will have moved
         * last_seen), or at the deadline if that comes first. */
        uint64_t next = now + srv->ping_after_ms,
                 deadline = c->last_seen + srv->heartbeat_timeout_ms;
        hb_schedule(&srv->heartbeat, c, next < deadline ? next : deadline);
    } else {
        hb_schedule(&srv->heartbeat, c, c->last_seen + srv->ping_after_ms);
    }
}

/* ---- teardown ---- */

void ws_on_gone(struct conn *c)
{
    struct server *srv = c->srv;
    srv->metrics.closed[conn_close_reason(c->close_code)]++;
    hb_cancel(&srv->heartbeat, c);
    hb_cancel(&srv->expiry, c);
    presence_remove(&srv->presence, c->acct->id, c->id);
    char *gone = NULL;
    if (registry_remove(&srv->registry, c, &gone) == 1 && gone) {
        redis_link_unsubscribe(&srv->redis, gone);
        free(gone);
    }
    c->acct = NULL;
    log_debug("disconnected", "conn=%s code=%u", c->id, c->close_code);
    if (srv->draining)
        server_drain_progress(srv);
}
