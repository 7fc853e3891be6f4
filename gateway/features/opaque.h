/* opaque: what a wsi's lws opaque pointer carries for plain HTTP (a
 * publish or presence request, headed by an http_deferred, http_reply.h).
 * The struct starts with its kind, so WSI_DESTROY knows what it is
 * releasing. */
#ifndef NOTIFY_OPAQUE_H
#define NOTIFY_OPAQUE_H

enum opaque_kind {
    OPAQUE_PUBLISH = 2,  /* struct publish_req (publish_api.c) */
    OPAQUE_PRESENCE = 3, /* struct presence_req (presence_api.c) */
};

#endif
