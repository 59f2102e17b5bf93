/* cli/cli.h — the coretune sub-commands; each takes argv from the sub-command name on and returns
 * the process exit code (enum cli_exit). `train` and `eval` run locally; every other sub-command talks to
 * the daemon through cli/client.h. Single-threaded; messages go to stderr, results to stdout. */
#ifndef CT_CLI_H
#define CT_CLI_H

/* Exit codes scripts can rely on (docs/cli.md). */
enum cli_exit {
    CLI_OK = 0,        /* done; `logs -f`: the job succeeded */
    CLI_EFAIL = 1,     /* the server refused (409, 422, 5xx...) or the job failed / was cancelled */
    CLI_EUSAGE = 2,    /* bad usage, unreadable or invalid spec (also the server's 400 and 413) */
    CLI_ECONNECT = 3,  /* cannot connect to the daemon */
    CLI_ENOTFOUND = 4, /* 404: no such job, model or file */
    CLI_EAUTH = 5,     /* 401 / 403 */
};

/* Options every daemon sub-command takes, before or after its name. Strings are borrowed from argv. */
typedef struct cli_global {
    const char *url;   /* --url: unix:/path/sock or http://host:port (NULL: env, config, defaults) */
    const char *token; /* --token (NULL: env, config, ./var/admin.token for 127.0.0.1) */
    int json;          /* --json: print the API's JSON instead of tables */
} cli_global;

int cli_train(int argc, char **argv);
int cli_eval(int argc, char **argv); /* local too: tr_evaluate on a model file and a data set */

int cli_submit(cli_global *g, int argc, char **argv);
int cli_list(cli_global *g, int argc, char **argv);
int cli_show(cli_global *g, int argc, char **argv);
int cli_action(cli_global *g, int argc, char **argv); /* cancel, pause, resume: argv[0] names it */
int cli_metrics(cli_global *g, int argc, char **argv);
int cli_logs(cli_global *g, int argc, char **argv);
int cli_download(cli_global *g, int argc, char **argv);
int cli_datasets(cli_global *g, int argc, char **argv);
int cli_models(cli_global *g, int argc, char **argv);
int cli_upload(cli_global *g, int argc, char **argv);
int cli_sweep(cli_global *g, int argc, char **argv); /* sweep submit|list|show|logs|cancel: argv[1] names it */

#endif
