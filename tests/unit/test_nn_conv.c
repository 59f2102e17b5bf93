/* tests/unit/test_nn_conv.c — cmocka tests for the image-layer kernels of trainer/nn_conv.c:
 * hand-computed forward cases, a double-precision direct-convolution reference for both conv back
 * ends (oneDNN and im2col + sgemm, the latter with a batch large enough to be cut into chunks),
 * plans with several batch sizes (declared ones on oneDNN, others on im2col), plans of the same
 * shape run by two threads at once, central finite-difference gradient checks of every backward on
 * small random shapes, ReLU's NaN propagation, and PyTorch's running-statistics formula for batch norm.
 * Single process; buffers are malloc'ed at exactly the sizes the kernels promise, so ASan catches
 * any overrun of the workspace or outputs. Failures are cmocka asserts (on the main thread).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/nn.h"
#include "trainer/nn_int.h"
#include "trainer/rng.h"
#include "tests/unit/fdcheck.h"

static float *falloc(size_t n)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(p);
    return p;
}

static void fill_normal(float *x, size_t n, rng_t *r, float scale)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)rng_normal(r) * scale;
}

static void fill_const(float *x, size_t n, float v)
{
    for (size_t i = 0; i < n; i++) x[i] = v;
}

static double dot_d(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* ---------------------------------------------------------------- conv ---- */

typedef struct conv_case {
    nn_conv c;
    nn_conv_plan *p;
    int n, h, w;
    float *in, *wt, *out, *ws, *r; /* r: the fixed random cotangent defining L = sum r * out */
    size_t in_len, w_len, out_len, ws_len;
    int oh, ow;
} conv_case;

static nn_conv_plan *plan_new(const nn_conv *c, int h, int w, const int *ns, int count)
{
    nn_conv_plan *p = NULL;
    assert_int_equal(nn_conv_plan_new(&p, c, h, w, ns, count), 0);
    assert_non_null(p);
    return p;
}

/* A case of batch n on a plan for ns[0..count-1] (NULL: for n alone); gemm = 1 forces im2col. */
static void conv_case_init_plan(conv_case *t, nn_conv c, int n, int h, int w, rng_t *rng, const int *ns,
                                int count, int gemm)
{
    t->c = c;
    t->p = ns ? plan_new(&c, h, w, ns, count) : plan_new(&c, h, w, &n, 1);
    nn__conv_plan_force_gemm(t->p, gemm);
    t->n = n;
    t->h = h;
    t->w = w;
    t->oh = nn_conv_out(h, c.k, c.stride, c.pad);
    t->ow = nn_conv_out(w, c.k, c.stride, c.pad);
    t->in_len = (size_t)c.cin * n * h * w;
    t->w_len = (size_t)c.cout * c.cin * c.k * c.k;
    t->out_len = (size_t)c.cout * n * t->oh * t->ow;
    t->ws_len = nn_conv_plan_workspace(t->p);
    t->in = falloc(t->in_len);
    t->wt = falloc(t->w_len);
    t->out = falloc(t->out_len);
    t->ws = falloc(t->ws_len);
    t->r = falloc(t->out_len);
    fill_normal(t->in, t->in_len, rng, 1.0f);
    fill_normal(t->wt, t->w_len, rng, 1.0f / sqrtf((float)(c.cin * c.k * c.k)));
    fill_normal(t->r, t->out_len, rng, 1.0f);
    fill_const(t->ws, t->ws_len, NAN); /* results must not depend on stale scratch */
}

static void conv_case_init(conv_case *t, nn_conv c, int n, int h, int w, rng_t *rng)
{
    conv_case_init_plan(t, c, n, h, w, rng, NULL, 0, 0);
}

static void conv_case_free(conv_case *t)
{
    nn_conv_plan_free(t->p);
    free(t->in);
    free(t->wt);
    free(t->out);
    free(t->ws);
    free(t->r);
}

static double conv_loss(void *ctx)
{
    conv_case *t = ctx;
    nn_conv_forward(t->out, t->ws, t->in, t->wt, t->p, t->n);
    return dot_d(t->out, t->r, t->out_len);
}

/* Direct convolution in double: out, and for cotangent r the input and weight gradients. */
static void conv_reference(double *out, double *din, double *dw, const conv_case *t)
{
    const nn_conv *c = &t->c;
    const int k = c->k, oh = t->oh, ow = t->ow, h = t->h, w = t->w, n = t->n;
    if (din) memset(din, 0, sizeof(double) * t->in_len);
    if (dw) memset(dw, 0, sizeof(double) * t->w_len);
    for (int co = 0; co < c->cout; co++)
        for (int img = 0; img < n; img++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    size_t oi = (((size_t)co * n + img) * oh + oy) * ow + ox;
                    double s = 0.0, g = t->r[oi];
                    for (int ci = 0; ci < c->cin; ci++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int iy = oy * c->stride - c->pad + ky, ix = ox * c->stride - c->pad + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                size_t ii = (((size_t)ci * n + img) * h + iy) * w + ix;
                                size_t wi = (((size_t)co * c->cin + ci) * k + ky) * k + kx;
                                s += (double)t->wt[wi] * t->in[ii];
                                if (din) din[ii] += g * t->wt[wi];
                                if (dw) dw[wi] += g * t->in[ii];
                            }
                    if (out) out[oi] = s;
                }
}

static void test_conv_forward_hand(void **state)
{
    (void)state;
    float in[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}; /* one 3x3 image, one channel */
    float out[4], ws[64];

    /* 2x2 kernel [[1,0],[0,-1]], stride 1, no pad: x[i][j] - x[i+1][j+1] = -4 everywhere. */
    const int one = 1, two = 2;
    nn_conv c1 = {.cin = 1, .cout = 1, .k = 2, .stride = 1, .pad = 0};
    float w1[4] = {1, 0, 0, -1};
    nn_conv_plan *p1 = plan_new(&c1, 3, 3, &one, 1);
    assert_true(nn_conv_plan_workspace(p1) <= 64);
    nn_conv_forward(out, ws, in, w1, p1, 1);
    for (int i = 0; i < 4; i++) assert_float_equal(out[i], -4.0f, 0.0f);
    nn_conv_plan_free(p1);

    /* 3x3 box, stride 2, pad 1: window sums of the 2x2 corners: 12 16 / 24 28. */
    nn_conv c2 = {.cin = 1, .cout = 1, .k = 3, .stride = 2, .pad = 1};
    float w2[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    const float want2[4] = {12, 16, 24, 28};
    nn_conv_plan *p2 = plan_new(&c2, 3, 3, &one, 1);
    assert_true(nn_conv_plan_workspace(p2) <= 64);
    nn_conv_forward(out, ws, in, w2, p2, 1);
    for (int i = 0; i < 4; i++) assert_float_equal(out[i], want2[i], 0.0f);
    nn_conv_plan_free(p2);

    /* 1x1 conv, 2 in -> 1 out, batch of 2 (CNHW): out[n] = 2*a[n] - b[n]. */
    nn_conv c3 = {.cin = 2, .cout = 1, .k = 1, .stride = 1, .pad = 0};
    float in3[8] = {1, 2, 3, 4, /* ch 0: img 0 = {1,2}, img 1 = {3,4} */ 10, 20, 30, 40};
    float w3[2] = {2, -1}, out3[4];
    const float want3[4] = {-8, -16, -24, -32};
    nn_conv_plan *p3 = plan_new(&c3, 1, 2, &two, 1);
    assert_int_equal(nn_conv_plan_workspace(p3), 0);
    nn_conv_forward(out3, NULL, in3, w3, p3, 2);
    for (int i = 0; i < 4; i++) assert_float_equal(out3[i], want3[i], 0.0f);
    nn_conv_plan_free(p3);

    /* Shapes that are no conv at all are refused at setup. */
    nn_conv_plan *bad = NULL;
    nn_conv cbad = {.cin = 1, .cout = 1, .k = 5, .stride = 1, .pad = 0};
    assert_int_equal(nn_conv_plan_new(&bad, &cbad, 3, 3, &one, 1), -EINVAL); /* kernel larger than the image */
    assert_null(bad);
    assert_int_equal(nn_conv_plan_new(&bad, &c1, 3, 3, &one, 0), -EINVAL);
    const int zero = 0;
    assert_int_equal(nn_conv_plan_new(&bad, &c1, 3, 3, &zero, 1), -EINVAL);
    nn_conv_plan_free(NULL);
}

/* Forward and both gradients against the double reference, and din overwritten (not summed) while
 * dweight is accumulated. Tolerance: 1e-4 * (1 + |ref|), float GEMM rounding over <= 600 terms. */
static void check_case_vs_reference(conv_case *tp)
{
    conv_case t = *tp;
    const int n = t.n;
    double *rout = malloc(sizeof(double) * t.out_len), *rdin = malloc(sizeof(double) * t.in_len);
    double *rdw = malloc(sizeof(double) * t.w_len);
    float *din = falloc(t.in_len), *dw = falloc(t.w_len);
    assert_non_null(rout);
    assert_non_null(rdin);
    assert_non_null(rdw);
    conv_reference(rout, rdin, rdw, &t);

    nn_conv_forward(t.out, t.ws, t.in, t.wt, t.p, n);
    for (size_t i = 0; i < t.out_len; i++) assert_true(fabs(t.out[i] - rout[i]) <= 1e-4 * (1 + fabs(rout[i])));

    fill_const(din, t.in_len, 1e30f); /* must be overwritten */
    fill_const(dw, t.w_len, 0.5f);    /* must be accumulated onto */
    fill_const(t.ws, t.ws_len, NAN);
    nn_conv_backward(din, dw, t.ws, t.r, t.in, t.wt, t.p, n);
    for (size_t i = 0; i < t.in_len; i++) assert_true(fabs(din[i] - rdin[i]) <= 1e-4 * (1 + fabs(rdin[i])));
    for (size_t i = 0; i < t.w_len; i++)
        assert_true(fabs((dw[i] - 0.5) - rdw[i]) <= 1e-4 * (1 + fabs(rdw[i])));

    /* din == NULL: only the weight gradient. */
    fill_const(dw, t.w_len, 0.0f);
    nn_conv_backward(NULL, dw, t.ws, t.r, t.in, t.wt, t.p, n);
    for (size_t i = 0; i < t.w_len; i++) assert_true(fabs(dw[i] - rdw[i]) <= 1e-4 * (1 + fabs(rdw[i])));

    free(rout);
    free(rdin);
    free(rdw);
    free(din);
    free(dw);
}

/* gemm = 1: through im2col + sgemm even where oneDNN would run. */
static void check_conv_vs_reference(nn_conv c, int n, int h, int w, uint64_t seed, int gemm)
{
    rng_t rng;
    rng_seed(&rng, seed);
    conv_case t;
    conv_case_init_plan(&t, c, n, h, w, &rng, NULL, 0, gemm);
    check_case_vs_reference(&t);
    conv_case_free(&t);
}

static void run_reference_shapes(int gemm)
{
    check_conv_vs_reference((nn_conv){3, 4, 3, 1, 1}, 2, 5, 5, 1, gemm);
    check_conv_vs_reference((nn_conv){2, 3, 3, 2, 1}, 3, 7, 6, 2, gemm);
    check_conv_vs_reference((nn_conv){3, 5, 1, 1, 0}, 2, 4, 3, 3, gemm);
    check_conv_vs_reference((nn_conv){4, 6, 1, 2, 0}, 2, 5, 5, 4, gemm);
    check_conv_vs_reference((nn_conv){3, 4, 7, 2, 3}, 2, 11, 9, 5, gemm);
    check_conv_vs_reference((nn_conv){2, 2, 3, 1, 0}, 1, 3, 3, 6, gemm);  /* output 1x1 */
    check_conv_vs_reference((nn_conv){1, 2, 5, 3, 2}, 2, 8, 7, 7, gemm);  /* stride 3, uneven edges */
    /* Shapes oneDNN takes (>= 16 input channels, k > 1) */
    check_conv_vs_reference((nn_conv){16, 8, 3, 1, 1}, 3, 6, 6, 21, gemm);
    check_conv_vs_reference((nn_conv){16, 24, 3, 2, 1}, 2, 7, 8, 22, gemm); /* odd size, stride 2 */
    check_conv_vs_reference((nn_conv){24, 16, 7, 2, 3}, 2, 9, 9, 23, gemm);
    check_conv_vs_reference((nn_conv){32, 32, 3, 1, 0}, 2, 5, 5, 24, gemm); /* no padding */
    check_conv_vs_reference((nn_conv){17, 5, 3, 1, 1}, 2, 4, 4, 25, gemm);  /* channels not a multiple of 8 */
    check_conv_vs_reference((nn_conv){16, 16, 3, 2, 1}, 5, 8, 8, 26, gemm);
    check_conv_vs_reference((nn_conv){16, 8, 3, 2, 0}, 2, 8, 8, 27, gemm);  /* last input row unused */
}

static void test_conv_reference_shapes(void **state)
{
    (void)state;
    run_reference_shapes(0); /* each shape on the back end it would use */
    run_reference_shapes(1); /* everything through im2col + sgemm */
}

/* The fast path must really be taken where it was measured to win (and not where it loses), or
 * the oneDNN checks above would silently test im2col twice. */
static void test_conv_backend_choice(void **state)
{
    (void)state;
    nn_conv big = {16, 16, 3, 1, 1}, stem = {1, 16, 3, 1, 1}, point = {16, 32, 1, 2, 0};
    const int four = 4;
    nn_conv_plan *pb = plan_new(&big, 8, 8, &four, 1), *ps = plan_new(&stem, 8, 8, &four, 1);
    nn_conv_plan *pp = plan_new(&point, 8, 8, &four, 1);
    assert_true(nn_conv_plan_workspace(pb) > 0);
    assert_true(nn__conv_plan_uses_dnnl(pb, 4));
    assert_false(nn__conv_plan_uses_dnnl(ps, 4));
    assert_false(nn__conv_plan_uses_dnnl(pp, 4));
    assert_false(nn__conv_plan_uses_dnnl(pb, 3)); /* a batch size never declared */
    nn__conv_plan_force_gemm(pb, 1);
    assert_false(nn__conv_plan_uses_dnnl(pb, 4));
    nn__conv_plan_force_gemm(pb, 0);
    assert_true(nn__conv_plan_uses_dnnl(pb, 4));
    nn_conv_plan_free(pb);
    nn_conv_plan_free(ps);
    nn_conv_plan_free(pp);
}

typedef struct { nn_conv c; int n, h, w; } conv_shape;

/* Winograd (3x3 stride 1, where oneDNN has it for this CPU) against the double reference, at the
 * same tolerance as every other back end: one layer's extra rounding stays well inside it. */
static void test_conv_winograd(void **state)
{
    (void)state;
    const conv_shape shapes[] = {
        {{16, 16, 3, 1, 1}, 4, 8, 8}, {{32, 32, 3, 1, 1}, 3, 7, 7}, /* odd size: partial tiles */
        {{64, 48, 3, 1, 0}, 2, 6, 6},                               /* no padding */
    };
    int used = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        rng_t rng;
        rng_seed(&rng, 300 + s);
        conv_case t;
        conv_case_init(&t, shapes[s].c, shapes[s].n, shapes[s].h, shapes[s].w, &rng);
        used += nn__conv_plan_winograd(t.p, t.n);
        check_case_vs_reference(&t);
        conv_case_free(&t);
    }
    if (!used) {
        print_message("[  SKIP    ] no Winograd kernel in oneDNN here (AVX-512 only, and not under DNNL_MAX_CPU_ISA=AVX2)\n");
        skip();
    }
    fprintf(stderr, "winograd: %d of 3 shapes\n", used);
    /* a stride-2 conv never takes it; CT_CONV_WINOGRAD=0 turns it off */
    const nn_conv s2 = {16, 16, 3, 2, 1}, s1 = {16, 16, 3, 1, 1};
    const int four = 4;
    nn_conv_plan *p = plan_new(&s2, 8, 8, &four, 1);
    assert_false(nn__conv_plan_winograd(p, 4));
    nn_conv_plan_free(p);
    setenv("CT_CONV_WINOGRAD", "0", 1);
    p = plan_new(&s1, 8, 8, &four, 1);
    unsetenv("CT_CONV_WINOGRAD");
    assert_true(nn__conv_plan_uses_dnnl(p, 4));
    assert_false(nn__conv_plan_winograd(p, 4));
    nn_conv_plan_free(p);
}

/* One plan, several batch sizes (a training batch, a short last validation batch): each declared
 * size runs on oneDNN, an undeclared smaller one on im2col, all within the one workspace (ASan: the
 * buffer is exactly nn_conv_plan_workspace floats) and all equal to the reference. */
static void test_conv_plan_batches(void **state)
{
    (void)state;
    const nn_conv c = {16, 8, 3, 2, 1};
    const int ns[3] = {6, 2, 6}; /* a duplicate is ignored */
    for (int n = 1; n <= 6; n++) {
        rng_t rng;
        rng_seed(&rng, 300 + n);
        conv_case t;
        conv_case_init_plan(&t, c, n, 7, 9, &rng, ns, 3, 0);
        assert_int_equal(nn__conv_plan_uses_dnnl(t.p, n), n == 6 || n == 2);
        check_case_vs_reference(&t);
        conv_case_free(&t);
    }
}

/* A batch whose columns exceed the im2col bound: the conv runs in several chunks of images (the
 * last one short), GEMMing into column blocks of the output; must equal the reference. 15 input
 * channels: just below oneDNN's share, so the workspace is im2col's alone. */
static void test_conv_chunked(void **state)
{
    (void)state;
    nn_conv c = {.cin = 15, .cout = 8, .k = 3, .stride = 1, .pad = 1};
    const int one = 1, many = 67;
    nn_conv_plan *p1 = plan_new(&c, 16, 16, &one, 1), *pn = plan_new(&c, 16, 16, &many, 1);
    size_t w1 = nn_conv_plan_workspace(p1), wn = nn_conv_plan_workspace(pn);
    nn_conv_plan_free(p1);
    nn_conv_plan_free(pn);
    assert_int_equal(w1, (size_t)15 * 9 * 256);
    assert_true(wn < w1 * 67); /* chunked: the workspace does not grow with the whole batch */
    assert_int_equal(wn % w1, 0);
    check_conv_vs_reference(c, 67, 16, 16, 11, 0);
}

/* Two threads, each with its own plan of the same shape and batch (two jobs of one model in one
 * daemon), run forward + backward at the same time, over and over: every result is bit-identical to
 * the same work done alone. Before plans were owned, such jobs took turns on one shared plan. */
typedef struct conv_job {
    conv_case t;
    float *din, *dw;
    int reps, mismatches;
    const float *want_out, *want_din, *want_dw;
} conv_job;

static void conv_job_once(conv_job *j)
{
    memset(j->dw, 0, sizeof(float) * j->t.w_len);
    nn_conv_forward(j->t.out, j->t.ws, j->t.in, j->t.wt, j->t.p, j->t.n);
    nn_conv_backward(j->din, j->dw, j->t.ws, j->t.r, j->t.in, j->t.wt, j->t.p, j->t.n);
}

static void *conv_job_run(void *arg)
{
    conv_job *j = arg;
    for (int r = 0; r < j->reps; r++) {
        conv_job_once(j);
        j->mismatches += memcmp(j->t.out, j->want_out, sizeof(float) * j->t.out_len) != 0 ||
                         memcmp(j->din, j->want_din, sizeof(float) * j->t.in_len) != 0 ||
                         memcmp(j->dw, j->want_dw, sizeof(float) * j->t.w_len) != 0;
    }
    return NULL;
}

static void test_conv_plans_two_threads(void **state)
{
    (void)state;
    const nn_conv c = {16, 16, 3, 1, 1};
    conv_job jobs[2];
    for (int k = 0; k < 2; k++) {
        rng_t rng;
        rng_seed(&rng, 500); /* same data: one reference for both */
        conv_case_init(&jobs[k].t, c, 4, 10, 10, &rng);
        jobs[k].din = falloc(jobs[k].t.in_len);
        jobs[k].dw = falloc(jobs[k].t.w_len);
        jobs[k].reps = 20;
        jobs[k].mismatches = 0;
        assert_true(nn__conv_plan_uses_dnnl(jobs[k].t.p, 4));
    }
    conv_job_once(&jobs[0]); /* the reference, alone */
    float *out = falloc(jobs[0].t.out_len), *din = falloc(jobs[0].t.in_len), *dw = falloc(jobs[0].t.w_len);
    memcpy(out, jobs[0].t.out, sizeof(float) * jobs[0].t.out_len);
    memcpy(din, jobs[0].din, sizeof(float) * jobs[0].t.in_len);
    memcpy(dw, jobs[0].dw, sizeof(float) * jobs[0].t.w_len);
    pthread_t th[2];
    for (int k = 0; k < 2; k++) {
        jobs[k].want_out = out;
        jobs[k].want_din = din;
        jobs[k].want_dw = dw;
        assert_int_equal(pthread_create(&th[k], NULL, conv_job_run, &jobs[k]), 0);
    }
    for (int k = 0; k < 2; k++) assert_int_equal(pthread_join(th[k], NULL), 0);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(jobs[k].mismatches, 0);
        free(jobs[k].din);
        free(jobs[k].dw);
        conv_case_free(&jobs[k].t);
    }
    free(out);
    free(din);
    free(dw);
}

/* Central differences of L = sum r * conv(in, w). The conv is linear in each argument, so the
 * difference has no truncation error; eps = 0.5 keeps float rounding of L far below the
 * tolerance |g - fd| <= 2e-3 + 2e-3 |fd|. */
static void test_conv_gradcheck(void **state)
{
    (void)state;
    const conv_shape shapes[] = {
        {{3, 4, 3, 1, 1}, 2, 5, 5},   {{2, 3, 3, 2, 1}, 3, 6, 5},  {{3, 2, 1, 1, 0}, 2, 4, 4},
        {{4, 3, 1, 2, 0}, 2, 5, 5},   {{2, 2, 7, 2, 3}, 2, 9, 8},  {{1, 3, 3, 1, 0}, 2, 5, 6},
        {{3, 5, 7, 1, 3}, 1, 6, 6},   {{5, 2, 3, 2, 0}, 2, 7, 7},
        {{16, 3, 3, 1, 1}, 2, 4, 4},  {{16, 2, 3, 2, 1}, 2, 5, 5}, /* oneDNN */
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        rng_t rng;
        rng_seed(&rng, 100 + s);
        conv_case t;
        conv_case_init(&t, shapes[s].c, shapes[s].n, shapes[s].h, shapes[s].w, &rng);
        float *din = falloc(t.in_len), *dw = falloc(t.w_len);
        fill_const(dw, t.w_len, 0.0f);
        nn_conv_backward(din, dw, t.ws, t.r, t.in, t.wt, t.p, t.n);
        fd_check_central("conv din", t.in, t.in_len, din, conv_loss, &t, 0.5f, 2e-3, 2e-3);
        fd_check_central("conv dw", t.wt, t.w_len, dw, conv_loss, &t, 0.5f, 2e-3, 2e-3);
        free(din);
        free(dw);
        conv_case_free(&t);
    }
}

/* Same inputs, same thread count: bit-identical outputs and gradients. */
static void check_conv_deterministic(nn_conv c)
{
    rng_t rng;
    rng_seed(&rng, 77);
    conv_case t;
    conv_case_init(&t, c, 4, 9, 9, &rng);
    float *o1 = falloc(t.out_len), *d1 = falloc(t.in_len), *d2 = falloc(t.in_len);
    float *w1 = falloc(t.w_len), *w2 = falloc(t.w_len);
    fill_const(w1, t.w_len, 0.0f);
    fill_const(w2, t.w_len, 0.0f);
    nn_conv_forward(o1, t.ws, t.in, t.wt, t.p, t.n);
    nn_conv_backward(d1, w1, t.ws, t.r, t.in, t.wt, t.p, t.n);
    nn_conv_forward(t.out, t.ws, t.in, t.wt, t.p, t.n);
    nn_conv_backward(d2, w2, t.ws, t.r, t.in, t.wt, t.p, t.n);
    assert_memory_equal(o1, t.out, sizeof(float) * t.out_len);
    assert_memory_equal(d1, d2, sizeof(float) * t.in_len);
    assert_memory_equal(w1, w2, sizeof(float) * t.w_len);
    free(o1);
    free(d1);
    free(d2);
    free(w1);
    free(w2);
    conv_case_free(&t);
}

static void test_conv_deterministic(void **state)
{
    (void)state;
    check_conv_deterministic((nn_conv){16, 8, 3, 1, 1}); /* oneDNN */
    check_conv_deterministic((nn_conv){3, 8, 3, 1, 1});  /* im2col + sgemm */
    check_conv_deterministic((nn_conv){8, 4, 1, 1, 0});  /* sgemm on the input itself */
}

/* ----------------------------------------------------------- batch norm ---- */

static void test_bn_forward_hand(void **state)
{
    (void)state;
    /* One channel, values 1..4: mean 2.5, biased var 1.25, unbiased var 5/3. */
    float in[4] = {1, 2, 3, 4}, out[4], mean, rstd, rm = 0.5f, rv = 2.0f;
    float gamma = 2.0f, beta = 1.0f, eps = 1e-5f;
    nn_bn_forward_train(out, &mean, &rstd, &rm, &rv, in, &gamma, &beta, 1, 1, 4, NN_CNHW, 0.1f, eps, 0);
    double rs = 1.0 / sqrt(1.25 + eps);
    assert_float_equal(mean, 2.5f, 1e-7);
    assert_float_equal(rstd, (float)rs, 1e-6);
    for (int i = 0; i < 4; i++) assert_float_equal(out[i], (float)(2.0 * (in[i] - 2.5) * rs + 1.0), 1e-6);
    /* PyTorch: running = 0.9 * running + 0.1 * batch statistic (variance unbiased). */
    assert_float_equal(rm, 0.9f * 0.5f + 0.1f * 2.5f, 1e-6);
    assert_float_equal(rv, (float)(0.9 * 2.0 + 0.1 * (5.0 / 3.0)), 1e-6);

    /* Eval mode uses the running statistics. */
    nn_bn_forward_eval(out, in, &gamma, &beta, &rm, &rv, 1, 1, 4, NN_CNHW, eps, 0);
    for (int i = 0; i < 4; i++)
        assert_float_equal(out[i], (float)(2.0 * (in[i] - rm) / sqrt((double)rv + eps) + 1.0), 1e-6);
}

/* Several channels with large means (1000 + small spread): statistics match a double reference
 * (relative 1e-5 on the variance) and the running update follows PyTorch over three steps. */
static void test_bn_running_stats(void **state)
{
    (void)state;
    enum { C = 5, M = 300 };
    rng_t rng;
    rng_seed(&rng, 5);
    float *in = falloc(C * M), *out = falloc(C * M);
    float gamma[C], beta[C], mean[C], rstd[C], rm[C], rv[C];
    double rm_ref[C], rv_ref[C];
    const float mom = 0.1f, eps = 1e-5f;
    for (int c = 0; c < C; c++) {
        gamma[c] = 1.0f + 0.1f * c;
        beta[c] = -0.2f * c;
        rm[c] = 0.0f;
        rv[c] = 1.0f;
        rm_ref[c] = 0.0;
        rv_ref[c] = 1.0;
    }
    for (int step = 0; step < 3; step++) {
        for (int c = 0; c < C; c++)
            for (int i = 0; i < M; i++) in[c * M + i] = 1000.0f * c + (float)rng_normal(&rng) * (0.05f + c);
        nn_bn_forward_train(out, mean, rstd, rm, rv, in, gamma, beta, C, 1, M, NN_CNHW, mom, eps, 0);
        for (int c = 0; c < C; c++) {
            double s = 0, ss = 0;
            for (int i = 0; i < M; i++) s += in[c * M + i];
            double mu = s / M;
            for (int i = 0; i < M; i++) ss += (in[c * M + i] - mu) * (in[c * M + i] - mu);
            double var = ss / M;
            rm_ref[c] = (1 - mom) * rm_ref[c] + mom * mu;
            rv_ref[c] = (1 - mom) * rv_ref[c] + mom * ss / (M - 1);
            assert_true(fabs(mean[c] - mu) <= 1e-6 * (1 + fabs(mu)));
            assert_true(fabs(rstd[c] - 1.0 / sqrt(var + eps)) <= 1e-5 / sqrt(var + eps));
            assert_true(fabs(rm[c] - rm_ref[c]) <= 1e-5 * (1 + fabs(rm_ref[c])));
            assert_true(fabs(rv[c] - rv_ref[c]) <= 1e-5 * (1 + fabs(rv_ref[c])));
            /* normalised output has mean beta and variance gamma^2 * var/(var+eps) */
            double os = 0, oss = 0;
            for (int i = 0; i < M; i++) os += out[c * M + i];
            for (int i = 0; i < M; i++) oss += (out[c * M + i] - os / M) * (out[c * M + i] - os / M);
            assert_true(fabs(os / M - beta[c]) <= 1e-3);
            assert_true(fabs(oss / M - gamma[c] * gamma[c] * var / (var + eps)) <= 1e-3);
        }
    }
    free(in);
    free(out);
}

typedef struct bn_case {
    int c, m;
    float *in, *out, *gamma, *beta, *mean, *rstd, *rm, *rv, *r;
} bn_case;

static double bn_loss(void *ctx)
{
    bn_case *t = ctx;
    nn_bn_forward_train(t->out, t->mean, t->rstd, t->rm, t->rv, t->in, t->gamma, t->beta, t->c, 1, t->m, NN_CNHW,
                        0.1f, 1e-5f, 0);
    return dot_d(t->out, t->r, (size_t)t->c * t->m);
}

/* Central differences, eps 1e-2 (truncation ~eps^2, float noise in L ~1e-6 / eps); tolerance
 * |g - fd| <= 2e-3 + 1e-2 |fd|. m = n*h*w = 2*3*3 keeps the batch coupling strong. */
static void test_bn_gradcheck(void **state)
{
    (void)state;
    bn_case t = {.c = 3, .m = 18};
    size_t len = (size_t)t.c * t.m;
    rng_t rng;
    rng_seed(&rng, 9);
    t.in = falloc(len);
    t.out = falloc(len);
    t.r = falloc(len);
    t.gamma = falloc(t.c);
    t.beta = falloc(t.c);
    t.mean = falloc(t.c);
    t.rstd = falloc(t.c);
    t.rm = falloc(t.c);
    t.rv = falloc(t.c);
    fill_normal(t.in, len, &rng, 1.0f);
    for (size_t i = 0; i < len; i++) t.in[i] += 0.5f; /* nonzero mean */
    fill_normal(t.r, len, &rng, 1.0f);
    fill_normal(t.gamma, t.c, &rng, 1.0f);
    fill_normal(t.beta, t.c, &rng, 1.0f);
    fill_const(t.rm, t.c, 0.0f);
    fill_const(t.rv, t.c, 1.0f);
    float *din = falloc(len), *dg = falloc(t.c), *db = falloc(t.c);
    fill_const(din, len, 1e30f);
    fill_const(dg, t.c, 0.25f); /* accumulated onto */
    fill_const(db, t.c, -0.25f);
    bn_loss(&t);
    nn_bn_backward(din, dg, db, t.r, NULL, t.in, t.mean, t.rstd, t.gamma, t.c, 1, t.m, NN_CNHW);
    for (int c = 0; c < t.c; c++) {
        dg[c] -= 0.25f;
        db[c] += 0.25f;
    }
    fd_check_central("bn din", t.in, len, din, bn_loss, &t, 1e-2f, 2e-3, 1e-2);
    fd_check_central("bn dgamma", t.gamma, t.c, dg, bn_loss, &t, 1e-2f, 2e-3, 1e-2);
    fd_check_central("bn dbeta", t.beta, t.c, db, bn_loss, &t, 1e-2f, 2e-3, 1e-2);
    /* din == NULL still accumulates the parameter gradients. */
    float dg2[3] = {0, 0, 0}, db2[3] = {0, 0, 0};
    bn_loss(&t);
    nn_bn_backward(NULL, dg2, db2, t.r, NULL, t.in, t.mean, t.rstd, t.gamma, t.c, 1, t.m, NN_CNHW);
    for (int c = 0; c < t.c; c++) {
        assert_float_equal(dg2[c], dg[c], 1e-5);
        assert_float_equal(db2[c], db[c], 1e-5);
    }
    free(din);
    free(dg);
    free(db);
    free(t.in);
    free(t.out);
    free(t.r);
    free(t.gamma);
    free(t.beta);
    free(t.mean);
    free(t.rstd);
    free(t.rm);
    free(t.rv);
}

/* The fused ReLU (forward relu = 1, backward mask) gives what the separate passes give: forward
 * bit-exact (same expression), backward within float rounding of the sums' order (the masked and
 * unmasked loops are vectorised alike, so in practice also exact). A NaN output passes its gradient
 * (nn_relu_backward's rule). m = 1001 is not a multiple of any vector width; one channel has a large
 * mean (the one-pass shifted statistics must not cancel). */
static void test_bn_relu_fused(void **state)
{
    (void)state;
    enum { C = 3, M = 1001 };
    rng_t rng;
    rng_seed(&rng, 21);
    float *in = falloc(C * M), *ref = falloc(C * M), *out = falloc(C * M), *dy = falloc(C * M);
    float *dyr = falloc(C * M), *d1 = falloc(C * M), *d2 = falloc(C * M);
    float gamma[C] = {1.0f, -0.5f, 2.0f}, beta[C] = {0.1f, 0.3f, -0.2f}, mean[C], rstd[C], mean2[C], rstd2[C];
    float rm[C] = {0}, rv[C] = {1, 1, 1}, rm2[C] = {0}, rv2[C] = {1, 1, 1};
    fill_normal(in, C * M, &rng, 1.0f);
    for (int i = 0; i < M; i++) in[2 * M + i] = 500.0f + 0.01f * in[2 * M + i];
    fill_normal(dy, C * M, &rng, 1.0f);
    nn_bn_forward_train(ref, mean, rstd, rm, rv, in, gamma, beta, C, 1, M, NN_CNHW, 0.1f, 1e-5f, 0);
    nn_relu_forward(ref, ref, C * M);
    nn_bn_forward_train(out, mean2, rstd2, rm2, rv2, in, gamma, beta, C, 1, M, NN_CNHW, 0.1f, 1e-5f, 1);
    assert_memory_equal(out, ref, sizeof(float) * C * M);
    assert_memory_equal(mean, mean2, sizeof mean);
    assert_memory_equal(rstd, rstd2, sizeof rstd);
    assert_memory_equal(rv, rv2, sizeof rv);
    nn_bn_forward_eval(ref, in, gamma, beta, rm, rv, C, 1, M, NN_CNHW, 1e-5f, 0);
    nn_relu_forward(ref, ref, C * M);
    nn_bn_forward_eval(out, in, gamma, beta, rm, rv, C, 1, M, NN_CNHW, 1e-5f, 1);
    assert_memory_equal(out, ref, sizeof(float) * C * M);

    out[5] = NAN; /* a NaN activation passes its gradient, as torch */
    nn_relu_backward(dyr, dy, out, C * M);
    assert_float_equal(dyr[5], dy[5], 0.0f);
    float dg1[C] = {0}, db1[C] = {0}, dg2[C] = {0}, db2[C] = {0};
    nn_bn_backward(d1, dg1, db1, dyr, NULL, in, mean, rstd, gamma, C, 1, M, NN_CNHW);
    nn_bn_backward(d2, dg2, db2, dy, out, in, mean, rstd, gamma, C, 1, M, NN_CNHW);
    for (int c = 0; c < C; c++) {
        assert_true(fabsf(dg1[c] - dg2[c]) <= 1e-5f * (1 + fabsf(dg1[c])));
        assert_true(fabsf(db1[c] - db2[c]) <= 1e-5f * (1 + fabsf(db1[c])));
    }
    for (int i = 0; i < C * M; i++) assert_true(fabsf(d1[i] - d2[i]) <= 1e-5f * (1 + fabsf(d1[i])));
    free(in);
    free(ref);
    free(out);
    free(dy);
    free(dyr);
    free(d1);
    free(d2);
}

/* ----------------------------------------------------------- elementwise ---- */

typedef struct { float *in, *out, *r; size_t len; } ew_case;

static double relu_loss(void *ctx)
{
    ew_case *t = ctx;
    nn_relu_forward(t->out, t->in, t->len);
    return dot_d(t->out, t->r, t->len);
}

/* Inputs kept at least 0.05 away from the kink, eps 1e-3: the difference is exact up to rounding. */
static void test_relu(void **state)
{
    (void)state;
    enum { N = 200 };
    rng_t rng;
    rng_seed(&rng, 3);
    ew_case t = {falloc(N), falloc(N), falloc(N), N};
    float *din = falloc(N), *inplace = falloc(N);
    fill_normal(t.in, N, &rng, 1.0f);
    for (int i = 0; i < N; i++)
        if (fabsf(t.in[i]) < 0.05f) t.in[i] = t.in[i] < 0 ? -0.05f : 0.05f;
    fill_normal(t.r, N, &rng, 1.0f);
    relu_loss(&t);
    for (int i = 0; i < N; i++) assert_float_equal(t.out[i], t.in[i] > 0 ? t.in[i] : 0.0f, 0.0f);
    memcpy(inplace, t.in, sizeof(float) * N);
    nn_relu_forward(inplace, inplace, N);
    assert_memory_equal(inplace, t.out, sizeof(float) * N);
    nn_relu_backward(din, t.r, t.out, N);
    fd_check_central("relu din", t.in, N, din, relu_loss, &t, 1e-3f, 1e-3, 1e-3);
    free(t.in);
    free(t.out);
    free(t.r);
    free(din);
    free(inplace);
}

/* As torch.relu: NaN propagates (a diverging job must show a non-finite loss, not zeroed features),
 * +-inf and -0 behave; backward passes the gradient wherever the output is not <= 0 (NaN included),
 * as torch's threshold_backward. */
static void test_relu_nan(void **state)
{
    (void)state;
    const float in[6] = {NAN, -NAN, INFINITY, -INFINITY, -0.0f, 2.5f};
    const float dout[6] = {1, 2, 3, 4, 5, 6};
    float out[6], din[6];
    nn_relu_forward(out, in, 6);
    assert_true(isnan(out[0]));
    assert_true(isnan(out[1]));
    assert_true(isinf(out[2]) && out[2] > 0);
    assert_true(out[3] == 0.0f && !signbit(out[3]));
    assert_true(out[4] == 0.0f && !signbit(out[4]));
    assert_float_equal(out[5], 2.5f, 0.0f);
    nn_relu_backward(din, dout, out, 6);
    const float want[6] = {1, 2, 3, 0, 0, 6};
    for (int i = 0; i < 6; i++) assert_float_equal(din[i], want[i], 0.0f);
}

/* out = a + b exactly; the gradient wrt either input is the cotangent itself. */
static double add_loss(void *ctx)
{
    float **p = ctx; /* a, b, out, r */
    nn_add_forward(p[2], p[0], p[1], 64);
    return dot_d(p[2], p[3], 64);
}

static void test_add(void **state)
{
    (void)state;
    rng_t rng;
    rng_seed(&rng, 4);
    float *p[4] = {falloc(64), falloc(64), falloc(64), falloc(64)};
    for (int i = 0; i < 4; i++) fill_normal(p[i], 64, &rng, 1.0f);
    add_loss(p);
    for (int i = 0; i < 64; i++) assert_float_equal(p[2][i], p[0][i] + p[1][i], 0.0f);
    fd_check_central("add da", p[0], 64, p[3], add_loss, p, 0.5f, 1e-4, 1e-4);
    fd_check_central("add db", p[1], 64, p[3], add_loss, p, 0.5f, 1e-4, 1e-4);
    for (int i = 0; i < 4; i++) free(p[i]);
}

/* -------------------------------------------------------------- pooling ---- */

static void test_maxpool_hand(void **state)
{
    (void)state;
    /* 4x4 plane, 3x3 window, stride 2, pad 1 -> 2x2 windows over rows/cols {0,1},{1,2,3}. */
    float in[16] = {1, 5, 2, 0,
                    3, 4, 9, 9, /* tie at (1,2) and (1,3): the first wins */
                    8, 1, 0, 2,
                    0, 8, 7, 6};
    float out[4], din[16], dout[4] = {1, 2, 3, 4};
    int32_t am[4];
    nn_maxpool_forward(out, am, in, 1, 1, 4, 4, 3, 2, 1, NN_CNHW);
    const float want[4] = {5, 9, 8, 9};
    const int32_t want_am[4] = {1, 6, 8, 6};
    for (int i = 0; i < 4; i++) {
        assert_float_equal(out[i], want[i], 0.0f);
        assert_int_equal(am[i], want_am[i]);
    }
    /* Overlapping windows that share an argmax sum their gradients. */
    nn_maxpool_backward(din, dout, am, 1, 1, 4, 4, 3, 2, 1, NN_CNHW);
    for (int i = 0; i < 16; i++) {
        float g = i == 1 ? 1 : i == 6 ? 2 + 4 : i == 8 ? 3 : 0;
        assert_float_equal(din[i], g, 0.0f);
    }
}

typedef struct { float *in, *out, *r; int32_t *am; int c, n, h, w, oh, ow; } pool_case;

static double maxpool_loss(void *ctx)
{
    pool_case *t = ctx;
    nn_maxpool_forward(t->out, t->am, t->in, t->c, t->n, t->h, t->w, 3, 2, 1, NN_CNHW);
    return dot_d(t->out, t->r, (size_t)t->c * t->n * t->oh * t->ow);
}

/* Input values are distinct multiples of 0.01 (a shuffled ramp) and eps = 1e-3, so no
 * perturbation changes an argmax: the difference is exact up to rounding. Tolerance 1e-3. */
static void test_maxpool_gradcheck(void **state)
{
    (void)state;
    pool_case t = {.c = 3, .n = 2, .h = 7, .w = 6};
    t.oh = nn_conv_out(t.h, 3, 2, 1);
    t.ow = nn_conv_out(t.w, 3, 2, 1);
    size_t len = (size_t)t.c * t.n * t.h * t.w, olen = (size_t)t.c * t.n * t.oh * t.ow;
    rng_t rng;
    rng_seed(&rng, 8);
    int *perm = malloc(sizeof(int) * len);
    assert_non_null(perm);
    rng_permutation(&rng, perm, (int)len);
    t.in = falloc(len);
    t.out = falloc(olen);
    t.r = falloc(olen);
    t.am = malloc(sizeof(int32_t) * olen);
    assert_non_null(t.am);
    for (size_t i = 0; i < len; i++) t.in[i] = 0.01f * perm[i] - 1.0f;
    fill_normal(t.r, olen, &rng, 1.0f);
    float *din = falloc(len);
    fill_const(din, len, 1e30f);
    maxpool_loss(&t);
    for (size_t i = 0; i < olen; i++) assert_true(t.am[i] >= 0 && t.am[i] < t.h * t.w);
    nn_maxpool_backward(din, t.r, t.am, t.c, t.n, t.h, t.w, 3, 2, 1, NN_CNHW);
    fd_check_central("maxpool din", t.in, len, din, maxpool_loss, &t, 1e-3f, 1e-3, 1e-3);
    free(perm);
    free(t.in);
    free(t.out);
    free(t.r);
    free(t.am);
    free(din);
}

static double avgpool_loss(void *ctx)
{
    pool_case *t = ctx;
    nn_avgpool_forward(t->out, t->in, t->c, t->n, t->h * t->w, NN_CNHW);
    return dot_d(t->out, t->r, (size_t)t->c * t->n);
}

static void test_avgpool(void **state)
{
    (void)state;
    /* Hand case: 2 channels, 2 images, 2 pixels; out is [n][c]. */
    float in[8] = {1, 3, 5, 7, /* ch 0: img0 {1,3}, img1 {5,7} */ 10, 20, 30, 50};
    float out[4], dout[4] = {1, 2, 3, 4}, din[8];
    nn_avgpool_forward(out, in, 2, 2, 2, NN_CNHW);
    const float want[4] = {2, 15, 6, 40};
    for (int i = 0; i < 4; i++) assert_float_equal(out[i], want[i], 0.0f);
    nn_avgpool_backward(din, dout, 2, 2, 2, NN_CNHW);
    const float want_din[8] = {0.5f, 0.5f, 1.5f, 1.5f, 1, 1, 2, 2};
    for (int i = 0; i < 8; i++) assert_float_equal(din[i], want_din[i], 0.0f);

    /* Central differences (linear, eps 0.5), tolerance 1e-4. */
    pool_case t = {.c = 4, .n = 3, .h = 5, .w = 3};
    size_t len = (size_t)t.c * t.n * t.h * t.w;
    rng_t rng;
    rng_seed(&rng, 10);
    t.in = falloc(len);
    t.out = falloc((size_t)t.c * t.n);
    t.r = falloc((size_t)t.c * t.n);
    fill_normal(t.in, len, &rng, 1.0f);
    fill_normal(t.r, (size_t)t.c * t.n, &rng, 1.0f);
    float *g = falloc(len);
    nn_avgpool_backward(g, t.r, t.c, t.n, t.h * t.w, NN_CNHW);
    fd_check_central("avgpool din", t.in, len, g, avgpool_loss, &t, 0.5f, 1e-4, 1e-4);
    free(t.in);
    free(t.out);
    free(t.r);
    free(g);
}

/* -------------------------------------------------------- blocked layouts ---- */

/* CNHW x[c][n][hw] <-> blocked nChw{b}c x[n][c/b][hw][c%b] (nn.h). */
static size_t blk_index(int ch, int i, int p, int c, int hw, int b)
{
    return (((size_t)i * (c / b) + ch / b) * hw + p) * b + ch % b;
}

static float *to_blocked(const float *x, int c, int n, int hw, int b)
{
    float *y = falloc((size_t)c * n * hw);
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < n; i++)
            for (int p = 0; p < hw; p++) y[blk_index(ch, i, p, c, hw, b)] = x[((size_t)ch * n + i) * hw + p];
    return y;
}

/* |blocked got, back in CNHW, - want| <= tol * (1 + |want|) */
static void assert_blocked_close(const char *what, const float *got, const float *want, int c, int n, int hw, int b,
                                 double tol)
{
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < n; i++)
            for (int p = 0; p < hw; p++) {
                float g = got[blk_index(ch, i, p, c, hw, b)], w = want[((size_t)ch * n + i) * hw + p];
                if (!(fabs((double)g - w) <= tol * (1 + fabs(w))))
                    fail_msg("%s (b %d): channel %d image %d pixel %d: %.8g, CNHW %.8g", what, b, ch, i, p, g, w);
            }
}

static void assert_vec_close(const char *what, const float *got, const float *want, size_t len, double tol)
{
    for (size_t i = 0; i < len; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * (1 + fabs(want[i]))))
            fail_msg("%s[%zu]: %.8g, CNHW %.8g", what, i, got[i], want[i]);
}

/* Every layout-taking kernel on blocked data equals itself on the same data in CNHW (BN sums are
 * added in another order, so within float rounding; pooling exactly). 48 channels: 3 blocks of 16,
 * 6 of 8, and an odd n so the image ranges of the sums split unevenly. */
static void test_blocked_layers(void **state)
{
    (void)state;
    enum { C = 48, N = 5, H = 6, W = 7, HW = H * W };
    const size_t len = (size_t)C * N * HW;
    const int oh = nn_conv_out(H, 3, 2, 1), ow = nn_conv_out(W, 3, 2, 1), olen = C * N * oh * ow;
    rng_t rng;
    rng_seed(&rng, 900);
    float *x = falloc(len), *dy = falloc(len), *mask = falloc(len), *gamma = falloc(C), *beta = falloc(C);
    fill_normal(x, len, &rng, 1.0f);
    for (size_t i = 0; i < len; i++) x[i] += 3.0f; /* a mean away from 0, as the shifted sums handle */
    fill_normal(dy, len, &rng, 1.0f);
    fill_normal(mask, len, &rng, 1.0f);
    fill_normal(gamma, C, &rng, 1.0f);
    fill_normal(beta, C, &rng, 1.0f);
    float *ry = falloc(len), *rmean = falloc(C), *rrstd = falloc(C), *rrm = falloc(C), *rrv = falloc(C);
    float *rdx = falloc(len), *rdg = falloc(C), *rdb = falloc(C), *rev = falloc(len);
    float *rmp = falloc(olen), *rmpd = falloc(len), *rap = falloc(C * N), *rapd = falloc(len);
    int32_t *ram = malloc(sizeof(int32_t) * olen), *bam = malloc(sizeof(int32_t) * olen);
    assert_non_null(ram);
    assert_non_null(bam);
    for (int relu = 0; relu <= 1; relu++) {
        fill_const(rrm, C, 0.5f);
        fill_const(rrv, C, 2.0f);
        fill_const(rdg, C, 0.25f);
        fill_const(rdb, C, -0.25f);
        nn_bn_forward_train(ry, rmean, rrstd, rrm, rrv, x, gamma, beta, C, N, HW, NN_CNHW, 0.1f, 1e-5f, relu);
        nn_bn_backward(rdx, rdg, rdb, dy, relu ? mask : NULL, x, rmean, rrstd, gamma, C, N, HW, NN_CNHW);
        nn_bn_forward_eval(rev, x, gamma, beta, rrm, rrv, C, N, HW, NN_CNHW, 1e-5f, relu);
        for (int b = 1; b <= 16; b *= 2) {
            if (b == 2 || b == 4) continue; /* the layouts oneDNN uses: NCHW, nChw8c, nChw16c */
            float *bx = to_blocked(x, C, N, HW, b), *bdy = to_blocked(dy, C, N, HW, b);
            float *bmask = to_blocked(mask, C, N, HW, b), *by = falloc(len), *bdx = falloc(len), *bev = falloc(len);
            float mean[C], rstd[C], rm[C], rv[C], dg[C], db[C];
            fill_const(rm, C, 0.5f);
            fill_const(rv, C, 2.0f);
            fill_const(dg, C, 0.25f);
            fill_const(db, C, -0.25f);
            nn_bn_forward_train(by, mean, rstd, rm, rv, bx, gamma, beta, C, N, HW, b, 0.1f, 1e-5f, relu);
            assert_blocked_close("bn forward", by, ry, C, N, HW, b, 1e-5);
            assert_vec_close("bn mean", mean, rmean, C, 1e-6);
            assert_vec_close("bn rstd", rstd, rrstd, C, 1e-6);
            assert_vec_close("bn running_mean", rm, rrm, C, 1e-6);
            assert_vec_close("bn running_var", rv, rrv, C, 1e-6);
            nn_bn_backward(bdx, dg, db, bdy, relu ? bmask : NULL, bx, mean, rstd, gamma, C, N, HW, b);
            assert_blocked_close("bn backward", bdx, rdx, C, N, HW, b, 1e-5);
            assert_vec_close("bn dgamma", dg, rdg, C, 1e-5);
            assert_vec_close("bn dbeta", db, rdb, C, 1e-5);
            fill_const(dg, C, 0.0f);
            fill_const(db, C, 0.0f);
            nn_bn_backward(NULL, dg, db, bdy, NULL, bx, mean, rstd, gamma, C, N, HW, b); /* din not wanted */
            nn_bn_forward_eval(bev, bx, gamma, beta, rm, rv, C, N, HW, b, 1e-5f, relu);
            assert_blocked_close("bn eval", bev, rev, C, N, HW, b, 1e-6);
            if (relu) { /* pooling, once per layout */
                float *bmp = falloc(olen), *bmpd = falloc(len), *bap = falloc(C * N), *bapd = falloc(len);
                float *bdmp = to_blocked(dy, C, N, oh * ow, b); /* first olen values as the pooled gradient */
                nn_maxpool_forward(rmp, ram, x, C, N, H, W, 3, 2, 1, NN_CNHW);
                nn_maxpool_backward(rmpd, dy, ram, C, N, H, W, 3, 2, 1, NN_CNHW);
                nn_maxpool_forward(bmp, bam, bx, C, N, H, W, 3, 2, 1, b);
                nn_maxpool_backward(bmpd, bdmp, bam, C, N, H, W, 3, 2, 1, b);
                assert_blocked_close("maxpool", bmp, rmp, C, N, oh * ow, b, 0.0);
                assert_blocked_close("maxpool backward", bmpd, rmpd, C, N, HW, b, 0.0);
                nn_avgpool_forward(rap, x, C, N, HW, NN_CNHW);
                nn_avgpool_backward(rapd, dy, C, N, HW, NN_CNHW);
                nn_avgpool_forward(bap, bx, C, N, HW, b);
                nn_avgpool_backward(bapd, dy, C, N, HW, b);
                assert_vec_close("avgpool", bap, rap, (size_t)C * N, 0.0);
                assert_blocked_close("avgpool backward", bapd, rapd, C, N, HW, b, 0.0);
                free(bmp);
                free(bmpd);
                free(bap);
                free(bapd);
                free(bdmp);
            }
            free(bx);
            free(bdy);
            free(bmask);
            free(by);
            free(bdx);
            free(bev);
        }
    }
    free(x), free(dy), free(mask), free(gamma), free(beta), free(ry), free(rmean), free(rrstd), free(rrm);
    free(rrv), free(rdx), free(rdg), free(rdb), free(rev), free(rmp), free(rmpd), free(rap), free(rapd);
    free(ram);
    free(bam);
}

/* A blocked plan against the double reference: declared batches with blocked input and output (the
 * stem's input NCHW, and no din), an undeclared batch on CNHW through im2col. */
static void check_blocked_conv(nn_conv c, int n, int h, int w, int src_blk, int dst_blk, int need_din, uint64_t seed)
{
    rng_t rng;
    rng_seed(&rng, seed);
    conv_case t;
    conv_case_init(&t, c, n, h, w, &rng); /* the CNHW buffers and reference */
    nn_conv_plan *bp = NULL;
    const int ns[2] = {n, n + 2};
    assert_int_equal(nn_conv_plan_new_blocked(&bp, &c, h, w, ns, 2, src_blk, dst_blk, need_din), 0);
    assert_true(nn__conv_plan_uses_dnnl(bp, n));
    double *rout = malloc(sizeof(double) * t.out_len), *rdin = malloc(sizeof(double) * t.in_len);
    double *rdw = malloc(sizeof(double) * t.w_len);
    assert_non_null(rout);
    assert_non_null(rdin);
    assert_non_null(rdw);
    conv_reference(rout, rdin, rdw, &t);
    float *ref_out = falloc(t.out_len), *ref_din = falloc(t.in_len);
    for (size_t i = 0; i < t.out_len; i++) ref_out[i] = (float)rout[i];
    for (size_t i = 0; i < t.in_len; i++) ref_din[i] = (float)rdin[i];
    const int hw = h * w, ohw = t.oh * t.ow;
    float *bin = to_blocked(t.in, c.cin, n, hw, src_blk), *br = to_blocked(t.r, c.cout, n, ohw, dst_blk);
    float *bout = falloc(t.out_len), *bdin = falloc(t.in_len), *dw = falloc(t.w_len);
    float *ws = falloc(nn_conv_plan_workspace(bp));
    fill_const(ws, nn_conv_plan_workspace(bp), NAN);
    nn_conv_forward(bout, ws, bin, t.wt, bp, n);
    assert_blocked_close("blocked conv forward", bout, ref_out, c.cout, n, ohw, dst_blk, 1e-4);
    fill_const(dw, t.w_len, 0.5f); /* accumulated onto */
    nn_conv_backward(need_din ? bdin : NULL, dw, ws, br, bin, t.wt, bp, n);
    if (need_din) assert_blocked_close("blocked conv din", bdin, ref_din, c.cin, n, hw, src_blk, 1e-4);
    for (size_t i = 0; i < t.w_len; i++) assert_true(fabs((dw[i] - 0.5) - rdw[i]) <= 1e-4 * (1 + fabs(rdw[i])));
    /* an undeclared batch (1): CNHW through im2col, on the same plan and workspace */
    assert_false(nn__conv_plan_uses_dnnl(bp, 1));
    conv_case small;
    rng_seed(&rng, seed + 1);
    conv_case_init(&small, c, 1, h, w, &rng);
    nn_conv_plan_free(small.p);
    small.p = bp;
    free(small.ws);
    small.ws = ws;
    small.ws_len = nn_conv_plan_workspace(bp);
    check_case_vs_reference(&small);
    small.p = NULL;
    small.ws = NULL;
    conv_case_free(&small);
    free(rout), free(rdin), free(rdw), free(ref_out), free(ref_din), free(bin), free(br), free(bout), free(bdin);
    free(dw);
    free(ws);
    nn_conv_plan_free(bp);
    conv_case_free(&t);
}

static void test_conv_blocked(void **state)
{
    (void)state;
    const int b = nn_conv_preferred_block();
    if (!b) {
        print_message("[  SKIP    ] oneDNN has no JIT convolution on this CPU\n");
        skip();
    }
    assert_true(b == 8 || b == 16);
    check_blocked_conv((nn_conv){16, 32, 3, 1, 1}, 3, 7, 7, b, b, 1, 1000);  /* Winograd where it exists */
    check_blocked_conv((nn_conv){32, 32, 3, 2, 1}, 2, 8, 8, b, b, 1, 1001);  /* stride 2 */
    check_blocked_conv((nn_conv){16, 32, 1, 2, 0}, 3, 8, 8, b, b, 1, 1002);  /* a 1x1 projection */
    check_blocked_conv((nn_conv){3, 16, 3, 1, 1}, 2, 9, 9, 1, b, 0, 1003);   /* a stem on NCHW images */
    check_blocked_conv((nn_conv){1, 16, 7, 2, 3}, 2, 12, 12, 1, b, 0, 1004); /* torchvision's stem, 1 channel */
    /* what a blocked plan cannot be */
    nn_conv_plan *p = NULL;
    const nn_conv c = {16, 16, 3, 1, 1}, odd = {16, 20, 3, 1, 1};
    const int four = 4;
    assert_int_equal(nn_conv_plan_new_blocked(&p, &c, 8, 8, &four, 1, 4, b, 1), -EINVAL);    /* no such layout */
    assert_int_equal(nn_conv_plan_new_blocked(&p, &odd, 8, 8, &four, 1, b, 16, 1), -EINVAL); /* 20 % 16 */
    assert_null(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_forward_hand),
        cmocka_unit_test(test_conv_reference_shapes),
        cmocka_unit_test(test_conv_backend_choice),
        cmocka_unit_test(test_conv_winograd),
        cmocka_unit_test(test_conv_plan_batches),
        cmocka_unit_test(test_conv_chunked),
        cmocka_unit_test(test_conv_plans_two_threads),
        cmocka_unit_test(test_conv_gradcheck),
        cmocka_unit_test(test_conv_deterministic),
        cmocka_unit_test(test_bn_forward_hand),
        cmocka_unit_test(test_bn_running_stats),
        cmocka_unit_test(test_bn_gradcheck),
        cmocka_unit_test(test_bn_relu_fused),
        cmocka_unit_test(test_relu),
        cmocka_unit_test(test_relu_nan),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_maxpool_hand),
        cmocka_unit_test(test_maxpool_gradcheck),
        cmocka_unit_test(test_avgpool),
        cmocka_unit_test(test_blocked_layers),
        cmocka_unit_test(test_conv_blocked),
    };
    return cmocka_run_group_tests_name("nn_conv", tests, NULL, NULL);
}
