/* core/stats.c — numbers about jobs and the service: a job's metric series (from the database, then
 * the batch not yet committed, downsampled by LTTB so a long history stays a small answer) and the
 * counters /metrics shows (api/ renders them as Prometheus text). Loop thread only. */
#include "core/core_int.h"
#include "core/lttb.h"
#include "common/util.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct points { double *x, *y; int n, capx, capy; } points;
static int add_point(void *ud, int step, double v)
{
    points *p = ud;
    if (util_grow(&p->x, &p->capx, p->n + 1, sizeof *p->x) || util_grow(&p->y, &p->capy, p->n + 1, sizeof *p->y))
        return 1;
    p->x[p->n] = step;
    p->y[p->n++] = v;
    return 0;
}

typedef struct names { char (*v)[64]; int n, cap; } names;
static int add_name(void *ud, const char *name)
{
    names *l = ud;
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->v[i], name)) return 0;
    if (util_grow(&l->v, &l->cap, l->n + 1, sizeof *l->v)) return 1;
    snprintf(l->v[l->n++], sizeof *l->v, "%s", name);
    return 0;
}

void svc_metrics_free(svc_metrics *m)
{
    if (!m) return;
    for (int i = 0; i < m->n; i++) { free(m->v[i].steps); free(m->v[i].values); }
    free(m->v);
    memset(m, 0, sizeof *m);
}

/* One series: committed points after after_step, then the batch's, kept by LTTB. A series with at least as many
 * blocks of 256 steps as points asked for is read from its block summary (each block's first, lowest, highest
 * and last points): every kept point then stands for a block or more, and no block's extremes are lost, from
 * ~1/64 of the rows. Shorter series are read point by point. */
static int series_of(svc *s, const char *id, const char *name, int max_points, int after_step, svc_series *out)
{
    points p = {0};
    long long blocks = 0, total = 0;
    int rc = db_metric_blocks_count(s->db, id, name, after_step, &blocks, &total) ? -EIO : 0;
    if (rc == 0 && blocks >= max_points)
        rc = db_metric_series_blocks(s->db, id, name, after_step, add_point, &p, &total) ? -EIO : 0;
    else if (rc == 0 && (rc = db_metric_series(s->db, id, name, after_step, add_point, &p) ? -EIO : 0) == 0)
        total = p.n;
    double last = p.n ? p.x[p.n - 1] : after_step;
    for (int i = 0; rc == 0 && i < s->batch.n_metrics; i++) {
        db_metric *m = &s->batch.metrics[i];
        if (!strcmp(m->job_id, id) && !strcmp(m->name, name) && m->step > last) {
            if (add_point(&p, m->step, m->value)) rc = -ENOMEM;
            last = m->step;
            total++;
        }
    }
    size_t *keep = rc ? NULL : malloc((p.n ? (size_t)p.n : 1) * sizeof *keep);
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", name);
    out->total_points = (size_t)total;
    if (keep) {
        size_t kept = lttb(p.x, p.y, (size_t)p.n, (size_t)max_points, keep);
        out->steps = malloc((kept ? kept : 1) * sizeof *out->steps);
        out->values = malloc((kept ? kept : 1) * sizeof *out->values);
        if (out->steps && out->values) {
            for (size_t i = 0; i < kept; i++) {
                out->steps[i] = (int)p.x[keep[i]];
                out->values[i] = p.y[keep[i]];
            }
            out->n = kept;
        } else {
            rc = -ENOMEM;
        }
    } else if (!rc) {
        rc = -ENOMEM;
    }
    free(keep); free(p.x); free(p.y);
    return rc;
}

int svc_job_metrics(svc *s, const svc_caller *who, const char *id, const char *names_csv, int max_points,
                    int after_step, svc_metrics *out, svc_error *e)
{
    memset(out, 0, sizeof *out);
    db_job j;
    int rc = svc__get_job(s, who, id, &j, e);
    if (rc) return rc;
    db_job_clear(&j);
    names l = {0};
    if (names_csv && *names_csv) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", names_csv);
        char *save = NULL;
        for (char *t = strtok_r(buf, ",", &save); t && rc == 0; t = strtok_r(NULL, ",", &save))
            if (*t && add_name(&l, t)) rc = -ENOMEM;
    } else {
        if (db_metric_names(s->db, id, add_name, &l)) rc = -EIO;
        for (int i = 0; rc == 0 && i < s->batch.n_metrics; i++) /* names not yet committed */
            if (!strcmp(s->batch.metrics[i].job_id, id) && add_name(&l, s->batch.metrics[i].name)) rc = -ENOMEM;
    }
    snprintf(out->job_id, sizeof out->job_id, "%s", id);
    out->max_points = max_points;
    if (rc == 0 && l.n) {
        out->v = calloc((size_t)l.n, sizeof *out->v);
        if (!out->v) rc = -ENOMEM;
    }
    for (int i = 0; rc == 0 && i < l.n; i++) {
        rc = series_of(s, id, l.v[i], max_points, after_step, &out->v[i]);
        out->n = i + 1;            /* freed with the rest even when this one failed */
    }
    free(l.v);
    if (rc) {
        svc_metrics_free(out);
        if (rc == -ENOMEM) return svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory");
        return svc__storage_error(s, e);
    }
    return 0;
}

/* ---------------- /metrics ---------------- */

typedef struct count_ctx { svc_stats *st; int cap; } count_ctx;
static int add_count(void *ud, const char *owner, enum job_status status, long long n)
{
    count_ctx *c = ud;
    svc_stats *st = c->st;
    if (util_grow(&st->counts, &c->cap, st->n_counts + 1, sizeof *st->counts)) return 1;
    svc_job_count *k = &st->counts[st->n_counts++];
    snprintf(k->owner, sizeof k->owner, "%s", owner);
    k->status = status;
    k->n = n;
    if (status == JOB_QUEUED) st->queued += n;
    return 0;
}

void svc_stats_free(svc_stats *st)
{
    if (!st) return;
    free(st->counts);
    free(st->runs);
    memset(st, 0, sizeof *st);
}

int svc_stats_get(svc *s, const svc_caller *who, svc_stats *out, svc_error *e)
{
    memset(out, 0, sizeof *out);
    int rc = svc__need_admin(s, who, "GET /metrics", e);
    if (rc) return rc;
    count_ctx c = {out, 0};
    if (db_job_counts(s->db, add_count, &c)) { svc_stats_free(out); return svc__storage_error(s, e); }
    out->runs = calloc((size_t)s->n_runs + 1, sizeof *out->runs);
    if (!out->runs) { svc_stats_free(out); return svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory"); }
    for (run *r = s->runs; r; r = r->next) {
        svc_run_rate *x = &out->runs[out->n_runs++];
        snprintf(x->job_id, sizeof x->job_id, "%s", r->job_id);
        snprintf(x->owner, sizeof x->owner, "%s", r->owner);
        x->steps_per_s = r->steps_per_s;
        x->images_per_s = isfinite(r->images_per_s) ? r->images_per_s : 0;
        out->running_threads += r->threads;
    }
    out->running_jobs = s->n_runs;
    out->cores = s->cfg.cores;
    out->db_write = s->db_write;
    out->preemptions = s->preemptions;
    out->auth_failures = s->auth_failures;
    out->n_gpus = gpumon_read(s->gpumon, out->gpus, SVC_MAX_GPUS); /* a copy: NVML is not called here */
    out->reclaimed_bytes = s->reclaimed_bytes;
    out->disk_free_bytes = svc__disk_free(s, NULL);
    return 0;
}
