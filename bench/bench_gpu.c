/* bench/bench_gpu.c — training steps of the backbone on a CUDA device (trainer/gpu/gpu_model.h), the
 * way a GPU job's step runs: images uploaded, forward, the [B x d] features copied to the host, dL/dh
 * copied back (a fixed random one: the Core-tuning loss runs on the host and is not timed here),
 * backward, SGD on the device. Prints one table row per case: images/s (median step), ms/step, the
 * context's device memory (arena + conv workspace) and the device's memory in use (cudaMemGetInfo).
 *   bench_gpu ARCH SIZE SMALL_STEM BATCH fp32|tf32|bf16 [WARMUP [ITERS]]
 *   bench_gpu --header            the table's header, with the GPU's name
 * Exit 0, 1 on an error (stderr), 77 when there is no CUDA device (the reason on stderr).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "trainer/gpu/gpu.h"
#include "trainer/gpu/gpu_model.h"
#include "trainer/model.h"
#include "trainer/rng.h"

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    char why[256], name[128] = "?", err[512];
    if (gpu_device_count(why, sizeof why) == 0) {
        fprintf(stderr, "bench_gpu: %s\n", why);
        return 77;
    }
    size_t total = 0;
    gpu_device_info(0, name, sizeof name, &total);
    if (argc >= 2 && !strcmp(argv[1], "--header")) {
        printf("GPU: %s (%.0f GiB), cuda:0\n", name, total / 1073741824.0);
        printf("%-10s %-9s %5s %-5s %9s %9s %11s %11s\n", "model", "input", "batch", "prec", "images/s", "ms/step",
               "ctx MiB", "in-use MiB");
        return 0;
    }
    if (argc < 6) {
        fprintf(stderr, "usage: bench_gpu ARCH SIZE SMALL_STEM BATCH fp32|tf32|bf16 [WARMUP [ITERS]] | --header\n");
        return 1;
    }
    int size = atoi(argv[2]), small = atoi(argv[3]), batch = atoi(argv[4]), prec = !strcmp(argv[5], "tf32") ? GPU_TF32 : !strcmp(argv[5], "bf16") ? GPU_BF16 : GPU_FP32;
    int warmup = argc > 6 ? atoi(argv[6]) : 3, iters = argc > 7 ? atoi(argv[7]) : 10;
    if (iters < 1 || iters > 1000) iters = 10;
    model_config cfg = {.in_channels = 3, .image_size = size, .small_stem = small, .num_classes = 10,
                        .contrast_dim = 128, .max_batch = batch};
    snprintf(cfg.arch, sizeof cfg.arch, "%s", argv[1]);
    model *m = NULL;
    gpu_ctx *g = NULL;
    gpu_model *gm = NULL;
    if (model_new(&m, &cfg, err, sizeof err) || gpu_ctx_new(&g, 0, prec, err, sizeof err) ||
        gpu_model_new(&gm, g, m, err, sizeof err)) {
        fprintf(stderr, "bench_gpu: %s\n", err);
        return 1;
    }
    rng_t r;
    rng_seed(&r, 1);
    model_init(m, &r);
    size_t d = (size_t)model_feature_dim(m), img_len = (size_t)batch * 3 * size * size;
    float *img = malloc(sizeof(float) * img_len), *feat = malloc(sizeof(float) * batch * d),
          *dfeat = malloc(sizeof(float) * batch * d);
    double *t = malloc(sizeof(double) * iters);
    if (!img || !feat || !dfeat || !t) { fprintf(stderr, "bench_gpu: out of memory\n"); return 1; }
    for (size_t i = 0; i < img_len; i++) img[i] = (float)rng_normal(&r);
    for (size_t i = 0; i < batch * d; i++) dfeat[i] = (float)rng_normal(&r) * 1e-3f;
    int rc = gpu_model_push(gm);
    for (int it = 0; !rc && it < warmup + iters; it++) {
        double t0 = util_mono();
        rc = gpu_model_zero_grad(gm);
        if (!rc) rc = gpu_model_forward(gm, img, batch, 1, feat); /* waits: the loss needs the features */
        if (!rc) rc = gpu_model_backward(gm, dfeat, batch);
        if (!rc) rc = gpu_model_sgd(gm, 1e-3f, 0.9f, 1e-4f, 1);
        if (!rc) rc = gpu_sync(g);
        if (it >= warmup) t[it - warmup] = util_mono() - t0;
    }
    if (rc) { fprintf(stderr, "bench_gpu: %s\n", gpu_error(g)); return 1; }
    qsort(t, iters, sizeof *t, cmp_d);
    double med = t[iters / 2];
    size_t used = 0;
    gpu_ctx_device_used(g, &used);
    char input[32];
    snprintf(input, sizeof input, "3x%dx%d", size, size);
    printf("%-10s %-9s %5d %-5s %9.0f %9.1f %11.0f %11.0f\n", cfg.arch, input, batch, prec == GPU_TF32 ? "tf32" : prec == GPU_BF16 ? "bf16" : "fp32",
           batch / med, med * 1e3, gpu_ctx_peak_bytes(g) / 1048576.0, used / 1048576.0);
    gpu_model_free(gm);
    gpu_ctx_free(g);
    model_free(m);
    free(img); free(feat); free(dfeat); free(t);
    return 0;
}
