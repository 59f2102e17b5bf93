/* trainer/simclr.c — SimCLR's projection head and NT-Xent loss with explicit backward (see
 * simclr.h). Forward: r1 = relu(h w0^T + b0), a2 = r1 w2^T + b2, z = a2/|a2|, s = z z^T / tau;
 * then a log-sum-exp per row (max subtracted, summed in double). Backward reuses s as dL/ds.
 * Called from the job's thread; products use nn_gemm (oneDNN sgemm). Errors are negative codes (-EINVAL,
 * -ENOMEM, -EDOM); nothing is allocated after simclr_new.
 */
#include "trainer/simclr.h"
#include "common/err.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/nn.h"

struct simclr {
    simclr_config cfg;
    size_t bytes;
    /* head activations for 2 * max_batch rows: r1 [R x d] and its gradient, a2, z, dz, da2 [R x p] */
    float *r1, *dr1, *a2, *z, *dz, *da2;
    float *s;        /* [R x R]: similarities / tau, then dL/ds, then its symmetrised form */
    float *logse;    /* [R]: per row, log sum_{k != i} exp(s_ik - max_i), the max already subtracted */
};


static float *take(simclr *s, size_t count, int *failed)
{
    if (*failed) return NULL;
    float *p = calloc(count ? count : 1, sizeof(float));
    if (!p) *failed = 1;
    else s->bytes += count * sizeof(float);
    return p;
}

int simclr_new(simclr **out, const simclr_config *cfg, char *err, size_t errlen)
{
    *out = NULL;
    /* 2 max_batch rows, and a [2 max_batch]^2 similarity matrix whose index must fit an int GEMM */
    if (!cfg || cfg->feat_dim < 1 || cfg->proj_dim < 1 || cfg->max_batch < 1 || cfg->max_batch > 16384) {
        err_set(err, errlen, 0, "simclr: bad shape (feat_dim, proj_dim >= 1, max_batch in [1, 16384])");
        return -EINVAL;
    }
    if (!(cfg->temperature > 0.0f) || !isfinite(cfg->temperature)) {
        err_set(err, errlen, 0, "simclr: temperature must be > 0 and finite");
        return -EINVAL;
    }
    simclr *s = calloc(1, sizeof *s);
    if (!s) {
        err_set(err, errlen, 0, "simclr: out of memory");
        return -ENOMEM;
    }
    s->cfg = *cfg;
    s->bytes = sizeof *s;
    int failed = 0;
    size_t R = 2 * (size_t)cfg->max_batch, d = (size_t)cfg->feat_dim, p = (size_t)cfg->proj_dim;
    s->r1 = take(s, R * d, &failed);
    s->dr1 = take(s, R * d, &failed);
    s->a2 = take(s, R * p, &failed);
    s->z = take(s, R * p, &failed);
    s->dz = take(s, R * p, &failed);
    s->da2 = take(s, R * p, &failed);
    s->s = take(s, R * R, &failed);
    s->logse = take(s, R, &failed);
    if (failed) {
        simclr_free(s);
        err_set(err, errlen, 0, "simclr: out of memory for max_batch %d", cfg->max_batch);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

void simclr_free(simclr *s)
{
    if (!s) return;
    free(s->r1);
    free(s->dr1);
    free(s->a2);
    free(s->z);
    free(s->dz);
    free(s->da2);
    free(s->s);
    free(s->logse);
    free(s);
}

size_t simclr_memory_bytes(const simclr *s) { return s ? s->bytes : 0; }

/* Loss pass over s [R x R] (R = 2n): per row, subtract the max over k != i in place and keep the
 * log-sum-exp; returns the summed -log p_i,pos(i) (double) and counts strict top-1 hits. s is left
 * shifted by the row max, which the gradient pass needs; nothing else is written, so a non-finite
 * result can still be refused before any gradient is touched. */
static double ntxent_loss(simclr *c, int n, int *hits)
{
    const int R = 2 * n;
    float *s = c->s, *logse = c->logse;
    double total = 0.0;
    int nhit = 0;
#pragma omp parallel for schedule(static) reduction(+ : total, nhit) if (R >= 256)
    for (int i = 0; i < R; i++) {
        float *srow = s + (size_t)i * R;
        int pos = i < n ? i + n : i - n;
        float mx = -INFINITY;
        int hit = 1;
        for (int k = 0; k < R; k++) {
            if (k == i) continue;
            if (srow[k] > mx) mx = srow[k];
            if (k != pos && !(srow[pos] > srow[k])) hit = 0;
        }
        double se = 0.0;
        for (int k = 0; k < R; k++) {
            srow[k] -= mx;
            if (k != i) se += exp((double)srow[k]);
        }
        double lse = log(se);
        logse[i] = (float)lse;
        total += lse - (double)srow[pos];
        nhit += hit;
    }
    *hits = nhit;
    return total;
}

/* Gradient pass: s (row-max shifted) becomes dL/ds * scale = scale (p_ik - [k == pos(i)]), 0 on the
 * diagonal, with p_ik = softmax over k != i. */
static void ntxent_grad(simclr *c, int n, float scale)
{
    const int R = 2 * n;
    float *s = c->s;
    const float *logse = c->logse;
#pragma omp parallel for schedule(static) if (R >= 256)
    for (int i = 0; i < R; i++) {
        float *srow = s + (size_t)i * R;
        int pos = i < n ? i + n : i - n;
        float lz = logse[i];
        for (int k = 0; k < R; k++) srow[k] = scale * expf(srow[k] - lz);
        srow[i] = 0.0f;
        srow[pos] -= scale;
    }
}

int simclr_forward_backward(simclr *c, float *dh, const simclr_grads *g, double *loss, double *acc,
                            const float *h, int n, const simclr_weights *w, float grad_scale)
{
    if (loss) *loss = 0.0;
    if (acc) *acc = 0.0;
    if (!c || n < 1 || n > c->cfg.max_batch || !h || !w || !w->w0 || !w->b0 || !w->w2 || !w->b2 ||
        !isfinite(grad_scale))
        return -EINVAL;
    const int R = 2 * n, d = c->cfg.feat_dim, p = c->cfg.proj_dim;
    const float tau = c->cfg.temperature;

    /* A non-finite feature means the backbone diverged: refuse it here, before the head, with the
     * same -EDOM a non-finite loss gives, so the job stops with a clear error. */
    int bad = 0;
    for (size_t i = 0; i < (size_t)R * d; i++) bad |= !isfinite(h[i]);
    if (bad) {
        if (loss) *loss = NAN;
        return -EDOM;
    }

    /* ---- forward ---- */
    nn_linear_forward(c->r1, h, w->w0, w->b0, R, d, d);
    nn_relu_forward(c->r1, c->r1, (size_t)R * d);
    nn_linear_forward(c->a2, c->r1, w->w2, w->b2, R, d, p);
    nn_l2norm_forward(c->z, c->a2, R, p);
    nn_gemm(0, 1, R, R, p, 1.0f / tau, c->z, p, c->z, p, 0.0f,
                c->s, R);
    int hits = 0;
    double L = ntxent_loss(c, n, &hits) / R;
    if (!isfinite(L)) {
        if (loss) *loss = L;
        return -EDOM;
    }
    if (loss) *loss = L;
    if (acc) *acc = (double)hits / R;

    /* ---- backward ---- */
    ntxent_grad(c, n, grad_scale / (float)R);
    /* s = z z^T / tau, so dz = (G + G^T) z / tau: symmetrise G in place, one GEMM */
    float *G = c->s;
    for (int i = 0; i < R; i++)
        for (int k = i + 1; k < R; k++) {
            float t = G[(size_t)i * R + k] + G[(size_t)k * R + i];
            G[(size_t)i * R + k] = G[(size_t)k * R + i] = t;
        }
    nn_gemm(0, 0, R, p, R, 1.0f / tau, G, R, c->z, p, 0.0f,
                c->dz, p);
    nn_l2norm_backward(c->da2, c->dz, c->a2, R, p);
    nn_linear_backward(c->dr1, g ? g->w2 : NULL, g ? g->b2 : NULL, c->da2, c->r1, w->w2, R, d, p);
    nn_relu_backward(c->dr1, c->dr1, c->r1, (size_t)R * d);
    nn_linear_backward(dh, g ? g->w0 : NULL, g ? g->b0 : NULL, c->dr1, h, w->w0, R, d, d);
    return 0;
}
