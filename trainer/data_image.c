/* trainer/data_image.c — ImageFolder scanning (torchvision's class and file order), PNG (libpng)
 * and JPEG (libjpeg) decoding to RGB, and the load-time channel conversion + resize into a set.
 * Decoders run under setjmp error handlers with size limits set before any pixel allocation, so a
 * hostile image fails with "<file>: <problem>". Caller's thread, load time only.
 */
#define _GNU_SOURCE
#include "trainer/data_int.h"
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <jpeglib.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define MAX_DEPTH 8           /* sub-folder depth inside a class (symlink loops end here) */
#define MAX_PIXELS (64u << 20) /* decoded pixels per image */

/* ---- folder scan ---- */

typedef struct strv { char **v; int n, cap; } strv;

static int strv_push(strv *s, const char *str)
{
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 64;
        char **v = realloc(s->v, sizeof *v * (size_t)cap);
        if (!v) return -ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(str))) return -ENOMEM;
    s->n++;
    return 0;
}

static void strv_free(strv *s)
{
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
}

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static const char *ext_of(const char *name)
{
    const char *d = strrchr(name, '.');
    return d ? d : "";
}

static bool decodable(const char *ext) { return !strcasecmp(ext, ".png") || !strcasecmp(ext, ".jpg") || !strcasecmp(ext, ".jpeg"); }
static bool torchvision_image(const char *ext)
{
    static const char *const exts[] = { ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp" };
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) if (!strcasecmp(ext, exts[i])) return true;
    return decodable(ext);
}

/* torchvision walks sorted(os.walk(class_dir)): directories in string order of their path, files
 * sorted within each. We collect recursively, then sort a class's files by (directory, name). */
static int cmp_dir_then_name(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    const char *sx = strrchr(x, '/'), *sy = strrchr(y, '/');
    size_t dx = (size_t)(sx - x), dy = (size_t)(sy - y);
    int c = memcmp(x, y, dx < dy ? dx : dy);
    if (c) return c;
    if (dx != dy) return dx < dy ? -1 : 1; /* a directory sorts before its sub-directories */
    return strcmp(sx + 1, sy + 1);
}

static int walk(strv *files, const char *dir, int depth, char *err, size_t errlen)
{
    if (depth > MAX_DEPTH) return err_set_path(err, errlen, -ELOOP, dir, "folders nested deeper than %d", MAX_DEPTH);
    DIR *d = opendir(dir);
    if (!d) return err_set_path(err, errlen, -errno, dir, "cannot open directory: %s", strerror(errno));
    strv names = { 0 }, subs = { 0 };
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) && rc == 0) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[PATH_MAX];
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p) continue;
        struct stat sb;
        if (stat(p, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) rc = strv_push(&subs, p);
        else if (S_ISREG(sb.st_mode) && torchvision_image(ext_of(e->d_name))) {
            if (!decodable(ext_of(e->d_name))) {
                rc = err_set_path(err, errlen, -EINVAL, p, "unsupported image type (PNG and JPEG only)");
                break;
            }
            rc = strv_push(&names, p);
        }
    }
    closedir(d);
    if (rc == -ENOMEM) err_set_path(err, errlen, rc, dir, "out of memory");
    if (rc == 0) {
        if (names.n) qsort(names.v, (size_t)names.n, sizeof *names.v, cmp_cstr);
        if (subs.n) qsort(subs.v, (size_t)subs.n, sizeof *subs.v, cmp_cstr);
        for (int i = 0; i < names.n && rc == 0; i++) rc = strv_push(files, names.v[i]);
        if (rc == -ENOMEM) err_set_path(err, errlen, rc, dir, "out of memory");
        for (int i = 0; i < subs.n && rc == 0; i++) rc = walk(files, subs.v[i], depth + 1, err, errlen);
    }
    strv_free(&names);
    strv_free(&subs);
    return rc;
}

void data__folder_free(data__folder *f)
{
    for (int i = 0; i < f->nclasses; i++) free(f->classes[i]);
    for (int i = 0; i < f->nfiles; i++) free(f->files[i]);
    free(f->classes);
    free(f->files);
    free(f->labels);
    memset(f, 0, sizeof *f);
}

int data__folder_scan(data__folder *f, const char *root, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    strv classes = { 0 }, files = { 0 };
    int rc = 0;
    int32_t *labels = NULL;
    DIR *d = opendir(root);
    if (!d) return err_set_path(err, errlen, -errno, root, "cannot open directory: %s", strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) && rc == 0) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[PATH_MAX];
        struct stat sb;
        if (snprintf(p, sizeof p, "%s/%s", root, e->d_name) >= (int)sizeof p) continue;
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) rc = strv_push(&classes, e->d_name);
    }
    closedir(d);
    if (rc) { rc = err_set_path(err, errlen, rc, root, "out of memory"); goto fail; }
    if (classes.n == 0) { rc = err_set_path(err, errlen, -EINVAL, root, "no class folders"); goto fail; }
    if (classes.n > DATA_MAX_CLASSES) { rc = err_set_path(err, errlen, -EFBIG, root, "%d class folders (max %d)", classes.n, DATA_MAX_CLASSES); goto fail; }
    qsort(classes.v, (size_t)classes.n, sizeof *classes.v, cmp_cstr); /* Python's sorted(): code points */
    int *start = malloc(sizeof *start * ((size_t)classes.n + 1));
    if (!start) { rc = err_set_path(err, errlen, -ENOMEM, root, "out of memory"); goto fail; }
    for (int c = 0; c < classes.n; c++) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", root, classes.v[c]);
        start[c] = files.n;
        if ((rc = walk(&files, p, 0, err, errlen)) < 0) { free(start); goto fail; }
        qsort(files.v + start[c], (size_t)(files.n - start[c]), sizeof *files.v, cmp_dir_then_name);
        if (files.n == start[c]) {
            free(start);
            rc = err_set_path(err, errlen, -EINVAL, p, "class \"%s\" has no PNG or JPEG images", classes.v[c]);
            goto fail;
        }
        if (files.n > DATA__MAX_COUNT) { free(start); rc = err_set_path(err, errlen, -EFBIG, root, "too many images"); goto fail; }
    }
    start[classes.n] = files.n;
    labels = malloc(sizeof *labels * (size_t)files.n);
    if (!labels) { free(start); rc = err_set_path(err, errlen, -ENOMEM, root, "out of memory"); goto fail; }
    for (int c = 0; c < classes.n; c++)
        for (int i = start[c]; i < start[c + 1]; i++) labels[i] = c;
    free(start);
    f->nclasses = classes.n;
    f->classes = classes.v;
    f->nfiles = files.n;
    f->files = files.v;
    f->labels = labels;
    return 0;
fail:
    strv_free(&classes);
    strv_free(&files);
    free(labels);
    return rc;
}

/* ---- PNG ---- */

typedef struct png_err { jmp_buf jb; char msg[160]; } png_err;

static void png_on_error(png_structp p, png_const_charp msg)
{
    png_err *e = png_get_error_ptr(p);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    longjmp(e->jb, 1);
}
static void png_on_warning(png_structp p, png_const_charp msg) { (void)p; (void)msg; }

static int ensure(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap) return 0;
    uint8_t *b = realloc(*buf, need);
    if (!b) return -ENOMEM;
    *buf = b;
    *cap = need;
    return 0;
}

/* Decode (or only read the header when s == NULL). */
static int png_load(FILE *fp, const char *path, int *h, int *w, data__scratch *s, char *err, size_t errlen)
{
    png_err pe = { .msg = "" };
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &pe, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_bytep *volatile rows = NULL;
    if (!png || !info) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        return err_set_path(err, errlen, -ENOMEM, path, "out of memory");
    }
    if (setjmp(pe.jb)) {
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return err_set_path(err, errlen, -EINVAL, path, "bad PNG: %s", pe.msg);
    }
    png_set_user_limits(png, DATA_MAX_SIDE, DATA_MAX_SIDE);
    png_set_chunk_malloc_max(png, 8u << 20);
    png_init_io(png, fp);
    png_read_info(png, info);
    png_uint_32 pw, ph;
    int depth, ctype;
    png_get_IHDR(png, info, &pw, &ph, &depth, &ctype, NULL, NULL, NULL);
    *h = (int)ph;
    *w = (int)pw;
    if (!s) {
        png_destroy_read_struct(&png, &info, NULL);
        return 0;
    }
    /* To 8-bit RGB as PIL's convert("RGB"): palette expanded, gray replicated, alpha dropped. */
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_strip_16(png);
    if (ctype & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)pw * 3) {
        png_destroy_read_struct(&png, &info, NULL);
        return err_set_path(err, errlen, -EINVAL, path, "unexpected PNG layout after conversion");
    }
    if ((size_t)pw * ph > MAX_PIXELS || ensure(&s->img, &s->img_cap, (size_t)pw * ph * 3) < 0 ||
        !(rows = malloc(sizeof *rows * ph))) {
        png_destroy_read_struct(&png, &info, NULL);
        return err_set_path(err, errlen, -EFBIG, path, "PNG of %ux%u is too large", pw, ph);
    }
    for (png_uint_32 y = 0; y < ph; y++) rows[y] = s->img + (size_t)y * pw * 3;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    return 0;
}

/* ---- JPEG ---- */

typedef struct jpg_err { struct jpeg_error_mgr mgr; jmp_buf jb; char msg[JMSG_LENGTH_MAX]; } jpg_err;

static void jpg_on_error(j_common_ptr c)
{
    jpg_err *e = (jpg_err *)c->err;
    c->err->format_message(c, e->msg);
    longjmp(e->jb, 1);
}
static void jpg_on_message(j_common_ptr c, int level)
{
    if (level < 0) { /* corrupt data: PIL refuses truncated images, so do we */
        jpg_err *e = (jpg_err *)c->err;
        if (!e->msg[0]) c->err->format_message(c, e->msg);
        c->err->num_warnings++;
    }
}

static int jpg_load(FILE *fp, const char *path, int *h, int *w, data__scratch *s, char *err, size_t errlen)
{
    struct jpeg_decompress_struct cinfo;
    jpg_err je;
    memset(&je, 0, sizeof je);
    cinfo.err = jpeg_std_error(&je.mgr);
    je.mgr.error_exit = jpg_on_error;
    je.mgr.emit_message = jpg_on_message;
    if (setjmp(je.jb)) {
        jpeg_destroy_decompress(&cinfo);
        return err_set_path(err, errlen, -EINVAL, path, "bad JPEG: %s", je.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, fp);
    jpeg_read_header(&cinfo, TRUE);
    *h = (int)cinfo.image_height;
    *w = (int)cinfo.image_width;
    if (*h > DATA_MAX_SIDE || *w > DATA_MAX_SIDE) {
        jpeg_destroy_decompress(&cinfo);
        return err_set_path(err, errlen, -EFBIG, path, "JPEG of %dx%d exceeds the %d-pixel side limit", *w, *h, DATA_MAX_SIDE);
    }
    if (!s) {
        jpeg_destroy_decompress(&cinfo);
        return 0;
    }
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&cinfo);
        return err_set_path(err, errlen, -EINVAL, path, "CMYK JPEG is not supported");
    }
    cinfo.out_color_space = JCS_RGB; /* gray is replicated by libjpeg */
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != 3 || ensure(&s->img, &s->img_cap, (size_t)*w * *h * 3) < 0) {
        jpeg_destroy_decompress(&cinfo);
        return err_set_path(err, errlen, -ENOMEM, path, "cannot decode JPEG to RGB");
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = s->img + (size_t)cinfo.output_scanline * *w * 3;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    if (je.mgr.num_warnings) return err_set_path(err, errlen, -EINVAL, path, "corrupt or truncated JPEG: %s", je.msg);
    return 0;
}

static int image_load(const char *path, int *h, int *w, data__scratch *s, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return err_set_path(err, errlen, -errno, path, "cannot open: %s", strerror(errno));
    unsigned char sig[8] = { 0 };
    size_t k = fread(sig, 1, 8, fp);
    rewind(fp);
    int rc;
    if (k == 8 && !png_sig_cmp(sig, 0, 8)) rc = png_load(fp, path, h, w, s, err, errlen);
    else if (k >= 3 && sig[0] == 0xFF && sig[1] == 0xD8 && sig[2] == 0xFF) rc = jpg_load(fp, path, h, w, s, err, errlen);
    else rc = err_set_path(err, errlen, -EINVAL, path, "neither a PNG nor a JPEG (bad signature)");
    fclose(fp);
    if (rc == 0 && (*h < 1 || *w < 1)) rc = err_set_path(err, errlen, -EINVAL, path, "empty image");
    return rc;
}

int data__image_size(const char *path, int *h, int *w, char *err, size_t errlen)
{
    return image_load(path, h, w, NULL, err, errlen);
}

int data__image_decode(const char *path, int *h, int *w, data__scratch *s, char *err, size_t errlen)
{
    return image_load(path, h, w, s, err, errlen);
}

/* ---- conversion and resize ---- */

void data__scratch_free(data__scratch *s)
{
    free(s->planes);
    free(s->tmp);
    free(s->wx);
    free(s->wy);
    free(s->fx);
    free(s->fy);
    free(s->img);
    memset(s, 0, sizeof *s);
}

/* 1-D resampling weights from S to D samples: area (box) when shrinking, bilinear with half-pixel
 * centres (align_corners=False) when enlarging. taps per output; first[i] is the first input. */
static int taps_for(int S, int D) { return D < S ? (S + D - 1) / D + 1 : 2; }

static void weights(float *wt, int *first, int S, int D, int taps)
{
    for (int i = 0; i < D; i++) {
        float *wi = wt + (size_t)i * taps;
        for (int t = 0; t < taps; t++) wi[t] = 0;
        if (D < S) {
            double a = (double)i * S / D, b = (double)(i + 1) * S / D;
            int j0 = (int)floor(a);
            first[i] = j0;
            for (int t = 0; t < taps; t++) {
                double lo = fmax(a, j0 + t), hi = fmin(b, j0 + t + 1.0);
                if (hi > lo && j0 + t < S) wi[t] = (float)((hi - lo) * D / S);
            }
        } else {
            double c = (i + 0.5) * S / D - 0.5;
            c = c < 0 ? 0 : c > S - 1 ? S - 1 : c;
            int j0 = S == 1 ? 0 : (int)floor(c) > S - 2 ? S - 2 : (int)floor(c);
            double f = c - j0;
            first[i] = j0;
            wi[0] = (float)(1 - f);
            wi[1] = (float)f;
        }
    }
}

static int resize_plane(uint8_t *dst, int dh, int dw, const uint8_t *src, int sh, int sw, data__scratch *s)
{
    if (dh == sh && dw == sw) {
        memcpy(dst, src, (size_t)dh * dw);
        return 0;
    }
    int tx = taps_for(sw, dw), ty = taps_for(sh, dh);
    size_t need = (size_t)(dw > dh ? dw : dh) * (size_t)(tx > ty ? tx : ty);
    if (need > s->wcap) {
        free(s->wx); free(s->wy); free(s->fx); free(s->fy);
        s->wx = malloc(need * sizeof(float));
        s->wy = malloc(need * sizeof(float));
        s->fx = malloc(need * sizeof(int));
        s->fy = malloc(need * sizeof(int));
        s->wcap = s->wx && s->wy && s->fx && s->fy ? need : 0;
        if (!s->wcap) return -ENOMEM;
    }
    size_t tneed = (size_t)sh * dw * sizeof(float);
    if (tneed > s->tmp_cap) {
        float *t = realloc(s->tmp, tneed);
        if (!t) return -ENOMEM;
        s->tmp = t;
        s->tmp_cap = tneed;
    }
    weights(s->wx, s->fx, sw, dw, tx);
    weights(s->wy, s->fy, sh, dh, ty);
    for (int y = 0; y < sh; y++) /* horizontal pass into tmp[sh][dw] */
        for (int x = 0; x < dw; x++) {
            float acc = 0;
            const float *wt = s->wx + (size_t)x * tx;
            for (int t = 0; t < tx; t++) {
                int j = s->fx[x] + t;
                if (wt[t] != 0 && j < sw) acc += wt[t] * src[(size_t)y * sw + j];
            }
            s->tmp[(size_t)y * dw + x] = acc;
        }
    for (int y = 0; y < dh; y++) { /* vertical pass */
        const float *wt = s->wy + (size_t)y * ty;
        for (int x = 0; x < dw; x++) {
            float acc = 0;
            for (int t = 0; t < ty; t++) {
                int j = s->fy[y] + t;
                if (wt[t] != 0 && j < sh) acc += wt[t] * s->tmp[(size_t)j * dw + x];
            }
            int v = (int)lrintf(acc);
            dst[(size_t)y * dw + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    return 0;
}

int data__store(data_set *ds, int i, const uint8_t *src, int sc, int sh, int sw, size_t cs, size_t ys,
                size_t xs, data__scratch *s)
{
    size_t plane = (size_t)sh * sw;
    if (ensure(&s->planes, &s->planes_cap, plane * (size_t)ds->c) < 0) return -ENOMEM;
    /* Channels at native size, planar. */
    for (int c = 0; c < ds->c; c++) {
        uint8_t *o = s->planes + (size_t)c * plane;
        for (int y = 0; y < sh; y++)
            for (int x = 0; x < sw; x++) {
                const uint8_t *p = src + (size_t)y * ys + (size_t)x * xs;
                uint8_t v;
                if (sc == ds->c) v = p[(size_t)c * cs];
                else if (sc == 1) v = p[0]; /* gray -> RGB: replicate */
                else /* RGB -> gray as PIL's "L": ITU-R 601-2 luma, fixed point */
                    v = (uint8_t)((p[0] * 19595u + p[cs] * 38470u + p[2 * cs] * 7471u + 0x8000u) >> 16);
                o[(size_t)y * sw + x] = v;
            }
    }
    size_t dplane = (size_t)ds->h * ds->w;
    for (int c = 0; c < ds->c; c++) {
        int rc = resize_plane(ds->pixels + ((size_t)i * ds->c + c) * dplane, ds->h, ds->w,
                              s->planes + (size_t)c * plane, sh, sw, s);
        if (rc < 0) return rc;
    }
    return 0;
}
