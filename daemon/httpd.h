/* daemon/httpd.h — libmicrohttpd driven from the libuv loop (no MHD threads).
 * MHD runs in epoll mode; its epoll fd is watched by a uv_poll_t and its timeouts by a uv_timer_t,
 * so every request callback runs on the loop thread, the thread that owns all job state.
 * Errors: negative return + message in err. */
#ifndef CT_HTTPD_H
#define CT_HTTPD_H
#include <stddef.h>
#include <uv.h>
#include <microhttpd.h>

typedef struct httpd httpd;

/* The connection policy of one listener (docs/operations.md, "Connections"). Every field: 0 = the default.
 * A connection must finish its request line and headers within header_timeout_s of connecting (or of the
 * end of its previous request: an idle keep-alive connection is closed then too); a body must then arrive
 * at body_min_rate bytes/s on average after a grace of header_timeout_s. Either is cut when late. At most
 * max_connections are open: a newcomer past it evicts the oldest connection still in its headers (a
 * trickler, an idle keep-alive), and is itself refused only when every other one is past its headers. */
typedef struct httpd_limits {
    double header_timeout_s;   /* default HTTPD_HEADER_TIMEOUT_S */
    double body_min_rate;      /* bytes per second; default HTTPD_BODY_MIN_RATE */
    int max_connections;       /* default HTTPD_MAX_CONNECTIONS */
} httpd_limits;

#define HTTPD_HEADER_TIMEOUT_S 10.0
#define HTTPD_BODY_MIN_RATE 1024.0
#define HTTPD_MAX_CONNECTIONS 1024

/* The MHD access handler (see MHD_AccessHandlerCallback) and request-completed callback (may be NULL);
 * cls is passed to both. tls_cert/tls_key: PEM text (borrowed, kept by MHD's copy) for HTTPS, or NULL.
 * lim: the connection policy (copied; NULL = every default). The first start raises the open-files soft
 * limit to the hard limit (logged), since each connection is a descriptor. */
int  httpd_start(httpd **out, uv_loop_t *loop, const char *host, int port, const char *tls_cert, const char *tls_key,
                 const httpd_limits *lim, MHD_AccessHandlerCallback handler, MHD_RequestCompletedCallback completed, void *cls,
                 char *err, size_t errlen);
/* The same server on a Unix stream socket at path (mode 0666: who may connect is decided per request
 * from the peer's uid). A stale socket file is replaced; a live one (another daemon answers) is an
 * error. The file is removed by httpd_stop. It is a listener of its own, with its own connection budget:
 * a flood of TCP connections never takes the socket's room. */
int  httpd_start_unix(httpd **out, uv_loop_t *loop, const char *path, const httpd_limits *lim,
                      MHD_AccessHandlerCallback handler, MHD_RequestCompletedCallback completed, void *cls,
                      char *err, size_t errlen);
/* 1 when this libmicrohttpd can serve HTTPS. */
int  httpd_tls_supported(void);
int  httpd_port(const httpd *h);          /* the bound port (useful with port 0) */
/* Stop listening and close every connection; the handle is freed once libuv has closed its handles. */
void httpd_stop(httpd *h);
/* Run MHD now (e.g. after MHD_resume_connection) instead of waiting for the next poll event. */
void httpd_kick(httpd *h);

#endif
