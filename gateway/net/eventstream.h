/* eventstream: the bytes of a Server-Sent Events stream (GET /sse; README.md,
 * "Server-Sent Events").
 *
 * A notification reaches a stream as the same shared frame a WebSocket
 * gets; its event-stream form ("id: <stream id>", "data: <envelope>", a
 * blank line) is built once, by the first stream that needs it, kept with
 * the frame (f->sse) and shared by every other stream, as the frame is.
 * Pure: builds bytes, writes nothing. */
#ifndef NOTIFY_EVENTSTREAM_H
#define NOTIFY_EVENTSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

/* Browsers reconnect this long after a stream ends (the retry: field). */
#define EVENTSTREAM_RETRY_MS 2000
/* Longest Origin echoed in Access-Control-Allow-Origin. */
#define EVENTSTREAM_ORIGIN_MAX 256

/* f's event-stream form, a FRAME_RAW frame owned by f (take a reference
 * to keep it): a text frame becomes an event, a ping a keep-alive comment.
 * Returns NULL when f has no such form (a pong, a WebSocket close) or
 * memory ran out (*no_memory set). */
struct frame *eventstream_form(struct frame *f, int *no_memory);

/* A new FRAME_RAW frame: "event: close" with code and reason, the last
 * event of a stream. NULL when out of memory. */
struct frame *eventstream_close(uint16_t code, const char *reason);

/* Writes the 200 head that opens a stream, then the retry: field, into
 * buf. origin (olen bytes, or NULL) is echoed for cross-origin pages.
 * Returns the length, or 0 when it does not fit. */
size_t eventstream_head(char *buf, size_t size, const char *origin, size_t olen);

#endif
