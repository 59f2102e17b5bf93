/* trainer/data_subset.c — seeded labelled subsets (N per class) and stratified train/validation
 * splits as sorted index lists, plus data_rng, the seed derivation every data stream uses.
 * Caller's thread at job setup; errors name the class or the bad argument.
 */
#include "trainer/data_int.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL; /* splitmix64's finaliser: nearby inputs give unrelated outputs */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void data_rng(rng_t *r, uint64_t seed, uint64_t stream, uint64_t a, uint64_t b)
{
    uint64_t h = mix64(seed);
    h = mix64(h ^ stream);
    h = mix64(h ^ a);
    h = mix64(h ^ b);
    rng_seed(r, h);
}

enum { STREAM_SUBSET = 2, STREAM_SPLIT = 3 };

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Group `from` by class: OUT start[c]..start[c+1] in byidx (original order kept). */
static int group(int **byidx, int **start, const data_set *ds, const int *from, int nfrom, char *err, size_t errlen)
{
    *byidx = malloc(sizeof **byidx * ((size_t)nfrom + 1));
    *start = calloc((size_t)ds->num_classes + 1, sizeof **start);
    if (!*byidx || !*start) return err_set_path(err, errlen, -ENOMEM, "subset", "out of memory");
    for (int i = 0; i < nfrom; i++) {
        int id = from ? from[i] : i;
        if (id < 0 || id >= ds->n) return err_set_path(err, errlen, -EINVAL, "subset", "index %d out of range (%d images)", id, ds->n);
        (*start)[ds->labels[id] + 1]++;
    }
    for (int c = 0; c < ds->num_classes; c++) (*start)[c + 1] += (*start)[c];
    int *fill = malloc(sizeof *fill * ((size_t)ds->num_classes + 1));
    if (!fill) return err_set_path(err, errlen, -ENOMEM, "subset", "out of memory");
    memcpy(fill, *start, sizeof *fill * (size_t)ds->num_classes);
    for (int i = 0; i < nfrom; i++) {
        int id = from ? from[i] : i;
        (*byidx)[fill[ds->labels[id]]++] = id;
    }
    free(fill);
    return 0;
}

/* Move k uniformly chosen elements of a[0..n) to the front (partial Fisher-Yates). */
static void choose(rng_t *r, int *a, int n, int k)
{
    for (int i = 0; i < k && i < n - 1; i++) {
        int j = i + (int)rng_below(r, (uint32_t)(n - i));
        int t = a[i]; a[i] = a[j]; a[j] = t;
    }
}

int data_subset_per_class(int *idx, int *nout, const data_set *ds, const int *from, int nfrom,
                          int per_class, uint64_t seed, char *err, size_t errlen)
{
    *nout = 0;
    if (!from) nfrom = ds->n;
    if (per_class < 1 || nfrom < 0) return err_set_path(err, errlen, -EINVAL, "subset", "per-class count must be >= 1");
    int *byidx = NULL, *start = NULL;
    int rc = group(&byidx, &start, ds, from, nfrom, err, errlen);
    if (rc < 0) goto done;
    rng_t r;
    data_rng(&r, seed, STREAM_SUBSET, (uint64_t)per_class, 0);
    for (int c = 0; c < ds->num_classes; c++) {
        int n = start[c + 1] - start[c];
        if (n < per_class) {
            rc = err_set_path(err, errlen, -EINVAL, "subset", "class \"%s\" has %d images, %d requested", ds->class_names[c], n, per_class);
            goto done;
        }
        choose(&r, byidx + start[c], n, per_class);
        memcpy(idx + *nout, byidx + start[c], sizeof *idx * (size_t)per_class);
        *nout += per_class;
    }
    qsort(idx, (size_t)*nout, sizeof *idx, cmp_int);
done:
    free(byidx);
    free(start);
    return rc;
}

int data_split(int *train, int *ntrain, int *val, int *nval, const data_set *ds, const int *from,
               int nfrom, double val_fraction, int val_count, uint64_t seed, char *err, size_t errlen)
{
    *ntrain = *nval = 0;
    if (!from) nfrom = ds->n;
    long long k = val_count > 0 ? val_count : llround(val_fraction * nfrom);
    if (val_count < 0 || !(val_fraction >= 0 && val_fraction <= 1) || k > nfrom)
        return err_set_path(err, errlen, -EINVAL, "split", "validation size %lld (fraction %g) does not fit %d images", k, val_fraction, nfrom);
    int *byidx = NULL, *start = NULL, *quota = NULL;
    double *frac = NULL;
    int rc = group(&byidx, &start, ds, from, nfrom, err, errlen);
    if (rc < 0) goto done;
    int C = ds->num_classes;
    quota = malloc(sizeof *quota * (size_t)C);
    frac = malloc(sizeof *frac * (size_t)C);
    if (!quota || !frac) { rc = err_set_path(err, errlen, -ENOMEM, "split", "out of memory"); goto done; }
    /* Largest remainder: each class gets floor(k * n_c / n), the rest go to the largest fractions. */
    long long given = 0;
    for (int c = 0; c < C; c++) {
        long long nc = start[c + 1] - start[c];
        quota[c] = nfrom ? (int)(k * nc / nfrom) : 0;
        frac[c] = nfrom ? (double)(k * nc % nfrom) / nfrom : 0;
        given += quota[c];
    }
    while (given < k) {
        int best = -1;
        for (int c = 0; c < C; c++)
            if (quota[c] < start[c + 1] - start[c] && (best < 0 || frac[c] > frac[best])) best = c;
        if (best < 0) break;
        quota[best]++;
        frac[best] = -1;
        given++;
    }
    rng_t r;
    data_rng(&r, seed, STREAM_SPLIT, (uint64_t)k, 0);
    for (int c = 0; c < C; c++) {
        int n = start[c + 1] - start[c];
        int *a = byidx + start[c];
        choose(&r, a, n, quota[c]);
        memcpy(val + *nval, a, sizeof *val * (size_t)quota[c]);
        *nval += quota[c];
        memcpy(train + *ntrain, a + quota[c], sizeof *train * (size_t)(n - quota[c]));
        *ntrain += n - quota[c];
    }
    qsort(val, (size_t)*nval, sizeof *val, cmp_int);
    qsort(train, (size_t)*ntrain, sizeof *train, cmp_int);
done:
    free(byidx);
    free(start);
    free(quota);
    free(frac);
    return rc;
}
