/* frame: one serialized WebSocket text payload shared by every recipient.
 *
 * A message from Redis is copied once into a frame with LWS_PRE bytes of
 * headroom (lws writes the WebSocket header there), and each recipient's
 * queue holds a reference. The last frame_unref() frees it. Because lws may
 * write the header into the headroom, a frame is written by one connection
 * at a time only; that holds since the whole gateway runs on one thread and
 * lws_write() copies whatever it cannot send at once. */
#ifndef NOTIFY_FRAME_H
#define NOTIFY_FRAME_H

#include <libwebsockets.h>
#include <stddef.h>
#include <stdint.h>

#include "streamid.h"

struct frame {
    uint32_t refs;               /* queues holding this frame */
    uint32_t len;                /* payload bytes after the headroom */
    struct stream_id id;         /* history id, when has_id */
    uint8_t has_id;              /* published by notify_publish */
    uint64_t arrived_ns;         /* uv_hrtime when it came from Redis; 0 = ours */
    unsigned char data[LWS_PRE]; /* headroom; payload follows */
};

/* Returns a frame with one reference holding a copy of payload, or NULL. */
struct frame *frame_new(const void *payload, size_t len);

static inline unsigned char *frame_payload(struct frame *f)
{
    return f->data + LWS_PRE;
}

static inline void frame_ref(struct frame *f)
{
    f->refs++;
}

void frame_unref(struct frame *f);

#endif
