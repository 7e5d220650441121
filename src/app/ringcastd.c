/*
 * ringcastd: the server. Reads the configuration, starts the server, and
 * waits for signals: SIGTERM/SIGINT drain and stop, SIGHUP reloads the
 * configuration (src/ARCHITECTURE.md §8.1). Under systemd
 * (deploy/ringcastd.service, Type=notify) it says READY, RELOADING and
 * STOPPING, and pings the watchdog while its io threads keep turning.
 */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "app/server.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/stats.h"
#include "ringcast/config.h"

#define RC_KEPT_MAX 1024u /* names of keys a reload could not change, for the log line */

/* The allocator's options (ARCHITECTURE §8, "allocator"). jemalloc, which
 * ringcastd links (CMake RC_JEMALLOC), reads this symbol before main; the
 * environment's MALLOC_CONF is applied after it and may override it. A page
 * freed is given back to the system dirty_decay_ms later only when
 * something purges it: without background threads that happens inside
 * malloc and free calls of the same arena, so the pages of an arena its
 * threads stopped using (a finished compaction, a burst of connections)
 * stay resident, also while the server is idle. With them, a jemalloc
 * thread purges every arena on time. dirty_decay_ms is 2 s, not jemalloc's
 * 10 s: the store's folds and RocksDB's flushes free tens of MB a second
 * under a flood, and 10 s of them held about 100 MB resident (bench/RESULTS.md,
 * *The tick log*); 2 s cost no measurable CPU there. Unused without jemalloc. */
#define RC_MALLOC_CONF "background_thread:true,dirty_decay_ms:2000"
const char *malloc_conf = RC_MALLOC_CONF;

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

/* SIGHUP: the file and the environment read again (flags still win). A
 * configuration that does not load changes nothing. */
static void reload(rc_server *srv, int argc, char **argv)
{
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)(rc_clock_mono_ns() / 1000u));
    rc_config next;
    char err[512], kept[RC_KEPT_MAX];
    int r = rc_config_load(&next, argc, argv, err, sizeof(err));
    if (r != 0) {
        rc_stat_add_shared(&srv->reloads[1], 1);
        RC_LOG_ERROR("server", "event=reload_failed msg=\"%s\" effect=\"nothing changed\"", r < 0 ? err : "unexpected arguments");
    } else if (rc_server_reload(srv, &next, kept, sizeof(kept), err, sizeof(err)) != 0) {
        RC_LOG_ERROR("server", "event=reload_failed msg=\"%s\" effect=\"nothing changed\"", err);
    } else if (kept[0]) {
        RC_LOG_WARN("server", "event=reloaded kept=%s msg=\"these keys change only at a restart; they keep their value\"", kept);
    } else {
        RC_LOG_INFO("server", "event=reloaded");
    }
    sd_notify(0, "READY=1");
}

/* The watchdog is pinged only while every io thread keeps turning: each
 * period the io threads are woken, and the next period checks that each
 * one ran a loop turn since. */
typedef struct watchdog {
    uint64_t period_ns; /* half of WATCHDOG_USEC; 0: no watchdog */
    uint64_t *loops;    /* per io thread at the last check */
} watchdog;

static void watchdog_tick(rc_server *srv, watchdog *wd)
{
    bool alive = true;
    for (uint32_t i = 0; i < srv->n_io; i++) {
        uint64_t now = rc_stat_get(&srv->ios[i].stats.loops);
        if (now == wd->loops[i]) {
            alive = false;
            RC_LOG_ERROR("server", "event=watchdog_skipped io=%u msg=\"io thread made no loop turn in a watchdog period\"", i);
        }
        wd->loops[i] = now;
        rc_waker_kick(&srv->ios[i].waker);
    }
    if (alive)
        sd_notify(0, "WATCHDOG=1");
}

int main(int argc, char **argv)
{
    rc_config cfg;
    char err[512];
    int r = rc_config_load(&cfg, argc, argv, err, sizeof(err));
    if (r == 2) {
        fprintf(stderr, "ringcastd: %s\n", err);
        return 1;
    }
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
        sd_notifyf(0, "STATUS=start failed: %s", err);
        return 1;
    }
    RC_LOG_INFO("server",
            "event=listening tcp=%s:%u http=%s:%u admin=%s:%u shards=%u io_threads=%u version=%s",
            cfg.host, srv.port, cfg.host, srv.http_port, cfg.admin_host, rc_admin_port(srv.admin), cfg.shards,
            cfg.io_threads, RC_VERSION);
    sd_notifyf(0, "READY=1\nSTATUS=serving tcp %u, http %u, admin %u", srv.port, srv.http_port, rc_admin_port(srv.admin));

    watchdog wd = { 0 };
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        wd.period_ns = usec * 1000u / 2u;
        wd.loops = calloc(srv.n_io, sizeof(*wd.loops));
        if (!wd.loops)
            wd.period_ns = 0;
        RC_LOG_INFO("server", "event=watchdog period_ms=%llu", (unsigned long long)(wd.period_ns / RC_NS_PER_MS));
    }
    int sig = 0;
    for (;;) {
        if (wd.period_ns) {
            struct timespec ts = { (time_t)(wd.period_ns / 1000000000u), (long)(wd.period_ns % 1000000000u) };
            sig = sigtimedwait(&set, NULL, &ts);
            if (sig < 0) {
                if (errno == EAGAIN)
                    watchdog_tick(&srv, &wd);
                continue;
            }
        } else if (sigwait(&set, &sig) != 0) {
            continue;
        }
        if (sig == SIGHUP) {
            reload(&srv, argc, argv);
            continue;
        }
        break;
    }
    RC_LOG_INFO("server", "event=stopping signal=%s timeout_ms=%u", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                cfg.shutdown_timeout_ms);
    sd_notify(0, "STOPPING=1");
    uint64_t t0 = rc_clock_mono_ns();
    rc_server_stop(&srv);
    free(wd.loops);
    RC_LOG_INFO("server", "event=stopped drain_ms=%llu",
            (unsigned long long)((rc_clock_mono_ns() - t0) / RC_NS_PER_MS));
    return 0;
}
