/*
 * ringcastd: the server. Reads the configuration, starts the server, and
 * waits for signals: SIGTERM/SIGINT drain and stop, SIGHUP is logged.
 */
#include <assert.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "app/server.h"
#include "core/clock.h"
#include "core/log.h"
#include "ringcast/config.h"

/* log_level and log_format hold one of the names rc_config_load accepts,
 * which are the names the logging facility parses. */
static void configure_logging(const rc_config *cfg)
{
    rc_log_level level = RC_LEVEL_INFO;
    rc_log_format format = RC_LOG_FORMAT_TEXT;
    int bad = rc_log_level_parse(cfg->log_level, &level) | rc_log_format_parse(cfg->log_format, &format);
    assert(bad == 0);
    (void)bad;
    rc_log_configure(level, format);
}

static void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int main(int argc, char **argv)
{
    rc_config cfg;
    char err[512];
    int r = rc_config_load(&cfg, argc, argv, err, sizeof(err));
    if (r != 0) {
        if (r < 0)
            fprintf(stderr, "ringcastd: %s\nTry 'ringcastd --help'.\n", err);
        return r < 0 ? 2 : 0;
    }
    configure_logging(&cfg);
    sigset_t set;
    block_signals(&set); /* before any thread starts, so all inherit the mask */

    static rc_server srv;
    if (rc_server_start(&srv, &cfg, err, sizeof(err)) != 0) {
        RC_LOG_ERROR("server", "event=start_failed msg=\"%s\"", err);
        return 1;
    }
    RC_LOG_INFO("server",
            "event=listening tcp=%s:%u http=%s:%u admin=%s:%u shards=%u io_threads=%u version=%s",
            cfg.host, srv.port, cfg.host, srv.http_port, cfg.admin_host, rc_admin_port(srv.admin), cfg.shards,
            cfg.io_threads, RC_VERSION);

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            RC_LOG_WARN("server", "event=sighup msg=\"live reload is not supported yet; restart to apply changes\"");
            continue;
        }
        RC_LOG_INFO("server", "event=stopping signal=%s timeout_ms=%u",
                sig == SIGTERM ? "SIGTERM" : "SIGINT", cfg.shutdown_timeout_ms);
        break;
    }
    uint64_t t0 = rc_clock_mono_ns();
    rc_server_stop(&srv);
    RC_LOG_INFO("server", "event=stopped drain_ms=%llu",
            (unsigned long long)((rc_clock_mono_ns() - t0) / RC_NS_PER_MS));
    return 0;
}
