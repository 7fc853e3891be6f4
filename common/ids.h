/* ids: connection ids unique across nodes and restarts.
 *
 * An id is 24 lowercase hex digits: 48 bits of the wall clock in ms at
 * creation, then 48 bits from a per-process random base plus a counter. Two
 * nodes (or two runs of one node) would have to draw the same 48-bit random
 * base and create ids in the same millisecond to collide. */
#ifndef NOTIFY_IDS_H
#define NOTIFY_IDS_H

#include <stddef.h>
#include <stdint.h>

#define CONN_ID_LEN 24

struct idgen {
    uint64_t base;    /* random, drawn once from getrandom() */
    uint64_t counter; /* incremented per id */
};

/* Seeds the generator; returns -1 if the kernel gave no randomness. */
int idgen_init(struct idgen *g);

/* Writes CONN_ID_LEN hex digits and a NUL into out (size > CONN_ID_LEN). */
void idgen_next(struct idgen *g, char *out, uint64_t now_ms);

#endif
