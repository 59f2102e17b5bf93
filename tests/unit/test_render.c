/* tests/unit/test_render.c — the memo of rendered jobs (api/render.h): render_job_text and
 * render_job_page_text print exactly what json_dumps(render_job / render_job_page, JSON_COMPACT) prints,
 * the first time, from the memo, and after every kind of change to a job (its row, its progress, its
 * queue place, its executor record, its device), so a change is never served stale; a page larger than the
 * memo (slots shared inside one page) too. Single-threaded cmocka binary. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/render.h"

static void set(char **field, const char *value)
{
    free(*field);
    *field = value ? strdup(value) : NULL;
}

/* A queued job as the service hands it over (every string heap, as svc_job_clear frees them). */
static void make_job(svc_job *j, int k)
{
    memset(j, 0, sizeof *j);
    db_job *r = &j->row;
    snprintf(r->id, sizeof r->id, "ftjob-test%04d", k);
    snprintf(r->owner, sizeof r->owner, "ana");
    r->status = JOB_QUEUED;
    r->created_at = 1700000000 + k;
    r->seed = 7;
    r->epochs = 2;
    r->priority = 5;
    r->threads = 1;
    r->best_valid_accuracy = r->final_valid_accuracy = r->eta_seconds = NAN;
    set(&r->body, "{\"model\":\"resnet20\"}");
    set(&r->model, "resnet20");
    set(&r->training_file, "fashion-mnist-train");
    set(&r->method, "{\"type\":\"core_tuning\",\"core_tuning\":{\"hyperparameters\":{\"n_epochs\":2,"
                    "\"learning_rate\":0.01,\"momentum\":0.9,\"weight_decay\":0.0001}}}");
    set(&r->extensions, "{\"architecture\":{\"in_channels\":1,\"image_size\":28},\"data\":{\"valid_fraction\":0.1},"
                        "\"device\":\"cpu\"}");
    j->queue_position = k + 1;
    j->executor_type = "local";
}

/* render_job_text(m, j) equals a fresh rendering; returns it (the caller frees). */
static char *check_text(render_memo *m, const svc_job *j)
{
    json_t *o = render_job(j);
    assert_non_null(o);
    char *want = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char *got = render_job_text(m, j);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(want);
    return got;
}

static void test_job_changes(void **st)
{
    (void)st;
    render_memo *m;
    assert_int_equal(render_memo_new(&m), 0);
    svc_job j;
    make_job(&j, 1);
    char *prev = check_text(m, &j), *t = check_text(m, &j); /* rendered, then from the memo */
    assert_string_equal(prev, t);
    free(t);
    db_job *r = &j.row;
    /* each change in turn; every one must show */
    for (int step = 0;; step++) {
        switch (step) {
        case 0: j.queue_position = 5; break;
        case 1: j.estimated_start = 1700000500; break;
        case 2: r->priority = 9; break;
        case 3: r->status = JOB_RUNNING; j.queue_position = 0; j.estimated_start = 0; r->started_at = 1700000600; break;
        case 4: snprintf(j.assigned_device, sizeof j.assigned_device, "cpu"); break;
        case 5: r->step = 10; r->total_steps = 100; r->epoch = 1; break;
        case 6: set(&r->metrics, "{\"train_loss\":1.5}"); break;
        case 7: set(&r->metrics, "{\"train_loss\":1.25}"); break;
        case 8: r->best_valid_accuracy = 0.5; break;
        case 9: r->best_valid_accuracy = 0.75; break;
        case 10: j.estimated_finish = 1700001000; break;
        case 11: set(&r->executor, "{\"type\":\"slurm\",\"job_id\":\"42\",\"state\":\"RUNNING\"}"); break;
        case 12: set(&r->executor, "{\"type\":\"slurm\",\"job_id\":\"42\",\"state\":\"COMPLETING\"}"); break;
        case 13: r->status = JOB_FAILED; r->finished_at = 1700002000; set(&r->error_code, "oom"); break;
        case 14: set(&r->error_message, "out of memory"); break;
        case 15: set(&r->error_param, "method"); break;
        case 16: r->final_valid_accuracy = 0.5; break;
        case 17: set(&r->fine_tuned_model, "resnet20:ft-ana-1"); break;
        case 18: set(&r->suffix, "s1"); break;
        case 19: set(&r->metadata, "{\"k\":\"v\"}"); break;
        case 20: set(&r->validation_file, "fashion-mnist-test"); break;
        case 21: snprintf(r->owner, sizeof r->owner, "ben"); break;
        case 22: r->threads = 2; break;
        case 23: set(&r->executor, NULL); break; /* "local", the type the service says */
        case 24: j.executor_type = "slurm"; break;
        case 25: r->created_at++; r->seed++; r->epochs++; break;
        case 26: set(&r->extensions, "{\"architecture\":{\"in_channels\":3},\"data\":{},\"device\":\"cuda\"}"); break;
        case 27: set(&r->method, "{\"type\":\"supervised\",\"supervised\":{\"hyperparameters\":{\"n_epochs\":3}}}"); break;
        case 28: set(&r->model, "resnet18"); set(&r->training_file, "file-x"); break;
        case 29: r->best_valid_accuracy = -0.0; break;
        case 30: r->best_valid_accuracy = 0.0; break;
        }
        if (step == 31) break;
        print_message("change %d\n", step);
        t = check_text(m, &j);
        assert_string_not_equal(t, prev);
        free(prev);
        prev = t;
        t = check_text(m, &j); /* and now from the memo */
        free(t);
    }
    free(prev);
    /* another job with the same id and different content (deleted and made again) is not served the old one */
    svc_job k;
    make_job(&k, 1);
    t = check_text(m, &k);
    free(t);
    svc_job_clear(&k);
    svc_job_clear(&j);
    render_memo_free(m);
    /* no memo: rendered every time */
    make_job(&j, 3);
    t = check_text(NULL, &j);
    free(t);
    svc_job_clear(&j);
}

/* A page against json_dumps(render_job_page): more jobs than slots, so some share a slot in one page. */
static void test_pages(void **st)
{
    (void)st;
    render_memo *m;
    assert_int_equal(render_memo_new(&m), 0);
    int n = RENDER_MEMO_SLOTS + 100;
    svc_job_page p = {.v = calloc((size_t)n, sizeof(svc_job)), .n = n, .has_more = 1};
    assert_non_null(p.v);
    for (int i = 0; i < n; i++) make_job(&p.v[i], i);
    for (int round = 0; round < 3; round++) {
        if (round == 2) { p.v[7].queue_position = 99; p.n = 20; p.has_more = 0; }
        json_t *o = render_job_page(&p);
        char *want = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        char *got = render_job_page_text(m, &p);
        assert_non_null(got);
        assert_string_equal(got, want);
        free(got);
        free(want);
    }
    svc_job_page empty = {0};
    json_t *o = render_job_page(&empty);
    char *want = json_dumps(o, JSON_COMPACT), *got = render_job_page_text(m, &empty);
    json_decref(o);
    assert_string_equal(got, want);
    free(got);
    free(want);
    p.n = n;
    svc_job_page_free(&p);
    render_memo_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job_changes),
        cmocka_unit_test(test_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
