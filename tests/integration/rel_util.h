/* rel_util: extra helpers for test_reliability.c, next to the harness
 * (harness.h): raw TCP sockets, hand-made WebSocket frames, Redis commands
 * with AUTH, and a process's resident memory. */
#ifndef NOTIFY_TEST_REL_UTIL_H
#define NOTIFY_TEST_REL_UTIL_H

#include <stddef.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

#include "harness.h"

/* Wall clock in Unix milliseconds (JWT exp is wall time). */
long long r_wall_ms(void);

/* A blocking-with-deadline TCP connection to 127.0.0.1:port, or -1. */
int r_tcp_connect(int port, int timeout_ms);

/* Writes all of buf (within timeout_ms); 0, or -1 (the peer may have closed
 * already: that is -1 too). */
int r_send_all(int fd, const void *buf, size_t len, int timeout_ms);

/* Reads and discards (or keeps the first cap bytes in keep, if not NULL)
 * until the peer closes the connection (EOF or reset). Returns 1 when it
 * closed, 0 when timeout_ms passed first. *got receives the number of bytes
 * kept. */
int r_read_until_closed(int fd, int timeout_ms, char *keep, size_t cap, size_t *got);

/* Sends one masked frame on c with the given FIN bit (for fragments:
 * opcode 0 is a continuation). 0, or -1. */
int r_ws_frame(struct ws *c, int fin, int opcode, const void *data, size_t len);

/* VmRSS of pid in kB, -1 if unknown. */
long r_rss_kb(pid_t pid);

/* 1 when pid runs with AddressSanitizer's runtime mapped (its quarantine
 * holds freed memory, so RSS is no measure of leaks there). */
int r_has_asan(pid_t pid);

/* Occurrences of needle in hay. */
int r_count(const char *hay, const char *needle);

/* One Redis command on a new connection to 127.0.0.1:port, after AUTH
 * (user may be NULL: AUTH password; pass NULL: no AUTH). NULL on error. */
redisReply *r_redis_cmd(int port, const char *user, const char *pass, const char *fmt, ...);

#endif
