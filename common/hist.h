/* common/hist.h — a fixed-bucket histogram (latencies, commit times): counted where the thing happens,
 * rendered elsewhere (api/prom.c writes it as Prometheus text). Not thread-safe: each histogram
 * belongs to one thread (the loop). No allocation. */
#ifndef CT_HIST_H
#define CT_HIST_H

#define HIST_MAX_BUCKETS 16
typedef struct hist {
    const double *le;               /* upper bounds, increasing (static) */
    int n;                          /* how many (<= HIST_MAX_BUCKETS); +Inf is implicit */
    unsigned long long counts[HIST_MAX_BUCKETS + 1]; /* per bucket, not cumulative; [n] = above the last */
    unsigned long long count;
    double sum;
} hist;

void hist_init(hist *h, const double *le, int n);
void hist_observe(hist *h, double v);

#endif
