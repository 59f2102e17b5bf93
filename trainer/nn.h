/* trainer/nn.h — layer kernels, one forward and one backward per layer (llm.c style).
 *
 * Layouts: image activations are either channel-major "CNHW", x[c][n][h][w] (NN_CNHW), so a
 * convolution over the whole batch is one GEMM (weights [cout x cin*k*k] times columns
 * [cin*k*k x n*oh*ow]), or oneDNN's blocked nChw{b}c, x[n][c/b][h][w][c%b] (b >= 1; b = 1 is plain
 * NCHW), the layout its convolution kernels run on, so a net whose convs all run there needs no
 * reorder between layers. The image kernels take the layout as `blk` (NN_CNHW or b; c % b == 0).
 * Feature matrices (after global pooling) are row-major [n x d], one row per sample. Weight layouts
 * are PyTorch's, so safetensors map 1:1.
 *
 * Conventions: outputs first, then caches, then inputs. Backward functions WRITE input gradients
 * (din, may be NULL when not needed) and ACCUMULATE (+=) parameter gradients. Only setup
 * (nn_conv_plan_new) allocates or fails; the kernels do neither: shapes are checked when the model
 * is built, work buffers are passed in. Called from the job's thread; kernels use OpenMP/OpenBLAS
 * threads as set by the trainer. No global mutable state: any number of jobs may run at once.
 */
#ifndef CT_NN_H
#define CT_NN_H
#include <stddef.h>
#include <stdint.h>

/* ---- conv2d, no bias (nn_conv.c) ----
 * A conv runs through a plan, made at setup for one conv on h x w inputs and the batch sizes its
 * owner will run (e.g. the training batch and a short last validation batch). For each declared batch
 * size the plan holds, where that was measured faster, oneDNN primitives built once; anything else
 * (a shape oneDNN loses on, a batch size not declared) runs im2col + sgemm, correct but slower.
 * 3x3 stride-1 convs take oneDNN's Winograd F(4x4, 3x3) kernels where the CPU has them (AVX-512):
 * 1.0-2.6x faster, for more rounding (a resnet20 step's gradient sums up to 2e-3 relative from a
 * float64 reference, against 1e-6 direct; cuDNN's fp32 trade-off, docs/performance.md).
 * CT_CONV_WINOGRAD=0 in the environment when a plan is made keeps it on the direct kernels.
 * A plan is used by one thread at a time (it rebinds its memory objects on every call); plans share
 * no mutable state, so every job owns its plans and no call takes a lock. */
#define NN_CNHW 0
typedef struct nn_conv { int cin, cout, k, stride, pad; } nn_conv;
typedef struct nn_conv_plan nn_conv_plan; /* opaque */
static inline int nn_conv_out(int size, int k, int stride, int pad) { return (size + 2 * pad - k) / stride + 1; }
/* Plan conv c on h x w inputs for the batch sizes ns[0..count-1] (each >= 1, duplicates ignored).
 * The plan then runs any batch 1 <= n <= max(ns). Returns 0, -EINVAL (bad shape), -ENOMEM. A shape
 * oneDNN cannot take is not an error: it runs on im2col. Free with nn_conv_plan_free (NULL-safe). */
int  nn_conv_plan_new(nn_conv_plan **out, const nn_conv *c, int h, int w, const int *ns, int count);
/* The same for blocked activations: every declared batch runs on oneDNN with its input in layout
 * src_blk and its output in dst_blk (both >= 1), no reorder of either; any other n runs im2col on
 * CNHW as above. need_din = 0: backward is never asked for din (a stem), so none is prepared, and the
 * input (a few channels) may be reordered into what the kernels take.
 * -ENOTSUP when oneDNN has no JIT kernel taking these layouts for every declared batch (the caller
 * then plans CNHW); a failed execution afterwards (none is known) leaves NaN in what it was to write. */
int  nn_conv_plan_new_blocked(nn_conv_plan **out, const nn_conv *c, int h, int w, const int *ns, int count,
                              int src_blk, int dst_blk, int need_din);
/* The channel block oneDNN's convolutions want on this CPU (16 with AVX-512, 8 with AVX2), 0 if none. */
int  nn_conv_preferred_block(void);
void nn_conv_plan_free(nn_conv_plan *p);
/* Floats of scratch forward/backward need for any batch the plan runs (im2col is chunked so this
 * stays bounded); the caller passes that many as ws. */
size_t nn_conv_plan_workspace(const nn_conv_plan *p);
/* out[cout][n][oh][ow] = conv(in[cin][n][h][w], weight[cout][cin][k][k]), 1 <= n <= max(ns), in the
 * plan's layouts for a declared n of a blocked plan, else CNHW */
void nn_conv_forward(float *out, float *ws, const float *in, const float *weight, nn_conv_plan *p, int n);
void nn_conv_backward(float *din, float *dweight, float *ws, const float *dout, const float *in,
                      const float *weight, nn_conv_plan *p, int n);

/* ---- batch norm 2d over the n*hw values of each channel, in layout blk (nn_conv.c) ----
 * Train mode: normalise with batch statistics, save mean and rstd = 1/sqrt(var + eps) for backward,
 * update running stats as PyTorch does (running_var uses the unbiased variance).
 * relu = 1 fuses the ReLU that follows the BN (out = relu(bn(in)), nn_relu_forward's rule) into the
 * same pass. Backward: mask, when not NULL, is that fused ReLU's output: dout is taken as 0 wherever
 * mask <= 0 (nn_relu_backward's rule), again without a pass of its own; NULL: dout as is. */
void nn_bn_forward_train(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                         const float *in, const float *gamma, const float *beta,
                         int c, int n, int hw, int blk, float momentum, float eps, int relu);
void nn_bn_forward_eval(float *out, const float *in, const float *gamma, const float *beta,
                        const float *running_mean, const float *running_var, int c, int n, int hw, int blk,
                        float eps, int relu);
void nn_bn_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *mask,
                    const float *in, const float *mean, const float *rstd, const float *gamma, int c, int n,
                    int hw, int blk);

/* ---- elementwise (nn_conv.c) ---- */
/* ReLU as torch: out = in unless in <= 0 (so NaN propagates); may run in place. Backward masks on the
 * OUTPUT: din = dout unless out <= 0 (torch's threshold_backward). */
void nn_relu_forward(float *out, const float *in, size_t len);
void nn_relu_backward(float *din, const float *dout, const float *out, size_t len);
void nn_add_forward(float *out, const float *a, const float *b, size_t len);   /* residual add */

/* ---- pooling, in layout blk (nn_conv.c) ---- */
/* Max pool k x k, stride, pad (-inf padding); argmax[] (int32 pixel index into the input plane, one
 * per output value in the output's layout) for backward. */
void nn_maxpool_forward(float *out, int32_t *argmax, const float *in, int c, int n, int h, int w,
                        int k, int stride, int pad, int blk);
void nn_maxpool_backward(float *din, const float *dout, const int32_t *argmax, int c, int n,
                         int h, int w, int k, int stride, int pad, int blk);
/* Global average pool: in (c x n planes of hw) -> out[n][c] (row-major features). */
void nn_avgpool_forward(float *out, const float *in, int c, int n, int hw, int blk);
void nn_avgpool_backward(float *din, const float *dout, int c, int n, int hw, int blk);

/* ---- dense (nn_dense.c) ---- */
/* Row-major C = alpha op(A) op(B) + beta C (op = transpose when ta / tb): every product of the
 * trainer goes through here, on the calling thread's OpenMP threads. */
void nn_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
             float beta, float *c, int ldc);
/* out[n][out_dim] = in[n][in_dim] * weight[out_dim][in_dim]^T + bias (bias may be NULL). */
void nn_linear_forward(float *out, const float *in, const float *weight, const float *bias,
                       int n, int in_dim, int out_dim);
/* dweight += dout^T in; dbias += column sums (may be NULL); din = dout * weight (may be NULL). */
void nn_linear_backward(float *din, float *dweight, float *dbias, const float *dout, const float *in,
                        const float *weight, int n, int in_dim, int out_dim);
/* Row-wise L2 normalisation: out = x / max(||x||, 1e-12), as torch.nn.functional.normalize. */
void nn_l2norm_forward(float *out, const float *in, int n, int d);
void nn_l2norm_backward(float *din, const float *dout, const float *in, int n, int d);

#endif
