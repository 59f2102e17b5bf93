/* trainer/sgd.h — SGD with PyTorch's exact semantics (torch.optim.SGD, dampening 0):
 *   g = grad + weight_decay * p;  buf = momentum * buf + g;  g = nesterov ? g + momentum * buf : buf;
 *   p -= lr * g
 * over one flat parameter array (weight decay on all parameters), and the learning-rate schedule.
 * Pure functions on caller-owned buffers; job thread; no errors. */
#ifndef CT_SGD_H
#define CT_SGD_H
#include <stddef.h>

typedef struct sgd_config { double momentum, weight_decay; int nesterov; } sgd_config;

/* params, grads, momentum_buf: n floats each (momentum_buf starts at zero). */
void sgd_step(float *params, float *momentum_buf, const float *grads, size_t n, double lr, const sgd_config *c);

/* Learning rate for optimiser step `step` (0-based) of `total`: linear warm-up over warmup steps
 * from lr/warmup, then cosine decay to 0 at `total` (or constant). */
double sgd_lr_at(double base_lr, int step, int total, int warmup, int cosine);

#endif
