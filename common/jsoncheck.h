/* jsoncheck: a strict JSON validator that allocates nothing.
 *
 * It runs on every payload a producer publishes, before the bytes are
 * forwarded untouched to clients, so it must be cheap and must never trust
 * its input: nesting depth is bounded, strings must be valid UTF-8 with
 * valid escapes, numbers follow RFC 8259. */
#ifndef NOTIFY_JSONCHECK_H
#define NOTIFY_JSONCHECK_H

#include <stddef.h>

#define JSONCHECK_MAX_DEPTH 64

/* Returns 1 when buf[0..len) is exactly one JSON object (surrounding
 * whitespace allowed), 0 otherwise; *reason (if not NULL) then names the
 * first problem found. */
int jsoncheck_object(const char *buf, size_t len, const char **reason);

/* Called for each top-level member of an object, in order: key is the raw
 * text between the key's quotes (escapes not decoded), value the raw text
 * of the value (a string with its quotes). */
typedef void (*jsoncheck_member_fn)(void *ctx, const char *key, size_t key_len, const char *value,
                                    size_t value_len);

/* jsoncheck_object that also reports the top-level members to fn, so that
 * a caller can read a few flat fields (a JWT's claims) without building a
 * tree. fn may run before a later part of the text turns out invalid: act
 * on what it saw only when this returns 1. */
int jsoncheck_object_members(const char *buf, size_t len, jsoncheck_member_fn fn, void *ctx,
                             const char **reason);

#endif
