/* cli/resource.h — what coretune does alike for the API's jobs and sweeps: a collection at PATH with
 * one object at PATH/ID, its events at PATH/ID/events and actions at PATH/ID/ACTION. Getting one
 * object by id, and the submit, list, show, logs and action sub-commands every such resource has, each
 * with the few things that differ passed in (a table row, how to show one, how to follow its events).
 * Single-threaded; failures print one line to stderr and return an exit code (cli.h). */
#ifndef CT_CLI_RESOURCE_H
#define CT_CLI_RESOURCE_H
#include "cli/client.h"
#include "cli/fmt.h"
#include <jansson.h>

typedef struct cli_resource {
    const char *path; /* the collection: "/v1/fine_tuning/jobs" */
    const char *noun; /* one of it, in messages: "job" ("coretune: job id too long") */
} cli_resource;

/* GET PATH/ID into OUT r (the id escaped; a non-2xx reply reported with the id, 404 -> CLI_ENOTFOUND).
 * Returns cli_call's exit code, or CLI_EUSAGE when the id is too long. */
int cli_resource_get(cli_conn *c, const cli_resource *res, const char *id, cli_resp *r);

/* Reads a submit's SPEC argument: a JSON file, or stdin for "-" (duplicate keys rejected). OUT *body
 * (owned) on CLI_OK; CLI_EUSAGE after saying where it does not parse. */
int cli_resource_read_spec(const char *spec, json_t **body);

/* Prints one object's events: follow them live to the end, or list what there is. Returns the exit code. */
typedef int (*cli_events_fn)(cli_conn *c, const cli_global *g, const char *id);

/* How `submit` sends a new object and says what it created. */
typedef struct cli_resource_new {
    const char *json;                 /* the request body */
    const char *const *headers;       /* extra "Name: value" request headers, NULL-terminated, or NULL */
    const char *what;                 /* names the spec in a refusal: "coretune: WHAT: message" */
    const char *cmd;                  /* the sub-command: "coretune: CMD: the reply has no NOUN id" */
    void (*print)(const json_t *obj); /* the line saying what was created (the reply instead with --json) */
    const char *follow_hint;          /* "coretune logs -f": suggested on a terminal when not following */
    int follow;                       /* then follow the new object with follow_fn */
    cli_events_fn follow_fn;
} cli_resource_new;

/* POSTs n->json to the collection and prints what it created. Returns the exit code: the follower's
 * when following, else CLI_OK or the refusal's (cli_fail_resp). */
int cli_resource_submit(cli_conn *c, const cli_global *g, const cli_resource *res, const cli_resource_new *n);

/* What `list` prints: a table of ncols columns with these headers, row() adding one object's row. */
typedef struct cli_resource_table {
    const char *usage;     /* "list [--limit N] [--all] [--json]" */
    const char *what;      /* names the list in messages: "list" */
    const char *more_hint; /* on stderr when there are more than one page shows: "(more jobs: ...)" */
    const char *const *heads;
    int ncols;
    void (*row)(cli_table *t, const json_t *obj);
} cli_resource_table;

/* `list [--limit N] [--all]` (argv from its name on): --limit 1-100 (default 20) objects, newest first;
 * --all every page (100 a page unless --limit). --json: the API's first page unchanged, or with --all
 * every page's data in one envelope. Returns the exit code. */
int cli_resource_list(cli_global *g, int argc, char **argv, const cli_resource *res, const cli_resource_table *t);

/* `show ID`: GET PATH/ID and show() it (or the reply unchanged with --json). Returns the exit code. */
int cli_resource_show(cli_global *g, int argc, char **argv, const cli_resource *res, const char *usage,
                      void (*show)(const json_t *obj));

/* `ACTION ID...`: POST PATH/ID/ACTION for each id in turn, printing "ID  STATUS" (the reply with --json).
 * Returns CLI_OK, or the exit code of the first that failed (the rest are still tried, unless the
 * daemon cannot be reached). */
int cli_resource_act(cli_global *g, int argc, char **argv, const cli_resource *res, const char *usage,
                     const char *action);

/* `logs ID [-f|--follow]`: list(), or with -f follow(), on a connection to the daemon. */
int cli_resource_logs(cli_global *g, int argc, char **argv, const char *usage, cli_events_fn follow,
                      cli_events_fn list);

#endif
