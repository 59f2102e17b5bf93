"""tests/e2e/run.py --bin DIR [PATTERN] — run every tests/e2e/test_*.py (or those matching PATTERN) against
the real daemon in DIR, list every skipped test with its reason ('e2e skip: TEST: REASON'), and print a
closing line 'e2e: N passed, N failed, N skipped'. Exits non-zero when anything failed (a failure, an error,
including one in setUpClass or a module import, an unexpected success, or no test at all); skips do not fail
but are always listed, so one that should not happen on this machine is seen."""
import argparse
import os
import sys
import time
import unittest

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default="bin")
ap.add_argument("pattern", nargs="?", default="test_*.py")
args = ap.parse_args()
os.environ["CT_BIN"] = args.bin
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)


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
