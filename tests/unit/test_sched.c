/* tests/unit/test_sched.c — the scheduling policy (core/sched_policy.c) on hand-made snapshots: capacity
 * (threads never above cores, workers), priority within a user, fair share across users (50 queued jobs
 * of one user do not starve another's first), quotas, no backfill past a waiting head, preemption only
 * after the grace period, one at a time, of an over-share user or a lower-priority job of the same user,
 * and the queue order/estimated starts. Single-threaded cmocka binary. */
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
    return (sched_job){.id = id, .owner = owner, .priority = prio, .threads = threads, .seq = seq};
}

static sched_run run(const char *id, const char *owner, int prio, int threads, double started)
{
    return (sched_run){.id = id, .owner = owner, .priority = prio, .threads = threads, .started_at = started};
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capacity),       cmocka_unit_test(test_priority_within_user),
        cmocka_unit_test(test_fair_share),     cmocka_unit_test(test_quota_skips_user),
        cmocka_unit_test(test_no_backfill),    cmocka_unit_test(test_preemption),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
