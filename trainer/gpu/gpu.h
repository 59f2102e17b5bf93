/* trainer/gpu/gpu.h — the CUDA backend: nn.h's layers on device memory (cuDNN and small kernels of our own).
 * Same layout and conventions as nn.h: activations CNHW, features row-major [n x d], PyTorch weight
 * layouts, outputs first, backward WRITES input gradients and ACCUMULATES parameter gradients. Every
 * pointer a layer takes is device memory carved from the context's one arena (gpu_alloc, at set-up).
 * A context belongs to one thread (the job's): it owns a stream and a cuDNN handle.
 * Errors: set-up returns 0 / negative errno with a reason in err; a layer returns 0 or -EIO and the
 * context keeps the first failure's text (gpu_error), since a CUDA error is sticky for the step anyway.
 * Built without CUDA (make CUDA=0) every function is there and reports zero devices / -ENODEV. */
#ifndef CT_GPU_H
#define CT_GPU_H
#include <stddef.h>
#include <stdint.h>
#include "trainer/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Visible CUDA devices (CUDA_VISIBLE_DEVICES applies; "cuda:N" indexes these). 0 when built without
 * CUDA, without a driver or without a device; why goes into reason (may be NULL). Any thread. */
int  gpu_device_count(char *reason, size_t reasonlen);
/* The device's name ("NVIDIA H200") and memory; -ENODEV when dev is not visible. */
int  gpu_device_info(int dev, char *name, size_t namelen, size_t *total_bytes);

/* The device's PCI bus id ("0000:3B:00.0"), which NVML takes to find the same device (its own indices
 * ignore CUDA_VISIBLE_DEVICES); -ENODEV when dev is not visible. */
int  gpu_device_pci_bus_id(int dev, char *buf, size_t len);

typedef struct gpu_ctx gpu_ctx; /* opaque */
/* Precision of the convolutions (every tensor a layer takes or returns stays fp32 either way). */
enum { GPU_FP32 = 0,   /* every product in fp32 */
       GPU_TF32 = 1,   /* cuDNN may use TF32 tensor cores */
       GPU_BF16 = 2 }; /* mixed: each conv casts its fp32 input, weights and output gradient to bf16 staging
                        * buffers, runs on bf16 tensor cores with fp32 accumulation, and casts back (the
                        * weight gradient is added to the fp32 one): master weights, BN, SGD stay fp32 */
/* Context on visible device dev (stream, cuDNN handle; no device memory yet); precision: GPU_*. */
int  gpu_ctx_new(gpu_ctx **out, int dev, int precision, char *err, size_t errlen);
void gpu_ctx_free(gpu_ctx *g); /* NULL-safe */
/* The one device allocation: bytes for gpu_alloc plus the conv workspace every plan made so far needs
 * (shared: one conv runs at a time). Once per context (-EBUSY after); -ENOMEM with the reason in err. */
int  gpu_ctx_reserve(gpu_ctx *g, size_t bytes, char *err, size_t errlen);
size_t gpu_ctx_workspace_bytes(const gpu_ctx *g); /* the largest conv workspace planned so far (+ bf16 staging) */
size_t gpu_ctx_peak_bytes(const gpu_ctx *g);      /* device memory the context holds (arena + workspace) */
/* Device memory in use on g's device by everyone (cudaMemGetInfo: total - free), cuDNN's own
 * allocations and the CUDA context included; -EIO on failure. */
int  gpu_ctx_device_used(gpu_ctx *g, size_t *bytes);
/* nfloats from the arena, 256-byte aligned; NULL when the arena is exhausted (set-up only). */
float *gpu_alloc(gpu_ctx *g, size_t nfloats);
size_t gpu_arena_used(const gpu_ctx *g);
const char *gpu_error(const gpu_ctx *g); /* the first failure's text, "" when none */
/* Copies on the context's stream; download waits for it. */
int  gpu_upload(gpu_ctx *g, float *dev_dst, const float *host_src, size_t n);
int  gpu_download(gpu_ctx *g, float *host_dst, const float *dev_src, size_t n);
int  gpu_memset0(gpu_ctx *g, float *dev, size_t n);
int  gpu_sync(gpu_ctx *g); /* waits for the stream; 0 or -EIO */

/* ---- conv2d, no bias: a plan per conv and input size, made at set-up for batches 1..max_n ----
 * Algorithms are fixed at set-up: cuDNN's heuristic ranking, first one that is deterministic (and, with
 * tf32 off, runs in plain fp32); plans need no device memory, and are made before gpu_ctx_reserve,
 * which sizes the shared workspace for the largest of them (a plan made after needing more: -ENOSPC). */
typedef struct gpu_conv gpu_conv; /* opaque, owned by the context (freed with it) */
int  gpu_conv_new(gpu_conv **out, gpu_ctx *g, const nn_conv *c, int h, int w, int max_n, char *err, size_t errlen);
int  gpu_conv_forward(gpu_conv *p, float *out, const float *in, const float *weight, int n);
/* din may be NULL (first layer); dweight += */
int  gpu_conv_backward(gpu_conv *p, float *din, float *dweight, const float *dout, const float *in,
                       const float *weight, int n);

/* ---- batch norm 2d over CNHW (c channels of m = n*h*w values), cuDNN spatial mode ----
 * relu and mask as nn.h; mask_tmp (m*c floats) is where backward writes the masked dout. */
int  gpu_bn_forward_train(gpu_ctx *g, float *out, float *mean, float *rstd, float *running_mean,
                          float *running_var, const float *in, const float *gamma, const float *beta,
                          int c, int n, int hw, float momentum, float eps, int relu);
int  gpu_bn_forward_eval(gpu_ctx *g, float *out, const float *in, const float *gamma, const float *beta,
                         const float *running_mean, const float *running_var, int c, int n, int hw, float eps,
                         int relu);
int  gpu_bn_backward(gpu_ctx *g, float *din, float *dgamma, float *dbeta, float *mask_tmp, const float *dout,
                     const float *mask, const float *in, const float *mean, const float *rstd,
                     const float *gamma, int c, int n, int hw, float eps);

/* ---- elementwise, pooling, dense: nn.h's rules ---- */
int  gpu_relu_forward(gpu_ctx *g, float *out, const float *in, size_t len);
int  gpu_relu_backward(gpu_ctx *g, float *din, const float *dout, const float *out, size_t len);
int  gpu_add_forward(gpu_ctx *g, float *out, const float *a, const float *b, size_t len);
/* images NCHW [n][c][hw] -> CNHW [c][n][hw] (the layout every layer takes) */
int  gpu_nchw_to_cnhw(gpu_ctx *g, float *out, const float *in, int n, int c, int hw);
int  gpu_maxpool_forward(gpu_ctx *g, float *out, int32_t *argmax, const float *in, int c, int n, int h, int w,
                         int k, int stride, int pad);
int  gpu_maxpool_backward(gpu_ctx *g, float *din, const float *dout, const int32_t *argmax, int c, int n,
                          int h, int w, int k, int stride, int pad);
int  gpu_avgpool_forward(gpu_ctx *g, float *out, const float *in, int c, int n, int hw);
int  gpu_avgpool_backward(gpu_ctx *g, float *din, const float *dout, int c, int n, int hw);
int  gpu_linear_forward(gpu_ctx *g, float *out, const float *in, const float *weight, const float *bias,
                        int n, int in_dim, int out_dim);
int  gpu_linear_backward(gpu_ctx *g, float *din, float *dweight, float *dbias, const float *dout,
                         const float *in, const float *weight, int n, int in_dim, int out_dim);
/* sgd.h's sgd_step, elementwise on the device (same float arithmetic, so it matches bit for bit
 * unless the compiler contracts to FMA differently). */
int  gpu_sgd_step(gpu_ctx *g, float *params, float *momentum_buf, const float *grads, size_t n, float lr,
                  float momentum, float weight_decay, int nesterov);

#ifdef __cplusplus
}
#endif
#endif
