/* validate: checks on identifiers that arrive from outside (clients, tokens,
 * producers). Each function takes a byte range, never assumes NUL
 * termination, and returns 1 when valid, 0 otherwise. */
#ifndef NOTIFY_VALIDATE_H
#define NOTIFY_VALIDATE_H

#include <stddef.h>

#define ACCOUNT_ID_MAX 128

/* 1 to 128 bytes of [A-Za-z0-9_.@:-] (README.md "Connecting"). */
int validate_account_id(const char *s, size_t len);

/* Well-formed UTF-8: no overlong forms, no surrogates, nothing above
 * U+10FFFF. */
int validate_utf8(const char *s, size_t len);

/* For text that arrives in pieces (a fragmented WebSocket message): how
 * s[0..len), the text so far, ends. Returns the number of bytes at its end
 * (0 to 3) that begin a sequence not finished yet but well-formed as far
 * as it goes, or -1 when s holds something no continuation can make
 * well-formed (so a bad piece is refused as soon as it comes). */
int validate_utf8_partial(const char *s, size_t len);

/* The length (2 to 4) of the well-formed multi-byte UTF-8 sequence that
 * starts at s (whose first byte is 0x80 or above), with avail bytes
 * readable; 0 when it is not one. For scanners that meet non-ASCII bytes
 * one at a time. */
size_t validate_utf8_seq(const unsigned char *s, size_t avail);

/* A Redis stream id "<ms>-<seq>", both decimal without sign or leading
 * junk, each fitting in 64 bits (the `since` query argument). */
int validate_stream_id(const char *s, size_t len);

#endif
