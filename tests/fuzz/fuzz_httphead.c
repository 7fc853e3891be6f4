/* libFuzzer target: httphead_parse, httphead_get, httphead_has_token and
 * httphead_query_arg. A parsed head is checked line by line against the
 * buffer it came from; lookups are compared with plain linear references
 * and query values with a separate percent-decoder. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "httphead.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static int inside(const char *p, size_t len, const char *buf, size_t buf_len)
{
    return p >= buf && p <= buf + buf_len && len <= (size_t)(buf + buf_len - p);
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static int same_name(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return 0;
    for (size_t i = 0; i < alen; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return 0;
    return 1;
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* A NUL-terminated copy of p[0..len), or NULL if p holds a NUL. */
static char *cstr(const char *p, size_t len)
{
    if (memchr(p, '\0', len))
        return NULL;
    char *s = malloc(len + 1);
    CHECK(s != NULL);
    memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)lower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Reference decoder: the decoded length into out (room for len + 1), or
 * -2 for a bad or NUL escape. */
static long ref_decode(const char *v, size_t len, char *out)
{
    size_t o = 0, i = 0;
    while (i < len) {
        if (v[i] == '%') {
            if (i + 2 >= len)
                return -2;
            int hi = hexval(v[i + 1]), lo = hexval(v[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -2;
            out[o++] = (char)(hi * 16 + lo);
            i += 3;
        } else {
            out[o++] = v[i] == '+' ? ' ' : v[i];
            i++;
        }
    }
    out[o] = '\0';
    return (long)o;
}

/* The head's lines, read again from the buffer, are the request line, one
 * line per field and the empty line, in that order. */
static void check_lines(const char *buf, size_t head_len, const struct httphead *h)
{
    size_t pos = 0, line_no = 0;
    while (pos < head_len) {
        const char *lf = memchr(buf + pos, '\n', head_len - pos);
        CHECK(lf != NULL);
        size_t end = (size_t)(lf - buf) + 1;
        size_t len = end - pos - 1;
        if (len > 0 && buf[pos + len - 1] == '\r')
            len--;
        if (line_no == 0) {
            CHECK(h->method == buf + pos);
            CHECK(len ==
                  h->method_len + 1 + h->path_len + (h->query ? 1 + h->query_len : 0) + 1 + 8);
            CHECK(memcmp(buf + pos + len - 8, "HTTP/1.", 7) == 0);
            CHECK(buf[pos + len - 1] == '0' + h->minor_version);
        } else if (line_no <= h->n_fields) {
            const struct httphead_field *f = &h->fields[line_no - 1];
            CHECK(f->name == buf + pos);
            CHECK(f->name[f->name_len] == ':');
            CHECK(f->value >= f->name + f->name_len + 1);
            CHECK(f->value + f->value_len <= buf + pos + len);
            /* only spaces and tabs were trimmed */
            for (const char *p = f->name + f->name_len + 1; p < f->value; p++)
                CHECK(is_ows(*p));
            for (const char *p = f->value + f->value_len; p < buf + pos + len; p++)
                CHECK(is_ows(*p));
        } else {
            CHECK(len == 0);
            CHECK(end == head_len);
        }
        line_no++;
        pos = end;
    }
    CHECK(line_no == h->n_fields + 2);
}

static void check_fields(const char *buf, size_t head_len, const struct httphead *h)
{
    CHECK(h->method_len > 0 && inside(h->method, h->method_len, buf, head_len));
    CHECK(inside(h->path, h->path_len, buf, head_len));
    CHECK(h->path == h->method + h->method_len + 1);
    CHECK(!memchr(h->path, '?', h->path_len));
    if (h->query) {
        CHECK(inside(h->query, h->query_len, buf, head_len));
        CHECK(h->query == h->path + h->path_len + 1 && h->query[-1] == '?');
    } else {
        CHECK(h->query_len == 0);
    }
    CHECK(h->minor_version == 0 || h->minor_version == 1);
    CHECK(h->n_fields <= HTTPHEAD_MAX_HEADERS);
    for (size_t i = 0; i < h->n_fields; i++) {
        const struct httphead_field *f = &h->fields[i];
        CHECK(f->name_len > 0 && inside(f->name, f->name_len, buf, head_len));
        CHECK(inside(f->value, f->value_len, buf, head_len));
        CHECK(!memchr(f->name, ':', f->name_len) && !memchr(f->value, '\n', f->value_len) &&
              !memchr(f->value, '\r', f->value_len));
        if (f->value_len > 0)
            CHECK(!is_ows(f->value[0]) && !is_ows(f->value[f->value_len - 1]));
    }
    check_lines(buf, head_len, h);
}

static void check_lookups(const struct httphead *h)
{
    for (size_t i = 0; i < h->n_fields; i++) {
        const struct httphead_field *f = &h->fields[i];
        char *name = cstr(f->name, f->name_len);
        CHECK(name != NULL);
        size_t first = 0;
        while (!same_name(h->fields[first].name, h->fields[first].name_len, f->name, f->name_len))
            first++;
        size_t len = 12345;
        const char *v = httphead_get(h, name, &len);
        CHECK(v == h->fields[first].value && len == h->fields[first].value_len);

        /* Every item of the list is found as a token. */
        const char *p = f->value;
        size_t left = f->value_len;
        for (int k = 0; k < 8 && left > 0; k++) {
            const char *comma = memchr(p, ',', left);
            size_t n = comma ? (size_t)(comma - p) : left;
            const char *t = p;
            size_t tn = n;
            while (tn > 0 && is_ows(t[0]))
                t++, tn--;
            while (tn > 0 && is_ows(t[tn - 1]))
                tn--;
            char *tok = cstr(t, tn);
            if (tok && tn > 0)
                CHECK(httphead_has_token(h, name, tok) == 1);
            free(tok);
            if (!comma)
                break;
            p = comma + 1;
            left -= n + 1;
        }
        free(name);
    }
    size_t len;
    CHECK(httphead_get(h, "\x01", &len) == NULL);
    CHECK(httphead_has_token(h, "\x01", "x") == 0);
}

static void check_query(const struct httphead *h)
{
    char tmp[8];
    if (!h->query) {
        CHECK(httphead_query_arg(h, "a", tmp, sizeof(tmp)) == -1);
        return;
    }
    size_t qlen = h->query_len;
    char *out = malloc(qlen + 1), *ref = malloc(qlen + 1);
    CHECK(out && ref);
    /* The target has no control characters: this name is never there. */
    CHECK(httphead_query_arg(h, "\x01", out, qlen + 1) == -1);

    const char *p = h->query;
    size_t left = qlen;
    for (int k = 0; k < 16 && left > 0; k++) {
        const char *amp = memchr(p, '&', left);
        size_t n = amp ? (size_t)(amp - p) : left;
        const char *eq = memchr(p, '=', n);
        size_t klen = eq ? (size_t)(eq - p) : n;
        if (n == 0) {
            /* An empty piece ("&&") names nothing. */
            if (!amp)
                break;
            p = amp + 1;
            left -= 1;
            continue;
        }
        char *name = cstr(p, klen);
        CHECK(name != NULL);
        /* The first argument of that name, found independently. */
        const char *q = h->query, *val = NULL;
        size_t qleft = qlen, vlen = 0;
        int found = 0;
        while (!found) {
            const char *a2 = memchr(q, '&', qleft);
            size_t n2 = a2 ? (size_t)(a2 - q) : qleft;
            const char *e2 = memchr(q, '=', n2);
            size_t k2 = e2 ? (size_t)(e2 - q) : n2;
            if (n2 > 0 && k2 == klen && memcmp(q, p, klen) == 0) {
                found = 1;
                val = e2 ? e2 + 1 : q + n2;
                vlen = e2 ? n2 - k2 - 1 : 0;
            }
            CHECK(found || a2 != NULL);
            if (!found) {
                qleft -= n2 + 1;
                q = a2 + 1;
            }
        }
        long want = ref_decode(val, vlen, ref);
        int got = httphead_query_arg(h, name, out, qlen + 1);
        CHECK(got == want);
        if (got >= 0) {
            CHECK((size_t)got <= vlen && strlen(out) == (size_t)got);
            CHECK(memcmp(out, ref, (size_t)got + 1) == 0);
            /* One byte short of room is refused. */
            CHECK(httphead_query_arg(h, name, out, (size_t)got) == -2);
            CHECK(httphead_query_arg(h, name, out, (size_t)got + 1) == got);
        } else {
            CHECK(out[0] == '\0');
        }
        free(name);
        if (!amp)
            break;
        p = amp + 1;
        left -= n + 1;
    }
    free(out);
    free(ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy so ASan catches any read past the end. */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);

    struct httphead h, g;
    size_t head_len = 777, n;
    enum httphead_result r = httphead_parse(buf, size, &h, &head_len);
    CHECK(r == HTTPHEAD_OK || r == HTTPHEAD_INCOMPLETE || r == HTTPHEAD_BAD ||
          r == HTTPHEAD_TOO_MANY);
    if (r == HTTPHEAD_OK) {
        CHECK(head_len >= 14 && head_len <= size && buf[head_len - 1] == '\n');
        check_fields(buf, head_len, &h);
        /* The head alone parses the same; anything after it is not read. */
        CHECK(httphead_parse(buf, head_len, &g, &n) == HTTPHEAD_OK && n == head_len);
        CHECK(g.n_fields == h.n_fields && g.query == h.query && g.path_len == h.path_len);
        check_lookups(&h);
        check_query(&h);
    } else {
        CHECK(head_len == 0);
    }

    /* Prefixes: INCOMPLETE until the head is whole, and a refusal only
     * ever stays a refusal. All of them for short inputs, some otherwise. */
    size_t end = r == HTTPHEAD_OK ? head_len : size;
    size_t step = end <= 128 ? 1 : end / 61 + 1;
    for (size_t k = 0; k < end; k += step) {
        size_t cut = k;
        enum httphead_result pr = httphead_parse(buf, cut, &g, &n);
        if (r == HTTPHEAD_OK || r == HTTPHEAD_INCOMPLETE)
            CHECK(pr == HTTPHEAD_INCOMPLETE);
        else
            CHECK(pr == HTTPHEAD_INCOMPLETE || pr == r);
    }
    free(buf);
    return 0;
}
