#include "respbuf.h"

#include <stdlib.h>
#include <string.h>

#include "numfmt.h"

/* Makes room for n more bytes; 0 when there is none. */
static int room(struct respbuf *b, size_t n)
{
    if (b->failed)
        return 0;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16384;
        while (cap < b->len + n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return 0;
        }
        b->p = p;
        b->cap = cap;
    }
    return 1;
}

void respbuf_put(struct respbuf *b, const char *s, size_t n)
{
    if (!room(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

void respbuf_header(struct respbuf *b, char tag, size_t n)
{
    char digits[20];
    size_t d = numfmt_u64(digits, n);
    if (!room(b, d + 3))
        return;
    char *o = b->p + b->len;
    *o++ = tag;
    memcpy(o, digits, d);
    o += d;
    *o++ = '\r';
    *o++ = '\n';
    b->len = (size_t)(o - b->p);
}

void respbuf_arg(struct respbuf *b, const char *s, size_t n)
{
    respbuf_header(b, '$', n);
    respbuf_put(b, s, n);
    respbuf_put(b, "\r\n", 2);
}

void respbuf_cmd(struct respbuf *b, int argc, const char **argv, const size_t *lens)
{
    respbuf_header(b, '*', (size_t)argc);
    for (int i = 0; i < argc; i++)
        respbuf_arg(b, argv[i], lens[i]);
}

void respbuf_reset(struct respbuf *b)
{
    b->len = 0;
    b->failed = 0;
}

void respbuf_free(struct respbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}
