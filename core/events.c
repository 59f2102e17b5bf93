/* core/events.c — events and the batch: every event, metric, progress row, checkpoint, status change
 * and audit record goes into one db_batch that is committed in one transaction, at once for what a
 * client is told about (status changes, checkpoints) and within flush_seconds for the rest. Readers
 * merge the batch, so nothing waits for the commit to be seen. Also the event and checkpoint pages and
 * the stream cursor. Loop thread only. */
#include "core/core_int.h"
#include "common/log.h"
#include "common/util.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void svc__notify(svc *s, const char *job_id)
{
    if (s->listener) s->listener(s->listener_ud, job_id);
}

/* Event ids: readers see an event as soon as it is made, a second before it is committed, so after a
 * kill -9 the ids of lost events must not be handed out again with other content (a client holding
 * Last-Event-ID would skip the new ones). Ids are reserved durably in blocks: one extra commit per
 * EVENT_ID_BLOCK events, and after a crash numbering resumes above the reservation. */
#define EVENT_ID_BLOCK 1000

int svc__events_seed(svc *s)
{
    long long committed = 0, reserved = 0;
    int rc = db_event_max_id(s->db, &committed);
    if (rc == 0) rc = db_event_reserved(s->db, &reserved);
    if (rc) return rc;
    s->last_event_id = s->event_id_reserved = committed > reserved ? committed : reserved;
    return 0;
}

/* While the database refuses writes (disk full) ids are still handed out, unreserved, so that no event
 * is lost: only a crash during that outage could reuse them. The reservation is retried once a second. */
static long long next_event_id(svc *s)
{
    if (s->last_event_id >= s->event_id_reserved && util_mono() >= s->reserve_retry_at) {
        long long upto = s->last_event_id + EVENT_ID_BLOCK;
        if (db_event_reserve(s->db, upto) == 0) {
            s->event_id_reserved = upto;
        } else {
            LOG(LOG_ERROR, "msg=\"cannot reserve event ids; will retry\" err=\"%s\"", db_errmsg(s->db));
            s->reserve_retry_at = util_mono() + 1.0;
        }
    }
    return ++s->last_event_id;
}

/* Add an event (data: stolen reference or NULL) to the batch; it is visible to readers at once
 * (they merge the batch) and committed with the next flush. */
void svc__emit(svc *s, const char *job_id, const char *type, const char *level, json_t *data, const char *fmt, ...)
{
    db_event *e = db_batch_event(&s->batch);
    if (!e) { json_decref(data); LOG(LOG_ERROR, "msg=\"out of memory for an event\" job=%s", job_id); return; }
    snprintf(e->job_id, sizeof e->job_id, "%.47s", job_id);
    e->id = next_event_id(s);
    e->created_at = util_now();
    e->type = type;
    e->level = level;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    e->message = strdup(msg);
    e->data = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    svc__notify(s, job_id);
}

int svc__flush(svc *s)
{
    if (db_batch_empty(&s->batch)) return 0;
    char err[256];
    double t0 = util_mono();
    int rc = db_batch_write(s->db, &s->batch, err, sizeof err);
    hist_observe(&s->db_write, util_mono() - t0);
    if (rc) {
        LOG(LOG_ERROR, "msg=\"cannot commit progress; will retry\" err=\"%s\"", err);
        return rc;
    }
    db_batch_reset(&s->batch);
    return 0;
}

static void on_flush_timer(uv_timer_t *t)
{
    svc *s = t->data;
    s->flush_armed = 0;
    if (svc__flush(s) != 0 && !s->flush_armed && !s->stopping) { /* retry later */
        s->flush_armed = 1;
        uv_timer_start(&s->flush_timer, on_flush_timer, (uint64_t)(s->cfg.flush_seconds * 1000), 0);
    }
}

void svc__flush_later(svc *s)
{
    if (s->flush_armed || db_batch_empty(&s->batch)) return;
    s->flush_armed = 1;
    uv_timer_start(&s->flush_timer, on_flush_timer, (uint64_t)(s->cfg.flush_seconds * 1000), 0);
}

int svc__events_init(svc *s)
{
    int rc = uv_timer_init(s->loop, &s->flush_timer);
    s->flush_timer.data = s;
    return rc;
}

void svc__events_close(svc *s, uv_close_cb cb)
{
    uv_timer_stop(&s->flush_timer);
    uv_close((uv_handle_t *)&s->flush_timer, cb);
}

/* A status change (committed with the batch; a caller that acknowledges it to a client flushes). */
db_status *svc__status_change(svc *s, const char *job_id, enum job_status status)
{
    db_status *c = db_batch_status(&s->batch);
    if (!c) return NULL;
    snprintf(c->job_id, sizeof c->job_id, "%.47s", job_id);
    c->status = status;
    s->order_valid = 0;
    return c;
}

void svc__set_error(db_status *c, const char *code, const char *message, const char *param)
{
    c->error_code = code ? strdup(code) : NULL;
    c->error_message = message ? strdup(message) : NULL;
    c->error_param = param && *param ? strdup(param) : NULL;
}

/* ---------------- event pages ---------------- */

void svc_event_page_free(svc_event_page *p)
{
    if (!p) return;
    for (int i = 0; i < p->n; i++) { free(p->v[i].message); free(p->v[i].data); }
    free(p->v);
    memset(p, 0, sizeof *p);
}

typedef struct ev_ctx { svc_event_page *p; int cap; long long last; } ev_ctx;
static int add_event(void *ud, const db_event *ev)
{
    ev_ctx *c = ud;
    if (util_grow(&c->p->v, &c->cap, c->p->n + 1, sizeof *c->p->v)) return 1;
    svc_event *d = &c->p->v[c->p->n++];
    d->id = ev->id;
    d->created_at = ev->created_at;
    snprintf(d->type, sizeof d->type, "%s", ev->type ? ev->type : "message");
    snprintf(d->level, sizeof d->level, "%s", ev->level ? ev->level : "info");
    d->message = ev->message ? strdup(ev->message) : NULL;
    d->data = ev->data ? strdup(ev->data) : NULL;
    c->last = ev->id;
    return 0;
}

/* Committed events from the database, then the ones still in the batch. */
static int collect_events(svc *s, const char *id, long long after, int limit, svc_event_page *out)
{
    memset(out, 0, sizeof *out);
    ev_ctx c = {out, 0, after};
    int rc = db_event_list(s->db, id, after, limit, add_event, &c, &out->has_more);
    for (int i = 0; rc == 0 && i < s->batch.n_events && !out->has_more; i++) {
        db_event *ev = &s->batch.events[i];
        if (strcmp(ev->job_id, id) || ev->id <= c.last) continue;
        if (out->n == limit) { out->has_more = 1; break; }
        if (add_event(&c, ev)) rc = -ENOMEM;
    }
    if (rc) svc_event_page_free(out);
    return rc;
}

int svc_job_events(svc *s, const svc_caller *who, const char *id, long long after, int limit, svc_event_page *out,
                   svc_error *e)
{
    db_job j;
    int rc = svc__get_job(s, who, id, &j, e);
    if (rc) return rc;
    db_job_clear(&j);
    if (collect_events(s, id, after, limit, out)) return svc__storage_error(s, e);
    return 0;
}

int svc_stream_poll(svc *s, const svc_caller *who, const char *id, long long after, int limit, svc_event_page *out,
                    int *ended, svc_error *e)
{
    db_job j;
    int rc = svc__get_job(s, who, id, &j, e);
    if (rc) return rc;
    if (collect_events(s, id, after, limit, out)) {
        db_job_clear(&j);
        return svc__storage_error(s, e);
    }
    *ended = !out->has_more && out->n == 0 && svc__is_final(j.status) && !svc__find_run(s, id);
    db_job_clear(&j);
    return 0;
}

/* ---------------- checkpoints ---------------- */

void svc_ckpt_page_free(svc_ckpt_page *p)
{
    if (!p) return;
    for (int i = 0; i < p->n; i++) { free(p->v[i].path); free(p->v[i].metrics); }
    free(p->v);
    memset(p, 0, sizeof *p);
}

typedef struct ck_ctx { svc_ckpt_page *p; int cap; } ck_ctx;
static int add_ckpt(void *ud, const db_checkpoint *c)
{
    ck_ctx *x = ud;
    if (util_grow(&x->p->v, &x->cap, x->p->n + 1, sizeof *x->p->v)) return 1;
    db_checkpoint *d = &x->p->v[x->p->n++];
    *d = *c;
    d->path = NULL;                /* not part of the answer */
    d->metrics = c->metrics ? strdup(c->metrics) : NULL;
    return 0;
}

int svc_job_checkpoints(svc *s, const svc_caller *who, const char *id, const char *after, int limit,
                        svc_ckpt_page *out, svc_error *e)
{
    memset(out, 0, sizeof *out);
    db_job j;
    int rc = svc__get_job(s, who, id, &j, e);
    if (rc) return rc;
    long long a = 0;
    if (after) {
        const char *num = !strncmp(after, "ftckpt-", 7) ? after + 7 : after;
        char *end;
        a = strtoll(num, &end, 10);
        if (*end || a <= 0) {
            db_job_clear(&j);
            return svc_fail(e, SVC_EINVAL, "invalid_value", "after", "after must be a checkpoint id");
        }
    }
    snprintf(out->job_id, sizeof out->job_id, "%s", id);
    svc__fine_tuned_name(&j, j.arch, out->model, sizeof out->model);
    db_job_clear(&j);
    ck_ctx c = {out, 0};
    if (db_checkpoint_list(s->db, id, a, limit, add_ckpt, &c, &out->has_more)) {
        svc_ckpt_page_free(out);
        return svc__storage_error(s, e);
    }
    return 0;
}
