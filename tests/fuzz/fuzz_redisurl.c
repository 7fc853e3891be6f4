/* libFuzzer target: redis_url_parse on the input as a C string. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redisurl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = malloc(size + 1);
    if (!url)
        return 0;
    memcpy(url, data, size);
    url[size] = '\0';

    struct redis_url out;
    char err[64];
    memset(err, 'x', sizeof(err));
    int rc = redis_url_parse(url, &out, err, sizeof(err));
    if (rc == 0) {
        if (strncmp(url, "redis://", 8) != 0)
            abort();
        if (memchr(out.host, '\0', sizeof(out.host)) == NULL || out.host[0] == '\0')
            abort();
        if (memchr(out.user, '\0', sizeof(out.user)) == NULL ||
            memchr(out.password, '\0', sizeof(out.password)) == NULL)
            abort();
        if (out.user[0] && !out.password[0])
            abort(); /* a user always comes with a password */
        if (out.port < 1 || out.port > 65535 || out.db < 0 || out.db > 1000000)
            abort();
        /* the pieces came from the URL */
        if (!strstr(url, out.host) || !strstr(url, out.user) || !strstr(url, out.password))
            abort();
    } else {
        if (rc != -1 || memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0')
            abort();
    }
    /* a zero-sized error buffer is never written */
    char none = 'z';
    rc = redis_url_parse(url, &out, &none, 0);
    if ((rc != 0 && rc != -1) || none != 'z')
        abort();
    free(url);
    return 0;
}
