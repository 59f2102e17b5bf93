"""Local identity over the Unix socket and the TCP/TLS rules (issue #6): the same API on
DATA_DIR/coretuned.sock (or --socket PATH); root and the daemon's own uid are the bootstrap admin; another
uid with no user answers 401 telling how to add one, and once added (user add NAME --uid N) acts as that
user (owning its jobs); the daemon refuses a non-loopback TCP bind without TLS; with --tls-cert/--tls-key
it serves HTTPS (also on 0.0.0.0) and tokens work over it."""
import inspect
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import unittest
import urllib.request

from harness import BIN, Daemon, add_user, admin_cli, free_port, tiny_job, unix_request

JOBS = "/v1/fine_tuning/jobs"
NOBODY = 65534


def world_reachable(path):
    """True when every directory from / down to path lets any uid through (o+x)."""
    path = os.path.abspath(path)
    while True:
        if not os.stat(path).st_mode & 0o001:
            return False
        if path == "/":
            return True
        path = os.path.dirname(path)


def shared_dir(prefix):
    """A new directory another uid can reach: 0755, owned by us, under the first temporary directory whose
    every ancestor lets any uid through ($TMPDIR may be private, like the checkout)."""
    for parent in (tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(parent) and world_reachable(parent):
            tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
            os.chmod(tmp, 0o755)
            return tmp
    raise AssertionError("no temporary directory that other uids can reach (tried $TMPDIR, /tmp, /var/tmp, /dev/shm)")


# The child runs as another uid, which cannot read this checkout (a clone in a 0700 directory, as CI makes):
# it gets a self-contained script, unix_request's own source and its imports, in a directory it can reach.
CHILD = """import http.client, json, socket, sys
%s
a = json.load(sys.stdin)
s, b, _ = unix_request(a["sock"], a["method"], a["path"], a["body"])
print(json.dumps([s, b]))
""" % inspect.getsource(unix_request)


def child_python():
    """An interpreter any uid can run: ours unless it lives somewhere private (pyenv under /root, a
    virtualenv in the checkout), then Debian's."""
    ours = os.path.realpath(sys.executable)
    if world_reachable(os.path.dirname(ours)) and os.stat(ours).st_mode & 0o001:
        return ours
    return "/usr/bin/python3"


def as_uid(uid, tmp, sock, method, path, body=None):
    """The request made by a child process running as uid with no supplementary groups (needs root); tmp: a
    shared_dir() for its script."""
    script = os.path.join(tmp, "as_uid.py")
    if not os.path.exists(script):
        with open(script, "w") as f:
            f.write(CHILD)
        os.chmod(script, 0o644)
    # -I and cwd /: nothing from our environment, the script's directory or our working directory
    p = subprocess.run([child_python(), "-I", script], input=json.dumps(
        {"sock": sock, "method": method, "path": path, "body": body}), capture_output=True, text=True, timeout=30,
        user=uid, group=uid, extra_groups=[], cwd="/", env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


class SocketTest(unittest.TestCase):
    def test_socket_identity(self):
        tmp = shared_dir("coretuned-sock-")   # the socket and the child's script, both reached as NOBODY
        sock = os.path.join(tmp, "coretuned.sock")
        d = Daemon("--workers", "0", "--socket", sock).start()
        try:
            self.assertEqual(os.stat(sock).st_mode & 0o777, 0o666)
            status, me, _ = unix_request(sock, "GET", "/v1/me")
            self.assertEqual(status, 200, me)
            self.assertEqual((me["name"], me["admin"]), ("admin", True))   # root / the daemon's uid
            status, job, _ = unix_request(sock, "POST", JOBS, tiny_job())
            self.assertEqual((status, job["owner"]), (200, "admin"))
            self.assertEqual(unix_request(sock, "GET", "/healthz")[0], 200)
            if os.geteuid() != 0:
                self.skipTest("switching uid needs root")
            status, err = as_uid(NOBODY, tmp, sock, "GET", "/v1/me")
            self.assertEqual(status, 401, err)
            self.assertEqual(err["error"]["code"], "invalid_api_key")
            self.assertIn(f"user add NAME --uid {NOBODY}", err["error"]["message"])
            admin_cli(d, "user", "add", "nina", "--uid", str(NOBODY))
            status, me = as_uid(NOBODY, tmp, sock, "GET", "/v1/me")
            self.assertEqual((status, me["name"], me["admin"], me["uid"]), (200, "nina", False, NOBODY))
            status, job = as_uid(NOBODY, tmp, sock, "POST", JOBS, tiny_job())
            self.assertEqual((status, job["owner"]), (200, "nina"), job)
            status, other = as_uid(NOBODY, tmp, sock, "GET", f"{JOBS}/{unix_request(sock, 'GET', JOBS)[1]['data'][-1]['id']}")
            self.assertEqual(status, 404, other)      # the admin's job is not nina's
            status, page = as_uid(NOBODY, tmp, sock, "GET", JOBS)
            self.assertEqual([j["owner"] for j in page["data"]], ["nina"])
            # a uid cannot belong to two users
            p = admin_cli(d, "user", "add", "nina2", "--uid", str(NOBODY), check=False)
            self.assertEqual(p.returncode, 1)
        finally:
            rc, _ = d.stop()
            d.cleanup()
            self.assertFalse(os.path.exists(sock))   # removed on exit
            shutil.rmtree(tmp, ignore_errors=True)
        self.assertEqual(rc, 0)

    def test_first_admin_after_offline_user_add(self):
        """Users added offline before the first start do not take the place of the first admin: root and
        the daemon's uid still are it (docs/api.md), with a sign-in token (issue: reliability, defect 7)."""
        d = Daemon("--workers", "0")          # not started yet: its data dir is empty
        try:
            admin_cli(d, "user", "add", "alice", "--uid", "2000")
            d.start()                         # reads DATA_DIR/admin.token, written by the bootstrap
            status, me, _ = unix_request(d.socket_path, "GET", "/v1/me")
            self.assertEqual((status, me.get("admin")), (200, True), me)
            self.assertEqual(d.request("GET", "/v1/users")[0], 200)      # the token is an admin's
            self.assertIn("created the admin user 'admin'", d.read_log())
        finally:
            d.stop()
            d.cleanup()

    def test_stale_socket_is_replaced_live_one_refused(self):
        d = Daemon("--workers", "0").start()
        try:
            self.assertTrue(os.path.exists(d.socket_path))
            p = subprocess.run([os.path.join(BIN, "coretuned"), "--data-dir", d.data_dir, "--listen",
                                f"127.0.0.1:{free_port()}", "--workers", "0"], capture_output=True, text=True,
                               timeout=20, env=dict(os.environ, CORETUNED_CONFIG=""))
            self.assertEqual(p.returncode, 1)
            self.assertIn("already serving", p.stderr)
            d.stop(sig=9)
            self.assertTrue(os.path.exists(d.socket_path))   # left by kill -9
            d.start()
            self.assertEqual(unix_request(d.socket_path, "GET", "/v1/me")[0], 200)
        finally:
            d.cleanup()


class TcpRulesTest(unittest.TestCase):
    def run_daemon(self, *args):
        tmp = tempfile.mkdtemp(prefix="coretuned-tcp-")
        try:
            return subprocess.run([os.path.join(BIN, "coretuned"), "--data-dir", tmp, *args], capture_output=True,
                                  text=True, timeout=20, env=dict(os.environ, CORETUNED_CONFIG=""))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_non_loopback_needs_tls(self):
        for addr in ("0.0.0.0:0", "192.0.2.1:8080"):
            p = self.run_daemon("--listen", addr)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn("without TLS", p.stderr)
        p = self.run_daemon("--tls-cert", "/nonexistent.pem")
        self.assertEqual(p.returncode, 2)
        self.assertIn("go together", p.stderr)

    def test_tls(self):
        if not shutil.which("openssl"):
            self.skipTest("openssl (Debian package openssl) is needed to make a test certificate")
        tmp = tempfile.mkdtemp(prefix="coretuned-tls-")
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True, timeout=60)
        port = free_port()
        d = Daemon("--workers", "0", "--tls-cert", cert, "--tls-key", key)
        d.extra = ["--listen", f"0.0.0.0:{port}"] + d.extra   # the harness's --listen comes first; this wins
        d.url = lambda path: f"https://127.0.0.1:{d.port}{path}"
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        orig = urllib.request.urlopen
        urllib.request.urlopen = lambda req, timeout=10: orig(req, timeout=timeout, context=ctx)
        try:
            d.free_port = port
            import harness
            real_free = harness.free_port
            harness.free_port = lambda: port
            try:
                d.start()
            finally:
                harness.free_port = real_free
            self.assertIn("sign in at https://127.0.0.1:", d.read_log())
            status, me, _ = d.request("GET", "/v1/me")
            self.assertEqual((status, me["name"]), (200, "admin"))
            self.assertEqual(d.request("GET", "/v1/me", token=None)[0], 401)
        finally:
            urllib.request.urlopen = orig
            rc, _ = d.stop()
            d.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)
        self.assertEqual(rc, 0)


if __name__ == "__main__":
    unittest.main()
