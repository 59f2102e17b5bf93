/* trainer/nn_dense.c — dense layers on row-major feature matrices [n x d]: linear (PyTorch
 * weight layout [dout x din]) and row-wise L2 normalisation (torch.nn.functional.normalize).
 * Called from the job's thread; the products go through nn_gemm (oneDNN sgemm on the job's OpenMP
 * threads). Cannot fail: shapes are checked when the model is built, nothing is allocated.
 * Conventions as in nn.h: input gradients are written, parameter gradients accumulated.
 */
#include "trainer/nn.h"

#include <cblas.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>

/* oneDNN's sgemm first: it runs on the job's OpenMP threads like every other kernel (OpenBLAS's own
 * pthreads fight spinning OpenMP workers for the cores: 2 threads ran slower than 1) and was 1.4x
 * faster than OpenBLAS 0.3.21 on the conv stem and 1x1 shapes. OpenBLAS only if oneDNN refuses the
 * call (it checks arguments only), so a product is never silently skipped. */
void nn_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
             float beta, float *c, int ldc)
{
    if (dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) == dnnl_success)
        return;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
                lda, b, ldb, beta, c, ldc);
}

/* torch.nn.functional.normalize's default eps: below it the norm is clamped (and so constant). */
#define NN_L2NORM_EPS 1e-12

void nn_linear_forward(float *out, const float *in, const float *weight, const float *bias,
                       int n, int din, int dout)
{
    if (n <= 0 || dout <= 0) return;
    if (din <= 0) {
        for (size_t i = 0; i < (size_t)n * dout; i++) out[i] = 0.0f;
    } else {
        nn_gemm(0, 1, n, dout, din, 1.0f, in, din,
                    weight, din, 0.0f, out, dout);
    }
    if (bias) {
        for (int i = 0; i < n; i++) {
            float *o = out + (size_t)i * dout;
            for (int j = 0; j < dout; j++) o[j] += bias[j];
        }
    }
}

void nn_linear_backward(float *din, float *dweight, float *dbias, const float *dout, const float *in,
                        const float *weight, int n, int din_, int dout_)
{
    if (n <= 0 || dout_ <= 0 || din_ <= 0) {
        if (din && din_ > 0 && n > 0)
            for (size_t i = 0; i < (size_t)n * din_; i++) din[i] = 0.0f;
        if (dbias && n > 0)
            for (int i = 0; i < n; i++)
                for (int j = 0; j < dout_; j++) dbias[j] += dout[(size_t)i * dout_ + j];
        return;
    }
    /* dweight[dout x din] += dout^T [dout x n] * in [n x din] */
    if (dweight)
        nn_gemm(1, 0, dout_, din_, n, 1.0f, dout, dout_,
                    in, din_, 1.0f, dweight, din_);
    if (dbias) {
        for (int i = 0; i < n; i++) {
            const float *g = dout + (size_t)i * dout_;
            for (int j = 0; j < dout_; j++) dbias[j] += g[j];
        }
    }
    /* din[n x din] = dout [n x dout] * weight [dout x din] */
    if (din)
        nn_gemm(0, 0, n, din_, dout_, 1.0f, dout, dout_,
                    weight, din_, 0.0f, din, din_);
}

void nn_l2norm_forward(float *out, const float *in, int n, int d)
{
    for (int i = 0; i < n; i++) {
        const float *x = in + (size_t)i * d;
        float *y = out + (size_t)i * d;
        double ss = 0.0; /* double: d may be 2048 and the norm feeds a division */
        for (int j = 0; j < d; j++) ss += (double)x[j] * x[j];
        double nrm = sqrt(ss);
        float inv = (float)(1.0 / (nrm > NN_L2NORM_EPS ? nrm : NN_L2NORM_EPS));
        for (int j = 0; j < d; j++) y[j] = x[j] * inv;
    }
}

/* y = x / ||x||: dx = (g - y (y . g)) / ||x||. When the norm is clamped to eps it is a constant,
 * so dx = g / eps, which is what torch's autograd of clamp_min gives. */
void nn_l2norm_backward(float *din, const float *dout, const float *in, int n, int d)
{
    for (int i = 0; i < n; i++) {
        const float *x = in + (size_t)i * d;
        const float *g = dout + (size_t)i * d;
        float *dx = din + (size_t)i * d;
        double ss = 0.0, xg = 0.0;
        for (int j = 0; j < d; j++) {
            ss += (double)x[j] * x[j];
            xg += (double)x[j] * g[j];
        }
        double nrm = sqrt(ss);
        if (nrm > NN_L2NORM_EPS) {
            double inv = 1.0 / nrm;
            float a = (float)inv, b = (float)(xg * inv * inv * inv); /* y.g / ||x|| = x.g / ||x||^2 */
            for (int j = 0; j < d; j++) dx[j] = a * g[j] - b * x[j];
        } else {
            float a = (float)(1.0 / NN_L2NORM_EPS);
            for (int j = 0; j < d; j++) dx[j] = a * g[j];
        }
    }
}
