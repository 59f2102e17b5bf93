/* trainer/model.h — the ResNet backbones (torchvision resnet18/34/50/101/152, CIFAR resnet20/32/56)
 * plus the classifier and contrastor weights, in one tensor table with torchvision's names so
 * safetensors checkpoints map 1:1 (and load into torchvision with strict=True).
 * model_forward/model_backward run the backbone only (images -> pooled feature h); the loss module
 * runs the heads through the tensors it finds by name (fc.weight, contrastor.{0,2}.{weight,bias}).
 * Everything is allocated by model_new (conv plans included); forward/backward never allocate or fail
 * on valid input. One job thread owns a model; models share no mutable state, so several jobs (each
 * with its own model) run at once without locks. Errors: negative return (-EINVAL, -ENOMEM, -EIO) + text in err.
 */
#ifndef CT_MODEL_H
#define CT_MODEL_H
#include <stddef.h>
#include <stdint.h>
#include "trainer/rng.h"

typedef struct model model; /* opaque */

#define MODEL_EXTRA_BATCHES 4

typedef struct model_config {
    char arch[16];    /* "resnet18" "resnet34" "resnet50" "resnet101" "resnet152" | "resnet20" "resnet32" "resnet56" */
    int in_channels;  /* 1 or 3 */
    int image_size;   /* square inputs S x S */
    int small_stem;   /* torchvision archs: 3x3 stride-1 conv1, no max pool (CIFAR); the CIFAR archs always have it */
    int num_classes;  /* fc.weight [num_classes x feat_dim], no bias; 0 = no classifier */
    int contrast_dim; /* contrastor Linear(d,d) -> ReLU -> Linear(d, contrast_dim); 0 = none */
    int max_batch;    /* activations are sized for this many images */
    /* Other batch sizes model_forward/backward will run, besides max_batch (0 = unused), each in
     * [1, max_batch]: e.g. the short last validation batch (times 2 for SimCLR's stacked views). The
     * convs are prepared for max_batch and these at model_new; any other n still works but runs the
     * slower im2col path (model_batch_prepared tells). */
    int extra_batch[MODEL_EXTRA_BATCHES];
    /* The normalisation the inputs were given, (pixel/255 - mean) / std per channel: model_save records
     * it (and image_size) so an evaluation feeds the weights as training did. std[0] 0 = not recorded. */
    float input_mean[3], input_std[3];
} model_config;

enum model_kind {
    MODEL_PARAM,   /* trained: data and grad */
    MODEL_BUFFER,  /* BN running_mean / running_var: data, grad NULL */
    MODEL_COUNTER  /* BN num_batches_tracked: a 0-dim int64 in i64, data and grad NULL */
};

typedef struct model_tensor {
    char name[64];
    enum model_kind kind;
    int ndim;          /* 0 for counters */
    int shape[4];
    size_t numel;
    float *data;       /* owned by the model; NULL for counters */
    float *grad;       /* MODEL_PARAM only, else NULL */
    int64_t *i64;      /* MODEL_COUNTER only, else NULL */
} model_tensor;

/* Validate cfg and allocate everything (parameters, gradients, running stats, activations kept for
 * backward at max_batch, gradient and conv workspaces). Parameters are zero until model_init/load. */
int  model_new(model **out, const model_config *cfg, char *err, size_t errlen);
void model_free(model *m); /* NULL-safe */
/* Bytes model_new would allocate for cfg, without allocating (to check a job against a memory limit). */
int  model_estimate_bytes(const model_config *cfg, size_t *out, char *err, size_t errlen);
size_t model_memory_bytes(const model *m); /* everything model_new allocated */
/* 1 if convs were prepared for batch n (n is max_batch or an extra_batch): a setup-time check that
 * every batch size a job will run takes the fast path. */
int  model_batch_prepared(const model *m, int n);

/* torchvision's init: convs kaiming_normal (fan_out, relu), BN weight 1 bias 0, running stats 0/1,
 * counters 0; fc and contrastor as nn.Linear's default (uniform +-1/sqrt(fan_in), bias likewise). */
void model_init(model *m, rng_t *rng);

const model_config *model_get_config(const model *m);
int  model_feature_dim(const model *m); /* 64 (CIFAR), 512 (resnet18/34), 2048 (resnet50+) */
int  model_num_tensors(const model *m);
model_tensor *model_tensor_at(model *m, int i);           /* table order = torchvision state_dict order */
model_tensor *model_find(model *m, const char *name);     /* NULL if absent */
/* All MODEL_PARAM tensors are views into one flat array in table order (grads likewise), so the
 * optimiser can run over one vector. */
float *model_params(model *m);
float *model_grads(model *m);
size_t model_num_params(const model *m);
void model_zero_grad(model *m); /* all parameter grads, heads included */

/* images: NCHW float [n][in_channels][S][S], already normalised, 1 <= n <= max_batch.
 * train != 0: BN uses batch statistics, updates running stats and num_batches_tracked (PyTorch's
 * momentum 0.1, eps 1e-5) and caches what model_backward needs.
 * Returns the features [n x feat_dim] (owned by the model, valid until the next forward), or NULL
 * when n is out of range or a train batch would give BN a single value per channel. */
const float *model_forward(model *m, const float *images, int n, int train);
/* Accumulates (+=) backbone parameter grads for dL/dfeatures dfeat [n x feat_dim]; needs the last
 * forward to have been a train forward of the same n (else -EINVAL, nothing touched). */
int  model_backward(model *m, const float *dfeat, int n);

/* model_load flags */
#define MODEL_LOAD_HEADS_OPTIONAL 1 /* fc / contrastor tensors absent from the file keep their current values */
#define MODEL_LOAD_SKIP_HEADS     2 /* ignore fc.* / contrastor.* in the file (e.g. torchvision's 1000-class fc) */

/* Load a safetensors file with torchvision names. All-or-nothing: every problem (missing,
 * unexpected, mis-shaped, wrong dtype) is listed by name in msg and the model is left untouched.
 * Accepts F32/F16/BF16/F64 floats, num_batches_tracked as I64 (or any integer/float dtype).
 * fc.bias: we have no classifier bias, so it is accepted only when all zeros (what model_save writes),
 * or ignored with MODEL_LOAD_SKIP_HEADS. On success msg lists what was skipped or kept (may be empty). */
int  model_load(model *m, const char *path, int flags, char *msg, size_t msglen);
/* Write every tensor (table order) plus fc.bias = zeros after fc.weight, so torchvision's strict
 * load_state_dict accepts the file; the contrastor only when with_contrastor. Atomic (st_save).
 * Metadata: coretuned.arch, .in_channels, .small_stem, .image_size, and .input_mean / .input_std
 * (in_channels comma-separated floats) when recorded. */
int  model_save(model *m, const char *path, int with_contrastor, char *err, size_t errlen);

#endif
