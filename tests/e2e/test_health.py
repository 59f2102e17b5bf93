"""The daemon starts, answers /healthz with JSON, unknown routes with a JSON 404, and stops cleanly
and quickly on SIGTERM and SIGINT."""
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

    def test_sigterm_exits_zero_quickly(self):
        rc, secs = self.d.stop(signal.SIGTERM)
        self.assertEqual(rc, 0, self.d.read_log())
        self.assertLess(secs, 1.0)

    def test_sigint_exits_zero(self):
        rc, _ = self.d.stop(signal.SIGINT)
        self.assertEqual(rc, 0, self.d.read_log())


if __name__ == "__main__":
    unittest.main()
