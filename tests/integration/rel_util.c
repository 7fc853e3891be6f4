#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "rel_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

long long r_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int left(long long deadline)
{
    long long r = deadline - h_mono_ms();
    return r < 0 ? 0 : (int)r;
}

int r_tcp_connect(int port, int timeout_ms)
{
    long long deadline = h_mono_ms() + timeout_ms;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (errno != EINPROGRESS)
            goto fail;
        struct pollfd pfd = {fd, POLLOUT, 0};
        if (poll(&pfd, 1, left(deadline)) != 1)
            goto fail;
        int soerr = 0;
        socklen_t l = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l) != 0 || soerr != 0)
            goto fail;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
fail:
    close(fd);
    return -1;
}

int r_send_all(int fd, const void *buf, size_t len, int timeout_ms)
{
    long long deadline = h_mono_ms() + timeout_ms;
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        struct pollfd pfd = {fd, POLLOUT, 0};
        if (poll(&pfd, 1, left(deadline)) != 1)
            return -1;
    }
    return 0;
}

int r_read_until_closed(int fd, int timeout_ms, char *keep, size_t cap, size_t *got)
{
    long long deadline = h_mono_ms() + timeout_ms;
    size_t kept = 0;
    char buf[16384];
    int closed = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            closed = 1;
            break;
        }
        if (n > 0) {
            if (keep && kept < cap) {
                size_t k = (size_t)n < cap - kept ? (size_t)n : cap - kept;
                memcpy(keep + kept, buf, k);
                kept += k;
            }
            continue;
        }
        struct pollfd pfd = {fd, POLLIN, 0};
        int pr = poll(&pfd, 1, left(deadline));
        if (pr == 0)
            break;
    }
    if (got)
        *got = kept;
    return closed;
}

int r_ws_frame(struct ws *c, int fin, int opcode, const void *data, size_t len)
{
    if (c->fd < 0)
        return -1;
    unsigned char *frame = malloc(14 + len);
    if (!frame)
        return -1;
    size_t h = 0;
    frame[h++] = (unsigned char)((fin ? 0x80 : 0) | (opcode & 0x0f));
    if (len < 126) {
        frame[h++] = (unsigned char)(0x80 | len);
    } else if (len <= 0xffff) {
        frame[h++] = 0x80 | 126;
        frame[h++] = (unsigned char)(len >> 8);
        frame[h++] = (unsigned char)len;
    } else {
        frame[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            frame[h++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    unsigned char mask[4];
    if (getrandom(mask, 4, 0) != 4)
        memset(mask, 0x5a, 4);
    memcpy(frame + h, mask, 4);
    h += 4;
    const unsigned char *d = data;
    for (size_t i = 0; i < len; i++)
        frame[h + i] = d[i] ^ mask[i & 3];
    int rc = r_send_all(c->fd, frame, h + len, 5000);
    free(frame);
    return rc;
}

long r_rss_kb(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    char *s = h_read_file(path);
    if (!s)
        return -1;
    long kb = -1;
    const char *l = strstr(s, "\nVmRSS:");
    if (l)
        kb = strtol(l + 7, NULL, 10);
    free(s);
    return kb;
}

int r_has_asan(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    char *s = h_read_file(path);
    int yes = s && strstr(s, "libasan") != NULL;
    free(s);
    return yes;
}

int r_count(const char *hay, const char *needle)
{
    int n = 0;
    size_t nl = strlen(needle);
    for (const char *p = strstr(hay, needle); p; p = strstr(p + nl, needle))
        n++;
    return n;
}

redisReply *r_redis_cmd(int port, const char *user, const char *pass, const char *fmt, ...)
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
