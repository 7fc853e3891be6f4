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

/* Returns 0 on success, -1 if the context could not be attached (it is
 * then still the caller's to free with redisAsyncFree). */
int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

/* Connects to host:port on loop, with data as ac->data, and queues AUTH
 * (user may be "", password "" for none; auth_cb may be NULL) before any
 * other command. Returns NULL when the context cannot even be created. */
redisAsyncContext *redis_uv_connect(uv_loop_t *loop, const char *host, int port, const char *user,
                                    const char *password, redisCallbackFn *auth_cb, void *data);

/* A pub/sub message: channel and payload point into the read buffer and
 * are valid during the call only. */
typedef void redis_uv_message_fn(void *data, const char *channel, size_t channel_len,
                                 const char *payload, size_t payload_len);

/* A subscription confirmation (subscribe 1, or 0 for unsubscribe) and
 * the number of channels the connection now has; channel as above.
 * Returns 1 when it took the confirmation, 0 to have hiredis handle it
 * (one for a SUBSCRIBE sent through hiredis). */
typedef int redis_uv_confirm_fn(void *data, int subscribe, const char *channel, size_t channel_len,
                                long long count);

/* Message pushes on ac (a subscriber connection) go to on_message, and
 * subscription confirmations to on_confirm (unless NULL), read where they
 * lie in the read buffer instead of through hiredis's reply tree and
 * channel table (common/resp.h says what that saves). Every other reply
 * still reaches hiredis's callbacks, in order. ac must be attached. */
void redis_uv_on_pushes(redisAsyncContext *ac, redis_uv_message_fn *on_message,
                        redis_uv_confirm_fn *on_confirm, void *data);

/* Queues a command already written as RESP on ac, past hiredis's command
 * table: no callback is registered for it, so its replies must be ones
 * that on_confirm takes (an (UN)SUBSCRIBE on a subscriber whose pushes
 * are read in place), and hiredis never learns of its channels. Returns
 * 0, or -1 when ac is going away. */
int redis_uv_send_raw(redisAsyncContext *ac, const char *cmd, size_t len);

/* 1 when reply is the bulk string s (a pub/sub message kind, say). */
int redis_reply_is(const redisReply *reply, const char *s);

#endif
