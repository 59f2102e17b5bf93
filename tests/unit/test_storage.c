/* tests/unit/test_storage.c — storage/db.c against a real SQLite file in a temporary directory:
 * migrations (reopen is a no-op, WAL on), job insert/get/idempotency key/list pagination, a batch of
 * events, metrics (a repeated step replaces), progress, checkpoints and status changes written in one
 * transaction, a failing batch leaving nothing behind, requeue of running jobs, models and files,
 * and PRAGMA integrity_check at the end. Single-threaded cmocka binary. */
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
#include "tests/unit/dbfix.h"

static int setup(void **state) { return db_fixture_setup(state, "storage"); }

static void new_job(db_job *j, const char *id, const char *idem)
{
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "%s", id);
    snprintf(j->status, sizeof j->status, "queued");
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
    assert_int_equal(db_job_insert(f->d, &j), 0);
    assert_int_equal(db_job_insert(f->d, &j), -EEXIST);          /* same id */
    new_job(&j, "ftjob-2", "key-1");
    assert_int_equal(db_job_insert(f->d, &j), -EEXIST);          /* same idempotency key */
    new_job(&j, "ftjob-2", NULL);
    assert_int_equal(db_job_insert(f->d, &j), 0);                /* NULL keys do not collide */
    new_job(&j, "ftjob-3", NULL);
    assert_int_equal(db_job_insert(f->d, &j), 0);

    assert_int_equal(db_job_get(f->d, "ftjob-1", &got), 0);
    assert_string_equal(got.status, "queued");
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

    int pos;
    assert_int_equal(db_job_queue_position(f->d, 3, &pos), 0);
    assert_int_equal(pos, 3);
}

typedef struct ids { char v[8][DB_ID_MAX]; int n; } ids;
static int collect_job(void *ud, const db_job *j)
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
    for (int i = 0; i < 3; i++) { new_job(&j, names[i], NULL); assert_int_equal(db_job_insert(f->d, &j), 0); }
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
    assert_int_equal(db_job_insert(f->d, &j), 0);
    db_batch b = {0};
    db_status *s = db_batch_status(&b);
    snprintf(s->job_id, sizeof s->job_id, "ftjob-1");
    snprintf(s->status, sizeof s->status, "running");
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
    assert_string_equal(got.status, "running");
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
    snprintf(s->status, sizeof s->status, "succeeded");
    s->finished_at = 1700000009;
    s->fine_tuned_model = strdup("ft:resnet20:x:ftjob-1");
    s->model_path = strdup("/x/final.safetensors");
    snprintf(s->arch, sizeof s->arch, "resnet20");
    assert_int_equal(db_batch_write(f->d, &b, err, sizeof err), 0);
    db_batch_free(&b);
    db_model m;
    assert_int_equal(db_model_get(f->d, "ft:resnet20:x:ftjob-1", &m), 0);
    assert_string_equal(m.path, "/x/final.safetensors");
    assert_string_equal(m.job_id, "ftjob-1");
    assert_int_equal(db_model_get(f->d, "ft:none", &m), -ENOENT);
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

static void test_requeue_running(void **state)
{
    db_fixture *f = *state;
    db_job j;
    new_job(&j, "ftjob-1", NULL);
    snprintf(j.status, sizeof j.status, "running");
    assert_int_equal(db_job_insert(f->d, &j), 0);
    new_job(&j, "ftjob-2", NULL);
    assert_int_equal(db_job_insert(f->d, &j), 0);
    int count;
    assert_int_equal(db_job_requeue_running(f->d, &count), 0);
    assert_int_equal(count, 1);
    char v[4][DB_ID_MAX];
    int n;
    assert_int_equal(db_job_ids_by_status(f->d, "queued", 4, v, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0], "ftjob-1");
}

static int count_file(void *ud, const db_file *fl)
{
    (void)fl;
    (*(int *)ud)++;
    return 0;
}

static void test_files_and_integrity(void **state)
{
    db_fixture *f = *state;
    db_file fl = {.bytes = 3073, .created_at = 1700000000};
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

    sqlite3 *h;
    assert_int_equal(sqlite3_open(f->path, &h), SQLITE_OK);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reopen_and_wal, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_jobs_insert_get_idem, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_jobs_list_pages_newest_first, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_batch_round_trip, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_failed_batch_writes_nothing, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_requeue_running, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_files_and_integrity, setup, db_fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
