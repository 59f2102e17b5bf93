/* trainer/data.h — image datasets for the trainer: readers (IDX, CIFAR-10/100 binary, ImageFolder of
 * PNG/JPEG), an in-memory uint8 set at the model's input size, seeded labelled subsets and splits,
 * seeded augmentation, and a prefetching batch loader whose output never depends on timing.
 * Plain C: no JSON, SQLite or HTTP. Fallible functions return 0 or a negative errno-style code
 * (-ENOENT missing, -EINVAL bad data, -EFBIG over a size cap, -ENOMEM) and write
 * "<file>: <problem>" into err. A data_set is immutable after data_open and may be shared by
 * threads; a data_loader is used by one consumer thread (it owns one prefetch thread inside).
 */
#ifndef CT_DATA_H
#define CT_DATA_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "trainer/rng.h"

enum data_format { DATA_FMT_IDX, DATA_FMT_CIFAR10, DATA_FMT_CIFAR100, DATA_FMT_FOLDER };
const char *data_format_name(enum data_format f); /* "idx", "cifar10", "cifar100", "imagefolder" */

/* Built-in names: "fashion-mnist-train", "fashion-mnist-test" (Debian's /usr/share/datasets files),
 * "mnist-train", "mnist-test" (same layout under /usr/share/datasets/mnist, when installed).
 * Any other name is a path:
 *   directory with class sub-folders            -> ImageFolder (classes sorted as torchvision does)
 *   directory with *images-idx3-ubyte[.gz] + *labels-idx1-ubyte[.gz]
 *                                               -> IDX (one pair; with several, the "train" one)
 *   directory with data_batch_*.bin / test_batch.bin -> CIFAR-10 (the data_batch files if present)
 *   directory with train.bin / test.bin         -> CIFAR-100 (train.bin if present)
 *   file *images-idx3-ubyte[.gz]                -> IDX, labels found by "images-idx3" -> "labels-idx1"
 *   file *.bin                                  -> CIFAR (10 for data_batch_N or test_batch, 100 for
 *                                                  train/test, else by record size) */
#define DATA_MAX_CLASSES 10000
#define DATA_MAX_SIDE 4096 /* cap on any image side, native or model */

typedef struct data_info {
    enum data_format format;
    int count;                 /* images */
    int num_classes;
    int channels, height, width; /* native (of the first image for an ImageFolder) */
} data_info;

/* Cheap check of a name or path (headers, file sizes, a directory listing; no pixel decoding
 * beyond one image header), for validating a job before queueing it. */
int data_probe(data_info *out, const char *name, char *err, size_t errlen);

/* Everything data_probe says and what only reading every byte tells (an upload's check): every
 * image decoded as data_open decodes it, labels checked, per-class counts, the range of native image
 * sizes (IDX/CIFAR: one size). IDX and CIFAR sets are read through data_open with every image kept at
 * 1x1, so max_bytes caps one byte per image (0 = data_open's default). OUT: *out, freed with
 * data_report_free (also on failure). */
typedef struct data_report {
    data_info info;              /* height, width: of the first image */
    int min_h, min_w, max_h, max_w;
    char **class_names;          /* [info.num_classes] */
    int *class_counts;           /* [info.num_classes] images of each class */
} data_report;
int  data_inspect(data_report *out, const char *name, size_t max_bytes, char *err, size_t errlen);
void data_report_free(data_report *r); /* NULL-safe */

typedef struct data_open_opts {
    int channels, height, width; /* the model's input; 0 = native */
    int limit;                   /* keep only the first N images; 0 = all */
    size_t max_bytes;            /* cap on pixel memory; 0 = 8 GiB */
} data_open_opts;

typedef struct data_set {
    enum data_format format;
    int n, c, h, w;              /* pixels are [n][c][h][w] at the model's size */
    int native_c, native_h, native_w;
    uint8_t *pixels;
    int32_t *labels;             /* [n], each in [0, num_classes) */
    int num_classes;
    char **class_names;          /* [num_classes] */
    float mean[3], std[3];       /* per channel, of pixel / 255 (constants for known sets) */
    size_t bytes;                /* heap held by the set */
} data_set;

/* Load everything into memory, converting channels (gray->RGB replicate, RGB->gray luminance as
 * PIL's "L", alpha dropped as PIL's convert("RGB")) and resizing (area when shrinking, bilinear
 * when enlarging, per axis). OUT: *out, freed with data_free. */
int  data_open(data_set **out, const char *name, const data_open_opts *opts, char *err, size_t errlen);
void data_free(data_set *ds); /* NULL-safe */

/* ---- index lists (subsets without copying pixels) ----
 * `from` selects the candidate images (NULL = all ds->n, in order); outputs are sorted ascending,
 * written to caller arrays of at least nfrom ints; deterministic given seed. */

/* per_class images of each class (drawn uniformly without replacement). -EINVAL with the class name
 * if a class has fewer. OUT: idx[*nout]. */
int data_subset_per_class(int *idx, int *nout, const data_set *ds, const int *from, int nfrom,
                          int per_class, uint64_t seed, char *err, size_t errlen);
/* Split into train / validation: val_count images if > 0, else round(val_fraction * nfrom).
 * Stratified: every class gives the same share (largest remainder, ties to the lower class).
 * OUT: train[*ntrain], val[*nval]. */
int data_split(int *train, int *ntrain, int *val, int *nval, const data_set *ds, const int *from,
               int nfrom, double val_fraction, int val_count, uint64_t seed, char *err, size_t errlen);

/* ---- augmentation ---- */
enum data_crop { DATA_CROP_NONE, DATA_CROP_PAD, DATA_CROP_RESIZED };
typedef struct data_aug {
    enum data_crop crop;
    int pad;                       /* DATA_CROP_PAD: zero padding on each side (4 for 32 px) */
    float scale_min, scale_max;    /* DATA_CROP_RESIZED: area fraction, torchvision (0.08, 1) */
    float ratio_min, ratio_max;    /* aspect ratio, torchvision (3/4, 4/3) */
    float flip_p;                  /* horizontal flip probability (0.5 for training) */
    float mean[3], std[3];         /* normalisation: (pixel/255 - mean) / std */
} data_aug;

/* Defaults for ds: train = pad crop (pad = h/8) + flip 0.5, or no augmentation; mean/std from ds. */
void data_aug_default(data_aug *aug, const data_set *ds, bool train);
/* One view of image `index` as floats [c][h][w] at the set's size. Draws (crop, then flip) come
 * from rng only, so two calls with two rngs give two independent views (SimCLR). No allocation. */
void data_augment(float *dst, const data_set *ds, int index, const data_aug *aug, rng_t *rng);
/* Same, channel planes cstride floats apart (cstride = n*h*w writes one image of a CNHW batch). */
void data_augment_strided(float *dst, size_t cstride, const data_set *ds, int index,
                          const data_aug *aug, rng_t *rng);

/* The generator for a purpose: stream 0 = epoch order, 1 = a batch's augmentation, others free.
 * Distinct (seed, stream, a, b) give independent streams. */
void data_rng(rng_t *r, uint64_t seed, uint64_t stream, uint64_t a, uint64_t b);

/* ---- loader ---- */
enum data_layout { DATA_NCHW, DATA_CNHW };
typedef struct data_loader_opts {
    const data_set *ds;        /* borrowed; outlives the loader */
    const int *indices;        /* borrowed subset (NULL = all images); copied at construction */
    int nindices;
    int batch;
    bool shuffle;              /* epoch order = permutation from data_rng(seed, 0, epoch, 0) */
    bool drop_last;            /* every batch full (training) */
    bool augment;              /* false: aug is used for normalisation only (no crop, no flip) */
    data_aug aug;
    int views;                 /* 1, or 2 for two augmented views per image (SimCLR) */
    enum data_layout layout;
    uint64_t seed;
    int prefetch;              /* batches prepared ahead on a thread; 0 = synchronous */
} data_loader_opts;

typedef struct data_batch {
    int n;                     /* images (== batch except a short last batch without drop_last) */
    int64_t epoch, index;      /* which batch this is */
    float *x;                  /* [n][c][h][w] (or [c][n][h][w]); borrowed until the next call */
    float *x2;                 /* second view when views == 2, else NULL */
    int32_t *y;                /* [n] labels */
    int32_t *ids;              /* [n] dataset image indices */
} data_batch;

typedef struct data_loader data_loader;
int  data_loader_new(data_loader **out, const data_loader_opts *opts, char *err, size_t errlen);
void data_loader_free(data_loader *l);  /* NULL-safe; stops and joins the prefetch thread */
int  data_loader_batches_per_epoch(const data_loader *l);
size_t data_loader_bytes(const data_loader *l); /* heap held (buffers, order) */
/* Position the stream: the next batch returned is (epoch, index). Epoch 0 batch 0 at creation. */
int  data_loader_seek(data_loader *l, int64_t epoch, int64_t index);
/* OUT: *b, the next batch in order (epochs follow each other); its buffers stay valid until the
 * next data_loader_next/seek/free. Never allocates. */
int  data_loader_next(data_loader *l, data_batch *b);

#endif
