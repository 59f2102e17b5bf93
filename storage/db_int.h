/* storage/db_int.h — what the files of storage/ share; nothing outside storage/ includes it (except
 * tests/unit/test_storage.c, to build old schemas from the migrations themselves). The connection,
 * the migration list, statement helpers and the per-table writers that db_batch_write (db_batch.c)
 * runs inside its one transaction. Loop thread only, like db.h. Errors as in db.h: 0 or a negative
 * errno code; SQLite's reason stays readable through db_errmsg(d) until the next call.
 *
 *   db.c          open/close, migrate, transactions, statement helpers
 *   db_schema.c   the numbered migrations (data only)
 *   db_jobs.c     jobs: rows, queue, counts, status changes and progress from a batch
 *   db_batch.c    the batch: building it, freeing it, writing it in one transaction
 *   db_events.c   events, metrics, checkpoints (batch writers and readers)
 *   db_assets.c   models and uploaded files
 *   db_users.c    users, API tokens, the audit trail
 *   db_sweeps.c   sweeps and their trials          db_webhooks.c  the webhook outbox
 *   job_status.c  the job status names (job_status.h, public) */
#ifndef CT_DB_INT_H
#define CT_DB_INT_H
#include <sqlite3.h>
#include <stddef.h>
#include "storage/db.h"

#define DB__CACHED_MAX 16           /* prepared statements kept by db__cached */

struct db {
    sqlite3 *h;                    /* the one connection (owned) */
    sqlite3_stmt *cached[DB__CACHED_MAX]; /* (owned) finalised by db_close; NULL = free slot */
};

/* ---- db_schema.c ---- */
extern const char *const db__migrations[]; /* index i: version i -> i+1 */
extern const int db__n_migrations;         /* = the schema version db_open leaves */

/* ---- db.c ---- */
/* Run one or more statements; the reason into err (may be NULL). -EIO on failure. */
int db__exec(db *d, const char *sql, char *err, size_t errlen);
int db__begin(db *d, char *err, size_t errlen);  /* BEGIN IMMEDIATE */
int db__commit(db *d, char *err, size_t errlen);
void db__rollback(db *d);                         /* best effort, after a failure */
sqlite3_stmt *db__prep(db *d, const char *sql);   /* NULL on failure (reason in db_errmsg) */
/* The hot paths' statements, prepared once: the statement for sql (looked up by its text), kept by d
 * until db_close. Give it back with db__release (never sqlite3_finalize). While one is stepping (a walk
 * whose callback runs the same SQL), and once the DB__CACHED_MAX slots are taken, an uncached statement
 * is handed out. Only for a bounded set of SQL texts (literals, or a few built from literals), and
 * stepped before anything else runs the same SQL. NULL on failure (reason in db_errmsg). */
sqlite3_stmt *db__cached(db *d, const char *sql);
/* After db__cached: reset (the cache keeps it) or finalise (it was not cached). NULL-safe. */
void db__release(db *d, sqlite3_stmt *st);
void db__bind_text(sqlite3_stmt *st, int i, const char *s);     /* NULL binds NULL */
void db__bind_real(sqlite3_stmt *st, int i, double x);           /* NAN binds NULL */
char *db__col_dup(sqlite3_stmt *st, int i);                      /* heap copy; NULL for NULL */
void db__col_copy(sqlite3_stmt *st, int i, char *dst, size_t n); /* truncating; "" for NULL */
double db__col_real(sqlite3_stmt *st, int i);                    /* NAN for NULL */
/* Paging helpers shared by the tables with (seq, id, status): OUT *seq of row id (-ENOENT when none);
 * the ids of rows in status, oldest first. table is a literal ("jobs", "sweeps"), never input. */
int db__seq_of(db *d, const char *table, const char *id, long long *seq);
int db__ids_by_status(db *d, const char *table, enum job_status status, int limit, char (*ids)[DB_ID_MAX], int *n);

/* ---- writers for db_batch_write, inside its transaction (db_jobs.c, db_events.c, db_assets.c) ---- */
/* One status change; with fine_tuned_model and model_path set it also adds the models row
 * (db__model_write), as db.h documents for db_status. -EINVAL for a status not in job_status.h. */
int db__job_status_write(db *d, const db_status *s);
int db__job_progress_write(db *d, const db_progress *p, int n);
int db__job_executor_write(db *d, const db_exec *x, int n);
int db__webhooks_write(db *d, const db_webhook *w, int n);          /* db_webhooks.c */
int db__events_write(db *d, const db_event *e, int n);
int db__metrics_write(db *d, const db_metric *m, int n);
int db__metric_blocks_update(db *d, const db_metric *m, int n); /* after the points, same transaction */
int db__checkpoints_write(db *d, const db_checkpoint *c, int n);
/* INSERT OR REPLACE one models row. owner NULL or "" stores NULL. Strings borrowed. */
int db__model_write(db *d, const char *id, const char *job_id, const char *arch, const char *path,
                    long long created_at, const char *owner);

#endif
