/* core/events.c — events and the batch: every event, metric, progress row, checkpoint, status change
 * and audit record goes into one db_batch that is committed in one transaction, at once for what a
 * client is told about (status changes, checkpoints) and within flush_seconds for the rest. Readers
 * merge the batch, so nothing waits for the commit to be seen. Also the event and checkpoint pages and
 * the stream cursor. Loop thread only. */
#include "core/core_int.h"
#include "common/log.h"
#include "common/util.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_flush_timer(uv_timer_t *t);

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
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    svc__event_fill(s, e, job_id, type, level, data, msg);
    svc__notify(s, job_id);
}

void svc__event_fill(svc *s, db_event *e, const char *job_id, const char *type, const char *level, json_t *data,
                     const char *msg)
{
    snprintf(e->job_id, sizeof e->job_id, "%.47s", job_id);
    e->id = next_event_id(s);
    e->created_at = util_now();
    e->type = type;
    e->level = level;
    e->message = strdup(msg);
    e->data = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
}

/* While commits fail (a full disk) the batch keeps everything for the retry, so a long outage must not
 * grow it without bound. Past BATCH_MAX_STEPS step records (a "metrics" event and its per-step metric
 * rows: about 3 MB in all) the older half of each job's step records goes, and one warning event per
 * job (committed with the rest) names the steps dropped, so the job's history shows the gap. Status
 * changes, checkpoints, validation results (the valid_* metrics), errors and audit rows are never
 * dropped; the job's live progress row is one row per job and is kept current. */
#define BATCH_MAX_STEPS 4096
#define SHED_MAX_JOBS 64           /* jobs thinned per retry (the rest at the next one) */

static int is_step_event(const db_event *e) { return !strcmp(e->type, "metrics"); }

static int step_of(const db_event *e) /* the "step" of a metrics event's data, -1 if unreadable */
{
    json_t *d = e->data ? json_loads(e->data, 0, NULL) : NULL;
    int step = json_is_integer(json_object_get(d, "step")) ? (int)json_integer_value(json_object_get(d, "step")) : -1;
    json_decref(d);
    return step;
}

/* Drop the older half of job_id's step records from the batch. OUT: how many and their step range. */
static int shed_job(db_batch *b, const char *job_id, int *from, int *to)
{
    int n = 0, k = 0, w = 0;
    for (int i = 0; i < b->n_events; i++)
        if (is_step_event(&b->events[i]) && !strcmp(b->events[i].job_id, job_id)) n++;
    *from = *to = -1;
    for (int i = 0; i < b->n_events; i++) {
        db_event *e = &b->events[i];
        if (k < n / 2 && is_step_event(e) && !strcmp(e->job_id, job_id)) {
            if (k == 0) *from = step_of(e);
            if (++k == n / 2) *to = step_of(e);
            free(e->message);
            free(e->data);
            continue;
        }
        b->events[w++] = *e;
    }
    b->n_events = w;
    if (*from < 0 || *to < *from) return k; /* steps unknown: the metric rows stay */
    w = 0;
    for (int i = 0; i < b->n_metrics; i++) {
        db_metric *m = &b->metrics[i];
        if (!strcmp(m->job_id, job_id) && m->step >= *from && m->step <= *to && strncmp(m->name, "valid_", 6)) continue;
        b->metrics[w++] = *m;
    }
    b->n_metrics = w;
    return k;
}

static void shed_steps(svc *s)
{
    db_batch *b = &s->batch;
    int n = 0;
    for (int i = 0; i < b->n_events; i++) n += is_step_event(&b->events[i]);
    if (n <= BATCH_MAX_STEPS) return;
    char jobs[SHED_MAX_JOBS][DB_ID_MAX];
    int nj = 0;
    for (int i = 0; i < b->n_events && nj < SHED_MAX_JOBS; i++) { /* the jobs with step records */
        if (!is_step_event(&b->events[i])) continue;
        int seen = 0;
        for (int j = 0; j < nj && !seen; j++) seen = !strcmp(jobs[j], b->events[i].job_id);
        if (!seen) snprintf(jobs[nj++], DB_ID_MAX, "%s", b->events[i].job_id);
    }
    for (int j = 0; j < nj; j++) {
        int from, to, k = shed_job(b, jobs[j], &from, &to);
        if (k == 0) continue;
        LOG(LOG_WARN, "msg=\"commits keep failing: dropped step records to bound the batch\" job=%s dropped=%d "
                      "from_step=%d to_step=%d cap=%d", jobs[j], k, from, to, BATCH_MAX_STEPS);
        svc__emit(s, jobs[j], "message", "warn",
                  json_pack("{s:i, s:i, s:i}", "dropped_steps", k, "from_step", from, "to_step", to),
                  "Progress of steps %d to %d was not recorded: the database could not commit (disk full?)",
                  from, to);
    }
}

/* Seconds since the oldest record of the batch was made (events come in time order). */
static long long batch_age(const svc *s)
{
    return s->batch.n_events ? util_now() - s->batch.events[0].created_at : 0;
}

/* Commit the batch now. On failure the batch is kept and a retry armed, so whatever failed (a full
 * disk, an I/O error) commits by itself once the cause is gone, without another request. */
int svc__flush(svc *s)
{
    if (db_batch_empty(&s->batch)) return 0;
    char err[256];
    double t0 = util_mono();
    int rc = db_batch_write(s->db, &s->batch, err, sizeof err);
    hist_observe(&s->db_write, util_mono() - t0);
    long long age = batch_age(s), every = (long long)ceil(s->cfg.flush_seconds);
    if (rc) {
        /* the first failures, then about once a minute: a long outage must not flood the log */
        if (age <= every + 1 || age / 60 != (age - every) / 60)
            LOG(LOG_ERROR, "msg=\"cannot commit progress; will retry\" err=\"%s\" held_seconds=%lld events=%d metrics=%d",
                err, age, s->batch.n_events, s->batch.n_metrics);
        shed_steps(s);
        if (!s->flush_armed && !s->stopping && !uv_is_closing((uv_handle_t *)&s->flush_timer)) {
            s->flush_armed = 1;
            uv_timer_start(&s->flush_timer, on_flush_timer, (uint64_t)(s->cfg.flush_seconds * 1000), 0);
        }
        return rc;
    }
    if (age > every + 1)
        LOG(LOG_INFO, "msg=\"progress committed again\" held_seconds=%lld events=%d metrics=%d", age,
            s->batch.n_events, s->batch.n_metrics);
    db_batch_reset(&s->batch);
    return 0;
}

static void on_flush_timer(uv_timer_t *t)
{
    svc *s = t->data;
    s->flush_armed = 0;
    /* a run that ended while commits failed left its slot unscheduled (runs.c): schedule now */
    if (svc__flush(s) == 0 && s->any_done && !s->stopping) {
        s->any_done = 0;
        svc__schedule(s);
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
    if (svc__is_final(status)) { /* announced in the same transaction as the status (webhooks.c) */
        char type[64];
        snprintf(type, sizeof type, "fine_tuning.job.%s", job_status_name(status));
        svc__webhook_enqueue(s, type, job_id, NULL);
    }
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

static int is_sweep(const char *id) { return !strncmp(id, "ftsweep-", 8); }

int svc_job_events(svc *s, const svc_caller *who, const char *id, long long after, int limit, svc_event_page *out,
                   svc_error *e)
{
    int final, rc;
    if (is_sweep(id)) {
        if ((rc = svc__sweep_visible(s, who, id, &final, e)) != 0) return rc;
        if (collect_events(s, id, after, limit, out)) return svc__storage_error(s, e);
        return 0;
    }
    db_job j;
    rc = svc__get_job(s, who, id, &j, e);
    if (rc) return rc;
    db_job_clear(&j);
    if (collect_events(s, id, after, limit, out)) return svc__storage_error(s, e);
    return 0;
}

int svc_stream_poll(svc *s, const svc_caller *who, const char *id, long long after, int limit, svc_event_page *out,
                    int *ended, svc_error *e)
{
    if (is_sweep(id)) {
        int final, rc = svc__sweep_visible(s, who, id, &final, e);
        if (rc) return rc;
        if (collect_events(s, id, after, limit, out)) return svc__storage_error(s, e);
        *ended = !out->has_more && out->n == 0 && final;
        return 0;
    }
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
