#include "server.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "deliver.h"
#include "envelope.h"
#include "history.h"
#include "log.h"
#include "http.h"
#include "ws.h"

/* How long the last presence removals may take before we exit anyway. */
#define STOP_GRACE_MS 2000
#define DRAIN_SLICE_MS 100
/* Token expiries further off than this are rescheduled when it passes. */
#define EXPIRY_WHEEL_MS (10 * 60 * 1000)

int64_t server_wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

int server_ready(const struct server *srv)
{
    return !srv->draining && redis_link_ready(&srv->redis);
}

void server_gauges(const struct server *srv, struct metrics_gauges *g)
{
    g->connections = srv->registry.n_conns;
    g->accounts = srv->registry.n_accounts;
    g->subscribed_accounts = redis_link_subscribed(&srv->redis);
    g->redis_up = redis_link_connected(&srv->redis);
    g->ready = server_ready(srv);
    g->draining = srv->draining;
    g->io_uring = srv->conn_batch != NULL;
}

/* ---- the Redis link's events (redis.h) ---- */

static void on_redis_message(void *data, const char *account, size_t account_len,
                             const char *payload, size_t len)
{
    deliver_account(data, account, account_len, payload, len);
}

static void on_redis_broadcast(void *data, const char *payload, size_t len)
{
    deliver_broadcast(data, payload, len);
}

static void on_redis_subscribed(void *data, const char *account, size_t account_len)
{
    struct server *srv = data;
    struct account *a = registry_find_account(&srv->registry, account, account_len);
    if (a && !a->subscribed)
        ws_account_subscribed(srv, a);
}

static void on_redis_lost(void *data, const char *account, size_t account_len)
{
    struct server *srv = data;
    struct account *a = registry_find_account(&srv->registry, account, account_len);
    if (a)
        ws_account_lost(srv, a);
}

/* Connected again: the library is loaded by now (the link does it on
 * every primary), presence is written again. */
static void on_redis_up(void *data)
{
    struct server *srv = data;
    srv->metrics.redis_reconnects = redis_link_reconnects(&srv->redis);
    presence_resync(&srv->presence);
}

static void on_redis_down(void *data)
{
    ws_on_redis_down(data);
}

/* The Redis link reports to these handlers, and reaches nothing above
 * it otherwise. */
static void redis_wire(struct server *srv)
{
    const struct redis_events ev = {
        .on_message = on_redis_message,
        .on_broadcast = on_redis_broadcast,
        .on_subscribed = on_redis_subscribed,
        .on_lost = on_redis_lost,
        .on_up = on_redis_up,
        .on_down = on_redis_down,
        .data = srv,
    };
    redis_link_init(&srv->redis, &srv->loop, srv->cfg, &ev);
}

/* lws logs through us so that every stderr line is logfmt. */
static void lws_log_emit(int level, const char *line)
{
    char q[512], copy[480];
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    snprintf(copy, sizeof(copy), "%.*s", (int)n, line);
    log_write(level == LLL_ERR ? LOG_ERROR : LOG_WARN, "lws", "line=%s",
              log_quote(q, sizeof(q), copy));
}

static int split_origins(struct server *srv, const char *list)
{
    if (!list || !*list)
        return 0;
    char *copy = strdup(list);
    if (!copy)
        return -1;
    size_t cap = 1;
    for (const char *p = list; *p; p++)
        cap += *p == ',';
    srv->origins = calloc(cap, sizeof(char *));
    if (!srv->origins) {
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
        if (n && !(srv->origins[srv->n_origins++] = strdup(tok))) {
            free(copy);
            return -1;
        }
        if (!n)
            continue;
    }
    free(copy);
    return 0;
}

/* ---- shutdown ---- */

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Final stage: every handle of ours closes and lws lets go of the loop, so
 * uv_run returns (FACTS.md: destroy the context inside the loop, then once
 * more after uv_run). */
static void teardown(struct server *srv)
{
    if (srv->stopping)
        return;
    srv->stopping = 1;
    log_info("stopping", "connections=%u", srv->registry.n_conns);
    uv_signal_stop(&srv->sigterm);
    uv_signal_stop(&srv->sigint);
    close_handle((uv_handle_t *)&srv->sigterm);
    close_handle((uv_handle_t *)&srv->sigint);
    uv_timer_stop(&srv->drain_timer);
    close_handle((uv_handle_t *)&srv->drain_timer);
    listener_close(&srv->listener);
    conn_poll_stop(srv);
    uv_prepare_stop(&srv->flush_prep);
    close_handle((uv_handle_t *)&srv->flush_prep);
    uv_timer_stop(&srv->route_timer);
    close_handle((uv_handle_t *)&srv->route_timer);
    hb_close(&srv->heartbeat);
    hb_close(&srv->expiry);
    presence_stop(&srv->presence, NULL); /* a drain cut short by a second signal */
    history_close(srv);
    redis_link_stop(&srv->redis);
    lws_context_destroy(srv->lws);
}

static void on_presence_stopped(struct server *srv)
{
    teardown(srv);
}

static void on_stop_grace(uv_timer_t *t)
{
    struct server *srv = t->data;
    log_warn("stop_grace_expired", "what=\"presence removal unanswered\"");
    teardown(srv);
}

void server_drain_progress(struct server *srv)
{
    if (!srv->draining || srv->drained || srv->registry.n_conns > 0 ||
        uv_now(&srv->loop) < srv->drain_close_from)
        return;
    srv->drained = 1;
    log_info("drained", NULL);
    uv_timer_stop(&srv->drain_timer);
    uv_timer_start(&srv->drain_timer, on_stop_grace, STOP_GRACE_MS, 0);
    presence_stop(&srv->presence, on_presence_stopped);
}

/* Closes a slice of the connections so all are gone by the deadline: a
 * node of 100,000 sockets must not send them all back to the load
 * balancer in the same millisecond. */
static void on_drain_slice(uv_timer_t *t)
{
    struct server *srv = t->data;
    uint64_t now = uv_now(&srv->loop);
    if (now < srv->drain_close_from)
        return; /* still telling the load balancer (/readyz 503) */
    uint64_t slices =
        now >= srv->drain_deadline ? 1 : (srv->drain_deadline - now) / DRAIN_SLICE_MS + 1;
    uint64_t n = (srv->registry.n_conns + slices - 1) / slices;
    struct conn *c, *tmp;
    HASH_ITER(hh, srv->registry.by_id, c, tmp)
    {
        if (!n)
            break;
        if (c->close_code)
            continue;
        conn_close(c, 1001);
        n--;
    }
    server_drain_progress(srv);
}

void server_drain(struct server *srv)
{
    if (srv->draining) {
        log_warn("second_signal", "action=\"exit now\"");
        teardown(srv);
        return;
    }
    srv->draining = 1;
    /* For --drain-delay the node only answers /readyz 503 and refuses
     * upgrades (503), so a load balancer takes it out of its pool before
     * clients are sent back; then the sockets close in slices over
     * --drain-seconds. The listener stays open for those answers until the
     * end. */
    uint64_t now = uv_now(&srv->loop);
    srv->drain_close_from = now + (uint64_t)srv->cfg->drain_delay * 1000;
    srv->drain_deadline = srv->drain_close_from + (uint64_t)srv->cfg->drain_seconds * 1000;
    log_info("draining", "connections=%u delay=%d seconds=%d", srv->registry.n_conns,
             srv->cfg->drain_delay, srv->cfg->drain_seconds);
    uv_timer_start(&srv->drain_timer, on_drain_slice, 0, DRAIN_SLICE_MS);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct server *srv = h->data;
    log_info("signal", "signum=%d", signum);
    server_drain(srv);
}

/* ---- start ---- */

static void on_flush(uv_prepare_t *h)
{
    conn_flush_all(h->data);
}

static int start_lws(struct server *srv)
{
    lws_set_log_level(log_enabled(LOG_DEBUG) ? (LLL_ERR | LLL_WARN) : LLL_ERR, lws_log_emit);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    /* libuv gives lws epoll; its default poll() loop costs ~9 ms per wait
     * at 20,000 sockets (FACTS.md). Explicit vhosts: a failure to create
     * the vhost is then clean. */
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                   LWS_SERVER_OPTION_VALIDATE_UTF8;
    void *loops[1] = {&srv->loop};
    info.foreign_loops = loops;
    info.user = srv;
    info.max_http_header_data = 8192 + 1024; /* room for an RS256 token */
    info.timeout_secs = 10;                  /* handshakes that stall */
    srv->lws = lws_create_context(&info);
    if (!srv->lws) {
        log_error("lws_context_failed",
                  "hint=\"is libwebsockets-evlib-uv installed? (the libuv event plugin)\"");
        return -1;
    }
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* sockets come from listener.c */
    info.protocols = http_protocols;
    info.vhost_name = "notify";
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
    /* lws's own keepalive keeps every connection in one sorted timer list,
     * walked on each insert: at 15,000 connections it was over half of the
     * CPU of a connect storm (FACTS.md, BENCHMARKS.md). Liveness is ours
     * (heartbeat.c), so lws's is switched off. */
    static const lws_retry_bo_t no_lws_keepalive = {
        .secs_since_valid_ping = 0,
        .secs_since_valid_hangup = 0,
    };
    info.retry_and_idle_policy = &no_lws_keepalive;
    srv->vhost = lws_create_vhost(srv->lws, &info);
    if (!srv->vhost) {
        log_error("lws_vhost_failed", NULL);
        return -1;
    }
    return 0;
}

int server_init(struct server *srv, const struct config *cfg)
{
    memset(srv, 0, sizeof(*srv));
    srv->conn_epfd = srv->conn_gate = srv->conn_wepfd = -1;
    srv->cfg = cfg;
    srv->started_at = server_wall_ms() / 1000;
    srv->heartbeat_timeout_ms = (uint64_t)cfg->heartbeat_timeout * 1000;
    srv->heartbeat_interval_ms = srv->heartbeat_timeout_ms / 2;
    if (srv->heartbeat_interval_ms < 1000)
        srv->heartbeat_interval_ms = 1000;
    /* A ping must go out at least one check (plus a margin for a late
     * tick and the pong's trip) before the deadline, or a client that only
     * answers pings would be closed between two checks; any earlier would
     * ping clients that heartbeat on their own. */
    uint64_t tick_ms = (uint64_t)cfg->heartbeat_check * 1000;
    uint64_t margin = tick_ms / 2 < 1000 ? tick_ms / 2 : 1000;
    srv->ping_after_ms = srv->heartbeat_timeout_ms > tick_ms + margin
                             ? srv->heartbeat_timeout_ms - tick_ms - margin
                             : 0;
    char err[256];
    int rc = uv_loop_init(&srv->loop);
    if (rc < 0) {
        log_error("loop_init_failed", "error=\"%s\"", uv_strerror(rc));
        return -1;
    }
    if (idgen_init(&srv->ids) < 0) {
        log_error("random_failed", "what=getrandom");
        return -1;
    }
    srandom((unsigned)srv->ids.base);
    if (cfg->auth_mode == AUTH_JWT &&
        auth_init(&srv->auth, cfg->jwt_secret, cfg->jwt_public_key, err, sizeof(err)) < 0) {
        log_error("jwt_key_failed", "error=\"%s\"", err);
        return -1;
    }
    redis_wire(srv);
    if (split_origins(srv, cfg->allowed_origins) < 0 || history_init(srv) < 0) {
        log_error("out_of_memory", "where=init");
        return -1;
    }
    size_t len;
    char *hb = envelope_build("heartbeat", "", "", &len);
    srv->heartbeat_reply = hb ? frame_new(hb, len) : NULL;
    free(hb);
    /* The ping's payload makes its pong recognisable in a capture. */
    srv->ping = frame_new_op(WS_OP_PING, "hb", 2);
    /* A partial frame is carried over to the next read, so the buffer holds
     * the largest client frame plus a full read after it. */
    srv->rbuf_size = (size_t)cfg->max_message_bytes + WS_HEADER_MAX + 4 + 64 * 1024;
    srv->rbuf = malloc(srv->rbuf_size);
    srv->wbuf = malloc(CONN_GATHER_MAX);
    srv->token_buf = malloc(SERVER_TOKEN_MAX);
    if (!srv->heartbeat_reply || !srv->ping || !srv->rbuf || !srv->wbuf || !srv->token_buf)
        return -1;
    registry_init(&srv->registry, (uint32_t)cfg->max_connections,
                  (uint32_t)cfg->max_connections_per_account);
    if (start_lws(srv) < 0)
        return -1;
    uv_prepare_init(&srv->loop, &srv->flush_prep);
    srv->flush_prep.data = srv;
    uv_prepare_start(&srv->flush_prep, on_flush);
    uv_unref((uv_handle_t *)&srv->flush_prep);
    uv_timer_init(&srv->loop, &srv->route_timer);
    srv->route_timer.data = srv;
    if ((rc = conn_poll_start(srv)) < 0) {
        log_error("epoll_failed", "error=\"%s\"", uv_strerror(rc));
        return -1;
    }
    if (listener_open(&srv->listener, &srv->loop, srv, cfg->listen_host, cfg->listen_port,
                      cfg->reuse_port, err, sizeof(err)) < 0) {
        log_error("listen_failed", "listen=%s error=\"%s\"", cfg->listen, err);
        return -1;
    }
    if ((rc = hb_init(&srv->heartbeat, &srv->loop, (uint64_t)cfg->heartbeat_check * 1000,
                      srv->heartbeat_timeout_ms + srv->heartbeat_interval_ms,
                      offsetof(struct conn, hb), ws_heartbeat_due, srv)) < 0 ||
        (rc = hb_init(&srv->expiry, &srv->loop, 1000, EXPIRY_WHEEL_MS, offsetof(struct conn, exp),
                      ws_expiry_due, srv)) < 0) {
        log_error("heartbeat_init_failed", "error=\"%s\"", uv_strerror(rc));
        return -1;
    }
    if (presence_init(&srv->presence, srv) < 0 ||
        redis_link_start(&srv->redis, srv->notify_lib) < 0) {
        log_error("timer_init_failed", NULL);
        return -1;
    }
    uv_timer_init(&srv->loop, &srv->drain_timer);
    srv->drain_timer.data = srv;
    uv_signal_init(&srv->loop, &srv->sigterm);
    uv_signal_init(&srv->loop, &srv->sigint);
    srv->sigterm.data = srv->sigint.data = srv;
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    log_info("listening", "listen=%s node=%s auth=%s redis=%s:%d mode=%s version=%s", cfg->listen,
             cfg->node_id, cfg->auth, cfg->redis_url.host, cfg->redis_url.port,
             redis_link_mode(&srv->redis), NOTIFY_VERSION);
    return 0;
}

int server_run(struct server *srv)
{
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    lws_context_destroy(srv->lws);
    srv->lws = NULL;
    /* Let close callbacks queued by the last destroy run. */
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&srv->loop);
    if (rc != 0)
        log_warn("loop_close_busy", "error=\"%s\"", uv_strerror(rc));
    registry_clear(&srv->registry);
    frame_unref(srv->heartbeat_reply);
    frame_unref(srv->ping);
    free(srv->rbuf);
    free(srv->wbuf);
    free(srv->token_buf);
    auth_free(&srv->auth);
    history_free(srv);
    for (size_t i = 0; i < srv->n_origins; i++)
        free(srv->origins[i]);
    free(srv->origins);
    log_info("stopped", NULL);
    return 0;
}
