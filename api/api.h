/* api/api.h — the HTTP routes: turns requests into calls on the service core (core/core.h) and its typed
 * results into JSON (api/render.h), including server-sent event streams and multipart uploads.
 * Called on the loop thread only (from libmicrohttpd driven by daemon/httpd.c).
 * Handlers never pick HTTP statuses ad hoc: errors map through one table in api.c. */
#ifndef CT_API_H
#define CT_API_H
#include "core/core.h"
#include <microhttpd.h>
#include <uv.h>

#define API_MAX_STREAMS 256

typedef struct api_limits {
    size_t json_body_max;        /* bytes of a JSON request body (413 above) */
    int json_depth_max;          /* nesting of a JSON request body (400 above) */
    double sse_heartbeat_s;      /* comment line on idle streams, also how fast a gone client is noticed */
    int max_streams;             /* open event streams at most (503 too_many_streams past it); 0 = API_MAX_STREAMS */
    const char *web_root;        /* the dashboard's files (api/static.h); borrowed; NULL = "web" */
} api_limits;

typedef struct api_ctx api_ctx;

/* kick(kick_ud) must run the HTTP server soon (daemon: httpd_kick); api defers it to the loop so it is
 * never called from inside an MHD callback. svc is borrowed and must outlive the api_ctx. */
int  api_new(api_ctx **out, uv_loop_t *loop, svc *s, const api_limits *lim, const char *version,
             void (*kick)(void *), void *kick_ud);
/* End every event stream (resuming suspended connections so the server can be stopped) and close the
 * timers. Call before stopping the HTTP server. */
void api_shutdown(api_ctx *a);
/* After the loop has closed the handles (and the HTTP server is stopped). NULL-safe. */
void api_free(api_ctx *a);

/* The MHD access handler and request-completed callback; cls is the api_ctx*. */
enum MHD_Result api_handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                           const char *version, const char *upload_data, size_t *upload_data_size,
                           void **con_cls);
void api_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe);

#endif
