/* common/hist.c — see hist.h. */
#include "common/hist.h"
#include <string.h>

void hist_init(hist *h, const double *le, int n)
{
    memset(h, 0, sizeof *h);
    h->le = le;
    h->n = n > HIST_MAX_BUCKETS ? HIST_MAX_BUCKETS : n;
}

void hist_observe(hist *h, double v)
{
    int i = 0;
    while (i < h->n && v > h->le[i]) i++;
    h->counts[i]++;
    h->count++;
    h->sum += v;
}
