/* tests/unit/test_coreloss.c — checks of trainer/coreloss.c: finite differences of the total loss
 * w.r.t. h and every head weight (paper, reference, CE; fixed draws), PyTorch golden values
 * (tests/fixtures/coreloss_*.safetensors from tests/golden/gen_coreloss.py), hard-pair mining edge
 * cases, the documented draw order, eval, and error returns. Single-threaded cmocka binary; fixtures
 * are read from $CT_FIXTURES or tests/fixtures (run from the repository root).
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

#include "trainer/coreloss.h"
#include "trainer/rng.h"
#include "trainer/safetensors.h"
#include "tests/unit/fdcheck.h"

/* ------------------------------------------------------------------------------------------ */
/* finite differences                                                                          */

enum { FN = 10, FD_ = 12, FC = 3, FCD = 6 };
/* class 2 has one sample (paper: p(i) = i for it) */
static const int fd_labels[FN] = { 0, 1, 0, 1, 0, 1, 2, 0, 1, 0 };

typedef struct fdprob {
    coreloss *c;
    float h[FN * FD_], h_orig[FN * FD_];
    float fc[FC * FD_], c0w[FD_ * FD_], c0b[FD_], c2w[FCD * FD_], c2b[FCD];
    int hold_orig; /* reference variant: original rows detached = read from the fixed copy */
} fdprob;

static double fd_loss(void *ctx)
{
    fdprob *p = ctx;
    coreloss_terms t;
    coreloss_weights w = { p->fc, p->c0w, p->c0b, p->c2w, p->c2b };
    int rc = coreloss__forward_backward_split(p->c, NULL, NULL, &t, p->h, p->hold_orig ? p->h_orig : p->h,
                                              fd_labels, FN, &w, 1.0f);
    assert_int_equal(rc, 0);
    return t.total;
}

/* Compares every coordinate of an analytic gradient with finite differences (fd_richardson). Tolerance:
 * |fd - an| <= 2e-3 * max|an| + 5e-3 * |an|  (stated once for all tensors). */
static double check_tensor(fdprob *p, const char *name, float *x, const float *an, int len, float step)
{
    return fd_check_tensor(fd_loss, p, name, x, an, len, step, 2e-3, 5e-3);
}

static void fd_case(enum coreloss_method method, enum coreloss_variant variant)
{
    /* eta 5 for the reference: its contrastive term is divided by 3n, so its head gradients would
     * otherwise sit near the float rounding floor of the loss */
    coreloss_config cfg = { method, variant, FC, FD_, FCD, FN, variant == CORELOSS_REFERENCE ? 5.0f : 0.5f,
                            0.2f, 1.0f };
    fdprob *p = calloc(1, sizeof *p);
    assert_non_null(p);
    assert_int_equal(coreloss_new(&p->c, &cfg, NULL, 0), 0);
    rng_t r;
    rng_seed(&r, 1234 + 10 * (uint64_t)method + (uint64_t)variant);
    fill_uniform(&r, p->h, FN * FD_, 1.0f);
    if (variant == CORELOSS_REFERENCE)
        for (int i = 0; i < FN * FD_; i++) p->h[i] = fabsf(p->h[i]); /* post-ReLU-like */
    memcpy(p->h_orig, p->h, sizeof p->h);
    p->hold_orig = method == CORELOSS_CORE && variant == CORELOSS_REFERENCE;
    fill_uniform(&r, p->fc, FC * FD_, 0.5f);
    fill_uniform(&r, p->c0w, FD_ * FD_, 0.15f);
    fill_uniform(&r, p->c2w, FCD * FD_, 0.5f);
    fill_uniform(&r, p->c2b, FCD, 0.2f);
    /* ReLU kinks would spoil finite differences: half the hidden units always on (bias +1.5),
     * half always off (bias -1.5, so their zero gradient is checked too). Every extended-batch row
     * is a convex mix of rows of h, |h| <= 1, so |x c0w_j^T| <= sum |c0w_j|, kept below 1.2 (a
     * margin of 0.3 over the largest finite-difference step of 0.05). */
    for (int j = 0; j < FD_; j++) {
        p->c0b[j] = (j % 2) ? -1.5f : 1.5f;
        double s = 0.0;
        for (int k = 0; k < FD_; k++) s += fabs(p->c0w[j * FD_ + k]);
        assert_true(s < 1.2);
    }
    /* Cancel the constant part the +1.5 biases add to a2, so z varies across rows as much as the
     * features do and the contrastor gradients stand well above the loss's rounding floor. */
    for (int i = 0; i < FCD; i++)
        for (int j = 0; j < FD_; j += 2) p->c2b[i] -= 1.5f * p->c2w[i * FD_ + j];
    assert_int_equal(coreloss_sample(p->c, &r, fd_labels, FN), 0);

    float dh[FN * FD_];
    static float gfc[FC * FD_], gc0w[FD_ * FD_], gc0b[FD_], gc2w[FCD * FD_], gc2b[FCD];
    memset(gfc, 0, sizeof gfc);
    memset(gc0w, 0, sizeof gc0w);
    memset(gc0b, 0, sizeof gc0b);
    memset(gc2w, 0, sizeof gc2w);
    memset(gc2b, 0, sizeof gc2b);
    coreloss_grads g = { gfc, gc0w, gc0b, gc2w, gc2b };
    coreloss_weights w = { p->fc, p->c0w, p->c0b, p->c2w, p->c2b };
    coreloss_terms t;
    assert_int_equal(coreloss_forward_backward(p->c, dh, &g, &t, p->h, fd_labels, FN, &w, 1.0f), 0);
    assert_true(isfinite(t.total) && t.ce > 0.0);
    assert_true(fabs(t.total - (t.ce + cfg.eta * t.contrastive)) <= 1e-12 * fabs(t.total));

    double worst = 0.0;
    worst = fmax(worst, check_tensor(p, "dh", p->h, dh, FN * FD_, 1e-2f));
    worst = fmax(worst, check_tensor(p, "dfc", p->fc, gfc, FC * FD_, 5e-2f));
    if (method == CORELOSS_CORE) {
        assert_true(t.contrastive > 0.0);
        worst = fmax(worst, check_tensor(p, "dc0w", p->c0w, gc0w, FD_ * FD_, 5e-2f));
        worst = fmax(worst, check_tensor(p, "dc0b", p->c0b, gc0b, FD_, 5e-2f));
        worst = fmax(worst, check_tensor(p, "dc2w", p->c2w, gc2w, FCD * FD_, 5e-2f));
        worst = fmax(worst, check_tensor(p, "dc2b", p->c2b, gc2b, FCD, 5e-2f));
        for (int j = 1; j < FD_; j += 2) assert_true(gc0b[j] == 0.0f); /* dead units */
    } else {
        for (int i = 0; i < FD_ * FD_; i++) assert_true(gc0w[i] == 0.0f); /* CE: no contrastor */
    }
    print_message("fd %s/%s: worst err/tol %.3f\n", method == CORELOSS_CE ? "ce" : "core",
                  variant == CORELOSS_PAPER ? "paper" : "reference", worst);
    coreloss_free(p->c);
    free(p);
}

static void test_fd_paper(void **state) { (void)state; fd_case(CORELOSS_CORE, CORELOSS_PAPER); }
static void test_fd_reference(void **state) { (void)state; fd_case(CORELOSS_CORE, CORELOSS_REFERENCE); }
static void test_fd_ce(void **state) { (void)state; fd_case(CORELOSS_CE, CORELOSS_PAPER); }

/* ------------------------------------------------------------------------------------------ */
/* PyTorch golden values                                                                       */

typedef struct golden {
    st_file *f;
    int n, d, C, cd;
    float eta, tau;
} golden;

static int golden_open(golden *gd, const char *variant)
{
    char path[512], err[256];
    const char *dir = getenv("CT_FIXTURES");
    snprintf(path, sizeof path, "%s/coreloss_%s.safetensors", dir ? dir : "tests/fixtures", variant);
    if (st_open(&gd->f, path, err, sizeof err) != 0) {
        print_error("%s\n", err);
        return -1;
    }
    const st_tensor *h = st_find(gd->f, "h"), *fc = st_find(gd->f, "fc"), *c2w = st_find(gd->f, "c2w");
    if (!h || !fc || !c2w || h->ndim != 2 || fc->ndim != 2 || c2w->ndim != 2) return -1;
    gd->n = (int)h->shape[0];
    gd->d = (int)h->shape[1];
    gd->C = (int)fc->shape[0];
    gd->cd = (int)c2w->shape[0];
    const char *eta = st_metadata(gd->f, "eta"), *tau = st_metadata(gd->f, "temperature");
    if (!eta || !tau) return -1;
    gd->eta = strtof(eta, NULL);
    gd->tau = strtof(tau, NULL);
    return 0;
}

static float *gload(const golden *gd, const char *name, size_t numel)
{
    const st_tensor *t = st_find(gd->f, name);
    assert_non_null(t);
    assert_int_equal(st_numel(t), numel);
    float *x = malloc(numel * sizeof(float));
    assert_non_null(x);
    st_to_f32(x, t);
    return x;
}

static int *gload_i(const golden *gd, const char *name, size_t numel)
{
    float *f = gload(gd, name, numel);
    int *x = malloc(numel * sizeof(int));
    assert_non_null(x);
    for (size_t i = 0; i < numel; i++) x[i] = (int)f[i];
    free(f);
    return x;
}

/* |c - g| <= atol_rel * max|g| + rtol * |g|  with atol_rel 1e-4, rtol 1e-4 */
static double compare(const char *name, const float *c, const float *g, size_t len)
{
    return fd_compare_torch(name, c, g, len, 1e-4, 1e-4, 1e-12);
}

static void golden_case(const char *variant_name)
{
    golden gd;
    assert_int_equal(golden_open(&gd, variant_name), 0);
    int ce_only = strcmp(variant_name, "ce") == 0;
    int n = gd.n, d = gd.d, C = gd.C, cd = gd.cd;
    coreloss_config cfg = { ce_only ? CORELOSS_CE : CORELOSS_CORE,
                            strcmp(variant_name, "reference") == 0 ? CORELOSS_REFERENCE : CORELOSS_PAPER,
                            C, d, cd, n + 3, gd.eta, gd.tau, 1.0f };
    coreloss *c;
    char err[128];
    assert_int_equal(coreloss_new(&c, &cfg, err, sizeof err), 0);
    float *h = gload(&gd, "h", (size_t)n * d);
    int *labels = gload_i(&gd, "labels", n);
    float *fc = gload(&gd, "fc", (size_t)C * d), *c0w = gload(&gd, "c0w", (size_t)d * d);
    float *c0b = gload(&gd, "c0b", d), *c2w = gload(&gd, "c2w", (size_t)cd * d), *c2b = gload(&gd, "c2b", cd);
    float *terms = gload(&gd, "terms", 3);
    float *gdh = gload(&gd, "dh", (size_t)n * d), *gfc = gload(&gd, "dfc", (size_t)C * d);
    float *gc0w = gload(&gd, "dc0w", (size_t)d * d), *gc0b = gload(&gd, "dc0b", d);
    float *gc2w = gload(&gd, "dc2w", (size_t)cd * d), *gc2b = gload(&gd, "dc2b", cd);
    if (!ce_only) {
        coreloss_draws *dr = coreloss_draws_ref(c);
        float *ln = gload(&gd, "lam_neg", n), *lp = gload(&gd, "lam_pos", n);
        int *pt = gload_i(&gd, "partner", n);
        memcpy(dr->lam_neg, ln, n * sizeof(float));
        memcpy(dr->lam_pos, lp, n * sizeof(float));
        memcpy(dr->partner, pt, n * sizeof(int));
        free(ln);
        free(lp);
        free(pt);
        /* the mined pairs must be torch's */
        int *ghp = gload_i(&gd, "hard_pos", n), *ghq = gload_i(&gd, "hard_neg", n);
        int hp[64], hq[64];
        assert_true(n <= 64);
        assert_int_equal(coreloss_mine(c, hp, hq, h, labels, n), 0);
        for (int i = 0; i < n; i++) {
            assert_int_equal(hp[i], ghp[i]);
            assert_int_equal(hq[i], ghq[i]);
        }
        free(ghp);
        free(ghq);
    }

    /* Accumulation and scaling: grads start at 0.25, grad_scale 0.5 -> 0.25 + 0.5 * torch. */
    size_t sz[5] = { (size_t)C * d, (size_t)d * d, (size_t)d, (size_t)cd * d, (size_t)cd };
    float *acc[5];
    for (int k = 0; k < 5; k++) {
        acc[k] = malloc(sz[k] * sizeof(float));
        assert_non_null(acc[k]);
        for (size_t i = 0; i < sz[k]; i++) acc[k][i] = 0.25f;
    }
    float *dh = malloc((size_t)n * d * sizeof(float));
    assert_non_null(dh);
    coreloss_grads g = { acc[0], acc[1], acc[2], acc[3], acc[4] };
    coreloss_weights w = { fc, c0w, c0b, c2w, c2b };
    coreloss_terms t;
    assert_int_equal(coreloss_forward_backward(c, dh, &g, &t, h, labels, n, &w, 0.5f), 0);

    /* loss terms: 1e-5 relative */
    assert_true(fabs(t.total - terms[0]) <= 1e-5 * fabs(terms[0]));
    assert_true(fabs(t.ce - terms[1]) <= 1e-5 * fabs(terms[1]));
    assert_true(fabs(t.contrastive - terms[2]) <= 1e-5 * fabs(terms[2]) + 1e-7);

    const float *want[6] = { gdh, gfc, gc0w, gc0b, gc2w, gc2b };
    const char *names[6] = { "dh", "dfc", "dc0w", "dc0b", "dc2w", "dc2b" };
    double worst = 0.0;
    for (size_t i = 0; i < (size_t)n * d; i++) dh[i] *= 2.0f; /* undo grad_scale (exact) */
    worst = fmax(worst, compare("dh", dh, gdh, (size_t)n * d));
    for (int k = 0; k < 5; k++) {
        if (ce_only && k > 0) { /* CE: contrastor grads untouched */
            for (size_t i = 0; i < sz[k]; i++) assert_true(acc[k][i] == 0.25f);
            continue;
        }
        for (size_t i = 0; i < sz[k]; i++) acc[k][i] = (acc[k][i] - 0.25f) * 2.0f;
        worst = fmax(worst, compare(names[k + 1], acc[k], want[k + 1], sz[k]));
    }
    print_message("golden %s: total %.6f ce %.6f con %.6f, worst err/tol %.3f\n", variant_name, t.total,
                  t.ce, t.contrastive, worst);

    if (ce_only) { /* eval on the same batch, chunked (max_batch 4 < n) */
        coreloss_config ecfg = cfg;
        ecfg.max_batch = 4;
        coreloss *e;
        assert_int_equal(coreloss_new(&e, &ecfg, NULL, 0), 0);
        float *ev = gload(&gd, "eval", 1);
        int *evc = gload_i(&gd, "eval_correct", 1);
        double sum;
        int correct;
        assert_int_equal(coreloss_eval(e, &sum, &correct, h, labels, n, fc), 0);
        assert_true(fabs(sum - ev[0]) <= 1e-5 * fabs(ev[0]));
        assert_int_equal(correct, evc[0]);
        free(ev);
        free(evc);
        coreloss_free(e);
    }
    for (int k = 0; k < 5; k++) free(acc[k]);
    for (int k = 0; k < 6; k++) free((void *)want[k]);
    free(dh);
    free(h);
    free(labels);
    free(fc);
    free(c0w);
    free(c0b);
    free(c2w);
    free(c2b);
    free(terms);
    st_close(gd.f);
    coreloss_free(c);
}

static void test_golden_paper(void **state) { (void)state; golden_case("paper"); }
static void test_golden_reference(void **state) { (void)state; golden_case("reference"); }
static void test_golden_ce(void **state) { (void)state; golden_case("ce"); }

/* ------------------------------------------------------------------------------------------ */
/* mining, sampling, edge cases                                                                */

static coreloss *make(enum coreloss_method m, enum coreloss_variant v, int C, int d, int mb)
{
    coreloss_config cfg = { m, v, C, d, 4, mb, 0.1f, 0.07f, 1.0f };
    coreloss *c = NULL;
    assert_int_equal(coreloss_new(&c, &cfg, NULL, 0), 0);
    return c;
}

static void test_mine_paper_edges(void **state)
{
    (void)state;
    coreloss *c = make(CORELOSS_CORE, CORELOSS_PAPER, 3, 2, 8);
    int hp[8], hq[8];
    /* 2-d features at angles; class 2 is a singleton (sample 4) */
    const float h[5 * 2] = { 1, 0,   0.8f, 0.6f,   0, 1,   0.6f, 0.8f,   -1, 0 };
    const int lab[5] = { 0, 0, 1, 0, 2 };
    assert_int_equal(coreloss_mine(c, hp, hq, h, lab, 5), 0);
    /* anchor 0 (class 0: 1, 3): lowest sim is sample 3 (0.6 < 0.8); negatives 2 (0), 4 (-1) -> 2 */
    assert_int_equal(hp[0], 3);
    assert_int_equal(hq[0], 2);
    /* anchor 4, singleton class: p = itself; highest-sim other-class sample: 2 (0) over 0 (-1),
     * 1 (-0.8), 3 (-0.6) */
    assert_int_equal(hp[4], 4);
    assert_int_equal(hq[4], 2);
    /* anchor 2 (class 1, singleton too): p = 2; most similar negative: 3 (0.8) */
    assert_int_equal(hp[2], 2);
    assert_int_equal(hq[2], 3);

    /* ties -> lowest index: identical rows 1, 2, 3 */
    const float ht[4 * 2] = { 1, 0,   0, 1,   0, 1,   0, 1 };
    const int lt[4] = { 0, 1, 1, 1 };
    const int lt2[4] = { 0, 0, 0, 0 };
    assert_int_equal(coreloss_mine(c, hp, hq, ht, lt, 4), 0);
    assert_int_equal(hp[1], 2); /* 2 and 3 tie at sim 1 */
    assert_int_equal(hp[3], 1);
    assert_int_equal(hq[0], 1); /* 1, 2, 3 tie at sim 0 */
    /* all one class: no negative anywhere */
    assert_int_equal(coreloss_mine(c, hp, hq, ht, lt2, 4), 0);
    for (int i = 0; i < 4; i++) assert_int_equal(hq[i], -1);
    assert_int_equal(hp[0], 1);  /* sims 0, 0, 0 -> lowest index */
    assert_int_equal(hp[1], 0);  /* sim 0 to sample 0 beats 1 to samples 2, 3 */
    coreloss_free(c);
}

static void test_mine_reference_quirk(void **state)
{
    (void)state;
    coreloss *c = make(CORELOSS_CORE, CORELOSS_REFERENCE, 3, 2, 8);
    int hp[8], hq[8];
    /* non-negative features; classes 0: {0, 2, 3}, 1: {1, 4} */
    const float h[5 * 2] = { 1, 0,   0, 1,   1, 1,   1, 0.2f,   0.3f, 1 };
    const int lab[5] = { 0, 1, 0, 0, 1 };
    assert_int_equal(coreloss_mine(c, hp, hq, h, lab, 5), 0);
    /* Row 0: positive row [0, 0, s02, s03, 0]: argmin = 0 (first zero) -> replaced by i = 0. */
    assert_int_equal(hp[0], 0);
    /* Row 2: [s20, 0, 0, s23, 0] with s20 > 0: argmin = 1 (a NEGATIVE sample: the quirk). */
    assert_int_equal(hp[2], 1);
    /* Row 1: [0, 0, 0, 0, s14]: argmin 0 -> replaced by i = 1 (not its real positive, 4). */
    assert_int_equal(hp[1], 1);
    /* Row 3: [s30, 0, s32, 0, 0]: argmin 1, another negative sample. */
    assert_int_equal(hp[3], 1);
    /* negatives: row 0 [0, 0, 0, 0, s04 = 0.287] -> 4; row 1 [0, 0, .707, .196, 0] -> 2 */
    assert_int_equal(hq[0], 4);
    assert_int_equal(hq[1], 2);
    /* all one class: negative row all 0 -> argmax 0 */
    const int same[5] = { 0, 0, 0, 0, 0 };
    assert_int_equal(coreloss_mine(c, hp, hq, h, same, 5), 0);
    for (int i = 0; i < 5; i++) assert_int_equal(hq[i], 0);
    coreloss_free(c);
}

/* The draw order documented in coreloss.h, replayed by hand on a fresh generator. */
static void test_sample_order(void **state)
{
    (void)state;
    const int lab[6] = { 0, 1, 0, 2, 1, 0 };
    for (int v = 0; v < 2; v++) {
        coreloss *c = make(CORELOSS_CORE, v ? CORELOSS_REFERENCE : CORELOSS_PAPER, 3, 2, 8);
        rng_t a, b;
        rng_seed(&a, 99);
        rng_seed(&b, 99);
        assert_int_equal(coreloss_sample(c, &a, lab, 6), 0);
        coreloss_draws *dr = coreloss_draws_ref(c);
        int partner[6];
        if (!v) {
            for (int i = 0; i < 6; i++) {
                int others[6], k = 0;
                for (int j = 0; j < 6; j++)
                    if (lab[j] != lab[i]) others[k++] = j;
                partner[i] = others[rng_below(&b, (uint32_t)k)];
                assert_true(lab[dr->partner[i]] != lab[i]);
            }
        } else {
            rng_permutation(&b, partner, 6);
        }
        for (int i = 0; i < 6; i++) assert_int_equal(dr->partner[i], partner[i]);
        for (int i = 0; i < 6; i++) {
            float m = (float)rng_beta(&b, 1.0, 1.0);
            assert_true(dr->lam_neg[i] == (m < 0.8f ? 0.8f : m));
        }
        for (int i = 0; i < 6; i++) {
            float l = (float)rng_beta(&b, 1.0, 1.0);
            assert_true(dr->lam_pos[i] == ((!v && l < 0.5f) ? 0.5f : l));
        }
        assert_true(a.s[0] == b.s[0] && a.s[1] == b.s[1] && a.s[2] == b.s[2] && a.s[3] == b.s[3]);
        coreloss_free(c);
    }
    /* paper, all one class: no partner, nothing drawn for it */
    coreloss *c = make(CORELOSS_CORE, CORELOSS_PAPER, 3, 2, 8);
    const int one[3] = { 1, 1, 1 };
    rng_t r;
    rng_seed(&r, 5);
    assert_int_equal(coreloss_sample(c, &r, one, 3), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(coreloss_draws_ref(c)->partner[i], -1);
    coreloss_free(c);
}

/* Paper variant, all one class: no generated rows, so L_ce is plain CE on the originals (equal to
 * CE-tuning's loss and gradient) and L_con is the focal loss among the originals. */
static void test_all_one_class(void **state)
{
    (void)state;
    enum { N = 6, D = 5, C = 3 };
    coreloss *core = make(CORELOSS_CORE, CORELOSS_PAPER, C, D, N);
    coreloss *ce = make(CORELOSS_CE, CORELOSS_PAPER, C, D, N);
    rng_t r;
    rng_seed(&r, 3);
    float h[N * D], fc[C * D], c0w[D * D], c0b[D], c2w[4 * D], c2b[4];
    fill_uniform(&r, h, N * D, 1.0f);
    fill_uniform(&r, fc, C * D, 1.0f);
    fill_uniform(&r, c0w, D * D, 1.0f);
    fill_uniform(&r, c0b, D, 0.1f);
    fill_uniform(&r, c2w, 4 * D, 1.0f);
    fill_uniform(&r, c2b, 4, 0.1f);
    const int lab[N] = { 2, 2, 2, 2, 2, 2 };
    assert_int_equal(coreloss_sample(core, &r, lab, N), 0);
    float gfc1[C * D] = { 0 }, gfc2[C * D] = { 0 };
    coreloss_grads g1 = { gfc1, NULL, NULL, NULL, NULL }, g2 = { gfc2, NULL, NULL, NULL, NULL };
    coreloss_weights w = { fc, c0w, c0b, c2w, c2b };
    coreloss_terms t1, t2;
    assert_int_equal(coreloss_forward_backward(core, NULL, &g1, &t1, h, lab, N, &w, 1.0f), 0);
    assert_int_equal(coreloss_forward_backward(ce, NULL, &g2, &t2, h, lab, N, &w, 1.0f), 0);
    assert_true(fabs(t1.ce - t2.ce) <= 1e-6 * t2.ce);
    assert_true(isfinite(t1.contrastive) && t1.contrastive > 0.0);
    for (int i = 0; i < C * D; i++) assert_true(fabsf(gfc1[i] - gfc2[i]) <= 1e-6f);

    /* one sample: no positive pair anywhere -> L_con = 0 (the script's guard), CE only */
    assert_int_equal(coreloss_sample(core, &r, lab, 1), 0);
    assert_int_equal(coreloss_forward_backward(core, NULL, NULL, &t1, h, lab, 1, &w, 1.0f), 0);
    assert_true(t1.contrastive == 0.0 && t1.total == t1.ce && t1.ce > 0.0);
    coreloss_free(core);
    coreloss_free(ce);
}

static void test_errors(void **state)
{
    (void)state;
    enum { N = 4, D = 3, C = 2 };
    coreloss *c = make(CORELOSS_CORE, CORELOSS_REFERENCE, C, D, N);
    assert_true(coreloss_memory_bytes(c) > (size_t)(3 * N) * (3 * N) * sizeof(float));
    float h[N * D] = { 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1 }, fc[C * D] = { 1, 2, 3, 4, 5, 6 };
    float c0w[D * D] = { 1, 0, 0, 0, 1, 0, 0, 0, 1 }, c0b[D] = { 0 }, c2w[4 * D] = { 1, 1, 1, 1 }, c2b[4] = { 0 };
    float gfc[C * D] = { 0 }, dh[N * D];
    coreloss_grads g = { gfc, NULL, NULL, NULL, NULL };
    coreloss_weights w = { fc, c0w, c0b, c2w, c2b };
    coreloss_terms t;
    int lab[N] = { 0, 1, 0, 1 };
    rng_t r;
    rng_seed(&r, 1);
    assert_int_equal(coreloss_sample(c, &r, lab, N), 0);
    h[5] = NAN; /* a non-finite feature: -EDOM, gradients untouched */
    assert_int_equal(coreloss_forward_backward(c, dh, &g, &t, h, lab, N, &w, 1.0f), -EDOM);
    for (int i = 0; i < C * D; i++) assert_true(gfc[i] == 0.0f);
    h[5] = 0.0f;
    assert_int_equal(coreloss_forward_backward(c, dh, &g, &t, h, lab, N, &w, 1.0f), 0);
    lab[2] = C; /* label out of range */
    assert_int_equal(coreloss_forward_backward(c, dh, &g, &t, h, lab, N, &w, 1.0f), -EINVAL);
    assert_int_equal(coreloss_sample(c, &r, lab, N), -EINVAL);
    lab[2] = 0;
    assert_int_equal(coreloss_forward_backward(c, dh, &g, &t, h, lab, N + 1, &w, 1.0f), -EINVAL);
    coreloss_draws_ref(c)->partner[0] = -1; /* reference needs a partner for every row */
    assert_int_equal(coreloss_forward_backward(c, dh, &g, &t, h, lab, N, &w, 1.0f), -EINVAL);
    coreloss_weights w2 = { fc, NULL, c0b, c2w, c2b };
    assert_int_equal(coreloss_forward_backward(c, dh, &g, &t, h, lab, N, &w2, 1.0f), -EINVAL);
    coreloss_free(c);

    coreloss_config bad = { CORELOSS_CORE, CORELOSS_PAPER, 2, 3, 4, 4, 0.1f, 0.0f, 1.0f };
    char err[128] = "";
    assert_int_equal(coreloss_new(&c, &bad, err, sizeof err), -EINVAL);
    assert_null(c);
    assert_true(strlen(err) > 0);
    coreloss_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fd_paper),
        cmocka_unit_test(test_fd_reference),
        cmocka_unit_test(test_fd_ce),
        cmocka_unit_test(test_golden_paper),
        cmocka_unit_test(test_golden_reference),
        cmocka_unit_test(test_golden_ce),
        cmocka_unit_test(test_mine_paper_edges),
        cmocka_unit_test(test_mine_reference_quirk),
        cmocka_unit_test(test_sample_order),
        cmocka_unit_test(test_all_one_class),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("coreloss", tests, NULL, NULL);
}
