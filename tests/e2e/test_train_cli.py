"""`coretune train SPEC.json --out DIR [--resume] [--progress FILE] [--checkpoint-seconds N]`: one real job
locally, without the daemon. Checks the JSON-lines protocol (start, step, epoch, checkpoint, summary and
error records and their fields, spec/progline.h), the files written, Ctrl-C and SIGUSR1 (Slurm's warning)
stopping after the current step with a resumable checkpoint, --resume continuing at the next step to the
same end and starting afresh when there is nothing to resume, --progress FILE holding the same lines as
stdout across attempts, a progress file that cannot be written failing the run, and a bad spec or flag
answered with exit code 2 and the offending field. Early stopping ends a run as a success with the best
model as final.safetensors; `coretune eval MODEL DATA` gives the accuracy and loss training reported."""
import errno
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
STEP_FIELDS = {"type", "step", "total_steps", "epoch", "epochs", "train_loss", "ce_loss", "contrastive_loss", "lr",
               "images_per_second", "eta_seconds"}
EPOCH_FIELDS = {"type", "step", "total_steps", "epoch", "epochs", "valid_loss", "valid_accuracy"}
CHECKPOINT_FIELDS = {"type", "step", "total_steps", "epoch", "epochs", "path"}
SUMMARY_FIELDS = {"type", "status", "steps", "epochs", "best_valid_accuracy", "final_valid_accuracy",
                  "final_valid_loss", "best_epoch", "peak_bytes", "early_stopped"}


@unittest.skipUnless(os.path.exists("/usr/share/datasets/fashion-mnist"), "dataset-fashion-mnist not installed")
class TrainCliTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="coretune-train-")
        self.spec = os.path.join(self.dir, "spec.json")
        with open(self.spec, "w") as f:
            json.dump(SPEC, f)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def train(self, out, *extra, timeout=300, raw=False):
        p = subprocess.run([os.path.join(BIN, "coretune"), "train", self.spec, "--out", out, "--threads", "1",
                            *extra], capture_output=True, text=True, timeout=timeout)
        if raw:
            return p.returncode, p.stdout, p.stderr
        return p.returncode, [json.loads(line) for line in p.stdout.splitlines()], p.stderr

    def start(self, out, *extra):
        return subprocess.Popen([os.path.join(BIN, "coretune"), "train", self.spec, "--out", out, "--threads", "1",
                                 *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop_at_step(self, proc, sig, at=3):
        """Read records until step `at`, send sig, read the rest; (exit code, records)."""
        recs = []
        for line in proc.stdout:
            rec = json.loads(line)
            recs.append(rec)
            if rec["type"] == "step" and rec["step"] == at:
                proc.send_signal(sig)
        rc = proc.wait(timeout=120)
        self.assertEqual(rc, 0, proc.stderr.read())
        proc.stdout.close()
        proc.stderr.close()
        return rc, recs

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
        self.assertEqual(recs[0], {"type": "start", "resumed": False, "step": 0})
        for r in recs:
            want = {"step": STEP_FIELDS, "epoch": EPOCH_FIELDS, "checkpoint": CHECKPOINT_FIELDS,
                    "summary": SUMMARY_FIELDS, "start": {"type", "resumed", "step"}}[r["type"]]
            self.assertEqual(set(r), want, r)
            if r["type"] != "start" and r["type"] != "summary":
                self.assertEqual((r["total_steps"], r["epochs"]), (12, 2), r)
        self.assertEqual(summary["epochs"], 2)
        self.assertEqual(summary["final_valid_accuracy"], epochs[-1]["valid_accuracy"])
        self.assertEqual(summary["final_valid_loss"], epochs[-1]["valid_loss"])  # 17 digits: the same double
        for name in ("final.safetensors", "best.safetensors", "state.safetensors"):
            self.assertTrue(os.path.exists(os.path.join(out, name)), name)

    def test_ctrl_c_then_resume(self):
        out = os.path.join(self.dir, "stop")
        rc, first = self.stop_at_step(self.start(out), signal.SIGINT)
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

    def test_progress_file_has_the_lines_of_stdout(self):
        out, prog = os.path.join(self.dir, "run"), os.path.join(self.dir, "progress.jsonl")
        rc, stdout, err = self.train(out, "--progress", prog, "--checkpoint-seconds", "0", raw=True)
        self.assertEqual(rc, 0, err)
        with open(prog) as f:
            text = f.read()
        self.assertEqual(text, stdout)
        self.assertTrue(text.endswith("\n"))
        self.assertEqual(os.stat(prog).st_mode & 0o777, 0o600)
        recs = [json.loads(line) for line in text.splitlines()]
        self.assertEqual(recs[0], {"type": "start", "resumed": False, "step": 0})
        # --checkpoint-seconds 0: checkpoints at the epoch ends only, each after its epoch's record
        kinds = [(r["type"], r.get("step")) for r in recs if r["type"] in ("epoch", "checkpoint")]
        self.assertEqual(kinds, [("epoch", 6), ("checkpoint", 6), ("epoch", 12), ("checkpoint", 12)])
        self.assertEqual([r["path"] for r in recs if r["type"] == "checkpoint"],
                         [os.path.join(out, "state.safetensors")] * 2)
        self.assertEqual((recs[-1]["type"], recs[-1]["status"]), ("summary", "succeeded"))

    def test_sigusr1_stops_then_resume_appends(self):
        out, prog = os.path.join(self.dir, "usr1"), os.path.join(self.dir, "progress.jsonl")
        # a batch script passes --resume on the first attempt too: nothing to resume yet is a fresh start
        rc, first = self.stop_at_step(self.start(out, "--resume", "--progress", prog), signal.SIGUSR1)
        self.assertEqual(first[0], {"type": "start", "resumed": False, "step": 0})
        self.assertEqual((first[-1]["type"], first[-1]["status"]), ("summary", "stopped"))
        stopped_at = first[-1]["steps"]
        self.assertTrue(3 <= stopped_at < 12)
        self.assertEqual((first[-2]["type"], first[-2]["step"]), ("checkpoint", stopped_at))
        self.assertTrue(os.path.exists(os.path.join(out, "state.safetensors")))
        self.assertFalse(os.path.exists(os.path.join(out, "final.safetensors")))
        with open(prog) as f:
            self.assertEqual([json.loads(line) for line in f], first)

        rc, stdout, err = self.train(out, "--resume", "--progress", prog, raw=True)
        self.assertEqual(rc, 0, err)
        second = [json.loads(line) for line in stdout.splitlines()]
        self.assertEqual(second[0], {"type": "start", "resumed": True, "step": stopped_at})
        self.assertEqual([r["step"] for r in second if r["type"] == "step"], list(range(stopped_at + 1, 13)))
        self.assertEqual((second[-1]["status"], second[-1]["steps"]), ("succeeded", 12))
        with open(prog) as f:  # appended: both attempts, in order, whole lines
            self.assertEqual([json.loads(line) for line in f], first + second)

    def test_resume_with_nothing_to_resume_starts_afresh(self):
        out = os.path.join(self.dir, "empty")
        os.mkdir(out)
        rc, recs, err = self.train(out, "--resume")
        self.assertEqual(rc, 0, err)
        self.assertEqual(recs[0], {"type": "start", "resumed": False, "step": 0})
        self.assertEqual([r["step"] for r in recs if r["type"] == "step"], list(range(1, 13)))
        self.assertEqual(recs[-1]["status"], "succeeded")

    def test_unwritable_progress_file_fails_the_run(self):
        if not os.path.exists("/dev/full"):
            self.skipTest("no /dev/full")
        out = os.path.join(self.dir, "full")
        rc, recs, err = self.train(out, "--progress", "/dev/full")
        self.assertEqual(rc, 1, err)
        self.assertIn("/dev/full", err)
        self.assertEqual(recs[-1]["type"], "error")
        self.assertEqual(recs[-1]["code"], -errno.ENOSPC)
        # it stopped at the first step boundary, resumably, instead of training on unseen
        self.assertEqual([r["step"] for r in recs if r["type"] == "step"], [1])
        self.assertTrue(os.path.exists(os.path.join(out, "state.safetensors")))
        rc, _, err = self.train(out, "--progress", os.path.join(self.dir, "no", "such", "dir", "p.jsonl"))
        self.assertEqual(rc, 1)

    def test_checkpoint_seconds(self):
        # paused past N seconds: the next step checkpoints, mid-epoch (steps 20 and 40 end the epochs)
        with open(self.spec, "w") as f:
            json.dump(dict(SPEC, data={"train_limit": 640, "valid_limit": 64}), f)
        proc = self.start(os.path.join(self.dir, "timed"), "--checkpoint-seconds", "1")
        recs = []
        for line in proc.stdout:
            recs.append(json.loads(line))
            if recs[-1]["type"] == "step" and recs[-1]["step"] == 2:
                proc.send_signal(signal.SIGSTOP)
                time.sleep(1.2)
                proc.send_signal(signal.SIGCONT)
        self.assertEqual(proc.wait(timeout=120), 0, proc.stderr.read())
        proc.stdout.close()
        proc.stderr.close()
        steps = [r["step"] for r in recs if r["type"] == "checkpoint"]
        self.assertTrue([n for n in steps if n not in (20, 40)], steps)
        self.assertEqual(recs[-1]["status"], "succeeded")

    def eval(self, *args):
        p = subprocess.run([os.path.join(BIN, "coretune"), "eval", *args], capture_output=True, text=True,
                           timeout=120)
        return p.returncode, p.stdout, p.stderr

    def test_early_stopping_then_eval(self):
        # min_delta 1: no validation can improve on the first, so patience 1 stops after epoch 2 of 4
        spec = dict(SPEC, method={"type": "core_tuning", "core_tuning": {"hyperparameters": dict(
            SPEC["method"]["core_tuning"]["hyperparameters"], n_epochs=4,
            early_stopping={"patience": 1, "min_delta": 1})}})
        with open(self.spec, "w") as f:
            json.dump(spec, f)
        out = os.path.join(self.dir, "es")
        rc, recs, err = self.train(out)
        self.assertEqual(rc, 0, err)
        steps = [r for r in recs if r["type"] == "step"]
        self.assertEqual([r["step"] for r in steps], list(range(1, 13)))
        self.assertEqual({r["total_steps"] for r in steps}, {24})  # the plan; the run ends before it
        epochs = [r for r in recs if r["type"] == "epoch"]
        self.assertEqual([r["epoch"] for r in epochs], [1, 2])
        summary = recs[-1]
        self.assertEqual((summary["status"], summary["steps"], summary["epochs"]), ("succeeded", 12, 2))
        self.assertIn("early stopping after epoch 2 of 4", err)
        best = max(epochs, key=lambda r: (r["valid_accuracy"], -r["epoch"]))  # the first of the most accurate
        self.assertEqual(summary["best_epoch"], best["epoch"])
        # final_*: the model returned, the best one
        self.assertEqual((summary["final_valid_accuracy"], summary["final_valid_loss"]),
                         (best["valid_accuracy"], best["valid_loss"]))
        with open(os.path.join(out, "final.safetensors"), "rb") as f, \
                open(os.path.join(out, "best.safetensors"), "rb") as g:
            self.assertEqual(f.read(), g.read())

        # the model on the validation data, batched as training validated it: the same numbers exactly
        model = os.path.join(out, "final.safetensors")
        rc, stdout, err = self.eval(model, "fashion-mnist-test", "--limit", "64", "--batch-size", "16",
                                    "--threads", "1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(stdout.splitlines()), 1)
        self.assertEqual(json.loads(stdout), {"type": "eval", "accuracy": summary["final_valid_accuracy"],
                                              "loss": summary["final_valid_loss"], "images": 64})
        rc, stdout, err = self.eval(model, "fashion-mnist-test", "--limit", "100", "--threads", "1",
                                    "--image-size", "32", "--in-channels", "1")
        self.assertEqual(rc, 0, err)
        rec = json.loads(stdout)
        self.assertEqual((rec["images"], set(rec)), (100, {"type", "accuracy", "loss", "images"}))
        self.assertTrue(0 <= rec["accuracy"] <= 1 and rec["loss"] > 0)

        # usage errors are exit 2, a model or data that cannot be evaluated exit 1 with the reason
        for args in ([], [model], [model, "fashion-mnist-test", "extra"], [model, "fashion-mnist-test", "--limit", "-1"],
                     [model, "fashion-mnist-test", "--threads", "x"], [model, "fashion-mnist-test", "--in-channels", "2"],
                     [model, "fashion-mnist-test", "--image-size", "4"], [model, "fashion-mnist-test", "--bogus"]):
            rc, stdout, err = self.eval(*args)
            self.assertEqual((rc, stdout), (2, ""), args)
        rc, stdout, err = self.eval(model, "fashion-mnist-test", "--in-channels", "3")
        self.assertEqual((rc, stdout), (1, ""))
        self.assertIn("input channels", err)
        rc, stdout, err = self.eval(os.path.join(self.dir, "none.safetensors"), "fashion-mnist-test")
        self.assertEqual(rc, 1)
        self.assertIn("none.safetensors", err)
        rc, stdout, err = self.eval(model, os.path.join(self.dir, "no-data"))
        self.assertEqual(rc, 1)
        self.assertIn("no-data", err)

    def test_bad_flags_are_exit_2(self):
        for flags in (["--checkpoint-seconds", "-1"], ["--checkpoint-seconds", "soon"], ["--threads", "x"],
                      ["--threads", "-2"], ["--progress"]):
            rc, _, err = self.train(os.path.join(self.dir, "flags"), *flags, raw=True)
            self.assertEqual(rc, 2, flags)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "flags")))

    def test_bad_spec_is_exit_2_naming_the_field(self):
        bad = dict(SPEC, method={"type": "core_tuning", "core_tuning": {"hyperparameters": {"learning_rate": -1}}})
        with open(self.spec, "w") as f:
            json.dump(bad, f)
        prog = os.path.join(self.dir, "progress.jsonl")
        rc, recs, err = self.train(os.path.join(self.dir, "bad"), "--progress", prog)
        self.assertEqual(rc, 2)
        self.assertIn("method.core_tuning.hyperparameters.learning_rate", err)
        # the follower of the file learns why too
        with open(prog) as f:
            lines = [json.loads(line) for line in f]
        self.assertEqual(lines, recs)
        self.assertEqual([(r["type"], r["code"]) for r in lines], [("error", -errno.EINVAL)])
        self.assertIn("method.core_tuning.hyperparameters.learning_rate", lines[0]["message"])
        bad = dict(SPEC, method={"type": "core_tuning", "core_tuning": {"hyperparameters": {
            "early_stopping": {"patience": 0}}}})
        with open(self.spec, "w") as f:
            json.dump(bad, f)
        rc, _, err = self.train(os.path.join(self.dir, "bad"))
        self.assertEqual(rc, 2)
        self.assertIn("method.core_tuning.hyperparameters.early_stopping.patience", err)
        with open(self.spec, "w") as f:
            f.write("{not json")
        rc, _, err = self.train(os.path.join(self.dir, "bad"))
        self.assertEqual(rc, 2)
        self.assertIn("spec.json", err)


if __name__ == "__main__":
    unittest.main()
