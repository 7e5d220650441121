/*
 * The web chat page the public HTTP port serves at / (proto/PROTOCOL.md §1.2).
 *
 * Its source is src/net/web/index.html, one self-contained file (inline CSS
 * and JS). The build turns it into a C array, webpage.c in the build
 * directory (src/net/web/embed.cmake, rc_embed_webpage()), so the server
 * needs no file at run time and the page always matches the binary.
 */
#ifndef RC_NET_WEBPAGE_H
#define RC_NET_WEBPAGE_H

/* index.html's bytes (UTF-8), followed by a NUL that is not counted. */
extern const char rc_webpage_index[];
/* Bytes in rc_webpage_index without the NUL: the Content-Length of the page. */
extern const unsigned rc_webpage_index_len;

#define RC_WEBPAGE_INDEX_TYPE "text/html; charset=utf-8" /* its Content-Type */

#endif
