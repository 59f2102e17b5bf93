/* daemon/main.c — coretuned: options (daemon/options.c) or an admin command (daemon/admin.c), then the data dir, the job service, the HTTP
 * servers (TCP, optionally TLS; the Unix socket), systemd notifications, and the libuv loop until
 * SIGINT/SIGTERM. The loop thread owns the HTTP servers and all job state; see docs/design.md.
 * Start-up errors print one line and exit 1 (2 for bad usage or config); nothing exits once serving. */
#define _GNU_SOURCE
#include "api/api.h"
#include "common/log.h"
#include "common/util.h"
#include "common/version.h"
#include "core/auth.h"
#include "daemon/admin.h"
#include "daemon/httpd.h"
#include "daemon/options.h"
#include "daemon/sdnotify.h"
#include "core/core.h"
#include "storage/db.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>


typedef struct daemon_ctx {
    uv_loop_t *loop;
    httpd *http, *unix_http;
    api_ctx *api;
    svc *svc;
    uv_signal_t sigint, sigterm;
    uv_timer_t watchdog;
    int stopping, watchdog_on;
} daemon_ctx;

/* Read a whole small file (PEM). OUT *text (heap, NUL-terminated). */
static int slurp(const char *path, char **text, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) { snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno)); return -1; }
    char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (!buf || n == 0) { free(buf); snprintf(err, errlen, "%s is empty or unreadable", path); return -1; }
    buf[n] = 0;
    *text = buf;
    return 0;
}


static void on_svc_done(void *ud)
{
    daemon_ctx *d = ud;
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    if (d->watchdog_on) uv_close((uv_handle_t *)&d->watchdog, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    daemon_ctx *d = s->data;
    if (d->stopping) {
        LOG(LOG_INFO, "msg=\"already stopping: waiting for running jobs to checkpoint\" signal=%d", signum);
        return;
    }
    d->stopping = 1;
    sdnotify("STOPPING=1\nSTATUS=checkpointing running jobs");
    LOG(LOG_INFO, "msg=\"shutting down\" signal=%d", signum);
    api_shutdown(d->api);   /* ends event streams, resumes suspended connections */
    if (d->http) httpd_kick(d->http); /* lets MHD process the resumed connections before it stops */
    if (d->unix_http) httpd_kick(d->unix_http);
    httpd_stop(d->http);    /* stop accepting, close connections */
    httpd_stop(d->unix_http);
    d->http = d->unix_http = NULL;
    svc_shutdown(d->svc, on_svc_done, d); /* running jobs checkpoint, workers are joined */
}

static void kick_http(void *ud)
{
    daemon_ctx *d = ud;
    if (d->http) httpd_kick(d->http);
    if (d->unix_http) httpd_kick(d->unix_http);
}

/* The loop itself pings the watchdog: a stuck loop (not a busy trainer) gets the daemon restarted. */
static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    sdnotify("WATCHDOG=1");
}

/* First start: the admin's token goes to DATA_DIR/admin.token (0600) and into one sign-in line on
 * stderr — the only place the daemon ever prints a token. */
static int bootstrap(daemon_ctx *d, daemon_opts *o)
{
    char token[128], name[64], err[512], path[1200];
    if (svc_bootstrap(d->svc, token, sizeof token, name, err, sizeof err) != 0) {
        fprintf(stderr, "coretuned: cannot create the first admin: %s\n", err);
        return -1;
    }
    snprintf(path, sizeof path, "%s/admin.token", o->svc.data_dir);
    if (!token[0]) {
        if (access(path, F_OK) == 0)
            LOG(LOG_INFO, "msg=\"the first admin's token is in %s\"", path);
        return 0;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    int ok = fd >= 0 && write(fd, token, strlen(token)) == (ssize_t)strlen(token) && write(fd, "\n", 1) == 1;
    if (fd >= 0) { fchmod(fd, 0600); fsync(fd); close(fd); }
    if (!ok) LOG(LOG_WARN, "msg=\"cannot write the admin token file\" path=%s err=\"%s\"", path, strerror(errno));
    const char *host = o->host;
    fprintf(stderr, "coretuned: sign in at %s://%s:%d/?token=%s\n", o->tls_cert[0] ? "https" : "http",
            !strcmp(host, "0.0.0.0") ? "127.0.0.1" : host, httpd_port(d->http), token);
    fprintf(stderr, "coretuned: (first start: created the admin user '%s'; the token is also in %s)\n", name, path);
    memset(token, 0, sizeof token);
    return 0;
}

/* Jobs share the cores: OpenMP workers that spin while idle steal them from the other jobs (measured:
 * 2 threads ran at a third of their speed under load, see docs/performance.md). libgomp reads
 * OMP_WAIT_POLICY when it loads, before main, so set it and re-execute once unless the operator chose. */
static void passive_openmp(char **argv)
{
    if (getenv("OMP_WAIT_POLICY")) return;
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc): run on with the default policy */
}

int main(int argc, char **argv)
{
    umask(077); /* everything the daemon writes (database, checkpoints, uploads, tokens) is its own */
    passive_openmp(argv);
    daemon_opts o;
    int argi;
    int rc = opts_parse(&o, argc, argv, &argi);
    if (rc != 0) return rc > 0 ? 0 : 2;
    if (argi < argc) {
        if (admin_is_command(argv[argi])) return admin_run(&o, argc - argi, argv + argi);
        opts_usage(stderr);
        return 2;
    }
    if (opts_validate(&o) != 0) return 2;
    if (mkdir(o.svc.data_dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "coretuned: cannot create data dir %s: %s\n", o.svc.data_dir, strerror(errno));
        return 1;
    }

    daemon_ctx d = {.loop = uv_default_loop()};
    char err[512];
    char *cert = NULL, *key = NULL;
    if (o.tls_cert[0] && (slurp(o.tls_cert, &cert, err, sizeof err) != 0 || slurp(o.tls_key, &key, err, sizeof err) != 0)) {
        fprintf(stderr, "coretuned: %s\n", err);
        free(cert);
        return 2;
    }
    if (svc_open(&d.svc, d.loop, &o.svc, err, sizeof err) != 0) {
        fprintf(stderr, "coretuned: %s\n", err);
        free(cert); free(key);
        return 1;
    }
    int ok = api_new(&d.api, d.loop, d.svc, &o.lim, CORETUNED_VERSION, kick_http, &d) == 0;
    if (!ok) snprintf(err, sizeof err, "out of memory");
    ok = ok && httpd_start(&d.http, d.loop, o.host, o.port, cert, key, &o.http, api_handle, api_completed, d.api, err,
                           sizeof err) == 0;
    ok = ok && (!strcmp(o.socket_path, "none") ||
                httpd_start_unix(&d.unix_http, d.loop, o.socket_path, &o.http, api_handle, api_completed, d.api, err,
                                 sizeof err) == 0);
    if (key) memset(key, 0, strlen(key));
    free(cert); free(key);
    if (ok && bootstrap(&d, &o) != 0) { ok = 0; snprintf(err, sizeof err, "bootstrap failed"); }
    if (!ok) {
        fprintf(stderr, "coretuned: %s\n", err);
        if (d.api) api_shutdown(d.api);
        httpd_stop(d.http);
        httpd_stop(d.unix_http);
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
    unsigned long long wd = sdnotify_watchdog_usec();
    if (wd > 0) {
        uv_timer_init(d.loop, &d.watchdog);
        uv_timer_start(&d.watchdog, on_watchdog, 0, wd / 2000 > 0 ? wd / 2000 : 1);
        d.watchdog_on = 1;
    }
    LOG(LOG_INFO, "msg=listening addr=%s:%d tls=%s socket=%s data_dir=%s cores=%d workers=%d threads_per_job=%d"
                  " preemption=%s version=%s", o.host, httpd_port(d.http), o.tls_cert[0] ? "yes" : "no",
        o.socket_path, o.svc.data_dir, o.svc.cores, o.svc.workers, o.svc.threads_per_job,
        o.svc.preemption ? "yes" : "no", CORETUNED_VERSION);
    /* READY only now: database open, migrations applied, listeners up */
    sdnotify("READY=1\nSTATUS=serving");
    uv_run(d.loop, UV_RUN_DEFAULT);
    api_free(d.api);
    svc_free(d.svc);
    uv_loop_close(d.loop);
    LOG(LOG_INFO, "msg=stopped");
    return 0;
}

