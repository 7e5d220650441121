/*
 * WebSocket text messages (proto/PROTOCOL.md §1.2): the same maps as the
 * MessagePack frames, written as JSON objects.
 *
 * A text message from a client becomes the MessagePack bytes of its map,
 * which rc_decode then reads like a TCP frame's payload, so both transports
 * share one decoder and one set of rules (§2). A server frame becomes JSON
 * for a client that last spoke text. Pure functions: no I/O, no state.
 *
 * The mapping, client to server (rc_json_to_msgpack):
 *   string              -> str (escapes decoded; \u0000 is the byte 0x00)
 *   integer, >= 0       -> uint, read exactly from the text (0 .. 2^64-1)
 *   integer, < 0        -> int (down to -2^63)
 *   any other number    -> float64: a fraction or an exponent (`1.0`, `1e3`),
 *                          or an integer beyond those ranges; where the
 *                          protocol wants a uint that is E_BAD_FIELD, as for
 *                          a MessagePack float
 *   true, false, null   -> bool, nil
 *   array, object       -> array, map (members in text order; a key twice is
 *                          passed on twice and the codec reports it)
 * The text must be UTF-8 and strict RFC 8259 JSON (no byte order mark, no
 * leading zeros, no control bytes in strings), one object, nested at most
 * RC_MAX_DEPTH levels; anything else is E_BAD_FRAME.
 *
 * Server to client (rc_msgpack_to_json): keys in frame order; uint and int
 * as exact decimal integers; a str or bin value that is valid UTF-8 as a
 * JSON string, and one that is not (a bin body from a binary client, say)
 * as base64 (RFC 4648, with padding) under its key with `_b64` appended, so
 * `body` becomes `body_b64` and no byte is lost. A string that has no key to
 * rename (an array element, a key itself) gets U+FFFD for each bad sequence.
 */
#ifndef RINGCAST_JSON_H
#define RINGCAST_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcast/proto.h"

#define RC_JSON_B64_SUFFIX "_b64" /* appended to the key of a value sent as base64 */

/* True when the n bytes at p are UTF-8 as RFC 3629 has it: no overlong
 * forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF. The
 * WebSocket layer checks text messages with it (close code 1007). */
bool rc_utf8_valid(const char *p, size_t n);

/*
 * Appends to out the MessagePack map (no length prefix) that the JSON object
 * in the len bytes at text stands for. RC_OK; RC_E_BAD_FRAME when the text is
 * not UTF-8, not JSON, not one object or nested too deep; RC_E_INTERNAL when
 * memory runs out (cJSON, though, reports its own allocation failures as
 * bad text, E_BAD_FRAME) or on a bug (the reader losing step with cJSON).
 * On error out is as it was. *why (if why is not NULL) is set to a static
 * human message.
 *
 * The caller bounds len (the WebSocket layer applies max_frame first): the
 * work is linear in len. cJSON allocates a node per value, so the worst text
 * is a long array of one-digit numbers: about 40 bytes of memory (freed
 * before return) and a few hundred nanoseconds per byte; 64 KiB of it takes
 * some 2.6 MB and 8 ms. The output holds at most 3 bytes per byte of text.
 */
rc_err rc_json_to_msgpack(const char *text, size_t len, rc_buf *out, const char **why);

/*
 * Appends to out the JSON text (no NUL) of the MessagePack map in the len
 * bytes at map, a server frame's payload as rc_encode writes it after the
 * length prefix. Returns 0, or -1 with out as it was when the bytes are not
 * exactly one map of values JSON can hold (keys must be str, no ext types,
 * nesting within RC_MAX_DEPTH), or memory runs out. Runs once per delivery
 * to each text-mode client: it reads the bytes directly and allocates only
 * the output.
 */
int rc_msgpack_to_json(const uint8_t *map, size_t len, rc_buf *out);

#endif
