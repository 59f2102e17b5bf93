/* tests/unit/test_storage_history.c — the reads a long history is served by (storage/db_events.c): a job's
 * series names by one seek per name, and event pages by cursor, against a real SQLite file (dbfix.h). */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_metric_names_one_seek_each, setup, db_fixture_teardown),
        cmocka_unit_test_setup_teardown(test_event_pages_by_cursor, setup, db_fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
