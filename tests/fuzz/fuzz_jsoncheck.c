/* libFuzzer target: jsoncheck_object, cross-checked against jansson.
 *
 * jsoncheck must never read out of bounds, and must agree with jansson on
 * what a JSON object is, except where jansson is stricter on purpose (lone
 * \u surrogate escapes, a \u0000 in a key, numbers beyond double or
 * json_int_t), where jansson is laxer by mistake (a raw NUL after some
 * numbers) or where jsoncheck bounds the nesting depth. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsoncheck.h"

static int depth_of(const json_t *v)
{
    int max = 0;
    if (json_is_object(v)) {
        const char *key;
        json_t *child;
        json_object_foreach((json_t *)v, key, child)
        {
            int d = depth_of(child);
            if (d > max)
                max = d;
        }
        return max + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *child;
        json_array_foreach(v, i, child)
        {
            int d = depth_of(child);
            if (d > max)
                max = d;
        }
        return max + 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes so ASan flags any read past the end. */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);

    const char *reason = NULL;
    int ok = jsoncheck_object(buf, size, &reason);
    if (ok != 0 && ok != 1)
        abort();
    if (ok && reason)
        abort();
    if (!ok && (!reason || !*reason))
        abort();
    if (jsoncheck_object(buf, size, NULL) != ok)
        abort();

    json_error_t err;
    json_t *root = json_loadb(buf, size, JSON_ALLOW_NUL, &err);
    if (root) {
        int depth = depth_of(root);
        int want = json_is_object(root) && depth <= JSONCHECK_MAX_DEPTH;
        /* jansson 2.14 takes a raw NUL byte right after a number with a
         * fraction or exponent ({"a":1.5\0}); jsoncheck rightly does not. */
        if (want && !ok && memchr(buf, '\0', size))
            want = 0;
        if (ok != want)
            abort(); /* jansson and jsoncheck disagree */
        json_decref(root);
    } else if (ok) {
        enum json_error_code code = json_error_code(&err);
        if (code != json_error_numeric_overflow && code != json_error_null_byte_in_key &&
            !strstr(err.text, "invalid Unicode"))
            abort(); /* jsoncheck accepted what jansson calls malformed */
    }
    free(buf);
    return 0;
}
