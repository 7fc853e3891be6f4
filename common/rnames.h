/* rnames: every Redis key and channel name of README.md "Publishing" and "Presence", built in
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
/* The presence events stream (README.md "Presence events"): one key. */
int rnames_presence_events(char *buf, size_t size, const char *prefix);

/* A connection's member in its account's presence set:
 * "<node id>/<conn id>", so that members of different nodes never collide
 * and each node can refresh and remove its own. Node ids never hold a '/'
 * (config.c allows [A-Za-z0-9_.:-]), so the first '/' splits it. */
int rnames_presence_member(char *buf, size_t size, const char *node_id, const char *conn_id);

/* Splits a presence member of len bytes at its first '/': *node (node_len
 * bytes) and *conn (conn_len bytes, up to len) point into member. Returns
 * 1, or 0 when there is no '/' (then *node is all of member and *conn the
 * empty string at its end). */
int rnames_parse_presence_member(const char *member, size_t len, const char **node,
                                 size_t *node_len, const char **conn, size_t *conn_len);

/* If channel is an account channel under prefix, points *account at the
 * account id inside it, sets *len and returns 1; otherwise returns 0. */
int rnames_parse_account_channel(const char *channel, size_t channel_len, const char *prefix,
                                 const char **account, size_t *len);

#endif
