/* registry: the node's connections and the accounts they belong to.
 *
 * connection id -> session and account id -> its sessions, both O(1) to
 * add and remove (uthash tables, intrusive lists). The registry owns the
 * account entries; sessions are owned by the session layer (session.h),
 * which links them in and out. It knows nothing of
 * Redis: callers learn from the return values when an account appears or
 * disappears on this node and subscribe or unsubscribe accordingly. */
#ifndef NOTIFY_REGISTRY_H
#define NOTIFY_REGISTRY_H

#include <stddef.h>
#include <stdint.h>
#include <uthash.h>

#include "session.h"

struct account {
    UT_hash_handle hh;     /* registry: account id -> account */
    struct session *conns; /* its connections on this node */
    uint32_t n_conns;      /* length of conns */
    uint16_t id_len;       /* length of id */
    uint8_t subscribed;    /* Redis acknowledged its channel */
    char id[];             /* account id, NUL-terminated */
};

struct registry {
    struct session *by_id;    /* every registered connection */
    struct account *accounts; /* every account with a connection here */
    struct account *walk;     /* registry_walk_next's next account; NULL = from the start */
    uint32_t n_conns;         /* connections registered */
    uint32_t n_accounts;      /* accounts present */
    uint32_t max_conns;       /* 0 = no limit */
    uint32_t max_per_account; /* 0 = no limit */
};

enum registry_verdict {
    REGISTRY_OK = 0,
    REGISTRY_NODE_FULL = 1,    /* --max-connections reached: 503 */
    REGISTRY_ACCOUNT_FULL = 2, /* --max-connections-per-account reached: 429 */
};

void registry_init(struct registry *r, uint32_t max_conns, uint32_t max_per_account);

/* Whether one more connection of account would fit. */
enum registry_verdict registry_check(const struct registry *r, const char *account);

/* Registers c (its id must be set) under account. Returns 1 when the
 * account is new on this node, 0 when it already had connections, -1 when
 * out of memory or over a limit (registry_check first). */
int registry_add(struct registry *r, struct session *c, const char *account);

/* Unregisters c. Returns 1 when it was its account's last connection (the
 * account entry is then freed and *gone_id receives a copy of its id, to
 * be freed by the caller), 0 otherwise, -1 if c was not registered. */
int registry_remove(struct registry *r, struct session *c, char **gone_id);

struct account *registry_find_account(const struct registry *r, const char *id, size_t len);
struct session *registry_find_session(const struct registry *r, const char *id);

/* A round-robin walk over the accounts, a few at a time (periodic work
 * spread out without scanning the table each time): returns the account
 * after the one returned last, starting over after the last one, or NULL
 * when there is none. Removing an account moves the walk past it; an
 * account added meanwhile is reached before the walk starts over. */
struct account *registry_walk_next(struct registry *r);

/* Frees every account entry (connections are not touched). */
void registry_clear(struct registry *r);

#endif
