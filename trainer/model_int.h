/* trainer/model_int.h — the model's plan (units, blocks, buffers), shared by model.c and the CUDA
 * backend's device copy of it (trainer/gpu/gpu_model.c), which walks the same lists. Not an API: model.h
 * is. Same thread rule: the job's thread owns the model. */
#ifndef CT_MODEL_INT_H
#define CT_MODEL_INT_H
#include "trainer/model.h"
#include "trainer/nn.h"

#define BN_MOMENTUM 0.1f
#define BN_EPS 1e-5f

/* One conv (no bias) followed by BN and, unless it ends a block, ReLU (in place on z). */
typedef struct unit {
    nn_conv conv;
    nn_conv_plan *plan; /* owned when owns_plan, else borrowed from an earlier unit of the same shape */
    int owns_plan;
    int h, w, oh, ow; /* input and output spatial size */
    int relu;
    int tensor;       /* table index of the conv weight; the BN's 5 tensors follow it */
    int in_unit;      /* where x comes from: unit index, or -1 = image buffer, -2 = pool output */
    const float *x;   /* conv input [cin][n][h][w] (borrowed from another buffer) */
    float *y;         /* conv output [cout][n][oh][ow], kept for BN backward */
    float *z;         /* BN (+ReLU) output, kept as the next input and the ReLU mask */
    float *mean, *rstd;
    float *weight, *dweight, *gamma, *dgamma, *beta, *dbeta, *rmean, *rvar;
    int64_t *nbt;
} unit;

/* Residual block: units [first, first + count) in the main path, optional projection unit ds. */
typedef struct block { int first, count, ds; } block;

struct model {
    model_config cfg;
    int feat_dim, in_ch, size;
    int pool;                      /* torchvision max pool 3x3/2 after the stem */
    int pool_c, pool_h, pool_w, pool_oh, pool_ow;
    int last_c, last_hw;           /* last stage, for the average pool */

    unit *units;
    int nunits;
    block *blocks;
    int nblocks;

    model_tensor *tensors;
    size_t *toff;                  /* per tensor: offset into params / buffers / counters */
    int ntensors;
    size_t nparams, nbuffers, ncounters;

    /* size table (floats unless noted), filled by plan() */
    size_t act_floats, grad_floats, ws_floats, x0_floats, pool_floats, feat_floats;
    size_t bytes;

    float *params, *grads, *buffers;
    int64_t *counters;
    float *act;                    /* all activations + x0 + pool + features + gradient + conv workspace */
    int32_t *argmax;
    float *x0, *pool_out, *feat, *ws;
    float *gbuf[3];                /* gradient ping-pong buffers, each grad_floats */

    int blk;                       /* activation layout of the declared batches (nn.h): oneDNN's block
                                    * when every conv runs there on it, else NN_CNHW; other batch sizes
                                    * run CNHW */
    int last_n, last_train, last_blk; /* what model_backward may rely on */
};

#endif
