/* daemon/httpd.c — MHD on the libuv loop. Runs only on the loop thread.
 * Why not MHD's own threads: all job state belongs to the loop; driving MHD from the loop means
 * handlers need no locks and server-sent events can be resumed directly when a job reports progress. */
#include "daemon/httpd.h"
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct httpd {
    struct MHD_Daemon *mhd;
    uv_poll_t poll;
    uv_timer_t timer;
    int port;
    int closing;   /* handles still open */
    int listen_fd; /* the Unix socket we made (MHD closes it when it stops); -1 = TCP, MHD's own */
    char unix_path[108];
};

static void run_mhd(httpd *h);

static void on_timer(uv_timer_t *t) { run_mhd(t->data); }

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status; (void)events;
    run_mhd(p->data);
}

static void run_mhd(httpd *h)
{
    if (!h->mhd) return;
    MHD_run(h->mhd);
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(h->mhd, &ms) == MHD_YES) {
        if (ms > 1000) ms = 1000;
        uv_timer_start(&h->timer, on_timer, ms, 0);
    } else {
        uv_timer_start(&h->timer, on_timer, 1000, 0); /* idle-connection timeouts, at worst 1 s late */
    }
}

int httpd_tls_supported(void) { return MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES; }

static int attach(httpd *h, uv_loop_t *loop, httpd **out, int port, char *err, size_t errlen);

int httpd_start(httpd **out, uv_loop_t *loop, const char *host, int port, const char *tls_cert, const char *tls_key,
                MHD_AccessHandlerCallback handler, MHD_RequestCompletedCallback completed, void *cls,
                char *err, size_t errlen)
{
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        snprintf(err, errlen, "listen address '%s' is not an IPv4 address", host);
        return -EINVAL;
    }
    httpd *h = calloc(1, sizeof *h);
    if (!h) { snprintf(err, errlen, "out of memory"); return -ENOMEM; }
    h->listen_fd = -1;
    unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    /* TLS only adds the certificate and key; an empty array when it is off */
    const int tls = tls_cert && tls_key;
    struct MHD_OptionItem tls_opts[] = {
        {tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, (void *)tls_cert},
        {tls ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, (void *)tls_key},
        {MHD_OPTION_END, 0, NULL}};
    if (tls) flags |= MHD_USE_TLS;
    h->mhd = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handler, cls,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                              MHD_OPTION_ARRAY, tls_opts,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned int)512,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                              MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)1,
                              MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)128,
                              MHD_OPTION_NOTIFY_COMPLETED, completed, cls,
                              MHD_OPTION_END);
    if (!h->mhd) {
        snprintf(err, errlen, "cannot listen on %s:%d%s: %s", host, port, tls_cert ? " with TLS (check the certificate and key)" : "",
                 strerror(errno ? errno : EADDRINUSE));
        free(h);
        return -EADDRINUSE;
    }
    return attach(h, loop, out, port, err, errlen);
}

int httpd_start_unix(httpd **out, uv_loop_t *loop, const char *path,
                     MHD_AccessHandlerCallback handler, MHD_RequestCompletedCallback completed, void *cls,
                     char *err, size_t errlen)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sun.sun_path) {
        snprintf(err, errlen, "socket path '%.200s' is longer than %zu bytes", path, sizeof sun.sun_path - 1);
        return -ENAMETOOLONG;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "%s exists and is not a socket", path);
            return -EEXIST;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int live = probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof sun) == 0;
        if (probe >= 0) close(probe);
        if (live) {
            snprintf(err, errlen, "another coretuned is already serving on %s", path);
            return -EADDRINUSE;
        }
        unlink(path); /* stale: left by a daemon that was killed */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0 || chmod(path, 0666) != 0 || listen(fd, 128) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -EIO;
    }
    httpd *h = calloc(1, sizeof *h);
    if (!h) { close(fd); unlink(path); snprintf(err, errlen, "out of memory"); return -ENOMEM; }
    h->listen_fd = fd;
    snprintf(h->unix_path, sizeof h->unix_path, "%s", path);
    h->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL, handler, cls,
                              MHD_OPTION_LISTEN_SOCKET, fd,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned int)512,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                              MHD_OPTION_NOTIFY_COMPLETED, completed, cls,
                              MHD_OPTION_END);
    if (!h->mhd) {
        snprintf(err, errlen, "cannot serve on %s: %s", path, strerror(errno ? errno : EIO));
        close(fd);
        unlink(path);
        free(h);
        return -EIO;
    }
    return attach(h, loop, out, 0, err, errlen);
}

static int attach(httpd *h, uv_loop_t *loop, httpd **out, int port, char *err, size_t errlen)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *pinfo = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    h->port = pinfo ? pinfo->port : port;
    if (!info || uv_poll_init(loop, &h->poll, info->epoll_fd) != 0 || uv_timer_init(loop, &h->timer) != 0) {
        snprintf(err, errlen, "cannot attach the HTTP server to the event loop");
        MHD_stop_daemon(h->mhd); /* closes a socket it was given too */
        if (h->listen_fd >= 0) unlink(h->unix_path);
        free(h);
        return -EIO;
    }
    h->poll.data = h->timer.data = h;
    uv_poll_start(&h->poll, UV_READABLE, on_poll);
    run_mhd(h);
    *out = h;
    return 0;
}

int httpd_port(const httpd *h) { return h->port; }

void httpd_kick(httpd *h) { run_mhd(h); }

static void on_closed(uv_handle_t *hd)
{
    httpd *h = hd->data;
    if (--h->closing == 0) free(h);
}

void httpd_stop(httpd *h)
{
    if (!h) return;
    uv_poll_stop(&h->poll);
    uv_timer_stop(&h->timer);
    MHD_stop_daemon(h->mhd); /* closes connections; completion callbacks run here */
    h->mhd = NULL;
    if (h->listen_fd >= 0) { /* MHD_stop_daemon closed the socket it was given */
        unlink(h->unix_path);
        h->listen_fd = -1;
    }
    h->closing = 2;
    uv_close((uv_handle_t *)&h->poll, on_closed);
    uv_close((uv_handle_t *)&h->timer, on_closed);
}
