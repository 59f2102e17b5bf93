/* trainer/sgd.c — see sgd.h. The loop is elementwise and memory-bound: OpenMP static schedule
 * splits it across the job's threads deterministically. */
#include "trainer/sgd.h"
#include <math.h>

void sgd_step(float *params, float *momentum_buf, const float *grads, size_t n, double lr, const sgd_config *c)
{
    const float wd = (float)c->weight_decay, mom = (float)c->momentum, flr = (float)lr;
    const int nesterov = c->nesterov;
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = grads[i] + wd * params[i];
        if (mom != 0.0f) {
            float b = mom * momentum_buf[i] + g;
            momentum_buf[i] = b;
            g = nesterov ? g + mom * b : b;
        }
        params[i] -= flr * g;
    }
}

double sgd_lr_at(double base_lr, int step, int total, int warmup, int cosine)
{
    if (warmup > 0 && step < warmup) return base_lr * (double)(step + 1) / (double)warmup;
    if (!cosine || total <= warmup) return base_lr;
    double t = (double)(step - warmup) / (double)(total - warmup);
    return 0.5 * base_lr * (1.0 + cos(M_PI * t));
}
