/* trainer/nn_int.h — internals of the nn kernels, for tests and benchmarks only (not the API).
 * Same threading rule as nn.h: a plan is touched by one thread at a time.
 */
#ifndef CT_NN_INT_H
#define CT_NN_INT_H
#include "trainer/nn.h"

/* 1 when batch n of this plan runs on oneDNN (declared, built, not failed, not forced off). */
int  nn__conv_plan_uses_dnnl(const nn_conv_plan *p, int n);
/* 1 when batch n of this plan runs on oneDNN's Winograd kernels (3x3 stride 1, where the CPU has them
 * and CT_CONV_WINOGRAD=0 was not set when the plan was made). */
int  nn__conv_plan_winograd(const nn_conv_plan *p, int n);
/* on = 1: run this plan's convs through im2col + sgemm even where oneDNN primitives exist (the
 * workspace covers both paths, so it may be flipped at any time). CNHW plans only: a blocked plan's
 * declared batches have no im2col path. */
void nn__conv_plan_force_gemm(nn_conv_plan *p, int on);

#endif
