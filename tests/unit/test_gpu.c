/* tests/unit/test_gpu.c — the CUDA backend (trainer/gpu/) against the CPU kernels it mirrors: every
 * layer's forward and backward on the same random inputs, fp32 with TF32 off, within 1e-4 relative
 * (max-norm of the difference over max-norm of the CPU result); maxpool's argmax exactly; parameter
 * gradients accumulate on both sides (they start non-zero). Without a CUDA build or a visible device each
 * test prints why and reports as SKIPPED (never as passed). One context for the whole run, one thread.
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

#include "trainer/gpu/gpu.h"
#include "trainer/gpu/gpu_model.h"
#include "trainer/model.h"
#include "trainer/nn.h"
#include "trainer/rng.h"
#include "trainer/sgd.h"

#define TOL 1e-4
#define TOL_BF16 2e-2   /* bf16 keeps 8 bits of mantissa: ~4e-3 per operand, accumulated in fp32 */

static double tol = TOL; /* check_close's, relative to the reference's largest magnitude */

static gpu_ctx *G;            /* NULL: no device (reason says why) */
static char reason[320];

static int setup(void **state)
{
    (void)state;
    if (gpu_device_count(reason, sizeof reason) == 0) return 0;
    char err[256];
    if (gpu_ctx_new(&G, 0, 0, err, sizeof err) != 0 || gpu_ctx_reserve(G, (size_t)512 << 20, err, sizeof err) != 0) {
        snprintf(reason, sizeof reason, "gpu_ctx_new: %s", err);
        return -1; /* a device is there but unusable: that is a failure, not a skip */
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    gpu_ctx_free(G);
    return 0;
}

#define NEED_GPU()                                            \
    do {                                                      \
        if (!G) {                                             \
            print_message("[  SKIP    ] %s\n", reason);       \
            skip();                                           \
        }                                                     \
    } while (0)

static rng_t R;

static float *hrand(size_t n, float scale)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = (float)rng_normal(&R) * scale;
    return p;
}

static float *hzero(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    return p;
}

/* a device copy of host h */
static float *dcopy(const float *h, size_t n)
{
    float *d = gpu_alloc(G, n);
    if (!d) fail_msg("gpu_alloc: %s", gpu_error(G));
    assert_int_equal(gpu_upload(G, d, h, n), 0);
    return d;
}

/* device d (n floats) equals host ref within TOL relative to ref's largest magnitude */
static void check_close(const char *what, const float *d, const float *ref, size_t n)
{
    float *h = hzero(n);
    if (gpu_download(G, h, d, n)) fail_msg("%s: download: %s", what, gpu_error(G));
    double diff = 0, mag = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)h[i] - ref[i]);
        if (!(e <= diff)) diff = e; /* NaN on either side fails */
        if (fabs(ref[i]) > mag) mag = fabs(ref[i]);
    }
    if (!(diff <= tol * (mag > 0 ? mag : 1)))
        fail_msg("%s: max |gpu - cpu| %.3g, max |cpu| %.3g (relative %.3g > %g)", what, diff, mag, diff / mag, tol);
    free(h);
}


/* ---- conv ---- */

/* precision: GPU_FP32 or GPU_BF16 (the CPU stays the fp32 reference; bf16 within TOL_BF16) */
static void conv_case_p(int precision, int cin, int cout, int k, int stride, int pad, int h, int w, int max_n, int n)
{
    nn_conv c = {cin, cout, k, stride, pad};
    int oh = nn_conv_out(h, k, stride, pad), ow = nn_conv_out(w, k, stride, pad);
    size_t in_len = (size_t)cin * n * h * w, out_len = (size_t)cout * n * oh * ow, w_len = (size_t)cout * cin * k * k;
    float *in = hrand(in_len, 1), *wt = hrand(w_len, 0.2f), *dout = hrand(out_len, 1), *dw = hrand(w_len, 0.1f);
    float *out = hzero(out_len), *din = hzero(in_len);
    nn_conv_plan *p = NULL;
    int ns[1] = {max_n};
    assert_int_equal(nn_conv_plan_new(&p, &c, h, w, ns, 1), 0);
    float *ws = hzero(nn_conv_plan_workspace(p));
    /* a context of its own: plans come before the context's one allocation, which sizes the workspace */
    gpu_ctx *outer = G;
    char err[256];
    if (gpu_ctx_new(&G, 0, precision, err, sizeof err)) fail_msg("gpu_ctx_new: %s", err);
    gpu_conv *gp = NULL;
    if (gpu_conv_new(&gp, G, &c, h, w, max_n, err, sizeof err)) fail_msg("gpu_conv_new: %s", err);
    if (gpu_ctx_reserve(G, sizeof(float) * (2 * in_len + 2 * out_len + 2 * w_len) + ((size_t)1 << 20), err, sizeof err))
        fail_msg("gpu_ctx_reserve: %s", err);
    float *d_in = dcopy(in, in_len), *d_wt = dcopy(wt, w_len), *d_dout = dcopy(dout, out_len), *d_dw = dcopy(dw, w_len);
    float *d_out = gpu_alloc(G, out_len), *d_din = gpu_alloc(G, in_len);
    assert_non_null(d_out);
    assert_non_null(d_din);

    nn_conv_forward(out, ws, in, wt, p, n);
    nn_conv_backward(din, dw, ws, dout, in, wt, p, n);
    assert_int_equal(gpu_conv_forward(gp, d_out, d_in, d_wt, n), 0);
    assert_int_equal(gpu_conv_backward(gp, d_din, d_dw, d_dout, d_in, d_wt, n), 0);
    char what[96];
    tol = precision == GPU_BF16 ? TOL_BF16 : TOL;
    snprintf(what, sizeof what, "conv %dx%d s%d p%d %d->%d n=%d forward", k, k, stride, pad, cin, cout, n);
    check_close(what, d_out, out, out_len);
    snprintf(what, sizeof what, "conv %dx%d s%d p%d %d->%d n=%d dinput", k, k, stride, pad, cin, cout, n);
    check_close(what, d_din, din, in_len);
    snprintf(what, sizeof what, "conv %dx%d s%d p%d %d->%d n=%d dweight (accumulated)", k, k, stride, pad, cin, cout, n);
    check_close(what, d_dw, dw, w_len);
    tol = TOL;
    nn_conv_plan_free(p);
    gpu_ctx_free(G);
    G = outer;
    free(in); free(wt); free(dout); free(dw); free(out); free(din); free(ws);
}

static void conv_case(int cin, int cout, int k, int stride, int pad, int h, int w, int max_n, int n)
{
    conv_case_p(GPU_FP32, cin, cout, k, stride, pad, h, w, max_n, n);
}

/* "precision": "bf16": the same convs through the bf16 staging (casts, bf16 tensor cores, fp32 master
 * weights and gradients), against the fp32 CPU reference within bf16's rounding. */
static void test_conv_bf16(void **state)
{
    (void)state;
    NEED_GPU();
    conv_case_p(GPU_BF16, 3, 16, 3, 1, 1, 12, 12, 4, 4);
    conv_case_p(GPU_BF16, 16, 32, 1, 2, 0, 9, 9, 5, 5);
    conv_case_p(GPU_BF16, 16, 16, 3, 2, 1, 9, 9, 6, 2);   /* a batch below the plan's: staging sized by max_n */
}

static void test_conv(void **state)
{
    (void)state;
    NEED_GPU();
    conv_case(3, 16, 3, 1, 1, 12, 12, 4, 4);   /* CIFAR stem */
    conv_case(3, 8, 7, 2, 3, 20, 20, 3, 3);    /* torchvision stem */
    conv_case(16, 32, 1, 2, 0, 9, 9, 5, 5);    /* downsample shortcut */
    conv_case(16, 16, 3, 2, 1, 9, 9, 6, 2);    /* a batch below the plan's */
}

/* ---- batch norm ---- */

static void bn_case(int c, int n, int hw, int relu)
{
    size_t m = (size_t)n * hw, len = (size_t)c * m;
    float *in = hrand(len, 2), *gamma = hrand(c, 1), *beta = hrand(c, 1), *dout = hrand(len, 1);
    for (int i = 0; i < c; i++) in[(size_t)i * m] += 3.0f; /* channel means off zero */
    float *rm = hrand(c, 0.1f), *rv = hzero(c), *dg = hrand(c, 0.1f), *db = hrand(c, 0.1f);
    for (int i = 0; i < c; i++) rv[i] = 1.0f + 0.1f * i;
    float *d_in = dcopy(in, len), *d_g = dcopy(gamma, c), *d_b = dcopy(beta, c), *d_dout = dcopy(dout, len);
    float *d_rm = dcopy(rm, c), *d_rv = dcopy(rv, c), *d_dg = dcopy(dg, c), *d_db = dcopy(db, c);
    float *d_out = gpu_alloc(G, len), *d_mean = gpu_alloc(G, c), *d_rstd = gpu_alloc(G, c);
    float *d_din = gpu_alloc(G, len), *d_tmp = gpu_alloc(G, len), *d_eval = gpu_alloc(G, len);
    assert_non_null(d_eval);
    float *out = hzero(len), *mean = hzero(c), *rstd = hzero(c), *din = hzero(len), *ev = hzero(len);

    nn_bn_forward_train(out, mean, rstd, rm, rv, in, gamma, beta, c, n, hw, NN_CNHW, 0.1f, 1e-5f, relu);
    nn_bn_backward(din, dg, db, dout, relu ? out : NULL, in, mean, rstd, gamma, c, n, hw, NN_CNHW);
    nn_bn_forward_eval(ev, in, gamma, beta, rm, rv, c, n, hw, NN_CNHW, 1e-5f, relu);
    assert_int_equal(gpu_bn_forward_train(G, d_out, d_mean, d_rstd, d_rm, d_rv, d_in, d_g, d_b, c, n, hw, 0.1f,
                                          1e-5f, relu), 0);
    assert_int_equal(gpu_bn_backward(G, d_din, d_dg, d_db, d_tmp, d_dout, relu ? d_out : NULL, d_in, d_mean, d_rstd,
                                     d_g, c, n, hw, 1e-5f), 0);
    assert_int_equal(gpu_bn_forward_eval(G, d_eval, d_in, d_g, d_b, d_rm, d_rv, c, n, hw, 1e-5f, relu), 0);
    check_close("bn train forward", d_out, out, len);
    check_close("bn saved mean", d_mean, mean, c);
    check_close("bn saved rstd", d_rstd, rstd, c);
    check_close("bn running_mean", d_rm, rm, c);
    check_close("bn running_var (unbiased)", d_rv, rv, c);
    check_close("bn dinput", d_din, din, len);
    check_close("bn dgamma (accumulated)", d_dg, dg, c);
    check_close("bn dbeta (accumulated)", d_db, db, c);
    check_close("bn eval forward", d_eval, ev, len);
    free(in); free(gamma); free(beta); free(dout); free(rm); free(rv); free(dg); free(db);
    free(out); free(mean); free(rstd); free(din); free(ev);
}

static void test_bn(void **state)
{
    (void)state;
    NEED_GPU();
    bn_case(8, 4, 25, 0);
    bn_case(16, 3, 49, 1);
    bn_case(4, 64, 1, 1); /* after global pooling's size: one value per image */
}

/* ---- elementwise, pooling, dense, SGD ---- */

static void test_elementwise(void **state)
{
    (void)state;
    NEED_GPU();
    size_t len = 1000;
    float *a = hrand(len, 1), *b = hrand(len, 1), *dout = hrand(len, 1), *y = hzero(len), *dx = hzero(len), *s = hzero(len);
    a[3] = NAN; /* torch's ReLU passes NaN */
    float *d_a = dcopy(a, len), *d_b = dcopy(b, len), *d_dout = dcopy(dout, len);
    float *d_y = gpu_alloc(G, len), *d_dx = gpu_alloc(G, len), *d_s = gpu_alloc(G, len);
    assert_non_null(d_s);
    nn_relu_forward(y, a, len);
    nn_relu_backward(dx, dout, y, len);
    nn_add_forward(s, b, dout, len);
    assert_int_equal(gpu_relu_forward(G, d_y, d_a, len), 0);
    assert_int_equal(gpu_relu_backward(G, d_dx, d_dout, d_y, len), 0);
    assert_int_equal(gpu_add_forward(G, d_s, d_b, d_dout, len), 0);
    float *h = hzero(len);
    assert_int_equal(gpu_download(G, h, d_y, len), 0);
    assert_true(isnan(h[3]));
    y[3] = h[3] = 0; /* the rest compared as numbers */
    assert_int_equal(gpu_upload(G, d_y, h, len), 0);
    check_close("relu forward", d_y, y, len);
    check_close("relu backward", d_dx, dx, len);
    check_close("add", d_s, s, len);
    free(a); free(b); free(dout); free(y); free(dx); free(s); free(h);
}

static void test_pool(void **state)
{
    (void)state;
    NEED_GPU();
    int c = 5, n = 3, h = 11, w = 11, k = 3, st = 2, pad = 1;
    int oh = nn_conv_out(h, k, st, pad), ow = nn_conv_out(w, k, st, pad);
    size_t in_len = (size_t)c * n * h * w, out_len = (size_t)c * n * oh * ow;
    float *in = hrand(in_len, 1), *dout = hrand(out_len, 1), *out = hzero(out_len), *din = hzero(in_len);
    for (size_t i = 0; i < in_len; i += 7) in[i] = in[i + 1 < in_len ? i + 1 : i]; /* ties: first one wins */
    int32_t *am = malloc(sizeof(int32_t) * out_len), *am_gpu = malloc(sizeof(int32_t) * out_len);
    assert_non_null(am_gpu);
    float *d_in = dcopy(in, in_len), *d_dout = dcopy(dout, out_len), *d_out = gpu_alloc(G, out_len);
    float *d_din = gpu_alloc(G, in_len), *d_am = gpu_alloc(G, out_len); /* int32 in a float-sized slot */
    assert_non_null(d_am);
    nn_maxpool_forward(out, am, in, c, n, h, w, k, st, pad, NN_CNHW);
    nn_maxpool_backward(din, dout, am, c, n, h, w, k, st, pad, NN_CNHW);
    assert_int_equal(gpu_maxpool_forward(G, d_out, (int32_t *)d_am, d_in, c, n, h, w, k, st, pad), 0);
    assert_int_equal(gpu_maxpool_backward(G, d_din, d_dout, (const int32_t *)d_am, c, n, h, w, k, st, pad), 0);
    check_close("maxpool forward", d_out, out, out_len);
    check_close("maxpool backward", d_din, din, in_len);
    assert_int_equal(gpu_download(G, (float *)am_gpu, d_am, out_len), 0);
    assert_memory_equal(am_gpu, am, sizeof(int32_t) * out_len);

    int hw = 16, cc = 12;
    float *x = hrand((size_t)cc * n * hw, 1), *f = hzero((size_t)n * cc), *df = hrand((size_t)n * cc, 1);
    float *dx = hzero((size_t)cc * n * hw);
    float *d_x = dcopy(x, (size_t)cc * n * hw), *d_df = dcopy(df, (size_t)n * cc), *d_f = gpu_alloc(G, (size_t)n * cc);
    float *d_dx = gpu_alloc(G, (size_t)cc * n * hw);
    assert_non_null(d_dx);
    nn_avgpool_forward(f, x, cc, n, hw, NN_CNHW);
    nn_avgpool_backward(dx, df, cc, n, hw, NN_CNHW);
    assert_int_equal(gpu_avgpool_forward(G, d_f, d_x, cc, n, hw), 0);
    assert_int_equal(gpu_avgpool_backward(G, d_dx, d_df, cc, n, hw), 0);
    check_close("avgpool forward", d_f, f, (size_t)n * cc);
    check_close("avgpool backward", d_dx, dx, (size_t)cc * n * hw);
    free(in); free(dout); free(out); free(din); free(am); free(am_gpu); free(x); free(f); free(df); free(dx);
}

static void linear_case(int n, int in_dim, int out_dim, int bias)
{
    float *x = hrand((size_t)n * in_dim, 1), *wt = hrand((size_t)out_dim * in_dim, 0.3f), *b = hrand(out_dim, 1);
    float *dy = hrand((size_t)n * out_dim, 1), *dw = hrand((size_t)out_dim * in_dim, 0.1f), *db = hrand(out_dim, 0.1f);
    float *y = hzero((size_t)n * out_dim), *dx = hzero((size_t)n * in_dim);
    float *d_x = dcopy(x, (size_t)n * in_dim), *d_w = dcopy(wt, (size_t)out_dim * in_dim), *d_b = dcopy(b, out_dim);
    float *d_dy = dcopy(dy, (size_t)n * out_dim), *d_dw = dcopy(dw, (size_t)out_dim * in_dim), *d_db = dcopy(db, out_dim);
    float *d_y = gpu_alloc(G, (size_t)n * out_dim), *d_dx = gpu_alloc(G, (size_t)n * in_dim);
    assert_non_null(d_dx);
    nn_linear_forward(y, x, wt, bias ? b : NULL, n, in_dim, out_dim);
    nn_linear_backward(dx, dw, bias ? db : NULL, dy, x, wt, n, in_dim, out_dim);
    assert_int_equal(gpu_linear_forward(G, d_y, d_x, d_w, bias ? d_b : NULL, n, in_dim, out_dim), 0);
    assert_int_equal(gpu_linear_backward(G, d_dx, d_dw, bias ? d_db : NULL, d_dy, d_x, d_w, n, in_dim, out_dim), 0);
    check_close("linear forward", d_y, y, (size_t)n * out_dim);
    check_close("linear dinput", d_dx, dx, (size_t)n * in_dim);
    check_close("linear dweight (accumulated)", d_dw, dw, (size_t)out_dim * in_dim);
    check_close("linear dbias (accumulated)", d_db, db, out_dim);
    free(x); free(wt); free(b); free(dy); free(dw); free(db); free(y); free(dx);
}

static void test_linear(void **state)
{
    (void)state;
    NEED_GPU();
    linear_case(6, 64, 10, 0);   /* the classifier: no bias */
    linear_case(24, 64, 64, 1);  /* the contrastor's layers */
    linear_case(5, 33, 17, 1);   /* odd sizes */
}

static void test_sgd(void **state)
{
    (void)state;
    NEED_GPU();
    size_t n = 4097;
    for (int nesterov = 0; nesterov <= 1; nesterov++) {
        float *p = hrand(n, 1), *buf = hzero(n), *g = hrand(n, 1);
        float *d_p = dcopy(p, n), *d_buf = dcopy(buf, n), *d_g = dcopy(g, n);
        sgd_config c = {.momentum = 0.9, .weight_decay = 1e-4, .nesterov = nesterov};
        for (int step = 0; step < 3; step++) {
            sgd_step(p, buf, g, n, 0.05, &c);
            assert_int_equal(gpu_sgd_step(G, d_p, d_buf, d_g, n, 0.05f, 0.9f, 1e-4f, nesterov), 0);
        }
        check_close("sgd params", d_p, p, n);
        check_close("sgd momentum", d_buf, buf, n);
        free(p); free(buf); free(g);
    }
}

/* ---- whole backbones: gpu_model against model.c on the same weights and images ---- */

static void model_case(const char *arch, int size, int small_stem, int n)
{
    model_config cfg = {.in_channels = 3, .image_size = size, .small_stem = small_stem, .num_classes = 10,
                        .max_batch = n};
    snprintf(cfg.arch, sizeof cfg.arch, "%s", arch);
    model *m = NULL;
    char err[256];
    if (model_new(&m, &cfg, err, sizeof err)) fail_msg("model_new: %s", err);
    rng_t r;
    rng_seed(&r, 5);
    model_init(m, &r);
    size_t img_len = (size_t)n * 3 * size * size, d = (size_t)model_feature_dim(m), np = model_num_params(m);
    float *img = hrand(img_len, 1), *dfeat = hrand(n * d, 0.1f), *feat = hzero(n * d), *ev = hzero(n * d);
    gpu_ctx *g = NULL;
    gpu_model *gm = NULL;
    if (gpu_ctx_new(&g, 0, 0, err, sizeof err) || gpu_model_new(&gm, g, m, err, sizeof err))
        fail_msg("%s: CUDA set-up: %s", arch, err);
    /* the device first (it starts from the host's weights and stats), then the host on the same state */
    if (gpu_model_zero_grad(gm) || gpu_model_forward(gm, img, n, 1, feat) || gpu_model_backward(gm, dfeat, n))
        fail_msg("%s: %s", arch, gpu_error(g));
    model_zero_grad(m);
    const float *h = model_forward(m, img, n, 1);
    assert_non_null(h);
    assert_int_equal(model_backward(m, dfeat, n), 0);
    char what[96];
    snprintf(what, sizeof what, "%s features (train)", arch);
    check_close(what, gpu_model_features(gm), h, n * d);
    /* the whole gradient: no heads were touched, so the device's is the host's layout */
    float *host_grads = hzero(np);
    memcpy(host_grads, model_grads(m), sizeof(float) * np);
    if (gpu_model_sync_grads(gm)) fail_msg("%s", gpu_error(g));
    float *dev_grads = hzero(np);
    memcpy(dev_grads, model_grads(m), sizeof(float) * np);
    for (int i = 0; i < model_num_tensors(m); i++) {
        model_tensor *t = model_tensor_at(m, i);
        if (t->kind != MODEL_PARAM) continue;
        size_t off = (size_t)(t->grad - model_grads(m));
        double diff = 0, mag = 0;
        for (size_t j = 0; j < t->numel; j++) {
            double e = fabs((double)dev_grads[off + j] - host_grads[off + j]);
            if (!(e <= diff)) diff = e;
            if (fabs(host_grads[off + j]) > mag) mag = fabs(host_grads[off + j]);
        }
        if (!(diff <= TOL * (mag > 0 ? mag : 1)))
            fail_msg("%s grad %s: max diff %.3g, scale %.3g", arch, t->name, diff, mag);
    }
    /* running statistics after one train step, then an eval forward on them */
    float *stats = hzero(1);
    for (int i = 0; i < model_num_tensors(m); i++) {
        model_tensor *t = model_tensor_at(m, i);
        if (t->kind != MODEL_BUFFER) continue;
        free(stats);
        stats = hzero(t->numel);
        memcpy(stats, t->data, sizeof(float) * t->numel);
    }
    const float *he = model_forward(m, img, n, 0);
    assert_non_null(he);
    memcpy(ev, he, sizeof(float) * n * d);
    if (gpu_model_forward(gm, img, n, 0, NULL)) fail_msg("%s", gpu_error(g));
    snprintf(what, sizeof what, "%s features (eval, running stats)", arch);
    check_close(what, gpu_model_features(gm), ev, n * d);
    /* the pull brings the device's running stats to the host: the last one must not move */
    if (gpu_model_pull(gm)) fail_msg("%s", gpu_error(g));
    for (int i = model_num_tensors(m) - 1; i >= 0; i--) {
        model_tensor *t = model_tensor_at(m, i);
        if (t->kind != MODEL_BUFFER) continue;
        double diff = 0;
        for (size_t j = 0; j < t->numel; j++) diff = fmax(diff, fabs((double)t->data[j] - stats[j]));
        if (!(diff <= 1e-4)) fail_msg("%s %s: device running stats off by %.3g", arch, t->name, diff);
        break;
    }
    gpu_model_free(gm);
    gpu_ctx_free(g);
    model_free(m);
    free(img); free(dfeat); free(feat); free(ev); free(host_grads); free(dev_grads); free(stats);
}

static void test_models(void **state)
{
    (void)state;
    NEED_GPU();
    model_case("resnet20", 16, 1, 4);  /* CIFAR net */
    model_case("resnet18", 32, 0, 3);  /* torchvision stem: 7x7/2 conv and the max pool */
    model_case("resnet50", 32, 1, 2);  /* bottlenecks */
}

int main(void)
{
    setenv("CT_CONV_WINOGRAD", "0", 1); /* the CPU side as the reference: direct convolution */
    rng_seed(&R, 16);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv),   cmocka_unit_test(test_conv_bf16), cmocka_unit_test(test_bn),   cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_pool),   cmocka_unit_test(test_linear), cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_models),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
