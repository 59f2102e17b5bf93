/* api/api.c — the request life cycle, identity, per-route request stats, the error table and the reply
 * helpers. Loop thread only. A request is handled in three phases (MHD's access-handler protocol):
 * headers (match the route once, allocate the request state, settle identity), body chunks (accumulate
 * JSON up to a limit, or stream a multipart upload to a temp file), then dispatch to the route's handler.
 * A declared Content-Length over the limit, or a Transfer-Encoding MHD cannot read, is answered with the
 * headers, before any body is read (waiting for such a body would only hold the connection). A chunked
 * body that outgrows the limit is drained and answered 413, so the client always reads a reply.
 * Identity is settled in the headers phase: over the Unix socket from the peer's uid (SO_PEERCRED),
 * over TCP from `Authorization: Bearer`. Only public routes (/healthz, the dashboard's files) skip it;
 * everything else answers 401 without a valid identity (after draining the body, never storing it).
 * Errors: handlers return svc errors and this file's one table turns them into statuses. */
#define _GNU_SOURCE
#include "api/api_int.h"
#include "common/log.h"
#include "common/util.h"
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const double latency_le[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

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
    {SVC_ENOSPACE, 507, "server_error", "insufficient_storage"},
};

enum MHD_Result api__queue(api__call *c, unsigned int status, struct MHD_Response *r)
{
    enum MHD_Result ret = MHD_queue_response(c->conn, status, r);
    c->status = status;
    return ret;
}

/* text: JSON, taken (NULL = out of memory: the connection is dropped) */
static enum MHD_Result reply_text_h(api__call *c, unsigned int status, char *text, const char *hname,
                                    const char *hvalue)
{
    if (!text) return MHD_NO;
    size_t n = strlen(text);
    struct MHD_Response *r = MHD_create_response_from_buffer(n, text, MHD_RESPMEM_MUST_FREE);
    if (!r) { free(text); return MHD_NO; }
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (hname) MHD_add_response_header(r, hname, hvalue);
    enum MHD_Result ret = api__queue(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_json_h(api__call *c, unsigned int status, json_t *body, const char *hname,
                                    const char *hvalue)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return reply_text_h(c, status, text, hname, hvalue);
}

enum MHD_Result api__reply_text(api__call *c, char *text)
{
    if (!text) return api__fail(c, SVC_EINTERNAL, "internal_error", NULL, "out of memory");
    return reply_text_h(c, 200, text, NULL, NULL);
}

enum MHD_Result api__reply_json(api__call *c, unsigned int status, json_t *body)
{
    return reply_json_h(c, status, body, NULL, NULL);
}

enum MHD_Result api__reply_error(api__call *c, const svc_error *e)
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
        return reply_json_h(c, error_table[i].status, json_pack("{s:o}", "error", err), "WWW-Authenticate",
                            "Bearer realm=\"coretuned\"");
    return api__reply_json(c, error_table[i].status, json_pack("{s:o}", "error", err));
}

enum MHD_Result api__fail(api__call *c, enum svc_err kind, const char *code, const char *param, const char *fmt, ...)
{
    svc_error e;
    char msg[sizeof e.message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    svc_fail(&e, kind, code, param, "%s", msg);
    return api__reply_error(c, &e);
}

enum MHD_Result api__reply_rendered(api__call *c, json_t *out)
{
    if (!out) return api__fail(c, SVC_EINTERNAL, "internal_error", NULL, "out of memory");
    return api__reply_json(c, 200, out);
}

/* ---------------- query helpers ---------------- */

const char *api__arg(api__call *c, const char *name)
{
    return MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, name);
}

int api__int_arg(api__call *c, const char *name, long long def, long long lo, long long hi, long long *v, svc_error *e)
{
    const char *s = api__arg(c, name);
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

int api__event_id(const char *s, long long *out)
{
    if (!strncmp(s, "ftevent-", 8)) s += 8;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (!*s || *end || errno || x < 0) return -1;
    *out = x;
    return 0;
}

/* ---------------- identity and stats ---------------- */


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

/* Count the finished request under its route label and status (labels compared as text: several rows
 * share one, e.g. "static"). */
static void record(api_ctx *a, req *q)
{
    struct route_stat *st = NULL;
    for (int i = 0; i < a->n_stats && !st; i++)
        if (!strcmp(a->stats[i].route, q->route) && a->stats[i].status == q->status) st = &a->stats[i];
    if (!st) {
        if (util_grow(&a->stats, &a->cap_stats, a->n_stats + 1, sizeof *a->stats)) return;
        st = &a->stats[a->n_stats++];
        st->route = q->route;
        st->status = q->status;
        st->n = 0;
        hist_init(&st->h, latency_le, (int)(sizeof latency_le / sizeof latency_le[0]));
    }
    st->n++;
    if (!q->streaming) hist_observe(&st->h, util_mono() - q->t0);
}

/* ---------------- the request life cycle ---------------- */

static int is_method(const char *m, const char *want) { return strcmp(m, want) == 0; }

/* After the body: identity, the body's limit, then the matched row's handler. */
static enum MHD_Result dispatch(api__call *c)
{
    req *q = c->q;
    if (api__route_access(&q->m) != API__PUBLIC && !q->authed) return api__reply_error(c, &q->auth_err);
    if (q->kind == REQ_JSON && q->too_large)
        return api__fail(c, SVC_ETOOLARGE, NULL, NULL, "the request body is larger than %zu bytes", c->a->lim.json_body_max);
    if (!q->m.path_row) return api__no_route(c);
    if (!q->m.row) {
        char allowed[64];
        api__methods_text(q->m.allowed, allowed, sizeof allowed);
        return api__fail(c, SVC_EMETHOD, NULL, NULL, "use %s on this route", allowed);
    }
    return q->m.row->fn(c);
}

#define UPLOAD_FRAMING (64 * 1024) /* multipart boundaries and the purpose field around the file's bytes */

/* Headers phase: a body this request can never have is refused now. *answered = 1 when a reply was queued. */
static enum MHD_Result refuse_body(api_ctx *a, struct MHD_Connection *conn, const char *url, const char *method,
                                   req *q, int *answered)
{
    api__call c = {.a = a, .conn = conn, .q = q, .url = url, .method = method};
    const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    int upload = q->m.row && (q->m.row->flags & API__UPLOAD);
    unsigned long long max = upload ? (unsigned long long)svc_upload_limit(a->svc) + UPLOAD_FRAMING : a->lim.json_body_max;
    unsigned long long declared = cl ? strtoull(cl, NULL, 10) : 0; /* MHD answers 400 to a malformed one */
    enum MHD_Result ret = MHD_YES;
    *answered = 1;
    if (te && strcasecmp(te, "chunked") != 0)
        ret = api__fail(&c, SVC_EINVAL, "unsupported_transfer_encoding", "Transfer-Encoding",
                        "Transfer-Encoding '%.40s' is not supported: send Content-Length or chunked", te);
    else if (declared > max && upload)
        ret = api__fail(&c, SVC_ETOOLARGE, NULL, "file", "the upload is larger than %lld bytes", svc_upload_limit(a->svc));
    else if (declared > max)
        ret = api__fail(&c, SVC_ETOOLARGE, NULL, NULL, "the request body is larger than %zu bytes", a->lim.json_body_max);
    else
        *answered = 0;
    q->status = c.status;
    return ret;
}

static enum MHD_Result headers(api_ctx *a, struct MHD_Connection *conn, const char *url, const char *method,
                               void **con_cls)
{
    req *q = calloc(1, sizeof *q);
    if (!q) return MHD_NO;
    q->fd = -1;
    q->a = a;
    q->t0 = util_mono();
    api__route_match(method, url, &q->m); /* 404 and 405 are answered after the body */
    q->route = api__route_label(&q->m);
    snprintf(q->method, sizeof q->method, "%s", method);
    *con_cls = q;
    enum MHD_Result ret = refuse_body(a, conn, url, method, q, &q->answered);
    if (q->answered) return ret;
    int public_route = api__route_access(&q->m) == API__PUBLIC;
    if (!public_route) identify(a, conn, q);
    if (!public_route && !q->authed) {
        q->kind = REQ_PLAIN; /* any body is read and dropped: nothing of an anonymous request is stored */
        return MHD_YES;
    }
    if (q->m.row && (q->m.row->flags & API__UPLOAD)) {
        q->kind = REQ_UPLOAD;
        api__upload_begin(q, conn);
    } else if (is_method(method, "POST") || is_method(method, "PUT") || is_method(method, "PATCH")) {
        q->kind = REQ_JSON;
    }
    return MHD_YES;
}

static enum MHD_Result body_chunk(api_ctx *a, req *q, const char *data, size_t n)
{
    q->received += n;
    if (q->kind == REQ_UPLOAD) {
        if (q->pp && !q->too_large && !q->bad_form && MHD_post_process(q->pp, data, n) != MHD_YES) q->bad_form = 1;
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
    memcpy(q->body + q->len, data, n);
    q->len += n;
    q->body[q->len] = 0;
    return MHD_YES;
}

enum MHD_Result api_handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                           const char *version, const char *upload_data, size_t *upload_data_size,
                           void **con_cls)
{
    api_ctx *a = cls;
    (void)version;
    req *q = *con_cls;
    if (!q) return headers(a, conn, url, method, con_cls);
    if (q->answered) { /* whatever MHD still hands over of the refused body is dropped */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        return body_chunk(a, q, upload_data, n);
    }
    api__call c = {.a = a, .conn = conn, .q = q, .url = url, .method = method};
    enum MHD_Result ret;
    if (a->shutting_down) ret = api__fail(&c, SVC_EUNAVAILABLE, "shutting_down", NULL, "the daemon is shutting down");
    else ret = dispatch(&c);
    q->status = c.status;
    q->streaming = q->status == 200 && strstr(q->route, "/events") && api__sse_is(a, conn);
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
            (util_mono() - q->t0) * 1000, q->authed ? q->who.name : "");
    }
    api__upload_drop(q);
    if (q->pp) MHD_destroy_post_processor(q->pp);
    if (q->fd >= 0) close(q->fd);
    for (int i = 0; i < SVC_UPLOAD_MAX_PARTS; i++)
        if (q->tmp[i][0]) unlink(q->tmp[i]);
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
    if (a->lim.max_streams <= 0) a->lim.max_streams = API_MAX_STREAMS;
    a->web.web_root = lim->web_root;
    a->version = version;
    a->started_at = (long long)time(NULL);
    a->kick = kick;
    a->kick_ud = kick_ud;
    if (render_memo_new(&a->memo) != 0) { free(a); return -ENOMEM; }
    uv_timer_init(loop, &a->kick_timer);
    uv_timer_init(loop, &a->hb_timer);
    a->kick_timer.data = a->hb_timer.data = a;
    a->handles_open = 2;
    uint64_t hb = (uint64_t)(lim->sse_heartbeat_s * 1000);
    if (hb < 10) hb = 10;
    uv_timer_start(&a->hb_timer, api__sse_on_heartbeat, hb, hb);
    svc_set_listener(s, api__sse_on_job_event, a);
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
    api__sse_resume_all(a); /* MHD must not be stopped with suspended connections */
    api__uploads_resume_all(a);
    uv_close((uv_handle_t *)&a->kick_timer, on_closed);
    uv_close((uv_handle_t *)&a->hb_timer, on_closed);
}

void api_free(api_ctx *a)
{
    if (a) {
        free(a->stats);
        render_memo_free(a->memo);
    }
    free(a);
}
