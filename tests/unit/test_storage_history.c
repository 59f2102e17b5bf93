/* tests/unit/test_storage_history.c — the reads a long history is served by (storage/db_events.c): a job's
 * series names by one seek per name, event pages by cursor and the block summary of a series, against a real SQLite file (dbfix.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include "storage/db.h"
#include "tests/unit/dbfix.h"

static int setup(void **state) { return db_fixture_setup(state, "history"); }

static void add_metric(db_batch *b, const char *job, int step, const char *name)
{
    db_metric *m = db_batch_metric(b);
    assert_non_null(m);
    snprintf(m->job_id, sizeof m->job_id, "%s", job);
    m->step = step;
    m->name = name;
    m->value = step;
}

typedef struct seen { char v[8][64]; int n, stop_after; } seen;
static int on_name(void *ud, const char *name)
{
    seen *s = ud;
    assert_true(s->n < 8);
    snprintf(s->v[s->n++], sizeof s->v[0], "%s", name);
    return s->stop_after && s->n == s->stop_after;
}

/* Names in order, each once, only the job's own (a job whose id extends this one's sorts right after it),
 * whatever the interleaving of steps; a callback that says stop is obeyed. */
static void test_metric_names_one_seek_each(void **state)
{
    db_fixture *f = *state;
    db_batch b;
    memset(&b, 0, sizeof b);
    const char *names[] = {"lr", "ce_loss", "train_loss", "a"};
    for (int step = 1; step <= 300; step++)
        for (int k = 0; k < 4; k++) add_metric(&b, "ftjob-a", step, names[k]);
    add_metric(&b, "ftjob-ab", 1, "b_other");
    add_metric(&b, "ftjob-", 1, "c_other");
    char err[256];
    assert_int_equal(db_batch_write(f->d, &b, err, sizeof err), 0);
    db_batch_free(&b);
    seen s = {0};
    assert_int_equal(db_metric_names(f->d, "ftjob-a", on_name, &s), 0);
    assert_int_equal(s.n, 4);
    assert_string_equal(s.v[0], "a");
    assert_string_equal(s.v[1], "ce_loss");
    assert_string_equal(s.v[2], "lr");
    assert_string_equal(s.v[3], "train_loss");
    seen two = {.stop_after = 2};
    assert_int_equal(db_metric_names(f->d, "ftjob-a", on_name, &two), 0);
    assert_int_equal(two.n, 2);
    seen none = {0};
    assert_int_equal(db_metric_names(f->d, "ftjob-none", on_name, &none), 0);
    assert_int_equal(none.n, 0);
}

typedef struct ids { long long v[16]; int n; } ids;
static int on_event(void *ud, const db_event *e)
{
    ids *x = ud;
    assert_true(x->n < 16);
    x->v[x->n++] = e->id;
    return 0;
}

/* A page after a cursor: the next ids of this job only, has_more while any is left. */
static void test_event_pages_by_cursor(void **state)
{
    db_fixture *f = *state;
    db_batch b;
    memset(&b, 0, sizeof b);
    for (int i = 1; i <= 40; i++) {
        db_event *e = db_batch_event(&b);
        assert_non_null(e);
        snprintf(e->job_id, sizeof e->job_id, "%s", i % 2 ? "ftjob-a" : "ftjob-b");
        e->id = i;
        e->created_at = 1;
        e->type = "metrics";
        e->level = "info";
    }
    char err[256];
    assert_int_equal(db_batch_write(f->d, &b, err, sizeof err), 0);
    db_batch_free(&b);
    ids x = {0};
    int more = -1;
    assert_int_equal(db_event_list(f->d, "ftjob-a", 10, 5, on_event, &x, &more), 0);
    assert_int_equal(x.n, 5);
    for (int i = 0; i < 5; i++) assert_int_equal(x.v[i], 11 + 2 * i);
    assert_int_equal(more, 1);
    ids last = {0};
    assert_int_equal(db_event_list(f->d, "ftjob-a", 35, 5, on_event, &last, &more), 0);
    assert_int_equal(last.n, 2);
    assert_int_equal(last.v[0], 37);
    assert_int_equal(last.v[1], 39);
    assert_int_equal(more, 0);
}

/* ---- the block summary of a series (storage/db_metric_blocks.c) ---- */

typedef struct pts { int step[4096]; double v[4096]; int n; } pts;
static int on_point(void *ud, int step, double v)
{
    pts *p = ud;
    assert_true(p->n < 4096);
    p->step[p->n] = step;
    p->v[p->n++] = v;
    return 0;
}

static void write_series(db *d, const char *job, const char *name, int from, int to, double (*f)(int))
{
    db_batch b;
    memset(&b, 0, sizeof b);
    for (int step = from; step <= to; step++) {
        db_metric *m = db_batch_metric(&b);
        assert_non_null(m);
        snprintf(m->job_id, sizeof m->job_id, "%s", job);
        m->step = step;
        m->name = name;
        m->value = f(step);
        db_metric *other = db_batch_metric(&b);           /* a second series stepping with it */
        assert_non_null(other);
        snprintf(other->job_id, sizeof other->job_id, "%s", job);
        other->step = step;
        other->name = "lr";
        other->value = 1.0;
    }
    char err[256];
    assert_int_equal(db_batch_write(d, &b, err, sizeof err), 0);
    db_batch_free(&b);
}

/* What the summary must say, worked out from every point: per 256-step block after after_step's, its first,
 * lowest, highest and last points in step order, each once; before that, the points themselves. */
static void expect_summary(db *d, const char *job, const char *name, int after_step)
{
    pts all = {0}, got = {0}, want = {0};
    assert_int_equal(db_metric_series(d, job, name, after_step, on_point, &all), 0);
    long long total = -1, blocks = -1, points = -1;
    assert_int_equal(db_metric_series_blocks(d, job, name, after_step, on_point, &got, &total), 0);
    assert_int_equal(total, all.n);
    assert_int_equal(db_metric_blocks_count(d, job, name, after_step, &blocks, &points), 0);
    int i = 0;
    while (i < all.n && all.step[i] >> 8 == after_step >> 8) on_point(&want, all.step[i], all.v[i]), i++;
    assert_int_equal(points, all.n - i);
    int nblocks = 0;
    while (i < all.n) {
        int j = i, lo = i, hi = i;
        for (; j < all.n && all.step[j] >> 8 == all.step[i] >> 8; j++) {
            if (all.v[j] < all.v[lo]) lo = j;
            if (all.v[j] > all.v[hi]) hi = j;
        }
        int k[4] = {i, lo < hi ? lo : hi, lo < hi ? hi : lo, j - 1};
        for (int q = 0; q < 4; q++)
            if (q == 0 || k[q] != k[q - 1]) on_point(&want, all.step[k[q]], all.v[k[q]]);
        nblocks++;
        i = j;
    }
    assert_int_equal(blocks, nblocks);
    assert_int_equal(got.n, want.n);
    for (int q = 0; q < got.n; q++) {
        assert_int_equal(got.step[q], want.step[q]);
        assert_true(got.v[q] == want.v[q]);
    }
}

static double wave(int step) { return step == 700 ? 50.0 : step == 1500 ? -50.0 : (step * 37 % 101) / 10.0; }
static double calm(int step) { return step == 1600 ? -80.0 : 1.0 + step * 1e-3; }

/* Kept in the transaction of the points: written in several batches (a block split between two), then steps
 * written again as a resumed job does, replacing an extreme; the other series and other jobs stay apart. */
static void test_metric_blocks_follow_points(void **state)
{
    db_fixture *f = *state;
    write_series(f->d, "ftjob-a", "train_loss", 1, 1000, wave);
    write_series(f->d, "ftjob-a", "train_loss", 1001, 3000, wave);
    write_series(f->d, "ftjob-b", "train_loss", 1, 300, calm);
    expect_summary(f->d, "ftjob-a", "train_loss", 0);
    expect_summary(f->d, "ftjob-a", "train_loss", 1200);
    expect_summary(f->d, "ftjob-a", "lr", 0);
    expect_summary(f->d, "ftjob-b", "train_loss", 0);
    write_series(f->d, "ftjob-a", "train_loss", 1400, 1700, calm);   /* resumed from step 1399 */
    expect_summary(f->d, "ftjob-a", "train_loss", 0);
    pts got = {0};
    long long total = 0;
    assert_int_equal(db_metric_series_blocks(f->d, "ftjob-a", "train_loss", 0, on_point, &got, &total), 0);
    int spike = 0, old = 0;
    for (int q = 0; q < got.n; q++) {
        spike += got.step[q] == 1600 && got.v[q] == -80.0;
        old += got.step[q] == 1500;
    }
    assert_int_equal(spike, 1);      /* the new low is kept ... */
    assert_int_equal(old, 0);        /* ... and the replaced one is gone */
    assert_int_equal(total, 3000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_metric_names_one_seek_each, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_event_pages_by_cursor, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_metric_blocks_follow_points, setup, db_fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
