/* trainer/evaluate.c — tr_evaluate: one trained classifier on one data set, once (a held-out test set),
 * computed the way tr_run validates: the same readers, the images converted to the model's channels
 * and size, normalised with the training statistics the file records, an eval-mode forward pass and
 * coreloss_eval's cross-entropy and top-1. Runs on the caller's thread (plus the loader's prefetch
 * thread and OpenMP's); everything it allocates is its own and freed before it returns.
 * Errors: negative return with a one-line reason in err. */
#include "trainer/trainer.h"
#include "common/err.h"
#include "trainer/coreloss.h"
#include "trainer/data.h"
#include "trainer/model.h"
#include "trainer/safetensors.h"
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What a weights file says about the model and how it was fed. */
typedef struct model_file {
    char arch[16];
    int in_channels, small_stem, num_classes;
    int image_size;          /* 0 = not recorded */
    int has_norm;            /* mean/std recorded (tr_run's files) */
    float mean[3], std[3];
} model_file;

/* A metadata value of exactly n comma-separated finite floats (std: each > 0). 0, or -1. */
static int meta_floats(const st_file *f, const char *key, float *out, int n, int positive)
{
    const char *v = st_metadata(f, key);
    if (!v) return -1;
    for (int i = 0; i < n; i++) {
        char *end;
        errno = 0;
        double x = strtod(v, &end);
        if (end == v || errno || !isfinite(x) || (positive && !(x > 0))) return -1;
        out[i] = (float)x;
        v = end;
        if (i + 1 < n && *v++ != ',') return -1;
    }
    return *v ? -1 : 0;
}

static int read_model_file(model_file *mf, const char *path, char *err, size_t errlen)
{
    memset(mf, 0, sizeof *mf);
    int rc = tr_weights_arch(path, mf->arch, &mf->in_channels, &mf->small_stem, err, errlen);
    if (rc) return rc;
    st_file *f;
    if ((rc = st_open(&f, path, err, errlen))) return rc;
    const st_tensor *fc = st_find(f, "fc.weight");
    if (!fc || fc->ndim != 2 || fc->shape[0] < 1 || fc->shape[0] > DATA_MAX_CLASSES) {
        rc = err_set(err, errlen, -EINVAL, "%s: no classifier (fc.weight): a backbone (a SimCLR job's model) has "
                     "nothing to evaluate", path);
        goto out;
    }
    mf->num_classes = (int)fc->shape[0];
    const char *size = st_metadata(f, "coretuned.image_size");
    if (size) {
        char *end;
        long x = strtol(size, &end, 10);
        if (*end || x < 1 || x > DATA_MAX_SIDE) {
            rc = err_set(err, errlen, -EINVAL, "%s: bad coretuned.image_size '%s'", path, size);
            goto out;
        }
        mf->image_size = (int)x;
    }
    /* both or neither: half a normalisation is no better than the data's own */
    mf->has_norm = mf->in_channels <= 3 && meta_floats(f, "coretuned.input_mean", mf->mean, mf->in_channels, 0) == 0 &&
                   meta_floats(f, "coretuned.input_std", mf->std, mf->in_channels, 1) == 0;
out:
    st_close(f);
    return rc;
}

#define CHECK_OPT(cond, ...) \
    do { if (!(cond)) return err_set(err, errlen, -EINVAL, __VA_ARGS__); } while (0)

int tr_evaluate(const char *model_path, const char *data, const tr_eval_opts *o, tr_eval_result *out,
                char *err, size_t errlen)
{
    static const tr_eval_opts defaults = {0};
    if (!o) o = &defaults;
    memset(out, 0, sizeof *out);
    if (err && errlen) err[0] = '\0';
    CHECK_OPT(o->image_size == 0 || (o->image_size >= 8 && o->image_size <= 512), "image_size must be in [8, 512]");
    CHECK_OPT(o->in_channels == 0 || o->in_channels == 1 || o->in_channels == 3, "in_channels must be 1 or 3");
    CHECK_OPT(o->limit >= 0, "limit must be >= 0");
    CHECK_OPT(o->batch_size >= 0 && o->batch_size <= 4096, "batch_size must be in [1, 4096]");
    CHECK_OPT(o->threads >= 0 && o->threads <= 1024, "threads must be in [0, 1024]");

    model_file mf;
    int rc = read_model_file(&mf, model_path, err, errlen);
    if (rc) return rc;
    CHECK_OPT(!o->in_channels || o->in_channels == mf.in_channels, "%s takes %d input channels, not %d", model_path,
              mf.in_channels, o->in_channels);
    const int size = o->image_size ? o->image_size : mf.image_size;
    CHECK_OPT(size > 0, "%s does not record the image size it was trained at: give image_size", model_path);
    const int batch = o->batch_size ? o->batch_size : 64;

    /* as tr_run: the calling thread's OpenMP team; OpenBLAS's process-wide count always 1 */
    omp_set_num_threads(o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN));
    openblas_set_num_threads(1);

    data_set *ds = NULL;
    model *m = NULL;
    coreloss *loss = NULL;
    data_loader *loader = NULL;
    char msg[1024];
    data_open_opts dopt = {.channels = mf.in_channels, .height = size, .width = size, .limit = o->limit};
    if ((rc = data_open(&ds, data, &dopt, err, errlen))) goto out;
    if (ds->n == 0) { rc = err_set(err, errlen, -EINVAL, "%s: no images", data); goto out; }
    if (ds->num_classes > mf.num_classes) {
        rc = err_set(err, errlen, -EINVAL, "%s has %d classes, the classifier in %s %d", data, ds->num_classes,
                     model_path, mf.num_classes);
        goto out;
    }
    /* the model as tr_run built it for validation (max_batch and the short last batch declared), so
     * every batch takes the same conv kernels and the numbers come out the same */
    model_config mc = {.in_channels = mf.in_channels, .image_size = size, .small_stem = mf.small_stem,
                       .num_classes = mf.num_classes, .max_batch = batch, .extra_batch = {ds->n % batch}};
    snprintf(mc.arch, sizeof mc.arch, "%s", mf.arch);
    if ((rc = model_new(&m, &mc, err, errlen))) goto out;
    if ((rc = model_load(m, model_path, 0, msg, sizeof msg))) {
        err_set(err, errlen, rc, "%s", msg);
        goto out;
    }
    coreloss_config lc = {.method = CORELOSS_CE, .num_classes = mf.num_classes, .feat_dim = model_feature_dim(m),
                          .contrast_dim = 1, .max_batch = batch};
    if ((rc = coreloss_new(&loss, &lc, err, errlen))) goto out;
    data_loader_opts lo = {.ds = ds, .nindices = ds->n, .batch = batch, .views = 1, .layout = DATA_NCHW,
                           .prefetch = 2};
    data_aug_default(&lo.aug, ds, false);
    if (mf.has_norm) { /* the training data's statistics, not the test set's */
        memcpy(lo.aug.mean, mf.mean, sizeof(float) * (size_t)mf.in_channels);
        memcpy(lo.aug.std, mf.std, sizeof(float) * (size_t)mf.in_channels);
    }
    if ((rc = data_loader_new(&loader, &lo, err, errlen))) goto out;

    const float *fc = model_find(m, "fc.weight")->data;
    double loss_sum = 0;
    int correct = 0, seen = 0, nb = data_loader_batches_per_epoch(loader);
    for (int i = 0; i < nb; i++) {
        data_batch b;
        if ((rc = data_loader_next(loader, &b))) { err_set(err, errlen, rc, "%s: data loader failed", data); goto out; }
        const float *h = model_forward(m, b.x, b.n, 0);
        if (!h) { rc = err_set(err, errlen, -EINVAL, "batch of %d rejected by the model", b.n); goto out; }
        double ls;
        int c;
        if ((rc = coreloss_eval(loss, &ls, &c, h, b.y, b.n, fc))) {
            err_set(err, errlen, rc, rc == -EDOM ? "%s: loss is not finite" : "%s: evaluation failed", model_path);
            goto out;
        }
        loss_sum += ls;
        correct += c;
        seen += b.n;
    }
    out->accuracy = (double)correct / seen;
    out->loss = loss_sum / seen;
    out->images = seen;
    out->num_classes = mf.num_classes;
    snprintf(out->arch, sizeof out->arch, "%s", mf.arch);
    out->in_channels = mf.in_channels;
    out->image_size = size;
    out->small_stem = mf.small_stem;
out:
    data_loader_free(loader);
    coreloss_free(loss);
    model_free(m);
    data_free(ds);
    return rc;
}
