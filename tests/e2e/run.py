"""tests/e2e/run.py --bin DIR — run every tests/e2e/test_*.py against the real daemon in DIR and
print a closing line 'e2e: N passed, N failed'."""
import argparse
import os
import sys
import unittest

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default="bin")
ap.add_argument("pattern", nargs="?", default="test_*.py")
args = ap.parse_args()
os.environ["CT_BIN"] = args.bin
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
suite = unittest.defaultTestLoader.discover(here, pattern=args.pattern)
res = unittest.TextTestRunner(verbosity=1).run(suite)
bad = len(res.failures) + len(res.errors) + len(res.unexpectedSuccesses)
print(f"e2e: {res.testsRun - bad - len(res.skipped)} passed, {bad} failed")
sys.exit(1 if bad else 0)
