/* daemon/main.c — coretuned: parse options, open the data dir, run the libuv loop until SIGINT/SIGTERM.
 * The loop thread owns the HTTP server and all job state; see docs/design.md. */
#include "api/api.h"
#include "common/log.h"
#include "daemon/httpd.h"
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <uv.h>

#define CORETUNED_VERSION "0.1.0"

typedef struct daemon_opts {
    char host[64];
    int port;
    const char *data_dir;
} daemon_opts;

typedef struct daemon_ctx {
    uv_loop_t *loop;
    httpd *http;
    uv_signal_t sigint, sigterm;
    api_ctx api;
} daemon_ctx;

static void usage(FILE *f)
{
    fprintf(f, "usage: coretuned [--listen HOST:PORT] [--data-dir DIR] [--log-level LEVEL]\n"
               "  --listen HOST:PORT   address to serve HTTP on (default 127.0.0.1:8080; port 0 = any)\n"
               "  --data-dir DIR       where the database and artifacts live (default ./var)\n"
               "  --log-level LEVEL    debug, info, warn or error (default info)\n");
}

static int parse_listen(const char *s, daemon_opts *o)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof o->host) return -1;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535) return -1;
    memcpy(o->host, s, (size_t)(colon - s));
    o->host[colon - s] = 0;
    o->port = (int)port;
    return 0;
}

static void on_signal(uv_signal_t *s, int signum)
{
    daemon_ctx *d = s->data;
    LOG(LOG_INFO, "msg=\"shutting down\" signal=%d", signum);
    httpd_stop(d->http);
    d->http = NULL;
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
}

int main(int argc, char **argv)
{
    daemon_opts o = {.host = "127.0.0.1", .port = 8080, .data_dir = "var"};
    static const struct option longopts[] = {
        {"listen", required_argument, 0, 'l'}, {"data-dir", required_argument, 0, 'd'},
        {"log-level", required_argument, 0, 'v'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
            if (parse_listen(optarg, &o) != 0) {
                fprintf(stderr, "coretuned: --listen wants HOST:PORT, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'd': o.data_dir = optarg; break;
        case 'v':
            if (log_parse_level(optarg, &log_min_level) != 0) {
                fprintf(stderr, "coretuned: unknown log level '%s'\n", optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (mkdir(o.data_dir, 0750) != 0 && errno != EEXIST) {
        fprintf(stderr, "coretuned: cannot create data dir %s: %s\n", o.data_dir, strerror(errno));
        return 1;
    }

    daemon_ctx d = {.loop = uv_default_loop()};
    d.api.version = CORETUNED_VERSION;
    d.api.started_at = time(NULL);
    char err[256];
    if (httpd_start(&d.http, d.loop, o.host, o.port, api_handle, &d.api, err, sizeof err) != 0) {
        fprintf(stderr, "coretuned: %s\n", err);
        return 1;
    }
    uv_signal_init(d.loop, &d.sigint);
    uv_signal_init(d.loop, &d.sigterm);
    d.sigint.data = d.sigterm.data = &d;
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    LOG(LOG_INFO, "msg=listening addr=%s:%d data_dir=%s version=%s", o.host, httpd_port(d.http), o.data_dir,
        CORETUNED_VERSION);
    uv_run(d.loop, UV_RUN_DEFAULT);
    uv_loop_close(d.loop);
    LOG(LOG_INFO, "msg=stopped");
    return 0;
}
