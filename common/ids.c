#include "ids.h"

#include <sys/random.h>

int idgen_init(struct idgen *g)
{
    if (getrandom(&g->base, sizeof(g->base), 0) != (ssize_t)sizeof(g->base))
        return -1;
    g->counter = 0;
    return 0;
}

/* The low 48 bits of v as 12 lowercase hex digits, zero-padded, without
 * snprintf's format parsing (this runs on every connect). */
static void hex48(char *out, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 11; i >= 0; i--) {
        out[i] = digits[v & 0xF];
        v >>= 4;
    }
}

void idgen_next(struct idgen *g, char *out, uint64_t now_ms)
{
    uint64_t low = (g->base + g->counter++) & 0xFFFFFFFFFFFFULL;
    hex48(out, now_ms);
    hex48(out + 12, low);
    out[CONN_ID_LEN] = '\0';
}
