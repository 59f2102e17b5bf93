/* daemon/main.c — coretuned: options (one table drives the command line, the config file and --help),
 * the data dir, the job service, the HTTP server, and the libuv loop until SIGINT/SIGTERM.
 * The loop thread owns the HTTP server and all job state; see docs/design.md.
 * Start-up errors print one line and exit 1 (2 for bad usage); nothing exits once serving. */
#define _GNU_SOURCE
#include "api/api.h"
#include "common/log.h"
#include "daemon/httpd.h"
#include "daemon/service.h"
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define CORETUNED_VERSION "0.1.0"

typedef struct daemon_opts {
    char host[64];
    int port;
    svc_config svc;
    api_limits lim;
    int workers_set, threads_set;
    char web_root[1024];
} daemon_opts;

typedef struct daemon_ctx {
    uv_loop_t *loop;
    httpd *http;
    api_ctx *api;
    svc *svc;
    uv_signal_t sigint, sigterm;
    int stopping;
} daemon_ctx;

/* ---- the option table ---- */

typedef int (*opt_set)(daemon_opts *o, const char *v);

static int parse_int(const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi) return -1;
    *out = x;
    return 0;
}

static int set_listen(daemon_opts *o, const char *s)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof o->host) return -1;
    long port;
    if (parse_int(colon + 1, 0, 65535, &port)) return -1;
    memcpy(o->host, s, (size_t)(colon - s));
    o->host[colon - s] = 0;
    o->port = (int)port;
    return 0;
}

static int set_data_dir(daemon_opts *o, const char *v)
{
    if (!*v || strlen(v) > 700) return -1; /* room for DIR/files/ID/NAME in a path */
    snprintf(o->svc.data_dir, sizeof o->svc.data_dir, "%s", v);
    return 0;
}

static int set_workers(daemon_opts *o, const char *v)
{
    long x;
    if (parse_int(v, 0, 1024, &x)) return -1;
    o->svc.workers = (int)x;
    o->workers_set = 1;
    return 0;
}

static int set_threads(daemon_opts *o, const char *v)
{
    long x;
    if (parse_int(v, 1, 1024, &x)) return -1;
    o->svc.threads_per_job = (int)x;
    o->threads_set = 1;
    return 0;
}

static int set_log_level(daemon_opts *o, const char *v)
{
    (void)o;
    return log_parse_level(v, &log_min_level);
}

static int set_checkpoint(daemon_opts *o, const char *v)
{
    long x;
    if (parse_int(v, 0, 86400, &x)) return -1;
    o->svc.checkpoint_seconds = (int)x;
    return 0;
}

static int set_upload_mb(daemon_opts *o, const char *v)
{
    long x;
    if (parse_int(v, 1, 1L << 20, &x)) return -1;
    o->svc.upload_limit = (long long)x << 20;
    return 0;
}

static int set_heartbeat(daemon_opts *o, const char *v)
{
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= 0.05 && x <= 3600)) return -1;
    o->lim.sse_heartbeat_s = x;
    return 0;
}

static int set_dataset(daemon_opts *o, const char *v)
{
    const char *eq = strchr(v, '=');
    if (!eq || eq == v || (size_t)(eq - v) >= sizeof o->svc.datasets[0].name || !eq[1] ||
        strlen(eq + 1) >= sizeof o->svc.datasets[0].path || o->svc.n_datasets == SVC_MAX_DATASETS)
        return -1;
    svc_dataset *d = &o->svc.datasets[o->svc.n_datasets++];
    snprintf(d->name, sizeof d->name, "%.*s", (int)(eq - v), v);
    snprintf(d->path, sizeof d->path, "%s", eq + 1);
    return 0;
}

static int set_web_root(daemon_opts *o, const char *v)
{
    if (strlen(v) >= sizeof o->web_root) return -1;
    snprintf(o->web_root, sizeof o->web_root, "%s", v);
    o->lim.web_root = o->web_root;
    return 0;
}

static int read_config(daemon_opts *o, const char *path);
static int set_config(daemon_opts *o, const char *v) { return read_config(o, v); }

static const struct optdef {
    const char *name, *arg, *help;
    opt_set set;
} optdefs[] = {
    {"listen", "HOST:PORT", "address to serve HTTP on (default 127.0.0.1:8080; port 0 = any)", set_listen},
    {"data-dir", "DIR", "database, job outputs, uploads and backbones (default ./var)", set_data_dir},
    {"workers", "N", "jobs trained at once (default: cores / threads-per-job; 0 = queue only)", set_workers},
    {"threads-per-job", "T", "trainer threads per job (default: cores / workers); workers x T <= cores",
     set_threads},
    {"config", "FILE", "read options from FILE: one 'name value' per line, # comments", set_config},
    {"dataset", "NAME=PATH", "register a dataset by path (repeatable)", set_dataset},
    {"checkpoint-seconds", "S", "checkpoint running jobs every S seconds besides every epoch (default 300)",
     set_checkpoint},
    {"max-upload-mb", "MB", "largest POST /v1/files upload (default 512)", set_upload_mb},
    {"sse-heartbeat", "SECONDS", "comment line on idle event streams (default 15)", set_heartbeat},
    {"web-root", "DIR", "the dashboard's files, served at / (default ./web)", set_web_root},
    {"log-level", "LEVEL", "debug, info, warn or error (default info)", set_log_level},
};
#define N_OPTS ((int)(sizeof optdefs / sizeof optdefs[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage: coretuned [options]\n");
    for (int i = 0; i < N_OPTS; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s %s", optdefs[i].name, optdefs[i].arg);
        fprintf(f, "  %-30s %s\n", left, optdefs[i].help);
    }
    fprintf(f, "  %-30s %s\n", "--help", "this text");
}

static int apply(daemon_opts *o, const char *name, const char *value, const char *where)
{
    for (int i = 0; i < N_OPTS; i++) {
        if (strcmp(optdefs[i].name, name) != 0) continue;
        if (optdefs[i].set(o, value) == 0) return 0;
        if (optdefs[i].set != set_config)
            fprintf(stderr, "coretuned: %s: bad value '%s' for %s (wants %s)\n", where, value, name, optdefs[i].arg);
        return -1;
    }
    fprintf(stderr, "coretuned: %s: unknown option '%s'\n", where, name);
    return -1;
}

static int read_config(daemon_opts *o, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "coretuned: cannot read config %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[2048];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        char *end = p + strlen(p);
        while (end > p && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t')) *--end = 0;
        if (!*p || *p == '#') continue;
        char *sp = p + strcspn(p, " \t");
        char *val = sp;
        if (*sp) { *sp = 0; val = sp + 1; while (*val == ' ' || *val == '\t') val++; }
        char where[1200];
        snprintf(where, sizeof where, "%.1100s:%d", path, lineno);
        if (!strcmp(p, "config")) { fprintf(stderr, "coretuned: %s: config files do not nest\n", where); rc = -1; }
        else rc = apply(o, p, val, where);
    }
    fclose(f);
    return rc;
}

static int cores_available(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* ---- life cycle ---- */

static void on_svc_done(void *ud)
{
    daemon_ctx *d = ud;
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    daemon_ctx *d = s->data;
    if (d->stopping) {
        LOG(LOG_INFO, "msg=\"already stopping: waiting for running jobs to checkpoint\" signal=%d", signum);
        return;
    }
    d->stopping = 1;
    LOG(LOG_INFO, "msg=\"shutting down\" signal=%d", signum);
    api_shutdown(d->api);   /* ends event streams, resumes suspended connections */
    httpd_kick(d->http);    /* lets MHD process the resumed connections before it stops */
    httpd_stop(d->http);    /* stop accepting, close connections */
    d->http = NULL;
    svc_shutdown(d->svc, on_svc_done, d); /* running jobs checkpoint, workers are joined */
}

static void kick_http(void *ud)
{
    daemon_ctx *d = ud;
    if (d->http) httpd_kick(d->http);
}

int main(int argc, char **argv)
{
    daemon_opts o;
    memset(&o, 0, sizeof o);
    snprintf(o.host, sizeof o.host, "127.0.0.1");
    o.port = 8080;
    snprintf(o.svc.data_dir, sizeof o.svc.data_dir, "var");
    snprintf(o.svc.builtin_dir, sizeof o.svc.builtin_dir, "/usr/share/datasets");
    o.svc.checkpoint_seconds = 300;
    o.svc.flush_seconds = 1.0;
    o.svc.upload_limit = 512LL << 20;
    o.lim.json_body_max = 1 << 20;
    o.lim.json_depth_max = 32;
    o.lim.sse_heartbeat_s = 15;

    struct option longopts[N_OPTS + 2];
    for (int i = 0; i < N_OPTS; i++) longopts[i] = (struct option){optdefs[i].name, required_argument, 0, i};
    longopts[N_OPTS] = (struct option){"help", no_argument, 0, 'h'};
    longopts[N_OPTS + 1] = (struct option){0, 0, 0, 0};
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == 'h') { usage(stdout); return 0; }
        if (c < 0 || c >= N_OPTS) { usage(stderr); return 2; }
        if (apply(&o, optdefs[c].name, optarg, "command line") != 0) return 2;
    }
    if (optind < argc) { usage(stderr); return 2; }

    /* workers x threads-per-job must fit the cores this process may use */
    int cores = cores_available();
    if (!o.workers_set && !o.threads_set) { o.svc.workers = 1; o.svc.threads_per_job = cores; }
    else if (!o.threads_set) o.svc.threads_per_job = o.svc.workers > 0 && cores / o.svc.workers > 0 ? cores / o.svc.workers : 1;
    else if (!o.workers_set) o.svc.workers = cores / o.svc.threads_per_job > 0 ? cores / o.svc.threads_per_job : 1;
    if (o.svc.workers * o.svc.threads_per_job > cores) {
        fprintf(stderr, "coretuned: %d workers x %d threads per job is more than the %d cores available\n",
                o.svc.workers, o.svc.threads_per_job, cores);
        return 2;
    }
    if (mkdir(o.svc.data_dir, 0750) != 0 && errno != EEXIST) {
        fprintf(stderr, "coretuned: cannot create data dir %s: %s\n", o.svc.data_dir, strerror(errno));
        return 1;
    }

    daemon_ctx d = {.loop = uv_default_loop()};
    char err[512];
    if (svc_open(&d.svc, d.loop, &o.svc, err, sizeof err) != 0) {
        fprintf(stderr, "coretuned: %s\n", err);
        return 1;
    }
    if (api_new(&d.api, d.loop, d.svc, &o.lim, CORETUNED_VERSION, kick_http, &d) != 0 ||
        httpd_start(&d.http, d.loop, o.host, o.port, api_handle, api_completed, d.api, err, sizeof err) != 0) {
        fprintf(stderr, "coretuned: %s\n", d.api ? err : "out of memory");
        if (d.api) api_shutdown(d.api);
        svc_shutdown(d.svc, NULL, NULL);
        uv_run(d.loop, UV_RUN_DEFAULT);
        api_free(d.api);
        svc_free(d.svc);
        return 1;
    }
    uv_signal_init(d.loop, &d.sigint);
    uv_signal_init(d.loop, &d.sigterm);
    d.sigint.data = d.sigterm.data = &d;
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    LOG(LOG_INFO, "msg=listening addr=%s:%d data_dir=%s workers=%d threads_per_job=%d version=%s", o.host,
        httpd_port(d.http), o.svc.data_dir, o.svc.workers, o.svc.threads_per_job, CORETUNED_VERSION);
    uv_run(d.loop, UV_RUN_DEFAULT);
    api_free(d.api);
    svc_free(d.svc);
    uv_loop_close(d.loop);
    LOG(LOG_INFO, "msg=stopped");
    return 0;
}
