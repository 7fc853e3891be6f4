#include "ws.h"

#include <stdlib.h>
#include <string.h>

#include "deliver.h"
#include "envelope.h"
#include "history.h"
#include "opaque.h"
#include "publish_api.h"
#include "http.h"
#include "log.h"
#include "server.h"
#include "streamid.h"
#include "validate.h"

/* More error replies than this within ERROR_WINDOW_MS closes with 1008. */
#define ERROR_LIMIT 10
#define ERROR_WINDOW_MS 10000
/* Client frames: a token bucket of CLIENT_BURST frames refilled at
 * CLIENT_RATE per second; a client beyond it is closed with 1008. A real
 * client sends a heartbeat every few seconds. */
#define CLIENT_RATE 20
#define CLIENT_BURST 40
/* Big enough for an RS256 token in a header or the query. */

static void schedule_expiry(struct server *srv, struct conn *c);

static struct server *server_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

/* ---- handshake ---- */

/* The client's address: the peer, or behind a trusted proxy the address
 * the proxy appended last to X-Forwarded-For (earlier entries are whatever
 * the client claimed). */
static const char *client_addr(const struct server *srv, struct lws *wsi, char *buf, size_t size)
{
    if (srv->cfg->trust_proxy) {
        char xff[256];
        int n = lws_hdr_copy(wsi, xff, sizeof(xff), WSI_TOKEN_X_FORWARDED_FOR);
        if (n > 0) {
            const char *last = strrchr(xff, ',');
            last = last ? last + 1 : xff;
            while (*last == ' ')
                last++;
            size_t len = strnlen(last, size - 1);
            memcpy(buf, last, len);
            buf[len] = '\0';
            return buf;
        }
    }
    if (!lws_get_peer_simple(wsi, buf, size))
        snprintf(buf, size, "-");
    return buf;
}

static int reject(struct server *srv, struct lws *wsi, enum reject_reason why, int status,
                  const char *body, const char *detail)
{
    char q[160], addr[64];
    srv->metrics.rejected[why]++;
    /* At most one line a second: a flood of bad tokens must not become a
     * flood of log lines. */
    uint64_t now = uv_now(&srv->loop);
    if (log_enabled(LOG_DEBUG) || now - srv->reject_logged_at >= 1000) {
        log_info("handshake_rejected", "status=%d reason=%s client=%s detail=%s suppressed=%llu",
                 status, metrics_reject_name(why), client_addr(srv, wsi, addr, sizeof(addr)),
                 log_quote(q, sizeof(q), detail), (unsigned long long)srv->reject_unlogged);
        srv->reject_logged_at = now;
        srv->reject_unlogged = 0;
    } else {
        srv->reject_unlogged++;
    }
    http_write_status(wsi, status, body);
    return 1; /* lws closes the connection after our answer */
}

static int origin_allowed(const struct server *srv, struct lws *wsi)
{
    if (!srv->n_origins)
        return 1;
    char origin[512];
    if (lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) <= 0)
        return 0;
    for (size_t i = 0; i < srv->n_origins; i++)
        if (!strcmp(origin, srv->origins[i]))
            return 1;
    return 0;
}

/* The token from "Authorization: Bearer" or, for browsers, ?token=. */
static const char *find_token(struct lws *wsi, char *buf, size_t size)
{
    int n = lws_hdr_copy(wsi, buf, (int)size, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n > 7 && !strncasecmp(buf, "Bearer ", 7)) {
        const char *t = buf + 7;
        while (*t == ' ')
            t++;
        return *t ? t : NULL;
    }
    const char *t = lws_get_urlarg_by_name(wsi, "token=", buf, (int)size);
    return t && *t ? t : NULL;
}

/* What the handshake learned, carried to ESTABLISHED: lws allocates the
 * per-connection struct conn only after the upgrade is confirmed, so this
 * rides on the wsi's opaque pointer and is freed at ESTABLISHED or, for a
 * handshake that never completes, at WSI_DESTROY. */
struct handshake {
    enum opaque_kind kind;            /* OPAQUE_HANDSHAKE */
    int64_t exp;                      /* token exp, 0 without JWT */
    struct stream_id since;           /* ?since=, when has_since */
    int has_since;                    /* resume after since */
    char account[ACCOUNT_ID_MAX + 1]; /* who connects */
};

static int confirm_upgrade(struct server *srv, struct lws *wsi)
{
    char uri[128];
    if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, "/ws") != 0)
        return reject(srv, wsi, REJECT_NOT_FOUND, 404, "not found: connect to /ws\n", uri);
    if (srv->draining)
        return reject(srv, wsi, REJECT_DRAINING, 503, "node draining\n", "");
    if (!origin_allowed(srv, wsi))
        return reject(srv, wsi, REJECT_FORBIDDEN, 403, "origin not allowed\n", "");

    char account[ACCOUNT_ID_MAX + 1];
    int64_t exp = 0;
    if (srv->cfg->auth_mode == AUTH_NONE) {
        char buf[512];
        const char *id = lws_get_urlarg_by_name(wsi, "user_id=", buf, sizeof(buf));
        if (!id || !*id)
            return reject(srv, wsi, REJECT_BAD_REQUEST, 400, "missing user_id\n", "");
        if (!validate_account_id(id, strlen(id)))
            return reject(srv, wsi, REJECT_BAD_REQUEST, 400,
                          "user_id must be 1-128 bytes of [A-Za-z0-9_.@:-]\n", id);
        memcpy(account, id, strlen(id) + 1);
    } else {
        char *buf = srv->token_buf; /* one thread: one buffer for every handshake */
        const char *token = find_token(wsi, buf, SERVER_TOKEN_MAX);
        const char *why = "missing token";
        int rc = token ? auth_verify(&srv->auth, token, strlen(token), server_wall_ms() / 1000,
                                     account, &exp, &why)
                       : -1;

        if (rc < 0)
            return reject(srv, wsi, REJECT_UNAUTHORIZED, 401, "invalid or missing token\n", why);
    }
    char sbuf[64];
    struct stream_id since = {0, 0};
    const char *since_arg = lws_get_urlarg_by_name(wsi, "since=", sbuf, sizeof(sbuf));
    if (since_arg && stream_id_parse(since_arg, strlen(since_arg), &since) < 0)
        return reject(srv, wsi, REJECT_BAD_REQUEST, 400,
                      "since must be a notification id <ms>-<seq>\n", since_arg);
    switch (registry_check(&srv->registry, account)) {
    case REGISTRY_NODE_FULL:
        return reject(srv, wsi, REJECT_NODE_FULL, 503, "node full\n", account);
    case REGISTRY_ACCOUNT_FULL:
        return reject(srv, wsi, REJECT_ACCOUNT_FULL, 429, "too many connections for account\n",
                      account);
    case REGISTRY_OK:
        break;
    }
    struct handshake *hs = malloc(sizeof(*hs));
    if (!hs)
        return reject(srv, wsi, REJECT_NODE_FULL, 503, "out of memory\n", "");
    hs->kind = OPAQUE_HANDSHAKE;
    memcpy(hs->account, account, sizeof(hs->account));
    hs->exp = exp;
    hs->since = since;
    hs->has_since = since_arg != NULL;
    lws_set_opaque_user_data(wsi, hs);
    return 0;
}

/* ---- registration ---- */

/* Written with snprintf rather than a JSON library, once per connect:
 * every value is validated to characters JSON never escapes (account and
 * node ids, hex connection ids, numbers), so none needs escaping. */
static void send_register(struct conn *c)
{
    struct server *srv = c->srv;
    char text[1024];
    int n =
        snprintf(text, sizeof(text),
                 "{\"type\":\"register\",\"content\":{\"body\":\"%s\",\"meta_data\":"
                 "\"{\\\"account\\\":\\\"%s\\\",\\\"node\\\":\\\"%s\\\",\\\"connection_id\\\":"
                 "\\\"%s\\\",\\\"heartbeat_interval\\\":%llu,\\\"heartbeat_timeout\\\":%llu}\"}}",
                 c->id, c->acct->id, srv->cfg->node_id, c->id,
                 (unsigned long long)(srv->heartbeat_interval_ms / 1000),
                 (unsigned long long)(srv->heartbeat_timeout_ms / 1000));
    struct frame *f = n > 0 && (size_t)n < sizeof(text) ? frame_new(text, (size_t)n) : NULL;
    if (!f) {
        conn_close(c, 1011);
        return;
    }
    c->registered = 1;
    conn_send(c, f);
    frame_unref(f);
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

static int established(struct server *srv, struct lws *wsi, struct conn *c)
{
    struct handshake *hs = lws_get_opaque_user_data(wsi);
    if (!hs || !c)
        return -1; /* cannot happen: every upgrade goes through confirm_upgrade */
    lws_set_opaque_user_data(wsi, NULL);
    c->wsi = wsi;
    c->srv = srv;
    c->hb.slot = c->exp.slot = -1;
    c->token_exp = hs->exp;
    c->connected_at = server_wall_ms();
    if (hs->has_since) {
        c->last_id = c->replay_since = hs->since;
        c->has_last_id = c->replay_pending = c->replay_exact = 1;
    }
    idgen_next(&srv->ids, c->id, (uint64_t)server_wall_ms());
    int added = registry_add(&srv->registry, c, hs->account);
    free(hs);
    if (added < 0)
        return -1;
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
    /* Otherwise the register reply, which promises that publishes reach
     * this connection, waits for Redis to acknowledge the account's
     * channel (ws_account_subscribed). */
    if (log_enabled(LOG_DEBUG)) {
        char addr[64];
        log_debug("connected", "conn=%s account=%s client=%s", c->id, c->acct->id,
                  client_addr(srv, wsi, addr, sizeof(addr)));
    }
    return 0;
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

/* A close decided while reading goes through lws's own close handshake
 * (close frame, then the peer's answer is read before the socket closes),
 * so a client still sending does not turn it into a TCP reset. */
static int close_from_receive(struct conn *c, uint16_t code)
{
    const char *text = conn_close_text(code);
    c->close_code = code;
    c->lws_closing = 1;
    lws_close_reason(c->wsi, (enum lws_close_status)code, (unsigned char *)text, strlen(text));
    return -1;
}

static int receive(struct conn *c, const char *in, size_t len)
{
    struct lws *wsi = c->wsi;
    /* Closing already: frames still arriving are dropped. Returning -1 here
     * would cut the close handshake short and reset the socket with the
     * close frame still unread by the client. */
    if (c->close_code)
        return 0;
    size_t max = (size_t)c->srv->cfg->max_message_bytes;
    size_t remaining = lws_remaining_packet_payload(wsi);
    if ((size_t)c->rx_len + len + remaining > max)
        return close_from_receive(c, 1009);
    int final = lws_is_final_fragment(wsi) && remaining == 0;
    if (final && c->rx_len == 0) {
        if (lws_frame_is_binary(wsi))
            client_error(c, "binary frames are not supported");
        else
            client_message(c, in, len);
        return 0;
    }
    /* A message in several pieces: assemble it (bounded by max above). */
    if (!c->rx) {
        c->rx = malloc(max);
        if (!c->rx)
            return -1;
    }
    memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += (uint32_t)len;
    if (final) {
        if (lws_frame_is_binary(wsi))
            client_error(c, "binary frames are not supported");
        else
            client_message(c, c->rx, c->rx_len);
        free(c->rx);
        c->rx = NULL;
        c->rx_len = 0;
    }
    return 0;
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
    if (c->close_code)
        return;
    if (server_wall_ms() / 1000 >= c->token_exp)
        conn_close(c, 4401);
    else
        schedule_expiry(srv, c); /* beyond the wheel's reach, or refreshed */
}

void ws_heartbeat_due(void *data, struct conn *c, uint64_t now)
{
    struct server *srv = data;
    if (c->close_code)
        return;
    uint64_t silence = now - c->last_seen;
    if (silence >= srv->heartbeat_timeout_ms) {
        log_debug("heartbeat_timeout", "conn=%s silence_ms=%llu", c->id,
                  (unsigned long long)silence);
        conn_close(c, 4408);
        return;
    }
    /* Quiet long enough that the deadline could pass before the next
     * check: a ping with a payload, whose pong counts as liveness (an empty
     * pong raises no lws callback). */
    if (silence >= srv->ping_after_ms) {
        c->ping_due = 1;
        lws_callback_on_writable(c->wsi);
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

static void closed(struct server *srv, struct conn *c)
{
    if (c->acct) {
        srv->metrics.closed[conn_close_reason(c->close_code)]++;
        hb_cancel(&srv->heartbeat, c);
        hb_cancel(&srv->expiry, c);
        presence_remove(&srv->presence, c->acct->id, c->id);
        char *gone = NULL;
        if (registry_remove(&srv->registry, c, &gone) == 1 && gone) {
            redis_link_unsubscribe(&srv->redis, gone);
            free(gone);
        }
        log_debug("disconnected", "conn=%s code=%u", c->id, c->close_code);
    }
    conn_free_buffers(c);
    c->wsi = NULL;
    if (srv->draining)
        server_drain_progress(srv);
}

static struct publish_req *publish_of(struct lws *wsi)
{
    enum opaque_kind *kind = lws_get_opaque_user_data(wsi);
    return kind && *kind == OPAQUE_PUBLISH ? (struct publish_req *)kind : NULL;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct conn *c = user;
    struct publish_req *req;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        if (in && !strcmp(in, "/publish"))
            return publish_api_begin(server_of(wsi), wsi);
        return http_handle(server_of(wsi), wsi, in ? (const char *)in : "");
    case LWS_CALLBACK_HTTP_BODY:
        return (req = publish_of(wsi)) ? publish_api_body(server_of(wsi), wsi, req, in, len) : -1;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return (req = publish_of(wsi)) ? publish_api_complete(server_of(wsi), wsi, req) : -1;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return (req = publish_of(wsi)) ? publish_api_writeable(wsi, req) : 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        if (!in || strcmp(in, "websocket") != 0)
            return -1;
        return confirm_upgrade(server_of(wsi), wsi);
    case LWS_CALLBACK_ESTABLISHED:
        return established(server_of(wsi), wsi, c);
    case LWS_CALLBACK_RECEIVE:
        return c && c->acct ? receive(c, in, len) : -1;
    case LWS_CALLBACK_RECEIVE_PONG:
        if (c && c->acct)
            c->last_seen = uv_now(&c->srv->loop);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return c && c->acct ? conn_on_writable(c) : 0;
    case LWS_CALLBACK_CLOSED:
        if (c)
            closed(server_of(wsi), c);
        return 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_WSI_DESTROY: {
        enum opaque_kind *kind = lws_get_opaque_user_data(wsi);
        lws_set_opaque_user_data(wsi, NULL);
        if (kind && *kind == OPAQUE_PUBLISH)
            publish_api_detach((struct publish_req *)kind);
        else
            free(kind);
        return 0;
    }
    default:
        return 0;
    }
}

const struct lws_protocols ws_protocols[] = {
    /* lws allocates rx_buffer_size per connection (FACTS.md: 5.8 KB RSS
     * per idle connection with the default, 2.0 KB with 128). Clients send
     * heartbeats of about 20 bytes; anything longer arrives in pieces and
     * is assembled in receive(). tx_packet_size lifts the send limit that
     * would otherwise follow rx_buffer_size. */
    {"notify", callback, sizeof(struct conn), 128, 0, NULL, 65536},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};
