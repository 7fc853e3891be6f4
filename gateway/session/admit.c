/* admit: the checks every transport's handshake runs (session_admit in
 * session.h): draining, Origin, who the client is (auth.c), where it
 * resumes, the limits; each refusal a real HTTP status before any upgrade,
 * counted and logged at most once a second. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "httphead.h"
#include "log.h"
#include "net.h"
#include "registry.h"
#include "session.h"
#include "validate.h"
#include "wallclock.h"

/* The client's address: the peer, or behind a trusted proxy the address
 * the proxy appended last to X-Forwarded-For (earlier entries are whatever
 * the client claimed). */
const char *session_client_addr(const struct sessions *sx, const struct conn *c,
                                const struct httphead *h, char *buf, size_t size)
{
    size_t len;
    const char *xff = sx->cfg->trust_proxy && h ? httphead_get(h, "X-Forwarded-For", &len) : NULL;
    if (xff && len) {
        const char *last = xff + len;
        while (last > xff && last[-1] != ',')
            last--;
        while (last < xff + len && *last == ' ')
            last++;
        size_t n = (size_t)(xff + len - last);
        n = n < size - 1 ? n : size - 1;
        memcpy(buf, last, n);
        buf[n] = '\0';
        return buf;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    const void *addr = NULL;
    if (getpeername(conn_fd(c), (struct sockaddr *)&ss, &sl) == 0)
        addr = ss.ss_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                        : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
    if (!addr || !inet_ntop(ss.ss_family, addr, buf, (socklen_t)size))
        snprintf(buf, size, "-");
    return buf;
}

void session_reject(struct sessions *sx, struct conn *c, const struct httphead *h,
                    enum reject_reason why, int status, const char *body, const char *detail)
{
    char q[160], addr[64];
    sx->metrics->rejected[why]++;
    /* At most one line a second: a flood of bad tokens must not become a
     * flood of log lines. */
    uint64_t now = uv_now(sx->loop);
    if (log_enabled(LOG_DEBUG) || now - sx->reject_logged_at >= 1000) {
        log_info("handshake_rejected", "status=%d reason=%s client=%s detail=%s suppressed=%llu",
                 status, counters_reject_name(why),
                 session_client_addr(sx, c, h, addr, sizeof(addr)), log_quote(q, sizeof(q), detail),
                 (unsigned long long)sx->reject_unlogged);
        sx->reject_logged_at = now;
        sx->reject_unlogged = 0;
    } else {
        sx->reject_unlogged++;
    }
    conn_refuse(c, status, body);
}

static int origin_allowed(const struct sessions *sx, const struct httphead *h)
{
    if (!sx->n_origins)
        return 1;
    size_t len;
    const char *origin = httphead_get(h, "Origin", &len);
    if (!origin)
        return 0;
    for (size_t i = 0; i < sx->n_origins; i++)
        if (strlen(sx->origins[i]) == len && !memcmp(origin, sx->origins[i], len))
            return 1;
    return 0;
}

/* The token from "Authorization: Bearer" or, for browsers, ?token=, copied
 * NUL-terminated into buf. */
static const char *find_token(const struct httphead *h, char *buf, size_t size)
{
    size_t len;
    const char *v = httphead_get(h, "Authorization", &len);
    if (v && len > 7 && !strncasecmp(v, "Bearer ", 7)) {
        v += 7;
        len -= 7;
        while (len && *v == ' ')
            v++, len--;
        if (!len || len >= size)
            return NULL;
        memcpy(buf, v, len);
        buf[len] = '\0';
        return buf;
    }
    return httphead_query_arg(h, "token", buf, size) > 0 ? buf : NULL;
}

/* Where a resumed client's position comes from: a header (Last-Event-ID
 * on an event stream), which wins, or ?since=. Returns 0, or -1 after
 * refusing c. */
static int find_since(struct sessions *sx, struct conn *c, const struct httphead *h,
                      const char *since_header, struct session_admitted *a)
{
    char sbuf[64];
    a->since = (struct stream_id){0, 0};
    size_t hlen = 0;
    const char *hv = since_header ? httphead_get(h, since_header, &hlen) : NULL;
    if (hv && hlen) {
        if (hlen >= sizeof(sbuf) || stream_id_parse(hv, hlen, &a->since) < 0) {
            snprintf(sbuf, sizeof(sbuf), "%.*s", (int)(hlen < 63 ? hlen : 63), hv);
            session_reject(sx, c, h, REJECT_BAD_REQUEST, 400,
                           "Last-Event-ID must be a notification id <ms>-<seq>\n", sbuf);
            return -1;
        }
        a->has_since = 1;
        return 0;
    }
    int slen = httphead_query_arg(h, "since", sbuf, sizeof(sbuf));
    if (slen != -1 && (slen < 0 || stream_id_parse(sbuf, (size_t)slen, &a->since) < 0)) {
        session_reject(sx, c, h, REJECT_BAD_REQUEST, 400,
                       "since must be a notification id <ms>-<seq>\n", slen > 0 ? sbuf : "");
        return -1;
    }
    a->has_since = slen >= 0;
    return 0;
}

int session_admit(struct sessions *sx, struct conn *c, const struct httphead *h,
                  const char *since_header, struct session_admitted *a)
{
    if (sx->draining) {
        session_reject(sx, c, h, REJECT_DRAINING, 503, "node draining\n", "");
        return -1;
    }
    if (!origin_allowed(sx, h)) {
        session_reject(sx, c, h, REJECT_FORBIDDEN, 403, "origin not allowed\n", "");
        return -1;
    }
    a->exp = 0;
    if (sx->cfg->auth_mode == AUTH_NONE) {
        char id[512];
        if (httphead_query_count(h, "user_id") > 1) {
            session_reject(sx, c, h, REJECT_BAD_REQUEST, 400, "more than one user_id\n",
                           "user_id repeated");
            return -1;
        }
        int n = httphead_query_arg(h, "user_id", id, sizeof(id));
        if (n <= 0) {
            session_reject(sx, c, h, REJECT_BAD_REQUEST, 400, "missing user_id\n", "");
            return -1;
        }
        if (!validate_account_id(id, (size_t)n)) {
            session_reject(sx, c, h, REJECT_BAD_REQUEST, 400,
                           "user_id must be 1-128 bytes of [A-Za-z0-9_.@:-]\n", id);
            return -1;
        }
        memcpy(a->account, id, (size_t)n + 1);
    } else {
        if (httphead_count(h, "Authorization") > 1 || httphead_query_count(h, "token") > 1) {
            session_reject(sx, c, h, REJECT_BAD_REQUEST, 400, "more than one token\n",
                           "Authorization or token repeated");
            return -1;
        }
        char *buf = sx->token_buf; /* one thread: one buffer for every handshake */
        const char *token = find_token(h, buf, SESSION_TOKEN_MAX);
        const char *why = "missing token";
        int rc = token ? auth_verify(&sx->auth, token, strlen(token), wallclock_ms() / 1000,
                                     a->account, &a->exp, &why)
                       : -1;
        if (rc < 0) {
            session_reject(sx, c, h, REJECT_UNAUTHORIZED, 401, "invalid or missing token\n", why);
            return -1;
        }
    }
    if (find_since(sx, c, h, since_header, a) < 0)
        return -1;
    switch (registry_check(sx->registry, a->account)) {
    case REGISTRY_NODE_FULL:
        session_reject(sx, c, h, REJECT_NODE_FULL, 503, "node full\n", a->account);
        return -1;
    case REGISTRY_ACCOUNT_FULL:
        session_reject(sx, c, h, REJECT_ACCOUNT_FULL, 429, "too many connections for account\n",
                       a->account);
        return -1;
    case REGISTRY_OK:
        break;
    }
    return 0;
}
