/*
 * SIGHUP: the configuration read again, applied while serving
 * (src/ARCHITECTURE.md §8.1).
 *
 * The values io threads and shards use on their hot paths travel through
 * core/live.h (two slots and a version, acknowledged by every reader); the
 * rest that can change live is the main thread's, the log facility's, the
 * per-address table's (its own mutex) or the autoscaler's (scale_lock).
 * Keys that cannot change without a restart keep their value and are named
 * in the log line.
 */
#define _GNU_SOURCE
#include "app/server.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/stats.h"

#define RC_RELOAD_ACK_MS 2000u  /* every running io thread and shard applies a reload within this */
#define RC_RELOAD_POLL_US 500u

/* Keys that change live. Every other key keeps its value until a restart. */
static const char *const live_keys[] = {
    "conn_rate", "conn_burst", "group_rate", "group_burst", "outbound_high_bytes", "outbound_kill_bytes",
    "outbound_stall_ms", "hello_timeout_ms", "idle_timeout_ms", "max_queue_ms", "max_groups_per_session",
    "max_members_per_group", "max_reply_bytes", "history_ttl", "history_cache_mb", "snapshot_every", "snapshot_interval_ms",
    "max_connections_per_ip", "min_shards", "max_shards", "scale_interval_ms", "scale_cooldown_ms",
    "log_level", "log_format", "auth_secret",
};

static bool is_live(const char *key)
{
    for (size_t i = 0; i < sizeof(live_keys) / sizeof(live_keys[0]); i++)
        if (strcmp(live_keys[i], key) == 0)
            return true;
    return false;
}

void rc_server_live_values(const rc_config *c, rc_live_values *v)
{
    *v = (rc_live_values){
        .conn_rate = c->conn_rate, .conn_burst = c->conn_burst,
        .group_rate = c->group_rate, .group_burst = c->group_burst,
        .outbound_high_bytes = c->outbound_high_bytes, .outbound_kill_bytes = c->outbound_kill_bytes,
        .outbound_stall_ms = c->outbound_stall_ms,
        .hello_timeout_ms = c->hello_timeout_ms, .idle_timeout_ms = c->idle_timeout_ms,
        .max_queue_ms = c->max_queue_ms, .max_groups_per_session = c->max_groups_per_session,
        .max_members_per_group = c->max_members_per_group, .max_reply_bytes = c->max_reply_bytes,
        .history_ttl_ms = c->history_ttl * 1000u,
        .snapshot_every = c->snapshot_every, .snapshot_interval_ms = c->snapshot_interval_ms,
        .history_cache_bytes = (uint64_t)c->history_cache_mb << 20,
    };
    char err[128]; /* rc_config_load checked the list already */
    if (rc_token_keys_parse(&v->auth, c->auth_secret, err, sizeof(err)) != 0)
        memset(&v->auth, 0, sizeof(v->auth));
}

typedef struct kept_list {
    char *out;
    size_t len, used;
    const rc_config *next;
    const rc_server *s;
} kept_list;

static void note_kept(void *ud, const char *key)
{
    kept_list *k = ud;
    bool keep = !is_live(key);
    /* max_shards cannot pass what was set up at start: shards are kept in an array of that size. */
    if (strcmp(key, "max_shards") == 0 && k->next->max_shards > k->s->max_shards)
        keep = true;
    if (!keep || k->used + strlen(key) + 2 >= k->len)
        return;
    k->used += (size_t)snprintf(k->out + k->used, k->len - k->used, "%s%s", k->used ? "," : "", key);
}

/* Every running io thread and shard has applied the version in force. */
static bool all_acked(rc_server *s)
{
    uint64_t v = atomic_load_explicit(&s->live.version, memory_order_relaxed);
    for (uint32_t i = 0; i < s->n_io; i++)
        if (atomic_load_explicit(&s->ios[i].live_ack, memory_order_acquire) != v)
            return false;
    for (uint32_t i = 0; i < s->max_shards; i++)
        if (s->shards[i].started && atomic_load_explicit(&s->shards[i].live_ack, memory_order_acquire) != v)
            return false;
    return true;
}

static void kick_all(rc_server *s)
{
    for (uint32_t i = 0; i < s->n_io; i++)
        rc_waker_kick(&s->ios[i].waker);
    for (uint32_t i = 0; i < s->max_shards; i++)
        if (s->shards[i].started)
            rc_waker_kick(&s->shards[i].waker);
}

static bool wait_acks(rc_server *s)
{
    uint64_t end = rc_clock_mono_ns() + (uint64_t)RC_RELOAD_ACK_MS * RC_NS_PER_MS;
    kick_all(s);
    while (!all_acked(s)) {
        if (rc_clock_mono_ns() > end)
            return false;
        usleep(RC_RELOAD_POLL_US);
    }
    return true;
}

int rc_server_reload(rc_server *s, const rc_config *next, char *kept, size_t keptlen, char *err, size_t errlen)
{
    kept[0] = '\0';
    pthread_mutex_lock(&s->scale_lock); /* no shard starts or stops meanwhile */
    if (!wait_acks(s)) {
        pthread_mutex_unlock(&s->scale_lock);
        snprintf(err, errlen, "a thread has not applied the previous reload yet; try again");
        rc_stat_add_shared(&s->reloads[1], 1);
        return -1;
    }
    kept_list k = { kept, keptlen, 0, next, s };
    rc_config_diff(&s->cfg, next, note_kept, &k);

    /* The io threads' and shards' values: the slot the current version does not name. */
    uint64_t v = atomic_load_explicit(&s->live.version, memory_order_relaxed);
    rc_server_live_values(next, &s->live.slot[(v + 1) & 1]);
    /* release: the slot is written before any reader sees its version. */
    atomic_store_explicit(&s->live.version, v + 1, memory_order_release);
    kick_all(s);

    rc_config *c = &s->cfg;
    c->conn_rate = next->conn_rate;
    c->conn_burst = next->conn_burst;
    c->group_rate = next->group_rate;
    c->group_burst = next->group_burst;
    c->outbound_high_bytes = next->outbound_high_bytes;
    c->outbound_kill_bytes = next->outbound_kill_bytes;
    c->outbound_stall_ms = next->outbound_stall_ms;
    c->hello_timeout_ms = next->hello_timeout_ms;
    c->idle_timeout_ms = next->idle_timeout_ms;
    c->max_queue_ms = next->max_queue_ms;
    c->max_groups_per_session = next->max_groups_per_session;
    c->max_members_per_group = next->max_members_per_group;
    c->max_reply_bytes = next->max_reply_bytes;
    c->history_ttl = next->history_ttl;
    c->history_cache_mb = next->history_cache_mb;
    c->snapshot_every = next->snapshot_every;
    c->snapshot_interval_ms = next->snapshot_interval_ms;
    c->max_connections_per_ip = next->max_connections_per_ip;
    rc_iplimit_set_max(&s->per_ip, next->max_connections_per_ip);
    c->min_shards = next->min_shards;
    if (next->max_shards <= s->max_shards)
        c->max_shards = next->max_shards;
    if (c->min_shards > c->max_shards)
        c->min_shards = c->max_shards;
    c->scale_interval_ms = next->scale_interval_ms;
    c->scale_cooldown_ms = next->scale_cooldown_ms;
    s->scaler_bounds_due = true;
    if (strcmp(c->auth_secret, next->auth_secret) != 0) {
        memcpy(c->auth_secret, next->auth_secret, sizeof(c->auth_secret));
        rc_server_log_auth(&s->live.slot[(v + 1) & 1].auth);
    }
    memcpy(c->log_level, next->log_level, sizeof(c->log_level));
    memcpy(c->log_format, next->log_format, sizeof(c->log_format));
    rc_log_level level = RC_LEVEL_INFO;
    rc_log_format format = RC_LOG_FORMAT_TEXT;
    if (rc_log_level_parse(c->log_level, &level) == 0 && rc_log_format_parse(c->log_format, &format) == 0)
        rc_log_configure(level, format);
    pthread_mutex_unlock(&s->scale_lock);
    rc_stat_add_shared(&s->reloads[0], 1);
    return 0;
}
