/* cli/resource.c — the sub-commands jobs and sweeps share (see resource.h): option parsing, one
 * connection, the requests, and the output that is the same for both. Single-threaded; messages on
 * stderr. */
#include "cli/resource.h"
#include "cli/opt.h"
#include "cli/pages.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_resource_get(cli_conn *c, const cli_resource *res, const char *id, cli_resp *r)
{
    char esc[400], path[512];
    if (cli_escape(esc, sizeof esc, id) != 0) {
        fprintf(stderr, "coretune: %s id too long\n", res->noun);
        return CLI_EUSAGE;
    }
    snprintf(path, sizeof path, "%s/%s", res->path, esc);
    return cli_call(c, "GET", path, NULL, r, id);
}

/* ---------------- submit ---------------- */

int cli_resource_read_spec(const char *spec, json_t **body)
{
    json_error_t jerr;
    *body = !strcmp(spec, "-") ? json_loadf(stdin, JSON_REJECT_DUPLICATES, &jerr)
                               : json_load_file(spec, JSON_REJECT_DUPLICATES, &jerr);
    if (*body) return CLI_OK;
    if (jerr.line > 0) fprintf(stderr, "coretune: %s:%d:%d: %s\n", spec, jerr.line, jerr.column, jerr.text);
    else fprintf(stderr, "coretune: %s: %s\n", spec, jerr.text);
    return CLI_EUSAGE;
}

int cli_resource_submit(cli_conn *c, const cli_global *g, const cli_resource *res, const cli_resource_new *n)
{
    cli_req req = {.json = n->json, .headers = n->headers};
    cli_resp r;
    int rc = cli_http(c, "POST", res->path, &req, &r, 0);
    if (rc == CLI_OK && (r.status < 200 || r.status >= 300)) {
        rc = cli_fail_resp(c, &r, n->what);
    } else if (rc == CLI_OK && !cli_jstr(r.json, "id")) {
        fprintf(stderr, "coretune: %s: the reply has no %s id\n", n->cmd, res->noun);
        rc = CLI_EFAIL;
    } else if (rc == CLI_OK) {
        const char *id = cli_jstr(r.json, "id");
        if (g->json) {
            cli_print_raw(r.body, r.len);
        } else {
            n->print(r.json);
            fflush(stdout);
            if (!n->follow && isatty(STDERR_FILENO)) fprintf(stderr, "follow it with: %s %s\n", n->follow_hint, id);
        }
        if (n->follow) {
            char *idc = strdup(id);
            cli_resp_free(&r);
            rc = idc ? n->follow_fn(c, g, idc) : CLI_EFAIL;
            free(idc);
        }
    }
    cli_resp_free(&r);
    return rc;
}

/* ---------------- list ---------------- */

typedef struct table_ud {
    const cli_resource_table *spec;
    cli_table *t;
} table_ud;

static void add_row(void *ud, const json_t *obj)
{
    table_ud *u = ud;
    u->spec->row(u->t, obj);
}

int cli_resource_list(cli_global *g, int argc, char **argv, const cli_resource *res, const cli_resource_table *spec)
{
    static const struct option longopts[] = {{"limit", required_argument, 0, 'n'}, {"all", no_argument, 0, 'a'},
                                             CLI_COMMON_OPTS, {0, 0, 0, 0}};
    long limit = 20;
    int all = 0, c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:a", longopts, NULL)) != -1) {
        if (c == 'n') {
            if (cli_parse_int("--limit", optarg, 1, 100, &limit)) return CLI_EUSAGE;
        } else if (c == 'a') {
            all = 1;
        } else if ((rc = cli_common_opt_usage(g, c, spec->usage)) >= 0) {
            return rc;
        }
    }
    if (optind != argc) return cli_usage_error(spec->usage);
    if (all && limit == 20) limit = 100;
    cli_conn *conn;
    if ((rc = cli_conn_open(g, &conn)) != CLI_OK) return rc;
    cli_table *t = g->json ? NULL : cli_table_new(spec->ncols, spec->heads);
    table_ud u = {.spec = spec, .t = t};
    cli_pages p = {.path = res->path, .limit = limit, .all = all, .what = spec->what,
                   .more_hint = spec->more_hint, .item = add_row, .ud = &u};
    rc = cli_pages_read(conn, g, &p);
    if (rc == CLI_OK && t) cli_table_print(t, stdout);
    cli_table_free(t);
    cli_conn_close(conn);
    return rc;
}

/* ---------------- show, actions ---------------- */

int cli_resource_show(cli_global *g, int argc, char **argv, const cli_resource *res, const char *usage,
                      void (*show)(const json_t *obj))
{
    int rc = cli_common_only(g, argc, argv, usage);
    if (rc >= 0) return rc;
    if (optind != argc - 1) return cli_usage_error(usage);
    cli_conn *conn;
    if ((rc = cli_conn_open(g, &conn)) != CLI_OK) return rc;
    cli_resp r;
    if ((rc = cli_resource_get(conn, res, argv[optind], &r)) == CLI_OK) {
        if (g->json) cli_print_raw(r.body, r.len);
        else show(r.json);
        cli_resp_free(&r);
    }
    cli_conn_close(conn);
    return rc;
}

int cli_resource_act(cli_global *g, int argc, char **argv, const cli_resource *res, const char *usage,
                     const char *action)
{
    int rc = cli_common_only(g, argc, argv, usage);
    if (rc >= 0) return rc;
    if (optind >= argc) return cli_usage_error(usage);
    cli_conn *conn;
    if ((rc = cli_conn_open(g, &conn)) != CLI_OK) return rc;
    int worst = CLI_OK;
    for (int i = optind; i < argc; i++) {
        char esc[400], path[512];
        if (cli_escape(esc, sizeof esc, argv[i]) != 0) {
            fprintf(stderr, "coretune: %s id too long\n", res->noun);
            worst = worst ? worst : CLI_EUSAGE;
            continue;
        }
        snprintf(path, sizeof path, "%s/%s/%s", res->path, esc, action);
        cli_resp r;
        rc = cli_call(conn, "POST", path, "{}", &r, argv[i]);
        if (rc == CLI_OK) {
            if (g->json) cli_print_raw(r.body, r.len);
            else printf("%s  %s\n", argv[i], cli_jstr(r.json, "status") ? cli_jstr(r.json, "status") : "-");
            fflush(stdout);
            cli_resp_free(&r);
        } else if (!worst) {
            worst = rc;
        }
        if (rc == CLI_ECONNECT) break;
    }
    cli_conn_close(conn);
    return worst;
}

/* ---------------- logs ---------------- */

int cli_resource_logs(cli_global *g, int argc, char **argv, const char *usage, cli_events_fn follow,
                      cli_events_fn list)
{
    static const struct option longopts[] = {{"follow", no_argument, 0, 'f'}, CLI_COMMON_OPTS, {0, 0, 0, 0}};
    int f = 0, c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f", longopts, NULL)) != -1) {
        if (c == 'f') f = 1;
        else if ((rc = cli_common_opt_usage(g, c, usage)) >= 0) return rc;
    }
    if (optind != argc - 1) return cli_usage_error(usage);
    const char *id = argv[optind];
    char esc[400];
    if (cli_escape(esc, sizeof esc, id) != 0) return cli_usage_error(usage);
    cli_conn *conn;
    if ((rc = cli_conn_open(g, &conn)) != CLI_OK) return rc;
    rc = f ? follow(conn, g, id) : list(conn, g, id);
    cli_conn_close(conn);
    return rc;
}
