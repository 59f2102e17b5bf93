/* tests/unit/test_lttb.c — core/lttb.c: short series pass through, the output has exactly threshold
 * increasing indices with both ends kept, and an isolated spike survives heavy downsampling.
 * Single-threaded cmocka binary. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "core/lttb.h"

enum { N = 1000 };

static void test_short_series_unchanged(void **state)
{
    (void)state;
    double x[5] = {1, 2, 3, 4, 5}, y[5] = {5, 4, 3, 2, 1};
    size_t keep[5];
    assert_int_equal(lttb(x, y, 5, 10, keep), 5);
    for (size_t i = 0; i < 5; i++) assert_int_equal(keep[i], i);
    assert_int_equal(lttb(x, y, 5, 2, keep), 5);
    assert_int_equal(lttb(x, y, 0, 10, keep), 0);
}

static void test_shape_kept(void **state)
{
    (void)state;
    static double x[N], y[N];
    static size_t keep[N];
    for (int i = 0; i < N; i++) { x[i] = i + 1; y[i] = 2.0 / (1 + 0.01 * i) + 0.01 * sin(i); }
    y[517] = 10.0; /* a loss spike */
    size_t n = lttb(x, y, N, 50, keep);
    assert_int_equal(n, 50);
    assert_int_equal(keep[0], 0);
    assert_int_equal(keep[n - 1], N - 1);
    int spike = 0;
    for (size_t i = 0; i < n; i++) {
        if (i) assert_true(keep[i] > keep[i - 1]);
        spike |= keep[i] == 517;
    }
    assert_true(spike);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_series_unchanged),
        cmocka_unit_test(test_shape_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
