/* tests/unit/test_static.c — api/static.c without a server: which URLs the dashboard claims, how a URL maps
 * to a file under the web root (Content-Type, Cache-Control), and everything refused with 404: `..`, empty
 * and dot-file segments, symlinks that leave the root, directories, FIFOs, missing files and a missing
 * root; Chart.js from its configured path. Works in a fresh temporary directory; single-threaded cmocka. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/static.h"

static char tmp[256], root[300], outside[300], chart[300];

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    char p[600];
    snprintf(tmp, sizeof tmp, "%s/ct-static-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp)) return -1;
    snprintf(root, sizeof root, "%s/web", tmp);
    snprintf(outside, sizeof outside, "%s/secret.txt", tmp);
    snprintf(chart, sizeof chart, "%s/chart.min.js", tmp);
    mkdir(root, 0755);
    snprintf(p, sizeof p, "%s/sub", root); mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/index.html", root); put(p, "<!doctype html>");
    snprintf(p, sizeof p, "%s/app.js", root); put(p, "export {};");
    snprintf(p, sizeof p, "%s/style.css", root); put(p, "body{}");
    snprintf(p, sizeof p, "%s/sub/data.bin", root); put(p, "x");
    snprintf(p, sizeof p, "%s/.env", root); put(p, "TOKEN=1");
    put(outside, "secret");
    put(chart, "/* Chart.js */");
    snprintf(p, sizeof p, "%s/escape.txt", root); if (symlink(outside, p)) return -1;
    snprintf(p, sizeof p, "%s/escape_dir", root); if (symlink(tmp, p)) return -1;
    snprintf(p, sizeof p, "%s/alias.js", root); if (symlink("app.js", p)) return -1;
    snprintf(p, sizeof p, "%s/fifo.js", root); if (mkfifo(p, 0644)) return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_claims(void **state)
{
    (void)state;
    assert_true(static_claims("/"));
    assert_true(static_claims("/index.html"));
    assert_true(static_claims("/web/app.js"));
    assert_true(static_claims(STATIC_CHARTJS_URL));
    assert_false(static_claims("/web"));
    assert_false(static_claims("/v1/fine_tuning/jobs"));
    assert_false(static_claims("/healthz"));
    assert_false(static_claims("/website"));
}

static void expect_file(const char *url, const char *ctype, const char *cache, const char *suffix)
{
    static_cfg cfg = {root, chart};
    static_file f;
    svc_error e;
    int rc = static_resolve(&cfg, url, &f, &e);
    if (rc) fail_msg("%s: %s", url, e.message);
    assert_string_equal(f.content_type, ctype);
    assert_string_equal(f.cache, cache);
    size_t n = strlen(f.path), k = strlen(suffix);
    assert_true(n >= k && !strcmp(f.path + n - k, suffix));
}

static void expect_404(const static_cfg *cfg, const char *url)
{
    static_file f;
    svc_error e;
    int rc = static_resolve(cfg, url, &f, &e);
    if (rc != SVC_ENOTFOUND) fail_msg("%s: want 404, got %d (%s)", url, rc, rc ? e.message : f.path);
    assert_int_equal(e.kind, SVC_ENOTFOUND);
    assert_null(strstr(e.message, tmp)); /* the message does not reveal where the root is */
}

static void test_files(void **state)
{
    (void)state;
    expect_file("/", "text/html; charset=utf-8", "no-cache", "/web/index.html");
    expect_file("/index.html", "text/html; charset=utf-8", "no-cache", "/web/index.html");
    expect_file("/web/app.js", "text/javascript; charset=utf-8", "no-cache", "/web/app.js");
    expect_file("/web/style.css", "text/css; charset=utf-8", "no-cache", "/web/style.css");
    expect_file("/web/sub/data.bin", "application/octet-stream", "no-cache", "/web/sub/data.bin");
    expect_file("/web/alias.js", "text/javascript; charset=utf-8", "no-cache", "/web/app.js"); /* stays inside */
    expect_file(STATIC_CHARTJS_URL, "text/javascript; charset=utf-8", "public, max-age=86400", "/chart.min.js");
}

static void test_refused(void **state)
{
    (void)state;
    static_cfg cfg = {root, chart};
    const char *bad[] = {
        "/web/../secret.txt", "/web/sub/../../secret.txt", "/web/./app.js", "/web/sub/..", "/web/.env",
        "/web//app.js", "/web/", "/web/sub", "/web/sub/", "/web/escape.txt", "/web/escape_dir/secret.txt",
        "/web/fifo.js", "/web/missing.js", "/web/sub\\..\\app.js", "/healthz",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) expect_404(&cfg, bad[i]);
}

static void test_missing_root_and_chart(void **state)
{
    (void)state;
    char nowhere[400];
    snprintf(nowhere, sizeof nowhere, "%s/no-such-dir", tmp);
    static_cfg cfg = {nowhere, nowhere};
    static_file f;
    svc_error e;
    assert_int_equal(static_resolve(&cfg, "/", &f, &e), SVC_ENOTFOUND);
    assert_non_null(strstr(e.message, "not installed"));
    assert_int_equal(static_resolve(&cfg, STATIC_CHARTJS_URL, &f, &e), SVC_ENOTFOUND);
    assert_non_null(strstr(e.message, "libjs-chart.js"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claims),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_missing_root_and_chart),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
