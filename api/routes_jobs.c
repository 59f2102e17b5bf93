/* api/routes_jobs.c — the handlers of /v1/fine_tuning/jobs...: create (JSON body, Idempotency-Key), list,
 * get, cancel/pause/resume, events (a page, or a stream: api/sse.c), checkpoints and metrics. Loop
 * thread only; called by the route table (api/routes.c) with the method already checked. Query
 * arguments are validated here; everything else is the service's answer, errors through the one table. */
#include "api/api_int.h"
#include "spec/jobspec.h"
#include "common/util.h"
#include <string.h>

static const char *job_id(api__call *c) { return api__param(&c->q->m, "id"); }

static enum MHD_Result job_reply(api__call *c, int rc, svc_job *j, const svc_error *e)
{
    if (rc) return api__reply_error(c, e);
    char *out = render_job_text(c->a->memo, j);
    svc_job_clear(j);
    return api__reply_text(c, out);
}

/* The request's JSON body (OUT *body, new reference), or the error already answered (*body NULL). */
static enum MHD_Result json_body(api__call *c, json_t **body)
{
    char quoted[201];              /* a client's string, quoted in a message */
    req *q = c->q;
    *body = NULL;
    const char *ct = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Content-Type");
    if (ct && !strstr(ct, "json"))
        return api__fail(c, SVC_EMEDIA, NULL, NULL, "the body must be application/json, not %s", util_quote(quoted, sizeof quoted, ct));
    if (q->len == 0) return api__fail(c, SVC_EINVAL, "invalid_json", NULL, "the request body is empty");
    if (jobspec_json_depth(q->body, q->len) > c->a->lim.json_depth_max)
        return api__fail(c, SVC_EINVAL, "too_deep", NULL, "the JSON body nests deeper than %d levels", c->a->lim.json_depth_max);
    json_error_t je;
    *body = json_loadb(q->body, q->len, JSON_REJECT_DUPLICATES, &je);
    if (!*body)
        return api__fail(c, SVC_EINVAL, "invalid_json", NULL, "malformed JSON at line %d column %d: %s", je.line, je.column,
                         je.text);
    return MHD_YES;
}

enum MHD_Result api__job_create(api__call *c)
{
    req *q = c->q;
    json_t *body;
    enum MHD_Result r = json_body(c, &body);
    if (!body) return r;
    const char *key = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Idempotency-Key");
    if (key && (strlen(key) == 0 || strlen(key) > 255)) {
        json_decref(body);
        return api__fail(c, SVC_EINVAL, "invalid_value", "Idempotency-Key", "Idempotency-Key must be 1-255 characters");
    }
    svc_job j;
    svc_error e;
    int replayed = 0;
    int rc = svc_job_create(c->a->svc, &q->who, body, key, &j, &replayed, &e);
    json_decref(body);
    return job_reply(c, rc, &j, &e);
}

enum MHD_Result api__job_list(api__call *c)
{
    svc_job_page p;
    svc_error e;
    long long limit;
    if (api__int_arg(c, "limit", 20, 1, 100, &limit, &e)) return api__reply_error(c, &e);
    if (svc_job_list(c->a->svc, &c->q->who, api__arg(c, "after"), (int)limit, &p, &e)) return api__reply_error(c, &e);
    char *out = render_job_page_text(c->a->memo, &p);
    svc_job_page_free(&p);
    return api__reply_text(c, out);
}

enum MHD_Result api__job_get(api__call *c)
{
    svc_job j;
    svc_error e;
    int rc = svc_job_get(c->a->svc, &c->q->who, job_id(c), &j, &e);
    return job_reply(c, rc, &j, &e);
}

enum MHD_Result api__job_delete(api__call *c)
{
    svc_error e;
    if (svc_job_delete(c->a->svc, &c->q->who, job_id(c), &e)) return api__reply_error(c, &e);
    return api__reply_rendered(c, render_deleted(job_id(c), "fine_tuning.job"));
}

enum MHD_Result api__job_cancel(api__call *c)
{
    svc_job j;
    svc_error e;
    int rc = svc_job_cancel(c->a->svc, &c->q->who, job_id(c), &j, &e);
    return job_reply(c, rc, &j, &e);
}

enum MHD_Result api__job_pause(api__call *c)
{
    svc_job j;
    svc_error e;
    int rc = svc_job_pause(c->a->svc, &c->q->who, job_id(c), &j, &e);
    return job_reply(c, rc, &j, &e);
}

enum MHD_Result api__job_resume(api__call *c)
{
    svc_job j;
    svc_error e;
    int rc = svc_job_resume(c->a->svc, &c->q->who, job_id(c), &j, &e);
    return job_reply(c, rc, &j, &e);
}

/* ---- sweeps: /v1/fine_tuning/sweeps... (trials are jobs; events as for jobs) ---- */

static enum MHD_Result sweep_reply(api__call *c, int rc, svc_sweep *w, const svc_error *e)
{
    if (rc) return api__reply_error(c, e);
    json_t *out = render_sweep(w);
    svc_sweep_clear(w);
    return api__reply_rendered(c, out);
}

enum MHD_Result api__sweep_create(api__call *c)
{
    json_t *body;
    enum MHD_Result r = json_body(c, &body);
    if (!body) return r;
    svc_sweep w;
    svc_error e;
    int rc = svc_sweep_create(c->a->svc, &c->q->who, body, &w, &e);
    json_decref(body);
    return sweep_reply(c, rc, &w, &e);
}

enum MHD_Result api__sweep_list(api__call *c)
{
    svc_sweep_page p;
    svc_error e;
    long long limit;
    if (api__int_arg(c, "limit", 20, 1, 100, &limit, &e)) return api__reply_error(c, &e);
    if (svc_sweep_list(c->a->svc, &c->q->who, api__arg(c, "after"), (int)limit, &p, &e)) return api__reply_error(c, &e);
    json_t *out = render_sweep_page(&p);
    svc_sweep_page_free(&p);
    return api__reply_rendered(c, out);
}

enum MHD_Result api__sweep_get(api__call *c)
{
    svc_sweep w;
    svc_error e;
    int rc = svc_sweep_get(c->a->svc, &c->q->who, job_id(c), &w, &e);
    return sweep_reply(c, rc, &w, &e);
}

enum MHD_Result api__sweep_cancel(api__call *c)
{
    svc_sweep w;
    svc_error e;
    int rc = svc_sweep_cancel(c->a->svc, &c->q->who, job_id(c), &w, &e);
    return sweep_reply(c, rc, &w, &e);
}

/* A stream when the client asks for one (Accept: text/event-stream or ?stream=true), else a page. The
 * same for a job's events and a sweep's: the id says which. */
enum MHD_Result api__job_events(api__call *c)
{
    const char *accept = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Accept");
    const char *stream = api__arg(c, "stream");
    if ((accept && strstr(accept, "text/event-stream")) || (stream && !strcmp(stream, "true")))
        return api__sse_start(c, job_id(c));
    svc_event_page p;
    svc_error e;
    long long limit, after = 0;
    const char *as = api__arg(c, "after");
    if (as && api__event_id(as, &after) != 0)
        return api__fail(c, SVC_EINVAL, "invalid_value", "after", "after must be an event id");
    if (api__int_arg(c, "limit", 20, 1, 1000, &limit, &e)) return api__reply_error(c, &e);
    if (svc_job_events(c->a->svc, &c->q->who, job_id(c), after, (int)limit, &p, &e)) return api__reply_error(c, &e);
    json_t *out = render_event_page(&p, strncmp(job_id(c), "ftsweep-", 8) ? "fine_tuning.job.event"
                                                                          : "fine_tuning.sweep.event");
    svc_event_page_free(&p);
    return api__reply_rendered(c, out);
}

enum MHD_Result api__job_checkpoints(api__call *c)
{
    svc_ckpt_page p;
    svc_error e;
    long long limit;
    if (api__int_arg(c, "limit", 10, 1, 100, &limit, &e)) return api__reply_error(c, &e);
    if (svc_job_checkpoints(c->a->svc, &c->q->who, job_id(c), api__arg(c, "after"), (int)limit, &p, &e))
        return api__reply_error(c, &e);
    json_t *out = render_checkpoints(&p);
    svc_ckpt_page_free(&p);
    return api__reply_rendered(c, out);
}

enum MHD_Result api__job_metrics(api__call *c)
{
    svc_metrics m;
    svc_error e;
    long long max_points, after_step;
    if (api__int_arg(c, "max_points", 500, 3, 100000, &max_points, &e)) return api__reply_error(c, &e);
    if (api__int_arg(c, "after_step", 0, 0, 1LL << 30, &after_step, &e)) return api__reply_error(c, &e);
    if (svc_job_metrics(c->a->svc, &c->q->who, job_id(c), api__arg(c, "names"), (int)max_points, (int)after_step, &m,
                        &e))
        return api__reply_error(c, &e);
    json_t *out = render_metrics(&m);
    svc_metrics_free(&m);
    return api__reply_rendered(c, out);
}
