/* trainer/data_int.h — internals shared by the trainer/data_*.c files (not part of the API).
 * Name resolution, per-format readers and the pixel conversion used while loading; all of it
 * runs on the thread calling data_probe/data_open. Errors as in data.h ("<file>: <problem>").
 */
#ifndef CT_DATA_INT_H
#define CT_DATA_INT_H
#include <limits.h>
#include "trainer/data.h"
#include "common/err.h"

#define DATA__MAX_FILES 16       /* CIFAR batch files in one directory */
#define DATA__MAX_COUNT 50000000 /* images in one set */


typedef struct data__src {
    enum data_format fmt;
    char images[PATH_MAX], labels[PATH_MAX];        /* IDX */
    int nfiles;
    char files[DATA__MAX_FILES][PATH_MAX];          /* CIFAR batches, in order */
    char root[PATH_MAX];                            /* ImageFolder */
    const char *const *names;                       /* built-in class names, or NULL */
    bool known_stats;
    float mean[3], std[3];                          /* built-in constants (gray: [0]) */
} data__src;

int data__resolve(data__src *s, const char *name, char *err, size_t errlen);

/* Load-time scratch for conversion (grown as needed; never used after data_open). */
typedef struct data__scratch {
    uint8_t *planes;  size_t planes_cap;  /* native size, target channels */
    float *tmp;       size_t tmp_cap;     /* resize intermediate */
    float *wx, *wy;   int *fx, *fy;       /* resize weight tables */
    size_t wcap;
    uint8_t *img;     size_t img_cap;     /* decoded image */
} data__scratch;
void data__scratch_free(data__scratch *s);

/* Store image i of ds from a native image: pixel (c, y, x) is src[c*cs + y*ys + x*xs], sc channels
 * (1 or 3) of sh x sw. Converts channels, resizes to ds->h x ds->w. */
int data__store(data_set *ds, int i, const uint8_t *src, int sc, int sh, int sw, size_t cs, size_t ys,
                size_t xs, data__scratch *s);

/* ImageFolder (data_image.c). */
typedef struct data__folder {
    int nclasses;
    char **classes;   /* sorted names */
    int nfiles;
    char **files;     /* full paths, grouped by class in torchvision's order */
    int32_t *labels;
} data__folder;
int  data__folder_scan(data__folder *f, const char *root, char *err, size_t errlen);
void data__folder_free(data__folder *f);
/* Header only: OUT channels after RGB conversion (always 3, as torchvision), h, w. */
int  data__image_size(const char *path, int *h, int *w, char *err, size_t errlen);
/* Decode to interleaved RGB (3 channels) in s->img. OUT: *h, *w. */
int  data__image_decode(const char *path, int *h, int *w, data__scratch *s, char *err, size_t errlen);

#endif
