/* cli/fmt.h — coretune's human output: aligned tables, local ISO times, durations, and tolerant
 * getters for the API's JSON (a missing or null field reads as "-", so newer daemons' replies with
 * fields we do not know, or without ones we expect, still print). Single-threaded; never fails loudly:
 * out of memory drops a row rather than the program. */
#ifndef CT_CLI_FMT_H
#define CT_CLI_FMT_H
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

typedef struct cli_table cli_table;

/* A table of ncols columns (at most 16) with these headers (copied). NULL when out of memory. */
cli_table *cli_table_new(int ncols, const char *const *headers);
/* Adds a row of ncols cells (copied; NULL cells print as "-"). */
void cli_table_add(cli_table *t, const char *const *cells);
/* Prints the headers and rows, columns padded to their widest cell, two spaces apart. */
void cli_table_print(const cli_table *t, FILE *f);
void cli_table_free(cli_table *t);

/* Unix seconds (a JSON integer or real) as local ISO 8601 "2024-11-28T09:46:40+01:00"; "-" when null. */
const char *cli_fmt_time(char *buf, size_t n, const json_t *unix_seconds);
/* Seconds as "45s", "3m12s", "2h05m", "3d04h"; "-" when negative or not finite. */
const char *cli_fmt_duration(char *buf, size_t n, double seconds);
/* Any JSON scalar as text: strings as they are, numbers with %g-like precision, null/missing as "-". */
const char *cli_fmt_value(char *buf, size_t n, const json_t *v);

/* o[key] as a string, or NULL when missing or not a string. */
const char *cli_jstr(const json_t *o, const char *key);
/* o[key] as a number (integer or real); dflt when missing or not a number. */
double cli_jnum(const json_t *o, const char *key, double dflt);

/* Prints v as JSON on stdout (indented when stdout is a terminal, one line otherwise). */
void cli_print_json(const json_t *v);
/* Prints a reply body unchanged on stdout (adds the final newline if it lacks one). */
void cli_print_raw(const char *body, size_t len);

#endif
