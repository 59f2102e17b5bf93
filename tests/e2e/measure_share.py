"""tests/e2e/measure_share.py --bin DIR — measure how near its share each of two side-by-side jobs runs
(issue #6, docs/performance.md): one job alone with T threads, then two jobs of two users at once with T
threads each (--cores 2T --workers 2), on the same data. Prints images/s (median of the per-step values
after warm-up) and each side-by-side job's rate relative to running alone. Not a test (no test_ prefix)."""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("--bin", default="bin")
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--images", type=int, default=1024)
args = ap.parse_args()
os.environ["CT_BIN"] = args.bin
import harness  # noqa: E402

harness.BIN = args.bin
from harness import Daemon, add_user, all_events, tiny_job, wait_for  # noqa: E402


def body():
    b = tiny_job(epochs=1, train_limit=args.images)
    b["method"]["core_tuning"]["hyperparameters"]["threads"] = args.threads
    b["data"]["valid_limit"] = 32
    return b


def rate(d, jid):
    ev = [e["data"]["images_per_second"] for e in all_events(d, jid) if e["type"] == "metrics"]
    return statistics.median(ev[len(ev) // 4:])


T = args.threads
d = Daemon("--cores", str(2 * T), "--workers", "2", "--threads-per-job", str(T), "--preemption", "no").start()
try:
    a, b = add_user(d, "ana"), add_user(d, "ben")
    alone = d.request("POST", "/v1/fine_tuning/jobs", body(), token=a)[1]["id"]
    wait_for(d, alone, ("succeeded",), timeout=900)
    r0 = rate(d, alone)
    j1 = d.request("POST", "/v1/fine_tuning/jobs", body(), token=a)[1]["id"]
    j2 = d.request("POST", "/v1/fine_tuning/jobs", body(), token=b)[1]["id"]
    for j in (j1, j2):
        wait_for(d, j, ("succeeded",), timeout=900)
    r1, r2 = rate(d, j1), rate(d, j2)
    print(f"cores={2 * T} threads/job={T} images={args.images}")
    print(f"alone: {r0:.1f} img/s")
    print(f"side by side: ana {r1:.1f} img/s ({100 * r1 / r0:.0f}% of alone), ben {r2:.1f} img/s ({100 * r2 / r0:.0f}%)")
finally:
    d.stop(timeout=60)
    d.cleanup()
