/* api/routes.c — the one route table and its matcher. Loop thread only (the table is constant, the
 * matcher keeps no state, so the unit test calls it directly). A URL is matched once, in the headers
 * phase: the match decides who may call (public or not), whether the body is an upload, which handler
 * runs, and the route's name in /metrics. No allocation, no logging; the result says 404 or 405.
 * URLs under /v1 are split the way clients have always been answered: leading slashes are skipped and one
 * trailing slash is ignored ("/v1/me/" is /v1/me); rows marked API__EXACT match only the URL as written. */
#include "api/api_int.h"
#include <stdio.h>
#include <string.h>

#define G API__GET
#define H API__HEAD
#define P API__POST
#define D API__DELETE

/* Order matters only between patterns that match the same URL: the first such pattern wins, so the
 * catch-all rows ({action}, {part}) come after the actions they stand behind. They exist because
 * unknown actions have always answered 405 "use GET" to other methods and 404 to GET. */
const api__route api__routes[] = {
    /* methods  path                                      handler               access       flags, label */
    {G | H, "/healthz",                                 api__healthz,         API__PUBLIC, API__EXACT, NULL},
    {G | H, "/readyz",                                  api__readyz,          API__USER,   API__EXACT, NULL},
    {G,     "/metrics",                                 api__metrics,         API__ADMIN,  API__EXACT, NULL},
    {G | H, "/v1/openapi.yaml",                         api__openapi,         API__PUBLIC, 0, NULL},
    {G | H, "/",                                        api__static,          API__PUBLIC, API__EXACT, "static"},
    {G | H, "/index.html",                              api__static,          API__PUBLIC, API__EXACT, "static"},
    {G | H, "/web/*",                                   api__static,          API__PUBLIC, 0, "static"},
    {G,     "/v1/fine_tuning/jobs",                     api__job_list,        API__USER,   0, NULL},
    {P,     "/v1/fine_tuning/jobs",                     api__job_create,      API__USER,   0, NULL},
    {G,     "/v1/fine_tuning/jobs/{id}",                api__job_get,         API__USER,   0, NULL},
    {D,     "/v1/fine_tuning/jobs/{id}",                api__job_delete,      API__USER,   0, NULL},
    {P,     "/v1/fine_tuning/jobs/{id}/cancel",         api__job_cancel,      API__USER,   0, NULL},
    {P,     "/v1/fine_tuning/jobs/{id}/pause",          api__job_pause,       API__USER,   0, NULL},
    {P,     "/v1/fine_tuning/jobs/{id}/resume",         api__job_resume,      API__USER,   0, NULL},
    {G,     "/v1/fine_tuning/jobs/{id}/events",         api__job_events,      API__USER,   0, NULL},
    {G,     "/v1/fine_tuning/jobs/{id}/checkpoints",    api__job_checkpoints, API__USER,   0, NULL},
    {G,     "/v1/fine_tuning/jobs/{id}/metrics",        api__job_metrics,     API__USER,   0, NULL},
    {G,     "/v1/fine_tuning/jobs/{id}/{action}",       api__no_route,        API__USER,   0, "other"},
    {G,     "/v1/fine_tuning/sweeps",                   api__sweep_list,      API__USER,   0, NULL},
    {P,     "/v1/fine_tuning/sweeps",                   api__sweep_create,    API__USER,   0, NULL},
    {G,     "/v1/fine_tuning/sweeps/{id}",              api__sweep_get,       API__USER,   0, NULL},
    {P,     "/v1/fine_tuning/sweeps/{id}/cancel",       api__sweep_cancel,    API__USER,   0, NULL},
    {G,     "/v1/fine_tuning/sweeps/{id}/events",       api__job_events,      API__USER,   0, NULL},
    {G,     "/v1/fine_tuning/sweeps/{id}/{action}",     api__no_route,        API__USER,   0, "other"},
    {G,     "/v1/models",                               api__model_list,      API__USER,   0, NULL},
    {G,     "/v1/models/{id}",                          api__model_get,       API__USER,   0, NULL},
    {D,     "/v1/models/{id}",                          api__model_delete,    API__USER,   0, NULL},
    {G,     "/v1/models/{id}/content",                  api__model_content,   API__USER,   0, NULL},
    {G,     "/v1/models/{id}/{part}",                   api__no_route,        API__USER,   0, "other"},
    {G,     "/v1/datasets",                             api__dataset_list,    API__USER,   0, NULL},
    {G,     "/v1/files",                                api__file_list,       API__USER,   0, NULL},
    {P,     "/v1/files",                                api__file_upload,     API__USER,   API__EXACT | API__UPLOAD, NULL},
    {G,     "/v1/files/{id}",                           api__file_get,        API__USER,   0, NULL},
    {D,     "/v1/files/{id}",                           api__file_delete,     API__USER,   0, NULL},
    {G,     "/v1/storage",                              api__storage,         API__USER,   0, NULL},
    {G,     "/v1/me",                                   api__me,              API__USER,   0, NULL},
    {G,     "/v1/users",                                api__users,           API__ADMIN,  0, NULL},
    {G,     "/v1/audit",                                api__audit,           API__ADMIN,  0, NULL},
};
const size_t api__n_routes = sizeof api__routes / sizeof api__routes[0];

#undef G
#undef H
#undef P
#undef D

static const struct { const char *name; unsigned bit; } methods[] = {
    {"GET", API__GET}, {"HEAD", API__HEAD}, {"POST", API__POST}, {"PUT", API__PUT}, {"PATCH", API__PATCH},
    {"DELETE", API__DELETE},
};

static unsigned method_bit(const char *m)
{
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (!strcmp(m, methods[i].name)) return methods[i].bit;
    return 0; /* OPTIONS, TRACE, anything else: no row takes it */
}

void api__methods_text(unsigned allowed, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = 0;
    if (allowed & API__GET) allowed &= ~(unsigned)API__HEAD;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if (!(allowed & methods[i].bit)) continue;
        int n = snprintf(buf + at, len - at, "%s%s", at ? " or " : "", methods[i].name);
        if (n < 0 || (size_t)n >= len - at) return;
        at += (size_t)n;
    }
}

#define MAX_SEGS 6 /* one more than the longest pattern: anything longer matches nothing */

typedef struct seg { const char *p; size_t len; } seg;

/* Split a path into segments: leading slashes skipped, one trailing slash ignored, inner empty segments
 * kept ("/v1//me" is v1, "", me). Returns how many (at most MAX_SEGS + 1: beyond that it stops). */
static int split(const char *path, seg *s)
{
    int n = 0;
    const char *p = path;
    while (*p == '/') p++;
    while (*p && n < MAX_SEGS + 1) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (n < MAX_SEGS) s[n] = (seg){p, len};
        n++;
        if (!slash) break;
        p = slash + 1;
    }
    return n;
}

/* Written as a pattern is: one leading slash and no trailing one (except "/" itself). */
static int canonical(const char *url)
{
    size_t n = strlen(url);
    return url[0] == '/' && url[1] != '/' && !(n > 1 && url[n - 1] == '/');
}

static int is_glob(const char *path)
{
    size_t n = strlen(path);
    return n >= 2 && !strcmp(path + n - 2, "/*");
}

static int is_param(seg s) { return s.len >= 2 && s.p[0] == '{' && s.p[s.len - 1] == '}'; }

/* Does url match the row's pattern (ignoring methods)? Fills m's parameters when it does. */
static int path_matches(const api__route *r, const char *url, const seg *us, int un, int canon, api__match *m)
{
    if (is_glob(r->path)) /* the prefix as written, including its slash */
        return strncmp(url, r->path, strlen(r->path) - 1) == 0;
    if ((r->flags & API__EXACT) && !canon) return 0;
    seg ps[MAX_SEGS];
    int pn = split(r->path, ps);
    if (pn != un || pn > MAX_SEGS) return 0;
    for (int i = 0; i < pn; i++)
        if (!is_param(ps[i]) && (ps[i].len != us[i].len || memcmp(ps[i].p, us[i].p, us[i].len) != 0)) return 0;
    m->n_params = 0;
    for (int i = 0; i < pn && m->n_params < API__MAX_PARAMS; i++) {
        if (!is_param(ps[i])) continue;
        int k = m->n_params++;
        snprintf(m->name[k], sizeof m->name[k], "%.*s", (int)(ps[i].len - 2), ps[i].p + 1);
        size_t len = us[i].len < API__SEG_MAX - 1 ? us[i].len : API__SEG_MAX - 1;
        memcpy(m->param[k], us[i].p, len);
        m->param[k][len] = 0;
    }
    return 1;
}

int api__route_match(const char *method, const char *url, api__match *m)
{
    memset(m, 0, sizeof *m);
    seg us[MAX_SEGS];
    int un = split(url, us);
    m->canonical = canonical(url);
    size_t first = 0;
    while (first < api__n_routes && !path_matches(&api__routes[first], url, us, un, m->canonical, m)) first++;
    if (first == api__n_routes) return SVC_ENOTFOUND;
    m->path_row = &api__routes[first];
    unsigned bit = method_bit(method);
    api__match scratch;
    for (size_t i = first; i < api__n_routes; i++) {
        const api__route *r = &api__routes[i];
        if (strcmp(r->path, m->path_row->path) != 0) continue;
        m->allowed |= r->methods;
        if (!m->row && (r->methods & bit) && path_matches(r, url, us, un, m->canonical, &scratch)) m->row = r;
    }
    return m->row ? 0 : SVC_EMETHOD;
}

const char *api__param(const api__match *m, const char *name)
{
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->name[i], name)) return m->param[i];
    return NULL;
}

enum api__access api__route_access(const api__match *m)
{
    if (m->row) return m->row->access;
    return m->path_row ? m->path_row->access : API__USER;
}

const char *api__route_label(const api__match *m)
{
    const api__route *r = m->path_row;
    if (!r) return "other";
    /* A route without parameters is named only when written exactly ("/v1/me/" is answered as /v1/me
     * but counted as "other"), as /metrics always has: dashboards keep their series. */
    if (!m->canonical && m->n_params == 0 && !is_glob(r->path)) return "other";
    return r->label ? r->label : r->path;
}

enum MHD_Result api__no_route(api__call *c)
{
    return api__fail(c, SVC_ENOTFOUND, "not_found", NULL, "no such route");
}
