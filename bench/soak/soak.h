/*
 * ringcast-soak: a long mixed load against a running ringcastd, to see
 * whether it stays correct and its memory and descriptors stay flat.
 *
 * Four kinds of client run side by side, each in its own thread:
 *
 *   chat.c   publishers and readers (one epoll loop): steady chat traffic on
 *            many groups; every reader and every publisher's echo stream is
 *            checked gapless per group (seq rises by exactly 1 from join to
 *            the end), and every publisher message's body is checked;
 *   slow.c   slow consumers: join the busy groups, then stop reading or read
 *            slowly; the server letters and closes them; they catch up with
 *            `join since` (in the session, or after reconnecting) and check
 *            that what history gave back is whole;
 *   churn.c  short sessions, continuously: connect, hello, join, send a
 *            little, maybe hist or leave, close (the blocking rc_client);
 *   bad.c    bad clients: malformed frames of many kinds, each with the
 *            outcome proto/PROTOCOL.md prescribes (an `err` code, a close),
 *            and connections left hanging.
 *
 * The main thread (ringcast-soak.c) samples the server every few seconds
 * (sample.c: RSS, open descriptors, CPU from /proc; counters from the admin
 * /metrics page) into a CSV, then stops the load, audits every group's last
 * seq and prints the summary.
 *
 * Threads share no locks. Every counter has one writing thread; others read
 * it with relaxed atomic loads (LOAD). The run's phase is published with
 * release stores and read with acquire loads.
 *
 * Everything is bounded: the run by --duration, every blocking call by a
 * timeout, every wait loop by a deadline, every buffer by a cap; all traffic
 * goes to 127.0.0.1.
 */
#ifndef RC_SOAK_H
#define RC_SOAK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <ringcast/proto.h>

#include "hist.h"      /* bench/lib */
#include "workload.h"  /* bench/lib */

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define BUMP(x, d) STORE(x, LOAD(x) + (d))   /* single writer only */
#define LOAD_ACQ(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE_REL(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

#define SOAK_HOST "127.0.0.1"
#define SOAK_IO_TIMEOUT_MS 5000      /* every blocking request and reply */
#define SOAK_CONNECT_TIMEOUT_MS 5000
#define SOAK_LAT_MAX_NS (UINT64_C(120) * 1000000000u) /* histogram range */
#define SOAK_MAX_SERVER_FRAME (16u << 20) /* a server frame longer than this is a fault */
#define SOAK_NAME_MAX 32u            /* user and group names we make */

/* Group and user names (proto/PROTOCOL.md §3: 1..128 and 1..64 bytes). */
#define SOAK_STEADY_PREFIX "sg"     /* sg<g>: the chat groups */
#define SOAK_CHURN_PREFIX "sx"      /* sx<k>: groups only churn sessions use */
#define SOAK_BAD_PREFIX "sb"        /* sb<k>: groups nobody joins (E_NOT_MEMBER) */
#define SOAK_PUB_USER "pub"
#define SOAK_READER_USER "rd"
#define SOAK_SLOW_USER "slow"
#define SOAK_CHURN_USER "ch"
#define SOAK_BAD_USER "bad"
#define SOAK_AUDIT_USER "audit"

/* The run's phases, in order. */
typedef enum soak_phase {
    SOAK_SETUP,     /* chat connections open and join */
    SOAK_RUN,       /* everything runs */
    SOAK_STOP,      /* publishers, churn and bad clients stop sending */
    SOAK_DRAIN,     /* readers catch up with the audited last seqs */
    SOAK_DONE       /* every thread leaves */
} soak_phase;

typedef struct soak_options {
    uint16_t port;             /* ringcastd TCP port */
    uint16_t admin_port;       /* its admin HTTP port (/metrics), 0: none */
    long server_pid;           /* sampled from /proc; required */
    long broker_pid;           /* dead-letter broker process, sampled too; 0: none */
    double duration_s;         /* time of load (SOAK_RUN) */
    double sample_s;           /* sampling period */
    double idle_s;             /* sampling with no load after the drain */
    const char *csv;           /* samples file, NULL: none */
    uint64_t seed;

    uint32_t groups;           /* steady chat groups */
    uint32_t hot;              /* groups 0..hot-1 are busy */
    double hot_share;          /* share of the rate that goes to the busy groups */
    uint32_t members;          /* reader members per group */
    uint32_t readers;          /* reader connections (>= members) */
    uint32_t publishers;       /* publisher connections; group g belongs to g % P */
    double rate;               /* messages/s offered by all publishers */
    uint32_t body;             /* publisher body bytes (>= SOAK_BODY_HDR) */
    uint32_t window;           /* unacknowledged sends per publisher at most */

    uint32_t slow;             /* slow consumer connections */
    uint32_t slow_groups;      /* groups each joins: 0..slow_groups-1 */
    double slow_stall_s;       /* longest time a slow consumer lags */
    uint32_t slow_read_bps;    /* bytes/s a trickling slow consumer reads */

    double churn_rate;         /* churn sessions per second */
    uint32_t churn_users;      /* distinct churn user names (stored membership stays bounded) */

    double bad_rate;           /* bad-client cases per second */
    uint32_t hang_max;         /* hanging connections held at once */
    double hello_timeout_s;    /* the server's hello_timeout_ms: a hang before hello is closed by then */
    double idle_timeout_s;     /* its idle_timeout_ms: a silent session is closed by then */
} soak_options;

/* ---- the run ---- */

extern int g_soak_phase;              /* soak_phase; written by the main thread */
static inline soak_phase soak_phase_now(void) { return (soak_phase)LOAD_ACQ(g_soak_phase); }
bool soak_interrupted(void);          /* SIGINT/SIGTERM seen */
uint64_t soak_now_ns(void);           /* CLOCK_MONOTONIC */
void soak_sleep_ms(uint32_t ms);

/* Per-code counters of `err` replies (index rc_err; RC_OK counts codes we
 * do not know). */
typedef struct soak_codes {
    uint64_t n[RC_E_COUNT];
} soak_codes;
void soak_codes_bump(soak_codes *c, rc_err e); /* single writer */
/* "E_X=n E_Y=m" of the non-zero codes into buf; "none" if all are zero. */
const char *soak_codes_str(const soak_codes *c, char *buf, size_t n);

/* ---- names (ringcast-soak.c) ---- */

/* "<prefix><n>" into buf (at least SOAK_NAME_MAX bytes); returns buf. */
const char *soak_name(char *buf, const char *prefix, uint32_t n);
/* Parses "<prefix><decimal>"; UINT32_MAX if s is not one. */
uint32_t soak_parse_name(const char *s, size_t len, const char *prefix);

/* ---- the publishers' body: header, then a filler derived from it ---- */

#define SOAK_BODY_MAGIC "SK"
#define SOAK_BODY_HDR 42u   /* magic, group (8 hex), publisher seq (16 hex), send time (16 hex) */
#define SOAK_BODY_MIN SOAK_BODY_HDR
#define SOAK_BODY_MAX 60000u

void soak_body_make(uint8_t *b, uint32_t len, uint32_t g, uint64_t pseq, uint64_t ts_ns);
/* 0 and the header's fields, or -1 when the body is not one soak_body_make
 * wrote with this length. */
int soak_body_check(const uint8_t *b, uint32_t len, uint32_t want_len, uint32_t *g, uint64_t *pseq,
                    uint64_t *ts_ns);

/* ---- one (connection, group) stream of sequence numbers (stream.c) ---- */

typedef struct soak_stream {
    uint64_t next;       /* seq expected next; 0: not joined yet */
    uint64_t last;       /* last seq received, or joined's seq (read by main: LOAD) */
    uint64_t pub_last;   /* publisher seq of the last publisher message */
    uint64_t received;   /* messages received */
} soak_stream;

typedef enum soak_seq {
    SOAK_SEQ_NEXT,       /* the expected one */
    SOAK_SEQ_GAP,        /* seqs were skipped (*skipped of them) */
    SOAK_SEQ_DUP,        /* the last seq again */
    SOAK_SEQ_BEHIND,     /* below the last seq: out of order */
    SOAK_SEQ_EARLY       /* a message before `joined` */
} soak_seq;

/* `joined` with the group's last seq: messages from seq + 1 on follow. */
void soak_stream_join(soak_stream *s, uint64_t seq);
/* Takes one message's seq. A gap moves the stream on past it. */
soak_seq soak_stream_take(soak_stream *s, uint64_t seq, uint64_t *skipped);

/* ---- component statistics (each struct written by its own thread) ---- */

typedef struct soak_chat_stats {
    uint64_t ready;          /* connections with their session and joins confirmed */
    uint64_t sent;           /* sends written */
    uint64_t acked;          /* acks */
    uint64_t dup_acks;       /* acks with dup: true (every mid is new: a fault) */
    uint64_t behind;         /* messages due that were dropped: more than 2 s behind schedule */
    uint64_t deliveries;     /* msgs to reader connections */
    uint64_t echoes;         /* msgs to publishers (their own, PROTOCOL §6.4) */
    uint64_t foreign;        /* deliveries of churn sessions' messages */
    uint64_t gaps;           /* seqs skipped in a stream */
    uint64_t dups;           /* a seq twice in a row */
    uint64_t reorders;       /* a seq below one already seen */
    uint64_t early;          /* a msg before its group's `joined` */
    uint64_t stray;          /* a msg for a group the connection did not join */
    uint64_t corrupt;        /* a publisher body that fails its check, or sent by the wrong user */
    uint64_t pub_jumps;      /* publisher seqs skipped within a group (sends refused) */
    uint64_t pub_repeats;    /* a publisher message again under a new seq (sent once: a fault) */
    uint64_t bad_frames;     /* server frames that do not decode */
    uint64_t lost_conns;     /* chat connections closed under us */
    uint64_t byes;
    soak_codes refused;      /* err replies to sends, by code */
    soak_codes other_errs;   /* any other err */
    /* latency of reader deliveries, send to receive, over the last sample
     * period (published by the chat thread when the period turns) */
    uint64_t lat_count, lat_p50_ns, lat_p99_ns, lat_max_ns;
    uint64_t pings;          /* the server's pings (a reader is silent), each answered with pong */
} soak_chat_stats;

typedef struct soak_slow_stats {
    uint64_t connects;       /* sessions opened */
    uint64_t cycles;         /* lag phases run */
    uint64_t stalls, trickles;
    uint64_t closed_by_server; /* sessions the server closed (EOF/reset) */
    uint64_t byes;
    uint64_t left_open;      /* sessions closed by us after a lag the server let pass */
    uint64_t deliveries;     /* live msgs */
    uint64_t replayed;       /* msgs received between joined and synced */
    uint64_t holes;          /* gap events in live streams (the server lettered) */
    uint64_t hole_seqs;      /* seqs missing at those gaps */
    uint64_t resyncs;        /* `join since` answered with synced */
    uint64_t resync_lost;    /* synced.lost = true: history no longer reaches back */
    uint64_t lost_seqs;      /* seqs history could not give back (lost = true) */
    uint64_t resync_bad;     /* a replay that was not whole, or synced that disagrees with it */
    uint64_t disorder;       /* live msgs at or below one already seen */
    uint64_t corrupt;        /* a publisher body that fails its check */
    uint64_t bad_frames;
    uint64_t pages;          /* synced with more: true, joined again for the next page */
    uint64_t pings;          /* the server's pings, answered */
    soak_codes errs;
} soak_slow_stats;

typedef struct soak_churn_stats {
    uint64_t sessions;       /* connections opened */
    uint64_t completed;      /* sessions that did everything and closed */
    uint64_t sends_acked;
    uint64_t hists;
    uint64_t leaves;
    uint64_t failures;       /* a timeout, a close, a connect that failed */
    soak_codes errs;
} soak_churn_stats;

#define SOAK_BAD_CASES_MAX 80u
typedef struct soak_bad_case_stats {
    uint64_t runs;           /* times run */
    uint64_t ok;             /* the outcome the protocol prescribes */
    uint64_t wrong_code;     /* an err, but with another code (or rid not echoed) */
    uint64_t no_err;         /* a success reply or nothing, where an err was due */
    uint64_t not_closed;     /* the server kept a connection it must close */
    uint64_t closed;         /* the server closed a connection it must keep */
    uint64_t timeouts;       /* no answer within the timeout */
    uint64_t bad_reply;      /* a reply that breaks the protocol (a replay not whole, a hist out of order) */
} soak_bad_case_stats;

typedef struct soak_bad_stats {
    uint64_t cases_run;
    uint64_t frames_sent;    /* bad frames (and requests of the bad cases) written */
    uint64_t bytes_sent;
    uint64_t hang_opened, hang_closed_by_server, hang_open_at_end;
    uint64_t hang_byes, hang_pings; /* bye and ping frames the hanging connections got */
    uint64_t hist_replies, hist_msgs;
    uint64_t since_replayed; /* msgs between joined and synced of the odd-since joins */
    uint64_t bad_frames;     /* server frames that do not decode */
    soak_codes codes;        /* err codes received, all cases */
    soak_bad_case_stats per_case[SOAK_BAD_CASES_MAX];
} soak_bad_stats;

/* ---- the server's resources and counters (sample.c) ---- */

typedef struct soak_sample {
    bool alive;              /* /proc/PID exists */
    long rss_kb;             /* VmRSS */
    long hwm_kb;             /* VmHWM: peak RSS */
    long anon_kb, file_kb;   /* RssAnon, RssFile: heap and stacks; mapped files */
    long fds;                /* entries of /proc/PID/fd */
    long fd_sockets, fd_files, fd_other; /* by kind: socket, path, anything else (io_uring, eventfd, pipe) */
    long threads;            /* Threads */
    double cpu_s;            /* utime + stime */
    long broker_rss_kb;      /* the dead-letter broker's VmRSS, -1: none */
    bool metrics;            /* /metrics answered; the fields below are valid */
    uint64_t conns_open;
    uint64_t slow_marked;    /* ringcast_slow_consumers_total */
    uint64_t slow_letters;   /* ringcast_slow_consumer_letters_total */
    uint64_t slow_closed;    /* ringcast_slow_consumer_closed_total */
    uint64_t pressure_holds; /* ringcast_io_pressure_holds_total */
    uint64_t errors;         /* ringcast_errors_total, all codes */
    uint64_t letters_refused;
    uint64_t spool_letters;  /* ringcast_dlq_spool_letters */
    uint64_t sequenced;      /* ringcast_messages_sequenced_total */
} soak_sample;

/* Takes one sample of the server (and broker) from /proc and /metrics. */
void soak_sample_take(const soak_options *o, soak_sample *s);

/* ---- components: start, then join the thread once the phase is DONE ---- */

typedef struct soak_chat soak_chat;
int soak_chat_start(const soak_options *o, soak_chat **out);
const soak_chat_stats *soak_chat_stats_of(const soak_chat *c);
/* Streams not yet at the audited last seq of their group (audit[g], per
 * steady group); the seqs they still miss are added to *missing. */
uint64_t soak_chat_behind(const soak_chat *c, const uint64_t *audit, uint64_t *missing);
/* Unacknowledged sends (written minus acked minus refused). */
uint64_t soak_chat_unacked(const soak_chat *c);
/* The run's latency histogram (all reader deliveries); valid after join. */
const rc_hist *soak_chat_latency(const soak_chat *c);
void soak_chat_join(soak_chat *c);

typedef struct soak_slow soak_slow;
int soak_slow_start(const soak_options *o, soak_slow **out);
const soak_slow_stats *soak_slow_stats_of(const soak_slow *s);
void soak_slow_join(soak_slow *s);

typedef struct soak_churn soak_churn;
int soak_churn_start(const soak_options *o, soak_churn **out);
const soak_churn_stats *soak_churn_stats_of(const soak_churn *c);
void soak_churn_join(soak_churn *c);

typedef struct soak_bad soak_bad;
int soak_bad_start(const soak_options *o, soak_bad **out);
const soak_bad_stats *soak_bad_stats_of(const soak_bad *b);
uint32_t soak_bad_case_count(void);
const char *soak_bad_case_name(uint32_t i);
const char *soak_bad_case_expect(uint32_t i); /* the outcome it expects, in words */
void soak_bad_join(soak_bad *b);

#endif
