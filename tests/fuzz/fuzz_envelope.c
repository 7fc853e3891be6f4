/* libFuzzer target: envelope_parse_client on the whole input, then a
 * round trip envelope_build -> jsoncheck_object -> envelope_parse_client on
 * the input split at its first two NUL bytes into type, body and meta. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "jsoncheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';

    struct client_msg msg;
    const char *reason = NULL;
    int rc = envelope_parse_client(buf, size, &msg, &reason);
    if (rc == 0) {
        if (memchr(msg.type, '\0', sizeof(msg.type)) == NULL)
            abort();
    } else {
        if (rc != -1 || !reason || !*reason || msg.body)
            abort();
    }
    client_msg_clear(&msg);

    /* type \0 body \0 meta */
    const char *type = buf;
    const char *body = NULL, *meta = NULL;
    size_t tlen = strlen(type);
    if (tlen < size) {
        body = type + tlen + 1;
        size_t blen = strlen(body);
        if (tlen + 1 + blen < size)
            meta = body + blen + 1;
    }
    size_t len = 0;
    char *out = envelope_build(type, body, meta, &len);
    if (out) {
        if (len != strlen(out) || !jsoncheck_object(out, len, &reason))
            abort();
        if (envelope_parse_client(out, len, &msg, &reason) != 0)
            abort();
        if (strncmp(msg.type, type, sizeof(msg.type) - 1) != 0)
            abort();
        if (!msg.body || strcmp(msg.body, body ? body : "") != 0)
            abort();
        client_msg_clear(&msg);
        free(out);
    }
    free(buf);
    return 0;
}
