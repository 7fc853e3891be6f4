#include "httphead.h"

#include <limits.h>
#include <string.h>

/* Byte classes, looked up once per byte: a head is parsed on every
 * connect, and testing each byte against a list (strchr for the '-' of
 * every Sec-WebSocket-* name) would be most of its cost. */
enum {
    C_TCHAR = 1, /* RFC 9110 section 5.6.2: method and header names */
    C_FIELD = 2, /* allowed in a header value */
};

/* A header value may hold spaces, tabs, visible ASCII and obs-text; other
 * control characters (a bare CR in particular) are refused, so nothing
 * downstream can be fooled into seeing a line break. */
static const unsigned char byte_class[256] = {
    ['\t'] = C_FIELD, [' '] = C_FIELD, ['"'] = C_FIELD, ['('] = C_FIELD, [')'] = C_FIELD,
    [','] = C_FIELD,  ['/'] = C_FIELD, [':'] = C_FIELD, [';'] = C_FIELD, ['<'] = C_FIELD,
    ['='] = C_FIELD,  ['>'] = C_FIELD, ['?'] = C_FIELD, ['@'] = C_FIELD, ['['] = C_FIELD,
    ['\\'] = C_FIELD, [']'] = C_FIELD, ['{'] = C_FIELD, ['}'] = C_FIELD,
#define T2(c) [c] = C_TCHAR | C_FIELD
    T2('!'),          T2('#'),         T2('$'),         T2('%'),         T2('&'),
    T2('\''),         T2('*'),         T2('+'),         T2('-'),         T2('.'),
    T2('^'),          T2('_'),         T2('`'),         T2('|'),         T2('~'),
#define T10(c)                                                                                     \
    T2(c), T2(c + 1), T2(c + 2), T2(c + 3), T2(c + 4), T2(c + 5), T2(c + 6), T2(c + 7), T2(c + 8), \
        T2(c + 9)
    T10('0'),         T10('A'),        T10('A' + 10),   T2('U'),         T2('V'),
    T2('W'),          T2('X'),         T2('Y'),         T2('Z'),         T10('a'),
    T10('a' + 10),    T2('u'),         T2('v'),         T2('w'),         T2('x'),
    T2('y'),          T2('z'),
#undef T10
#undef T2
#define O8(c)                                                                                      \
    [c] = C_FIELD, [c + 1] = C_FIELD, [c + 2] = C_FIELD, [c + 3] = C_FIELD, [c + 4] = C_FIELD,     \
    [c + 5] = C_FIELD, [c + 6] = C_FIELD, [c + 7] = C_FIELD
#define O64(c)                                                                                     \
    O8(c), O8(c + 8), O8(c + 16), O8(c + 24), O8(c + 32), O8(c + 40), O8(c + 48), O8(c + 56)
    O64(0x80),        O64(0xC0), /* obs-text */
#undef O64
#undef O8
};

static int is_tchar(unsigned char c)
{
    return byte_class[c] & C_TCHAR;
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int is_field_char(unsigned char c)
{
    return byte_class[c] & C_FIELD;
}

/* ASCII-only case folding: header names are ASCII, and the C library's
 * tolower() would depend on the locale. */
static unsigned char ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

static int ascii_caseeq(const char *a, const char *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i]))
            return 0;
    return 1;
}

static void trim_ows(const char **s, size_t *len)
{
    while (*len > 0 && is_ows((*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_ows((*s)[*len - 1]))
        (*len)--;
}

/* "METHOD SP target SP HTTP/1.x", line without its line ending. */
static int parse_request_line(const char *line, size_t len, struct httphead *h)
{
    static const char version[] = "HTTP/1.";
    size_t i = 0;
    while (i < len && is_tchar((unsigned char)line[i]))
        i++;
    if (i == 0 || i == len || line[i] != ' ')
        return -1;
    h->method = line;
    h->method_len = i;

    size_t t = ++i;
    /* The target is visible ASCII only: browsers percent-encode the rest. */
    while (i < len && (unsigned char)line[i] > 0x20 && (unsigned char)line[i] < 0x7F)
        i++;
    if (i == t || i == len || line[i] != ' ')
        return -1;
    const char *target = line + t;
    size_t target_len = i - t;
    const char *q = memchr(target, '?', target_len);
    h->path = target;
    h->path_len = q ? (size_t)(q - target) : target_len;
    h->query = q ? q + 1 : NULL;
    h->query_len = q ? target_len - h->path_len - 1 : 0;

    /* What is left must be exactly "HTTP/1." and one digit. */
    i++;
    if (len - i != sizeof(version) || memcmp(line + i, version, sizeof(version) - 1) != 0)
        return -1;
    char minor = line[len - 1];
    if (minor != '0' && minor != '1')
        return -1;
    h->minor_version = minor - '0';
    return 0;
}

/* "name: value", line without its line ending and not empty. */
static int parse_field(const char *line, size_t len, struct httphead_field *f)
{
    size_t i = 0;
    while (i < len && is_tchar((unsigned char)line[i]))
        i++;
    /* Also refuses a space before the colon (RFC 9112 section 5.1) and a
     * continuation line, which starts with a space or tab. */
    if (i == 0 || i == len || line[i] != ':')
        return -1;
    for (size_t k = i + 1; k < len; k++)
        if (!is_field_char((unsigned char)line[k]))
            return -1;
    f->name = line;
    f->name_len = i;
    f->value = line + i + 1;
    f->value_len = len - i - 1;
    trim_ows(&f->value, &f->value_len);
    return 0;
}

enum httphead_result httphead_parse(const char *buf, size_t len, struct httphead *h,
                                    size_t *head_len)
{
    /* The scalars only: fields[] is read up to n_fields, and clearing all
     * of it would cost a kilobyte of stores per connect. */
    h->method = h->path = h->query = NULL;
    h->method_len = h->path_len = h->query_len = 0;
    h->minor_version = 0;
    h->n_fields = 0;
    *head_len = 0;
    /* Line by line: a line is judged once its LF has arrived, so a prefix
     * of a valid head is INCOMPLETE and a bad line is refused at once
     * rather than after the rest of the head. */
    size_t pos = 0;
    int first = 1;
    for (;;) {
        if (pos == len)
            return HTTPHEAD_INCOMPLETE;
        const char *lf = memchr(buf + pos, '\n', len - pos);
        if (!lf)
            return HTTPHEAD_INCOMPLETE;
        const char *line = buf + pos;
        size_t line_len = (size_t)(lf - line);
        size_t next = pos + line_len + 1;
        if (line_len > 0 && line[line_len - 1] == '\r')
            line_len--;
        if (first) {
            if (parse_request_line(line, line_len, h) < 0)
                return HTTPHEAD_BAD;
            first = 0;
        } else if (line_len == 0) {
            *head_len = next;
            return HTTPHEAD_OK;
        } else {
            if (h->n_fields == HTTPHEAD_MAX_HEADERS)
                return HTTPHEAD_TOO_MANY;
            if (parse_field(line, line_len, &h->fields[h->n_fields]) < 0)
                return HTTPHEAD_BAD;
            h->n_fields++;
        }
        pos = next;
    }
}

const char *httphead_get(const struct httphead *h, const char *name, size_t *len)
{
    size_t name_len = strlen(name);
    for (size_t i = 0; i < h->n_fields; i++) {
        const struct httphead_field *f = &h->fields[i];
        if (f->name_len == name_len && ascii_caseeq(f->name, name, name_len)) {
            *len = f->value_len;
            return f->value;
        }
    }
    return NULL;
}

static int list_has_token(const char *v, size_t len, const char *token, size_t token_len)
{
    while (len > 0) {
        const char *comma = memchr(v, ',', len);
        size_t item_len = comma ? (size_t)(comma - v) : len;
        const char *item = v;
        size_t trimmed = item_len;
        trim_ows(&item, &trimmed);
        if (trimmed == token_len && ascii_caseeq(item, token, token_len))
            return 1;
        if (!comma)
            break;
        v = comma + 1;
        len -= item_len + 1;
    }
    return 0;
}

int httphead_has_token(const struct httphead *h, const char *name, const char *token)
{
    size_t name_len = strlen(name), token_len = strlen(token);
    /* Every header of that name: a list may be split over repeated headers
     * (RFC 9110 section 5.3), e.g. "Connection: keep-alive" then
     * "Connection: Upgrade". */
    for (size_t i = 0; i < h->n_fields; i++) {
        const struct httphead_field *f = &h->fields[i];
        if (f->name_len == name_len && ascii_caseeq(f->name, name, name_len) &&
            list_has_token(f->value, f->value_len, token, token_len))
            return 1;
    }
    return 0;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes v[0..len) into out; returns the length, or -2. */
static int query_decode(const char *v, size_t len, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (len - i < 3)
                return -2;
            int hi = hex_value((unsigned char)v[i + 1]), lo = hex_value((unsigned char)v[i + 2]);
            if (hi < 0 || lo < 0)
                return -2;
            c = (unsigned char)(hi << 4 | lo);
            /* out is used as a C string: an embedded NUL would let the
             * length checked here differ from the one a caller sees. */
            if (c == '\0')
                return -2;
            i += 2;
        }
        if (o + 1 >= size || o >= INT_MAX)
            return -2;
        out[o++] = (char)c;
    }
    if (size == 0)
        return -2;
    out[o] = '\0';
    return (int)o;
}

/* The first argument called name in q[0..left): its value (undecoded)
 * into *v and *v_len, and where the search goes on after it; NULL when
 * there is none. */
static const char *query_find(const char *q, size_t left, const char *name, const char **v,
                              size_t *v_len)
{
    size_t name_len = strlen(name);
    /* Split on '&' and compare whole names, so that "user_id" never matches
     * inside "xuser_id". */
    while (left > 0) {
        const char *amp = memchr(q, '&', left);
        size_t arg_len = amp ? (size_t)(amp - q) : left;
        const char *eq = memchr(q, '=', arg_len);
        size_t key_len = eq ? (size_t)(eq - q) : arg_len;
        /* An empty piece ("a=1&&b=2") names nothing, not even "". */
        if (arg_len > 0 && key_len == name_len && memcmp(q, name, name_len) == 0) {
            *v = eq ? eq + 1 : q + arg_len;
            *v_len = eq ? arg_len - key_len - 1 : 0;
            return q + arg_len;
        }
        if (!amp)
            break;
        q = amp + 1;
        left -= arg_len + 1;
    }
    return NULL;
}

int httphead_query_arg(const struct httphead *h, const char *name, char *out, size_t size)
{
    if (size > 0)
        out[0] = '\0';
    const char *v;
    size_t v_len;
    if (!h->query || !query_find(h->query, h->query_len, name, &v, &v_len))
        return -1;
    int r = query_decode(v, v_len, out, size);
    if (r < 0 && size > 0)
        out[0] = '\0';
    return r;
}

size_t httphead_query_count(const struct httphead *h, const char *name)
{
    if (!h->query)
        return 0;
    size_t n = 0, v_len;
    const char *q = h->query, *end = h->query + h->query_len, *v;
    while ((q = query_find(q, (size_t)(end - q), name, &v, &v_len)) != NULL)
        n++;
    return n;
}

size_t httphead_count(const struct httphead *h, const char *name)
{
    size_t name_len = strlen(name), n = 0;
    for (size_t i = 0; i < h->n_fields; i++)
        if (h->fields[i].name_len == name_len && ascii_caseeq(h->fields[i].name, name, name_len))
            n++;
    return n;
}

/* ---- requests served by libwebsockets ---- */

static int method_is(const struct httphead *h, const char *m)
{
    size_t len = strlen(m);
    return h->method_len == len && memcmp(h->method, m, len) == 0;
}

/* How many headers are called name (case-insensitive); the first in *f. */
static size_t count_fields(const struct httphead *h, const char *name,
                           const struct httphead_field **f)
{
    size_t name_len = strlen(name), n = 0;
    *f = NULL;
    for (size_t i = 0; i < h->n_fields; i++) {
        const struct httphead_field *x = &h->fields[i];
        if (x->name_len == name_len && ascii_caseeq(x->name, name, name_len) && n++ == 0)
            *f = x;
    }
    return n;
}

int httphead_body_framing(const struct httphead *h, const char **why)
{
    const struct httphead_field *cl, *te;
    size_t n_cl = count_fields(h, "Content-Length", &cl);
    size_t n_te = count_fields(h, "Transfer-Encoding", &te);
    if (n_cl && n_te) {
        *why = "both Content-Length and Transfer-Encoding\n";
        return 400;
    }
    if (n_te) {
        *why = "Transfer-Encoding not supported: send Content-Length\n";
        return 411;
    }
    if (n_cl > 1) {
        /* "5" then "5" could be taken, but nothing legitimate sends it, and
         * a server that joins them into "5, 5" would frame it otherwise. */
        *why = "more than one Content-Length\n";
        return 400;
    }
    if (n_cl) {
        /* 1*DIGIT (RFC 9110 section 8.6); 18 digits always fit in 64 bits,
         * whoever reads the number next. */
        int digits = cl->value_len > 0 && cl->value_len <= 18;
        for (size_t i = 0; digits && i < cl->value_len; i++)
            digits = cl->value[i] >= '0' && cl->value[i] <= '9';
        if (!digits) {
            *why = "bad Content-Length\n";
            return 400;
        }
        return 0;
    }
    /* Without either, the body is empty (RFC 9112 section 6.3); but lws
     * waits on such a POST for a body it cannot delimit until its timeout,
     * and a client that sent a body this way would be misread: these
     * methods must say their length (411, RFC 9110 section 15.5.12). */
    if (method_is(h, "POST") || method_is(h, "PUT") || method_is(h, "PATCH")) {
        *why = "Content-Length required\n";
        return 411;
    }
    return 0;
}

int httphead_screen(const char *buf, size_t len, size_t max, const char **why)
{
    struct httphead h;
    size_t head_len;
    switch (httphead_parse(buf, len < max ? len : max, &h, &head_len)) {
    case HTTPHEAD_INCOMPLETE:
        if (len < max)
            return HTTPHEAD_INCOMPLETE;
        *why = "request head too large\n";
        return 431;
    case HTTPHEAD_BAD:
        *why = "malformed request\n";
        return 400;
    case HTTPHEAD_TOO_MANY:
        *why = "too many headers\n";
        return 431;
    case HTTPHEAD_OK:
        break;
    }
    return httphead_body_framing(&h, why);
}
