/* ws-echo: an echo server on the gateway's own transport (gateway/net), for
 * Autobahn|Testsuite (tests/conformance/run.sh). The suite grades a server
 * that sends every text and binary message back unchanged and nothing
 * else; the gateway answers with a register reply first, so it is graded
 * through this instead: the same frames, masking, fragments, UTF-8 checks,
 * control frames and close handshake, with a handler table that echoes.
 *
 *   ws-echo --listen 127.0.0.1:PORT [--max-message-bytes N]
 *
 * Every path is a WebSocket upgrade; there is no frame-rate limit (the
 * suite sends thousands of frames on purpose). Built as a test tool only. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "counters.h"
#include "httphead.h"
#include "net.h"

/* Autobahn's largest messages (cases 9.x) are 16 MiB. */
#define DEFAULT_MAX_MESSAGE (16 * 1024 * 1024)

static void on_head(void *ctx, struct conn *c, const struct httphead *h)
{
    (void)ctx;
    size_t klen;
    const char *key = httphead_get(h, "Sec-WebSocket-Key", &klen);
    char accept[29];
    if (!key || !httphead_has_token(h, "Upgrade", "websocket") ||
        wsframe_accept_key(key, klen, accept) < 0) {
        conn_refuse(c, 400, "a WebSocket upgrade, please\n");
        return;
    }
    if (conn_upgrade(c, accept, 0) < 0) {
        conn_destroy(c);
        return;
    }
    conn_release_hold(c);
}

static void on_message(void *ctx, struct conn *c, int binary, const char *buf, size_t len)
{
    (void)ctx;
    struct frame *f = frame_new_op(binary ? WS_OP_BINARY : WS_OP_TEXT, buf, len);
    if (!f) {
        conn_close(c, 1011);
        return;
    }
    conn_send(c, f);
    frame_unref(f);
}

static void on_alive(void *ctx, struct conn *c)
{
    (void)ctx;
    (void)c;
}

static void on_adopt(void *ctx, int fd)
{
    (void)ctx;
    close(fd); /* only one route: "/" takes every GET, anything else goes */
}

static int usage(void)
{
    fprintf(stderr, "usage: ws-echo --listen HOST:PORT [--max-message-bytes N]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *listen = NULL;
    long max = DEFAULT_MAX_MESSAGE;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--listen") && i + 1 < argc) {
            listen = argv[++i];
        } else if (!strcmp(argv[i], "--max-message-bytes") && i + 1 < argc) {
            char *end;
            max = strtol(argv[++i], &end, 10);
            if (*end || max < 125 || max > 64L * 1024 * 1024) {
                fprintf(stderr, "ws-echo: --max-message-bytes: 125 to 67108864\n");
                return 2;
            }
        } else {
            return usage();
        }
    }
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    if (!colon || colon == listen)
        return usage();
    char host[64];
    snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
    int port = atoi(colon + 1);
    signal(SIGPIPE, SIG_IGN);

    static const struct net_handlers handlers = {
        .on_head = on_head, .on_message = on_message, .on_alive = on_alive};
    const struct net_options opt = {
        .max_message_bytes = (int)max,
        .max_queue_messages = 1 << 20,
        .max_queue_bytes = (int)(4 * max),
        .io_uring = 1,
    };
    static struct metrics metrics;
    static struct net n;
    uv_loop_t loop;
    char err[256];
    if (uv_loop_init(&loop) < 0 || net_init(&n, &loop, &opt, &metrics, on_adopt, NULL) < 0 ||
        net_route(&n, "/", &handlers, NULL) < 0 ||
        net_listen(&n, host, port, 0, err, sizeof(err)) < 0) {
        fprintf(stderr, "ws-echo: cannot listen on %s\n", listen);
        return 1;
    }
    printf("ws-echo listening on %s\n", listen);
    fflush(stdout);
    return uv_run(&loop, UV_RUN_DEFAULT);
}
