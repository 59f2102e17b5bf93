/* storage/db_jobs.c — the jobs table: insert, reads, the queue for the scheduler, counts for quotas and
 * /metrics, and the status changes and progress a batch writes (db__job_status_write and
 * db__job_progress_write, called by db_batch_write inside its transaction). Loop thread only.
 * Statuses are checked against storage/job_status.h (-EINVAL) before SQLite's CHECK sees them.
 * Errors: see db.h. */
#include "storage/db_int.h"
#include "storage/job_status.h"
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void db_job_clear(db_job *j)
{
    char **heap[] = {&j->body, &j->method, &j->extensions, &j->model, &j->training_file, &j->validation_file,
                     &j->suffix, &j->metadata, &j->idem_key, &j->body_hash, &j->metrics, &j->fine_tuned_model,
                     &j->error_code, &j->error_message, &j->error_param, &j->executor};
    for (size_t i = 0; i < sizeof heap / sizeof heap[0]; i++) free(*heap[i]);
    memset(j, 0, sizeof *j);
}

#define JOB_COLS "seq, id, status, created_at, started_at, finished_at, body, method, extensions, model," \
                 " training_file, validation_file, seed, suffix, metadata, arch, idem_key, body_hash, step," \
                 " total_steps, epoch, epochs, metrics, best_valid_accuracy, final_valid_accuracy, eta_seconds," \
                 " progress_at, fine_tuned_model, error_code, error_message, error_param," \
                 " coalesce(owner, ''), priority, threads, preempted, executor, executor_live"

/* -EIO for a status the table does not know (the CHECK constraint makes that a corrupt file). */
static int read_job(sqlite3_stmt *st, db_job *j)
{
    memset(j, 0, sizeof *j);
    j->seq = sqlite3_column_int64(st, 0);
    db__col_copy(st, 1, j->id, sizeof j->id);
    if (job_status_parse((const char *)sqlite3_column_text(st, 2), &j->status)) return -EIO;
    j->created_at = sqlite3_column_int64(st, 3);
    j->started_at = sqlite3_column_int64(st, 4);
    j->finished_at = sqlite3_column_int64(st, 5);
    j->body = db__col_dup(st, 6);
    j->method = db__col_dup(st, 7);
    j->extensions = db__col_dup(st, 8);
    j->model = db__col_dup(st, 9);
    j->training_file = db__col_dup(st, 10);
    j->validation_file = db__col_dup(st, 11);
    j->seed = sqlite3_column_int64(st, 12);
    j->suffix = db__col_dup(st, 13);
    j->metadata = db__col_dup(st, 14);
    db__col_copy(st, 15, j->arch, sizeof j->arch);
    j->idem_key = db__col_dup(st, 16);
    j->body_hash = db__col_dup(st, 17);
    j->step = sqlite3_column_int(st, 18);
    j->total_steps = sqlite3_column_int(st, 19);
    j->epoch = sqlite3_column_int(st, 20);
    j->epochs = sqlite3_column_int(st, 21);
    j->metrics = db__col_dup(st, 22);
    j->best_valid_accuracy = db__col_real(st, 23);
    j->final_valid_accuracy = db__col_real(st, 24);
    j->eta_seconds = db__col_real(st, 25);
    j->progress_at = sqlite3_column_int64(st, 26);
    j->fine_tuned_model = db__col_dup(st, 27);
    j->error_code = db__col_dup(st, 28);
    j->error_message = db__col_dup(st, 29);
    j->error_param = db__col_dup(st, 30);
    db__col_copy(st, 31, j->owner, sizeof j->owner);
    j->priority = sqlite3_column_int(st, 32);
    j->threads = sqlite3_column_int(st, 33);
    j->preempted = sqlite3_column_int(st, 34);
    j->executor = db__col_dup(st, 35);
    j->executor_live = sqlite3_column_int(st, 36);
    return 0;
}

int db_job_insert(db *d, const db_job *j, const db_event *first)
{
    const char *status = job_status_name(j->status);
    if (!status) return -EINVAL; /* the CHECK would say -EEXIST below */
    sqlite3_stmt *st = db__prep(d, "INSERT INTO jobs (id, status, created_at, body, method, extensions, model,"
                                   " training_file, validation_file, seed, suffix, metadata, arch, idem_key, body_hash,"
                                   " total_steps, epochs, owner, priority, threads)"
                                   " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    if (!st) return -EIO;
    db__bind_text(st, 1, j->id);
    db__bind_text(st, 2, status);
    sqlite3_bind_int64(st, 3, j->created_at);
    db__bind_text(st, 4, j->body);
    db__bind_text(st, 5, j->method);
    db__bind_text(st, 6, j->extensions);
    db__bind_text(st, 7, j->model);
    db__bind_text(st, 8, j->training_file);
    db__bind_text(st, 9, j->validation_file);
    sqlite3_bind_int64(st, 10, j->seed);
    db__bind_text(st, 11, j->suffix);
    db__bind_text(st, 12, j->metadata);
    db__bind_text(st, 13, j->arch);
    db__bind_text(st, 14, j->idem_key);
    db__bind_text(st, 15, j->body_hash);
    sqlite3_bind_int(st, 16, j->total_steps);
    sqlite3_bind_int(st, 17, j->epochs);
    db__bind_text(st, 18, j->owner[0] ? j->owner : NULL);
    sqlite3_bind_int(st, 19, j->priority);
    sqlite3_bind_int(st, 20, j->threads > 0 ? j->threads : 1);
    if (db__begin(d, NULL, 0)) { sqlite3_finalize(st); return sqlite3_errcode(d->h) == SQLITE_FULL ? -ENOSPC : -EIO; }
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    int out = rc == SQLITE_DONE ? 0 : rc == SQLITE_CONSTRAINT ? -EEXIST : rc == SQLITE_FULL ? -ENOSPC : -EIO;
    if (out == 0 && first && db__events_write(d, first, 1) != 0)
        out = sqlite3_errcode(d->h) == SQLITE_FULL ? -ENOSPC : -EIO;
    if (out == 0 && db__commit(d, NULL, 0) != 0) out = sqlite3_errcode(d->h) == SQLITE_FULL ? -ENOSPC : -EIO;
    if (out) db__rollback(d);
    return out;                    /* -ENOSPC: the disk is full */
}

static int job_by(db *d, const char *sql, const char *key, db_job *out)
{
    sqlite3_stmt *st = db__cached(d, sql);
    if (!st) return -EIO;
    db__bind_text(st, 1, key);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && read_job(st, out) != 0) { db_job_clear(out); rc = SQLITE_CORRUPT; }
    db__release(d, st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int db_job_get(db *d, const char *id, db_job *out)
{
    return job_by(d, "SELECT " JOB_COLS " FROM jobs WHERE id = ?", id, out);
}

int db_job_find_idem(db *d, const char *key, db_job *out)
{
    return job_by(d, "SELECT " JOB_COLS " FROM jobs WHERE idem_key = ?", key, out);
}

int db_job_list(db *d, const char *owner, const char *after, int limit, db_job_fn fn, void *ud, int *has_more)
{
    long long before = LLONG_MAX;
    *has_more = 0;
    int found = after ? db__seq_of(d, "jobs", after, &before) : 0;
    if (found) return found;
    /* two statements, not "(?3 IS NULL OR owner = ?3)": SQLite plans a statement once, and with the OR it
     * can only walk every job by seq; an owner's page is a range of the jobs_owner index (owner, seq) */
    sqlite3_stmt *st = db__cached(d, owner ? "SELECT " JOB_COLS " FROM jobs WHERE owner = ?3 AND seq < ?1"
                                             " ORDER BY seq DESC LIMIT ?2"
                                           : "SELECT " JOB_COLS " FROM jobs WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2");
    if (!st) return -EIO;
    sqlite3_bind_int64(st, 1, before);
    sqlite3_bind_int(st, 2, limit + 1);
    if (owner) db__bind_text(st, 3, owner);
    int rc, n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n++ == limit) { *has_more = 1; break; }
        db_job j;
        if (read_job(st, &j) != 0) { db_job_clear(&j); rc = SQLITE_CORRUPT; break; }
        int stop = fn(ud, &j);
        db_job_clear(&j);
        if (stop) break;
    }
    db__release(d, st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

int db_job_ids_by_status(db *d, enum job_status status, int limit, char (*ids)[DB_ID_MAX], int *n)
{
    return db__ids_by_status(d, "jobs", status, limit, ids, n);
}

int db_job_ids_executor_live(db *d, int limit, char (*ids)[DB_ID_MAX], int *n)
{
    sqlite3_stmt *st = db__prep(d, "SELECT id FROM jobs WHERE executor_live = 1 ORDER BY seq LIMIT ?");
    if (!st) return -EIO;
    sqlite3_bind_int(st, 1, limit);
    int rc;
    *n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) db__col_copy(st, 0, ids[(*n)++], DB_ID_MAX);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int db_job_queue(db *d, db_queued_fn fn, void *ud)
{
    sqlite3_stmt *st = db__prep(d, "SELECT seq, created_at, id, coalesce(owner, ''), priority, threads, preempted,"
                                   " coalesce(json_extract(extensions, '$.device'), 'cpu')"
                                   " FROM jobs WHERE status = ? ORDER BY seq");
    if (!st) return -EIO;
    db__bind_text(st, 1, job_status_name(JOB_QUEUED));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_queued q;
        q.seq = sqlite3_column_int64(st, 0);
        q.created_at = sqlite3_column_int64(st, 1);
        db__col_copy(st, 2, q.id, sizeof q.id);
        db__col_copy(st, 3, q.owner, sizeof q.owner);
        q.priority = sqlite3_column_int(st, 4);
        q.threads = sqlite3_column_int(st, 5);
        q.preempted = sqlite3_column_int(st, 6);
        db__col_copy(st, 7, q.device, sizeof q.device);
        if (fn(ud, &q)) break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

int db_job_count(db *d, const char *owner, enum job_status status, int *out)
{
    sqlite3_stmt *st = db__prep(d, "SELECT count(*) FROM jobs WHERE coalesce(owner, '') = ? AND status = ?");
    if (!st) return -EIO;
    db__bind_text(st, 1, owner ? owner : "");
    db__bind_text(st, 2, job_status_name(status));
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

int db_job_counts(db *d, db_count_fn fn, void *ud)
{
    sqlite3_stmt *st = db__prep(d, "SELECT coalesce(owner, ''), status, count(*) FROM jobs"
                                   " GROUP BY 1, 2 ORDER BY 1, 2");
    if (!st) return -EIO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        enum job_status s;
        if (job_status_parse((const char *)sqlite3_column_text(st, 1), &s)) { rc = SQLITE_CORRUPT; break; }
        if (fn(ud, (const char *)sqlite3_column_text(st, 0), s, sqlite3_column_int64(st, 2))) break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

int db_job_mean_duration(db *d, double *out)
{
    sqlite3_stmt *st = db__prep(d, "SELECT coalesce(avg(finished_at - started_at), 0) FROM (SELECT finished_at,"
                                   " started_at FROM jobs WHERE status = ? AND started_at > 0"
                                   " ORDER BY finished_at DESC LIMIT 20)");
    if (!st) return -EIO;
    db__bind_text(st, 1, job_status_name(JOB_SUCCEEDED));
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

/* ---- written by db_batch_write, inside its transaction ---- */

int db__job_status_write(db *d, const db_status *s)
{
    const char *status = job_status_name(s->status);
    if (!status) return -EINVAL;
    sqlite3_stmt *st = db__prep(d, "UPDATE jobs SET status = ?2,"
                                   " started_at = CASE WHEN ?3 > 0 THEN ?3 WHEN ?3 < 0 THEN NULL ELSE started_at END,"
                                   " finished_at = CASE WHEN ?4 > 0 THEN ?4 WHEN ?4 < 0 THEN NULL ELSE finished_at END,"
                                   " error_code = ?5, error_message = ?6, error_param = ?7,"
                                   " fine_tuned_model = coalesce(?8, fine_tuned_model), preempted = ?9 WHERE id = ?1");
    if (!st) return -EIO;
    db__bind_text(st, 1, s->job_id);
    db__bind_text(st, 2, status);
    sqlite3_bind_int64(st, 3, s->started_at);
    sqlite3_bind_int64(st, 4, s->finished_at);
    db__bind_text(st, 5, s->error_code);
    db__bind_text(st, 6, s->error_message);
    db__bind_text(st, 7, s->error_param);
    db__bind_text(st, 8, s->fine_tuned_model);
    sqlite3_bind_int(st, 9, s->preempted);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int db__job_progress_write(db *d, const db_progress *p, int n)
{
    if (n == 0) return 0;
    sqlite3_stmt *st = db__prep(d, "UPDATE jobs SET step = ?2, total_steps = ?3, epoch = ?4, epochs = ?5,"
                                   " metrics = coalesce(?6, metrics),"
                                   " best_valid_accuracy = coalesce(?7, best_valid_accuracy),"
                                   " final_valid_accuracy = coalesce(?8, final_valid_accuracy), eta_seconds = ?9,"
                                   " progress_at = ?10 WHERE id = ?1");
    if (!st) return -EIO;
    int rc = SQLITE_DONE;
    for (int i = 0; i < n && rc == SQLITE_DONE; i++) {
        sqlite3_reset(st);
        db__bind_text(st, 1, p[i].job_id);
        sqlite3_bind_int(st, 2, p[i].step);
        sqlite3_bind_int(st, 3, p[i].total_steps);
        sqlite3_bind_int(st, 4, p[i].epoch);
        sqlite3_bind_int(st, 5, p[i].epochs);
        db__bind_text(st, 6, p[i].metrics);
        db__bind_real(st, 7, p[i].best_valid_accuracy);
        db__bind_real(st, 8, p[i].final_valid_accuracy);
        db__bind_real(st, 9, p[i].eta_seconds);
        sqlite3_bind_int64(st, 10, p[i].at);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int db__job_executor_write(db *d, const db_exec *x, int n)
{
    if (n == 0) return 0;
    sqlite3_stmt *st = db__prep(d, "UPDATE jobs SET executor = ?2, executor_live = ?3 WHERE id = ?1");
    if (!st) return -EIO;
    int rc = SQLITE_DONE;
    for (int i = 0; i < n && rc == SQLITE_DONE; i++) {
        sqlite3_reset(st);
        db__bind_text(st, 1, x[i].job_id);
        db__bind_text(st, 2, x[i].record);
        sqlite3_bind_int(st, 3, x[i].live != 0);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int db_job_delete(db *d, const char *id)
{
    static const char *const sql[] = {
        "DELETE FROM events WHERE job_id = ?",
        "DELETE FROM metrics WHERE job_id = ?",
        "DELETE FROM metric_blocks WHERE job_id = ?",
        "DELETE FROM checkpoints WHERE job_id = ?",
        "DELETE FROM jobs WHERE id = ?",    /* last: its change count says whether the job existed */
    };
    int rc = db__begin(d, NULL, 0);
    if (rc) return rc;
    for (size_t i = 0; i < sizeof sql / sizeof sql[0] && rc == 0; i++) {
        sqlite3_stmt *st = db__prep(d, sql[i]);
        if (!st) { rc = -EIO; break; }
        db__bind_text(st, 1, id);
        int r = sqlite3_step(st);
        sqlite3_finalize(st);
        if (r != SQLITE_DONE) rc = (r & 0xff) == SQLITE_FULL ? -ENOSPC : -EIO;
        else if (i == sizeof sql / sizeof sql[0] - 1 && sqlite3_changes(d->h) == 0) rc = -ENOENT;
    }
    if (rc == 0) rc = db__commit(d, NULL, 0);
    if (rc) db__rollback(d);
    return rc;
}

int db_job_walk(db *d, const char *owner, db_job_brief_fn fn, void *ud)
{
    sqlite3_stmt *st = db__prep(d, "SELECT id, coalesce(owner, ''), status, coalesce(finished_at, 0) FROM jobs"
                                   " WHERE ?1 IS NULL OR coalesce(owner, '') = ?1 ORDER BY seq");
    if (!st) return -EIO;
    db__bind_text(st, 1, owner);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_job_brief b;
        memset(&b, 0, sizeof b);
        db__col_copy(st, 0, b.id, sizeof b.id);
        db__col_copy(st, 1, b.owner, sizeof b.owner);
        if (job_status_parse((const char *)sqlite3_column_text(st, 2), &b.status)) { rc = SQLITE_CORRUPT; break; }
        b.finished_at = sqlite3_column_int64(st, 3);
        if (fn(ud, &b)) break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

int db_checkpoint_prune(db *d, const char *job_id, int keep, int *removed)
{
    sqlite3_stmt *st = db__prep(d, "DELETE FROM checkpoints WHERE job_id = ?1 AND id NOT IN"
                                   " (SELECT id FROM checkpoints WHERE job_id = ?1 ORDER BY id DESC LIMIT ?2)");
    if (!st) return -EIO;
    db__bind_text(st, 1, job_id);
    sqlite3_bind_int(st, 2, keep);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (removed) *removed = rc == SQLITE_DONE ? sqlite3_changes(d->h) : 0;
    return rc == SQLITE_DONE ? 0 : (rc & 0xff) == SQLITE_FULL ? -ENOSPC : -EIO;
}

int db_checkpoint_retain(db *d, int keep, int *removed)
{
    /* one statement for every finished job (a window per job), so a pass is one transaction */
    sqlite3_stmt *st = db__prep(d, "DELETE FROM checkpoints WHERE id IN (SELECT id FROM (SELECT c.id, row_number()"
                                   " OVER (PARTITION BY c.job_id ORDER BY c.id DESC) AS rn FROM checkpoints c"
                                   " JOIN jobs j ON j.id = c.job_id"
                                   " WHERE j.status IN ('succeeded', 'failed', 'cancelled')) WHERE rn > ?)");
    if (!st) return -EIO;
    sqlite3_bind_int(st, 1, keep);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (removed) *removed = rc == SQLITE_DONE ? sqlite3_changes(d->h) : 0;
    return rc == SQLITE_DONE ? 0 : (rc & 0xff) == SQLITE_FULL ? -ENOSPC : -EIO;
}
