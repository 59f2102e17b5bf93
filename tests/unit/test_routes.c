/* tests/unit/test_routes.c — the route table and its matcher (api/routes.c) without a server: every row
 * matches an example of its pattern with each of its methods, path parameters are extracted (and cut at
 * API__SEG_MAX - 1 bytes), a wrong method gives 405 with the pattern's allowed set, unknown paths give
 * 404, who may call each route, the /metrics labels (the same strings as before the table existed), and
 * hostile paths: very long, thousands of segments, `..`, empty segments, doubled slashes, percent signs.
 * Pure functions over a constant table; single-threaded cmocka binary. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

static const char *const method_names[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"};

/* An example URL of a row: "{name}" -> "p-name", a final "*" -> "app.js". */
static void example(const char *path, char *out, size_t len)
{
    size_t at = 0;
    for (const char *p = path; *p && at + 1 < len;) {
        if (*p == '{') {
            const char *end = strchr(p, '}');
            at += (size_t)snprintf(out + at, len - at, "p-%.*s", (int)(end - p - 1), p + 1);
            p = end + 1;
        } else if (*p == '*') {
            at += (size_t)snprintf(out + at, len - at, "app.js");
            p++;
        } else {
            out[at++] = *p++;
        }
    }
    out[at] = 0;
}

static void test_every_row_matches_its_example(void **state)
{
    (void)state;
    for (size_t i = 0; i < api__n_routes; i++) {
        const api__route *r = &api__routes[i];
        char url[256];
        example(r->path, url, sizeof url);
        for (size_t k = 0; k < sizeof method_names / sizeof method_names[0]; k++) {
            if (!(r->methods & (1u << k))) continue;
            api__match m;
            int rc = api__route_match(method_names[k], url, &m);
            if (rc != 0 || m.row != r) fail_msg("%s %s matched row %d, not %zu (%s)", method_names[k], url,
                                                m.row ? (int)(m.row - api__routes) : -1, i, r->path);
            assert_non_null(m.path_row);
            assert_string_equal(m.path_row->path, r->path);
            for (int p = 0; p < m.n_params; p++) {
                char want[32];
                snprintf(want, sizeof want, "p-%s", m.name[p]);
                assert_string_equal(m.param[p], want);
            }
        }
    }
}

static void test_table_is_consistent(void **state)
{
    (void)state;
    for (size_t i = 0; i < api__n_routes; i++) {
        const api__route *r = &api__routes[i];
        assert_int_equal(r->path[0], '/');
        assert_non_null(r->fn);
        assert_int_not_equal(r->methods, 0);
        for (size_t j = i + 1; j < api__n_routes; j++) {
            if (strcmp(api__routes[j].path, r->path) != 0) continue;
            assert_int_equal(api__routes[j].methods & r->methods, 0); /* one handler per method */
            assert_int_equal(api__routes[j].access, r->access);        /* one answer to "who may call" */
        }
    }
}

typedef struct ex {
    const char *method, *url;
    int rc;
    const char *label;
    const char *path;   /* the matched pattern, NULL = none */
    const char *id;     /* the "id" parameter, NULL = none */
} ex;

/* The labels are the strings the old route_of() gave for these URLs, whatever the method. */
static const ex examples[] = {
    {"GET", "/healthz", 0, "/healthz", "/healthz", NULL},
    {"HEAD", "/healthz", 0, "/healthz", "/healthz", NULL},
    {"GET", "/readyz", 0, "/readyz", "/readyz", NULL},
    {"GET", "/metrics", 0, "/metrics", "/metrics", NULL},
    {"GET", "/", 0, "static", "/", NULL},
    {"HEAD", "/index.html", 0, "static", "/index.html", NULL},
    {"GET", "/web/app.js", 0, "static", "/web/*", NULL},
    {"GET", "/web/vendor/chart.js", 0, "static", "/web/*", NULL},
    {"GET", "/web/", 0, "static", "/web/*", NULL},
    {"GET", "/v1/fine_tuning/jobs", 0, "/v1/fine_tuning/jobs", "/v1/fine_tuning/jobs", NULL},
    {"POST", "/v1/fine_tuning/jobs", 0, "/v1/fine_tuning/jobs", "/v1/fine_tuning/jobs", NULL},
    {"GET", "/v1/fine_tuning/jobs/ftjob-1", 0, "/v1/fine_tuning/jobs/{id}", "/v1/fine_tuning/jobs/{id}", "ftjob-1"},
    {"POST", "/v1/fine_tuning/jobs/ftjob-1/cancel", 0, "/v1/fine_tuning/jobs/{id}/cancel", "/v1/fine_tuning/jobs/{id}/cancel", "ftjob-1"},
    {"POST", "/v1/fine_tuning/jobs/ftjob-1/pause", 0, "/v1/fine_tuning/jobs/{id}/pause", "/v1/fine_tuning/jobs/{id}/pause", "ftjob-1"},
    {"POST", "/v1/fine_tuning/jobs/ftjob-1/resume", 0, "/v1/fine_tuning/jobs/{id}/resume", "/v1/fine_tuning/jobs/{id}/resume", "ftjob-1"},
    {"GET", "/v1/fine_tuning/jobs/ftjob-1/events", 0, "/v1/fine_tuning/jobs/{id}/events", "/v1/fine_tuning/jobs/{id}/events", "ftjob-1"},
    {"GET", "/v1/fine_tuning/jobs/ftjob-1/checkpoints", 0, "/v1/fine_tuning/jobs/{id}/checkpoints", "/v1/fine_tuning/jobs/{id}/checkpoints", "ftjob-1"},
    {"GET", "/v1/fine_tuning/jobs/ftjob-1/metrics", 0, "/v1/fine_tuning/jobs/{id}/metrics", "/v1/fine_tuning/jobs/{id}/metrics", "ftjob-1"},
    {"GET", "/v1/fine_tuning/jobs/ftjob-1/bogus", 0, "other", "/v1/fine_tuning/jobs/{id}/{action}", "ftjob-1"},
    {"GET", "/v1/models", 0, "/v1/models", "/v1/models", NULL},
    {"GET", "/v1/models/ft:resnet18:abc", 0, "/v1/models/{id}", "/v1/models/{id}", "ft:resnet18:abc"},
    {"GET", "/v1/models/resnet18/content", 0, "/v1/models/{id}/content", "/v1/models/{id}/content", "resnet18"},
    {"GET", "/v1/models/resnet18/other", 0, "other", "/v1/models/{id}/{part}", "resnet18"},
    {"GET", "/v1/datasets", 0, "/v1/datasets", "/v1/datasets", NULL},
    {"GET", "/v1/files", 0, "/v1/files", "/v1/files", NULL},
    {"POST", "/v1/files", 0, "/v1/files", "/v1/files", NULL},
    {"GET", "/v1/files/file-1", 0, "/v1/files/{id}", "/v1/files/{id}", "file-1"},
    {"GET", "/v1/me", 0, "/v1/me", "/v1/me", NULL},
    {"GET", "/v1/users", 0, "/v1/users", "/v1/users", NULL},
    {"GET", "/v1/audit", 0, "/v1/audit", "/v1/audit", NULL},
    /* wrong methods: the path's route, 405 */
    {"POST", "/healthz", SVC_EMETHOD, "/healthz", "/healthz", NULL},
    {"HEAD", "/metrics", SVC_EMETHOD, "/metrics", "/metrics", NULL},
    {"DELETE", "/v1/fine_tuning/jobs/ftjob-1", 0, "/v1/fine_tuning/jobs/{id}", "/v1/fine_tuning/jobs/{id}", "ftjob-1"},
    {"DELETE", "/v1/files/file-1", 0, "/v1/files/{id}", "/v1/files/{id}", "file-1"},
    {"DELETE", "/v1/models/ft:resnet20:x", 0, "/v1/models/{id}", "/v1/models/{id}", "ft:resnet20:x"},
    {"DELETE", "/v1/fine_tuning/jobs/ftjob-1/cancel", SVC_EMETHOD, "/v1/fine_tuning/jobs/{id}/cancel", "/v1/fine_tuning/jobs/{id}/cancel", "ftjob-1"},
    {"GET", "/v1/storage", 0, "/v1/storage", "/v1/storage", NULL},
    {"GET", "/v1/fine_tuning/jobs/ftjob-1/cancel", SVC_EMETHOD, "/v1/fine_tuning/jobs/{id}/cancel", "/v1/fine_tuning/jobs/{id}/cancel", "ftjob-1"},
    {"POST", "/v1/fine_tuning/jobs/ftjob-1/bogus", SVC_EMETHOD, "other", "/v1/fine_tuning/jobs/{id}/{action}", "ftjob-1"},
    {"POST", "/v1/models/x/other", SVC_EMETHOD, "other", "/v1/models/{id}/{part}", "x"},
    {"OPTIONS", "/v1/me", SVC_EMETHOD, "/v1/me", "/v1/me", NULL},
    {"PUT", "/", SVC_EMETHOD, "static", "/", NULL},
    {"get", "/v1/me", SVC_EMETHOD, "/v1/me", "/v1/me", NULL},        /* methods are case-sensitive */
    /* unknown paths */
    {"GET", "/v2/models", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "/v1", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "/v1/fine_tuning", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "/v1/fine_tuning/models", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "/v1/datasets/x", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "/v1/files/x/y", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "/v1/me/x", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "/v1/models/x/content/y", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "/v1/fine_tuning/jobs/a/events/b", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "/metrics/x", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "/web", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "/website", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "/index.htm", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "", SVC_ENOTFOUND, "other", NULL, NULL},
    {"OPTIONS", "*", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "/V1/me", SVC_ENOTFOUND, "other", NULL, NULL},
    /* doubled and trailing slashes: /v1 routes are answered as always (leading slashes skipped, one
     * trailing slash ignored) but a route without parameters is then labelled "other"; exact rows
     * (/healthz, /readyz, /metrics, the dashboard, uploads) match only as written */
    {"GET", "/v1/me/", 0, "other", "/v1/me", NULL},
    {"GET", "//v1/me", 0, "other", "/v1/me", NULL},
    {"GET", "/v1/fine_tuning/jobs/", 0, "other", "/v1/fine_tuning/jobs", NULL},
    {"GET", "//v1/models/x", 0, "/v1/models/{id}", "/v1/models/{id}", "x"},
    {"GET", "/v1/models/x/", 0, "/v1/models/{id}", "/v1/models/{id}", "x"},
    {"POST", "/v1/files/", SVC_EMETHOD, "other", "/v1/files", NULL},
    {"GET", "/v1/me//", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "/v1//me", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "/healthz/", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "//healthz", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "//", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "//web/app.js", SVC_ENOTFOUND, "other", NULL, NULL},
    /* hostile segments: matched as plain text; the service or static.c refuses them */
    {"GET", "/v1/fine_tuning/jobs/../cancel", SVC_EMETHOD, "/v1/fine_tuning/jobs/{id}/cancel", "/v1/fine_tuning/jobs/{id}/cancel", ".."},
    {"GET", "/v1/fine_tuning/jobs/../..", 0, "other", "/v1/fine_tuning/jobs/{id}/{action}", ".."},
    {"POST", "/v1/fine_tuning/jobs/../cancel", 0, "/v1/fine_tuning/jobs/{id}/cancel", "/v1/fine_tuning/jobs/{id}/cancel", ".."},
    {"GET", "/v1/models/..", 0, "/v1/models/{id}", "/v1/models/{id}", ".."},
    {"GET", "/v1/../v1/me", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "/web/../etc/passwd", 0, "static", "/web/*", NULL},
    {"POST", "/v1/fine_tuning/jobs//cancel", 0, "/v1/fine_tuning/jobs/{id}/cancel", "/v1/fine_tuning/jobs/{id}/cancel", ""},
    {"GET", "/v1/fine_tuning/jobs//", 0, "/v1/fine_tuning/jobs/{id}", "/v1/fine_tuning/jobs/{id}", ""},
    {"GET", "/v1/models/%2e%2e", 0, "/v1/models/{id}", "/v1/models/{id}", "%2e%2e"},
    {"GET", "/v1/files/%", 0, "/v1/files/{id}", "/v1/files/{id}", "%"},
    {"GET", "/v1/me%2f", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "/v1/%6de", SVC_ENOTFOUND, "other", NULL, NULL},
    {"GET", "/v1/files/{id}", 0, "/v1/files/{id}", "/v1/files/{id}", "{id}"},
    {"GET", "/v1/models/a\\b", 0, "/v1/models/{id}", "/v1/models/{id}", "a\\b"},
};

static void test_examples(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof examples / sizeof examples[0]; i++) {
        const ex *x = &examples[i];
        api__match m;
        int rc = api__route_match(x->method, x->url, &m);
        if (rc != x->rc) fail_msg("%s '%s': rc %d, want %d", x->method, x->url, rc, x->rc);
        if (strcmp(api__route_label(&m), x->label) != 0)
            fail_msg("%s '%s': label %s, want %s", x->method, x->url, api__route_label(&m), x->label);
        if (!x->path) {
            assert_null(m.path_row);
            assert_null(m.row);
            assert_int_equal(m.allowed, 0);
            continue;
        }
        if (!m.path_row || strcmp(m.path_row->path, x->path) != 0)
            fail_msg("%s '%s': pattern %s, want %s", x->method, x->url, m.path_row ? m.path_row->path : "(none)", x->path);
        assert_true(rc == 0 ? m.row != NULL : m.row == NULL);
        const char *id = api__param(&m, "id");
        if (x->id) {
            if (!id || strcmp(id, x->id) != 0) fail_msg("%s '%s': id '%s', want '%s'", x->method, x->url, id ? id : "(none)", x->id);
        } else {
            assert_null(id);
        }
    }
}

static void test_parameters(void **state)
{
    (void)state;
    api__match m;
    assert_int_equal(api__route_match("GET", "/v1/fine_tuning/jobs/ftjob-9/zap", &m), 0);
    assert_int_equal(m.n_params, 2);
    assert_string_equal(api__param(&m, "id"), "ftjob-9");
    assert_string_equal(api__param(&m, "action"), "zap");
    assert_null(api__param(&m, "part"));
    assert_int_equal(api__route_match("GET", "/v1/models/ft:r18:x/content", &m), 0);
    assert_int_equal(m.n_params, 1);
    assert_string_equal(m.name[0], "id");
    assert_string_equal(m.param[0], "ft:r18:x");
    assert_int_equal(api__route_match("GET", "/v1/me", &m), 0);
    assert_int_equal(m.n_params, 0);
    assert_null(api__param(&m, "id"));
}

static void expect_405(const char *method, const char *url, unsigned allowed, const char *text)
{
    api__match m;
    assert_int_equal(api__route_match(method, url, &m), SVC_EMETHOD);
    assert_null(m.row);
    assert_int_equal(m.allowed, allowed);
    char buf[64];
    api__methods_text(m.allowed, buf, sizeof buf);
    assert_string_equal(buf, text);
}

static void test_wrong_methods(void **state)
{
    (void)state;
    /* the texts are those of today's "use ... on this route" messages */
    expect_405("DELETE", "/v1/fine_tuning/jobs", API__GET | API__POST, "GET or POST");
    expect_405("PUT", "/v1/files", API__GET | API__POST, "GET or POST");
    expect_405("POST", "/v1/files/", API__GET | API__POST, "GET or POST"); /* an upload only as written */
    expect_405("GET", "/v1/fine_tuning/jobs/x/pause", API__POST, "POST");
    expect_405("HEAD", "/v1/fine_tuning/jobs/x/events", API__GET, "GET");
    expect_405("POST", "/healthz", API__GET | API__HEAD, "GET");
    expect_405("POST", "/readyz", API__GET | API__HEAD, "GET");
    expect_405("HEAD", "/metrics", API__GET, "GET");
    expect_405("POST", "/web/app.js", API__GET | API__HEAD, "GET");
    expect_405("POST", "/v1/users", API__GET, "GET");
    expect_405("BREW", "/v1/audit", API__GET, "GET");
    char buf[8];
    api__methods_text(API__GET | API__POST, buf, sizeof buf); /* cut, still terminated */
    assert_true(strlen(buf) < sizeof buf);
    api__methods_text(0, buf, sizeof buf);
    assert_string_equal(buf, "");
}

static void expect_access(const char *method, const char *url, enum api__access want)
{
    api__match m;
    api__route_match(method, url, &m);
    if (api__route_access(&m) != want) fail_msg("%s %s: access %d, want %d", method, url, api__route_access(&m), want);
}

static void test_access(void **state)
{
    (void)state;
    expect_access("GET", "/healthz", API__PUBLIC);
    expect_access("POST", "/healthz", API__PUBLIC);         /* answered 405 without asking who */
    expect_access("GET", "/", API__PUBLIC);
    expect_access("GET", "/index.html", API__PUBLIC);
    expect_access("GET", "/web/app.js", API__PUBLIC);
    expect_access("DELETE", "/web/x", API__PUBLIC);
    expect_access("GET", "/healthz/", API__USER);           /* not the public route: 401 before 404 */
    expect_access("GET", "/readyz", API__USER);
    expect_access("GET", "/v1/me", API__USER);
    expect_access("POST", "/v1/files", API__USER);
    expect_access("POST", "/v1/files/", API__USER);
    expect_access("GET", "/v1/fine_tuning/jobs/x/events", API__USER);
    expect_access("GET", "/nope", API__USER);
    expect_access("GET", "/metrics", API__ADMIN);
    expect_access("POST", "/metrics", API__ADMIN);
    expect_access("GET", "/v1/users", API__ADMIN);
    expect_access("GET", "/v1/audit", API__ADMIN);
    expect_access("GET", "/v1/openapi.yaml", API__PUBLIC);
    /* exactly those three are admin-only, exactly /healthz, the API's description and the dashboard public */
    int admin = 0, pub = 0;
    for (size_t i = 0; i < api__n_routes; i++) {
        admin += api__routes[i].access == API__ADMIN;
        pub += api__routes[i].access == API__PUBLIC;
    }
    assert_int_equal(admin, 3);
    assert_int_equal(pub, 5);
}

static void test_uploads_only_as_written(void **state)
{
    (void)state;
    api__match m;
    assert_int_equal(api__route_match("POST", "/v1/files", &m), 0);
    assert_true(m.row->flags & API__UPLOAD);
    assert_int_equal(api__route_match("GET", "/v1/files", &m), 0);
    assert_false(m.row->flags & API__UPLOAD);
    assert_int_equal(api__route_match("POST", "//v1/files", &m), SVC_EMETHOD);
    for (size_t i = 0; i < api__n_routes; i++)
        if (api__routes[i].flags & API__UPLOAD) assert_string_equal(api__routes[i].path, "/v1/files");
}

/* Every label is a route template or "static"/"other": ids never become label values. */
static void test_labels_are_templates(void **state)
{
    (void)state;
    static const char *const today[] = {
        "/healthz", "/readyz", "/metrics", "/v1/fine_tuning/jobs", "/v1/models", "/v1/datasets", "/v1/files", "/v1/me",
        "/v1/users", "/v1/audit", "static", "other", "/v1/fine_tuning/jobs/{id}", "/v1/fine_tuning/jobs/{id}/cancel",
        "/v1/fine_tuning/jobs/{id}/pause", "/v1/fine_tuning/jobs/{id}/resume", "/v1/fine_tuning/jobs/{id}/events",
        "/v1/fine_tuning/jobs/{id}/checkpoints", "/v1/fine_tuning/jobs/{id}/metrics", "/v1/models/{id}",
        "/v1/models/{id}/content", "/v1/files/{id}", "/v1/fine_tuning/sweeps", "/v1/fine_tuning/sweeps/{id}",
        "/v1/fine_tuning/sweeps/{id}/cancel", "/v1/fine_tuning/sweeps/{id}/events", "/v1/openapi.yaml", "/v1/storage"};
    for (size_t i = 0; i < api__n_routes; i++) {
        const char *l = api__routes[i].label ? api__routes[i].label : api__routes[i].path;
        size_t k = 0;
        while (k < sizeof today / sizeof today[0] && strcmp(today[k], l) != 0) k++;
        if (k == sizeof today / sizeof today[0]) fail_msg("row %zu: label %s is new", i, l);
    }
}

static void test_hostile_long(void **state)
{
    (void)state;
    api__match m;
    /* an id far over the segment limit: matched, cut to API__SEG_MAX - 1 bytes */
    size_t n = 5000;
    char *url = malloc(n + 64);
    assert_non_null(url);
    int at = snprintf(url, 64, "/v1/fine_tuning/jobs/");
    memset(url + at, 'a', n);
    strcpy(url + at + n, "/events");
    assert_int_equal(api__route_match("GET", url, &m), 0);
    assert_string_equal(api__route_label(&m), "/v1/fine_tuning/jobs/{id}/events");
    assert_int_equal(strlen(api__param(&m, "id")), API__SEG_MAX - 1);
    /* a literal segment over the limit is not the literal */
    at = snprintf(url, 64, "/v1/");
    memset(url + at, 'm', n);
    url[at + n] = 0;
    assert_int_equal(api__route_match("GET", url, &m), SVC_ENOTFOUND);
    free(url);
    /* 100 000 segments, 1 MiB of slashes, a long run of ".." */
    size_t big = 200000;
    url = malloc(big + 1);
    assert_non_null(url);
    for (size_t i = 0; i < big; i += 2) { url[i] = '/'; url[i + 1] = 'a'; }
    url[big] = 0;
    assert_int_equal(api__route_match("GET", url, &m), SVC_ENOTFOUND);
    assert_string_equal(api__route_label(&m), "other");
    memset(url, '/', big);
    assert_int_equal(api__route_match("GET", url, &m), SVC_ENOTFOUND);
    for (size_t i = 0; i + 3 <= big; i += 3) memcpy(url + i, "/..", 3);
    url[big - big % 3] = 0;
    assert_int_equal(api__route_match("GET", url, &m), SVC_ENOTFOUND);
    /* the dashboard's prefix with a long tail: static.c decides */
    memset(url, 'x', big);
    memcpy(url, "/web/", 5);
    url[big] = 0;
    assert_int_equal(api__route_match("GET", url, &m), 0);
    assert_string_equal(api__route_label(&m), "static");
    free(url);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_row_matches_its_example),
        cmocka_unit_test(test_table_is_consistent),
        cmocka_unit_test(test_examples),
        cmocka_unit_test(test_parameters),
        cmocka_unit_test(test_wrong_methods),
        cmocka_unit_test(test_access),
        cmocka_unit_test(test_uploads_only_as_written),
        cmocka_unit_test(test_labels_are_templates),
        cmocka_unit_test(test_hostile_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
