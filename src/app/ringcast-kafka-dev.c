/*
 * ringcast-kafka-dev: an embedded development Kafka broker in its own
 * process (ARCHITECTURE §7), built on librdkafka's mock cluster. It prints
 * `bootstrap=HOST:PORT[,...]` as its first stdout line and runs until
 * SIGTERM or SIGINT. SIGUSR1 takes every broker down and SIGUSR2 brings them
 * back, so tests can watch the server spool and drain dead letters;
 * --rtt-ms delays every broker's answers, so a test can crash the server
 * while its letters wait for Kafka's acknowledgement.
 *
 * Signals are blocked before librdkafka starts its threads and taken with
 * sigwait here, so no handler runs inside librdkafka's code.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dlq/dlq.h"
#include "core/log.h"

#define DEFAULT_BROKERS 1
#define DEFAULT_PARTITIONS 1
#define MAX_BROKERS 16
#define MAX_PARTITIONS 1024
#define MAX_REPLICATION 3
#define MAX_RTT_MS 60000
#define ERR_TEXT 512

typedef struct options {
    int brokers;
    int partitions;
    int rtt_ms;
    const char *topic;
} options;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ringcast-kafka-dev [--brokers N] [--partitions P] [--topic T] [--rtt-ms MS]\n"
            "  --brokers N     mock brokers (default %d, at most %d)\n"
            "  --partitions P  partitions of the topic (default %d)\n"
            "  --topic T       topic to create (default %s)\n"
            "  --rtt-ms MS     every broker answers MS late (default 0, at most %d)\n"
            "Prints bootstrap=HOST:PORT first; SIGUSR1 brokers down, SIGUSR2 up,\n"
            "SIGTERM/SIGINT stop.\n",
            DEFAULT_BROKERS, MAX_BROKERS, DEFAULT_PARTITIONS, RC_DLQ_DEFAULT_TOPIC, MAX_RTT_MS);
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* 0 to run, 1 to exit successfully (help), -1 on a bad command line. */
static int parse_args(int argc, char **argv, options *o)
{
    o->brokers = DEFAULT_BROKERS;
    o->partitions = DEFAULT_PARTITIONS;
    o->rtt_ms = 0;
    o->topic = RC_DLQ_DEFAULT_TOPIC;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (v == NULL) {
            fprintf(stderr, "ringcast-kafka-dev: %s needs a value\n", a);
            return -1;
        }
        if ((strcmp(a, "--brokers") == 0 && parse_int(v, 1, MAX_BROKERS, &o->brokers) == 0) ||
            (strcmp(a, "--partitions") == 0 && parse_int(v, 1, MAX_PARTITIONS, &o->partitions) == 0) ||
            (strcmp(a, "--rtt-ms") == 0 && parse_int(v, 0, MAX_RTT_MS, &o->rtt_ms) == 0)) {
            i++;
        } else if (strcmp(a, "--topic") == 0 && *v != '\0') {
            o->topic = v;
            i++;
        } else {
            fprintf(stderr, "ringcast-kafka-dev: bad option %s %s\n", a, v);
            return -1;
        }
    }
    return 0;
}

static void set_brokers(rd_kafka_mock_cluster_t *mc, int brokers, int up)
{
    for (int id = 1; id <= brokers; id++) {
        rd_kafka_resp_err_t err =
            up ? rd_kafka_mock_broker_set_up(mc, id) : rd_kafka_mock_broker_set_down(mc, id);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
            RC_LOG_WARN("kafka-dev", "event=broker_%s_failed broker=%d error=%s",
                    up ? "up" : "down", id, rd_kafka_err2name(err));
    }
    RC_LOG_INFO("kafka-dev", "event=brokers_%s count=%d", up ? "up" : "down",
            brokers);
}

static void set_rtt(rd_kafka_mock_cluster_t *mc, int brokers, int rtt_ms)
{
    for (int id = 1; id <= brokers && rtt_ms > 0; id++) {
        rd_kafka_resp_err_t err = rd_kafka_mock_broker_set_rtt(mc, id, rtt_ms);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
            RC_LOG_WARN("kafka-dev", "event=broker_rtt_failed broker=%d error=%s", id, rd_kafka_err2name(err));
    }
}

static int serve(rd_kafka_mock_cluster_t *mc, const options *o, const sigset_t *set)
{
    for (;;) {
        int sig;
        if (sigwait(set, &sig) != 0)
            return 1;
        if (sig == SIGUSR1) {
            set_brokers(mc, o->brokers, 0);
        } else if (sig == SIGUSR2) {
            set_brokers(mc, o->brokers, 1);
        } else {
            RC_LOG_INFO("kafka-dev", "event=stopping signal=%d", sig);
            return 0;
        }
    }
}

int main(int argc, char **argv)
{
    options o;
    sigset_t set;
    char err[ERR_TEXT];
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 2;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) {
        fprintf(stderr, "ringcast-kafka-dev: cannot block signals\n");
        return 1;
    }

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* log_level 4: this handle only hosts the cluster and never connects,
     * so its notice that no bootstrap.servers is set is noise. */
    if (rd_kafka_conf_set(conf, "client.id", "ringcast-kafka-dev", err, sizeof err) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "4", err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "ringcast-kafka-dev: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (rk == NULL) {
        fprintf(stderr, "ringcast-kafka-dev: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, o.brokers);
    if (mc == NULL) {
        fprintf(stderr, "ringcast-kafka-dev: could not start the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    int replication = o.brokers < MAX_REPLICATION ? o.brokers : MAX_REPLICATION;
    rd_kafka_resp_err_t terr = rd_kafka_mock_topic_create(mc, o.topic, o.partitions, replication);
    if (terr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "ringcast-kafka-dev: topic %s: %s\n", o.topic, rd_kafka_err2str(terr));
        rc = 1;
    } else {
        set_rtt(mc, o.brokers, o.rtt_ms);
        printf("bootstrap=%s\n", rd_kafka_mock_cluster_bootstraps(mc));
        fflush(stdout);
        RC_LOG_WARN("kafka-dev",
                "event=started bootstrap=%s brokers=%d topic=\"%s\" partitions=%d rtt_ms=%d "
                "msg=\"development broker: its contents vanish when it exits\"",
                rd_kafka_mock_cluster_bootstraps(mc), o.brokers, o.topic, o.partitions, o.rtt_ms);
        rc = serve(mc, &o, &set);
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return rc;
}
