/* daemon/httpd.c — MHD on the libuv loop, and the connection policy. Runs only on the loop thread.
 * Why not MHD's own threads: all job state belongs to the loop; driving MHD from the loop means
 * handlers need no locks and server-sent events can be resumed directly when a job reports progress.
 * The policy (httpd.h, httpd_limits): MHD's idle timeout alone let a client that sends one byte every few
 * seconds hold a connection forever, and on loopback every client shares one address, so per-address
 * limits locked everyone out. Instead each connection is tracked from MHD's connection notifications and
 * the access handler, wrapped here, tells which phase it is in: headers (since it connected or its last
 * request ended), body, reply. A sweep timer cuts the ones in their headers past the deadline and the
 * bodies below the minimum rate; a newcomer past the budget evicts the oldest one still in its headers.
 * Cutting is shutdown() on the socket: MHD sees the error on its next run and closes the connection the
 * ordinary way (the request-completed callback runs), so MHD's state is never touched from outside.
 * A reply sent before its body was read (413 with the headers) gets a lingering close, as nginx and Apache
 * do: MHD closes the socket with the body still arriving, and closing with unread data resets the
 * connection, which can destroy the reply before the client reads it (a client that sends its whole body
 * first sees only a broken pipe). So the socket is kept (dup) and drained for a few seconds: the client
 * finishes sending, then reads the reply. */
#include "daemon/httpd.h"
#include "common/log.h"
#include "common/util.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

enum phase { PH_HEADERS, PH_BODY, PH_REPLY };

typedef struct hconn hconn;
typedef struct hlist { hconn *head, *tail; } hlist;

/* One open connection (MHD's socket context). */
struct hconn {
    struct MHD_Connection *conn;
    int fd;
    enum phase phase;
    double since;             /* util_mono() when this phase began */
    unsigned long long body;  /* body bytes handed to the handler in this request */
    int cut;                  /* shut down by us: MHD closes it on its next run */
    hlist *in;                /* h->waiting (PH_HEADERS, oldest first), h->bodies (PH_BODY), or NULL */
    hconn *prev, *next;
};

#define LINGER_S 5.0
#define LINGER_BYTES (64u << 20)
#define LINGER_MAX 64 /* sockets draining at once per listener; past it MHD's close is left as it is */

/* A socket drained after MHD closed it (see the top). */
typedef struct lingerer lingerer;
struct lingerer {
    uv_poll_t poll;
    httpd *h;
    int fd;          /* our dup: the socket stays open while MHD's descriptor is closed */
    double until;
    size_t drained;
    lingerer *prev, *next;
};

struct httpd {
    struct MHD_Daemon *mhd;
    uv_loop_t *loop;
    uv_poll_t poll;
    uv_timer_t timer, sweep;
    int port;
    int closing;   /* handles still open, once httpd_stop ran (0 before) */
    int listen_fd; /* the Unix socket we made (MHD closes it when it stops); -1 = TCP, MHD's own */
    char unix_path[108];
    char name[128];                       /* for the log: "tcp:127.0.0.1:8080" or the socket's path */
    httpd_limits lim;
    MHD_AccessHandlerCallback handler;    /* the application's, wrapped by on_request */
    MHD_RequestCompletedCallback completed;
    void *cls;
    hlist waiting, bodies;
    int live;                             /* connections open and not cut */
    lingerer *lingering;
    int n_lingering;           /* lingering closes open, those whose uv_close is under way included */
    unsigned long long late_headers, slow_bodies, evicted, refused; /* cut since the last report */
    double reported;
    double mhd_logged;                    /* when MHD's last message was logged */
    unsigned long long mhd_quiet;         /* MHD's messages not logged since */
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

/* ---------------- the connection policy ---------------- */

static void unlink_conn(hconn *c)
{
    if (!c->in) return;
    if (c->prev) c->prev->next = c->next;
    else c->in->head = c->next;
    if (c->next) c->next->prev = c->prev;
    else c->in->tail = c->prev;
    c->prev = c->next = NULL;
    c->in = NULL;
}

/* Move c to phase p, starting its clock; appending keeps h->waiting ordered oldest first. */
static void enter(httpd *h, hconn *c, enum phase p)
{
    unlink_conn(c);
    c->phase = p;
    c->since = util_mono();
    c->body = 0;
    hlist *l = p == PH_HEADERS ? &h->waiting : p == PH_BODY ? &h->bodies : NULL;
    if (!l || c->cut) return;
    c->prev = l->tail;
    if (l->tail) l->tail->next = c;
    else l->head = c;
    l->tail = c;
    c->in = l;
}

static void cut(httpd *h, hconn *c, unsigned long long *counter)
{
    if (c->cut) return;
    c->cut = 1;
    unlink_conn(c);
    h->live--;
    (*counter)++;
    /* no FIN-then-wait: the peer reads EOF at once, and MHD's next read or write fails and closes it */
    if (c->fd >= 0) shutdown(c->fd, SHUT_RDWR);
}

static hconn *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *i = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return i ? i->socket_context : NULL;
}

/* One warning per 10 s at most, with what was cut: a flood leaves a trace without a line per connection. */
static void report(httpd *h, double now)
{
    if (!(h->late_headers | h->slow_bodies | h->evicted | h->refused) || now - h->reported < 10) return;
    LOG(LOG_WARN, "msg=\"closed slow or surplus connections\" listener=%s late_headers=%llu slow_bodies=%llu"
                  " evicted=%llu refused=%llu open=%d max_connections=%d", h->name, h->late_headers, h->slow_bodies,
        h->evicted, h->refused, h->live, h->lim.max_connections);
    h->late_headers = h->slow_bodies = h->evicted = h->refused = 0;
    h->reported = now;
}

static void free_if_closed(httpd *h)
{
    if (h->closing > 0 && --h->closing == 0) free(h);
}

static void on_linger_closed(uv_handle_t *hd)
{
    lingerer *l = hd->data;
    httpd *h = l->h;
    close(l->fd);
    free(l);
    h->n_lingering--;  /* counted until here: httpd_stop waits for closes already under way too */
    free_if_closed(h);
}

static void linger_end(lingerer *l)
{
    httpd *h = l->h;
    if (l->prev) l->prev->next = l->next;
    else h->lingering = l->next;
    if (l->next) l->next->prev = l->prev;
    uv_close((uv_handle_t *)&l->poll, on_linger_closed);
}

static void on_linger(uv_poll_t *p, int status, int events)
{
    (void)events;
    lingerer *l = p->data;
    char buf[16384];
    ssize_t n = -1;
    while (l->drained <= LINGER_BYTES && (n = recv(l->fd, buf, sizeof buf, 0)) > 0) l->drained += (size_t)n;
    if (status < 0 || l->drained > LINGER_BYTES || n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        linger_end(l); /* the client is done (EOF, reset) or has sent enough */
}

static void linger_start(httpd *h, int fd)
{
    if (fd < 0 || h->n_lingering >= LINGER_MAX) return;
    lingerer *l = calloc(1, sizeof *l);
    int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (!l || dup_fd < 0 || uv_poll_init(h->loop, &l->poll, dup_fd) != 0) {
        /* best effort: without it the client may see a reset instead of the reply */
        if (dup_fd >= 0) close(dup_fd);
        free(l);
        return;
    }
    l->h = h;
    l->fd = dup_fd;
    l->until = util_mono() + LINGER_S;
    l->poll.data = l;
    l->next = h->lingering;
    if (l->next) l->next->prev = l;
    h->lingering = l;
    h->n_lingering++;
    uv_poll_start(&l->poll, UV_READABLE | UV_DISCONNECT, on_linger);
}

static void on_sweep(uv_timer_t *t)
{
    httpd *h = t->data;
    double now = util_mono();
    int any = 0;
    while (h->waiting.head && now - h->waiting.head->since > h->lim.header_timeout_s) {
        cut(h, h->waiting.head, &h->late_headers);
        any = 1;
    }
    for (hconn *c = h->bodies.head, *next; c; c = next) {
        next = c->next;
        /* on average body_min_rate bytes/s after a grace of one header deadline */
        if (now > c->since + h->lim.header_timeout_s + (double)c->body / h->lim.body_min_rate) {
            cut(h, c, &h->slow_bodies);
            any = 1;
        }
    }
    for (lingerer *l = h->lingering, *next; l; l = next) {
        next = l->next;
        if (now > l->until) linger_end(l);
    }
    report(h, now);
    if (any) run_mhd(h);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    httpd *h = cls;
    const union MHD_ConnectionInfo *fi = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        hconn *c = calloc(1, sizeof *c);
        if (!c) { /* untracked, it would escape every deadline: refuse it */
            if (fi) shutdown(fi->connect_fd, SHUT_RDWR);
            h->refused++;
            return;
        }
        c->conn = conn;
        c->fd = fi ? fi->connect_fd : -1;
        *socket_context = c;
        h->live++;
        enter(h, c, PH_HEADERS);
        if (h->live > h->lim.max_connections) {
            hconn *victim = h->waiting.head; /* the oldest still in its headers; c itself when none is older */
            cut(h, victim, victim == c ? &h->refused : &h->evicted);
        }
        return;
    }
    hconn *c = *socket_context;
    if (!c) return;
    if (!c->cut) h->live--;
    unlink_conn(c);
    free(c);
    *socket_context = NULL;
}

/* The access handler as MHD sees it: note the phase, then the application's. MHD calls it once when the
 * headers are in, once per piece of body, and once more with no data when the body is complete. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    httpd *h = cls;
    hconn *c = conn_of(conn);
    if (c && !c->cut) {
        if (c->phase == PH_HEADERS) enter(h, c, PH_BODY);
        else if (*upload_data_size) c->body += *upload_data_size;
        else if (c->phase == PH_BODY) enter(h, c, PH_REPLY);
    }
    return h->handler(h->cls, conn, url, method, version, upload_data, upload_data_size, req_cls);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls, enum MHD_RequestTerminationCode toe)
{
    httpd *h = cls;
    hconn *c = conn_of(conn);
    /* still in its body: the reply went out before the body was read, and MHD closes the socket next */
    if (c && !c->cut && c->phase == PH_BODY && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) linger_start(h, c->fd);
    if (c && !c->cut) enter(h, c, PH_HEADERS); /* keep-alive: the next request's headers are due in time too */
    if (h->completed) h->completed(h->cls, conn, req_cls, toe);
}

/* MHD reports each broken client connection: a flood would write thousands of lines. One per 10 s. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    httpd *h = cls;
    double now = util_mono();
    if (h->mhd_logged > 0 && now - h->mhd_logged < 10) {
        h->mhd_quiet++;
        return;
    }
    char msg[300];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\r\n")] = 0;
    LOG(LOG_WARN, "msg=\"libmicrohttpd: %s\" listener=%s unlogged_since_last=%llu", msg, h->name, h->mhd_quiet);
    h->mhd_logged = now;
    h->mhd_quiet = 0;
}

/* Each connection is a descriptor: the usual soft limit of 1024 would refuse connections long before the
 * budget. Raised once, to the hard limit. */
static void raise_nofile(int want)
{
    static int done;
    struct rlimit rl;
    if (done || getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    done = 1;
    rlim_t was = rl.rlim_cur, to = rl.rlim_max == RLIM_INFINITY ? (rlim_t)1 << 20 : rl.rlim_max;
    if (was != RLIM_INFINITY && was < to) {
        rl.rlim_cur = to;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            LOG(LOG_INFO, "msg=\"raised the open-files limit\" from=%llu to=%llu", (unsigned long long)was,
                (unsigned long long)to);
        else
            rl.rlim_cur = was;
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)want)
        LOG(LOG_WARN, "msg=\"the open-files limit is below what max-connections needs: connections past it are"
                      " refused\" limit=%llu needs=%d", (unsigned long long)rl.rlim_cur, want);
}

static void set_limits(httpd *h, const httpd_limits *lim)
{
    h->lim = lim ? *lim : (httpd_limits){0};
    if (!(h->lim.header_timeout_s > 0)) h->lim.header_timeout_s = HTTPD_HEADER_TIMEOUT_S;
    if (!(h->lim.body_min_rate > 0)) h->lim.body_min_rate = HTTPD_BODY_MIN_RATE;
    if (h->lim.max_connections <= 0) h->lim.max_connections = HTTPD_MAX_CONNECTIONS;
}

/* MHD's own cap stays above the budget: cut connections are counted by MHD until its next run closes them. */
static unsigned int mhd_limit(const httpd *h) { return (unsigned int)(h->lim.max_connections + h->lim.max_connections / 4 + 16); }

int httpd_tls_supported(void) { return MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES; }

static int attach(httpd *h, uv_loop_t *loop, httpd **out, int port, char *err, size_t errlen);

int httpd_start(httpd **out, uv_loop_t *loop, const char *host, int port, const char *tls_cert, const char *tls_key,
                const httpd_limits *lim, MHD_AccessHandlerCallback handler, MHD_RequestCompletedCallback completed, void *cls,
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
    set_limits(h, lim);
    h->handler = handler;
    h->completed = completed;
    h->cls = cls;
    snprintf(h->name, sizeof h->name, "tcp:%s", host); /* attach adds the bound port */
    raise_nofile(2 * h->lim.max_connections + 256); /* TCP and the Unix socket, the database, job files */
    unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    /* TLS only adds the certificate and key; an empty array when it is off */
    const int tls = tls_cert && tls_key;
    struct MHD_OptionItem tls_opts[] = {
        {tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, (void *)tls_cert},
        {tls ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, (void *)tls_key},
        {MHD_OPTION_END, 0, NULL}};
    if (tls) flags |= MHD_USE_TLS;
    /* no per-address limit: on loopback every client has the same address (the budget is h->lim's);
     * MHD's idle timeout stays for replies a client does not read */
    h->mhd = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, h,
                              MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h, /* first, or MHD complains */
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                              MHD_OPTION_ARRAY, tls_opts,
                              MHD_OPTION_CONNECTION_LIMIT, mhd_limit(h),
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                              MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)1,
                              MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)1024,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                              MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                              MHD_OPTION_END);
    if (!h->mhd) {
        snprintf(err, errlen, "cannot listen on %s:%d%s: %s", host, port, tls_cert ? " with TLS (check the certificate and key)" : "",
                 strerror(errno ? errno : EADDRINUSE));
        free(h);
        return -EADDRINUSE;
    }
    return attach(h, loop, out, port, err, errlen);
}

int httpd_start_unix(httpd **out, uv_loop_t *loop, const char *path, const httpd_limits *lim,
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
    if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0 || chmod(path, 0666) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -EIO;
    }
    httpd *h = calloc(1, sizeof *h);
    if (!h) { close(fd); unlink(path); snprintf(err, errlen, "out of memory"); return -ENOMEM; }
    h->listen_fd = fd;
    snprintf(h->unix_path, sizeof h->unix_path, "%s", path);
    snprintf(h->name, sizeof h->name, "unix:%.100s", path);
    set_limits(h, lim);
    h->handler = handler;
    h->completed = completed;
    h->cls = cls;
    h->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, h,
                              MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
                              MHD_OPTION_LISTEN_SOCKET, fd,
                              MHD_OPTION_CONNECTION_LIMIT, mhd_limit(h),
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                              MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
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
    if (h->listen_fd < 0) {
        size_t n = strlen(h->name);
        snprintf(h->name + n, sizeof h->name - n, ":%d", h->port);
    }
    if (!info || uv_poll_init(loop, &h->poll, info->epoll_fd) != 0 || uv_timer_init(loop, &h->timer) != 0 ||
        uv_timer_init(loop, &h->sweep) != 0) {
        snprintf(err, errlen, "cannot attach the HTTP server to the event loop");
        MHD_stop_daemon(h->mhd); /* closes a socket it was given too */
        if (h->listen_fd >= 0) unlink(h->unix_path);
        free(h);
        return -EIO;
    }
    h->loop = loop;
    h->poll.data = h->timer.data = h->sweep.data = h;
    uv_poll_start(&h->poll, UV_READABLE, on_poll);
    uv_timer_start(&h->sweep, on_sweep, 250, 250); /* deadlines are seconds: a quarter second late at worst */
    run_mhd(h);
    *out = h;
    return 0;
}

int httpd_port(const httpd *h) { return h->port; }

void httpd_kick(httpd *h) { run_mhd(h); }

static void on_closed(uv_handle_t *hd) { free_if_closed(hd->data); }

void httpd_stop(httpd *h)
{
    if (!h) return;
    uv_poll_stop(&h->poll);
    uv_timer_stop(&h->timer);
    uv_timer_stop(&h->sweep);
    MHD_stop_daemon(h->mhd); /* closes connections; completion callbacks run here */
    h->mhd = NULL;
    if (h->listen_fd >= 0) { /* MHD_stop_daemon closed the socket it was given */
        unlink(h->unix_path);
        h->listen_fd = -1;
    }
    h->closing = 3 + h->n_lingering;
    while (h->lingering) linger_end(h->lingering);
    uv_close((uv_handle_t *)&h->poll, on_closed);
    uv_close((uv_handle_t *)&h->timer, on_closed);
    uv_close((uv_handle_t *)&h->sweep, on_closed);
}
