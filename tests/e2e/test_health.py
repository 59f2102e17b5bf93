"""The daemon starts, answers /healthz with JSON, unknown routes with a JSON 404, and stops cleanly
on SIGTERM (without hanging) and SIGINT."""
import signal
import unittest

from harness import Daemon


class HealthTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon().start()

    def tearDown(self):
        self.d.cleanup()

    def test_healthz(self):
        status, body, headers = self.d.request("GET", "/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(body["status"], "ok")
        self.assertIn("application/json", headers["Content-Type"])

    def test_unknown_route_is_json_404(self):
        status, body, _ = self.d.request("GET", "/no/such/route")
        self.assertEqual(status, 404)
        self.assertIn("message", body["error"])

    def test_sigterm_exits_zero_without_hanging(self):
        rc, secs = self.d.stop(signal.SIGTERM, timeout=30)
        self.assertEqual(rc, 0, self.d.read_log())
        # An idle daemon stops at once; the bound is not a benchmark but proof that it does not hang (waiting
        # on a long timeout or job), generous enough for a loaded machine or sanitizers.
        self.assertLess(secs, 15.0)

    def test_sigint_exits_zero(self):
        rc, _ = self.d.stop(signal.SIGINT)
        self.assertEqual(rc, 0, self.d.read_log())


if __name__ == "__main__":
    unittest.main()
