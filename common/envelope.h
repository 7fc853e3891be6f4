/* envelope: the JSON message shape of README.md "Messages".
 *
 *   {"type":"<string>","content":{"body":"<string>","meta_data":"<string>"}}
 *
 * Server-made messages (register, heartbeat, error, gap) are built here;
 * producer payloads are never rebuilt, only checked (jsoncheck.h) and
 * forwarded byte for byte. */
#ifndef NOTIFY_ENVELOPE_H
#define NOTIFY_ENVELOPE_H

#include <stddef.h>

/* Returns a malloc'd compact JSON envelope (NUL-terminated, length in *len),
 * or NULL when out of memory. body and meta may be NULL for "". */
char *envelope_build(const char *type, const char *body, const char *meta, size_t *len);

/* What a client sent, as far as the gateway cares. */
struct client_msg {
    char type[32]; /* the "type" string, truncated; "" when missing */
    char *body;    /* content.body when it is a string (malloc'd), else NULL */
};

/* Parses a client frame. Returns 0 on success; -1 when it is not a JSON
 * object with a string "type", with *reason set for the error reply. The
 * caller frees msg->body with client_msg_clear(). */
int envelope_parse_client(const char *buf, size_t len, struct client_msg *msg, const char **reason);
void client_msg_clear(struct client_msg *msg);

#endif
