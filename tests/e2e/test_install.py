"""make install / make uninstall (issue 14): into a temporary DESTDIR with PREFIX=/usr, the exact file list;
the installed daemon, started from another directory with the installed unit's --web-root and config,
serves the real dashboard (index.html and an asset, without a token); uninstall leaves no file behind."""
import os
import shlex
import shutil
import subprocess
import tempfile
import unittest

from harness import BIN, Daemon

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def files_under(d):
    return sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs)


class InstallTest(unittest.TestCase):
    def make(self, target, tmp, *vars):
        # the build of the binaries under test, so that install finds them up to date and relinks nothing
        flavor = os.path.basename(os.path.dirname(os.path.abspath(BIN)))
        san = {"asan": ["O=build/asan", "SAN=1"], "tsan": ["O=build/tsan", "TSAN=1"]}.get(flavor, [])
        p = subprocess.run(["make", "-s", "--no-print-directory", target, f"DESTDIR={tmp}", *vars,
                            f"BIN={os.path.abspath(BIN)}", *san], cwd=ROOT, capture_output=True, text=True, timeout=600)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_install_serve_uninstall(self):
        if not shutil.which("make"):
            self.skipTest("make is not installed")
        unitdir = subprocess.run(["pkg-config", "--variable=systemdsystemunitdir", "systemd"], capture_output=True,
                                 text=True).stdout.strip() if shutil.which("pkg-config") else ""
        unitdir = (unitdir or "/lib/systemd/system").lstrip("/")
        tmp = tempfile.mkdtemp(prefix="coretuned-install-")
        try:
            self.make("install", tmp, "PREFIX=/usr")
            web = sorted(os.listdir(os.path.join(ROOT, "web")))
            want = sorted(["usr/sbin/coretuned", "usr/bin/coretune", f"{unitdir}/coretuned.service",
                           "etc/coretuned/coretuned.conf", "usr/share/man/man1/coretune.1",
                           "usr/share/man/man5/coretuned.conf.5", "usr/share/man/man8/coretuned.8"]
                          + [f"usr/share/coretuned/web/{f}" for f in web]
                          + [f"usr/share/doc/coretuned/{f}" for f in ("README.md", "operations.md", "api.md",
                                                                       "cli.md", "dashboard.md",
                                                                       "coretuned.conf.example")])
            self.assertEqual(files_under(tmp), want)
            with open(os.path.join(tmp, unitdir, "coretuned.service")) as f:
                exec_start = [l for l in f.read().splitlines() if l.startswith("ExecStart=")]
            argv = shlex.split(exec_start[0][len("ExecStart="):])
            self.assertEqual(argv[0], "/usr/sbin/coretuned")
            opts = dict(zip(argv[1::2], argv[2::2]))
            self.assertEqual(opts["--web-root"], "/usr/share/coretuned/web")
            self.assertEqual(opts["--config"], "/etc/coretuned/coretuned.conf")
            # cwd has no web/: only the unit's --web-root can find the dashboard; the installed config is valid
            d = Daemon("--config", tmp + opts["--config"], "--web-root", tmp + opts["--web-root"], "--workers", "0",
                       binary=tmp + argv[0], cwd=tmp)
            d.start()
            try:
                with open(os.path.join(ROOT, "web", "index.html"), "rb") as f:
                    self.assertEqual(d.request("GET", "/", token=None)[:2], (200, f.read()))
                with open(os.path.join(ROOT, "web", "app.js"), "rb") as f:
                    self.assertEqual(d.request("GET", "/web/app.js", token=None)[:2], (200, f.read()))
            finally:
                d.cleanup()
            self.make("uninstall", tmp, "PREFIX=/usr")
            self.assertEqual(files_under(tmp), [])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
