/* tests/unit/test_simclr.c — checks of trainer/simclr.c: finite differences of the NT-Xent loss
 * w.r.t. h and every projector weight, PyTorch golden values (tests/fixtures/simclr_t0{50,20}
 * .safetensors from tests/golden/gen_simclr.py), closed-form invariants (perfect alignment, collapse,
 * n = 1, view swap, large logits), a double-precision reference on a batch big enough for the
 * threaded path, and error returns. Single-threaded cmocka binary; fixtures are read from
 * $CT_FIXTURES or tests/fixtures (run from the repository root).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/rng.h"
#include "trainer/safetensors.h"
#include "trainer/simclr.h"
#include "tests/unit/fdcheck.h"

static simclr *make(int d, int p, int mb, float tau)
{
    simclr_config cfg = { d, p, mb, tau };
    simclr *s = NULL;
    char err[128] = "";
    int rc = simclr_new(&s, &cfg, err, sizeof err);
    if (rc) fprintf(stderr, "simclr_new: %s\n", err);
    assert_int_equal(rc, 0);
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* finite differences                                                                          */

enum { FN = 5, FR = 2 * FN, FD_ = 12, FP = 6 };

typedef struct fdprob {
    simclr *s;
    float h[FR * FD_], w0[FD_ * FD_], b0[FD_], w2[FP * FD_], b2[FP];
} fdprob;

static double fd_loss(void *ctx)
{
    fdprob *p = ctx;
    double loss;
    simclr_weights w = { p->w0, p->b0, p->w2, p->b2 };
    assert_int_equal(simclr_forward_backward(p->s, NULL, NULL, &loss, NULL, p->h, FN, &w, 1.0f), 0);
    return loss;
}

/* Every coordinate of an analytic gradient against finite differences (fd_richardson). Tolerance, for
 * all tensors: |fd - an| <= 2e-3 * max|an| + 5e-3 * |an|. Returns the worst err/tol. */
static double check_tensor(fdprob *p, const char *name, float *x, const float *an, int len, float step)
{
    return fd_check_tensor(fd_loss, p, name, x, an, len, step, 2e-3, 5e-3);
}

static void fd_case(float tau, uint64_t seed)
{
    fdprob *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->s = make(FD_, FP, FN, tau);
    rng_t r;
    rng_seed(&r, seed);
    fill_uniform(&r, p->h, FR * FD_, 1.0f);
    fill_uniform(&r, p->w0, FD_ * FD_, 0.15f);
    fill_uniform(&r, p->w2, FP * FD_, 0.5f);
    fill_uniform(&r, p->b2, FP, 0.2f);
    /* ReLU kinks would spoil finite differences: half the hidden units always on (bias +1.5), half
     * always off (bias -1.5, so their zero gradient is checked too): |h w0_j^T| <= sum |w0_j| <= 1.1
     * since |h| <= 1, so |pre-activation| >= 0.4, far beyond what a step of at most 0.05 moves. */
    for (int j = 0; j < FD_; j++) {
        p->b0[j] = (j % 2) ? -1.5f : 1.5f;
        double a = 0.0;
        for (int k = 0; k < FD_; k++) a += fabs(p->w0[j * FD_ + k]);
        if (a > 1.1) /* rows of 12 uniforms in +-0.15 sum to 0.9 on average: shrink the few above */
            for (int k = 0; k < FD_; k++) p->w0[j * FD_ + k] *= (float)(1.1 / a);
    }
    /* Cancel the constant the +1.5 biases add to a2, so z varies across rows as much as h does and
     * the head gradients stand well above the loss's rounding floor. */
    for (int i = 0; i < FP; i++)
        for (int j = 0; j < FD_; j += 2) p->b2[i] -= 1.5f * p->w2[i * FD_ + j];
    /* view 2 = view 1 + noise, so positives are informative */
    for (int i = 0; i < FN * FD_; i++) p->h[FN * FD_ + i] = 0.7f * p->h[i] + 0.3f * p->h[FN * FD_ + i];

    float dh[FR * FD_];
    static float gw0[FD_ * FD_], gb0[FD_], gw2[FP * FD_], gb2[FP];
    memset(gw0, 0, sizeof gw0);
    memset(gb0, 0, sizeof gb0);
    memset(gw2, 0, sizeof gw2);
    memset(gb2, 0, sizeof gb2);
    simclr_grads g = { gw0, gb0, gw2, gb2 };
    simclr_weights w = { p->w0, p->b0, p->w2, p->b2 };
    double loss, acc;
    assert_int_equal(simclr_forward_backward(p->s, dh, &g, &loss, &acc, p->h, FN, &w, 1.0f), 0);
    assert_true(isfinite(loss) && loss > 0.0);
    assert_true(acc >= 0.0 && acc <= 1.0);

    double worst = 0.0;
    worst = fmax(worst, check_tensor(p, "dh", p->h, dh, FR * FD_, 1e-2f));
    worst = fmax(worst, check_tensor(p, "dw0", p->w0, gw0, FD_ * FD_, 5e-2f));
    worst = fmax(worst, check_tensor(p, "db0", p->b0, gb0, FD_, 5e-2f));
    worst = fmax(worst, check_tensor(p, "dw2", p->w2, gw2, FP * FD_, 5e-2f));
    worst = fmax(worst, check_tensor(p, "db2", p->b2, gb2, FP, 5e-2f));
    for (int j = 1; j < FD_; j += 2) assert_true(gb0[j] == 0.0f); /* dead units */
    print_message("fd tau %.2f: loss %.6f acc %.2f, worst err/tol %.3f\n", tau, loss, acc, worst);
    simclr_free(p->s);
    free(p);
}

static void test_fd_t050(void **state) { (void)state; fd_case(0.5f, 101); }
static void test_fd_t020(void **state) { (void)state; fd_case(0.2f, 202); }

/* ------------------------------------------------------------------------------------------ */
/* PyTorch golden values                                                                       */

static float *gload(const st_file *f, const char *name, size_t numel)
{
    const st_tensor *t = st_find(f, name);
    assert_non_null(t);
    assert_int_equal(st_numel(t), numel);
    float *x = malloc(numel * sizeof(float));
    assert_non_null(x);
    st_to_f32(x, t);
    return x;
}

/* |c - g| <= 1e-4 * max|g| + 1e-4 * |g|; returns the worst err/tol. */
static double compare(const char *name, const float *c, const float *g, size_t len)
{
    assert_true(fd_max_abs(g, len) > 0.0);
    return fd_compare_torch(name, c, g, len, 1e-4, 1e-4, 0.0);
}

static void golden_case(const char *tag)
{
    char path[512], err[256];
    const char *dir = getenv("CT_FIXTURES");
    snprintf(path, sizeof path, "%s/simclr_%s.safetensors", dir ? dir : "tests/fixtures", tag);
    st_file *f;
    if (st_open(&f, path, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        fail();
    }
    const st_tensor *th = st_find(f, "h"), *tw2 = st_find(f, "w2");
    const char *taus = st_metadata(f, "temperature");
    assert_true(th && tw2 && taus && th->ndim == 2 && tw2->ndim == 2);
    int R = (int)th->shape[0], n = R / 2, d = (int)th->shape[1], p = (int)tw2->shape[0];
    float tau = strtof(taus, NULL);
    simclr *s = make(d, p, n + 3, tau);
    float *h = gload(f, "h", (size_t)R * d);
    float *w0 = gload(f, "w0", (size_t)d * d), *b0 = gload(f, "b0", d);
    float *w2 = gload(f, "w2", (size_t)p * d), *b2 = gload(f, "b2", p);
    float *gl = gload(f, "loss", 1), *ga = gload(f, "acc", 1);
    double loss64 = strtod(st_metadata(f, "loss_f64"), NULL);
    float *want[5] = { gload(f, "dh", (size_t)R * d), gload(f, "dw0", (size_t)d * d), gload(f, "db0", d),
                       gload(f, "dw2", (size_t)p * d), gload(f, "db2", p) };
    const char *names[5] = { "dh", "dw0", "db0", "dw2", "db2" };
    size_t sz[5] = { (size_t)R * d, (size_t)d * d, (size_t)d, (size_t)p * d, (size_t)p };

    /* Accumulation and scaling: grads start at 0.25, grad_scale 0.5 -> 0.25 + 0.5 * torch. */
    float *got[5];
    for (int k = 0; k < 5; k++) {
        got[k] = malloc(sz[k] * sizeof(float));
        assert_non_null(got[k]);
        for (size_t i = 0; i < sz[k]; i++) got[k][i] = 0.25f;
    }
    simclr_grads g = { got[1], got[2], got[3], got[4] };
    simclr_weights w = { w0, b0, w2, b2 };
    double loss, acc;
    assert_int_equal(simclr_forward_backward(s, got[0], &g, &loss, &acc, h, n, &w, 0.5f), 0);

    /* loss: 1e-5 relative to torch's float64 value; accuracy exact (the generator keeps every
     * positive-vs-negative decision at least 1e-4 away from a tie) */
    assert_true(fabs(loss - loss64) <= 1e-5 * fabs(loss64));
    assert_true(fabs(loss - gl[0]) <= 1e-5 * fabs(gl[0]));
    assert_true(fabs(acc - ga[0]) <= 1e-6);

    double worst = 0.0;
    for (size_t i = 0; i < sz[0]; i++) got[0][i] *= 2.0f; /* dh is written: undo grad_scale (exact) */
    for (int k = 1; k < 5; k++)
        for (size_t i = 0; i < sz[k]; i++) got[k][i] = (got[k][i] - 0.25f) * 2.0f;
    for (int k = 0; k < 5; k++) worst = fmax(worst, compare(names[k], got[k], want[k], sz[k]));
    print_message("golden %s: tau %.2f loss %.6f (torch %.6f) acc %.4f, worst err/tol %.3f\n", tag, tau, loss,
                  loss64, acc, worst);

    for (int k = 0; k < 5; k++) {
        free(got[k]);
        free(want[k]);
    }
    free(h);
    free(w0);
    free(b0);
    free(w2);
    free(b2);
    free(gl);
    free(ga);
    st_close(f);
    simclr_free(s);
}

static void test_golden_t050(void **state) { (void)state; golden_case("t050"); }
static void test_golden_t020(void **state) { (void)state; golden_case("t020"); }

/* ------------------------------------------------------------------------------------------ */
/* invariants                                                                                  */

/* Identity head (w0 = I, b0 = 0, w2 = I, b2 = 0, d = p) on non-negative h: z = h / |h|. */
typedef struct ident { int d; float *w0, *b0, *w2, *b2; } ident;

static ident ident_new(int d)
{
    ident id = { d, calloc((size_t)d * d, sizeof(float)), calloc(d, sizeof(float)),
                 calloc((size_t)d * d, sizeof(float)), calloc(d, sizeof(float)) };
    assert_true(id.w0 && id.b0 && id.w2 && id.b2);
    for (int j = 0; j < d; j++) id.w0[j * d + j] = id.w2[j * d + j] = 1.0f;
    return id;
}

static void ident_free(ident *id)
{
    free(id->w0);
    free(id->b0);
    free(id->w2);
    free(id->b2);
}

/* Each image's two views identical, different images orthogonal (one-hot rows): s_pos = 1/tau,
 * every negative 0, so L = log(1 + (2n - 2) e^{-1/tau}) and acc = 1. All rows identical (collapse):
 * L = log(2n - 1) and acc = 0 (ties are misses), also at tau = 1e-3 where s = 1000 would overflow
 * exp without the max subtraction. */
static void test_closed_forms(void **state)
{
    (void)state;
    enum { N = 6, D = 8 };
    ident id = ident_new(D);
    simclr_weights w = { id.w0, id.b0, id.w2, id.b2 };
    float h[2 * N * D], dh[2 * N * D];
    const float taus[3] = { 0.5f, 0.2f, 1e-3f };
    for (int t = 0; t < 3; t++) {
        simclr *s = make(D, D, N, taus[t]);
        double loss, acc, tau = taus[t];
        memset(h, 0, sizeof h);
        for (int i = 0; i < N; i++) h[i * D + i] = h[(N + i) * D + i] = 2.0f;
        assert_int_equal(simclr_forward_backward(s, dh, NULL, &loss, &acc, h, N, &w, 1.0f), 0);
        double want = log1p((2.0 * N - 2.0) * exp(-1.0 / tau));
        assert_true(fabs(loss - want) <= 1e-6 * want + 1e-12);
        assert_true(acc == 1.0);

        for (int i = 0; i < 2 * N; i++)
            for (int j = 0; j < D; j++) h[i * D + j] = 0.25f + 0.1f * (float)j;
        assert_int_equal(simclr_forward_backward(s, dh, NULL, &loss, &acc, h, N, &w, 1.0f), 0);
        want = log(2.0 * N - 1.0);
        assert_true(fabs(loss - want) <= 1e-6 * want);
        assert_true(acc == 0.0);
        /* at collapse dL/ds has zero row and column sums (uniform softmax, one positive each), so
         * dz = 0 up to rounding: dh must be tiny relative to 1/tau */
        double gmax = 0.0;
        for (int i = 0; i < 2 * N * D; i++) gmax = fmax(gmax, fabs(dh[i]));
        assert_true(isfinite(gmax) && gmax <= 1e-4 / tau);
        simclr_free(s);
    }
    ident_free(&id);
}

/* Random batches: loss >= 0 (the positive is inside the denominator), bounded by log(2n - 1) plus
 * 2/tau; swapping the views permutes the rows, so the loss and accuracy are unchanged and dh swaps. */
static void test_invariants(void **state)
{
    (void)state;
    enum { N = 7, D = 10, P = 5 };
    simclr *s = make(D, P, N, 0.3f);
    rng_t r;
    rng_seed(&r, 42);
    float h[2 * N * D], hs[2 * N * D], dh[2 * N * D], dhs[2 * N * D];
    float w0[D * D], b0[D], w2[P * D], b2[P];
    simclr_weights w = { w0, b0, w2, b2 };
    for (int trial = 0; trial < 20; trial++) {
        fill_uniform(&r, h, 2 * N * D, 1.0f);
        fill_uniform(&r, w0, D * D, 0.5f);
        fill_uniform(&r, b0, D, 0.2f);
        fill_uniform(&r, w2, P * D, 0.5f);
        fill_uniform(&r, b2, P, 0.2f);
        double loss, acc, loss2, acc2;
        assert_int_equal(simclr_forward_backward(s, dh, NULL, &loss, &acc, h, N, &w, 1.0f), 0);
        assert_true(loss >= 0.0 && loss <= log(2.0 * N - 1.0) + 2.0 / 0.3 + 1e-6);
        memcpy(hs, h + N * D, sizeof(float) * N * D);
        memcpy(hs + N * D, h, sizeof(float) * N * D);
        assert_int_equal(simclr_forward_backward(s, dhs, NULL, &loss2, &acc2, hs, N, &w, 1.0f), 0);
        assert_true(fabs(loss - loss2) <= 1e-6 * loss);
        assert_true(acc == acc2);
        for (int i = 0; i < N * D; i++) {
            assert_true(fabsf(dh[i] - dhs[N * D + i]) <= 1e-5f);
            assert_true(fabsf(dh[N * D + i] - dhs[i]) <= 1e-5f);
        }
    }
    simclr_free(s);
}

/* n = 1: the positive is the only other row, so L = 0, acc = 1 and every gradient is 0 (dh written
 * as zeros over a dirty buffer, parameter gradients left as they were). */
static void test_single_pair(void **state)
{
    (void)state;
    enum { D = 4, P = 3 };
    simclr *s = make(D, P, 4, 0.5f);
    rng_t r;
    rng_seed(&r, 7);
    float h[2 * D], dh[2 * D], w0[D * D], b0[D], w2[P * D], b2[P];
    float gw0[D * D], gb0[D], gw2[P * D], gb2[P];
    fill_uniform(&r, h, 2 * D, 1.0f);
    fill_uniform(&r, w0, D * D, 1.0f);
    fill_uniform(&r, b0, D, 0.1f);
    fill_uniform(&r, w2, P * D, 1.0f);
    fill_uniform(&r, b2, P, 0.1f);
    for (int i = 0; i < 2 * D; i++) dh[i] = 9.0f;
    for (int i = 0; i < D * D; i++) gw0[i] = 0.5f;
    for (int i = 0; i < D; i++) gb0[i] = 0.5f;
    for (int i = 0; i < P * D; i++) gw2[i] = 0.5f;
    for (int i = 0; i < P; i++) gb2[i] = 0.5f;
    simclr_weights w = { w0, b0, w2, b2 };
    simclr_grads g = { gw0, gb0, gw2, gb2 };
    double loss = -1.0, acc = -1.0;
    assert_int_equal(simclr_forward_backward(s, dh, &g, &loss, &acc, h, 1, &w, 1.0f), 0);
    assert_true(loss == 0.0 && acc == 1.0);
    for (int i = 0; i < 2 * D; i++) assert_true(dh[i] == 0.0f);
    for (int i = 0; i < D * D; i++) assert_true(gw0[i] == 0.5f);
    for (int i = 0; i < D; i++) assert_true(gb0[i] == 0.5f);
    for (int i = 0; i < P * D; i++) assert_true(gw2[i] == 0.5f);
    for (int i = 0; i < P; i++) assert_true(gb2[i] == 0.5f);
    simclr_free(s);
}

/* ------------------------------------------------------------------------------------------ */
/* a bigger batch (2n = 300 rows: the OpenMP path) against a double-precision reference        */

static double ref_loss(double *acc, const double *h, int n, int d, int p, const simclr_weights *w, double tau)
{
    int R = 2 * n;
    double *z = malloc(sizeof(double) * (size_t)R * p), *r1 = malloc(sizeof(double) * (size_t)d);
    assert_true(z && r1);
    for (int i = 0; i < R; i++) {
        for (int j = 0; j < d; j++) {
            double a = w->b0[j];
            for (int k = 0; k < d; k++) a += w->w0[j * d + k] * h[(size_t)i * d + k];
            r1[j] = a > 0.0 ? a : 0.0;
        }
        double nrm = 0.0;
        for (int j = 0; j < p; j++) {
            double a = w->b2[j];
            for (int k = 0; k < d; k++) a += (double)w->w2[j * d + k] * r1[k];
            z[(size_t)i * p + j] = a;
            nrm += a * a;
        }
        for (int j = 0; j < p; j++) z[(size_t)i * p + j] /= sqrt(nrm);
    }
    double total = 0.0;
    int hits = 0;
    for (int i = 0; i < R; i++) {
        int pos = i < n ? i + n : i - n;
        double se = 0.0, spos = 0.0, best = -INFINITY;
        for (int k = 0; k < R; k++) {
            if (k == i) continue;
            double sk = 0.0;
            for (int j = 0; j < p; j++) sk += z[(size_t)i * p + j] * z[(size_t)k * p + j];
            sk /= tau;
            se += exp(sk - 1.0 / tau); /* |s| <= 1/tau: a safe shift */
            if (k == pos) spos = sk;
            else if (sk > best) best = sk;
        }
        total += 1.0 / tau + log(se) - spos;
        hits += spos > best;
    }
    free(z);
    free(r1);
    *acc = (double)hits / R;
    return total / R;
}

static void test_large_batch(void **state)
{
    (void)state;
    enum { N = 150, D = 16, P = 8 };
    const float tau = 0.2f;
    simclr *s = make(D, P, N, tau);
    rng_t r;
    rng_seed(&r, 9);
    float *h = malloc(sizeof(float) * 2 * N * D), *dh = malloc(sizeof(float) * 2 * N * D);
    float *v = malloc(sizeof(float) * 2 * N * D);
    assert_true(h && dh && v);
    float w0[D * D], b0[D], w2[P * D], b2[P];
    fill_uniform(&r, h, 2 * N * D, 1.0f);
    for (int i = 0; i < N * D; i++) h[N * D + i] = 0.8f * h[i] + 0.2f * h[N * D + i];
    fill_uniform(&r, w0, D * D, 0.5f);
    fill_uniform(&r, b0, D, 0.2f);
    fill_uniform(&r, w2, P * D, 0.5f);
    fill_uniform(&r, b2, P, 0.2f);
    fill_uniform(&r, v, 2 * N * D, 1.0f);
    simclr_weights w = { w0, b0, w2, b2 };
    double loss, acc, racc;
    assert_int_equal(simclr_forward_backward(s, dh, NULL, &loss, &acc, h, N, &w, 1.0f), 0);
    double *hd = malloc(sizeof(double) * 2 * N * D), *hp = malloc(sizeof(double) * 2 * N * D);
    double *hm = malloc(sizeof(double) * 2 * N * D);
    assert_true(hd && hp && hm);
    for (int i = 0; i < 2 * N * D; i++) hd[i] = h[i];
    double want = ref_loss(&racc, hd, N, D, P, &w, tau);
    assert_true(fabs(loss - want) <= 1e-5 * want);
    assert_true(fabs(acc - racc) <= 2.0 / (2 * N)); /* at most a near-tie or two may flip in float */
    assert_true(acc > 0.0 && acc < 1.0);
    /* directional derivative along v: central difference of the double reference (step 1e-5, so
     * almost no pre-activation crosses its ReLU kink) against dh . v */
    double an = 0.0;
    for (int i = 0; i < 2 * N * D; i++) an += (double)dh[i] * v[i];
    const double eps = 1e-5;
    for (int i = 0; i < 2 * N * D; i++) {
        hp[i] = hd[i] + eps * v[i];
        hm[i] = hd[i] - eps * v[i];
    }
    double a1, a2;
    double fd = (ref_loss(&a1, hp, N, D, P, &w, tau) - ref_loss(&a2, hm, N, D, P, &w, tau)) / (2.0 * eps);
    print_message("large batch: loss %.6f (ref %.6f) acc %.4f (ref %.4f), dh.v %.8g fd %.8g\n", loss, want, acc,
                  racc, an, fd);
    assert_true(fabs(an - fd) <= 1e-4 * fabs(fd) + 1e-6);
    free(hp);
    free(hm);
    free(hd);
    free(h);
    free(dh);
    free(v);
    simclr_free(s);
}

/* ------------------------------------------------------------------------------------------ */
/* errors                                                                                      */

static void test_errors(void **state)
{
    (void)state;
    enum { N = 3, D = 4, P = 2 };
    simclr *s = make(D, P, N, 0.5f);
    assert_true(simclr_memory_bytes(s) > (size_t)(2 * N) * (2 * N) * sizeof(float));
    assert_int_equal(simclr_memory_bytes(NULL), 0);
    rng_t r;
    rng_seed(&r, 3);
    float h[2 * N * D], dh[2 * N * D], w0[D * D], b0[D], w2[P * D], b2[P], gw0[D * D];
    fill_uniform(&r, h, 2 * N * D, 1.0f);
    fill_uniform(&r, w0, D * D, 1.0f);
    fill_uniform(&r, b0, D, 0.1f);
    fill_uniform(&r, w2, P * D, 1.0f);
    fill_uniform(&r, b2, P, 0.1f);
    simclr_weights w = { w0, b0, w2, b2 };
    simclr_grads g = { gw0, NULL, NULL, NULL };
    double loss, acc;

    /* a non-finite feature: -EDOM, dh and gradients untouched */
    for (int i = 0; i < 2 * N * D; i++) dh[i] = 7.0f;
    for (int i = 0; i < D * D; i++) gw0[i] = 0.0f;
    /* a non-finite feature (refused before the head), then a
     * non-finite head weight (a2 infinite in every row, so z and the loss are NaN) */
    const float bad[2] = { NAN, INFINITY };
    for (int b = 0; b < 3; b++) {
        if (b < 2) h[5] = bad[b];
        else h[5] = 0.5f, b2[0] = INFINITY;
        assert_int_equal(simclr_forward_backward(s, dh, &g, &loss, &acc, h, N, &w, 1.0f), -EDOM);
        assert_true(!isfinite(loss) && acc == 0.0);
        for (int i = 0; i < 2 * N * D; i++) assert_true(dh[i] == 7.0f);
        for (int i = 0; i < D * D; i++) assert_true(gw0[i] == 0.0f);
    }
    b2[0] = 0.1f;
    assert_int_equal(simclr_forward_backward(s, dh, &g, &loss, &acc, h, N, &w, 1.0f), 0);
    assert_true(isfinite(loss) && loss > 0.0);
    assert_int_equal(simclr_forward_backward(s, NULL, NULL, NULL, NULL, h, N, &w, 1.0f), 0);

    assert_int_equal(simclr_forward_backward(s, dh, &g, &loss, &acc, h, 0, &w, 1.0f), -EINVAL);
    assert_int_equal(simclr_forward_backward(s, dh, &g, &loss, &acc, h, N + 1, &w, 1.0f), -EINVAL);
    assert_int_equal(simclr_forward_backward(s, dh, &g, &loss, &acc, NULL, N, &w, 1.0f), -EINVAL);
    assert_int_equal(simclr_forward_backward(s, dh, &g, &loss, &acc, h, N, NULL, 1.0f), -EINVAL);
    assert_int_equal(simclr_forward_backward(s, dh, &g, &loss, &acc, h, N, &w, NAN), -EINVAL);
    simclr_weights w2_ = { w0, b0, NULL, b2 };
    assert_int_equal(simclr_forward_backward(s, dh, &g, &loss, &acc, h, N, &w2_, 1.0f), -EINVAL);
    simclr_free(s);

    const simclr_config bads[] = { { 0, 2, 4, 0.5f }, { 4, 0, 4, 0.5f }, { 4, 2, 0, 0.5f },
                                   { 4, 2, 4, 0.0f }, { 4, 2, 4, -1.0f }, { 4, 2, 4, NAN },
                                   { 4, 2, 4, INFINITY }, { 4, 2, 1 << 20, 0.5f } };
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        char err[128] = "";
        s = (simclr *)&r; /* must be reset to NULL */
        assert_int_equal(simclr_new(&s, &bads[i], err, sizeof err), -EINVAL);
        assert_null(s);
        assert_true(strlen(err) > 0);
    }
    assert_int_equal(simclr_new(&s, NULL, NULL, 0), -EINVAL);
    simclr_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fd_t050),
        cmocka_unit_test(test_fd_t020),
        cmocka_unit_test(test_golden_t050),
        cmocka_unit_test(test_golden_t020),
        cmocka_unit_test(test_closed_forms),
        cmocka_unit_test(test_invariants),
        cmocka_unit_test(test_single_pair),
        cmocka_unit_test(test_large_batch),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("simclr", tests, NULL, NULL);
}
