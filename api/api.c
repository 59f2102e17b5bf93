/* api/api.c — routes, request bodies, the error table, server-sent events and uploads. Loop thread only.
 * A request is handled in three phases (MHD's access-handler protocol): headers (allocate the request
 * state), body chunks (accumulate JSON up to a limit, or stream a multipart upload to a temp file),
 * then dispatch. Bodies over the limit are drained and answered 413, so the client always reads a reply.
 * Event streams: a response with a content-reader callback; when it has nothing to send it suspends the
 * connection, and the service's listener (new events) or the heartbeat timer resumes it.
 * Identity is settled in the headers phase: over the Unix socket from the peer's uid (SO_PEERCRED),
 * over TCP from `Authorization: Bearer`. Only /healthz and the dashboard's static files are public;
 * everything else answers 401 without a valid identity (after draining the body, never storing it). */
#define _GNU_SOURCE
#include "api/api.h"
#include "api/jobspec.h"
#include "api/static.h"
#include "common/log.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct sse sse;

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
    int n_streams;
    struct route_stat { const char *route; unsigned int status; unsigned long long n; prom_hist h; } *stats;
    int n_stats;
};

static const double latency_le[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

/* The status of the response just queued. Loop thread only, and dispatch is synchronous: set by every
 * function that queues a response, read by api_handle right after dispatch. */
static unsigned int queued_status;

enum req_kind { REQ_PLAIN, REQ_JSON, REQ_UPLOAD };

typedef struct req {
    enum req_kind kind;
    api_ctx *a;           /* borrowed */
    int public_route;     /* /healthz and the dashboard's files need no identity */
    int authed;
    svc_caller who;
    svc_error auth_err;
    double t0;            /* monotonic seconds at the headers */
    const char *route;    /* the route's template, for /metrics (static string) */
    unsigned int status;  /* 0 = no response yet */
    int streaming;
    char method[8];
    char *body;
    size_t len, cap, received;
    int too_large;
    /* uploads */
    struct MHD_PostProcessor *pp;
    int fd;
    char tmp[1200];
    char filename[256], purpose[32];
    long long bytes;
    int have_file, bad_form, not_form;
} req;

struct sse {
    api_ctx *a;
    struct MHD_Connection *conn;
    svc_caller who;
    char job_id[64];
    long long last;
    char *buf;
    size_t len, off, cap;
    int suspended, ended, heartbeat;
    sse *prev, *next;
};

/* ---------------- the error table: the only place statuses for errors are chosen ---------------- */

static const struct {
    enum svc_err kind;
    unsigned int status;
    const char *type, *code;
} error_table[] = {
    {SVC_EINVAL, 400, "invalid_request_error", "invalid_request"},
    {SVC_EUNAUTH, 401, "invalid_request_error", "invalid_api_key"},
    {SVC_EFORBIDDEN, 403, "invalid_request_error", "permission_denied"},
    {SVC_ENOTFOUND, 404, "invalid_request_error", "not_found"},
    {SVC_EMETHOD, 405, "invalid_request_error", "method_not_allowed"},
    {SVC_ECONFLICT, 409, "invalid_request_error", "invalid_state"},
    {SVC_ETOOLARGE, 413, "invalid_request_error", "request_too_large"},
    {SVC_EMEDIA, 415, "invalid_request_error", "unsupported_media_type"},
    {SVC_EIDEMPOTENCY, 422, "invalid_request_error", "idempotency_key_reused"},
    {SVC_EQUOTA, 429, "insufficient_quota", "quota_exceeded"},
    {SVC_EINTERNAL, 500, "server_error", "internal_error"},
    {SVC_EUNAVAILABLE, 503, "server_error", "unavailable"},
};

static enum MHD_Result reply_json_h(struct MHD_Connection *conn, unsigned int status, json_t *body, const char *hname,
                                    const char *hvalue)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) return MHD_NO;
    size_t n = strlen(text);
    text[n] = 0;
    struct MHD_Response *r = MHD_create_response_from_buffer(n, text, MHD_RESPMEM_MUST_FREE);
    if (!r) { free(text); return MHD_NO; }
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (hname) MHD_add_response_header(r, hname, hvalue);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    queued_status = status;
    return ret;
}

static enum MHD_Result reply_json(struct MHD_Connection *conn, unsigned int status, json_t *body)
{
    return reply_json_h(conn, status, body, NULL, NULL);
}

static enum MHD_Result reply_error(struct MHD_Connection *conn, const svc_error *e)
{
    size_t i = 0, n = sizeof error_table / sizeof error_table[0], internal = 0;
    for (size_t k = 0; k < n; k++) if (error_table[k].kind == SVC_EINTERNAL) internal = k;
    while (i < n && error_table[i].kind != e->kind) i++;
    if (i == n) i = internal; /* an unknown kind is a server error */
    json_t *err = json_pack("{s:s, s:s, s:s}", "message", e->message, "type", error_table[i].type, "code",
                            e->code ? e->code : error_table[i].code);
    json_object_set_new(err, "param", e->param[0] ? json_string(e->param) : json_null());
    if (error_table[i].status >= 500) LOG(LOG_WARN, "msg=\"request failed\" status=%u err=\"%s\"", error_table[i].status, e->message);
    if (e->kind == SVC_EUNAUTH)
        return reply_json_h(conn, error_table[i].status, json_pack("{s:o}", "error", err), "WWW-Authenticate",
                            "Bearer realm=\"coretuned\"");
    return reply_json(conn, error_table[i].status, json_pack("{s:o}", "error", err));
}

__attribute__((format(printf, 5, 6)))
static enum MHD_Result fail(struct MHD_Connection *conn, enum svc_err kind, const char *code, const char *param,
                            const char *fmt, ...)
{
    svc_error e = {.kind = kind, .code = code};
    snprintf(e.param, sizeof e.param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    return reply_error(conn, &e);
}

/* out is passed by address: callers write reply_result(conn, svc_x(..., &out, &e), &out, &e) and the
 * argument order must not matter. */
static enum MHD_Result reply_result(struct MHD_Connection *conn, int rc, json_t **out, const svc_error *e)
{
    if (rc) return reply_error(conn, e);
    return reply_json(conn, 200, *out);
}

/* ---------------- query helpers ---------------- */

static const char *arg(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
}

/* OUT *v = the integer argument (def if absent); 400 with param on junk or out of [lo, hi]. */
static int int_arg(struct MHD_Connection *conn, const char *name, long long def, long long lo, long long hi,
                   long long *v, svc_error *e)
{
    const char *s = arg(conn, name);
    *v = def;
    if (!s) return 0;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (!*s || *end || errno || x < lo || x > hi)
        return svc_fail(e, SVC_EINVAL, "invalid_value", name, "%s must be an integer in [%lld, %lld]", name, lo, hi);
    *v = x;
    return 0;
}

/* "ftevent-12" or "12" -> 12 */
static int event_id(const char *s, long long *out)
{
    if (!strncmp(s, "ftevent-", 8)) s += 8;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (!*s || *end || errno || x < 0) return -1;
    *out = x;
    return 0;
}

/* ---------------- event streams ---------------- */

static void arm_kick(api_ctx *a);

static void sse_append(sse *x, const char *text, size_t n)
{
    if (x->len + n > x->cap) {
        size_t cap = x->cap ? x->cap : 4096;
        while (cap < x->len + n) cap *= 2;
        char *b = realloc(x->buf, cap);
        if (!b) { x->ended = 1; return; }
        x->buf = b;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, text, n);
    x->len += n;
}

static void sse_fill(sse *x)
{
    if (x->a->shutting_down) { x->ended = 1; return; }
    json_t *events = NULL;
    int ended = 0;
    svc_error e;
    if (svc_stream_poll(x->a->svc, &x->who, x->job_id, x->last, 100, &events, &ended, &e) != 0) {
        x->ended = 1;
        return;
    }
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev) {
        const char *id = json_string_value(json_object_get(ev, "id"));
        const char *type = json_string_value(json_object_get(ev, "type"));
        char *data = json_dumps(ev, JSON_COMPACT);
        if (!data || !id) { free(data); continue; }
        char head[160];
        int n = snprintf(head, sizeof head, "id: %s\nevent: %s\ndata: ", id, type ? type : "message");
        sse_append(x, head, (size_t)n);
        sse_append(x, data, strlen(data));
        sse_append(x, "\n\n", 2);
        free(data);
        event_id(id, &x->last);
    }
    json_decref(events);
    if (x->len == 0 && ended) {
        char end[160];
        int n = snprintf(end, sizeof end, "event: end\ndata: {\"job_id\":\"%s\"}\n\n", x->job_id);
        sse_append(x, end, (size_t)n);
        x->ended = 1;
    }
    if (x->len == 0 && x->heartbeat) sse_append(x, ": keep-alive\n\n", 14);
    x->heartbeat = 0;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    sse *x = cls;
    if (x->off == x->len) {
        x->off = x->len = 0;
        if (!x->ended) sse_fill(x);
    }
    if (x->off < x->len) {
        size_t n = x->len - x->off < max ? x->len - x->off : max;
        memcpy(buf, x->buf + x->off, n);
        x->off += n;
        return (ssize_t)n;
    }
    if (x->ended) return MHD_CONTENT_READER_END_OF_STREAM;
    MHD_suspend_connection(x->conn); /* until new events or the heartbeat */
    x->suspended = 1;
    return 0;
}

static void sse_free(void *cls)
{
    sse *x = cls;
    if (x->prev) x->prev->next = x->next;
    else x->a->streams = x->next;
    if (x->next) x->next->prev = x->prev;
    x->a->n_streams--;
    free(x->buf);
    free(x);
}

static void resume(sse *x)
{
    if (!x->suspended) return;
    x->suspended = 0;
    MHD_resume_connection(x->conn);
}

static void on_job_event(void *ud, const char *job_id)
{
    api_ctx *a = ud;
    int any = 0;
    for (sse *x = a->streams; x; x = x->next)
        if (x->suspended && !strcmp(x->job_id, job_id)) { resume(x); any = 1; }
    if (any) arm_kick(a);
}

static void on_heartbeat(uv_timer_t *t)
{
    api_ctx *a = t->data;
    for (sse *x = a->streams; x; x = x->next) {
        x->heartbeat = 1;
        resume(x);
    }
    if (a->streams) arm_kick(a);
}

static void on_kick(uv_timer_t *t)
{
    api_ctx *a = t->data;
    a->kick_armed = 0;
    if (a->kick) a->kick(a->kick_ud);
}

static void arm_kick(api_ctx *a)
{
    if (a->kick_armed || a->shutting_down) return;
    a->kick_armed = 1;
    uv_timer_start(&a->kick_timer, on_kick, 0, 0);
}

static enum MHD_Result start_stream(api_ctx *a, struct MHD_Connection *conn, const svc_caller *who, const char *job_id)
{
    json_t *job;
    svc_error e;
    if (svc_job_get(a->svc, who, job_id, &job, &e) != 0) return reply_error(conn, &e);
    json_decref(job);
    long long last = 0;
    const char *lei = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID");
    const char *after = arg(conn, "after");
    if (lei && event_id(lei, &last) != 0)
        return fail(conn, SVC_EINVAL, "invalid_value", "Last-Event-ID", "Last-Event-ID must be an event id");
    if (!lei && after && event_id(after, &last) != 0)
        return fail(conn, SVC_EINVAL, "invalid_value", "after", "after must be an event id");
    sse *x = calloc(1, sizeof *x);
    if (!x) return MHD_NO;
    x->a = a;
    x->conn = conn;
    x->who = *who;
    x->last = last;
    snprintf(x->job_id, sizeof x->job_id, "%.63s", job_id);
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, sse_read, x, sse_free);
    if (!r) { free(x); return MHD_NO; }
    x->next = a->streams;
    if (a->streams) a->streams->prev = x;
    a->streams = x;
    a->n_streams++;
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    enum MHD_Result ret = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r); /* the connection holds it; sse_free runs when it is done */
    queued_status = 200;
    return ret;
}

/* ---------------- uploads ---------------- */

static enum MHD_Result on_form(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                               const char *content_type, const char *transfer_encoding, const char *data,
                               uint64_t off, size_t size)
{
    (void)kind; (void)content_type; (void)transfer_encoding; (void)off;
    req *q = cls;
    if (!strcmp(key, "purpose")) {
        size_t have = strlen(q->purpose);
        if (have + size < sizeof q->purpose) { memcpy(q->purpose + have, data, size); q->purpose[have + size] = 0; }
        return MHD_YES;
    }
    if (strcmp(key, "file") != 0) return MHD_YES; /* other fields are ignored */
    if (q->fd < 0 && !q->have_file) {
        snprintf(q->tmp, sizeof q->tmp, "%.1100s/upload-XXXXXX", svc_upload_dir(q->a->svc));
        q->fd = mkstemp(q->tmp);
        if (q->fd < 0) { q->bad_form = 1; q->tmp[0] = 0; return MHD_YES; }
        q->have_file = 1;
        snprintf(q->filename, sizeof q->filename, "%s", filename ? filename : "upload");
    }
    q->bytes += (long long)size;
    if (q->bytes > svc_upload_limit(q->a->svc)) { q->too_large = 1; return MHD_YES; }
    for (size_t done = 0; done < size && q->fd >= 0;) {
        ssize_t w = write(q->fd, data + done, size - done);
        if (w < 0) { if (errno == EINTR) continue; q->bad_form = 1; break; }
        done += (size_t)w;
    }
    return MHD_YES;
}

/* ---------------- routes ---------------- */

static int is_method(const char *m, const char *want) { return strcmp(m, want) == 0; }

static enum MHD_Result method_not_allowed(struct MHD_Connection *conn, const char *allowed)
{
    return fail(conn, SVC_EMETHOD, NULL, NULL, "use %s on this route", allowed);
}

static enum MHD_Result create_job(api_ctx *a, struct MHD_Connection *conn, req *q)
{
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    if (ct && !strstr(ct, "json"))
        return fail(conn, SVC_EMEDIA, NULL, NULL, "the body must be application/json, not %.100s", ct);
    if (q->len == 0) return fail(conn, SVC_EINVAL, "invalid_json", NULL, "the request body is empty");
    if (jobspec_json_depth(q->body, q->len) > a->lim.json_depth_max)
        return fail(conn, SVC_EINVAL, "too_deep", NULL, "the JSON body nests deeper than %d levels", a->lim.json_depth_max);
    json_error_t je;
    json_t *body = json_loadb(q->body, q->len, JSON_REJECT_DUPLICATES, &je);
    if (!body) return fail(conn, SVC_EINVAL, "invalid_json", NULL, "malformed JSON at line %d column %d: %s", je.line, je.column, je.text);
    const char *key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key");
    if (key && (strlen(key) == 0 || strlen(key) > 255)) {
        json_decref(body);
        return fail(conn, SVC_EINVAL, "invalid_value", "Idempotency-Key", "Idempotency-Key must be 1-255 characters");
    }
    json_t *out = NULL;
    svc_error e;
    int replayed = 0;
    int rc = svc_job_create(a->svc, &q->who, body, key, &out, &replayed, &e);
    json_decref(body);
    return reply_result(conn, rc, &out, &e);
}

static enum MHD_Result job_route(api_ctx *a, struct MHD_Connection *conn, const char *method, const char *id,
                                 const char *action, req *q)
{
    const svc_caller *who = &q->who;
    json_t *out = NULL;
    svc_error e;
    long long limit, v;
    int rc;
    if (!action) {
        if (!is_method(method, "GET")) return method_not_allowed(conn, "GET");
        return reply_result(conn, svc_job_get(a->svc, who, id, &out, &e), &out, &e);
    }
    if (!strcmp(action, "cancel") || !strcmp(action, "pause") || !strcmp(action, "resume")) {
        if (!is_method(method, "POST")) return method_not_allowed(conn, "POST");
        if (!strcmp(action, "cancel")) rc = svc_job_cancel(a->svc, who, id, &out, &e);
        else if (!strcmp(action, "pause")) rc = svc_job_pause(a->svc, who, id, &out, &e);
        else rc = svc_job_resume(a->svc, who, id, &out, &e);
        return reply_result(conn, rc, &out, &e);
    }
    if (!is_method(method, "GET")) return method_not_allowed(conn, "GET");
    if (!strcmp(action, "events")) {
        const char *accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept");
        const char *stream = arg(conn, "stream");
        if ((accept && strstr(accept, "text/event-stream")) || (stream && !strcmp(stream, "true")))
            return start_stream(a, conn, who, id);
        long long after = 0;
        const char *as = arg(conn, "after");
        if (as && event_id(as, &after) != 0)
            return fail(conn, SVC_EINVAL, "invalid_value", "after", "after must be an event id");
        if ((rc = int_arg(conn, "limit", 20, 1, 1000, &limit, &e))) return reply_error(conn, &e);
        return reply_result(conn, svc_job_events(a->svc, who, id, after, (int)limit, &out, &e), &out, &e);
    }
    if (!strcmp(action, "checkpoints")) {
        if ((rc = int_arg(conn, "limit", 10, 1, 100, &limit, &e))) return reply_error(conn, &e);
        return reply_result(conn, svc_job_checkpoints(a->svc, who, id, arg(conn, "after"), (int)limit, &out, &e), &out, &e);
    }
    if (!strcmp(action, "metrics")) {
        if ((rc = int_arg(conn, "max_points", 500, 3, 100000, &limit, &e))) return reply_error(conn, &e);
        if ((rc = int_arg(conn, "after_step", 0, 0, 1LL << 30, &v, &e))) return reply_error(conn, &e);
        return reply_result(conn, svc_job_metrics(a->svc, who, id, arg(conn, "names"), (int)limit, (int)v, &out, &e), &out,
                            &e);
    }
    return fail(conn, SVC_ENOTFOUND, "not_found", NULL, "no such route");
}

static enum MHD_Result send_model(api_ctx *a, struct MHD_Connection *conn, const svc_caller *who, const char *id)
{
    char path[1200];
    svc_error e;
    if (svc_model_file(a->svc, who, id, arg(conn, "which"), path, sizeof path, &e) != 0) return reply_error(conn, &e);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0) close(fd);
        return fail(conn, SVC_ENOTFOUND, "model_not_found", "id", "the weights of '%.200s' cannot be read", id);
    }
    struct MHD_Response *r = MHD_create_response_from_fd((uint64_t)st.st_size, fd); /* takes the fd */
    if (!r) { close(fd); return MHD_NO; }
    char disp[400], name[330];
    snprintf(name, sizeof name, "%s", id);
    for (char *p = name; *p; p++)
        if (*p == ':' || *p == '"' || *p == '/' || *p == '\\') *p = '_';
    snprintf(disp, sizeof disp, "attachment; filename=\"%s.safetensors\"", name);
    MHD_add_response_header(r, "Content-Type", "application/octet-stream");
    MHD_add_response_header(r, "Content-Disposition", disp);
    enum MHD_Result ret = MHD_queue_response(conn, 200, r);
    queued_status = 200;
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result finish_upload(api_ctx *a, struct MHD_Connection *conn, req *q)
{
    if (q->fd >= 0) { close(q->fd); q->fd = -1; }
    if (q->too_large) {
        if (q->tmp[0]) { unlink(q->tmp); q->tmp[0] = 0; }
        return fail(conn, SVC_ETOOLARGE, NULL, "file", "the upload is larger than %lld bytes", svc_upload_limit(a->svc));
    }
    if (q->not_form) {
        if (q->tmp[0]) { unlink(q->tmp); q->tmp[0] = 0; }
        return fail(conn, SVC_EMEDIA, NULL, NULL, "uploads are multipart/form-data with a 'file' part");
    }
    if (q->bad_form || !q->have_file) {
        if (q->tmp[0]) { unlink(q->tmp); q->tmp[0] = 0; }
        return fail(conn, SVC_EINVAL, "missing_file", "file", "send multipart/form-data with a 'file' part");
    }
    json_t *out = NULL;
    svc_error e;
    int rc = svc_file_add(a->svc, &q->who, q->tmp, q->filename, q->purpose, q->bytes, &out, &e);
    q->tmp[0] = 0; /* svc_file_add took the file */
    return reply_result(conn, rc, &out, &e);
}

/* Split "/v1/fine_tuning/jobs/ID/ACTION" style paths: returns the number of segments (at most max). */
static int split(const char *url, char segs[][320], int max)
{
    int n = 0;
    const char *p = url;
    while (*p == '/') p++;
    while (*p && n < max + 1) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (n < max) snprintf(segs[n], 320, "%.*s", (int)(len < 319 ? len : 319), p);
        n++;
        if (!slash) break;
        p = slash + 1;
    }
    return n;
}

static enum MHD_Result send_metrics(api_ctx *a, struct MHD_Connection *conn, const svc_caller *who);

static enum MHD_Result dispatch(api_ctx *a, struct MHD_Connection *conn, const char *url, const char *method, req *q)
{
    json_t *out = NULL;
    svc_error e;
    long long limit;
    int rc;
    const svc_caller *who = &q->who;
    if (!q->public_route && !q->authed) return reply_error(conn, &q->auth_err);
    if (q->kind == REQ_JSON && q->too_large)
        return fail(conn, SVC_ETOOLARGE, NULL, NULL, "the request body is larger than %zu bytes", a->lim.json_body_max);
    if (q->kind == REQ_UPLOAD) return finish_upload(a, conn, q);
    enum MHD_Result ret;
    if ((rc = static_serve(&a->web, conn, method, url, &ret, &e)) != 0) { /* the dashboard: /, /web/... */
        if (rc == 1) queued_status = 200;
        return rc == 1 ? ret : reply_error(conn, &e);
    }
    if (!strcmp(url, "/healthz")) {
        if (!is_method(method, "GET") && !is_method(method, "HEAD")) return method_not_allowed(conn, "GET");
        return reply_json(conn, 200, json_pack("{s:s, s:s, s:I}", "status", "ok", "version", a->version,
                                               "uptime_seconds", (json_int_t)(time(NULL) - a->started_at)));
    }
    if (!strcmp(url, "/readyz")) {
        if (!is_method(method, "GET") && !is_method(method, "HEAD")) return method_not_allowed(conn, "GET");
        return reply_result(conn, svc_ready(a->svc, who, &out, &e), &out, &e);
    }
    if (!strcmp(url, "/metrics")) {
        if (!is_method(method, "GET")) return method_not_allowed(conn, "GET");
        return send_metrics(a, conn, who);
    }
    char s[6][320];
    int n = split(url, s, 6);
    if (n < 2 || strcmp(s[0], "v1") != 0 || n > 5) return fail(conn, SVC_ENOTFOUND, "not_found", NULL, "no such route");
    if (!strcmp(s[1], "fine_tuning") && n >= 3 && !strcmp(s[2], "jobs")) {
        if (n == 3) {
            if (is_method(method, "POST")) return create_job(a, conn, q);
            if (!is_method(method, "GET")) return method_not_allowed(conn, "GET or POST");
            if ((rc = int_arg(conn, "limit", 20, 1, 100, &limit, &e))) return reply_error(conn, &e);
            return reply_result(conn, svc_job_list(a->svc, who, arg(conn, "after"), (int)limit, &out, &e), &out, &e);
        }
        return job_route(a, conn, method, s[3], n == 5 ? s[4] : NULL, q);
    }
    if (!strcmp(s[1], "models") && n <= 4) {
        if (!is_method(method, "GET")) return method_not_allowed(conn, "GET");
        if (n == 2) return reply_result(conn, svc_models(a->svc, who, &out, &e), &out, &e);
        if (n == 3) return reply_result(conn, svc_model_get(a->svc, who, s[2], &out, &e), &out, &e);
        if (!strcmp(s[3], "content")) return send_model(a, conn, who, s[2]);
    }
    if (!strcmp(s[1], "datasets") && n == 2) {
        if (!is_method(method, "GET")) return method_not_allowed(conn, "GET");
        return reply_result(conn, svc_datasets(a->svc, who, &out, &e), &out, &e);
    }
    if (!strcmp(s[1], "files") && n <= 3) {
        if (n == 3) {
            if (!is_method(method, "GET")) return method_not_allowed(conn, "GET");
            return reply_result(conn, svc_file_get(a->svc, who, s[2], &out, &e), &out, &e);
        }
        if (!is_method(method, "GET")) return method_not_allowed(conn, "GET or POST");
        return reply_result(conn, svc_files(a->svc, who, &out, &e), &out, &e);
    }
    if (n == 2 && (!strcmp(s[1], "me") || !strcmp(s[1], "users") || !strcmp(s[1], "audit"))) {
        if (!is_method(method, "GET")) return method_not_allowed(conn, "GET");
        if (!strcmp(s[1], "me")) return reply_result(conn, svc_me(a->svc, who, &out, &e), &out, &e);
        if (!strcmp(s[1], "users")) return reply_result(conn, svc_users(a->svc, who, &out, &e), &out, &e);
        long long before;
        if ((rc = int_arg(conn, "limit", 100, 1, 1000, &limit, &e)) || (rc = int_arg(conn, "before", 0, 0, 1LL << 62, &before, &e)))
            return reply_error(conn, &e);
        return reply_result(conn, svc_audit_list(a->svc, who, before, (int)limit, &out, &e), &out, &e);
    }
    return fail(conn, SVC_ENOTFOUND, "not_found", NULL, "no such route");
}

/* The route's template (a static string) for /metrics: ids never become label values. */
static const char *route_of(const char *url)
{
    static const char *const fixed[] = {"/healthz", "/readyz", "/metrics", "/v1/fine_tuning/jobs", "/v1/models",
                                        "/v1/datasets", "/v1/files", "/v1/me", "/v1/users", "/v1/audit"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (!strcmp(url, fixed[i])) return fixed[i];
    if (static_claims(url)) return "static";
    static const char *const actions[][2] = {
        {"cancel", "/v1/fine_tuning/jobs/{id}/cancel"}, {"pause", "/v1/fine_tuning/jobs/{id}/pause"},
        {"resume", "/v1/fine_tuning/jobs/{id}/resume"}, {"events", "/v1/fine_tuning/jobs/{id}/events"},
        {"checkpoints", "/v1/fine_tuning/jobs/{id}/checkpoints"}, {"metrics", "/v1/fine_tuning/jobs/{id}/metrics"}};
    char s[6][320];
    int n = split(url, s, 6);
    if (n < 3 || strcmp(s[0], "v1") != 0) return "other";
    if (!strcmp(s[1], "fine_tuning") && !strcmp(s[2], "jobs")) {
        if (n == 4) return "/v1/fine_tuning/jobs/{id}";
        for (size_t i = 0; n == 5 && i < sizeof actions / sizeof actions[0]; i++)
            if (!strcmp(s[4], actions[i][0])) return actions[i][1];
    }
    if (!strcmp(s[1], "models") && n == 3) return "/v1/models/{id}";
    if (!strcmp(s[1], "models") && n == 4 && !strcmp(s[3], "content")) return "/v1/models/{id}/content";
    if (!strcmp(s[1], "files") && n == 3) return "/v1/files/{id}";
    return "other";
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Settle who is calling (headers phase). The credential is never copied anywhere but into the lookup. */
static void identify(api_ctx *a, struct MHD_Connection *conn, req *q)
{
    const union MHD_ConnectionInfo *fi = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct sockaddr_storage local;
    socklen_t llen = sizeof local;
    int fd = fi ? fi->connect_fd : -1;
    if (fd >= 0 && getsockname(fd, (struct sockaddr *)&local, &llen) == 0 && local.ss_family == AF_UNIX) {
        struct ucred cr;
        socklen_t clen = sizeof cr;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &clen) != 0) {
            svc_fail(&q->auth_err, SVC_EUNAUTH, "invalid_api_key", NULL, "cannot tell who is on the other end of the socket");
            return;
        }
        q->authed = svc_auth_uid(a->svc, (long long)cr.uid, &q->who, &q->auth_err) == 0;
        return;
    }
    char remote[64] = "";
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, remote, sizeof remote);
    else if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr, remote, sizeof remote);
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *token = NULL;
    if (h && !strncasecmp(h, "Bearer ", 7)) {
        token = h + 7;
        while (*token == ' ') token++;
    } else if (h) {
        token = ""; /* some other scheme: a bad credential, not a missing one */
    }
    q->authed = svc_auth_token(a->svc, token, remote, &q->who, &q->auth_err) == 0;
}

static void record(api_ctx *a, req *q)
{
    struct route_stat *st = NULL;
    for (int i = 0; i < a->n_stats && !st; i++)
        if (a->stats[i].route == q->route && a->stats[i].status == q->status) st = &a->stats[i];
    if (!st) {
        struct route_stat *n = realloc(a->stats, (size_t)(a->n_stats + 1) * sizeof *n);
        if (!n) return;
        a->stats = n;
        st = &a->stats[a->n_stats++];
        st->route = q->route;
        st->status = q->status;
        st->n = 0;
        prom_hist_init(&st->h, latency_le, (int)(sizeof latency_le / sizeof latency_le[0]));
    }
    st->n++;
    if (!q->streaming) prom_hist_observe(&st->h, mono_s() - q->t0);
}

static enum MHD_Result send_metrics(api_ctx *a, struct MHD_Connection *conn, const svc_caller *who)
{
    prom_buf b = {0};
    svc_error e;
    if (svc_metrics_text(a->svc, who, &b, &e) != 0) { prom_free(&b); return reply_error(conn, &e); }
    prom_printf(&b, "# HELP coretuned_http_requests_total HTTP requests by route template and status.\n"
                    "# TYPE coretuned_http_requests_total counter\n");
    for (int i = 0; i < a->n_stats; i++)
        prom_printf(&b, "coretuned_http_requests_total{route=\"%s\",status=\"%u\"} %llu\n", a->stats[i].route,
                    a->stats[i].status, a->stats[i].n);
    prom_printf(&b, "# HELP coretuned_http_request_duration_seconds Time from the request's headers to its completion"
                    " (event streams excluded).\n# TYPE coretuned_http_request_duration_seconds histogram\n");
    for (int i = 0; i < a->n_stats; i++) {
        char labels[200];
        snprintf(labels, sizeof labels, "route=\"%s\",status=\"%u\"", a->stats[i].route, a->stats[i].status);
        prom_hist_write(&b, "coretuned_http_request_duration_seconds", labels, &a->stats[i].h);
    }
    prom_printf(&b, "# HELP coretuned_sse_clients Open event streams.\n# TYPE coretuned_sse_clients gauge\n"
                    "coretuned_sse_clients %d\n", a->n_streams);
    if (b.failed) { prom_free(&b); return fail(conn, SVC_EINTERNAL, "internal_error", NULL, "out of memory"); }
    struct MHD_Response *r = MHD_create_response_from_buffer(b.len, b.text, MHD_RESPMEM_MUST_FREE);
    if (!r) { prom_free(&b); return MHD_NO; }
    MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    enum MHD_Result ret = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    queued_status = 200;
    return ret;
}

enum MHD_Result api_handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                           const char *version, const char *upload_data, size_t *upload_data_size,
                           void **con_cls)
{
    api_ctx *a = cls;
    (void)version;
    req *q = *con_cls;
    if (!q) { /* headers only */
        q = calloc(1, sizeof *q);
        if (!q) return MHD_NO;
        q->fd = -1;
        q->a = a;
        q->t0 = mono_s();
        q->route = route_of(url);
        snprintf(q->method, sizeof q->method, "%s", method);
        *con_cls = q;
        q->public_route = !strcmp(url, "/healthz") || static_claims(url);
        if (!q->public_route) identify(a, conn, q);
        if (!q->public_route && !q->authed) {
            q->kind = REQ_PLAIN; /* any body is read and dropped: nothing of an anonymous request is stored */
            return MHD_YES;
        }
        if (is_method(method, "POST") && !strcmp(url, "/v1/files")) {
            q->kind = REQ_UPLOAD;
            q->pp = MHD_create_post_processor(conn, 16 * 1024, on_form, q);
            if (!q->pp) q->not_form = 1; /* not multipart/form-data: answered after the body */
        } else if (is_method(method, "POST") || is_method(method, "PUT") || is_method(method, "PATCH")) {
            q->kind = REQ_JSON;
        }
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        q->received += n;
        if (q->kind == REQ_UPLOAD) {
            if (q->pp && !q->too_large && !q->bad_form && MHD_post_process(q->pp, upload_data, n) != MHD_YES)
                q->bad_form = 1;
            return MHD_YES;
        }
        if (q->kind != REQ_JSON || q->too_large) return MHD_YES; /* drained */
        if (q->len + n > a->lim.json_body_max) {
            q->too_large = 1;
            return MHD_YES;
        }
        if (q->len + n + 1 > q->cap) {
            size_t cap = q->cap ? q->cap : 4096;
            while (cap < q->len + n + 1) cap *= 2;
            char *b = realloc(q->body, cap);
            if (!b) return MHD_NO;
            q->body = b;
            q->cap = cap;
        }
        memcpy(q->body + q->len, upload_data, n);
        q->len += n;
        q->body[q->len] = 0;
        return MHD_YES;
    }
    queued_status = 0;
    enum MHD_Result ret;
    if (a->shutting_down) ret = fail(conn, SVC_EUNAVAILABLE, "shutting_down", NULL, "the daemon is shutting down");
    else ret = dispatch(a, conn, url, method, q);
    q->status = queued_status;
    q->streaming = q->status == 200 && q->route && strstr(q->route, "/events") && a->streams && a->streams->conn == conn;
    return ret;
}

void api_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)conn; (void)toe;
    req *q = *con_cls;
    if (!q) return;
    api_ctx *a = cls;
    if (q->status) {
        record(a, q);
        LOG(LOG_DEBUG, "msg=request method=%s route=%s status=%u ms=%.1f user=\"%s\"", q->method, q->route, q->status,
            (mono_s() - q->t0) * 1000, q->authed ? q->who.name : "");
    }
    if (q->pp) MHD_destroy_post_processor(q->pp);
    if (q->fd >= 0) close(q->fd);
    if (q->tmp[0]) unlink(q->tmp);
    free(q->body);
    free(q);
    *con_cls = NULL;
}

/* ---------------- life cycle ---------------- */

int api_new(api_ctx **out, uv_loop_t *loop, svc *s, const api_limits *lim, const char *version,
            void (*kick)(void *), void *kick_ud)
{
    api_ctx *a = calloc(1, sizeof *a);
    if (!a) return -ENOMEM;
    a->loop = loop;
    a->svc = s;
    a->lim = *lim;
    a->web.web_root = lim->web_root;
    a->version = version;
    a->started_at = (long long)time(NULL);
    a->kick = kick;
    a->kick_ud = kick_ud;
    uv_timer_init(loop, &a->kick_timer);
    uv_timer_init(loop, &a->hb_timer);
    a->kick_timer.data = a->hb_timer.data = a;
    a->handles_open = 2;
    uint64_t hb = (uint64_t)(lim->sse_heartbeat_s * 1000);
    if (hb < 10) hb = 10;
    uv_timer_start(&a->hb_timer, on_heartbeat, hb, hb);
    svc_set_listener(s, on_job_event, a);
    *out = a;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    api_ctx *a = h->data;
    a->handles_open--;
}

void api_shutdown(api_ctx *a)
{
    if (a->shutting_down) return;
    a->shutting_down = 1;
    svc_set_listener(a->svc, NULL, NULL);
    for (sse *x = a->streams; x; x = x->next) resume(x); /* MHD must not be stopped with suspended connections */
    uv_close((uv_handle_t *)&a->kick_timer, on_closed);
    uv_close((uv_handle_t *)&a->hb_timer, on_closed);
}

void api_free(api_ctx *a)
{
    if (a) free(a->stats);
    free(a);
}
