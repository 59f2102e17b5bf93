/* trainer/data_read.c — dataset names and paths, the IDX and CIFAR readers, data_probe/data_open.
 * Every size read from a file is checked against the file itself and against caps before it sizes
 * an allocation; a truncated or hostile file gives "<file>: <problem>" and a negative code.
 * Runs on the caller's thread (the daemon's validation, or the job thread at setup).
 */
#define _GNU_SOURCE
#include "trainer/data_int.h"
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>


const char *data_format_name(enum data_format f)
{
    switch (f) {
    case DATA_FMT_IDX: return "idx";
    case DATA_FMT_CIFAR10: return "cifar10";
    case DATA_FMT_CIFAR100: return "cifar100";
    case DATA_FMT_FOLDER: return "imagefolder";
    }
    return "?";
}

static const char *const fashion_names[] = { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot" };
static const char *const digit_names[] = { "0", "1", "2", "3", "4", "5", "6", "7", "8", "9" };
static const char *const cifar10_names[] = { "airplane", "automobile", "bird", "cat", "deer",
                                             "dog", "frog", "horse", "ship", "truck" };
static const char *const cifar100_names[] = {
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
};
_Static_assert(sizeof cifar100_names / sizeof cifar100_names[0] == 100, "CIFAR-100 has 100 classes");

static const struct builtin {
    const char *name, *images, *labels;
    const char *const *names;
    float mean, std;
} builtins[] = {
    { "fashion-mnist-train", "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
      "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz", fashion_names, 0.2860f, 0.3530f },
    { "fashion-mnist-test", "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
      "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", fashion_names, 0.2860f, 0.3530f },
    { "mnist-train", "/usr/share/datasets/mnist/train-images-idx3-ubyte.gz",
      "/usr/share/datasets/mnist/train-labels-idx1-ubyte.gz", digit_names, 0.1307f, 0.3081f },
    { "mnist-test", "/usr/share/datasets/mnist/t10k-images-idx3-ubyte.gz",
      "/usr/share/datasets/mnist/t10k-labels-idx1-ubyte.gz", digit_names, 0.1307f, 0.3081f },
};

static const float cifar10_mean[3] = { 0.4914f, 0.4822f, 0.4465f }, cifar10_std[3] = { 0.2470f, 0.2435f, 0.2616f };
static const float cifar100_mean[3] = { 0.5071f, 0.4865f, 0.4409f }, cifar100_std[3] = { 0.2673f, 0.2564f, 0.2762f };

/* ---- name resolution ---- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static bool is_file(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The labels file of an IDX images file: "images-idx3" -> "labels-idx1" in the file name. */
static int idx_labels_for(char *out, const char *images, char *err, size_t errlen)
{
    const char *base = strrchr(images, '/');
    base = base ? base + 1 : images;
    const char *hit = strstr(base, "images-idx3");
    if (!hit) return err_set_path(err, errlen, -EINVAL, images, "not an IDX images file name (needs \"images-idx3\")");
    size_t pre = (size_t)(hit - images);
    if (strlen(images) >= PATH_MAX) return err_set_path(err, errlen, -ENAMETOOLONG, images, "path too long");
    memcpy(out, images, pre);
    memcpy(out + pre, "labels-idx1", 11);
    strcpy(out + pre + 11, hit + 11);
    if (!is_file(out)) return err_set_path(err, errlen, -ENOENT, images, "labels file %s not found", out);
    return 0;
}

static int cifar_kind(const char *file)
{
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    if (!strncmp(base, "data_batch", 10) || !strncmp(base, "test_batch", 10)) return 10;
    if (!strcmp(base, "train.bin") || !strcmp(base, "test.bin")) return 100;
    return 0;
}

static int resolve_dir(data__src *s, const char *dir, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) return err_set_path(err, errlen, -errno, dir, "cannot open directory: %s", strerror(errno));
    char *imgs[DATA__MAX_FILES], *batches[DATA__MAX_FILES];
    int nimg = 0, nbatch = 0, nsub = 0, rc = 0;
    bool test_batch = false, c100_train = false, c100_test = false;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (!strcmp(n, ".") || !strcmp(n, "..")) continue;
        char p[PATH_MAX];
        if (snprintf(p, sizeof p, "%s/%s", dir, n) >= (int)sizeof p) continue;
        struct stat sb;
        if (stat(p, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) { nsub++; continue; }
        if (!S_ISREG(sb.st_mode)) continue;
        if (strstr(n, "images-idx3-ubyte") && (ends_with(n, "ubyte") || ends_with(n, "ubyte.gz"))) {
            if (nimg < DATA__MAX_FILES) imgs[nimg++] = strdup(n);
        } else if (!fnmatch("data_batch_*.bin", n, 0)) {
            if (nbatch < DATA__MAX_FILES) batches[nbatch++] = strdup(n);
        } else if (!strcmp(n, "test_batch.bin")) {
            test_batch = true;
        } else if (!strcmp(n, "train.bin")) {
            c100_train = true;
        } else if (!strcmp(n, "test.bin")) {
            c100_test = true;
        }
    }
    closedir(d);
    for (int i = 0; i < nimg; i++) if (!imgs[i]) rc = -ENOMEM;
    for (int i = 0; i < nbatch; i++) if (!batches[i]) rc = -ENOMEM;
    if (rc) { err_set_path(err, errlen, rc, dir, "out of memory"); goto done; }
    qsort(imgs, (size_t)nimg, sizeof *imgs, cmp_cstr);
    qsort(batches, (size_t)nbatch, sizeof *batches, cmp_cstr);
    if (nimg > 0) {
        int pick = 0;
        if (nimg > 1) {
            pick = -1;
            for (int i = 0; i < nimg; i++)
                if (!strncmp(imgs[i], "train", 5)) { if (pick >= 0) { pick = -2; break; } pick = i; }
            if (pick < 0) { rc = err_set_path(err, errlen, -EINVAL, dir, "holds %d IDX image files; name one", nimg); goto done; }
        }
        s->fmt = DATA_FMT_IDX;
        snprintf(s->images, sizeof s->images, "%s/%s", dir, imgs[pick]);
        rc = idx_labels_for(s->labels, s->images, err, errlen);
    } else if (nbatch > 0 || test_batch) {
        s->fmt = DATA_FMT_CIFAR10;
        if (nbatch > 0)
            for (int i = 0; i < nbatch; i++) snprintf(s->files[s->nfiles++], PATH_MAX, "%s/%s", dir, batches[i]);
        else
            snprintf(s->files[s->nfiles++], PATH_MAX, "%s/test_batch.bin", dir);
    } else if (c100_train || c100_test) {
        s->fmt = DATA_FMT_CIFAR100;
        snprintf(s->files[s->nfiles++], PATH_MAX, "%s/%s", dir, c100_train ? "train.bin" : "test.bin");
    } else if (nsub > 0) {
        s->fmt = DATA_FMT_FOLDER;
        snprintf(s->root, sizeof s->root, "%s", dir);
    } else {
        rc = err_set_path(err, errlen, -EINVAL, dir, "no dataset here (no class folders, IDX or CIFAR files)");
    }
done:
    for (int i = 0; i < nimg; i++) free(imgs[i]);
    for (int i = 0; i < nbatch; i++) free(batches[i]);
    return rc;
}

int data__resolve(data__src *s, const char *name, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    if (!name || !*name) return err_set_path(err, errlen, -EINVAL, "(dataset)", "empty dataset name");
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        if (strcmp(name, builtins[i].name)) continue;
        s->fmt = DATA_FMT_IDX;
        snprintf(s->images, sizeof s->images, "%s", builtins[i].images);
        snprintf(s->labels, sizeof s->labels, "%s", builtins[i].labels);
        s->names = builtins[i].names;
        s->known_stats = true;
        s->mean[0] = builtins[i].mean;
        s->std[0] = builtins[i].std;
        if (!is_file(s->images)) return err_set_path(err, errlen, -ENOENT, s->images, "dataset \"%s\" is not installed", name);
        if (!is_file(s->labels)) return err_set_path(err, errlen, -ENOENT, s->labels, "dataset \"%s\" is not installed", name);
        return 0;
    }
    if (strlen(name) >= PATH_MAX - 64) return err_set_path(err, errlen, -ENAMETOOLONG, name, "path too long");
    struct stat sb;
    if (stat(name, &sb) != 0)
        return err_set_path(err, errlen, -ENOENT, name, "not a known dataset name nor an existing path");
    int rc;
    if (S_ISDIR(sb.st_mode)) {
        if ((rc = resolve_dir(s, name, err, errlen)) < 0) return rc;
    } else if (strstr(strrchr(name, '/') ? strrchr(name, '/') : name, "images-idx3")) {
        s->fmt = DATA_FMT_IDX;
        snprintf(s->images, sizeof s->images, "%s", name);
        if ((rc = idx_labels_for(s->labels, name, err, errlen)) < 0) return rc;
    } else if (ends_with(name, ".bin")) {
        int kind = cifar_kind(name);
        if (!kind) { /* by record size: a multiple of exactly one of 3073 and 3074 */
            bool m10 = sb.st_size > 0 && sb.st_size % 3073 == 0, m100 = sb.st_size > 0 && sb.st_size % 3074 == 0;
            if (m10 == m100) return err_set_path(err, errlen, -EINVAL, name, "cannot tell CIFAR-10 from CIFAR-100 by its size (%lld bytes)", (long long)sb.st_size);
            kind = m10 ? 10 : 100;
        }
        s->fmt = kind == 10 ? DATA_FMT_CIFAR10 : DATA_FMT_CIFAR100;
        snprintf(s->files[s->nfiles++], PATH_MAX, "%s", name);
    } else {
        return err_set_path(err, errlen, -EINVAL, name, "unrecognised dataset file (expected *images-idx3-ubyte[.gz] or CIFAR *.bin)");
    }
    if (s->fmt == DATA_FMT_CIFAR10) {
        s->names = cifar10_names;
        s->known_stats = true;
        memcpy(s->mean, cifar10_mean, sizeof s->mean);
        memcpy(s->std, cifar10_std, sizeof s->std);
    } else if (s->fmt == DATA_FMT_CIFAR100) {
        s->names = cifar100_names;
        s->known_stats = true;
        memcpy(s->mean, cifar100_mean, sizeof s->mean);
        memcpy(s->std, cifar100_std, sizeof s->std);
    }
    return 0;
}

/* ---- IDX ---- */

static int gz_read_exact(gzFile g, void *buf, size_t n, const char *path, const char *what, char *err, size_t errlen)
{
    unsigned char *p = buf;
    while (n) {
        unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        int k = gzread(g, p, chunk);
        if (k < 0) {
            int zerr;
            const char *m = gzerror(g, &zerr);
            return err_set_path(err, errlen, -EIO, path, "read error in %s: %s", what, m);
        }
        if (k == 0) return err_set_path(err, errlen, -EINVAL, path, "truncated: the file ends inside %s", what);
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Open an IDX file and read its header. OUT: *g (open), dims[ndims]. */
static int idx_open(gzFile *g, uint32_t *dims, int want_ndims, const char *path, char *err, size_t errlen)
{
    *g = gzopen(path, "rb");
    if (!*g) return err_set_path(err, errlen, errno ? -errno : -ENOMEM, path, "cannot open: %s", strerror(errno));
    gzbuffer(*g, 1 << 17);
    unsigned char h[4 + 4 * 3];
    int rc = gz_read_exact(*g, h, 4, path, "the IDX header", err, errlen);
    if (rc < 0) goto fail;
    if (h[0] != 0 || h[1] != 0) { rc = err_set_path(err, errlen, -EINVAL, path, "bad IDX magic %02x%02x%02x%02x", h[0], h[1], h[2], h[3]); goto fail; }
    if (h[2] != 0x08) { rc = err_set_path(err, errlen, -EINVAL, path, "unsupported IDX element type 0x%02x (only unsigned bytes)", h[2]); goto fail; }
    if (h[3] != want_ndims) {
        rc = err_set_path(err, errlen, -EINVAL, path, "IDX file has %d dimensions, expected %d (%s)", h[3], want_ndims,
                        want_ndims == 3 ? "images" : "labels");
        goto fail;
    }
    if ((rc = gz_read_exact(*g, h + 4, 4 * (size_t)want_ndims, path, "the IDX header", err, errlen)) < 0) goto fail;
    for (int i = 0; i < want_ndims; i++) {
        const unsigned char *b = h + 4 + 4 * i;
        dims[i] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    }
    if (dims[0] == 0 || dims[0] > DATA__MAX_COUNT) { rc = err_set_path(err, errlen, -EFBIG, path, "IDX count %u out of range (1..%d)", dims[0], DATA__MAX_COUNT); goto fail; }
    for (int i = 1; i < want_ndims; i++)
        if (dims[i] == 0 || dims[i] > DATA_MAX_SIDE) { rc = err_set_path(err, errlen, -EFBIG, path, "IDX image side %u out of range (1..%d)", dims[i], DATA_MAX_SIDE); goto fail; }
    /* An uncompressed file must be exactly as long as its header says. */
    if (gzdirect(*g)) {
        struct stat sb;
        uint64_t want = 4 + 4 * (uint64_t)want_ndims + (uint64_t)dims[0] * (want_ndims == 3 ? (uint64_t)dims[1] * dims[2] : 1);
        if (stat(path, &sb) == 0 && (uint64_t)sb.st_size != want) {
            rc = err_set_path(err, errlen, -EINVAL, path, "file has %lld bytes but its header describes %llu (truncated?)",
                            (long long)sb.st_size, (unsigned long long)want);
            goto fail;
        }
    }
    return 0;
fail:
    gzclose(*g);
    *g = NULL;
    return rc;
}

/* Labels: OUT *labels (malloc'd, n of them) and the class count (max + 1). */
static int idx_read_labels(int32_t **labels, int *ncls, uint32_t *count, int limit, const char *path, char *err, size_t errlen)
{
    gzFile g;
    uint32_t dims[1];
    int rc = idx_open(&g, dims, 1, path, err, errlen);
    if (rc < 0) return rc;
    uint32_t n = dims[0];
    *count = n;
    if (limit > 0 && (uint32_t)limit < n) n = (uint32_t)limit;
    uint8_t *raw = malloc(n);
    *labels = malloc(sizeof **labels * n);
    if (!raw || !*labels) { rc = err_set_path(err, errlen, -ENOMEM, path, "out of memory"); goto done; }
    if ((rc = gz_read_exact(g, raw, n, path, "the labels", err, errlen)) < 0) goto done;
    int mx = 0;
    for (uint32_t i = 0; i < n; i++) { (*labels)[i] = raw[i]; if (raw[i] > mx) mx = raw[i]; }
    *ncls = mx + 1;
done:
    free(raw);
    if (rc < 0) { free(*labels); *labels = NULL; }
    gzclose(g);
    return rc;
}

/* ---- probe ---- */

static int cifar_file_count(const char *path, int rec, int *count, char *err, size_t errlen)
{
    struct stat sb;
    if (stat(path, &sb) != 0) return err_set_path(err, errlen, -errno, path, "cannot stat: %s", strerror(errno));
    if (sb.st_size == 0 || sb.st_size % rec)
        return err_set_path(err, errlen, -EINVAL, path, "size %lld is not a positive multiple of the %d-byte CIFAR-%d record (truncated?)",
                          (long long)sb.st_size, rec, rec == 3073 ? 10 : 100);
    if (sb.st_size / rec > DATA__MAX_COUNT) return err_set_path(err, errlen, -EFBIG, path, "too many records");
    *count = (int)(sb.st_size / rec);
    return 0;
}

int data_probe(data_info *out, const char *name, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    data__src *s = malloc(sizeof *s);
    if (!s) return err_set_path(err, errlen, -ENOMEM, name, "out of memory");
    int rc = data__resolve(s, name, err, errlen);
    if (rc < 0) goto done;
    out->format = s->fmt;
    if (s->fmt == DATA_FMT_IDX) {
        gzFile g;
        uint32_t dims[3], lcount;
        if ((rc = idx_open(&g, dims, 3, s->images, err, errlen)) < 0) goto done;
        gzclose(g);
        int32_t *labels;
        if ((rc = idx_read_labels(&labels, &out->num_classes, &lcount, 0, s->labels, err, errlen)) < 0) goto done;
        free(labels);
        if (lcount != dims[0]) { rc = err_set_path(err, errlen, -EINVAL, s->labels, "%u labels for %u images in %s", lcount, dims[0], s->images); goto done; }
        if (s->names) out->num_classes = 10;
        out->count = (int)dims[0];
        out->channels = 1;
        out->height = (int)dims[1];
        out->width = (int)dims[2];
    } else if (s->fmt == DATA_FMT_CIFAR10 || s->fmt == DATA_FMT_CIFAR100) {
        int rec = s->fmt == DATA_FMT_CIFAR10 ? 3073 : 3074;
        for (int i = 0; i < s->nfiles; i++) {
            int c;
            if ((rc = cifar_file_count(s->files[i], rec, &c, err, errlen)) < 0) goto done;
            if (out->count + c > DATA__MAX_COUNT) { rc = err_set_path(err, errlen, -EFBIG, s->files[i], "too many records"); goto done; }
            out->count += c;
        }
        out->num_classes = s->fmt == DATA_FMT_CIFAR10 ? 10 : 100;
        out->channels = 3;
        out->height = out->width = 32;
    } else {
        data__folder f;
        if ((rc = data__folder_scan(&f, s->root, err, errlen)) < 0) goto done;
        out->count = f.nfiles;
        out->num_classes = f.nclasses;
        out->channels = 3;
        rc = data__image_size(f.files[0], &out->height, &out->width, err, errlen);
        data__folder_free(&f);
    }
done:
    free(s);
    return rc;
}

/* ---- open ---- */

void data_free(data_set *ds)
{
    if (!ds) return;
    free(ds->pixels);
    free(ds->labels);
    if (ds->class_names)
        for (int i = 0; i < ds->num_classes; i++) free(ds->class_names[i]);
    free(ds->class_names);
    free(ds);
}

/* Allocate pixels for n images at the target size (native where opts say 0). */
static int alloc_pixels(data_set *ds, int n, const data_open_opts *o, const char *path, char *err, size_t errlen)
{
    ds->n = n;
    ds->c = o && o->channels ? o->channels : ds->native_c;
    ds->h = o && o->height ? o->height : ds->native_h;
    ds->w = o && o->width ? o->width : ds->native_w;
    if (ds->c != 1 && ds->c != 3) return err_set_path(err, errlen, -EINVAL, path, "model channels must be 1 or 3, not %d", ds->c);
    if (ds->h < 1 || ds->w < 1 || ds->h > DATA_MAX_SIDE || ds->w > DATA_MAX_SIDE)
        return err_set_path(err, errlen, -EINVAL, path, "model input size %dx%d out of range", ds->h, ds->w);
    size_t cap = o && o->max_bytes ? o->max_bytes : (size_t)8 << 30;
    size_t per = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    if ((size_t)n > cap / per)
        return err_set_path(err, errlen, -EFBIG, path, "%d images of %dx%dx%d exceed the %zu-byte memory cap", n, ds->c, ds->h, ds->w, cap);
    ds->pixels = malloc(per * (size_t)n);
    if (!ds->labels) ds->labels = malloc(sizeof *ds->labels * (size_t)n);
    if (!ds->pixels || !ds->labels) return err_set_path(err, errlen, -ENOMEM, path, "out of memory for %d images", n);
    return 0;
}

static int set_names(data_set *ds, const char *const *names, char **take, const char *path, char *err, size_t errlen)
{
    ds->class_names = calloc((size_t)ds->num_classes, sizeof *ds->class_names);
    if (!ds->class_names) return err_set_path(err, errlen, -ENOMEM, path, "out of memory");
    for (int i = 0; i < ds->num_classes; i++) {
        char buf[16];
        if (take) { ds->class_names[i] = take[i]; take[i] = NULL; continue; }
        snprintf(buf, sizeof buf, "%d", i);
        ds->class_names[i] = strdup(names ? names[i] : buf);
        if (!ds->class_names[i]) return err_set_path(err, errlen, -ENOMEM, path, "out of memory");
    }
    return 0;
}

static int open_idx(data_set *ds, const data__src *s, const data_open_opts *o, data__scratch *sc, char *err, size_t errlen)
{
    int limit = o ? o->limit : 0;
    uint32_t lcount, dims[3];
    int rc = idx_read_labels(&ds->labels, &ds->num_classes, &lcount, limit, s->labels, err, errlen);
    if (rc < 0) return rc;
    if (s->names) {
        for (uint32_t i = 0; i < lcount && (limit <= 0 || i < (uint32_t)limit); i++)
            if (ds->labels[i] >= 10) return err_set_path(err, errlen, -EINVAL, s->labels, "label %d of image %u is out of range 0..9", ds->labels[i], i);
        ds->num_classes = 10;
    }
    gzFile g;
    if ((rc = idx_open(&g, dims, 3, s->images, err, errlen)) < 0) return rc;
    if (lcount != dims[0]) { rc = err_set_path(err, errlen, -EINVAL, s->labels, "%u labels for %u images in %s", lcount, dims[0], s->images); goto done; }
    int n = (int)dims[0];
    if (limit > 0 && limit < n) n = limit;
    ds->native_c = 1;
    ds->native_h = (int)dims[1];
    ds->native_w = (int)dims[2];
    if ((rc = alloc_pixels(ds, n, o, s->images, err, errlen)) < 0) goto done;
    size_t isz = (size_t)dims[1] * dims[2];
    bool direct = ds->c == 1 && ds->h == ds->native_h && ds->w == ds->native_w;
    if (direct) { /* the common case: one read straight into place */
        rc = gz_read_exact(g, ds->pixels, isz * (size_t)n, s->images, "the pixels", err, errlen);
    } else {
        uint8_t *buf = malloc(isz);
        if (!buf) { rc = err_set_path(err, errlen, -ENOMEM, s->images, "out of memory"); goto done; }
        for (int i = 0; i < n && rc == 0; i++) {
            if ((rc = gz_read_exact(g, buf, isz, s->images, "the pixels", err, errlen)) < 0) break;
            rc = data__store(ds, i, buf, 1, ds->native_h, ds->native_w, 0, (size_t)ds->native_w, 1, sc);
            if (rc < 0) err_set_path(err, errlen, rc, s->images, "out of memory");
        }
        free(buf);
    }
    if (rc == 0) rc = set_names(ds, s->names, NULL, s->labels, err, errlen);
done:
    gzclose(g);
    return rc;
}

static int open_cifar(data_set *ds, const data__src *s, const data_open_opts *o, data__scratch *sc, char *err, size_t errlen)
{
    bool c10 = s->fmt == DATA_FMT_CIFAR10;
    int rec = c10 ? 3073 : 3074, total = 0, counts[DATA__MAX_FILES], rc;
    for (int i = 0; i < s->nfiles; i++) {
        if ((rc = cifar_file_count(s->files[i], rec, &counts[i], err, errlen)) < 0) return rc;
        total += counts[i];
        if (total > DATA__MAX_COUNT) return err_set_path(err, errlen, -EFBIG, s->files[i], "too many records");
    }
    int limit = o ? o->limit : 0;
    int n = limit > 0 && limit < total ? limit : total;
    ds->native_c = 3;
    ds->native_h = ds->native_w = 32;
    ds->num_classes = c10 ? 10 : 100;
    if ((rc = alloc_pixels(ds, n, o, s->files[0], err, errlen)) < 0) return rc;
    unsigned char r[3074];
    int k = 0;
    for (int f = 0; f < s->nfiles && k < n; f++) {
        FILE *fp = fopen(s->files[f], "rb");
        if (!fp) return err_set_path(err, errlen, -errno, s->files[f], "cannot open: %s", strerror(errno));
        for (int i = 0; i < counts[f] && k < n; i++, k++) {
            if (fread(r, 1, (size_t)rec, fp) != (size_t)rec) {
                fclose(fp);
                return err_set_path(err, errlen, -EINVAL, s->files[f], "truncated at record %d", i);
            }
            int label = c10 ? r[0] : r[1]; /* CIFAR-100: coarse, then fine */
            if (label >= ds->num_classes || (!c10 && r[0] >= 20)) {
                fclose(fp);
                return err_set_path(err, errlen, -EINVAL, s->files[f], "record %d: label %d out of range for CIFAR-%d", i,
                                  label >= ds->num_classes ? label : r[0], c10 ? 10 : 100);
            }
            ds->labels[k] = label;
            if ((rc = data__store(ds, k, r + (c10 ? 1 : 2), 3, 32, 32, 1024, 32, 1, sc)) < 0) {
                fclose(fp);
                return err_set_path(err, errlen, rc, s->files[f], "out of memory");
            }
        }
        fclose(fp);
    }
    return set_names(ds, s->names, NULL, s->files[0], err, errlen);
}

static int open_folder(data_set *ds, const data__src *s, const data_open_opts *o, data__scratch *sc, char *err, size_t errlen)
{
    data__folder f;
    int rc = data__folder_scan(&f, s->root, err, errlen);
    if (rc < 0) return rc;
    int n = o && o->limit > 0 && o->limit < f.nfiles ? o->limit : f.nfiles;
    ds->native_c = 3;
    if ((rc = data__image_size(f.files[0], &ds->native_h, &ds->native_w, err, errlen)) < 0) goto done;
    ds->labels = f.labels; /* take ownership */
    f.labels = NULL;
    if ((rc = alloc_pixels(ds, n, o, s->root, err, errlen)) < 0) goto done;
    for (int i = 0; i < n; i++) {
        int h, w;
        if ((rc = data__image_decode(f.files[i], &h, &w, sc, err, errlen)) < 0) goto done;
        if ((rc = data__store(ds, i, sc->img, 3, h, w, 1, (size_t)w * 3, 3, sc)) < 0) {
            rc = err_set_path(err, errlen, rc, f.files[i], "out of memory");
            goto done;
        }
    }
    ds->num_classes = f.nclasses;
    rc = set_names(ds, NULL, f.classes, s->root, err, errlen);
done:
    data__folder_free(&f);
    return rc;
}

/* Per-channel mean and std of pixel/255 from exact histograms. */
static void compute_stats(data_set *ds)
{
    size_t plane = (size_t)ds->h * ds->w;
    for (int c = 0; c < ds->c; c++) {
        uint64_t hist[256] = { 0 };
        for (int i = 0; i < ds->n; i++) {
            const uint8_t *p = ds->pixels + ((size_t)i * ds->c + c) * plane;
            for (size_t k = 0; k < plane; k++) hist[p[k]]++;
        }
        double cnt = (double)plane * ds->n, s1 = 0, s2 = 0;
        for (int v = 0; v < 256; v++) { s1 += (double)hist[v] * v; s2 += (double)hist[v] * v * v; }
        double m = s1 / cnt, var = s2 / cnt - m * m;
        ds->mean[c] = (float)(m / 255.0);
        ds->std[c] = (float)(sqrt(var > 0 ? var : 0) / 255.0);
        if (ds->std[c] < 1e-6f) ds->std[c] = 1.0f; /* a constant channel: do not divide by zero */
    }
}

int data_open(data_set **out, const char *name, const data_open_opts *opts, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen) err[0] = '\0';
    data_set *ds = calloc(1, sizeof *ds);
    data__src *s = malloc(sizeof *s);
    data__scratch sc = { 0 };
    int rc;
    if (!ds || !s) { rc = err_set_path(err, errlen, -ENOMEM, name, "out of memory"); goto done; }
    if ((rc = data__resolve(s, name, err, errlen)) < 0) goto done;
    ds->format = s->fmt;
    if (s->fmt == DATA_FMT_IDX) rc = open_idx(ds, s, opts, &sc, err, errlen);
    else if (s->fmt == DATA_FMT_FOLDER) rc = open_folder(ds, s, opts, &sc, err, errlen);
    else rc = open_cifar(ds, s, opts, &sc, err, errlen);
    if (rc < 0) goto done;
    for (int i = 0; i < ds->n; i++)
        if (ds->labels[i] < 0 || ds->labels[i] >= ds->num_classes) {
            rc = err_set_path(err, errlen, -EINVAL, name, "label %d of image %d out of range", ds->labels[i], i);
            goto done;
        }
    /* Known constants hold while the channels are the dataset's own (or replicated gray). */
    if (s->known_stats && (ds->c == ds->native_c || ds->native_c == 1)) {
        for (int c = 0; c < ds->c; c++) {
            ds->mean[c] = s->mean[ds->native_c == 1 ? 0 : c];
            ds->std[c] = s->std[ds->native_c == 1 ? 0 : c];
        }
    } else {
        compute_stats(ds);
    }
    ds->bytes = sizeof *ds + (size_t)ds->n * ((size_t)ds->c * ds->h * ds->w + sizeof *ds->labels);
    for (int i = 0; i < ds->num_classes; i++) ds->bytes += strlen(ds->class_names[i]) + 1 + sizeof(char *);
    *out = ds;
    ds = NULL;
done:
    data__scratch_free(&sc);
    free(s);
    data_free(ds);
    return rc;
}
