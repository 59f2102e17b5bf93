"""One version (issue 14): common/version.h's CORETUNED_VERSION is what `coretuned --version`,
`coretune --version` and GET /healthz all report."""
import os
import re
import subprocess
import unittest

from harness import BIN, Daemon

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class VersionTest(unittest.TestCase):
    def test_one_version_everywhere(self):
        with open(os.path.join(ROOT, "common", "version.h")) as f:
            want = re.search(r'^#define CORETUNED_VERSION "([^"]+)"', f.read(), re.M).group(1)
        for name in ("coretuned", "coretune"):
            p = subprocess.run([os.path.join(BIN, name), "--version"], capture_output=True, text=True, timeout=20,
                               env=dict(os.environ, CORETUNED_CONFIG=""))
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(p.stdout, f"{name} {want}\n")
        d = Daemon("--workers", "0").start()
        try:
            status, body, _ = d.request("GET", "/healthz", token=None)
            self.assertEqual((status, body["version"]), (200, want))
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
