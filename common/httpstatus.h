/* httpstatus: the short plain-text HTTP answers the gateway writes itself
 * (refused upgrades, on our sockets and through lws). Pure code. */
#ifndef NOTIFY_HTTPSTATUS_H
#define NOTIFY_HTTPSTATUS_H

#include <stddef.h>

/* "Not Found" for 404 and so on. */
const char *http_status_text(int status);

/* Formats a complete "HTTP/1.1 <status>" response with a short text body,
 * extra header lines (each ending in CRLF, or "") and Connection: close.
 * Returns its length, or -1 if it does not fit in size. */
int http_format_status(char *buf, size_t size, int status, const char *headers, const char *body);

#endif
