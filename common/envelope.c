#include "envelope.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *envelope_build(const char *type, const char *body, const char *meta, size_t *len)
{
    json_t *msg = json_pack("{s:s, s:{s:s, s:s}}", "type", type, "content", "body",
                            body ? body : "", "meta_data", meta ? meta : "");
    if (!msg)
        return NULL;
    char *out = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(msg);
    if (out && len)
        *len = strlen(out);
    return out;
}

int envelope_parse_client(const char *buf, size_t len, struct client_msg *msg, const char **reason)
{
    memset(msg, 0, sizeof(*msg));
    json_error_t err;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        *reason = "message is not valid JSON";
        return -1;
    }
    int rc = -1;
    json_t *type = json_object_get(root, "type");
    if (!json_is_object(root)) {
        *reason = "message is not a JSON object";
    } else if (!json_is_string(type)) {
        *reason = "message has no string \"type\"";
    } else {
        snprintf(msg->type, sizeof(msg->type), "%s", json_string_value(type));
        json_t *body = json_object_get(json_object_get(root, "content"), "body");
        if (json_is_string(body))
            msg->body = strdup(json_string_value(body));
        rc = 0;
    }
    json_decref(root);
    return rc;
}

void client_msg_clear(struct client_msg *msg)
{
    free(msg->body);
    msg->body = NULL;
}
