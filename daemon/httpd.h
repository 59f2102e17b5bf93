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

/* The MHD access handler (see MHD_AccessHandlerCallback) and request-completed callback (may be NULL);
 * cls is passed to both. tls_cert/tls_key: PEM text (borrowed, kept by MHD's copy) for HTTPS, or NULL. */
int  httpd_start(httpd **out, uv_loop_t *loop, const char *host, int port, const char *tls_cert, const char *tls_key,
                 MHD_AccessHandlerCallback handler, MHD_RequestCompletedCallback completed, void *cls,
                 char *err, size_t errlen);
/* The same server on a Unix stream socket at path (mode 0666: who may connect is decided per request
 * from the peer's uid). A stale socket file is replaced; a live one (another daemon answers) is an
 * error. The file is removed by httpd_stop. */
int  httpd_start_unix(httpd **out, uv_loop_t *loop, const char *path,
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
