/* notify-gateway: WebSocket push notifications, delivered from Redis. */
#include <signal.h>
#include <stdlib.h>

#include "auth.h"
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
    /* A key file that is no usable key is a bad flag like any other (exit
     * 2, one line naming it), found before anything starts; only auth
     * knows what it takes. */
    char why[160];
    if (cfg.jwt_public_key && auth_check_public_key(cfg.jwt_public_key, why, sizeof(why)) < 0) {
        rc = config_bad_flag("notify-gateway", "jwt-public-key", why, cfg.jwt_public_key);
        config_free(&cfg);
        return rc;
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
