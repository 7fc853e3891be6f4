#include "server.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "ack.h"
#include "deliver.h"
#include "envelope.h"
#include "history.h"
#include "http.h"
#include "log.h"

/* How long the last presence removals may take before we exit anyway. */
#define STOP_GRACE_MS 2000
#define DRAIN_SLICE_MS 100

static void drain_progress(struct server *srv);

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
        session_account_subscribed(&srv->sessions, a);
}

static void on_redis_lost(void *data, const char *account, size_t account_len)
{
    struct server *srv = data;
    struct account *a = registry_find_account(&srv->registry, account, account_len);
    if (a)
        session_account_lost(&srv->sessions, a);
}

/* Connected again: the library is loaded by now (the link does it on
 * every primary), presence is written again. */
static void on_redis_up(void *data)
{
    struct server *srv = data;
    srv->metrics.redis_reconnects = redis_link_reconnects(&srv->redis);
    presence_resync(&srv->presence);
    webhook_sender_resync(&srv->wh);
    webhook_sender_resync(&srv->whu);
    presence_events_resync(&srv->pev);
}

static void on_redis_down(void *data)
{
    struct server *srv = data;
    session_redis_down(&srv->sessions);
}

/* ---- the session's hooks ---- */

static int hook_subscribe(void *ctx, const char *account)
{
    struct server *srv = ctx;
    return redis_link_subscribe(&srv->redis, account);
}

static void hook_unsubscribe(void *ctx, const char *account)
{
    struct server *srv = ctx;
    redis_link_unsubscribe(&srv->redis, account);
}

static int hook_redis_up(void *ctx)
{
    struct server *srv = ctx;
    return redis_link_connected(&srv->redis);
}

static void hook_bound(void *ctx, struct session *s, const struct stream_id *since)
{
    struct server *srv = ctx;
    if (since)
        history_resume(srv, s, since);
    presence_add(&srv->presence, s->acct->id, s->id);
    if (s->acct->n_conns == 1)
        presence_events_up(&srv->pev, s->acct->id);
}

static void hook_lost(void *ctx, struct session *s)
{
    history_lost(ctx, s);
}

static void hook_ready(void *ctx, struct session *s)
{
    /* If Redis cannot run the replay yet (a cluster still connecting to a
     * promoted primary), history retries it; live frames wait meanwhile. */
    history_ready(ctx, s);
}

static void hook_unbound(void *ctx, struct session *s)
{
    struct server *srv = ctx;
    presence_remove(&srv->presence, s->acct->id, s->id);
    if (s->acct->n_conns == 1)
        presence_events_down(&srv->pev, s->acct->id);
    history_forget(s);
}

static void hook_ack(void *ctx, struct session *s, const struct stream_id *ids, size_t n)
{
    ack_ids(ctx, s, ids, n);
}

static void hook_left(void *ctx)
{
    struct server *srv = ctx;
    if (srv->draining)
        drain_progress(srv);
}

/* net: every socket whose request is not a WebSocket path of ours goes to
 * lws, unread. */
static void adopt_by_lws(void *ctx, int fd)
{
    struct server *srv = ctx;
    if (!lws_adopt_socket_vhost(srv->vhost, fd))
        log_warn("adopt_failed", "fd=%d", fd); /* lws closed fd */
}

/* A request for lws is screened first (http_screen): lws would drop or
 * misframe what it cannot take, unanswered. */
static int screen_for_lws(void *ctx, int fd, const char **why)
{
    struct server *srv = ctx;
    int verdict = http_screen(fd, srv->http_scratch, why);
    if (verdict == HTTP_SCREEN_WAIT)
        return NET_SCREEN_WAIT;
    return verdict == HTTP_SCREEN_GONE ? NET_SCREEN_GONE : verdict;
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

/* ---- shutdown ---- */

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Final stage: every handle of ours closes and lws lets go of the loop, so
 * uv_run returns (lws on a foreign loop: destroy the context inside the loop,
 * then once more after uv_run). */
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
    net_close(&srv->net);
    session_close(&srv->sessions);
    presence_events_stop(&srv->pev);
    webhook_sender_stop(&srv->wh);
    webhook_sender_stop(&srv->whu);
    presence_stop(&srv->presence, NULL); /* a drain cut short by a second signal */
    history_close(srv);
    outbox_close(srv);
    heap_stop(&srv->heap);
    redis_link_stop(&srv->redis);
    lws_context_destroy(srv->lws);
}

static void on_teardown_timer(uv_timer_t *t)
{
    teardown(t->data);
}

/* May run inside a connection's close (a drain's last one, when Redis is
 * down and the removal cannot even be sent): the teardown closes every
 * connection, that one too, so it waits for the loop's next turn. */
static void on_presence_stopped(struct server *srv)
{
    uv_timer_stop(&srv->drain_timer);
    uv_timer_start(&srv->drain_timer, on_teardown_timer, 0, 0);
}

static void on_stop_grace(uv_timer_t *t)
{
    struct server *srv = t->data;
    log_warn("stop_grace_expired", "what=\"presence removal unanswered\"");
    teardown(srv);
}

static void drain_progress(struct server *srv)
{
    if (!srv->draining || srv->drained || srv->registry.n_conns > 0 ||
        uv_now(&srv->loop) < srv->drain_close_from)
        return;
    srv->drained = 1;
    log_info("drained", NULL);
    uv_timer_stop(&srv->drain_timer);
    uv_timer_start(&srv->drain_timer, on_stop_grace, STOP_GRACE_MS, 0);
    presence_events_stop(&srv->pev);
    webhook_sender_stop(&srv->wh);
    webhook_sender_stop(&srv->whu);
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
    struct session *s, *tmp;
    HASH_ITER(hh, srv->registry.by_id, s, tmp)
    {
        if (!n)
            break;
        if (!session_is_open(s))
            continue;
        session_end(s, 1001);
        n--;
    }
    drain_progress(srv);
}

void server_drain(struct server *srv)
{
    if (srv->draining) {
        log_warn("second_signal", "action=\"exit now\"");
        teardown(srv);
        return;
    }
    srv->draining = 1;
    session_drain(&srv->sessions);
    /* For --drain-delay the node only answers /readyz 503 and refuses
     * upgrades (503), so a load balancer takes it out of its pool before
     * clients are sent back; then the sockets close in slices over
     * --drain-seconds. The listener stays open for those answers until the
     * end, but on a port shared with --reuse-port: there the load balancer
     * sees the port, not this process, and a listener left open would take
     * its share of the new connections only to refuse them, so it closes at
     * once and the siblings take them all (README "Shutdown and deploys"). */
    if (srv->cfg->reuse_port)
        net_unlisten(&srv->net);
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

static int start_lws(struct server *srv)
{
    lws_set_log_level(log_enabled(LOG_DEBUG) ? (LLL_ERR | LLL_WARN) : LLL_ERR, lws_log_emit);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    /* libuv gives lws epoll; its default poll() loop does not scale
     * (README.md, "Why libuv"). Explicit vhosts: a failure to create the
     * vhost is then clean. */
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                   LWS_SERVER_OPTION_VALIDATE_UTF8;
    void *loops[1] = {&srv->loop};
    info.foreign_loops = loops;
    info.user = srv;
    info.max_http_header_data = HTTP_LWS_HEADER_ROOM; /* see HTTP_HEAD_MAX */
    info.timeout_secs = 10;                           /* handshakes that stall */
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
     * walked on each insert, which dominates a connect storm (BENCHMARKS.md).
     * Liveness is ours (session.c), so lws's is switched off. */
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
    srv->cfg = cfg;
    srv->started_at = wallclock_ms() / 1000;
    char err[256];
    int rc = uv_loop_init(&srv->loop);
    if (rc < 0) {
        log_error("loop_init_failed", "error=\"%s\"", uv_strerror(rc));
        return -1;
    }
    const struct net_options opt = {
        .max_message_bytes = cfg->max_message_bytes,
        .max_queue_messages = cfg->max_queue_messages,
        .max_queue_bytes = cfg->max_queue_bytes,
        .input_batch_ms = cfg->input_batch_ms,
        .frames_burst = NET_FRAMES_BURST,
        .frames_per_s = NET_FRAMES_PER_S,
        .io_uring = cfg->io_uring,
    };
    if (!(srv->http_scratch = malloc(HTTP_HEAD_MAX))) {
        log_error("out_of_memory", "where=init");
        return -1;
    }
    if ((rc = net_init(&srv->net, &srv->loop, &opt, &srv->metrics, adopt_by_lws, srv)) < 0) {
        log_error("epoll_failed", "error=\"%s\"", uv_strerror(rc));
        return -1;
    }
    net_set_screen(&srv->net, screen_for_lws);
    registry_init(&srv->registry, (uint32_t)cfg->max_connections,
                  (uint32_t)cfg->max_connections_per_account);
    const struct session_hooks hooks = {
        .ctx = srv,
        .subscribe = hook_subscribe,
        .unsubscribe = hook_unsubscribe,
        .redis_up = hook_redis_up,
        .on_bound = hook_bound,
        .on_lost = hook_lost,
        .on_ready = hook_ready,
        .on_unbound = hook_unbound,
        .on_left = hook_left,
        .on_ack = hook_ack,
    };
    if (session_init(&srv->sessions, &srv->loop, &srv->net, cfg, &srv->registry, &srv->metrics,
                     &hooks) < 0 ||
        sse_init(&srv->sse, &srv->sessions, &srv->net) < 0)
        return -1;
    srandom((unsigned)srv->sessions.ids.base);
    redis_wire(srv);
    if (history_init(srv) < 0 || presence_events_library(&srv->notify_lib) < 0) {
        log_error("out_of_memory", "where=init");
        return -1;
    }
    if (start_lws(srv) < 0)
        return -1;
    if (net_listen(&srv->net, cfg->listen_host, cfg->listen_port, cfg->reuse_port, err,
                   sizeof(err)) < 0) {
        log_error("listen_failed", "listen=%s error=\"%s\"", cfg->listen, err);
        return -1;
    }
    if (presence_init(&srv->presence, srv) < 0 || presence_events_init(&srv->pev, srv) < 0 ||
        webhook_sender_init(&srv->wh, srv, srv->pev.incarnation, 0) < 0 ||
        webhook_sender_init(&srv->whu, srv, srv->pev.incarnation, 1) < 0 ||
        redis_link_start(&srv->redis, srv->notify_lib) < 0 || outbox_init(srv) < 0 ||
        heap_init(&srv->heap, &srv->loop, &srv->metrics) < 0) {
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
    session_free(&srv->sessions);
    net_free(&srv->net);
    free(srv->http_scratch);
    history_free(srv);
    log_info("stopped", NULL);
    return 0;
}
