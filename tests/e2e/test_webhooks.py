"""Webhooks (--webhook-url, --webhook-secret-file) against a local receiver, verified by OpenAI's own
client library (tests/sdk/verify_webhook.mjs, `client.webhooks.unwrap`): a job's end is announced, signed
as Standard Webhooks says; a 503 answer gets a retry with the same webhook-id within 10 s; a webhook whose
receiver is down when the job ends, with the daemon killed (-9) before it could deliver, is delivered by the
next daemon; a tampered body fails verification; only the configured URL is called."""
import base64
import http.server
import json
import os
import signal
import subprocess
import threading
import time
import unittest

from harness import Daemon, free_port, npm_ci_if_missing, tiny_job, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.join(os.path.dirname(HERE), "sdk")
SECRET = "whsec_" + base64.b64encode(b"coretuned-test-secret-0123456789").decode()


class Receiver:
    """An HTTP server on loopback recording every POST; answers `codes` in order, then 200."""

    def __init__(self, port=None, codes=()):
        self.got, self.codes = [], list(codes)
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                outer.got.append({"at": time.time(), "path": self.path, "body": body,
                                  "headers": {k.lower(): v for k, v in self.headers.items()}})
                code = outer.codes.pop(0) if outer.codes else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.port = port or free_port()
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def url(self):
        return f"http://127.0.0.1:{self.port}/hook"

    def wait(self, n, timeout=60):
        deadline = time.time() + timeout
        while len(self.got) < n and time.time() < deadline:
            time.sleep(0.05)
        return self.got

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def verify(records):
    """OpenAI's client library's verdict on each recorded webhook."""
    lines = "".join(json.dumps({"body": r["body"], "headers": r["headers"]}) + "\n" for r in records)
    p = subprocess.run(["node", os.path.join(SDK, "verify_webhook.mjs")], input=lines, capture_output=True,
                       text=True, cwd=SDK, env=dict(os.environ, CT_WEBHOOK_SECRET=SECRET), timeout=60)
    assert p.returncode == 0, p.stderr
    return [json.loads(l) for l in p.stdout.splitlines()]


class TestWebhooks(unittest.TestCase):
    def setUp(self):
        npm_ci_if_missing(self, SDK, "openai", "openai for test_webhooks")
        self.dirs = []

    def daemon(self, url, data_dir=None):
        secret_dir = data_dir or None
        d = Daemon("--webhook-url", url, "--webhook-secret-file", self.secret_file(), data_dir=data_dir)
        return d.start()

    def secret_file(self):
        if not hasattr(self, "_secret"):
            import tempfile
            fd, self._secret = tempfile.mkstemp(prefix="ct-whsec-")
            os.write(fd, (SECRET + "\n").encode())
            os.close(fd)
            os.chmod(self._secret, 0o600)
        return self._secret

    def tearDown(self):
        if hasattr(self, "_secret"):
            os.unlink(self._secret)

    def test_a_job_end_is_announced_signed_and_retried_after_a_503(self):
        rx = Receiver(codes=[503])
        d = self.daemon(rx.url())
        try:
            st, job, _ = d.request("POST", "/v1/fine_tuning/jobs", tiny_job(epochs=1))
            self.assertEqual(st, 200, job)
            self.assertEqual(wait_for(d, job["id"], {"succeeded", "failed"})["status"], "succeeded")
            got = rx.wait(2, timeout=30)
            self.assertEqual(len(got), 2, d.read_log()[-3000:])
            first, retry = got
            self.assertEqual(first["headers"]["webhook-id"], retry["headers"]["webhook-id"])
            self.assertLess(retry["at"] - first["at"], 10.5)  # the first retry within 10 s
            self.assertEqual(first["body"], retry["body"])
            body = json.loads(retry["body"])
            self.assertEqual((body["object"], body["type"], body["data"]), ("event", "fine_tuning.job.succeeded",
                                                                             {"id": job["id"]}))
            self.assertTrue(body["id"].startswith("evt_"))
            self.assertEqual(body["id"], retry["headers"]["webhook-id"])
            v = verify(got)
            self.assertTrue(all(x["ok"] for x in v), v)
            self.assertEqual({x["type"] for x in v}, {"fine_tuning.job.succeeded"})
            tampered = dict(retry, body=retry["body"].replace("succeeded", "failed"))
            self.assertFalse(verify([tampered])[0]["ok"])
            # a cancel is announced too
            st, job2, _ = d.request("POST", "/v1/fine_tuning/jobs", tiny_job(epochs=30))
            d.request("POST", f"/v1/fine_tuning/jobs/{job2['id']}/cancel")
            got = rx.wait(3, timeout=30)
            self.assertEqual(json.loads(got[2]["body"])["type"], "fine_tuning.job.cancelled")
            self.assertEqual({r["path"] for r in got}, {"/hook"})
        finally:
            rc, _ = d.stop()
            d.cleanup()
            rx.close()
        self.assertEqual(rc, 0)

    def test_a_sweep_end_is_announced(self):
        rx = Receiver()
        d = self.daemon(rx.url())
        try:
            st, w, _ = d.request("POST", "/v1/fine_tuning/sweeps", {
                "job": tiny_job(epochs=1), "parameters": {"method.core_tuning.hyperparameters.learning_rate": [0.01]}})
            self.assertEqual(st, 200, w)
            got = rx.wait(2, timeout=60)
            v = verify(got)
            self.assertTrue(all(x["ok"] for x in v), v)
            self.assertEqual([x["type"] for x in v], ["fine_tuning.job.succeeded", "fine_tuning.sweep.succeeded"])
            self.assertEqual(v[1]["data"], {"id": w["id"]})
        finally:
            rc, _ = d.stop()
            d.cleanup()
            rx.close()
        self.assertEqual(rc, 0)

    def test_kill9_before_delivery_still_delivers(self):
        port = free_port()
        d = self.daemon(f"http://127.0.0.1:{port}/hook")  # nobody listens yet: every attempt fails
        try:
            st, job, _ = d.request("POST", "/v1/fine_tuning/jobs", tiny_job(epochs=1))
            self.assertEqual(wait_for(d, job["id"], {"succeeded", "failed"})["status"], "succeeded")
            time.sleep(1.5)  # the first attempt (refused) has been made and recorded
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait()
            d.proc = None
            d.log.close()
            rx = Receiver(port=port)
            try:
                d.start()
                got = rx.wait(1, timeout=40)
                self.assertEqual(len(got), 1, d.read_log()[-3000:])
                v = verify(got)
                self.assertTrue(v[0]["ok"], v)
                self.assertEqual((v[0]["type"], v[0]["data"]), ("fine_tuning.job.succeeded", {"id": job["id"]}))
                time.sleep(2)
                self.assertEqual(len(rx.got), 1)  # delivered once: not again
            finally:
                rx.close()
        finally:
            rc, _ = d.stop()
            d.cleanup()
        self.assertEqual(rc, 0)

    def test_bad_secret_or_url_is_refused_at_start(self):
        import tempfile
        for secret, url in (("not-a-secret", "http://127.0.0.1:1/h"), (SECRET, "ftp://example/h")):
            fd, path = tempfile.mkstemp()
            os.write(fd, secret.encode())
            os.close(fd)
            try:
                d = Daemon("--webhook-url", url, "--webhook-secret-file", path)
                with self.assertRaises(RuntimeError):
                    d.start(timeout=5)
                d.cleanup()
            finally:
                os.unlink(path)


if __name__ == "__main__":
    unittest.main()
