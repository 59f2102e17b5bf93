/* storage/db_sweeps.c — the sweeps and sweep_trials tables (db.h, "sweeps"): insert a sweep with its
 * trials in one transaction, read them back with each trial's job outcome joined in, record a trial's
 * job, change a sweep's status. Loop thread only. Errors: see db.h. */
#include "storage/db_int.h"
#include "storage/job_status.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void db_sweep_clear(db_sweep *s)
{
    free(s->body);
    free(s->best);
    free(s->fine_tuned_model);
    memset(s, 0, sizeof *s);
}

#define SWEEP_COLS "seq, id, coalesce(owner, ''), status, created_at, finished_at, body, best, fine_tuned_model"

static int read_sweep(sqlite3_stmt *st, db_sweep *s)
{
    memset(s, 0, sizeof *s);
    s->seq = sqlite3_column_int64(st, 0);
    db__col_copy(st, 1, s->id, sizeof s->id);
    db__col_copy(st, 2, s->owner, sizeof s->owner);
    if (job_status_parse((const char *)sqlite3_column_text(st, 3), &s->status)) return -EIO;
    s->created_at = sqlite3_column_int64(st, 4);
    s->finished_at = sqlite3_column_int64(st, 5);
    s->body = db__col_dup(st, 6);
    s->best = db__col_dup(st, 7);
    s->fine_tuned_model = db__col_dup(st, 8);
    return 0;
}

static int full(db *d) { return sqlite3_errcode(d->h) == SQLITE_FULL ? -ENOSPC : -EIO; }

int db_sweep_insert(db *d, const db_sweep *s, const db_trial *t, int n, const db_event *first)
{
    const char *status = job_status_name(s->status);
    if (!status) return -EINVAL;
    if (db__begin(d, NULL, 0)) return full(d);
    int out = 0;
    sqlite3_stmt *st = db__prep(d, "INSERT INTO sweeps (id, owner, status, created_at, body) VALUES (?,?,?,?,?)");
    if (!st) out = -EIO;
    if (!out) {
        db__bind_text(st, 1, s->id);
        db__bind_text(st, 2, s->owner[0] ? s->owner : NULL);
        db__bind_text(st, 3, status);
        sqlite3_bind_int64(st, 4, s->created_at);
        db__bind_text(st, 5, s->body);
        int rc = sqlite3_step(st);
        out = rc == SQLITE_DONE ? 0 : rc == SQLITE_CONSTRAINT ? -EEXIST : full(d);
    }
    sqlite3_finalize(st);
    st = out ? NULL : db__prep(d, "INSERT INTO sweep_trials (sweep_id, idx, parameters, seed) VALUES (?,?,?,?)");
    if (!out && !st) out = -EIO;
    for (int i = 0; !out && i < n; i++) {
        sqlite3_reset(st);
        db__bind_text(st, 1, s->id);
        sqlite3_bind_int(st, 2, t[i].idx);
        db__bind_text(st, 3, t[i].parameters);
        if (t[i].seed >= 0) sqlite3_bind_int64(st, 4, t[i].seed);
        else sqlite3_bind_null(st, 4);
        if (sqlite3_step(st) != SQLITE_DONE) out = full(d);
    }
    sqlite3_finalize(st);
    if (!out && first && db__events_write(d, first, 1) != 0) out = full(d);
    if (!out && db__commit(d, NULL, 0) != 0) out = full(d);
    if (out) db__rollback(d);
    return out;
}

int db_sweep_get(db *d, const char *id, db_sweep *out)
{
    sqlite3_stmt *st = db__prep(d, "SELECT " SWEEP_COLS " FROM sweeps WHERE id = ?");
    if (!st) return -EIO;
    db__bind_text(st, 1, id);
    int rc = sqlite3_step(st), ret = rc == SQLITE_ROW ? read_sweep(st, out) : rc == SQLITE_DONE ? -ENOENT : -EIO;
    if (rc == SQLITE_ROW && ret) db_sweep_clear(out);
    sqlite3_finalize(st);
    return ret;
}

int db_sweep_list(db *d, const char *owner, const char *after, int limit, db_sweep_fn fn, void *ud, int *has_more)
{
    long long before = -1;
    *has_more = 0;
    int found = after ? db__seq_of(d, "sweeps", after, &before) : 0;
    if (found) return found;
    sqlite3_stmt *st = db__prep(d, "SELECT " SWEEP_COLS " FROM sweeps WHERE (?1 < 0 OR seq < ?1)"
                                   " AND (?2 IS NULL OR coalesce(owner, '') = ?2) ORDER BY seq DESC LIMIT ?3");
    if (!st) return -EIO;
    sqlite3_bind_int64(st, 1, before);
    db__bind_text(st, 2, owner);
    sqlite3_bind_int(st, 3, limit + 1);
    int rc, n = 0, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n++ == limit) { *has_more = 1; break; }
        db_sweep s;
        if (read_sweep(st, &s) != 0) { db_sweep_clear(&s); ret = -EIO; break; }
        int stop = fn(ud, &s);
        db_sweep_clear(&s);
        if (stop) break;
    }
    if (!ret && rc != SQLITE_ROW && rc != SQLITE_DONE) ret = -EIO;
    sqlite3_finalize(st);
    return ret;
}

int db_sweep_ids_by_status(db *d, enum job_status status, int limit, char (*ids)[DB_ID_MAX], int *n)
{
    return db__ids_by_status(d, "sweeps", status, limit, ids, n);
}

int db_sweep_trials(db *d, const char *sweep_id, db_trial_fn fn, void *ud)
{
    sqlite3_stmt *st = db__prep(d, "SELECT t.idx, t.parameters, t.seed, t.job_id, j.status, j.best_valid_accuracy,"
                                   " (SELECT min(value) FROM metrics m WHERE m.job_id = t.job_id AND m.name = 'valid_loss'),"
                                   " j.step"
                                   " FROM sweep_trials t LEFT JOIN jobs j ON j.id = t.job_id"
                                   " WHERE t.sweep_id = ? ORDER BY t.idx");
    if (!st) return -EIO;
    db__bind_text(st, 1, sweep_id);
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_trial t;
        memset(&t, 0, sizeof t);
        t.idx = sqlite3_column_int(st, 0);
        t.parameters = db__col_dup(st, 1);
        t.seed = sqlite3_column_type(st, 2) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 2);
        db__col_copy(st, 3, t.job_id, sizeof t.job_id);
        enum job_status js;
        t.job_status = sqlite3_column_type(st, 4) != SQLITE_NULL &&
                               job_status_parse((const char *)sqlite3_column_text(st, 4), &js) == 0
                           ? (int)js
                           : -1;
        t.best_valid_accuracy = db__col_real(st, 5);
        t.best_valid_loss = db__col_real(st, 6);
        t.step = sqlite3_column_int(st, 7);
        int stop = fn(ud, &t);
        free(t.parameters);
        if (stop) break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) ret = -EIO;
    sqlite3_finalize(st);
    return ret;
}

int db_sweep_trial_job(db *d, const char *sweep_id, int idx, const char *job_id)
{
    sqlite3_stmt *st = db__prep(d, "UPDATE sweep_trials SET job_id = ?3 WHERE sweep_id = ?1 AND idx = ?2"
                                   " AND (job_id IS NULL OR job_id = ?3)");
    if (!st) return -EIO;
    db__bind_text(st, 1, sweep_id);
    sqlite3_bind_int(st, 2, idx);
    db__bind_text(st, 3, job_id);
    int rc = sqlite3_step(st);
    int changed = sqlite3_changes(d->h);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return full(d);
    return changed ? 0 : -EEXIST;
}

int db_sweep_update(db *d, const char *id, enum job_status status, long long finished_at, const char *best,
                    const char *fine_tuned_model)
{
    const char *name = job_status_name(status);
    if (!name) return -EINVAL;
    sqlite3_stmt *st = db__prep(d, "UPDATE sweeps SET status = ?2,"
                                   " finished_at = CASE WHEN ?3 > 0 THEN ?3 ELSE finished_at END,"
                                   " best = coalesce(?4, best), fine_tuned_model = coalesce(?5, fine_tuned_model)"
                                   " WHERE id = ?1");
    if (!st) return -EIO;
    db__bind_text(st, 1, id);
    db__bind_text(st, 2, name);
    sqlite3_bind_int64(st, 3, finished_at);
    db__bind_text(st, 4, best);
    db__bind_text(st, 5, fine_tuned_model);
    int rc = sqlite3_step(st);
    int changed = sqlite3_changes(d->h);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return full(d);
    return changed ? 0 : -ENOENT;
}

int db_sweep_of_job(db *d, const char *job_id, char sweep_id[DB_ID_MAX], enum job_status *status)
{
    sqlite3_stmt *st = db__prep(d, "SELECT s.id, s.status FROM sweep_trials t JOIN sweeps s ON s.id = t.sweep_id"
                                   " WHERE t.job_id = ? LIMIT 1");
    if (!st) return -EIO;
    db__bind_text(st, 1, job_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        db__col_copy(st, 0, sweep_id, DB_ID_MAX);
        if (job_status_parse((const char *)sqlite3_column_text(st, 1), status)) rc = SQLITE_CORRUPT;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}
