"""OpenAI client compatibility: tests/sdk/openai_sdk.test.mjs drives the real daemon with OpenAI's official
JavaScript library (npm `openai`, pinned by tests/sdk/package-lock.json) unchanged: create, retrieve, list and
auto-pagination, events and checkpoints (paginated), pause/resume/cancel, the SDK's idempotencyKey option,
models.list/retrieve/delete, and error mapping (NotFoundError 404, BadRequestError 400, AuthenticationError 401,
ConflictError 409, UnprocessableEntityError 422, PermissionDeniedError 403). The SDK's apiKey is the admin token (Authorization: Bearer).
Skipped, saying why, only when node is absent; the npm package is installed with `npm ci` when missing."""
import os
import shutil
import subprocess
import unittest

from harness import SANITIZED, DaemonTest, npm_ci_if_missing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SDK_DIR = os.path.join(ROOT, "tests", "sdk")


class OpenAISDKTest(DaemonTest):
    # two workers: the pause/resume job trains beside the job that runs to completion
    args = ("--workers", "2", "--threads-per-job", "1")
    check_db = False

    def test_openai_js_sdk(self):
        node = shutil.which("node")
        if not node:
            self.skipTest("node is not installed (Debian package nodejs): the OpenAI SDK test needs it")
        npm_ci_if_missing(self, SDK_DIR, "openai", "the openai package for the SDK test")
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
