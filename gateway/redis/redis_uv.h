/* redis_uv: attaches a hiredis async context to our libuv loop.
 *
 * Unlike hiredis's shipped adapters/libuv.h, a poll error (a refused or
 * reset connection) is handed to hiredis as a read or write event, so that
 * hiredis notices the failure and runs the connect/disconnect callbacks;
 * the shipped adapter drops it and the context then hangs forever. */
#ifndef NOTIFY_REDIS_UV_H
#define NOTIFY_REDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

#include "resp.h"

/* Returns 0 on success, -1 if the context could not be attached (it is
 * then still the caller's to free with redisAsyncFree). */
int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

/* Connects to host:port on loop, with data as ac->data. Nothing is
 * queued: the caller sends its handshake (AUTH first). Returns NULL when
 * the context cannot even be created. */
redisAsyncContext *redis_uv_connect(uv_loop_t *loop, const char *host, int port, void *data);

/* Where the replies of a subscriber connection go, all of them read where
 * they lie in the read buffer (valid during the call only) instead of
 * through hiredis's reply tree and channel table (common/resp.h says what
 * that saves): */
struct redis_uv_pushes {
    /* a message push ("message" or "smessage") */
    void (*message)(void *data, const char *channel, size_t channel_len, const char *payload,
                    size_t payload_len);
    /* a subscription confirmation, asked for or (sunsubscribe) pushed */
    void (*confirm)(void *data, const struct resp_confirmation *c);
    /* any other whole reply, as RESP: +OK, +PONG, -ERR ... */
    void (*reply)(void *data, const char *resp, size_t len);
    void *data; /* passed to all three */
};

/* Hands every reply on ac (a subscriber connection) to h, in order;
 * hiredis is given none, so the connection's commands must all be written
 * with redis_uv_send_raw. Bytes that are not RESP fail the connection
 * (the disconnect callback runs). ac must be attached; h must outlive it. */
void redis_uv_take_replies(redisAsyncContext *ac, const struct redis_uv_pushes *h);

/* Queues a command already written as RESP on ac, past hiredis's command
 * table: no callback is registered for it, so its replies must be read in
 * place (redis_uv_take_replies), and hiredis never learns of its
 * channels. Returns 0, or -1 when ac is going away. */
int redis_uv_send_raw(redisAsyncContext *ac, const char *cmd, size_t len);

/* Liveness, for a peer that never closes the socket (a stopped or wedged
 * Redis): mark ac right after queueing a request whose answer is awaited
 * (a PING, a handshake); while it is awaited, redis_uv_stalled says
 * whether the peer is dead: the request left ms ago or more (real time,
 * not the loop's) with nothing read since or waiting to be read, or it
 * cannot leave because the socket is full and the peer took nothing for
 * ms. A request that waits only because this loop is late (a starved
 * process runs its timers before it polls, and one long turn writes long
 * after its uv_now()) is never held against the peer. */
void redis_uv_mark(redisAsyncContext *ac);
int redis_uv_stalled(redisAsyncContext *ac, uint64_t ms);

/* What the liveness check saw on ac, in words, for the log line of a
 * connection it fails: when the request was marked and written, when the
 * peer was last heard, what is still to be written and unread. */
void redis_uv_describe(const redisAsyncContext *ac, char *buf, size_t size);

#endif
