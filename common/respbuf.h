/* respbuf: Redis commands written as RESP by hand into a buffer that grows
 * and is kept between uses.
 *
 * For the commands sent in bulk (presence refreshes, subscription
 * batches): hiredis's formatting goes through printf-style parsing and an
 * sds per argument, which showed in profiles of both. */
#ifndef NOTIFY_RESPBUF_H
#define NOTIFY_RESPBUF_H

#include <stddef.h>

struct respbuf {
    char *p;
    size_t len, cap;
    int failed; /* out of memory: what was built is incomplete */
};

/* Appends n bytes as they are. */
void respbuf_put(struct respbuf *b, const char *s, size_t n);

/* Appends "<tag><n>\r\n": an array ('*') or bulk ('$') header. */
void respbuf_header(struct respbuf *b, char tag, size_t n);

/* Appends one bulk string argument. */
void respbuf_arg(struct respbuf *b, const char *s, size_t n);

/* Appends a whole command of argc arguments. */
void respbuf_cmd(struct respbuf *b, int argc, const char **argv, const size_t *lens);

/* Empties b for the next command, keeping its memory. */
void respbuf_reset(struct respbuf *b);

void respbuf_free(struct respbuf *b);

#endif
