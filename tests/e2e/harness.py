"""tests/e2e/harness.py — start the real bin/coretuned on a free loopback port with a temporary
data dir, talk HTTP to it (stdlib only), and stop it checking a clean exit (so sanitizer reports fail).
Every request is authenticated by default with the first admin's token, which the daemon writes to
DATA_DIR/admin.token on first start; pass token=None for an anonymous request or token="ct_..." for
another user. The daemon's default config file is not read (CORETUNED_CONFIG="")."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import contract

BIN = os.environ.get("CT_BIN", "bin")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, *extra_args, data_dir=None, binary=None, cwd=None):
        """binary: another coretuned than BIN's (an installed one); cwd: the daemon's working directory."""
        self.binary, self.cwd = binary or os.path.join(BIN, "coretuned"), cwd
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="coretuned-e2e-")
        self.extra = list(extra_args)
        self.proc = None
        self.port = None
        self.token = None
        self.socket_path = os.path.join(self.data_dir, "coretuned.sock")

    def start(self, timeout=10.0):
        self.port = free_port()
        self.log = open(os.path.join(self.data_dir, "daemon.log"), "ab")
        env = dict(os.environ, CORETUNED_CONFIG=os.environ.get("CT_TEST_CONFIG", ""))
        self.proc = subprocess.Popen(
            [os.path.abspath(self.binary), "--listen", f"127.0.0.1:{self.port}",
             "--data-dir", os.path.abspath(self.data_dir), *self.extra],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=self.cwd)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"coretuned exited with {self.proc.returncode}: {self.read_log()}")
            try:
                if self.request("GET", "/healthz", token=None)[0] == 200:
                    self.token = self.admin_token()
                    os.environ["CT_TOKEN"] = self.token  # for child processes (the browser test)
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("coretuned did not become healthy: " + self.read_log())

    def read_log(self):
        with open(os.path.join(self.data_dir, "daemon.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def admin_token(self):
        with open(os.path.join(self.data_dir, "admin.token")) as f:
            return f.read().strip()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, method, path, body=None, headers=None, timeout=10, token="admin"):
        """Returns (status, parsed JSON or raw bytes, headers). token: "admin" (the default) = the
        first admin's, None = no Authorization header, anything else = that token."""
        data = None
        hdrs = dict(headers or {})
        if token == "admin":
            token = self.token
        if token is not None and "Authorization" not in hdrs:
            hdrs["Authorization"] = f"Bearer {token}"
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
            out = json.loads(raw)
        except ValueError:
            out = raw
        contract.check(method, path, status, out, rh)  # against docs/openapi.yaml
        return status, out, rh

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


# ---- helpers for job tests (coretuned extensions to the original harness) ----
import http.client
import sqlite3

SANITIZED = os.environ.get("CT_SANITIZED") == "1"


def tiny_job(epochs=2, train_limit=None, **extra):
    """A real job that finishes in seconds: resnet20 on 1x28x28 Fashion-MNIST, a few hundred images.
    Under sanitizers (~3x slower) it uses fewer images."""
    if train_limit is None:
        train_limit = 128 if SANITIZED else 256
    body = {
        "model": "resnet20",
        "training_file": "fashion-mnist-train",
        "seed": 7,
        "method": {"type": "core_tuning", "core_tuning": {"hyperparameters": {
            "n_epochs": epochs, "batch_size": 32, "gradient_accumulation_steps": 1, "threads": 1}}},
        "architecture": {"in_channels": 1, "image_size": 28},
        "data": {"train_limit": train_limit, "valid_limit": 64 if SANITIZED else 128, "augment": False},
    }
    body.update(extra)
    return body


def wait_for(d, job_id, statuses, timeout=120.0, poll=0.05):
    """Poll GET job until its status is in statuses; return the job."""
    deadline = time.time() + timeout
    job = None
    while time.time() < deadline:
        status, job, _ = d.request("GET", f"/v1/fine_tuning/jobs/{job_id}")
        assert status == 200, job
        if job["status"] in statuses:
            return job
        time.sleep(poll)
    raise AssertionError(f"job {job_id} still {job and job['status']} after {timeout}s; want {statuses}")


def all_events(d, job_id):
    """Every event of a job, oldest first, following the pages."""
    out, after = [], None
    while True:
        q = f"/v1/fine_tuning/jobs/{job_id}/events?limit=100" + (f"&after={after}" if after else "")
        status, page, _ = d.request("GET", q)
        assert status == 200, page
        out += page["data"]
        if not page["has_more"]:
            return out
        after = page["data"][-1]["id"]


def wait_event(d, job_id, pred, timeout=120.0):
    """Poll the events until one satisfies pred; return it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for e in all_events(d, job_id):
            if pred(e):
                return e
        time.sleep(0.05)
    raise AssertionError(f"no matching event for {job_id} after {timeout}s")


def event_num(e):
    return int(e["id"].split("-")[-1])


class _Replay:
    """An error answer (read already, to check it) standing in for the http.client response."""

    def __init__(self, raw, resp):
        self.raw, self.status, self.headers, self.getheader = raw, resp.status, resp.headers, resp.getheader
        self.lines = raw.splitlines(keepends=True)

    def read(self):
        self.lines = []
        return self.raw

    def readline(self):
        return self.lines.pop(0) if self.lines else b""


class SSE:
    """A minimal server-sent events client: iterate over (id, event, data) until the server ends."""

    def __init__(self, d, path, last_event_id=None, timeout=60, token="admin"):
        self.conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=timeout)
        hdrs = {"Accept": "text/event-stream"}
        token = d.token if token == "admin" else token
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        if last_event_id:
            hdrs["Last-Event-ID"] = last_event_id
        self.conn.request("GET", path, headers=hdrs)
        self.resp = self.conn.getresponse()
        self.path = path
        self.comments = 0
        if self.resp.status != 200:  # an error is one JSON body, checked like any answer
            raw = self.resp.read()
            try:
                contract.check("GET", path, self.resp.status, json.loads(raw), self.resp.headers)
            except ValueError:
                contract.check("GET", path, self.resp.status, raw, self.resp.headers)
            self.resp = _Replay(raw, self.resp)

    def __iter__(self):
        ev = {}
        while True:
            line = self.resp.readline()
            if not line:
                return
            line = line.decode().rstrip("\n")
            if line == "":
                if ev:
                    data = json.loads(ev.get("data", "null"))
                    contract.check_sse(self.path, ev.get("event", "message"), data)
                    yield ev.get("id"), ev.get("event", "message"), data
                ev = {}
            elif line.startswith(":"):
                self.comments += 1
            else:
                k, _, v = line.partition(":")
                ev[k] = v[1:] if v.startswith(" ") else v

    def close(self):
        self.conn.close()


def integrity_check(data_dir):
    """PRAGMA integrity_check on the daemon's database (after it stopped)."""
    con = sqlite3.connect(os.path.join(data_dir, "coretuned.db"))
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def stop_checked(d):
    """Stop a daemon a whole test class shared (tearDownClass): exit code 0 (the log is the message) and
    PRAGMA integrity_check ok, its data dir removed either way."""
    data_dir = d.data_dir
    rc, _ = d.stop()
    try:
        assert rc == 0, d.read_log()
        assert integrity_check(data_dir) == "ok"
    finally:
        d.cleanup()


class DaemonTest(unittest.TestCase):
    """A test case with its own daemon per test: started in setUp with `args`, stopped in tearDown, which
    checks the exit code is 0 (the log is the message) and, with check_db, PRAGMA integrity_check."""
    args = ()
    check_db = True
    stop_timeout = 60

    def setUp(self):
        self.d = Daemon(*self.args).start()

    def tearDown(self):
        data_dir = self.d.data_dir
        rc, _ = self.d.stop(timeout=self.stop_timeout)
        try:
            self.assertEqual(rc, 0, self.d.read_log())
            if self.check_db:
                self.assertEqual(integrity_check(data_dir), "ok")
        finally:
            self.d.cleanup()


def npm_ci_if_missing(test, directory, package, what):
    """Install the pinned node dependencies of `directory` (npm ci, from its package-lock.json) unless
    node_modules/<package> is there; failures fail `test`. what: "<package> for <which test>"."""
    if os.path.exists(os.path.join(directory, "node_modules", package, "package.json")):
        return
    npm = shutil.which("npm")
    test.assertIsNotNone(npm, f"npm is missing: cannot install {what}")
    r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=directory, capture_output=True, text=True,
                       timeout=300)
    rel = os.path.join("tests", os.path.basename(directory))
    test.assertEqual(r.returncode, 0, f"npm ci in {rel} failed:\n{r.stdout}\n{r.stderr}")


# ---- users, tokens and the Unix socket (issue #6) ----

def admin_cli(d, *args, check=True):
    """Run an offline admin command (coretuned --data-dir DIR user|token ...); returns stdout."""
    env = dict(os.environ, CORETUNED_CONFIG="")
    p = subprocess.run([os.path.join(BIN, "coretuned"), "--data-dir", d.data_dir, *args], capture_output=True,
                       text=True, timeout=30, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"coretuned {' '.join(args)} -> {p.returncode}: {p.stderr}")
    return p.stdout if check else p


def add_user(d, name, admin=False, uid=None):
    """Add a user and return a fresh token for it."""
    args = ["user", "add", name] + (["--admin"] if admin else []) + (["--uid", str(uid)] if uid is not None else [])
    admin_cli(d, *args)
    return admin_cli(d, "token", "create", name).strip()


def unix_request(path, method, url, body=None, headers=None, timeout=10):
    """HTTP over a Unix socket: (status, parsed JSON or bytes, headers)."""
    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(path)
    c = Conn("localhost", timeout=timeout)
    hdrs = dict(headers or {})
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    try:
        c.request(method, url, body=data, headers=hdrs)
        r = c.getresponse()
        raw = r.read()
        try:
            out = json.loads(raw)
        except ValueError:
            out = raw
        if "contract" in globals():  # test_socket also runs this function's source alone, as another uid
            contract.check(method, url, r.status, out, r.headers)
        return r.status, out, r.headers
    finally:
        c.close()
