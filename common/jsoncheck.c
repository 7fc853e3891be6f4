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

static int parse_string(struct cursor *c)
{
    c->p++; /* opening quote */
    const unsigned char *run = c->p;
    while (c->p < c->end) {
        unsigned char ch = *c->p;
        if (ch == '"') {
            if (!validate_utf8((const char *)run, (size_t)(c->p - run)))
                return fail(c, "invalid UTF-8 in string");
            c->p++;
            return 1;
        }
        if (ch < 0x20)
            return fail(c, "control character in string");
        if (ch == '\\') {
            if (!validate_utf8((const char *)run, (size_t)(c->p - run)))
                return fail(c, "invalid UTF-8 in string");
            c->p++;
            if (c->p >= c->end)
                break;
            ch = *c->p;
            if (ch == 'u') {
                if (c->end - c->p < 5 || !is_hex(c->p[1]) || !is_hex(c->p[2]) || !is_hex(c->p[3]) ||
                    !is_hex(c->p[4]))
                    return fail(c, "bad \\u escape");
                c->p += 5;
            } else if (ch == '"' || ch == '\\' || ch == '/' || ch == 'b' || ch == 'f' ||
                       ch == 'n' || ch == 'r' || ch == 't') {
                c->p++;
            } else {
                return fail(c, "bad escape");
            }
            run = c->p;
            continue;
        }
        c->p++;
    }
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

static int parse_container(struct cursor *c, int depth, unsigned char close, int is_object)
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
        if (is_object) {
            skip_ws(c);
            if (c->p >= c->end || *c->p != '"')
                return fail(c, "expected object key");
            if (!parse_string(c))
                return 0;
            skip_ws(c);
            if (c->p >= c->end || *c->p != ':')
                return fail(c, "expected ':'");
            c->p++;
        }
        if (!parse_value(c, depth + 1))
            return 0;
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
        return parse_container(c, depth, '}', 1);
    case '[':
        return parse_container(c, depth, ']', 0);
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

int jsoncheck_object(const char *buf, size_t len, const char **reason)
{
    struct cursor c = {(const unsigned char *)buf, (const unsigned char *)buf + len, NULL};
    skip_ws(&c);
    int ok;
    if (c.p >= c.end || *c.p != '{')
        ok = fail(&c, "not a JSON object");
    else
        ok = parse_container(&c, 0, '}', 1);
    if (ok) {
        skip_ws(&c);
        if (c.p != c.end)
            ok = fail(&c, "trailing bytes after the object");
    }
    if (reason)
        *reason = ok ? NULL : c.reason;
    return ok;
}
