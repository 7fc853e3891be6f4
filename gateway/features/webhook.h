/* webhook: one HTTP/1.1 POST on the loop, without blocking it, for the
 * webhook sender (README.md "Webhooks"). Plain http:// only: a receiver
 * behind TLS sits behind a local proxy.
 *
 * A request resolves the host (uv_getaddrinfo), connects, writes the head
 * and body in one write, and reads the answer until its status line and
 * headers are in (Connection: close: one connection per request). Its
 * callback runs exactly once, with the HTTP status, or a negative libuv
 * error (UV_ETIMEDOUT when timeout_ms passed first), unless the request is
 * cancelled; memory is released in the handles' close callbacks. */
#ifndef NOTIFY_WEBHOOK_H
#define NOTIFY_WEBHOOK_H

#include <stddef.h>
#include <uv.h>

struct webhook_url {
    char host[256]; /* as written, without brackets */
    char port[8];   /* decimal, "80" when absent */
    char path[768]; /* "/" when absent; query included */
};

/* Parses "http://host[:port][/path]". 0, or -1 when it is no such URL. */
int webhook_url_parse(const char *url, struct webhook_url *out);

struct webhook_req;

/* status: 100-599 from the answer, or a negative libuv error code. */
typedef void (*webhook_done_cb)(void *data, int status);

/* Starts a POST of body[0..len) to u with the extra header lines headers
 * ("Name: value\r\n"...). Returns the request (for webhook_cancel), or NULL
 * when it could not even start (then cb never runs). */
struct webhook_req *webhook_post(uv_loop_t *loop, const struct webhook_url *u, const char *headers,
                                 const char *body, size_t len, int timeout_ms, webhook_done_cb cb,
                                 void *data);

/* Gives the request up: its callback will not run. */
void webhook_cancel(struct webhook_req *r);

#endif
