#include "session.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "httphead.h"
#include "log.h"
#include "net.h"
#include "numfmt.h"
#include "registry.h"
#include "validate.h"
#include "wallclock.h"
#include "wsframe.h"

/* More error replies than this within ERROR_WINDOW_MS closes with 1008. */
#define ERROR_LIMIT 10
#define ERROR_WINDOW_MS 10000

static void open_session(struct session *s);
static void schedule_expiry(struct session *s);

/* From one keep-alive to the next on a transport whose client is silent:
 * within heartbeat_interval, the wheel's ticks allowing. */
static uint64_t keepalive_after(const struct sessions *sx)
{
    uint64_t tick = sx->heartbeat.tick_ms;
    return sx->heartbeat_interval_ms > tick ? sx->heartbeat_interval_ms - tick : 0;
}

/* ---- the connect: head -> checks -> registry -> subscribe ---- */

/* GET /ws: a client that speaks, heartbeats and answers pings. */
static const struct session_transport websocket = {TRANSPORT_WEBSOCKET, 1};

/* The WebSocket handshake's own checks, before the common ones; a failed
 * one refuses c (returns -1). */
static int ws_checks(struct sessions *sx, struct conn *c, const struct httphead *h,
                     const char **key, size_t *klen)
{
    *key = httphead_get(h, "Sec-WebSocket-Key", klen);
    size_t vlen;
    const char *version = httphead_get(h, "Sec-WebSocket-Version", &vlen);
    if (h->method_len != 3 || memcmp(h->method, "GET", 3) != 0 ||
        !httphead_has_token(h, "Upgrade", "websocket") ||
        !httphead_has_token(h, "Connection", "upgrade") || !version || vlen != 2 ||
        memcmp(version, "13", 2) != 0) {
        session_reject(sx, c, h, REJECT_UPGRADE, 426,
                       "connect to /ws with a WebSocket upgrade (version 13)\n", "");
        return -1;
    }
    if (!*key || !*klen) {
        session_reject(sx, c, h, REJECT_BAD_REQUEST, 400, "missing Sec-WebSocket-Key\n", "");
        return -1;
    }
    return 0;
}

/* net's on_head for GET /ws. */
static void on_head(void *ctx, struct conn *c, const struct httphead *h)
{
    struct sessions *sx = ctx;
    struct session_admitted a;
    const char *key;
    size_t klen;
    char accept_key[29];
    if (ws_checks(sx, c, h, &key, &klen) < 0 || session_admit(sx, c, h, NULL, &a) < 0)
        return;
    if (wsframe_accept_key(key, klen, accept_key) < 0) {
        session_reject(sx, c, h, REJECT_BAD_REQUEST, 400, "bad Sec-WebSocket-Key\n", "");
        return;
    }
    /* The 101 is queued but held: it leaves with the register reply. */
    if (conn_upgrade(c, accept_key, httphead_has_token(h, "Sec-WebSocket-Protocol", "notify")) <
        0) {
        conn_destroy(c);
        return;
    }
    session_bind(sx, c, h, &a, &websocket);
}

void session_bind(struct sessions *sx, struct conn *c, const struct httphead *h,
                  const struct session_admitted *a, const struct session_transport *tx)
{
    struct session *s = calloc(1, sizeof(*s));
    if (!s) {
        conn_destroy(c);
        return;
    }
    s->conn = c;
    s->owner = sx;
    s->tx = tx;
    wheel_link_init(&s->hb);
    s->token_exp = a->exp;
    s->connected_at = wallclock_ms();
    if (a->has_since) {
        s->last_id = a->since;
        s->has_last_id = 1;
    }
    idgen_next(&sx->ids, s->id, (uint64_t)wallclock_ms());
    int added = registry_add(sx->registry, s, a->account);
    if (added < 0) {
        free(s);
        conn_destroy(c);
        return;
    }
    conn_set_data(c, s);
    sx->metrics->accepted++;
    sx->metrics->transport[tx->kind].accepted++;
    sx->metrics->transport[tx->kind].open++;
    s->last_seen = s->last_sent = uv_now(sx->loop);
    wheel_schedule(&sx->heartbeat, s,
                   s->last_seen + (tx->client_speaks ? sx->ping_after_ms : keepalive_after(sx)));
    schedule_expiry(s);
    sx->hooks.on_bound(sx->hooks.ctx, s, a->has_since ? &a->since : NULL);
    int sub = added == 1 ? sx->hooks.subscribe(sx->hooks.ctx, s->acct->id)
                         : (s->acct->subscribed ? 1 : 0);
    if (sub == 1) {
        s->acct->subscribed = 1;
        open_session(s);
        sx->hooks.on_ready(sx->hooks.ctx, s);
    } else if (sub < 0 || !sx->hooks.redis_up(sx->hooks.ctx)) {
        /* Redis is away: answer now rather than keep the client waiting,
         * and replay what it misses once the subscription is back. */
        sx->hooks.on_lost(sx->hooks.ctx, s);
        open_session(s);
    }
    /* Otherwise the 101 and the register reply, which promises that
     * publishes reach this connection, wait for Redis to acknowledge the
     * account's channel (session_account_subscribed). */
    if (log_enabled(LOG_DEBUG)) {
        char addr[64];
        log_debug("connected", "conn=%s account=%s client=%s", s->id, s->acct->id,
                  session_client_addr(sx, c, h, addr, sizeof(addr)));
    }
}

/* ---- (subscribed) -> the 101 and the register reply ---- */

/* Queues the register reply behind the held 101 and lets both go: one
 * write opens the connection. Copied piece by piece rather than with a
 * JSON library or snprintf: every value is validated to characters JSON
 * never escapes (account and node ids, hex connection ids, numbers), so
 * none needs escaping; the only escapes are the constant \" of the
 * meta_data string. */
static void open_session(struct session *s)
{
    struct sessions *sx = s->owner;
    if (s->registered)
        return;
    static const char p_body[] = "{\"type\":\"register\",\"content\":{\"body\":\"";
    static const char p_account[] = "\",\"meta_data\":\"{\\\"account\\\":\\\"";
    static const char p_node[] = "\\\",\\\"node\\\":\\\"";
    static const char p_conn[] = "\\\",\\\"connection_id\\\":\\\"";
    static const char p_interval[] = "\\\",\\\"heartbeat_interval\\\":";
    static const char p_timeout[] = ",\\\"heartbeat_timeout\\\":";
    static const char p_end[] = "}\"}}";
    char interval[20], timeout[20];
    size_t ilen = numfmt_u64(interval, sx->heartbeat_interval_ms / 1000);
    size_t tlen = numfmt_u64(timeout, sx->heartbeat_timeout_ms / 1000);
    const char *node = sx->cfg->node_id;
    size_t idlen = strlen(s->id), alen = strlen(s->acct->id), nlen = strlen(node);
    struct {
        const char *s;
        size_t len;
    } piece[] = {
        {p_body, sizeof(p_body) - 1},         {s->id, idlen},
        {p_account, sizeof(p_account) - 1},   {s->acct->id, alen},
        {p_node, sizeof(p_node) - 1},         {node, nlen},
        {p_conn, sizeof(p_conn) - 1},         {s->id, idlen},
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
        conn_close(s->conn, 1011);
        return;
    }
    f->event = FRAME_EVENT_REGISTER;
    s->registered = 1;
    conn_send(s->conn, f);
    frame_unref(f);
    conn_release_hold(s->conn);
}

void session_account_subscribed(struct sessions *sx, struct account *a)
{
    a->subscribed = 1;
    struct session *s, *next;
    for (s = a->conns; s; s = next) {
        next = s->acct_next;
        /* The client learns who it is, then gets what it is owed. */
        open_session(s);
        sx->hooks.on_ready(sx->hooks.ctx, s);
    }
}

void session_account_lost(struct sessions *sx, struct account *a)
{
    a->subscribed = 0;
    for (struct session *s = a->conns; s; s = s->acct_next)
        sx->hooks.on_lost(sx->hooks.ctx, s);
}

void session_redis_down(struct sessions *sx)
{
    struct account *a, *tmp;
    HASH_ITER(hh, sx->registry->accounts, a, tmp)
    {
        session_account_lost(sx, a);
    }
}

/* ---- sending ---- */

int session_send(struct session *s, struct frame *f)
{
    return conn_send(s->conn, f);
}

int session_send_envelope(struct session *s, const char *type, const char *body, const char *meta)
{
    size_t len;
    char *json = envelope_build(type, body, meta, &len);
    struct frame *f = json ? frame_new(json, len) : NULL;
    free(json);
    if (!f) {
        s->owner->metrics->dropped[DROP_NO_MEMORY]++;
        return -1;
    }
    if (!strcmp(type, "gap"))
        f->event = FRAME_EVENT_GAP;
    int rc = conn_send(s->conn, f);
    frame_unref(f);
    return rc;
}

int session_deliver(struct session *s, struct frame *f)
{
    if (!conn_is_open(s->conn))
        return -1;
    if (f->expires_ms && wallclock_ms() >= f->expires_ms) {
        s->owner->metrics->expired++; /* past its ttl (held, or late) */
        return 0;
    }
    if (f->has_id) {
        if (s->has_last_id && stream_id_cmp(&f->id, &s->last_id) <= 0)
            return 0; /* already delivered by a replay */
        s->last_id = f->id;
        s->has_last_id = 1;
    }
    s->last_sent = uv_now(s->owner->loop);
    return conn_send(s->conn, f);
}

int session_is_open(const struct session *s)
{
    return conn_is_open(s->conn);
}

void session_end(struct session *s, uint16_t code)
{
    conn_close(s->conn, code);
}

/* ---- client messages ---- */

static void client_error(struct session *s, const char *reason)
{
    struct sessions *sx = s->owner;
    uint64_t now = uv_now(sx->loop);
    sx->metrics->client_errors++;
    if (now - s->errors_since > ERROR_WINDOW_MS) {
        s->errors_since = now;
        s->errors = 0;
    }
    if (++s->errors > ERROR_LIMIT) {
        conn_close(s->conn, 1008);
        return;
    }
    session_send_envelope(s, "error", reason, "");
}

/* {"type":"refresh","content":{"body":"<jwt>"}}: a new token for the same
 * account extends the connection past the old token's exp. */
static void refresh_token(struct session *s, const char *token)
{
    struct sessions *sx = s->owner;
    if (sx->cfg->auth_mode != AUTH_JWT) {
        client_error(s, "refresh needs --auth jwt");
        return;
    }
    char account[ACCOUNT_ID_MAX + 1];
    int64_t exp;
    const char *why = "missing token";
    if (!token || auth_verify(&sx->auth, token, strlen(token), wallclock_ms() / 1000, account, &exp,
                              &why) < 0) {
        client_error(s, why);
        return;
    }
    if (strcmp(account, s->acct->id) != 0) {
        client_error(s, "token is for another account");
        return;
    }
    s->token_exp = exp;
    char meta[48];
    snprintf(meta, sizeof(meta), "{\"exp\":%lld}", (long long)exp);
    session_send_envelope(s, "refresh", "ok", meta);
    schedule_expiry(s);
}

/* {"type":"ack","content":{"body":"<id>[,<id>...]"}}: the ids of
 * notifications the client has seen, checked here and answered by the
 * hook once Redis has them. */
static void ack_ids(struct session *s, const char *body)
{
    struct stream_id ids[SESSION_ACK_MAX];
    size_t n = 0;
    const char *p = body ? body : "";
    if (!*p) {
        client_error(s, "ack needs content.body: one id or several separated by commas");
        return;
    }
    for (;;) {
        while (*p == ' ')
            p++;
        const char *end = p;
        while (*end && *end != ',' && *end != ' ')
            end++;
        if (n == SESSION_ACK_MAX) {
            client_error(s, "at most 100 ids in one ack");
            return;
        }
        if (stream_id_parse(p, (size_t)(end - p), &ids[n]) < 0) {
            client_error(s, "ack: not a notification id <ms>-<seq>");
            return;
        }
        n++;
        while (*end == ' ')
            end++;
        if (!*end)
            break;
        if (*end != ',') {
            client_error(s, "ack: ids are separated by commas");
            return;
        }
        p = end + 1;
    }
    s->owner->hooks.on_ack(s->owner->hooks.ctx, s, ids, n);
}

static void client_message(struct session *s, const char *buf, size_t len)
{
    struct sessions *sx = s->owner;
    sx->metrics->client_messages++;
    /* The frame rate is net's to limit (1008), for every kind of frame. */
    s->last_seen = uv_now(sx->loop);
    /* The message every client sends every few seconds, as our own client
     * and the README spell it: answered without building a JSON tree. */
    static const char heartbeat[] = "{\"type\":\"heartbeat\"}";
    if (len == sizeof(heartbeat) - 1 && !memcmp(buf, heartbeat, len)) {
        conn_send(s->conn, sx->heartbeat_reply);
        return;
    }
    struct client_msg msg;
    const char *reason;
    if (envelope_parse_client(buf, len, &msg, &reason) < 0) {
        client_error(s, reason);
        return;
    }
    if (!strcmp(msg.type, "heartbeat"))
        conn_send(s->conn, sx->heartbeat_reply);
    else if (!strcmp(msg.type, "refresh"))
        refresh_token(s, msg.body);
    else if (!strcmp(msg.type, "ack"))
        ack_ids(s, msg.body);
    else
        client_error(s, "unknown message type");
    client_msg_clear(&msg);
}

/* net's on_message. */
static void on_message(void *ctx, struct conn *c, int binary, const char *buf, size_t len)
{
    struct session *s = conn_data(c);
    (void)ctx;
    if (!s)
        return;
    if (binary)
        client_error(s, "binary frames are not supported");
    else
        client_message(s, buf, len); /* UTF-8: net has checked (1007) */
}

/* ---- liveness and token expiry ---- */

/* net's on_alive: a ping or a pong. */
static void on_alive(void *ctx, struct conn *c)
{
    struct sessions *sx = ctx;
    struct session *s = conn_data(c);
    if (s)
        s->last_seen = uv_now(sx->loop);
}

/* Sets the connection's timer for its token's exp (one-second ticks, so
 * the close comes within a second of exp, whatever --heartbeat-check). */
static void schedule_expiry(struct session *s)
{
    if (!s->token_exp)
        return;
    int64_t left_ms = s->token_exp * 1000 - wallclock_ms();
    uint64_t now = uv_now(s->owner->loop);
    conn_set_timer(s->conn, left_ms > 0 ? now + (uint64_t)left_ms : now);
}

/* net's on_timeout: the token's exp has come (4401), or is further off. */
static void on_timeout(void *ctx, struct conn *c)
{
    struct session *s = conn_data(c);
    (void)ctx;
    if (!s || !s->token_exp)
        return;
    if (wallclock_ms() / 1000 >= s->token_exp)
        conn_close(c, 4401);
    else
        schedule_expiry(s); /* beyond the wheel's reach, or refreshed */
}

/* The heartbeat wheel's verdict on a due session. */
static void heartbeat_due(void *data, void *item, uint64_t now)
{
    struct sessions *sx = data;
    struct session *s = item;
    if (!conn_is_open(s->conn))
        return;
    if (!s->tx->client_speaks) {
        /* Nothing to hear from: a keep-alive (the ping's form on this
         * transport) keeps proxies from timing the connection out, sent
         * only when the next look would come too late after the last
         * notification: a busy stream gets none (at 20,000/s over 15,000
         * streams, keep-alives for all at once cost a burst of writes
         * that showed in the latency's tail: BENCHMARKS.md). */
        if (now - s->last_sent + sx->heartbeat.tick_ms >= sx->heartbeat_interval_ms) {
            conn_send(s->conn, sx->ping);
            s->last_sent = now;
        }
        wheel_schedule(&sx->heartbeat, s, s->last_sent + keepalive_after(sx));
        return;
    }
    uint64_t silence = now - s->last_seen;
    if (silence >= sx->heartbeat_timeout_ms) {
        log_debug("heartbeat_timeout", "conn=%s silence_ms=%llu", s->id,
                  (unsigned long long)silence);
        conn_close(s->conn, 4408);
        return;
    }
    /* Quiet long enough that the deadline could pass before the next
     * check: a ping, whose pong counts as liveness. */
    if (silence >= sx->ping_after_ms) {
        conn_send(s->conn, sx->ping);
        /* Look again one ping interval from now (its pong will have moved
         * last_seen), or at the deadline if that comes first. */
        uint64_t next = now + sx->ping_after_ms, deadline = s->last_seen + sx->heartbeat_timeout_ms;
        wheel_schedule(&sx->heartbeat, s, next < deadline ? next : deadline);
    } else {
        wheel_schedule(&sx->heartbeat, s, s->last_seen + sx->ping_after_ms);
    }
}

/* ---- teardown ---- */

/* net's on_overflow: the queue went over --max-queue-*; 1013 follows. */
static void on_overflow(void *ctx, struct conn *c, uint32_t frames, uint32_t bytes)
{
    struct session *s = conn_data(c);
    (void)ctx;
    log_info("slow_consumer_closed", "conn=%s account=%s queued=%u bytes=%u", s->id,
             s->acct ? s->acct->id : "-", frames, bytes);
}

/* net's on_gone: the session leaves the registry, presence and the
 * heartbeat wheel. */
static void on_gone(void *ctx, struct conn *c)
{
    struct sessions *sx = ctx;
    struct session *s = conn_data(c);
    uint16_t code = conn_close_code(c);
    sx->metrics->closed[conn_close_reason(code)]++;
    sx->metrics->transport[s->tx->kind].closed[conn_close_reason(code)]++;
    sx->metrics->transport[s->tx->kind].open--;
    wheel_cancel(&sx->heartbeat, s);
    sx->hooks.on_unbound(sx->hooks.ctx, s);
    char *gone = NULL;
    if (registry_remove(sx->registry, s, &gone) == 1 && gone) {
        sx->hooks.unsubscribe(sx->hooks.ctx, gone);
        free(gone);
    }
    s->acct = NULL;
    log_debug("disconnected", "conn=%s code=%u", s->id, code);
    sx->hooks.on_left(sx->hooks.ctx);
}

/* net's on_free: the socket is freed, and its session with it. */
static void on_free(void *ctx, void *data)
{
    (void)ctx;
    free(data);
}

const struct net_handlers session_ws_handlers = {
    .on_head = on_head,
    .on_message = on_message,
    .on_alive = on_alive,
    .on_timeout = on_timeout,
    .on_overflow = on_overflow,
    .on_gone = on_gone,
    .on_free = on_free,
};

/* ---- the layer ---- */

static int split_origins(struct sessions *sx, const char *list)
{
    if (!list || !*list)
        return 0;
    char *copy = strdup(list);
    if (!copy)
        return -1;
    size_t cap = 1;
    for (const char *p = list; *p; p++)
        cap += *p == ',';
    sx->origins = calloc(cap, sizeof(char *));
    if (!sx->origins) {
        free(copy);
        return -1;
    }
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        size_t n = strlen(tok);
        while (n && tok[n - 1] == ' ')
            tok[--n] = '\0';
        if (n && !(sx->origins[sx->n_origins++] = strdup(tok))) {
            free(copy);
            return -1;
        }
    }
    free(copy);
    return 0;
}

int session_init(struct sessions *sx, uv_loop_t *loop, struct net *net, const struct config *cfg,
                 struct registry *registry, struct metrics *metrics,
                 const struct session_hooks *hooks)
{
    memset(sx, 0, sizeof(*sx));
    sx->cfg = cfg;
    sx->loop = loop;
    sx->registry = registry;
    sx->metrics = metrics;
    sx->hooks = *hooks;
    sx->heartbeat_timeout_ms = (uint64_t)cfg->heartbeat_timeout * 1000;
    sx->heartbeat_interval_ms = sx->heartbeat_timeout_ms / 2;
    if (sx->heartbeat_interval_ms < 1000)
        sx->heartbeat_interval_ms = 1000;
    /* A ping must go out at least one check (plus a margin for a late
     * tick and the pong's trip) before the deadline, or a client that only
     * answers pings would be closed between two checks; any earlier would
     * ping clients that heartbeat on their own. */
    uint64_t tick_ms = (uint64_t)cfg->heartbeat_check * 1000;
    uint64_t margin = tick_ms / 2 < 1000 ? tick_ms / 2 : 1000;
    sx->ping_after_ms = sx->heartbeat_timeout_ms > tick_ms + margin
                            ? sx->heartbeat_timeout_ms - tick_ms - margin
                            : 0;
    char err[256];
    if (idgen_init(&sx->ids) < 0) {
        log_error("random_failed", "what=getrandom");
        return -1;
    }
    if (cfg->auth_mode == AUTH_JWT &&
        auth_init(&sx->auth, cfg->jwt_secret, cfg->jwt_public_key, err, sizeof(err)) < 0) {
        log_error("jwt_key_failed", "error=\"%s\"", err);
        return -1;
    }
    size_t len;
    char *hb = envelope_build("heartbeat", "", "", &len);
    sx->heartbeat_reply = hb ? frame_new(hb, len) : NULL;
    free(hb);
    /* The ping's payload makes its pong recognisable in a capture. */
    sx->ping = frame_new_op(WS_OP_PING, "hb", 2);
    sx->token_buf = malloc(SESSION_TOKEN_MAX);
    if (!sx->heartbeat_reply || !sx->ping || !sx->token_buf ||
        split_origins(sx, cfg->allowed_origins) < 0) {
        log_error("out_of_memory", "where=init");
        return -1;
    }
    int rc = wheel_init(&sx->heartbeat, loop, tick_ms,
                        sx->heartbeat_timeout_ms + sx->heartbeat_interval_ms,
                        offsetof(struct session, hb), heartbeat_due, sx);
    if (rc < 0) {
        log_error("heartbeat_init_failed", "error=\"%s\"", uv_strerror(rc));
        return -1;
    }
    rc = net_route(net, "/ws", &session_ws_handlers, sx);
    assert(rc == 0); /* the first route */
    (void)rc;
    return 0;
}

void session_drain(struct sessions *sx)
{
    sx->draining = 1;
}

void session_close(struct sessions *sx)
{
    wheel_close(&sx->heartbeat);
}

void session_free(struct sessions *sx)
{
    frame_unref(sx->heartbeat_reply);
    frame_unref(sx->ping);
    sx->heartbeat_reply = sx->ping = NULL;
    free(sx->token_buf);
    sx->token_buf = NULL;
    auth_free(&sx->auth);
    for (size_t i = 0; i < sx->n_origins; i++)
        free(sx->origins[i]);
    free(sx->origins);
    sx->origins = NULL;
    sx->n_origins = 0;
}
