/* cli/pages.h — the API's paged lists (GET PATH?limit=N[&after=LAST_ID], answered with
 * {"data": [...], "has_more": bool}), read page after page with one callback per item: the lists of
 * jobs and sweeps (cli/resource.h) and their events. Single-threaded; failures print one line to
 * stderr and return an exit code (cli.h). */
#ifndef CT_CLI_PAGES_H
#define CT_CLI_PAGES_H
#include "cli/client.h"
#include <jansson.h>

typedef struct cli_pages {
    const char *path;      /* the list, escaped, without a query ("/v1/fine_tuning/jobs") */
    long limit;            /* items a page */
    int all;               /* every page; else the first one only */
    const char *what;      /* names the list in messages (cli_call) */
    const char *more_hint; /* said on stderr when only the first page was read and more exist (not
                            * with --json); or NULL */
    void (*item)(void *ud, const json_t *item); /* each item of each page, in order (not with --json) */
    void *ud;
} cli_pages;

/* Reads the pages of p. With g->json, prints the API's JSON on stdout instead of calling p->item: the
 * first page unchanged, or with p->all every page's data in one envelope (has_more false, last_id the
 * last item's id). Returns CLI_OK, or cli_call's exit code (items already passed stay passed; no JSON
 * printed). */
int cli_pages_read(cli_conn *c, const cli_global *g, const cli_pages *p);

#endif
