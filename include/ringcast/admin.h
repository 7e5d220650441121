/*
 * The admin HTTP server: /metrics, /healthz, /readyz, /admin/... (ARCHITECTURE §2).
 *
 * A deliberately small HTTP/1.1 server on its own thread, with plain
 * blocking-style sockets driven by poll(). Admin traffic is a scrape every
 * few seconds and the odd curl, so connections are served one at a time:
 * read the request head, answer, close (`Connection: close`). Only GET is
 * served; anything else is 405. Routing is the caller's: one handler gets
 * the path (query string removed) and fills a growable body.
 *
 * The handler runs on the admin thread, so whatever it reads from the rest
 * of the server must be safe to read from another thread.
 */
#ifndef RINGCAST_ADMIN_H
#define RINGCAST_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#define RC_ADMIN_MAX_HEAD 8192u        /* request line + headers, bytes; larger is 431 */
#define RC_ADMIN_IO_TIMEOUT_MS 2000    /* reading one request, and writing its response */
#define RC_ADMIN_LINGER_MS 500         /* draining unread input before close */
#define RC_ADMIN_BACKLOG 64            /* listen() backlog */
#define RC_ADMIN_DEFAULT_CTYPE "text/plain; charset=utf-8"

/* A response body. The server owns the memory; the handler only appends. */
struct rc_admin_body {
    char *data; /* NUL-terminated once anything was appended, else NULL */
    size_t len; /* bytes of body, without the NUL */
    size_t cap; /* bytes allocated */
};

typedef struct rc_admin rc_admin;

/*
 * Serve one GET. path has no query string. Append the body with
 * rc_admin_body_printf(), optionally point *ctype at a static content type
 * (default RC_ADMIN_DEFAULT_CTYPE), return the HTTP status (100..599;
 * anything else is answered 500).
 */
typedef int (*rc_admin_handler)(void *ud, const char *path, struct rc_admin_body *body,
                                const char **ctype);

/* Append formatted text to b. Returns 0, or -1 when out of memory (b unchanged). */
int rc_admin_body_printf(struct rc_admin_body *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Bind host:port (SO_REUSEADDR; port 0 picks a free port), listen, and start
 * the server thread. Binding happens here, so a busy port or bad address is
 * reported now: returns NULL with a message in err. host NULL means every
 * interface.
 */
rc_admin *rc_admin_start(const char *host, uint16_t port, rc_admin_handler fn, void *ud,
                         char *err, size_t errlen);

/* The port actually bound (the picked one when started with port 0). */
uint16_t rc_admin_port(const rc_admin *a);

/* Stop accepting, abandon any request in progress, join the thread, free. NULL is a no-op. */
void rc_admin_stop(rc_admin *a);

#endif /* RINGCAST_ADMIN_H */
