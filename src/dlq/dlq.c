/*
 * Dead-letter producer (ARCHITECTURE §7). submit encodes a letter into a
 * spool record (a MessagePack map, as Kafka gets it, behind a small head),
 * writes it to the spool under the next key, and only then hands it to
 * librdkafka with a copy; it never holds the caller's memory and never
 * blocks on Kafka. The spool is the letter's write-ahead record: with the
 * RocksDB spool the write has reached the WAL (no fsync: a kill -9 of the
 * process leaves it in the page cache) before submit returns, and the
 * letter leaves the spool only when Kafka acknowledged it, so a crash at
 * any point between "letter made" and "acknowledged" loses nothing: the
 * next open finds it and sends it again. An in-memory spool
 * (durability=off) gives no such promise: a crash loses what it holds.
 *
 * Keys come from one counter, and librdkafka is given letters in key
 * order, all under one mutex, so the order letters were submitted in is
 * the order they reach Kafka:
 *
 *   breaker closed and every older letter handed over -> librdkafka at once (direct)
 *   otherwise                                         -> waits in the spool
 *
 * drain_from is the next key to hand over: every letter below it is in
 * librdkafka or acknowledged (but for those librdkafka gave back, from
 * rescan_from on), every one from it on waits. The service
 * thread (service_loop) serves delivery reports, probes Kafka when the
 * breaker is due, and drains waiting letters in key order once it is
 * closed, at most DLQ_DRAIN_WINDOW letters in flight. Each produced
 * message's opaque carries its key, its reason and whether the drain sent
 * it. The deletes of acknowledged letters are written in batches, once per
 * service turn and always before a scan (spool_flush_removed): a put per
 * letter is the cost of durability, a delete per letter need not be.
 *
 * The producer is idempotent with acks=all: a letter retried by librdkafka
 * lands once and in order per partition. A letter librdkafka gives back
 * (timed out, purged at close) is still in the spool under its own key:
 * once nothing is in flight the drain goes back to it, before everything
 * submitted after it. Duplicates come from two places: a letter the broker
 * wrote but whose acknowledgement never came before librdkafka gave up on
 * it (message.timeout.ms, or purged in flight at close), and, after a
 * crash, every letter in flight or acknowledged whose delete had not
 * reached the WAL yet: the next start sends it again.
 */
#include "dlq/dlq.h"

#include "core/clock.h"
#include "core/log.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <msgpack.h>
#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DLQ_POLL_MS 50            /* service thread wakes this often to probe, drain and see stop */
#define DLQ_LINGER_MS "5"         /* batch letters briefly; they are not latency-critical */
#define DLQ_COMPRESSION "lz4"
#define DLQ_MOCK_BROKERS 1        /* embedded development broker: one node */
#define DLQ_MOCK_PARTITIONS 1
#define DLQ_FAIL_LOG_INTERVAL_S 1 /* at most one delivery-failure line per second */
#define DLQ_TS_TEXT 24            /* decimal uint64 plus NUL */
#define DLQ_LOG_TEXT 512
#define DLQ_DRAIN_WINDOW 1000u    /* the drain hands letters over while fewer are in flight */
#define DLQ_REMOVE_BATCH 1024u    /* letters that left the spool, deleted from it in one write */
#define DLQ_PROBE_TIMEOUT_MS 2000 /* a half-open breaker's metadata probe waits this long */
#define DLQ_SPOOL_SCAN_BATCH 4096u /* records per scan when counting the spool at open */

/* The opaque of each produced message: bit 63 = the drain sent it (it
 * waited in the spool first), bits 8..62 = its key, bits 0..7 = its reason. */
#define DLQ_OPQ_DRAINED (UINT64_C(1) << 63)
#define DLQ_OPQ_KEY_MAX (UINT64_C(1) << 55)

/* A spool record: [0] format, [1] reason, [2..9] ts big-endian,
 * [10..11] group id length big-endian, the group id (Kafka key), then the
 * record's value as Kafka gets it. */
#define DLQ_SPOOL_FORMAT 1u
#define DLQ_SPOOL_HEAD 12u

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
    /* The order of letters, the breaker and the spool: under mu. submit
     * holds it across the spool write and producev (which never blocks or
     * calls back), and the service thread across its drain; callbacks take
     * it, and nobody polls librdkafka while holding it. */
    pthread_mutex_t mu;
    rc_spool spool;
    rc_spool_mem *mem_spool;      /* owned when no spool was given */
    bool spool_durable;
    uint64_t spool_max_bytes;
    rc_breaker br;
    uint64_t next_key;            /* key of the next letter submitted */
    uint64_t spool_n, spool_bytes; /* letters in the spool: waiting, or in librdkafka until acknowledged */
    uint64_t drain_from;          /* next key handed to librdkafka; every letter below it was */
    uint64_t rescan_from;         /* a key below drain_from waits again; UINT64_MAX: none */
    uint64_t inflight;            /* letters in librdkafka (direct or drained), not yet reported */
    uint64_t found;               /* letters an earlier run left in the spool, counted at open */
    uint64_t removed[DLQ_REMOVE_BATCH]; /* keys of letters that left the spool, delete not written yet */
    uint32_t n_removed;
    /* Counters: relaxed, they are statistics and order nothing else. */
    atomic_uint_fast64_t submitted[RC_LETTER_REASONS];
    atomic_uint_fast64_t delivered[RC_LETTER_REASONS];
    atomic_uint_fast64_t failed[RC_LETTER_REASONS];
    atomic_uint_fast64_t queue_full[RC_LETTER_REASONS];
    atomic_uint_fast64_t rejected[RC_LETTER_REASONS];
    atomic_uint_fast64_t spooled[RC_LETTER_REASONS];
    atomic_uint_fast64_t spool_full[RC_LETTER_REASONS];
    atomic_uint_fast64_t invalid;
    atomic_uint_fast64_t drained;
    atomic_uint_fast64_t spool_errors;
    atomic_uint_fast64_t produce_errors;
    /* Failure-log rate limit. Callbacks run on the poll thread and in
     * whoever calls flush, so these are atomics too (relaxed: a lost race
     * only prints one line more or less). */
    atomic_llong fail_logged_at;
    atomic_uint_fast64_t fail_suppressed;
    atomic_llong full_logged_at;
    atomic_uint_fast64_t full_suppressed;
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

/* librdkafka logs with syslog levels: 0-3 emerg..err, 4 warning, 5-6
 * notice and info, 7 debug. */
static rc_log_level syslog_level(int level)
{
    return level <= 3 ? RC_LEVEL_ERROR : level <= 4 ? RC_LEVEL_WARN : level <= 6 ? RC_LEVEL_INFO : RC_LEVEL_DEBUG;
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    rc_log_level lv = syslog_level(level);
    if (!rc_log_enabled(lv))
        return;
    char msg[DLQ_LOG_TEXT];
    log_value(msg, sizeof msg, buf);
    rc_log_write(lv, "dlq", "event=rdkafka client=%s fac=%s msg=\"%s\"", rd_kafka_name(rk), fac, msg);
}

static void breaker_trip(rc_dlq *d, const char *why);

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    char msg[DLQ_LOG_TEXT], fatal[DLQ_LOG_TEXT];
    log_value(msg, sizeof msg, reason);
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        rc_dlq *d = opaque;
        pthread_mutex_lock(&d->mu);
        breaker_trip(d, "all_brokers_down");
        pthread_mutex_unlock(&d->mu);
    }
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        rd_kafka_fatal_error(rk, fatal, sizeof fatal);
        log_value(msg, sizeof msg, fatal);
        RC_LOG_ERROR("dlq", "event=producer_fatal msg=\"%s\"", msg);
        return;
    }
    RC_LOG_WARN("dlq", "event=kafka_error error=%s msg=\"%s\"",
            rd_kafka_err2name((rd_kafka_resp_err_t)err), msg);
}

/* ---- rate-limited warnings --------------------------------------------- */

/* True when a line may be written now (at most one per second); otherwise
 * counts it as suppressed. *suppressed_out gets the count to report. */
static bool log_allowed(atomic_llong *at, atomic_uint_fast64_t *suppressed, uint64_t *suppressed_out)
{
    long long now = (long long)(rc_clock_mono_ns() / RC_NS_PER_SEC);
    long long last = atomic_load_explicit(at, memory_order_relaxed);
    if (now - last < DLQ_FAIL_LOG_INTERVAL_S ||
        !atomic_compare_exchange_strong_explicit(at, &last, now, memory_order_relaxed, memory_order_relaxed)) {
        count(suppressed);
        return false;
    }
    *suppressed_out = (uint64_t)atomic_exchange_explicit(suppressed, 0, memory_order_relaxed);
    return true;
}

static void log_delivery_failure(rc_dlq *d, rc_letter_reason r, rd_kafka_resp_err_t err, const char *then)
{
    uint64_t suppressed;
    if (!log_allowed(&d->fail_logged_at, &d->fail_suppressed, &suppressed))
        return;
    RC_LOG_WARN("dlq",
            "event=delivery_failed reason=%s error=%s then=%s suppressed=%" PRIu64
            " msg=\"%s\"",
            rc_letter_reason_name(r), rd_kafka_err2name(err), then, suppressed, rd_kafka_err2str(err));
}

static void log_spool_full(rc_dlq *d, rc_letter_reason r, uint32_t len)
{
    uint64_t suppressed;
    if (!log_allowed(&d->full_logged_at, &d->full_suppressed, &suppressed))
        return;
    RC_LOG_ERROR("dlq",
            "event=spool_full reason=%s bytes=%" PRIu32 " spool_bytes=%" PRIu64
            " spool_max_bytes=%" PRIu64 " suppressed=%" PRIu64
            " msg=\"dead letter refused: the spool is at spool_max_bytes while Kafka is away\"",
            rc_letter_reason_name(r), len, d->spool_bytes, d->spool_max_bytes, suppressed);
}

/* ---- the breaker ----------------------------------------------------- */

/* Caller holds mu. */
static void breaker_trip(rc_dlq *d, const char *why)
{
    if (rc_breaker_trip(&d->br, rc_clock_mono_ms()))
        RC_LOG_WARN("dlq",
                "event=breaker_open why=%s wait_ms=%" PRIu64
                " msg=\"Kafka unreachable: dead letters go to the spool until a probe finds it back\"",
                why, d->br.wait_ms);
}

/* Errors that mean "Kafka is away or busy": the letter waits in the spool.
 * Anything else is a property of the letter itself (too large, not
 * authorised) that no retry cures: counted failed and logged. */
static bool outage_error(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return false;
    default:
        return true;
    }
}

/* ---- the spool ------------------------------------------------------- */

static void put_be(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static uint64_t get_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* A decoded spool record; pointers into the record. */
typedef struct spool_rec {
    rc_letter_reason reason;
    uint64_t ts;
    const char *g;
    uint32_t g_len;
    const uint8_t *value;
    uint32_t value_len;
} spool_rec;

static int spool_rec_decode(const uint8_t *rec, uint32_t len, spool_rec *out)
{
    if (len < DLQ_SPOOL_HEAD || rec[0] != DLQ_SPOOL_FORMAT || rec[1] >= RC_LETTER_REASONS)
        return -1;
    out->reason = (rc_letter_reason)rec[1];
    out->ts = get_be(rec + 2, 8);
    out->g_len = (uint32_t)get_be(rec + 10, 2);
    if (len - DLQ_SPOOL_HEAD < out->g_len)
        return -1;
    out->g = (const char *)rec + DLQ_SPOOL_HEAD;
    out->value = rec + DLQ_SPOOL_HEAD + out->g_len;
    out->value_len = len - DLQ_SPOOL_HEAD - out->g_len;
    return 0;
}

static uint64_t spool_rec_len(uint32_t g_len, size_t value_len)
{
    return DLQ_SPOOL_HEAD + (uint64_t)g_len + value_len;
}

/* Letters in the spool that librdkafka does not hold: they wait for the
 * drain. Caller holds mu. */
static uint64_t spool_waiting(const rc_dlq *d)
{
    assert(d->spool_n >= d->inflight); /* a letter in flight leaves the spool only with its report */
    return d->spool_n - d->inflight;
}

/* Writes one letter's record (len bytes) to the spool under key. Caller
 * holds mu. 0, or -1 when the spool is at its bound or the write failed
 * (both counted and logged). */
static int spool_put(rc_dlq *d, uint64_t key, rc_letter_reason reason, const uint8_t *rec, uint32_t len)
{
    char err[DLQ_LOG_TEXT];
    if (d->spool_bytes + len > d->spool_max_bytes) {
        count(&d->spool_full[reason]);
        log_spool_full(d, reason, len);
        return -1;
    }
    if (d->spool.ops->put(d->spool.self, key, rec, len, err, sizeof err) != 0) {
        count(&d->spool_errors);
        RC_LOG_ERROR("dlq", "event=spool_error msg=\"%s\"", err);
        return -1;
    }
    count(&d->spooled[reason]);
    d->spool_n++;
    d->spool_bytes += len;
    return 0;
}

/* Writes the deletes of the letters that left the spool, in one write.
 * Caller holds mu. Every scan comes after it, so a letter Kafka
 * acknowledged is never sent again while the process lives. */
static void spool_flush_removed(rc_dlq *d)
{
    char err[DLQ_LOG_TEXT];
    if (d->n_removed == 0)
        return;
    if (d->spool.ops->del(d->spool.self, d->removed, d->n_removed, err, sizeof err) != 0) {
        /* They stay on disk and would be sent again after a restart. */
        count(&d->spool_errors);
        RC_LOG_ERROR("dlq", "event=spool_error letters=%" PRIu32 " msg=\"%s\"", d->n_removed, err);
    }
    d->n_removed = 0;
}

/* A letter leaves the spool: Kafka acknowledged it, or it is refused for
 * good. Counted at once; its delete is written with the others of this
 * service turn (a crash before that sends it again at the next start).
 * Caller holds mu. */
static void spool_remove(rc_dlq *d, uint64_t key, uint64_t len)
{
    if (d->n_removed == DLQ_REMOVE_BATCH)
        spool_flush_removed(d);
    d->removed[d->n_removed++] = key;
    d->spool_n--;
    d->spool_bytes -= len;
}

/* A drain pass starts with no removal pending and removes at most one
 * letter per record it scans, so it never writes deletes in the middle of
 * its own scan. */
_Static_assert(DLQ_REMOVE_BATCH >= DLQ_DRAIN_WINDOW, "a drain pass fits in one batch of removals");

/* ---- producing ------------------------------------------------------- */

static void *opaque_make(uint64_t key, rc_letter_reason r, bool drained)
{
    return (void *)(uintptr_t)((drained ? DLQ_OPQ_DRAINED : 0) | (key % DLQ_OPQ_KEY_MAX) << 8 | (uint64_t)r);
}

static rd_kafka_resp_err_t produce(rc_dlq *d, uint64_t key, const spool_rec *r, bool drained)
{
    char ts[DLQ_TS_TEXT];
    const char *reason = rc_letter_reason_name(r->reason);
    snprintf(ts, sizeof ts, "%" PRIu64, r->ts);
    return rd_kafka_producev(d->rk, RD_KAFKA_V_RKT(d->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_KEY(r->g, r->g_len), RD_KAFKA_V_VALUE((void *)r->value, r->value_len),
                             RD_KAFKA_V_HEADER("reason", reason, (ssize_t)strlen(reason)),
                             RD_KAFKA_V_HEADER("node", d->node, (ssize_t)strlen(d->node)),
                             RD_KAFKA_V_HEADER("ts", ts, (ssize_t)strlen(ts)),
                             RD_KAFKA_V_OPAQUE(opaque_make(key, r->reason, drained)), RD_KAFKA_V_END);
}

/* Hands the first waiting letter (key, at or after drain_from) to
 * librdkafka. Caller holds mu. NO_ERROR: it is in flight; an outage error
 * (queue full, no producer yet): it keeps waiting and drain_from stays;
 * any other error: refused for good and removed from the spool. */
static rd_kafka_resp_err_t hand_over(rc_dlq *d, uint64_t key, const spool_rec *r, bool drained)
{
    rd_kafka_resp_err_t err = produce(d, key, r, drained);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && outage_error(err))
        return err;
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        d->inflight++;
    else
        spool_remove(d, key, spool_rec_len(r->g_len, r->value_len));
    d->drain_from = key + 1;
    return err;
}

/* ---- delivery reports ------------------------------------------------ */

/* A failed delivery. Caller holds mu. Kafka away: the letter is still in
 * the spool and waits again (the drain goes back to it once nothing is in
 * flight); anything else: failed for good, removed from the spool. */
static void delivery_failed(rc_dlq *d, const rd_kafka_message_t *m, rc_letter_reason r, uint64_t key)
{
    count(&d->produce_errors);
    if (!outage_error(m->err)) {
        count(&d->failed[r]);
        log_delivery_failure(d, r, m->err, "dropped");
        spool_remove(d, key, spool_rec_len((uint32_t)m->key_len, m->len));
        return;
    }
    if (m->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE && m->err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
        breaker_trip(d, rd_kafka_err2name(m->err));
    if (key < d->rescan_from)
        d->rescan_from = key;
    log_delivery_failure(d, r, m->err, "spooled");
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    rc_dlq *d = opaque;
    uint64_t opq = (uint64_t)(uintptr_t)m->_private;
    rc_letter_reason r = (rc_letter_reason)(opq & 0xff);
    uint64_t key = (opq & ~DLQ_OPQ_DRAINED) >> 8;
    bool drained = (opq & DLQ_OPQ_DRAINED) != 0;
    (void)rk;
    if (r >= RC_LETTER_REASONS) /* cannot happen: submit checked it */
        return;
    pthread_mutex_lock(&d->mu);
    assert(d->inflight > 0);
    d->inflight--;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        count(&d->delivered[r]);
        if (drained)
            count(&d->drained);
        spool_remove(d, key, spool_rec_len((uint32_t)m->key_len, m->len));
    } else {
        delivery_failed(d, m, r, key);
    }
    pthread_mutex_unlock(&d->mu);
}

/* ---- probing and draining ------------------------------------------------ */

/* Asks the cluster for the topic's metadata: true when Kafka answered and
 * every partition of the topic has a leader to take letters. */
static bool probe(rc_dlq *d)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(d->rk, 0, d->rkt, &md, DLQ_PROBE_TIMEOUT_MS);
    bool ok = err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
              md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topics[0].partition_cnt > 0;
    for (int i = 0; ok && i < md->topics[0].partition_cnt; i++)
        ok = md->topics[0].partitions[i].leader >= 0;
    if (md)
        rd_kafka_metadata_destroy(md);
    return ok;
}

/* Open long enough and nothing left in librdkafka (letters it still holds
 * come before anything spooled): probe, then close or stay open. */
static void maybe_probe(rc_dlq *d)
{
    pthread_mutex_lock(&d->mu);
    bool due = rd_kafka_outq_len(d->rk) == 0 && rc_breaker_probe_due(&d->br, rc_clock_mono_ms());
    pthread_mutex_unlock(&d->mu);
    if (!due)
        return;
    bool ok = probe(d); /* without mu: it waits for the network */
    pthread_mutex_lock(&d->mu);
    rc_breaker_probe_done(&d->br, ok, rc_clock_mono_ms());
    if (d->br.state == RC_BREAKER_CLOSED)
        RC_LOG_INFO("dlq",
                "event=breaker_closed spool_letters=%" PRIu64 " spool_bytes=%" PRIu64
                " msg=\"Kafka is back: draining the spool in order\"",
                d->spool_n, d->spool_bytes);
    pthread_mutex_unlock(&d->mu);
}

typedef struct drain_ctx {
    rc_dlq *d;
    uint32_t budget;     /* letters this pass may produce */
} drain_ctx;

static int drain_one(void *ud, uint64_t key, const uint8_t *rec, uint32_t len)
{
    drain_ctx *c = ud;
    rc_dlq *d = c->d;
    spool_rec r;
    if (spool_rec_decode(rec, len, &r) != 0) {
        /* Not a record this build wrote (another format, damage): it can
         * never be sent, so it is logged, counted and removed, or the spool
         * would never empty and letters never go straight to Kafka again. */
        count(&d->spool_errors);
        RC_LOG_ERROR("dlq", "event=spool_bad_record key=%" PRIu64 " bytes=%" PRIu32
                " msg=\"not a dead-letter record of this build: removed from the spool\"", key, len);
        spool_remove(d, key, len);
        d->drain_from = key + 1;
        return 0;
    }
    rd_kafka_resp_err_t err = hand_over(d, key, &r, true);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && outage_error(err))
        return 1; /* queue full or no producer: this key again next pass */
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        count(&d->failed[r.reason]);
        log_delivery_failure(d, r.reason, err, "dropped");
        return 0;
    }
    return --c->budget == 0;
}

/* Writes the deletes of the letters Kafka acknowledged since the last turn;
 * then, breaker closed, hands the waiting letters to librdkafka in key
 * order. */
static void drain(rc_dlq *d)
{
    char err[DLQ_LOG_TEXT];
    pthread_mutex_lock(&d->mu);
    spool_flush_removed(d);
    if (d->rescan_from != UINT64_MAX && d->inflight == 0) {
        d->drain_from = d->rescan_from; /* nothing in flight: safe to go back */
        d->rescan_from = UINT64_MAX;
    }
    if (d->br.state == RC_BREAKER_CLOSED && spool_waiting(d) > 0 && d->inflight < DLQ_DRAIN_WINDOW) {
        drain_ctx c = { .d = d, .budget = (uint32_t)(DLQ_DRAIN_WINDOW - d->inflight) };
        if (d->spool.ops->scan(d->spool.self, d->drain_from, c.budget, drain_one, &c, err, sizeof err) != 0) {
            count(&d->spool_errors);
            RC_LOG_ERROR("dlq", "event=spool_error msg=\"%s\"", err);
        }
    }
    pthread_mutex_unlock(&d->mu);
}

static void *service_loop(void *arg)
{
    rc_dlq *d = arg;
    /* acquire: pairs with the release store in rc_dlq_close. */
    while (!atomic_load_explicit(&d->stop, memory_order_acquire)) {
        rd_kafka_poll(d->rk, DLQ_POLL_MS);
        maybe_probe(d);
        drain(d);
    }
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

/* The record's value: one map with the field names of
 * proto/PROTOCOL.md §9. Optional fields are left out, not sent as nil. */
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

/* The spool record of l in sb: the head (format, reason, ts, group id
 * length), the group id (the Kafka key), then the value (encode_letter).
 * 0, or -1 when the buffer could not grow or the letter does not fit. */
static int encode_record(msgpack_sbuffer *sb, const rc_letter *l)
{
    uint8_t head[DLQ_SPOOL_HEAD];
    if (l->g.len > UINT16_MAX)
        return -1;
    head[0] = DLQ_SPOOL_FORMAT;
    head[1] = (uint8_t)l->reason;
    put_be(head + 2, l->ts, 8);
    put_be(head + 10, l->g.len, 2);
    if (msgpack_sbuffer_write(sb, (const char *)head, sizeof head) != 0 ||
        (l->g.len && msgpack_sbuffer_write(sb, l->g.ptr, l->g.len) != 0) || encode_letter(sb, l) != 0)
        return -1;
    return sb->size <= UINT32_MAX ? 0 : -1;
}

/* ---- submit ---------------------------------------------------------- */

/* Caller holds mu: Kafka at once when the breaker is closed and no older
 * letter waits (every letter in the spool is already in librdkafka). */
static bool goes_direct(const rc_dlq *d)
{
    return d->br.state == RC_BREAKER_CLOSED && spool_waiting(d) == 0 && d->rescan_from == UINT64_MAX;
}

/* The letter under key was just spooled and nothing older waits: hands it
 * over now (a full local queue leaves it waiting for the drain). Caller
 * holds mu. 0, or -1 when librdkafka refused it for good (it left the
 * spool again). */
static int submit_direct(rc_dlq *d, uint64_t key, const spool_rec *r)
{
    rd_kafka_resp_err_t err = hand_over(d, key, r, false);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        count(&d->submitted[r->reason]);
    else if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        count(&d->queue_full[r->reason]); /* it waits in the spool */
    else if (!outage_error(err)) {
        count(&d->rejected[r->reason]);
        return -1;
    }
    return 0;
}

int rc_dlq_submit(rc_dlq *d, const rc_letter *l)
{
    msgpack_sbuffer sb;
    spool_rec r;
    int rc = -1;

    if ((unsigned)l->reason >= RC_LETTER_REASONS) {
        count(&d->invalid);
        return -1;
    }
    msgpack_sbuffer_init(&sb);
    if (encode_record(&sb, l) != 0 || spool_rec_decode((const uint8_t *)sb.data, (uint32_t)sb.size, &r) != 0) {
        msgpack_sbuffer_destroy(&sb);
        count(&d->rejected[l->reason]);
        return -1;
    }
    pthread_mutex_lock(&d->mu);
    uint64_t key = d->next_key;
    bool direct = goes_direct(d); /* decided before the letter itself waits */
    if (spool_put(d, key, l->reason, (const uint8_t *)sb.data, (uint32_t)sb.size) == 0) {
        d->next_key++;
        rc = direct ? submit_direct(d, key, &r) : 0;
    }
    pthread_mutex_unlock(&d->mu);
    msgpack_sbuffer_destroy(&sb);
    return rc;
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
    RC_LOG_WARN("dlq",
            "event=embedded_broker bootstrap=%s topic=\"%s\" "
            "msg=\"development broker: its contents vanish when ringcastd exits\"",
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
        conf_set_u32(conf, "message.timeout.ms",
                     cfg->delivery_timeout_ms ? cfg->delivery_timeout_ms : RC_DLQ_DEFAULT_DELIVERY_TIMEOUT_MS, err,
                     errlen) != 0) {
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
    rc_spool_mem_free(d->mem_spool);
    pthread_mutex_destroy(&d->mu);
    free(d->bootstrap);
    free(d->topic);
    free(d->node);
    free(d);
}

typedef struct spool_census {
    rc_dlq *d;
    uint64_t last;  /* key of the last record seen */
    uint32_t seen;  /* records in this scan */
} spool_census;

static int census_one(void *ud, uint64_t key, const uint8_t *rec, uint32_t len)
{
    spool_census *c = ud;
    (void)rec;
    c->d->spool_n++;
    c->d->spool_bytes += len;
    c->last = key;
    c->seen++;
    return 0;
}

/* Counts what an earlier run left in the spool; new letters get keys after
 * it, so it drains first. */
static int spool_census_run(rc_dlq *d, char *err, size_t errlen)
{
    spool_census c = { .d = d };
    uint64_t from = 0;
    do {
        c.seen = 0;
        if (d->spool.ops->scan(d->spool.self, from, DLQ_SPOOL_SCAN_BATCH, census_one, &c, err, errlen) != 0)
            return -1;
        from = c.last + 1;
    } while (c.seen == DLQ_SPOOL_SCAN_BATCH);
    d->next_key = d->spool_n ? c.last + 1 : 0;
    d->found = d->spool_n;
    if (d->spool_n)
        RC_LOG_INFO("dlq",
                "event=spool_found letters=%" PRIu64 " bytes=%" PRIu64
                " msg=\"dead letters an earlier run left unacknowledged are sent first; those Kafka had already taken arrive twice\"",
                d->spool_n, d->spool_bytes);
    return 0;
}

static int dlq_init(rc_dlq *d, const rc_dlq_config *cfg, char *err, size_t errlen)
{
    bool embedded = cfg->brokers == NULL || cfg->brokers[0] == '\0';
    pthread_mutex_init(&d->mu, NULL);
    atomic_init(&d->stop, false);
    rc_breaker_init(&d->br, cfg->breaker_ms ? cfg->breaker_ms : RC_DLQ_DEFAULT_BREAKER_MS);
    d->spool_max_bytes = cfg->spool_max_bytes ? cfg->spool_max_bytes : RC_DLQ_DEFAULT_SPOOL_MAX_BYTES;
    d->rescan_from = UINT64_MAX;
    d->spool = cfg->spool;
    d->spool_durable = cfg->spool.ops != NULL && cfg->spool_durable;
    if (d->spool.ops == NULL) {
        d->mem_spool = rc_spool_mem_new();
        if (d->mem_spool)
            d->spool = rc_spool_mem_spool(d->mem_spool);
    }
    d->topic = strdup(or_default(cfg->topic, RC_DLQ_DEFAULT_TOPIC));
    d->node = strdup(or_default(cfg->node, RC_DLQ_DEFAULT_NODE));
    if (!embedded)
        d->bootstrap = strdup(cfg->brokers);
    if (d->topic == NULL || d->node == NULL || (!embedded && d->bootstrap == NULL) || d->spool.ops == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (spool_census_run(d, err, errlen) != 0)
        return -1;
    if (!d->spool_durable)
        RC_LOG_WARN("dlq", "event=spool_in_memory "
                "msg=\"dead letters wait in memory until Kafka acknowledges them: a crash loses those\"");
    if ((embedded && start_mock(d, err, errlen) != 0) || start_producer(d, cfg, err, errlen) != 0)
        return -1;
    return 0;
}

rc_dlq *rc_dlq_open(const rc_dlq_config *cfg, char *err, size_t errlen)
{
    rc_dlq *d = calloc(1, sizeof *d);
    if (d == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (dlq_init(d, cfg, err, errlen) != 0) {
        dlq_free(d);
        return NULL;
    }
    if (pthread_create(&d->poller, NULL, service_loop, d) != 0) {
        snprintf(err, errlen, "could not start the dead-letter service thread");
        dlq_free(d);
        return NULL;
    }
    return d;
}

int rc_dlq_flush(rc_dlq *d, int timeout_ms)
{
    /* rd_kafka_flush serves delivery reports itself; the service thread may
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
    copy_counts(out->spooled, d->spooled);
    copy_counts(out->spool_full, d->spool_full);
    out->invalid = atomic_load_explicit(&d->invalid, memory_order_relaxed);
    out->drained = atomic_load_explicit(&d->drained, memory_order_relaxed);
    out->spool_errors = atomic_load_explicit(&d->spool_errors, memory_order_relaxed);
    out->produce_errors = atomic_load_explicit(&d->produce_errors, memory_order_relaxed);
    out->queued = queued > 0 ? (uint64_t)queued : 0;
    pthread_mutex_lock(&d->mu);
    out->breaker = d->br.state;
    out->breaker_opens = d->br.opens;
    out->spool_letters = d->spool_n;
    out->spool_bytes = d->spool_bytes;
    out->spool_max_bytes = d->spool_max_bytes;
    out->inflight = d->inflight;
    out->spool_found = d->found;
    pthread_mutex_unlock(&d->mu);
}

/* A letter left in a memory spool at close: failed, by reason. */
static int count_lost(void *ud, uint64_t key, const uint8_t *rec, uint32_t len)
{
    rc_dlq *d = ud;
    spool_rec r;
    (void)key;
    if (spool_rec_decode(rec, len, &r) == 0)
        count(&d->failed[r.reason]);
    return 0;
}

void rc_dlq_close(rc_dlq *d, int timeout_ms)
{
    int left;
    if (d == NULL)
        return;
    /* release: the service thread's acquire load sees stop and exits. */
    atomic_store_explicit(&d->stop, true, memory_order_release);
    pthread_join(d->poller, NULL);
    left = rc_dlq_flush(d, timeout_ms);
    if (left > 0) {
        /* Purged letters get a delivery report with a purge error, served
         * here: they stay in the spool under their own keys (delivery_failed). */
        rd_kafka_purge(d->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(d->rk, 0);
    }
    pthread_mutex_lock(&d->mu);
    spool_flush_removed(d);
    if (d->spool_n > 0 && d->spool_durable)
        RC_LOG_WARN("dlq",
                "event=spool_kept letters=%" PRIu64 " bytes=%" PRIu64
                " msg=\"Kafka did not take every dead letter before the stop; they drain at the next start\"",
                d->spool_n, d->spool_bytes);
    else if (d->spool_n > 0) {
        char err[DLQ_LOG_TEXT];
        d->spool.ops->scan(d->spool.self, 0, UINT32_MAX, count_lost, d, err, sizeof err);
        RC_LOG_ERROR("dlq",
                "event=letters_lost count=%" PRIu64
                " msg=\"Kafka did not take every dead letter before the stop and the spool is in memory\"",
                d->spool_n);
    }
    pthread_mutex_unlock(&d->mu);
    dlq_free(d);
}
