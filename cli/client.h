/* cli/client.h — coretune's connection to the daemon: where to connect and with which token
 * (flags > environment > config file > local defaults), HTTP over TCP or the daemon's Unix socket with
 * libcurl, and the mapping of failures to exit codes (enum cli_exit) with a helpful message.
 * Single-threaded, one connection per process. Functions that can fail print one line to stderr
 * ("coretune: ...") and return an exit code; the token is never printed. */
#ifndef CT_CLI_CLIENT_H
#define CT_CLI_CLIENT_H
#include "cli/cli.h"
#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <stddef.h>

/* getopt_long entries every daemon sub-command accepts; put CLI_COMMON_OPTS before {0,0,0,0} and pass
 * unknown option characters to cli_common_opt. */
enum { CLI_OPT_URL = 0x1000, CLI_OPT_TOKEN, CLI_OPT_JSON, CLI_OPT_HELP };
#define CLI_COMMON_OPTS                                                                                 \
    {"url", required_argument, 0, CLI_OPT_URL}, {"token", required_argument, 0, CLI_OPT_TOKEN},         \
        {"json", no_argument, 0, CLI_OPT_JSON}, {"help", no_argument, 0, CLI_OPT_HELP}

/* Handles a common option. Returns 0 (handled), 1 (--help: print usage to stdout, exit 0) or
 * CLI_EUSAGE (unknown option: getopt already said why). */
int cli_common_opt(cli_global *g, int c);

/* cli_common_opt for a sub-command with this usage line: returns -1 when option c was handled (go on),
 * else the exit code (CLI_OK after printing the usage for --help, CLI_EUSAGE for an unknown option). */
int cli_common_opt_usage(cli_global *g, int c, const char *usage);

/* Parses argv (from the sub-command's name on) for the common options only: returns -1 to go on, with
 * the positional arguments from optind, else the exit code (cli_common_opt_usage). */
int cli_common_only(cli_global *g, int argc, char **argv, const char *usage);

/* Prints "usage: coretune USAGE" (and `coretune --help` hint) to stderr; returns CLI_EUSAGE. */
int cli_usage_error(const char *usage);

typedef struct cli_conn cli_conn;

/* Resolves the daemon's address and token and prepares libcurl. OUT *out: free with cli_conn_close.
 * Returns CLI_OK or an exit code (message printed). */
int cli_conn_open(const cli_global *g, cli_conn **out);
void cli_conn_close(cli_conn *c);

/* The address as shown to users: "unix:/path" or "http://host:port" (borrowed). */
const char *cli_conn_where(const cli_conn *c);

/* Receives a 2xx response's body as it arrives (streams, downloads). Return 0 to go on, non-zero to
 * stop the transfer (cli_http then returns normally with the status already received). */
typedef int (*cli_sink_fn)(void *ud, const char *data, size_t len);

typedef struct cli_req {
    const char *json;            /* request body (Content-Type: application/json), or NULL */
    curl_mime *mime;             /* multipart body (borrowed), or NULL */
    const char *const *headers;  /* extra "Name: value" headers, NULL-terminated, or NULL */
    cli_sink_fn sink;            /* where a 2xx body goes (NULL: buffered, see cli_resp) */
    void *ud;
    int stream;                  /* no overall time limit; an idle connection is dropped after 60 s */
} cli_req;

typedef struct cli_resp {
    long status;     /* HTTP status */
    char *body;      /* the buffered body, NUL-terminated (owned; "" when it went to the sink) */
    size_t len;
    json_t *json;    /* body parsed as JSON, or NULL (owned) */
} cli_resp;

void cli_resp_free(cli_resp *r);

/* One request: method "GET"/"POST", path from the root ("/v1/models"). OUT resp on success.
 * Returns CLI_OK when a response arrived (whatever its status), CLI_ECONNECT when none did (the
 * reason printed unless quiet), or CLI_EFAIL when interrupted (SIGINT) or out of memory. */
int cli_http(cli_conn *c, const char *method, const char *path, const cli_req *req, cli_resp *resp, int quiet);

/* GET/POST returning JSON: like cli_http but a non-2xx status is reported ("coretune: WHAT: message")
 * and turned into its exit code. On CLI_OK, resp->json is an object. */
int cli_call(cli_conn *c, const char *method, const char *path, const char *json_body, cli_resp *resp,
             const char *what);

/* Reports a non-2xx response (the API's {"error": {...}} when present) and returns its exit code:
 * 400/413 -> CLI_EUSAGE, 401/403 -> CLI_EAUTH, 404 -> CLI_ENOTFOUND, anything else -> CLI_EFAIL. */
int cli_fail_resp(const cli_conn *c, const cli_resp *r, const char *what);

/* Appends s to buf (size n) percent-encoded for one path segment or query value. Returns 0 or -1 if
 * it does not fit. */
int cli_escape(char *buf, size_t n, const char *s);

/* Shared by the sub-commands: `logs -f`'s follower (cli/logs_cmd.c), also run by `submit --follow`.
 * Returns CLI_OK if the job succeeded, CLI_EFAIL if it failed or was cancelled, or another exit code. */
int cli_follow(cli_conn *c, const cli_global *g, const char *job_id);

/* Set by SIGINT while a transfer runs (cli_http installs the handler); transfers stop soon after. */
extern volatile int cli_interrupted;

#endif
