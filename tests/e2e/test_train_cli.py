"""`coretune train SPEC.json --out DIR [--resume]`: one real job locally, without the daemon. Checks the
JSON-lines protocol (step, epoch, checkpoint, summary records and their fields), the files written,
Ctrl-C stopping after the current step with a resumable checkpoint, --resume continuing at the next step
to the same end, and a bad spec answered with exit code 2 and the offending field."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import BIN

SPEC = {
    "model": "resnet20", "training_file": "fashion-mnist-train", "validation_file": "fashion-mnist-test",
    "seed": 3,
    "method": {"type": "core_tuning", "core_tuning": {"hyperparameters": {
        "n_epochs": 2, "batch_size": 16, "gradient_accumulation_steps": 2, "learning_rate": 0.05}}},
    "data": {"train_limit": 192, "valid_limit": 64},
}
STEP_FIELDS = {"step", "total_steps", "epoch", "train_loss", "ce_loss", "contrastive_loss", "lr",
               "images_per_second", "eta_seconds"}


@unittest.skipUnless(os.path.exists("/usr/share/datasets/fashion-mnist"), "dataset-fashion-mnist not installed")
class TrainCliTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="coretune-train-")
        self.spec = os.path.join(self.dir, "spec.json")
        with open(self.spec, "w") as f:
            json.dump(SPEC, f)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def train(self, out, *extra, timeout=300):
        p = subprocess.run([os.path.join(BIN, "coretune"), "train", self.spec, "--out", out, "--threads", "1",
                            *extra], capture_output=True, text=True, timeout=timeout)
        return p.returncode, [json.loads(line) for line in p.stdout.splitlines()], p.stderr

    def test_runs_to_the_end(self):
        out = os.path.join(self.dir, "run")
        rc, recs, err = self.train(out)
        self.assertEqual(rc, 0, err)
        steps = [r for r in recs if r["type"] == "step"]
        self.assertEqual([r["step"] for r in steps], list(range(1, 13)))  # 192 / (16 x 2) x 2 epochs
        for r in steps:
            self.assertTrue(STEP_FIELDS <= set(r), r)
            self.assertEqual(r["total_steps"], 12)
        epochs = [r for r in recs if r["type"] == "epoch"]
        self.assertEqual([r["epoch"] for r in epochs], [1, 2])
        self.assertTrue(0.0 <= epochs[-1]["valid_accuracy"] <= 1.0)
        summary = recs[-1]
        self.assertEqual((summary["type"], summary["status"], summary["steps"]), ("summary", "succeeded", 12))
        for name in ("final.safetensors", "best.safetensors", "state.safetensors"):
            self.assertTrue(os.path.exists(os.path.join(out, name)), name)

    def test_ctrl_c_then_resume(self):
        out = os.path.join(self.dir, "stop")
        proc = subprocess.Popen([os.path.join(BIN, "coretune"), "train", self.spec, "--out", out, "--threads", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = []
        for line in proc.stdout:
            rec = json.loads(line)
            first.append(rec)
            if rec["type"] == "step" and rec["step"] == 3:
                proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=120)
        self.assertEqual(rc, 0, proc.stderr.read())
        self.assertEqual(first[-1]["status"], "stopped")
        stopped_at = first[-1]["steps"]
        self.assertTrue(3 <= stopped_at < 12)
        self.assertTrue(os.path.exists(os.path.join(out, "state.safetensors")))
        self.assertFalse(os.path.exists(os.path.join(out, "final.safetensors")))
        rc, recs, err = self.train(out, "--resume")
        self.assertEqual(rc, 0, err)
        steps = [r["step"] for r in recs if r["type"] == "step"]
        self.assertEqual(steps, list(range(stopped_at + 1, 13)))
        self.assertEqual(recs[-1]["status"], "succeeded")

    def test_bad_spec_is_exit_2_naming_the_field(self):
        bad = dict(SPEC, method={"type": "core_tuning", "core_tuning": {"hyperparameters": {"learning_rate": -1}}})
        with open(self.spec, "w") as f:
            json.dump(bad, f)
        rc, recs, err = self.train(os.path.join(self.dir, "bad"))
        self.assertEqual(rc, 2)
        self.assertIn("method.core_tuning.hyperparameters.learning_rate", err)
        with open(self.spec, "w") as f:
            f.write("{not json")
        rc, _, err = self.train(os.path.join(self.dir, "bad"))
        self.assertEqual(rc, 2)
        self.assertIn("spec.json", err)


if __name__ == "__main__":
    unittest.main()
