"""The daemon's GPUs (issue #16) on any machine, GPU or not: --gpus auto|none|N,... is checked at start
(a listed GPU CUDA does not report stops the daemon with the reason; bad lists and duplicates are refused,
from the command line and from the config file), a cuda job without a GPU to give is a 400 naming
"device", a running job shows the device the scheduler gave it (assigned_device), and /metrics has no
GPU gauges without NVML (a log line says why) and still parses. CUDA_VISIBLE_DEVICES="" hides every GPU
from the daemon, so the no-GPU cases hold on a GPU machine too. Running a job on a GPU needs one: the
GPU assignment itself is covered by tests/unit/test_sched.c."""
import os
import subprocess
import tempfile
import unittest

from harness import BIN, DaemonTest, tiny_job, wait_for
from test_metrics import parse

JOBS = "/v1/fine_tuning/jobs"
NO_GPUS = dict(os.environ, CUDA_VISIBLE_DEVICES="", CORETUNED_CONFIG="")


def run_daemon(*args, env=NO_GPUS):
    """The daemon with args, expected to stop at start: (exit code, stderr)."""
    with tempfile.TemporaryDirectory(prefix="coretuned-gpus-") as d:
        p = subprocess.run([os.path.join(BIN, "coretuned"), "--listen", "127.0.0.1:0", "--data-dir", d, *args],
                           capture_output=True, text=True, timeout=30, env=env)
    return p.returncode, p.stderr


class GpuOptionsTest(unittest.TestCase):
    def test_listed_gpus_must_exist(self):
        rc, err = run_daemon("--gpus", "0,1")
        self.assertEqual(rc, 2, err)
        self.assertIn("gpus: GPU 0 does not exist: CUDA reports 0 visible devices", err)
        if os.path.exists("/dev/nvidia0"):
            print("SKIP part: this machine has a GPU; --gpus 0,1 without CUDA_VISIBLE_DEVICES may start")
        else:  # this machine as it is: no device at all
            rc, err = run_daemon("--gpus", "0,1", env=dict(os.environ, CORETUNED_CONFIG=""))
            self.assertEqual(rc, 2, err)
            self.assertIn("GPU 0 does not exist", err)
        rc, err = run_daemon("--gpus", "63")
        self.assertEqual(rc, 2, err)
        self.assertIn("GPU 63 does not exist", err)

    def test_bad_lists(self):
        for v in ("0,0", "1,2,1", "1,,2", "", "0,", ",0", "-1", "64", "+1", "x", "auto,0", "1 2", "0x1"):
            rc, err = run_daemon("--gpus", v)
            self.assertEqual(rc, 2, (v, err))
            self.assertIn(f"bad value '{v}' for gpus (wants auto|none|N,...)", err)

    def test_config_file_names_the_line(self):
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write("# gpus\ngpus 3,3\n")
        try:
            rc, err = run_daemon("--config", f.name)
        finally:
            os.unlink(f.name)
        self.assertEqual(rc, 2, err)
        self.assertIn(f"{f.name}:2: bad value '3,3' for gpus", err)

    def test_documented(self):
        help_text = subprocess.run([os.path.join(BIN, "coretuned"), "--help"], capture_output=True, text=True).stdout
        self.assertIn("--gpus auto|none|N,...", help_text)
        example = subprocess.run([os.path.join(BIN, "coretuned"), "--example-config"], capture_output=True,
                                 text=True).stdout
        self.assertIn("\n#gpus auto\n", example)
        root = os.path.join(os.path.dirname(__file__), "..", "..")
        with open(os.path.join(root, "docs", "man", "coretuned.8")) as f:
            self.assertIn(r".BI \-\-gpus " + '" auto|none|N,..."', f.read())


class GpuNoneTest(DaemonTest):
    args = ("--gpus", "none", "--workers", "2", "--threads-per-job", "1", "--cores", "2")
    check_db = False

    def test_cuda_job_is_refused(self):
        for dev in ("cuda", "cuda:0"):
            st, err, _ = self.d.request("POST", JOBS, tiny_job(device=dev))
            self.assertEqual((st, err["error"]["param"], err["error"]["code"]), (400, "device", "invalid_value"), err)
            self.assertIn(f"device {dev}: this daemon has no GPUs to give (--gpus none)", err["error"]["message"])

    def test_cpu_job_shows_its_device(self):
        st, job, _ = self.d.request("POST", JOBS, tiny_job(epochs=30))
        self.assertEqual(st, 200, job)
        # created: queued (no device yet) or already running on the CPU
        self.assertEqual((job["device"], job["assigned_device"]), ("cpu", "cpu" if job["status"] == "running" else None))
        job = wait_for(self.d, job["id"], {"running"}, timeout=60)
        self.assertEqual((job["device"], job["assigned_device"]), ("cpu", "cpu"), job)
        self.assertRegex(self.d.read_log(), rf'msg="job started" job={job["id"]} .* device=cpu')
        st, job, _ = self.d.request("POST", f"{JOBS}/{job['id']}/cancel")
        self.assertEqual(st, 200, job)
        job = wait_for(self.d, job["id"], {"cancelled"}, timeout=60)
        self.assertIsNone(job["assigned_device"], job)

    def test_metrics_without_nvml(self):
        st, body, _ = self.d.request("GET", "/metrics")
        self.assertEqual(st, 200, body)
        fams = parse(body.decode())
        self.assertIn("coretuned_cores", fams)
        self.assertFalse([f for f in fams if f.startswith("coretuned_gpu_")], "GPU gauges without GPUs")
        log = self.d.read_log()
        self.assertIn('msg="gpus" gpus=none reason="--gpus none"', log)
        self.assertRegex(log, r'msg="no GPU metrics" reason="[^"]+"')


class GpuAutoHiddenTest(DaemonTest):
    """--gpus auto (the default) where CUDA sees nothing."""
    check_db = False

    def setUp(self):
        self.saved = os.environ.get("CUDA_VISIBLE_DEVICES")
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        try:
            super().setUp()
        finally:
            if self.saved is None:
                del os.environ["CUDA_VISIBLE_DEVICES"]
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = self.saved

    def test_cuda_job_is_refused(self):
        st, err, _ = self.d.request("POST", JOBS, tiny_job(device="cuda"))
        self.assertEqual((st, err["error"]["param"]), (400, "device"), err)
        self.assertIn("device cuda: this daemon has no GPUs to give (--gpus auto found none", err["error"]["message"])
        st, body, _ = self.d.request("GET", "/metrics")
        self.assertEqual(st, 200, body)
        self.assertFalse([f for f in parse(body.decode()) if f.startswith("coretuned_gpu_")])
        self.assertIn('msg="gpus" gpus=none reason="--gpus auto found none', self.d.read_log())


if __name__ == "__main__":
    unittest.main()
