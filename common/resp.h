/* resp: RESP2 replies measured and pub/sub message pushes read in place.
 *
 * The subscriber connection receives one push per published message. Having
 * hiredis parse each into a reply tree (four allocations), look its channel
 * up in its callback table and free it again cost several times what
 * reading the push where it lies costs (BENCHMARKS.md).
 * Subscription confirmations are recognised too (resp_confirmation), for
 * SUBSCRIBE and sharded SSUBSCRIBE alike, so that a subscriber can write
 * its (UN)SUBSCRIBEs itself and keep no per-channel state in hiredis (nor
 * meet hiredis 0.14's abort on an "smessage"). Anything else (errors,
 * other replies) is measured whole, so a caller can hand it on as one
 * reply. */
#ifndef NOTIFY_RESP_H
#define NOTIFY_RESP_H

#include <stddef.h>

struct resp_message {
    const char *channel; /* points into the scanned buffer */
    size_t channel_len;
    const char *payload; /* points into the scanned buffer */
    size_t payload_len;
};

/* Measures the reply that starts at buf[0..len): returns its length in
 * bytes when it is complete, 0 when more bytes are needed, -1 when buf does
 * not start with a RESP2 reply. When the reply is a message push
 * (["message", channel, payload], or "smessage" from a shard) *is_message
 * is set to 1 and msg points at its parts; otherwise *is_message is 0. */
long resp_scan(const char *buf, size_t len, struct resp_message *msg, int *is_message);

struct resp_confirmation {
    int subscribe;       /* 1 for "(s)subscribe", 0 for "(s)unsubscribe" */
    int sharded;         /* 1 for "ssubscribe" and "sunsubscribe" */
    const char *channel; /* points into the reply */
    size_t channel_len;
    long long count; /* channels the connection is subscribed to now */
};

/* Whether the complete reply buf[0..len) (as measured by resp_scan) is a
 * subscription confirmation, ["subscribe", "unsubscribe", "ssubscribe" or
 * "sunsubscribe", channel, count]; if so c points at its parts. A
 * "sunsubscribe" also comes unasked, when the channel's slot moved to
 * another shard. */
int resp_confirmation(const char *buf, size_t len, struct resp_confirmation *c);

#endif
