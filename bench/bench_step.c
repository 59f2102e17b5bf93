/* bench/bench_step.c — times full training steps of the trainer (exactly train_step's sequence:
 * model_zero_grad -> model_forward -> coreloss_sample -> coreloss_forward_backward -> model_backward
 * -> sgd_step, grad_accum 1) on synthetic data made once (data loading is not timed), and prints one
 * JSON line: images/second (median, min, max over the timed steps; also per CPU-second of the whole
 * process, which other processes' load disturbs less), the median time of each phase,
 * peak RSS (getrusage) and the bytes the model + loss + optimiser allocated.
 *   bench_step ARCH IN_CH SIZE SMALL_STEM BATCH THREADS [core|ce [paper|reference [WARMUP [ITERS]]]]
 *   bench_step --roof THREADS     sgemm 2048^3 GFLOP/s (median of 5) of OpenBLAS and of oneDNN (which
 *                                 our convolutions use; it has AVX-512 kernels, OpenBLAS 0.3.21 on this
 *                                 CPU runs its AVX2 "Haswell" ones), the machine's practical roof
 * A stand-alone tool run by bench/run.sh (bench/torch_step.py is its PyTorch twin); single thread of
 * control, errors go to stderr with exit status 1.
 */
#define _GNU_SOURCE
#include <cblas.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "trainer/coreloss.h"
#include "common/util.h"
#include "trainer/data.h"
#include "trainer/model.h"
#include "trainer/rng.h"
#include "trainer/sgd.h"

enum { NUM_CLASSES = 10, CONTRAST_DIM = 256, RNG_STREAM_LOSS = 2 }; /* stream as trainer/train.c */
enum { MAX_ITERS = 1000 };

/* CPU seconds of the whole process (all threads): with 1 thread, a measure that other processes'
 * load disturbs far less than wall time does. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v). */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1; /* KiB on Linux */
}

static void set_threads(int threads)
{
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
}

static int roof(int threads)
{
    const int N = 2048;
    float *a = malloc(sizeof(float) * N * N), *b = malloc(sizeof(float) * N * N), *c = malloc(sizeof(float) * N * N);
    if (!a || !b || !c) {
        fprintf(stderr, "bench_step: out of memory\n");
        return 1;
    }
    rng_t r;
    rng_seed(&r, 7);
    for (size_t i = 0; i < (size_t)N * N; i++) {
        a[i] = (float)rng_uniform(&r) - 0.5f;
        b[i] = (float)rng_uniform(&r) - 0.5f;
    }
    set_threads(threads);
    double med[2], mx[2];
    for (int lib = 0; lib < 2; lib++) {
        double g[5];
        for (int rep = -1; rep < 5; rep++) {
            double t0 = util_mono();
            if (lib == 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, b, N, 0.0f, c, N);
            else if (dnnl_sgemm('N', 'N', N, N, N, 1.0f, a, N, b, N, 0.0f, c, N) != dnnl_success) {
                fprintf(stderr, "bench_step: dnnl_sgemm failed\n");
                return 1;
            }
            double dt = util_mono() - t0;
            if (rep >= 0) g[rep] = 2.0 * N * N * (double)N / dt * 1e-9;
        }
        mx[lib] = g[0];
        for (int i = 1; i < 5; i++) mx[lib] = g[i] > mx[lib] ? g[i] : mx[lib];
        med[lib] = median(g, 5);
    }
    printf("{\"impl\":\"sgemm\",\"n\":%d,\"threads\":%d,\"openblas_gflops_median\":%.1f,\"openblas_gflops_max\":%.1f,"
           "\"dnnl_gflops_median\":%.1f,\"dnnl_gflops_max\":%.1f}\n", N, threads, med[0], mx[0], med[1], mx[1]);
    free(a); free(b); free(c);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--roof") == 0) return roof(atoi(argv[2]));
    if (argc < 7) {
        fprintf(stderr, "usage: bench_step ARCH IN_CH SIZE SMALL_STEM BATCH THREADS [core|ce [paper|reference "
                        "[WARMUP [ITERS]]]]\n       bench_step --roof THREADS\n");
        return 1;
    }
    const char *arch = argv[1];
    int in_ch = atoi(argv[2]), size = atoi(argv[3]), small_stem = atoi(argv[4]), batch = atoi(argv[5]);
    int threads = atoi(argv[6]);
    const char *method = argc > 7 ? argv[7] : "core", *variant = argc > 8 ? argv[8] : "paper";
    int warmup = argc > 9 ? atoi(argv[9]) : 2, iters = argc > 10 ? atoi(argv[10]) : 10;
    int core = strcmp(method, "core") == 0, reference = strcmp(variant, "reference") == 0;
    if ((!core && strcmp(method, "ce") != 0) || (!reference && strcmp(variant, "paper") != 0) || batch < 2 ||
        threads < 1 || warmup < 0 || iters < 1 || iters > MAX_ITERS) {
        fprintf(stderr, "bench_step: bad arguments (method core|ce, variant paper|reference, batch >= 2, "
                        "threads >= 1, 1 <= iters <= %d)\n", MAX_ITERS);
        return 1;
    }
    set_threads(threads);

    char err[256];
    model *m = NULL;
    coreloss *loss = NULL;
    float *x = NULL, *dh = NULL, *mom = NULL;
    int *y = NULL, status = 1;
    model_config mc = {.in_channels = in_ch, .image_size = size, .small_stem = small_stem,
                       .num_classes = NUM_CLASSES, .contrast_dim = core ? CONTRAST_DIM : 0, .max_batch = batch};
    snprintf(mc.arch, sizeof mc.arch, "%s", arch);
    if (model_new(&m, &mc, err, sizeof err)) {
        fprintf(stderr, "bench_step: model: %s\n", err);
        goto out;
    }
    rng_t r;
    rng_seed(&r, 1);
    model_init(m, &r);
    int d = model_feature_dim(m);
    coreloss_config lc = {.method = core ? CORELOSS_CORE : CORELOSS_CE,
                          .variant = reference ? CORELOSS_REFERENCE : CORELOSS_PAPER, .num_classes = NUM_CLASSES,
                          .feat_dim = d, .contrast_dim = core ? CONTRAST_DIM : 1, .max_batch = batch,
                          .eta = 0.1f, .temperature = 0.07f, .mixup_alpha = 1.0f};
    if (coreloss_new(&loss, &lc, err, sizeof err)) {
        fprintf(stderr, "bench_step: loss: %s\n", err);
        goto out;
    }
    coreloss_weights w = {0};
    coreloss_grads g = {0};
    model_tensor *fc = model_find(m, "fc.weight");
    w.fc = fc->data; g.fc = fc->grad;
    if (core) {
        model_tensor *t0w = model_find(m, "contrastor.0.weight"), *t0b = model_find(m, "contrastor.0.bias");
        model_tensor *t2w = model_find(m, "contrastor.2.weight"), *t2b = model_find(m, "contrastor.2.bias");
        w.c0w = t0w->data; w.c0b = t0b->data; w.c2w = t2w->data; w.c2b = t2b->data;
        g.c0w = t0w->grad; g.c0b = t0b->grad; g.c2w = t2w->grad; g.c2b = t2b->grad;
    }
    /* synthetic data, made once: standard normal images (as if normalised), labels i % 10 */
    size_t xlen = (size_t)batch * in_ch * size * size, np = model_num_params(m);
    x = malloc(sizeof(float) * xlen);
    y = malloc(sizeof(int) * (size_t)batch);
    dh = malloc(sizeof(float) * (size_t)batch * (size_t)d);
    mom = calloc(np, sizeof(float));
    if (!x || !y || !dh || !mom) {
        fprintf(stderr, "bench_step: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < xlen; i++) x[i] = (float)rng_normal(&r);
    for (int i = 0; i < batch; i++) y[i] = i % NUM_CLASSES;
    size_t state_bytes = model_memory_bytes(m) + coreloss_memory_bytes(loss) +
                         sizeof(float) * ((size_t)batch * (size_t)d + np);

    const sgd_config sc = {.momentum = 0.9, .weight_decay = 1e-4, .nesterov = 1};
    const double lr = 0.01;
    double ips[MAX_ITERS], cps[MAX_ITERS], tf[MAX_ITERS], tl[MAX_ITERS], tb[MAX_ITERS], ts[MAX_ITERS];
    coreloss_terms t = {0};
    for (int it = -warmup; it < iters; it++) {
        double c0 = cpu_now(), t0 = util_mono();
        model_zero_grad(m);
        const float *h = model_forward(m, x, batch, 1);
        if (!h) {
            fprintf(stderr, "bench_step: model_forward rejected the batch\n");
            goto out;
        }
        double t1 = util_mono();
        if (core) {
            rng_t lr_rng;
            data_rng(&lr_rng, 0, RNG_STREAM_LOSS, (uint64_t)(it + warmup), 0);
            coreloss_sample(loss, &lr_rng, y, batch);
        }
        int rc = coreloss_forward_backward(loss, dh, &g, &t, h, y, batch, &w, 1.0f);
        if (rc) {
            fprintf(stderr, "bench_step: coreloss_forward_backward: %d\n", rc);
            goto out;
        }
        double t2 = util_mono();
        if ((rc = model_backward(m, dh, batch))) {
            fprintf(stderr, "bench_step: model_backward: %d\n", rc);
            goto out;
        }
        double t3 = util_mono();
        sgd_step(model_params(m), mom, model_grads(m), np, lr, &sc);
        double t4 = util_mono(), c4 = cpu_now();
        if (it >= 0) {
            ips[it] = batch / (t4 - t0);
            cps[it] = batch / (c4 - c0);
            tf[it] = (t1 - t0) * 1e3; tl[it] = (t2 - t1) * 1e3; tb[it] = (t3 - t2) * 1e3; ts[it] = (t4 - t3) * 1e3;
        }
    }
    double lo = ips[0], hi = ips[0];
    for (int i = 1; i < iters; i++) {
        lo = ips[i] < lo ? ips[i] : lo;
        hi = ips[i] > hi ? ips[i] : hi;
    }
    printf("{\"impl\":\"coretuned\",\"arch\":\"%s\",\"in_ch\":%d,\"size\":%d,\"small_stem\":%d,\"batch\":%d,"
           "\"threads\":%d,\"method\":\"%s\",\"variant\":\"%s\",\"warmup\":%d,\"iters\":%d,"
           "\"img_s_median\":%.2f,\"img_s_min\":%.2f,\"img_s_max\":%.2f,\"img_cpu_s_median\":%.2f,"
           "\"ms_forward\":%.2f,\"ms_loss\":%.2f,\"ms_backward\":%.2f,\"ms_optim\":%.2f,"
           "\"peak_rss_kib\":%ld,\"state_bytes\":%zu,\"params\":%zu,\"last_loss\":%.6f}\n",
           arch, in_ch, size, small_stem, batch, threads, method, variant, warmup, iters, median(ips, iters), lo, hi, median(cps, iters),
           median(tf, iters), median(tl, iters), median(tb, iters), median(ts, iters), peak_rss_kib(), state_bytes,
           np, t.total);
    status = 0;
out:
    free(x); free(y); free(dh); free(mom);
    coreloss_free(loss);
    model_free(m);
    return status;
}
