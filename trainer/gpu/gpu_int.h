/* trainer/gpu/gpu_int.h — what the backend's .cu files share (not part of gpu.h's interface). */
#ifndef CT_GPU_INT_H
#define CT_GPU_INT_H
#include "trainer/gpu/gpu.h"
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cudnn.h>

#define GPU_MAX_CONVS 256 /* plans a context holds: resnet152 has 155 convs */

struct gpu_conv {
    gpu_ctx *g;
    nn_conv c;
    int h, w, oh, ow, max_n;
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    size_t ws_bytes;                 /* of the context's shared workspace, this plan's need */
    size_t nx, nw, ny;               /* elements of input (at max_n), weights, output: bf16 staging sizes */
};

struct gpu_ctx {
    int dev, tf32, bf16;
    cudaStream_t stream;
    cudnnHandle_t dnn;
    cudnnTensorDescriptor_t t1, t2;  /* scratch descriptors the BN calls set per call (no allocation) */
    char *arena;
    size_t arena_bytes, used;
    float *ws;                       /* the shared conv workspace, after the arena */
    size_t ws_bytes, ws_need;
    /* GPU_BF16: staging for one conv at a time (input / its gradient, weights, output / its gradient,
     * weight gradient), carved after the workspace; sizes are the largest plan's */
    __nv_bfloat16 *bx, *bw, *by, *bdw;
    size_t bx_n, bw_n, by_n;
    struct gpu_conv convs[GPU_MAX_CONVS];
    int nconvs;
    char err[256];
};

/* Record the first failure (later ones are usually its consequence); always returns -EIO. */
int gpu__fail(gpu_ctx *g, const char *what, const char *why);
int gpu__cuda(gpu_ctx *g, cudaError_t e, const char *what);       /* 0 or gpu__fail */
int gpu__dnn(gpu_ctx *g, cudnnStatus_t s, const char *what);
/* A CNHW activation as cuDNN's NCHW descriptor with CNHW strides. */
cudnnStatus_t gpu__cnhw_desc(cudnnTensorDescriptor_t d, int n, int c, int h, int w);
cudnnStatus_t gpu__cnhw_desc_t(cudnnTensorDescriptor_t d, cudnnDataType_t t, int n, int c, int h, int w);
size_t gpu__bf16_bytes(const gpu_ctx *g); /* the staging buffers' device bytes (0 unless GPU_BF16) */
int gpu__blocks(size_t len); /* grid size for a 256-thread 1-D launch */

#endif
