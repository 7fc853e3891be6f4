/* http_reply: writing an answer to a plain HTTP request on an lws
 * connection, for the routes of http.c and the publish and presence APIs
 * alike, at once or once the Redis replies it waits for are in. */
#ifndef NOTIFY_HTTP_REPLY_H
#define NOTIFY_HTTP_REPLY_H

#include <jansson.h>
#include <libwebsockets.h>
#include <stddef.h>

#include "opaque.h"

/* Answers a plain HTTP request (status, headers, the whole body; small
 * bodies only: lws buffers what the socket does not take at once) and ends
 * the transaction. Returns what the lws callback must return. */
int http_respond(struct lws *wsi, int status, const char *type, const char *body, size_t len);

/* Writes a complete "HTTP/1.1 <status>" response with a short text body and
 * Connection: close (used to refuse WebSocket upgrades: lws's own helper
 * answers HTTP/1.0, which strict clients reject). Returns 0 or -1. */
int http_write_status(struct lws *wsi, int status, const char *body);

/* An answer decided after the request's callback returned, when the Redis
 * replies it waits for are in: the head of a request struct that is the
 * connection's lws opaque pointer (its kind first, opaque.h). The request
 * is freed once its answer is written, or once its connection is gone and
 * no reply is due any more. */
struct http_deferred {
    enum opaque_kind kind;                     /* what the struct it heads is */
    struct lws *wsi;                           /* NULL once the connection closed */
    unsigned pending;                          /* Redis replies still due */
    int failed;                                /* a command failed */
    int status;                                /* the answer, once decided */
    char *answer;                              /* its JSON body */
    void (*free_req)(struct http_deferred *d); /* frees the struct it heads */
};

/* After a reply (or once every command is queued): 1 when none is due any
 * more and the connection waits, so the caller decides the answer now;
 * else 0, and the request is freed if its connection is gone. */
int http_deferred_due(struct http_deferred *d);

/* Decides the answer: status and body (whose reference it takes); the
 * connection is asked for a write. */
void http_deferred_answer(struct http_deferred *d, int status, json_t *body);

/* LWS_CALLBACK_HTTP_WRITEABLE: writes the answer once decided and frees
 * the request. Returns what the callback must return. */
int http_deferred_writeable(struct lws *wsi, struct http_deferred *d);

/* The connection is going away: the request is freed now, or by the
 * last reply still due. */
void http_deferred_detach(struct http_deferred *d);

#endif
