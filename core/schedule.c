/* core/schedule.c — the scheduler's glue: builds the snapshot the pure policy (core/sched_policy.h)
 * decides on (queued jobs from the database, runs from memory), applies its decision (start, preempt),
 * keeps the per-user quotas and the fair-share bookkeeping (decayed recent starts), and caches queue
 * positions and estimated starts. Runs after every create/resume/finish and, while a job waits, every
 * second (preemption depends on time). Loop thread only. */
#include "core/core_int.h"
#include "core/sched_policy.h"
#include "common/log.h"
#include "common/util.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECENT_TAU 600.0           /* seconds: the time constant of the recent-starts score */

svc_quota svc__quota_of(svc *s, const char *owner)
{
    svc_quota q = s->cfg.quota;
    for (int i = 0; i < s->cfg.n_user_quotas; i++) {
        const svc_user_quota *u = &s->cfg.user_quotas[i];
        if (!owner || strcmp(u->name, owner)) continue;
        if (u->q.running_jobs >= 0) q.running_jobs = u->q.running_jobs;
        if (u->q.queued_jobs >= 0) q.queued_jobs = u->q.queued_jobs;
        if (u->q.threads >= 0) q.threads = u->q.threads;
        if (u->q.upload_bytes >= 0) q.upload_bytes = u->q.upload_bytes;
        if (u->q.disk_bytes >= 0) q.disk_bytes = u->q.disk_bytes;
    }
    return q;
}

/* 429 naming the limit */
int svc__over_quota(svc_error *e, const char *limit, long long value, const char *fmt, ...)
{
    char why[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return svc_fail(e, SVC_EQUOTA, "quota_exceeded", NULL, "quota exceeded: %s (limit %lld): %s", limit, value, why);
}

int svc__check_queued_quota(svc *s, const char *owner, svc_error *e)
{
    svc_quota q = svc__quota_of(s, owner);
    int n = 0;
    if (q.queued_jobs <= 0) return 0;
    if (db_job_count(s->db, owner, JOB_QUEUED, &n) != 0) return svc__storage_error(s, e);
    if (n >= q.queued_jobs)
        return svc__over_quota(e, "queued_jobs", q.queued_jobs,
                               "%s has %d jobs queued; wait for some to start or cancel one", owner, n);
    return 0;
}

static void sched_quota_cb(void *ud, const char *owner, sched_quota *out)
{
    svc_quota q = svc__quota_of(ud, owner);
    out->running_jobs = q.running_jobs;
    out->threads = q.threads;
}

static struct recent *recent_entry(svc *s, const char *owner, int create)
{
    for (int i = 0; i < s->n_recent; i++)
        if (!strcmp(s->recent[i].name, owner)) return &s->recent[i];
    if (!create || util_grow(&s->recent, &s->cap_recent, s->n_recent + 1, sizeof *s->recent)) return NULL;
    struct recent *r = &s->recent[s->n_recent++];
    snprintf(r->name, sizeof r->name, "%s", owner);
    r->score = 0;
    r->at = util_mono();
    return r;
}

static double sched_recent_cb(void *ud, const char *owner)
{
    struct recent *r = recent_entry(ud, owner, 0);
    return r ? r->score * exp(-(util_mono() - r->at) / RECENT_TAU) : 0;
}

void svc__note_start(svc *s, const char *owner)
{
    struct recent *r = recent_entry(s, owner, 1);
    if (!r) return;
    double t = util_mono();
    r->score = r->score * exp(-(t - r->at) / RECENT_TAU) + 1;
    r->at = t;
}

typedef struct snapshot {
    db_queued *q;
    sched_job *jobs;
    int nj, capj;
    sched_run *runs;
    run **run_of;
    double *finish;
    int nr;
} snapshot;

static int snap_add(void *ud, const db_queued *q)
{
    snapshot *sn = ud;
    if (util_grow(&sn->q, &sn->capj, sn->nj + 1, sizeof *sn->q)) return 1;
    sn->q[sn->nj++] = *q;
    return 0;
}

static void snapshot_free(snapshot *sn)
{
    free(sn->q); free(sn->jobs); free(sn->runs); free(sn->run_of); free(sn->finish);
    memset(sn, 0, sizeof *sn);
}

static int snapshot_take(svc *s, snapshot *sn, sched_cfg *c)
{
    memset(sn, 0, sizeof *sn);
    if (db_job_queue(s->db, snap_add, sn) != 0) goto fail;
    sn->jobs = calloc((size_t)sn->nj + 1, sizeof *sn->jobs);
    sn->runs = calloc((size_t)s->n_runs + 1, sizeof *sn->runs);
    sn->run_of = calloc((size_t)s->n_runs + 1, sizeof *sn->run_of);
    sn->finish = calloc((size_t)s->n_runs + 1, sizeof *sn->finish);
    if (!sn->jobs || !sn->runs || !sn->run_of || !sn->finish) goto fail;
    for (int i = 0; i < sn->nj; i++) {
        db_queued *q = &sn->q[i];
        int dev = TR_DEVICE_CPU;
        /* checked at create; were it bad, the start re-parses the body and fails the job with the reason */
        if (jobspec_device_parse(q->device, &dev) != 0) dev = TR_DEVICE_CPU;
        sn->jobs[i] = (sched_job){.id = q->id, .owner = q->owner, .priority = q->priority,
                                  .threads = q->threads > 0 ? q->threads : 1, .preempted = q->preempted,
                                  .seq = q->seq, .blocked = svc__find_run(s, q->id) != NULL,
                                  .device = dev == TR_DEVICE_ANY ? SCHED_GPU_ANY : dev};
    }
    double now = util_mono();
    for (run *r = s->runs; r; r = r->next) {
        sn->run_of[sn->nr] = r;
        sn->finish[sn->nr] = isfinite(r->eta_seconds) && r->eta_seconds > 0 ? now + r->eta_seconds : 0;
        sn->runs[sn->nr++] = (sched_run){.id = r->job_id, .owner = r->owner, .priority = r->priority,
                                          .threads = r->threads, .started_at = r->started_at,
                                          .stopping = r->stop != TR_RUN, .preempting = r->preempting,
                                          .gpu = r->gpu};
    }
    /* GPUs are ours to hand out only when we run the jobs (Slurm's --gres gives them there) */
    *c = (sched_cfg){.cores = s->cfg.cores, .workers = s->cfg.workers, .preemption = s->cfg.preemption,
                     .grace = s->cfg.preempt_grace, .manage_gpus = !s->exec->ops->queues, .gpus = s->cfg.gpus,
                     .ngpus = s->cfg.n_gpus, .quota = sched_quota_cb, .recent = sched_recent_cb, .ud = s};
    return 0;
fail:
    snapshot_free(sn);
    return -ENOMEM;
}

static int order_cmp(const void *a, const void *b)
{
    return strcmp(((const struct order *)a)->id, ((const struct order *)b)->id);
}

static void compute_order(svc *s)
{
    snapshot sn;
    sched_cfg c;
    s->n_order = 0;
    if (snapshot_take(s, &sn, &c) != 0) return;
    int *p = calloc((size_t)sn.nj + 1, sizeof *p);
    double *e = calloc((size_t)sn.nj + 1, sizeof *e);
    double mean = 0, now = util_mono();
    if (db_job_mean_duration(s->db, &mean) != 0) mean = 0; /* estimates only: unknown, not an error */
    if (p && e && util_grow(&s->order, &s->cap_order, sn.nj + 1, sizeof *s->order) == 0) {
        sched_order(&c, sn.jobs, sn.nj, sn.runs, sn.nr, sn.finish, now, mean, p, e);
        for (int i = 0; i < sn.nj; i++) {
            snprintf(s->order[i].id, sizeof s->order[i].id, "%s", sn.jobs[i].id);
            s->order[i].pos = p[i];
            s->order[i].est = e[i] > 0 ? (double)util_now() + (e[i] - now) : 0;
        }
        s->n_order = sn.nj;
        qsort(s->order, (size_t)s->n_order, sizeof *s->order, order_cmp); /* by id: a page looks up each job */
        s->order_valid = 1;
    }
    free(p);
    free(e);
    snapshot_free(&sn);
}

/* Queue position (1 = next) and estimated start (unix seconds, 0 = unknown) of a queued job. */
void svc__queue_place(svc *s, const char *id, int *pos, long long *est)
{
    *pos = 0;
    *est = 0;
    if (!s->order_valid) compute_order(s);
    struct order key;
    snprintf(key.id, sizeof key.id, "%s", id);
    const struct order *o = s->n_order ? bsearch(&key, s->order, (size_t)s->n_order, sizeof *s->order, order_cmp) : NULL;
    if (o) { *pos = o->pos; *est = (long long)ceil(o->est); }
}

/* Ask a running job to checkpoint and leave; its done record requeues it at the front of its owner's queue. */
static void preempt(svc *s, run *r, const char *for_job, const char *for_user)
{
    if (r->stop != TR_RUN) return;
    svc__stop_run(s, r, TR_STOP_CHECKPOINT);
    r->preempting = 1;
    s->preemptions++;
    svc__emit(s, r->job_id, "message", "info", json_pack("{s:s, s:s}", "preempted_for", for_job, "user", for_user),
              "Preempting: checkpointing to make room for a job of %s; it resumes from the checkpoint", for_user);
    LOG(LOG_INFO, "msg=\"preempting job\" job=%s user=%s for_job=%s for_user=%s", r->job_id, r->owner, for_job,
        for_user);
}

/* Start what the policy says, one job at a time, until nothing more fits; maybe preempt. */
/* Below --min-free-mb no queued job starts (a start writes its checkpoints): the timer looks again. */
static int disk_hold(svc *s)
{
    if (s->cfg.min_free_bytes <= 0) return 0;
    long long avail = svc__disk_free(s, NULL);
    int low = avail >= 0 && avail < s->cfg.min_free_bytes;
    if (low && !s->disk_hold)
        LOG(LOG_WARN, "msg=\"low disk: queued jobs wait\" free_bytes=%lld min_free_bytes=%lld", avail, s->cfg.min_free_bytes);
    else if (!low && s->disk_hold)
        LOG(LOG_INFO, "msg=\"disk has room again: the queue moves\" free_bytes=%lld", avail);
    s->disk_hold = low;
    return low;
}

void svc__schedule(svc *s)
{
    s->sched_waiting = 0;
    if (disk_hold(s)) return;
    for (int guard = 0; guard < 256 && !s->stopping; guard++) {
        snapshot sn;
        sched_cfg c;
        if (snapshot_take(s, &sn, &c) != 0) {
            LOG(LOG_ERROR, "msg=\"cannot read the queue\" err=\"%s\"", db_errmsg(s->db));
            return;
        }
        sched_decision d;
        sched_pick(&c, sn.jobs, sn.nj, sn.runs, sn.nr, util_mono(), &d);
        if (d.start >= 0) {
            char id[DB_ID_MAX];
            snprintf(id, sizeof id, "%s", sn.jobs[d.start].id);
            snapshot_free(&sn);
            svc__start_job(s, id, d.gpu);
            continue;
        }
        if (d.preempt >= 0 && d.waiting >= 0)
            preempt(s, sn.run_of[d.preempt], sn.jobs[d.waiting].id, sn.jobs[d.waiting].owner);
        s->sched_waiting = d.waiting >= 0 && s->cfg.preemption;
        snapshot_free(&sn);
        return;
    }
}

/* While a job waits, preemption depends on time (the grace period): look again every second. */
static void on_sched_timer(uv_timer_t *t)
{
    svc *s = t->data;
    if ((s->sched_waiting || s->disk_hold) && !s->stopping) svc__schedule(s);
    if (s->sweeps_waiting && !s->stopping) svc__sweeps_advance(s); /* a trial waited for quota room */
    svc__retention(s, 0);
}

int svc__schedule_init(svc *s)
{
    int rc = uv_timer_init(s->loop, &s->sched_timer);
    s->sched_timer.data = s;
    if (rc == 0) rc = uv_timer_start(&s->sched_timer, on_sched_timer, 1000, 1000);
    return rc;
}

void svc__schedule_close(svc *s, uv_close_cb cb)
{
    uv_timer_stop(&s->sched_timer);
    uv_close((uv_handle_t *)&s->sched_timer, cb);
}
