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

#endif
