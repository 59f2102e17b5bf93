"""tests/e2e/run.py --bin DIR [PATTERN] — run every tests/e2e/test_*.py (or those matching PATTERN) against
the real daemon in DIR, list every skipped test with its reason ('e2e skip: TEST: REASON'), and print a
closing line 'e2e: N passed, N failed, N skipped'. Exits non-zero when anything failed (a failure, an error,
including one in setUpClass or a module import, an unexpected success, or no test at all); skips do not fail
but are always listed, so one that should not happen on this machine is seen.

With --jobs N (default 2, or CT_E2E_JOBS) and no PATTERN the modules run in N child processes of this
script at once, longest first, each module's output printed whole when it ends and the counts summed: most
modules wait on a one-thread training run, so two of them share two cores well, and make test keeps to its
budget. The Slurm modules go in one child (one cluster at a time: a new cluster reaps a dead one's jobs)."""
import argparse
import glob
import os
import re
import subprocess
import sys
import threading
import time
import unittest

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default="bin")
ap.add_argument("--jobs", type=int, default=int(os.environ.get("CT_E2E_JOBS", "2")))
ap.add_argument("pattern", nargs="?", default=None)
args = ap.parse_args()
os.environ["CT_BIN"] = args.bin
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)

# Seconds a module took under ASan on 2 cores (CI, Dec 2026): the order children start in, longest first.
EXPECTED = {"test_slurm*.py": 150, "test_dashboard.py": 81, "test_diskfull.py": 63, "test_jobs_run.py": 62,
            "test_sweeps.py": 48, "test_train_cli.py": 45, "test_uploads.py": 40, "test_connections.py": 38,
            "test_sweep_cli.py": 36, "test_storage.py": 30}


def run_parallel(jobs):
    """Each module (the Slurm ones together) in its own child, `jobs` at a time; returns the exit code."""
    names = sorted(os.path.basename(f) for f in glob.glob(os.path.join(here, "test_*.py")))
    items = sorted({"test_slurm*.py" if n.startswith("test_slurm") else n for n in names},
                   key=lambda n: (-EXPECTED.get(n, 10), n))
    totals = {"passed": 0, "failed": 0, "skipped": 0, "validated": 0}
    skips, took, lock = [], {}, threading.Lock()

    def worker():
        while True:
            with lock:
                if not items:
                    return
                item = items.pop(0)
            t0 = time.monotonic()
            r = subprocess.run([sys.executable, os.path.abspath(__file__), "--bin", args.bin, "--jobs", "1", item],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
            out = r.stdout
            m = re.findall(r"^e2e: (\d+) passed, (\d+) failed, (\d+) skipped$", out, re.M)
            v = re.findall(r"^e2e: (\d+) responses validated", out, re.M)
            with lock:
                took[item] = time.monotonic() - t0
                p, f, k = map(int, m[-1]) if m else (0, 1, 0)   # a child that did not finish is a failure
                if r.returncode != 0 and f == 0:
                    f = 1
                totals["passed"] += p
                totals["failed"] += f
                totals["skipped"] += k
                totals["validated"] += int(v[-1]) if v else 0
                skips.extend(re.findall(r"^e2e skip: (.*)$", out, re.M))
                print(f"=== e2e {item}: {p} passed, {f} failed, {k} skipped in {took[item]:.0f}s (exit {r.returncode})")
                # the child's own closing lines indented: tests/run.sh reads only the parent's
                out = re.sub(r"^(e2e[ :])", r"    \1", out, flags=re.M)
                print(out, end="" if out.endswith("\n") else "\n", flush=True)

    threads = [threading.Thread(target=worker) for _ in range(max(1, jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slow = sorted(took.items(), key=lambda kv: -kv[1])[:8]
    print("e2e slowest: " + ", ".join(f"{m} {t:.0f}s" for m, t in slow) + f" ({jobs} at a time)")
    for s in skips:
        print(f"e2e skip: {s}")
    print(f"e2e: {totals['validated']} responses validated against docs/openapi.yaml")
    print(f"e2e: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    return 1 if totals["failed"] or totals["passed"] == 0 else 0


if args.pattern is None and args.jobs > 1:
    sys.exit(run_parallel(args.jobs))
args.pattern = args.pattern or "test_*.py"


class Result(unittest.TextTestResult):
    """Counts passes itself: testsRun minus the rest goes wrong when a subtest fails twice or setUpClass
    fails (its tests never run but the error counts)."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.passed = 0

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1

    # Seconds per module: from the end of the previous test to the end of this one, so a class's
    # setUpClass counts with its own tests. Printed so the slowest files show in the log: make test has a
    # budget (~15 minutes on 2 cores).
    seconds = {}
    _mark = time.monotonic()

    def stopTest(self, test):
        super().stopTest(test)
        now = time.monotonic()
        mod = type(test).__module__
        Result.seconds[mod] = Result.seconds.get(mod, 0) + now - Result._mark
        Result._mark = now


suite = unittest.defaultTestLoader.discover(here, pattern=args.pattern)
res = unittest.TextTestRunner(verbosity=1, resultclass=Result).run(suite)
bad = len(res.failures) + len(res.errors) + len(res.unexpectedSuccesses)
if res.testsRun == 0:   # a pattern that matches nothing must not read as a clean run
    print(f"e2e: no test matches {args.pattern!r}")
    bad += 1
slow = sorted(Result.seconds.items(), key=lambda kv: -kv[1])[:8]
print("e2e slowest: " + ", ".join(f"{m} {t:.0f}s" for m, t in slow))
for test, reason in res.skipped:
    print(f"e2e skip: {test}: {' '.join(str(reason).split())}")
import contract  # noqa: E402 (the harness's, counted across every test of this process)
print(f"e2e: {contract.validated} responses validated against docs/openapi.yaml")
print(f"e2e: {res.passed + len(res.expectedFailures)} passed, {bad} failed, {len(res.skipped)} skipped")
sys.exit(1 if bad or not res.wasSuccessful() else 0)
