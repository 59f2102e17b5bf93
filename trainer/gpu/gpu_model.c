/* trainer/gpu/gpu_model.c — see gpu_model.h. Walks model.c's plan (model_int.h: units wired to their
 * inputs, residual blocks) with gpu.h's layers, in model.c's order and with its buffer juggling, so the
 * CPU model is the reference for every step (tests/unit/test_gpu.c). Plain C: built in every build; in
 * a build without CUDA gpu_ctx_new fails first, so nothing here runs. Job thread only. */
#include "trainer/gpu/gpu_model.h"
#include "trainer/model_int.h"
#include "common/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct gunit {
    gpu_conv *conv;
    const float *x;   /* device input (another buffer's) */
    float *y, *z, *mean, *rstd;
    float *weight, *dweight, *gamma, *dgamma, *beta, *dbeta, *rmean, *rvar;
} gunit;

struct gpu_model {
    gpu_ctx *g;
    model *m;         /* borrowed */
    gunit *units;
    float *params, *grads, *mom, *buffers;
    float *img, *x0, *pool_out, *feat, *dfeat, *mask_tmp;
    int32_t *argmax;
    float *gbuf[3];
    size_t head_off;  /* parameters [head_off, nparams) are the heads (fc, contrastor): table order */
    int last_n, last_train;
};

static size_t unit_out(const unit *u, size_t n) { return n * u->conv.cout * u->oh * u->ow; }

size_t gpu_model_arena_bytes(const model *m)
{
    size_t B = (size_t)m->cfg.max_batch, f = 0, slack = 256 / sizeof(float);
    f += 3 * (m->nparams + slack) + m->nbuffers + slack;           /* params, grads, momentum; stats */
    f += 2 * (m->x0_floats + slack) + m->pool_floats + 2 * slack;  /* NCHW staging, CNHW, pool */
    f += m->pool ? m->pool_floats + slack : 0;                     /* argmax (int32 in float slots) */
    f += 2 * (m->feat_floats + slack) + 4 * (m->grad_floats + slack);
    for (int i = 0; i < m->nunits; i++)
        f += 2 * (unit_out(&m->units[i], B) + slack) + 2 * (m->units[i].conv.cout + slack);
    return f * sizeof(float);
}

static float *dev_of(gpu_model *gm, const float *host_param_or_buffer)
{
    model *m = gm->m;
    if (host_param_or_buffer >= m->params && host_param_or_buffer < m->params + m->nparams)
        return gm->params + (host_param_or_buffer - m->params);
    return gm->buffers + (host_param_or_buffer - m->buffers);
}

int gpu_model_new(gpu_model **out, gpu_ctx *g, model *m, char *err, size_t errlen)
{
    *out = NULL;
    gpu_model *gm = calloc(1, sizeof *gm);
    if (gm) gm->units = calloc((size_t)m->nunits, sizeof *gm->units);
    if (!gm || !gm->units) {
        free(gm);
        return err_set(err, errlen, -ENOMEM, "out of memory");
    }
    gm->g = g;
    gm->m = m;
    int rc = 0;
    gm->head_off = m->nparams;
    for (int i = 0; i < m->ntensors; i++)
        if (m->tensors[i].kind == MODEL_PARAM && (!strncmp(m->tensors[i].name, "fc.", 3) ||
                                                  !strncmp(m->tensors[i].name, "contrastor.", 11)))
            if (m->toff[i] < gm->head_off) gm->head_off = m->toff[i];
    for (int i = 0; i < m->ntensors; i++)
        if (m->tensors[i].kind == MODEL_PARAM && m->toff[i] >= gm->head_off && strncmp(m->tensors[i].name, "fc.", 3) &&
            strncmp(m->tensors[i].name, "contrastor.", 11)) {
            rc = err_set(err, errlen, -EINVAL, "backbone tensor %s after the heads", m->tensors[i].name);
            goto fail;
        }
    const int B = m->cfg.max_batch;
    /* plans first: gpu_ctx_reserve sizes the shared workspace from them */
    for (int i = 0; i < m->nunits && !rc; i++)
        rc = gpu_conv_new(&gm->units[i].conv, g, &m->units[i].conv, m->units[i].h, m->units[i].w, B, err, errlen);
    if (!rc) rc = gpu_ctx_reserve(g, gpu_model_arena_bytes(m), err, errlen);
    if (rc) goto fail;
#define A(dst, n) do { if (!((dst) = gpu_alloc(g, (n)))) goto nomem; } while (0)
    A(gm->params, m->nparams);
    A(gm->grads, m->nparams);
    A(gm->mom, m->nparams);
    A(gm->buffers, m->nbuffers ? m->nbuffers : 1);
    A(gm->img, m->x0_floats);
    A(gm->x0, m->x0_floats);
    if (m->pool) {
        A(gm->pool_out, m->pool_floats);
        float *am;
        A(am, m->pool_floats);
        gm->argmax = (int32_t *)am;
    }
    A(gm->feat, m->feat_floats);
    A(gm->dfeat, m->feat_floats);
    A(gm->mask_tmp, m->grad_floats);
    for (int i = 0; i < 3; i++) A(gm->gbuf[i], m->grad_floats);
    for (int i = 0; i < m->nunits; i++) {
        const unit *u = &m->units[i];
        gunit *d = &gm->units[i];
        A(d->y, unit_out(u, (size_t)B));
        A(d->z, unit_out(u, (size_t)B));
        A(d->mean, (size_t)u->conv.cout);
        A(d->rstd, (size_t)u->conv.cout);
        d->x = u->in_unit == -1 ? gm->x0 : u->in_unit == -2 ? gm->pool_out : gm->units[u->in_unit].z;
        d->weight = dev_of(gm, u->weight), d->dweight = gm->grads + (u->dweight - m->grads);
        d->gamma = dev_of(gm, u->gamma), d->dgamma = gm->grads + (u->dgamma - m->grads);
        d->beta = dev_of(gm, u->beta), d->dbeta = gm->grads + (u->dbeta - m->grads);
        d->rmean = dev_of(gm, u->rmean), d->rvar = dev_of(gm, u->rvar);
    }
#undef A
    if ((rc = gpu_memset0(g, gm->mom, m->nparams)) || (rc = gpu_memset0(g, gm->grads, m->nparams)) ||
        (rc = gpu_model_push(gm)))
        goto fail_dev;
    *out = gm;
    return 0;
nomem:
    rc = err_set(err, errlen, -ENOMEM, "device arena too small (%s)", gpu_error(g));
    goto fail;
fail_dev:
    err_set(err, errlen, 0, "%s", gpu_error(g));
fail:
    gpu_model_free(gm);
    return rc;
}

void gpu_model_free(gpu_model *gm)
{
    if (!gm) return;
    free(gm->units); /* plans and buffers belong to the context */
    free(gm);
}

int gpu_model_push(gpu_model *gm)
{
    model *m = gm->m;
    int rc = gpu_upload(gm->g, gm->params, m->params, m->nparams);
    return rc || !m->nbuffers ? rc : gpu_upload(gm->g, gm->buffers, m->buffers, m->nbuffers);
}

int gpu_model_pull(gpu_model *gm)
{
    model *m = gm->m;
    int rc = gpu_download(gm->g, m->params, gm->params, m->nparams);
    return rc || !m->nbuffers ? rc : gpu_download(gm->g, m->buffers, gm->buffers, m->nbuffers);
}

int gpu_model_sync_grads(gpu_model *gm)
{
    model *m = gm->m;
    size_t h = gm->head_off;
    int rc = h < m->nparams ? gpu_upload(gm->g, gm->grads + h, m->grads + h, m->nparams - h) : 0;
    return rc ? rc : gpu_download(gm->g, m->grads, gm->grads, h);
}
int gpu_model_zero_grad(gpu_model *gm) { return gpu_memset0(gm->g, gm->grads, gm->m->nparams); }
int gpu_model_push_head_grads(gpu_model *gm)
{
    size_t h = gm->head_off, n = gm->m->nparams;
    return h < n ? gpu_upload(gm->g, gm->grads + h, gm->m->grads + h, n - h) : 0;
}

int gpu_model_pull_heads(gpu_model *gm)
{
    size_t h = gm->head_off, n = gm->m->nparams;
    return h < n ? gpu_download(gm->g, gm->m->params + h, gm->params + h, n - h) : 0;
}

int gpu_model_push_momentum(gpu_model *gm, const float *host)
{
    return gpu_upload(gm->g, gm->mom, host, gm->m->nparams);
}

int gpu_model_pull_momentum(gpu_model *gm, float *host)
{
    return gpu_download(gm->g, host, gm->mom, gm->m->nparams);
}

float *gpu_model_features(gpu_model *gm) { return gm->feat; }
float *gpu_model_dfeat(gpu_model *gm) { return gm->dfeat; }

int gpu_model_sgd(gpu_model *gm, float lr, float momentum, float weight_decay, int nesterov)
{
    return gpu_sgd_step(gm->g, gm->params, gm->mom, gm->grads, gm->m->nparams, lr, momentum, weight_decay, nesterov);
}

/* ---- forward: model.c's unit_forward / add_relu / model_forward ---- */

static int unit_forward(gpu_model *gm, int i, int n, int train)
{
    const unit *u = &gm->m->units[i];
    gunit *d = &gm->units[i];
    const int c = u->conv.cout, hw = u->oh * u->ow;
    int rc = gpu_conv_forward(d->conv, d->y, d->x, d->weight, n);
    if (rc) return rc;
    if (!train) return gpu_bn_forward_eval(gm->g, d->z, d->y, d->gamma, d->beta, d->rmean, d->rvar, c, n, hw, BN_EPS,
                                           u->relu);
    ++*u->nbt; /* the counter lives on the host */
    return gpu_bn_forward_train(gm->g, d->z, d->mean, d->rstd, d->rmean, d->rvar, d->y, d->gamma, d->beta, c, n, hw,
                                BN_MOMENTUM, BN_EPS, u->relu);
}

int gpu_model_forward(gpu_model *gm, const float *images, int n, int train, float *feat_host)
{
    model *m = gm->m;
    if (n < 1 || n > m->cfg.max_batch || (train && n * m->last_hw < 2)) return -EINVAL;
    gm->last_train = 0;
    const int hw = m->size * m->size;
    int rc = gpu_upload(gm->g, gm->img, images, (size_t)n * m->in_ch * hw);
    if (!rc) rc = gpu_nchw_to_cnhw(gm->g, gm->x0, gm->img, n, m->in_ch, hw);
    if (!rc) rc = unit_forward(gm, 0, n, train);
    const float *cur = gm->units[0].z;
    if (!rc && m->pool) {
        rc = gpu_maxpool_forward(gm->g, gm->pool_out, gm->argmax, cur, m->pool_c, n, m->pool_h, m->pool_w, 3, 2, 1);
        cur = gm->pool_out;
    }
    for (int b = 0; b < m->nblocks && !rc; b++) {
        const block *bl = &m->blocks[b];
        for (int j = 0; j < bl->count && !rc; j++) rc = unit_forward(gm, bl->first + j, n, train);
        const unit *last = &m->units[bl->first + bl->count - 1];
        float *lz = gm->units[bl->first + bl->count - 1].z;
        const float *sc = cur;
        if (!rc && bl->ds >= 0) {
            rc = unit_forward(gm, bl->ds, n, train);
            sc = gm->units[bl->ds].z;
        }
        size_t len = unit_out(last, (size_t)n);
        if (!rc) rc = gpu_add_forward(gm->g, lz, lz, sc, len); /* z = relu(z + s), as add_relu */
        if (!rc) rc = gpu_relu_forward(gm->g, lz, lz, len);
        cur = lz;
    }
    if (!rc) rc = gpu_avgpool_forward(gm->g, gm->feat, cur, m->last_c, n, m->last_hw);
    if (!rc && feat_host) rc = gpu_download(gm->g, feat_host, gm->feat, (size_t)n * m->feat_dim);
    if (rc) return rc;
    gm->last_n = n;
    gm->last_train = train != 0;
    return 0;
}

/* ---- backward: model.c's unit_backward / block_backward / model_backward, same buffer choices ---- */

static float *spare(float *const g[3], const float *a, const float *b)
{
    for (int i = 0; i < 3; i++)
        if (g[i] != a && g[i] != b) return g[i];
    return NULL;
}

static int unit_backward(gpu_model *gm, int i, const float *dz, float *tmp, float *din, int n)
{
    const unit *u = &gm->m->units[i];
    gunit *d = &gm->units[i];
    const int c = u->conv.cout, hw = u->oh * u->ow;
    int rc = gpu_bn_backward(gm->g, tmp, d->dgamma, d->dbeta, gm->mask_tmp, dz, u->relu ? d->z : NULL, d->y, d->mean,
                             d->rstd, d->gamma, c, n, hw, BN_EPS);
    return rc ? rc : gpu_conv_backward(d->conv, din, d->dweight, tmp, d->x, d->weight, n);
}

static int block_backward(gpu_model *gm, int b, float *gout, int masked, int n, float **out)
{
    model *m = gm->m;
    const block *bl = &m->blocks[b];
    float *const *g = gm->gbuf;
    const int li = bl->first + bl->count - 1;
    float *dz = gout, *sc;
    int rc = 0;
    if (!masked) {
        dz = spare(g, gout, NULL);
        rc = gpu_relu_backward(gm->g, dz, gout, gm->units[li].z, unit_out(&m->units[li], (size_t)n));
    }
    sc = dz;
    if (!rc && bl->ds >= 0) {
        float *t = spare(g, dz, NULL);
        sc = spare(g, dz, t);
        rc = unit_backward(gm, bl->ds, dz, t, sc, n);
    }
    float *cur = dz;
    for (int j = bl->count - 1; j >= 0 && !rc; j--) {
        float *t = spare(g, sc, cur), *d = spare(g, sc, t);
        rc = unit_backward(gm, bl->first + j, cur, t, d, n);
        cur = d;
    }
    const unit *first = &m->units[bl->first];
    size_t len = (size_t)first->conv.cin * n * first->h * first->w;
    float *dx = spare(g, sc, cur);
    if (!rc) rc = gpu_add_forward(gm->g, dx, cur, sc, len);
    /* through the previous block's output ReLU (its output is this block's input), as add_relu_backward */
    if (!rc && b > 0) rc = gpu_relu_backward(gm->g, dx, dx, gm->units[bl->first].x, len);
    *out = dx;
    return rc;
}

int gpu_model_backward(gpu_model *gm, const float *dfeat, int n)
{
    model *m = gm->m;
    if (!gm->last_train || n != gm->last_n) return -EINVAL;
    int rc = dfeat ? gpu_upload(gm->g, gm->dfeat, dfeat, (size_t)n * m->feat_dim) : 0;
    float *cur = gm->gbuf[0];
    if (!rc) rc = gpu_avgpool_backward(gm->g, cur, gm->dfeat, m->last_c, n, m->last_hw);
    for (int b = m->nblocks - 1; b >= 0 && !rc; b--) rc = block_backward(gm, b, cur, b < m->nblocks - 1, n, &cur);
    if (!rc && m->pool) {
        float *t = spare(gm->gbuf, cur, NULL);
        rc = gpu_maxpool_backward(gm->g, t, cur, gm->argmax, m->pool_c, n, m->pool_h, m->pool_w, 3, 2, 1);
        cur = t;
    }
    float *t = spare(gm->gbuf, cur, NULL);
    return rc ? rc : unit_backward(gm, 0, cur, t, NULL, n);
}
