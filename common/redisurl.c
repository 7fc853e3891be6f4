#include "redisurl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_int(const char *s, size_t len, long lo, long hi, int *out)
{
    char tmp[16];
    if (len == 0 || len >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    for (size_t i = 0; i < len; i++)
        if (tmp[i] < '0' || tmp[i] > '9')
            return -1;
    errno = 0;
    long v = strtol(tmp, NULL, 10);
    if (errno || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

int redis_url_parse(const char *url, struct redis_url *out, char *err, size_t errlen)
{
    static const char scheme[] = "redis://";
    memset(out, 0, sizeof(*out));
    if (strncmp(url, scheme, sizeof(scheme) - 1) != 0) {
        snprintf(err, errlen, "must start with redis://");
        return -1;
    }
    const char *p = url + sizeof(scheme) - 1;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) {
            snprintf(err, errlen, "credentials must be user:password@ (user may be empty)");
            return -1;
        }
        size_t ulen = (size_t)(colon - p), plen = (size_t)(at - colon - 1);
        if (ulen >= sizeof(out->user) || plen >= sizeof(out->password) || plen == 0) {
            snprintf(err, errlen, "bad or too long credentials");
            return -1;
        }
        memcpy(out->user, p, ulen);
        memcpy(out->password, colon + 1, plen);
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    const char *hostport_end = slash ? slash : p + strlen(p);
    const char *colon = NULL;
    for (const char *q = p; q < hostport_end; q++)
        if (*q == ':')
            colon = q;
    if (!colon || colon == p) {
        snprintf(err, errlen, "expected host:port");
        return -1;
    }
    size_t hlen = (size_t)(colon - p);
    if (hlen >= sizeof(out->host)) {
        snprintf(err, errlen, "host too long");
        return -1;
    }
    memcpy(out->host, p, hlen);
    if (parse_int(colon + 1, (size_t)(hostport_end - colon - 1), 1, 65535, &out->port) < 0) {
        snprintf(err, errlen, "bad port");
        return -1;
    }
    out->db = 0;
    if (slash && slash[1] != '\0' &&
        parse_int(slash + 1, strlen(slash + 1), 0, 1000000, &out->db) < 0) {
        snprintf(err, errlen, "bad database number");
        return -1;
    }
    return 0;
}
