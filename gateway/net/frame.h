/* frame: one serialized WebSocket payload shared by every recipient.
 *
 * A message from Redis is copied once into a frame, and each recipient's
 * queue holds a reference; output.c writes the WebSocket header from a
 * small per-write scratch array, so the bytes themselves are never copied
 * again nor modified. An event stream's recipients share the frame's
 * event-stream form the same way (f->sse, built once by eventstream.c).
 * The last frame_unref() frees it. */
#ifndef NOTIFY_FRAME_H
#define NOTIFY_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "streamid.h"
#include "wsframe.h"

/* Not a WebSocket opcode: bytes written as they are (the HTTP 101, an
 * event stream's bytes). */
#define FRAME_RAW 0xFF

/* The name a text frame's event carries on an event stream (GET /sse,
 * eventstream.h); WebSocket frames ignore it. */
enum frame_event {
    FRAME_EVENT_MESSAGE = 0, /* a notification: the default event name */
    FRAME_EVENT_REGISTER,    /* the register reply */
    FRAME_EVENT_GAP,         /* history no longer reaches back */
};

struct frame {
    uint32_t refs;        /* queues holding this frame */
    uint32_t len;         /* payload bytes */
    struct stream_id id;  /* history id, when has_id */
    uint8_t has_id;       /* published by notify_publish */
    uint8_t opcode;       /* enum ws_opcode, or FRAME_RAW */
    uint8_t event;        /* enum frame_event */
    uint64_t arrived_ns;  /* uv_hrtime when it came from Redis; 0 = ours */
    int64_t expires_ms;   /* Unix ms of its "expires_at"; 0 = never */
    struct frame *sse;    /* its event-stream form, built for the first stream that gets it */
    unsigned char data[]; /* the payload */
};

/* Returns a text frame with one reference holding a copy of payload, or
 * NULL. */
struct frame *frame_new(const void *payload, size_t len);

/* The same with another opcode (ping, pong, close, FRAME_RAW). */
struct frame *frame_new_op(uint8_t opcode, const void *payload, size_t len);

static inline void frame_ref(struct frame *f)
{
    f->refs++;
}

void frame_unref(struct frame *f);

#endif
