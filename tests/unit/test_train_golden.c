/* tests/unit/test_train_golden.c — three whole Core-tuning training steps (paper variant) of resnet20
 * on 1x28x28 against PyTorch (tests/golden/gen_train.py): the backbone features, each loss term and
 * every parameter gradient of every step, and every weight and running statistic after
 * three Nesterov-SGD steps. The step is composed exactly as trainer/train.c's train_step composes it
 * (forward, draws, loss forward/backward, backward, sgd_step), with the fixture's draws.
 * Tolerances against the float64 reference: features and terms 1e-4 relative; gradients 2e-4 of the
 * tensor's scale; weights after three steps 1e-4; plus F32DEV_FACTOR times the error of PyTorch's own
 * float32 run on the same quantity (this net's gradients become ill-conditioned after a step or two,
 * see tests/golden/gen_train.py), so "as close as PyTorch's float32" is the bar.
 * The same three steps again with the backbone and SGD on a CUDA device (trainer/gpu/gpu_model.h, fp32,
 * TF32 off; the loss on the host, as its [B x d] features are small), skipped with the reason when
 * this build or machine has no CUDA device. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include "tests/unit/golden.h"
#include "trainer/coreloss.h"
#include "trainer/sgd.h"
#include "trainer/gpu/gpu_model.h"

enum { N = 16, C = 10, CD = 32, D = 64, STEPS = 3, SAMPLES = 48 };

/* PyTorch's own float32 run strays from the float64 reference by `key.f32dev` (largest absolute
 * difference): we may stray by F32DEV_FACTOR times that on top of the base tolerance. */
#define F32DEV_FACTOR 4.0

/* Compare got[n] with the fixture's `key` (n floats). Returns the number of mismatches. */
static size_t check(const st_file *f, const char *key, const float *got, size_t n, double rtol, double atol)
{
    char devkey[200];
    snprintf(devkey, sizeof devkey, "%s.f32dev", key);
    const float *want = golden_f32(f, key, n), *dev = golden_f32(f, devkey, 1);
    if (!want || !dev) return 1;
    return golden_mismatches(key, got, want, n, rtol, atol, F32DEV_FACTOR * dev[0]);
}

/* The fixture keeps big tensors as (sum, abs-sum, L2) + evenly spaced samples. */
static size_t check_summary(const st_file *f, const char *prefix, const char *name, const float *x, size_t n,
                            double rtol, double atol)
{
    double s = 0, a = 0, q = 0;
    for (size_t i = 0; i < n; i++) s += x[i], a += fabs(x[i]), q += (double)x[i] * x[i];
    size_t k = n < SAMPLES ? n : SAMPLES;
    float stats[3] = {(float)s, (float)a, (float)sqrt(q)}, samples[SAMPLES];
    for (size_t j = 0; j < k; j++) samples[j] = x[(j * n) / k];
    char key[200];
    snprintf(key, sizeof key, "%s.%s.stats", prefix, name);
    size_t bad = check(f, key, stats, 3, rtol, atol);
    snprintf(key, sizeof key, "%s.%s.samples", prefix, name);
    return bad + check(f, key, samples, k, rtol, atol);
}

static void three_steps(int on_gpu)
{
    char err[256];
    st_file *f = NULL;
    assert_int_equal(st_open(&f, FIXTURE_DIR "/train_golden.safetensors", err, sizeof err), 0);

    model_config mc = {.arch = "resnet20", .in_channels = 1, .image_size = 28, .num_classes = C,
                       .contrast_dim = CD, .max_batch = N};
    model *m = NULL;
    assert_int_equal(model_new(&m, &mc, err, sizeof err), 0);
    golden_fill(m);
    for (int i = 0; i < model_num_tensors(m); i++) { /* PyTorch's fresh running stats: mean 0, var 1 */
        model_tensor *t = model_tensor_at(m, i);
        if (t->kind == MODEL_BUFFER && strstr(t->name, "running_var"))
            for (size_t j = 0; j < t->numel; j++) t->data[j] = 1.0f;
    }
    static const char *const heads[] = {"fc.weight", "contrastor.0.weight", "contrastor.0.bias",
                                        "contrastor.2.weight", "contrastor.2.bias"};
    for (int i = 0; i < 5; i++) {
        model_tensor *t = model_find(m, heads[i]);
        char key[96];
        snprintf(key, sizeof key, "init.%s", heads[i]);
        const float *v = golden_f32(f, key, t->numel);
        assert_non_null(v);
        memcpy(t->data, v, sizeof(float) * t->numel);
    }
    coreloss_config lc = {.method = CORELOSS_CORE, .variant = CORELOSS_PAPER, .num_classes = C, .feat_dim = D,
                          .contrast_dim = CD, .max_batch = N, .eta = 0.1f, .temperature = 0.07f,
                          .mixup_alpha = 1.0f};
    coreloss *loss = NULL;
    assert_int_equal(coreloss_new(&loss, &lc, err, sizeof err), 0);
    model_tensor *fc = model_find(m, "fc.weight"), *c0w = model_find(m, "contrastor.0.weight"),
                 *c0b = model_find(m, "contrastor.0.bias"), *c2w = model_find(m, "contrastor.2.weight"),
                 *c2b = model_find(m, "contrastor.2.bias");
    coreloss_weights w = {fc->data, c0w->data, c0b->data, c2w->data, c2b->data};
    coreloss_grads g = {fc->grad, c0w->grad, c0b->grad, c2w->grad, c2b->grad};
    const float *flabels = golden_f32(f, "labels", N), *lrs = golden_f32(f, "lrs", STEPS);
    assert_non_null(flabels);
    assert_non_null(lrs);
    int labels[N];
    for (int i = 0; i < N; i++) labels[i] = (int)flabels[i];
    float *dh = calloc(N * D, sizeof(float)), *mom = calloc(model_num_params(m), sizeof(float));
    sgd_config sc = {.momentum = 0.9, .weight_decay = 1e-4, .nesterov = 1};
    size_t bad = 0;
    gpu_ctx *gc = NULL;
    gpu_model *gm = NULL;
    float *hbuf = calloc(N * D, sizeof(float));
    assert_non_null(hbuf);
    if (on_gpu) { /* after the weights are set: gpu_model_new copies them over */
        if (gpu_ctx_new(&gc, 0, 0, err, sizeof err) || gpu_model_new(&gm, gc, m, err, sizeof err))
            fail_msg("CUDA set-up: %s", err);
    }

    for (int s = 0; s < STEPS; s++) {
        char key[64];
        snprintf(key, sizeof key, "step%d.images", s);
        const float *images = golden_f32(f, key, N * 28 * 28);
        assert_non_null(images);
        model_zero_grad(m);
        const float *h = hbuf;
        if (gm) {
            if (gpu_model_zero_grad(gm) || gpu_model_forward(gm, images, N, 1, hbuf)) fail_msg("%s", gpu_error(gc));
        } else {
            h = model_forward(m, images, N, 1);
        }
        assert_non_null(h);
        coreloss_draws *dr = coreloss_draws_ref(loss);
        const float *partner, *lam_neg, *lam_pos;
        snprintf(key, sizeof key, "step%d.partner", s);
        assert_non_null(partner = golden_f32(f, key, N));
        snprintf(key, sizeof key, "step%d.lam_neg", s);
        assert_non_null(lam_neg = golden_f32(f, key, N));
        snprintf(key, sizeof key, "step%d.lam_pos", s);
        assert_non_null(lam_pos = golden_f32(f, key, N));
        for (int i = 0; i < N; i++) {
            dr->partner[i] = (int)partner[i];
            dr->lam_neg[i] = lam_neg[i];
            dr->lam_pos[i] = lam_pos[i];
        }
        coreloss_terms t;
        assert_int_equal(coreloss_forward_backward(loss, dh, &g, &t, h, labels, N, &w, 1.0f), 0);
        if (gm) {
            if (gpu_model_backward(gm, dh, N) || gpu_model_sync_grads(gm)) fail_msg("%s", gpu_error(gc));
        } else {
            assert_int_equal(model_backward(m, dh, N), 0);
        }
        snprintf(key, sizeof key, "step%d.terms", s);
        float got_terms[3] = {(float)t.total, (float)t.ce, (float)t.contrastive};
        bad += check(f, key, got_terms, 3, 1e-4, 1e-5);
        snprintf(key, sizeof key, "step%d.h", s);
        bad += check(f, key, h, N * D, 1e-4, 1e-5);
        snprintf(key, sizeof key, "step%d.dh", s);
        bad += check(f, key, dh, N * D, 1e-4, 1e-5);
        snprintf(key, sizeof key, "grad%d", s);
        for (int i = 0; i < model_num_tensors(m); i++) {
            model_tensor *mt = model_tensor_at(m, i);
            if (mt->kind == MODEL_PARAM) bad += check_summary(f, key, mt->name, mt->grad, mt->numel, 2e-4, 2e-4);
        }
        if (gm) {
            if (gpu_model_sgd(gm, lrs[s], (float)sc.momentum, (float)sc.weight_decay, sc.nesterov) || gpu_model_pull(gm))
                fail_msg("%s", gpu_error(gc));
        } else {
            sgd_step(model_params(m), mom, model_grads(m), model_num_params(m), lrs[s], &sc);
        }
    }
    for (int i = 0; i < model_num_tensors(m); i++) {
        model_tensor *mt = model_tensor_at(m, i);
        if (mt->kind == MODEL_PARAM) {
            bad += check_summary(f, "final", mt->name, mt->data, mt->numel, 1e-4, 1e-4);
        } else if (mt->kind == MODEL_BUFFER) {
            char key[96];
            snprintf(key, sizeof key, "final.%s", mt->name);
            bad += check(f, key, mt->data, mt->numel, 1e-4, 1e-5);
        }
    }
    assert_int_equal(bad, 0);
    gpu_model_free(gm);
    gpu_ctx_free(gc);
    free(hbuf);
    free(dh);
    free(mom);
    coreloss_free(loss);
    model_free(m);
    st_close(f);
}

/* PyTorch's SGD on a hand-checked case, and the learning-rate schedule. */
static void test_three_steps_match_pytorch(void **state)
{
    (void)state;
    three_steps(0);
}

static void test_three_steps_on_cuda_match_pytorch(void **state)
{
    (void)state;
    char why[256];
    if (gpu_device_count(why, sizeof why) == 0) {
        print_message("[  SKIP    ] %s\n", why);
        skip();
    }
    three_steps(1);
}

static void test_sgd_semantics(void **state)
{
    (void)state;
    float p[2] = {1.0f, -2.0f}, buf[2] = {0, 0};
    const float g[2] = {0.5f, 0.25f};
    sgd_config c = {.momentum = 0.9, .weight_decay = 0.1, .nesterov = 1};
    sgd_step(p, buf, g, 2, 0.1, &c);
    /* g' = g + 0.1 p = (0.6, 0.05); buf = g'; nesterov g'' = g' + 0.9 buf = (1.14, 0.095) */
    assert_float_equal(buf[0], 0.6f, 1e-6);
    assert_float_equal(p[0], 1.0f - 0.114f, 1e-6);
    assert_float_equal(p[1], -2.0f - 0.0095f, 1e-6);
    sgd_step(p, buf, g, 2, 0.1, &c);
    /* g' = 0.5 + 0.1*0.886 = 0.5886; buf = 0.9*0.6 + 0.5886 = 1.1286; g'' = 0.5886 + 0.9*1.1286 */
    assert_float_equal(buf[0], 1.1286f, 1e-5);
    assert_float_equal(p[0], 0.886f - 0.1f * (0.5886f + 0.9f * 1.1286f), 1e-5);
    c.nesterov = 0;
    c.momentum = 0;
    float q = 1.0f, b0 = 0, g0 = 1.0f;
    sgd_step(&q, &b0, &g0, 1, 0.5, &c); /* plain: q -= 0.5 (1 + 0.1) */
    assert_float_equal(q, 0.45f, 1e-6);
    assert_float_equal(b0, 0.0f, 0);
    assert_float_equal(sgd_lr_at(0.1, 0, 100, 0, 1), 0.1, 1e-12);
    assert_float_equal(sgd_lr_at(0.1, 50, 100, 0, 1), 0.05, 1e-12);
    assert_float_equal(sgd_lr_at(0.1, 99, 100, 0, 0), 0.1, 1e-12);
    assert_float_equal(sgd_lr_at(0.1, 0, 100, 10, 1), 0.01, 1e-12);  /* warm-up from lr/warmup */
    assert_float_equal(sgd_lr_at(0.1, 10, 100, 10, 1), 0.1, 1e-12);  /* then cosine from the top */
}

int main(void)
{
    /* "As close as PyTorch's float32" is a bar for direct convolution; Winograd (the default on
     * AVX-512 CPUs) rounds more and is checked against PyTorch in test_model's *_winograd cases. */
    setenv("CT_CONV_WINOGRAD", "0", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_steps_match_pytorch),
        cmocka_unit_test(test_three_steps_on_cuda_match_pytorch),
        cmocka_unit_test(test_sgd_semantics),
    };
    return cmocka_run_group_tests_name("train_golden", tests, NULL, NULL);
}
