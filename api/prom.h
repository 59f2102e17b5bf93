/* api/prom.h — the Prometheus text exposition format, by hand (no client library): a growable text
 * buffer and fixed-bucket histograms. Used by api/api.c (HTTP metrics) and daemon/service.c (jobs,
 * queue, database). Not thread-safe: each histogram belongs to the loop thread.
 * Errors: a failed allocation sets b->failed and later appends do nothing (the scrape answers 500). */
#ifndef CT_PROM_H
#define CT_PROM_H
#include <stddef.h>

typedef struct prom_buf {
    char *text;                     /* (heap) NUL-terminated */
    size_t len, cap;
    int failed;
} prom_buf;

void prom_printf(prom_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void prom_free(prom_buf *b);        /* NULL-safe; leaves b empty */
/* A label value with \, " and newlines escaped, appended as-is (no quotes). */
void prom_escaped(prom_buf *b, const char *value);

#define PROM_MAX_BUCKETS 16
typedef struct prom_hist {
    const double *le;               /* upper bounds, increasing (static) */
    int n;                          /* how many (<= PROM_MAX_BUCKETS); +Inf is implicit */
    unsigned long long counts[PROM_MAX_BUCKETS + 1]; /* per bucket, not cumulative; [n] = above the last */
    unsigned long long count;
    double sum;
} prom_hist;

void prom_hist_init(prom_hist *h, const double *le, int n);
void prom_hist_observe(prom_hist *h, double v);
/* name_bucket{labels,le="..."} cumulative lines, then name_sum and name_count. labels: "" or
 * `k="v",k2="v2"` (already escaped). The # TYPE line is the caller's (once per metric name). */
void prom_hist_write(prom_buf *b, const char *name, const char *labels, const prom_hist *h);

#endif
