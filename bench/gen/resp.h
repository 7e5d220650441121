/*
 * RESP2 as the generator reads it, its pure pieces (no sockets, no shared
 * state; unit-tested in tests/unit/test_bench_wire.c): a cursor over the
 * bytes received so far, simple and bulk items, skipping any value, and the
 * stream replies of XREAD and XREVRANGE.
 *
 * Every reader returns RESP_OK (the item is taken and the cursor moved past
 * it), RESP_MORE (the bytes end inside it; the cursor may have moved, so the
 * caller starts again from its own copy) or RESP_BAD (not RESP, or not the
 * shape asked for).
 */
#ifndef RC_BENCH_RESP_H
#define RC_BENCH_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RESP_MAX_LINE 4096u   /* a header line longer than this is a protocol error */
#define RESP_MAX_DEPTH 8      /* nesting resp_skip follows */
#define RESP_MAX_ITEMS 1000000 /* elements of one array, at most */

enum { RESP_OK = 0, RESP_MORE = 1, RESP_BAD = -1 };

typedef struct resp_cur {
    const uint8_t *p;
    const uint8_t *end;
} resp_cur;

/* One line after its type byte: line[0..n) without CRLF. */
int resp_line(resp_cur *c, const uint8_t **line, size_t *n);
/* A line of type `type` (':', '*', '$') holding an integer. */
int resp_int(resp_cur *c, uint8_t type, int64_t *v);
/* A bulk string (not null). */
int resp_bulk(resp_cur *c, const uint8_t **s, size_t *n);
/* Any one value, arrays to RESP_MAX_DEPTH levels. */
int resp_skip(resp_cur *c);

/* One stream entry: key (the stream), its id, and the value of its single
 * field. */
typedef int (*resp_entry_fn)(void *arg, const uint8_t *key, size_t key_len, const uint8_t *id,
                             size_t id_len, const uint8_t *value, size_t value_len);

/*
 * A list of entries *M [ *2 [ $id, *2 [ $field, $value ] ] ] (XREVRANGE,
 * XRANGE, and each stream of an XREAD reply): calls fn per entry, in order,
 * with key as given. Entries must have exactly one field. The whole list is
 * checked to be complete first, so fn is not called on a partial reply. A
 * non-zero return of fn stops the walk and is RESP_BAD.
 */
int resp_entries(resp_cur *c, const uint8_t *key, size_t key_len, resp_entry_fn fn, void *arg);
/* An XREAD reply: *N [ *2 [ $key, entries ] ], or the null array *-1 (the
 * BLOCK timed out: no entry). Complete before fn is called, as above. */
int resp_xread(resp_cur *c, resp_entry_fn fn, void *arg);

/* A stream id "<ms>-<seq>", both decimal. */
bool resp_stream_id_ok(const uint8_t *id, size_t n);

#endif
