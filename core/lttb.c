/* core/lttb.c — see lttb.h. */
#include "core/lttb.h"
#include <math.h>

size_t lttb(const double *x, const double *y, size_t n, size_t threshold, size_t *keep)
{
    if (threshold >= n || threshold < 3) {
        for (size_t i = 0; i < n; i++) keep[i] = i;
        return n;
    }
    size_t out = 0, a = 0; /* a: the point kept last */
    keep[out++] = 0;
    double every = (double)(n - 2) / (double)(threshold - 2);
    for (size_t b = 0; b < threshold - 2; b++) {
        /* this bucket: [lo, hi); the next one: [nlo, nhi) (the last point for the last bucket) */
        size_t lo = (size_t)floor(b * every) + 1, hi = (size_t)floor((b + 1) * every) + 1;
        size_t nlo = hi, nhi = (size_t)floor((b + 2) * every) + 1;
        if (hi > n - 1) hi = n - 1;
        if (nhi > n) nhi = n;
        if (nlo >= nhi) { nlo = n - 1; nhi = n; }
        double mx = 0, my = 0;
        for (size_t i = nlo; i < nhi; i++) { mx += x[i]; my += y[i]; }
        mx /= (double)(nhi - nlo);
        my /= (double)(nhi - nlo);
        double best = -1;
        size_t pick = lo;
        for (size_t i = lo; i < hi; i++) {
            double area = fabs((x[a] - mx) * (y[i] - y[a]) - (x[a] - x[i]) * (my - y[a]));
            if (area > best) { best = area; pick = i; }
        }
        keep[out++] = pick;
        a = pick;
    }
    keep[out++] = n - 1;
    return out;
}
