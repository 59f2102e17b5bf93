/* storage/db_schema.c — the schema: numbered migrations, applied in order by db_open (storage/db.c)
 * inside one transaction each, with PRAGMA user_version = the number of the last one applied.
 * Data only, no code. Index i brings the schema from version i to i+1. Never edit one that shipped:
 * a change is a new migration at the end. */
#include "storage/db_int.h"

const char *const db__migrations[] = {
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
    /* 3: jobs.status limited to the job_status names (storage/job_status.c) by a CHECK constraint.
     *    SQLite cannot add a constraint to a table, so jobs is rebuilt (sqlite.org/lang_altertable.html,
     *    "other kinds of table schema changes"): the new table has every column of versions 1+2 in the
     *    same order with the same type, NOT NULL, DEFAULT, PRIMARY KEY AUTOINCREMENT and UNIQUE; the rows
     *    are copied, the AUTOINCREMENT high-water mark is carried over (so no job seq is ever reused),
     *    the old table dropped, the new one renamed and both indexes recreated. Nothing references jobs
     *    (no foreign key, trigger or view), so foreign_keys=ON does not get in the way.
     *    The list is written out, not generated: a shipped migration must never change when the enum
     *    does. A new status needs a new migration; test_storage.c fails until the two agree. */
    "CREATE TABLE jobs_new ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  id TEXT NOT NULL UNIQUE,"
    "  owner TEXT,"
    "  status TEXT NOT NULL"
    "    CHECK (status IN ('queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled')),"
    "  created_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER,"
    "  body TEXT NOT NULL, method TEXT NOT NULL, extensions TEXT NOT NULL,"
    "  model TEXT NOT NULL, training_file TEXT NOT NULL, validation_file TEXT,"
    "  seed INTEGER NOT NULL, suffix TEXT, metadata TEXT, arch TEXT NOT NULL,"
    "  idem_key TEXT UNIQUE, body_hash TEXT,"
    "  step INTEGER NOT NULL DEFAULT 0, total_steps INTEGER NOT NULL DEFAULT 0,"
    "  epoch INTEGER NOT NULL DEFAULT 0, epochs INTEGER NOT NULL DEFAULT 0,"
    "  metrics TEXT, best_valid_accuracy REAL, final_valid_accuracy REAL, eta_seconds REAL,"
    "  progress_at INTEGER, fine_tuned_model TEXT,"
    "  error_code TEXT, error_message TEXT, error_param TEXT,"
    "  priority INTEGER NOT NULL DEFAULT 5, threads INTEGER NOT NULL DEFAULT 1,"
    "  preempted INTEGER NOT NULL DEFAULT 0);"
    "INSERT INTO jobs_new (seq, id, owner, status, created_at, started_at, finished_at, body, method,"
    "  extensions, model, training_file, validation_file, seed, suffix, metadata, arch, idem_key, body_hash,"
    "  step, total_steps, epoch, epochs, metrics, best_valid_accuracy, final_valid_accuracy, eta_seconds,"
    "  progress_at, fine_tuned_model, error_code, error_message, error_param, priority, threads, preempted)"
    " SELECT seq, id, owner, status, created_at, started_at, finished_at, body, method,"
    "  extensions, model, training_file, validation_file, seed, suffix, metadata, arch, idem_key, body_hash,"
    "  step, total_steps, epoch, epochs, metrics, best_valid_accuracy, final_valid_accuracy, eta_seconds,"
    "  progress_at, fine_tuned_model, error_code, error_message, error_param, priority, threads, preempted"
    " FROM jobs ORDER BY seq;"
    "DELETE FROM sqlite_sequence WHERE name = 'jobs_new';"
    "INSERT INTO sqlite_sequence (name, seq) SELECT 'jobs_new', seq FROM sqlite_sequence WHERE name = 'jobs';"
    "DROP TABLE jobs;"
    "ALTER TABLE jobs_new RENAME TO jobs;"
    "CREATE INDEX jobs_status ON jobs(status, seq);"
    "CREATE INDEX jobs_owner ON jobs(owner, seq);",

    /* 4: counters that must survive a crash; "event_id_reserved" = no event id up to it may be handed
     * out again (ids are reserved durably in blocks before the loop serves them) */
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",

    /* 5: where a job runs when that is not this daemon (core/executor.h): executor = the executor's own
     *    record of the run (JSON: a Slurm job id, its state, where it reads the progress file from),
     *    executor_live = 1 while that run may still be alive, so a restarted daemon re-attaches to it */
    "ALTER TABLE jobs ADD COLUMN executor TEXT;"
    "ALTER TABLE jobs ADD COLUMN executor_live INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX jobs_executor_live ON jobs(executor_live) WHERE executor_live = 1;",

    /* 6: hyper-parameter sweeps (core/sweeps.c): the request, the status, the choice; one row per trial
     *    (its parameters and seed; job_id once its job exists: the job's own row says how it went) */
    "CREATE TABLE sweeps ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  id TEXT NOT NULL UNIQUE,"
    "  owner TEXT,"
    "  status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),"
    "  created_at INTEGER NOT NULL, finished_at INTEGER,"
    "  body TEXT NOT NULL, best TEXT, fine_tuned_model TEXT);"
    "CREATE INDEX sweeps_status ON sweeps(status, seq);"
    "CREATE TABLE sweep_trials ("
    "  sweep_id TEXT NOT NULL, idx INTEGER NOT NULL, parameters TEXT NOT NULL, seed INTEGER, job_id TEXT,"
    "  PRIMARY KEY (sweep_id, idx)) WITHOUT ROWID;",

    /* 7: the webhook outbox (core/webhooks.c): one row per event and URL, written in the transaction of
     *    the status it announces; delivered_at set once a 2xx came back; next_at 0 = nothing more to try */
    "CREATE TABLE webhook_outbox ("
    "  id TEXT NOT NULL, url TEXT NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL, created_at INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL, delivered_at INTEGER, last_error TEXT,"
    "  PRIMARY KEY (id, url));"
    "CREATE INDEX webhook_outbox_due ON webhook_outbox(next_at) WHERE next_at > 0;",

    /* 8: what an upload holds, found when it was checked (core/assets.c): images, the range of native
     *    image sizes (NULL for uploads from before), one row per class in label order; a file's classes
     *    go with it (ON DELETE CASCADE) */
    "ALTER TABLE files ADD COLUMN images INTEGER;"
    "ALTER TABLE files ADD COLUMN min_width INTEGER;"
    "ALTER TABLE files ADD COLUMN min_height INTEGER;"
    "ALTER TABLE files ADD COLUMN max_width INTEGER;"
    "ALTER TABLE files ADD COLUMN max_height INTEGER;"
    "CREATE TABLE file_classes ("
    "  file_id TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE, idx INTEGER NOT NULL,"
    "  name TEXT NOT NULL, images INTEGER NOT NULL,"
    "  PRIMARY KEY (file_id, idx)) WITHOUT ROWID;",
    /* 9: each metric series summarised by blocks of 256 steps (storage/db_metric_blocks.c): the count and the
     *    first, last, lowest and highest points, so a chart of a long series reads a block per 256 points;
     *    filled here from the points already stored, then kept by every write of points */
    "CREATE TABLE metric_blocks ("
    "  job_id TEXT NOT NULL, name TEXT NOT NULL, block INTEGER NOT NULL, n INTEGER NOT NULL,"
    "  first_step INTEGER NOT NULL, first_value REAL NOT NULL, last_step INTEGER NOT NULL, last_value REAL NOT NULL,"
    "  min_step INTEGER NOT NULL, min_value REAL NOT NULL, max_step INTEGER NOT NULL, max_value REAL NOT NULL,"
    "  PRIMARY KEY (job_id, name, block)) WITHOUT ROWID;"
    "CREATE TEMP TABLE mb AS SELECT job_id, name, step >> 8 AS block, count(*) AS n, min(step) AS lo,"
    "  max(step) AS hi FROM metrics GROUP BY job_id, name, step >> 8;"
    "INSERT INTO metric_blocks SELECT job_id, name, block, n,"
    "  lo, (SELECT value FROM metrics m WHERE m.job_id = mb.job_id AND m.name = mb.name AND m.step = lo),"
    "  hi, (SELECT value FROM metrics m WHERE m.job_id = mb.job_id AND m.name = mb.name AND m.step = hi),"
    "  0, 0, 0, 0 FROM mb;"
    "UPDATE metric_blocks SET"
    "  (min_step, min_value) = (SELECT step, value FROM metrics m WHERE m.job_id = metric_blocks.job_id"
    "    AND m.name = metric_blocks.name AND m.step BETWEEN first_step AND last_step ORDER BY value, step LIMIT 1),"
    "  (max_step, max_value) = (SELECT step, value FROM metrics m WHERE m.job_id = metric_blocks.job_id"
    "    AND m.name = metric_blocks.name AND m.step BETWEEN first_step AND last_step ORDER BY value DESC, step LIMIT 1);"
    "DROP TABLE mb;",
};
const int db__n_migrations = (int)(sizeof db__migrations / sizeof db__migrations[0]);
