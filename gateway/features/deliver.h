/* deliver: a producer's message, from Redis to every local recipient.
 *
 * The hot path: check the payload once (a UTF-8 JSON object, jsoncheck.h),
 * copy it into one shared frame, queue a reference on each recipient.
 * Invalid payloads are counted, logged at most once a second, and never
 * forwarded. */
#ifndef NOTIFY_DELIVER_H
#define NOTIFY_DELIVER_H

#include <stddef.h>

struct server;

/* A message published on an account channel; account is not
 * NUL-terminated. */
void deliver_account(struct server *srv, const char *account, size_t account_len,
                     const char *payload, size_t len);

/* A message published on the broadcast channel. */
void deliver_broadcast(struct server *srv, const char *payload, size_t len);

#endif
