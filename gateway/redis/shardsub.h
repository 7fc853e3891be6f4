/* shardsub: one sharded pub/sub connection (SSUBSCRIBE), read with
 * hiredis's RESP reader on a libuv stream of ours.
 *
 * hiredis 0.14's async API aborts on the first ["smessage", ch, payload]
 * (FACTS.md), so these connections do not use it: commands are formatted
 * with redisFormatCommandArgv, written with uv_write, and every reply or
 * push is parsed by a redisReader and handed to on_reply in order.
 *
 * Lifetime: the owner opens it and closes it with shardsub_close(); after
 * that no callback runs and the memory goes away with the libuv handle.
 * When the connection fails, on_state(data, 0, why) runs once and the
 * shardsub closes itself: the owner must forget its pointer then. */
#ifndef NOTIFY_SHARDSUB_H
#define NOTIFY_SHARDSUB_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <uv.h>

struct shardsub;

/* A reply or push; it is freed when the callback returns. */
typedef void shardsub_reply_fn(void *data, redisReply *reply);
/* up = 1 once connected (and AUTH accepted), 0 when lost (then closed). */
typedef void shardsub_state_fn(void *data, int up, const char *why);

/* Starts connecting to host:port (an IP address or a name). user and
 * password may be "" for no AUTH. Returns NULL if it could not start. */
struct shardsub *shardsub_open(uv_loop_t *loop, const char *host, int port, const char *user,
                               const char *password, shardsub_reply_fn *on_reply,
                               shardsub_state_fn *on_state, void *data);

/* Queues one command (sent as soon as connected, coalesced with others
 * queued in the same loop iteration). Returns 0, or -1 when closing or out
 * of memory. */
int shardsub_send(struct shardsub *s, int argc, const char **argv, const size_t *argvlen);

/* Closes without further callbacks. */
void shardsub_close(struct shardsub *s);

#endif
