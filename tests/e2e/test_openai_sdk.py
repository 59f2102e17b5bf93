"""OpenAI client compatibility: tests/sdk/openai_sdk.test.mjs drives the real daemon with OpenAI's official
JavaScript library (npm `openai`, pinned by tests/sdk/package-lock.json) unchanged: create, retrieve, list and
auto-pagination, events and checkpoints (paginated), pause/resume/cancel, the SDK's idempotencyKey option,
models.list/retrieve, and error mapping (NotFoundError 404, BadRequestError 400, AuthenticationError 401,
ConflictError 409, UnprocessableEntityError 422). The SDK's apiKey is the admin token (Authorization: Bearer).
Skipped, saying why, only when node is absent; the npm package is installed with `npm ci` when missing."""
import os
import shutil
import subprocess
import unittest

from harness import SANITIZED, Daemon

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SDK_DIR = os.path.join(ROOT, "tests", "sdk")


class OpenAISDKTest(unittest.TestCase):
    def setUp(self):
        # two workers: the pause/resume job trains beside the job that runs to completion
        self.d = Daemon("--workers", "2", "--threads-per-job", "1").start()

    def tearDown(self):
        rc, _ = self.d.stop(timeout=60)
        try:
            self.assertEqual(rc, 0, self.d.read_log())
        finally:
            self.d.cleanup()

    def test_openai_js_sdk(self):
        node = shutil.which("node")
        if not node:
            self.skipTest("node is not installed (Debian package nodejs): the OpenAI SDK test needs it")
        if not os.path.exists(os.path.join(SDK_DIR, "node_modules", "openai", "package.json")):
            npm = shutil.which("npm")
            self.assertIsNotNone(npm, "npm is missing: cannot install the openai package for the SDK test")
            r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=SDK_DIR, capture_output=True,
                               text=True, timeout=300)
            self.assertEqual(r.returncode, 0, f"npm ci in tests/sdk failed:\n{r.stdout}\n{r.stderr}")
        # only what we pass: no OPENAI_* from the caller's environment (org/project headers, base URL)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        env.update(CT_BASE_URL=self.d.url("/v1"), CT_TOKEN=self.d.token, CT_SANITIZED="1" if SANITIZED else "0")
        r = subprocess.run([node, "openai_sdk.test.mjs"], cwd=SDK_DIR, env=env, capture_output=True, text=True,
                           timeout=600 if SANITIZED else 240)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, f"OpenAI SDK test failed:\n{out}\ndaemon log:\n{self.d.read_log()[-3000:]}")
        self.assertIn("openai sdk: all checks passed", out)
        if os.environ.get("CT_VERBOSE"):
            print(out)


if __name__ == "__main__":
    unittest.main()
