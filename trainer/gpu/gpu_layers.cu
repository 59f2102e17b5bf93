/* trainer/gpu/gpu_layers.cu — conv (cuDNN), batch norm (cuDNN), pooling and dense (own kernels)
 * on device memory. See gpu.h for the contract; kernels mirror trainer/nn_conv.c and nn_dense.c so the
 * CPU path is the reference (tests/unit/test_gpu.c). Job thread only; failures go to gpu__fail. */
#include "trainer/gpu/gpu_int.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define GRID_LOOP(i, len) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (len); \
                               i += (size_t)gridDim.x * blockDim.x)

static int launched(gpu_ctx *g, const char *what) { return gpu__cuda(g, cudaGetLastError(), what); }

/* ---- convolution ---- */

/* cuDNN's heuristic ranking (no timing runs, so the choice is the same every time on one GPU and
 * cuDNN version): the first candidate that is supported, deterministic, and in plain fp32 unless
 * TF32 was asked for. Three copies for the three algorithm enums. */
#define PICK(kind, perf_t, getter, ...)                                                               \
    static int pick_##kind(gpu_conv *p, int *algo, size_t *ws)                                      \
    {                                                                                               \
        perf_t perf[16];                                                                            \
        int got = 0;                                                                                \
        int rc = gpu__dnn(p->g, getter(p->g->dnn, __VA_ARGS__, 16, &got, perf), #getter);           \
        if (rc) return rc;                                                                          \
        for (int i = 0; i < got; i++) {                                                             \
            if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].determinism != CUDNN_DETERMINISTIC) \
                continue;                                                                           \
            /* fp32: FMA or default math (the descriptor's CUDNN_FMA_MATH rules out TF32 either way), \
             * never a tensor-op variant */                                                         \
            if (!p->g->tf32 && !p->g->bf16 && perf[i].mathType != CUDNN_FMA_MATH &&                 \
                perf[i].mathType != CUDNN_DEFAULT_MATH)                                             \
                continue;                                                                           \
            *algo = (int)perf[i].algo;                                                              \
            *ws = perf[i].memory;                                                                   \
            return 0;                                                                               \
        }                                                                                           \
        return gpu__fail(p->g, #getter, p->g->bf16 ? "no deterministic bf16 algorithm for this shape (bf16 " \
                         "convolutions need an Ampere or newer GPU)" : "no deterministic fp32 algorithm for this shape"); \
    }
PICK(fwd, cudnnConvolutionFwdAlgoPerf_t, cudnnGetConvolutionForwardAlgorithm_v7, p->xd, p->wd, p->cd, p->yd)
PICK(bwd_data, cudnnConvolutionBwdDataAlgoPerf_t, cudnnGetConvolutionBackwardDataAlgorithm_v7, p->wd, p->yd, p->cd,
     p->xd)
PICK(bwd_filter, cudnnConvolutionBwdFilterAlgoPerf_t, cudnnGetConvolutionBackwardFilterAlgorithm_v7, p->xd, p->yd,
     p->cd, p->wd)
#undef PICK

/* bf16 staging tensors are CNHW too (the casts are elementwise) */
static cudnnDataType_t conv_type(const gpu_ctx *g) { return g->bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT; }

static int set_batch(gpu_conv *p, int n)
{
    cudnnDataType_t t = conv_type(p->g);
    int rc = gpu__dnn(p->g, gpu__cnhw_desc_t(p->xd, t, n, p->c.cin, p->h, p->w), "conv x descriptor");
    return rc ? rc : gpu__dnn(p->g, gpu__cnhw_desc_t(p->yd, t, n, p->c.cout, p->oh, p->ow), "conv y descriptor");
}

__global__ static void k_to_bf16(__nv_bfloat16 *out, const float *in, size_t len)
{
    GRID_LOOP(i, len) out[i] = __float2bfloat16_rn(in[i]);
}

__global__ static void k_from_bf16(float *out, const __nv_bfloat16 *in, size_t len)
{
    GRID_LOOP(i, len) out[i] = __bfloat162float(in[i]);
}

__global__ static void k_add_bf16(float *out, const __nv_bfloat16 *in, size_t len)
{
    GRID_LOOP(i, len) out[i] += __bfloat162float(in[i]);
}

static int to_bf16(gpu_ctx *g, __nv_bfloat16 *out, const float *in, size_t len)
{
    k_to_bf16<<<gpu__blocks(len), 256, 0, g->stream>>>(out, in, len);
    return launched(g, "to_bf16");
}

static int from_bf16(gpu_ctx *g, float *out, const __nv_bfloat16 *in, size_t len, int add)
{
    if (add) k_add_bf16<<<gpu__blocks(len), 256, 0, g->stream>>>(out, in, len);
    else k_from_bf16<<<gpu__blocks(len), 256, 0, g->stream>>>(out, in, len);
    return launched(g, "from_bf16");
}

int gpu_conv_new(gpu_conv **out, gpu_ctx *g, const nn_conv *c, int h, int w, int max_n, char *err, size_t errlen)
{
    *out = NULL;
    if (g->nconvs >= GPU_MAX_CONVS) { snprintf(err, errlen, "more than %d convs", GPU_MAX_CONVS); return -EINVAL; }
    gpu_conv *p = &g->convs[g->nconvs++]; /* freed with the context, whatever happens below */
    memset(p, 0, sizeof *p);
    p->g = g;
    p->c = *c;
    p->h = h; p->w = w; p->max_n = max_n;
    p->oh = nn_conv_out(h, c->k, c->stride, c->pad);
    p->ow = nn_conv_out(w, c->k, c->stride, c->pad);
    if (p->oh < 1 || p->ow < 1 || max_n < 1) { snprintf(err, errlen, "bad conv shape"); return -EINVAL; }
    int rc = gpu__dnn(g, cudnnCreateTensorDescriptor(&p->xd), "descriptor");
    if (!rc) rc = gpu__dnn(g, cudnnCreateTensorDescriptor(&p->yd), "descriptor");
    if (!rc) rc = gpu__dnn(g, cudnnCreateFilterDescriptor(&p->wd), "descriptor");
    if (!rc) rc = gpu__dnn(g, cudnnCreateConvolutionDescriptor(&p->cd), "descriptor");
    if (!rc) rc = gpu__dnn(g, cudnnSetFilter4dDescriptor(p->wd, conv_type(g), CUDNN_TENSOR_NCHW, c->cout, c->cin,
                                                         c->k, c->k), "cudnnSetFilter4dDescriptor");
    /* CROSS_CORRELATION is what PyTorch calls convolution; the compute type is fp32 in every precision (bf16:
     * cuDNN's "pseudo" bf16 configuration, bf16 tensors accumulated in fp32) */
    if (!rc) rc = gpu__dnn(g, cudnnSetConvolution2dDescriptor(p->cd, c->pad, c->pad, c->stride, c->stride, 1, 1,
                                                              CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                           "cudnnSetConvolution2dDescriptor");
    cudnnMathType_t math = g->bf16 ? CUDNN_TENSOR_OP_MATH : g->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
    if (!rc) rc = gpu__dnn(g, cudnnSetConvolutionMathType(p->cd, math), "cudnnSetConvolutionMathType");
    if (!rc) rc = set_batch(p, max_n);
    int a0 = 0, a1 = 0, a2 = 0;
    size_t w0 = 0, w1 = 0, w2 = 0;
    if (!rc) rc = pick_fwd(p, &a0, &w0);
    if (!rc) rc = pick_bwd_data(p, &a1, &w1);
    if (!rc) rc = pick_bwd_filter(p, &a2, &w2);
    if (rc) { snprintf(err, errlen, "%s", gpu_error(g)); return rc; }
    p->fwd = (cudnnConvolutionFwdAlgo_t)a0;
    p->bwd_data = (cudnnConvolutionBwdDataAlgo_t)a1;
    p->bwd_filter = (cudnnConvolutionBwdFilterAlgo_t)a2;
    p->ws_bytes = w0 > w1 ? w0 : w1;
    if (w2 > p->ws_bytes) p->ws_bytes = w2;
    if (g->arena && p->ws_bytes > g->ws_bytes) {
        snprintf(err, errlen, "conv planned after gpu_ctx_reserve needs a larger workspace");
        return -ENOSPC;
    }
    p->nx = (size_t)max_n * c->cin * h * w;
    p->nw = (size_t)c->cout * c->cin * c->k * c->k;
    p->ny = (size_t)max_n * c->cout * p->oh * p->ow;
    if (g->bf16 && g->arena && (p->nx > g->bx_n || p->nw > g->bw_n || p->ny > g->by_n)) {
        snprintf(err, errlen, "conv planned after gpu_ctx_reserve needs larger bf16 staging");
        return -ENOSPC;
    }
    if (p->ws_bytes > g->ws_need) g->ws_need = p->ws_bytes;
    if (p->nx > g->bx_n) g->bx_n = p->nx;
    if (p->nw > g->bw_n) g->bw_n = p->nw;
    if (p->ny > g->by_n) g->by_n = p->ny;
    *out = p;
    return 0;
}

/* element counts of one call's input and output (batch n <= max_n) */
static size_t conv_nx(const gpu_conv *p, int n) { return (size_t)n * p->c.cin * p->h * p->w; }
static size_t conv_ny(const gpu_conv *p, int n) { return (size_t)n * p->c.cout * p->oh * p->ow; }

int gpu_conv_forward(gpu_conv *p, float *out, const float *in, const float *weight, int n)
{
    const float one = 1.0f, zero = 0.0f;
    gpu_ctx *g = p->g;
    int rc = set_batch(p, n);
    if (rc || !g->bf16)
        return rc ? rc : gpu__dnn(g, cudnnConvolutionForward(g->dnn, &one, p->xd, in, p->wd, weight, p->cd, p->fwd,
                                                             g->ws, p->ws_bytes, &zero, p->yd, out),
                                  "cudnnConvolutionForward");
    /* bf16: cast in and weights, convolve in bf16 (fp32 accumulation), cast the output back */
    rc = to_bf16(g, g->bx, in, conv_nx(p, n));
    if (!rc) rc = to_bf16(g, g->bw, weight, p->nw);
    if (!rc) rc = gpu__dnn(g, cudnnConvolutionForward(g->dnn, &one, p->xd, g->bx, p->wd, g->bw, p->cd, p->fwd, g->ws,
                                                      p->ws_bytes, &zero, p->yd, g->by),
                           "cudnnConvolutionForward");
    return rc ? rc : from_bf16(g, out, g->by, conv_ny(p, n), 0);
}

/* bf16: dout, in and weights cast; the weight gradient computed in bf16 then added to the fp32 one (master
 * gradients stay fp32); the input gradient written over the input's staging (the filter gradient, which
 * reads it, has run before on the same stream) and cast back. */
static int conv_backward_bf16(gpu_conv *p, float *din, float *dweight, const float *dout, const float *in,
                              const float *weight, int n)
{
    const float one = 1.0f, zero = 0.0f;
    gpu_ctx *g = p->g;
    int rc = to_bf16(g, g->by, dout, conv_ny(p, n));
    if (!rc) rc = to_bf16(g, g->bx, in, conv_nx(p, n));
    if (!rc) rc = gpu__dnn(g, cudnnConvolutionBackwardFilter(g->dnn, &one, p->xd, g->bx, p->yd, g->by, p->cd,
                                                             p->bwd_filter, g->ws, p->ws_bytes, &zero, p->wd, g->bdw),
                           "cudnnConvolutionBackwardFilter");
    if (!rc) rc = from_bf16(g, dweight, g->bdw, p->nw, 1);
    if (rc || !din) return rc;
    rc = to_bf16(g, g->bw, weight, p->nw);
    if (!rc) rc = gpu__dnn(g, cudnnConvolutionBackwardData(g->dnn, &one, p->wd, g->bw, p->yd, g->by, p->cd,
                                                           p->bwd_data, g->ws, p->ws_bytes, &zero, p->xd, g->bx),
                           "cudnnConvolutionBackwardData");
    return rc ? rc : from_bf16(g, din, g->bx, conv_nx(p, n), 0);
}

int gpu_conv_backward(gpu_conv *p, float *din, float *dweight, const float *dout, const float *in,
                      const float *weight, int n)
{
    const float one = 1.0f, zero = 0.0f;
    int rc = set_batch(p, n);
    if (!rc && p->g->bf16) return conv_backward_bf16(p, din, dweight, dout, in, weight, n);
    /* beta 1: the filter gradient accumulates, as nn_conv_backward's */
    if (!rc) rc = gpu__dnn(p->g, cudnnConvolutionBackwardFilter(p->g->dnn, &one, p->xd, in, p->yd, dout, p->cd,
                                                                p->bwd_filter, p->g->ws, p->ws_bytes, &one, p->wd, dweight),
                           "cudnnConvolutionBackwardFilter");
    if (!rc && din)
        rc = gpu__dnn(p->g, cudnnConvolutionBackwardData(p->g->dnn, &one, p->wd, weight, p->yd, dout, p->cd,
                                                         p->bwd_data, p->g->ws, p->ws_bytes, &zero, p->xd, din),
                      "cudnnConvolutionBackwardData");
    return rc;
}

/* ---- batch norm: cuDNN's spatial mode (its running variance is unbiased, as PyTorch's; its saved
 * inverse variance is nn.h's rstd) ---- */

/* CNHW [c][n][hw] is a fully packed NCHW tensor of one image with c channels of n*hw x 1 "pixels": spatial
 * BN's per-channel statistics over it are the batch's, and no strided layout is asked of cuDNN. */
static int bn_descs(gpu_ctx *g, int c, int n, int hw)
{
    int rc = gpu__dnn(g, cudnnSetTensor4dDescriptor(g->t1, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, c, n * hw, 1),
                      "bn x descriptor");
    return rc ? rc : gpu__dnn(g, cudnnDeriveBNTensorDescriptor(g->t2, g->t1, CUDNN_BATCHNORM_SPATIAL), "bn descriptor");
}

int gpu_bn_forward_train(gpu_ctx *g, float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                         const float *in, const float *gamma, const float *beta, int c, int n, int hw,
                         float momentum, float eps, int relu)
{
    const float one = 1.0f, zero = 0.0f;
    int rc = bn_descs(g, c, n, hw);
    if (!rc) rc = gpu__dnn(g, cudnnBatchNormalizationForwardTraining(g->dnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, g->t1,
                                                                     in, g->t1, out, g->t2, gamma, beta, momentum,
                                                                     running_mean, running_var, eps, mean, rstd),
                           "cudnnBatchNormalizationForwardTraining");
    if (!rc && relu) rc = gpu_relu_forward(g, out, out, (size_t)c * n * hw);
    return rc;
}

int gpu_bn_forward_eval(gpu_ctx *g, float *out, const float *in, const float *gamma, const float *beta,
                        const float *running_mean, const float *running_var, int c, int n, int hw, float eps, int relu)
{
    const float one = 1.0f, zero = 0.0f;
    int rc = bn_descs(g, c, n, hw);
    if (!rc) rc = gpu__dnn(g, cudnnBatchNormalizationForwardInference(g->dnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero,
                                                                      g->t1, in, g->t1, out, g->t2, gamma, beta,
                                                                      running_mean, running_var, eps),
                           "cudnnBatchNormalizationForwardInference");
    if (!rc && relu) rc = gpu_relu_forward(g, out, out, (size_t)c * n * hw);
    return rc;
}

int gpu_bn_backward(gpu_ctx *g, float *din, float *dgamma, float *dbeta, float *mask_tmp, const float *dout,
                    const float *mask, const float *in, const float *mean, const float *rstd, const float *gamma,
                    int c, int n, int hw, float eps)
{
    const float one = 1.0f, zero = 0.0f;
    int rc = bn_descs(g, c, n, hw);
    const float *dy = dout;
    if (!rc && mask) {
        rc = gpu_relu_backward(g, mask_tmp, dout, mask, (size_t)c * n * hw);
        dy = mask_tmp;
    }
    /* parameter gradients accumulate (betaParamDiff 1), the input gradient is written */
    if (!rc) rc = gpu__dnn(g, cudnnBatchNormalizationBackward(g->dnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &one,
                                                              g->t1, in, g->t1, dy, g->t1, din, g->t2, gamma, dgamma,
                                                              dbeta, eps, mean, rstd),
                           "cudnnBatchNormalizationBackward");
    return rc;
}

/* ---- pooling: nn_conv.c's rules, one thread per output (forward) or per input (backward, a gather
 * in increasing output order: deterministic, and the CPU's summation order) ---- */

static __global__ void k_maxpool(float *out, int32_t *argmax, const float *in, size_t planes, int h, int w,
                                 int oh, int ow, int k, int stride, int pad)
{
    GRID_LOOP(t, planes * oh * ow) {
        size_t plane = t / ((size_t)oh * ow);
        int o = (int)(t % ((size_t)oh * ow)), oy = o / ow, ox = o % ow;
        const float *x = in + plane * h * w;
        float best = -INFINITY;
        int32_t bi = -1;
        for (int ky = 0; ky < k; ky++) {
            int iy = oy * stride - pad + ky;
            if (iy < 0 || iy >= h) continue;
            for (int kx = 0; kx < k; kx++) {
                int ix = ox * stride - pad + kx;
                if (ix < 0 || ix >= w) continue;
                float v = x[iy * w + ix];
                if (bi < 0 || v > best || isnan(v)) { best = v; bi = iy * w + ix; }
            }
        }
        out[t] = best;
        argmax[t] = bi;
    }
}

static __global__ void k_maxpool_bwd(float *din, const float *dout, const int32_t *argmax, size_t planes, int h,
                                     int w, int oh, int ow, int k, int stride, int pad)
{
    GRID_LOOP(t, planes * h * w) {
        size_t plane = t / ((size_t)h * w);
        int i = (int)(t % ((size_t)h * w)), iy = i / w, ix = i % w;
        const float *dy = dout + plane * oh * ow;
        const int32_t *am = argmax + plane * oh * ow;
        /* outputs whose window holds (iy, ix): oy*stride - pad <= iy < oy*stride - pad + k */
        int oy0 = iy + pad - k + 1, ox0 = ix + pad - k + 1;
        oy0 = oy0 <= 0 ? 0 : (oy0 + stride - 1) / stride;
        ox0 = ox0 <= 0 ? 0 : (ox0 + stride - 1) / stride;
        float s = 0.0f;
        for (int oy = oy0; oy < oh && oy * stride - pad <= iy; oy++)
            for (int ox = ox0; ox < ow && ox * stride - pad <= ix; ox++)
                if (am[oy * ow + ox] == i) s += dy[oy * ow + ox];
        din[t] = s;
    }
}

int gpu_maxpool_forward(gpu_ctx *g, float *out, int32_t *argmax, const float *in, int c, int n, int h, int w, int k,
                        int stride, int pad)
{
    int oh = nn_conv_out(h, k, stride, pad), ow = nn_conv_out(w, k, stride, pad);
    size_t planes = (size_t)c * n;
    k_maxpool<<<gpu__blocks(planes * oh * ow), 256, 0, g->stream>>>(out, argmax, in, planes, h, w, oh, ow, k, stride, pad);
    return launched(g, "maxpool_forward");
}

int gpu_maxpool_backward(gpu_ctx *g, float *din, const float *dout, const int32_t *argmax, int c, int n, int h, int w,
                         int k, int stride, int pad)
{
    int oh = nn_conv_out(h, k, stride, pad), ow = nn_conv_out(w, k, stride, pad);
    size_t planes = (size_t)c * n;
    k_maxpool_bwd<<<gpu__blocks(planes * h * w), 256, 0, g->stream>>>(din, dout, argmax, planes, h, w, oh, ow, k,
                                                                      stride, pad);
    return launched(g, "maxpool_backward");
}

static __global__ void k_avgpool(float *out, const float *in, int c, int n, int hw)
{
    GRID_LOOP(t, (size_t)c * n) {
        int ch = (int)(t / n), img = (int)(t % n);
        const float *x = in + t * hw;
        double s = 0.0; /* in double, as nn_avgpool_forward */
        for (int i = 0; i < hw; i++) s += x[i];
        out[(size_t)img * c + ch] = (float)(s / hw);
    }
}

static __global__ void k_avgpool_bwd(float *din, const float *dout, int c, int n, int hw)
{
    GRID_LOOP(t, (size_t)c * n * hw) {
        size_t plane = t / hw;
        int ch = (int)(plane / n), img = (int)(plane % n);
        din[t] = dout[(size_t)img * c + ch] / (float)hw;
    }
}

int gpu_avgpool_forward(gpu_ctx *g, float *out, const float *in, int c, int n, int hw)
{
    k_avgpool<<<gpu__blocks((size_t)c * n), 256, 0, g->stream>>>(out, in, c, n, hw);
    return launched(g, "avgpool_forward");
}

int gpu_avgpool_backward(gpu_ctx *g, float *din, const float *dout, int c, int n, int hw)
{
    k_avgpool_bwd<<<gpu__blocks((size_t)c * n * hw), 256, 0, g->stream>>>(din, dout, c, n, hw);
    return launched(g, "avgpool_backward");
}

/* ---- dense ---- */

static __global__ void k_bias(float *out, const float *bias, int n, int d)
{
    GRID_LOOP(t, (size_t)n * d) out[t] += bias[t % d];
}

static __global__ void k_colsum(float *dbias, const float *dout, int n, int d)
{
    GRID_LOOP(j, (size_t)d) {
        float s = 0.0f;
        for (int i = 0; i < n; i++) s += dout[(size_t)i * d + j];
        dbias[j] += s;
    }
}

/* Row-major C[m x n] = A' B' + beta C (A' = A or A^T as ta, likewise B): a 16 x 16 shared-memory tile
 * kernel in plain fp32, each output summed in k order by one thread (deterministic). Own kernel, not
 * cuBLAS: the dense layers here are the small heads, and linking libcublas costs every process that
 * links the trainer ~200 MB of resident memory and 70 ms at start-up, GPU or not. */
#define TILE 16
static __global__ void k_gemm(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                              float beta, float *c, int ldc)
{
    __shared__ float as[TILE][TILE], bs[TILE][TILE + 1];
    int row = blockIdx.y * TILE + threadIdx.y, col = blockIdx.x * TILE + threadIdx.x;
    float s = 0.0f;
    for (int k0 = 0; k0 < k; k0 += TILE) {
        int ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;
        as[threadIdx.y][threadIdx.x] = row < m && ka < k ? (ta ? a[(size_t)ka * lda + row] : a[(size_t)row * lda + ka]) : 0.0f;
        bs[threadIdx.y][threadIdx.x] = col < n && kb < k ? (tb ? b[(size_t)col * ldb + kb] : b[(size_t)kb * ldb + col]) : 0.0f;
        __syncthreads();
        for (int i = 0; i < TILE; i++) s = __fmaf_rn(as[threadIdx.y][i], bs[i][threadIdx.x], s);
        __syncthreads();
    }
    if (row < m && col < n) {
        float *o = &c[(size_t)row * ldc + col];
        *o = beta != 0.0f ? *o * beta + s : s;
    }
}

static int gemm(gpu_ctx *g, int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                float beta, float *c, int ldc, const char *what)
{
    dim3 block(TILE, TILE), grid((n + TILE - 1) / TILE, (m + TILE - 1) / TILE);
    k_gemm<<<grid, block, 0, g->stream>>>(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
    return launched(g, what);
}

int gpu_linear_forward(gpu_ctx *g, float *out, const float *in, const float *weight, const float *bias, int n,
                       int in_dim, int out_dim)
{
    /* out[n x out] = in[n x in] W^T */
    int rc = gemm(g, 0, 1, n, out_dim, in_dim, in, in_dim, weight, in_dim, 0.0f, out, out_dim, "linear");
    if (!rc && bias) {
        k_bias<<<gpu__blocks((size_t)n * out_dim), 256, 0, g->stream>>>(out, bias, n, out_dim);
        rc = launched(g, "linear bias");
    }
    return rc;
}

int gpu_linear_backward(gpu_ctx *g, float *din, float *dweight, float *dbias, const float *dout, const float *in,
                        const float *weight, int n, int in_dim, int out_dim)
{
    /* dW[out x in] += dout^T in;  din[n x in] = dout W */
    int rc = gemm(g, 1, 0, out_dim, in_dim, n, dout, out_dim, in, in_dim, 1.0f, dweight, in_dim, "linear dW");
    if (!rc && dbias) {
        k_colsum<<<gpu__blocks((size_t)out_dim), 256, 0, g->stream>>>(dbias, dout, n, out_dim);
        rc = launched(g, "linear dbias");
    }
    if (!rc && din) rc = gemm(g, 0, 0, n, in_dim, out_dim, dout, out_dim, weight, in_dim, 0.0f, din, in_dim, "linear din");
    return rc;
}
