"""Storage management against the real daemon: DELETE of files, fine-tuned models and finished jobs
(their 409s, 404s for another user's item, 403 for a base model), the bytes reclaimed off disk and in
/metrics, orphan directories swept at start, retention keeping exactly --keep-checkpoints checkpoints
(best and final weights stay) and --retention-days removing an old finished job's resumable state,
disk usage in /v1/me and GET /v1/storage, the disk_mb quota (429 naming it), and the low-disk guard
(--min-free-mb) on a small tmpfs this test mounts (root only; skipped with the reason otherwise):
uploads and new jobs answer 507, /readyz says so and queued jobs do not start, until space returns."""
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import unittest

from harness import Daemon, DaemonTest, add_user, all_events, tiny_job, wait_for
from test_diskfull import PROBLEM as MOUNT_PROBLEM
from test_files import cifar10_batch, multipart

JOBS = "/v1/fine_tuning/jobs"
FINAL = ("succeeded", "failed", "cancelled")
MIB = 1 << 20


def upload(d, per_class=4, token="admin"):
    body, headers = multipart({"purpose": "fine-tune"}, "data_batch_1.bin", cifar10_batch(per_class))
    return d.request("POST", "/v1/files", body, headers=headers, token=token)


def eventually(pred, timeout=20.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not true after {timeout}s")


def reclaimed(d):
    status, text, _ = d.request("GET", "/metrics")
    assert status == 200, text
    for line in text.decode().splitlines():
        if line.startswith("coretuned_storage_reclaimed_bytes_total "):
            return int(line.split()[1])
    raise AssertionError("no coretuned_storage_reclaimed_bytes_total in /metrics")


class QueuedDeletes(DaemonTest):
    """--workers 0: jobs stay queued, so the 409s are stable."""
    args = ("--workers", "0")

    def test_file_and_job_deletes(self):
        d = self.d
        bob = add_user(d, "bob")
        status, f, _ = upload(d)
        self.assertEqual(status, 200, f)
        fdir = os.path.join(d.data_dir, "files", f["id"])
        self.assertTrue(os.path.isdir(fdir))
        # another user's file: not found, for reading and for deleting
        self.assertEqual(d.request("DELETE", f"/v1/files/{f['id']}", token=bob)[0], 404)
        job = tiny_job(epochs=1, training_file=f["id"])
        job["architecture"] = {"in_channels": 3, "image_size": 32}
        job["data"] = {"valid_fraction": 0.25}
        status, j, _ = d.request("POST", JOBS, job)
        self.assertEqual(status, 200, j)
        # the dataset list says who uses it
        ds = {x["id"]: x for x in d.request("GET", "/v1/datasets")[1]["data"]}
        self.assertEqual(ds[f["id"]]["used_by"], {"jobs": 1, "active_jobs": 1})
        self.assertEqual(ds[f["id"]]["bytes"], f["bytes"])
        status, err, _ = d.request("DELETE", f"/v1/files/{f['id']}")
        self.assertEqual(status, 409, err)
        self.assertEqual(err["error"]["code"], "file_in_use")
        self.assertIn(j["id"], err["error"]["message"])
        status, err, _ = d.request("DELETE", f"{JOBS}/{j['id']}")
        self.assertEqual((status, err["error"]["code"]), (409, "invalid_state"), err)
        self.assertEqual(d.request("DELETE", f"{JOBS}/{j['id']}", token=bob)[0], 404)  # not bob's
        self.assertEqual(d.request("POST", f"{JOBS}/{j['id']}/cancel")[0], 200)
        status, out, _ = d.request("DELETE", f"{JOBS}/{j['id']}")
        self.assertEqual(status, 200, out)
        self.assertEqual(out, {"id": j["id"], "object": "fine_tuning.job", "deleted": True})
        self.assertEqual(d.request("GET", f"{JOBS}/{j['id']}")[0], 404)
        self.assertEqual(d.request("GET", f"{JOBS}/{j['id']}/events")[0], 404)
        self.assertEqual(d.request("DELETE", f"{JOBS}/{j['id']}")[0], 404)
        # no job uses the file any more
        status, out, _ = d.request("DELETE", f"/v1/files/{f['id']}")
        self.assertEqual((status, out), (200, {"id": f["id"], "object": "file", "deleted": True}))
        self.assertEqual(d.request("GET", f"/v1/files/{f['id']}")[0], 404)
        self.assertEqual(d.request("DELETE", f"/v1/files/{f['id']}")[0], 404)
        eventually(lambda: not os.path.exists(fdir), what="the upload's directory removed")
        eventually(lambda: reclaimed(d) >= f["bytes"], what="reclaimed bytes counted")
        # the audit trail keeps both deletes
        status, audit, _ = d.request("GET", "/v1/audit")
        actions = {(a["action"], a["target"]) for a in audit["data"]}
        self.assertIn(("job_delete", j["id"]), actions)
        self.assertIn(("file_delete", f["id"]), actions)
        # models: a base architecture is not deletable (403), an unknown one is not found
        status, err, _ = d.request("DELETE", "/v1/models/resnet20")
        self.assertEqual((status, err["error"]["code"]), (403, "permission_denied"), err)
        self.assertEqual(d.request("DELETE", "/v1/models/no-such-model")[0], 404)

    def test_orphans_swept_at_start(self):
        d = self.d
        status, f, _ = upload(d)
        self.assertEqual(status, 200, f)
        d.stop()
        orphan_job = os.path.join(d.data_dir, "jobs", "ftjob-orphan0000000000")
        orphan_file = os.path.join(d.data_dir, "files", "file-orphan0000000000")
        for p in (orphan_job, orphan_file):
            os.makedirs(p)
            with open(os.path.join(p, "x.bin"), "wb") as fh:
                fh.write(b"\0" * 4096)
        d.start()
        eventually(lambda: not os.path.exists(orphan_job) and not os.path.exists(orphan_file),
                   what="orphans removed")
        self.assertTrue(os.path.isdir(os.path.join(d.data_dir, "files", f["id"])), "a live upload was removed")
        self.assertEqual(d.request("GET", f"/v1/files/{f['id']}")[0], 200)


class TrainedDeletes(DaemonTest):
    args = ("--workers", "1", "--threads-per-job", "1", "--keep-checkpoints", "2", "--checkpoint-seconds", "0")

    def test_retention_model_and_job_delete(self):
        d = self.d
        bob = add_user(d, "bob")
        status, j, _ = d.request("POST", JOBS, tiny_job(epochs=4))
        self.assertEqual(status, 200, j)
        j = wait_for(d, j["id"], FINAL)
        self.assertEqual(j["status"], "succeeded", j)
        jdir = os.path.join(d.data_dir, "jobs", j["id"])
        # retention: exactly --keep-checkpoints listed (4 epochs wrote more), best and final kept
        def kept():
            return len(d.request("GET", f"{JOBS}/{j['id']}/checkpoints?limit=100")[1]["data"])
        written = [e for e in all_events(d, j["id"]) if e["type"] == "checkpoint"]
        self.assertGreater(len(written), 2, "the job must write more checkpoints than are kept")
        eventually(lambda: kept() == 2, what="checkpoints pruned to 2")
        time.sleep(1.5)  # another retention tick must not prune further
        self.assertEqual(kept(), 2)
        for name in ("best.safetensors", "final.safetensors"):
            self.assertTrue(os.path.exists(os.path.join(jdir, name)), name)
        # usage: the model's weights and the job's other files
        status, me, _ = d.request("GET", "/v1/me")
        self.assertEqual(status, 200, me)
        st = me["storage"]
        self.assertGreater(st["model_bytes"], 0)
        self.assertGreater(st["job_bytes"], 0)
        self.assertEqual(st["total_bytes"], st["file_bytes"] + st["model_bytes"] + st["job_bytes"])
        self.assertEqual(me["usage"]["disk_bytes"], st["total_bytes"])
        status, view, _ = d.request("GET", "/v1/storage")
        self.assertEqual(status, 200, view)
        self.assertIn(j["fine_tuned_model"], [x["id"] for x in view["largest"]])
        self.assertIn("bob", [u["name"] for u in view["users"]])  # an admin sees every user
        status, bview, _ = d.request("GET", "/v1/storage", token=bob)
        self.assertEqual(([u["name"] for u in bview["users"]], bview["largest"]), (["bob"], []))
        model = j["fine_tuned_model"]
        # bob cannot delete the admin's model or job
        self.assertEqual(d.request("DELETE", f"/v1/models/{model}", token=bob)[0], 404)
        self.assertEqual(d.request("DELETE", f"{JOBS}/{j['id']}", token=bob)[0], 404)
        before = reclaimed(d)
        # the job goes; its model keeps its weights
        status, out, _ = d.request("DELETE", f"{JOBS}/{j['id']}")
        self.assertEqual((status, out), (200, {"id": j["id"], "object": "fine_tuning.job", "deleted": True}))
        eventually(lambda: sorted(os.listdir(jdir)) == ["best.safetensors", "final.safetensors"],
                   what="the job's directory reduced to the model's weights")
        status, raw, _ = d.request("GET", f"/v1/models/{model}/content")
        self.assertEqual(status, 200)
        self.assertGreater(len(raw), 1000)
        status, out, _ = d.request("DELETE", f"/v1/models/{model}")
        self.assertEqual((status, out), (200, {"id": model, "object": "model", "deleted": True}))
        self.assertEqual(d.request("GET", f"/v1/models/{model}")[0], 404)
        self.assertEqual(d.request("DELETE", f"/v1/models/{model}")[0], 404)
        eventually(lambda: not os.path.exists(jdir), what="the job's directory removed with the model")
        eventually(lambda: reclaimed(d) > before, what="reclaimed bytes grew")


class RetentionDays(DaemonTest):
    args = ("--workers", "1", "--threads-per-job", "1", "--checkpoint-seconds", "0")

    def test_old_finished_job_loses_its_state_not_its_model(self):
        d = self.d
        status, j, _ = d.request("POST", JOBS, tiny_job(epochs=2))
        self.assertEqual(status, 200, j)
        j = wait_for(d, j["id"], FINAL)
        self.assertEqual(j["status"], "succeeded", j)
        jdir = os.path.join(d.data_dir, "jobs", j["id"])
        state = os.path.join(jdir, "state.safetensors")
        self.assertTrue(os.path.exists(state))
        d.stop()
        # the job ended three days ago (as far as the database knows)
        con = sqlite3.connect(os.path.join(d.data_dir, "coretuned.db"))
        with con:
            con.execute("UPDATE jobs SET finished_at = finished_at - 3 * 86400 WHERE id = ?", (j["id"],))
        con.close()
        d.extra += ["--retention-days", "5"]
        d.start()
        time.sleep(1.5)  # five days: nothing is due
        self.assertTrue(os.path.exists(state))
        d.stop()
        d.extra[-1] = "2"
        d.start()
        eventually(lambda: not os.path.exists(state), what="the resumable state removed")
        self.assertEqual(d.request("GET", f"{JOBS}/{j['id']}/checkpoints")[1]["data"], [])
        for name in ("best.safetensors", "final.safetensors"):
            self.assertTrue(os.path.exists(os.path.join(jdir, name)), name)
        status, raw, _ = d.request("GET", f"/v1/models/{j['fine_tuned_model']}/content")
        self.assertEqual(status, 200)
        eventually(lambda: reclaimed(d) > 0, what="reclaimed bytes counted")


class RetentionCounted(DaemonTest):
    args = ("--workers", "1", "--threads-per-job", "1", "--checkpoint-seconds", "0", "--retention-days", "2")

    def test_a_finished_jobs_bytes_follow_its_retention(self):
        """A finished job's bytes are remembered (its directory changes only by the daemon's removals): one
        removed by retention while the daemon runs is counted afresh."""
        d = self.d
        jobs = []
        for _ in range(2):
            status, j, _ = d.request("POST", JOBS, tiny_job(epochs=1))
            self.assertEqual(status, 200, j)
            jobs.append(j["id"])
        first = wait_for(d, jobs[0], FINAL)
        self.assertEqual(first["status"], "succeeded", first)
        state = os.path.join(d.data_dir, "jobs", first["id"], "state.safetensors")
        state_bytes = os.stat(state).st_blocks * 512
        con = sqlite3.connect(os.path.join(d.data_dir, "coretuned.db"), timeout=10)
        with con:  # it ended three days ago, as far as the database knows; the next retention pass removes its state
            con.execute("UPDATE jobs SET finished_at = finished_at - 3 * 86400 WHERE id = ?", (first["id"],))
        con.close()

        def bytes_of(job_id):
            view = d.request("GET", "/v1/storage")[1]
            return next(x["bytes"] for x in view["largest"] if x["id"] == job_id)
        with_state = bytes_of(first["id"])  # remembered from here on
        self.assertTrue(os.path.exists(state), "the pass ran before the second job ended")
        self.assertEqual(wait_for(d, jobs[1], FINAL)["status"], "succeeded")  # its end brings a retention pass
        eventually(lambda: not os.path.exists(state), what="the resumable state removed")
        eventually(lambda: bytes_of(first["id"]) <= with_state - state_bytes, what="the job's bytes less its state")


class DiskQuota(DaemonTest):
    args = ("--workers", "0", "--user-quota", "bob:disk_mb=1")

    def test_over_disk_mb_is_429(self):
        d = self.d
        bob = add_user(d, "bob")
        status, f, _ = upload(d, per_class=20, token=bob)  # 600 KiB
        self.assertEqual(status, 200, f)
        status, me, _ = d.request("GET", "/v1/me", token=bob)
        self.assertEqual((me["quota"]["disk_bytes"], me["storage"]["file_bytes"]), (MIB, f["bytes"]))
        status, err, _ = upload(d, per_class=20, token=bob)  # another 600 KiB: over 1 MiB
        self.assertEqual(status, 429, err)
        self.assertIn("disk_mb", err["error"]["message"])
        self.assertEqual(len(d.request("GET", "/v1/files", token=bob)[1]["data"]), 1)
        self.assertEqual(upload(d, per_class=20)[0], 200)  # the admin has no such limit
        # once bob deletes his upload there is room again
        self.assertEqual(d.request("DELETE", f"/v1/files/{f['id']}", token=bob)[0], 200)
        self.assertEqual(upload(d, per_class=20, token=bob)[0], 200)


@unittest.skipIf(MOUNT_PROBLEM, MOUNT_PROBLEM or "")
class LowDisk(unittest.TestCase):
    """A 16 MiB tmpfs and --min-free-mb 6: a filler file brings it below the guard and back."""

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="coretuned-lowdisk-")
        self.mnt = os.path.join(self.root, "mnt")
        os.mkdir(self.mnt)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", self.mnt], check=True)
        self.data = os.path.join(self.mnt, "data")
        os.mkdir(self.data)
        os.symlink(os.path.join(self.root, "daemon.log"), os.path.join(self.data, "daemon.log"))
        self.d = None

    def tearDown(self):
        try:
            if self.d is not None and self.d.proc is not None:
                rc, _ = self.d.stop(timeout=60)
                self.assertEqual(rc, 0, self.d.read_log())
        finally:
            subprocess.run(["umount", "-l", self.mnt])
            shutil.rmtree(self.root, ignore_errors=True)

    def test_guard_refuses_uploads_and_jobs_and_readyz_says_so(self):
        d = self.d = Daemon("--workers", "0", "--min-free-mb", "6", data_dir=self.data).start()
        status, r, _ = d.request("GET", "/readyz")
        self.assertEqual(status, 200, r)
        self.assertFalse(r["disk"]["low"], r)
        self.assertEqual(r["disk"]["min_free_bytes"], 6 * MIB)
        filler = os.path.join(self.mnt, "filler")
        with open(filler, "wb") as fh:
            fh.write(b"\1" * (r["disk"]["free_bytes"] - 3 * MIB))
        status, r, _ = d.request("GET", "/readyz")
        self.assertEqual(status, 200, r)
        self.assertTrue(r["disk"]["low"], r)
        self.assertIn("min-free-mb", r["disk"]["message"])
        status, err, _ = upload(d)
        self.assertEqual((status, err["error"]["code"]), (507, "insufficient_storage"), err)
        self.assertIn("--min-free-mb 6", err["error"]["message"])
        self.assertEqual([n for n in os.listdir(os.path.join(self.data, "files", "tmp"))], [])
        status, err, _ = d.request("POST", JOBS, tiny_job(epochs=1))
        self.assertEqual((status, err["error"]["code"]), (507, "insufficient_storage"), err)
        self.assertEqual(d.request("GET", JOBS)[1]["data"], [])
        # reads go on
        self.assertEqual(d.request("GET", "/v1/files")[0], 200)
        os.unlink(filler)
        status, r, _ = d.request("GET", "/readyz")
        self.assertFalse(r["disk"]["low"], r)
        self.assertEqual(upload(d)[0], 200)
        self.assertEqual(d.request("POST", JOBS, tiny_job(epochs=1))[0], 200)

    def test_queued_jobs_wait_while_the_disk_is_low(self):
        d = self.d = Daemon("--workers", "0", "--min-free-mb", "6", data_dir=self.data).start()
        status, j, _ = d.request("POST", JOBS, tiny_job(epochs=1))
        self.assertEqual(status, 200, j)
        free = d.request("GET", "/readyz")[1]["disk"]["free_bytes"]
        d.stop()
        filler = os.path.join(self.mnt, "filler")
        with open(filler, "wb") as fh:
            fh.write(b"\1" * (free - 3 * MIB))
        d.extra = ["--workers", "1", "--threads-per-job", "1", "--min-free-mb", "6"]
        d.start()
        time.sleep(2.5)  # several scheduler ticks
        self.assertEqual(d.request("GET", f"{JOBS}/{j['id']}")[1]["status"], "queued")
        self.assertIn("low disk: queued jobs wait", d.read_log())
        os.unlink(filler)
        done = wait_for(d, j["id"], FINAL)
        self.assertEqual(done["status"], "succeeded", done)


if __name__ == "__main__":
    unittest.main()
