/* api/routes_access.c — the handlers of who-am-I and the admin's views (/v1/me, /v1/users, /v1/audit,
 * /metrics), the probes (/healthz public, /readyz) and the dashboard's files (public, api/static.h).
 * Loop thread only; called by the route table (api/routes.c) with the method checked. Admin-only
 * answers (403, with an audit record) come from the service, like every authorization decision.
 * /metrics is the service's text followed by api/'s own families: requests and latency by route label
 * and status, open event streams. /v1/openapi.yaml (public) is the API's description, built in. */
#include "api/api_int.h"
#include "api/openapi_doc.h"
#include <stdio.h>
#include <time.h>

enum MHD_Result api__healthz(api__call *c)
{
    return api__reply_json(c, 200, json_pack("{s:s, s:s, s:I}", "status", "ok", "version", c->a->version, "uptime_seconds",
                                             (json_int_t)(time(NULL) - c->a->started_at)));
}

enum MHD_Result api__readyz(api__call *c)
{
    svc_readiness v;
    svc_error e;
    if (svc_ready(c->a->svc, &c->q->who, &v, &e)) return api__reply_error(c, &e);
    json_t *out = render_ready(&v);
    return api__reply_rendered(c, out);
}

enum MHD_Result api__me(api__call *c)
{
    svc_me_info v;
    svc_error e;
    if (svc_me(c->a->svc, &c->q->who, &v, &e)) return api__reply_error(c, &e);
    json_t *out = render_me(&v);
    return api__reply_rendered(c, out);
}

enum MHD_Result api__users(api__call *c)
{
    svc_user_list v;
    svc_error e;
    if (svc_users(c->a->svc, &c->q->who, &v, &e)) return api__reply_error(c, &e);
    json_t *out = render_users(&v);
    svc_user_list_free(&v);
    return api__reply_rendered(c, out);
}

enum MHD_Result api__audit(api__call *c)
{
    svc_error e;
    long long limit, before;
    if (api__int_arg(c, "limit", 100, 1, 1000, &limit, &e) || api__int_arg(c, "before", 0, 0, 1LL << 62, &before, &e))
        return api__reply_error(c, &e);
    svc_audit_page v;
    if (svc_audit_list(c->a->svc, &c->q->who, before, (int)limit, &v, &e)) return api__reply_error(c, &e);
    json_t *out = render_audit(&v);
    svc_audit_page_free(&v);
    return api__reply_rendered(c, out);
}

enum MHD_Result api__metrics(api__call *c)
{
    api_ctx *a = c->a;
    prom_buf b = {0};
    svc_error e;
    svc_stats st;
    if (svc_stats_get(a->svc, &c->q->who, &st, &e) != 0) return api__reply_error(c, &e);
    render_stats(&b, &st);
    svc_stats_free(&st);
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
    if (b.failed) { prom_free(&b); return api__fail(c, SVC_EINTERNAL, "internal_error", NULL, "out of memory"); }
    struct MHD_Response *r = MHD_create_response_from_buffer(b.len, b.text, MHD_RESPMEM_MUST_FREE);
    if (!r) { prom_free(&b); return MHD_NO; }
    MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    enum MHD_Result ret = api__queue(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result api__openapi(api__call *c)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(api_openapi_yaml_len, (void *)api_openapi_yaml,
                                                             MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/yaml");
    enum MHD_Result ret = api__queue(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

/* The dashboard: "/", "/index.html", "/web/...". A 304 is counted as 200, as it always has been. */
enum MHD_Result api__static(api__call *c)
{
    enum MHD_Result ret;
    svc_error e;
    int rc = static_serve(&c->a->web, c->conn, c->method, c->url, &ret, &e);
    if (rc == 1) { c->status = 200; return ret; }
    if (rc == 0) return api__no_route(c); /* not the dashboard's after all: the table and static_claims disagree */
    return api__reply_error(c, &e);
}
