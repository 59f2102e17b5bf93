/* trainer/train.c — one training job, top to bottom: set up everything (all allocation happens
 * here, so peak memory is known before the first step), then epochs of optimiser steps of
 * micro-batches: model_forward -> coreloss_forward_backward -> model_backward -> sgd_step.
 * Runs on the caller's thread; progress goes to the caller's callback on the same thread.
 * Errors: negative return with the reason in err; a bad job never takes the process down.
 *
 * Determinism: every random draw comes from a generator seeded by (seed, purpose, position), never
 * from a stream carried across steps, so a job resumed from a checkpoint at (epoch, batch) sees the
 * same batches, augmentations and Core-tuning draws as an uninterrupted run. */
#include "trainer/trainer.h"
#include "common/err.h"
#include "common/util.h"
#include "trainer/coreloss.h"
#include "trainer/data.h"
#include "trainer/model.h"
#include "trainer/safetensors.h"
#include "trainer/sgd.h"
#include "trainer/simclr.h"
#include "trainer/gpu/gpu_model.h"
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Generator streams (data.h reserves 0 and 1). */
enum { RNG_STREAM_LOSS = 2, RNG_STREAM_INIT = 3, RNG_STREAM_SPLIT = 4 };

void tr_spec_defaults(tr_spec *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->arch, sizeof s->arch, "resnet20");
    s->in_channels = 1;
    s->image_size = 28;
    s->valid_fraction = 0.1;
    s->valid_every = 1;
    s->augment = 1;
    s->method = TR_CORE_TUNING;
    s->variant = TR_VARIANT_PAPER;
    s->hp = (tr_hparams){.epochs = 100, .batch_size = 64, .grad_accum = 4, .lr = 0.01, .momentum = 0.9,
                         .nesterov = 1, .weight_decay = 1e-4, .cosine = 1, .warmup_steps = 0, .eta = 0.1,
                         .mixup_alpha = 1.0, .temperature = 0.07, .contrast_dim = 256};
    s->seed = 0;
    s->threads = 0;
    s->device = -1;
    s->precision = TR_FP32;
    s->checkpoint_seconds = 300;
}


#define CHECK_RANGE(cond, field, ...) \
    do { if (!(cond)) { snprintf(param, paramlen, "%s", field); return err_set(err, errlen, -EINVAL, __VA_ARGS__); } } while (0)

const char *const tr_arch_names[TR_N_ARCHS] = {"resnet18", "resnet34", "resnet50", "resnet20", "resnet32", "resnet56"};

int tr_arch_known(const char *name)
{
    for (int i = 0; i < TR_N_ARCHS; i++)
        if (!strcmp(name, tr_arch_names[i])) return 1;
    return 0;
}

int tr_spec_validate(const tr_spec *s, char *param, size_t paramlen, char *err, size_t errlen)
{
    CHECK_RANGE(tr_arch_known(s->arch), "arch", "unknown architecture '%s' (resnet18, resnet34, resnet50, resnet20, resnet32, resnet56)", s->arch);
    CHECK_RANGE(s->in_channels == 1 || s->in_channels == 3, "in_channels", "in_channels must be 1 or 3");
    CHECK_RANGE(s->image_size >= 8 && s->image_size <= 512, "image_size", "image_size must be in [8, 512]");
    CHECK_RANGE(s->train_data[0], "train_data", "a training data set is required");
    CHECK_RANGE(s->train_per_class >= 0 && s->train_per_class <= 1000000, "train_per_class", "train_per_class must be in [0, 1000000]");
    CHECK_RANGE(s->train_limit >= 0, "train_limit", "train_limit must be >= 0");
    CHECK_RANGE(s->valid_limit >= 0, "valid_limit", "valid_limit must be >= 0");
    CHECK_RANGE(s->valid_fraction >= 0 && s->valid_fraction < 1, "valid_fraction", "valid_fraction must be in [0, 1)");
    CHECK_RANGE(s->valid_every >= 1 && s->valid_every <= 10000, "valid_every", "valid_every must be in [1, 10000]");
    CHECK_RANGE(s->method == TR_CE_TUNING || s->method == TR_CORE_TUNING || s->method == TR_SIMCLR, "method",
                "unknown method");
    CHECK_RANGE(s->variant == TR_VARIANT_PAPER || s->variant == TR_VARIANT_REFERENCE, "variant", "unknown variant");
    const tr_hparams *h = &s->hp;
    CHECK_RANGE(h->epochs >= 1 && h->epochs <= 10000, "n_epochs", "n_epochs must be in [1, 10000]");
    CHECK_RANGE(h->batch_size >= 2 && h->batch_size <= 4096, "batch_size", "batch_size must be in [2, 4096]");
    CHECK_RANGE(h->grad_accum >= 1 && h->grad_accum <= 256, "gradient_accumulation_steps", "gradient_accumulation_steps must be in [1, 256]");
    CHECK_RANGE(h->lr > 0 && h->lr <= 10, "learning_rate", "learning_rate must be in (0, 10]");
    CHECK_RANGE(h->momentum >= 0 && h->momentum < 1, "momentum", "momentum must be in [0, 1)");
    CHECK_RANGE(!h->nesterov || h->momentum > 0, "nesterov", "nesterov needs momentum > 0");
    CHECK_RANGE(h->weight_decay >= 0 && h->weight_decay < 1, "weight_decay", "weight_decay must be in [0, 1)");
    CHECK_RANGE(h->warmup_steps >= 0 && h->warmup_steps <= 10000000, "warmup_steps", "warmup_steps must be >= 0");
    CHECK_RANGE(h->eta >= 0 && h->eta <= 100, "eta", "eta must be in [0, 100]");
    CHECK_RANGE(h->mixup_alpha > 0 && h->mixup_alpha <= 100, "mixup_alpha", "mixup_alpha must be in (0, 100]");
    CHECK_RANGE(h->temperature > 0 && h->temperature <= 10, "temperature", "temperature must be in (0, 10]");
    CHECK_RANGE(h->contrast_dim >= 1 && h->contrast_dim <= 4096, "contrast_dim", "contrast_dim must be in [1, 4096]");
    CHECK_RANGE(h->es_patience >= 0 && h->es_patience <= 10000, "es_patience",
                "early_stopping.patience must be in [1, 10000] (0: off)");
    CHECK_RANGE(h->es_min_delta >= 0 && h->es_min_delta <= 1, "es_min_delta", "early_stopping.min_delta must be in [0, 1]");
    CHECK_RANGE(h->es_patience > 0 || h->es_min_delta == 0, "es_min_delta",
                "early_stopping.min_delta needs early_stopping.patience");
    CHECK_RANGE(s->threads >= 0 && s->threads <= 1024, "threads", "threads must be in [0, 1024]");
    CHECK_RANGE(s->device >= TR_DEVICE_ANY && s->device < 64, "device", "device must be \"cpu\", \"cuda\" or \"cuda:N\" (N < 64)");
    CHECK_RANGE(s->precision >= TR_FP32 && s->precision <= TR_BF16, "precision",
                "precision must be \"fp32\", \"tf32\" or \"bf16\"");
    CHECK_RANGE(s->precision == TR_FP32 || s->device != TR_DEVICE_CPU, "precision",
                "precision \"tf32\" and \"bf16\" need a CUDA device");
    CHECK_RANGE(s->checkpoint_seconds >= 0, "checkpoint_seconds", "checkpoint_seconds must be >= 0");
    return 0;
}

/* Everything one job holds; created by job_setup, released by job_teardown. */
typedef struct job {
    const tr_spec *spec;
    data_set *train_ds, *valid_ds;     /* valid_ds may be train_ds (split) */
    int *train_idx, *valid_idx;
    int ntrain, nvalid;
    data_loader *train_loader, *valid_loader;
    model *m;
    coreloss *loss;                    /* fine-tuning: classifier (+ contrastor) losses */
    coreloss_weights w;
    coreloss_grads g;
    simclr *ssl;                       /* pre-training: NT-Xent on the projector */
    simclr_weights sw;
    simclr_grads sg;
    float *views;                      /* SimCLR: both views stacked, [2 x batch][c][h][w] */
    float *dh;                         /* [rows x feat_dim], rows = batch (2 x batch for SimCLR) */
    float *momentum;                   /* [num_params] (on the device: the host copy at checkpoints) */
    /* device "cuda:N": the backbone, its activations, every gradient and SGD on the GPU; the loss on the
     * host over the [rows x d] features (h), so its heads are copied over each step (small) */
    gpu_ctx *gc;
    gpu_model *gm;
    float *h;                          /* [rows x feat_dim] features copied from the device */
    int steps_per_epoch, total_steps;
    size_t bytes;
} job;

static void job_teardown(job *j)
{
    data_loader_free(j->train_loader);
    data_loader_free(j->valid_loader);
    if (j->valid_ds != j->train_ds) data_free(j->valid_ds);
    data_free(j->train_ds);
    free(j->train_idx);
    free(j->valid_idx);
    gpu_model_free(j->gm);
    gpu_ctx_free(j->gc);
    free(j->h);
    model_free(j->m);
    coreloss_free(j->loss);
    simclr_free(j->ssl);
    free(j->views);
    free(j->dh);
    free(j->momentum);
}

/* Open the data, pick the labelled subset and the validation split. */
static int setup_data(job *j, char *err, size_t errlen)
{
    const tr_spec *s = j->spec;
    data_open_opts o = {.channels = s->in_channels, .height = s->image_size, .width = s->image_size};
    int rc = data_open(&j->train_ds, s->train_data, &o, err, errlen);
    if (rc) return rc;
    if (s->valid_data[0]) {
        data_open_opts vo = o;
        vo.limit = s->valid_limit;
        if ((rc = data_open(&j->valid_ds, s->valid_data, &vo, err, errlen))) return rc;
        if (j->valid_ds->num_classes > j->train_ds->num_classes)
            return err_set(err, errlen, -EINVAL, "validation data has %d classes, training data %d",
                        j->valid_ds->num_classes, j->train_ds->num_classes);
    }
    /* Index lists: the training candidates, and the validation images (a split of the training set,
     * or the whole separate validation set). */
    const int n = j->train_ds->n, nv = j->valid_ds ? j->valid_ds->n : n;
    int *all = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1)), *tmp = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    j->train_idx = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    j->valid_idx = malloc(sizeof(int) * (size_t)(nv > 0 ? nv : 1));
    if (!all || !tmp || !j->train_idx || !j->valid_idx) {
        free(all);
        free(tmp);
        return err_set(err, errlen, -ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) all[i] = i;
    int ncand = n;
    if (j->valid_ds) {
        j->nvalid = nv;
        for (int i = 0; i < nv; i++) j->valid_idx[i] = i;
    } else {
        j->valid_ds = j->train_ds;
        rc = data_split(tmp, &ncand, j->valid_idx, &j->nvalid, j->train_ds, all, n, s->valid_fraction,
                        s->valid_limit, s->seed ^ 0x5eedULL, err, errlen);
        if (rc) goto out;
        memcpy(all, tmp, sizeof(int) * (size_t)ncand);
    }
    if (s->train_per_class > 0 && s->method != TR_SIMCLR) {
        rc = data_subset_per_class(j->train_idx, &j->ntrain, j->train_ds, all, ncand, s->train_per_class,
                                   s->seed, err, errlen);
        if (rc) goto out;
    } else {
        memcpy(j->train_idx, all, sizeof(int) * (size_t)ncand);
        j->ntrain = ncand;
    }
    if (s->train_limit > 0 && j->ntrain > s->train_limit) j->ntrain = s->train_limit;
    if (s->valid_limit > 0 && j->nvalid > s->valid_limit) j->nvalid = s->valid_limit;
    if (j->nvalid == 0) { rc = err_set(err, errlen, -EINVAL, "no validation images (set validation_file or valid_fraction)"); goto out; }

    data_loader_opts lo = {.ds = j->train_ds, .indices = j->train_idx, .nindices = j->ntrain,
                           .batch = s->hp.batch_size, .shuffle = true, .drop_last = true,
                           .augment = s->augment != 0, .views = s->method == TR_SIMCLR ? 2 : 1,
                           .layout = DATA_NCHW, .seed = s->seed, .prefetch = 2};
    data_aug_default(&lo.aug, j->train_ds, true);
    if (s->method == TR_SIMCLR) { /* SimCLR needs strong views: random resized crop (scale as for small images) */
        lo.aug.crop = DATA_CROP_RESIZED;
        lo.aug.scale_min = 0.2f;
        lo.aug.scale_max = 1.0f;
        lo.aug.ratio_min = 3.0f / 4.0f;
        lo.aug.ratio_max = 4.0f / 3.0f;
    }
    rc = data_loader_new(&j->train_loader, &lo, err, errlen);
    if (rc) goto out;
    data_loader_opts vo = lo;
    vo.ds = j->valid_ds; vo.indices = j->valid_idx; vo.nindices = j->nvalid;
    vo.shuffle = false; vo.drop_last = false;
    vo.augment = s->method == TR_SIMCLR; /* SimCLR validates on (seeded) view pairs, augmented as in training */
    if (s->method != TR_SIMCLR)
        data_aug_default(&vo.aug, j->train_ds, false); /* normalise with the training statistics */
    rc = data_loader_new(&j->valid_loader, &vo, err, errlen);
    if (rc) goto out;
    int bpe = data_loader_batches_per_epoch(j->train_loader);
    j->steps_per_epoch = bpe / s->hp.grad_accum;
    if (j->steps_per_epoch < 1) {
        rc = err_set(err, errlen, -EINVAL, "%d training images are fewer than one step of batch_size %d x "
                  "gradient_accumulation_steps %d", j->ntrain, s->hp.batch_size, s->hp.grad_accum);
        goto out;
    }
    j->total_steps = j->steps_per_epoch * s->hp.epochs;
out:
    free(all);
    free(tmp);
    return rc;
}

/* The heads: fine-tuning uses the classifier (and the contrastor for Core-tuning); SimCLR uses the
 * contrastor slot as its projection head and has no classifier. */
static int setup_model(job *j, char *err, size_t errlen)
{
    const tr_spec *s = j->spec;
    const int core = s->method == TR_CORE_TUNING, ssl = s->method == TR_SIMCLR;
    const int rows = ssl ? 2 * s->hp.batch_size : s->hp.batch_size;
    /* the short last validation batch is declared too, so no step takes the conv kernels' slow path */
    const int tail = (j->nvalid % s->hp.batch_size) * (ssl ? 2 : 1);
    model_config mc = {.in_channels = s->in_channels, .image_size = s->image_size, .small_stem = s->small_stem,
                       .num_classes = ssl ? 0 : j->train_ds->num_classes,
                       .contrast_dim = core || ssl ? s->hp.contrast_dim : 0, .max_batch = rows,
                       .extra_batch = {tail}};
    snprintf(mc.arch, sizeof mc.arch, "%s", s->arch);
    data_aug norm; /* what the validation loader normalises with: recorded in the saved models */
    data_aug_default(&norm, j->train_ds, false);
    memcpy(mc.input_mean, norm.mean, sizeof mc.input_mean);
    memcpy(mc.input_std, norm.std, sizeof mc.input_std);
    int rc = model_new(&j->m, &mc, err, errlen);
    if (rc) return rc;
    rng_t r;
    data_rng(&r, s->seed, RNG_STREAM_INIT, 0, 0);
    model_init(j->m, &r);
    if (s->init_weights[0]) {
        char msg[1024];
        rc = model_load(j->m, s->init_weights, MODEL_LOAD_HEADS_OPTIONAL, msg, sizeof msg);
        if (rc) /* a backbone fine-tuned for other classes: keep its backbone, start the heads afresh */
            rc = model_load(j->m, s->init_weights, MODEL_LOAD_SKIP_HEADS, msg, sizeof msg);
        if (rc) return err_set(err, errlen, rc, "initial weights: %s", msg);
    }
    const int d = model_feature_dim(j->m);
    model_tensor *c0w = model_find(j->m, "contrastor.0.weight"), *c0b = model_find(j->m, "contrastor.0.bias");
    model_tensor *c2w = model_find(j->m, "contrastor.2.weight"), *c2b = model_find(j->m, "contrastor.2.bias");
    if (ssl) {
        simclr_config sc = {.feat_dim = d, .proj_dim = s->hp.contrast_dim, .max_batch = s->hp.batch_size,
                            .temperature = (float)s->hp.temperature};
        if ((rc = simclr_new(&j->ssl, &sc, err, errlen))) return rc;
        j->sw = (simclr_weights){c0w->data, c0b->data, c2w->data, c2b->data};
        j->sg = (simclr_grads){c0w->grad, c0b->grad, c2w->grad, c2b->grad};
        j->views = malloc(sizeof(float) * (size_t)rows * s->in_channels * s->image_size * s->image_size);
        if (!j->views) return err_set(err, errlen, -ENOMEM, "out of memory");
    } else {
        coreloss_config lc = {.method = core ? CORELOSS_CORE : CORELOSS_CE,
                              .variant = s->variant == TR_VARIANT_REFERENCE ? CORELOSS_REFERENCE : CORELOSS_PAPER,
                              .num_classes = mc.num_classes, .feat_dim = d, .contrast_dim = core ? s->hp.contrast_dim : 1,
                              .max_batch = s->hp.batch_size, .eta = (float)s->hp.eta,
                              .temperature = (float)s->hp.temperature, .mixup_alpha = (float)s->hp.mixup_alpha};
        if ((rc = coreloss_new(&j->loss, &lc, err, errlen))) return rc;
        model_tensor *fc = model_find(j->m, "fc.weight");
        j->w.fc = fc->data;
        j->g.fc = fc->grad;
        if (core) {
            j->w.c0w = c0w->data; j->w.c0b = c0b->data; j->w.c2w = c2w->data; j->w.c2b = c2b->data;
            j->g.c0w = c0w->grad; j->g.c0b = c0b->grad; j->g.c2w = c2w->grad; j->g.c2b = c2b->grad;
        }
    }
    size_t dh_len = (size_t)rows * (size_t)d;
    j->dh = malloc(sizeof(float) * dh_len);
    j->momentum = calloc(model_num_params(j->m), sizeof(float));
    if (!j->dh || !j->momentum) return err_set(err, errlen, -ENOMEM, "out of memory");
    if (s->device >= 0) { /* after init/load: gpu_model_new copies the weights over */
        if (!(j->h = malloc(sizeof(float) * dh_len))) return err_set(err, errlen, -ENOMEM, "out of memory");
        if ((rc = gpu_ctx_new(&j->gc, s->device, s->precision, err, errlen)) ||
            (rc = gpu_model_new(&j->gm, j->gc, j->m, err, errlen)))
            return rc;
    }
    j->bytes = model_memory_bytes(j->m) + (j->loss ? coreloss_memory_bytes(j->loss) : 0) +
               (j->ssl ? simclr_memory_bytes(j->ssl) + sizeof(float) * (size_t)rows * s->in_channels *
                                                           s->image_size * s->image_size : 0) +
               j->train_ds->bytes + (j->valid_ds != j->train_ds ? j->valid_ds->bytes : 0) +
               data_loader_bytes(j->train_loader) + data_loader_bytes(j->valid_loader) +
               sizeof(float) * (dh_len + model_num_params(j->m)) + sizeof(int) * (size_t)2 * (size_t)j->train_ds->n;
    return 0;
}

/* ---- checkpoints: the whole state in one safetensors file, written atomically ---- */

/* Where the run is, and what early stopping needs to survive a pause or a crash: es_wait is the
 * number of validations in a row without improvement, best_loss the best model's validation loss. */
typedef struct position { int epoch, batch, step, best_epoch, es_wait; double best_acc, best_loss; } position;

/* The device's weights, running statistics and momentum to the host model (checkpoints are the host's
 * files, the same whatever the device: a job paused on a GPU resumes on the CPU and back). */
static int host_sync(job *j, char *err, size_t errlen)
{
    if (!j->gm) return 0;
    if (gpu_model_pull(j->gm) || gpu_model_pull_momentum(j->gm, j->momentum))
        return err_set(err, errlen, -EIO, "%s", gpu_error(j->gc));
    return 0;
}

static int gpu_failed(job *j, const char *what, int step, char *err, size_t errlen)
{
    return err_set(err, errlen, -EIO, "%s failed at step %d: %s", what, step + 1, gpu_error(j->gc));
}

static int save_state(job *j, const char *path, const position *p, char *err, size_t errlen)
{
    int src = host_sync(j, err, errlen);
    if (src) return src;
    int nt = model_num_tensors(j->m);
    st_tensor *ts = calloc((size_t)nt + 1, sizeof *ts);
    if (!ts) return err_set(err, errlen, -ENOMEM, "out of memory");
    for (int i = 0; i < nt; i++) {
        model_tensor *t = model_tensor_at(j->m, i);
        ts[i].name = t->name;
        ts[i].ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++) ts[i].shape[d] = t->shape[d];
        if (t->kind == MODEL_COUNTER) {
            ts[i].dtype = ST_I64; ts[i].data = t->i64; ts[i].nbytes = sizeof(int64_t);
        } else {
            ts[i].dtype = ST_F32; ts[i].data = t->data; ts[i].nbytes = sizeof(float) * t->numel;
        }
    }
    size_t np = model_num_params(j->m);
    ts[nt] = (st_tensor){.name = "optimizer.momentum_buffer", .dtype = ST_F32, .ndim = 1,
                         .shape = {(int64_t)np}, .data = j->momentum, .nbytes = sizeof(float) * np};
    char epoch[32], batch[32], step[32], best[64], best_epoch[32], best_loss[64], wait[32];
    snprintf(epoch, sizeof epoch, "%d", p->epoch);
    snprintf(batch, sizeof batch, "%d", p->batch);
    snprintf(step, sizeof step, "%d", p->step);
    snprintf(best, sizeof best, "%.17g", p->best_acc);
    snprintf(best_epoch, sizeof best_epoch, "%d", p->best_epoch);
    snprintf(best_loss, sizeof best_loss, "%.17g", p->best_loss);
    snprintf(wait, sizeof wait, "%d", p->es_wait);
    const char *meta[] = {"format", "coretuned-state-1", "arch", j->spec->arch, "epoch", epoch,
                          "batch", batch, "step", step, "best_valid_accuracy", best, "best_epoch", best_epoch,
                          "best_valid_loss", best_loss, "early_stopping_wait", wait};
    int rc = st_save(path, ts, nt + 1, meta, 9, err, errlen);
    free(ts);
    return rc;
}

static int meta_int(const st_file *f, const char *key, int *out)
{
    const char *v = st_metadata(f, key);
    if (!v) return -1;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < 0 || x > 1000000000) return -1;
    *out = (int)x;
    return 0;
}

static int load_state(job *j, const char *path, position *p, char *err, size_t errlen)
{
    st_file *f;
    int rc = st_open(&f, path, err, errlen);
    if (rc) return rc;
    const char *fmt = st_metadata(f, "format"), *best = st_metadata(f, "best_valid_accuracy");
    if (!fmt || strcmp(fmt, "coretuned-state-1") != 0 || !best || meta_int(f, "epoch", &p->epoch) ||
        meta_int(f, "batch", &p->batch) || meta_int(f, "step", &p->step) || meta_int(f, "best_epoch", &p->best_epoch)) {
        rc = err_set(err, errlen, -EINVAL, "%s: not a coretuned training state", path);
        goto out;
    }
    p->best_acc = strtod(best, NULL);
    /* absent from states written before early stopping existed: no loss known, no wait yet */
    const char *best_loss = st_metadata(f, "best_valid_loss");
    p->best_loss = best_loss ? strtod(best_loss, NULL) : NAN;
    p->es_wait = 0;
    if (st_metadata(f, "early_stopping_wait") && meta_int(f, "early_stopping_wait", &p->es_wait)) {
        rc = err_set(err, errlen, -EINVAL, "%s: bad early_stopping_wait", path);
        goto out;
    }
    int nt = model_num_tensors(j->m);
    for (int i = 0; i < nt; i++) {
        model_tensor *t = model_tensor_at(j->m, i);
        const st_tensor *s = st_find(f, t->name);
        if (!s || st_numel(s) != (t->kind == MODEL_COUNTER ? 1 : t->numel)) {
            rc = err_set(err, errlen, -EINVAL, "%s: tensor %s is %s", path, t->name, s ? "mis-shaped" : "missing");
            goto out;
        }
        if (t->kind == MODEL_COUNTER) {
            if (s->dtype != ST_I64) { rc = err_set(err, errlen, -EINVAL, "%s: %s is not int64", path, t->name); goto out; }
            memcpy(t->i64, s->data, sizeof(int64_t));
        } else {
            st_to_f32(t->data, s);
        }
    }
    const st_tensor *mb = st_find(f, "optimizer.momentum_buffer");
    if (!mb || st_numel(mb) != model_num_params(j->m)) {
        rc = err_set(err, errlen, -EINVAL, "%s: optimizer.momentum_buffer is missing or mis-shaped", path);
        goto out;
    }
    st_to_f32(j->momentum, mb);
    if (p->epoch > j->spec->hp.epochs || p->step > j->total_steps) {
        rc = err_set(err, errlen, -EINVAL, "%s: state is past the end of this job", path);
        goto out;
    }
out:
    st_close(f);
    return rc;
}

/* ---- the step and the evaluation ---- */

typedef struct step_terms { double total, ce, contrastive; } step_terms;

static int loss_failed(int rc, int step, double lr, char *err, size_t errlen)
{
    if (rc == -EDOM)
        return err_set(err, errlen, -EDOM, "loss is not finite at step %d (learning rate %g): training diverged",
                    step + 1, lr);
    return err_set(err, errlen, rc, "loss computation failed at step %d", step + 1);
}

/* Both SimCLR views of a batch, stacked so the backbone sees 2n images in one pass. */
static const float *stack_views(job *j, const data_batch *b)
{
    size_t image = (size_t)j->spec->in_channels * j->spec->image_size * j->spec->image_size;
    memcpy(j->views, b->x, sizeof(float) * image * (size_t)b->n);
    memcpy(j->views + image * (size_t)b->n, b->x2, sizeof(float) * image * (size_t)b->n);
    return j->views;
}

/* One micro-batch: forward, the method's loss and its gradients (scaled by 1/accumulation), backward. */
static int micro_step(job *j, const data_batch *b, int step, int micro, double lr, step_terms *out, char *err,
                      size_t errlen)
{
    const tr_spec *s = j->spec;
    const int accum = s->hp.grad_accum, ssl = s->method == TR_SIMCLR;
    const int rows = ssl ? 2 * b->n : b->n;
    const float *x = ssl ? stack_views(j, b) : b->x, *h = j->h;
    int rc;
    if (j->gm) {
        if ((rc = gpu_model_forward(j->gm, x, rows, 1, j->h)))
            return rc == -EINVAL ? err_set(err, errlen, rc, "batch of %d rejected by the model", b->n)
                                 : gpu_failed(j, "forward pass", step, err, errlen);
    } else {
        h = model_forward(j->m, x, rows, 1);
    }
    if (!h) return err_set(err, errlen, -EINVAL, "batch of %d rejected by the model", b->n);
    if (ssl) {
        double loss, acc;
        rc = simclr_forward_backward(j->ssl, j->dh, &j->sg, &loss, &acc, h, b->n, &j->sw, 1.0f / accum);
        if (rc) return loss_failed(rc, step, lr, err, errlen);
        out->total += loss / accum;
        out->contrastive += loss / accum;
    } else {
        if (s->method == TR_CORE_TUNING) {
            rng_t r;
            data_rng(&r, s->seed, RNG_STREAM_LOSS, (uint64_t)step, (uint64_t)micro);
            coreloss_sample(j->loss, &r, b->y, b->n);
        }
        coreloss_terms t;
        rc = coreloss_forward_backward(j->loss, j->dh, &j->g, &t, h, b->y, b->n, &j->w, 1.0f / accum);
        if (rc) return loss_failed(rc, step, lr, err, errlen);
        out->total += t.total / accum;
        out->ce += t.ce / accum;
        out->contrastive += t.contrastive / accum;
    }
    if (j->gm) {
        if (gpu_model_backward(j->gm, j->dh, rows)) return gpu_failed(j, "backward pass", step, err, errlen);
    } else if ((rc = model_backward(j->m, j->dh, rows))) {
        return err_set(err, errlen, rc, "backward pass failed at step %d", step + 1);
    }
    return 0;
}

/* One optimiser step over grad_accum micro-batches. */
static int train_step(job *j, int step, double lr, step_terms *out, char *err, size_t errlen)
{
    const tr_spec *s = j->spec;
    *out = (step_terms){0};
    model_zero_grad(j->m);
    if (j->gm && gpu_model_zero_grad(j->gm)) return gpu_failed(j, "zeroing gradients", step, err, errlen);
    for (int micro = 0; micro < s->hp.grad_accum; micro++) {
        data_batch b;
        int rc = data_loader_next(j->train_loader, &b);
        if (rc) return err_set(err, errlen, rc, "data loader failed at step %d", step + 1);
        if ((rc = micro_step(j, &b, step, micro, lr, out, err, errlen))) return rc;
    }
    sgd_config sc = {.momentum = s->hp.momentum, .weight_decay = s->hp.weight_decay, .nesterov = s->hp.nesterov};
    if (j->gm) { /* the heads' gradients were made on the host; their new weights are needed there */
        if (gpu_model_push_head_grads(j->gm) ||
            gpu_model_sgd(j->gm, (float)lr, (float)sc.momentum, (float)sc.weight_decay, sc.nesterov) ||
            gpu_model_pull_heads(j->gm))
            return gpu_failed(j, "SGD", step, err, errlen);
        return 0;
    }
    sgd_step(model_params(j->m), j->momentum, model_grads(j->m), model_num_params(j->m), lr, &sc);
    return 0;
}

/* Validation in eval mode: fine-tuning gives the mean CE and top-1 accuracy; SimCLR the mean NT-Xent
 * over seeded view pairs and how often the positive is the nearest row. */
static int evaluate(job *j, double *loss, double *acc, char *err, size_t errlen)
{
    const int ssl = j->spec->method == TR_SIMCLR;
    const simclr_grads none = {0};
    double loss_sum = 0, acc_sum = 0;
    int correct = 0, seen = 0;
    int nb = data_loader_batches_per_epoch(j->valid_loader);
    int rc = data_loader_seek(j->valid_loader, 0, 0);
    for (int i = 0; !rc && i < nb; i++) {
        data_batch b;
        if ((rc = data_loader_next(j->valid_loader, &b))) break;
        const float *x = ssl ? stack_views(j, &b) : b.x, *h = j->h;
        if (j->gm) {
            if (gpu_model_forward(j->gm, x, ssl ? 2 * b.n : b.n, 0, j->h)) { rc = -EIO; break; }
        } else {
            h = model_forward(j->m, x, ssl ? 2 * b.n : b.n, 0);
        }
        if (!h) { rc = -EINVAL; break; }
        if (ssl) {
            double l, a;
            if ((rc = simclr_forward_backward(j->ssl, NULL, &none, &l, &a, h, b.n, &j->sw, 1.0f))) break;
            loss_sum += l * b.n;
            acc_sum += a * b.n;
        } else {
            double ls;
            int c;
            if ((rc = coreloss_eval(j->loss, &ls, &c, h, b.y, b.n, j->w.fc))) break;
            loss_sum += ls;
            correct += c;
        }
        seen += b.n;
    }
    if (rc) return err_set(err, errlen, rc, rc == -EDOM ? "validation loss is not finite" : "validation failed");
    *loss = loss_sum / seen;
    *acc = ssl ? acc_sum / seen : (double)correct / seen;
    return 0;
}

static void emit(const tr_callbacks *cb, const tr_progress *p)
{
    if (cb && cb->progress) cb->progress(cb->ud, p);
}

static int path_join(char *out, size_t len, const char *dir, const char *name)
{
    return (size_t)snprintf(out, len, "%s/%s", dir, name) < len ? 0 : -ENAMETOOLONG;
}

int tr_run(const tr_spec *spec, const char *out_dir, int resume, const tr_callbacks *cb, tr_result *res,
           char *err, size_t errlen)
{
    char param[64];
    int rc = tr_spec_validate(spec, param, sizeof param, err, errlen);
    if (rc) return rc;
    tr_spec any0;
    if (spec->device == TR_DEVICE_ANY) { /* nobody assigned one: the first visible device */
        any0 = *spec;
        any0.device = 0;
        spec = &any0;
    }
    memset(res, 0, sizeof *res);
    char state_path[TR_PATH_MAX + 32], best_path[TR_PATH_MAX + 32], final_path[TR_PATH_MAX + 32];
    if (path_join(state_path, sizeof state_path, out_dir, "state.safetensors") ||
        path_join(best_path, sizeof best_path, out_dir, "best.safetensors") ||
        path_join(final_path, sizeof final_path, out_dir, "final.safetensors"))
        return err_set(err, errlen, -ENAMETOOLONG, "output directory path too long");
    if (mkdir(out_dir, 0750) != 0 && errno != EEXIST)
        return err_set(err, errlen, -errno, "cannot create %s: %s", out_dir, strerror(errno));

    /* Threads: every kernel runs on OpenMP threads, whose count is per calling thread, so jobs on
     * different worker threads each get their own. OpenBLAS is only nn_gemm's fallback; its thread
     * count is process-wide, so every job sets the same value (1) and none races another. */
    int threads = spec->threads > 0 ? spec->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    omp_set_num_threads(threads);
    openblas_set_num_threads(1);

    job j = {.spec = spec};
    if ((rc = setup_data(&j, err, errlen)) || (rc = setup_model(&j, err, errlen))) goto out;
    res->peak_bytes = j.bytes;

    position pos = {0};
    pos.best_acc = -1;
    pos.best_loss = NAN;
    if (resume && access(state_path, F_OK) == 0) {
        if ((rc = load_state(&j, state_path, &pos, err, errlen))) goto out;
        if (j.gm && (gpu_model_push(j.gm) || gpu_model_push_momentum(j.gm, j.momentum))) {
            rc = err_set(err, errlen, -EIO, "resuming on cuda:%d: %s", spec->device, gpu_error(j.gc));
            goto out;
        }
    }
    if ((rc = data_loader_seek(j.train_loader, pos.epoch, (int64_t)pos.batch))) {
        err_set(err, errlen, rc, "cannot position the data loader");
        goto out;
    }

    const int spe = j.steps_per_epoch, accum = spec->hp.grad_accum, patience = spec->hp.es_patience;
    double t_start = util_mono(), t_ckpt = t_start, t_last = t_start;
    int steps_this_run = 0;
    double last_loss = NAN, last_acc = NAN;
    /* (a run resumed after early stopping had decided, but before final.safetensors, trains no more) */
    while (pos.epoch < spec->hp.epochs && !(patience && pos.es_wait >= patience)) {
        while (pos.batch / accum < spe) {
            int step = pos.step;
            double lr = sgd_lr_at(spec->hp.lr, step, j.total_steps, spec->hp.warmup_steps, spec->hp.cosine);
            step_terms t;
            if ((rc = train_step(&j, step, lr, &t, err, errlen))) goto out;
            pos.step++;
            pos.batch += accum;
            steps_this_run++;
            double now = util_mono();
            double per_step = (now - t_start) / steps_this_run;
            tr_progress p = {.kind = TR_EV_STEP, .step = pos.step, .total_steps = j.total_steps,
                             .epoch = pos.epoch + 1, .epochs = spec->hp.epochs, .train_loss = t.total,
                             .ce_loss = t.ce, .contrastive_loss = t.contrastive, .lr = lr,
                             .images_per_second = (double)spec->hp.batch_size * accum / (now - t_last),
                             .eta_seconds = per_step * (j.total_steps - pos.step)};
            t_last = now;
            emit(cb, &p);
            int stop = cb && cb->should_stop ? cb->should_stop(cb->ud) : TR_RUN;
            int timed = spec->checkpoint_seconds > 0 && now - t_ckpt >= spec->checkpoint_seconds;
            if ((stop == TR_STOP_CHECKPOINT || timed) && pos.batch / accum < spe) {
                if ((rc = save_state(&j, state_path, &pos, err, errlen))) goto out;
                t_ckpt = now;
                tr_progress c = {.kind = TR_EV_CHECKPOINT, .step = pos.step, .total_steps = j.total_steps,
                                 .epoch = pos.epoch + 1, .epochs = spec->hp.epochs, .checkpoint_path = state_path};
                emit(cb, &c);
            }
            if (stop != TR_RUN && pos.batch / accum < spe) {
                res->stopped = stop;
                goto done;
            }
        }
        /* end of epoch: validate (every valid_every epochs and always the last), keep the best,
         * checkpoint at the start of the next epoch */
        pos.epoch++;
        pos.batch = 0;
        if (pos.epoch % spec->valid_every == 0 || pos.epoch == spec->hp.epochs) {
            double vloss = 0, vacc = 0;
            if ((rc = evaluate(&j, &vloss, &vacc, err, errlen))) goto out;
            last_loss = vloss;
            last_acc = vacc;
            tr_progress e = {.kind = TR_EV_EPOCH, .step = pos.step, .total_steps = j.total_steps,
                             .epoch = pos.epoch, .epochs = spec->hp.epochs, .valid_loss = vloss,
                             .valid_accuracy = vacc};
            emit(cb, &e);
            /* early stopping: an improvement beats the best so far by more than min_delta (the first
             * validation always is one); the best model is still simply the most accurate */
            if (pos.best_epoch == 0 || vacc > pos.best_acc + spec->hp.es_min_delta) pos.es_wait = 0;
            else pos.es_wait++;
            if (vacc > pos.best_acc) {
                pos.best_acc = vacc;
                pos.best_loss = vloss;
                pos.best_epoch = pos.epoch;
                if ((rc = host_sync(&j, err, errlen)) || (rc = model_save(j.m, best_path, 0, err, errlen))) goto out;
            }
        }
        if ((rc = save_state(&j, state_path, &pos, err, errlen))) goto out;
        t_ckpt = util_mono();
        tr_progress c = {.kind = TR_EV_CHECKPOINT, .step = pos.step, .total_steps = j.total_steps,
                         .epoch = pos.epoch, .epochs = spec->hp.epochs, .checkpoint_path = state_path};
        emit(cb, &c);
        if (patience && pos.es_wait >= patience) break; /* finished: a success, not a stop */
        int stop = cb && cb->should_stop ? cb->should_stop(cb->ud) : TR_RUN;
        if (stop != TR_RUN && pos.epoch < spec->hp.epochs) {
            res->stopped = stop;
            goto done;
        }
    }
    if (patience) {
        /* with early stopping the model returned is the best validated one: final = best, written
         * from best.safetensors' weights (the heads it lacks, the contrastor, are not saved anyway) */
        char msg[1024];
        if ((rc = model_load(j.m, best_path, MODEL_LOAD_HEADS_OPTIONAL, msg, sizeof msg))) {
            err_set(err, errlen, rc, "early stopping: cannot read the best model back: %s", msg);
            goto out;
        }
        res->early_stopped = pos.es_wait >= patience && pos.epoch < spec->hp.epochs;
        last_acc = pos.best_acc;
        last_loss = pos.best_loss;
    }
    if ((rc = model_save(j.m, final_path, 0, err, errlen))) goto out;
done:
    res->steps_done = pos.step;
    res->epochs_done = pos.epoch;
    res->best_valid_accuracy = pos.best_acc < 0 ? NAN : pos.best_acc;
    res->best_epoch = pos.best_epoch;
    res->final_valid_accuracy = last_acc;
    res->final_valid_loss = last_loss;
out:
    job_teardown(&j);
    return rc;
}

/* Count blocks "layerL.B." in a file: the highest B + 1 (0 when the stage is absent). */
static int stage_blocks(const st_file *f, int stage)
{
    int n = 0;
    for (int i = 0; i < st_count(f); i++) {
        int l, b;
        if (sscanf(st_get(f, i)->name, "layer%d.%d.", &l, &b) == 2 && l == stage && b + 1 > n) n = b + 1;
    }
    return n;
}

int tr_weights_arch(const char *path, char *arch, int *in_channels, int *small_stem, char *err, size_t errlen)
{
    st_file *f;
    int rc = st_open(&f, path, err, errlen);
    if (rc) return rc;
    const st_tensor *c1 = st_find(f, "conv1.weight");
    int b[4] = {stage_blocks(f, 1), stage_blocks(f, 2), stage_blocks(f, 3), stage_blocks(f, 4)};
    int bottleneck = st_find(f, "layer1.0.conv3.weight") != NULL;
    const char *name = NULL;
    if (c1 && c1->ndim == 4) {
        if (b[3] == 0 && b[0] == b[1] && b[1] == b[2] && !bottleneck)
            name = b[0] == 3 ? "resnet20" : b[0] == 5 ? "resnet32" : b[0] == 9 ? "resnet56" : NULL;
        else if (b[0] == 2 && b[1] == 2 && b[2] == 2 && b[3] == 2 && !bottleneck)
            name = "resnet18";
        else if (b[0] == 3 && b[1] == 4 && b[2] == 6 && b[3] == 3)
            name = bottleneck ? "resnet50" : "resnet34";
    }
    if (!name) {
        rc = err_set(err, errlen, -EINVAL, "%s: not a ResNet with torchvision parameter names "
                  "(resnet18/34/50 or resnet20/32/56)", path);
    } else {
        snprintf(arch, 16, "%s", name);
        *in_channels = (int)c1->shape[1];
        *small_stem = c1->shape[2] == 3 && b[3] != 0;
    }
    st_close(f);
    return rc;
}
