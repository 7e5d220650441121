/*
 * Dead-letter producer (DESIGN §3). submit encodes a letter into a
 * MessagePack map and hands it to librdkafka with a copy, so it never holds
 * the caller's memory and never blocks: when the local queue is full it
 * returns -1 and the caller counts the loss. The letter's reason rides along
 * as the message's opaque so the delivery report, served by our own poll
 * thread, can count per reason.
 *
 * The producer is idempotent with acks=all: a letter retried by librdkafka
 * lands once and in order per partition.
 */
#include "dlq/dlq.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <msgpack.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DLQ_POLL_MS 100           /* delivery-report thread wakes this often to see stop */
#define DLQ_LINGER_MS "5"         /* batch letters briefly; they are not latency-critical */
#define DLQ_COMPRESSION "lz4"
#define DLQ_MOCK_BROKERS 1        /* embedded development broker: one node */
#define DLQ_MOCK_PARTITIONS 1
#define DLQ_FAIL_LOG_INTERVAL_S 1 /* at most one delivery-failure line per second */
#define DLQ_TS_TEXT 24            /* decimal uint64 plus NUL */
#define DLQ_LOG_TEXT 512

struct rc_dlq {
    rd_kafka_t *rk;               /* the producer */
    rd_kafka_topic_t *rkt;
    rd_kafka_t *mock_rk;          /* owns the mock cluster; NULL with real brokers */
    rd_kafka_mock_cluster_t *mock;
    char *bootstrap;
    char *topic;
    char *node;
    pthread_t poller;
    atomic_bool stop;
    /* Counters: relaxed, they are statistics and order nothing else. */
    atomic_uint_fast64_t submitted[RC_LETTER_REASONS];
    atomic_uint_fast64_t delivered[RC_LETTER_REASONS];
    atomic_uint_fast64_t failed[RC_LETTER_REASONS];
    atomic_uint_fast64_t queue_full[RC_LETTER_REASONS];
    atomic_uint_fast64_t rejected[RC_LETTER_REASONS];
    atomic_uint_fast64_t invalid;
    /* Failure-log rate limit. Callbacks run on the poll thread and in
     * whoever calls flush, so these are atomics too (relaxed: a lost race
     * only prints one line more or less). */
    atomic_llong fail_logged_at;
    atomic_uint_fast64_t fail_suppressed;
};

static void count(atomic_uint_fast64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ---- logging --------------------------------------------------------- */

/* Copies a message into a quoted log value: double quotes become single
 * quotes and control characters spaces, so a line stays one greppable line. */
static void log_value(char *out, size_t outlen, const char *in)
{
    size_t n = 0;
    for (; in != NULL && *in != '\0' && n + 1 < outlen; in++)
        out[n++] = *in == '"' ? '\'' : ((unsigned char)*in < ' ' ? ' ' : *in);
    out[n] = '\0';
}

static const char *syslog_level_name(int level)
{
    return level <= 3 ? "error" : level <= 4 ? "warn" : level <= 6 ? "info" : "debug";
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    char msg[DLQ_LOG_TEXT];
    log_value(msg, sizeof msg, buf);
    fprintf(stderr, "level=%s component=dlq event=rdkafka client=%s fac=%s msg=\"%s\"\n",
            syslog_level_name(level), rd_kafka_name(rk), fac, msg);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    char msg[DLQ_LOG_TEXT], fatal[DLQ_LOG_TEXT];
    (void)opaque;
    log_value(msg, sizeof msg, reason);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        rd_kafka_fatal_error(rk, fatal, sizeof fatal);
        log_value(msg, sizeof msg, fatal);
        fprintf(stderr, "level=error component=dlq event=producer_fatal msg=\"%s\"\n", msg);
        return;
    }
    fprintf(stderr, "level=warn component=dlq event=kafka_error error=%s msg=\"%s\"\n",
            rd_kafka_err2name((rd_kafka_resp_err_t)err), msg);
}

/* ---- delivery reports ------------------------------------------------ */

static void log_delivery_failure(rc_dlq *d, rc_letter_reason r, rd_kafka_resp_err_t err)
{
    long long now = (long long)time(NULL);
    long long last = atomic_load_explicit(&d->fail_logged_at, memory_order_relaxed);
    if (now - last < DLQ_FAIL_LOG_INTERVAL_S ||
        !atomic_compare_exchange_strong_explicit(&d->fail_logged_at, &last, now, memory_order_relaxed,
                                                 memory_order_relaxed)) {
        count(&d->fail_suppressed);
        return;
    }
    fprintf(stderr,
            "level=warn component=dlq event=delivery_failed reason=%s error=%s suppressed=%" PRIu64
            " msg=\"%s\"\n",
            rc_letter_reason_name(r), rd_kafka_err2name(err),
            (uint64_t)atomic_exchange_explicit(&d->fail_suppressed, 0, memory_order_relaxed),
            rd_kafka_err2str(err));
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    rc_dlq *d = opaque;
    rc_letter_reason r = (rc_letter_reason)(uintptr_t)m->_private;
    (void)rk;
    if (r >= RC_LETTER_REASONS) /* cannot happen: submit checked it */
        return;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        count(&d->delivered[r]);
    } else {
        count(&d->failed[r]);
        log_delivery_failure(d, r, m->err);
    }
}

static void *poll_loop(void *arg)
{
    rc_dlq *d = arg;
    /* acquire: pairs with the release store in rc_dlq_close. */
    while (!atomic_load_explicit(&d->stop, memory_order_acquire))
        rd_kafka_poll(d->rk, DLQ_POLL_MS);
    return NULL;
}

/* ---- encoding -------------------------------------------------------- */

/* Each returns 0, or -1 when the buffer could not grow. */
static int pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    return msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, s, n);
}

static int pack_key(msgpack_packer *pk, const char *k)
{
    return pack_str(pk, k, strlen(k));
}

/* The record's value: one map with DESIGN §3's field names. Optional
 * fields are left out, not sent as nil. */
static int encode_letter(msgpack_sbuffer *sb, const rc_letter *l)
{
    msgpack_packer pk;
    size_t fields = 8 + (l->has_seq ? 1 : 0) + (l->to.len ? 1 : 0) + (l->mid.len ? 1 : 0);
    const char *reason = rc_letter_reason_name(l->reason);
    int rc = 0;

    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    rc |= msgpack_pack_map(&pk, fields);
    rc |= pack_key(&pk, "v");
    rc |= msgpack_pack_uint8(&pk, RC_DLQ_VERSION);
    rc |= pack_key(&pk, "reason");
    rc |= pack_str(&pk, reason, strlen(reason));
    rc |= pack_key(&pk, "g");
    rc |= pack_str(&pk, l->g.ptr, l->g.len);
    if (l->has_seq) {
        rc |= pack_key(&pk, "seq");
        rc |= msgpack_pack_uint64(&pk, l->seq);
    }
    rc |= pack_key(&pk, "from");
    rc |= pack_str(&pk, l->from.ptr, l->from.len);
    if (l->to.len) {
        rc |= pack_key(&pk, "to");
        rc |= pack_str(&pk, l->to.ptr, l->to.len);
    }
    rc |= pack_key(&pk, "ts");
    rc |= msgpack_pack_uint64(&pk, l->ts);
    if (l->mid.len) {
        rc |= pack_key(&pk, "mid");
        rc |= pack_str(&pk, l->mid.ptr, l->mid.len);
    }
    rc |= pack_key(&pk, "body");
    if (l->body_is_str) {
        rc |= pack_str(&pk, l->body.ptr, l->body.len);
    } else {
        rc |= msgpack_pack_bin(&pk, l->body.len);
        rc |= msgpack_pack_bin_body(&pk, l->body.ptr, l->body.len);
    }
    rc |= pack_key(&pk, "attempts");
    rc |= msgpack_pack_uint32(&pk, l->attempts);
    rc |= pack_key(&pk, "err");
    rc |= pack_str(&pk, l->err.ptr, l->err.len);
    return rc == 0 ? 0 : -1;
}

/* ---- submit ---------------------------------------------------------- */

int rc_dlq_submit(rc_dlq *d, const rc_letter *l)
{
    msgpack_sbuffer sb;
    char ts[DLQ_TS_TEXT];
    const char *reason;
    rd_kafka_resp_err_t err;

    if ((unsigned)l->reason >= RC_LETTER_REASONS) {
        count(&d->invalid);
        return -1;
    }
    msgpack_sbuffer_init(&sb);
    if (encode_letter(&sb, l) != 0) {
        msgpack_sbuffer_destroy(&sb);
        count(&d->rejected[l->reason]);
        return -1;
    }
    reason = rc_letter_reason_name(l->reason);
    snprintf(ts, sizeof ts, "%" PRIu64, l->ts);
    err = rd_kafka_producev(d->rk, RD_KAFKA_V_RKT(d->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_KEY(l->g.ptr, l->g.len), RD_KAFKA_V_VALUE(sb.data, sb.size),
                            RD_KAFKA_V_HEADER("reason", reason, (ssize_t)strlen(reason)),
                            RD_KAFKA_V_HEADER("node", d->node, (ssize_t)strlen(d->node)),
                            RD_KAFKA_V_HEADER("ts", ts, (ssize_t)strlen(ts)),
                            RD_KAFKA_V_OPAQUE((void *)(uintptr_t)l->reason), RD_KAFKA_V_END);
    msgpack_sbuffer_destroy(&sb);
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        count(&d->queue_full[l->reason]);
        return -1;
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        count(&d->rejected[l->reason]);
        return -1;
    }
    count(&d->submitted[l->reason]);
    return 0;
}

static int sink_submit(void *self, const rc_letter *l)
{
    return rc_dlq_submit(self, l);
}

rc_letter_sink rc_dlq_sink(rc_dlq *d)
{
    return (rc_letter_sink){.submit = sink_submit, .self = d};
}

/* ---- open / close ---------------------------------------------------- */

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *err, size_t errlen)
{
    if (rd_kafka_conf_set(conf, k, v, err, errlen) == RD_KAFKA_CONF_OK)
        return 0;
    return -1;
}

static int conf_set_u32(rd_kafka_conf_t *conf, const char *k, uint32_t v, char *err, size_t errlen)
{
    char text[DLQ_TS_TEXT];
    snprintf(text, sizeof text, "%" PRIu32, v);
    return conf_set(conf, k, text, err, errlen);
}

/* The mock cluster needs an rd_kafka_t of its own to live in; it is never
 * used to produce. */
static int start_mock(rc_dlq *d, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *bootstrap;

    rd_kafka_conf_set_log_cb(conf, on_log);
    /* log_level 4: this handle never connects, so its notice that no
     * bootstrap.servers is set is noise. */
    if (conf_set(conf, "client.id", "ringcast-dlq-mock", err, errlen) != 0 ||
        conf_set(conf, "log_level", "4", err, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    d->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (d->mock_rk == NULL) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    d->mock = rd_kafka_mock_cluster_new(d->mock_rk, DLQ_MOCK_BROKERS);
    if (d->mock == NULL) {
        snprintf(err, errlen, "could not start the embedded mock cluster");
        return -1;
    }
    if (rd_kafka_mock_topic_create(d->mock, d->topic, DLQ_MOCK_PARTITIONS, DLQ_MOCK_BROKERS) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "could not create topic %s on the mock cluster", d->topic);
        return -1;
    }
    bootstrap = rd_kafka_mock_cluster_bootstraps(d->mock);
    d->bootstrap = strdup(bootstrap);
    if (d->bootstrap == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    fprintf(stderr,
            "level=warn component=dlq event=embedded_broker bootstrap=%s topic=\"%s\" "
            "msg=\"development broker: its contents vanish when ringcastd exits\"\n",
            d->bootstrap, d->topic);
    return 0;
}

static rd_kafka_conf_t *producer_conf(rc_dlq *d, const rc_dlq_config *cfg, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(conf, d);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    if (conf_set(conf, "bootstrap.servers", d->bootstrap, err, errlen) != 0 ||
        conf_set(conf, "client.id", d->node, err, errlen) != 0 ||
        conf_set(conf, "enable.idempotence", "true", err, errlen) != 0 ||
        conf_set(conf, "acks", "all", err, errlen) != 0 ||
        conf_set(conf, "compression.type", DLQ_COMPRESSION, err, errlen) != 0 ||
        conf_set(conf, "linger.ms", DLQ_LINGER_MS, err, errlen) != 0 ||
        (cfg->queue_max && conf_set_u32(conf, "queue.buffering.max.messages", cfg->queue_max, err, errlen) != 0) ||
        (cfg->delivery_timeout_ms &&
         conf_set_u32(conf, "message.timeout.ms", cfg->delivery_timeout_ms, err, errlen) != 0)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

static int start_producer(rc_dlq *d, const rc_dlq_config *cfg, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = producer_conf(d, cfg, err, errlen);
    if (conf == NULL)
        return -1;
    d->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (d->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    d->rkt = rd_kafka_topic_new(d->rk, d->topic, NULL);
    if (d->rkt == NULL) {
        snprintf(err, errlen, "topic %s: %s", d->topic, rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    return 0;
}

static const char *or_default(const char *s, const char *def)
{
    return s != NULL && *s != '\0' ? s : def;
}

static void dlq_free(rc_dlq *d)
{
    if (d->rkt != NULL)
        rd_kafka_topic_destroy(d->rkt);
    if (d->rk != NULL)
        rd_kafka_destroy(d->rk);
    if (d->mock != NULL)
        rd_kafka_mock_cluster_destroy(d->mock);
    if (d->mock_rk != NULL)
        rd_kafka_destroy(d->mock_rk);
    free(d->bootstrap);
    free(d->topic);
    free(d->node);
    free(d);
}

rc_dlq *rc_dlq_open(const rc_dlq_config *cfg, char *err, size_t errlen)
{
    rc_dlq *d = calloc(1, sizeof *d);
    bool embedded = cfg->brokers == NULL || cfg->brokers[0] == '\0';

    if (d == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&d->stop, false);
    d->topic = strdup(or_default(cfg->topic, RC_DLQ_DEFAULT_TOPIC));
    d->node = strdup(or_default(cfg->node, RC_DLQ_DEFAULT_NODE));
    if (!embedded)
        d->bootstrap = strdup(cfg->brokers);
    if (d->topic == NULL || d->node == NULL || (!embedded && d->bootstrap == NULL)) {
        snprintf(err, errlen, "out of memory");
        dlq_free(d);
        return NULL;
    }
    if ((embedded && start_mock(d, err, errlen) != 0) || start_producer(d, cfg, err, errlen) != 0) {
        dlq_free(d);
        return NULL;
    }
    if (pthread_create(&d->poller, NULL, poll_loop, d) != 0) {
        snprintf(err, errlen, "could not start the delivery-report thread");
        dlq_free(d);
        return NULL;
    }
    return d;
}

int rc_dlq_flush(rc_dlq *d, int timeout_ms)
{
    /* rd_kafka_flush serves delivery reports itself; the poll thread may
     * serve some of them concurrently, which librdkafka allows. */
    rd_kafka_flush(d->rk, timeout_ms);
    return rd_kafka_outq_len(d->rk);
}

const char *rc_dlq_bootstrap(const rc_dlq *d)
{
    return d->bootstrap;
}

const char *rc_dlq_topic(const rc_dlq *d)
{
    return d->topic;
}

static void copy_counts(uint64_t *out, atomic_uint_fast64_t *in)
{
    for (int r = 0; r < RC_LETTER_REASONS; r++)
        out[r] = atomic_load_explicit(&in[r], memory_order_relaxed);
}

void rc_dlq_stats_read(rc_dlq *d, rc_dlq_stats *out)
{
    int queued = rd_kafka_outq_len(d->rk);
    copy_counts(out->submitted, d->submitted);
    copy_counts(out->delivered, d->delivered);
    copy_counts(out->failed, d->failed);
    copy_counts(out->queue_full, d->queue_full);
    copy_counts(out->rejected, d->rejected);
    out->invalid = atomic_load_explicit(&d->invalid, memory_order_relaxed);
    out->queued = queued > 0 ? (uint64_t)queued : 0;
}

void rc_dlq_close(rc_dlq *d, int timeout_ms)
{
    int left;
    if (d == NULL)
        return;
    /* release: the poll thread's acquire load sees stop and exits. */
    atomic_store_explicit(&d->stop, true, memory_order_release);
    pthread_join(d->poller, NULL);
    left = rc_dlq_flush(d, timeout_ms);
    if (left > 0) {
        /* Purged letters get a delivery report with an error: counted as
         * failed by on_delivery, served by the poll below. */
        rd_kafka_purge(d->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(d->rk, 0);
        fprintf(stderr, "level=warn component=dlq event=letters_lost count=%d timeout_ms=%d\n", left,
                timeout_ms);
    }
    dlq_free(d);
}
