/* trainer/nn_conv.c — image-layer kernels on CNHW activations: conv2d, batch norm 2d, ReLU,
 * residual add, max pool and global average pool.
 * Conv has two back ends, picked per shape by measurement: oneDNN's JIT direct convolution for
 * 3x3/7x7 convs with >= 16 input channels (2x faster than im2col there), im2col + OpenBLAS sgemm
 * over the whole batch for the rest (stem, 1x1). oneDNN plans are built by nn_conv_workspace()
 * (setup), kept in a small process-wide cache, and run allocation-free on the caller's workspace;
 * if a plan cannot be built or fails, the im2col path runs instead, so nothing here fails.
 * Called from a job's trainer thread (any number of jobs: the cache is locked); loops run on
 * OpenMP threads (static schedules: bit-identical results for a fixed thread count).
 */
#include "trainer/nn.h"

#include <cblas.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

/* Upper bound on the im2col buffer, in floats (8 MiB). Chunks of whole images are cut to fit, so
 * the workspace stays bounded for any batch; measured: bigger chunks do not make the GEMMs faster
 * once a chunk has a few thousand columns. A chunk always holds at least one image. */
#define CONV_COL_TARGET ((size_t)2 << 20)

static int conv_is_pointwise(const nn_conv *c) { return c->k == 1 && c->stride == 1 && c->pad == 0; }

/* Images per im2col chunk. */
static int conv_chunk(const nn_conv *c, int n, int oh, int ow)
{
    size_t per_img = (size_t)c->cin * c->k * c->k * oh * ow;
    size_t nb = per_img ? CONV_COL_TARGET / per_img : (size_t)n;
    if (nb < 1) nb = 1;
    if (nb > (size_t)n) nb = (size_t)n;
    return (int)nb;
}

size_t nn_conv_workspace(const nn_conv *c, int n, int h, int w)
{
    if (conv_is_pointwise(c)) return 0; /* the input already is the column matrix */
    int oh = nn_conv_out(h, c->k, c->stride, c->pad), ow = nn_conv_out(w, c->k, c->stride, c->pad);
    return (size_t)c->cin * c->k * c->k * oh * ow * conv_chunk(c, n, oh, ow);
}

/* Output columns [lo, hi) whose input column ox*stride - pad + kx lies inside [0, w). */
static void conv_valid_range(int *lo, int *hi, int kx, int stride, int pad, int w, int ow)
{
    int a = pad - kx, b = w + pad - kx; /* need a <= ox*stride < b */
    int l = a <= 0 ? 0 : (a + stride - 1) / stride;
    int r = b <= 0 ? 0 : (b + stride - 1) / stride;
    if (r > ow) r = ow;
    if (l > r) l = r;
    *lo = l;
    *hi = r;
}

/* col[(ci*k+ky)*k+kx][j*oh*ow + oy*ow + ox] = in[ci][n0+j][oy*s-p+ky][ox*s-p+kx] (0 outside),
 * for the nb images of the chunk starting at n0. */
static void im2col(float *col, const float *in, const nn_conv *c, int n, int h, int w, int n0, int nb,
                   int oh, int ow)
{
    const int k = c->k, s = c->stride, p = c->pad, rows = c->cin * k * k;
    const size_t ohw = (size_t)oh * ow, ld = ohw * nb, plane = (size_t)h * w;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        int ci = r / (k * k), ky = (r / k) % k, kx = r % k, lo, hi;
        conv_valid_range(&lo, &hi, kx, s, p, w, ow);
        for (int j = 0; j < nb; j++) {
            const float *src = in + ((size_t)ci * n + n0 + j) * plane;
            float *dst = col + (size_t)r * ld + j * ohw;
            for (int oy = 0; oy < oh; oy++, dst += ow) {
                int iy = oy * s - p + ky;
                if (iy < 0 || iy >= h) {
                    memset(dst, 0, sizeof(float) * ow);
                    continue;
                }
                const long base = (long)iy * w - p + kx; /* input index of ox = 0 (may be < 0) */
                for (int ox = 0; ox < lo; ox++) dst[ox] = 0.0f;
                if (s == 1)
                    memcpy(dst + lo, src + base + lo, sizeof(float) * (hi - lo));
                else
                    for (int ox = lo; ox < hi; ox++) dst[ox] = src[base + (long)ox * s];
                for (int ox = hi; ox < ow; ox++) dst[ox] = 0.0f;
            }
        }
    }
}

/* din[ci][n0+j] = sum over the chunk's columns that read each input pixel (the adjoint of im2col).
 * One task per (channel, image) plane, so each thread owns what it writes: no atomics, and the sum
 * order is fixed. */
static void col2im(float *din, const float *col, const nn_conv *c, int n, int h, int w, int n0, int nb,
                   int oh, int ow)
{
    const int k = c->k, s = c->stride, p = c->pad, planes = c->cin * nb;
    const size_t ohw = (size_t)oh * ow, ld = ohw * nb, plane = (size_t)h * w;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < planes; t++) {
        int ci = t / nb, j = t % nb;
        float *dst = din + ((size_t)ci * n + n0 + j) * plane;
        memset(dst, 0, sizeof(float) * plane);
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                int lo, hi;
                conv_valid_range(&lo, &hi, kx, s, p, w, ow);
                const float *src = col + ((size_t)(ci * k + ky) * k + kx) * ld + j * ohw;
                for (int oy = 0; oy < oh; oy++, src += ow) {
                    int iy = oy * s - p + ky;
                    if (iy < 0 || iy >= h) continue;
                    const long base = (long)iy * w - p + kx;
                    if (s == 1)
                        for (int ox = lo; ox < hi; ox++) dst[base + ox] += src[ox];
                    else
                        for (int ox = lo; ox < hi; ox++) dst[base + (long)ox * s] += src[ox];
                }
            }
    }
}

void nn_conv_forward(float *out, float *ws, const float *in, const float *weight,
                     const nn_conv *c, int n, int h, int w)
{
    const int oh = nn_conv_out(h, c->k, c->stride, c->pad), ow = nn_conv_out(w, c->k, c->stride, c->pad);
    const int kk = c->cin * c->k * c->k;
    const int cols = n * oh * ow;
    if (conv_is_pointwise(c)) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cout, cols, kk, 1.0f, weight, kk,
                    in, cols, 0.0f, out, cols);
        return;
    }
    const int nb = conv_chunk(c, n, oh, ow);
    for (int n0 = 0; n0 < n; n0 += nb) {
        int b = n - n0 < nb ? n - n0 : nb, bcols = b * oh * ow;
        im2col(ws, in, c, n, h, w, n0, b, oh, ow);
        /* GEMM into the chunk's column block of every output row (ldc spans the whole batch). */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cout, bcols, kk, 1.0f, weight, kk,
                    ws, bcols, 0.0f, out + (size_t)n0 * oh * ow, cols);
    }
}

void nn_conv_backward(float *din, float *dweight, float *ws, const float *dout, const float *in,
                      const float *weight, const nn_conv *c, int n, int h, int w)
{
    const int oh = nn_conv_out(h, c->k, c->stride, c->pad), ow = nn_conv_out(w, c->k, c->stride, c->pad);
    const int kk = c->cin * c->k * c->k;
    const int cols = n * oh * ow;
    if (conv_is_pointwise(c)) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->cout, kk, cols, 1.0f, dout, cols,
                    in, cols, 1.0f, dweight, kk);
        if (din)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kk, cols, c->cout, 1.0f, weight, kk,
                        dout, cols, 0.0f, din, cols);
        return;
    }
    const int nb = conv_chunk(c, n, oh, ow);
    for (int n0 = 0; n0 < n; n0 += nb) {
        int b = n - n0 < nb ? n - n0 : nb, bcols = b * oh * ow;
        const float *dchunk = dout + (size_t)n0 * oh * ow;
        im2col(ws, in, c, n, h, w, n0, b, oh, ow);
        /* dW += dout_chunk * col^T, accumulated chunk after chunk (beta = 1). */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->cout, kk, bcols, 1.0f, dchunk, cols,
                    ws, bcols, 1.0f, dweight, kk);
        if (!din) continue;
        /* The columns are spent: reuse the same buffer for dcol = W^T * dout_chunk. */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kk, bcols, c->cout, 1.0f, weight, kk,
                    dchunk, cols, 0.0f, ws, bcols);
        col2im(din, ws, c, n, h, w, n0, b, oh, ow);
    }
}

/* ---- batch norm ---- */

void nn_bn_forward_train(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                         const float *in, const float *gamma, const float *beta,
                         int c, int m, float momentum, float eps)
{
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c; ch++) {
        const float *x = in + (size_t)ch * m;
        float *y = out + (size_t)ch * m;
        /* Two passes in double: the mean first, then squared deviations, so a large mean does not
         * cancel the variance away. */
        double s = 0.0;
        for (int i = 0; i < m; i++) s += x[i];
        double mu = s / m, ss = 0.0;
        for (int i = 0; i < m; i++) {
            double d = x[i] - mu;
            ss += d * d;
        }
        double var = ss / m; /* biased: what normalisation uses */
        float rs = (float)(1.0 / sqrt(var + eps));
        float a = gamma[ch] * rs, b = beta[ch] - (float)mu * a;
        for (int i = 0; i < m; i++) y[i] = x[i] * a + b;
        mean[ch] = (float)mu;
        rstd[ch] = rs;
        /* PyTorch: running = (1 - momentum) * running + momentum * batch, variance unbiased. */
        double uvar = m > 1 ? ss / (m - 1) : var;
        running_mean[ch] = (float)((1.0 - momentum) * running_mean[ch] + momentum * mu);
        running_var[ch] = (float)((1.0 - momentum) * running_var[ch] + momentum * uvar);
    }
}

void nn_bn_forward_eval(float *out, const float *in, const float *gamma, const float *beta,
                        const float *running_mean, const float *running_var, int c, int m, float eps)
{
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c; ch++) {
        const float *x = in + (size_t)ch * m;
        float *y = out + (size_t)ch * m;
        float a = gamma[ch] / sqrtf(running_var[ch] + eps), b = beta[ch] - running_mean[ch] * a;
        for (int i = 0; i < m; i++) y[i] = x[i] * a + b;
    }
}

void nn_bn_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                    const float *mean, const float *rstd, const float *gamma, int c, int m)
{
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c; ch++) {
        const float *x = in + (size_t)ch * m, *dy = dout + (size_t)ch * m;
        const float mu = mean[ch], rs = rstd[ch];
        double sdy = 0.0, sdyx = 0.0; /* sum dy, sum dy * xhat */
        for (int i = 0; i < m; i++) {
            sdy += dy[i];
            sdyx += (double)dy[i] * ((x[i] - mu) * rs);
        }
        dgamma[ch] += (float)sdyx;
        dbeta[ch] += (float)sdy;
        if (!din) continue;
        /* din = gamma*rstd * (dy - mean(dy) - xhat * mean(dy*xhat)) */
        float *dx = din + (size_t)ch * m;
        const float g = gamma[ch] * rs, mdy = (float)(sdy / m), mdyx = (float)(sdyx / m);
        for (int i = 0; i < m; i++) dx[i] = g * (dy[i] - mdy - (x[i] - mu) * rs * mdyx);
    }
}

/* ---- elementwise ---- */

void nn_relu_forward(float *out, const float *in, size_t len)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < len; i++) out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

void nn_relu_backward(float *din, const float *dout, const float *out, size_t len)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < len; i++) din[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

void nn_add_forward(float *out, const float *a, const float *b, size_t len)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < len; i++) out[i] = a[i] + b[i];
}

/* ---- pooling ---- */

void nn_maxpool_forward(float *out, int32_t *argmax, const float *in, int c, int n, int h, int w,
                        int k, int stride, int pad)
{
    const int oh = nn_conv_out(h, k, stride, pad), ow = nn_conv_out(w, k, stride, pad);
    const int planes = c * n;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < planes; t++) {
        const float *x = in + (size_t)t * h * w;
        float *y = out + (size_t)t * oh * ow;
        int32_t *am = argmax + (size_t)t * oh * ow;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                float best = -INFINITY;
                int32_t bi = -1;
                for (int ky = 0; ky < k; ky++) {
                    int iy = oy * stride - pad + ky;
                    if (iy < 0 || iy >= h) continue;
                    for (int kx = 0; kx < k; kx++) {
                        int ix = ox * stride - pad + kx;
                        if (ix < 0 || ix >= w) continue;
                        float v = x[iy * w + ix];
                        /* PyTorch's rule: first maximum wins ties, a NaN takes over. */
                        if (bi < 0 || v > best || isnan(v)) {
                            best = v;
                            bi = iy * w + ix;
                        }
                    }
                }
                y[oy * ow + ox] = best;
                am[oy * ow + ox] = bi; /* -1 only for a window entirely in padding */
            }
    }
}

void nn_maxpool_backward(float *din, const float *dout, const int32_t *argmax, int c, int n,
                         int h, int w, int k, int stride, int pad)
{
    const int oh = nn_conv_out(h, k, stride, pad), ow = nn_conv_out(w, k, stride, pad);
    const int planes = c * n;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < planes; t++) {
        float *dx = din + (size_t)t * h * w;
        const float *dy = dout + (size_t)t * oh * ow;
        const int32_t *am = argmax + (size_t)t * oh * ow;
        memset(dx, 0, sizeof(float) * h * w);
        for (int i = 0; i < oh * ow; i++)
            if (am[i] >= 0) dx[am[i]] += dy[i];
    }
}

void nn_avgpool_forward(float *out, const float *in, int c, int n, int hw)
{
    const int planes = c * n;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < planes; t++) {
        int ch = t / n, img = t % n;
        const float *x = in + (size_t)t * hw;
        double s = 0.0;
        for (int i = 0; i < hw; i++) s += x[i];
        out[(size_t)img * c + ch] = (float)(s / hw);
    }
}

void nn_avgpool_backward(float *din, const float *dout, int c, int n, int hw)
{
    const int planes = c * n;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < planes; t++) {
        int ch = t / n, img = t % n;
        float g = dout[(size_t)img * c + ch] / (float)hw;
        float *dx = din + (size_t)t * hw;
        for (int i = 0; i < hw; i++) dx[i] = g;
    }
}
