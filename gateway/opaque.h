/* opaque: what a wsi's lws opaque pointer carries before a struct conn
 * exists (a handshake's result) or for plain HTTP (a publish request).
 * Every such struct starts with its kind, so WSI_DESTROY knows what to
 * release. */
#ifndef NOTIFY_OPAQUE_H
#define NOTIFY_OPAQUE_H

enum opaque_kind {
    OPAQUE_HANDSHAKE = 1, /* struct handshake (ws.c) */
    OPAQUE_PUBLISH = 2,   /* struct publish_req (publish_api.c) */
};

#endif
