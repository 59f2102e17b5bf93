/* core/runs.c — a job's run, from the core's side: start it through the executor (core/executor.h)
 * from its spec and job directory, ask it to stop, and turn the records the executor delivers
 * (progress, checkpoints, done) into the job's progress row, metrics, events and final status.
 * Loop thread only: the executor calls the sink there. */
#include "core/core_int.h"
#include "common/log.h"
#include "common/util.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *jreal(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static void run_free(run *r)
{
    if (!r) return;
    json_decref(r->latest);
    json_decref(r->exec_rec);
    free(r);
}

static void fail_job_now(svc *s, const char *id, const char *code, const char *message, const char *param)
{
    db_status *c = svc__status_change(s, id, JOB_FAILED);
    if (c) {
        c->finished_at = util_now();
        svc__set_error(c, code, message, param);
    }
    svc__emit(s, id, "error", "error", json_pack("{s:s, s:s}", "code", code, "message", message), "Job failed: %s",
              message);
    svc__emit(s, id, "status", "info", json_pack("{s:s}", "status", job_status_name(JOB_FAILED)), "Job failed");
    svc__flush(s);
}

/* The stored body as a spec and resources again (names resolved now: a file may have gone since the job
 * was made). */
static int spec_of(svc *s, const db_job *j, tr_spec *spec, jobspec_resources *res, char *param, size_t paramlen,
                   char *err, size_t errlen)
{
    svc_error e;
    int prio;
    json_t *full = json_loads(j->body, 0, NULL);
    json_t *body = full ? svc__split_priority(full, &prio, &e) : NULL;
    json_decref(full);
    if (!body) {
        snprintf(param, paramlen, "%s", "");
        snprintf(err, errlen, "the stored job body cannot be read");
        return -EINVAL;
    }
    svc__resolve_ctx rctx = {s, j->owner, j->owner[0] == 0};
    int rc = jobspec_parse(body, svc__resolve, &rctx, spec, param, paramlen, err, errlen);
    if (rc == 0) rc = jobspec_resources_parse(body, res, param, paramlen, err, errlen);
    json_decref(body);
    return rc;
}

/* The core's run of job j (not linked yet) and the spec to run it with. OUT *resume: the job directory
 * holds a checkpoint. NULL with param/err filled when the spec no longer resolves. */
static run *run_new(svc *s, const db_job *j, tr_spec *spec, jobspec_resources *res, int *resume, char *param,
                    size_t paramlen, char *err, size_t errlen)
{
    run *r = calloc(1, sizeof *r);
    if (!r) { snprintf(param, paramlen, "%s", ""); snprintf(err, errlen, "out of memory"); return NULL; }
    if (spec_of(s, j, spec, res, param, paramlen, err, errlen) != 0) { free(r); return NULL; }
    snprintf(r->job_id, sizeof r->job_id, "%.47s", j->id);
    snprintf(r->owner, sizeof r->owner, "%s", j->owner);
    snprintf(r->arch, sizeof r->arch, "%s", spec->arch);
    r->priority = j->priority;
    r->gpu = -1;
    spec->seed = (uint64_t)j->seed;
    /* resources.cpus is what the executor gives (jobspec_parse set threads to it; check() vetted it) */
    if (res->cpus <= 0 && (spec->threads <= 0 || spec->threads > s->cfg.threads_per_job))
        spec->threads = s->cfg.threads_per_job;
    spec->checkpoint_seconds = s->cfg.checkpoint_seconds;
    r->threads = spec->threads;
    r->started_at = util_mono();
    snprintf(r->out_dir, sizeof r->out_dir, "%.900s/%.47s", s->cfg.jobs_dir, j->id);
    char state[TR_PATH_MAX + 32];
    snprintf(state, sizeof state, "%s/state.safetensors", r->out_dir);
    *resume = svc__file_exists(state);
    r->step = *resume ? j->step : 0;
    r->total_steps = j->total_steps;
    r->epoch = j->epoch;
    r->epochs = j->epochs;
    r->eta_seconds = NAN;
    r->best_acc = j->best_valid_accuracy;
    r->final_acc = j->final_valid_accuracy;
    r->latest = json_object();
    r->stop = TR_RUN;
    r->resumed = *resume;
    return r;
}

static void run_link(svc *s, run *r)
{
    r->next = s->runs;
    s->runs = r;
    s->n_runs++;
    s->order_valid = 0;
}

static void run_unlink(svc *s, run *r)
{
    for (run **pp = &s->runs; *pp; pp = &(*pp)->next)
        if (*pp == r) { *pp = r->next; break; }
    s->n_runs--;
    s->order_valid = 0;
}

static void emit_running(svc *s, run *r, long long started_at)
{
    db_status *c = svc__status_change(s, r->job_id, JOB_RUNNING);
    if (c && started_at <= 0) c->started_at = util_now();
    svc__emit(s, r->job_id, "status", "info",
              json_pack("{s:s, s:b}", "status", job_status_name(JOB_RUNNING), "resumed", r->resumed),
              r->resumed ? "Job resumed from its last checkpoint" : "Job started");
}

void svc__start_job(svc *s, const char *id, int gpu)
{
    db_job j;
    svc_error e;
    if (svc__get_job(s, NULL, id, &j, &e)) return;
    tr_spec spec;
    jobspec_resources res;
    char param[128] = "", err[512];
    int resume, rc;
    run *r = run_new(s, &j, &spec, &res, &resume, param, sizeof param, err, sizeof err);
    if (r && !s->exec->ops->queues && spec.device != TR_DEVICE_CPU && gpu < 0) {
        char dev[16];
        jobspec_device_name(spec.device, dev, sizeof dev);
        snprintf(param, sizeof param, "device");
        snprintf(err, sizeof err, "device %s is not one of this daemon's GPUs (--gpus changed since the job was "
                                  "queued)", dev);
        run_free(r);
        r = NULL;
    } else if (r && !s->exec->ops->queues) { /* the trainer trains on the GPU the scheduler gave */
        r->assigned = 1;
        r->gpu = spec.device == TR_DEVICE_CPU ? -1 : gpu;
        if (r->gpu >= 0) spec.device = r->gpu;
    }
    exec_job x = {id, j.owner, &spec, &res, r ? r->out_dir : NULL, resume, NULL};
    if (!r) {
        LOG(LOG_WARN, "msg=\"job cannot start\" job=%s err=\"%s\"", id, err);
        fail_job_now(s, id, "invalid_spec", err, param);
    } else if ((rc = svc__mkdir_p(r->out_dir)) != 0) {
        snprintf(err, sizeof err, "cannot create %.400s: %s", r->out_dir, strerror(-rc));
        fail_job_now(s, id, rc == -ENOSPC || rc == -EDQUOT ? "insufficient_storage" : "storage_error", err, NULL);
    } else if (run_link(s, r), s->exec->ops->start(s->exec, &x, err, sizeof err) != 0) {
        run_unlink(s, r); /* linked first: the executor may report its record from inside start */
        fail_job_now(s, id, "internal_error", err, NULL);
    } else {
        if (!s->exec->ops->queues) emit_running(s, r, j.started_at); /* else when the executor says so */
        svc__flush(s);
        svc__note_start(s, r->owner);
        char dev[16];
        jobspec_device_name(spec.device, dev, sizeof dev);
        LOG(LOG_INFO, "msg=\"job started\" job=%s user=%s priority=%d resume=%d threads=%d executor=%s device=%s", id,
            r->owner, r->priority, resume, r->threads, s->exec->ops->name, dev);
        r = NULL; /* owned by the list */
    }
    run_free(r);
    db_job_clear(&j);
}

/* A job whose run the previous daemon left alive (a live executor record, or `running` under an executor
 * whose runs die with the daemon): if the executor still knows it, follow it again, and repeat what the
 * job's status asks of it (a pause or a cancel the old daemon may not have delivered). */
int svc__adopt_run(svc *s, const char *id)
{
    db_job j;
    svc_error e;
    int rc = svc__get_job(s, NULL, id, &j, &e);
    if (rc) return -ENOENT;
    tr_spec spec;
    jobspec_resources res;
    char param[128], err[512];
    int resume;
    json_t *rec = j.executor ? json_loads(j.executor, 0, NULL) : NULL;
    run *r = run_new(s, &j, &spec, &res, &resume, param, sizeof param, err, sizeof err);
    if (r) {
        r->exec_rec = rec;
        rec = NULL;
        r->exec_running = j.status == JOB_RUNNING;
        run_link(s, r);
        exec_job x = {id, j.owner, &spec, &res, r->out_dir, resume, r->exec_rec};
        rc = s->exec->ops->reattach(s->exec, &x);
        if (rc != 0) run_unlink(s, r);
    } else {
        rc = -ENOENT;
    }
    if (rc == 0) {
        LOG(LOG_INFO, "msg=\"re-attached after restart\" job=%s status=%s executor=%s", id, job_status_name(j.status),
            s->exec->ops->name);
        if (j.status == JOB_CANCELLED || svc__is_final(j.status)) svc__stop_run(s, r, TR_STOP_CANCEL);
        else if (j.status == JOB_PAUSED) svc__stop_run(s, r, TR_STOP_CHECKPOINT);
        r = NULL;
    }
    json_decref(rec);
    run_free(r);
    db_job_clear(&j);
    return rc;
}

void svc__runs_free(svc *s)
{
    while (s->runs) { run *r = s->runs; s->runs = r->next; run_free(r); }
    s->n_runs = 0;
}

void svc__stop_run(svc *s, run *r, enum tr_stop mode)
{
    if (mode <= r->stop) return; /* only upwards: a pause never downgrades a cancel */
    r->stop = mode;
    s->exec->ops->stop(s->exec, r->job_id, mode);
}

/* ---------------- records from the executor ---------------- */

static void metric(svc *s, run *r, int step, const char *name, double v)
{
    db_metric *m = db_batch_metric(&s->batch);
    if (m) {
        snprintf(m->job_id, sizeof m->job_id, "%s", r->job_id);
        m->step = step;
        m->name = name;
        m->value = v;
    }
    json_object_set_new(r->latest, name, jreal(v));
}

static void progress_row(svc *s, run *r)
{
    db_progress *p = db_batch_progress(&s->batch, r->job_id);
    if (!p) return;
    p->step = r->step;
    p->total_steps = r->total_steps;
    p->epoch = r->epoch;
    p->epochs = r->epochs;
    p->eta_seconds = r->eta_seconds;
    p->best_valid_accuracy = r->best_acc;
    p->final_valid_accuracy = r->final_acc;
    p->at = util_now();
    free(p->metrics);
    p->metrics = json_dumps(r->latest, JSON_COMPACT);
}

static void on_step(svc *s, run *r, const tr_progress *p)
{
    double t = util_mono();
    if (r->rate_t <= 0) { r->rate_t = t; r->rate_step = p->step; }
    else if (t - r->rate_t >= 1.0 && p->step > r->rate_step) {
        r->steps_per_s = (p->step - r->rate_step) / (t - r->rate_t);
        r->rate_t = t;
        r->rate_step = p->step;
    }
    r->images_per_s = p->images_per_second;
    r->eta_seconds = p->eta_seconds;
    json_object_set_new(r->latest, "step", json_integer(p->step));
    metric(s, r, p->step, "train_loss", p->train_loss);
    metric(s, r, p->step, "ce_loss", p->ce_loss);
    metric(s, r, p->step, "contrastive_loss", p->contrastive_loss);
    metric(s, r, p->step, "lr", p->lr);
    metric(s, r, p->step, "images_per_second", p->images_per_second);
    svc__emit(s, r->job_id, "metrics", "info",
              json_pack("{s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:o}", "step", p->step, "total_steps", p->total_steps,
                        "epoch", p->epoch, "train_loss", jreal(p->train_loss), "ce_loss", jreal(p->ce_loss),
                        "contrastive_loss", jreal(p->contrastive_loss), "lr", jreal(p->lr), "images_per_second",
                        jreal(p->images_per_second)),
              "Step %d/%d: training loss=%.4f", p->step, p->total_steps, p->train_loss);
}

static void on_epoch(svc *s, run *r, const tr_progress *p)
{
    if (!isfinite(r->best_acc) || p->valid_accuracy > r->best_acc) r->best_acc = p->valid_accuracy;
    r->final_acc = p->valid_accuracy;
    metric(s, r, p->step, "valid_loss", p->valid_loss);
    metric(s, r, p->step, "valid_accuracy", p->valid_accuracy);
    svc__emit(s, r->job_id, "validation", "info",
              json_pack("{s:i, s:i, s:i, s:o, s:o}", "step", p->step, "epoch", p->epoch, "epochs", p->epochs,
                        "valid_loss", jreal(p->valid_loss), "valid_accuracy", jreal(p->valid_accuracy)),
              "Epoch %d/%d: validation loss=%.4f accuracy=%.4f", p->epoch, p->epochs, p->valid_loss, p->valid_accuracy);
}

static void on_checkpoint(svc *s, run *r, const tr_progress *p)
{
    db_checkpoint *c = db_batch_checkpoint(&s->batch);
    if (c) {
        snprintf(c->job_id, sizeof c->job_id, "%s", r->job_id);
        c->step = p->step;
        c->epoch = p->epoch;
        c->path = strdup(p->checkpoint_path ? p->checkpoint_path : "");
        c->metrics = json_dumps(r->latest, JSON_COMPACT);
        c->created_at = util_now();
    }
    svc__emit(s, r->job_id, "checkpoint", "info", json_pack("{s:i, s:i}", "step", p->step, "epoch", p->epoch),
              "Checkpoint written at step %d", p->step);
    s->flush_now = 1; /* the state file is on disk: record it (and the steps before it) now */
}

static void sink_progress(void *ud, const char *job_id, const tr_progress *p)
{
    svc *s = ud;
    run *r = svc__find_run(s, job_id);
    if (!r) return;
    r->step = p->step;
    r->total_steps = p->total_steps;
    r->epoch = p->epoch;
    r->epochs = p->epochs;
    switch (p->kind) {
    case TR_EV_STEP: on_step(s, r, p); break;
    case TR_EV_EPOCH: on_epoch(s, r, p); break;
    case TR_EV_CHECKPOINT: on_checkpoint(s, r, p); break;
    }
    progress_row(s, r);
}

/* Where the executor has the run: the record goes into the job row with the progress it describes (one
 * transaction), and a queueing executor's word moves the job between queued and running. */
static int sink_state(void *ud, const char *job_id, const exec_state *st)
{
    svc *s = ud;
    run *r = svc__find_run(s, job_id);
    if (!r) return 0;
    if (st->record && st->record != r->exec_rec) {
        json_decref(r->exec_rec);
        r->exec_rec = json_deep_copy(st->record);
    }
    db_exec *x = db_batch_exec(&s->batch, job_id);
    if (x && r->exec_rec) {
        free(x->record);
        x->record = json_dumps(r->exec_rec, JSON_COMPACT);
        x->live = 1;
    }
    snprintf(r->exec_reason, sizeof r->exec_reason, "%s", st->reason ? st->reason : "");
    r->exec_estimated_start = st->estimated_start;
    s->order_valid = 0;
    if (st->message)
        svc__emit(s, job_id, "message", "info", json_deep_copy(st->record), "%s", st->message);
    db_job j;
    svc_error e;
    if (st->running != r->exec_running && svc__get_job(s, NULL, job_id, &j, &e) == 0) {
        r->exec_running = st->running;
        if (st->running && j.status == JOB_QUEUED) {
            emit_running(s, r, j.started_at);
        } else if (!st->running && st->requeued && j.status == JOB_RUNNING) {
            db_status *c = svc__status_change(s, job_id, JOB_QUEUED);
            if (c) c->preempted = 1;
            r->resumed = 1; /* it continues from its checkpoint when it runs again */
            svc__emit(s, job_id, "status", "info",
                      json_pack("{s:s, s:i, s:b, s:s?}", "status", job_status_name(JOB_QUEUED), "step", r->step,
                                "preempted", 1, "reason", st->reason),
                      "Preempted by %s%s%s: requeued, it continues from its last checkpoint", s->exec->ops->name,
                      st->reason ? " " : "", st->reason ? st->reason : "");
        }
        db_job_clear(&j);
    }
    if (st->durable) return svc__flush(s);
    svc__flush_later(s);
    return 0;
}

/* A run stopped at a step boundary: which of pause, preemption or shutdown asked it to. */
static void on_stopped(svc *s, run *r, const db_job *j, const exec_done *d)
{
    const char *id = r->job_id;
    if (j->status == JOB_PAUSED) {
        svc__emit(s, id, "status", "info", json_pack("{s:s, s:i}", "status", job_status_name(JOB_PAUSED), "step", d->res.steps_done),
                  "Job paused at step %d; checkpoint written", d->res.steps_done);
    } else if (j->status == JOB_RUNNING && r->preempting && !s->stopping) {
        db_status *c = svc__status_change(s, id, JOB_QUEUED);
        if (c) c->preempted = 1;
        svc__emit(s, id, "status", "info",
                  json_pack("{s:s, s:i, s:b}", "status", job_status_name(JOB_QUEUED), "step", d->res.steps_done, "preempted", 1),
                  "Preempted: checkpointed at step %d and requeued at the front of its user's queue",
                  d->res.steps_done);
    } else if (j->status == JOB_RUNNING) { /* daemon shutdown */
        svc__status_change(s, id, JOB_QUEUED);
        svc__emit(s, id, "status", "info", json_pack("{s:s, s:i}", "status", job_status_name(JOB_QUEUED), "step", d->res.steps_done),
                  "Daemon stopping: checkpointed at step %d, the job resumes on restart", d->res.steps_done);
    } /* queued: resumed while stopping; the scheduler picks it up again */
}

static void on_succeeded(svc *s, run *r, const db_job *j, const exec_done *d)
{
    const char *id = r->job_id;
    char model[320], path[sizeof ((db_model *)0)->path];
    svc__fine_tuned_name(j, r->arch, model, sizeof model);
    snprintf(path, sizeof path, "%.990s/final.safetensors", r->out_dir);
    db_status *c = svc__status_change(s, id, JOB_SUCCEEDED);
    if (c) {
        c->finished_at = util_now();
        c->fine_tuned_model = strdup(model);
    }
    db_model *m = db_batch_model(&s->batch); /* a succeeded job yields a model, in the same transaction */
    if (m) {
        snprintf(m->id, sizeof m->id, "%s", model);
        snprintf(m->job_id, sizeof m->job_id, "%s", id);
        snprintf(m->arch, sizeof m->arch, "%s", r->arch);
        snprintf(m->path, sizeof m->path, "%s", path);
        m->created_at = util_now();
        snprintf(m->owner, sizeof m->owner, "%s", j->owner);
    }
    if (d->res.epochs_done > 0) {
        r->best_acc = d->res.best_valid_accuracy;
        r->final_acc = d->res.final_valid_accuracy;
    }
    progress_row(s, r);
    /* A pause (or a pause and a resume) that came during the last step: the trainer had nothing left to
     * checkpoint for and finished. The work is done, so the job succeeds from paused/queued; the event says so. */
    json_t *data = json_pack("{s:s, s:s, s:o, s:o}", "status", job_status_name(JOB_SUCCEEDED), "fine_tuned_model", model,
                             "best_valid_accuracy", jreal(r->best_acc), "final_valid_accuracy", jreal(r->final_acc));
    int late = j->status != JOB_RUNNING;
    if (late && data) json_object_set_new(data, "finished_before_stop", json_true());
    if (d->res.early_stopped && data) { /* the model is the best validated one, of epoch best_epoch */
        json_object_set_new(data, "early_stopped", json_true());
        json_object_set_new(data, "best_epoch", json_integer(d->res.best_epoch));
    }
    svc__emit(s, id, "status", "info", data, "Job succeeded: %s%s%s", model,
              late ? " (it finished its last step before the pause took effect)" : "",
              d->res.early_stopped ? " (early stopping: the model is the best validated one)" : "");
    LOG(LOG_INFO, "msg=\"job succeeded\" job=%s model=%s", id, model);
}

static void sink_done(void *ud, const char *job_id, const exec_done *d)
{
    svc *s = ud;
    run *r = svc__find_run(s, job_id);
    if (!r) return;
    run_unlink(s, r);
    s->any_done = 1;
    s->retention_at = 0; /* the next tick applies retention to the job that ended */
    db_exec *x = r->exec_rec ? db_batch_exec(&s->batch, job_id) : NULL;
    if (x) { /* the run is over: nothing to re-attach to after a restart */
        free(x->record);
        x->record = json_dumps(r->exec_rec, JSON_COMPACT);
        x->live = 0;
    }
    db_job j;
    svc_error e;
    if (svc__get_job(s, NULL, r->job_id, &j, &e) != 0) { run_free(r); return; }
    const char *id = r->job_id;
    if (j.status == JOB_CANCELLED || r->stop == TR_STOP_CANCEL) {
        svc__emit(s, id, "message", "info", json_pack("{s:i}", "step", r->step), "Training stopped at step %d", r->step);
    } else if (d->rc != 0) {
        /* a checkpoint the disk had no room for: the trainer's write went to a temporary file, now
         * removed, so the last good state.safetensors is untouched; the code says what to fix */
        const char *code = d->code                                 ? d->code
                           : d->rc == -ENOSPC || d->rc == -EDQUOT ? "insufficient_storage"
                                                                  : "training_failed";
        db_status *c = svc__status_change(s, id, JOB_FAILED);
        if (c) { c->finished_at = util_now(); svc__set_error(c, code, d->err, NULL); }
        svc__emit(s, id, "error", "error", json_pack("{s:s, s:s}", "code", code, "message", d->err),
                  "Training failed: %s", d->err);
        svc__emit(s, id, "status", "info", json_pack("{s:s}", "status", job_status_name(JOB_FAILED)), "Job failed");
        LOG(LOG_WARN, "msg=\"job failed\" job=%s err=\"%s\"", id, d->err);
    } else if (d->res.stopped) {
        on_stopped(s, r, &j, d);
    } else {
        on_succeeded(s, r, &j, d);
    }
    db_job_clear(&j);
    svc__flush(s);
    char done_id[DB_ID_MAX];
    snprintf(done_id, sizeof done_id, "%s", id);
    run_free(r);
    svc__notify(s, done_id); /* streams of a finished job can end now */
}

static void sink_drained(void *ud)
{
    svc *s = ud;
    if (s->flush_now) {
        s->flush_now = 0;
        svc__flush(s);
    }
    svc__flush_later(s);
    if (s->any_done) {
        /* While the batch cannot be committed (a full disk) no job starts: it would only fail at its
         * first checkpoint. any_done stays set and the flush retry schedules once a commit succeeds
         * (events.c); the scheduler's timer waits too. */
        if (svc__flush(s) == 0 || s->stopping) {
            s->any_done = 0;
            svc__schedule(s);
            svc__sweeps_advance(s); /* a trial may have ended: the next one, or the sweep's end */
        } else {
            s->sched_waiting = 0;
        }
        svc__finish_shutdown(s);
    }
}

const exec_sink svc__sink = {sink_progress, sink_state, sink_done, sink_drained, NULL};
