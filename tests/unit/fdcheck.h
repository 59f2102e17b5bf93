/* tests/unit/fdcheck.h — finite-difference gradient checks shared by the layer and loss tests
 * (test_coreloss.c, test_simclr.c, test_nn_dense.c, test_nn_conv.c): uniform test inputs, central and
 * Richardson-extrapolated differences of a loss callback, and element-wise comparisons against a
 * reference scaled by its largest magnitude. Header-only (static inline) so each test stays one
 * binary; include it after <cmocka.h>: a failed check fails the calling test (main thread only).
 * Each test states its own tolerances and passes them in. */
#ifndef CT_TEST_FDCHECK_H
#define CT_TEST_FDCHECK_H
#include <math.h>
#include <stdio.h>
#include "trainer/rng.h"

/* The loss as a function of the coordinates the check moves in place (borrowed context). */
typedef double (*fd_loss_fn)(void *ctx);

/* x[i] uniform in [-scale, scale). */
static inline void fill_uniform(rng_t *r, float *x, size_t len, float scale)
{
    for (size_t i = 0; i < len; i++) x[i] = (float)((rng_uniform(r) * 2.0 - 1.0) * scale);
}

/* Central difference on one float coordinate: (L(x + h) - L(x - h)) / 2h; *x is restored. */
static inline double fd_central(fd_loss_fn loss, void *ctx, float *x, float h)
{
    float save = *x;
    *x = save + h;
    double lp = loss(ctx);
    *x = save - h;
    double lm = loss(ctx);
    *x = save;
    return (lp - lm) / (2.0 * (double)h);
}

/* Richardson-extrapolated central difference: O(step^4) truncation, so a step of 1e-2 keeps the
 * float rounding of the loss (~1e-7 relative) down to ~1e-5 in the derivative. */
static inline double fd_richardson(fd_loss_fn loss, void *ctx, float *x, float step)
{
    float save = *x;
    double d[2];
    for (int s = 0; s < 2; s++) {
        float hs = s ? step * 0.5f : step;
        *x = save + hs;
        double lp = loss(ctx);
        *x = save - hs;
        double lm = loss(ctx);
        *x = save;
        double up = (double)(save + hs) - save, dn = (double)save - (save - hs); /* exact steps */
        d[s] = (lp - lm) / (up + dn);
    }
    return (4.0 * d[1] - d[0]) / 3.0;
}

/* Every coordinate of an analytic gradient an[len] (of x[len]) against fd_richardson:
 * |fd - an| <= atol_rel * max|an| + rtol * |an|. A zero gradient fails (the check would be vacuous);
 * so does the first coordinate outside, printed. Returns the worst err/tol. */
static inline double fd_check_tensor(fd_loss_fn loss, void *ctx, const char *name, float *x, const float *an,
                                     int len, float step, double atol_rel, double rtol)
{
    double amax = 0.0, worst = 0.0;
    for (int i = 0; i < len; i++) amax = fmax(amax, fabs(an[i]));
    assert_true(amax > 0.0);
    for (int i = 0; i < len; i++) {
        double g = fd_richardson(loss, ctx, &x[i], step);
        double tol = atol_rel * amax + rtol * fabs(an[i]);
        double err = fabs(g - an[i]);
        if (err / tol > worst) worst = err / tol;
        if (err > tol) {
            fprintf(stderr, "%s[%d]: analytic %.7g fd %.7g (max|g| %.3g)\n", name, i, an[i], g, amax);
            fail();
        }
    }
    return worst;
}

/* Every gradient element p[i] against fd_central: |g - fd| <= atol + rtol * |fd|. Prints each
 * element outside, then fails if there was one. */
static inline void fd_check_central(const char *what, float *p, size_t n, const float *g, fd_loss_fn loss,
                                    void *ctx, float eps, double atol, double rtol)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double fd = fd_central(loss, ctx, &p[i], eps);
        double excess = fabs(fd - g[i]) - (atol + rtol * fabs(fd));
        if (i == 0 || excess > worst) worst = excess;
        if (excess > 0)
            print_error("%s[%zu]: analytic %.7g, finite difference %.7g\n", what, i, g[i], fd);
    }
    assert_true(worst <= 0.0);
}

/* Our values c[len] against PyTorch's g[len]: |c - g| <= atol_rel * max|g| + rtol * |g| + slack.
 * Fails at the first element outside, printed; returns the worst err/tol. */
static inline double fd_compare_torch(const char *name, const float *c, const float *g, size_t len, double atol_rel,
                                      double rtol, double slack)
{
    double gmax = 0.0, worst = 0.0;
    for (size_t i = 0; i < len; i++) gmax = fmax(gmax, fabs(g[i]));
    for (size_t i = 0; i < len; i++) {
        double tol = atol_rel * gmax + rtol * fabs(g[i]) + slack;
        double err = fabs((double)c[i] - g[i]);
        if (err / tol > worst) worst = err / tol;
        if (err > tol) {
            fprintf(stderr, "%s[%zu]: C %.8g torch %.8g (max|g| %.3g)\n", name, i, c[i], g[i], gmax);
            fail();
        }
    }
    return worst;
}

/* max |x[i]| (0 for an empty array). */
static inline double fd_max_abs(const float *x, size_t len)
{
    double m = 0.0;
    for (size_t i = 0; i < len; i++) m = fmax(m, fabs(x[i]));
    return m;
}

#endif
