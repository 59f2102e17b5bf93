/* api/static.h — the web dashboard's files: `/` (index.html), `/web/...` from a web root directory, and
 * Chart.js from Debian's libjs-chart.js at the fixed URL /web/vendor/chart.js. GET and HEAD only.
 * Called on the loop thread (from the route table's handler in api/routes_access.c). Never logs. Errors
 * come back as a negative svc_err with e filled, for the router's one error table (404 for anything
 * refused or absent, so probing `..`, symlinks out of the root or special files reveals nothing). */
#ifndef CT_STATIC_H
#define CT_STATIC_H
#include "core/core.h"
#include <microhttpd.h>
#include <stddef.h>

#define STATIC_CHARTJS_URL "/web/vendor/chart.js"
#define STATIC_CHARTJS_DEFAULT "/usr/share/javascript/chart.js/chart.min.js" /* Debian libjs-chart.js (UMD) */

typedef struct static_cfg {
    const char *web_root;     /* directory holding index.html, app.js, style.css; borrowed; NULL = "web" */
    const char *chartjs_path; /* file served at STATIC_CHARTJS_URL; borrowed; NULL = STATIC_CHARTJS_DEFAULT */
} static_cfg;

/* A resolved file: what static_serve would send. */
typedef struct static_file {
    char path[4096];          /* canonical path (no symlinks) of a regular file */
    const char *content_type; /* static string */
    const char *cache;        /* Cache-Control value, static string */
} static_file;

/* Does url belong to the dashboard? 1 for `/`, `/index.html` and `/web/...`; 0 otherwise. */
int static_claims(const char *url);

/* Map a claimed url (already percent-decoded, as libmicrohttpd hands it over) to a file. 0 and OUT f,
 * or SVC_ENOTFOUND: a segment that is empty, `.`, `..` or starts with a dot, a path that leaves the
 * root once symlinks are resolved, something that is not a regular file, or nothing there. */
int static_resolve(const static_cfg *cfg, const char *url, static_file *f, svc_error *e);

/* The router's hook. Returns 0 when url is not the dashboard's (route on); 1 when a response was queued
 * (OUT *ret is what the access handler returns); or a negative svc_err with e filled (reply with it):
 * SVC_EMETHOD for anything but GET/HEAD, SVC_ENOTFOUND as static_resolve. Answers 304 to a matching
 * If-None-Match. */
int static_serve(const static_cfg *cfg, struct MHD_Connection *conn, const char *method, const char *url,
                 enum MHD_Result *ret, svc_error *e);

#endif
