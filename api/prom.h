/* api/prom.h — the Prometheus text exposition format, by hand (no client library): a growable text
 * buffer, and histograms (common/hist.h) written as Prometheus histograms. api/ only: the core hands
 * it typed counters (core/core.h svc_stats). Loop thread.
 * Errors: a failed allocation sets b->failed and later appends do nothing (the scrape answers 500). */
#ifndef CT_PROM_H
#define CT_PROM_H
#include "common/hist.h"
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

/* name_bucket{labels,le="..."} cumulative lines, then name_sum and name_count. labels: "" or
 * `k="v",k2="v2"` (already escaped). The # TYPE line is the caller's (once per metric name). */
void prom_hist_write(prom_buf *b, const char *name, const char *labels, const hist *h);

#endif
