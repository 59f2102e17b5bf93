"""Jobs as Slurm batch jobs (--executor slurm), end to end against a real private one-node cluster
(tests/e2e/slurm.py starts munged, slurmctld and slurmd for this module and stops them after): a job
succeeds with the same events and metrics as a local run of the same spec, cancel, pause and resume with
step numbers continuing, `kill -9` of the daemon while a job runs (re-attached, submitted exactly once,
no event twice), `scancel` behind the daemon's back, the controller down for 10 s, two jobs at once. If
the cluster cannot start, every test here fails with the Slurm logs (never a skip)."""
import os
import signal
import subprocess
import time
import unittest

from harness import Daemon, SANITIZED, all_events, integrity_check, tiny_job, wait_event, wait_for
import slurm

CLUSTER = None
POLL = "1"


def setUpModule():
    global CLUSTER
    CLUSTER = slurm.Cluster()
    try:
        CLUSTER.start()
    except Exception:
        CLUSTER.stop()
        raise
    os.environ.update(CLUSTER.env())  # the daemons started below find the cluster through SLURM_CONF


def tearDownModule():
    if CLUSTER:
        CLUSTER.stop()
        os.environ.pop("SLURM_CONF", None)


def slurm_rows(name_prefix):
    """squeue rows (id, name, state) of every job whose name starts with name_prefix (all states)."""
    out = CLUSTER.squeue("--noheader", "--states=all", "--format=%i|%j|%T")
    rows = [tuple(l.split("|")) for l in out.splitlines() if l.strip()]
    return [r for r in rows if r[1].startswith(name_prefix)]


def steps_of(events):
    return [e["data"]["step"] for e in events if e["type"] == "metrics"]


def long_job(epochs=6):
    """A job that runs long enough to act on it while it trains (a few seconds an epoch), checkpointing
    every second."""
    return tiny_job(epochs=epochs, train_limit=256 if SANITIZED else 512)


class SlurmTest(unittest.TestCase):
    extra = ()

    def setUp(self):
        self.d = Daemon("--executor", "slurm", "--slurm-poll-seconds", POLL, "--checkpoint-seconds", "1",
                        *self.extra).start()

    def tearDown(self):
        data_dir = self.d.data_dir
        if self.d.proc is not None:
            rc, _ = self.d.stop(timeout=60)
            self.assertEqual(rc, 0, self.d.read_log())
        try:
            self.assertEqual(integrity_check(data_dir), "ok")
        finally:
            # nothing of this test may outlive it on the cluster
            subprocess.run(["scancel", "--user", str(os.getuid())], env=CLUSTER.env(), capture_output=True)
            self.d.cleanup()

    def create(self, body):
        st, job, _ = self.d.request("POST", "/v1/fine_tuning/jobs", body)
        self.assertEqual(st, 200, job)
        return job

    def fail_msg(self, what=""):
        return f"{what}\n--- daemon log ---\n{self.d.read_log()[-4000:]}\n--- slurm ---\n{CLUSTER.log_tail(20)}"

    def wait(self, job_id, statuses, timeout=180):
        try:
            return wait_for(self.d, job_id, statuses, timeout=timeout, poll=0.1)
        except AssertionError as e:
            raise AssertionError(self.fail_msg(str(e))) from None


class TestSlurmJobs(SlurmTest):
    def test_job_succeeds_like_a_local_job(self):
        body = tiny_job(epochs=2)
        t0 = time.time()
        job = self.create(body)
        self.assertEqual(job["executor"]["type"], "slurm")
        first = wait_event(self.d, job["id"], lambda e: e["type"] == "metrics", timeout=120)
        t_first = time.time() - t0
        done = self.wait(job["id"], {"succeeded", "failed", "cancelled"})
        self.assertEqual(done["status"], "succeeded", self.fail_msg(done.get("error")))
        x = done["executor"]
        self.assertEqual(x["type"], "slurm")
        self.assertTrue(x["job_id"].isdigit(), x)
        self.assertEqual(x["state"], "COMPLETED", x)
        self.assertTrue(x["node"], x)
        st, page, _ = self.d.request("GET", "/v1/fine_tuning/jobs")  # the list carries it too
        self.assertEqual(st, 200, page)
        self.assertEqual([j["executor"] for j in page["data"] if j["id"] == job["id"]], [x])
        evs = all_events(self.d, job["id"])
        submitted = [e for e in evs if e["message"].startswith("Submitted to Slurm as batch job")]
        self.assertEqual(len(submitted), 1, [e["message"] for e in evs])
        sub_num = int(submitted[0]["id"].split("-")[-1])
        self.assertLess(sub_num, int(first["id"].split("-")[-1]))
        print(f"\n    slurm: create -> first metrics event {t_first:.2f} s", flush=True)

        # the same spec locally: the same events (types, fields) and the same numbers
        local = Daemon().start()
        try:
            st, lj, _ = local.request("POST", "/v1/fine_tuning/jobs", body)
            self.assertEqual(st, 200, lj)
            self.assertEqual(lj["executor"], {"type": "local"})
            ldone = wait_for(local, lj["id"], {"succeeded", "failed"}, timeout=180)
            self.assertEqual(ldone["status"], "succeeded")
            lev = all_events(local, lj["id"])
            slurm_kinds = sorted({(e["type"], tuple(sorted((e["data"] or {}).keys()))) for e in evs
                                  if e["type"] != "message"})
            local_kinds = sorted({(e["type"], tuple(sorted((e["data"] or {}).keys()))) for e in lev
                                  if e["type"] != "message"})
            self.assertEqual(slurm_kinds, local_kinds)
            self.assertEqual(steps_of(evs), steps_of(lev))
            for a, b in zip([e for e in evs if e["type"] in ("metrics", "validation")],
                            [e for e in lev if e["type"] in ("metrics", "validation")]):
                for k in ("train_loss", "valid_accuracy", "valid_loss"):
                    if k in a["data"]:
                        self.assertAlmostEqual(a["data"][k], b["data"][k], places=5, msg=k)
            self.assertEqual(done["final_valid_accuracy"], ldone["final_valid_accuracy"])
            st, m, _ = self.d.request("GET", f"/v1/fine_tuning/jobs/{job['id']}/metrics?names=train_loss")
            st2, lm, _ = local.request("GET", f"/v1/fine_tuning/jobs/{lj['id']}/metrics?names=train_loss")
            self.assertEqual((st, st2), (200, 200))
            self.assertEqual(m["series"]["train_loss"]["steps"], lm["series"]["train_loss"]["steps"])
            for a, b in zip(m["series"]["train_loss"]["values"], lm["series"]["train_loss"]["values"]):
                self.assertAlmostEqual(a, b, places=5)
        finally:
            rc, _ = local.stop()
            local.cleanup()
            self.assertEqual(rc, 0)
        st, model, _ = self.d.request("GET", f"/v1/models/{done['fine_tuned_model']}")
        self.assertEqual(st, 200, model)
        self.assertEqual(len(slurm_rows(f"ct-{job['id']}-")), 1)

    def test_cancel(self):
        job = self.create(long_job(epochs=20))
        self.wait(job["id"], {"running"})
        st, j, _ = self.d.request("POST", f"/v1/fine_tuning/jobs/{job['id']}/cancel")
        self.assertEqual((st, j["status"]), (200, "cancelled"), j)
        wait_event(self.d, job["id"], lambda e: e["message"].startswith("Training stopped"), timeout=60)
        rows = slurm_rows(f"ct-{job['id']}-")
        self.assertEqual(len(rows), 1, rows)
        self.assertEqual(rows[0][2], "CANCELLED", rows)
        _, j, _ = self.d.request("GET", f"/v1/fine_tuning/jobs/{job['id']}")
        self.assertEqual(j["status"], "cancelled")
        self.assertIsNone(j["error"])

    def test_pause_and_resume_continue_the_step_numbers(self):
        job = self.create(long_job(epochs=4))
        wait_event(self.d, job["id"], lambda e: e["type"] == "checkpoint", timeout=120)
        st, j, _ = self.d.request("POST", f"/v1/fine_tuning/jobs/{job['id']}/pause")
        self.assertEqual(st, 200, j)
        paused = wait_event(self.d, job["id"], lambda e: e["type"] == "status" and e["data"].get("status") == "paused"
                            and "step" in e["data"], timeout=90)
        at = paused["data"]["step"]
        self.assertGreater(at, 0)
        _, j, _ = self.d.request("GET", f"/v1/fine_tuning/jobs/{job['id']}")
        self.assertEqual(j["status"], "paused")
        st, j, _ = self.d.request("POST", f"/v1/fine_tuning/jobs/{job['id']}/resume")
        self.assertEqual(st, 200, j)
        done = self.wait(job["id"], {"succeeded", "failed"})
        self.assertEqual(done["status"], "succeeded", self.fail_msg(done.get("error")))
        steps = steps_of(all_events(self.d, job["id"]))
        after = [s for s in steps if s > at]
        self.assertTrue(after, steps)
        self.assertEqual(steps.index(after[0]), steps.index(at) + 1, "steps restarted after the resume")
        self.assertEqual(after[-1], done["progress"]["total_steps"])
        self.assertEqual(len(steps), len(set(steps)), "a step reported twice")
        self.assertEqual(len(slurm_rows(f"ct-{job['id']}-")), 2)  # one submission each

    def test_scancel_behind_coretuned_fails_the_job(self):
        job = self.create(long_job(epochs=20))
        j = self.wait(job["id"], {"running"})
        sid = j["executor"]["job_id"]
        subprocess.run(["scancel", sid], env=CLUSTER.env(), check=True)
        done = self.wait(job["id"], {"failed", "succeeded", "cancelled"}, timeout=60)
        self.assertEqual(done["status"], "failed")
        self.assertIn("cancelled outside coretuned", done["error"]["message"])

    def test_two_jobs_at_once(self):
        a = self.create(long_job(epochs=3))
        b = self.create(long_job(epochs=3))
        both = False
        deadline = time.time() + 120
        while time.time() < deadline and not both:
            ja = self.d.request("GET", f"/v1/fine_tuning/jobs/{a['id']}")[1]
            jb = self.d.request("GET", f"/v1/fine_tuning/jobs/{b['id']}")[1]
            both = ja["status"] == "running" and jb["status"] == "running"
            time.sleep(0.1)
        self.assertTrue(both, self.fail_msg("the two jobs never ran at the same time"))
        for j in (a, b):
            self.assertEqual(self.wait(j["id"], {"succeeded", "failed"})["status"], "succeeded")

    def test_resources_reach_sbatch(self):
        body = long_job(epochs=20)
        body["resources"] = {"cpus": 1, "memory_mb": 256, "time_limit_minutes": 7}
        job = self.create(body)
        j = self.wait(job["id"], {"running"})
        out = CLUSTER.run("scontrol", "show", "job", "-o", j["executor"]["job_id"])
        self.assertIn("TimeLimit=00:07:00", out)
        self.assertIn("MinMemoryNode=256M", out)
        self.assertIn(f"Comment=owner=", out)
        st, _, _ = self.d.request("POST", f"/v1/fine_tuning/jobs/{job['id']}/cancel")
        self.assertEqual(st, 200)
        bad = tiny_job()
        bad["resources"] = {"gpus": "two"}
        st, err, _ = self.d.request("POST", "/v1/fine_tuning/jobs", bad)
        self.assertEqual(st, 400, err)
        self.assertEqual(err["error"]["param"], "resources.gpus")
        # a CUDA job must ask Slurm for the GPU it names (the run sees only what --gres gives it)
        for device, gpus in (("cuda", None), ("cuda:1", 1)):
            bad = tiny_job(device=device)
            if gpus:
                bad["resources"] = {"gpus": gpus}
            st, err, _ = self.d.request("POST", "/v1/fine_tuning/jobs", bad)
            self.assertEqual((st, err["error"]["param"]), (400, "device"), err)
            self.assertIn("resources.gpus", err["error"]["message"])


    def test_sbatch_refusal_fails_the_job_with_its_reason(self):
        body = tiny_job()
        body["resources"] = {"partition": "nosuchpartition"}
        job = self.create(body)
        done = self.wait(job["id"], {"failed", "succeeded"}, timeout=60)
        self.assertEqual(done["status"], "failed")
        self.assertEqual(done["error"]["code"], "executor_failed")
        self.assertIn("sbatch refused the job", done["error"]["message"])
        self.assertIn("partition", done["error"]["message"].lower())

    def test_pending_job_is_queued_with_slurms_reason(self):
        cpus = os.cpu_count()
        first = long_job(epochs=20)
        first["resources"] = {"cpus": cpus}
        a = self.create(first)
        self.wait(a["id"], {"running"})
        second = tiny_job()
        second["resources"] = {"cpus": cpus}
        b = self.create(second)
        deadline = time.time() + 30
        while time.time() < deadline:
            jb = self.d.request("GET", f"/v1/fine_tuning/jobs/{b['id']}")[1]
            if jb["executor"].get("state") == "PENDING" and jb["executor"].get("reason"):
                break
            time.sleep(0.2)
        self.assertEqual(jb["status"], "queued", jb)
        self.assertEqual(jb["executor"]["state"], "PENDING", jb["executor"])
        self.assertIn(jb["executor"]["reason"], ("Resources", "Priority"), jb["executor"])
        self.assertIsNone(jb["queue_position"])  # Slurm's queue, not ours
        r = subprocess.run([os.path.join(os.environ.get("CT_BIN", "bin"), "coretune"), "--url", self.d.url(""),
                            "--token", self.d.token, "show", b["id"]], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("PENDING", r.stdout)
        self.assertIn(jb["executor"]["job_id"], r.stdout)
        for j in (a, b):
            self.assertEqual(self.d.request("POST", f"/v1/fine_tuning/jobs/{j['id']}/cancel")[0], 200)
        self.wait(b["id"], {"cancelled"})

    def test_requeue_by_slurm_resumes_from_the_checkpoint(self):
        job = self.create(long_job(epochs=4))
        wait_event(self.d, job["id"], lambda e: e["type"] == "checkpoint", timeout=120)
        _, j, _ = self.d.request("GET", f"/v1/fine_tuning/jobs/{job['id']}")
        CLUSTER.run("scontrol", "requeue", j["executor"]["job_id"])
        pre = wait_event(self.d, job["id"], lambda e: e["type"] == "status" and e["data"].get("preempted"), timeout=60)
        self.assertEqual(pre["data"]["status"], "queued")
        done = self.wait(job["id"], {"succeeded", "failed"}, timeout=240)
        self.assertEqual(done["status"], "succeeded", self.fail_msg(done.get("error")))
        evs = all_events(self.d, job["id"])
        again = [e for e in evs if e["type"] == "status" and e["data"].get("status") == "running"]
        self.assertEqual(len(again), 2, [e["message"] for e in evs])
        self.assertTrue(again[1]["data"]["resumed"])
        steps = steps_of(evs)
        self.assertEqual(steps[-1], done["progress"]["total_steps"])
        # continued from the checkpoint: the steps after the requeue start right after a checkpointed step
        ckpt_steps = {e["data"]["step"] for e in evs if e["type"] == "checkpoint"}
        back = [i for i in range(1, len(steps)) if steps[i] <= steps[i - 1]]
        for i in back:
            self.assertIn(steps[i] - 1, ckpt_steps, steps)
        self.assertEqual(len(slurm_rows(f"ct-{job['id']}-")), 1)


    def test_a_sweep_runs_its_trials_as_slurm_jobs(self):
        lr = "method.core_tuning.hyperparameters.learning_rate"
        st, w, _ = self.d.request("POST", "/v1/fine_tuning/sweeps", {
            "job": tiny_job(epochs=1), "parameters": {lr: [0.01, 0.05]}, "max_parallel": 2})
        self.assertEqual(st, 200, w)
        deadline = time.time() + 180
        while w["status"] not in ("succeeded", "failed") and time.time() < deadline:
            time.sleep(0.2)
            w = self.d.request("GET", f"/v1/fine_tuning/sweeps/{w['id']}")[1]
        self.assertEqual(w["status"], "succeeded", self.fail_msg(w))
        for t in w["trials"]:
            j = self.d.request("GET", f"/v1/fine_tuning/jobs/{t['job_id']}")[1]
            self.assertEqual(j["executor"]["type"], "slurm")
            self.assertEqual(len(slurm_rows(f"ct-{t['job_id']}-")), 1)


class TestSlurmCrashes(SlurmTest):
    def test_crash_between_sbatch_and_its_reply_finds_the_job_by_name(self):
        # sbatch that submits, then keeps the daemon waiting for its reply: the daemon is killed in that
        # window, before it could record the Slurm id; the next one must find the job, not submit it again
        wrap = os.path.join(self.d.data_dir, "slowbin")
        os.makedirs(wrap)
        real = subprocess.run(["sh", "-c", "command -v sbatch"], capture_output=True, text=True).stdout.strip()
        with open(os.path.join(wrap, "sbatch"), "w") as f:
            f.write(f"#!/bin/sh\n{real} \"$@\"; rc=$?\ntouch {wrap}/submitted\nsleep 60\nexit $rc\n")
        os.chmod(os.path.join(wrap, "sbatch"), 0o755)
        rc, _ = self.d.stop()
        self.assertEqual(rc, 0)
        path = os.environ["PATH"]
        os.environ["PATH"] = wrap + ":" + path
        try:
            self.d.start()
        finally:
            os.environ["PATH"] = path
        job = self.create(long_job(epochs=2))
        deadline = time.time() + 30
        while not os.path.exists(os.path.join(wrap, "submitted")) and time.time() < deadline:
            time.sleep(0.05)
        self.assertTrue(os.path.exists(os.path.join(wrap, "submitted")))
        self.d.proc.send_signal(signal.SIGKILL)
        self.d.proc.wait()
        self.d.proc = None
        self.d.log.close()
        subprocess.run(["pkill", "-f", f"{wrap}/sbatch"])
        self.d.start()
        done = self.wait(job["id"], {"succeeded", "failed"})
        self.assertEqual(done["status"], "succeeded", self.fail_msg(done.get("error")))
        self.assertEqual(len(slurm_rows(f"ct-{job['id']}-")), 1, "submitted twice")
        evs = all_events(self.d, job["id"])
        self.assertTrue(any(e["message"].startswith("Found Slurm batch job") for e in evs),
                        [e["message"] for e in evs])
        self.assertEqual(steps_of(evs), list(range(1, done["progress"]["total_steps"] + 1)))

    def test_kill9_while_running_reattaches_and_submits_once(self):
        job = self.create(long_job(epochs=4))
        wait_event(self.d, job["id"], lambda e: e["type"] == "metrics", timeout=120)
        self.d.proc.send_signal(signal.SIGKILL)
        self.d.proc.wait()
        self.d.proc = None
        self.d.log.close()
        time.sleep(2)  # the Slurm job trains on without the daemon
        self.d.start()
        done = self.wait(job["id"], {"succeeded", "failed"})
        self.assertEqual(done["status"], "succeeded", self.fail_msg(done.get("error")))
        self.assertEqual(len(slurm_rows(f"ct-{job['id']}-")), 1, "submitted more than once")
        evs = all_events(self.d, job["id"])
        steps = steps_of(evs)
        self.assertEqual(steps, list(range(1, done["progress"]["total_steps"] + 1)), "an event lost or twice")
        self.assertEqual(len([e for e in evs if e["message"].startswith("Submitted to Slurm")]), 1)

    def test_sigterm_leaves_the_job_running(self):
        job = self.create(long_job(epochs=4))
        wait_event(self.d, job["id"], lambda e: e["type"] == "metrics", timeout=120)
        rc, _ = self.d.stop()
        self.assertEqual(rc, 0, self.d.read_log())
        rows = slurm_rows(f"ct-{job['id']}-")
        self.assertIn(rows[0][2], ("RUNNING", "COMPLETING", "COMPLETED"), rows)
        self.d.start()
        done = self.wait(job["id"], {"succeeded", "failed"})
        self.assertEqual(done["status"], "succeeded", self.fail_msg(done.get("error")))
        steps = steps_of(all_events(self.d, job["id"]))
        self.assertEqual(steps, list(range(1, done["progress"]["total_steps"] + 1)))

    def test_controller_down_for_10_seconds(self):
        job = self.create(long_job(epochs=6))
        self.wait(job["id"], {"running"})
        CLUSTER.stop_controller()
        try:
            deadline = time.time() + 10
            saw_unready = False
            while time.time() < deadline:
                st, body, _ = self.d.request("GET", "/readyz")
                if st == 503:
                    saw_unready = True
                    self.assertIn("Slurm controller", body["error"]["message"])
                _, j, _ = self.d.request("GET", f"/v1/fine_tuning/jobs/{job['id']}")
                self.assertIn(j["status"], ("running", "succeeded"), j)  # never failed for the outage
                time.sleep(0.5)
        finally:
            CLUSTER.start_controller()
        self.assertTrue(saw_unready, self.fail_msg("/readyz never said the controller was down"))
        done = self.wait(job["id"], {"succeeded", "failed"})
        self.assertEqual(done["status"], "succeeded", self.fail_msg(done.get("error")))
        deadline = time.time() + 30
        while self.d.request("GET", "/readyz")[0] != 200 and time.time() < deadline:
            time.sleep(0.2)
        self.assertEqual(self.d.request("GET", "/readyz")[0], 200)
        self.assertIn("unreachable", self.d.read_log())


class TestLocalResources(unittest.TestCase):
    def test_local_executor_refuses_what_it_cannot_give(self):
        d = Daemon().start()
        try:
            for res, param in (({"gpus": 1}, "resources.gpus"), ({"cpus": 4096}, "resources.cpus"),
                               ({"partition": "debug"}, "resources.partition")):
                body = tiny_job()
                body["resources"] = res
                st, err, _ = d.request("POST", "/v1/fine_tuning/jobs", body)
                self.assertEqual(st, 400, err)
                self.assertEqual(err["error"]["param"], param)
            body = tiny_job(epochs=1)
            body["resources"] = {"cpus": 1}
            st, j, _ = d.request("POST", "/v1/fine_tuning/jobs", body)
            self.assertEqual(st, 200, j)
            self.assertEqual(j["threads"], 1)
            self.assertEqual(wait_for(d, j["id"], {"succeeded", "failed"})["status"], "succeeded")
        finally:
            rc, _ = d.stop()
            d.cleanup()
        self.assertEqual(rc, 0)


if __name__ == "__main__":
    unittest.main()
