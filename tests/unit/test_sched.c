/* tests/unit/test_sched.c — the scheduling policy (core/sched_policy.c) on hand-made snapshots: capacity
 * (threads never above cores, workers), priority within a user, fair share across users (50 queued jobs
 * of one user do not starve another's first), quotas, no backfill past a waiting head, preemption only
 * after the grace period, one at a time, of an over-share user or a lower-priority job of the same user,
 * the queue order/estimated starts, and GPU assignment over a fake GPU set (any free GPU, a pinned one, a
 * GPU job waiting for its busy GPU while CPU jobs start beside it). Single-threaded cmocka binary. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/sched_policy.h"

static sched_quota g_quota;
static void quota(void *ud, const char *owner, sched_quota *out) { (void)ud; (void)owner; *out = g_quota; }

static sched_cfg cfg(int cores, int workers)
{
    memset(&g_quota, 0, sizeof g_quota);
    return (sched_cfg){.cores = cores, .workers = workers, .preemption = 1, .grace = 10, .quota = quota};
}

static sched_job job(const char *id, const char *owner, int prio, int threads, long long seq)
{
    return (sched_job){.id = id, .owner = owner, .priority = prio, .threads = threads, .seq = seq,
                       .device = SCHED_CPU};
}

static sched_run run(const char *id, const char *owner, int prio, int threads, double started)
{
    return (sched_run){.id = id, .owner = owner, .priority = prio, .threads = threads, .started_at = started,
                       .gpu = -1};
}

static void test_capacity(void **st)
{
    (void)st;
    sched_cfg c = cfg(4, 4);
    sched_job j[] = {job("a1", "a", 5, 3, 1)};
    sched_run r[] = {run("b1", "b", 5, 2, 0)};
    sched_decision d;
    c.preemption = 0;
    sched_pick(&c, j, 1, r, 1, 100, &d);
    assert_int_equal(d.start, -1); /* 2 + 3 > 4 */
    assert_int_equal(d.waiting, 0);
    r[0].threads = 1;
    sched_pick(&c, j, 1, r, 1, 100, &d);
    assert_int_equal(d.start, 0);
    c.workers = 1;
    sched_pick(&c, j, 1, r, 1, 100, &d);
    assert_int_equal(d.start, -1);
}

static void test_priority_within_user(void **st)
{
    (void)st;
    sched_cfg c = cfg(4, 4);
    sched_job j[] = {job("a1", "a", 5, 1, 1), job("a2", "a", 9, 1, 2), job("a3", "a", 9, 1, 3)};
    sched_decision d;
    sched_pick(&c, j, 3, NULL, 0, 0, &d);
    assert_int_equal(d.start, 1);
    j[0].preempted = 1; /* a requeued job goes first in its user's queue */
    sched_pick(&c, j, 3, NULL, 0, 0, &d);
    assert_int_equal(d.start, 0);
    j[0].blocked = 1;   /* its worker is still stopping */
    sched_pick(&c, j, 3, NULL, 0, 0, &d);
    assert_int_equal(d.start, 1);
}

static void test_fair_share(void **st)
{
    (void)st;
    sched_cfg c = cfg(1, 1);
    c.preemption = 0;
    sched_job j[51];
    char ids[51][16];
    for (int i = 0; i < 50; i++) { snprintf(ids[i], 16, "a%d", i); j[i] = job(ids[i], "a", 9, 1, i); }
    j[50] = job("b0", "b", 0, 1, 100);
    sched_run r[] = {run("a-run", "a", 5, 1, 0)};
    sched_decision d;
    r[0].threads = 0; /* pretend a's job holds no threads but counts as a's: a still "has" a job */
    sched_run r2[] = {run("a-run", "a", 5, 1, 0)};
    (void)r;
    c.cores = 2; c.workers = 2;
    sched_pick(&c, j, 51, r2, 1, 0, &d);
    assert_int_equal(d.start, 50); /* b runs nothing: its first job goes before a's 50 */
    int pos[51];
    double est[51];
    c.cores = 1; c.workers = 1;
    sched_order(&c, j, 51, r2, 1, NULL, 0, 10, pos, est);
    assert_int_equal(pos[50], 1);
    assert_int_equal(pos[0], 2);
    assert_int_equal(pos[49], 51);
    assert_true(est[50] >= 10 && est[50] <= 10.001);  /* after the running job (10 s mean) */
    assert_true(est[0] >= 20 && est[0] <= 20.001);
}

static void test_quota_skips_user(void **st)
{
    (void)st;
    sched_cfg c = cfg(8, 8);
    sched_job j[] = {job("a2", "a", 5, 1, 1), job("b1", "b", 5, 1, 2)};
    sched_run r[] = {run("a1", "a", 5, 1, 0)};
    g_quota.running_jobs = 1;
    sched_decision d;
    sched_pick(&c, j, 2, r, 1, 0, &d);
    assert_int_equal(d.start, 1);
    sched_pick(&c, j, 1, r, 1, 0, &d);
    assert_int_equal(d.start, -1);
    assert_int_equal(d.preempt, -1);
    g_quota.running_jobs = 0;
    g_quota.threads = 2;
    j[0].threads = 2;
    sched_pick(&c, j, 1, r, 1, 0, &d);
    assert_int_equal(d.start, -1); /* 1 + 2 > 2 */
}

static void test_no_backfill(void **st)
{
    (void)st;
    sched_cfg c = cfg(2, 4);
    c.preemption = 0;
    sched_job j[] = {job("b1", "b", 5, 2, 1), job("a2", "a", 5, 1, 2)};
    sched_run r[] = {run("a1", "a", 5, 1, 0)};
    sched_decision d;
    sched_pick(&c, j, 2, r, 1, 0, &d);
    assert_int_equal(d.start, -1);   /* b (0 threads) is next and needs 2: a's 1-thread job must not jump it */
    assert_int_equal(d.waiting, 0);
}

static void test_preemption(void **st)
{
    (void)st;
    sched_cfg c = cfg(1, 1);
    sched_job j[] = {job("b1", "b", 5, 1, 2)};
    sched_run r[] = {run("a1", "a", 5, 1, 0)};
    sched_decision d;
    sched_pick(&c, j, 1, r, 1, 5, &d);
    assert_int_equal(d.preempt, -1);  /* within the grace period */
    sched_pick(&c, j, 1, r, 1, 11, &d);
    assert_int_equal(d.preempt, 0);   /* b runs nothing, a is above its share */
    r[0].preempting = 1; r[0].stopping = 1;
    sched_pick(&c, j, 1, r, 1, 20, &d);
    assert_int_equal(d.preempt, -1);  /* one at a time */
    /* same user: only for a higher priority */
    sched_job k[] = {job("a2", "a", 5, 1, 3)};
    sched_run q[] = {run("a1", "a", 5, 1, 0)};
    sched_pick(&c, k, 1, q, 1, 100, &d);
    assert_int_equal(d.preempt, -1);
    k[0].priority = 7;
    sched_pick(&c, k, 1, q, 1, 100, &d);
    assert_int_equal(d.preempt, 0);
    c.preemption = 0;
    sched_pick(&c, k, 1, q, 1, 100, &d);
    assert_int_equal(d.preempt, -1);
    /* a user at its share does not preempt one at its share */
    sched_cfg c2 = cfg(2, 2);
    sched_job m[] = {job("b2", "b", 5, 1, 4)};
    sched_run n[] = {run("a1", "a", 5, 1, 0), run("b1", "b", 5, 1, 0)};
    sched_pick(&c2, m, 1, n, 2, 100, &d);
    assert_int_equal(d.preempt, -1);
}

/* the daemon's GPUs are 2 and 5 (as --gpus 2,5 would give): indices are CUDA's, not positions */
static const int fake_gpus[] = {2, 5};

static sched_cfg gcfg(int cores, int workers)
{
    sched_cfg c = cfg(cores, workers);
    c.manage_gpus = 1;
    c.gpus = fake_gpus;
    c.ngpus = 2;
    return c;
}

static void test_gpu_for(void **st)
{
    (void)st;
    sched_cfg c = gcfg(8, 8);
    sched_run r[] = {run("a1", "a", 5, 1, 0), run("a2", "a", 5, 1, 0)};
    assert_int_equal(sched_gpu_for(&c, SCHED_CPU, r, 0), SCHED_CPU);
    assert_int_equal(sched_gpu_for(&c, SCHED_GPU_ANY, r, 0), 2);      /* the lowest free one */
    assert_int_equal(sched_gpu_for(&c, 5, r, 0), 5);                  /* pinned */
    assert_int_equal(sched_gpu_for(&c, 0, r, 0), SCHED_GPU_NONE);     /* not in the set */
    r[0].gpu = 2;
    assert_int_equal(sched_gpu_for(&c, SCHED_GPU_ANY, r, 1), 5);
    assert_int_equal(sched_gpu_for(&c, 2, r, 1), SCHED_GPU_BUSY);
    r[1].gpu = 5;
    r[1].stopping = 1; /* still holds it until its worker ends */
    assert_int_equal(sched_gpu_for(&c, SCHED_GPU_ANY, r, 2), SCHED_GPU_BUSY);
    assert_int_equal(sched_gpu_for(&c, SCHED_CPU, r, 2), SCHED_CPU);
    c.ngpus = 0; /* --gpus none */
    assert_int_equal(sched_gpu_for(&c, SCHED_GPU_ANY, r, 0), SCHED_GPU_NONE);
    c.manage_gpus = 0; /* Slurm hands GPUs out itself */
    assert_int_equal(sched_gpu_for(&c, 5, r, 2), SCHED_CPU);
}

static void test_gpu_assignment(void **st)
{
    (void)st;
    sched_cfg c = gcfg(8, 8);
    c.preemption = 0;
    sched_job j[] = {job("a1", "a", 5, 2, 1), job("a2", "a", 5, 2, 2), job("a3", "a", 5, 2, 3),
                     job("a4", "a", 5, 1, 4)};
    j[0].device = SCHED_GPU_ANY;
    j[1].device = SCHED_GPU_ANY;
    j[2].device = 2;
    sched_run r[4];
    int nr = 0;
    sched_decision d;
    /* the two "cuda" jobs get one GPU each, in the set's order */
    sched_pick(&c, j, 4, r, nr, 100, &d);
    assert_int_equal(d.start, 0);
    assert_int_equal(d.gpu, 2);
    r[nr] = run("a1", "a", 5, 2, 100); r[nr++].gpu = d.gpu;
    sched_pick(&c, j + 1, 3, r, nr, 100, &d);
    assert_int_equal(d.start, 0);
    assert_int_equal(d.gpu, 5);
    r[nr] = run("a2", "a", 5, 2, 100); r[nr++].gpu = d.gpu;
    /* a3 is pinned to the busy GPU 2: it waits, and the CPU job behind it starts (no GPU, its threads) */
    sched_pick(&c, j + 2, 2, r, nr, 100, &d);
    assert_int_equal(d.start, 1);
    assert_int_equal(d.gpu, -1);
    r[nr] = run("a4", "a", 5, 1, 100); r[nr++].gpu = -1;
    sched_pick(&c, j + 2, 1, r, nr, 100, &d);
    assert_int_equal(d.start, -1);
    assert_int_equal(d.waiting, -1); /* nothing that cores could unblock: no preemption either */
    assert_int_equal(d.preempt, -1);
    /* GPU 5 frees: a3 still waits for GPU 2 */
    r[1] = r[--nr];
    sched_pick(&c, j + 2, 1, r, nr, 100, &d);
    assert_int_equal(d.start, -1);
    /* GPU 2 frees: a3 gets it */
    r[0] = r[--nr];
    sched_pick(&c, j + 2, 1, r, nr, 100, &d);
    assert_int_equal(d.start, 0);
    assert_int_equal(d.gpu, 2);
    /* a GPU job still needs its threads: with the cores taken it waits like any job */
    sched_run full[] = {run("b1", "b", 5, 8, 100)};
    full[0].gpu = -1;
    sched_pick(&c, j + 2, 1, full, 1, 100, &d);
    assert_int_equal(d.start, -1);
    assert_int_equal(d.waiting, 0);
    /* unmanaged (Slurm): the device does not matter here */
    c.manage_gpus = 0;
    sched_pick(&c, j + 2, 1, r, 2, 100, &d);
    assert_int_equal(d.start, 0);
    assert_int_equal(d.gpu, -1);
}

static void test_gpu_busy_other_user(void **st)
{
    (void)st;
    /* user a's head waits for a GPU; user b's CPU job and a's next job are not held up by it */
    sched_cfg c = gcfg(8, 8);
    c.ngpus = 1;
    sched_job j[] = {job("a2", "a", 9, 1, 2), job("a3", "a", 1, 1, 3), job("b1", "b", 5, 1, 4)};
    j[0].device = SCHED_GPU_ANY;
    sched_run r[] = {run("a1", "a", 5, 1, 0)};
    r[0].gpu = 2;
    sched_decision d;
    sched_pick(&c, j, 3, r, 1, 100, &d);
    assert_int_equal(d.start, 2); /* b runs fewer threads */
    sched_job k[] = {j[0], j[1]};
    sched_pick(&c, k, 2, r, 1, 100, &d);
    assert_int_equal(d.start, 1);
    assert_int_equal(d.gpu, -1);
}

static void test_gpu_gone_starts_to_fail(void **st)
{
    (void)st;
    /* a job queued for cuda:0 before a restart with --gpus 2,5: it is handed out (to fail with its reason)
     * rather than queued forever */
    sched_cfg c = gcfg(8, 8);
    sched_job j[] = {job("a1", "a", 5, 1, 1)};
    j[0].device = 0;
    sched_decision d;
    sched_pick(&c, j, 1, NULL, 0, 100, &d);
    assert_int_equal(d.start, 0);
    assert_int_equal(d.gpu, SCHED_GPU_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capacity),       cmocka_unit_test(test_priority_within_user),
        cmocka_unit_test(test_fair_share),     cmocka_unit_test(test_quota_skips_user),
        cmocka_unit_test(test_no_backfill),    cmocka_unit_test(test_preemption),
        cmocka_unit_test(test_gpu_for),        cmocka_unit_test(test_gpu_assignment),
        cmocka_unit_test(test_gpu_busy_other_user), cmocka_unit_test(test_gpu_gone_starts_to_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
