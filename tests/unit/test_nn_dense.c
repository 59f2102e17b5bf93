/* tests/unit/test_nn_dense.c — finite-difference checks of trainer/nn_dense.c (linear with and
 * without bias, row-wise L2 normalisation), plus forward values against a double reference and the
 * nn.h conventions (input gradients written, parameter gradients accumulated, NULL allowed).
 * Single-threaded cmocka binary; a failed check fails the test. Tolerances are stated per check.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/nn.h"
#include "trainer/rng.h"
#include "tests/unit/fdcheck.h"

/* |a - b| <= atol + rtol * max(|a|, |b|) */
static int close_enough(double a, double b, double atol, double rtol)
{
    double m = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
    return fabs(a - b) <= atol + rtol * m;
}

/* ---------------- linear ---------------- */

enum { LN = 5, LDIN = 7, LDOUT = 6 };

/* Loss = sum(out * R) in double, so dL/dout = R exactly. */
static double linear_loss(const float *in, const float *w, const float *b, const float *R)
{
    float out[LN * LDOUT];
    nn_linear_forward(out, in, w, b, LN, LDIN, LDOUT);
    double s = 0.0;
    for (int i = 0; i < LN * LDOUT; i++) s += (double)out[i] * R[i];
    return s;
}

typedef struct lin_ctx { float *in, *w, *b, *R; } lin_ctx;
static double lin_f(void *c)
{
    lin_ctx *l = c;
    return linear_loss(l->in, l->w, l->b, l->R);
}

static void check_linear(int with_bias)
{
    rng_t r;
    rng_seed(&r, 11 + (uint64_t)with_bias);
    float in[LN * LDIN], w[LDOUT * LDIN], b[LDOUT], R[LN * LDOUT];
    fill_uniform(&r, in, LN * LDIN, 1.0f);
    fill_uniform(&r, w, LDOUT * LDIN, 1.0f);
    fill_uniform(&r, b, LDOUT, 1.0f);
    fill_uniform(&r, R, LN * LDOUT, 1.0f);
    float *bp = with_bias ? b : NULL;

    /* forward against a double reference: 1e-5 absolute */
    float out[LN * LDOUT];
    nn_linear_forward(out, in, w, bp, LN, LDIN, LDOUT);
    for (int i = 0; i < LN; i++)
        for (int j = 0; j < LDOUT; j++) {
            double s = bp ? bp[j] : 0.0;
            for (int k = 0; k < LDIN; k++) s += (double)in[i * LDIN + k] * w[j * LDIN + k];
            assert_true(close_enough(out[i * LDOUT + j], s, 1e-5, 1e-5));
        }

    /* backward: parameter grads accumulate onto a preset value, din is overwritten */
    float din[LN * LDIN], dw[LDOUT * LDIN], db[LDOUT];
    for (int i = 0; i < LN * LDIN; i++) din[i] = 123.0f;
    for (int i = 0; i < LDOUT * LDIN; i++) dw[i] = 0.5f;
    for (int i = 0; i < LDOUT; i++) db[i] = -0.25f;
    nn_linear_backward(din, dw, with_bias ? db : NULL, R, in, w, LN, LDIN, LDOUT);

    /* central differences, step 1e-2 (the loss is linear in each coordinate, so only rounding error
     * is left: ~1e-5 absolute) */
    lin_ctx c = { in, w, bp, R };
    for (int i = 0; i < LN * LDIN; i++)
        assert_true(close_enough(din[i], fd_central(lin_f, &c, &in[i], 1e-2f), 1e-4, 1e-3));
    for (int i = 0; i < LDOUT * LDIN; i++)
        assert_true(close_enough(dw[i] - 0.5, fd_central(lin_f, &c, &w[i], 1e-2f), 1e-4, 1e-3));
    if (with_bias)
        for (int i = 0; i < LDOUT; i++)
            assert_true(close_enough(db[i] + 0.25, fd_central(lin_f, &c, &b[i], 1e-2f), 1e-4, 1e-3));
    else
        for (int i = 0; i < LDOUT; i++) assert_true(db[i] == -0.25f); /* untouched */

    /* din may be NULL: parameter grads still accumulate (second pass doubles them) */
    float dw2[LDOUT * LDIN];
    memcpy(dw2, dw, sizeof dw);
    nn_linear_backward(NULL, dw2, NULL, R, in, w, LN, LDIN, LDOUT);
    for (int i = 0; i < LDOUT * LDIN; i++)
        assert_true(close_enough(dw2[i] - 0.5, 2.0 * (dw[i] - 0.5), 1e-5, 1e-5));
}

static void test_linear_bias(void **state) { (void)state; check_linear(1); }
static void test_linear_nobias(void **state) { (void)state; check_linear(0); }

/* ---------------- l2norm ---------------- */

enum { NN_ = 4, ND = 9 };

typedef struct l2_ctx { float *in, *R; } l2_ctx;
static double l2_f(void *c)
{
    l2_ctx *l = c;
    float out[NN_ * ND];
    nn_l2norm_forward(out, l->in, NN_, ND);
    double s = 0.0;
    for (int i = 0; i < NN_ * ND; i++) s += (double)out[i] * l->R[i];
    return s;
}

static void test_l2norm(void **state)
{
    (void)state;
    rng_t r;
    rng_seed(&r, 7);
    float in[NN_ * ND], R[NN_ * ND], out[NN_ * ND], din[NN_ * ND];
    fill_uniform(&r, in, NN_ * ND, 2.0f);
    fill_uniform(&r, R, NN_ * ND, 1.0f);
    for (int j = 0; j < ND; j++) in[3 * ND + j] *= 1e-3f; /* a short row, still above eps */

    nn_l2norm_forward(out, in, NN_, ND);
    for (int i = 0; i < NN_; i++) {
        double ss = 0.0, nn = 0.0;
        for (int j = 0; j < ND; j++) ss += (double)in[i * ND + j] * in[i * ND + j];
        for (int j = 0; j < ND; j++) {
            assert_true(close_enough(out[i * ND + j], in[i * ND + j] / sqrt(ss), 1e-6, 1e-5));
            nn += (double)out[i * ND + j] * out[i * ND + j];
        }
        assert_true(fabs(nn - 1.0) < 1e-5);
    }

    nn_l2norm_backward(din, R, in, NN_, ND);
    /* Step 1e-3 relative to the coordinate scale of each row: curvature error ~h^2, rounding
     * ~1e-7/h; tolerance 2e-3 relative + 2e-3 absolute (gradients are O(1/||x||)). */
    l2_ctx c = { in, R };
    for (int i = 0; i < NN_ * ND; i++) {
        float h = (i >= 3 * ND) ? 1e-6f : 1e-3f;
        double g = fd_central(l2_f, &c, &in[i], h);
        double scale = (i >= 3 * ND) ? 1e3 : 1.0; /* short row: gradients ~1e3 larger */
        assert_true(close_enough(din[i], g, 2e-3 * scale, 2e-3));
    }
}

/* A zero row: output 0 (not NaN), and the gradient is g / eps as torch's clamp_min gives. */
static void test_l2norm_zero_row(void **state)
{
    (void)state;
    float in[2 * 3] = { 0, 0, 0, 3, 0, 4 }, out[6], g[6] = { 1, -2, 3, 1, 1, 1 }, din[6];
    nn_l2norm_forward(out, in, 2, 3);
    for (int j = 0; j < 3; j++) assert_true(out[j] == 0.0f);
    assert_true(fabsf(out[3] - 0.6f) < 1e-6f && out[4] == 0.0f && fabsf(out[5] - 0.8f) < 1e-6f);
    nn_l2norm_backward(din, g, in, 2, 3);
    for (int j = 0; j < 3; j++) {
        assert_true(isfinite(din[j]));
        assert_true(close_enough(din[j], g[j] * 1e12, 0.0, 1e-6));
    }
    /* row 2: (g - y (y.g)) / 5 with y = (.6, 0, .8), y.g = 1.4 */
    assert_true(fabsf(din[3] - (1.0f - 0.6f * 1.4f) / 5.0f) < 1e-6f);
    assert_true(fabsf(din[4] - 1.0f / 5.0f) < 1e-6f);
    assert_true(fabsf(din[5] - (1.0f - 0.8f * 1.4f) / 5.0f) < 1e-6f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_bias),
        cmocka_unit_test(test_linear_nobias),
        cmocka_unit_test(test_l2norm),
        cmocka_unit_test(test_l2norm_zero_row),
    };
    return cmocka_run_group_tests_name("nn_dense", tests, NULL, NULL);
}
