#include "registry.h"

#include <stdlib.h>
#include <string.h>

void registry_init(struct registry *r, uint32_t max_conns, uint32_t max_per_account)
{
    memset(r, 0, sizeof(*r));
    r->max_conns = max_conns;
    r->max_per_account = max_per_account;
}

struct account *registry_find_account(const struct registry *r, const char *id, size_t len)
{
    struct account *a = NULL;
    HASH_FIND(hh, r->accounts, id, len, a);
    return a;
}

struct session *registry_find_session(const struct registry *r, const char *id)
{
    struct session *c = NULL;
    HASH_FIND_STR(r->by_id, id, c);
    return c;
}

enum registry_verdict registry_check(const struct registry *r, const char *account)
{
    if (r->max_conns && r->n_conns >= r->max_conns)
        return REGISTRY_NODE_FULL;
    if (r->max_per_account) {
        const struct account *a = registry_find_account(r, account, strlen(account));
        if (a && a->n_conns >= r->max_per_account)
            return REGISTRY_ACCOUNT_FULL;
    }
    return REGISTRY_OK;
}

/* uthash doubles its buckets only once some chain reaches 10, so a hit
 * reads several entries, each a cache miss, and every delivery looks its
 * account up (the largest user-space cost in a profile under load:
 * BENCHMARKS.md). Doubling them as soon as there are more accounts than
 * buckets keeps a hit near one entry and a half, for 16 bytes a bucket. */
static void accounts_keep_sparse(struct registry *r)
{
    UT_hash_table *t = r->accounts->hh.tbl;
    if (t->num_items > t->num_buckets && !t->noexpand) {
        int oomed = 0; /* uthash exits when out of memory, as in HASH_ADD */
        HASH_EXPAND_BUCKETS(&r->accounts->hh, t, oomed);
        (void)oomed;
    }
}

int registry_add(struct registry *r, struct session *c, const char *account)
{
    if (registry_check(r, account) != REGISTRY_OK)
        return -1;
    size_t len = strlen(account);
    struct account *a = registry_find_account(r, account, len);
    int is_new = 0;
    if (!a) {
        a = calloc(1, sizeof(*a) + len + 1);
        if (!a)
            return -1;
        memcpy(a->id, account, len + 1);
        a->id_len = (uint16_t)len;
        HASH_ADD(hh, r->accounts, id, len, a);
        accounts_keep_sparse(r);
        r->n_accounts++;
        is_new = 1;
    }
    c->acct = a;
    c->acct_prev = NULL;
    c->acct_next = a->conns;
    if (a->conns)
        a->conns->acct_prev = c;
    a->conns = c;
    a->n_conns++;
    HASH_ADD_STR(r->by_id, id, c);
    r->n_conns++;
    return is_new;
}

int registry_remove(struct registry *r, struct session *c, char **gone_id)
{
    struct account *a = c->acct;
    if (!a)
        return -1;
    HASH_DELETE(hh, r->by_id, c);
    r->n_conns--;
    if (c->acct_prev)
        c->acct_prev->acct_next = c->acct_next;
    else
        a->conns = c->acct_next;
    if (c->acct_next)
        c->acct_next->acct_prev = c->acct_prev;
    c->acct = NULL;
    c->acct_prev = c->acct_next = NULL;
    if (--a->n_conns > 0)
        return 0;
    if (r->walk == a)
        r->walk = a->hh.next;
    HASH_DELETE(hh, r->accounts, a);
    r->n_accounts--;
    if (gone_id)
        *gone_id = strdup(a->id);
    free(a);
    return 1;
}

struct account *registry_walk_next(struct registry *r)
{
    struct account *a = r->walk ? r->walk : r->accounts;
    r->walk = a ? a->hh.next : NULL;
    return a;
}

void registry_clear(struct registry *r)
{
    struct account *a, *tmp;
    HASH_ITER(hh, r->accounts, a, tmp)
    {
        HASH_DELETE(hh, r->accounts, a);
        free(a);
    }
    HASH_CLEAR(hh, r->by_id);
    r->walk = NULL;
    r->n_accounts = 0;
    r->n_conns = 0;
}
