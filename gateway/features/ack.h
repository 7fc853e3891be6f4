/* ack: a client's acknowledgements (README.md "Acknowledgements and the
 * undelivered outbox"), from its session to Redis and the answer back.
 *
 * One ack message is one FCALL notify_ack on the primary of the account's
 * slot (lua/notify.lua): the function decides atomically whether each id
 * is a first acknowledgement (a receipt is written, the deadline cancelled),
 * a repeated one, or an id the account does not have. The client gets
 * {"type":"ack","content":{"body":"<ids Redis knew>"}} and, for unknown
 * ids, an error reply naming them. */
#ifndef NOTIFY_ACK_H
#define NOTIFY_ACK_H

#include <stddef.h>

#include "streamid.h"

struct server;
struct session;

/* s acknowledged ids[0..n). */
void ack_ids(struct server *srv, struct session *s, const struct stream_id *ids, size_t n);

#endif
