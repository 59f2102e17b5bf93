/* tests/unit/test_data.c — trainer/data*.c: the real Fashion-MNIST test split (skipped when the
 * Debian package is absent), tiny IDX (raw and gzip), CIFAR-10/100 and ImageFolder (PNG and JPEG)
 * trees written to a mkdtemp dir, hostile files (errors must name the file), seeded subsets and
 * splits, augmentation on a known image, and the loader's timing-independence and resumability.
 * Single-threaded cmocka binary (the loader starts its own prefetch thread). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <png.h>
#include <jpeglib.h>

#include "trainer/data.h"

static char tmpdir[256];
static char err[512];

static int setup(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/test_data.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void P(char *out, const char *rel) { snprintf(out, PATH_MAX, "%s/%s", tmpdir, rel); }

static void mkdirs(const char *rel)
{
    char p[PATH_MAX];
    P(p, rel);
    assert_true(mkdir(p, 0755) == 0 || errno == EEXIST);
}

static void write_file(const char *rel, const void *b, size_t n, bool gz)
{
    char p[PATH_MAX];
    P(p, rel);
    if (gz) {
        gzFile g = gzopen(p, "wb");
        assert_non_null(g);
        assert_int_equal(gzwrite(g, b, (unsigned)n), (int)n);
        gzclose(g);
    } else {
        FILE *f = fopen(p, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(b, 1, n, f), n);
        fclose(f);
    }
}

static size_t be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
    return 4;
}

/* IDX pair of n images h x w, pixel (i, k) = i*7 + k, label i % 3. */
static void write_idx(const char *dir, const char *prefix, int n, int h, int w, bool gz, uint32_t count_override)
{
    uint8_t *b = malloc(16 + (size_t)n * h * w);
    size_t k = 0;
    b[k++] = 0; b[k++] = 0; b[k++] = 8; b[k++] = 3;
    k += be32(b + k, count_override ? count_override : (uint32_t)n);
    k += be32(b + k, (uint32_t)h);
    k += be32(b + k, (uint32_t)w);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < h * w; j++) b[k++] = (uint8_t)(i * 7 + j);
    char rel[256];
    snprintf(rel, sizeof rel, "%s/%s-images-idx3-ubyte%s", dir, prefix, gz ? ".gz" : "");
    write_file(rel, b, k, gz);
    /* Labels: as many as the images header claims when that is plausible, so the images file is
     * what is found short. */
    int nl = count_override && count_override <= 2000000 ? (int)count_override : n;
    b = realloc(b, 8 + (size_t)nl);
    k = 0;
    b[k++] = 0; b[k++] = 0; b[k++] = 8; b[k++] = 1;
    k += be32(b + k, (uint32_t)nl);
    for (int i = 0; i < nl; i++) b[k++] = (uint8_t)(i % 3);
    snprintf(rel, sizeof rel, "%s/%s-labels-idx1-ubyte%s", dir, prefix, gz ? ".gz" : "");
    write_file(rel, b, k, gz);
    free(b);
}

static void expect_fail(const char *name, const char *what, const char *file_in_msg)
{
    data_set *ds = NULL;
    int rc = data_open(&ds, name, NULL, err, sizeof err);
    if (rc >= 0 || !strstr(err, what) || !strstr(err, file_in_msg))
        fail_msg("%s: rc %d err \"%s\", wanted \"%s\" naming %s", name, rc, err, what, file_in_msg);
    assert_null(ds);
}

/* ---- the real data ---- */

static void test_fashion_mnist(void **state)
{
    (void)state;
    if (access("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", R_OK) != 0) skip();
    data_info info;
    assert_int_equal(data_probe(&info, "fashion-mnist-test", err, sizeof err), 0);
    assert_int_equal(info.count, 10000);
    assert_int_equal(info.num_classes, 10);
    assert_int_equal(info.height, 28);
    data_set *ds;
    assert_int_equal(data_open(&ds, "fashion-mnist-test", NULL, err, sizeof err), 0);
    assert_int_equal(ds->n, 10000);
    assert_true(ds->c == 1 && ds->h == 28 && ds->w == 28);
    assert_int_equal(ds->num_classes, 10);
    assert_string_equal(ds->class_names[9], "Ankle boot");
    assert_int_equal(ds->labels[0], 9); /* the first test image is an ankle boot */
    assert_int_equal(ds->labels[1], 2);
    int per[10] = { 0 };
    for (int i = 0; i < ds->n; i++) per[ds->labels[i]]++;
    for (int c = 0; c < 10; c++) assert_int_equal(per[c], 1000);
    double s = 0, s2 = 0;
    size_t np = (size_t)ds->n * 784;
    for (size_t i = 0; i < np; i++) { double v = ds->pixels[i] / 255.0; s += v; s2 += v * v; }
    double m = s / np, sd = sqrt(s2 / np - m * m);
    assert_true(fabs(m - 0.2860) < 0.003 && fabs(sd - 0.3530) < 0.003);
    assert_true(fabsf(ds->mean[0] - 0.2860f) < 1e-6f && fabsf(ds->std[0] - 0.3530f) < 1e-6f);
    /* Gray -> RGB at the same size replicates the plane exactly. */
    data_set *rgb;
    data_open_opts o = { .channels = 3, .limit = 50 };
    assert_int_equal(data_open(&rgb, "fashion-mnist-test", &o, err, sizeof err), 0);
    assert_int_equal(rgb->n, 50);
    for (int c = 0; c < 3; c++) assert_memory_equal(rgb->pixels + (size_t)c * 784, ds->pixels, 784);
    assert_int_equal(rgb->labels[49], ds->labels[49]);
    data_free(rgb);
    data_free(ds);
}

/* ---- IDX ---- */

static void test_idx(void **state)
{
    (void)state;
    mkdirs("idxraw");
    mkdirs("idxgz");
    write_idx("idxraw", "train", 5, 4, 3, false, 0);
    write_idx("idxgz", "train", 5, 4, 3, true, 0);
    for (int gz = 0; gz < 2; gz++) {
        char p[PATH_MAX], f[PATH_MAX + 64];
        P(p, gz ? "idxgz" : "idxraw");
        snprintf(f, sizeof f, "%s/train-images-idx3-ubyte%s", p, gz ? ".gz" : "");
        const char *names[2] = { p, f };
        for (int k = 0; k < 2; k++) {
            data_info info;
            assert_int_equal(data_probe(&info, names[k], err, sizeof err), 0);
            assert_true(info.format == DATA_FMT_IDX && info.count == 5 && info.num_classes == 3 && info.height == 4 && info.width == 3);
            data_set *ds;
            assert_int_equal(data_open(&ds, names[k], NULL, err, sizeof err), 0);
            assert_true(ds->n == 5 && ds->c == 1 && ds->h == 4 && ds->w == 3 && ds->num_classes == 3);
            for (int i = 0; i < 5; i++) {
                assert_int_equal(ds->labels[i], i % 3);
                for (int j = 0; j < 12; j++) assert_int_equal(ds->pixels[i * 12 + j], (uint8_t)(i * 7 + j));
            }
            assert_string_equal(ds->class_names[2], "2");
            data_free(ds);
        }
    }
    /* Resize 4x3 -> 2x3 (area: averages of row pairs) and gray -> RGB. */
    char p[PATH_MAX];
    P(p, "idxraw");
    data_open_opts o = { .channels = 3, .height = 2, .width = 3, .limit = 2 };
    data_set *ds;
    assert_int_equal(data_open(&ds, p, &o, err, sizeof err), 0);
    assert_true(ds->n == 2 && ds->c == 3 && ds->h == 2);
    /* image 1 rows: 7..9, 10..12, 13..15, 16..18 -> (7+10)/2 = 8.5 -> 8 (round half even) */
    assert_int_equal(ds->pixels[1 * 18 + 0], 8);
    assert_int_equal(ds->pixels[1 * 18 + 3], (uint8_t)lrint((13 + 16) / 2.0));
    assert_int_equal(ds->pixels[1 * 18 + 6], 8);
    data_free(ds);
    /* Enlarging 4x3 -> 8x6 keeps corners (bilinear, half-pixel centres clamp at the border). */
    data_open_opts up = { .height = 8, .width = 6, .limit = 1 };
    assert_int_equal(data_open(&ds, p, &up, err, sizeof err), 0);
    assert_int_equal(ds->pixels[0], 0);
    assert_int_equal(ds->pixels[47], 11);
    data_free(ds);
}

static void test_idx_hostile(void **state)
{
    (void)state;
    char p[PATH_MAX], f[PATH_MAX];
    mkdirs("bad1");
    write_idx("bad1", "train", 4, 2, 2, false, 0);
    P(f, "bad1/train-images-idx3-ubyte");
    uint8_t magic[32] = { 0, 0, 8, 2 };
    write_file("bad1/train-images-idx3-ubyte", magic, 32, false);
    expect_fail(f, "dimensions", f);
    magic[2] = 0x0D;
    magic[3] = 3;
    write_file("bad1/train-images-idx3-ubyte", magic, 32, false);
    expect_fail(f, "element type", f);
    uint8_t junk[8] = { 'P', 'K', 3, 4 };
    write_file("bad1/train-images-idx3-ubyte", junk, 8, false);
    expect_fail(f, "magic", f);
    write_file("bad1/train-images-idx3-ubyte", junk, 2, false);
    expect_fail(f, "truncated", f);

    /* Oversized count, raw and gzip: refused before allocating. */
    write_idx("bad1", "train", 4, 2, 2, false, 0xFFFFFFFFu);
    expect_fail(f, "out of range", f);
    mkdirs("bad2");
    write_idx("bad2", "train", 4, 2, 2, true, 1000000);
    P(f, "bad2/train-images-idx3-ubyte.gz");
    expect_fail(f, "truncated", f);
    /* Raw file shorter than its header says. */
    write_idx("bad1", "train", 4, 2, 2, false, 5);
    P(f, "bad1/train-images-idx3-ubyte");
    expect_fail(f, "bytes but its header", f);
    /* Label count differs from image count. */
    mkdirs("bad3");
    write_idx("bad3", "train", 4, 2, 2, false, 0);
    uint8_t lab[4 + 4 + 3] = { 0, 0, 8, 1, 0, 0, 0, 3, 0, 1, 2 };
    write_file("bad3/train-labels-idx1-ubyte", lab, sizeof lab, false);
    P(f, "bad3/train-images-idx3-ubyte");
    P(p, "bad3/train-labels-idx1-ubyte");
    expect_fail(f, "3 labels for 4 images", p);
    /* Gzip corruption in the middle of the stream. */
    mkdirs("bad4");
    write_idx("bad4", "train", 64, 8, 8, true, 0);
    P(f, "bad4/train-images-idx3-ubyte.gz");
    FILE *fp = fopen(f, "r+b");
    fseek(fp, 40, SEEK_SET);
    fwrite("\xde\xad\xbe\xef\xde\xad\xbe\xef", 1, 8, fp);
    fclose(fp);
    data_set *ds = NULL;
    assert_true(data_open(&ds, f, NULL, err, sizeof err) < 0);
    assert_non_null(strstr(err, f));
    /* Missing labels file, unknown names. */
    mkdirs("bad5");
    write_file("bad5/x-images-idx3-ubyte", magic, 32, false);
    P(f, "bad5/x-images-idx3-ubyte");
    expect_fail(f, "labels file", f);
    expect_fail("no-such-dataset", "not a known dataset", "no-such-dataset");
    data_info info;
    assert_true(data_probe(&info, "/nonexistent/x", err, sizeof err) == -ENOENT);
}

/* ---- CIFAR ---- */

static void test_cifar(void **state)
{
    (void)state;
    mkdirs("c10");
    uint8_t rec[3 * 3074];
    for (int r = 0; r < 3; r++) {
        uint8_t *q = rec + r * 3073;
        q[0] = (uint8_t)(r * 4);
        for (int k = 0; k < 3072; k++) q[1 + k] = (uint8_t)(k / 1024 * 80 + r);
    }
    write_file("c10/data_batch_1.bin", rec, 3 * 3073, false);
    write_file("c10/data_batch_2.bin", rec, 2 * 3073, false);
    write_file("c10/test_batch.bin", rec, 3073, false);
    char p[PATH_MAX];
    P(p, "c10");
    data_info info;
    assert_int_equal(data_probe(&info, p, err, sizeof err), 0);
    assert_true(info.format == DATA_FMT_CIFAR10 && info.count == 5 && info.num_classes == 10 && info.channels == 3);
    data_set *ds;
    assert_int_equal(data_open(&ds, p, NULL, err, sizeof err), 0);
    assert_int_equal(ds->n, 5);
    assert_int_equal(ds->labels[2], 8);
    assert_int_equal(ds->labels[4], 4);
    assert_string_equal(ds->class_names[8], "ship");
    assert_int_equal(ds->pixels[2 * 3072 + 2048], 162); /* record 2, blue plane */
    assert_true(fabsf(ds->mean[0] - 0.4914f) < 1e-6f);
    data_free(ds);
    /* To gray 16x16: luminance then area average of a constant plane. */
    data_open_opts o = { .channels = 1, .height = 16, .width = 16 };
    assert_int_equal(data_open(&ds, p, &o, err, sizeof err), 0);
    assert_int_equal(ds->pixels[0], (0 * 19595 + 80 * 38470 + 160 * 7471 + 0x8000) >> 16);
    data_free(ds);

    /* CIFAR-100: fine labels. */
    mkdirs("c100");
    for (int r = 0; r < 2; r++) {
        uint8_t *q = rec + r * 3074;
        q[0] = 19;
        q[1] = (uint8_t)(99 - r);
        memset(q + 2, r, 3072);
    }
    write_file("c100/train.bin", rec, 2 * 3074, false);
    P(p, "c100");
    assert_int_equal(data_open(&ds, p, NULL, err, sizeof err), 0);
    assert_true(ds->format == DATA_FMT_CIFAR100 && ds->n == 2 && ds->num_classes == 100);
    assert_int_equal(ds->labels[0], 99);
    assert_int_equal(ds->labels[1], 98);
    assert_string_equal(ds->class_names[99], "worm");
    data_free(ds);

    /* Hostile: label out of range, truncated record, odd file name sizes. */
    rec[1] = 150;
    write_file("c100/train.bin", rec, 2 * 3074, false);
    char f[PATH_MAX];
    P(f, "c100/train.bin");
    expect_fail(p, "label 150 out of range", f);
    write_file("c100/train.bin", rec, 3074 + 100, false);
    expect_fail(f, "not a positive multiple", f);
    write_file("c100/odd.bin", rec, 10, false);
    P(f, "c100/odd.bin");
    expect_fail(f, "cannot tell", f);
    rec[0] = 10;
    write_file("c10/test_batch.bin", rec, 3073, false);
    P(f, "c10/test_batch.bin");
    expect_fail(f, "label 10 out of range", f);
}

/* ---- ImageFolder ---- */

static void write_png(const char *rel, int w, int h, int ctype, const uint8_t *px, const png_color *pal, int npal)
{
    char p[PATH_MAX];
    P(p, rel);
    FILE *fp = fopen(p, "wb");
    assert_non_null(fp);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    assert_int_equal(setjmp(png_jmpbuf(png)), 0);
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, ctype, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(png, info, pal, npal);
    png_write_info(png, info);
    int ch = ctype == PNG_COLOR_TYPE_RGB ? 3 : ctype == PNG_COLOR_TYPE_RGBA ? 4 : ctype == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 1;
    for (int y = 0; y < h; y++) png_write_row(png, px + (size_t)y * w * ch);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(fp);
}

static void write_jpeg(const char *rel, int w, int h, uint8_t r, uint8_t g, uint8_t b)
{
    char p[PATH_MAX];
    P(p, rel);
    FILE *fp = fopen(p, "wb");
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, fp);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    uint8_t row[3 * 64];
    for (int x = 0; x < w; x++) { row[3 * x] = r; row[3 * x + 1] = g; row[3 * x + 2] = b; }
    while (c.next_scanline < c.image_height) { JSAMPROW rp = row; jpeg_write_scanlines(&c, &rp, 1); }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(fp);
}

static void test_image_folder(void **state)
{
    (void)state;
    mkdirs("folder");
    mkdirs("folder/b_cat");
    mkdirs("folder/a_dog");
    mkdirs("folder/a_dog/sub");
    uint8_t rgb[4 * 4 * 3], gray[16], rgba[16 * 4], pal_px[16];
    for (int i = 0; i < 48; i++) rgb[i] = (uint8_t)(i * 5);
    for (int i = 0; i < 16; i++) {
        gray[i] = (uint8_t)(i * 16);
        rgba[4 * i] = 10; rgba[4 * i + 1] = 20; rgba[4 * i + 2] = 30; rgba[4 * i + 3] = (uint8_t)(i * 17);
        pal_px[i] = (uint8_t)(i % 2);
    }
    png_color pal[2] = { { 255, 0, 0 }, { 0, 0, 255 } };
    write_png("folder/a_dog/1_rgb.png", 4, 4, PNG_COLOR_TYPE_RGB, rgb, NULL, 0);
    write_png("folder/a_dog/2_gray.PNG", 4, 4, PNG_COLOR_TYPE_GRAY, gray, NULL, 0);
    write_png("folder/a_dog/sub/3_pal.png", 4, 4, PNG_COLOR_TYPE_PALETTE, pal_px, pal, 2);
    write_png("folder/b_cat/x_rgba.png", 4, 4, PNG_COLOR_TYPE_RGBA, rgba, NULL, 0);
    write_jpeg("folder/b_cat/y.jpg", 4, 4, 200, 100, 50);
    write_file("folder/b_cat/notes.txt", "hello", 5, false); /* not an image: ignored */
    char p[PATH_MAX];
    P(p, "folder");
    data_info info;
    assert_int_equal(data_probe(&info, p, err, sizeof err), 0);
    assert_true(info.format == DATA_FMT_FOLDER && info.count == 5 && info.num_classes == 2 && info.height == 4 && info.channels == 3);
    data_set *ds;
    assert_int_equal(data_open(&ds, p, NULL, err, sizeof err), 0);
    assert_true(ds->n == 5 && ds->c == 3 && ds->h == 4 && ds->w == 4);
    assert_string_equal(ds->class_names[0], "a_dog");
    assert_string_equal(ds->class_names[1], "b_cat");
    int want_labels[5] = { 0, 0, 0, 1, 1 };
    for (int i = 0; i < 5; i++) assert_int_equal(ds->labels[i], want_labels[i]);
    const uint8_t *im;
    im = ds->pixels; /* RGB, planar now */
    for (int k = 0; k < 16; k++)
        for (int c = 0; c < 3; c++) assert_int_equal(im[c * 16 + k], rgb[3 * k + c]);
    im = ds->pixels + 48; /* gray replicated */
    for (int k = 0; k < 16; k++)
        for (int c = 0; c < 3; c++) assert_int_equal(im[c * 16 + k], gray[k]);
    im = ds->pixels + 96; /* palette */
    assert_true(im[0] == 255 && im[16] == 0 && im[32] == 0);
    assert_true(im[1] == 0 && im[17] == 0 && im[33] == 255);
    im = ds->pixels + 144; /* alpha dropped, not composited */
    for (int k = 0; k < 16; k++) assert_true(im[k] == 10 && im[16 + k] == 20 && im[32 + k] == 30);
    im = ds->pixels + 192; /* JPEG, lossy */
    assert_true(abs(im[0] - 200) <= 3 && abs(im[16] - 100) <= 3 && abs(im[32] - 50) <= 3);
    assert_true(ds->mean[0] > 0 && ds->std[0] > 0); /* computed from the data */
    data_free(ds);

    /* 2x2 gray: area averages of 2x2 blocks of the RGB image's luminance. */
    data_open_opts o = { .channels = 1, .height = 2, .width = 2, .limit = 2 };
    assert_int_equal(data_open(&ds, p, &o, err, sizeof err), 0);
    assert_int_equal(ds->pixels[4 + 3], (gray[10] + gray[11] + gray[14] + gray[15]) / 4);
    data_free(ds);

    /* Hostile: a truncated PNG, a truncated JPEG, an unsupported type, an empty class. */
    char f[PATH_MAX];
    P(f, "folder/b_cat/x_rgba.png");
    FILE *fp = fopen(f, "rb");
    uint8_t buf[4096];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    write_file("folder/b_cat/x_rgba.png", buf, n - 20, false);
    expect_fail(p, "bad PNG", f);
    write_file("folder/b_cat/x_rgba.png", buf, 30, false);
    expect_fail(p, "bad PNG", f);
    write_file("folder/b_cat/x_rgba.png", "not a png at all", 16, false);
    expect_fail(p, "neither a PNG nor a JPEG", f);
    unlink(f);
    P(f, "folder/b_cat/y.jpg");
    fp = fopen(f, "rb");
    n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    write_file("folder/b_cat/y.jpg", buf, n / 2, false);
    expect_fail(p, "JPEG", f);
    unlink(f);
    expect_fail(p, "has no PNG or JPEG images", "b_cat");
    write_file("folder/b_cat/z.bmp", "BM", 2, false);
    P(f, "folder/b_cat/z.bmp");
    expect_fail(p, "unsupported image type", f);
}

/* data_inspect: per-class counts, the size range, every image decoded (data_probe reads only the
 * first header, so a broken later image passes it and fails here); IDX under a memory cap. */
static void test_inspect(void **state)
{
    (void)state;
    mkdirs("insp");
    mkdirs("insp/a_dog");
    mkdirs("insp/b_cat");
    uint8_t gray[6 * 7];
    for (int i = 0; i < 42; i++) gray[i] = (uint8_t)(i * 6);
    write_png("insp/a_dog/1.png", 4, 4, PNG_COLOR_TYPE_GRAY, gray, NULL, 0);
    write_png("insp/a_dog/2.png", 6, 3, PNG_COLOR_TYPE_GRAY, gray, NULL, 0);
    write_png("insp/b_cat/1.png", 5, 7, PNG_COLOR_TYPE_GRAY, gray, NULL, 0);
    char p[PATH_MAX], f[PATH_MAX];
    P(p, "insp");
    data_report r;
    assert_int_equal(data_inspect(&r, p, 0, err, sizeof err), 0);
    assert_true(r.info.format == DATA_FMT_FOLDER && r.info.count == 3 && r.info.num_classes == 2);
    assert_string_equal(r.class_names[0], "a_dog");
    assert_string_equal(r.class_names[1], "b_cat");
    assert_true(r.class_counts[0] == 2 && r.class_counts[1] == 1);
    assert_true(r.min_w == 4 && r.min_h == 3 && r.max_w == 6 && r.max_h == 7);
    data_report_free(&r);
    write_file("insp/b_cat/1.png", "\x89PNG\r\n\x1a\n", 8, false);
    data_info info;
    assert_int_equal(data_probe(&info, p, err, sizeof err), 0);
    assert_true(data_inspect(&r, p, 0, err, sizeof err) < 0);
    P(f, "insp/b_cat/1.png");
    assert_non_null(strstr(err, f));
    assert_null(r.class_names);

    mkdirs("insp_idx");
    write_idx("insp_idx", "train", 30, 5, 4, true, 0);
    P(p, "insp_idx");
    assert_int_equal(data_inspect(&r, p, 0, err, sizeof err), 0);
    assert_true(r.info.format == DATA_FMT_IDX && r.info.count == 30 && r.info.num_classes == 3);
    assert_true(r.class_counts[0] == 10 && r.class_counts[1] == 10 && r.class_counts[2] == 10);
    assert_string_equal(r.class_names[2], "2");
    assert_true(r.min_w == 4 && r.max_h == 5);
    data_report_free(&r);
    assert_int_equal(data_inspect(&r, p, 29, err, sizeof err), -EFBIG); /* one byte per image: 30 over 29 */
    assert_int_equal(data_inspect(&r, p, 30, err, sizeof err), 0);
    data_report_free(&r);
    write_idx("insp_idx", "train", 30, 5, 4, true, 31); /* the header claims one more image than there is */
    assert_true(data_inspect(&r, p, 0, err, sizeof err) < 0);
    assert_non_null(strstr(err, "truncated"));
}

/* ---- subsets, splits ---- */

static data_set *synthetic(int n, int C, int c, int h, int w, uint64_t seed)
{
    data_set *ds = calloc(1, sizeof *ds);
    ds->n = n; ds->c = c; ds->h = h; ds->w = w; ds->num_classes = C;
    ds->pixels = malloc((size_t)n * c * h * w);
    ds->labels = malloc(sizeof *ds->labels * (size_t)n);
    ds->class_names = calloc((size_t)C, sizeof *ds->class_names);
    for (int k = 0; k < C; k++) { char b[16]; snprintf(b, sizeof b, "c%d", k); ds->class_names[k] = strdup(b); }
    rng_t r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < (size_t)n * c * h * w; i++) ds->pixels[i] = (uint8_t)rng_below(&r, 256);
    for (int i = 0; i < n; i++) ds->labels[i] = (i * i + i / 3) % C; /* uneven class sizes */
    for (int k = 0; k < 3; k++) { ds->mean[k] = 0.5f; ds->std[k] = 0.25f; }
    return ds;
}

static void test_subset_split(void **state)
{
    (void)state;
    data_set *ds = synthetic(300, 4, 1, 2, 2, 1);
    int cnt[4] = { 0 };
    for (int i = 0; i < ds->n; i++) cnt[ds->labels[i]]++;
    int a[300], b[300], na, nb;
    assert_int_equal(data_subset_per_class(a, &na, ds, NULL, 0, 7, 42, err, sizeof err), 0);
    assert_int_equal(na, 28);
    assert_int_equal(data_subset_per_class(b, &nb, ds, NULL, 0, 7, 42, err, sizeof err), 0);
    assert_memory_equal(a, b, sizeof(int) * 28);
    int per[4] = { 0 };
    for (int i = 0; i < na; i++) { per[ds->labels[a[i]]]++; if (i) assert_true(a[i] > a[i - 1]); }
    for (int c = 0; c < 4; c++) assert_int_equal(per[c], 7);
    assert_int_equal(data_subset_per_class(b, &nb, ds, NULL, 0, 7, 43, err, sizeof err), 0);
    assert_memory_not_equal(a, b, sizeof(int) * 28);
    int small = cnt[0] < cnt[1] ? 0 : 1;
    for (int c = 0; c < 4; c++) if (cnt[c] < cnt[small]) small = c;
    assert_int_equal(data_subset_per_class(b, &nb, ds, NULL, 0, cnt[small] + 1, 1, err, sizeof err), -EINVAL);
    char cn[32];
    snprintf(cn, sizeof cn, "\"c%d\"", small);
    assert_non_null(strstr(err, cn));

    int tr[300], va[300], ntr, nva, tr2[300], va2[300], ntr2, nva2;
    assert_int_equal(data_split(tr, &ntr, va, &nva, ds, NULL, 0, 0.2, 0, 5, err, sizeof err), 0);
    assert_int_equal(nva, 60);
    assert_int_equal(ntr, 240);
    int vper[4] = { 0 };
    for (int i = 0; i < nva; i++) vper[ds->labels[va[i]]]++;
    for (int c = 0; c < 4; c++) assert_true(abs(vper[c] * 5 - cnt[c]) <= 5); /* stratified to within one */
    char seen[300] = { 0 };
    for (int i = 0; i < nva; i++) seen[va[i]]++;
    for (int i = 0; i < ntr; i++) seen[tr[i]]++;
    for (int i = 0; i < 300; i++) assert_int_equal(seen[i], 1); /* a partition */
    assert_int_equal(data_split(tr2, &ntr2, va2, &nva2, ds, NULL, 0, 0.2, 0, 5, err, sizeof err), 0);
    assert_memory_equal(va, va2, sizeof(int) * 60);
    /* A count, then a few-label subset of the training part. */
    assert_int_equal(data_split(tr2, &ntr2, va2, &nva2, ds, NULL, 0, 0, 33, 5, err, sizeof err), 0);
    assert_int_equal(nva2, 33);
    assert_int_equal(data_subset_per_class(a, &na, ds, tr2, ntr2, 3, 9, err, sizeof err), 0);
    for (int i = 0; i < na; i++)
        for (int k = 0; k < nva2; k++) assert_int_not_equal(a[i], va2[k]);
    assert_int_equal(data_split(tr, &ntr, va, &nva, ds, NULL, 0, 0, 301, 5, err, sizeof err), -EINVAL);
    data_free(ds);
}

/* ---- augmentation ---- */

static void test_augment(void **state)
{
    (void)state;
    data_set *ds = synthetic(1, 1, 1, 4, 4, 2);
    for (int i = 0; i < 16; i++) ds->pixels[i] = (uint8_t)(i * 10 + 5);
    data_aug a;
    data_aug_default(&a, ds, false);
    a.mean[0] = 0;
    a.std[0] = 1;
    float out[16];
    rng_t r;
    rng_seed(&r, 1);
    data_augment(out, ds, 0, &a, &r);
    for (int i = 0; i < 16; i++) assert_true(fabsf(out[i] - ds->pixels[i] / 255.0f) < 1e-6f);
    a.flip_p = 1;
    data_augment(out, ds, 0, &a, &r);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) assert_true(fabsf(out[y * 4 + x] - ds->pixels[y * 4 + 3 - x] / 255.0f) < 1e-6f);
    /* Pad crop: every output is the image shifted by some (dy, dx) in [-2, 2] with zeros outside;
     * over many draws all 25 shifts appear, flipped and not. */
    a.crop = DATA_CROP_PAD;
    a.pad = 2;
    a.flip_p = 0.5f;
    int hits[2][5][5] = { { { 0 } } };
    for (int t = 0; t < 2000; t++) {
        data_augment(out, ds, 0, &a, &r);
        int found = 0;
        for (int f = 0; f < 2 && !found; f++)
            for (int dy = -2; dy <= 2 && !found; dy++)
                for (int dx = -2; dx <= 2 && !found; dx++) {
                    bool ok = true;
                    for (int y = 0; y < 4 && ok; y++)
                        for (int x = 0; x < 4 && ok; x++) {
                            int xx = f ? 3 - x : x, sy = y + dy, sx = xx + dx;
                            float want = sy >= 0 && sy < 4 && sx >= 0 && sx < 4 ? ds->pixels[sy * 4 + sx] / 255.0f : 0;
                            ok = fabsf(out[y * 4 + x] - want) < 1e-6f;
                        }
                    if (ok) { hits[f][dy + 2][dx + 2]++; found = 1; }
                }
        assert_true(found);
    }
    for (int f = 0; f < 2; f++)
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 5; j++) assert_true(hits[f][i][j] > 0);
    /* Resized crop of the whole image (scale 1, ratio 1) is the identity; any crop stays in range. */
    a.crop = DATA_CROP_RESIZED;
    a.scale_min = a.scale_max = 1;
    a.ratio_min = a.ratio_max = 1;
    a.flip_p = 0;
    data_augment(out, ds, 0, &a, &r);
    for (int i = 0; i < 16; i++) assert_true(fabsf(out[i] - ds->pixels[i] / 255.0f) < 1e-5f);
    a.scale_min = 0.08f;
    a.ratio_min = 0.75f;
    a.ratio_max = 4.0f / 3;
    for (int t = 0; t < 500; t++) {
        data_augment(out, ds, 0, &a, &r);
        for (int i = 0; i < 16; i++) assert_true(out[i] >= 5 / 255.0f - 1e-6f && out[i] <= 155 / 255.0f + 1e-6f);
    }
    /* Normalisation uses mean/std. */
    a = (data_aug){ .crop = DATA_CROP_NONE, .mean = { 0.5f }, .std = { 0.25f } };
    data_augment(out, ds, 0, &a, &r);
    assert_true(fabsf(out[3] - (35 / 255.0f - 0.5f) / 0.25f) < 1e-5f);
    data_free(ds);
}

/* ---- loader ---- */

typedef struct run { float *x, *x2; int32_t *y, *ids; int n[64]; int64_t e[64], b[64]; int nb; } run;

static void collect(run *out, const data_set *ds, data_loader_opts o, int nbatches, int64_t e0, int64_t b0)
{
    data_loader *l;
    assert_int_equal(data_loader_new(&l, &o, err, sizeof err), 0);
    if (e0 || b0) assert_int_equal(data_loader_seek(l, e0, b0), 0);
    size_t xf = (size_t)o.batch * ds->c * ds->h * ds->w;
    out->x = calloc(xf * (size_t)nbatches, sizeof(float));
    out->x2 = calloc(xf * (size_t)nbatches, sizeof(float));
    out->y = calloc((size_t)o.batch * nbatches, sizeof(int32_t));
    out->ids = calloc((size_t)o.batch * nbatches, sizeof(int32_t));
    out->nb = nbatches;
    for (int i = 0; i < nbatches; i++) {
        data_batch b;
        assert_int_equal(data_loader_next(l, &b), 0);
        out->n[i] = b.n;
        out->e[i] = b.epoch;
        out->b[i] = b.index;
        size_t per = (size_t)ds->c * ds->h * ds->w;
        memcpy(out->x + xf * i, b.x, per * b.n * sizeof(float));
        if (b.x2) memcpy(out->x2 + xf * i, b.x2, per * b.n * sizeof(float));
        memcpy(out->y + o.batch * i, b.y, sizeof(int32_t) * b.n);
        memcpy(out->ids + o.batch * i, b.ids, sizeof(int32_t) * b.n);
        for (int k = 0; k < b.n; k++) assert_int_equal(b.y[k], ds->labels[b.ids[k]]);
    }
    data_loader_free(l);
}

static void run_free(run *r) { free(r->x); free(r->x2); free(r->y); free(r->ids); }

static void test_loader(void **state)
{
    (void)state;
    data_set *ds = synthetic(37, 3, 3, 8, 8, 3);
    int subset[30];
    for (int i = 0; i < 30; i++) subset[i] = i + 7 * (i % 2 == 0); /* with repeats: a multiset is allowed */
    data_loader_opts o = { .ds = ds, .indices = subset, .nindices = 30, .batch = 4, .shuffle = true,
                           .drop_last = true, .augment = true, .views = 2, .layout = DATA_NCHW, .seed = 77 };
    data_aug_default(&o.aug, ds, true);
    o.aug.flip_p = 0.5f;
    const int NB = 7 * 3; /* 3 epochs of 7 */
    size_t xf = (size_t)4 * 3 * 64;
    run ref, r2;
    o.prefetch = 0;
    collect(&ref, ds, o, NB, 0, 0);
    for (int i = 0; i < NB; i++) {
        assert_int_equal(ref.n[i], 4);
        assert_int_equal(ref.e[i], i / 7);
        assert_int_equal(ref.b[i], i % 7);
    }
    /* Each epoch is a permutation of the subset (28 of the 30 used with drop_last), and epochs differ. */
    assert_memory_not_equal(ref.ids, ref.ids + 28, sizeof(int32_t) * 28);
    assert_memory_not_equal(ref.x, ref.x2, sizeof(float) * xf); /* two views differ */
    for (int depth = 1; depth <= 4; depth += 3) {
        o.prefetch = depth;
        collect(&r2, ds, o, NB, 0, 0);
        assert_memory_equal(ref.x, r2.x, sizeof(float) * xf * NB);
        assert_memory_equal(ref.x2, r2.x2, sizeof(float) * xf * NB);
        assert_memory_equal(ref.ids, r2.ids, sizeof(int32_t) * 4 * NB);
        run_free(&r2);
    }
    /* Resume mid-epoch: (1, 3) onwards equals the uninterrupted run. */
    o.prefetch = 2;
    collect(&r2, ds, o, NB - 10, 1, 3);
    assert_memory_equal(ref.x + xf * 10, r2.x, sizeof(float) * xf * (NB - 10));
    assert_memory_equal(ref.ids + 40, r2.ids, sizeof(int32_t) * 4 * (NB - 10));
    assert_int_equal(r2.e[0], 1);
    assert_int_equal(r2.b[0], 3);
    run_free(&r2);
    /* CNHW layout holds the same numbers transposed. */
    o.layout = DATA_CNHW;
    collect(&r2, ds, o, 2, 0, 0);
    for (int k = 0; k < 4; k++)
        for (int c = 0; c < 3; c++)
            assert_memory_equal(ref.x + (size_t)k * 192 + c * 64, r2.x + (size_t)c * 4 * 64 + k * 64, 64 * sizeof(float));
    run_free(&r2);
    run_free(&ref);

    /* Evaluation: no shuffle, no augmentation, last batch short, every image once in order. */
    data_loader_opts ev = { .ds = ds, .batch = 10, .views = 1, .prefetch = 2, .seed = 1 };
    data_aug_default(&ev.aug, ds, false);
    ev.augment = false;
    data_loader *l;
    assert_int_equal(data_loader_new(&l, &ev, err, sizeof err), 0);
    assert_int_equal(data_loader_batches_per_epoch(l), 4);
    assert_true(data_loader_bytes(l) > 3 * 10 * 192 * sizeof(float));
    for (int bi = 0; bi < 4; bi++) {
        data_batch b;
        data_loader_next(l, &b);
        assert_int_equal(b.n, bi < 3 ? 10 : 7);
        assert_null(b.x2);
        for (int k = 0; k < b.n; k++) {
            int id = bi * 10 + k;
            assert_int_equal(b.ids[k], id);
            for (int j = 0; j < 192; j++)
                assert_true(fabsf(b.x[k * 192 + j] - (ds->pixels[id * 192 + j] / 255.0f - 0.5f) / 0.25f) < 1e-5f);
        }
    }
    assert_int_equal(data_loader_seek(l, 0, 4), -EINVAL);
    data_loader_free(l); /* with batches still prefetched: must join cleanly */
    /* Bad options. */
    ev.batch = 0;
    assert_int_equal(data_loader_new(&l, &ev, err, sizeof err), -EINVAL);
    ev.batch = 38;
    ev.drop_last = true;
    assert_int_equal(data_loader_new(&l, &ev, err, sizeof err), -EINVAL);
    data_free(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fashion_mnist),
        cmocka_unit_test(test_idx),
        cmocka_unit_test(test_idx_hostile),
        cmocka_unit_test(test_cifar),
        cmocka_unit_test(test_image_folder),
        cmocka_unit_test(test_inspect),
        cmocka_unit_test(test_subset_split),
        cmocka_unit_test(test_augment),
        cmocka_unit_test(test_loader),
    };
    return cmocka_run_group_tests_name("data", tests, setup, teardown);
}
