/* core/lttb.h — Largest-Triangle-Three-Buckets downsampling of a metric series (Steinarsson 2013):
 * keeps the first and last points and, from each of threshold-2 equal buckets in between, the point
 * that makes the largest triangle with the point kept before it and the mean of the next bucket, so
 * spikes and the curve's shape survive. Pure; any thread; no allocation. */
#ifndef CT_LTTB_H
#define CT_LTTB_H
#include <stddef.h>

/* Writes the indices (increasing) of the kept points of (x[i], y[i]), i < n, to OUT keep (room for
 * min(n, threshold) entries) and returns how many. threshold < 3 or >= n keeps everything (up to n). */
size_t lttb(const double *x, const double *y, size_t n, size_t threshold, size_t *keep);

#endif
