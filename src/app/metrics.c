/*
 * /metrics: Prometheus text exposition of the io threads' and shards'
 * counters. Counters are written by their owning thread with relaxed
 * stores and read here with relaxed loads: each value is exact for its
 * moment, values are not a consistent snapshot of one another.
 */
#include <stdio.h>
#include <string.h>

#include "app/server.h"
#include "core/clock.h"
#include "core/stats.h"
#include "store/store.h"

/* One per-thread counter: name, help, type and where it sits in the stats. */
typedef struct io_metric {
    const char *name, *help, *type;
    size_t offset;
} io_metric;

/* The HELP and TYPE lines that open one metric's samples. */
static void metric_head(struct rc_admin_body *out, const char *name, const char *type, const char *help)
{
    rc_admin_body_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

#define IO_METRIC(field, name, type, help) { "ringcast_" name, help, type, offsetof(rc_io_stats, field) }

static const io_metric io_metrics[] = {
    IO_METRIC(open, "connections_open", "gauge", "Connections open now."),
    IO_METRIC(accepted, "connections_accepted_total", "counter", "Connections accepted."),
    IO_METRIC(closed, "connections_closed_total", "counter", "Connections closed."),
    IO_METRIC(rejected, "connections_rejected_total", "counter", "Connections refused at max_connections or shutdown."),
    IO_METRIC(frames_out, "frames_out_total", "counter", "Frames queued to client sockets."),
    IO_METRIC(deliveries, "deliveries_total", "counter", "Deliveries (msg, replies from shards) queued to sockets."),
    IO_METRIC(dropped_closed, "deliveries_to_closed_total", "counter", "Frames for connections that had already closed (the messages stay in history)."),
    IO_METRIC(bytes_in, "bytes_in_total", "counter", "Bytes received from clients."),
    IO_METRIC(bytes_out, "bytes_out_total", "counter", "Bytes sent to clients."),
    IO_METRIC(loops, "io_loop_iterations_total", "counter", "Event loop turns."),
    IO_METRIC(cqes, "io_cqes_total", "counter", "io_uring completions handled."),
    IO_METRIC(sends, "io_sends_total", "counter", "Send operations submitted."),
    IO_METRIC(enobufs, "io_recv_enobufs_total", "counter", "Receives that found no provided buffer."),
    IO_METRIC(slow_kills, "slow_consumer_closed_total", "counter", "Connections closed past outbound_kill_bytes."),
    IO_METRIC(slow_letters, "slow_consumer_letters_total", "counter", "Deliveries past outbound_high_bytes sent to the dead-letter topic instead."),
    IO_METRIC(catchup_started, "catchup_started_total", "counter", "Times a slow reader fell behind in a group and began catching up from history (slow_consumer_policy=catchup)."),
    IO_METRIC(catchup_skipped, "catchup_skipped_total", "counter", "Live msgs not queued to a reader behind in their group: it gets them from history."),
    IO_METRIC(catchup_pages, "catchup_pages_total", "counter", "Catch-up pages asked of shards."),
    IO_METRIC(catchup_done, "catchup_done_total", "counter", "Catch-ups that reached their group's last seq."),
    IO_METRIC(catchup_lost, "catchup_lost_total", "counter", "Messages a reader catching up missed that history no longer held: each became a slow_consumer letter."),
    IO_METRIC(catchup_held, "catchup_held_frames", "gauge", "Skipped live frames held by readers catching up (shared with history; at most about history_max per reader and group)."),
    IO_METRIC(overload_letters, "overloaded_letters_total", "counter", "Sends refused with E_OVERLOADED and sent to the dead-letter topic."),
    IO_METRIC(shutdown_letters, "shutdown_letters_total", "counter", "Deliveries still queued when the stop deadline passed, sent to the dead-letter topic."),
    IO_METRIC(letters_refused, "letters_refused_total", "counter", "Dead letters the producer could not queue (each one logged)."),
    IO_METRIC(redelivered, "redelivered_total", "counter", "Replayed slow_consumer letters sent to the connection that missed them."),
    IO_METRIC(redelivery_skipped, "redelivery_skipped_total", "counter", "Replayed slow_consumer letters for a connection of their recipient that no longer owed them (already redelivered, or forgotten)."),
    IO_METRIC(lettered_forgotten, "lettered_forgotten_total", "counter", "Owed slow_consumer letters a connection forgot past its bound; history still serves them."),
    IO_METRIC(session.replay_redeliver, "replays_redeliver_total", "counter", "Replayed letters of one recipient's missed message, sent on for redelivery."),
    IO_METRIC(session.replay_history, "replays_history_total", "counter", "Replayed letters that history already covers: acknowledged dup, nothing sent."),
    IO_METRIC(session.replay_send, "replays_send_total", "counter", "Replayed letters never sequenced, sent now as from their sender (a repeat is acked dup)."),
    IO_METRIC(session.replay_refused, "replays_refused_total", "counter", "replay commands refused: not an admin session, or an unknown reason."),
    IO_METRIC(session.auth_tokens, "auth_tokens_accepted_total", "counter", "hellos accepted with a valid signed token (auth_secret)."),
    IO_METRIC(session.auth_refreshes, "auth_refreshes_total", "counter", "refresh requests accepted: the session's token replaced."),
    IO_METRIC(session.token_expired, "auth_token_expired_total", "counter", "Sessions closed with bye token_expired: their token's exp passed without a refresh."),
    IO_METRIC(holds, "io_holds_total", "counter", "Times a connection stopped being read because its requests waited for room in a full shard ring (TCP then slows that sender)."),
    IO_METRIC(admit_waits, "io_admit_waits_total", "counter", "Pushes to a shard deferred because its ring already held more than max_queue_ms / 8 of work."),
    IO_METRIC(held_conns, "io_held_connections", "gauge", "Connections not read now because their requests wait for room in a shard ring."),
    IO_METRIC(jobs_waiting, "io_jobs_waiting", "gauge", "Requests queued in an io thread for their shard (this loop turn's, and those waiting for room)."),
    IO_METRIC(jobs_unadmitted, "io_jobs_unadmitted", "gauge", "Requests the last push left waiting in an io thread: their shard's ring had no room."),
    IO_METRIC(jobs_routed, "io_jobs_routed_total", "counter", "Client requests an io thread queued for shards (the autoscaler's QPS)."),
    IO_METRIC(unadmitted_ns, "io_unadmitted_nanoseconds_total", "counter", "Time an io thread held requests outside full shard rings (the autoscaler's queue fill: the share of each interval spent so)."),
    IO_METRIC(pressure_holds, "io_pressure_holds_total", "counter", "Times a sending connection stopped being read while a reader was over the pause mark (outbound_high_bytes / 2)."),
    IO_METRIC(hello_timeouts, "hello_timeouts_total", "counter", "Connections closed for not saying hello within hello_timeout_ms."),
    IO_METRIC(idle_timeouts, "idle_timeouts_total", "counter", "Connections closed for sending no frame within idle_timeout_ms."),
    IO_METRIC(server_pings, "server_pings_total", "counter", "Pings sent to connections silent for idle_timeout_ms / 2."),
    IO_METRIC(rejected_per_ip, "connections_rejected_per_ip_total", "counter", "Connections refused with E_LIMIT: their address had max_connections_per_ip open."),
    IO_METRIC(ws.http_requests, "http_requests_total", "counter", "HTTP requests on the public port (the chat page, WebSocket upgrades)."),
    IO_METRIC(ws.http_refused, "http_refused_total", "counter", "Requests on the public port answered 4xx or 5xx (bad handshake, unknown path, method) and closed."),
    IO_METRIC(ws.upgrades, "websocket_upgrades_total", "counter", "Connections that became WebSocket."),
    IO_METRIC(ws.origin_refused, "websocket_origin_refused_total", "counter", "WebSocket connections closed with 1008: their Origin is not in allowed_origins."),
    IO_METRIC(ws.messages_in, "websocket_messages_in_total", "counter", "WebSocket data messages received (each one map)."),
    IO_METRIC(ws.messages_out, "websocket_messages_out_total", "counter", "WebSocket data messages sent."),
    IO_METRIC(reply_holds, "io_reply_holds_total", "counter", "Times a connection stopped being read for its own answers: its output over the pause mark, or RC_IO_HEAVY_MAX hist / join-since requests unanswered."),
    IO_METRIC(congested, "io_congested_connections", "gauge", "Connections over the pause mark now, not yet slow consumers."),
    IO_METRIC(slow_marked, "slow_consumers_total", "counter", "Connections found slow: over the pause mark for outbound_stall_ms."),
    IO_METRIC(api_disconnects, "api_disconnected_sessions_total", "counter", "Sessions closed with bye disconnected by POST /api/disconnect."),
};

/* Shards set up so far: counters are summed over every one of them (a
 * shard that left the route keeps what it counted). */
static uint32_t inited(rc_server *s)
{
    return atomic_load_explicit(&s->n_inited, memory_order_acquire); /* pairs with rc_server_shard_setup */
}

/* Shards on the route now: gauges are shown for these. */
static uint32_t active(rc_server *s)
{
    return atomic_load_explicit(&s->n_active, memory_order_acquire);
}

static uint64_t io_field(const rc_io *io, size_t offset)
{
    return rc_stat_get((const _Atomic uint64_t *)((const char *)&io->stats + offset));
}

static void io_section(rc_server *s, struct rc_admin_body *out)
{
    for (size_t m = 0; m < sizeof(io_metrics) / sizeof(io_metrics[0]); m++) {
        const io_metric *im = &io_metrics[m];
        metric_head(out, im->name, im->type, im->help);
        for (uint32_t i = 0; i < s->n_io; i++)
            rc_admin_body_printf(out, "%s{io=\"%u\"} %llu\n", im->name, i,
                                 (unsigned long long)io_field(&s->ios[i], im->offset));
    }
    rc_admin_body_printf(out, "# HELP ringcast_frames_in_total Frames received, by type.\n"
                              "# TYPE ringcast_frames_in_total counter\n");
    for (int t = RC_T_NONE; t < RC_T_COUNT; t++) {
        uint64_t sum = 0;
        for (uint32_t i = 0; i < s->n_io; i++)
            sum += rc_stat_get(&s->ios[i].stats.session.frames_in[t]);
        rc_admin_body_printf(out, "ringcast_frames_in_total{type=\"%s\"} %llu\n",
                             t == RC_T_NONE ? "invalid" : rc_type_name((rc_type)t), (unsigned long long)sum);
    }
    rc_admin_body_printf(out, "# HELP ringcast_errors_total Error replies sent by io threads and shards, by code.\n"
                              "# TYPE ringcast_errors_total counter\n");
    for (int e = RC_E_BAD_FRAME; e < RC_E_COUNT; e++) {
        uint64_t sum = 0;
        for (uint32_t i = 0; i < s->n_io; i++)
            sum += rc_stat_get(&s->ios[i].stats.session.errors[e]);
        for (uint32_t i = 0; i < inited(s); i++)
            sum += rc_stat_get(&s->shards[i].stats.errors[e]);
        rc_admin_body_printf(out, "ringcast_errors_total{code=\"%s\"} %llu\n", rc_err_name((rc_err)e),
                             (unsigned long long)sum);
    }
    rc_admin_body_printf(out, "# HELP ringcast_auth_failures_total hellos and refreshes refused, by reason (E_AUTH_FAILED and close; no_token: E_NOT_AUTHENTICATED).\n"
                              "# TYPE ringcast_auth_failures_total counter\n");
    for (int r = RC_TOKEN_OK + 1; r < RC_AUTH_FAIL_REASONS; r++) {
        uint64_t sum = 0;
        for (uint32_t i = 0; i < s->n_io; i++)
            sum += rc_stat_get(&s->ios[i].stats.session.auth_failures[r]);
        rc_admin_body_printf(out, "ringcast_auth_failures_total{reason=\"%s\"} %llu\n", rc_auth_fail_name(r),
                             (unsigned long long)sum);
    }
    rc_admin_body_printf(out, "# HELP ringcast_io_out_ring_depth Outbatches waiting for an io thread.\n"
                              "# TYPE ringcast_io_out_ring_depth gauge\n");
    for (uint32_t i = 0; i < s->n_io; i++)
        rc_admin_body_printf(out, "ringcast_io_out_ring_depth{io=\"%u\"} %u\nringcast_io_out_ring_capacity{io=\"%u\"} %u\n",
                             i, rc_ring_count(s->ios[i].outbound), i, rc_ring_capacity(s->ios[i].outbound));
}

static void shard_line(struct rc_admin_body *out, const io_metric *m, rc_server *s)
{
    metric_head(out, m->name, m->type, m->help);
    uint32_t n = strcmp(m->type, "gauge") == 0 ? active(s) : inited(s);
    for (uint32_t i = 0; i < n; i++) {
        const _Atomic uint64_t *p = (const _Atomic uint64_t *)((const char *)&s->shards[i].stats + m->offset);
        rc_admin_body_printf(out, "%s{shard=\"%u\"} %llu\n", m->name, i,
                             (unsigned long long)rc_stat_get(p));
    }
}

#define SHARD_METRIC(field, name, type, help) { "ringcast_" name, help, type, offsetof(rc_shard_stats, field) }

static const io_metric shard_metrics[] = {
    SHARD_METRIC(sequenced, "messages_sequenced_total", "counter", "Messages sequenced."),
    SHARD_METRIC(deliveries, "fanout_total", "counter", "msg deliveries handed to io threads."),
    SHARD_METRIC(dups, "dedup_hits_total", "counter", "Sends answered as duplicates."),
    SHARD_METRIC(jobs, "shard_jobs_total", "counter", "Requests processed."),
    SHARD_METRIC(batches, "shard_batches_total", "counter", "Inbound bursts processed."),
    SHARD_METRIC(groups, "shard_groups", "gauge", "Groups held."),
    SHARD_METRIC(out_stalls, "shard_out_stalls_total", "counter", "Waits on a full io outbound ring."),
    SHARD_METRIC(catchup_msgs, "shard_catchup_messages_total", "counter", "Messages sent from history to slow readers catching up."),
    SHARD_METRIC(out_stall_ns, "shard_out_stall_nanoseconds_total", "counter", "Time waiting for room in full io outbound rings (the autoscaler does not grow while a shard waits a quarter of the interval or more)."),
    SHARD_METRIC(job_ns, "shard_job_nanoseconds", "gauge", "A job's recent cost: its share of its burst's time, moving mean; times the ring's depth it is the wait io threads admit by."),
    SHARD_METRIC(sleeps, "shard_sleeps_total", "counter", "Times the shard slept for lack of work."),
    SHARD_METRIC(store_commits, "store_commits_total", "counter", "Write batches committed (one per shard tick with writes)."),
    SHARD_METRIC(store_commit_ns, "store_commit_ns_total", "counter", "Nanoseconds spent committing write batches."),
    SHARD_METRIC(store_errors, "store_write_errors_total", "counter", "Write batches that failed every attempt; their sends were answered E_INTERNAL."),
    SHARD_METRIC(snapshots, "snapshots_total", "counter", "Group snapshots written."),
    SHARD_METRIC(warmups, "history_loads_total", "counter", "Reads of a cold group's history from storage: what one request reads of it (a hist page, the messages after a join's since, a send's dedup window)."),
    SHARD_METRIC(warm_msgs, "history_loaded_messages_total", "counter", "Messages history loads read from storage."),
    SHARD_METRIC(expired, "expired_letters_total", "counter", "Sends that waited past max_queue_ms: answered E_OVERLOADED, sent to the dead-letter topic."),
    SHARD_METRIC(poison_letters, "poison_letters_total", "counter", "Sends whose store write failed every attempt: answered E_INTERNAL, sent to the dead-letter topic."),
    SHARD_METRIC(sequence_retries, "sequence_retries_total", "counter", "Sends sequenced again after running out of memory (backoff and jitter; the last failure is a poison letter)."),
    SHARD_METRIC(store_retries, "store_write_retries_total", "counter", "Store writes tried again after a failure."),
    SHARD_METRIC(redeliveries, "redeliveries_total", "counter", "Replayed slow_consumer letters sent towards their group's online subscribers."),
    SHARD_METRIC(replies_paged, "replies_paged_total", "counter", "hist replies and join backlogs cut at max_reply_bytes (answered with more: true)."),
    SHARD_METRIC(letters_refused, "shard_letters_refused_total", "counter", "Expired and poison letters the producer could not queue (each logged)."),
    SHARD_METRIC(presence_events, "presence_events_total", "counter", "online/offline events sent (one frame each, shared by the group's presence subscribers)."),
    SHARD_METRIC(presence_coalesced, "presence_coalesced_total", "counter", "Presence changes undone within their tick (left and came back): no event sent."),
    SHARD_METRIC(typing_forwarded, "typing_forwarded_total", "counter", "typing notices sent on to the group's other users."),
    SHARD_METRIC(typing_dropped, "typing_dropped_total", "counter", "typing notices dropped: within a second of the same user's last one in the group."),
    SHARD_METRIC(reads_moved, "read_cursors_moved_total", "counter", "read requests that moved the user's read cursor of a group."),
    SHARD_METRIC(receipts, "receipt_events_total", "counter", "receipt events sent (one frame each, shared by the group's receipts subscribers)."),
    SHARD_METRIC(receipts_coalesced, "receipts_coalesced_total", "counter", "Cursor moves folded into the same tick's receipt of that user and group."),
    SHARD_METRIC(inbox_requests, "inbox_requests_total", "counter", "inbox requests answered from the per-user index."),
    SHARD_METRIC(inbox_truncated, "inbox_truncated_total", "counter", "inbox replies cut by max_reply_bytes or inbox_scan_max (more: true)."),
    SHARD_METRIC(cache_bytes, "history_cache_bytes", "gauge", "History held in memory (history_cache_mb bounds all shards together)."),
    SHARD_METRIC(cache_hits, "history_cache_hits_total", "counter", "Requests whose group's history was in memory (a miss is ringcast_history_loads_total)."),
    SHARD_METRIC(cache_evictions, "history_cache_evictions_total", "counter", "Groups whose history left memory for the budget (read back from storage at their next use)."),
    SHARD_METRIC(refused_overloaded, "shard_refused_overloaded_total", "counter", "Requests for this shard refused before its ring: they waited past max_queue_ms for room (E_OVERLOADED)."),
    SHARD_METRIC(refused_shutdown, "shard_refused_shutdown_total", "counter", "Requests for this shard still waiting for its ring at a forced stop (E_SHUTTING_DOWN)."),
    SHARD_METRIC(rate_limited, "shard_rate_limited_total", "counter", "Sends refused by group_rate (E_RATE_LIMITED)."),
    SHARD_METRIC(groups_moved, "shard_groups_moved_total", "counter", "Groups this shard handed to another one when the shard count changed."),
    SHARD_METRIC(parked, "handoff_parked_total", "counter", "Requests that waited for their group's old owner to hand it over."),
    SHARD_METRIC(park_ns, "handoff_park_nanoseconds_total", "counter", "Time those requests waited, summed."),
    SHARD_METRIC(park_ns_max, "handoff_park_max_nanoseconds", "gauge", "The longest a request waited for its group's hand-over in the last shard-count change."),
};

/* conn_rate and group_rate refusals (E_RATE_LIMITED). */
static void rate_section(rc_server *s, struct rc_admin_body *out)
{
    uint64_t conn = 0, group = 0;
    for (uint32_t i = 0; i < s->n_io; i++)
        conn += rc_stat_get(&s->ios[i].stats.session.rate_limited);
    for (uint32_t i = 0; i < inited(s); i++)
        group += rc_stat_get(&s->shards[i].stats.rate_limited);
    rc_admin_body_printf(out,
                         "# HELP ringcast_rate_limited_total Sends refused with E_RATE_LIMITED: by conn_rate (scope conn) or group_rate (scope group).\n"
                         "# TYPE ringcast_rate_limited_total counter\n"
                         "ringcast_rate_limited_total{scope=\"conn\"} %llu\nringcast_rate_limited_total{scope=\"group\"} %llu\n",
                         (unsigned long long)conn, (unsigned long long)group);
}

static void scale_section(rc_server *s, struct rc_admin_body *out)
{
    uint64_t moved = 0;
    for (uint32_t i = 0; i < inited(s); i++)
        moved += rc_stat_get(&s->shards[i].stats.groups_moved);
    rc_admin_body_printf(out,
                         "# HELP ringcast_shards Shards running.\n# TYPE ringcast_shards gauge\nringcast_shards %u\n"
                         "# HELP ringcast_scale_events_total Shard-count changes (autoscaler or POST /admin/shards).\n"
                         "# TYPE ringcast_scale_events_total counter\n"
                         "ringcast_scale_events_total{direction=\"grow\"} %llu\n"
                         "ringcast_scale_events_total{direction=\"shrink\"} %llu\n"
                         "# HELP ringcast_scale_failed_total Shard-count changes that could not be made (logged).\n"
                         "# TYPE ringcast_scale_failed_total counter\nringcast_scale_failed_total %llu\n"
                         "# HELP ringcast_groups_moved_total Groups that changed owner shard.\n"
                         "# TYPE ringcast_groups_moved_total counter\nringcast_groups_moved_total %llu\n"
                         "# HELP ringcast_scale_last_move_seconds How long the last shard-count change took, from the new route to every shard done.\n"
                         "# TYPE ringcast_scale_last_move_seconds gauge\nringcast_scale_last_move_seconds %.6f\n"
                         "# HELP ringcast_route_tokens Tokens on the current route's consistent-hash ring.\n"
                         "# TYPE ringcast_route_tokens gauge\nringcast_route_tokens %llu\n"
                         "# HELP ringcast_route_table_split_ratio Share of the routing table's entries that hold a boundary between shards (looked up from the tokens).\n"
                         "# TYPE ringcast_route_table_split_ratio gauge\nringcast_route_table_split_ratio %.6f\n",
                         active(s), (unsigned long long)rc_stat_get(&s->scale_events[0]),
                         (unsigned long long)rc_stat_get(&s->scale_events[1]), (unsigned long long)rc_stat_get(&s->moves_failed),
                         (unsigned long long)moved, (double)rc_stat_get(&s->move_ns_last) / 1e9,
                         (unsigned long long)rc_stat_get(&s->route_tokens), (double)rc_stat_get(&s->route_split_ppm) / 1e6);
}

static void shard_section(rc_server *s, struct rc_admin_body *out)
{
    for (size_t m = 0; m < sizeof(shard_metrics) / sizeof(shard_metrics[0]); m++)
        shard_line(out, &shard_metrics[m], s);
    rc_admin_body_printf(out, "# HELP ringcast_shard_ring_depth Jobs waiting in a shard's inbound ring.\n"
                              "# TYPE ringcast_shard_ring_depth gauge\n");
    for (uint32_t i = 0; i < active(s); i++)
        rc_admin_body_printf(out, "ringcast_shard_ring_depth{shard=\"%u\"} %u\n", i, rc_ring_count(s->shards[i].inbound));
    rc_admin_body_printf(out, "# HELP ringcast_shard_ring_capacity Slots of a shard's inbound ring.\n"
                              "# TYPE ringcast_shard_ring_capacity gauge\n");
    for (uint32_t i = 0; i < active(s); i++)
        rc_admin_body_printf(out, "ringcast_shard_ring_capacity{shard=\"%u\"} %u\n", i, rc_ring_capacity(s->shards[i].inbound));
}

#ifndef RC_NO_DLQ
/* The breaker and the spool (ARCHITECTURE §7): every letter is in the spool until Kafka acknowledged it. */
static void spool_section(const rc_dlq_stats *st, struct rc_admin_body *out)
{
    rc_admin_body_printf(out, "# HELP ringcast_dlq_breaker_state Dead-letter circuit breaker: 1 for the state it is in.\n"
                              "# TYPE ringcast_dlq_breaker_state gauge\n");
    for (int b = RC_BREAKER_CLOSED; b <= RC_BREAKER_HALF_OPEN; b++)
        rc_admin_body_printf(out, "ringcast_dlq_breaker_state{state=\"%s\"} %d\n",
                             rc_breaker_state_name((rc_breaker_state)b), st->breaker == (rc_breaker_state)b);
    const struct { const char *name, *type, *help; uint64_t v; } m[] = {
        { "ringcast_dlq_breaker_opens_total", "counter", "Times Kafka errors opened the breaker.", st->breaker_opens },
        { "ringcast_dlq_spool_letters", "gauge", "Dead letters in the spool: waiting, or in flight until Kafka acknowledges them.", st->spool_letters },
        { "ringcast_dlq_spool_bytes", "gauge", "Bytes of dead letters in the spool.", st->spool_bytes },
        { "ringcast_dlq_inflight_letters", "gauge", "Dead letters of the spool handed to librdkafka, awaiting Kafka's acknowledgement.", st->inflight },
        { "ringcast_dlq_spool_found_letters", "gauge", "Dead letters an earlier run left in the spool, found at start (sent again).", st->spool_found },
        { "ringcast_dlq_spool_max_bytes", "gauge", "The spool's bound (spool_max_bytes).", st->spool_max_bytes },
        { "ringcast_dlq_spool_drained_total", "counter", "Dead letters that waited in the spool and Kafka has acknowledged.", st->drained },
        { "ringcast_dlq_spool_errors_total", "counter", "Spool reads and writes that failed (logged).", st->spool_errors },
        { "ringcast_dlq_produce_errors_total", "counter", "Dead-letter delivery reports with an error.", st->produce_errors },
    };
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        metric_head(out, m[i].name, m[i].type, m[i].help);
        rc_admin_body_printf(out, "%s %llu\n", m[i].name, (unsigned long long)m[i].v);
    }
}
#endif

static void letters_section(rc_server *s, struct rc_admin_body *out)
{
    if (!s->dlq)
        return;
#ifndef RC_NO_DLQ
    rc_dlq_stats st;
    rc_dlq_stats_read(s->dlq, &st);
    rc_admin_body_printf(out, "# HELP ringcast_letters_total Dead letters, by reason and what became of them.\n"
                              "# TYPE ringcast_letters_total counter\n");
    static const char *const states[] = { "submitted", "delivered", "failed", "queue_full", "rejected", "spooled", "spool_full" };
    for (int r = 0; r < RC_LETTER_REASONS; r++) {
        const uint64_t v[] = { st.submitted[r], st.delivered[r], st.failed[r], st.queue_full[r], st.rejected[r],
                               st.spooled[r], st.spool_full[r] };
        for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++)
            rc_admin_body_printf(out, "ringcast_letters_total{reason=\"%s\",state=\"%s\"} %llu\n",
                                 rc_letter_reason_name((rc_letter_reason)r), states[k], (unsigned long long)v[k]);
    }
    rc_admin_body_printf(out, "# HELP ringcast_letters_queued Dead letters in librdkafka's queue, waiting for Kafka.\n"
                              "# TYPE ringcast_letters_queued gauge\nringcast_letters_queued %llu\n",
                         (unsigned long long)st.queued);
    spool_section(&st, out);
#endif
}

/* The admin HTTP server itself: what it answered, and what it refused or timed out. */
static void admin_section(rc_server *s, struct rc_admin_body *out)
{
    struct rc_admin_stats st;
    rc_admin_stats_read(s->admin, &st);
    const struct { const char *name, *type, *help; uint64_t v; } m[] = {
        { "ringcast_admin_connections_total", "counter", "Admin HTTP connections accepted.", st.connections_accepted },
        { "ringcast_admin_connections_open", "gauge", "Admin HTTP connections being served now.", st.connections_open },
        { "ringcast_admin_requests_total", "counter", "Admin HTTP requests answered, any status.", st.requests },
    };
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        metric_head(out, m[i].name, m[i].type, m[i].help);
        rc_admin_body_printf(out, "%s %llu\n", m[i].name, (unsigned long long)m[i].v);
    }
    metric_head(out, "ringcast_admin_timeouts_total", "counter",
                "Admin HTTP connections closed at a deadline: header (head incomplete), request (exchange unfinished).");
    rc_admin_body_printf(out, "ringcast_admin_timeouts_total{phase=\"header\"} %llu\n"
                              "ringcast_admin_timeouts_total{phase=\"request\"} %llu\n",
                         (unsigned long long)st.timeouts_header, (unsigned long long)st.timeouts_request);
    const struct { const char *reason; uint64_t v; } r[] = {
        { "busy", st.rejected_busy },
        { "bad_request", st.rejected_bad_request },
        { "head_too_large", st.rejected_head_too_large },
        { "body_too_large", st.rejected_body_too_large },
        { "method", st.rejected_method },
    };
    metric_head(out, "ringcast_admin_rejected_total", "counter",
                "Admin HTTP requests refused: busy (503 at max connections), bad_request (400), "
                "head_too_large (431), body_too_large (413), method (405).");
    for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++)
        rc_admin_body_printf(out, "ringcast_admin_rejected_total{reason=\"%s\"} %llu\n", r[i].reason,
                             (unsigned long long)r[i].v);
}

/* What RocksDB keeps in memory (ARCHITECTURE §8, "store memory"). */
static void store_memory_section(rc_server *s, struct rc_admin_body *out)
{
    rc_store_memory m;
    if (rc_store_memory_read(s->persist, &m) != 0)
        return;
    const struct { const char *name, *help; uint64_t v; } g[] = {
        { "ringcast_store_memtable_bytes", "Bytes of RocksDB memtables, active and waiting to be flushed (32 MiB each for history and ticks, 8 MiB for each other family, 3 at most each).", m.memtables },
        { "ringcast_store_table_readers_bytes", "Bytes of the open SST files' readers outside the block cache.", m.table_readers },
        { "ringcast_store_block_cache_bytes", "Bytes in RocksDB's block cache (data, index and filter blocks).", m.block_cache },
        { "ringcast_store_block_cache_pinned_bytes", "Bytes of the block cache pinned by readers.", m.block_cache_pinned },
        { "ringcast_store_block_cache_capacity_bytes", "The block cache's bound (64 MiB).", m.block_cache_capacity },
        { "ringcast_store_tick_log_bytes", "Bytes of memory the tick log's table takes (8 bytes a message in the log not yet trimmed or folded, and its groups) and of the batch kept for a fold's pieces (up to 2 MiB once a fold ran; src/ARCHITECTURE.md section 6).", m.tick_log },
        { "ringcast_store_tick_log_disk_bytes", "Bytes of the tick log's segment files on disk; past tick_log_mb (512 MiB) the oldest is folded into history records and deleted.", m.tick_log_disk },
    };
    for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
        metric_head(out, g[i].name, "gauge", g[i].help);
        rc_admin_body_printf(out, "%s %llu\n", g[i].name, (unsigned long long)g[i].v);
    }
}

/* Compaction's backlog: history files waiting in level 0 (src/store/README.md, Tuning). */
static void store_l0_section(rc_server *s, struct rc_admin_body *out)
{
    uint64_t files;
    if (rc_store_l0_files(s->persist, &files) != 0)
        return;
    metric_head(out, "ringcast_store_history_l0_files", "gauge",
                "History SST files in RocksDB's level 0; l0_compaction_files (12) starts a compaction into the "
                "level below, writes slow down 8 files above it and stop 24 above it.");
    rc_admin_body_printf(out, "ringcast_store_history_l0_files %llu\n", (unsigned long long)files);
}

/* jemalloc's control interface when ringcastd is linked with it (CMake
 * RC_JEMALLOC); NULL in builds without it (the sanitizers' allocator). */
extern int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen) __attribute__((weak));

static bool mallctl_size(const char *name, size_t *v)
{
    size_t len = sizeof(*v);
    return mallctl(name, v, &len, NULL, 0) == 0 && len == sizeof(*v);
}

/* The allocator's own figures (ARCHITECTURE §8, "allocator"): what the
 * program holds, what jemalloc keeps around it, and whether its background
 * threads purge unused pages. Nothing when not linked with jemalloc. */
static void allocator_section(struct rc_admin_body *out)
{
    if (!mallctl)
        return;
    uint64_t epoch = 1;
    size_t elen = sizeof(epoch);
    if (mallctl("epoch", &epoch, &elen, &epoch, sizeof(epoch)) != 0) /* refresh the statistics */
        return;
    const struct { const char *name, *ctl, *help; } m[] = {
        { "ringcast_allocator_allocated_bytes", "stats.allocated", "Bytes the program holds allocated (jemalloc stats.allocated)." },
        { "ringcast_allocator_active_bytes", "stats.active", "Bytes in pages with allocations in them (stats.active): allocated plus fragmentation." },
        { "ringcast_allocator_resident_bytes", "stats.resident", "Bytes of the allocator's pages resident in memory (stats.resident): active, metadata, and unused pages not yet purged." },
        { "ringcast_allocator_metadata_bytes", "stats.metadata", "Bytes of the allocator's own bookkeeping (stats.metadata)." },
        { "ringcast_allocator_mapped_bytes", "stats.mapped", "Bytes of address space the allocator maps (stats.mapped)." },
        { "ringcast_allocator_retained_bytes", "stats.retained", "Bytes of address space returned to the system but kept mapped for reuse (stats.retained, not resident)." },
    };
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        size_t v;
        if (!mallctl_size(m[i].ctl, &v))
            continue;
        metric_head(out, m[i].name, "gauge", m[i].help);
        rc_admin_body_printf(out, "%s %zu\n", m[i].name, v);
    }
    size_t pdirty, page; /* every arena's unused pages not purged yet (4096: MALLCTL_ARENAS_ALL) */
    if (mallctl_size("stats.arenas.4096.pdirty", &pdirty) && mallctl_size("arenas.page", &page)) {
        metric_head(out, "ringcast_allocator_dirty_bytes", "gauge",
                    "Bytes of freed pages the allocator still holds resident, to be purged dirty_decay_ms after their release.");
        rc_admin_body_printf(out, "ringcast_allocator_dirty_bytes %zu\n", pdirty * page);
    }
    bool bg = false;
    size_t blen = sizeof(bg);
    if (mallctl("background_thread", &bg, &blen, NULL, 0) == 0) {
        metric_head(out, "ringcast_allocator_background_thread", "gauge",
                    "1 when jemalloc's background threads purge unused pages (RC_MALLOC_CONF), also while the server is idle.");
        rc_admin_body_printf(out, "ringcast_allocator_background_thread %d\n", bg ? 1 : 0);
    }
}

void rc_server_metrics(rc_server *s, struct rc_admin_body *out)
{
    rc_admin_body_printf(out, "# HELP ringcast_uptime_seconds Seconds since start.\n# TYPE ringcast_uptime_seconds gauge\n"
                              "ringcast_uptime_seconds %.3f\n", (double)(rc_clock_mono_ns() - s->started_ns) / 1e9);
    rc_admin_body_printf(out, "# HELP ringcast_config_reloads_total SIGHUP reloads: ok (applied) or error (nothing changed: the file did not load, or a thread had not applied the previous one).\n"
                              "# TYPE ringcast_config_reloads_total counter\n"
                              "ringcast_config_reloads_total{result=\"ok\"} %llu\nringcast_config_reloads_total{result=\"error\"} %llu\n",
                         (unsigned long long)rc_stat_get(&s->reloads[0]), (unsigned long long)rc_stat_get(&s->reloads[1]));
    rc_admin_body_printf(out, "# HELP ringcast_ready 1 once recovery is done and the server serves.\n# TYPE ringcast_ready gauge\nringcast_ready 1\n");
    rc_admin_body_printf(out, "# HELP ringcast_recovery_seconds Time the start-up recovery took.\n# TYPE ringcast_recovery_seconds gauge\n"
                              "ringcast_recovery_seconds %.6f\n", (double)s->recovery_ns / 1e9);
    rc_admin_body_printf(out, "# HELP ringcast_recovered_groups Groups loaded from the data directory at start.\n# TYPE ringcast_recovered_groups gauge\n"
                              "ringcast_recovered_groups %llu\n", (unsigned long long)s->recovered_groups);
    io_section(s, out);
    shard_section(s, out);
    scale_section(s, out);
    rate_section(s, out);
    letters_section(s, out);
    admin_section(s, out);
    rc_api_metrics(s, out);
    store_memory_section(s, out);
    store_l0_section(s, out);
    allocator_section(out);
}
