"""tests/e2e/harness.py — start the real bin/coretuned on a free loopback port with a temporary
data dir, talk HTTP to it (stdlib only), and stop it checking a clean exit (so sanitizer reports fail)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

BIN = os.environ.get("CT_BIN", "bin")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, *extra_args, data_dir=None):
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="coretuned-e2e-")
        self.extra = list(extra_args)
        self.proc = None
        self.port = None

    def start(self, timeout=10.0):
        self.port = free_port()
        self.log = open(os.path.join(self.data_dir, "daemon.log"), "ab")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "coretuned"), "--listen", f"127.0.0.1:{self.port}",
             "--data-dir", self.data_dir, *self.extra],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"coretuned exited with {self.proc.returncode}: {self.read_log()}")
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("coretuned did not become healthy: " + self.read_log())

    def read_log(self):
        with open(os.path.join(self.data_dir, "daemon.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, method, path, body=None, headers=None, timeout=10):
        """Returns (status, parsed JSON or raw bytes, headers)."""
        data = None
        hdrs = dict(headers or {})
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.url(path), data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw, status, rh = r.read(), r.status, r.headers
        except urllib.error.HTTPError as e:
            raw, status, rh = e.read(), e.code, e.headers
        try:
            return status, json.loads(raw), rh
        except ValueError:
            return status, raw, rh

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signal the daemon and return (exit code, seconds it took)."""
        if self.proc is None:
            return None, 0.0
        t0 = time.time()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        self.log.close()
        return rc, time.time() - t0

    def cleanup(self):
        if self.proc is not None:
            self.stop()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
