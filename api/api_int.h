/* api/api_int.h — what the files of api/ share and nothing outside api/ may include (tests excepted):
 * the context, the per-request state, the route table's row and match types, the reply helpers and the
 * handlers the table names. Loop thread only, like everything in api/.
 *   api.c            request life cycle (api_handle/api_completed), identity, per-route stats, the error
 *                    table and the reply helpers
 *   routes.c         the one route table and its matcher
 *   routes_jobs.c    /v1/fine_tuning/jobs...      routes_assets.c  models, datasets, files, uploads
 *   routes_access.c  me, users, audit, /metrics, /healthz, /readyz, the dashboard's files
 *   sse.c            event streams (suspend/resume, heartbeat, the deferred MHD kick) */
#ifndef CT_API_INT_H
#define CT_API_INT_H
#include "api/api.h"
#include "api/render.h"
#include "api/static.h"
#include <stddef.h>

/* ---------------- the route table (routes.c) ---------------- */

enum api__method {
    API__GET = 1 << 0,
    API__HEAD = 1 << 1,
    API__POST = 1 << 2,
    API__PUT = 1 << 3,
    API__PATCH = 1 << 4,
    API__DELETE = 1 << 5,
};

/* Who may call a route. The router settles only *who* is calling: API__PUBLIC needs no identity, the
 * others answer 401 without one (after draining the body). API__ADMIN is enforced by the service (it
 * answers 403 and writes the audit record), as for every other authorization decision. */
enum api__access { API__PUBLIC, API__USER, API__ADMIN };

enum api__flags {
    API__EXACT = 1 << 0,  /* only the URL exactly as written matches (no doubled leading or trailing '/') */
    API__UPLOAD = 1 << 1, /* the body is a multipart upload streamed to a file (not JSON) */
};

#define API__MAX_PARAMS 2
#define API__SEG_MAX 320  /* a path parameter longer than API__SEG_MAX - 1 bytes is cut there */

typedef struct api__call api__call;
typedef enum MHD_Result (*api__handler)(api__call *c);

/* One row: methods (a mask of enum api__method), a path pattern, the handler, who may call it. Pattern
 * segments are literals or "{name}" (exactly one segment, possibly empty); a final "*" matches the rest
 * of the URL as given. Rows of one pattern are answered together: a method none of them takes is 405
 * listing their methods. */
typedef struct api__route {
    unsigned methods;
    const char *path;
    api__handler fn;
    enum api__access access;
    unsigned flags;
    const char *label;    /* the route's name in /metrics; NULL = path */
} api__route;

extern const api__route api__routes[];
extern const size_t api__n_routes;

typedef struct api__match {
    const api__route *path_row;  /* first row whose pattern matches the URL; NULL = no such route (404) */
    const api__route *row;       /* the row of that pattern taking this method; NULL = 405 */
    unsigned allowed;            /* the methods of every row of that pattern */
    int canonical;               /* the URL is written as the pattern (no extra leading or trailing '/') */
    int n_params;
    char name[API__MAX_PARAMS][16];
    char param[API__MAX_PARAMS][API__SEG_MAX];
} api__match;

/* Match method and url (percent-decoded, as MHD hands it over) against the table. Always fills OUT m;
 * returns 0 when a row takes the method, SVC_EMETHOD when the path matches but not the method,
 * SVC_ENOTFOUND when no pattern matches. Never allocates, never logs. */
int api__route_match(const char *method, const char *url, api__match *m);
/* The parameter called name ("id"), or NULL. */
const char *api__param(const api__match *m, const char *name);
/* Who may call: the row's access, or API__USER when nothing matched (so the caller must identify). */
enum api__access api__route_access(const api__match *m);
/* The route's label in /metrics (a static string): the row's, "other" when nothing matched. */
const char *api__route_label(const api__match *m);
/* "GET", "GET or POST", ... for allowed (HEAD is never listed: it goes with GET). OUT buf. */
void api__methods_text(unsigned allowed, char *buf, size_t len);

/* ---------------- context and request state ---------------- */

typedef struct sse sse;
typedef struct sse_feed sse_feed;

struct route_stat { const char *route; unsigned int status; unsigned long long n; hist h; };

struct api_ctx {
    uv_loop_t *loop;
    svc *svc;
    api_limits lim;
    static_cfg web;
    const char *version;
    long long started_at;
    void (*kick)(void *);
    void *kick_ud;
    uv_timer_t kick_timer, hb_timer;
    int kick_armed, shutting_down, handles_open;
    sse *streams;
    sse_feed *feeds;      /* per job with streams: its newest events, serialised once (sse.c) */
    int n_streams;
    struct route_stat *stats;
    int n_stats, cap_stats;
    render_memo *memo;    /* jobs as rendered lately (render.h): GET job and pages print each once */
    struct req *checking; /* uploads whose check is in flight: their connections are suspended */
};

enum req_kind { REQ_PLAIN, REQ_JSON, REQ_UPLOAD };

typedef struct req req;
struct req {
    enum req_kind kind;
    api_ctx *a;           /* borrowed */
    api__match m;         /* the route, matched once in the headers phase */
    int authed;
    svc_caller who;
    svc_error auth_err;
    double t0;            /* monotonic seconds at the headers */
    const char *route;    /* the route's label, for /metrics (static string) */
    unsigned int status;  /* 0 = no response yet */
    int streaming;
    char method[8];
    char *body;
    size_t len, cap, received;
    int too_large;
    int answered;         /* a response was queued with the headers: the rest of the request is dropped */
    /* uploads: up to SVC_UPLOAD_MAX_PARTS 'file' parts, each streamed into its own temp file */
    struct MHD_PostProcessor *pp;
    int fd;               /* the part being written (-1 = none) */
    int n_parts;          /* 'file' parts begun */
    char tmp[SVC_UPLOAD_MAX_PARTS][1200];          /* "" = none (or handed to the core) */
    char filename[SVC_UPLOAD_MAX_PARTS][256], purpose[32];
    long long part_bytes[SVC_UPLOAD_MAX_PARTS];
    long long bytes;      /* of all parts */
    int have_file, bad_form, not_form, too_many_parts;
    svc_upload *checking; /* handed to the core, being checked off the loop (the connection is suspended) */
    int checked;          /* its check is over: svc_upload_finish answers */
    struct MHD_Connection *conn;
    struct req *prev_up, *next_up; /* api_ctx.checking */
};

/* One dispatch: what a handler needs. status is set by whatever queues the response (0 = none yet). */
struct api__call {
    api_ctx *a;                  /* borrowed */
    struct MHD_Connection *conn;
    req *q;                      /* q->who is the caller */
    const char *url, *method;
    unsigned int status;
};

/* ---------------- replies (api.c): errors go through the one error table ---------------- */

enum MHD_Result api__reply_json(api__call *c, unsigned int status, json_t *body); /* takes body */
enum MHD_Result api__reply_error(api__call *c, const svc_error *e);
enum MHD_Result api__fail(api__call *c, enum svc_err kind, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* 200 with a rendered result (taken); NULL (rendering ran out of memory) is a 500. */
enum MHD_Result api__reply_rendered(api__call *c, json_t *out);
/* The same with the result already JSON text (taken, as render_job_text makes it). */
enum MHD_Result api__reply_text(api__call *c, char *text);
/* Queue r (borrowed: MHD keeps its own reference) with status and note the status. */
enum MHD_Result api__queue(api__call *c, unsigned int status, struct MHD_Response *r);

const char *api__arg(api__call *c, const char *name);
/* OUT *v = the integer argument (def if absent); SVC_EINVAL with param on junk or out of [lo, hi]. */
int api__int_arg(api__call *c, const char *name, long long def, long long lo, long long hi, long long *v, svc_error *e);
/* "ftevent-12" or "12" -> 12; -1 on anything else. */
int api__event_id(const char *s, long long *out);

/* ---------------- event streams (sse.c) ---------------- */

enum MHD_Result api__sse_start(api__call *c, const char *job_id);
void api__sse_on_job_event(void *ud, const char *job_id);  /* the service's listener; ud = api_ctx */
void api__sse_on_heartbeat(uv_timer_t *t);
void api__sse_resume_all(api_ctx *a);
int  api__sse_is(const api_ctx *a, struct MHD_Connection *conn); /* conn's response is the newest stream */

/* ---------------- uploads (routes_assets.c) ---------------- */

/* Headers phase of POST /v1/files: set up the multipart parser (q->not_form when it is not multipart). */
void api__upload_begin(req *q, struct MHD_Connection *conn);
/* The request went away, or the daemon is stopping: its upload check's result is dropped. */
void api__upload_drop(req *q);
void api__uploads_resume_all(api_ctx *a); /* shutdown: every suspended upload answers 503 */
void api__kick(api_ctx *a);               /* sse.c: run MHD soon (after a resume) */

/* ---------------- handlers (named by the table) ---------------- */

enum MHD_Result api__no_route(api__call *c);           /* 404 "no such route" */
/* routes_jobs.c */
enum MHD_Result api__job_list(api__call *c);
enum MHD_Result api__sweep_create(api__call *c);
enum MHD_Result api__sweep_list(api__call *c);
enum MHD_Result api__sweep_get(api__call *c);
enum MHD_Result api__sweep_cancel(api__call *c);
enum MHD_Result api__job_create(api__call *c);
enum MHD_Result api__job_get(api__call *c);
enum MHD_Result api__job_cancel(api__call *c);
enum MHD_Result api__job_pause(api__call *c);
enum MHD_Result api__job_resume(api__call *c);
enum MHD_Result api__job_events(api__call *c);
enum MHD_Result api__job_checkpoints(api__call *c);
enum MHD_Result api__job_metrics(api__call *c);
/* routes_assets.c */
enum MHD_Result api__model_list(api__call *c);
enum MHD_Result api__model_get(api__call *c);
enum MHD_Result api__model_content(api__call *c);
enum MHD_Result api__dataset_list(api__call *c);
enum MHD_Result api__file_list(api__call *c);
enum MHD_Result api__file_upload(api__call *c);
enum MHD_Result api__file_get(api__call *c);
enum MHD_Result api__file_delete(api__call *c);
enum MHD_Result api__model_delete(api__call *c);
enum MHD_Result api__job_delete(api__call *c);
enum MHD_Result api__storage(api__call *c);
/* routes_access.c */
enum MHD_Result api__healthz(api__call *c);
enum MHD_Result api__readyz(api__call *c);
enum MHD_Result api__metrics(api__call *c);
enum MHD_Result api__me(api__call *c);
enum MHD_Result api__users(api__call *c);
enum MHD_Result api__audit(api__call *c);
enum MHD_Result api__static(api__call *c);
enum MHD_Result api__openapi(api__call *c);

#endif
