"""The jobs API without training (daemon started with --workers 0, so jobs stay queued): submit, list with
pagination, get, cancel, pause/resume of a queued job, Idempotency-Key, a table of bad inputs each
answered with the right status, code and param (and nothing stored), limits, event streams on an idle
job (heartbeats, SIGTERM with a stream open), and PRAGMA integrity_check afterwards."""
import json
import os
import sqlite3
import signal
import time
import unittest
import urllib.request

from harness import SSE, DaemonTest, all_events, tiny_job

JOBS = "/v1/fine_tuning/jobs"


class JobsApiTest(DaemonTest):
    args = ("--workers", "0", "--sse-heartbeat", "0.2")
    stop_timeout = 10

    def submit(self, body=None, headers=None):
        return self.d.request("POST", JOBS, tiny_job() if body is None else body, headers=headers)

    def count_jobs(self):
        status, page, _ = self.d.request("GET", JOBS + "?limit=100")
        self.assertEqual(status, 200)
        return len(page["data"])

    def test_submit_get_list(self):
        status, job, _ = self.submit(tiny_job(suffix="mine", metadata={"team": "vision"}))
        self.assertEqual(status, 200, job)
        self.assertEqual(job["object"], "fine_tuning.job")
        self.assertTrue(job["id"].startswith("ftjob-"))
        self.assertEqual(job["status"], "queued")
        self.assertEqual(job["queue_position"], 1)
        self.assertEqual(job["model"], "resnet20")
        self.assertEqual(job["training_file"], "fashion-mnist-train")
        self.assertEqual(job["seed"], 7)
        self.assertEqual(job["suffix"], "mine")
        self.assertEqual(job["metadata"], {"team": "vision"})
        self.assertIsNone(job["fine_tuned_model"])
        self.assertIsNone(job["error"])
        hp = job["method"]["core_tuning"]["hyperparameters"]
        self.assertEqual(hp["n_epochs"], 2)
        self.assertEqual(hp["batch_size"], 32)
        self.assertEqual(hp["learning_rate"], 0.01)   # effective defaults are filled in
        self.assertEqual(hp["temperature"], 0.07)
        self.assertEqual(hp["variant"], "paper")
        self.assertEqual(job["data"]["train_limit"], tiny_job()["data"]["train_limit"])

        status, got, _ = self.d.request("GET", f"{JOBS}/{job['id']}")
        self.assertEqual(status, 200)
        self.assertEqual(got["id"], job["id"])

        ids = [job["id"]] + [self.submit()[1]["id"] for _ in range(3)]
        status, page, _ = self.d.request("GET", f"{JOBS}?limit=2")
        self.assertEqual(status, 200)
        self.assertEqual(page["object"], "list")
        self.assertEqual([j["id"] for j in page["data"]], ids[::-1][:2])   # newest first
        self.assertTrue(page["has_more"])
        status, page2, _ = self.d.request("GET", f"{JOBS}?limit=2&after={page['data'][-1]['id']}")
        self.assertEqual([j["id"] for j in page2["data"]], ids[::-1][2:])
        self.assertFalse(page2["has_more"])
        self.assertEqual(page2["data"][-1]["queue_position"], 1)
        self.assertEqual(page2["data"][0]["queue_position"], 2)

        events = all_events(self.d, job["id"])
        self.assertEqual(events[0]["type"], "status")
        self.assertEqual(events[0]["data"]["status"], "queued")

    def test_device(self):
        status, job, _ = self.submit()
        self.assertEqual((status, job["device"]), (200, "cpu"))   # the default
        status, job, _ = self.submit(tiny_job(device="cpu"))
        self.assertEqual((status, job["device"]), (200, "cpu"))
        hp = "method.core_tuning.hyperparameters."
        for body, param, words in [
                (tiny_job(device="cuda:64"), "device", "cuda:N"),
                (tiny_job(device="gpu"), "device", "cuda:N"),
                (tiny_job(method={"type": "core_tuning", "core_tuning": {"hyperparameters": {"precision": "tf32"}}}),
                 hp + "precision", "CUDA"),
                (tiny_job(device="cuda", method={"type": "core_tuning",
                                                 "core_tuning": {"hyperparameters": {"precision": "fp16"}}}),
                 hp + "precision", "tf32")]:
            status, err, _ = self.submit(body)
            self.assertEqual((status, err["error"]["param"]), (400, param), err)
            self.assertIn(words, err["error"]["message"])
        # this daemon's machine: a cuda job is refused when it sees no CUDA device (a GPU machine takes it)
        status, body, _ = self.submit(tiny_job(device="cuda"))
        if os.path.exists("/dev/nvidia0"):
            self.assertEqual((status, body.get("device")), (200, "cuda"), body)
        else:
            self.assertEqual((status, body["error"]["param"], body["error"]["code"]), (400, "device", "invalid_value"),
                             body)
            self.assertIn("no GPUs to give (--gpus auto found none", body["error"]["message"])

    def test_seed_is_chosen_when_absent(self):
        body = tiny_job()
        del body["seed"]
        status, job, _ = self.submit(body)
        self.assertEqual(status, 200, job)
        self.assertIsInstance(job["seed"], int)

    def test_cancel_pause_resume_queued(self):
        _, job, _ = self.submit()
        jid = job["id"]
        status, j, _ = self.d.request("POST", f"{JOBS}/{jid}/pause")
        self.assertEqual((status, j["status"]), (200, "paused"))
        status, err, _ = self.d.request("POST", f"{JOBS}/{jid}/pause")
        self.assertEqual(status, 409, err)
        status, j, _ = self.d.request("POST", f"{JOBS}/{jid}/resume")
        self.assertEqual((status, j["status"]), (200, "queued"))
        status, err, _ = self.d.request("POST", f"{JOBS}/{jid}/resume")
        self.assertEqual(status, 409)
        self.assertEqual(err["error"]["code"], "invalid_state")
        status, j, _ = self.d.request("POST", f"{JOBS}/{jid}/cancel")
        self.assertEqual((status, j["status"]), (200, "cancelled"))
        self.assertIsNotNone(j["finished_at"])
        status, err, _ = self.d.request("POST", f"{JOBS}/{jid}/cancel")
        self.assertEqual(status, 409)
        types = [e["data"]["status"] for e in all_events(self.d, jid) if e["type"] == "status"]
        self.assertEqual(types, ["queued", "paused", "queued", "cancelled"])

    def test_idempotency_key(self):
        body = tiny_job()
        s1, j1, _ = self.submit(body, headers={"Idempotency-Key": "abc-1"})
        s2, j2, _ = self.submit(json.loads(json.dumps(body)), headers={"Idempotency-Key": "abc-1"})
        self.assertEqual((s1, s2), (200, 200))
        self.assertEqual(j1["id"], j2["id"])
        # the same keys in another order and spacing is the same body
        raw = json.dumps(dict(reversed(list(body.items()))), indent=2).encode()
        s3, j3, _ = self.d.request("POST", JOBS, raw, headers={"Idempotency-Key": "abc-1"})
        self.assertEqual((s3, j3["id"]), (200, j1["id"]))
        body["seed"] = 8
        s4, err, _ = self.submit(body, headers={"Idempotency-Key": "abc-1"})
        self.assertEqual(s4, 422, err)
        self.assertEqual(err["error"]["code"], "idempotency_key_reused")
        s5, j5, _ = self.submit(body, headers={"Idempotency-Key": "abc-2"})
        self.assertEqual(s5, 200)
        self.assertNotEqual(j5["id"], j1["id"])
        self.assertEqual(self.count_jobs(), 2)
        # the stored digest is SHA-256 of the canonical body (64 hex digits)
        con = sqlite3.connect(os.path.join(self.d.data_dir, "coretuned.db"))
        try:
            (digest,) = con.execute("SELECT body_hash FROM jobs WHERE id = ?", (j1["id"],)).fetchone()
            self.assertRegex(digest, r"^[0-9a-f]{64}$")
            # a row from before SHA-256 (a 16-digit FNV-1a digest) still replays by its canonical body
            con.execute("UPDATE jobs SET body_hash = '0123456789abcdef' WHERE id = ?", (j1["id"],))
            con.commit()
        finally:
            con.close()
        s6, j6, _ = self.submit(json.loads(json.dumps(tiny_job())), headers={"Idempotency-Key": "abc-1"})
        self.assertEqual((s6, j6["id"]), (200, j1["id"]))
        s7, err, _ = self.submit(body, headers={"Idempotency-Key": "abc-1"})
        self.assertEqual(s7, 422, err)
        self.assertEqual(self.count_jobs(), 2)

    def test_hostile_ids_get_json_errors(self):
        """Ids that are not UTF-8 (or are cut inside a character by a message's length limit) get a JSON
        4xx, never a dropped connection (issue: reliability, defect 4)."""
        cut = "a" * 99 + "%C3%A9"                                   # 99 bytes, then a 2-byte character
        for path in (f"{JOBS}/%ff%fe", f"{JOBS}/{cut}", f"{JOBS}/%ff/events", f"{JOBS}/%ff/checkpoints",
                     f"{JOBS}/%ff/metrics", f"{JOBS}/%ff/cancel", "/v1/files/%ff%fe", f"/v1/files/{'b' * 199}%C3%A9",
                     "/v1/models/%ff%fe", "/v1/models/%ff/content", f"{JOBS}?after=%ff"):
            method = "POST" if path.endswith("/cancel") else "GET"
            status, body, _ = self.d.request(method, path)
            self.assertIn(status, (400, 404), (path, status, body))
            self.assertIsInstance(body, dict, (path, body))
            msg = body["error"]["message"]
            self.assertNotIn("\ufffd", msg)
            msg.encode("utf-8")                                     # valid UTF-8 (json.loads gave str)
        status, body, _ = self.d.request("GET", f"{JOBS}/{cut}")
        self.assertIn("a" * 99 + "\u00e9", body["error"]["message"])  # the whole character, not half of it

    def test_bad_inputs(self):
        hp = "method.core_tuning.hyperparameters."

        def with_hp(**kw):
            b = tiny_job()
            b["method"]["core_tuning"]["hyperparameters"].update(kw)
            return b

        def without(key):
            b = tiny_job()
            del b[key]
            return b

        cases = [  # (body, status, code, param, words in the message)
            (b"{not json", 400, "invalid_json", None, "malformed"),
            (b"", 400, "invalid_json", None, "empty"),
            (b"[1,2]", 400, "invalid_value", None, "object"),
            (tiny_job(bogus=1), 400, "unknown_parameter", "bogus", "bogus"),
            (with_hp(bogus=1), 400, "unknown_parameter", hp + "bogus", "bogus"),
            (with_hp(learning_rate="fast"), 400, "invalid_value", hp + "learning_rate", "number"),
            (with_hp(learning_rate=-1), 400, "invalid_value", hp + "learning_rate", "learning_rate"),
            (with_hp(n_epochs=0), 400, "invalid_value", hp + "n_epochs", "n_epochs"),
            (with_hp(n_epochs=2.5), 400, "invalid_value", hp + "n_epochs", "integer"),
            (with_hp(batch_size=100000), 400, "invalid_value", hp + "batch_size", "batch_size"),
            (with_hp(nesterov="yes"), 400, "invalid_value", hp + "nesterov", "true or false"),
            (with_hp(lr_schedule="step"), 400, "invalid_value", hp + "lr_schedule", "cosine"),
            (with_hp(threads=64), 400, "invalid_value", hp + "threads", "threads"),
            (tiny_job(method={"type": "dpo"}), 400, "invalid_value", "method.type", "core_tuning"),
            (tiny_job(architecture={"in_channels": 2}), 400, "invalid_value", "architecture.in_channels", "1 or 3"),
            (tiny_job(data={"valid_fraction": 1.5}), 400, "invalid_value", "data.valid_fraction", "valid_fraction"),
            (tiny_job(seed="x"), 400, "invalid_value", "seed", "integer"),
            (tiny_job(suffix="a:b"), 400, "invalid_value", "suffix", "suffix"),
            (tiny_job(metadata={"k": 1}), 400, "invalid_value", "metadata.k", "string"),
            (without("model"), 400, "invalid_value", "model", "required"),
            (without("training_file"), 400, "invalid_value", "training_file", "required"),
            (tiny_job(model="gpt-4o"), 400, "model_not_found", "model", "does not exist"),
            (tiny_job(model="../../etc/passwd"), 400, "model_not_found", "model", "does not exist"),
            (tiny_job(training_file="/etc/passwd"), 400, "file_not_found", "training_file", "neither"),
            (tiny_job(training_file="../coretuned.db"), 400, "file_not_found", "training_file", "neither"),
            (tiny_job(validation_file="file-doesnotexist"), 400, "file_not_found", "validation_file", "neither"),
            (b'{"a":' * 40 + b"1" + b"}" * 40, 400, "too_deep", None, "deeper"),
        ]
        for body, want_status, code, param, words in cases:
            with self.subTest(body=body if isinstance(body, bytes) else json.dumps(body)[:120]):
                status, err, headers = self.d.request("POST", JOBS, body)
                self.assertEqual(status, want_status, err)
                self.assertIn("application/json", headers["Content-Type"])
                self.assertEqual(set(err["error"]), {"message", "type", "param", "code"})
                self.assertEqual(err["error"]["type"], "invalid_request_error")
                self.assertEqual(err["error"]["code"], code, err)
                self.assertEqual(err["error"]["param"], param, err)
                self.assertIn(words, err["error"]["message"])
        self.assertEqual(self.count_jobs(), 0)   # nothing was queued

    def test_limits_and_routes(self):
        big = json.dumps(tiny_job(metadata={"k": "x" * 500})).encode() + b" " * (1 << 20)
        status, err, _ = self.d.request("POST", JOBS, big)
        self.assertEqual(status, 413, err)
        self.assertEqual(err["error"]["code"], "request_too_large")
        status, err, _ = self.d.request("POST", JOBS, b"model=resnet20", headers={"Content-Type": "text/plain"})
        self.assertEqual(status, 415, err)
        status, err, _ = self.d.request("DELETE", JOBS)
        self.assertEqual(status, 405, err)
        status, err, _ = self.d.request("GET", f"{JOBS}/ftjob-nope")
        self.assertEqual((status, err["error"]["code"], err["error"]["param"]), (404, "job_not_found", "id"))
        for action in ("cancel", "pause", "resume"):
            status, _, _ = self.d.request("POST", f"{JOBS}/ftjob-nope/{action}")
            self.assertEqual(status, 404)
        for what in ("events", "checkpoints", "metrics"):
            status, _, _ = self.d.request("GET", f"{JOBS}/ftjob-nope/{what}")
            self.assertEqual(status, 404)
        status, err, _ = self.d.request("GET", f"{JOBS}?limit=0")
        self.assertEqual((status, err["error"]["param"]), (400, "limit"))
        status, err, _ = self.d.request("GET", f"{JOBS}?limit=abc")
        self.assertEqual(status, 400)
        status, err, _ = self.d.request("GET", f"{JOBS}?after=ftjob-nope")
        self.assertEqual((status, err["error"]["param"]), (400, "after"))
        status, err, _ = self.d.request("GET", "/v1/models/..%2F..%2Fcoretuned.db/content")
        self.assertEqual(status, 404)
        status, body, _ = self.d.request("GET", "/readyz")
        self.assertEqual((status, body["status"]), (200, "ready"))

    def test_slow_clients_do_not_block_others(self):
        import socket
        slow = []
        for _ in range(20):  # half-sent headers and half-sent bodies
            c = socket.create_connection(("127.0.0.1", self.d.port))
            c.sendall(b"POST /v1/fine_tuning/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"mo")
            slow.append(c)
            c = socket.create_connection(("127.0.0.1", self.d.port))
            c.sendall(b"GET /healthz HTTP/1.1\r\nHo")
            slow.append(c)
        # blocked behind them, a request would wait for their 60 s connection timeout: bounds far below that,
        # far above what a loaded machine needs, tell the two apart without timing the daemon
        t0 = time.time()
        for _ in range(10):
            self.assertEqual(self.d.request("GET", "/healthz", timeout=10)[0], 200)
        self.assertLess(time.time() - t0, 20.0)
        for c in slow:
            c.close()

    def test_stream_idle_job_heartbeats_and_sigterm(self):
        _, job, _ = self.submit()
        s = SSE(self.d, f"{JOBS}/{job['id']}/events", timeout=10)
        self.assertEqual(s.resp.status, 200)
        self.assertIn("text/event-stream", s.resp.getheader("Content-Type"))
        it = iter(s)
        eid, kind, data = next(it)
        self.assertEqual((eid, kind, data["data"]["status"]), (data["id"], "status", "queued"))
        t0 = time.time()
        while s.comments < 2 and time.time() - t0 < 5:  # heartbeats every 0.2 s keep an idle stream alive
            if s.resp.readline().startswith(b":"):
                s.comments += 1
        self.assertGreaterEqual(s.comments, 2)
        # other requests are served while the stream is open
        self.assertEqual(self.d.request("GET", "/healthz")[0], 200)
        self.d.request("POST", f"{JOBS}/{job['id']}/cancel")
        rest = list(it)
        self.assertEqual(rest[-1][1], "end")
        self.assertEqual([k for _, k, _ in rest[:-1]], ["status"])
        s.close()
        # a stream left open does not hold up SIGTERM
        _, job2, _ = self.submit()
        s2 = SSE(self.d, f"{JOBS}/{job2['id']}/events?stream=true", timeout=10)
        next(iter(s2))
        rc, secs = self.d.stop(signal.SIGTERM, timeout=30)
        self.assertEqual(rc, 0, self.d.read_log())
        self.assertLess(secs, 15.0)   # not a benchmark: held up, it would never stop (heartbeats keep it open)
        s2.close()
        self.d.start()


if __name__ == "__main__":
    unittest.main()
