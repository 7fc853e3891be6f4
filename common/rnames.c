#include "rnames.h"

#include <string.h>

/* Joins up to four pieces (NULL ends early) into buf. Names are built on
 * hot paths (a subscribe per account, a presence key per refreshed
 * account), where snprintf's format parsing showed in profiles. */
static int join(char *buf, size_t size, const char *a, const char *b, const char *c, const char *d)
{
    const char *parts[] = {a, b, c, d};
    size_t n = 0;
    for (size_t i = 0; i < 4 && parts[i]; i++) {
        size_t len = strlen(parts[i]);
        if (n + len >= size)
            return -1;
        memcpy(buf + n, parts[i], len);
        n += len;
    }
    if (size == 0)
        return -1;
    buf[n] = '\0';
    return (int)n;
}

int rnames_account_channel(char *buf, size_t size, const char *prefix, const char *account)
{
    return join(buf, size, prefix, "acct:{", account, "}");
}

int rnames_broadcast_channel(char *buf, size_t size, const char *prefix)
{
    return join(buf, size, prefix, "broadcast", NULL, NULL);
}

int rnames_presence(char *buf, size_t size, const char *prefix, const char *account)
{
    return join(buf, size, prefix, "presence:{", account, "}");
}

int rnames_presence_events(char *buf, size_t size, const char *prefix)
{
    return join(buf, size, prefix, "presence:events", NULL, NULL);
}

int rnames_stream(char *buf, size_t size, const char *prefix, const char *account)
{
    return join(buf, size, prefix, "stream:{", account, "}");
}

int rnames_nodes(char *buf, size_t size, const char *prefix)
{
    return join(buf, size, prefix, "nodes", NULL, NULL);
}

int rnames_node(char *buf, size_t size, const char *prefix, const char *node_id)
{
    return join(buf, size, prefix, "node:", node_id, NULL);
}

int rnames_presence_member(char *buf, size_t size, const char *node_id, const char *conn_id)
{
    return join(buf, size, node_id, "/", conn_id, NULL);
}

int rnames_parse_presence_member(const char *member, size_t len, const char **node,
                                 size_t *node_len, const char **conn, size_t *conn_len)
{
    const char *slash = memchr(member, '/', len);
    *node = member;
    if (!slash) {
        *node_len = len;
        *conn = member + len;
        *conn_len = 0;
        return 0;
    }
    *node_len = (size_t)(slash - member);
    *conn = slash + 1;
    *conn_len = len - *node_len - 1;
    return 1;
}

int rnames_parse_account_channel(const char *channel, size_t channel_len, const char *prefix,
                                 const char **account, size_t *len)
{
    size_t plen = strlen(prefix);
    static const char mid[] = "acct:{";
    size_t mlen = sizeof(mid) - 1;
    if (channel_len < plen + mlen + 2 || memcmp(channel, prefix, plen) != 0 ||
        memcmp(channel + plen, mid, mlen) != 0 || channel[channel_len - 1] != '}')
        return 0;
    *account = channel + plen + mlen;
    *len = channel_len - plen - mlen - 1;
    return 1;
}
