/* storage/db_batch.c — the batch: rows a running job (and the service) produce, collected in memory and
 * committed by db_batch_write in one transaction, in the order status, executor records, webhooks, models, audit, events,
 * metrics, progress, checkpoints (each table's writer lives with its table: db_jobs.c, db_assets.c,
 * db_users.c, db_events.c). Loop thread only. A failed write rolls back everything and leaves the
 * batch as it was for a retry (-ENOSPC when the disk is full, else -EIO); a status name job_status.h
 * does not know fails before anything starts (-EINVAL: a retry cannot help). Errors: see db.h. */
#include "storage/db_int.h"
#include "storage/job_status.h"
#include <errno.h>
#include "common/util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Append a zeroed row to arr (n rows, room for cap) and return it; NULL when out of memory. */
#define GROW(arr, n, cap) \
    do { \
        if (util_grow(&(arr), &(cap), (n) + 1, sizeof *(arr))) return NULL; \
        memset(&(arr)[(n)], 0, sizeof *(arr)); \
        return &(arr)[(n)++]; \
    } while (0)

db_event *db_batch_event(db_batch *b) { GROW(b->events, b->n_events, b->cap_events); }
db_metric *db_batch_metric(db_batch *b) { GROW(b->metrics, b->n_metrics, b->cap_metrics); }
db_checkpoint *db_batch_checkpoint(db_batch *b) { GROW(b->ckpts, b->n_ckpts, b->cap_ckpts); }
db_status *db_batch_status(db_batch *b) { GROW(b->status, b->n_status, b->cap_status); }
db_audit *db_batch_audit(db_batch *b) { GROW(b->audit, b->n_audit, b->cap_audit); }
db_model *db_batch_model(db_batch *b) { GROW(b->models, b->n_models, b->cap_models); }
static db_progress *batch_progress_new(db_batch *b) { GROW(b->progress, b->n_progress, b->cap_progress); }
static db_exec *batch_exec_new(db_batch *b) { GROW(b->execs, b->n_execs, b->cap_execs); }
db_webhook *db_batch_webhook(db_batch *b) { GROW(b->hooks, b->n_hooks, b->cap_hooks); }

db_exec *db_batch_exec(db_batch *b, const char *job_id)
{
    for (int i = 0; i < b->n_execs; i++)
        if (strcmp(b->execs[i].job_id, job_id) == 0) return &b->execs[i];
    db_exec *x = batch_exec_new(b);
    if (x) snprintf(x->job_id, sizeof x->job_id, "%s", job_id);
    return x;
}

db_progress *db_batch_progress(db_batch *b, const char *job_id)
{
    for (int i = 0; i < b->n_progress; i++)
        if (strcmp(b->progress[i].job_id, job_id) == 0) return &b->progress[i];
    db_progress *p = batch_progress_new(b);
    if (!p) return NULL;
    snprintf(p->job_id, sizeof p->job_id, "%s", job_id);
    p->best_valid_accuracy = p->final_valid_accuracy = p->eta_seconds = NAN;
    return p;
}

int db_batch_empty(const db_batch *b)
{
    return !b->n_events && !b->n_metrics && !b->n_progress && !b->n_ckpts && !b->n_status && !b->n_audit
           && !b->n_models && !b->n_execs && !b->n_hooks;
}

void db_batch_reset(db_batch *b)
{
    for (int i = 0; i < b->n_events; i++) { free(b->events[i].message); free(b->events[i].data); }
    for (int i = 0; i < b->n_progress; i++) free(b->progress[i].metrics);
    for (int i = 0; i < b->n_ckpts; i++) { free(b->ckpts[i].path); free(b->ckpts[i].metrics); }
    for (int i = 0; i < b->n_status; i++) {
        db_status *s = &b->status[i];
        free(s->error_code); free(s->error_message); free(s->error_param);
        free(s->fine_tuned_model);
    }
    for (int i = 0; i < b->n_execs; i++) free(b->execs[i].record);
    for (int i = 0; i < b->n_hooks; i++) db_webhook_clear(&b->hooks[i]);
    b->n_hooks = 0;
    b->n_events = b->n_metrics = b->n_progress = b->n_ckpts = b->n_status = b->n_audit = b->n_models = 0;
    b->n_execs = 0;
}

void db_batch_free(db_batch *b)
{
    db_batch_reset(b);
    free(b->events); free(b->metrics); free(b->progress); free(b->ckpts); free(b->status); free(b->audit);
    free(b->models);
    free(b->execs);
    free(b->hooks);
    memset(b, 0, sizeof *b);
}

static int write_rows(db *d, const db_batch *b)
{
    for (int i = 0; i < b->n_status; i++)
        if (db__job_status_write(d, &b->status[i])) return -EIO;
    if (db__job_executor_write(d, b->execs, b->n_execs)) return -EIO;
    if (db__webhooks_write(d, b->hooks, b->n_hooks)) return -EIO;
    for (int i = 0; i < b->n_models; i++) {
        const db_model *m = &b->models[i];
        if (db__model_write(d, m->id, m->job_id, m->arch, m->path, m->created_at, m->owner)) return -EIO;
    }
    for (int i = 0; i < b->n_audit; i++)
        if (db_audit_insert(d, &b->audit[i])) return -EIO;
    if (db__events_write(d, b->events, b->n_events)) return -EIO;
    if (db__metrics_write(d, b->metrics, b->n_metrics)) return -EIO;
    if (db__job_progress_write(d, b->progress, b->n_progress)) return -EIO;
    if (db__checkpoints_write(d, b->ckpts, b->n_ckpts)) return -EIO;
    return 0;
}

int db_batch_write(db *d, const db_batch *b, char *err, size_t errlen)
{
    if (db_batch_empty(b)) return 0;
    for (int i = 0; i < b->n_status; i++) {
        if (!job_status_name(b->status[i].status)) {
            if (err) snprintf(err, errlen, "job %s: unknown status %d", b->status[i].job_id, (int)b->status[i].status);
            return -EINVAL;
        }
    }
    int rc = db__begin(d, err, errlen);
    if (rc) return rc;
    if (write_rows(d, b)) {
        rc = sqlite3_errcode(d->h) == SQLITE_FULL ? -ENOSPC : -EIO; /* read before the rollback resets it */
        if (err) snprintf(err, errlen, "%s", sqlite3_errmsg(d->h));
        db__rollback(d);
        return rc;
    }
    if ((rc = db__commit(d, err, errlen)) != 0 && !sqlite3_get_autocommit(d->h))
        db__rollback(d); /* a COMMIT that failed may leave the transaction open: the retry begins anew */
    return rc;
}
