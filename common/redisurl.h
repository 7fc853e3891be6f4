/* redisurl: parses redis://[user:password@]host:port[/db], the form used by
 * --redis in the daemon and in notifyctl. */
#ifndef NOTIFY_REDISURL_H
#define NOTIFY_REDISURL_H

#include <stddef.h>

struct redis_url {
    char host[256];
    int port;
    char user[128];     /* "" when the URL names none (AUTH with password only) */
    char password[256]; /* "" when no AUTH is needed */
    int db;
};

/* Returns 0 on success, -1 with a reason in err otherwise. */
int redis_url_parse(const char *url, struct redis_url *out, char *err, size_t errlen);

#endif
