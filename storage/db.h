/* storage/db.h — the daemon's SQLite database: the only place that writes SQL.
 * One writer connection, owned by the loop thread (every function here runs there; nothing is
 * thread-safe). WAL journal, synchronous=FULL, so a commit that returned is on disk before the daemon
 * acknowledges it. Progress (events, metrics, checkpoints, status changes) is written in batches:
 * the caller collects a db_batch and db_batch_write commits it in one transaction.
 * Schema changes are numbered migrations (PRAGMA user_version), applied in order by db_open.
 * Job statuses are the names of storage/job_status.h; the schema refuses any other.
 * Errors: negative errno-style codes (-ENOENT: no such row, -EEXIST: unique key taken, -EINVAL: a
 * status job_status.h does not know, -EIO: SQLite failed) with the reason in err where an err buffer
 * is taken. Implemented by storage/db*.c (internals in storage/db_int.h). */
#ifndef CT_DB_H
#define CT_DB_H
#include "storage/job_status.h"
#include <stddef.h>

typedef struct db db;

int  db_open(db **out, const char *path, char *err, size_t errlen);
void db_close(db *d); /* NULL-safe */
/* The last SQLite error message of d (borrowed). */
const char *db_errmsg(db *d);
/* Whether the database may have changed, for caches of what it holds (core/auth.c's tokens): PRAGMA
 * data_version moves with every commit of another connection (the offline admin commands, an operator's
 * sqlite3 shell), total_changes with every row this connection wrote. Two equal stamps: no row changed
 * in between. */
typedef struct db_stamp { long long data_version, changes; } db_stamp;
int db_stamp_get(db *d, db_stamp *out);

/* ---- jobs ---- */
#define DB_ID_MAX 48

/* One row of jobs. Strings marked (heap) belong to the row: db_job_clear frees them. */
typedef struct db_job {
    long long seq;                 /* submission order */
    char id[DB_ID_MAX];
    char owner[64];                /* user name ("" for jobs from before users existed: admins only) */
    enum job_status status;
    int priority;                  /* 0-9, higher first within the owner's queue */
    int threads;                   /* trainer threads the job runs with (what the scheduler counts) */
    int preempted;                 /* requeued by preemption: first in its owner's queue */
    long long created_at, started_at, finished_at; /* unix seconds; 0 = not yet */
    char *body;                    /* (heap) the request body, canonical JSON */
    char *method;                  /* (heap) effective method JSON */
    char *extensions;              /* (heap) effective architecture/data JSON */
    char *model, *training_file, *validation_file; /* (heap) as submitted; validation_file may be NULL */
    long long seed;
    char *suffix, *metadata;       /* (heap) may be NULL; metadata is JSON */
    char arch[16];
    char *idem_key, *body_hash;    /* (heap) may be NULL */
    int step, total_steps, epoch, epochs;
    char *metrics;                 /* (heap) latest metrics JSON, may be NULL */
    double best_valid_accuracy, final_valid_accuracy, eta_seconds; /* NAN = unknown */
    long long progress_at;
    char *fine_tuned_model;        /* (heap) may be NULL */
    char *error_code, *error_message, *error_param; /* (heap) may be NULL */
    char *executor;                /* (heap) the executor's record of the run (JSON), NULL = none (local) */
    int executor_live;             /* 1 = that run may still be alive: re-attach after a restart */
} db_job;

void db_job_clear(db_job *j); /* frees the heap strings, zeroes the row */

/* Insert a new job and, when first is not NULL, its first event, in one transaction (durable on
 * return: a crash never leaves a job without its creation event). -EEXIST if id or idem_key is taken,
 * -EINVAL if the status is not a job_status name, -ENOSPC when the disk is full. */
struct db_event;
int db_job_insert(db *d, const db_job *j, const struct db_event *first);
int db_job_get(db *d, const char *id, db_job *out);                /* OUT: caller clears */
int db_job_find_idem(db *d, const char *idem_key, db_job *out);   /* -ENOENT if none */
/* non-zero stops the walk. fn may keep the row: move it out (*j zeroed), it is cleared after fn. */
typedef int (*db_job_fn)(void *ud, db_job *j);
/* Newest first, starting after the job `after` (NULL = from the newest); *has_more says whether
 * more rows follow the `limit` returned. owner: only that user's jobs (NULL = everyone's).
 * -ENOENT if after names no job. */
int db_job_list(db *d, const char *owner, const char *after, int limit, db_job_fn fn, void *ud, int *has_more);
/* The queue, for the scheduler: every queued job, oldest first (light rows, no JSON). */
typedef struct db_queued {
    long long seq, created_at;
    char id[DB_ID_MAX];
    char owner[64];
    int priority, threads, preempted;
    char device[16];                /* the spec's "device" ("cpu" for rows from before it) */
} db_queued;
typedef int (*db_queued_fn)(void *ud, const db_queued *q);
int db_job_queue(db *d, db_queued_fn fn, void *ud);
/* Jobs of owner in status (quotas). */
int db_job_count(db *d, const char *owner, enum job_status status, int *out);
/* Counts by (owner, status) for /metrics. */
typedef int (*db_count_fn)(void *ud, const char *owner, enum job_status status, long long n);
int db_job_counts(db *d, db_count_fn fn, void *ud);
/* Mean seconds from start to finish of the last 20 succeeded jobs (0 when none): queue estimates. */
int db_job_mean_duration(db *d, double *out);
/* Job ids with a status, oldest first (at most limit). */
int db_job_ids_by_status(db *d, enum job_status status, int limit, char (*ids)[DB_ID_MAX], int *n);

/* Jobs whose executor record is live (executor_live = 1), oldest first (at most limit). */
int db_job_ids_executor_live(db *d, int limit, char (*ids)[DB_ID_MAX], int *n);
/* Delete a job with its events, metrics and checkpoints rows in one transaction (durable on return;
 * its models row and the audit trail stay). -ENOENT: no such job. */
int db_job_delete(db *d, const char *id);
typedef struct db_job_brief {      /* what disk accounting and retention need of a job */
    char id[DB_ID_MAX];
    char owner[64];
    enum job_status status;
    long long finished_at;         /* 0 = not finished */
} db_job_brief;
typedef int (*db_job_brief_fn)(void *ud, const db_job_brief *b); /* non-zero stops the walk */
/* Every job (owner NULL) or owner's, oldest first. */
int db_job_walk(db *d, const char *owner, db_job_brief_fn fn, void *ud);
/* Keep the newest `keep` checkpoints rows of a job; OUT *removed (may be NULL). */
int db_checkpoint_prune(db *d, const char *job_id, int keep, int *removed);
/* The same for every finished (succeeded, failed, cancelled) job at once. */
int db_checkpoint_retain(db *d, int keep, int *removed);
/* ---- the batch: everything a training job produces, written in one transaction ---- */
typedef struct db_event {
    char job_id[DB_ID_MAX];
    long long id;                  /* assigned by the caller, increasing (see db_event_max_id) */
    long long created_at;
    const char *type, *level;      /* static strings */
    char *message, *data;          /* (heap, owned by the batch) data is JSON or NULL */
} db_event;

typedef struct db_metric {
    char job_id[DB_ID_MAX];
    int step;
    const char *name;              /* static string */
    double value;
} db_metric;

typedef struct db_progress {       /* latest progress of a running job */
    char job_id[DB_ID_MAX];
    int step, total_steps, epoch, epochs;
    char *metrics;                 /* (heap) JSON */
    double best_valid_accuracy, final_valid_accuracy, eta_seconds; /* NAN = keep */
    long long at;
} db_progress;

typedef struct db_checkpoint {
    char job_id[DB_ID_MAX];
    long long id;                  /* filled by db_checkpoint_list */
    int step, epoch;
    char *path, *metrics;          /* (heap) metrics JSON may be NULL */
    long long created_at;
} db_checkpoint;

typedef struct db_status {         /* a status change */
    char job_id[DB_ID_MAX];
    enum job_status status;
    long long started_at, finished_at; /* 0 = keep; -1 = clear */
    char *error_code, *error_message, *error_param; /* (heap) NULL = clear */
    char *fine_tuned_model;        /* (heap) NULL = keep (the models row is the core's: db_batch_model) */
    int preempted;                 /* jobs.preempted after the change (1 only for a preemption requeue) */
} db_status;

typedef struct db_exec {           /* a job's executor record (jobs.executor, jobs.executor_live) */
    char job_id[DB_ID_MAX];
    char *record;                  /* (heap) JSON */
    int live;
} db_exec;
typedef struct db_webhook {        /* one outbox row: an event for one URL */
    char id[64];                   /* "evt_...": the same on every attempt (webhook-id) */
    char *url, *type, *body;       /* (heap, owned by the batch or the reader's copy) */
    long long created_at;
    int attempts;
    long long next_at;             /* unix seconds of the next attempt; 0 = none (delivered or given up) */
} db_webhook;
void db_webhook_clear(db_webhook *w);
typedef struct db_audit {          /* one audit record: who did what to what, and how it went */
    long long id;                  /* filled by db_audit_list */
    long long at;
    char actor[64];                /* user name, "" = anonymous */
    char action[32];               /* login_failed, authz_denied, user_add, token_create, ... */
    char target[128];              /* job/file id, user name, route */
    char outcome[16];              /* ok, denied, failed */
    char remote[64];               /* "127.0.0.1", "uid:1000", "cli" */
    char detail[256];              /* never a token */
} db_audit;

typedef struct db_batch {
    db_event *events;       int n_events, cap_events;
    db_metric *metrics;     int n_metrics, cap_metrics;
    db_progress *progress;  int n_progress, cap_progress;
    db_checkpoint *ckpts;   int n_ckpts, cap_ckpts;
    db_status *status;      int n_status, cap_status;
    db_audit *audit;        int n_audit, cap_audit;
    struct db_model *models; int n_models, cap_models;
    db_exec *execs;         int n_execs, cap_execs;
    db_webhook *hooks;      int n_hooks, cap_hooks;
} db_batch;

/* Append a zeroed row and return it (NULL when out of memory); heap fields put in it belong to the batch. */
db_event *db_batch_event(db_batch *b);
db_metric *db_batch_metric(db_batch *b);
db_progress *db_batch_progress(db_batch *b, const char *job_id); /* the job's entry, made once per batch */
db_checkpoint *db_batch_checkpoint(db_batch *b);
db_status *db_batch_status(db_batch *b);
db_audit *db_batch_audit(db_batch *b);
db_exec *db_batch_exec(db_batch *b, const char *job_id); /* the job's entry, made once per batch (last wins) */
db_webhook *db_batch_webhook(db_batch *b);                /* an outbox row, committed with the batch */
/* A models row (INSERT OR REPLACE by id), written right after the batch's status changes: the service
 * adds it with the status change that makes the model, in the same transaction. No heap fields. */
struct db_model *db_batch_model(db_batch *b);
int  db_batch_empty(const db_batch *b);
void db_batch_reset(db_batch *b);   /* frees the rows, keeps the arrays */
void db_batch_free(db_batch *b);    /* frees everything */
/* Commit the batch in one transaction (in order: status, executor records, models, audit, events,
 * metrics, progress, checkpoints). On failure nothing is written and the batch is kept for a retry; -EINVAL (before
 * anything is written) when a status change names no job_status: a retry cannot succeed. */
int  db_batch_write(db *d, const db_batch *b, char *err, size_t errlen);

/* ---- reads of progress ---- */
int db_event_max_id(db *d, long long *out);
/* Event ids are handed out by the loop before they are committed, so after a crash the next id must
 * come from above every id that may have been served: the caller reserves blocks durably ahead of use.
 * OUT *out = the highest id reserved (0 = none). db_event_reserve(upto) commits at once (its own
 * transaction; never inside a batch) and never lowers the mark. */
int db_event_reserved(db *d, long long *out);
int db_event_reserve(db *d, long long upto);
typedef int (*db_event_fn)(void *ud, const db_event *e);
/* Events of a job with id > after, oldest first, at most limit (then *has_more). */
int db_event_list(db *d, const char *job_id, long long after, int limit, db_event_fn fn, void *ud, int *has_more);
typedef int (*db_point_fn)(void *ud, int step, double value);
int db_metric_series(db *d, const char *job_id, const char *name, int after_step, db_point_fn fn, void *ud);
typedef int (*db_name_fn)(void *ud, const char *name);
int db_metric_names(db *d, const char *job_id, db_name_fn fn, void *ud);
/* The same series from its summary by blocks of 256 steps (storage/db_metric_blocks.c): every point of the block
 * holding after_step that comes after it, then each later block's first, lowest, highest and last points in step
 * order (each point once). OUT total: how many points the series has after after_step. */
int db_metric_series_blocks(db *d, const char *job_id, const char *name, int after_step, db_point_fn fn, void *ud,
                            long long *total);
/* OUT blocks, points: the summary's blocks after the one holding after_step, and their points. */
int db_metric_blocks_count(db *d, const char *job_id, const char *name, int after_step, long long *blocks,
                           long long *points);
typedef int (*db_checkpoint_fn)(void *ud, const db_checkpoint *c);
/* Newest first; after = checkpoint id to continue from (0 = newest). */
int db_checkpoint_list(db *d, const char *job_id, long long after, int limit, db_checkpoint_fn fn, void *ud,
                       int *has_more);

/* ---- models and files ---- */
typedef struct db_model {
    char id[320];
    char job_id[DB_ID_MAX];
    char arch[16];
    char path[1024];
    long long created_at;
    char owner[64];
} db_model;
int db_model_get(db *d, const char *id, db_model *out);
typedef int (*db_model_fn)(void *ud, const db_model *m);
/* owner: only that user's models (NULL = everyone's). */
int db_model_list(db *d, const char *owner, db_model_fn fn, void *ud);
int db_model_delete(db *d, const char *id);                       /* -ENOENT */
int db_model_of_job(db *d, const char *job_id, db_model *out);    /* -ENOENT: the job made none (or it went) */

typedef struct db_file {
    char id[DB_ID_MAX];
    char filename[256];
    char purpose[32];
    long long bytes;
    char format[32];
    char path[1024];
    long long created_at;
    char owner[64];
    long long images;              /* -1 = not recorded (an upload from before migration 8) */
    int min_width, min_height, max_width, max_height; /* native image sizes; 0 = not recorded */
} db_file;
int db_file_insert(db *d, const db_file *f);
/* One class of an upload, in label order. name borrowed. */
typedef struct db_file_class { const char *name; long long images; } db_file_class;
/* The files row and its classes in one transaction. */
int db_file_insert_classes(db *d, const db_file *f, const db_file_class *classes, int n);
/* The classes of file id in label order (none for an upload from before migration 8); fn returns
 * nonzero to stop. */
typedef int (*db_file_class_fn)(void *ud, const char *name, long long images);
int db_file_classes(db *d, const char *id, db_file_class_fn fn, void *ud);
int db_file_get(db *d, const char *id, db_file *out);
typedef int (*db_file_fn)(void *ud, const db_file *f);
/* owner: only that user's uploads (NULL = everyone's). */
int db_file_list(db *d, const char *owner, db_file_fn fn, void *ud);
/* Bytes of owner's stored uploads (quotas). */
int db_file_bytes(db *d, const char *owner, long long *out);
int db_file_delete(db *d, const char *id);                        /* -ENOENT */
/* Jobs that name the file as training_file or validation_file, oldest first. */
typedef int (*db_file_job_fn)(void *ud, const char *job_id, enum job_status status); /* non-zero stops */
int db_file_jobs(db *d, const char *file_id, db_file_job_fn fn, void *ud);

/* ---- sweeps (hyper-parameter searches whose trials are jobs) ---- */
typedef struct db_sweep {
    long long seq;
    char id[DB_ID_MAX];
    char owner[64];
    enum job_status status;        /* queued, running, succeeded, failed or cancelled */
    long long created_at, finished_at;
    char *body;                    /* (heap) the request, canonical JSON */
    char *best;                    /* (heap) JSON, NULL = none yet */
    char *fine_tuned_model;        /* (heap) NULL = none */
} db_sweep;
void db_sweep_clear(db_sweep *s);
typedef struct db_trial {
    int idx;
    char *parameters;              /* (heap) JSON {path: value} */
    long long seed;                /* -1 = the job body's */
    char job_id[DB_ID_MAX];        /* "" = not created yet */
    /* from the trial's job row (read-only; -1 / NAN when there is no job yet) */
    int job_status;                /* enum job_status or -1 */
    double best_valid_accuracy, best_valid_loss; /* best_valid_loss: the lowest valid_loss metric */
    int step;
} db_trial;
/* The sweep, its trials and its first event in one transaction (durable on return). -EEXIST: id taken. */
int db_sweep_insert(db *d, const db_sweep *s, const db_trial *t, int n, const struct db_event *first);
int db_sweep_get(db *d, const char *id, db_sweep *out);          /* OUT: caller clears; -ENOENT */
typedef int (*db_sweep_fn)(void *ud, const db_sweep *s);
/* Newest first after `after` (NULL = from the newest); owner NULL = everyone's. -ENOENT: after unknown. */
int db_sweep_list(db *d, const char *owner, const char *after, int limit, db_sweep_fn fn, void *ud, int *has_more);
/* Sweep ids in status, oldest first (at most limit). */
int db_sweep_ids_by_status(db *d, enum job_status status, int limit, char (*ids)[DB_ID_MAX], int *n);
/* The trials in index order, with their jobs' outcome; the rows are the callback's only during the call. */
typedef int (*db_trial_fn)(void *ud, const db_trial *t);
int db_sweep_trials(db *d, const char *sweep_id, db_trial_fn fn, void *ud);
/* The sweep a job is a trial of (-ENOENT: none) and its status. */
int db_sweep_of_job(db *d, const char *job_id, char sweep_id[DB_ID_MAX], enum job_status *status);
/* Record a trial's job (durable; a trial's job_id, once set, never changes: -EEXIST). */
int db_sweep_trial_job(db *d, const char *sweep_id, int idx, const char *job_id);
/* Status change; finished_at 0 = keep; best / fine_tuned_model NULL = keep. Durable. */
int db_sweep_update(db *d, const char *id, enum job_status status, long long finished_at, const char *best,
                    const char *fine_tuned_model);

/* ---- the webhook outbox ---- */
/* Rows due by now (next_at in 1..now), oldest first, at most limit; the row is the callback's only during
 * the call. */
typedef int (*db_webhook_fn)(void *ud, const db_webhook *w);
int db_webhook_due(db *d, long long now, int limit, db_webhook_fn fn, void *ud);
/* An attempt: attempts, delivered_at (0 = not delivered), next_at (0 = no more), the error (NULL = none). */
int db_webhook_attempt(db *d, const char *id, const char *url, int attempts, long long delivered_at,
                       long long next_at, const char *error);

/* ---- users, API tokens, audit ---- */
typedef struct db_user {
    long long id;
    char name[64];
    long long uid;                 /* local uid for the Unix socket, -1 = none */
    int admin;
    int bootstrap;                 /* the admin made on first start: root and the daemon's uid map to it */
    long long created_at;
} db_user;
/* -EEXIST when the name or the uid is taken. OUT *id may be NULL. */
int db_user_add(db *d, const db_user *u, long long *id);
int db_user_count(db *d, int *out);
int db_user_by_name(db *d, const char *name, db_user *out);   /* -ENOENT */
int db_user_by_id(db *d, long long id, db_user *out);
int db_user_by_uid(db *d, long long uid, db_user *out);
int db_user_bootstrap(db *d, db_user *out);                  /* the bootstrap admin, -ENOENT if none */
typedef int (*db_user_fn)(void *ud, const db_user *u);
int db_user_list(db *d, db_user_fn fn, void *ud);

#define DB_TOKEN_PREFIX_MAX 16
typedef struct db_token {
    long long id, user_id;
    char prefix[DB_TOKEN_PREFIX_MAX]; /* the first characters of the token: public, for lookup and display */
    unsigned char hash[32];        /* SHA-256 of the whole token; the token itself is never stored */
    long long created_at, revoked_at; /* revoked_at 0 = live */
    char user[64];                 /* filled by the readers */
} db_token;
int db_token_add(db *d, const db_token *t, long long *id);
/* Live tokens with this prefix (normally one). */
typedef int (*db_token_fn)(void *ud, const db_token *t);
int db_token_by_prefix(db *d, const char *prefix, db_token_fn fn, void *ud);
/* owner: that user's tokens (NULL = all), newest first, revoked ones included. */
int db_token_list(db *d, const char *owner, db_token_fn fn, void *ud);
/* Revoke by id ("tok-12" or "12") or by prefix; OUT *count tokens revoked (0: none matched). */
int db_token_revoke(db *d, const char *id_or_prefix, long long at, int *count);

/* Fill a row (strings truncated to fit; NULL = ""). */
void db_audit_set(db_audit *a, long long at, const char *actor, const char *action, const char *target,
                  const char *outcome, const char *remote, const char *detail);
int db_audit_insert(db *d, const db_audit *a);               /* outside a batch (admin commands) */
typedef int (*db_audit_fn)(void *ud, const db_audit *a);
/* Newest first, ids below before (0 = from the newest). */
int db_audit_list(db *d, long long before, int limit, db_audit_fn fn, void *ud, int *has_more);

#endif
