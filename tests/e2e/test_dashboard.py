"""The web dashboard served by the real daemon (issue #7). Two parts:
- the static routes over plain HTTP: `/` and `/web/...` with their Content-Type and Cache-Control, Chart.js
  from Debian's libjs-chart.js at /web/vendor/chart.js, 404 for `..`, dot files, directories and missing
  files, 405 for other methods, 304 on a matching If-None-Match;
- tests/browser/dashboard.test.mjs in headless Debian chromium (playwright-core) against real tiny jobs:
  sign-in, live curves (SSE and the polling fallback), phone width, cancel, finished accuracies, compare;
- tests/browser/sweep.test.mjs, the sweep pages (#/sweeps, #/sweeps/ID): test_sweep_page against the
  daemon's sweep API (a real 2-trial grid sweep of tiny jobs: leaderboard rows, the best marked, job
  links, one chart dataset per finished trial), test_sweep_page_stub with that API stubbed in the browser
  by the contract's objects (the page itself, served by the real daemon, needs no sweep API);
- tests/browser/storage.test.mjs, the Storage page (#/storage): usage, the largest items, a delete that
  asks for confirmation (dismissed: kept; accepted: gone from the API).
  Screenshots go to tests/artifacts/. Skipped, saying why, only when node or chromium is absent; the npm
  dependency is installed from tests/browser/package-lock.json (npm ci) when missing."""
import os
import shutil
import subprocess
import unittest

from harness import BIN, SANITIZED, Daemon, DaemonTest, npm_ci_if_missing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BROWSER_DIR = os.path.join(ROOT, "tests", "browser")
ARTIFACTS = os.path.join(ROOT, "tests", "artifacts")
CHROMIUM = os.environ.get("CT_CHROMIUM", "/usr/bin/chromium")
CHARTJS = "/usr/share/javascript/chart.js/chart.min.js"


def daemon_args():
    """--web-root with an absolute path when this build of the daemon has the option (it serves
    ./web relative to its working directory otherwise, which is the repository root here)."""
    args = ["--workers", "1", "--threads-per-job", "1"]
    try:
        help_text = subprocess.run([os.path.join(BIN, "coretuned"), "--help"], capture_output=True, text=True,
                                   timeout=10).stdout
    except OSError:
        help_text = ""
    if "--web-root" in help_text:
        args += ["--web-root", os.path.join(ROOT, "web")]
    return args


class DashboardTest(DaemonTest):
    check_db = False

    def setUp(self):
        self.d = Daemon(*daemon_args()).start()

    def get(self, path, method="GET", headers=None):
        return self.d.request(method, path, headers=headers)

    def test_static_routes(self):
        status, body, h = self.get("/")
        self.assertEqual(status, 200, f"GET / -> {status} {body!r}: is static_serve wired into the route table (api/routes.c)?")
        self.assertEqual(h["Content-Type"], "text/html; charset=utf-8")
        self.assertEqual(h["Cache-Control"], "no-cache")
        self.assertIn("frame-ancestors 'none'", h["Content-Security-Policy"])
        self.assertIn(b'src="/web/app.js"', body)
        with open(os.path.join(ROOT, "web", "index.html"), "rb") as f:
            self.assertEqual(body, f.read())
        for path, ctype in (("/web/app.js", "text/javascript; charset=utf-8"),
                            ("/web/style.css", "text/css; charset=utf-8"), ("/index.html", "text/html; charset=utf-8")):
            status, _, h = self.get(path)
            self.assertEqual((status, h["Content-Type"]), (200, ctype), path)
            self.assertEqual(h["X-Content-Type-Options"], "nosniff")
        # revalidation
        status, _, h = self.get("/web/app.js")
        status, body, _ = self.get("/web/app.js", headers={"If-None-Match": h["ETag"]})
        self.assertEqual((status, body), (304, b""))
        # Chart.js from Debian's libjs-chart.js at a fixed URL
        status, body, h = self.get("/web/vendor/chart.js")
        if os.path.exists(CHARTJS):
            self.assertEqual(status, 200)
            self.assertEqual(h["Content-Type"], "text/javascript; charset=utf-8")
            self.assertIn("max-age", h["Cache-Control"])
            self.assertIn(b"Chart.js v", body[:200])
        else:
            self.assertEqual(status, 404)
        # refused: traversal, dot files, directories, missing files; other methods
        for path in ("/web/../Makefile", "/web/%2e%2e/Makefile", "/web/..%2fMakefile", "/web/.hidden", "/web/",
                     "/web//app.js", "/web/nope.js", "/web/vendor/"):
            status, body, h = self.get(path)
            self.assertEqual(status, 404, path)
            self.assertEqual(body["error"]["code"], "not_found", path)
        status, body, _ = self.get("/", method="POST")
        self.assertEqual(status, 405)
        status, _, h = self.get("/web/app.js", method="HEAD")
        self.assertEqual(status, 200)

    def run_browser(self, script, *args):
        """node tests/browser/SCRIPT BASE_URL ARTIFACTS ARGS...; returns its output (it must exit 0)."""
        node = shutil.which("node")
        if not node:
            self.skipTest("node is not installed (Debian package nodejs): the browser test needs it")
        if not os.access(CHROMIUM, os.X_OK):
            self.skipTest(f"{CHROMIUM} is not installed (Debian package chromium): the browser test needs it")
        npm_ci_if_missing(self, BROWSER_DIR, "playwright-core", "playwright-core for the browser test")
        os.makedirs(ARTIFACTS, exist_ok=True)
        env = dict(os.environ, CT_CHROMIUM=CHROMIUM, CT_SANITIZED="1" if SANITIZED else "0")
        r = subprocess.run([node, script, self.d.url(""), ARTIFACTS, *args], cwd=BROWSER_DIR, env=env,
                           capture_output=True, text=True, timeout=600 if SANITIZED else 300)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, f"browser test {script} failed (screenshots in {ARTIFACTS}):\n{out}\n"
                                          f"daemon log:\n{self.d.read_log()[-3000:]}")
        return out

    def test_browser(self):
        self.assertIn("dashboard: all checks passed", self.run_browser("dashboard.test.mjs"))

    def test_signin_link(self):
        """The daemon's sign-in link /?token=... signs the tab in and leaves no token in the URL."""
        self.assertIn("signin: all checks passed", self.run_browser("signin.test.mjs"))

    def test_storage_page(self):
        """The Storage page: usage, the largest items, a delete that asks first (tests/browser/storage.test.mjs)."""
        self.assertIn("storage: all checks passed", self.run_browser("storage.test.mjs"))

    def test_sweep_page_stub(self):
        """The sweep pages with the sweep API stubbed in the browser: runs without the daemon's sweep API."""
        self.assertIn("sweep dashboard (stub): all checks passed", self.run_browser("sweep.test.mjs", "--stub"))

    def test_sweep_page(self):
        """The sweep pages against the daemon's sweep API and a real sweep of two tiny jobs."""
        self.assertIn("sweep dashboard: all checks passed", self.run_browser("sweep.test.mjs"))


if __name__ == "__main__":
    unittest.main()
