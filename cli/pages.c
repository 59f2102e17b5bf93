/* cli/pages.c — reading the API's paged lists (see pages.h). A page's last
 * item's id is the next page's `after`; the walk stops at the first page without has_more, or with no
 * items or no id to go on from. Single-threaded; messages on stderr. */
#include "cli/pages.h"
#include "cli/fmt.h"
#include <stdio.h>

int cli_pages_read(cli_conn *c, const cli_global *g, const cli_pages *p)
{
    json_t *merged = NULL; /* --all --json: every page's data in one envelope */
    char after[200] = "", path[1400];
    int rc = CLI_OK;
    for (;;) {
        char esc[400] = "";
        if (after[0] && cli_escape(esc, sizeof esc, after) != 0) break;
        snprintf(path, sizeof path, "%s?limit=%ld%s%s", p->path, p->limit, esc[0] ? "&after=" : "", esc);
        cli_resp r;
        if ((rc = cli_call(c, "GET", path, NULL, &r, p->what)) != CLI_OK) break;
        json_t *data = json_object_get(r.json, "data");
        size_t n = json_array_size(data);
        if (g->json && !p->all) {
            cli_print_raw(r.body, r.len);
        } else if (g->json) {
            if (!merged) merged = json_incref(r.json);
            else json_array_extend(json_object_get(merged, "data"), data);
        } else {
            size_t i;
            json_t *item;
            json_array_foreach(data, i, item) p->item(p->ud, item);
        }
        const char *last = n ? cli_jstr(json_array_get(data, n - 1), "id") : NULL;
        int more = json_is_true(json_object_get(r.json, "has_more")) && n > 0;
        if (last) snprintf(after, sizeof after, "%s", last);
        cli_resp_free(&r);
        if (!p->all) {
            if (more && !g->json && p->more_hint) fprintf(stderr, "%s\n", p->more_hint);
            break;
        }
        if (!more || !last) break;
    }
    if (rc == CLI_OK && merged) {
        json_t *d = json_object_get(merged, "data");
        size_t n = json_array_size(d);
        json_object_set_new(merged, "has_more", json_false());
        json_object_set(merged, "last_id", n ? json_object_get(json_array_get(d, n - 1), "id") : json_null());
        cli_print_json(merged);
    }
    json_decref(merged);
    return rc;
}
