/* cli/fmt.c — tables, times and tolerant JSON getters for coretune's human output (see fmt.h).
 * Single-threaded; allocation failures drop output rather than abort. */
#include "cli/fmt.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_COLS 16

struct cli_table {
    int ncols;
    size_t nrows, cap;
    char **cells; /* (nrows + 1) x ncols, row 0 the headers */
};

/* Display width of UTF-8 text: code points (our cells are ids, names, numbers and times). */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) w++;
    return w;
}

static int add_row(cli_table *t, const char *const *cells)
{
    if (t->nrows + 1 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **c = realloc(t->cells, cap * (size_t)t->ncols * sizeof *c);
        if (!c) return -1;
        t->cells = c;
        t->cap = cap;
    }
    char **row = t->cells + t->nrows * (size_t)t->ncols;
    for (int i = 0; i < t->ncols; i++) {
        const char *s = cells[i] && cells[i][0] ? cells[i] : "-";
        row[i] = strdup(s);
        /* control characters would break the alignment (and the terminal): show them as '?' */
        for (char *p = row[i]; p && *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    }
    t->nrows++;
    return 0;
}

cli_table *cli_table_new(int ncols, const char *const *headers)
{
    if (ncols < 1 || ncols > MAX_COLS) return NULL;
    cli_table *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ncols = ncols;
    if (add_row(t, headers) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

void cli_table_add(cli_table *t, const char *const *cells)
{
    if (t) (void)add_row(t, cells);
}

void cli_table_print(const cli_table *t, FILE *f)
{
    if (!t) return;
    size_t w[MAX_COLS] = {0};
    for (size_t r = 0; r < t->nrows; r++)
        for (int i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * (size_t)t->ncols + (size_t)i];
            size_t cw = s ? width(s) : 1;
            if (cw > w[i]) w[i] = cw;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (int i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * (size_t)t->ncols + (size_t)i];
            if (!s) s = "-";
            fputs(s, f);
            if (i + 1 < t->ncols)
                for (size_t k = width(s); k < w[i] + 2; k++) fputc(' ', f);
        }
        fputc('\n', f);
    }
}

void cli_table_free(cli_table *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->nrows * (size_t)t->ncols; i++) free(t->cells[i]);
    free(t->cells);
    free(t);
}

const char *cli_fmt_time(char *buf, size_t n, const json_t *v)
{
    if (!json_is_number(v)) {
        snprintf(buf, n, "-");
        return buf;
    }
    time_t t = (time_t)json_number_value(v);
    struct tm tm;
    char off[8];
    if (!localtime_r(&t, &tm) || strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm) == 0 ||
        strftime(off, sizeof off, "%z", &tm) != 5) {
        snprintf(buf, n, "%lld", (long long)t);
        return buf;
    }
    size_t l = strlen(buf);
    snprintf(buf + l, n - l, "%.3s:%.2s", off, off + 3); /* +0100 -> +01:00 */
    return buf;
}

const char *cli_fmt_duration(char *buf, size_t n, double s)
{
    if (!isfinite(s) || s < 0 || s > 1e9) {
        snprintf(buf, n, "-");
        return buf;
    }
    long long t = (long long)(s + 0.5);
    if (t < 60) snprintf(buf, n, "%llds", t);
    else if (t < 3600) snprintf(buf, n, "%lldm%02llds", t / 60, t % 60);
    else if (t < 86400) snprintf(buf, n, "%lldh%02lldm", t / 3600, t % 3600 / 60);
    else snprintf(buf, n, "%lldd%02lldh", t / 86400, t % 86400 / 3600);
    return buf;
}

const char *cli_fmt_value(char *buf, size_t n, const json_t *v)
{
    if (!v) {
        snprintf(buf, n, "-");
        return buf;
    }
    switch (json_typeof(v)) {
    case JSON_STRING: snprintf(buf, n, "%s", json_string_value(v)); break;
    case JSON_INTEGER: snprintf(buf, n, "%lld", (long long)json_integer_value(v)); break;
    case JSON_REAL: snprintf(buf, n, "%.6g", json_real_value(v)); break;
    case JSON_TRUE: snprintf(buf, n, "true"); break;
    case JSON_FALSE: snprintf(buf, n, "false"); break;
    case JSON_OBJECT:
    case JSON_ARRAY: {
        char *s = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(6));
        snprintf(buf, n, "%s", s ? s : "?");
        free(s);
        break;
    }
    default: snprintf(buf, n, "-"); break;
    }
    return buf;
}

const char *cli_jstr(const json_t *o, const char *key) { return json_string_value(json_object_get(o, key)); }

double cli_jnum(const json_t *o, const char *key, double dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

void cli_print_json(const json_t *v)
{
    size_t flags = JSON_REAL_PRECISION(16) | (isatty(STDOUT_FILENO) ? JSON_INDENT(2) : JSON_COMPACT);
    json_dumpf(v, stdout, flags);
    fputc('\n', stdout);
    fflush(stdout);
}

void cli_print_raw(const char *body, size_t len)
{
    fwrite(body, 1, len, stdout);
    if (!len || body[len - 1] != '\n') fputc('\n', stdout);
    fflush(stdout);
}
