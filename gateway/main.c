/* notify-gateway: WebSocket push notifications, delivered from Redis. */
#include <signal.h>
#include <stdlib.h>

#include "config.h"
#include "log.h"
#include "server.h"

int main(int argc, char **argv)
{
    struct config cfg;
    int rc = config_parse(&cfg, argc, argv, "notify-gateway");
    if (rc != 0) {
        config_free(&cfg);
        return rc == 1 ? 0 : 2;
    }
    log_set_level((enum log_level)cfg.log_level_value);
    /* A client vanishing mid-write must cost an EPIPE, not the process. */
    signal(SIGPIPE, SIG_IGN);
    static struct server srv;
    if (server_init(&srv, &cfg) < 0) {
        config_free(&cfg);
        return 1;
    }
    rc = server_run(&srv);
    config_free(&cfg);
    return rc;
}
