#include "jsoncheck.h"

#include "validate.h"

struct cursor {
    const unsigned char *p;   /* next byte to read */
    const unsigned char *end; /* one past the last byte */
    const char *reason;       /* first problem found, for the caller's log */
};

static int fail(struct cursor *c, const char *why)
{
    if (!c->reason)
        c->reason = why;
    return 0;
}

static void skip_ws(struct cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int is_hex(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* What a byte means inside a string. Payloads are mostly plain ASCII, so
 * the scan is one table load per byte and UTF-8 is checked where it
 * occurs, in the same pass (this runs on every published payload). */
enum { STR_PLAIN, STR_QUOTE, STR_ESCAPE, STR_CONTROL, STR_MULTIBYTE };
static const unsigned char str_class[256] = {
    [0x00 ... 0x1F] = STR_CONTROL,
    ['"'] = STR_QUOTE,
    ['\\'] = STR_ESCAPE,
    [0x80 ... 0xFF] = STR_MULTIBYTE,
};

static int parse_escape(struct cursor *c, const unsigned char *p)
{
    /* p is at the backslash */
    if (c->end - p < 2)
        return 0;
    unsigned char ch = p[1];
    if (ch == 'u') {
        if (c->end - p < 6 || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]) || !is_hex(p[5]))
            return -1;
        return 6;
    }
    if (ch == '"' || ch == '\\' || ch == '/' || ch == 'b' || ch == 'f' || ch == 'n' || ch == 'r' ||
        ch == 't')
        return 2;
    return -2;
}

static int parse_string(struct cursor *c)
{
    const unsigned char *p = c->p + 1; /* past the opening quote */
    const unsigned char *end = c->end;
    for (;;) {
        while (p < end && str_class[*p] == STR_PLAIN)
            p++;
        if (p >= end)
            break;
        c->p = p;
        switch (str_class[*p]) {
        case STR_QUOTE:
            c->p = p + 1;
            return 1;
        case STR_CONTROL:
            return fail(c, "control character in string");
        case STR_MULTIBYTE: {
            size_t n = validate_utf8_seq(p, (size_t)(end - p));
            if (!n)
                return fail(c, "invalid UTF-8 in string");
            p += n;
            break;
        }
        default: { /* STR_ESCAPE */
            int n = parse_escape(c, p);
            if (n == 0)
                goto unterminated;
            if (n == -1)
                return fail(c, "bad \\u escape");
            if (n < 0)
                return fail(c, "bad escape");
            p += n;
            break;
        }
        }
    }
unterminated:
    c->p = end;
    return fail(c, "unterminated string");
}

static int parse_number(struct cursor *c)
{
    if (c->p < c->end && *c->p == '-')
        c->p++;
    if (c->p >= c->end)
        return fail(c, "bad number");
    if (*c->p == '0') {
        c->p++;
    } else if (*c->p >= '1' && *c->p <= '9') {
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
            c->p++;
    } else {
        return fail(c, "bad number");
    }
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (c->p >= c->end || *c->p < '0' || *c->p > '9')
            return fail(c, "bad number");
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
            c->p++;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            c->p++;
        if (c->p >= c->end || *c->p < '0' || *c->p > '9')
            return fail(c, "bad number");
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
            c->p++;
    }
    return 1;
}

static int parse_literal(struct cursor *c, const char *word, size_t n)
{
    if ((size_t)(c->end - c->p) < n)
        return fail(c, "bad literal");
    for (size_t i = 0; i < n; i++)
        if (c->p[i] != (unsigned char)word[i])
            return fail(c, "bad literal");
    c->p += n;
    return 1;
}

static int parse_value(struct cursor *c, int depth);

/* fn, when given, is told each member of this (object) container. */
static int parse_container(struct cursor *c, int depth, unsigned char close, int is_object,
                           jsoncheck_member_fn fn, void *ctx)
{
    if (depth >= JSONCHECK_MAX_DEPTH)
        return fail(c, "nested too deeply");
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return 1;
    }
    for (;;) {
        const unsigned char *key = NULL;
        size_t key_len = 0;
        if (is_object) {
            skip_ws(c);
            if (c->p >= c->end || *c->p != '"')
                return fail(c, "expected object key");
            key = c->p + 1;
            if (!parse_string(c))
                return 0;
            key_len = (size_t)(c->p - 1 - key);
            skip_ws(c);
            if (c->p >= c->end || *c->p != ':')
                return fail(c, "expected ':'");
            c->p++;
        }
        skip_ws(c);
        const unsigned char *value = c->p;
        if (!parse_value(c, depth + 1))
            return 0;
        if (fn)
            fn(ctx, (const char *)key, key_len, (const char *)value, (size_t)(c->p - value));
        skip_ws(c);
        if (c->p >= c->end)
            return fail(c, "unterminated container");
        if (*c->p == ',') {
            c->p++;
            continue;
        }
        if (*c->p == close) {
            c->p++;
            return 1;
        }
        return fail(c, "expected ',' or end of container");
    }
}

static int parse_value(struct cursor *c, int depth)
{
    skip_ws(c);
    if (c->p >= c->end)
        return fail(c, "expected a value");
    switch (*c->p) {
    case '{':
        return parse_container(c, depth, '}', 1, NULL, NULL);
    case '[':
        return parse_container(c, depth, ']', 0, NULL, NULL);
    case '"':
        return parse_string(c);
    case 't':
        return parse_literal(c, "true", 4);
    case 'f':
        return parse_literal(c, "false", 5);
    case 'n':
        return parse_literal(c, "null", 4);
    default:
        return parse_number(c);
    }
}

static int check(const char *buf, size_t len, jsoncheck_member_fn fn, void *ctx,
                 const char **reason)
{
    struct cursor c = {(const unsigned char *)buf, (const unsigned char *)buf + len, NULL};
    skip_ws(&c);
    int ok;
    if (c.p >= c.end || *c.p != '{')
        ok = fail(&c, "not a JSON object");
    else
        ok = parse_container(&c, 0, '}', 1, fn, ctx);
    if (ok) {
        skip_ws(&c);
        if (c.p != c.end)
            ok = fail(&c, "trailing bytes after the object");
    }
    if (reason)
        *reason = ok ? NULL : c.reason;
    return ok;
}

int jsoncheck_object(const char *buf, size_t len, const char **reason)
{
    return check(buf, len, NULL, NULL, reason);
}

int jsoncheck_object_members(const char *buf, size_t len, jsoncheck_member_fn fn, void *ctx,
                             const char **reason)
{
    return check(buf, len, fn, ctx, reason);
}
