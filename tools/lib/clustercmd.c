#include "clustercmd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int clustercmd_parse_redirect(const char *err, const char *from_host, char *host, size_t hsize,
                              int *port, int *ask)
{
    const char *p;
    if (strncmp(err, "MOVED ", 6) == 0)
        *ask = 0, p = err + 6;
    else if (strncmp(err, "ASK ", 4) == 0)
        *ask = 1, p = err + 4;
    else
        return -1;
    p = strchr(p, ' ');
    const char *colon = p ? strrchr(p, ':') : NULL;
    if (!colon)
        return -1;
    size_t hlen = (size_t)(colon - p - 1);
    if (hlen >= hsize)
        return -1;
    if (hlen == 0)
        snprintf(host, hsize, "%s", from_host);
    else
        snprintf(host, hsize, "%.*s", (int)hlen, p + 1);
    char *end;
    errno = 0;
    long v = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end != '\0' || v < 1 || v > 65535)
        return -1;
    *port = (int)v;
    return 0;
}

static void set_error(struct clustercmd *cc, enum clustercmd_error e, const char *why)
{
    cc->error = e;
    snprintf(cc->errstr, sizeof(cc->errstr), "%s", why);
}

/* One command on c: the reply, or NULL with cc->errstr set. */
static redisReply *run_once(struct clustercmd *cc, redisContext *c, const char *cmd, size_t len)
{
    void *reply = NULL;
    if (redisAppendFormattedCommand(c, cmd, len) != REDIS_OK ||
        redisGetReply(c, &reply) != REDIS_OK) {
        set_error(cc, CLUSTERCMD_IO, *c->errstr ? c->errstr : "connection lost");
        freeReplyObject(reply);
        return NULL;
    }
    return reply;
}

static void release(struct clustercmd *cc, redisContext *c)
{
    if (cc->release)
        cc->release(cc->arg, c);
}

redisReply *clustercmd_run(struct clustercmd *cc, const char *cmd, size_t len)
{
    static const char asking[] = "*1\r\n$6\r\nASKING\r\n";
    int ask = 0;
    cc->moved = 0;
    cc->error = CLUSTERCMD_OK;
    cc->errstr[0] = '\0';
    for (int hop = 0;; hop++) {
        redisContext *c = cc->connect(cc->arg, cc->host, cc->port);
        if (!c) {
            set_error(cc, CLUSTERCMD_CONNECT, "cannot connect");
            return NULL;
        }
        if (ask) {
            redisReply *r = run_once(cc, c, asking, sizeof(asking) - 1);
            if (!r || r->type == REDIS_REPLY_ERROR) {
                if (r)
                    set_error(cc, CLUSTERCMD_ASKING, r->str);
                cc->error = CLUSTERCMD_ASKING;
                freeReplyObject(r);
                release(cc, c);
                return NULL;
            }
            freeReplyObject(r);
        }
        redisReply *r = run_once(cc, c, cmd, len);
        release(cc, c);
        if (!r || r->type != REDIS_REPLY_ERROR || cc->max_redirects == 0)
            return r;
        char host[CLUSTERCMD_HOST_MAX];
        int port;
        if (clustercmd_parse_redirect(r->str, cc->host, host, sizeof(host), &port, &ask) < 0)
            return r;
        if (hop == cc->max_redirects) {
            set_error(cc, CLUSTERCMD_REDIRECTS, "too many cluster redirections");
            return r;
        }
        freeReplyObject(r);
        snprintf(cc->host, sizeof(cc->host), "%s", host);
        cc->port = port;
        cc->moved = !ask;
    }
}

redisReply *clustercmd_argv(struct clustercmd *cc, int argc, const char **argv,
                            const size_t *argvlen)
{
    char *cmd = NULL;
    long long len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) {
        set_error(cc, CLUSTERCMD_IO, "out of memory");
        return NULL;
    }
    redisReply *r = clustercmd_run(cc, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return r;
}
