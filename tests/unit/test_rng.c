/* tests/unit/test_rng.c — the job generator: same seed same stream, the distributions have the
 * right moments (loose statistical bounds, fixed seed so the test is deterministic). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include "trainer/rng.h"

static void test_same_seed_same_stream(void **state)
{
    (void)state;
    rng_t a, b, c;
    rng_seed(&a, 42); rng_seed(&b, 42); rng_seed(&c, 43);
    int differ = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = rng_u64(&a), y = rng_u64(&b), z = rng_u64(&c);
        assert_true(x == y);
        differ += x != z;
    }
    assert_true(differ > 95);
}

static void test_uniform_and_below(void **state)
{
    (void)state;
    rng_t r;
    rng_seed(&r, 7);
    double sum = 0;
    int counts[7] = {0};
    for (int i = 0; i < 70000; i++) {
        double u = rng_uniform(&r);
        assert_true(u >= 0.0 && u < 1.0);
        sum += u;
        uint32_t k = rng_below(&r, 7);
        assert_true(k < 7);
        counts[k]++;
    }
    assert_true(fabs(sum / 70000 - 0.5) < 0.01);
    for (int k = 0; k < 7; k++) assert_true(abs(counts[k] - 10000) < 500);
}

static void test_beta_moments(void **state)
{
    (void)state;
    rng_t r;
    rng_seed(&r, 1);
    const double params[][2] = {{1, 1}, {0.5, 0.5}, {2, 5}};
    for (int p = 0; p < 3; p++) {
        double a = params[p][0], b = params[p][1], s = 0, s2 = 0;
        const int n = 40000;
        for (int i = 0; i < n; i++) {
            double x = rng_beta(&r, a, b);
            assert_true(x >= 0.0 && x <= 1.0);
            s += x; s2 += x * x;
        }
        double mean = s / n, var = s2 / n - mean * mean;
        double emean = a / (a + b), evar = a * b / ((a + b) * (a + b) * (a + b + 1));
        assert_true(fabs(mean - emean) < 0.01);
        assert_true(fabs(var - evar) < 0.01);
    }
}

static void test_permutation(void **state)
{
    (void)state;
    rng_t r;
    rng_seed(&r, 3);
    int perm[100], seen[100] = {0};
    rng_permutation(&r, perm, 100);
    int fixed = 0;
    for (int i = 0; i < 100; i++) { seen[perm[i]]++; fixed += perm[i] == i; }
    for (int i = 0; i < 100; i++) assert_int_equal(seen[i], 1);
    assert_true(fixed < 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_seed_same_stream),
        cmocka_unit_test(test_uniform_and_below),
        cmocka_unit_test(test_beta_moments),
        cmocka_unit_test(test_permutation),
    };
    return cmocka_run_group_tests_name("rng", tests, NULL, NULL);
}
