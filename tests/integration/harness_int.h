/* harness_int: what the harness's parts share with each other and not with
 * tests (harness.h is the tests' interface). Deadlines are h_mono_ms()
 * values. */
#ifndef NOTIFY_TEST_HARNESS_INT_H
#define NOTIFY_TEST_HARNESS_INT_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

#include "harness.h"

/* A growable byte buffer. */
struct hi_bytes {
    char *p;
    size_t len, cap;
};

/* Prints the last lines of the file at path to stderr under a heading
 * naming what (a process's log, for a failure's context). */
void hi_print_tail(const char *what, const char *path);

/* Milliseconds left until deadline, 0 once it passed. */
int hi_remaining(long long deadline);

/* Non-blocking TCP connection to 127.0.0.1:port, or -1. */
int hi_tcp_connect(int port, long long deadline);

/* Writes all of buf; 0, or -1 on error or timeout. */
int hi_write_all(int fd, const void *buf, size_t len, long long deadline);

/* Reads what is available (waiting until deadline): bytes read, 0 on EOF,
 * -1 on error, -2 on timeout. */
ssize_t hi_read_some(int fd, void *buf, size_t cap, long long deadline);

/* Reads from fd into b until it holds "\r\n\r\n"; returns the offset just
 * past it, or -1. */
long hi_read_headers(int fd, struct hi_bytes *b, long long deadline);

/* Status code of "HTTP/1.x NNN ...", or -1. */
int hi_parse_status(const char *head);

/* Copies the value of header name (case-insensitive) into out; 1 if found. */
int hi_header_value(const char *head, const char *name, char *out, size_t size);

/* Reads the body after the headers at b->p[0..hlen): by Content-Length,
 * chunked, or until EOF. Fills *body. Returns 0, or -1. */
int hi_read_body(int fd, struct hi_bytes *b, long hlen, struct hi_bytes *body, long long deadline);

/* h_gw_start with the extra args as a NULL-terminated va_list. */
int hi_gw_vstart(struct h_gw *g, const struct h_redis *r, va_list ap);

#endif
