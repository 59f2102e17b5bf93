/* daemon/options.h — the daemon's options (daemon/options.c): defaults, the config file, the command line,
 * --help/--example-config/--version, and the check of all of them together. Messages go to stderr. */
#ifndef CORETUNED_OPTIONS_H
#define CORETUNED_OPTIONS_H
#include "api/api.h"
#include "core/core.h"
#include "daemon/httpd.h"
#include <stdio.h>

enum { OPTS_GPUS_AUTO, OPTS_GPUS_NONE, OPTS_GPUS_LIST };

typedef struct daemon_opts {
    char host[64];
    int port;
    svc_config svc;
    api_limits lim;
    httpd_limits http;          /* 0 = httpd's defaults */
    int workers_set, threads_set, cores_set;
    int gpus_mode;              /* OPTS_GPUS_AUTO (default), _NONE or _LIST (svc.gpus holds the list) */
    char web_root[1024];
    char socket_path[108];      /* "" = DATA_DIR/coretuned.sock; "none" = no socket */
    char tls_cert[1024], tls_key[1024];
    char shared_dir[1024];      /* executor slurm: "" = the data dir */
} daemon_opts;

/* Defaults, then the config file (--config, $CORETUNED_CONFIG or the default path if present), then the
 * command line. Returns 0 to go on (OUT *argi: the first argument that is not an option, a subcommand
 * when < argc), 1 when --help/--example-config/--version has been printed, -1 on bad usage or config. */
int opts_parse(daemon_opts *o, int argc, char **argv, int *argi);
int opts_validate(daemon_opts *o);    /* every option together; one message per problem; -1 if any */
void opts_usage(FILE *f);
int opts_parse_int(const char *v, long lo, long hi, long *out);   /* decimal in [lo, hi]; -1 otherwise */

#endif
