/* api/prom.c — Prometheus text format helpers (see prom.h). Loop thread. */
#include "api/prom.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(prom_buf *b, size_t more)
{
    if (b->failed) return -1;
    if (b->len + more + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1) cap *= 2;
    char *t = realloc(b->text, cap);
    if (!t) { b->failed = 1; return -1; }
    b->text = t;
    b->cap = cap;
    return 0;
}

void prom_printf(prom_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[512];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0 || reserve(b, (size_t)n)) return;
    if ((size_t)n < sizeof small) memcpy(b->text + b->len, small, (size_t)n + 1);
    else { va_start(ap, fmt); vsnprintf(b->text + b->len, (size_t)n + 1, fmt, ap); va_end(ap); }
    b->len += (size_t)n;
}

void prom_escaped(prom_buf *b, const char *v)
{
    for (; v && *v; v++) {
        if (*v == '\\') prom_printf(b, "\\\\");
        else if (*v == '"') prom_printf(b, "\\\"");
        else if (*v == '\n') prom_printf(b, "\\n");
        else prom_printf(b, "%c", *v);
    }
}

void prom_free(prom_buf *b)
{
    if (!b) return;
    free(b->text);
    memset(b, 0, sizeof *b);
}

void prom_hist_write(prom_buf *b, const char *name, const char *labels, const hist *h)
{
    const char *sep = labels && *labels ? "," : "";
    unsigned long long cum = 0;
    for (int i = 0; i < h->n; i++) {
        cum += h->counts[i];
        prom_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels ? labels : "", sep, h->le[i], cum);
    }
    prom_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels ? labels : "", sep, h->count);
    if (labels && *labels) {
        prom_printf(b, "%s_sum{%s} %.9g\n", name, labels, h->sum);
        prom_printf(b, "%s_count{%s} %llu\n", name, labels, h->count);
    } else {
        prom_printf(b, "%s_sum %.9g\n%s_count %llu\n", name, h->sum, name, h->count);
    }
}
