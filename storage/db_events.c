/* storage/db_events.c — what a running job produces, apart from its jobs row: events (global
 * increasing id, assigned by the caller), metric points (job, name, step -> value) and checkpoints.
 * Written only through a batch (db__*_write, called by db_batch_write inside its transaction), read
 * by the events, metrics and checkpoints routes. Loop thread only. Errors: see db.h. */
#include "storage/db_int.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- written by db_batch_write, inside its transaction ---- */

int db__events_write(db *d, const db_event *e, int n)
{
    if (n == 0) return 0;
    sqlite3_stmt *st = db__prep(d, "INSERT OR REPLACE INTO events (id, job_id, type, level, message, data, created_at)"
                                   " VALUES (?,?,?,?,?,?,?)");
    if (!st) return -EIO;
    int rc = SQLITE_DONE;
    for (int i = 0; i < n && rc == SQLITE_DONE; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, e[i].id);
        db__bind_text(st, 2, e[i].job_id);
        db__bind_text(st, 3, e[i].type);
        db__bind_text(st, 4, e[i].level ? e[i].level : "info");
        db__bind_text(st, 5, e[i].message ? e[i].message : "");
        db__bind_text(st, 6, e[i].data);
        sqlite3_bind_int64(st, 7, e[i].created_at);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int db__metrics_write(db *d, const db_metric *m, int n)
{
    if (n == 0) return 0;
    /* a job resumed from a checkpoint repeats steps: the newer value replaces the older */
    sqlite3_stmt *st = db__prep(d, "INSERT OR REPLACE INTO metrics (job_id, name, step, value) VALUES (?,?,?,?)");
    if (!st) return -EIO;
    int rc = SQLITE_DONE;
    for (int i = 0; i < n && rc == SQLITE_DONE; i++) {
        sqlite3_reset(st);
        db__bind_text(st, 1, m[i].job_id);
        db__bind_text(st, 2, m[i].name);
        sqlite3_bind_int(st, 3, m[i].step);
        sqlite3_bind_double(st, 4, isfinite(m[i].value) ? m[i].value : 0.0);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? db__metric_blocks_update(d, m, n) : -EIO;
}

int db__checkpoints_write(db *d, const db_checkpoint *c, int n)
{
    if (n == 0) return 0;
    sqlite3_stmt *st = db__prep(d, "INSERT INTO checkpoints (job_id, step, epoch, path, metrics, created_at)"
                                   " VALUES (?,?,?,?,?,?)");
    if (!st) return -EIO;
    int rc = SQLITE_DONE;
    for (int i = 0; i < n && rc == SQLITE_DONE; i++) {
        sqlite3_reset(st);
        db__bind_text(st, 1, c[i].job_id);
        sqlite3_bind_int(st, 2, c[i].step);
        sqlite3_bind_int(st, 3, c[i].epoch);
        db__bind_text(st, 4, c[i].path ? c[i].path : "");
        db__bind_text(st, 5, c[i].metrics);
        sqlite3_bind_int64(st, 6, c[i].created_at);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

/* ---- reads ---- */

int db_event_max_id(db *d, long long *out)
{
    sqlite3_stmt *st = db__prep(d, "SELECT coalesce(max(id), 0) FROM events");
    if (!st) return -EIO;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

int db_event_reserved(db *d, long long *out)
{
    sqlite3_stmt *st = db__prep(d, "SELECT coalesce(max(value), 0) FROM counters WHERE name = 'event_id_reserved'");
    if (!st) return -EIO;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

int db_event_reserve(db *d, long long upto)
{
    sqlite3_stmt *st = db__prep(d, "INSERT INTO counters (name, value) VALUES ('event_id_reserved', ?1)"
                                   " ON CONFLICT(name) DO UPDATE SET value = max(value, ?1)");
    if (!st) return -EIO;
    sqlite3_bind_int64(st, 1, upto);
    int rc = sqlite3_step(st);   /* autocommit: durable (synchronous=FULL) when it returns */
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int db_event_list(db *d, const char *job_id, long long after, int limit, db_event_fn fn, void *ud, int *has_more)
{
    sqlite3_stmt *st = db__prep(d, "SELECT id, type, level, message, data, created_at FROM events"
                                   " WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?");
    if (!st) return -EIO;
    db__bind_text(st, 1, job_id);
    sqlite3_bind_int64(st, 2, after);
    sqlite3_bind_int(st, 3, limit + 1);
    int rc, n = 0;
    if (has_more) *has_more = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n++ == limit) { if (has_more) *has_more = 1; break; }
        db_event e;
        memset(&e, 0, sizeof e);
        snprintf(e.job_id, sizeof e.job_id, "%s", job_id);
        e.id = sqlite3_column_int64(st, 0);
        e.type = (const char *)sqlite3_column_text(st, 1);
        e.level = (const char *)sqlite3_column_text(st, 2);
        e.message = (char *)sqlite3_column_text(st, 3);
        e.data = (char *)sqlite3_column_text(st, 4);
        e.created_at = sqlite3_column_int64(st, 5);
        if (fn(ud, &e)) break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

int db_metric_series(db *d, const char *job_id, const char *name, int after_step, db_point_fn fn, void *ud)
{
    sqlite3_stmt *st = db__prep(d, "SELECT step, value FROM metrics WHERE job_id = ? AND name = ? AND step > ?"
                                   " ORDER BY step");
    if (!st) return -EIO;
    db__bind_text(st, 1, job_id);
    db__bind_text(st, 2, name);
    sqlite3_bind_int(st, 3, after_step);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (fn(ud, sqlite3_column_int(st, 0), sqlite3_column_double(st, 1))) break;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

/* One seek per name (a loose index scan on the primary key): DISTINCT would visit every point of the job,
 * ~50 ms for a million. */
int db_metric_names(db *d, const char *job_id, db_name_fn fn, void *ud)
{
    sqlite3_stmt *st = db__prep(d, "SELECT name FROM metrics WHERE job_id = ?1 AND name > ?2 ORDER BY name LIMIT 1");
    if (!st) return -EIO;
    db__bind_text(st, 1, job_id);
    char *name = strdup("");
    int rc = name ? SQLITE_ROW : SQLITE_NOMEM;
    while (rc == SQLITE_ROW) {
        sqlite3_reset(st);
        db__bind_text(st, 2, name);
        if ((rc = sqlite3_step(st)) != SQLITE_ROW) break;
        free(name);
        if (!(name = strdup((const char *)sqlite3_column_text(st, 0)))) { rc = SQLITE_NOMEM; break; }
        if (fn(ud, name)) break;
    }
    free(name);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

int db_checkpoint_list(db *d, const char *job_id, long long after, int limit, db_checkpoint_fn fn, void *ud,
                       int *has_more)
{
    sqlite3_stmt *st = db__prep(d, "SELECT id, step, epoch, path, metrics, created_at FROM checkpoints"
                                   " WHERE job_id = ?1 AND (?2 <= 0 OR id < ?2) ORDER BY id DESC LIMIT ?3");
    if (!st) return -EIO;
    db__bind_text(st, 1, job_id);
    sqlite3_bind_int64(st, 2, after);
    sqlite3_bind_int(st, 3, limit + 1);
    int rc, n = 0;
    *has_more = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n++ == limit) { *has_more = 1; break; }
        db_checkpoint c;
        memset(&c, 0, sizeof c);
        snprintf(c.job_id, sizeof c.job_id, "%s", job_id);
        c.id = sqlite3_column_int64(st, 0);
        c.step = sqlite3_column_int(st, 1);
        c.epoch = sqlite3_column_int(st, 2);
        c.path = (char *)sqlite3_column_text(st, 3);
        c.metrics = (char *)sqlite3_column_text(st, 4);
        c.created_at = sqlite3_column_int64(st, 5);
        if (fn(ud, &c)) break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

