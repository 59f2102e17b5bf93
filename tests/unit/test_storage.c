/* tests/unit/test_storage.c — storage/ against a real SQLite file in a temporary directory:
 * migrations (reopen is a no-op, WAL on; a version-1 database built from migration 1's own SQL is
 * upgraded with its rows intact and the jobs table exactly as version 2 left it plus the status CHECK),
 * the job status table (names, parse, and the CHECK list agreeing with it), job insert/get/idempotency
 * key/list pagination/queue, a batch of events, metrics (a repeated step replaces), progress,
 * checkpoints, status changes and models rows written in one transaction, a failing batch leaving
 * nothing behind, requeue of running jobs through a batch, models and files, deletes (a job with its
 * events, metrics and checkpoints; models, files; the jobs naming a file; checkpoint pruning), and PRAGMA
 * integrity_check. Inspection the db_ API does not offer goes through sqlite3 directly.
 * Single-threaded cmocka binary. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/db.h"
#include "storage/db_int.h" /* db__migrations: to build old schemas from the shipped SQL */
#include "storage/job_status.h"
#include "tests/unit/dbfix.h"

static int setup(void **state) { return db_fixture_setup(state, "storage"); }

/* ---- raw SQL, for what the db_ API does not show ---- */

static sqlite3 *raw_open(const char *path)
{
    sqlite3 *h;
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    return h;
}

static void raw_exec(sqlite3 *h, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(h, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) fprintf(stderr, "%s: %s\n", sql, msg ? msg : "?");
    sqlite3_free(msg);
    assert_int_equal(rc, SQLITE_OK);
}

static long long raw_int(sqlite3 *h, const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Every row of sql, columns joined by '|' and rows by '\n', into out (malloc'd; the caller frees). */
static char *raw_rows(sqlite3 *h, const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(1, cap);
    assert_non_null(out);
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int i = 0; i < sqlite3_column_count(st); i++) {
            const unsigned char *v = sqlite3_column_text(st, i);
            len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? "|" : "", v ? (const char *)v : "NULL");
            assert_true(len < cap);
        }
        len += (size_t)snprintf(out + len, cap - len, "\n");
        assert_true(len < cap);
    }
    sqlite3_finalize(st);
    return out;
}

/* The schema of the jobs table as SQLite reports it: columns (name, type, NOT NULL, default, primary
 * key) and every index with its origin (c = CREATE INDEX, u = UNIQUE, pk), uniqueness and columns. */
static char *jobs_shape(sqlite3 *h)
{
    char *cols = raw_rows(h, "SELECT cid, name, type, \"notnull\", dflt_value, pk FROM pragma_table_info('jobs')");
    char *idx = raw_rows(h, "SELECT il.name, il.\"unique\", il.origin, il.partial, ii.seqno, ii.name"
                            " FROM pragma_index_list('jobs') il, pragma_index_info(il.name) ii"
                            " ORDER BY il.name, ii.seqno");
    char *out = malloc(strlen(cols) + strlen(idx) + 2);
    assert_non_null(out);
    sprintf(out, "%s\n%s", cols, idx);
    free(cols);
    free(idx);
    return out;
}

static void new_job(db_job *j, const char *id, const char *idem)
{
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "%s", id);
    j->status = JOB_QUEUED;
    snprintf(j->arch, sizeof j->arch, "resnet20");
    j->created_at = 1700000000;
    j->body = "{\"model\":\"resnet20\"}";
    j->method = "{\"type\":\"core_tuning\"}";
    j->extensions = "{}";
    j->model = "resnet20";
    j->training_file = "fashion-mnist-train";
    j->seed = 42;
    j->idem_key = (char *)idem;
    j->body_hash = idem ? "abc" : NULL;
    j->epochs = 3;
}

static void test_reopen_and_wal(void **state)
{
    db_fixture *f = *state;
    db *again;
    char err[256];
    assert_int_equal(db_open(&again, f->path, err, sizeof err), 0); /* migrations already applied */
    db_close(again);
    sqlite3 *h;
    assert_int_equal(sqlite3_open(f->path, &h), SQLITE_OK);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(h);
}

static void test_jobs_insert_get_idem(void **state)
{
    db_fixture *f = *state;
    db_job j, got;
    new_job(&j, "ftjob-1", "key-1");
    assert_int_equal(db_job_insert(f->d, &j, NULL), 0);
    assert_int_equal(db_job_insert(f->d, &j, NULL), -EEXIST);          /* same id */
    new_job(&j, "ftjob-2", "key-1");
    assert_int_equal(db_job_insert(f->d, &j, NULL), -EEXIST);          /* same idempotency key */
    new_job(&j, "ftjob-2", NULL);
    assert_int_equal(db_job_insert(f->d, &j, NULL), 0);                /* NULL keys do not collide */
    new_job(&j, "ftjob-3", NULL);
    assert_int_equal(db_job_insert(f->d, &j, NULL), 0);

    assert_int_equal(db_job_get(f->d, "ftjob-1", &got), 0);
    assert_int_equal(got.status, JOB_QUEUED);
    assert_string_equal(got.training_file, "fashion-mnist-train");
    assert_null(got.validation_file);
    assert_int_equal(got.seed, 42);
    assert_int_equal(got.epochs, 3);
    assert_true(isnan(got.best_valid_accuracy));
    db_job_clear(&got);
    assert_int_equal(db_job_get(f->d, "ftjob-9", &got), -ENOENT);
    assert_int_equal(db_job_find_idem(f->d, "key-1", &got), 0);
    assert_string_equal(got.id, "ftjob-1");
    assert_string_equal(got.body_hash, "abc");
    db_job_clear(&got);
    assert_int_equal(db_job_find_idem(f->d, "key-2", &got), -ENOENT);

    new_job(&j, "ftjob-4", NULL);
    j.status = JOB_STATUS_COUNT;        /* not a status */
    assert_int_equal(db_job_insert(f->d, &j, NULL), -EINVAL);         /* not a job_status name */
    assert_int_equal(db_job_get(f->d, "ftjob-4", &got), -ENOENT);
}

typedef struct ids { char v[8][DB_ID_MAX]; int n; } ids;
static int collect_job(void *ud, db_job *j)
{
    ids *x = ud;
    snprintf(x->v[x->n++], DB_ID_MAX, "%s", j->id);
    return 0;
}

static void test_jobs_list_pages_newest_first(void **state)
{
    db_fixture *f = *state;
    db_job j;
    const char *names[] = {"ftjob-a", "ftjob-b", "ftjob-c"};
    for (int i = 0; i < 3; i++) { new_job(&j, names[i], NULL); assert_int_equal(db_job_insert(f->d, &j, NULL), 0); }
    ids x = {.n = 0};
    int more;
    assert_int_equal(db_job_list(f->d, NULL, NULL, 2, collect_job, &x, &more), 0);
    assert_int_equal(x.n, 2);
    assert_int_equal(more, 1);
    assert_string_equal(x.v[0], "ftjob-c");
    assert_string_equal(x.v[1], "ftjob-b");
    x.n = 0;
    assert_int_equal(db_job_list(f->d, NULL, "ftjob-b", 2, collect_job, &x, &more), 0);
    assert_int_equal(x.n, 1);
    assert_int_equal(more, 0);
    assert_string_equal(x.v[0], "ftjob-a");
    assert_int_equal(db_job_list(f->d, NULL, "ftjob-zzz", 2, collect_job, &x, &more), -ENOENT);
    /* an owner's pages: only theirs, newest first, after a cursor (the jobs_owner statement) */
    const char *more_names[] = {"ftjob-d", "ftjob-e", "ftjob-f", "ftjob-g"};
    for (int i = 0; i < 4; i++) {
        new_job(&j, more_names[i], NULL);
        snprintf(j.owner, sizeof j.owner, "%s", i % 2 ? "ben" : "ana");
        assert_int_equal(db_job_insert(f->d, &j, NULL), 0);
    }
    x.n = 0;
    assert_int_equal(db_job_list(f->d, "ana", NULL, 1, collect_job, &x, &more), 0);
    assert_int_equal(x.n, 1);
    assert_int_equal(more, 1);
    assert_string_equal(x.v[0], "ftjob-f");
    x.n = 0;
    assert_int_equal(db_job_list(f->d, "ana", "ftjob-f", 5, collect_job, &x, &more), 0);
    assert_int_equal(x.n, 1);
    assert_int_equal(more, 0);
    assert_string_equal(x.v[0], "ftjob-d");
    x.n = 0;
    assert_int_equal(db_job_list(f->d, "ben", "ftjob-f", 5, collect_job, &x, &more), 0); /* a cursor of another's */
    assert_int_equal(x.n, 1);
    assert_string_equal(x.v[0], "ftjob-e");
    x.n = 0;
    assert_int_equal(db_job_list(f->d, "", NULL, 5, collect_job, &x, &more), 0);   /* the three without an owner */
    assert_int_equal(x.n, 0);
    x.n = 0;
    assert_int_equal(db_job_list(f->d, NULL, NULL, 10, collect_job, &x, &more), 0);
    assert_int_equal(x.n, 7);
}

typedef struct evs { long long id[16]; char type[16][16]; int n; } evs;
static int collect_event(void *ud, const db_event *e)
{
    evs *x = ud;
    x->id[x->n] = e->id;
    snprintf(x->type[x->n++], 16, "%s", e->type);
    return 0;
}
typedef struct pts { int step[16]; double v[16]; int n; } pts;
static int collect_point(void *ud, int step, double v)
{
    pts *x = ud;
    x->step[x->n] = step;
    x->v[x->n++] = v;
    return 0;
}
static int count_ckpt(void *ud, const db_checkpoint *c)
{
    int *n = ud;
    assert_string_equal(c->path, "/x/state.safetensors");
    (*n)++;
    return 0;
}

static void add_metric(db_batch *b, const char *job, int step, const char *name, double v)
{
    db_metric *m = db_batch_metric(b);
    snprintf(m->job_id, sizeof m->job_id, "%s", job);
    m->step = step;
    m->name = name;
    m->value = v;
}

static void add_event(db_batch *b, const char *job, long long id, const char *type)
{
    db_event *e = db_batch_event(b);
    snprintf(e->job_id, sizeof e->job_id, "%s", job);
    e->id = id;
    e->type = type;
    e->level = "info";
    e->message = strdup("hello");
    e->data = strdup("{\"step\":1}");
    e->created_at = 1700000001;
}

static void test_batch_round_trip(void **state)
{
    db_fixture *f = *state;
    db_job j;
    new_job(&j, "ftjob-1", NULL);
    assert_int_equal(db_job_insert(f->d, &j, NULL), 0);
    db_batch b = {0};
    db_status *s = db_batch_status(&b);
    snprintf(s->job_id, sizeof s->job_id, "ftjob-1");
    s->status = JOB_RUNNING;
    s->started_at = 1700000001;
    add_event(&b, "ftjob-1", 1, "status");
    add_event(&b, "ftjob-1", 2, "metrics");
    add_metric(&b, "ftjob-1", 1, "train_loss", 2.0);
    add_metric(&b, "ftjob-1", 2, "train_loss", 1.5);
    add_metric(&b, "ftjob-1", 2, "train_loss", 1.25); /* a resumed job repeating step 2 */
    db_progress *p = db_batch_progress(&b, "ftjob-1");
    assert_ptr_equal(p, db_batch_progress(&b, "ftjob-1"));
    p->step = 2; p->total_steps = 10; p->epoch = 1; p->epochs = 3;
    p->metrics = strdup("{\"train_loss\":1.25}");
    p->best_valid_accuracy = 0.5;
    db_checkpoint *c = db_batch_checkpoint(&b);
    snprintf(c->job_id, sizeof c->job_id, "ftjob-1");
    c->step = 2; c->epoch = 1; c->path = strdup("/x/state.safetensors"); c->created_at = 1700000002;
    char err[256];
    assert_int_equal(db_batch_write(f->d, &b, err, sizeof err), 0);
    db_batch_reset(&b);
    assert_true(db_batch_empty(&b));

    db_job got;
    assert_int_equal(db_job_get(f->d, "ftjob-1", &got), 0);
    assert_int_equal(got.status, JOB_RUNNING);
    assert_int_equal(got.started_at, 1700000001);
    assert_int_equal(got.step, 2);
    assert_int_equal(got.total_steps, 10);
    assert_true(got.best_valid_accuracy == 0.5);
    assert_true(isnan(got.final_valid_accuracy));
    assert_string_equal(got.metrics, "{\"train_loss\":1.25}");
    db_job_clear(&got);

    evs e = {.n = 0};
    int more;
    assert_int_equal(db_event_list(f->d, "ftjob-1", 0, 1, collect_event, &e, &more), 0);
    assert_int_equal(e.n, 1);
    assert_int_equal(more, 1);
    assert_int_equal(db_event_list(f->d, "ftjob-1", 1, 10, collect_event, &e, &more), 0);
    assert_int_equal(e.n, 2);
    assert_int_equal(e.id[1], 2);
    assert_string_equal(e.type[1], "metrics");
    long long max;
    assert_int_equal(db_event_max_id(f->d, &max), 0);
    assert_int_equal(max, 2);

    pts x = {.n = 0};
    assert_int_equal(db_metric_series(f->d, "ftjob-1", "train_loss", 0, collect_point, &x), 0);
    assert_int_equal(x.n, 2);
    assert_true(x.v[1] == 1.25);
    x.n = 0;
    assert_int_equal(db_metric_series(f->d, "ftjob-1", "train_loss", 1, collect_point, &x), 0);
    assert_int_equal(x.n, 1);
    int n = 0;
    assert_int_equal(db_checkpoint_list(f->d, "ftjob-1", 0, 10, count_ckpt, &n, &more), 0);
    assert_int_equal(n, 1);

    /* success: status + model row in the same transaction */
    s = db_batch_status(&b);
    snprintf(s->job_id, sizeof s->job_id, "ftjob-1");
    s->status = JOB_SUCCEEDED;
    s->finished_at = 1700000009;
    s->fine_tuned_model = strdup("ft:resnet20:x:ftjob-1");
    db_model *bm = db_batch_model(&b);
    snprintf(bm->id, sizeof bm->id, "ft:resnet20:x:ftjob-1");
    snprintf(bm->job_id, sizeof bm->job_id, "ftjob-1");
    snprintf(bm->arch, sizeof bm->arch, "resnet20");
    snprintf(bm->path, sizeof bm->path, "/x/final.safetensors");
    assert_int_equal(db_batch_write(f->d, &b, err, sizeof err), 0);
    db_batch_free(&b);
    db_model m;
    assert_int_equal(db_model_get(f->d, "ft:resnet20:x:ftjob-1", &m), 0);
    assert_string_equal(m.path, "/x/final.safetensors");
    assert_string_equal(m.job_id, "ftjob-1");
    assert_int_equal(db_model_get(f->d, "ft:none", &m), -ENOENT);
}

/* The event-id reservation only moves up and survives a reopen (what a kill -9 leaves). */
static void test_event_id_reservation(void **state)
{
    db_fixture *f = *state;
    long long r = -1;
    assert_int_equal(db_event_reserved(f->d, &r), 0);
    assert_int_equal(r, 0);
    assert_int_equal(db_event_reserve(f->d, 1000), 0);
    assert_int_equal(db_event_reserve(f->d, 500), 0);           /* never lowers the mark */
    assert_int_equal(db_event_reserved(f->d, &r), 0);
    assert_int_equal(r, 1000);
    assert_int_equal(db_event_reserve(f->d, 2000), 0);
    db_close(f->d);
    char err[256];
    assert_int_equal(db_open(&f->d, f->path, err, sizeof err), 0);
    assert_int_equal(db_event_reserved(f->d, &r), 0);
    assert_int_equal(r, 2000);
}

static void test_failed_batch_writes_nothing(void **state)
{
    db_fixture *f = *state;
    db_batch b = {0};
    add_event(&b, "ftjob-1", 7, "status");
    add_metric(&b, "ftjob-1", 1, NULL, 1.0); /* NOT NULL violated: the whole batch must roll back */
    char err[256];
    assert_int_equal(db_batch_write(f->d, &b, err, sizeof err), -EIO);
    assert_true(strlen(err) > 0);
    long long max;
    assert_int_equal(db_event_max_id(f->d, &max), 0);
    assert_int_equal(max, 0);
    db_batch_free(&b);
}

static int collect_queued(void *ud, const db_queued *q)
{
    ids *x = ud;
    snprintf(x->v[x->n++], DB_ID_MAX, "%s", q->id);
    return 0;
}

/* What the service does at start for jobs a crash left running: find them, requeue them in a batch. */
static void test_requeue_running(void **state)
{
    db_fixture *f = *state;
    db_job j;
    new_job(&j, "ftjob-1", NULL);
    j.status = JOB_RUNNING;
    assert_int_equal(db_job_insert(f->d, &j, NULL), 0);
    new_job(&j, "ftjob-2", NULL);
    assert_int_equal(db_job_insert(f->d, &j, NULL), 0);
    char v[4][DB_ID_MAX];
    int n;
    assert_int_equal(db_job_ids_by_status(f->d, JOB_RUNNING, 4, v, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0], "ftjob-1");
    ids q = {.n = 0};
    assert_int_equal(db_job_queue(f->d, collect_queued, &q), 0);
    assert_int_equal(q.n, 1);                                    /* only the queued one */

    db_batch b = {0};
    db_status *s = db_batch_status(&b);
    snprintf(s->job_id, sizeof s->job_id, "%s", v[0]);
    s->status = JOB_QUEUED;
    char err[256];
    assert_int_equal(db_batch_write(f->d, &b, err, sizeof err), 0);
    db_batch_free(&b);
    assert_int_equal(db_job_ids_by_status(f->d, JOB_QUEUED, 4, v, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0], "ftjob-1");
    q.n = 0;
    assert_int_equal(db_job_queue(f->d, collect_queued, &q), 0);
    assert_int_equal(q.n, 2);
    assert_string_equal(q.v[0], "ftjob-1");                      /* oldest first */
    int count;
    assert_int_equal(db_job_count(f->d, NULL, JOB_QUEUED, &count), 0);
    assert_int_equal(count, 2);
}

static int count_file(void *ud, const db_file *fl)
{
    (void)fl;
    (*(int *)ud)++;
    return 0;
}

struct classes_seen { int n; char names[200]; };
static int note_class(void *ud, const char *name, long long images)
{
    struct classes_seen *c = ud;
    size_t k = strlen(c->names);
    snprintf(c->names + k, sizeof c->names - k, "%s:%lld,", name, images);
    c->n++;
    return 0;
}

static void test_files_and_integrity(void **state)
{
    db_fixture *f = *state;
    db_file fl = {.bytes = 3073, .created_at = 1700000000, .images = -1};
    snprintf(fl.id, sizeof fl.id, "file-1");
    snprintf(fl.filename, sizeof fl.filename, "data_batch_1.bin");
    snprintf(fl.purpose, sizeof fl.purpose, "fine-tune");
    snprintf(fl.format, sizeof fl.format, "cifar10");
    snprintf(fl.path, sizeof fl.path, "/x/files/file-1");
    assert_int_equal(db_file_insert(f->d, &fl), 0);
    assert_int_equal(db_file_insert(f->d, &fl), -EEXIST);
    db_file got;
    assert_int_equal(db_file_get(f->d, "file-1", &got), 0);
    assert_string_equal(got.format, "cifar10");
    assert_int_equal(got.bytes, 3073);
    int n = 0;
    assert_int_equal(db_file_list(f->d, NULL, count_file, &n), 0);
    assert_int_equal(n, 1);

    /* an upload with what it holds: the row and its classes in one transaction, read back in label
     * order; a second insert of the same id leaves neither half; deleting the row takes its classes */
    db_file up = fl;
    snprintf(up.id, sizeof up.id, "file-2");
    snprintf(up.format, sizeof up.format, "imagefolder");
    up.images = 5;
    up.min_width = 20, up.min_height = 21, up.max_width = 30, up.max_height = 31;
    const db_file_class cls[] = {{"cat", 3}, {"dog", 2}};
    assert_int_equal(db_file_insert_classes(f->d, &up, cls, 2), 0);
    assert_int_equal(db_file_insert_classes(f->d, &up, cls, 1), -EEXIST);
    assert_int_equal(db_file_get(f->d, "file-2", &got), 0);
    assert_int_equal(got.images, 5);
    assert_int_equal(got.min_width + got.min_height + got.max_width + got.max_height, 20 + 21 + 30 + 31);
    struct classes_seen seen = {0};
    assert_int_equal(db_file_classes(f->d, "file-2", note_class, &seen), 0);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.names, "cat:3,dog:2,");
    assert_int_equal(db_file_get(f->d, "file-1", &got), 0);
    assert_int_equal(got.images, -1); /* inserted without: NULL */
    seen = (struct classes_seen){0};
    assert_int_equal(db_file_classes(f->d, "file-1", note_class, &seen), 0);
    assert_int_equal(seen.n, 0);

    sqlite3 *h;
    assert_int_equal(sqlite3_open(f->path, &h), SQLITE_OK);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(h);
    assert_int_equal(db__exec(f->d, "DELETE FROM files WHERE id = 'file-2'", NULL, 0), 0);
    seen = (struct classes_seen){0};
    assert_int_equal(db_file_classes(f->d, "file-2", note_class, &seen), 0);
    assert_int_equal(seen.n, 0);
}

/* ---- deletes (core/disk.c): a job with its events, metrics and checkpoints; who uses a file ---- */

static int note_use(void *ud, const char *job_id, enum job_status status)
{
    char *out = ud;
    size_t n = strlen(out);
    snprintf(out + n, 256 - n, "%s:%s ", job_id, job_status_name(status));
    return 0;
}

static void test_deletes(void **state)
{
    db_fixture *f = *state;
    db_job j;
    new_job(&j, "ftjob-1", NULL);
    j.training_file = "file-1";
    assert_int_equal(db_job_insert(f->d, &j, NULL), 0);
    new_job(&j, "ftjob-2", NULL);
    assert_int_equal(db_job_insert(f->d, &j, NULL), 0);
    sqlite3 *h = raw_open(f->path);
    for (int i = 1; i <= 2; i++) { /* rows for both jobs: only ftjob-1's may go */
        char sql[600];
        snprintf(sql, sizeof sql, "INSERT INTO events (job_id, type, level, message, created_at) VALUES ('ftjob-%d','status','info','x',1);"
                 "INSERT INTO metrics VALUES ('ftjob-%d','train_loss',1,0.5);"
                 "INSERT INTO checkpoints (job_id, step, epoch, path, created_at) VALUES ('ftjob-%d',1,1,'p',1),('ftjob-%d',2,1,'p',2),"
                 "('ftjob-%d',3,2,'p',3);"
                 "INSERT INTO models (id, job_id, arch, path, created_at) VALUES ('ft:m%d','ftjob-%d','resnet20','/x/final.safetensors',1);",
                 i, i, i, i, i, i, i);
        raw_exec(h, sql);
    }
    char uses[256] = "";
    assert_int_equal(db_file_jobs(f->d, "file-1", note_use, uses), 0);
    assert_string_equal(uses, "ftjob-1:queued ");
    uses[0] = 0;
    assert_int_equal(db_file_jobs(f->d, "file-nope", note_use, uses), 0);
    assert_string_equal(uses, "");

    int removed = -1;
    assert_int_equal(db_checkpoint_prune(f->d, "ftjob-2", 2, &removed), 0);
    assert_int_equal(removed, 1);
    assert_int_equal(raw_int(h, "SELECT min(step) FROM checkpoints WHERE job_id = 'ftjob-2'"), 2); /* the newest kept */
    assert_int_equal(db_checkpoint_prune(f->d, "ftjob-2", 2, &removed), 0);
    assert_int_equal(removed, 0);

    /* every finished job at once: ftjob-2 finished, ftjob-1 still queued keeps its three */
    raw_exec(h, "UPDATE jobs SET status = 'succeeded' WHERE id = 'ftjob-2'");
    assert_int_equal(db_checkpoint_retain(f->d, 1, &removed), 0);
    assert_int_equal(removed, 1);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM checkpoints WHERE job_id = 'ftjob-2'"), 1);
    assert_int_equal(raw_int(h, "SELECT max(step) FROM checkpoints WHERE job_id = 'ftjob-2'"), 3);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM checkpoints WHERE job_id = 'ftjob-1'"), 3);

    raw_exec(h, "INSERT INTO metric_blocks VALUES ('ftjob-1', 'train_loss', 0, 1, 1, 1.0, 1, 1.0, 1, 1.0, 1, 1.0)");
    assert_int_equal(db_job_delete(f->d, "ftjob-1"), 0);
    assert_int_equal(db_job_get(f->d, "ftjob-1", &j), -ENOENT);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM metric_blocks WHERE job_id = 'ftjob-1'"), 0);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM events WHERE job_id = 'ftjob-1'"), 0);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM metrics WHERE job_id = 'ftjob-1'"), 0);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM checkpoints WHERE job_id = 'ftjob-1'"), 0);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM events WHERE job_id = 'ftjob-2'"), 1);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM checkpoints WHERE job_id = 'ftjob-2'"), 1);
    db_model m;
    assert_int_equal(db_model_of_job(f->d, "ftjob-1", &m), 0); /* the model outlives its job */
    assert_string_equal(m.id, "ft:m1");
    assert_int_equal(db_job_delete(f->d, "ftjob-1"), -ENOENT);
    assert_int_equal(db_model_delete(f->d, "ft:m1"), 0);
    assert_int_equal(db_model_delete(f->d, "ft:m1"), -ENOENT);
    assert_int_equal(db_model_of_job(f->d, "ftjob-1", &m), -ENOENT);

    db_file fl = {.bytes = 10, .created_at = 1};
    snprintf(fl.id, sizeof fl.id, "file-1");
    assert_int_equal(db_file_insert(f->d, &fl), 0);
    assert_int_equal(db_file_delete(f->d, "file-1"), 0);
    assert_int_equal(db_file_delete(f->d, "file-1"), -ENOENT);
    sqlite3_close(h);
}

/* ---- job statuses ---- */

static void test_job_status_table(void **state)
{
    (void)state;
    for (int i = 0; i < JOB_STATUS_COUNT; i++) {
        const char *name = job_status_name((enum job_status)i);
        assert_non_null(name);
        enum job_status back = JOB_STATUS_COUNT;
        assert_int_equal(job_status_parse(name, &back), 0);
        assert_int_equal(back, i);
    }
    assert_string_equal(job_status_name(JOB_QUEUED), "queued");
    assert_string_equal(job_status_name(JOB_CANCELLED), "cancelled");
    assert_null(job_status_name(JOB_STATUS_COUNT));
    assert_null(job_status_name((enum job_status)-1));
    enum job_status out = JOB_RUNNING;
    assert_int_equal(job_status_parse("Queued", &out), -EINVAL);
    assert_int_equal(job_status_parse("", &out), -EINVAL);
    assert_int_equal(job_status_parse(NULL, &out), -EINVAL);
    assert_int_equal(out, JOB_RUNNING);                          /* untouched on failure */
}

/* The CHECK list of the schema (written out in migration 3) and the name table agree, in order. */
static void test_status_check_matches_table(void **state)
{
    db_fixture *f = *state;
    sqlite3 *h = raw_open(f->path);
    char *sql = raw_rows(h, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'jobs'");
    const char *p = strstr(sql, "CHECK (status IN (");
    assert_non_null(p);
    p += strlen("CHECK (status IN (");
    int n = 0;
    while (*p != ')') {
        assert_int_equal(*p, '\'');
        const char *end = strchr(p + 1, '\'');
        assert_non_null(end);
        assert_true(n < JOB_STATUS_COUNT);
        const char *name = job_status_name((enum job_status)n++);
        assert_int_equal((int)(end - p - 1), (int)strlen(name));
        assert_memory_equal(p + 1, name, strlen(name));
        p = end + 1;
        if (*p == ',') p++;
        while (*p == ' ') p++;
    }
    assert_int_equal(n, JOB_STATUS_COUNT);
    free(sql);

    /* every name is accepted by the schema, anything else refused */
    db_job j;
    char id[DB_ID_MAX];
    for (int i = 0; i < JOB_STATUS_COUNT; i++) {
        snprintf(id, sizeof id, "ftjob-s%d", i);
        new_job(&j, id, NULL);
        j.status = (enum job_status)i;
        assert_int_equal(db_job_insert(f->d, &j, NULL), 0);
    }
    assert_int_equal(sqlite3_exec(h, "UPDATE jobs SET status = 'validating_files' WHERE id = 'ftjob-s0'", NULL, NULL,
                                  NULL), SQLITE_CONSTRAINT);
    assert_int_equal(sqlite3_extended_errcode(h), SQLITE_CONSTRAINT_CHECK);
    sqlite3_close(h);
}

/* ---- executor records from a batch ---- */

static void test_batch_executor_record(void **state)
{
    db_fixture *f = *state;
    db_job j;
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "ftjob-%d", i);
        new_job(&j, id, NULL);
        assert_int_equal(db_job_insert(f->d, &j, NULL), 0);
    }
    char err[256], ids[4][DB_ID_MAX];
    int n = -1;
    assert_int_equal(db_job_ids_executor_live(f->d, 4, ids, &n), 0);
    assert_int_equal(n, 0);
    db_batch b = {0};
    db_exec *x = db_batch_exec(&b, "ftjob-2");
    x->record = strdup("{\"type\":\"slurm\",\"offset\":1}");
    x->live = 1;
    assert_ptr_equal(db_batch_exec(&b, "ftjob-2"), x); /* one entry per job: the last record wins */
    free(x->record);
    x->record = strdup("{\"type\":\"slurm\",\"offset\":2}");
    db_batch_exec(&b, "ftjob-0")->record = strdup("{\"type\":\"slurm\"}");
    db_batch_exec(&b, "ftjob-0")->live = 1;
    assert_int_equal(db_batch_write(f->d, &b, err, sizeof err), 0);
    db_batch_reset(&b);
    assert_int_equal(db_job_ids_executor_live(f->d, 4, ids, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], "ftjob-0"); /* oldest first */
    assert_string_equal(ids[1], "ftjob-2");
    assert_int_equal(db_job_get(f->d, "ftjob-2", &j), 0);
    assert_string_equal(j.executor, "{\"type\":\"slurm\",\"offset\":2}");
    assert_int_equal(j.executor_live, 1);
    db_job_clear(&j);

    /* the run ended: the record stays, no longer live; a failing row rolls it back with the rest */
    x = db_batch_exec(&b, "ftjob-2");
    x->record = strdup("{\"type\":\"slurm\",\"state\":\"COMPLETED\"}");
    add_metric(&b, "ftjob-2", 1, NULL, 1.0);
    assert_int_equal(db_batch_write(f->d, &b, err, sizeof err), -EIO);
    assert_int_equal(db_job_get(f->d, "ftjob-2", &j), 0);
    assert_int_equal(j.executor_live, 1);
    db_job_clear(&j);
    db_batch_reset(&b);
    x = db_batch_exec(&b, "ftjob-2");
    x->record = strdup("{\"type\":\"slurm\",\"state\":\"COMPLETED\"}");
    assert_int_equal(db_batch_write(f->d, &b, err, sizeof err), 0);
    db_batch_free(&b);
    assert_int_equal(db_job_ids_executor_live(f->d, 4, ids, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(db_job_get(f->d, "ftjob-2", &j), 0);
    assert_string_equal(j.executor, "{\"type\":\"slurm\",\"state\":\"COMPLETED\"}");
    assert_int_equal(j.executor_live, 0);
    db_job_clear(&j);
}

/* ---- models rows from a batch ---- */

static void test_batch_model_row(void **state)
{
    db_fixture *f = *state;
    db_job j;
    new_job(&j, "ftjob-1", NULL);
    assert_int_equal(db_job_insert(f->d, &j, NULL), 0);
    char err[256];
    db_batch b = {0};

    /* an unknown status: refused before anything is written, the model row with it */
    db_status *s = db_batch_status(&b);
    snprintf(s->job_id, sizeof s->job_id, "ftjob-1");
    s->status = (enum job_status)99;
    db_model *m = db_batch_model(&b);
    snprintf(m->id, sizeof m->id, "ft:resnet20:x:ftjob-1");
    assert_int_equal(db_batch_write(f->d, &b, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "unknown status 99"));
    db_model got;
    assert_int_equal(db_model_get(f->d, "ft:resnet20:x:ftjob-1", &got), -ENOENT);
    db_batch_reset(&b);

    /* a failing row later in the batch rolls the model row back too */
    m = db_batch_model(&b);
    snprintf(m->id, sizeof m->id, "ft:resnet20:x:ftjob-1");
    snprintf(m->arch, sizeof m->arch, "resnet20");
    snprintf(m->path, sizeof m->path, "/x/final.safetensors");
    add_metric(&b, "ftjob-1", 1, NULL, 1.0);
    assert_int_equal(db_batch_write(f->d, &b, err, sizeof err), -EIO);
    assert_int_equal(db_model_get(f->d, "ft:resnet20:x:ftjob-1", &got), -ENOENT);
    db_batch_reset(&b);

    /* as the core does it: the status change names the model, the model row comes apart */
    s = db_batch_status(&b);
    snprintf(s->job_id, sizeof s->job_id, "ftjob-1");
    s->status = JOB_SUCCEEDED;
    s->finished_at = 1700000009;
    s->fine_tuned_model = strdup("ft:resnet20:x:ftjob-1");
    m = db_batch_model(&b);
    assert_false(db_batch_empty(&b));
    snprintf(m->id, sizeof m->id, "ft:resnet20:x:ftjob-1");
    snprintf(m->job_id, sizeof m->job_id, "ftjob-1");
    snprintf(m->arch, sizeof m->arch, "resnet20");
    snprintf(m->path, sizeof m->path, "/x/final.safetensors");
    snprintf(m->owner, sizeof m->owner, "alice");
    m->created_at = 1700000009;
    assert_int_equal(db_batch_write(f->d, &b, err, sizeof err), 0);
    db_batch_free(&b);
    assert_int_equal(db_model_get(f->d, "ft:resnet20:x:ftjob-1", &got), 0);
    assert_string_equal(got.path, "/x/final.safetensors");
    assert_string_equal(got.owner, "alice");
    assert_int_equal(got.created_at, 1700000009);
    assert_int_equal(db_job_get(f->d, "ftjob-1", &j), 0);
    assert_int_equal(j.status, JOB_SUCCEEDED);
    assert_string_equal(j.fine_tuned_model, "ft:resnet20:x:ftjob-1");
    db_job_clear(&j);
}

/* ---- upgrading an old database ---- */

/* dir/name made with migrations [0, upto) run as their SQL stands, as that version's db_open left it. */
static void make_old_db(const char *path, int upto)
{
    sqlite3 *h = raw_open(path);
    raw_exec(h, "PRAGMA journal_mode=WAL");
    for (int v = 0; v < upto; v++) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
        raw_exec(h, "BEGIN IMMEDIATE");
        raw_exec(h, db__migrations[v]);
        raw_exec(h, sql);
        raw_exec(h, "COMMIT");
    }
    sqlite3_close(h);
}

static void unlink_db(const char *path)
{
    char p[450];
    const char *sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) { snprintf(p, sizeof p, "%s%s", path, sfx[i]); unlink(p); }
}

/* Rows of every kind, in version 1's columns (nothing later existed). ftjob-old3 is deleted again
 * so that the AUTOINCREMENT high-water mark (3) is above max(seq) (2). */
static const char v1_rows[] =
    "INSERT INTO jobs (id, status, created_at, started_at, finished_at, body, method, extensions, model,"
    "  training_file, validation_file, seed, suffix, metadata, arch, idem_key, body_hash, step, total_steps,"
    "  epoch, epochs, metrics, best_valid_accuracy, final_valid_accuracy, eta_seconds, progress_at,"
    "  fine_tuned_model)"
    " VALUES ('ftjob-old1', 'succeeded', 1700000000, 1700000010, 1700000100, '{\"model\":\"resnet20\"}',"
    "  '{\"type\":\"core_tuning\"}', '{}', 'resnet20', 'file-1', NULL, 42, 'exp', '{\"k\":\"v\"}', 'resnet20',"
    "  NULL, NULL, 30, 30, 3, 3, '{\"train_loss\":0.5}', 0.91, 0.9, NULL, 1700000100,"
    "  'ft:resnet20:exp:ftjob-old1');"
    "INSERT INTO jobs (id, status, created_at, body, method, extensions, model, training_file, seed, arch,"
    "  idem_key, body_hash)"
    " VALUES ('ftjob-old2', 'queued', 1700000200, '{}', '{}', '{}', 'resnet20', 'file-1', 7, 'resnet20',"
    "  'key-old', 'hash-old');"
    "INSERT INTO jobs (id, status, created_at, body, method, extensions, model, training_file, seed, arch,"
    "  error_code, error_message)"
    " VALUES ('ftjob-old3', 'failed', 1700000300, '{}', '{}', '{}', 'resnet20', 'file-1', 7, 'resnet20',"
    "  'oom', 'out of memory');"
    "DELETE FROM jobs WHERE id = 'ftjob-old3';"
    "INSERT INTO events (id, job_id, type, level, message, data, created_at) VALUES"
    "  (1, 'ftjob-old1', 'status', 'info', 'Job started', '{\"status\":\"running\"}', 1700000010),"
    "  (2, 'ftjob-old1', 'status', 'info', 'Job succeeded', NULL, 1700000100);"
    "INSERT INTO metrics (job_id, name, step, value) VALUES"
    "  ('ftjob-old1', 'train_loss', 1, 2.0), ('ftjob-old1', 'train_loss', 2, 1.5);"
    "INSERT INTO checkpoints (job_id, step, epoch, path, metrics, created_at)"
    "  VALUES ('ftjob-old1', 30, 3, '/x/state.safetensors', NULL, 1700000099);"
    "INSERT INTO files (id, filename, purpose, bytes, format, path, created_at)"
    "  VALUES ('file-1', 'train.bin', 'fine-tune', 3073, 'cifar10', '/x/files/file-1', 1699999999);"
    "INSERT INTO models (id, job_id, arch, path, created_at)"
    "  VALUES ('ft:resnet20:exp:ftjob-old1', 'ftjob-old1', 'resnet20', '/x/final.safetensors', 1700000100);";

static int count_event(void *ud, const db_event *e)
{
    (void)e;
    (*(int *)ud)++;
    return 0;
}

static void test_upgrade_from_v1(void **state)
{
    db_fixture *f = *state;
    char path[350], ref[350], err[256];
    snprintf(path, sizeof path, "%s/v1.db", f->dir);
    snprintf(ref, sizeof ref, "%s/v2.db", f->dir);
    make_old_db(path, 1);
    sqlite3 *h = raw_open(path);
    raw_exec(h, v1_rows);
    assert_int_equal(raw_int(h, "PRAGMA user_version"), 1);
    assert_int_equal(raw_int(h, "SELECT seq FROM sqlite_sequence WHERE name = 'jobs'"), 3);
    sqlite3_close(h);

    db *d;
    assert_int_equal(db_open(&d, path, err, sizeof err), 0);
    h = raw_open(path);
    assert_int_equal(db__n_migrations, 9);
    assert_int_equal(raw_int(h, "PRAGMA user_version"), db__n_migrations); /* every migration applied */
    /* migration 9 summarised the points already there: one block, lowest at step 2, highest at step 1 */
    assert_int_equal(raw_int(h, "SELECT n * 100 + min_step * 10 + max_step FROM metric_blocks"
                                " WHERE job_id = 'ftjob-old1' AND name = 'train_loss' AND block = 0"), 221);
    int users = -1;
    assert_int_equal(db_user_count(d, &users), 0);                         /* migration 2's tables */
    assert_int_equal(users, 0);
    char *sql = raw_rows(h, "SELECT sql FROM sqlite_master WHERE name = 'jobs'");
    assert_non_null(strstr(sql, "CHECK (status IN"));
    free(sql);

    /* the rows survive, with migration 2's defaults in the new columns */
    db_job j;
    assert_int_equal(db_job_get(d, "ftjob-old1", &j), 0);
    assert_int_equal(j.seq, 1);
    assert_int_equal(j.status, JOB_SUCCEEDED);
    assert_string_equal(j.owner, "");
    assert_int_equal(j.priority, 5);
    assert_int_equal(j.threads, 1);
    assert_int_equal(j.preempted, 0);
    assert_int_equal(j.started_at, 1700000010);
    assert_int_equal(j.finished_at, 1700000100);
    assert_string_equal(j.body, "{\"model\":\"resnet20\"}");
    assert_string_equal(j.suffix, "exp");
    assert_string_equal(j.metadata, "{\"k\":\"v\"}");
    assert_null(j.validation_file);
    assert_null(j.idem_key);
    assert_int_equal(j.step, 30);
    assert_int_equal(j.epochs, 3);
    assert_string_equal(j.metrics, "{\"train_loss\":0.5}");
    assert_true(j.best_valid_accuracy == 0.91);
    assert_true(j.final_valid_accuracy == 0.9);
    assert_true(isnan(j.eta_seconds));
    assert_null(j.executor);                                                /* migration 5's columns */
    assert_int_equal(j.executor_live, 0);
    assert_string_equal(j.fine_tuned_model, "ft:resnet20:exp:ftjob-old1");
    db_job_clear(&j);
    assert_int_equal(db_job_find_idem(d, "key-old", &j), 0);
    assert_string_equal(j.id, "ftjob-old2");
    assert_int_equal(j.status, JOB_QUEUED);
    assert_string_equal(j.body_hash, "hash-old");
    db_job_clear(&j);
    assert_int_equal(db_job_get(d, "ftjob-old3", &j), -ENOENT);
    int n = 0, more;
    assert_int_equal(db_event_list(d, "ftjob-old1", 0, 10, count_event, &n, &more), 0);
    assert_int_equal(n, 2);
    pts x = {.n = 0};
    assert_int_equal(db_metric_series(d, "ftjob-old1", "train_loss", 0, collect_point, &x), 0);
    assert_int_equal(x.n, 2);
    n = 0;
    assert_int_equal(db_checkpoint_list(d, "ftjob-old1", 0, 10, count_ckpt, &n, &more), 0);
    assert_int_equal(n, 1);
    db_file fl;
    assert_int_equal(db_file_get(d, "file-1", &fl), 0);
    assert_int_equal(fl.bytes, 3073);
    assert_string_equal(fl.owner, "");
    assert_int_equal(fl.images, -1);                                        /* migration 8: not recorded */
    assert_int_equal(fl.max_width, 0);
    db_model m;
    assert_int_equal(db_model_get(d, "ft:resnet20:exp:ftjob-old1", &m), 0);
    assert_string_equal(m.path, "/x/final.safetensors");
    assert_string_equal(m.owner, "");

    /* the AUTOINCREMENT high-water mark came along: a deleted job's seq is not reused */
    assert_int_equal(raw_int(h, "SELECT seq FROM sqlite_sequence WHERE name = 'jobs'"), 3);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM sqlite_sequence WHERE name = 'jobs_new'"), 0);
    new_job(&j, "ftjob-new", NULL);
    assert_int_equal(db_job_insert(d, &j, NULL), 0);
    assert_int_equal(db_job_get(d, "ftjob-new", &j), 0);
    assert_int_equal(j.seq, 4);
    db_job_clear(&j);

    /* an invalid status is now refused by the schema itself, and by storage before it */
    assert_int_equal(sqlite3_exec(h, "UPDATE jobs SET status = 'bogus' WHERE id = 'ftjob-old2'", NULL, NULL, NULL),
                     SQLITE_CONSTRAINT);
    assert_int_equal(sqlite3_extended_errcode(h), SQLITE_CONSTRAINT_CHECK);
    assert_int_equal(sqlite3_exec(h, "INSERT INTO jobs (id, status, created_at, body, method, extensions, model,"
                                     " training_file, seed, arch) VALUES ('ftjob-raw', 'done', 1, '{}', '{}', '{}',"
                                     " 'resnet20', 'file-1', 1, 'resnet20')", NULL, NULL, NULL),
                     SQLITE_CONSTRAINT);
    new_job(&j, "ftjob-bad", NULL);
    j.status = JOB_STATUS_COUNT;        /* not a status */
    assert_int_equal(db_job_insert(d, &j, NULL), -EINVAL);
    assert_int_equal(db_job_get(d, "ftjob-old2", &j), 0);
    assert_int_equal(j.status, JOB_QUEUED);
    db_job_clear(&j);

    /* the jobs table is what version 2 made of it plus migration 5's columns and 6's tables (types, NOT NULL, defaults,
     * keys, indexes), and nothing else in the schema changed but what migration 4 added (the counters table) */
    make_old_db(ref, 2);
    sqlite3 *r = raw_open(ref);
    for (int m = 4; m < db__n_migrations; m++) raw_exec(r, db__migrations[m]); /* 5-7: columns, sweeps, webhooks */
    char *want = jobs_shape(r), *have = jobs_shape(h);
    assert_string_equal(have, want);
    free(want); free(have);
    const char *others = "SELECT type, name, tbl_name, sql FROM sqlite_master"
                         " WHERE name != 'jobs' AND tbl_name != 'counters' ORDER BY type, name";
    want = raw_rows(r, others); have = raw_rows(h, others);
    assert_string_equal(have, want);
    free(want); free(have);
    sqlite3_close(r);
    have = raw_rows(h, "SELECT name FROM sqlite_master WHERE tbl_name = 'counters' ORDER BY name");
    assert_string_equal(have, "counters\nsqlite_autoindex_counters_1\n");
    free(have);

    have = raw_rows(h, "PRAGMA integrity_check");
    assert_string_equal(have, "ok\n");
    free(have);
    have = raw_rows(h, "PRAGMA foreign_key_check");
    assert_string_equal(have, "");
    free(have);
    sqlite3_close(h);
    db_close(d);
    assert_int_equal(db_open(&d, path, err, sizeof err), 0);               /* reopening changes nothing */
    db_close(d);
    unlink_db(path);
    unlink_db(ref);
}

/* A stored status outside the list stops the upgrade: migration 3 rolls back whole, the daemon does not
 * start, and the file stays at version 2 with its rows. */
static void test_upgrade_refuses_unknown_status(void **state)
{
    db_fixture *f = *state;
    char path[350], err[256] = "";
    snprintf(path, sizeof path, "%s/bad.db", f->dir);
    make_old_db(path, 1);
    sqlite3 *h = raw_open(path);
    raw_exec(h, v1_rows);
    raw_exec(h, "UPDATE jobs SET status = 'validating_files' WHERE id = 'ftjob-old2'");
    sqlite3_close(h);
    db *d = NULL;
    assert_int_equal(db_open(&d, path, err, sizeof err), -EIO);
    assert_null(d);
    assert_non_null(strstr(err, "migration 3"));
    assert_non_null(strstr(err, "CHECK"));
    h = raw_open(path);
    assert_int_equal(raw_int(h, "PRAGMA user_version"), 2);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM jobs"), 2);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM sqlite_master WHERE name = 'jobs_new'"), 0);
    sqlite3_close(h);
    unlink_db(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reopen_and_wal, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_jobs_insert_get_idem, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_jobs_list_pages_newest_first, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_batch_round_trip, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_event_id_reservation, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_failed_batch_writes_nothing, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_requeue_running, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_files_and_integrity, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_deletes, setup, db_fixture_teardown),
        cmocka_unit_test(test_job_status_table),
        cmocka_unit_test_setup_teardown(test_status_check_matches_table, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_batch_model_row, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_batch_executor_record, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_from_v1, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_refuses_unknown_status, setup, db_fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
