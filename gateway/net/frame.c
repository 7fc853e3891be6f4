#include "frame.h"

#include <stdlib.h>
#include <string.h>

struct frame *frame_new_op(uint8_t opcode, const void *payload, size_t len)
{
    if (len > UINT32_MAX)
        return NULL;
    struct frame *f = malloc(sizeof(*f) + len);
    if (!f)
        return NULL;
    f->refs = 1;
    f->len = (uint32_t)len;
    f->has_id = 0;
    f->opcode = opcode;
    f->event = FRAME_EVENT_MESSAGE;
    f->arrived_ns = 0;
    f->expires_ms = 0;
    f->sse = NULL;
    if (len)
        memcpy(f->data, payload, len);
    return f;
}

struct frame *frame_new(const void *payload, size_t len)
{
    return frame_new_op(WS_OP_TEXT, payload, len);
}

void frame_unref(struct frame *f)
{
    if (f && --f->refs == 0) {
        frame_unref(f->sse);
        free(f);
    }
}
