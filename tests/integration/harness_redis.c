/* harness: a private redis-server (harness.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"
#include "harness_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef REDIS_SERVER_BIN
#define REDIS_SERVER_BIN "redis-server"
#endif

/* ---- redis-server ------------------------------------------------------- */

static redisContext *redis_connect(int port)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    struct timeval rtv = {5, 0};
    redisSetTimeout(c, rtv);
    return c;
}

/* Starts redis-server on port; 0 once it answers PING, -1 if it died or
 * did not answer within 5 s (then cleaned up). */
static int redis_spawn(struct h_redis *r, int port)
{
    char ports[16];
    snprintf(ports, sizeof(ports), "%d", port);
    const char *aof = r->aof_dir[0] ? "yes" : "no";
    const char *dir = r->aof_dir[0] ? r->aof_dir : ".";
    const char *argv[] = {REDIS_SERVER_BIN,
                          "--port",
                          ports,
                          "--bind",
                          "127.0.0.1",
                          "--save",
                          "",
                          "--appendonly",
                          aof,
                          "--appendfsync",
                          "always",
                          "--dir",
                          dir,
                          "--daemonize",
                          "no",
                          NULL};
    if (h_proc_spawn(&r->proc, argv, NULL) != 0)
        return -1;
    r->port = port;
    long long deadline = h_mono_ms() + 5000;
    while (h_mono_ms() < deadline && h_proc_running(&r->proc)) {
        redisContext *c = redis_connect(port);
        if (c) {
            redisReply *rep = redisCommand(c, "PING");
            int ok = rep && rep->type == REDIS_REPLY_STATUS && !strcmp(rep->str, "PONG");
            if (rep)
                freeReplyObject(rep);
            redisFree(c);
            if (ok)
                return 0;
        }
        h_sleep_ms(20);
    }
    h_proc_cleanup(&r->proc);
    return -1;
}

static int redis_start(struct h_redis *r)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        int port = h_free_port();
        if (port < 0)
            return -1;
        if (redis_spawn(r, port) == 0)
            return 0;
        /* port taken meanwhile, or too slow: retry with another */
    }
    return -1;
}

int h_redis_start(struct h_redis *r)
{
    r->aof_dir[0] = '\0';
    return redis_start(r);
}

int h_redis_start_aof(struct h_redis *r)
{
    memset(r, 0, sizeof(*r));
    if (h_tmpdir(r->aof_dir) < 0)
        return -1;
    return redis_start(r);
}

int h_redis_restart(struct h_redis *r)
{
    int port = r->port;
    h_proc_cleanup(&r->proc);
    /* the old socket may linger for a moment: retry for a while */
    for (int attempt = 0; attempt < 10; attempt++) {
        if (redis_spawn(r, port) == 0)
            return 0;
        h_sleep_ms(200);
    }
    return -1;
}

void h_redis_stop(struct h_redis *r)
{
    h_proc_cleanup(&r->proc);
}

void h_redis_url(const struct h_redis *r, char *buf, size_t size)
{
    snprintf(buf, size, "redis://127.0.0.1:%d/0", r->port);
}

static redisReply *redis_vcmd(const struct h_redis *r, const char *fmt, va_list ap)
{
    redisContext *c = redis_connect(r->port);
    if (!c)
        return NULL;
    redisReply *rep = redisvCommand(c, fmt, ap);
    redisFree(c);
    return rep;
}

redisReply *h_redis_cmd(const struct h_redis *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redis_vcmd(r, fmt, ap);
    va_end(ap);
    return rep;
}

redisReply *h_redis_cmd_auth(int port, const char *user, const char *pass, const char *fmt, ...)
{
    redisContext *c = redis_connect(port);
    if (!c)
        return NULL;
    if (pass) {
        redisReply *a =
            user ? redisCommand(c, "AUTH %s %s", user, pass) : redisCommand(c, "AUTH %s", pass);
        int ok = a && a->type == REDIS_REPLY_STATUS;
        if (a)
            freeReplyObject(a);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return rep;
}

long long h_redis_int(const struct h_redis *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redis_vcmd(r, fmt, ap);
    va_end(ap);
    long long v = (rep && rep->type == REDIS_REPLY_INTEGER) ? rep->integer : -1;
    if (rep)
        freeReplyObject(rep);
    return v;
}

long long h_redis_publish(const struct h_redis *r, const char *channel, const char *payload,
                          size_t len)
{
    return h_redis_int(r, "PUBLISH %s %b", channel, payload, len);
}

long long h_redis_numsub(const struct h_redis *r, const char *channel)
{
    redisReply *rep = h_redis_cmd(r, "PUBSUB NUMSUB %s", channel);
    long long v = -1;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[1]->type == REDIS_REPLY_INTEGER)
        v = rep->element[1]->integer;
    if (rep)
        freeReplyObject(rep);
    return v;
}

long long h_redis_wait_numsub(const struct h_redis *r, const char *channel, long long want,
                              int timeout_ms)
{
    long long deadline = h_mono_ms() + timeout_ms, v;
    for (;;) {
        v = h_redis_numsub(r, channel);
        if (v == want || h_mono_ms() >= deadline)
            return v;
        h_sleep_ms(50);
    }
}
