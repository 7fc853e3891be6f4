/* webhook_sender: every entry of a stream (presence events, or the
 * undelivered outbox) POSTed to --webhook-url, signed, at least once, in
 * stream order (README.md "Webhooks"); one sender per stream.
 *
 * The nodes with --webhook-url share the work through the consumer group
 * "notify-webhooks" on the stream, with one sender at a time:
 * the node holding the lease (notify_webhook_lease, WEBHOOK_LEASE_MS,
 * renewed every second). The holder takes over whatever other consumers
 * left pending (XAUTOCLAIM: a killed holder's events), reads its own
 * pending entries, then new ones (XREADGROUP), and POSTs them one by one,
 * XACKing each after a 2xx. A failure (not 2xx, timeout, refused) is
 * retried with capped exponential backoff, the same event first: nothing
 * after it is sent before it, so each account's events arrive in order.
 *
 * Two nodes never send at once: a POST starts only while the lease has
 * more than WEBHOOK_TIMEOUT_MS + 1 s left as this node counts it (from
 * when its renewal was sent, before Redis started the lease's clock), and
 * another node gets the lease only once it expired in Redis. An event
 * whose POST was under way when its sender died is sent again by the next
 * holder: receivers deduplicate by its id (the stream id). */
#ifndef NOTIFY_WEBHOOK_SENDER_H
#define NOTIFY_WEBHOOK_SENDER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rnames.h"
#include "webhook.h"

#define WEBHOOK_LEASE_MS 8000
#define WEBHOOK_TIMEOUT_MS 3000
#define WEBHOOK_GROUP "notify-webhooks"

struct server;
struct webhook_event;

struct webhook_sender {
    struct server *srv;          /* owner */
    int on;                      /* --webhook-url given */
    struct webhook_url url;      /* parsed --webhook-url */
    const char *consumer;        /* this incarnation (presence_events) */
    int undelivered;             /* the undelivered outbox, not presence events */
    char stream[RNAME_MAX];      /* <prefix>presence:events or <prefix>undelivered */
    char lease[RNAME_MAX];       /* <prefix>webhook:{<stream>}:lease, in its slot */
    size_t stream_len;           /* its length */
    uv_timer_t tick;             /* lease renewals, reads, retries */
    uint64_t lease_until;        /* loop ms until which the lease is surely ours; 0 = not held */
    uint64_t next_lease_at;      /* loop ms of the next renewal */
    int lease_asked;             /* a lease call is in flight */
    int group_ready;             /* the group exists */
    int phase;                   /* 0 claim others' pending, 1 own pending, 2 new entries */
    char claim_cursor[48];       /* XAUTOCLAIM's cursor */
    int reading;                 /* a group command is in flight */
    uint64_t idle_until;         /* loop ms before which no new entries are asked for */
    struct webhook_event *queue; /* events read, not yet acknowledged, in order */
    size_t n_queue, head;        /* queue[head..n_queue) are still to send */
    struct webhook_req *post;    /* the POST in flight, NULL = none */
    unsigned attempts;           /* failed POSTs of the head event */
    uint64_t next_try_at;        /* loop ms of the head event's next POST */
    int stopped;                 /* webhook_sender_stop ran */
};

/* One sender per stream: presence events, or (undelivered) the
 * undelivered outbox <prefix>undelivered (README.md "Acknowledgements and
 * the undelivered outbox"). */
int webhook_sender_init(struct webhook_sender *w, struct server *srv, const char *consumer,
                        int undelivered);

/* Redis is (back) up: the group is made now if it is missing, before
 * this node writes events (server.c calls this first), so a first node
 * misses none of its own. A lease held before is given up and none is
 * asked for during WEBHOOK_TIMEOUT_MS + 1 s: Redis may have lost it. Events written before any node
 * with
 * --webhook-url made the group are not sent. */
void webhook_sender_resync(struct webhook_sender *w);

/* Seconds since the oldest event this node holds undelivered was written
 * (0 when none, or when another node is the sender). */
double webhook_sender_oldest_pending(const struct webhook_sender *w);

/* Stops sending (a POST under way is dropped: its event stays pending for
 * the next holder) and gives the lease back. Runs once. */
void webhook_sender_stop(struct webhook_sender *w);

#endif
