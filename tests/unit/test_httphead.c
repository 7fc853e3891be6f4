/* Unit tests of common/httphead: request heads, header lookup, token lists
 * and query arguments. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httphead.h"

/* What a browser sends to open a WebSocket (Firefox's Connection list). */
static const char browser[] =
    "GET /ws?token=abc.def-ghi&since=1700000000000-0 HTTP/1.1\r\n"
    "Host: push.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    "Accept: */*\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Origin: https://app.example.com\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Pragma: no-cache\r\n"
    "Cache-Control: no-cache\r\n"
    "Upgrade: websocket\r\n"
    "\r\n";

/* Parses s (a string literal) from an exact-size copy, so the sanitizer
 * build catches a read past the end. */
static enum httphead_result parse_copy(const char *s, size_t len, struct httphead *h,
                                       size_t *head_len, char **copy)
{
    *copy = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(*copy);
    memcpy(*copy, s, len);
    return httphead_parse(*copy, len, h, head_len);
}

static enum httphead_result parse_str(const char *s)
{
    struct httphead h;
    size_t n;
    char *copy;
    enum httphead_result r = parse_copy(s, strlen(s), &h, &n, &copy);
    free(copy);
    return r;
}

static int span_eq(const char *p, size_t len, const char *want)
{
    return p != NULL && len == strlen(want) && memcmp(p, want, len) == 0;
}

/* Whether header name is there with exactly the value want. */
static int get_eq(const struct httphead *h, const char *name, const char *want)
{
    size_t len = 0;
    const char *v = httphead_get(h, name, &len);
    return span_eq(v, len, want);
}

START_TEST(browser_upgrade)
{
    struct httphead h;
    size_t n = 99;
    ck_assert_int_eq(httphead_parse(browser, sizeof(browser) - 1, &h, &n), HTTPHEAD_OK);
    ck_assert_uint_eq(n, sizeof(browser) - 1);
    ck_assert(span_eq(h.method, h.method_len, "GET"));
    ck_assert(span_eq(h.path, h.path_len, "/ws"));
    ck_assert(span_eq(h.query, h.query_len, "token=abc.def-ghi&since=1700000000000-0"));
    ck_assert_int_eq(h.minor_version, 1);
    ck_assert_uint_eq(h.n_fields, 13);
    ck_assert(span_eq(h.fields[0].name, h.fields[0].name_len, "Host"));
    ck_assert(span_eq(h.fields[0].value, h.fields[0].value_len, "push.example.com"));
    ck_assert(span_eq(h.fields[12].name, h.fields[12].name_len, "Upgrade"));
    ck_assert(span_eq(h.fields[12].value, h.fields[12].value_len, "websocket"));

    size_t len;
    const char *v = httphead_get(&h, "Sec-WebSocket-Key", &len);
    ck_assert(span_eq(v, len, "dGhlIHNhbXBsZSBub25jZQ=="));
    v = httphead_get(&h, "sec-websocket-version", &len);
    ck_assert(span_eq(v, len, "13"));
    v = httphead_get(&h, "UPGRADE", &len);
    ck_assert(span_eq(v, len, "websocket"));
    ck_assert_ptr_null(httphead_get(&h, "Sec-WebSocket-Protocol", &len));
    ck_assert_ptr_null(httphead_get(&h, "Hos", &len));
    ck_assert_ptr_null(httphead_get(&h, "Hostx", &len));
    ck_assert_ptr_null(httphead_get(&h, "", &len));

    ck_assert_int_eq(httphead_has_token(&h, "Connection", "upgrade"), 1);
    ck_assert_int_eq(httphead_has_token(&h, "connection", "Keep-Alive"), 1);
    ck_assert_int_eq(httphead_has_token(&h, "Upgrade", "WebSocket"), 1);
    ck_assert_int_eq(httphead_has_token(&h, "Connection", "close"), 0);

    char out[64];
    ck_assert_int_eq(httphead_query_arg(&h, "token", out, sizeof(out)), 11);
    ck_assert_str_eq(out, "abc.def-ghi");
    ck_assert_int_eq(httphead_query_arg(&h, "since", out, sizeof(out)), 15);
    ck_assert_str_eq(out, "1700000000000-0");
    ck_assert_int_eq(httphead_query_arg(&h, "user", out, sizeof(out)), -1);
}
END_TEST

START_TEST(request_lines)
{
    struct httphead h;
    size_t n;
    static const char v10[] = "POST /a/b HTTP/1.0\r\n\r\n";
    ck_assert_int_eq(httphead_parse(v10, sizeof(v10) - 1, &h, &n), HTTPHEAD_OK);
    ck_assert_uint_eq(n, sizeof(v10) - 1);
    ck_assert(span_eq(h.method, h.method_len, "POST"));
    ck_assert(span_eq(h.path, h.path_len, "/a/b"));
    ck_assert_ptr_null(h.query);
    ck_assert_uint_eq(h.query_len, 0);
    ck_assert_int_eq(h.minor_version, 0);
    ck_assert_uint_eq(h.n_fields, 0);

    /* "?" with nothing after it: a query that is present and empty. */
    static const char empty_q[] = "GET /ws? HTTP/1.1\r\n\r\n";
    ck_assert_int_eq(httphead_parse(empty_q, sizeof(empty_q) - 1, &h, &n), HTTPHEAD_OK);
    ck_assert(span_eq(h.path, h.path_len, "/ws"));
    ck_assert_ptr_nonnull(h.query);
    ck_assert_uint_eq(h.query_len, 0);

    /* Only the first '?' splits path from query. */
    static const char two_q[] = "GET /ws?a=?b HTTP/1.1\r\n\r\n";
    ck_assert_int_eq(httphead_parse(two_q, sizeof(two_q) - 1, &h, &n), HTTPHEAD_OK);
    ck_assert(span_eq(h.path, h.path_len, "/ws"));
    ck_assert(span_eq(h.query, h.query_len, "a=?b"));

    static const char *bad[] = {
        "\r\n\r\n",
        "garbage\r\n\r\n",
        "GET\r\n\r\n",
        "GET /\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.2\r\n\r\n",
        "GET / HTTP/1.\r\n\r\n",
        "GET / HTTP/1.11\r\n\r\n",
        "GET / HTTP/0.9\r\n\r\n",
        "GET / http/1.1\r\n\r\n",
        "GET / HTTP/1.1 \r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "GET /  HTTP/1.1\r\n\r\n",
        " GET / HTTP/1.1\r\n\r\n",
        "GET / x HTTP/1.1\r\n\r\n",
        "GET\t/ HTTP/1.1\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
        "GET /a\x01 HTTP/1.1\r\n\r\n",
        "GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\r\n\r\n",
        "GET / HTTP/1.1\rHost: x\r\n\r\n",
        "\x16\x03\x01\x02\x01\x01\xfc\x03\x03\n\n", /* TLS hello */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(parse_str(bad[i]) == HTTPHEAD_BAD, "accepted %zu: %s", i, bad[i]);
}
END_TEST

START_TEST(header_values_trimmed)
{
    static const char s[] = "GET / HTTP/1.1\r\n"
                            "A:plain\r\n"
                            "B:   spaced   \r\n"
                            "C:\t\ttabs\t \r\n"
                            "D:\r\n"
                            "E:    \r\n"
                            "F: inner  space\tand tab \r\n"
                            "G: caf\xc3\xa9\r\n"
                            "\r\n";
    struct httphead h;
    size_t n, len;
    ck_assert_int_eq(httphead_parse(s, sizeof(s) - 1, &h, &n), HTTPHEAD_OK);
    ck_assert_uint_eq(h.n_fields, 7);
    ck_assert(get_eq(&h, "a", "plain"));
    ck_assert(get_eq(&h, "b", "spaced"));
    ck_assert(get_eq(&h, "c", "tabs"));
    ck_assert(get_eq(&h, "d", ""));
    ck_assert(get_eq(&h, "e", ""));
    ck_assert(get_eq(&h, "f", "inner  space\tand tab"));
    ck_assert(get_eq(&h, "g", "caf\xc3\xa9"));
    /* Empty values still point into the buffer. */
    const char *d = httphead_get(&h, "D", &len);
    ck_assert(d >= s && d <= s + n);
}
END_TEST

START_TEST(header_lookup_first_wins)
{
    static const char s[] = "GET / HTTP/1.1\r\n"
                            "x-dup: one\r\n"
                            "X-Dup: two\r\n"
                            "X-DUP-2: three\r\n"
                            "!#$%&'*+-.^_`|~09azAZ: token\r\n"
                            "\r\n";
    struct httphead h;
    size_t n, len;
    ck_assert_int_eq(httphead_parse(s, sizeof(s) - 1, &h, &n), HTTPHEAD_OK);
    ck_assert(get_eq(&h, "X-DUP", "one"));
    ck_assert(get_eq(&h, "x-dup-2", "three"));
    ck_assert(get_eq(&h, "!#$%&'*+-.^_`|~09AZaz", "token"));
    ck_assert_ptr_null(httphead_get(&h, "x-du", &len));
}
END_TEST

START_TEST(bare_lf)
{
    static const char s[] = "GET /ws?a=1 HTTP/1.1\n"
                            "Host: x\n"
                            "Upgrade: websocket\r\n"
                            "Connection: Upgrade\n"
                            "\n"
                            "body";
    struct httphead h;
    size_t n;
    ck_assert_int_eq(httphead_parse(s, sizeof(s) - 1, &h, &n), HTTPHEAD_OK);
    ck_assert_uint_eq(n, sizeof(s) - 1 - 4);
    ck_assert_uint_eq(h.n_fields, 3);
    ck_assert(get_eq(&h, "host", "x"));
    ck_assert(get_eq(&h, "upgrade", "websocket"));
    ck_assert(span_eq(h.path, h.path_len, "/ws"));
    ck_assert_int_eq(h.minor_version, 1);

    static const char crlf_then_lf[] = "GET / HTTP/1.1\r\nHost: x\r\n\n";
    ck_assert_int_eq(httphead_parse(crlf_then_lf, sizeof(crlf_then_lf) - 1, &h, &n), HTTPHEAD_OK);
    ck_assert_uint_eq(n, sizeof(crlf_then_lf) - 1);
}
END_TEST

START_TEST(incomplete_every_prefix)
{
    static const char small[] = "GET / HTTP/1.0\nA: b\n\n";
    const char *heads[] = {browser, small};
    for (size_t k = 0; k < 2; k++) {
        size_t total = strlen(heads[k]);
        for (size_t n = 0; n < total; n++) {
            struct httphead h;
            size_t head_len = 7;
            char *copy;
            ck_assert_msg(parse_copy(heads[k], n, &h, &head_len, &copy) == HTTPHEAD_INCOMPLETE,
                          "head %zu prefix %zu", k, n);
            ck_assert_uint_eq(head_len, 0);
            free(copy);
        }
        struct httphead h;
        size_t head_len;
        char *copy;
        ck_assert_int_eq(parse_copy(heads[k], total, &h, &head_len, &copy), HTTPHEAD_OK);
        ck_assert_uint_eq(head_len, total);
        free(copy);
    }
}
END_TEST

START_TEST(bad_header_lines)
{
    static const char *bad[] = {
        "GET / HTTP/1.1\r\nHost x\r\n\r\n",              /* no colon */
        "GET / HTTP/1.1\r\nHost : x\r\n\r\n",            /* space before colon */
        "GET / HTTP/1.1\r\nHost\t: x\r\n\r\n",           /* tab before colon */
        "GET / HTTP/1.1\r\n: x\r\n\r\n",                 /* empty name */
        "GET / HTTP/1.1\r\n Host: x\r\n\r\n",            /* fold right after the request line */
        "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",          /* obs-fold */
        "GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n",         /* obs-fold with a tab */
        "GET / HTTP/1.1\r\nA(b: c\r\n\r\n",              /* not a token */
        "GET / HTTP/1.1\r\nA\xc3\xa9: c\r\n\r\n",        /* not a token */
        "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",             /* bare CR in a value */
        "GET / HTTP/1.1\r\nA: b\x01\r\n\r\n",            /* control character */
        "GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n",            /* DEL */
        "GET / HTTP/1.1\r\nA: b\r\n\r\r\n",              /* "\r\r" is not an empty line */
        "GET / HTTP/1.1\r\nHost: x\r\nbad line\r\n\r\n", /* in the middle */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(parse_str(bad[i]) == HTTPHEAD_BAD, "accepted %zu: %s", i, bad[i]);

    /* A NUL inside a value (not expressible in a string literal). */
    static const char nul[] = "GET / HTTP/1.1\r\nA: b\0c\r\n\r\n";
    struct httphead h;
    size_t n;
    ck_assert_int_eq(httphead_parse(nul, sizeof(nul) - 1, &h, &n), HTTPHEAD_BAD);

    /* A bad line is refused before the head is complete. */
    ck_assert_int_eq(parse_str("GET / HTTP/1.1\r\nHost x\r\n"), HTTPHEAD_BAD);
    ck_assert_int_eq(parse_str("HTTP/1.1 200 OK\r\n"), HTTPHEAD_BAD);
}
END_TEST

/* A head with n headers "H<i>: v". */
static char *many_headers(size_t n, size_t *len)
{
    size_t cap = 64 + n * 16;
    char *s = malloc(cap);
    ck_assert_ptr_nonnull(s);
    size_t o = (size_t)snprintf(s, cap, "GET / HTTP/1.1\r\n");
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(s + o, cap - o, "H%zu: v%zu\r\n", i, i);
    o += (size_t)snprintf(s + o, cap - o, "\r\n");
    *len = o;
    return s;
}

START_TEST(too_many_headers)
{
    struct httphead h;
    size_t len, n;
    char *s = many_headers(HTTPHEAD_MAX_HEADERS, &len);
    ck_assert_int_eq(httphead_parse(s, len, &h, &n), HTTPHEAD_OK);
    ck_assert_uint_eq(h.n_fields, 32);
    ck_assert_uint_eq(n, len);
    ck_assert(get_eq(&h, "h31", "v31"));
    free(s);

    s = many_headers(HTTPHEAD_MAX_HEADERS + 1, &len);
    ck_assert_int_eq(httphead_parse(s, len, &h, &n), HTTPHEAD_TOO_MANY);
    ck_assert_uint_eq(n, 0);
    /* Refused as soon as the 33rd header line is in, blank line or not. */
    ck_assert_int_eq(httphead_parse(s, len - 2, &h, &n), HTTPHEAD_TOO_MANY);
    free(s);

    s = many_headers(100, &len);
    ck_assert_int_eq(httphead_parse(s, len, &h, &n), HTTPHEAD_TOO_MANY);
    free(s);
}
END_TEST

START_TEST(head_len_excludes_body)
{
    static const char s[] = "POST /publish HTTP/1.1\r\n"
                            "Content-Length: 13\r\n"
                            "\r\n"
                            "{\"a\":\"b\"}\r\n\r\n";
    struct httphead h;
    size_t n;
    ck_assert_int_eq(httphead_parse(s, sizeof(s) - 1, &h, &n), HTTPHEAD_OK);
    ck_assert_uint_eq(n, strlen("POST /publish HTTP/1.1\r\nContent-Length: 13\r\n\r\n"));
    ck_assert_int_eq(s[n], '{');
    ck_assert_uint_eq(h.n_fields, 1);

    /* What follows the head may be anything, even another head. */
    static const char two[] = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    ck_assert_int_eq(httphead_parse(two, sizeof(two) - 1, &h, &n), HTTPHEAD_OK);
    ck_assert_uint_eq(n, 19);
    ck_assert(span_eq(h.path, h.path_len, "/a"));
    static const char junk[] = "GET /a HTTP/1.1\r\n\r\n\x00\xff garbage";
    ck_assert_int_eq(httphead_parse(junk, sizeof(junk) - 1, &h, &n), HTTPHEAD_OK);
    ck_assert_uint_eq(n, 19);
}
END_TEST

/* Every byte value, in a header name and in a header value, against the
 * RFC 9110 definitions written out here (the parser looks classes up in a
 * table). */
START_TEST(byte_classes)
{
    static const char delimiters[] = "\"(),/:;<=>?@[\\]{}";
    for (int c = 0; c < 256; c++) {
        int visible = c > 0x20 && c < 0x7F;
        int tchar = visible && !strchr(delimiters, c);
        int field = c == '\t' || c == ' ' || visible || c >= 0x80;
        char name[64], value[64];
        int nl = snprintf(name, sizeof(name), "GET / HTTP/1.1\r\n%cX: v\r\n\r\n", c ? c : '?');
        int vl = snprintf(value, sizeof(value), "GET / HTTP/1.1\r\nX: a%cb\r\n\r\n", c ? c : '?');
        name[16] = (char)c; /* the byte itself, NUL included */
        value[20] = (char)c;
        struct httphead h;
        size_t n;
        char *copy;
        enum httphead_result r = parse_copy(name, (size_t)nl, &h, &n, &copy);
        free(copy);
        if (c != '\n' && c != '\r')
            ck_assert_msg((r == HTTPHEAD_OK) == tchar, "byte 0x%02x in a header name: %d", c, r);
        r = parse_copy(value, (size_t)vl, &h, &n, &copy);
        free(copy);
        if (c != '\n')
            ck_assert_msg((r == HTTPHEAD_OK) == field, "byte 0x%02x in a header value: %d", c, r);
    }
}
END_TEST

START_TEST(token_lists)
{
    static const char s[] = "GET / HTTP/1.1\r\n"
                            "Connection: keep-alive, Upgrade\r\n"
                            "Upgrade: websocket\r\n"
                            "X-List: ,, a ,\tb\t,c,  \r\n"
                            "X-Split: first\r\n"
                            "x-split: second\r\n"
                            "X-Near: upgraded, xupgrade, up grade\r\n"
                            "\r\n";
    struct httphead h;
    size_t n;
    ck_assert_int_eq(httphead_parse(s, sizeof(s) - 1, &h, &n), HTTPHEAD_OK);
    ck_assert_int_eq(httphead_has_token(&h, "Connection", "upgrade"), 1);
    ck_assert_int_eq(httphead_has_token(&h, "Connection", "UPGRADE"), 1);
    ck_assert_int_eq(httphead_has_token(&h, "CONNECTION", "keep-alive"), 1);
    ck_assert_int_eq(httphead_has_token(&h, "Connection", "keep"), 0);
    ck_assert_int_eq(httphead_has_token(&h, "Connection", "alive"), 0);
    ck_assert_int_eq(httphead_has_token(&h, "Connection", "keep-alive, Upgrade"), 0);
    ck_assert_int_eq(httphead_has_token(&h, "Upgrade", "websocket"), 1);
    ck_assert_int_eq(httphead_has_token(&h, "Missing", "websocket"), 0);
    ck_assert_int_eq(httphead_has_token(&h, "X-List", "a"), 1);
    ck_assert_int_eq(httphead_has_token(&h, "X-List", "b"), 1);
    ck_assert_int_eq(httphead_has_token(&h, "X-List", "c"), 1);
    ck_assert_int_eq(httphead_has_token(&h, "X-List", "d"), 0);
    ck_assert_int_eq(httphead_has_token(&h, "X-Split", "first"), 1);
    ck_assert_int_eq(httphead_has_token(&h, "X-Split", "second"), 1);
    ck_assert_int_eq(httphead_has_token(&h, "X-Near", "upgrade"), 0);
    ck_assert_int_eq(httphead_has_token(&h, "X-Near", "up grade"), 1);
}
END_TEST

/* Parses "GET /?<query> HTTP/1.1" into *h; the head lives in a static
 * buffer until the next call. */
static void parse_query(const char *query, struct httphead *h)
{
    static char buf[512];
    int n = snprintf(buf, sizeof(buf), "GET /?%s HTTP/1.1\r\n\r\n", query);
    ck_assert(n > 0 && (size_t)n < sizeof(buf));
    size_t head_len;
    ck_assert_msg(httphead_parse(buf, (size_t)n, h, &head_len) == HTTPHEAD_OK, "query %s", query);
}

START_TEST(query_args)
{
    struct httphead h;
    char out[32];

    parse_query("a=1&b=&c", &h);
    ck_assert_int_eq(httphead_query_arg(&h, "a", out, sizeof(out)), 1);
    ck_assert_str_eq(out, "1");
    ck_assert_int_eq(httphead_query_arg(&h, "b", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(httphead_query_arg(&h, "c", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(httphead_query_arg(&h, "d", out, sizeof(out)), -1);
    ck_assert_int_eq(httphead_query_arg(&h, "", out, sizeof(out)), -1);
    ck_assert_int_eq(httphead_query_arg(&h, "a=1", out, sizeof(out)), -1);

    parse_query("name=J%C3%BCrgen+M%c3%bcller&sp=a%20b+c&plus=%2B&pct=100%25", &h);
    ck_assert_int_eq(httphead_query_arg(&h, "name", out, sizeof(out)), 15);
    ck_assert_str_eq(out, "J\xc3\xbcrgen M\xc3\xbcller");
    ck_assert_int_eq(httphead_query_arg(&h, "sp", out, sizeof(out)), 5);
    ck_assert_str_eq(out, "a b c");
    ck_assert_int_eq(httphead_query_arg(&h, "plus", out, sizeof(out)), 1);
    ck_assert_str_eq(out, "+");
    ck_assert_int_eq(httphead_query_arg(&h, "pct", out, sizeof(out)), 4);
    ck_assert_str_eq(out, "100%");

    /* Whole names only: an argument that ends with the name is another. */
    parse_query("xuser_id=1&user_id=2", &h);
    ck_assert_int_eq(httphead_query_arg(&h, "user_id", out, sizeof(out)), 1);
    ck_assert_str_eq(out, "2");
    ck_assert_int_eq(httphead_query_arg(&h, "xuser_id", out, sizeof(out)), 1);
    ck_assert_str_eq(out, "1");
    ck_assert_int_eq(httphead_query_arg(&h, "user", out, sizeof(out)), -1);
    ck_assert_int_eq(httphead_query_arg(&h, "id", out, sizeof(out)), -1);
    parse_query("user_idx=1", &h);
    ck_assert_int_eq(httphead_query_arg(&h, "user_id", out, sizeof(out)), -1);
    /* A name that appears as another argument's value is not that argument. */
    parse_query("a=user_id&user_id", &h);
    ck_assert_int_eq(httphead_query_arg(&h, "user_id", out, sizeof(out)), 0);

    /* The first one wins; empty pieces are skipped; '=' in a value stays. */
    parse_query("&&k=first&k=second&&e=x=y&", &h);
    ck_assert_int_eq(httphead_query_arg(&h, "k", out, sizeof(out)), 5);
    ck_assert_str_eq(out, "first");
    ck_assert_int_eq(httphead_query_arg(&h, "e", out, sizeof(out)), 3);
    ck_assert_str_eq(out, "x=y");
    ck_assert_int_eq(httphead_query_arg(&h, "", out, sizeof(out)), -1);
    parse_query("=v&a", &h);
    ck_assert_int_eq(httphead_query_arg(&h, "", out, sizeof(out)), 1);
    ck_assert_str_eq(out, "v");

    /* Names are compared as written. */
    parse_query("Token=1&t%6Fken=2", &h);
    ck_assert_int_eq(httphead_query_arg(&h, "token", out, sizeof(out)), -1);
    ck_assert_int_eq(httphead_query_arg(&h, "Token", out, sizeof(out)), 1);
}
END_TEST

START_TEST(query_args_bad)
{
    struct httphead h;
    char out[8];

    parse_query("a=%zz&b=%4&c=%&d=%4g&e=ok%&f=%00&g=%2", &h);
    static const char *bad[] = {"a", "b", "c", "d", "e", "f", "g"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(out, 'x', sizeof(out));
        ck_assert_msg(httphead_query_arg(&h, bad[i], out, sizeof(out)) == -2, "arg %s", bad[i]);
        ck_assert_msg(out[0] == '\0', "arg %s leaves out unterminated", bad[i]);
    }
    /* A bad escape at the very end of the target. */
    parse_query("t=%4", &h);
    ck_assert_int_eq(httphead_query_arg(&h, "t", out, sizeof(out)), -2);
    parse_query("t=%", &h);
    ck_assert_int_eq(httphead_query_arg(&h, "t", out, sizeof(out)), -2);

    /* The decoded value and its NUL must fit. */
    parse_query("s=1234567&t=12345678&u=%41%41%41%41%41%41%41", &h);
    ck_assert_int_eq(httphead_query_arg(&h, "s", out, sizeof(out)), 7);
    ck_assert_str_eq(out, "1234567");
    ck_assert_int_eq(httphead_query_arg(&h, "t", out, sizeof(out)), -2);
    ck_assert_int_eq(httphead_query_arg(&h, "u", out, sizeof(out)), 7);
    ck_assert_str_eq(out, "AAAAAAA");
    ck_assert_int_eq(httphead_query_arg(&h, "s", out, 7), -2);
    ck_assert_int_eq(httphead_query_arg(&h, "s", out, 1), -2);
    ck_assert_int_eq(httphead_query_arg(&h, "s", out, 0), -2);
    parse_query("e=", &h);
    ck_assert_int_eq(httphead_query_arg(&h, "e", out, 1), 0);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(httphead_query_arg(&h, "e", out, 0), -2);
    /* Absence is reported whatever the size. */
    ck_assert_int_eq(httphead_query_arg(&h, "zz", out, 0), -1);

    /* No query at all, or an empty one. */
    struct httphead none;
    size_t n;
    static const char noq[] = "GET /ws HTTP/1.1\r\n\r\n";
    ck_assert_int_eq(httphead_parse(noq, sizeof(noq) - 1, &none, &n), HTTPHEAD_OK);
    ck_assert_int_eq(httphead_query_arg(&none, "a", out, sizeof(out)), -1);
    parse_query("", &h);
    ck_assert_int_eq(httphead_query_arg(&h, "a", out, sizeof(out)), -1);
}
END_TEST

/* Repeated headers are counted whatever their case, and only whole names. */
START_TEST(header_counts)
{
    static const char s[] = "GET /ws HTTP/1.1\r\n"
                            "Authorization: Bearer a\r\n"
                            "Host: x\r\n"
                            "authorization: Bearer b\r\n"
                            "Authorization-X: c\r\n"
                            "AUTHORIZATION:\r\n"
                            "\r\n";
    struct httphead h;
    size_t n;
    ck_assert_int_eq(httphead_parse(s, sizeof(s) - 1, &h, &n), HTTPHEAD_OK);
    ck_assert_uint_eq(httphead_count(&h, "Authorization"), 3); /* an empty one counts */
    ck_assert_uint_eq(httphead_count(&h, "host"), 1);
    ck_assert_uint_eq(httphead_count(&h, "Authorization-X"), 1);
    ck_assert_uint_eq(httphead_count(&h, "Authorizatio"), 0);
    ck_assert_uint_eq(httphead_count(&h, "Origin"), 0);
    static const char none[] = "GET /ws HTTP/1.1\r\n\r\n";
    ck_assert_int_eq(httphead_parse(none, sizeof(none) - 1, &h, &n), HTTPHEAD_OK);
    ck_assert_uint_eq(httphead_count(&h, "Authorization"), 0);
}
END_TEST

/* Query arguments are counted as httphead_query_arg finds them. */
START_TEST(query_counts)
{
    struct httphead h;
    parse_query("token=a&since=1-0&token=b", &h);
    ck_assert_uint_eq(httphead_query_count(&h, "token"), 2);
    ck_assert_uint_eq(httphead_query_count(&h, "since"), 1);
    ck_assert_uint_eq(httphead_query_count(&h, "user_id"), 0);
    /* present without a value, or empty, still counts */
    parse_query("user_id=u1&user_id&user_id=", &h);
    ck_assert_uint_eq(httphead_query_count(&h, "user_id"), 3);
    /* whole names only, as written; empty pieces name nothing */
    parse_query("xuser_id=1&user_id=2&user_idx=3&&User_id=4&user%5Fid=5&a=user_id", &h);
    ck_assert_uint_eq(httphead_query_count(&h, "user_id"), 1);
    ck_assert_uint_eq(httphead_query_count(&h, ""), 0);
    parse_query("&&k=1&&k=2&k", &h);
    ck_assert_uint_eq(httphead_query_count(&h, "k"), 3);
    /* a bad escape in a value does not hide the argument */
    parse_query("token=%zz&token=ok", &h);
    ck_assert_uint_eq(httphead_query_count(&h, "token"), 2);
    parse_query("", &h);
    ck_assert_uint_eq(httphead_query_count(&h, "token"), 0);
    struct httphead none;
    size_t n;
    static const char noq[] = "GET /ws HTTP/1.1\r\n\r\n";
    ck_assert_int_eq(httphead_parse(noq, sizeof(noq) - 1, &none, &n), HTTPHEAD_OK);
    ck_assert_uint_eq(httphead_query_count(&none, "token"), 0);
}
END_TEST

/* ---- requests served by libwebsockets ---- */

/* httphead_body_framing of a head made of request line line and header
 * lines fields (each ending in CRLF); *why_out (if not NULL) its reason. */
static int framing(const char *line, const char *fields, const char **why_out)
{
    char buf[1024];
    int n = snprintf(buf, sizeof(buf), "%s\r\n%s\r\n", line, fields);
    ck_assert(n > 0 && (size_t)n < sizeof(buf));
    struct httphead h;
    size_t head_len;
    char *copy;
    ck_assert_int_eq(parse_copy(buf, (size_t)n, &h, &head_len, &copy), HTTPHEAD_OK);
    const char *why = NULL;
    int st = httphead_body_framing(&h, &why);
    ck_assert_msg(st == 0 || (why && why[strlen(why) - 1] == '\n'), "status %d has no reason", st);
    free(copy);
    if (why_out)
        *why_out = why;
    return st;
}

START_TEST(body_framing)
{
    static const char post[] = "POST /publish HTTP/1.1";
    static const struct {
        const char *line, *fields;
        int want;
    } cases[] = {
        /* Taken: a length, or a method whose body is empty without one. */
        {post, "Content-Length: 12\r\n", 0},
        {post, "content-length:0\r\n", 0},
        {post, "Content-Length:   7   \r\n", 0},
        {"PUT /x HTTP/1.1", "Content-Length: 1\r\n", 0},
        {"GET /healthz HTTP/1.1", "Host: a\r\n", 0},
        {"GET /healthz HTTP/1.0", "", 0},
        {"HEAD /metrics HTTP/1.1", "", 0},
        {"DELETE /x HTTP/1.1", "", 0},
        {"GET /x HTTP/1.1", "Content-Length: 3\r\n", 0},
        {post, "Content-Length: 999999999999999999\r\n", 0}, /* 18 digits */
        /* Both framings: a smuggling shape, whatever the order or case. */
        {post, "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400},
        {post, "transfer-encoding: chunked\r\ncontent-length: 5\r\n", 400},
        {post, "Content-Length: 5\r\nTransfer-Encoding: identity\r\n", 400},
        {"GET /healthz HTTP/1.1", "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", 400},
        /* Lengths that are not one plain number. */
        {post, "Content-Length: 5\r\nContent-Length: 5\r\n", 400},
        {post, "Content-Length: 5\r\nContent-Length: 6\r\n", 400},
        {post, "Content-Length: 5, 5\r\n", 400},
        {post, "Content-Length: +5\r\n", 400},
        {post, "Content-Length: -1\r\n", 400},
        {post, "Content-Length: 0x10\r\n", 400},
        {post, "Content-Length: 5 6\r\n", 400},
        {post, "Content-Length:\r\n", 400},
        {post, "Content-Length: 1000000000000000000\r\n", 400}, /* 19 digits */
        {post, "Content-Length: 99999999999999999999999\r\n", 400},
        /* No length where a body is expected, or a chunked one. */
        {post, "Transfer-Encoding: chunked\r\n", 411},
        {post, "Transfer-Encoding: gzip, chunked\r\n", 411},
        {"GET /healthz HTTP/1.1", "Transfer-Encoding: chunked\r\n", 411},
        {post, "", 411},
        {post, "Host: a\r\nAuthorization: Bearer k\r\n", 411},
        {"PUT /x HTTP/1.1", "", 411},
        {"PATCH /x HTTP/1.1", "", 411},
        {"POST /publish HTTP/1.0", "", 411},
        /* Methods are case-sensitive: "post" is some other method. */
        {"post /publish HTTP/1.1", "", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int st = framing(cases[i].line, cases[i].fields, NULL);
        ck_assert_msg(st == cases[i].want, "%s / %s: %d, want %d", cases[i].line, cases[i].fields,
                      st, cases[i].want);
    }
    const char *why;
    framing(post, "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", &why);
    ck_assert_str_eq(why, "both Content-Length and Transfer-Encoding\n");
    framing(post, "", &why);
    ck_assert_str_eq(why, "Content-Length required\n");
}
END_TEST

/* httphead_screen of the first len bytes of s, from an exact-size copy. */
static int screen(const char *s, size_t len, size_t max, const char **why)
{
    char *copy = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, s, len);
    *why = NULL;
    int st = httphead_screen(copy, len, max, why);
    free(copy);
    return st;
}

START_TEST(screen_first_request)
{
    const char *why;
    static const char ok[] = "POST /publish HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
    size_t head = sizeof(ok) - 1 - 2;
    ck_assert_int_eq(screen(ok, sizeof(ok) - 1, 1024, &why), 0);
    /* Every prefix of the head waits for more; the body does not matter. */
    for (size_t len = 0; len < head; len++)
        ck_assert_msg(screen(ok, len, 1024, &why) == HTTPHEAD_INCOMPLETE, "prefix %zu", len);
    ck_assert_int_eq(screen(ok, head, 1024, &why), 0);
    /* A head of exactly max bytes is taken; one byte more is too large,
     * and so is an unfinished head that has reached max. Bytes past max
     * are never looked at, even when they would end the head. */
    ck_assert_int_eq(screen(ok, head, head, &why), 0);
    ck_assert_int_eq(screen(ok, head, head - 1, &why), 431);
    ck_assert_str_eq(why, "request head too large\n");
    ck_assert_int_eq(screen(ok, head - 1, head - 1, &why), 431);
    ck_assert_int_eq(screen(ok, head - 2, head - 1, &why), HTTPHEAD_INCOMPLETE);

    static const char bad[] = "GET /healthz HTTP/1.1\r\nHost : a\r\n\r\n";
    ck_assert_int_eq(screen(bad, sizeof(bad) - 1, 1024, &why), 400);
    ck_assert_str_eq(why, "malformed request\n");
    static const char smuggle[] = "POST /publish HTTP/1.1\r\nContent-Length: 4\r\n"
                                  "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    ck_assert_int_eq(screen(smuggle, sizeof(smuggle) - 1, 1024, &why), 400);
    static const char chunked[] = "POST /publish HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    ck_assert_int_eq(screen(chunked, sizeof(chunked) - 1, 1024, &why), 411);

    /* More header lines than are kept: the lines past them are never
     * seen, so the head cannot be vouched for. */
    char many[4096];
    size_t n = (size_t)snprintf(many, sizeof(many), "GET /healthz HTTP/1.1\r\n");
    for (int i = 0; i <= HTTPHEAD_MAX_HEADERS; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "X-H%d: v\r\n", i);
    n += (size_t)snprintf(many + n, sizeof(many) - n, "\r\n");
    ck_assert_int_eq(screen(many, n, sizeof(many), &why), 431);
    ck_assert_str_eq(why, "too many headers\n");
}
END_TEST

static Suite *httphead_suite(void)
{
    Suite *s = suite_create("httphead");
    TCase *parse = tcase_create("parse");
    tcase_add_test(parse, browser_upgrade);
    tcase_add_test(parse, request_lines);
    tcase_add_test(parse, header_values_trimmed);
    tcase_add_test(parse, header_lookup_first_wins);
    tcase_add_test(parse, bare_lf);
    tcase_add_test(parse, incomplete_every_prefix);
    tcase_add_test(parse, bad_header_lines);
    tcase_add_test(parse, too_many_headers);
    tcase_add_test(parse, head_len_excludes_body);
    tcase_add_test(parse, byte_classes);
    tcase_add_test(parse, header_counts);
    suite_add_tcase(s, parse);
    TCase *lists = tcase_create("tokens");
    tcase_add_test(lists, token_lists);
    suite_add_tcase(s, lists);
    TCase *query = tcase_create("query");
    tcase_add_test(query, query_args);
    tcase_add_test(query, query_args_bad);
    tcase_add_test(query, query_counts);
    suite_add_tcase(s, query);
    TCase *lws = tcase_create("lws");
    tcase_add_test(lws, body_framing);
    tcase_add_test(lws, screen_first_request);
    suite_add_tcase(s, lws);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(httphead_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
