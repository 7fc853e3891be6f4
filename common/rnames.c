#include "rnames.h"

#include <stdio.h>
#include <string.h>

static int fit(int n, size_t size)
{
    return (n < 0 || (size_t)n >= size) ? -1 : n;
}

int rnames_account_channel(char *buf, size_t size, const char *prefix, const char *account)
{
    return fit(snprintf(buf, size, "%sacct:{%s}", prefix, account), size);
}

int rnames_broadcast_channel(char *buf, size_t size, const char *prefix)
{
    return fit(snprintf(buf, size, "%sbroadcast", prefix), size);
}

int rnames_presence(char *buf, size_t size, const char *prefix, const char *account)
{
    return fit(snprintf(buf, size, "%spresence:{%s}", prefix, account), size);
}

int rnames_stream(char *buf, size_t size, const char *prefix, const char *account)
{
    return fit(snprintf(buf, size, "%sstream:{%s}", prefix, account), size);
}

int rnames_nodes(char *buf, size_t size, const char *prefix)
{
    return fit(snprintf(buf, size, "%snodes", prefix), size);
}

int rnames_node(char *buf, size_t size, const char *prefix, const char *node_id)
{
    return fit(snprintf(buf, size, "%snode:%s", prefix, node_id), size);
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
