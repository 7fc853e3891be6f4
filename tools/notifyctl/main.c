/* notifyctl: see notifyctl.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notifyctl.h"

/* ----------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    struct args a = {0};
    args_environment(&a);
    int rc = args_parse(&a, argc, argv);
    if (rc < 0)
        rc = args_check(&a);
    struct target t;
    if (rc < 0)
        rc = target_resolve(&t, &a);
    if (rc >= 0) {
        free(a.pos);
        return rc;
    }
    struct session s;
    if (session_open(&s, &t) < 0) {
        free(a.pos);
        return EXIT_REDIS;
    }
    switch (a.cmd) {
    case CMD_PRESENCE:
        rc = cmd_presence(&s, &a);
        break;
    case CMD_NODES:
        rc = cmd_nodes(&s, &a);
        break;
    case CMD_PUBLISH:
        rc = cmd_publish(&s, &a);
        break;
    case CMD_RECEIPTS:
        rc = cmd_receipts(&s, &a);
        break;
    case CMD_UNDELIVERED:
        rc = cmd_undelivered(&s, &a);
        break;
    case CMD_UNACKED:
        rc = cmd_unacked(&s, &a);
        break;
    case CMD_NONE:
        rc = EXIT_USAGE;
        break;
    }
    session_close(&s);
    free(a.pos);
    /* stdout may be a closed pipe or a full disk: a lost answer is an error. */
    if (fflush(stdout) != 0) {
        fprintf(stderr, "%s: cannot write output: %s\n", PROG, strerror(errno));
        return rc ? rc : EXIT_REDIS;
    }
    return rc;
}
