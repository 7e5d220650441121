/*
 * A non-blocking client connection for the chat and slow-consumer loops:
 * frames out are encoded with the project's codec (rc_encode) into an output
 * buffer and written as the socket takes them; frames in are read into a
 * growing buffer and decoded strictly (rc_decode), one callback per map.
 * A server frame that does not decode is a fault of the server, reported to
 * the caller as SOAK_CONN_BAD_FRAME.
 */
#ifndef RC_SOAK_CONN_H
#define RC_SOAK_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <ringcast/proto.h>

#define SOAK_CONN_READ (64u << 10)   /* bytes asked of one recv */

typedef struct soak_conn {
    int fd;                  /* -1 when closed */
    rc_buf out;              /* bytes to write: out.data[out_off..out.len) */
    size_t out_off;
    uint8_t *in;             /* bytes read, not yet decoded: in[0..in_len) */
    size_t in_len, in_cap;
    rc_decoder dec;
    uint64_t bytes_in;       /* bytes read over the connection's life */
} soak_conn;

typedef enum soak_conn_rc {
    SOAK_CONN_OK = 0,        /* read something (or nothing was there) */
    SOAK_CONN_CLOSED = -1,   /* EOF or an error: the connection is gone */
    SOAK_CONN_BAD_FRAME = -2 /* the server sent a frame that does not decode */
} soak_conn_rc;

/* Called for every decoded map; m points into the connection's buffer and
 * is valid during the call only. */
typedef void (*soak_frame_fn)(void *ud, const rc_msg *m);

/* Connects to 127.0.0.1:port (blocking, bounded by SOAK_CONNECT_TIMEOUT_MS),
 * then makes the socket non-blocking. rcvbuf > 0 sets SO_RCVBUF first, so a
 * slow reader's kernel buffer stays small. 0, or -1 (c->fd = -1). */
int soak_conn_open(soak_conn *c, uint16_t port, int rcvbuf);
void soak_conn_close(soak_conn *c);

/* Appends one encoded frame to the output; 0 or -1 (ENOMEM). */
int soak_conn_queue(soak_conn *c, const rc_msg *m);
static inline size_t soak_conn_unsent(const soak_conn *c) { return c->out.len - c->out_off; }
/* Writes what the socket takes; SOAK_CONN_OK or SOAK_CONN_CLOSED. */
soak_conn_rc soak_conn_flush(soak_conn *c);

/* Reads at most max bytes (in one or more recv calls, until EAGAIN) and
 * decodes every complete frame; *got is the number of bytes read. */
soak_conn_rc soak_conn_read(soak_conn *c, size_t max, soak_frame_fn fn, void *ud, size_t *got);

#endif
