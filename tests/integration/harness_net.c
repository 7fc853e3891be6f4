/* harness: raw TCP and the HTTP client (harness.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"
#include "harness_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- sockets ------------------------------------------------------------ */

int hi_remaining(long long deadline)
{
    long long r = deadline - h_mono_ms();
    return r < 0 ? 0 : (int)r;
}

/* Non-blocking TCP connection to 127.0.0.1:port, or -1. */
int hi_tcp_connect(int port, long long deadline)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (errno != EINPROGRESS)
            goto fail;
        struct pollfd pfd = {fd, POLLOUT, 0};
        if (poll(&pfd, 1, hi_remaining(deadline)) != 1)
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

int hi_write_all(int fd, const void *buf, size_t len, long long deadline)
{
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
        if (poll(&pfd, 1, hi_remaining(deadline)) != 1)
            return -1;
    }
    return 0;
}

/* Reads what is available (waiting until deadline): bytes read, 0 on EOF,
 * -1 on error, -2 on timeout. */
ssize_t hi_read_some(int fd, void *buf, size_t cap, long long deadline)
{
    for (;;) {
        ssize_t n = recv(fd, buf, cap, 0);
        if (n >= 0)
            return n;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        struct pollfd pfd = {fd, POLLIN, 0};
        int pr = poll(&pfd, 1, hi_remaining(deadline));
        if (pr == 0)
            return -2;
        if (pr < 0 && errno != EINTR)
            return -1;
    }
}

int h_tcp_connect(int port, int timeout_ms)
{
    return hi_tcp_connect(port, h_mono_ms() + timeout_ms);
}

int h_send_all(int fd, const void *buf, size_t len, int timeout_ms)
{
    return hi_write_all(fd, buf, len, h_mono_ms() + timeout_ms);
}

int h_read_until_closed(int fd, int timeout_ms, char *keep, size_t cap, size_t *got)
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
        if (poll(&pfd, 1, hi_remaining(deadline)) == 0)
            break;
    }
    if (got)
        *got = kept;
    return closed;
}

static int bytes_reserve(struct hi_bytes *b, size_t more)
{
    if (b->len + more + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int bytes_append(struct hi_bytes *b, const void *data, size_t n)
{
    if (bytes_reserve(b, n) != 0)
        return -1;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* Reads from fd into b until it holds "\r\n\r\n"; returns the offset just
 * past it, or -1. */
long hi_read_headers(int fd, struct hi_bytes *b, long long deadline)
{
    for (;;) {
        if (b->p) {
            char *end = memmem(b->p, b->len, "\r\n\r\n", 4);
            if (end)
                return end - b->p + 4;
        }
        if (bytes_reserve(b, 4096) != 0)
            return -1;
        ssize_t n = hi_read_some(fd, b->p + b->len, 4096, deadline);
        if (n <= 0)
            return -1;
        b->len += (size_t)n;
        b->p[b->len] = '\0';
    }
}

/* Status code of "HTTP/1.x NNN ...", or -1. */
int hi_parse_status(const char *head)
{
    int code;
    if (strncmp(head, "HTTP/1.", 7) != 0 || sscanf(head + 8, " %d", &code) != 1)
        return -1;
    return code;
}

/* Copies the value of header name (case-insensitive) into out; 1 if found. */
int hi_header_value(const char *head, const char *name, char *out, size_t size)
{
    size_t nl = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        if (!strncasecmp(line, name, nl) && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t vl = strcspn(v, "\r\n");
            while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            snprintf(out, size, "%.*s", (int)vl, v);
            return 1;
        }
    }
    return 0;
}

/* Decodes a chunked body: 1 when complete (out filled), 0 when more input
 * is needed, -1 when malformed. */
static int dechunk(const char *in, size_t n, struct hi_bytes *out)
{
    size_t i = 0;
    out->len = 0;
    for (;;) {
        const char *eol = memmem(in + i, n - i, "\r\n", 2);
        if (!eol)
            return 0;
        char *end;
        unsigned long size = strtoul(in + i, &end, 16);
        if (end == in + i)
            return -1;
        i = (size_t)(eol - in) + 2;
        if (size == 0)
            return 1; /* trailers ignored */
        if (n - i < size + 2)
            return 0;
        if (bytes_append(out, in + i, size) != 0)
            return -1;
        i += size + 2;
    }
}

/* Reads the body after the headers at b->p[0..hlen): by Content-Length,
 * chunked, or until EOF. Fills *body. Returns 0, or -1. */
int hi_read_body(int fd, struct hi_bytes *b, long hlen, struct hi_bytes *body, long long deadline)
{
    char v[64];
    long clen = -1;
    int chunked = 0;
    if (hi_header_value(b->p, "Content-Length", v, sizeof(v)))
        clen = strtol(v, NULL, 10);
    if (hi_header_value(b->p, "Transfer-Encoding", v, sizeof(v)) && strcasestr(v, "chunked"))
        chunked = 1;
    for (;;) {
        size_t have = b->len - (size_t)hlen;
        if (chunked) {
            int d = dechunk(b->p + hlen, have, body);
            if (d < 0)
                return -1;
            if (d == 1)
                return 0;
        } else if (clen >= 0 && have >= (size_t)clen) {
            body->len = 0;
            return bytes_append(body, b->p + hlen, (size_t)clen);
        }
        if (bytes_reserve(b, 4096) != 0)
            return -1;
        ssize_t n = hi_read_some(fd, b->p + b->len, 4096, deadline);
        if (n == 0 && !chunked && clen < 0) { /* body ends with the connection */
            body->len = 0;
            return bytes_append(body, b->p + hlen, have);
        }
        if (n <= 0)
            return -1;
        b->len += (size_t)n;
        b->p[b->len] = '\0';
    }
}

/* ---- HTTP --------------------------------------------------------------- */

int h_http(int port, const char *method, const char *path, const char *headers, const char *body,
           size_t body_len, struct h_http_resp *resp, int timeout_ms)
{
    memset(resp, 0, sizeof(*resp));
    resp->status = -1;
    long long deadline = h_mono_ms() + timeout_ms;
    int fd = hi_tcp_connect(port, deadline);
    if (fd < 0)
        return -1;
    char req[8192];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s", method,
                     path, port, headers ? headers : "");
    if (body)
        n += snprintf(req + n, sizeof(req) - (size_t)n, "Content-Length: %zu\r\n", body_len);
    n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
    struct hi_bytes b = {0}, out = {0};
    int rc = -1;
    if (n >= (int)sizeof(req) || hi_write_all(fd, req, (size_t)n, deadline) != 0 ||
        (body && hi_write_all(fd, body, body_len, deadline) != 0))
        goto done;
    long hlen = hi_read_headers(fd, &b, deadline);
    if (hlen < 0)
        goto done;
    int status = hi_parse_status(b.p);
    if (status < 0)
        goto done;
    if (strcmp(method, "HEAD") != 0 && status != 204 && status != 304 &&
        hi_read_body(fd, &b, hlen, &out, deadline) != 0)
        goto done;
    if (!out.p && bytes_append(&out, "", 0) != 0)
        goto done;
    resp->status = status;
    resp->headers = strndup(b.p, (size_t)hlen);
    resp->body = out.p;
    resp->body_len = out.len;
    out.p = NULL;
    rc = status;
done:
    close(fd);
    free(b.p);
    free(out.p);
    return rc;
}

void h_http_resp_free(struct h_http_resp *resp)
{
    free(resp->headers);
    free(resp->body);
    resp->headers = resp->body = NULL;
}

long h_read_http_head(int fd, int timeout_ms, char **out, size_t *len)
{
    struct hi_bytes b = {0};
    long hlen = hi_read_headers(fd, &b, h_mono_ms() + timeout_ms);
    if (hlen < 0) {
        free(b.p);
        *out = NULL;
        *len = 0;
        return -1;
    }
    *out = b.p;
    *len = b.len;
    return hlen;
}

int h_http_header(const char *head, const char *name, char *out, size_t size)
{
    return hi_header_value(head, name, out, size);
}

int h_http_get(int port, const char *path, char **body)
{
    struct h_http_resp r;
    int st = h_http(port, "GET", path, NULL, NULL, 0, &r, 3000);
    if (body) {
        *body = r.body;
        r.body = NULL;
    }
    h_http_resp_free(&r);
    return st;
}

int h_http_wait_status(int port, const char *path, int want, int timeout_ms)
{
    long long deadline = h_mono_ms() + timeout_ms;
    for (;;) {
        if (h_http_get(port, path, NULL) == want)
            return 1;
        if (h_mono_ms() >= deadline)
            return 0;
        h_sleep_ms(50);
    }
}

double h_metric_sum(const char *text, const char *name)
{
    size_t nl = strlen(name);
    double sum = 0;
    int found = 0;
    for (const char *line = text; line && *line;
         line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (strncmp(line, name, nl) != 0 || (line[nl] != ' ' && line[nl] != '{'))
            continue;
        const char *v = line + nl;
        if (*v == '{') {
            /* skip labels; values may contain '}' only inside quotes */
            int quoted = 0;
            for (v++; *v && *v != '\n'; v++) {
                if (*v == '\\' && quoted && v[1])
                    v++;
                else if (*v == '"')
                    quoted = !quoted;
                else if (*v == '}' && !quoted)
                    break;
            }
            if (*v != '}')
                continue;
            v++;
        }
        char *end;
        double d = strtod(v, &end);
        if (end == v)
            continue;
        sum += d;
        found = 1;
    }
    return found ? sum : -1;
}
