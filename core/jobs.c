/* core/jobs.c — the job life cycle as callers drive it: create (validation through the job spec,
 * quotas, idempotency), list, get, cancel, pause, resume, and the job view (the row with the live
 * progress of its run and its queue place laid over it). The states and their transitions are drawn in
 * core_int.h. Loop thread only; every answer a client gets is committed first. With the disk full
 * (storage says -ENOSPC) a create answers 507 with nothing stored; a cancel, pause or resume answers
 * 507 too, and its change stays in the batch that svc__flush retries. */
#include "core/core_int.h"
#include "core/auth.h"
#include "common/log.h"
#include "common/util.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int svc__get_job(svc *s, const svc_caller *who, const char *id, db_job *j, svc_error *e)
{
    char q[201];                   /* a client's string, quoted in a message */
    int rc = db_job_get(s->db, id, j);
    if (rc == 0 && who && !who->admin && strcmp(j->owner, who->name) != 0) {
        svc_audit(s, who, NULL, "authz_denied", id, "denied", "a job of another user");
        db_job_clear(j);
        rc = -ENOENT;
    }
    if (rc == -ENOENT) return svc_fail(e, SVC_ENOTFOUND, "job_not_found", "id", "no fine-tuning job '%s'", util_quote(q, sizeof q, id));
    if (rc) return svc__storage_error(s, e);
    return 0;
}

void svc_job_clear(svc_job *j)
{
    if (!j) return;
    db_job_clear(&j->row);
    memset(j, 0, sizeof *j);
}

void svc_job_page_free(svc_job_page *p)
{
    if (!p) return;
    for (int i = 0; i < p->n; i++) svc_job_clear(&p->v[i]);
    free(p->v);
    memset(p, 0, sizeof *p);
}

/* Takes ownership of *row (left zeroed). The database is up to one flush behind a running job. */
static int job_view(svc *s, db_job *row, svc_job *out)
{
    memset(out, 0, sizeof *out);
    out->row = *row;
    memset(row, 0, sizeof *row);
    db_job *j = &out->row;
    long long eta_from = j->progress_at;
    run *r = svc__find_run(s, j->id);
    if (r && r->assigned && j->status == JOB_RUNNING)
        jobspec_device_name(r->gpu >= 0 ? r->gpu : TR_DEVICE_CPU, out->assigned_device, sizeof out->assigned_device);
    if (r && r->step > 0) {
        char *live = json_dumps(r->latest, JSON_COMPACT);
        if (!live) return -ENOMEM;
        free(j->metrics);
        j->metrics = live;
        j->step = r->step; j->total_steps = r->total_steps; j->epoch = r->epoch; j->epochs = r->epochs;
        j->eta_seconds = r->eta_seconds;
        eta_from = util_now();
        if (isfinite(r->best_acc)) j->best_valid_accuracy = r->best_acc;
        if (isfinite(r->final_acc)) j->final_valid_accuracy = r->final_acc;
    }
    if (r && r->exec_rec) { /* the executor's latest word is ahead of the row too */
        char *rec = json_dumps(r->exec_rec, JSON_COMPACT);
        if (!rec) return -ENOMEM;
        free(j->executor);
        j->executor = rec;
    }
    out->executor_type = svc__is_final(j->status) ? "local" : s->exec->ops->name;
    if (j->status == JOB_QUEUED && r) /* handed to an executor that queues: its estimate, no place of ours */
        out->estimated_start = r->exec_estimated_start;
    else if (j->status == JOB_QUEUED)
        svc__queue_place(s, j->id, &out->queue_position, &out->estimated_start);
    if (j->status == JOB_RUNNING && isfinite(j->eta_seconds) && eta_from > 0)
        out->estimated_finish = eta_from + (long long)ceil(j->eta_seconds);
    return 0;
}

static int job_reply(svc *s, const svc_caller *who, const char *id, svc_job *out, svc_error *e)
{
    db_job j;
    int rc = svc__get_job(s, who, id, &j, e);
    if (rc) return rc;
    if (job_view(s, &j, out)) {
        svc_job_clear(out);
        return svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory");
    }
    return 0;
}

/* The body without "priority" (a scheduling field, not part of the training spec): a new reference, or
 * NULL with e filled. OUT *prio (default 5). */
json_t *svc__split_priority(const json_t *body, int *prio, svc_error *e)
{
    *prio = 5;
    json_t *copy = json_is_object(body) ? json_copy((json_t *)body) : json_incref((json_t *)body);
    json_t *p = json_object_get(copy, "priority");
    if (p && !json_is_null(p)) {
        if (!json_is_integer(p) || json_integer_value(p) < 0 || json_integer_value(p) > 9) {
            json_decref(copy);
            svc_fail(e, SVC_EINVAL, "invalid_value", "priority", "priority must be an integer from 0 to 9");
            return NULL;
        }
        *prio = (int)json_integer_value(p);
    }
    if (json_is_object(copy)) json_object_del(copy, "priority");
    return copy;
}

/* Validate the body as the job spec and against this daemon's limits and the caller's quotas (the queue's
 * only with check_queue: a sweep's trials are checked before they are queued). OUT spec (with threads and
 * seed settled). */
static int check_spec(svc *s, const svc_caller *who, json_t *body, tr_spec *spec, int check_queue, svc_error *e)
{
    char param[128], err[512];
    svc__resolve_ctx rctx = {s, who->name, 0};
    int rc = jobspec_parse(body, svc__resolve, &rctx, spec, param, sizeof param, err, sizeof err);
    if (rc == -ENOENT)
        return svc_fail(e, SVC_EINVAL, !strcmp(param, "model") ? "model_not_found" : "file_not_found", param, "%s", err);
    if (rc)
        return svc_fail(e, SVC_EINVAL, !strncmp(err, "unknown field", 13) ? "unknown_parameter" : "invalid_value", param,
                        "%s", err);
    jobspec_resources res;
    if (jobspec_resources_parse(body, &res, param, sizeof param, err, sizeof err) != 0 ||
        s->exec->ops->check(s->exec, &res, spec->device, param, sizeof param, err, sizeof err) != 0)
        return svc_fail(e, SVC_EINVAL, "invalid_value", param, "%s", err);
    /* threads beyond --threads-per-job: only resources.cpus asks for them (and the executor gave them) */
    if (spec->threads > s->cfg.threads_per_job && res.cpus <= 0) {
        snprintf(param, sizeof param, "method.%s.hyperparameters.threads", jobspec_method_name(spec->method));
        return svc_fail(e, SVC_EINVAL, "invalid_value", param,
                        "threads %d is more than this daemon gives a job (--threads-per-job %d)", spec->threads,
                        s->cfg.threads_per_job);
    }
    if (spec->threads <= 0) spec->threads = s->cfg.threads_per_job;
    svc_quota q = svc__quota_of(s, who->name);
    if (q.threads > 0 && spec->threads > q.threads)
        return svc__over_quota(e, "threads", q.threads,
                               "the job asks for %d threads; set hyperparameters.threads to at most %d", spec->threads,
                               q.threads);
    if (check_queue && (rc = svc__check_queued_quota(s, who->name, e)) != 0) return rc;
    if (check_queue && (rc = svc__disk_guard(s, "a new job", e)) != 0) return rc;
    /* what the job will write is known from the weights it starts from: its resumable state (weights and
     * momentum), best, final and a temporary state while a checkpoint is written, about six copies
     * (docs/operations.md, Disk full); 0 for a random start, whose size the spec does not say: then
     * only the usage so far is checked */
    struct stat wst;
    long long need = spec->init_weights[0] && stat(spec->init_weights, &wst) == 0 ? 6LL * (long long)wst.st_size : 0;
    if (check_queue && (rc = svc__disk_quota(s, who->name, need, e)) != 0) return rc;
    json_t *seed = json_object_get(body, "seed");
    if (!seed || json_is_null(seed)) {
        unsigned int x;
        if ((rc = util_random_u31(&x)) != 0)
            return svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "no randomness for a seed: %s", strerror(-rc));
        spec->seed = x;
    }
    return 0;
}

/* The new row, committed durably. Strings of j point into body/spec JSON kept alive by the caller. */
static int insert_job(svc *s, const svc_caller *who, const json_t *rawbody, const tr_spec *spec, int priority,
                      char *canon, const char *idem_key, const char *hash, char *id, svc_error *e)
{
    db_job j;
    memset(&j, 0, sizeof j);
    json_t *method = jobspec_effective_json(spec), *ext = jobspec_extensions_json(spec);
    j.status = JOB_QUEUED;
    snprintf(j.arch, sizeof j.arch, "%s", spec->arch);
    snprintf(j.owner, sizeof j.owner, "%s", who->name);
    j.created_at = util_now();
    j.body = canon;
    j.method = method ? json_dumps(method, JSON_COMPACT) : NULL;
    j.extensions = ext ? json_dumps(ext, JSON_COMPACT) : NULL;
    json_decref(method);
    json_decref(ext);
    const json_t *v;
    j.priority = priority;
    j.threads = spec->threads;
    j.model = (char *)json_string_value(json_object_get(rawbody, "model"));
    j.training_file = (char *)json_string_value(json_object_get(rawbody, "training_file"));
    j.validation_file = (char *)json_string_value(json_object_get(rawbody, "validation_file"));
    j.suffix = (char *)json_string_value(json_object_get(rawbody, "suffix"));
    j.metadata = (v = json_object_get(rawbody, "metadata")) && json_is_object(v) ? json_dumps(v, JSON_COMPACT) : NULL;
    j.seed = (long long)spec->seed;
    j.idem_key = (char *)idem_key;
    j.body_hash = (char *)hash;
    j.epochs = spec->hp.epochs;
    int rc = (j.method && j.extensions) ? -EEXIST : -ENOMEM;
    for (int tries = 0; tries < 3 && rc == -EEXIST; tries++) {
        if ((rc = util_random_id(j.id, sizeof j.id, "ftjob-")) != 0) break;
        db_event created;          /* committed with the row: no job is ever without its first event */
        svc__event_fill(s, &created, j.id, "status", "info", json_pack("{s:s}", "status", job_status_name(JOB_QUEUED)), "Job created");
        rc = created.message ? db_job_insert(s->db, &j, &created) : -ENOMEM;
        free(created.message);
        free(created.data);
    }
    free(j.method);
    free(j.extensions);
    free(j.metadata);
    if (rc == -ENOMEM) return svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory");
    if (rc == -ENOSPC) /* the INSERT rolled back whole: a retry with the same Idempotency-Key is safe */
        return svc_fail(e, SVC_ENOSPACE, "insufficient_storage", NULL,
                        "cannot store the job: the disk of the data directory is full; nothing was stored, "
                        "retry once space is freed");
    if (rc) return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "cannot store the job: %s", db_errmsg(s->db));
    snprintf(id, DB_ID_MAX, "%s", j.id);
    return 0;
}

int svc_job_create(svc *s, const svc_caller *who, const json_t *rawbody, const char *idem_key, svc_job *out,
                   int *replayed, svc_error *e)
{
    *replayed = 0;
    if (s->stopping) return svc_fail(e, SVC_EUNAVAILABLE, "shutting_down", NULL, "the daemon is shutting down");
    int priority = 5;
    json_t *body = svc__split_priority(rawbody, &priority, e);
    if (!body) return e->kind;
    /* The key's body digest: SHA-256 of the canonical body (sorted keys), so key order never matters. */
    char *canon = json_dumps(rawbody, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (!canon) { json_decref(body); return svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory"); }
    char hash[65], scoped[400];
    auth_sha256_hex(canon, strlen(canon), hash);
    if (idem_key) { /* keys are per user: one user's key never returns another's job */
        snprintf(scoped, sizeof scoped, "%s:%s", who->name, idem_key);
        idem_key = scoped;
    }
    db_job j;
    int rc;
    if (idem_key && (rc = db_job_find_idem(s->db, idem_key, &j)) != -ENOENT) {
        /* rows from before the SHA-256 digest carry a 16-digit FNV-1a one: compare their canonical body */
        int same = rc == 0 && (j.body_hash && strlen(j.body_hash) == 64 ? !strcmp(j.body_hash, hash)
                                                                        : j.body && !strcmp(j.body, canon));
        json_decref(body);
        free(canon);
        if (rc) return svc__storage_error(s, e);
        if (!same) {
            db_job_clear(&j);
            return svc_fail(e, SVC_EIDEMPOTENCY, "idempotency_key_reused", NULL,
                            "Idempotency-Key was already used with a different request body");
        }
        *replayed = 1;
        if (job_view(s, &j, out)) { svc_job_clear(out); return svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory"); }
        return 0;
    }
    tr_spec spec;
    char id[DB_ID_MAX];
    rc = check_spec(s, who, body, &spec, 1, e);
    if (rc == 0) rc = insert_job(s, who, rawbody, &spec, priority, canon, idem_key, hash, id, e);
    json_decref(body);
    free(canon);
    if (rc) return rc;
    LOG(LOG_INFO, "msg=\"job created\" job=%s user=%s priority=%d model=%s", id, who->name, priority, spec.arch);
    s->order_valid = 0;
    svc__notify(s, id);
    svc__schedule(s);
    return job_reply(s, NULL, id, out, e);
}

int svc__job_check(svc *s, const svc_caller *who, const json_t *rawbody, svc_error *e)
{
    int priority;
    json_t *body = svc__split_priority(rawbody, &priority, e);
    if (!body) return e->kind;
    tr_spec spec;
    int rc = check_spec(s, who, body, &spec, 0, e);
    json_decref(body);
    return rc;
}

typedef struct list_ctx { svc *s; svc_job_page *p; int cap; int failed; } list_ctx;
static int add_job(void *ud, db_job *row)
{
    list_ctx *c = ud;
    if (util_grow(&c->p->v, &c->cap, c->p->n + 1, sizeof *c->p->v)) { c->failed = 1; return 1; }
    if (job_view(c->s, row, &c->p->v[c->p->n])) { /* takes the row: no copy of its strings */
        svc_job_clear(&c->p->v[c->p->n]);
        c->failed = 1;
        return 1;
    }
    c->p->n++;
    return 0;
}

int svc_job_list(svc *s, const svc_caller *who, const char *after, int limit, svc_job_page *out, svc_error *e)
{
    char q[201];                   /* a client's string, quoted in a message */
    memset(out, 0, sizeof *out);
    list_ctx c = {s, out, 0, 0};
    int rc = db_job_list(s->db, who->admin ? NULL : who->name, after, limit, add_job, &c, &out->has_more);
    if (rc || c.failed) {
        svc_job_page_free(out);
        if (rc == -ENOENT) return svc_fail(e, SVC_EINVAL, "invalid_value", "after", "no job '%s' to list after", util_quote(q, sizeof q, after));
        if (c.failed) return svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory");
        return svc__storage_error(s, e);
    }
    return 0;
}

int svc_job_get(svc *s, const svc_caller *who, const char *id, svc_job *out, svc_error *e)
{
    return job_reply(s, who, id, out, e);
}

/* An admin acting on someone else's job is an admin action: audited. */
static void audit_if_admin_action(svc *s, const svc_caller *who, const db_job *j, const char *action)
{
    if (who && who->admin && strcmp(j->owner, who->name) != 0) {
        char detail[160];
        snprintf(detail, sizeof detail, "job of user '%s'", j->owner[0] ? j->owner : "(none)");
        svc_audit(s, who, NULL, action, j->id, "ok", detail);
    }
}

/* The job if it may move from its status (allowed(status) != 0), else 409 naming why. */
/* why: a literal with two %s, the id and the current status (checked by the compiler at each call). */
__attribute__((format(printf, 5, 0)))
static int transition(svc *s, const svc_caller *who, const char *id, int (*allowed)(enum job_status), const char *why,
                      const char *action, db_job *j, svc_error *e)
{
    int rc = svc__get_job(s, who, id, j, e);
    if (rc) return rc;
    if (!allowed(j->status)) {
        rc = svc_fail(e, SVC_ECONFLICT, "invalid_state", NULL, why, id, job_status_name(j->status));
        db_job_clear(j);
        return rc;
    }
    audit_if_admin_action(s, who, j, action);
    return 0;
}

static int cancellable(enum job_status st) { return !svc__is_final(st); }
static int pausable(enum job_status st) { return st == JOB_QUEUED || st == JOB_RUNNING; }
static int resumable(enum job_status st) { return st == JOB_PAUSED; }

/* Commit what the caller is about to be told, maybe start jobs, then answer with the job as it is now. */
static int commit_and_reply(svc *s, const char *id, int reschedule, svc_job *out, svc_error *e)
{
    int rc = svc__flush(s);
    if (rc == -ENOSPC) /* the batch keeps the change and svc__flush retries it: say so */
        return svc_fail(e, SVC_ENOSPACE, "insufficient_storage", NULL,
                        "cannot commit the change: the disk of the data directory is full; the daemon keeps "
                        "it and commits it as soon as space is freed");
    if (rc) return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "cannot commit: %s", db_errmsg(s->db));
    if (reschedule) svc__schedule(s);
    return job_reply(s, NULL, id, out, e);
}

int svc_job_cancel(svc *s, const svc_caller *who, const char *id, svc_job *out, svc_error *e)
{
    db_job j;
    int rc = transition(s, who, id, cancellable, "job %s is already %s", "job_cancel", &j, e);
    if (rc) return rc;
    db_job_clear(&j);
    run *r = svc__find_run(s, id);
    if (r) svc__stop_run(s, r, TR_STOP_CANCEL); /* the trainer stops within one step */
    db_status *c = svc__status_change(s, id, JOB_CANCELLED);
    if (c) c->finished_at = util_now();
    svc__emit(s, id, "status", "info", json_pack("{s:s}", "status", job_status_name(JOB_CANCELLED)), "Job cancelled");
    LOG(LOG_INFO, "msg=\"job cancelled\" job=%s", id);
    return commit_and_reply(s, id, 0, out, e);
}

int svc_job_pause(svc *s, const svc_caller *who, const char *id, svc_job *out, svc_error *e)
{
    db_job j;
    int rc = transition(s, who, id, pausable, "only a queued or running job can be paused (job %s is %s)", "job_pause",
                        &j, e);
    if (rc) return rc;
    db_job_clear(&j);
    run *r = svc__find_run(s, id);
    if (r) svc__stop_run(s, r, TR_STOP_CHECKPOINT);
    svc__status_change(s, id, JOB_PAUSED);
    if (!r) svc__emit(s, id, "status", "info", json_pack("{s:s}", "status", job_status_name(JOB_PAUSED)), "Job paused");
    else svc__emit(s, id, "message", "info", json_pack("{s:s}", "status", job_status_name(JOB_PAUSED)), "Pausing: writing a checkpoint");
    return commit_and_reply(s, id, 0, out, e);
}

int svc_job_resume(svc *s, const svc_caller *who, const char *id, svc_job *out, svc_error *e)
{
    db_job j;
    int rc = svc__get_job(s, who, id, &j, e);
    if (rc) return rc;
    if (!resumable(j.status))
        rc = svc_fail(e, SVC_ECONFLICT, "invalid_state", NULL, "only a paused job can be resumed (job %s is %s)", id,
                      job_status_name(j.status));
    else if ((rc = svc__check_queued_quota(s, j.owner, e)) == 0)
        audit_if_admin_action(s, who, &j, "job_resume");
    db_job_clear(&j);
    if (rc) return rc;
    svc__status_change(s, id, JOB_QUEUED);
    svc__emit(s, id, "status", "info", json_pack("{s:s}", "status", job_status_name(JOB_QUEUED)),
              "Job resumed: queued to continue from its checkpoint");
    return commit_and_reply(s, id, 1, out, e);
}
