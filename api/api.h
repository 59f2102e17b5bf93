/* api/api.h — the HTTP routes: turns requests into calls on the daemon's services and JSON back.
 * Called on the loop thread only (from libmicrohttpd driven by daemon/httpd.c).
 * Handlers never pick HTTP statuses ad hoc: errors map through one table in api.c. */
#ifndef CT_API_H
#define CT_API_H
#include <microhttpd.h>

typedef struct api_ctx {
    const char *version;      /* borrowed */
    long long started_at;     /* unix seconds */
} api_ctx;

/* The MHD access handler; cls is an api_ctx*. */
enum MHD_Result api_handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                           const char *version, const char *upload_data, size_t *upload_data_size,
                           void **con_cls);

#endif
