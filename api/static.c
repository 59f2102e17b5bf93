/* api/static.c — serves the dashboard's files (see api/static.h). Loop thread only; never logs.
 * A request path is checked segment by segment (no empty, `.`, `..` or dot-file segments), resolved with
 * realpath() and must stay under the canonical web root; the resolved path is then opened with
 * O_NOFOLLOW | O_NONBLOCK and fstat()ed, so a symlink swapped in meanwhile or a FIFO is refused without
 * blocking the loop. The root is resolved per request: the daemon starts (API only) without it. */
#define _GNU_SOURCE
#include "api/static.h"
#include "common/util.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *ext, *type;
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},
    {".map", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".txt", "text/plain; charset=utf-8"},
    {".woff2", "font/woff2"},
};

/* The dashboard's own files change with the daemon: revalidate every time (cheap: ETag -> 304). Chart.js
 * changes only with a Debian upgrade. */
#define CACHE_SITE "no-cache"
#define CACHE_VENDOR "public, max-age=86400"

static const char *content_type(const char *path)
{
    size_t n = strlen(path);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        size_t k = strlen(types[i].ext);
        if (n > k && !strcmp(path + n - k, types[i].ext)) return types[i].type;
    }
    return "application/octet-stream";
}

int static_claims(const char *url)
{
    return !strcmp(url, "/") || !strcmp(url, "/index.html") || !strncmp(url, "/web/", 5);
}

static int not_found(svc_error *e, const char *url)
{
    char q[201];                   /* a client's string, quoted in a message */
    return svc_fail(e, SVC_ENOTFOUND, "not_found", NULL, "no dashboard file '%s'", util_quote(q, sizeof q, url));
}

/* Every segment of rel (no leading slash) is a plain name: not empty, not starting with a dot. */
static int safe_relative(const char *rel)
{
    if (!*rel) return 0;
    for (const char *p = rel;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || p[0] == '.' || memchr(p, '\\', len)) return 0;
        if (!slash) return 1;
        p = slash + 1;
    }
}

static int regular_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int static_resolve(const static_cfg *cfg, const char *url, static_file *f, svc_error *e)
{
    const char *root_cfg = cfg && cfg->web_root ? cfg->web_root : "web";
    if (!static_claims(url)) return not_found(e, url);
    if (!strcmp(url, STATIC_CHARTJS_URL)) {
        const char *cj = cfg && cfg->chartjs_path ? cfg->chartjs_path : STATIC_CHARTJS_DEFAULT;
        if (!realpath(cj, f->path) || !regular_file(f->path))
            return svc_fail(e, SVC_ENOTFOUND, "not_found", NULL,
                            "Chart.js is not installed at %.200s (Debian package libjs-chart.js)", cj);
        f->content_type = content_type(f->path);
        f->cache = CACHE_VENDOR;
        return 0;
    }
    const char *rel = !strcmp(url, "/") || !strcmp(url, "/index.html") ? "index.html" : url + 5;
    if (!safe_relative(rel)) return not_found(e, url);
    char root[PATH_MAX], want[PATH_MAX * 2];
    if (!realpath(root_cfg, root))
        return svc_fail(e, SVC_ENOTFOUND, "not_found", NULL, "the dashboard is not installed (no web root %.200s)",
                        root_cfg);
    snprintf(want, sizeof want, "%s/%s", root, rel);
    if (strlen(want) >= PATH_MAX || !realpath(want, f->path)) return not_found(e, url);
    size_t rl = strlen(root);
    if (strncmp(f->path, root, rl) != 0 || f->path[rl] != '/') return not_found(e, url); /* left the root */
    if (!regular_file(f->path)) return not_found(e, url);
    f->content_type = content_type(f->path);
    f->cache = CACHE_SITE;
    return 0;
}

int static_serve(const static_cfg *cfg, struct MHD_Connection *conn, const char *method, const char *url,
                 enum MHD_Result *ret, svc_error *e)
{
    if (!static_claims(url)) return 0;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return svc_fail(e, SVC_EMETHOD, NULL, NULL, "use GET on this route");
    static_file f;
    int rc = static_resolve(cfg, url, &f, e);
    if (rc) return rc;
    int fd = open(f.path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        return not_found(e, url);
    }
    char etag[64];
    snprintf(etag, sizeof etag, "\"%llx-%llx-%lx\"", (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec, (unsigned long)st.st_mtim.tv_nsec);
    const char *inm = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    struct MHD_Response *r;
    unsigned int status = MHD_HTTP_OK;
    if (inm && strstr(inm, etag)) {
        close(fd);
        status = MHD_HTTP_NOT_MODIFIED;
        r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    } else {
        r = MHD_create_response_from_fd((uint64_t)st.st_size, fd); /* takes the fd */
        if (!r) close(fd);
    }
    if (!r) return svc_fail(e, SVC_EINTERNAL, "internal_error", NULL, "out of memory");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, f.content_type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, f.cache);
    MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, etag);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    if (!strncmp(f.content_type, "text/html", 9)) {
        /* The page holds an API token: only our own scripts, styles and connections, and no framing. */
        MHD_add_response_header(r, "Content-Security-Policy",
                                "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
                                "base-uri 'none'; form-action 'self'");
        MHD_add_response_header(r, "X-Frame-Options", "DENY");
    }
    *ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return 1;
}
