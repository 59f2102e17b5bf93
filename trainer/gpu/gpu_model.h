/* trainer/gpu/gpu_model.h — a model's backbone on a CUDA device: device copies of the parameters,
 * gradients, running statistics and every activation, walked in model.c's order with gpu.h's layers.
 * The host model stays the one of record for names, safetensors and the heads: gpu_model_push copies its
 * parameters and buffers over, gpu_model_pull copies them back (a checkpoint is the host's file, so a job
 * paused on a GPU resumes on the CPU). num_batches_tracked is counted on the host. Job thread only.
 * Errors: 0 / negative errno, the reason in err (set-up) or gpu_error (steps). */
#ifndef CT_GPU_MODEL_H
#define CT_GPU_MODEL_H
#include "trainer/gpu/gpu.h"
#include "trainer/model.h"

typedef struct gpu_model gpu_model; /* opaque */

/* Device bytes gpu_model_new will take from an arena for m (to size gpu_ctx_new's arena). */
size_t gpu_model_arena_bytes(const model *m);
/* Plan convs and carve every buffer from g's arena; m is borrowed and must outlive the gpu_model. */
int  gpu_model_new(gpu_model **out, gpu_ctx *g, model *m, char *err, size_t errlen);
void gpu_model_free(gpu_model *gm); /* NULL-safe; the arena itself is the context's */
int  gpu_model_push(gpu_model *gm);  /* host params + running stats -> device */
int  gpu_model_pull(gpu_model *gm);  /* device params + running stats -> host (waits) */
/* After a step whose loss ran on the host: the host's head gradients (fc, contrastor) go to the device
 * and the device's backbone gradients come to the host, so both hold the whole gradient (waits). */
int  gpu_model_sync_grads(gpu_model *gm);
int  gpu_model_push_head_grads(gpu_model *gm); /* only the host's head gradients to the device */
int  gpu_model_pull_heads(gpu_model *gm);      /* only the heads' parameters to the host (waits) */
/* SGD's momentum buffer (num_params floats, host) to / from the device, for checkpoints */
int  gpu_model_push_momentum(gpu_model *gm, const float *host);
int  gpu_model_pull_momentum(gpu_model *gm, float *host);
int  gpu_model_zero_grad(gpu_model *gm);
/* images host NCHW [n][in_ch][S][S]; the features stay on the device (gpu_model_features), feat_host, when
 * not NULL, gets a copy [n x feat_dim]. Same rules as model_forward (n, train). */
int  gpu_model_forward(gpu_model *gm, const float *images, int n, int train, float *feat_host);
/* dfeat host [n x feat_dim] (NULL: the device buffer gpu_model_dfeat already holds it); grads += */
int  gpu_model_backward(gpu_model *gm, const float *dfeat, int n);
float *gpu_model_features(gpu_model *gm); /* device [n x feat_dim] */
float *gpu_model_dfeat(gpu_model *gm);    /* device [max_batch x feat_dim] */
/* SGD over every parameter on the device (sgd.h's rule), heads included (gpu_model_sync_grads first when
 * the loss ran on the host; gpu_model_pull after, for the host's copy of the heads). */
int  gpu_model_sgd(gpu_model *gm, float lr, float momentum, float weight_decay, int nesterov);

#endif
