#!/usr/bin/python3
"""reproduce/run.py [--quick] — the paper's claim on real data, through the daemon's own API, as a user
would: start bin/coretuned, submit a SimCLR pre-training job, then ce_tuning / core_tuning (paper,
reference) fine-tuning jobs on a fixed labelled subset, follow them over HTTP, and collect the test
accuracies. Results go to reproduce/out/<profile>/ours.json; reproduce/report.py writes docs/results.md.
Standard library only."""
import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import protocol  # noqa: E402


class Client:
    def __init__(self, base, token):
        self.base, self.token = base, token

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise SystemExit(f"{method} {path}: HTTP {e.code}: {e.read().decode(errors='replace')}")

    def wait(self, job_id, label):
        """Poll until the job ends; print progress now and then. Returns the job object."""
        last = 0
        while True:
            job = self.call("GET", f"/v1/fine_tuning/jobs/{job_id}")
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            if time.time() - last > 30:
                p = job.get("progress") or {}
                print(f"  {label}: {job['status']} step {p.get('step')}/{p.get('total_steps')}", flush=True)
                last = time.time()
            time.sleep(2)


def cpu_model():
    """The CPU's model name and core count, for the results page."""
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.machine()
    return f"{name}, {os.cpu_count()} cores"


def start_daemon(data_dir, datasets, threads, workers=1):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [os.path.join(ROOT, "bin", "coretuned"), "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir,
            "--workers", str(workers), "--threads-per-job", str(threads)]
    for name, path in datasets.items():
        args += ["--dataset", f"{name}={path}"]
    log = open(os.path.join(data_dir, "daemon.log"), "ab")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=2).read()
            break
        except OSError:
            time.sleep(0.05)
    token_path = os.path.join(data_dir, "admin.token")
    token = open(token_path).read().strip() if os.path.exists(token_path) else None
    return proc, Client(base, token)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    name = "quick" if args.quick else "full"
    prof = protocol.PROFILES[name]
    out = os.path.join(HERE, "out", name)
    data_dir = os.path.join(out, "var")
    os.makedirs(data_dir, exist_ok=True)
    datasets = {
        "fmnist-labelled": protocol.write_subset(os.path.join(out, "labelled"), "train", per_class=prof["per_class"]),
        "fmnist-pretrain": protocol.write_subset(os.path.join(out, "pretrain"), "train",
                                                 limit=prof["pretrain_images"]),
        "fmnist-test": protocol.write_subset(os.path.join(out, "test"), "test", limit=prof["test_images"]),
    }
    proc, api = start_daemon(data_dir, datasets, args.threads)
    t_all = time.time()
    results = {"profile": name, "protocol": prof, "machine": cpu_model(),
               "threads": args.threads, "runs": []}
    try:
        t0 = time.time()
        pre = api.call("POST", "/v1/fine_tuning/jobs", {
            "model": "resnet20", "training_file": "fmnist-pretrain", "seed": 0, "suffix": "simclr",
            "method": {"type": "simclr", "simclr": {"hyperparameters": dict(
                protocol.PRETRAIN_HP, n_epochs=prof["pretrain_epochs"], batch_size=prof["pretrain_batch"],
                learning_rate=prof["pretrain_lr"])}},
            "data": {"valid_fraction": 0.02, "valid_every": prof["pretrain_epochs"]}})
        print(f"pre-training {pre['id']}", flush=True)
        pre = api.wait(pre["id"], "simclr")
        if pre["status"] != "succeeded":
            raise SystemExit(f"pre-training {pre['status']}: {pre.get('error')}")
        backbone = pre["fine_tuned_model"]
        results["pretrain"] = {"job": pre["id"], "model": backbone, "seconds": time.time() - t0,
                               "contrastive_accuracy": pre.get("final_valid_accuracy")}
        for method, variant in protocol.METHODS:
            for seed in prof["seeds"]:
                hp = dict(protocol.FINETUNE_HP, n_epochs=prof["finetune_epochs"], batch_size=prof["finetune_batch"])
                if method == "core_tuning":
                    hp.update(protocol.CORE_HP, variant=variant)
                t0 = time.time()
                job = api.call("POST", "/v1/fine_tuning/jobs", {
                    "model": backbone, "training_file": "fmnist-labelled", "validation_file": "fmnist-test",
                    "seed": seed, "method": {"type": method, method: {"hyperparameters": hp}},
                    "data": {"valid_every": prof["valid_every"]}})
                label = f"{method}/{variant or '-'}/seed {seed}"
                job = api.wait(job["id"], label)
                if job["status"] != "succeeded":
                    raise SystemExit(f"{label} {job['status']}: {job.get('error')}")
                acc = job["final_valid_accuracy"]
                print(f"{label}: test accuracy {acc:.4f} ({time.time() - t0:.0f} s)", flush=True)
                results["runs"].append({"method": method, "variant": variant, "seed": seed, "job": job["id"],
                                        "test_accuracy": acc, "seconds": time.time() - t0})
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    results["seconds"] = time.time() - t_all
    with open(os.path.join(out, "ours.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {os.path.join(out, 'ours.json')} ({results['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
