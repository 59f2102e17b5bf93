/* tests/fuzz/server.c — the real HTTP path in the fuzz process (see fuzz.h): the service core
 * (svc_open on a scratch data dir, workers 0: jobs are accepted and queued, never trained), the api
 * layer (api_new, api_handle) and libmicrohttpd in epoll mode driven by hand, as daemon/httpd.c drives
 * it from the loop, with the daemon's connection options. Each request is one end of a socket pair
 * handed to MHD_add_connection: no port, no socket file, and over AF_UNIX the api layer identifies the
 * caller by its uid (SO_PEERCRED), which is the bootstrap admin's, so every route is reachable.
 * One request at a time: send, read the reply until the server goes quiet or hangs up, close, then
 * wait until MHD has closed its end, so nothing of one input is still running in the next.
 * libFuzzer's thread only (it is the loop thread). */
#define _GNU_SOURCE
#include "tests/fuzz/fuzz.h"
#include "api/api.h"
#include "common/log.h"
#include <errno.h>
#include <linux/sockios.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define RENEW_EVERY 2000  /* requests per service: its database and files stay small */
#define QUIET_ROUNDS 64   /* server runs without a new reply byte after which the client hangs up */

static struct {
    int up;
    uv_loop_t loop;
    svc *svc;
    api_ctx *api;
    struct MHD_Daemon *mhd;
    int open;             /* connections MHD has not closed yet */
    long requests;
    int trace;            /* CT_FUZZ_LOG set: the service's log and the replies' status lines */
    char data[600], roots[600], web[4096];
    char job[64];         /* a queued job made at start: "$JOB" in an input is its id */
} S;

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)cls; (void)c; (void)socket_ctx;
    S.open += code == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1;
}

/* The api asks for MHD to run after resuming a stream (daemon: httpd_kick). */
static void kick(void *ud)
{
    (void)ud;
    if (S.mhd) MHD_run(S.mhd);
}

static void pump(void)
{
    MHD_run(S.mhd);
    uv_run(&S.loop, UV_RUN_NOWAIT);
}

/* Block until MHD or the loop has something to do (a suspended stream waits for the heartbeat). */
static void wait_events(void)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(S.mhd, MHD_DAEMON_INFO_EPOLL_FD);
    struct pollfd fds[2] = {{.fd = info ? info->epoll_fd : -1, .events = POLLIN},
                            {.fd = uv_backend_fd(&S.loop), .events = POLLIN}};
    int t = uv_backend_timeout(&S.loop);
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(S.mhd, &ms) == MHD_YES && (t < 0 || ms < (MHD_UNSIGNED_LONG_LONG)t)) t = (int)ms;
    if (t < 0 || t > 100) t = 100;
    poll(fds, 2, t);
}

/* A small IDX set inside the dataset root, so a job may name a path there. */
static void write_idx(const char *dir)
{
    static const uint8_t images[16 + 2 * 16] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 4};
    static const uint8_t labels[8 + 2] = {0, 0, 8, 1, 0, 0, 0, 2, 0, 1};
    char p[700];
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", dir);
    fz_write(p, images, sizeof images);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte", dir);
    fz_write(p, labels, sizeof labels);
}

static void start(void)
{
    char err[512], token[128];
    snprintf(S.data, sizeof S.data, "%s/data", fz_dir());
    snprintf(S.roots, sizeof S.roots, "%s/roots", fz_dir());
    if (mkdir(S.data, 0750) != 0 && errno != EEXIST) fz_die("cannot create %s: %s", S.data, strerror(errno));
    mkdir(S.roots, 0755);
    write_idx(S.roots);
    svc_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", S.data);
    cfg.workers = 0;
    cfg.threads_per_job = 1;
    cfg.cores = 1;
    cfg.self_uid = (long long)geteuid();
    cfg.quota.upload_bytes = 8 << 20;
    cfg.n_roots = 1;
    snprintf(cfg.roots[0], sizeof cfg.roots[0], "%s", S.roots);
    cfg.checkpoint_seconds = 300;
    cfg.flush_seconds = 0.05;
    cfg.upload_limit = 256 << 10;
    struct stat sb;
    if (stat("/usr/share/datasets", &sb) == 0) snprintf(cfg.builtin_dir, sizeof cfg.builtin_dir, "/usr/share/datasets");
    if (uv_loop_init(&S.loop) != 0) fz_die("uv_loop_init failed");
    if (svc_open(&S.svc, &S.loop, &cfg, err, sizeof err) != 0) fz_die("svc_open: %s", err);
    char admin[64];
    if (svc_bootstrap(S.svc, token, sizeof token, admin, err, sizeof err) != 0) fz_die("svc_bootstrap: %s", err);
    /* the dashboard's files, so /web/... requests reach real files (run from the repository root) */
    if (!realpath("web", S.web)) S.web[0] = 0;
    api_limits lim = {.json_body_max = 16 << 10, .json_depth_max = 32, .sse_heartbeat_s = 0.01,
                      .web_root = S.web[0] ? S.web : NULL};
    /* One job to find: its id is random, so inputs name it "$JOB" (replaced before sending). */
    svc_caller who;
    svc_error e;
    svc_job j;
    int replayed;
    json_t *body = json_pack("{s:s, s:s}", "model", "resnet20", "training_file", "fashion-mnist-train");
    if (!cfg.builtin_dir[0]) json_object_set_new(body, "training_file", json_string(S.roots));
    if (svc_auth_uid(S.svc, cfg.self_uid, &who, &e) != 0 || svc_job_create(S.svc, &who, body, NULL, &j, &replayed, &e) != 0)
        fz_die("cannot create the first job: %s", e.message);
    snprintf(S.job, sizeof S.job, "%s", j.row.id);
    svc_job_clear(&j);
    json_decref(body);
    if (api_new(&S.api, &S.loop, S.svc, &lim, "fuzz", kick, NULL) != 0) fz_die("api_new failed");
    S.mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_NO_LISTEN_SOCKET, 0, NULL, NULL,
                             api_handle, S.api,
                             MHD_OPTION_CONNECTION_LIMIT, (unsigned int)512,
                             MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60,
                             MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                             MHD_OPTION_NOTIFY_COMPLETED, api_completed, S.api,
                             MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
                             MHD_OPTION_END);
    if (!S.mhd) fz_die("MHD_start_daemon failed");
    S.up = 1;
}

/* As the daemon stops: streams ended, server stopped, the core shut down, the loop drained. */
static void stop(void)
{
    api_shutdown(S.api);
    MHD_run(S.mhd);
    MHD_stop_daemon(S.mhd);
    S.mhd = NULL;
    svc_shutdown(S.svc, NULL, NULL);
    uv_run(&S.loop, UV_RUN_DEFAULT);
    api_free(S.api);
    svc_free(S.svc);
    if (uv_loop_close(&S.loop) != 0) fz_die("handles left open on the loop after shutdown");
    fz_rmtree(S.data);
    S.up = 0;
}

/* Read what the server sent. OUT *eof = 1 once it has hung up. Returns the bytes read. */
static size_t drain(int fd, int *eof)
{
    static char buf[1 << 16];
    size_t total = 0;
    for (;;) {
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k > 0 && S.trace) { /* CT_FUZZ_LOG: each reply's status line */
            for (char *p = buf; (p = memmem(p, (size_t)(buf + k - p), "HTTP/1.", 7)); p += 7) {
                char *e = memchr(p, '\r', (size_t)(buf + k - p));
                fprintf(stderr, "fuzz: reply %.*s\n", e ? (int)(e - p) : 12, p);
            }
        }
        if (k > 0) { total += (size_t)k; continue; }
        if (k < 0 && errno == EINTR) continue;
        if (k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) *eof = 1;
        return total;
    }
}

/* The input with "$JOB" replaced by the first job's id and "$ROOT" by the dataset root. OUT *len. */
static uint8_t *substitute(const uint8_t *in, size_t n, size_t *len)
{
    size_t cap = n + 1, at = 0;
    uint8_t *out = malloc(cap);
    for (size_t i = 0; out && i < n;) {
        const char *with = NULL;
        size_t skip = 1;
        if (n - i >= 4 && !memcmp(in + i, "$JOB", 4)) { with = S.job; skip = 4; }
        else if (n - i >= 5 && !memcmp(in + i, "$ROOT", 5)) { with = S.roots; skip = 5; }
        size_t add = with ? strlen(with) : 1;
        if (at + add > cap) {
            uint8_t *b = realloc(out, cap = 2 * cap + add);
            if (!b) { free(out); out = NULL; break; }
            out = b;
        }
        if (with) memcpy(out + at, with, add);
        else out[at] = in[i];
        at += add;
        i += skip;
    }
    if (!out) fz_die("out of memory");
    *len = at;
    return out;
}

void fz_http(const uint8_t *input, size_t input_len)
{
    if (S.up && S.requests % RENEW_EVERY == 0 && S.requests > 0) stop();
    if (!S.up) {
        S.trace = getenv("CT_FUZZ_LOG") != NULL;
        if (!S.trace) log_min_level = (enum log_level)(LOG_ERROR + 1);
        start();
    }
    S.requests++;
    size_t n;
    uint8_t *req = substitute(input, input_len, &n);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) fz_die("socketpair: %s", strerror(errno));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (MHD_add_connection(S.mhd, sv[0], (struct sockaddr *)&sa, sizeof(sa_family_t)) != MHD_YES)
        fz_die("MHD_add_connection failed");
    int cli = sv[1], eof = 0, quiet = 0;
    size_t sent = 0;
    /* Send, running the server whenever the socket is full; a server that stops reading (a suspended
     * stream, or a reply already queued) ends the sending after a while. */
    while (sent < n && !eof && quiet < QUIET_ROUNDS) {
        ssize_t w = send(cli, req + sent, n - sent, MSG_NOSIGNAL);
        if (w > 0) { sent += (size_t)w; quiet = 0; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break; /* the server hung up */
        pump();
        quiet = drain(cli, &eof) ? 0 : quiet + 1;
    }
    /* The reply: until the server hangs up or sends nothing for a while (keep-alive, an unfinished
     * request, an event stream). */
    int stuck = 0; /* rounds with bytes still unread by the server: it may never read them */
    for (quiet = 0; !eof && quiet < QUIET_ROUNDS && stuck < 16 * QUIET_ROUNDS;) {
        pump();
        int outq = 0;
        ioctl(cli, SIOCOUTQ, &outq);
        if (drain(cli, &eof)) quiet = stuck = 0;
        else if (outq > 0) stuck++;
        else quiet++;
    }
    close(cli);
    free(req);
    while (S.open > 0) {
        pump();
        if (S.open > 0) wait_events();
    }
}
