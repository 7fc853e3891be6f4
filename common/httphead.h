/* httphead: an HTTP/1.1 request head (request line and headers), parsed
 * in place without allocating.
 *
 * Used for WebSocket upgrades, which the gateway answers itself
 * (gateway/net/input.c, gateway/session/session.c). Pure functions over a byte buffer: unit-tested
 * and fuzzed without a socket. */
#ifndef NOTIFY_HTTPHEAD_H
#define NOTIFY_HTTPHEAD_H

#include <stddef.h>

/* Most headers kept; a request with more is refused (431). */
#define HTTPHEAD_MAX_HEADERS 32

struct httphead_field {
    const char *name; /* points into the parsed buffer, not NUL-terminated */
    size_t name_len;
    const char *value; /* leading and trailing spaces and tabs trimmed */
    size_t value_len;
};

struct httphead {
    const char *method; /* e.g. "GET" */
    size_t method_len;
    const char *path; /* the target up to '?' (or all of it) */
    size_t path_len;
    const char *query; /* after '?', without it; NULL when there is none */
    size_t query_len;
    int minor_version; /* HTTP/1.<minor> */
    size_t n_fields;
    struct httphead_field fields[HTTPHEAD_MAX_HEADERS];
};

enum httphead_result {
    HTTPHEAD_OK = 0,          /* the head is parsed; see head_len */
    HTTPHEAD_INCOMPLETE = -1, /* no blank line yet: read more */
    HTTPHEAD_BAD = -2,        /* malformed: answer 400 */
    HTTPHEAD_TOO_MANY = -3,   /* more than HTTPHEAD_MAX_HEADERS: answer 431 */
};

/* Parses the head at buf[0..len). Lines end in CRLF (a bare LF is accepted
 * as well); the head ends at the first empty line. The request line is
 * "METHOD SP target SP HTTP/1.x"; only HTTP/1.0 and 1.1 are accepted. A
 * header line is "name: value" with a non-empty token name (no spaces
 * before the colon); obsolete line folding is refused. Sets *head_len to
 * the bytes consumed through the empty line. Never reads past buf[len-1].
 * Returns HTTPHEAD_OK or one of the other results.
 * Clarified: a line is judged once its LF is in buf (a bad or 33rd header
 * line is refused before the blank line arrives); *h is only meaningful
 * on HTTPHEAD_OK, and *head_len is 0 otherwise. */
enum httphead_result httphead_parse(const char *buf, size_t len, struct httphead *h,
                                    size_t *head_len);

/* The value of the first header called name (case-insensitive), or NULL;
 * its length in *len. */
const char *httphead_get(const struct httphead *h, const char *name, size_t *len);

/* Whether header name's value, a comma-separated list, holds token
 * (case-insensitive, surrounding spaces ignored): "Connection: keep-alive,
 * Upgrade" holds "upgrade". 0 when the header is absent.
 * Clarified: every header called name is searched, as a list may be split
 * over repeated headers (RFC 9110 section 5.3). */
int httphead_has_token(const struct httphead *h, const char *name, const char *token);

/* The query argument called name (without '='), percent-decoded ('+' is a
 * space) into out (size bytes, NUL-terminated). Returns the decoded length,
 * -1 when the argument is absent, -2 when it does not fit or has a bad
 * %-escape. "a=1&b=&c" has a = "1", b = "" and c = "" (present, empty).
 * Clarified: names are compared as written (case-sensitive, not decoded),
 * the first match wins, and %00 is a bad escape since out is a C string. */
int httphead_query_arg(const struct httphead *h, const char *name, char *out, size_t size);

/* How many headers are called name (case-insensitive). A header that says
 * who the client is must come once: with two, which one counts depends on
 * who reads the request (a proxy, a log, the gateway). */
size_t httphead_count(const struct httphead *h, const char *name);

/* How many query arguments are called name, matched as httphead_query_arg
 * matches them (whole names, as written): "token=a&token=b" has 2, and
 * httphead_query_arg would read only the first. */
size_t httphead_query_count(const struct httphead *h, const char *name);
/* ---- requests served by libwebsockets ----
 * The gateway hands every request but GET /ws to libwebsockets, which
 * takes a body by Content-Length only and has room for heads of a few KiB;
 * these say, from the head the gateway has peeked, what lws would mishandle
 * (drop with no answer, wait on, or frame differently from a proxy). */

/* How a parsed request's body is framed, for a server that reads bodies by
 * Content-Length only. 0 when it can be read that way, else the status to
 * refuse it with, and in *why a one-line reason ending in '\n':
 *   400: both Content-Length and Transfer-Encoding: the two framings
 *        disagree, and a proxy that reads the other one would take the rest
 *        for a second request (request smuggling; RFC 9112 section 6.3
 *        allows refusing it); a Content-Length that is not 1 to 18 digits,
 *        or more than one Content-Length header;
 *   411: Transfer-Encoding without Content-Length (chunked bodies are not
 *        taken), or a POST, PUT or PATCH without Content-Length.
 * Methods are compared as written (they are case-sensitive). */
int httphead_body_framing(const struct httphead *h, const char **why);

/* Screens the first request of a socket, buf[0..len) being what has
 * arrived so far (the head and perhaps some body), for a server that takes
 * heads of at most max bytes. Returns HTTPHEAD_INCOMPLETE while the head is
 * not whole and len < max (look again when more has come); 0 when the
 * request may be served; else the status to refuse it with and *why:
 *   400: a malformed head (httphead_parse);
 *   431: no end of head within max bytes, or more than
 *        HTTPHEAD_MAX_HEADERS header lines;
 *   400 or 411 from httphead_body_framing.
 * Bytes past max are not looked at: a caller peeks at most max bytes. */
int httphead_screen(const char *buf, size_t len, size_t max, const char **why);

#endif
