"""Fair use of the machine (issue #6) with several users against the real daemon: per-user quotas from
the config answered 429 quota_exceeded naming the limit (queued jobs, threads, upload bytes, also on
resume); queue_position and estimated_start in the job object following fair share (one user's many
queued jobs do not push back another user's first job) and priority within a user; a real run where a
second user's job starts before the first user's backlog; graceful preemption: a running job is
checkpointed and requeued when another user's job waits, then resumes and finishes with its steps
continuing; the threads of running jobs never exceed --cores (sampled from /metrics)."""
import re
import time
import unittest

from harness import DaemonTest, add_user, all_events, tiny_job, wait_event, wait_for
from test_files import cifar10_batch, multipart

JOBS = "/v1/fine_tuning/jobs"
FINAL = ("succeeded", "failed", "cancelled")


class Base(DaemonTest):
    def setUp(self):
        super().setUp()
        self.alice = add_user(self.d, "alice")
        self.bob = add_user(self.d, "bob")

    def submit(self, token, body=None, status=200):
        s, job, _ = self.d.request("POST", JOBS, body or tiny_job(), token=token)
        self.assertEqual(s, status, job)
        return job

    def get(self, jid, token="admin"):
        return self.d.request("GET", f"{JOBS}/{jid}", token=token)[1]


class QuotaTest(Base):
    args = ("--workers", "0", "--cores", "2", "--threads-per-job", "2",
            "--quota", "queued_jobs=3,threads=2", "--user-quota", "bob:queued_jobs=1,threads=1,upload_mb=1")

    def test_quotas(self):
        for _ in range(3):
            self.submit(self.alice)
        err = self.submit(self.alice, status=429)["error"]
        self.assertEqual((err["code"], err["type"]), ("quota_exceeded", "insufficient_quota"))
        self.assertIn("queued_jobs", err["message"])
        # bob's override: one queued job, one thread
        two = tiny_job()
        two["method"]["core_tuning"]["hyperparameters"]["threads"] = 2
        err = self.submit(self.bob, two, status=429)["error"]
        self.assertIn("threads", err["message"])
        bjob = self.submit(self.bob)
        self.assertIn("queued_jobs", self.submit(self.bob, status=429)["error"]["message"])
        # resume counts against the queued quota too
        self.d.request("POST", f"{JOBS}/{bjob['id']}/pause", token=self.bob)
        self.submit(self.bob)
        s, err, _ = self.d.request("POST", f"{JOBS}/{bjob['id']}/resume", token=self.bob)
        self.assertEqual((s, err["error"]["code"]), (429, "quota_exceeded"))
        # uploads: bob may store 1 MiB
        body, h = multipart({}, "data_batch_1.bin", cifar10_batch(20))  # 614,600 bytes
        self.assertEqual(self.d.request("POST", "/v1/files", body, headers=h, token=self.bob)[0], 200)
        s, err, _ = self.d.request("POST", "/v1/files", body, headers=h, token=self.bob)
        self.assertEqual(s, 429, err)
        self.assertIn("upload_bytes", err["error"]["message"])
        self.assertEqual(len(self.d.request("GET", "/v1/files", token=self.bob)[1]["data"]), 1)
        _, me, _ = self.d.request("GET", "/v1/me", token=self.bob)
        self.assertEqual((me["quota"]["queued_jobs"], me["quota"]["threads"], me["usage"]["queued_jobs"]), (1, 1, 1))
        # the admin is not exempt from the default quota, but others' jobs do not count against it
        self.submit("admin")

    def test_queue_positions_fair_share_and_priority(self):
        a = [self.submit(self.alice)["id"] for _ in range(3)]
        b = self.submit(self.bob)["id"]
        pos = lambda jid: self.get(jid)["queue_position"]
        # alice's backlog does not push bob's first job to the back
        self.assertEqual([pos(j) for j in a + [b]], [1, 3, 4, 2])
        # priority orders within a user only
        self.d.request("POST", f"{JOBS}/{a[0]}/cancel", token=self.alice)
        urgent = self.submit(self.bob, dict(tiny_job(), priority=9), status=429)  # bob's queue is full (1)
        self.assertEqual(urgent["error"]["code"], "quota_exceeded")
        self.d.request("POST", f"{JOBS}/{b}/cancel", token=self.bob)
        hi = self.submit(self.alice, dict(tiny_job(), priority=9))
        self.assertEqual(hi["priority"], 9)
        self.assertEqual(pos(hi["id"]), 1)
        self.assertEqual([pos(j) for j in a[1:]], [2, 3])
        bad = self.submit(self.alice, dict(tiny_job(), priority=12), status=400)
        self.assertEqual(bad["error"]["param"], "priority")


class FairRunTest(Base):
    args = ("--workers", "1", "--cores", "1", "--threads-per-job", "1", "--preemption", "no")

    def test_second_user_runs_before_first_users_backlog(self):
        a = [self.submit(self.alice, tiny_job(epochs=1))["id"] for _ in range(3)]
        wait_for(self.d, a[0], ("running",) + FINAL)
        b = self.submit(self.bob, tiny_job(epochs=1))["id"]
        job = self.get(b)
        self.assertEqual(job["queue_position"], 1)
        for jid in a + [b]:
            self.assertEqual(wait_for(self.d, jid, FINAL, timeout=300)["status"], "succeeded")
        started = {jid: self.get(jid)["started_at"] for jid in a + [b]}
        order = sorted(started, key=lambda j: (started[j], a.index(j) if j in a else 1.5))
        self.assertLess(order.index(b), order.index(a[2]), started)


class PreemptionTest(Base):
    args = ("--workers", "1", "--cores", "1", "--threads-per-job", "1", "--preempt-grace", "2",
            "--checkpoint-seconds", "0")

    def running_threads_ok(self):
        s, text, _ = self.d.request("GET", "/metrics")
        text = text.decode() if isinstance(text, bytes) else text
        cores = float(re.search(r"^coretuned_cores (\S+)$", text, re.M).group(1))
        threads = float(re.search(r"^coretuned_running_threads (\S+)$", text, re.M).group(1))
        self.assertLessEqual(threads, cores)

    def test_preempt_checkpoint_requeue_resume(self):
        a = self.submit(self.alice, tiny_job(epochs=15))["id"]  # long enough to be preempted
        wait_event(self.d, a, lambda e: e["type"] == "metrics", timeout=120)
        b = self.submit(self.bob, tiny_job(epochs=1))["id"]
        wait_event(self.d, a, lambda e: e["type"] == "status" and e["data"].get("preempted"), timeout=120)
        self.assertEqual(wait_for(self.d, b, ("running",) + FINAL, timeout=120)["status"] in ("running", "succeeded"), True)
        for _ in range(20):
            self.running_threads_ok()
            time.sleep(0.1)
        self.assertEqual(wait_for(self.d, b, FINAL, timeout=300)["status"], "succeeded")
        job = wait_for(self.d, a, FINAL, timeout=300)
        self.assertEqual(job["status"], "succeeded", job)
        ev = all_events(self.d, a)
        self.assertTrue(any(e["type"] == "status" and e["data"].get("resumed") for e in ev))
        steps = [e["data"]["step"] for e in ev if e["type"] == "metrics"]
        self.assertEqual(max(steps), job["progress"]["total_steps"])
        preempted = [e for e in ev if e["type"] == "status" and e["data"].get("preempted")]
        self.assertGreaterEqual(len(preempted), 1)
        s, text, _ = self.d.request("GET", "/metrics")
        text = text.decode() if isinstance(text, bytes) else text
        self.assertGreaterEqual(float(re.search(r"^coretuned_preemptions_total (\S+)$", text, re.M).group(1)), 1)


if __name__ == "__main__":
    unittest.main()
