/* core/dataset_upload.c — what an upload is, before core/assets.c records it: an archive of class
 * folders extracted safely (core/unpack.c) into a staging directory under files/tmp, or an IDX images +
 * labels pair renamed into one, and then checked the way training reads it (data_inspect: every image
 * decoded, every label read) under the expansion caps. Nothing here touches files/<id> or the
 * database: the caller renames the staged root into place only once all of it passed, and removes the
 * staging directory on any failure. Loop thread. Errors: svc_error (400 hostile or unreadable, 413 over
 * a cap, 507 disk full, 500 otherwise); messages name entries relative to the upload, never our paths. */
#define _GNU_SOURCE
#include "core/core_int.h"
#include "core/unpack.h"
#include "common/util.h"
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* Drop every "prefix/" (then a bare prefix) from msg, in place: the client sees names inside its upload. */
void svc__strip_prefix(char *msg, const char *prefix)
{
    size_t n = strlen(prefix);
    if (!n) return;
    for (char *p; (p = strstr(msg, prefix));) {
        size_t cut = n + (p[n] == '/');
        memmove(p, p + cut, strlen(p + cut) + 1);
    }
}

static int stage_fail(svc_error *e, int rc, const char *what, const char *msg)
{
    if (rc == -EFBIG) return svc_fail(e, SVC_ETOOLARGE, "upload_too_large", "file", "%s: %s", what, msg);
    if (rc == -EINVAL || rc == -ELOOP || rc == -ENOENT)
        return svc_fail(e, SVC_EINVAL, "invalid_file_format", "file", "%s: %s", what, msg);
    if (rc == -ENOSPC || rc == -EDQUOT)
        return svc_fail(e, SVC_ENOSPACE, "insufficient_storage", "file", "%s: the disk is full (nothing was kept)", what);
    return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "%s: %s", what, msg);
}

/* The dataset root inside an extracted archive: stage itself, or its only entry when that is a folder
 * holding folders ("train/cat/1.png", as `tar czf train.tgz train` makes). OUT root (n bytes). */
static void archive_root(const char *stage, char *root, size_t n)
{
    snprintf(root, n, "%s", stage);
    DIR *d = opendir(stage);
    if (!d) return;
    char only[256] = "";
    int count = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && count++ == 0)
            snprintf(only, sizeof only, "%s", de->d_name);
    closedir(d);
    if (count != 1) return;
    char top[1400];
    snprintf(top, sizeof top, "%s/%s", stage, only);
    struct stat st;
    if (lstat(top, &st) != 0 || !S_ISDIR(st.st_mode) || !(d = opendir(top))) return;
    int subdirs = 0;
    while ((de = readdir(d))) {
        char p[1700];
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", top, de->d_name);
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) subdirs++;
    }
    closedir(d);
    if (subdirs) snprintf(root, n, "%s", top);
}

int svc__stage_archive(const char *archive, const char *stage, const unpack_limits *lim, char *root, size_t rootlen,
                       long long *bytes, svc_error *e)
{
    unpack_stats st;
    char err[600];
    int rc = unpack_extract(archive, stage, lim, &st, err, sizeof err);
    if (rc < 0) return stage_fail(e, rc, "archive", err);
    if (st.images == 0)
        return svc_fail(e, SVC_EINVAL, "invalid_file_format", "file",
                        "archive: no PNG or JPEG images in %lld entries (%lld other files ignored)", st.entries, st.skipped);
    archive_root(stage, root, rootlen);
    *bytes = st.bytes;
    return 0;
}

/* The IDX header's dimension count (3 images, 1 labels) through zlib (gzipped or not); OUT *gz. */
static int idx_dims(const char *path, int *gz)
{
    unsigned char h[4];
    FILE *fp = fopen(path, "rb");
    if (!fp) return -errno;
    *gz = fread(h, 1, 2, fp) == 2 && h[0] == 0x1f && h[1] == 0x8b;
    fclose(fp);
    gzFile g = gzopen(path, "rb");
    if (!g) return -ENOMEM;
    int k = gzread(g, h, 4);
    gzclose(g);
    return k == 4 && h[0] == 0 && h[1] == 0 && h[2] == 0x08 ? h[3] : -EINVAL;
}

int svc__stage_idx(const svc_upload_part *parts, const char *stage, long long *bytes, const char **images_name,
                   svc_error *e)
{
    int which[2], gz[2];
    for (int i = 0; i < 2; i++) {
        which[i] = idx_dims(parts[i].tmp_path, &gz[i]);
        if (which[i] != 1 && which[i] != 3)
            return svc_fail(e, SVC_EINVAL, "invalid_file_format", "file",
                            "two files are an IDX pair: '%.100s' is neither IDX images (3 dimensions) nor labels (1)",
                            parts[i].filename);
    }
    if (which[0] == which[1])
        return svc_fail(e, SVC_EINVAL, "invalid_file_format", "file", "an IDX pair is one images and one labels file, not two %s files",
                        which[0] == 3 ? "images" : "labels");
    int im = which[0] == 3 ? 0 : 1;
    /* the trainer finds the labels by the images' name ("images-idx3" -> "labels-idx1", same suffix);
     * zlib reads either file whether gzipped or not, so the suffix follows the images file */
    const char *suffix = gz[im] ? ".gz" : "";
    char dst[2][1400];
    snprintf(dst[im], sizeof dst[im], "%s/train-images-idx3-ubyte%s", stage, suffix);
    snprintf(dst[1 - im], sizeof dst[1 - im], "%s/train-labels-idx1-ubyte%s", stage, suffix);
    for (int i = 0; i < 2; i++)
        if (rename(parts[i].tmp_path, dst[i]) != 0)
            return svc_fail(e, SVC_EINTERNAL, "storage_error", NULL, "cannot stage the upload: %s", strerror(errno));
    *bytes = parts[0].bytes + parts[1].bytes;
    *images_name = parts[im].filename;
    return 0;
}

int svc__inspect(const char *root, const char *hide, long long upload_bytes, const unpack_limits *lim, data_report *out,
                 svc_error *e)
{
    char err[600];
    data_info info;
    /* the header first: a gzipped IDX claiming more pixels than the caps allow is refused unread */
    int rc = data_probe(&info, root, err, sizeof err);
    if (rc == 0 && info.format == DATA_FMT_IDX) {
        long long px = (long long)info.count * info.height * info.width;
        if (lim->max_bytes > 0 && px > lim->max_bytes)
            return svc_fail(e, SVC_ETOOLARGE, "upload_too_large", "file", "IDX: %d images of %dx%d expand past %lld bytes",
                            info.count, info.width, info.height, lim->max_bytes);
        if (lim->max_ratio > 0 && px > UNPACK_RATIO_FLOOR && (double)px > lim->max_ratio * (double)upload_bytes)
            return svc_fail(e, SVC_ETOOLARGE, "upload_too_large", "file",
                            "IDX: %d images of %dx%d expand more than %g times the %lld bytes uploaded (a compression bomb?)",
                            info.count, info.width, info.height, lim->max_ratio, upload_bytes);
    }
    if (rc == 0) rc = data_inspect(out, root, (size_t)(lim->max_bytes > 0 ? lim->max_bytes : 0), err, sizeof err);
    if (rc < 0) {
        svc__strip_prefix(err, hide);
        return stage_fail(e, rc, "not a data set the trainer can read", err);
    }
    return 0;
}
