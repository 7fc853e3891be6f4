/* rnames: every Redis key and channel name of contract section 5, built in
 * one place so that the gateway, notifyctl and the tests agree on them.
 * Account ids sit inside {} so all of an account's names share one Redis
 * Cluster slot. Each builder writes a NUL-terminated name into buf and
 * returns its length, or -1 when it does not fit. */
#ifndef NOTIFY_RNAMES_H
#define NOTIFY_RNAMES_H

#include <stddef.h>

#define RNAME_MAX 512

int rnames_account_channel(char *buf, size_t size, const char *prefix, const char *account);
int rnames_broadcast_channel(char *buf, size_t size, const char *prefix);
int rnames_presence(char *buf, size_t size, const char *prefix, const char *account);
int rnames_stream(char *buf, size_t size, const char *prefix, const char *account);
int rnames_nodes(char *buf, size_t size, const char *prefix);
int rnames_node(char *buf, size_t size, const char *prefix, const char *node_id);

/* If channel is an account channel under prefix, points *account at the
 * account id inside it, sets *len and returns 1; otherwise returns 0. */
int rnames_parse_account_channel(const char *channel, size_t channel_len, const char *prefix,
                                 const char **account, size_t *len);

#endif
