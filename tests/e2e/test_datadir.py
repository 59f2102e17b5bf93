"""The data dir is the daemon's alone (issue: reliability, defects 5 and 6): it is made 0700 and every
file in it 0600 (database, WAL, checkpoints, uploads, the admin token); an existing data dir or database
that others can read is tightened at start with a log line; partial uploads a killed daemon left in
files/tmp are removed at start."""
import os
import stat
import tempfile
import unittest

from harness import Daemon, tiny_job, wait_for
from test_files import cifar10_batch, multipart

JOBS = "/v1/fine_tuning/jobs"


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def files_under(root):
    for d, dirs, names in os.walk(root):
        for n in dirs:
            yield os.path.join(d, n), True
        for n in names:
            yield os.path.join(d, n), False


class DataDirTest(unittest.TestCase):
    def test_everything_written_is_private(self):
        d = Daemon("--workers", "1", "--threads-per-job", "1").start()
        try:
            body, headers = multipart({"purpose": "fine-tune"}, "data_batch_1.bin", cifar10_batch(2))
            self.assertEqual(d.request("POST", "/v1/files", body, headers=headers)[0], 200)
            status, job, _ = d.request("POST", JOBS, tiny_job(epochs=1))
            self.assertEqual(status, 200, job)
            self.assertEqual(wait_for(d, job["id"], ("succeeded", "failed"))["status"], "succeeded")
            self.assertEqual(mode(d.data_dir), 0o700)
            seen = 0
            for path, is_dir in files_under(d.data_dir):
                if path.endswith("coretuned.sock") or path.endswith("daemon.log"):
                    continue                  # the socket is 0666 on purpose; the log is the test's
                self.assertEqual(mode(path) & 0o077, 0, f"{path} is {oct(mode(path))}")
                seen += 1
            self.assertGreater(seen, 5)       # the database, its WAL, the job's checkpoint and model, the upload
            self.assertTrue(os.path.exists(os.path.join(d.data_dir, "jobs", job["id"], "final.safetensors")))
        finally:
            d.stop()
            d.cleanup()

    def test_loose_data_dir_is_tightened_and_stale_uploads_removed(self):
        d = Daemon("--workers", "0").start()
        d.stop()
        db = os.path.join(d.data_dir, "coretuned.db")
        os.chmod(d.data_dir, 0o755)
        os.chmod(db, 0o644)
        stale = os.path.join(d.data_dir, "files", "tmp", "upload-AbC123")
        with open(stale, "wb") as f:      # what a kill -9 during POST /v1/files leaves
            f.write(b"\0" * 4096)
        try:
            d.start()
            self.assertEqual(mode(d.data_dir), 0o700)
            self.assertEqual(mode(db), 0o600)
            self.assertFalse(os.path.exists(stale))
            log = d.read_log()
            self.assertIn(f"msg=\"made private\" path={d.data_dir} was=755 now=700", log)
            self.assertIn("removed partial uploads of a previous run\" count=1", log)
        finally:
            d.stop()
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
