/* storage/db.c — SQLite schema, migrations and every query (see db.h). Loop thread only.
 * One connection, opened with SQLITE_OPEN_FULLMUTEX off (single owner), WAL + synchronous=FULL.
 * Why one connection: SQLite before 3.51.3 can corrupt a WAL database when several connections write
 * and checkpoint concurrently; Debian 12 ships 3.40.1, so all writes go through this one. */
#include "storage/db.h"
#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct db {
    sqlite3 *h;
};

/* Numbered migrations: index i brings the schema from version i to i+1. Never edit one that shipped. */
static const char *const migrations[] = {
    /* 1: jobs, events, metrics, checkpoints, files, models */
    "CREATE TABLE jobs ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  id TEXT NOT NULL UNIQUE,"
    "  owner TEXT,"
    "  status TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER,"
    "  body TEXT NOT NULL, method TEXT NOT NULL, extensions TEXT NOT NULL,"
    "  model TEXT NOT NULL, training_file TEXT NOT NULL, validation_file TEXT,"
    "  seed INTEGER NOT NULL, suffix TEXT, metadata TEXT, arch TEXT NOT NULL,"
    "  idem_key TEXT UNIQUE, body_hash TEXT,"
    "  step INTEGER NOT NULL DEFAULT 0, total_steps INTEGER NOT NULL DEFAULT 0,"
    "  epoch INTEGER NOT NULL DEFAULT 0, epochs INTEGER NOT NULL DEFAULT 0,"
    "  metrics TEXT, best_valid_accuracy REAL, final_valid_accuracy REAL, eta_seconds REAL,"
    "  progress_at INTEGER, fine_tuned_model TEXT,"
    "  error_code TEXT, error_message TEXT, error_param TEXT);"
    "CREATE INDEX jobs_status ON jobs(status, seq);"
    "CREATE TABLE events ("
    "  id INTEGER PRIMARY KEY, job_id TEXT NOT NULL, type TEXT NOT NULL, level TEXT NOT NULL,"
    "  message TEXT NOT NULL, data TEXT, created_at INTEGER NOT NULL);"
    "CREATE INDEX events_job ON events(job_id, id);"
    "CREATE TABLE metrics ("
    "  job_id TEXT NOT NULL, name TEXT NOT NULL, step INTEGER NOT NULL, value REAL NOT NULL,"
    "  PRIMARY KEY (job_id, name, step)) WITHOUT ROWID;"
    "CREATE TABLE checkpoints ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, step INTEGER NOT NULL,"
    "  epoch INTEGER NOT NULL, path TEXT NOT NULL, metrics TEXT, created_at INTEGER NOT NULL);"
    "CREATE INDEX checkpoints_job ON checkpoints(job_id, id);"
    "CREATE TABLE files ("
    "  id TEXT PRIMARY KEY, filename TEXT NOT NULL, purpose TEXT NOT NULL, bytes INTEGER NOT NULL,"
    "  format TEXT NOT NULL, path TEXT NOT NULL, created_at INTEGER NOT NULL);"
    "CREATE TABLE models ("
    "  id TEXT PRIMARY KEY, job_id TEXT, arch TEXT NOT NULL, path TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL);",
    /* 2: users, API tokens (hashes only), the audit trail; owners of files and models; scheduling
     *    fields of jobs (priority 0-9, effective threads, requeued by preemption) */
    "CREATE TABLE users ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, uid INTEGER UNIQUE,"
    "  admin INTEGER NOT NULL DEFAULT 0, bootstrap INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL);"
    "CREATE TABLE tokens ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL REFERENCES users(id),"
    "  prefix TEXT NOT NULL, hash BLOB NOT NULL, created_at INTEGER NOT NULL, revoked_at INTEGER);"
    "CREATE INDEX tokens_prefix ON tokens(prefix);"
    "CREATE TABLE audit ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,"
    "  target TEXT NOT NULL, outcome TEXT NOT NULL, remote TEXT NOT NULL, detail TEXT NOT NULL);"
    "ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 5;"
    "ALTER TABLE jobs ADD COLUMN threads INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE jobs ADD COLUMN preempted INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX jobs_owner ON jobs(owner, seq);"
    "ALTER TABLE files ADD COLUMN owner TEXT;"
    "ALTER TABLE models ADD COLUMN owner TEXT;",
};
#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

const char *db_errmsg(db *d) { return d && d->h ? sqlite3_errmsg(d->h) : "no database"; }

static int exec(db *d, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(d->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
        if (err) snprintf(err, errlen, "%s", msg ? msg : sqlite3_errmsg(d->h));
        sqlite3_free(msg);
        return -EIO;
    }
    return 0;
}

static int migrate(db *d, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int version = 0;
    if (sqlite3_prepare_v2(d->h, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK) goto fail;
    if (sqlite3_step(st) == SQLITE_ROW) version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version > N_MIGRATIONS) {
        snprintf(err, errlen, "database schema version %d is newer than this coretuned (%d)", version, N_MIGRATIONS);
        return -EPROTO;
    }
    for (int v = version; v < N_MIGRATIONS; v++) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
        if (exec(d, "BEGIN IMMEDIATE", err, errlen)) return -EIO;
        if (exec(d, migrations[v], err, errlen) || exec(d, sql, err, errlen)) {
            exec(d, "ROLLBACK", NULL, 0);
            return -EIO;
        }
        if (exec(d, "COMMIT", err, errlen)) return -EIO;
    }
    return 0;
fail:
    snprintf(err, errlen, "%s", sqlite3_errmsg(d->h));
    return -EIO;
}

int db_open(db **out, const char *path, char *err, size_t errlen)
{
    db *d = calloc(1, sizeof *d);
    if (!d) { snprintf(err, errlen, "out of memory"); return -ENOMEM; }
    int rc = sqlite3_open_v2(path, &d->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", path, d->h ? sqlite3_errmsg(d->h) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(d->h, 5000); /* an operator's sqlite3 shell may hold a read lock briefly */
    if (exec(d, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", err, errlen)) goto fail;
    if (migrate(d, err, errlen)) goto fail;
    *out = d;
    return 0;
fail:
    db_close(d);
    return -EIO;
}

void db_close(db *d)
{
    if (!d) return;
    sqlite3_close(d->h);
    free(d);
}

/* ---- helpers ---- */

static sqlite3_stmt *prep(db *d, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(d->h, sql, -1, &st, NULL) != SQLITE_OK) return NULL;
    return st;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s) sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, i);
}

static void bind_real(sqlite3_stmt *st, int i, double x)
{
    if (isnan(x)) sqlite3_bind_null(st, i);
    else sqlite3_bind_double(st, i, x);
}

static char *col_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    return s ? strdup((const char *)s) : NULL;
}

static void col_copy(sqlite3_stmt *st, int i, char *dst, size_t n)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    snprintf(dst, n, "%s", s ? (const char *)s : "");
}

static double col_real(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

/* ---- jobs ---- */

void db_job_clear(db_job *j)
{
    char **heap[] = {&j->body, &j->method, &j->extensions, &j->model, &j->training_file, &j->validation_file,
                     &j->suffix, &j->metadata, &j->idem_key, &j->body_hash, &j->metrics, &j->fine_tuned_model,
                     &j->error_code, &j->error_message, &j->error_param};
    for (size_t i = 0; i < sizeof heap / sizeof heap[0]; i++) free(*heap[i]);
    memset(j, 0, sizeof *j);
}

#define JOB_COLS "seq, id, status, created_at, started_at, finished_at, body, method, extensions, model," \
                 " training_file, validation_file, seed, suffix, metadata, arch, idem_key, body_hash, step," \
                 " total_steps, epoch, epochs, metrics, best_valid_accuracy, final_valid_accuracy, eta_seconds," \
                 " progress_at, fine_tuned_model, error_code, error_message, error_param," \
                 " coalesce(owner, ''), priority, threads, preempted"

static void read_job(sqlite3_stmt *st, db_job *j)
{
    memset(j, 0, sizeof *j);
    j->seq = sqlite3_column_int64(st, 0);
    col_copy(st, 1, j->id, sizeof j->id);
    col_copy(st, 2, j->status, sizeof j->status);
    j->created_at = sqlite3_column_int64(st, 3);
    j->started_at = sqlite3_column_int64(st, 4);
    j->finished_at = sqlite3_column_int64(st, 5);
    j->body = col_dup(st, 6);
    j->method = col_dup(st, 7);
    j->extensions = col_dup(st, 8);
    j->model = col_dup(st, 9);
    j->training_file = col_dup(st, 10);
    j->validation_file = col_dup(st, 11);
    j->seed = sqlite3_column_int64(st, 12);
    j->suffix = col_dup(st, 13);
    j->metadata = col_dup(st, 14);
    col_copy(st, 15, j->arch, sizeof j->arch);
    j->idem_key = col_dup(st, 16);
    j->body_hash = col_dup(st, 17);
    j->step = sqlite3_column_int(st, 18);
    j->total_steps = sqlite3_column_int(st, 19);
    j->epoch = sqlite3_column_int(st, 20);
    j->epochs = sqlite3_column_int(st, 21);
    j->metrics = col_dup(st, 22);
    j->best_valid_accuracy = col_real(st, 23);
    j->final_valid_accuracy = col_real(st, 24);
    j->eta_seconds = col_real(st, 25);
    j->progress_at = sqlite3_column_int64(st, 26);
    j->fine_tuned_model = col_dup(st, 27);
    j->error_code = col_dup(st, 28);
    j->error_message = col_dup(st, 29);
    j->error_param = col_dup(st, 30);
    col_copy(st, 31, j->owner, sizeof j->owner);
    j->priority = sqlite3_column_int(st, 32);
    j->threads = sqlite3_column_int(st, 33);
    j->preempted = sqlite3_column_int(st, 34);
}

int db_job_insert(db *d, const db_job *j)
{
    sqlite3_stmt *st = prep(d, "INSERT INTO jobs (id, status, created_at, body, method, extensions, model,"
                               " training_file, validation_file, seed, suffix, metadata, arch, idem_key, body_hash,"
                               " total_steps, epochs, owner, priority, threads)"
                               " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    if (!st) return -EIO;
    bind_text(st, 1, j->id);
    bind_text(st, 2, j->status);
    sqlite3_bind_int64(st, 3, j->created_at);
    bind_text(st, 4, j->body);
    bind_text(st, 5, j->method);
    bind_text(st, 6, j->extensions);
    bind_text(st, 7, j->model);
    bind_text(st, 8, j->training_file);
    bind_text(st, 9, j->validation_file);
    sqlite3_bind_int64(st, 10, j->seed);
    bind_text(st, 11, j->suffix);
    bind_text(st, 12, j->metadata);
    bind_text(st, 13, j->arch);
    bind_text(st, 14, j->idem_key);
    bind_text(st, 15, j->body_hash);
    sqlite3_bind_int(st, 16, j->total_steps);
    sqlite3_bind_int(st, 17, j->epochs);
    bind_text(st, 18, j->owner[0] ? j->owner : NULL);
    sqlite3_bind_int(st, 19, j->priority);
    sqlite3_bind_int(st, 20, j->threads > 0 ? j->threads : 1);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_CONSTRAINT) return -EEXIST;
    return rc == SQLITE_DONE ? 0 : -EIO;
}

static int job_by(db *d, const char *where, const char *key, db_job *out)
{
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT " JOB_COLS " FROM jobs WHERE %s = ?", where);
    sqlite3_stmt *st = prep(d, sql);
    if (!st) return -EIO;
    bind_text(st, 1, key);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) read_job(st, out);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int db_job_get(db *d, const char *id, db_job *out) { return job_by(d, "id", id, out); }
int db_job_find_idem(db *d, const char *key, db_job *out) { return job_by(d, "idem_key", key, out); }

int db_job_list(db *d, const char *owner, const char *after, int limit, db_job_fn fn, void *ud, int *has_more)
{
    long long before = -1;
    *has_more = 0;
    if (after) {
        sqlite3_stmt *st = prep(d, "SELECT seq FROM jobs WHERE id = ?");
        if (!st) return -EIO;
        bind_text(st, 1, after);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) before = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        if (rc != SQLITE_ROW) return rc == SQLITE_DONE ? -ENOENT : -EIO;
    }
    sqlite3_stmt *st = prep(d, "SELECT " JOB_COLS " FROM jobs WHERE (?1 < 0 OR seq < ?1) AND (?3 IS NULL OR owner = ?3)"
                               " ORDER BY seq DESC LIMIT ?2");
    if (!st) return -EIO;
    sqlite3_bind_int64(st, 1, before);
    sqlite3_bind_int(st, 2, limit + 1);
    bind_text(st, 3, owner);
    int rc, n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n++ == limit) { *has_more = 1; break; }
        db_job j;
        read_job(st, &j);
        int stop = fn(ud, &j);
        db_job_clear(&j);
        if (stop) break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

int db_job_ids_by_status(db *d, const char *status, int limit, char (*ids)[DB_ID_MAX], int *n)
{
    sqlite3_stmt *st = prep(d, "SELECT id FROM jobs WHERE status = ? ORDER BY seq LIMIT ?");
    if (!st) return -EIO;
    bind_text(st, 1, status);
    sqlite3_bind_int(st, 2, limit);
    int rc;
    *n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) col_copy(st, 0, ids[(*n)++], DB_ID_MAX);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int db_job_queue_position(db *d, long long seq, int *out)
{
    sqlite3_stmt *st = prep(d, "SELECT count(*) FROM jobs WHERE status = 'queued' AND seq < ?");
    if (!st) return -EIO;
    sqlite3_bind_int64(st, 1, seq);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int(st, 0) + 1;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

int db_job_queue(db *d, db_queued_fn fn, void *ud)
{
    sqlite3_stmt *st = prep(d, "SELECT seq, created_at, id, coalesce(owner, ''), priority, threads, preempted"
                               " FROM jobs WHERE status = 'queued' ORDER BY seq");
    if (!st) return -EIO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_queued q;
        q.seq = sqlite3_column_int64(st, 0);
        q.created_at = sqlite3_column_int64(st, 1);
        col_copy(st, 2, q.id, sizeof q.id);
        col_copy(st, 3, q.owner, sizeof q.owner);
        q.priority = sqlite3_column_int(st, 4);
        q.threads = sqlite3_column_int(st, 5);
        q.preempted = sqlite3_column_int(st, 6);
        if (fn(ud, &q)) break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

int db_job_count(db *d, const char *owner, const char *status, int *out)
{
    sqlite3_stmt *st = prep(d, "SELECT count(*) FROM jobs WHERE coalesce(owner, '') = ? AND status = ?");
    if (!st) return -EIO;
    bind_text(st, 1, owner ? owner : "");
    bind_text(st, 2, status);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

int db_job_counts(db *d, db_count_fn fn, void *ud)
{
    sqlite3_stmt *st = prep(d, "SELECT coalesce(owner, ''), status, count(*) FROM jobs GROUP BY 1, 2 ORDER BY 1, 2");
    if (!st) return -EIO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (fn(ud, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
               sqlite3_column_int64(st, 2)))
            break;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

int db_job_mean_duration(db *d, double *out)
{
    sqlite3_stmt *st = prep(d, "SELECT coalesce(avg(finished_at - started_at), 0) FROM (SELECT finished_at,"
                               " started_at FROM jobs WHERE status = 'succeeded' AND started_at > 0"
                               " ORDER BY finished_at DESC LIMIT 20)");
    if (!st) return -EIO;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

int db_job_requeue_running(db *d, int *count)
{
    sqlite3_stmt *st = prep(d, "UPDATE jobs SET status = 'queued' WHERE status = 'running'");
    if (!st) return -EIO;
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    *count = sqlite3_changes(d->h);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

/* ---- the batch ---- */

#define GROW(arr, n, cap) \
    do { \
        if ((n) == (cap)) { \
            int c2 = (cap) ? 2 * (cap) : 16; \
            void *p2 = realloc((arr), (size_t)c2 * sizeof *(arr)); \
            if (!p2) return NULL; \
            (arr) = p2; \
            (cap) = c2; \
        } \
        memset(&(arr)[(n)], 0, sizeof *(arr)); \
        return &(arr)[(n)++]; \
    } while (0)

db_event *db_batch_event(db_batch *b) { GROW(b->events, b->n_events, b->cap_events); }
db_metric *db_batch_metric(db_batch *b) { GROW(b->metrics, b->n_metrics, b->cap_metrics); }
db_checkpoint *db_batch_checkpoint(db_batch *b) { GROW(b->ckpts, b->n_ckpts, b->cap_ckpts); }
db_status *db_batch_status(db_batch *b) { GROW(b->status, b->n_status, b->cap_status); }
db_audit *db_batch_audit(db_batch *b) { GROW(b->audit, b->n_audit, b->cap_audit); }
static db_progress *batch_progress_new(db_batch *b) { GROW(b->progress, b->n_progress, b->cap_progress); }

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
    return !b->n_events && !b->n_metrics && !b->n_progress && !b->n_ckpts && !b->n_status && !b->n_audit;
}

void db_batch_reset(db_batch *b)
{
    for (int i = 0; i < b->n_events; i++) { free(b->events[i].message); free(b->events[i].data); }
    for (int i = 0; i < b->n_progress; i++) free(b->progress[i].metrics);
    for (int i = 0; i < b->n_ckpts; i++) { free(b->ckpts[i].path); free(b->ckpts[i].metrics); }
    for (int i = 0; i < b->n_status; i++) {
        db_status *s = &b->status[i];
        free(s->error_code); free(s->error_message); free(s->error_param);
        free(s->fine_tuned_model); free(s->model_path);
    }
    b->n_events = b->n_metrics = b->n_progress = b->n_ckpts = b->n_status = b->n_audit = 0;
}

void db_batch_free(db_batch *b)
{
    db_batch_reset(b);
    free(b->events); free(b->metrics); free(b->progress); free(b->ckpts); free(b->status); free(b->audit);
    memset(b, 0, sizeof *b);
}

static int write_status(db *d, const db_status *s)
{
    sqlite3_stmt *st = prep(d, "UPDATE jobs SET status = ?2,"
                               " started_at = CASE WHEN ?3 > 0 THEN ?3 WHEN ?3 < 0 THEN NULL ELSE started_at END,"
                               " finished_at = CASE WHEN ?4 > 0 THEN ?4 WHEN ?4 < 0 THEN NULL ELSE finished_at END,"
                               " error_code = ?5, error_message = ?6, error_param = ?7,"
                               " fine_tuned_model = coalesce(?8, fine_tuned_model), preempted = ?9 WHERE id = ?1");
    if (!st) return -EIO;
    bind_text(st, 1, s->job_id);
    bind_text(st, 2, s->status);
    sqlite3_bind_int64(st, 3, s->started_at);
    sqlite3_bind_int64(st, 4, s->finished_at);
    bind_text(st, 5, s->error_code);
    bind_text(st, 6, s->error_message);
    bind_text(st, 7, s->error_param);
    bind_text(st, 8, s->fine_tuned_model);
    sqlite3_bind_int(st, 9, s->preempted);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return -EIO;
    if (!s->fine_tuned_model || !s->model_path) return 0;
    st = prep(d, "INSERT OR REPLACE INTO models (id, job_id, arch, path, created_at, owner) VALUES (?,?,?,?,?,?)");
    if (!st) return -EIO;
    bind_text(st, 6, s->owner[0] ? s->owner : NULL);
    bind_text(st, 1, s->fine_tuned_model);
    bind_text(st, 2, s->job_id);
    bind_text(st, 3, s->arch);
    bind_text(st, 4, s->model_path);
    sqlite3_bind_int64(st, 5, s->finished_at > 0 ? s->finished_at : 0);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

static int write_rows(db *d, const db_batch *b)
{
    for (int i = 0; i < b->n_status; i++)
        if (write_status(d, &b->status[i])) return -EIO;
    for (int i = 0; i < b->n_audit; i++)
        if (db_audit_insert(d, &b->audit[i])) return -EIO;
    sqlite3_stmt *st = NULL;
    int rc = SQLITE_DONE;
    if (b->n_events) {
        st = prep(d, "INSERT OR REPLACE INTO events (id, job_id, type, level, message, data, created_at)"
                     " VALUES (?,?,?,?,?,?,?)");
        if (!st) return -EIO;
        for (int i = 0; i < b->n_events && rc == SQLITE_DONE; i++) {
            const db_event *e = &b->events[i];
            sqlite3_reset(st);
            sqlite3_bind_int64(st, 1, e->id);
            bind_text(st, 2, e->job_id);
            bind_text(st, 3, e->type);
            bind_text(st, 4, e->level ? e->level : "info");
            bind_text(st, 5, e->message ? e->message : "");
            bind_text(st, 6, e->data);
            sqlite3_bind_int64(st, 7, e->created_at);
            rc = sqlite3_step(st);
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) return -EIO;
    }
    if (b->n_metrics) {
        /* a job resumed from a checkpoint repeats steps: the newer value replaces the older */
        st = prep(d, "INSERT OR REPLACE INTO metrics (job_id, name, step, value) VALUES (?,?,?,?)");
        if (!st) return -EIO;
        for (int i = 0; i < b->n_metrics && rc == SQLITE_DONE; i++) {
            const db_metric *m = &b->metrics[i];
            sqlite3_reset(st);
            bind_text(st, 1, m->job_id);
            bind_text(st, 2, m->name);
            sqlite3_bind_int(st, 3, m->step);
            sqlite3_bind_double(st, 4, isfinite(m->value) ? m->value : 0.0);
            rc = sqlite3_step(st);
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) return -EIO;
    }
    if (b->n_progress) {
        st = prep(d, "UPDATE jobs SET step = ?2, total_steps = ?3, epoch = ?4, epochs = ?5,"
                     " metrics = coalesce(?6, metrics), best_valid_accuracy = coalesce(?7, best_valid_accuracy),"
                     " final_valid_accuracy = coalesce(?8, final_valid_accuracy), eta_seconds = ?9,"
                     " progress_at = ?10 WHERE id = ?1");
        if (!st) return -EIO;
        for (int i = 0; i < b->n_progress && rc == SQLITE_DONE; i++) {
            const db_progress *p = &b->progress[i];
            sqlite3_reset(st);
            bind_text(st, 1, p->job_id);
            sqlite3_bind_int(st, 2, p->step);
            sqlite3_bind_int(st, 3, p->total_steps);
            sqlite3_bind_int(st, 4, p->epoch);
            sqlite3_bind_int(st, 5, p->epochs);
            bind_text(st, 6, p->metrics);
            bind_real(st, 7, p->best_valid_accuracy);
            bind_real(st, 8, p->final_valid_accuracy);
            bind_real(st, 9, p->eta_seconds);
            sqlite3_bind_int64(st, 10, p->at);
            rc = sqlite3_step(st);
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) return -EIO;
    }
    if (b->n_ckpts) {
        st = prep(d, "INSERT INTO checkpoints (job_id, step, epoch, path, metrics, created_at) VALUES (?,?,?,?,?,?)");
        if (!st) return -EIO;
        for (int i = 0; i < b->n_ckpts && rc == SQLITE_DONE; i++) {
            const db_checkpoint *c = &b->ckpts[i];
            sqlite3_reset(st);
            bind_text(st, 1, c->job_id);
            sqlite3_bind_int(st, 2, c->step);
            sqlite3_bind_int(st, 3, c->epoch);
            bind_text(st, 4, c->path ? c->path : "");
            bind_text(st, 5, c->metrics);
            sqlite3_bind_int64(st, 6, c->created_at);
            rc = sqlite3_step(st);
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) return -EIO;
    }
    return 0;
}

int db_batch_write(db *d, const db_batch *b, char *err, size_t errlen)
{
    if (db_batch_empty(b)) return 0;
    if (exec(d, "BEGIN IMMEDIATE", err, errlen)) return -EIO;
    if (write_rows(d, b)) {
        if (err) snprintf(err, errlen, "%s", sqlite3_errmsg(d->h));
        exec(d, "ROLLBACK", NULL, 0);
        return -EIO;
    }
    return exec(d, "COMMIT", err, errlen);
}

/* ---- reads of progress ---- */

int db_event_max_id(db *d, long long *out)
{
    sqlite3_stmt *st = prep(d, "SELECT coalesce(max(id), 0) FROM events");
    if (!st) return -EIO;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

int db_event_list(db *d, const char *job_id, long long after, int limit, db_event_fn fn, void *ud, int *has_more)
{
    sqlite3_stmt *st = prep(d, "SELECT id, type, level, message, data, created_at FROM events"
                               " WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?");
    if (!st) return -EIO;
    bind_text(st, 1, job_id);
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
    sqlite3_stmt *st = prep(d, "SELECT step, value FROM metrics WHERE job_id = ? AND name = ? AND step > ? ORDER BY step");
    if (!st) return -EIO;
    bind_text(st, 1, job_id);
    bind_text(st, 2, name);
    sqlite3_bind_int(st, 3, after_step);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (fn(ud, sqlite3_column_int(st, 0), sqlite3_column_double(st, 1))) break;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

int db_metric_names(db *d, const char *job_id, db_name_fn fn, void *ud)
{
    sqlite3_stmt *st = prep(d, "SELECT DISTINCT name FROM metrics WHERE job_id = ? ORDER BY name");
    if (!st) return -EIO;
    bind_text(st, 1, job_id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (fn(ud, (const char *)sqlite3_column_text(st, 0))) break;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

int db_checkpoint_list(db *d, const char *job_id, long long after, int limit, db_checkpoint_fn fn, void *ud,
                       int *has_more)
{
    sqlite3_stmt *st = prep(d, "SELECT id, step, epoch, path, metrics, created_at FROM checkpoints"
                               " WHERE job_id = ?1 AND (?2 <= 0 OR id < ?2) ORDER BY id DESC LIMIT ?3");
    if (!st) return -EIO;
    bind_text(st, 1, job_id);
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

/* ---- models and files ---- */

static void read_model(sqlite3_stmt *st, db_model *m)
{
    memset(m, 0, sizeof *m);
    col_copy(st, 0, m->id, sizeof m->id);
    col_copy(st, 1, m->job_id, sizeof m->job_id);
    col_copy(st, 2, m->arch, sizeof m->arch);
    col_copy(st, 3, m->path, sizeof m->path);
    m->created_at = sqlite3_column_int64(st, 4);
    col_copy(st, 5, m->owner, sizeof m->owner);
}

int db_model_get(db *d, const char *id, db_model *out)
{
    sqlite3_stmt *st = prep(d, "SELECT id, job_id, arch, path, created_at, coalesce(owner, '') FROM models WHERE id = ?");
    if (!st) return -EIO;
    bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) read_model(st, out);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int db_model_list(db *d, const char *owner, db_model_fn fn, void *ud)
{
    sqlite3_stmt *st = prep(d, "SELECT id, job_id, arch, path, created_at, coalesce(owner, '') FROM models"
                               " WHERE ?1 IS NULL OR owner = ?1 ORDER BY created_at, id");
    if (!st) return -EIO;
    bind_text(st, 1, owner);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_model m;
        read_model(st, &m);
        if (fn(ud, &m)) break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

int db_file_insert(db *d, const db_file *f)
{
    sqlite3_stmt *st = prep(d, "INSERT INTO files (id, filename, purpose, bytes, format, path, created_at, owner)"
                               " VALUES (?,?,?,?,?,?,?,?)");
    if (!st) return -EIO;
    bind_text(st, 1, f->id);
    bind_text(st, 2, f->filename);
    bind_text(st, 3, f->purpose);
    sqlite3_bind_int64(st, 4, f->bytes);
    bind_text(st, 5, f->format);
    bind_text(st, 6, f->path);
    sqlite3_bind_int64(st, 7, f->created_at);
    bind_text(st, 8, f->owner[0] ? f->owner : NULL);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_CONSTRAINT) return -EEXIST;
    return rc == SQLITE_DONE ? 0 : -EIO;
}

static void read_file_row(sqlite3_stmt *st, db_file *f)
{
    memset(f, 0, sizeof *f);
    col_copy(st, 0, f->id, sizeof f->id);
    col_copy(st, 1, f->filename, sizeof f->filename);
    col_copy(st, 2, f->purpose, sizeof f->purpose);
    f->bytes = sqlite3_column_int64(st, 3);
    col_copy(st, 4, f->format, sizeof f->format);
    col_copy(st, 5, f->path, sizeof f->path);
    f->created_at = sqlite3_column_int64(st, 6);
    col_copy(st, 7, f->owner, sizeof f->owner);
}

int db_file_get(db *d, const char *id, db_file *out)
{
    sqlite3_stmt *st = prep(d, "SELECT id, filename, purpose, bytes, format, path, created_at, coalesce(owner, '')"
                               " FROM files WHERE id = ?");
    if (!st) return -EIO;
    bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) read_file_row(st, out);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int db_file_list(db *d, const char *owner, db_file_fn fn, void *ud)
{
    sqlite3_stmt *st = prep(d, "SELECT id, filename, purpose, bytes, format, path, created_at, coalesce(owner, '')"
                               " FROM files WHERE ?1 IS NULL OR owner = ?1 ORDER BY created_at, id");
    if (!st) return -EIO;
    bind_text(st, 1, owner);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_file f;
        read_file_row(st, &f);
        if (fn(ud, &f)) break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

int db_file_bytes(db *d, const char *owner, long long *out)
{
    sqlite3_stmt *st = prep(d, "SELECT coalesce(sum(bytes), 0) FROM files WHERE coalesce(owner, '') = ?");
    if (!st) return -EIO;
    bind_text(st, 1, owner ? owner : "");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

/* ---- users, tokens, audit ---- */

#define USER_COLS "id, name, coalesce(uid, -1), admin, bootstrap, created_at"

static void read_user(sqlite3_stmt *st, db_user *u)
{
    memset(u, 0, sizeof *u);
    u->id = sqlite3_column_int64(st, 0);
    col_copy(st, 1, u->name, sizeof u->name);
    u->uid = sqlite3_column_int64(st, 2);
    u->admin = sqlite3_column_int(st, 3);
    u->bootstrap = sqlite3_column_int(st, 4);
    u->created_at = sqlite3_column_int64(st, 5);
}

int db_user_add(db *d, const db_user *u, long long *id)
{
    sqlite3_stmt *st = prep(d, "INSERT INTO users (name, uid, admin, bootstrap, created_at) VALUES (?,?,?,?,?)");
    if (!st) return -EIO;
    bind_text(st, 1, u->name);
    if (u->uid >= 0) sqlite3_bind_int64(st, 2, u->uid);
    else sqlite3_bind_null(st, 2);
    sqlite3_bind_int(st, 3, u->admin);
    sqlite3_bind_int(st, 4, u->bootstrap);
    sqlite3_bind_int64(st, 5, u->created_at);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_CONSTRAINT) return -EEXIST;
    if (rc != SQLITE_DONE) return -EIO;
    if (id) *id = sqlite3_last_insert_rowid(d->h);
    return 0;
}

int db_user_count(db *d, int *out)
{
    sqlite3_stmt *st = prep(d, "SELECT count(*) FROM users");
    if (!st) return -EIO;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

static int user_where(db *d, const char *where, const char *stext, long long ival, db_user *out)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT " USER_COLS " FROM users WHERE %s ORDER BY id LIMIT 1", where);
    sqlite3_stmt *st = prep(d, sql);
    if (!st) return -EIO;
    if (stext) bind_text(st, 1, stext);
    else if (strchr(where, '?')) sqlite3_bind_int64(st, 1, ival);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) read_user(st, out);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int db_user_by_name(db *d, const char *name, db_user *out) { return user_where(d, "name = ?", name, 0, out); }
int db_user_by_id(db *d, long long id, db_user *out) { return user_where(d, "id = ?", NULL, id, out); }
int db_user_by_uid(db *d, long long uid, db_user *out) { return user_where(d, "uid = ?", NULL, uid, out); }
int db_user_bootstrap(db *d, db_user *out) { return user_where(d, "bootstrap = 1", NULL, 0, out); }

int db_user_list(db *d, db_user_fn fn, void *ud)
{
    sqlite3_stmt *st = prep(d, "SELECT " USER_COLS " FROM users ORDER BY id");
    if (!st) return -EIO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_user u;
        read_user(st, &u);
        if (fn(ud, &u)) break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

int db_token_add(db *d, const db_token *t, long long *id)
{
    sqlite3_stmt *st = prep(d, "INSERT INTO tokens (user_id, prefix, hash, created_at) VALUES (?,?,?,?)");
    if (!st) return -EIO;
    sqlite3_bind_int64(st, 1, t->user_id);
    bind_text(st, 2, t->prefix);
    sqlite3_bind_blob(st, 3, t->hash, (int)sizeof t->hash, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, t->created_at);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return -EIO;
    if (id) *id = sqlite3_last_insert_rowid(d->h);
    return 0;
}

static int token_walk(sqlite3_stmt *st, db_token_fn fn, void *ud)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_token t;
        memset(&t, 0, sizeof t);
        t.id = sqlite3_column_int64(st, 0);
        t.user_id = sqlite3_column_int64(st, 1);
        col_copy(st, 2, t.prefix, sizeof t.prefix);
        if (sqlite3_column_bytes(st, 3) == (int)sizeof t.hash) memcpy(t.hash, sqlite3_column_blob(st, 3), sizeof t.hash);
        t.created_at = sqlite3_column_int64(st, 4);
        t.revoked_at = sqlite3_column_int64(st, 5);
        col_copy(st, 6, t.user, sizeof t.user);
        if (fn(ud, &t)) break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

#define TOKEN_SELECT "SELECT t.id, t.user_id, t.prefix, t.hash, t.created_at, coalesce(t.revoked_at, 0), u.name" \
                     " FROM tokens t JOIN users u ON u.id = t.user_id"

int db_token_by_prefix(db *d, const char *prefix, db_token_fn fn, void *ud)
{
    sqlite3_stmt *st = prep(d, TOKEN_SELECT " WHERE t.prefix = ? AND t.revoked_at IS NULL ORDER BY t.id");
    if (!st) return -EIO;
    bind_text(st, 1, prefix);
    return token_walk(st, fn, ud);
}

int db_token_list(db *d, const char *owner, db_token_fn fn, void *ud)
{
    sqlite3_stmt *st = prep(d, TOKEN_SELECT " WHERE ?1 IS NULL OR u.name = ?1 ORDER BY t.id DESC");
    if (!st) return -EIO;
    bind_text(st, 1, owner);
    return token_walk(st, fn, ud);
}

int db_token_revoke(db *d, const char *id_or_prefix, long long at, int *count)
{
    const char *num = !strncmp(id_or_prefix, "tok-", 4) ? id_or_prefix + 4 : id_or_prefix;
    char *end;
    long long id = strtoll(num, &end, 10);
    int by_id = *num && !*end && id > 0;
    sqlite3_stmt *st = prep(d, by_id ? "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL"
                                     : "UPDATE tokens SET revoked_at = ?2 WHERE prefix = ?1 AND revoked_at IS NULL");
    if (!st) return -EIO;
    if (by_id) sqlite3_bind_int64(st, 1, id);
    else bind_text(st, 1, id_or_prefix);
    sqlite3_bind_int64(st, 2, at);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    *count = sqlite3_changes(d->h);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int db_audit_insert(db *d, const db_audit *a)
{
    sqlite3_stmt *st = prep(d, "INSERT INTO audit (at, actor, action, target, outcome, remote, detail)"
                               " VALUES (?,?,?,?,?,?,?)");
    if (!st) return -EIO;
    sqlite3_bind_int64(st, 1, a->at);
    bind_text(st, 2, a->actor);
    bind_text(st, 3, a->action);
    bind_text(st, 4, a->target);
    bind_text(st, 5, a->outcome);
    bind_text(st, 6, a->remote);
    bind_text(st, 7, a->detail);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int db_audit_list(db *d, long long before, int limit, db_audit_fn fn, void *ud, int *has_more)
{
    sqlite3_stmt *st = prep(d, "SELECT id, at, actor, action, target, outcome, remote, detail FROM audit"
                               " WHERE ?1 <= 0 OR id < ?1 ORDER BY id DESC LIMIT ?2");
    if (!st) return -EIO;
    sqlite3_bind_int64(st, 1, before);
    sqlite3_bind_int(st, 2, limit + 1);
    int rc, n = 0;
    *has_more = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n++ == limit) { *has_more = 1; break; }
        db_audit a;
        memset(&a, 0, sizeof a);
        a.id = sqlite3_column_int64(st, 0);
        a.at = sqlite3_column_int64(st, 1);
        col_copy(st, 2, a.actor, sizeof a.actor);
        col_copy(st, 3, a.action, sizeof a.action);
        col_copy(st, 4, a.target, sizeof a.target);
        col_copy(st, 5, a.outcome, sizeof a.outcome);
        col_copy(st, 6, a.remote, sizeof a.remote);
        col_copy(st, 7, a.detail, sizeof a.detail);
        if (fn(ud, &a)) break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}
