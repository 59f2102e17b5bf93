/* trainer/data_inspect.c — data_inspect: what an uploaded set holds, read the way training will read
 * it. An ImageFolder is scanned as data_open scans it and every image is decoded with its decoders
 * (one scratch buffer, no pixel set kept); IDX and CIFAR sets are read through by data_open, every
 * image stored at 1x1 (one byte each), under the caller's memory cap. Per-class counts and the range of native image sizes come back.
 * Caller's thread (the daemon's loop, for an upload). Errors as in data.h ("<file>: <problem>"). */
#define _GNU_SOURCE
#include "trainer/data_int.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void data_report_free(data_report *r)
{
    if (!r) return;
    if (r->class_names)
        for (int i = 0; i < r->info.num_classes; i++) free(r->class_names[i]);
    free(r->class_names);
    free(r->class_counts);
    memset(r, 0, sizeof *r);
}

static int alloc_classes(data_report *r, int n, const char *path, char *err, size_t errlen)
{
    r->info.num_classes = n;
    r->class_names = calloc((size_t)n, sizeof *r->class_names);
    r->class_counts = calloc((size_t)n, sizeof *r->class_counts);
    if (!r->class_names || !r->class_counts) return err_set_path(err, errlen, -ENOMEM, path, "out of memory");
    return 0;
}

static int inspect_folder(data_report *r, const char *root, char *err, size_t errlen)
{
    data__folder f;
    data__scratch sc = { 0 };
    int rc = data__folder_scan(&f, root, err, errlen);
    if (rc < 0) return rc;
    if ((rc = alloc_classes(r, f.nclasses, root, err, errlen)) < 0) goto done;
    for (int c = 0; c < f.nclasses; c++) { r->class_names[c] = f.classes[c]; f.classes[c] = NULL; }
    r->info.count = f.nfiles;
    r->info.channels = 3;
    for (int i = 0; i < f.nfiles; i++) {
        int h, w;
        if ((rc = data__image_decode(f.files[i], &h, &w, &sc, err, errlen)) < 0) goto done;
        if (i == 0) {
            r->info.height = r->min_h = r->max_h = h;
            r->info.width = r->min_w = r->max_w = w;
        }
        if (h < r->min_h) r->min_h = h;
        if (h > r->max_h) r->max_h = h;
        if (w < r->min_w) r->min_w = w;
        if (w > r->max_w) r->max_w = w;
        r->class_counts[f.labels[i]]++;
    }
done:
    data__scratch_free(&sc);
    data__folder_free(&f);
    return rc;
}

int data_inspect(data_report *out, const char *name, size_t max_bytes, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (err && errlen) err[0] = '\0';
    data__src *s = malloc(sizeof *s);
    if (!s) return err_set_path(err, errlen, -ENOMEM, name, "out of memory");
    int rc = data__resolve(s, name, err, errlen);
    if (rc < 0) goto done;
    out->info.format = s->fmt;
    if (s->fmt == DATA_FMT_FOLDER) {
        rc = inspect_folder(out, s->root, err, errlen);
        goto done;
    }
    /* IDX and CIFAR: every byte read and every label checked by data_open itself, each image stored
     * at 1x1 gray so that the set holds one byte per image however large it is */
    data_set *ds;
    data_open_opts o = { .channels = 1, .height = 1, .width = 1, .max_bytes = max_bytes };
    if ((rc = data_open(&ds, name, &o, err, errlen)) < 0) goto done;
    out->info.count = ds->n;
    out->info.channels = ds->native_c;
    out->info.height = out->min_h = out->max_h = ds->native_h;
    out->info.width = out->min_w = out->max_w = ds->native_w;
    if ((rc = alloc_classes(out, ds->num_classes, name, err, errlen)) == 0) {
        for (int c = 0; c < ds->num_classes; c++) { out->class_names[c] = ds->class_names[c]; ds->class_names[c] = NULL; }
        for (int i = 0; i < ds->n; i++) out->class_counts[ds->labels[i]]++;
    }
    data_free(ds);
done:
    free(s);
    if (rc < 0) data_report_free(out);
    return rc;
}
