"""The systemd unit (issue #6): `systemd-analyze verify` accepts systemd/coretuned.service and
`systemd-analyze security --offline=yes` scores its exposure at 2.0 or less; the daemon speaks the notify
protocol itself (READY=1 only once it serves, WATCHDOG=1 from the loop, STOPPING=1 on SIGTERM), checked
with a datagram socket standing in for systemd; `--help` and `--example-config` come from one option
table, and `make install DESTDIR=...` puts the binaries, the unit, the example config and the man pages
in place. Skips (saying why) only where systemd-analyze is absent."""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from harness import BIN, Daemon

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(ROOT, "systemd", "coretuned.service")


class UnitTest(unittest.TestCase):
    def unit_copy(self, tmp):
        """The unit with ExecStart pointing at the built binary (verify checks that it exists)."""
        with open(UNIT) as f:
            text = f.read()
        binary = os.path.abspath(os.path.join(BIN, "coretuned"))
        path = os.path.join(tmp, "coretuned.service")
        with open(path, "w") as f:
            f.write(re.sub(r"^ExecStart=\S+", f"ExecStart={binary}", text, flags=re.M))
        return path

    def test_verify_and_security(self):
        sa = shutil.which("systemd-analyze")
        if not sa:
            self.skipTest("systemd-analyze is not installed (Debian package systemd)")
        tmp = tempfile.mkdtemp(prefix="coretuned-unit-")
        try:
            unit = self.unit_copy(tmp)
            p = subprocess.run([sa, "verify", unit], capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            p = subprocess.run([sa, "security", "--offline=yes", unit], capture_output=True, text=True, timeout=60)
            m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout + p.stderr)
            self.assertIsNotNone(m, p.stdout + p.stderr)
            self.assertLessEqual(float(m.group(1)), 2.0, p.stdout)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        with open(UNIT) as f:
            text = f.read()
        for needle in ("Type=notify", "WatchdogSec=", "StateDirectory=coretuned", "RuntimeDirectory=coretuned",
                       "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "TimeoutStopSec=",
                       "CapabilityBoundingSet=", "SystemCallFilter=", "--socket /run/coretuned/coretuned.sock"):
            self.assertIn(needle, text)

    def test_notify_protocol(self):
        tmp = tempfile.mkdtemp(prefix="coretuned-notify-")
        path = os.path.join(tmp, "notify")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        s.settimeout(10)
        os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"] = path, "400000"
        try:
            d = Daemon("--workers", "0").start()
        finally:
            del os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"]
        try:
            got = []
            deadline = time.time() + 5
            while time.time() < deadline and sum("WATCHDOG=1" in g for g in got) < 2:
                got.append(s.recv(4096).decode())
            self.assertTrue(any("READY=1" in g for g in got), got)
            self.assertGreaterEqual(sum("WATCHDOG=1" in g for g in got), 2, got)
            self.assertEqual(d.request("GET", "/v1/me")[0], 200)   # it was ready when it said so
            rc, _ = d.stop()
            self.assertEqual(rc, 0)
            rest = []
            try:
                while True:
                    rest.append(s.recv(4096).decode())
            except socket.timeout:
                pass
            except OSError:
                pass
            self.assertTrue(any("STOPPING=1" in g for g in rest), rest)
        finally:
            d.cleanup()
            s.close()
            shutil.rmtree(tmp, ignore_errors=True)


class OptionsTest(unittest.TestCase):
    def run_bin(self, *args):
        return subprocess.run([os.path.join(BIN, "coretuned"), *args], capture_output=True, text=True, timeout=20,
                              env=dict(os.environ, CORETUNED_CONFIG=""))

    def test_help_and_example_config_from_one_table(self):
        help_text = self.run_bin("--help").stdout
        example = self.run_bin("--example-config").stdout
        names = re.findall(r"^  --([a-z-]+) ", help_text, re.M)
        for name in ("listen", "socket", "tls-cert", "cores", "quota", "user-quota", "preemption", "dataset-root"):
            self.assertIn(name, names)
        for name in names:
            if name in ("config", "example-config", "version", "help"):
                continue
            self.assertRegex(example, rf"(?m)^#{name} ", name)
        # the example config, uncommented as it is, is a valid config
        tmp = tempfile.mkdtemp(prefix="coretuned-cfg-")
        try:
            cfg = os.path.join(tmp, "c.conf")
            with open(cfg, "w") as f:
                f.write(example + "\nworkers 0\nquota running_jobs=2,threads=1\nuser-quota ana:queued_jobs=5\n")
            d = Daemon("--config", cfg).start()
            d.stop()
            d.cleanup()
            for bad, words in (("quota running_jobs=x\n", "quota"), ("preemption maybe\n", "preemption"),
                               ("cores 0\n", "cores"), ("dataset-root /nonexistent\n", "dataset-root"),
                               ("listen 10.1.2.3:80\n", "without TLS"), ("nonsense 1\n", "unknown option")):
                with open(cfg, "w") as f:
                    f.write(bad)
                p = self.run_bin("--config", cfg, "--data-dir", tmp)
                self.assertEqual(p.returncode, 2, bad)
                self.assertIn(words, p.stderr, bad)
                if "unknown" not in words and "TLS" not in words and "dataset-root" not in words:
                    self.assertIn("c.conf:1", p.stderr, bad)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_make_install(self):
        if not shutil.which("make"):
            self.skipTest("make is not installed")
        tmp = tempfile.mkdtemp(prefix="coretuned-install-")
        try:
            # the same build as the binaries under test (BIN = build/asan/bin, build/tsan/bin or bin), so that
            # install finds them up to date and never relinks them with other objects
            flavor = os.path.basename(os.path.dirname(os.path.abspath(BIN)))
            san = {"asan": ["O=build/asan", "SAN=1"], "tsan": ["O=build/tsan", "TSAN=1"]}.get(flavor, [])
            p = subprocess.run(["make", "-s", "--no-print-directory", "install", f"DESTDIR={tmp}", "PREFIX=/usr",
                                f"BIN={os.path.abspath(BIN)}", *san], cwd=ROOT, capture_output=True, text=True,
                               timeout=600)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            for rel in ("usr/sbin/coretuned", "usr/bin/coretune", "usr/share/coretuned/web/index.html",
                        "usr/share/man/man1/coretune.1", "lib/systemd/system/coretuned.service",
                        "etc/coretuned/coretuned.conf", "usr/share/doc/coretuned/coretuned.conf.example",
                        "usr/share/man/man8/coretuned.8", "usr/share/man/man5/coretuned.conf.5"):
                self.assertTrue(os.path.exists(os.path.join(tmp, rel)), rel)
            with open(os.path.join(tmp, "lib/systemd/system/coretuned.service")) as f:
                self.assertRegex(f.read(), r"(?m)^ExecStart=/usr/sbin/coretuned .*--web-root /usr/share/coretuned/web")
            if shutil.which("man"):
                p = subprocess.run(["man", "-l", "-Tutf8", os.path.join(tmp, "usr/share/man/man8/coretuned.8")],
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual(p.returncode, 0, p.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
