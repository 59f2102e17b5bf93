/* trainer/model.c — ResNet backbones with torchvision's parameter names, explicit forward/backward.
 * model_new plans the network once (a list of conv+BN "units" wired to their input buffers, a list
 * of residual blocks, the tensor table, one nn_conv_plan per distinct conv shape for max_batch and the
 * declared extra batch sizes), then allocates every buffer from that size table; the forward and
 * backward passes only walk the lists and call the nn.h kernels.
 * Called from the job's trainer thread (the owner of the model). Errors: negative errno-style codes
 * with a reason in the caller's buffer; forward/backward cannot fail on valid arguments.
 */
#include "trainer/model.h"
#include "trainer/model_int.h"
#include "common/err.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/nn.h"
#include "trainer/safetensors.h"

#define ALIGN_FLOATS 16 /* sub-buffers start on 64-byte multiples of the arena */

static const struct arch_def {
    const char *name;
    int bottleneck, cifar, feat;
    int blocks[4];
} arch_defs[] = {
    {"resnet18", 0, 0, 512, {2, 2, 2, 2}},  {"resnet34", 0, 0, 512, {3, 4, 6, 3}},
    {"resnet50", 1, 0, 2048, {3, 4, 6, 3}}, {"resnet101", 1, 0, 2048, {3, 4, 23, 3}},
    {"resnet152", 1, 0, 2048, {3, 8, 36, 3}},
    {"resnet20", 0, 1, 64, {3, 3, 3, 0}},   {"resnet32", 0, 1, 64, {5, 5, 5, 0}},
    {"resnet56", 0, 1, 64, {9, 9, 9, 0}},
};


static size_t round_up(size_t n) { return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS; }

/* ---- planning: topology, tensor table and size table, no big allocations ---- */

static int add_tensor(model *m, const char *name, enum model_kind kind, int ndim, int s0, int s1, int s2,
                      int s3)
{
    model_tensor *t = &m->tensors[m->ntensors];
    int shape[4] = {s0, s1, s2, s3};
    snprintf(t->name, sizeof t->name, "%s", name);
    t->kind = kind;
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->numel *= (size_t)shape[i];
    }
    if (kind == MODEL_PARAM) {
        m->toff[m->ntensors] = m->nparams;
        m->nparams += t->numel;
    } else if (kind == MODEL_BUFFER) {
        m->toff[m->ntensors] = m->nbuffers;
        m->nbuffers += t->numel;
    } else {
        m->toff[m->ntensors] = m->ncounters++;
    }
    return m->ntensors++;
}

/* conv "<cname>.weight" then BN "<bname>.{weight,bias,running_mean,running_var,num_batches_tracked}". */
static int add_unit(model *m, const char *cname, const char *bname, int cin, int cout, int k, int stride,
                    int h, int in_unit, int relu)
{
    unit *u = &m->units[m->nunits];
    char name[64];
    u->conv = (nn_conv){cin, cout, k, stride, k / 2};
    u->h = u->w = h;
    u->oh = u->ow = nn_conv_out(h, k, stride, k / 2);
    u->relu = relu;
    u->in_unit = in_unit;
    snprintf(name, sizeof name, "%s.weight", cname);
    u->tensor = add_tensor(m, name, MODEL_PARAM, 4, cout, cin, k, k);
    static const char *const bn_names[5] = {"weight", "bias", "running_mean", "running_var",
                                            "num_batches_tracked"};
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "%s.%s", bname, bn_names[i]);
        add_tensor(m, name, i < 2 ? MODEL_PARAM : i < 4 ? MODEL_BUFFER : MODEL_COUNTER, i < 4 ? 1 : 0,
                   cout, 0, 0, 0);
    }
    return m->nunits++;
}

static void plans_free(model *m)
{
    for (int i = 0; m->units && i < m->nunits; i++) {
        if (m->units[i].owns_plan) nn_conv_plan_free(m->units[i].plan);
        m->units[i].plan = NULL;
        m->units[i].owns_plan = 0;
    }
}

/* The block of oneDNN's convolution layout when every unit's channels fit it (the stem reads the
 * images as NCHW), else NN_CNHW. */
static int conv_block(const model *m)
{
    int b = nn_conv_preferred_block();
    for (int i = 0; b && i < m->nunits; i++) {
        const unit *u = &m->units[i];
        if (u->conv.cout % b || (u->in_unit != -1 && u->conv.cin % b)) b = NN_CNHW;
    }
    return b;
}

/* One plan per distinct (conv, input size, role), shared by the units of that shape (they run one
 * after another on the owning thread), in layout blk. A blocked plan oneDNN cannot build: -ENOTSUP,
 * with every plan freed again. */
static int plan_convs(model *m, int blk)
{
    const model_config *cfg = &m->cfg;
    int ns[1 + MODEL_EXTRA_BATCHES], nns = 0;
    ns[nns++] = cfg->max_batch;
    for (int i = 0; i < MODEL_EXTRA_BATCHES; i++)
        if (cfg->extra_batch[i] > 0) ns[nns++] = cfg->extra_batch[i];
    for (int i = 0; i < m->nunits; i++) {
        unit *u = &m->units[i];
        const int stem = u->in_unit == -1;
        for (int j = 0; j < i && !u->plan; j++) {
            const unit *v = &m->units[j];
            if (!memcmp(&v->conv, &u->conv, sizeof u->conv) && v->h == u->h && v->w == u->w &&
                (v->in_unit == -1) == stem)
                u->plan = v->plan;
        }
        if (u->plan) continue;
        int rc = blk == NN_CNHW ? nn_conv_plan_new(&u->plan, &u->conv, u->h, u->w, ns, nns)
                                : nn_conv_plan_new_blocked(&u->plan, &u->conv, u->h, u->w, ns, nns, stem ? 1 : blk,
                                                           blk, !stem);
        if (rc) {
            plans_free(m);
            return rc;
        }
        u->owns_plan = 1;
    }
    m->blk = blk;
    return 0;
}

static int plan(model *m, const model_config *cfg, char *err, size_t errlen)
{
    const struct arch_def *a = NULL;
    for (size_t i = 0; i < sizeof arch_defs / sizeof arch_defs[0]; i++)
        if (!strncmp(cfg->arch, arch_defs[i].name, sizeof cfg->arch)) a = &arch_defs[i];
    if (!a) {
        err_set(err, errlen, 0, "unknown arch '%.*s' (resnet18/34/50/101/152, resnet20/32/56)",
                (int)sizeof cfg->arch, cfg->arch);
        return -EINVAL;
    }
    if (cfg->in_channels < 1 || cfg->in_channels > 16) {
        err_set(err, errlen, 0, "in_channels %d out of range [1, 16]", cfg->in_channels);
        return -EINVAL;
    }
    if (cfg->image_size < 1 || cfg->image_size > 4096) {
        err_set(err, errlen, 0, "image_size %d out of range [1, 4096]", cfg->image_size);
        return -EINVAL;
    }
    if (cfg->max_batch < 1 || (double)cfg->max_batch * cfg->image_size * cfg->image_size > 1e9) {
        err_set(err, errlen, 0, "max_batch %d out of range for image_size %d", cfg->max_batch, cfg->image_size);
        return -EINVAL;
    }
    for (int i = 0; i < MODEL_EXTRA_BATCHES; i++)
        if (cfg->extra_batch[i] < 0 || cfg->extra_batch[i] > cfg->max_batch) {
            err_set(err, errlen, 0, "extra_batch %d out of range [0, max_batch %d]", cfg->extra_batch[i],
                    cfg->max_batch);
            return -EINVAL;
        }
    if (cfg->num_classes < 0 || cfg->num_classes > 1000000 || cfg->contrast_dim < 0 ||
        cfg->contrast_dim > 65536) {
        err_set(err, errlen, 0, "num_classes %d or contrast_dim %d out of range", cfg->num_classes,
                cfg->contrast_dim);
        return -EINVAL;
    }
    m->cfg = *cfg;
    m->cfg.arch[sizeof m->cfg.arch - 1] = '\0';
    m->in_ch = cfg->in_channels;
    m->size = cfg->image_size;
    m->feat_dim = a->feat;

    int nblocks = 0;
    for (int i = 0; i < 4; i++) nblocks += a->blocks[i];
    int max_units = 1 + nblocks * 4;
    m->units = calloc((size_t)max_units, sizeof *m->units);
    m->blocks = calloc((size_t)nblocks, sizeof *m->blocks);
    m->tensors = calloc((size_t)max_units * 6 + 8, sizeof *m->tensors);
    m->toff = calloc((size_t)max_units * 6 + 8, sizeof *m->toff);
    if (!m->units || !m->blocks || !m->tensors || !m->toff) {
        err_set(err, errlen, 0, "out of memory planning %s", a->name);
        return -ENOMEM;
    }

    /* stem */
    int small = a->cifar || cfg->small_stem;
    int stem_c = a->cifar ? 16 : 64, h = m->size;
    add_unit(m, "conv1", "bn1", m->in_ch, stem_c, small ? 3 : 7, small ? 1 : 2, h, -1, 1);
    h = m->units[0].oh;
    int prev = 0; /* unit (or -2: pool) feeding the next block */
    if (!small) {
        m->pool = 1;
        m->pool_c = stem_c;
        m->pool_h = m->pool_w = h;
        h = m->pool_oh = m->pool_ow = nn_conv_out(h, 3, 2, 1);
        prev = -2;
    }
    if (h < 1) goto too_small;

    /* stages */
    int inplanes = stem_c, nstages = a->cifar ? 3 : 4;
    for (int s = 0; s < nstages; s++) {
        int planes = a->cifar ? 16 << s : 64 << s, expansion = a->bottleneck ? 4 : 1;
        for (int b = 0; b < a->blocks[s]; b++) {
            int stride = (s > 0 && b == 0) ? 2 : 1, in_unit = prev, hin = h;
            block *bl = &m->blocks[m->nblocks++];
            char cn[48], bn[48];
            bl->first = m->nunits;
            if (a->bottleneck) { /* torchvision v1.5: the stride sits on the 3x3 conv */
                snprintf(cn, sizeof cn, "layer%d.%d.conv1", s + 1, b);
                snprintf(bn, sizeof bn, "layer%d.%d.bn1", s + 1, b);
                int u1 = add_unit(m, cn, bn, inplanes, planes, 1, 1, h, in_unit, 1);
                snprintf(cn, sizeof cn, "layer%d.%d.conv2", s + 1, b);
                snprintf(bn, sizeof bn, "layer%d.%d.bn2", s + 1, b);
                int u2 = add_unit(m, cn, bn, planes, planes, 3, stride, h, u1, 1);
                h = m->units[u2].oh;
                snprintf(cn, sizeof cn, "layer%d.%d.conv3", s + 1, b);
                snprintf(bn, sizeof bn, "layer%d.%d.bn3", s + 1, b);
                prev = add_unit(m, cn, bn, planes, planes * 4, 1, 1, h, u2, 0);
            } else {
                snprintf(cn, sizeof cn, "layer%d.%d.conv1", s + 1, b);
                snprintf(bn, sizeof bn, "layer%d.%d.bn1", s + 1, b);
                int u1 = add_unit(m, cn, bn, inplanes, planes, 3, stride, h, in_unit, 1);
                h = m->units[u1].oh;
                snprintf(cn, sizeof cn, "layer%d.%d.conv2", s + 1, b);
                snprintf(bn, sizeof bn, "layer%d.%d.bn2", s + 1, b);
                prev = add_unit(m, cn, bn, planes, planes, 3, 1, h, u1, 0);
            }
            bl->count = m->nunits - bl->first;
            bl->ds = -1;
            if (stride != 1 || inplanes != planes * expansion) {
                snprintf(cn, sizeof cn, "layer%d.%d.downsample.0", s + 1, b);
                snprintf(bn, sizeof bn, "layer%d.%d.downsample.1", s + 1, b);
                bl->ds = add_unit(m, cn, bn, inplanes, planes * expansion, 1, stride, hin, in_unit, 0);
            }
            inplanes = planes * expansion;
            if (h < 1) goto too_small;
        }
    }
    m->last_c = inplanes;
    m->last_hw = h * h;

    /* heads */
    int d = m->feat_dim;
    if (cfg->num_classes > 0) add_tensor(m, "fc.weight", MODEL_PARAM, 2, cfg->num_classes, d, 0, 0);
    if (cfg->contrast_dim > 0) {
        add_tensor(m, "contrastor.0.weight", MODEL_PARAM, 2, d, d, 0, 0);
        add_tensor(m, "contrastor.0.bias", MODEL_PARAM, 1, d, 0, 0, 0);
        add_tensor(m, "contrastor.2.weight", MODEL_PARAM, 2, cfg->contrast_dim, d, 0, 0);
        add_tensor(m, "contrastor.2.bias", MODEL_PARAM, 1, cfg->contrast_dim, 0, 0, 0);
    }

    /* conv plans, each for every batch size the model will run: blocked where oneDNN runs them all */
    int rc = plan_convs(m, conv_block(m));
    if (rc == -ENOTSUP) rc = plan_convs(m, NN_CNHW);
    if (rc) {
        err_set(err, errlen, 0, rc == -ENOMEM ? "out of memory planning %s" : "cannot plan a conv of %s", a->name);
        return rc;
    }

    /* size table */
    const size_t B = (size_t)cfg->max_batch;
    size_t act = 0, gmax = 0, ws = 0;
    for (int i = 0; i < m->nunits; i++) {
        const unit *u = &m->units[i];
        size_t out = B * u->conv.cout * u->oh * u->ow;
        act += 2 * round_up(out) + 2 * round_up((size_t)u->conv.cout);
        if (out > gmax) gmax = out;
        size_t w = nn_conv_plan_workspace(u->plan);
        if (w > ws) ws = w;
    }
    m->act_floats = act;
    m->grad_floats = round_up(gmax);
    m->ws_floats = round_up(ws);
    m->x0_floats = round_up(B * m->in_ch * m->size * m->size);
    m->pool_floats = m->pool ? round_up(B * m->pool_c * m->pool_oh * m->pool_ow) : 0;
    m->feat_floats = round_up(B * d);
    size_t total_act = m->act_floats + 3 * m->grad_floats + m->ws_floats + m->x0_floats + m->pool_floats +
                       m->feat_floats;
    size_t table = (size_t)max_units * sizeof *m->units + (size_t)nblocks * sizeof *m->blocks +
                   ((size_t)max_units * 6 + 8) * (sizeof *m->tensors + sizeof *m->toff);
    m->bytes = sizeof(float) * (2 * round_up(m->nparams) + round_up(m->nbuffers) + total_act +
                                m->pool_floats /* argmax, int32 */) +
               sizeof(int64_t) * (m->ncounters + 1) + sizeof *m + table;
    return 0;

too_small:
    err_set(err, errlen, 0, "image_size %d is too small for %s%s (a stage would be empty)", cfg->image_size,
            a->name, small ? "" : " with the 7x7 stem and max pool");
    return -EINVAL;
}

static void plan_free(model *m)
{
    plans_free(m);
    free(m->units);
    free(m->blocks);
    free(m->tensors);
    free(m->toff);
}

/* calloc: zeroed (parameters start at 0) and, for big blocks, fresh untouched pages, so a model that
 * is only inspected (name tables, estimates) costs no resident memory. */
static void *alloc_floats(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

/* ---- lifecycle ---- */

int model_estimate_bytes(const model_config *cfg, size_t *out, char *err, size_t errlen)
{
    model tmp;
    memset(&tmp, 0, sizeof tmp);
    int rc = plan(&tmp, cfg, err, errlen);
    if (!rc) *out = tmp.bytes;
    plan_free(&tmp);
    return rc;
}

int model_new(model **out, const model_config *cfg, char *err, size_t errlen)
{
    *out = NULL;
    model *m = calloc(1, sizeof *m);
    if (!m) {
        err_set(err, errlen, 0, "out of memory");
        return -ENOMEM;
    }
    int rc = plan(m, cfg, err, errlen);
    if (rc) goto fail;

    m->params = alloc_floats(m->nparams);
    m->grads = alloc_floats(m->nparams);
    m->buffers = alloc_floats(m->nbuffers);
    m->counters = calloc(m->ncounters + 1, sizeof *m->counters);
    size_t total_act = m->act_floats + 3 * m->grad_floats + m->ws_floats + m->x0_floats + m->pool_floats +
                       m->feat_floats;
    m->act = alloc_floats(total_act);
    m->argmax = m->pool ? alloc_floats(m->pool_floats) : NULL; /* int32, same count */
    if (!m->params || !m->grads || !m->buffers || !m->counters || !m->act || (m->pool && !m->argmax)) {
        err_set(err, errlen, 0, "out of memory allocating %s (%zu MiB)", m->cfg.arch, m->bytes >> 20);
        rc = -ENOMEM;
        goto fail;
    }

    /* tensor views */
    for (int i = 0; i < m->ntensors; i++) {
        model_tensor *t = &m->tensors[i];
        if (t->kind == MODEL_PARAM) {
            t->data = m->params + m->toff[i];
            t->grad = m->grads + m->toff[i];
        } else if (t->kind == MODEL_BUFFER) {
            t->data = m->buffers + m->toff[i];
        } else {
            t->i64 = m->counters + m->toff[i];
        }
    }

    /* activation buffers, in plan order */
    float *p = m->act;
    m->x0 = p, p += m->x0_floats;
    if (m->pool) m->pool_out = p, p += m->pool_floats;
    m->feat = p, p += m->feat_floats;
    m->ws = p, p += m->ws_floats;
    for (int i = 0; i < 3; i++) m->gbuf[i] = p, p += m->grad_floats;
    const size_t B = (size_t)m->cfg.max_batch;
    for (int i = 0; i < m->nunits; i++) {
        unit *u = &m->units[i];
        size_t outn = round_up(B * u->conv.cout * u->oh * u->ow), c = round_up((size_t)u->conv.cout);
        u->y = p, p += outn;
        u->z = p, p += outn;
        u->mean = p, p += c;
        u->rstd = p, p += c;
        u->x = u->in_unit == -1 ? m->x0 : u->in_unit == -2 ? m->pool_out : m->units[u->in_unit].z;
        model_tensor *t = &m->tensors[u->tensor];
        u->weight = t[0].data, u->dweight = t[0].grad;
        u->gamma = t[1].data, u->dgamma = t[1].grad;
        u->beta = t[2].data, u->dbeta = t[2].grad;
        u->rmean = t[3].data, u->rvar = t[4].data;
        u->nbt = t[5].i64;
    }
    m->last_n = 0;
    *out = m;
    return 0;

fail:
    model_free(m);
    return rc;
}

void model_free(model *m)
{
    if (!m) return;
    free(m->params);
    free(m->grads);
    free(m->buffers);
    free(m->counters);
    free(m->act);
    free(m->argmax);
    plan_free(m);
    free(m);
}

size_t model_memory_bytes(const model *m) { return m->bytes; }

int model_batch_prepared(const model *m, int n)
{
    if (n == m->cfg.max_batch) return 1;
    for (int i = 0; i < MODEL_EXTRA_BATCHES; i++)
        if (n == m->cfg.extra_batch[i]) return n > 0;
    return 0;
}
const model_config *model_get_config(const model *m) { return &m->cfg; }
int model_feature_dim(const model *m) { return m->feat_dim; }
int model_num_tensors(const model *m) { return m->ntensors; }
model_tensor *model_tensor_at(model *m, int i) { return i >= 0 && i < m->ntensors ? &m->tensors[i] : NULL; }
float *model_params(model *m) { return m->params; }
float *model_grads(model *m) { return m->grads; }
size_t model_num_params(const model *m) { return m->nparams; }
void model_zero_grad(model *m) { memset(m->grads, 0, m->nparams * sizeof(float)); }

model_tensor *model_find(model *m, const char *name)
{
    for (int i = 0; i < m->ntensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

void model_init(model *m, rng_t *rng)
{
    for (int i = 0; i < m->ntensors; i++) {
        model_tensor *t = &m->tensors[i];
        if (t->kind == MODEL_COUNTER) {
            *t->i64 = 0;
        } else if (t->ndim == 4) { /* conv: kaiming_normal_(mode="fan_out", nonlinearity="relu") */
            double sd = sqrt(2.0 / ((double)t->shape[0] * t->shape[2] * t->shape[3]));
            for (size_t j = 0; j < t->numel; j++) t->data[j] = (float)(sd * rng_normal(rng));
        } else if (t->ndim == 2) { /* nn.Linear: kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in)) */
            double bound = 1.0 / sqrt((double)t->shape[1]);
            for (size_t j = 0; j < t->numel; j++) t->data[j] = (float)(bound * (2.0 * rng_uniform(rng) - 1.0));
        } else if (!strncmp(t->name, "contrastor.", 11)) { /* Linear bias: U(+-1/sqrt(fan_in)) */
            double bound = 1.0 / sqrt((double)t[-1].shape[1]);
            for (size_t j = 0; j < t->numel; j++) t->data[j] = (float)(bound * (2.0 * rng_uniform(rng) - 1.0));
        } else { /* BN: weight 1, bias 0, running mean 0, running var 1 */
            const char *dot = strrchr(t->name, '.');
            float v = (!strcmp(dot, ".weight") || !strcmp(dot, ".running_var")) ? 1.0f : 0.0f;
            for (size_t j = 0; j < t->numel; j++) t->data[j] = v;
        }
    }
}

/* ---- forward ---- */

static void unit_forward(unit *u, int n, int train, float *ws, int blk)
{
    const int c = u->conv.cout, hw = u->oh * u->ow;
    nn_conv_forward(u->y, ws, u->x, u->weight, u->plan, n);
    if (train) {
        nn_bn_forward_train(u->z, u->mean, u->rstd, u->rmean, u->rvar, u->y, u->gamma, u->beta, c, n, hw, blk,
                            BN_MOMENTUM, BN_EPS, u->relu);
        ++*u->nbt;
    } else {
        nn_bn_forward_eval(u->z, u->y, u->gamma, u->beta, u->rmean, u->rvar, c, n, hw, blk, BN_EPS, u->relu);
    }
}

/* z = relu(z + s): the block's residual add fused with its ReLU, one pass, in place; NaN passes
 * (as nn_relu_forward, torch). */
static void add_relu(float *z, const float *s, size_t len)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < len; i++) {
        float v = z[i] + s[i];
        z[i] = !(v <= 0.0f) ? v : 0.0f;
    }
}

const float *model_forward(model *m, const float *images, int n, int train)
{
    if (n < 1 || n > m->cfg.max_batch) return NULL;
    if (train && n * m->last_hw < 2) return NULL; /* BN needs two values per channel (as PyTorch) */
    m->last_train = 0;
    /* the convs' blocked layout for the batch sizes they were planned for, CNHW (im2col) for others */
    const int blk = model_batch_prepared(m, n) ? m->blk : NN_CNHW;

    /* the stem reads the images as they are (NCHW) in the blocked pass; NCHW -> CNHW otherwise, so each
     * conv is one GEMM over the batch */
    const size_t hw = (size_t)m->size * m->size;
    if (blk != NN_CNHW)
        memcpy(m->x0, images, sizeof(float) * n * m->in_ch * hw);
    else
        for (int c = 0; c < m->in_ch; c++)
            for (int i = 0; i < n; i++)
                memcpy(m->x0 + ((size_t)c * n + i) * hw, images + ((size_t)i * m->in_ch + c) * hw,
                       hw * sizeof(float));

    unit_forward(&m->units[0], n, train, m->ws, blk);
    const float *cur = m->units[0].z;
    if (m->pool) {
        nn_maxpool_forward(m->pool_out, m->argmax, cur, m->pool_c, n, m->pool_h, m->pool_w, 3, 2, 1, blk);
        cur = m->pool_out;
    }
    for (int b = 0; b < m->nblocks; b++) {
        const block *bl = &m->blocks[b];
        for (int j = 0; j < bl->count; j++) unit_forward(&m->units[bl->first + j], n, train, m->ws, blk);
        unit *last = &m->units[bl->first + bl->count - 1];
        const float *sc = cur;
        if (bl->ds >= 0) {
            unit_forward(&m->units[bl->ds], n, train, m->ws, blk);
            sc = m->units[bl->ds].z;
        }
        add_relu(last->z, sc, (size_t)last->conv.cout * n * last->oh * last->ow);
        cur = last->z;
    }
    nn_avgpool_forward(m->feat, cur, m->last_c, n, m->last_hw, blk);
    m->last_n = n;
    m->last_blk = blk;
    m->last_train = train != 0;
    return m->feat;
}

/* ---- backward ---- */

/* A gradient buffer that is neither a nor b (three buffers, at most two live at once). */
static float *spare(float *const g[3], const float *a, const float *b)
{
    for (int i = 0; i < 3; i++)
        if (g[i] != a && g[i] != b) return g[i];
    return NULL; /* unreachable */
}

/* dz = dL/d(unit output) -> tmp = dL/d(conv output) -> din = dL/d(conv input) (NULL: not needed).
 * A unit with a ReLU takes dz before it: the BN backward masks it with z on the fly. */
static void unit_backward(unit *u, const float *dz, float *tmp, float *din, int n, float *ws, int blk)
{
    const int c = u->conv.cout, hw = u->oh * u->ow;
    nn_bn_backward(tmp, u->dgamma, u->dbeta, dz, u->relu ? u->z : NULL, u->y, u->mean, u->rstd, u->gamma, c, n, hw,
                   blk);
    nn_conv_backward(din, u->dweight, ws, tmp, u->x, u->weight, u->plan, n);
}

static size_t unit_len(const unit *u, int n) { return (size_t)u->conv.cout * n * u->oh * u->ow; }

/* dx = mask <= 0 ? 0 : a + b: the residual gradient sum fused with the ReLU backward of the block
 * before (its output, the mask, is this block's input), saving a pass over three buffers. The mask
 * test is nn_relu_backward's (a NaN output passes the gradient, as torch). */
static void add_relu_backward(float *dx, const float *a, const float *b, const float *mask, size_t len)
{
    /* The sum is computed unconditionally and its bits and-masked: a compare-and-mask the compiler
     * vectorises. With a ?: GCC sinks the add into a branch per element (under -ftrapping-math an
     * FP add may trap, so it is not speculated), and that branch mispredicts half the time. */
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < len; i++) {
        float v = a[i] + b[i];
        uint32_t bits, keep = mask[i] <= 0.0f ? 0u : ~0u;
        memcpy(&bits, &v, sizeof bits);
        bits &= keep;
        memcpy(&dx[i], &bits, sizeof bits);
    }
}

/* gout = dL/d(block output), already through the output ReLU when masked; returns the buffer with
 * dL/d(block input), through the previous block's output ReLU when the input is such an output. */
static float *block_backward(model *m, int b, float *gout, int masked, int n)
{
    const block *bl = &m->blocks[b];
    float *const *g = m->gbuf;
    unit *last = &m->units[bl->first + bl->count - 1];
    float *dz = gout, *sc;
    if (!masked) {
        dz = spare(g, gout, NULL);
        nn_relu_backward(dz, gout, last->z, unit_len(last, n)); /* mask: the block's output */
    }
    sc = dz;
    if (bl->ds >= 0) {
        unit *ds = &m->units[bl->ds];
        float *t = spare(g, dz, NULL);
        sc = spare(g, dz, t);
        unit_backward(ds, dz, t, sc, n, m->ws, m->last_blk);
    }
    float *cur = dz; /* the units before the last one mask their dz with their ReLU themselves */
    for (int j = bl->count - 1; j >= 0; j--) {
        unit *u = &m->units[bl->first + j];
        float *t = spare(g, sc, cur), *d = spare(g, sc, t);
        unit_backward(u, cur, t, d, n, m->ws, m->last_blk);
        cur = d;
    }
    const unit *first = &m->units[bl->first];
    size_t len = (size_t)first->conv.cin * n * first->h * first->w;
    float *dx = spare(g, sc, cur);
    if (b > 0)
        add_relu_backward(dx, cur, sc, first->x, len);
    else
        nn_add_forward(dx, cur, sc, len);
    return dx;
}

int model_backward(model *m, const float *dfeat, int n)
{
    if (!m->last_train || n != m->last_n) return -EINVAL;
    float *cur = m->gbuf[0];
    nn_avgpool_backward(cur, dfeat, m->last_c, n, m->last_hw, m->last_blk);
    for (int b = m->nblocks - 1; b >= 0; b--) cur = block_backward(m, b, cur, b < m->nblocks - 1, n);
    unit *stem = &m->units[0];
    if (m->pool) {
        float *t = spare(m->gbuf, cur, NULL);
        nn_maxpool_backward(t, cur, m->argmax, m->pool_c, n, m->pool_h, m->pool_w, 3, 2, 1, m->last_blk);
        cur = t;
    }
    float *t = spare(m->gbuf, cur, NULL);
    unit_backward(stem, cur, t, NULL, n, m->ws, m->last_blk); /* masked by the stem's ReLU; the images need no gradient */
    return 0;
}

/* ---- safetensors I/O ---- */

static int is_head(const char *name) { return !strncmp(name, "fc.", 3) || !strncmp(name, "contrastor.", 11); }

/* Append "sep item" to a message buffer (bounded; truncation is acceptable for a report). */
static void msg_add(char *msg, size_t msglen, int *count, const char *what, const char *name)
{
    if (!msg || !msglen) return;
    size_t len = strlen(msg);
    if (len + 1 >= msglen) return;
    snprintf(msg + len, msglen - len, "%s%s %s", *count ? "; " : "", what, name);
    ++*count;
}

static const char *dtype_name(enum st_dtype d)
{
    static const char *const names[] = {"F32", "F16", "BF16", "F64", "I64", "I32", "U8"};
    return (unsigned)d < sizeof names / sizeof names[0] ? names[d] : "?";
}

static void shape_str(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t off = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (off < len) snprintf(buf + off, len - off, "]");
}

int model_load(model *m, const char *path, int flags, char *msg, size_t msglen)
{
    char err[256];
    st_file *f = NULL;
    float *tmp = NULL;
    int problems = 0, notes = 0, rc = 0;
    char probs[2048] = "", info[1024] = "";
    if (msg && msglen) msg[0] = '\0';
    rc = st_open(&f, path, err, sizeof err);
    if (rc) {
        err_set(msg, msglen, 0, "%s", err);
        return rc < 0 ? rc : -EIO;
    }

    /* 1. every tensor of ours: present, right dtype and shape (or an allowed head exemption) */
    for (int i = 0; i < m->ntensors; i++) {
        const model_tensor *t = &m->tensors[i];
        const st_tensor *s = st_find(f, t->name);
        char what[160], a[64], b[64];
        if (is_head(t->name) && (flags & MODEL_LOAD_SKIP_HEADS)) {
            msg_add(info, sizeof info, &notes, "kept", t->name);
            continue;
        }
        if (!s) {
            if (is_head(t->name) && (flags & MODEL_LOAD_HEADS_OPTIONAL))
                msg_add(info, sizeof info, &notes, "kept (not in file)", t->name);
            else
                msg_add(probs, sizeof probs, &problems, "missing", t->name);
            continue;
        }
        int is_float = s->dtype == ST_F32 || s->dtype == ST_F16 || s->dtype == ST_BF16 || s->dtype == ST_F64;
        if (t->kind != MODEL_COUNTER && !is_float) {
            snprintf(what, sizeof what, "dtype %s of", dtype_name(s->dtype));
            msg_add(probs, sizeof probs, &problems, what, t->name);
            continue;
        }
        int ok = t->kind == MODEL_COUNTER ? st_numel(s) == 1 && s->ndim <= 1 : s->ndim == t->ndim;
        for (int d = 0; ok && t->kind != MODEL_COUNTER && d < t->ndim; d++) ok = s->shape[d] == t->shape[d];
        if (!ok) {
            int64_t want[4];
            for (int d = 0; d < t->ndim; d++) want[d] = t->shape[d];
            shape_str(a, sizeof a, s->ndim, s->shape);
            shape_str(b, sizeof b, t->ndim, want);
            snprintf(what, sizeof what, "shape %s (expected %s) of", a, b);
            msg_add(probs, sizeof probs, &problems, what, t->name);
        }
    }

    /* 2. every tensor of the file: ours, torchvision's fc.bias (zeros only), or an ignored head */
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *s = st_get(f, i);
        if (model_find(m, s->name) && !(is_head(s->name) && (flags & MODEL_LOAD_SKIP_HEADS))) continue;
        if (is_head(s->name) && (flags & MODEL_LOAD_SKIP_HEADS)) {
            msg_add(info, sizeof info, &notes, "ignored", s->name);
            continue;
        }
        if (!strcmp(s->name, "fc.bias") && m->cfg.num_classes > 0 && s->ndim == 1 &&
            s->shape[0] == m->cfg.num_classes && s->dtype <= ST_F64) {
            free(tmp);
            tmp = malloc(st_numel(s) * sizeof(float));
            if (!tmp) {
                rc = -ENOMEM;
                err_set(msg, msglen, 0, "%s: out of memory", path);
                goto out;
            }
            st_to_f32(tmp, s);
            int zero = 1;
            for (size_t j = 0; j < st_numel(s); j++) zero &= tmp[j] == 0.0f;
            if (!zero) /* we cannot represent it: refuse rather than silently drop it */
                msg_add(probs, sizeof probs, &problems,
                        "nonzero (no classifier bias here; MODEL_LOAD_SKIP_HEADS drops the classifier)", s->name);
            continue;
        }
        msg_add(probs, sizeof probs, &problems, "unexpected", s->name);
    }
    if (problems) {
        err_set(msg, msglen, 0, "%s: %s", path, probs);
        rc = -EINVAL;
        goto out;
    }

    /* 3. all checks passed: copy */
    for (int i = 0; i < m->ntensors; i++) {
        model_tensor *t = &m->tensors[i];
        const st_tensor *s = st_find(f, t->name);
        if (!s || (is_head(t->name) && (flags & MODEL_LOAD_SKIP_HEADS))) continue;
        if (t->kind != MODEL_COUNTER) {
            st_to_f32(t->data, s);
        } else if (s->dtype == ST_I64) {
            memcpy(t->i64, s->data, sizeof(int64_t)); /* little-endian host (x86-64, aarch64) */
        } else {
            float v;
            st_to_f32(&v, s);
            *t->i64 = (int64_t)v;
        }
    }
    m->last_train = 0;
    err_set(msg, msglen, 0, "%s", info);
out:
    free(tmp);
    st_close(f);
    return rc;
}

int model_save(model *m, const char *path, int with_contrastor, char *err, size_t errlen)
{
    int nc = m->cfg.num_classes, n = 0;
    st_tensor *ts = calloc((size_t)m->ntensors + 1, sizeof *ts);
    float *zeros = calloc((size_t)(nc > 0 ? nc : 1), sizeof(float));
    if (!ts || !zeros) {
        free(ts);
        free(zeros);
        err_set(err, errlen, 0, "%s: out of memory", path);
        return -ENOMEM;
    }
    for (int i = 0; i < m->ntensors; i++) {
        const model_tensor *t = &m->tensors[i];
        if (!with_contrastor && !strncmp(t->name, "contrastor.", 11)) continue;
        st_tensor *s = &ts[n++];
        s->name = t->name;
        s->ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++) s->shape[d] = t->shape[d];
        if (t->kind == MODEL_COUNTER) {
            s->dtype = ST_I64;
            s->data = t->i64;
            s->nbytes = sizeof(int64_t);
        } else {
            s->dtype = ST_F32;
            s->data = t->data;
            s->nbytes = t->numel * sizeof(float);
        }
        if (!strcmp(t->name, "fc.weight")) { /* torchvision's strict load wants fc.bias */
            s = &ts[n++];
            s->name = "fc.bias";
            s->dtype = ST_F32;
            s->ndim = 1;
            s->shape[0] = nc;
            s->data = zeros;
            s->nbytes = (size_t)nc * sizeof(float);
        }
    }
    char ich[16], stem[16], size[16], mean[64] = "", std[64] = "";
    snprintf(ich, sizeof ich, "%d", m->cfg.in_channels);
    snprintf(stem, sizeof stem, "%d", m->cfg.small_stem);
    snprintf(size, sizeof size, "%d", m->cfg.image_size);
    int recorded = m->cfg.input_std[0] > 0 && m->cfg.in_channels <= 3;
    for (int c = 0; recorded && c < m->cfg.in_channels; c++) { /* %.9g: the same float back */
        size_t a = strlen(mean), b = strlen(std);
        snprintf(mean + a, sizeof mean - a, "%s%.9g", c ? "," : "", m->cfg.input_mean[c]);
        snprintf(std + b, sizeof std - b, "%s%.9g", c ? "," : "", m->cfg.input_std[c]);
    }
    const char *meta[] = {"format", "pt", "coretuned.arch", m->cfg.arch, "coretuned.in_channels", ich,
                          "coretuned.small_stem", stem, "coretuned.image_size", size,
                          "coretuned.input_mean", mean, "coretuned.input_std", std};
    int rc = st_save(path, ts, n, meta, recorded ? 7 : 5, err, errlen);
    free(ts);
    free(zeros);
    return rc < 0 ? rc : rc ? -EIO : 0;
}
