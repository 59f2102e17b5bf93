"""tests/e2e/test_openapi.py — docs/openapi.yaml: the daemon serves exactly its bytes at GET /v1/openapi.yaml
without credentials, and the document passes the Redocly CLI's lint (tests/openapi, pinned @redocly/cli,
rules in tests/openapi/redocly.yaml; a warning fails too). Every other e2e test checks its answers against
the document through the harness (tests/e2e/contract.py)."""
import os
import re
import subprocess
import unittest

import contract
from harness import DaemonTest, npm_ci_if_missing

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OPENAPI_DIR = os.path.join(ROOT, "tests", "openapi")


class OpenApiServed(DaemonTest):
    def test_served_bytes_are_the_document(self):
        with open(os.path.join(ROOT, "docs", "openapi.yaml"), "rb") as f:
            want = f.read()
        status, body, headers = self.d.request("GET", "/v1/openapi.yaml", token=None)
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/yaml")
        self.assertEqual(body, want, "the daemon's built-in copy differs from docs/openapi.yaml: rebuild")

    def test_head_and_bad_credentials_do_not_matter(self):
        status, _, headers = self.d.request("HEAD", "/v1/openapi.yaml", token=None)
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/yaml")
        status, body, _ = self.d.request("GET", "/v1/openapi.yaml", token="ct_not_a_token")
        self.assertEqual(status, 200)
        status, body, _ = self.d.request("POST", "/v1/openapi.yaml", body={}, token=None)
        self.assertEqual(status, 405, body)


class OpenApiLint(unittest.TestCase):
    def test_redocly_lint(self):
        npm_ci_if_missing(self, OPENAPI_DIR, "@redocly/cli", "@redocly/cli for test_openapi")
        cli = os.path.join(OPENAPI_DIR, "node_modules", ".bin", "redocly")
        r = subprocess.run([cli, "lint", "--config", os.path.join(OPENAPI_DIR, "redocly.yaml"),
                            "--max-problems", "50", os.path.join(ROOT, "docs", "openapi.yaml")],
                           capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true"))
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, out)
        self.assertIn("Your API description is valid", out)
        self.assertNotIn("warning", out.lower().replace("deprecation warning", ""), out)


class EveryRouteDescribed(unittest.TestCase):
    """Each row of the daemon's route table (api/routes.c) is an operation of the document and back, so a
    route added without its description fails here (the catch-all rows that answer 404 are the router's)."""

    def test_route_table_and_document_agree(self):
        with open(os.path.join(ROOT, "api", "routes.c")) as f:
            rows = re.findall(r'^\s*\{([GHPD |]+),\s*"([^"]+)",\s*(api__\w+),', f.read(), re.M)
        self.assertGreater(len(rows), 20)
        paths = contract.doc()["paths"]
        table = set()
        for methods, path, handler in rows:
            if handler == "api__no_route":
                continue
            path = "/web/{file}" if path == "/web/*" else path
            for m in methods.replace(" ", "").split("|"):
                if m == "H":
                    continue  # HEAD is answered as GET, headers only
                table.add((path, {"G": "get", "P": "post", "D": "delete"}[m]))
        documented = {(p, m) for p, ops in paths.items() for m in ops if m in ("get", "post", "put", "patch", "delete")}
        self.assertEqual(sorted(table - documented), [], "routes the document does not describe")
        self.assertEqual(sorted(documented - table), [], "operations the daemon does not have")


class ContractChecker(unittest.TestCase):
    """The checker itself catches drift: an extra field, a missing one, an undescribed status."""

    def test_catches_drift(self):
        ok = {"status": "ok", "version": "x", "uptime_seconds": 1}
        contract.check("GET", "/healthz", 200, ok, {})
        for bad in ({**ok, "extra": 1}, {"status": "ok", "version": "x"}):
            with self.assertRaises(AssertionError):
                contract.check("GET", "/healthz", 200, bad, {})
        with self.assertRaises(AssertionError):
            contract.check("GET", "/v1/me", 418, {}, {})
        err = {"error": {"message": "m", "type": "invalid_request_error", "code": "not_found", "param": None}}
        contract.check("GET", "/nope", 404, err, {})
        with self.assertRaises(AssertionError):
            contract.check("GET", "/nope", 200, {}, {})
        self.assertEqual(contract.route_of("/v1/fine_tuning/jobs/ftjob-1/events?limit=3"),
                         "/v1/fine_tuning/jobs/{id}/events")
        self.assertEqual(contract.route_of("/v1/me/"), "/v1/me")
        self.assertIsNone(contract.route_of("/healthz/"))


if __name__ == "__main__":
    unittest.main()
