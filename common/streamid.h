/* streamid: Redis stream ids ("<ms>-<seq>"), the history ids of README.md
 * "Resuming", as numbers that compare cheaply. */
#ifndef NOTIFY_STREAMID_H
#define NOTIFY_STREAMID_H

#include <stddef.h>
#include <stdint.h>

struct stream_id {
    uint64_t ms;  /* milliseconds part */
    uint64_t seq; /* sequence part */
};

#define STREAM_ID_MAX 42 /* 20 + 1 + 20 digits and a NUL */

/* Parses s[0..len); returns 0, or -1 when it is not a valid id. */
int stream_id_parse(const char *s, size_t len, struct stream_id *out);

/* <0, 0, >0 like strcmp. */
int stream_id_cmp(const struct stream_id *a, const struct stream_id *b);

/* Writes "<ms>-<seq>" into buf (at least STREAM_ID_MAX bytes). */
void stream_id_format(const struct stream_id *id, char *buf, size_t size);

/* Reads the id of a message published by notify_publish, whose first member
 * is always "id" ({"id":"<ms>-<seq>",...}). Returns 0 and fills out when the
 * payload starts that way, -1 otherwise (plain PUBLISH, no history). */
int stream_id_from_payload(const char *payload, size_t len, struct stream_id *out);

/* Reads "expires_at" (Unix ms) where notify_publish puts it for a message
 * with a ttl: the first member, or the second after "id"
 * ({"id":"<id>","expires_at":<ms>,...}); a producer's own PUBLISH may
 * carry it first too. Returns 0 and fills *ms, or -1 when it is not there. */
int stream_expiry_from_payload(const char *payload, size_t len, int64_t *ms);

#endif
