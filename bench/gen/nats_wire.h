/*
 * The NATS client protocol as the generator reads it, its pure pieces (no
 * sockets, no shared state; unit-tested in tests/unit/test_bench_wire.c):
 * one server item at a time (MSG, HMSG, PING, PONG, +OK, -ERR, INFO), the
 * status line of a header block (JetStream's "no responders" and heartbeats),
 * and the JSON replies of the JetStream API (a publish ack, a stream or
 * consumer created, an error).
 */
#ifndef RC_BENCH_NATS_WIRE_H
#define RC_BENCH_NATS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define NW_MAX_LINE 4096u     /* a control line longer than this is a protocol error */
#define NW_MAX_TOKENS 5       /* HMSG <subject> <sid> [reply-to] <#header> <#total> */
#define NW_MAX_SIZE 999999999u /* a payload size of more digits is a protocol error */

typedef enum nw_kind { NW_MSG, NW_HMSG, NW_PING, NW_PONG, NW_OK, NW_ERR, NW_INFO } nw_kind;

/* One item the server sent; pointers into the parsed bytes. */
typedef struct nw_item {
    nw_kind kind;
    const uint8_t *subject;    /* MSG, HMSG */
    size_t subject_len;
    const uint8_t *reply;      /* MSG, HMSG: the reply subject, NULL if none */
    size_t reply_len;
    const uint8_t *hdr;        /* HMSG: the header block ("NATS/1.0 ...\r\n...\r\n\r\n") */
    size_t hdr_len;
    const uint8_t *payload;    /* MSG, HMSG: the payload after any header block */
    size_t payload_len;
    const uint8_t *line;       /* the control line without CRLF (-ERR text, INFO JSON) */
    size_t line_len;
} nw_item;

/* Parses the item at in[0..len): the bytes it takes (> 0), 0 while it is
 * incomplete, -1 on a protocol error. */
ssize_t nw_next(const uint8_t *in, size_t len, nw_item *it);

/* The status code of a header block: 503 for "NATS/1.0 503\r\n...", 0 for a
 * block without one ("NATS/1.0\r\n..."), -1 if it is not a NATS header block. */
int nw_status(const uint8_t *hdr, size_t len);

/* A JetStream API reply (JSON): true if it carries an "error" object; then
 * *desc is its description (NULL, 0 if it has none). */
bool nw_js_error(const uint8_t *json, size_t len, const uint8_t **desc, size_t *desc_len);

/* A publish ack: {"stream":"S","seq":N[,"duplicate":true]} with no error. */
bool nw_js_puback(const uint8_t *json, size_t len);

#endif
