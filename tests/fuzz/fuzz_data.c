/* tests/fuzz/fuzz_data.c — the dataset readers (trainer/data.h): IDX (raw and gzip), CIFAR-10/100
 * binary, and ImageFolders of PNG and JPEG, through data_probe and data_open on files in a scratch
 * directory, the way an upload or a job's training_file reaches them.
 * Input: byte 0 picks the format, byte 1 the model input (channels, size) and options, bytes 2-3 a
 * split point (little-endian) between two files (IDX images|labels, or two images of two classes);
 * the rest is the files' content. IDX .gz content is compressed here, so the fuzzer mutates what
 * the reader decompresses. A set that opens is checked (labels in range) and one image augmented. */
#include "tests/fuzz/fuzz.h"
#include "trainer/data.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

enum { F_IDX, F_IDX_GZ, F_CIFAR10, F_CIFAR100, F_CIFAR_BY_SIZE, F_PNG, F_JPEG, F_FOLDER2, F_N };

static void write_gz(const char *path, const uint8_t *p, size_t n)
{
    gzFile g = gzopen(path, "wb1");
    if (!g) fz_die("cannot create %s", path);
    if (n && gzwrite(g, p, (unsigned)n) != (int)n) fz_die("cannot write %s", path);
    if (gzclose(g) != Z_OK) fz_die("cannot write %s", path);
}

/* An image file for a folder, named by its signature so both decoders are reached. */
static void write_image(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[600];
    mkdir(dir, 0755);
    int jpeg = n >= 2 && p[0] == 0xFF && p[1] == 0xD8;
    snprintf(path, sizeof path, "%s/%s.%s", dir, name, jpeg ? "jpg" : "png");
    fz_write(path, p, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    int fmt = data[0] % F_N, opt = data[1];
    size_t split = (size_t)data[2] | (size_t)data[3] << 8;
    const uint8_t *p = data + 4;
    size_t n = size - 4;
    if (split > n) split = n;

    char root[512], name[600], a[700], b[700];
    snprintf(root, sizeof root, "%s/set", fz_dir());
    fz_rmtree(root);
    if (mkdir(root, 0755) != 0) fz_die("cannot create %s", root);
    snprintf(name, sizeof name, "%s", root); /* what is probed and opened: the directory or one file */
    switch (fmt) {
    case F_IDX:
    case F_IDX_GZ: {
        const char *gz = fmt == F_IDX_GZ ? ".gz" : "";
        snprintf(a, sizeof a, "%s/train-images-idx3-ubyte%s", root, gz);
        snprintf(b, sizeof b, "%s/train-labels-idx1-ubyte%s", root, gz);
        if (fmt == F_IDX_GZ) { write_gz(a, p, split); write_gz(b, p + split, n - split); }
        else { fz_write(a, p, split); fz_write(b, p + split, n - split); }
        if (opt & 0x80) snprintf(name, sizeof name, "%s", a); /* the images file itself */
        break;
    }
    case F_CIFAR10:
    case F_CIFAR100:
    case F_CIFAR_BY_SIZE: {
        /* Most inputs are not a whole number of records: pad with zeros when asked, so the record
         * loop is reached, else keep the size (the size checks are what is fuzzed). */
        size_t rec = fmt == F_CIFAR100 ? 3074 : 3073, len = n;
        if ((opt & 0x80) && fmt != F_CIFAR_BY_SIZE) len = (n + rec - 1) / rec * rec;
        if (len == 0) len = rec;
        uint8_t *buf = calloc(1, len);
        if (!buf) fz_die("out of memory");
        memcpy(buf, p, n < len ? n : len);
        snprintf(a, sizeof a, "%s/%s", root, fmt == F_CIFAR10 ? "data_batch_1.bin" : fmt == F_CIFAR100 ? "train.bin" : "batch.bin");
        fz_write(a, buf, len);
        free(buf);
        if (fmt == F_CIFAR_BY_SIZE || (opt & 0x40)) snprintf(name, sizeof name, "%s", a);
        break;
    }
    case F_PNG:
    case F_JPEG:
        snprintf(a, sizeof a, "%s/class", root);
        write_image(a, "x", p, n);
        break;
    case F_FOLDER2:
        snprintf(a, sizeof a, "%s/a", root);
        snprintf(b, sizeof b, "%s/b", root);
        write_image(a, "x", p, split);
        write_image(b, "y", p + split, n - split);
        break;
    }

    data_info info;
    char err[1024];
    int rc = data_probe(&info, name, err, sizeof err);
    if (rc < 0 && !err[0]) fz_die("data: probe error %d without a reason", rc);
    static const int sides[4] = {0, 8, 16, 32};
    data_open_opts o = {
        .channels = (opt & 3) == 3 ? 0 : (opt & 3) == 1 ? 1 : (opt & 3) == 2 ? 3 : 0,
        .height = sides[(opt >> 2) & 3],
        .width = sides[(opt >> 4) & 3],
        .limit = 8,
        .max_bytes = 16u << 20,
    };
    data_set *ds;
    rc = data_open(&ds, name, &o, err, sizeof err);
    if (rc < 0) {
        if (!err[0]) fz_die("data: open error %d without a reason", rc);
        return 0;
    }
    if (ds->n < 1 || ds->num_classes < 1) fz_die("data: an open set with %d images, %d classes", ds->n, ds->num_classes);
    for (int i = 0; i < ds->n; i++)
        if (ds->labels[i] < 0 || ds->labels[i] >= ds->num_classes) fz_die("data: label %d of %d classes", ds->labels[i], ds->num_classes);
    for (int i = 0; i < ds->num_classes; i++)
        if (!ds->class_names[i]) fz_die("data: class %d has no name", i);
    data_aug aug;
    data_aug_default(&aug, ds, true);
    float *x = malloc(sizeof *x * (size_t)ds->c * ds->h * ds->w);
    if (!x) fz_die("out of memory");
    rng_t r;
    data_rng(&r, 1, 1, 0, 0);
    data_augment(x, ds, ds->n - 1, &aug, &r);
    free(x);
    data_free(ds);
    return 0;
}
