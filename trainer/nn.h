/* trainer/nn.h — layer kernels, one forward and one backward per layer (llm.c style).
 *
 * Layout: image activations are channel-major "CNHW", x[c][n][h][w], so a convolution over the
 * whole batch is one GEMM (weights [cout x cin*k*k] times columns [cin*k*k x n*oh*ow]) and batch
 * norm reduces over one contiguous row per channel. Feature matrices (after global pooling) are
 * row-major [n x d], one row per sample. Weight layouts are PyTorch's, so safetensors map 1:1.
 *
 * Conventions: outputs first, then caches, then inputs. Backward functions WRITE input gradients
 * (din, may be NULL when not needed) and ACCUMULATE (+=) parameter gradients. Nothing here
 * allocates or fails: shapes are checked when the model is built; work buffers are passed in.
 * Called from the job's thread; kernels use OpenMP/OpenBLAS threads as set by the trainer.
 */
#ifndef CT_NN_H
#define CT_NN_H
#include <stddef.h>
#include <stdint.h>

/* ---- conv2d, no bias (nn_conv.c) ---- */
typedef struct nn_conv { int cin, cout, k, stride, pad; } nn_conv;
static inline int nn_conv_out(int size, int k, int stride, int pad) { return (size + 2 * pad - k) / stride + 1; }
/* Floats of scratch the conv needs for a batch of n images of h x w (im2col, chunked so it stays bounded). */
size_t nn_conv_workspace(const nn_conv *c, int n, int h, int w);
/* out[cout][n][oh][ow] = conv(in[cin][n][h][w], weight[cout][cin][k][k]) */
void nn_conv_forward(float *out, float *ws, const float *in, const float *weight,
                     const nn_conv *c, int n, int h, int w);
void nn_conv_backward(float *din, float *dweight, float *ws, const float *dout, const float *in,
                      const float *weight, const nn_conv *c, int n, int h, int w);

/* ---- batch norm 2d over CNHW rows of m = n*h*w values (nn_conv.c) ----
 * Train mode: normalise with batch statistics, save mean and rstd = 1/sqrt(var + eps) for backward,
 * update running stats as PyTorch does (running_var uses the unbiased variance). */
void nn_bn_forward_train(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                         const float *in, const float *gamma, const float *beta,
                         int c, int m, float momentum, float eps);
void nn_bn_forward_eval(float *out, const float *in, const float *gamma, const float *beta,
                        const float *running_mean, const float *running_var, int c, int m, float eps);
void nn_bn_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                    const float *mean, const float *rstd, const float *gamma, int c, int m);

/* ---- elementwise (nn_conv.c) ---- */
void nn_relu_forward(float *out, const float *in, size_t len);              /* may run in place */
void nn_relu_backward(float *din, const float *dout, const float *out, size_t len); /* mask from OUTPUT */
void nn_add_forward(float *out, const float *a, const float *b, size_t len);   /* residual add */

/* ---- pooling (nn_conv.c) ---- */
/* Max pool k x k, stride, pad (-inf padding); argmax[] (int32 index into the input plane) for backward. */
void nn_maxpool_forward(float *out, int32_t *argmax, const float *in, int c, int n, int h, int w,
                        int k, int stride, int pad);
void nn_maxpool_backward(float *din, const float *dout, const int32_t *argmax, int c, int n,
                         int h, int w, int k, int stride, int pad);
/* Global average pool: in[c][n][h*w] -> out[n][c] (row-major features). */
void nn_avgpool_forward(float *out, const float *in, int c, int n, int hw);
void nn_avgpool_backward(float *din, const float *dout, int c, int n, int hw);

/* ---- dense (nn_dense.c) ---- */
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
