/* trainer/data_loader.c — batches in a fixed order, prepared ahead on one prefetch thread.
 * A batch is a pure function of (seed, epoch, batch index): the epoch's order comes from
 * data_rng(seed, 0, epoch, 0) and the batch's augmentation from data_rng(seed, 1, epoch, index),
 * so the prefetch depth and thread timing never change what the trainer sees, and a seek to
 * (epoch, index) resumes a job exactly. Ring of prefetch + 1 preallocated slots, one mutex and two
 * condvars; the consumer holds one slot between calls. All memory is allocated in
 * data_loader_new. The consumer is one thread; errors are returned at construction and seek only.
 */
#include "trainer/data_int.h"
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    float *x, *x2;
    int32_t *y, *ids;
    int n;
    int64_t epoch, index;
} slot;

struct data_loader {
    data_loader_opts o;
    int n;                 /* images per epoch */
    int *indices;          /* copy of the subset (or 0..n-1) */
    int *perm;             /* epoch order, producer-owned */
    int64_t perm_epoch;
    int bpe;               /* batches per epoch */
    size_t xfloats;        /* floats of one view of a full batch */
    int nslots;
    slot *slots;
    size_t bytes;

    pthread_mutex_t mu;
    pthread_cond_t can_produce, can_consume;
    pthread_t th;
    bool running, stop, holding;
    int64_t pe, pb;        /* the next batch the producer makes */
    uint64_t produced, consumed, released;
};

/* The whole of a batch's content; runs on the producer (or the consumer when synchronous). */
static void fill(data_loader *l, slot *s, int64_t epoch, int64_t index)
{
    const data_loader_opts *o = &l->o;
    const data_set *ds = o->ds;
    if (l->perm_epoch != epoch) {
        if (o->shuffle) {
            rng_t r;
            data_rng(&r, o->seed, 0, (uint64_t)epoch, 0);
            rng_permutation(&r, l->perm, l->n);
        } else {
            for (int i = 0; i < l->n; i++) l->perm[i] = i;
        }
        l->perm_epoch = epoch;
    }
    int64_t first = index * o->batch;
    int cnt = (int)(l->n - first < o->batch ? l->n - first : o->batch);
    data_aug plain = o->aug;
    if (!o->augment) { /* evaluation: normalisation only */
        plain.crop = DATA_CROP_NONE;
        plain.flip_p = 0;
    }
    rng_t r;
    data_rng(&r, o->seed, 1, (uint64_t)epoch, (uint64_t)index);
    size_t hw = (size_t)ds->h * ds->w, chw = hw * ds->c;
    for (int k = 0; k < cnt; k++) {
        int id = l->indices[l->perm[first + k]];
        s->ids[k] = id;
        s->y[k] = ds->labels[id];
        size_t off = o->layout == DATA_NCHW ? (size_t)k * chw : (size_t)k * hw;
        size_t cs = o->layout == DATA_NCHW ? hw : (size_t)cnt * hw;
        data_augment_strided(s->x + off, cs, ds, id, &plain, &r);
        if (o->views == 2) data_augment_strided(s->x2 + off, cs, ds, id, &plain, &r);
    }
    s->n = cnt;
    s->epoch = epoch;
    s->index = index;
}

static void advance(const data_loader *l, int64_t *e, int64_t *b)
{
    if (++*b == l->bpe) {
        *b = 0;
        ++*e;
    }
}

static void *producer(void *arg)
{
    data_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && l->produced - l->released >= (uint64_t)l->nslots) pthread_cond_wait(&l->can_produce, &l->mu);
        if (l->stop) break;
        slot *s = &l->slots[l->produced % (uint64_t)l->nslots];
        int64_t e = l->pe, b = l->pb;
        pthread_mutex_unlock(&l->mu); /* the slot is ours: the consumer never reads past `produced` */
        fill(l, s, e, b);
        pthread_mutex_lock(&l->mu);
        l->produced++;
        advance(l, &l->pe, &l->pb);
        pthread_cond_signal(&l->can_consume);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void stop_thread(data_loader *l)
{
    if (!l->running) return;
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_broadcast(&l->can_produce);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->th, NULL);
    l->running = false;
    l->stop = false;
}

int data_loader_seek(data_loader *l, int64_t epoch, int64_t index)
{
    if (epoch < 0 || index < 0 || index >= l->bpe) return -EINVAL;
    stop_thread(l);
    l->pe = epoch;
    l->pb = index;
    l->produced = l->consumed = l->released = 0;
    l->holding = false;
    if (l->o.prefetch > 0 && pthread_create(&l->th, NULL, producer, l) == 0) l->running = true;
    /* If the thread cannot start, next() fills batches itself: same batches, no prefetch. */
    return 0;
}

int data_loader_next(data_loader *l, data_batch *b)
{
    slot *s;
    if (!l->running) {
        s = &l->slots[0];
        fill(l, s, l->pe, l->pb);
        advance(l, &l->pe, &l->pb);
    } else {
        pthread_mutex_lock(&l->mu);
        if (l->holding) { /* the previous batch goes back to the producer */
            l->released++;
            l->holding = false;
            pthread_cond_signal(&l->can_produce);
        }
        while (l->produced == l->consumed) pthread_cond_wait(&l->can_consume, &l->mu);
        s = &l->slots[l->consumed % (uint64_t)l->nslots];
        l->consumed++;
        l->holding = true;
        pthread_mutex_unlock(&l->mu);
    }
    b->n = s->n;
    b->epoch = s->epoch;
    b->index = s->index;
    b->x = s->x;
    b->x2 = l->o.views == 2 ? s->x2 : NULL;
    b->y = s->y;
    b->ids = s->ids;
    return 0;
}

int data_loader_batches_per_epoch(const data_loader *l) { return l->bpe; }
size_t data_loader_bytes(const data_loader *l) { return l->bytes; }

void data_loader_free(data_loader *l)
{
    if (!l) return;
    stop_thread(l);
    if (l->slots)
        for (int i = 0; i < l->nslots; i++) {
            free(l->slots[i].x);
            free(l->slots[i].x2);
            free(l->slots[i].y);
            free(l->slots[i].ids);
        }
    free(l->slots);
    free(l->indices);
    free(l->perm);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->can_produce);
    pthread_cond_destroy(&l->can_consume);
    free(l);
}

int data_loader_new(data_loader **out, const data_loader_opts *opts, char *err, size_t errlen)
{
    *out = NULL;
    const data_set *ds = opts->ds;
    if (!ds) return err_set_path(err, errlen, -EINVAL, "loader", "no dataset");
    int n = opts->indices ? opts->nindices : ds->n;
    if (opts->batch < 1) return err_set_path(err, errlen, -EINVAL, "loader", "batch size %d must be >= 1", opts->batch);
    if (n < 1 || (opts->drop_last && n < opts->batch))
        return err_set_path(err, errlen, -EINVAL, "loader", "%d images cannot make one batch of %d", n, opts->batch);
    if (opts->views != 1 && opts->views != 2) return err_set_path(err, errlen, -EINVAL, "loader", "views must be 1 or 2");
    if (opts->prefetch < 0 || opts->prefetch > 64) return err_set_path(err, errlen, -EINVAL, "loader", "prefetch %d out of range 0..64", opts->prefetch);
    const data_aug *a = &opts->aug;
    for (int c = 0; c < ds->c; c++)
        if (!(a->std[c] > 0)) return err_set_path(err, errlen, -EINVAL, "loader", "normalisation std of channel %d must be > 0", c);
    if (opts->augment && a->crop == DATA_CROP_PAD && (a->pad < 0 || a->pad > ds->h || a->pad > ds->w))
        return err_set_path(err, errlen, -EINVAL, "loader", "crop padding %d out of range", a->pad);
    if (opts->augment && a->crop == DATA_CROP_RESIZED &&
        !(a->scale_min > 0 && a->scale_min <= a->scale_max && a->scale_max <= 1 && a->ratio_min > 0 && a->ratio_min <= a->ratio_max))
        return err_set_path(err, errlen, -EINVAL, "loader", "bad resized-crop scale or ratio");
    if (!(a->flip_p >= 0 && a->flip_p <= 1)) return err_set_path(err, errlen, -EINVAL, "loader", "flip probability must be in [0, 1]");

    data_loader *l = calloc(1, sizeof *l);
    if (!l) return err_set_path(err, errlen, -ENOMEM, "loader", "out of memory");
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->can_produce, NULL);
    pthread_cond_init(&l->can_consume, NULL);
    l->o = *opts;
    l->o.indices = NULL; /* borrowed pointer not kept: we copy */
    l->n = n;
    l->bpe = opts->drop_last ? n / opts->batch : (n + opts->batch - 1) / opts->batch;
    l->perm_epoch = -1;
    l->nslots = opts->prefetch + 1;
    l->xfloats = (size_t)opts->batch * ds->c * ds->h * ds->w;
    l->indices = malloc(sizeof *l->indices * (size_t)n);
    l->perm = malloc(sizeof *l->perm * (size_t)n);
    l->slots = calloc((size_t)l->nslots, sizeof *l->slots);
    if (!l->indices || !l->perm || !l->slots) goto oom;
    for (int i = 0; i < n; i++) {
        int id = opts->indices ? opts->indices[i] : i;
        if (id < 0 || id >= ds->n) {
            data_loader_free(l);
            return err_set_path(err, errlen, -EINVAL, "loader", "subset index %d out of range (%d images)", id, ds->n);
        }
        l->indices[i] = id;
    }
    for (int i = 0; i < l->nslots; i++) {
        slot *s = &l->slots[i];
        s->x = malloc(sizeof *s->x * l->xfloats);
        s->x2 = opts->views == 2 ? malloc(sizeof *s->x2 * l->xfloats) : NULL;
        s->y = malloc(sizeof *s->y * (size_t)opts->batch);
        s->ids = malloc(sizeof *s->ids * (size_t)opts->batch);
        if (!s->x || (opts->views == 2 && !s->x2) || !s->y || !s->ids) goto oom;
    }
    l->bytes = sizeof *l + 2 * sizeof(int) * (size_t)n +
               (size_t)l->nslots * (sizeof(slot) + (size_t)opts->views * l->xfloats * sizeof(float) + 8 * (size_t)opts->batch);
    data_loader_seek(l, 0, 0);
    *out = l;
    return 0;
oom:
    data_loader_free(l);
    return err_set_path(err, errlen, -ENOMEM, "loader", "out of memory for %d batch buffers", opts->prefetch + 1);
}
