#include "http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>

#include "demo_client_js.h"
#include "demo_html.h"
#include "health.h"
#include "httphead.h"
#include "opaque.h"
#include "presence_api.h"
#include "publish_api.h"
#include "server.h"

int http_screen(int fd, char *scratch, const char **why)
{
    ssize_t n = recv(fd, scratch, HTTP_HEAD_MAX, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return HTTP_SCREEN_WAIT;
    if (n <= 0)
        return HTTP_SCREEN_GONE;
    int status = httphead_screen(scratch, (size_t)n, HTTP_HEAD_MAX, why);
    return status == HTTPHEAD_INCOMPLETE ? HTTP_SCREEN_WAIT : status;
}

static int text_reply(struct lws *wsi, int status, const char *body)
{
    return http_respond(wsi, status, "text/plain; charset=utf-8", body, strlen(body));
}

static int metrics(struct server *srv, struct lws *wsi)
{
    struct metrics_gauges g;
    health_gauges(srv, &g);
    size_t need = metrics_render(&srv->metrics, &g, NULL, 0) + 1;
    char *buf = malloc(need);
    if (!buf)
        return text_reply(wsi, 503, "out of memory\n");
    size_t len = metrics_render(&srv->metrics, &g, buf, need);
    int rc = http_respond(wsi, 200, "text/plain; version=0.0.4; charset=utf-8", buf, len);
    free(buf);
    return rc;
}

/* GET /demo-config.json: what the demo page needs to know. The API key is
 * handed out only with --auth none, which is for development anyway. */
static int demo_config(struct server *srv, struct lws *wsi)
{
    const struct config *cfg = srv->cfg;
    json_t *o = json_pack("{s:s, s:s, s:b}", "auth", cfg->auth, "node", cfg->node_id, "publish",
                          cfg->api_key && cfg->auth_mode == AUTH_NONE);
    if (o && cfg->api_key && cfg->auth_mode == AUTH_NONE)
        json_object_set_new(o, "api_key", json_string(cfg->api_key));
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text)
        return text_reply(wsi, 503, "out of memory\n");
    int rc = http_respond(wsi, 200, "application/json", text, strlen(text));
    free(text);
    return rc;
}

static int demo(struct server *srv, struct lws *wsi, const char *uri, int *handled)
{
    *handled = 1;
    if (!strcmp(uri, "/") || !strcmp(uri, "/index.html"))
        return http_respond(wsi, 200, "text/html; charset=utf-8", demo_html, strlen(demo_html));
    if (!strcmp(uri, "/notify-client.js"))
        return http_respond(wsi, 200, "text/javascript; charset=utf-8", demo_client_js,
                            strlen(demo_client_js));
    if (!strcmp(uri, "/demo-config.json"))
        return demo_config(srv, wsi);
    *handled = 0;
    return 0;
}

int http_handle(struct server *srv, struct lws *wsi, const char *uri)
{
    int handled = 0;
    if (srv->cfg->demo && lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0) {
        int rc = demo(srv, wsi, uri, &handled);
        if (handled)
            return rc;
    }
    int is_get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
    if (!strcmp(uri, "/healthz"))
        return is_get ? text_reply(wsi, 200, "ok\n") : text_reply(wsi, 405, "use GET\n");
    if (!strcmp(uri, "/readyz")) {
        if (!is_get)
            return text_reply(wsi, 405, "use GET\n");
        if (srv->draining)
            return text_reply(wsi, 503, "draining\n");
        if (!health_ready(srv))
            return text_reply(wsi, 503, "redis not connected or subscriptions not current\n");
        return text_reply(wsi, 200, "ready\n");
    }
    if (!strcmp(uri, "/metrics"))
        return is_get ? metrics(srv, wsi) : text_reply(wsi, 405, "use GET\n");
    if (!strcmp(uri, "/ws"))
        return text_reply(wsi, 400, "WebSocket upgrade required\n");
    return text_reply(wsi, 404, "not found\n");
}

static struct server *server_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

static struct publish_req *publish_of(struct lws *wsi)
{
    enum opaque_kind *kind = lws_get_opaque_user_data(wsi);
    return kind && *kind == OPAQUE_PUBLISH ? (struct publish_req *)kind : NULL;
}

/* A request waiting for its answer (publish or presence), if any. */
static struct http_deferred *deferred_of(struct lws *wsi)
{
    enum opaque_kind *kind = lws_get_opaque_user_data(wsi);
    return kind && (*kind == OPAQUE_PUBLISH || *kind == OPAQUE_PRESENCE)
               ? (struct http_deferred *)kind
               : NULL;
}

/* httphead_body_framing of the head as lws read it (its method and
 * framing headers): gateway/net screens only the first request of a connection,
 * and a later one on a kept-alive connection comes to lws directly. 0, or
 * the status it was refused with; the callback then returns -1, so lws
 * closes the connection and nothing after the head is read as a request. */
static int refuse_framing(struct server *srv, struct lws *wsi)
{
    static const struct {
        enum lws_token_indexes token;
        const char *method;
    } with_body[] = {
        {WSI_TOKEN_POST_URI, "POST"},
#if defined(LWS_WITH_HTTP_UNCOMMON_HEADERS)
        {WSI_TOKEN_PUT_URI, "PUT"},
        {WSI_TOKEN_PATCH_URI, "PATCH"},
#endif
    };
    static const struct {
        enum lws_token_indexes token;
        const char *name;
    } framing[] = {
        {WSI_TOKEN_HTTP_CONTENT_LENGTH, "Content-Length"},
        {WSI_TOKEN_HTTP_TRANSFER_ENCODING, "Transfer-Encoding"},
    };
    struct httphead h = {.method = "GET", .method_len = 3}; /* a method without a body */
    for (size_t i = 0; i < sizeof(with_body) / sizeof(with_body[0]); i++)
        if (lws_hdr_total_length(wsi, with_body[i].token) > 0) {
            h.method = with_body[i].method;
            h.method_len = strlen(h.method);
        }
    char values[2][64];
    for (size_t i = 0; i < 2; i++) {
        if (lws_hdr_total_length(wsi, framing[i].token) <= 0)
            continue;
        struct httphead_field *f = &h.fields[h.n_fields++];
        int n = lws_hdr_copy(wsi, values[i], sizeof(values[i]), framing[i].token);
        f->name = framing[i].name;
        f->name_len = strlen(f->name);
        f->value = n < 0 ? "?" : values[i]; /* longer than any good value */
        f->value_len = n < 0 ? 1 : (size_t)n;
    }
    const char *why = NULL;
    int status = httphead_body_framing(&h, &why);
    if (status) {
        srv->metrics.rejected[REJECT_MALFORMED]++;
        http_write_status(wsi, status, why);
    }
    return status;
}

/* Upgrades reach lws only on paths other than /ws (gateway/net keeps GET /ws). */
static int refuse_upgrade(struct server *srv, struct lws *wsi)
{
    srv->metrics.rejected[REJECT_NOT_FOUND]++;
    http_write_status(wsi, 404, "not found: connect to /ws\n");
    return 1; /* lws closes the connection after our answer */
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct publish_req *req;
    struct http_deferred *d;
    (void)user;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        if (refuse_framing(server_of(wsi), wsi))
            return -1;
        if (in && !strcmp(in, "/publish"))
            return publish_api_begin(server_of(wsi), wsi);
        if (in && !strcmp(in, "/presence"))
            return presence_api_begin(server_of(wsi), wsi);
        return http_handle(server_of(wsi), wsi, in ? (const char *)in : "");
    case LWS_CALLBACK_HTTP_BODY:
        return (req = publish_of(wsi)) ? publish_api_body(server_of(wsi), wsi, req, in, len) : -1;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return (req = publish_of(wsi)) ? publish_api_complete(server_of(wsi), wsi, req) : -1;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return (d = deferred_of(wsi)) ? http_deferred_writeable(wsi, d) : 0;
    case LWS_CALLBACK_TIMER:
        return (req = publish_of(wsi)) ? publish_api_timeout(server_of(wsi), wsi, req) : 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return refuse_upgrade(server_of(wsi), wsi);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_WSI_DESTROY: {
        d = deferred_of(wsi);
        lws_set_opaque_user_data(wsi, NULL);
        if (d)
            http_deferred_detach(d);
        return 0;
    }
    default:
        return 0;
    }
}

const struct lws_protocols http_protocols[] = {
    {"http", callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};
