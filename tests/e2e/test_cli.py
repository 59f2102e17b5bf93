"""`coretune`, the command-line client, driven with subprocess against the real daemon: a tiny real job
submitted from a spec file, listed, shown, followed with `logs -f` to its end (exit 0), its model listed
and downloaded (valid safetensors); datasets, metrics, upload; a second job submitted from flags and
cancelled (`logs -f` then exits 1); the exit codes scripts rely on (4 unknown id, 2 bad spec or usage,
3 no daemon, 5 bad token once the daemon has auth); --json output parses; where to connect (flag >
env > config file); the Unix socket when the daemon has one (skipped otherwise). Under sanitizers
(CT_SANITIZED=1) every coretune run must also be free of sanitizer reports."""
import json
import os
import shutil
import struct
import subprocess
import tempfile
import unittest

from harness import BIN, SANITIZED, Daemon, free_port, tiny_job

FINAL = ("succeeded", "failed", "cancelled")


class CLITest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon("--workers", "1", "--threads-per-job", "1").start()
        cls.tmp = tempfile.mkdtemp(prefix="coretune-e2e-")
        token_file = os.path.join(cls.d.data_dir, "admin.token")
        cls.token = open(token_file).read().strip() if os.path.exists(token_file) else None
        cls.spec = os.path.join(cls.tmp, "spec.json")
        with open(cls.spec, "w") as f:
            json.dump(tiny_job(epochs=2), f)

    @classmethod
    def tearDownClass(cls):
        rc, _ = cls.d.stop(timeout=60)
        log = cls.d.read_log()
        cls.d.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert rc == 0, log

    def env(self, url=None, token=None, **extra):
        """A clean environment: no user config, the daemon's TCP address and (if it has auth) token."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORETUNE_")}
        env["XDG_CONFIG_HOME"] = os.path.join(self.tmp, "xdg-empty")
        env["CORETUNE_URL"] = url or f"http://127.0.0.1:{self.d.port}"
        if token or self.token:
            env["CORETUNE_TOKEN"] = token or self.token
        env.update(extra)
        return {k: v for k, v in env.items() if v is not None}

    def ct(self, *args, env=None, want=0, timeout=120, cwd=None):
        """Run coretune; check its exit code; return (stdout, stderr)."""
        p = subprocess.run([os.path.join(os.path.abspath(BIN), "coretune"), *args], capture_output=True, text=True,
                           env=env or self.env(), timeout=timeout, cwd=cwd or self.tmp)
        msg = f"coretune {' '.join(args)} -> {p.returncode}\nstdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-2000:]}"
        if SANITIZED:
            for bad in ("AddressSanitizer", "LeakSanitizer", "ThreadSanitizer", "runtime error:"):
                self.assertNotIn(bad, p.stderr, msg)
        if want is not None:
            self.assertEqual(p.returncode, want, msg)
        if self.token:
            self.assertNotIn(self.token, p.stdout + p.stderr, "the token must never be printed")
        return p.stdout, p.stderr

    def ctj(self, *args, **kw):
        out, _ = self.ct(*args, "--json", **kw)
        return json.loads(out)

    def test_job_lifecycle(self):
        out, _ = self.ct("datasets")
        self.assertIn("fashion-mnist-train", out)
        self.assertTrue(out.startswith("ID"), out)
        ds = self.ctj("datasets")
        self.assertEqual(ds["object"], "list")

        job = self.ctj("submit", self.spec, "--suffix", "cli", "--idempotency-key", "cli-e2e-1")
        jid = job["id"]
        self.assertTrue(jid.startswith("ftjob-"), job)
        again = self.ctj("submit", self.spec, "--suffix", "cli", "--idempotency-key", "cli-e2e-1")
        self.assertEqual(again["id"], jid)                       # same key, same body: the same job

        out, _ = self.ct("list")
        self.assertIn(jid, out)
        header = out.splitlines()[0]
        self.assertTrue(header.startswith("ID") and "STATUS" in header, out)
        listing = self.ctj("list", "--limit", "5")
        self.assertIn(jid, [j["id"] for j in listing["data"]])
        self.assertIn(jid, [j["id"] for j in self.ctj("list", "--all")["data"]])

        out, _ = self.ct("show", jid)
        self.assertIn(jid, out)
        self.assertIn("status", out)

        # follow to the end: plain lines (stdout is not a terminal), exit 0 on success
        out, _ = self.ct("logs", "-f", jid)
        self.assertIn("metrics", out)
        self.assertIn("succeeded", out.splitlines()[-1])
        shown = self.ctj("show", jid)
        self.assertEqual(shown["status"], "succeeded")
        model = shown["fine_tuned_model"]
        self.assertEqual(model, f"ft:resnet20:cli:{jid}")

        events = self.ctj("logs", jid)["data"]
        self.assertIn("metrics", {e["type"] for e in events})
        self.assertEqual(events[-1]["data"]["status"], "succeeded")
        # -f --json: one event object per line, the same events
        out, _ = self.ct("logs", "-f", jid, "--json")
        streamed = [json.loads(line) for line in out.splitlines() if line.strip()]
        self.assertEqual([e["id"] for e in streamed], [e["id"] for e in events])

        out, _ = self.ct("models")
        self.assertIn(model, out)
        self.assertIn(model, [m["id"] for m in self.ctj("models")["data"]])

        met = self.ctj("metrics", jid, "--names", "train_loss,valid_accuracy", "--max-points", "5")
        self.assertIn("train_loss", met["series"])
        out, _ = self.ct("metrics", jid)
        self.assertIn("train_loss", out)

        # download by job id and by model id, final and best: valid safetensors, written atomically
        dest = os.path.join(self.tmp, "model.safetensors")
        self.ct("download", jid, "-o", dest)
        self.assert_safetensors(dest)
        outdir = os.path.join(self.tmp, "dl")
        os.mkdir(outdir)
        info = self.ctj("download", model, "--best", "-o", outdir)
        self.assertEqual(os.path.dirname(info["file"]), outdir)
        self.assert_safetensors(info["file"])
        self.assertEqual(os.listdir(outdir), [os.path.basename(info["file"])])   # no temporary left behind
        self.ct("download", "resnet20", "-o", os.path.join(self.tmp, "x"), want=4)     # base: no weights
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "x")))

    def test_submit_flags_cancel_and_states(self):
        out, _ = self.ct("submit", "--model", "resnet20", "--training-file", "fashion-mnist-train",
                         "--epochs", "50", "--batch-size", "32", "--seed", "3", "--threads", "1",
                         "--set", "data.train_limit=128", "--set", "data.valid_limit=64",
                         "--set", "architecture.in_channels=1", "--set", "architecture.image_size=28")
        jid = out.split()[0]
        self.assertTrue(jid.startswith("ftjob-"), out)
        job = self.ctj("show", jid)
        hp = job["method"]["core_tuning"]["hyperparameters"]
        self.assertEqual((hp["n_epochs"], hp["batch_size"], job["seed"]), (50, 32, 3))
        out, _ = self.ct("cancel", jid)
        self.assertIn("cancelled", out)
        self.ct("cancel", jid, want=1)                           # 409: already finished
        self.ct("resume", jid, want=1)
        _, err = self.ct("logs", "-f", jid, want=1)              # the job ended cancelled
        self.assertIn("cancelled", err)
        self.ct("download", jid, want=1)                         # no model to download

    def test_exit_codes(self):
        self.ct("show", "ftjob-doesnotexist", want=4)
        self.ct("logs", "ftjob-doesnotexist", want=4)
        self.ct("logs", "-f", "ftjob-doesnotexist", want=4)
        self.ct("cancel", "ftjob-doesnotexist", want=4)
        bad = os.path.join(self.tmp, "bad.json")
        with open(bad, "w") as f:
            json.dump(tiny_job(bogus_field=1), f)
        _, err = self.ct("submit", bad, want=2)                  # the server's 400 names the field
        self.assertIn("bogus_field", err)
        with open(bad, "w") as f:
            f.write("{not json")
        self.ct("submit", bad, want=2)
        self.ct("submit", os.path.join(self.tmp, "missing.json"), want=2)
        self.ct("submit", "--model", "resnet20", want=2)         # no training file
        self.ct("submit", "--epochs", "many", want=2)
        self.ct("list", "--limit", "0", want=2)
        self.ct("frobnicate", want=2)
        self.ct("show", want=2)
        out, _ = self.ct("--help")
        self.assertIn("submit", out)
        self.ct("upload", os.path.join(self.tmp, "missing.bin"), want=2)
        junk = os.path.join(self.tmp, "junk.bin")
        with open(junk, "wb") as f:
            f.write(b"not a dataset" * 10)
        self.ct("upload", junk, want=2)                          # refused by the daemon's probe (400)
        # nothing listening: 3, over TCP and over a Unix socket
        _, err = self.ct("list", env=self.env(url=f"http://127.0.0.1:{free_port()}"), want=3)
        self.assertIn("cannot connect", err)
        self.ct("list", env=self.env(url="unix:" + os.path.join(self.tmp, "none.sock")), want=3)

    def test_where_to_connect(self):
        good = f"http://127.0.0.1:{self.d.port}"
        dead = f"http://127.0.0.1:{free_port()}"
        xdg = os.path.join(self.tmp, "xdg")
        os.makedirs(os.path.join(xdg, "coretune"), exist_ok=True)
        with open(os.path.join(xdg, "coretune", "config"), "w") as f:
            f.write(f"# coretune client config\nurl = {good}\n")
            if self.token:
                f.write(f"token = {self.token}\n")
        env = self.env(XDG_CONFIG_HOME=xdg, CORETUNE_URL=None, CORETUNE_TOKEN=None)
        self.ctj("models", env=env)                              # from the config file
        env["CORETUNE_URL"] = dead
        self.ct("models", env=env, want=3)                       # the environment beats the config file
        self.ctj("models", "--url", good, env=env)               # the flag beats the environment
        self.ctj("--url", good + "/v1/", "models", env=env)      # a base_url with /v1 works too

    def test_unix_socket(self):
        sock = os.path.join(self.d.data_dir, "coretuned.sock")
        if not os.path.exists(sock):
            self.skipTest("this coretuned has no Unix socket yet")
        env = self.env(url="unix:" + sock, token=None)
        env.pop("CORETUNE_TOKEN", None)                          # the socket needs no token
        self.assertIn("resnet20", [m["id"] for m in self.ctj("models", env=env)["data"]])
        self.ctj("list", env=env)
        self.ct("show", "ftjob-doesnotexist", env=env, want=4)
        # with no address configured, ./var/coretuned.sock (make run's socket) is the default
        if not os.path.exists("/run/coretuned/coretuned.sock"):
            cwd = os.path.join(self.tmp, "sockcwd")
            os.makedirs(os.path.join(cwd, "var"), exist_ok=True)
            os.symlink(sock, os.path.join(cwd, "var", "coretuned.sock"))
            env = self.env(CORETUNE_URL=None)
            env.pop("CORETUNE_TOKEN", None)
            self.ctj("models", env=env, cwd=cwd)

    def test_auth(self):
        if not self.token:
            self.skipTest("this coretuned has no authentication yet")
        _, err = self.ct("list", env=self.env(token="ct_wrongtoken"), want=5)
        self.assertNotIn("ct_wrongtoken", err)
        env = self.env()
        env.pop("CORETUNE_TOKEN")
        self.ct("list", env=env, want=5)
        self.ctj("list", "--token", self.token, env=env)
        # a daemon on 127.0.0.1 with no token given: ./var/admin.token (make run's) when readable
        cwd = os.path.join(self.tmp, "tokcwd")
        os.makedirs(os.path.join(cwd, "var"), exist_ok=True)
        shutil.copy(os.path.join(self.d.data_dir, "admin.token"), os.path.join(cwd, "var", "admin.token"))
        self.ctj("list", env=env, cwd=cwd)

    def assert_safetensors(self, path):
        with open(path, "rb") as f:
            raw = f.read()
        (hlen,) = struct.unpack("<Q", raw[:8])
        self.assertLessEqual(8 + hlen, len(raw))
        header = json.loads(raw[8:8 + hlen])
        self.assertTrue(any(k.startswith("fc.") for k in header), list(header)[:5])


if __name__ == "__main__":
    unittest.main()
