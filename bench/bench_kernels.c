/* bench/bench_kernels.c — times nn_conv forward + backward on the conv shapes of resnet20
 * (1x28x28, batch 128) and of one resnet18 3x3 stage (64 ch, 32x32, batch 64).
 * Usage: bench_kernels [threads] [reps]. Sets OpenMP and OpenBLAS threads to `threads`. Each shape
 * is timed on the back end nn_conv picks and again forced through im2col + sgemm.
 * Build: make bin/bench/bench_kernels
 * A stand-alone tool run by hand (not part of the tests); prints a table, exits 1 on allocation
 * failure. bench/conv_torch.py times PyTorch on the same shapes.
 */
#define _GNU_SOURCE
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "trainer/nn.h"
#include "common/util.h"
#include "trainer/nn_int.h"
#include "trainer/rng.h"

typedef struct layer {
    const char *name;
    nn_conv c;
    int n, h, w, count; /* count: how many such convs the network has */
    int need_din;       /* the stem's input gradient is not needed */
} layer;

static const layer layers[] = {
    {"r20 stem 1->16 3x3 @28", {1, 16, 3, 1, 1}, 128, 28, 28, 1, 0},
    {"r20 16->16 3x3 @28", {16, 16, 3, 1, 1}, 128, 28, 28, 6, 1},
    {"r20 16->32 3x3 s2 @28", {16, 32, 3, 2, 1}, 128, 28, 28, 1, 1},
    {"r20 16->32 1x1 s2 @28", {16, 32, 1, 2, 0}, 128, 28, 28, 1, 1},
    {"r20 32->32 3x3 @14", {32, 32, 3, 1, 1}, 128, 14, 14, 5, 1},
    {"r20 32->64 3x3 s2 @14", {32, 64, 3, 2, 1}, 128, 14, 14, 1, 1},
    {"r20 32->64 1x1 s2 @14", {32, 64, 1, 2, 0}, 128, 14, 14, 1, 1},
    {"r20 64->64 3x3 @7", {64, 64, 3, 1, 1}, 128, 7, 7, 5, 1},
    {"r18 64->64 3x3 @32 b64", {64, 64, 3, 1, 1}, 64, 32, 32, 4, 1},
};

static float *rand_buf(size_t n, rng_t *r)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = (float)rng_normal(r) * 0.1f;
    return p;
}

static void sort(double *t, int n)
{
    for (int i = 1; i < n; i++) /* insertion: a handful of values */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
}

/* Minimum forward and backward ms over reps (the machines are shared and noisy); gemm = 1 forces
 * im2col + sgemm. */
static void time_layer(const layer *L, int reps, rng_t *rng, int gemm, double *fwd_ms, double *bwd_ms, int *dnnl)
{
    const nn_conv *c = &L->c;
    nn_conv_plan *p = NULL;
    if (nn_conv_plan_new(&p, c, L->h, L->w, &L->n, 1)) {
        fprintf(stderr, "cannot plan %s\n", L->name);
        exit(1);
    }
    nn__conv_plan_force_gemm(p, gemm);
    int oh = nn_conv_out(L->h, c->k, c->stride, c->pad), ow = nn_conv_out(L->w, c->k, c->stride, c->pad);
    size_t in_len = (size_t)c->cin * L->n * L->h * L->w, out_len = (size_t)c->cout * L->n * oh * ow;
    size_t w_len = (size_t)c->cout * c->cin * c->k * c->k, ws_len = nn_conv_plan_workspace(p);
    *dnnl = nn__conv_plan_uses_dnnl(p, L->n);
    float *in = rand_buf(in_len, rng), *din = rand_buf(in_len, rng), *out = rand_buf(out_len, rng);
    float *dout = rand_buf(out_len, rng), *wt = rand_buf(w_len, rng), *dw = rand_buf(w_len, rng);
    float *ws = rand_buf(ws_len, rng);
    double tf[64], tb[64];
    int R = reps > 64 ? 64 : reps < 1 ? 1 : reps;
    for (int r = -2; r < R; r++) { /* two warm-up rounds */
        double t0 = util_mono();
        nn_conv_forward(out, ws, in, wt, p, L->n);
        double t1 = util_mono();
        nn_conv_backward(L->need_din ? din : NULL, dw, ws, dout, in, wt, p, L->n);
        double t2 = util_mono();
        if (r >= 0) {
            tf[r] = t1 - t0;
            tb[r] = t2 - t1;
        }
    }
    sort(tf, R);
    sort(tb, R);
    *fwd_ms = tf[0] * 1e3;
    *bwd_ms = tb[0] * 1e3;
    free(in); free(din); free(out); free(dout); free(wt); free(dw); free(ws);
    nn_conv_plan_free(p);
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1, reps = argc > 2 ? atoi(argv[2]) : 10;
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    rng_t rng;
    rng_seed(&rng, 1);
    double tot[2][2] = {{0, 0}, {0, 0}}; /* [chosen, im2col][fwd, bwd] for resnet20 */
    printf("threads %d, reps %d (minimum)\n%-26s %7s %8s %8s %8s %8s %5s %7s\n", threads, reps, "layer", "backend",
           "fwd ms", "bwd ms", "f+b ms", "im2col", "count", "GFLOP/s");
    for (size_t li = 0; li < sizeof layers / sizeof layers[0]; li++) {
        const layer *L = &layers[li];
        const nn_conv *c = &L->c;
        double f, b, gf, gb;
        int dn, unused;
        time_layer(L, reps, &rng, 0, &f, &b, &dn);
        time_layer(L, reps, &rng, 1, &gf, &gb, &unused);
        int oh = nn_conv_out(L->h, c->k, c->stride, c->pad), ow = nn_conv_out(L->w, c->k, c->stride, c->pad);
        double macs = (double)c->cout * c->cin * c->k * c->k * L->n * oh * ow;
        double flops = 2 * macs * (L->need_din ? 3 : 2);
        printf("%-26s %7s %8.2f %8.2f %8.2f %8.2f %5d %7.1f\n", L->name, dn ? "onednn" : "im2col", f, b, f + b,
               gf + gb, L->count, flops / ((f + b) * 1e6));
        if (L->name[1] == '2') {
            tot[0][0] += f * L->count;
            tot[0][1] += b * L->count;
            tot[1][0] += gf * L->count;
            tot[1][1] += gb * L->count;
        }
    }
    printf("resnet20 all convs (x count): fwd %.1f ms, bwd %.1f ms, total %.1f ms (all im2col: %.1f ms)\n",
           tot[0][0], tot[0][1], tot[0][0] + tot[0][1], tot[1][0] + tot[1][1]);
    return 0;
}
