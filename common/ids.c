#include "ids.h"

#include <stdio.h>
#include <sys/random.h>

int idgen_init(struct idgen *g)
{
    if (getrandom(&g->base, sizeof(g->base), 0) != (ssize_t)sizeof(g->base))
        return -1;
    g->counter = 0;
    return 0;
}

void idgen_next(struct idgen *g, char *out, uint64_t now_ms)
{
    uint64_t low = (g->base + g->counter++) & 0xFFFFFFFFFFFFULL;
    snprintf(out, CONN_ID_LEN + 1, "%012llx%012llx",
             (unsigned long long)(now_ms & 0xFFFFFFFFFFFFULL), (unsigned long long)low);
}
